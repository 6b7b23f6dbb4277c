"""The NVIDIA path of the compiler without a GPU: compiler/lower_gpu.py and compiler/render_ptx.py.

Every kernel that the graphs below schedule (elementwise chains, reductions of every dtype, matmul, conv, pooling,
softmax, layernorm, casts and bitcasts of every dtype pair, where, integer division and shifts with negatives,
gather and getitem, pad/shrink/flip/expand views, cumsum, assign) is
  - lowered for the GPU, verified against the loop-level grammar, and checked for its launch geometry;
  - rendered to PTX that `ptxas -arch=sm_90` assembles (skipped, with the reason, when no ptxas is installed);
  - run through compiler/ptx_emulator.py (every thread of the grid, with bounds and barrier checks) and compared
    with the CPU backend running the same graph: integers and bools exactly, floats within the dtype's tolerance.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from compiler.ptx_emulator import EmulatorError, PTXEmulator

from compiler.dtypes import ALL_DTYPES, dtypes
from compiler.ir import IRError, Node, Ops, Variable, print_ir, verify
from compiler.lower import lower
from compiler import lower_gpu as lower_gpu_module
from compiler.lower_gpu import BLOCK, WARP, GPUKernelInfo, lower_gpu
from compiler.render_ptx import assemble, find_ptxas, render_ptx
from compiler.schedule import Scheduler, _buffer_view
from frontend.realize import buffer_of, realized
from frontend.tensor import Tensor

# "matches CPU": the reference runs on the CPU runtime whatever DEV says (the suite also runs on DEV=NV)
pytestmark = pytest.mark.usefixtures("on_cpu")

PTXAS = find_ptxas()
needs_ptxas = pytest.mark.skipif(PTXAS is None, reason="no ptxas: pip install nvidia-cuda-nvcc-cu12 (or put CUDA's "
                                                       "bin on PATH) to assemble the rendered PTX")
TOLERANCE = {"float16": 2e-2, "bfloat16": 3e-2, "float32": 1e-4, "float64": 1e-9}


def rand(rng, *shape, dtype=dtypes.float32, low: float = -3.0, high: float = 3.0) -> Tensor:
  """Fresh random values of dtype (integers in [low, high], zeros kept), computed in a kernel of their own."""
  if dtype.is_bool:
    return Tensor(rng.random(shape) < 0.5)
  if dtype.is_int:
    lo = max(int(low), 0) if dtype.is_unsigned else int(low)
    return Tensor(rng.integers(lo, int(high) + 1, size=shape)).cast(dtype).contiguous()
  return Tensor(rng.uniform(low, high, size=shape).astype(np.float32)).cast(dtype).contiguous()


def nonzero(rng, *shape, dtype) -> Tensor:
  """Divisors: 1..6 with random signs for signed types (C leaves x / 0 undefined; both backends guard it)."""
  v = rng.integers(1, 7, size=shape) * (1 if dtype.is_unsigned else rng.choice([-1, 1], size=shape))
  return Tensor(v).cast(dtype).contiguous()


def _math(rng, d):
  x = rand(rng, 5, 7, dtype=d, low=0.1, high=4.0)
  y = rand(rng, 5, 7, dtype=d)
  return x.exp2() + x.log2() + y.sin() + x.sqrt() + y.reciprocal() + y.trunc() / x + (-y).maximum(y * 0.5)


def _divmod(rng, d):
  x, y = rand(rng, 5, 7, dtype=d, low=-50, high=50), rand(rng, 5, 7, dtype=d, low=-50, high=50)
  return x.idiv(nonzero(rng, 5, 7, dtype=d)) + y % nonzero(rng, 7, dtype=d)


def _bits(rng, d):
  x, amount = rand(rng, 5, 7, dtype=d, low=-9, high=9), rand(rng, 5, 7, dtype=d, low=0, high=9)
  return (x << amount) ^ (rand(rng, 5, 7, dtype=d, low=-99, high=99) >> 2) & rand(rng, 5, 7, dtype=d).bitwise_not()


def _wrap(rng, d):
  x = rand(rng, 5, 7, dtype=dtypes.int64, low=-70000, high=70000)
  narrow = x.cast(d)
  return narrow.cast(dtypes.int64) * 3 + (narrow < 1).cast(dtypes.int64) + (narrow + narrow).cast(dtypes.float32)


def _any_all(rng):
  """Rows that are all true, all false and mixed, so a wrong fold of bool partials shows."""
  cut = Tensor(np.array([-4.0, 4.0, 0.0, 2.9, -2.9, 1.0], np.float32)).reshape(6, 1)
  x = rand(rng, 6, 300) > cut
  return x.any(1).cast(dtypes.int32) * 2 + x.all(1).cast(dtypes.int32)


SPECIAL = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e-45, -1e-40, 3e38, -1.0, 0.5, 1.0, 2.0]


def _special(rng, d, part: str):
  """NaN, infinities, signed zeros and subnormals through compares and casts to bool (as int32 bit flags, so one NaN
  cannot hide the others), or through max and the math ops (stacked, one slot per op)."""
  x = Tensor(np.array(SPECIAL * 2, np.float64)).cast(d).reshape(4, 6)
  y = Tensor(np.array(SPECIAL[::-1] * 2, np.float64)).cast(d).reshape(4, 6)
  if part == "flags":
    bits = [x.cast(dtypes.bool), x < y, x != y, x == y, x.maximum(y) != x.maximum(y)]
    return sum((b.cast(dtypes.int32) << i for i, b in enumerate(bits)), Tensor(0, dtype=dtypes.int32))
  results = [x.maximum(y), x.exp2(), x.log2(), x.sqrt(), x.reciprocal(), x.trunc(), x.max(1, keepdim=True).expand(4, 6)]
  if d.itemsize > 2:
    results.append(x.sin())  # float16 and bfloat16 round 3e38 to inf
  return Tensor.stack(results)


def _assign(rng):
  t = rand(rng, 3, 40)
  return t.assign(t * 2 + 1)


POS, SHIFT = Variable("pos", 0, 9), Variable("shift", -4, 9)


def _variables(rng):
  """Values known at launch: arithmetic, a mask from a position, a window that starts there (int32 params)."""
  p = POS.bind(int(rng.integers(0, 9)))
  x = rand(rng, 10, 6)
  mask = (Tensor.arange(10) <= p).reshape(10, 1)
  return mask.where(x * p, x.shrink(((p, p + 1), None)).expand(10, 6)) + SHIFT.bind(-3)


def _variable_assign(rng):
  p = POS.bind(int(rng.integers(0, 9)))
  cache = rand(rng, 2, 10, 5)
  return cache.shrink((None, (p, p + 1), None)).assign(rand(rng, 2, 1, 5) - p)


GRAPHS = {
  "elementwise_chain": lambda r: ((rand(r, 37, 9) + rand(r, 37, 9)) * rand(r, 9) - 0.5).relu().sigmoid(),
  "broadcast_scalar": lambda r: rand(r, 3, 1, 5) * rand(r, 1, 4, 1) + 2.5,
  "sum_all_big": lambda r: rand(r, 1 << 18).sum(),
  "sum_rows": lambda r: rand(r, 300, 1000).sum(1),
  "sum_cols": lambda r: rand(r, 1000, 3).sum(0),
  "sum_middle": lambda r: rand(r, 4, 50, 6).sum(1),
  "mean_var": lambda r: rand(r, 20, 70).var(1),
  "max_min": lambda r: rand(r, 8, 65).max(1) - rand(r, 8, 65).min(1),
  "argmax": lambda r: rand(r, 6, 33).argmax(1),
  "matmul": lambda r: rand(r, 64, 32) @ rand(r, 32, 48),
  "matmul_bias_relu": lambda r: (rand(r, 33, 17) @ rand(r, 17, 65) + rand(r, 65)).relu(),
  "matmul_batched": lambda r: rand(r, 3, 9, 10) @ rand(r, 3, 10, 11),
  "matmul_even_bias": lambda r: (rand(r, 48, 20) @ rand(r, 20, 64) + rand(r, 64)).relu(),
  "matmul_batched_even": lambda r: rand(r, 2, 8, 6) @ rand(r, 2, 6, 12),
  "conv2d": lambda r: rand(r, 2, 3, 9, 9).conv2d(rand(r, 4, 3, 3, 3), padding=1),
  "max_pool": lambda r: rand(r, 2, 3, 9, 9).max_pool2d(),
  "avg_pool": lambda r: rand(r, 2, 3, 8, 8).avg_pool2d(),
  "softmax": lambda r: rand(r, 3, 5, 700).softmax(-1),
  "log_softmax": lambda r: rand(r, 16, 100).log_softmax(-1),
  "layernorm": lambda r: rand(r, 16, 300).layernorm(),
  "cross_entropy": lambda r: rand(r, 8, 10).cross_entropy(Tensor(r.integers(0, 10, size=(8,)))),
  "cumsum": lambda r: rand(r, 3, 40).cumsum(1),
  "movement": lambda r: rand(r, 4, 6).pad(((1, 1), (0, 2))).flip(0)[1:4, ::3].permute(1, 0).expand(3, 3) * 2,
  "pad_shrink_flip": lambda r: (rand(r, 5, 7).pad(((2, 0), (1, 3))) + 1).flip(1)[1:6, 2:9].exp(),
  "gather": lambda r: rand(r, 5, 6).gather(1, Tensor(r.integers(0, 6, size=(5, 3)))),
  "getitem_tensor": lambda r: rand(r, 7, 4)[Tensor(r.integers(-7, 7, size=(5,)))],
  "where": lambda r: (rand(r, 4, 9) > 0).where(rand(r, 4, 9), rand(r, 9)),
  "bool_logic": lambda r: ((rand(r, 4, 80) > 0) & (rand(r, 4, 80) < 1)).any(1) ^ (rand(r, 4, 80) > -2).all(1),
  "integer_mix": lambda r: (rand(r, 4, 8, dtype=dtypes.int32) // 3) % 5 ^ (rand(r, 4, 8, dtype=dtypes.int32) << 2),
  "assign": _assign,
  "any_all": _any_all,
  "contiguous_permute": lambda r: rand(r, 33, 65).permute(1, 0).contiguous() + 1,
  "variables": _variables,
  "variable_assign": _variable_assign,
}
for _d in ALL_DTYPES:
  for _e in ALL_DTYPES:
    # float -> unsigned of negative values is undefined in C (x86 scalar code wraps, AVX-512 gives all ones)
    _low = 0.0 if _d.is_float and _e.is_unsigned else -3.0
    GRAPHS[f"cast_{_d.name}_{_e.name}"] = lambda r, d=_d, e=_e, lo=_low: rand(r, 5, 7, dtype=d, low=lo).cast(e)
    if _d.itemsize == _e.itemsize and not _d.is_bool and not _e.is_bool and _d != _e:
      GRAPHS[f"bitcast_{_d.name}_{_e.name}"] = lambda r, d=_d, e=_e: rand(r, 5, 7, dtype=d).bitcast(e)
  if _d.is_bool:
    continue
  GRAPHS[f"arith_{_d.name}"] = lambda r, d=_d: (rand(r, 5, 7, dtype=d) * rand(r, 5, 7, dtype=d) -
                                                  rand(r, 7, dtype=d)).maximum(rand(r, 5, 7, dtype=d))
  GRAPHS[f"sum_{_d.name}"] = lambda r, d=_d: rand(r, 40, 80, dtype=d).sum(1, dtype=d)
  GRAPHS[f"max_{_d.name}"] = lambda r, d=_d: rand(r, 3, 800, dtype=d).max(1)
  GRAPHS[f"prod_{_d.name}"] = lambda r, d=_d: rand(r, 6, 5, dtype=d, low=-2, high=2).prod(0, dtype=d)
  GRAPHS[f"compare_{_d.name}"] = lambda r, d=_d: ((rand(r, 5, 7, dtype=d) < rand(r, 5, 7, dtype=d)) |
                                                    (rand(r, 5, 7, dtype=d) == rand(r, 7, dtype=d)))
  if _d.is_int and _d.itemsize < 8:  # wrapped values feed further arithmetic, not only a store
    GRAPHS[f"wrap_{_d.name}"] = lambda r, d=_d: _wrap(r, d)
  if _d.is_int:
    GRAPHS[f"divmod_{_d.name}"] = lambda r, d=_d: _divmod(r, d)
    GRAPHS[f"bits_{_d.name}"] = lambda r, d=_d: _bits(r, d)
  if _d.is_float:
    GRAPHS[f"math_{_d.name}"] = lambda r, d=_d: _math(r, d)
    GRAPHS[f"special_flags_{_d.name}"] = lambda r, d=_d: _special(r, d, "flags")
    GRAPHS[f"special_math_{_d.name}"] = lambda r, d=_d: _special(r, d, "math")


def build(name: str, seed: int = 0) -> Tensor:
  return GRAPHS[name](np.random.default_rng(seed))


def kernel_asts(t: Tensor) -> list[Node]:
  items = Scheduler(lambda n: n in realized).schedule([t.lazydata])
  return [item.ast for item in items if item.ast is not None]


def emulate(t: Tensor, rng: np.random.Generator, sources: list[str] | None = None) -> np.ndarray:
  """t computed by the PTX kernels of its schedule in the emulator (inputs from the CPU buffers); flat, as stored.
  Each kernel's PTX text is appended to `sources` when given."""
  items = Scheduler(lambda n: n in realized).schedule([t.lazydata])
  mem: dict[Node, np.ndarray] = {}

  def data(node: Node) -> np.ndarray:
    return mem[node] if node in mem else buffer_of(node).numpy().view(np.uint8).copy()

  for item in items:
    out = item.bufs[0]
    if item.kind == "empty":
      mem[out] = np.zeros(0, np.uint8)
    elif item.kind in ("alias", "copy"):
      mem[out] = data(item.bufs[1])
    else:
      if out.op is Ops.ASSIGN:
        target = data(_buffer_view(out.src[0])[0])
      else:  # random bytes: an element the kernel fails to write shows up as a mismatch
        target = rng.integers(0, 256, out.size * out.dtype.itemsize, dtype=np.uint8)
      name, src, info = render_ptx(lower_gpu(item.ast))
      if sources is not None:
        sources.append(src)
      PTXEmulator(src).run([target] + [data(n) for n in item.bufs[1:]], info.global_size[0], info.local_size[0],
                           tuple(item.var_vals[v] for v in info.vars))
      mem[out] = target
  return data(t.lazydata).view(t.dtype.np)


