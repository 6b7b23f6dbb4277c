"""The wave emulator (am/sim) against numpy: kernels written with compiler.rdna's assembler, wrapped in code objects
(build_kernel / write_code_object / load_code_object), dispatched over grids of several workgroups and waves on
fresh random data, for gfx1100 (RDNA3) and gfx1201 (RDNA4) wherever both have the instruction. Also the error paths:
faults naming pc and instruction, use-before-wait, unsupported instructions, runaway loops.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from am.sim import FlatMemory, dispatch
from compiler.rdna import (assemble, build_kernel, disassemble, load_code_object, pointer_arg, value_arg,
                           write_code_object)

TARGETS = ("gfx1100", "gfx1201")
# generation-specific spellings, substituted into the kernel sources
SYNTAX = {
  "gfx1100": {"kwait": "s_waitcnt lgkmcnt(0)", "vwait": "s_waitcnt vmcnt(0)", "dwait": "s_waitcnt lgkmcnt(0)",
              "barrier": "s_barrier", "soff": "0"},
  "gfx1201": {"kwait": "s_wait_kmcnt 0", "vwait": "s_wait_loadcnt 0", "dwait": "s_wait_dscnt 0",
              "barrier": "s_barrier_signal -1\ns_barrier_wait 0xffff", "soff": "null"},
}
# v1 = byte offset (4 bytes per work-item) of this work-item in a grid of 64-wide workgroups (s2 = workgroup id x)
INDEX = """
  s_lshl_b32 s20, s2, 6
  v_add_nc_u32 v1, s20, v0
  v_lshlrev_b32 v1, 2, v1
"""


def rng(seed: int = 0):
  return np.random.default_rng(seed)


def kernel(src: str, target: str, nargs: int = 3, name: str = "k", values: tuple = (), **directives):
  """A loaded code object with one kernel: `nargs` pointer arguments at 0, 8, ... then 4-byte values."""
  code = assemble(src.format(**SYNTAX[target]), target)
  args = [pointer_arg(f"p{i}", 8 * i) for i in range(nargs)]
  args += [value_arg(v, 8 * nargs + 4 * i, 4) for i, v in enumerate(values)]
  k = build_kernel(name, code, target, args=args, **directives)
  return load_code_object(write_code_object([k], target))


def pc_of(co, prefix: str) -> int:
  """Byte offset of the first instruction of the code object's kernel whose text starts with prefix."""
  code = co.kernels[0].code
  return next(d.offset for d in disassemble(code, co.isa) if d.text.startswith(prefix))


def ulp32(x) -> np.ndarray:
  x = np.abs(np.asarray(x, dtype=np.float32))
  return np.nextafter(x, np.float32(np.inf)) - x


def exact_f32(value: Fraction) -> np.float32:
  """value rounded to the nearest float32 (ties to even), from the exact rational."""
  guess = np.float32(float(value))
  cands = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
  best = min(cands, key=lambda c: (abs(Fraction(float(c)) - value), int(np.array(c).view(np.uint32)) & 1))
  return np.float32(best)


# ---- elementwise ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_vector_add(target):
  co = kernel("""
    s_load_b128 s[4:7], s[0:1], 0x0
    s_load_b64 s[8:9], s[0:1], 0x10
    {kwait}
  """ + INDEX + """
    global_load_b32 v2, v1, s[4:5]
    global_load_b32 v3, v1, s[6:7]
    {vwait}
    v_add_f32 v2, v2, v3
    global_store_b32 v1, v2, s[8:9]
    s_endpgm
  """, target)
  n = 64 * 12
  a, b = rng(1).standard_normal(n).astype(np.float32), rng(2).standard_normal(n).astype(np.float32)
  mem = FlatMemory()
  out = mem.alloc(4 * n)
  stats = dispatch(co, "k", (12, 1, 1), (64, 1, 1), [mem.alloc_array(a), mem.alloc_array(b), out], mem)
  np.testing.assert_array_equal(mem.read_array(out, np.float32, n), a + b)
  assert stats.waves == 24 and stats.workgroups == 12 and stats.instructions > 0


