"""Reductions against numpy (values) and torch (gradients): sum prod max min mean var std argmax argmin any all
cumsum cumprod logsumexp softmax log_softmax, with axis None / int / negative / tuple and keepdim."""
import numpy as np
import pytest
import torch
from conftest import (FLOAT_DTYPES, INT_DTYPES, assert_close, check_grad, examples, float_dtypes, full_range_array,
                      make_tensor, random_array, seeds)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from frontend import Tensor, dtypes

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=7)


@pytest.mark.parametrize("dtype", [dtypes.bool, dtypes.int32, dtypes.uint8, dtypes.float32])
def test_boolean_max_is_or_in_every_lane(dtype):
  """all() is not(max(not x)): GCC 12.2 -O3 turned a max over _Bool into a signed vector max of all-ones masks, so
  one zero among eight (2x4, the falsifying example hypothesis found on an AVX2 host) left all() true. Booleans
  max and min as or and and now; every position of the zero is checked."""
  for size in (8, 33):
    for zero in range(size):
      x = np.full(size, 3, dtype.np)
      x[zero] = 0
      t = make_tensor(x.reshape(1, size), dtype)
      assert not t.all().item() and t.any().item(), (size, zero)
      assert (t != 0).max().item() and not (t != 0).min().item(), (size, zero)
  np.testing.assert_array_equal(make_tensor(np.array([[3, 3, 0, 3], [3, 3, 3, 3]], dtype.np), dtype).all(1).numpy(),
                                [False, True])


@st.composite
def shape_axis_keepdim(draw, allow_tuple: bool = True, allow_none: bool = True):
  """(shape, axis, keepdim): axis is None, an int (maybe negative) or a tuple of distinct axes (maybe negative)."""
  shape = draw(shapes if allow_none else hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=7))
  ndim = len(shape)
  kinds = (["none"] if allow_none else []) + (["int", "tuple"] if allow_tuple else ["int"]) if ndim else ["none"]
  kind = draw(st.sampled_from(kinds))
  if kind == "none":
    axis = None
  elif kind == "int":
    axis = draw(st.integers(-ndim, ndim - 1))
  else:
    axes = draw(st.lists(st.integers(0, ndim - 1), unique=True, min_size=1, max_size=ndim))
    axis = tuple(a - ndim if draw(st.booleans()) else a for a in axes)
  return shape, axis, draw(st.booleans())


def torch_dims(axis, ndim: int):
  if axis is None:
    return tuple(range(ndim))
  return axis if isinstance(axis, tuple) else (axis,)


# name -> (ours(t, axis, keepdim), numpy(x, axis, keepdim) on float64, (low, high) data range, tolerance scale)
FLOAT_REDUCES = {
  "sum": (lambda t, a, k: t.sum(a, keepdim=k), lambda x, a, k: x.sum(a, keepdims=k), (-3, 3), 4),
  "prod": (lambda t, a, k: t.prod(a, keepdim=k), lambda x, a, k: x.prod(a, keepdims=k), (0.7, 1.3), 8),
  "max": (lambda t, a, k: t.max(a, keepdim=k), lambda x, a, k: x.max(a, keepdims=k), (-3, 3), 1),
  "min": (lambda t, a, k: t.min(a, keepdim=k), lambda x, a, k: x.min(a, keepdims=k), (-3, 3), 1),
  "mean": (lambda t, a, k: t.mean(a, keepdim=k), lambda x, a, k: x.mean(a, keepdims=k), (-3, 3), 4),
  "var": (lambda t, a, k: t.var(a, keepdim=k), lambda x, a, k: _var(x, a, k, 1), (-3, 3), 8),
  "var0": (lambda t, a, k: t.var(a, keepdim=k, correction=0), lambda x, a, k: _var(x, a, k, 0), (-3, 3), 8),
  "std": (lambda t, a, k: t.std(a, keepdim=k), lambda x, a, k: np.sqrt(_var(x, a, k, 1)), (-3, 3), 8),
  "logsumexp": (lambda t, a, k: t.logsumexp(a, keepdim=k), lambda x, a, k: _logsumexp(x, a, k), (-3, 3), 4),
}