def _compare(t: Tensor, got: np.ndarray) -> None:
  want = t.numpy().reshape(-1)
  if t.dtype == dtypes.bfloat16:  # the emulator returns raw bits; Tensor.numpy gives bfloat16 values as float32
    got = (got.astype(np.uint32) << 16).view(np.float32)
  if not t.dtype.is_float:
    np.testing.assert_array_equal(got, want)
    return
  tol = TOLERANCE[t.dtype.name]
  np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol, equal_nan=True)


def _statements(node: Node, inside: bool = False):
  """(statement, inside an IF or LOOP) for every statement under a KERNEL."""
  for s in node.src:
    if s.op in (Ops.LOOP, Ops.IF, Ops.DEFACC, Ops.ACCUM, Ops.GSTORE, Ops.BLOCKREDUCE):
      yield s, inside
      if s.op in (Ops.LOOP, Ops.IF):
        yield from _statements(s, True)


# ---- every graph: lowering, geometry, ptxas, emulation ---------------------------------------------------------

@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_lowering_geometry_and_params(name):
  for ast in kernel_asts(build(name)):
    kernel = lower_gpu(ast)
    verify(kernel, "loop")
    info = kernel.arg
    assert isinstance(info, GPUKernelInfo)
    store = ast.src[0]
    outputs = math.prod(store.shape)
    threads, blocks = info.local_size[0], info.global_size[0]
    assert info.local_size[1:] == (1, 1) and info.global_size[1:] == (1, 1)
    assert threads % WARP == 0 and WARP <= threads <= 1024
    if info.plan == "thread":
      assert threads * blocks >= outputs > threads * (blocks - 1), "one thread per output, no spare block"
      if outputs % threads:
        assert kernel.src[0].op is Ops.IF and kernel.src[0].src[0].op is Ops.CMPLT, "spare threads need a guard"
    else:
      assert outputs % blocks == 0, "the block plan gives each block one outer index"
    for s, inside in _statements(kernel):
      assert not (s.op is Ops.BLOCKREDUCE and inside), "every thread of a block must reach a BLOCKREDUCE"
    params = {n.arg: n for n in ast.toposort() if n.op is Ops.PARAM}
    assert [d for d, _ in info.params] == [params[i].dtype for i in range(len(params))]
    assert [w for _, w in info.params] == [i == store.src[0].arg for i in range(len(params))]
    fn_name, src, got = render_ptx(kernel)
    assert got is info and fn_name == info.name
    entry = src[src.index(".entry"):src.index("\n{", src.index(".entry"))]
    assert entry.count(".param .u64") == len(info.params)
    assert [f".param .s32 {fn_name}_var_{v.name}" in entry for v in info.vars] == [True] * len(info.vars)
    assert [f"{fn_name}_p{i}" in entry for i in range(len(info.params))] == [True] * len(info.params)
    assert f".maxntid {threads}, 1, 1" in entry


