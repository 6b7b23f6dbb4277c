"""Dependency barriers in AMD command-queue replay (am.queues.launches.LaunchList `after=`) on the simulated Navi31 and
Navi48, and the simulated card's hazard detector (am/simcard/hazards.py) that makes a missing barrier visible.

The barrier layout is read back from the recorded indirect buffer with the PM4 decoder and checked against the
dependency lists by two properties that pin it down: every launch a dispatch waits for lies before a barrier that
precedes it, and every barrier is needed by the dispatch after it. Results are checked against numpy, a TinyJit
training step against eager (bit for bit) and a float64 numpy Adam, a .sovreplay round trip against eager. Needs
AM_FIRMWARE_DIR like tests/test_am_queues.py.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from am.generated import pm4 as pm4_facts
from am.pm4.decode import parse_pm4
from am.queues.dispatch import Buffer
from am.queues.kernel import GpuKernel
from am.queues.launches import LaunchList
from am.queues.samples import vector_add_code_object
from am.ip.pte import PAGE
from am.simcard.hazards import DispatchHazard, Footprint, find
from frontend import Tensor, nn
from frontend.nn.optim import Adam
from frontend.nn.state import get_parameters, get_state_dict
from frontend.realize import exec_dependencies
from frontend.runtime.amd import AMDGraph
from tests.test_am_queues import booted_card
from tests.test_amd_sim_frontend import amd  # noqa: F401  (the simulated-card device fixture, both cards)
from tests.test_replay_amd import jit_and_save
from tools import replay
from tools.replay_format import launch_dependencies

N = 256           # float32 elements per buffer: 4 workgroups of 64
GRID, BLOCK = (N // 64,), (64,)


@pytest.fixture(scope="module", params=["navi31", "navi48"])
def card_dev(request, fw_dir):
  dev = booted_card(request.param, fw_dir)
  dev.kern = GpuKernel(dev, vector_add_code_object(dev.caps.gfx_target), "vector_add")
  dev.card.kernel_names[dev.kern.entry] = "vector_add"
  return dev


@pytest.fixture
def dev(card_dev):
  """The module's booted card; a test that makes hazards on purpose clears them, any other one fails here."""
  card_dev.card.raise_on_hazard = False
  yield card_dev
  card_dev.card.raise_on_hazard = False
  found, card_dev.card.hazards[:] = list(card_dev.card.hazards), []
  assert found == [], "dispatches without a barrier between them touched the same memory"


def buffers(dev, rng, count: int) -> list[Buffer]:
  return [Buffer(dev, 4 * N).write(rng.standard_normal(N).astype(np.float32)) for _ in range(count)]


def run_adds(dev, adds, bufs, after_lists=None) -> LaunchList:
  """vector_add launches `adds` = [(a, b, out) buffer indices]; `after_lists` default: launch_dependencies of what each
  reads and writes. Submits once and waits."""
  if after_lists is None:
    after_lists = launch_dependencies([([out], [a, b]) for a, b, out in adds])
  launches = LaunchList(dev, dev.gfx.queue)
  for (a, b, out), after in zip(adds, after_lists):
    launches.add(dev.kern, [bufs[a].va, bufs[b].va, bufs[out].va], GRID, BLOCK, after=after)
  dev.gfx.queue.wait(launches.submit())
  return launches


def numpy_adds(adds, values: list[np.ndarray]) -> list[np.ndarray]:
  values = list(values)
  for a, b, out in adds:
    values[out] = values[a] + values[b]
  return values


def check_results(bufs, adds, initial) -> None:
  want = numpy_adds(adds, initial)
  for i, buf in enumerate(bufs):
    np.testing.assert_array_equal(buf.read(np.float32, N), want[i], err_msg=f"buffer {i}")


