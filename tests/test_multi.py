"""Tensors over several CPU devices (frontend/multi.py): shard and gather, ops on shards, all-reduce, gradients and
data-parallel training, each checked against numpy or against the same computation on one device."""
import numpy as np
import pytest

from compiler.ir import Ops
from frontend import multi
from frontend.device import Device
from frontend.multi import all_reduce, split_bounds
from frontend.nn import optim
from frontend.tensor import Tensor


def devs(n: int) -> tuple[str, ...]:
  return tuple(f"CPU:{i}" for i in range(n))


def rand(*shape, seed=0) -> np.ndarray:
  return np.random.default_rng(seed + 17 * len(shape)).standard_normal(shape).astype(np.float32)


# ---- devices ------------------------------------------------------------------------------------------------------
def test_cpu_devices_are_independent():
  assert Device.canonicalize("cpu:0") == "CPU" and Device.canonicalize("CPU:2") == "CPU:2"
  assert Device["CPU:0"] is Device["CPU"]
  assert Device["CPU:1"] is not Device["CPU"] and Device["CPU:1"].allocator is not Device["CPU:2"].allocator
  a = Tensor([1.0, 2.0], device="CPU:1")
  b = Tensor([3.0, 4.0], device="CPU:2")
  assert a.lazydata.arg.device == "CPU:1"
  np.testing.assert_allclose((a.to("CPU:2") + b).numpy(), [4.0, 6.0])


# ---- shard / gather -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("shape,axis", [((7, 5), 0), ((7, 5), 1), ((3, 2), 0), ((4, 6), None), ((2, 3, 10), 2)])
def test_shard_gather_round_trip(n, shape, axis):
  a = rand(*shape)
  t = Tensor(a).shard(devs(n), axis=axis)
  assert t.device == tuple(Device.canonicalize(d) for d in devs(n)) and t.shape == a.shape
  if axis is not None:
    assert t.lazydata.bounds == split_bounds(shape[axis], n)
    assert [s.shape[axis] for s in t.lazydata.nodes] == [hi - lo for lo, hi in split_bounds(shape[axis], n)]
  np.testing.assert_array_equal(t.numpy(), a)
  np.testing.assert_array_equal(t.to("CPU:5").numpy(), a)
  assert t.to("CPU:5").device == "CPU:5"


def test_split_bounds_are_tinygrads_ceil_chunks():
  assert split_bounds(10, 4) == ((0, 3), (3, 6), (6, 9), (9, 10))
  assert split_bounds(3, 4) == ((0, 1), (1, 2), (2, 3), (3, 3))
  assert split_bounds(8, 2) == ((0, 4), (4, 8))


def test_shard_with_splits_and_replicated_creation():
  a = rand(9, 2)
  t = Tensor(a).shard(devs(3), axis=0, splits=(2, 0, 7))
  assert t.lazydata.bounds == ((0, 2), (2, 2), (2, 9))
  np.testing.assert_array_equal((t * 2).numpy(), a * 2)
  r = Tensor(a, device=devs(2))
  assert r.lazydata.axis is None
  np.testing.assert_array_equal(r.numpy(), a)
  z = Tensor.zeros(3, 4, device=devs(3)) + 1
  np.testing.assert_array_equal(z.numpy(), np.ones((3, 4)))
  u = Tensor.rand(5, device=devs(2))  # drawn once: every device holds the same numbers
  first, second = (Tensor(node).numpy() for node in u.lazydata.nodes)
  np.testing.assert_array_equal(first, second)


