"""RDNA instruction selection: a GPU loop program (compiler/lower_gpu.py KERNEL) to machine code over virtual registers
(compiler/rdna_code.py), for gfx11 (RDNA3) and gfx12 (RDNA4), wave32.

Initial state (HSA dispatch ABI, LLVM 19 AMDGPUUsage "Initial Kernel Execution State"; am/sim/dispatch.py builds the
same): s[0:1] the kernarg segment pointer (the one user SGPR pair enabled), s2 the workgroup id x (the system SGPR
after the user SGPRs), v0 the work-item id x. Kernel arguments: one 64-bit global pointer per buffer PARAM at byte
8*i, read with s_load_b64, then one int32 per Variable (GPUKernelInfo.vars) at 8*params + 4*k, read with s_load_b32
into an SGPR (a Variable is uniform).

Uniformity. A value is uniform when it is the same in every lane: constants, PARAM pointers, Variables (VAR),
BLOCKIDX, loop counters (LOOP extents are constants, so every lane runs the same iterations) and ALU ops over uniform
values. Uniform 32-bit integers (and int64 index values that compiler/symbolic.py bounds prove fit in int32:
"narrow") live in SGPRs and use SALU; everything lane-dependent (THREADIDX, loads, accumulators) and every float lives
in VGPRs. Bools are lane masks in an SGPR (bit i = lane i, wave32): v_cmp writes them, v_cndmask and s_and_saveexec
read them; a uniform bool is the mask 0 or -1 (s_cmp + s_cselect).

Register forms by dtype: bool a mask; int8..uint32 32 bits, sign- or zero-extended and re-normalized after each op
that can overflow (so they wrap like C's); int64/uint64 a VGPR pair (narrow index values 32 bits); float16 the low
half of a VGPR (native f16 add/sub/mul/compare/trunc, the rest through f32); bfloat16 an f32 value rounded to
bfloat16 after each op (as the C renderer computes it); float32 one VGPR; float64 a VGPR pair.

Control flow: LOOP is a scalar counted loop (s_add_i32 / s_cmp / s_cbranch_scc1); IF narrows EXEC with
s_and_saveexec_b32 and branches over its body when no lane remains (s_cbranch_execz), then restores EXEC. Gated
loads and stores run under the narrowed EXEC (no access where the gate is off; gated loads read 0 there).
BLOCKREDUCE: a butterfly across the wave through ds_bpermute_b32, one LDS slot per wave, a barrier, then every
thread folds the slots (each BLOCKREDUCE has its own slots, so no second barrier is needed).
"""
from __future__ import annotations

from compiler import rdna_alu, rdna_memory
from compiler import symbolic as sym
from compiler.dtypes import dtypes
from compiler.ir import Node, Ops
from compiler.lower_gpu import INT32_MAX, WARP, GPUKernelInfo, loop_invariants, narrow_int64
from compiler.rdna_code import Code, Half, VReg, regof

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
VARYING = frozenset({Ops.THREADIDX, Ops.GLOAD, Ops.DEFACC, Ops.BLOCKREDUCE, Ops.LANE, Ops.HREDUCE})
LOAD_OP = {"bool": "global_load_u8", "int8": "global_load_i8", "uint8": "global_load_u8", "int16": "global_load_i16",
           "uint16": "global_load_u16", "float16": "global_load_u16", "bfloat16": "global_load_u16"}
STORE_OP = {1: "global_store_b8", 2: "global_store_b16", 4: "global_store_b32", 8: "global_store_b64"}


