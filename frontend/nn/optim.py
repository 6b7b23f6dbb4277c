"""Optimizers with tinygrad's API: SGD, Adam, AdamW, LAMB, and OptimizerGroup to step several together.

  opt = SGD(get_parameters(model), lr=0.01, momentum=0.9)
  Tensor.training = True
  opt.zero_grad()
  loss = model(x).sparse_categorical_crossentropy(y).backward()
  opt.step()                                   # or: Tensor.realize(loss, *opt.schedule_step())

Every update is an in-place `Tensor.assign`, so parameters and optimizer state keep their buffers from step to step
(a TinyJit capture replays the same kernels on the same memory). The learning rate is a one-element Tensor read by
the kernels, so `opt.lr = 0.001` (or `opt.lr.assign(...)`) changes it without compiling anything new.

Ordering: the scheduler runs kernels in the order of the tensors handed to `realize` and does not hold back a write to
a buffer until every kernel that reads the old contents has run. A gradient of one parameter reads the others (through
the forward pass), so `schedule_step` lists every gradient first (realized into its own buffer, as torch keeps
`.grad`), then the pending assigns of non-trainable buffers, then the parameters. Each parameter's new value then
reads only its own buffer, its own gradient and its own optimizer state.

The update rules, with g the gradient, p the parameter, t the step count, lr the learning rate:
  SGD    g += wd*p;  b = mu*b + g;  g = g + mu*b (nesterov) or b;  p -= lr*g          (torch.optim.SGD, dampening 0)
         classic=True scales g by lr before the momentum buffer instead of after (identical while lr is constant).
  Adam   g += wd*p;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  p -= lr * m_hat / (sqrt(v_hat) + eps)
         with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)                                 (torch.optim.Adam)
  AdamW  as Adam without the g += wd*p, plus the decoupled decay: p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd*p)
                                                                                              (torch.optim.AdamW)
  LAMB   u = m_hat / (sqrt(v_hat) + eps) + wd*p;  p -= lr * r * u  with the trust ratio r = ||p|| / ||u||, or 1 when
         either norm is 0 (You et al., "Large Batch Optimization for Deep Learning", 2019, algorithm 2 with phi(x) = x).
         adam=True fixes r = 1, which is AdamW.
"""
from __future__ import annotations

from frontend import multi
from frontend.multi import MultiNode
from frontend.nn.state import _settle
from frontend.tensor import Tensor


def _dedup(tensors: list[Tensor]) -> list[Tensor]:
  by_id = {id(t): t for t in tensors}
  return list(by_id.values())


def _state_like(p: Tensor) -> Tensor:
  """A zero-filled buffer shaped like p for optimizer state (momentum, first and second moments)."""
  out = Tensor.zeros(*p.shape, device=p.device, dtype=p.dtype)
  if isinstance(p.lazydata, MultiNode):  # sharded like p, so updates stay on each shard's device
    out = Tensor(multi.to_layout(out.lazydata, p.lazydata.axis, p.lazydata.bounds))
  out = out.contiguous()
  out.requires_grad = False
  return out.realize()


def _scalar_state(value: float, device: str) -> Tensor:
  """A one-element float32 buffer (the learning rate, b1^t, b2^t) that kernels read instead of a baked constant."""
  return Tensor([value], device=device, requires_grad=False)


