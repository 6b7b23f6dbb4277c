"""Indexing against numpy (values) and torch (gradients): ints, slices with steps (negative too), None, Ellipsis,
integer list/Tensor indices with numpy's advanced-indexing rules, gather, scatter, masked_fill, tril, triu, setitem,
and IndexError for out-of-range indices."""
import numpy as np
import pytest
import torch
from conftest import assert_close, check_grad, examples, make_tensor, random_array, seeds
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from frontend import Tensor, dtypes

nonscalar = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=7)
index_dtypes = st.sampled_from((dtypes.float32, dtypes.int16, dtypes.bool, dtypes.float16))


def _check(out: Tensor, want: np.ndarray, dtype) -> None:
  assert out.dtype == dtype
  assert_close(out, np.asarray(want), dtype, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------------
# basic indexing


@given(shape=nonscalar, data=st.data(), dtype=index_dtypes)
@settings(max_examples=examples(15))
def test_basic_indexing(shape, data, dtype):
  index = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
  x = random_array(np.random.default_rng(data.draw(seeds)), shape, dtype)
  _check(make_tensor(x, dtype)[index], x[index], dtype)


@pytest.mark.parametrize("index", [0, -1, (1, 2), (slice(None), 0), (Ellipsis, 1), (None, 1), (1, None, Ellipsis, -2),
                                   slice(None, None, -1), (slice(3, 0, -2), slice(None, None, 3)),
                                   (slice(-1, -5, -1), Ellipsis), (slice(10, 20),), (slice(-100, 100, 2),),
                                   (Ellipsis,), (Ellipsis, None), (slice(2, 2),), (0, slice(4, 1))])
def test_basic_indexing_cases(index, rng):
  x = random_array(rng, (4, 5, 3), dtypes.float32)
  _check(Tensor(x)[index], x[index], dtypes.float32)


def test_index_0d_and_item(rng):
  x = random_array(rng, (3,), dtypes.float32)
  assert Tensor(x)[1].shape == () and Tensor(x)[1].item() == pytest.approx(float(x[1]))
  s = Tensor(2.5)
  assert s[None].shape == (1,) and s[...].shape == ()


# ---------------------------------------------------------------------------------------------------------------------
# advanced indexing


@st.composite
def advanced_case(draw):
  """(shape, index): some axes take integer arrays (as lists or Tensors, broadcast together), others ints/slices."""
  shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6))
  nd = len(shape)
  adv_axes = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=min(nd, 3), unique=True))
  ishape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
  used = draw(st.integers(1, nd))  # trailing axes may be left out
  index = []
  for axis in range(used):
    n = shape[axis]
    if axis in adv_axes:
      sub = ishape[draw(st.integers(0, len(ishape))):]  # broadcastable to ishape
      values = draw(hnp.arrays(np.int64, sub, elements=st.integers(-n, n - 1)))
      index.append(("tensor" if draw(st.booleans()) else "list", values))
    else:
      kind = draw(st.sampled_from(["slice", "int", "full"]))
      if kind == "int":
        index.append(("int", draw(st.integers(-n, n - 1))))
      elif kind == "slice":
        start, stop = draw(st.integers(-n, n)), draw(st.integers(-n, n))
        index.append(("slice", slice(start, stop, draw(st.sampled_from([1, 2, -1, -2])))))
      else:
        index.append(("slice", slice(None)))
  if not any(k in ("tensor", "list") for k, _ in index):
    n = shape[0]
    index[0] = ("list", np.array([draw(st.integers(-n, n - 1))]))
  return shape, index


def _as_ours(index):
  out = []
  for kind, v in index:
    if kind == "tensor":
      out.append(Tensor(v.astype(np.int32)))
    elif kind == "list":
      out.append(v.tolist())
    else:
      out.append(v)
  return tuple(out)


def _as_numpy(index):
  return tuple(np.asarray(v) if kind in ("tensor", "list") else v for kind, v in index)


