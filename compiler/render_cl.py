"""OpenCL C renderer: a GPU loop program (compiler/lower_gpu.py) to one OpenCL C 1.2 kernel (cl_khr_fp16 for half).

Entry: `__kernel __attribute__((reqd_work_group_size(T, 1, 1))) void NAME(__global S* restrict p0, ...)`, one buffer
pointer per PARAM in PARAM order (the C and PTX renderers' order), S the storage type of the element dtype, then
an `int var_NAME` per Variable (GPUKernelInfo.vars). A runtime launches `global_size` workgroups of `local_size`
work-items (GPUKernelInfo).

Statements map one to one: LOOP is a counted `for` over a `long`, IF an `if`, DEFACC/ACCUM a private accumulator,
GSTORE a store (under its gate), BLOCKREDUCE a tree over a `__local` array of one slot per work-item with a barrier
after every level (every work-item reaches it: lowering never puts it under an IF). Index arithmetic is `long`.

Types and semantics, matching the C renderer (compiler/render_c.py) value for value:
  bool is `bool` in private memory and `uchar` 0/1 in buffers (OpenCL forbids bool in kernel arguments); bfloat16
  is its 16 raw bits (`ushort`) in buffers and computed in float, each result rounded to bfloat16 (`_bfr`); float16
  is `half`, every op rounded to half; float64 is refused (Adreno has no cl_khr_fp64). Integer division by zero
  gives 0 and INT_MIN / -1 wraps; shifts by >= the width give 0; narrow integers wrap after every op; MAX propagates
  NaN. Loads under a gate read element 0 when the gate is off, then select (no load sits inside a conditional).
"""
from __future__ import annotations

from compiler.dtypes import DType, dtypes
from compiler.ir import Node, Ops
from compiler.lower_gpu import GPUKernelInfo

CL_TYPES = {"bool": "bool", "int8": "char", "uint8": "uchar", "int16": "short", "uint16": "ushort", "int32": "int",
            "uint32": "uint", "int64": "long", "uint64": "ulong", "float16": "half", "bfloat16": "float",
            "float32": "float"}
STORAGE = {**CL_TYPES, "bool": "uchar", "bfloat16": "ushort"}
INFIX = {Ops.ADD: "+", Ops.SUB: "-", Ops.MUL: "*", Ops.FDIV: "/", Ops.CMPLT: "<", Ops.CMPNE: "!=", Ops.CMPEQ: "==",
         Ops.AND: "&", Ops.OR: "|", Ops.XOR: "^"}
MATH = {Ops.SQRT: "sqrt", Ops.EXP2: "exp2", Ops.LOG2: "log2", Ops.SIN: "sin", Ops.TRUNC: "trunc"}

PRELUDE_BF16 = """static inline float _bf2f(ushort b) { return as_float((uint)b << 16); }
static inline ushort _f2bf(float f) {
  uint u = as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (ushort)(u >> 16);
}
static inline float _bfr(float f) { return _bf2f(_f2bf(f)); }
"""


def cl_type(d: DType) -> str:
  if d.name not in CL_TYPES:
    raise ValueError(f"OpenCL renderer: {d.name} is not supported on the device (Adreno OpenCL has no float64)")
  return CL_TYPES[d.name]


def literal(value, d: DType) -> str:
  if d.is_bool:
    return "true" if value else "false"
  if d.is_float:
    if value != value:
      text = "NAN"
    elif value in (float("inf"), float("-inf")):
      text = "INFINITY" if value > 0 else "(-INFINITY)"
    else:
      text = f"{float(value)!r}f"
    return f"((half){text})" if d == dtypes.float16 else text
  if d.is_unsigned:
    return f"{int(value)}UL" if d.itemsize == 8 else f"{int(value)}u"
  if d.itemsize == 8:
    return f"{int(value)}L" if value != -(1 << 63) else "(-9223372036854775807L-1)"
  return str(int(value)) if value != -(1 << 31) else "(-2147483647-1)"


def wrap(text: str, d: DType) -> str:
  """Results narrower than int, half and bfloat16 are rounded back to their type after every op."""
  if d.is_bool:
    return f"((bool){text})"
  if (d.is_int and d.itemsize < 4) or d == dtypes.float16:
    return f"(({cl_type(d)}){text})"
  if d == dtypes.bfloat16:
    return f"_bfr({text})"
  return text


