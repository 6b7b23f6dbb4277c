"""Replay files (tools/REPLAY_FORMAT.md): TinyJit.save on the CPU device, tools/replay.py loading and running them.

  - a small conv net's training step: replayed from the file (and continued in-process) for 18 steps after a 2-step
    capture, bit-identical to 20 eager steps, losses and weights;
  - `sov train-mnist --save-step`: a fresh process without the frontend continues from the file to the same weights
    as the training run;
  - patched input addresses are used (the old memory is poisoned with NaN), in TinyJit and in the loader;
  - refusals that change nothing: magic, newer version, corruption, truncation, another target, bad inputs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from frontend import Tensor, TinyJit, nn
from frontend.nn.optim import Adam
from frontend.nn.state import get_parameters, get_state_dict
from tools import replay, replay_format
from tools.replay import ReplayError
from tools.replay_format import ReplayFormatError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, CAPTURE, BATCH = 20, 2, 8


class SmallConvNet:
  def __init__(self):
    self.conv = nn.Conv2d(1, 4, 3)
    self.fc = nn.Linear(4 * 3 * 3, 5)

  def __call__(self, x: Tensor) -> Tensor:
    return self.fc(self.conv(x).relu().max_pool2d().flatten(1))


def make_training(seed: int = 0, model_class=None, lr: float = 0.01):
  """(model, optimizer, train_step) for `model_class` (default SmallConvNet) with Adam; the step realizes the loss
  and the optimizer's updates, as a TinyJit capture needs."""
  Tensor.manual_seed(seed)
  model = (model_class or SmallConvNet)()
  params = get_parameters(model)
  Tensor.realize(*params)
  opt = Adam(params, lr=lr)

  def train_step(x: Tensor, y: Tensor) -> Tensor:
    opt.zero_grad()
    loss = model(x).sparse_categorical_crossentropy(y)
    loss.backward()
    Tensor.realize(loss, *opt.schedule_step())
    return loss
  return model, opt, train_step


def batches(seed: int = 1):
  rng = np.random.default_rng(seed)
  xs = rng.standard_normal((STEPS, BATCH, 1, 8, 8)).astype(np.float32)
  ys = rng.integers(0, 5, (STEPS, BATCH)).astype(np.int32)
  return xs, ys


def save_names(model, opt) -> dict:
  return {"inputs": ("x", "y"), "outputs": ("loss",), "parameters": get_state_dict(model),
          "optimizer_state": get_state_dict(opt), "feeds": {"lr": opt.lr}}


@pytest.fixture(scope="module", autouse=True)
def on_the_cpu():
  """What this module checks is the CPU target's file (its shared objects, host buffers a test may poison, the refusals
  of another machine's CPU), so it runs on the CPU device whatever DEV the suite runs under; the NV target's round trip
  is hwtests/nv/test_replay_file.py, the AMD card's tests/test_replay_amd.py."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("DEV", "CPU")
    yield


@pytest.fixture(scope="module")
def eager_run():
  """20 eager steps of the conv net: (losses, final weights by name)."""
  before = Tensor.training
  Tensor.training = True
  model, _, train_step = make_training()
  xs, ys = batches()
  losses = [train_step(Tensor(xs[i]), Tensor(ys[i])).numpy().copy() for i in range(STEPS)]
  weights = {k: v.numpy().copy() for k, v in get_state_dict(model).items()}
  Tensor.training = before
  return losses, weights


@pytest.fixture(scope="module")
def saved(tmp_path_factory, eager_run):
  """The conv net's step saved after CAPTURE jitted steps, and the jitted run continued in-process to STEPS."""
  path = str(tmp_path_factory.mktemp("replay") / "step.sovreplay")
  before = Tensor.training
  Tensor.training = True
  model, opt, train_step = make_training()
  jit = TinyJit(train_step)
  xs, ys = batches()
  losses = [jit(Tensor(xs[i]), Tensor(ys[i])).numpy().copy() for i in range(CAPTURE)]
  jit.save(path, **save_names(model, opt))
  losses += [jit(Tensor(xs[i]), Tensor(ys[i])).numpy().copy() for i in range(CAPTURE, STEPS)]
  weights = {k: v.numpy().copy() for k, v in get_state_dict(model).items()}
  Tensor.training = before
  return path, losses, weights, jit


def assert_same_weights(got: dict, want: dict) -> None:
  for name, value in want.items():
    np.testing.assert_array_equal(np.asarray(got[name]).reshape(value.shape), value, err_msg=name)


