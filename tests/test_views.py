"""ShapeTracker/View against numpy: random chains of movement ops (reshape, permute, expand, pad, shrink, flip).

The reference applies the same chain to `np.arange(n)` (pad fills -1), so each element names the flat buffer offset
it reads, or -1 where it is padding. `ShapeTracker.index` is evaluated symbolically at every index of the result and
must give the same offsets and validity. Composition (what the scheduler does while it walks down a graph) and a few
chains realized as kernels on the CPU are checked the same way.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from test_symbolic import evaluate, grid, ranges

from compiler.dtypes import dtypes
from compiler.ir import MOVEMENT, Node, Ops, movement_tracker, verify
from compiler.view import ShapeTracker, View, unravel
from frontend.tensor import Tensor

MAX_SIZE = 240


# ---- random chains --------------------------------------------------------------------------------------------------

def _factors(n: int) -> list[int]:
  out, p = [], 2
  while n > 1:
    while n % p == 0:
      out.append(p)
      n //= p
    p += 1
  return out


def _random_reshape(rng, shape) -> tuple[int, ...]:
  """A random shape of the same size: prime factors shuffled and regrouped, with some size-1 axes."""
  factors = _factors(math.prod(shape))
  rng.shuffle(factors)
  ndim = int(rng.integers(1, 5))
  dims = [1] * ndim
  for f in factors:
    dims[int(rng.integers(ndim))] *= f
  if rng.random() < 0.3:
    dims.insert(int(rng.integers(len(dims) + 1)), 1)
  return tuple(dims)


def random_op(rng, shape: tuple[int, ...]) -> tuple[str, tuple]:
  size = math.prod(shape)
  choices = ["reshape", "permute", "pad", "shrink", "flip", "expand"]
  kind = str(rng.choice(choices))
  if kind == "expand" and 1 not in shape:
    kind = "reshape"
  if kind == "pad" and size * 3 > MAX_SIZE:
    kind = "shrink"
  if kind == "reshape":
    return kind, _random_reshape(rng, shape)
  if kind == "permute":
    return kind, tuple(int(a) for a in rng.permutation(len(shape)))
  if kind == "expand":
    grow = size * 3 <= MAX_SIZE
    return kind, tuple(int(rng.integers(2, 4)) if s == 1 and grow and rng.random() < 0.7 else s for s in shape)
  if kind == "pad":
    return kind, tuple((int(rng.integers(0, 2)), int(rng.integers(0, 2))) for _ in shape)
  if kind == "shrink":
    out = []
    for s in shape:
      lo = int(rng.integers(0, s))
      out.append((lo, int(rng.integers(lo + 1, s + 1))))
    return kind, tuple(out)
  return kind, tuple(a for a in range(len(shape)) if rng.random() < 0.5)


def apply_numpy(x: np.ndarray, kind: str, arg, fill) -> np.ndarray:
  if kind == "reshape":
    return x.reshape(arg)
  if kind == "permute":
    return x.transpose(arg)
  if kind == "expand":
    return np.broadcast_to(x, arg)
  if kind == "pad":
    return np.pad(x, arg, constant_values=fill)
  if kind == "shrink":
    return x[tuple(slice(lo, hi) for lo, hi in arg)]
  return np.flip(x, arg) if arg else x


def random_chain(rng, shape: tuple[int, ...], length: int) -> list[tuple[str, tuple]]:
  ops = []
  ref = np.zeros(shape)
  for _ in range(length):
    kind, arg = random_op(rng, ref.shape)
    ops.append((kind, arg))
    ref = apply_numpy(ref, kind, arg, 0)
  return ops


def reference(shape: tuple[int, ...], ops) -> np.ndarray:
  x = np.arange(math.prod(shape)).reshape(shape)
  for kind, arg in ops:
    x = apply_numpy(x, kind, arg, -1)
  return x


def tracker_for(shape: tuple[int, ...], ops) -> ShapeTracker:
  st = ShapeTracker.contiguous(shape)
  for kind, arg in ops:
    st = getattr(st, kind)(arg)
  return st


def check_tracker(st: ShapeTracker, ref: np.ndarray) -> None:
  """Evaluates st.index at every index of ref.shape: validity must be `ref >= 0`, offsets must equal ref there."""
  assert st.shape == ref.shape, f"tracker shape {st.shape} != numpy shape {ref.shape}"
  idxs = ranges(*ref.shape)
  flat, valid = st.index(idxs)
  env = grid(idxs)
  got_valid = np.ones(ref.shape, bool) if valid is None else np.broadcast_to(evaluate(valid, env), ref.shape)
  np.testing.assert_array_equal(got_valid, ref >= 0, err_msg=f"validity of {st.canonical()}")
  got_flat = np.broadcast_to(evaluate(flat, env), ref.shape)
  np.testing.assert_array_equal(got_flat[got_valid], ref[got_valid], err_msg=f"offsets of {st.canonical()}")


def random_start(rng) -> tuple[int, ...]:
  return tuple(int(s) for s in rng.integers(1, 6, size=int(rng.integers(1, 4))))


# ---- single ops and known-hard cases --------------------------------------------------------------------------------

CASES = {
  "permute_then_merge": ((2, 3, 4), [("permute", (2, 0, 1)), ("reshape", (4, 6))]),
  "permute_then_split": ((6, 4), [("permute", (1, 0)), ("reshape", (2, 2, 3, 2))]),
  "pad_then_reshape": ((3, 4), [("pad", ((1, 0), (0, 2))), ("reshape", (24,))]),
  "pad_then_add_ones": ((3, 4), [("pad", ((1, 1), (2, 0))), ("reshape", (1, 5, 1, 6))]),
  "flip_pad_flip": ((4, 5), [("flip", (0,)), ("pad", ((2, 1), (0, 3))), ("flip", (0, 1))]),
  "shrink_of_pad": ((5,), [("pad", ((3, 3),)), ("shrink", ((1, 6),))]),
  "shrink_out_of_pad": ((5,), [("pad", ((3, 3),)), ("shrink", ((0, 2),))]),
  "expand_then_reshape": ((3, 1), [("expand", (3, 4)), ("reshape", (12,))]),
  "expand_pad_permute": ((1, 3), [("expand", (2, 3)), ("pad", ((1, 0), (0, 1))), ("permute", (1, 0))]),
  "strided_slice": ((10,), [("pad", ((0, 2),)), ("reshape", (4, 3)), ("shrink", ((0, 4), (0, 1))), ("reshape", (4,))]),
  "flip_then_split": ((12,), [("flip", (0,)), ("reshape", (3, 4))]),
  "reshape_of_expand_needs_view": ((2, 1, 3), [("expand", (2, 2, 3)), ("reshape", (4, 3)), ("permute", (1, 0)),
                                               ("reshape", (12,))]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_known_cases(name):
  shape, ops = CASES[name]
  check_tracker(tracker_for(shape, ops), reference(shape, ops))


@pytest.mark.parametrize("ops", [
  [("pad", ((1, 0),)), ("shrink", ((0, 1),)), ("reshape", (1, 1))],
  [("pad", ((0, 1), (1, 0))), ("shrink", ((2, 4), (0, 1))), ("reshape", (2,))],
], ids=["reshape", "drop_axis"])
def test_reshape_keeps_empty_mask_of_size1_axis(ops):
  shape = (2,) if len(ops[0][1]) == 1 else (3, 1)
  check_tracker(tracker_for(shape, ops), reference(shape, ops))


def test_compose_keeps_empty_mask_of_size1_axis():
  shape, ops = (4, 1, 1), [("pad", ((0, 1), (0, 0), (1, 0))), ("shrink", ((2, 5), (0, 1), (0, 1)))]
  outer = tracker_for((3, 1, 1), [("permute", (1, 2, 0))]).with_src_shape((3, 1, 1))
  check_tracker(tracker_for(shape, ops).compose(outer), reference(shape, ops + [("permute", (1, 2, 0))]))


def test_contiguous_reshape_stays_one_view():
  st = ShapeTracker.contiguous((4, 6)).reshape((2, 12)).reshape((24,))
  assert len(st.views) == 1 and st.is_contiguous


def test_unmergeable_reshape_pushes_a_view():
  st = ShapeTracker.contiguous((2, 3)).permute((1, 0)).reshape((6,))
  assert len(st.views) == 2
  check_tracker(st, reference((2, 3), [("permute", (1, 0)), ("reshape", (6,))]))


def test_view_reshape_returns_none_when_impossible():
  v = View.contiguous((2, 3)).permute((1, 0))
  assert v.reshape((6,)) is None
  assert v.reshape((3, 2, 1)) is not None


@pytest.mark.parametrize("shape", [(6,), (2, 3), (3, 1, 4), (2, 2, 5)])
def test_unravel(shape):
  flat, = ranges(math.prod(shape))
  idxs = unravel(flat, shape)
  env = grid([flat])
  want = np.unravel_index(env[flat], shape)
  for got, expected in zip(idxs, want):
    np.testing.assert_array_equal(np.broadcast_to(evaluate(got, env), expected.shape), expected)


# ---- random chains --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(30))
def test_random_chains(seed):
  rng = np.random.default_rng(seed)
  for _ in range(8):
    shape = random_start(rng)
    ops = random_chain(rng, shape, int(rng.integers(1, 7)))
    check_tracker(tracker_for(shape, ops), reference(shape, ops))


@pytest.mark.parametrize("seed", range(20))
def test_compose_matches_chain(seed):
  """tracker(ops[:k]).compose(tracker(ops[k:])) indexes like tracker(ops)."""
  rng = np.random.default_rng(1000 + seed)
  for _ in range(8):
    shape = random_start(rng)
    ops = random_chain(rng, shape, int(rng.integers(2, 7)))
    k = int(rng.integers(1, len(ops)))
    mid = reference(shape, ops[:k]).shape
    inner = tracker_for(shape, ops[:k])
    outer = tracker_for(mid, ops[k:]).with_src_shape(mid)
    check_tracker(inner.compose(outer), reference(shape, ops))


def graph_chain(shape: tuple[int, ...], ops) -> tuple[Node, Node]:
  """(the BUFFER-like leaf, graph-level movement nodes applying ops to it)."""
  size = math.prod(shape)
  leaf = Node(Ops.BUFFER, dtypes.float32, (), None, (size,))
  node = Node(Ops.RESHAPE, dtypes.float32, (leaf,), shape, shape)
  ref = np.zeros(shape)
  for kind, arg in ops:
    ref = apply_numpy(ref, kind, arg, 0)
    op = {"reshape": Ops.RESHAPE, "permute": Ops.PERMUTE, "expand": Ops.EXPAND, "pad": Ops.PAD, "shrink": Ops.SHRINK,
          "flip": Ops.FLIP}[kind]
    node = Node(op, dtypes.float32, (node,), arg, ref.shape)
  return leaf, node


@pytest.mark.parametrize("seed", range(20))
def test_scheduler_style_composition(seed):
  """Walking a graph from the consumer down, composing each movement op's tracker over the view seen so far (as
  the scheduler does), then placing it on the flat buffer (as a LOAD does), indexes like the whole chain."""
  rng = np.random.default_rng(2000 + seed)
  for _ in range(8):
    shape = random_start(rng)
    ops = random_chain(rng, shape, int(rng.integers(1, 7)))
    leaf, node = graph_chain(shape, ops)
    verify(node, "graph")
    moves, view = [], ShapeTracker.contiguous(node.shape)
    while node.op in MOVEMENT:
      moves.append(node)
      view = movement_tracker(node).compose(view)
      node = node.src[0]
    assert node is leaf
    tracker = ShapeTracker.contiguous((leaf.size,)).compose(view)
    check_tracker(ShapeTracker(tracker.views), reference(shape, ops))
    forward = ShapeTracker.contiguous((leaf.size,))  # the other order, as an assign through a view composes it
    for move in reversed(moves):
      forward = forward.compose(movement_tracker(move))
    check_tracker(ShapeTracker(forward.views), reference(shape, ops))


# ---- realized on the CPU --------------------------------------------------------------------------------------------

def apply_tensor(t: Tensor, kind: str, arg) -> Tensor:
  if kind == "flip":
    return t.flip(arg) if arg else t
  return getattr(t, kind)(arg)


@pytest.mark.parametrize("seed", range(6))
def test_realized_chains(seed):
  """The chain realized as a kernel over a buffer and over a computed value (a VIEW node inside the kernel)."""
  rng = np.random.default_rng(3000 + seed)
  shape = random_start(rng)
  ops = random_chain(rng, shape, 5)
  base = np.arange(1, math.prod(shape) + 1, dtype=np.float32).reshape(shape)
  want = base
  for kind, arg in ops:
    want = apply_numpy(want, kind, arg, 0)
  from_buffer = Tensor(base)
  computed = Tensor(base) * 2 + 1
  for kind, arg in ops:
    from_buffer = apply_tensor(from_buffer, kind, arg)
    computed = apply_tensor(computed, kind, arg)
  np.testing.assert_array_equal(from_buffer.numpy(), want)
  np.testing.assert_array_equal(computed.numpy(), np.where(want != 0, want * 2 + 1, 0))
