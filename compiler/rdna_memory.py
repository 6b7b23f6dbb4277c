"""Memory access shapes of the RDNA instruction selection (compiler/rdna_isel.py): loop induction variables for
addresses, and wide loads of consecutive dwords.

Address form. A global access is `global_load/store vaddr, saddr offset:imm`: a 64-bit SGPR base (the PARAM pointer)
plus a zero-extended 32-bit VGPR byte offset plus a signed immediate (13 bits on gfx11, 24 on gfx12: LLVM 19 FLAT
offset fields). An index splits by compiler.symbolic.linear_terms into sum(coeff * term) + c; c * itemsize goes into
the immediate, the rest into the VGPR offset when its bounds prove it lies in [0, 2^32) bytes.

Induction variables (strength reduction). In a LOOP over RANGE r, an access whose index is `inv + k*r + c` with `inv`
loop-invariant gets its VGPR offset from an induction register: set to inv * itemsize before the loop, advanced by
k * itemsize (one v_add_nc_u32) at the end of every iteration. Accesses that differ only in c share it (their c goes
into the immediate), so a register tile's loads cost one add per distinct row/column per iteration instead of a
multiply, an add and a shift each. The bounds check covers every iteration, so the 32-bit register never wraps while
it is used (it may after the last iteration, where it is no longer read).

Early loads. In a loop body, the loads of read-only buffers whose index reads nothing an earlier statement changes
are issued before the body's first statement (up to EARLY_DWORDS registers), so one wait covers them all instead of
one wait per statement.

Wide loads. Loads of 32-bit values from one read-only PARAM under the same gate whose indices differ only in c and
are consecutive become one global_load_b64 / b128 when the byte address is provably 8 / 16 aligned: every
coefficient of the index's terms and c, times 4, is a multiple of the width. That relies on buffer pointers being
16-byte aligned, which every allocator of this project gives (am.sim FlatMemory: 256, AM GART buffers: pages).
Buffers the kernel writes are left alone (their loads keep their order with the stores). Loads are grouped per
statement list (a LOOP body, an IF body, the kernel), where they run under the same EXEC.
"""
from __future__ import annotations

from compiler import symbolic as sym
from compiler.ir import Node, Ops

OFFSET_BITS = {11: 13, 12: 24}  # signed immediate offset of global instructions (LLVM 19 FLAT offset fields)
WIDE_LOAD = {1: "global_load_b32", 2: "global_load_b64", 4: "global_load_b128"}
WIDE_DTYPES = ("float32", "int32", "uint32")  # loaded values used as they are (no conversion after the load)
VARYING = (Ops.DEFACC, Ops.GLOAD, Ops.LANE, Ops.HREDUCE)  # values that change inside a loop body
LATE = (Ops.DEFACC, Ops.GLOAD, Ops.BLOCKREDUCE)  # an index reading these waits for the statements before it
EARLY_DWORDS = 32


def offset_limit(gen: int) -> int:
  return 1 << (OFFSET_BITS[gen] - 1)


class Interner:
  """Structural keys: equal (op, dtype, arg, source keys) give the same small int, so equal expressions built twice
  (compiler.symbolic.from_terms makes new nodes) are recognised without computing them."""

  def __init__(self):
    self.ids: dict = {}
    self.memo: dict[Node, int] = {}

  def key(self, n: Node) -> int:
    got = self.memo.get(n)
    if got is None:
      for m in n.toposort():
        if m not in self.memo:
          shape = (m.op, m.dtype, repr(m.arg), tuple(self.memo[s] for s in m.src))
          self.memo[m] = self.ids.setdefault(shape, len(self.ids))
      got = self.memo[n]
    return got

  def linear(self, terms: dict) -> frozenset:
    """The key of sum(coeff * term), independent of the terms' order."""
    return frozenset((self.key(t), k) for t, k in terms.items())


def accesses(statements) -> list[tuple[Node, Node, Node | None]]:
  """(PARAM, index, gate) of the GLOADs and GSTOREs of these statements, inside IF bodies but not inside nested
  LOOPs (those belong to the nested loop's own induction variables)."""
  out, stack, seen = [], list(statements), set()
  while stack:
    s = stack.pop()
    if s.op is Ops.LOOP:
      continue
    if s.op is Ops.IF:
      stack.extend(s.src[1:])
    if s.op is Ops.GSTORE:
      out.append((s.src[0], s.src[1], s.src[3] if len(s.src) > 3 else None))
    roots = {Ops.ACCUM: s.src[1:], Ops.GSTORE: s.src[2:], Ops.IF: s.src[:1]}.get(s.op, ())
    for root in roots:
      for n in root.toposort():
        if n.op is Ops.GLOAD and n not in seen:
          seen.add(n)
          out.append((n.src[0], n.src[1], n.src[2] if len(n.src) > 2 else None))
  return out


