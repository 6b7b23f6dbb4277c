"""DEV=AMD: the tensor frontend on AMD RDNA3 (gfx1100) or RDNA4 (gfx1201) machine code, in one of two modes.

AMD_SIM=navi31 (or navi48): a simulated card (am/simcard) booted through the unmodified AM driver, once per process
and card (firmware from AM_FIRMWARE_DIR). Buffers are GPU memory of the card mapped in its VMID0 GART; host copies
go through the SDMA queue, ordered against the compute queue on the card (small ones through BAR 0: AMDCardAllocator);
each rendered code object is uploaded with am.queues GpuKernel; a launch is a dispatch's PM4 on the compute queue
(kernarg segment from compiler.rdna.codeobj.kernarg_segment), which the simulated MEC runs on the wave
emulator; synchronize waits for the queue's timeline signal. A TinyJit capture becomes one AMDGraph: its launches
recorded once into an indirect buffer (am.queues CommandBuffer) with kernarg segments of its own and barriers only
between launches that share a buffer one of them writes; replay rewrites the segments whose buffer addresses or
Variable values changed (a Variable is a 4-byte by-value kernarg after the pointers: compiler/render_rdna.py) and
submits the IB with one INDIRECT_BUFFER packet.

AMD_EMULATE=gfx1100 (or gfx1201): no card; each kernel runs directly on the wave emulator (am/sim: `run_kernel` over
a FlatMemory that holds all of this device's buffers). The code is the real thing in both modes: the scheduler's
kernel IR is lowered for the GPU (compiler/lower_gpu.py), selected, register-allocated and assembled by
compiler/render_rdna.py into an AMDHSA code object (what a driver loads), and the emulator decodes and runs that code
object's machine code.

Selecting it: AMD_SIM or AMD_EMULATE makes the AMD kind available (frontend/device.py; AMD_SIM wins when both are
set); without either AMD is unavailable, so on a machine without a GPU the default device stays CPU. Under
AMD_EMULATE launches run to completion inside the call (the emulator is synchronous) and reading a buffer back is a
copy out of the emulator's memory.

The device-independent frontend suite runs here: AMD_EMULATE=gfx1100 DEV=AMD python -m pytest -n 2 tests/test_ops_*.py
(and the rest of the frontend tests); tests/test_render_rdna.py runs without AMD_EMULATE, in the normal suite, and
tests/test_amd_sim_frontend.py runs ops and TinyJit on both simulated cards (needs AM_FIRMWARE_DIR).
DEBUG=4 prints each kernel's RDNA assembly, then the code object's machine code decoded again (compiler/rdna/disasm.py,
the tables the assembler encodes from) with byte offsets and words.
"""
from __future__ import annotations

import os

import numpy as np

from compiler.dtypes import ALL_DTYPES
from frontend.device import DeviceUnavailable

TARGETS = {"gfx1100": "RDNA3", "gfx1201": "RDNA4"}
SIM_CARDS = ("navi31", "navi48")
MEMORY_WINDOW_BITS = 40  # runtime n of this process maps its buffers in [n << 40, (n + 1) << 40): no two collide


class AMDAllocator:
  """Device buffers as ranges of one am.sim FlatMemory; freed ranges are kept per size and handed out again (the
  emulator's memory only grows)."""
  host_memory = False

  def __init__(self, memory):
    self.memory = memory
    self.cache: dict[int, list[int]] = {}

  def alloc(self, nbytes: int) -> int:
    free = self.cache.get(nbytes)
    if free:
      return free.pop()
    return self.memory.alloc(max(nbytes, 1))

  def free(self, mem: int, nbytes: int) -> None:
    if not self.memory.base <= mem < self.memory.top:
      return  # a buffer of an AMD runtime opened before this one (tests reopen the device per target): not ours
    self.cache.setdefault(nbytes, []).append(mem)

  def view(self, address: int, nbytes: int) -> np.ndarray:
    start = address - self.memory.base
    return self.memory.arena[start:start + nbytes]

  def copyin(self, dst: int, src: np.ndarray) -> None:
    if src.nbytes:
      self.view(dst, src.nbytes)[:] = src.reshape(-1).view(np.uint8)

  def copyout(self, dst: np.ndarray, src: int) -> None:
    if dst.nbytes:
      dst.reshape(-1).view(np.uint8)[:] = self.view(src, dst.nbytes)

  def address(self, mem: int) -> int:
    return mem