class _Statement:
  """The expressions of one statement; nodes used more than once become named temporaries declared before it."""

  def __init__(self, r: CLRenderer, roots: list[Node]):
    self.r = r
    self.names: dict[int, str] = {}
    self.decls: list[str] = []
    uses: dict[int, int] = {}
    for root in roots:
      for n in root.toposort():
        for s in n.src:
          uses[id(s)] = uses.get(id(s), 0) + 1
    self.shared = {k for k, v in uses.items() if v > 1}

  def temp(self, n: Node, text: str) -> str:
    name = self.r.fresh("t")
    self.decls.append(f"{self.r.value_type(n)} {name} = {text};")
    return name

  def expr(self, n: Node) -> str:
    if id(n) in self.names:
      return self.names[id(n)]
    text = self._expr(n)
    if id(n) in self.shared and n.op not in (Ops.CONST, Ops.VAR, Ops.RANGE, Ops.DEFACC, Ops.PARAM, Ops.BLOCKREDUCE):
      text = self.temp(n, text)
    self.names[id(n)] = text
    return text

  def forced(self, n: Node) -> str:
    """n's value in a temporary (constants and variables stay inline)."""
    text = self.expr(n)
    return text if n.op is Ops.CONST or text.isidentifier() else self.temp(n, text)

  def _expr(self, n: Node) -> str:
    r = self.r
    if n.op is Ops.CONST:
      return literal(n.arg, n.dtype)
    if n.op is Ops.VAR:
      return f"var_{n.arg.name}"
    if n.op in (Ops.RANGE, Ops.DEFACC, Ops.BLOCKREDUCE):
      if id(n) not in r.vars:
        raise ValueError(f"OpenCL renderer: {n!r} is read outside the statement that defines it")
      return r.vars[id(n)]
    if n.op is Ops.THREADIDX:
      return f"((long)get_local_id({n.arg[0]}))"
    if n.op is Ops.BLOCKIDX:
      return f"((long)get_group_id({n.arg[0]}))"
    if n.op is Ops.GLOAD:
      return self.load(n)
    if n.op in (Ops.LANE, Ops.HREDUCE):
      raise ValueError(f"OpenCL renderer: {n.op.name} is CPU vector IR; lower with compiler.lower_gpu")
    return self.alu(n)

  def load(self, n: Node) -> str:
    p = self.r.param(n.src[0])
    idx = self.expr(n.src[1])
    if len(n.src) > 2:
      gate = self.expr(n.src[2])
      value = self.temp(n, self.stored(n.dtype, f"{p}[{gate} ? {idx} : 0]"))
      return f"({gate} ? {value} : {literal(0, n.dtype)})"
    return self.stored(n.dtype, f"{p}[{idx}]")

  def stored(self, d: DType, text: str) -> str:
    """A value read from a buffer, converted from its storage type."""
    if d == dtypes.bfloat16:
      return f"_bf2f({text})"
    if d.is_bool:
      return f"({text} != 0)"
    return text

  def alu(self, n: Node) -> str:
    d, op = n.dtype, n.op
    srcs = [self.expr(s) for s in n.src]
    if op is Ops.CAST:
      return cast(srcs[0], n.src[0].dtype, d)
    if op is Ops.BITCAST:
      return bitcast(srcs[0], n.src[0].dtype, d)
    if op is Ops.WHERE:
      a, b = self.forced(n.src[1]), self.forced(n.src[2])
      return f"({srcs[0]} ? {a} : {b})"
    if op is Ops.MAX:
      if d.is_float:
        return wrap(f"({srcs[0]} > {srcs[1]} || {srcs[0]} != {srcs[0]} ? {srcs[0]} : {srcs[1]})", d)
      return wrap(f"({srcs[0]} > {srcs[1]} ? {srcs[0]} : {srcs[1]})", d)
    if op in INFIX:
      if d.is_bool and op in (Ops.ADD, Ops.MUL):
        return f"({srcs[0]} {'|' if op is Ops.ADD else '&'} {srcs[1]})"
      return wrap(f"({srcs[0]} {INFIX[op]} {srcs[1]})", d)
    if op is Ops.NEG:
      return f"(!{srcs[0]})" if d.is_bool else wrap(f"(-({srcs[0]}))", d)
    if op is Ops.NOT:
      return f"(!{srcs[0]})" if d.is_bool else wrap(f"(~{srcs[0]})", d)
    if op is Ops.RECIP:
      return wrap(f"(1.0f / {srcs[0]})", d)
    if op in MATH:
      return wrap(f"{MATH[op]}((float){srcs[0]})", d) if d != dtypes.float32 else f"{MATH[op]}({srcs[0]})"
    if op in (Ops.IDIV, Ops.MOD):
      return self.divide(n, srcs)
    if op in (Ops.SHL, Ops.SHR):
      return wrap(f"(({srcs[1]}) >= {d.bits} ? 0 : {srcs[0]} {'<<' if op is Ops.SHL else '>>'} {srcs[1]})", d)
    raise ValueError(f"OpenCL renderer: no rendering for {op.name}")

  def divide(self, n: Node, srcs: list[str]) -> str:
    d, sym = n.dtype, "/" if n.op is Ops.IDIV else "%"
    divisor = n.src[1]
    if divisor.op is Ops.CONST and divisor.arg not in (0, -1):
      return wrap(f"({srcs[0]} {sym} {srcs[1]})", d)
    # x / 0 -> 0 (numpy's result); INT_MIN / -1 wraps instead of trapping (x % -1 -> 0)
    a, b = self.forced(n.src[0]), self.forced(divisor)
    minus = "" if d.is_unsigned else f"{b} == -1 ? {'-' if n.op is Ops.IDIV else '0*'}({a}) : "
    return wrap(f"({b} == 0 ? 0 : {minus}{a} {sym} {b})", d)