@needs_ptxas
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_ptxas_assembles(name):
  for ast in kernel_asts(build(name)):
    _, src, _ = render_ptx(lower_gpu(ast))
    assert len(assemble(src)) > 0


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_emulated_ptx_matches_cpu(name, rng):
  t = build(name)
  _compare(t, emulate(t, rng))


@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=3), data=st.data(), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([dtypes.float32, dtypes.float16, dtypes.int32, dtypes.int8, dtypes.float64]),
       kind=st.sampled_from(["sum", "max", "softmax", "elementwise"]))
@settings(max_examples=examples(12))
def test_generated_shapes_match_cpu(shape, data, seed, dtype, kind):
  """Generated shapes (odd sizes: partial blocks and warps), axes and dtypes through both plans."""
  rng = np.random.default_rng(seed)
  axis = data.draw(st.integers(0, len(shape) - 1))
  x, y = rand(rng, *shape, dtype=dtype), rand(rng, shape[-1], dtype=dtype)
  if kind == "softmax" and dtype.is_float:
    t = (x * 0.5).softmax(axis)
  elif kind == "max":
    t = (x - y).max(axis)
  elif kind == "sum":
    t = (x * y).sum(axis, dtype=dtype)
  else:
    t = (x * y + x).maximum(y)
  _compare(t, emulate(t, rng))


