"""TinyJit (frontend/jit.py): call 1 runs eagerly, call 2 captures the kernel launches, calls 3+ replay exactly the
captured launches with the new inputs' buffers swapped in, without scheduling or compiling the function's graph.
Results are compared with eager runs and numpy on fresh inputs at every call.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from compiler.dtypes import dtypes
from frontend import realize
from frontend.jit import JitError, TinyJit
from frontend.tensor import Tensor


@pytest.fixture
def rng(request):
  return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def arrays(rng, *shape):
  return rng.uniform(-2, 2, size=shape).astype(np.float32)


def multi_kernel(a: Tensor, b: Tensor) -> Tensor:
  """A function that launches several dependent kernels."""
  rows = (a * b).sum(1)
  scaled = (a + rows.reshape(-1, 1)).exp2()
  return scaled.max(1) + a.sum(1)


def multi_kernel_np(a, b):
  rows = (a * b).sum(1)
  return np.exp2(a + rows.reshape(-1, 1)).max(1) + a.sum(1)


class SchedulerSpy:
  """Stands in for frontend.realize.Scheduler and records what each schedule() call was asked for and produced."""

  def __init__(self, real):
    self.real = real
    self.calls: list[tuple[list, list]] = []

  def __call__(self, is_realized):
    spy = self
    sched = self.real(is_realized)
    schedule = sched.schedule

    def recording(targets):
      items = schedule(targets)
      spy.calls.append((list(targets), list(items)))
      return items
    sched.schedule = recording
    return sched


def eager_kernel_count(rng) -> int:
  before = realize.STATS["kernels"]
  multi_kernel(Tensor(arrays(rng, 4, 8)), Tensor(arrays(rng, 4, 8))).realize()
  return realize.STATS["kernels"] - before


def test_capture_then_replay(rng, monkeypatch):
  n_kernels = eager_kernel_count(rng)
  assert n_kernels >= 2
  jit = TinyJit(multi_kernel)
  for call in range(6):
    a, b = arrays(rng, 4, 8), arrays(rng, 4, 8)
    compiles, cache_size = realize.STATS["compiles"], len(realize.kernel_cache)
    spy = SchedulerSpy(realize.Scheduler)
    if call >= 2:
      monkeypatch.setattr(realize, "Scheduler", spy)
    inputs = [Tensor(a), Tensor(b)]
    input_nodes = [t.lazydata for t in inputs]
    out = jit(*inputs)
    monkeypatch.setattr(realize, "Scheduler", spy.real)
    got = out.numpy().copy()
    np.testing.assert_allclose(got, multi_kernel_np(a, b), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got, multi_kernel(Tensor(a), Tensor(b)).numpy())  # the same kernels as eager
    if call == 0:
      assert jit.captured == [] and jit.launches == 0
    elif call == 1:
      assert len(jit.captured) == n_kernels and jit.launches == 0
    else:
      assert jit.launches == (call - 1) * n_kernels
      assert realize.STATS["compiles"] == compiles and len(realize.kernel_cache) == cache_size
      for targets, items in spy.calls:  # only the inputs are realized (a no-op for buffers): no kernels scheduled
        assert all(any(t is n for n in input_nodes) for t in targets)
        assert all(item.kind == "alias" for item in items), [item.kind for item in items]


def test_replay_launches_the_captured_list(rng, monkeypatch):
  """Replay runs exactly the captured kernels: one by one, or (on a device with prebuilt command buffers, NV) as one
  resubmission of the graph and no per-kernel launches."""
  jit = TinyJit(multi_kernel)
  for _ in range(2):
    jit(Tensor(arrays(rng, 4, 8)), Tensor(arrays(rng, 4, 8)))
  captured = list(jit.captured)
  ran, graph_runs = [], []
  real_run = realize.ExecItem.run

  def recording_run(item):
    ran.append(item)
    return real_run(item)
  monkeypatch.setattr(realize.ExecItem, "run", recording_run)
  if jit.graph is not None:
    real_graph_run = jit.graph.run
    monkeypatch.setattr(jit.graph, "run", lambda: (graph_runs.append(1), real_graph_run())[1])
  for _ in range(2):
    ran.clear()
    graph_runs.clear()
    a, b = arrays(rng, 4, 8), arrays(rng, 4, 8)
    out = jit(Tensor(a), Tensor(b))
    np.testing.assert_allclose(out.numpy(), multi_kernel_np(a, b), rtol=1e-5, atol=1e-5)
    if jit.graph is None:
      assert len(ran) == len(captured)
      assert all(r is c for r, c in zip(ran, captured))
    else:
      assert (ran, graph_runs) == ([], [1])


def test_view_inputs_are_copied_per_call(rng):
  jit = TinyJit(lambda x: (x * 2 + 1).sum(0))
  for _ in range(4):
    a = arrays(rng, 5, 3)
    out = jit(Tensor(a).permute(1, 0))
    np.testing.assert_allclose(out.numpy(), (a.T * 2 + 1).sum(0), rtol=1e-5, atol=1e-5)


def test_each_input_signature_gets_its_own_capture(rng):
  """A new shape or dtype (a smaller last batch) is captured once, then replayed like the first: results match numpy
  at every call, the function body runs only while capturing, and each signature replays its own kernels."""
  bodies = []

  def f(x, y):
    bodies.append(x.shape)
    return (x * y).sum(1)
  jit = TinyJit(f)
  shapes = [(4, 8), (4, 8), (4, 8), (3, 8), (4, 8), (3, 8), (3, 8), (4, 8)]
  for shape in shapes:
    a, b = arrays(rng, *shape), arrays(rng, *shape)
    np.testing.assert_allclose(jit(Tensor(a), Tensor(b)).numpy(), (a * b).sum(1), rtol=1e-5, atol=1e-6)
  assert bodies == [(4, 8), (4, 8), (3, 8)], "warm-up, capture of (4, 8), capture of (3, 8); the rest replayed"
  assert len(jit.captures) == 2
  sizes = {len(c["captured"]) for c in jit.captures.values()}
  assert len(sizes) == 1 and jit.launches == 5 * sizes.pop(), "five replays, each of its signature's kernels"
  jit(Tensor(arrays(rng, 4, 8)).cast(dtypes.int32), Tensor(arrays(rng, 4, 8)).cast(dtypes.int32))
  assert len(jit.captures) == 3 and bodies[-1] == (4, 8), "a new dtype is a new signature"


def test_too_many_signatures_are_refused(rng):
  jit = TinyJit(lambda x: (x + 1).sum(1), max_captures=2)
  for rows in (4, 4, 5):
    jit(Tensor(arrays(rng, rows, 8)))
  with pytest.raises(JitError) as info:
    jit(Tensor(arrays(rng, 6, 8)))
  message = str(info.value)
  assert "(6, 8)" in message and "(4, 8)" in message and "(5, 8)" in message and "max_captures=2" in message
  got = jit(Tensor(np.ones((5, 8), np.float32))).numpy()
  np.testing.assert_array_equal(got, np.full(5, 16, np.float32), err_msg="the refusal left the captures usable")


def test_input_passed_twice_at_capture(rng):
  """Replay could not tell two inputs apart that shared one buffer at capture, so capture refuses."""
  jit = TinyJit(lambda a, b: a * 2 + b)
  t = Tensor(arrays(rng, 3, 4))
  jit(t, t)
  with pytest.raises(JitError, match="same tensor was passed as two inputs"):
    jit(t, t)


# ---- a small training step --------------------------------------------------------------------------------------

LR = 0.1


def _sgd_reference(w, b, batches):
  for x, y in batches:
    d = 2 * (x @ w.T + b - y) / y.size
    w, b = w - LR * (d.T @ x), b - LR * d.sum(0)
  return w, b


def _batches(rng, n=5):
  return [(arrays(rng, 6, 8), arrays(rng, 6, 4)) for _ in range(n)]


def functional_step(w: Tensor, b: Tensor, x: Tensor, y: Tensor):
  """Linear layer + MSE + SGD, weights in and out."""
  w.requires_grad_()
  b.requires_grad_()
  loss = ((x @ w.T + b - y) ** 2).mean()
  loss.backward()
  new_w = (w.detach() - LR * w.grad).realize()
  new_b = (b.detach() - LR * b.grad).realize()
  return new_w, new_b


def test_training_step_matches_eager(rng):
  w0, b0, batches = arrays(rng, 4, 8), arrays(rng, 4), _batches(rng)
  jit = TinyJit(functional_step)
  we, be, wj, bj = w0, b0, w0, b0
  for x, y in batches:
    nw, nb = functional_step(Tensor(we), Tensor(be), Tensor(x), Tensor(y))
    we, be = nw.numpy(), nb.numpy()
    nw, nb = jit(Tensor(wj), Tensor(bj), Tensor(x), Tensor(y))
    wj, bj = nw.numpy(), nb.numpy()
  assert jit.launches > 0
  np.testing.assert_allclose(wj, we, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(bj, be, rtol=1e-6, atol=1e-7)
  w_ref, b_ref = _sgd_reference(w0, b0, batches)
  np.testing.assert_allclose(we, w_ref, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(be, b_ref, rtol=1e-4, atol=1e-5)


class LinearSGD:
  """nn.Linear-shaped model updated in place with assign."""

  def __init__(self, w: np.ndarray, b: np.ndarray):
    self.weight = Tensor(w.copy(), requires_grad=True)
    self.bias = Tensor(b.copy(), requires_grad=True)

  def step(self, x: Tensor, y: Tensor) -> Tensor:
    loss = ((x.linear(self.weight.transpose(), self.bias) - y) ** 2).mean()
    self.weight.grad = self.bias.grad = None
    loss.backward()
    for p in (self.weight, self.bias):
      p.assign(p.detach() - LR * p.grad)
    return loss.realize(self.weight, self.bias)


def test_training_step_with_assign_matches_eager(rng):
  w0, b0, batches = arrays(rng, 4, 8), arrays(rng, 4), _batches(rng)
  eager, jitted = LinearSGD(w0, b0), LinearSGD(w0, b0)
  jit = TinyJit(jitted.step)
  for x, y in batches:
    eager.step(Tensor(x), Tensor(y))
    jit(Tensor(x), Tensor(y))
  assert jit.launches > 0
  np.testing.assert_allclose(jitted.weight.numpy(), eager.weight.numpy(), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(jitted.bias.numpy(), eager.bias.numpy(), rtol=1e-6, atol=1e-7)
  w_ref, b_ref = _sgd_reference(w0, b0, batches)
  np.testing.assert_allclose(eager.weight.numpy(), w_ref, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(eager.bias.numpy(), b_ref, rtol=1e-4, atol=1e-5)


def test_random_numbers_advance_under_replay():
  """The draw counter lives on the device and is advanced by a captured kernel: replays draw fresh numbers, the
  same sequence as eager calls after the same seed."""
  Tensor.manual_seed(7)
  eager = [Tensor.rand(5).numpy() for _ in range(4)]
  Tensor.manual_seed(7)
  jit = TinyJit(lambda x: (Tensor.rand(5) + x).realize())
  zero = Tensor(np.zeros(5, np.float32))
  jitted = [jit(zero).numpy().copy() for _ in range(4)]
  np.testing.assert_array_equal(np.array(jitted), np.array(eager))
  assert len({row.tobytes() for row in jitted}) == 4


def test_copies_between_devices_are_captured_and_repeated(rng):
  """A step that moves its input to another device and the result back: replay repeats both copies with the new
  input (a stale copy would return the first call's result), and reads the new input, not the captured one."""
  def step(x):
    y = (x.to("CPU:1") * 2).sum(1)
    return (y.to("CPU") + 1).realize()
  jit = TinyJit(step)
  for _ in range(5):
    a = arrays(rng, 4, 8)
    x = Tensor(a, device="CPU") + 1
    out = jit(x)
    np.testing.assert_allclose(out.numpy(), ((a + 1) * 2).sum(1) + 1, rtol=1e-5, atol=1e-5)
  copies = [item for item in jit.captured if isinstance(item, realize.CopyItem)]
  assert [c.name for c in copies] == ["copy CPU -> CPU:1", "copy CPU:1 -> CPU"]
  assert jit.launches == 3 * (len(jit.captured) - 2), "replay counts kernel launches, not copies"


def test_capture_with_copies_keeps_item_order_and_dependencies(rng):
  """The copy is recorded as writing its destination and reading its source, so the kernels after it depend on it."""
  jit = TinyJit(lambda x: (x.to("CPU:1").exp() + 1).sum().realize())
  for _ in range(3):
    jit(Tensor(arrays(rng, 3, 3), device="CPU") * 1)
  kinds = [type(item).__name__ for item in jit.captured]
  copy = kinds.index("CopyItem")
  deps = realize.exec_dependencies(jit.captured)
  assert all(copy in deps[i] or any(copy in deps[d] for d in deps[i]) for i in range(copy + 1, len(kinds))), deps
  assert (copy, copy + 1, None) in jit.segments, "a copy replays on its own, between the kernel segments"


def test_replay_does_not_schedule_its_realized_inputs(monkeypatch):
  """A replay's inputs are realized buffers: Tensor.realize returns at once for them (it cost a scheduler pass per
  input, about 40 us a call, before), while a tensor with work behind it still goes through the scheduler."""
  from frontend import tensor as tensor_module

  @TinyJit
  def f(a: Tensor, b: Tensor) -> Tensor:
    return (a * b + 1).realize()
  rng = np.random.default_rng(0)
  data = [(rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((4, 8)).astype(np.float32))
          for _ in range(4)]
  inputs = [(Tensor(a).reshape(8, 4).realize(), Tensor(b).realize()) for a, b in data]
  for a, b in inputs[:2]:
    f(a.reshape(4, 8), b)
  calls = []
  real = tensor_module.realize_nodes
  monkeypatch.setattr(tensor_module, "realize_nodes", lambda nodes: calls.append(nodes) or real(nodes))
  for (a, b), (x, y) in zip(inputs[2:], data[2:]):
    np.testing.assert_allclose(f(a.reshape(4, 8), b).numpy(), x * y + 1, rtol=1e-6)
  assert calls == [], "a replay scheduled its inputs"
  (Tensor(data[0][0]) + 1).realize()
  assert len(calls) == 1, "a tensor with work behind it is realized through the scheduler"


def test_cpu_replay_is_one_launch_list_equal_to_eager(rng, monkeypatch):
  """On the CPU a capture replays as a CPUGraph (the pool runs its launch list in one call): new input buffers and
  Variable values are patched into the argument arrays, and kernels split over threads get the same chunks as eagerly,
  so every result equals the eager one bit for bit."""
  from compiler.ir import Variable
  from frontend.device import Device
  from frontend.runtime.cpu import CPUGraph
  monkeypatch.setenv("DEV", "CPU")
  scale = Variable("scale", -8, 8)
  w = Tensor(arrays(rng, 256, 256)).realize()

  def step(x: Tensor, k) -> Tensor:
    h = (x @ w).relu() * k
    return (h.exp2().sum(1) + h.max(1)).realize()
  jit = TinyJit(step)
  for call, k in enumerate([1, 2, -3, 5, 0, -8]):
    x = arrays(rng, 512, 256)
    got = jit(Tensor(x), scale.bind(k)).numpy().copy()
    np.testing.assert_array_equal(got, step(Tensor(x), scale.bind(k)).numpy())
    if call >= 2:
      assert isinstance(jit.graph, CPUGraph)
  assert max(item.program.threads for item in jit.captured) == Device["CPU"].threads, "some kernel runs threaded"
