"""The operand rules LLVM's assembler enforces beyond the syntax (AMDGPUAsmParser::validateInstruction and friends):
field ranges, the returning/non-returning atomic forms, the VALU constant bus, VOPD register banks, one literal."""
from __future__ import annotations

import re

from .modifiers import Operands, covered_bits, implied_glc, signed_named
from .operands import INLINE_INT_ZERO, LITERAL_CODE, OperandError, class_bits, value_type
from .tables import VOP32_FAMILIES, VOP64_FAMILIES, InstrDef, Target

# VALU constant bus: gfx10+ read at most two scalar values (SGPRs, literals) per instruction, the 64-bit shifts one
# (SIInstrInfo::getConstantBusLimit)
CONSTANT_BUS_LIMIT = 2
CONSTANT_BUS_ONE = ("v_lshlrev_b64", "v_lshrrev_b64", "v_ashrrev_i64")
LITERAL_BYTES = {"i64": 8, "f64": 8, "i16": 2, "f16": 2, "bf16": 2}


def check_instruction(instr: InstrDef, ops: Operands, target: Target) -> None:
  """Raises OperandError naming the first rule the operands break."""
  check_fields(instr, ops)
  check_constant_bus(instr, ops, target)
  if instr.family == "VOPD":
    check_vopd(instr, ops, target)
  check_literals(instr, ops)


def check_cpol(instr: InstrDef, ops: Operands, target: Target) -> None:
  """Atomics (validateCoherencyBits): the returning form must use glc (gfx12: th:TH_ATOMIC_RETURN), implied only when
  no cache policy is written at all; the non-returning form must not. Fills the implied bit."""
  glc = target.sym("CPOL")["GLC"]
  for op in instr.operands:
    if op.type.kind != "cpol":
      continue
    value = ops.vals.get(op.name, 0)
    if op.type.param == "glc1" and op.name not in ops.vals:
      value |= glc
    returning = op.type.param in ("glc", "glc1")
    if returning and not value & glc:
      raise OperandError("instruction must use glc (th:TH_ATOMIC_RETURN)")
    if not returning and value & glc and ("IsAtomicNoRet" in instr.flags or op.type.param == "noglc"):
      raise OperandError("instruction must not use glc (th:TH_ATOMIC_RETURN)")
    ops.vals[op.name] = value


def check_fields(instr: InstrDef, ops: Operands) -> None:
  """Immediates fit their encoding fields; modifiers without a field stay off (gds on gfx12)."""
  for op in instr.operands:
    if op.name not in instr.fields and ops.vals.get(op.name) and op.type.kind in ("bit", "named_int", "omod"):
      raise OperandError(f"{op.name} is not supported by {instr.mnemonic} on this target")
  for name, segs in instr.fields.items():
    op = instr.operand[name]
    if op.type.kind in ("reg", "src", "kimm"):
      continue   # register and source codes are checked as they are read
    value = ops.vals.get(name, 0) & ~(1 if implied_glc(op) else 0)
    top = max(vlo + width for _, width, vlo in segs)
    signed = op.type.kind in ("smem_offset", "flat_offset", "label", "imm") or signed_named(instr, op)
    low = -(1 << (top - 1)) if signed else 0
    if not low <= value < 1 << top or value & ((1 << top) - 1) & ~covered_bits(instr, name):
      raise OperandError(f"{op.name} value {value} does not fit its {top}-bit field")
    if op.type.kind == "flat_offset" and instr.family == "FLAT" and not 0 <= value < 1 << (top - 1):
      # FLAT (not global/scratch) offsets are unsigned before gfx12 (isLegalFLATOffset)
      raise OperandError(f"flat offset {value} must be in 0..{(1 << (top - 1)) - 1}")


