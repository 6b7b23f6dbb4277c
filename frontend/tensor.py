"""Tensor: a lazy, differentiable n-dimensional array with tinygrad's public API.

Operations build graph-level IR (see compiler.ir); nothing runs until `.realize()`, `.numpy()`, `.item()` or
`.tolist()`. Broadcasting and type promotion follow numpy (see compiler.dtypes for the float/int rules).
Neural-network ops live in frontend.tensor_nn (mixed in below); gradients are derived by frontend.autograd.
"""
from __future__ import annotations

import math
import weakref
from typing import Iterable

import numpy as np

from compiler.dtypes import DType, dtypes, least_upper_dtype, scalar_result_dtype, to_dtype
from compiler.ir import Node, Ops
from frontend import graph as g
from frontend.autograd import gradients
from frontend.device import Device, supports_dtype
from frontend.realize import buffer_from_numpy, buffer_of, realize_nodes
from frontend.tensor_nn import TensorNN

# tensors that asked for gradients, by id (a WeakSet would compare Tensors with ==, which builds a graph)
_grad_tensors: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _prod(xs) -> int:
  return math.prod(xs)


def _f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
  u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
  rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
  nan = np.isnan(x)
  out = rounded.astype(np.uint16)
  out[nan] = 0x7FC0
  return out


def _bf16_bits_to_f32(x: np.ndarray) -> np.ndarray:
  return (x.astype(np.uint32) << 16).view(np.float32)


def _normalize_axis(axis: int, ndim: int) -> int:
  if not -max(ndim, 1) <= axis < max(ndim, 1):
    raise IndexError(f"axis {axis} is out of range for a tensor with {ndim} dimensions")
  return axis % max(ndim, 1)


def _as_shape(shape) -> tuple[int, ...]:
  """Varargs or one sequence, as tinygrad takes shapes and axis orders: f(2, 3), f((2, 3)) and f([2, 3])."""
  if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
    shape = shape[0]
  return tuple(int(s) for s in shape)