# ---- plans on their own ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis,plan", [((300, 1000), 1, "block"), ((1000, 3), 0, "block"),
                                             ((100000, 3), 0, "block"), ((100, 20000), 0, "thread"),
                                             ((3, 5, 700), 2, "block"), ((512, 40), 1, "block"),
                                             ((1 << 20,), 0, "block")])
def test_reduce_plan_choice(shape, axis, plan, rng):
  asts = kernel_asts(Tensor(rng.standard_normal(shape).astype(np.float32)).sum(axis))
  kernel = lower_gpu(asts[-1])
  assert kernel.arg.plan == plan
  if plan == "block":
    assert kernel.arg.global_size[0] == math.prod(shape) // shape[axis]
    assert any(s.op is Ops.BLOCKREDUCE for s in kernel.src)


def test_matmul_register_tiles(rng):
  kernel = lower_gpu(kernel_asts(rand(rng, 256, 64) @ rand(rng, 64, 512))[-1])
  info = kernel.arg
  assert info.plan == "thread" and info.local_size[0] == BLOCK
  assert info.global_size[0] * BLOCK == 256 * 512 // 4, "a 1x4 tile of outputs per thread (>= 32768 threads)"
  nodes = kernel.toposort()
  loops = [n for n in nodes if n.op is Ops.LOOP]
  assert len(loops) == 1 and sum(s.op is Ops.ACCUM for s in loops[0].src) == 4, "one k loop feeds the whole tile"
  assert sum(n.op is Ops.GSTORE for n in nodes) == 4
  _, src, _ = render_ptx(kernel)
  body = src[src.index("$L1:"):src.index("bra $L1")]
  assert body.count("ld.global") == 1 + 4 and body.count("mul.f32") == 4, "one A load serves the tile's row"


