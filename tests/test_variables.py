"""Variables: named int32 values known at launch (compiler.ir.Variable, BIND -> VAR).

A kernel that reads a Variable is compiled once and runs for every value; TinyJit replays patch the value in place.
Results are compared with numpy on the default device (CPU here; NV_EMULATE / AMD_EMULATE runs cover the GPU
renderers through the same tests).
"""
from __future__ import annotations

import numpy as np
import pytest

from compiler import symbolic as sym
from compiler.dtypes import dtypes
from compiler.ir import Node, Ops, Variable, print_ir
from compiler.schedule import Scheduler
from frontend import realize
from frontend.jit import JitError, TinyJit
from frontend.tensor import Tensor


def compiles() -> int:
  return realize.STATS["compiles"]


@pytest.fixture
def x():
  return Tensor(np.arange(12, dtype=np.float32) - 5).realize()


# ---- the Variable itself ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, lo, hi, words", [
  ("not a name", 0, 1, "identifier"), ("pos", 5, 4, "lo=5, hi=4"), ("pos", 0, 1 << 31, "2147483647"),
  ("pos", 0.5, 3, "must be ints"), ("pôs", 0, 3, "ASCII"),
])
def test_bad_variable_is_refused(name, lo, hi, words):
  with pytest.raises(ValueError, match=words):
    Variable(name, lo, hi)


def test_bind_checks_the_bounds():
  v = Variable("pos", 0, 9)
  assert v.bind(9).value == 9
  with pytest.raises(ValueError, match=r"value 10 is outside its bounds \[0, 9\]"):
    v.bind(10)
  with pytest.raises(ValueError, match="not an int"):
    v.bind(2.5)
  with pytest.raises(ValueError, match="not an int"):
    v.bind(True)
  assert v.bind(np.int64(3)).value == 3


def test_bounds_of_a_var_are_its_range():
  v = Variable("n", -4, 17)
  node = Node(Ops.VAR, dtypes.int32, (), v)
  assert sym.bounds(node) == (-4, 17)
  assert sym.bounds(Node(Ops.CAST, dtypes.int64, (node,))) == (-4, 17)
  wide = sym.bounds(Node(Ops.CAST, dtypes.uint32, (node,)))
  assert wide != (-4, 17)  # a negative value wraps: no bound is claimed


# ---- values in kernels --------------------------------------------------------------------------------------------

def test_elementwise_value_compiles_once(x):
  v = Variable("k", -100, 100)
  base = x.numpy()
  got = (x * v.bind(3) + 1).numpy()
  np.testing.assert_array_equal(got, base * 3 + 1)
  before = compiles()
  for k in (-7, 0, 42):
    np.testing.assert_array_equal((x * v.bind(k) + 1).numpy(), base * k + 1)
  assert compiles() == before


def test_kernel_text_does_not_hold_the_value(x):
  v = Variable("k", 0, 100)
  texts = []
  for k in (3, 4):
    items = Scheduler(lambda n: n in realize.realized).schedule([(x + v.bind(k)).lazydata])
    (item,) = [i for i in items if i.kind == "kernel"]
    assert item.var_vals == {v: k}
    texts.append(print_ir(item.ast))
  assert texts[0] == texts[1]
  assert "VAR" in texts[0] and "k[0..100]" in texts[0]


def test_masks_and_picks_from_a_position():
  v = Variable("pos", 0, 15)
  cache = np.random.default_rng(0).standard_normal(16).astype(np.float32)
  new = np.float32(9.5)
  arange = Tensor.arange(16)
  t_cache = Tensor(cache).realize()
  for pos in (0, 5, 15):
    p = v.bind(pos)
    np.testing.assert_array_equal((arange <= p).numpy(), np.arange(16) <= pos)
    written = (arange == p).where(Tensor(new), t_cache).numpy()  # the KV-cache write of a decode step
    want = cache.copy()
    want[pos] = new
    np.testing.assert_array_equal(written, want)
    picked = ((arange == p).cast(dtypes.float32) * t_cache).sum().item()  # cache[pos], through a reduction
    assert picked == cache[pos]


def test_value_inside_a_reduction(x):
  v = Variable("s", -3, 3)
  base = x.numpy()
  for s in (-3, 1, 2):
    np.testing.assert_allclose((x * v.bind(s)).sum().numpy(), (base * s).sum())
    np.testing.assert_array_equal((x.reshape(3, 4) + v.bind(s)).max(1).numpy(), (base.reshape(3, 4) + s).max(1))


