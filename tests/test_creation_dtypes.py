"""Creation ops, random numbers, dtypes (round trips, cast, bitcast, type promotion) and the Tensor's basic API,
checked against numpy."""
import itertools
import math

import numpy as np
import pytest
from conftest import (ALL_DTYPES, FLOAT_DTYPES, INT_DTYPES, assert_close, examples, full_range_array, host_dtype,
                      random_array, round_to, seeds, shapes)
from hypothesis import given, settings

from compiler.dtypes import promote, scalar_result_dtype
from frontend import Device, Tensor, dtypes

# ---------------------------------------------------------------------------------------------------------------------
# from Python and numpy


@pytest.mark.parametrize("value, dtype", [(3, dtypes.int32), (-7, dtypes.int32), (2.5, dtypes.float32),
                                          (True, dtypes.bool), (False, dtypes.bool)])
def test_from_python_scalar(value, dtype):
  t = Tensor(value)
  assert t.shape == () and t.dtype == dtype
  assert t.item() == value and type(t.item()) is type(value)


@pytest.mark.parametrize("data, dtype", [([1, 2, 3], dtypes.int32), ([[1.5, 2], [3, 4]], dtypes.float32),
                                         ([True, False], dtypes.bool), ([[True, 2], [3, 4]], dtypes.int32),
                                         ([1, 2.5], dtypes.float32), ((4, 5), dtypes.int32)])
def test_from_python_list(data, dtype):
  t = Tensor(data)
  assert t.dtype == dtype
  assert_close(t, np.array(data, dtype=dtype.np))
  assert t.tolist() == np.array(data, dtype=dtype.np).tolist()


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
def test_from_list_with_dtype(dtype):
  data = [[1, 0], [1, 1]] if dtype.is_bool else [[1, 2], [3, 4]]
  t = Tensor(data, dtype=dtype)
  assert t.dtype == dtype and t.shape == (2, 2)
  assert t.tolist() == np.array(data).astype(host_dtype(dtype)).tolist()


@pytest.mark.parametrize("dtype", [d for d in ALL_DTYPES if d != dtypes.bfloat16], ids=lambda d: d.name)
@given(shape=shapes, seed=seeds)
@settings(max_examples=examples(3))
def test_numpy_round_trip(dtype, shape, seed):
  rng = np.random.default_rng(seed)
  x = full_range_array(rng, shape, dtype) if not dtype.is_float else random_array(rng, shape, dtype, -1e3, 1e3)
  t = Tensor(x)
  assert t.dtype == dtype and t.shape == x.shape
  out = t.numpy()
  assert out.dtype == x.dtype
  np.testing.assert_array_equal(out, x)


def test_bfloat16_round_trip_rounds_to_nearest_even():
  x = np.array([1.0, 1.00390625, 1.01171875, -2.5, 3.14159, 1e30, -1e-30, np.inf, -np.inf], np.float32)
  t = Tensor(x, dtype=dtypes.bfloat16)
  assert t.dtype == dtypes.bfloat16
  out = t.numpy()
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, round_to(x, dtypes.bfloat16))
  assert np.isnan(Tensor([math.nan], dtype=dtypes.bfloat16).numpy()[0])


def test_from_numpy_scalar_and_0d():
  assert Tensor(np.float64(1.5)).dtype == dtypes.float64
  assert Tensor(np.array(7, np.int16)).shape == ()
  assert Tensor(np.array(7, np.int16)).item() == 7


def test_unsupported_data_raises():
  with pytest.raises(TypeError):
    Tensor(np.array([1 + 2j]))
  with pytest.raises(TypeError):
    Tensor("abc")


# ---------------------------------------------------------------------------------------------------------------------
# constant creation


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (1, 4, 2)])
def test_zeros_ones_empty_full(shape):
  assert_close(Tensor.zeros(*shape), np.zeros(shape, np.float32), dtypes.float32)
  assert_close(Tensor.ones(shape), np.ones(shape, np.float32), dtypes.float32)
  assert Tensor.empty(*shape).shape == shape and Tensor.empty(*shape).dtype == dtypes.float32
  assert_close(Tensor.full(shape, 2.5), np.full(shape, 2.5, np.float32), dtypes.float32)
  assert_close(Tensor.full(shape, 7), np.full(shape, 7, np.int32), dtypes.int32)
  assert_close(Tensor.full(shape, True), np.full(shape, True), dtypes.bool)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