def test_matmul_along_k_in_both_operands_takes_register_tiles(rng, monkeypatch):
  """x @ w.T with w stored (out, in), as nn.Linear keeps it: both loads run along k with stride 1, which alone would
  pick the block plan. With MIN_OUTPUTS outputs or more, a block per output (each folding one short row) is refused
  for the tiled thread plan; emulated on a small case with the thresholds lowered to reach the same choice."""
  kernel = lower_gpu(kernel_asts(rand(rng, 512, 128) @ rand(rng, 512, 128).T)[-1])
  info = kernel.arg
  assert info.plan == "thread" and info.global_size[0] * info.local_size[0] * 8 == 512 * 512, "4x2 tiles"
  assert sum(n.op is Ops.GSTORE for n in kernel.toposort()) == 8
  few = lower_gpu(kernel_asts(rand(rng, 64, 128) @ rand(rng, 64, 128).T)[-1])
  assert few.arg.plan == "block" and few.arg.global_size == (64 * 64, 1, 1), "4096 outputs: a block each"
  monkeypatch.setattr(lower_gpu_module, "MIN_OUTPUTS", 64)
  monkeypatch.setattr(lower_gpu_module, "MIN_TILED_THREADS", 8)
  t = rand(rng, 12, 40) @ rand(rng, 16, 40).T
  assert lower_gpu(kernel_asts(t)[-1]).arg.plan == "thread"
  np.testing.assert_allclose(emulate(t, rng), t.numpy().reshape(-1), rtol=1e-5, atol=1e-5)


TILED = ["matmul", "matmul_even_bias", "matmul_batched_even", "conv2d", "sum_cols", "cast_float32_int8"]


@pytest.mark.parametrize("name", TILED)
def test_register_tiles_on_small_shapes_match_cpu(name, rng, monkeypatch):
  """The tiled thread plan (normally for large outputs) forced on the small graphs, and emulated."""
  monkeypatch.setattr(lower_gpu_module, "MIN_TILED_THREADS", 16)
  t = build(name)
  tiled = [lower_gpu(ast) for ast in kernel_asts(t)]
  if name.startswith(("matmul", "conv")):
    assert any(sum(n.op is Ops.GSTORE for n in k.toposort()) > 1 for k in tiled), "some kernel is tiled"
  got = emulate(t, rng).view(t.dtype.np)
  np.testing.assert_allclose(got.astype(np.float64), t.numpy().reshape(-1).astype(np.float64), rtol=1e-4, atol=1e-4)