class AMDProgram:
  """A rendered kernel loaded from its code object; call with buffer addresses (runs on the emulator)."""
  threads = 1  # DEBUG's kernel line: host threads

  def __init__(self, runtime: AMDRuntime, rendered):
    from compiler.rdna import load_code_object
    self.runtime, self.info, self.entry = runtime, rendered.info, rendered.name
    self.code_object_bytes = rendered.code_object  # kept for replay files (frontend/replay_save.py)
    self.code_object = load_code_object(rendered.code_object, name=rendered.name)
    self.kernel = self.code_object.kernel(rendered.name)
    self.grid, self.block = tuple(self.info.global_size), tuple(self.info.local_size)
    self.kernarg = runtime.allocator.alloc(max(self.kernel.kernarg_size, 16))

  def __call__(self, addresses: list[int], values: tuple[int, ...] = ()) -> None:
    from am.sim import build_kernargs, run_kernel
    args = build_kernargs(self.kernel, (*addresses, *values), self.grid, self.block)
    self.runtime.allocator.copyin(self.kernarg, np.frombuffer(args, np.uint8))
    run_kernel(self.kernel, self.code_object.isa, self.runtime.memory, self.grid, self.block, self.kernarg)


class AMDRuntime:
  """The frontend's face of the AMD device: RDNA code objects run on the wave emulator (no card)."""
  name = "AMD"
  dtypes = ALL_DTYPES
  program_class = AMDProgram
  opened = 0  # runtimes made in this process: each one's memory starts in its own address window

  def __init__(self, target: str):
    from am.sim import FlatMemory
    if target not in TARGETS:
      raise DeviceUnavailable(f"AMD: AMD_EMULATE={target!r} names no emulated target; use gfx1100 or gfx1201")
    self.target = target
    AMDRuntime.opened += 1
    self.memory = FlatMemory(base=AMDRuntime.opened << MEMORY_WINDOW_BITS)  # a window of its own per runtime
    self.allocator = AMDAllocator(self.memory)

  def describe(self) -> str:
    return f"AMD: {TARGETS[self.target]} {self.target} on the wave emulator (no card)"

  def lower(self, ast):
    from compiler.lower_gpu import lower_gpu
    return lower_gpu(ast)

  def program(self, kernel):
    from compiler.render_rdna import render_rdna
    from frontend.realize import getenv
    rendered = render_rdna(kernel, self.target)
    source = rendered.asm
    if getenv("DEBUG") >= 4:
      source += "\n" + disassembly(rendered.code, self.target)
    return self.program_class(self, rendered), source

  def synchronize(self) -> None:
    """Kernels run to completion inside the call."""


