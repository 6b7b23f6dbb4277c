"""Elementwise ops against numpy (values, every float dtype) and torch (gradients): arithmetic and its reflected
forms, unary math and activations, comparisons, logical and bitwise ops, shifts, where/clip/lerp."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from conftest import (FLOAT_DTYPES, INT_DTYPES, SINT_DTYPES, UINT_DTYPES, assert_close, check_grad, examples,
                      float_dtypes, full_range_array, host_dtype, int_dtypes, make_tensor, random_array, round_to,
                      seeds, shapes)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from compiler.dtypes import promote
from frontend import Tensor, dtypes

broadcast_pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=1, max_side=7)

_erf = np.vectorize(math.erf)


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _gelu(x):
  return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _softplus(x):
  return np.logaddexp(0, x)


# name -> (ours, numpy in float64, torch, (low, high) domain, tolerance scale)
UNARY = {
  "neg": (lambda x: -x, lambda x: -x, lambda x: -x, (-3, 3), 1),
  "abs": (Tensor.abs, np.abs, torch.abs, (-3, 3), 1),
  "exp": (Tensor.exp, np.exp, torch.exp, (-3, 3), 4),
  "exp2": (Tensor.exp2, np.exp2, torch.exp2, (-3, 3), 2),
  "log": (Tensor.log, np.log, torch.log, (0.05, 5), 2),
  "log2": (Tensor.log2, np.log2, torch.log2, (0.05, 5), 2),
  "sqrt": (Tensor.sqrt, np.sqrt, torch.sqrt, (0.05, 5), 1),
  "rsqrt": (Tensor.rsqrt, lambda x: 1 / np.sqrt(x), torch.rsqrt, (0.05, 5), 2),
  "sin": (Tensor.sin, np.sin, torch.sin, (-4, 4), 2),
  "cos": (Tensor.cos, np.cos, torch.cos, (-4, 4), 4),
  "tan": (Tensor.tan, np.tan, torch.tan, (-1.3, 1.3), 8),
  "tanh": (Tensor.tanh, np.tanh, torch.tanh, (-3, 3), 4),
  "sigmoid": (Tensor.sigmoid, _sigmoid, torch.sigmoid, (-4, 4), 2),
  "relu": (Tensor.relu, lambda x: np.maximum(x, 0), torch.relu, (-3, 3), 1),
  "leaky_relu": (Tensor.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x), F.leaky_relu, (-3, 3), 1),
  "elu": (Tensor.elu, lambda x: np.where(x > 0, x, np.expm1(x)), F.elu, (-3, 3), 4),
  "gelu": (Tensor.gelu, _gelu, lambda x: F.gelu(x, approximate="tanh"), (-3, 3), 4),
  "quick_gelu": (Tensor.quick_gelu, lambda x: x * _sigmoid(1.702 * x), lambda x: x * torch.sigmoid(1.702 * x),
                 (-3, 3), 2),
  "silu": (Tensor.silu, lambda x: x * _sigmoid(x), F.silu, (-3, 3), 2),
  "softplus": (Tensor.softplus, _softplus, F.softplus, (-3, 3), 2),
  "mish": (Tensor.mish, lambda x: x * np.tanh(_softplus(x)), F.mish, (-3, 3), 4),
  "erf": (Tensor.erf, _erf, torch.erf, (-2.5, 2.5), 1),
  "reciprocal": (Tensor.reciprocal, lambda x: 1 / x, torch.reciprocal, (-3, 3), 1),
  "square": (Tensor.square, np.square, torch.square, (-3, 3), 1),
  "sign": (Tensor.sign, np.sign, torch.sign, (-3, 3), 1),
  "trunc": (Tensor.trunc, np.trunc, torch.trunc, (-6, 6), 1),
  "floor": (Tensor.floor, np.floor, torch.floor, (-6, 6), 1),
  "ceil": (Tensor.ceil, np.ceil, torch.ceil, (-6, 6), 1),
  "round": (Tensor.round, np.round, torch.round, (-6, 6), 1),
}
# erf is an approximation with |error| < 1.5e-7, so float64 cannot match numpy more closely than that
ABS_ERROR = {"erf": 3e-7}


@pytest.mark.parametrize("name", list(UNARY))
@given(shape=shapes, dtype=float_dtypes, seed=seeds)
@settings(max_examples=examples(5))
def test_unary_values(name, shape, dtype, seed):
  ours, ref, _, (low, high), scale = UNARY[name]
  x = random_array(np.random.default_rng(seed), shape, dtype, low, high)
  out = ours(make_tensor(x, dtype))
  want = ref(x.astype(np.float64))
  atol = max(ABS_ERROR.get(name, 0), 3e-2 * scale if dtype == dtypes.bfloat16 else 5e-3 * scale
             if dtype == dtypes.float16 else 0)
  assert_close(out, want, dtype, scale=scale, atol=atol or None)


@pytest.mark.parametrize("name", list(UNARY))  # rounding ops and sign: a zero gradient, as torch gives
@given(shape=shapes, seed=seeds)
@settings(max_examples=examples(3))
def test_unary_grad(name, shape, seed):
  ours, _, theirs, (low, high), scale = UNARY[name]
  rng = np.random.default_rng(seed)
  x = random_array(rng, shape, dtypes.float32, low, high)
  check_grad(ours, theirs, [x], rng, scale=2 * scale)


@pytest.mark.parametrize("name", ["trunc", "floor", "ceil", "round", "sign", "abs", "neg", "square"])
@pytest.mark.parametrize("dtype", [dtypes.int8, dtypes.int32, dtypes.uint16, dtypes.int64], ids=lambda d: d.name)
def test_unary_on_integers(name, dtype, rng):
  ours, ref = UNARY[name][:2]
  x = full_range_array(rng, (4, 5), dtype) if name not in ("square",) else random_array(rng, (4, 5), dtype, -9, 9)
  out = ours(make_tensor(x, dtype))
  with np.errstate(over="ignore"):
    want = ref(x)
  assert out.dtype == dtype
  np.testing.assert_array_equal(out.numpy(), want.astype(dtype.np))


def test_round_half_to_even():
  x = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49999997, -0.50000006, 1e7 + 0.5, 2.4999998], np.float32)
  for dtype in FLOAT_DTYPES:
    xs = round_to(x, dtype)
    assert_close(Tensor(xs, dtype=dtype).round(), np.round(xs.astype(np.float64)), dtype, rtol=0, atol=0)


SPECIAL = np.array([np.nan, np.inf, -np.inf, 1.0, -2.0, 0.0], np.float32)
# name -> (ours, numpy); NaN and infinities in, as numpy gives them out
SPECIAL_OPS = {
  "exp": (Tensor.exp, np.exp), "exp2": (Tensor.exp2, np.exp2), "log": (Tensor.log, np.log),
  "log2": (Tensor.log2, np.log2), "sqrt": (Tensor.sqrt, np.sqrt), "sigmoid": (Tensor.sigmoid, _sigmoid),
  "tanh": (Tensor.tanh, np.tanh), "abs": (Tensor.abs, np.abs), "neg": (Tensor.neg, np.negative),
  "sign": (Tensor.sign, np.sign), "floor": (Tensor.floor, np.floor), "ceil": (Tensor.ceil, np.ceil),
  "trunc": (Tensor.trunc, np.trunc), "round": (Tensor.round, np.round),
  "reciprocal": (Tensor.reciprocal, np.reciprocal),
  "sin": (Tensor.sin, np.sin), "square": (Tensor.square, np.square), "softplus": (Tensor.softplus, _softplus),
  "relu": (Tensor.relu, lambda x: np.maximum(x, 0)),
  "maximum": (lambda t: t.maximum(0.5), lambda x: np.maximum(x, 0.5)),
  "minimum": (lambda t: t.minimum(0.5), lambda x: np.minimum(x, 0.5)),
  "clip": (lambda t: t.clip(-1, 1), lambda x: np.clip(x, -1, 1)),
}


@pytest.mark.parametrize("name", list(SPECIAL_OPS))
def test_special_values(name):
  ours, ref = SPECIAL_OPS[name]
  for dtype in FLOAT_DTYPES:
    with np.errstate(all="ignore"):
      want = ref(SPECIAL.astype(np.float64))
    assert_close(ours(Tensor(SPECIAL, dtype=dtype)), want, dtype, atol=1e-2 if dtype.itemsize == 2 else 1e-6)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: d.name)
def test_isnan_isinf(dtype):
  t = Tensor(SPECIAL, dtype=dtype)
  x = SPECIAL
  np.testing.assert_array_equal(t.isnan().numpy(), np.isnan(x))
  np.testing.assert_array_equal(t.isinf().numpy(), np.isinf(x))
  np.testing.assert_array_equal(t.isinf(detect_negative=False).numpy(), np.isposinf(x))
  np.testing.assert_array_equal(t.isinf(detect_positive=False).numpy(), np.isneginf(x))
  np.testing.assert_array_equal(t.isfinite().numpy(), np.isfinite(x))
  assert t.isnan().dtype == dtypes.bool


def test_isnan_on_integers():
  assert Tensor([1, 2]).isnan().tolist() == [False, False]
  assert Tensor([1, 2]).isinf().tolist() == [False, False]


# ---------------------------------------------------------------------------------------------------------------------
# binary arithmetic

BINARY_FLOAT = {
  "add": (lambda a, b: a + b, np.add, 1),
  "sub": (lambda a, b: a - b, np.subtract, 1),
  "mul": (lambda a, b: a * b, np.multiply, 1),
  "div": (lambda a, b: a / b, np.divide, 1),
  "maximum": (Tensor.maximum, np.maximum, 1),
  "minimum": (Tensor.minimum, np.minimum, 1),
}


@pytest.mark.parametrize("name", list(BINARY_FLOAT))
@given(shapes=broadcast_pairs, dtype=float_dtypes, seed=seeds)
@settings(max_examples=examples(6))
def test_binary_float_values(name, shapes, dtype, seed):
  ours, ref, scale = BINARY_FLOAT[name]
  rng = np.random.default_rng(seed)
  (sa, sb), _ = shapes
  a, b = random_array(rng, sa, dtype), random_array(rng, sb, dtype)
  out = ours(make_tensor(a, dtype), make_tensor(b, dtype))
  assert_close(out, ref(a.astype(np.float64), b.astype(np.float64)), dtype, scale=scale)


@pytest.mark.parametrize("name", list(BINARY_FLOAT) + ["pow"])
@given(shapes=broadcast_pairs, seed=seeds)
@settings(max_examples=examples(3))
def test_binary_grad(name, shapes, seed):
  rng = np.random.default_rng(seed)
  (sa, sb), _ = shapes
  if name == "pow":
    a, b = random_array(rng, sa, dtypes.float32, 0.2, 3), random_array(rng, sb, dtypes.float32, -2, 2)
    check_grad(lambda x, y: x ** y, lambda x, y: x ** y, [a, b], rng, scale=10)
    return
  a, b = random_array(rng, sa, dtypes.float32), random_array(rng, sb, dtypes.float32)
  ours = BINARY_FLOAT[name][0]
  theirs = {"maximum": torch.maximum, "minimum": torch.minimum}.get(name, ours)
  check_grad(ours, theirs, [a, b], rng, scale=2)


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum_tie_gradient_splits(op):
  check_grad(getattr(Tensor, op), getattr(torch, op), [np.array([1.0, 2.0, 3.0], np.float32),
                                                       np.array([1.0, 0.0, 5.0], np.float32)],
             np.random.default_rng(0))


INT_OPS = {
  "add": (lambda a, b: a + b, np.add),
  "sub": (lambda a, b: a - b, np.subtract),
  "mul": (lambda a, b: a * b, np.multiply),
  "floordiv": (lambda a, b: a // b, np.floor_divide),
  "mod": (lambda a, b: a % b, np.mod),
  "maximum": (Tensor.maximum, np.maximum),
  "minimum": (Tensor.minimum, np.minimum),
  "truediv": (lambda a, b: a / b, np.true_divide),
}


@pytest.mark.parametrize("name", list(INT_OPS))
@given(shapes=broadcast_pairs, dtype=int_dtypes, seed=seeds)
@settings(max_examples=examples(6))
def test_binary_int_values(name, shapes, dtype, seed):
  ours, ref = INT_OPS[name]
  rng = np.random.default_rng(seed)
  (sa, sb), _ = shapes
  if name in ("add", "sub", "mul", "maximum", "minimum"):
    a, b = full_range_array(rng, sa, dtype), full_range_array(rng, sb, dtype)  # wraps around, as numpy does
  else:
    # no division by zero and no INT_MIN // -1 (undefined in C)
    a, b = random_array(rng, sa, dtype, -100, 100), random_array(rng, sb, dtype, -9, 9)
  out = ours(make_tensor(a, dtype), make_tensor(b, dtype))
  with np.errstate(over="ignore"):
    want = ref(a, b)
  if name == "truediv":
    assert out.dtype == dtypes.float32
    assert_close(out, want, dtypes.float32)
  else:
    assert out.dtype == dtype
    np.testing.assert_array_equal(out.numpy(), want)


@pytest.mark.parametrize("dtype", [dtypes.int64, dtypes.int32, dtypes.uint64, dtypes.int8], ids=lambda d: d.name)
def test_int_division_by_zero_gives_numpy_zero(dtype, rng):
  """x // 0 and x % 0 are 0 in numpy (with a warning); a kernel must give that, never trap (SIGFPE) the process.
  int64 is the type of index math too: the renderer may only leave a division unguarded for a positive constant."""
  a = random_array(rng, (5, 8), dtype, -50, 50)
  b = random_array(rng, (5, 8), dtype, -3, 3)
  b.reshape(-1)[::3] = 0
  with np.errstate(divide="ignore"):
    floor_want, mod_want = np.floor_divide(a, b), np.mod(a, b)
  t_a, t_b = make_tensor(a, dtype), make_tensor(b, dtype)
  np.testing.assert_array_equal((t_a // t_b).numpy(), floor_want)
  np.testing.assert_array_equal((t_a % t_b).numpy(), mod_want)
  np.testing.assert_array_equal(t_a.idiv(t_b).numpy()[b == 0], 0)


@pytest.mark.parametrize("dtype", [dtypes.float32, dtypes.float16, dtypes.float64], ids=lambda d: d.name)
def test_float_floordiv_mod(dtype, rng):
  a = random_array(rng, (6, 7), dtype, -20, 20)
  b = random_array(rng, (6, 7), dtype, -4, 4)
  a64, b64 = a.astype(np.float64), b.astype(np.float64)
  t_a, t_b = make_tensor(a, dtype), make_tensor(b, dtype)
  assert_close(t_a // t_b, np.floor_divide(a64, b64), dtype)
  assert_close(t_a % t_b, np.mod(a64, b64), dtype, scale=4)
  assert_close(t_a.div(t_b, rounding_mode="trunc"), np.trunc(a64 / b64), dtype)
  assert_close(t_a.div(t_b, rounding_mode="floor"), np.floor(a64 / b64), dtype)


def test_int_div_rounding_modes(rng):
  a = random_array(rng, (20,), dtypes.int32, -50, 50)
  b = random_array(rng, (20,), dtypes.int32, -7, 7)
  t_a, t_b = Tensor(a), Tensor(b)
  np.testing.assert_array_equal(t_a.div(t_b, rounding_mode="trunc").numpy(), np.trunc(a / b).astype(np.int32))
  np.testing.assert_array_equal(t_a.div(t_b, rounding_mode="floor").numpy(), np.floor_divide(a, b))
  np.testing.assert_array_equal(t_a.idiv(t_b).numpy(), np.trunc(a / b).astype(np.int32))


# scalar on either side: name -> (ours(t, s), numpy(x, s))
SCALAR_OPS = {
  "add": (lambda t, s: t + s, lambda x, s: x + s), "radd": (lambda t, s: s + t, lambda x, s: s + x),
  "sub": (lambda t, s: t - s, lambda x, s: x - s), "rsub": (lambda t, s: s - t, lambda x, s: s - x),
  "mul": (lambda t, s: t * s, lambda x, s: x * s), "rmul": (lambda t, s: s * t, lambda x, s: s * x),
  "div": (lambda t, s: t / s, lambda x, s: x / s), "rdiv": (lambda t, s: s / t, lambda x, s: s / x),
  "floordiv": (lambda t, s: t // s, lambda x, s: np.floor_divide(x, s)),
  "rfloordiv": (lambda t, s: s // t, lambda x, s: np.floor_divide(s, x)),
  "mod": (lambda t, s: t % s, lambda x, s: np.mod(x, s)), "rmod": (lambda t, s: s % t, lambda x, s: np.mod(s, x)),
  "pow": (lambda t, s: t ** s, lambda x, s: x ** s), "rpow": (lambda t, s: s ** t, lambda x, s: float(s) ** x),
}


def _scalar_cases():
  for name in SCALAR_OPS:
    for dtype in (dtypes.float32, dtypes.int32, dtypes.int8, dtypes.float16):
      scalars = (3, -2) if not dtype.is_float else (2.5, -1.5, 3)
      if "pow" in name:
        scalars = (3, 2) if dtype.is_int else (2.5, 0.5, 3, -1)
      for s in scalars:
        yield pytest.param(name, dtype, s, id=f"{name}-{dtype.name}-{s}")


@pytest.mark.parametrize("name, dtype, s", list(_scalar_cases()))
def test_scalar_operands(name, dtype, s, rng):
  ours, ref = SCALAR_OPS[name]
  x = random_array(rng, (3, 4), dtype, 1 if "pow" in name else -9, 4 if "pow" in name else 9)
  out = ours(make_tensor(x, dtype), s)
  with np.errstate(all="ignore"):
    want = ref(x.astype(np.float64) if dtype.is_float else x.astype(np.int64), s)
  if dtype.is_int and (name in ("div", "rdiv") or isinstance(s, float)):
    assert out.dtype == dtypes.float32
  else:
    assert out.dtype == dtype, f"{name} {dtype} with {s!r} gave {out.dtype}"
  if out.dtype.is_int:
    np.testing.assert_array_equal(out.numpy(), want.astype(out.dtype.np), err_msg=f"{name} {s}")
  else:
    assert_close(out, want, out.dtype, scale=8 if "pow" in name else 2)


def test_negate_negative_constant():
  assert (-Tensor.full((3,), -1.0)).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("exponent", [3, -2, 2.5, -0.5, 3.0, -3])
def test_pow_scalar_exponent_grad(exponent, rng):
  x = random_array(rng, (3, 4), dtypes.float32, 0.2 if exponent != int(exponent) else -2, 2)
  check_grad(lambda t: t ** exponent, lambda t: t ** exponent, [x], rng, scale=4)


@pytest.mark.parametrize("base", [2, 0.5, 1.5])  # a negative base has no real derivative (torch gives nan)
def test_pow_scalar_base_grad(base, rng):
  x = random_array(rng, (3, 4), dtypes.float32, -2, 2)
  check_grad(lambda t: base ** t, lambda t: base ** t, [x], rng, scale=4)


def test_pow_result_dtypes():
  i, f = Tensor([1, 2, 3]), Tensor([1.0, 2.0, 3.0], dtype=dtypes.float16)
  for exponent in (2.0, 3.0, 0.0, 1.0, 0.5, -1.0):
    assert (i ** exponent).dtype == dtypes.float32, f"int tensor ** {exponent}"
    assert (f ** exponent).dtype == dtypes.float16
  for exponent in (2, 3, 0, 1):
    assert (i ** exponent).dtype == dtypes.int32, f"int tensor ** {exponent}"
  assert_close(i ** 3.0, np.array([1, 8, 27], np.float32), dtypes.float32)
  with np.errstate(all="ignore"):
    x = np.array([0.5, 2.0, -3.0], np.float32)
    assert_close(Tensor(x) ** float("nan"), x ** np.float32(np.nan), dtypes.float32)
    assert_close(Tensor(x[:2]) ** float("inf"), x[:2] ** np.float32(np.inf), dtypes.float32)


def test_pow_negative_base_and_zero():
  base = np.array([-2.0, -2.0, -0.5, 0.0, 0.0, 0.0, 3.0, -3.0], np.float32)
  exp = np.array([3.0, 2.0, -1.0, 0.0, 2.5, -1.0, 0.0, 0.5], np.float32)
  with np.errstate(all="ignore"):
    want = np.power(base.astype(np.float64), exp.astype(np.float64))
  assert_close(Tensor(base) ** Tensor(exp), want, dtypes.float32)


@given(shapes=broadcast_pairs, dtype=st.sampled_from(SINT_DTYPES + UINT_DTYPES), seed=seeds)
@settings(max_examples=examples(6))
def test_int_pow_tensor_exponent(shapes, dtype, seed):
  rng = np.random.default_rng(seed)
  (sa, sb), _ = shapes
  a = random_array(rng, sa, dtype, -5, 5, nonzero=False)
  b = rng.integers(0, 6, size=sb).astype(dtype.np)
  out = make_tensor(a, dtype) ** make_tensor(b, dtype)
  assert out.dtype == dtype
  with np.errstate(over="ignore"):
    np.testing.assert_array_equal(out.numpy(), np.power(a, b))


def test_unary_neg_integers_wraps():
  assert (-Tensor([-128, 5], dtype=dtypes.int8)).tolist() == [-128, -5]
  assert (-Tensor([1, 0], dtype=dtypes.uint8)).tolist() == [255, 0]
  assert (-Tensor([True, False])).tolist() == [False, True]


# ---------------------------------------------------------------------------------------------------------------------
# comparisons, logical and bitwise ops

COMPARISONS = {"lt": (lambda a, b: a < b, np.less), "le": (lambda a, b: a <= b, np.less_equal),
               "gt": (lambda a, b: a > b, np.greater), "ge": (lambda a, b: a >= b, np.greater_equal),
               "eq": (lambda a, b: a == b, np.equal), "ne": (lambda a, b: a != b, np.not_equal)}


@pytest.mark.parametrize("name", list(COMPARISONS))
@given(shapes=broadcast_pairs, dtype=st.sampled_from((dtypes.bool,) + INT_DTYPES + FLOAT_DTYPES), seed=seeds)
@settings(max_examples=examples(6))
def test_comparisons(name, shapes, dtype, seed):
  ours, ref = COMPARISONS[name]
  rng = np.random.default_rng(seed)
  (sa, sb), _ = shapes
  # few distinct values, so equal elements are common
  a = random_array(rng, sa, dtype, -3, 3, nonzero=False)
  b = random_array(rng, sb, dtype, -3, 3, nonzero=False)
  if dtype.is_float:
    a, b = np.round(a), np.round(b)
  out = ours(make_tensor(a, dtype), make_tensor(b, dtype))
  assert out.dtype == dtypes.bool and out.requires_grad is not True
  np.testing.assert_array_equal(out.numpy(), ref(a, b))


@pytest.mark.parametrize("name", list(COMPARISONS))
@pytest.mark.parametrize("dtype", [dtypes.float32, dtypes.int16, dtypes.uint32, dtypes.bool], ids=lambda d: d.name)
def test_comparisons_with_scalars(name, dtype, rng):
  ours, ref = COMPARISONS[name]
  x = random_array(rng, (5, 3), dtype, 0, 4, nonzero=False)
  for s in ((True, False) if dtype.is_bool else (2, 3.5)):
    np.testing.assert_array_equal(ours(make_tensor(x, dtype), s).numpy(), ref(x, s), err_msg=f"t {name} {s}")
    np.testing.assert_array_equal(ours(s, make_tensor(x, dtype)).numpy(), ref(s, x), err_msg=f"{s} {name} t")


def test_comparisons_with_nan():
  x = Tensor([math.nan, 1.0, math.nan])
  y = Tensor([1.0, math.nan, math.nan])
  for name, (ours, ref) in COMPARISONS.items():
    want = ref(np.array([np.nan, 1, np.nan]), np.array([1, np.nan, np.nan]))
    np.testing.assert_array_equal(ours(x, y).numpy(), want, err_msg=name)


@pytest.mark.parametrize("dtype", (dtypes.bool,) + INT_DTYPES, ids=lambda d: d.name)
def test_bitwise(dtype, rng):
  a, b = full_range_array(rng, (4, 6), dtype), full_range_array(rng, (6,), dtype)
  ta, tb = make_tensor(a, dtype), make_tensor(b, dtype)
  for out, want in ((ta & tb, a & b), (ta | tb, a | b), (ta ^ tb, a ^ b), (~ta, ~a),
                    (ta.bitwise_and(tb), a & b), (ta.bitwise_or(tb), a | b), (ta.bitwise_xor(tb), a ^ b)):
    assert out.dtype == dtype
    np.testing.assert_array_equal(out.numpy(), want)
  if not dtype.is_bool:
    s = int(b.flat[0])
    np.testing.assert_array_equal((ta & s).numpy(), a & np.array(s, dtype.np))
    np.testing.assert_array_equal((s | ta).numpy(), np.array(s, dtype.np) | a)
    np.testing.assert_array_equal((ta ^ 5).numpy(), a ^ np.array(5, dtype.np))


def test_bitwise_on_floats_raises():
  with pytest.raises(TypeError, match="float32"):
    Tensor([1.0]) & Tensor([2.0])
  with pytest.raises(TypeError, match="float32"):
    ~Tensor([1.0])
  with pytest.raises(TypeError, match="float32"):
    Tensor([1.0]) << 1


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=lambda d: d.name)
def test_shifts(dtype, rng):
  a = full_range_array(rng, (3, 8), dtype)
  shift = rng.integers(0, dtype.bits, size=(8,)).astype(dtype.np)
  ta = make_tensor(a, dtype)
  with np.errstate(over="ignore"):
    np.testing.assert_array_equal((ta << make_tensor(shift, dtype)).numpy(), np.left_shift(a, shift))
    np.testing.assert_array_equal((ta >> make_tensor(shift, dtype)).numpy(), np.right_shift(a, shift))
    for s in (0, 1, 3, dtype.bits - 1):
      out = ta << s
      assert out.dtype == dtype
      np.testing.assert_array_equal(out.numpy(), np.left_shift(a, np.array(s, dtype.np)), err_msg=f"<< {s}")
      np.testing.assert_array_equal((ta >> s).numpy(), np.right_shift(a, np.array(s, dtype.np)), err_msg=f">> {s}")


@pytest.mark.parametrize("dtype", [dtypes.bool, dtypes.int32, dtypes.float32, dtypes.uint8], ids=lambda d: d.name)
def test_logical_not(dtype, rng):
  x = random_array(rng, (5, 4), dtype, -2, 2, nonzero=False)
  out = make_tensor(x, dtype).logical_not()
  assert out.dtype == dtypes.bool
  np.testing.assert_array_equal(out.numpy(), np.logical_not(x))


# ---------------------------------------------------------------------------------------------------------------------
# where, clip, lerp


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=4, max_side=6),
       dtype=st.sampled_from((dtypes.bool, dtypes.int8, dtypes.int32, dtypes.uint64) + FLOAT_DTYPES), seed=seeds)
@settings(max_examples=examples(8))
def test_where(shapes, dtype, seed):
  rng = np.random.default_rng(seed)
  (sc, sx, sy), _ = shapes
  cond = rng.random(sc) < 0.5
  x, y = random_array(rng, sx, dtype), random_array(rng, sy, dtype)
  out = Tensor(cond).where(make_tensor(x, dtype), make_tensor(y, dtype))
  assert_close(out, np.where(cond, x, y), dtype, rtol=0, atol=0)


def test_where_rank3_select_from_buffer():
  """gcc 12.2 -O3 with AVX miscompiles `c ? p[i] : 0` in this loop; the C renderer loads into a temporary first."""
  rng = np.random.default_rng(0)
  x = rng.uniform(-3, 3, (2, 3, 4)).astype(np.float32)
  w = rng.standard_normal((2, 3, 4)).astype(np.float32)
  np.testing.assert_array_equal((Tensor(x) > 0).where(Tensor(w), 0).numpy(), np.where(x > 0, w, 0))


def test_where_scalars_and_promotion(rng):
  cond = rng.random((3, 4)) < 0.5
  x = random_array(rng, (3, 4), dtypes.int16)
  c = Tensor(cond)
  assert_close(c.where(1.5, 0), np.where(cond, 1.5, 0).astype(np.float32), dtypes.float32)
  assert_close(c.where(2, 7), np.where(cond, 2, 7).astype(np.int32), dtypes.int32)
  assert_close(c.where(Tensor(x), 3), np.where(cond, x, 3).astype(np.int16), dtypes.int16)
  assert_close(c.where(-1, Tensor(x)), np.where(cond, -1, x).astype(np.int16), dtypes.int16)
  assert_close(c.where(Tensor(x), 0.5), np.where(cond, x, 0.5).astype(np.float32), dtypes.float32)
  assert_close(c.where(Tensor(x), Tensor(x.astype(np.float16))), np.where(cond, x, x).astype(np.float16),
               dtypes.float16)
  # a non-bool condition means != 0
  v = random_array(rng, (3, 4), dtypes.int32, -2, 2, nonzero=False)
  assert_close(Tensor(v).where(1, 0), np.where(v != 0, 1, 0).astype(np.int32), dtypes.int32)
  assert_close(Tensor(cond).masked_fill(Tensor(cond), 9.0), np.where(cond, 9.0, cond).astype(np.float32),
               dtypes.float32)


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=6), seed=seeds)
@settings(max_examples=examples(3))
def test_where_grad(shapes, seed):
  rng = np.random.default_rng(seed)
  (sc, sx, sy), _ = shapes
  cond = np.asarray(rng.random(sc) < 0.5)
  x, y = random_array(rng, sx, dtypes.float32), random_array(rng, sy, dtypes.float32)
  check_grad(lambda a, b: Tensor(cond).where(a, b), lambda a, b: torch.where(torch.from_numpy(cond), a, b),
             [x, y], rng)


@given(shape=shapes, dtype=st.sampled_from((dtypes.int8, dtypes.uint8, dtypes.int64) + FLOAT_DTYPES), seed=seeds)
@settings(max_examples=examples(8))
def test_clip(shape, dtype, seed):
  rng = np.random.default_rng(seed)
  x = random_array(rng, shape, dtype, 0 if dtype.is_unsigned else -5, 9)
  t = make_tensor(x, dtype)
  lo, hi = (1, 4) if dtype.is_int else (-1.5, 2.25)
  assert_close(t.clip(lo, hi), np.clip(x, lo, hi), dtype, rtol=0, atol=0)
  assert_close(t.clamp(lo), np.maximum(x, np.array(lo, x.dtype)), dtype, rtol=0, atol=0)
  assert_close(t.clip(max_=hi), np.minimum(x, np.array(hi, x.dtype)), dtype, rtol=0, atol=0)


def test_clip_needs_a_bound():
  with pytest.raises(ValueError):
    Tensor([1.0]).clip()


@given(shape=shapes, seed=seeds)
@settings(max_examples=examples(3))
def test_clip_grad(shape, seed):
  rng = np.random.default_rng(seed)
  x = random_array(rng, shape, dtypes.float32, -3, 3)
  # keep elements off the bounds, where torch and we both give 1 inside and 0 outside
  x = np.where(np.abs(np.abs(x) - 1) < 0.05, x + 0.1, x).astype(np.float32)
  check_grad(lambda t: t.clip(-1, 1), lambda t: t.clamp(-1, 1), [x], rng)


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=6),
       dtype=float_dtypes, seed=seeds)
@settings(max_examples=examples(5))
def test_lerp(shapes, dtype, seed):
  rng = np.random.default_rng(seed)
  (sa, sb, sw), _ = shapes
  a, b = random_array(rng, sa, dtype), random_array(rng, sb, dtype)
  w = random_array(rng, sw, dtype, 0, 1)
  a64, b64, w64 = a.astype(np.float64), b.astype(np.float64), w.astype(np.float64)
  out = make_tensor(a, dtype).lerp(make_tensor(b, dtype), make_tensor(w, dtype))
  assert_close(out, a64 + (b64 - a64) * w64, dtype, scale=4)
  assert_close(make_tensor(a, dtype).lerp(make_tensor(b, dtype), 0.25), a64 + (b64 - a64) * 0.25, dtype, scale=4)
  if dtype == dtypes.float32:
    check_grad(Tensor.lerp, torch.lerp, [a, b, w], rng, scale=4)


def test_binary_broadcast_error_names_shapes():
  with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
    Tensor.ones(2, 3) + Tensor.ones(4)
  with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
    Tensor.ones(2, 3) * Tensor.ones(3, 2)
  with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2\)"):
    Tensor.ones(2, 3) @ Tensor.ones(4, 2)
  with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
    Tensor([True, False]).where(Tensor.ones(3), Tensor.ones(1))


def test_binary_with_numpy_and_lists(rng):
  x = random_array(rng, (2, 3), dtypes.float32)
  assert_close(Tensor(x) + [1.0, 2.0, 3.0], x + np.array([1, 2, 3], np.float32), dtypes.float32)
  assert_close(Tensor(x) * np.full((2, 1), 2.0, np.float32), x * 2, dtypes.float32)
  assert (Tensor(x) + np.ones(3, np.float64)).dtype == dtypes.float64


def test_mixed_dtype_binary_values(rng):
  for a, b in ((dtypes.int8, dtypes.float16), (dtypes.uint8, dtypes.int8), (dtypes.bool, dtypes.float32),
               (dtypes.int32, dtypes.int64), (dtypes.bfloat16, dtypes.float16)):
    x, y = random_array(rng, (4,), a), random_array(rng, (3, 4), b)
    want_dtype = promote(a, b)
    out = make_tensor(x, a) * make_tensor(y, b)
    want = round_to(x.astype(np.float64) * y.astype(np.float64), want_dtype)
    assert_close(out, want.astype(host_dtype(want_dtype)), want_dtype)
