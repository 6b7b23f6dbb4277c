"""Tensor: a lazy, differentiable n-dimensional array with tinygrad's public API.

Operations build graph-level IR (see compiler.ir); nothing runs until `.realize()`, `.numpy()`, `.item()` or
`.tolist()`. Broadcasting and type promotion follow numpy (see compiler.dtypes for the float/int rules).
The op families are mixins in their own modules: frontend.tensor_elementwise, frontend.tensor_movement
(reductions, movement, indexing entry points) and frontend.tensor_nn; gradients are derived by frontend.autograd.
"""
from __future__ import annotations

import math
import weakref

import numpy as np

from compiler.dtypes import DType, dtypes, to_dtype
from compiler.ir import Node, Ops
from frontend import graph as g
from frontend.autograd import gradients
from frontend.device import Device, supports_dtype
from frontend.realize import buffer_from_numpy, buffer_of, realize_nodes
from frontend.shapes import _as_shape, _prod
from frontend.tensor_elementwise import TensorElementwise
from frontend.tensor_movement import TensorShapeOps
from frontend.tensor_nn import TensorNN

# tensors that asked for gradients, by id (a WeakSet would compare Tensors with ==, which builds a graph)
_grad_tensors: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
  u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
  rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
  nan = np.isnan(x)
  out = rounded.astype(np.uint16)
  out[nan] = 0x7FC0
  return out


def _bf16_bits_to_f32(x: np.ndarray) -> np.ndarray:
  return (x.astype(np.uint32) << 16).view(np.float32)


