"""A fixed list of kernel launches recorded once into one indirect buffer and resubmitted as a whole: the AM side of
command-queue replay (a frontend TinyJit capture, a .sovreplay step).

    launches = LaunchList(dev, queue)
    for kern, args, grid, block in step:
      launches.add(kern, args, grid, block)       # ACQUIRE_MEM + the dispatch's PM4, kernargs in the list's arena
    launches.finalize()
    value = launches.submit()                    # one INDIRECT_BUFFER packet and the queue's signal
    launches.set_args(i, new_args)               # rewrite launch i's kernarg segment; the PM4 stays as recorded

Each launch's kernarg segment (and dispatch packet, queue area when its kernel asks) lives in an arena of the list's
own, sized so it never wraps: nothing but set_args rewrites it, and set_args first waits for the previous submission,
which may still be reading it.
"""
from __future__ import annotations

from am.queues.dispatch import KERNARG_ALIGN, CommandBuffer, KernargArena, kernel_user_values
from am.queues.kernel import GpuKernel, triple

PM4_BYTES_PER_LAUNCH = 512   # ACQUIRE_MEM + a dispatch's register writes, DISPATCH_DIRECT and partial flush, rounded up


class LaunchList:
  """Launches on `queue` of the booted AMDevice `dev`, in order, each after the one before it has finished (every
  dispatch ends with a CS partial flush and the next begins with ACQUIRE_MEM, am.queues.kernel)."""

  def __init__(self, dev, queue):
    self.dev, self.queue = dev, queue
    self.pending: list[tuple[GpuKernel, tuple, tuple, tuple]] = []
    self.launches: list[tuple[GpuKernel, tuple, tuple]] = []   # kernel, grid, block
    self.kernargs: list[int] = []   # offset of each launch's kernarg segment in the arena
    self.arena: KernargArena | None = None
    self.cb: CommandBuffer | None = None
    self.last = 0   # the queue's signal value of the last submission

  def add(self, kern: GpuKernel, args, grid, block) -> int:
    """Append a launch; returns its index (for set_args)."""
    if self.cb is not None:
      raise RuntimeError("this LaunchList is finalized; build a new one to add launches")
    grid, block = triple(grid, "grid"), triple(block, "block")
    kern.kernargs(tuple(args), grid, block)   # checks the arguments now, not at finalize
    self.pending.append((kern, tuple(args), grid, block))
    return len(self.pending) - 1

  def finalize(self) -> LaunchList:
    """Write the kernarg segments and record the PM4 into GPU memory (once; submit calls it when needed)."""
    if self.cb is not None:
      return self
    if not self.pending:
      raise ValueError("a LaunchList needs at least one launch")
    # kernargs, plus a dispatch packet and a queue area if the kernel asks for them
    size = sum(-(-k.kernel.kernarg_size // KERNARG_ALIGN) * KERNARG_ALIGN + 2 * KERNARG_ALIGN
               for k, _, _, _ in self.pending)
    self.arena = KernargArena(self.dev, self.queue, size)
    self.cb = CommandBuffer(self.dev, -(-PM4_BYTES_PER_LAUNCH * len(self.pending) // 4096) * 4096)
    for kern, args, grid, block in self.pending:
      user = kernel_user_values(self.queue, kern, args, grid, block, arena=self.arena)
      self.kernargs.append(user["kernarg"] - self.arena.buf.va)
      self.cb.stream.acquire_mem()
      kern.emit(self.cb.stream, grid, block, user)
      self.launches.append((kern, grid, block))
    self.pending.clear()
    self.cb.upload()
    return self

  def set_args(self, index: int, args) -> None:
    """New arguments for launch `index` from the next submission on (waits for the previous one first)."""
    self.finalize()
    kern, grid, block = self.launches[index]
    segment = kern.kernargs(tuple(args), grid, block)
    self.queue.wait(self.last)
    self.arena.buf.write(segment, self.kernargs[index])

  def submit(self) -> int:
    """Queue every launch with one INDIRECT_BUFFER packet; returns the queue's signal value that marks the end."""
    self.finalize()
    self.last = self.cb.submit(self.queue)
    return self.last
