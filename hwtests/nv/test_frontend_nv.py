"""The tensor frontend on DEV=NV: results against numpy, and TinyJit replay through a prebuilt command buffer."""
from __future__ import annotations

import numpy as np


def test_ops_match_numpy(nv):
  from frontend import Tensor
  rng = np.random.default_rng(3)
  a, b = rng.standard_normal((300, 200), dtype=np.float32), rng.standard_normal((200, 100), dtype=np.float32)
  ta, tb = Tensor(a, device=nv), Tensor(b, device=nv)
  np.testing.assert_allclose((ta @ tb).numpy(), a @ b, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(ta.softmax(axis=-1).numpy(), np.exp(a) / np.exp(a).sum(-1, keepdims=True), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose((ta.relu() * 3 - 1).sum(axis=0).numpy(), (np.maximum(a, 0) * 3 - 1).sum(0), rtol=1e-4)


def test_division_slow_path_returns(nv):
  """Zero and subnormal operands send div.rn.f32 down its slow path, a separate function the kernel calls and that
  returns through an address the loader relocates (the H100 faulted with Xid 13 while the halves were swapped)."""
  from frontend import Tensor
  a = np.array([0.0, 1e-40, 3.0, -0.0, 5.0, 1e30, 7.0], np.float32)
  b = np.array([2.0, 3.0, 1e-39, 4.0, 0.0, 1e-10, -1e-42], np.float32)
  with np.errstate(divide="ignore", over="ignore"):
    np.testing.assert_array_equal((Tensor(a, device=nv) / Tensor(b, device=nv)).numpy(), a / b)


def test_tinyjit_replays_a_command_buffer(nv):
  from frontend import Tensor
  from frontend.jit import TinyJit

  @TinyJit
  def step(x, y):
    return ((x * 2 + y).relu() @ y.T).sum(axis=1)

  rng = np.random.default_rng(4)
  for i in range(6):
    x, y = rng.standard_normal((64, 32), dtype=np.float32), rng.standard_normal((64, 32), dtype=np.float32)
    got = step(Tensor(x, device=nv), Tensor(y, device=nv)).numpy()
    np.testing.assert_allclose(got, (np.maximum(x * 2 + y, 0) @ y.T).sum(1), rtol=1e-4, atol=1e-4)
    if i >= 2:
      assert step.graph is not None, "replay on NV should go through a prebuilt command buffer"


def test_tinyjit_repeats_host_copies_around_command_buffers(nv):
  """A step that takes host (CPU) batches, moves them to the GPU and the result back: each replay copies the new
  batch in (copy engine, after the compute work queued before it) and runs the kernels as one command buffer."""
  from frontend import Tensor
  from frontend.jit import TinyJit

  @TinyJit
  def step(x):
    return ((x.to(nv) * 2 + 1).relu().sum(axis=1)).to("CPU").realize()

  rng = np.random.default_rng(5)
  for _ in range(6):
    x = rng.standard_normal((128, 48), dtype=np.float32)
    got = step(Tensor(x, device="CPU") * 1).numpy()
    np.testing.assert_allclose(got, np.maximum(x * 2 + 1, 0).sum(1), rtol=1e-5, atol=1e-5)
  assert any(graph is not None for _, _, graph in step.segments), "the kernels between the copies form a graph"


def test_debug4_prints_ptx_and_sass(nv, monkeypatch, capsys):
  from frontend import Tensor
  from frontend import realize
  from nvdrv.compile import find_cuda_tool
  monkeypatch.setattr(realize, "kernel_cache", {})
  monkeypatch.setenv("DEBUG", "4")
  x = np.random.default_rng(5).standard_normal(1000).astype(np.float32)
  got = (Tensor(x, device=nv).exp() * 3).numpy()
  printed = capsys.readouterr().out
  np.testing.assert_allclose(got, np.exp(x) * 3, rtol=1e-5)
  assert ".entry" in printed and ".target sm_90" in printed, printed[:2000]
  if find_cuda_tool("nvdisasm"):
    assert "EXIT" in printed, "nvdisasm is installed: DEBUG=4 should show the SASS too"