class Tensor(TensorElementwise, TensorShapeOps, TensorNN):
  """A lazy tensor. Args: data (Python scalar, nested list, numpy array, or another Tensor's graph node), device
  ("CPU", ...), dtype, requires_grad.

  Raises:
    TypeError: data of an unsupported kind or dtype; ValueError: an unknown device.
  """
  training: bool = False
  no_grad: bool = False
  _seed: int = 0

  def __init__(self, data, device: str | None = None, dtype=None, requires_grad: bool | None = None):
    device = Device.canonicalize(device)
    dtype = None if dtype is None else to_dtype(dtype)
    if dtype is not None and not supports_dtype(device, dtype):
      raise TypeError(f"device {device} does not support dtype {dtype.name}")
    if isinstance(data, Node):
      node = data
    elif isinstance(data, Tensor):
      node = data.lazydata if dtype is None else g.cast(data.lazydata, dtype)
    elif isinstance(data, (bool, int, float)) and not isinstance(data, np.generic):
      dt = dtype or dtypes.from_py(data)
      node = g.const(data, dt, (), device)
    elif isinstance(data, (list, tuple)):
      dt = dtype or dtypes.from_py(list(data))
      arr = np.array(data, dtype=np.float32 if dt == dtypes.bfloat16 else dt.np)
      node = self._from_numpy(arr, dt, device)
    elif isinstance(data, (np.ndarray, np.generic)):
      arr = np.asarray(data)
      dt = dtype or dtypes.from_np(arr.dtype)
      node = self._from_numpy(arr, dt, device)
    elif data is None:
      node = self._from_numpy(np.zeros((0,), np.float32), dtype or dtypes.default_float, device)
    else:
      raise TypeError(f"cannot make a Tensor from {type(data).__name__}")
    self.lazydata: Node = node
    self.requires_grad = requires_grad
    self.grad: Tensor | None = None

  @property
  def requires_grad(self) -> bool | None:
    return self._requires_grad

  @requires_grad.setter
  def requires_grad(self, value: bool | None) -> None:
    self._requires_grad = value
    if value:
      _grad_tensors[id(self)] = self

  @staticmethod
  def _from_numpy(arr: np.ndarray, dt: DType, device: str) -> Node:
    if dt == dtypes.bfloat16:
      host = _f32_to_bf16_bits(arr.astype(np.float32))
    else:
      host = arr.astype(dt.np, copy=False)
    buf = buffer_from_numpy(host, dt, device)
    node = Node(Ops.BUFFER, dt, (), buf, (int(host.size),), device)
    return g.reshape(node, tuple(arr.shape))

  # ---- properties -----------------------------------------------------------------------------------------------
  @property
  def shape(self) -> tuple[int, ...]:
    return self.lazydata.shape

  @property
  def dtype(self) -> DType:
    return self.lazydata.dtype

  @property
  def device(self) -> str:
    return self.lazydata.device or Device.DEFAULT

  @property
  def ndim(self) -> int:
    return len(self.shape)

  def numel(self) -> int:
    return _prod(self.shape)

  def element_size(self) -> int:
    return self.dtype.itemsize

  def nbytes(self) -> int:
    return self.numel() * self.element_size()

  def __len__(self) -> int:
    if not self.shape:
      raise TypeError("len() of a 0-d tensor")
    return self.shape[0]

  def __repr__(self) -> str:
    return f"<Tensor shape={self.shape} dtype={self.dtype} device={self.device} requires_grad={self.requires_grad}>"

  def __hash__(self):
    return id(self)

  def __bool__(self):
    if self.numel() != 1:
      raise ValueError(f"the truth value of a tensor with {self.numel()} elements is ambiguous; use .any() or .all()")
    return bool(self.item())

  # ---- realization ----------------------------------------------------------------------------------------------
  def _derive(self, node: Node, *others: Tensor) -> Tensor:
    out = Tensor(node, device=node.device)
    flags = [t.requires_grad for t in (self, *others) if isinstance(t, Tensor)]
    if Tensor.no_grad:
      out.requires_grad = False
    elif any(f is True for f in flags):
      out.requires_grad = True
    elif any(f is None for f in flags):
      out.requires_grad = None
    else:
      out.requires_grad = False
    return out

  def realize(self, *others: Tensor) -> Tensor:
    """Runs the kernels that compute this tensor (and `others`) into buffers."""
    tensors = [self, *others]
    realize_nodes([t.lazydata for t in tensors])
    for t in tensors:
      t._after_realize()
    return self

  def _after_realize(self) -> None:
    """Drops the graph behind a realized tensor unless gradients may still flow through it."""
    node = self.lazydata
    if node.op is Ops.BUFFER or (self.requires_grad is True and node.op is not Ops.ASSIGN):
      return  # keep the graph while gradients may flow through it; an assigned tensor is a new leaf
    buf = buffer_of(node)
    if buf is not None and buf.size == node.size and node.op is not Ops.CONST:
      self.lazydata = g.reshape(Node(Ops.BUFFER, node.dtype, (), buf, (buf.size,), node.device), node.shape)

  def _contiguous_buffer(self):
    node = self.lazydata
    base = node
    while base.op is Ops.RESHAPE:
      base = base.src[0]
    if base.op is Ops.BUFFER and base.arg.size == node.size:
      return base.arg
    c = Node(Ops.CONTIGUOUS, node.dtype, (node,), None, node.shape, node.device)
    realize_nodes([c])
    return buffer_of(c)

  def numpy(self) -> np.ndarray:
    """The values as a numpy array (bfloat16 converts to float32, which numpy lacks)."""
    if self.numel() == 0:  # no values to compute: no kernel
      return np.zeros(self.shape, np.float32 if self.dtype == dtypes.bfloat16 else self.dtype.np)
    buf = self._contiguous_buffer()
    flat = buf.numpy()
    if self.dtype == dtypes.bfloat16:
      flat = _bf16_bits_to_f32(flat)
    return flat.reshape(self.shape)

  def item(self):
    if self.numel() != 1:
      raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
    return self.numpy().reshape(()).item()

  def tolist(self):
    return self.numpy().tolist()

  def data(self) -> memoryview:
    return memoryview(self.numpy())

  def to(self, device: str) -> Tensor:
    device = Device.canonicalize(device)
    if device == self.device:
      return self
    node = Node(Ops.COPY, self.dtype, (self.lazydata,), device, self.shape, device)
    return self._derive(node)

  def to_(self, device: str) -> Tensor:
    self.lazydata = self.to(device).lazydata
    return self

  def clone(self) -> Tensor:
    return self._derive(Node(Ops.CONTIGUOUS, self.dtype, (g.alu(Ops.ADD, self.lazydata, g.const_like(
      self.lazydata, 0)),), None, self.shape, self.lazydata.device))

  def detach(self) -> Tensor:
    out = Tensor(Node(Ops.DETACH, self.dtype, (self.lazydata,), None, self.shape, self.lazydata.device))
    out.requires_grad = False
    return out

  def contiguous(self) -> Tensor:
    return self._derive(Node(Ops.CONTIGUOUS, self.dtype, (self.lazydata,), None, self.shape, self.lazydata.device))

  def contiguous_backward(self) -> Tensor:
    return self

  def assign(self, x) -> Tensor:
    """Writes x into this tensor's buffer (in place once realized); shapes and dtypes must match.

    Raises:
      ValueError: the shapes differ.
    """
    if not isinstance(x, Tensor):
      x = Tensor(x, device=self.device, dtype=self.dtype)
    if x.shape != self.shape:
      raise ValueError(f"assign: value shape {x.shape} does not match target shape {self.shape}")
    if x.device != self.device:
      raise ValueError(f"assign: value is on {x.device}, target on {self.device}")
    value = g.cast(x.lazydata, self.dtype)
    target = self.lazydata
    if buffer_of(_base(target)) is None:
      self.realize()
      target = self.lazydata
    self.lazydata = Node(Ops.ASSIGN, self.dtype, (target, value), None, self.shape, self.lazydata.device)
    return self

  # ---- creation -------------------------------------------------------------------------------------------------
  @staticmethod
  def empty(*shape, device=None, dtype=None, **kwargs) -> Tensor:
    return Tensor.zeros(*shape, device=device, dtype=dtype, **kwargs)

  @staticmethod
  def full(shape, fill_value, device=None, dtype=None, requires_grad=None) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    dt = to_dtype(dtype) if dtype is not None else dtypes.from_py(fill_value)
    device = Device.canonicalize(device)
    return Tensor(g.const(fill_value, dt, shape, device), device=device, requires_grad=requires_grad)

  @staticmethod
  def zeros(*shape, device=None, dtype=None, requires_grad=None) -> Tensor:
    return Tensor.full(_as_shape(shape), 0.0, device, dtype or dtypes.default_float, requires_grad)

  @staticmethod
  def ones(*shape, device=None, dtype=None, requires_grad=None) -> Tensor:
    return Tensor.full(_as_shape(shape), 1.0, device, dtype or dtypes.default_float, requires_grad)

  def full_like(self, fill_value, dtype=None, device=None, **kwargs) -> Tensor:
    return Tensor.full(self.shape, fill_value, device or self.device, dtype or self.dtype, **kwargs)

  def zeros_like(self, **kwargs) -> Tensor:
    return self.full_like(0, **kwargs)

  def ones_like(self, **kwargs) -> Tensor:
    return self.full_like(1, **kwargs)

  def empty_like(self, **kwargs) -> Tensor:
    return self.full_like(0, **kwargs)

  @staticmethod
  def arange(start, stop=None, step=1, device=None, dtype=None, requires_grad=None) -> Tensor:
    if stop is None:
      start, stop = 0, start
    if step == 0:
      raise ValueError("arange step must not be 0")
    n = max(0, math.ceil((stop - start) / step))
    is_float = any(isinstance(v, float) for v in (start, stop, step))
    dt = to_dtype(dtype) if dtype is not None else (dtypes.default_float if is_float else dtypes.default_int)
    values = start + np.arange(n, dtype=np.float64) * step if is_float or dt.is_float else \
      start + np.arange(n, dtype=np.int64) * step
    return Tensor(values.astype(np.float32 if dt == dtypes.bfloat16 else dt.np), device=device, dtype=dt,
                  requires_grad=requires_grad)

  @staticmethod
  def linspace(start, stop, steps: int, device=None, dtype=None) -> Tensor:
    if steps < 0:
      raise ValueError(f"linspace needs steps >= 0, got {steps}")
    dt = to_dtype(dtype) if dtype is not None else dtypes.default_float
    values = np.linspace(start, stop, steps, dtype=np.float64)
    return Tensor(values.astype(np.float32 if dt == dtypes.bfloat16 else dt.np), device=device, dtype=dt)

  @staticmethod
  def eye(n: int, m: int | None = None, device=None, dtype=None, requires_grad=None) -> Tensor:
    m = n if m is None else m
    rows = Tensor.arange(n, device=device).reshape(n, 1)
    cols = Tensor.arange(m, device=device).reshape(1, m)
    out = (rows == cols).cast(to_dtype(dtype) if dtype is not None else dtypes.default_float)
    out.requires_grad = requires_grad
    return out

  # ---- random numbers: threefry2x32, counter based, the same bits on every device --------------------------------
  @staticmethod
  def manual_seed(seed: int = 0) -> None:
    Tensor._seed = int(seed)
    for counter in Tensor._rng_counters.values():
      counter.assign(counter.zeros_like()).realize()

  _rng_counters: dict = {}  # device -> uint32 Tensor of shape (1,): draws so far (mod 2^32)
  _rng_index: dict = {}  # (n, device) -> uint32 arange(n), uploaded once

  @staticmethod
  def _random_bits(n: int, device) -> Tensor:
    """n uniformly random uint32 values: threefry2x32(key=(seed lo, seed hi), counter=(index + drawn, 0)).

    The draw counter lives on the device and is advanced by a kernel, so a TinyJit replay draws fresh numbers, and
    the sequence is the same as eager execution (and the same on every device)."""
    counter = Tensor._rng_counters.get(device)
    if counter is None:
      counter = Tensor(np.zeros(1, np.uint32), device=device)
      Tensor._rng_counters[device] = counter
    index = Tensor._rng_index.get((n, device))
    if index is None:
      index = Tensor(np.arange(n, dtype=np.uint32), device=device)
      Tensor._rng_index[(n, device)] = index
    lo = (index + counter.expand(n)).contiguous().realize()  # reads the counter before it advances
    counter.assign(counter + (n & 0xFFFFFFFF)).realize()
    hi = index.zeros_like()
    key = (Tensor._seed & 0xFFFFFFFF, (Tensor._seed >> 32) & 0xFFFFFFFF)
    return _threefry2x32(lo, hi, key)

  @staticmethod
  def rand(*shape, device=None, dtype=None, requires_grad=None, **kwargs) -> Tensor:
    shape = _as_shape(shape)
    device = Device.canonicalize(device)
    dt = to_dtype(dtype) if dtype is not None else dtypes.default_float
    bits = Tensor._random_bits(_prod(shape), device)
    # the top p bits as a float in [0, 1), p the significand bits of the result: exact in it, so never rounds up
    # to 1.0 (24 for float32 and float64, 11 for float16, 8 for bfloat16)
    p = {"float16": 11, "bfloat16": 8}.get(dt.name, 24)
    out = (bits >> (32 - p)).cast(dtypes.float32) * (1.0 / (1 << p))
    return _fresh(out.reshape(shape).cast(dt), requires_grad)

  @staticmethod
  def uniform(*shape, low=0.0, high=1.0, dtype=None, requires_grad=None, **kwargs) -> Tensor:
    out = Tensor.rand(*shape, **kwargs) * (high - low) + low
    return _fresh(out.cast(to_dtype(dtype) if dtype is not None else dtypes.default_float), requires_grad)

  @staticmethod
  def randn(*shape, dtype=None, requires_grad=None, **kwargs) -> Tensor:
    shape = _as_shape(shape)
    # Box-Muller on two uniform draws
    u = Tensor.rand(2, *shape, **kwargs)
    u1, u2 = u[0], u[1]
    r = ((1.0 - u1).log() * -2.0).sqrt()
    out = r * (u2 * (2 * math.pi)).cos()
    return _fresh(out.cast(to_dtype(dtype) if dtype is not None else dtypes.default_float), requires_grad)

  @staticmethod
  def normal(*shape, mean=0.0, std=1.0, requires_grad=None, **kwargs) -> Tensor:
    return _fresh(Tensor.randn(*shape, **kwargs) * std + mean, requires_grad)

  def rand_like(self, dtype=None, device=None, **kwargs) -> Tensor:
    """Uniform [0, 1) numbers of this tensor's shape, dtype and device (unless given)."""
    return Tensor.rand(*self.shape, device=device or self.device, dtype=dtype or self.dtype, **kwargs)

  def randn_like(self, dtype=None, device=None, **kwargs) -> Tensor:
    """Standard normal numbers of this tensor's shape, dtype and device (unless given)."""
    return Tensor.randn(*self.shape, device=device or self.device, dtype=dtype or self.dtype, **kwargs)

  @staticmethod
  def randint(*shape, low=0, high=10, device=None, dtype=None, **kwargs) -> Tensor:
    if high <= low:
      raise ValueError(f"randint needs low < high, got low={low} high={high}")
    dt = to_dtype(dtype) if dtype is not None else dtypes.default_int
    u = Tensor.rand(*shape, device=device)
    return (u * (high - low)).floor().cast(dt) + low

  @staticmethod
  def scaled_uniform(*shape, **kwargs) -> Tensor:
    shape = _as_shape(shape)
    return Tensor.uniform(*shape, low=-1.0, high=1.0, **kwargs) * (_prod(shape) ** -0.5)

  @staticmethod
  def glorot_uniform(*shape, **kwargs) -> Tensor:
    shape = _as_shape(shape)
    bound = (6 / (shape[0] + _prod(shape[1:]))) ** 0.5
    return Tensor.uniform(*shape, low=-bound, high=bound, **kwargs)

  @staticmethod
  def kaiming_uniform(*shape, a: float = 0.01, **kwargs) -> Tensor:
    shape = _as_shape(shape)
    bound = math.sqrt(3.0) * math.sqrt(2.0 / (1 + a ** 2)) / math.sqrt(_prod(shape[1:]))
    return Tensor.uniform(*shape, low=-bound, high=bound, **kwargs)

  def multinomial(self, num_samples: int = 1, replacement: bool = False) -> Tensor:
    """num_samples class indices drawn with probabilities proportional to the (1-D or 2-D, per row) weights.

    Raises:
      ValueError: weights of another rank, or num_samples > 1 without replacement.
    """
    if self.ndim not in (1, 2) or (num_samples > 1 and not replacement):
      raise ValueError("multinomial supports 1-D/2-D weights, and num_samples > 1 only with replacement=True")
    weight = self.unsqueeze(0) if self.ndim == 1 else self
    cumulative = weight.cumsum(1).float()
    cdf = cumulative / cumulative[:, -1].unsqueeze(1)
    unif = Tensor.rand(num_samples, cdf.shape[0], 1, device=self.device)
    samples = (unif >= cdf).sum(2).permute(1, 0)
    return (samples.squeeze(0) if self.ndim == 1 else samples).cast(dtypes.int32)

  # ---- autograd -------------------------------------------------------------------------------------------------
  def backward(self, gradient: Tensor | None = None) -> Tensor:
    """Adds d(self)/d(t) to t.grad for every tensor t with requires_grad=True that self depends on.

    Raises:
      RuntimeError: self is not a scalar and no gradient was given.
    """
    if gradient is None:
      if self.numel() != 1:
        raise RuntimeError(f"backward() on a tensor of shape {self.shape} needs a gradient argument")
      gradient = Tensor.ones(self.shape, device=self.device, dtype=self.dtype)
    targets = [t for t in list(_grad_tensors.values()) if t.requires_grad]
    node_ids = {id(n) for n in self.lazydata.toposort()}
    targets = [t for t in targets if id(t.lazydata) in node_ids]
    if not targets:
      raise RuntimeError("backward(): no tensor with requires_grad=True contributes to this value")
    grads = gradients(self.lazydata, gradient.lazydata, [t.lazydata for t in targets])
    for t in targets:
      gnode = grads.get(id(t.lazydata))
      if gnode is None:  # reached only through ops with no gradient (rounding, comparisons): zero, as in torch
        gnode = g.const_like(t.lazydata, 0)
      gt = Tensor(gnode)
      gt.requires_grad = False
      t.grad = gt if t.grad is None else (t.grad + gt)
    return self

  def requires_grad_(self, requires_grad: bool = True) -> Tensor:
    self.requires_grad = requires_grad
    if requires_grad:
      _grad_tensors[id(self)] = self
    return self


