"""Differential tests of the neural-network ops in frontend/tensor_nn.py: values against numpy/torch and gradients
against torch.autograd, on fresh random data (seeded per test, so a failure reproduces).

Covers activations, matmul/dot/einsum/linear, conv2d/conv_transpose2d and pooling, normalization, dropout, embedding
and one_hot, attention, losses and interpolate, their error messages, and the kernel counts of fused patterns.
Every distinct shape compiles new C kernels, so shapes stay small and hypothesis runs few examples.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from frontend import Tensor, dtypes
from frontend.realize import STATS

# ---------------------------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def rng(request) -> np.random.Generator:
  return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def randn(rng: np.random.Generator, *shape, scale: float = 1.0) -> np.ndarray:
  return (rng.standard_normal(shape) * scale).astype(np.float32)


def leaf(a: np.ndarray) -> Tensor:
  return Tensor(a, requires_grad=True)


def assert_close(got, want, atol: float = 1e-5, rtol: float = 1e-4, what: str = "value") -> None:
  got = got.numpy() if isinstance(got, Tensor) else np.asarray(got)
  want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
  assert got.shape == want.shape, f"{what}: shape {got.shape} != expected {want.shape}"
  np.testing.assert_allclose(got, want, atol=atol, rtol=rtol, err_msg=what)


def check(ours, theirs, arrays: list[np.ndarray], rng: np.random.Generator, atol: float = 1e-5, rtol: float = 1e-4,
          grad: bool = True) -> None:
  """ours(*Tensors) against theirs(*torch tensors): the values, then the gradients of sum(out * g) for a random g."""
  xs = [leaf(a) for a in arrays]
  ts = [torch.tensor(a, requires_grad=True) for a in arrays]
  out, ref = ours(*xs), theirs(*ts)
  assert_close(out, ref, atol, rtol)
  if not grad:
    return
  upstream = randn(rng, *ref.shape)
  (out * Tensor(upstream)).sum().backward()
  (ref * torch.tensor(upstream)).sum().backward()
  for i, (x, t) in enumerate(zip(xs, ts)):
    assert x.grad is not None, f"operand {i} got no gradient"
    assert_close(x.grad, t.grad, atol, rtol, what=f"gradient of operand {i}")


def kernels_to_realize(t: Tensor) -> int:
  before = STATS["kernels"]
  t.realize()
  return STATS["kernels"] - before


# ---------------------------------------------------------------------------------------------------------------------
# activations

ACTIVATIONS = {
  "relu": (lambda x: x.relu(), F.relu),
  "relu6": (lambda x: x.relu6(), F.relu6),
  "leaky_relu": (lambda x: x.leaky_relu(), F.leaky_relu),
  "leaky_relu_0.2": (lambda x: x.leaky_relu(0.2), lambda t: F.leaky_relu(t, 0.2)),
  "elu": (lambda x: x.elu(), F.elu),
  "elu_0.5": (lambda x: x.elu(0.5), lambda t: F.elu(t, 0.5)),
  "celu": (lambda x: x.celu(), F.celu),
  "celu_2": (lambda x: x.celu(2.0), lambda t: F.celu(t, 2.0)),
  "selu": (lambda x: x.selu(), F.selu),
  "sigmoid": (lambda x: x.sigmoid(), torch.sigmoid),
  "logsigmoid": (lambda x: x.logsigmoid(), F.logsigmoid),
  "hardsigmoid": (lambda x: x.hardsigmoid(), F.hardsigmoid),
  "tanh": (lambda x: x.tanh(), torch.tanh),
  "gelu": (lambda x: x.gelu(), lambda t: F.gelu(t, approximate="tanh")),
  "quick_gelu": (lambda x: x.quick_gelu(), lambda t: t * torch.sigmoid(1.702 * t)),
  "silu": (lambda x: x.silu(), F.silu),
  "swish": (lambda x: x.swish(), F.silu),
  "hardswish": (lambda x: x.hardswish(), F.hardswish),
  "softplus": (lambda x: x.softplus(), F.softplus),
  "softplus_beta2": (lambda x: x.softplus(2.0), lambda t: F.softplus(t, 2.0)),
  "mish": (lambda x: x.mish(), F.mish),
  "softsign": (lambda x: x.softsign(), F.softsign),
  "erf": (lambda x: x.erf(), torch.erf),
}
# smooth at 0, so torch's gradient there is the derivative (the piecewise ones pick a side by convention)
SMOOTH_AT_ZERO = {"elu", "elu_0.5", "celu", "celu_2", "selu", "sigmoid", "logsigmoid", "tanh", "gelu", "quick_gelu",
                  "silu", "swish", "softplus", "softplus_beta2", "mish", "softsign", "erf"}
# far outside the kinks, where a naive exp() overflows to inf and 0 * inf = nan poisons the gradient
EXTREMES = np.array([-100.0, -40.0, -25.0, 25.0, 40.0, 100.0], np.float32)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation(name, rng):
  ours, theirs = ACTIVATIONS[name]
  extra = np.concatenate([EXTREMES, [0.0]] if name in SMOOTH_AT_ZERO else [EXTREMES]).astype(np.float32)
  x = np.concatenate([randn(rng, 40, scale=3.0), extra]).reshape(-1, 1)
  # selu's defaults are tinygrad's rounded constants (1.67326, 1.0507): 3e-6 relative to torch's
  rtol = 1e-5 if name == "selu" else 2e-6
  check(ours, theirs, [x], rng, atol=2e-6 if name != "erf" else 2e-5, rtol=rtol)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_special_values(name):
  ours, theirs = ACTIVATIONS[name]
  x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
  want = theirs(torch.tensor(x)).numpy()
  np.testing.assert_allclose(ours(Tensor(x)).numpy(), want, rtol=1e-5 if name == "selu" else 0, atol=0,
                             equal_nan=True)


def test_relu_gradient_at_special_values():
  check(lambda x: x.relu(), torch.relu, [np.array([np.nan, np.inf, -np.inf, 0.0, -2.0, 3.0], np.float32)],
        np.random.default_rng(0))


def test_activations_keep_half_dtype(rng):
  x = Tensor(randn(rng, 8), dtype=dtypes.float16)
  for name in ("sigmoid", "tanh", "gelu", "silu", "softplus", "erf", "elu", "mish"):
    assert getattr(x, name)().dtype == dtypes.float16, name


# ---------------------------------------------------------------------------------------------------------------------
# matmul, dot, linear, einsum

MATMUL_SHAPES = [((4,), (4,)), ((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((2, 3, 4), (4, 5)),
                 ((2, 1, 3, 4), (5, 4, 2)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)), ((1, 7), (7, 1))]


@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES, ids=str)
def test_matmul(sa, sb, rng):
  check(lambda a, b: a @ b, torch.matmul, [randn(rng, *sa), randn(rng, *sb)], rng)


@pytest.mark.parametrize("sa, sb", [((3, 4), (4, 5)), ((4,), (4,)), ((2, 3, 4), (4,))], ids=str)
def test_dot_and_matmul_methods(sa, sb, rng):
  a, b = randn(rng, *sa), randn(rng, *sb)
  want = np.matmul(a, b)
  assert_close(Tensor(a).dot(Tensor(b)), want)
  assert_close(Tensor(a).matmul(Tensor(b)), want)
  assert_close(Tensor(b).matmul(Tensor(a), reverse=True), want)


def test_rmatmul_with_numpy_left_operand(rng):
  a, b = randn(rng, 3, 4), randn(rng, 4, 2)
  assert_close(Tensor(b).__rmatmul__(a), a @ b)


def test_matmul_integer_is_exact(rng):
  a = rng.integers(-50, 50, (3, 5)).astype(np.int32)
  b = rng.integers(-50, 50, (5, 4)).astype(np.int32)
  out = Tensor(a) @ Tensor(b)
  assert out.dtype == dtypes.int32
  np.testing.assert_array_equal(out.numpy(), a @ b)


def test_matmul_promotes_mixed_dtypes(rng):
  a, b = randn(rng, 3, 4), randn(rng, 4, 2)
  out = Tensor(a, dtype=dtypes.float16) @ Tensor(b)
  assert out.dtype == dtypes.float32
  assert_close(out, a.astype(np.float16).astype(np.float32) @ b, atol=1e-5)


@pytest.mark.parametrize("wshape, bias", [((4, 3), True), ((4, 3), False), ((4,), True), ((4,), False)], ids=str)
def test_linear(wshape, bias, rng):
  arrays = [randn(rng, 2, 5, 4), randn(rng, *wshape)] + ([randn(rng, wshape[-1])] if bias else [])

  def ours(x, w, b=None):
    return x.linear(w, b)

  def theirs(x, w, b=None):
    out = x * w if w.ndim == 1 else x @ w
    return out if b is None else out + b

  check(ours, theirs, arrays, rng)


EINSUM_CASES = [
  ("ij,jk->ik", [(3, 4), (4, 5)]), ("ij,jk", [(3, 4), (4, 5)]), ("ba,ca", [(3, 4), (5, 4)]),
  ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("i,i->", [(4,), (4,)]), ("i,j->ij", [(3,), (4,)]),
  ("ij->ji", [(3, 4)]), ("ij->", [(3, 4)]), ("ij", [(3, 4)]), ("ji", [(3, 4)]), ("ii->i", [(3, 3)]), ("ii", [(3, 3)]),
  ("iij->j", [(3, 3, 2)]), ("bii->bi", [(2, 4, 4)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
  ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]), ("...i,...i->...", [(2, 3, 4), (3, 4)]), ("i...->...", [(3, 2, 4)]),
  ("...ij->...ji", [(2, 3, 4)]), ("b i d, b j d -> b i j", [(2, 3, 4), (2, 5, 4)]), ("bhqd,bhkd->bhqk", [(1, 2, 3, 4),
                                                                                                      (1, 2, 5, 4)]),
]


@pytest.mark.parametrize("formula, shapes", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
def test_einsum(formula, shapes, rng):
  arrays = [randn(rng, *s) for s in shapes]
  check(lambda *xs: Tensor.einsum(formula, *xs), lambda *ts: torch.einsum(formula, *ts), arrays, rng)
  assert_close(Tensor.einsum(formula, *[Tensor(a) for a in arrays]), np.einsum(formula.replace(" ", ""), *arrays))


def test_einsum_takes_a_list_of_operands(rng):
  a, b = randn(rng, 3, 4), randn(rng, 4, 2)
  assert_close(Tensor.einsum("ij,jk->ik", [Tensor(a), Tensor(b)]), a @ b)


@pytest.mark.parametrize("formula, shapes, match", [
  ("ij,jk->ik", [(3, 4)], "names 2 operands, 1 given"),
  ("ijk", [(3, 4)], "does not fit a tensor of rank 2"),
  ("ij,jk->ik", [(3, 4), (5, 2)], "letter 'j' has sizes 4 and 5"),
  ("ij->iz", [(3, 4)], "names one no operand has"),
  ("ij->ii", [(3, 4)], "repeats a letter"),
  ("ii->i", [(3, 4)], "sizes 3 and 4"),
])
def test_einsum_errors(formula, shapes, match):
  with pytest.raises(ValueError, match=match):
    Tensor.einsum(formula, *[Tensor(np.ones(s, np.float32)) for s in shapes])


@pytest.mark.parametrize("sa, sb", [((3, 4), (5, 6)), ((2, 3, 4), (3, 4)), ((4,), (5,)), ((4,), (3, 2))], ids=str)
def test_matmul_shape_mismatch_names_both_shapes(sa, sb):
  with pytest.raises(ValueError) as err:
    Tensor(np.ones(sa, np.float32)) @ Tensor(np.ones(sb, np.float32))
  assert str(sa) in str(err.value) and str(sb) in str(err.value)


def test_matmul_rejects_scalars():
  with pytest.raises(ValueError, match=r"at least 1-D.*\(\) and \(3,\)"):
    Tensor(2.0) @ Tensor(np.ones(3, np.float32))


@settings(max_examples=6, deadline=None)
@given(batch=st.lists(st.integers(1, 3), max_size=2), n=st.integers(1, 5), k=st.integers(1, 6), m=st.integers(1, 5),
       seed=st.integers(0, 2**31))
def test_matmul_generated_shapes(batch, n, k, m, seed):
  rng = np.random.default_rng(seed)
  a, b = randn(rng, *batch, n, k), randn(rng, k, m)
  check(lambda x, y: x @ y, torch.matmul, [a, b], rng)


# ---------------------------------------------------------------------------------------------------------------------
# convolution and pooling

CONV_CASES = [
  dict(), dict(padding=1), dict(padding=(1, 2)), dict(padding=(1, 2, 0, 3)),
  dict(stride=(2, 1), padding=(2, 1), dilation=(1, 2)), dict(groups=2), dict(groups=2, stride=2, padding=1),
  dict(groups=4, padding=1), dict(bias=False, stride=3, padding=2),
]


def _conv_reference(x, w, b, kw):
  kw = dict(kw)
  padding = kw.pop("padding", 0)
  if isinstance(padding, tuple) and len(padding) == 4:  # torch-style flat (left, right, top, bottom)
    return F.conv2d(F.pad(x, padding), w, b, **kw)
  return F.conv2d(x, w, b, padding=padding, **kw)


@pytest.mark.parametrize("kw", CONV_CASES, ids=str)
def test_conv2d(kw, rng):
  kw = dict(kw)
  groups = kw.get("groups", 1)
  bias = kw.pop("bias", True)
  cin, cout = 4, 8 if groups == 4 else 6
  arrays = [randn(rng, 2, cin, 7, 6), randn(rng, cout, cin // groups, 3, 2)] + ([randn(rng, cout)] if bias else [])
  check(lambda x, w, b=None: x.conv2d(w, b, **kw), lambda x, w, b=None: _conv_reference(x, w, b, kw), arrays, rng,
        atol=1e-4)


def test_conv1d_and_conv3d_through_conv2d(rng):
  check(lambda x, w: x.conv2d(w, stride=2, padding=1), lambda x, w: F.conv1d(x, w, stride=2, padding=1),
        [randn(rng, 2, 3, 9), randn(rng, 4, 3, 3)], rng, atol=1e-4)
  check(lambda x, w: x.conv2d(w, padding=1), lambda x, w: F.conv3d(x, w, padding=1),
        [randn(rng, 1, 2, 4, 3, 5), randn(rng, 3, 2, 2, 2, 3)], rng, atol=1e-4)


@settings(max_examples=6, deadline=None)
@given(groups=st.sampled_from([1, 2]), k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       padding=st.tuples(st.integers(0, 2), st.integers(0, 2)), seed=st.integers(0, 2**31))
def test_conv2d_generated(groups, k, stride, dilation, padding, seed):
  rng = np.random.default_rng(seed)
  arrays = [randn(rng, 1, 2 * groups, 6, 7), randn(rng, 2 * groups, 2, *k), randn(rng, 2 * groups)]
  kw = dict(groups=groups, stride=stride, dilation=dilation, padding=padding)
  check(lambda x, w, b: x.conv2d(w, b, **kw), lambda x, w, b: F.conv2d(x, w, b, **kw), arrays, rng, atol=1e-4)


@pytest.mark.parametrize("xshape, wshape, groups", [((2, 4, 5, 5), (6, 3, 3, 3), 1), ((2, 4, 5, 5), (6, 4, 3, 3), 2),
                                                    ((2, 4, 5, 5), (6, 2, 3, 3), 3), ((2, 3, 5, 5), (6, 4, 3, 3), 1)])
def test_conv2d_channel_mismatch_names_both_shapes(xshape, wshape, groups):
  with pytest.raises(ValueError) as err:
    Tensor(np.ones(xshape, np.float32)).conv2d(Tensor(np.ones(wshape, np.float32)), groups=groups)
  assert str(xshape) in str(err.value) and str(wshape) in str(err.value) and f"groups={groups}" in str(err.value)


@pytest.mark.parametrize("xshape, wshape", [((2, 4, 5), (6, 4, 3, 3)), ((4, 5, 5), (6, 4, 3, 3)), ((2, 4), (6, 4))],
                         ids=str)
def test_conv2d_rank_mismatch_names_both_shapes(xshape, wshape):
  with pytest.raises(ValueError) as err:
    Tensor(np.ones(xshape, np.float32)).conv2d(Tensor(np.ones(wshape, np.float32)))
  assert str(xshape) in str(err.value) and str(wshape) in str(err.value)


@pytest.mark.parametrize("xshape, wshape, groups", [((2, 4, 5, 5), (3, 6, 3, 3), 1), ((2, 3, 5, 5), (3, 2, 3, 3), 2),
                                                    ((2, 4, 5), (4, 2, 3, 3), 1)], ids=str)
def test_conv_transpose2d_mismatch_names_both_shapes(xshape, wshape, groups):
  with pytest.raises(ValueError) as err:
    Tensor(np.ones(xshape, np.float32)).conv_transpose2d(Tensor(np.ones(wshape, np.float32)), groups=groups)
  assert str(xshape) in str(err.value) and str(wshape) in str(err.value)


CONV_T_CASES = [
  dict(), dict(stride=2), dict(stride=2, padding=1, output_padding=1),
  dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2)), dict(stride=2, dilation=2, output_padding=1),
  dict(groups=2, stride=2), dict(groups=2, padding=1, dilation=(2, 1)),
]


@pytest.mark.parametrize("kw", CONV_T_CASES, ids=str)
def test_conv_transpose2d(kw, rng):
  groups = kw.get("groups", 1)
  arrays = [randn(rng, 2, 4, 4, 5), randn(rng, 4, 6 // groups, 3, 2), randn(rng, 6)]
  check(lambda x, w, b: x.conv_transpose2d(w, b, **kw), lambda x, w, b: F.conv_transpose2d(x, w, b, **kw), arrays,
        rng, atol=1e-4)


POOL_CASES = [
  dict(kernel_size=2), dict(kernel_size=3, stride=1), dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0)),
  dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, stride=2, ceil_mode=True),
  dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), dict(kernel_size=(2, 3), stride=(3, 2), ceil_mode=True),
]


@pytest.mark.parametrize("kw", POOL_CASES, ids=str)
def test_max_pool2d(kw, rng):
  check(lambda x: x.max_pool2d(**kw), lambda t: F.max_pool2d(t, **kw), [randn(rng, 2, 3, 7, 8)], rng)


@pytest.mark.parametrize("kw", [dict(kernel_size=2, stride=1, dilation=2), dict(kernel_size=3, stride=2, dilation=2,
                                                                               padding=1)], ids=str)
def test_max_pool2d_dilation(kw, rng):
  check(lambda x: x.max_pool2d(**kw), lambda t: F.max_pool2d(t, **kw), [randn(rng, 1, 2, 9, 8)], rng)


# count_include_pad=False only changes windows that overlap padding or ceil_mode's extra cells
AVG_POOL_CASES = [(kw, True) for kw in POOL_CASES] + [(kw, False) for kw in POOL_CASES
                                                      if {"padding", "ceil_mode"} & set(kw)]


@pytest.mark.parametrize("kw, count_include_pad", AVG_POOL_CASES, ids=str)
def test_avg_pool2d(kw, count_include_pad, rng):
  check(lambda x: x.avg_pool2d(**kw, count_include_pad=count_include_pad),
        lambda t: F.avg_pool2d(t, **kw, count_include_pad=count_include_pad), [randn(rng, 2, 3, 7, 8)], rng)


def test_avg_pool2d_dilation_matches_mean_of_strided_windows(rng):
  x = randn(rng, 1, 1, 7, 7)
  want = np.stack([[x[0, 0, i:i + 5:2, j:j + 5:2].mean() for j in range(0, 3, 2)] for i in range(0, 3, 2)])
  assert_close(Tensor(x).avg_pool2d(3, stride=2, dilation=2), want[None, None])


def test_max_pool2d_integer_padding_uses_the_dtype_minimum(rng):
  x = rng.integers(-100, -1, (1, 1, 4, 4)).astype(np.int32)
  out = Tensor(x).max_pool2d(3, stride=2, padding=1)
  assert out.dtype == dtypes.int32
  np.testing.assert_array_equal(out.numpy(), F.max_pool2d(torch.tensor(x).float(), 3, 2, 1).int().numpy())


@settings(max_examples=4, deadline=None)
@given(k=st.tuples(st.integers(1, 3), st.integers(1, 3)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       ceil_mode=st.booleans(), pad=st.booleans(), seed=st.integers(0, 2**31))
def test_pools_generated(k, stride, ceil_mode, pad, seed):
  rng = np.random.default_rng(seed)
  padding = (k[0] // 2, k[1] // 2) if pad else 0
  kw = dict(kernel_size=k, stride=stride, padding=padding, ceil_mode=ceil_mode)
  x = randn(rng, 1, 2, 6, 7)
  check(lambda t: t.max_pool2d(**kw), lambda t: F.max_pool2d(t, **kw), [x], rng)
  check(lambda t: t.avg_pool2d(**kw), lambda t: F.avg_pool2d(t, **kw), [x], rng)


# ---------------------------------------------------------------------------------------------------------------------
# normalization, dropout, embedding, one_hot


@pytest.mark.parametrize("axis, shape", [(-1, (4, 6)), ((1, 2), (2, 3, 5)), (1, (3, 5, 2))], ids=str)
def test_layernorm(axis, shape, rng):
  axes = (axis,) if isinstance(axis, int) else axis
  normalized = tuple(shape[a] for a in axes)

  def theirs(t):
    moved = t.movedim(axes, tuple(range(-len(axes), 0)))  # torch normalizes the trailing axes
    return F.layer_norm(moved, normalized, eps=1e-3).movedim(tuple(range(-len(axes), 0)), axes)

  check(lambda x: x.layernorm(axis, eps=1e-3), theirs, [randn(rng, *shape, scale=2.0) + 1], rng, atol=2e-5)


@pytest.mark.parametrize("eps", [1e-6, 1e-2])
def test_rms_norm(eps, rng):
  check(lambda x: x.rms_norm(eps=eps), lambda t: F.rms_norm(t, (5,), eps=eps), [randn(rng, 3, 4, 5)], rng, atol=2e-5)


def test_batchnorm_function(rng):
  mean, var = randn(rng, 3), np.abs(randn(rng, 3)) + 0.5
  invstd = (1 / np.sqrt(var + 1e-5)).astype(np.float32)
  check(lambda x, w, b: x.batchnorm(w, b, Tensor(mean), Tensor(invstd)),
        lambda x, w, b: F.batch_norm(x, torch.tensor(mean), torch.tensor(var), w, b, False, eps=1e-5),
        [randn(rng, 2, 3, 4, 5), randn(rng, 3), randn(rng, 3)], rng, atol=2e-5)


def test_batchnorm_function_without_affine_and_other_axis(rng):
  x, mean, invstd = randn(rng, 4, 5, 3), randn(rng, 3), np.abs(randn(rng, 3)) + 0.5
  out = Tensor(x).batchnorm(None, None, Tensor(mean), Tensor(invstd), axis=2)
  assert_close(out, (x - mean) * invstd)


def test_dropout_eval_is_identity(rng):
  x = Tensor(randn(rng, 5, 6))
  assert Tensor.training is False
  assert x.dropout(0.5) is x


def test_dropout_train_zeros_and_rescales(rng, monkeypatch):
  monkeypatch.setattr(Tensor, "training", True)
  Tensor.manual_seed(1234)
  x = np.abs(randn(rng, 64, 64)) + 0.5
  t = leaf(x)
  out = t.dropout(0.25)
  got = out.numpy()
  kept = got != 0
  assert 0.7 < kept.mean() < 0.8
  np.testing.assert_allclose(got[kept], x[kept] / 0.75, rtol=1e-6)
  out.sum().backward()
  np.testing.assert_allclose(t.grad.numpy(), kept / 0.75, rtol=1e-6)


def test_dropout_edge_probabilities(rng, monkeypatch):
  monkeypatch.setattr(Tensor, "training", True)
  x = Tensor(randn(rng, 4, 4))
  assert x.dropout(0.0) is x
  np.testing.assert_array_equal(x.dropout(1.0).numpy(), np.zeros((4, 4), np.float32))
  with pytest.raises(ValueError, match="1.5"):
    x.dropout(1.5)


def test_dropout_is_reproducible_with_manual_seed(rng, monkeypatch):
  monkeypatch.setattr(Tensor, "training", True)
  x = Tensor(randn(rng, 16, 16))
  Tensor.manual_seed(7)
  first = x.dropout(0.5).numpy()
  Tensor.manual_seed(7)
  np.testing.assert_array_equal(x.dropout(0.5).numpy(), first)
  assert not np.array_equal(x.dropout(0.5).numpy(), first)


def test_embedding_by_indexing_matches_torch(rng):
  table, idx = randn(rng, 10, 4), rng.integers(0, 10, (3, 5))
  check(lambda w: w[Tensor(idx)], lambda w: F.embedding(torch.tensor(idx), w), [table], rng)


@pytest.mark.parametrize("num_classes", [6, -1])
def test_one_hot(num_classes, rng):
  idx = rng.integers(0, 6, (3, 4))
  idx[0, 0] = 5  # so the inferred class count is 6
  out = Tensor(idx.astype(np.int32)).one_hot(num_classes)
  assert out.shape == (3, 4, 6) and out.dtype.is_int
  np.testing.assert_array_equal(out.numpy(), F.one_hot(torch.tensor(idx), 6).numpy())


# ---------------------------------------------------------------------------------------------------------------------
# attention


def _qkv(rng, lq: int = 5, lk: int = 6):
  return [randn(rng, 2, 3, lq, 4), randn(rng, 2, 3, lk, 4), randn(rng, 2, 3, lk, 4)]


def test_sdpa(rng):
  check(lambda q, k, v: q.scaled_dot_product_attention(k, v), F.scaled_dot_product_attention, _qkv(rng), rng)


def test_sdpa_bool_mask(rng):
  mask = rng.random((5, 6)) < 0.6
  mask[:, 0] = True  # no row fully masked
  check(lambda q, k, v: q.scaled_dot_product_attention(k, v, Tensor(mask)),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, torch.tensor(mask)), _qkv(rng), rng)


def test_sdpa_float_mask_broadcast_per_head(rng):
  mask = randn(rng, 3, 1, 6)
  check(lambda q, k, v: q.scaled_dot_product_attention(k, v, Tensor(mask)),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, torch.tensor(mask)), _qkv(rng), rng)


@pytest.mark.parametrize("lq, lk", [(6, 6), (6, 4)], ids=str)
def test_sdpa_causal(lq, lk, rng):
  check(lambda q, k, v: q.scaled_dot_product_attention(k, v, is_causal=True),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), _qkv(rng, lq, lk), rng)


def test_sdpa_dropout_only_in_training(rng, monkeypatch):
  q, k, v = [Tensor(a) for a in _qkv(rng)]
  assert_close(q.scaled_dot_product_attention(k, v, dropout_p=0.5), q.scaled_dot_product_attention(k, v).numpy())
  monkeypatch.setattr(Tensor, "training", True)
  dropped = q.scaled_dot_product_attention(k, v, dropout_p=0.5).numpy()
  assert not np.allclose(dropped, q.scaled_dot_product_attention(k, v).numpy())


# ---------------------------------------------------------------------------------------------------------------------
# losses

REDUCTIONS = ["mean", "sum", "none"]
SMOOTHED_REDUCTIONS = [("mean", 0.0), ("mean", 0.15), ("sum", 0.15), ("none", 0.0), ("none", 0.15)]


@pytest.mark.parametrize("reduction, label_smoothing", SMOOTHED_REDUCTIONS)
def test_cross_entropy_indices(reduction, label_smoothing, rng):
  y = torch.tensor(rng.integers(0, 5, 6))
  check(lambda x: x.cross_entropy(Tensor(y.numpy()), reduction=reduction, label_smoothing=label_smoothing),
        lambda t: F.cross_entropy(t, y, reduction=reduction, label_smoothing=label_smoothing), [randn(rng, 6, 5)], rng)


@pytest.mark.parametrize("reduction, label_smoothing", SMOOTHED_REDUCTIONS)
def test_cross_entropy_probabilities(reduction, label_smoothing, rng):
  p = rng.random((6, 5)).astype(np.float32) + 0.1
  p /= p.sum(1, keepdims=True)
  check(lambda x: x.cross_entropy(Tensor(p), reduction=reduction, label_smoothing=label_smoothing),
        lambda t: F.cross_entropy(t, torch.tensor(p), reduction=reduction, label_smoothing=label_smoothing),
        [randn(rng, 6, 5)], rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_spatial_and_unbatched(reduction, rng):
  y = rng.integers(0, 5, (2, 3, 3))
  check(lambda x: x.cross_entropy(Tensor(y), reduction=reduction),
        lambda t: F.cross_entropy(t, torch.tensor(y), reduction=reduction), [randn(rng, 2, 5, 3, 3)], rng)
  check(lambda x: x.cross_entropy(Tensor(np.int64(3)), reduction=reduction),
        lambda t: F.cross_entropy(t, torch.tensor(3), reduction=reduction), [randn(rng, 5)], rng)


def test_cross_entropy_with_masked_classes(rng):
  # a -inf logit of a class that is never the target leaves the loss finite (log-probabilities are picked, not
  # multiplied by a one-hot that would give 0 * -inf = nan)
  x = randn(rng, 4, 5)
  x[:, 4] = -np.inf
  y = rng.integers(0, 4, 4)
  assert_close(Tensor(x).cross_entropy(Tensor(y)), F.cross_entropy(torch.tensor(x), torch.tensor(y)))
  assert_close(Tensor(x).sparse_categorical_crossentropy(Tensor(y)), F.cross_entropy(torch.tensor(x), torch.tensor(y)))


@pytest.mark.parametrize("loss", ["cross_entropy", "sparse_categorical_crossentropy", "nll_loss"])
def test_losses_keep_half_dtype(loss, rng):
  x = Tensor(randn(rng, 4, 5), dtype=dtypes.float16)
  out = getattr(x.log_softmax(-1) if loss == "nll_loss" else x, loss)(Tensor(rng.integers(0, 5, 4)))
  assert out.dtype == dtypes.float16


def test_sparse_categorical_crossentropy_all_ignored_is_nan_as_torch(rng):
  y = np.full(3, -1)
  out = Tensor(randn(rng, 3, 4)).sparse_categorical_crossentropy(Tensor(y)).numpy()
  want = F.cross_entropy(torch.tensor(randn(rng, 3, 4)), torch.tensor(y), ignore_index=-1)
  assert np.isnan(out) and torch.isnan(want)


def test_cross_entropy_bad_reduction(rng):
  with pytest.raises(ValueError, match="'avg'"):
    Tensor(randn(rng, 3, 4)).cross_entropy(Tensor([0, 1, 2]), reduction="avg")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_crossentropy(reduction, rng):
  p = (rng.random((4, 5)) * 0.9 + 0.05).astype(np.float32)
  y = (rng.random((4, 5)) < 0.5).astype(np.float32)
  check(lambda x: x.binary_crossentropy(Tensor(y), reduction=reduction),
        lambda t: F.binary_cross_entropy(t, torch.tensor(y), reduction=reduction), [p], rng)


@pytest.mark.parametrize("reduction, pos_weight", [("mean", None), ("sum", "tensor"), ("none", None),
                                                   ("none", "tensor")])
def test_binary_crossentropy_logits(reduction, pos_weight, rng):
  y = rng.random((4, 5)).astype(np.float32)  # soft targets in [0, 1)
  pw = np.abs(randn(rng, 5)) + 0.2 if pos_weight else None
  x = randn(rng, 4, 5, scale=3.0)
  x[0, :4] = [-60.0, 60.0, -120.0, 120.0]  # exp(-x) overflows in a naive formula
  check(lambda t: t.binary_crossentropy_logits(Tensor(y), reduction=reduction,
                                               pos_weight=None if pw is None else Tensor(pw)),
        lambda t: F.binary_cross_entropy_with_logits(t, torch.tensor(y), reduction=reduction,
                                                     pos_weight=None if pw is None else torch.tensor(pw)), [x], rng)


@pytest.mark.parametrize("reduction, label_smoothing", SMOOTHED_REDUCTIONS)
def test_sparse_categorical_crossentropy(reduction, label_smoothing, rng):
  y = rng.integers(0, 5, (2, 4))
  y[0, 1] = y[1, 3] = -1
  check(lambda x: x.sparse_categorical_crossentropy(Tensor(y), label_smoothing=label_smoothing, reduction=reduction),
        lambda t: F.cross_entropy(t.permute(0, 2, 1), torch.tensor(y), ignore_index=-1, reduction=reduction,
                                  label_smoothing=label_smoothing), [randn(rng, 2, 4, 5)], rng)


def test_sparse_categorical_crossentropy_other_ignore_index(rng):
  y = rng.integers(0, 5, 6)
  y[2] = 3
  check(lambda x: x.sparse_categorical_crossentropy(Tensor(y), ignore_index=3),
        lambda t: F.cross_entropy(t, torch.tensor(y), ignore_index=3), [randn(rng, 6, 5)], rng)


@pytest.mark.parametrize("ignore_index, weighted", [(None, False), (2, True)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss(reduction, ignore_index, weighted, rng):
  y = rng.integers(0, 5, (3, 4))
  y[0, 0] = 2
  w = np.abs(randn(rng, 5)) + 0.1 if weighted else None
  kw = {} if ignore_index is None else {"ignore_index": ignore_index}
  check(lambda x: x.log_softmax(1).nll_loss(Tensor(y), None if w is None else Tensor(w), reduction=reduction, **kw),
        lambda t: F.nll_loss(t.log_softmax(1), torch.tensor(y), None if w is None else torch.tensor(w),
                             reduction=reduction, **kw), [randn(rng, 3, 5, 4)], rng)


# ---------------------------------------------------------------------------------------------------------------------
# interpolate


INTERPOLATE_CASES = [(mode, corners, size) for mode, corners in [("nearest", False), ("nearest-exact", False),
                                                                 ("linear", False), ("linear", True)]
                     for size in [(8, 10), (3, 7)]] + [("linear", True, (1, 1)), ("linear", False, (1, 1))]


@pytest.mark.parametrize("mode, align_corners, size", INTERPOLATE_CASES, ids=str)
def test_interpolate_2d(mode, align_corners, size, rng):
  torch_mode = "bilinear" if mode == "linear" else mode
  corners = align_corners if mode == "linear" else None
  check(lambda x: x.interpolate(size, mode, align_corners),
        lambda t: F.interpolate(t, size, mode=torch_mode, align_corners=corners), [randn(rng, 2, 3, 4, 5)], rng)


@pytest.mark.parametrize("align_corners", [False, True])
def test_interpolate_1d_and_3d(align_corners, rng):
  check(lambda x: x.interpolate((9,), "linear", align_corners),
        lambda t: F.interpolate(t, (9,), mode="linear", align_corners=align_corners), [randn(rng, 2, 3, 5)], rng)
  check(lambda x: x.interpolate((4, 6, 3), "linear", align_corners),
        lambda t: F.interpolate(t, (4, 6, 3), mode="trilinear", align_corners=align_corners),
        [randn(rng, 1, 2, 3, 4, 5)], rng)


def test_interpolate_integer_nearest_is_exact(rng):
  x = rng.integers(-1000, 1000, (1, 1, 3, 4)).astype(np.int32)
  out = Tensor(x).interpolate((6, 7), "nearest")
  assert out.dtype == dtypes.int32
  np.testing.assert_array_equal(out.numpy(), F.interpolate(torch.tensor(x).float(), (6, 7)).int().numpy())


def test_interpolate_bad_mode(rng):
  with pytest.raises(ValueError, match="'bicubic'"):
    Tensor(randn(rng, 1, 1, 2, 2)).interpolate((4, 4), "bicubic")


# ---------------------------------------------------------------------------------------------------------------------
# kernel counts of fused patterns


def test_linear_bias_relu_is_one_kernel(rng):
  x, w, b = [Tensor(a).realize() for a in (randn(rng, 8, 16), randn(rng, 16, 32), randn(rng, 32))]
  assert kernels_to_realize((x @ w + b).relu()) == 1
  assert kernels_to_realize(x.linear(w, b).relu()) == 1


def test_conv2d_bias_relu_is_one_kernel(rng):
  """The convolution, bias and relu fuse into one kernel; the other is conv2d's copy of the weight into
  output-channel-last layout (so the reduction vectorizes over output channels)."""
  x, w, b = [Tensor(a).realize() for a in (randn(rng, 2, 3, 8, 8), randn(rng, 4, 3, 3, 3), randn(rng, 4))]
  assert kernels_to_realize(x.conv2d(w, b, padding=1).relu()) == 2
  assert kernels_to_realize(w.permute(1, 2, 3, 0).contiguous()) == 1


def test_pools_are_one_kernel(rng):
  x = Tensor(randn(rng, 2, 3, 8, 8)).realize()
  assert kernels_to_realize(x.max_pool2d(3, stride=2, padding=1)) == 1
  assert kernels_to_realize(x.avg_pool2d(2)) == 1


def test_elementwise_activation_chain_is_one_kernel(rng):
  x = Tensor(randn(rng, 64)).realize()
  assert kernels_to_realize(x.gelu().silu().sigmoid().softplus().mish().erf()) == 1


# ---------------------------------------------------------------------------------------------------------------------
# regressions


def test_grad_of_reshaped_numpy_leaf(rng):
  # a rank-2 numpy leaf is RESHAPE(BUFFER); folding a further reshape into the BUFFER once dropped it from the graph
  a = leaf(randn(rng, 2, 3))
  (a.reshape(6) * 2 + a.sum()).sum().backward()
  np.testing.assert_allclose(a.grad.numpy(), np.full((2, 3), 8.0, np.float32))