class Tensor(TensorNN):
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
    if node.op is not Ops.CONST:
      realize_nodes([node]) if self.requires_grad is True else None
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

  # ---- broadcasting and elementwise ---------------------------------------------------------------------------
  def _broadcasted(self, y, reverse: bool = False, match_dtype: bool = True) -> tuple[Tensor, Tensor]:
    x = self
    if not isinstance(y, Tensor):
      # an implicit constant never asks for gradients: c * 2 keeps c's requires_grad (False stays False)
      if isinstance(y, (np.ndarray, list, tuple)):
        y = Tensor(y, device=x.device, requires_grad=False)
      else:
        dt = scalar_result_dtype(x.dtype, y)
        if dt != x.dtype:
          x = x.cast(dt)
        y = Tensor(g.const(y, dt, (), x.lazydata.device or x.device), device=x.device, requires_grad=False)
    if x.device != y.device:
      raise ValueError(f"operands are on different devices: {x.device} and {y.device}; use .to() first")
    if match_dtype and x.dtype != y.dtype:
      dt = least_upper_dtype(x.dtype, y.dtype)
      x, y = x.cast(dt), y.cast(dt)
    shape = _broadcast_shape(x.shape, y.shape)
    x, y = x._broadcast_to(shape), y._broadcast_to(shape)
    return (y, x) if reverse else (x, y)

  def _broadcast_to(self, shape: tuple[int, ...]) -> Tensor:
    if self.shape == shape:
      return self
    padded = (1,) * (len(shape) - self.ndim) + self.shape
    return self.reshape(padded).expand(shape)

  def _alu(self, op: Ops, *others: Tensor) -> Tensor:
    return self._derive(g.alu(op, self.lazydata, *[o.lazydata for o in others]), *others)

  def _binop(self, op: Ops, y, reverse: bool = False) -> Tensor:
    a, b = self._broadcasted(y, reverse)
    return a._alu(op, b)

  def cast(self, dtype) -> Tensor:
    dtype = to_dtype(dtype)
    if dtype == self.dtype:
      return self
    if not supports_dtype(self.device, dtype):
      raise TypeError(f"device {self.device} does not support dtype {dtype.name}")
    return self._derive(g.cast(self.lazydata, dtype))

  def bitcast(self, dtype) -> Tensor:
    dtype = to_dtype(dtype)
    out = Tensor(g.bitcast(self.lazydata, dtype))
    out.requires_grad = False
    return out

  def float(self) -> Tensor:
    return self.cast(dtypes.float32)

  def half(self) -> Tensor:
    return self.cast(dtypes.float16)

  def double(self) -> Tensor:
    return self.cast(dtypes.float64)

  def int(self) -> Tensor:
    return self.cast(dtypes.int32)

  def long(self) -> Tensor:
    return self.cast(dtypes.int64)

  def bool(self) -> Tensor:
    return self.cast(dtypes.bool)

  def bfloat16(self) -> Tensor:
    return self.cast(dtypes.bfloat16)

  def _to_float(self) -> Tensor:
    return self if self.dtype.is_float else self.cast(dtypes.default_float)

  def add(self, y, reverse=False) -> Tensor:
    return self._binop(Ops.ADD, y, reverse)

  def sub(self, y, reverse=False) -> Tensor:
    return self._binop(Ops.SUB, y, reverse)

  def mul(self, y, reverse=False) -> Tensor:
    return self._binop(Ops.MUL, y, reverse)

  def div(self, y, reverse=False, rounding_mode: str | None = None) -> Tensor:
    a, b = self._broadcasted(y, reverse)
    if rounding_mode == "trunc":
      if a.dtype.is_int:
        return a._alu(Ops.IDIV, b)
      if a.dtype in (dtypes.float16, dtypes.bfloat16):  # a 16-bit quotient can round up to the next integer
        return (a.float() / b.float()).trunc().cast(a.dtype)
      return (a._to_float() / b._to_float()).trunc()
    if rounding_mode == "floor":
      return a // b
    a, b = a._to_float(), b._to_float()
    return a._alu(Ops.FDIV, b)

  def idiv(self, y, reverse=False) -> Tensor:
    """Integer division truncating toward zero (C semantics)."""
    a, b = self._broadcasted(y, reverse)
    return a._alu(Ops.IDIV, b)

  def __floordiv__(self, y) -> Tensor:
    return _floordiv(*self._broadcasted(y))

  def __rfloordiv__(self, y) -> Tensor:
    return _floordiv(*self._broadcasted(y, True))

  def mod(self, y, reverse=False) -> Tensor:
    """Python/numpy modulo: the result has the sign of the divisor."""
    a, b = self._broadcasted(y, reverse)
    if a.dtype in (dtypes.float16, dtypes.bfloat16):
      return (a.float() - _floordiv(a.float(), b.float()) * b.float()).cast(a.dtype)
    return a - _floordiv(a, b) * b

  def pow(self, y, reverse=False) -> Tensor:
    """self ** y (y ** self when reverse). Integer ** integer stays an integer (wrapping, as numpy); a negative
    integer exponent gives trunc(1 / base ** -y), which is 0 unless the base is 1 or -1. Other types compute in
    float as |a| ** b = exp2(b * log2|a|), with the sign of a negative base for an integral b (NaN otherwise)."""
    scalar = isinstance(y, (int, float)) and not isinstance(y, bool)
    if scalar and not reverse and isinstance(y, float) and not self.dtype.is_float:
      return self._to_float().pow(y)  # a float scalar makes an integer tensor float, as in every binary op
    if scalar and not reverse:
      if y == 2:
        return self * self
      if y == 1:
        return self
      if y == 0.5:
        return self._to_float().sqrt()
      if y == 0:
        return self.ones_like()
      if y == -1:
        return self._to_float().reciprocal()
      if isinstance(y, int) and self.dtype.is_int and y > 0:
        return _int_pow_const(self, y)
      if self.dtype.is_float or not isinstance(y, int):
        return _pow_scalar_exponent(self._to_float(), float(y))
    a, b = self._broadcasted(y, reverse)
    if a.dtype.is_int:
      return _int_pow(a, b)
    if scalar and reverse and b.dtype.is_float:
      return _pow_scalar_base(float(y), b)
    return _pow_tensors(a._to_float(), b._to_float())

  def maximum(self, y) -> Tensor:
    a, b = self._broadcasted(y)
    if a.dtype.is_bool:
      return a | b
    return a._alu(Ops.MAX, b)

  def minimum(self, y) -> Tensor:
    a, b = self._broadcasted(y)
    if a.dtype.is_bool:
      return a & b
    # min(a, b) = -max(-a, -b) for floats; for integers ~x = -1 - x reverses the order without overflow (-(-128)
    # wraps in int8) and works for unsigned types as well
    return -((-a).maximum(-b)) if a.dtype.is_float else ~((~a).maximum(~b))

  def where(self, x, y) -> Tensor:
    cond = self if self.dtype.is_bool else self != 0
    if not isinstance(x, Tensor) and not isinstance(y, Tensor):
      dt = least_upper_dtype(dtypes.from_py(x), dtypes.from_py(y))
      x = Tensor(x, device=self.device, dtype=dt, requires_grad=False)
    if not isinstance(x, Tensor):
      x, y = y._broadcasted(x, reverse=True)
    else:
      x, y = x._broadcasted(y)
    shape = _broadcast_shape(cond.shape, x.shape)
    cond, x, y = cond._broadcast_to(shape), x._broadcast_to(shape), y._broadcast_to(shape)
    return x._derive(g.alu(Ops.WHERE, cond.lazydata, x.lazydata, y.lazydata), y, cond)

  def _cmp(self, op: Ops, y, reverse=False) -> Tensor:
    a, b = self._broadcasted(y, reverse)
    out = a._alu(op, b)
    out.requires_grad = False
    return out

  def __lt__(self, y):
    return self._cmp(Ops.CMPLT, y)

  def __gt__(self, y):
    return self._cmp(Ops.CMPLT, y, True)

  # with floats a NaN is neither less, greater nor equal, so a <= b is (a < b) | (a == b), not !(b < a)
  def __le__(self, y):
    a, b = self._broadcasted(y)
    return a._cmp(Ops.CMPLT, b) | a._cmp(Ops.CMPEQ, b) if a.dtype.is_float else b._cmp(Ops.CMPLT, a).logical_not()

  def __ge__(self, y):
    a, b = self._broadcasted(y)
    return b._cmp(Ops.CMPLT, a) | a._cmp(Ops.CMPEQ, b) if a.dtype.is_float else a._cmp(Ops.CMPLT, b).logical_not()

  def __eq__(self, y):  # type: ignore[override]
    return self._cmp(Ops.CMPEQ, y)

  def __ne__(self, y):  # type: ignore[override]
    return self._cmp(Ops.CMPNE, y)

  def eq(self, y):
    return self == y

  def ne(self, y):
    return self != y

  def logical_not(self) -> Tensor:
    return self.bool()._alu(Ops.NOT)

  def _bitwise(self, op: Ops, y, reverse=False) -> Tensor:
    a, b = self._broadcasted(y, reverse)
    if a.dtype.is_float:
      raise TypeError(f"{op.name.lower()} needs integer or bool tensors, got {a.dtype.name}")
    return a._alu(op, b)

  def bitwise_and(self, y) -> Tensor:
    return self._bitwise(Ops.AND, y)

  def bitwise_or(self, y) -> Tensor:
    return self._bitwise(Ops.OR, y)

  def bitwise_xor(self, y) -> Tensor:
    return self._bitwise(Ops.XOR, y)

  def bitwise_not(self) -> Tensor:
    if self.dtype.is_float:
      raise TypeError(f"bitwise_not needs integer or bool tensors, got {self.dtype.name}")
    return self._alu(Ops.NOT)

  def lshift(self, y) -> Tensor:
    if self.dtype.is_float:
      raise TypeError(f"<< needs an integer tensor, got {self.dtype.name}")
    a, b = self._broadcasted(y)
    return a._alu(Ops.SHL, b)

  def rshift(self, y) -> Tensor:
    if self.dtype.is_float:
      raise TypeError(f">> needs an integer tensor, got {self.dtype.name}")
    a, b = self._broadcasted(y)
    return a._alu(Ops.SHR, b)

  # unary math
  def neg(self) -> Tensor:
    return self.logical_not() if self.dtype.is_bool else self._alu(Ops.NEG)

  def reciprocal(self) -> Tensor:
    return self._to_float()._alu(Ops.RECIP)

  def sqrt(self) -> Tensor:
    return self._to_float()._alu(Ops.SQRT)

  def rsqrt(self) -> Tensor:
    return self.sqrt().reciprocal()

  def exp2(self) -> Tensor:
    return self._to_float()._alu(Ops.EXP2)

  def log2(self) -> Tensor:
    return self._to_float()._alu(Ops.LOG2)

  def exp(self) -> Tensor:
    return (self._to_float() * (1 / math.log(2))).exp2()

  def log(self) -> Tensor:
    return self.log2() * math.log(2)

  def sin(self) -> Tensor:
    return self._to_float()._alu(Ops.SIN)

  def cos(self) -> Tensor:
    return ((math.pi / 2) - self._to_float()).sin()

  def tan(self) -> Tensor:
    return self.sin() / self.cos()

  def trunc(self) -> Tensor:
    return self if not self.dtype.is_float else self._alu(Ops.TRUNC)

  def floor(self) -> Tensor:
    if not self.dtype.is_float:
      return self
    t = self.trunc()
    return (self < t).where(t - 1, t)

  def ceil(self) -> Tensor:
    if not self.dtype.is_float:
      return self
    t = self.trunc()
    return (self > t).where(t + 1, t)

  def round(self) -> Tensor:
    """Rounds half to even, as numpy and torch do."""
    if not self.dtype.is_float:
      return self
    f = self.floor()
    diff = self - f
    even = (f * 0.5).floor() * 2 == f
    up = (diff > 0.5) | ((diff == 0.5) & even.logical_not())
    return up.where(f + 1, f)

  def abs(self) -> Tensor:
    if self.dtype.is_unsigned or self.dtype.is_bool:
      return self
    return (self < 0).where(-self, self)

  def sign(self) -> Tensor:
    """-1, 0 or 1 by the sign of each element; NaN stays NaN (as numpy and torch)."""
    zero = self.zeros_like()
    out = (self > 0).cast(self.dtype) - (self < 0).cast(self.dtype) + zero
    return self.isnan().where(self, out) if self.dtype.is_float else out

  def isnan(self) -> Tensor:
    return self != self

  def isinf(self, detect_positive: bool = True, detect_negative: bool = True) -> Tensor:
    pos = (self == math.inf) if detect_positive else self.zeros_like(dtype=dtypes.bool)
    neg = (self == -math.inf) if detect_negative else self.zeros_like(dtype=dtypes.bool)
    return pos | neg

  def isfinite(self) -> Tensor:
    return (self.isinf() | self.isnan()).logical_not()

  def lerp(self, end, weight) -> Tensor:
    return self + (end - self) * weight

  def square(self) -> Tensor:
    return self * self

  def clip(self, min_=None, max_=None) -> Tensor:
    if min_ is None and max_ is None:
      raise ValueError("clip needs at least one of min_ and max_")
    out = self
    if min_ is not None:
      out = out.maximum(min_)
    if max_ is not None:
      out = out.minimum(max_)
    return out

  clamp = clip

  # operators
  def __neg__(self):
    return self.neg()

  def __add__(self, y):
    return self.add(y)

  def __radd__(self, y):
    return self.add(y, True)

  def __sub__(self, y):
    return self.sub(y)

  def __rsub__(self, y):
    return self.sub(y, True)

  def __mul__(self, y):
    return self.mul(y)

  def __rmul__(self, y):
    return self.mul(y, True)

  def __truediv__(self, y):
    return self.div(y)

  def __rtruediv__(self, y):
    return self.div(y, True)

  def __mod__(self, y):
    return self.mod(y)

  def __rmod__(self, y):
    return self.mod(y, True)

  def __pow__(self, y):
    return self.pow(y)

  def __rpow__(self, y):
    return self.pow(y, True)

  def __matmul__(self, y):
    return self.matmul(y)

  def __rmatmul__(self, y):
    return Tensor(y, device=self.device).matmul(self) if not isinstance(y, Tensor) else y.matmul(self)

  def __and__(self, y):
    return self.bitwise_and(y)

  def __rand__(self, y):
    return self._bitwise(Ops.AND, y, True)

  def __or__(self, y):
    return self.bitwise_or(y)

  def __ror__(self, y):
    return self._bitwise(Ops.OR, y, True)

  def __xor__(self, y):
    return self.bitwise_xor(y)

  def __rxor__(self, y):
    return self._bitwise(Ops.XOR, y, True)

  def __invert__(self):
    return self.bitwise_not()

  def __lshift__(self, y):
    return self.lshift(y)

  def __rshift__(self, y):
    return self.rshift(y)

  def __iadd__(self, y):
    return self.assign(self + y)

  def __isub__(self, y):
    return self.assign(self - y)

  def __imul__(self, y):
    return self.assign(self * y)

  def __itruediv__(self, y):
    return self.assign(self / y)

  # ---- reductions -----------------------------------------------------------------------------------------------
  def _axes(self, axis) -> tuple[int, ...]:
    if axis is None:
      return tuple(range(self.ndim))
    if isinstance(axis, int):
      axis = (axis,)
    return tuple(sorted({_normalize_axis(a, self.ndim) for a in axis}))

  def _reduce(self, op: Ops, axis=None, keepdim: bool = False) -> Tensor:
    axes = self._axes(axis)
    if self.ndim == 0:
      return self
    if self.numel() == 0:
      # nothing to read: an empty reduced axis gives the identity, an empty kept axis an empty result; no kernel
      from compiler.ir import reduce_identity
      shape = tuple(1 if i in axes else s for i, s in enumerate(self.shape))
      out = Tensor.full(shape, reduce_identity(op, self.dtype), self.device, self.dtype)
    else:
      out = self._derive(g.reduce(self.lazydata, op, axes))
    if keepdim:
      return out
    return out.reshape(tuple(s for i, s in enumerate(self.shape) if i not in axes))

  def sum(self, axis=None, keepdim=False, dtype=None) -> Tensor:
    src = self
    if dtype is not None:
      src = self.cast(dtype)
    elif self.dtype.is_bool or (self.dtype.is_int and self.dtype.itemsize < 4):
      src = self.cast(dtypes.uint32 if self.dtype.is_unsigned else dtypes.int32)
    elif self.dtype in (dtypes.float16, dtypes.bfloat16):
      return self.float()._reduce(Ops.ADD, axis, keepdim).cast(self.dtype)
    return src._reduce(Ops.ADD, axis, keepdim)

  def prod(self, axis=None, keepdim=False, dtype=None) -> Tensor:
    src = self.cast(dtype) if dtype is not None else (self.cast(dtypes.int32) if self.dtype.is_bool else self)
    return src._reduce(Ops.MUL, axis, keepdim)

  def max(self, axis=None, keepdim=False) -> Tensor:
    return self._reduce(Ops.MAX, axis, keepdim)

  def min(self, axis=None, keepdim=False) -> Tensor:
    if self.dtype.is_bool:
      return self.logical_not().max(axis, keepdim).logical_not()
    if self.dtype.is_int:
      return ~((~self).max(axis, keepdim))  # ~x reverses the order of integers without overflow
    return -((-self).max(axis, keepdim))

  def any(self, axis=None, keepdim=False) -> Tensor:
    return self.bool().max(axis, keepdim)

  def all(self, axis=None, keepdim=False) -> Tensor:
    return self.logical_not().any(axis, keepdim).logical_not()

  def mean(self, axis=None, keepdim=False) -> Tensor:
    x = self._to_float()
    count = _prod(self.shape[a] for a in self._axes(axis)) if self.ndim else 1
    return x.sum(axis, keepdim) * (1.0 / count) if count else x.sum(axis, keepdim) * math.nan

  def var(self, axis=None, keepdim=False, correction=1) -> Tensor:
    x = self._to_float()
    squares = (x - x.mean(axis, keepdim=True)).square()
    count = _prod(self.shape[a] for a in self._axes(axis)) if self.ndim else 1
    return squares.sum(axis, keepdim) / max(0, count - correction)

  def std(self, axis=None, keepdim=False, correction=1) -> Tensor:
    return self.var(axis, keepdim, correction).sqrt()

  def var_mean(self, axis=None, keepdim=False, correction=1):
    return self.var(axis, keepdim, correction), self.mean(axis, keepdim)

  def std_mean(self, axis=None, keepdim=False, correction=1):
    return self.std(axis, keepdim, correction), self.mean(axis, keepdim)

  def _arg_extreme(self, axis, keepdim, largest: bool) -> Tensor:
    x = self
    if not largest:  # the first maximum of an order-reversed copy; ~x reverses integers exactly, even int64
      x = self.logical_not() if self.dtype.is_bool else (~self if self.dtype.is_int else -self)
    if axis is None:
      return x.flatten()._arg_extreme(0, False, True).reshape(() if not keepdim else (1,) * self.ndim)
    axis = _normalize_axis(axis, self.ndim)
    n = self.shape[axis]
    is_max = x == x.max(axis, keepdim=True)
    if x.dtype.is_float:
      is_max = is_max | x.isnan()  # max() propagates NaN, and numpy's argmax/argmin pick the first NaN
    # the first index of the maximum: largest (n - i) among the maxima
    rev = Tensor.arange(n, 0, -1, device=self.device).reshape((n,) + (1,) * (self.ndim - axis - 1))
    best = (is_max.where(rev._broadcast_to(self.shape), 0)).max(axis, keepdim)
    out = (n - best).cast(dtypes.int32)
    out.requires_grad = False
    return out

  def argmax(self, axis=None, keepdim=False) -> Tensor:
    return self._arg_extreme(axis, keepdim, True)

  def argmin(self, axis=None, keepdim=False) -> Tensor:
    return self._arg_extreme(axis, keepdim, False)

  def _cumulative(self, axis: int, op: Ops) -> Tensor:
    axis = _normalize_axis(axis, self.ndim)
    n = self.shape[axis]
    x = self.transpose(axis, -1)
    # window i covers x[0..i]: pad on the left, then take n sliding windows of length n
    fill = {Ops.ADD: 0, Ops.MUL: 1, Ops.MAX: dtypes.min(self.dtype)}[op]
    padded = x.pad(((0, 0),) * (x.ndim - 1) + ((n - 1, 0),), value=fill)
    windows = padded._pool((n,), 1, 1)
    return windows._reduce(op, -1).transpose(axis, -1)

  def cumsum(self, axis: int = 0) -> Tensor:
    x = self.cast(dtypes.int32) if self.dtype.is_bool else self
    return x._cumulative(axis, Ops.ADD) if self.ndim else x

  def cumprod(self, axis: int = 0) -> Tensor:
    return self._cumulative(axis, Ops.MUL) if self.ndim else self

  def cummax(self, axis: int = 0) -> Tensor:
    return self._cumulative(axis, Ops.MAX) if self.ndim else self

  def logsumexp(self, axis=None, keepdim=False) -> Tensor:
    m = self.max(axis, keepdim=True).detach()
    out = (self - m).exp().sum(axis, keepdim=True).log() + m
    return out if keepdim else out.reshape(tuple(s for i, s in enumerate(self.shape) if i not in self._axes(axis)))

  def softmax(self, axis=-1, dtype=None) -> Tensor:
    x = self.cast(dtype) if dtype is not None else self._to_float()
    e = (x - x.max(axis, keepdim=True).detach()).exp()
    return e / e.sum(axis, keepdim=True)

  def log_softmax(self, axis=-1, dtype=None) -> Tensor:
    x = self.cast(dtype) if dtype is not None else self._to_float()
    shifted = x - x.max(axis, keepdim=True).detach()
    return shifted - shifted.exp().sum(axis, keepdim=True).log()

  # ---- movement -------------------------------------------------------------------------------------------------
  def reshape(self, shape, *args) -> Tensor:
    shape = _as_shape((shape, *args))
    if shape.count(-1) > 1:
      raise ValueError(f"reshape {shape}: only one dimension can be -1")
    if -1 in shape:
      known = _prod(s for s in shape if s != -1)
      if known == 0 or self.numel() % known:
        raise ValueError(f"cannot reshape {self.shape} ({self.numel()} elements) to {shape}")
      shape = tuple(self.numel() // known if s == -1 else s for s in shape)
    shape = tuple(self.shape[i] if s is None else s for i, s in enumerate(shape))
    return self._derive(_reshape_node(self.lazydata, shape))

  def view(self, *shape) -> Tensor:
    return self.reshape(*shape)

  def permute(self, order, *args) -> Tensor:
    order = _as_shape((order, *args))
    order = tuple(_normalize_axis(a, self.ndim) for a in order)
    return self._derive(g.permute(self.lazydata, order))

  def transpose(self, dim0: int = 1, dim1: int = 0) -> Tensor:
    order = list(range(self.ndim))
    a, b = _normalize_axis(dim0, self.ndim), _normalize_axis(dim1, self.ndim)
    order[a], order[b] = order[b], order[a]
    return self.permute(order)

  @property
  def T(self) -> Tensor:  # noqa: N802
    return self.permute(tuple(reversed(range(self.ndim))))

  def expand(self, shape, *args) -> Tensor:
    shape = _as_shape((shape, *args))
    full = (1,) * (len(shape) - self.ndim) + self.shape
    shape = tuple(f if s == -1 else s for s, f in zip(shape, full))
    if len(shape) < self.ndim:
      raise ValueError(f"cannot expand shape {self.shape} to {shape}: fewer dimensions")
    return self.reshape(full)._derive(g.expand(self.reshape(full).lazydata, shape))

  def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if self.ndim == 0:
      return self.reshape(1)
    s, e = _normalize_axis(start_dim, self.ndim), _normalize_axis(end_dim, self.ndim)
    return self.reshape(self.shape[:s] + (_prod(self.shape[s:e + 1]),) + self.shape[e + 1:])

  def unflatten(self, dim: int, sizes) -> Tensor:
    dim = _normalize_axis(dim, self.ndim)
    return self.reshape(self.shape[:dim] + tuple(sizes) + self.shape[dim + 1:])

  def squeeze(self, dim: int | None = None) -> Tensor:
    if dim is None:
      return self.reshape(tuple(s for s in self.shape if s != 1))
    if self.ndim == 0:
      return self
    dim = _normalize_axis(dim, self.ndim)
    return self if self.shape[dim] != 1 else self.reshape(self.shape[:dim] + self.shape[dim + 1:])

  def unsqueeze(self, dim: int) -> Tensor:
    dim = _normalize_axis(dim, self.ndim + 1)
    return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

  def repeat(self, repeats, *args) -> Tensor:
    repeats = _as_shape((repeats, *args))
    base = self.reshape((1,) * (len(repeats) - self.ndim) + self.shape)
    inter = []
    for s in base.shape:
      inter += [1, s]
    expanded = base.reshape(inter).expand(tuple(x for r, s in zip(repeats, base.shape) for x in (r, s)))
    return expanded.reshape(tuple(r * s for r, s in zip(repeats, base.shape)))

  def pad(self, padding, mode: str = "constant", value: float = 0.0) -> Tensor:
    """padding: ((before, after),) per axis, or a flat torch-style tuple (last axis first). Negative pads crop."""
    if mode != "constant":
      raise ValueError(f"pad mode {mode!r} is not supported; only 'constant'")
    if all(isinstance(p, int) for p in padding):
      if len(padding) % 2 or len(padding) // 2 > self.ndim:
        raise ValueError(f"flat padding {padding} needs an even length of at most {2 * self.ndim}")
      pairs = [(0, 0)] * self.ndim
      for i in range(len(padding) // 2):
        pairs[self.ndim - 1 - i] = (padding[2 * i], padding[2 * i + 1])
      padding = pairs
    padding = [(0, 0) if p is None else tuple(p) for p in padding]
    if len(padding) != self.ndim:
      raise ValueError(f"pad needs one (before, after) per axis: {len(padding)} given for shape {self.shape}")
    crop = tuple((max(0, -b), s - max(0, -a)) for (b, a), s in zip(padding, self.shape))
    x = self.shrink(crop)
    grow = tuple((max(0, b), max(0, a)) for b, a in padding)
    out = x._derive(g.pad(x.lazydata, grow))
    if value != 0 and any(b or a for b, a in grow):
      mask = Tensor.ones(x.shape, device=self.device, dtype=dtypes.bool)._derive(
        g.pad(g.const(True, dtypes.bool, x.shape, x.lazydata.device or self.device), grow))
      out = mask.where(out, value)
    return out

  def shrink(self, arg) -> Tensor:
    arg = tuple((0, s) if a is None else tuple(a) for a, s in zip(arg, self.shape))
    return self._derive(g.shrink(self.lazydata, arg))

  def flip(self, axis, *args) -> Tensor:
    axes = (axis, *args) if args else ((axis,) if isinstance(axis, int) else tuple(axis))
    return self._derive(g.flip(self.lazydata, tuple(_normalize_axis(a, self.ndim) for a in axes)))

  def roll(self, shifts, dims=None) -> Tensor:
    if dims is None:
      return self.flatten().roll(shifts, 0).reshape(self.shape)
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    out = self
    for s, d in zip(shifts, dims):
      d = _normalize_axis(d, self.ndim)
      n = self.shape[d]
      if n == 0:
        continue
      s %= n
      if s:
        out = out[(slice(None),) * d + (slice(n - s, None),)].cat(out[(slice(None),) * d + (slice(0, n - s),)], dim=d)
    return out

  def cat(self, *args, dim: int = 0) -> Tensor:
    tensors = [self, *args]
    dim = _normalize_axis(dim, self.ndim)
    for t in tensors:
      if t.ndim != self.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, self.shape)) if i != dim):
        raise ValueError(f"cat along dim {dim}: shapes {[t.shape for t in tensors]} differ off that dim")
    dt = least_upper_dtype(*[t.dtype for t in tensors])
    total = sum(t.shape[dim] for t in tensors)
    out, offset = None, 0
    for t in tensors:
      pads = [(0, 0)] * self.ndim
      pads[dim] = (offset, total - offset - t.shape[dim])
      piece = t.cast(dt).pad(pads)
      out = piece if out is None else out + piece
      offset += t.shape[dim]
    return out

  @staticmethod
  def stack(*args, dim: int = 0) -> Tensor:
    tensors = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)
    dim = _normalize_axis(dim, tensors[0].ndim + 1)
    return tensors[0].unsqueeze(dim).cat(*[t.unsqueeze(dim) for t in tensors[1:]], dim=dim)

  def split(self, sizes, dim: int = 0) -> list[Tensor]:
    dim = _normalize_axis(dim, self.ndim)
    n = self.shape[dim]
    if isinstance(sizes, int):
      if sizes <= 0:
        raise ValueError(f"split size must be positive, got {sizes}")
      sizes = [min(sizes, n - i) for i in range(0, n, sizes)] or [0]
    if sum(sizes) != n:
      raise ValueError(f"split sizes {list(sizes)} do not add up to {n}, the size of dim {dim}")
    out, start = [], 0
    for s in sizes:
      out.append(self[(slice(None),) * dim + (slice(start, start + s),)])
      start += s
    return out

  def chunk(self, chunks: int, dim: int = 0) -> list[Tensor]:
    dim = _normalize_axis(dim, self.ndim)
    size = math.ceil(self.shape[dim] / chunks) if self.shape[dim] else 1
    return self.split(size, dim)

  def __iter__(self):
    return (self[i] for i in range(len(self)))

  def __getitem__(self, index):
    from frontend.indexing import getitem
    return getitem(self, index)

  def __setitem__(self, index, value):
    from frontend.indexing import setitem
    setitem(self, index, value)

  def gather(self, dim: int, index: Tensor) -> Tensor:
    from frontend.indexing import gather
    return gather(self, dim, index)

  def scatter(self, dim: int, index: Tensor, src, reduce: str | None = None) -> Tensor:
    from frontend.indexing import scatter
    return scatter(self, dim, index, src, reduce)

  def masked_fill(self, mask: Tensor, value) -> Tensor:
    return mask.where(value, self)

  def tril(self, diagonal: int = 0) -> Tensor:
    r, c = self.shape[-2:]
    keep = Tensor.arange(r, device=self.device).unsqueeze(-1) + diagonal >= Tensor.arange(c, device=self.device)
    return keep.where(self, self.zeros_like())

  def triu(self, diagonal: int = 0) -> Tensor:
    r, c = self.shape[-2:]
    keep = Tensor.arange(r, device=self.device).unsqueeze(-1) + diagonal <= Tensor.arange(c, device=self.device)
    return keep.where(self, self.zeros_like())


