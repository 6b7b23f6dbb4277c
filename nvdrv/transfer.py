"""Copies between host memory and the GPU through the copy engine.

- `memcpy(dst_va, src_va, n)`: one queued copy between any two GPU-visible addresses (device memory, pinned host
  memory), split into launches of at most COPY_CHUNK bytes (the LINE_LENGTH_IN field is 32 bits wide).
- `copyin` / `copyout`: from or to ordinary (pageable) host memory, through two pinned staging buffers used in turn,
  so the CPU fills one while the copy engine drains the other.
- Buffers up to SMALL_COPY bytes go through one staging slot and a single submission.

Ordering: the copy channel first waits (semaphore acquire) for the compute channel's last submitted value, so a copy
never overtakes a kernel queued before it. Kernels queued after a copyin see its data: `copyin` returns when the copy
is done, or with wait=False as soon as it is queued: the next compute submission (a launch, a CommandBuffer) then starts
with a semaphore acquire of the copy channel's value (`order_compute_after_copies`), so the GPU keeps the order and
the host never waits for the copy.
"""
from __future__ import annotations

import numpy as np

from nvdrv.builtins import COPY_CONFIG, H100_SMS, copy16_ptx
from nvdrv.memory import GPUMemory
from nvdrv.pushbuf import PushBuffer

COPY_CHUNK = 1 << 31
STAGING_BYTES = 32 << 20


