"""A kernel compute queue on the MEC, programmed directly through MQD + HQD registers (no MES, no KIQ), with a
timeline signal.

Ring protocol (gfx_v11_0.c ring funcs for compute rings): the ring is 4 << QUEUE_SIZE dwords in the GART; the driver
writes packets at its write pointer (dwords, 64-bit, never wrapping; the ring offset is wptr modulo the ring size),
stores the write pointer in the WPTR_POLL slot, flushes HDP (the ring lives in VRAM written through BAR 0), then
writes the 64-bit write pointer to the queue's doorbell (gfx_v11_0_ring_set_wptr_compute: WDOORBELL64). The CP
reports its read pointer (dwords modulo the ring) at CP_HQD_PQ_RPTR_REPORT_ADDR. One dword always stays free so that
a full ring is never mistaken for an empty one.

Timeline signal: 64-bit value at +0, the GPU clock when the work started at +8 (COPY_DATA from the timestamp source
at the top of the submission) and when it ended at +16 (RELEASE_MEM DATA_SEL 3), then RELEASE_MEM of the value
(radv_write_timestamp and si_cp_release_mem use the same two packets for timestamps). Each `exec` returns the value
that marks its completion; `wait` polls it and the IH ring, so a fault surfaces as AMFault at once.

Recovery: `reset` dequeues the HQD (CP_HQD_DEQUEUE_REQUEST, polls CP_HQD_ACTIVE = 0) and programs it again with an
empty ring, as amdgpu's compute ring reset does through the KIQ (gfx_v11_0_reset_kcq: unmap, mqd init, map).
"""
from __future__ import annotations

import struct
import time

from am.errors import AMError, AMFault, AMTimeout
from am.generated.boot import mqd as mqd_facts
from am.ip.base import wait_reg
from am.pm4.decode import format_pm4
from am.pm4.pm4 import DATA_SEL_64, DATA_SEL_GPU_CLOCK, PM4Stream

GFX11_MEC_HPD_SIZE = 2048   # gfx_v11_0.c (EOP buffer per queue)
COPY_DATA_SRC_TIMESTAMP, COPY_DATA_DST_MEM = 9, 5   # mesa sid.h COPY_DATA_TIMESTAMP, V_370_MEM


class Signal:
  """A timeline signal in GART memory: value (u64) at +0, start / end GPU clock (u64) at +8 / +16."""

  def __init__(self, dev):
    self.dev = dev
    self.mem = dev.gmc.alloc(4096)
    self.va = self.mem.gart
    self.last = 0          # the last value handed out

  def value(self) -> int:
    return self.dev.vram.read64(self.mem.offset)

  def timestamps(self) -> tuple[int, int]:
    """(start, end) GPU clock of the last signalled submission, in GPU clock ticks (100 MHz)."""
    return self.dev.vram.read64(self.mem.offset + 8), self.dev.vram.read64(self.mem.offset + 16)


def wait_value(dev, read, value: int, what: str, timeout_s: float = 2.0, diagnose=None) -> None:
  """Poll `read()` until it reaches `value` (>=), watching the IH ring for faults.

  Raises:
    AMFault: the card posted a fault (VM fault, bad packet, shader error); names the entries and the address.
    AMTimeout: nothing happened in time; names what was waited for and the last value (and `diagnose()`'s text).
  """
  deadline = time.monotonic() + timeout_s
  while True:
    got = read()
    if got >= value:
      return
    faults = dev.ih.faults()
    if faults:
      raise AMFault(f"{what}: waiting for {value}, at {got}; the IH ring reports: "
                    + "; ".join(f.describe() for f in faults), faults)
    if time.monotonic() > deadline:
      extra = f"; {diagnose()}" if diagnose else ""
      raise AMTimeout(f"timed out after {timeout_s}s waiting for {what} to reach {value} (last {got}){extra}")
    time.sleep(0)


