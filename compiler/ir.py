"""The one IR of Sovereign: frozen typed nodes at three levels, from tensor graph to loop program.

Every node is `Node(op, dtype, src, arg, shape, device)`; nodes are immutable once made and compare by identity
(a DAG: a node used twice is the same object, and renderers compute it once). The printer gives a canonical text
that also serves as the kernel cache key. Target details (C types, registers, launch dimensions) live only in the
renderers; nothing below names a device kind.

Grammar (`x:T[s]` is a node of dtype T and shape s; `*` repeats):

  Graph level (what Tensor builds, lazily):
    g := BUFFER                       arg=buffer handle (.size, .dtype, .device); shape (size,)
       | CONST                        arg=python scalar; shape ()
       | MOVE(g)                      MOVE in RESHAPE|PERMUTE|EXPAND|PAD|SHRINK|FLIP; arg=new shape | axis order |
                                      new shape | ((before, after),)*ndim | ((start, end),)*ndim | axes
       | ALU(g*)                      op in UNARY|BINARY|TERNARY; operands share one shape
       | CAST(g) | BITCAST(g)         dtype is the target
       | REDUCE(g)                    arg=(ADD|MUL|MAX, axes); reduced axes keep size 1
       | CONTIGUOUS(g) | DETACH(g)    realize boundary / gradient stop; same value
       | COPY(g)                      arg=target device
       | ASSIGN(target, g)            write g into target's buffer; target is BUFFER or ASSIGN
       | BIND                         arg=BoundVariable (a Variable and its value for this graph); int32, shape ()

  Kernel level (what the scheduler hands to lowering; one SINK per kernel):
    k := SINK(STORE*)
    STORE(PARAM, e)                   arg=ShapeTracker of the output view
    e := LOAD(PARAM)                  arg=ShapeTracker of the input view
       | CONST | VAR | VIEW(e) | ALU(e*) | CAST(e) | BITCAST(e) | REDUCE(e)
    VAR                               arg=Variable; an int32 value known at launch (a scalar kernel parameter, after
                                      the buffers, in the order of the kernel info's `vars`); shaped as a CONST is
    VIEW(e)                           arg=ShapeTracker from e.shape to this shape; composed movement ops over a
                                      computed value (the scheduler pushes unmasked views down into the loads)
    PARAM                             arg=index in the kernel's buffer list; dtype=element type

  Loop level (what lowering hands to a renderer; a KERNEL of statements):
    KERNEL(s*)                        arg=KernelInfo (CPU: name, params, global extent, parallel split) or
                                      GPUKernelInfo (GPU: name, params, grid and block sizes)
    s := LOOP(RANGE, s*)              a counted loop over RANGE (arg=(name, extent)): RANGE = 0 .. extent-1
       | DEFACC(i)                    arg=(name, lanes); an accumulator initialised to i
       | ACCUM(DEFACC, v)             arg=ADD|MUL|MAX; acc = acc op v
       | GSTORE(PARAM, idx, v[, gate])
       | IF(gate, s*)                 the statements run where the bool gate is true (GPU bounds guards)
       | BLOCKREDUCE(DEFACC)          arg=ADD|MUL|MAX; folds one accumulator across all threads of a block; every
                                      thread of the block must reach it (never inside an IF or a divergent LOOP);
                                      the node is also a value: the folded result, the same in every thread
    v := GLOAD(PARAM, idx[, gate])    gated loads read 0 where the gate is false
       | RANGE | LANE                 LANE arg=(name, width): the vector lane, one SIMD register wide
       | THREADIDX | BLOCKIDX         GPU thread index in its block / block index in the grid; arg=(axis, extent)
       | DEFACC | HREDUCE(DEFACC)     HREDUCE folds a vector accumulator's lanes (arg=op)
       | BLOCKREDUCE
       | CONST | VAR | ALU(v*) | CAST(v) | BITCAST(v)
"""
from __future__ import annotations

import dataclasses
import enum
import math
import operator
from typing import Any

from compiler.dtypes import DType, dtypes


