"""Machine code over virtual registers, the form RDNA instruction selection (compiler/rdna_isel.py) produces and
register allocation (compiler/rdna_regalloc.py) rewrites.

    code = Code("gfx1100")
    a, b = code.vreg("v"), code.vreg("v")
    code.emit("v_add_f32", a, b, 1.5)                  # first `ndefs` operands (default 1) are written
    code.emit("global_store_b32", voff, a, base, ndefs=0, mem="vstore")

Operands: VReg (a virtual register of the scalar "s" or vector "v" file, 1 to 8 dwords), Half (one dword of a
multi-dword VReg), Slice (consecutive dwords of one: a b128 load into part of a WMMA operand), Python ints and floats
(inline constants or a 32-bit literal) and syntax strings ("exec_lo", "null", "off"). Instructions name their
mnemonics as LLVM 19's assembler spells them for both gfx11 and gfx12.

The VALU constant bus (gfx10+: at most two scalar values, SGPRs or literals, per VALU instruction, one for the
64-bit shifts; one distinct literal) is kept by `emit`: scalar sources beyond the limit are copied into VGPRs first
(v_mov_b32), except lane masks (the last source of v_cndmask_b32 and of the carry-in forms).
"""
from __future__ import annotations

import struct

import numpy as np

from compiler.rdna.asm import Abs, Neg

CONSTANT_BUS_ONE = ("v_lshlrev_b64", "v_lshrrev_b64", "v_ashrrev_i64")
MASK_LAST = ("v_cndmask_b32", "v_add_co_ci_u32", "v_sub_co_ci_u32")  # the last source is a lane mask (SGPR)
INLINE_FLOATS = (0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 4.0, -4.0)
BRANCHES = ("s_branch", "s_cbranch_scc0", "s_cbranch_scc1", "s_cbranch_execz", "s_cbranch_execnz",
            "s_cbranch_vccz", "s_cbranch_vccnz")


class VReg:
  """A virtual register: `size` consecutive dwords of the scalar ("s") or vector ("v") file. `fixed` pins it to a
  physical register (the kernel's initial state: kernarg pointer, workgroup id, work-item id)."""
  __slots__ = ("file", "size", "id", "fixed")

  def __init__(self, file: str, size: int, id: int, fixed: int | None = None):
    self.file, self.size, self.id, self.fixed = file, size, id, fixed

  def __repr__(self) -> str:
    return f"%{self.file}{self.id}" + (f"x{self.size}" if self.size > 1 else "")


class Half:
  """Dword `index` of a multi-dword VReg (0 low, 1 high of a pair)."""
  __slots__ = ("reg", "index")

  def __init__(self, reg: VReg, index: int):
    self.reg, self.index = reg, index

  @property
  def file(self) -> str:
    return self.reg.file

  size = 1

  def __repr__(self) -> str:
    return f"{self.reg!r}.{self.index}"


class Slice(Half):
  """Dwords index .. index + size - 1 of a VReg."""
  __slots__ = ("size",)

  def __init__(self, reg: VReg, index: int, size: int):
    super().__init__(reg, index)
    self.size = size

  def __repr__(self) -> str:
    return f"{self.reg!r}[{self.index}:{self.index + self.size - 1}]"


class MInst:
  """One instruction: mnemonic, operands, modifiers (keyword -> value as compiler.rdna's Assembler.emit takes them).

  ndefs: how many leading operands are written. tied: the written operands are also read (v_fmac, accumulators).
  mem: the memory counter class for the waitcnt pass: vload, vstore, smem, dsload, dsstore (None for the rest).
  A label is MInst("label", (name,)).
  """
  __slots__ = ("op", "args", "mods", "ndefs", "tied", "mem")

  def __init__(self, op: str, args: tuple, mods: dict, ndefs: int = 1, tied: bool = False, mem: str | None = None):
    self.op, self.args, self.mods, self.ndefs, self.tied, self.mem = op, args, mods, ndefs, tied, mem

  def defs(self) -> list:
    """The registers written (VReg or Half)."""
    return [a for a in self.args[:self.ndefs] if isinstance(a, (VReg, Half))]

  def uses(self) -> list:
    """The registers read (VReg or Half; through -x / |x| modifiers)."""
    read = [unwrap(a) for a in self.args[self.ndefs:]]
    read = [a for a in read if isinstance(a, (VReg, Half))]
    return read + self.defs() if self.tied else read

  @property
  def is_label(self) -> bool:
    return self.op == "label"

  @property
  def is_branch(self) -> bool:
    return self.op in BRANCHES

  def __repr__(self) -> str:
    return f"{self.op} {', '.join(map(repr, self.args))}"