class Optimizer:
  """The base of all optimizers: holds the parameters, the learning rate and the buffers to realize each step.

  Args:
    params: the Tensors to optimize. Those with requires_grad None become requires_grad=True; those with
      requires_grad False (BatchNorm running statistics, for example) are not updated but are realized with each
      step, so assigns queued on them during the forward pass run. Duplicates are dropped.
    lr: the learning rate, a float or a one-element Tensor (used as given, so a schedule can write into it).

  Raises:
    ValueError: no parameter requires a gradient, or lr is a Tensor with more than one element.
    TypeError: params holds something other than Tensors.
  """

  def __init__(self, params: list[Tensor], lr: float | Tensor):
    params = list(params)
    for i, p in enumerate(params):
      if not isinstance(p, Tensor):
        raise TypeError(f"optimizer params must be Tensors, params[{i}] is {type(p).__name__}; "
                        "pass get_parameters(model) or a list of Tensors")
      if p.requires_grad is None:
        p.requires_grad_(True)
    self.params: list[Tensor] = _dedup([p for p in params if p.requires_grad])
    self.buffers: list[Tensor] = _dedup([p for p in params if not p.requires_grad])
    if not self.params:
      raise ValueError(f"{type(self).__name__} got {len(params)} tensors and none requires a gradient; pass the "
                       "model's parameters (get_parameters(model)) or set requires_grad=True on them")
    self.device = self.params[0].device
    if isinstance(lr, Tensor):
      if lr.numel() != 1:
        raise ValueError(f"lr must be a float or a one-element Tensor, got a Tensor of shape {lr.shape}")
      self.lr = lr
    else:
      self.lr = _scalar_state(float(lr), self.device)

  def __setattr__(self, name: str, value) -> None:
    # `opt.lr = 0.01` writes into the existing learning-rate buffer, so compiled kernels and JIT captures see it
    if name == "lr" and "lr" in self.__dict__:
      self._write_lr(value)
      return
    super().__setattr__(name, value)

  def _write_lr(self, value) -> None:
    current = self.__dict__["lr"]
    if isinstance(value, Tensor):
      if value.numel() != 1:
        raise ValueError(f"lr must be set to a number or a one-element Tensor, got a Tensor of shape {value.shape}")
      new = value.reshape(current.shape).to(current.device)
    else:
      new = Tensor([float(value)] * current.numel(), device=current.device, dtype=current.dtype).reshape(current.shape)
    current.assign(new).realize()

  def zero_grad(self) -> None:
    """Drops every parameter's gradient (sets .grad to None), so the next backward() starts from zero."""
    for p in self.params:
      p.grad = None

  def step(self) -> None:
    """Computes and applies one update: realizes the new parameters and optimizer state.

    Raises:
      RuntimeError: Tensor.training is False, or a parameter has no gradient (see schedule_step).
    """
    targets = self.schedule_step()
    Tensor.realize(*targets)
    for p in self.params:
      _settle(p)

  def schedule_step(self) -> list[Tensor]:
    """Queues one update without running it and returns the tensors to realize, in order; realize them together with
    the loss so one schedule computes both: `Tensor.realize(loss, *opt.schedule_step())`.

    Raises:
      RuntimeError: Tensor.training is False (set it to True while training, as in tinygrad), or a parameter has no
        gradient (call loss.backward() first, or leave parameters the loss does not use out of the optimizer).
    """
    reads, writes = self._schedule_parts()
    return reads + writes

  def _schedule_parts(self) -> tuple[list[Tensor], list[Tensor]]:
    """(tensors that only read parameters: the gradients, tensors that write them), for OptimizerGroup's ordering."""
    if not Tensor.training:
      raise RuntimeError(f"{type(self).__name__}.step() with Tensor.training = False; set Tensor.training = True "
                         "while training (dropout and batch statistics follow it too)")
    for p in self.params:
      _settle(p)  # the previous step's assign has run by now: drop the graph it kept alive
    grads = [self._grad_of(i, p) for i, p in enumerate(self.params)]
    state = self._apply(grads)
    return grads, self.buffers + self.params + state

  def _grad_of(self, i: int, p: Tensor) -> Tensor:
    if p.grad is None:
      raise RuntimeError(f"{type(self).__name__}: parameter {i} (shape {p.shape}, {p.dtype.name}) has no gradient; "
                         "call loss.backward() before step(), and leave parameters the loss does not use out of the "
                         "optimizer")
    if p.grad.shape != p.shape:
      raise RuntimeError(f"{type(self).__name__}: parameter {i} has shape {p.shape} but its gradient has shape "
                         f"{p.grad.shape}")
    return p.grad

  def _lr_scalar(self) -> Tensor:
    return self.lr.reshape(())

  def _apply(self, grads: list[Tensor]) -> list[Tensor]:
    """Assigns every parameter's new value (one per entry of grads) and returns the optimizer state it assigned."""
    raise NotImplementedError(f"{type(self).__name__} must implement _apply(grads)")