def check_constant_bus(instr: InstrDef, ops: Operands, target: Target) -> None:
  if instr.family not in VOP32_FAMILIES + VOP64_FAMILIES + ("VOPD",):
    return
  scalars = set()
  for op in instr.operands:
    code = ops.vals.get(op.name)
    if code is None or op.type.kind not in ("src", "reg", "kimm") or not op.name.startswith(("src", "imm")):
      continue
    if op.type.kind == "kimm":
      scalars.add(("literal", 4))
    elif op.type.kind == "src" and code == LITERAL_CODE:
      # one bus read per literal size (AMDGPUAsmParser::validateConstantBusLimitations)
      scalars.add(("literal", LITERAL_BYTES.get(value_type(op.type.param), 4)))
    elif scalar_code(code, op.type.regclass, target):
      # one read per register: s2 and s[2:3] are different registers, src_scc is one at any width
      wide = code < INLINE_INT_ZERO and (value_type(op.type.param) in ("i64", "f64") or
                                         class_bits(op.type.regclass, target) > 32)
      scalars.add((code, wide))
  if "UsesVCC" in instr.flags or instr.family == "VOPD" and "v_dual_cndmask_b32" in instr.mnemonic + instr.syntax:
    scalars.add("implicit vcc")   # counted apart from an explicit vcc_lo source, as LLVM does
  limit = 1 if instr.base_mnemonic in CONSTANT_BUS_ONE else CONSTANT_BUS_LIMIT
  if len(scalars) > limit:
    raise OperandError(f"reads {len(scalars)} scalar values; the constant bus allows {limit}")


def scalar_code(code: int, regclass: str, target: Target) -> bool:
  """An SGPR, ttmp or special register source (not a VGPR, inline constant or null)."""
  if regclass.startswith(("VReg", "VGPR", "VRegOrLds", "AV_")) or code >= 256:
    return False
  if code == target.special_regs.get("null:32"):
    return False
  return code < INLINE_INT_ZERO or code in target.special_regs.values()


def check_vopd(instr: InstrDef, ops: Operands, target: Target) -> None:
  """VOPD (RDNA3 ISA "VOPD"; validateVOPDRegBankConstraints): the X and Y VGPRs of each of [dst, src0, src1, src2]
  differ under VOPD_VGPR_BANK_MASKS (dst and src2 by parity, src0/src1 by bank = VGPR mod 4). src2 is the addend:
  vsrc1 after the K of fmamk, or the accumulator tied to vdst (fmac, dot2acc)."""
  masks = target.sym("VOPD_VGPR_BANK_MASKS")
  if instr.record == "V_DUAL_MOV_B32_e32_X_MOV_B32_e32_gfx12":
    masks = masks[:1]   # gfx12 checks only the destinations of a mov/mov pair
  halves = instr.syntax.split("::")
  slots = [vopd_slots(half, side, ops) for half, side in zip(halves, "XY")]
  for slot, mask in enumerate(masks):
    a, b = slots[0].get(slot), slots[1].get(slot)
    if a is not None and b is not None and a >= 256 and b >= 256 and a & mask == b & mask:
      what = "one dst register must be even and the other odd" if slot == 0 else \
          f"src{slot - 1} operands must use different VGPR banks"
      raise OperandError(f"VOPD: {what}")


def vopd_slots(syntax: str, side: str, ops: Operands) -> dict:
  """VGPR codes of one VOPD component by slot: 0 dst, 1 src0, 2 src1, 3 src2."""
  slots = {0: ops.vals.get(f"vdst{side}"), 1: ops.vals.get(f"src0{side}")}
  if f"$vsrc1{side}" in syntax:
    after_k = re.search(r"\$imm\w*,\s*\$vsrc1" + side, syntax) is not None
    slots[3 if after_k else 2] = ops.vals.get(f"vsrc1{side}")
  if f"src2{side}" in ops.vals:
    slots[3] = ops.vals[f"src2{side}"]
  return slots


def check_literals(instr: InstrDef, ops: Operands) -> None:
  """fmaak / fmamk: the K constant is the instruction's one literal dword; a literal source must equal it."""
  kimms = {ops.vals[op.name] for op in instr.operands if op.type.kind == "kimm" and op.name in ops.vals}
  if len(kimms) > 1 or kimms and ops.literal is not None and ops.literal not in kimms:
    raise OperandError("only one unique literal constant is allowed (the K operand counts)")
