"""Replay files on the AMD target: a training step captured by TinyJit on a simulated Navi31 / Navi48 (the AM driver,
DEV=AMD with AMD_SIM), saved, and run again by tools/replay.py on the same card, on the wave emulator without a card,
and in a fresh process that boots the card itself and imports no frontend.

Every run executes the same RDNA code objects, so losses and weights must equal the eager run's bit for bit. Needs
AM_FIRMWARE_DIR like tests/test_amd_sim_frontend.py (skips without it locally, fails under CI=true).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from frontend import Tensor, TinyJit, nn
from frontend.nn.state import get_state_dict
from tests.test_amd_sim_frontend import amd  # noqa: F401  (the simulated-card device fixture, both cards)
from tests.test_replay_file import make_training as make_seeded_training
from tools import replay, replay_format
from tools.replay import ReplayError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, CAPTURE, BATCH = 6, 2, 4


class TinyMLP:
  def __init__(self):
    self.l1, self.l2 = nn.Linear(6, 8), nn.Linear(8, 3)

  def __call__(self, x: Tensor) -> Tensor:
    return self.l2(self.l1(x).relu())


def make_training():
  return make_seeded_training(0, TinyMLP, lr=0.05)


def batches():
  rng = np.random.default_rng(3)
  return (rng.standard_normal((STEPS, BATCH, 6)).astype(np.float32),
          rng.integers(0, 3, (STEPS, BATCH)).astype(np.int32))


@pytest.fixture(scope="module")
def runs(amd, tmp_path_factory):  # noqa: F811
  """(eager losses, eager weights, saved file, jitted losses, jitted weights) on this card."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("DEV", "AMD")  # the model's parameters are made on the default device
    return train_and_save(amd, tmp_path_factory)


def train_and_save(amd, tmp_path_factory):  # noqa: F811
  before = Tensor.training
  Tensor.training = True
  xs, ys = batches()
  model, _, train_step = make_training()
  eager = [train_step(Tensor(xs[i], device="AMD"), Tensor(ys[i], device="AMD")).numpy().copy() for i in range(STEPS)]
  eager_weights = {k: v.numpy().copy() for k, v in get_state_dict(model).items()}
  path = str(tmp_path_factory.mktemp("amdreplay") / f"step-{amd.card}.sovreplay")
  _, jitted, jit_weights = jit_and_save(*make_training(), xs, ys, path, CAPTURE)
  Tensor.training = before
  return eager, eager_weights, path, jitted, jit_weights


def jit_and_save(model, opt, train_step, xs, ys, path: str, capture: int):
  """`train_step` under TinyJit over every batch on the AMD device, saved to `path` after `capture` calls:
  (the jit, the losses, the final weights)."""
  jit, jitted = TinyJit(train_step), []
  for i in range(len(xs)):
    jitted.append(jit(Tensor(xs[i], device="AMD"), Tensor(ys[i], device="AMD")).numpy().copy())
    if i + 1 == capture:
      jit.save(path, inputs=("x", "y"), outputs=("loss",), parameters=get_state_dict(model),
               optimizer_state=get_state_dict(opt), feeds={"lr": opt.lr})
  return jit, jitted, {k: v.numpy().copy() for k, v in get_state_dict(model).items()}


def assert_same_weights(got: dict, want: dict) -> None:
  for name, value in want.items():
    np.testing.assert_array_equal(np.asarray(got[name]).reshape(value.shape), value, err_msg=name)


def replay_rest(r) -> list[np.ndarray]:
  xs, ys = batches()
  losses = []
  for i in range(CAPTURE, STEPS):
    r.step({"x": xs[i], "y": ys[i]})
    losses.append(r.output("loss").copy())
  return losses


def test_file_describes_the_amd_target(amd, runs):  # noqa: F811
  rf = replay_format.read(runs[2])
  target = rf.manifest["target"]
  assert target["kind"] == "AMD" and target["gfx_target"] == amd.target and amd.card in target["saved_on"]
  for k in rf.manifest["kernels"]:
    blob = bytes(rf.blob(k["code_object_blob"]))
    assert blob[:4] == b"\x7fELF" and len(k["grid"]) == len(k["block"]) == 3


def test_jit_on_the_card_equals_eager(runs):
  eager, eager_weights, _, jitted, jit_weights = runs
  np.testing.assert_array_equal(np.array(jitted), np.array(eager))
  assert_same_weights(jit_weights, eager_weights)


