"""compiler/render_cl.py: GPU loop programs (compiler/lower_gpu.py) rendered to OpenCL C, checked for their form and run
on the simulated Adreno (QCOMRuntime over SimKGSL: stand-in compiler, unmodified driver, simulated CP executing the
OpenCL C on the CPU), compared with the CPU backend running the same graph: integers and bools exactly, floats
within the dtype's tolerance.

The graphs are tests/test_render_ptx.py's (the NVIDIA path's) minus float64, which the renderer refuses: every
graph without a dtype in its name, and the per-dtype graphs of a representative set of dtypes (every dtype pair of
casts would compile a few hundred kernels). Every rendered kernel is also checked with clang's OpenCL C 1.2 front end
(clang-19 -x cl -fsyntax-only with the OpenCL builtin header), which knows the language and its builtins exactly;
those checks skip without clang-19, except under CI=true, where they fail (.ci/run installs clang-19).
"""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from test_render_ptx import GRAPHS, TOLERANCE, VARIABLE_CASES, build, check_variable_case, kernel_asts

from compiler.dtypes import dtypes
from compiler.ir import Ops, Variable
from compiler.lower_gpu import lower_gpu
from compiler.render_cl import render_cl
from compiler.schedule import Scheduler, _buffer_view
from frontend.realize import buffer_of, realized
from frontend.runtime.qcom import QCOMRuntime
from frontend.tensor import Tensor
from qcomdrv.sim import SimKGSL

# "matches CPU": the reference runs on the CPU runtime whatever DEV says (the suite also runs on DEV=NV)
pytestmark = pytest.mark.usefixtures("on_cpu")

DTYPES = ("float32", "float16", "bfloat16", "int32", "int8", "uint8")
KINDS = ("arith", "sum", "max", "compare", "divmod", "bits", "math", "wrap")
CASTS = ("cast_float32_int8", "cast_float32_bfloat16", "cast_float16_float32", "cast_int32_float16",
         "cast_bool_float32", "cast_float32_bool", "cast_uint8_int64", "bitcast_float32_int32",
         "bitcast_bfloat16_uint16", "bitcast_float16_uint16")
DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
               "int64", "uint64", "bool")


def chosen(name: str) -> bool:
  """Graphs without a dtype in the name (except `special_*`, whose inputs are float64), the per-dtype graphs of KINDS
  for DTYPES, and CASTS."""
  if name.startswith(("cast_", "bitcast_")):
    return name in CASTS
  named = [d for d in DTYPE_NAMES if name.endswith("_" + d)]
  if not named:
    return not name.startswith("special_")
  return named[0] in DTYPES and name[:-len(named[0]) - 1] in KINDS


SELECTED = sorted(name for name in GRAPHS if chosen(name))


@pytest.fixture(scope="module")
def runtimes():
  return {}


def runtime_for(runtimes: dict, chip: str) -> QCOMRuntime:
  if chip not in runtimes:
    runtimes[chip] = QCOMRuntime(SimKGSL(chip))
  return runtimes[chip]


def run_on(runtime: QCOMRuntime, t: Tensor, rng: np.random.Generator) -> np.ndarray:
  """t computed by the kernels of its schedule on the QCOM runtime (inputs from the CPU buffers); flat, as stored."""
  items = Scheduler(lambda n: n in realized).schedule([t.lazydata])
  alloc = runtime.allocator
  mem: dict = {}

  def host(node) -> np.ndarray:
    if node in mem:
      out = np.empty(mem[node][1], np.uint8)
      alloc.copyout(out, mem[node][0])
      return out
    return buffer_of(node).numpy().view(np.uint8).copy()

  def device(node):
    if node not in mem:
      data = host(node)
      buf = alloc.alloc(max(data.nbytes, 1))
      alloc.copyin(buf, data)
      mem[node] = (buf, data.nbytes)
    return mem[node][0]

  for item in items:
    out = item.bufs[0]
    if item.kind == "empty":
      mem[out] = (alloc.alloc(1), 0)
    elif item.kind in ("alias", "copy"):
      device(item.bufs[1])
      mem[out] = mem[item.bufs[1]]
    else:
      nbytes = out.size * out.dtype.itemsize
      if out.op is Ops.ASSIGN:
        initial = host(_buffer_view(out.src[0])[0])
      else:  # random bytes: an element the kernel fails to write shows up as a mismatch
        initial = rng.integers(0, 256, nbytes, dtype=np.uint8)
      target = alloc.alloc(max(nbytes, 1))
      alloc.copyin(target, initial)
      inputs = [device(n) for n in item.bufs[1:]]
      program, _ = runtime.program(lower_gpu(item.ast))
      program([alloc.address(target)] + [alloc.address(b) for b in inputs],
              tuple(item.var_vals[v] for v in program.info.vars))
      mem[out] = (target, nbytes)
  return host(t.lazydata).view(t.dtype.np)


def compare(t: Tensor, got: np.ndarray) -> None:
  want = t.numpy().reshape(-1)
  if t.dtype == dtypes.bfloat16:  # raw bits from the device; Tensor.numpy gives bfloat16 values as float32
    got = (got.astype(np.uint32) << 16).view(np.float32)
  if not t.dtype.is_float:
    np.testing.assert_array_equal(got, want)
    return
  tol = TOLERANCE[t.dtype.name]
  np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("name", SELECTED)
def test_graph_matches_cpu(name, runtimes, rng):
  t = build(name)
  compare(t, run_on(runtime_for(runtimes, "a740"), t, rng))