@pytest.mark.parametrize("target", TARGETS)
def test_saxpy_fma_is_correctly_rounded(target):
  co = kernel("""
    s_load_b128 s[4:7], s[0:1], 0x0
    s_load_b32 s10, s[0:1], 0x10
    {kwait}
  """ + INDEX + """
    global_load_b32 v2, v1, s[4:5]
    global_load_b32 v3, v1, s[6:7]
    {vwait}
    v_fma_f32 v4, s10, v2, v3
    v_fmac_f32 v3, s10, v2
    v_sub_f32 v4, v4, v3
    v_add_f32 v3, v3, v4
    global_store_b32 v1, v3, s[6:7]
    s_endpgm
  """, target, nargs=2, values=("a",))
  n = 64 * 8
  x = rng(3).standard_normal(n).astype(np.float32)
  y = rng(4).standard_normal(n).astype(np.float32)
  a = np.float32(rng(5).uniform(0.5, 3.0))
  x[:4] = [1 + 2.0 ** -23, 1 + 2.0 ** -12, 3.0, 2.0 ** 20]      # products whose rounding is delicate
  y[:4] = [-1.0, -(1 + 2.0 ** -11), 2.0 ** -30, -1.0]
  mem = FlatMemory()
  py = mem.alloc_array(y)
  dispatch(co, "k", (8, 1, 1), (64, 1, 1), [mem.alloc_array(x), py, a], mem)
  want = np.array([exact_f32(Fraction(float(a)) * Fraction(float(xi)) + Fraction(float(yi))) for xi, yi in zip(x, y)])
  np.testing.assert_array_equal(mem.read_array(py, np.float32, n), want)


# ---- LDS, barriers, loops, divergence ----------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_workgroup_reduction_through_lds(target):
  """256 work-items (8 waves) per workgroup sum their values: tree reduction in LDS with barriers; lanes drop out
  with v_cmp + s_and_saveexec each round."""
  co = kernel("""
    s_load_b128 s[4:7], s[0:1], 0x0
    {kwait}
    s_lshl_b32 s20, s2, 8
    v_add_nc_u32 v1, s20, v0
    v_lshlrev_b32 v1, 2, v1
    global_load_b32 v2, v1, s[4:5]
    v_lshlrev_b32 v3, 2, v0
    {vwait}
    ds_store_b32 v3, v2
    {dwait}
    {barrier}
    s_mov_b32 s8, 128
  loop:
    v_cmp_gt_u32 vcc_lo, s8, v0
    s_and_saveexec_b32 s9, vcc_lo
    s_cbranch_execz skip
    s_lshl_b32 s10, s8, 2
    v_add_nc_u32 v4, s10, v3
    ds_load_b32 v5, v3
    ds_load_b32 v6, v4
    {dwait}
    v_add_nc_u32 v5, v5, v6
    ds_store_b32 v3, v5
  skip:
    s_or_b32 exec_lo, exec_lo, s9
    {dwait}
    {barrier}
    s_lshr_b32 s8, s8, 1
    s_cmp_lg_u32 s8, 0
    s_cbranch_scc1 loop
    v_cmp_eq_u32 vcc_lo, 0, v0
    s_and_saveexec_b32 s9, vcc_lo
    s_cbranch_execz done
    v_mov_b32 v7, 0
    ds_load_b32 v8, v7
    s_lshl_b32 s11, s2, 2
    v_mov_b32 v9, s11
    {dwait}
    global_store_b32 v9, v8, s[6:7]
  done:
    s_endpgm
  """, target, nargs=2, group_segment_fixed_size=1024)
  groups = 5
  data = rng(6).integers(0, 1 << 20, 256 * groups, dtype=np.uint32)
  for slice_steps in (None, 7):    # 7: wave groups pause and resume between barriers and splits (wave.GroupRunner)
    mem = FlatMemory()
    out = mem.alloc(4 * groups)
    dispatch(co, "k", (groups, 1, 1), (256, 1, 1), [mem.alloc_array(data), out], mem, slice_steps=slice_steps)
    np.testing.assert_array_equal(mem.read_array(out, np.uint32, groups), data.reshape(groups, 256).sum(axis=1))


