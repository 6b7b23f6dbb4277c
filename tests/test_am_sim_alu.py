"""Instruction-level checks of the wave emulator (am/sim): one kernel per vector ALU instruction (inputs loaded from
memory, the result stored back), a scalar ALU kernel, LDS forms and sub-dword memory accesses, each against a numpy
reference written here from the ISA description, on fresh random data, for gfx1100 and gfx1201."""
from __future__ import annotations

import numpy as np
import pytest

from am.sim import FlatMemory, dispatch
from compiler.rdna import assemble, build_kernel, load_code_object, pointer_arg, write_code_object

TARGETS = ("gfx1100", "gfx1201")
WAITS = {"gfx1100": ("s_waitcnt lgkmcnt(0)", "s_waitcnt vmcnt(0)", "s_waitcnt lgkmcnt(0)"),
         "gfx1201": ("s_wait_kmcnt 0", "s_wait_loadcnt 0", "s_wait_dscnt 0")}
N = 128
U32 = np.uint32


def run_vop(target: str, line: str, inputs: list, out_dwords: int = 1) -> np.ndarray:
  """Load inputs (uint32 arrays of N) into v2, v3, v4 (64-bit inputs as pairs v[2:3], v[4:5]), run `line` writing
  v5 (v[5:6] for two dwords), return the stored dwords."""
  kwait, vwait, _ = WAITS[target]
  loads = "\n".join(f"global_load_b32 v{2 + i}, v1, s[{4 + 2 * i}:{5 + 2 * i}]" for i in range(len(inputs)))
  store = "global_store_b32 v8, v5, s[10:11]" if out_dwords == 1 else "global_store_b64 v8, v[5:6], s[10:11]"
  src = f"""
    s_load_b128 s[4:7], s[0:1], 0x0
    s_load_b128 s[8:11], s[0:1], 0x10
    {kwait}
    s_lshl_b32 s20, s2, 6
    v_add_nc_u32 v1, s20, v0
    v_lshlrev_b32 v8, {2 + (out_dwords == 2)}, v1
    v_lshlrev_b32 v1, 2, v1
    {loads}
    {vwait}
    {line}
    {store}
    s_endpgm
  """
  k = build_kernel("k", assemble(src, target), target, args=[pointer_arg(f"p{i}", 8 * i) for i in range(4)])
  co = load_code_object(write_code_object([k], target))
  mem = FlatMemory()
  ptrs = [mem.alloc_array(np.asarray(x, dtype=U32)) for x in inputs]
  ptrs += [mem.alloc(4)] * (3 - len(inputs))
  out = mem.alloc(4 * out_dwords * N)
  dispatch(co, "k", (N // 64, 1, 1), (64, 1, 1), ptrs + [out], mem)
  got = mem.read_array(out, U32, out_dwords * N)
  return got if out_dwords == 1 else got.view(np.uint64)


def bits(x) -> np.ndarray:
  return np.ascontiguousarray(x).view(U32)


def rand_u32(seed):
  return np.random.default_rng(seed).integers(0, 1 << 32, N, dtype=np.uint64).astype(U32)


def rand_f32(seed, scale=10.0):
  return (np.random.default_rng(seed).standard_normal(N) * scale).astype(np.float32)


def f(x):
  return np.asarray(x).view(np.float32) if np.asarray(x).dtype == U32 else x


def i(x):
  return np.asarray(x).view(np.int32)


def ctz(x):
  return np.array([(int(v) & -int(v)).bit_length() - 1 if v else -1 for v in x]).astype(np.int32).view(U32)


def clz(x):
  return np.array([32 - int(v).bit_length() if v else -1 for v in x]).astype(np.int32).view(U32)


def brev(x):
  return np.array([int(f"{int(v):032b}"[::-1], 2) for v in x], dtype=U32)


def pk_rtz(a, b):
  def one(x):
    h = x.astype(np.float16)
    over = np.isfinite(x) & (np.abs(h.astype(np.float32)) > np.abs(x))
    return np.where(over, h.view(np.uint16) - 1, h.view(np.uint16)).astype(U32)
  return one(a) | (one(b) << 16)


def halves(x):
  h = np.ascontiguousarray(x).view(np.float16).reshape(-1, 2)
  return h[:, 0], h[:, 1]


def pack(lo, hi):
  return np.stack([np.asarray(lo, np.float16), np.asarray(hi, np.float16)], axis=1).reshape(-1).view(U32)


def pk_fma(a, b, c):
  (a0, a1), (b0, b1), (c0, c1) = halves(a), halves(b), halves(c)
  return pack(a0.astype(np.float64) * b0 + c0, a1.astype(np.float64) * b1 + c1)


def rand_pk(seed):
  return np.random.default_rng(seed).uniform(-4, 4, 2 * N).astype(np.float16).view(U32)


# instruction -> (input makers, reference on the uint32 inputs); floats are compared bit for bit
A, B, C = rand_u32(1), rand_u32(2), rand_u32(3)
X, Y, Z = rand_f32(4), rand_f32(5), rand_f32(6)
SH = (rand_u32(7) % 40).astype(U32)
P, Q, R = rand_pk(20), rand_pk(21), rand_pk(22)
VOPS = {
  "v_pk_fma_f16 v5, v2, v3, v4": ([P, Q, R], pk_fma),
  "v_pk_add_f16 v5, v2, v3 op_sel:[1,0] op_sel_hi:[0,1]": ([P, Q], lambda a, b: pack(halves(a)[1] + halves(b)[0],
                                                                                     halves(a)[0] + halves(b)[1])),
  "v_pk_mul_f16 v5, v2, v3 neg_lo:[1,0] neg_hi:[0,1]": ([P, Q], lambda a, b: pack(-halves(a)[0] * halves(b)[0],
                                                                                  halves(a)[1] * -halves(b)[1])),
  "v_pk_add_u16 v5, v2, v3": ([A, B], lambda a, b: ((a & 0xFFFF) + (b & 0xFFFF)) & 0xFFFF
                              | (((a >> 16) + (b >> 16)) & 0xFFFF) << 16),
  "v_sub_f32 v5, v2, v3": ([X, Y], lambda a, b: bits(f(a) - f(b))),
  "v_subrev_f32 v5, v2, v3": ([X, Y], lambda a, b: bits(f(b) - f(a))),
  "v_mul_f32 v5, v2, v3": ([X, Y], lambda a, b: bits(f(a) * f(b))),
  "v_max_f32 v5, v2, v3": ([X, Y], lambda a, b: bits(np.maximum(f(a), f(b)))),
  "v_min_f32 v5, v2, v3": ([X, Y], lambda a, b: bits(np.minimum(f(a), f(b)))),
  "v_med3_f32 v5, v2, v3, v4": ([X, Y, Z], lambda a, b, c: bits(np.median(np.stack([f(a), f(b), f(c)]), axis=0)
                                                                  .astype(np.float32))),
  "v_max3_f32 v5, v2, v3, v4": ([X, Y, Z], lambda a, b, c: bits(np.max(np.stack([f(a), f(b), f(c)]), axis=0))),
  "v_add_f32_e64 v5, -v2, |v3|": ([X, Y], lambda a, b: bits(-f(a) + np.abs(f(b)))),
  "v_mul_f32_e64 v5, v2, v3 clamp": ([X / 8, Y / 8], lambda a, b: bits(np.clip(f(a) * f(b), 0, 1))),
  "v_mul_f32_e64 v5, v2, v3 mul:2": ([X, Y], lambda a, b: bits(f(a) * f(b) * np.float32(2))),
  "v_ldexp_f32 v5, v2, v3": ([X, (SH.astype(np.int32) - 20).view(U32)],
                             lambda a, b: bits(np.ldexp(f(a), i(b)).astype(np.float32))),
  "v_fract_f32 v5, v2": ([X], lambda a: bits(f(a) - np.floor(f(a)))),
  "v_ceil_f32 v5, v2": ([X], lambda a: bits(np.ceil(f(a)))),
  "v_trunc_f32 v5, v2": ([X], lambda a: bits(np.trunc(f(a)))),
  "v_frexp_mant_f32 v5, v2": ([X], lambda a: bits(np.frexp(f(a))[0])),
  "v_frexp_exp_i32_f32 v5, v2": ([X], lambda a: np.frexp(f(a))[1].astype(np.int32).view(U32)),
  "v_cvt_pk_rtz_f16_f32 v5, v2, v3": ([X, Y], lambda a, b: pk_rtz(f(a), f(b))),
  "v_cvt_f32_ubyte1 v5, v2": ([A], lambda a: bits(((a >> 8) & 0xFF).astype(np.float32))),
  "v_and_b32 v5, v2, v3": ([A, B], lambda a, b: a & b),
  "v_or_b32 v5, v2, v3": ([A, B], lambda a, b: a | b),
  "v_xnor_b32 v5, v2, v3": ([A, B], lambda a, b: ~(a ^ b)),
  "v_not_b32 v5, v2": ([A], lambda a: ~a),
  "v_bfi_b32 v5, v2, v3, v4": ([A, B, C], lambda a, b, c: (a & b) | (~a & c)),
  "v_bfm_b32 v5, v2, v3": ([SH, SH[::-1].copy()], lambda a, b: (((1 << (a & 31).astype(np.uint64)) - 1)
                                                                 << (b & 31).astype(np.uint64)).astype(U32)),
  "v_bfe_i32 v5, v2, v3, v4": ([A, SH, SH[::-1].copy()], lambda a, b, c: bfe_i32(a, b & 31, c & 31)),
  "v_alignbit_b32 v5, v2, v3, v4": ([A, B, SH], lambda a, b, c: (((a.astype(np.uint64) << 32) | b)
                                                                  >> (c & 31).astype(np.uint64)).astype(U32)),
  "v_add3_u32 v5, v2, v3, v4": ([A, B, C], lambda a, b, c: a + b + c),
  "v_lshl_or_b32 v5, v2, v3, v4": ([A, SH, C], lambda a, b, c: (a << (b & 31)) | c),
  "v_and_or_b32 v5, v2, v3, v4": ([A, B, C], lambda a, b, c: (a & b) | c),
  "v_or3_b32 v5, v2, v3, v4": ([A, B, C], lambda a, b, c: a | b | c),
  "v_xad_u32 v5, v2, v3, v4": ([A, B, C], lambda a, b, c: (a ^ b) + c),
  "v_bcnt_u32_b32 v5, v2, v3": ([A, B], lambda a, b: np.array([bin(int(v)).count("1") for v in a], U32) + b),
  "v_bfrev_b32 v5, v2": ([A], brev),
  "v_ctz_i32_b32 v5, v2": ([A & (A >> 5) & (A >> 11)], ctz),
  "v_clz_i32_u32 v5, v2": ([A >> (SH & 31)], clz),
  "v_mul_u32_u24 v5, v2, v3": ([A, B], lambda a, b: ((a & 0xFFFFFF).astype(np.uint64) * (b & 0xFFFFFF)).astype(U32)),
  "v_mul_hi_u32_u24 v5, v2, v3": ([A, B], lambda a, b: (((a & 0xFFFFFF).astype(np.uint64) * (b & 0xFFFFFF)) >> 32)
                                  .astype(U32)),
  "v_mul_i32_i24 v5, v2, v3": ([A, B], lambda a, b: (sext24(a) * sext24(b)).astype(np.int32).view(U32)),
  "v_mad_u32_u24 v5, v2, v3, v4": ([A, B, C], lambda a, b, c: ((a & 0xFFFFFF).astype(np.uint64) * (b & 0xFFFFFF)
                                                                + c).astype(U32)),
  "v_med3_i32 v5, v2, v3, v4": ([A, B, C], lambda a, b, c: np.median(np.stack([i(a), i(b), i(c)]), axis=0)
                                .astype(np.int32).view(U32)),
  "v_min3_u32 v5, v2, v3, v4": ([A, B, C], lambda a, b, c: np.minimum(np.minimum(a, b), c)),
  "v_add_nc_u16 v5, v2, v3": ([A & 0xFFFF, B & 0xFFFF], lambda a, b: (a + b) & 0xFFFF),
  "v_mul_lo_u16 v5, v2, v3": ([A & 0xFFFF, B & 0xFFFF], lambda a, b: (a * b) & 0xFFFF),
  "v_subrev_nc_u32 v5, v2, v3": ([A, B], lambda a, b: b - a),
  "v_mbcnt_lo_u32_b32 v5, v2, v3": ([A, B], lambda a, b: np.array([bin(int(v) & ((1 << (k % 32)) - 1)).count("1")
                                                                    for k, v in enumerate(a)], U32) + b),
}


def bfe_i32(a, off, width):
  out = []
  for v, o, w in zip(a.tolist(), off.tolist(), width.tolist()):
    field = (v >> o) & ((1 << w) - 1)
    out.append(field - (1 << w) if w and field >> (w - 1) else field)
  return np.array(out, dtype=np.int64).astype(np.int32).view(U32)


def sext24(x):
  x = (x & 0xFFFFFF).astype(np.int64)
  return np.where(x >= 1 << 23, x - (1 << 24), x)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("line", sorted(VOPS))
def test_vector_alu(target, line):
  inputs, ref = VOPS[line]
  inputs = [bits(x) if np.asarray(x).dtype != U32 else x for x in inputs]
  got = run_vop(target, line, inputs)
  np.testing.assert_array_equal(got, np.asarray(ref(*inputs)).astype(U32), err_msg=line)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("line,ref", [
  ("v_lshlrev_b64 v[5:6], v2, v[3:4]", lambda s, x: x << (s & 63)),
  ("v_lshrrev_b64 v[5:6], v2, v[3:4]", lambda s, x: x >> (s & 63)),
  ("v_ashrrev_i64 v[5:6], v2, v[3:4]", lambda s, x: (x.view(np.int64) >> (s & 63).astype(np.int64)).view(np.uint64)),
])
def test_64bit_shifts(target, line, ref):
  shifts = (rand_u32(8) % 70).astype(U32)
  lo, hi = rand_u32(9), rand_u32(10)
  got = run_vop(target, line, [shifts, lo, hi], out_dwords=2)
  x = lo.astype(np.uint64) | (hi.astype(np.uint64) << np.uint64(32))
  np.testing.assert_array_equal(got, ref(shifts.astype(np.uint64), x))


@pytest.mark.parametrize("target", TARGETS)
def test_compares_write_lane_masks(target):
  """VOPC into VCC, VOP3 compares into SGPRs, v_cmp_class, and v_cmpx narrowing EXEC; NaNs make the ordered / unordered
  forms differ. Each mask is turned back into a per-lane value with v_cndmask."""
  lines = ["v_cmp_lt_f32 vcc_lo, v2, v3", "v_cmp_neq_f32 vcc_lo, v2, v3", "v_cmp_u_f32 vcc_lo, v2, v3",
           "v_cmp_ge_i32 vcc_lo, v2, v3", "v_cmp_gt_u32 vcc_lo, v2, v3", "v_cmp_class_f32 vcc_lo, v2, v4"]
  x, y = rand_f32(11), rand_f32(12)
  x[::7] = np.nan
  y[::5] = x[::5]
  cls = (rand_u32(13) & 0x3FF).astype(U32)
  a, b = bits(x), bits(y)
  refs = [x < y, ~(x == y), np.isnan(x) | np.isnan(y), i(a) >= i(b), a > b, classify(x, cls)]
  for line, want in zip(lines, refs):
    got = run_vop(target, f"{line}\nv_cndmask_b32 v5, 0, 1, vcc_lo", [a, b, cls])
    np.testing.assert_array_equal(got, want.astype(U32), err_msg=line)
  got = run_vop(target, "v_mov_b32 v5, 7\ns_mov_b32 s30, exec_lo\nv_cmpx_lt_f32 v2, v3\nv_mov_b32 v5, 9\n"
                 "s_mov_b32 exec_lo, s30", [a, b])
  np.testing.assert_array_equal(got, np.where(x < y, 9, 7).astype(U32))


def classify(x, mask):
  tiny = np.finfo(np.float32).tiny
  quiet = (x.view(U32) & 0x400000) != 0
  classes = [np.isnan(x) & ~quiet, np.isnan(x) & quiet, x == -np.inf, (x < 0) & (np.abs(x) >= tiny) & np.isfinite(x),
             (x < 0) & (np.abs(x) < tiny), (x == 0) & np.signbit(x), (x == 0) & ~np.signbit(x),
             (x > 0) & (x < tiny), (x > 0) & (x >= tiny) & np.isfinite(x), x == np.inf]
  return np.any([c & ((mask >> k) & 1).astype(bool) for k, c in enumerate(classes)], axis=0)


# ---- scalar ALU ----------------------------------------------------------------------------------------------------

SOPS = [   # (instructions writing s30 from s10, s11; reference on python ints a, b)
  ("s_add_u32 s30, s10, s11\ns_cselect_b32 s31, 1, 0", lambda a, b: ((a + b) & M, int(a + b > M))),
  ("s_sub_u32 s30, s10, s11\ns_cselect_b32 s31, 1, 0", lambda a, b: ((a - b) & M, int(b > a))),
  ("s_add_i32 s30, s10, s11\ns_cselect_b32 s31, 1, 0", lambda a, b: ((a + b) & M, int(not -2**31 <= sx(a) + sx(b)
                                                                                  < 2**31))),
  ("s_add_u32 s30, s10, s11\ns_addc_u32 s31, s11, 5", lambda a, b: ((a + b) & M, (b + 5 + (a + b > M)) & M)),
  ("s_mul_i32 s30, s10, s11\ns_mul_hi_u32 s31, s10, s11", lambda a, b: ((a * b) & M, (a * b) >> 32)),
  ("s_lshl_b32 s30, s10, s11\ns_lshr_b32 s31, s10, s11", lambda a, b: ((a << (b & 31)) & M, a >> (b & 31))),
  ("s_ashr_i32 s30, s10, s11\ns_bfe_u32 s31, s10, 0x80005", lambda a, b: ((sx(a) >> (b & 31)) & M, (a >> 5) & 0xFF)),
  ("s_bfe_i32 s30, s10, 0x50003\ns_min_i32 s31, s10, s11", lambda a, b: (sfield(a, 3, 5) & M, min(sx(a), sx(b)) & M)),
  ("s_max_u32 s30, s10, s11\ns_and_not1_b32 s31, s10, s11", lambda a, b: (max(a, b), a & ~b & M)),
  ("s_xnor_b32 s30, s10, s11\ns_not_b32 s31, s10", lambda a, b: (~(a ^ b) & M, ~a & M)),
  ("s_brev_b32 s30, s10\ns_bcnt1_i32_b32 s31, s10", lambda a, b: (int(f"{a:032b}"[::-1], 2), bin(a).count("1"))),
  ("s_ctz_i32_b32 s30, s10\ns_clz_i32_u32 s31, s11", lambda a, b: (((a & -a).bit_length() - 1) & M,
                                                                     (32 - b.bit_length()) & M if b else M)),
  ("s_sext_i32_i8 s30, s10\ns_abs_i32 s31, s11", lambda a, b: (sx8(a) & M, abs(sx(b)) & M)),
  ("s_lshl2_add_u32 s30, s10, s11\ns_pack_ll_b32_b16 s31, s10, s11", lambda a, b: (((a << 2) + b) & M,
                                                                                   (a & 0xFFFF) | (b & 0xFFFF) << 16)),
  ("s_cmp_lt_i32 s10, s11\ns_cselect_b32 s30, s10, s11\ns_bitcmp1_b32 s10, 3\ns_cselect_b32 s31, 1, 0",
   lambda a, b: (a if sx(a) < sx(b) else b, (a >> 3) & 1)),
  ("s_movk_i32 s30, 0x8001\ns_mov_b32 s31, s10\ns_addk_i32 s31, 0x7fff", lambda a, b: (0xFFFF8001, (a + 0x7FFF) & M)),
  ("s_lshl_b64 s[30:31], s[10:11], 7", lambda a, b: (((a | b << 32) << 7) & M, ((a | b << 32) << 7) >> 32 & M)),
  ("s_absdiff_i32 s30, s10, s11\ns_bfm_b32 s31, 5, 3", lambda a, b: (abs(sx(a) - sx(b)) & M, 0x1F << 3)),
]
M = 0xFFFFFFFF


def sx(v):
  return v - (1 << 32) if v >> 31 else v


def sx8(v):
  return (v & 0xFF) - 256 if v & 0x80 else v & 0xFF


def sfield(v, off, width):
  field = (v >> off) & ((1 << width) - 1)
  return field - (1 << width) if field >> (width - 1) else field


@pytest.mark.parametrize("target", TARGETS)
def test_scalar_alu(target):
  """Each workgroup reads its own pair (s10, s11) and runs every SOPS sequence; 16 workgroups of one wave run in one
  batch, so the scalar ops are exercised vectorised across waves."""
  kwait = WAITS[target][0]
  body = []
  for k, (seq, _) in enumerate(SOPS):
    body.append(f"{seq}\nv_mov_b32 v{2 + 2 * k}, s30\nv_mov_b32 v{3 + 2 * k}, s31")
  stores = "\n".join(f"global_store_b64 v1, v[{2 + 2 * k}:{3 + 2 * k}], s[6:7] offset:{8 * k}"
                     for k in range(len(SOPS)))
  src = f"""
    s_load_b128 s[4:7], s[0:1], 0x0
    {kwait}
    s_lshl_b32 s12, s2, 3
    s_add_u32 s4, s4, s12
    s_addc_u32 s5, s5, 0
    s_load_b64 s[10:11], s[4:5], 0x0
    {kwait}
    {chr(10).join(body)}
    s_mul_i32 s13, s2, {8 * len(SOPS)}
    v_mov_b32 v1, s13
    {stores}
    s_endpgm
  """
  k = build_kernel("k", assemble(src, target), target, args=[pointer_arg("in", 0), pointer_arg("out", 8)])
  co = load_code_object(write_code_object([k], target))
  groups = 16
  pairs = np.random.default_rng(14).integers(0, 1 << 32, (groups, 2), dtype=np.uint64).astype(U32)
  pairs[0] = [0xFFFFFFFF, 1]
  pairs[1] = [0x7FFFFFFF, 0x7FFFFFFF]
  mem = FlatMemory()
  out = mem.alloc(8 * len(SOPS) * groups)
  dispatch(co, "k", (groups, 1, 1), (32, 1, 1), [mem.alloc_array(pairs), out], mem)
  got = mem.read_array(out, U32, 2 * len(SOPS) * groups).reshape(groups, len(SOPS), 2)
  for g, (a, b) in enumerate(pairs.tolist()):
    for k, (seq, ref) in enumerate(SOPS):
      assert tuple(got[g, k]) == ref(a, b), f"{seq!r} with {a:#x}, {b:#x}"


# ---- LDS and sub-dword memory ----------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_lds_forms(target):
  """ds_store_2addr / ds_load_2addr (with stride64), 64-bit and 16-bit d16 loads, ds_bpermute, ds_max_rtn_u32."""
  kwait, vwait, dwait = WAITS[target]
  src = f"""
    s_load_b128 s[4:7], s[0:1], 0x0
    {kwait}
    v_lshlrev_b32 v1, 2, v0
    global_load_b32 v2, v1, s[4:5]
    v_xor_b32 v9, 1, v0
    v_lshlrev_b32 v9, 2, v9
    v_lshlrev_b32 v10, 3, v0
    {vwait}
    v_not_b32 v3, v2
    ds_store_2addr_stride64_b32 v1, v2, v3 offset1:1
    ds_store_b32 v1, v0 offset:2048
    {dwait}
    ds_load_2addr_b32 v[4:5], v10 offset1:1
    ds_load_b64 v[6:7], v1 offset:256
    ds_load_u16_d16_hi v4, v1 offset:2048
    ds_bpermute_b32 v8, v9, v2
    ds_max_rtn_u32 v11, v10, v2 offset:1024
    {dwait}
    v_lshlrev_b32 v12, 5, v0
    global_store_b128 v12, v[4:7], s[6:7]
    global_store_b64 v12, v[8:9], s[6:7] offset:16
    global_store_b64 v12, v[10:11], s[6:7] offset:24
    s_endpgm
  """
  k = build_kernel("k", assemble(src, target), target, args=[pointer_arg("in", 0), pointer_arg("out", 8)],
                   group_segment_fixed_size=4096)
  co = load_code_object(write_code_object([k], target))
  x = np.random.default_rng(15).integers(0, 1 << 32, 64, dtype=np.uint64).astype(U32)
  mem = FlatMemory()
  out = mem.alloc(32 * 64)
  dispatch(co, "k", 1, 64, [mem.alloc_array(x), out], mem)
  got = mem.read_array(out, U32, 8 * 64).reshape(64, 8)
  lds = np.zeros(1024, dtype=U32)
  lds[:64], lds[64:128], lds[512:576] = x, ~x, np.arange(64)
  t = np.arange(64)
  np.testing.assert_array_equal(got[:, 0], (lds[2 * t] & 0xFFFF) | (lds[512 + t] << 16))   # 2addr, then d16_hi
  np.testing.assert_array_equal(got[:, 1], lds[2 * t + 1])
  np.testing.assert_array_equal(got[:, 2], lds[64 + t])
  np.testing.assert_array_equal(got[:, 3], lds[65 + t])
  np.testing.assert_array_equal(got[:, 4], x[t ^ 1])
  before = lds[256 + 2 * t]                                     # ds_max_rtn at 1024 + 8 t: element 256 + 2 t
  np.testing.assert_array_equal(got[:, 7], before)


@pytest.mark.parametrize("target", TARGETS)
def test_subdword_global_access(target):
  """global_load_i8 / u16 / d16_hi_b16 and global_store_b8 / b16 / d16_hi_b16."""
  kwait, vwait, _ = WAITS[target]
  src = f"""
    s_load_b128 s[4:7], s[0:1], 0x0
    {kwait}
    v_lshlrev_b32 v1, 2, v0
    v_lshlrev_b32 v6, 3, v0
    global_load_i8 v2, v0, s[4:5]
    global_load_u16 v3, v1, s[4:5] offset:2
    v_mov_b32 v4, 0x1234
    global_load_d16_hi_b16 v4, v1, s[4:5]
    {vwait}
    global_store_b32 v6, v2, s[6:7]
    global_store_b32 v6, v4, s[6:7] offset:4
    global_store_b8 v0, v3, s[6:7] offset:512
    global_store_d16_hi_b16 v1, v4, s[6:7] offset:768
    s_endpgm
  """
  k = build_kernel("k", assemble(src, target), target, args=[pointer_arg("in", 0), pointer_arg("out", 8)])
  co = load_code_object(write_code_object([k], target))
  x = np.random.default_rng(16).integers(0, 1 << 32, 64, dtype=np.uint64).astype(U32)
  mem = FlatMemory()
  out = mem.alloc(1024)
  dispatch(co, "k", 1, 64, [mem.alloc_array(x), out], mem)
  raw = mem.read_array(out, np.uint8, 1024)
  words = raw[:512].view(U32).reshape(64, 2)
  xb = x.view(np.uint8)
  np.testing.assert_array_equal(words[:, 0], xb[:64].astype(np.int8).astype(np.int32).view(U32))
  np.testing.assert_array_equal(words[:, 1], (x << 16) | 0x1234)
  np.testing.assert_array_equal(raw[512:576], ((x >> 16) & 0xFF).astype(np.uint8))
  np.testing.assert_array_equal(raw[768:1024].view(np.uint16)[::2], (x & 0xFFFF).astype(np.uint16))
