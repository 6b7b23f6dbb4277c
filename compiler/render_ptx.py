"""PTX renderer: a GPU loop program (compiler/lower_gpu.py) to PTX text for sm_90 (`.version 8.0`).

Entry: `.visible .entry NAME(.param .u64 p0, ...)`, one u64 global address per buffer PARAM in PARAM order (the C
renderer's order), then one `.param .s32` per Variable of the kernel (GPUKernelInfo.vars, loaded once at entry),
`.maxntid` = the block size. Statements map one to one: LOOP is a counted do-while loop (extents are >= 1), IF a
branch around its statements, DEFACC/ACCUM a mutable register, BLOCKREDUCE a warp butterfly (shfl.sync.bfly) then
one shared-memory slot per warp, a barrier, and a second butterfly in every warp.

Registers by dtype: bool %p (.pred), int8..uint32 %r (.b32; 8/16-bit values kept sign- or zero-extended and
re-normalized after each op that can overflow, so they wrap like C's), int64/uint64 %rd (.b64), float16/bfloat16
%h (.b16), float32 %f, float64 %fd. Index arithmetic (int64 by type) runs in 32 bits wherever the value bounds of
compiler/symbolic.py prove every intermediate fits in int32 (addresses then use mad.wide.s32), else in 64 bits.

Accuracy against the C renderer: + - * (float32/64 may be contracted to fma by ptxas, as gcc -O3 does), /, sqrt and
reciprocal are IEEE round-to-nearest (div.rn, sqrt.rn, rcp.rn); exp2 of float32/16 uses ex2.approx.f32 (at most
2 ulp, subnormal results kept: no .ftz); log2 and sin of every float type and exp2 of float64 are computed in
float64 by compiler/ptx_math.py. float16/bfloat16 add, sub, mul, neg, max and compares are native (.rn, exact per
op); other float16/bfloat16 ops run in float32 and round once. Reductions of float16/bfloat16 accumulate in float32
(C keeps bfloat16 accumulators in float too). Casts follow C on x86-64 for in-range values; float -> int of
out-of-range values saturates here (C leaves it undefined; x86 gives INT_MIN).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile

from compiler import ptx_alu
from compiler import symbolic as sym
from compiler.dtypes import dtypes
from compiler.ir import Node, Ops, reduce_identity
from compiler.lower_gpu import INT32_MAX, INT32_MIN, WARP, GPUKernelInfo, loop_invariants, narrow_int64
from compiler.ptx_alu import BITS, FTYPE, HALVES, MEM_TYPE, REG_DECL, acc_dtype, float_literal, reg_class

PTX_VERSION = "8.0"
TARGET = "sm_90"


class PTXRenderer:
  """Renders one KERNEL node; `render()` returns the PTX module text."""

  def __init__(self, kernel: Node):
    self.kernel = kernel
    self.info: GPUKernelInfo = kernel.arg
    self.lines: list[str] = []
    self.counts = {c: 0 for c in REG_DECL}
    self.scopes: list[dict] = [{}]  # per open LOOP/IF: node or structural key -> register (nodes
    # are keys, not their ids: an id of a node freed meanwhile could come back for another node)
    self.vars: dict[Node, str] = {}  # RANGE, DEFACC, BLOCKREDUCE -> register
    self.params: dict[int, str] = {}  # PARAM index -> global address register
    self.var_regs: dict = {}  # Variable -> the register holding its value
    self.shared: list[str] = []
    self.globals: dict[str, str] = {}  # module-scope symbol -> declaration (tables of compiler/ptx_math.py)
    self.narrow_memo: dict[Node, bool] = {}
    self.labels = 0

  # ---- registers, scopes, text ----------------------------------------------------------------------------------
  def new(self, cls: str) -> str:
    self.counts[cls] += 1
    return f"%{cls}{self.counts[cls]}"

  def emit(self, line: str) -> None:
    self.lines.append("  " + line)

  def label(self) -> str:
    self.labels += 1
    return f"$L{self.labels}"

  def label_here(self, name: str) -> None:
    self.lines.append(f"{name}:")

  def lookup(self, key):
    for scope in reversed(self.scopes):
      if key in scope:
        return scope[key]
    return None

  def narrow(self, n: Node) -> bool:
    """An int64 index value computed in 32 bits (compiler.lower_gpu.narrow_int64)."""
    return narrow_int64(n, sym.bounds, self.narrow_memo)

  def cls(self, n: Node) -> str:
    return "r" if self.narrow(n) else reg_class(n.dtype)

  # ---- values -----------------------------------------------------------------------------------------------------
  def reg(self, n: Node) -> str:
    """The register holding node n's value, emitting the instructions that compute it (once per scope; nodes with
    equal op, dtype, arg and source registers share one register)."""
    got = self.lookup(n)
    if got is not None:
      return got
    if n.op in (Ops.RANGE, Ops.DEFACC, Ops.BLOCKREDUCE):
      out = self.read_var(n)
    else:
      if n.op is Ops.GLOAD:
        gate = self.reg(n.src[2]) if len(n.src) > 2 else None
        key = (Ops.GLOAD, n.dtype, self.address(n.src[0], n.src[1]), gate)
      else:
        key = (n.op, n.dtype, repr(n.arg), self.narrow(n), tuple(self.src_key(s) for s in n.src))
      out = self.lookup(key)
      if out is None:
        out = self.load(n.dtype, key[2], key[3]) if n.op is Ops.GLOAD else self.compute(n)
        self.scopes[-1][key] = out
    self.scopes[-1][n] = out
    return out

  def src_key(self, s: Node):
    """A source in a structural key: constants by value (they may become immediates, never registers)."""
    if s.op is Ops.CONST:
      return (Ops.CONST, s.dtype, repr(s.arg), self.narrow(s))
    return self.reg(s)

  def read_var(self, n: Node) -> str:
    if n not in self.vars:
      raise ValueError(f"PTX renderer: {n!r} is read outside the statement that defines it")
    r = self.vars[n]
    if n.dtype in HALVES and n.op is not Ops.RANGE:
      out = self.new("h")
      self.emit(f"cvt.rn.{FTYPE[n.dtype.name]}.f32 {out}, {r};")
      return out
    return r

  def as_cls(self, n: Node, cls: str) -> str:
    """n's register converted between 32 and 64 bits (int64 values computed narrow) when cls asks for the other."""
    r = self.reg(n)
    have = self.cls(n)
    if have == cls:
      return r
    key = ("widen" if cls == "rd" else "trunc", r)
    got = self.lookup(key)
    if got is None:
      got = self.new(cls)
      self.emit(f"cvt.s64.s32 {got}, {r};" if cls == "rd" else f"cvt.u32.u64 {got}, {r};")
      self.scopes[-1][key] = got
    return got

  def operand(self, n: Node, cls: str) -> str:
    """An integer operand: a literal for a constant that fits in 32 bits, else a register of class cls."""
    if n.op is Ops.CONST and n.dtype.is_int and INT32_MIN <= n.arg <= INT32_MAX:
      return str(n.arg)
    return self.as_cls(n, cls) if n.dtype == dtypes.int64 else self.reg(n)

  def compute(self, n: Node) -> str:
    op = n.op
    if op is Ops.CONST:
      return ptx_alu.const(self, n.arg, n.dtype, self.cls(n))
    if op in (Ops.THREADIDX, Ops.BLOCKIDX):
      out = self.new("r")
      special = "%tid" if op is Ops.THREADIDX else "%ctaid"
      self.emit(f"mov.u32 {out}, {special}.{'xyz'[n.arg[0]]};")
      return out
    if op is Ops.PARAM:
      return self.params[n.arg]
    if op is Ops.VAR:
      return self.var_regs[n.arg]
    if op is Ops.CAST:
      if self.narrow(n):  # an int64 index computed in 32 bits: the source widened to int32 at most
        return ptx_alu.cast(self, self.reg(n.src[0]), n.src[0].dtype, dtypes.int32)
      return ptx_alu.cast(self, self.wide_reg(n.src[0]), n.src[0].dtype, n.dtype)
    if op is Ops.BITCAST:
      return ptx_alu.bitcast(self, self.wide_reg(n.src[0]), n.src[0].dtype, n.dtype)
    if op in (Ops.LANE, Ops.HREDUCE):
      raise ValueError(f"PTX renderer: {op.name} is CPU vector IR; lower with compiler.lower_gpu")
    return ptx_alu.alu(self, n)

  def wide_reg(self, n: Node) -> str:
    return self.as_cls(n, "rd") if n.dtype == dtypes.int64 else self.reg(n)

  # ---- memory -----------------------------------------------------------------------------------------------------
  def address(self, param: Node, idx: Node) -> str:
    """[base + idx*itemsize] with a constant part of idx folded into the immediate offset."""
    size = param.dtype.itemsize
    terms, c = sym.linear_terms(idx)
    if not INT32_MIN <= c * size <= INT32_MAX:
      terms, c = {idx: 1}, 0
    base = self.reg(param)
    if terms:
      var = sym.from_terms(terms, 0)
      offset = self.reg(var) if self.narrow(var) else self.as_cls(var, "rd")
      key = ("address", base, offset, size)
      addr = self.lookup(key)
      if addr is None:
        addr = self.new("rd")
        wide = "wide.s32" if self.narrow(var) else "lo.s64"
        self.emit(f"mad.{wide} {addr}, {offset}, {size}, {base};")
        self.scopes[-1][key] = addr
      base = addr
    return f"[{base}+{c * size}]" if c else f"[{base}]"

  def load(self, d, addr: str, gate: str | None) -> str:
    out = self.new("r" if d.is_bool else reg_class(d))
    guard = ""
    if gate is not None:  # gated: 0 where the gate is off, and no memory access there
      guard = f"@{gate} "
      zero = float_literal(0.0, d) if d in (dtypes.float32, dtypes.float64) else "0"
      self.emit(f"mov.{'b32' if d.is_bool else BITS[reg_class(d)]} {out}, {zero};")
    self.emit(f"{guard}ld.global.{MEM_TYPE[d.name]} {out}, {addr};")
    if d.is_bool:
      p = self.new("p")
      self.emit(f"setp.ne.u32 {p}, {out}, 0;")
      return p
    return out

  def store(self, s: Node) -> None:
    param, idx, value = s.src[:3]
    d = value.dtype
    v = self.wide_reg(value)
    if d.is_bool:
      byte = self.new("r")
      self.emit(f"selp.u32 {byte}, 1, 0, {v};")
      v = byte
    guard = f"@{self.reg(s.src[3])} " if len(s.src) > 3 else ""
    addr = self.address(param, idx)
    self.emit(f"{guard}st.global.{MEM_TYPE[d.name]} {addr}, {v};")

  # ---- statements -------------------------------------------------------------------------------------------
  def statement(self, s: Node) -> None:
    if s.op is Ops.LOOP:
      self.loop(s)
    elif s.op is Ops.IF:
      skip = self.label()
      self.emit(f"@!{self.reg(s.src[0])} bra {skip};")
      self.scopes.append({})
      for sub in s.src[1:]:
        self.statement(sub)
      self.scopes.pop()
      self.label_here(skip)
    elif s.op is Ops.DEFACC:
      self.vars[s] = ptx_alu.const(self, s.src[0].arg, acc_dtype(s.dtype))
    elif s.op is Ops.ACCUM:
      acc, value = s.src
      v = self.reg(value)
      if value.dtype in HALVES:
        v = ptx_alu.cast(self, v, value.dtype, dtypes.float32)
      ptx_alu.combine(self, s.arg, acc.dtype, self.vars[acc], self.vars[acc], v)
    elif s.op is Ops.BLOCKREDUCE:
      self.vars[s] = self.block_reduce(s)
    elif s.op is Ops.GSTORE:
      self.store(s)
    else:
      raise ValueError(f"PTX renderer: {s.op.name} is not a statement")

  def loop(self, s: Node) -> None:
    rng = s.src[0]
    extent = rng.arg[1]
    cls = "r" if extent - 1 <= INT32_MAX else "rd"
    self.hoist(s)
    i, top = self.new(cls), self.label()
    self.emit(f"mov.b{32 if cls == 'r' else 64} {i}, 0;")
    self.label_here(top)
    self.vars[rng] = i
    self.scopes.append({})
    for sub in s.src[1:]:
      self.statement(sub)
    self.scopes.pop()
    more, width = self.new("p"), 32 if cls == "r" else 64
    self.emit(f"add.s{width} {i}, {i}, 1;")
    self.emit(f"setp.lt.s{width} {more}, {i}, {extent};")
    self.emit(f"@{more} bra {top};")

  def hoist(self, loop: Node) -> None:
    """Computes, before the loop, the values inside it that do not change across its iterations
    (compiler.lower_gpu.loop_invariants; integer divisions are guarded, so the hoisted arithmetic cannot fault)."""
    for n in loop_invariants(loop, self.vars):
      self.reg(n)

  def block_reduce(self, s: Node) -> str:
    """The accumulator folded over the block: a butterfly in each warp, one shared-memory slot per warp, a barrier,
    then every warp folds the slots with a second butterfly, so every thread holds the result (no second barrier;
    each BLOCKREDUCE has its own slots, so a later one cannot overwrite slots still being read)."""
    op, d = s.arg, acc_dtype(s.dtype)
    cls = reg_class(d)
    v = self.warp_fold(op, s.dtype, cls, self.vars[s.src[0]])
    warps = self.info.local_size[0] // WARP
    if warps <= 1:
      return v
    name = f"red{len(self.shared)}"
    self.shared.append(f".shared .align 8 .b8 {name}[{warps * 8}];")
    tid, lane, warp, base = self.new("r"), self.new("r"), self.new("r"), self.new("r")
    self.emit(f"mov.u32 {tid}, %tid.x;")
    self.emit(f"and.b32 {lane}, {tid}, {WARP - 1};")
    self.emit(f"shr.u32 {warp}, {tid}, 5;")
    self.emit(f"mov.u32 {base}, {name};")
    first, slot, mine, inside = self.new("p"), self.new("r"), self.new("r"), self.new("p")
    self.emit(f"setp.eq.u32 {first}, {lane}, 0;")
    self.emit(f"mad.lo.s32 {slot}, {warp}, 8, {base};")
    self.emit(f"mad.lo.s32 {mine}, {lane}, 8, {base};")
    self.emit(f"setp.lt.u32 {inside}, {lane}, {warps};")
    identity = reduce_identity(op, d)
    if cls == "p":  # bools travel through shared memory as 0/1 words
      word, part = self.new("r"), self.new("r")
      self.emit(f"selp.u32 {word}, 1, 0, {v};")
      self.emit(f"@{first} st.shared.b32 [{slot}], {word};")
      self.emit("bar.sync 0;")
      self.emit(f"mov.b32 {part}, {int(identity)};")
      self.emit(f"@{inside} ld.shared.b32 {part}, [{mine}];")
      flag = self.new("p")
      self.emit(f"setp.ne.u32 {flag}, {part}, 0;")
      return self.warp_fold(op, s.dtype, cls, flag)
    self.emit(f"@{first} st.shared.{BITS[cls]} [{slot}], {v};")
    self.emit("bar.sync 0;")
    part = ptx_alu.const(self, identity, d)
    self.emit(f"@{inside} ld.shared.{BITS[cls]} {part}, [{mine}];")
    return self.warp_fold(op, s.dtype, cls, part)

  def warp_fold(self, op: Ops, d, cls: str, v: str) -> str:
    """v folded over the 32 lanes of the warp (a butterfly: every lane ends with the whole warp's result)."""
    for offset in (16, 8, 4, 2, 1):
      other = ptx_alu.shuffle_xor(self, cls, v, offset)
      out = self.new(cls)
      ptx_alu.combine(self, op, d, out, v, other)
      v = out
    return v

  # ---- the module ---------------------------------------------------------------------------------------------
  def render(self) -> str:
    info = self.info
    for i in range(len(info.params)):
      raw, glob = self.new("rd"), self.new("rd")
      self.emit(f"ld.param.u64 {raw}, [{info.name}_p{i}];")
      self.emit(f"cvta.to.global.u64 {glob}, {raw};")
      self.params[i] = glob
    for var in info.vars:
      self.var_regs[var] = self.new("r")
      self.emit(f"ld.param.s32 {self.var_regs[var]}, [{info.name}_var_{var.name}];")
    for s in self.kernel.src:
      self.statement(s)
    self.emit("ret;")
    params = ",\n".join([f"  .param .u64 {info.name}_p{i}" for i in range(len(info.params))] +
                        [f"  .param .s32 {info.name}_var_{var.name}" for var in info.vars])
    block = ", ".join(str(x) for x in info.local_size)
    head = [f".version {PTX_VERSION}", f".target {TARGET}", ".address_size 64", "", *self.globals.values(),
            f".visible .entry {info.name}(\n{params}\n) .maxntid {block}", "{"]
    decls = [f"  .reg {REG_DECL[c]} %{c}<{n + 1}>;" for c, n in self.counts.items() if n]
    decls += [f"  {s}" for s in self.shared]
    return "\n".join(head + decls + self.lines + ["}"]) + "\n"


