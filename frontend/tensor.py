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
from compiler.ir import BoundVariable, Node, Offset, Ops
from frontend import graph as g
from frontend import multi
from frontend.autograd import gradients
from frontend.device import Device, supports_dtype
from frontend.multi import MultiNode, canonical_devices
from frontend.realize import buffer_from_numpy, buffer_of, realize_nodes
from frontend.shapes import _as_shape, _normalize_axis, _prod
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



def _whole_buffer(node):
  """The buffer `node` is, where it is a whole realized buffer seen through reshapes only, else None."""
  if isinstance(node, MultiNode):
    return None
  base = node
  while base.op is Ops.RESHAPE:
    base = base.src[0]
  return base.arg if base.op is Ops.BUFFER and base.arg.size == node.size else None

class Tensor(TensorElementwise, TensorShapeOps, TensorNN):
  """A lazy tensor. Args: data (Python scalar, BoundVariable, nested list, numpy array, or another Tensor's graph
  node), device ("CPU", ...), dtype, requires_grad.

  Raises:
    TypeError: data of an unsupported kind or dtype; ValueError: an unknown device.
  """
  training: bool = False
  no_grad: bool = False
  _seed: int = 0

  def __init__(self, data, device: str | tuple[str, ...] | None = None, dtype=None, requires_grad: bool | None = None):
    device = canonical_devices(device)
    dtype = None if dtype is None else to_dtype(dtype)
    if dtype is not None and not supports_dtype(device, dtype):
      raise TypeError(f"device {device} does not support dtype {dtype.name}")
    if isinstance(data, (Node, MultiNode)):
      node = data
    elif isinstance(device, tuple) and not isinstance(data, Tensor):
      # data for several devices: made on the first, then replicated (as tinygrad does)
      node = multi.shard(Tensor(data, device=device[0], dtype=dtype).lazydata, device, None)
    elif isinstance(data, Tensor):
      node = data.lazydata if dtype is None else g.cast(data.lazydata, dtype)
    elif isinstance(data, (bool, int, float)) and not isinstance(data, np.generic):
      dt = dtype or dtypes.from_py(data)
      node = g.const(data, dt, (), device)
    elif isinstance(data, (BoundVariable, Offset)):  # a 0-d int32 (or dtype) tensor whose value kernels read at launch
      node = g.bind(data, dtype or dtypes.int32, (), device)
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
    if all(_whole_buffer(t.lazydata) is not None for t in tensors):
      return self  # nothing to compute (a TinyJit call's inputs, every call: this keeps the scheduler out of it)
    realize_nodes([n for t in tensors for n in _shards(t.lazydata)])
    for t in tensors:
      t._after_realize()
    return self

  def _after_realize(self) -> None:
    """Drops the graph behind a realized tensor unless gradients may still flow through it."""
    if isinstance(self.lazydata, MultiNode):
      self.lazydata = self.lazydata.map(self._realized_node)
    else:
      self.lazydata = self._realized_node(self.lazydata)

  def _realized_node(self, node: Node) -> Node:
    if node.op is Ops.BUFFER or (self.requires_grad is True and node.op is not Ops.ASSIGN):
      return node  # keep the graph while gradients may flow through it; an assigned tensor is a new leaf
    buf = buffer_of(node)
    if buf is not None and buf.size == node.size and node.op is not Ops.CONST:
      return g.reshape(Node(Ops.BUFFER, node.dtype, (), buf, (buf.size,), node.device), node.shape)
    return node

  def _contiguous_buffer(self):
    node = self.lazydata
    if isinstance(node, MultiNode):  # the whole value, gathered on the first device
      return Tensor(multi.gather(node, node.devices[0]))._contiguous_buffer()
    buf = _whole_buffer(node)
    if buf is not None:
      return buf
    c = Node(Ops.CONTIGUOUS, node.dtype, (node,), None, node.shape, node.device)
    realize_nodes([c])
    return buffer_of(c)

  def numpy(self) -> np.ndarray:
    """The values as a numpy array (bfloat16 converts to float32, which numpy lacks)."""
    if self.numel() == 0:  # no values to compute: no kernel
      return np.zeros(self.shape, np.float32 if self.dtype == dtypes.bfloat16 else self.dtype.np)
    node = self.lazydata
    if isinstance(node, MultiNode):  # each shard's values, joined on the host
      if node.axis is None:
        return Tensor(node.nodes[0]).numpy()
      order = sorted(range(len(node.nodes)), key=lambda i: node.bounds[i])
      return np.concatenate([Tensor(node.nodes[i]).numpy() for i in order], axis=node.axis)
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

  def to(self, device: str | tuple[str, ...]) -> Tensor:
    """This tensor on `device`; a tuple of devices replicates it there (shard with axis None), and a sharded tensor
    sent to one device is gathered there."""
    device = canonical_devices(device)
    if device == self.device:
      return self
    if isinstance(device, tuple):
      return self.shard(device)
    if isinstance(self.lazydata, MultiNode):
      return self._derive(multi.gather(self.lazydata, device))
    return self._derive(multi.copy_to(self.lazydata, device))

  def shard(self, devices: tuple[str, ...] | list[str], axis: int | None = None, splits=None) -> Tensor:
    """This tensor spread over `devices`: replicated when axis is None, else split along `axis` in ceil-sized
    chunks (tinygrad's rule: 10 rows over 4 devices are 3, 3, 3, 1) or in the sizes `splits`. Operations on the
    result run on every device; reductions over the sharded axis all-reduce (see frontend.multi).

    Raises:
      ValueError: no or repeated devices, an unknown device, or splits that do not add up to the axis size.
      IndexError: an axis out of range.
    """
    devices = canonical_devices(tuple(devices) if isinstance(devices, (list, tuple)) else (devices,))
    if axis is not None:
      if self.ndim == 0:
        raise IndexError(f"cannot shard a 0-d tensor along axis {axis}; use axis=None to replicate it")
      axis = _normalize_axis(axis, self.ndim)
      if splits is not None and (len(splits) != len(devices) or sum(splits) != self.shape[axis] or min(splits) < 0):
        raise ValueError(f"splits {list(splits)} must give one size >= 0 per device ({len(devices)}) adding up to "
                         f"the size {self.shape[axis]} of axis {axis} of shape {self.shape}")
    return self._derive(multi.shard(self.lazydata, devices, axis, splits))

  def shard_(self, devices: tuple[str, ...] | list[str], axis: int | None = None, splits=None) -> Tensor:
    """shard, in place."""
    self.lazydata = self.shard(devices, axis, splits).lazydata
    return self

  def to_(self, device: str | tuple[str, ...]) -> Tensor:
    self.lazydata = self.to(device).lazydata
    return self

  def clone(self) -> Tensor:
    copied = g.alu(Ops.ADD, self.lazydata, g.const_like(self.lazydata, 0))
    return self._derive(_per_shard(copied, lambda n: Node(Ops.CONTIGUOUS, n.dtype, (n,), None, n.shape, n.device)))

  def detach(self) -> Tensor:
    out = Tensor(_per_shard(self.lazydata, lambda n: Node(Ops.DETACH, n.dtype, (n,), None, n.shape, n.device)))
    out.requires_grad = False
    return out

  def contiguous(self) -> Tensor:
    return self._derive(_per_shard(self.lazydata, lambda n: Node(Ops.CONTIGUOUS, n.dtype, (n,), None, n.shape,
                                                                 n.device)))

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
    if isinstance(self.lazydata, MultiNode):  # each shard written in place; the value cut to the target's layout
      value = multi.to_layout(value, self.lazydata.axis, self.lazydata.bounds)
    if any(buffer_of(_base(n)) is None for n in _shards(self.lazydata)):
      self.realize()
    target = self.lazydata
    if isinstance(target, MultiNode):
      nodes = [_assign_node(t, v) for t, v in zip(target.nodes, value.nodes)]
      self.lazydata = MultiNode(nodes, target.axis, target.bounds)
    else:
      self.lazydata = _assign_node(target, value)
    return self

  # ---- creation -------------------------------------------------------------------------------------------------
  @staticmethod
  def empty(*shape, device=None, dtype=None, **kwargs) -> Tensor:
    return Tensor.zeros(*shape, device=device, dtype=dtype, **kwargs)

  @staticmethod
  def full(shape, fill_value, device=None, dtype=None, requires_grad=None) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    dt = to_dtype(dtype) if dtype is not None else dtypes.from_py(fill_value)
    device = canonical_devices(device)
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
    device = canonical_devices(device)
    if isinstance(device, tuple):  # drawn on the first device and replicated: every device sees the same numbers
      out = Tensor.rand(*shape, device=device[0], dtype=dtype).shard(device)
      return _fresh(out, requires_grad)
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
    roots, seeds = _backward_roots(self.lazydata, gradient.lazydata)
    targets = [t for t in list(_grad_tensors.values()) if t.requires_grad]
    node_ids = {id(n) for root in roots for n in root.toposort()}
    targets = [t for t in targets if any(id(n) in node_ids for n in _shards(t.lazydata))]
    if not targets:
      raise RuntimeError("backward(): no tensor with requires_grad=True contributes to this value")
    grads = gradients(roots, seeds, [n for t in targets for n in _shards(t.lazydata)])
    for t in targets:
      gt = Tensor(_target_grad(t.lazydata, grads))
      gt.requires_grad = False
      t.grad = gt if t.grad is None else (t.grad + gt)
    return self

  def requires_grad_(self, requires_grad: bool = True) -> Tensor:
    self.requires_grad = requires_grad
    if requires_grad:
      _grad_tensors[id(self)] = self
    return self


