"""C renderer: a loop-level KERNEL to one C function for GCC or Clang.

Signature: `void NAME(p0, p1, ..., long long start, long long end)`; the outermost loop runs [start, end) so a
runtime can split it across threads. Values that depend on the LANE variable are GCC vector-extension values of
LANES float32 (one register of the host: compiler.lower.host_lanes); a lane-dependent op C cannot express on vectors
is computed lane by lane. bfloat16 is stored as its 16 raw bits and computed in float; float16 is `_Float16`, and a
vector load of float16 converts to LANES float32 at once (`_ldh` in LDH_PRELUDE: one vcvtph2ps under AVX-512F, or
F16C for 8 lanes), so float16 weights feed a float32 reduction at vector speed.
"""
from __future__ import annotations

from compiler import symbolic as sym
from compiler.dtypes import DType, dtypes
from compiler.ir import COMPARISON, Node, Ops
from compiler.lower import LANES, KernelInfo

C_TYPES = {"bool": "_Bool", "int8": "signed char", "uint8": "unsigned char", "int16": "short",
           "uint16": "unsigned short", "int32": "int", "uint32": "unsigned int", "int64": "long long",
           "uint64": "unsigned long long", "float16": "_Float16", "bfloat16": "unsigned short", "float32": "float",
           "float64": "double"}

PRELUDE = f"""#include <math.h>
#include <string.h>
typedef float vf32 __attribute__((vector_size({LANES * 4}), aligned(4)));
typedef int vi32 __attribute__((vector_size({LANES * 4}), aligned(4)));
typedef unsigned char vu8 __attribute__((vector_size({LANES}), aligned(1)));  /* LANES stored booleans */
static inline float _bf2f(unsigned short b) {{
  unsigned int u = (unsigned int)b << 16; float f; memcpy(&f, &u, 4); return f;
}}
static inline unsigned short _f2bf(float f) {{
  unsigned int u; memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (unsigned short)(u >> 16);
}}
static inline vf32 _vmax(vf32 a, vf32 b) {{
  vi32 m = (a > b) | (a != a); return (vf32)(((vi32)a & m) | ((vi32)b & ~m));
}}
static inline float _hsum(vf32 a) {{ float s = 0.0f; for (int i = 0; i < {LANES}; i++) s += a[i]; return s; }}
static inline float _hmax(vf32 a) {{
  float s = a[0]; for (int i = 1; i < {LANES}; i++) s = (a[i] > s || a[i] != a[i]) ? a[i] : s; return s;
}}
static inline float _hprod(vf32 a) {{
  float s = 1.0f; for (int i = 0; i < {LANES}; i++) s *= a[i]; return s;
}}
"""

PRELUDE += r"""/* 2^x as 2^round(x) * p(x - round(x)): p is the degree-7 Taylor polynomial of 2^f on [-0.5, 0.5]
   (relative
   error < 2e-7); the power of two is applied in two halves so results down to 2^-149 stay exact; NaN passes. */
#define _EXP2_POLY(f) (1.0f + f * (0.6931471805599453f + f * (0.2402265069591007f + f * (0.05550410866482158f + \
  f * (0.009618129107628477f + f * (0.0013333558146428443f + f * (0.00015403530393381606f + \
  f * 1.525273380405984e-05f)))))))
static inline float _exp2s(float x) {
  float xc = x < -150.0f ? -150.0f : (x > 129.0f ? 129.0f : x);
  float r = (xc + 12582912.0f) - 12582912.0f;
  float f = xc - r;
  int n = (int)r, n1 = n >> 1, n2 = n - n1;
  unsigned int b1 = (unsigned int)(n1 + 127) << 23, b2 = (unsigned int)(n2 + 127) << 23;
  float s1, s2; memcpy(&s1, &b1, 4); memcpy(&s2, &b2, 4);
  float out = _EXP2_POLY(f) * s1 * s2;
  return x != x ? x : out;
}
static inline vf32 _vsel(vi32 m, vf32 a, vf32 b) { return (vf32)((m & (vi32)a) | (~m & (vi32)b)); }
static inline vf32 _vexp2(vf32 x) {
  vf32 lo = (vf32){0} - 150.0f, hi = (vf32){0} + 129.0f;
  vf32 xc = _vsel(x < lo, lo, _vsel(x > hi, hi, x));
  vf32 r = (xc + 12582912.0f) - 12582912.0f;
  vf32 f = xc - r;
  vi32 n = __builtin_convertvector(r, vi32), n1 = n >> 1, n2 = n - n1;
  vf32 s1 = (vf32)((n1 + 127) << 23), s2 = (vf32)((n2 + 127) << 23);
  vf32 out = _EXP2_POLY(f) * s1 * s2;
  return _vsel(x != x, x, out);
}
"""