def test_a_tensor_of_a_variable():
  v = Variable("n", -50, 50)
  assert Tensor(v.bind(7)).item() == 7
  assert Tensor(v.bind(-7)).dtype == dtypes.int32
  t = Tensor(v.bind(-7), dtype=dtypes.float32)
  assert t.dtype == dtypes.float32 and t.item() == -7.0


@pytest.mark.parametrize("dtype", [dtypes.int8, dtypes.int32, dtypes.float16, dtypes.float32])
def test_a_variable_types_as_a_python_int(dtype):
  v = Variable("k", 0, 100)
  t = Tensor(np.array([1, 2, 3]), dtype=dtype)
  assert (t + v.bind(5)).dtype == (t + 5).dtype
  np.testing.assert_array_equal((t + v.bind(5)).numpy(), (t + 5).numpy())


def test_gradient_through_a_variable_factor():
  v = Variable("k", 0, 10)
  w = Tensor(np.ones(4, np.float32), requires_grad=True)
  (w * v.bind(6)).sum().backward()
  np.testing.assert_array_equal(w.grad.numpy(), np.full(4, 6, np.float32))


def test_one_variable_two_values_in_one_kernel(x):
  v = Variable("k", 0, 10)
  with pytest.raises(ValueError, match="bound to 1 and to 2 in one kernel"):
    (x + v.bind(1) + v.bind(2)).realize()


def test_two_variables_with_one_name_in_one_kernel(x):
  a, b = Variable("k", 0, 10), Variable("k", 0, 20)
  with pytest.raises(ValueError, match=r"two Variables named k: k\[0..10\] and k\[0..20\]"):
    (x + a.bind(1) + b.bind(2)).realize()


def test_two_variables_in_one_kernel(x):
  a, b = Variable("b", 0, 10), Variable("a", 0, 10)  # parameters go by name: a before b
  base = x.numpy()
  for i, j in ((1, 2), (7, 3)):
    np.testing.assert_array_equal((x * a.bind(i) - b.bind(j)).numpy(), base * i - j)


# ---- TinyJit: symbolic slots -------------------------------------------------------------------------------------

def test_jit_replays_new_values_without_capturing_again(x):
  v = Variable("pos", 0, 64)
  calls = []

  @TinyJit
  def step(t, pos):
    calls.append(pos.value)
    return ((t + pos) * (Tensor.arange(12) < pos).cast(dtypes.float32)).realize()

  base = x.numpy()
  results = {}
  for pos in (3, 4, 9, 0, 12, 4):
    results[pos] = step(x, v.bind(pos)).numpy().copy()
    np.testing.assert_array_equal(results[pos], (base + pos) * (np.arange(12) < pos))
    if pos == 4 and len(calls) == 2:
      before = compiles()
  assert calls == [3, 4]  # the function ran for the warm-up and the capture only
  assert compiles() == before
  assert len(step.captures) == 1


def test_jit_var_with_two_values_is_refused(x):
  v = Variable("pos", 0, 64)
  step = TinyJit(lambda t, a, b: (t + a).realize())
  with pytest.raises(JitError, match="Variable pos passed twice, bound to 1 and 2"):
    step(x, v.bind(1), v.bind(2))


def test_jit_without_its_variable_captures_again(x):
  v = Variable("pos", 0, 64)

  @TinyJit
  def step(t, pos=None):
    return (t + (pos if pos is not None else 100)).realize()

  base = x.numpy()
  for k in (1, 2, 3):
    np.testing.assert_array_equal(step(x, v.bind(k)).numpy(), base + k)
  np.testing.assert_array_equal(step(x).numpy(), base + 100)  # a new signature: no Variable
  np.testing.assert_array_equal(step(x, v.bind(5)).numpy(), base + 5)
  assert len(step.captures) == 2


def test_variable_on_several_devices_is_refused():
  v = Variable("k", 0, 9)
  t = Tensor(np.ones(4, np.float32), device=("CPU", "CPU:1"))
  with pytest.raises(NotImplementedError, match="Variable k on several devices"):
    t + v.bind(1)
  with pytest.raises(NotImplementedError, match="at a Variable of a tensor on several devices"):
    t.shrink(((v.bind(1), v.bind(1) + 1),))


# ---- views that start at a Variable ------------------------------------------------------------------------------

