"""Shape helpers shared by the Tensor mixins: axis normalization, broadcasting, reshape of graph nodes."""
from __future__ import annotations

import math

from compiler.ir import Node, Ops
from frontend import graph as g
from frontend import multi


def _prod(xs) -> int:
  return math.prod(xs)


def _normalize_axis(axis: int, ndim: int) -> int:
  if not -max(ndim, 1) <= axis < max(ndim, 1):
    raise IndexError(f"axis {axis} is out of range for a tensor with {ndim} dimensions")
  return axis % max(ndim, 1)


def _as_shape(shape) -> tuple[int, ...]:
  """Varargs or one sequence, as tinygrad takes shapes and axis orders: f(2, 3), f((2, 3)) and f([2, 3])."""
  if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
    shape = shape[0]
  return tuple(int(s) for s in shape)


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


def _reshape_node(node: Node, shape: tuple[int, ...]) -> Node:
  """graph.reshape, except that a reshape of a RESHAPE node stays a chain: collapsing it would drop that node (maybe
  a leaf tensor's own node) from the graph, and autograd finds the tensors it differentiates by node identity."""
  if isinstance(node, multi.MultiNode):
    return node if tuple(shape) == node.shape else multi.reshape(node, tuple(shape), _reshape_node)
  out = g.reshape(node, shape)
  if out is node or node.op is not Ops.RESHAPE:
    return out
  return Node(Ops.RESHAPE, node.dtype, (node,), out.shape, out.shape, node.device)