_MATH_F = {Ops.SQRT: "sqrt", Ops.EXP2: "exp2", Ops.LOG2: "log2", Ops.SIN: "sin", Ops.TRUNC: "trunc"}
_INFIX = {Ops.ADD: "+", Ops.SUB: "-", Ops.MUL: "*", Ops.FDIV: "/", Ops.CMPLT: "<", Ops.CMPNE: "!=", Ops.CMPEQ: "==",
          Ops.AND: "&", Ops.OR: "|", Ops.XOR: "^"}


def ctype(d: DType) -> str:
  return C_TYPES[d.name]


def compute_type(d: DType) -> str:
  """The C type a value of dtype d is held in while computing (bfloat16 computes in float)."""
  return "float" if d == dtypes.bfloat16 else ctype(d)


def c_literal(value, d: DType) -> str:
  if d.is_bool:
    return "1" if value else "0"
  if d.is_float:
    if value != value:
      return "NAN"
    if value in (float("inf"), float("-inf")):
      return "INFINITY" if value > 0 else "(-INFINITY)"
    text = repr(float(value))
    if d == dtypes.float64:
      return text
    return f"(({compute_type(d)}){text}f)" if d != dtypes.float32 else f"{text}f"
  if d.is_unsigned:
    return f"{int(value)}ull" if d.itemsize == 8 else f"{int(value)}u"
  if d.itemsize == 8:
    return f"{int(value)}ll" if value != -(1 << 63) else "(-9223372036854775807ll-1)"
  return str(int(value)) if value != -(1 << 31) else "(-2147483647-1)"


# only in kernels that load float16 vectors: immintrin.h would add ~0.3 s to every kernel's compile
LDH_PRELUDE = f"""typedef _Float16 vf16 __attribute__((vector_size({LANES * 2}), aligned(2)));
#if defined(__AVX512F__) && {LANES} == 16
#include <immintrin.h>
static inline vf32 _ldh(const _Float16* p) {{ return (vf32)_mm512_cvtph_ps(_mm256_loadu_si256((const void*)p)); }}
#elif defined(__F16C__) && {LANES} == 8
#include <immintrin.h>
static inline vf32 _ldh(const _Float16* p) {{ return (vf32)_mm256_cvtph_ps(_mm_loadu_si128((const void*)p)); }}
#else /* GCC 12 converts a vf16 lane by lane; with AVX-512F (F16C for 8 lanes) one vcvtph2ps does them all */
static inline vf32 _ldh(const _Float16* p) {{ return __builtin_convertvector(*(const vf16*)p, vf32); }}
#endif
"""