# ---------------------------------------------------------------------------------------------------------------------
# equality with eager


def test_jit_continued_in_process_equals_eager(saved, eager_run):
  _, losses, weights, _ = saved
  eager_losses, eager_weights = eager_run
  np.testing.assert_array_equal(np.array(losses), np.array(eager_losses))
  assert_same_weights(weights, eager_weights)


@pytest.mark.parametrize("one_call", [True, False])
def test_loader_replay_equals_eager_over_remaining_steps(saved, eager_run, one_call):
  """The loader runs the file's launch list in one call of its pool (sov_pool_run_list), or launch by launch with a
  pool saved before that existed; both equal eager bit for bit."""
  path, _, _, _ = saved
  eager_losses, eager_weights = eager_run
  xs, ys = batches()
  r = replay.load(path)
  assert r.backend.run_list is not None, "a file saved now carries a pool with sov_pool_run_list"
  if not one_call:
    r.backend.run_list = None
  losses = []
  for i in range(CAPTURE, STEPS):
    r.step({"x": xs[i], "y": ys[i]})
    losses.append(r.output("loss").copy())
  np.testing.assert_array_equal(np.array(losses), np.array(eager_losses[CAPTURE:]))
  assert_same_weights(r.state(), eager_weights)


def test_file_describes_its_buffers(saved):
  path, _, _, _ = saved
  rf = replay_format.read(path)
  m = rf.manifest
  roles = {b["role"] for b in m["buffers"]}
  assert {"input", "output", "parameter", "optimizer_state", "intermediate"} <= roles
  assert {s["name"]: s["shape"] for s in m["inputs"]} == {"x": [BATCH, 1, 8, 8], "y": [BATCH], "lr": [1]}
  assert m["target"]["kind"] == "CPU" and m["target"]["abi"] == replay_format.CPU_ABI
  named = {b["name"]: b for b in m["buffers"] if b["role"] == "parameter"}
  assert named["conv.weight"]["shape"] == [4, 1, 3, 3] and named["conv.weight"]["init"] is not None
  assert all(b["init"] is None for b in m["buffers"] if b["role"] == "intermediate")
  for k in m["kernels"]:
    assert bytes(rf.blob(k["so_blob"])).startswith(b"\x7fELF")
    assert f"{k['entry']}_packed" in bytes(rf.blob(k["source_blob"])).decode()
  assert "launches per step" in replay_format.describe(rf)


# ---------------------------------------------------------------------------------------------------------------------
# patched input addresses


def poison(buf) -> None:
  buf.mem[:] = 0xFF  # every float32 word a NaN: a kernel that still reads this memory turns the result into NaN


