"""Reading operand text into operand values, one reader per operand kind of the tables (OPERAND_TYPES).

Positional operands come in template order (registers, sources with their modifiers, immediates, symbolic 16-bit
immediates); optional modifiers (clamp, offset:N, op_sel:[...], glc, th:..., mul:2, format:[...]) come in any order,
each after an optional comma, as LLVM's parser takes them.
"""
from __future__ import annotations

from . import special
from .lexer import AsmSyntaxError, TokenStream, parse_int, parse_number
from .modifiers import Operands, field_limit
from .operands import (LITERAL_CODE, OperandError, Reg, encode_float, encode_int, float_bits, float_kind, parse_reg,
                       reg_allowed, reg_encoding, special_bits, value_type)
from .tables import MODIFIER_KINDS, InstrDef, Operand

SPECIAL_READERS = {"waitcnt": special.parse_waitcnt, "depctr": special.parse_depctr,
                   "delay_alu": special.parse_delay_alu, "hwreg": special.parse_hwreg,
                   "sendmsg": special.parse_sendmsg}
# modifier prefix (`prefix:value`) of each named kind; named_int and array kinds carry theirs in the parameter
PREFIXES = {"flat_offset": "offset", "format": "format", "index_key": "index_key", "swizzle": "offset"}
OMOD_NAMES = {("mul", 1): "NONE", ("div", 1): "NONE", ("mul", 2): "MUL2", ("mul", 4): "MUL4", ("div", 2): "DIV2"}


def is_modifier(op: Operand) -> bool:
  return op.type.kind in MODIFIER_KINDS + ("swizzle", "endpgm")


# ---- registers and sources ------------------------------------------------------------------------------------------

def read_reg(ts: TokenStream, op: Operand, ops: Operands, target) -> int:
  """A register of the operand's class -> its operand code."""
  tok = ts.peek()
  reg = parse_reg(tok.text, target) if tok is not None and tok.kind in ("reg", "id") else None
  if reg is None:
    raise OperandError(f"expected a register for {op.name}, found {ts.peek_text() or 'end of line'!r}")
  if reg.file not in ("v", "s", "ttmp"):
    reg = Reg(reg.file, 0, special_bits(reg, op.type.regclass, target))
  if not reg_allowed(reg, op.type.regclass, target):
    raise OperandError(f"{reg} is not a valid {op.name} ({op.type.regclass})")
  code = reg_encoding(reg, target)
  if reg.file != "v" and code >= field_limit(ops.instr, op.name):
    raise OperandError(f"{reg} does not fit the {op.name} field")   # e.g. src_shared_base in a 7-bit SDST
  ts.next()
  return code


def read_src(ts: TokenStream, op: Operand, ops: Operands, target) -> int:
  """A register, inline constant or literal (`lit(x)` forces one) for a SRC operand -> its operand code."""
  vtype = value_type(op.type.param)
  forced = ts.accept("lit")
  if forced:
    ts.expect("(")
  number = parse_number(ts)
  if number is None:
    if forced:
      raise OperandError("lit() takes a number")
    return read_reg(ts, op, ops, target)
  if forced:
    ts.expect(")")
  code, literal = encode_float(number, vtype) if isinstance(number, float) else encode_int(number, vtype)
  if forced and literal is None:
    code, literal = LITERAL_CODE, forced_literal(number, vtype)
  if literal is not None:
    if not literal_allowed(op, ops.instr):
      raise OperandError(f"{op.name} of {ops.instr.mnemonic} takes no literal constant")
    if ops.literal is not None and ops.literal != literal:
      raise OperandError("only one literal constant per instruction")
    ops.literal = literal
  return code


def forced_literal(number, vtype: str) -> int:
  if isinstance(number, int):
    return number & 0xFFFFFFFF
  kind = float_kind(vtype) if vtype not in ("i16", "v2i16", "i32") else "f32"
  bits = float_bits(number, kind)
  return bits >> 32 if kind == "f64" else bits


def literal_allowed(op: Operand, instr: InstrDef) -> bool:
  # REG_IMM operands take literals; on gfx11+ VOP3 forms take one too (FeatureVOP3Literal), but not the matrix
  # (VReg_*) sources of WMMA; inline-only operands (OPERAND_REG_INLINE_C) elsewhere take none
  if "_IMM_" in op.type.param or op.type.param.endswith("_DEFERRED"):
    return True
  return instr.family in ("VOP3", "VOP3SD", "VOP3P") and op.type.regclass.startswith("VS_")


def read_value(ts: TokenStream, op: Operand, ops: Operands, target) -> int:
  if op.type.kind == "src":
    return read_src(ts, op, ops, target)
  if op.type.kind == "reg":
    return read_reg(ts, op, ops, target)
  raise OperandError(f"{op.name} cannot take modifiers")


def read_modded_src(ts: TokenStream, mods_op: Operand, src_op: Operand, ops: Operands, target) -> None:
  """srcN with floating-point (-x, |x|, neg(x), abs(x)) or integer (sext(x)) input modifiers; -1.0 is a constant."""
  mods = target.sym("SRC_MODS")
  bits, closers = 0, []
  if mods_op.type.kind == "intmods":
    if take_call(ts, "sext"):
      bits |= mods["SEXT"]
      closers.append(")")
  else:
    if take_call(ts, "neg"):
      bits |= mods["NEG"]
      closers.append(")")
    elif ts.peek_text() == "-" and (ts.peek_text(1) in ("|", "abs", "-") or ts.peek(1) is not None
                                    and ts.peek(1).kind in ("reg", "id")):
      ts.next()
      bits |= mods["NEG"]
    if ts.accept("|"):
      bits |= mods["ABS"]
      closers.append("|")
    elif take_call(ts, "abs"):
      bits |= mods["ABS"]
      closers.append(")")
  ops.vals[src_op.name] = read_value(ts, src_op, ops, target)
  for closer in reversed(closers):
    ts.expect(closer)
  ops.vals[mods_op.name] = bits