def test_loader_on_the_card_equals_eager(amd, runs):  # noqa: F811
  eager, eager_weights, path, _, _ = runs
  r = replay.load(path, amd_device=amd.dev)
  assert isinstance(r.backend, replay.AMDCardBackend)
  launches = r.backend.launches   # barriers only between dependent launches (the `amd` fixture checks for hazards)
  assert 0 < launches.barriers < len(launches.launches) - 1
  before = amd.queue.signal.last
  losses = replay_rest(r)
  assert amd.queue.signal.last == before + STEPS - CAPTURE, "each step should be one submission of the card's queue"
  np.testing.assert_array_equal(np.array(losses), np.array(eager[CAPTURE:]))
  assert_same_weights(r.state(), eager_weights)


def test_loader_bind_patches_kernargs_on_the_card(amd, runs):  # noqa: F811
  """A bound input buffer is really read: the old one is poisoned, the result still equals eager."""
  eager, eager_weights, path, _, _ = runs
  r = replay.load(path, amd_device=amd.dev)
  xs, ys = batches()
  x_mem = r.alloc("x")
  r.bind("x", x_mem)
  r.backend.write(r.backend.mem[r.inputs["x"]["buffer"]], np.full(BATCH * 6, np.nan, np.float32))
  losses = []
  for i in range(CAPTURE, STEPS):
    r.backend.write(x_mem, xs[i])
    r.step({"y": ys[i]})
    losses.append(r.output("loss").copy())
  np.testing.assert_array_equal(np.array(losses), np.array(eager[CAPTURE:]))
  assert_same_weights(r.state(), eager_weights)


def test_loader_on_the_emulator_equals_eager(runs, monkeypatch):
  eager, eager_weights, path, _, _ = runs
  monkeypatch.delenv("AMD_SIM", raising=False)
  r = replay.load(path)
  assert isinstance(r.backend, replay.AMDEmulatorBackend)
  np.testing.assert_array_equal(np.array(replay_rest(r)), np.array(eager[CAPTURE:]))
  assert_same_weights(r.state(), eager_weights)


FRESH = """
import sys
from tools import replay
rc = replay.main({argv!r})
leaked = sorted(m for m in sys.modules if m.split('.')[0] == 'frontend' or
                (m.split('.')[0] == 'compiler' and m not in ('compiler', 'compiler.rdna') and
                 not m.startswith('compiler.rdna.')))
assert not leaked, leaked
sys.exit(rc)
"""


def test_fresh_process_boots_the_card_and_continues(amd, runs, tmp_path, fw_dir):  # noqa: F811
  """`python -m tools.replay` with AMD_SIM: boots the simulated card through the AM driver, imports no frontend and
  nothing of the compiler but the ISA toolchain's code-object reader, and ends with the eager run's weights."""
  eager, eager_weights, path, _, _ = runs
  xs, ys = batches()
  npz, state = str(tmp_path / "inputs.npz"), str(tmp_path / "state.npz")
  np.savez(npz, x=xs[CAPTURE:], y=ys[CAPTURE:])
  env = dict(os.environ, AMD_SIM=amd.card, AM_FIRMWARE_DIR=fw_dir, AM_SIM_HAZARDS="raise")
  env.pop("AMD_EMULATE", None)
  proc = subprocess.run([sys.executable, "-c", FRESH.format(argv=[path, "--inputs", npz, "--save-state", state])],
                        cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
  assert proc.returncode == 0, proc.stderr
  assert "on AMD" in proc.stdout and f"loss {float(eager[-1]):.6g}" in proc.stdout, proc.stdout
  with np.load(state) as saved_state:
    assert_same_weights(dict(saved_state), eager_weights)


def test_refuses_a_card_of_another_generation(amd, runs, monkeypatch):  # noqa: F811
  path = runs[2]
  other = "navi48" if amd.card == "navi31" else "navi31"
  monkeypatch.setenv("AMD_SIM", other)
  with pytest.raises(ReplayError, match=f"holds {amd.target} code; AMD_SIM={other}"):
    replay.load(path)
  monkeypatch.setenv("AMD_SIM", "navi99")
  with pytest.raises(ReplayError, match="AMD_SIM='navi99' names no simulated card"):
    replay.load(path)


def test_refuses_an_unknown_gfx_target(runs, tmp_path):
  rf = replay_format.read(runs[2])
  manifest = json.loads(json.dumps(rf.manifest))
  manifest["target"]["gfx_target"] = "gfx90a"
  blobs = [bytes(rf.blob(i)) for i in range(len(manifest["blobs"]))]
  out = str(tmp_path / "other.sovreplay")
  replay_format.write(out, manifest, blobs)
  with pytest.raises(ReplayError, match="targets AMD 'gfx90a'"):
    replay.load(out)