class Ops(enum.Enum):
  # graph level
  BUFFER = enum.auto()
  CONST = enum.auto()
  VIEW = enum.auto()
  CAST = enum.auto()
  BITCAST = enum.auto()
  REDUCE = enum.auto()
  CONTIGUOUS = enum.auto()
  DETACH = enum.auto()
  COPY = enum.auto()
  ASSIGN = enum.auto()
  RESHAPE = enum.auto()
  PERMUTE = enum.auto()
  EXPAND = enum.auto()
  PAD = enum.auto()
  SHRINK = enum.auto()
  FLIP = enum.auto()
  # unary ALU
  NEG = enum.auto()
  RECIP = enum.auto()
  SQRT = enum.auto()
  EXP2 = enum.auto()
  LOG2 = enum.auto()
  SIN = enum.auto()
  TRUNC = enum.auto()
  NOT = enum.auto()  # logical not on bool, bitwise not on integers
  # binary ALU
  ADD = enum.auto()
  SUB = enum.auto()
  MUL = enum.auto()
  FDIV = enum.auto()  # float division
  IDIV = enum.auto()  # integer division, truncating toward zero (C semantics)
  MOD = enum.auto()  # integer remainder with the sign of the dividend (C semantics)
  MAX = enum.auto()
  CMPLT = enum.auto()
  CMPNE = enum.auto()
  CMPEQ = enum.auto()
  AND = enum.auto()
  OR = enum.auto()
  XOR = enum.auto()
  SHL = enum.auto()
  SHR = enum.auto()
  # ternary ALU
  WHERE = enum.auto()
  # kernel level
  SINK = enum.auto()
  PARAM = enum.auto()
  LOAD = enum.auto()
  STORE = enum.auto()
  # loop level
  KERNEL = enum.auto()
  LOOP = enum.auto()
  RANGE = enum.auto()
  LANE = enum.auto()
  DEFACC = enum.auto()
  ACCUM = enum.auto()
  HREDUCE = enum.auto()
  GLOAD = enum.auto()
  GSTORE = enum.auto()
  IF = enum.auto()
  THREADIDX = enum.auto()
  BLOCKIDX = enum.auto()
  BLOCKREDUCE = enum.auto()
  # symbolic values: BIND (graph level) becomes VAR (kernel and loop levels) plus the value the launch passes
  BIND = enum.auto()
  VAR = enum.auto()


UNARY = frozenset({Ops.NEG, Ops.RECIP, Ops.SQRT, Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.TRUNC, Ops.NOT})
BINARY = frozenset({Ops.ADD, Ops.SUB, Ops.MUL, Ops.FDIV, Ops.IDIV, Ops.MOD, Ops.MAX, Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ,
                    Ops.AND, Ops.OR, Ops.XOR, Ops.SHL, Ops.SHR})
TERNARY = frozenset({Ops.WHERE})
ALU = UNARY | BINARY | TERNARY
COMPARISON = frozenset({Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ})
REDUCE_OPS = frozenset({Ops.ADD, Ops.MUL, Ops.MAX})
MOVEMENT = frozenset({Ops.RESHAPE, Ops.PERMUTE, Ops.EXPAND, Ops.PAD, Ops.SHRINK, Ops.FLIP})
GRAPH_OPS = ALU | MOVEMENT | {Ops.BUFFER, Ops.CONST, Ops.CAST, Ops.BITCAST, Ops.REDUCE, Ops.CONTIGUOUS, Ops.DETACH,
                   Ops.COPY, Ops.ASSIGN, Ops.BIND}
KERNEL_OPS = ALU | {Ops.SINK, Ops.PARAM, Ops.LOAD, Ops.STORE, Ops.CONST, Ops.VIEW, Ops.CAST, Ops.BITCAST, Ops.REDUCE,
                    Ops.VAR}
LOOP_OPS = ALU | {Ops.KERNEL, Ops.LOOP, Ops.RANGE, Ops.LANE, Ops.DEFACC, Ops.ACCUM, Ops.HREDUCE, Ops.GLOAD, Ops.GSTORE,
                  Ops.PARAM, Ops.CONST, Ops.CAST, Ops.BITCAST, Ops.IF, Ops.THREADIDX, Ops.BLOCKIDX, Ops.BLOCKREDUCE,
                  Ops.VAR}