class _Statement:
  """Renders the expressions of one statement, naming nodes used more than once."""

  def __init__(self, r: CRenderer, roots: list[Node]):
    self.r = r
    self.names: dict[int, str] = {}
    self.decls: list[str] = []
    uses: dict[int, int] = {}
    for root in roots:
      for n in root.toposort():
        for s in n.src:
          uses[id(s)] = uses.get(id(s), 0) + 1
    self.shared = {k for k, v in uses.items() if v > 1}

  def expr(self, n: Node) -> str:
    if id(n) in self.names:
      return self.names[id(n)]
    text = self._expr(n)
    trivial = n.op in (Ops.CONST, Ops.RANGE, Ops.LANE, Ops.DEFACC, Ops.PARAM, Ops.VAR)
    if id(n) in self.shared and not trivial:
      name = self.r.fresh("t")
      self.decls.append(f"{self.r.value_type(n)} {name} = {text};")
      self.names[id(n)] = name
      return name
    return text

  def _expr(self, n: Node) -> str:
    r = self.r
    if n.op is Ops.CONST:
      return c_literal(n.arg, n.dtype)
    if n.op is Ops.VAR:
      return var_param(n.arg)
    if n.op in (Ops.RANGE, Ops.DEFACC):
      return r.var_names[id(n)]
    if n.op is Ops.LANE:
      raise ValueError("a LANE must be consumed by a vector load, store or lane-by-lane op")
    if n.op is Ops.GLOAD:
      return self._load(n)
    if n.op is Ops.HREDUCE:
      fn = {Ops.ADD: "_hsum", Ops.MAX: "_hmax", Ops.MUL: "_hprod"}[n.arg]
      return f"{fn}({self.expr(n.src[0])})"
    if r.is_vector(n) and not _vector_ok(n):
      return self._per_lane(n)
    return self._alu(n)

  def force_temp(self, n: Node, text: str) -> str:
    """text evaluated into a named temporary before the statement (constants and variables stay inline)."""
    if n.op in (Ops.CONST, Ops.RANGE, Ops.DEFACC) or text.isidentifier():
      return text
    name = self.r.fresh("t")
    self.decls.append(f"{self.r.value_type(n)} {name} = {text};")
    return name

  def _alu(self, n: Node) -> str:
    d = n.dtype
    vec = self.r.is_vector(n)
    srcs = [self.expr(s) for s in n.src]
    op = n.op
    if vec and (d.is_bool or op is Ops.WHERE or (op is Ops.CAST and n.src[0].dtype.is_bool)):
      return self._vector_mask_op(n, srcs)
    if op is Ops.CAST:
      if vec:  # float16 vector loads are already float32 lanes (_vector_ok admits only that cast)
        return srcs[0]
      return _cast(srcs[0], n.src[0].dtype, d)
    if op is Ops.BITCAST:
      return _bitcast(srcs[0], n.src[0].dtype, d)
    if op is Ops.WHERE:
      # branches are evaluated into temporaries first: gcc 12.2 -O3 miscompiles if-converted `c ? p[i] : 0` loops
      # (a select with a load inside; reproduced standalone), and evaluating both sides here is always safe
      a, b = (self.force_temp(n.src[i], srcs[i]) for i in (1, 2))
      return f"({srcs[0]} ? {a} : {b})"
    if op is Ops.MAX:
      if vec:
        return f"_vmax({_vec(srcs[0], n.src[0], self.r)}, {_vec(srcs[1], n.src[1], self.r)})"
      if d.is_bool:
        # or, not a compare-and-select: GCC 12.2 -O3 vectorizes a loop of `b > acc ? b : acc` over _Bool with a
        # signed vpmaxsd of all-ones masks, so max(true, false) came out false (Tensor.all on an AVX2 host)
        return f"({srcs[0]} | {srcs[1]})"
      return _wrap(f"({srcs[0]} > {srcs[1]} || {srcs[0]} != {srcs[0]} ? {srcs[0]} : {srcs[1]})", d)
    if op in _INFIX:
      if d.is_bool and op in (Ops.ADD, Ops.MUL):
        return f"({srcs[0]} {'|' if op is Ops.ADD else '&'} {srcs[1]})"
      return _wrap(f"({srcs[0]} {_INFIX[op]} {srcs[1]})", d)
    if op is Ops.NEG:
      return f"(!{srcs[0]})" if d.is_bool else _wrap(f"(-({srcs[0]}))", d)
    if op is Ops.NOT:
      return f"(!{srcs[0]})" if d.is_bool else _wrap(f"(~{srcs[0]})", d)
    if op is Ops.RECIP:
      return _wrap(f"(1.0f / {srcs[0]})" if d != dtypes.float64 else f"(1.0 / {srcs[0]})", d)
    if op is Ops.EXP2 and d != dtypes.float64:
      if vec:
        return f"_vexp2({srcs[0]})"
      return _wrap(f"_exp2s({srcs[0] if d in (dtypes.float32, dtypes.bfloat16) else f'(float){srcs[0]}'})", d)
    if op in _MATH_F:
      fn = _MATH_F[op] + ("" if d == dtypes.float64 else "f")
      arg = srcs[0] if d in (dtypes.float32, dtypes.float64, dtypes.bfloat16) else f"(float){srcs[0]}"
      return _wrap(f"{fn}({arg})", d)
    if op in (Ops.IDIV, Ops.MOD):
      sym_ = "/" if op is Ops.IDIV else "%"
      if n.src[1].op is Ops.CONST and n.src[1].arg > 0:  # index math (a view's unravel) divides by shape constants
        return f"({srcs[0]} {sym_} {srcs[1]})"
      # guards: x/0 -> 0 (numpy's result), INT_MIN / -1 wraps instead of trapping
      guard = f"({srcs[1]} == 0 ? 0 : " + (f"{srcs[1]} == -1 ? " if not d.is_unsigned else "")
      minus = (f"({'-' if op is Ops.IDIV else '0*'}({srcs[0]})) : " if not d.is_unsigned else "")
      return _wrap(f"{guard}{minus}{srcs[0]} {sym_} {srcs[1]})", d)
    if op in (Ops.SHL, Ops.SHR):
      sym_ = "<<" if op is Ops.SHL else ">>"
      return _wrap(f"(({srcs[1]}) >= {d.bits} ? 0 : {srcs[0]} {sym_} {srcs[1]})", d)
    raise ValueError(f"C renderer: no rendering for {op.name}")

  def _vector_mask_op(self, n: Node, srcs: list[str]) -> str:
    """Lane-dependent booleans are vi32 masks (all bits set for true), as GCC's vector comparisons give them:
    comparisons of float32 lanes, logic on masks, a select by a mask, a mask cast to float32 (1.0 or 0.0)."""
    op, r = n.op, self.r
    if op in COMPARISON:
      return f"({_vec(srcs[0], n.src[0], r)} {_INFIX[op]} {_vec(srcs[1], n.src[1], r)})"
    if op is Ops.WHERE:
      return f"_vsel({_mask(srcs[0], n.src[0], r)}, {_vec(srcs[1], n.src[1], r)}, {_vec(srcs[2], n.src[2], r)})"
    if op is Ops.CAST:  # true lanes are -1: negated, 1
      return f"__builtin_convertvector(-({srcs[0]}), vf32)"
    if op in (Ops.NEG, Ops.NOT):
      return f"(~{srcs[0]})"
    logic = {Ops.ADD: "|", Ops.OR: "|", Ops.MAX: "|", Ops.MUL: "&", Ops.AND: "&", Ops.XOR: "^"}[op]
    return f"({_mask(srcs[0], n.src[0], r)} {logic} {_mask(srcs[1], n.src[1], r)})"

  def _load(self, n: Node) -> str:
    r = self.r
    p = r.param_name(n.src[0])
    idx = n.src[1]
    gate = self.expr(n.src[2]) if len(n.src) > 2 else None
    if r.is_vector(idx):
      coeff, base = _lane_split(idx)
      if coeff == 1:
        if gate is None:
          return _vload(r, p, self.expr(base), n.dtype)
        value = self.force_temp(n, _vload(r, p, f"({gate} ? {self.expr(base)} : 0)", n.dtype))
        return f"({gate} ? {value} : ({'vi32' if n.dtype.is_bool else 'vf32'}){{0}})"
      return self._per_lane(n)
    if gate is None:
      text = f"{p}[{self.expr(idx)}]"
      return f"_bf2f({text})" if n.dtype == dtypes.bfloat16 else text
    # a gated load reads a valid address either way (index 0 when the gate is off), then selects: no load sits
    # inside a conditional (see WHERE above)
    text = f"{p}[{gate} ? {self.expr(idx)} : 0]"
    value = self.force_temp(n, f"_bf2f({text})" if n.dtype == dtypes.bfloat16 else text)
    return f"({gate} ? {value} : {c_literal(0, n.dtype)})"

  def _per_lane(self, n: Node) -> str:
    """A lane-dependent value built lane by lane: (vf32){f(lane=0), f(lane=1), ...}."""
    lanes = []
    for lane in range(LANES):
      mapping = {self.r.lane: sym.iconst(lane)}
      scalar = sym.substitute(n, mapping)
      sub = _Statement(self.r, [scalar])
      lanes.append(sub.expr(scalar))
      self.decls.extend(sub.decls)
    if n.dtype.is_bool:  # a mask: -1 where true
      return "((vi32){" + ", ".join(f"-(int){lane}" for lane in lanes) + "})"
    return "((vf32){" + ", ".join(lanes) + "})"


