"""Float and integer arithmetic that RDNA has no single instruction for, as instruction sequences of the RDNA
instruction selection (the selector `r` as in compiler/rdna_alu.py).

The hardware's float64 reciprocal / square root (v_rcp_f64, v_rsq_f64) are estimates and its float32 ones about 1
ulp; division and square root are therefore refined to round-to-nearest results (the C renderer's float32 division
and sqrtf are IEEE-exact):
  - division a / b in float64: mantissas in [0.5, 1) (v_frexp), reciprocal estimate, two Newton steps and one
    remainder correction (fma: the remainder is exact), exponent difference applied with v_ldexp; zeros, infinities
    and NaNs take a * rcp(b), which gives IEEE's special results. float32 (and RECIP) divide in float64 and round
    once (p = 53 >= 2 * 24 + 2, so rounding the double quotient to float is the correctly rounded float quotient).
  - square root in float64: exponent made even, v_rsq_f64 estimate, two Goldschmidt steps and a remainder
    correction; zeros, infinities, negatives and NaNs take v_sqrt_f64. float32 goes through float64.
  - exp2 float32: v_exp_f32 (1 ulp; AMDGPUUsage "1ULP accuracy for float") on x + 64 where x < -126, then v_ldexp by
    -64, so results down to 2^-149 (subnormal) are kept instead of flushed.
  - log2 float32: v_log_f32 (1 ulp) on x * 2^64 where x is below the normal range, minus 64.
  - exp2, log2, sin in float64 (and sin of every float type): the polynomials of compiler/ptx_math.py (exp2: 2^n *
    2^f with a degree-13 Taylor polynomial, about 1 ulp; log2: 2 atanh((m-1)/(m+1)), within 3 ulp; sin: Cody-Waite
    reduction by a three-part pi/2 for |x| < 2^19 and Payne-Hanek from a 1216-bit table of 2/pi above (the table is
    copied into LDS by the waves that need it), Taylor polynomials on [-pi/4, pi/4], about 1 ulp).
  - integer division: 32-bit through float64 (quotients of 32-bit integers are never within an ulp of an integer
    they do not equal, so truncating the refined double quotient is exact), with the C renderer's guards; 64-bit by
    a shift-and-subtract loop; a non-negative index over a positive constant by a multiply-high (magic number).
"""
from __future__ import annotations

import math

from compiler import ptx_math
from compiler.ir import Ops
from compiler.rdna.asm import Neg
from compiler.rdna_code import Half, VReg, s32

SPECIAL_DIV = 0x267   # v_cmp_class bits: signaling/quiet NaN, -inf, -0, +0, +inf
SPECIAL_SQRT = 0x27F  # v_cmp_class bits: NaN, -inf, -normal, -denormal, -0, +0, +inf
FINITE_BIG = 0x108    # v_cmp_class bits: -normal, +normal
TINY_F32 = 1.1754943508222875e-38  # smallest normal float32


def k64(r, x: float):
  """A float64 constant operand (inline, or an SGPR pair)."""
  from compiler.rdna_alu import f64op
  return f64op(r, float(x)) if isinstance(x, (int, float)) else x


def fma(r, a, b, c) -> VReg:
  return r.op("v_fma_f64", a, b, c, size=2)


def horner(r, x, coeffs: list) -> VReg:
  """sum coeffs[k] * x^k, highest power first, one fma per step."""
  acc = fma(r, x, k64(r, coeffs[-1]), k64(r, coeffs[-2]))
  for c in reversed(coeffs[:-2]):
    acc = fma(r, acc, x, k64(r, c))
  return acc


def select(r, mask, if_false, if_true) -> VReg:
  from compiler.rdna_alu import select64
  return select64(r, mask, if_false, if_true)


# ---- division and square root -------------------------------------------------------------------------------------

def reciprocal(r, b) -> VReg:
  """1 / b for b with a modest exponent: the estimate and two Newton steps."""
  y = r.op("v_rcp_f64", b, size=2)
  for _ in range(2):
    e = fma(r, Neg(b), y, 1.0)
    y = fma(r, y, e, y)
  return y


