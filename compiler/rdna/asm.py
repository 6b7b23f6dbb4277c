"""RDNA3/RDNA4 assembler: LLVM AMDGPU assembly text -> instruction bytes, plus a builder for code generators.

    asm = Assembler("gfx1100")
    asm.emit("v_add_f32", v(1), v(2), v(3))                  # v_add_f32_e32 v1, v2, v3
    asm.emit("v_fma_f32", v(0), neg(v(1)), abs_(s(2)), 1.0, clamp=True)
    asm.emit("global_load_b32", v(4), v(0, 2), "off", offset=16, glc=True)
    asm.label("loop")
    asm.emit("s_cbranch_scc1", "loop")
    code = asm.code()                                        # bytes, labels resolved

Matching follows LLVM's assembler: the mnemonic (after MnemonicAlias renames) picks the table rows, an _e32 / _e64
suffix narrows them to that encoding, and the shortest form whose syntax template accepts the operands wins, so
`v_add_f32 v1, v2, v3` is VOP2 and `v_add_f32 v1, -v2, v3` is VOP3.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from .checks import check_cpol, check_instruction
from .encoding import encode
from .lexer import AsmSyntaxError, TokenStream, tokenize
from .modifiers import Operands, fold_arrays, modded_sources
from .operands import OperandError, Reg, s, ttmp, v
from .reader import is_modifier, read_modifier, read_positional
from .tables import VOP32_FAMILIES, VOP64_FAMILIES, InstrDef, Target, get_target

__all__ = ["Abs", "AsmError", "Assembler", "Neg", "Reg", "abs_", "assemble", "assemble_instruction", "encode",
           "neg", "parse_instruction", "s", "ttmp", "v"]
MNEMONIC_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(.*)$", re.S)
LABEL_RE = re.compile(r"^([A-Za-z_.$][\w.$]*):(?!:)\s*(.*)$")


class AsmError(ValueError):
  """Assembly text that no form of the instruction accepts; the message names the line and the forms tried."""


@dataclass(frozen=True)
class Neg:
  """-x (floating-point negate input modifier); printed neg(1.0) for constants."""
  operand: object

  def __str__(self) -> str:
    inner = fmt_operand(self.operand)
    return f"neg({inner})" if isinstance(self.operand, (int, float)) else f"-{inner}"


@dataclass(frozen=True)
class Abs:
  """|x| (floating-point absolute-value input modifier)."""
  operand: object

  def __str__(self) -> str:
    return f"|{fmt_operand(self.operand)}|"


def neg(x) -> Neg:
  return Neg(x)


def abs_(x) -> Abs:
  return Abs(x)


def fmt_operand(x) -> str:
  if isinstance(x, bool):
    raise TypeError("booleans are modifiers: pass them as keywords (clamp=True)")
  return repr(x) if isinstance(x, float) else str(x)


def fmt_modifier(name: str, value) -> str:
  if value is True:
    return name
  if isinstance(value, (list, tuple)):
    return f"{name}:[{','.join(str(int(x)) for x in value)}]"
  return f"{name}:{value}"


class Assembler:
  """Collects instructions (builder calls or source text) for one target and assembles them, labels resolved.

  Args:
    target: gfx1100 / gfx11 / rdna3 or gfx1201 / gfx12 / rdna4.
  """

  def __init__(self, target: str = "gfx1100"):
    self.target: Target = get_target(target)
    self.lines: list = []       # (instruction text, None) or (None, label)

  def emit(self, mnemonic: str, *operands, **modifiers) -> str:
    """Append one instruction and return its text. Operands: Reg (v(1), s(2, 2)), numbers, neg()/abs_() wrappers or
    syntax strings ("off", "vcc_lo", "hwreg(HW_REG_MODE)", a label); keyword modifiers become `name`, `name:value`
    or `name:[a,b]` (clamp=True, offset=16, op_sel=[1, 0], th="TH_LOAD_NT"); False / None leave one out.

    Raises:
      AsmError: at once, if no form of the instruction takes these operands.
    """
    text = mnemonic + (" " + ", ".join(fmt_operand(x) for x in operands) if operands else "")
    for name, value in modifiers.items():
      if value is not False and value is not None:
        text += " " + fmt_modifier(name, value)
    parse_instruction(text, self.target, labels=None)
    self.lines.append((text, None))
    return text

  def label(self, name: str) -> None:
    self.lines.append((None, name))

  def source(self, text: str) -> None:
    """Append assembly source: one instruction per line, `name:` labels, `;` and `//` comments, directives ignored."""
    for line in text.splitlines():
      line = strip_comment(line).strip()
      m = LABEL_RE.match(line)
      if m:
        self.lines.append((None, m.group(1)))
        line = m.group(2)
      if line and not line.startswith("."):
        self.lines.append((line, None))

  def code(self) -> bytes:
    """Everything appended so far as bytes: a sizing pass places the labels, a second pass encodes."""
    labels, pc = {}, 0
    for text, label in self.lines:
      if label is not None:
        labels[label] = pc
      else:
        pc += len(assemble_instruction(text, self.target, labels=None, pc=pc))
    out = bytearray()
    for text, _ in self.lines:
      if text is not None:
        out += assemble_instruction(text, self.target, labels=labels, pc=len(out))
    return bytes(out)


def strip_comment(line: str) -> str:
  for marker in (";", "//"):
    if marker in line:
      line = line[:line.index(marker)]
  return line


def assemble(text: str, target: str = "gfx1100") -> bytes:
  """Assemble a source text (several lines, labels allowed) for a target."""
  asm = Assembler(target)
  asm.source(text)
  return asm.code()


def assemble_instruction(text: str, target: Target, labels: dict | None = None, pc: int = 0) -> bytes:
  """One instruction line -> its bytes.

  Args:
    labels: label -> byte offset for branch operands; None means a sizing pass (labels read as 0).
    pc: byte offset of this instruction, for branch offsets.
  Raises:
    AsmError: unknown mnemonic, or no form of it accepts the operands.
  """
  instr, ops = parse_instruction(text, target, labels, pc)
  return encode(instr, ops, target)


def parse_instruction(text: str, target: Target, labels: dict | None = None, pc: int = 0) -> tuple:
  """One instruction line -> (InstrDef, Operands) of the first form that accepts it (see assemble_instruction)."""
  m = MNEMONIC_RE.match(strip_comment(text).strip())
  if m is None:
    raise AsmError(f"no instruction in {text!r}")
  mnemonic, rest = m.group(1).lower(), m.group(2)
  candidates = candidate_forms(mnemonic, rest, target, text)
  try:
    tokens = tokenize(rest)
  except AsmSyntaxError as e:
    raise AsmError(f"{e} in {text!r}") from None
  errors = []
  for instr in candidates:
    try:
      ops = match(instr, TokenStream(tokens), target)
      finish(instr, ops, target, pc, labels)
      return instr, ops
    except (OperandError, AsmSyntaxError) as e:
      errors.append(f"{instr.mnemonic} {instr.syntax}: {e}")
  raise AsmError(f"invalid operands in {text!r} for {target.name}; tried: " + "; ".join(errors[:4]))


def candidate_forms(mnemonic: str, rest: str, target: Target, text: str) -> list:
  # an _e32 / _e64 suffix picks the encoding (AMDGPUAsmParser::parseMnemonicSuffix), then mnemonic aliases apply
  key, families = target.mnemonic_aliases.get(mnemonic, mnemonic), None
  for suffix, fams in (("_e32", VOP32_FAMILIES), ("_e64", VOP64_FAMILIES)):
    base = target.mnemonic_aliases.get(mnemonic[:-4], mnemonic[:-4])
    if mnemonic.endswith(suffix) and base in target.by_mnemonic:
      key, families = base, fams
  second = re.search(r"::\s*([A-Za-z_]\w*)", rest)
  if second:   # VOPD: both halves name the row
    key = f"{key}::{second.group(1).lower()}"
  candidates = [c for c in target.candidates(key) if families is None or c.family in families]
  if not candidates:
    close = difflib.get_close_matches(key, list(target.by_mnemonic) + list(target.mnemonic_aliases), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise AsmError(f"unknown instruction {mnemonic!r} for {target.name} in {text!r}{hint}")
  return candidates


def match(instr: InstrDef, ts: TokenStream, target: Target) -> Operands:
  """Read the operands of one form against its syntax template (modifiers in any order)."""
  ops = Operands(instr)
  modded = modded_sources(instr)
  pending = [op for op in instr.operands if is_modifier(op) and f"${op.name}" in instr.syntax]
  formats = [op for op in pending if op.type.kind == "format"]
  labels = {}
  for kind, item in instr.template:
    if kind == "lit":
      for tok in tokenize(item):
        ts.expect(tok.text.lower())
    elif is_modifier(item):
      while read_modifier(ts, ops, target, pending):
        pass
    elif item.type.kind == "label" and ts.peek() is not None and ts.peek().kind == "id":
      labels[item.name] = ts.next().text
    else:
      while read_modifier(ts, ops, target, formats):   # MTBUF format:[...] may also come before soffset
        pass
      read_positional(ts, item, ops, target, modded)
  while read_modifier(ts, ops, target, pending):
    pass
  if not ts.at_end():
    raise AsmSyntaxError(f"unexpected {ts.peek_text()!r}")
  ops.vals["<labels>"] = labels
  return ops


def finish(instr: InstrDef, ops: Operands, target: Target, pc: int, labels: dict | None) -> None:
  """Branch targets, defaults, tied operands, arrays -> modifiers, then LLVM's operand checks."""
  for name, label in ops.vals.pop("<labels>").items():
    if labels is None:
      ops.vals[name] = 0
    elif label not in labels:
      raise OperandError(f"undefined label {label!r}")
    else:   # SOPP branch offsets count dwords from the next instruction
      ops.vals[name] = ((labels[label] - (pc + instr.size)) // 4) & 0xFFFF
  for op in instr.operands:
    if op.type.kind == "hidden":
      ops.vals.setdefault(op.name, int(op.type.param))
    if op.type.kind == "format":   # no format:[...] means the default format (BUF_FMT_8_UNORM)
      ops.vals.setdefault(op.name, target.sym("FORMAT_ENUM")["UFMT_DEFAULT"])
  check_cpol(instr, ops, target)
  for a, b in instr.tied:   # tied operands ($vdst = $src2): the one the text names fills the other
    if a in ops.vals:
      ops.vals.setdefault(b, ops.vals[a])
    elif b in ops.vals:
      ops.vals[a] = ops.vals[b]
  fold_arrays(ops, target)
  check_instruction(instr, ops, target)
