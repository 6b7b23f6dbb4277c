"""Differential tests of the layers in frontend/nn: each layer gets torch's weights copied in, then its output and the
gradients of its input and weights are compared with torch.nn on fresh random data (seeded per test).
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

from frontend import Tensor, dtypes, nn

# ---------------------------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def rng(request) -> np.random.Generator:
  return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def randn(rng: np.random.Generator, *shape, scale: float = 1.0) -> np.ndarray:
  return (rng.standard_normal(shape) * scale).astype(np.float32)


def assert_close(got, want, atol: float = 2e-5, rtol: float = 1e-4, what: str = "value") -> None:
  got = got.numpy() if isinstance(got, Tensor) else np.asarray(got)
  want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
  assert got.shape == want.shape, f"{what}: shape {got.shape} != expected {want.shape}"
  np.testing.assert_allclose(got, want, atol=atol, rtol=rtol, err_msg=what)


def randomize(module: torch.nn.Module, rng: np.random.Generator) -> None:
  """Fresh random parameters (not torch's init, and no all-ones/zeros norm weights)."""
  with torch.no_grad():
    for p in module.parameters():
      p.copy_(torch.from_numpy(randn(rng, *p.shape)))


def copy_params(layer, module: torch.nn.Module) -> list[str]:
  """Copies module's parameters into the layer's attributes of the same names, as trainable tensors."""
  names = [name for name, _ in module.named_parameters()]
  for name in names:
    setattr(layer, name, Tensor(getattr(module, name).detach().numpy().copy(), requires_grad=True))
  return names


def compare_layer(layer, module: torch.nn.Module, x: np.ndarray, rng: np.random.Generator, atol: float = 2e-5,
                  input_grad: bool = True) -> None:
  """Output, input gradient and parameter gradients of layer vs module, for the upstream gradient g: sum(out * g)."""
  names = copy_params(layer, module)
  xt = Tensor(x, requires_grad=input_grad)
  xr = torch.tensor(x, requires_grad=input_grad)
  out, ref = layer(xt), module(xr)
  assert_close(out, ref, atol)
  upstream = randn(rng, *ref.shape)
  (out * Tensor(upstream)).sum().backward()
  (ref * torch.tensor(upstream)).sum().backward()
  if input_grad:
    assert_close(xt.grad, xr.grad, atol, what="input gradient")
  for name in names:
    ours = getattr(layer, name).grad
    assert ours is not None, f"{name} got no gradient"
    assert_close(ours, getattr(module, name).grad, atol * 10, what=f"gradient of {name}")


# ---------------------------------------------------------------------------------------------------------------------
# Linear


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("xshape", [(5, 6), (2, 3, 6)], ids=str)
def test_linear(bias, xshape, rng):
  module = torch.nn.Linear(6, 4, bias=bias)
  randomize(module, rng)
  compare_layer(nn.Linear(6, 4, bias=bias), module, randn(rng, *xshape), rng)


def test_linear_init():
  layer = nn.Linear(50, 7)
  assert layer.weight.shape == (7, 50) and layer.bias.shape == (7,)
  bound = 1 / math.sqrt(50)
  w = layer.weight.numpy()
  assert np.abs(w).max() <= bound and w.std() > bound / 3
  assert np.abs(layer.bias.numpy()).max() <= bound
  assert nn.Linear(3, 2, bias=False).bias is None


# ---------------------------------------------------------------------------------------------------------------------
# Conv2d, ConvTranspose2d

CONV_CASES = [dict(), dict(stride=2, padding=1), dict(padding=(2, 1), dilation=(1, 2)), dict(groups=2, bias=False),
              dict(kernel_size=(3, 1), stride=(1, 2), groups=4)]


@pytest.mark.parametrize("kw", CONV_CASES, ids=str)
def test_conv2d(kw, rng):
  kw = {"kernel_size": 3, **kw}
  module = torch.nn.Conv2d(4, 8, **kw)
  randomize(module, rng)
  compare_layer(nn.Conv2d(4, 8, **kw), module, randn(rng, 2, 4, 7, 6), rng, atol=1e-4)


def test_conv2d_init():
  layer = nn.Conv2d(4, 6, (3, 2), groups=2)
  assert layer.weight.shape == (6, 2, 3, 2) and layer.bias.shape == (6,)
  bound = 1 / math.sqrt(2 * 3 * 2)
  assert np.abs(layer.weight.numpy()).max() <= bound and np.abs(layer.bias.numpy()).max() <= bound


CONV_T_CASES = [dict(), dict(stride=2, padding=1, output_padding=1), dict(stride=(2, 1), dilation=2),
                dict(groups=2, stride=2, bias=False)]


@pytest.mark.parametrize("kw", CONV_T_CASES, ids=str)
def test_conv_transpose2d(kw, rng):
  module = torch.nn.ConvTranspose2d(4, 6, 3, **kw)
  randomize(module, rng)
  compare_layer(nn.ConvTranspose2d(4, 6, 3, **kw), module, randn(rng, 2, 4, 5, 4), rng, atol=1e-4)


def test_conv_transpose2d_init():
  layer = nn.ConvTranspose2d(4, 6, 3, groups=2)
  assert layer.weight.shape == (4, 3, 3, 3) and layer.bias.shape == (6,)


# ---------------------------------------------------------------------------------------------------------------------
# BatchNorm


def _batchnorm_pair(rng, affine: bool = True, track: bool = True, momentum: float = 0.1):
  module = torch.nn.BatchNorm2d(3, affine=affine, track_running_stats=track, momentum=momentum)
  randomize(module, rng)
  return nn.BatchNorm(3, affine=affine, track_running_stats=track, momentum=momentum), module


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_train_output_and_grads(affine, rng, monkeypatch):
  monkeypatch.setattr(Tensor, "training", True)
  layer, module = _batchnorm_pair(rng, affine)
  compare_layer(layer, module.train(), randn(rng, 4, 3, 5, 5, scale=2.0) + 1, rng, atol=5e-5)


def test_batchnorm_eval_uses_running_stats(rng):
  layer, module = _batchnorm_pair(rng)
  mean, var = randn(rng, 3), np.abs(randn(rng, 3)) + 0.3
  module.running_mean.copy_(torch.tensor(mean))
  module.running_var.copy_(torch.tensor(var))
  layer.running_mean, layer.running_var = Tensor(mean), Tensor(var)
  assert Tensor.training is False
  compare_layer(layer, module.eval(), randn(rng, 2, 3, 4, 4), rng, atol=5e-5)


def test_batchnorm_without_running_stats_normalizes_by_the_batch_in_eval(rng):
  layer, module = _batchnorm_pair(rng, track=False)
  compare_layer(layer, module.eval(), randn(rng, 4, 3, 3, 3) - 2, rng, atol=5e-5)


@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_batchnorm_running_stats_follow_torch(momentum, rng, monkeypatch):
  monkeypatch.setattr(Tensor, "training", True)
  layer, module = _batchnorm_pair(rng, momentum=momentum)
  copy_params(layer, module)
  module.train()
  for _ in range(3):
    x = randn(rng, 4, 3, 2, 3, scale=2.0) + 1
    assert_close(layer(Tensor(x)), module(torch.tensor(x)), 5e-5)
  assert_close(layer.running_mean, module.running_mean, what="running_mean")
  assert_close(layer.running_var, module.running_var, what="running_var")
  assert int(layer.num_batches_tracked.numpy()[0]) == int(module.num_batches_tracked)


def test_batchnorm2d_is_batchnorm():
  assert nn.BatchNorm2d is nn.BatchNorm


# ---------------------------------------------------------------------------------------------------------------------
# LayerNorm, RMSNorm, GroupNorm


@pytest.mark.parametrize("shape, normalized", [((3, 4, 6), 6), ((2, 3, 4, 5), (4, 5))], ids=str)
def test_layernorm(shape, normalized, rng):
  module = torch.nn.LayerNorm(normalized, eps=1e-4)
  randomize(module, rng)
  compare_layer(nn.LayerNorm(normalized, eps=1e-4), module, randn(rng, *shape, scale=3.0) + 1, rng)


def test_layernorm_without_affine(rng):
  layer, module = nn.LayerNorm(5, elementwise_affine=False), torch.nn.LayerNorm(5, elementwise_affine=False)
  assert layer.weight is None and layer.bias is None
  compare_layer(layer, module, randn(rng, 3, 5), rng)


def test_layernorm_shape_mismatch_names_both_shapes():
  with pytest.raises(ValueError, match=r"LayerNorm\(4, 5\).*\(2, 5, 4\)"):
    nn.LayerNorm((4, 5))(Tensor(np.ones((2, 5, 4), np.float32)))


@pytest.mark.parametrize("affine", [True, False])
def test_rmsnorm(affine, rng):
  module = torch.nn.RMSNorm(6, eps=1e-6, elementwise_affine=affine)
  randomize(module, rng)
  compare_layer(nn.RMSNorm(6, elementwise_affine=affine), module, randn(rng, 2, 3, 6), rng)


@pytest.mark.parametrize("groups, affine", [(1, True), (2, True), (6, True), (3, False)])
def test_groupnorm(groups, affine, rng):
  module = torch.nn.GroupNorm(groups, 6, eps=1e-5, affine=affine)
  randomize(module, rng)
  compare_layer(nn.GroupNorm(groups, 6, affine=affine), module, randn(rng, 2, 6, 3, 4, scale=2.0), rng, atol=5e-5)


def test_groupnorm_rejects_uneven_groups():
  with pytest.raises(ValueError, match="6 channels.*4 groups"):
    nn.GroupNorm(4, 6)


# ---------------------------------------------------------------------------------------------------------------------
# Embedding


@pytest.mark.parametrize("idx_shape", [(), (7,), (3, 5)], ids=str)
def test_embedding(idx_shape, rng):
  module = torch.nn.Embedding(10, 4)
  randomize(module, rng)
  idx = rng.integers(0, 10, idx_shape)
  layer = nn.Embedding(10, 4)
  names = copy_params(layer, module)
  out, ref = layer(Tensor(idx.astype(np.int32))), module(torch.tensor(idx))
  assert_close(out, ref)
  upstream = randn(rng, *ref.shape)
  (out * Tensor(upstream)).sum().backward()
  (ref * torch.tensor(upstream)).sum().backward()
  assert names == ["weight"]
  assert_close(layer.weight.grad, module.weight.grad, what="weight gradient")


def test_embedding_rejects_float_indices():
  with pytest.raises(TypeError, match="integer indices.*float32"):
    nn.Embedding(4, 2)(Tensor(np.array([0.0, 1.0], np.float32)))


def test_embedding_init_shape_and_dtype():
  layer = nn.Embedding(11, 3)
  assert layer.weight.shape == (11, 3) and layer.weight.dtype == dtypes.float32


# ---------------------------------------------------------------------------------------------------------------------
# a small model end to end


def test_small_cnn_matches_torch(rng):
  torch_model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.GroupNorm(2, 4), torch.nn.ReLU(),
                                    torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 5))
  randomize(torch_model, rng)
  conv, norm, fc = nn.Conv2d(2, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.Linear(36, 5)
  for ours, theirs in ((conv, torch_model[0]), (norm, torch_model[1]), (fc, torch_model[5])):
    copy_params(ours, theirs)
  x = randn(rng, 2, 2, 6, 6)
  y = rng.integers(0, 5, 2)
  loss = fc(norm(conv(Tensor(x))).relu().max_pool2d(2).flatten(1)).cross_entropy(Tensor(y))
  ref = torch.nn.functional.cross_entropy(torch_model(torch.tensor(x)), torch.tensor(y))
  assert_close(loss, ref, 1e-5)
  loss.backward()
  ref.backward()
  for ours, theirs in ((conv, torch_model[0]), (norm, torch_model[1]), (fc, torch_model[5])):
    assert_close(ours.weight.grad, theirs.weight.grad, 1e-4, what=f"{type(ours).__name__} weight gradient")
    assert_close(ours.bias.grad, theirs.bias.grad, 1e-4, what=f"{type(ours).__name__} bias gradient")
