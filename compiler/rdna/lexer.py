"""Tokens of LLVM AMDGPU assembly operand text: registers, numbers, names, strings and punctuation."""
from __future__ import annotations

import re
from dataclasses import dataclass

TOKEN_RE = re.compile(r"""
   (?P<ws>\s+)
  |(?P<reg>(?:v|s|ttmp)\[\s*\d+\s*(?::\s*\d+\s*)?\](?:\.[lh])?)
  |(?P<num>0[xX][0-9a-fA-F]+|0[bB][01]+|(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)
  |(?P<id>[A-Za-z_][\w.]*)
  |(?P<str>"[^"]*")
  |(?P<punct>::|[,:\[\](){}|\-+~!&*/<>^=])
""", re.X)


class AsmSyntaxError(ValueError):
  """Text the assembler cannot read as any form of the instruction."""


@dataclass(frozen=True)
class Token:
  kind: str    # reg, num, id, str, punct
  text: str

  @property
  def value(self):
    """Numeric value of a num token (int, or float when written with a point or exponent)."""
    t = self.text.lower()
    if t.startswith("0x"):
      return int(t, 16)
    if t.startswith("0b"):
      return int(t[2:], 2)
    if "." in t or "e" in t:
      return float(t)
    return int(t)


def tokenize(text: str) -> list:
  tokens, pos = [], 0
  while pos < len(text):
    m = TOKEN_RE.match(text, pos)
    if m is None:
      raise AsmSyntaxError(f"unexpected character {text[pos]!r} at column {pos + 1} of {text!r}")
    pos = m.end()
    if m.lastgroup != "ws":
      tok = m.group()
      if m.lastgroup == "reg":
        tok = re.sub(r"\s+", "", tok)
      tokens.append(Token(m.lastgroup, tok))
  return tokens


class TokenStream:
  """A cursor over tokens; `mark`/`reset` let the assembler back out of a form that did not match."""

  def __init__(self, tokens: list):
    self.tokens = tokens
    self.pos = 0

  def peek(self, ahead: int = 0) -> Token | None:
    i = self.pos + ahead
    return self.tokens[i] if i < len(self.tokens) else None

  def peek_text(self, ahead: int = 0) -> str:
    tok = self.peek(ahead)
    return tok.text if tok else ""

  def next(self) -> Token:
    tok = self.peek()
    if tok is None:
      raise AsmSyntaxError("unexpected end of operands")
    self.pos += 1
    return tok

  def accept(self, text: str) -> bool:
    tok = self.peek()
    if tok is not None and tok.text.lower() == text:
      self.pos += 1
      return True
    return False

  def expect(self, text: str) -> None:
    if not self.accept(text):
      raise AsmSyntaxError(f"expected {text!r}, found {self.peek_text() or 'end of line'!r}")

  def at_end(self) -> bool:
    return self.pos >= len(self.tokens)

  def mark(self) -> int:
    return self.pos

  def reset(self, pos: int) -> None:
    self.pos = pos


def parse_int(ts: TokenStream) -> int:
  """An integer expression: [-+~]number, optionally combined with + - * << >> (left to right).

  `|` and `&` are left out: they separate s_delay_alu / s_waitcnt fields and delimit |abs| operands.
  """
  value = parse_int_term(ts)
  while ts.peek_text() in ("+", "-", "*", "<", ">") and ts.peek(1) is not None:
    op = ts.next().text
    if op in "<>":
      ts.expect(op)
    rhs = parse_int_term(ts)
    value = {"+": value + rhs, "-": value - rhs, "*": value * rhs, "<": value << rhs, ">": value >> rhs}[op]
  return value


def parse_int_term(ts: TokenStream) -> int:
  if ts.accept("-"):
    return -parse_int_term(ts)
  if ts.accept("~"):
    return ~parse_int_term(ts)
  if ts.accept("+"):
    return parse_int_term(ts)
  if ts.accept("("):
    value = parse_int(ts)
    ts.expect(")")
    return value
  tok = ts.next()
  if tok.kind != "num" or not isinstance(tok.value, int):
    raise AsmSyntaxError(f"expected an integer, found {tok.text!r}")
  return tok.value


def parse_number(ts: TokenStream):
  """A signed number token: int or float (no expressions), or None (cursor unchanged) if there is none."""
  start = ts.mark()
  sign = -1 if ts.accept("-") else 1
  tok = ts.peek()
  if tok is None or tok.kind != "num":
    ts.reset(start)
    return None
  ts.next()
  value = tok.value
  if isinstance(value, int) and ts.peek_text() in ("+", "*", "<", ">") and ts.peek(1) is not None:
    ts.reset(start)   # an integer expression
    return parse_int(ts)
  return sign * value if not (isinstance(value, float) and sign < 0) else -value