@pytest.mark.parametrize("chip", ["a630", "a650", "a660", "a730"])
@pytest.mark.parametrize("name", ["softmax", "matmul_bias_relu", "integer_mix", "sum_all_big"])
def test_every_chip(name, chip, runtimes, rng):
  t = build(name)
  compare(t, run_on(runtime_for(runtimes, chip), t, rng))


CLANG = shutil.which("clang-19")


def clang_check(source: str, name: str) -> None:
  if CLANG is None:
    if os.environ.get("CI") == "true":
      pytest.fail("clang-19 is missing under CI=true; .ci/run installs it with apt-get install clang-19")
    pytest.skip("no clang-19: apt-get install clang-19 to check the OpenCL C with clang's front end")
  proc = subprocess.run([CLANG, "-x", "cl", "-cl-std=CL1.2", "-Xclang", "-finclude-default-header", "-fsyntax-only",
                         "-Werror", "-"], input=source, capture_output=True, text=True)
  numbered = "\n".join(f"{i + 1:4d} {line}" for i, line in enumerate(source.splitlines()))
  assert proc.returncode == 0, f"clang rejects kernel {name}:\n{proc.stderr}\n{numbered}"


@pytest.mark.parametrize("name", SELECTED)
def test_opencl_c_passes_clang(name):
  for ast in kernel_asts(build(name)):
    kernel_name, source, _ = render_cl(lower_gpu(ast))
    clang_check(source, kernel_name)


def test_kernel_form(rng):
  x = Tensor(rng.standard_normal((3, 700)).astype(np.float32), device="CPU").realize()
  name, source, info = render_cl(lower_gpu(kernel_asts(x.softmax(-1))[-1]))
  assert info.plan == "block" and name == info.name
  assert f"__kernel __attribute__((reqd_work_group_size({info.local_size[0]}, 1, 1))) void {name}(" in source
  assert "__global float* restrict p0" in source and "__global const float* restrict p1" in source
  assert source.count("__local float red") == 1 and "barrier(CLK_LOCAL_MEM_FENCE);" in source
  assert "double" not in source and "cl_khr_fp16" not in source
  half = Tensor(rng.standard_normal(8).astype(np.float32)).cast(dtypes.float16).realize()
  _, half_source, _ = render_cl(lower_gpu(kernel_asts(half * 2)[-1]))
  assert half_source.startswith("#pragma OPENCL EXTENSION cl_khr_fp16 : enable") and "__global half*" in half_source
  flags = Tensor(rng.standard_normal(8).astype(np.float32)).realize()
  _, bool_source, _ = render_cl(lower_gpu(kernel_asts(flags > 0)[-1]))
  assert "__global uchar* restrict p0" in bool_source  # OpenCL forbids bool in kernel arguments


def test_refuses_float64_and_cpu_kernels(rng):
  x = Tensor(rng.standard_normal(8)).realize()
  with pytest.raises(ValueError, match="float64 is not supported on the device"):
    render_cl(lower_gpu(kernel_asts(x * 2)[-1]))
  from compiler.lower import lower
  with pytest.raises(ValueError, match="lower_gpu"):
    render_cl(lower(kernel_asts(x.cast(dtypes.float32) * 2)[-1]))


# ---- Variables: an `int` argument per Variable after the buffers, one kernel text for every value -------------------

@pytest.mark.parametrize("case", sorted(VARIABLE_CASES))
def test_variable_kernels_match_numpy_for_every_value(case, runtimes, rng):
  """tests/test_render_ptx.py's Variable cases (value math, masks, a row picked at a negative-ranged Variable, a
  window, integer index math, reductions that read it) on the simulated a740 for several values each: the value
  reaches the kernel through its constant-file slot (an ARG_SCALAR after the buffers), so the source never changes."""
  var = VARIABLE_CASES[case][0]

  def run(t, rng):
    sources = [render_cl(lower_gpu(ast))[1] for ast in kernel_asts(t)]
    assert any(f"int var_{var.name})" in src for src in sources), sources
    return run_on(runtime_for(runtimes, "a740"), t, rng), sources
  check_variable_case(case, rng, run)


def test_variable_arguments_follow_the_buffers(runtimes, rng):
  """The kernel's parameters: every buffer pointer, then one `int` per Variable in info.vars order (by name); the
  compiled binary has an ARG_SCALAR of 4 bytes for each, and a negative value fills its constant slot in two's
  complement."""
  from qcomdrv import binary as kb
  from qcomdrv.program import Program
  a, b = Variable("b_second", 0, 9), Variable("a_first", -5, 5)
  x = Tensor(rng.standard_normal((3, 4)).astype(np.float32)).realize()
  y = Tensor(rng.standard_normal((3, 4)).astype(np.float32)).realize()
  name, source, info = render_cl(lower_gpu(kernel_asts(x * a.bind(2) + b.bind(-1) + y)[-1]))
  assert info.vars == (b, a)
  head = source[source.index(f"void {name}(") + len(f"void {name}("):source.index(") {")]
  params = [p.strip() for p in head.split(",")]
  assert params[:len(info.params)] == [f"__global {'' if w else 'const '}float* restrict p{i}"
                                       for i, (_, w) in enumerate(info.params)]
  assert params[len(info.params):] == ["int var_a_first", "int var_b_second"]
  clang_check(source, name)
  runtime = runtime_for(runtimes, "a740")
  program = Program(runtime.dev, runtime.compiler.compile(source, name))
  scalars = program.kernel.args[len(info.params):]
  assert [(arg.kind, arg.nbytes) for arg in scalars] == [(kb.ARG_SCALAR, 4)] * 2
  consts = np.frombuffer(program.constants([0x1000, 0x2000, 0x3000, -1, 7]), np.int32)
  assert consts[scalars[0].const_dword] == -1 and consts[scalars[1].const_dword] == 7
