"""compiler/ir.py: the verifier accepts every graph, kernel AST and loop program the system builds, and rejects
malformed nodes with an IRError that names the offending node; the printer is canonical (the same graph built twice
prints the same text, different graphs print different text).

Nothing here runs a kernel: graphs are scheduled and lowered, not realized.
"""
from __future__ import annotations

import numpy as np
import pytest

from compiler.dtypes import dtypes
from compiler.ir import IRError, Node, Ops, print_ir, verify
from compiler.lower import KernelInfo, lower
from compiler.render_c import render
from compiler.schedule import Scheduler
from compiler.view import ShapeTracker
from frontend.realize import realized
from frontend.tensor import Tensor

F32, I32, BOOL, INDEX = dtypes.float32, dtypes.int32, dtypes.bool, dtypes.index


def rand(rng, *shape, dtype=np.float32) -> Tensor:
  if np.dtype(dtype).kind == "f":
    return Tensor(rng.standard_normal(shape).astype(dtype))
  return Tensor(rng.integers(1, 50, size=shape).astype(dtype))


def _gradient(rng) -> Tensor:
  x = rand(rng, 4, 6)
  w = Tensor(rng.standard_normal((5, 6)).astype(np.float32), requires_grad=True)
  loss = (x @ w.T).relu().softmax(-1).log().mean()
  loss.backward()
  return w.grad


def _assign(rng) -> Tensor:
  t = rand(rng, 3, 4)
  return t.assign(t * 2 + 1)