STATEMENTS = frozenset({Ops.LOOP, Ops.DEFACC, Ops.ACCUM, Ops.GSTORE, Ops.IF, Ops.BLOCKREDUCE})


def reduce_identity(op: Ops, dtype: DType):
  """The starting value of an accumulator for a reduction."""
  if op is Ops.ADD:
    return False if dtype.is_bool else (0.0 if dtype.is_float else 0)
  if op is Ops.MUL:
    return True if dtype.is_bool else (1.0 if dtype.is_float else 1)
  if op is Ops.MAX:
    return dtypes.min(dtype)
  raise ValueError(f"{op} is not a reduction; use one of {sorted(o.name for o in REDUCE_OPS)}")


INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


@dataclasses.dataclass(frozen=True)
class Variable:
  """A named int32 known only when a kernel launches, within [lo, hi]: kernels read it as a scalar parameter, so a
  kernel compiled for one value runs for every value, and a TinyJit replay patches it in place (frontend.jit).
  `lo`/`hi` are the bounds index arithmetic may rely on; bind() refuses values outside them.

  Raises:
    ValueError: a name that is not an identifier, lo > hi, or bounds outside int32.
  """
  name: str
  lo: int
  hi: int

  def __post_init__(self):
    if not isinstance(self.name, str) or not self.name.isidentifier() or not self.name.isascii():
      raise ValueError(f"Variable name {self.name!r} must be an ASCII identifier (it names a kernel parameter)")
    if not all(isinstance(b, int) and not isinstance(b, bool) for b in (self.lo, self.hi)):
      raise ValueError(f"Variable {self.name}: bounds must be ints, got lo={self.lo!r}, hi={self.hi!r}")
    if not INT32_MIN <= self.lo <= self.hi <= INT32_MAX:
      raise ValueError(f"Variable {self.name}: bounds lo={self.lo}, hi={self.hi} must satisfy "
                       f"{INT32_MIN} <= lo <= hi <= {INT32_MAX}")

  def canonical(self) -> str:
    return f"{self.name}[{self.lo}..{self.hi}]"

  def bind(self, value: int) -> BoundVariable:
    """This variable with a value for one call.

    Raises:
      ValueError: value is not an int in [lo, hi].
    """
    try:
      if isinstance(value, bool):
        raise TypeError
      value = operator.index(value)
    except TypeError:
      raise ValueError(f"Variable {self.name}: value {value!r} is not an int") from None
    if not self.lo <= value <= self.hi:
      raise ValueError(f"Variable {self.name}: value {value} is outside its bounds [{self.lo}, {self.hi}]; make the "
                       f"Variable with wider bounds")
    return BoundVariable(self, value)


@dataclasses.dataclass(frozen=True)
class BoundVariable:
  """A Variable with its value for one call: pass it where a Python int goes (`x + v`, `Tensor(v)`, a TinyJit
  argument); the kernels it reaches read the value at launch."""
  var: Variable
  value: int

  def canonical(self) -> str:
    return f"{self.var.canonical()}={self.value}"

  # arithmetic with ints gives an Offset: `t.shrink(((pos, pos + 1),))` starts a view at a launch-time index
  def __add__(self, k):
    return as_offset(self) + k

  __radd__ = __add__

  def __sub__(self, k):
    return as_offset(self) - k

  def __rsub__(self, k):
    return k - as_offset(self)

  def __mul__(self, k):
    return as_offset(self) * k

  __rmul__ = __mul__


