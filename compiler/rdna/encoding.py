"""Operand values <-> instruction bytes: the fields of a table row, plus the bits LLVM's code emitter and decoder
set outside them (AMDGPUMCCodeEmitter, AMDGPUDisassembler), each cited where it is applied."""
from __future__ import annotations

from .modifiers import Operands, implied_glc, signed_named
from .operands import LITERAL_CODE
from .tables import InstrDef, Target

SRCS = ("src0", "src1", "src2")


def has_kimm(instr: InstrDef) -> bool:
  return any(op.type.kind == "kimm" for op in instr.operands)


def encode(instr: InstrDef, ops: Operands, target: Target) -> bytes:
  """Operands of a row -> its bytes (with the trailing literal dword, if a source reads one)."""
  word = instr.value
  for var, segs in instr.fields.items():
    value = ops.vals.get(var, 0)
    if implied_glc(instr.operand[var]):
      value &= ~1
    for lo, width, vlo in segs:
      word |= (value >> vlo & ((1 << width) - 1)) << lo
  if instr.family == "VOP3" and instr.mnemonic.startswith("v_cmpx_"):
    # VOPC compares promoted to VOP3 write EXEC: the unused vdst field holds exec_lo (AMDGPUMCCodeEmitter, gfx10+)
    word |= target.special_regs["exec_lo:32"]
  if "VOP3P" in instr.flags:
    # op_sel_hi bits of absent sources are set, all three without an op_sel_hi operand (WMMA)
    # (AMDGPUMCCodeEmitter getImplicitOpSelHiEncoding)
    hi = target.sym("VOP3P_OP_SEL_HI")
    for i, src in enumerate(SRCS):
      if src not in instr.operand or "op_sel_hi" not in instr.operand:
        word |= hi[f"OP_SEL_HI_{i}"]
  out = word.to_bytes(instr.size, "little")
  if ops.literal is not None and not has_kimm(instr):
    out += (ops.literal & 0xFFFFFFFF).to_bytes(4, "little")
  return out


def extract(instr: InstrDef, word: int, target: Target) -> Operands:
  """A row's encoded word -> its operand values (no literal yet; see needs_literal)."""
  ops = Operands(instr)
  for var, segs in instr.fields.items():
    value = 0
    for lo, width, vlo in segs:
      value |= (word >> lo & ((1 << width) - 1)) << vlo
    if is_signed(instr, instr.operand[var]):
      top = max(vlo + width for _, width, vlo in segs)
      if value >> (top - 1) & 1:
        value -= 1 << top
    ops.vals[var] = value
  glc = target.sym("CPOL")["GLC"]
  for op in instr.operands:
    if implied_glc(op):
      ops.vals[op.name] = ops.vals.get(op.name, 0) | glc   # returning atomics imply glc (the decoder adds it)
    if op.type.kind == "hidden":
      ops.vals.setdefault(op.name, int(op.type.param))
  if instr.family == "VOPD" and "vdstY" in ops.vals:
    # the encoding drops vdstY's low bit: it is the complement of vdstX's (AMDGPUDisassembler decodeOperandVOPDDstY)
    ops.vals["vdstY"] |= (ops.vals["vdstX"] & 1) ^ 1
  return ops


def is_signed(instr: InstrDef, op) -> bool:
  """Fields holding two's-complement values: SMEM offsets, global/scratch offsets (and all flat ones on gfx12,
  printFlatOffset), gfx12 VBUFFER offsets."""
  if op.type.kind == "smem_offset" or signed_named(instr, op):
    return True
  return op.type.kind == "flat_offset" and instr.family != "FLAT"


def needs_literal(instr: InstrDef, ops: Operands) -> bool:
  if has_kimm(instr):
    return False
  return any(op.type.kind == "src" and ops.vals.get(op.name) == LITERAL_CODE for op in instr.operands)


def share_kimm(instr: InstrDef, ops: Operands) -> None:
  """fmaak/fmamk: the K dword is the literal; VOPD halves share it (the operand without a field reads the other)."""
  kimms = [op.name for op in instr.operands if op.type.kind == "kimm"]
  ops.literal = [ops.vals[k] for k in kimms if k in instr.fields][0]
  for name in kimms:
    ops.vals[name] = ops.literal
