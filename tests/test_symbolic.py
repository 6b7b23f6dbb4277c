"""compiler/symbolic.py against brute force: every simplification rule is checked by evaluating the simplified and the
unsimplified expression at every point of its variables' ranges (C semantics: `/` and `%` truncate toward zero, as
the rendered kernels compute them). `bounds` is checked to contain every value an expression takes.

`evaluate` and `ranges` are also used by tests/test_views.py.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from compiler import symbolic as sym
from compiler.dtypes import dtypes
from compiler.ir import Node, Ops

INDEX = dtypes.index


# ---- a reference evaluator for loop-level index and gate expressions ----------------------------------------------

def _c_div(a, b):
  a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
  q = np.abs(a) // np.abs(b)
  return np.where((a < 0) != (b < 0), -q, q)


def _c_mod(a, b):
  return np.asarray(a, np.int64) - np.asarray(b, np.int64) * _c_div(a, b)


def _logical_or_bitwise(logical, bitwise):
  def fn(a, b):
    if np.asarray(a).dtype == np.bool_:
      return logical(a, b)
    return bitwise(a, b)
  return fn


_EVAL = {
  Ops.ADD: lambda a, b: np.asarray(a, np.int64) + b, Ops.SUB: lambda a, b: np.asarray(a, np.int64) - b,
  Ops.MUL: lambda a, b: np.asarray(a, np.int64) * b, Ops.IDIV: _c_div, Ops.MOD: _c_mod, Ops.MAX: np.maximum,
  Ops.CMPLT: np.less, Ops.CMPNE: np.not_equal, Ops.CMPEQ: np.equal, Ops.NOT: np.logical_not,
  Ops.AND: _logical_or_bitwise(np.logical_and, np.bitwise_and),
  Ops.OR: _logical_or_bitwise(np.logical_or, np.bitwise_or),
  Ops.WHERE: np.where,
}


def evaluate(node: Node, env: dict[Node, np.ndarray]) -> np.ndarray:
  """The value of an index/bool expression, with numpy arrays (or ints) standing for its RANGE and LANE leaves."""
  values: dict[int, object] = {}
  for n in node.toposort():
    if n.op is Ops.CONST:
      values[id(n)] = np.asarray(n.arg, np.bool_ if isinstance(n.arg, bool) else np.int64)
    elif n.op in (Ops.RANGE, Ops.LANE):
      values[id(n)] = np.asarray(env[n], np.int64)
    else:
      values[id(n)] = _EVAL[n.op](*[values[id(s)] for s in n.src])
  return np.asarray(values[id(node)])


def ranges(*extents: int) -> list[Node]:
  return [Node(Ops.RANGE, INDEX, (), (f"v{i}", e)) for i, e in enumerate(extents)]


def grid(variables: list[Node]) -> dict[Node, np.ndarray]:
  """Every combination of the variables' values, one axis per variable."""
  extents = [v.arg[1] for v in variables]
  return dict(zip(variables, np.indices(extents) if extents else []))


def values_of(node: Node, env: dict[Node, np.ndarray]) -> np.ndarray:
  shape = next(iter(env.values())).shape if env else ()
  return np.broadcast_to(evaluate(node, env), shape)


def assert_same(raw: Node, simplified: Node, variables: list[Node]) -> None:
  """raw and simplified agree at every point, and bounds() holds every value of both."""
  env = grid(variables)
  want, got = values_of(raw, env), values_of(simplified, env)
  np.testing.assert_array_equal(got, want, err_msg=f"simplified {simplified!r} differs from {raw!r}")
  for node, vals in ((raw, want), (simplified, got)):
    lo, hi = sym.bounds(node)
    assert lo <= vals.min() and vals.max() <= hi, f"bounds {lo, hi} miss values [{vals.min()}, {vals.max()}]"


def raw(op: Ops, a: Node, b: Node | int) -> Node:
  """An unsimplified index node."""
  b = sym.iconst(b) if isinstance(b, int) else b
  return Node(op, dtypes.bool if op is Ops.CMPLT else INDEX, (a, b))