def test_creation_with_dtype(dtype):
  assert_close(Tensor.zeros(2, 3, dtype=dtype), np.zeros((2, 3), host_dtype(dtype)), dtype)
  assert_close(Tensor.ones(2, 3, dtype=dtype), np.ones((2, 3), host_dtype(dtype)), dtype)
  assert_close(Tensor.full((3,), 1, dtype=dtype), np.full((3,), 1, host_dtype(dtype)), dtype)
  assert Tensor.empty(4, dtype=dtype).dtype == dtype


def test_full_int_shape():
  assert Tensor.full(4, 3.0).shape == (4,)
  assert Tensor.zeros((2, 2)).shape == (2, 2)
  assert Tensor.ones([3]).shape == (3,)


@pytest.mark.parametrize("args", [(5,), (2, 9), (2, 9, 3), (9, 2, -2), (-3, 4), (0,), (3, 3), (5, 1),
                                  (0.5, 3.0), (0.0, 1.0, 0.25), (1.0, -1.0, -0.3), (10, 0, -3)])
def test_arange(args):
  out = Tensor.arange(*args)
  want = np.arange(*args)
  assert out.dtype == (dtypes.float32 if any(isinstance(a, float) for a in args) else dtypes.int32)
  assert_close(out, want.astype(out.dtype.np))


@pytest.mark.parametrize("dtype", [dtypes.int64, dtypes.float64, dtypes.float16, dtypes.bfloat16, dtypes.uint8])
def test_arange_dtype(dtype):
  out = Tensor.arange(1, 11, 2, dtype=dtype)
  assert_close(out, np.arange(1, 11, 2).astype(host_dtype(dtype)), dtype)


def test_arange_zero_step_raises():
  with pytest.raises(ValueError, match="step"):
    Tensor.arange(0, 5, 0)


@pytest.mark.parametrize("start, stop, steps", [(0, 1, 5), (-2.5, 7, 11), (3, -3, 4), (1, 1, 3), (0, 5, 1),
                                                (0, 5, 0)])
def test_linspace(start, stop, steps):
  assert_close(Tensor.linspace(start, stop, steps), np.linspace(start, stop, steps, dtype=np.float32), dtypes.float32)


def test_linspace_dtype():
  assert_close(Tensor.linspace(0, 4, 5, dtype=dtypes.int32), np.arange(5, dtype=np.int32), dtypes.int32)


@pytest.mark.parametrize("n, m", [(1, None), (4, None), (3, 5), (5, 2)])
def test_eye(n, m):
  assert_close(Tensor.eye(n, m), np.eye(n, m, dtype=np.float32), dtypes.float32)
  assert_close(Tensor.eye(n, m, dtype=dtypes.int8), np.eye(n, m, dtype=np.int8), dtypes.int8)


@pytest.mark.parametrize("dtype", [dtypes.float32, dtypes.int16, dtypes.bool, dtypes.float16], ids=lambda d: d.name)
def test_like_constructors(dtype, rng):
  t = Tensor(random_array(rng, (3, 4), dtype), dtype=dtype)
  for like, fill in ((t.zeros_like(), 0), (t.ones_like(), 1), (t.full_like(1), 1), (t.empty_like(), None)):
    assert like.shape == t.shape and like.dtype == dtype and like.device == t.device
    if fill is not None:
      assert_close(like, np.full((3, 4), fill, host_dtype(dtype)), dtype)
  assert t.zeros_like(dtype=dtypes.int64).dtype == dtypes.int64
  assert t.full_like(2.5, dtype=dtypes.float64).dtype == dtypes.float64


def test_rand_like_randn_like():
  t = Tensor.ones(50, 40, dtype=dtypes.float16)
  r = t.rand_like()
  assert r.shape == t.shape and r.dtype == dtypes.float16
  assert 0 <= r.numpy().min() and r.numpy().max() < 1
  n = t.randn_like(dtype=dtypes.float32)
  assert n.shape == t.shape and n.dtype == dtypes.float32


# ---------------------------------------------------------------------------------------------------------------------
# random numbers

RANDOM_MAKERS = {
  "rand": lambda shape: Tensor.rand(*shape),
  "randn": lambda shape: Tensor.randn(*shape),
  "randint": lambda shape: Tensor.randint(*shape, low=-3, high=9),
  "uniform": lambda shape: Tensor.uniform(*shape, low=-2.0, high=5.0),
  "normal": lambda shape: Tensor.normal(*shape, mean=3.0, std=0.5),
}


