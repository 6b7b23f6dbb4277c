"""Exceptions of the wave emulator. Each names what went wrong with the values involved: the instruction's text (as
compiler.rdna's disassembler prints it), its byte offset in the kernel code (pc), and the wave and lane."""
from __future__ import annotations


class SimError(RuntimeError):
  """Base class of everything the emulator raises about a kernel."""


class UnsupportedInstruction(SimError):
  """The emulator has no semantics for an instruction (or for one of its operands or modifiers). Raised when the wave
  reaches it, never skipped."""

  def __init__(self, text: str, pc: int, why: str = ""):
    self.text, self.pc = text, pc
    detail = f": {why}" if why else ""
    super().__init__(f"unsupported instruction {text!r} at pc {pc:#x}{detail}; the emulator (am/sim) does not "
                     "implement it, so the kernel cannot run here")


class MemoryFault(SimError):
  """An access to an unmapped or out-of-range address.

  Attributes:
    address: the first faulting byte address (64-bit GPU virtual address, or LDS byte offset for LDS).
    size: bytes the access covers. index: position in the address array the memory layer was given.
    pc, text, wave, lane: where, once the instruction that made the access adds them (locate()).
  """

  def __init__(self, address: int, size: int, reason: str, index: int = 0, space: str = "global"):
    self.address, self.size, self.reason, self.index, self.space = address, size, reason, index, space
    self.pc, self.text, self.wave, self.lane = None, None, None, None
    super().__init__(self.describe())

  def describe(self) -> str:
    where = ""
    if self.text is not None:
      lane = "" if self.lane is None else f", lane {self.lane}"
      where = f"{self.text!r} at pc {self.pc:#x} (wave {self.wave}{lane}): "
    return f"{where}{self.space} access of {self.size} bytes at {self.address:#x}: {self.reason}"

  def locate(self, pc: int, text: str, wave: int, lane: int) -> MemoryFault:
    """A copy of this fault that names the instruction and the lane."""
    fault = MemoryFault(self.address, self.size, self.reason, self.index, self.space)
    fault.pc, fault.text, fault.wave, fault.lane = pc, text, wave, lane
    fault.args = (fault.describe(),)
    return fault


class WaitcntHazard(SimError):
  """An instruction touched a register that a memory load still owes: the s_waitcnt (gfx11) or s_wait_* (gfx12) that
  makes the data valid has not run. A real GPU would silently read the old value."""


class BarrierError(SimError):
  """A workgroup barrier that cannot complete as written (LDS stores not yet waited for, for example)."""


class StepLimitExceeded(SimError):
  """A wave ran more instructions than the dispatch allows (an infinite loop, or a limit set too low)."""


class DispatchError(SimError):
  """A dispatch the emulator cannot set up: grid, workgroup size, kernel descriptor or arguments."""
