"""compiler/render_rdna.py and DEV=AMD on the wave emulator (frontend/runtime/amd.py), for gfx1100 (RDNA3) and gfx1201
(RDNA4), in the normal suite: no AMD_EMULATE needed (the `amd` fixture opens the emulated device for this module only).

  - frontend ops on AMD (elementwise, reductions of both GPU plans, softmax, matmul, integers, float16/bfloat16,
    float64, padded views) against numpy from fresh random data;
  - the rendered assembly assembles to the same bytes through LLVM 19 (llvm-mc-19 -show-encoding, branch fixups
    resolved from LLVM's own instruction sizes); skipped without llvm-mc-19, except under CI=true, where it fails;
  - too many live values give RegisterPressureError naming the kernel; DEBUG=4 prints the assembly and the machine
    code decoded back; without AMD_EMULATE the device is unavailable and says how to enable it.
The whole frontend suite also runs on the emulator (frontend/runtime/amd.py says how).
"""
from __future__ import annotations

import functools
import os
import re
import subprocess

import numpy as np
import pytest

from compiler.dtypes import dtypes
from compiler.ir import Variable
from compiler.lower_gpu import lower_gpu
from compiler.rdna_regalloc import RegisterPressureError
from tests.test_rdna_asm import llvm_mc_path
from compiler.render_rdna import render_rdna
from compiler.schedule import Scheduler
from frontend import Tensor
from frontend.device import Device, DeviceUnavailable
from frontend.realize import kernel_cache, realized
from frontend.runtime import amd as amd_runtime
from tests.conftest import assert_close, random_array

TARGETS = ("gfx1100", "gfx1201")


def forget_amd_kernels() -> None:
  for key in [k for k in kernel_cache if k[0] == "AMD"]:
    del kernel_cache[key]


@pytest.fixture(scope="module", params=TARGETS)
def amd(request):
  """The AMD device of this process on the emulated target, for these tests only: afterwards the registry holds what it
  held before (nothing, without AMD_EMULATE), so Device.DEFAULT does not drift to AMD, and the AMD kernels compiled
  for this target are forgotten (the kernel cache is keyed by device kind, not target). Under AMD_EMULATE the
  environment's device is used as it is, and the other target's tests skip."""
  running_on = os.environ.get("AMD_EMULATE")
  if running_on:  # the suite runs on DEV=AMD: buffers of other modules live on that runtime; test it, keep it
    if running_on != request.param:
      pytest.skip(f"AMD_EMULATE={running_on}: this run tests that target only")
    yield Device["AMD"]
    return
  before = Device._opened.pop("AMD", None)
  forget_amd_kernels()
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("AMD_EMULATE", request.param)
    mp.delenv("AMD_SIM", raising=False)
    runtime = Device["AMD"]
  assert runtime.target == request.param
  yield runtime
  Device._opened.pop("AMD", None)
  if before is not None:
    Device._opened["AMD"] = before
  forget_amd_kernels()


def on_amd(*arrays, dtype=None) -> list[Tensor]:
  return [Tensor(a, device="AMD", dtype=dtype) for a in arrays]


# ---- frontend ops on the emulator against numpy ---------------------------------------------------------------------

FLOAT_OPS = {
  "chain": (lambda a, b: ((a + b) * 0.5 - b).relu() * a, lambda a, b: np.maximum((a + b) * 0.5 - b, 0) * a),
  "div": (lambda a, b: a / b, lambda a, b: a / b),
  "exp_log": (lambda a, b: a.exp() + b.abs().log(), lambda a, b: np.exp(a) + np.log(np.abs(b))),
  "sqrt_sin": (lambda a, b: a.abs().sqrt() + b.sin(), lambda a, b: np.sqrt(np.abs(a)) + np.sin(b)),
  "sigmoid": (lambda a, b: a.sigmoid() * b, lambda a, b: b / (1 + np.exp(-a))),
  "where_max": (lambda a, b: (a < b).where(a, b * 2).maximum(b), lambda a, b: np.maximum(np.where(a < b, a, b * 2), b)),
}


@pytest.mark.parametrize("name", list(FLOAT_OPS))
def test_float32_elementwise(amd, rng, name):
  ours, theirs = FLOAT_OPS[name]
  a, b = random_array(rng, (37, 29), dtypes.float32), random_array(rng, (37, 29), dtypes.float32)
  assert_close(ours(*on_amd(a, b)), theirs(a.astype(np.float64), b.astype(np.float64)), dtypes.float32, scale=4)


