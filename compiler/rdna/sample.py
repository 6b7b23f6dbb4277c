"""Random legal operands for any table row: the LLVM differential tests' generator (later: emulator fuzzing).

`sample(instr, target, rng)` returns Operands whose text (printer.format_instruction) llvm-mc accepts and whose
encoding (encoding.encode) it reproduces: registers of the operand's class that fit the field, inline constants or one
literal, encodable modifiers, and cache policies / symbolic immediates in forms whose printed text reads back.
"""
from __future__ import annotations

import random

from .checks import check_constant_bus, check_fields, check_literals, check_vopd
from .modifiers import (ARRAYS, SIGNED_NAMED, Operands, array_targets, covered_bits, field_limit, fold_arrays,
                        mod_bit_encoded, unfold_arrays)
from .operands import INLINE_FLOAT_FIRST, INLINE_FLOATS, INLINE_INT_ZERO, LITERAL_CODE, OperandError, value_type
from .reader import literal_allowed
from .tables import InstrDef, Target

# inline float bit patterns an f32 literal must avoid (the assembler would turn them into inline constants)
F32_INLINE_BITS = (0x3F000000, 0xBF000000, 0x3F800000, 0xBF800000, 0x40000000, 0xC0000000, 0x40800000, 0xC0800000,
                   0x3E22F983)
# the legacy split s_waitcnt_*cnt forms take only null as their register ("src0 must be null")
NULL_SDST = ("S_WAITCNT_EXPCNT", "S_WAITCNT_LGKMCNT", "S_WAITCNT_VMCNT", "S_WAITCNT_VSCNT")


def sample(instr: InstrDef, target: Target, rng: random.Random, tries: int = 50) -> Operands:
  """Random operands for `instr` that pass the assembler's checks (constant bus, VOPD banks, field ranges).

  Raises:
    OperandError: no legal sample found in `tries` attempts.
  """
  last = None
  for _ in range(tries):
    ops = Operands(instr)
    try:
      fill(ops, target, rng)
      check_fields(instr, ops)
      check_constant_bus(instr, ops, target)
      if instr.family == "VOPD":
        check_vopd(instr, ops, target)
      check_literals(instr, ops)
      unfold_arrays(ops, target)
      return ops
    except OperandError as e:
      last = e
  raise OperandError(f"{instr.record}: no legal random operands: {last}")


def fill(ops: Operands, target: Target, rng: random.Random) -> None:
  instr = ops.instr
  for op in instr.operands:
    if op.name in instr.fields or op.type.kind == "kimm":
      ops.vals[op.name] = random_value(op, ops, target, rng)
  for a, b in instr.tied:
    if a in ops.vals or b in ops.vals:
      ops.vals[a] = ops.vals[b] = ops.vals.get(a, ops.vals.get(b))
  if instr.record.startswith(NULL_SDST):
    ops.vals["sdst"] = target.special_regs["null:32"]
  random_arrays(ops, target, rng)
  fold_arrays(ops, target)
  glc = target.sym("CPOL")["GLC"]
  for op in instr.operands:
    if op.type.kind == "cpol" and op.type.param in ("glc", "glc1"):
      ops.vals[op.name] |= glc
    if op.type.kind in ("fpmods", "intmods") and op.name in ops.vals:
      # encodable bits only, and no neg/abs on literals (llvm-mc folds them into the literal's bits)
      src = op.name[:-len("_modifiers")]
      if ops.vals.get(src) == LITERAL_CODE:
        ops.vals[op.name] &= ~(target.sym("SRC_MODS")["ABS"] | target.sym("SRC_MODS")["NEG"])
      ops.vals[op.name] &= covered_bits(instr, op.name)
  share_kimm_literal(ops, rng)


def random_arrays(ops: Operands, target: Target, rng: random.Random) -> None:
  instr = ops.instr
  mods = target.sym("SRC_MODS")
  names = {op.name for op in instr.operands}
  for name in ARRAYS:
    if name in names and f"${name}" in instr.syntax:
      bits = 0
      for i, mod_name, mod_bit in array_targets(name, instr):   # only elements the encoding has bits for
        if mod_name in names and mod_bit_encoded(instr, mod_name, mods[mod_bit]):
          bits |= rng.randrange(0, 2) << i
      ops.vals[name] = bits