def _shards(node: Node | MultiNode) -> tuple[Node, ...]:
  return node.nodes if isinstance(node, MultiNode) else (node,)


def _per_shard(node: Node | MultiNode, fn) -> Node | MultiNode:
  return node.map(fn) if isinstance(node, MultiNode) else fn(node)


def _assign_node(target: Node, value: Node) -> Node:
  return Node(Ops.ASSIGN, target.dtype, (target, value), None, target.shape, target.device)


def _backward_roots(root, seed) -> tuple[list[Node], list[Node]]:
  """The nodes backward starts from, with their seed gradients. A replicated root holds one value on every device,
  so only its first copy is differentiated: the copies on other devices are equal, and seeding them too would
  count the value once per device. A sharded root seeds each shard with its part of the seed."""
  if not isinstance(root, MultiNode):
    return [root], [seed]
  if not isinstance(seed, MultiNode):
    raise ValueError(f"backward: the gradient is on {seed.device}, the value on {list(root.devices)}")
  seed = multi.to_layout(seed, root.axis, root.bounds)
  if root.axis is None:
    return [root.nodes[0]], [seed.nodes[0]]
  live = [i for i, (lo, hi) in enumerate(root.bounds) if hi > lo]
  return [root.nodes[i] for i in live], [seed.nodes[i] for i in live]


def _target_grad(target, grads: dict[int, Node]) -> Node | MultiNode:
  """A tensor's gradient from the gradients of its nodes. A replicated parameter is one value used on every device,
  so its gradient is the sum over its copies: an all-reduce (data-parallel training's gradient exchange)."""
  if not isinstance(target, MultiNode):
    gnode = grads.get(id(target))
    # reached only through ops with no gradient (rounding, comparisons): zero, as in torch
    return gnode if gnode is not None else g.const_like(target, 0)
  parts = [grads.get(id(n)) for n in target.nodes]
  if target.axis is not None:
    return MultiNode([p if p is not None else g.const_like(n, 0) for p, n in zip(parts, target.nodes)],
                     target.axis, target.bounds)
  present = [p for p in parts if p is not None]
  if not present:
    return g.const_like(target, 0)
  if len(present) == 1:  # one device's copy carries all of it: a broadcast, no sum
    return MultiNode([multi.copy_to(present[0], n.device) for n in target.nodes], None)
  filled = [p if p is not None else g.const_like(n, 0) for p, n in zip(parts, target.nodes)]
  return MultiNode(multi.all_reduce(filled, Ops.ADD), None)


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
