"""Lowering: a kernel AST (SINK of one STORE) to a loop program (KERNEL of statements).

The kernel's frame is the STORE's shape; every axis of size > 1 becomes a loop, outermost first, and the
outermost loop is the one a runtime splits across threads. Each REDUCE becomes an accumulator and a loop nest
over its reduced axes, emitted at the innermost loop level its index depends on (so a reduce broadcast along
trailing axes, as in softmax, runs once per outer index).

Optimizations, chosen from the strides of the loads and the store (all float32 kernels with a reduction):
  - vector axis: an output axis that the store writes with stride 1 and every load reads with stride 0 or 1
    becomes LANES wide (a LANE variable; renderers turn it into one SIMD register), unrolled VUNROLL times;
  - register blocking: an output axis along which some load inside the reduction is broadcast (stride 0) is
    unrolled by UNROLL, so one loaded vector feeds UNROLL accumulators (matmul's micro-kernel);
  - without a vector output axis, a reduction over a stride-1 axis keeps LANES partial sums in a vector
    accumulator and folds them after the loop (HREDUCE); where two output axes each have a load inside the reduction
    broadcast along them (x @ w.T with w stored (out, in): both operands run along k), a tile of outputs over both
    shares the loop, so each loaded vector feeds several accumulators (DOT_TILES). A reduction with no vector plan
    at all (a conv's weight gradient: short, strided rows) tiles its scalar accumulators the same way.
"""
from __future__ import annotations

import dataclasses
import math
import os

from compiler import symbolic as sym
from compiler.dtypes import DType, dtypes
from compiler.ir import ALU, Node, Offset, Ops, Variable, reduce_identity, verify
from compiler.view import ShapeTracker, unravel

def host_lanes() -> int:
  """float32 lanes of the host CPU's widest vector register, the CPU target's vector width: 16 with AVX-512F, 8 with
  AVX, else 4 (SSE, NEON). A vector wider than the registers costs far more than the lanes it adds: GCC keeps such
  vectors in memory, so an AVX2 matmul ran at 4 GFLOP/s with 16 lanes and 87 with 8. SOV_CPU_LANES=4|8|16 overrides
  it (tests render both widths on one machine)."""
  forced = os.environ.get("SOV_CPU_LANES")
  if forced:
    if forced not in ("4", "8", "16"):
      raise ValueError(f"SOV_CPU_LANES={forced!r}: give 4, 8 or 16 (float32 lanes of the CPU's vectors)")
    return int(forced)
  try:
    with open("/proc/cpuinfo") as f:
      flags = next((line.split(":", 1)[1].split() for line in f if line.startswith(("flags", "Features"))), [])
  except OSError:
    flags = []
  return 16 if "avx512f" in flags else 8 if "avx" in flags else 4


LANES = host_lanes()  # float32 lanes in one vector register of the host
# outputs per tile of a lane-reduction plan, (first axis, second axis): accumulators plus the loads of one step must
# fit the vector registers (16 with AVX2, 32 with AVX-512: 4x2 takes 8 accumulators and 6 loads)
DOT_TILES = ((4, 4), (4, 2), (2, 2), (4, 1), (2, 1)) if LANES == 16 else ((4, 2), (2, 2), (4, 1), (2, 1))
UNROLL_CHOICES = (8, 6, 4, 3, 2)


