"""Indexing: basic (ints, slices with steps, None, Ellipsis) as views; advanced (integer tensors and lists) and
gather/scatter as one-hot contractions that fuse into a single reduce kernel. Out-of-range integer indices raise
IndexError naming the index and the axis size."""
from __future__ import annotations

import numpy as np

from compiler.dtypes import dtypes


def _check_range(idx, n: int, axis: int) -> None:
  values = idx.numpy()
  if values.size and (values.min() < -n or values.max() >= n):
    bad = values[(values < -n) | (values >= n)].reshape(-1)[0]
    raise IndexError(f"index {int(bad)} is out of bounds for axis {axis} with size {n}")


def _as_index_tensor(x, device, tensor_cls):
  if isinstance(x, tensor_cls):
    if x.dtype.is_bool:
      raise TypeError("boolean mask indexing has a data-dependent shape; use Tensor.where or masked_fill instead")
    if x.dtype.is_float:
      raise TypeError(f"tensors used as indices must be integers, got {x.dtype.name}")
    return x
  arr = np.asarray(x)
  if arr.size == 0 and not isinstance(x, np.ndarray):
    arr = arr.astype(np.int32)  # numpy takes an empty list as an empty integer index
  if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
    raise TypeError(f"list indices must be integers, got {arr.dtype}")
  return tensor_cls(arr.astype(np.int32), device=device)


def _normalize(t, index) -> list:
  if not isinstance(index, tuple):
    index = (index,)
  consumed = sum(1 for i in index if i is not None and i is not Ellipsis)
  if consumed > t.ndim:
    raise IndexError(f"too many indices for a tensor of shape {t.shape}: {consumed} given")
  if sum(1 for i in index if i is Ellipsis) > 1:
    raise IndexError("an index can only have a single ellipsis ('...')")
  out = []
  for i in index:
    if i is Ellipsis:
      out.extend([slice(None)] * (t.ndim - consumed))
    else:
      out.append(i)
  if not any(i is Ellipsis for i in index):
    out.extend([slice(None)] * (t.ndim - consumed))
  return out