def _var(x, axis, keepdim, correction):
  n = x.size if axis is None else int(np.prod([x.shape[a] for a in np.atleast_1d(axis)]))
  with np.errstate(all="ignore"):
    return x.var(axis, keepdims=keepdim) * n / np.float64(n - correction)  # 0 / 0 = nan for one element


def _logsumexp(x, axis, keepdim):
  m = x.max(axis, keepdims=True)
  out = np.log(np.exp(x - m).sum(axis, keepdims=True)) + m
  return out if keepdim else out.reshape(np.sum(x, axis, keepdims=False).shape)


TORCH_REDUCES = {
  "sum": lambda t, d, k: t.sum(d, keepdim=k), "prod": lambda t, d, k: _torch_prod(t, d, k),
  "max": lambda t, d, k: t.amax(d, keepdim=k), "min": lambda t, d, k: t.amin(d, keepdim=k),
  "mean": lambda t, d, k: t.mean(d, keepdim=k), "var": lambda t, d, k: t.var(d, keepdim=k),
  "var0": lambda t, d, k: t.var(d, keepdim=k, correction=0), "std": lambda t, d, k: t.std(d, keepdim=k),
  "logsumexp": lambda t, d, k: t.logsumexp(d, keepdim=k),
}


def _torch_prod(t, dims, keepdim):
  for d in sorted((d % max(t.ndim, 1) for d in dims), reverse=True):
    t = t.prod(d, keepdim=True)
  return t if keepdim else t.reshape([s for i, s in enumerate(t.shape) if i not in {d % t.ndim for d in dims}])


@pytest.mark.parametrize("name", list(FLOAT_REDUCES))
@given(case=shape_axis_keepdim(), dtype=float_dtypes, seed=seeds)
@settings(max_examples=examples(8))
def test_float_reduce_values(name, case, dtype, seed):
  shape, axis, keepdim = case
  ours, ref, (low, high), scale = FLOAT_REDUCES[name]
  x = random_array(np.random.default_rng(seed), shape, dtype, low, high)
  out = ours(make_tensor(x, dtype), axis, keepdim)
  want = ref(x.astype(np.float64), axis, keepdim)
  # float16/bfloat16 round the result once more, and sums of many rounded terms drift: scale with the count
  count = x.size / max(np.size(want), 1)
  assert_close(out, want, dtype, scale=scale * (1 + count / 16 if dtype.itemsize == 2 else 1))


@pytest.mark.parametrize("name", list(FLOAT_REDUCES))
@given(case=shape_axis_keepdim(), seed=seeds)
@settings(max_examples=examples(4))
def test_reduce_grad(name, case, seed):
  shape, axis, keepdim = case
  rng = np.random.default_rng(seed)
  ours, _, (low, high), scale = FLOAT_REDUCES[name]
  count = int(np.prod([shape[a] for a in torch_dims(axis, len(shape))]))
  if name in ("var", "std") and count <= 1:
    return  # 0/0: torch gives nan, a test of nothing
  x = random_array(rng, shape, dtypes.float32, low, high)
  dims = torch_dims(axis, len(shape))
  theirs = TORCH_REDUCES[name]
  check_grad(lambda t: ours(t, axis, keepdim), lambda t: theirs(t, dims, keepdim) if t.ndim else
             theirs(t.reshape(1), (0,), False).reshape(()), [x], rng, scale=2 * scale)


@pytest.mark.parametrize("name", ["prod", "cumprod"])
def test_prod_grad_with_zeros(name):
  # rows with no zero, one zero and two zeros: d prod / dx_i is the product of the others
  x = np.array([[1.5, -2.0, 0.5, 3.0], [1.5, 0.0, 2.0, -1.0], [0.0, 2.0, 0.0, 1.0]], np.float32)
  ours = (lambda t: t.prod(1)) if name == "prod" else (lambda t: t.cumprod(1))
  theirs = (lambda t: t.prod(1)) if name == "prod" else (lambda t: t.cumprod(1))
  check_grad(ours, theirs, [x], np.random.default_rng(0))