def barrier_layout(dev, launches: LaunchList) -> list[bool]:
  """Per dispatch of the recorded IB (read back from GPU memory, decoded), whether a barrier (CS_PARTIAL_FLUSH then
  ACQUIRE_MEM) comes right before it; asserts the framing: ACQUIRE_MEM first, a partial flush last, nothing else."""
  gen = dev.caps.gfx_generation
  words = launches.cb.buf.read(np.uint32, len(launches.cb.stream)).tolist()
  flush = pm4_facts.VGT_EVENT_TYPE[gen]["CS_PARTIAL_FLUSH"]
  tokens = ""
  for p in parse_pm4(words, gen):
    assert not p.note, f"{p.name}: {p.note}"
    if p.name == "PACKET3_EVENT_WRITE":
      event = {name: fields for name, _, fields in p.dwords}["EVENT_CNTL"]["EVENT_TYPE"]
      assert event == flush, f"EVENT_WRITE of event {event}, not CS_PARTIAL_FLUSH ({flush})"
      tokens += "F"
    else:
      tokens += {"PACKET3_ACQUIRE_MEM": "A", "PACKET3_DISPATCH_DIRECT": "D"}.get(p.name, "")
  assert re.fullmatch(r"AD(?:(?:FA)?D)*F", tokens), tokens
  return [False] + [step == "FAD" for step in re.findall(r"(?:FA)?D", tokens[2:-1])]


def check_barriers(barrier_before: list[bool], after_lists: list) -> None:
  """Every launch in after[j] is dispatched before a barrier that precedes j (needed), and each barrier has a
  launch of after[j] dispatched since the barrier before it (no more than needed)."""
  window = 0   # first dispatch since the last barrier
  for j, after in enumerate(after_lists):
    if barrier_before[j]:
      assert any(i >= window for i in after), f"barrier before dispatch {j} waits for none of {after}"
      window = j
    late = [i for i in after if i >= window]
    assert not late, f"dispatch {j} may overlap launches {late} it must wait for (after={after})"


def test_independent_launches_get_no_barrier(dev, rng):
  bufs = buffers(dev, rng, 12)
  initial = [b.read(np.float32, N) for b in bufs]
  adds = [(3 * k, 3 * k + 1, 3 * k + 2) for k in range(4)]
  launches = run_adds(dev, adds, bufs)
  assert launches.barriers == 0
  assert barrier_layout(dev, launches) == [False] * 4
  check_results(bufs, adds, initial)


def test_a_chain_gets_one_barrier_per_edge(dev, rng):
  bufs = buffers(dev, rng, 6)
  initial = [b.read(np.float32, N) for b in bufs]
  adds = [(0, 1, 2), (2, 3, 4), (4, 5, 1)]   # the last also overwrites an input of the first (write after read)
  launches = run_adds(dev, adds, bufs)
  assert launch_dependencies([([out], [a, b]) for a, b, out in adds]) == [[], [0], [0, 1]]
  assert launches.barriers == 2
  assert barrier_layout(dev, launches) == [False, True, True]
  check_results(bufs, adds, initial)


def test_a_diamond_lets_its_two_sides_overlap(dev, rng):
  bufs = buffers(dev, rng, 8)
  initial = [b.read(np.float32, N) for b in bufs]
  adds = [(0, 1, 2), (2, 3, 4), (2, 5, 6), (4, 6, 7)]   # t; u = t + c and v = t + d side by side; w = u + v
  launches = run_adds(dev, adds, bufs)
  assert launches.barriers == 2
  assert barrier_layout(dev, launches) == [False, True, False, True]
  check_results(bufs, adds, initial)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_barriers_sit_where_random_dependencies_need_them(dev, seed):
  rng = np.random.default_rng(seed)
  bufs = buffers(dev, rng, 3)
  count = 40
  after_lists = [sorted(rng.choice(j, size=rng.integers(0, min(j, 3) + 1), replace=False).tolist()) if j else []
                 for j in range(count)]
  launches = LaunchList(dev, dev.gfx.queue)
  for after in after_lists:
    launches.add(dev.kern, [b.va for b in bufs], GRID, BLOCK, after=after)
  launches.finalize()   # recorded only: these lists do not match what the launches touch
  layout = barrier_layout(dev, launches)
  check_barriers(layout, after_lists)
  assert sum(layout) == launches.barriers < count - 1


def test_after_none_waits_for_every_earlier_launch(dev, rng):
  bufs = buffers(dev, rng, 4)
  initial = [b.read(np.float32, N) for b in bufs]
  adds = [(0, 1, 2), (0, 1, 3), (2, 3, 0)]
  launches = run_adds(dev, adds, bufs, after_lists=[None] * 3)
  assert launches.barriers == 2 and barrier_layout(dev, launches) == [False, True, True]
  check_results(bufs, adds, initial)


@pytest.mark.parametrize("after, bad", [([1], r"\[1\]"), ([-1], r"\[-1\]"), ([0, 5], r"\[5\]"),
                                        (["0"], "'0'"), ("0", "'0'"), ([True], "True"), (3, "3"), ([0.0], "0.0")])