REDUCTIONS = {
  "sum_rows": (lambda x: x.sum(1), lambda x: x.sum(1), (40, 300)),        # block plan: contiguous reduced axis
  "sum_cols": (lambda x: x.sum(0), lambda x: x.sum(0), (300, 7)),         # thread plan: strided reduced axis
  "sum_all": (lambda x: x.sum(), lambda x: x.sum(), (5000,)),             # block plan, 1024 threads (LDS fold)
  "max_min": (lambda x: x.max(1) - x.min(1), lambda x: x.max(1) - x.min(1), (8, 65)),
  "argmax": (lambda x: x.argmax(1), lambda x: x.argmax(1), (6, 33)),
  "var": (lambda x: x.var(1), lambda x: x.var(1, ddof=1), (20, 70)),
  "softmax": (lambda x: x.softmax(-1), lambda x: np.exp(x - x.max(-1, keepdims=True)) /
              np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True), (3, 5, 200)),
  "log_softmax": (lambda x: x.log_softmax(-1), lambda x: x - x.max(-1, keepdims=True) -
                  np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)), (16, 100)),
}


@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reductions(amd, rng, name):
  ours, theirs, shape = REDUCTIONS[name]
  x = random_array(rng, shape, dtypes.float32)
  out = ours(on_amd(x)[0])
  want = theirs(x.astype(np.float64))
  if name == "argmax":
    np.testing.assert_array_equal(out.numpy(), want)
  else:
    assert_close(out, want, dtypes.float32, scale=8)


@pytest.mark.parametrize("shapes", [((64, 32), (32, 48)), ((3, 9, 10), (3, 10, 11)), ((33, 17), (17, 65))], ids=str)
def test_matmul(amd, rng, shapes):
  a, b = (random_array(rng, s, dtypes.float32) for s in shapes)
  ta, tb = on_amd(a, b)
  assert_close((ta @ tb).relu(), np.maximum(a.astype(np.float64) @ b, 0), dtypes.float32, scale=10)


def test_matmul_register_tiles(amd, rng):
  """Enough outputs for the thread plan's register tiles (lower_gpu._tile): each thread computes several outputs."""
  a, b = random_array(rng, (256, 4), dtypes.float32), random_array(rng, (4, 256), dtypes.float32)
  assert_close(Tensor(a, device="AMD") @ Tensor(b, device="AMD"), a.astype(np.float64) @ b, dtypes.float32, scale=10)


INT_DTYPES = (dtypes.int8, dtypes.uint8, dtypes.int16, dtypes.int32, dtypes.uint32, dtypes.int64, dtypes.uint64)