@dataclasses.dataclass(frozen=True)
class Offset:
  """`const + sum(coeff * variable)`: an index known at launch, such as where a view starts. In the graph its
  variables are BoundVariables (the values travel with it); in kernels they are Variables (`unbind()`), so a
  kernel's text is the same for every value. Arithmetic with ints and Offsets stays affine; a result without
  variables is a plain int."""
  terms: tuple[tuple[Variable | BoundVariable, int], ...]  # sorted by name, no zero coefficients
  const: int = 0

  @staticmethod
  def make(terms: dict, const: int):
    """The normal form: an int when no variable is left."""
    kept = tuple(sorted(((v, k) for v, k in terms.items() if k), key=lambda t: _var_of(t[0]).name))
    return Offset(kept, int(const)) if kept else int(const)

  def _parts(self) -> dict:
    return dict(self.terms)

  def __add__(self, other):
    other = as_offset(other)
    if isinstance(other, Offset):
      terms = self._parts()
      for v, k in other.terms:
        terms[v] = terms.get(v, 0) + k
      return Offset.make(terms, self.const + other.const)
    if isinstance(other, int) and not isinstance(other, bool):
      return Offset.make(self._parts(), self.const + other)
    return NotImplemented

  __radd__ = __add__

  def __neg__(self):
    return self * -1

  def __sub__(self, other):
    return self + other * -1

  def __rsub__(self, other):
    return -self + other

  def __mul__(self, k):
    if not isinstance(k, int) or isinstance(k, bool):
      return NotImplemented
    return Offset.make({v: c * k for v, c in self.terms}, self.const * k)

  __rmul__ = __mul__

  def bounds(self) -> tuple[int, int]:
    """[min, max] over every value the variables may take."""
    lo = hi = self.const
    for v, k in self.terms:
      var = _var_of(v)
      lo += min(k * var.lo, k * var.hi)
      hi += max(k * var.lo, k * var.hi)
    return lo, hi

  def unbind(self) -> Offset:
    """The same offset over Variables (for kernels)."""
    return Offset(tuple((_var_of(v), k) for v, k in self.terms), self.const)

  def bindings(self) -> list[BoundVariable]:
    return [v for v, _ in self.terms if isinstance(v, BoundVariable)]

  def canonical(self) -> str:
    text = " + ".join(f"{k}*{v.canonical()}" for v, k in self.terms)
    return f"({text} + {self.const})"

  __str__ = canonical


def as_offset(x):
  """A BoundVariable as the Offset `1 * it`; anything else as it is."""
  return Offset(((x, 1),)) if isinstance(x, BoundVariable) else x


def _var_of(v) -> Variable:
  return v.var if isinstance(v, BoundVariable) else v


class Node:
  """One IR node. Immutable after construction; identity is equality."""
  __slots__ = ("op", "dtype", "src", "arg", "shape", "device", "__weakref__")

  def __init__(self, op: Ops, dtype: DType, src: tuple[Node, ...] = (), arg: Any = None, shape: tuple[int, ...] = (),
               device: str | None = None):
    object.__setattr__(self, "op", op)
    object.__setattr__(self, "dtype", dtype)
    object.__setattr__(self, "src", tuple(src))
    object.__setattr__(self, "arg", arg)
    object.__setattr__(self, "shape", tuple(shape))
    object.__setattr__(self, "device", device)

  def __setattr__(self, name, value):
    raise AttributeError(f"IR nodes are frozen; cannot set {name}")

  def __repr__(self) -> str:
    dtype = getattr(self.dtype, "name", repr(self.dtype))
    return f"<{self.op.name} {dtype}{list(self.shape)} arg={self.arg!r} src={len(self.src)}>"

  @property
  def size(self) -> int:
    return math.prod(self.shape)

  def toposort(self) -> list[Node]:
    """All nodes reachable from self, each after its sources."""
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(self, False)]
    while stack:
      node, expanded = stack.pop()
      if expanded:
        order.append(node)
        continue
      if id(node) in seen:
        continue
      seen.add(id(node))
      stack.append((node, True))
      for s in reversed(node.src):
        if id(s) not in seen:
          stack.append((s, False))
    return order


def const(value, dtype: DType, shape: tuple[int, ...] = (), device: str | None = None) -> Node:
  return Node(Ops.CONST, dtype, (), cast_scalar(value, dtype), shape, device)


