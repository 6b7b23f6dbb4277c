"""Tests for frontend/nn/optim.py: each optimizer against torch.optim (or, for LAMB, a float64 numpy transcription of
the paper's update) on one small two-layer problem for a few steps, plus the in-place contract (parameter and state
buffers keep their identity, the learning rate changes without a recompile), schedule_step, OptimizerGroup, TinyJit
replay, and the error paths.

Every test trains the same shapes, so the C kernels compile once per process and the file stays fast.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compiler.ir import Ops
from frontend import Tensor, TinyJit
from frontend.nn.optim import LAMB, SGD, Adam, AdamW, Optimizer, OptimizerGroup
from frontend.nn.state import get_state_dict, load_state_dict
from frontend.realize import STATS

STEPS = 5
RTOL, ATOL = 1e-5, 1e-6


def problem(seed: int = 0) -> dict[str, np.ndarray]:
  """Weights and data of a 3 -> 4 -> 2 ReLU network fitted to random targets (fresh random values, no zeros)."""
  rng = np.random.default_rng(seed)
  return {"w1": rng.uniform(-1, 1, (4, 3)).astype(np.float32), "b1": rng.uniform(-1, 1, (4,)).astype(np.float32),
          "w2": rng.uniform(-1, 1, (2, 4)).astype(np.float32), "x": rng.standard_normal((5, 3)).astype(np.float32),
          "y": rng.standard_normal((5, 2)).astype(np.float32)}


def loss_of(w1, b1, w2, x, y):
  """Mean squared error of relu(x @ w1.T + b1) @ w2.T; the same expression works on Tensors and torch tensors."""
  return ((x @ w1.T + b1).relu() @ w2.T - y).square().mean()


@pytest.fixture(autouse=True)
def training_mode():
  before = Tensor.training
  Tensor.training = True
  yield
  Tensor.training = before


class Net:
  def __init__(self, p: dict[str, np.ndarray]):
    self.w1, self.b1, self.w2 = Tensor(p["w1"]), Tensor(p["b1"]), Tensor(p["w2"])
    self.x, self.y = Tensor(p["x"]), Tensor(p["y"])

  @property
  def params(self) -> list[Tensor]:
    return [self.w1, self.b1, self.w2]

  def loss(self) -> Tensor:
    return loss_of(self.w1, self.b1, self.w2, self.x, self.y)


def train_ours(make_opt, steps: int = STEPS, seed: int = 0) -> tuple[Net, Optimizer]:
  net = Net(problem(seed))
  opt = make_opt(net.params)
  for _ in range(steps):
    opt.zero_grad()
    net.loss().backward()
    opt.step()
  return net, opt


def train_torch(make_opt, steps: int = STEPS, seed: int = 0) -> list[np.ndarray]:
  p = problem(seed)
  params = [torch.tensor(p[k], requires_grad=True) for k in ("w1", "b1", "w2")]
  x, y = torch.tensor(p["x"]), torch.tensor(p["y"])
  opt = make_opt(params)
  for _ in range(steps):
    opt.zero_grad()
    loss_of(*params, x, y).backward()
    opt.step()
  return [t.detach().numpy() for t in params]


def assert_weights(net: Net, expected: list[np.ndarray]) -> None:
  for name, t, want in zip(("w1", "b1", "w2"), net.params, expected):
    np.testing.assert_allclose(t.numpy(), want, rtol=RTOL, atol=ATOL, err_msg=name)


def buffer_of_param(t: Tensor):
  """The Buffer behind a tensor that is a (reshaped) buffer node: what JIT captures hold on to."""
  node = t.lazydata
  while node.op is Ops.RESHAPE:
    node = node.src[0]
  assert node.op is Ops.BUFFER, f"expected a buffer-backed tensor, got {node}"
  return node.arg


# ---------------------------------------------------------------------------------------------------------------------
# against torch.optim

TORCH_CASES = {
  "sgd": (lambda ps: SGD(ps, lr=0.1), lambda ps: torch.optim.SGD(ps, lr=0.1)),
  "sgd_momentum": (lambda ps: SGD(ps, lr=0.05, momentum=0.9),
                   lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)),
  "sgd_nesterov_wd": (lambda ps: SGD(ps, lr=0.05, momentum=0.8, weight_decay=0.1, nesterov=True),
                      lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, weight_decay=0.1, nesterov=True)),
  "sgd_wd": (lambda ps: SGD(ps, lr=0.1, weight_decay=0.05), lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=0.05)),
  "adam": (lambda ps: Adam(ps, lr=0.02), lambda ps: torch.optim.Adam(ps, lr=0.02)),
  "adam_wd": (lambda ps: Adam(ps, lr=0.02, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1),
              lambda ps: torch.optim.Adam(ps, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
  "adamw": (lambda ps: AdamW(ps, lr=0.02), lambda ps: torch.optim.AdamW(ps, lr=0.02)),
  "adamw_wd": (lambda ps: AdamW(ps, lr=0.02, weight_decay=0.3),
               lambda ps: torch.optim.AdamW(ps, lr=0.02, weight_decay=0.3)),
  "lamb_adam_is_adamw": (lambda ps: LAMB(ps, lr=0.02, eps=1e-8, weight_decay=0.3, adam=True),
                         lambda ps: torch.optim.AdamW(ps, lr=0.02, weight_decay=0.3)),
}


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_matches_torch(case):
  ours, theirs = TORCH_CASES[case]
  net, _ = train_ours(ours)
  assert_weights(net, train_torch(theirs))


def test_sgd_classic_equals_torch_while_lr_is_constant():
  net, _ = train_ours(lambda ps: SGD(ps, lr=0.05, momentum=0.9, classic=True))
  assert_weights(net, train_torch(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)))


def test_sgd_classic_scales_before_momentum():
  # classic momentum keeps b = mu*b + lr*g, so the lr in force when a gradient arrived stays with it
  p = problem()
  w = Tensor(p["w1"])
  opt = SGD([w], lr=0.1, momentum=0.5, classic=True)
  expected, buf = p["w1"].astype(np.float64), np.zeros((4, 3))
  for lr in (0.1, 0.02, 0.3):
    opt.lr = lr
    opt.zero_grad()
    (w * Tensor(p["w1"])).sum().backward()  # gradient: the constant p["w1"]
    opt.step()
    buf = 0.5 * buf + lr * p["w1"]
    expected = expected - buf
  np.testing.assert_allclose(w.numpy(), expected, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------------------------------------------------
# LAMB against the paper's update, written out in float64


def lamb_reference(p: dict[str, np.ndarray], lr: float, b1: float, b2: float, eps: float, wd: float,
                   steps: int = STEPS) -> list[np.ndarray]:
  params = [torch.tensor(p[k], dtype=torch.float64, requires_grad=True) for k in ("w1", "b1", "w2")]
  x, y = torch.tensor(p["x"], dtype=torch.float64), torch.tensor(p["y"], dtype=torch.float64)
  m = [np.zeros(t.shape) for t in params]
  v = [np.zeros(t.shape) for t in params]
  for step in range(1, steps + 1):
    for t in params:
      t.grad = None
    loss_of(*params, x, y).backward()  # torch only differentiates; the update below is plain numpy
    for i, t in enumerate(params):
      w, grad = t.detach().numpy(), t.grad.numpy()
      m[i] = b1 * m[i] + (1 - b1) * grad
      v[i] = b2 * v[i] + (1 - b2) * grad ** 2
      update = (m[i] / (1 - b1 ** step)) / (np.sqrt(v[i] / (1 - b2 ** step)) + eps) + wd * w
      w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(update)
      ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
      with torch.no_grad():
        t -= torch.from_numpy(lr * ratio * update)
  return [t.detach().numpy() for t in params]


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_lamb_matches_paper(wd):
  net, _ = train_ours(lambda ps: LAMB(ps, lr=0.05, b1=0.85, b2=0.98, eps=1e-6, weight_decay=wd))
  assert_weights(net, lamb_reference(problem(), lr=0.05, b1=0.85, b2=0.98, eps=1e-6, wd=wd))


def test_lamb_trust_ratio_is_one_for_zero_weights_and_zero_updates():
  signs = np.where(np.arange(12).reshape(4, 3) % 2, 1.0, -1.0)
  g = (np.random.default_rng(3).uniform(0.5, 1.5, (4, 3)) * signs).astype(np.float32)
  zero_w = Tensor(np.zeros((4, 3), np.float32))  # ||w|| = 0
  idle_w = Tensor(g)  # gradient 0, so ||update|| = 0
  opt = LAMB([zero_w, idle_w], lr=0.1, eps=1e-6)
  ((zero_w * Tensor(g)).sum() + (idle_w * 0.0).sum()).backward()
  opt.step()
  # first step: m_hat = g and v_hat = g^2, so the update is g / (|g| + eps) and the ratio must fall back to 1
  np.testing.assert_allclose(zero_w.numpy(), -0.1 * g / (np.abs(g) + 1e-6), rtol=RTOL, atol=ATOL)
  np.testing.assert_array_equal(idle_w.numpy(), g)


# ---------------------------------------------------------------------------------------------------------------------
# the in-place contract


@pytest.mark.parametrize("make_opt", [lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps, lr=0.01)],
                         ids=["sgd_momentum", "adam"])
def test_parameters_and_state_keep_their_buffers(make_opt):
  net = Net(problem())
  opt = make_opt(net.params)
  state = [t for key, t in get_state_dict(opt).items() if key.startswith(("b.", "m.", "v.", "b1_t", "b2_t"))]
  watched = net.params + state + [opt.lr]
  before = [buffer_of_param(t) for t in watched]
  for _ in range(3):
    opt.zero_grad()
    net.loss().backward()
    opt.step()
    after = [buffer_of_param(t) for t in watched]
    assert all(a is b for a, b in zip(before, after)), "an optimizer step replaced a buffer instead of writing into it"


def test_step_does_not_keep_old_graphs():
  net = Net(problem())
  opt = SGD(net.params, lr=0.1)
  for _ in range(3):
    opt.zero_grad()
    net.loss().backward()
    opt.step()
    for t in net.params:
      assert len(t.lazydata.toposort()) <= 2, f"parameter graph grows step by step: {t.lazydata.toposort()}"


def test_lr_change_takes_effect_without_compiling():
  net = Net(problem())
  opt = Adam(net.params, lr=0.01)
  lr_buffer = buffer_of_param(opt.lr)
  for lr in (0.01, 0.0, 0.02):  # warm up: every kernel (the lr write included) compiles once
    opt.lr = lr
    opt.zero_grad()
    net.loss().backward()
    opt.step()
  compiles = STATS["compiles"]
  opt.lr = 0.0
  frozen = [t.numpy() for t in net.params]
  opt.zero_grad()
  net.loss().backward()
  opt.step()
  for t, want in zip(net.params, frozen):
    np.testing.assert_array_equal(t.numpy(), want)  # lr 0: nothing moves, though m and v do
  opt.lr.assign(Tensor([0.5])).realize()  # tinygrad's spelling writes into the same buffer too
  opt.zero_grad()
  net.loss().backward()
  opt.step()
  assert not np.allclose(net.params[0].numpy(), frozen[0])
  assert np.isclose(opt.lr.item(), 0.5)
  assert buffer_of_param(opt.lr) is lr_buffer
  assert STATS["compiles"] == compiles, "changing the learning rate compiled new kernels"


def test_lr_change_matches_torch():
  def ours(ps):
    return SGD(ps, lr=0.1, momentum=0.9)

  net = Net(problem())
  opt = ours(net.params)
  p = problem()
  tparams = [torch.tensor(p[k], requires_grad=True) for k in ("w1", "b1", "w2")]
  topt = torch.optim.SGD(tparams, lr=0.1, momentum=0.9)
  for lr in (0.1, 0.03, 0.2):
    opt.lr = lr
    for group in topt.param_groups:
      group["lr"] = lr
    opt.zero_grad()
    net.loss().backward()
    opt.step()
    topt.zero_grad()
    loss_of(*tparams, torch.tensor(p["x"]), torch.tensor(p["y"])).backward()
    topt.step()
  assert_weights(net, [t.detach().numpy() for t in tparams])


def test_schedule_step_realizes_with_the_loss():
  net = Net(problem())
  opt = AdamW(net.params, lr=0.02)
  p = problem()
  tparams = [torch.tensor(p[k], requires_grad=True) for k in ("w1", "b1", "w2")]
  topt = torch.optim.AdamW(tparams, lr=0.02)
  for _ in range(STEPS):
    opt.zero_grad()
    loss = net.loss().backward()
    Tensor.realize(loss, *opt.schedule_step())
    topt.zero_grad()
    tloss = loss_of(*tparams, torch.tensor(p["x"]), torch.tensor(p["y"]))
    tloss.backward()
    topt.step()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=RTOL)  # the loss before the update
  assert_weights(net, [t.detach().numpy() for t in tparams])


def test_zero_grad_clears_gradients():
  net = Net(problem())
  opt = SGD(net.params, lr=0.1)
  net.loss().backward()
  assert all(t.grad is not None for t in net.params)
  opt.zero_grad()
  assert all(t.grad is None for t in net.params)
  with pytest.raises(RuntimeError, match=r"parameter 0 \(shape \(4, 3\), float32\) has no gradient"):
    opt.step()


def test_zero_grad_resets_accumulation():
  # two backward passes without zero_grad accumulate; zero_grad in between does not
  net = Net(problem())
  opt = SGD(net.params, lr=0.0)
  net.loss().backward()
  net.loss().backward()
  doubled = net.w1.grad.numpy()
  opt.zero_grad()
  net.loss().backward()
  np.testing.assert_allclose(doubled, 2 * net.w1.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_requires_grad_flags():
  trainable, frozen, unset = Tensor([1.0, 2.0], requires_grad=True), Tensor([3.0], requires_grad=False), Tensor([4.0])
  opt = SGD([trainable, frozen, unset, trainable], lr=0.1)
  assert unset.requires_grad is True
  assert [id(t) for t in opt.params] == [id(trainable), id(unset)]  # duplicates dropped, frozen left out
  assert [id(t) for t in opt.buffers] == [id(frozen)]


def test_optimizer_group_matches_two_torch_optimizers():
  net = Net(problem())
  # Adam first: its write to w2 must wait until SGD's gradient of w1, which reads w2, has been computed
  group = OptimizerGroup(Adam([net.b1, net.w2], lr=0.02), SGD([net.w1], lr=0.1, momentum=0.9))
  assert len(group) == 2 and isinstance(group[0], Adam)
  assert [id(t) for t in group.params] == [id(net.b1), id(net.w2), id(net.w1)]
  p = problem()
  tparams = [torch.tensor(p[k], requires_grad=True) for k in ("w1", "b1", "w2")]
  topts = [torch.optim.Adam(tparams[1:], lr=0.02), torch.optim.SGD(tparams[:1], lr=0.1, momentum=0.9)]
  for _ in range(STEPS):
    group.zero_grad()
    net.loss().backward()
    group.step()
    for o in topts:
      o.zero_grad()
    loss_of(*tparams, torch.tensor(p["x"]), torch.tensor(p["y"])).backward()
    for o in topts:
      o.step()
  assert_weights(net, [t.detach().numpy() for t in tparams])


@pytest.mark.parametrize("grouped", [False, True])
def test_updates_read_only_old_values(grouped):
  # the gradient of a is b and of b is a: each update must see the other's old value, also across a group's members
  p = problem()
  a, b = Tensor(p["w1"]), Tensor(p["w1"][::-1].copy())
  opt = OptimizerGroup(SGD([a], lr=0.1), SGD([b], lr=0.1)) if grouped else SGD([a, b], lr=0.1)
  (a * b).sum().backward()
  opt.step()
  np.testing.assert_allclose(a.numpy(), p["w1"] - 0.1 * p["w1"][::-1], rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(b.numpy(), p["w1"][::-1] - 0.1 * p["w1"], rtol=RTOL, atol=ATOL)


def test_checkpoint_resume_continues_identically():
  straight, _ = train_ours(lambda ps: Adam(ps, lr=0.02), steps=4)
  net, opt = train_ours(lambda ps: Adam(ps, lr=0.02), steps=2)
  saved = {k: Tensor(v.numpy()) for k, v in get_state_dict({"net": net.params, "opt": opt}).items()}
  start = problem()
  start.update({k: start[k] + 1.0 for k in ("w1", "b1", "w2")})  # other weights, to be overwritten by the checkpoint
  resumed = Net(start)
  resumed_opt = Adam(resumed.params, lr=0.5)
  load_state_dict({"net": resumed.params, "opt": resumed_opt}, saved)
  for _ in range(2):
    resumed_opt.zero_grad()
    resumed.loss().backward()
    resumed_opt.step()
  assert_weights(resumed, [t.numpy() for t in straight.params])


def test_jit_replay_trains_like_eager():
  eager, _ = train_ours(lambda ps: SGD(ps, lr=0.05, momentum=0.9), steps=4)
  net = Net(problem())
  opt = SGD(net.params, lr=0.05, momentum=0.9)

  @TinyJit
  def train_step(x: Tensor, y: Tensor) -> Tensor:
    opt.zero_grad()
    loss = loss_of(net.w1, net.b1, net.w2, x, y).backward()
    Tensor.realize(loss, *opt.schedule_step())
    return loss

  x, y = problem()["x"], problem()["y"]
  for _ in range(4):
    train_step(Tensor(x), Tensor(y))
  assert train_step.cnt == 2 and train_step.launches > 0, "the last calls should have been replays"
  assert_weights(net, [t.numpy() for t in eager.params])


# ---------------------------------------------------------------------------------------------------------------------
# errors


def test_step_outside_training_mode_raises():
  net = Net(problem())
  opt = SGD(net.params, lr=0.1)
  net.loss().backward()
  Tensor.training = False
  with pytest.raises(RuntimeError, match="Tensor.training = True"):
    opt.step()


def test_constructor_errors():
  w = Tensor([1.0, 2.0])
  with pytest.raises(ValueError, match="none requires a gradient"):
    SGD([Tensor([1.0], requires_grad=False)])
  with pytest.raises(TypeError, match=r"params\[1\] is ndarray"):
    SGD([w, np.zeros(2)])
  with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
    SGD([w], nesterov=True)
  with pytest.raises(ValueError, match=r"b1 and b2 must lie in \[0, 1\), got b1=1.0 b2=0.999"):
    Adam([w], b1=1.0)
  with pytest.raises(ValueError, match=r"one-element Tensor, got a Tensor of shape \(2,\)"):
    AdamW([w], lr=Tensor([0.1, 0.2]))
  opt = LAMB([w])
  with pytest.raises(ValueError, match=r"one-element Tensor, got a Tensor of shape \(3,\)"):
    opt.lr = Tensor([1.0, 2.0, 3.0])
  with pytest.raises(ValueError, match="at least one optimizer"):
    OptimizerGroup()


def _step_ops(together: bool) -> int:
  """Arithmetic of one Adam step of a conv layer (compiler estimates, summed over its kernels): its loss, gradients
  and updates scheduled as one realize (together) or the gradients first and the updates after."""
  from compiler.lower import lower
  from compiler.schedule import Scheduler
  from frontend import nn
  from frontend.nn.state import get_parameters
  from frontend.realize import realize_nodes, realized
  Tensor.manual_seed(0)
  conv = nn.Conv2d(2, 4, 3)
  opt = Adam(get_parameters(conv), lr=1e-3)
  x = Tensor(np.random.default_rng(1).standard_normal((8, 2, 10, 10)).astype(np.float32)).realize()
  prev = Tensor.training
  Tensor.training = True
  try:
    opt.zero_grad()
    loss = conv(x).relu().sum().backward()
    targets = [t.lazydata for t in [loss, *opt.schedule_step()]]
  finally:
    Tensor.training = prev
  phases = [targets] if together else [targets[:1 + len(opt.params)], targets[1 + len(opt.params):]]
  ops = 0
  for nodes in phases:
    items = Scheduler(lambda n: n in realized).schedule(nodes)
    ops += sum(lower(i.ast).arg.ops for i in items if i.kind == "kernel")
    realize_nodes(nodes)
  return ops


def test_one_schedule_computes_each_gradient_once():
  """Realizing a training step's loss, gradients and updates together costs what realizing the gradients first and
  the updates after does: the moment updates load each gradient instead of recomputing its reduction (they did,
  once per moment, which made the weight gradients of bench_replay's models 2-3x their cost)."""
  assert _step_ops(together=True) == _step_ops(together=False)