def _vector_ok(n: Node) -> bool:
  if n.dtype.is_bool:  # vi32 masks (_vector_mask_op): comparisons of float32 lanes and logic on masks
    if n.op in COMPARISON:
      return n.src[0].dtype == dtypes.float32
    return n.op in (Ops.ADD, Ops.MUL, Ops.MAX, Ops.AND, Ops.OR, Ops.XOR, Ops.NEG, Ops.NOT)
  if n.op is Ops.WHERE:
    return n.dtype == dtypes.float32
  if n.op is Ops.CAST and n.src[0].dtype.is_bool:
    return n.dtype == dtypes.float32
  if n.op in (Ops.ADD, Ops.SUB, Ops.MUL, Ops.FDIV, Ops.NEG, Ops.MAX, Ops.RECIP, Ops.EXP2):
    return n.dtype == dtypes.float32
  if n.op is Ops.CAST:  # float16 loaded as vectors is held widened (_vload): its cast to float32 is the value itself
    return n.dtype == dtypes.float32 and n.src[0].dtype == dtypes.float16 and n.src[0].op is Ops.GLOAD
  return n.op in (Ops.GLOAD, Ops.HREDUCE)


def _vload(r: CRenderer, p: str, offset: str, d: DType) -> str:
  """LANES consecutive elements of buffer p from offset, as vf32 (float16 lanes converted by _ldh), or booleans (one
  byte each) as a vi32 mask."""
  if d.is_bool:
    return f"(__builtin_convertvector(*(const vu8*)({p} + {offset}), vi32) != 0)"
  if d != dtypes.float16:
    return f"(*(const vf32*)({p} + {offset}))"
  r.uses_ldh = True
  return f"_ldh({p} + {offset})"


