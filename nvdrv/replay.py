"""Prebuilt command buffers: build a sequence of kernel launches (and copies) once, resubmit it with one GPFIFO entry.

Everything the GPU reads for the sequence is owned by the CommandBuffer: the pushbuffer in pinned host memory, each
launch's QMD and constant bank 0 in device memory (written through BAR1). A resubmission writes nothing but the
values that change:

  - the timeline payload of the closing semaphore release (always: it is how the host learns the run finished);
  - kernel parameters named at build time (`CommandBuffer.set_arg`), e.g. the input buffer addresses of a JIT replay,
    written into the launch's constant bank in place.

  - the payload of the semaphore acquire that opens the buffer, when copies were queued since the last compute
    submission (nvdrv.transfer.order_compute_after_copies): the launches then wait for them on the GPU.

Resubmitting then costs one GPFIFO entry and a doorbell write: `submit()` does no allocation and builds no methods.

In dep mode the launches form a dependency graph in hardware: each QMD carries a dependence counter and names up to
two dependent QMDs whose counters it decrements when its grid completes (`qmd_edges` maps any list of "launch j
waits for launches i" onto that), so launches that do not depend on each other run at the same time.
A CommandBuffer may not be resubmitted while its previous run is still queued (the patched words would race the GPU);
`submit` waits for that run first.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from nvdrv.memory import GPUMemory
from nvdrv.program import Program
from nvdrv.pushbuf import PushBuffer

SLOT_ALIGN = 256


DEPENDENT_SLOTS = 2  # dependent QMDs one QMD can name (V04_00 DEPENDENT_QMD_ENABLE(0..1), clcbc0qmd.h)


def _bits(mask: int):
  while mask:
    low = mask & -mask
    yield low.bit_length() - 1
    mask ^= low


def qmd_edges(after: list[list[int]], slots: int = DEPENDENT_SLOTS) -> list[list[int]]:
  """Hardware edges for a launch list: out[k] = the launches whose dependence counter launch k decrements when it
  completes, such that for every j and every i in after[j] (i < j), a path of edges leads from i to j.

  A QMD names at most `slots` dependents, and the timeline is released by the last launch alone, so:
    - edges the others already imply are dropped (the latest required launch is linked first);
    - where launch i's slots are full, the edge starts at its earliest descendant with a free slot (one always exists:
      its latest descendant has no edges yet), which adds ordering but never loses any;
    - every launch without dependents is linked to the last launch, which thus follows all of them.
  Edges only point forward, so the graph has no cycles."""
  n = len(after)
  out: list[list[int]] = [[] for _ in range(n)]
  ancestors, descendants = [0] * n, [0] * n  # bitsets
  for j in range(n):
    need = set(after[j])
    if j == n - 1:
      need.update(k for k in range(n - 1) if not out[k])
    for i in sorted(need, reverse=True):
      if ancestors[j] >> i & 1:
        continue
      host = i if len(out[i]) < slots else next(k for k in _bits(descendants[i]) if len(out[k]) < slots)
      out[host].append(j)
      reach = ancestors[host] | 1 << host
      ancestors[j] |= reach
      for a in _bits(reach):
        descendants[a] |= 1 << j
  return out


@dataclass
class _Launch:
  program: Program
  cbuf: int  # CPU address (BAR1) of this launch's constant bank 0


class CommandBuffer:
  """A reusable sequence of launches on `dev`'s compute channel."""

  def __init__(self, dev, mode: str = "barrier", inner_membar: int = 3, prefetch: bool = False,
               task_chasing: bool = False):
    """mode: how a launch waits for the one before it.
      barrier: a wait-for-idle between launches in the pushbuffer (nvdrv.device.NVDevice.barrier);
      chain:   only the first QMD is sent; each grid starts the next when it completes (DEPENDENT_QMD0 with action
               INVALIDATE_COPY_SCHEDULE) and the last releases the timeline semaphore itself;
      dep:     every QMD is sent up front; a QMD waits on a dependence counter that the grids it depends on
               decrement when they complete (DEPENDENT_QMDn action DECREMENT_DEPENDENCE), so its QMD and constants
               are already fetched when its turn comes; the last releases the semaphore. By default launch i depends
               on launch i-1; `launch(..., after=[...])` names the launches it depends on instead (none: it starts
               at once), and launches with no path between them run concurrently.
    Launches with barrier=False only make sense in barrier mode.
    inner_membar (chain and dep): the CWD_MEMBAR_TYPE of every grid but the last, the memory barrier its end runs
      before the next grid may start: L1_MEMBAR 3 (GPU scope: the next reader is a grid on this GPU; default),
      L1_SYSMEMBAR 1 (system scope, what a lone launch needs before the host reads), L1_NONE 0 (measurements only).
      The last grid keeps the device's CWD membar and releases the timeline with FE_SYSMEMBAR, so the host sees
      every grid's writes once it sees the payload.
    prefetch, task_chasing (chain and dep; measured by tools/bench_nv.py, off by default): set each link's
      DEPENDENT_QMD_PREFETCH and each linking grid's CWD_MEMBAR_TASK_CHASING_ENABLE (QMD V04 bits 372+5i and 382,
      clcbc0qmd.h; what the hardware does with them is not documented: only timings and results say)."""
    if mode not in ("barrier", "chain", "dep"):
      raise ValueError(f"CommandBuffer mode {mode!r}: use 'barrier', 'chain' or 'dep'")
    if inner_membar not in (0, 1, 3):
      raise ValueError(f"inner_membar {inner_membar}: use 3 (GPU scope), 1 (system scope) or 0 (none)")
    self.inner_membar, self.prefetch, self.task_chasing = inner_membar, prefetch, task_chasing
    self.dev = dev
    self.mode = mode
    self.chain = mode != "barrier"
    self.pb = PushBuffer()
    # waits for the copies queued before each submit (nvdrv.transfer.order_compute_after_copies): its payload is
    # patched by submit; the initial 0 is met at once
    self.pb.semaphore_acquire(dev.copy.semaphore, 0, name="copies")
    self.launches: list[_Launch] = []
    self.after: list[list[int]] = []  # per launch, the launches it waits for (chain and dep modes)
    self._blobs: list[tuple[int, bytes]] = []  # (offset in the data area, bytes) of QMDs and constant banks
    self._data_size = 0
    self.memory: GPUMemory | None = None
    self.last_value = 0
    self.idle_after = 0  # the last run int_setter waited for

  def _reserve(self, nbytes: int) -> int:
    offset = self._data_size
    self._data_size += (nbytes + SLOT_ALIGN - 1) // SLOT_ALIGN * SLOT_ALIGN
    return offset

  def launch(self, program: Program, *args, grid=(1, 1, 1), block=(1, 1, 1), dynamic_shared: int = 0,
             barrier: bool = True, after=None) -> int:
    """Append a launch (checked like Program.__call__); returns its index for set_arg. With barrier, it starts only
    after everything before it in the buffer has finished. after (dep mode): the indices of the earlier launches it
    waits for, instead of the one before it; [] starts it as soon as the buffer's first launch may start."""
    if self.memory is not None:
      raise RuntimeError("this CommandBuffer is finalized; build a new one to add launches")
    index = len(self.launches)
    if after is None:
      after = [index - 1] if index else []
    elif self.mode != "dep":
      raise ValueError(f"after={after!r}: only a dep-mode CommandBuffer orders launches by dependencies (this one is "
                       f"{self.mode!r})")
    else:
      given = list(after)
      bad = [i for i in given if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < index]
      if bad:
        raise ValueError(f"launch {index}: after={given!r} names {bad}; give indices of earlier launches "
                         f"(0..{index - 1})")
      after = sorted(set(given))
    grid, block = tuple(grid), tuple(block)
    program.check(args, grid, block, dynamic_shared)
    self.dev.ensure_local_memory(program.local_per_thread, self.pb)
    qmd_offset = self._reserve(512)
    cbuf_offset = self._reserve(program.cbuf_size)
    cbuf = program.constant_bank(program.pack_args(args), grid, block, dynamic_shared)
    self._blobs.append((cbuf_offset, cbuf))
    self._blobs.append((qmd_offset, (program, grid, block, dynamic_shared, cbuf_offset)))
    if self.chain and not barrier:
      raise ValueError("a chained CommandBuffer runs every launch after the one before it; barrier=False conflicts")
    if self.mode != "chain" or not self.launches:
      if barrier and (self.mode == "barrier" or not self.launches):
        self.dev.barrier(self.pb)  # the first launch waits for the channel's earlier work too
      self.pb.launch(0, name=f"launch{len(self.launches)}")  # QMD address patched by finalize()
    self.launches.append(_Launch(program, cbuf_offset))
    self.after.append(after)
    return index

  def finalize(self) -> None:
    """Lay the buffer out in pinned host memory (done once, by the first submit)."""
    if not self.chain:
      self.pb.semaphore_release(self.dev.compute.semaphore, 0, name="done")
    # QMDs and constant banks in HBM (CPU writes through BAR1: the GPU fetches them for every grid), the
    # pushbuffer in pinned host memory (the host engine prefetches it)
    self.memory = self.dev.mem.alloc_device(self._data_size, cpu_access=True)
    self.pb_memory = self.dev.mem.alloc_host(len(self.pb) * 4)
    base, cpu = self.memory.va, self.memory.cpu
    for launch in self.launches:
      launch.cbuf += cpu
    qmd_offsets = [offset for offset, blob in self._blobs if isinstance(blob, tuple)]
    edges = qmd_edges(self.after) if self.chain else []
    waits = [0] * len(self.launches)
    for targets in edges:
      for j in targets:
        waits[j] += 1
    qmd_index = 0
    for offset, blob in self._blobs:
      if isinstance(blob, tuple):
        program, grid, block, dynamic_shared, cbuf_offset = blob
        q = program.qmd(base + cbuf_offset, grid, block, dynamic_shared)
        if self.chain:
          self._link(q, qmd_index, base, qmd_offsets, edges[qmd_index], waits[qmd_index])
        blob = q.tobytes()
        if self.mode != "chain" or qmd_index == 0:
          self.pb.patch(f"launch{qmd_index}.qmd", (base + offset) >> 8)
        qmd_index += 1
      self.dev.write(cpu + offset, blob)
    self.pb_address = self.pb_memory.va
    self.dev.write(self.pb_address, self.pb.tobytes())

  def _link(self, q, index: int, base: int, qmd_offsets: list[int], targets: list[int], waits: int) -> None:
    if self.mode == "dep":
      q.set("DEPENDENCE_COUNTER", waits)
    if targets:
      q.set("CWD_MEMBAR_TYPE", self.inner_membar)
      action = 4 if self.mode == "dep" else 3  # QMD_DECREMENT_DEPENDENCE / QMD_INVALIDATE_COPY_SCHEDULE
      if self.task_chasing:
        q.set("CWD_MEMBAR_TASK_CHASING_ENABLE", 1)
      for slot, j in enumerate(targets):
        q.set(f"DEPENDENT_QMD_ENABLE({slot})", 1).set(f"DEPENDENT_QMD{slot}_ACTION", action)
        q.set(f"DEPENDENT_QMD{slot}_POINTER", (base + qmd_offsets[j]) >> 8)
        if self.prefetch:
          q.set(f"DEPENDENT_QMD_PREFETCH({slot})", 1)
      return
    sem = self.dev.compute.semaphore
    q.set("RELEASE_ENABLE(0)", 1).set("RELEASE_STRUCTURE_SIZE(0)", 1).set("RELEASE_MEMBAR_TYPE(0)", 1)  # ONE_WORD
    q.set("RELEASE_SEMAPHORE0_ADDR_LOWER", sem & 0xFFFFFFFF).set("RELEASE_SEMAPHORE0_ADDR_UPPER", sem >> 32)
    self.release_payload = self.memory.cpu + qmd_offsets[index] + 704 // 8  # PAYLOAD_LOWER: bits 735:704

  def set_arg(self, launch: int, ordinal: int, value) -> None:
    """Change parameter `ordinal` of launch `launch` for the next submits (a GPUMemory, int or float)."""
    item = self.launches[launch]
    param = item.program.kernel.params[ordinal]
    packed = item.program.pack_arg(param, value)
    if len(packed) != param.size:
      raise ValueError(f"set_arg({launch}, {ordinal}): {len(packed)} bytes for the {param.size}-byte parameter "
                       f"{ordinal} of kernel {item.program.kernel.name}")
    if self.memory is None:
      raise RuntimeError("set_arg needs a finalized CommandBuffer (call finalize() or submit once first)")
    if self.last_value:
      self.dev.compute.wait(self.last_value)
    self.dev.write(item.cbuf + item.program.kernel.param_base + param.offset, packed)

  def int_setter(self, launch: int, ordinal: int):
    """A fast `set(value)` for an integer parameter of a launch (a buffer address, a Variable's int32), for patching
    every step: the first set after a submit waits for that run to finish, then each set is one struct.pack_into
    into the constant bank's mapping (set_arg checks and packs by type on each call).

    Raises:
      ValueError: the parameter is neither 8 nor 4 bytes; RuntimeError: the buffer is not finalized.
    """
    if self.memory is None:
      raise RuntimeError("int_setter needs a finalized CommandBuffer (call finalize() or submit once first)")
    item = self.launches[launch]
    param = item.program.kernel.params[ordinal]
    if param.size not in (4, 8):
      raise ValueError(f"int_setter({launch}, {ordinal}): parameter {ordinal} of kernel {item.program.kernel.name} "
                       f"is {param.size} bytes; an address is 8, a Variable 4")
    pack_into = struct.Struct("<Q" if param.size == 8 else "<i").pack_into
    view = self.dev.osif.view(item.cbuf + item.program.kernel.param_base + param.offset, param.size)

    def set_value(value: int) -> None:
      if self.last_value > self.idle_after:
        self.dev.compute.wait(self.last_value)
        self.idle_after = self.last_value
      pack_into(view, 0, value)
    return set_value

  def submit(self) -> int:
    """Queue the whole buffer with one GPFIFO entry; returns the compute timeline value that marks its end."""
    if self.memory is None:
      self.finalize()
    ch = self.dev.compute
    if self.last_value and ch.completed < self.last_value:
      ch.wait(self.last_value)
    words = self.pb.words
    copies = self.dev.claim_copies()
    if copies:
      index = self.pb.marks["copies.payload_lo"][0]
      self.dev.write(self.pb_address + 4 * index, struct.pack("<I", copies & 0xFFFFFFFF))
      words[index] = copies & 0xFFFFFFFF
    ch.value += 1
    if self.chain:
      self.dev.write(self.release_payload, struct.pack("<I", ch.value))
    else:
      for index, value in ((self.pb.marks["done.payload_lo"][0], ch.value & 0xFFFFFFFF),
                           (self.pb.marks["done.payload_hi"][0], ch.value >> 32)):
        self.dev.write(self.pb_address + 4 * index, struct.pack("<I", value))
        words[index] = value
    ch.submit_segment(self.pb_address, len(words))
    self.last_value = ch.value
    return ch.value

  def free(self) -> None:
    if self.memory is not None:
      if self.last_value:
        self.dev.compute.wait(self.last_value)
      self.dev.mem.free(self.memory)
      self.dev.mem.free(self.pb_memory)
      self.memory = None
