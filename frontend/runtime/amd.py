"""DEV=AMD: the tensor frontend on AMD RDNA3 (gfx1100) or RDNA4 (gfx1201) machine code, run on the wave emulator.

There is no card behind this runtime yet: until the AM driver and the simulated card exist (issue: AM bring-up), each
kernel runs directly on the wave emulator (am/sim: `run_kernel` over a FlatMemory that holds all of this device's
buffers). The code is the real thing: the scheduler's kernel IR is lowered for the GPU (compiler/lower_gpu.py),
selected, register-allocated and assembled by compiler/render_rdna.py into an AMDHSA code object (what a driver would
load), and the emulator decodes and runs that code object's machine code.

Selecting it: AMD_EMULATE=gfx1100 (or gfx1201) makes the AMD kind available (frontend/device.py); without it AMD is
unavailable, so on a machine without a GPU the default device stays CPU. Launches run to completion inside the call
(the emulator is synchronous); reading a buffer back is a copy out of the emulator's memory.

The device-independent frontend suite runs here: AMD_EMULATE=gfx1100 DEV=AMD python -m pytest -n 2 tests/test_ops_*.py
(and the rest of the frontend tests); tests/test_render_rdna.py runs without AMD_EMULATE, in the normal suite.
DEBUG=4 prints each kernel's RDNA assembly, then the code object's machine code decoded again (compiler/rdna/disasm.py,
the tables the assembler encodes from) with byte offsets and words.
"""
from __future__ import annotations

import os

import numpy as np

from compiler.dtypes import ALL_DTYPES
from frontend.device import DeviceUnavailable

TARGETS = {"gfx1100": "RDNA3", "gfx1201": "RDNA4"}
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
    self.runtime, self.info = runtime, rendered.info
    self.code_object = load_code_object(rendered.code_object, name=rendered.name)
    self.kernel = self.code_object.kernel(rendered.name)
    self.grid, self.block = tuple(self.info.global_size), tuple(self.info.local_size)
    self.kernarg = runtime.allocator.alloc(max(self.kernel.kernarg_size, 16))

  def __call__(self, addresses: list[int]) -> None:
    from am.sim import build_kernargs, run_kernel
    args = build_kernargs(self.kernel, tuple(addresses), self.grid, self.block)
    self.runtime.allocator.copyin(self.kernarg, np.frombuffer(args, np.uint8))
    run_kernel(self.kernel, self.code_object.isa, self.runtime.memory, self.grid, self.block, self.kernarg)


class AMDRuntime:
  """The frontend's face of the AMD device: RDNA code objects run on the wave emulator (no card)."""
  name = "AMD"
  dtypes = ALL_DTYPES
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
    return AMDProgram(self, rendered), source

  def synchronize(self) -> None:
    """Kernels run to completion inside the call."""


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
  """The AMD device: the wave emulator when AMD_EMULATE names a target, else unavailable (no AM driver yet)."""
  target = os.environ.get("AMD_EMULATE")
  if not target:
    raise DeviceUnavailable("AMD: the AM driver is not built yet (issue: AM bring-up); AMD_EMULATE=gfx1100 (or "
                            "gfx1201) runs AMD kernels on the wave emulator instead")
  return AMDRuntime(target)