def test_after_names_earlier_launches_only(dev, rng, after, bad):
  bufs = buffers(dev, rng, 3)
  launches = LaunchList(dev, dev.gfx.queue)
  launches.add(dev.kern, [b.va for b in bufs], GRID, BLOCK)
  with pytest.raises(ValueError, match=rf"launch 1: after=.*{bad}"):
    launches.add(dev.kern, [b.va for b in bufs], GRID, BLOCK, after=after)


@pytest.mark.parametrize("adds, kind, shared", [
    ([(0, 1, 2), (2, 3, 4)], "read after write", 2),    # the second reads what the first writes
    ([(0, 1, 2), (3, 4, 2)], "write after write", 2),   # both write buffer 2
    ([(0, 1, 2), (3, 4, 0)], "write after read", 0)])   # the second overwrites what the first reads
def test_a_missing_barrier_is_a_hazard_on_the_card(dev, rng, adds, kind, shared):
  bufs = buffers(dev, rng, 5)
  initial = [b.read(np.float32, N) for b in bufs]
  run_adds(dev, adds, bufs, after_lists=[[], []])
  found, dev.card.hazards[:] = list(dev.card.hazards), []
  assert len(found) == 1, found
  assert found[0].startswith(f"{kind} on HQD me1 ")
  named = rf"dispatch \d+ \(vector_add at 0x{dev.kern.entry:x}, grid \(4, 1, 1\) x block \(64, 1, 1\), IB 0x"
  assert re.search(rf"{named}.* page 0x{bufs[shared].va:x}, which {named}", found[0]), found[0]
  check_results(bufs, adds, initial)   # the simulated card runs one dispatch after another: still right
  run_adds(dev, adds, bufs)            # the dependency list puts the barrier back: no hazard (the fixture checks)


def test_a_hazard_can_raise(dev, rng):
  bufs = buffers(dev, rng, 5)
  initial = [b.read(np.float32, N) for b in bufs]
  dev.card.raise_on_hazard = True
  with pytest.raises(DispatchHazard, match=r"(?s)1 dispatch hazard.*\nread after write on HQD"):
    run_adds(dev, [(0, 1, 2), (2, 3, 4)], bufs, after_lists=[[], []])
  dev.card.hazards.clear()
  dev.gfx.queue.wait()   # the card went on: the queue still reaches its signal
  check_results(bufs, [(0, 1, 2), (2, 3, 4)], initial)


def test_hazards_compare_read_and_written_pages():
  """hazards.find: each kind from the page sets alone, naming the lowest shared page; reads alone never conflict."""
  def footprint(reads, writes):
    f = Footprint()
    f.pages[False].update(reads)
    f.pages[True].update(writes)
    return f
  earlier = ("A", footprint({1, 2, 9}, {5, 7}))
  assert find(earlier, ("B", footprint({1, 2, 3}, {4})), "Q") == []
  found = find(earlier, ("B", footprint({7, 8}, {9, 5, 2})), "Q")
  assert [line.split(" on ")[0] for line in found] == ["read after write", "write after write", "write after read"]
  assert [re.search(r"page (0x[0-9a-f]+)", line).group(1) for line in found] == [hex(7 * PAGE), hex(5 * PAGE),
                                                                                    hex(2 * PAGE)]
  assert found[0].startswith("read after write on Q: B reads") and "which A wrote" in found[0]


# ---- the frontend: a TinyJit training step on the card, and its .sovreplay ----
STEPS, CAPTURE, BATCH, LR = 4, 2, 8, 0.01


def make_training():
  Tensor.manual_seed(5)
  model = nn.Linear(6, 3)
  params = get_parameters(model)
  Tensor.realize(*params)
  opt = Adam(params, lr=LR)

  def train_step(x: Tensor, y: Tensor) -> Tensor:
    opt.zero_grad()
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    Tensor.realize(loss, *opt.schedule_step())
    return loss
  return model, opt, train_step


def batches():
  rng = np.random.default_rng(11)
  return (rng.standard_normal((STEPS, BATCH, 6)).astype(np.float32),
          rng.standard_normal((STEPS, BATCH, 3)).astype(np.float32))