INT_REDUCES = {
  "sum": (lambda t, a, k: t.sum(a, keepdim=k), lambda x, a, k: x.sum(a, keepdims=k)),
  "prod": (lambda t, a, k: t.prod(a, keepdim=k), lambda x, a, k: x.prod(a, keepdims=k, dtype=x.dtype)),
  "max": (lambda t, a, k: t.max(a, keepdim=k), lambda x, a, k: x.max(a, keepdims=k)),
  "min": (lambda t, a, k: t.min(a, keepdim=k), lambda x, a, k: x.min(a, keepdims=k)),
  "mean": (lambda t, a, k: t.mean(a, keepdim=k), lambda x, a, k: x.astype(np.float64).mean(a, keepdims=k)),
}


@pytest.mark.parametrize("name", list(INT_REDUCES))
@given(case=shape_axis_keepdim(), dtype=st.sampled_from((dtypes.bool,) + INT_DTYPES), seed=seeds)
@settings(max_examples=examples(8))
def test_int_reduce_values(name, case, dtype, seed):
  shape, axis, keepdim = case
  ours, ref = INT_REDUCES[name]
  rng = np.random.default_rng(seed)
  if name in ("max", "min"):
    x = full_range_array(rng, shape, dtype)
  else:
    x = random_array(rng, shape, dtype, -3 if name != "prod" else -2, 3 if name != "prod" else 2)
  out = ours(make_tensor(x, dtype), axis, keepdim)
  with np.errstate(over="ignore"):
    want = ref(x, axis, keepdim)
  if name == "mean":
    assert out.dtype == dtypes.float32
    assert_close(out, want, dtypes.float32)
    return
  if name == "sum":
    # small integers accumulate in 32 bits (tinygrad's sum_acc_dtype)
    acc = {"b": dtypes.int32, "i": dtypes.int32, "u": dtypes.uint32}[dtype.kind] if dtype.itemsize < 4 else dtype
    assert out.dtype == acc, f"sum of {dtype} gave {out.dtype}"
  elif name == "prod" and dtype.is_bool:
    want = want.astype(np.int32)
  else:
    assert out.dtype == dtype
  np.testing.assert_array_equal(out.numpy(), want.astype(out.dtype.np))


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@given(case=shape_axis_keepdim(allow_tuple=False), dtype=st.sampled_from((dtypes.int8, dtypes.uint16, dtypes.int64,
                                                                          dtypes.float32, dtypes.float16, dtypes.bool)),
       seed=seeds)
@settings(max_examples=examples(10))
def test_argmax_argmin(name, case, dtype, seed):
  shape, axis, keepdim = case
  # few distinct values, so ties are common and the first index must win
  x = random_array(np.random.default_rng(seed), shape, dtype, 0 if dtype.is_unsigned else -2, 2, nonzero=False)
  out = getattr(make_tensor(x, dtype), name)(axis, keepdim=keepdim)
  want = getattr(np, name)(x, axis=axis, keepdims=keepdim)
  assert out.dtype == dtypes.int32 and out.requires_grad is not True
  np.testing.assert_array_equal(out.numpy(), want)


def test_argmax_extremes_and_nan():
  assert Tensor([0, 255, 254], dtype=dtypes.uint8).argmin().item() == 0
  assert Tensor([3, -128, 127], dtype=dtypes.int8).argmin().item() == 1
  assert Tensor([3, -128, 127], dtype=dtypes.int8).argmax().item() == 2
  assert Tensor([-np.inf, -np.inf]).argmax().item() == 0
  assert Tensor([2**40 + 1, 2**40, 2**40 + 2], dtype=dtypes.int64).argmin().item() == 1
  x = np.array([[1, np.nan, 3, np.nan], [1, 2, 3, 0]], np.float32)
  for name in ("argmax", "argmin"):
    np.testing.assert_array_equal(getattr(Tensor(x), name)(1).numpy(), getattr(np, name)(x, 1))
    assert getattr(Tensor(x), name)().item() == getattr(np, name)(x)


