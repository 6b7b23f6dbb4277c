"""A compute queue on the MEC, programmed directly through MQD + HQD registers (no MES, no KIQ), with a timeline
signal; on VMID 0 (the GART) or on a user VMID (its memory from a GpuVm, am/ip/vm.py: GpuVm.queue).

Ring protocol (gfx_v11_0.c ring funcs for compute rings): the ring is 4 << QUEUE_SIZE dwords in the queue's address
space; the driver writes packets at its write pointer (dwords, 64-bit, never wrapping; the ring offset is wptr modulo
the ring size), stores the write pointer in the WPTR_POLL slot, flushes HDP (the ring lives in VRAM written through BAR
0), then writes the 64-bit write pointer to the queue's doorbell (gfx_v11_0_ring_set_wptr_compute: WDOORBELL64). The CP
reports its read pointer (dwords modulo the ring) at CP_HQD_PQ_RPTR_REPORT_ADDR. One dword always stays free so that a
full ring is never mistaken for an empty one.

Timeline signal: 64-bit value at +0, the GPU clock when the work started at +8 (COPY_DATA from the timestamp source
at the top of the submission) and when it ended at +16 (RELEASE_MEM DATA_SEL 3), then RELEASE_MEM of the value
(radv_write_timestamp and si_cp_release_mem use the same two packets for timestamps). Each `exec` returns the value
that marks its completion; `wait` polls it and the IH ring, so a fault surfaces as AMFault at once, and a queue that
does not reach the value in time (a kernel that never ends) as AMTimeout. Both name the queue, its VMID, the value
waited for, the last one reached and the IH entries seen; AMTimeout adds the HQD's state.

Dequeue (CP_HQD_DEQUEUE_REQUEST.DEQUEUE_REQ, enum hqd_dequeue_request_type of amdgpu_amdkfd_gfx_v11.c): DRAIN_PIPE (1)
lets the waves in flight finish, RESET_WAVES (2) kills them; then poll CP_HQD_ACTIVE = 0 (hqd_destroy_v11). `unmap`
drains and falls back to RESET_WAVES when the drain does not finish (a hung kernel never does). Recovery: `reset`
does what gfx_v11_0_reset_kcq does: DEQUEUE_REQUEST = RESET_WAVES and SPI_COMPUTE_QUEUE_RESET.RESET = 1 with the queue
selected, poll CP_HQD_ACTIVE = 0, then the MQD and HQD programmed again with an empty ring.
"""
from __future__ import annotations

import struct
import time

from am import debug
from am.errors import AMError, AMFault, AMTimeout
from am.generated.boot import mqd as mqd_facts
from am.ip.base import wait_reg
from am.pm4.decode import format_pm4
from am.pm4.pm4 import DATA_SEL_64, DATA_SEL_GPU_CLOCK, PM4Stream

GFX11_MEC_HPD_SIZE = 2048   # gfx_v11_0.c (EOP buffer per queue)
COPY_DATA_SRC_TIMESTAMP, COPY_DATA_DST_MEM = 9, 5   # mesa sid.h COPY_DATA_TIMESTAMP, V_370_MEM
DRAIN_PIPE, RESET_WAVES = 1, 2   # enum hqd_dequeue_request_type (amdgpu_amdkfd_gfx_v11.c)
COMPUTE_TIMEOUT_S = 60.0         # amdgpu_device.c: compute_timeout = msecs_to_jiffies(60000) (bare metal)


class Signal:
  """A timeline signal in the queue's address space: value (u64) at +0, start / end GPU clock (u64) at +8 / +16."""

  def __init__(self, dev):
    self.dev = dev
    self.mem = dev.gmc.alloc(4096)
    self.va = self.mem.va
    self.last = 0          # the last value handed out

  def value(self) -> int:
    return self.dev.vram.read64(self.mem.offset)

  def timestamps(self) -> tuple[int, int]:
    """(start, end) GPU clock of the last signalled submission, in GPU clock ticks (100 MHz)."""
    return self.dev.vram.read64(self.mem.offset + 8), self.dev.vram.read64(self.mem.offset + 16)


