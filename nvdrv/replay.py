"""Prebuilt command buffers: build a sequence of kernel launches (and copies) once, resubmit it with one GPFIFO entry.

Everything the GPU reads for the sequence is owned by the CommandBuffer: the pushbuffer in pinned host memory, each
launch's QMD and constant bank 0 in device memory (written through BAR1). A resubmission writes nothing but the
values that change:

  - the timeline payload of the closing semaphore release (always: it is how the host learns the run finished);
  - kernel parameters named at build time (`CommandBuffer.set_arg`), e.g. the input buffer addresses of a JIT replay,
    written into the launch's constant bank in place.

Resubmitting then costs one GPFIFO entry and a doorbell write: `submit()` does no allocation and builds no methods.
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


@dataclass
class _Launch:
  program: Program
  cbuf: int  # CPU address (BAR1) of this launch's constant bank 0


class CommandBuffer:
  """A reusable sequence of launches on `dev`'s compute channel."""

  def __init__(self, dev, mode: str = "barrier", inner_membar: int = 3):
    """mode: how a launch waits for the one before it.
      barrier: a wait-for-idle between launches in the pushbuffer (nvdrv.device.NVDevice.barrier);
      chain:   only the first QMD is sent; each grid starts the next when it completes (DEPENDENT_QMD0 with action
               INVALIDATE_COPY_SCHEDULE) and the last releases the timeline semaphore itself;
      dep:     every QMD is sent up front; QMD i > 0 waits on a dependence counter of 1 that grid i-1 decrements
               when it completes (DEPENDENT_QMD0 action DECREMENT_DEPENDENCE), so its QMD and constants are
               already fetched when its turn comes; the last releases the semaphore.
    Launches with barrier=False only make sense in barrier mode.
    inner_membar (chain and dep): the CWD_MEMBAR_TYPE of every grid but the last, the memory barrier its end runs
      before the next grid may start: L1_MEMBAR 3 (GPU scope: the next reader is a grid on this GPU; default),
      L1_SYSMEMBAR 1 (system scope, what a lone launch needs before the host reads), L1_NONE 0 (measurements only).
      The last grid keeps the device's CWD membar and releases the timeline with FE_SYSMEMBAR, so the host sees
      every grid's writes once it sees the payload."""
    if mode not in ("barrier", "chain", "dep"):
      raise ValueError(f"CommandBuffer mode {mode!r}: use 'barrier', 'chain' or 'dep'")
    if inner_membar not in (0, 1, 3):
      raise ValueError(f"inner_membar {inner_membar}: use 3 (GPU scope), 1 (system scope) or 0 (none)")
    self.inner_membar = inner_membar
    self.dev = dev
    self.mode = mode
    self.chain = mode != "barrier"
    self.pb = PushBuffer()
    self.launches: list[_Launch] = []
    self._blobs: list[tuple[int, bytes]] = []  # (offset in the data area, bytes) of QMDs and constant banks
    self._data_size = 0
    self.memory: GPUMemory | None = None
    self.last_value = 0

  def _reserve(self, nbytes: int) -> int:
    offset = self._data_size
    self._data_size += (nbytes + SLOT_ALIGN - 1) // SLOT_ALIGN * SLOT_ALIGN
    return offset

  def launch(self, program: Program, *args, grid=(1, 1, 1), block=(1, 1, 1), dynamic_shared: int = 0,
             barrier: bool = True) -> int:
    """Append a launch (checked like Program.__call__); returns its index for set_arg. With barrier, it starts only
    after everything before it in the buffer has finished."""
    if self.memory is not None:
      raise RuntimeError("this CommandBuffer is finalized; build a new one to add launches")
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
    return len(self.launches) - 1

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
    qmd_index = 0
    for offset, blob in self._blobs:
      if isinstance(blob, tuple):
        program, grid, block, dynamic_shared, cbuf_offset = blob
        q = program.qmd(base + cbuf_offset, grid, block, dynamic_shared)
        if self.chain:
          self._link(q, qmd_index, base, qmd_offsets)
        blob = q.tobytes()
        if self.mode != "chain" or qmd_index == 0:
          self.pb.patch(f"launch{qmd_index}.qmd", (base + offset) >> 8)
        qmd_index += 1
      self.dev.write(cpu + offset, blob)
    self.pb_address = self.pb_memory.va
    self.dev.write(self.pb_address, self.pb.tobytes())

  def _link(self, q, index: int, base: int, qmd_offsets: list[int]) -> None:
    if self.mode == "dep" and index > 0:
      q.set("DEPENDENCE_COUNTER", 1)
    if index + 1 < len(qmd_offsets):
      q.set("CWD_MEMBAR_TYPE", self.inner_membar)
      action = 4 if self.mode == "dep" else 3  # QMD_DECREMENT_DEPENDENCE / QMD_INVALIDATE_COPY_SCHEDULE
      q.set("DEPENDENT_QMD_ENABLE(0)", 1).set("DEPENDENT_QMD0_ACTION", action)
      q.set("DEPENDENT_QMD0_POINTER", (base + qmd_offsets[index + 1]) >> 8)
      return
    sem = self.dev.compute.semaphore
    q.set("RELEASE_ENABLE(0)", 1).set("RELEASE_STRUCTURE_SIZE(0)", 1).set("RELEASE_MEMBAR_TYPE(0)", 1)  # ONE_WORD
    q.set("RELEASE_SEMAPHORE0_ADDR_LOWER", sem & 0xFFFFFFFF).set("RELEASE_SEMAPHORE0_ADDR_UPPER", sem >> 32)
    self.release_payload = self.memory.cpu + qmd_offsets[index] + 704 // 8  # PAYLOAD_LOWER: bits 735:704

  def set_arg(self, launch: int, ordinal: int, value) -> None:
    """Change parameter `ordinal` of launch `launch` for the next submits (a GPUMemory, int or float)."""
    item = self.launches[launch]
    param = item.program.kernel.params[ordinal]
    packed = item.program.pack_args(tuple(value if p.ordinal == ordinal else 0 for p in item.program.kernel.params))
    if self.memory is None:
      raise RuntimeError("set_arg needs a finalized CommandBuffer (call finalize() or submit once first)")
    if self.last_value:
      self.dev.compute.wait(self.last_value)
    address = item.cbuf + item.program.kernel.param_base + param.offset
    self.dev.write(address, packed[param.offset:param.offset + param.size])

  def submit(self) -> int:
    """Queue the whole buffer with one GPFIFO entry; returns the compute timeline value that marks its end."""
    if self.memory is None:
      self.finalize()
    ch = self.dev.compute
    if self.last_value and ch.completed < self.last_value:
      ch.wait(self.last_value)
    ch.value += 1
    words = self.pb.words
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
