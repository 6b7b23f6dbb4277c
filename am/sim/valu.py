"""Vector ALU instructions (VOP1, VOP2, VOP3, VOPC, VOP3SD, VOPD, VOP3P; WMMA in wmma.py) compiled into closures
over a group's registers.

The numeric semantics live in alu.py; here: operand access per encoding and the cross-lane / mask-producing forms.
Rules (RDNA3 / RDNA4 guides, "Vector ALU Operations"; modifier bits from LLVM 19 SIDefines.h SISrcMods):
  * results are written only in lanes whose EXEC bit is set; VOPC results (VCC, an SGPR, or EXEC for v_cmpx, which
    on gfx11+ writes EXEC only) and VOP3SD carries have 0 in inactive lanes (guide, unverified here);
  * VOP3 input modifiers: |x| (ABS) then -x (NEG) on float sources; output modifiers omod (*2, *4, /2) then clamp
    (to [0, 1], NaN -> 0) on float results (guide; the guide ignores omod in IEEE mode and with output denormals,
    which is not modelled: omod always applies); op_sel picks 16-bit halves (src: OP_SEL_0, dst: DST_OP_SEL);
  * 16-bit results are written to one half of the VGPR and keep the other ("On gfx10, all 16-bit instructions
    preserve the high bits", LLVM 19 GCNSubtarget::zeroesHigh16BitsOfDest);
  * VOPD issues two VOP2-like operations that read all their sources before either writes.
"""
from __future__ import annotations

import numpy as np

from .alu import CMP_OPS, VALU, Op
from .alu import fix_double_rounding as alu_fix
from .program import Inst
from .regs import DTYPES, EXEC, SCC, VCC, constant
from .wmma import compile_wmma

__all__ = ["compile_vector"]
NEG, ABS, OP_SEL_0, DST_OP_SEL = 1, 2, 4, 8
FLOATS = ("f16", "f32", "f64")
OMOD = {1: 2.0, 2: 4.0, 3: 0.5}


def width(ty: str) -> int:
  return np.dtype(DTYPES[ty]).itemsize


# ---- operands ---------------------------------------------------------------------------------------------------

def source(g, inst: Inst, name: str, ty: str):
  """Operand `name` read as type ty: a static array/scalar, or a callable when it must be computed per execution
  (64-bit VGPR pairs, input modifiers)."""
  mods = inst.vals.get(f"{name}_modifiers", 0) if inst.has(f"{name}_modifiers") else 0
  hi = bool(mods & OP_SEL_0) and width(ty) == 2
  if name == "imm":
    value = np.array(inst.vals["imm"] & ((1 << 8 * min(width(ty), 4)) - 1), dtype=DTYPES[f"u{8 * width(ty)}"])
    base = value.view(DTYPES[ty])
  elif name == "vdst":
    base = dst_view_or_reader(g, inst, ty)
  else:
    base = operand(g, inst, inst.code(name), ty, hi, inst.type_name(name))
  if mods & (NEG | ABS) and ty in FLOATS:
    return modified(base, bool(mods & ABS), bool(mods & NEG))
  if mods & (NEG | ABS) and ty not in FLOATS and inst.family != "VOP3P":
    raise inst.unsupported(f"input modifiers on the integer operand {name}")
  return base


def operand(g, inst: Inst, code: int, ty: str, hi: bool = False, type_name: str = ""):
  fp64 = ty == "f64" or "f64" in type_name.lower() or "FP64" in type_name
  value = constant(code, inst.literal, ty, fp64_literal=fp64)
  if value is not None:
    return np.asarray(value)          # a 0-d array: numpy's ufuncs take it faster than a numpy scalar
  if code >= 256:
    return g.vpair_reader(code - 256, ty) if width(ty) == 8 else g.vreg(code - 256, ty, hi)
  if code < 128 or code == SCC:
    return g.sbroadcast(code, ty, hi)
  raise inst.unsupported(f"operand code {code} (apertures and other special sources are not modelled)")


def dst_view_or_reader(g, inst: Inst, ty: str):
  index = inst.code("vdst") - 256
  if width(ty) == 8:
    return g.vpair_reader(index, ty)
  hi = bool(inst.vals.get("src0_modifiers", 0) & DST_OP_SEL) and width(ty) == 2
  return g.vreg(index, ty, hi)


