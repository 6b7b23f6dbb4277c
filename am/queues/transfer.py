"""Copies between the host and VRAM on the SDMA queue, through a staging buffer in system memory mapped in the VMID0
GART, ordered against one compute queue by waits between the queues rather than by the host waiting.

  copyin   the host writes the data into the staging buffer; the SDMA ring gets POLL_REGMEM on the compute queue's
           signal (the copy starts only once the compute work queued before it has finished), COPY_LINEAR staging ->
           VRAM, FENCE; the compute ring gets WAIT_REG_MEM on that fence (compute work queued after the copy starts
           only once it is done). The host does not wait, except for a staging region a queued copy still reads.
  copyout  POLL_REGMEM on the compute signal, COPY_LINEAR VRAM -> staging, FENCE; the host waits for the fence and
           reads the staging buffer. Later compute work needs no wait: the copy has ended when copyout returns.

Packets (layouts from the generated tables the emitters use; the fields as amdgpu fills them):
  SDMA POLL_REGMEM (sdma_v6_0_0_pkt_open.h SDMA_PKT_POLL_REGMEM, which sdma_v6_0.c and sdma_v7_0.c both include):
    HEADER op SDMA_OP_POLL_REGMEM (8), MEM_POLL 1 (a memory dword, not a register), HDP_FLUSH 0, FUNC; ADDR_LO (dword
    aligned), ADDR_HI; VALUE (reference); MASK; DW5 RETRY_COUNT 0xfff, INTERVAL 4. This is the packet of
    sdma_v6_0_ring_emit_pipeline_sync / sdma_v7_0_ring_emit_pipeline_sync, which wait for a fence word with FUNC 3
    (equal). Here FUNC 5 (>=), the WAIT_REG_MEM function encoding (nvd.h WAIT_REG_MEM_FUNCTION: 3 ==, 5 >=); amdgpu
    only ever emits 3 on SDMA, so that SDMA shares the encoding is an assumption (the simulated engine makes it too).
  PM4 WAIT_REG_MEM (nvd.h PACKET3_WAIT_REG_MEM, as gfx_v11_0.c / gfx_v12_0.c gfx_v1x_0_wait_reg_mem emits it for
    ring_emit_pipeline_sync): WAIT_CNTL FUNCTION 5 (>=), MEM_SPACE 1 (memory), OPERATION 0 (wait only), ENGINE 0 (ME);
    POLL_ADDRESS_LO / _HI; REFERENCE; MASK 0xffffffff; POLL_INTERVAL.

Signals: the compute signal is 64-bit (RELEASE_MEM DATA_SEL 2); POLL_REGMEM compares its low dword, which is right
while the queue has handed out fewer than 2^32 values. The SDMA fence is the 32-bit value of SdmaQueue.exec.
Both queues must be on VMID 0 (the GART): the engines read each other's signal words by their GART addresses.
"""
from __future__ import annotations

import numpy as np

from am.pm4.pm4 import PM4Stream
from am.pm4.sdma import MAX_COPY, SDMAStream
from am.queues.compute import COMPUTE_TIMEOUT_S

STAGING_BYTES = 2 << 20     # system memory (and GART pages) for staging: two chunks, so one fills while one copies
CHUNK_BYTES = 1 << 20
POLL_INTERVAL = 4           # sdma_v6_0_ring_emit_pipeline_sync's DW5 INTERVAL


def as_bytes(data) -> np.ndarray:
  """`data` (an ndarray or anything with the buffer protocol) as a flat uint8 array, without copying where it can."""
  if isinstance(data, np.ndarray):
    return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
  return np.frombuffer(memoryview(data).cast("B"), np.uint8)


def check_range(buf, offset: int, nbytes: int, what: str) -> None:
  """Raises: ValueError when [offset, +nbytes) is not inside `buf` (names the sizes)."""
  if offset < 0 or offset + nbytes > buf.size:
    raise ValueError(f"{what} of {nbytes} bytes at offset {offset} does not fit the {buf.size}-byte buffer at GPU "
                     f"address 0x{buf.va:x}; copy at most {max(buf.size - max(offset, 0), 0)} bytes there")


class Staging:
  """A ring of bytes in system memory mapped in the GART; each region queued copies still read is held with the SDMA
  fence value that frees it, and taking it again first waits for that value."""

  def __init__(self, dev, size: int):
    self.dma = dev.pci.alloc_dma(size)
    self.va = dev.gmc.map_system(self.dma)
    self.size = size
    self.top = 0
    self.held: list[tuple[int, int, int]] = []   # (start, end, SDMA fence value) of regions still in use

  def take(self, nbytes: int, sdma) -> int:
    """The offset of `nbytes` free bytes (waiting for the SDMA fences of queued copies that use them)."""
    if self.top + nbytes > self.size:
      self.top = 0
    start, end = self.top, self.top + nbytes
    fences = [fence for s, e, fence in self.held if s < end and start < e]
    if fences:
      sdma.wait(max(fences), timeout_s=COMPUTE_TIMEOUT_S)
    if self.held:
      reached = sdma.value()
      self.held = [h for h in self.held if h[2] > reached]
    self.top = end
    return start

  def hold(self, start: int, nbytes: int, fence: int) -> None:
    self.held.append((start, start + nbytes, fence))