class OptimizerGroup(Optimizer):
  """Several optimizers stepped as one (different rules or learning rates for different parameters).

  Args:
    optimizers: the optimizers; their parameters are listed together in .params.

  Raises:
    ValueError: no optimizers given.
  """

  def __init__(self, *optimizers: Optimizer):
    # Optimizer.__init__ is not called: each member keeps its own parameters, learning rate and state
    if not optimizers:
      raise ValueError("OptimizerGroup needs at least one optimizer")
    self.optimizers = list(optimizers)
    self.params = _dedup([p for o in self.optimizers for p in o.params])
    self.buffers = _dedup([b for o in self.optimizers for b in o.buffers])

  def __getitem__(self, i: int) -> Optimizer:
    return self.optimizers[i]

  def __len__(self) -> int:
    return len(self.optimizers)

  def zero_grad(self) -> None:
    for o in self.optimizers:
      o.zero_grad()

  def _schedule_parts(self) -> tuple[list[Tensor], list[Tensor]]:
    # every member's gradients go before any member's writes (see the module docstring on ordering)
    reads: list[Tensor] = []
    writes: list[Tensor] = []
    for o in self.optimizers:
      r, w = o._schedule_parts()
      reads += r
      writes += w
    return reads, writes


class SGD(Optimizer):
  """Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay (torch's rule).

  Args:
    params: the Tensors to optimize (see Optimizer).
    lr: learning rate.
    momentum: momentum factor mu; 0 keeps no momentum buffer.
    weight_decay: L2 penalty wd, added to the gradient as wd * p.
    nesterov: use Nesterov momentum (needs momentum > 0).
    classic: scale the gradient by lr before it enters the momentum buffer instead of after.

  Raises:
    ValueError: a negative lr, momentum or weight_decay, or nesterov without momentum.
  """

  def __init__(self, params: list[Tensor], lr: float | Tensor = 0.001, momentum: float = 0.0,
               weight_decay: float = 0.0, nesterov: bool = False, classic: bool = False):
    if not isinstance(lr, Tensor) and lr < 0:
      raise ValueError(f"SGD: lr must be >= 0, got {lr}")
    if momentum < 0 or weight_decay < 0:
      raise ValueError(f"SGD: momentum and weight_decay must be >= 0, got momentum={momentum} "
                       f"weight_decay={weight_decay}")
    if nesterov and momentum == 0:
      raise ValueError("SGD: nesterov=True needs momentum > 0")
    super().__init__(params, lr)
    self.momentum, self.weight_decay, self.nesterov, self.classic = momentum, weight_decay, nesterov, classic
    self.b = [_state_like(p) for p in self.params] if momentum else []

  def _apply(self, grads: list[Tensor]) -> list[Tensor]:
    lr = self._lr_scalar()
    for i, (p, g) in enumerate(zip(self.params, grads)):
      old = p.detach()
      if self.weight_decay:
        g = g + self.weight_decay * old
      if self.classic:
        g = g * lr
      if self.momentum:
        buf = self.b[i].assign(self.momentum * self.b[i] + g)
        g = g + self.momentum * buf if self.nesterov else buf
      if not self.classic:
        g = g * lr
      p.assign(old - g)
    return list(self.b)


