"""Frontend ops on DEV=AMD with AMD_SIM: a simulated Navi31 (gfx1100) and Navi48 (gfx1201) booted through the
unmodified AM driver, buffers in the card's GART-mapped VRAM, each kernel an RDNA code object uploaded with GpuKernel
and dispatched as PM4 on the compute queue (the simulated MEC runs it on the wave emulator).

Checks against numpy from fresh random data (elementwise, reductions, softmax, matmul), that every launch went
through the card's queue (its timeline signal advances), and that TinyJit replays a step as one indirect buffer
(one queue submission per replay) with its input addresses patched. Needs AM_FIRMWARE_DIR like tests/test_am_queues.py
(the `fw_dir` fixture skips without it locally, fails under CI=true).
"""
from __future__ import annotations

import numpy as np
import pytest

from compiler.dtypes import dtypes
from frontend import Tensor
from frontend.device import Device
from frontend.jit import TinyJit
from frontend.realize import kernel_cache
from frontend.runtime.amd import AMDCardRuntime, AMDGraph
from tests.conftest import assert_close, random_array

CARDS = {"navi31": "gfx1100", "navi48": "gfx1201"}


def forget_amd_kernels() -> None:
  """Drop what the frontend keeps per AMD device between tests: compiled kernels and the random-number state (whose
  counters live on the device, so Tensor.manual_seed would realize them on an AMD no longer opened)."""
  for key in [k for k in kernel_cache if k[0] == "AMD"]:
    del kernel_cache[key]
  Tensor._rng_counters.pop("AMD", None)
  for key in [k for k in Tensor._rng_index if k[1] == "AMD"]:
    del Tensor._rng_index[key]


@pytest.fixture(scope="module", params=list(CARDS))
def amd(request, fw_dir):
  """The AMD device on the simulated card, for these tests only: afterwards the registry holds what it held before
  and the AMD kernels compiled for this card are forgotten (the kernel cache is keyed by device kind, not target)."""
  before = Device._opened.pop("AMD", None)
  forget_amd_kernels()
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("AMD_SIM", request.param)
    mp.setenv("AM_FIRMWARE_DIR", fw_dir)
    mp.delenv("AMD_EMULATE", raising=False)
    runtime = Device["AMD"]
  assert isinstance(runtime, AMDCardRuntime) and runtime.target == CARDS[request.param]
  card = runtime.dev.pci   # booted once per process (boot_sim_card): only hazards found by these tests count
  seen = len(card.hazards)
  yield runtime
  Device._opened.pop("AMD", None)
  if before is not None:
    Device._opened["AMD"] = before
  forget_amd_kernels()
  assert card.hazards[seen:] == [], "dispatches without a barrier between them touched the same memory"


def on_amd(*arrays) -> list[Tensor]:
  return [Tensor(a, device="AMD") for a in arrays]


def run_on_queue(amd, fn):
  """fn()'s result as numpy, asserting that kernels were submitted to the card's compute queue meanwhile."""
  before = amd.queue.signal.last
  out = fn().numpy()
  assert amd.queue.signal.last > before, "no submission reached the card's compute queue"
  assert amd.queue.signal.value() == amd.queue.signal.last
  return out


def test_elementwise(amd, rng):
  a, b = random_array(rng, (37, 29), dtypes.float32), random_array(rng, (37, 29), dtypes.float32)
  a64, b64 = a.astype(np.float64), b.astype(np.float64)
  got = run_on_queue(amd, lambda: (lambda x, y: ((x + y) * 0.5 - y).relu() * x + y.exp())(*on_amd(a, b)))
  assert_close(got, np.maximum((a64 + b64) * 0.5 - b64, 0) * a64 + np.exp(b64), dtypes.float32, scale=4)


@pytest.mark.parametrize("shape", [(40, 300), (300, 7)], ids=str)
def test_sum_reduction(amd, rng, shape):
  x = random_array(rng, shape, dtypes.float32)
  got = run_on_queue(amd, lambda: on_amd(x)[0].sum(1))
  assert_close(got, x.astype(np.float64).sum(1), dtypes.float32, scale=8)


def test_softmax(amd, rng):
  x = random_array(rng, (3, 5, 200), dtypes.float32).astype(np.float64)
  e = np.exp(x - x.max(-1, keepdims=True))
  got = run_on_queue(amd, lambda: on_amd(x.astype(np.float32))[0].softmax(-1))
  assert_close(got, e / e.sum(-1, keepdims=True), dtypes.float32, scale=8)