def modified(base, absolute: bool, negate: bool):
  def apply(x):
    if absolute:
      x = np.abs(x)
    return -x if negate else x
  if callable(base):
    return lambda: apply(base())
  return lambda: apply(base)


def writer(g, inst: Inst, ty: str, name: str = "vdst"):
  """A callable storing a (W, L) result of type ty into the destination VGPR under EXEC, with omod / clamp."""
  index = inst.code(name) - 256
  post = output_modifiers(inst, ty)
  if width(ty) == 8:
    store = g.vpair_writer(index)
    dt = DTYPES[ty]
    if post is None:
      return lambda value: store(np.broadcast_to(np.asarray(value).astype(dt), (g.W, g.L)))
    return lambda value: store(np.broadcast_to(post(value).astype(dt), (g.W, g.L)))
  hi = name == "vdst" and bool(inst.vals.get("src0_modifiers", 0) & DST_OP_SEL) and width(ty) == 2
  view, EX, full = g.vreg(index, ty, hi), g.EX, g.full

  def store32(value):
    if full[0]:
      view[...] = value
    else:
      np.copyto(view, value, where=EX, casting="unsafe")
  if post is None:
    return store32
  return lambda value: store32(post(value))


def output_modifiers(inst: Inst, ty: str):
  omod = OMOD.get(inst.vals.get("omod", 0))
  clamp = bool(inst.vals.get("clamp", 0))
  if not omod and not clamp:
    return None
  if ty not in FLOATS:
    raise inst.unsupported("clamp / omod on an integer result")

  def post(x):
    x = np.asarray(x, dtype=DTYPES[ty])
    if omod:
      x = x * DTYPES[ty](omod)
    if clamp:
      x = np.where(np.isnan(x), 0, np.clip(x, 0, 1)).astype(DTYPES[ty])
    return x
  return post


# ---- generic map ------------------------------------------------------------------------------------------------

def compile_map(g, inst: Inst, op: Op):
  srcs = [source(g, inst, name, ty) for name, ty in zip(op.sources(), op.ins)]
  write = writer(g, inst, op.out)
  fn, nxt = op.fn, inst.nxt
  dynamic = [s for s in srcs if callable(s)]
  direct = (isinstance(fn, np.ufunc) and not dynamic and fn.nin == len(srcs) and width(op.out) <= 4
            and all(ty == op.out for ty in op.ins) and output_modifiers(inst, op.out) is None)
  if direct:
    return direct_ufunc(g, inst, op, srcs)
  if op.fma and not dynamic and output_modifiers(inst, op.out) is None:
    return fused_fma(g, inst, op, srcs)
  if not dynamic:
    if len(srcs) == 1:
      a = srcs[0]

      def op1():
        write(fn(a))
        return nxt
      return op1
    if len(srcs) == 2:
      a, b = srcs

      def op2():
        write(fn(a, b))
        return nxt
      return op2
    a, b, c = srcs

    def op3():
      write(fn(a, b, c))
      return nxt
    return op3
  getters = [s if callable(s) else (lambda v=s: v) for s in srcs]

  def opn():
    write(fn(*[get() for get in getters]))
    return nxt
  return opn


def direct_ufunc(g, inst: Inst, op: Op, srcs: list):
  """Fast path: a numpy ufunc writes straight into the destination view (masked by EXEC unless all lanes are on)."""
  fn, nxt, EX, full = op.fn, inst.nxt, g.EX, g.full
  hi = bool(inst.vals.get("src0_modifiers", 0) & DST_OP_SEL) and width(op.out) == 2
  d = g.vreg(inst.code("vdst") - 256, op.out, hi)
  if len(srcs) == 1:
    a = srcs[0]

    def op1():
      if full[0]:
        fn(a, out=d)
      else:
        fn(a, out=d, where=EX)
      return nxt
    return op1
  a, b = srcs[0], srcs[1]
  if len(srcs) == 2:
    def op2():
      if full[0]:
        fn(a, b, out=d)
      else:
        fn(a, b, out=d, where=EX)
      return nxt
    return op2
  c = srcs[2]

  def op3():
    if full[0]:
      fn(a, b, c, out=d)
    else:
      fn(a, b, c, out=d, where=EX)
    return nxt
  return op3


