"""Payne-Hanek argument reduction for the RDNA float64 sine (compiler/rdna_math.py sin64), for |x| >= 2^19 where
the three-part pi/2 of the Cody-Waite reduction no longer gives 1 ulp.

The method is compiler/ptx_math.py's: |x| = M * 2^(e - 1075) with M the 53-bit integer mantissa; the 192 bits of 2/pi
that matter for x's exponent (bits (e - 1077) + 64 .. +256 of ptx_math.TWO_OVER_PI_WORDS; lower bits only add
multiples of 4 to |x| * 2/pi) are multiplied by M modulo 2^192; the top 2 bits of the product are the quadrant, the
next 128 a fraction of a quadrant, rounded to the nearest quadrant (a signed fraction) and scaled by pi/2.

RDNA has no constant memory addressed per lane, so the table is copied into LDS (20 words, ds_store_b64 from
literals) by the waves that reach this code, each lane then reads its window with ds_load_b64; 64 x 64-bit products
are built from v_mad_u64_u32 (32 x 32 + 64 bits). Only lanes with a finite |x| >= 2^19 run it (EXEC narrowed, and
the whole block skipped when no lane of the wave needs it).
"""
from __future__ import annotations

from compiler import ptx_math
from compiler.rdna.asm import Abs
from compiler.rdna_code import Half, VReg, s32

TABLE_BYTES = 8 * ptx_math.TABLE_WORDS
NORMAL = 0x108  # v_cmp_class bits: -normal, +normal


def payne_hanek(r, x, red: VReg, q: VReg) -> None:
  """Overwrites red (the reduced argument) and q (the quadrant) in the lanes where |x| is finite and >= 2^19."""
  from compiler.rdna_isel import _Gate
  from compiler.rdna_math import k64
  normal = r.op("v_cmp_class_f64", x, NORMAL, file="s")
  big = r.op("v_cmp_le_f64", k64(r, ptx_math.PAYNE_HANEK_FROM), Abs(x), file="s")
  lanes = r.op("s_and_b32", normal, big, file="s")
  with _Gate(r, lanes, branch=True):
    table = table_in_lds(r)
    new_red, new_q = reduce(r, x, table)
    r.emit("v_mov_b32", Half(red, 0), Half(new_red, 0))
    r.emit("v_mov_b32", Half(red, 1), Half(new_red, 1))
    r.emit("v_mov_b32", q, new_q)


def table_in_lds(r) -> int:
  """Copies the 2/pi table into this workgroup's LDS (every wave writes the same bytes); returns its offset."""
  base = r.lds_bytes
  r.lds_bytes += TABLE_BYTES
  zero = r.op("v_mov_b32", 0)
  for k, word in enumerate(ptx_math.TWO_OVER_PI_WORDS):
    data = r.new("v", 2)
    r.emit("v_mov_b32", Half(data, 0), s32(word))
    r.emit("v_mov_b32", Half(data, 1), s32(word >> 32))
    r.emit("ds_store_b64", zero, data, ndefs=0, offset=base + 8 * k or None, mem="dsstore")
  return base


def pair(r, low, high) -> VReg:
  from compiler.rdna_alu import pair_of
  return pair_of(r, low, high)


def mul_hi64(r, a: VReg, b: VReg) -> VReg:
  """The high 64 bits of the 128-bit product of two unsigned 64-bit values."""
  from compiler.rdna_alu import add64
  a0, a1, b0, b1 = Half(a, 0), Half(a, 1), Half(b, 0), Half(b, 1)
  p00 = mad(r, a0, b0, 0)
  t = mad(r, a0, b1, pair(r, Half(p00, 1), 0))  # a0*b1 + (p00 >> 32)
  u = mad(r, a1, b0, pair(r, Half(t, 0), 0))    # the middle column's low part
  w = mad(r, a1, b1, pair(r, Half(t, 1), 0))
  return add64(r, w, pair(r, Half(u, 1), 0))


def mad(r, a, b, c) -> VReg:
  out = r.new("v", 2)
  r.emit("v_mad_u64_u32", out, "null", a, b, c, ndefs=2)
  return out