def render_ptx(kernel: Node) -> tuple[str, str, GPUKernelInfo]:
  """(entry name, PTX text, launch info) for a KERNEL from compiler.lower_gpu.lower_gpu."""
  if not isinstance(kernel.arg, GPUKernelInfo):
    raise ValueError(f"render_ptx needs a kernel from compiler.lower_gpu.lower_gpu, got {type(kernel.arg).__name__}")
  return kernel.arg.name, PTXRenderer(kernel).render(), kernel.arg


# ---- ptxas ------------------------------------------------------------------------------------------------------

def find_ptxas() -> str | None:
  """The ptxas binary: from the nvidia-cuda-nvcc pip package (CUDA 12 or 13 layout), then PATH, then
  /usr/local/cuda; None when there is none."""
  candidates = []
  spec = importlib.util.find_spec("nvidia")
  for root in (spec.submodule_search_locations or []) if spec else []:
    candidates += [os.path.join(root, "cuda_nvcc", "bin", "ptxas"), os.path.join(root, "cu13", "bin", "ptxas")]
  candidates += [shutil.which("ptxas") or "", "/usr/local/cuda/bin/ptxas"]
  for path in candidates:
    if path and os.path.isfile(path) and os.access(path, os.X_OK):
      return path
  return None


def assemble(ptx: str, arch: str = TARGET) -> bytes:
  """PTX text to a cubin with ptxas.

  Raises:
    RuntimeError: no ptxas was found (install nvidia-cuda-nvcc-cu12), or ptxas rejected the text (the message
      holds its diagnostics and the numbered source lines they point at).
  """
  ptxas = find_ptxas()
  if ptxas is None:
    raise RuntimeError("no ptxas found: pip install nvidia-cuda-nvcc-cu12, or put CUDA's bin directory on PATH")
  with tempfile.TemporaryDirectory() as tmp:
    src, out = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
    with open(src, "w") as f:
      f.write(ptx)
    proc = subprocess.run([ptxas, f"-arch={arch}", src, "-o", out], capture_output=True, text=True)
    if proc.returncode != 0:
      numbered = "\n".join(f"{i + 1:5d} {line}" for i, line in enumerate(ptx.splitlines()))
      raise RuntimeError(f"ptxas -arch={arch} failed:\n{proc.stderr}\n--- source ---\n{numbered}")
    with open(out, "rb") as f:
      return f.read()
