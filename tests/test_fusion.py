"""Fusion (compiler/schedule.py) seen from the Tensor API: kernel counts are `frontend.realize.STATS["kernels"]`
deltas around one `.realize()`, and every fused result is checked against numpy.

Counts pinned here (CPU): ((a+b)*c).sum() 1; (x @ w + b).relu() 1; 10 elementwise ops 1; softmax over the last axis
at most 2 (max, then exp/sum/divide with the sum as an epilogue); movement ops of inputs 1 (no copies);
contiguous() adds one; RMSNorm into a matmul 2.
"""
from __future__ import annotations


import numpy as np
import pytest

from frontend import realize
from frontend.tensor import Tensor


def kernels(*tensors: Tensor) -> int:
  """Kernels launched while realizing the tensors together."""
  before = realize.STATS["kernels"]
  tensors[0].realize(*tensors[1:])
  return realize.STATS["kernels"] - before


def test_sum_of_elementwise_is_one_kernel(data):
  (a, ta), (b, tb), (c, tc) = data(4, 8), data(4, 8), data(4, 8)
  out = ((ta + tb) * tc).sum()
  assert kernels(out) == 1
  np.testing.assert_allclose(out.numpy(), ((a + b) * c).sum(), rtol=1e-5)


def test_matmul_bias_relu_is_one_kernel(data):
  (x, tx), (w, tw), (b, tb) = data(4, 8), data(8, 16), data(16)
  out = (tx @ tw + tb).relu()
  assert kernels(out) == 1
  np.testing.assert_allclose(out.numpy(), np.maximum(x @ w + b, 0), rtol=1e-5, atol=1e-6)


