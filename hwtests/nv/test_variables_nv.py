"""Variables on the H100: kernels read them as int32 parameters after their buffer pointers, and a TinyJit replay
through NVGraph patches the values into both alternating copies of its command buffer
(frontend.runtime.nv.NVGraph.set_var). Skips cleanly without an NVIDIA GPU (hwtests/nv/conftest.py)."""
from __future__ import annotations

import numpy as np


def test_values_and_windows_match_numpy(nv):
  """One kernel per graph for every value: the value as arithmetic (negative too) and as a window's first row."""
  from frontend import Tensor, Variable
  from frontend import realize
  v, row = Variable("k", -50, 50), Variable("row", 0, 63)
  data = np.random.default_rng(5).standard_normal((64, 48)).astype(np.float32)
  t = Tensor(data, device=nv).realize()
  compiles = None
  for k in (-7, 0, 31, 50, -50):
    got = (t.shrink(((row.bind(k % 64), row.bind(k % 64) + 1), None)) * v.bind(k)).numpy()
    np.testing.assert_array_equal(got, data[k % 64:k % 64 + 1] * k)
    compiles = realize.STATS["compiles"] if compiles is None else compiles
  assert realize.STATS["compiles"] == compiles


def _cache_step(nv):
  """A TinyJit step that writes a row into a cache at Variable `pos` and sums the rows up to it."""
  from frontend import Tensor, TinyJit
  cache = Tensor.zeros(256, 16, device=nv).contiguous().realize()

  @TinyJit
  def step(row, p):
    cache.shrink(((p, p + 1), None)).assign(row).realize()
    return (cache.sum(1) * (Tensor.arange(256, device=nv) <= p)).sum().realize()
  return step, cache


def test_jit_step_patches_values_in_both_copies(nv):
  """Consecutive replays alternate between NVGraph's two command buffers; each must run with its own call's values
  (a value left in the copy not patched would show up every second step)."""
  from frontend import Tensor, Variable
  from frontend import realize
  pos = Variable("pos", 0, 255)
  step, cache = _cache_step(nv)
  want = np.zeros((256, 16), np.float32)
  rng = np.random.default_rng(6)
  compiles = None
  for p in range(12):
    row = rng.standard_normal((1, 16)).astype(np.float32)
    got = step(Tensor(row, device=nv).realize(), pos.bind(p)).item()
    want[p] = row[0]
    np.testing.assert_allclose(got, want[:p + 1].sum(), rtol=1e-5, atol=1e-5)
    if p == 1:
      compiles = realize.STATS["compiles"]
    if p >= 2:
      assert step.graph is not None, "replay on NV should go through a prebuilt command buffer"
  assert realize.STATS["compiles"] == compiles, "a new value compiled a new kernel"
  np.testing.assert_array_equal(cache.numpy(), want)


def test_graph_value_set_once_holds_on_both_copies(nv):
  """NVGraph directly: a value set once, then several runs without setting it again. The copy not patched at set time
  catches up just before its own turn, so every run writes the same row and sums the same prefix."""
  from frontend import Tensor, Variable
  from frontend.device import Device
  pos = Variable("pos", 0, 255)
  step, cache = _cache_step(nv)
  row = Tensor(np.full((1, 16), 2.0, np.float32), device=nv).realize()
  for p in range(3):  # run, capture, first replay
    out = step(row, pos.bind(p))
  graph = step.graph
  assert graph is not None and [local for local, _ in step.var_slots[pos]], "the capture reads pos"
  for p in (7, 100, 255, 0):
    for local, k in step.var_slots[pos]:  # one prebuilt buffer holds the whole step: item index = launch index
      graph.set_var(local, k, p)
    for run in range(3):
      graph.run()
      Device[nv].synchronize()
      rows = cache.numpy()
      assert rows[p].tolist() == [2.0] * 16, f"pos={p}, run {run}: the row was not written at pos"
      np.testing.assert_allclose(out.item(), rows[:p + 1].sum(), rtol=1e-6, err_msg=f"pos={p}, run {run}")
