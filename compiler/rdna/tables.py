"""Typed views of the generated instruction tables (compiler/rdna/generated/gfx11.py, gfx12.py) and their indexes.

An `InstrDef` is one encoding of one instruction: its printed mnemonic, the operand syntax template, the fixed opcode
bits (value under mask) and, per `Inst` variable of LLVM's encoding record, the bit segments it occupies. The
assembler fills variables from text, the disassembler reads them back from bytes; both go through the same segments.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import re
from dataclasses import dataclass, field

TARGET_ALIASES = {"gfx1100": "gfx11", "gfx11": "gfx11", "rdna3": "gfx11", "gfx1201": "gfx12", "gfx12": "gfx12",
                  "rdna4": "gfx12"}
# families whose VALU mnemonic takes the _e32 / _e64 encoding suffix (AMDGPUAsmParser::parseMnemonicSuffix)
VOP32_FAMILIES = ("VOP1", "VOP2", "VOPC")
VOP64_FAMILIES = ("VOP3", "VOP3SD", "VOP3P")
# operand kinds printed as optional trailing modifiers (" clamp", " offset:16", " op_sel:[0,1]"), in any order
MODIFIER_KINDS = ("bit", "named_int", "flat_offset", "omod", "array", "cpol", "format", "index_key")
TEMPLATE_TOKEN = re.compile(r"\$(\w+)|([^$]+)")


@dataclass(frozen=True)
class OperandType:
  name: str
  kind: str        # reg, src, fpmods, intmods, mods, bit, named_int, imm, label, kimm, cpol, waitcnt, hwreg, ...
  regclass: str    # register class for reg/src kinds, else ""
  param: str       # kind parameter: OperandType for src, prefix for named operands, default for cpol, ...


@dataclass(frozen=True)
class Operand:
  name: str        # LLVM operand name ($vdst, $src0_modifiers, ...)
  type: OperandType


@dataclass(frozen=True)
class InstrDef:
  record: str                  # LLVM record name, e.g. V_ADD_F32_e32_gfx11 (grep it in llvm/lib/Target/AMDGPU)
  family: str                  # encoding family: SOP1 .. VOP3P, VOPD, DS, FLAT/GLOBAL/SCRATCH, MUBUF, VBUFFER, ...
  mnemonic: str                # as printed, with the _e32/_e64 suffix where LLVM prints one
  syntax: str                  # operand template: literal text and $operand references
  size: int                    # bytes without a trailing literal constant
  value: int                   # fixed opcode bits
  mask: int
  operands: tuple              # (Operand, ...) in LLVM's (outs, ins) order
  fields: dict                 # Inst variable -> ((inst_lo, width, value_lo), ...)
  tied: tuple                  # ((operand, tied-to operand), ...)
  flags: frozenset             # TSFlags / MCInstrDesc bits: IsPacked, VOP3_OPSEL, IsAtomicRet, mayStore, ...
  ndefs: int                   # the first ndefs operands are outputs (LLVM OutOperandList)
  template: tuple = field(default=(), compare=False)   # parsed syntax: (("lit", text) | ("op", Operand)), ...

  @property
  def base_mnemonic(self) -> str:
    """The mnemonic the parser matches: without the _e32/_e64 suffix the printer adds."""
    for suffix in ("_e32", "_e64"):
      if self.mnemonic.endswith(suffix) and self.family in VOP32_FAMILIES + VOP64_FAMILIES:
        return self.mnemonic[:-4]
    return self.mnemonic

  @property
  def defs(self) -> tuple:
    return tuple(op.name for op in self.operands[:self.ndefs])

  @property
  def operand(self) -> dict:
    return {op.name: op for op in self.operands}

  def __repr__(self) -> str:
    return f"InstrDef({self.record}, {self.mnemonic!r}, {self.family}, {self.size} bytes)"


class Target:
  """One ISA target's tables: instructions, operand types, registers and symbolic operand names."""

  def __init__(self, module):
    self.module = module
    self.name: str = module.TARGET
    self.generation: int = module.GENERATION
    self.source: str = module.SOURCE
    self.special_regs: dict = module.SPECIAL_REGS
    self.reg_classes: dict = module.REG_CLASSES
    self.reg_files: dict = module.REG_FILES
    self.operand_types = {name: OperandType(name, *spec) for name, spec in module.OPERAND_TYPES.items()}
    self.instructions = tuple(self._instr(row) for row in module.INSTRUCTIONS)
    self.by_record = {i.record: i for i in self.instructions}
    self.by_mnemonic: dict = {}
    for instr in self.instructions:
      self.by_mnemonic.setdefault(self.parse_key(instr), []).append(instr)
    # InstAlias: other spellings of a row (v_cmp_eq_f32 v1, v2 without the implicit vcc_lo), parsed only
    for record, mnemonic, syntax in module.INST_ALIASES:
      base = self.by_record[record]
      alias = dataclasses.replace(base, syntax=syntax, template=self._template(syntax, base.operands))
      key = mnemonic.lower()
      if alias not in self.by_mnemonic.get(key, []) and (key, syntax) != (self.parse_key(base), base.syntax):
        self.by_mnemonic.setdefault(key, []).append(alias)
    self.mnemonic_aliases: dict = module.MNEMONIC_ALIASES   # s_load_dword -> s_load_b32, ...
    for cands in self.by_mnemonic.values():
      cands.sort(key=candidate_order)
    self._decode_index = build_decode_index(self.instructions)

  def _instr(self, row: tuple) -> InstrDef:
    record, fam, mnemonic, syntax, size, value, mask, operands, fields, tied, flags, ndefs = row
    ops = tuple(Operand(name, self.operand_types[tname]) for name, tname in operands)
    return InstrDef(record, fam, mnemonic, syntax, size, value, mask, ops, dict(fields), tied, frozenset(flags),
                    ndefs, self._template(syntax, ops))

  @staticmethod
  def _template(syntax: str, ops: tuple) -> tuple:
    by_name = {op.name: op for op in ops}
    return tuple(("op", by_name[m.group(1)]) if m.group(1) else ("lit", m.group(2))
                 for m in TEMPLATE_TOKEN.finditer(syntax))

  @staticmethod
  def parse_key(instr: InstrDef) -> str:
    if instr.family == "VOPD":  # "v_dual_add_f32 ... :: v_dual_mul_f32 ..." is keyed by both halves
      return instr.mnemonic + "::" + re.search(r"::\s*(\w+)", instr.syntax).group(1)
    return instr.base_mnemonic

  def candidates(self, key: str) -> list:
    return self.by_mnemonic.get(key, [])

  def decode_candidates(self, word: int) -> list:
    """Rows that may match an instruction whose first dword is `word`, most fixed bits first."""
    submask, sub = self._decode_index.get(word >> 23 & 0x1FF, (0, {}))
    return sub.get(word & submask, [])

  def sym(self, name: str):
    """A symbolic operand table from the generated module (HWREG, SENDMSG, WAITCNT, CPOL, UFMT, ...)."""
    return getattr(self.module, name)