def _strided(x, axis: int, step: int):
  n = x.shape[axis]
  m = -(-n // step)
  x = x.pad([(0, 0)] * axis + [(0, m * step - n)] + [(0, 0)] * (x.ndim - axis - 1))
  x = x.reshape(x.shape[:axis] + (m, step) + x.shape[axis + 1:])
  x = x.shrink([(0, s) for s in x.shape[:axis + 1]] + [(0, 1)] + [(0, s) for s in x.shape[axis + 2:]])
  return x.reshape(x.shape[:axis] + (m,) + x.shape[axis + 2:])


def getitem(t, index):
  from frontend.tensor import Tensor
  entries = _normalize(t, index)
  x = t
  axis = 0
  squeeze, advanced, positions = [], [], []
  for entry in entries:
    if entry is None:
      x = x.unsqueeze(axis)
      axis += 1
      continue
    n = x.shape[axis]
    if isinstance(entry, (bool, np.bool_)):
      raise TypeError("boolean scalars are not supported as indices")
    if isinstance(entry, (int, np.integer)):
      i = int(entry)
      if not -n <= i < n:
        raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
      i %= n
      positions.append(axis)
      x = x.shrink([(0, s) for s in x.shape[:axis]] + [(i, i + 1)] + [(0, s) for s in x.shape[axis + 1:]])
      squeeze.append(axis)
    elif isinstance(entry, slice):
      start, stop, step = entry.indices(n)
      picked = range(start, stop, step)
      if len(picked) == 0:
        lo = hi = 0
      else:
        lo, hi = (picked[0], picked[-1] + 1) if step > 0 else (picked[-1], picked[0] + 1)
      x = x.shrink([(0, s) for s in x.shape[:axis]] + [(lo, hi)] + [(0, s) for s in x.shape[axis + 1:]])
      if step < 0 and hi > lo:
        x = x.flip(axis)
      if abs(step) > 1 and hi > lo:
        x = _strided(x, axis, abs(step))
    else:
      idx = _as_index_tensor(entry, t.device, Tensor)
      _check_range(idx, n, axis)
      advanced.append((axis, (idx < 0).where(idx + n, idx)))
      positions.append(axis)
    axis += 1
  if squeeze:
    # drop the int-indexed axes first; advanced axes shift left past them
    x = x.reshape(tuple(s for i, s in enumerate(x.shape) if i not in squeeze))
    advanced = [(a - sum(1 for q in squeeze if q < a), idx) for a, idx in advanced]
  if advanced:
    # numpy: integer scalars count as advanced indices; split-up advanced indices put the new axes first
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    x = _advanced(x, advanced, Tensor, adjacent)
  return x


def _advanced(x, advanced, tensor_cls, adjacent: bool):
  """Selects with integer index tensors on some axes (numpy semantics for where the new axes go)."""
  from frontend.shapes import _broadcast_shape
  axes = [a for a, _ in advanced]
  bshape = _broadcast_shape(*[i.shape for _, i in advanced])
  nb = len(bshape)
  # x -> (1,)*nb + x.shape; each index -> bshape + one-hot along its axis
  xe = x.reshape((1,) * nb + x.shape)
  mask = None
  for a, idx in advanced:
    n = x.shape[a]
    shape = [1] * x.ndim
    shape[a] = n
    pos = tensor_cls.arange(n, device=x.device).reshape(shape)
    ie = idx._broadcast_to(bshape).reshape(bshape + (1,) * x.ndim)
    hit = ie == pos.reshape((1,) * nb + tuple(shape))
    mask = hit if mask is None else mask & hit
  picked = mask.where(xe, xe.zeros_like()) if not x.dtype.is_bool else mask & xe
  summed = picked.sum(tuple(nb + a for a in axes), dtype=picked.dtype if x.dtype.is_float else None)
  out = summed.cast(x.dtype)  # (bshape..., remaining axes)
  if adjacent and axes[0] > 0:
    rest = list(range(nb, out.ndim))
    order = rest[:axes[0]] + list(range(nb)) + rest[axes[0]:]
    out = out.permute(order)
  return out


def setitem(t, index, value) -> None:
  """t[index] = value for ints and step-1 slices (an in-place assign of a masked select)."""
  from frontend.tensor import Tensor
  entries = _normalize(t, index)
  if any(e is None for e in entries):
    raise TypeError("setitem does not take None in the index")
  region, keep_shape = [], []
  for axis, e in enumerate(entries):
    n = t.shape[axis]
    if isinstance(e, (int, np.integer)):
      i = int(e)
      if not -n <= i < n:
        raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
      region.append((i % n, i % n + 1))
    elif isinstance(e, slice) and e.step in (None, 1):
      start, stop, _ = e.indices(n)
      region.append((start, max(start, stop)))
      keep_shape.append(max(0, stop - start))
    else:
      raise TypeError(f"setitem supports ints and step-1 slices; got {e!r} (use Tensor.scatter or where)")
  value = value if isinstance(value, Tensor) else Tensor(value, device=t.device, dtype=t.dtype)
  shape = tuple(hi - lo for lo, hi in region)
  value = value.cast(t.dtype).reshape(value.shape if value.ndim else ())._broadcast_to(tuple(keep_shape))
  value = value.reshape(shape)
  pads = [(lo, n - hi) for (lo, hi), n in zip(region, t.shape)]
  placed = value.pad(pads)
  mask = Tensor.ones(shape, device=t.device, dtype=dtypes.bool).pad(pads)
  t.assign(mask.where(placed, t))


def gather(t, dim: int, index):
  from frontend.shapes import _normalize_axis
  from frontend.tensor import Tensor
  dim = _normalize_axis(dim, t.ndim)
  if index.ndim != t.ndim:
    raise ValueError(f"gather: index has {index.ndim} dims, input has {t.ndim}")
  if any(i > s for d, (i, s) in enumerate(zip(index.shape, t.shape)) if d != dim):
    raise ValueError(f"gather: index shape {index.shape} is larger than input shape {t.shape} off dim {dim}")
  n = t.shape[dim]
  _check_range(index, n, dim)
  index = (index < 0).where(index + n, index)
  x = t.shrink([(0, i) if d != dim else (0, n) for d, i in enumerate(index.shape)]).transpose(dim, -1)
  it = index.transpose(dim, -1)
  onehot = it.unsqueeze(-1) == Tensor.arange(n, device=t.device)
  picked = onehot.where(x.unsqueeze(-2), x.unsqueeze(-2).zeros_like())
  return picked.sum(-1, dtype=x.dtype if x.dtype.is_float else None).cast(t.dtype).transpose(dim, -1)


def scatter(t, dim: int, index, src, reduce: str | None = None):
  """out = t with src written at index along dim; reduce None (duplicate targets add up, as torch leaves the
  winner undefined), 'add' or 'multiply'."""
  from frontend.shapes import _normalize_axis
  from frontend.tensor import Tensor
  if reduce not in (None, "add", "multiply"):
    raise ValueError(f"scatter reduce must be None, 'add' or 'multiply', got {reduce!r}")
  dim = _normalize_axis(dim, t.ndim)
  n = t.shape[dim]
  _check_range(index, n, dim)
  index = (index < 0).where(index + n, index)
  if not isinstance(src, Tensor):
    src = Tensor.full(index.shape, src, device=t.device, dtype=t.dtype)
  src = src.shrink([(0, s) for s in index.shape]).cast(t.dtype)
  # (..., m) indices -> (..., m, n) one-hot, summed over m into (..., n)
  it, st = index.transpose(dim, -1), src.transpose(dim, -1)
  onehot = it.unsqueeze(-1) == Tensor.arange(n, device=t.device)
  pad_other = [(0, s - i) for s, i in zip(t.transpose(dim, -1).shape[:-1], it.shape[:-1])]
  hit = onehot.any(-2).pad(pad_other + [(0, 0)])
  base = t.transpose(dim, -1)
  if reduce == "multiply":
    factors = onehot.where(st.unsqueeze(-1), 1).prod(-2).pad(pad_other + [(0, 0)], value=1)
    return (base * factors).transpose(dim, -1)
  summed = onehot.where(st.unsqueeze(-1), 0).sum(-2).cast(t.dtype).pad(pad_other + [(0, 0)])
  out = base + summed if reduce == "add" else hit.where(summed, base)
  return out.transpose(dim, -1)