@pytest.mark.parametrize("d", INT_DTYPES, ids=lambda d: d.name)
def test_integer_ops(amd, rng, d):
  """C's wrapping arithmetic, truncating // and % with negatives (tensor // floors, like numpy), shifts, bit ops."""
  lo = 0 if d.is_unsigned else -60
  a = random_array(rng, (7, 9), d, lo, 60)
  b = random_array(rng, (7, 9), d, 1 if d.is_unsigned else -7, 7)
  amount = random_array(rng, (7, 9), d, 0, 5, nonzero=False)
  ta, tb, tamount = on_amd(a, b, amount, dtype=d)
  with np.errstate(over="ignore"):
    np.testing.assert_array_equal((ta * tb + ta).numpy(), a * b + a)
    np.testing.assert_array_equal((ta // tb).numpy(), a // b)
    np.testing.assert_array_equal((ta % tb).numpy(), a % b)
    np.testing.assert_array_equal(((ta << tamount) ^ (tb >> 1) & ta).numpy(), (a << amount) ^ (b >> 1) & a)
    np.testing.assert_array_equal(ta.maximum(tb).numpy(), np.maximum(a, b))
    np.testing.assert_array_equal((ta < tb).numpy(), a < b)
    total = ta.sum(1)  # small integer types sum in a wider type, as torch does
    np.testing.assert_array_equal(total.numpy(), a.sum(1, dtype=total.dtype.np))


@pytest.mark.parametrize("d", [dtypes.float16, dtypes.bfloat16], ids=lambda d: d.name)
def test_half_types(amd, rng, d):
  a, b = random_array(rng, (5, 33), d), random_array(rng, (5, 33), d)
  ta, tb = on_amd(a, b, dtype=d)
  wide_a, wide_b = a.astype(np.float64), b.astype(np.float64)
  assert_close(ta * tb + ta, wide_a * wide_b + wide_a, d, scale=2)
  assert_close(ta.exp() / tb, np.exp(wide_a) / wide_b, d, scale=4)
  assert_close(ta.sum(1), wide_a.sum(1), d, scale=8)
  assert_close(ta @ tb.permute(1, 0), wide_a @ wide_b.T, d, scale=20)
  assert_close(ta.cast(dtypes.float32), wide_a, dtypes.float32)


def test_float64(amd, rng):
  """The emulator runs the float64 VALU, so AMD offers float64 (division and sqrt refined to IEEE, polynomials for
  exp2, log2 and sin: compiler/rdna_math.py)."""
  assert dtypes.float64 in amd.dtypes
  a, b = rng.uniform(0.5, 3.0, (6, 11)), rng.uniform(-3.0, 3.0, (6, 11))
  ta, tb = on_amd(a, b, dtype=dtypes.float64)
  out = ta / tb + ta.sqrt() * tb.sin() - ta.log() + tb.exp()
  np.testing.assert_allclose(out.numpy(), a / b + np.sqrt(a) * np.sin(b) - np.log(a) + np.exp(b), rtol=1e-13)
  np.testing.assert_allclose(ta.sum(1).numpy(), a.sum(1), rtol=1e-13)


def test_bool_and_casts(amd, rng):
  x = random_array(rng, (4, 80), dtypes.float32)
  t = on_amd(x)[0]
  flags = ((t > 0) & (t < 1)).any(1) ^ (t > -2).all(1)
  np.testing.assert_array_equal(flags.numpy(), ((x > 0) & (x < 1)).any(1) ^ (x > -2).all(1))
  np.testing.assert_array_equal((t * 40).cast(dtypes.int8).numpy(), (x * 40).astype(np.int8))
  np.testing.assert_array_equal(t.cast(dtypes.int64).cast(dtypes.float32).numpy(), np.trunc(x))


def test_padded_views_of_computed_values(amd):
  """Views that index below 0 where their pad gate is off (cumsum pads by n - 1): the loads of the padded value, and
  of reductions under it, are gated (compiler/lower_gpu.py), so the emulator, which faults on any unmapped address,
  never sees them; the index arithmetic of negative values stays 32-bit (no 64-bit division loop)."""
  assert Tensor([True, False, True], device="AMD").cumsum().tolist() == [1, 1, 2]
  x = np.arange(1, 25, dtype=np.float32).reshape(4, 6)
  out = ((Tensor(x, device="AMD") * 2 + 1).pad(((1, 1), (0, 0))).permute(1, 0).flip(1) - 3).numpy()
  np.testing.assert_array_equal(out, np.pad(x * 2 + 1, ((1, 1), (0, 0))).transpose(1, 0)[:, ::-1] - 3)
  rows = Tensor(x, device="AMD").sum(1, keepdim=True).pad(((2, 1), (1, 1))) * 2  # a reduction under the pad
  np.testing.assert_allclose(rows.numpy(), np.pad(x.sum(1, keepdims=True), ((2, 1), (1, 1))) * 2, rtol=1e-6)
  wide = np.arange(1200, dtype=np.float32).reshape(2, 600) / 600
  folded = Tensor(wide, device="AMD").sum(1, keepdim=True).pad(((1, 0), (0, 2))) + 1  # block plan under the pad
  np.testing.assert_allclose(folded.numpy(), np.pad(wide.sum(1, keepdims=True), ((1, 0), (0, 2))) + 1, rtol=1e-5)


POS, SHIFT, COUNT = Variable("pos", 0, 8), Variable("shift", -5, 5), Variable("count", 0, 300)


def test_variables_are_kernel_arguments(amd, rng):
  """Variables are int32 kernel arguments after the pointers (s_load_b32 into an SGPR): a value and a window that
  starts at one, against numpy for several values with one compile."""
  x = random_array(rng, (10, 33), dtypes.float32)
  (t,) = on_amd(x)
  compiles = None
  for p, s in ((0, 5), (8, -5), (3, 0)):
    got = (t.shrink(((POS.bind(p), POS.bind(p) + 2), None)) * POS.bind(p) - SHIFT.bind(s)).numpy()
    assert_close(got, x[p:p + 2].astype(np.float64) * p - s, dtypes.float32)
    compiles = kernel_compiles() if compiles is None else compiles
  assert kernel_compiles() == compiles


def kernel_compiles() -> int:
  from frontend.realize import STATS
  return STATS["compiles"]


ROWS = 40


def arange(n: int) -> Tensor:
  return Tensor.arange(n, device="AMD")


# name: (Variable, the values to run, input shape, graph of (input, bound Variable), numpy of (input, value)); the
# forms of tests/test_render_ptx.py's VARIABLE_CASES, on AMD: value math, compares, index math, loops that read it
VARIABLE_CASES = {
  "scale": (Variable("k", -50, 50), (-50, -3, 0, 7, 50), (ROWS, 6), lambda x, v: x * v - v, lambda x, k: x * k - k),
  "mask": (Variable("n", 0, ROWS), (0, 1, 17, ROWS), (ROWS,), lambda x, v: arange(ROWS) < v,
           lambda x, k: np.arange(ROWS) < k),
  "pick_row": (Variable("row", -20, ROWS - 21), (-20, -1, 0, ROWS - 21), (ROWS, 6),
               lambda x, v: (arange(ROWS).reshape(ROWS, 1) - 20 == v).where(x, 0.0).sum(0), lambda x, k: x[k + 20]),
  "window": (Variable("row", 0, ROWS - 2), (0, 5, ROWS - 2), (ROWS, 6), lambda x, v: x.shrink(((v, v + 2), None)) * 2,
             lambda x, k: x[k:k + 2] * 2),
  "int_index": (Variable("step", 0, 1000), (0, 3, 999), (ROWS,), lambda x, v: (arange(ROWS) * v + 3) % 7,
                lambda x, k: (np.arange(ROWS) * k + 3) % 7),
  "prefix_sum": (Variable("n", 0, 700), (0, 1, 350, 700), (8, 700),          # block plan: the compare in the strided
                 lambda x, v: (x * (arange(700) < v)).sum(1), lambda x, k: x[:, :k].sum(1)),   # loop of every thread
  "column_prefix": (Variable("n", 0, 300), (0, 150, 300), (300, 7),          # thread plan: a loop over rows
                    lambda x, v: (x * (arange(300).reshape(300, 1) < v)).sum(0), lambda x, k: x[:k].sum(0)),
  "window_sum": (Variable("row", 0, 100), (0, 37, 100), (300, 7),           # an induction offset that starts at it
                 lambda x, v: x.shrink(((v, v + 200), None)).sum(0), lambda x, k: x[k:k + 200].sum(0)),
  "row_window_sum": (Variable("col", 0, 50), (0, 9, 50), (20, 80),         # block plan: each row's slice from it
                     lambda x, v: x.shrink((None, (v, v + 30))).sum(1), lambda x, k: x[:, k:k + 30].sum(1)),
  "sum_plus_value": (Variable("k", -9, 9), (-9, 0, 4), (ROWS, 6), lambda x, v: (x + v).sum() * v,
                     lambda x, k: (x + k).sum() * k),
  "value": (Variable("k", -9, 9), (-9, 0, 4), (1,), lambda x, v: (lambda t: t * 3 + (t < 2))(Tensor(v, device="AMD")),
            lambda x, k: np.int32(k * 3 + (k < 2))),   # the value stored, and a uniform compare (s_cmp)
}


@pytest.mark.parametrize("case", sorted(VARIABLE_CASES))
def test_variable_kernels_match_numpy_for_every_value(amd, rng, case):
  """Each case against numpy for several values of its Variable (negative ones too), compiled once: the value is an
  int32 kernel argument (one s_load_b32 into an SGPR), not part of the code."""
  var, values, shape, graph, reference = VARIABLE_CASES[case]
  data = random_array(rng, shape, dtypes.float32)
  (x,) = on_amd(data)
  compiles = None
  for k in values:
    got = graph(x, var.bind(k))
    want = np.asarray(reference(data.astype(np.float64), k))
    if got.dtype.is_float:
      assert_close(got, want, dtypes.float32, scale=8)
    else:
      np.testing.assert_array_equal(got.numpy(), want.astype(got.dtype.np), err_msg=f"{var.name}={k}")
    compiles = kernel_compiles() if compiles is None else compiles
    assert kernel_compiles() == compiles, f"{var.name}={k} compiled another kernel"


@pytest.mark.parametrize("target", TARGETS)
def test_variables_follow_the_pointers_in_the_kernarg_segment(target, rng):
  """The code object declares each Variable a 4-byte by-value argument after the 8-byte pointers (in info.vars order,
  by name), the kernarg size covers them, the kernel reads each with one s_load_b32 at its offset, and a window that
  starts at a Variable (lo >= 0) is indexed in 32 bits with the uniform part in SALU (no 64-bit address math)."""
  from compiler.rdna import load_code_object
  a, b = Variable("b_second", 0, 8), Variable("a_first", -5, 5)
  x, y = (Tensor(random_array(rng, (10, 33), dtypes.float32), device="CPU").realize() for _ in range(2))
  window = ((a.bind(2), a.bind(2) + 2), None)
  kernel = render_rdna(lower_gpu(kernel_asts(x.shrink(window) * b.bind(-3) + y.shrink(window))[-1]), target)
  assert kernel.info.vars == (b, a) and len(kernel.info.params) == 3
  meta = load_code_object(kernel.code_object, name=kernel.name).kernel(kernel.name)
  args = [(arg.offset, arg.size, arg.value_kind, arg.name) for arg in meta.args]
  assert args == [(0, 8, "global_buffer", "p0"), (8, 8, "global_buffer", "p1"), (16, 8, "global_buffer", "p2"),
                  (24, 4, "by_value", "var_a_first"), (28, 4, "by_value", "var_b_second")]
  assert meta.kernarg_size == 32 and meta.descriptor.kernarg_size == 32
  loads = re.findall(r"s_load_b32 s\d+, s\[0:1\], (\d+)", kernel.asm)
  assert sorted(int(offset) for offset in loads) == [24, 28], kernel.asm
  assert "s_mul_i32" in kernel.asm and "v_cvt_f32_i32" in kernel.asm, kernel.asm
  assert not any(op in kernel.asm for op in ("v_mad_u64_u32", "v_lshlrev_b64", "v_add_co_ci_u32")), kernel.asm


def test_runs_machine_code_of_the_target(amd, rng):
  x = random_array(rng, (5,), dtypes.float32)
  np.testing.assert_allclose((Tensor(x, device="AMD") * 3).numpy(), x * 3, rtol=1e-6)
  assert amd.describe() == f"AMD: {amd_runtime.TARGETS[amd.target]} {amd.target} on the wave emulator (no card)"


# ---- the renderer: LLVM's encodings, register pressure, DEBUG=4 ----------------------------------------------------

def kernel_asts(t: Tensor) -> list:
  items = Scheduler(lambda n: n in realized).schedule([t.lazydata])
  return [item.ast for item in items if item.ast is not None]


@functools.lru_cache(maxsize=None)
def rendered_kernels(target: str) -> tuple:
  """Kernels that cover the selector's forms: both plans with LDS folds and barriers, register tiles, 64-bit integer
  division loops, float64 math, halves, gated loads, fused multiply-adds, wide loads, VOPD pairs and WMMA."""
  rng = np.random.default_rng(7)

  def rand(*shape, d=dtypes.float32):
    return Tensor(rng.uniform(-3, 3, shape).astype(np.float32), device="CPU").cast(d).realize()
  graphs = [
    (rand(37, 9) + rand(9)).sigmoid() * 2, rand(3, 700).softmax(-1), rand(5000).sum(), rand(300, 7).sum(0),
    rand(256, 4) @ rand(4, 256), rand(6, 33).argmax(1), rand(5, 7, d=dtypes.int64) // rand(5, 7, d=dtypes.int64),
    rand(5, 7, d=dtypes.int32) % 5 ^ rand(5, 7, d=dtypes.int32) << 2, rand(4, 6, d=dtypes.float64).sin().log2(),
    (rand(5, 33, d=dtypes.float16) * rand(5, 33, d=dtypes.float16)).exp(), rand(5, 33, d=dtypes.bfloat16).sum(1),
    (rand(3, 40) * 2).pad(((0, 0), (39, 0))).reshape(3, 79)[:, :40].cumsum(1),
    rand(256, 64) @ rand(64, 256), rand(48, 32, d=dtypes.float16) @ rand(32, 32, d=dtypes.float16),
    rand(10, 33).shrink(((POS.bind(4), POS.bind(4) + 2), None)) * POS.bind(4) - SHIFT.bind(-2),  # s_load_b32 args
    (rand(300, 7) - COUNT.bind(150)).sum(0) * COUNT.bind(150),  # a Variable read in a loop and after it
    rand(37, 9) * rand(37, 9) + rand(37, 9), rand(6, 33, d=dtypes.float64) * rand(6, 33, d=dtypes.float64) - 1.5,
  ]
  return tuple(render_rdna(lower_gpu(ast), target) for t in graphs for ast in kernel_asts(t))


def llvm_bytes(asm: str, target: str) -> bytes:
  """The bytes llvm-mc encodes the assembly text to; branch fixups (A bytes) are filled in from the label positions
  that LLVM's own instruction sizes give (SOPP simm16 = (label - (pc + 4)) / 4)."""
  proc = subprocess.run([llvm_mc_path(), "-arch=amdgcn", f"-mcpu={target}", "-show-encoding"], input=asm + "\n",
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0 and "error" not in proc.stderr, proc.stderr
  labels, insts, pc = {}, [], 0
  for line in proc.stdout.splitlines():
    label = re.match(r"^(\w+):", line)
    if label:
      labels[label.group(1)] = pc
      continue
    m = re.match(r"^\s+(\S.*?)\s*; encoding: \[([^\]]*)\]", line)
    if m:
      parts = m.group(2).split(",")
      insts.append((pc, m.group(1), parts))
      pc += len(parts)
  out = bytearray()
  for start, text, parts in insts:
    if "A" in parts:
      offset = (labels[text.split()[-1]] - (start + 4)) // 4
      parts = [f"{offset & 0xFF:#x}", f"{(offset >> 8) & 0xFF:#x}"] + parts[2:]
    out += bytes(int(p, 16) for p in parts)
  return bytes(out)


@pytest.mark.parametrize("target", TARGETS)
def test_llvm_encodes_the_same_bytes(target):
  llvm_mc_path()
  for kernel in rendered_kernels(target):
    want = llvm_bytes(kernel.asm, target)
    if want != kernel.code:
      at = next(i for i in range(min(len(want), len(kernel.code))) if want[i] != kernel.code[i])
      pytest.fail(f"{kernel.name} {target}: our bytes differ from llvm-mc's at offset {at:#x} (ours "
                  f"{kernel.code[at:at + 8].hex()}, llvm {want[at:at + 8].hex()}); {len(kernel.code)} vs {len(want)} "
                  f"bytes\n{kernel.asm}")


@pytest.mark.parametrize("target", TARGETS)
def test_kernel_form(target):
  """Block folds through ds_bpermute and LDS with the generation's barrier, and the generation's counter waits."""
  kernels = rendered_kernels(target)
  folded = next(k for k in kernels if k.info.plan == "block" and k.lds_bytes)
  gfx11 = target == "gfx1100"
  barrier = "s_barrier" if gfx11 else "s_barrier_signal -1\n  s_barrier_wait"
  assert f"\n  {barrier}" in folded.asm and "ds_bpermute_b32" in folded.asm
  waits = ("s_waitcnt vmcnt(0)", "s_waitcnt lgkmcnt(0)") if gfx11 else ("s_wait_loadcnt 0", "s_wait_dscnt 0",
                                                                          "s_wait_kmcnt 0")
  assert all(w in folded.asm for w in waits)
  for k in kernels:
    assert k.asm.startswith(f"; {k.name} {target}: grid {k.info.global_size[0]} x block {k.info.local_size[0]}")
    assert k.asm.rstrip().endswith("s_endpgm") and 0 < k.vgprs <= 256 and k.sgprs <= 106


def test_matmul_inner_loop_form():
  """float32 matmul with a register tile of two: per k one fused multiply-add per output (v_fmac_f32, paired into
  VOPD), the tile's two B values in one global_load_b64, each operand's offset advanced by one add (no multiply or
  shift in the loop), and the loop counted by s_add_u32's carry."""
  from tools.bench_emu import count_macs, innermost_loop, our_instructions
  rng = np.random.default_rng(3)
  a, b = (Tensor(rng.standard_normal(s).astype(np.float32), device="CPU") for s in ((256, 64), (64, 256)))
  for target in TARGETS:
    kernel = render_rdna(lower_gpu(kernel_asts(a @ b)[-1]), target)
    texts = innermost_loop(*our_instructions(kernel.code, target))
    ops = [t.split()[0] for t in texts]
    assert count_macs(texts) == (2, 0) and "global_load_b64" in ops, kernel.asm
    assert not any(op.startswith(("v_mul", "v_lshl", "v_mad", "s_mul", "s_cmp")) for op in ops), kernel.asm
    assert ops[-2] in ("s_add_u32", "s_add_co_u32") and ops[-1] == "s_cbranch_scc0" and len(texts) <= 7, kernel.asm


def test_contraction_follows_the_other_backends():
  """float32 a*b+c fuses into one v_fma_f32 (the PTX renderer leaves mul and add to ptxas to contract, gcc -O3
  contracts them too); float16 keeps its rounded product (PTX .rn); a product read twice stays a product."""
  rng = np.random.default_rng(4)
  x, y, z = (Tensor(rng.standard_normal((5, 7)).astype(np.float32), device="CPU").realize() for _ in range(3))
  fused = render_rdna(lower_gpu(kernel_asts(x * y + z)[-1]), "gfx1100").asm
  assert "v_fma_f32" in fused and "v_mul_f32" not in fused
  halves = [t.cast(dtypes.float16).realize() for t in (x, y, z)]
  half = render_rdna(lower_gpu(kernel_asts(halves[0] * halves[1] + halves[2])[-1]), "gfx1100").asm
  assert "v_mul_f16" in half and "v_fma" not in half
  shared = x * y
  twice = render_rdna(lower_gpu(kernel_asts(shared + z + shared * z)[-1]), "gfx1100").asm
  assert twice.count("v_mul_f32") == 1


def test_register_pressure_is_a_clear_error():
  x = Tensor(np.random.default_rng(1).uniform(-1, 1, (64, 32)).astype(np.float32), device="CPU").realize()
  ast = kernel_asts(x.softmax(-1) * x.exp() + x.sin())[-1]
  with pytest.raises(RegisterPressureError, match=r"kernel \w+: out of VGPRs: \d+ VGPRs of \d+ values are live .*"
                                                   r"more than the 4 .*nothing is spilled"):
    render_rdna(lower_gpu(ast), "gfx1100", max_vgprs=4)


def test_refuses_cpu_kernels_and_unknown_targets():
  from compiler.lower import lower
  ast = kernel_asts(Tensor([1.0, 2.0], device="CPU").realize() * 2)[-1]
  with pytest.raises(ValueError, match="lower_gpu"):
    render_rdna(lower(ast), "gfx1100")
  with pytest.raises(ValueError, match="target 'gfx900'; use one of gfx1100, gfx1201"):
    render_rdna(lower_gpu(ast), "gfx900")


def test_debug4_prints_assembly_and_decoded_machine_code(amd, monkeypatch, capsys):
  forget_amd_kernels()
  monkeypatch.setenv("DEBUG", "4")
  (Tensor([1.0, 2.0, 3.0], device="AMD") * 2.5).numpy()
  out = capsys.readouterr().out
  assert f" {amd.target}: grid 1 x block 32" in out and "  s_endpgm" in out
  decoded = re.findall(r"^; ([0-9a-f]{4}): ([0-9a-f ]+?)\s+(\S.*)$", out, re.M)
  assert decoded and decoded[-1][2] == "s_endpgm" and decoded[-1][1] == "bfb00000"


def test_unavailable_without_amd_emulate(monkeypatch):
  monkeypatch.delenv("AMD_EMULATE", raising=False)
  monkeypatch.delenv("AMD_SIM", raising=False)
  with pytest.raises(DeviceUnavailable, match="AMD_EMULATE=gfx1100"):
    amd_runtime.probe()
  monkeypatch.setenv("AMD_EMULATE", "gfx900")
  with pytest.raises(DeviceUnavailable, match="AMD_EMULATE='gfx900' names no emulated target; use gfx1100 or gfx1201"):
    amd_runtime.probe()