def test_row_at_a_variable_compiles_once():
  v = Variable("row", 0, 7)
  data = np.arange(32, dtype=np.float32).reshape(8, 4)
  t = Tensor(data).realize()
  before = None
  for r in (0, 3, 7, 1):
    got = (t.shrink(((v.bind(r), v.bind(r) + 1), None)) * 2).numpy()
    np.testing.assert_array_equal(got, data[r:r + 1] * 2)
    before = compiles() if before is None else before
  assert compiles() == before
  w = Variable("w", 0, 4)
  window = t.shrink(((w.bind(2) + 1, w.bind(2) + 4), (1, 3)))  # an Offset start, a width of 3
  np.testing.assert_array_equal(window.numpy(), data[3:6, 1:3])


def test_assign_into_a_row_at_a_variable():
  pos = Variable("pos", 0, 5)
  cache = Tensor.zeros(2, 6, 3).contiguous().realize()
  want = np.zeros((2, 6, 3), np.float32)
  before = None
  for p in (1, 4, 0, 5):
    new = np.full((2, 1, 3), p + 0.5, np.float32)
    cache.shrink((None, (pos.bind(p), pos.bind(p) + 1), None)).assign(Tensor(new)).realize()
    want[:, p:p + 1] = new
    np.testing.assert_array_equal(cache.numpy(), want)
    if before is None:
      before = compiles()
  assert compiles() == before


def test_two_variables_in_one_view():
  a, b = Variable("a", 0, 3), Variable("b", 0, 2)
  data = np.arange(60, dtype=np.float32).reshape(4, 3, 5)
  t = Tensor(data).realize()
  for i, j in ((0, 0), (3, 2), (1, 1)):
    got = t.shrink(((a.bind(i), a.bind(i) + 1), (b.bind(j), b.bind(j) + 1), None)).sum().item()
    assert got == data[i, j].sum()


def test_a_variable_window_of_a_padded_tensor():
  v = Variable("s", 0, 6)
  data = np.arange(1, 7, dtype=np.float32)
  padded = Tensor(data).pad(((2, 2),))  # 0 0 1 2 3 4 5 6 0 0
  want = np.pad(data, (2, 2))
  for s in (0, 3, 6):
    np.testing.assert_array_equal(padded.shrink(((v.bind(s), v.bind(s) + 4),)).numpy(), want[s:s + 4])


def test_variable_window_in_a_jit_step():
  pos = Variable("pos", 0, 9)
  table = np.random.default_rng(1).standard_normal((10, 4)).astype(np.float32)
  t = Tensor(table).realize()
  step = TinyJit(lambda p: (t.shrink(((p, p + 1), None)) * 3).sum().realize())
  values = [step(pos.bind(p)).item() for p in (2, 5, 9, 0, 7)]
  np.testing.assert_allclose(values, [table[p].sum() * 3 for p in (2, 5, 9, 0, 7)], rtol=1e-6)
  assert len(step.captures) == 1 and step.cnt == 2


@pytest.mark.parametrize("window, words", [
  (lambda v: (v, v + 3), "spans \\[0, 10\\), outside \\[0, 8\\]"),
  (lambda v: (0, v), "width .* depends on a Variable"),
])
def test_bad_variable_window_is_refused(window, words):
  v = Variable("v", 0, 7)
  with pytest.raises(ValueError, match=words):
    Tensor.zeros(8).shrink((window(v.bind(1)),))


def test_gradient_of_a_variable_window_is_refused():
  v = Variable("v", 0, 3)
  w = Tensor(np.ones(4, np.float32), requires_grad=True)
  with pytest.raises(NotImplementedError, match="gradient of a shrink at a Variable"):
    w.shrink(((v.bind(1), v.bind(1) + 1),)).sum().backward()


def test_offsets_are_values_too(x):
  """`pos + 1`, `2 * a - b`: affine expressions of bound Variables enter arithmetic as int32 values, and a TinyJit
  argument that is one patches its Variables on replay."""
  a, b = Variable("a", 0, 9), Variable("b", -5, 5)
  base = x.numpy()
  np.testing.assert_array_equal((x + (a.bind(3) * 2 - b.bind(-4))).numpy(), base + 10)
  assert Tensor(a.bind(7) - 9).item() == -2
  np.testing.assert_array_equal((Tensor.arange(6) < a.bind(2) + 1).numpy(), np.arange(6) < 3)
  step = TinyJit(lambda t, p: (t * p).realize())
  for k in (1, 4, 0, 9):
    np.testing.assert_array_equal(step(x, a.bind(k) + 1).numpy(), base * (k + 1))
  assert len(step.captures) == 1