def wait_value(dev, read, value: int, what: str, timeout_s: float = 2.0, diagnose=None,
               queue: str | None = None) -> None:
  """Poll `read()` until it reaches `value` (>=), watching the IH ring for faults.

  Args:
    what: the value's name in messages. diagnose: returns extra text for a timeout. queue: the queue's name, for
      messages and the exceptions' `queue`.
  Raises:
    AMFault: the card posted a fault (VM fault, bad packet, shader error); names the entries, the address and VMID.
    AMTimeout: nothing happened in time; names what was waited for, the last value, the IH entries that came during
      the wait and `diagnose()`'s text.
  """
  deadline = time.monotonic() + timeout_s
  seen = len(dev.ih.events)
  while True:
    got = read()
    if got >= value:
      return
    faults = dev.ih.faults()
    if faults:
      prefix = f"{queue}: " if queue else ""
      raise AMFault(f"{prefix}{what}: waiting for {value}, last reached {got}; the IH ring reports: "
                    + "; ".join(f.describe() for f in faults), faults, queue)
    if time.monotonic() > deadline:
      entries = dev.ih.events[seen:]
      ih = "; ".join(e.describe() for e in entries) if entries else "none"
      extra = f"; {diagnose()}" if diagnose else ""
      prefix = f"{queue} hung? " if queue else ""
      raise AMTimeout(f"{prefix}timed out after {timeout_s}s waiting for {what} to reach {value} (last reached "
                      f"{got}); IH entries during the wait: {ih}{extra}", queue, value, got, entries)
    time.sleep(0)