def divide_scaled(r, a, b) -> VReg:
  """a / b for mantissas of modest exponent: a * (1/b) with one remainder correction."""
  y = reciprocal(r, b)
  q = r.op("v_mul_f64", a, y, size=2)
  rem = fma(r, Neg(b), q, a)
  return fma(r, rem, y, q)


def div64(r, a, b) -> VReg:
  a, b = k64(r, a), k64(r, b)
  ma, mb = r.op("v_frexp_mant_f64", a, size=2), r.op("v_frexp_mant_f64", b, size=2)
  ea, eb = r.op("v_frexp_exp_i32_f64", a), r.op("v_frexp_exp_i32_f64", b)
  q = divide_scaled(r, ma, mb)
  scaled = r.op("v_ldexp_f64", q, r.op("v_sub_nc_u32", ea, eb), size=2)
  simple = r.op("v_mul_f64", a, r.op("v_rcp_f64", b, size=2), size=2)
  sa = r.op("v_cmp_class_f64", a, SPECIAL_DIV, file="s")
  sb = r.op("v_cmp_class_f64", b, SPECIAL_DIV, file="s")
  special = r.op("s_or_b32", sa, sb, file="s")
  return select(r, special, scaled, simple)


def sqrt64(r, x) -> VReg:
  x = k64(r, x)
  e = r.op("v_frexp_exp_i32_f64", x)
  m = r.op("v_frexp_mant_f64", x, size=2)
  odd = r.op("v_and_b32", 1, e)
  m2 = r.op("v_ldexp_f64", m, odd, size=2)  # [0.5, 2): the remaining exponent is even
  half_e = r.op("v_ashrrev_i32", 1, r.op("v_sub_nc_u32", e, odd))
  y = r.op("v_rsq_f64", m2, size=2)
  g = r.op("v_mul_f64", m2, y, size=2)
  h = r.op("v_mul_f64", 0.5, y, size=2)
  for _ in range(2):
    t = fma(r, Neg(g), h, 0.5)
    g, h = fma(r, g, t, g), fma(r, h, t, h)
  d = fma(r, Neg(g), g, m2)
  g = fma(r, d, h, g)
  scaled = r.op("v_ldexp_f64", g, half_e, size=2)
  special = r.op("v_cmp_class_f64", x, SPECIAL_SQRT, file="s")
  return select(r, special, scaled, r.op("v_sqrt_f64", x, size=2))


def via64(r, fn, *xs) -> VReg:
  """fn on float32 operands widened to float64, rounded back once."""
  wide = [x if isinstance(x, (int, float)) else r.op("v_cvt_f64_f32", x, size=2) for x in xs]
  return r.op("v_cvt_f32_f64", fn(r, *wide))


def exp2_32(r, x) -> VReg:
  small = r.op("v_cmp_gt_f32", -126.0, x, file="s")
  shift = r.op("v_cndmask_b32", 0, 64, small)
  bias = r.op("v_cvt_f32_i32", shift)
  e = r.op("v_exp_f32", r.op("v_add_f32", x, bias))
  return r.op("v_ldexp_f32", e, r.op("v_sub_nc_u32", 0, shift))


def log2_32(r, x) -> VReg:
  tiny = r.op("v_cmp_gt_f32", TINY_F32, x, file="s")
  shift = r.op("v_cndmask_b32", 0, 64, tiny)
  lg = r.op("v_log_f32", r.op("v_ldexp_f32", x, shift))
  return r.op("v_sub_f32", lg, r.op("v_cvt_f32_i32", shift))