def _base(node: Node) -> Node:
  while node.op in (Ops.RESHAPE, Ops.DETACH) or (node.op in (Ops.PERMUTE, Ops.SHRINK, Ops.EXPAND, Ops.PAD, Ops.FLIP)):
    node = node.src[0]
  return node


def _reshape_node(node: Node, shape: tuple[int, ...]) -> Node:
  """graph.reshape, except that a reshape of a RESHAPE node stays a chain: collapsing it would drop that node (maybe
  a leaf tensor's own node) from the graph, and autograd finds the tensors it differentiates by node identity."""
  out = g.reshape(node, shape)
  if out is node or node.op is not Ops.RESHAPE:
    return out
  return Node(Ops.RESHAPE, node.dtype, (node,), out.shape, out.shape, node.device)


def _fresh(t: Tensor, requires_grad) -> Tensor:
  out = Tensor(t.lazydata)
  out.requires_grad = requires_grad
  if requires_grad:
    _grad_tensors[id(out)] = out
  return out


def _floordiv(a: Tensor, b: Tensor) -> Tensor:
  if a.dtype in (dtypes.float16, dtypes.bfloat16):
    # a quotient rounded to 16 bits can round up to the next integer (4.998 -> 5.0); floor it in float32
    return _floordiv(a.float(), b.float()).cast(a.dtype)
  if a.dtype.is_float:
    return (a / b).floor()
  q = a._alu(Ops.IDIV, b)
  if a.dtype.is_unsigned:
    return q
  # C division truncates; floor division steps down when the signs differ and there is a remainder
  adjust = ((q * b) != a) & ((a < 0) != (b < 0))
  return adjust.where(q - 1, q)