def test_jit_reads_the_new_input_buffer_not_the_old():
  def f(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(1) + a.max(1)
  rng = np.random.default_rng(7)
  data = [(rng.standard_normal((4, 16)).astype(np.float32), rng.standard_normal((4, 16)).astype(np.float32))
          for _ in range(4)]
  jit = TinyJit(f)
  kept = []
  for a, b in data[:3]:
    kept.append((Tensor(a), Tensor(b)))
    jit(*kept[-1])
  for t in kept[-1]:
    poison(t._contiguous_buffer())  # the buffers the last replay read
  a, b = data[3]
  got = jit(Tensor(a), Tensor(b)).numpy()
  np.testing.assert_array_equal(got, f(Tensor(a), Tensor(b)).numpy())
  assert np.isfinite(got).all()


def test_loader_bind_patches_launch_arguments(saved, eager_run):
  path, _, _, _ = saved
  eager_losses, _ = eager_run
  xs, ys = batches()
  r = replay.load(path)
  first = r.alloc("x")
  r.bind("x", first)
  r.step({"x": xs[CAPTURE], "y": ys[CAPTURE]})
  second = r.alloc("x")
  r.bind("x", second)
  first[:] = 0xFF
  second.view(np.float32)[:] = xs[CAPTURE + 1].reshape(-1)  # written in place: no feed for x
  r.step({"y": ys[CAPTURE + 1]})
  assert np.array_equal(r.output("loss"), eager_losses[CAPTURE + 1])
  with pytest.raises(ReplayError, match="64-byte aligned"):
    r.bind("x", np.zeros(3, np.float32))


# ---------------------------------------------------------------------------------------------------------------------
# refusals


def repack(path: str, out: str, edit, check: bool = True) -> str:
  """Writes `out`: `path` with its manifest changed by `edit` and a valid checksum."""
  rf = replay_format.read(path)
  manifest = json.loads(json.dumps(rf.manifest))
  blobs = [bytes(rf.blob(i)) for i in range(len(manifest["blobs"]))]
  edit(manifest)
  del manifest["blobs"]
  with open(out, "wb") as f:
    f.write(replay_format.encode(manifest, blobs, check=check))
  return out


def patched_bytes(path: str, out: str, offset: int, data: bytes) -> str:
  raw = bytearray(open(path, "rb").read())
  raw[offset:offset + len(data)] = data
  open(out, "wb").write(bytes(raw))
  return out


def test_refuses_wrong_magic(saved, tmp_path):
  bad = patched_bytes(saved[0], str(tmp_path / "bad"), 0, b"PK\x03\x04")
  with pytest.raises(ReplayFormatError, match="not a .sovreplay file"):
    replay.load(bad)


def test_refuses_newer_version(saved, tmp_path):
  bad = patched_bytes(saved[0], str(tmp_path / "bad"), 8, (replay_format.FORMAT_VERSION + 1).to_bytes(4, "little"))
  with pytest.raises(ReplayFormatError, match="newer than this loader"):
    replay.load(bad)


def test_refuses_corrupted_and_truncated_files(saved, tmp_path):
  size = os.path.getsize(saved[0])
  flipped = bytes([open(saved[0], "rb").read()[size - 100] ^ 1])
  bad = patched_bytes(saved[0], str(tmp_path / "bad"), size - 100, flipped)
  with pytest.raises(ReplayFormatError, match="checksum mismatch"):
    replay.load(bad)
  short = str(tmp_path / "short")
  open(short, "wb").write(open(saved[0], "rb").read()[:-10])
  with pytest.raises(ReplayFormatError, match="truncated"):
    replay.load(short)


@pytest.mark.parametrize("edit, message", [
  (lambda m: m["target"].update(machine="aarch64"), "compiled for Linux aarch64"),
  (lambda m: m["target"].update(isa=m["target"]["isa"] + ["avx9000"]), "lacks: avx9000"),
  (lambda m: m["target"].update(abi="sovereign-c-kernel-0"), "ABI"),
  (lambda m: m.update(target={"kind": "AMD", "arch": "gfx1100"}), "targets AMD"),
])
def test_refuses_other_targets(saved, tmp_path, edit, message):
  bad = repack(saved[0], str(tmp_path / "other.sovreplay"), edit)
  with pytest.raises(ReplayError, match=message):
    replay.load(bad)


@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="this machine has an NVIDIA driver")
def test_refuses_nv_file_without_nv(saved, tmp_path):
  target = {"kind": "NV", "arch": "sm_90", "generation": "Hopper", "qmd_version": "V04_00", "compute_class": 0xCBC0}
  bad = repack(saved[0], str(tmp_path / "nv.sovreplay"), lambda m: m.update(target=target))
  with pytest.raises(ReplayError, match="no /dev/nvidiactl"):
    replay.load(bad)


def test_refuses_inconsistent_manifest(saved, tmp_path):
  bad = repack(saved[0], str(tmp_path / "bad"), lambda m: m["launches"][0]["args"].append(0), check=False)
  with pytest.raises(ReplayFormatError, match="inconsistent manifest: launch 0 passes"):
    replay.load(bad)


def test_refuses_params_without_written_flags(saved, tmp_path):
  bad = repack(saved[0], str(tmp_path / "bad"), lambda m: m["kernels"][0]["params"][0].pop("written"), check=False)
  with pytest.raises(ReplayFormatError, match="each needs a boolean 'written'"):
    replay.load(bad)


def test_launch_order_follows_the_buffers_each_launch_writes_and_reads(saved):
  """The loader's launch order from the file alone equals the order the capture's own buffers give."""
  from frontend.realize import exec_dependencies
  rf = replay_format.read(saved[0])
  assert replay.launch_order(rf.manifest) == exec_dependencies(saved[3].captured)