@given(case=advanced_case(), seed=seeds, dtype=index_dtypes)
@settings(max_examples=examples(15))
def test_advanced_indexing(case, seed, dtype):
  shape, index = case
  x = random_array(np.random.default_rng(seed), shape, dtype)
  _check(make_tensor(x, dtype)[_as_ours(index)], x[_as_numpy(index)], dtype)


@pytest.mark.parametrize("name, index", [
  ("list", ([2, 0, 2],)), ("tensor_2d", (Tensor([[0, 1], [3, 3]]),)), ("two_adjacent", (slice(None), [0, 2], [1, 1])),
  ("split_by_slice", ([0, 1], slice(None), [2, 0])), ("int_and_list", (1, slice(None), [0, 3])),
  ("negative", ([-1, -4],)), ("after_ellipsis", (Ellipsis, [0, 2])), ("with_none", (None, [1, 0])),
  ("broadcast", ([[0], [2]], slice(None), [0, 3])),
])
def test_advanced_indexing_cases(name, index, rng):
  x = random_array(rng, (4, 5, 4), dtypes.float32)
  np_index = tuple(i.numpy() if isinstance(i, Tensor) else (np.asarray(i) if isinstance(i, list) else i)
                   for i in index)
  _check(Tensor(x)[index], x[np_index], dtypes.float32)


def test_empty_selections(rng):
  x = random_array(rng, (3, 4), dtypes.float32)
  for index in ((slice(2, 1),), (slice(0, 0), [0, 0]), ([], slice(None)), (slice(None), slice(3, 3), None)):
    np_index = tuple(np.asarray(i, dtype=np.int64) if isinstance(i, list) else i for i in index)
    _check(Tensor(x)[index], x[np_index], dtypes.float32)


def test_padded_view_of_empty_tensor():
  out = Tensor.full((2, 0), 1.0).permute(1, 0).pad(((1, 1), (0, 0)))
  _check(out, np.zeros((2, 2), np.float32), dtypes.float32)


def test_index_with_int64_and_unsigned_tensors(rng):
  x = random_array(rng, (6, 2), dtypes.float32)
  for dt in (dtypes.int64, dtypes.uint8, dtypes.int8):
    idx = np.array([5, 0, 3])
    _check(Tensor(x)[Tensor(idx, dtype=dt)], x[idx], dtypes.float32)


@pytest.mark.parametrize("index", [5, -6, (0, 4), (slice(None), -5), [0, 5], ([1], [-5]), (Ellipsis, 4)])
def test_out_of_range_raises_index_error(index):
  t = Tensor.ones(5, 4)
  with pytest.raises(IndexError, match=r"index -?\d+ is out of bounds for axis \d with size \d"):
    t[index]


def test_out_of_range_tensor_index_raises():
  with pytest.raises(IndexError, match="out of bounds"):
    Tensor.ones(3)[Tensor([0, 3])]
  with pytest.raises(IndexError, match="too many indices"):
    Tensor.ones(3)[0, 0]


def test_bad_index_types_raise():
  with pytest.raises(TypeError):
    Tensor.ones(3)[Tensor([0.5])]
  with pytest.raises(TypeError):
    Tensor.ones(3)[Tensor([True, False, True])]
  with pytest.raises(IndexError):
    Tensor.ones(3)[..., ...]


# ---------------------------------------------------------------------------------------------------------------------
# gather, scatter, masked_fill, tril, triu


@st.composite
def gather_case(draw):
  shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
  dim = draw(st.integers(-len(shape), len(shape) - 1))
  d = dim % len(shape)
  ishape = tuple(draw(st.integers(1, 5)) if i == d else draw(st.integers(1, s)) for i, s in enumerate(shape))
  return shape, dim, ishape


