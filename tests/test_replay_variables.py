"""Replay files that hold Variables (format version 2, tools/REPLAY_FORMAT.md): a decode-like step whose kernels read
a position Variable (a cache row written at it, a mask and a scale from it), captured by TinyJit, saved, and run by
tools/replay.py with a new position fed every step, on the CPU, on the wave emulator and on a simulated AMD card.

The loader runs the same kernels with the same values as the in-process replay, so its outputs and the cache must
equal the jit's bit for bit; numpy checks the jit. Also: buffers a step writes only part of (an assign into a window)
keep their other contents in the file, and the refusals (bad values, bad manifests) change nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from compiler.ir import Variable
from frontend import Tensor, TinyJit
from frontend.replay_save import ReplaySaveError
from tests.test_amd_sim_frontend import amd  # noqa: F401  (the simulated-card device fixture, both cards)
from tools import replay, replay_format
from tools.replay import ReplayError
from tools.replay_format import ReplayFormatError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS, WIDTH, CAPTURE = 8, 4, 2
ORDER = [0, 1, 5, 2, 7, 3, 6, 4]  # positions per step: the first CAPTURE before saving, the rest after


def make_step(device: str):
  """(cache, step, reference): step(x, pos) writes x @ w into the cache's row `pos`, then returns the sum of rows
  0..pos scaled by pos, plus row pos; reference(cache, x, p) is the same in numpy (updating `cache`)."""
  rng = np.random.default_rng(7)
  w_np = rng.standard_normal((WIDTH, WIDTH)).astype(np.float32)
  w = Tensor(w_np, device=device).realize()
  cache = Tensor.zeros(ROWS, WIDTH, device=device).contiguous().realize()

  def step(x: Tensor, p) -> Tensor:
    cache.shrink(((p, p + 1), None)).assign(x @ w).realize()
    seen = Tensor.arange(ROWS, device=device).reshape(ROWS, 1) <= p
    return ((cache * seen).sum(0) * p + cache.shrink(((p, p + 1), None)).reshape(WIDTH)).realize()

  def reference(state: np.ndarray, x: np.ndarray, p: int) -> np.ndarray:
    state[p] = (x @ w_np)[0]
    return state[:p + 1].sum(0) * p + state[p]
  return cache, step, reference


def inputs():
  return np.random.default_rng(8).standard_normal((len(ORDER), 1, WIDTH)).astype(np.float32)


def jit_and_save(device: str, path: str) -> dict:
  """The step jitted over ORDER on `device`, saved after CAPTURE calls: outputs and cache after every call."""
  pos = Variable("pos", 0, ROWS - 1)
  cache, step, reference = make_step(device)
  jit, xs = TinyJit(step), inputs()
  outs, caches, want, state = [], [], [], np.zeros((ROWS, WIDTH), np.float32)
  for i, p in enumerate(ORDER):
    outs.append(jit(Tensor(xs[i], device=device), pos.bind(p)).numpy().copy())
    caches.append(cache.numpy().copy())
    want.append(reference(state, xs[i], p))
    if i + 1 == CAPTURE:
      jit.save(path, inputs=("x",), outputs=("out",))
  assert jit.cnt == 2 and len(jit.captures) == 1, "one capture serves every position"
  return {"outs": outs, "caches": caches, "want": want, "jit": jit}


def replay_rest(r) -> tuple[list, np.ndarray]:
  """The loaded file run over the positions after the capture: (outputs, the cache at the end)."""
  xs, outs = inputs(), []
  for i in range(CAPTURE, len(ORDER)):
    r.step({"x": xs[i], "pos": ORDER[i]})
    outs.append(r.output("out").copy())
  (cache,) = [v for v in r.state().values() if v.size == ROWS * WIDTH]  # w, the other state, is WIDTH x WIDTH
  return outs, cache.reshape(ROWS, WIDTH)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("replayvars") / "decode.sovreplay")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("DEV", "CPU")
    return path, jit_and_save("CPU", path)


def test_jit_matches_numpy(cpu_run):
  _, run = cpu_run
  for got, want in zip(run["outs"], run["want"]):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_file_is_version_2_with_the_variable(cpu_run):
  path, _ = cpu_run
  rf = replay_format.read(path)
  assert rf.version == 2
  assert rf.manifest["variables"] == [{"name": "pos", "lo": 0, "hi": ROWS - 1, "value": ORDER[CAPTURE - 1]}]
  readers = [k for k in rf.manifest["kernels"] if k.get("vars")]
  assert readers and all(k["vars"] == [0] for k in readers)
  # the cache is written only at a row, so its other rows are saved: state, with the rows written so far
  (cache,) = [b for b in rf.manifest["buffers"] if b["role"] == "state" and b["size"] == ROWS * WIDTH]
  want = np.zeros((ROWS, WIDTH), np.float32)
  want[ORDER[:CAPTURE]] = cpu_run[1]["caches"][CAPTURE - 1][ORDER[:CAPTURE]]
  np.testing.assert_array_equal(rf.array(cache).reshape(ROWS, WIDTH), want)
  assert "variable pos        int32 in [0, 7], saved value 1" in replay_format.describe(rf)


def test_loader_feeds_the_position_and_equals_the_jit(cpu_run):
  path, run = cpu_run
  outs, cache = replay_rest(replay.load(path))
  np.testing.assert_array_equal(np.array(outs), np.array(run["outs"][CAPTURE:]))
  np.testing.assert_array_equal(cache, run["caches"][-1])


def test_unfed_variable_keeps_its_saved_value(cpu_run):
  path, run = cpu_run
  r = replay.load(path)
  x = inputs()[CAPTURE - 1]
  r.step({"x": x})  # the capture's last call again: pos stays ORDER[CAPTURE - 1]
  np.testing.assert_array_equal(r.output("out"), run["outs"][CAPTURE - 1])


@pytest.mark.parametrize("feed, words", [
  ({"pos": ROWS}, r"Variable 'pos': value 8 is outside its bounds \[0, 7\]"),
  ({"pos": -1}, r"value -1 is outside its bounds \[0, 7\]"),
  ({"pos": np.float32(2)}, r"Variable 'pos': got float32 of shape \(\); it takes one integer"),
  ({"pos": np.array([1, 2])}, r"got int64 of shape \(2,\); it takes one integer"),
  ({"row": 1}, r"input 'row' is not a slot of .*; its inputs are \['x'\]; its Variables are \['pos'\]"),
])
def test_bad_values_are_refused_and_change_nothing(cpu_run, feed, words):
  path, run = cpu_run
  r = replay.load(path)
  with pytest.raises(ReplayError, match=words):
    r.step({"x": inputs()[CAPTURE], **feed})
  assert r.steps == 0 and r.values == {"pos": ORDER[CAPTURE - 1]}
  outs, cache = replay_rest(r)  # the file still runs as if nothing happened
  np.testing.assert_array_equal(np.array(outs), np.array(run["outs"][CAPTURE:]))
  with pytest.raises(ReplayError, match=r"'nope' is not a Variable of .*; its Variables are \['pos'\]"):
    r.set_var("nope", 1)


def test_cli_streams_positions_in_a_process_without_frontend(cpu_run, tmp_path):
  path, run = cpu_run
  npz, state = str(tmp_path / "feeds.npz"), str(tmp_path / "state.npz")
  np.savez(npz, x=inputs()[CAPTURE:], pos=np.array(ORDER[CAPTURE:]))  # int64 positions, one per step
  code = ("import sys\nfrom tools import replay\nrc = replay.main(sys.argv[1:])\n"
          "assert not [m for m in sys.modules if m.split('.')[0] in ('frontend', 'compiler')]\nsys.exit(rc)")
  proc = subprocess.run([sys.executable, "-c", code, path, "--inputs", npz, "--save-state", state], cwd=ROOT,
                        capture_output=True, text=True, timeout=120, env=dict(os.environ, DEV="CPU"))
  assert proc.returncode == 0, proc.stderr
  assert f"{len(ORDER) - CAPTURE} steps in" in proc.stdout
  with np.load(state) as saved:
    (cache,) = [saved[k] for k in saved.files if saved[k].size == ROWS * WIDTH]
  np.testing.assert_array_equal(cache.reshape(ROWS, WIDTH), run["caches"][-1])
  np.savez(npz, x=inputs()[CAPTURE:], pos=np.array([3, 9, 1, 2, 0, 5]))
  proc = subprocess.run([sys.executable, "-m", "tools.replay", path, "--inputs", npz], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 1 and "value 9 is outside its bounds [0, 7]" in proc.stderr, proc.stderr
  assert "steps in" not in proc.stdout, "a bad value anywhere in the npz refuses the run before its first step"


def rewritten(path: str, out: str, edit, version=None) -> str:
  rf = replay_format.read(path)
  manifest = json.loads(json.dumps(rf.manifest))
  edit(manifest)
  blobs = [bytes(rf.blob(i)) for i in range(len(manifest["blobs"]))]
  with open(out, "wb") as f:
    f.write(replay_format.encode(manifest, blobs, check=False, version=version))
  return out


@pytest.mark.parametrize("edit, version, words", [
  (lambda m: None, 1, "format version 1 has no Variables"),
  (lambda m: m["variables"][0].update(value=ROWS), None, "lo 0 <= value 8 <= hi 7 must be int32s"),
  (lambda m: m["variables"][0].update(hi=1 << 31), None, "must be int32s"),
  (lambda m: m["variables"].append(dict(m["variables"][0])), None, r"variable names repeat: \['pos', 'pos'\]"),
  (lambda m: [k.update(vars=[3]) for k in m["kernels"] if k.get("vars")], None, r"vars \[3\]: each an index"),
])
def test_inconsistent_variables_are_refused(cpu_run, tmp_path, edit, version, words):
  bad = rewritten(cpu_run[0], str(tmp_path / "bad.sovreplay"), edit, version)
  with pytest.raises(ReplayFormatError, match=words):
    replay_format.read(bad)


def test_a_newer_version_is_refused(cpu_run, tmp_path):
  bad = rewritten(cpu_run[0], str(tmp_path / "v3.sovreplay"), lambda m: None, version=replay_format.FORMAT_VERSION + 1)
  with pytest.raises(ReplayFormatError, match="format version 3 is newer than this loader's 2"):
    replay_format.read(bad)


def test_a_step_without_variables_stays_version_1(tmp_path, monkeypatch):
  """Also: a buffer written only in part by the step (a static slice assign) keeps its other rows in the file."""
  monkeypatch.setenv("DEV", "CPU")
  buf = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4)).contiguous().realize()
  jit = TinyJit(lambda x: (buf.shrink(((1, 2), None)).assign(x * 2).realize().sum() + buf.sum()).realize())
  xs = np.random.default_rng(9).standard_normal((4, 1, 4)).astype(np.float32)
  outs = [jit(Tensor(x)).numpy().copy() for x in xs[:2]]
  path = str(tmp_path / "slice.sovreplay")
  jit.save(path, inputs=("x",), outputs=("out",))
  outs += [jit(Tensor(x)).numpy().copy() for x in xs[2:]]
  assert replay_format.read(path).version == 1
  r = replay.load(path)
  for i in (2, 3):
    r.step({"x": xs[i]})
    np.testing.assert_array_equal(r.output("out"), outs[i])
  want = np.arange(12, dtype=np.float32).reshape(3, 4)
  want[1] = xs[3] * 2
  np.testing.assert_array_equal(outs[3], np.float32(want[1].sum() + want.sum()))


def test_two_variables_with_one_name_are_refused(tmp_path, monkeypatch):
  monkeypatch.setenv("DEV", "CPU")
  a, b = Variable("n", 0, 7), Variable("n", 0, 9)
  t = Tensor(np.ones(4, np.float32)).realize()
  jit = TinyJit(lambda x, u, v: ((x + u).realize() * v).realize())
  for k in (1, 2):
    jit(t, a.bind(k), b.bind(k))
  with pytest.raises(ReplaySaveError, match=r"one name and different bounds \{'n': \['n\[0..7\]', 'n\[0..9\]'\]\}"):
    jit.save(tmp_path / "clash.sovreplay")
  assert not (tmp_path / "clash.sovreplay").exists()


# ---- the AMD target: the wave emulator and the simulated cards --------------------------------------------------

@pytest.fixture(scope="module")
def amd_run(amd, tmp_path_factory):  # noqa: F811
  path = str(tmp_path_factory.mktemp("amdvars") / f"decode-{amd.card}.sovreplay")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("DEV", "AMD")
    return path, jit_and_save("AMD", path)


def test_amd_jit_matches_numpy(amd_run):
  for got, want in zip(amd_run[1]["outs"], amd_run[1]["want"]):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_amd_loader_on_the_card_equals_the_jit(amd, amd_run):  # noqa: F811
  path, run = amd_run
  r = replay.load(path, amd_device=amd.dev)
  assert isinstance(r.backend, replay.AMDCardBackend)
  outs, cache = replay_rest(r)
  np.testing.assert_array_equal(np.array(outs), np.array(run["outs"][CAPTURE:]))
  np.testing.assert_array_equal(cache, run["caches"][-1])


def test_amd_loader_on_the_emulator_equals_the_jit(amd_run, monkeypatch):
  path, run = amd_run
  monkeypatch.delenv("AMD_SIM", raising=False)
  r = replay.load(path)
  assert isinstance(r.backend, replay.AMDEmulatorBackend)
  outs, cache = replay_rest(r)
  np.testing.assert_array_equal(np.array(outs), np.array(run["outs"][CAPTURE:]))
  np.testing.assert_array_equal(cache, run["caches"][-1])