def unwrap(a):
  """The operand inside -x / |x| modifiers."""
  while isinstance(a, (Neg, Abs)):
    a = a.operand
  return a


def regof(a) -> VReg | None:
  """The VReg an operand reads or writes (a Half's whole register), or None for constants and syntax."""
  a = unwrap(a)
  if isinstance(a, Half):
    return a.reg
  return a if isinstance(a, VReg) else None


def is_inline(x) -> bool:
  """An inline constant (no literal dword): integers -16..64 and the float constants 0, +-0.5, +-1, +-2, +-4."""
  if isinstance(x, bool):
    return True
  if isinstance(x, int):
    return -16 <= x <= 64
  if isinstance(x, float):
    return x in INLINE_FLOATS and not (x == 0.0 and np.signbit(x))
  return False


def f32_bits(x: float) -> int:
  return struct.unpack("<I", struct.pack("<f", np.float32(x)))[0]


def f64_bits(x: float) -> int:
  return struct.unpack("<Q", struct.pack("<d", x))[0]


def s32(x: int) -> int:
  """A 32-bit pattern as the signed value the assembler takes (0xFFFFFFFF -> -1)."""
  x &= 0xFFFFFFFF
  return x - (1 << 32) if x >= 1 << 31 else x


class Code:
  """The instruction list of one kernel being selected, with its virtual registers and labels."""

  def __init__(self, target: str):
    self.target = target
    self.generation = 12 if target.startswith("gfx12") else 11
    self.insts: list[MInst] = []
    self.nregs = 0
    self.nlabels = 0

  def vreg(self, file: str, size: int = 1, fixed: int | None = None) -> VReg:
    self.nregs += 1
    return VReg(file, size, self.nregs, fixed)

  def new_label(self) -> str:
    self.nlabels += 1
    return f"L{self.nlabels}"

  def place(self, label: str) -> None:
    self.insts.append(MInst("label", (label,), {}, 0))

  def emit(self, op: str, *args, ndefs: int = 1, tied: bool = False, mem: str | None = None, **mods) -> MInst:
    """Appends one instruction (VALU sources first made legal for the constant bus)."""
    if op.startswith("v_") and mem is None:
      args = self.legalize(op, args, ndefs)
    inst = MInst(op, tuple(args), mods, ndefs, tied, mem)
    self.insts.append(inst)
    return inst

  def legalize(self, op: str, args: tuple, ndefs: int) -> tuple:
    """VALU sources copied into VGPRs until at most CONSTANT_BUS_LIMIT scalar values (distinct SGPRs, literals) and
    one distinct literal remain; lane masks stay scalar."""
    limit = 1 if op in CONSTANT_BUS_ONE else 2
    args = list(args)
    fixed = {len(args) - 1} if op in MASK_LAST else set()
    while True:
      keys, movable, literals = {}, [], []
      for i in range(ndefs, len(args)):
        key = scalar_key(args[i])
        if key is None:
          continue
        keys.setdefault(key, []).append(i)
        if key[0] == "literal":
          literals.append(i)
        if i not in fixed:
          movable.append(i)
      distinct_literals = {scalar_key(args[i]) for i in literals}
      if len(keys) <= limit and len(distinct_literals) <= 1 or not movable:
        return tuple(args)
      i = literals[-1] if len(distinct_literals) > 1 and literals[-1] in movable else movable[-1]
      args[i] = self.to_vgpr(args[i])

  def to_vgpr(self, x) -> VReg | Half:
    """x (an SGPR, an SGPR pair or a constant) copied into a new VGPR (pair)."""
    if isinstance(x, VReg) and x.size == 2:
      out = self.vreg("v", 2)
      self.emit("v_mov_b32", Half(out, 0), Half(x, 0))
      self.emit("v_mov_b32", Half(out, 1), Half(x, 1))
      return out
    out = self.vreg("v")
    self.emit("v_mov_b32", out, x)
    return out


def scalar_key(a):
  """What a VALU source costs on the constant bus: a key per SGPR or literal value, None for VGPRs and inline
  constants."""
  a = unwrap(a)
  if isinstance(a, (VReg, Half)):
    if a.file != "s":
      return None
    return ("s", a.reg.id, a.index) if isinstance(a, Half) else ("s", a.id, -1)
  if isinstance(a, str):
    return None if a in ("off", "null") else ("special", a)
  if isinstance(a, (int, float)) and not is_inline(a):
    return ("literal", a)
  return None