@pytest.mark.parametrize("target", TARGETS)
def test_scalar_loop_with_divergent_trip_counts(target):
  """Each workgroup loops (workgroup id + 1) times: waves of one batch disagree at the scalar branch and split."""
  co = kernel("""
    s_load_b64 s[4:5], s[0:1], 0x0
    {kwait}
  """ + INDEX + """
    global_load_b32 v2, v1, s[4:5]
    s_add_u32 s6, s2, 1
    v_mov_b32 v3, 0
    {vwait}
  loop:
    v_add_nc_u32 v3, v3, v2
    v_xor_b32 v3, s6, v3
    s_sub_u32 s6, s6, 1
    s_cmp_lg_u32 s6, 0
    s_cbranch_scc1 loop
    global_store_b32 v1, v3, s[4:5]
    s_endpgm
  """, target, nargs=1)
  groups = 6
  data = rng(7).integers(0, 1 << 31, 64 * groups, dtype=np.uint32)
  want = np.zeros_like(data)
  for wg in range(groups):
    acc = np.zeros(64, dtype=np.uint32)
    for count in range(wg + 1, 0, -1):
      acc = (acc + data[64 * wg:64 * wg + 64]) ^ np.uint32(count)
    want[64 * wg:64 * wg + 64] = acc
  mem = FlatMemory()
  p = mem.alloc_array(data)
  dispatch(co, "k", (groups, 1, 1), (64, 1, 1), [p], mem)
  np.testing.assert_array_equal(mem.read_array(p, np.uint32, data.size), want)


@pytest.mark.parametrize("target", TARGETS)
def test_divergent_if_else_under_exec(target):
  """if (x > 0) y = 2x else y = -x: v_cmp + s_and_saveexec, then s_xor for the else side, EXEC restored."""
  co = kernel("""
    s_load_b128 s[4:7], s[0:1], 0x0
    {kwait}
  """ + INDEX + """
    global_load_b32 v2, v1, s[4:5]
    v_mov_b32 v3, 0x7fc00000
    {vwait}
    v_cmp_lt_f32 vcc_lo, 0, v2
    s_and_saveexec_b32 s8, vcc_lo
    s_cbranch_execz else_side
    v_add_f32 v3, v2, v2
  else_side:
    s_xor_b32 exec_lo, exec_lo, s8
    s_cbranch_execz join
    v_sub_f32 v3, 0, v2
  join:
    s_or_b32 exec_lo, exec_lo, s8
    v_add_f32 v3, 1.0, v3
    global_store_b32 v1, v3, s[6:7]
    s_endpgm
  """, target, nargs=2)
  n = 64 * 4
  x = rng(8).standard_normal(n).astype(np.float32)
  x[64:128] = np.abs(x[64:128])                  # one workgroup with every lane on the if side
  mem = FlatMemory()
  out = mem.alloc(4 * n)
  dispatch(co, "k", (4, 1, 1), (64, 1, 1), [mem.alloc_array(x), out], mem)
  np.testing.assert_array_equal(mem.read_array(out, np.float32, n), np.where(x > 0, 2 * x, -x) + np.float32(1))


def test_partial_wave_and_wave64():
  """wave64 (ENABLE_WAVEFRONT_SIZE32 = 0): 64-bit EXEC and VCC, s_and_saveexec_b64; a 100-item workgroup leaves
  lanes of its second wave inactive."""
  target = "gfx1100"
  co = kernel("""
    s_load_b128 s[4:7], s[0:1], 0x0
    {kwait}
    s_mul_i32 s20, s2, 100
    v_add_nc_u32 v1, s20, v0
    v_lshlrev_b32 v1, 2, v1
    global_load_b32 v2, v1, s[4:5]
    {vwait}
    v_cmp_gt_u32 vcc_lo, 50, v0
    s_and_saveexec_b64 s[8:9], vcc
    v_mul_u32_u24 v2, 3, v2
    s_or_b64 exec, exec, s[8:9]
    v_add_nc_u32 v2, 7, v2
    global_store_b32 v1, v2, s[6:7]
    s_endpgm
  """, target, nargs=2, wavefront_size32=0)
  n = 100 * 3
  x = rng(9).integers(0, 1 << 20, n, dtype=np.uint32)
  mem = FlatMemory()
  out = mem.alloc(4 * n + 64)
  stats = dispatch(co, "k", (3, 1, 1), (100, 1, 1), [mem.alloc_array(x), out], mem)
  local = np.arange(n) % 100
  np.testing.assert_array_equal(mem.read_array(out, np.uint32, n), np.where(local < 50, 3 * x, x) + 7)
  assert stats.waves == 6


