"""WMMA (v_wmma_f32_16x16x16_f16 / bf16) on the wave emulator against numpy, per generation lane layout, and the RDNA
renderer's lowering of half matmul tiles to it (compiler/rdna_wmma.py).

The layouts are written here element by element, from AMD's Matrix Instruction Calculator v1.3.2
(`matrix_calculator.py -a rdna3|rdna4 -i v_wmma_f32_16x16x16_f16 -w 32 --matrix-layout -A/-B/-D`), independently of
am/sim/wmma.py's vectorised form: RDNA3 replicates A and B in both half-waves (8 VGPRs each), RDNA4 splits K across
them (4 VGPRs each), and the two place the rows of C/D differently.
"""
from __future__ import annotations

import numpy as np
import pytest

from am.sim import FlatMemory, SimError, dispatch
from compiler import rdna_wmma
from compiler.dtypes import dtypes
from compiler.lower_gpu import lower_gpu
from compiler.rdna import assemble, build_kernel, disassemble, load_code_object, pointer_arg, write_code_object
from compiler.render_rdna import render_rdna
from compiler.schedule import Scheduler
from frontend import Tensor
from frontend.device import Device
from frontend.realize import realized
from tests.conftest import assert_close, random_array
from tests.test_render_rdna import amd as emulated_amd  # noqa: F401 (fixture: the emulated device per target)

TARGETS = ("gfx1100", "gfx1201")
WAITS = {"gfx1100": ("s_waitcnt lgkmcnt(0)", "s_waitcnt vmcnt(0)"), "gfx1201": ("s_wait_kmcnt 0", "s_wait_loadcnt 0")}