class ComputeQueue:
  """One kernel compute queue on me 1 / pipe / queue, VMID 0, ring in the GART.

  Args:
    dev: the booted AMDevice (gmc, gc, doorbells). pipe, queue: the HQD. doorbell: 64-bit doorbell slot.
    ring_bytes: ring size, a power of two (256 B .. 2 MiB, CP_HQD_PQ_CONTROL.QUEUE_SIZE).
  """

  def __init__(self, dev, pipe: int, queue: int, doorbell: int, ring_bytes: int = 64 << 10):
    if ring_bytes & (ring_bytes - 1) or not 256 <= ring_bytes <= 2 << 20:
      raise ValueError(f"compute ring of {ring_bytes} bytes: a power of two from 256 B to 2 MiB")
    gmc = dev.gmc
    self.dev, self.pipe, self.queue, self.doorbell = dev, pipe, queue, doorbell
    self.ring_bytes = ring_bytes
    self.ring_dw = ring_bytes // 4
    self.ring = gmc.alloc(ring_bytes)
    self.eop = gmc.alloc(GFX11_MEC_HPD_SIZE)
    self.mqd = gmc.alloc(4096)
    self.wb = gmc.alloc(4096)   # rptr report at +0, wptr poll at +8
    self.wptr = 0
    self.signal = Signal(dev)
    self.kernargs = None        # am.queues.dispatch.KernargArena, made on the first dispatch

  def hqd_values(self, caps) -> dict[str, dict[str, int] | int]:
    pq_control = {"QUEUE_SIZE": self.ring_dw.bit_length() - 2, "RPTR_BLOCK_SIZE": 5, "PRIV_STATE": 1}
    if caps.gfx_generation == 12:
      pq_control["KMD_QUEUE"] = 1
    rptr, wptr = self.wb.gart, self.wb.gart + 8
    return {
      "regCP_HQD_VMID": 0,
      "regCP_MQD_BASE_ADDR": self.mqd.gart & 0xFFFFFFFC, "regCP_MQD_BASE_ADDR_HI": self.mqd.gart >> 32,
      "regCP_HQD_PQ_BASE": (self.ring.gart >> 8) & 0xFFFFFFFF, "regCP_HQD_PQ_BASE_HI": self.ring.gart >> 40,
      "regCP_HQD_PQ_CONTROL": pq_control,
      "regCP_HQD_PQ_RPTR_REPORT_ADDR": rptr & 0xFFFFFFFC, "regCP_HQD_PQ_RPTR_REPORT_ADDR_HI": rptr >> 32,
      "regCP_HQD_PQ_WPTR_POLL_ADDR": wptr & 0xFFFFFFF8, "regCP_HQD_PQ_WPTR_POLL_ADDR_HI": wptr >> 32,
      "regCP_HQD_PQ_DOORBELL_CONTROL": {"DOORBELL_OFFSET": self.doorbell * 2, "DOORBELL_EN": 1},
      "regCP_HQD_EOP_BASE_ADDR": (self.eop.gart >> 8) & 0xFFFFFFFF, "regCP_HQD_EOP_BASE_ADDR_HI": self.eop.gart >> 40,
      "regCP_HQD_EOP_CONTROL": {"EOP_SIZE": (GFX11_MEC_HPD_SIZE // 4).bit_length() - 2},
      "regCP_HQD_PQ_WPTR_LO": self.wptr & 0xFFFFFFFF, "regCP_HQD_PQ_WPTR_HI": self.wptr >> 32,
    }

  def program(self) -> None:
    """Write the MQD and the HQD registers and activate the queue (gfx_v11_0_kiq_init_register's sequence).

    Raises:
      AMError: the MEC did not activate the HQD."""
    dev = self.dev
    gc = dev.gc
    values = self.hqd_values(dev.caps)
    mqd_layout = mqd_facts.MQD[dev.caps.mqd_struct]
    mqd = bytearray(mqd_facts.DWORDS[dev.caps.mqd_struct] * 4)
    gc.regGRBM_GFX_CNTL.write(MEID=1, PIPEID=self.pipe, QUEUEID=self.queue, VMID=0)
    for name, value in values.items():
      reg = gc[name]
      word = reg.encode(**value) if isinstance(value, dict) else value
      reg.write(word)
      member = name[3:].lower()
      if member in mqd_layout:
        struct.pack_into("<I", mqd, mqd_layout[member] * 4, word)
    dev.vram.write(self.mqd.offset, mqd)
    gc.regCP_HQD_ACTIVE.write(ACTIVE=1)
    active = gc.regCP_HQD_ACTIVE.read_fields()["ACTIVE"]
    gc.regGRBM_GFX_CNTL.write(0)
    if not active:
      raise AMError(f"the MEC did not activate HQD me1 pipe{self.pipe} queue{self.queue} (CP_HQD_ACTIVE reads 0): "
                    "check CP_MEC_RS64_CNTL.MEC_HALT, the PQ base mapping and the doorbell range")

  # ---- pointers ----
  def rptr(self) -> int:
    """The CP's read pointer as it reports it: dwords modulo the ring."""
    return self.dev.vram.read32(self.wb.offset)

  def pending(self) -> int:
    """Dwords written but not yet read by the CP."""
    return (self.wptr - self.rptr()) % self.ring_dw

  def _wait_space(self, ndw: int, timeout_s: float) -> None:
    if ndw >= self.ring_dw:
      raise ValueError(f"a submission of {ndw} dwords does not fit a ring of {self.ring_dw}; use an indirect buffer")
    wait_value(self.dev, lambda: self.ring_dw - 1 - self.pending(), ndw, "compute ring space", timeout_s,
               self.describe)

  # ---- submission ----
  def submit(self, stream: PM4Stream, timeout_s: float = 2.0) -> None:
    """Copy `stream` to the ring at the write pointer (wrapping), publish the write pointer, flush HDP, ring the
    doorbell.

    Raises:
      ValueError: the stream is larger than the ring. AMTimeout / AMFault: no space came free."""
    data = stream.tobytes()
    ndw = len(data) // 4
    self._wait_space(ndw, timeout_s)
    at = (self.wptr % self.ring_dw) * 4
    first = min(len(data), self.ring_bytes - at)
    self.dev.vram.write(self.ring.offset + at, data[:first])
    if first < len(data):
      self.dev.vram.write(self.ring.offset, data[first:])
    self.wptr += ndw
    self.dev.vram.write64(self.wb.offset + 8, self.wptr)
    self.dev.soc.hdp_flush()
    self.dev.doorbells.write64(self.doorbell * 8, self.wptr)

  def exec(self, stream: PM4Stream, timeout_s: float = 2.0) -> int:
    """Submit `stream` framed by the timeline signal's timestamps and value; returns the value to wait for."""
    self.signal.last += 1
    value = self.signal.last
    s = PM4Stream(stream.gfx)
    s.copy_data(COPY_DATA_SRC_TIMESTAMP, 0, COPY_DATA_DST_MEM, self.signal.va + 8, count_sel=1)
    s.words.extend(stream.words)
    s.acquire_mem()
    s.release_mem(self.signal.va + 16, 0, data_sel=DATA_SEL_GPU_CLOCK, event="BOTTOM_OF_PIPE_TS", flush=False)
    s.release_mem(self.signal.va, value, data_sel=DATA_SEL_64)
    self.submit(s, timeout_s)
    return value

  def wait(self, value: int | None = None, timeout_s: float = 5.0) -> None:
    """Wait for the timeline to reach `value` (default: the last submission).

    Raises:
      AMFault: a fault reached the IH ring first (see reset() to recover the queue). AMTimeout: it never came."""
    target = self.signal.last if value is None else value
    wait_value(self.dev, self.signal.value, target, f"compute queue me1 pipe{self.pipe} queue{self.queue} signal",
               timeout_s, self.describe)

  def describe(self) -> str:
    """The queue's pointers and the packets it has not consumed, decoded."""
    rptr = self.rptr()
    words = [self.dev.vram.read32(self.ring.offset + ((rptr + i) % self.ring_dw) * 4)
             for i in range(min(self.pending(), 64))]
    lines = format_pm4(words, self.dev.caps.gfx_generation)[:12]
    return f"rptr {rptr}, wptr {self.wptr % self.ring_dw} (of {self.ring_dw} dwords); next: " + " | ".join(lines)

  def unmap(self) -> None:
    gc = self.dev.gc
    gc.regGRBM_GFX_CNTL.write(MEID=1, PIPEID=self.pipe, QUEUEID=self.queue)
    gc.regCP_HQD_DEQUEUE_REQUEST.write(DEQUEUE_REQ=1)
    wait_reg(gc.regCP_HQD_ACTIVE, 1, 0, "HQD dequeue")
    gc.regGRBM_GFX_CNTL.write(0)

  def reset(self) -> None:
    """Recover a hung or faulted queue: dequeue it, empty the ring, map it again. The timeline goes on: values
    handed out before the reset that never signalled stay unsignalled until a later submission passes them."""
    self.unmap()
    self.dev.vram.write(self.wb.offset, bytes(16))
    self.wptr = 0
    self.program()