class SdmaTransfers:
  """Host <-> VRAM copies on `sdma` ordered against `compute` (module docstring).

  Args:
    dev: the booted AMDevice. compute: its ComputeQueue on VMID 0 (dev.gfx.queue). sdma: default dev.sdma.queue.
    staging_bytes, chunk_bytes: the staging ring's size and the most one SDMA submission moves through it.
  Raises:
    ValueError: a compute queue on another VMID, or a chunk larger than half the staging ring.
  """

  def __init__(self, dev, compute, sdma=None, staging_bytes: int = STAGING_BYTES, chunk_bytes: int = CHUNK_BYTES):
    if compute.vmid != 0:
      raise ValueError(f"{compute.name}: SDMA transfers order against a compute queue on VMID 0 (the GART), where "
                       "the SDMA queue reads the signal")
    if not 0 < chunk_bytes <= staging_bytes // 2:
      raise ValueError(f"chunk of {chunk_bytes} bytes: 1 .. half the {staging_bytes}-byte staging ring")
    self.dev, self.compute = dev, compute
    self.sdma = dev.sdma.queue if sdma is None else sdma
    self.chunk = chunk_bytes
    self.staging = Staging(dev, staging_bytes)

  # ---- the two waits ----
  def poll_compute(self, stream: SDMAStream) -> SDMAStream:
    """Append POLL_REGMEM: stall the SDMA ring until the compute signal reaches the last value handed out."""
    signal = self.compute.signal
    return stream.poll_regmem(1, signal.va, signal.last & 0xFFFFFFFF, 0xFFFFFFFF, function=">=",
                              interval=POLL_INTERVAL)

  def compute_waits_for(self, fence: int) -> int:
    """Submit WAIT_REG_MEM on the SDMA fence to the compute queue; returns the compute value that marks it."""
    s = PM4Stream(self.dev.caps.gfx_generation).wait_mem(self.sdma.signal.va, fence, function=">=")
    return self.compute.exec(s)

  def sdma_copy(self, dst: int, src: int, nbytes: int, after_compute: bool = True) -> int:
    """Copy `nbytes` between GPU addresses on the SDMA ring, first waiting for the compute queue (`after_compute`);
    returns the SDMA fence value."""
    s = SDMAStream(self.dev.caps.sdma_generation)
    if after_compute and self.compute.signal.last:
      self.poll_compute(s)
    for done in range(0, nbytes, MAX_COPY):
      s.copy_linear(dst + done, src + done, min(MAX_COPY, nbytes - done))
    return self.sdma.exec(s)

  # ---- host copies ----
  def copyin(self, dst, data, offset: int = 0) -> int:
    """Queue a copy of `data` into `dst` (am.queues.dispatch.Buffer) at `offset`; returns the SDMA fence value.
    The host does not wait for the copy; compute work queued afterwards does.

    Raises:
      ValueError: the data does not fit the buffer (names the sizes)."""
    raw = as_bytes(data)
    check_range(dst, offset, raw.size, "copyin")
    fence = None
    for done in range(0, raw.size, self.chunk):
      n = min(self.chunk, raw.size - done)
      at = self.staging.take(n, self.sdma)
      self.staging.dma.bytes[at:at + n] = raw[done:done + n]
      fence = self.sdma_copy(dst.va + offset + done, self.staging.va + at, n, after_compute=fence is None)
      self.staging.hold(at, n, fence)
    if fence is None:
      return self.sdma.last
    self.compute_waits_for(fence)
    return fence

  def copyout(self, src, out: np.ndarray, offset: int = 0) -> np.ndarray:
    """Copy `out.nbytes` bytes of `src` (a Buffer) at `offset` into `out` (contiguous) once the compute work queued
    before has finished; waits for the copy.

    Raises:
      ValueError: the range does not fit the buffer (names the sizes). AMFault / AMTimeout: from the SDMA wait."""
    if not out.flags.c_contiguous:
      raise ValueError(f"copyout into a non-contiguous array of shape {out.shape}: pass a contiguous one")
    dst = out.reshape(-1).view(np.uint8)
    check_range(src, offset, dst.size, "copyout")
    for done in range(0, dst.size, self.chunk):
      n = min(self.chunk, dst.size - done)
      at = self.staging.take(n, self.sdma)
      fence = self.sdma_copy(self.staging.va + at, src.va + offset + done, n, after_compute=done == 0)
      self.sdma.wait(fence, timeout_s=COMPUTE_TIMEOUT_S)
      dst[done:done + n] = self.staging.dma.bytes[at:at + n]
    return out