def affine(terms: dict[Node, int], c: int) -> tuple[Node, Node]:
  """(raw sum of k*x + c, the same through the builders)."""
  r: Node = sym.iconst(c)
  s: Node = sym.iconst(c)
  for x, k in terms.items():
    r = raw(Ops.ADD, r, raw(Ops.MUL, x, k))
    s = sym.add(s, sym.mul(x, k))
  return r, s


# ---- bounds of leaves -----------------------------------------------------------------------------------------------

def test_bounds_of_leaves():
  i, = ranges(7)
  lane = Node(Ops.LANE, INDEX, (), ("lane", 16))
  assert sym.bounds(i) == (0, 6)
  assert sym.bounds(lane) == (0, 15)
  assert sym.bounds(sym.iconst(-3)) == (-3, -3)
  assert sym.bounds(sym.bconst(True)) == (1, 1)


# ---- add ------------------------------------------------------------------------------------------------------------

def test_add_folds_constants():
  out = sym.add(sym.iconst(3), sym.iconst(-8))
  assert out.op is Ops.CONST and out.arg == -5


def test_add_zero_is_identity():
  i, = ranges(5)
  assert sym.add(i, sym.iconst(0)) is i  # x+0 -> x
  assert sym.add(sym.iconst(0), i) is i


def test_add_collects_constants():
  i, = ranges(5)
  r = raw(Ops.ADD, raw(Ops.ADD, i, 3), 4)
  s = sym.add(sym.add(i, sym.iconst(3)), sym.iconst(4))  # (x+c1)+c2 -> x+(c1+c2)
  assert sym.linear_terms(s) == ({i: 1}, 7)
  assert_same(r, s, [i])


def test_add_collects_like_terms():
  i, j = ranges(4, 6)
  r = raw(Ops.ADD, raw(Ops.ADD, raw(Ops.MUL, i, 2), j), raw(Ops.MUL, i, 3))
  s = sym.add(sym.add(sym.mul(i, 2), j), sym.mul(i, 3))  # kx+jx -> (k+j)x
  assert sym.linear_terms(s) == ({i: 5, j: 1}, 0)
  assert_same(r, s, [i, j])


def test_add_cancels_terms():
  i, = ranges(9)
  s = sym.add(sym.add(i, sym.iconst(2)), sym.mul(i, -1))  # x + (-1)x -> 0
  assert s.op is Ops.CONST and s.arg == 2


# ---- mul ------------------------------------------------------------------------------------------------------------

def test_mul_by_zero_and_one():
  i, = ranges(5)
  zero = sym.mul(i, 0)  # x*0 -> 0
  assert zero.op is Ops.CONST and zero.arg == 0
  assert sym.mul(i, 1) is i  # x*1 -> x


@pytest.mark.parametrize("k", [-3, -1, 2, 5])
def test_mul_distributes(k):
  i, j = ranges(4, 3)
  r_in, s_in = affine({i: 2, j: -1}, 3)
  s = sym.mul(s_in, k)  # (ax+b)*k -> (ak)x + bk
  assert sym.linear_terms(s) == ({i: 2 * k, j: -k}, 3 * k)
  assert_same(raw(Ops.MUL, r_in, k), s, [i, j])


# ---- idiv -----------------------------------------------------------------------------------------------------------

def test_idiv_by_one():
  i, = ranges(5)
  assert sym.idiv(i, 1) is i  # x//1 -> x


def test_idiv_below_divisor_is_zero():
  i, j = ranges(3, 2)
  s_in = sym.add(i, j)  # in [0, 3]
  out = sym.idiv(s_in, 4)  # x//d -> 0 when 0 <= x < d
  assert out.op is Ops.CONST and out.arg == 0
  assert_same(raw(Ops.IDIV, raw(Ops.ADD, i, j), 4), out, [i, j])


@pytest.mark.parametrize("d", [2, 3, 4, 8])
def test_idiv_splits_quotient(d):
  i, j = ranges(5, d)
  r_in, s_in = affine({i: d, j: 1}, 0)
  out = sym.idiv(s_in, d)  # (d*q + r)//d -> q when 0 <= r < d
  assert out is i
  assert_same(raw(Ops.IDIV, r_in, d), out, [i, j])


