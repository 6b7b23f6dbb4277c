"""Views: movement ops (reshape, permute, expand, pad, shrink, flip) as index arithmetic, never as copies.

A View maps an index tuple of `shape` to a flat offset `offset + sum(i_d * strides_d)`, valid where every
`mask[d][0] <= i_d < mask[d][1]` (outside the mask the value is 0: that is how pad works). A ShapeTracker is a
stack of views, innermost first; a reshape that no single view can express pushes a new view whose flat index is
unravelled into the previous view's shape.

A view's offset may be a compiler.ir.Offset over Variables (a shrink that starts at a launch-time index, such as a
KV cache row at the decode position); shapes, strides and masks are always ints.
"""
from __future__ import annotations

import dataclasses
import math

from compiler import symbolic as sym
from compiler.dtypes import dtypes
from compiler.ir import Node, Offset, Ops


def strides_for(shape: tuple[int, ...]) -> tuple[int, ...]:
  out, acc = [], 1
  for s in reversed(shape):
    out.append(acc if s != 1 else 0)
    acc *= s
  return tuple(reversed(out))


@dataclasses.dataclass(frozen=True)
class View:
  shape: tuple[int, ...]
  strides: tuple[int, ...]
  offset: int | Offset = 0
  mask: tuple[tuple[int, int], ...] | None = None

  @staticmethod
  def contiguous(shape: tuple[int, ...]) -> View:
    return View(tuple(shape), strides_for(tuple(shape)))

  @property
  def is_contiguous(self) -> bool:
    return self.offset == 0 and self.mask is None and self.strides == strides_for(self.shape)

  def permute(self, order: tuple[int, ...]) -> View:
    mask = None if self.mask is None else tuple(self.mask[i] for i in order)
    return View(tuple(self.shape[i] for i in order), tuple(self.strides[i] for i in order), self.offset, mask)

  def expand(self, shape: tuple[int, ...]) -> View:
    strides = tuple(0 if s != n else st for s, n, st in zip(self.shape, shape, self.strides))
    mask = None
    if self.mask is not None:
      mask = tuple(m if s == n else ((0, n) if m[1] > m[0] else (0, 0))
                   for m, s, n in zip(self.mask, self.shape, shape))
    return View(tuple(shape), strides, self.offset, mask)

  def shrink(self, arg: tuple[tuple[int, int], ...]) -> View:
    offset = self.offset + sum(lo * st for (lo, _), st in zip(arg, self.strides))
    mask = None
    if self.mask is not None and any(isinstance(lo, Offset) for lo, _ in arg):
      raise NotImplementedError(f"a shrink at a Variable ({arg}) of a padded view (mask {self.mask}); make the padded "
                                f"tensor contiguous first")
    if self.mask is not None:
      mask = tuple((max(0, mlo - lo), max(0, min(hi, mhi) - lo)) for (lo, hi), (mlo, mhi) in zip(arg, self.mask))
      if any(m[0] >= m[1] for m in mask):  # nothing valid: one canonical empty mask
        mask = tuple((0, 0) for _ in mask)
    shape = tuple(hi - lo for lo, hi in arg)
    if mask is not None and all(m == (0, s) for m, s in zip(mask, shape)):
      mask = None
    return View(shape, self.strides, offset, mask)

  def pad(self, arg: tuple[tuple[int, int], ...]) -> View:
    shape = tuple(s + b + a for s, (b, a) in zip(self.shape, arg))
    offset = self.offset - sum(b * st for (b, _), st in zip(arg, self.strides))
    old = self.mask if self.mask is not None else tuple((0, s) for s in self.shape)
    mask = tuple((mlo + b, mhi + b) for (mlo, mhi), (b, _) in zip(old, arg))
    return View(shape, self.strides, offset, mask)

  def flip(self, axes: tuple[int, ...]) -> View:
    strides = list(self.strides)
    offset = self.offset
    mask = None if self.mask is None else list(self.mask)
    for a in axes:
      offset += (self.shape[a] - 1) * strides[a]
      strides[a] = -strides[a]
      if mask is not None:
        lo, hi = mask[a]
        mask[a] = (self.shape[a] - hi, self.shape[a] - lo)
    return View(self.shape, tuple(strides), offset, None if mask is None else tuple(mask))

  def reshape(self, shape: tuple[int, ...]) -> View | None:
    """The same view with a new shape, or None when one view cannot express it."""
    if self.shape == shape:
      return self
    if 0 in shape or 0 in self.shape:
      return View.contiguous(shape)
    if self.mask is not None:
      return self._reshape_ones(shape)
    strides = _reshape_strides(self.shape, self.strides, shape)
    return None if strides is None else View(shape, strides, self.offset)

  def _reshape_ones(self, shape: tuple[int, ...]) -> View | None:
    """Reshape of a masked view, supported when it only adds or drops dimensions of size 1."""
    if [s for s in self.shape if s != 1] != [s for s in shape if s != 1]:
      return None
    kept = [(st, m) for s, st, m in zip(self.shape, self.strides, self.mask) if s != 1]
    if any(m[0] >= m[1] for s, m in zip(self.shape, self.mask) if s == 1):
      return None  # an entirely masked-out size-1 axis must stay
    strides, mask, it = [], [], iter(kept)
    for s in shape:
      if s == 1:
        strides.append(0)
        mask.append((0, 1))
      else:
        st, m = next(it)
        strides.append(st)
        mask.append(m)
    return View(shape, tuple(strides), self.offset, tuple(mask))

  def index(self, idxs: list[Node]) -> tuple[Node, Node | None]:
    """(flat offset, validity) of this view at the given per-dimension index expressions."""
    flat = offset_node(self.offset)
    valid = None
    for i, (s, st) in enumerate(zip(self.shape, self.strides)):
      if st != 0 and s != 1:
        flat = sym.add(flat, sym.mul(idxs[i], st))
      if self.mask is not None:
        lo, hi = self.mask[i]
        valid = sym.and_(valid, sym.ge(idxs[i], lo))
        valid = sym.and_(valid, sym.lt(idxs[i], hi))
    return flat, valid


