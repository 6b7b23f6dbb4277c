"""A fixed list of kernel launches recorded once into one indirect buffer and resubmitted as a whole: the AM side of
command-queue replay (a frontend TinyJit capture, a .sovreplay step).

    launches = LaunchList(dev, queue)
    for kern, args, grid, block, after in step:
      launches.add(kern, args, grid, block, after=after)   # after: the earlier launches this one waits for
    launches.finalize()                          # the dispatches' PM4 and the barriers `after` asks for
    value = launches.submit()                    # one INDIRECT_BUFFER packet and the queue's signal
    launches.set_args(i, new_args)               # rewrite launch i's kernarg segment; the PM4 stays as recorded

Ordering: dispatches on one queue that no CS_PARTIAL_FLUSH separates may run at the same time (the CP starts the next
dispatch's waves while earlier ones still run; the partial flush waits until the compute shaders before it have
finished, which is why radeonsi's si_emit_cache_flush and radv's cache-flush code emit it between dependent
dispatches). So the list records
  ACQUIRE_MEM, dispatch 0, [CS_PARTIAL_FLUSH, ACQUIRE_MEM,] dispatch 1, ..., dispatch n-1, CS_PARTIAL_FLUSH
with a barrier (the bracketed pair) before dispatch j only when a launch in its `after` list was dispatched since the
last barrier: a launch dispatched before that barrier has finished already. Independent launches share a barrier-free
run. The first ACQUIRE_MEM makes host writes visible; the closing partial flush keeps the queue's completion signal
after every dispatch. `after=None` waits for every earlier launch (a barrier before each dispatch, the order of
am.queues.dispatch). `barriers` counts the barriers between dispatches.

Each launch's kernarg segment (and dispatch packet, queue area when its kernel asks) lives in an arena of the list's
own, sized so it never wraps: nothing but set_args rewrites it, and set_args first waits for the previous submission,
which may still be reading it.
"""
from __future__ import annotations

import numbers

from am.queues.dispatch import KERNARG_ALIGN, CommandBuffer, KernargArena, kernel_user_values
from am.queues.kernel import CS_PARTIAL_FLUSH_INDEX, GpuKernel, triple

PM4_BYTES_PER_LAUNCH = 512   # partial flush, ACQUIRE_MEM, a dispatch's register writes and DISPATCH_DIRECT; rounded up
PM4_END_BYTES = 8            # the closing EVENT_WRITE CS_PARTIAL_FLUSH


class LaunchList:
  """Launches on `queue` of the booted AMDevice `dev`, dispatched in order, each after the earlier launches it names
  (`after`) have finished; the module docstring says where the barriers go."""

  def __init__(self, dev, queue):
    self.dev, self.queue = dev, queue
    self.pending: list[tuple[GpuKernel, tuple, tuple, tuple, tuple]] = []   # kernel, args, grid, block, after
    self.launches: list[tuple[GpuKernel, tuple, tuple]] = []   # kernel, grid, block
    self.kernargs: list[int] = []   # offset of each launch's kernarg segment in the arena
    self.arena: KernargArena | None = None
    self.cb: CommandBuffer | None = None
    self.last = 0   # the queue's signal value of the last submission
    self.barriers = 0   # CS_PARTIAL_FLUSH + ACQUIRE_MEM pairs between dispatches (set by finalize)

  def add(self, kern: GpuKernel, args, grid, block, after=None) -> int:
    """Append a launch; returns its index (for set_args).

    Args:
      after: indices of earlier launches this one must wait for (what it reads they write, or what it writes they
        read or write: tools.replay_format.launch_dependencies); None waits for every earlier launch.
    Raises:
      RuntimeError: the list is finalized. ValueError: bad arguments, or `after` names something other than an
        earlier launch."""
    if self.cb is not None:
      raise RuntimeError("this LaunchList is finalized; build a new one to add launches")
    index = len(self.pending)
    waits = earlier_launches(after, index)
    grid, block = triple(grid, "grid"), triple(block, "block")
    kern.kernargs(tuple(args), grid, block)   # checks the arguments now, not at finalize
    self.pending.append((kern, tuple(args), grid, block, waits))
    return index

  def finalize(self) -> LaunchList:
    """Write the kernarg segments and record the PM4 into GPU memory (once; submit calls it when needed)."""
    if self.cb is not None:
      return self
    if not self.pending:
      raise ValueError("a LaunchList needs at least one launch")
    # kernargs, plus a dispatch packet and a queue area if the kernel asks for them
    size = sum(-(-k.kernel.kernarg_size // KERNARG_ALIGN) * KERNARG_ALIGN + 2 * KERNARG_ALIGN
               for k, *_ in self.pending)
    self.arena = KernargArena(self.dev, self.queue, size)
    pm4_bytes = PM4_BYTES_PER_LAUNCH * len(self.pending) + PM4_END_BYTES
    self.cb = CommandBuffer(self.dev, -(-pm4_bytes // 4096) * 4096)
    s = self.cb.stream
    since: set[int] = set()   # launches dispatched since the last barrier: they may still be running
    for index, (kern, args, grid, block, after) in enumerate(self.pending):
      user = kernel_user_values(self.queue, kern, args, grid, block, arena=self.arena)
      self.kernargs.append(user["kernarg"] - self.arena.buf.va)
      if index == 0:
        s.acquire_mem()   # the first dispatch sees what the host wrote
      elif since.intersection(after):
        s.event_write("CS_PARTIAL_FLUSH", CS_PARTIAL_FLUSH_INDEX)   # wait for the dispatches in flight ...
        s.acquire_mem()                                             # ... and see what they wrote
        self.barriers += 1
        since.clear()
      kern.emit(s, grid, block, user, flush=False)
      since.add(index)
      self.launches.append((kern, grid, block))
    s.event_write("CS_PARTIAL_FLUSH", CS_PARTIAL_FLUSH_INDEX)   # the queue's signal comes after every dispatch
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


def earlier_launches(after, index: int) -> tuple[int, ...]:
  """`after` checked for launch `index`: every earlier launch for None, else the given indices, each in 0..index-1.

  Raises:
    ValueError: `after` is not a collection of ints, or names a launch that is not earlier than `index`."""
  if after is None:
    return tuple(range(index))
  iterable = hasattr(after, "__iter__") and not isinstance(after, (str, bytes))
  items = list(after) if iterable else []
  if not iterable or not all(isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in items):
    raise ValueError(f"launch {index}: after={after!r} must be indices of earlier launches (ints)")
  values = tuple(int(a) for a in items)
  bad = [a for a in values if not 0 <= a < index]
  if bad:
    raise ValueError(f"launch {index}: after={list(values)} names {bad}, not earlier launches (0..{index - 1}); a "
                     "launch can only wait for launches added before it")
  return values