def test_idiv_splits_with_constant_and_coefficients():
  i, j, k = ranges(4, 3, 2)
  r_in, s_in = affine({i: 12, j: 4, k: 1}, 2)  # (12i + 4j + k + 2)//4 -> 3i + j  (k + 2 < 4)
  out = sym.idiv(s_in, 4)
  assert sym.linear_terms(out) == ({i: 3, j: 1}, 0)
  assert_same(raw(Ops.IDIV, r_in, 4), out, [i, j, k])


def test_idiv_pulls_the_quotient_out_when_the_remainder_can_carry():
  i, j = ranges(5, 6)
  r_in, s_in = affine({i: 4, j: 1}, 0)  # j reaches 5 >= 4: (4i + j)//4 -> i + j//4, a smaller division
  out = sym.idiv(s_in, 4)
  assert out.op is Ops.ADD and {s.op for s in out.src} == {Ops.RANGE, Ops.IDIV}
  assert_same(raw(Ops.IDIV, r_in, 4), out, [i, j])
  k, m = ranges(7, 9)
  r_in, s_in = affine({i: 42, j: 13, k: 1, m: 84}, 5)  # a conv backward's unravel: (84m + 42i + 13j + k + 5)//42
  out = sym.idiv(s_in, 42)
  assert sym.linear_terms(out)[0].get(m) == 2 and sym.linear_terms(out)[0].get(i) == 1
  assert_same(raw(Ops.IDIV, r_in, 42), out, [i, j, k, m])


def test_idiv_keeps_division_without_a_quotient_to_pull():
  i, j = ranges(5, 6)
  r_in, s_in = affine({i: 1, j: 3}, 0)  # every coefficient below the divisor: nothing to pull out
  out = sym.idiv(s_in, 4)
  assert out.op is Ops.IDIV
  assert_same(raw(Ops.IDIV, r_in, 4), out, [i, j])


def test_idiv_negative_coefficient():
  i, j = ranges(6, 4)
  r_in, s_in = affine({i: 4, j: -1}, 3)  # 4i + 3 - j >= 0
  assert_same(raw(Ops.IDIV, r_in, 4), sym.idiv(s_in, 4), [i, j])


# ---- mod ------------------------------------------------------------------------------------------------------------

def test_mod_by_one():
  i, = ranges(5)
  out = sym.mod(i, 1)  # x%1 -> 0
  assert out.op is Ops.CONST and out.arg == 0


def test_mod_below_divisor_is_identity():
  i, = ranges(5)
  assert sym.mod(i, 5) is i  # x%d -> x when 0 <= x < d
  assert sym.mod(i, 9) is i


@pytest.mark.parametrize("d", [2, 3, 4, 8])
def test_mod_drops_multiples(d):
  i, j = ranges(5, d)
  r_in, s_in = affine({i: d, j: 1}, 0)
  out = sym.mod(s_in, d)  # (d*q + r)%d -> r when 0 <= r < d
  assert out is j
  assert_same(raw(Ops.MOD, r_in, d), out, [i, j])


def test_mod_reduces_coefficients():
  i, j = ranges(5, 7)
  r_in, s_in = affine({i: 4, j: 1}, 0)  # j reaches 6: (4i + j)%4 -> j%4
  out = sym.mod(s_in, 4)
  assert out.op is Ops.MOD and out.src[0] is j
  assert_same(raw(Ops.MOD, r_in, 4), out, [i, j])


def test_mod_keeps_remainder_when_it_cannot_split():
  i, j = ranges(6, 4)
  r_in, s_in = affine({i: 3, j: 2}, 1)
  assert_same(raw(Ops.MOD, r_in, 4), sym.mod(s_in, 4), [i, j])


