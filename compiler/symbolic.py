"""Index arithmetic on loop-level IR nodes, simplified as it is built.

Index expressions are ALU nodes of dtype `dtypes.index` over RANGE/LANE variables and CONSTs. Each builder folds
constants and applies the identities named beside it, using the value range [vmin, vmax] of every node so that
reshapes of contiguous views compile to plain multiply-adds instead of divisions.
"""
from __future__ import annotations

import weakref

from compiler.dtypes import dtypes
from compiler.ir import Node, Ops, const

INDEX = dtypes.index
_bounds: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def iconst(v: int) -> Node:
  return Node(Ops.CONST, INDEX, (), int(v))


def bconst(v: bool) -> Node:
  return const(bool(v), dtypes.bool)


def is_const(x: Node, value=None) -> bool:
  return x.op is Ops.CONST and (value is None or x.arg == value)


def bounds(x: Node) -> tuple[int, int]:
  """[vmin, vmax] of an index or bool expression."""
  got = _bounds.get(x)
  if got is None:
    got = _compute_bounds(x)
    _bounds[x] = got
  return got


def _compute_bounds(x: Node) -> tuple[int, int]:
  if x.op is Ops.CONST:
    return int(x.arg), int(x.arg)
  if x.op is Ops.RANGE:
    return 0, x.arg[1] - 1
  if x.op in (Ops.LANE, Ops.THREADIDX, Ops.BLOCKIDX):
    return 0, x.arg[1] - 1
  if x.op is Ops.VAR:
    return x.arg.lo, x.arg.hi
  if x.op is Ops.CAST and x.src[0].op is Ops.VAR and x.dtype.is_int and x.dtype.itemsize >= 4 and \
     (x.src[0].arg.lo >= 0 or not x.dtype.is_unsigned):
    return x.src[0].arg.lo, x.src[0].arg.hi  # a Variable is int32: a cast that represents all its values keeps them
  if x.op in (Ops.ADD, Ops.MUL, Ops.SUB):
    (a0, a1), (b0, b1) = bounds(x.src[0]), bounds(x.src[1])
    if x.op is Ops.ADD:
      return a0 + b0, a1 + b1
    if x.op is Ops.SUB:
      return a0 - b1, a1 - b0
    products = (a0 * b0, a0 * b1, a1 * b0, a1 * b1)
    return min(products), max(products)
  if x.op in (Ops.IDIV, Ops.MOD) and is_const(x.src[1]) and x.src[1].arg > 0:
    # division truncates toward zero, as the renderers' `/`, `%`, div and rem do: the quotient is monotonic in the
    # dividend, and the remainder has the dividend's sign and a magnitude below the divisor's
    lo, hi = bounds(x.src[0])
    d = x.src[1].arg
    if x.op is Ops.IDIV:
      return (lo // d if lo >= 0 else -(-lo // d)), (hi // d if hi >= 0 else -(-hi // d))
    return (0 if lo >= 0 else max(lo, 1 - d)), (min(hi, d - 1) if hi >= 0 else 0)
  if x.dtype == dtypes.bool:
    return 0, 1
  return -(1 << 62), 1 << 62


def linear_terms(x: Node) -> tuple[dict[Node, int], int] | None:
  """x as sum(coeff * term) + c, where terms are non-linear leaves; None when x is not affine in its leaves."""
  if x.op is Ops.CONST:
    return {}, int(x.arg)
  if x.op is Ops.ADD:
    a, b = linear_terms(x.src[0]), linear_terms(x.src[1])
    terms = dict(a[0])
    for t, c in b[0].items():
      terms[t] = terms.get(t, 0) + c
    return {t: c for t, c in terms.items() if c != 0}, a[1] + b[1]
  if x.op is Ops.MUL and is_const(x.src[1]):
    k = x.src[1].arg
    a = linear_terms(x.src[0])
    return {t: c * k for t, c in a[0].items() if c * k != 0}, a[1] * k
  return {x: 1}, 0


def from_terms(terms: dict[Node, int], c: int) -> Node:
  out: Node | None = None
  for t, k in terms.items():
    term = t if k == 1 else Node(Ops.MUL, INDEX, (t, iconst(k)))
    out = term if out is None else Node(Ops.ADD, INDEX, (out, term))
  if out is None:
    return iconst(c)
  return out if c == 0 else Node(Ops.ADD, INDEX, (out, iconst(c)))


def add(a: Node, b: Node) -> Node:
  if is_const(a) and is_const(b):
    return iconst(a.arg + b.arg)
  terms, c = linear_terms(Node(Ops.ADD, INDEX, (a, b)))  # x+0 -> x, (x+c1)+c2 -> x+(c1+c2), kx+jx -> (k+j)x
  return from_terms(terms, c)


def mul(a: Node, k: int) -> Node:
  if k == 0:
    return iconst(0)  # x*0 -> 0
  if k == 1:
    return a  # x*1 -> x
  terms, c = linear_terms(a)
  return from_terms({t: v * k for t, v in terms.items()}, c * k)  # (ax+b)*k -> (ak)x + bk


def _split(a: Node, d: int) -> tuple[dict[Node, int], int, Node] | None:
  """a = d*q + r with every coefficient of r reduced modulo d; (q terms, q const, r), or None if a is not affine."""
  terms, c = linear_terms(a)
  q_terms = {t: k // d for t, k in terms.items() if k // d}
  r = from_terms({t: k % d for t, k in terms.items() if k % d}, c % d)
  return q_terms, c // d, r


def idiv(a: Node, d: int) -> Node:
  """Floor division of a non-negative index by a positive constant."""
  if d == 1:
    return a  # x//1 -> x
  lo, hi = bounds(a)
  if lo >= 0 and hi < d:
    return iconst(0)  # x//d -> 0 when 0 <= x < d
  if lo >= 0 and all(bounds(t)[0] >= 0 for t in linear_terms(a)[0]):
    q_terms, qc, r = _split(a, d)
    rlo, rhi = bounds(r)
    if rlo >= 0 and rhi < d:  # (d*q + r)//d -> q when 0 <= r < d (coefficients taken modulo d)
      return from_terms(q_terms, qc)
    if rlo >= 0 and (q_terms or qc):  # (d*q + r)//d -> q + r//d when r >= 0: a smaller division
      return add(from_terms(q_terms, qc), Node(Ops.IDIV, INDEX, (r, iconst(d))))
  return Node(Ops.IDIV, INDEX, (a, iconst(d)))


def mod(a: Node, d: int) -> Node:
  """Remainder of a non-negative index by a positive constant."""
  if d == 1:
    return iconst(0)  # x%1 -> 0
  lo, hi = bounds(a)
  if lo >= 0 and hi < d:
    return a  # x%d -> x when 0 <= x < d
  if lo >= 0 and all(bounds(t)[0] >= 0 for t in linear_terms(a)[0]):
    _, _, r = _split(a, d)
    rlo, rhi = bounds(r)
    if rlo >= 0 and rhi < d:  # (d*q + r)%d -> r when 0 <= r < d (coefficients taken modulo d)
      return r
    if r is not a and rlo >= 0:
      return Node(Ops.MOD, INDEX, (r, iconst(d)))  # (d*q + r)%d -> r%d
  return Node(Ops.MOD, INDEX, (a, iconst(d)))


def lt(a: Node, b: int) -> Node:
  lo, hi = bounds(a)
  if hi < b:
    return bconst(True)  # x<b -> True when vmax(x) < b
  if lo >= b:
    return bconst(False)
  return Node(Ops.CMPLT, dtypes.bool, (a, iconst(b)))


def ge(a: Node, b: int) -> Node:
  lo, hi = bounds(a)
  if lo >= b:
    return bconst(True)  # x>=b -> True when vmin(x) >= b
  if hi < b:
    return bconst(False)
  return Node(Ops.NOT, dtypes.bool, (Node(Ops.CMPLT, dtypes.bool, (a, iconst(b))),))


def and_(a: Node | None, b: Node | None) -> Node | None:
  """Logical and of gates; None means always true."""
  if a is None or is_const(a, True):
    return None if b is None or is_const(b, True) else b
  if b is None or is_const(b, True):
    return a
  if is_const(a, False) or is_const(b, False):
    return bconst(False)
  return Node(Ops.AND, dtypes.bool, (a, b))


def substitute(x: Node, mapping: dict[Node, Node], memo: dict | None = None) -> Node:
  """x with the nodes in mapping replaced, re-simplified through the builders above."""
  memo = {} if memo is None else memo
  if x in mapping:
    return mapping[x]
  if id(x) in memo:
    return memo[id(x)]
  if not x.src:
    return x
  srcs = [substitute(s, mapping, memo) for s in x.src]
  if x.dtype == INDEX and x.op is Ops.ADD:
    out = add(srcs[0], srcs[1])
  elif x.dtype == INDEX and x.op is Ops.MUL and is_const(srcs[1]):
    out = mul(srcs[0], srcs[1].arg)
  elif x.op is Ops.IDIV and is_const(srcs[1]):
    out = idiv(srcs[0], srcs[1].arg)
  elif x.op is Ops.MOD and is_const(srcs[1]):
    out = mod(srcs[0], srcs[1].arg)
  elif x.op is Ops.CMPLT and x.src[0].dtype == INDEX and is_const(srcs[1]):
    out = lt(srcs[0], srcs[1].arg)
  elif x.op is Ops.AND and x.dtype == dtypes.bool:
    out = and_(srcs[0], srcs[1]) or bconst(True)
  elif x.op is Ops.NOT and is_const(srcs[0]):
    out = bconst(not srcs[0].arg)
  elif all(a is b for a, b in zip(srcs, x.src)):
    out = x
  else:
    out = Node(x.op, x.dtype, tuple(srcs), x.arg, x.shape)
  memo[id(x)] = out
  return out