@given(case=gather_case(), seed=seeds, dtype=st.sampled_from((dtypes.float32, dtypes.int32, dtypes.bfloat16)))
@settings(max_examples=examples(10))
def test_gather(case, seed, dtype):
  shape, dim, ishape = case
  rng = np.random.default_rng(seed)
  x = random_array(rng, shape, dtype)
  index = rng.integers(0, shape[dim], ishape)
  out = make_tensor(x, dtype).gather(dim, Tensor(index.astype(np.int32)))
  want = torch.gather(torch.from_numpy(x), dim, torch.from_numpy(index))
  _check(out, want.numpy(), dtype)
  # negative indices count from the end
  negative = Tensor((index - shape[dim]).astype(np.int32))
  _check(make_tensor(x, dtype).gather(dim, negative), want.numpy(), dtype)


@given(case=gather_case(), seed=seeds)
@settings(max_examples=examples(4))
def test_gather_grad(case, seed):
  shape, dim, ishape = case
  rng = np.random.default_rng(seed)
  index = rng.integers(0, shape[dim], ishape)
  check_grad(lambda t: t.gather(dim, Tensor(index.astype(np.int32))),
             lambda t: torch.gather(t, dim, torch.from_numpy(index)), [random_array(rng, shape, dtypes.float32)], rng)


def test_gather_errors():
  with pytest.raises(IndexError, match="out of bounds"):
    Tensor.ones(2, 3).gather(1, Tensor([[0, 3]]))
  with pytest.raises(ValueError, match="dims"):
    Tensor.ones(2, 3).gather(1, Tensor([0, 1]))


@st.composite
def scatter_case(draw):
  shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
  dim = draw(st.integers(-len(shape), len(shape) - 1))
  d = dim % len(shape)
  ishape = tuple(draw(st.integers(1, s)) for s in shape)
  return shape, dim, d, ishape


@given(case=scatter_case(), seed=seeds, reduce=st.sampled_from([None, "add", "multiply"]))
@settings(max_examples=examples(12))
def test_scatter(case, seed, reduce):
  shape, dim, d, ishape = case
  rng = np.random.default_rng(seed)
  x = random_array(rng, shape, dtypes.float32)
  src = random_array(rng, ishape, dtypes.float32)
  if reduce is None:
    # distinct targets along dim (torch leaves the winner among duplicates undefined)
    perms = np.argsort(rng.random(ishape[:d] + (shape[d],) + ishape[d + 1:]), axis=d)
    index = np.take(perms, np.arange(ishape[d]), axis=d)
  else:
    index = rng.integers(0, shape[d], ishape)
  out = Tensor(x).scatter(dim, Tensor(index.astype(np.int32)), Tensor(src), reduce=reduce)
  tx, ti, ts = torch.from_numpy(x), torch.from_numpy(index), torch.from_numpy(src)
  if reduce is None:
    want = tx.scatter(dim, ti, ts)
  else:
    want = tx.scatter_reduce(dim, ti, ts, "sum" if reduce == "add" else "prod", include_self=True)
  assert_close(out, want, dtypes.float32, scale=4)


def test_scatter_scalar_source_and_errors():
  out = Tensor.zeros(2, 4).scatter(1, Tensor([[0, 2], [3, 1]]), 7.0)
  want = torch.zeros(2, 4).scatter(1, torch.tensor([[0, 2], [3, 1]]), 7.0)
  assert_close(out, want, dtypes.float32)
  with pytest.raises(ValueError, match="reduce"):
    Tensor.zeros(2).scatter(0, Tensor([0]), 1.0, reduce="max")
  with pytest.raises(IndexError, match="out of bounds"):
    Tensor.zeros(2).scatter(0, Tensor([2]), 1.0)


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=6), seed=seeds,
       dtype=st.sampled_from((dtypes.float32, dtypes.int8, dtypes.float16)))