def evaluate_at(node: Node, idx: list[Node], value, reduce, who: str) -> Node:
  """One step of evaluating kernel expression `node` at the symbolic index `idx` (one index Node per axis of its
  shape), shared by the CPU and GPU lowerings: a LOAD becomes a GLOAD of its view's offset (a gate known false reads
  the identity 0 instead), a VIEW re-indexes its source (0 where its gate is false), ALU ops and casts map over their
  sources. `value(node, idx)` recurses (memoized by the caller), `reduce(node, idx)` lowers a REDUCE."""
  if node.op in (Ops.CONST, Ops.VAR):
    return Node(node.op, node.dtype, (), node.arg)
  if node.op is Ops.LOAD:
    offset, gate = node.arg.index(idx)
    if gate is not None and sym.is_const(gate, False):
      return Node(Ops.CONST, node.dtype, (), reduce_identity(Ops.ADD, node.dtype))
    srcs = (node.src[0], offset) if gate is None else (node.src[0], offset, gate)
    return Node(Ops.GLOAD, node.dtype, srcs)
  if node.op is Ops.VIEW:
    offset, gate = node.arg.index(idx)
    inner = value(node.src[0], unravel(offset, node.src[0].shape))
    if gate is None:
      return inner
    zero = Node(Ops.CONST, node.dtype, (), reduce_identity(Ops.ADD, node.dtype))
    return Node(Ops.WHERE, node.dtype, (gate, inner, zero))
  if node.op is Ops.REDUCE:
    return reduce(node, idx)
  if node.op in ALU or node.op in (Ops.CAST, Ops.BITCAST):
    return Node(node.op, node.dtype, tuple(value(s, idx) for s in node.src), node.arg)
  raise ValueError(f"{who}: unexpected {node!r}")


@dataclasses.dataclass(frozen=True)
class KernelInfo:
  name: str
  params: tuple[tuple[DType, bool], ...]  # (element dtype, written by the kernel) per PARAM
  global_extent: int  # iterations of the outermost loop (the one split across threads); 1 if there is none
  lanes: int  # vector width in use, 1 for scalar code
  ops: int  # estimated arithmetic operations, for DEBUG's GFLOP/s
  bytes: int  # estimated bytes moved, for DEBUG's GB/s
  parallel: str = ""  # name of the RANGE that runs [start, end) (the outermost output loop); "" if none
  vars: tuple[Variable, ...] = ()  # int32 scalar parameters after the buffers (then start, end), by name
  writes: int = -1  # store_extent of the kernel's STORE: the output's elements [0, writes) written, or -1

  def canonical(self) -> str:
    return (f"{self.name} params={[(d.name, w) for d, w in self.params]} global={self.global_extent}"
            + (f" vars={[v.canonical() for v in self.vars]}" if self.vars else ""))


def store_extent(store: Node) -> int:
  """n where a STORE writes elements [0, n) of its buffer, each once: its view is contiguous from offset 0 and
  unmasked (every kernel the scheduler makes for a new buffer). -1 for any other view, an assign into a window of a
  buffer (rows at a Variable, a static slice): the rest of the buffer keeps its contents, which a replay file must
  then save (frontend.replay_save)."""
  if len(store.arg.views) != 1:
    return -1
  view = store.arg.views[0]
  expected, dense = 1, True
  for size, stride in reversed([(s, st) for s, st in zip(view.shape, view.strides) if s != 1]):
    dense, expected = dense and stride == expected, expected * size
  at_start = isinstance(view.offset, int) and view.offset == 0
  return expected if dense and at_start and view.mask is None else -1


def kernel_vars(root: Node) -> tuple[Variable, ...]:
  """The Variables a kernel reads, in parameter order (by name).

  Raises:
    ValueError: two different Variables share a name (they would be one parameter).
  """
  found: dict[str, Variable] = {}
  for n in root.toposort():
    used = [n.arg] if n.op is Ops.VAR else []
    if n.op in (Ops.LOAD, Ops.STORE, Ops.VIEW):  # views that start at a Variable
      used = [var for view in n.arg.views if isinstance(view.offset, Offset) for var, _ in view.offset.terms]
    for var in used:
      if found.setdefault(var.name, var) != var:
        raise ValueError(f"one kernel reads two Variables named {var.name}: {found[var.name].canonical()} and "
                         f"{var.canonical()}; give them different names")
  return tuple(found[k] for k in sorted(found))


@dataclasses.dataclass
class _Plan:
  vec_axis: int | None = None
  vec_unroll: int = 1
  unroll_axis: int | None = None
  unroll: int = 1
  unroll2_axis: int | None = None  # a second unrolled axis (DOT_TILES of a plan without a vector axis only)
  unroll2: int = 1
  lane_reduces: frozenset = frozenset()  # ids of REDUCEs that keep LANES partial accumulators