def share_kimm_literal(ops: Operands, rng: random.Random) -> None:
  """fmaak/fmamk: one K value for all K operands, and a literal source equal to it."""
  kimms = [op for op in ops.instr.operands if op.type.kind == "kimm"]
  if kimms:
    value = random_literal("f16" if kimms[0].type.param == "16" else "f32", rng)
    for op in kimms:
      ops.vals[op.name] = value
    if ops.literal is not None:
      ops.literal = value


def random_reg(op, instr: InstrDef, target: Target, rng: random.Random) -> int:
  """A register of the operand's class whose encoding fits its field; no null as saddr / SMEM soffset (that reads
  as the form without the operand), no read-only src_* value as a destination."""
  groups, names = target.reg_classes[op.type.regclass]
  limit = field_limit(instr, op.name)
  no_null = op.name == "saddr" or op.name == "soffset" and instr.family == "SMEM"
  names = [n for n in names if target.special_regs[n] < limit and not (no_null and n.startswith("null"))
           and not (op.name in instr.defs and target.special_regs[n] >= INLINE_INT_ZERO)]
  groups = [g for g in groups if g[0] == "v" or target.reg_files[g[0]][0] + g[2] < limit]
  if names and (not groups or rng.random() < 0.1):
    return target.special_regs[rng.choice(names)]
  file, bits, first, last, step = rng.choice(groups)
  base = target.reg_files[file][0]
  while True:
    index = rng.randrange(first, last + 1, step)
    code = base + (index >> 1) + ((index & 1) << 7) if bits == 16 else base + index
    if file == "v" or code < limit:
      return code


def random_src(op, instr: InstrDef, ops: Operands, target: Target, rng: random.Random) -> int:
  vtype = value_type(op.type.param)
  if "SPLIT_BARRIER" in op.type.param:   # llvm-mc reads only inline integers here
    return INLINE_INT_ZERO + rng.randrange(0, 81)
  roll = rng.random()
  if roll < 0.15:
    return INLINE_INT_ZERO + rng.randrange(0, 81)
  if roll < 0.25:
    return INLINE_FLOAT_FIRST + rng.randrange(0, len(INLINE_FLOATS) + 1)
  if roll < 0.35 and literal_allowed(op, instr):
    if ops.literal is None:
      ops.literal = random_literal(vtype, rng)
    return LITERAL_CODE
  return random_reg(op, instr, target, rng)


def random_literal(vtype: str, rng: random.Random) -> int:
  while True:
    value = rng.randrange(0x100, 0x10000 if vtype in ("i16", "f16", "bf16") else 1 << 32)
    if vtype != "f32" or value not in F32_INLINE_BITS:
      return value


def random_value(op, ops: Operands, target: Target, rng: random.Random) -> int:
  instr, kind, param = ops.instr, op.type.kind, op.type.param
  width = sum(w for _, w, _ in instr.fields.get(op.name, ()))
  in_syntax = f"${op.name}" in instr.syntax
  if kind == "reg" or kind == "src" and op.name in instr.defs:   # (s_get_barrier_state has an SSrc destination)
    return random_reg(op, instr, target, rng)
  if kind == "src":
    return random_src(op, instr, ops, target, rng)
  if kind in ("fpmods", "intmods"):
    return rng.randrange(0, 4 if kind == "fpmods" else 2) if in_syntax else 0
  if kind in ("mods", "array", "hidden", "kimm"):
    return 0   # arrays, and K constants (share_kimm_literal), are filled afterwards
  if kind == "bit":
    return rng.randrange(0, 2)
  if kind == "smem_offset" or op.type.name in SIGNED_NAMED or instr.family == "VBUFFER" and op.type.name == "Offset":
    if "buffer" in instr.mnemonic and instr.family == "SMEM":   # unsigned (AMDGPUAsmParser::validateSMEMOffset)
      return rng.randrange(0, 1 << (width - 1))
    return rng.randrange(-(1 << (width - 1)), 1 << (width - 1))
  if kind in ("named_int", "index_key"):
    bits = int(param.split(":")[1]) if kind == "named_int" and param.split(":")[1] != "0" else width
    return rng.randrange(0, 1 << min(bits, width)) if rng.random() < 0.7 else 0
  if kind == "flat_offset":
    if instr.family == "FLAT":
      return rng.randrange(0, 1 << (width - 1))
    return rng.randrange(-(1 << (width - 1)), 1 << (width - 1))
  if kind == "omod":
    return rng.randrange(0, 4)
  if kind == "cpol":
    return random_cpol(op, instr, target, rng)
  if kind == "format":
    return rng.randrange(0, len(target.sym("UFMT")))
  return random_special(kind, op, target, rng, width)