# every builder makes fresh tensors (new buffers) with the same shapes and graph structure each time it is called
GRAPHS = {
  "elementwise": lambda r: (rand(r, 4, 8) + rand(r, 4, 8)) * rand(r, 4, 8),
  "reduce": lambda r: ((rand(r, 4, 8) + rand(r, 4, 8)) * rand(r, 4, 8)).sum(),
  "matmul_bias_relu": lambda r: (rand(r, 4, 8) @ rand(r, 8, 16) + rand(r, 16)).relu(),
  "softmax": lambda r: rand(r, 3, 5, 7).softmax(-1),
  "max_exp2_sqrt": lambda r: rand(r, 4, 8).max(1).exp2().sqrt(),
  "movement": lambda r: rand(r, 4, 6).pad(((1, 1), (0, 2))).flip(0)[1:4, ::3].permute(1, 0).expand(3, 3),
  "cast_bitcast": lambda r: rand(r, 4, 8).cast(dtypes.int32).bitcast(dtypes.float32),
  "where_compare": lambda r: (rand(r, 4, 8) > 0).where(rand(r, 4, 8), 2.5),
  "detach_contiguous": lambda r: (rand(r, 4, 8).detach().permute(1, 0).contiguous() + 1),
  "cumsum": lambda r: rand(r, 3, 8).cumsum(1),
  "integer_ops": lambda r: ((rand(r, 4, 8, dtype=np.int32) // 3) % 5 ^ (rand(r, 4, 8, dtype=np.int32) << 2)),
  "bool_ops": lambda r: ((rand(r, 4, 8) > 0) & (rand(r, 4, 8) < 1)).any(1),
  "gradient": _gradient,
  "assign": _assign,
  "copy": lambda r: rand(r, 4, 8).to("CPU:1") + 1,
}


def build(name: str, seed: int = 0) -> Node:
  return GRAPHS[name](np.random.default_rng(seed)).lazydata


# ---- the verifier accepts what the system builds --------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_level_verifies(name):
  root = build(name)
  verify(root, "graph")
  for node in root.toposort():  # every node on its own, as a root
    verify(node, "graph")


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_kernel_and_loop_levels_verify(name):
  items = Scheduler(lambda n: n in realized).schedule([build(name)])
  kernels = [item for item in items if item.ast is not None]
  assert kernels or name == "copy"
  for item in kernels:
    verify(item.ast, "kernel")
    assert item.ast.op is Ops.SINK and all(s.op is Ops.STORE for s in item.ast.src)
    program = lower(item.ast)
    verify(program, "loop")
    assert program.op is Ops.KERNEL and isinstance(program.arg, KernelInfo)
    fn_name, source = render(program)
    assert f"void {fn_name}(" in source


# ---- the verifier rejects malformed nodes ---------------------------------------------------------------------------

def _leaf(dtype=F32, shape=(2, 3)) -> Node:
  return Node(Ops.BUFFER, dtype, (), None, shape)


def _param(i: int = 0, dtype=F32) -> Node:
  return Node(Ops.PARAM, dtype, (), i)


def _range(extent: int = 4) -> Node:
  return Node(Ops.RANGE, INDEX, (), ("i0", extent))


def _gstore(value: Node) -> Node:
  return Node(Ops.GSTORE, value.dtype, (_param(0, value.dtype), _range(), value))


def _graph_cases() -> dict:
  a, b = _leaf(), _leaf()
  return {
    "unary_two_sources": (Node(Ops.NEG, F32, (a, b), None, (2, 3)), "unary op needs one source"),
    "binary_one_source": (Node(Ops.ADD, F32, (a,), None, (2, 3)), "binary op needs two sources"),
    "where_condition_not_bool": (Node(Ops.WHERE, F32, (a, a, b), None, (2, 3)), "WHERE needs (bool, x, y)"),
    "where_branches_differ": (Node(Ops.WHERE, F32, (_leaf(BOOL), a, _leaf(I32)), None, (2, 3)), "WHERE branches"),
    "comparison_not_bool": (Node(Ops.CMPLT, F32, (a, b), None, (2, 3)), "comparisons produce bool"),
    "comparison_dtypes_differ": (Node(Ops.CMPLT, BOOL, (a, _leaf(I32)), None, (2, 3)), "share a dtype"),
    "operand_dtype": (Node(Ops.ADD, F32, (a, _leaf(I32)), None, (2, 3)), "ALU operands must have the result dtype"),
    "idiv_on_float": (Node(Ops.IDIV, F32, (a, b), None, (2, 3)), "IDIV is for integers"),
    "xor_on_float": (Node(Ops.XOR, F32, (a, b), None, (2, 3)), "XOR is for integers"),
    "operand_shapes": (Node(Ops.ADD, F32, (a, _leaf(shape=(3, 2))), None, (2, 3)), "share the node's shape"),
    "reshape_shape": (Node(Ops.RESHAPE, F32, (a,), (3, 2), (6,)), "movement op result shape mismatch"),
    "permute_shape": (Node(Ops.PERMUTE, F32, (a,), (1, 0), (2, 3)), "movement op result shape mismatch"),
    "pad_shape": (Node(Ops.PAD, F32, (a,), ((1, 0), (0, 0)), (2, 3)), "movement op result shape mismatch"),
    "movement_two_sources": (Node(Ops.FLIP, F32, (a, b), (0,), (2, 3)), "movement ops have one source"),
    "reduce_shape": (Node(Ops.REDUCE, F32, (a,), (Ops.ADD, (1,)), (2,)), "REDUCE shape must be (2, 1)"),
    "reduce_op": (Node(Ops.REDUCE, F32, (a,), (Ops.SUB, (1,)), (2, 1)), "REDUCE op must be ADD, MUL or MAX"),
    "assign_mismatch": (Node(Ops.ASSIGN, F32, (a, _leaf(shape=(3, 2))), None, (2, 3)), "ASSIGN target and value"),
    "kernel_op": (_param(), "not allowed at graph"),
    "loop_op": (Node(Ops.RANGE, INDEX, (), ("i", 4)), "not allowed at graph"),
  }


def _kernel_cases() -> dict:
  st = ShapeTracker.contiguous((2, 3))
  load = Node(Ops.LOAD, F32, (_param(1),), st, (2, 3))
  return {
    "load_from_const": (Node(Ops.LOAD, F32, (Node(Ops.CONST, F32, (), 1.0),), st, (2, 3)), "LOAD reads/writes a PARAM"),
    "buffer_in_kernel": (_leaf(), "not allowed at kernel"),
    "contiguous_in_kernel": (Node(Ops.CONTIGUOUS, F32, (load,), None, (2, 3)), "not allowed at kernel"),
    "range_in_kernel": (_range(), "not allowed at kernel"),
    "view_shape": (Node(Ops.VIEW, F32, (load,), ShapeTracker.contiguous((3, 2)).with_src_shape((2, 3)), (6,)),
                   "VIEW shape mismatch"),
    "alu_shapes": (Node(Ops.MUL, F32, (load, Node(Ops.CONST, F32, (), 1.0, (3, 2))), None, (2, 3)),
                   "share the node's shape"),
  }


def _loop_cases() -> dict:
  acc = Node(Ops.DEFACC, F32, (Node(Ops.CONST, F32, (), 0.0),), ("acc0", 1))
  gload = Node(Ops.GLOAD, F32, (_param(1), _range()))
  return {
    "loop_without_range": (Node(Ops.LOOP, INDEX, (_gstore(gload), _gstore(gload))), "LOOP holds a RANGE"),
    "accum_without_defacc": (Node(Ops.ACCUM, F32, (gload, gload), Ops.ADD), "ACCUM updates a DEFACC"),
    "accum_op": (Node(Ops.ACCUM, F32, (acc, gload), Ops.SUB), "ACCUM updates a DEFACC"),
    "load_at_loop_level": (Node(Ops.LOAD, F32, (_param(1),), ShapeTracker.contiguous((4,)), (4,)),
                           "not allowed at loop"),
    "reduce_at_loop_level": (Node(Ops.REDUCE, F32, (gload,), (Ops.ADD, (0,)), ()), "not allowed at loop"),
    "alu_arity": (Node(Ops.SQRT, F32, (gload, gload)), "unary op needs one source"),
  }


def _wrap(level: str, bad: Node) -> Node:
  """A well-formed parent holding `bad`, so the verifier must find it below the root."""
  if level == "graph":
    return Node(Ops.CONTIGUOUS, bad.dtype, (bad,), None, bad.shape)
  if level == "kernel":
    store = Node(Ops.STORE, bad.dtype, (_param(0, bad.dtype), bad), ShapeTracker.contiguous(bad.shape), bad.shape)
    return Node(Ops.SINK, bad.dtype, (store,))
  if bad.op in (Ops.LOOP, Ops.ACCUM):
    return Node(Ops.KERNEL, INDEX, (Node(Ops.LOOP, INDEX, (_range(), bad)),), None)
  return Node(Ops.KERNEL, INDEX, (_gstore(bad),), None)


REJECT = [("graph", k) for k in _graph_cases()] + [("kernel", k) for k in _kernel_cases()] + \
         [("loop", k) for k in _loop_cases()]


@pytest.mark.parametrize("level,case", REJECT, ids=[f"{lv}-{k}" for lv, k in REJECT])
def test_verifier_rejects(level, case):
  bad, reason = {"graph": _graph_cases, "kernel": _kernel_cases, "loop": _loop_cases}[level]()[case]
  root = _wrap(level, bad)
  with pytest.raises(IRError) as info:
    verify(root, level)
  message = str(info.value)
  assert reason in message
  assert repr(bad) in message, f"the error should name the offending node {bad!r}: {message}"


def test_verifier_rejects_non_dtype():
  bad = Node(Ops.NEG, "float32", (_leaf(),), None, (2, 3))
  with pytest.raises(IRError, match="dtype must be a DType"):
    verify(_wrap("graph", bad), "graph")


def test_wrappers_are_well_formed():
  """The parents used above pass on their own, so each rejection is the malformed node's."""
  verify(_wrap("graph", _leaf()), "graph")
  st = ShapeTracker.contiguous((2, 3))
  verify(_wrap("kernel", Node(Ops.LOAD, F32, (_param(1),), st, (2, 3))), "kernel")
  gload = Node(Ops.GLOAD, F32, (_param(1), _range()))
  verify(_wrap("loop", gload), "loop")
  verify(_wrap("loop", Node(Ops.LOOP, INDEX, (_range(), _gstore(gload)))), "loop")


def test_frozen_nodes():
  node = _leaf()
  with pytest.raises(AttributeError):
    node.op = Ops.CONST


# ---- the printer is canonical ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_same_graph_prints_the_same(name):
  first, second = build(name, seed=1), build(name, seed=2)
  assert print_ir(first) == print_ir(second)
  asts = [[i.ast for i in Scheduler(lambda n: n in realized).schedule([root]) if i.ast is not None]
          for root in (first, second)]
  assert [print_ir(a) for a in asts[0]] == [print_ir(a) for a in asts[1]]
  assert [print_ir(lower(a)) for a in asts[0]] == [print_ir(lower(a)) for a in asts[1]]


def _variants(rng) -> dict:
  a, b = rand(rng, 4, 6), rand(rng, 4, 6)
  c = rand(rng, 6, 4)
  return {
    "a+b": a + b, "a*b": a * b, "a+a": a + a, "a+1": a + 1, "a+2": a + 2, "a-b": a - b,
    "a.T+c": a.T + c, "a+c.T": a + c.T, "a.sum(0)": a.sum(0), "a.sum(1)": a.sum(1), "a.max(1)": a.max(1),
    "a.int": a.cast(dtypes.int32), "a.half": a.cast(dtypes.float16), "a.pad": a.pad(((0, 1), (0, 0))),
    "a.shrink": a.shrink(((0, 3), (0, 6))), "a.flip": a.flip(0), "a.reshape": a.reshape(6, 4),
    "wider": rand(rng, 4, 7) + rand(rng, 4, 7), "a.exp2": a.exp2(), "a.log2": a.log2(),
  }


def test_different_graphs_print_differently():
  """(b+a prints like a+b: the text is canonical up to which buffer is bound to which input, as a cache key must be.)"""
  variants = _variants(np.random.default_rng(0))
  texts = {name: print_ir(t.lazydata) for name, t in variants.items()}
  assert len(set(texts.values())) == len(texts), "two different graphs printed the same text"
  kernel_texts = {}
  for name, t in variants.items():
    items = Scheduler(lambda n: n in realized).schedule([t.lazydata])
    kernel_texts[name] = "\n".join(print_ir(i.ast) for i in items if i.ast is not None)
  assert len(set(kernel_texts.values())) == len(kernel_texts), "two different kernels share a cache key"


def test_printer_names_each_node_once():
  a = rand(np.random.default_rng(0), 3, 3)
  x = a + 1
  text = print_ir((x * x).lazydata)
  lines = text.splitlines()
  assert len(lines) == len((x * x).lazydata.toposort())
  assert sum(" = ADD:" in line for line in lines) == 1
  assert "0x" not in text  # no object addresses: the text must not depend on where nodes live in memory
  last = lines[-1]
  assert last.startswith(f"%{len(lines) - 1} = MUL:float32[3,3](")
