"""GPU lowering: a kernel AST (SINK of one STORE) to a loop program whose statements run once per GPU thread.

The output frame is the STORE's shape (reframed as in compiler/lower.py so a reduce and its epilogue share it).
Launches are 1-D: `local_size = (T, 1, 1)` threads per block and `global_size = (B, 1, 1)` blocks (CUDA's blockDim
and gridDim). Two plans, picked per kernel by `_choose_plan`:

  - "thread": output element g = BLOCKIDX*T + THREADIDX of the flattened frame is computed by thread g, under
    `IF(g < n)` when the grid overshoots n. A REDUCE is a serial loop nest inside that thread. Adjacent threads
    write adjacent outputs, so stores (and loads that follow the output layout) are coalesced. Used for
    elementwise kernels and for reductions whose reduced axis the loads do not read contiguously (matmul, sums
    over leading axes) while there are enough outputs to fill the GPU. With a reduction and many outputs, each
    thread computes a register tile of up to 4x4 outputs along axes that some load broadcasts (matmul: rows of A,
    columns of B), so one loop over k loads 4 + 4 values for 16 multiply-adds.
  - "block": the frame splits into outer axes [0, p) and inner axes [p, n). Block b owns outer index b; every
    REDUCE depends on the outer index only (p is the smallest split for which that holds). The T threads of the
    block stride over the K reduced elements (thread t takes t, t+T, t+2T, ...), each keeping a partial
    accumulator that BLOCKREDUCE folds across the block. The threads then stride over the block's inner elements
    to compute and store the epilogue (softmax's `exp(x - max) / sum` row, or a single store by thread 0). Used
    when the loads read the reduced axis with stride 1 (each warp then reads contiguous memory), or when the
    outputs are too few to fill the GPU with one thread each; never for a block per output when there are
    MIN_OUTPUTS or more of them (a matmul whose operands both run along k): the thread plan's register tiles fill
    the GPU then, where hundreds of thousands of blocks each folding a short row cost far more than they save.

Loads under a padded VIEW of a computed value carry the view's gate: where it is off, the view's index arithmetic may
point outside the buffers (below 0 for a left pad), and a GPU faults on such an address even when WHERE discards
the value.

No plan stages data in shared memory yet (matmul's tiles read A and B straight from global memory through L1).
"""
from __future__ import annotations

import dataclasses
import math

from compiler import symbolic as sym
from compiler.dtypes import DType, dtypes
from compiler.ir import INT32_MAX, INT32_MIN, Node, Ops, Variable, reduce_identity, verify
from compiler.lower import _canonical_frame, _count_bytes, _count_ops, evaluate_at, kernel_vars, store_extent
from compiler.view import unravel

WARP = 32
BLOCK = 256  # threads per block, the default for both plans
BIG_BLOCK = 1024  # threads per block for a block-plan kernel with few rows and long reductions
MIN_OUTPUTS = 16384  # below this many outputs, one thread per output leaves most of an H100 idle
BLOCK_K = 16  # shortest contiguous reduction worth a cooperative block
BLOCK_K_STRIDED = 256  # shortest strided reduction worth a cooperative block (only when outputs are few)
TILE_CHOICES = (4, 2)  # outputs per thread along a register-tiled axis
MIN_TILED_THREADS = 32768  # register tiles never leave fewer threads than this (about one 256-thread block per SM)


@dataclasses.dataclass(frozen=True)
class GPUKernelInfo:
  """What a GPU runtime needs to launch a rendered kernel.

  The kernel's parameters are the buffer pointers in PARAM order (the same order as the C renderer's, so a runtime
  passes the same address list), then one int32 per Variable in `vars` (by name), the values the launch passes.
  """
  name: str
  params: tuple[tuple[DType, bool], ...]  # (element dtype, written by the kernel) per buffer PARAM
  global_size: tuple[int, int, int]  # blocks per grid axis (gridDim)
  local_size: tuple[int, int, int]  # threads per block axis (blockDim)
  ops: int  # estimated arithmetic operations, for DEBUG's GFLOP/s
  bytes: int  # estimated bytes moved, for DEBUG's GB/s
  plan: str = "thread"  # "thread" | "block", see the module docstring
  vars: tuple[Variable, ...] = ()  # int32 scalar params after the pointers (compiler.lower.kernel_vars)
  writes: int = -1  # compiler.lower.store_extent: the output's elements [0, writes) written, or -1 (part of it)
  lanes: int = 1  # no vector lanes on the GPU; kept so DEBUG's kernel line reads the same as the CPU's

  @property
  def global_extent(self) -> int:
    """Total threads launched (DEBUG's kernel line prints it where the CPU prints its parallel extent)."""
    return math.prod(self.global_size) * math.prod(self.local_size)

  def canonical(self) -> str:
    return (f"{self.name} params={[(d.name, w) for d, w in self.params]} grid={self.global_size} "
            f"block={self.local_size} plan={self.plan}" + (f" vars={[v.canonical() for v in self.vars]}"
                                                           if self.vars else ""))