def test_matmul(amd, rng):
  a, b = random_array(rng, (33, 17), dtypes.float32), random_array(rng, (17, 65), dtypes.float32)
  got = run_on_queue(amd, lambda: (lambda x, y: (x @ y).relu())(*on_amd(a, b)))
  assert_close(got, np.maximum(a.astype(np.float64) @ b, 0), dtypes.float32, scale=10)


def test_tinyjit_replays_one_indirect_buffer(amd, rng):
  @TinyJit
  def step(x, y):
    return ((x @ y.T).softmax(-1).sum(axis=0) + x.max(axis=1)).realize()   # several kernels

  for i in range(5):
    a, b = random_array(rng, (8, 16), dtypes.float32), random_array(rng, (8, 16), dtypes.float32)
    x, y = on_amd(a, b)
    x.realize(), y.realize()
    before = amd.queue.signal.last
    got = step(x, y).numpy()
    logits = a.astype(np.float64) @ b.T
    e = np.exp(logits - logits.max(-1, keepdims=True))
    assert_close(got, (e / e.sum(-1, keepdims=True)).sum(axis=0) + a.max(axis=1), dtypes.float32, scale=8)
    if i >= 2:  # replays: the whole step is one submission (one INDIRECT_BUFFER) to the compute queue
      assert isinstance(step.graph, AMDGraph)
      assert amd.queue.signal.last == before + 1
  assert step.launches == 3 * len(step.captured) and len(step.captured) >= 2


def test_tinyjit_patches_variables_in_the_indirect_buffer(amd, rng):
  """A step whose kernels read a Variable (a value and a window start): replays rewrite the changed kernarg values
  (AMDGraph.set_var) and resubmit the one indirect buffer; nothing compiles after the capture."""
  from frontend import Variable
  from frontend.realize import STATS
  pos = Variable("pos", 0, 15)
  table = random_array(rng, (16, 8), dtypes.float32)
  (t,) = on_amd(table)
  t.realize()

  @TinyJit
  def step(x, p):
    return ((t.shrink(((p, p + 1), None)) * p + x) * (Tensor.arange(8, device="AMD") < p)).realize()

  compiles = None
  for i, p in enumerate((3, 9, 0, 15, 9, 4)):
    a = random_array(rng, (1, 8), dtypes.float32)
    (x,) = on_amd(a)
    x.realize()
    before = amd.queue.signal.last
    got = step(x, pos.bind(p)).numpy()
    want = (table[p:p + 1].astype(np.float64) * p + a) * (np.arange(8) < p)
    assert_close(got, want, dtypes.float32, scale=4)
    if i >= 2:
      assert isinstance(step.graph, AMDGraph) and amd.queue.signal.last == before + 1
      assert STATS["compiles"] == compiles
    compiles = STATS["compiles"]


def test_tinyjit_patches_each_variable_of_a_launch(amd, rng):
  """Two Variables read by several launches (a row picked at one, a shift that may be negative, a reduction that reads
  both): AMDGraph.set_var patches the k-th by-value kernarg of each launch (after the pointers), so replays with any
  mix of new values match numpy from one graph, one submission each, nothing compiled after the capture."""
  from frontend import Variable
  from frontend.realize import STATS
  row, shift = Variable("row", 0, 11), Variable("shift", -7, 7)
  table = random_array(rng, (12, 24), dtypes.float32)
  (t,) = on_amd(table)
  t.realize()

  @TinyJit
  def step(x, r, s):
    picked = (Tensor.arange(12, device="AMD").reshape(12, 1) == r).where(t, 0.0).sum(0)   # table[r]
    return ((picked + x * s).realize() * (Tensor.arange(24, device="AMD") < r) - s).sum().realize()

  graph, compiles = None, None
  for i, (r, s) in enumerate(((2, 3), (5, -7), (11, 0), (0, 7), (11, -1), (4, 4))):
    a = random_array(rng, (24,), dtypes.float32)
    (x,) = on_amd(a)
    x.realize()
    before = amd.queue.signal.last
    got = step(x, row.bind(r), shift.bind(s)).numpy()
    want = ((table[r].astype(np.float64) + a * s) * (np.arange(24) < r) - s).sum()
    assert_close(got, want, dtypes.float32, scale=8)
    if i >= 2:
      assert isinstance(step.graph, AMDGraph) and amd.queue.signal.last == before + 1
      assert step.graph is (graph or step.graph) and STATS["compiles"] == compiles
      graph = step.graph
      assert sum(len(item.info.vars) for item in step.captured) >= 3
    compiles = STATS["compiles"]