def numpy_adam(weight, bias, xs, ys, b1=0.9, b2=0.999, eps=1e-8):
  """Losses and final (weight, bias) of the same steps in float64 numpy (torch.optim.Adam's rule)."""
  params = [weight.astype(np.float64), bias.astype(np.float64)]
  m, v = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
  losses = []
  for t, (x, y) in enumerate(zip(xs.astype(np.float64), ys.astype(np.float64)), start=1):
    err = x @ params[0].T + params[1] - y
    losses.append((err ** 2).mean())
    d = 2 * err / err.size
    for i, g in enumerate((d.T @ x, d.sum(0))):
      m[i] = b1 * m[i] + (1 - b1) * g
      v[i] = b2 * v[i] + (1 - b2) * g * g
      params[i] = params[i] - LR * (m[i] / (1 - b1 ** t)) / (np.sqrt(v[i] / (1 - b2 ** t)) + eps)
  return np.array(losses), params


@pytest.fixture(scope="module")
def trained(amd, tmp_path_factory):  # noqa: F811
  """Eager and TinyJit runs of the step on this card, the jit, the saved file and the numpy reference."""
  before = Tensor.training
  Tensor.training = True
  try:
    with pytest.MonkeyPatch.context() as mp:
      mp.setenv("DEV", "AMD")
      xs, ys = batches()
      model, _, step = make_training()
      start = [p.numpy().copy() for p in (model.weight, model.bias)]
      eager = [step(Tensor(xs[i], device="AMD"), Tensor(ys[i], device="AMD")).numpy().copy() for i in range(STEPS)]
      eager_weights = {k: v.numpy().copy() for k, v in get_state_dict(model).items()}
      path = str(tmp_path_factory.mktemp("deps") / f"linear-{amd.card}.sovreplay")
      jit, jitted, jit_weights = jit_and_save(*make_training(), xs, ys, path, CAPTURE)
  finally:
    Tensor.training = before
  return dict(eager=eager, eager_weights=eager_weights, jit=jit, jitted=jitted, jit_weights=jit_weights, path=path,
              reference=numpy_adam(*start, xs, ys))


def test_training_step_replays_with_dependency_barriers(amd, trained):  # noqa: F811
  np.testing.assert_array_equal(np.array(trained["jitted"]), np.array(trained["eager"]))
  for name, value in trained["eager_weights"].items():
    np.testing.assert_array_equal(trained["jit_weights"][name], value, err_msg=name)
  losses, (weight, bias) = trained["reference"]
  np.testing.assert_allclose(np.array(trained["eager"]).reshape(-1), losses, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(trained["eager_weights"]["weight"], weight, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(trained["eager_weights"]["bias"], bias, rtol=1e-4, atol=1e-6)
  jit = trained["jit"]
  assert isinstance(jit.graph, AMDGraph)
  launches = jit.graph.launches
  assert 0 < launches.barriers < len(launches.launches) - 1, (launches.barriers, len(launches.launches))
  check_barriers(barrier_layout(amd.dev, launches), exec_dependencies(jit.captured))


def test_the_same_step_without_barriers_shows_hazards(amd, trained):  # noqa: F811
  """The detector sees the training step's real dependencies: its launches with no `after` make hazards."""
  jit, card = trained["jit"], amd.dev.pci
  seen = len(card.hazards)
  launches = LaunchList(amd.dev, amd.queue)
  for item, addresses in zip(jit.captured, jit.graph.args):
    launches.add(item.program.kernel, addresses, item.program.grid, item.program.block, after=[])
  amd.queue.wait(launches.submit())
  found, card.hazards[seen:] = card.hazards[seen:], []
  assert found and all(" on HQD me1 " in line for line in found), found


def test_sovreplay_round_trip_on_the_card(amd, trained):  # noqa: F811
  r = replay.load(trained["path"], amd_device=amd.dev)
  assert isinstance(r.backend, replay.AMDCardBackend)
  launches = r.backend.launches
  assert 0 < launches.barriers < len(launches.launches) - 1
  check_barriers(barrier_layout(amd.dev, launches), replay.launch_order(r.file.manifest))
  xs, ys = batches()
  losses = []
  for i in range(CAPTURE, STEPS):
    r.step({"x": xs[i], "y": ys[i]})
    losses.append(r.output("loss").copy())
  np.testing.assert_array_equal(np.array(losses), np.array(trained["eager"][CAPTURE:]))
  for name, value in trained["eager_weights"].items():
    np.testing.assert_array_equal(np.asarray(r.state()[name]).reshape(value.shape), value, err_msg=name)