class TransferMixin:
  """Copy methods of NVDevice (needs self.copy, self.compute, self.mem, self.osif)."""

  def _staging(self) -> list[GPUMemory]:
    if not getattr(self, "_staging_bufs", None):
      self._staging_bufs = [self.mem.alloc_host(STAGING_BYTES) for _ in range(2)]
      self._staging_done = [0, 0]
    return self._staging_bufs

  def copy_pushbuffer(self, dst: int, src: int, nbytes: int) -> PushBuffer:
    pb = PushBuffer()
    if self.compute.value:
      pb.semaphore_acquire(self.compute.semaphore, self.compute.value)
    for offset in range(0, nbytes, COPY_CHUNK):
      pb.copy(dst + offset, src + offset, min(COPY_CHUNK, nbytes - offset))
    return pb

  def memcpy(self, dst: int, src: int, nbytes: int, wait: bool = True) -> int:
    """Copy `nbytes` between GPU virtual addresses on the copy engine; returns the copy channel's timeline value."""
    if nbytes <= 0:
      raise ValueError(f"memcpy of {nbytes} bytes: the size must be positive")
    value = self.copy.submit(self.copy_pushbuffer(dst, src, nbytes))
    if wait:
      self.copy.wait(value)
    return value

  def copy_device(self, dst: GPUMemory, src: GPUMemory, nbytes: int, wait: bool = True) -> None:
    """Device-to-device copy of `nbytes` from the start of `src` to `dst`: the 16-byte-aligned bulk runs on the
    SMs (nvdrv.builtins.copy16, ~15x the copy engine's rate between HBM buffers), a tail of < 16 bytes on the copy
    engine."""
    self._check_range(src, 0, nbytes, "copy_device source")
    self._check_range(dst, 0, nbytes, "copy_device destination")
    bulk = nbytes & ~15
    if bulk:
      self.copy_kernel()(dst, src, bulk // 16, **self.copy_geometry(bulk // 16))
    if nbytes > bulk:
      self.compute.synchronize()
      self.memcpy(dst.va + bulk, src.va + bulk, nbytes - bulk)
    if wait:
      self.compute.synchronize()

  def copy_kernel(self, config=None):
    """The SM copy kernel (nvdrv.builtins.copy16) for `config` (default COPY_CONFIG), assembled once per config."""
    from nvdrv.compile import compile_ptx
    from nvdrv.program import Program
    config = config or COPY_CONFIG
    kernels = self.__dict__.setdefault("_copy_kernels", {})
    if config not in kernels:
      kernels[config] = Program(self, compile_ptx(copy16_ptx(config.unroll, config.load, config.store)), "copy16")
    return kernels[config]

  @staticmethod
  def copy_geometry(n16: int, config=None) -> dict:
    """Grid and block of copy16 over n16 vectors: one vector per thread up to blocks_per_sm blocks per SM."""
    config = config or COPY_CONFIG
    blocks = min((n16 + config.block - 1) // config.block, config.blocks_per_sm * H100_SMS)
    return {"grid": (max(blocks, 1), 1, 1), "block": (config.block, 1, 1)}

  def _check_range(self, mem: GPUMemory, offset: int, nbytes: int, what: str) -> None:
    mem.check_live(what)
    if offset < 0 or nbytes < 0 or offset + nbytes > mem.size:
      raise ValueError(f"{what}: bytes [{offset}, {offset + nbytes}) are outside the {mem.size}-byte buffer at "
                       f"GPU VA 0x{mem.va:x}")

  def claim_copies(self) -> int:
    """The copy channel's last timeline value if compute work queued now would not wait for it yet, else 0; a value
    returned counts as awaited from then on, so the caller must put its acquire in the compute submission it builds
    (order_compute_after_copies, CommandBuffer.submit)."""
    value = self.copy.value
    if value <= self.compute.acquired.get(self.copy.semaphore, 0):
      return 0
    self.compute.acquired[self.copy.semaphore] = value
    return value

  def order_compute_after_copies(self, pb: PushBuffer | None = None) -> None:
    """Make compute work queued from now on wait, on the GPU, for every copy queued so far: a semaphore acquire of the
    copy channel's timeline, appended to `pb` (a compute submission being built) or else queued on its own; nothing
    when the compute channel already waits for that value. Program launches call it."""
    value = self.claim_copies()
    if value and pb is not None:
      pb.semaphore_acquire(self.copy.semaphore, value)
    elif value:
      self.compute.submit(PushBuffer().semaphore_acquire(self.copy.semaphore, value))

  def copyin(self, mem: GPUMemory, data, offset: int = 0, wait: bool = True) -> None:
    """Copy host `data` (bytes-like or numpy array) into `mem` at `offset`; returns when the GPU has it, or with
    wait=False once the copy is queued; compute work queued later waits for it on the GPU (the data is in pinned
    staging memory by then, so the caller may reuse `data` at once)."""
    src = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    self._check_range(mem, offset, src.nbytes, "copyin")
    if mem.host:
      self.osif.write(mem.cpu + offset, src.tobytes())
      return
    staging = self._staging()
    for i, start in enumerate(range(0, src.nbytes, STAGING_BYTES)):
      chunk = src[start:start + STAGING_BYTES]
      slot = i % 2
      self.copy.wait(self._staging_done[slot])  # the copy that last read this staging buffer is finished
      buf = staging[slot]
      self.osif.view(buf.cpu, chunk.nbytes)[:] = chunk.data
      self._staging_done[slot] = self.memcpy(mem.va + offset + start, buf.va, chunk.nbytes, wait=False)
    if wait:
      self.copy.synchronize()
      self.compute.acquired[self.copy.semaphore] = self.copy.value  # done: nothing left for the GPU to await
    # else the next compute submission acquires the copy's value first (order_compute_after_copies)

  def copyout(self, mem: GPUMemory, nbytes: int | None = None, offset: int = 0) -> np.ndarray:
    """`nbytes` of `mem` from `offset` as a new uint8 array, after all queued work is done."""
    nbytes = mem.size - offset if nbytes is None else nbytes
    self._check_range(mem, offset, nbytes, "copyout")
    out = np.empty(nbytes, np.uint8)
    if mem.host:
      self.compute.synchronize()
      self.copy.synchronize()
      out[:] = np.frombuffer(self.osif.view(mem.cpu + offset, nbytes), np.uint8)
      return out
    staging = self._staging()
    pending = []
    for i, start in enumerate(range(0, nbytes, STAGING_BYTES)):
      n = min(STAGING_BYTES, nbytes - start)
      if len(pending) == 2:
        self._drain(pending.pop(0), out)
      buf = staging[i % 2]
      pending.append((self.memcpy(buf.va, mem.va + offset + start, n, wait=False), buf, start, n))
    for item in pending:
      self._drain(item, out)
    return out

  def _drain(self, item, out: np.ndarray) -> None:
    value, buf, start, n = item
    self.copy.wait(value)
    out[start:start + n] = np.frombuffer(self.osif.view(buf.cpu, n), np.uint8)
