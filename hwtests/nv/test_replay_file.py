"""Replay files on the GPU (tools/REPLAY_FORMAT.md, NV target): a small conv net's training step captured by TinyJit
on DEV=NV, saved, then run by tools/replay.py through nvdrv alone (cubins loaded by nvdrv.program.Program, the launch
list built into one nvdrv.replay.CommandBuffer):

  stage 1  the file: NV target facts (sm_90, Hopper, QMD V04_00), cubins, launch geometry
  stage 2  loaded on the frontend's own NVDevice: 18 steps bit-identical to the in-process TinyJit continuation
  stage 3  a fresh process without the frontend (`python -m tools.replay`): the same weights
  stage 4  a rebound input (new GPUMemory patched into the constant banks) is read, the old one is not
  stage 5  a file whose compute class differs from the GPU's is refused before anything is loaded
  stage 6  a step that reads a Variable (format version 2): a new position per step, patched into the constant banks

Run: python -m pytest -q hwtests/nv/test_replay_file.py (skips without /dev/nvidiactl).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS, CAPTURE, BATCH = 20, 2, 8


@pytest.fixture(scope="module")
def nv(dev):
  """The frontend's NV runtime, with DEV=NV for tensors created in this module."""
  from frontend.device import Device
  before = os.environ.get("DEV")
  os.environ["DEV"] = "NV"
  yield Device["NV"]
  if before is None:
    os.environ.pop("DEV", None)
  else:
    os.environ["DEV"] = before


def batches():
  rng = np.random.default_rng(1)
  return (rng.standard_normal((STEPS, BATCH, 1, 8, 8)).astype(np.float32),
          rng.integers(0, 5, (STEPS, BATCH)).astype(np.int32))


@pytest.fixture(scope="module")
def saved(nv, tmp_path_factory):
  from frontend import Tensor, TinyJit, nn
  from frontend.nn.optim import Adam
  from frontend.nn.state import get_parameters, get_state_dict
  path = str(tmp_path_factory.mktemp("nvreplay") / "step.sovreplay")
  Tensor.training = True
  Tensor.manual_seed(0)
  conv, fc = nn.Conv2d(1, 4, 3), nn.Linear(36, 5)
  model = {"conv": conv, "fc": fc}
  params = get_parameters(model)
  Tensor.realize(*params)
  opt = Adam(params, lr=0.01)

  def step(x, y):
    opt.zero_grad()
    loss = fc(conv(x).relu().max_pool2d().flatten(1)).sparse_categorical_crossentropy(y)
    loss.backward()
    Tensor.realize(loss, *opt.schedule_step())
    return loss
  jit = TinyJit(step)
  xs, ys = batches()
  losses = [float(jit(Tensor(xs[i]), Tensor(ys[i])).item()) for i in range(CAPTURE)]
  jit.save(path, inputs=("x", "y"), outputs=("loss",), parameters=get_state_dict(model),
           optimizer_state=get_state_dict(opt), feeds={"lr": opt.lr})
  losses += [float(jit(Tensor(xs[i]), Tensor(ys[i])).item()) for i in range(CAPTURE, STEPS)]
  weights = {k: v.numpy().copy() for k, v in get_state_dict(model).items()}
  Tensor.training = False
  return path, losses, weights


def test_stage1_file_targets_this_gpu(saved, dev):
  from tools import replay_format
  rf = replay_format.read(saved[0])
  target = rf.manifest["target"]
  assert (target["kind"], target["arch"], target["qmd_version"]) == ("NV", "sm_90", dev.info.qmd_version)
  assert target["compute_class"] == dev.info.compute_class
  for k in rf.manifest["kernels"]:
    assert bytes(rf.blob(k["cubin_blob"])).startswith(b"\x7fELF") and len(k["grid"]) == len(k["block"]) == 3


def test_stage2_loaded_on_the_same_device_matches_jit(saved, nv):
  from tools import replay
  path, losses, weights = saved
  xs, ys = batches()
  r = replay.load(path, nv_device=nv.dev)
  got = []
  for i in range(CAPTURE, STEPS):
    r.step({"x": xs[i], "y": ys[i]})
    got.append(float(r.output("loss")))
  assert got == losses[CAPTURE:]
  state = r.state()
  for name, value in weights.items():
    np.testing.assert_array_equal(state[name].reshape(value.shape), value, err_msg=name)


def test_stage3_fresh_process_without_frontend(saved, tmp_path):
  path, _, weights = saved
  xs, ys = batches()
  npz, out = str(tmp_path / "in.npz"), str(tmp_path / "state.npz")
  np.savez(npz, x=xs[CAPTURE:], y=ys[CAPTURE:])
  code = ("import sys\nfrom tools import replay\n"
          f"rc = replay.main([{path!r}, '--inputs', {npz!r}, '--save-state', {out!r}])\n"
          "assert not [m for m in sys.modules if m.split('.')[0] in ('frontend', 'compiler')]\nsys.exit(rc)\n")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  with np.load(out) as state:
    for name, value in weights.items():
      np.testing.assert_array_equal(state[name].reshape(value.shape), value, err_msg=name)


def test_stage4_rebound_input_is_read(saved, nv):
  from tools import replay
  path, losses, _ = saved
  xs, ys = batches()
  r = replay.load(path, nv_device=nv.dev)
  first = r.alloc("x")
  r.bind("x", first)
  r.step({"x": xs[CAPTURE], "y": ys[CAPTURE]})
  second = r.alloc("x")
  r.bind("x", second)
  nv.dev.copyin(first, np.full(xs[0].size, np.nan, np.float32))
  r.step({"x": xs[CAPTURE + 1], "y": ys[CAPTURE + 1]})
  assert float(r.output("loss")) == losses[CAPTURE + 1]


def test_stage5_other_gpu_is_refused(saved, nv, tmp_path):
  from tools import replay, replay_format
  rf = replay_format.read(saved[0])
  manifest = json.loads(json.dumps(rf.manifest))
  blobs = [bytes(rf.blob(i)) for i in range(len(manifest.pop("blobs")))]
  manifest["target"]["compute_class"] = 0xC7C0  # Ampere GA10x
  bad = str(tmp_path / "ampere.sovreplay")
  with open(bad, "wb") as f:
    f.write(replay_format.encode(manifest, blobs))
  with pytest.raises(replay.ReplayError, match="compute class 0xc7c0"):
    replay.load(bad, nv_device=nv.dev)


def test_stage6_variables_round_trip(nv, tmp_path):
  """Format version 2 on the GPU: tests/test_replay_variables.py's decode-like step (a cache row written at Variable
  `pos`, a mask and a scale from it), jitted on DEV=NV and saved; loaded through nvdrv, each step's new position
  goes into the constant banks (CommandBuffer.int_setter), and outputs and cache equal the in-process replay's, bit
  for bit."""
  from tests.test_replay_variables import CAPTURE as SAVED_AT
  from tests.test_replay_variables import jit_and_save, replay_rest
  from tools import replay, replay_format
  path = str(tmp_path / "decode.sovreplay")
  run = jit_and_save("NV", path)
  for got, want in zip(run["outs"], run["want"]):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert replay_format.read(path).version == 2
  r = replay.load(path, nv_device=nv.dev)
  outs, cache = replay_rest(r)
  np.testing.assert_array_equal(np.array(outs), np.array(run["outs"][SAVED_AT:]))
  np.testing.assert_array_equal(cache, run["caches"][-1])