# ---- ops ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 4])
def test_elementwise(n):
  a, b, c = rand(7, 5), rand(7, 5, seed=1), rand(5, seed=2)
  ta = Tensor(a).shard(devs(n), axis=0)
  tb = Tensor(b).shard(devs(n), axis=0)
  tc = Tensor(c).shard(devs(n))  # replicated, broadcast against the shards
  np.testing.assert_allclose((ta * tb + tc - 1.5).numpy(), a * b + c - 1.5, rtol=1e-6)
  np.testing.assert_allclose(ta.exp().relu().numpy(), np.maximum(np.exp(a), 0), rtol=1e-6)
  np.testing.assert_array_equal((ta > tb).where(ta, tb).numpy(), np.where(a > b, a, b))
  np.testing.assert_array_equal(ta.cast("int32").numpy(), a.astype(np.int32))
  other_axis = Tensor(b).shard(devs(n), axis=1)  # another layout: brought to ta's
  np.testing.assert_allclose((ta + other_axis).numpy(), a + b, rtol=1e-6)


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("shard_axis", [0, 1])
def test_reductions(n, shard_axis):
  a = rand(6, 7)
  t = Tensor(a).shard(devs(n), axis=shard_axis)
  for axis in (None, 0, 1):
    np.testing.assert_allclose(t.sum(axis).numpy(), a.sum(axis), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t.max(axis).numpy(), a.max(axis))
    np.testing.assert_allclose(t.min(axis).numpy(), a.min(axis))
    np.testing.assert_allclose(t.mean(axis).numpy(), a.mean(axis), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(t.argmax(1).numpy(), a.argmax(1))
  reduced = t.sum(shard_axis)
  assert reduced.lazydata.axis is None  # a reduction over the sharded axis is all-reduced: replicated


@pytest.mark.parametrize("n", [2, 3, 4])
def test_matmul(n):
  x, w = rand(9, 6), rand(6, 4, seed=1)
  expect = x @ w
  batch = Tensor(x).shard(devs(n), axis=0) @ Tensor(w).shard(devs(n))
  assert batch.lazydata.axis == 0
  np.testing.assert_allclose(batch.numpy(), expect, rtol=1e-5, atol=1e-5)
  inner = Tensor(x).shard(devs(n), axis=1) @ Tensor(w).shard(devs(n), axis=0)  # partial sums, all-reduced
  assert inner.lazydata.axis is None
  np.testing.assert_allclose(inner.numpy(), expect, rtol=1e-5, atol=1e-5)
  cols = Tensor(x).shard(devs(n)) @ Tensor(w).shard(devs(n), axis=1)
  assert cols.lazydata.axis == 1
  np.testing.assert_allclose(cols.numpy(), expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [2, 3])
def test_movement(n):
  a = rand(6, 4, 3)
  t = Tensor(a).shard(devs(n), axis=0)
  np.testing.assert_array_equal(t.reshape(6, 12).numpy(), a.reshape(6, 12))
  np.testing.assert_array_equal(t.reshape(72).numpy(), a.reshape(72))
  np.testing.assert_array_equal(t.reshape(72).reshape(6, 4, 3).numpy(), a)
  np.testing.assert_array_equal(t.permute(2, 0, 1).numpy(), a.transpose(2, 0, 1))
  assert t.permute(2, 0, 1).lazydata.axis == 1
  np.testing.assert_array_equal(t.pad(((1, 2), (0, 1), (0, 0))).numpy(), np.pad(a, ((1, 2), (0, 1), (0, 0))))
  np.testing.assert_array_equal(t[1:5, 1:3].numpy(), a[1:5, 1:3])
  np.testing.assert_array_equal(t.flip(0).numpy(), a[::-1])
  np.testing.assert_array_equal((t.flip(0) + t).numpy(), a[::-1] + a)
  np.testing.assert_array_equal(t[:, :1].expand(6, 5, 3).numpy(), np.broadcast_to(a[:, :1], (6, 5, 3)))
  np.testing.assert_array_equal(t.cat(t, dim=1).numpy(), np.concatenate([a, a], 1))
  np.testing.assert_array_equal(t.cat(t, dim=0).numpy(), np.concatenate([a, a], 0))


# ---- all-reduce ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("size", [1, 3, 10, 257])
def test_all_reduce_ring_tree_numpy(n, size):
  values = [rand(size, seed=i) for i in range(n)]
  nodes = [Tensor(v, device=d).lazydata for v, d in zip(values, devs(n))]
  for algorithm in ("ring", "tree", None):
    for op, reference in ((Ops.ADD, np.sum), (Ops.MAX, np.max)):
      out = [Tensor(node).numpy() for node in all_reduce(nodes, op, algorithm)]
      np.testing.assert_allclose(out[0], reference(values, axis=0), rtol=1e-5, atol=1e-5)
      for o in out[1:]:
        np.testing.assert_array_equal(o, out[0])  # bit-identical on every device


def test_all_reduce_large_picks_ring_and_keeps_shapes():
  n = 3
  values = [rand(300, 250, seed=i) for i in range(n)]  # 300 KB per device: the ring
  nodes = [Tensor(v, device=d).lazydata for v, d in zip(values, devs(n))]
  out = all_reduce(nodes)
  copies = [x for x in out[0].toposort() if x.op is Ops.COPY]
  assert copies and all(c.size == 25000 for c in copies)  # the ring moves thirds; the tree would move the whole
  np.testing.assert_allclose(Tensor(out[2]).numpy(), np.sum(values, axis=0), rtol=1e-5, atol=1e-5)
  prod = all_reduce(nodes[:2], Ops.MUL, "tree")
  np.testing.assert_allclose(Tensor(prod[1]).numpy(), values[0] * values[1], rtol=1e-6)


# ---- gradients and training ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 4])
def test_gradients_match_one_device(n):
  x, w, v = rand(10, 6), rand(6, 3, seed=1), rand(3, seed=2)

  def grads(devices):
    tw = Tensor(w, requires_grad=True)
    tv = Tensor(v, requires_grad=True)
    tx = Tensor(x)
    if devices:
      tw.shard_(devices, axis=1)  # a sharded parameter
      tv.shard_(devices)  # a replicated one
      tx = tx.shard(devices, axis=0)
    loss = ((tx @ tw + tv).relu() ** 2).mean() + (tx @ tw).max()
    loss.backward()
    return loss.numpy(), tw.grad.numpy(), tv.grad.numpy()

  for single, sharded in zip(grads(None), grads(devs(n))):
    np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-6)


