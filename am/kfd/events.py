"""KFD events (kfd_events.c, protocol of include/uapi/linux/kfd_ioctl.h) and the faults they carry.

Signal events: on a dGPU the event page is a GTT buffer of KFD_SIGNAL_EVENT_LIMIT 8-byte slots that user space
allocates and hands over with the first CREATE_EVENT (event_page_offset = its handle; kfd_kmap_event_page). The
kernel sets every slot to UNSIGNALED_EVENT_SLOT (-1, kfd_events.h). To signal from a queue, the GPU writes the
event's slot (any value but -1) and raises an end-of-pipe interrupt whose context id is the event id (RELEASE_MEM
with INT_SEL and INT_CTXID); the interrupt handler (kfd_int_process_v11.c: kfd_signal_event_interrupt(pasid,
context_id0, 32)) finds the event by id, sees its slot written, and wakes WAIT_EVENTS.

Faults: a VM fault signals the process's KFD_IOC_EVENT_MEMORY events with kfd_hsa_memory_exception_data (va, gpu_id,
failure bits); a hang or reset its KFD_IOC_EVENT_HW_EXCEPTION events with kfd_hsa_hw_exception_data. `Faults.faults()`
polls both with a zero timeout; it is `dev.ih.faults()` for am/queues' waits, which raise AMFault with them.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

from am.cstruct import CStruct
from am.errors import AMTimeout
from am.kfd import generated as facts

C = facts.CONSTANTS
EVENT_DATA = CStruct(facts.STRUCTS, facts.SIZES, "kfd_event_data")
WAIT_RESULTS = {C["KFD_IOC_WAIT_RESULT_COMPLETE"]: "complete", C["KFD_IOC_WAIT_RESULT_TIMEOUT"]: "timeout",
                C["KFD_IOC_WAIT_RESULT_FAIL"]: "fail"}
UNSIGNALED_EVENT_SLOT = (1 << 64) - 1   # kfd_events.h


@dataclass(frozen=True)
class Event:
  id: int
  type: int
  slot_va: int          # the GPU address of its slot in the event page (signal events), else 0
  trigger_data: int


@dataclass(frozen=True)
class KfdFault:
  """A fault the kernel reported through an event. `fault_address` (the page's GPU address) for VM faults."""
  kind: str             # "memory" | "hw"
  gpu_id: int
  fault_address: int | None
  details: str
  fault_kind: str | None = None   # VM faults: the failure bits, as am.ip.ih.IVEntry.fault_kind names them
  vmid: int | None = None         # not reported to user space
  fault_write: bool | None = None

  def describe(self) -> str:
    return self.details


class Events:
  def __init__(self, dev):
    self.dev = dev
    self.page = None

  def create(self, event_type: int | None = None, auto_reset: bool = True) -> Event:
    """Raises: KfdError (EINVAL for a bad type, ENOMEM past KFD_SIGNAL_EVENT_LIMIT signal events)."""
    event_type = C["KFD_IOC_EVENT_SIGNAL"] if event_type is None else event_type
    fields = {"event_type": event_type, "auto_reset": int(auto_reset), "node_id": self.dev.node.index}
    if self.page is None and event_type == C["KFD_IOC_EVENT_SIGNAL"]:
      self.page = self.dev.gmc.alloc(C["KFD_SIGNAL_EVENT_LIMIT"] * 8, kind="gtt", executable=False)
      fields["event_page_offset"] = self.page.handle
    out = self.dev.ioctl("AMDKFD_IOC_CREATE_EVENT", **fields)
    slot = self.page.gart + 8 * out["event_slot_index"] if event_type == C["KFD_IOC_EVENT_SIGNAL"] else 0
    return Event(out["event_id"], event_type, slot, out["event_trigger_data"])

  def destroy(self, event: Event) -> None:
    self.dev.ioctl("AMDKFD_IOC_DESTROY_EVENT", event_id=event.id)

  def set(self, event: Event) -> None:
    self.dev.ioctl("AMDKFD_IOC_SET_EVENT", event_id=event.id)

  def wait_any(self, events: list[Event], timeout_ms: int, wait_all: bool = False) -> tuple[str, list[dict]]:
    """WAIT_EVENTS: ('complete' | 'timeout' | 'fail', each event's kfd_event_data as the kernel left it)."""
    size = EVENT_DATA.size
    array = (ctypes.c_uint8 * (size * len(events)))()
    for i, ev in enumerate(events):
      ctypes.memmove(ctypes.addressof(array) + i * size, bytes(EVENT_DATA.pack(event_id=ev.id)), size)
    out = self.dev.ioctl("AMDKFD_IOC_WAIT_EVENTS", events_ptr=ctypes.addressof(array), num_events=len(events),
                         wait_for_all=int(wait_all), timeout=timeout_ms)
    data = [EVENT_DATA.unpack(bytes(array), i * size) for i in range(len(events))]
    return WAIT_RESULTS.get(out["wait_result"], f"wait_result {out['wait_result']}"), data

  def wait(self, event: Event, timeout_ms: int = 2000) -> None:
    """Raises:
      AMTimeout: the event was not signalled within `timeout_ms` (names it). AMFault: a fault was reported first."""
    result, _ = self.wait_any([event], timeout_ms)
    if result != "complete":
      faults = self.dev.ih.faults()
      if faults:
        from am.errors import AMFault
        raise AMFault(f"event {event.id}: " + "; ".join(f.describe() for f in faults), faults)
      raise AMTimeout(f"KFD event {event.id} (slot at 0x{event.slot_va:x}) not signalled within {timeout_ms} ms "
                      f"(WAIT_EVENTS: {result})")


class Faults:
  """`dev.ih` of am/queues on the KFD path: faults come as memory / HW-exception events."""

  def __init__(self, dev):
    self.dev = dev
    self.events: list = []   # other IH entries (end of pipe, traps) do not reach user space on this path
    self.memory = dev.events.create(C["KFD_IOC_EVENT_MEMORY"])
    self.hw = dev.events.create(C["KFD_IOC_EVENT_HW_EXCEPTION"])

  def faults(self) -> list[KfdFault]:
    out = []
    for ev, kind in ((self.memory, "memory"), (self.hw, "hw")):
      result, (data,) = self.dev.events.wait_any([ev], 0)
      if result != "complete":
        continue
      if kind == "memory":
        va = data["memory_exception_data.va"]
        bits = [k for k in ("NotPresent", "ReadOnly", "NoExecute") if data[f"memory_exception_data.failure.{k}"]]
        what = "write to a read-only page" if "ReadOnly" in bits else "page not present" if bits else None
        out.append(KfdFault(kind, data["memory_exception_data.gpu_id"], va,
                            f"GPU memory fault at 0x{va:x} on gpu_id 0x{data['memory_exception_data.gpu_id']:x}"
                            f" ({', '.join(bits) or 'no failure bits'})", what))
      else:
        cause = {C["KFD_HW_EXCEPTION_GPU_HANG"]: "GPU hang", C["KFD_HW_EXCEPTION_ECC"]: "ECC"}.get(
          data["hw_exception_data.reset_cause"], "unknown cause")
        out.append(KfdFault(kind, data["hw_exception_data.gpu_id"], None,
                            f"hardware exception on gpu_id 0x{data['hw_exception_data.gpu_id']:x}: {cause}, reset "
                            f"type {data['hw_exception_data.reset_type']}, memory lost "
                            f"{data['hw_exception_data.memory_lost']}"))
    return out
