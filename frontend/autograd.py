"""Reverse-mode autodiff on the lazy graph: each rule maps (node, upstream gradient) to source gradients, as new
lazy nodes. Nothing is computed here; the gradient graph is realized like any other.
"""
from __future__ import annotations

import math

from compiler.ir import Node, Ops, bindings
from frontend import graph as g


def _sum_to(grad: Node, shape: tuple[int, ...]) -> Node:
  axes = tuple(i for i, (a, b) in enumerate(zip(grad.shape, shape)) if a != b)
  return g.reduce(grad, Ops.ADD, axes)


def _mul(a: Node, b: Node) -> Node:
  return g.alu(Ops.MUL, a, b)


def _rule(node: Node, grad: Node) -> tuple[Node | None, ...]:
  op, src = node.op, node.src
  x = src[0]
  if op is Ops.ADD:
    return grad, grad
  if op is Ops.SUB:
    return grad, g.alu(Ops.NEG, grad)
  if op is Ops.MUL:
    return _mul(grad, src[1]), _mul(grad, x)
  if op is Ops.FDIV:
    gx = g.alu(Ops.FDIV, grad, src[1])
    return gx, g.alu(Ops.NEG, _mul(gx, g.alu(Ops.FDIV, x, src[1])))
  if op is Ops.NEG:
    return (g.alu(Ops.NEG, grad),)
  if op is Ops.RECIP:
    return (g.alu(Ops.NEG, _mul(grad, _mul(node, node))),)  # d(1/x) = -1/x^2
  if op is Ops.SQRT:
    return (g.alu(Ops.FDIV, grad, _mul(node, g.const_like(node, 2.0))),)
  if op is Ops.EXP2:
    return (_mul(grad, _mul(node, g.const_like(node, math.log(2)))),)
  if op is Ops.LOG2:
    return (g.alu(Ops.FDIV, grad, _mul(x, g.const_like(x, math.log(2)))),)
  if op is Ops.SIN:
    cos = g.alu(Ops.SIN, g.alu(Ops.SUB, g.const_like(x, math.pi / 2), x))
    return (_mul(grad, cos),)
  if op is Ops.MAX:
    # ties split the gradient evenly, as torch.maximum does
    gt = g.cast(g.alu(Ops.CMPLT, src[1], x), grad.dtype)
    eq = g.cast(g.alu(Ops.CMPEQ, x, src[1]), grad.dtype)
    half = _mul(eq, g.const_like(eq, 0.5))
    wx = g.alu(Ops.ADD, gt, half)
    wy = g.alu(Ops.SUB, g.const_like(wx, 1.0), wx)
    return _mul(grad, wx), _mul(grad, wy)
  if op is Ops.WHERE:
    zero = g.const_like(grad, 0.0)
    return None, g.alu(Ops.WHERE, x, grad, zero), g.alu(Ops.WHERE, x, zero, grad)
  if op is Ops.CAST:
    return (g.cast(grad, x.dtype),) if x.dtype.is_float else (None,)
  if op in (Ops.CONTIGUOUS,):
    return (grad,)
  if op is Ops.REDUCE:
    return (_reduce_rule(node, grad),)
  return _movement_rule(node, grad)


def _reduce_rule(node: Node, grad: Node) -> Node:
  rop, _ = node.arg
  x = node.src[0]
  expanded = g.expand(grad, x.shape)
  if rop is Ops.ADD:
    return expanded
  out = g.expand(node, x.shape)
  if rop is Ops.MAX:
    mask = g.cast(g.alu(Ops.CMPEQ, x, out), grad.dtype)
    count = g.expand(g.reduce(mask, Ops.ADD, node.arg[1]), x.shape)
    return _mul(expanded, g.alu(Ops.FDIV, mask, count))
  return _mul(expanded, _prod_grad(node, x, out))