def test_refuses_bad_inputs_and_changes_nothing(saved, eager_run):
  xs, ys = batches()
  r = replay.load(saved[0])
  before = r.state()
  for feeds, message in [({"x": xs[0][:, :, :4], "y": ys[0]}, r"shape \(8, 1, 4, 8\), the step takes \(8, 1, 8, 8\)"),
                         ({"x": xs[0].astype(np.float64), "y": ys[0]}, "is float64, the step takes float32"),
                         ({"x": xs[0], "labels": ys[0]}, "'labels' is not a slot"),
                         ({"x": xs[0]}, r"inputs \['y'\] have no saved contents")]:
    with pytest.raises(ReplayError, match=message):
      r.step(feeds)
  assert r.steps == 0
  assert_same_weights(r.state(), before)


def test_cli_refuses_bad_npz_and_writes_nothing(saved, tmp_path, capsys):
  xs, ys = batches()
  npz = str(tmp_path / "bad.npz")
  np.savez(npz, x=xs[:3], y=ys[:3].astype(np.int64))
  out = tmp_path / "state.npz"
  rc = replay.main([saved[0], "--inputs", npz, "--save-state", str(out)])
  assert rc == 1 and not out.exists()
  assert "'y' is int64, the step takes int32" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# a fresh process: the command line, without the frontend


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


REPLAY_IN_FRESH_PROCESS = """
import sys
from tools import replay
rc = replay.main({argv!r})
leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('frontend', 'compiler'))
assert not leaked, leaked
sys.exit(rc)
"""


def test_cli_streams_inputs_in_a_process_without_frontend(saved, eager_run, tmp_path):
  path, _, _, _ = saved
  eager_losses, eager_weights = eager_run
  xs, ys = batches()
  npz, state = str(tmp_path / "inputs.npz"), str(tmp_path / "state.npz")
  np.savez(npz, x=xs[CAPTURE:], y=ys[CAPTURE:])
  proc = run_python(REPLAY_IN_FRESH_PROCESS.format(argv=[path, "--inputs", npz, "--save-state", state,
                                                         "--print-every", "6"]))
  assert proc.returncode == 0, proc.stderr
  assert f"{STEPS - CAPTURE} steps in" in proc.stdout and "step 18: loss" in proc.stdout
  assert f"loss {float(eager_losses[-1]):.6g}" in proc.stdout
  with np.load(state) as saved_state:
    assert_same_weights(dict(saved_state), eager_weights)


def test_sov_replay_info(saved, capsys):
  from tools import sov
  assert sov.main(["replay", saved[0], "--info"]) == 0
  out = capsys.readouterr().out
  assert "sovreplay format 1" in out and "input  x" in out and "parameter" in out


@pytest.mark.slow
def test_train_mnist_continues_bit_identically_in_a_fresh_process(tmp_path):
  pytest.importorskip("sklearn")
  from tools import train_mnist
  step_file, later = tmp_path / "step.sovreplay", tmp_path / "later.npz"
  config = train_mnist.TrainConfig(device="CPU", steps=8, batch_size=32, out=tmp_path, dataset="digits",
                                   save_step=step_file, save_at=5, save_inputs=later)
  result = train_mnist.train(config, log=lambda *a: None)
  with np.load(later) as inputs:
    assert inputs["x"].shape == (3, 32, 1, 28, 28) and inputs["lr"].shape == (3, 1)
  state = str(tmp_path / "state.npz")
  proc = run_python(REPLAY_IN_FRESH_PROCESS.format(argv=[str(step_file), "--inputs", str(later), "--save-state",
                                                         state]))
  assert proc.returncode == 0, proc.stderr
  from safetensors.numpy import load_file
  weights = load_file(str(result.weights_path))
  with np.load(state) as replayed:
    assert_same_weights(dict(replayed), weights)
  assert f"loss {result.losses[-1]:.6g}" in proc.stdout


def test_train_mnist_refuses_save_options_that_cannot_work(tmp_path):
  from tools import train_mnist
  for config, message in [(train_mnist.TrainConfig(save_step=tmp_path / "s", jit=False), "drop --no-jit"),
                          (train_mnist.TrainConfig(save_at=3), "go with --save-step"),
                          (train_mnist.TrainConfig(save_step=tmp_path / "s", steps=1), "at least 2 steps"),
                          (train_mnist.TrainConfig(save_step=tmp_path / "s", steps=4, save_at=5), "past the last")]:
    with pytest.raises(train_mnist.TrainError, match=message):
      train_mnist._check_save_options(config)


def test_save_before_capture_is_refused():
  from frontend.replay_save import ReplaySaveError
  jit = TinyJit(lambda a: a + 1)
  with pytest.raises(ReplaySaveError, match="nothing captured yet"):
    jit.save("/nonexistent/never-written.sovreplay")
