"""WMMA lowering of half matmul kernels: a thread-plan kernel of compiler/lower_gpu.py that is a float16 x float16
matmul with 16-divisible shapes becomes one v_wmma_f32_16x16x16_f16 per 16x16x16 block, one 16x16 output tile per
wave; any other kernel returns None from `match` and takes the normal path (compiler/rdna_isel.py).

Recognised pattern. Statements [IF(gate,] DEFACC(c)*, LOOP(r, ACCUM(acc, value)*), GSTORE(out, idx, e(acc))* [)],
every ACCUM a sum whose value is CAST(float32, MUL(x, y)) or MUL(CAST(float32, x), CAST(float32, y)) (or a float16
MUL into a float16 accumulator) of two float16 GLOADs, each index affine in r (`base + k_step * r`, compiler.symbolic
linear_terms), e an elementwise epilogue of its accumulator alone (CAST, constants), the same for every accumulator.
What matmul it is comes out of evaluating the index expressions for every thread (numpy, no assumption about how
lower_gpu numbered the threads or tiled them into registers): the distinct bases of x are the rows, those of y the
columns, and the kernel qualifies when rows and columns form a full product, bases and output indices are affine in
(row, column) with non-negative strides, and M, N and K are multiples of 16.

Numerics. The IR's half matmul rounds each product to float16 before the float32 sum (PTX: mul.rn.f16 then cvt);
WMMA multiplies exactly and sums in float32 (am/sim/wmma.py models it as one rounding), which is as close or closer to
the float32 result of the float16 inputs. The sum's order differs from the serial loop.

Code, per wave (wave32, tiles split over blocks of 1, 2 or 4 waves): tile t = block * waves + wave (the wave index
read into an SGPR with v_readfirstlane_b32), rows 16 * (t // (N / 16)), columns 16 * (t % (N / 16)). Lane l holds row
(and column) l % 16 of the A (and B) tile in the generation's layout (am/sim/wmma.py has the layouts and their
source). The order of the 16 k values across a lane's registers is free as long as A and B use the same one: the
instruction pairs equal (half-wave, register, half) slots of A and B, so here gfx11 lanes hold k = 0..15 in order (both
half-waves the same) and gfx12 lanes hold k = 8 * (l // 16) + 0..7, contiguous, so a row-contiguous operand loads
with global_load_b128 (16-byte aligned rows), others with one global_load_d16_b16 / d16_hi_b16 per element. Per
16-deep block the operands' SGPR base pointers advance (s_add_u32 / s_addc_u32); the lane offsets stay fixed. After
the loop each lane stores its 8 results (rows 2v + l // 16 on gfx11, v + 8 * (l // 16) on gfx12) through the
epilogue. Hazards: a WMMA whose A or B overlaps the previous WMMA's D needs a V_NOP between them (LLVM 19
GCNHazardRecognizer::fixWMMAHazards); this code never feeds a WMMA result to A or B, so it needs none. Not handled:
bfloat16 (its products round to bfloat16 in the IR), batched matmuls, and kernels of more than MAX_OUTPUTS outputs
(the check evaluates every output's indices: 1 s and 0.7 GB for a 2048 x 2048 result here).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from compiler import rdna_alu, rdna_math
from compiler import symbolic as sym
from compiler.dtypes import dtypes
from compiler.ir import Node, Ops
from compiler.rdna_code import Half, Slice
from compiler.rdna_isel import STORE_OP, Selector
from compiler.rdna_memory import Interner, offset_limit

TILE = 16
MAX_OUTPUTS = 1 << 22     # index expressions are evaluated for every output: a bound on the time and memory of that
WAVES_PER_BLOCK = (4, 2, 1)


class NoMatch(Exception):
  """The kernel is not a half matmul this lowering takes (the message says why, for DEBUG)."""


@dataclasses.dataclass(frozen=True)
class Operand:
  """Element index of A[i][k] (or B[k][j]) = base + step * i + k_step * k, in PARAM `param`."""
  param: Node
  base: int
  step: int
  k_step: int


@dataclasses.dataclass(frozen=True)
class Tiles:
  m: int
  n: int
  k: int
  a: Operand
  b: Operand
  out: Operand          # element index of D[i][j] = base + step * i + k_step * j
  init: float           # the accumulators' initial value
  acc: Node             # the DEFACC the epilogue reads
  epilogue: Node        # the value stored for each output


def match(kernel: Node) -> Tiles | None:
  """The matmul a kernel computes, when WMMA can compute it (module docstring); None otherwise."""
  try:
    return recognise(kernel)
  except NoMatch:
    return None


# ---- recognising ------------------------------------------------------------------------------------------------

def recognise(kernel: Node) -> Tiles:
  info = kernel.arg
  if info.plan != "thread":
    raise NoMatch("not a thread-plan kernel")
  gate, stmts = None, list(kernel.src)
  if len(stmts) == 1 and stmts[0].op is Ops.IF:
    gate, stmts = stmts[0].src[0], list(stmts[0].src[1:])
  kinds = [s.op for s in stmts]
  loops = [s for s in stmts if s.op is Ops.LOOP]
  if len(loops) != 1 or any(k not in (Ops.DEFACC, Ops.LOOP, Ops.GSTORE) for k in kinds):
    raise NoMatch("not DEFACC*, one LOOP, GSTORE*")
  loop = loops[0]
  where = kinds.index(Ops.LOOP)
  if Ops.GSTORE in kinds[:where] or Ops.DEFACC in kinds[where:]:
    raise NoMatch("statements out of order")
  accs = [s for s in stmts if s.op is Ops.DEFACC]
  stores = {s.src[2]: s for s in stmts if s.op is Ops.GSTORE}
  rng = loop.src[0]
  per_acc = {}
  for accum in loop.src[1:]:
    if accum.op is not Ops.ACCUM or accum.arg is not Ops.ADD or accum.src[0] in per_acc:
      raise NoMatch("the loop body is not one sum per accumulator")
    per_acc[accum.src[0]] = operands(accum, rng)
  if set(per_acc) != set(accs) or len(stores) != len(accs):
    raise NoMatch("accumulators, sums and stores do not pair up")
  if info.global_extent * len(accs) > MAX_OUTPUTS:
    raise NoMatch(f"more than {MAX_OUTPUTS} outputs to check")
  epilogues = {}
  for value, store in stores.items():
    if len(store.src) > 3:
      raise NoMatch("gated store")
    leaves = [n for n in value.toposort() if not n.src or n.op is Ops.DEFACC]
    accs_read = [n for n in leaves if n.op is Ops.DEFACC]
    if len(accs_read) != 1 or any(n.op not in (Ops.CONST, Ops.DEFACC) for n in leaves):
      raise NoMatch("the stored value is not an epilogue of one accumulator")
    epilogues[accs_read[0]] = store
  return geometry(kernel, gate, rng, accs, per_acc, epilogues)


def operands(accum: Node, rng: Node) -> tuple:
  """((x param, x base expr, x k-step), (y ...)) of acc += x * y with float16 loads x, y."""
  acc, value = accum.src
  if value.op is Ops.CAST and value.src[0].op is Ops.MUL and value.src[0].dtype == dtypes.float16:
    x, y = value.src[0].src
  elif value.op is Ops.MUL and value.dtype == dtypes.float32 and all(s.op is Ops.CAST for s in value.src):
    x, y = (s.src[0] for s in value.src)
  elif value.op is Ops.MUL and value.dtype == dtypes.float16 and acc.dtype == dtypes.float16:
    x, y = value.src
  else:
    raise NoMatch("the summed value is not a product of two loads")
  if acc.dtype not in (dtypes.float32, dtypes.float16) or acc.src[0].op is not Ops.CONST:
    raise NoMatch("accumulator type or initial value")
  out = []
  for load in (x, y):
    if load.op is not Ops.GLOAD or load.dtype != dtypes.float16 or len(load.src) > 2:
      raise NoMatch("an operand is not an ungated float16 load")
    linear = sym.linear_terms(load.src[1])
    if linear is None:
      raise NoMatch("non-affine index")
    terms, c = linear
    k_step = terms.pop(rng, 0)
    if not k_step or any(any(m is rng for m in t.toposort()) for t in terms):
      raise NoMatch("an operand's index is not base + k_step * r")
    out.append((load.src[0], sym.from_terms(terms, c), k_step))
  return tuple(out)


def evaluate(node: Node, env: dict, memo: dict):
  """An index or bool expression over thread / block indices, for every thread at once (C's truncating / and %)."""
  if node in memo:
    return memo[node]
  op = node.op
  if op in env:
    out = env[op]
  elif op is Ops.CONST:
    out = np.array(node.arg, dtype=np.bool_ if node.dtype.is_bool else np.int64)
  else:
    xs = [evaluate(s, env, memo) for s in node.src]
    out = apply(op, xs, node)
  memo[node] = out
  return out


def apply(op: Ops, xs: list, node: Node):
  if op in (Ops.IDIV, Ops.MOD):
    a, b = xs
    if np.any(b == 0):
      raise NoMatch("division by zero in an index")
    q = np.abs(a) // np.abs(b) * np.sign(a) * np.sign(b)
    return q if op is Ops.IDIV else a - q * b
  table = {Ops.ADD: np.add, Ops.SUB: np.subtract, Ops.MUL: np.multiply, Ops.CMPLT: np.less, Ops.CMPEQ: np.equal,
           Ops.CMPNE: np.not_equal, Ops.MAX: np.maximum, Ops.AND: np.bitwise_and, Ops.OR: np.bitwise_or,
           Ops.XOR: np.bitwise_xor}
  if op in table:
    return table[op](*xs)
  if op is Ops.NEG:
    return -xs[0]
  if op is Ops.NOT:
    return ~xs[0]
  if op is Ops.WHERE:
    return np.where(*xs)
  if op is Ops.CAST and (node.dtype.is_int or node.dtype.is_bool):
    return xs[0].astype(np.bool_ if node.dtype.is_bool else np.int64)
  raise NoMatch(f"{op.name} in an index")


def grid_index(values: np.ndarray) -> tuple[int, int, np.ndarray]:
  """(first, step, index) with values == first + step * index: step the gcd of the distances from the smallest."""
  first = int(values.min())
  step = int(np.gcd.reduce(values - first)) or 1
  return first, step, (values - first) // step


def geometry(kernel: Node, gate, rng: Node, accs: list, per_acc: dict, epilogues: dict) -> Tiles:
  info = kernel.arg
  threads = np.arange(info.global_extent, dtype=np.int64)
  env = {Ops.THREADIDX: threads % info.local_size[0], Ops.BLOCKIDX: threads // info.local_size[0]}
  memo: dict = {}
  active = np.ones(len(threads), bool) if gate is None else np.broadcast_to(evaluate(gate, env, memo), threads.shape)
  first = per_acc[accs[0]]
  rows, cols, outs = [], [], []
  for acc in accs:
    (px, x, kx), (py, y, ky) = per_acc[acc]
    if (px, kx, py, ky) != (first[0][0], first[0][2], first[1][0], first[1][2]):
      raise NoMatch("register tiles read different operands")
    if acc.src[0].arg != accs[0].src[0].arg or not same_epilogue(epilogues[acc], epilogues[accs[0]], acc, accs[0]):
      raise NoMatch("register tiles differ in their epilogue")
    for values, expr in ((rows, x), (cols, y), (outs, epilogues[acc].src[1])):
      values.append(np.broadcast_to(evaluate(expr, env, memo), threads.shape)[active])
  memo.clear()
  rows, cols, outs = (np.concatenate(v) for v in (rows, cols, outs))
  (x0, dx, row_of), (y0, dy, col_of) = grid_index(rows), grid_index(cols)
  m, n, k = int(row_of.max()) + 1, int(col_of.max()) + 1, rng.arg[1]
  if len(outs) != m * n or np.any(np.bincount(row_of * n + col_of, minlength=m * n) != 1):
    raise NoMatch("outputs are not the full product of evenly spaced rows and columns (batched?)")
  if m % TILE or n % TILE or k % TILE:
    raise NoMatch(f"{m}x{n}x{k} is not a multiple of {TILE} in every dimension")
  at = np.empty(m * n, np.int64)
  at[row_of * n + col_of] = outs
  o0, oi, oj = int(at[0]), int(at[n] - at[0]), int(at[1] - at[0])
  if np.any(outs != o0 + oi * row_of + oj * col_of):
    raise NoMatch("output indices are not affine in row and column")
  a = Operand(first[0][0], x0, dx, first[0][2])
  b = Operand(first[1][0], y0, dy, first[1][2])
  out = Operand(epilogues[accs[0]].src[0], o0, oi, oj)
  for operand, extent in ((a, (m, k)), (b, (n, k)), (out, (m, n))):
    if min(operand.base, operand.step, operand.k_step) < 0:
      raise NoMatch("negative strides")
    last = operand.base + operand.step * (extent[0] - 1) + operand.k_step * (extent[1] - 1)
    if last * operand.param.dtype.itemsize >= 1 << 31:
      raise NoMatch("byte offsets beyond 31 bits")
  return Tiles(m, n, k, a, b, out, float(accs[0].src[0].arg), accs[0], epilogues[accs[0]].src[2])


def same_epilogue(store: Node, other: Node, acc: Node, other_acc: Node) -> bool:
  """The two stores' values are the same expression of their accumulators."""
  shapes = Interner()
  return shapes.key(sym.substitute(store.src[2], {acc: other_acc})) == shapes.key(other.src[2])


# ---- code -------------------------------------------------------------------------------------------------------

class WmmaSelector(Selector):
  """Selects the WMMA form of a kernel `match` accepted; `select()` returns the Code, `info` the launch it needs."""

  def __init__(self, kernel: Node, target: str, tiles: Tiles):
    super().__init__(kernel, target)
    self.tiles = tiles
    count = (tiles.m // TILE) * (tiles.n // TILE)
    self.waves = next(w for w in WAVES_PER_BLOCK if count % w == 0)
    self.info = dataclasses.replace(self.info, global_size=(count // self.waves, 1, 1),
                                    local_size=(32 * self.waves, 1, 1))
    self.slots = 16 if self.gen == 11 else 8     # 16-bit values of A (and B) per lane

  def select(self):
    self.emit("entry", self.kernarg, self.wgid, self.tid, ndefs=3)
    for i in range(len(self.info.params)):
      self.params[i] = self.op("s_load_b64", self.kernarg, 8 * i, file="s", size=2, mem="smem")
    t = self.tiles
    tile_row, tile_col = self.tile_position()
    li = self.op("v_and_b32", 15, self.tid)
    lh = self.op("v_bfe_u32", self.tid, 4, 1)
    d = self.new("v", 8)
    for r in range(8):
      self.emit("v_mov_b32", Half(d, r), rdna_alu.bits32(float(np.float32(t.init)), dtypes.float32))
    a = self.operand_plan(t.a, tile_row, li, lh)
    b = self.operand_plan(t.b, tile_col, li, lh)
    self.k_loop(d, a, b)
    self.store_tile(d, tile_row, tile_col, li, lh)
    self.emit("s_endpgm", ndefs=0)
    return self.code

  def tile_position(self):
    """(first row, first column) of this wave's tile, in SGPRs."""
    tiles_per_row = self.tiles.n // TILE
    tile = self.wgid
    if self.waves > 1:
      wave = self.op("v_readfirstlane_b32", self.op("v_lshrrev_b32", 5, self.tid), file="s")
      tile = self.op("s_add_i32", self.op("s_mul_i32", self.wgid, self.waves, file="s"), wave, file="s")
    ti = rdna_math.divmod_const(self, Ops.IDIV, tile, tiles_per_row, scalar=True)
    tj = rdna_math.divmod_const(self, Ops.MOD, tile, tiles_per_row, scalar=True)
    return (self.op("s_mul_i32", ti, TILE, file="s") if not isinstance(ti, int) else ti * TILE,
            self.op("s_mul_i32", tj, TILE, file="s") if not isinstance(tj, int) else tj * TILE)

  def lane_offset(self, base: int, scalar_index, scalar_step: int, parts: list):
    """VGPR byte offset base + scalar_index * scalar_step + sum(vgpr * step for vgpr, step in parts)."""
    s_part = self.op("s_mul_i32", scalar_index, scalar_step, file="s") if not isinstance(scalar_index, int) \
        else scalar_index * scalar_step
    if isinstance(s_part, int):
      s_part += base
    elif base:
      s_part = self.op("s_add_i32", s_part, base, file="s")
    out = s_part
    for vgpr, step in parts:
      out = self.op("v_mad_u32_u24", vgpr, step, out) if step < 1 << 23 else \
          self.op("v_add_nc_u32", self.op("v_mul_lo_u32", vgpr, step), out)
    return out

  def operand_plan(self, o: Operand, first, li, lh) -> dict:
    """How this lane reads its A (or B) values: a moving copy of the SGPR base, the fixed lane offset, the mode."""
    size, slots = 2, self.slots
    parts = [(li, o.step * size)] + ([(lh, 8 * o.k_step * size)] if self.gen == 12 else [])
    offset = self.lane_offset(o.base * size, first, o.step * size, parts)
    vector = o.k_step == 1 and (o.base * size) % 16 == 0 and (o.step * size) % 16 == 0
    base = self.new("s", 2)
    for k in range(2):
      self.emit("s_mov_b32", Half(base, k), Half(self.params[o.param.arg], k))
    limit = offset_limit(self.gen)
    offsets = [offset] * slots
    if not vector and (slots - 1) * o.k_step * size >= limit:   # per-element offsets beyond the immediate
      offsets = [self.op("v_add_nc_u32", s * o.k_step * size, offset) for s in range(slots)]
    return {"operand": o, "base": base, "offsets": offsets, "vector": vector}

  def load_operand(self, plan: dict):
    o, regs = plan["operand"], self.new("v", self.slots // 2)
    if plan["vector"]:
      for q in range(self.slots // 8):
        self.emit("global_load_b128", Slice(regs, 4 * q, 4), plan["offsets"][0], plan["base"], offset=16 * q or None,
                  mem="vload")
      return regs
    for s in range(self.slots):
      vaddr = plan["offsets"][s]
      imm = 0 if vaddr is not plan["offsets"][0] else s * o.k_step * 2
      name = "global_load_d16_hi_b16" if s % 2 else "global_load_d16_b16"
      self.emit(name, Half(regs, s // 2), vaddr, plan["base"], offset=imm or None, mem="vload", tied=bool(s % 2))
    return regs

  def k_loop(self, d, a: dict, b: dict) -> None:
    blocks = self.tiles.k // TILE
    counter, top = self.new("s"), self.code.new_label()
    self.emit("s_mov_b32", counter, rdna_alu.s32(-blocks))
    self.code.place(top)
    ra, rb = self.load_operand(a), self.load_operand(b)
    self.emit("v_wmma_f32_16x16x16_f16", d, ra, rb, d)
    for plan in (a, b):
      step = TILE * plan["operand"].k_step * 2
      self.emit("s_add_u32", Half(plan["base"], 0), Half(plan["base"], 0), step)
      self.emit("s_addc_u32", Half(plan["base"], 1), Half(plan["base"], 1), 0)
    self.emit("s_add_u32", counter, counter, 1)   # the carry out of the last block's add ends the loop
    self.emit("s_cbranch_scc0", top, ndefs=0)

  def store_tile(self, d, tile_row, tile_col, li, lh) -> None:
    o = self.tiles.out
    size = o.param.dtype.itemsize
    row_of_half = 1 if self.gen == 11 else 8       # rows of lanes 16-31 start 1 (gfx11) or 8 (gfx12) below
    row_step = 2 if self.gen == 11 else 1          # rows between consecutive result VGPRs
    col = self.op("s_mul_i32", tile_col, o.k_step * size, file="s") if not isinstance(tile_col, int) \
        else tile_col * o.k_step * size
    offset = self.lane_offset(o.base * size, tile_row, o.step * size,
                              [(li, o.k_step * size), (lh, row_of_half * o.step * size)])
    offset = self.op("v_add_nc_u32", col, offset) if not isinstance(col, int) or col else offset
    limit = offset_limit(self.gen)
    base = self.params[o.param.arg]
    for r in range(8):
      imm = r * row_step * o.step * size
      vaddr = offset if imm < limit else self.op("v_add_nc_u32", imm, offset)
      self.scopes.append({})
      self.vars[self.tiles.acc] = Half(d, r)
      data = rdna_alu.store_bits(self, self.tiles.epilogue)
      self.scopes.pop()
      self.emit(STORE_OP[size], vaddr, data, base, ndefs=0, offset=(imm if imm < limit else 0) or None,
                mem="vstore")
