"""Autograd: backward, .grad accumulation, detach, requires_grad propagation, gradients of composite functions against
torch and against central finite differences (float64), and the error paths of backward()."""
import numpy as np
import pytest
import torch
from conftest import assert_close, check_grad, examples, random_array, seeds, shapes
from hypothesis import given, settings

from frontend import Tensor, dtypes


def test_backward_scalar(rng):
  x = random_array(rng, (3, 4), dtypes.float32)
  t = Tensor(x, requires_grad=True)
  out = (t * t).sum()
  assert out.backward() is out
  assert t.grad is not None and t.grad.requires_grad is False
  assert_close(t.grad, 2 * x, dtypes.float32)


def test_grad_accumulates_over_backward_calls(rng):
  x = random_array(rng, (5,), dtypes.float32)
  t = Tensor(x, requires_grad=True)
  (t * 3).sum().backward()
  (t * t).sum().backward()
  assert_close(t.grad, 3 + 2 * x, dtypes.float32)


def test_tensor_used_twice(rng):
  x = random_array(rng, (2, 3), dtypes.float32)
  check_grad(lambda t: t * t + t * 2 - t.exp() * t, lambda t: t * t + t * 2 - t.exp() * t, [x], rng)


def test_detach_stops_gradient(rng):
  x = random_array(rng, (4,), dtypes.float32)
  t = Tensor(x, requires_grad=True)
  d = t.detach()
  assert d.requires_grad is False
  ((t * d) + d.exp()).sum().backward()
  assert_close(t.grad, x, dtypes.float32)
  assert_close(d, x, dtypes.float32)


def test_requires_grad_propagation():
  a = Tensor([1.0, 2.0], requires_grad=True)
  b = Tensor([3.0, 4.0])
  c = Tensor([5.0, 6.0], requires_grad=False)
  assert b.requires_grad is None
  assert (a + b).requires_grad is True
  assert (b + c).requires_grad is None
  assert (c * 2).requires_grad is False
  assert (a < b).requires_grad is False
  assert a.argmax().requires_grad is False
  assert a.detach().requires_grad is False
  b.requires_grad_()
  assert b.requires_grad is True
  (b * 2).sum().backward()
  assert b.grad.tolist() == [2.0, 2.0]


def test_no_grad_flag():
  a = Tensor([1.0, 2.0], requires_grad=True)
  Tensor.no_grad = True
  try:
    assert (a * 2).requires_grad is False
  finally:
    Tensor.no_grad = False
  assert (a * 2).requires_grad is True


def test_backward_needs_gradient_for_non_scalar():
  t = Tensor.ones(2, 3, requires_grad=True)
  with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
    (t * 2).backward()


def test_backward_with_gradient_argument(rng):
  x = random_array(rng, (2, 3), dtypes.float32)
  seed_grad = random_array(rng, (2, 3), dtypes.float32)
  t, tt = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
  (t.sin() * 3).backward(Tensor(seed_grad))
  (tt.sin() * 3).backward(torch.from_numpy(seed_grad))
  assert_close(t.grad, tt.grad, dtypes.float32)


def test_backward_without_a_differentiable_input():
  with pytest.raises(RuntimeError, match="requires_grad"):
    (Tensor([1.0, 2.0]) * 2).sum().backward()


def test_grad_of_unused_input_stays_none():
  a, b = Tensor([1.0], requires_grad=True), Tensor([2.0], requires_grad=True)
  (a * 3).sum().backward()
  assert a.grad.tolist() == [3.0] and b.grad is None


def test_grad_through_leaf_reshape_chain(rng):
  x = random_array(rng, (2, 3), dtypes.float32)
  check_grad(lambda t: t.reshape(6).reshape(3, 2) * 2, lambda t: t.reshape(6).reshape(3, 2) * 2, [x], rng)
  check_grad(lambda t: t.reshape(6), lambda t: t.reshape(6), [x], rng)


def test_grad_of_0d_leaf_broadcast(rng):
  check_grad(lambda s: s * Tensor([1.0, 2.0, 3.0]), lambda s: s * torch.tensor([1.0, 2.0, 3.0]),
             [np.array(1.5, np.float32)], rng)
  check_grad(lambda s: s.reshape(1) + 1, lambda s: s.reshape(1) + 1, [np.array(1.5, np.float32)], rng)


def test_grad_through_realized_intermediate(rng):
  x = random_array(rng, (3,), dtypes.float32)
  t = Tensor(x, requires_grad=True)
  y = (t * 2).realize()
  (y * y).sum().backward()
  assert_close(t.grad, 8 * x, dtypes.float32)


def test_grad_through_casts(rng):
  x = random_array(rng, (4,), dtypes.float32)
  check_grad(lambda t: t.double().sin().float() * 2, lambda t: t.double().sin().float() * 2, [x], rng)
  t = Tensor(x, requires_grad=True)
  (t.int().float() + t).sum().backward()
  assert_close(t.grad, np.ones(4, np.float32), dtypes.float32)