class AMDCardAllocator:
  """Device buffers as GART-mapped VRAM of a booted card (am.queues Buffer); freed buffers are kept per size and
  handed out again (the driver's GART allocator does not free).

  Host copies go through the SDMA queue (am.queues.transfer.SdmaTransfers, one staging ring per card): the SDMA engine
  waits for the compute work queued before the copy and compute work queued after a copyin waits for it, on the card;
  copyout waits for its SDMA fence on the host. A copy of at most CPU_COPY_MAX bytes while the compute queue is idle
  (its signal has reached the last value: every queued copy is done too, as each copyin's WAIT_REG_MEM is on that
  queue) is a CPU copy through BAR 0 instead: it needs no wait then, and it saves the SDMA and compute submissions
  (each an HDP flush and a doorbell; in the simulator about 0.6 ms for the pair, against microseconds for a page
  through BAR 0). The BAR path's cost grows with the size (uncached reads of BAR 0 on hardware are slow), so above a
  page the DMA engine takes it."""
  host_memory = False
  CPU_COPY_MAX = 4096

  def __init__(self, dev):
    self.dev, self.queue = dev, dev.gfx.queue
    self.cache: dict[int, list] = {}
    self.transfers = sdma_transfers(dev)

  def alloc(self, nbytes: int):
    from am.queues.dispatch import Buffer
    free = self.cache.get(nbytes)
    if free:
      return free.pop()
    return Buffer(self.dev, max(nbytes, 1))

  def free(self, mem, nbytes: int) -> None:
    self.cache.setdefault(nbytes, []).append(mem)

  def cpu_path(self, nbytes: int) -> bool:
    return nbytes <= self.CPU_COPY_MAX and self.queue.signal.value() >= self.queue.signal.last

  def copyin(self, dst, src: np.ndarray) -> None:
    """Raises: ValueError when `src` is larger than `dst` (names both sizes)."""
    if src.nbytes > dst.size:
      raise ValueError(f"copyin of {src.nbytes} bytes into a {dst.size}-byte AMD buffer")
    if not src.nbytes:
      return
    data = np.ascontiguousarray(src).reshape(-1).view(np.uint8)
    if self.cpu_path(data.size):
      dst.write(data)
    else:
      self.transfers.copyin(dst, data)

  def copyout(self, dst: np.ndarray, src) -> None:
    """Raises: ValueError when `dst` is larger than `src` (names both sizes)."""
    if dst.nbytes > src.size:
      raise ValueError(f"copyout of {dst.nbytes} bytes from a {src.size}-byte AMD buffer")
    if not dst.nbytes:
      return
    if self.cpu_path(dst.nbytes):
      dst.reshape(-1).view(np.uint8)[:] = src.read(np.uint8, dst.nbytes)
    else:
      self.transfers.copyout(src, dst)

  def address(self, mem) -> int:
    return mem.va


class AMDCardProgram:
  """A rendered kernel uploaded to the card (GpuKernel); a call queues its dispatch on the compute queue."""
  threads = 1

  def __init__(self, runtime: AMDCardRuntime, rendered):
    from am.queues.kernel import GpuKernel
    from compiler.rdna import load_code_object
    self.runtime, self.info, self.entry = runtime, rendered.info, rendered.name
    self.code_object_bytes = rendered.code_object  # kept for replay files (frontend/replay_save.py)
    code_object = load_code_object(rendered.code_object, name=rendered.name)
    self.kernel = GpuKernel(runtime.dev, code_object, rendered.name)
    self.grid, self.block = tuple(self.info.global_size), tuple(self.info.local_size)

  def __call__(self, addresses: list[int], values: tuple[int, ...] = ()) -> None:
    from am.queues.dispatch import dispatch
    dispatch(self.runtime.queue, self.kernel, [*addresses, *values], self.grid, self.block)


class AMDGraph:
  """A TinyJit capture as one am.queues.launches.LaunchList: each launch's dispatch PM4 recorded once into an indirect
  buffer, a barrier before it only where it reads or overwrites what a launch still in flight touches
  (frontend.realize.exec_dependencies), its kernarg segment in an arena of the list's own (never rewritten by other
  launches). Replay rewrites the kernarg segments whose arguments changed (buffer addresses, Variable values; after the
  previous replay finished reading them), then submits the whole step as one INDIRECT_BUFFER packet."""

  def __init__(self, runtime: AMDCardRuntime, items):
    from am.queues.launches import LaunchList
    from frontend.realize import exec_dependencies
    self.programs = [item.program for item in items]
    self.args = [[runtime.allocator.address(b.mem) for b in item.bufs] + [item.var_vals[v] for v in item.info.vars]
                 for item in items]
    self.var_base = [len(item.info.params) for item in items]  # argument index of each launch's first Variable
    self.launches = LaunchList(runtime.dev, runtime.queue)
    for program, args, after in zip(self.programs, self.args, exec_dependencies(items)):
      self.launches.add(program.kernel, args, program.grid, program.block, after=after)
    self.launches.finalize()
    self.changed: set[int] = set()

  def set_buffer(self, item: int, index: int, buf) -> None:
    self._set(item, index, buf.mem.va)

  def set_var(self, item: int, k: int, value: int) -> None:
    """Launch `item`'s k-th Variable takes `value` from the next run on."""
    self._set(item, self.var_base[item] + k, value)

  def _set(self, item: int, index: int, value: int) -> None:
    if self.args[item][index] != value:
      self.args[item][index] = value
      self.changed.add(item)

  def run(self) -> None:
    for item in sorted(self.changed):
      self.launches.set_args(item, self.args[item])
    self.changed.clear()
    self.launches.submit()