def float_math(r, op: Ops, xs: list) -> VReg:
  """float32 FDIV, RECIP, SQRT, EXP2, LOG2, SIN."""
  if op is Ops.FDIV:
    return via64(r, div64, xs[0], xs[1])
  if op is Ops.RECIP:
    return via64(r, div64, 1.0, xs[0])
  if op is Ops.SQRT:
    return via64(r, sqrt64, xs[0])
  if op is Ops.EXP2:
    return exp2_32(r, xs[0])
  if op is Ops.LOG2:
    return log2_32(r, xs[0])
  if op is Ops.SIN:
    return via64(r, sin64, xs[0])
  raise ValueError(f"RDNA renderer: no float32 rendering for {op.name}")


def float64_math(r, op: Ops, a, b) -> VReg:
  fns = {Ops.SQRT: sqrt64, Ops.EXP2: exp2_64, Ops.LOG2: log2_64, Ops.SIN: sin64}
  if op is Ops.FDIV:
    return div64(r, a, b)
  if op is Ops.RECIP:
    return div64(r, 1.0, a)
  if op in fns:
    return fns[op](r, a)
  raise ValueError(f"RDNA renderer: no float64 rendering for {op.name}")


# ---- exp2, log2, sin in float64 -----------------------------------------------------------------------------------

def exp2_64(r, x) -> VReg:
  x = k64(r, x)
  xc = r.op("v_max_f64", r.op("v_min_f64", x, k64(r, 1100.0), size=2), k64(r, -1100.0), size=2)
  n = r.op("v_rndne_f64", xc, size=2)
  f = r.op("v_add_f64", xc, Neg(n), size=2)
  poly = horner(r, f, ptx_math.EXP2_COEFFS)
  out = r.op("v_ldexp_f64", poly, r.op("v_cvt_i32_f64", n), size=2)
  nan = r.op("v_cmp_u_f64", x, x, file="s")  # min/max dropped a NaN; put it back
  return select(r, nan, out, x)


def log2_64(r, x) -> VReg:
  x = k64(r, x)
  m = r.op("v_frexp_mant_f64", x, size=2)  # |m| in [0.5, 1)
  e = r.op("v_frexp_exp_i32_f64", x)
  low = r.op("v_cmp_gt_f64", k64(r, math.sqrt(0.5)), m, file="s")
  m2 = select(r, low, m, r.op("v_add_f64", m, m, size=2))  # [sqrt(1/2), sqrt(2))
  e2 = r.op("v_cndmask_b32", e, r.op("v_add_nc_u32", -1, e), low)
  num = r.op("v_add_f64", m2, -1.0, size=2)  # exact (Sterbenz)
  den = r.op("v_add_f64", m2, 1.0, size=2)
  s = divide_scaled(r, num, den)
  z = r.op("v_mul_f64", s, s, size=2)
  half = r.op("v_mul_f64", s, horner(r, z, ptx_math.ATANH_COEFFS), size=2)
  ln = r.op("v_add_f64", half, half, size=2)
  out = fma(r, ln, k64(r, ptx_math.LOG2_E), r.op("v_cvt_f64_i32", e2, size=2))
  # log2(+-0) = -inf, log2(x < 0) = NaN, log2(inf) = inf, NaN passes
  zero = r.op("v_cmp_class_f64", x, 0x60, file="s")
  out = select(r, zero, out, k64(r, -math.inf))
  neg = r.op("v_cmp_gt_f64", 0, x, file="s")
  out = select(r, neg, out, k64(r, math.nan))
  keep = r.op("v_cmp_class_f64", x, 0x203, file="s")  # NaN or +inf
  return select(r, keep, out, x)