def _nodes(ast: Node, op: Ops) -> list[Node]:
  return [n for n in ast.toposort() if n.op is op]


def _reframe(node: Node, frame: tuple[int, ...], memo: dict) -> Node:
  """The epilogue above a REDUCE re-expressed in the reduce's shape (which differs from it only by size-1 axes)."""
  if id(node) in memo:
    return memo[id(node)]
  if node.op is Ops.REDUCE:
    out = node
  elif node.op is Ops.VIEW and node.src[0].op is Ops.REDUCE and node.src[0].shape == frame:
    out = node.src[0]
  elif node.op in (Ops.LOAD, Ops.STORE):
    tracker = node.arg.reshape(frame)
    srcs = tuple(_reframe(s, frame, memo) if s.op is not Ops.PARAM else s for s in node.src)
    out = Node(node.op, node.dtype, srcs, ShapeTracker(tracker.views), frame)
  elif node.op is Ops.VIEW:
    out = Node(Ops.VIEW, node.dtype, node.src, node.arg.reshape(frame), frame)
  else:
    out = Node(node.op, node.dtype, tuple(_reframe(s, frame, memo) for s in node.src), node.arg, frame)
  memo[id(node)] = out
  return out


def _canonical_frame(store: Node) -> Node:
  reduces = _nodes(store, Ops.REDUCE)
  if len(reduces) != 1:
    return store
  r = reduces[0]
  squeeze = [s for s in r.shape if s != 1]
  if r.shape == store.shape or squeeze != [s for s in store.shape if s != 1]:
    return store
  return _reframe(store, r.shape, {})


_stride_cache: dict[tuple[int, int], int | None] = {}


def _load_strides(load: Node, axis: int) -> int | None:
  """The stride of a LOAD/STORE's buffer offset along one axis, or None when the offset is not affine in that axis
  or the view's mask (validity) depends on it. Works through multi-view trackers via the index arithmetic."""
  key = (id(load), axis)
  if key not in _stride_cache:
    idx = [Node(Ops.RANGE, dtypes.index, (), (f"s{i}", s)) if s > 1 else sym.iconst(0)
           for i, s in enumerate(load.arg.shape)]
    offset, gate = load.arg.index(idx)
    var = idx[axis]
    stride: int | None = 0
    if var.op is Ops.RANGE:
      terms, _ = sym.linear_terms(offset)
      stride = terms.get(var, 0)
      nonlinear = [t for t in terms if t is not var and any(n is var for n in t.toposort())]
      if nonlinear or (gate is not None and any(n is var for n in gate.toposort())):
        stride = None
    _stride_cache[key] = stride
  return _stride_cache[key]


def _lanes_ok(red: Node) -> bool:
  """A reduction can keep LANES partial sums: float32 throughout, one long reduced axis that its loads read with
  stride 0 or 1 (at least one with 1, so every lane sees its own elements) and no padded views inside."""
  nodes = [n for n in red.toposort() if n.op is not Ops.PARAM]
  if red.arg[0] is Ops.MUL or red.dtype != dtypes.float32 or \
     any(not (_vector_dtype(n) or _mask_node(n)) or n.op in (Ops.VIEW, Ops.REDUCE) and n is not red for n in nodes):
    return False
  src_shape = red.src[0].shape
  long_axes = [a for a in red.arg[1] if src_shape[a] > 1]
  if len(long_axes) != 1 or src_shape[long_axes[0]] % LANES:
    return False
  strides = [_load_strides(ld, long_axes[0]) for ld in nodes if ld.op is Ops.LOAD]
  return all(st in (0, 1) for st in strides) and 1 in strides


def _vector_dtype(n: Node) -> bool:
  """n computes in float32 lanes: a float32 value, or a float16 LOAD (read as vectors and widened; any float16
  arithmetic on it would be a float16 node, which is not)."""
  return n.dtype == dtypes.float32 or (n.op is Ops.LOAD and n.dtype == dtypes.float16)