def fused_fma(g, inst: Inst, op: Op, srcs: list):
  """Fast path of v_fma / v_fmac / v_fmaak / v_fmamk (f32, f16): the f64 product is exact, the sum rounds once; the
  rare sums that land exactly on a midpoint of the narrow format go through alu.fix_double_rounding. Conversions
  go through preallocated f64 planes (numpy's mixed-type ufunc loops are several times slower)."""
  a, b, c = srcs
  low, half = (np.asarray(x) for x in op.fma)
  hi = bool(inst.vals.get("src0_modifiers", 0) & DST_OP_SEL) and width(op.out) == 2
  d, EX, full, nxt = g.vreg(inst.code("vdst") - 256, op.out, hi), g.EX, g.full, inst.nxt
  shape = (g.W, g.L)
  s, t = np.empty(shape, dtype=np.float64), np.empty(shape, dtype=np.float64)
  tail, tie = np.empty(shape, dtype=np.uint64), np.empty(shape, dtype=bool)
  bits = s.view(np.uint64)
  fix = alu_fix

  def fma():
    np.copyto(s, a)
    np.copyto(t, b)
    np.multiply(s, t, out=s)
    np.copyto(t, c)
    np.add(s, t, out=s)
    np.bitwise_and(bits, low, out=tail)
    np.equal(tail, half, out=tie)
    r = fix(s.copy(), a, b, c, low, half) if np.count_nonzero(tie) else s
    if full[0]:
      d[...] = r
    else:
      np.copyto(d, r, where=EX, casting="unsafe")
    return nxt
  return fma


def value_of(src):
  return src() if callable(src) else src


# ---- compares, carries, lane ops --------------------------------------------------------------------------------

def compile_cmp(g, inst: Inst):
  """V_CMP_<op>_<type> / V_CMPX: a lane mask into VCC (VOPC), the VOP3 sdst, or EXEC (cmpx)."""
  parts = inst.mnemonic.split("_")          # v_cmp_lt_f32, v_cmpx_class_f16
  op, ty = parts[2], parts[3]
  fn = CMP_OPS.get(op)
  if fn is None:
    raise inst.unsupported()
  a = source(g, inst, "src0", ty)
  b = source(g, inst, "src1", "u32" if op == "class" else ty)
  if parts[1] == "cmpx":
    dst = EXEC
  else:
    dst = inst.code("sdst") if inst.has("sdst") else VCC
  write, EX, nxt = g.mask_writer(dst), g.EX, inst.nxt

  def cmp():
    write(fn(value_of(a), value_of(b)) & EX)
    return nxt
  return cmp


def compile_carry(g, inst: Inst):
  """V_ADD_CO_U32 / V_SUB_CO_U32 / V_SUBREV_CO_U32 and the _CO_CI forms (carry in from VCC or src2): 32-bit results
  with the carry / borrow out as a lane mask (VCC in VOP2, sdst in VOP3SD)."""
  mn = inst.mnemonic
  a, b = source(g, inst, "src0", "u32"), source(g, inst, "src1", "u32")
  if mn.endswith("_ci_u32"):
    cin = g.mask_reader(inst.code("src2") if inst.has("src2") else VCC, inst.literal)
  else:
    cin = None
  cout = g.mask_writer(inst.code("sdst") if inst.has("sdst") else VCC)
  write, EX, nxt = writer(g, inst, "u32"), g.EX, inst.nxt
  kind = mn[2:].split("_")[0]                # add, sub, subrev

  def run():
    x = np.asarray(value_of(a)).astype(np.int64)
    y = np.asarray(value_of(b)).astype(np.int64)
    if kind == "subrev":
      x, y = y, x
    c = cin().astype(np.int64) if cin is not None else 0
    full = x + y + c if kind == "add" else x - y - c
    carry = (full >> 32) != 0 if kind == "add" else full < 0
    write(np.broadcast_to(full, EX.shape).astype(np.uint32))
    cout(np.broadcast_to(carry, EX.shape) & EX)
    return nxt
  return run