def candidate_order(instr: InstrDef) -> tuple:
  # Try the shortest encoding first (VOP2 before VOP3, like LLVM's matcher prefers e32), then by record name.
  return (instr.size, instr.family in VOP64_FAMILIES, instr.record)


def build_decode_index(instructions) -> dict:
  """Bucket rows by bits 31:23 of their first dword (where every encoding family keeps its identifying bits), then
  by the first-dword bits all rows of a bucket fix; within a bucket the most specific row comes first, like LLVM's
  decoder tables (an SMEM load with soffset=null decodes as the immediate-offset form)."""
  buckets: dict = {}
  for instr in instructions:
    top_mask = instr.mask >> 23 & 0x1FF
    top_value = instr.value >> 23 & 0x1FF
    for key in range(512):
      if key & top_mask == top_value:
        buckets.setdefault(key, []).append(instr)
  index = {}
  for key, members in buckets.items():
    members.sort(key=lambda i: (-bin(i.mask).count("1"), i.size, i.record))
    submask = 0xFFFFFFFF
    for instr in members:
      submask &= instr.mask
    sub: dict = {}
    for instr in members:
      sub.setdefault(instr.value & submask, []).append(instr)
    index[key] = (submask, sub)
  return index


@functools.lru_cache(maxsize=None)
def get_target(name: str) -> Target:
  """Load a target's tables by name: gfx1100 / gfx11 / rdna3 or gfx1201 / gfx12 / rdna4.

  Raises:
    ValueError: unknown target name.
  """
  short = TARGET_ALIASES.get(name.lower())
  if short is None:
    raise ValueError(f"unknown RDNA target {name!r}; use one of {sorted(TARGET_ALIASES)}")
  return Target(importlib.import_module(f"compiler.rdna.generated.{short}"))