# ---- ALU families -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_integer_ops(target):
  co = kernel("""
    s_load_b128 s[4:7], s[0:1], 0x0
    s_load_b64 s[8:9], s[0:1], 0x10
    {kwait}
  """ + INDEX + """
    global_load_b32 v2, v1, s[4:5]
    global_load_b32 v3, v1, s[6:7]
    v_lshlrev_b32 v20, 4, v1
    {vwait}
    v_mul_lo_u32 v4, v2, v3
    v_mul_hi_u32 v5, v2, v3
    v_mul_hi_i32 v6, v2, v3
    v_bfe_u32 v7, v2, 5, 9
    v_lshrrev_b32 v8, v3, v2
    v_ashrrev_i32 v9, v3, v2
    v_max_i32 v10, v2, v3
    v_min_u32 v11, v2, v3
    v_xor_b32 v12, v2, v3
    v_lshl_add_u32 v13, v2, 3, v3
    v_sub_nc_u32 v14, v2, v3
    v_add_co_u32 v15, vcc_lo, v2, v3
    v_add_co_ci_u32 v16, vcc_lo, 0, v3, vcc_lo
    v_mad_u64_u32 v[17:18], null, v2, v3, v[2:3]
    v_cndmask_b32 v19, v2, v3, vcc_lo
    global_store_b128 v20, v[4:7], s[8:9]
    global_store_b128 v20, v[8:11], s[8:9] offset:16
    global_store_b128 v20, v[12:15], s[8:9] offset:32
    global_store_b128 v20, v[16:19], s[8:9] offset:48
    s_endpgm
  """, target)
  n = 64 * 3
  a = rng(10).integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
  b = rng(11).integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
  mem = FlatMemory()
  out = mem.alloc(64 * n + 4096)
  dispatch(co, "k", (3, 1, 1), (64, 1, 1), [mem.alloc_array(a), mem.alloc_array(b), out], mem)
  got = mem.read_array(out, np.uint32, 16 * n)
  rows = got.reshape(-1, 16)[:n]                                     # 64 bytes per work-item
  a64, b64 = a.astype(np.uint64), b.astype(np.uint64)
  ai, bi = a.view(np.int32).astype(np.int64), b.view(np.int32).astype(np.int64)
  carry = (a64 + b64) >> np.uint64(32)
  carry2 = (b64 + carry) >> np.uint64(32)                             # VCC after v_add_co_ci_u32
  mad = a64 * b64 + (a64 | (b64 << np.uint64(32)))
  want = [a * b, (a64 * b64) >> np.uint64(32), ((ai * bi) >> 32).astype(np.uint32), (a >> 5) & 0x1FF,
          a >> (b & 31), (a.view(np.int32) >> (b & 31).astype(np.int32)).view(np.uint32),
          np.maximum(a.view(np.int32), b.view(np.int32)).view(np.uint32), np.minimum(a, b), a ^ b, (a << 3) + b,
          a - b, a + b, b + carry, mad & np.uint64(0xFFFFFFFF), mad >> np.uint64(32),
          np.where(carry2.astype(bool), b, a)]
  for k, w in enumerate(want):
    np.testing.assert_array_equal(rows[:, k], np.asarray(w).astype(np.uint32), err_msg=f"column {k}")