def test_softmax_epilogue_runs_in_the_reduce_block(rng):
  asts = kernel_asts(rand(rng, 3, 700).softmax(-1))
  kernel = lower_gpu(asts[-1])
  assert kernel.arg.plan == "block" and kernel.arg.global_size == (3, 1, 1)
  loops = [s for s in kernel.src if s.op is Ops.LOOP]
  assert any(any(x.op is Ops.GSTORE for x in s.toposort()) for s in loops), "threads stride over the row to store"


def test_index_math_is_32_bit_when_it_fits(rng):
  _, src, _ = render_ptx(lower_gpu(kernel_asts(rand(rng, 64, 70) + 1)[0]))
  assert "mad.wide.s32" in src and "mul.lo.s64" not in src and "div.s64" not in src


# ---- Variables: int32 parameters, one kernel text for every value ----------------------------------------------

ROWS = 40
# name: (Variable, the values to run, input shape, the graph of (input, bound Variable), numpy of (input, value))
VARIABLE_CASES = {
  "mask": (Variable("n", 0, ROWS), (0, 1, 17, ROWS), (ROWS,),
           lambda x, v: (Tensor.arange(ROWS) < v).cast(dtypes.int32), lambda x, k: (np.arange(ROWS) < k)),
  "scale": (Variable("k", -50, 50), (-50, -3, 0, 7, 50), (ROWS, 6), lambda x, v: x * v - v, lambda x, k: x * k - k),
  "gather_row": (Variable("row", -20, ROWS - 21), (-20, -1, 0, ROWS - 21), (ROWS, 6),
                 lambda x, v: (Tensor.arange(ROWS).reshape(ROWS, 1) - 20 == v).where(x, 0.0).sum(0),
                 lambda x, k: x[k + 20]),
  "window": (Variable("row", 0, ROWS - 1), (0, 5, ROWS - 1), (ROWS, 6),
             lambda x, v: x.shrink(((v, v + 1), None)) * 2, lambda x, k: x[k:k + 1] * 2),
  "int_index": (Variable("step", 0, 1000), (0, 3, 999), (ROWS,),
                lambda x, v: (Tensor.arange(ROWS) * v + 3) % 7, lambda x, k: (np.arange(ROWS) * k + 3) % 7),
  "prefix_sum": (Variable("n", 0, 700), (0, 1, 350, 700), (8, 700),
                 lambda x, v: (x * (Tensor.arange(700) < v)).sum(1), lambda x, k: x[:, :k].sum(1)),
  "sum_plus_value": (Variable("k", -9, 9), (-9, 0, 4), (ROWS, 6),
                     lambda x, v: (x + v).sum() * v, lambda x, k: (x.astype(np.float64) + k).sum() * k),
}


def check_variable_case(case: str, rng, run) -> list[str]:
  """Runs VARIABLE_CASES[case] for each of its values through `run(t, rng) -> (flat result, kernel sources)` (a
  device's renderer and executor) against numpy; the sources must be the same for every value (the value is a
  kernel parameter, not part of the code). Returns them."""
  var, values, shape, graph, reference = VARIABLE_CASES[case]
  data = rng.standard_normal(shape).astype(np.float32)
  x = Tensor(data)
  texts = None
  for k in values:
    t = graph(x, var.bind(k))
    got, sources = run(t, rng)
    got, want = got.reshape(t.shape), np.asarray(reference(data, k))
    if t.dtype.is_float:
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=f"{var.name}={k}")
    else:
      np.testing.assert_array_equal(got, want.astype(t.dtype.np), err_msg=f"{var.name}={k}")
    texts = sources if texts is None else texts
    assert sources == texts, f"{var.name}={k} rendered different code: the value leaked into it"
  return texts


def _run_variable_case(case: str, rng) -> list[str]:
  """check_variable_case on the PTX emulator; each kernel that reads the Variable loads it once (ld.param.s32)."""
  var = VARIABLE_CASES[case][0]

  def run(t, rng):
    sources: list[str] = []
    got = emulate(t, rng, sources)
    reads = [src.count(f"_var_{var.name}];") for src in sources]
    assert max(reads) == 1 and all(n <= 1 for n in reads), f"one ld.param.s32 per kernel that reads it: {reads}"
    return got, sources
  return check_variable_case(case, rng, run)


@pytest.mark.parametrize("case", sorted(VARIABLE_CASES))
def test_variable_kernels_match_numpy_for_every_value(case, rng):
  _run_variable_case(case, rng)