@pytest.mark.parametrize("name", list(RANDOM_MAKERS))
def test_manual_seed_reproducible(name):
  make = RANDOM_MAKERS[name]
  Tensor.manual_seed(1234)
  a, b = make((3, 5)).numpy(), make((3, 5)).numpy()
  Tensor.manual_seed(1234)
  a2, b2 = make((3, 5)).numpy(), make((3, 5)).numpy()
  Tensor.manual_seed(99)
  c = make((3, 5)).numpy()
  np.testing.assert_array_equal(a, a2)
  np.testing.assert_array_equal(b, b2)
  assert not np.array_equal(a, b), "two draws after one seed must differ"
  assert not np.array_equal(a, c), "different seeds must give different numbers"


# name -> (expected mean, expected std, (low, high) bounds or None)
DISTRIBUTIONS = {"rand": (0.5, 1 / math.sqrt(12), (0.0, 1.0)), "randn": (0.0, 1.0, None),
                 "randint": (2.5, math.sqrt((12 ** 2 - 1) / 12), (-3, 8)),
                 "uniform": (1.5, 7 / math.sqrt(12), (-2.0, 5.0)), "normal": (3.0, 0.5, None)}


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_random_distribution(name):
  Tensor.manual_seed(7)
  x = RANDOM_MAKERS[name]((250, 400)).numpy().astype(np.float64)
  mean, std, bounds = DISTRIBUTIONS[name]
  # standard error of the mean is std/sqrt(1e5) ~ 0.003 std; allow ~5 of them
  assert abs(x.mean() - mean) < 0.015 * std, f"{name}: mean {x.mean()} vs {mean}"
  assert abs(x.std() - std) < 0.015 * std, f"{name}: std {x.std()} vs {std}"
  if bounds is not None:
    assert x.min() >= bounds[0] and x.max() <= bounds[1], f"{name}: range [{x.min()}, {x.max()}] outside {bounds}"
    if name == "randint":
      np.testing.assert_array_equal(np.unique(x), np.arange(-3, 9))
    else:
      assert x.max() < bounds[1]


def test_randn_is_gaussian():
  Tensor.manual_seed(3)
  x = Tensor.randn(100_000).numpy().astype(np.float64)
  within1, within2 = np.mean(np.abs(x) < 1), np.mean(np.abs(x) < 2)
  assert abs(within1 - 0.6827) < 0.01 and abs(within2 - 0.9545) < 0.005
  assert np.all(np.isfinite(x))


@pytest.mark.parametrize("dtype", [dtypes.float16, dtypes.bfloat16, dtypes.float64], ids=lambda d: d.name)
def test_random_dtypes(dtype):
  for t in (Tensor.rand(4, 5, dtype=dtype), Tensor.randn(4, 5, dtype=dtype), Tensor.uniform(4, 5, dtype=dtype)):
    assert t.dtype == dtype and t.shape == (4, 5)
    assert np.all(np.isfinite(t.numpy()))
  assert Tensor.randint(4, 5, dtype=dtypes.int64).dtype == dtypes.int64


def test_random_requires_grad():
  t = Tensor.rand(3, requires_grad=True)
  assert t.requires_grad is True
  (t * 2).sum().backward()
  assert_close(t.grad, np.full(3, 2.0, np.float32))


def test_randint_bad_range():
  with pytest.raises(ValueError, match="low"):
    Tensor.randint(3, low=5, high=5)


def test_multinomial():
  Tensor.manual_seed(11)
  weights = Tensor([0.1, 0.0, 0.6, 0.3])
  samples = weights.multinomial(20_000, replacement=True).numpy()
  assert samples.shape == (20_000,)
  counts = np.bincount(samples, minlength=4) / samples.size
  np.testing.assert_allclose(counts, [0.1, 0.0, 0.6, 0.3], atol=0.02)
  batched = Tensor([[1.0, 0.0], [0.0, 1.0]]).multinomial(1)
  np.testing.assert_array_equal(batched.numpy(), [[0], [1]])


# ---------------------------------------------------------------------------------------------------------------------
# cast and bitcast