def level_loads(statements) -> list[Node]:
  """The GLOADs the values of these statements read, not those inside nested LOOP or IF bodies (other EXEC)."""
  out, seen = [], set()
  for s in statements:
    roots = {Ops.ACCUM: s.src[1:], Ops.GSTORE: s.src[2:], Ops.IF: s.src[:1]}.get(s.op, ())
    for root in roots:
      for n in root.toposort():
        if n.op is Ops.GLOAD and n not in seen:
          seen.add(n)
          out.append(n)
  return out


def early_loads(r, statements) -> list[Node]:
  """The loads of a loop body that may issue before its first statement: from buffers the kernel does not write, with
  an index and gate that read no accumulator or other load (an earlier statement may change those), at most
  EARLY_DWORDS registers of them (each stays live until its statement runs)."""
  out, dwords, seen = [], 0, set()
  for n in level_loads(statements):
    if r.info.params[n.src[0].arg][1] or any(m.op in LATE for s in n.src[1:] for m in s.toposort()):
      continue
    group = r.wide_loads.get(n, ((n,), 0))[0]
    key = id(group) if len(group) > 1 else r.interner.key(n)   # equal loads are one load (the selector's CSE)
    if key in seen:
      continue
    size = len(group) * (2 if n.dtype.itemsize == 8 else 1)
    if dwords + size > EARLY_DWORDS:
      break
    seen.add(key)
    dwords += size
    out.append(n)
  return out


def depends_on(n: Node, leaf: Node) -> bool:
  return any(m is leaf for m in n.toposort())


def invariant(n: Node, bound) -> bool:
  """n does not change across the iterations of the loop being entered: its leaves are constants, thread and block
  indices, and RANGEs of enclosing loops (`bound`: the selector's RANGE -> register map)."""
  for m in n.toposort():
    if m.op in (Ops.RANGE, Ops.BLOCKREDUCE) and m not in bound or m.op in VARYING:
      return False
  return True


def plan_inductions(r, loop: Node) -> list[tuple]:
  """[(key, invariant part or None, byte step)] for the distinct induction offsets of this loop's accesses (see the
  module docstring); r is the Selector (its RANGE bindings, value facts and interner)."""
  rng = loop.src[0]
  plans, keys = [], set()
  for param, idx, _ in accesses(loop.src[1:]):
    size = param.dtype.itemsize
    linear = sym.linear_terms(idx)
    if linear is None:
      continue
    terms, _ = linear
    k = terms.get(rng)
    rest = {t: v for t, v in terms.items() if t is not rng}
    if not k or any(depends_on(t, rng) for t in rest):
      continue
    key = ("induction", r.interner.linear(terms), size)
    if key in keys:
      continue
    lo, hi = sym.bounds(sym.from_terms(terms, 0))
    if lo < 0 or hi * size >= 1 << 32:
      continue
    inv = sym.from_terms(rest, 0) if rest else None
    if inv is not None and not (invariant(inv, r.vars) and r.narrow(inv)):
      continue
    keys.add(key)
    plans.append((key, inv, k * size))
  return plans


def plan_wide_loads(r, statements) -> dict:
  """{GLOAD: (group, position)} for the loads of this statement list that share a wide load; a group is a tuple of
  the member loads in address order (the first one's address is the load's)."""
  buckets: dict[tuple, dict[int, list[Node]]] = {}   # equal loads (one per register tile's statement) share a c
  for n in level_loads(statements):
    param = n.src[0]
    if n.dtype.name not in WIDE_DTYPES or r.info.params[param.arg][1]:
      continue
    linear = sym.linear_terms(n.src[1])
    if linear is None:
      continue
    terms, c = linear
    gate = n.src[2] if len(n.src) > 2 else None
    bucket = (param.arg, None if gate is None else r.interner.key(gate), r.interner.linear(terms))
    buckets.setdefault(bucket, {}).setdefault(c, []).append(n)
  plan = {}
  for by_c in buckets.values():
    if len(by_c) < 2:
      continue
    some = next(iter(by_c.values()))[0]
    coeffs = [k for k in sym.linear_terms(some.src[1])[0].values()]
    c, last = min(by_c), max(by_c)
    while c <= last:
      width = next((w for w in (4, 2) if aligned(coeffs, c, 4, 4 * w) and all(c + j in by_c for j in range(w))), 1)
      if width > 1:
        group = tuple(by_c[c + j][0] for j in range(width))
        for j in range(width):
          for member in by_c[c + j]:
            plan[member] = (group, j)
      c += width
  return plan


def aligned(coeffs: list[int], c: int, size: int, align: int) -> bool:
  """Every byte address base + size * (sum(coeff * term) + c) is a multiple of align (base is align-aligned)."""
  return all(k * size % align == 0 for k in coeffs) and c * size % align == 0