@pytest.mark.parametrize("target", TARGETS)
def test_f16_arithmetic(target):
  co = kernel("""
    s_load_b128 s[4:7], s[0:1], 0x0
    s_load_b64 s[8:9], s[0:1], 0x10
    {kwait}
    s_lshl_b32 s20, s2, 6
    v_add_nc_u32 v1, s20, v0
    v_lshlrev_b32 v1, 1, v1
    global_load_u16 v2, v1, s[4:5]
    global_load_d16_b16 v3, v1, s[6:7]
    {vwait}
    v_mul_f16 v4, v2, v3
    v_fma_f16 v5, v2, v3, v4
    v_add_f16 v5, v5, 1.0
    v_cvt_f32_f16 v6, v5
    v_mul_f32 v6, 0.5, v6
    v_cvt_f16_f32 v7, v6
    global_store_b16 v1, v7, s[8:9]
    s_endpgm
  """, target)
  n = 64 * 3
  a, b = (rng(s).uniform(-4, 4, n).astype(np.float16) for s in (12, 13))
  mem = FlatMemory()
  out = mem.alloc(2 * n)
  dispatch(co, "k", (3, 1, 1), (64, 1, 1), [mem.alloc_array(a), mem.alloc_array(b), out], mem)
  prod = (a * b).astype(np.float16)
  fma = np.array([float(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))) for x, y, z in zip(a, b, prod)])
  fma16 = fma.astype(np.float16)                   # these exact sums have few bits: f64 -> f16 rounds once
  want = ((fma16 + np.float16(1)).astype(np.float32) * np.float32(0.5)).astype(np.float16)
  np.testing.assert_array_equal(mem.read_array(out, np.float16, n), want)


@pytest.mark.parametrize("target", TARGETS)
def test_f64_arithmetic(target):
  co = kernel("""
    s_load_b128 s[4:7], s[0:1], 0x0
    s_load_b64 s[8:9], s[0:1], 0x10
    {kwait}
    s_lshl_b32 s20, s2, 6
    v_add_nc_u32 v1, s20, v0
    v_lshlrev_b32 v1, 3, v1
    global_load_b64 v[2:3], v1, s[4:5]
    global_load_b64 v[4:5], v1, s[6:7]
    {vwait}
    v_mul_f64 v[6:7], v[2:3], v[4:5]
    v_add_f64 v[8:9], v[6:7], -v[2:3]
    v_fma_f64 v[10:11], v[2:3], v[4:5], v[8:9]
    v_cvt_f32_f64 v12, v[10:11]
    v_cvt_f64_f32 v[10:11], v12
    v_max_f64 v[10:11], v[10:11], 1.0
    global_store_b64 v1, v[10:11], s[8:9]
    s_endpgm
  """, target)
  n = 64 * 2
  a, b = rng(14).standard_normal(n) * 10, rng(15).standard_normal(n)
  mem = FlatMemory()
  out = mem.alloc(8 * n)
  dispatch(co, "k", (2, 1, 1), (64, 1, 1), [mem.alloc_array(a), mem.alloc_array(b), out], mem)
  fma = np.array([float(Fraction(x) * Fraction(y) + Fraction(x * y - x)) for x, y in zip(a, b)])
  want = np.maximum(fma.astype(np.float32).astype(np.float64), 1.0)
  np.testing.assert_array_equal(mem.read_array(out, np.float64, n), want)


@pytest.mark.parametrize("target", TARGETS)
def test_conversions(target):
  co = kernel("""
    s_load_b128 s[4:7], s[0:1], 0x0
    {kwait}
    s_lshl_b32 s20, s2, 6
    v_add_nc_u32 v1, s20, v0
    v_lshlrev_b32 v10, 2, v1
    v_lshlrev_b32 v11, 5, v1
    global_load_b32 v2, v10, s[4:5]
    {vwait}
    v_cvt_i32_f32 v3, v2
    v_cvt_u32_f32 v4, v2
    v_cvt_f32_i32 v5, v3
    v_cvt_f32_u32 v6, v4
    v_floor_f32 v7, v2
    v_rndne_f32 v8, v2
    v_cvt_floor_i32_f32 v9, v2
    v_cvt_f16_f32 v13, v2
    v_cvt_f32_f16 v13, v13
    global_store_b128 v11, v[3:6], s[6:7]
    global_store_b96 v11, v[7:9], s[6:7] offset:16
    global_store_b32 v11, v13, s[6:7] offset:28
    s_endpgm
  """, target, nargs=2)
  n = 64 * 2
  x = (rng(16).standard_normal(n) * 1e3).astype(np.float32)
  x[:6] = [np.nan, np.inf, -np.inf, 3e9, -3e9, 2.5]
  mem = FlatMemory()
  out = mem.alloc(32 * n)
  dispatch(co, "k", (2, 1, 1), (64, 1, 1), [mem.alloc_array(x), out], mem)
  got = mem.read_array(out, np.uint32, 8 * n).reshape(n, 8)
  with np.errstate(invalid="ignore"):
    i32 = np.where(np.isnan(x), 0, np.clip(np.trunc(x.astype(np.float64)), -2 ** 31, 2 ** 31 - 1)).astype(np.int32)
    u32 = np.where(np.isnan(x), 0, np.clip(np.trunc(x.astype(np.float64)), 0, 2 ** 32 - 1)).astype(np.uint32)
    fl = np.where(np.isnan(x), 0, np.clip(np.floor(x.astype(np.float64)), -2 ** 31, 2 ** 31 - 1)).astype(np.int32)
  np.testing.assert_array_equal(got[:, 0].view(np.int32), i32)
  np.testing.assert_array_equal(got[:, 1], u32)
  np.testing.assert_array_equal(got[:, 2].view(np.float32), i32.astype(np.float32))
  np.testing.assert_array_equal(got[:, 3].view(np.float32), u32.astype(np.float32))
  np.testing.assert_array_equal(got[:, 4].view(np.float32), np.floor(x))
  np.testing.assert_array_equal(got[:, 5].view(np.float32), np.rint(x))
  np.testing.assert_array_equal(got[:, 6].view(np.int32), fl)
  with np.errstate(over="ignore"):
    np.testing.assert_array_equal(got[:, 7].view(np.float32), x.astype(np.float16).astype(np.float32))