def ab_slot(target: str, row: int, k: int) -> tuple[int, int, list[int]]:
  """(VGPR, half, lanes) holding A[row][k] (or B[k][row]); the calculator's table rows, spelled out."""
  if target == "gfx1100":
    return k // 2, k % 2, [row, row + 16]
  return 2 * (k // 8) + (k // 2) % 2, k % 2, [16 * ((k // 4) % 2) + row]


def cd_slot(target: str, i: int, j: int) -> tuple[int, int]:
  """(VGPR, lane) holding C[i][j] / D[i][j]."""
  if target == "gfx1100":
    return i // 2, 16 * (i % 2) + j
  return i % 8, 16 * (i // 8) + j


def pack_ab(target: str, m: np.ndarray) -> np.ndarray:
  """(32 lanes, VGPRs) uint32 words for a 16x16 matrix of 16-bit values (bits) indexed [row][k]."""
  nregs = 8 if target == "gfx1100" else 4
  halves = np.zeros((32, nregs, 2), np.uint16)
  for row in range(16):
    for k in range(16):
      reg, half, lanes = ab_slot(target, row, k)
      for lane in lanes:
        halves[lane, reg, half] = m[row, k]
  return halves.view(np.uint32)[..., 0]


def pack_cd(target: str, c: np.ndarray) -> np.ndarray:
  words = np.zeros((32, 8), np.float32)
  for i in range(16):
    for j in range(16):
      reg, lane = cd_slot(target, i, j)
      words[lane, reg] = c[i, j]
  return words


def unpack_cd(target: str, words: np.ndarray) -> np.ndarray:
  return np.array([[words[cd_slot(target, i, j)[1], cd_slot(target, i, j)[0]] for j in range(16)] for i in range(16)])


def run_wmma(target: str, a_words, b_words, c_words, mnemonic="v_wmma_f32_16x16x16_f16", exec_mask=None):
  kwait, vwait = WAITS[target]
  nab = a_words.shape[1]
  top = nab - 1
  loads = [f"global_load_b128 v[{r}:{r + 3}], v41, s[{base}:{base + 1}] offset:{16 * q}"
           for base, r0 in ((4, 0), (6, 8)) for q, r in enumerate(range(r0, r0 + nab, 4))]
  mask = "" if exec_mask is None else f"s_mov_b32 exec_lo, {exec_mask}"
  src = f"""
    s_load_b128 s[4:7], s[0:1], 0x0
    s_load_b128 s[8:11], s[0:1], 0x10
    v_lshlrev_b32 v40, 5, v0
    v_lshlrev_b32 v41, {2 + (nab == 8) + 2}, v0
    {kwait}
    {chr(10).join(loads)}
    global_load_b128 v[16:19], v40, s[8:9]
    global_load_b128 v[20:23], v40, s[8:9] offset:16
    {vwait}
    {mask}
    {mnemonic} v[24:31], v[0:{top}], v[8:{8 + top}], v[16:23]
    s_mov_b32 exec_lo, -1
    global_store_b128 v40, v[24:27], s[10:11]
    global_store_b128 v40, v[28:31], s[10:11] offset:16
    s_endpgm
  """
  kernel = build_kernel("k", assemble(src, target), target, args=[pointer_arg(f"p{i}", 8 * i) for i in range(4)])
  co = load_code_object(write_code_object([kernel], target))
  mem = FlatMemory()
  ptrs = [mem.alloc_array(np.ascontiguousarray(x)) for x in (a_words, b_words, c_words)] + [mem.alloc(32 * 32)]
  dispatch(co, "k", (1, 1, 1), (32, 1, 1), ptrs, mem)
  return mem.read_array(ptrs[3], np.float32, 256).reshape(32, 8)


@pytest.mark.parametrize("target", TARGETS)
def test_wmma_f16_against_numpy(target, rng):
  a = rng.standard_normal((16, 16)).astype(np.float16)
  b = rng.standard_normal((16, 16)).astype(np.float16)
  c = rng.standard_normal((16, 16)).astype(np.float32)
  words = run_wmma(target, pack_ab(target, a.view(np.uint16)), pack_ab(target, b.T.view(np.uint16)),
                   pack_cd(target, c))
  want = a.astype(np.float64) @ b.astype(np.float64) + c
  np.testing.assert_allclose(unpack_cd(target, words), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("target", TARGETS)
def test_wmma_bf16_against_numpy(target, rng):
  a = rng.standard_normal((16, 16)).astype(np.float32)
  b = rng.standard_normal((16, 16)).astype(np.float32)
  a_bf, b_bf = ((x.view(np.uint32) >> 16).astype(np.uint16) for x in (a, b))   # truncated to bfloat16
  words = run_wmma(target, pack_ab(target, a_bf), pack_ab(target, np.ascontiguousarray(b_bf.T)),
                   pack_cd(target, np.zeros((16, 16), np.float32)), mnemonic="v_wmma_f32_16x16x16_bf16")
  widen = lambda h: (h.astype(np.uint32) << 16).view(np.float32).astype(np.float64)  # noqa: E731
  np.testing.assert_allclose(unpack_cd(target, words), widen(a_bf) @ widen(b_bf), rtol=1e-6, atol=1e-6)


def test_rdna3_wmma_refuses_unreplicated_half_waves(rng):
  a = pack_ab("gfx1100", rng.standard_normal((16, 16)).astype(np.float16).view(np.uint16))
  a[16:] ^= 1   # the upper half-wave's copy of A differs
  b = pack_ab("gfx1100", rng.standard_normal((16, 16)).astype(np.float16).view(np.uint16))
  with pytest.raises(SimError, match="replicated in both half-waves"):
    run_wmma("gfx1100", a, b, np.zeros((32, 8), np.float32))


def test_wmma_refuses_partial_exec(rng):
  a = pack_ab("gfx1201", rng.standard_normal((16, 16)).astype(np.float16).view(np.uint16))
  with pytest.raises(SimError, match="EXEC"):
    run_wmma("gfx1201", a, a, np.zeros((32, 8), np.float32), exec_mask="0xffff")


# ---- the renderer: half matmuls lowered to WMMA (compiler/rdna_wmma.py) ---------------------------------------------

def lowered(t: Tensor):
  items = Scheduler(lambda n: n in realized).schedule([t.lazydata])
  return lower_gpu([item.ast for item in items if item.ast is not None][-1])


def instructions(kernel) -> list[str]:
  return [d.text.split(" ", 1)[0] for d in disassemble(kernel.code, kernel.target)]


HALF_MATMULS = [(32, 32, 32), (64, 32, 48), (48, 64, 16)]   # (M, K, N)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("m,k,n", HALF_MATMULS, ids=str)
def test_half_matmul_renders_wmma(target, m, k, n):
  a, b = (Tensor(np.zeros(s, np.float16), device="CPU") for s in ((m, k), (k, n)))
  for expr in (a @ b, a.float() @ b.float()):   # float16 and float32 results
    kernel = render_rdna(lowered(expr), target)
    ops = instructions(kernel)
    assert ops.count("v_wmma_f32_16x16x16_f16") == 1, kernel.asm   # one per 16-deep block, in the loop
    assert kernel.info.local_size[0] % 32 == 0 and kernel.info.global_size[0] * kernel.info.local_size[0] == \
        m * n // 256 * 32
    loads = [op for op in ops if op.startswith("global_load")]
    assert "global_load_b128" in loads   # A's rows are contiguous and 16-byte aligned


@pytest.mark.parametrize("m,k,n", HALF_MATMULS, ids=str)
@pytest.mark.usefixtures("emulated_amd")
def test_half_matmul_on_the_emulator(rng, m, k, n):
  """Matches numpy (float32 products of the float16 inputs) within half precision, float16 and float32 results."""
  a, b = random_array(rng, (m, k), dtypes.float16), random_array(rng, (k, n), dtypes.float16)
  want = a.astype(np.float64) @ b.astype(np.float64)
  ta, tb = (Tensor(x, device="AMD", dtype=dtypes.float16) for x in (a, b))
  assert_close(ta @ tb, want, dtypes.float16, scale=4)
  assert_close(ta.float() @ tb.float(), want, dtypes.float32, scale=10)
  assert_close((ta @ tb).relu(), np.maximum(want, 0), dtypes.float16, scale=4)   # the epilogue runs per element


@pytest.mark.usefixtures("emulated_amd")
def test_other_shapes_take_the_normal_path(rng):
  """Not 16-divisible, batched, float32, or transposed through an elementwise op: no WMMA, same results."""
  cases = [((33, 17), (17, 65), dtypes.float16), ((2, 16, 16), (2, 16, 16), dtypes.float16),
           ((32, 32), (32, 32), dtypes.float32)]
  target = Device["AMD"].target
  for sa, sb, d in cases:
    a, b = random_array(rng, sa, d), random_array(rng, sb, d)
    kernel = render_rdna(lowered(Tensor(a, device="CPU", dtype=d) @ Tensor(b, device="CPU", dtype=d)), target)
    assert "v_wmma_f32_16x16x16_f16" not in instructions(kernel)
    got = Tensor(a, device="AMD", dtype=d) @ Tensor(b, device="AMD", dtype=d)
    assert_close(got, a.astype(np.float64) @ b.astype(np.float64), d, scale=20)


def test_match_reads_the_geometry():
  a = Tensor(np.zeros((64, 32), np.float16), device="CPU")
  b = Tensor(np.zeros((32, 48), np.float16), device="CPU")
  tiles = rdna_wmma.match(lowered(a @ b))
  assert (tiles.m, tiles.n, tiles.k) == (64, 48, 32)
  assert (tiles.a.base, tiles.a.step, tiles.a.k_step) == (0, 32, 1)      # A[i][k] = a[32 i + k]
  assert (tiles.b.base, tiles.b.step, tiles.b.k_step) == (0, 1, 48)      # B[k][j] = b[j + 48 k]
  assert (tiles.out.base, tiles.out.step, tiles.out.k_step) == (0, 48, 1)
  assert rdna_wmma.match(lowered(a.float() @ b.float())) is not None
  assert rdna_wmma.match(lowered(a[:, :31] @ b[:31])) is None   # K = 31
  big_a = Tensor(np.zeros((256, 64), np.float16), device="CPU")
  big_b = Tensor(np.zeros((64, 256), np.float16), device="CPU")
  kernel = lowered(big_a @ big_b)   # register-tiled by lower_gpu: two accumulators per thread
  assert sum(n.op is rdna_wmma.Ops.DEFACC for n in kernel.toposort()) == 2
  tiles = rdna_wmma.match(kernel)
  assert (tiles.m, tiles.n, tiles.k, tiles.out.step) == (256, 256, 64, 256)
