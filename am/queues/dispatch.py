"""GPU buffers, kernel dispatch on a compute queue, and prebuilt command buffers (indirect buffers) resubmitted with
one INDIRECT_BUFFER packet and patched values.

    buf = Buffer(dev, 4 * n).write(np.arange(n, dtype=np.float32))
    kern = GpuKernel(dev, load_code_object(blob), "vadd")
    queue = dev.gfx.queue
    queue.wait(dispatch(queue, kern, [a.va, b.va, out.va], grid=(n // 64,), block=(64,)))
    out.read(np.float32, n)

    cb = CommandBuffer(dev)                          # record once ...
    kern.emit(cb.stream, grid, block, kernel_user_values(queue, kern, args, grid, block))
    queue.wait(cb.submit(queue))                     # ... submit: INDIRECT_BUFFER + the queue's signal
    cb.patch("kernarg.lo", other_kernargs_va)        # rewrite marked dwords in GPU memory, submit again

Host writes reach VRAM through BAR 0; the queue flushes HDP before every doorbell, so buffers written before a
submission are visible to it.
"""
from __future__ import annotations

import numpy as np

from am.pm4.pm4 import PM4Stream
from am.queues.kernel import GpuKernel, triple

KERNARG_ARENA = 256 << 10
KERNARG_ALIGN = 256


class Buffer:
  """GPU memory mapped in dev.gmc's address space (the VMID0 GART; a GpuVm's through its VmDevice): `va` for the GPU,
  read/write from the host through BAR 0."""

  def __init__(self, dev, size: int):
    if size <= 0:
      raise ValueError(f"buffer size must be positive, got {size}")
    self.dev, self.size = dev, size
    self.mem = dev.gmc.alloc(size)
    self.va = self.mem.va

  def write(self, data, offset: int = 0) -> Buffer:
    raw = np.ascontiguousarray(data).tobytes() if isinstance(data, np.ndarray) else bytes(data)
    if offset < 0 or offset + len(raw) > self.size:
      raise ValueError(f"write of {len(raw)} bytes at {offset} runs past the {self.size}-byte buffer")
    self.dev.vram.write(self.mem.offset + offset, raw)
    return self

  def read(self, dtype=np.uint8, count: int | None = None, offset: int = 0) -> np.ndarray:
    dt = np.dtype(dtype)
    count = (self.size - offset) // dt.itemsize if count is None else count
    if offset < 0 or offset + count * dt.itemsize > self.size:
      raise ValueError(f"read of {count} x {dt} at {offset} runs past the {self.size}-byte buffer")
    return np.frombuffer(self.dev.vram.read(self.mem.offset + offset, count * dt.itemsize), dtype=dt).copy()


class KernargArena:
  """Kernarg segments (and dispatch packets) handed out round-robin from one buffer of the queue's address space; before
  wrapping it waits for the queue to drain, so a segment is never rewritten while a dispatch may still read it."""

  def __init__(self, dev, queue, size: int = KERNARG_ARENA):
    self.buf, self.queue = Buffer(dev, size), queue
    self.top = 0

  def put(self, data: bytes) -> int:
    size = -(-len(data) // KERNARG_ALIGN) * KERNARG_ALIGN
    if size > self.buf.size:
      raise ValueError(f"kernarg segment of {len(data)} bytes is larger than the arena ({self.buf.size})")
    if self.top + size > self.buf.size:
      self.queue.wait()
      self.top = 0
    at = self.top
    self.buf.write(data, at)
    self.top += size
    return self.buf.va + at


def arena_of(queue) -> KernargArena:
  if queue.kernargs is None:
    queue.kernargs = KernargArena(queue.dev, queue)
  return queue.kernargs


def kernel_user_values(queue, kern: GpuKernel, args, grid, block, arena: KernargArena | None = None) -> dict[str, int]:
  """Write the kernarg segment (and the dispatch packet / queue area if the kernel asks) to `arena` (default: the
  queue's round-robin one; a command buffer replayed later passes an arena of its own, sized not to wrap)."""
  grid, block = triple(grid, "grid"), triple(block, "block")
  arena = arena_of(queue) if arena is None else arena
  kernarg = arena.put(kern.kernargs(tuple(args), grid, block))
  user = {"kernarg": kernarg, "dispatch_id": 0, "private_segment_size": 0}
  keys = {key for key, _ in kern.user_sgprs}
  if "dispatch_ptr" in keys:
    user["dispatch_ptr"] = arena.put(kern.dispatch_packet(grid, block, kernarg))
  if "queue_ptr" in keys:
    user["queue_ptr"] = arena.put(bytes(256))
  return user


def dispatch(queue, kern: GpuKernel, args, grid, block, dynamic_lds: int = 0) -> int:
  """Run `kern` over `grid` workgroups of `block` work-items; returns the queue's signal value to wait for.

  Raises:
    ValueError: arguments, grid or block that do not fit the kernel (see GpuKernel.kernargs / emit)."""
  user = kernel_user_values(queue, kern, args, grid, block)
  s = PM4Stream(queue.dev.caps.gfx_generation)
  s.acquire_mem()
  kern.emit(s, grid, block, user, dynamic_lds)
  return queue.exec(s)


class CommandBuffer:
  """PM4 recorded once into GPU memory (dev.gmc's address space) and run with one INDIRECT_BUFFER packet per submission.
  Values marked while recording (PM4Stream.mark, set_sh_reg names, write_data name, release_mem name) can be patched
  between submissions; the patch rewrites those dwords in GPU memory.

  Args:
    dev: the booted AMDevice. capacity: bytes reserved for the recording (a multiple of 4 KiB is allocated).
  """

  def __init__(self, dev, capacity: int = 16 << 10):
    self.dev = dev
    self.stream = PM4Stream(dev.caps.gfx_generation)
    self.buf = Buffer(dev, capacity)
    self.uploaded = 0

  def upload(self) -> CommandBuffer:
    data = self.stream.tobytes()
    if len(data) > self.buf.size:
      raise ValueError(f"command buffer of {len(data)} bytes exceeds its capacity {self.buf.size}; make it larger")
    self.buf.write(data)
    self.uploaded = len(self.stream)
    return self

  def patch(self, name: str, value: int) -> None:
    """Rewrite the dwords marked `name` (the low 32 bits of `value`) in the recording and in GPU memory.

    Raises:
      KeyError: no dword was marked `name`."""
    self.stream.patch(name, value)
    for index in self.stream.marks[name]:
      self.buf.write(self.stream.words[index:index + 1].tobytes(), index * 4)

  def submit(self, queue) -> int:
    """INDIRECT_BUFFER to the recording, then the queue's signal; returns the value to wait for."""
    if self.uploaded != len(self.stream):
      self.upload()
    s = PM4Stream(queue.dev.caps.gfx_generation)
    s.indirect_buffer(self.buf.va, len(self.stream))
    return queue.exec(s)
