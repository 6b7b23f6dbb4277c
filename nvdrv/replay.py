"""Prebuilt command buffers: build a sequence of kernel launches (and copies) once, resubmit it with one GPFIFO entry.

Everything the GPU reads for the sequence (the pushbuffer, each launch's QMD and constant bank 0) lives in one pinned
host allocation owned by the CommandBuffer, so a resubmission writes nothing but the values that change:

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
  cbuf: int  # GPU (= CPU) address of this launch's constant bank 0


class CommandBuffer:
  """A reusable sequence of launches on `dev`'s compute channel."""

  def __init__(self, dev):
    self.dev = dev
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
    if barrier and self.launches:
      self.dev.barrier(self.pb)
    self.pb.launch(0, name=f"launch{len(self.launches)}")  # QMD address patched by finalize()
    self.launches.append(_Launch(program, cbuf_offset))
    return len(self.launches) - 1

  def finalize(self) -> None:
    """Lay the buffer out in pinned host memory (done once, by the first submit)."""
    self.pb.semaphore_release(self.dev.compute.semaphore, 0, name="done")
    pb_bytes = len(self.pb) * 4
    self.memory = self.dev.mem.alloc_host(self._data_size + pb_bytes + SLOT_ALIGN)
    base = self.memory.va
    for launch in self.launches:
      launch.cbuf += base
    qmd_index = 0
    for offset, blob in self._blobs:
      if isinstance(blob, tuple):
        program, grid, block, dynamic_shared, cbuf_offset = blob
        blob = program.qmd(base + cbuf_offset, grid, block, dynamic_shared).tobytes()
        self.pb.patch(f"launch{qmd_index}.qmd", (base + offset) >> 8)
        qmd_index += 1
      self.dev.write(base + offset, blob)
    self.pb_address = base + self._data_size
    self.dev.write(self.pb_address, self.pb.tobytes())

  def set_arg(self, launch: int, ordinal: int, value) -> None:
    """Change parameter `ordinal` of launch `launch` for the next submits (a GPUMemory, int or float)."""
    item = self.launches[launch]
    param = item.program.kernel.params[ordinal]
    packed = item.program.pack_args(tuple(value if p.ordinal == ordinal else 0 for p in item.program.kernel.params))
    if self.memory is None:
      raise RuntimeError("set_arg needs a finalized CommandBuffer (submit once first)")
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
      self.memory = None