def offset_node(offset: int | Offset) -> Node:
  """An offset as an index expression: a constant, or the sum of its Variables (VAR, widened to the index type)
  times their coefficients."""
  if not isinstance(offset, Offset):
    return sym.iconst(offset)
  out = sym.iconst(offset.const)
  for var, k in offset.terms:
    value = Node(Ops.CAST, dtypes.index, (Node(Ops.VAR, dtypes.int32, (), var),))
    out = sym.add(out, sym.mul(value, k))
  return out


def _reshape_strides(old_shape, old_strides, new_shape) -> tuple[int, ...] | None:
  """Strides that give new_shape the same element order as (old_shape, old_strides), or None (needs a copy)."""
  old = [(s, st) for s, st in zip(old_shape, old_strides) if s != 1]
  new = [s for s in new_shape if s != 1]
  out: list[int] = []
  oi = ni = 0
  while ni < len(new):
    if oi >= len(old):
      return None
    # grow a group of old dims and new dims until their element counts agree
    oj, nj = oi + 1, ni + 1
    op, np_ = old[oi][0], new[ni]
    while op != np_:
      if op < np_:
        if oj >= len(old):
          return None
        op *= old[oj][0]
        oj += 1
      else:
        if nj >= len(new):
          return None
        np_ *= new[nj]
        nj += 1
    # the old group must be mergeable: each stride equals the next one times its size
    for k in range(oi, oj - 1):
      if old[k][1] != old[k + 1][1] * old[k + 1][0]:
        return None
    stride = old[oj - 1][1]
    group = []
    for n in reversed(new[ni:nj]):
      group.append(stride)
      stride *= n
    out.extend(reversed(group))
    oi, ni = oj, nj
  if oi != len(old):
    return None
  it = iter(out)
  return tuple(0 if s == 1 else next(it) for s in new_shape)