def shifted_word(r, table: int, addr: VReg, shift, zero_shift, k: int) -> VReg:
  """64 bits of the table starting `shift` bits into word `word + k` (addr = word * 8)."""
  hi64, lo64 = r.new("v", 2), r.new("v", 2)
  r.emit("ds_load_b64", hi64, addr, offset=table + 8 * k or None, mem="dsload")
  r.emit("ds_load_b64", lo64, addr, offset=table + 8 * k + 8, mem="dsload")
  a = r.op("v_lshlrev_b64", shift, hi64, size=2)
  inverse = r.op("v_sub_nc_u32", 64, shift)
  b = r.op("v_lshrrev_b64", inverse, lo64, size=2)  # the hardware takes the amount mod 64: shift 0 is kept apart
  parts = [r.op("v_or_b32", Half(a, i), Half(b, i)) for i in range(2)]
  return pair(r, r.op("v_cndmask_b32", parts[0], Half(hi64, 0), zero_shift),
              r.op("v_cndmask_b32", parts[1], Half(hi64, 1), zero_shift))


def to_f64(r, x: VReg, signed: bool) -> VReg:
  """A 64-bit integer pair as float64 (one rounding: hi * 2^32 is exact)."""
  high = r.op(f"v_cvt_f64_{'i32' if signed else 'u32'}", Half(x, 1), size=2)
  low = r.op("v_cvt_f64_u32", Half(x, 0), size=2)
  return r.op("v_add_f64", r.op("v_ldexp_f64", high, 32, size=2), low, size=2)


def reduce(r, x, table: int) -> tuple[VReg, VReg]:
  """(reduced argument, quadrant) of a finite x with |x| >= 2^19."""
  from compiler.rdna_alu import add64, mul64
  from compiler.rdna_math import k64
  xhi, xlo = Half(x, 1), Half(x, 0)
  e = r.op("v_bfe_u32", xhi, 20, 11)
  m = pair(r, xlo, r.op("v_or_b32", 0x100000, r.op("v_and_b32", 0xFFFFF, xhi)))
  start = r.op("v_add_nc_u32", -1013, e)
  word = r.op("v_lshrrev_b32", 6, start)
  shift = r.op("v_and_b32", 63, start)
  zero_shift = r.op("v_cmp_eq_u32", 0, shift, file="s")
  addr = r.op("v_lshlrev_b32", 3, word)
  w0, w1, w2 = (shifted_word(r, table, addr, shift, zero_shift, k) for k in range(3))
  # P = M * (w0 w1 w2) mod 2^192: quadrant = bits 190..191, fraction = bits 62..189
  lo0 = mul64(r, m, w0)
  lo1, hi1 = mul64(r, m, w1), mul_hi64(r, m, w1)
  lo2, hi2 = mul64(r, m, w2), mul_hi64(r, m, w2)
  limb1 = add64(r, hi2, lo1)
  wrapped = r.op("v_cmp_gt_u64", hi2, limb1, file="s")
  carry = r.op("v_cndmask_b32", 0, 1, wrapped)
  limb2 = add64(r, add64(r, hi1, lo0), pair(r, carry, 0))
  fhi = _funnel(r, limb2, limb1)
  flo = _funnel(r, limb1, lo2)
  q_top = r.op("v_lshrrev_b32", 30, Half(limb2, 1))
  q_round = r.op("v_lshrrev_b32", 31, Half(fhi, 1))
  quadrant = r.op("v_add_nc_u32", q_top, q_round)
  frac = r.op("v_fma_f64", to_f64(r, flo, False), k64(r, 2.0 ** -64), to_f64(r, fhi, True), size=2)
  scaled = r.op("v_ldexp_f64", frac, -64, size=2)
  red_pos = r.op("v_mul_f64", scaled, k64(r, ptx_math.PIO2_1), size=2)
  neg = r.op("v_cmp_gt_f64", 0, x, file="s")  # sin(-x) = -sin(x): quadrant -q, remainder -r
  from compiler.rdna_alu import select64
  red_neg = pair(r, Half(red_pos, 0), r.op("v_xor_b32", s32(0x80000000), Half(red_pos, 1)))
  red = select64(r, neg, red_pos, red_neg)
  q = r.op("v_cndmask_b32", quadrant, r.op("v_sub_nc_u32", 0, quadrant), neg)
  return red, q


def _funnel(r, high: VReg, low: VReg) -> VReg:
  """(high << 2) | (low >> 62) of two 64-bit values."""
  a = r.op("v_lshlrev_b64", 2, high, size=2)
  b = r.op("v_lshrrev_b32", 30, Half(low, 1))
  return pair(r, r.op("v_or_b32", Half(a, 0), b), Half(a, 1))