def _pow_tensors(a: Tensor, b: Tensor) -> Tensor:
  """a ** b for float tensors of one shape and type."""
  mag = (b * a.abs().log2()).exp2()
  b_int = b.trunc() == b
  odd = (b.abs() % 2) == 1
  neg = a < 0
  sign = (neg & b_int & odd).where(-1.0, 1.0)
  nan = (neg & b_int.logical_not()).where(math.nan, 1.0)
  zero_case = (a == 0).where((b == 0).where(1.0, (b < 0).where(math.inf, 0.0)), mag * sign * nan)
  return zero_case.cast(a.dtype)


def _pow_scalar_exponent(a: Tensor, y: float) -> Tensor:
  """a ** y for a float tensor and a Python exponent: what depends on y alone is decided here, not in the kernel."""
  mag = (a.abs().log2() * y).exp2()
  if y.is_integer():
    signed = (a < 0).where(-mag, mag) if int(y) % 2 else mag
  else:
    signed = (a < 0).where(math.nan, mag)
  return (a == 0).where(math.inf if y < 0 else 0.0, signed)


def _pow_scalar_base(x: float, b: Tensor) -> Tensor:
  """x ** b for a Python base and a float tensor exponent."""
  if x == 0:
    return (b == 0).where(1.0, (b < 0).where(math.inf, 0.0)).cast(b.dtype)
  mag = (b * math.log2(abs(x))).exp2()
  if x > 0:
    return mag
  b_int = b.trunc() == b
  odd = (b.abs() % 2) == 1
  return b_int.where((b_int & odd).where(-mag, mag), math.nan)


