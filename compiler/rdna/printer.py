"""Printing operand values as the text `llvm-mc --disassemble` prints (AMDGPUInstPrinter, LLVM 19).

Positional operands print bare; modifiers print with their leading space, or nothing at their default.
"""
from __future__ import annotations

from . import special
from .modifiers import SIGNED_NAMED, Operands, array_shape, modded_sources
from .operands import (INLINE_FLOAT_FIRST, INLINE_FLOATS, INV_2PI_BITS, INV_2PI_CODE, LITERAL_CODE, OperandError,
                       float_bits, format_inline, format_literal, reg_from_encoding, value_type)
from .reader import is_modifier
from .tables import InstrDef, Operand

SPECIAL_PRINTERS = {"waitcnt": special.format_waitcnt, "depctr": special.format_depctr,
                    "delay_alu": special.format_delay_alu, "hwreg": special.format_hwreg,
                    "sendmsg": special.format_sendmsg}
OMOD_TEXT = {"MUL2": " mul:2", "MUL4": " mul:4", "DIV2": " div:2"}
# printU16ImmOperand / printU32ImmOperand operands print hex; plain immediates print 0..64 as decimals
HEX_IMM_TYPES = ("s16imm", "u16imm", "VersionImm")


def format_instruction(instr: InstrDef, ops: Operands, target, llvm_compat: bool = False) -> str:
  """Operands -> assembly text; llvm_compat reproduces llvm-mc's text also where that does not assemble back."""
  ops.llvm_compat = llvm_compat
  modded = modded_sources(instr)
  body = []
  for kind, item in instr.template:
    if kind == "lit":
      body.append(item)
    elif is_modifier(item):
      body.append(format_modifier(item, ops, target))
    else:
      body.append(format_positional(item, ops, target, modded))
  text = "".join(body)
  if text and not text.startswith(" "):
    text = " " + text
  return instr.mnemonic + text


def format_reg(code: int, op: Operand, target) -> str:
  reg = reg_from_encoding(code, op.type.regclass, target)
  if reg is None:
    raise OperandError(f"code {code} names no {op.type.regclass} register")
  return str(reg)


def format_src(code: int, op: Operand, ops: Operands, target) -> str:
  vtype = value_type(op.type.param)
  if code == LITERAL_CODE:
    if ops.literal is None:
      raise OperandError("literal operand without a literal dword")
    return format_literal(ops.literal, vtype)
  if ops.llvm_compat and vtype == "i16" and INLINE_FLOAT_FIRST <= code <= INV_2PI_CODE:
    # llvm-mc prints float inline constants of 16-bit integer operands as the half's bits (printImmediateInt16),
    # text it would itself assemble as a literal; by default we print the constant (1.0), which reads back
    bits = float_bits(INLINE_FLOATS[code - INLINE_FLOAT_FIRST], "f16") if code < INV_2PI_CODE else INV_2PI_BITS["f16"]
    return format_literal(bits, "i16")
  text = format_inline(code, vtype)
  return text if text is not None else format_reg(code, op, target)


def format_value(op: Operand, ops: Operands, target) -> str:
  code = ops.vals.get(op.name, 0)
  return format_src(code, op, ops, target) if op.type.kind == "src" else format_reg(code, op, target)


def format_modded(op: Operand, src: Operand, ops: Operands, target) -> str:
  """A source with its input modifiers: -x, |x|, -|x|, neg(constant), sext(x) (printOperandAndFPInputMods)."""
  inner = format_value(src, ops, target)
  bits = ops.vals.get(op.name, 0)
  mods = target.sym("SRC_MODS")
  if op.type.kind == "intmods":
    return f"sext({inner})" if bits & mods["SEXT"] else inner
  if bits & mods["ABS"]:
    inner = f"|{inner}|"
  if bits & mods["NEG"]:
    # neg(...) on constants: -1 is another inline constant than neg(1)
    code = ops.vals.get(src.name, 0)
    constant = src.type.kind == "src" and (128 <= code <= 208 or 240 <= code <= 248 or code == LITERAL_CODE)
    inner = f"neg({inner})" if constant and not bits & mods["ABS"] else f"-{inner}"
  return inner


def format_positional(op: Operand, ops: Operands, target, modded: dict) -> str:
  kind = op.type.kind
  value = ops.vals.get(op.name, 0)
  if kind in ("fpmods", "intmods"):
    return format_modded(op, modded[op.name], ops, target)
  if kind in ("reg", "src"):
    return format_value(op, ops, target)
  if kind == "kimm":
    return format_literal(value, "f16" if op.type.param == "16" else "f32")
  if kind == "smem_offset":
    return signed_hex(value)
  if kind == "label":
    return str(value)
  if kind == "imm":
    if op.type.name == "VersionImm":
      return special.format_version(value, target, ops.instr)
    if op.type.name in HEX_IMM_TYPES:
      return f"{value & 0xFFFF:#x}"
    return str(value) if 0 <= value <= 64 else f"{value:#x}"
  if kind in SPECIAL_PRINTERS:
    return SPECIAL_PRINTERS[kind](value, target, ops.instr)
  raise OperandError(f"no printer for operand kind {kind!r} ({op.name})")


def signed_hex(value: int) -> str:
  return f"{value:#x}" if value >= 0 else f"-{-value:#x}"


def format_modifier(op: Operand, ops: Operands, target) -> str:
  kind, param = op.type.kind, op.type.param
  value = ops.vals.get(op.name, 0)
  if kind == "array":
    return format_array(op.name, ops)
  if kind == "cpol":
    return special.format_cpol(value, target, ops.instr)
  if kind == "format":
    return special.format_format(value, target, ops.instr)
  if op.type.name in SIGNED_NAMED:   # printSMEMOffsetMod prints the offset even when it is 0
    return f" offset:{signed_hex(value)}"
  if not value:
    return ""
  if kind == "bit":
    return f" {param}"
  if kind == "swizzle":
    return f" offset:{special.format_swizzle(value, target, ops.instr)}"
  if kind == "endpgm":
    return f" {value}"
  if kind == "omod":
    return OMOD_TEXT[{v: k for k, v in target.sym("OMOD").items()}[value]]
  if kind == "index_key":
    return f" index_key:{value}"
  prefix = "offset" if kind == "flat_offset" else param.split(":")[0]
  return f" {prefix}:{value}"


def format_array(name: str, ops: Operands) -> str:
  """op_sel:[a,b,c] and friends, left out when every element is at its default."""
  count, default, dst = array_shape(name, ops.instr)
  bits = ops.vals.get(name, 0)
  elems = [bits >> i & 1 for i in range(count)]
  if all(e == default for e in elems) and not (dst and bits >> count & 1):
    return ""
  if dst:
    elems.append(bits >> count & 1)
  return f" {name}:[{','.join(str(e) for e in elems)}]"