def test_elementwise_chain_of_ten_is_one_kernel(data):
  x, t = data(5, 7)
  ref = x.astype(np.float64)
  for i in range(10):
    if i % 3 == 0:
      t, ref = t * 0.5 + 0.25, ref * 0.5 + 0.25
    elif i % 3 == 1:
      t, ref = t.maximum(-0.5), np.maximum(ref, -0.5)
    else:
      t, ref = (t - 0.125).abs(), np.abs(ref - 0.125)
  assert kernels(t) == 1
  np.testing.assert_allclose(t.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_softmax_kernel_count(data):
  x, t = data(6, 10)
  out = t.softmax(-1)
  n = kernels(out)
  assert 1 <= n <= 2, f"softmax(-1) took {n} kernels"
  e = np.exp(x - x.max(-1, keepdims=True))
  np.testing.assert_allclose(out.numpy(), e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_reduce_broadcast_along_trailing_axes_fuses(data):
  x, t = data(6, 10)
  out = t / t.sum(-1, keepdim=True)  # the sum is computed once per row, inside the same kernel
  assert kernels(out) == 1
  np.testing.assert_allclose(out.numpy(), x / x.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_reduce_broadcast_along_leading_axis_is_realized(data):
  x, t = data(6, 10)
  out = t / t.sum(0, keepdim=True)
  assert kernels(out) == 2
  np.testing.assert_allclose(out.numpy(), x / x.sum(0, keepdims=True), rtol=1e-4, atol=1e-5)


def test_reduce_inside_reduce_is_realized(data):
  x, t = data(6, 10)
  out = (t.sum(1) * 2).sum()
  assert kernels(out) == 2
  np.testing.assert_allclose(out.numpy(), (x.sum(1) * 2).sum(), rtol=1e-5, atol=1e-5)


def test_normalized_input_of_a_matmul_is_one_kernel(data):
  """RMSNorm feeding a matmul: the normalized row is read by every output (so it is realized), and the sum of squares
  fuses into its kernel: 2 kernels, not 3."""
  (x, tx), (w, tw), (m, tm) = data(2, 64), data(64), data(64, 96)
  normed = tx * (tx * tx).mean(-1, keepdim=True).add(1e-5).rsqrt() * tw
  out = normed @ tm
  assert kernels(out) == 2
  want = (x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w) @ m
  np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-4)


def test_halves_of_one_product_are_computed_once(data):
  """silu(gate) * up, both halves of one matmul's output, feeding another matmul: the first product is computed once
  (3 kernels), not again for the half whose window starts at 0."""
  (x, tx), (w, tw), (d, td) = data(1, 32), data(32, 128), data(64, 16)
  gate_up = tx @ tw
  gate, up = gate_up.shrink(((0, 1), (0, 64))), gate_up.shrink(((0, 1), (64, 128)))
  out = (gate.silu() * up) @ td
  assert kernels(out) == 3
  g, u = (x @ w)[:, :64], (x @ w)[:, 64:]
  np.testing.assert_allclose(out.numpy(), (g / (1 + np.exp(-g)) * u) @ d, rtol=1e-4, atol=1e-4)


def _reduce_work(*tensors: Tensor) -> list[int]:
  """Source elements of every REDUCE in the kernels that realizing the tensors together would run."""
  from compiler.ir import Ops
  from compiler.schedule import Scheduler
  items = Scheduler(lambda n: n in realize.realized).schedule([t.lazydata for t in tensors])
  return sorted(n.src[0].size for i in items if i.kind == "kernel" for n in i.ast.toposort() if n.op is Ops.REDUCE)


def test_a_costly_product_read_by_two_kernels_is_computed_once(data):
  """A matmul over RECOMPUTE_LIMIT source elements that two kernels read (a training step's forward product, read
  again by its activation's backward) is computed into its own buffer once; two kernels fused it before, each
  computing it. A cheap one is still fused into both: a kernel and a buffer would cost more than the recompute."""
  from compiler.schedule import RECOMPUTE_LIMIT
  (x, tx), (w, tw) = data(256, 64), data(64, 128)
  assert 256 * 128 * 64 >= RECOMPUTE_LIMIT
  h = tx @ tw
  a, b = h.relu(), (h * 0.5).exp()
  assert _reduce_work(a, b) == [256 * 128 * 64]
  assert kernels(a, b) == 3
  want = x.astype(np.float64) @ w
  np.testing.assert_allclose(a.numpy(), np.maximum(want, 0), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(b.numpy(), np.exp(want * 0.5), rtol=1e-4, atol=1e-4)
  (_, ts), (_, tv) = data(8, 16), data(16, 8)
  small = ts @ tv
  assert _reduce_work(small.relu(), small.exp()) == [8 * 8 * 16] * 2
  assert kernels(small.relu(), small.exp()) == 2


def test_gelu_backward_reads_the_forward_product(data):
  """An MLP's training step: the GELU's backward reads the forward product h = x @ w1 from a buffer; before, its
  kernel recomputed h next to dY @ w2 (twice the matmul work, and two reductions kept that kernel scalar)."""
  (_, tx), (_, tw1), (_, tw2) = data(256, 64), data(64, 128), data(128, 16)
  tw1.requires_grad, tw2.requires_grad = True, True
  prev = Tensor.training
  Tensor.training = True
  try:
    loss = ((tx @ tw1).gelu() @ tw2).square().mean()
    loss.backward()
    work = _reduce_work(loss, tw1.grad, tw2.grad)
  finally:
    Tensor.training = prev
  assert work.count(256 * 128 * 64) == 2, f"h and x.T @ dh, each once; h not again in the backward ({work})"
  assert work.count(256 * 16 * 128) == 3, f"y = gelu(h) @ w2, dy @ w2.T and gelu(h).T @ dy ({work})"


MOVES = {
  "permute": (lambda t: t.permute(1, 0), lambda a: a.transpose(1, 0)),
  "reshape": (lambda t: t.reshape(8, 3), lambda a: a.reshape(8, 3)),
  "expand": (lambda t: t[:, :1].expand(6, 4), lambda a: np.broadcast_to(a[:, :1], (6, 4))),
  "pad": (lambda t: t.pad(((1, 0), (0, 2))), lambda a: np.pad(a, ((1, 0), (0, 2)))),
  "shrink": (lambda t: t.shrink(((1, 5), (0, 3))), lambda a: a[1:5, 0:3]),
  "flip": (lambda t: t.flip(0), lambda a: a[::-1]),
  "strided_slice": (lambda t: t[::2, 1::2], lambda a: a[::2, 1::2]),
  "pad_permute_reshape": (lambda t: t.pad(((0, 2), (1, 1))).permute(1, 0).reshape(6, 8),
                          lambda a: np.pad(a, ((0, 2), (1, 1))).transpose(1, 0).reshape(6, 8)),
}


@pytest.mark.parametrize("name", sorted(MOVES))
def test_movement_of_inputs_adds_no_kernel(data, name):
  move, move_np = MOVES[name]
  x, t = data(6, 4)
  moved = move_np(x)
  y, ty = data(*moved.shape)
  out = move(t) * ty + 1
  assert kernels(out) == 1, f"{name} of an input inside an elementwise op should not copy"
  np.testing.assert_allclose(out.numpy(), moved * y + 1, rtol=1e-5, atol=1e-6)


def test_movement_of_computed_value_fuses(data):
  x, t = data(6, 4)
  out = (t * 2 + 1).pad(((1, 1), (0, 0))).permute(1, 0).flip(1) - 3
  assert kernels(out) == 1
  np.testing.assert_allclose(out.numpy(), np.pad(x * 2 + 1, ((1, 1), (0, 0))).transpose(1, 0)[:, ::-1] - 3,
                             rtol=1e-5, atol=1e-6)


def test_contiguous_forces_a_kernel(data):
  x, t = data(6, 4)
  assert kernels(t.permute(1, 0).contiguous()) == 1
  fused = (t + 1) * 2
  split = (t + 1).contiguous() * 2
  assert kernels(fused) == 1
  assert kernels(split) == 2
  np.testing.assert_allclose(split.numpy(), (x + 1) * 2, rtol=1e-5, atol=1e-6)


def test_realized_tensor_costs_nothing(data):
  _, t = data(6, 4)
  out = t * 3
  assert kernels(out) == 1
  assert kernels(out) == 0
  assert kernels(t) == 0


def test_two_outputs_share_one_realize(data):
  x, t = data(6, 4)
  a, b = t + 1, t * 2
  assert kernels(a, b) == 2
  np.testing.assert_allclose(a.numpy(), x + 1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(b.numpy(), x * 2, rtol=1e-5, atol=1e-6)


def test_assign_is_one_kernel_in_place(data):
  x, t = data(6, 4)
  buffer_before = t._contiguous_buffer()
  t.assign(t * 2 + 1)
  assert kernels(t) == 1
  np.testing.assert_allclose(t.numpy(), x * 2 + 1, rtol=1e-5, atol=1e-6)
  assert t._contiguous_buffer() is buffer_before


def test_assign_reading_other_positions_uses_a_temporary(data):
  x, t = data(6, 4)
  t.assign(t.flip(0) * 2)  # every element reads another row of the target: compute into a temporary, then copy in
  assert kernels(t) == 2
  np.testing.assert_allclose(t.numpy(), x[::-1] * 2, rtol=1e-5, atol=1e-6)


def test_reader_and_assign_realized_together_see_old_values(data):
  x, t = data(6, 4)
  reader = t * 2
  t.assign(t + 1)
  assert kernels(reader, t) == 2
  np.testing.assert_allclose(reader.numpy(), x * 2, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(t.numpy(), x + 1, rtol=1e-5, atol=1e-6)