def cast(text: str, src: DType, dst: DType) -> str:
  if dst == dtypes.bfloat16:
    return f"_bfr((float)({text}))"
  if dst.is_bool:
    return f"(({text}) != 0)"
  return f"(({cl_type(dst)})({text}))"


def bitcast(text: str, src: DType, dst: DType) -> str:
  if src == dtypes.bfloat16:
    text, src = f"_f2bf({text})", dtypes.uint16
  if dst == dtypes.bfloat16:
    return f"_bf2f(as_ushort(({cl_type(src)})({text})))"
  if cl_type(src) == cl_type(dst):
    return f"(({cl_type(dst)})({text}))"
  return f"as_{cl_type(dst)}(({cl_type(src)})({text}))"


class CLRenderer:
  """Renders one KERNEL node; `render()` returns the OpenCL C source."""

  def __init__(self, kernel: Node):
    self.kernel = kernel
    self.info: GPUKernelInfo = kernel.arg
    self.vars: dict[int, str] = {}
    self.locals: list[str] = []
    self.counter = 0
    self.uses_half = False
    self.uses_bf16 = False

  def fresh(self, prefix: str) -> str:
    self.counter += 1
    return f"{prefix}{self.counter}"

  def param(self, p: Node) -> str:
    return f"p{p.arg}"

  def value_type(self, n: Node) -> str:
    return "long" if n.dtype == dtypes.int64 else cl_type(n.dtype)

  def statement(self, s: Node, depth: int) -> list[str]:
    pad = "  " * depth
    if s.op is Ops.LOOP:
      rng = s.src[0]
      name = self.fresh("r")
      self.vars[id(rng)] = name
      out = [f"{pad}for (long {name} = 0; {name} < {rng.arg[1]}; {name}++) {{"]
      for sub in s.src[1:]:
        out += self.statement(sub, depth + 1)
      return out + [f"{pad}}}"]
    if s.op is Ops.IF:
      st = _Statement(self, [s.src[0]])
      gate = st.expr(s.src[0])
      out = [pad + d for d in st.decls] + [f"{pad}if ({gate}) {{"]
      for sub in s.src[1:]:
        out += self.statement(sub, depth + 1)
      return out + [f"{pad}}}"]
    if s.op is Ops.DEFACC:
      name = self.fresh("acc")
      self.vars[id(s)] = name
      return [f"{pad}{self.acc_type(s.dtype)} {name} = {literal(s.src[0].arg, s.dtype)};"]
    if s.op is Ops.ACCUM:
      return self.accumulate(s, pad)
    if s.op is Ops.BLOCKREDUCE:
      return self.block_reduce(s, pad)
    if s.op is Ops.GSTORE:
      return self.store(s, pad)
    raise ValueError(f"OpenCL renderer: {s.op.name} is not a statement")

  def acc_type(self, d: DType) -> str:
    """Accumulators of half and bfloat16 are float (the PTX renderer does the same)."""
    return "float" if d in (dtypes.float16, dtypes.bfloat16) else cl_type(d)

  def combine(self, op: Ops, d: DType, a: str, b: str) -> str:
    if op is Ops.MAX:
      if d.is_float:
        return f"(({b}) > ({a}) || ({b}) != ({b}) ? ({b}) : ({a}))"
      return f"(({b}) > ({a}) ? ({b}) : ({a}))"
    if d.is_bool:
      return f"({a} {'|' if op is Ops.ADD else '&'} {b})"
    text = f"({a} {'+' if op is Ops.ADD else '*'} {b})"
    return f"(({cl_type(d)}){text})" if d.is_int and d.itemsize < 4 else text

  def accumulate(self, s: Node, pad: str) -> list[str]:
    acc, value = s.src
    st = _Statement(self, [value])
    v = st.expr(value)
    name = self.vars[id(acc)]
    return [pad + d for d in st.decls] + [f"{pad}{name} = {self.combine(s.arg, s.dtype, name, v)};"]

  def block_reduce(self, s: Node, pad: str) -> list[str]:
    """The accumulator folded over the workgroup: a tree over one __local slot per work-item."""
    threads = self.info.local_size[0]
    kind = self.acc_type(s.dtype)
    array, name = self.fresh("red"), self.fresh("blk")
    self.locals.append(f"  __local {kind} {array}[{threads}];")
    acc = self.vars[id(s.src[0])]
    self.vars[id(s)] = name
    top = 1 << max(threads - 1, 0).bit_length()
    step = self.fresh("s")
    mine = f"{array}[get_local_id(0)]"
    fold = self.combine(s.arg, s.dtype, mine, f"{array}[get_local_id(0) + {step}]")
    return [f"{pad}{mine} = {acc};",
            f"{pad}barrier(CLK_LOCAL_MEM_FENCE);",
            f"{pad}for (uint {step} = {top // 2}u; {step} > 0u; {step} >>= 1) {{",
            f"{pad}  if (get_local_id(0) < {step} && get_local_id(0) + {step} < {threads}u)",
            f"{pad}    {mine} = {fold};",
            f"{pad}  barrier(CLK_LOCAL_MEM_FENCE);",
            f"{pad}}}",
            f"{pad}{kind} {name} = {array}[0];",
            f"{pad}barrier(CLK_LOCAL_MEM_FENCE);"]

  def store(self, s: Node, pad: str) -> list[str]:
    p = self.param(s.src[0])
    st = _Statement(self, list(s.src[1:]))
    idx, v = st.expr(s.src[1]), st.expr(s.src[2])
    d = s.src[2].dtype
    if d == dtypes.bfloat16:
      v = f"_f2bf({v})"
    elif d.is_bool:
      v = f"(uchar)({v})"
    elif s.src[2].op in (Ops.DEFACC, Ops.BLOCKREDUCE) and d == dtypes.float16:
      v = f"(half)({v})"
    text = f"{p}[{idx}] = {v};"
    if len(s.src) > 3:
      text = f"if ({st.expr(s.src[3])}) {text}"
    return [pad + d for d in st.decls] + [pad + text]

  def render(self) -> str:
    info = self.info
    body: list[str] = []
    for s in self.kernel.src:
      body += self.statement(s, 1)
    for n in self.kernel.toposort():
      self.uses_half |= n.dtype == dtypes.float16
      self.uses_bf16 |= n.dtype == dtypes.bfloat16
    args = []
    for i, (d, written) in enumerate(info.params):
      cl_type(d)  # refuses float64 with the reason
      args.append(f"__global {'' if written else 'const '}{STORAGE[d.name]}* restrict p{i}")
    args += [f"int var_{v.name}" for v in info.vars]
    local = ", ".join(str(x) for x in info.local_size)
    head = ["#pragma OPENCL EXTENSION cl_khr_fp16 : enable"] if self.uses_half else []
    head += [PRELUDE_BF16] if self.uses_bf16 else []
    head += [f"__kernel __attribute__((reqd_work_group_size({local}))) void {info.name}({', '.join(args)}) {{"]
    return "\n".join(head + self.locals + body + ["}"]) + "\n"


def render_cl(kernel: Node) -> tuple[str, str, GPUKernelInfo]:
  """(kernel name, OpenCL C source, launch info) for a KERNEL from compiler.lower_gpu.lower_gpu."""
  if not isinstance(kernel.arg, GPUKernelInfo):
    raise ValueError(f"render_cl needs a kernel from compiler.lower_gpu.lower_gpu, got {type(kernel.arg).__name__}")
  return kernel.arg.name, CLRenderer(kernel).render(), kernel.arg
