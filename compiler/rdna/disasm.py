"""RDNA3/RDNA4 disassembler: instruction bytes -> the text `llvm-mc --disassemble` prints (LLVM 19).

    for inst in disassemble(code, "gfx1100"):
      print(f"{inst.offset:04x}: {inst.text}")

Rows are tried most specific first (most fixed bits), like LLVM's decoder tables, and must name valid registers.
"""
from __future__ import annotations

from dataclasses import dataclass

from .encoding import extract, has_kimm, needs_literal, share_kimm
from .modifiers import Operands, unfold_arrays
from .operands import LITERAL_CODE, OperandError, reg_from_encoding
from .printer import format_instruction
from .tables import InstrDef, Target, get_target

__all__ = ["DecodeError", "Decoded", "decode_one", "disassemble", "disassemble_text", "format_instruction"]


class DecodeError(ValueError):
  """Bytes that no instruction of the target decodes from."""


@dataclass(frozen=True)
class Decoded:
  """One decoded instruction: byte offset and size, its table row, operand values and text."""
  offset: int
  size: int
  instr: InstrDef
  ops: Operands
  text: str


def disassemble(code: bytes, target: str = "gfx1100") -> list:
  """Decode a whole code buffer into Decoded instructions.

  Raises:
    DecodeError: the bytes at some offset decode as no instruction of the target.
  """
  tgt = get_target(target)
  out, pos = [], 0
  while pos < len(code):
    instr, ops, size = decode_one(code, pos, tgt)
    out.append(Decoded(pos, size, instr, ops, format_instruction(instr, ops, tgt)))
    pos += size
  return out


def disassemble_text(code: bytes, target: str = "gfx1100") -> str:
  return "\n".join(d.text for d in disassemble(code, target))


def decode_one(code: bytes, pos: int, target: Target) -> tuple:
  """The instruction at byte offset pos -> (InstrDef, Operands, size in bytes including a literal)."""
  if pos + 4 > len(code):
    raise DecodeError(f"truncated instruction at offset {pos:#x}: {code[pos:].hex()}")
  word0 = int.from_bytes(code[pos:pos + 4], "little")
  for instr in target.decode_candidates(word0):
    end = pos + instr.size
    word = int.from_bytes(code[pos:end], "little")
    if end > len(code) or word & instr.mask != instr.value:
      continue
    ops = extract(instr, word, target)
    if needs_literal(instr, ops):
      if end + 4 > len(code):
        continue
      ops.literal = int.from_bytes(code[end:end + 4], "little")
      end += 4
    elif has_kimm(instr):
      share_kimm(instr, ops)
    if operands_valid(instr, ops, target):
      unfold_arrays(ops, target)
      return instr, ops, end - pos
  raise DecodeError(f"no {target.name} instruction encodes as {code[pos:pos + 8].hex()} (offset {pos:#x})")


def operands_valid(instr: InstrDef, ops: Operands, target: Target) -> bool:
  """Register fields name registers of their class; source fields registers or constants."""
  for op in instr.operands:
    if op.name not in instr.fields or op.type.kind not in ("reg", "src"):
      continue
    code = ops.vals[op.name]
    if op.type.kind == "src" and (128 <= code <= 208 or 240 <= code <= 248 or code == LITERAL_CODE):
      continue
    try:
      if reg_from_encoding(code, op.type.regclass, target) is None:
        return False
    except (KeyError, IndexError, OperandError):
      return False
  return True
