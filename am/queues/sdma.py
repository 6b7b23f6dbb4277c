"""The SDMA queue (engine 0, queue 0) that am/ip/sdma.py programs: copies, fences and timestamps.

Ring protocol (sdma_v6_0.c / sdma_v7_0.c): the write pointer is in bytes (64-bit, never wrapping here; the ring offset
is wptr modulo the ring size); the doorbell carries it (sdma_v6_0_ring_set_wptr: WDOORBELL64(ring->wptr << 2)); the
engine writes its 64-bit byte read pointer to RB_RPTR_ADDR (RPTR_WRITEBACK_ENABLE). One dword always stays free.
Completion: a FENCE of a 32-bit timeline value to the queue's signal word; `copy` splits into COPY_LINEAR packets of
at most MAX_COPY bytes (the COUNT field, sdma_v6_0_0_pkt_open.h).
"""
from __future__ import annotations

from am import debug
from am.pm4.decode import format_sdma
from am.pm4.sdma import MAX_COPY, SDMAStream
from am.queues.compute import wait_value


class SdmaQueue:
  """Args: dev: the AMDevice; ring, wb: the ring and write-back allocations of the Sdma block; doorbell: its slot."""

  def __init__(self, dev, ring, wb, doorbell: int):
    self.dev, self.ring, self.wb, self.doorbell = dev, ring, wb, doorbell
    self.ring_bytes = ring.size
    self.wptr = 0
    self.signal = dev.gmc.alloc(4096)   # fence value (u32) at +0, timestamps (u64) from +8
    self.last = 0

  def reset_pointers(self) -> None:
    self.wptr = 0
    self.dev.vram.write(self.wb.offset, bytes(8))

  def rptr(self) -> int:
    """The engine's read pointer in bytes (64-bit, as it writes it back)."""
    return self.dev.vram.read64(self.wb.offset)

  def free(self) -> int:
    """Bytes that can be written without overtaking the read pointer (one dword stays free)."""
    return self.ring_bytes - 4 - (self.wptr - self.rptr())

  def submit(self, stream: SDMAStream, timeout_s: float = 2.0) -> None:
    """Copy `stream` to the ring (wrapping), flush HDP, ring the doorbell with the byte write pointer.

    Raises:
      ValueError: larger than the ring. AMTimeout / AMFault: no space came free."""
    data = stream.tobytes()
    if len(data) >= self.ring_bytes:
      raise ValueError(f"an SDMA submission of {len(data)} bytes does not fit the {self.ring_bytes}-byte ring")
    wait_value(self.dev, self.free, len(data), "SDMA ring space", timeout_s, self.describe)
    at = self.wptr % self.ring_bytes
    first = min(len(data), self.ring_bytes - at)
    self.dev.vram.write(self.ring.offset + at, data[:first])
    if first < len(data):
      self.dev.vram.write(self.ring.offset, data[first:])
    self.wptr += len(data)
    self.dev.soc.hdp_flush()
    self.dev.doorbells.write64(self.doorbell * 8, self.wptr)
    debug.log(debug.STAGES, f"SDMA queue: {len(data) // 4} dwords submitted, wptr 0x{self.wptr:x} (bytes)")
    if debug.enabled(debug.PACKETS):
      lines = format_sdma(list(stream.words), stream.version)
      debug.log(debug.PACKETS, "\n".join("    " + line for line in lines))

  def exec(self, stream: SDMAStream) -> int:
    """Submit `stream` followed by a FENCE of the next timeline value; returns it."""
    self.last += 1
    stream.fence(self.signal.va, self.last)
    self.submit(stream)
    return self.last

  def value(self) -> int:
    """The fence value the engine wrote last (u32 at the signal's +0)."""
    return self.dev.vram.read32(self.signal.offset)

  def wait(self, value: int | None = None, timeout_s: float = 5.0) -> None:
    """Raises: AMFault (a fault on the IH ring), AMTimeout."""
    target = self.last if value is None else value
    wait_value(self.dev, self.value, target, "SDMA fence", timeout_s, self.describe)

  def copy(self, dst: int, src: int, nbytes: int) -> int:
    """Copy `nbytes` from GPU address `src` to `dst`; returns the fence value to wait for."""
    s = SDMAStream(self.dev.caps.sdma_generation)
    for done in range(0, nbytes, MAX_COPY):
      s.copy_linear(dst + done, src + done, min(MAX_COPY, nbytes - done))
    return self.exec(s)

  def timestamp(self) -> int:
    """Write the GPU clock from the engine, wait, and return it."""
    s = SDMAStream(self.dev.caps.sdma_generation)
    s.timestamp(self.signal.va + 8)
    self.wait(self.exec(s))
    return self.dev.vram.read64(self.signal.offset + 8)

  def describe(self) -> str:
    rptr = self.rptr()
    words = [self.dev.vram.read32(self.ring.offset + (rptr + 4 * i) % self.ring_bytes)
             for i in range(min((self.wptr - rptr) // 4, 32))]
    lines = format_sdma(words, self.dev.caps.sdma_generation)[:8]
    return f"SDMA rptr 0x{rptr:x}, wptr 0x{self.wptr:x}; next: " + " | ".join(lines)