def _cast_source(rng, src, dst):
  """Values whose conversion src -> dst is defined in C (floats to integers stay within the target's range)."""
  if src.is_float and dst.is_int:
    lo = 0 if dst.is_unsigned else max(-100, dtypes.min(dst))
    return random_array(rng, (11,), src, lo, min(100, dtypes.max(dst)))
  if src.is_float:
    return random_array(rng, (11,), src, -100, 100)
  return full_range_array(rng, (11,), src)


def _numpy_cast(x: np.ndarray, dst):
  if dst == dtypes.bfloat16:
    return round_to(x.astype(np.float64).astype(np.float32), dst)
  if dst.is_bool:
    return x != 0
  if x.dtype.kind == "f" and dst.is_int:
    return np.trunc(x).astype(dst.np)
  return x.astype(dst.np)


@pytest.mark.parametrize("src", ALL_DTYPES, ids=lambda d: d.name)
def test_cast_every_pair(src, rng):
  results = []
  for dst in ALL_DTYPES:
    x = _cast_source(rng, src, dst)
    t = Tensor(x, dtype=src).cast(dst)
    assert t.dtype == dst and t.shape == x.shape
    results.append((dst, x, t))
  Tensor.realize(*[t for _, _, t in results])
  for dst, x, t in results:
    want = _numpy_cast(x, dst)
    if dst.is_float:
      assert_close(t, want, dst, rtol=1e-2 if dst.itemsize == 2 else 1e-6, atol=0)
    else:
      np.testing.assert_array_equal(t.numpy(), want, err_msg=f"{src.name} -> {dst.name}")


def test_cast_float_special_values():
  x = np.array([np.inf, -np.inf, np.nan, -0.0, 65504.0, 1e-8], np.float32)
  for dst in (dtypes.float16, dtypes.bfloat16, dtypes.float64):
    got = Tensor(x).cast(dst).numpy().astype(np.float64)
    want = round_to(x, dst).astype(np.float64)
    np.testing.assert_array_equal(got, want, err_msg=dst.name)
  np.testing.assert_array_equal(Tensor(x).cast(dtypes.bool).numpy(), x != 0)


def test_cast_helpers():
  t = Tensor([1.7, -2.2])
  assert t.int().dtype == dtypes.int32 and t.int().tolist() == [1, -2]
  assert t.long().dtype == dtypes.int64
  assert t.half().dtype == dtypes.float16
  assert t.double().dtype == dtypes.float64
  assert t.bfloat16().dtype == dtypes.bfloat16
  assert t.bool().tolist() == [True, True]
  assert t.int().float().dtype == dtypes.float32
  assert t.cast("float16").dtype == dtypes.float16
  assert t.cast(np.int8).dtype == dtypes.int8


BITCAST_PAIRS = [(dtypes.float32, dtypes.int32), (dtypes.float32, dtypes.uint32), (dtypes.int32, dtypes.float32),
                 (dtypes.float16, dtypes.int16), (dtypes.uint16, dtypes.float16), (dtypes.int8, dtypes.uint8),
                 (dtypes.uint8, dtypes.bool), (dtypes.float64, dtypes.int64), (dtypes.uint64, dtypes.float64),
                 (dtypes.bfloat16, dtypes.uint16), (dtypes.int16, dtypes.bfloat16), (dtypes.int64, dtypes.uint64)]