def _vec(text: str, n: Node, r: CRenderer) -> str:
  return text if r.is_vector(n) else f"((vf32){{0}} + {text})"


def _mask(text: str, n: Node, r: CRenderer) -> str:
  """A boolean as a vi32 mask: a lane-dependent one already is; a scalar one is broadcast (-1 for true)."""
  return text if r.is_vector(n) else f"((vi32){{0}} - (int)({text}))"


def _lane_split(idx: Node) -> tuple[int, Node]:
  terms, c = sym.linear_terms(idx)
  coeff = 0
  rest = {}
  for t, k in terms.items():
    if t.op is Ops.LANE:
      coeff = k
    else:
      rest[t] = k
  return coeff, sym.from_terms(rest, c)


def _wrap(text: str, d: DType) -> str:
  """Results narrower than int are cast back so C's integer promotion never leaks into the next op."""
  if d.is_bool:
    return f"((_Bool){text})"
  if d.is_int and d.itemsize < 4 or d == dtypes.float16:
    return f"(({ctype(d)}){text})"
  if d == dtypes.bfloat16:
    return f"_bf2f(_f2bf({text}))"
  return text


def _cast(text: str, src: DType, dst: DType) -> str:
  if dst == dtypes.bfloat16:
    return f"_bf2f(_f2bf((float){text}))"
  if dst.is_bool:
    return f"((_Bool)({text}))"
  return f"(({ctype(dst)})({text}))"


def _bitcast(text: str, src: DType, dst: DType) -> str:
  if src == dtypes.bfloat16:
    text, src = f"_f2bf({text})", dtypes.uint16
  if dst == dtypes.bfloat16:
    return f"_bf2f(({ctype(dtypes.uint16)})({_bitcast(text, src, dtypes.uint16)}))"
  if src == dst or ctype(src) == ctype(dst):
    return f"(({ctype(dst)})({text}))"
  return f"({{ {ctype(src)} _i = {text}; {ctype(dst)} _o; memcpy(&_o, &_i, sizeof(_o)); _o; }})"


def var_param(var) -> str:
  """The C parameter name of a Variable (prefixed: a Variable may be named like a C keyword or a temporary)."""
  return f"var_{var.name}"