def random_cpol(op, instr: InstrDef, target: Target, rng: random.Random) -> int:
  """A cache policy whose printed form llvm-mc reads back (AMDGPUAsmParser::validateTHAndScopeBits, printTH)."""
  c = target.sym("CPOL")
  covered = covered_bits(instr, op.name)
  returning = op.type.param in ("glc", "glc1")
  if target.generation < 12:
    return rng.randrange(0, 8) & covered | (c["GLC"] if returning else 0)
  scope = rng.randrange(0, 4) << 3
  if "IsAtomicRet" in instr.flags or "IsAtomicNoRet" in instr.flags:
    if returning:   # cascade names drop RETURN, and NT|RETURN equals TH_BYPASS, invalid at SCOPE_SYS
      th = c["TH_ATOMIC_RETURN"] | (c["TH_ATOMIC_NT"] if scope != c["SCOPE_SYS"] and rng.random() < 0.5 else 0)
    else:
      cascades = [c["TH_ATOMIC_CASCADE"], c["TH_ATOMIC_CASCADE"] | c["TH_ATOMIC_NT"]]
      th = rng.choice([0, c["TH_ATOMIC_NT"]] + (cascades if scope >= c["SCOPE_DEV"] else []))
  elif instr.family == "SMEM":
    th = rng.randrange(0, 4)   # NT_RT / RT_NT / NT_HT are invalid for SMEM
  else:
    th = rng.randrange(0, 7 if "mayStore" not in instr.flags else 8)   # TH_RESERVED (7) prints as 0x7 on loads
  return (th | scope) & covered | (c["GLC"] if returning else 0)


def random_special(kind: str, op, target: Target, rng: random.Random, width: int) -> int:
  if kind == "waitcnt":
    w = target.sym("WAITCNT")
    fields = ((w["VmcntBitShiftLo"], w["VmcntBitWidthLo"]), (w["ExpcntBitShift"], w["ExpcntBitWidth"]),
              (w["LgkmcntBitShift"], w["LgkmcntBitWidth"]))
    return sum(rng.randrange(0, 1 << bits) << shift for shift, bits in fields)
  if kind == "depctr":
    return sum(rng.randrange(0, mx + 1) << offset for _, mx, _, offset, _ in target.sym("DEPCTR"))
  if kind == "delay_alu":
    ids, skips = len(target.sym("DELAY_ALU_INSTID")), len(target.sym("DELAY_ALU_INSTSKIP"))
    return rng.randrange(0, ids) | rng.randrange(0, skips) << 4 | rng.randrange(0, ids) << 7
  if kind == "hwreg":
    offset = rng.randrange(0, 32)
    return rng.choice(sorted(target.sym("HWREG"))) | offset << 6 | rng.randrange(0, 32 - offset) << 11
  if kind == "sendmsg":
    return rng.choice([m for m, name in target.sym("SENDMSG").items() if name != "MSG_SYSMSG"])
  if kind == "swizzle":   # canonical forms only: QUAD_PERM, or a BITMASK_PERM lane-id mask
    if rng.random() < 0.5:
      return 0x8000 | rng.randrange(0, 256)
    chars = [rng.choice("01pi") for _ in range(5)]
    return sum(((ch in "pi") | (ch == "1") << 5 | (ch == "i") << 10) << i for i, ch in enumerate(chars))
  if kind == "endpgm":
    return rng.randrange(0, 1 << 16) if rng.random() < 0.3 else 0
  if kind in ("imm", "label"):
    if op.type.name == "VersionImm":
      return rng.choice(sorted(target.sym("UC_VERSIONS")))
    return rng.randrange(0, 1 << min(width, 16))
  raise OperandError(f"no random value for operand kind {kind!r}")