@pytest.mark.parametrize("dtype", [dtypes.float16, dtypes.float64, dtypes.bfloat16], ids=lambda d: d.name)
def test_grad_dtype_follows_input(dtype, rng):
  x = random_array(rng, (3, 2), dtype)
  check_grad(lambda t: (t * t).sum(1) + t.exp().mean(), lambda t: (t * t).sum(1) + t.exp().mean(), [x], rng,
             dtype=dtype, scale=2)


def test_contiguous_and_clone_pass_gradient(rng):
  x = random_array(rng, (3, 4), dtypes.float32)
  check_grad(lambda t: t.T.contiguous() * 2, lambda t: t.T.contiguous() * 2, [x], rng)
  check_grad(lambda t: t.clone() * t, lambda t: t.clone() * t, [x], rng)


def test_max_ties_split_gradient():
  # tinygrad and torch.amax share the gradient evenly among tied maxima
  check_grad(lambda t: t.max(1), lambda t: t.amax(1), [np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], np.float32)],
             np.random.default_rng(0))
  check_grad(lambda t: t.min(), lambda t: t.amin(), [np.array([1.0, 3.0, 1.0], np.float32)],
             np.random.default_rng(0))


def test_mlp_against_torch(rng):
  x = random_array(rng, (5, 4), dtypes.float32)
  w1, b1 = random_array(rng, (4, 6), dtypes.float32, -1, 1), random_array(rng, (6,), dtypes.float32, -1, 1)
  w2 = random_array(rng, (6, 3), dtypes.float32, -1, 1)
  labels = np.array([0, 2, 1, 1, 0])
  onehot = np.eye(3, dtype=np.float32)[labels]

  def ours(w1, b1, w2):
    h = (Tensor(x) @ w1 + b1).relu()
    return -((h @ w2).log_softmax(-1) * Tensor(onehot)).sum(-1).mean()

  def theirs(w1, b1, w2):
    h = (torch.from_numpy(x) @ w1 + b1).relu()
    return -((h @ w2).log_softmax(-1) * torch.from_numpy(onehot)).sum(-1).mean()

  check_grad(ours, theirs, [w1, b1, w2], rng, scale=4)


def test_training_steps_with_assign(rng):
  """Three SGD steps written with assign: each step's gradient matches torch's."""
  x, w0 = random_array(rng, (4, 3), dtypes.float32), random_array(rng, (3,), dtypes.float32)
  w, tw = Tensor(w0, requires_grad=True), torch.tensor(w0, requires_grad=True)
  for _ in range(3):
    w.grad, tw.grad = None, None
    ((Tensor(x) * w).sum(1).square().mean()).backward()
    ((torch.from_numpy(x) * tw).sum(1).square().mean()).backward()
    assert_close(w.grad, tw.grad, dtypes.float32, scale=4)
    w.assign(w.detach() - w.grad * 0.1).realize()
    with torch.no_grad():
      tw -= tw.grad * 0.1
    assert_close(w, tw, dtypes.float32, scale=4)


# ---------------------------------------------------------------------------------------------------------------------
# finite differences in float64


def _finite_difference(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
  grad = np.zeros_like(x)
  for i in np.ndindex(x.shape):
    hi, lo = x.copy(), x.copy()
    hi[i] += eps
    lo[i] -= eps
    grad[i] = (f(Tensor(hi)).item() - f(Tensor(lo)).item()) / (2 * eps)
  return grad


FD_FUNCTIONS = {
  "sin_exp": lambda t: (t.sin() * t.exp()).sum(),
  "tanh_ratio": lambda t: (t.tanh() / (1 + t * t)).sum(),
  "softmax_weighted": lambda t: (t.softmax(-1) * Tensor(np.arange(t.shape[-1], dtype=np.float64))).sum(),
  "logsumexp": lambda t: t.logsumexp(0).sum(),
  "pow_sqrt": lambda t: ((t * t + 1) ** 1.5).sum() + (t * t + 0.5).sqrt().sum(),
  "cumprod_std": lambda t: t.cumprod(-1).sum() + t.std(),
  "sigmoid_log": lambda t: (t.sigmoid() + 0.1).log().mean(),
}


@pytest.mark.parametrize("name", list(FD_FUNCTIONS))
def test_finite_differences(name, rng):
  f = FD_FUNCTIONS[name]
  x = rng.uniform(-1.5, 1.5, (2, 3))
  t = Tensor(x, requires_grad=True)
  assert t.dtype == dtypes.float64
  f(t).backward()
  assert t.grad.dtype == dtypes.float64
  np.testing.assert_allclose(t.grad.numpy(), _finite_difference(f, x), rtol=1e-5, atol=1e-7)


@given(shape=shapes, seed=seeds)
@settings(max_examples=examples(5))
def test_composite_grad(shape, seed):
  rng = np.random.default_rng(seed)
  a, b = random_array(rng, shape, dtypes.float32), random_array(rng, shape, dtypes.float32, 0.5, 2)

  def f(x, y):
    return (x * y).sigmoid() * (y.log() - x).abs() + (x / y).maximum(x * 0.5)

  check_grad(f, f, [a, b], rng, scale=4)
