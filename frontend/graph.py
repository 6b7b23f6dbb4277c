"""Building the lazy graph: checked constructors for graph-level IR nodes.

Tensor methods and the autograd rules both build graphs through these, so shape and dtype checks live in one
place and every error names the values involved. Each constructor also takes a multi-device value
(frontend.multi.MultiNode) and maps the operation over its shards.
"""
from __future__ import annotations

import math

from compiler.dtypes import DType, dtypes
from compiler.ir import BINARY, COMPARISON, MOVEMENT, BoundVariable, Node, Offset, Ops, as_offset, cast_scalar


def device_of(x: Node) -> str | None:
  return x.device


def const(value, dtype: DType, shape: tuple[int, ...], device: str | tuple[str, ...]) -> Node:
  if isinstance(device, tuple):
    return multi.const(value, dtype, shape, device)
  c = Node(Ops.CONST, dtype, (), cast_scalar(value, dtype), (), device)
  if not shape:
    return c
  return expand(reshape(c, (1,) * len(shape)), shape)


def bind(bound: BoundVariable | Offset, dtype: DType, shape: tuple[int, ...], device: str | tuple[str, ...]) -> Node:
  """A bound Variable's value (or an Offset's: const + sum(coeff * value), in int32) as a node of dtype and shape
  (BIND is int32; other dtypes cast it)."""
  bound = as_offset(bound)
  terms, const = bound.terms, bound.const
  if isinstance(device, tuple):
    names = [v.var.name for v, _ in terms]
    raise NotImplementedError(f"Variable {', '.join(names)} on several devices {device}: symbolic values are "
                              f"supported on one device; bind it per shard")
  node = None
  for bv, k in terms:
    term = Node(Ops.BIND, dtypes.int32, (), bv, (), device)
    if k != 1:
      term = alu(Ops.MUL, term, Node(Ops.CONST, dtypes.int32, (), cast_scalar(k, dtypes.int32), (), device))
    node = term if node is None else alu(Ops.ADD, node, term)
  if const:
    node = alu(Ops.ADD, node, Node(Ops.CONST, dtypes.int32, (), cast_scalar(const, dtypes.int32), (), device))
  node = cast(node, dtype)
  return expand(reshape(node, (1,) * len(shape)), shape) if shape else node


def const_like(x: Node, value, dtype: DType | None = None) -> Node:
  return const(value, dtype or x.dtype, x.shape, x.device)


def alu(op: Ops, *srcs: Node) -> Node:
  if any(isinstance(s, multi.MultiNode) for s in srcs):
    return multi.alu(op, *srcs)
  shape = srcs[0].shape
  for s in srcs[1:]:
    if s.shape != shape:
      raise ValueError(f"{op.name}: operand shapes {[x.shape for x in srcs]} differ (broadcast them first)")
  if op is Ops.WHERE:
    if srcs[0].dtype != dtypes.bool or srcs[1].dtype != srcs[2].dtype:
      raise TypeError(f"WHERE needs (bool, x, y) with x and y of one dtype, got {[s.dtype for s in srcs]}")
    dtype = srcs[1].dtype
  elif op in COMPARISON:
    dtype = dtypes.bool
  else:
    dtype = srcs[0].dtype
  if op in BINARY and op not in (Ops.SHL, Ops.SHR) and srcs[0].dtype != srcs[1].dtype:
    raise TypeError(f"{op.name}: operand dtypes {srcs[0].dtype.name} and {srcs[1].dtype.name} differ (cast first)")
  return Node(op, dtype, srcs, None, shape, srcs[0].device)


def cast(x: Node, dtype: DType) -> Node:
  if x.dtype == dtype:
    return x
  if isinstance(x, multi.MultiNode):
    return x.map(lambda n: cast(n, dtype))
  return Node(Ops.CAST, dtype, (x,), None, x.shape, x.device)


def bitcast(x: Node, dtype: DType) -> Node:
  if x.dtype.itemsize != dtype.itemsize:
    raise TypeError(f"bitcast from {x.dtype.name} to {dtype.name} changes the item size "
                    f"({x.dtype.itemsize} vs {dtype.itemsize} bytes); only same-size bitcasts are supported")
  if x.dtype == dtype:
    return x
  if isinstance(x, multi.MultiNode):
    return x.map(lambda n: bitcast(n, dtype))
  return Node(Ops.BITCAST, dtype, (x,), None, x.shape, x.device)


def reduce(x: Node, op: Ops, axes: tuple[int, ...]) -> Node:
  axes = tuple(sorted(set(axes)))
  if not axes:
    return x
  if isinstance(x, multi.MultiNode):
    return multi.reduce(x, op, axes)
  shape = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
  return Node(Ops.REDUCE, x.dtype, (x,), (op, axes), shape, x.device)


def _move(x: Node, op: Ops, arg, shape: tuple[int, ...]) -> Node:
  return Node(op, x.dtype, (x,), arg, shape, x.device)