@pytest.mark.parametrize("src, dst", BITCAST_PAIRS, ids=lambda d: d.name)
def test_bitcast(src, dst, rng):
  if src.is_float:
    x = random_array(rng, (3, 4), src, -1e3, 1e3)
  elif dst.is_bool:
    x = rng.integers(0, 2, (3, 4)).astype(src.np)
  elif dst.is_float:
    # bit patterns of finite floats: reinterpret random floats of the target's size
    x = random_array(rng, (3, 4), dst, -1e3, 1e3)
    x = (round_to(x, dst).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).view(src.np) \
      if dst == dtypes.bfloat16 else x.view(src.np)
  else:
    x = full_range_array(rng, (3, 4), src)
  t = Tensor(x, dtype=src).bitcast(dst)
  assert t.dtype == dst and t.shape == (3, 4)
  host_bits = x if src != dtypes.bfloat16 else (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
  want = host_bits.view(dst.np) if dst != dtypes.bfloat16 else \
    (host_bits.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
  np.testing.assert_array_equal(t.numpy(), want)


def test_bitcast_size_mismatch_raises():
  with pytest.raises(TypeError, match="float32.*int16|item size"):
    Tensor([1.0]).bitcast(dtypes.int16)


# ---------------------------------------------------------------------------------------------------------------------
# type promotion

def _rule(a, b):
  """The promotion rule as compiler/dtypes.py's docstring states it, written out independently."""
  if a == b:
    return a
  if a.is_float and b.is_float:
    if {a, b} == {dtypes.float16, dtypes.bfloat16}:
      return dtypes.float32
    return a if a.itemsize > b.itemsize else b
  if a.is_float or b.is_float:
    return a if a.is_float else b
  return dtypes.from_np(np.promote_types(a.np, b.np))


@pytest.mark.parametrize("a", ALL_DTYPES, ids=lambda d: d.name)
def test_promotion_every_pair(a):
  for b in ALL_DTYPES:
    want = promote(a, b)
    assert want == _rule(a, b), f"promote({a}, {b}) = {want}, the documented rule gives {_rule(a, b)}"
    assert promote(b, a) == want, f"promote is not symmetric for {a}, {b}"
    x, y = Tensor.ones(2, dtype=a), Tensor.ones(2, dtype=b)
    for out in (x + y, x * y, x - y if not (a.is_bool and b.is_bool) else x * y, x.maximum(y)):
      assert out.dtype == want, f"{a} op {b} -> {out.dtype}, expected {want}"
    assert (x < y).dtype == dtypes.bool and (x == y).dtype == dtypes.bool
    assert (x / y).dtype == (want if want.is_float else dtypes.float32)
    assert Tensor.cat(x, y).dtype == want
    assert x.where(x, y).dtype == want


def test_promotion_table_spot_checks():
  table = [(dtypes.int8, dtypes.uint8, dtypes.int16), (dtypes.int32, dtypes.uint32, dtypes.int64),
           (dtypes.uint8, dtypes.int64, dtypes.int64), (dtypes.bool, dtypes.int8, dtypes.int8),
           (dtypes.bool, dtypes.float16, dtypes.float16), (dtypes.int64, dtypes.float16, dtypes.float16),
           (dtypes.uint64, dtypes.bfloat16, dtypes.bfloat16), (dtypes.float16, dtypes.bfloat16, dtypes.float32),
           (dtypes.bfloat16, dtypes.float32, dtypes.float32), (dtypes.float16, dtypes.float64, dtypes.float64),
           (dtypes.uint16, dtypes.int16, dtypes.int32), (dtypes.int64, dtypes.uint64, dtypes.float64)]
  for a, b, want in table:
    assert promote(a, b) == want and promote(b, a) == want, (a, b)


@pytest.mark.parametrize("a, b", [(dtypes.int8, dtypes.uint8), (dtypes.int32, dtypes.float16),
                                  (dtypes.float16, dtypes.bfloat16), (dtypes.bool, dtypes.int16),
                                  (dtypes.uint32, dtypes.int32), (dtypes.uint8, dtypes.float64)])
def test_promotion_values(a, b, rng):
  x = random_array(rng, (5,), a, -100, 100)
  y = random_array(rng, (5,), b, -100, 100)
  out = Tensor(x, dtype=a) + Tensor(y, dtype=b)
  want = promote(a, b)
  assert out.dtype == want
  expected = round_to(x.astype(np.float64) + y.astype(np.float64), want)
  assert_close(out, expected, want)


def _weak_rule(d, scalar):
  if isinstance(scalar, bool) or d.is_float:
    return d
  if isinstance(scalar, int):
    return dtypes.int32 if d.is_bool else d
  return dtypes.float32


@pytest.mark.parametrize("d", ALL_DTYPES, ids=lambda d: d.name)
def test_python_scalars_are_weak(d):
  t = Tensor.ones(3, dtype=d)
  for scalar in (True, 2, 1.5):
    want = _weak_rule(d, scalar)
    assert scalar_result_dtype(d, scalar) == want
    assert (t + scalar).dtype == want, f"{d} + {scalar!r} -> {(t + scalar).dtype}, expected {want}"
    assert (scalar + t).dtype == want, f"{scalar!r} + {d} -> {(scalar + t).dtype}, expected {want}"
    assert (t * scalar).dtype == want
    assert (t == scalar).dtype == dtypes.bool
  assert_close(t + 2, np.full(3, 3, host_dtype(_weak_rule(d, 2))), _weak_rule(d, 2))


# ---------------------------------------------------------------------------------------------------------------------
# the basic Tensor API


def test_properties_and_conversions(rng):
  x = random_array(rng, (2, 3, 4), dtypes.float32)
  t = Tensor(x)
  assert t.shape == (2, 3, 4) and t.ndim == 3 and len(t) == 2 and t.numel() == 24
  assert t.dtype == dtypes.float32 and t.element_size() == 4 and t.nbytes() == 96
  assert t.device == Device.DEFAULT
  assert t.requires_grad is None and t.grad is None
  np.testing.assert_array_equal(t.numpy(), x)
  assert t.tolist() == x.tolist()
  assert Tensor(x[0, 0, 0]).item() == pytest.approx(float(x[0, 0, 0]))
  assert (t[1, 2, 3]).item() == pytest.approx(float(x[1, 2, 3]))


def test_item_needs_one_element():
  with pytest.raises(ValueError, match=r"\(2, 2\)"):
    Tensor.ones(2, 2).item()
  assert Tensor.ones(1, 1).item() == 1.0


def test_realize_returns_self_and_keeps_values(rng):
  x = random_array(rng, (3, 3), dtypes.float32)
  t = Tensor(x) * 2 + 1
  assert t.realize() is t
  assert_close(t, x * 2 + 1, dtypes.float32)
  assert_close(t + 1, x * 2 + 2, dtypes.float32)


def test_to_device():
  t = Tensor([1.0, 2.0])
  assert t.to("CPU").device == "CPU"
  assert t.to("cpu").tolist() == [1.0, 2.0]
  with pytest.raises(ValueError, match="unknown device"):
    t.to("NOPE")


def test_assign(rng):
  x = random_array(rng, (2, 3), dtypes.float32)
  y = random_array(rng, (2, 3), dtypes.float32)
  t = Tensor(x).realize()
  alias = t
  t.assign(Tensor(y))
  assert_close(t, y, dtypes.float32)
  assert alias is t
  t.assign(t * 2)
  assert_close(t, y * 2, dtypes.float32)
  t += 1
  assert_close(t, y * 2 + 1, dtypes.float32)
  t.assign([[1, 2, 3], [4, 5, 6]])
  assert t.dtype == dtypes.float32
  assert t.tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize("realize_first", [True, False])
def test_assign_into_a_window_reads_back_the_window(rng, realize_first):
  """The tensor an assign into a slice returns is that slice of the buffer, before and after it is realized: its
  values, arithmetic on it, and the rest of the buffer left as it was (it once read the buffer's first rows)."""
  x = random_array(rng, (3, 4), dtypes.float32)
  value = random_array(rng, (3, 2), dtypes.float32)
  buf = Tensor(x).realize()
  window = buf.shrink(((0, 3), (1, 3))).assign(Tensor(value))
  if realize_first:
    window.realize()
  np.testing.assert_array_equal((window * 2).numpy(), value * 2)
  np.testing.assert_array_equal(window.numpy(), value)
  row = buf.shrink(((2, 3), None)).assign(Tensor(x[:1] + 1)).realize()
  assert row.sum().item() == pytest.approx(float((x[:1] + 1).sum()), rel=1e-6)
  want = x.copy()
  want[:, 1:3], want[2] = value, x[0] + 1
  np.testing.assert_array_equal(buf.numpy(), want)


def test_assign_shape_mismatch_names_shapes():
  t = Tensor.zeros(2, 3).realize()
  with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
    t.assign(Tensor.ones(3, 2))


def test_assign_casts_to_target_dtype():
  t = Tensor.zeros(3, dtype=dtypes.int32).realize()
  t.assign(Tensor([1.7, -2.2, 3.0]))
  assert t.dtype == dtypes.int32 and t.tolist() == [1, -2, 3]


def test_bool_and_len():
  assert bool(Tensor([3]))
  assert not bool(Tensor(0.0))
  with pytest.raises(ValueError):
    bool(Tensor([1, 2]))
  with pytest.raises(TypeError):
    len(Tensor(1))


@pytest.mark.parametrize("a, b", list(itertools.combinations(FLOAT_DTYPES + INT_DTYPES[:2], 2))[:6])
def test_cat_mixed_dtypes_values(a, b, rng):
  x, y = random_array(rng, (2, 3), a), random_array(rng, (1, 3), b)
  out = Tensor(x, dtype=a).cat(Tensor(y, dtype=b))
  want = promote(a, b)
  assert_close(out, round_to(np.concatenate([x, y]).astype(np.float64), want), want)