def _base(node: Node) -> Node:
  while node.op in (Ops.RESHAPE, Ops.DETACH) or (node.op in (Ops.PERMUTE, Ops.SHRINK, Ops.EXPAND, Ops.PAD, Ops.FLIP)):
    node = node.src[0]
  return node


def _fresh(t: Tensor, requires_grad) -> Tensor:
  out = Tensor(t.lazydata)
  out.requires_grad = requires_grad
  if requires_grad:
    _grad_tensors[id(out)] = out
  return out


def _rotl(x: Tensor, r: int) -> Tensor:
  return (x << r) | (x >> (32 - r))


_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(x0: Tensor, x1: Tensor, key: tuple[int, int]) -> Tensor:
  """Threefry-2x32 with 20 rounds (Salmon et al., SC'11, "Parallel random numbers: as easy as 1, 2, 3")."""
  ks = (key[0], key[1], 0x1BD11BDA ^ key[0] ^ key[1])
  x0 = x0 + ks[0]
  x1 = x1 + ks[1]
  for block in range(5):
    for r in _THREEFRY_ROTATIONS[block % 2]:
      x0 = x0 + x1
      x1 = _rotl(x1, r) ^ x0
    x0 = x0 + ks[(block + 1) % 3]
    x1 = x1 + ((ks[(block + 2) % 3] + block + 1) & 0xFFFFFFFF)
  return x0
