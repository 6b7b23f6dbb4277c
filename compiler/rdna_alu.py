"""Instruction selection for RDNA ALU nodes: constants, integer / float / bool ops per dtype and register form,
compares, WHERE, accumulators and the word forms block reductions fold (casts and bitcasts: compiler/rdna_cast.py;
float math: compiler/rdna_math.py). Register forms are in compiler/rdna_isel.py's docstring.

Functions take the selector `r` (`reg(node)`, `pair(node)`, `op(mnemonic, *srcs, file=, size=)`, `emit`, `new`,
`uniform(node)`, `narrow(node)`, `wide(node)`) and return the operand holding the result: a VReg, or a Python
constant. Semantics follow the C renderer: integers wrap; x / 0 -> 0, x % 0 -> 0, x / -1 -> -x, x % -1 -> 0; shifts
by >= the bit width give 0; MAX is `a > b || a != a ? a : b` (NaN wins); != is true on NaN.

Contraction. A float32 / float64 multiply whose only reader is an add or subtract (or a sum ACCUM) fuses with it into
one v_fma / v_fmac, rounding once instead of twice. That is what the other backends already do with the same IR: the
PTX renderer emits float32/64 mul and add without .rn, which lets ptxas contract them, and the C renderer compiles
with gcc -O3 -march=native, whose default -ffp-contract=fast contracts them too (OpenCL C contracts by default). The
IR has no explicit multiply-add, so this is the same latitude, not a new one; the frontend tests' float32 tolerances
(tests/conftest.py TOLERANCES) already hold for contracted results. float16 and bfloat16 products are not contracted
(the PTX renderer rounds them with .rn; bfloat16 rounds after every op as the C renderer computes it).
"""
from __future__ import annotations

import math

import numpy as np

from compiler import rdna_math
from compiler.dtypes import DType, dtypes
from compiler.ir import Node, Ops
from compiler.rdna_cast import bits32, bitcast, cast, extend64, normalize, round_bf16  # noqa: F401 (re-exported)
from compiler.rdna.asm import Neg
from compiler.rdna_code import Half, VReg, f64_bits, is_inline, regof, s32, unwrap
from compiler.rdna_regalloc import units

HALVES = (dtypes.float16, dtypes.bfloat16)
FLOAT_MATH = frozenset({Ops.RECIP, Ops.SQRT, Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.TRUNC})
CMP_INT = {Ops.CMPLT: "lt", Ops.CMPEQ: "eq", Ops.CMPNE: "ne"}
CMP_FLOAT = {Ops.CMPLT: "lt", Ops.CMPEQ: "eq", Ops.CMPNE: "neq"}  # neq: true on NaN, as C's !=
SCMP = {Ops.CMPLT: "lt", Ops.CMPEQ: "eq", Ops.CMPNE: "lg"}
FTY = {"float16": "f16", "float32": "f32", "bfloat16": "f32", "float64": "f64"}
SIGN = {"float16": 0x8000, "float32": s32(0x80000000), "bfloat16": s32(0x80000000)}


def acc_dtype(d: DType) -> DType:
  return dtypes.float32 if d in HALVES else d


def lo(x):
  """The low dword of a 64-bit operand (register pair or constant)."""
  if isinstance(x, VReg):
    return Half(x, 0)
  return s32(f64_bits(x) if isinstance(x, float) else x)


def hi(x):
  if isinstance(x, VReg):
    return Half(x, 1)
  return s32((f64_bits(x) if isinstance(x, float) else x) >> 32)


def const(r, value, d: DType, narrow: bool = False):
  """A CONST: a mask register for bools, else a Python value (f16 / bf16 already rounded)."""
  if d.is_bool:
    return r.op("s_mov_b32", -1 if value else 0, file="s")
  if d.is_float:
    if d == dtypes.float16:
      return float(np.float16(value))
    if d == dtypes.bfloat16:
      return float(np.uint32(round_bf16_bits(value)).view(np.float32))
    return float(np.float32(value)) if d == dtypes.float32 else float(value)
  if d.itemsize == 8 and not narrow:
    return int(value) & ((1 << 64) - 1)
  return s32(int(value))