class CRenderer:
  """Renders KERNEL nodes to C source text."""

  def __init__(self):
    self.var_names: dict[int, str] = {}
    self.params: dict[int, str] = {}
    self.vector_memo: dict[int, bool] = {}
    self.lane: Node | None = None
    self.counter = 0
    self.uses_ldh = False  # a float16 vector load: the kernel needs LDH_PRELUDE

  def fresh(self, prefix: str) -> str:
    self.counter += 1
    return f"{prefix}{self.counter}"

  def param_name(self, p: Node) -> str:
    return f"p{p.arg}"

  def is_vector(self, n: Node) -> bool:
    got = self.vector_memo.get(id(n))
    if got is None:
      if n.op is Ops.LANE:
        self.lane = n
        got = True
      elif n.op is Ops.DEFACC:
        got = n.arg[1] > 1
      elif n.op is Ops.HREDUCE:
        got = False
      else:
        got = any(self.is_vector(s) for s in n.src)
      self.vector_memo[id(n)] = got
    return got

  def value_type(self, n: Node) -> str:
    if self.is_vector(n):
      return "vi32" if n.dtype.is_bool else "vf32"
    if n.dtype == dtypes.index:
      return "long long"
    return compute_type(n.dtype)

  def render(self, kernel: Node) -> tuple[str, str]:
    """Returns (function name, C source)."""
    info: KernelInfo = kernel.arg
    args = []
    for i, (d, written) in enumerate(info.params):
      qual = "" if written else "const "
      args.append(f"{qual}{ctype(d)}* restrict p{i}")
    args += [f"int {var_param(v)}" for v in info.vars]
    args += ["long long start", "long long end"]
    lines = [PRELUDE, f"void {info.name}({', '.join(args)}) {{"]
    self.parallel = info.parallel
    for s in kernel.src:
      lines.extend(self.statement(s, 1))
    lines.append("}")
    if self.uses_ldh:
      lines.insert(1, LDH_PRELUDE)
    return info.name, "\n".join(lines) + "\n"

  def statement(self, s: Node, depth: int) -> list[str]:
    pad = "  " * depth
    if s.op is Ops.LOOP:
      rng = s.src[0]
      name = self.fresh("i" if rng.arg[0].startswith("i") else "r")
      self.var_names[id(rng)] = name
      if rng.arg[0] == self.parallel:
        head = f"for (long long {name} = start; {name} < end; {name}++) {{"
      else:
        head = f"for (long long {name} = 0; {name} < {rng.arg[1]}; {name}++) {{"
      out = [pad + head]
      for sub in s.src[1:]:
        out.extend(self.statement(sub, depth + 1))
      return out + [pad + "}"]
    if s.op is Ops.DEFACC:
      name = self.fresh("acc")
      self.var_names[id(s)] = name
      st = _Statement(self, [s.src[0]])
      init = st.expr(s.src[0])
      if s.arg[1] > 1:
        return [pad + f"vf32 {name} = (vf32){{0}} + {init};"]
      return [pad + f"{compute_type(s.dtype)} {name} = {init};"]
    if s.op is Ops.ACCUM:
      acc, value = s.src
      st = _Statement(self, [value])
      v = st.expr(value)
      name = self.var_names[id(acc)]
      if s.arg is Ops.ADD or (s.arg is Ops.MAX and s.dtype.is_bool):  # max of booleans is or: see _alu's MAX
        upd = f"{name} = {name} | {v};" if s.dtype.is_bool else f"{name} += {v};"
      elif s.arg is Ops.MUL:
        upd = f"{name} = {name} & {v};" if s.dtype.is_bool else f"{name} *= {v};"
      elif self.is_vector(acc):
        upd = f"{name} = _vmax({name}, {_vec(v, value, self)});"
      else:
        upd = f"{name} = ({v} > {name} || {v} != {v}) ? {v} : {name};"
      if s.dtype.is_int and s.dtype.itemsize < 4 and s.arg is not Ops.MAX:
        upd = upd.replace(f"{name} {'+' if s.arg is Ops.ADD else '*'}= {v};",
                          f"{name} = ({ctype(s.dtype)})({name} {'+' if s.arg is Ops.ADD else '*'} {v});")
      return [pad + d for d in st.decls] + [pad + upd]
    if s.op is Ops.GSTORE:
      return self._store(s, pad)
    raise ValueError(f"C renderer: {s.op.name} is not a statement")

  def _store(self, s: Node, pad: str) -> list[str]:
    p = self.param_name(s.src[0])
    idx, value = s.src[1], s.src[2]
    st = _Statement(self, list(s.src[1:]))
    v = st.expr(value)
    if self.is_vector(value) or self.is_vector(idx):
      coeff, base = _lane_split(idx)
      vec = _vec(v, value, self)
      if coeff == 1:
        text = f"*(vf32*)({p} + {st.expr(base)}) = {vec};"
      else:  # a strided vector store, lane by lane
        tmp = self.fresh("v")
        b = st.expr(base)
        lanes = " ".join(f"{p}[{b} + {lane * coeff}ll] = {tmp}[{lane}];" for lane in range(LANES))
        text = f"{{ vf32 {tmp} = {vec}; {lanes} }}"
    else:
      if s.dtype == dtypes.bfloat16:
        v = f"_f2bf({v})"
      text = f"{p}[{st.expr(idx)}] = {v};"
    if len(s.src) > 3:
      text = f"if ({st.expr(s.src[3])}) {text}"
    return [pad + d for d in st.decls] + [pad + text]


def render(kernel: Node) -> tuple[str, str]:
  return CRenderer().render(kernel)
