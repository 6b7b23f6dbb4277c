"""tools/bench_replay.py compares like with like: our model and PyTorch's run the same math from the same weights (the
losses of the first steps agree to rounding), and our side really replays a captured step. Runs on the CPU with two
timed steps; the timings themselves are the benchmark's business, not a test's."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tools import bench_replay  # noqa: E402


@pytest.mark.parametrize("name", ["cnn", "transformer"])
def test_both_sides_train_the_same_model(name, on_cpu):
  mine = bench_replay.ours(name, "CPU", steps=2)
  assert mine["kernels"] > 10, "the step should have been captured by TinyJit"
  theirs = bench_replay.torch_side(name, "CPU", 2, mine["weights"], graphs=False)
  assert len(mine["losses"]) == len(theirs["losses"]) == bench_replay.WARMUP
  for ours_loss, torch_loss in zip(mine["losses"], theirs["losses"]):
    assert ours_loss == pytest.approx(torch_loss, rel=1e-4, abs=1e-5)
  assert mine["losses"][0] != mine["losses"][-1], "Adam steps should change the loss"
  assert mine["steps_s"] > 0 and theirs["steps_s"] > 0 and mine["host"] > 0