def sin64(r, x) -> VReg:
  from compiler.rdna_sin import payne_hanek
  x = k64(r, x)
  t = r.op("v_mul_f64", x, k64(r, ptx_math.TWO_OVER_PI), size=2)
  k = r.op("v_rndne_f64", t, size=2)
  red = x
  for part in (ptx_math.PIO2_1, ptx_math.PIO2_2, ptx_math.PIO2_3):  # x - k*pi/2 (inf and NaN become NaN)
    red = fma(r, Neg(k), k64(r, part), red)
  q = r.op("v_cvt_i32_f64", k)
  payne_hanek(r, x, red, q)
  z = r.op("v_mul_f64", red, red, size=2)
  sin_t = r.op("v_mul_f64", z, horner(r, z, ptx_math.SIN_COEFFS), size=2)
  sin_r = fma(r, red, sin_t, red)
  z2 = r.op("v_mul_f64", z, z, size=2)
  cos_head = fma(r, z, -0.5, 1.0)
  cos_r = fma(r, z2, horner(r, z, ptx_math.COS_COEFFS), cos_head)
  odd = r.op("v_cmp_ne_u32", 0, r.op("v_and_b32", 1, q), file="s")
  neg = r.op("v_cmp_ne_u32", 0, r.op("v_and_b32", 2, q), file="s")
  quad = select(r, odd, sin_r, cos_r)  # quadrants: sin, cos, -sin, -cos
  from compiler.rdna_alu import pair_of
  negated = pair_of(r, Half(quad, 0), r.op("v_xor_b32", s32(0x80000000), Half(quad, 1)))
  return select(r, neg, quad, negated)


# ---- integer division ---------------------------------------------------------------------------------------------

