"""Casts, bitcasts and register-form helpers of the RDNA instruction selection (register forms: compiler/rdna_isel.py).

Casts follow the C renderer on x86-64 for in-range values: int -> float rounds to nearest even (int64 -> float32 goes
through float64, so it may round twice for |x| > 2^53); float -> int truncates toward zero, wrapping to narrow types
through int32 as gcc does (out-of-range values saturate here; C leaves them undefined); float -> uint32 and uint64 wrap
negative values through the signed type; float -> bool is `x != 0` (NaN -> true); bfloat16 results round to nearest
even from float32 (NaN kept quiet), through float32 from other types as C's _f2bf((float)x) does.
"""
from __future__ import annotations

import math

import numpy as np

from compiler.dtypes import DType, dtypes
from compiler.ir import cast_scalar
from compiler.rdna_code import Half, VReg, f32_bits, s32

FLOAT_BITS = {"float16": "f16", "float32": "f32", "bfloat16": "f32", "float64": "f64"}


def is_const(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def bits32(x, d: DType):
  """A 32-bit operand carrying a value of d as raw bits (for moves and selects): registers as they are, float16
  constants as their 16 bits, other float constants as their float32 bits."""
  if isinstance(x, float):
    if d == dtypes.float16:
      return int(np.array(x, np.float16).view(np.uint16))
    return s32(f32_bits(x))
  return x


def lo(x):
  if isinstance(x, VReg):
    return Half(x, 0)
  return s32(x)


def hi(x):
  if isinstance(x, VReg):
    return Half(x, 1)
  return s32(x >> 32)


def pair_of(r, low, high) -> VReg:
  out = r.new("v", 2)
  r.emit("v_mov_b32", Half(out, 0), low)
  r.emit("v_mov_b32", Half(out, 1), high)
  return out


def normalize(r, x, d: DType, scalar: bool):
  """An 8/16-bit integer held in 32 bits, re-extended (sign or zero, by d) after an op that may have overflowed it."""
  if not d.is_int or d.itemsize >= 4:
    return x
  if is_const(x):
    return cast_scalar(int(x), d)
  mask = (1 << d.bits) - 1
  if scalar and x.file == "s":
    if d.is_unsigned:
      return r.op("s_and_b32", x, mask, file="s")
    return r.op(f"s_sext_i32_i{d.bits}", x, file="s")
  if d.is_unsigned:
    return r.op("v_and_b32", mask, x)
  return r.op("v_bfe_i32", x, 0, d.bits)


def extend64(r, x, signed: bool):
  """A 32-bit integer operand widened to a 64-bit VGPR pair (or a Python int)."""
  if is_const(x):
    return int(x) if signed else int(x) & 0xFFFFFFFF
  high = r.op("v_ashrrev_i32", 31, x) if signed else 0
  return pair_of(r, x, high)


def round_bf16(r, x):
  """A float32 operand rounded to bfloat16 (nearest even; NaN kept quiet), still held as float32."""
  if is_const(x):
    u = f32_bits(x)
    u = (u | 0x400000) & 0xFFFF0000 if (u & 0x7FFFFFFF) > 0x7F800000 else (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return float(np.uint32(u).view(np.float32))
  lsb = r.op("v_bfe_u32", x, 16, 1)
  up = r.op("v_add3_u32", x, 0x7FFF, lsb)
  rounded = r.op("v_and_b32", s32(0xFFFF0000), up)
  nan = r.op("v_cmp_u_f32", x, x, file="s")
  quiet = r.op("v_or_b32", 0x400000, x)
  quiet_top = r.op("v_and_b32", s32(0xFFFF0000), quiet)
  return r.op("v_cndmask_b32", rounded, quiet_top, nan)


# ---- casts --------------------------------------------------------------------------------------------------------

def cast(r, x, s: DType, d: DType, narrow: bool = False):
  """x (an operand of dtype s; `narrow`: an int64 index value held in 32 bits) converted to d's register form."""
  if s == d and not (narrow and d.itemsize == 8):
    return x
  if is_const(x) and not s.is_bool:
    folded = fold_cast(x, s, d, narrow)
    if folded is not None:
      from compiler.rdna_alu import const
      return const(r, folded, d)
  if s.is_bool:
    return from_bool(r, x, d)
  if d.is_bool:
    return to_bool(r, x, s, narrow)
  if s.is_int and d.is_int:
    return int_cast(r, x, s, d, narrow)
  if s.is_int:
    return int_to_float(r, x, s, d, narrow)
  if d.is_int:
    return float_to_int(r, x, s, d)
  return float_to_float(r, x, s, d)


def fold_cast(x, s: DType, d: DType, narrow: bool):
  """The cast of a constant, or None where the C result is undefined (non-finite float -> int)."""
  value = x
  if s.is_int and s.itemsize == 8 and not narrow and not s.is_unsigned and value >= 1 << 63:
    value -= 1 << 64
  if d.is_int and isinstance(value, float):
    if not math.isfinite(value):
      return None
    return cast_scalar(math.trunc(value), d)
  return cast_scalar(value, d)


def from_bool(r, mask, d: DType):
  if d.itemsize == 8:
    if d.is_float:
      return pair_of(r, 0, r.op("v_cndmask_b32", 0, 0x3FF00000, mask))
    return pair_of(r, r.op("v_cndmask_b32", 0, 1, mask), 0)
  one = {"float16": 0x3C00, "float32": 0x3F800000, "bfloat16": 0x3F800000}.get(d.name, 1)
  return r.op("v_cndmask_b32", 0, one, mask)


def to_bool(r, x, s: DType, narrow: bool):
  if s.is_float:
    if s == dtypes.float64:
      from compiler.rdna_alu import f64op
      x = f64op(r, x)
    return r.op(f"v_cmp_neq_{FLOAT_BITS[s.name]}", 0, x, file="s")
  if s.itemsize == 8 and not narrow:
    return r.op("v_cmp_ne_u64", 0, x, file="s")
  return r.op("v_cmp_ne_u32", 0, x, file="s")


def int_cast(r, x, s: DType, d: DType, narrow: bool):
  source64 = s.itemsize == 8 and not narrow
  if d.itemsize == 8:
    return x if source64 else extend64(r, x, signed=not s.is_unsigned or narrow)
  v = lo(x) if source64 else x
  if d.itemsize == 4:
    if isinstance(v, Half):
      return r.op("v_mov_b32", v)
    return v
  if isinstance(v, Half):
    v = r.op("v_mov_b32", v)
  return normalize(r, v, d, scalar=v.file == "s")


def int_to_float(r, x, s: DType, d: DType, narrow: bool):
  if s.itemsize == 8 and not narrow:
    signed = "u32" if s.is_unsigned else "i32"
    high = r.op(f"v_cvt_f64_{signed}", hi(x), size=2)
    low = r.op("v_cvt_f64_u32", lo(x), size=2)
    scaled = r.op("v_ldexp_f64", high, 32, size=2)
    f64 = r.op("v_add_f64", scaled, low, size=2)  # hi * 2^32 is exact: one rounding
    return f64 if d == dtypes.float64 else float_to_float(r, f64, dtypes.float64, d)
  kind = "u32" if s.is_unsigned and not narrow else "i32"
  if d == dtypes.float64:
    return r.op(f"v_cvt_f64_{kind}", x, size=2)
  f32 = r.op(f"v_cvt_f32_{kind}", x)
  return f32 if d == dtypes.float32 else float_to_float(r, f32, dtypes.float32, d)


def float_to_int(r, x, s: DType, d: DType):
  if s == dtypes.float16:
    x, s = r.op("v_cvt_f32_f16", x), dtypes.float32
  ty = "f64" if s == dtypes.float64 else "f32"
  if d.itemsize == 8:
    return float_to_int64(r, x, ty)
  if d == dtypes.uint32:  # negative values wrap through int32
    size = 2 if ty == "f64" else 1
    negative = r.op(f"v_cmp_gt_{ty}", 0, x, file="s")
    as_signed = r.op(f"v_cvt_i32_{ty}", x)
    as_unsigned = r.op(f"v_cvt_u32_{ty}", x)
    del size
    return r.op("v_cndmask_b32", as_unsigned, as_signed, negative)
  return normalize(r, r.op(f"v_cvt_i32_{ty}", x), d, False)


def float_to_int64(r, x, ty: str) -> VReg:
  """trunc(x) as 64 bits: the high word floor(t / 2^32) and the low word t - high * 2^32 (exact), converted apart;
  negative values take the high word as signed."""
  t = r.op("v_cvt_f64_f32", x, size=2) if ty == "f32" else x
  t = r.op("v_trunc_f64", t, size=2)
  scaled = r.op("v_ldexp_f64", t, -32, size=2)
  high = r.op("v_floor_f64", scaled, size=2)
  back = r.op("v_ldexp_f64", high, 32, size=2)
  from compiler.rdna.asm import Neg
  low = r.op("v_add_f64", t, Neg(back), size=2)
  low32 = r.op("v_cvt_u32_f64", low)
  negative = r.op("v_cmp_gt_f64", 0, t, file="s")
  high_signed = r.op("v_cvt_i32_f64", high)
  high_unsigned = r.op("v_cvt_u32_f64", high)
  high32 = r.op("v_cndmask_b32", high_unsigned, high_signed, negative)
  return pair_of(r, low32, high32)


def float_to_float(r, x, s: DType, d: DType):
  if s == d:
    return x
  if s == dtypes.float16:
    return float_to_float(r, r.op("v_cvt_f32_f16", x), dtypes.float32, d)
  if s == dtypes.float64:
    return float_to_float(r, r.op("v_cvt_f32_f64", x), dtypes.float32, d)
  # s holds a float32 value (float32, or bfloat16 held as float32)
  if d == dtypes.float32:
    return x
  if d == dtypes.bfloat16:
    return round_bf16(r, x)
  if d == dtypes.float16:
    return r.op("v_cvt_f16_f32", x)
  return r.op("v_cvt_f64_f32", x, size=2)


# ---- bitcasts -----------------------------------------------------------------------------------------------------

def bitcast(r, x, s: DType, d: DType, narrow: bool = False):
  """The bits of x (dtype s) read as d (same size)."""
  if s.itemsize != d.itemsize:
    raise ValueError(f"RDNA renderer: bitcast {s.name} -> {d.name} changes the size ({s.itemsize} != {d.itemsize})")
  if s.is_bool or d.is_bool:
    return cast(r, x, s, d, narrow)
  if is_const(x):
    return const_bitcast(r, x, s, d, narrow)
  if s.itemsize == 8:
    return x if not narrow else cast(r, x, s, dtypes.int64, narrow)
  if s.itemsize == 4:
    return r.op("v_mov_b32", x) if d.is_float and x.file == "s" else x
  if s.itemsize == 1:
    return normalize(r, x, d, scalar=x.file == "s")
  bits16 = r.op("v_lshrrev_b32", 16, x) if s == dtypes.bfloat16 else x  # 16 bits in the low half
  if d == dtypes.bfloat16:
    return r.op("v_lshlrev_b32", 16, bits16)
  if d == dtypes.float16:
    return bits16 if bits16.file == "v" else r.op("v_mov_b32", bits16)
  return normalize(r, bits16, d, scalar=False) if s == dtypes.float16 or d.is_unsigned != s.is_unsigned else bits16


def const_bitcast(r, x, s: DType, d: DType, narrow: bool):
  from compiler.rdna_alu import const
  if s == dtypes.bfloat16:
    raw = np.array(f32_bits(x) >> 16, np.uint16)
  elif s.is_int and s.itemsize == 8 and not s.is_unsigned and not narrow and x >= 1 << 63:
    raw = np.array(x - (1 << 64), s.np)
  else:
    raw = np.array(x, s.np)
  if d == dtypes.bfloat16:
    value = float(np.array(int(raw.view(np.uint16)) << 16, np.uint32).view(np.float32))
  else:
    value = raw.view(d.np).item()
  return const(r, value, d)