class LAMB(Optimizer):
  """LAMB: Adam moments with a layer-wise trust ratio ||p|| / ||update|| (1 when either norm is 0).

  Args:
    params: the Tensors to optimize (see Optimizer).
    lr: learning rate.
    b1, b2: decay rates of the first and second moment estimates, in [0, 1).
    eps: added to sqrt(v_hat) in the denominator.
    weight_decay: decoupled decay wd: the update gains wd * p before the trust ratio.
    adam: fix the trust ratio to 1 (AdamW).

  Raises:
    ValueError: b1 or b2 outside [0, 1), or a negative eps or weight_decay.
  """

  def __init__(self, params: list[Tensor], lr: float | Tensor = 0.001, b1: float = 0.9, b2: float = 0.999,
               eps: float = 1e-6, weight_decay: float = 0.0, adam: bool = False):
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
      raise ValueError(f"{type(self).__name__}: b1 and b2 must lie in [0, 1), got b1={b1} b2={b2}")
    if eps < 0 or weight_decay < 0:
      raise ValueError(f"{type(self).__name__}: eps and weight_decay must be >= 0, got eps={eps} "
                       f"weight_decay={weight_decay}")
    super().__init__(params, lr)
    self.b1, self.b2, self.eps, self.weight_decay, self.adam = b1, b2, eps, weight_decay, adam
    self.coupled_weight_decay = 0.0  # Adam's L2 term, added to the gradient (torch.optim.Adam's weight_decay)
    self.b1_t = _scalar_state(1.0, self.device)  # b1^t and b2^t: the bias corrections, kept as buffers so the
    self.b2_t = _scalar_state(1.0, self.device)  # kernels stay the same from step to step
    self.m = [_state_like(p) for p in self.params]
    self.v = [_state_like(p) for p in self.params]

  def _apply(self, grads: list[Tensor]) -> list[Tensor]:
    lr = self._lr_scalar()
    b1_t = self.b1_t.assign(self.b1_t * self.b1).reshape(())
    b2_t = self.b2_t.assign(self.b2_t * self.b2).reshape(())
    for i, (p, g) in enumerate(zip(self.params, grads)):
      old = p.detach()
      if self.coupled_weight_decay:
        g = g + self.coupled_weight_decay * old
      m = self.m[i].assign(self.b1 * self.m[i] + (1.0 - self.b1) * g)
      v = self.v[i].assign(self.b2 * self.v[i] + (1.0 - self.b2) * g.square())
      m_hat = m / (1.0 - b1_t)
      v_hat = v / (1.0 - b2_t)
      update = m_hat / (v_hat.sqrt() + self.eps)
      if self.weight_decay:
        update = update + self.weight_decay * old
      if not self.adam:
        update = update * _trust_ratio(old, update)
      p.assign(old - lr * update)
    return [self.b1_t, self.b2_t, *self.m, *self.v]


def _trust_ratio(p: Tensor, update: Tensor) -> Tensor:
  """||p|| / ||update||, or 1 where either norm is 0 (a zero layer, or no update)."""
  p_norm = p.float().square().sum().sqrt()
  u_norm = update.float().square().sum().sqrt()
  ratio = (u_norm > 0).where(p_norm / u_norm, 1.0)
  return (p_norm > 0).where(ratio, 1.0)


class Adam(LAMB):
  """Adam (torch.optim.Adam): bias-corrected moment estimates; weight_decay is an L2 term added to the gradient.

  Args:
    params: the Tensors to optimize (see Optimizer).
    lr: learning rate.
    b1, b2: decay rates of the first and second moment estimates, in [0, 1).
    eps: added to sqrt(v_hat) in the denominator.
    weight_decay: L2 penalty wd, added to the gradient as wd * p.

  Raises:
    ValueError: b1 or b2 outside [0, 1), or a negative eps or weight_decay.
  """

  def __init__(self, params: list[Tensor], lr: float | Tensor = 0.001, b1: float = 0.9, b2: float = 0.999,
               eps: float = 1e-8, weight_decay: float = 0.0):
    super().__init__(params, lr, b1, b2, eps, 0.0, adam=True)
    if weight_decay < 0:
      raise ValueError(f"Adam: weight_decay must be >= 0, got {weight_decay}")
    self.coupled_weight_decay = weight_decay


class AdamW(LAMB):
  """AdamW (torch.optim.AdamW): Adam with decoupled weight decay, p -= lr * wd * p each step.

  Args:
    params: the Tensors to optimize (see Optimizer).
    lr: learning rate.
    b1, b2: decay rates of the first and second moment estimates, in [0, 1).
    eps: added to sqrt(v_hat) in the denominator.
    weight_decay: decoupled decay factor wd.

  Raises:
    ValueError: b1 or b2 outside [0, 1), or a negative eps or weight_decay.
  """

  def __init__(self, params: list[Tensor], lr: float | Tensor = 0.001, b1: float = 0.9, b2: float = 0.999,
               eps: float = 1e-8, weight_decay: float = 0.01):
    super().__init__(params, lr, b1, b2, eps, weight_decay, adam=True)


__all__ = ["LAMB", "SGD", "Adam", "AdamW", "Optimizer", "OptimizerGroup"]