@dataclasses.dataclass(frozen=True)
class ShapeTracker:
  views: tuple[View, ...]

  @staticmethod
  def contiguous(shape: tuple[int, ...]) -> ShapeTracker:
    return ShapeTracker((View.contiguous(tuple(shape)),))

  @property
  def shape(self) -> tuple[int, ...]:
    return self.views[-1].shape

  @property
  def src_shape(self) -> tuple[int, ...]:
    return self.views[0].shape if self._src_shape is None else self._src_shape

  _src_shape: tuple[int, ...] | None = None  # the shape of the node a graph-level VIEW applies to

  @property
  def is_contiguous(self) -> bool:
    return len(self.views) == 1 and self.views[0].is_contiguous

  @property
  def size(self) -> int:
    return math.prod(self.shape)

  def canonical(self) -> str:
    return " | ".join(f"{v.shape} st={v.strides} off={v.offset}" + (f" mask={v.mask}" if v.mask else "")
                      for v in self.views)

  def _replace_last(self, view: View) -> ShapeTracker:
    return ShapeTracker(self.views[:-1] + (view,), self._src_shape)

  def reshape(self, shape: tuple[int, ...]) -> ShapeTracker:
    shape = tuple(shape)
    last = self.views[-1]
    if last.is_contiguous:
      return self._replace_last(View.contiguous(shape))
    merged = last.reshape(shape)
    if merged is not None:
      return self._replace_last(merged)
    return ShapeTracker(self.views + (View.contiguous(shape),), self._src_shape)

  def permute(self, order) -> ShapeTracker:
    return self._replace_last(self.views[-1].permute(tuple(order)))

  def expand(self, shape) -> ShapeTracker:
    return self._replace_last(self.views[-1].expand(tuple(shape)))

  def pad(self, arg) -> ShapeTracker:
    return self._replace_last(self.views[-1].pad(tuple(arg)))

  def shrink(self, arg) -> ShapeTracker:
    return self._replace_last(self.views[-1].shrink(tuple(arg)))

  def flip(self, axes) -> ShapeTracker:
    return self._replace_last(self.views[-1].flip(tuple(axes)))

  def compose(self, outer: ShapeTracker) -> ShapeTracker:
    """The tracker of `outer` applied on top of this one (outer.src_shape == self.shape)."""
    out = self
    for v in outer.views:
      out = out._push(v)
    return out

  def _push(self, v: View) -> ShapeTracker:
    if v.is_contiguous:
      return self.reshape(v.shape)
    if self.views[-1].is_contiguous:  # a contiguous view maps flat index to flat index: v can stand in its place
      return ShapeTracker(self.views[:-1] + (v,), self._src_shape)
    merged = _merge(self.views[-1], v)
    if merged is not None:
      return self._replace_last(merged)
    return ShapeTracker(self.views + (v,), self._src_shape)

  def with_src_shape(self, shape: tuple[int, ...]) -> ShapeTracker:
    return ShapeTracker(self.views, tuple(shape))

  def index(self, idxs: list[Node]) -> tuple[Node, Node | None]:
    """(flat offset into the innermost buffer, validity) at the given index expressions of the outer shape."""
    valid = None
    flat = None
    for i, view in enumerate(reversed(self.views)):
      flat, v = view.index(idxs)
      valid = sym.and_(valid, v)
      if i + 1 < len(self.views):
        inner_shape = self.views[-2 - i].shape
        idxs = unravel(flat, inner_shape)
    return flat, valid

  def real_strides(self) -> tuple[int | None, ...]:
    """Per-dimension strides of the whole tracker, None where a dimension does not map to one stride."""
    if len(self.views) == 1:
      v = self.views[0]
      if v.mask is None:
        return v.strides
      return tuple(st if m == (0, s) else None for s, st, m in zip(v.shape, v.strides, v.mask))
    return tuple(None for _ in self.shape)


def _merge(inner: View, outer: View) -> View | None:
  """One view equal to `outer` applied over `inner` (outer indexes inner's shape as a row-major flat space), or None.

  Sufficient condition: inner has no mask, and every axis of outer steps along exactly one axis of inner without
  carrying into the next one over its whole range (checked with the extreme coordinates).
  """
  if inner.mask is not None or 0 in inner.shape or 0 in outer.shape or isinstance(outer.offset, Offset):
    return None
  contig = strides_for(inner.shape)
  coords = [0] * len(inner.shape)
  rest = outer.offset
  for k, s in enumerate(inner.shape):  # the offset as coordinates of inner's shape
    if s == 1:
      continue
    coords[k], rest = divmod(rest, contig[k]) if k < len(inner.shape) else (0, rest)
  if rest:
    return None
  lo, hi = list(coords), list(coords)
  strides = []
  for size, st in zip(outer.shape, outer.strides):
    if st == 0 or size == 1:
      strides.append(0)
      continue
    axis = next((k for k, c in enumerate(contig) if c and abs(st) % c == 0 and abs(st) // c < inner.shape[k] and
                 (k == 0 or abs(st) < contig[k - 1] or inner.shape[k - 1] == 1)), None)
    if axis is None:
      return None
    step = st // contig[axis]
    reach = step * (size - 1)
    lo[axis] += min(0, reach)
    hi[axis] += max(0, reach)
    strides.append(step * inner.strides[axis])
  if any(a < 0 or b >= s for a, b, s in zip(lo, hi, inner.shape)):
    return None
  offset = inner.offset + sum(c * st for c, st in zip(coords, inner.strides))
  return View(outer.shape, tuple(strides), offset, outer.mask)


def unravel(flat: Node, shape: tuple[int, ...]) -> list[Node]:
  """Per-dimension indices of a flat row-major index into shape."""
  out = []
  acc = 1
  for s in reversed(shape):
    out.append(sym.iconst(0) if s == 1 else sym.mod(sym.idiv(flat, acc), s))
    acc *= s
  return list(reversed(out))