def compile_mad64(g, inst: Inst):
  """V_MAD_U64_U32 / V_MAD_I64_I32 (gfx12: V_MAD_CO_*): D.64 = S0 * S1 + S2.64, carry out of 64 bits in sdst."""
  signed = "_i64_i32" in inst.mnemonic
  a = source(g, inst, "src0", "i32" if signed else "u32")
  b = source(g, inst, "src1", "i32" if signed else "u32")
  c = source(g, inst, "src2", "i64" if signed else "u64")
  write, cout, EX, nxt = writer(g, inst, "u64"), g.mask_writer(inst.code("sdst")), g.EX, inst.nxt

  def run():
    x, y, z = value_of(a), value_of(b), value_of(c)
    prod = np.multiply(x, y, dtype=np.int64 if signed else np.uint64)
    if signed:
      total = prod + z
      carry = ((prod >= 0) == (np.asarray(z) >= 0)) & ((total >= 0) != (prod >= 0))
    else:
      total = prod + z
      carry = total < prod
    write(np.broadcast_to(total, EX.shape).view(np.uint64) if signed else np.broadcast_to(total, EX.shape))
    cout(np.broadcast_to(carry, EX.shape) & EX)
    return nxt
  return run


def compile_cndmask(g, inst: Inst):
  """V_CNDMASK_B32 / _B16: D = mask ? S1 : S0, mask from VCC (VOP2) or src2 (VOP3)."""
  ty = "u16" if inst.mnemonic.endswith("b16") else "u32"
  mods = inst.vals.get("src0_modifiers", 0) | inst.vals.get("src1_modifiers", 0)
  sty = ("f16" if ty == "u16" else "f32") if mods & (NEG | ABS) else ty       # plain bits unless |x| / -x
  a, b = source(g, inst, "src0", sty), source(g, inst, "src1", sty)
  mask = g.mask_reader(inst.code("src2") if inst.has("src2") else VCC, inst.literal)
  write, nxt = writer(g, inst, sty), inst.nxt

  def run():
    write(np.where(mask(), value_of(b), value_of(a)))
    return nxt
  return run


def compile_lane(g, inst: Inst):
  """V_READFIRSTLANE_B32 (SGPR = the first active lane, lane 0 if none), V_READLANE_B32, V_WRITELANE_B32."""
  mn, nxt, EX, rows = inst.mnemonic, inst.nxt, g.EX, g.rows
  if mn in ("v_readfirstlane_b32", "v_readlane_b32") and inst.code("vdst") in (EXEC, EXEC + 1):
    raise inst.unsupported("writing EXEC through a lane read is not modelled")
  if mn == "v_readfirstlane_b32":
    d = g.scol(inst.code("vdst"), "u32")
    code = inst.code("src0")
    if code < 256:
      value = operand(g, inst, code, "u32")

      def scalar():
        d[...] = np.asarray(value).reshape(-1)[0] if np.ndim(value) == 0 else value[:, 0]
        return nxt
      return scalar
    src = g.vreg(code - 256, "u32")

    def first():
      d[...] = src[rows, EX.argmax(axis=1)]
      return nxt
    return first
  lanes = source(g, inst, "src1", "u32")
  if mn == "v_readlane_b32":
    d, src = g.scol(inst.code("vdst"), "u32"), g.vreg(inst.code("src0") - 256, "u32")

    def readlane():
      d[...] = src[rows, np.asarray(value_of(lanes)).reshape(-1) % g.L]
      return nxt
    return readlane
  dst = g.vreg(inst.code("vdst") - 256, "u32")
  value = source(g, inst, "src0", "u32")

  def writelane():
    dst[rows, np.asarray(value_of(lanes)).reshape(-1) % g.L] = np.asarray(value_of(value)).reshape(-1)
    return nxt
  return writelane