def cast_scalar(value, dtype: DType):
  """A Python scalar converted the way a store of that dtype converts it (ints wrap, floats stay floats)."""
  if dtype.is_bool:
    return bool(value)
  if dtype.is_int:
    if isinstance(value, float):
      if math.isnan(value) or math.isinf(value):
        raise ValueError(f"cannot represent {value} as {dtype.name}")
      value = int(value)
    bits = dtype.bits
    value = int(value) & ((1 << bits) - 1)
    if not dtype.is_unsigned and value >= 1 << (bits - 1):
      value -= 1 << bits
    return value
  return float(value)


def movement_tracker(node: Node):
  """The ShapeTracker from node.src[0].shape to node.shape for one graph-level movement op."""
  from compiler.view import ShapeTracker
  base = ShapeTracker.contiguous(node.src[0].shape).with_src_shape(node.src[0].shape)
  method = {Ops.RESHAPE: base.reshape, Ops.PERMUTE: base.permute, Ops.EXPAND: base.expand, Ops.PAD: base.pad,
            Ops.SHRINK: base.shrink, Ops.FLIP: base.flip}[node.op]
  if node.op is Ops.SHRINK:  # kernels see a symbolic start's Variables, not their values
    return method(tuple(tuple(b.unbind() if isinstance(b, Offset) else b for b in pair) for pair in node.arg))
  return method(node.arg)


def bindings(node: Node) -> list[BoundVariable]:
  """The BoundVariables a graph-level movement node's arg holds (a SHRINK that starts at a Variable)."""
  if node.op is not Ops.SHRINK:
    return []
  return [bv for pair in node.arg for b in pair if isinstance(b, Offset) for bv in b.bindings()]


# ---- canonical printer ------------------------------------------------------------------------------------------

def _fmt_arg(node: Node, names: dict[int, str]) -> str:
  arg = node.arg
  if node.op is Ops.BUFFER:
    return f"buf(size={arg.size}, {arg.dtype.name})"
  if node.op is Ops.REDUCE:
    return f"{arg[0].name}, axes={tuple(arg[1])}"
  if node.op in (Ops.ACCUM, Ops.HREDUCE, Ops.BLOCKREDUCE):
    return arg.name
  if hasattr(arg, "canonical"):
    return arg.canonical()
  return repr(arg)


def print_ir(root: Node | list[Node]) -> str:
  """The canonical text of a DAG: one numbered line per node, sources by number. Equal text means equal program."""
  roots = root if isinstance(root, list) else [root]
  lines: list[str] = []
  names: dict[int, str] = {}
  for r in roots:
    for node in r.toposort():
      if id(node) in names:
        continue
      name = f"%{len(names)}"
      names[id(node)] = name
      srcs = ", ".join(names[id(s)] for s in node.src)
      arg = "" if node.arg is None else f" [{_fmt_arg(node, names)}]"
      shape = f"[{','.join(map(str, node.shape))}]" if node.shape else ""
      lines.append(f"{name} = {node.op.name}:{node.dtype.name}{shape}({srcs}){arg}")
  return "\n".join(lines)


# ---- verifier ---------------------------------------------------------------------------------------------------

class IRError(Exception):
  """A node breaks the IR grammar; the message names the node."""


def _check(cond: bool, node: Node, what: str):
  if not cond:
    raise IRError(f"{what}: {node!r}")


def _verify_alu(node: Node):
  if node.op in UNARY:
    _check(len(node.src) == 1, node, "unary op needs one source")
  elif node.op in BINARY:
    _check(len(node.src) == 2, node, "binary op needs two sources")
  else:
    _check(len(node.src) == 3 and node.src[0].dtype == dtypes.bool, node, "WHERE needs (bool, x, y)")
  if node.op in COMPARISON:
    _check(node.dtype == dtypes.bool, node, "comparisons produce bool")
    _check(node.src[0].dtype == node.src[1].dtype, node, "comparison operands must share a dtype")
  elif node.op is Ops.WHERE:
    _check(node.src[1].dtype == node.src[2].dtype == node.dtype, node, "WHERE branches must share the result dtype")
  elif node.op not in (Ops.SHL, Ops.SHR):
    _check(all(s.dtype == node.dtype for s in node.src), node, "ALU operands must have the result dtype")
  if node.op in (Ops.IDIV, Ops.MOD, Ops.SHL, Ops.SHR, Ops.XOR, Ops.AND, Ops.OR):
    _check(not node.dtype.is_float, node, f"{node.op.name} is for integers and bools")