class Selector:
  """Selects one KERNEL; `select()` returns the Code. LDS bytes used: `lds_bytes`."""

  def __init__(self, kernel: Node, target: str):
    if not isinstance(kernel.arg, GPUKernelInfo):
      got = type(kernel.arg).__name__
      raise ValueError(f"RDNA renderer needs a kernel from compiler.lower_gpu.lower_gpu, got {got}")
    self.kernel, self.info = kernel, kernel.arg
    if self.info.local_size[1:] != (1, 1) or self.info.global_size[1:] != (1, 1):
      raise ValueError(f"RDNA renderer: {self.info.name} has a {self.info.global_size} grid of {self.info.local_size} "
                       "blocks; only 1-D launches are lowered")
    self.code = Code(target)
    self.gen = self.code.generation
    self.scopes: list[dict] = [{}]
    self.vars: dict[Node, VReg] = {}
    self.params: dict[int, VReg] = {}
    self.var_regs: dict = {}  # Variable -> the SGPR holding its value (a kernarg after the pointers)
    self.lds_bytes = 0
    self.uniform_memo: dict[Node, bool] = {}
    self.narrow_memo: dict[Node, bool] = {}
    self.bounds_memo: dict[Node, tuple[int, int]] = {}
    self.interner = rdna_memory.Interner()
    self.wide_loads: dict[Node, tuple] = {}  # GLOAD -> (group, position) of a wide load (compiler/rdna_memory.py)
    self.users: dict[Node, int] = {}   # how many nodes read each node (a MUL read once may fuse into its ADD)
    for n in kernel.toposort():
      for src in n.src:
        self.users[src] = self.users.get(src, 0) + 1
    self.kernarg = self.code.vreg("s", 2, fixed=0)
    self.wgid = self.code.vreg("s", 1, fixed=2)
    self.tid = self.code.vreg("v", 1, fixed=0)

  # ---- plumbing ---------------------------------------------------------------------------------------------------
  def emit(self, op: str, *args, **kw):
    return self.code.emit(op, *args, **kw)

  def new(self, file: str = "v", size: int = 1) -> VReg:
    return self.code.vreg(file, size)

  def op(self, op: str, *srcs, file: str = "v", size: int = 1, **mods) -> VReg:
    """One instruction writing a new register; returns it."""
    out = self.new(file, size)
    self.emit(op, out, *srcs, **mods)
    return out

  def lookup(self, key):
    for scope in reversed(self.scopes):
      if key in scope:
        return scope[key]
    return None

  def remember(self, key, value):
    self.scopes[-1][key] = value
    return value

  # ---- value facts ------------------------------------------------------------------------------------------------
  def uniform(self, n: Node) -> bool:
    got = self.uniform_memo.get(n)
    if got is None:
      if n.op in VARYING:
        got = False
      elif n.op in (Ops.CONST, Ops.RANGE, Ops.BLOCKIDX, Ops.PARAM):
        got = True
      else:
        got = all(self.uniform(s) for s in n.src)
      self.uniform_memo[n] = got
    return got

  def narrow(self, n: Node) -> bool:
    """An int64 index value computed in 32 bits (compiler.lower_gpu.narrow_int64)."""
    return narrow_int64(n, self.bounds, self.narrow_memo)

  def bounds(self, n: Node) -> tuple[int, int]:
    """[min, max] of an index value: symbolic.bounds, which gives none for a quotient or remainder of a dividend that
    may be negative (padded views index below 0 where their gate is off), extended to those with C's truncating
    division: x / d lies between lo / d and hi / d, and |x % d| < d with the sign of x. A Variable lies in its
    [lo, hi] (Variable.bind refuses other values), and so does its widening to the index type, so an index that starts
    at a Variable stays 32-bit and its uniform part scalar."""
    got = self.bounds_memo.get(n)
    if got is None:
      if n.op in (Ops.ADD, Ops.SUB, Ops.MUL):
        (a0, a1), (b0, b1) = self.bounds(n.src[0]), self.bounds(n.src[1])
        if n.op is Ops.MUL:
          products = (a0 * b0, a0 * b1, a1 * b0, a1 * b1)
          got = min(products), max(products)
        else:
          got = (a0 + b0, a1 + b1) if n.op is Ops.ADD else (a0 - b1, a1 - b0)
      elif n.op in (Ops.IDIV, Ops.MOD) and n.src[1].op is Ops.CONST and n.src[1].arg > 0:
        lo, hi = self.bounds(n.src[0])
        d = n.src[1].arg
        if n.op is Ops.IDIV:
          got = -(-lo // d) if lo < 0 else lo // d, -(-hi // d) if hi < 0 else hi // d
        else:
          got = max(lo, 1 - d) if lo < 0 else 0, min(hi, d - 1) if hi > 0 else 0
      elif n.op in (Ops.CONST, Ops.RANGE, Ops.THREADIDX, Ops.BLOCKIDX, Ops.VAR) or is_var_index(n):
        got = sym.bounds(n)
      else:
        got = (INT64_MIN, INT64_MAX)
      # clamped to int64: a chain of products (integer pow squares 64 times) would otherwise grow numbers of 2^64 bits
      got = max(got[0], INT64_MIN), min(got[1], INT64_MAX)
      self.bounds_memo[n] = got
    return got

  def wide(self, n: Node) -> bool:
    """The value takes a register pair (64-bit types that are not narrow)."""
    return n.dtype.itemsize == 8 and not self.narrow(n)

  # ---- values -----------------------------------------------------------------------------------------------------
  def reg(self, n: Node):
    """The operand holding n's value (a VReg, or a Python constant for CONST), computed once per scope; nodes equal in
    op, dtype, arg and source operands share it."""
    got = self.lookup(n)
    if got is not None:
      return got
    if n.op in (Ops.RANGE, Ops.DEFACC, Ops.BLOCKREDUCE):
      out = self.read_var(n)
    else:
      if n.op is Ops.GLOAD or rdna_alu.contractible(self, n):
        # by the expression's shape, computing nothing: a load's address may not need its index's value (induction
        # variables, immediates), and a fused multiply-add does not compute its product alone
        key = ("shape", self.interner.key(n))
      else:
        key = (n.op, n.dtype, repr(n.arg), self.narrow(n), tuple(self.src_key(s) for s in n.src))
      out = self.lookup(key)
      if out is None:
        out = self.remember(key, self.compute(n))
    return self.remember(n, out)

  def src_key(self, s: Node):
    if s.op is Ops.CONST:
      return (Ops.CONST, s.dtype, repr(s.arg), self.narrow(s))
    out = self.reg(s)
    return out.id if isinstance(out, VReg) else out

  def read_var(self, n: Node):
    if n not in self.vars:
      raise ValueError(f"RDNA renderer: {n!r} is read outside the statement that defines it")
    r = self.vars[n]
    if n.op is not Ops.RANGE and n.dtype in (dtypes.float16, dtypes.bfloat16):
      return rdna_alu.cast(self, r, dtypes.float32, n.dtype)  # accumulators of halves hold float32
    return r

  def compute(self, n: Node):
    op = n.op
    if op is Ops.CONST:
      return rdna_alu.const(self, n.arg, n.dtype, self.narrow(n))
    if op is Ops.THREADIDX:
      return self.axis(n, self.tid)
    if op is Ops.BLOCKIDX:
      return self.axis(n, self.wgid)
    if op is Ops.PARAM:
      return self.params[n.arg]
    if op is Ops.VAR:
      return self.var_regs[n.arg]
    if op is Ops.GLOAD:
      return self.load(n)
    if op is Ops.CAST:
      if self.narrow(n):  # an int64 index computed in 32 bits: the source widened to int32 at most
        return rdna_alu.cast(self, self.reg(n.src[0]), n.src[0].dtype, dtypes.int32)
      return rdna_alu.cast(self, self.reg(n.src[0]), n.src[0].dtype, n.dtype, self.narrow(n.src[0]))
    if op is Ops.BITCAST:
      return rdna_alu.bitcast(self, self.reg(n.src[0]), n.src[0].dtype, n.dtype, self.narrow(n.src[0]))
    if op in (Ops.LANE, Ops.HREDUCE):
      raise ValueError(f"RDNA renderer: {op.name} is CPU vector IR; lower with compiler.lower_gpu")
    return rdna_alu.alu(self, n)

  def axis(self, n: Node, reg: VReg) -> VReg:
    if n.arg[0] != 0:
      raise ValueError(f"RDNA renderer: {n!r} uses axis {n.arg[0]}; only 1-D launches are lowered")
    return reg

  def pair(self, n: Node):
    """n's value as 64 bits: its register pair, a constant, or a narrow index value sign-extended."""
    x = self.reg(n)
    if not self.narrow(n) or not isinstance(x, VReg):
      return x
    key = ("wide", x.id)
    got = self.lookup(key)
    if got is None:
      got = self.remember(key, rdna_alu.extend64(self, x, signed=True))
    return got

  # ---- memory -----------------------------------------------------------------------------------------------------
  def address(self, param: Node, idx: Node):
    """(vaddr, saddr, immediate offset) of element idx: a 32-bit VGPR byte offset from the SGPR base where the
    offset provably fits, else a 64-bit VGPR address with saddr "off"."""
    size = param.dtype.itemsize
    base = self.reg(param)
    terms, c = sym.linear_terms(idx)
    limit = rdna_memory.offset_limit(self.gen)
    induction = self.lookup(("induction", self.interner.linear(terms), size)) if terms else None
    if induction is not None and -limit <= c * size < limit:
      return induction, base, c * size
    var = sym.from_terms(terms, 0) if terms else None
    for v, imm in ((var, c * size), (idx, 0)):
      if v is None:
        if -limit <= imm < limit:
          return self.zero_vgpr(), base, imm
        continue
      lo, hi = sym.bounds(v)
      if self.narrow(v) and lo >= 0 and hi * size < 1 << 32 and -limit <= imm < limit:
        key = ("offset", self.src_key(v), size)
        off = self.lookup(key)
        if off is None:
          off = self.remember(key, rdna_alu.scaled_offset(self, self.reg(v), size))
        return off, base, imm
    key = ("address", base.id, self.src_key(idx), size)
    addr = self.lookup(key)
    if addr is None:
      addr = self.remember(key, rdna_alu.address64(self, idx, base, size))
    return addr, "off", 0

  def zero_vgpr(self) -> VReg:
    got = self.lookup("zero")
    return got if got is not None else self.remember("zero", self.op("v_mov_b32", 0))

  def gated(self, gate: Node | None):
    """Context for a gated access: EXEC narrowed to the gate's lanes (and restored after)."""
    return _Gate(self, None if gate is None else self.reg(gate))

  def load(self, n: Node):
    if n in self.wide_loads:
      group, position = self.wide_loads[n]
      key = ("wide", id(group))
      data = self.lookup(key)
      if data is None:
        data = self.remember(key, self.load_wide(group))
      return Half(data, position)
    param, idx = n.src[0], n.src[1]
    d = n.dtype
    vaddr, saddr, imm = self.address(param, idx)
    wide = d.itemsize == 8
    out = self.new("v", 2 if wide else 1)
    gate = n.src[2] if len(n.src) > 2 else None
    if gate is not None:  # lanes where the gate is off keep the zero
      for part in ((Half(out, 0), Half(out, 1)) if wide else (out,)):
        self.emit("v_mov_b32", part, 0)
    mnemonic = LOAD_OP.get(d.name, "global_load_b64" if wide else "global_load_b32")
    with self.gated(gate):
      self.emit(mnemonic, out, vaddr, saddr, offset=imm or None, mem="vload")
    if d.is_bool:
      return self.op("v_cmp_ne_u32", 0, out, file="s")
    if d == dtypes.bfloat16:
      return self.op("v_lshlrev_b32", 16, out)
    return out

  def load_wide(self, group: tuple) -> VReg:
    """One global_load_b64 / b128 for the consecutive 32-bit loads of `group` (compiler/rdna_memory.py)."""
    first = group[0]
    vaddr, saddr, imm = self.address(first.src[0], first.src[1])
    out = self.new("v", len(group))
    gate = first.src[2] if len(first.src) > 2 else None
    if gate is not None:  # lanes where the gate is off keep the zeros
      for k in range(len(group)):
        self.emit("v_mov_b32", Half(out, k), 0)
    with self.gated(gate):
      self.emit(rdna_memory.WIDE_LOAD[len(group)], out, vaddr, saddr, offset=imm or None, mem="vload")
    return out

  def store(self, s: Node) -> None:
    param, idx, value = s.src[:3]
    d = value.dtype
    data = rdna_alu.store_bits(self, value)
    vaddr, saddr, imm = self.address(param, idx)
    with self.gated(s.src[3] if len(s.src) > 3 else None):
      self.emit(STORE_OP[d.itemsize], vaddr, data, saddr, ndefs=0, offset=imm or None, mem="vstore")

  # ---- statements -------------------------------------------------------------------------------------------------
  def statement(self, s: Node) -> None:
    if s.op is Ops.LOOP:
      self.loop(s)
    elif s.op is Ops.IF:
      with _Gate(self, self.reg(s.src[0]), branch=True):
        self.scopes.append({})
        self.statements(s.src[1:])
        self.scopes.pop()
    elif s.op is Ops.DEFACC:
      self.vars[s] = rdna_alu.init_acc(self, s.src[0].arg, s.dtype)
    elif s.op is Ops.ACCUM:
      acc, value = s.src
      if not rdna_alu.accumulate_fused(self, s.arg, self.vars[acc], value):
        v = rdna_alu.to_acc(self, self.reg(value), value.dtype)
        rdna_alu.combine(self, s.arg, acc.dtype, self.vars[acc], v, in_place=True)
    elif s.op is Ops.BLOCKREDUCE:
      self.vars[s] = self.block_reduce(s)
    elif s.op is Ops.GSTORE:
      self.store(s)
    else:
      raise ValueError(f"RDNA renderer: {s.op.name} is not a statement")

  def loop(self, s: Node) -> None:
    rng = s.src[0]
    extent = rng.arg[1]
    if extent - 1 > INT32_MAX:
      raise ValueError(f"RDNA renderer: loop {rng.arg[0]} of {extent} iterations; counters are 32-bit")
    self.hoist(s)
    inductions = self.inductions(s)
    i, top = self.new("s"), self.code.new_label()
    start = self.emit("s_mov_b32", i, 0)
    self.code.place(top)
    body = len(self.code.insts)
    self.vars[rng] = i
    self.scopes.append({key: reg for key, (reg, _) in inductions.items()})
    self.statements(s.src[1:], early=True)
    self.scopes.pop()
    for reg, step in inductions.values():
      self.emit("v_add_nc_u32", reg, step, reg)
    if any(regof(a) is i for inst in self.code.insts[body:] for a in inst.uses()):
      self.emit("s_add_i32", i, i, 1, tied=True)
      self.emit("s_cmp_lt_i32", i, extent, ndefs=0)
      self.emit("s_cbranch_scc1", top, ndefs=0)
    else:  # the body does not read the counter: count from 2^32 - extent up to the carry out of the last add
      start.args = (i, rdna_alu.s32(-extent))
      self.emit("s_add_u32", i, i, 1)
      self.emit("s_cbranch_scc0", top, ndefs=0)

  def hoist(self, loop: Node) -> None:
    """Computes, before the loop, the values inside it that do not change across its iterations
    (compiler.lower_gpu.loop_invariants)."""
    for n in loop_invariants(loop, self.vars):
      self.reg(n)

  def inductions(self, loop: Node) -> dict:
    """{key: (register, byte step)}: the induction offsets of the loop's accesses (compiler/rdna_memory.py), each
    set to its first iteration's byte offset here, before the loop."""
    out = {}
    for key, inv, step in rdna_memory.plan_inductions(self, loop):
      start = self.new()
      if inv is None:
        self.emit("v_mov_b32", start, 0)
      else:
        x, shift = self.reg(inv), key[2].bit_length() - 1
        if isinstance(x, (int, float)):
          self.emit("v_mov_b32", start, rdna_alu.s32(int(x) * key[2]))
        elif shift and x.file == "v":
          self.emit("v_lshlrev_b32", start, shift, x)
        else:
          self.emit("v_mov_b32", start, self.op("s_lshl_b32", x, shift, file="s") if shift else x)
      out[key] = (start, step)
    return out

  def statements(self, body, early: bool = False) -> None:
    """A statement list, its consecutive loads first planned into wide loads, and with `early` (a loop body) its
    loads of read-only buffers issued first, so their latencies overlap (compiler/rdna_memory.py)."""
    self.wide_loads.update(rdna_memory.plan_wide_loads(self, body))
    if early:
      for n in rdna_memory.early_loads(self, body):
        self.reg(n)
    for sub in body:
      self.statement(sub)

  def block_reduce(self, s: Node) -> VReg:
    """The accumulator folded over the block (see the module docstring); every thread gets the result."""
    op, d = s.arg, s.dtype
    acc = self.vars[s.src[0]]
    word = rdna_alu.reduce_word(self, acc, d)  # 32 or 64 bits in VGPRs (bools as 0/1)
    wide = word.size == 2
    for offset in (16, 8, 4, 2, 1):
      other = self.shuffle_xor(word, offset)
      word = rdna_alu.combine_words(self, op, d, word, other)
    waves = self.info.local_size[0] // WARP
    if waves > 1:
      slot_bytes = 8 if wide else 4
      base = self.lds_bytes
      self.lds_bytes += waves * slot_bytes
      wave = self.op("v_lshrrev_b32", 5, self.tid)
      addr = self.op("v_mad_u32_u24", wave, slot_bytes, base)
      self.emit("ds_store_b64" if wide else "ds_store_b32", addr, word, ndefs=0, mem="dsstore")
      self.barrier()
      zero = self.zero_vgpr()
      folded = None
      for w in range(waves):
        part = self.new("v", 2 if wide else 1)
        self.emit("ds_load_b64" if wide else "ds_load_b32", part, zero, offset=base + w * slot_bytes or None,
                  mem="dsload")
        folded = part if folded is None else rdna_alu.combine_words(self, op, d, folded, part)
      word = folded
    return rdna_alu.from_reduce_word(self, word, d)

  def shuffle_xor(self, x: VReg, offset: int) -> VReg:
    """x from lane (lane ^ offset) of the wave, through ds_bpermute_b32 (byte address = lane * 4)."""
    key = ("bperm_addr", offset)
    addr = self.lookup(key)
    if addr is None:
      lane = self.op("v_and_b32", WARP - 1, self.tid)
      other = self.op("v_xor_b32", offset, lane)
      addr = self.remember(key, self.op("v_lshlrev_b32", 2, other))
    if x.size == 2:
      out = self.new("v", 2)
      for k in range(2):
        self.emit("ds_bpermute_b32", Half(out, k), addr, Half(x, k), mem="dsload")
      return out
    return self.op("ds_bpermute_b32", addr, x, mem="dsload")

  def barrier(self) -> None:
    if self.gen == 11:
      self.emit("s_barrier", ndefs=0)
    else:
      self.emit("s_barrier_signal", -1, ndefs=0)
      self.emit("s_barrier_wait", 0xFFFF, ndefs=0)

  # ---- the kernel -------------------------------------------------------------------------------------------------
  def select(self) -> Code:
    self.emit("entry", self.kernarg, self.wgid, self.tid, ndefs=3)
    for i in range(len(self.info.params)):
      p = self.new("s", 2)
      self.emit("s_load_b64", p, self.kernarg, 8 * i, mem="smem")
      self.params[i] = p
    for k, var in enumerate(self.info.vars):
      v = self.new("s")
      self.emit("s_load_b32", v, self.kernarg, 8 * len(self.info.params) + 4 * k, mem="smem")
      self.var_regs[var] = v
    self.statements(self.kernel.src)
    self.emit("s_endpgm", ndefs=0)
    return self.code


def is_var_index(n: Node) -> bool:
  """A Variable widened to the index type (compiler/view.py: a view that starts at a Variable)."""
  return n.op is Ops.CAST and n.src[0].op is Ops.VAR


class _Gate:
  """EXEC narrowed to a lane mask for the statements inside `with`: s_and_saveexec_b32, then (branch=True) a jump
  over the body when no lane is left; EXEC is restored at the end. gate None means no narrowing."""

  def __init__(self, r: Selector, mask, branch: bool = False):
    self.r, self.mask, self.branch = r, mask, branch

  def __enter__(self):
    if self.mask is None:
      return self
    code = self.r.code
    if not isinstance(self.mask, VReg):  # a constant gate
      self.mask = self.r.op("s_mov_b32", -1 if self.mask else 0, file="s")
    self.saved = code.vreg("s")
    code.emit("s_and_saveexec_b32", self.saved, self.mask)
    if self.branch:
      self.end = code.new_label()
      code.emit("s_cbranch_execz", self.end, ndefs=0)
    return self

  def __exit__(self, *exc):
    if self.mask is None or exc[0] is not None:
      return False
    code = self.r.code
    if self.branch:
      code.place(self.end)
    code.emit("s_mov_b32", "exec_lo", self.saved, ndefs=0)
    return False