TRANSCENDENTAL = {   # instruction -> (numpy reference in f64, input range, documented bound in ulp)
  "v_rcp_f32": (lambda x: 1 / x, (0.01, 100.0), 1.0), "v_rsq_f32": (lambda x: 1 / np.sqrt(x), (1e-3, 1e3), 1.0),
  "v_sqrt_f32": (np.sqrt, (0.0, 1e4), 1.0), "v_exp_f32": (np.exp2, (-20.0, 20.0), 1.0),
  "v_log_f32": (np.log2, (1e-3, 1e6), 1.0), "v_sin_f32": (lambda x: np.sin(2 * np.pi * x), (-4.0, 4.0), 1.0),
  "v_cos_f32": (lambda x: np.cos(2 * np.pi * x), (-4.0, 4.0), 1.0),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("op", sorted(TRANSCENDENTAL))
def test_transcendental_within_documented_ulp(target, op):
  ref, (lo, hi), bound = TRANSCENDENTAL[op]
  co = kernel("""
    s_load_b128 s[4:7], s[0:1], 0x0
    {kwait}
  """ + INDEX + """
    global_load_b32 v2, v1, s[4:5]
    {vwait}
    """ + op + """ v3, v2
    global_store_b32 v1, v3, s[6:7]
    s_endpgm
  """, target, nargs=2)
  n = 128
  x = rng(17).uniform(lo, hi, n).astype(np.float32)
  mem = FlatMemory()
  out = mem.alloc(4 * n)
  dispatch(co, "k", (2, 1, 1), (64, 1, 1), [mem.alloc_array(x), out], mem)
  got = mem.read_array(out, np.float32, n).astype(np.float64)
  want = ref(x.astype(np.float64))
  err = np.abs(got - want) / ulp32(want.astype(np.float32))
  assert err.max() <= bound, f"{op}: {err.max():.2f} ulp at x = {x[np.argmax(err)]}"


# ---- memory: LDS atomics, global atomics, buffers, paging --------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_atomics(target):
  """global_atomic_add_u32 with return from every lane to one counter, global_atomic_add_f32 to per-workgroup
  cells, ds_add_u32 in LDS."""
  co = kernel("""
    s_load_b128 s[4:7], s[0:1], 0x0
    s_load_b64 s[8:9], s[0:1], 0x10
    {kwait}
  """ + INDEX + """
    global_load_b32 v2, v1, s[4:5]
    v_mov_b32 v3, 1
    v_mov_b32 v4, 0
    {vwait}
    global_atomic_add_u32 v5, v4, v3, s[6:7] {ret}
    s_lshl_b32 s10, s2, 2
    v_mov_b32 v6, s10
    global_atomic_add_f32 v6, v2, s[8:9]
    ds_store_b32 v4, v4
    {dwait}
    {barrier}
    ds_add_u32 v4, v3
    {dwait}
    {barrier}
    ds_load_b32 v7, v4
    {vwait}
    {dwait}
    v_add_nc_u32 v5, v5, v7
    global_store_b32 v1, v5, s[4:5]
    s_endpgm
  """.replace("{ret}", "glc" if target == "gfx1100" else "th:TH_ATOMIC_RETURN"), target,
               group_segment_fixed_size=64)
  groups = 4
  x = rng(18).integers(-8, 8, 64 * groups).astype(np.float32)
  mem = FlatMemory()
  px, counter, sums = mem.alloc_array(x), mem.alloc(4), mem.alloc(4 * groups)
  dispatch(co, "k", (groups, 1, 1), (64, 1, 1), [px, counter, sums], mem)
  assert mem.read_array(counter, np.uint32, 1)[0] == 64 * groups
  np.testing.assert_array_equal(mem.read_array(sums, np.float32, groups), x.reshape(groups, 64).sum(axis=1))
  got = mem.read_array(px, np.uint32, 64 * groups)
  assert sorted(got - 64) == list(range(64 * groups))    # each lane saw a distinct old counter value


@pytest.mark.parametrize("target", TARGETS)
def test_buffer_loads_are_range_checked(target):
  """A raw buffer (OOB_SELECT 3) of 100 dwords: loads past NUM_RECORDS read 0, stores there are dropped."""
  co = kernel("""
    s_load_b64 s[4:5], s[0:1], 0x0
    s_load_b64 s[6:7], s[0:1], 0x8
    {kwait}
    s_mov_b32 s8, s4
    s_and_b32 s9, s5, 0xffff
    s_movk_i32 s10, 400
    s_mov_b32 s11, 0x30000000
    s_mov_b32 s12, s6
    s_and_b32 s13, s7, 0xffff
    s_movk_i32 s14, 0x1000
    s_mov_b32 s15, 0x30000000
  """ + INDEX + """
    buffer_load_b32 v2, v1, s[8:11], {soff} offen
    {vwait}
    v_add_nc_u32 v2, 1, v2
    buffer_store_b32 v2, v1, s[12:15], {soff} offen
    s_endpgm
  """, target, nargs=2)
  x = rng(19).integers(0, 1000, 128, dtype=np.uint32)
  mem = FlatMemory()
  out = mem.alloc(4 * 128)
  dispatch(co, "k", (2, 1, 1), (64, 1, 1), [mem.alloc_array(x), out], mem)
  np.testing.assert_array_equal(mem.read_array(out, np.uint32, 128), np.where(np.arange(128) < 100, x, 0) + 1)


# ---- control flow ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_control_flow_getpc_setpc_vcc_branches(target):
  """s_getpc_b64 / s_setpc_b64 jump over two instructions; s_cbranch_vccnz / vccz on a compare; s_cmov_b32."""
  co = kernel("""
    s_getpc_b64 s[14:15]
    s_add_u32 s14, s14, 20
    s_addc_u32 s15, s15, 0
    s_setpc_b64 s[14:15]
    v_mov_b32 v5, 1
    v_mov_b32 v5, 2
    s_load_b64 s[4:5], s[0:1], 0x0
    v_mov_b32 v6, 0
    {kwait}
  """ + INDEX + """
    v_cmp_gt_u32 vcc_lo, 8, v0
    s_cbranch_vccz no_lanes
    v_add_nc_u32 v6, 10, v6
  no_lanes:
    v_cmp_gt_u32 vcc_lo, 0, v0
    s_cbranch_vccnz some_lanes
    v_add_nc_u32 v6, 100, v6
  some_lanes:
    s_cmp_eq_u32 s2, 1
    s_mov_b32 s8, 3
    s_cmov_b32 s8, 5
    v_add_nc_u32 v6, s8, v6
    v_add_nc_u32 v6, v5, v6
    global_store_b32 v1, v6, s[4:5]
    s_endpgm
  """, target, nargs=1)
  mem = FlatMemory()
  out = mem.alloc(4 * 128)
  dispatch(co, "k", 2, 64, [out], mem)
  t = np.arange(128)
  wave_has_lanes = (t % 64) < 32                 # the first wave of each workgroup has v0 < 8 lanes
  want = np.where(wave_has_lanes, 10, 0) + 100 + np.where(t >= 64, 5, 3)
  np.testing.assert_array_equal(mem.read_array(out, np.uint32, 128), want)


# ---- initial state -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_initial_state_follows_the_descriptor(target):
  """dispatch ptr + kernarg ptr user SGPRs, workgroup ids x/y/z, packed work-item ids in v0 (x | y << 10 | z << 20);
  the kernel writes them out per work-item."""
  co = kernel("""
    s_load_b64 s[8:9], s[2:3], 0x0
    s_load_b32 s12, s[0:1], 0x4
    {kwait}
    s_mul_i32 s13, s6, 2
    s_add_u32 s13, s13, s5
    s_mul_i32 s13, s13, 2
    s_add_u32 s13, s13, s4
    v_and_b32 v1, 0x3ff, v0
    v_bfe_u32 v2, v0, 10, 10
    v_bfe_u32 v3, v0, 20, 10
    v_lshl_add_u32 v4, v3, 2, v2
    v_lshl_add_u32 v4, v4, 3, v1
    s_lshl_b32 s14, s13, 6
    v_add_nc_u32 v4, s14, v4
    v_lshlrev_b32 v4, 4, v4
    v_mov_b32 v5, s12
    v_mov_b32 v6, s4
    v_mov_b32 v7, s5
    v_mov_b32 v8, s6
    global_store_b128 v4, v[5:8], s[8:9]
    s_endpgm
  """, target, nargs=1, user_sgpr_dispatch_ptr=1, system_sgpr_workgroup_id_y=1, system_sgpr_workgroup_id_z=1,
              system_vgpr_workitem_id=2)
  mem = FlatMemory()
  out = mem.alloc(16 * 64 * 8)
  dispatch(co, "k", (2, 2, 2), (8, 4, 2), [out], mem)
  got = mem.read_array(out, np.uint32, 4 * 64 * 8).reshape(8, 2, 4, 8, 4)   # [wg][z][y][x][fields]
  for wg in range(8):
    wx, wy, wz = wg % 2, (wg // 2) % 2, wg // 4
    cell = got[(wz * 2 + wy) * 2 + wx]
    assert (cell[..., 0] == (8 | 4 << 16)).all()                  # dispatch packet workgroup_size_x, _y
    assert (cell[..., 1] == wx).all() and (cell[..., 2] == wy).all() and (cell[..., 3] == wz).all()


@pytest.mark.parametrize("target", TARGETS)
def test_vopd_and_lane_ops(target):
  """A VOPD pair reads both sources before writing; v_readfirstlane / v_readlane / v_writelane move lane values."""
  co = kernel("""
    s_load_b64 s[4:5], s[0:1], 0x0
    {kwait}
  """ + INDEX + """
    v_cvt_f32_u32 v2, v0
    v_mov_b32 v3, 2.0
    v_dual_mul_f32 v3, v2, v3 :: v_dual_add_f32 v2, v3, v2
    v_readlane_b32 s8, v2, 5
    v_writelane_b32 v2, s8, 7
    v_cmp_lt_u32 vcc_lo, 9, v0
    s_and_saveexec_b32 s9, vcc_lo
    v_readfirstlane_b32 s10, v0
    s_or_b32 exec_lo, exec_lo, s9
    v_add_nc_u32 v4, s10, v0
    v_cvt_f32_u32 v4, v4
    v_add_f32 v2, v2, v3
    v_add_f32 v2, v2, v4
    global_store_b32 v1, v2, s[4:5]
    s_endpgm
  """, target, nargs=1)
  mem = FlatMemory()
  out = mem.alloc(4 * 64)
  dispatch(co, "k", 1, 64, [out], mem)
  t = np.arange(64)                                       # v0
  lane = t % 32
  first = np.where(t < 32, 10, 32)                        # v0 of the first lane with v0 > 9, per wave
  v2 = np.where(lane == 7, 2.0 + t - lane + 5, 2.0 + t)   # the VOPD add; lane 7 then gets lane 5's
  want = v2 + 2.0 * t + first + t
  np.testing.assert_array_equal(mem.read_array(out, np.float32, 64), want.astype(np.float32))
