"""The scheduler: a lazy tensor graph in, a list of kernels (kernel-level IR) in dependency order out.

Fusion rules, in the order they are applied while a kernel's AST is built from its output downwards:
  - elementwise ops, casts and constants always fuse into whatever consumes them (recomputed per consumer);
  - movement ops (VIEW) compose into the views of the loads below them; a VIEW with a mask (pad) above a computed
    value stays a VIEW node, which gates the value to 0 outside the mask;
  - inside a reduction, a computed value read REUSE_LIMIT or more times per element (a broadcast or overlapping
    windows) is realized first, so it is computed once, not once per multiply-accumulate;
  - a REDUCE fuses into its consumer when the consumer reads it at the consumer's own index (an epilogue such as
    matmul + bias + relu) or broadcast along trailing axes only (softmax's `x / x.sum(-1)`), so lowering can compute
    it once per outer index; a REDUCE needed inside another REDUCE, or read through any other view, is realized;
  - a REDUCE over RECOMPUTE_LIMIT or more source elements that would be computed by two kernels (fused into both,
    or fused into one and realized for another: a training step's forward matmul, which the activation's backward
    reads again) is computed once into its own buffer instead: `schedule` finds those in one pass and, where there
    are any, schedules again with them realized;
  - BUFFER nodes, nodes realized before, CONTIGUOUS, COPY and ASSIGN are kernel boundaries.

A BIND (a Variable with its value) becomes a VAR leaf of the kernel, and a SHRINK that starts at a Variable a view
whose offset holds it; the values go into the item's `var_vals`, so the kernel's text, and its compiled program, is
the same for every value.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from compiler.ir import ALU, MOVEMENT, Node, Ops, Variable, bindings, movement_tracker, verify
from compiler.view import ShapeTracker


REUSE_LIMIT = 4  # reads per element above which a computed value inside a reduction is realized, not recomputed
RECOMPUTE_LIMIT = 1 << 20  # source elements of a REDUCE above which two kernels share its buffer, not recompute it


@dataclasses.dataclass
class ScheduleItem:
  """One unit of work: a kernel (ast is a SINK) or a copy (ast is None). bufs[0] is the output."""
  ast: Node | None
  bufs: list[Node]  # graph nodes whose buffers the kernel uses; PARAM i is bufs[i]
  kind: str = "kernel"  # "kernel" | "copy" | "alias" | "empty"
  var_vals: dict[Variable, int] = dataclasses.field(default_factory=dict)  # the values of the kernel's VARs


def _strip(node: Node) -> Node:
  while node.op is Ops.DETACH:
    node = node.src[0]
  return node


class Scheduler:
  def __init__(self, is_realized: Callable[[Node], bool], shared: frozenset[int] = frozenset()):
    self.is_realized = is_realized
    self.items: list[ScheduleItem] = []
    self.done: dict[int, Node] = {}  # id(node) -> node, for nodes realized by this schedule
    self.shared = shared  # ids of costly REDUCEs realized wherever they are read (found by an earlier pass)
    self.computed: dict[int, set[int]] = {}  # id(costly REDUCE) -> the kernels computing it (ids of their outputs)

  def realized(self, node: Node) -> bool:
    return node.op is Ops.BUFFER or id(node) in self.done or self.is_realized(node)

  def schedule(self, targets: list[Node]) -> list[ScheduleItem]:
    # targets that only read (a training step's gradients, its loss) go first: they see every buffer as it is, and
    # the assigns' values below then load them instead of fusing and recomputing them (Adam's moment updates would
    # each recompute a weight gradient)
    writes = self._reaches_assign(targets)
    for t in targets:
      if id(t) not in writes:
        self.realize(t)
    self._protect_old_values(targets)
    for t in targets:
      self.realize(t)
    twice = frozenset(r for r, kernels in self.computed.items() if len(kernels) > 1)
    if twice:  # again, computing each of those once; each pass adds at least one, so this ends
      return Scheduler(self.is_realized, self.shared | twice).schedule(targets)
    return self.items

  def computes(self, reduce: Node, kernel: Node) -> None:
    """Records that `kernel` computes the (costly) REDUCE `reduce`, fused or as its own output."""
    if reduce.src[0].size >= RECOMPUTE_LIMIT:
      self.computed.setdefault(id(reduce), set()).add(id(kernel))

  def _reaches_assign(self, roots: list[Node]) -> set[int]:
    """ids of the nodes under roots whose graph holds an ASSIGN not yet realized (realizing one would write a
    buffer), in one post-order pass shared by all roots."""
    out: set[int] = set()
    done: set[int] = set()
    stack = [(r, False) for r in roots]
    while stack:
      n, expanded = stack.pop()
      if id(n) in done:
        continue
      if self.realized(n):
        done.add(id(n))
      elif expanded:
        done.add(id(n))
        if n.op is Ops.ASSIGN or any(id(s) in out for s in n.src):
          out.add(id(n))
      else:
        stack.append((n, True))
        stack.extend((s, False) for s in n.src if id(s) not in done)
    return out

  def _protect_old_values(self, targets: list[Node]) -> None:
    """Write-after-read: a target that reads a buffer which another target assigns must see the old contents, so it
    is computed (into its own buffer) before any assign of this schedule runs."""
    assigned = {}
    for t in targets:
      if t.op is Ops.ASSIGN and not self.realized(t):
        assigned[id(_buffer_view(t.src[0])[0])] = t
    if not assigned:
      return
    for t in targets:
      value = _strip(t.src[1]) if t.op is Ops.ASSIGN else t
      own = id(_buffer_view(t.src[0])[0]) if t.op is Ops.ASSIGN else None
      if any(i != own for i in self._bases_read(value) if i in assigned):
        self.realize(value)

  def _bases_read(self, node: Node) -> set[int]:
    """ids of the realized nodes (buffers) that computing node would read."""
    out: set[int] = set()
    stack, seen = [node], set()
    while stack:
      n = stack.pop()
      if id(n) in seen:
        continue
      seen.add(id(n))
      if self.realized(n):
        out.add(id(n))
        continue
      stack.extend(n.src)
    return out

  # ---- realizing one node as a kernel output ----------------------------------------------------------------
  def realize(self, node: Node) -> None:
    if self.realized(node):
      return
    if node.size == 0 and node.op is not Ops.ASSIGN:
      self._emit(ScheduleItem(None, [node], "empty"), node)  # nothing to compute: an empty buffer
      return
    inner = _strip(node)
    if inner is not node:
      self.realize(inner)
      self._alias(node, inner)
      return
    if node.op is Ops.COPY:
      self.realize(node.src[0])
      self._emit(ScheduleItem(None, [node, _strip(node.src[0])], "copy"), node)
      return
    if node.op is Ops.CONTIGUOUS:
      src = _strip(node.src[0])
      if (self.realized(src) and not _assigns_a_window(src)) or src.op is Ops.CONTIGUOUS:
        self.realize(src)
        self._alias(node, src)
        return
      self._kernel(node, src, ShapeTracker.contiguous(node.shape))
      return
    if node.op is Ops.ASSIGN:
      self._assign(node)
      return
    base, view = _buffer_view(node)
    if base is not node and self.realized(base) and view.is_contiguous and base.size == node.size:
      self._alias(node, base)  # a reshape of a realized buffer is that buffer
      return
    if node.op is Ops.REDUCE:
      self.computes(node, node)
    self._kernel(node, node, ShapeTracker.contiguous(node.shape))

  def _alias(self, node: Node, target: Node) -> None:
    self._emit(ScheduleItem(None, [node, target], "alias"), node)

  def _emit(self, item: ScheduleItem, node: Node) -> None:
    self.items.append(item)
    self.done[id(node)] = node

  def _assign(self, node: Node) -> None:
    target, value = node.src
    base, view = _buffer_view(target)
    self.realize(base)
    value = _strip(value)
    builder = self._assign_builder(node, base)
    ast_value = builder.build(value, ShapeTracker.contiguous(value.shape))
    if builder.reads_other_view(base, view):
      # the value reads the target at other positions: compute it into a temporary first (no read-after-write race)
      self.realize(value)
      builder = self._assign_builder(node, base)
      ast_value = builder.build(value, ShapeTracker.contiguous(value.shape))
    builder.bind_view(target)  # the target's window may start at a Variable
    store = Node(Ops.STORE, value.dtype, (builder.params[id(node)], ast_value), view, view.shape)
    self._emit(ScheduleItem(_sink(store), builder.bufs, var_vals=builder.var_vals), node)

  def _assign_builder(self, node: Node, base: Node) -> _KernelBuilder:
    """A builder whose PARAM 0 is the ASSIGN's output, shared with loads of the target's old contents (one pointer,
    so `restrict` holds)."""
    builder = _KernelBuilder(self, node)
    builder.prerealize_nested(node.src[1])
    out = builder.param(node, out=True)
    builder.params[id(base)] = out
    return builder

  def _kernel(self, node: Node, value: Node, out_view: ShapeTracker) -> None:
    builder = _KernelBuilder(self, node)
    builder.prerealize_nested(value)
    out_param = builder.param(node, out=True)
    ast_value = builder.build(value, ShapeTracker.contiguous(value.shape))
    store = Node(Ops.STORE, value.dtype, (out_param, ast_value), out_view, out_view.shape)
    self._emit(ScheduleItem(_sink(store), builder.bufs, var_vals=builder.var_vals), node)


def _sink(store: Node) -> Node:
  sink = Node(Ops.SINK, store.dtype, (store,))
  verify(sink, "kernel")
  return sink


def _buffer_view(node: Node) -> tuple[Node, ShapeTracker]:
  """(the node holding the buffer, the view of it that node presents), through VIEW/DETACH."""
  views: list[ShapeTracker] = []
  while node.op in MOVEMENT or node.op is Ops.DETACH:
    if node.op in MOVEMENT:
      views.append(movement_tracker(node))
    node = node.src[0]
  tracker = ShapeTracker.contiguous(node.shape)
  for v in reversed(views):
    tracker = tracker.compose(v)
  return node, tracker


def _assigns_a_window(node: Node) -> bool:
  """An ASSIGN into part of its buffer (a slice, rows at a Variable): its buffer, the target's whole one, is not its
  value, which reads through the target's view."""
  if node.op is not Ops.ASSIGN:
    return False
  base, view = _buffer_view(node.src[0])
  return not (view.is_contiguous and base.size == node.size)