class _PlanFailed(Exception):
  """A block-plan split where some REDUCE depends on an inner (per-thread) index."""


def _nodes(ast: Node, op: Ops) -> list[Node]:
  return [n for n in ast.toposort() if n.op is op]


def _thread_count(n: int, cap: int = BLOCK) -> int:
  """Threads per block for n work items: cap, or n rounded up to whole warps when n is smaller."""
  return min(cap, max(WARP, -(-n // WARP) * WARP))


class _Lowerer:
  """Evaluates the kernel AST at symbolic frame indices and collects the statements reductions need."""

  def __init__(self, store: Node, plan: str, threads: int, inner: tuple[Node, ...] = ()):
    self.store = store
    self.plan = plan
    self.threads = threads
    self.inner = inner  # block plan: index variables a REDUCE must not depend on
    self.memo: dict[tuple, Node] = {}
    self.statements: list[Node] = []  # block plan: reduction statements, in the order they were needed
    self.groups: dict[Node, dict] = {}  # thread plan: REDUCE -> its loop nest, accumulators and updates
    self.counter = 0

  def fresh(self, prefix: str) -> str:
    self.counter += 1
    return f"{prefix}{self.counter}"

  def value(self, node: Node, idx: list[Node]) -> Node:
    key = (id(node), tuple(id(i) for i in idx))
    if key not in self.memo:  # the entry keeps idx alive, so its ids cannot be reused by other nodes meanwhile
      self.memo[key] = (idx, self._value(node, idx))
    return self.memo[key][1]

  def _value(self, node: Node, idx: list[Node]) -> Node:
    reduce = self.reduce if self.plan == "thread" else self.block_reduce
    if node.op is Ops.VIEW:  # as evaluate_at, with the view's gate also on the loads inside (see _gate_loads)
      offset, gate = node.arg.index(idx)
      updates = {id(g): len(g["updates"]) for g in self.groups.values()}
      statements = len(self.statements)
      inner = self.value(node.src[0], unravel(offset, node.src[0].shape))
      if gate is None:
        return inner
      self._gate_reductions(gate, updates, statements)
      zero = Node(Ops.CONST, node.dtype, (), reduce_identity(Ops.ADD, node.dtype))
      return Node(Ops.WHERE, node.dtype, (gate, _gate_loads(inner, gate, {}), zero))
    return evaluate_at(node, idx, self.value, reduce, "GPU lowering")

  def _gate_reductions(self, gate: Node, updates: dict, statements: int) -> None:
    """The gate of a padded view on the loads of the reductions made for it (ACCUMs added since the counts in
    `updates` / `statements`). The block plan shares a reduction across the block's threads, so there only a gate
    that is the same in every thread (no per-thread index in it) may zero their contributions."""
    memo: dict = {}
    for group in self.groups.values():
      ups = group["updates"]
      start = updates.get(id(group), 0)
      ups[start:] = [_gate_loads(u, gate, memo) for u in ups[start:]]
    if any(n.op is Ops.THREADIDX or n in self.inner for n in gate.toposort()):
      return
    self.statements[statements:] = [_gate_loads(s, gate, memo) for s in self.statements[statements:]]

  def _accumulator(self, node: Node) -> Node:
    init = Node(Ops.CONST, node.dtype, (), reduce_identity(node.arg[0], node.dtype))
    return Node(Ops.DEFACC, node.dtype, (init,), (self.fresh("acc"), 1))

  def reduce(self, node: Node, idx: list[Node]) -> Node:
    """Thread plan: a serial loop nest over the reduced axes, one RANGE per axis longer than 1. Every evaluation of
    one REDUCE (the copies of a register tile) shares the loop nest, so their loads share registers."""
    op, axes = node.arg
    src_shape = node.src[0].shape
    group = self.groups.get(node)
    if group is None:
      ranges = {a: Node(Ops.RANGE, dtypes.index, (), (self.fresh("r"), src_shape[a])) for a in axes
                if src_shape[a] > 1}
      group = self.groups[node] = {"ranges": ranges, "accs": [], "updates": []}
    src_idx = list(idx)
    for a in axes:
      src_idx[a] = group["ranges"].get(a, sym.iconst(0))
    acc = self._accumulator(node)
    group["accs"].append(acc)
    group["updates"].append(Node(Ops.ACCUM, node.dtype, (acc, self.value(node.src[0], src_idx)), op))
    return acc

  def thread_statements(self) -> list[Node]:
    """The thread plan's reduction statements: each group's accumulators, then one loop nest updating them all."""
    out: list[Node] = []
    for group in self.groups.values():
      body = list(group["updates"])
      for rng in reversed(list(group["ranges"].values())):
        body = [Node(Ops.LOOP, dtypes.index, (rng, *body))]
      out += group["accs"] + body
    return out

  def block_reduce(self, node: Node, idx: list[Node]) -> Node:
    """Block plan: thread t accumulates reduced elements k = t, t+T, ... < K, then BLOCKREDUCE folds the block."""
    if any(n.op is Ops.THREADIDX or n in self.inner for e in idx for n in e.toposort()):
      raise _PlanFailed(f"{node!r} depends on a per-thread index")
    op, axes = node.arg
    src_shape = node.src[0].shape
    reduced = [a for a in axes if src_shape[a] > 1]
    k_total = math.prod(src_shape[a] for a in reduced)
    tid = Node(Ops.THREADIDX, dtypes.index, (), (0, self.threads))
    steps = -(-k_total // self.threads)
    rng = Node(Ops.RANGE, dtypes.index, (), (self.fresh("r"), steps)) if steps > 1 else None
    k = tid if rng is None else sym.add(sym.mul(rng, self.threads), tid)
    src_idx = list(idx)
    for a in axes:
      src_idx[a] = sym.iconst(0)
    stride = k_total
    for a in reduced:  # k unravelled row-major over the reduced axes
      stride //= src_shape[a]
      src_idx[a] = sym.mod(sym.idiv(k, stride), src_shape[a])
    acc = self._accumulator(node)
    body: list[Node] = [Node(Ops.ACCUM, node.dtype, (acc, self.value(node.src[0], src_idx)), op)]
    if steps * self.threads != k_total:
      body = [Node(Ops.IF, dtypes.index, (sym.lt(k, k_total), *body))]
    if rng is not None:
      body = [Node(Ops.LOOP, dtypes.index, (rng, *body))]
    folded = Node(Ops.BLOCKREDUCE, node.dtype, (acc,), op)
    self.statements += [acc, *body, folded]
    return folded


def _gate_loads(x: Node, gate: Node, memo: dict) -> Node:
  """x with `gate` and-ed into the gate of every GLOAD it computes. A padded VIEW of a computed value is
  WHERE(gate, inner, 0); where the gate is off, inner's indices may point outside its buffers (the pad of cumsum reads
  element -2), and a GPU faults on such an access (unmapped memory) even though the WHERE discards the value. In
  statements (LOOP, IF, ACCUM), only the loads of the accumulated values take the gate."""
  if not x.src or x.op in (Ops.DEFACC, Ops.BLOCKREDUCE, Ops.RANGE):
    return x
  if x.op is Ops.ACCUM:  # a statement: the accumulator stays, the value's loads take the gate
    return Node(Ops.ACCUM, x.dtype, (x.src[0], _gate_loads(x.src[1], gate, memo)), x.arg)
  if x.op in (Ops.LOOP, Ops.IF):
    return Node(x.op, x.dtype, (x.src[0], *(_gate_loads(s, gate, memo) for s in x.src[1:])), x.arg)
  if id(x) not in memo:  # the entry keeps x alive, so its id cannot be reused meanwhile
    if x.op is Ops.GLOAD:
      own = x.src[2] if len(x.src) > 2 else None
      out = Node(Ops.GLOAD, x.dtype, (x.src[0], x.src[1], sym.and_(own, gate) or gate))
    else:
      srcs = tuple(_gate_loads(s, gate, memo) for s in x.src)
      changed = any(a is not b for a, b in zip(srcs, x.src))
      out = Node(x.op, x.dtype, srcs, x.arg) if changed else x
    memo[id(x)] = (x, out)
  return memo[id(x)][1]


def _store(lowerer: _Lowerer, store: Node, idx: list[Node]) -> Node:
  offset, gate = store.arg.index(idx)
  value = lowerer.value(store.src[1], idx)
  srcs = (store.src[0], offset, value) if gate is None else (store.src[0], offset, value, gate)
  return Node(Ops.GSTORE, store.src[1].dtype, srcs)


def _tile(store: Node, n: int) -> dict[int, int]:
  """Register tiling for the thread plan: output axis -> outputs per thread along it. An axis qualifies when some
  load inside a REDUCE reads it with stride 0 (the tile's outputs then share that load, as in matmul, where one
  A[i, k] serves a row of the tile and one B[k, j] a column). Tiles stay small enough to keep MIN_TILED_THREADS
  threads; the axis the store writes contiguously is tiled first (a thread then writes neighbouring outputs)."""
  reduces = _nodes(store, Ops.REDUCE)
  if not reduces or any(n.op is Ops.VIEW for n in store.toposort()):
    return {}
  if any(r.shape != store.shape for r in reduces):
    return {}  # a reduce broadcast into the frame: its axes are not the store's
  loads = []
  for r in reduces:
    mine = [ld for ld in r.src[0].toposort() if ld.op is Ops.LOAD]
    if any(ld.shape != r.src[0].shape for ld in mine):
      return {}  # a load under a VIEW of a computed value: its axes are not the reduce's
    loads += mine
  tile: dict[int, int] = {}
  contiguous = [a for a in range(len(store.shape)) if _axis_stride(store, a) == 1]
  for axis in sorted(range(len(store.shape)), key=lambda a: a not in contiguous):  # the store's fast axis first
    if len(tile) == 2 or not any(_axis_stride(ld, axis) == 0 for ld in loads):
      continue
    for u in TILE_CHOICES:
      if store.shape[axis] % u == 0 and n // (math.prod(tile.values()) * u) >= MIN_TILED_THREADS:
        tile[axis] = u
        break
  return tile


def _lower_thread(store: Node) -> tuple[list[Node], tuple[int, int, int], tuple[int, int, int]]:
  n = math.prod(store.shape)
  tile = _tile(store, n)
  tiled_shape = tuple(s // tile.get(a, 1) for a, s in enumerate(store.shape))
  tiles = n // math.prod(tile.values())
  threads = _thread_count(tiles)
  blocks = -(-tiles // threads)
  tid = Node(Ops.THREADIDX, dtypes.index, (), (0, threads))
  gid = tid if blocks == 1 else sym.add(sym.mul(Node(Ops.BLOCKIDX, dtypes.index, (), (0, blocks)), threads), tid)
  base = unravel(gid, tiled_shape)
  copies = [[]]
  for axis, b in enumerate(base):  # one frame index per output of the tile
    u = tile.get(axis, 1)
    copies = [c + [sym.add(sym.mul(b, u), sym.iconst(k)) if u > 1 else b] for c in copies for k in range(u)]
  lowerer = _Lowerer(store, "thread", threads)
  stores = [_store(lowerer, store, idx) for idx in copies]
  body = lowerer.thread_statements() + stores
  guard = sym.lt(gid, tiles)
  if not sym.is_const(guard, True):
    body = [Node(Ops.IF, dtypes.index, (guard, *body))]
  return body, (blocks, 1, 1), (threads, 1, 1)


def _lower_block(store: Node, split: int, threads: int) -> tuple[list[Node], tuple[int, int, int],
                                                                   tuple[int, int, int]]:
  """The block plan with outer axes [0, split); raises _PlanFailed when a REDUCE needs an inner index."""
  outer, inner = store.shape[:split], store.shape[split:]
  rows, m = math.prod(outer), math.prod(inner)
  bid = Node(Ops.BLOCKIDX, dtypes.index, (), (0, rows)) if rows > 1 else sym.iconst(0)
  tid = Node(Ops.THREADIDX, dtypes.index, (), (0, threads))
  steps = -(-m // threads)
  rng = Node(Ops.RANGE, dtypes.index, (), ("e0", steps)) if steps > 1 else None
  e = tid if rng is None else sym.add(sym.mul(rng, threads), tid)
  lowerer = _Lowerer(store, "block", threads, inner=(tid,) if rng is None else (tid, rng))
  gstore = _store(lowerer, store, unravel(bid, outer) + unravel(e, inner))
  epilogue: list[Node] = [gstore]
  guard = sym.lt(e, m)
  if not sym.is_const(guard, True):
    epilogue = [Node(Ops.IF, dtypes.index, (guard, *epilogue))]
  if rng is not None:
    epilogue = [Node(Ops.LOOP, dtypes.index, (rng, *epilogue))]
  return lowerer.statements + epilogue, (rows, 1, 1), (threads, 1, 1)


def _axis_stride(load: Node, axis: int) -> int | None:
  """The stride of a LOAD's buffer offset along one axis of its shape; None where it is not one affine stride or
  the view's validity depends on the axis."""
  idx = [Node(Ops.RANGE, dtypes.index, (), (f"s{i}", s)) if s > 1 else sym.iconst(0)
         for i, s in enumerate(load.arg.shape)]
  offset, gate = load.arg.index(idx)
  var = idx[axis]
  if var.op is not Ops.RANGE:
    return 0
  terms, _ = sym.linear_terms(offset)
  nonlinear = [t for t in terms if t is not var and any(n is var for n in t.toposort())]
  if nonlinear or (gate is not None and any(n is var for n in gate.toposort())):
    return None
  return terms.get(var, 0)


def _contiguous_reduce(red: Node) -> bool:
  """Every load under the REDUCE reads its innermost long reduced axis with stride 0 or 1, at least one with 1."""
  src_shape = red.src[0].shape
  long_axes = [a for a in red.arg[1] if src_shape[a] > 1]
  if not long_axes:
    return False
  loads = [n for n in red.src[0].toposort() if n.op is Ops.LOAD]
  if any(ld.shape != src_shape for ld in loads):
    return False  # a load under a VIEW of a computed value: its axes are not the reduce's
  strides = [_axis_stride(ld, long_axes[-1]) for ld in loads]
  return all(st in (0, 1) for st in strides) and 1 in strides


def _wants_block(store: Node, reduces: list[Node]) -> bool:
  """Cooperative blocks pay off for contiguous reductions of BLOCK_K or more elements (coalesced reads), and for
  strided ones of BLOCK_K_STRIDED or more when one thread per output would leave the GPU mostly idle."""
  k = max(math.prod(r.src[0].shape[a] for a in r.arg[1]) for r in reduces)
  if all(_contiguous_reduce(r) for r in reduces):
    return k >= BLOCK_K
  return k >= BLOCK_K_STRIDED and math.prod(store.shape) < MIN_OUTPUTS


def _choose_plan(store: Node):
  """(body, global_size, local_size, plan name) for a reframed STORE."""
  reduces = _nodes(store, Ops.REDUCE)
  if reduces and _wants_block(store, reduces):
    k = max(math.prod(r.src[0].shape[a] for a in r.arg[1]) for r in reduces)
    for split in range(len(store.shape) + 1):  # the fewest blocks (the longest rows) that work
      rows = math.prod(store.shape[:split])
      if rows >= MIN_OUTPUTS and rows == math.prod(store.shape):
        break  # a block per output: as many threads would fill the GPU, each reducing alone (matmul, attention)
      cap = BIG_BLOCK if rows < 64 and k >= 16 * BIG_BLOCK else BLOCK
      try:
        return (*_lower_block(store, split, _thread_count(k, cap)), "block")
      except _PlanFailed:
        continue
  return (*_lower_thread(store), "thread")


def _name(store: Node) -> str:
  prefix = "r" if _nodes(store, Ops.REDUCE) else "E"
  return f"{prefix}_{'_'.join(str(s) for s in store.shape) or '1'}"


def lower_gpu(sink: Node, name: str | None = None) -> Node:
  """Lowers a kernel-level SINK to a loop-level KERNEL node for a GPU (arg: GPUKernelInfo).

  Raises:
    IRError: the SINK or the lowered program breaks the IR grammar.
  """
  verify(sink, "kernel")
  store = _canonical_frame(sink.src[0])
  body, global_size, local_size, plan = _choose_plan(store)
  params: dict[int, tuple[DType, bool]] = {}
  for n in store.toposort():
    if n.op is Ops.PARAM:
      params.setdefault(n.arg, (n.dtype, False))
  params[store.src[0].arg] = (store.src[0].dtype, True)
  info = GPUKernelInfo(name or _name(store), tuple(params[i] for i in range(len(params))), global_size, local_size,
                       _count_ops(store), _count_bytes(store), plan, kernel_vars(store), store_extent(sink.src[0]))
  kernel = Node(Ops.KERNEL, dtypes.index, tuple(body), info)
  verify(kernel, "loop")
  return kernel


# int64 index math that the renderers compute in 32 bits when its value range allows (narrow_int64)
NARROW_INT_OPS = frozenset({Ops.CONST, Ops.RANGE, Ops.THREADIDX, Ops.BLOCKIDX, Ops.ADD, Ops.SUB, Ops.MUL, Ops.IDIV,
                            Ops.MOD})


def narrow_int64(n: Node, bounds, memo: dict[Node, bool]) -> bool:
  """Whether int64 index value `n` can be computed in 32 bits: it is built only of NARROW_INT_OPS and of widening
  casts from integers of 32 bits or fewer, and its bounds (`bounds(node) -> (lo, hi)`, the renderer's range analysis)
  and every source's fit in int32. `memo` caches per node for one kernel. (A cast counts so that an index derived
  from an int32 value, e.g. `(i * 3 - 1) % 6` after a flip or pad, is not divided in 64 bits: ptxas calls a
  subroutine for div/rem.s64.)"""
  widening = n.op is Ops.CAST and n.src[0].dtype.is_int and n.src[0].dtype.itemsize <= 4
  if n.dtype != dtypes.int64 or not (n.op in NARROW_INT_OPS or widening):
    return False
  got = memo.get(n)
  if got is None:
    # sources first: the bounds of wide int64 value math (repeated squaring in `a ** b`) grow to integers of
    # millions of bits, and nothing narrow is built on them anyway
    got = widening or all(narrow_int64(s, bounds, memo) for s in n.src)
    if got:
      lo, hi = bounds(n)
      got = INT32_MIN <= lo and hi <= INT32_MAX
    memo[n] = got
  return got


def loop_invariants(loop: Node, bound) -> list[Node]:
  """The values inside `loop` (a LOOP statement of the GPU lowering) that do not change across its iterations, in an
  order a renderer can compute them before the loop: arithmetic on constants, thread and block indices, loop
  variables already bound (`bound`: the renderer's RANGE/BLOCKREDUCE -> register map) and finished reductions. Loads
  stay in the loop (an IF inside may guard them), so hoisted arithmetic is pure and cannot fault."""
  invariant: dict[Node, bool] = {}

  def check(n: Node) -> bool:
    if n not in invariant:
      if n.op in (Ops.RANGE, Ops.BLOCKREDUCE):
        invariant[n] = n in bound
      elif n.op in (Ops.DEFACC, Ops.GLOAD, Ops.LANE, Ops.HREDUCE):
        invariant[n] = False
      else:
        invariant[n] = all(check(x) for x in n.src)
    return invariant[n]

  out, stack = [], list(loop.src[1:])
  while stack:
    s = stack.pop()
    values = {Ops.ACCUM: s.src[1:], Ops.GSTORE: s.src[1:], Ops.IF: s.src[:1]}.get(s.op, ())
    if s.op in (Ops.LOOP, Ops.IF):
      stack.extend(s.src[1:])
    for root in values:
      out.extend(n for n in root.toposort() if n.op not in (Ops.CONST, Ops.PARAM) and n.src and check(n))
  return out
