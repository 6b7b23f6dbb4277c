"""Reductions and movement ops of Tensor (sum/max/mean/..., reshape/permute/pad/cat/indexing entry points).
Mixed into frontend.tensor.Tensor; `type(self)` is Tensor."""
from __future__ import annotations

from typing import TYPE_CHECKING

import math

from compiler.dtypes import dtypes, least_upper_dtype
from compiler.ir import Ops
from frontend import graph as g
from frontend.shapes import _as_shape, _normalize_axis, _prod, _reshape_node


if TYPE_CHECKING:
  from frontend.tensor import Tensor


class TensorShapeOps:
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
      out = type(self).full(shape, reduce_identity(op, self.dtype), self.device, self.dtype)
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
    rev = type(self).arange(n, 0, -1, device=self.device).reshape((n,) + (1,) * (self.ndim - axis - 1))
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
      mask = type(self).ones(x.shape, device=self.device, dtype=dtypes.bool)._derive(
        g.pad(g.const(True, dtypes.bool, x.shape, x.lazydata.device or self.device), grow))
      out = mask.where(out, value)
    return out

  def shrink(self, arg) -> Tensor:
    arg = tuple((0, s) if a is None else tuple(a) for a, s in zip(arg, self.shape))
    return self._derive(g.shrink(self.lazydata, arg))  # a start may be a BoundVariable (+ int): see graph.shrink

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
    keep = type(self).arange(r, device=self.device).unsqueeze(-1) + diagonal >= type(self).arange(c, device=self.device)
    return keep.where(self, self.zeros_like())

  def triu(self, diagonal: int = 0) -> Tensor:
    r, c = self.shape[-2:]
    keep = type(self).arange(r, device=self.device).unsqueeze(-1) + diagonal <= type(self).arange(c, device=self.device)
    return keep.where(self, self.zeros_like())


