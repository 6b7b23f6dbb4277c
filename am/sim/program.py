"""A kernel's machine code, decoded once per pc with compiler.rdna's disassembler (the same tables the assembler
encodes from), and the operand facts the instruction compilers need: normalised operand codes, register widths and
the registers each instruction touches (for the use-before-wait check)."""
from __future__ import annotations

from compiler.rdna.disasm import DecodeError, Decoded, decode_one, format_instruction
from compiler.rdna.operands import class_bits, reg_from_encoding
from compiler.rdna.tables import get_target

from .errors import SimError, UnsupportedInstruction

__all__ = ["Inst", "Program", "sext16"]
VGPR0 = 256
LOAD_FAMILIES = ("SMEM", "GLOBAL", "FLAT", "VGLOBAL", "VFLAT", "MUBUF", "VBUFFER", "DS")


def sext16(value: int) -> int:
  return value - 0x10000 if value & 0x8000 else value


class Program:
  """Machine code of one kernel for one target (gfx1100 / gfx1201)."""

  def __init__(self, code: bytes, isa: str):
    self.code = bytes(code)
    self.target = get_target(isa)
    self.generation = self.target.generation
    self._decoded: dict = {}
    self.touched_table: list = [None] * (len(self.code) // 4 + 1)    # by pc >> 2, filled by touched()

  def at(self, pc: int) -> Decoded:
    """The instruction at byte offset pc.

    Raises:
      SimError: pc outside the code, or bytes that decode as no instruction.
    """
    d = self._decoded.get(pc)
    if d is not None:
      return d
    if pc % 4 or not 0 <= pc < len(self.code):
      raise SimError(f"pc {pc:#x} is outside the kernel's {len(self.code)} bytes of code (or not dword aligned)")
    try:
      instr, ops, size = decode_one(self.code, pc, self.target)
    except DecodeError as e:
      raise SimError(f"pc {pc:#x}: {e}") from None
    d = Decoded(pc, size, instr, ops, format_instruction(instr, ops, self.target))
    self._decoded[pc] = d
    return d

  def touched(self, pc: int) -> frozenset:
    """Registers (SGPR/special n, VGPR 256+n) the instruction at pc reads or writes through its operands."""
    regs = self.touched_table[pc >> 2]
    if regs is None:
      inst = Inst(self, self.at(pc))
      regs = set()
      # a load's destination may still be owed by an earlier load: loads of one counter return in order, so that
      # write-after-write is fine (LLVM relies on it for d16 lo / hi loads into one VGPR); only sources count
      skip = set(inst.d.instr.defs) | {"vdst_in"} if inst.family in LOAD_FAMILIES and not inst.returns_atomic else ()
      for op in inst.d.instr.operands:
        if op.type.kind not in ("reg", "src") or op.name not in inst.d.ops.vals or op.name in skip:
          continue
        code = inst.code(op.name)
        if code >= VGPR0 or code < 128 and code != 124:
          regs.update(range(code, code + max(1, inst.width(op.name) // 32)))
      regs = self.touched_table[pc >> 2] = frozenset(regs)
    return regs


class Inst:
  """One decoded instruction, as the family compilers (salu, valu, vmem, lds) see it."""

  def __init__(self, program: Program, d: Decoded):
    self.program, self.d = program, d
    self.pc, self.text, self.nxt = d.offset, d.text, d.offset + d.size
    self.mnemonic = d.instr.base_mnemonic
    self.family = d.instr.family
    self.vals = d.ops.vals
    self.literal = d.ops.literal
    self.operand = {op.name: op for op in d.instr.operands}
    self.returns_atomic = "IsAtomicRet" in d.instr.flags

  def has(self, name: str) -> bool:
    return name in self.operand and name in self.vals

  def code(self, name: str) -> int:
    """Operand `name` as a 9-bit operand code (VGPRs 256+n), whatever its encoding field stores."""
    op = self.operand[name]
    value = self.vals[name]
    if op.type.kind != "reg":
      return value
    reg = reg_from_encoding(value, op.type.regclass, self.program.target)
    if reg is None:
      raise SimError(f"{self.text!r} at pc {self.pc:#x}: operand {name} code {value} names no register")
    if reg.file == "v":
      return VGPR0 + (reg.index >> 1 if reg.bits == 16 else reg.index)
    if reg.file == "s":
      return reg.index
    if reg.file == "ttmp":
      return self.program.target.reg_files["ttmp"][0] + reg.index
    specials = self.program.target.special_regs
    return specials.get(f"{reg.file}:{reg.bits}", specials.get(f"{reg.file}:32"))

  def width(self, name: str) -> int:
    """Bits of the operand's register class (32 for VGPR_32, 64 for VReg_64 / VS_64, 128 for SReg_128, ...)."""
    regclass = self.operand[name].type.regclass
    return class_bits(regclass, self.program.target) if regclass else 32

  def type_name(self, name: str) -> str:
    return self.operand[name].type.name

  def unsupported(self, why: str = "") -> UnsupportedInstruction:
    return UnsupportedInstruction(self.text, self.pc, why)

  def fail(self, message: str) -> SimError:
    return SimError(f"{self.text!r} at pc {self.pc:#x}: {message}")