class AMDCardRuntime(AMDRuntime):
  """The frontend's face of a simulated Navi31/Navi48 booted through the AM driver: launches on its compute queue."""
  program_class = AMDCardProgram

  def __init__(self, card: str):
    self.card = card
    self.dev = boot_sim_card(card)
    self.target = self.dev.caps.gfx_target
    self.queue = self.dev.gfx.queue
    self.allocator = AMDCardAllocator(self.dev)

  def describe(self) -> str:
    return (f"AMD: {TARGETS[self.target]} {self.target} on a simulated {self.card} through the AM driver "
            f"(compute queue me1 pipe{self.queue.pipe} queue{self.queue.queue})")

  def graph(self, items) -> AMDGraph | None:
    """One replayable indirect buffer for a TinyJit capture, when every item is a kernel of this card."""
    if not items or not all(isinstance(item.program, AMDCardProgram) and item.program.runtime.dev is self.dev
                            for item in items):
      return None
    return AMDGraph(self, items)

  def synchronize(self) -> None:
    self.queue.wait()


BOOTED_CARDS: dict = {}   # card name -> booted AMDevice: a simulated card boots once per process
TRANSFERS: dict = {}      # booted AMDevice -> its am.queues.transfer.SdmaTransfers (staging memory is never freed)


def sdma_transfers(dev):
  """The SDMA transfer path of `dev` against its compute queue, made once per device."""
  from am.queues.transfer import SdmaTransfers
  if dev not in TRANSFERS:
    TRANSFERS[dev] = SdmaTransfers(dev, dev.gfx.queue)
  return TRANSFERS[dev]


def boot_sim_card(card: str):
  """The simulated `card` booted through the AM driver (firmware from AM_FIRMWARE_DIR), once per process.

  Raises:
    DeviceUnavailable: an unknown card name, or the boot failed (names the stage's error and AM_FIRMWARE_DIR)."""
  if card not in SIM_CARDS:
    raise DeviceUnavailable(f"AMD: AMD_SIM={card!r} names no simulated card; use {' or '.join(SIM_CARDS)}")
  if card not in BOOTED_CARDS:
    from am.device import AMDevice
    from am.simcard.card import SimCard
    dev = AMDevice(SimCard(card))
    try:
      dev.boot()
    except Exception as e:  # missing firmware, a stage that timed out: AMD is unavailable, and says why
      where = os.environ.get("AM_FIRMWARE_DIR", "unset: /lib/firmware/amdgpu")
      raise DeviceUnavailable(f"AMD: booting the simulated {card} failed ({type(e).__name__}: {e}); AM_FIRMWARE_DIR "
                              f"({where}) must hold lib/firmware/amdgpu of firmware-amd-graphics") from e
    BOOTED_CARDS[card] = dev
  return BOOTED_CARDS[card]


def disassembly(code: bytes, target: str) -> str:
  """Machine code decoded back to text, one instruction a line: byte offset, words (hex), text."""
  from compiler.rdna.disasm import disassemble
  lines = [f"; machine code ({len(code)} bytes), decoded"]
  for inst in disassemble(code, target):
    words = code[inst.offset:inst.offset + inst.size]
    hexwords = " ".join(words[i:i + 4][::-1].hex() for i in range(0, len(words), 4))
    lines.append(f"; {inst.offset:04x}: {hexwords:<26} {inst.text}")
  return "\n".join(lines)


def probe() -> AMDRuntime:
  """The AMD device: a simulated card through the AM driver when AMD_SIM names one, the wave emulator when
  AMD_EMULATE names a target, else unavailable (no real card is driven by the frontend yet)."""
  card = os.environ.get("AMD_SIM")
  if card:
    return AMDCardRuntime(card)
  target = os.environ.get("AMD_EMULATE")
  if not target:
    raise DeviceUnavailable("AMD: the frontend drives no real AMD card yet; AMD_SIM=navi31 (or navi48) runs AMD "
                            "kernels on a simulated card through the AM driver, AMD_EMULATE=gfx1100 (or gfx1201) "
                            "directly on the wave emulator")
  return AMDRuntime(target)