def _plan(store: Node) -> _Plan:
  _stride_cache.clear()
  plan = _Plan()
  reduces = _nodes(store, Ops.REDUCE)
  if not reduces:
    _elementwise_vector(plan, store)
    return plan
  simple = len(reduces) == 1 and reduces[0].shape == store.shape and not any(n.op is Ops.VIEW for n in store.toposort())
  # float32 lanes, and booleans as vi32 masks (in the C renderer: the comparisons and selects of a GELU or ReLU
  # backward, a causal mask loaded from memory); the reduction itself accumulates float32
  if not simple or store.dtype != dtypes.float32 or \
     any(not (_vector_dtype(n) or _mask_node(n)) for n in store.toposort() if n.op not in (Ops.PARAM, Ops.STORE)) or \
     reduces[0].dtype != dtypes.float32:
    plan.lane_reduces = frozenset(id(r) for r in reduces if _lanes_ok(r))
    return plan
  red = reduces[0]
  inner_loads = _nodes(red, Ops.LOAD)
  shape = store.shape
  # the vector axis: loads inside the reduction must read it with stride 0 or 1 (a broadcast or one vector load);
  # the store and the epilogue's loads may use any stride (they run once per output, lane by lane if they must)
  candidates = [a for a in reversed(range(len(shape))) if shape[a] % LANES == 0 and
                all(_load_strides(ld, a) in (0, 1) for ld in inner_loads)]
  candidates.sort(key=lambda a: (_load_strides(store, a) != 1, any(_load_strides(ld, a) == 1 for ld in inner_loads)))
  if candidates:
    plan.vec_axis = candidates[0]
    plan.vec_unroll = 2 if shape[plan.vec_axis] % (2 * LANES) == 0 else 1
  if plan.vec_axis is None:
    plan.lane_reduces = frozenset(id(r) for r in reduces if _lanes_ok(r))
    _dot_tile(plan, shape, inner_loads)  # LANES partial sums per output, or scalar ones (a conv's weight gradient)
    return plan
  for axis in reversed(range(len(shape))):
    if axis == plan.vec_axis or shape[axis] == 1:
      continue
    if any(_load_strides(ld, axis) == 0 for ld in inner_loads):
      for r in UNROLL_CHOICES:
        if shape[axis] % r == 0:
          plan.unroll_axis, plan.unroll = axis, r
          break
      if plan.unroll_axis is not None:
        break
  return plan


def _mask_node(n: Node) -> bool:
  """A boolean: a vi32 mask in vector code (computed, or loaded from LANES bytes and widened: compiler/render_c.py
  _vload)."""
  return n.dtype.is_bool


def _elementwise_vector(plan: _Plan, store: Node) -> None:
  """An elementwise float32 kernel runs LANES outputs at a time along the axis the store writes with stride 1, where
  every load reads that axis with stride 0 or 1 through an unpadded view (GCC does not vectorize the scalar loop
  once it calls _exp2s, as GELU and softmax do)."""
  nodes = [n for n in store.toposort() if n.op not in (Ops.PARAM, Ops.STORE)]
  if store.dtype != dtypes.float32 or any(not (_vector_dtype(n) or _mask_node(n)) or n.op is Ops.VIEW for n in nodes):
    return
  loads = [n for n in nodes if n.op is Ops.LOAD]
  if any(v.mask is not None for n in loads + [store] for v in n.arg.views):
    return
  for axis in reversed(range(len(store.shape))):
    if store.shape[axis] % LANES == 0 and _load_strides(store, axis) == 1 and \
       all(_load_strides(ld, axis) in (0, 1) for ld in loads):
      plan.vec_axis = axis
      return


def _dot_tile(plan: _Plan, shape: tuple[int, ...], inner_loads: list[Node]) -> None:
  """Unrolls up to two output axes of a lane-reduction plan, each one some load inside the reduction is broadcast
  along (its value then serves the tile's row or column), by the first DOT_TILES entry that divides them."""
  axes = [a for a in reversed(range(len(shape)))
          if shape[a] > 1 and any(_load_strides(ld, a) == 0 for ld in inner_loads)]
  pairs = [(a, b) for i, a in enumerate(axes) for b in axes[i + 1:]] + [(a, None) for a in axes]
  for first, second in DOT_TILES:
    for a, b in pairs:
      if (b is None) != (second == 1) or shape[a] % first or (b is not None and shape[b] % second):
        continue
      plan.unroll_axis, plan.unroll = a, first
      if b is not None:
        plan.unroll2_axis, plan.unroll2 = b, second
      return