def compile_mbcnt(g, inst: Inst):
  """V_MBCNT_LO_U32_B32 / _HI: S1 + the number of set bits of S0 below this lane (lanes 0-31 / 32-63)."""
  lanes = np.arange(g.L, dtype=np.uint64)
  if inst.mnemonic.startswith("v_mbcnt_lo"):
    below = (np.uint64(1) << np.minimum(lanes, np.uint64(32))) - np.uint64(1)
  else:
    below = np.where(lanes >= 32, (np.uint64(1) << (lanes - np.uint64(32))) - np.uint64(1), np.uint64(0))
  below = below.astype(np.uint32)
  a, b = source(g, inst, "src0", "u32"), source(g, inst, "src1", "u32")
  write, nxt = writer(g, inst, "u32"), inst.nxt

  def run():
    bits = np.bitwise_and(value_of(a), below)
    write(np.bitwise_count(bits).astype(np.uint32) + value_of(b))
    return nxt
  return run


def compile_swap(g, inst: Inst):
  """V_SWAP_B32: exchange vdst and src0 in active lanes."""
  x, y = g.vreg(inst.code("vdst") - 256, "u32"), g.vreg(inst.code("src0") - 256, "u32")
  EX, nxt = g.EX, inst.nxt

  def run():
    old = x.copy()
    np.copyto(x, y, where=EX)
    np.copyto(y, old, where=EX)
    return nxt
  return run


# ---- VOPD ---------------------------------------------------------------------------------------------------------

class Half:
  """One half (X or Y) of a VOPD instruction, seen through the Inst interface the operand helpers use."""

  def __init__(self, inst: Inst, suffix: str, mnemonic: str):
    self.inst, self.suffix, self.mnemonic = inst, suffix, mnemonic
    self.literal, self.family, self.text, self.pc, self.nxt = inst.literal, "VOP2", inst.text, inst.pc, inst.nxt
    names = {"vdst": f"vdst{suffix}", "src0": f"src0{suffix}", "src1": f"vsrc1{suffix}", "imm": "imm"}
    self.map = {k: v for k, v in names.items() if inst.has(v) or v == "imm" and "imm" in inst.vals}
    self.vals = {k: inst.vals[v] for k, v in self.map.items()}

  def has(self, name):
    return name in self.map

  def code(self, name):
    return self.inst.code(self.map[name])

  def type_name(self, name):
    return self.inst.type_name(self.map[name])

  def unsupported(self, why=""):
    return self.inst.unsupported(why)


def compile_vopd(g, inst: Inst):
  record = inst.d.instr.record                          # V_DUAL_ADD_F32_e32_X_MUL_F32_e32_gfx11
  body = record[len("V_DUAL_"):record.rindex("_gfx")]
  x_name, y_name = body.split("_X_")
  halves = [Half(inst, "X", vopd_mnemonic(x_name)), Half(inst, "Y", vopd_mnemonic(y_name))]
  parts = []
  for half in halves:
    if half.mnemonic == "v_cndmask_b32":
      a, b = source(g, half, "src0", "u32"), source(g, half, "src1", "u32")
      mask = g.mask_reader(VCC)
      parts.append((lambda a=a, b=b, mask=mask: np.where(mask(), value_of(b), value_of(a)), writer(g, half, "u32")))
      continue
    op = VALU.get(half.mnemonic)
    if op is None:
      raise inst.unsupported(f"VOPD half {half.mnemonic}")
    srcs = [source(g, half, name, ty) for name, ty in zip(op.sources(), op.ins)]
    parts.append((lambda op=op, srcs=srcs: op.fn(*[value_of(s) for s in srcs]), writer(g, half, op.out)))
  (fx, wx), (fy, wy) = parts
  nxt = inst.nxt

  def run():
    rx, ry = fx(), fy()
    wx(rx)
    wy(ry)
    return nxt
  return run


def vopd_mnemonic(part: str) -> str:
  name = part[:-len("_e32")] if part.endswith("_e32") else part
  return "v_" + name.lower().replace("_dpp", "")