# ---- comparisons and gates ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("b", [-1, 0, 1, 4, 8, 9, 20])
def test_lt_and_ge(b):
  i, j = ranges(5, 5)
  r_in, s_in = affine({i: 2, j: 1}, 0)  # in [0, 12]
  lt, ge = sym.lt(s_in, b), sym.ge(s_in, b)
  if b > 12:
    assert sym.is_const(lt, True) and sym.is_const(ge, False)  # x<b -> True when vmax(x) < b
  if b <= 0:
    assert sym.is_const(lt, False) and sym.is_const(ge, True)  # x>=b -> True when vmin(x) >= b
  assert_same(raw(Ops.CMPLT, r_in, b), lt, [i, j])
  assert_same(Node(Ops.NOT, dtypes.bool, (raw(Ops.CMPLT, r_in, b),)), ge, [i, j])


def test_and_of_gates():
  i, = ranges(6)
  g = sym.lt(i, 3)
  t, f = sym.bconst(True), sym.bconst(False)
  assert sym.and_(None, None) is None  # true & true -> true (None)
  assert sym.and_(None, t) is None and sym.and_(t, None) is None
  assert sym.and_(None, g) is g and sym.and_(g, None) is g  # true & g -> g
  assert sym.and_(t, g) is g and sym.and_(g, t) is g
  assert sym.is_const(sym.and_(g, f), False) and sym.is_const(sym.and_(f, g), False)  # false & g -> false
  both = sym.and_(g, sym.ge(i, 1))
  assert_same(Node(Ops.AND, dtypes.bool, (raw(Ops.CMPLT, i, 3), Node(Ops.NOT, dtypes.bool, (raw(Ops.CMPLT, i, 1),)))),
              both, [i])


# ---- linear_terms / from_terms --------------------------------------------------------------------------------------

def test_linear_terms_round_trip():
  i, j = ranges(4, 5)
  leaf = raw(Ops.IDIV, j, 2)  # a non-linear leaf
  r_in, s_in = affine({i: 3, leaf: -2}, 5)
  terms, c = sym.linear_terms(s_in)
  assert terms == {i: 3, leaf: -2} and c == 5
  assert_same(r_in, sym.from_terms(terms, c), [i, j])


# ---- random expressions ---------------------------------------------------------------------------------------------

def random_pair(rng: np.random.Generator, leaves: list[Node], env, depth: int) -> tuple[Node, Node]:
  """(an unsimplified expression, the same built through the simplifying builders)."""
  if depth == 0 or rng.random() < 0.2:
    if rng.random() < 0.2:
      c = sym.iconst(int(rng.integers(0, 9)))
      return c, c
    leaf = leaves[int(rng.integers(len(leaves)))]
    return leaf, leaf
  kind = rng.choice(["add", "mul", "idiv", "mod"], p=[0.35, 0.25, 0.2, 0.2])
  ra, sa = random_pair(rng, leaves, env, depth - 1)
  if kind == "add":
    rb, sb = random_pair(rng, leaves, env, depth - 1)
    return raw(Ops.ADD, ra, rb), sym.add(sa, sb)
  if kind == "mul":
    k = int(rng.integers(-2, 6))
    return raw(Ops.MUL, ra, k), sym.mul(sa, k)
  if values_of(ra, env).min() < 0:
    return ra, sa  # idiv and mod are defined for non-negative indices only
  d = int(rng.integers(1, 9))
  if kind == "idiv":
    return raw(Ops.IDIV, ra, d), sym.idiv(sa, d)
  return raw(Ops.MOD, ra, d), sym.mod(sa, d)


@pytest.mark.parametrize("seed", range(8))
def test_random_expressions(seed):
  rng = np.random.default_rng(seed)
  for _ in range(40):
    variables = ranges(*[int(e) for e in rng.integers(1, 8, size=int(rng.integers(1, 4)))])
    env = grid(variables)
    r, s = random_pair(rng, variables, env, depth=4)
    assert_same(r, s, variables)
    b = int(rng.integers(-2, 30))
    if r.dtype == INDEX:
      assert_same(raw(Ops.CMPLT, r, b), sym.lt(s, b), variables)