@needs_ptxas
@pytest.mark.parametrize("case", sorted(VARIABLE_CASES))
def test_variable_kernels_assemble(case, rng):
  for src in _run_variable_case(case, rng):
    assert len(assemble(src)) > 0


def test_variable_param_follows_the_buffers(rng):
  """The entry's parameters: every buffer pointer, then one .s32 per Variable in info.vars order (sorted by name)."""
  a, b = Variable("b_second", 0, 9), Variable("a_first", -5, 5)
  x = rand(rng, 3, 4)
  kernel = lower_gpu(kernel_asts(x * a.bind(2) + b.bind(-1) + rand(rng, 3, 4))[-1])
  name, src, info = render_ptx(kernel)
  assert info.vars == (b, a)
  entry = src[src.index(".entry"):src.index(")", src.index(".entry"))]
  params = [line.split()[-1].rstrip(",") for line in entry.splitlines()[1:]]
  assert params == [f"{name}_p{i}" for i in range(len(info.params))] + [f"{name}_var_a_first", f"{name}_var_b_second"]
  assert "ld.param.s32" in src and src.count("ld.param.s32") == 2


def test_emulator_refuses_values_that_do_not_fit_int32(rng):
  _, src, info = render_ptx(lower_gpu(kernel_asts(rand(rng, 40) * Variable("k", 0, 9).bind(2))[-1]))
  bufs = [np.zeros(160, np.uint8), np.zeros(160, np.uint8)]
  with pytest.raises(EmulatorError, match=r"takes 2 buffers and 1 values \['\w+_var_k'\]; got 2 and 0"):
    PTXEmulator(src).run(bufs, info.global_size[0], info.local_size[0], ())
  with pytest.raises(EmulatorError, match="int32"):
    PTXEmulator(src).run(bufs, info.global_size[0], info.local_size[0], (1 << 31,))
  PTXEmulator(src).run(bufs, info.global_size[0], info.local_size[0], (-(1 << 31),))


def test_render_rejects_cpu_kernels(rng):
  with pytest.raises(ValueError, match="lower_gpu"):
    render_ptx(lower(kernel_asts(rand(rng, 4, 4) + 1)[0]))


# ---- IR additions: verifier and printer -------------------------------------------------------------------------

def _loop_kernel(*stmts: Node) -> Node:
  return Node(Ops.KERNEL, dtypes.index, stmts, None)


def test_verifier_rejects_bad_gpu_nodes():
  acc = Node(Ops.DEFACC, dtypes.float32, (Node(Ops.CONST, dtypes.float32, (), 0.0),), ("acc", 1))
  tid = Node(Ops.THREADIDX, dtypes.index, (), (0, 32))
  bad = [
    Node(Ops.IF, dtypes.index, (Node(Ops.CONST, dtypes.int32, (), 1),)),  # gate must be bool
    Node(Ops.BLOCKREDUCE, dtypes.float32, (tid,), Ops.ADD),  # folds a DEFACC
    Node(Ops.BLOCKREDUCE, dtypes.float32, (acc,), Ops.SUB),  # ADD, MUL or MAX
  ]
  for node in bad:
    with pytest.raises(IRError):
      verify(_loop_kernel(node), "loop")
  for arg in ((3, 32), (0, 0), 7):
    store = Node(Ops.GSTORE, dtypes.index, (Node(Ops.PARAM, dtypes.int64, (), 0), Node(Ops.THREADIDX, dtypes.index,
                                                                                       (), arg), tid))
    with pytest.raises(IRError):
      verify(_loop_kernel(store), "loop")
  with pytest.raises(IRError):  # GPU nodes are loop level only
    verify(Node(Ops.SINK, dtypes.float32, (tid,)), "kernel")


def test_printer_names_gpu_nodes(rng):
  text = print_ir(lower_gpu(kernel_asts(rand(rng, 4, 300).sum(1))[-1]))
  assert "BLOCKREDUCE" in text and "THREADIDX" in text and "BLOCKIDX" in text and "[ADD]" in text


# ---- ptxas and the emulator themselves -------------------------------------------------------------------------

def test_find_ptxas_gives_an_executable_or_none():
  assert PTXAS is None or PTXAS.endswith("ptxas")


@needs_ptxas
def test_assemble_error_names_the_line():
  with pytest.raises(RuntimeError, match=r"ptxas -arch=sm_90 failed(.|\n)*bogus\.instr"):
    assemble(".version 8.0\n.target sm_90\n.address_size 64\n.visible .entry k()\n{\n  bogus.instr;\n  ret;\n}\n")