def _int_pow_const(base: Tensor, exponent: int) -> Tensor:
  """base ** exponent for an integer tensor and a Python int > 0: square and multiply over the exponent's bits."""
  out, power = None, base
  while exponent:
    if exponent & 1:
      out = power if out is None else out * power
    exponent >>= 1
    if exponent:
      power = power * power
  return out


def _int_pow(base: Tensor, exponent: Tensor) -> Tensor:
  """base ** exponent for integer tensors of one type and shape, square and multiply over every bit of the
  exponent's type (products wrap, as numpy's do); a negative exponent gives trunc(1 / base ** -exponent)."""
  out, power = base.ones_like(), base
  value_bits = exponent.dtype.bits - (0 if exponent.dtype.is_unsigned else 1)
  for bit in range(value_bits):
    set_bit = ((exponent >> bit) & 1) != 0
    out = set_bit.where(out * power, out)
    if bit + 1 < value_bits:
      power = power * power
  if exponent.dtype.is_unsigned:
    return out
  odd = (exponent & 1) != 0
  negative_case = (base == 1).where(1, ((base == -1) & odd).where(-1, (base == -1).where(1, 0))).cast(base.dtype)
  return (exponent < 0).where(negative_case, out)


def _broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
  ndim = max(len(s) for s in shapes)
  padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
  out = []
  for dims in zip(*padded):
    sizes = {d for d in dims if d != 1}
    if len(sizes) > 1:
      raise ValueError(f"shapes {' and '.join(str(tuple(s)) for s in shapes)} cannot be broadcast together")
    out.append(sizes.pop() if sizes else 1)
  return tuple(out)


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


def _flatten_iter(xs: Iterable) -> list:
  return list(xs)