def _train_mlp(devices, opt_cls, steps=4):
  rng = np.random.default_rng(0)
  xs = rng.standard_normal((12, 6)).astype(np.float32)
  ys = rng.integers(0, 3, 12).astype(np.int32)
  where = devices or None
  w1 = Tensor(rng.standard_normal((6, 8)).astype(np.float32) * 0.3, device=where, requires_grad=True)
  b1 = Tensor(np.zeros(8, np.float32), device=where, requires_grad=True)
  w2 = Tensor(rng.standard_normal((8, 3)).astype(np.float32) * 0.3, device=where, requires_grad=True)
  opt = opt_cls([w1, b1, w2], lr=0.05)
  losses = []
  before = Tensor.training
  Tensor.training = True
  try:
    for _ in range(steps):
      x, y = Tensor(xs), Tensor(ys)
      if devices:  # data-parallel: the batch split on axis 0, the parameters replicated
        x, y = x.shard(devices, axis=0), y.shard(devices, axis=0)
      loss = x.linear(w1, b1).relu().linear(w2).sparse_categorical_crossentropy(y)
      opt.zero_grad()
      loss.backward()
      opt.step()
      losses.append(loss.item())
  finally:
    Tensor.training = before
  return losses, [p.numpy() for p in (w1, b1, w2)]