def round_bf16_bits(value: float) -> int:
  """The f32 bits of value rounded to bfloat16 (nearest even, NaN quiet), low 16 bits zero."""
  u = int(np.array(value, np.float32).view(np.uint32))
  if (u & 0x7FFFFFFF) > 0x7F800000:
    return (u | 0x400000) & 0xFFFF0000
  return (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000


def fop(x, d: DType):
  """A float operand for an instruction of d's float type: registers as they are, finite constants as floats, other
  constants as their bits (a literal)."""
  if not isinstance(x, float):
    return x
  if math.isfinite(x):
    return x
  return bits32(x, d)


def f64op(r, x):
  """A float64 operand: an inline constant, else the constant in an SGPR pair."""
  if not isinstance(x, (int, float)):
    return x
  x = float(x)
  if is_inline(x):
    return x
  return scalar_pair(r, f64_bits(x))


def scalar_pair(r, bits: int) -> VReg:
  key = ("pair", bits)
  got = r.lookup(key)
  if got is None:
    got = r.remember(key, r.new("s", 2))
    r.emit("s_mov_b32", Half(got, 0), s32(bits))
    r.emit("s_mov_b32", Half(got, 1), s32(bits >> 32))
  return got


def is_scalar(x) -> bool:
  return not isinstance(x, (VReg, Half)) or x.file == "s"


# ---- dispatch -----------------------------------------------------------------------------------------------------

def alu(r, n: Node):
  op, d = n.op, n.dtype
  if op in CMP_INT:
    return compare(r, n)
  if d.is_bool:
    return bool_alu(r, n, [r.reg(s) for s in n.src])
  if op is Ops.WHERE:
    return where(r, n)
  if d.is_float:
    fused = contract(r, n)
    if fused is not None:
      return fused
    return float_alu(r, op, d, [r.reg(s) for s in n.src])
  if op in FLOAT_MATH:  # C computes these in float and converts back
    x = cast(r, r.reg(n.src[0]), d, dtypes.float32, r.narrow(n.src[0]))
    return cast(r, float_alu(r, op, dtypes.float32, [x]), dtypes.float32, d)
  if r.wide(n):
    return int64_alu(r, n)
  return int32_alu(r, n)


# ---- 32-bit integers ----------------------------------------------------------------------------------------------

SOP = {Ops.ADD: "s_add_i32", Ops.SUB: "s_sub_i32", Ops.MUL: "s_mul_i32", Ops.AND: "s_and_b32", Ops.OR: "s_or_b32",
       Ops.XOR: "s_xor_b32"}
VOP = {Ops.ADD: "v_add_nc_u32", Ops.SUB: "v_sub_nc_u32", Ops.MUL: "v_mul_lo_u32", Ops.AND: "v_and_b32",
       Ops.OR: "v_or_b32", Ops.XOR: "v_xor_b32"}


def int32_alu(r, n: Node):
  op, d = n.op, n.dtype
  srcs = [r.reg(s) for s in n.src]
  scalar = r.uniform(n) and all(is_scalar(x) for x in srcs)
  signed = not d.is_unsigned
  if op in (Ops.SHL, Ops.SHR):
    return shift32(r, n, srcs[0], scalar)
  if op in (Ops.IDIV, Ops.MOD):
    divisor = n.src[1].arg if n.src[1].op is Ops.CONST else None
    if r.narrow(n) and divisor is not None and divisor > 0:  # an index over a positive constant
      if r.bounds(n.src[0])[0] >= 0:
        return rdna_math.divmod_const(r, op, srcs[0], divisor, scalar)
      return rdna_math.divmod_const_signed(r, op, srcs[0], divisor)
    return normalize(r, rdna_math.divmod32(r, op, srcs[0], srcs[1], signed, divisor), d, False)
  if op is Ops.NEG:
    srcs, op = [0, srcs[0]], Ops.SUB
  if op is Ops.NOT:
    out = r.op("s_not_b32", srcs[0], file="s") if scalar else r.op("v_not_b32", srcs[0])
    return normalize(r, out, d, scalar)
  if op is Ops.MAX:
    kind = "i32" if signed else "u32"
    return r.op(f"s_max_{kind}", *srcs, file="s") if scalar else r.op(f"v_max_{kind}", *srcs)
  if op in SOP:
    out = r.op(SOP[op], *srcs, file="s") if scalar else r.op(VOP[op], *srcs)
    return out if op in (Ops.AND, Ops.OR, Ops.XOR) else normalize(r, out, d, scalar)
  raise ValueError(f"RDNA renderer: no integer rendering for {op.name} on {d.name}")


def shift32(r, n: Node, a, scalar: bool):
  """C renderer semantics: a shift by >= the bit width gives 0 (the hardware takes the amount mod 32)."""
  d, amount_node = n.dtype, n.src[1]
  amount = shift_amount(r, amount_node)
  name = {True: "lshl", False: "lshr" if d.is_unsigned else "ashr"}[n.op is Ops.SHL]
  if isinstance(amount, int):  # a constant amount: no guard, or no shift at all
    if not 0 <= amount < d.bits:
      return 0
    if isinstance(a, int):
      a = r.op("s_mov_b32", a, file="s")
    if a.file == "s" and scalar:
      return normalize(r, r.op(f"s_{name}_{'i32' if name == 'ashr' else 'b32'}", a, amount, file="s"), d, True)
    return normalize(r, r.op(f"v_{name}rev_{'i32' if name == 'ashr' else 'b32'}", amount, a), d, False)
  if not is_scalar(amount):
    scalar = False
  left = n.op is Ops.SHL
  if scalar:
    name = "s_lshl_b32" if left else ("s_lshr_b32" if d.is_unsigned else "s_ashr_i32")
    shifted = normalize(r, r.op(name, a, amount, file="s"), d, True)
    r.emit("s_cmp_ge_u32", amount, d.bits, ndefs=0)
    return r.op("s_cselect_b32", 0, shifted, file="s")
  name = "v_lshlrev_b32" if left else ("v_lshrrev_b32" if d.is_unsigned else "v_ashrrev_i32")
  shifted = normalize(r, r.op(name, amount, a), d, False)
  big = r.op("v_cmp_ge_u32", amount, d.bits, file="s")
  return r.op("v_cndmask_b32", shifted, 0, big)


def shift_amount(r, n: Node):
  """A shift amount as a 32-bit unsigned operand; a 64-bit amount >= 2^32 saturates to 0xFFFFFFFF (any amount that
  large shifts everything out)."""
  x = r.reg(n)
  if n.dtype.is_bool:
    return r.op("v_cndmask_b32", 0, 1, x)
  if not r.wide(n):
    return x if isinstance(x, (VReg, Half)) else x & 0xFFFFFFFF if x >= 0 else s32(0xFFFFFFFF)
  if not isinstance(x, VReg):
    return min(x, 0xFFFFFFFF) if x < 1 << 63 else s32(0xFFFFFFFF)
  big = r.op("v_cmp_ne_u32", 0, hi(x), file="s")
  return r.op("v_cndmask_b32", lo(x), -1, big)


# ---- 64-bit integers ----------------------------------------------------------------------------------------------

def add64(r, a, b, sub: bool = False) -> VReg:
  out, carry = r.new("v", 2), r.new("s")
  first, second = ("v_sub_co_u32", "v_sub_co_ci_u32") if sub else ("v_add_co_u32", "v_add_co_ci_u32")
  r.emit(first, Half(out, 0), carry, lo(a), lo(b), ndefs=2)
  r.emit(second, Half(out, 1), carry, hi(a), hi(b), carry, ndefs=2)
  return out


def mul64(r, a, b) -> VReg:
  """Low 64 bits of a * b: lo*lo in full, plus the cross products into the high word."""
  out = r.new("v", 2)
  r.emit("v_mad_u64_u32", out, "null", lo(a), lo(b), 0, ndefs=2)
  cross1 = r.op("v_mul_lo_u32", lo(a), hi(b))
  cross2 = r.op("v_mul_lo_u32", hi(a), lo(b))
  r.emit("v_add3_u32", Half(out, 1), Half(out, 1), cross1, cross2)
  return out


def pair_of(r, low, high) -> VReg:
  out = r.new("v", 2)
  r.emit("v_mov_b32", Half(out, 0), low)
  r.emit("v_mov_b32", Half(out, 1), high)
  return out


def select64(r, mask, if_false, if_true) -> VReg:
  out = r.new("v", 2)
  r.emit("v_cndmask_b32", Half(out, 0), lo(if_false), lo(if_true), mask)
  r.emit("v_cndmask_b32", Half(out, 1), hi(if_false), hi(if_true), mask)
  return out


def int64_alu(r, n: Node):
  op, d = n.op, n.dtype
  kind = "u64" if d.is_unsigned else "i64"
  if op in (Ops.SHL, Ops.SHR):
    a, amount = r.pair(n.src[0]), shift_amount(r, n.src[1])
    name = "v_lshlrev_b64" if op is Ops.SHL else ("v_lshrrev_b64" if d.is_unsigned else "v_ashrrev_i64")
    shifted = r.op(name, amount, vpair(r, a), size=2)
    big = r.op("v_cmp_lt_u32", 63, amount, file="s")
    return select64(r, big, shifted, 0)
  srcs = [r.pair(s) for s in n.src]
  if op in (Ops.IDIV, Ops.MOD):
    divisor = n.src[1].arg if n.src[1].op is Ops.CONST else None
    return rdna_math.divmod64(r, op, srcs[0], srcs[1], not d.is_unsigned, divisor)
  if op is Ops.ADD:
    return add64(r, *srcs)
  if op is Ops.SUB:
    return add64(r, srcs[0], srcs[1], sub=True)
  if op is Ops.NEG:
    return add64(r, 0, srcs[0], sub=True)
  if op is Ops.MUL:
    return mul64(r, *srcs)
  if op in (Ops.AND, Ops.OR, Ops.XOR, Ops.NOT):
    name = {Ops.AND: "v_and_b32", Ops.OR: "v_or_b32", Ops.XOR: "v_xor_b32", Ops.NOT: "v_not_b32"}[op]
    parts = [r.op(name, *[part(x) for x in srcs]) for part in (lo, hi)]
    return pair_of(r, *parts)
  if op is Ops.MAX:
    gt = r.op(f"v_cmp_gt_{kind}", vpair(r, srcs[0]), srcs[1], file="s")
    return select64(r, gt, srcs[1], srcs[0])
  raise ValueError(f"RDNA renderer: no integer rendering for {op.name} on {d.name}")


def vpair(r, x):
  """A 64-bit integer operand that VOP3 64-bit forms accept: registers as they are, constants inline or in an SGPR
  pair."""
  if isinstance(x, (VReg, Half)):
    return x
  bits = x & ((1 << 64) - 1)
  signed = bits - (1 << 64) if bits >= 1 << 63 else bits
  return signed if -16 <= signed <= 64 else scalar_pair(r, bits)


# ---- compares, bools, WHERE ---------------------------------------------------------------------------------------

def compare(r, n: Node):
  a_node, b_node = n.src
  d = a_node.dtype
  if d.is_bool:
    return bool_alu(r, n, [r.reg(s) for s in n.src])
  if d.is_float:
    if d == dtypes.float64:
      a, b = (f64op(r, r.reg(s)) for s in n.src)
    else:
      a, b = (fop(r.reg(s), d) for s in n.src)
    return r.op(f"v_cmp_{CMP_FLOAT[n.op]}_{FTY[d.name]}", a, b, file="s")
  signed = not d.is_unsigned
  if r.wide(a_node) or r.wide(b_node):
    a, b = vpair(r, r.pair(a_node)), vpair(r, r.pair(b_node))
    kind = ("i64" if signed else "u64") if n.op is Ops.CMPLT else "u64"
    return r.op(f"v_cmp_{CMP_INT[n.op]}_{kind}", a, b, file="s")
  a, b = r.reg(a_node), r.reg(b_node)
  kind = ("i32" if signed else "u32") if n.op is Ops.CMPLT else "u32"
  if r.uniform(n) and is_scalar(a) and is_scalar(b):
    r.emit(f"s_cmp_{SCMP[n.op]}_{kind}", a, b, ndefs=0)
    return r.op("s_cselect_b32", -1, 0, file="s")
  return r.op(f"v_cmp_{CMP_INT[n.op]}_{kind}", a, b, file="s")


def bool_alu(r, n: Node, s: list):
  op = n.op
  if op in (Ops.ADD, Ops.OR, Ops.MAX):
    return r.op("s_or_b32", s[0], s[1], file="s")
  if op in (Ops.MUL, Ops.AND):
    return r.op("s_and_b32", s[0], s[1], file="s")
  if op in (Ops.XOR, Ops.SUB, Ops.CMPNE):
    return r.op("s_xor_b32", s[0], s[1], file="s")
  if op in (Ops.NOT, Ops.NEG):
    return r.op("s_not_b32", s[0], file="s")
  if op is Ops.CMPEQ:
    return r.op("s_xnor_b32", s[0], s[1], file="s")
  if op is Ops.CMPLT:  # false < true only
    return r.op("s_and_not1_b32", s[1], s[0], file="s")
  if op is Ops.WHERE:
    both = r.op("s_and_b32", s[0], s[1], file="s")
    other = r.op("s_and_not1_b32", s[2], s[0], file="s")
    return r.op("s_or_b32", both, other, file="s")
  # anything else (bool // bool, shifts): as 0/1 words, then != 0
  words = [r.op("v_cndmask_b32", 0, 1, x) for x in s]
  if op in (Ops.IDIV, Ops.MOD):
    value = rdna_math.divmod32(r, op, words[0], words[1], False, None)
  elif op in (Ops.SHL, Ops.SHR):
    shifted = r.op("v_lshlrev_b32" if op is Ops.SHL else "v_lshrrev_b32", words[1], words[0])
    value = r.op("v_and_b32", 0xFF, shifted)
  else:
    raise ValueError(f"RDNA renderer: no bool rendering for {op.name}")
  return r.op("v_cmp_ne_u32", 0, value, file="s")


def where(r, n: Node):
  d = n.dtype
  mask, a, b = (r.reg(s) for s in n.src)
  if r.wide(n):
    return select64(r, mask, r.pair(n.src[2]), r.pair(n.src[1]))
  if d.is_int and r.uniform(n) and is_scalar(a) and is_scalar(b):
    r.emit("s_cmp_lg_u32", mask, 0, ndefs=0)
    return r.op("s_cselect_b32", a, b, file="s")
  return r.op("v_cndmask_b32", bits32(b, d), bits32(a, d), mask)


# ---- floats -------------------------------------------------------------------------------------------------------

def float_alu(r, op: Ops, d: DType, xs: list):
  """One float ALU op on operands of dtype d."""
  if d == dtypes.bfloat16:
    if op in (Ops.NEG, Ops.MAX, Ops.TRUNC):  # exact on bfloat16 values
      return float_alu(r, op, dtypes.float32, xs)
    return round_bf16(r, float_alu(r, op, dtypes.float32, xs))
  if d == dtypes.float16 and op not in (Ops.ADD, Ops.SUB, Ops.MUL, Ops.NEG, Ops.MAX, Ops.TRUNC):
    wide = [cast(r, x, d, dtypes.float32) for x in xs]
    return cast(r, float_alu(r, op, dtypes.float32, wide), dtypes.float32, d)
  if d == dtypes.float64:
    return float64_alu(r, op, [f64op(r, x) for x in xs])
  ty = FTY[d.name]
  xs = [fop(x, d) for x in xs]
  if op in (Ops.ADD, Ops.SUB, Ops.MUL):
    return r.op(f"v_{op.name.lower()}_{ty}", xs[0], xs[1])
  if op is Ops.NEG:
    return r.op("v_xor_b32", SIGN[d.name], bits32(xs[0], d))
  if op is Ops.MAX:
    return max_select(r, ty, xs[0], xs[1], d)
  if op is Ops.TRUNC:
    return r.op(f"v_trunc_{ty}", xs[0])
  return rdna_math.float_math(r, op, xs)


def max_select(r, ty: str, a, b, d: DType):
  """C's `a > b || a != a ? a : b`."""
  gt = r.op(f"v_cmp_gt_{ty}", a, b, file="s")
  nan = r.op(f"v_cmp_u_{ty}", a, a, file="s")
  pick = r.op("s_or_b32", gt, nan, file="s")
  if ty == "f64":
    return select64(r, pick, b, a)
  return r.op("v_cndmask_b32", bits32(b, d), bits32(a, d), pick)


def float64_alu(r, op: Ops, xs: list):
  if op in (Ops.ADD, Ops.SUB):
    b = Neg(xs[1]) if op is Ops.SUB else xs[1]
    return r.op("v_add_f64", xs[0], b, size=2)
  if op is Ops.MUL:
    return r.op("v_mul_f64", xs[0], xs[1], size=2)
  if op is Ops.NEG:
    x = xs[0]
    return pair_of(r, lo(x), r.op("v_xor_b32", s32(0x80000000), hi(x)))
  if op is Ops.MAX:
    return max_select(r, "f64", xs[0], xs[1], dtypes.float64)
  if op is Ops.TRUNC:
    return r.op("v_trunc_f64", xs[0], size=2)
  return rdna_math.float64_math(r, op, xs[0], xs[1] if len(xs) > 1 else None)


# ---- contraction (the module docstring says when) ------------------------------------------------------------------

FUSED = {"float32": "v_fma_f32", "float64": "v_fma_f64"}


def fusible(r, n: Node) -> bool:
  """n is a float32/64 MUL read only once and not computed yet (a hoisted product stays a product)."""
  return n.op is Ops.MUL and n.dtype.name in FUSED and r.users.get(n, 0) == 1 and r.lookup(n) is None


def contractible(r, n: Node) -> bool:
  return n.op in (Ops.ADD, Ops.SUB) and n.dtype.name in FUSED and any(fusible(r, s) for s in n.src)


def negate(x):
  """-x as an operand: a negated constant, or the register under a neg modifier."""
  if isinstance(x, (int, float)):
    return -x
  return unwrap(x) if isinstance(x, Neg) else Neg(x)


def contract(r, n: Node):
  """a*b + c, c + a*b, a*b - c and c - a*b as one fused multiply-add; None when n is not one."""
  if n.op not in (Ops.ADD, Ops.SUB) or n.dtype.name not in FUSED:
    return None
  for position in (1, 0):
    product, other = n.src[position], n.src[1 - position]
    if fusible(r, product):
      break
  else:
    return None
  a, b, c = r.reg(product.src[0]), r.reg(product.src[1]), r.reg(other)
  if n.op is Ops.SUB:
    a, c = (negate(a), c) if position == 1 else (a, negate(c))
  return fma(r, n.dtype, a, b, c)


def fma(r, d: DType, a, b, c, out: VReg | None = None) -> VReg:
  if d == dtypes.float64:
    srcs = [f64op(r, x) if isinstance(x, (int, float)) else x for x in (a, b, c)]
    out = out or r.new("v", 2)
  else:
    srcs = [fop(x, d) for x in (a, b, c)]
    out = out or r.new("v")
  r.emit(FUSED[d.name], out, *srcs)
  return out


def accumulate_fused(r, op: Ops, acc: VReg, value: Node) -> bool:
  """acc += a * b as one instruction on the accumulator (v_fmac_f32 / v_fma_f64 in place) when value is a fusible
  product of the accumulator's type; False (nothing emitted) otherwise."""
  if op is not Ops.ADD or not fusible(r, value):
    return False
  a, b = r.reg(value.src[0]), r.reg(value.src[1])
  if value.dtype == dtypes.float64:
    fma(r, value.dtype, a, b, acc, out=acc)
    return True
  a, b = fop(a, value.dtype), fop(b, value.dtype)
  if is_scalar(b) and not is_scalar(a):
    a, b = b, a
  if is_scalar(b):  # v_fmac's second source must be a VGPR
    fma(r, value.dtype, a, b, acc, out=acc)
  else:
    r.emit("v_fmac_f32", acc, a, b, tied=True)
  return True


# ---- accumulators and block reductions ----------------------------------------------------------------------------

def init_acc(r, value, d: DType) -> VReg:
  """A fresh accumulator register holding `value` in acc_dtype(d)'s form."""
  ad = acc_dtype(d)
  if d.is_bool:
    return r.op("s_mov_b32", -1 if value else 0, file="s")
  c = const(r, value, ad)
  if ad.itemsize == 8:
    return pair_of(r, lo(c), hi(c))
  return r.op("v_mov_b32", bits32(c, ad))


def to_acc(r, x, d: DType):
  return cast(r, x, d, dtypes.float32) if d in HALVES else x


def combine(r, op: Ops, d: DType, acc: VReg, v, in_place: bool = False) -> VReg:
  """acc op v for an accumulator of data dtype d; with in_place the result is written into acc."""
  ad = acc_dtype(d)
  if d.is_bool:
    return combine_mask(r, op, acc, v)
  start, first_reg = len(r.code.insts), r.code.nregs
  out = combine_values(r, op, ad, acc, v)
  if in_place:
    if not retarget(r.code.insts[start:], out, acc, first_reg):
      move(r, acc, out)
    return acc
  return out


def retarget(insts: list, out, acc: VReg, first_reg: int) -> bool:
  """Rewrites the instructions that compute `out` (a register made after VReg id first_reg) to write `acc` instead,
  which saves the move into the accumulator. Only when every reference to out in them is a plain write and no
  instruction reads a dword of acc after it was rewritten to be written; False (nothing changed) otherwise."""
  if not isinstance(out, VReg) or out.id <= first_reg or out.size != acc.size or out.file != acc.file:
    return False
  written, rewrites = set(), []
  for inst in insts:
    read = {u for a in inst.uses() for u in units(a)}
    if any(u[0] == out.id for u in read) or {(acc.id, k) for k in written} & read:
      return False
    hits = [i for i, a in enumerate(inst.args[:inst.ndefs]) if regof(a) is out]
    if hits:
      rewrites.append((inst, hits))
      written.update(k for i in hits for _, k in units(inst.args[i]))
  if not rewrites:
    return False
  for inst, hits in rewrites:
    args = list(inst.args)
    for i in hits:
      args[i] = Half(acc, args[i].index) if isinstance(args[i], Half) else acc
    inst.args = tuple(args)
  return True


def combine_values(r, op: Ops, ad: DType, a, b):
  if ad.is_float:
    return float_alu(r, op, ad, [a, b])
  if ad.itemsize == 8:
    if op is Ops.ADD:
      return add64(r, a, b)
    if op is Ops.MUL:
      return mul64(r, a, b)
    gt = r.op(f"v_cmp_gt_{'u64' if ad.is_unsigned else 'i64'}", vpair(r, b), vpair(r, a), file="s")
    return select64(r, gt, a, b)
  if op is Ops.MAX:
    return r.op(f"v_max_{'u32' if ad.is_unsigned else 'i32'}", a, b)
  out = r.op("v_add_nc_u32" if op is Ops.ADD else "v_mul_lo_u32", a, b)
  return normalize(r, out, ad, False)


def move(r, dst: VReg, src) -> None:
  """dst = src in the active lanes (dst keeps its register: an accumulator updated in place)."""
  if dst.size == 2:
    r.emit("v_mov_b32", Half(dst, 0), lo(src))
    r.emit("v_mov_b32", Half(dst, 1), hi(src))
  else:
    r.emit("v_mov_b32", dst, src)


def combine_mask(r, op: Ops, acc: VReg, v) -> VReg:
  """A bool accumulator (a lane mask) updated in the active lanes only: OR (ADD, MAX) sets the active lanes where v
  is true, AND (MUL) clears the active lanes where v is false; other lanes keep their bits."""
  if op is Ops.MUL:
    clear = r.op("s_and_not1_b32", "exec_lo", v, file="s")
    r.emit("s_and_not1_b32", acc, acc, clear, tied=True)
  else:
    sets = r.op("s_and_b32", v, "exec_lo", file="s")
    r.emit("s_or_b32", acc, acc, sets, tied=True)
  return acc


def reduce_word(r, acc: VReg, d: DType) -> VReg:
  """The accumulator as VGPR words for the cross-lane fold (bool masks as 0/1)."""
  if d.is_bool:
    return r.op("v_cndmask_b32", 0, 1, acc)
  return acc


def combine_words(r, op: Ops, d: DType, a: VReg, b: VReg) -> VReg:
  if d.is_bool:
    return r.op("v_and_b32" if op is Ops.MUL else "v_or_b32", a, b)
  return combine_values(r, op, acc_dtype(d), a, b)


def from_reduce_word(r, word: VReg, d: DType) -> VReg:
  if d.is_bool:
    return r.op("v_cmp_ne_u32", 0, word, file="s")
  return word


# ---- memory helpers -----------------------------------------------------------------------------------------------

def scaled_offset(r, x, size: int) -> VReg:
  """x * size as a 32-bit VGPR byte offset."""
  if not isinstance(x, (VReg, Half)):
    return r.op("v_mov_b32", s32(x * size))
  shift = size.bit_length() - 1
  if x.file == "s":
    scaled = r.op("s_lshl_b32", x, shift, file="s") if shift else x
    return r.op("v_mov_b32", scaled)
  return r.op("v_lshlrev_b32", shift, x) if shift else x


def address64(r, idx: Node, base: VReg, size: int) -> VReg:
  """base + idx * size as a 64-bit VGPR address (idx signed)."""
  if r.narrow(idx):
    out = r.new("v", 2)
    x = r.reg(idx)
    r.emit("v_mad_i64_i32", out, "null", x, size, base, ndefs=2)
    return out
  wide = vpair(r, r.pair(idx))
  scaled = r.op("v_lshlrev_b64", size.bit_length() - 1, wide, size=2)
  return add64(r, scaled, base)


def store_bits(r, value: Node) -> VReg:
  """The VGPR (pair) holding value as stored: bools as 0/1 bytes, bfloat16 as its 16 bits, narrow index values
  sign-extended to 64 bits."""
  d = value.dtype
  if d.itemsize == 8:
    x = r.pair(value)
    if isinstance(x, VReg) and x.file == "v":
      return x
    return pair_of(r, lo(x), hi(x))
  x = r.reg(value)
  if d.is_bool:
    return r.op("v_cndmask_b32", 0, 1, x)
  if d == dtypes.bfloat16:
    return r.op("v_lshrrev_b32", 16, bits32(x, d))
  if isinstance(x, VReg) and x.file == "v":
    return x
  return r.op("v_mov_b32", bits32(x, d))