class ComputeQueue:
  """One compute queue on me 1 / pipe / queue, on the VMID of `dev.gmc` (0: the GART; a GpuVm's through its
  VmDevice), ring and pointers in that address space.

  Args:
    dev: the booted AMDevice, or a VmDevice (gmc, gc, doorbells). pipe, queue: the HQD. doorbell: 64-bit doorbell slot.
    ring_bytes: ring size, a power of two (256 B .. 2 MiB, CP_HQD_PQ_CONTROL.QUEUE_SIZE).
    mqd_gmc: where the MQD goes (default dev.gmc); GpuVm.queue passes the VMID0 Gmc.
  """

  def __init__(self, dev, pipe: int, queue: int, doorbell: int, ring_bytes: int = 64 << 10, mqd_gmc=None):
    if ring_bytes & (ring_bytes - 1) or not 256 <= ring_bytes <= 2 << 20:
      raise ValueError(f"compute ring of {ring_bytes} bytes: a power of two from 256 B to 2 MiB")
    gmc = dev.gmc
    self.dev, self.pipe, self.queue, self.doorbell = dev, pipe, queue, doorbell
    self.vmid = gmc.vmid
    self.ring_bytes = ring_bytes
    self.ring_dw = ring_bytes // 4
    self.ring = gmc.alloc(ring_bytes)
    self.eop = gmc.alloc(GFX11_MEC_HPD_SIZE)
    self.mqd = (mqd_gmc or gmc).alloc(4096)
    self.wb = gmc.alloc(4096)   # rptr report at +0, wptr poll at +8
    self.wptr = 0
    self.signal = Signal(dev)
    self.kernargs = None        # am.queues.dispatch.KernargArena, made on the first dispatch
    self.took_over = False      # program() found the HQD active and dequeued it first

  def hqd_values(self, caps) -> dict[str, dict[str, int] | int]:
    pq_control = {"QUEUE_SIZE": self.ring_dw.bit_length() - 2, "RPTR_BLOCK_SIZE": 5, "PRIV_STATE": 1}
    if caps.gfx_generation == 12:
      pq_control["KMD_QUEUE"] = 1
    rptr, wptr = self.wb.va, self.wb.va + 8
    return {
      "regCP_HQD_VMID": self.vmid,
      "regCP_MQD_BASE_ADDR": self.mqd.va & 0xFFFFFFFC, "regCP_MQD_BASE_ADDR_HI": self.mqd.va >> 32,
      "regCP_HQD_PQ_BASE": (self.ring.va >> 8) & 0xFFFFFFFF, "regCP_HQD_PQ_BASE_HI": self.ring.va >> 40,
      "regCP_HQD_PQ_CONTROL": pq_control,
      "regCP_HQD_PQ_RPTR_REPORT_ADDR": rptr & 0xFFFFFFFC, "regCP_HQD_PQ_RPTR_REPORT_ADDR_HI": rptr >> 32,
      "regCP_HQD_PQ_WPTR_POLL_ADDR": wptr & 0xFFFFFFF8, "regCP_HQD_PQ_WPTR_POLL_ADDR_HI": wptr >> 32,
      "regCP_HQD_PQ_DOORBELL_CONTROL": {"DOORBELL_OFFSET": self.doorbell * 2, "DOORBELL_EN": 1},
      "regCP_HQD_EOP_BASE_ADDR": (self.eop.va >> 8) & 0xFFFFFFFF, "regCP_HQD_EOP_BASE_ADDR_HI": self.eop.va >> 40,
      "regCP_HQD_EOP_CONTROL": {"EOP_SIZE": (GFX11_MEC_HPD_SIZE // 4).bit_length() - 2},
      "regCP_HQD_PQ_WPTR_LO": self.wptr & 0xFFFFFFFF, "regCP_HQD_PQ_WPTR_HI": self.wptr >> 32,
    }

  def program(self) -> None:
    """Write the MQD and the HQD registers and activate the queue (gfx_v11_0_kiq_init_register's sequence). A queue
    still active on the HQD (left by amdgpu, or by an AM run that ended without fini) is dequeued first, as
    gfx_v11_0_kiq_init_register does ("disable the queue if it's active"); `took_over` says whether there was one.

    Raises:
      AMError: the MEC did not activate the HQD. AMTimeout: the HQD left active would not dequeue."""
    dev = self.dev
    gc = dev.gc
    self.took_over = self.hqd_active()
    if self.took_over:
      self.unmap()
    values = self.hqd_values(dev.caps)
    mqd_layout = mqd_facts.MQD[dev.caps.mqd_struct]
    mqd = bytearray(mqd_facts.DWORDS[dev.caps.mqd_struct] * 4)
    gc.regGRBM_GFX_CNTL.write(MEID=1, PIPEID=self.pipe, QUEUEID=self.queue, VMID=self.vmid)
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
    if debug.enabled(debug.STAGES):
      self.trace(stream)

  def trace(self, stream: PM4Stream) -> None:
    """AM_DEBUG: the submission (>= 1) and its packets decoded (>= 2)."""
    debug.log(debug.STAGES, f"{self.name}: {len(stream)} dwords submitted, wptr {self.wptr}")
    if debug.enabled(debug.PACKETS):
      regs = getattr(self.dev, "gc", None)
      debug.log(debug.PACKETS, "\n".join("    " + line for line in format_pm4(list(stream.words), stream.gfx, regs)))

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

  @property
  def name(self) -> str:
    vmid = "" if self.vmid is None else f" (VMID {self.vmid})"
    return f"compute queue me1 pipe{self.pipe} queue{self.queue}{vmid}"

  def wait(self, value: int | None = None, timeout_s: float = COMPUTE_TIMEOUT_S) -> None:
    """Wait for the timeline to reach `value` (default: the last submission).

    Raises:
      AMFault: a fault reached the IH ring first (see reset() to recover the queue).
      AMTimeout: the value did not come in time (a hung kernel: reset() recovers the queue); names the value waited
        for, the last one reached, the IH entries of the wait and the HQD's state."""
    target = self.signal.last if value is None else value
    wait_value(self.dev, self.signal.value, target, "its signal", timeout_s, self.diagnose, self.name)

  def describe(self) -> str:
    """The queue's pointers and the packets it has not consumed, decoded."""
    rptr = self.rptr()
    count = min((self.wptr - rptr) % self.ring_dw, 64)
    first = min(count, self.ring_dw - rptr)
    data = self.dev.vram.read(self.ring.offset + rptr * 4, first * 4)
    data += self.dev.vram.read(self.ring.offset, (count - first) * 4)
    words = list(struct.unpack(f"<{count}I", data))
    lines = format_pm4(words, self.dev.caps.gfx_generation)[:12]
    return f"rptr {rptr}, wptr {self.wptr % self.ring_dw} (of {self.ring_dw} dwords); next: " + " | ".join(lines)

  def hqd_active(self) -> bool:
    """CP_HQD_ACTIVE of the queue's HQD, read with the queue selected."""
    gc = self.dev.gc
    gc.regGRBM_GFX_CNTL.write(MEID=1, PIPEID=self.pipe, QUEUEID=self.queue)
    active = gc.regCP_HQD_ACTIVE.read_fields()["ACTIVE"]
    gc.regGRBM_GFX_CNTL.write(0)
    return bool(active)

  def hqd_state(self) -> str:
    """CP_HQD_ACTIVE and CP_HQD_DEQUEUE_REQUEST of the queue's HQD, read with the queue selected."""
    gc = self.dev.gc
    gc.regGRBM_GFX_CNTL.write(MEID=1, PIPEID=self.pipe, QUEUEID=self.queue)
    active = gc.regCP_HQD_ACTIVE.read_fields()["ACTIVE"]
    dequeue = gc.regCP_HQD_DEQUEUE_REQUEST.read_fields()["DEQUEUE_REQ"]
    gc.regGRBM_GFX_CNTL.write(0)
    return f"HQD ACTIVE={active} DEQUEUE_REQ={dequeue}"

  def diagnose(self) -> str:
    return f"{self.describe()}; {self.hqd_state()}"

  def dequeue(self, request: int, timeout_s: float) -> None:
    """CP_HQD_DEQUEUE_REQUEST = `request` with the queue selected, then poll CP_HQD_ACTIVE = 0 (hqd_destroy_v11);
    RESET_WAVES also sets SPI_COMPUTE_QUEUE_RESET.RESET as gfx_v11_0_reset_kcq does.

    Raises:
      AMTimeout: the HQD stayed active (names the request)."""
    gc = self.dev.gc
    gc.regGRBM_GFX_CNTL.write(MEID=1, PIPEID=self.pipe, QUEUEID=self.queue)
    try:
      gc.regCP_HQD_DEQUEUE_REQUEST.write(DEQUEUE_REQ=request)
      if request == RESET_WAVES:
        gc.regSPI_COMPUTE_QUEUE_RESET.write(RESET=1)
      what = {DRAIN_PIPE: "DRAIN_PIPE", RESET_WAVES: "RESET_WAVES"}[request]
      wait_reg(gc.regCP_HQD_ACTIVE, 1, 0, f"{self.name} dequeue ({what})", timeout_s)
    finally:
      gc.regGRBM_GFX_CNTL.write(0)

  def unmap(self, drain_timeout_s: float = 0.5) -> None:
    """Take the queue off its HQD: drain (waves in flight finish), or, when they do not finish in time, kill them.

    Raises:
      AMTimeout: not even RESET_WAVES deactivated the HQD."""
    try:
      self.dequeue(DRAIN_PIPE, drain_timeout_s)
    except AMTimeout:
      self.dequeue(RESET_WAVES, 2.0)

  def reset(self) -> None:
    """Recover a hung or faulted queue: dequeue it with RESET_WAVES, empty the ring, map it again
    (gfx_v11_0_reset_kcq). The timeline goes on: values handed out before the reset that never signalled stay
    unsignalled until a later submission passes them.

    Raises:
      AMTimeout: the HQD did not deactivate. AMError: the MEC did not take the queue again."""
    self.dequeue(RESET_WAVES, 2.0)
    self.dev.vram.write(self.wb.offset, bytes(16))
    self.wptr = 0
    self.program()