@pytest.mark.parametrize("opt_cls", [optim.SGD, optim.Adam])
@pytest.mark.parametrize("n", [2, 3, 4])
def test_data_parallel_training_matches_one_device(opt_cls, n):
  single_losses, single_params = _train_mlp(None, opt_cls)
  losses, params = _train_mlp(devs(n), opt_cls)
  np.testing.assert_allclose(losses, single_losses, rtol=1e-5)
  for p, q in zip(params, single_params):
    np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-5)
  assert single_losses[-1] < single_losses[0]


# ---- errors -------------------------------------------------------------------------------------------------------
def test_errors_name_the_problem():
  a = Tensor(rand(4, 6))
  with pytest.raises(IndexError, match="out of range"):
    a.shard(devs(2), axis=2)
  with pytest.raises(ValueError, match="adding up to the size 4 of axis 0"):
    a.shard(devs(2), axis=0, splits=(1, 2))
  with pytest.raises(IndexError, match="0-d"):
    Tensor(1.0).shard(devs(2), axis=0)
  with pytest.raises(ValueError, match="distinct devices"):
    a.shard(("CPU", "CPU:0"))
  with pytest.raises(ValueError, match="unknown device 'CPU:x'"):
    a.shard(("CPU", "CPU:x"))
  with pytest.raises(ValueError, match="unknown device 'TPU:1'"):
    a.shard(("CPU", "TPU:1"))
  sharded = a.shard(devs(2), axis=0)
  with pytest.raises(ValueError, match="different devices"):
    sharded + Tensor(rand(4, 6), device="CPU:3")
  with pytest.raises(ValueError, match="different devices"):
    sharded + a.shard(devs(3), axis=0)
  with pytest.raises(ValueError, match="splits the shards"):
    Tensor(rand(6, 4)).shard(devs(4), axis=0).reshape(4, 6)
  with pytest.raises(ValueError, match="distinct devices"):
    all_reduce([a.lazydata, a.lazydata])
  with pytest.raises(ValueError, match="unknown all_reduce algorithm"):
    all_reduce([a.lazydata], algorithm="butterfly")


def test_multinode_repr_and_layout():
  t = Tensor(rand(5, 2)).shard(devs(2), axis=0)
  assert "axis=0" in repr(t.lazydata) and "CPU:1" in repr(t.lazydata)
  replicated = multi.to_layout(t.lazydata, None, None)
  np.testing.assert_array_equal(Tensor(replicated.nodes[1]).numpy(), t.numpy())


# ---- sov train-mnist --devices N ----------------------------------------------------------------------------------
def _train_digits(tmp_path, devices: int, steps: int):
  """sov train-mnist on the digits over CPU, CPU:1, ... (the tests pin DEV=CPU: data parallelism is built on CPU)."""
  from tools import train_mnist
  pytest.importorskip("sklearn", reason="the digits data set comes from scikit-learn")
  for module in ("tqdm", "matplotlib", "safetensors"):
    pytest.importorskip(module, reason="sov train-mnist needs the [train] extras")
  config = train_mnist.TrainConfig(dataset="digits", steps=steps, batch_size=32, devices=devices, jit=False,
                                   out=tmp_path / f"run{devices}")
  return train_mnist.train(config, log=lambda line: None)


@pytest.mark.slow
def test_train_mnist_data_parallel_steps_match_one_device(tmp_path, on_cpu):
  """The CNN (with batch norm over the whole sharded batch) takes the same steps on 2 devices as on one."""
  one = _train_digits(tmp_path, 1, 3)
  two = _train_digits(tmp_path, 2, 3)
  assert two.device == ("CPU", "CPU:1")
  np.testing.assert_allclose(two.losses, one.losses, rtol=1e-4)
  assert abs(two.test_correct - one.test_correct) <= 3


@pytest.mark.slow
def test_train_mnist_data_parallel_converges_like_one_device(tmp_path, on_cpu):
  one = _train_digits(tmp_path, 1, 30)
  three = _train_digits(tmp_path, 3, 30)
  assert three.test_accuracy > 0.8 and abs(three.test_accuracy - one.test_accuracy) < 0.03
