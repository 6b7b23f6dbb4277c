"""Numeric semantics of the vector ALU: one entry per mnemonic, independent of the encoding (VOP1 / VOP2 / VOP3 /
VOPD forms share them). valu.py reads the operands, applies input modifiers, calls `fn` and writes the result under
EXEC.

    Op(out, ins, fn, args)   out / ins: value types ("f32", "u32", "i32", "f16", "u16", "i16", "f64", "u64", "i64");
                             fn: numpy arrays in -> array out (cast to `out` on write, rounding to nearest even);
                             args: which operands feed fn (default src0, src1, src2; "vdst" reads the old destination
                             for the accumulate forms, "imm" the fmaak/fmamk constant)

Semantics as the RDNA3 / RDNA4 guides' "Vector ALU Operations" opcode lists describe them (guide, unverified here
for the bit-manipulation, med3 / minmax, fract, frexp, perm and 24-bit forms); gfx12 spellings (v_max_num_f32, ...)
from LLVM 19's VOP*Instructions.td. Numerics, and where they deviate from hardware:
  * f32/f16/f64 add, sub, mul and conversions are IEEE round-to-nearest-even (numpy); denormals are kept (the
    FLOAT_DENORM_MODE "flush none" behaviour; the kernel descriptor's denorm and round modes are not modelled).
  * FMA: f32 and f16 are exact products in f64 plus one rounding, with the f64 -> f32/f16 double rounding corrected,
    so results are correctly rounded. f64 FMA uses an exact product (Dekker) and a compensated sum: within 1 ulp,
    not always correctly rounded.
  * Transcendentals (v_rcp/rsq/sqrt/exp/log/sin/cos) are computed in f64 and rounded once: within 0.5 ulp, inside
    the documented 1 ulp for f32 (LLVM 19 AMDGPUUsage: llvm.exp2 / llvm.log2 "1ULP accuracy for float, 0.51ULP for
    half"; AMDGPUCodeGenPrepare: "v_rsq_f32 gives 1ulp", rcp_f32 1 ulp). The f32 forms flush denormal inputs and
    outputs to signed zero ("Float instruction does not natively support denormal inputs", AMDGPUUsage; "denormals
    are flushed", AMDGPUCodeGenPrepare). v_sin_f32 / v_cos_f32 take revolutions: sin(2*pi*x) (LLVM 19
    SITargetLowering::LowerTrig multiplies radians by 0.5/pi before them); their hardware input-range limit is not
    modelled.
  * float->int conversions truncate toward zero (floor for cvt_floor, round-half-up for cvt_nearest), saturate,
    and give 0 for NaN.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .salu import bit_reverse, clz, ctz, popcount

__all__ = ["CMP_OPS", "Op", "VALU", "class_mask"]
F16, F32, F64 = np.float16, np.float32, np.float64
U16, U32, U64, I16, I32, I64 = np.uint16, np.uint32, np.uint64, np.int16, np.int32, np.int64
TWO_PI = 2.0 * np.pi


@dataclass(frozen=True)
class Op:
  out: str
  ins: tuple
  fn: object
  args: tuple = ()
  fma: tuple = ()        # (low, half) rounding constants: a fused multiply-add valu.py may run on its fast path

  def sources(self) -> tuple:
    return self.args or ("src0", "src1", "src2")[:len(self.ins)]


# ---- helpers -------------------------------------------------------------------------------------------------------

def flush32(x):
  """Signed zero for f32 denormals (inputs and results of the f32 transcendental instructions)."""
  x = np.asarray(x, dtype=F32)
  return np.where(np.abs(x) < np.finfo(F32).tiny, np.copysign(F32(0), x), x)


def trans32(fn):
  def apply(x):
    return flush32(fn(flush32(x).astype(F64)).astype(F32))
  return apply


def trans(fn):
  return lambda x: fn(np.asarray(x).astype(F64))


def fix_double_rounding(s, a, b, c, low: np.uint64, half: np.uint64):
  """s = fl64(a * b + c) (the product is exact in f64) about to be rounded again to a narrower format whose rounding
  point is bit `half` of the f64 mantissa (low = the bits below that format's last place). Where s sits exactly on
  a midpoint of the narrow format but a * b + c does not, step s one f64 ulp toward the exact value, so the second
  rounding is right (double rounding otherwise breaks round-to-nearest-even)."""
  tail = s.view(U64) & low
  if not np.count_nonzero(tail == half):
    return s
  p = np.multiply(a, b, dtype=F64)
  c = np.asarray(c, dtype=F64)
  back = s - p
  err = (p - (s - back)) + (c - back)             # TwoSum: p + c == s + err exactly
  return np.where((tail == half) & (err != 0), np.nextafter(s, s + err), s)


def rounding_point(drop_bits: int) -> tuple:
  """(low, half): the f64 mantissa bits below a narrower format's last place, and the pattern of a midpoint."""
  half = U64(1) << U64(drop_bits - 1)
  return (half << U64(1)) - U64(1), half


def fma_to(drop_bits: int):
  """Correctly rounded fused multiply-add for a format keeping 52 - drop_bits f64 mantissa bits (f32: 29, f16: 42)."""
  low, half = rounding_point(drop_bits)

  def fma(a, b, c):
    s = np.multiply(a, b, dtype=F64)
    if s.ndim:
      np.add(s, c, out=s)
    else:
      s = np.asarray(s + c)
    return fix_double_rounding(s, a, b, c, low, half)
  return fma


def split(x):
  t = x * 134217729.0                               # Veltkamp split with 2^27 + 1
  hi = t - (t - x)
  return hi, x - hi


def fma64(a, b, c):
  a, b, c = (np.asarray(v, dtype=F64) for v in (a, b, c))
  p = a * b
  ah, al = split(a)
  bh, bl = split(b)
  e = ((ah * bh - p) + ah * bl + al * bh) + al * bl   # Dekker: a*b == p + e
  s = p + c
  back = s - p
  t = (p - (s - back)) + (c - back)
  r = s + (t + e)
  return np.where(np.isfinite(r), r, p + c)


def to_int(x, dtype, rounding=np.trunc):
  info = np.iinfo(dtype)
  x = np.asarray(x, dtype=F64)
  r = np.clip(rounding(x), info.min, info.max)
  return np.where(np.isnan(x), 0, r).astype(dtype)


def fmax(a, b):
  return np.fmax(a, b)


def fmin(a, b):
  return np.fmin(a, b)


def med3(a, b, c, mx=np.fmax, mn=np.fmin):
  return mx(mn(a, b), mn(mx(a, b), c))


def shamt(b, bits):
  return np.asarray(b).astype(U32) & U32(bits - 1)


def lshl(a, b, dt, bits):
  return np.left_shift(np.asarray(a, dtype=dt), shamt(b, bits).astype(dt))


def lshr(a, b, dt, bits):
  return np.right_shift(np.asarray(a, dtype=dt), shamt(b, bits).astype(dt))


def bfe(a, b, c, signed):
  off = shamt(b, 32).astype(U64)
  width = np.minimum(np.asarray(c).astype(U64) & U64(31), U64(32))
  field = (np.asarray(a).astype(U64) >> off) & ((U64(1) << width) - U64(1))
  if not signed:
    return field.astype(U32)
  shift = (U64(64) - width).astype(I64)
  out = (field.astype(I64) << shift) >> shift
  return np.where(width == 0, 0, out).astype(I32)


def u24(x):
  return np.asarray(x).astype(U64) & U64(0xFFFFFF)


def i24(x):
  return (np.asarray(x).astype(I64) << I64(40)) >> I64(40)


def perm(a, b, sel):
  """V_PERM_B32: each selector byte picks a byte of {S0, S1} (0-3 from S1, 4-7 from S0), 8-11 a sign fill, 12 zero,
  13+ 0xFF."""
  pool = (np.asarray(a).astype(U64) << U64(32)) | np.asarray(b).astype(U64)
  sel = np.asarray(sel).astype(U64)
  out = np.zeros(np.broadcast(pool, sel).shape, dtype=U64)
  for i in range(4):
    s = (sel >> U64(8 * i)) & U64(0xFF)
    byte = (pool >> (U64(8) * np.minimum(s, U64(7)))) & U64(0xFF)
    sign_bit = {8: 15, 9: 31, 10: 47, 11: 63}
    fill = np.zeros_like(byte)
    for k, bit in sign_bit.items():
      fill = np.where(s == k, ((pool >> U64(bit)) & U64(1)) * U64(0xFF), fill)
    byte = np.where(s < 8, byte, np.where(s < 12, fill, np.where(s == 12, U64(0), U64(0xFF))))
    out |= byte << U64(8 * i)
  return out.astype(U32)


def cvt_pk_rtz(a, b):
  """V_CVT_PK_RTZ_F16_F32: two f32 -> packed f16, rounding toward zero."""
  def rtz(x):
    x = np.asarray(x, dtype=F32)
    h = x.astype(F16)
    over = np.isfinite(x) & (np.abs(h.astype(F32)) > np.abs(x))
    bits = h.view(U16)
    return np.where(over, bits - U16(1), bits).astype(U32)
  return rtz(a) | (rtz(b) << U32(16))


def class_mask(x, mask):
  """V_CMP_CLASS: bit k of mask selects class k: 0 signaling NaN, 1 quiet NaN, 2 -inf, 3 -normal, 4 -denormal,
  5 -0, 6 +0, 7 +denormal, 8 +normal, 9 +inf."""
  x = np.asarray(x)
  info = np.finfo(x.dtype)
  bits = x.view({2: U16, 4: U32, 8: U64}[x.dtype.itemsize])
  quiet_bit = bits.dtype.type(1) << bits.dtype.type(info.nmant - 1)
  neg = np.signbit(x)
  mag = np.abs(x)
  nan = np.isnan(x)
  classes = (nan & ((bits & quiet_bit) == 0), nan & ((bits & quiet_bit) != 0), np.isneginf(x),
             neg & (mag >= info.tiny) & np.isfinite(x), neg & (mag < info.tiny) & (mag > 0), neg & (mag == 0),
             ~neg & (mag == 0), ~neg & (mag < info.tiny) & (mag > 0), ~neg & (mag >= info.tiny) & np.isfinite(x),
             np.isposinf(x))
  m = np.asarray(mask).astype(U32)
  out = np.zeros(np.broadcast(x, m).shape, dtype=bool)
  for k, cls in enumerate(classes):
    out |= cls & ((m >> U32(k)) & U32(1)).astype(bool)
  return out


# ---- the table ---------------------------------------------------------------------------------------------------

def _build() -> dict:
  t = {}

  def add(names, op):
    for name in names.split():
      t[name] = op
  for ty, drop in (("f32", 29), ("f16", 42)):
    add(f"v_add_{ty}", Op(ty, (ty, ty), np.add))
    add(f"v_sub_{ty}", Op(ty, (ty, ty), np.subtract))
    add(f"v_subrev_{ty}", Op(ty, (ty, ty), lambda a, b: np.subtract(b, a)))
    add(f"v_mul_{ty}", Op(ty, (ty, ty), np.multiply))
    add(f"v_max_{ty} v_max_num_{ty}", Op(ty, (ty, ty), fmax))
    add(f"v_min_{ty} v_min_num_{ty}", Op(ty, (ty, ty), fmin))
    add(f"v_maximum_{ty}", Op(ty, (ty, ty), np.maximum))
    add(f"v_minimum_{ty}", Op(ty, (ty, ty), np.minimum))
    consts = rounding_point(drop)
    add(f"v_fma_{ty}", Op(ty, (ty, ty, ty), fma_to(drop), fma=consts))
    add(f"v_fmac_{ty}", Op(ty, (ty, ty, ty), fma_to(drop), ("src0", "src1", "vdst"), consts))
    add(f"v_fmaak_{ty}", Op(ty, (ty, ty, ty), fma_to(drop), ("src0", "src1", "imm"), consts))
    add(f"v_fmamk_{ty}", Op(ty, (ty, ty, ty), fma_to(drop), ("src0", "imm", "src1"), consts))
    add(f"v_max3_{ty} v_max3_num_{ty}", Op(ty, (ty,) * 3, lambda a, b, c: np.fmax(np.fmax(a, b), c)))
    add(f"v_min3_{ty} v_min3_num_{ty}", Op(ty, (ty,) * 3, lambda a, b, c: np.fmin(np.fmin(a, b), c)))
    add(f"v_med3_{ty} v_med3_num_{ty}", Op(ty, (ty,) * 3, med3))
    add(f"v_minmax_{ty} v_minmax_num_{ty}", Op(ty, (ty,) * 3, lambda a, b, c: np.fmax(np.fmin(a, b), c)))
    add(f"v_maxmin_{ty} v_maxmin_num_{ty}", Op(ty, (ty,) * 3, lambda a, b, c: np.fmin(np.fmax(a, b), c)))
    add(f"v_ldexp_{ty}", Op(ty, (ty, "i32"), lambda a, b: np.ldexp(np.asarray(a, dtype=F64), np.asarray(b, I32))))
    add(f"v_floor_{ty}", Op(ty, (ty,), np.floor))
    add(f"v_ceil_{ty}", Op(ty, (ty,), np.ceil))
    add(f"v_trunc_{ty}", Op(ty, (ty,), np.trunc))
    add(f"v_rndne_{ty}", Op(ty, (ty,), np.rint))
    add(f"v_fract_{ty}", Op(ty, (ty,), lambda a: np.minimum(a - np.floor(a), np.nextafter(a.dtype.type(1), 0))))
    add(f"v_frexp_mant_{ty}", Op(ty, (ty,), lambda a: np.frexp(a)[0]))
  add("v_frexp_exp_i32_f32", Op("i32", ("f32",), lambda a: np.frexp(a)[1].astype(I32)))
  add("v_frexp_exp_i16_f16", Op("i16", ("f16",), lambda a: np.frexp(a)[1].astype(I16)))
  for name, fn in (("rcp", lambda x: 1.0 / x), ("rsq", lambda x: 1.0 / np.sqrt(x)), ("sqrt", np.sqrt),
                   ("exp", np.exp2), ("log", np.log2), ("sin", lambda x: np.sin(TWO_PI * x)),
                   ("cos", lambda x: np.cos(TWO_PI * x))):
    add(f"v_{name}_f32", Op("f32", ("f32",), trans32(fn)))
    add(f"v_{name}_f16", Op("f16", ("f16",), trans(fn)))
  add("v_rcp_iflag_f32", t["v_rcp_f32"])
  # f64
  add("v_add_f64", Op("f64", ("f64", "f64"), np.add))
  add("v_mul_f64", Op("f64", ("f64", "f64"), np.multiply))
  add("v_max_f64 v_max_num_f64", Op("f64", ("f64", "f64"), fmax))
  add("v_min_f64 v_min_num_f64", Op("f64", ("f64", "f64"), fmin))
  add("v_maximum_f64", Op("f64", ("f64", "f64"), np.maximum))
  add("v_minimum_f64", Op("f64", ("f64", "f64"), np.minimum))
  add("v_fma_f64", Op("f64", ("f64",) * 3, fma64))
  add("v_fmac_f64", Op("f64", ("f64",) * 3, fma64, ("src0", "src1", "vdst")))
  add("v_ldexp_f64", Op("f64", ("f64", "i32"), lambda a, b: np.ldexp(a, np.asarray(b, I32))))
  add("v_rcp_f64", Op("f64", ("f64",), lambda x: 1.0 / x))
  add("v_rsq_f64", Op("f64", ("f64",), lambda x: 1.0 / np.sqrt(x)))
  add("v_sqrt_f64", Op("f64", ("f64",), np.sqrt))
  for name, fn in (("floor", np.floor), ("ceil", np.ceil), ("trunc", np.trunc), ("rndne", np.rint)):
    add(f"v_{name}_f64", Op("f64", ("f64",), fn))
  add("v_fract_f64", Op("f64", ("f64",), lambda a: np.minimum(a - np.floor(a), np.nextafter(1.0, 0))))
  add("v_frexp_mant_f64", Op("f64", ("f64",), lambda a: np.frexp(a)[0]))
  add("v_frexp_exp_i32_f64", Op("i32", ("f64",), lambda a: np.frexp(a)[1].astype(I32)))
  # conversions
  add("v_cvt_f32_i32", Op("f32", ("i32",), lambda a: np.asarray(a).astype(F32)))
  add("v_cvt_f32_u32", Op("f32", ("u32",), lambda a: np.asarray(a).astype(F32)))
  add("v_cvt_i32_f32", Op("i32", ("f32",), lambda a: to_int(a, I32)))
  add("v_cvt_u32_f32", Op("u32", ("f32",), lambda a: to_int(a, U32)))
  add("v_cvt_floor_i32_f32", Op("i32", ("f32",), lambda a: to_int(a, I32, np.floor)))
  add("v_cvt_nearest_i32_f32", Op("i32", ("f32",), lambda a: to_int(np.asarray(a, F64) + 0.5, I32, np.floor)))
  add("v_cvt_f16_f32", Op("f16", ("f32",), lambda a: np.asarray(a).astype(F16)))
  add("v_cvt_f32_f16", Op("f32", ("f16",), lambda a: np.asarray(a).astype(F32)))
  add("v_cvt_f64_f32", Op("f64", ("f32",), lambda a: np.asarray(a).astype(F64)))
  add("v_cvt_f32_f64", Op("f32", ("f64",), lambda a: np.asarray(a).astype(F32)))
  add("v_cvt_f64_i32", Op("f64", ("i32",), lambda a: np.asarray(a).astype(F64)))
  add("v_cvt_f64_u32", Op("f64", ("u32",), lambda a: np.asarray(a).astype(F64)))
  add("v_cvt_i32_f64", Op("i32", ("f64",), lambda a: to_int(a, I32)))
  add("v_cvt_u32_f64", Op("u32", ("f64",), lambda a: to_int(a, U32)))
  add("v_cvt_f16_i16", Op("f16", ("i16",), lambda a: np.asarray(a).astype(F16)))
  add("v_cvt_f16_u16", Op("f16", ("u16",), lambda a: np.asarray(a).astype(F16)))
  add("v_cvt_i16_f16", Op("i16", ("f16",), lambda a: to_int(a, I16)))
  add("v_cvt_u16_f16", Op("u16", ("f16",), lambda a: to_int(a, U16)))
  add("v_cvt_i32_i16", Op("i32", ("i16",), lambda a: np.asarray(a).astype(I32)))
  add("v_cvt_u32_u16", Op("u32", ("u16",), lambda a: np.asarray(a).astype(U32)))
  for k in range(4):
    add(f"v_cvt_f32_ubyte{k}", Op("f32", ("u32",), lambda a, k=k: ((np.asarray(a) >> U32(8 * k)) & U32(0xFF))
                                  .astype(F32)))
  add("v_cvt_pk_rtz_f16_f32", Op("u32", ("f32", "f32"), cvt_pk_rtz))
  add("v_pack_b32_f16", Op("u32", ("u16", "u16"), lambda a, b: np.asarray(a).astype(U32) | (np.asarray(b)
                                                                                           .astype(U32) << U32(16))))
  # integer
  add("v_mov_b32", Op("u32", ("u32",), lambda a: a))
  add("v_mov_b16", Op("u16", ("u16",), lambda a: a))
  add("v_add_nc_u32 v_add_u32", Op("u32", ("u32", "u32"), np.add))
  add("v_sub_nc_u32 v_sub_u32", Op("u32", ("u32", "u32"), np.subtract))
  add("v_subrev_nc_u32 v_subrev_u32", Op("u32", ("u32", "u32"), lambda a, b: np.subtract(b, a)))
  add("v_add_nc_i32", Op("i32", ("i32", "i32"), np.add))
  add("v_sub_nc_i32", Op("i32", ("i32", "i32"), np.subtract))
  for ty in ("u16", "i16"):
    add(f"v_add_nc_{ty}", Op(ty, (ty, ty), np.add))
    add(f"v_sub_nc_{ty}", Op(ty, (ty, ty), np.subtract))
    add(f"v_max_{ty}", Op(ty, (ty, ty), np.maximum))
    add(f"v_min_{ty}", Op(ty, (ty, ty), np.minimum))
  add("v_mul_lo_u16", Op("u16", ("u16", "u16"), np.multiply))
  add("v_mul_lo_u32", Op("u32", ("u32", "u32"), np.multiply))
  add("v_mul_hi_u32", Op("u32", ("u32", "u32"), lambda a, b: (np.multiply(a, b, dtype=U64) >> U64(32)).astype(U32)))
  add("v_mul_hi_i32", Op("i32", ("i32", "i32"), lambda a, b: (np.multiply(a, b, dtype=I64) >> I64(32)).astype(I32)))
  add("v_mul_u32_u24", Op("u32", ("u32", "u32"), lambda a, b: (u24(a) * u24(b)).astype(U32)))
  add("v_mul_hi_u32_u24", Op("u32", ("u32", "u32"), lambda a, b: ((u24(a) * u24(b)) >> U64(32)).astype(U32)))
  add("v_mul_i32_i24", Op("i32", ("u32", "u32"), lambda a, b: (i24(a) * i24(b)).astype(I32)))
  add("v_mul_hi_i32_i24", Op("i32", ("u32", "u32"), lambda a, b: ((i24(a) * i24(b)) >> I64(32)).astype(I32)))
  add("v_mad_u32_u24", Op("u32", ("u32",) * 3, lambda a, b, c: (u24(a) * u24(b) + c).astype(U32)))
  add("v_mad_i32_i24", Op("i32", ("u32", "u32", "i32"), lambda a, b, c: (i24(a) * i24(b) + c).astype(I32)))
  add("v_mad_u32_u16", Op("u32", ("u16", "u16", "u32"), lambda a, b, c: np.multiply(a, b, dtype=U32) + c))
  add("v_mad_i32_i16", Op("i32", ("i16", "i16", "i32"), lambda a, b, c: np.multiply(a, b, dtype=I32) + c))
  for ty in ("i32", "u32"):
    add(f"v_max_{ty}", Op(ty, (ty, ty), np.maximum))
    add(f"v_min_{ty}", Op(ty, (ty, ty), np.minimum))
    add(f"v_max3_{ty}", Op(ty, (ty,) * 3, lambda a, b, c: np.maximum(np.maximum(a, b), c)))
    add(f"v_min3_{ty}", Op(ty, (ty,) * 3, lambda a, b, c: np.minimum(np.minimum(a, b), c)))
    add(f"v_med3_{ty}", Op(ty, (ty,) * 3, lambda a, b, c: med3(a, b, c, np.maximum, np.minimum)))
    add(f"v_minmax_{ty}", Op(ty, (ty,) * 3, lambda a, b, c: np.maximum(np.minimum(a, b), c)))
    add(f"v_maxmin_{ty}", Op(ty, (ty,) * 3, lambda a, b, c: np.minimum(np.maximum(a, b), c)))
  add("v_and_b32", Op("u32", ("u32", "u32"), np.bitwise_and))
  add("v_or_b32", Op("u32", ("u32", "u32"), np.bitwise_or))
  add("v_xor_b32", Op("u32", ("u32", "u32"), np.bitwise_xor))
  add("v_xnor_b32", Op("u32", ("u32", "u32"), lambda a, b: ~np.bitwise_xor(a, b)))
  add("v_not_b32", Op("u32", ("u32",), np.invert))
  for op, fn in (("and", np.bitwise_and), ("or", np.bitwise_or), ("xor", np.bitwise_xor)):
    add(f"v_{op}_b16", Op("u16", ("u16", "u16"), fn))
  add("v_not_b16", Op("u16", ("u16",), np.invert))
  add("v_lshlrev_b32", Op("u32", ("u32", "u32"), lambda a, b: lshl(b, a, U32, 32)))
  add("v_lshrrev_b32", Op("u32", ("u32", "u32"), lambda a, b: lshr(b, a, U32, 32)))
  add("v_ashrrev_i32", Op("i32", ("u32", "i32"), lambda a, b: lshr(b, a, I32, 32)))
  add("v_lshlrev_b64", Op("u64", ("u32", "u64"), lambda a, b: lshl(b, a, U64, 64)))
  add("v_lshrrev_b64", Op("u64", ("u32", "u64"), lambda a, b: lshr(b, a, U64, 64)))
  add("v_ashrrev_i64", Op("i64", ("u32", "i64"), lambda a, b: lshr(b, a, I64, 64)))
  add("v_lshlrev_b16", Op("u16", ("u16", "u16"), lambda a, b: lshl(b, a, U16, 16)))
  add("v_lshrrev_b16", Op("u16", ("u16", "u16"), lambda a, b: lshr(b, a, U16, 16)))
  add("v_ashrrev_i16", Op("i16", ("u16", "i16"), lambda a, b: lshr(b, a, I16, 16)))
  add("v_bfe_u32", Op("u32", ("u32",) * 3, lambda a, b, c: bfe(a, b, c, False)))
  add("v_bfe_i32", Op("i32", ("u32",) * 3, lambda a, b, c: bfe(a, b, c, True)))
  add("v_bfi_b32", Op("u32", ("u32",) * 3, lambda a, b, c: (np.asarray(a) & b) | (~np.asarray(a) & c)))
  add("v_bfm_b32", Op("u32", ("u32", "u32"), lambda a, b: (((U64(1) << shamt(a, 32).astype(U64)) - U64(1))
                                                           << shamt(b, 32).astype(U64)).astype(U32)))
  add("v_alignbit_b32", Op("u32", ("u32",) * 3, lambda a, b, c: (((np.asarray(a).astype(U64) << U64(32))
                                                                  | np.asarray(b).astype(U64))
                                                                 >> shamt(c, 32).astype(U64)).astype(U32)))
  add("v_alignbyte_b32", Op("u32", ("u32",) * 3, lambda a, b, c: (((np.asarray(a).astype(U64) << U64(32))
                                                                   | np.asarray(b).astype(U64))
                                                                  >> (U64(8) * (np.asarray(c).astype(U64) & U64(3))))
                                                                 .astype(U32)))
  add("v_lshl_add_u32", Op("u32", ("u32",) * 3, lambda a, b, c: lshl(a, b, U32, 32) + c))
  add("v_add_lshl_u32", Op("u32", ("u32",) * 3, lambda a, b, c: lshl(np.add(a, b), c, U32, 32)))
  add("v_lshl_or_b32", Op("u32", ("u32",) * 3, lambda a, b, c: lshl(a, b, U32, 32) | c))
  add("v_and_or_b32", Op("u32", ("u32",) * 3, lambda a, b, c: (np.asarray(a) & b) | c))
  add("v_or3_b32", Op("u32", ("u32",) * 3, lambda a, b, c: np.asarray(a) | b | c))
  add("v_xor3_b32", Op("u32", ("u32",) * 3, lambda a, b, c: np.asarray(a) ^ b ^ c))
  add("v_add3_u32", Op("u32", ("u32",) * 3, lambda a, b, c: np.asarray(a) + b + c))
  add("v_xad_u32", Op("u32", ("u32",) * 3, lambda a, b, c: (np.asarray(a) ^ b) + c))
  add("v_bcnt_u32_b32", Op("u32", ("u32", "u32"), lambda a, b: popcount(np.asarray(a)).astype(U32) + b))
  add("v_bfrev_b32", Op("u32", ("u32",), lambda a: bit_reverse(np.asarray(a), 32).astype(U32)))
  add("v_ctz_i32_b32", Op("i32", ("u32",), lambda a: ctz(np.asarray(a), 32)))
  add("v_clz_i32_u32", Op("i32", ("u32",), lambda a: clz(np.asarray(a), 32)))
  add("v_perm_b32", Op("u32", ("u32",) * 3, perm))
  return t


VALU = _build()
# compare name -> fn(a, b) on numpy arrays (the _f_ / _t_ forms give constant results); float forms without an
# "n" are ordered (false on NaN), the n-forms are their negations (true on NaN)
CMP_OPS = {
  "f": lambda a, b: np.zeros(np.broadcast(a, b).shape, dtype=bool),
  "t": lambda a, b: np.ones(np.broadcast(a, b).shape, dtype=bool),
  "lt": np.less, "eq": np.equal, "le": np.less_equal, "gt": np.greater, "ne": np.not_equal, "ge": np.greater_equal,
  "lg": lambda a, b: np.less(a, b) | np.greater(a, b), "o": lambda a, b: ~(np.isnan(a) | np.isnan(b)),
  "u": lambda a, b: np.isnan(a) | np.isnan(b), "nge": lambda a, b: ~np.greater_equal(a, b),
  "nlg": lambda a, b: ~(np.less(a, b) | np.greater(a, b)), "ngt": lambda a, b: ~np.greater(a, b),
  "nle": lambda a, b: ~np.less_equal(a, b), "neq": lambda a, b: ~np.equal(a, b), "nlt": lambda a, b: ~np.less(a, b),
  "class": class_mask,
}