_UNGUARDED = """.version 8.0
.target sm_90
.address_size 64
.visible .entry k(
  .param .u64 k_p0
) .maxntid 32, 1, 1
{
  .reg .pred %p<2>;
  .reg .b32 %r<3>;
  .reg .b64 %rd<4>;
  ld.param.u64 %rd1, [k_p0];
  cvta.to.global.u64 %rd2, %rd1;
  mov.u32 %r1, %tid.x;
  setp.lt.u32 %p1, %r1, 4;
  @!%p1 bra $L1;
  BODY
$L1:
  ret;
}
"""


def test_emulator_catches_out_of_bounds_and_divergent_barriers():
  store = "mad.wide.s32 %rd3, %r1, 4, %rd2;\n  st.global.u32 [%rd3], %r1;"
  buf = np.zeros(16, np.uint8)
  PTXEmulator(_UNGUARDED.replace("BODY", store)).run([buf], 1, 32)  # threads 0..3 write words 0..3
  np.testing.assert_array_equal(buf.view(np.uint32), [0, 1, 2, 3])
  with pytest.raises(EmulatorError, match="out of bounds"):
    PTXEmulator(_UNGUARDED.replace("BODY", store).replace("@!%p1 bra $L1;", "")).run([buf], 1, 32)
  with pytest.raises(EmulatorError, match="bar.sync"):
    PTXEmulator(_UNGUARDED.replace("BODY", "bar.sync 0;")).run([buf], 1, 32)


@pytest.fixture
def emulated_nv(monkeypatch):
  """DEV=NV as the PTX emulator for one test (NV_EMULATE=1): a fresh NV device and no NV kernels cached; the device
  and the kernels cached before are put back after."""
  from frontend.device import Device
  from frontend.realize import kernel_cache
  from frontend.runtime.nv import NVEmuRuntime
  before = Device._opened.pop("NV", None)
  saved = {k: v for k, v in kernel_cache.items() if k[0] == "NV"}
  for k in saved:
    del kernel_cache[k]
  monkeypatch.setenv("NV_EMULATE", "1")
  try:
    assert isinstance(Device["NV"], NVEmuRuntime)
    yield Device["NV"]
  finally:
    Device._opened.pop("NV", None)
    if before is not None:
      Device._opened["NV"] = before
    for k in [k for k in kernel_cache if k[0] == "NV"]:
      del kernel_cache[k]
    kernel_cache.update(saved)


def test_nv_emulate_runs_the_frontend_on_the_ptx_emulator(emulated_nv, rng):
  """NV_EMULATE=1 makes DEV=NV a PTX-emulator device (frontend/runtime/nv.py NVEmuRuntime): the same renderer's
  kernels, run lane by lane, agree with numpy (the whole frontend suite runs this way with NV_EMULATE=1 DEV=NV)."""
  a = rng.standard_normal((33, 20)).astype(np.float32)
  b = rng.standard_normal((20, 7)).astype(np.float32)
  got = (Tensor(a, device="NV") @ Tensor(b, device="NV")).relu().sum(0).numpy()
  np.testing.assert_allclose(got, np.maximum(a.astype(np.float64) @ b, 0).sum(0), rtol=1e-5, atol=1e-5)


def test_nv_emulate_jit_replays_variables_without_compiling(emulated_nv, rng):
  """A TinyJit step on the emulated NV device with a BoundVariable argument: captured once, then every call replays
  the captured kernels with the call's value (NVEmuProgram gets it after the buffers), compiles nothing and matches
  numpy, the value read as arithmetic, a mask, a window start and inside a reduction."""
  from frontend import realize
  from frontend.jit import TinyJit
  pos = Variable("pos", 0, 31)
  data = rng.standard_normal((32, 8)).astype(np.float32)
  x = Tensor(data, device="NV").realize()
  traced = []

  @TinyJit
  def step(x, p):
    traced.append(p.value)
    mask = (Tensor.arange(32, device="NV") <= p).reshape(32, 1)
    return ((x * p + mask).sum(1) + x.shrink(((p, p + 1), None)).sum()).realize()

  compiled = None
  for i, p in enumerate((3, 0, 31, 17, 3, 9)):
    got = step(x, pos.bind(p)).numpy()
    want = (data.astype(np.float64) * p + (np.arange(32) <= p)[:, None]).sum(1) + data[p].astype(np.float64).sum()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=f"pos={p}")
    if i == 1:
      compiled = realize.STATS["compiles"]
  assert traced == [3, 0], "calls after the capture replay it instead of running the function"
  assert realize.STATS["compiles"] == compiled, "a new value compiled a new kernel"
  assert step.graph is None and any(item.info.vars for item in step.captured), "replayed item by item, with values"
