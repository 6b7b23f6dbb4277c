"""Variables on the H100: kernels read them as int32 parameters, and a TinyJit replay through NVGraph patches the
values into both alternating copies of its command buffer (frontend.runtime.nv.NVGraph.set_var)."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def nv(dev):
  from frontend.device import Device
  ok, why = Device.available("NV")
  if not ok:
    pytest.skip(why)
  return "NV"


def test_values_and_windows_match_numpy(nv):
  from frontend import Tensor, Variable
  from frontend import realize
  v, row = Variable("k", -50, 50), Variable("row", 0, 63)
  data = np.random.default_rng(5).standard_normal((64, 48)).astype(np.float32)
  t = Tensor(data, device=nv).realize()
  compiles = None
  for k in (-7, 0, 31, 50):
    got = (t.shrink(((row.bind(k % 64), row.bind(k % 64) + 1), None)) * v.bind(k)).numpy()
    np.testing.assert_array_equal(got, data[k % 64:k % 64 + 1] * k)
    compiles = realize.STATS["compiles"] if compiles is None else compiles
  assert realize.STATS["compiles"] == compiles


def test_jit_step_patches_values_in_both_copies(nv):
  """Consecutive replays alternate between NVGraph's two command buffers; each must run with its own call's values
  (a value left in the copy not patched would show up every second step)."""
  from frontend import Tensor, TinyJit, Variable
  pos = Variable("pos", 0, 255)
  cache = Tensor.zeros(256, 16, device=nv).contiguous().realize()

  @TinyJit
  def step(row, p):
    cache.shrink(((p, p + 1), None)).assign(row).realize()
    return (cache.sum(1) * (Tensor.arange(256, device=nv) <= p)).sum().realize()

  want = np.zeros((256, 16), np.float32)
  rng = np.random.default_rng(6)
  for p in range(12):
    row = rng.standard_normal((1, 16)).astype(np.float32)
    got = step(Tensor(row, device=nv).realize(), pos.bind(p)).item()
    want[p] = row[0]
    np.testing.assert_allclose(got, want[:p + 1].sum(), rtol=1e-5, atol=1e-5)
    if p >= 2:
      assert step.graph is not None, "replay on NV should go through a prebuilt command buffer"
  np.testing.assert_array_equal(cache.numpy(), want)