def take_call(ts: TokenStream, name: str) -> bool:
  """Consume `name(` if it comes next."""
  if ts.peek_text() == name and ts.peek_text(1) == "(":
    ts.next()
    ts.next()
    return True
  return False


# ---- positional operands --------------------------------------------------------------------------------------------

def read_positional(ts: TokenStream, op: Operand, ops: Operands, target, modded: dict) -> None:
  """One positional operand of the syntax template."""
  kind = op.type.kind
  if kind in ("fpmods", "intmods"):
    read_modded_src(ts, op, modded[op.name], ops, target)
  elif kind in ("reg", "src"):
    ops.vals[op.name] = read_value(ts, op, ops, target)
  elif kind == "kimm":
    number = parse_number(ts)
    if number is None:
      raise OperandError(f"{op.name} takes a constant")
    ops.vals[op.name] = kimm_bits(number, op.type.param)
  elif kind == "imm" and op.type.name == "VersionImm":
    ops.vals[op.name] = special.parse_version(ts, target, ops.instr)
  elif kind in ("imm", "label", "smem_offset"):
    tok = ts.peek()
    if tok is None or tok.kind not in ("num", "punct"):
      raise OperandError(f"{op.name} takes an integer, found {ts.peek_text() or 'end of line'!r}")
    ops.vals[op.name] = parse_int(ts)
  elif kind in SPECIAL_READERS:
    ops.vals[op.name] = SPECIAL_READERS[kind](ts, target, ops.instr)
  else:
    raise AsmSyntaxError(f"no reader for operand kind {kind!r} ({op.name})")


def kimm_bits(number, width: str) -> int:
  """The K constant of fmaak/fmamk: an f32 (or f16) value or its raw bits."""
  vtype = "f16" if width == "16" else "f32"
  if isinstance(number, float):
    return 0 if number == 0.0 else encode_float(number, vtype)[1] or 0
  return number & (0xFFFF if width == "16" else 0xFFFFFFFF)


# ---- optional modifiers ---------------------------------------------------------------------------------------------

def read_modifier(ts: TokenStream, ops: Operands, target, pending: list) -> bool:
  """Read one optional modifier if the next tokens are one of `pending`'s; a comma before it is allowed
  (`s3, format:[BUF_FMT_32_FLOAT]`). Returns whether one was read."""
  if ts.peek_text() == "," and ts.peek(1) is not None:
    start = ts.mark()
    ts.next()
    if read_modifier(ts, ops, target, pending):
      return True
    ts.reset(start)
    return False
  for op in pending:
    if read_one_modifier(ts, op, ops, target):
      return True
  return False


def read_one_modifier(ts: TokenStream, op: Operand, ops: Operands, target) -> bool:
  kind, param = op.type.kind, op.type.param
  word = ts.peek_text().lower()
  if kind == "bit":
    return word == param and set_value(ts, ops, op, 1, skip=1)
  if kind == "cpol":
    value = special.parse_cpol_item(ts, target, ops.instr, ops.vals.get(op.name, 0))
    return value is not None and set_value(ts, ops, op, value)
  if kind == "endpgm":
    return ts.peek() is not None and ts.peek().kind == "num" and set_value(ts, ops, op, parse_int(ts))
  if ts.peek_text(1) != ":":
    return False
  if kind == "omod":
    return word in ("mul", "div") and read_omod(ts, op, ops, target)
  prefix = param.split(":")[0] if kind in ("named_int", "array") else PREFIXES.get(kind)
  if prefix != word or op.name in ops.vals:
    return False
  ts.next()
  ts.next()
  if kind == "array":
    ops.vals[op.name] = read_bit_array(ts)
  elif kind == "format":
    ops.vals[op.name] = special.parse_format(ts, target, ops.instr)
  elif kind == "swizzle":
    ops.vals[op.name] = special.parse_swizzle(ts, target, ops.instr)
  else:
    value = parse_int(ts)
    bits = int(param.split(":")[1]) if kind == "named_int" else 0
    if bits and not 0 <= value < 1 << bits:
      raise OperandError(f"{prefix}:{value} does not fit {bits} bits")
    ops.vals[op.name] = value
  return True


def set_value(ts: TokenStream, ops: Operands, op: Operand, value: int, skip: int = 0) -> bool:
  for _ in range(skip):
    ts.next()
  ops.vals[op.name] = value
  return True


def read_omod(ts: TokenStream, op: Operand, ops: Operands, target) -> bool:
  word = ts.next().text.lower()
  ts.next()
  factor = parse_int(ts)
  name = OMOD_NAMES.get((word, factor))
  if name is None:
    raise OperandError(f"bad output modifier {word}:{factor}; use mul:2, mul:4 or div:2")
  ops.vals[op.name] = target.sym("OMOD")[name]
  return True


def read_bit_array(ts: TokenStream) -> int:
  """[a,b,c] of 0/1 -> a | b << 1 | c << 2."""
  ts.expect("[")
  bits, i = 0, 0
  while True:
    bits |= (parse_int(ts) & 1) << i
    i += 1
    if not ts.accept(","):
      break
  ts.expect("]")
  return bits