@pytest.mark.parametrize("name", ["any", "all"])
@given(case=shape_axis_keepdim(), dtype=st.sampled_from((dtypes.bool, dtypes.int32, dtypes.float32, dtypes.uint8)),
       seed=seeds)
@settings(max_examples=examples(8))
def test_any_all(name, case, dtype, seed):
  shape, axis, keepdim = case
  rng = np.random.default_rng(seed)
  # mostly one value, so both answers occur
  x = (rng.random(shape) < (0.9 if name == "all" else 0.1)).astype(dtype.np) * (3 if not dtype.is_bool else 1)
  out = getattr(make_tensor(x, dtype), name)(axis, keepdim=keepdim)
  assert out.dtype == dtypes.bool
  np.testing.assert_array_equal(out.numpy(), getattr(np, name)(x, axis=axis, keepdims=keepdim))


@st.composite
def shape_and_one_axis(draw):
  shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=7))
  return shape, draw(st.integers(-len(shape), len(shape) - 1))


@pytest.mark.parametrize("name", ["cumsum", "cumprod"])
@given(case=shape_and_one_axis(), dtype=st.sampled_from(FLOAT_DTYPES + (dtypes.int32, dtypes.int64, dtypes.int8)),
       seed=seeds)
@settings(max_examples=examples(8))
def test_cumulative_values(name, case, dtype, seed):
  shape, axis = case
  rng = np.random.default_rng(seed)
  x = random_array(rng, shape, dtype, 0.7 if name == "cumprod" else -3, 1.3 if name == "cumprod" else 3)
  if dtype.is_int and name == "cumprod":
    x = random_array(rng, shape, dtype, -2, 2)
  out = getattr(make_tensor(x, dtype), name)(axis)
  with np.errstate(over="ignore"):
    want = getattr(np, name)(x.astype(np.float64) if dtype.is_float else x, axis=axis)
  assert out.dtype == dtype
  if dtype.is_int:
    np.testing.assert_array_equal(out.numpy(), want.astype(dtype.np))
  else:
    assert_close(out, want, dtype, scale=8 * (1 + shape[axis] / 4 if dtype.itemsize == 2 else 1))


def test_cumsum_bool_and_0d():
  assert Tensor([True, False, True]).cumsum().tolist() == [1, 1, 2]
  assert Tensor(2.5).cumsum().item() == 2.5


@pytest.mark.parametrize("name", ["cumsum", "cumprod"])
@given(case=shape_and_one_axis(), seed=seeds)
@settings(max_examples=examples(4))
def test_cumulative_grad(name, case, seed):
  shape, axis = case
  rng = np.random.default_rng(seed)
  x = random_array(rng, shape, dtypes.float32, 0.5, 1.5)
  check_grad(lambda t: getattr(t, name)(axis), lambda t: getattr(torch, name)(t, axis), [x], rng, scale=4)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(case=shape_and_one_axis(), dtype=float_dtypes, seed=seeds)
@settings(max_examples=examples(6))
def test_softmax_values(name, case, dtype, seed):
  shape, axis = case
  rng = np.random.default_rng(seed)
  x = random_array(rng, shape, dtype, -4, 4)
  out = getattr(make_tensor(x, dtype), name)(axis)
  x64 = x.astype(np.float64)
  logp = x64 - _logsumexp(x64, axis, True)
  assert_close(out, np.exp(logp) if name == "softmax" else logp, dtype, scale=4)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(case=shape_and_one_axis(), seed=seeds)
@settings(max_examples=examples(4))
def test_softmax_grad(name, case, seed):
  shape, axis = case
  rng = np.random.default_rng(seed)
  x = random_array(rng, shape, dtypes.float32, -4, 4)
  check_grad(lambda t: getattr(t, name)(axis), lambda t: getattr(torch, name)(t, axis), [x], rng, scale=4)


def test_softmax_large_inputs_stay_finite():
  x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1000.0]], np.float32)
  want = np.exp(x - x.max(1, keepdims=True))
  want /= want.sum(1, keepdims=True)
  assert_close(Tensor(x).softmax(), want, dtypes.float32)
  assert_close(Tensor(x).logsumexp(1), _logsumexp(x.astype(np.float64), 1, False), dtypes.float32)