def reduce_fusable(view: ShapeTracker) -> bool:
  """A REDUCE read through `view` can fuse: one unmasked view that is a reshape of the reduce's output followed by
  a broadcast along trailing axes only, so the reduce depends on a prefix of the consumer's loops."""
  if len(view.views) != 1:
    return False
  v = view.views[0]
  if v.mask is not None or v.offset != 0:
    return False
  dims = [(s, st) for s, st in zip(v.shape, v.strides) if s != 1]
  seen_broadcast = False
  expect = 1
  kept = []
  for s, st in dims:
    if st == 0:
      seen_broadcast = True
    elif seen_broadcast:
      return False
    else:
      kept.append((s, st))
  for s, st in reversed(kept):
    if st != expect:
      return False
    expect *= s
  return True


class _KernelBuilder:
  """Builds one kernel's AST; realizes (via the scheduler) whatever cannot fuse."""

  def __init__(self, sched: Scheduler, out: Node):
    self.sched = sched
    self.bufs: list[Node] = []
    self.params: dict[int, Node] = {}
    self.loads: list[tuple[Node, ShapeTracker]] = []
    self.memo: dict[tuple[int, ShapeTracker, bool], Node] = {}
    self.out = out
    self.var_vals: dict[Variable, int] = {}

  def bind(self, var: Variable, value: int) -> None:
    """Records the value the kernel's VAR var takes.

    Raises:
      ValueError: var is bound to another value elsewhere in the same kernel.
    """
    if self.var_vals.setdefault(var, value) != value:
      raise ValueError(f"Variable {var.name} is bound to {self.var_vals[var]} and to {value} in one kernel; bind it "
                       f"once per computation (one BoundVariable) and reuse that")

  def param(self, node: Node, out: bool = False) -> Node:
    if id(node) not in self.params:
      self.params[id(node)] = Node(Ops.PARAM, node.dtype, (), len(self.bufs))
      self.bufs.append(node)
    return self.params[id(node)]

  def bind_all(self, node: Node) -> None:
    """Records the values of the Variables a movement node starts at (a SHRINK at a Variable)."""
    for bv in bindings(node):
      self.bind(bv.var, bv.value)

  def bind_view(self, node: Node) -> None:
    """bind_all for each movement node of the chain from `node` down to the node holding its buffer."""
    while node.op in MOVEMENT or node.op is Ops.DETACH:
      self.bind_all(node)
      node = node.src[0]

  def reads_other_view(self, base: Node, view: ShapeTracker) -> bool:
    return any(n is base and v != view for n, v in self.loads)

  def prerealize_nested(self, node: Node) -> None:
    """Realizes every REDUCE that sits inside another REDUCE's source in this kernel, before the AST is built, so
    all uses of it in the kernel load the one buffer (instead of some uses fusing and recomputing it).

    Where the nested REDUCE lies under a computed value that the reduction reads REUSE_LIMIT or more times per
    element (which `_build` would realize anyway), that value is realized instead, and the nested REDUCE fuses into
    its kernel: an RMSNorm feeding a matmul is one kernel (sum of squares, then the scaled row), not two."""
    def step(n: Node, frame: int):  # frame: the size of the enclosing REDUCE's source; 0 outside one
      if n.op is Ops.REDUCE:
        if frame:
          self.sched.realize(n)
          return []
        return [(s, max(1, s.size)) for s in n.src]
      if frame and n.op in ALU | {Ops.CAST, Ops.BITCAST} and frame >= REUSE_LIMIT * n.size and \
         _has_alu(n, self.sched) and self._reduces_below(n):
        self.sched.realize(n)
        return []
      return [(s, frame) for s in n.src]
    _walk(self.sched, [(node, 0)], step)

  def _reduces_below(self, node: Node) -> bool:
    """A REDUCE is computed (not loaded) in node's kernel-local graph, and every such REDUCE is read through reshapes
    and broadcasts only (so it fuses into node's kernel whole: a REDUCE also read through a window of it, such as
    the gate half of a fused gate/up product, would be realized there and recomputed for the other reads)."""
    found = []

    def step(n: Node, windowed: bool):
      if n.op is Ops.REDUCE:
        found.append(n)
        return True if windowed else []
      windowed = windowed or (n.op in MOVEMENT and n.op not in (Ops.RESHAPE, Ops.EXPAND))
      return [(s, windowed) for s in n.src]
    return not _walk(self.sched, [(node, False)], step) and bool(found)

  def build(self, node: Node, view: ShapeTracker, in_reduce: bool = False) -> Node:
    """The AST computing `node` seen through `view` (from the consumer's shape to node.shape)."""
    key = (id(node), view, in_reduce)
    if key not in self.memo:
      self.memo[key] = self._build(node, view, in_reduce)
    return self.memo[key]

  def _build(self, node: Node, view: ShapeTracker, in_reduce: bool) -> Node:
    node = _strip(node)
    shape = view.shape
    if self.sched.realized(node) or node.op in (Ops.CONTIGUOUS, Ops.COPY, Ops.ASSIGN, Ops.BUFFER):
      return self._load(node, view)
    if node.op in MOVEMENT:
      self.bind_all(node)
      return self.build(node.src[0], movement_tracker(node).compose(view), in_reduce)
    if node.op is Ops.CONST:
      value = Node(Ops.CONST, node.dtype, (), node.arg, shape)
      return self._gate(value, view)
    if node.op is Ops.BIND:
      self.bind(node.arg.var, node.arg.value)
      return self._gate(Node(Ops.VAR, node.dtype, (), node.arg.var, shape), view)
    if node.op is Ops.REDUCE:
      if in_reduce or not reduce_fusable(view) or (id(node) in self.sched.shared and node is not self.out):
        self.sched.realize(node)
        return self._load(node, view)
      self.sched.computes(node, self.out)
      src = self.build(node.src[0], ShapeTracker.contiguous(node.src[0].shape), in_reduce=True)
      red = Node(Ops.REDUCE, node.dtype, (src,), node.arg, node.shape)
      return self._wrap_view(red, view)
    if in_reduce and node.op in ALU | {Ops.CAST, Ops.BITCAST} and view.size >= REUSE_LIMIT * node.size and \
       _has_alu(node, self.sched):
      # a computed value that the reduction reads several times per element (through a broadcast or overlapping
      # windows, as conv backward does): compute it once into a buffer instead of once per multiply-accumulate
      self.sched.realize(node)
      return self._load(node, view)
    if any(v.mask is not None for v in view.views) and not _identity(view):
      # a padded view of a computed value: compute the value in its own frame, then gate it (0 outside the mask)
      inner = self.build(node, ShapeTracker.contiguous(node.shape), in_reduce)
      return self._wrap_view(inner, view)
    if node.op in ALU or node.op in (Ops.CAST, Ops.BITCAST):
      srcs = tuple(self.build(s, view, in_reduce) for s in node.src)
      return Node(node.op, node.dtype, srcs, node.arg, shape)
    raise NotImplementedError(f"scheduler cannot fuse {node.op.name}")  # every graph op is handled above

  def _load(self, node: Node, view: ShapeTracker) -> Node:
    if not self.sched.realized(node):
      self.sched.realize(node)
    if node.op is Ops.ASSIGN:
      # an ASSIGN's buffer is its target's whole buffer, and its value is the target's window of it (a slice, rows
      # at a Variable): read through the target's view, not from the buffer's start
      self.bind_view(node.src[0])
      base = _buffer_view(node.src[0])[1]
    else:
      base = ShapeTracker.contiguous((node.size,)).reshape(node.shape)
    tracker = base.compose(view)
    tracker = ShapeTracker(tracker.views)
    self.loads.append((node, tracker))
    return Node(Ops.LOAD, node.dtype, (self.param(node),), tracker, view.shape)

  def _gate(self, value: Node, view: ShapeTracker) -> Node:
    if all(v.mask is None for v in view.views):
      return value
    inner = Node(value.op, value.dtype, (), value.arg, view.src_shape)
    return self._wrap_view(inner, view)

  def _wrap_view(self, inner: Node, view: ShapeTracker) -> Node:
    if _identity(view):
      return inner
    return Node(Ops.VIEW, inner.dtype, (inner,), view.with_src_shape(inner.shape), view.shape)