def _prod_grad(node: Node, x: Node, out: Node) -> Node:
  """d prod / dx_i, the product of the other elements: prod / x_i where x_i != 0; where x_i == 0, the product of the
  nonzero elements if x_i is the only zero, else 0."""
  axes = node.arg[1]
  zero = g.const_like(x, 0)
  one = g.const_like(x, 1)
  is_zero = g.alu(Ops.CMPEQ, x, zero)
  nonzero_prod = g.expand(g.reduce(g.alu(Ops.WHERE, is_zero, one, x), Ops.MUL, axes), x.shape)
  zero_count = g.expand(g.reduce(g.cast(is_zero, x.dtype), Ops.ADD, axes), x.shape)
  only_zero = g.alu(Ops.CMPEQ, zero_count, one)
  at_zero = g.alu(Ops.WHERE, only_zero, nonzero_prod, zero)
  safe_x = g.alu(Ops.WHERE, is_zero, one, x)
  return g.alu(Ops.WHERE, is_zero, at_zero, g.alu(Ops.FDIV, out, safe_x))


def _movement_rule(node: Node, grad: Node) -> tuple[Node | None, ...]:
  op, x = node.op, node.src[0]
  if op is Ops.RESHAPE:
    return (g.reshape(grad, x.shape),)
  if op is Ops.PERMUTE:
    inverse = tuple(sorted(range(len(node.arg)), key=lambda i: node.arg[i]))
    return (g.permute(grad, inverse),)
  if op is Ops.EXPAND:
    return (_sum_to(grad, x.shape),)
  if op is Ops.PAD:
    return (g.shrink(grad, tuple((b, b + s) for (b, _), s in zip(node.arg, x.shape))),)
  if op is Ops.SHRINK:
    if bindings(node):
      raise NotImplementedError(f"the gradient of a shrink at a Variable {[tuple(map(str, p)) for p in node.arg]} "
                                f"(a pad at a launch-time index) is not supported; detach() the shrunk tensor")
    return (g.pad(grad, tuple((lo, s - hi) for (lo, hi), s in zip(node.arg, x.shape))),)
  if op is Ops.FLIP:
    return (g.flip(grad, node.arg),)
  if op is Ops.COPY:  # a copy between devices: its gradient is the copy back to the source's device
    return (Node(Ops.COPY, grad.dtype, (grad,), x.device, x.shape, x.device),)
  return tuple(None for _ in node.src)  # BUFFER, CONST, DETACH, ASSIGN, BITCAST, comparisons, integer ops


NON_DIFFERENTIABLE = {Ops.BUFFER, Ops.CONST, Ops.BIND, Ops.DETACH, Ops.ASSIGN, Ops.BITCAST, Ops.CMPLT, Ops.CMPNE,
                      Ops.CMPEQ, Ops.AND, Ops.OR, Ops.XOR, Ops.NOT, Ops.SHL, Ops.SHR, Ops.IDIV, Ops.MOD, Ops.TRUNC}


def _toposort(roots: list[Node]) -> list[Node]:
  """The nodes reachable from any root, each after its sources (each root's order, skipping nodes seen before)."""
  order: list[Node] = []
  seen: set[int] = set()
  for root in roots:
    for n in root.toposort():
      if id(n) not in seen:
        seen.add(id(n))
        order.append(n)
  return order


def gradients(root: Node | list[Node], seed: Node | list[Node], targets: list[Node]) -> dict[int, Node]:
  """Gradients of root (weighted by seed) with respect to each target node, keyed by id(target). Several roots
  (with one seed each) give the gradient of the sum of their seed-weighted values, as for the shards of a
  multi-device value."""
  roots = root if isinstance(root, list) else [root]
  seeds = seed if isinstance(seed, list) else [seed]
  target_ids = {id(t) for t in targets}
  order = _toposort(roots)
  # nodes from which a target can be reached: only those carry gradient
  reaches: set[int] = set()
  for n in order:
    if id(n) in target_ids or (n.op not in NON_DIFFERENTIABLE and any(id(s) in reaches for s in n.src)):
      reaches.add(id(n))
  grads: dict[int, Node] = {}
  for r, sd in zip(roots, seeds):
    prev = grads.get(id(r))
    grads[id(r)] = sd if prev is None else g.alu(Ops.ADD, prev, sd)
  for n in reversed(order):
    grad = grads.get(id(n))
    if grad is None or n.op in NON_DIFFERENTIABLE or not n.src:
      continue
    for s, sg in zip(n.src, _rule(n, grad)):
      if sg is None or id(s) not in reaches:
        continue
      prev = grads.get(id(s))
      grads[id(s)] = sg if prev is None else g.alu(Ops.ADD, prev, sg)
  return {i: grads[i] for i in target_ids if i in grads}