@settings(max_examples=examples(8))
def test_masked_fill(shapes, seed, dtype):
  (sx, sm), result = shapes
  if tuple(np.broadcast_shapes(sx, sm)) != tuple(sx):
    sx = result
  rng = np.random.default_rng(seed)
  x = random_array(rng, sx, dtype)
  mask = np.asarray(rng.random(sm) < 0.5)
  out = make_tensor(x, dtype).masked_fill(Tensor(mask), 3)
  _check(out, np.where(mask, np.array(3, x.dtype), x), dtype)


@pytest.mark.parametrize("name", ["tril", "triu"])
@given(shape=hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=7), diagonal=st.integers(-3, 3),
       seed=seeds, dtype=st.sampled_from((dtypes.float32, dtypes.int32, dtypes.bool)))
@settings(max_examples=examples(8))
def test_tril_triu(name, shape, diagonal, seed, dtype):
  x = random_array(np.random.default_rng(seed), shape, dtype)
  _check(getattr(make_tensor(x, dtype), name)(diagonal), getattr(np, name)(x, diagonal), dtype)


def test_tril_triu_grad(rng):
  x = random_array(rng, (3, 4, 5), dtypes.float32)
  check_grad(lambda t: t.tril(1), lambda t: t.tril(1), [x], rng)
  check_grad(lambda t: t.triu(-1), lambda t: t.triu(-1), [x], rng)


# ---------------------------------------------------------------------------------------------------------------------
# gradients through indexing


@pytest.mark.parametrize("index", [(1,), (slice(None, None, -2), 2), (Ellipsis, slice(1, 4, 2)), (None, -1, [0, 2, 0]),
                                   ([1, 1, 0], slice(None), [3, 0, 3])])
def test_getitem_grad(index, rng):
  x = random_array(rng, (3, 4, 5), dtypes.float32)

  def theirs(t):
    if any(isinstance(i, slice) and i.step is not None and i.step < 0 for i in index):
      # torch has no negative steps: flip the axes first
      axes = [a for a, i in enumerate(index) if isinstance(i, slice) and i.step is not None and i.step < 0]
      t = t.flip(axes)
      fixed = tuple(slice(None, None, -i.step) if a in axes else i for a, i in enumerate(index))
      return t[fixed]
    return t[tuple(torch.tensor(i) if isinstance(i, list) else i for i in index)]

  check_grad(lambda t: t[index], theirs, [x], rng)


# ---------------------------------------------------------------------------------------------------------------------
# setitem


@pytest.mark.parametrize("index", [0, -1, (1, 2), (slice(None), 1), (slice(1, 3),), (Ellipsis, slice(0, 2)),
                                   (slice(None), slice(2, 5), 0), (slice(3, 1),)])
@pytest.mark.parametrize("value_kind", ["scalar", "tensor", "broadcast"])
def test_setitem(index, value_kind, rng):
  x = random_array(rng, (3, 5, 2), dtypes.float32)
  region = x[index].shape
  if value_kind == "scalar":
    value, np_value = 2.5, 2.5
  elif value_kind == "tensor":
    np_value = random_array(rng, region, dtypes.float32)
    value = Tensor(np_value)
  else:
    np_value = random_array(rng, region[-1:], dtypes.float32)
    value = Tensor(np_value)
  t = Tensor(x)
  t[index] = value
  want = x.copy()
  want[index] = np_value
  _check(t, want, dtypes.float32)


def test_setitem_casts_value_and_keeps_dtype():
  t = Tensor.zeros(4, dtype=dtypes.int32).contiguous().realize()
  t[1:3] = Tensor([1.7, -2.9])
  assert t.dtype == dtypes.int32 and t.tolist() == [0, 1, -2, 0]


def test_setitem_out_of_range_and_unsupported():
  t = Tensor.zeros(3, 2)
  with pytest.raises(IndexError, match="index 3 is out of bounds for axis 0 with size 3"):
    t[3] = 1.0
  with pytest.raises(TypeError, match="step"):
    t[::2] = 1.0
