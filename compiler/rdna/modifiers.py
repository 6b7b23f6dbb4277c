"""Operand values of one instruction, and the operand semantics shared by the reader, printer and encoder.

`Operands.vals` maps LLVM operand names to what the encoding stores: a register's or source's 9-bit operand code,
modifier bits (SIDefines.h SISrcMods: NEG, ABS, SEXT, OP_SEL_0, OP_SEL_1, DST_OP_SEL), immediates. The op_sel /
op_sel_hi / neg_lo / neg_hi syntax arrays are no encoding fields of their own: `fold_arrays` moves their bits into the
srcN_modifiers operands (AMDGPUAsmParser cvtVOP3P / cvtVOP3OpSel) and `unfold_arrays` reads them back.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .operands import OperandError
from .tables import InstrDef, Operand

ARRAYS = ("op_sel", "op_sel_hi", "neg_lo", "neg_hi")
ARRAY_MOD = {"op_sel": "OP_SEL_0", "op_sel_hi": "OP_SEL_1", "neg_lo": "NEG", "neg_hi": "NEG_HI"}
SRCS = ("src0", "src1", "src2")
# named immediates holding a signed value (SMEM offset:N, getSMEMOffsetEncoding)
SIGNED_NAMED = ("SMEMOffsetMod", "OptSMEMOffsetMod")


@dataclass
class Operands:
  """Operand values of one instruction (by LLVM operand name) plus its literal dword, if any."""
  instr: InstrDef
  vals: dict = field(default_factory=dict)
  literal: int | None = None
  llvm_compat: bool = False    # print exactly like llvm-mc where its text does not read back (printer.format_src)


def signed_named(instr: InstrDef, op: Operand) -> bool:
  """SMEM offset:N, and gfx12 VBUFFER offset:N (24-bit signed, printOffset), hold two's-complement values."""
  return op.type.name in SIGNED_NAMED or instr.family == "VBUFFER" and op.type.name == "Offset"


def implied_glc(op: Operand) -> bool:
  """Returning atomics: the glc / TH_ATOMIC_RETURN bit is fixed in the opcode bits, not stored in the cpol field."""
  return op.type.kind == "cpol" and op.type.param in ("glc", "glc1")


def field_limit(instr: InstrDef, name: str) -> int:
  """One past the largest value an operand's encoding field holds (sbase / srsrc drop their low bits)."""
  segs = instr.fields.get(name)
  return 1 << max(vlo + width for _, width, vlo in segs) if segs else 1 << 9


def covered_bits(instr: InstrDef, name: str) -> int:
  """The value bits of an operand its encoding fields store."""
  return sum(((1 << width) - 1) << vlo for _, width, vlo in instr.fields.get(name, ()))


def modded_sources(instr: InstrDef) -> dict:
  """srcN_modifiers -> srcN, for the sources printed with their input modifiers (-v1, |v2|, sext(v3))."""
  out = {}
  for op in instr.operands:
    if op.type.kind in ("fpmods", "intmods") and op.name.endswith("_modifiers"):
      src = instr.operand.get(op.name[:-len("_modifiers")])
      if src is not None:
        out[op.name] = src
  return out


# ---- op_sel / op_sel_hi / neg_lo / neg_hi ----------------------------------------------------------------------------

def is_permlane16(instr: InstrDef) -> bool:
  return instr.mnemonic.startswith(("v_permlane16", "v_permlanex16"))


def array_shape(name: str, instr: InstrDef) -> tuple:
  """(element count, default bit value, has a dst element) of an array (AMDGPUInstPrinter::printPackedModifier):
  one element per source (three for WMMA), op_sel_hi defaulting to 1 on packed math, VOP3 op_sel ending with dst."""
  if is_permlane16(instr) and name == "op_sel":
    return 2, 0, False
  names = {op.name for op in instr.operands}
  count = 0
  while count < len(SRCS) and SRCS[count] in names:
    count += 1
  if "IsWMMA" in instr.flags or "IsSWMMAC" in instr.flags:
    count = 3
  default = int(name == "op_sel_hi" and "IsPacked" in instr.flags)
  dst = name == "op_sel" and "VOP3_OPSEL" in instr.flags and count > 0
  return count, default, dst


def array_targets(name: str, instr: InstrDef) -> list:
  """(element index, srcN_modifiers operand, SISrcMods bit name) for each element of an array."""
  if is_permlane16(instr) and name == "op_sel":   # op_sel:[fetch_inactive, bound_ctrl] (printOpSel)
    return [(0, "src0_modifiers", "OP_SEL_0"), (1, "src1_modifiers", "OP_SEL_0")]
  count, _, dst = array_shape(name, instr)
  out = [(i, f"src{i}_modifiers", ARRAY_MOD[name]) for i in range(count)]
  if dst:
    out.append((count, "src0_modifiers", "DST_OP_SEL"))
  return out


def mod_bit_encoded(instr: InstrDef, mod_name: str, bit: int) -> bool:
  return covered_bits(instr, mod_name) & bit != 0


def fold_arrays(ops: Operands, target) -> None:
  """Assembly: move op_sel / op_sel_hi / neg_lo / neg_hi bits into the srcN_modifiers operands.

  Raises:
    OperandError: an element the encoding has no bit for was set.
  """
  instr = ops.instr
  mods = target.sym("SRC_MODS")
  names = {op.name for op in instr.operands}
  for name in ARRAYS:
    if name not in names:
      continue
    count, default, _ = array_shape(name, instr)
    all_default = (1 << count) - 1 if default else 0
    given = name in ops.vals
    bits = ops.vals.pop(name, all_default)
    for i, mod_name, mod_bit in array_targets(name, instr):
      if not bits >> i & 1:
        continue
      if not mod_bit_encoded(instr, mod_name, mods[mod_bit]):
        if given and bits != all_default:
          raise OperandError(f"{name}[{i}] cannot be set on {instr.mnemonic}")
        continue
      ops.vals[mod_name] = ops.vals.get(mod_name, 0) | mods[mod_bit]


def unfold_arrays(ops: Operands, target) -> None:
  """Disassembly: rebuild the arrays from the srcN_modifiers bits (absent operands read as the default)."""
  instr = ops.instr
  mods = target.sym("SRC_MODS")
  names = {op.name for op in instr.operands}
  for name in ARRAYS:
    if name not in names:
      continue
    _, default, _ = array_shape(name, instr)
    bits = 0
    for i, mod_name, mod_bit in array_targets(name, instr):
      if mod_name in names:
        bit = ops.vals.get(mod_name, 0) & mods[mod_bit] != 0
      else:
        bit = default if mod_bit == "OP_SEL_1" else 0
      bits |= int(bit) << i
    ops.vals[name] = bits