@pytest.mark.parametrize("seed", range(4))
def test_substitute(seed):
  """substitute() re-simplifies after replacing leaves; the value equals the original with the leaves bound."""
  rng = np.random.default_rng(100 + seed)
  for _ in range(30):
    i, j, k = ranges(*[int(e) for e in rng.integers(2, 7, size=3)])
    r, s = random_pair(rng, [i, j, k], grid([i, j, k]), depth=4)
    value = int(rng.integers(0, k.arg[1]))
    replace_j = sym.mod(sym.add(sym.mul(i, 2), sym.iconst(1)), j.arg[1])  # j := (2i + 1) % extent, in j's range
    out = sym.substitute(s, {k: sym.iconst(value), j: replace_j})
    env = grid([i])
    env_full = {i: env[i], j: (2 * env[i] + 1) % j.arg[1], k: np.full_like(env[i], value)}
    np.testing.assert_array_equal(values_of(out, env), values_of(r, env_full))
    assert k not in set(out.toposort()) and j not in set(out.toposort())


def test_substitute_resimplifies():
  i, j = ranges(5, 4)
  s = sym.idiv(sym.add(sym.mul(i, 2), j), 3)  # (2i + j)//3 does not simplify
  assert s.op is Ops.IDIV
  out = sym.substitute(s, {j: sym.mul(i, 4)})  # (6i)//3 -> 2i
  assert sym.linear_terms(out) == ({i: 2}, 0)
  gate = sym.substitute(sym.lt(sym.add(i, j), 4), {j: sym.iconst(0), i: sym.iconst(3)})
  assert sym.is_const(gate, True)  # x<b folds once x is known
  not_gate = sym.substitute(sym.ge(sym.add(i, j), 2), {i: sym.iconst(0), j: sym.iconst(1)})
  assert sym.is_const(not_gate, False)  # not(const) -> const
  both = sym.and_(sym.lt(i, 3), sym.ge(j, 1))
  assert sym.is_const(sym.substitute(both, {i: sym.iconst(4)}), False)  # false & g -> false
  assert sym.is_const(sym.substitute(both, {i: sym.iconst(1), j: sym.iconst(2)}), True)  # true & true -> true
  kept = sym.substitute(both, {i: sym.iconst(1)})  # true & g -> g
  assert_same(Node(Ops.NOT, dtypes.bool, (raw(Ops.CMPLT, j, 1),)), kept, [j])


def test_bounds_of_every_product_corner():
  """MUL of two variables: bounds from all four corner products."""
  i, j = ranges(4, 5)
  for a, b in itertools.product([sym.add(i, sym.iconst(-2)), i], [sym.add(j, sym.iconst(-3)), j]):
    assert_same(Node(Ops.MUL, INDEX, (a, b)), Node(Ops.MUL, INDEX, (a, b)), [i, j])


def test_bounds_of_truncating_division_by_a_constant_cover_negative_dividends():
  """IDIV/MOD by a positive constant truncate toward zero (C `/` `%`, PTX div/rem, RDNA): the bounds the renderers
  narrow int64 index math with must hold for every dividend in range, negative ones included."""
  import itertools
  from compiler.ir import Node, Ops
  from compiler.dtypes import dtypes
  for lo, hi, d in itertools.product((-13, -6, -1, 0, 2), (-7, -1, 0, 5, 17), (1, 3, 6)):
    if lo > hi:
      continue
    x = Node(Ops.ADD, dtypes.int64, (Node(Ops.RANGE, dtypes.int64, (), (0, hi - lo + 1)),
                                      Node(Ops.CONST, dtypes.int64, (), lo)))
    assert sym.bounds(x) == (lo, hi)
    for op, f in ((Ops.IDIV, lambda a: int(a / d)), (Ops.MOD, lambda a: a - d * int(a / d))):
      got = sym.bounds(Node(op, dtypes.int64, (x, Node(Ops.CONST, dtypes.int64, (), d))))
      values = [f(a) for a in range(lo, hi + 1)]
      assert got[0] <= min(values) and max(values) <= got[1], (op, lo, hi, d, got, values)
      if op is Ops.IDIV:
        assert got == (min(values), max(values)), (lo, hi, d, got)