def reshape(x: Node, shape: tuple[int, ...]) -> Node:
  shape = tuple(int(s) for s in shape)
  if math.prod(shape) != x.size or any(s < 0 for s in shape):
    raise ValueError(f"cannot reshape {x.shape} ({x.size} elements) to {shape}")
  if shape == x.shape:
    return x
  if isinstance(x, multi.MultiNode):
    return multi.reshape(x, shape, reshape)
  if x.op is Ops.RESHAPE:
    x = x.src[0]  # reshape(reshape(x)) -> reshape(x)
    if shape == x.shape:
      return x
  return _move(x, Ops.RESHAPE, shape, shape)


def permute(x: Node, order: tuple[int, ...]) -> Node:
  order = tuple(order)
  if sorted(order) != list(range(len(x.shape))):
    raise ValueError(f"permute order {order} is not a permutation of the {len(x.shape)} axes of shape {x.shape}")
  if order == tuple(range(len(order))):
    return x
  if isinstance(x, multi.MultiNode):
    return multi.permute(x, order)
  return _move(x, Ops.PERMUTE, order, tuple(x.shape[i] for i in order))


def expand(x: Node, shape: tuple[int, ...]) -> Node:
  shape = tuple(shape)
  if len(shape) != len(x.shape) or any(s != n and s != 1 for s, n in zip(x.shape, shape)):
    raise ValueError(f"cannot expand shape {x.shape} to {shape}: only axes of size 1 can grow")
  if shape == x.shape:
    return x
  if isinstance(x, multi.MultiNode):
    return multi.expand(x, shape)
  return _move(x, Ops.EXPAND, shape, shape)


def pad(x: Node, arg: tuple[tuple[int, int], ...]) -> Node:
  arg = tuple((int(b), int(a)) for b, a in arg)
  if len(arg) != len(x.shape) or any(b < 0 or a < 0 for b, a in arg):
    raise ValueError(f"pad {arg} must give (before, after) >= 0 for each of the {len(x.shape)} axes")
  if all(p == (0, 0) for p in arg):
    return x
  if isinstance(x, multi.MultiNode):
    return multi.pad(x, arg)
  return _move(x, Ops.PAD, arg, tuple(s + b + a for s, (b, a) in zip(x.shape, arg)))


def shrink(x: Node, arg: tuple[tuple[int, int], ...]) -> Node:
  """x[lo:hi] per axis. A bound may be a BoundVariable or an Offset over them (`(pos, pos + 1)`): the view then
  starts at a launch-time index; its width hi - lo must still be an int.

  Raises:
    ValueError: a window outside the shape (for any value the Variables may take), or a width that depends on a
      Variable.
  """
  arg = tuple(tuple(_index(b) for b in pair) for pair in arg)
  if any(isinstance(b, Offset) for pair in arg for b in pair):
    return _symbolic_shrink(x, arg)
  if len(arg) != len(x.shape) or any(not 0 <= lo <= hi <= s for (lo, hi), s in zip(arg, x.shape)):
    raise ValueError(f"shrink {arg} out of range for shape {x.shape}")
  if all(p == (0, s) for p, s in zip(arg, x.shape)):
    return x
  if isinstance(x, multi.MultiNode):
    return multi.shrink(x, arg)
  return _move(x, Ops.SHRINK, arg, tuple(hi - lo for lo, hi in arg))


def _index(b):
  b = as_offset(b)
  return b if isinstance(b, Offset) else int(b)


def _symbolic_shrink(x: Node, arg) -> Node:
  text = [tuple(str(b) for b in pair) for pair in arg]
  if len(arg) != len(x.shape):
    raise ValueError(f"shrink {text}: {len(arg)} windows for shape {x.shape}")
  if isinstance(x, multi.MultiNode):
    raise NotImplementedError(f"shrink {text} at a Variable of a tensor on several devices; bind it per shard")
  widths = []
  for (lo, hi), s, t in zip(arg, x.shape, text):
    width = hi - lo
    if isinstance(width, Offset):
      raise ValueError(f"shrink window {t}: its width {width} depends on a Variable; only the start may (write "
                       f"(v, v + n) for a window of n)")
    lo_min = lo.bounds()[0] if isinstance(lo, Offset) else lo
    hi_max = hi.bounds()[1] if isinstance(hi, Offset) else hi
    if width < 0 or lo_min < 0 or hi_max > s:
      raise ValueError(f"shrink window {t} of an axis of size {s}: over the Variables' bounds it spans "
                       f"[{lo_min}, {hi_max}), outside [0, {s}]; narrow the Variable's bounds")
    widths.append(width)
  return _move(x, Ops.SHRINK, arg, tuple(widths))


def flip(x: Node, axes: tuple[int, ...]) -> Node:
  axes = tuple(a for a in axes if x.shape[a] > 1)
  if not axes:
    return x
  if isinstance(x, multi.MultiNode):
    return multi.flip(x, axes)
  return _move(x, Ops.FLIP, tuple(sorted(axes)), x.shape)


def is_movement(x: Node) -> bool:
  return x.op in MOVEMENT


from frontend import multi  # noqa: E402 - multi builds on the constructors above; they dispatch to it at call time