class _Lowerer:
  def __init__(self, store: Node, plan: _Plan):
    self.store = store
    self.plan = plan
    self.shape = store.shape
    self.loops: list[Node] = []  # RANGE per loop level, outermost first
    self.level: dict[Node, int] = {}  # RANGE -> loop level
    self.pending: dict[int, list] = {}  # loop level -> reduce groups emitted there
    self.groups: dict[tuple[int, int], dict] = {}
    self.memo: dict[tuple, Node] = {}
    self.lane: Node | None = None
    self.counter = 0

  def fresh(self, prefix: str) -> str:
    self.counter += 1
    return f"{prefix}{self.counter}"

  def new_range(self, extent: int, prefix: str) -> Node:
    return Node(Ops.RANGE, dtypes.index, (), (self.fresh(prefix), extent))

  def frame_indices(self) -> list[list[Node]]:
    """Index tuples of the frame, one per unrolled copy (unroll x vector unroll)."""
    plan = self.plan
    base: list = []
    for axis, size in enumerate(self.shape):
      if size == 1:
        base.append(sym.iconst(0))
        continue
      step = 1
      if axis == plan.vec_axis:
        step = LANES * plan.vec_unroll
      elif axis == plan.unroll_axis:
        step = plan.unroll
      elif axis == plan.unroll2_axis:
        step = plan.unroll2
      rng = self.new_range(size // step, "i")
      self.level[rng] = len(self.loops)
      self.loops.append(rng)
      base.append(sym.mul(rng, step) if step > 1 else rng)
    if plan.vec_axis is not None or plan.lane_reduces:
      self.lane = Node(Ops.LANE, dtypes.index, (), ("lane", LANES))
    copies = []
    for r, r2 in ((r, r2) for r in range(plan.unroll) for r2 in range(plan.unroll2)):
      for v in range(plan.vec_unroll):
        idx = list(base)
        if plan.unroll_axis is not None:
          idx[plan.unroll_axis] = sym.add(base[plan.unroll_axis], sym.iconst(r))
        if plan.unroll2_axis is not None:
          idx[plan.unroll2_axis] = sym.add(base[plan.unroll2_axis], sym.iconst(r2))
        if plan.vec_axis is not None:
          offset = sym.add(sym.iconst(v * LANES), self.lane)
          idx[plan.vec_axis] = sym.add(base[plan.vec_axis], offset)
        copies.append(idx)
    return copies

  def hoist_level(self, idx: list[Node]) -> int:
    deepest = -1
    for e in idx:
      for n in e.toposort():
        if n.op is Ops.RANGE and n in self.level:
          deepest = max(deepest, self.level[n])
    return deepest

  # ---- expression evaluation at a symbolic index --------------------------------------------------------------
  def value(self, node: Node, idx: list[Node]) -> Node:
    key = (id(node), tuple(id(i) for i in idx))
    if key not in self.memo:
      self.memo[key] = self._value(node, idx)
    return self.memo[key]

  def _value(self, node: Node, idx: list[Node]) -> Node:
    return evaluate_at(node, idx, self.value, self.reduce, "lowering")

  def reduce(self, node: Node, idx: list[Node]) -> Node:
    level = self.hoist_level(idx)
    key = (id(node), level)
    group = self.groups.get(key)
    op, axes = node.arg
    src_shape = node.src[0].shape
    lanes = id(node) in self.plan.lane_reduces
    if group is None:
      ranges = {}
      for a in axes:
        if src_shape[a] == 1:
          continue
        step = LANES if lanes else 1
        ranges[a] = self.new_range(src_shape[a] // step, "r")
      group = {"ranges": ranges, "accs": [], "updates": []}
      self.groups[key] = group
      self.pending.setdefault(level, []).append(group)
    src_idx = list(idx)
    for a in axes:
      if src_shape[a] == 1:
        src_idx[a] = sym.iconst(0)
      elif lanes:
        src_idx[a] = sym.add(sym.mul(group["ranges"][a], LANES), self.lane)
      else:
        src_idx[a] = group["ranges"][a]
    value = self.value(node.src[0], src_idx)
    init = Node(Ops.CONST, node.dtype, (), reduce_identity(op, node.dtype))
    acc = Node(Ops.DEFACC, node.dtype, (init,), (self.fresh("acc"), LANES if _depends_on_lane(value) else 1))
    group["accs"].append(acc)
    group["updates"].append(Node(Ops.ACCUM, node.dtype, (acc, value), op))
    if lanes:
      return Node(Ops.HREDUCE, node.dtype, (acc,), op)
    return acc

  # ---- statements -------------------------------------------------------------------------------------------
  def reduce_statements(self, level: int) -> list[Node]:
    out: list[Node] = []
    for group in self.pending.get(level, []):
      out.extend(group["accs"])
      body: list[Node] = list(group["updates"])
      for rng in reversed(list(group["ranges"].values())):
        body = [Node(Ops.LOOP, dtypes.index, (rng, *body))]
      out.extend(body)
    return out

  def lower(self) -> list[Node]:
    out_param, value = self.store.src
    stores = []
    for idx in self.frame_indices():
      offset, gate = self.store.arg.index(idx)
      v = self.value(value, idx)
      srcs = (out_param, offset, v) if gate is None else (out_param, offset, v, gate)
      stores.append(Node(Ops.GSTORE, value.dtype, srcs))
    body: list[Node] = self.reduce_statements(len(self.loops) - 1) + stores
    for level in reversed(range(len(self.loops))):
      loop = Node(Ops.LOOP, dtypes.index, (self.loops[level], *body))
      body = self.reduce_statements(level - 1) + [loop]
    return body


def _depends_on_lane(node: Node) -> bool:
  return any(n.op is Ops.LANE for n in node.toposort())


def _name(store: Node, plan: _Plan) -> str:
  prefix = "r" if _nodes(store, Ops.REDUCE) else "E"
  dims = "_".join(str(s) for s in store.shape) or "1"
  return f"{prefix}_{dims}"


def lower(sink: Node, name: str | None = None) -> Node:
  """Lowers a kernel-level SINK to a loop-level KERNEL node (arg: KernelInfo)."""
  verify(sink, "kernel")
  store = _canonical_frame(sink.src[0])
  plan = _plan(store)
  lowerer = _Lowerer(store, plan)
  body = lowerer.lower()
  params: dict[int, tuple[DType, bool]] = {}
  for n in store.toposort():
    if n.op is Ops.PARAM:
      params.setdefault(n.arg, (n.dtype, False))
  params[store.src[0].arg] = (store.src[0].dtype, True)
  global_extent = lowerer.loops[0].arg[1] if lowerer.loops else 1
  info = KernelInfo(name or _name(store, plan), tuple(params[i] for i in range(len(params))), global_extent,
                    LANES if lowerer.lane is not None else 1, _count_ops(store), _count_bytes(store),
                    lowerer.loops[0].arg[0] if lowerer.loops else "", kernel_vars(store), store_extent(sink.src[0]))
  kernel = Node(Ops.KERNEL, dtypes.index, tuple(body), info)
  verify(kernel, "loop")
  return kernel


def _count_ops(store: Node) -> int:
  total = 0
  for n in store.toposort():
    if n.op in ALU:
      total += math.prod(n.shape) if n.shape else 1
    elif n.op is Ops.REDUCE:
      total += math.prod(n.src[0].shape)
  return total


def _count_bytes(store: Node) -> int:
  total = math.prod(store.shape) * store.dtype.itemsize
  for n in store.toposort():
    if n.op is Ops.LOAD:
      total += min(math.prod(n.shape), _unique_elements(n.arg)) * n.dtype.itemsize
  return total


def _unique_elements(tracker: ShapeTracker) -> int:
  v = tracker.views[0]
  return math.prod(s for s, st in zip(v.shape, v.strides) if st != 0) if len(tracker.views) == 1 else tracker.size