def _walk(sched: Scheduler, start: list[tuple[Node, object]], step) -> bool:
  """Depth first over what a kernel computes itself (it stops at realized nodes and kernel boundaries), each node
  once per state: `step(node, state)` gives the (source, state) pairs to visit next, or True to end the walk, which
  then returns True (False once every node is visited)."""
  stack, seen = list(start), set()
  while stack:
    n, state = stack.pop()
    n = _strip(n)
    if (id(n), state) in seen or sched.realized(n) or n.op in (Ops.CONTIGUOUS, Ops.COPY, Ops.ASSIGN):
      continue
    seen.add((id(n), state))
    more = step(n, state)
    if more is True:
      return True
    stack.extend(more)
  return False


def _has_alu(node: Node, sched: Scheduler) -> bool:
  """node computes something beyond a cast of loaded values (at least one ALU op before reaching buffers)."""
  stack, seen = [node], set()
  while stack:
    n = _strip(stack.pop())
    if id(n) in seen or sched.realized(n) or n.op in (Ops.CONTIGUOUS, Ops.COPY, Ops.ASSIGN, Ops.REDUCE):
      continue
    seen.add(id(n))
    if n.op in ALU:
      return True
    stack.extend(n.src)
  return False


def _identity(view: ShapeTracker) -> bool:
  return view.is_contiguous and view.shape == view.src_shape