def verify(root: Node, level: str = "graph") -> None:
  """Checks every node under root against the grammar of one level ("graph", "kernel" or "loop").

  Raises:
    IRError: naming the first offending node.
  """
  allowed = {"graph": GRAPH_OPS, "kernel": KERNEL_OPS, "loop": LOOP_OPS}[level]
  for node in root.toposort():
    _check(isinstance(node.dtype, DType), node, "dtype must be a DType")
    _check(node.op in allowed, node, f"op not allowed at {level} level")
    if node.op in ALU:
      _verify_alu(node)
      if level != "loop":
        _check(all(s.shape == node.shape for s in node.src), node, "ALU operands must share the node's shape")
    elif node.op is Ops.VIEW:
      _check(node.arg.shape == node.shape and node.arg.src_shape == node.src[0].shape, node, "VIEW shape mismatch")
    elif node.op in MOVEMENT:
      _check(len(node.src) == 1, node, "movement ops have one source")
      _check(movement_tracker(node).shape == node.shape, node, "movement op result shape mismatch")
    elif node.op is Ops.REDUCE:
      op, axes = node.arg
      _check(op in REDUCE_OPS, node, "REDUCE op must be ADD, MUL or MAX")
      src_shape = node.src[0].shape
      want = tuple(1 if i in axes else s for i, s in enumerate(src_shape))
      _check(node.shape == want, node, f"REDUCE shape must be {want}")
    elif node.op in (Ops.LOAD, Ops.STORE):
      _check(node.src[0].op is Ops.PARAM, node, f"{node.op.name} reads/writes a PARAM")
      if node.op is Ops.STORE:
        _check(node.src[1].shape == node.arg.shape, node, "STORE value shape must match its view")
    elif node.op is Ops.SINK:
      _check(all(s.op is Ops.STORE for s in node.src), node, "SINK holds STOREs")
    elif node.op is Ops.ASSIGN:
      _check(node.src[0].shape == node.src[1].shape and node.src[0].dtype == node.src[1].dtype, node,
             "ASSIGN target and value must match in shape and dtype")
    elif node.op is Ops.LOOP:
      _check(node.src[0].op is Ops.RANGE and all(s.op in STATEMENTS for s in node.src[1:]), node,
             "LOOP holds a RANGE then statements")
    elif node.op is Ops.KERNEL:
      _check(all(s.op in STATEMENTS for s in node.src), node, "KERNEL holds statements")
    elif node.op in (Ops.ACCUM, Ops.BLOCKREDUCE):
      what = "ACCUM updates a DEFACC" if node.op is Ops.ACCUM else "BLOCKREDUCE folds a DEFACC"
      _check(node.src[0].op is Ops.DEFACC and node.arg in REDUCE_OPS, node, f"{what} with ADD, MUL or MAX")
    elif node.op is Ops.IF:
      _check(len(node.src) >= 1 and node.src[0].dtype == dtypes.bool and all(s.op in STATEMENTS for s in node.src[1:]),
             node, "IF holds a bool gate then statements")
    elif node.op is Ops.BIND:
      _check(isinstance(node.arg, BoundVariable) and node.dtype == dtypes.int32 and not node.src and not node.shape,
             node, "BIND is an int32 leaf of shape () holding a BoundVariable")
    elif node.op is Ops.VAR:
      _check(isinstance(node.arg, Variable) and node.dtype == dtypes.int32 and not node.src, node,
             "VAR is an int32 leaf holding a Variable")
    elif node.op in (Ops.THREADIDX, Ops.BLOCKIDX):
      _check(node.dtype == dtypes.index and isinstance(node.arg, tuple) and len(node.arg) == 2 and
             node.arg[0] in (0, 1, 2) and node.arg[1] >= 1, node, f"{node.op.name} arg is (axis 0..2, extent >= 1)")