def test_softmax_of_integers_is_float():
  out = Tensor([[1, 2, 3]]).softmax()
  assert out.dtype == dtypes.float32
  assert_close(out, np.exp([[1, 2, 3]]) / np.exp([1, 2, 3]).sum(), dtypes.float32)


def test_reduce_over_zero_size_axis():
  t = Tensor.ones(0, 3)
  assert_close(t.sum(0), np.zeros(3, np.float32), dtypes.float32)
  assert_close(t.prod(0), np.ones(3, np.float32), dtypes.float32)
  assert t.sum(1).shape == (0,)
  assert_close(t.max(0), np.full(3, -np.inf, np.float32), dtypes.float32)


def test_schedule_reduce_of_empty_input():
  from compiler.ir import Ops
  from frontend import graph
  from frontend.realize import realize_nodes
  x = Tensor(np.ones((2, 0, 3), np.float32))
  realize_nodes([graph.reduce(x.lazydata, Ops.ADD, (2,))])


def test_reduce_of_empty_tensor_keeps_empty_axes():
  x = Tensor(np.ones((2, 0, 3), np.float32))
  for out, shape in ((x.sum(2), (2, 0)), (x.max(0, keepdim=True), (1, 0, 3)), (x.mean(2), (2, 0)), (x.sum(1), (2, 3))):
    assert out.shape == shape
    assert out.numpy().shape == shape
  assert_close(x.sum(1), np.zeros((2, 3), np.float32), dtypes.float32)


def test_reduce_keeps_shape_of_0d():
  t = Tensor(3.5)
  for out in (t.sum(), t.max(), t.mean(), t.prod(), t.min()):
    assert out.shape == () and out.item() == 3.5


def test_reduce_bad_axis_raises():
  with pytest.raises(IndexError, match="axis 2"):
    Tensor.ones(2, 3).sum(2)
  with pytest.raises(IndexError, match="axis -3"):
    Tensor.ones(2, 3).max(-3)


def test_large_sum_accuracy(rng):
  x = rng.uniform(-1, 1, 100_000).astype(np.float32)
  assert abs(Tensor(x).sum().item() - x.astype(np.float64).sum()) < 1e-2
  assert abs(Tensor(x).mean().item() - x.astype(np.float64).mean()) < 1e-6
  assert abs(Tensor(x).std().item() - x.astype(np.float64).std(ddof=1)) < 1e-5


def test_sum_dtype_argument():
  t = Tensor([100, 100, 100], dtype=dtypes.int8)
  assert t.sum().item() == 300
  assert t.sum(dtype=dtypes.int16).dtype == dtypes.int16
  assert Tensor([60000.0, 60000.0], dtype=dtypes.float16).sum().dtype == dtypes.float16
  assert Tensor([1.5, 2.5]).sum(dtype=dtypes.float64).dtype == dtypes.float64


@pytest.mark.usefixtures("on_cpu")
def test_float16_weights_reduce_in_float32_vectors():
  """A matrix-vector product over float16 weights cast to float32 (LLaMA's float16 weights): the CPU kernel reads
  the weights as vectors converted LANES at a time (`_ldh`) and keeps float32 partial sums; the result is the
  float64 product of the same float16 values, to float32 rounding."""
  from compiler.lower import LANES, lower
  from compiler.schedule import Scheduler
  from frontend.device import Device
  from frontend.realize import realized
  rng = np.random.default_rng(9)
  w = rng.standard_normal((96, 64)).astype(np.float16)
  x = rng.standard_normal((1, 64)).astype(np.float32)
  out = Tensor(x).matmul(Tensor(w).T.cast(dtypes.float32))
  (item,) = [i for i in Scheduler(lambda n: n in realized).schedule([out.lazydata]) if i.kind == "kernel"]
  kernel = lower(item.ast)
  assert kernel.arg.lanes == LANES and "_ldh(" in Device["CPU"].render(kernel)[1]
  want = x.astype(np.float64) @ w.astype(np.float64).T
  np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)
