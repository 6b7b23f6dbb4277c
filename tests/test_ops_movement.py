"""Movement ops against numpy (values) and torch (gradients): reshape view permute transpose flatten unflatten squeeze
unsqueeze expand repeat pad shrink flip roll cat stack split chunk contiguous, and their error messages."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from conftest import assert_close, check_grad, examples, make_tensor, random_array, seeds
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from frontend import Tensor, dtypes

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=7)
nonscalar = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=7)
# dims of 1..3, so size-1 axes are common
small_shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3)
movement_dtypes = st.sampled_from((dtypes.float32, dtypes.int8, dtypes.float16, dtypes.bool, dtypes.int64))


def _values(seed, shape, dtype=dtypes.float32):
  return random_array(np.random.default_rng(seed), shape, dtype)


def _check(out: Tensor, want: np.ndarray, dtype) -> None:
  assert out.dtype == dtype
  assert_close(out, want, dtype, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------------
# views


@st.composite
def reshape_case(draw):
  shape = draw(shapes)
  target = list(draw(st.permutations(shape))) if shape else []
  if len(target) >= 2 and draw(st.booleans()):
    target = [target[0] * target[1]] + target[2:]  # merge two axes
  if draw(st.booleans()):
    target = target + [1]
  if target and draw(st.booleans()):
    target[draw(st.integers(0, len(target) - 1))] = -1
  return shape, tuple(target)


@given(case=reshape_case(), dtype=movement_dtypes, seed=seeds)
@settings(max_examples=examples(10))
def test_reshape(case, dtype, seed):
  shape, target = case
  x = _values(seed, shape, dtype)
  t = make_tensor(x, dtype)
  _check(t.reshape(target), x.reshape(target), dtype)
  _check(t.reshape(*target) if target else t.reshape(()), x.reshape(target), dtype)
  _check(t.view(target), x.reshape(target), dtype)


@given(shape=shapes, data=st.data())
@settings(max_examples=examples(10))
def test_permute_transpose(shape, data):
  x = _values(data.draw(seeds), shape)
  order = tuple(data.draw(st.permutations(range(len(shape)))))
  t = Tensor(x)
  _check(t.permute(order), x.transpose(order), dtypes.float32)
  if shape:
    _check(t.permute(*order), x.transpose(order), dtypes.float32)
    negative = tuple(o - len(shape) for o in order)
    _check(t.permute(negative), x.transpose(order), dtypes.float32)
    a, b = data.draw(st.integers(-len(shape), len(shape) - 1)), data.draw(st.integers(-len(shape), len(shape) - 1))
    _check(t.transpose(a, b), np.swapaxes(x, a, b), dtypes.float32)
  _check(t.T, x.T, dtypes.float32)


def test_transpose_default_swaps_first_two():
  x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
  _check(Tensor(x).transpose(), np.swapaxes(x, 0, 1), dtypes.float32)


@given(shape=nonscalar, data=st.data())
@settings(max_examples=examples(8))
def test_flatten_unflatten(shape, data):
  x = _values(data.draw(seeds), shape)
  nd = len(shape)
  start = data.draw(st.integers(0, nd - 1))
  end = data.draw(st.integers(start, nd - 1))
  t = Tensor(x)
  want = x.reshape(shape[:start] + (-1,) + shape[end + 1:])
  _check(t.flatten(start, end), want, dtypes.float32)
  _check(t.flatten(start - nd, end - nd), want, dtypes.float32)
  _check(t.flatten(), x.reshape(-1), dtypes.float32)
  dim = data.draw(st.integers(-nd, nd - 1))
  size = shape[dim]
  sizes = data.draw(st.sampled_from([(size,), (1, size), (size, 1)] + ([(2, size // 2)] if size % 2 == 0 else [])))
  d = dim % nd
  _check(t.unflatten(dim, sizes), x.reshape(shape[:d] + tuple(sizes) + shape[d + 1:]), dtypes.float32)


def test_flatten_0d():
  assert Tensor(3.0).flatten().shape == (1,)


@given(shape=small_shapes, data=st.data())
@settings(max_examples=examples(10))
def test_squeeze_unsqueeze(shape, data):
  x = _values(data.draw(seeds), shape)
  t = Tensor(x)
  _check(t.squeeze(), np.squeeze(x), dtypes.float32)
  if shape:
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    want = np.squeeze(x, dim) if shape[dim] == 1 else x  # torch: squeezing a non-1 axis is a no-op
    _check(t.squeeze(dim), want, dtypes.float32)
  dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
  _check(t.unsqueeze(dim), np.expand_dims(x, dim), dtypes.float32)


@st.composite
def expand_case(draw):
  shape = draw(small_shapes)
  lead = draw(st.lists(st.integers(1, 4), max_size=2))
  target = list(lead) + [draw(st.integers(1, 4)) if s == 1 else s for s in shape]
  # -1 keeps an axis as it is
  use_minus_one = [False] * len(lead) + [draw(st.booleans()) and t == s for t, s in zip(target[len(lead):], shape)]
  spelled = tuple(-1 if m else v for m, v in zip(use_minus_one, target))
  return shape, tuple(target), spelled


@given(case=expand_case(), dtype=movement_dtypes, seed=seeds)
@settings(max_examples=examples(10))
def test_expand(case, dtype, seed):
  shape, target, spelled = case
  x = _values(seed, shape, dtype)
  t = make_tensor(x, dtype)
  _check(t.expand(spelled), np.broadcast_to(x, target), dtype)
  if spelled:
    _check(t.expand(*spelled), np.broadcast_to(x, target), dtype)


@given(shape=small_shapes, data=st.data())
@settings(max_examples=examples(8))
def test_repeat(shape, data):
  x = _values(data.draw(seeds), shape)
  repeats = tuple(data.draw(st.lists(st.integers(1, 3), min_size=len(shape), max_size=len(shape) + 2)))
  _check(Tensor(x).repeat(repeats), np.tile(x, repeats), dtypes.float32)
  if repeats:
    _check(Tensor(x).repeat(*repeats), np.tile(x, repeats), dtypes.float32)


@st.composite
def pad_case(draw):
  shape = draw(nonscalar)
  pads = []
  for s in shape:
    before = draw(st.integers(-(s // 2), 3))
    after = draw(st.integers(-((s - max(0, -before)) // 2), 3))
    pads.append((before, after))
  return shape, tuple(pads)


def _numpy_pad(x, pads, value):
  crop = tuple(slice(max(0, -b), x.shape[i] - max(0, -a)) for i, (b, a) in enumerate(pads))
  return np.pad(x[crop], [(max(0, b), max(0, a)) for b, a in pads], constant_values=value)


@given(case=pad_case(), dtype=movement_dtypes, seed=seeds, value=st.sampled_from([0, 1, -2]))
@settings(max_examples=examples(10))
def test_pad(case, dtype, seed, value):
  shape, pads = case
  x = _values(seed, shape, dtype)
  t = make_tensor(x, dtype)
  value = bool(value) if dtype.is_bool else value
  want = _numpy_pad(x, pads, value)
  _check(t.pad(pads, value=value), want, dtype)
  # torch-style flat padding, last axis first
  flat = tuple(p for pair in reversed(pads) for p in pair)
  _check(t.pad(flat, value=value), want, dtype)


def test_pad_with_none_and_float_value():
  x = np.arange(6, dtype=np.float32).reshape(2, 3)
  _check(Tensor(x).pad((None, (1, 2)), value=-1.5), np.pad(x, [(0, 0), (1, 2)], constant_values=-1.5),
         dtypes.float32)
  _check(Tensor(x).pad((1, 1)), np.pad(x, [(0, 0), (1, 1)]), dtypes.float32)


@given(shape=nonscalar, data=st.data())
@settings(max_examples=examples(8))
def test_shrink(shape, data):
  x = _values(data.draw(seeds), shape)
  arg = []
  for s in shape:
    lo = data.draw(st.integers(0, s - 1))
    arg.append(None if data.draw(st.booleans()) else (lo, data.draw(st.integers(lo + 1, s))))
  want = x[tuple(slice(None) if a is None else slice(*a) for a in arg)]
  _check(Tensor(x).shrink(tuple(arg)), want, dtypes.float32)


@given(shape=nonscalar, data=st.data())
@settings(max_examples=examples(8))
def test_flip(shape, data):
  x = _values(data.draw(seeds), shape)
  axes = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), min_size=1, max_size=len(shape),
                            unique_by=lambda a: a % len(shape)))
  _check(Tensor(x).flip(axes), np.flip(x, axes), dtypes.float32)
  _check(Tensor(x).flip(axes[0]), np.flip(x, axes[0]), dtypes.float32)
  _check(Tensor(x).flip(*axes), np.flip(x, axes), dtypes.float32)


@given(shape=nonscalar, data=st.data())
@settings(max_examples=examples(8))
def test_roll(shape, data):
  x = _values(data.draw(seeds), shape)
  nd = len(shape)
  dims = data.draw(st.lists(st.integers(-nd, nd - 1), min_size=1, max_size=nd, unique_by=lambda a: a % nd))
  shifts = data.draw(st.lists(st.integers(-9, 9), min_size=len(dims), max_size=len(dims)))
  _check(Tensor(x).roll(tuple(shifts), tuple(dims)), np.roll(x, shifts, dims), dtypes.float32)
  _check(Tensor(x).roll(shifts[0], dims[0]), np.roll(x, shifts[0], dims[0]), dtypes.float32)
  _check(Tensor(x).roll(shifts[0]), np.roll(x, shifts[0]), dtypes.float32)


# ---------------------------------------------------------------------------------------------------------------------
# joining and splitting


@st.composite
def cat_case(draw):
  shape = draw(nonscalar)
  dim = draw(st.integers(-len(shape), len(shape) - 1))
  sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
  d = dim % len(shape)
  return [shape[:d] + (s,) + shape[d + 1:] for s in sizes], dim


@given(case=cat_case(), dtype=movement_dtypes, seed=seeds)
@settings(max_examples=examples(10))
def test_cat(case, dtype, seed):
  part_shapes, dim = case
  rng = np.random.default_rng(seed)
  parts = [random_array(rng, s, dtype) for s in part_shapes]
  ts = [make_tensor(p, dtype) for p in parts]
  want = np.concatenate(parts, dim)
  _check(ts[0].cat(*ts[1:], dim=dim), want, dtype)
  _check(Tensor.cat(*ts, dim=dim), want, dtype)


@given(shape=shapes, count=st.integers(1, 4), data=st.data())
@settings(max_examples=examples(8))
def test_stack(shape, count, data):
  rng = np.random.default_rng(data.draw(seeds))
  parts = [random_array(rng, shape, dtypes.float32) for _ in range(count)]
  dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
  want = np.stack(parts, dim)
  _check(Tensor.stack(*[Tensor(p) for p in parts], dim=dim), want, dtypes.float32)
  _check(Tensor.stack([Tensor(p) for p in parts], dim=dim), want, dtypes.float32)


@given(shape=nonscalar, data=st.data())
@settings(max_examples=examples(8))
def test_split_chunk(shape, data):
  x = _values(data.draw(seeds), shape)
  dim = data.draw(st.integers(-len(shape), len(shape) - 1))
  n = shape[dim]
  size = data.draw(st.integers(1, n + 1))
  t, tt = Tensor(x), torch.from_numpy(x)
  for got, want in ((t.split(size, dim), tt.split(size, dim)),):
    assert len(got) == len(want)
    for g, w in zip(got, want):
      _check(g, w.numpy(), dtypes.float32)
  cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=3)))
  sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]
  got = t.split(sizes, dim)
  assert [g.shape[dim] for g in got] == sizes
  for g, w in zip(got, tt.split(sizes, dim)):
    _check(g, w.numpy(), dtypes.float32)
  chunks = data.draw(st.integers(1, n + 2))
  got, want = t.chunk(chunks, dim), tt.chunk(chunks, dim)
  assert len(got) == len(want), f"chunk({chunks}) of {n}: {len(got)} pieces, torch gives {len(want)}"
  for g, w in zip(got, want):
    _check(g, w.numpy(), dtypes.float32)


def test_split_sizes_must_add_up():
  with pytest.raises(ValueError, match=r"\[1, 1\].*3"):
    Tensor.ones(3, 2).split([1, 1])


def test_contiguous_and_clone(rng):
  x = random_array(rng, (3, 4), dtypes.float32)
  t = Tensor(x).permute(1, 0)
  _check(t.contiguous(), x.T, dtypes.float32)
  _check(t.contiguous().reshape(12), x.T.reshape(12), dtypes.float32)
  _check(t.clone(), x.T, dtypes.float32)


def test_iteration(rng):
  x = random_array(rng, (3, 2), dtypes.float32)
  rows = list(Tensor(x))
  assert len(rows) == 3
  for r, w in zip(rows, x):
    _check(r, w, dtypes.float32)


# ---------------------------------------------------------------------------------------------------------------------
# gradients vs torch

GRAD_CASES = {
  "reshape": (lambda t: t.reshape(-1, 2), lambda t: t.reshape(-1, 2), (3, 4)),
  "permute": (lambda t: t.permute(2, 0, 1), lambda t: t.permute(2, 0, 1), (2, 3, 4)),
  "expand": (lambda t: t.expand(3, 2, 4), lambda t: t.expand(3, 2, 4), (2, 1)),
  "pad": (lambda t: t.pad(((1, 2), (-1, 1))), lambda t: F.pad(t, (-1, 1, 1, 2)), (3, 4)),
  "pad_value": (lambda t: t.pad(((1, 0), (0, 2)), value=3.0), lambda t: F.pad(t, (0, 2, 1, 0), value=3.0), (3, 4)),
  "shrink": (lambda t: t.shrink(((1, 3), None)), lambda t: t[1:3], (4, 3)),
  "flip": (lambda t: t.flip((0, 2)), lambda t: t.flip((0, 2)), (2, 3, 4)),
  "repeat": (lambda t: t.repeat(2, 1, 3), lambda t: t.repeat(2, 1, 3), (3, 2)),
  "roll": (lambda t: t.roll((2, -1), (0, 1)), lambda t: t.roll((2, -1), (0, 1)), (4, 3)),
  "transpose": (lambda t: t.transpose(0, 1), lambda t: t.transpose(0, 1), (3, 4)),
  "squeeze": (lambda t: t.squeeze(1).unsqueeze(0), lambda t: t.squeeze(1).unsqueeze(0), (3, 1, 2)),
  "flatten": (lambda t: t.flatten(1), lambda t: t.flatten(1), (2, 3, 4)),
  "split": (lambda t: t.split(2, 1)[1] * 2 + t.split(2, 1)[0], lambda t: t.split(2, 1)[1] * 2 + t.split(2, 1)[0],
            (3, 4)),
  "chunk": (lambda t: t.chunk(3, 0)[2], lambda t: t.chunk(3, 0)[2], (6, 2)),
}


@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_movement_grad(name, rng):
  ours, theirs, shape = GRAD_CASES[name]
  check_grad(ours, theirs, [random_array(rng, shape, dtypes.float32)], rng)


def test_cat_stack_grad(rng):
  a, b, c = (random_array(rng, s, dtypes.float32) for s in ((2, 3), (4, 3), (1, 3)))
  check_grad(lambda x, y, z: x.cat(y, z, dim=0), lambda x, y, z: torch.cat([x, y, z], 0), [a, b, c], rng)
  a, b = random_array(rng, (2, 3), dtypes.float32), random_array(rng, (2, 3), dtypes.float32)
  check_grad(lambda x, y: Tensor.stack(x, y, dim=1), lambda x, y: torch.stack([x, y], 1), [a, b], rng)


def test_broadcast_grad_sums(rng):
  a, b = random_array(rng, (3, 1, 4), dtypes.float32), random_array(rng, (2, 1), dtypes.float32)
  check_grad(lambda x, y: x * y, lambda x, y: x * y, [a, b], rng)


# ---------------------------------------------------------------------------------------------------------------------
# error messages


def test_reshape_wrong_size_names_the_sizes():
  with pytest.raises(ValueError, match=r"\(2, 3\).*6.*\(4, 2\)"):
    Tensor.ones(2, 3).reshape(4, 2)
  with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, -1\)"):
    Tensor.ones(2, 3).reshape(4, -1)
  with pytest.raises(ValueError, match="-1"):
    Tensor.ones(2, 3).reshape(-1, -1)


def test_movement_errors():
  t = Tensor.ones(2, 3)
  with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 3\)"):
    t.expand(4, 3)
  with pytest.raises(ValueError, match=r"\(1, 0, 0\)|permutation"):
    Tensor.ones(2, 3, 4).permute(1, 0, 0)
  with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)|\(2, 4\).*\(2, 3\)"):
    t.cat(Tensor.ones(2, 4), dim=0)
  with pytest.raises(ValueError, match=r"\(2, 3\)"):
    t.pad(((1, 1),))
  with pytest.raises(IndexError, match="axis 2"):
    t.flip(2)
  with pytest.raises(ValueError, match=r"\(2, 3\)"):
    t.shrink(((0, 3), (0, 3)))