# packed 16-bit math (VOP3P): each half of the result is the scalar op on the halves op_sel (low result) and
# op_sel_hi (high result) pick from each source; neg_lo / neg_hi negate float halves (RDNA3/RDNA4 ISA guides,
# "Packed Math"; SISrcMods OP_SEL_0 / OP_SEL_1 / NEG / NEG_HI)
PACKED = {"v_pk_add_f16": "v_add_f16", "v_pk_mul_f16": "v_mul_f16", "v_pk_fma_f16": "v_fma_f16",
          "v_pk_max_f16": "v_max_f16", "v_pk_min_f16": "v_min_f16", "v_pk_max_num_f16": "v_max_f16",
          "v_pk_min_num_f16": "v_min_f16", "v_pk_add_u16": "v_add_nc_u16", "v_pk_add_i16": "v_add_nc_i16",
          "v_pk_sub_u16": "v_sub_nc_u16", "v_pk_sub_i16": "v_sub_nc_i16", "v_pk_mul_lo_u16": "v_mul_lo_u16",
          "v_pk_max_u16": "v_max_u16", "v_pk_max_i16": "v_max_i16", "v_pk_min_u16": "v_min_u16",
          "v_pk_min_i16": "v_min_i16", "v_pk_lshlrev_b16": "v_lshlrev_b16", "v_pk_lshrrev_b16": "v_lshrrev_b16",
          "v_pk_ashrrev_i16": "v_ashrrev_i16"}
NEG_HI, OP_SEL_1 = 2, 8


def compile_packed(g, inst: Inst):
  name = PACKED.get(inst.mnemonic)
  if name is None:
    raise inst.unsupported()
  if inst.vals.get("clamp", 0):
    raise inst.unsupported("clamp on packed math")
  op = VALU[name]
  halves = ([], [])
  for src, ty in zip(op.sources(), op.ins):
    code, mods = inst.code(src), inst.vals.get(f"{src}_modifiers", 0)
    if code < 256 and code >= 128 and code != 128:
      raise inst.unsupported("constant operands of packed math (their half placement is not modelled)")
    for k, (sel_bit, neg_bit) in enumerate(((OP_SEL_0, NEG), (OP_SEL_1, NEG_HI))):
      base = np.asarray(DTYPES[ty](0)) if code == 128 else operand(g, inst, code, ty, bool(mods & sel_bit))
      halves[k].append(modified(base, False, True) if mods & neg_bit and ty in FLOATS else base)
  d = inst.code("vdst") - 256
  lo, hi, EX, full, nxt, fn = g.vreg(d, op.out), g.vreg(d, op.out, True), g.EX, g.full, inst.nxt, op.fn

  def run():
    r_lo = fn(*[value_of(s) for s in halves[0]])
    r_hi = fn(*[value_of(s) for s in halves[1]])
    if full[0]:
      lo[...] = r_lo
      hi[...] = r_hi
    else:
      np.copyto(lo, r_lo, where=EX, casting="unsafe")
      np.copyto(hi, r_hi, where=EX, casting="unsafe")
    return nxt
  return run


SPECIAL = {"v_cndmask_b32": compile_cndmask, "v_cndmask_b16": compile_cndmask, "v_readfirstlane_b32": compile_lane,
           "v_readlane_b32": compile_lane, "v_writelane_b32": compile_lane, "v_mbcnt_lo_u32_b32": compile_mbcnt,
           "v_mbcnt_hi_u32_b32": compile_mbcnt, "v_swap_b32": compile_swap, "v_mad_u64_u32": compile_mad64,
           "v_mad_i64_i32": compile_mad64, "v_mad_co_u64_u32": compile_mad64, "v_mad_co_i64_i32": compile_mad64}
NOPS = ("v_nop", "v_pipeflush")


def compile_vector(g, inst: Inst):
  mn = inst.mnemonic
  if inst.family == "VOPD":
    return compile_vopd(g, inst)
  if inst.family == "VOP3P":
    return compile_wmma(g, inst) if mn.startswith("v_wmma_") else compile_packed(g, inst)
  if mn in NOPS:
    return lambda nxt=inst.nxt: nxt
  if mn.startswith(("v_cmp_", "v_cmpx_")):
    return compile_cmp(g, inst)
  if mn in SPECIAL:
    return SPECIAL[mn](g, inst)
  if "_co_" in mn and mn.startswith(("v_add", "v_sub")):
    return compile_carry(g, inst)
  op = VALU.get(mn)
  if op is None:
    raise inst.unsupported()
  return compile_map(g, inst, op)