def magic(d: int) -> tuple[int, int]:
  """(m, sh) with n // d == (n * m) >> (32 + sh) for every 0 <= n < 2^31: m = ceil(2^(32+sh) / d), whose excess
  e = m*d - 2^(32+sh) keeps n * e < 2^(32+sh)."""
  for sh in range(32):
    m = -(-(1 << (32 + sh)) // d)
    if m < 1 << 32 and (m * d - (1 << (32 + sh))) * ((1 << 31) - 1) < 1 << (32 + sh):
      return m, sh
  raise ValueError(f"no 32-bit magic number for division by {d}")


def divmod_const(r, op: Ops, x, d: int, scalar: bool):
  """x // d or x % d for a non-negative index x < 2^31 and a constant d > 0."""
  if isinstance(x, int):
    return x // d if op is Ops.IDIV else x % d
  f = "s" if scalar and x.file == "s" else "v"
  if d & (d - 1) == 0:
    k = d.bit_length() - 1
    if op is Ops.IDIV:
      return r.op("s_lshr_b32", x, k, file="s") if f == "s" else r.op("v_lshrrev_b32", k, x)
    return r.op("s_and_b32", x, d - 1, file="s") if f == "s" else r.op("v_and_b32", d - 1, x)
  m, sh = magic(d)
  if f == "s":
    q = r.op("s_lshr_b32", r.op("s_mul_hi_u32", x, s32(m), file="s"), sh, file="s")
    return q if op is Ops.IDIV else r.op("s_sub_i32", x, r.op("s_mul_i32", q, d, file="s"), file="s")
  q = r.op("v_lshrrev_b32", sh, r.op("v_mul_hi_u32", x, s32(m)))
  return q if op is Ops.IDIV else r.op("v_sub_nc_u32", x, r.op("v_mul_lo_u32", q, d))


def divmod_const_signed(r, op: Ops, x, d: int):
  """C's truncating x / d or x % d for an index -2^31 < x < 2^31 and a constant d > 0: the magnitude divided as in
  divmod_const, then the sign of x applied to the quotient (the remainder takes it from x - q*d)."""
  if isinstance(x, int):
    q = abs(x) // d * (1 if x >= 0 else -1)
    return q if op is Ops.IDIV else x - q * d
  magnitude = r.op("v_max_i32", x, r.op("v_sub_nc_u32", 0, x))
  q = divmod_const(r, Ops.IDIV, magnitude, d, scalar=False)
  negative = r.op("v_cmp_gt_i32", 0, x, file="s")
  q = r.op("v_cndmask_b32", q, r.op("v_sub_nc_u32", 0, q), negative)
  return q if op is Ops.IDIV else r.op("v_sub_nc_u32", x, r.op("v_mul_lo_u32", q, d))


def divmod32(r, op: Ops, a, b, signed: bool, divisor):
  """C's truncating / and % on 32-bit values with the C renderer's guards (x/0 -> 0, x%0 -> 0, x/-1 -> -x wrapping,
  x%-1 -> 0)."""
  kind = "i32" if signed else "u32"
  safe_known = divisor is not None and divisor != 0 and (divisor != -1 or not signed)
  bad = zero = minus1 = None
  if not safe_known:
    zero = r.op("v_cmp_eq_u32", 0, b, file="s")
    bad = zero
    if signed:
      minus1 = r.op("v_cmp_eq_u32", -1, b, file="s")
      bad = r.op("s_or_b32", zero, minus1, file="s")
    b = r.op("v_cndmask_b32", b, 1, bad)
  fa = r.op(f"v_cvt_f64_{kind}", a, size=2)
  fb = r.op(f"v_cvt_f64_{kind}", b, size=2)
  q = r.op(f"v_cvt_{kind}_f64", divide_scaled(r, fa, fb))  # truncates toward zero
  if op is Ops.MOD:  # x % 1 == 0 covers both guards
    return r.op("v_sub_nc_u32", a, r.op("v_mul_lo_u32", q, b))
  if minus1 is not None:
    q = r.op("v_cndmask_b32", q, r.op("v_sub_nc_u32", 0, a), minus1)
  if zero is not None:
    q = r.op("v_cndmask_b32", q, 0, zero)
  return q


def divmod64(r, op: Ops, a, b, signed: bool, divisor):
  """64-bit / and % by shift and subtract over the magnitudes (64 steps of a scalar loop), signs applied after."""
  from compiler.rdna_alu import add64, pair_of, select64, vpair
  a, b = vpair(r, a), vpair(r, b)
  if signed:
    neg_a = r.op("v_cmp_gt_i64", 0, a, file="s")
    neg_b = r.op("v_cmp_gt_i64", 0, b, file="s")
    n = select64(r, neg_a, a, add64(r, 0, a, sub=True))
    d = select64(r, neg_b, b, add64(r, 0, b, sub=True))
  else:
    n, d = a, b
  q, rem = pair_of(r, 0, 0), pair_of(r, 0, 0)
  i, top = r.new("s"), r.code.new_label()
  r.emit("s_mov_b32", i, 63)
  r.code.place(top)
  bit = r.op("v_lshrrev_b64", i, n, size=2)
  r.emit("v_lshlrev_b64", rem, 1, rem, tied=True)
  r.emit("v_and_or_b32", Half(rem, 0), Half(bit, 0), 1, Half(rem, 0))
  ge = r.op("v_cmp_ge_u64", rem, d, file="s")
  less = add64(r, rem, d, sub=True)
  r.emit("v_cndmask_b32", Half(rem, 0), Half(rem, 0), Half(less, 0), ge)
  r.emit("v_cndmask_b32", Half(rem, 1), Half(rem, 1), Half(less, 1), ge)
  r.emit("v_lshlrev_b64", q, 1, q, tied=True)
  r.emit("v_cndmask_b32", Half(q, 0), Half(q, 0), r.op("v_or_b32", 1, Half(q, 0)), ge)
  r.emit("s_sub_i32", i, i, 1, tied=True)
  r.emit("s_cmp_ge_i32", i, 0, ndefs=0)
  r.emit("s_cbranch_scc1", top, ndefs=0)
  out = q if op is Ops.IDIV else rem
  if signed:
    flip = r.op("s_xor_b32", neg_a, neg_b, file="s") if op is Ops.IDIV else neg_a
    out = select64(r, flip, out, add64(r, 0, out, sub=True))
  if divisor is None or divisor == 0:
    zero = r.op("v_cmp_eq_u64", 0, b, file="s")
    out = select64(r, zero, out, 0)
  return out


__all__ = ["div64", "divmod32", "divmod64", "divmod_const", "divmod_const_signed", "float64_math", "float_math",
           "magic", "sqrt64"]
