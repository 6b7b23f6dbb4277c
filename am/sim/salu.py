"""Scalar instructions (SOP1, SOP2, SOPC, SOPK, SOPP): scalar ALU, EXEC manipulation, branches, barriers, waits.

Each scalar value is a (W,) array, one entry per wave of the group. SCC rules as the RDNA3 / RDNA4 guides' "Scalar
ALU Operations" describe them (guide, unverified here): logic, shift, bit-count and bfe ops set SCC = result != 0;
unsigned add / sub set the carry / borrow, signed ones the overflow; min / max set SCC when S0 is chosen; compares
and bitcmp set SCC; moves, multiplies, cselect and bfm leave it. Which instructions define SCC at all matches LLVM 19
SOPInstructions.td (Defs = [SCC]); the gfx12 spellings come from the same file (s_add_co_u32 = s_add_u32,
s_add_co_ci_u32 = s_addc_u32, s_addk_co_i32 = s_addk_i32). Branch offsets are signed dwords from the next
instruction (LLVM SOPPBrTarget). Counter fields of s_waitcnt / s_wait_loadcnt_dscnt come from the generated WAITCNT
table (LLVM AMDGPUBaseInfo's encodings; llvm-19-doc gfx11_waitcnt / gfx12 pages).
"""
from __future__ import annotations

import numpy as np

from .errors import BarrierError, SimError
from .program import Inst, sext16
from .regs import DTYPES, EXEC, SCC, VCC, constant

__all__ = ["END", "BARRIER", "SPLIT", "compile_scalar"]
END, BARRIER, SPLIT = -1, -2, -3
U32, U64, I32, I64 = np.uint32, np.uint64, np.int32, np.int64
M32 = U64(0xFFFFFFFF)


# ---- sources and destinations -----------------------------------------------------------------------------------

def ssrc(g, inst: Inst, name: str, dtype: str):
  code = inst.code(name)
  value = constant(code, inst.literal, dtype, fp64_literal=dtype == "f64")
  if value is not None:
    return value
  if 235 <= code <= 238:
    raise inst.unsupported("aperture registers (src_shared_base ...) are not modelled")
  return g.scol(code, dtype)


def carry_add(a, b, c=None):
  """32-bit a + b (+ carry in c): (sum, carry out). Wrapping uint32 arithmetic: the sum carried iff it is below an
  addend."""
  r = np.add(a, b, dtype=U32)
  carry = r < a
  if c is not None:
    r2 = r + c
    carry = carry | (r2 < r)
    r = r2
  return r, carry


def carry_sub(a, b, c=None):
  """32-bit a - b (- borrow in c): (difference, borrow out)."""
  r = np.subtract(a, b, dtype=U32)
  borrow = np.greater(b, a)
  if c is not None:
    borrow = borrow | (np.greater(c, r))
    r = r - c
  return r, borrow


def signed_overflow(a, b, r, sub=False):
  a, b, r = np.asarray(a).astype(I64), np.asarray(b).astype(I64), np.asarray(r).view(I32).astype(I64)
  exact = a - b if sub else a + b
  return (exact != r).astype(U32)


def nz(r):
  return (np.asarray(r) != 0).astype(U32)


def bfe(a, b, bits: int, signed: bool):
  off = np.asarray(b).astype(U64) & U64(bits - 1)
  width = (np.asarray(b).astype(U64) >> U64(16)) & U64(0x7F)
  width = np.minimum(width, U64(bits))
  a64 = np.asarray(a).astype(U64)
  mask = np.where(width >= 64, U64(0xFFFFFFFFFFFFFFFF), (U64(1) << np.minimum(width, U64(63))) - U64(1))
  field = (a64 >> off) & mask
  if signed:
    top = np.where(width > 0, U64(1) << np.maximum(width, U64(1)) - U64(1), U64(0))
    field = np.where(field & top, field | ~mask, field)
  return field if bits == 64 else field & M32


def shift_amount(b, bits):
  return np.asarray(b).astype(U64) & U64(bits - 1)


# SOP2: name -> (source dtype, fn(a, b, scc) -> (result, scc or None)); results are cast into the destination dtype
def _sop2_table() -> dict:
  t = {}
  for p in ("", "co_"):
    t[f"s_add_{p}u32"] = ("u32", lambda a, b, c: carry_add(a, b))
    t[f"s_sub_{p}u32"] = ("u32", lambda a, b, c: carry_sub(a, b))
  for name in ("s_add_i32", "s_add_co_i32"):
    t[name] = ("i32", lambda a, b, c: (np.asarray(a) + b, signed_overflow(a, b, np.asarray(a) + b)))
  for name in ("s_sub_i32", "s_sub_co_i32"):
    t[name] = ("i32", lambda a, b, c: (np.asarray(a) - b, signed_overflow(a, b, np.asarray(a) - b, sub=True)))
  for name in ("s_addc_u32", "s_add_co_ci_u32"):
    t[name] = ("u32", lambda a, b, c: carry_add(a, b, c))
  for name in ("s_subb_u32", "s_sub_co_ci_u32"):
    t[name] = ("u32", lambda a, b, c: carry_sub(a, b, c))
  t["s_add_nc_u64"] = ("u64", lambda a, b, c: (np.asarray(a) + b, None))
  t["s_sub_nc_u64"] = ("u64", lambda a, b, c: (np.asarray(a) - b, None))
  t["s_mul_u64"] = ("u64", lambda a, b, c: (np.asarray(a) * b, None))
  for size, dt in ((32, "32"), (64, "64")):
    ty = f"u{dt}"
    t[f"s_and_b{size}"] = (ty, lambda a, b, c: (np.asarray(a) & b, nz(np.asarray(a) & b)))
    t[f"s_or_b{size}"] = (ty, lambda a, b, c: (np.asarray(a) | b, nz(np.asarray(a) | b)))
    t[f"s_xor_b{size}"] = (ty, lambda a, b, c: (np.asarray(a) ^ b, nz(np.asarray(a) ^ b)))
    t[f"s_nand_b{size}"] = (ty, lambda a, b, c: (~(np.asarray(a) & b), nz(~(np.asarray(a) & b))))
    t[f"s_nor_b{size}"] = (ty, lambda a, b, c: (~(np.asarray(a) | b), nz(~(np.asarray(a) | b))))
    t[f"s_xnor_b{size}"] = (ty, lambda a, b, c: (~(np.asarray(a) ^ b), nz(~(np.asarray(a) ^ b))))
    t[f"s_and_not1_b{size}"] = (ty, lambda a, b, c: _logic(np.asarray(a) & ~np.asarray(b)))
    t[f"s_or_not1_b{size}"] = (ty, lambda a, b, c: _logic(np.asarray(a) | ~np.asarray(b)))
    t[f"s_lshl_b{size}"] = (ty, lambda a, b, c, n=size: _shift(np.left_shift, a, b, n))
    t[f"s_lshr_b{size}"] = (ty, lambda a, b, c, n=size: _shift(np.right_shift, a, b, n))
    t[f"s_ashr_i{size}"] = (f"i{dt}", lambda a, b, c, n=size: _shift(np.right_shift, a, b, n))
    t[f"s_cselect_b{size}"] = (ty, lambda a, b, c: (np.where(np.asarray(c) != 0, a, b), None))
    t[f"s_bfm_b{size}"] = (ty, lambda a, b, c, n=size: _bfm(a, b, n))
    t[f"s_bfe_u{size}"] = (ty, lambda a, b, c, n=size: (bfe(a, b, n, False), nz(bfe(a, b, n, False))))
    t[f"s_bfe_i{size}"] = (f"i{dt}", lambda a, b, c, n=size: (bfe(a, b, n, True), nz(bfe(a, b, n, True))))
  for ty in ("i32", "u32"):
    t[f"s_min_{ty}"] = (ty, lambda a, b, c: (np.minimum(a, b), (np.asarray(a) < b).astype(U32)))
    t[f"s_max_{ty}"] = (ty, lambda a, b, c: (np.maximum(a, b), (np.asarray(a) > b).astype(U32)))
  t["s_mul_i32"] = ("i32", lambda a, b, c: (np.asarray(a) * b, None))
  t["s_mul_hi_u32"] = ("u32", lambda a, b, c: ((np.asarray(a).astype(U64) * b) >> U64(32), None))
  t["s_mul_hi_i32"] = ("i32", lambda a, b, c: ((np.asarray(a).astype(I64) * b) >> I64(32), None))
  t["s_absdiff_i32"] = ("i32", lambda a, b, c: (np.abs(np.asarray(a).astype(I64) - b), nz(np.asarray(a) != b)))
  for n in (1, 2, 3, 4):
    t[f"s_lshl{n}_add_u32"] = ("u32", lambda a, b, c, n=n: _lshl_add(a, b, n))
  t["s_pack_ll_b32_b16"] = ("u32", lambda a, b, c: ((np.asarray(a) & 0xFFFF) | (np.asarray(b) << U32(16)), None))
  t["s_pack_lh_b32_b16"] = ("u32", lambda a, b, c: ((np.asarray(a) & 0xFFFF) | (np.asarray(b) & 0xFFFF0000), None))
  t["s_pack_hh_b32_b16"] = ("u32", lambda a, b, c: ((np.asarray(a) >> U32(16)) | (np.asarray(b) & 0xFFFF0000), None))
  t["s_pack_hl_b32_b16"] = ("u32", lambda a, b, c: ((np.asarray(a) >> U32(16)) | (np.asarray(b) << U32(16)), None))
  return t


def _logic(r):
  return r, nz(r)


def _shift(op, a, b, bits):
  a = np.asarray(a)
  r = op(a, shift_amount(b, bits).astype(a.dtype))
  return r, nz(r)


def _bfm(a, b, bits):
  width, off = shift_amount(a, bits), shift_amount(b, bits)
  mask = (U64(1) << width) - U64(1)
  return mask << off, None


def _lshl_add(a, b, n):
  full = (np.asarray(a).astype(U64) << U64(n)) + np.asarray(b).astype(U64)
  return full & M32, (full > M32).astype(U32)


SOP2 = _sop2_table()
CMP = {"eq": np.equal, "lg": np.not_equal, "gt": np.greater, "ge": np.greater_equal, "lt": np.less,
       "le": np.less_equal, "ne": np.not_equal}
FCMP = {"o": lambda a, b: ~(np.isnan(a) | np.isnan(b)), "u": lambda a, b: np.isnan(a) | np.isnan(b),
        "neq": lambda a, b: ~np.equal(a, b), "nge": lambda a, b: ~np.greater_equal(a, b),
        "ngt": lambda a, b: ~np.greater(a, b), "nle": lambda a, b: ~np.less_equal(a, b),
        "nlg": lambda a, b: ~(np.less(a, b) | np.greater(a, b)), "nlt": lambda a, b: ~np.less(a, b),
        "lg": lambda a, b: np.less(a, b) | np.greater(a, b)}
SAVEEXEC = {"and": lambda s, e: s & e, "or": lambda s, e: s | e, "xor": lambda s, e: s ^ e,
            "and_not0": lambda s, e: ~s & e, "and_not1": lambda s, e: s & ~e, "or_not0": lambda s, e: ~s | e,
            "or_not1": lambda s, e: s | ~e, "nand": lambda s, e: ~(s & e), "nor": lambda s, e: ~(s | e),
            "xnor": lambda s, e: ~(s ^ e)}


def finish(g, inst: Inst, dst_code: int, run):
  """Wrap `run` (which writes its destination) so an EXEC destination refreshes the lane mask."""
  nxt = inst.nxt
  if dst_code in (EXEC, EXEC + 1):
    def op():
      run()
      g.sync_exec()
      return nxt
    return op

  def plain():
    run()
    return nxt
  return plain


def compile_sop2(g, inst: Inst):
  spec = SOP2.get(inst.mnemonic)
  if spec is None:
    raise inst.unsupported()
  dtype, fn = spec
  a = ssrc(g, inst, "src0", sized(dtype, inst.width("src0")))
  b = ssrc(g, inst, "src1", sized(dtype, inst.width("src1")))      # 32-bit shift counts of the _b64 shifts
  code = inst.code("sdst")
  d, scc = g.scol(code, sized(dtype, inst.width("sdst"))), g.S[:, SCC]

  def run():
    r, c = fn(a, b, scc)
    d[...] = r
    if c is not None:
      scc[...] = c
  return finish(g, inst, code, run)


def sized(dtype: str, bits: int) -> str:
  """The operand's own width with the table's signedness (u64 table entry, 32-bit shift-count operand -> u32)."""
  return f"{dtype[0]}{bits}"


def compile_sopc(g, inst: Inst):
  parts = inst.mnemonic.split("_")     # s_cmp_lt_u32, s_bitcmp1_b64
  scc = g.S[:, SCC]
  if parts[1].startswith("bitcmp"):
    bits = int(parts[2][1:])
    a, b = ssrc(g, inst, "src0", f"u{bits}"), ssrc(g, inst, "src1", "u32")
    want = U64(parts[1][-1] == "1")

    def run():
      scc[...] = (np.asarray(a).astype(U64) >> (np.asarray(b).astype(U64) & U64(bits - 1)) & U64(1)) == want
  else:
    op, ty = parts[2], parts[3]
    fn = CMP.get(op) if ty[0] in "iu" or op not in FCMP else FCMP[op]
    if fn is None:
      raise inst.unsupported()
    a, b = ssrc(g, inst, "src0", ty), ssrc(g, inst, "src1", ty)

    def run():
      scc[...] = fn(a, b)
  return finish(g, inst, SCC, run)


def compile_sop1(g, inst: Inst):
  mn = inst.mnemonic
  if mn.endswith("saveexec_b32") or mn.endswith("saveexec_b64") or "_wrexec_" in mn:
    return compile_saveexec(g, inst)
  if mn in ("s_getpc_b64", "s_setpc_b64", "s_swappc_b64"):
    return compile_pc(g, inst)
  if mn.startswith("s_barrier_signal") and not mn.endswith("isfirst"):
    return compile_barrier_signal(g, inst)
  bits = inst.width("src0")
  code = inst.code("sdst")
  d, scc = g.scol(code, f"u{inst.width('sdst')}"), g.S[:, SCC]
  a = ssrc(g, inst, "src0", f"u{bits}" if not mn.startswith(("s_sext", "s_abs")) else "i32")
  fn = sop1_fn(mn, bits, d)
  if fn is None:
    raise inst.unsupported()

  def run():
    r, c = fn(a, scc)
    d[...] = r
    if c is not None:
      scc[...] = c
  return finish(g, inst, code, run)


def sop1_fn(mn: str, bits: int, d):
  base = mn.rsplit("_", 1)[0]
  if base == "s_mov":
    return lambda a, c: (a, None)
  if base == "s_cmov":
    return lambda a, c: (np.where(np.asarray(c) != 0, a, d), None)
  if base == "s_not":
    return lambda a, c: (~np.asarray(a), nz(~np.asarray(a)))
  if base == "s_brev":
    return lambda a, c: (bit_reverse(np.asarray(a), bits), None)
  if mn.startswith(("s_bcnt0_i32", "s_bcnt1_i32")):
    ones = mn.startswith("s_bcnt1")
    return lambda a, c: _bcnt(a, bits, ones)
  if mn.startswith("s_ctz_i32"):
    return lambda a, c: (ctz(np.asarray(a), bits), None)
  if mn.startswith("s_clz_i32"):
    return lambda a, c: (clz(np.asarray(a), bits), None)
  if mn == "s_sext_i32_i8":
    return lambda a, c: (np.asarray(a).astype(np.int8).astype(I32), None)
  if mn == "s_sext_i32_i16":
    return lambda a, c: (np.asarray(a).astype(np.int16).astype(I32), None)
  if mn == "s_abs_i32":
    return lambda a, c: (np.abs(np.asarray(a)), nz(np.abs(np.asarray(a))))
  if base in ("s_bitset0", "s_bitset1"):
    one = base.endswith("1")
    return lambda a, c: _bitset(d, a, bits, one)
  return None


def _bcnt(a, bits, ones):
  n = popcount(np.asarray(a).astype(U64))
  r = n if ones else U64(bits) - n
  return r, nz(r)


def _bitset(d, a, bits, one):
  bit = U64(1) << (np.asarray(a).astype(U64) & U64(bits - 1))
  cur = np.asarray(d).astype(U64)
  return (cur | bit) if one else (cur & ~bit), None


def popcount(x):
  return np.bitwise_count(x).astype(U64) if hasattr(np, "bitwise_count") else _popcount(x)


def _popcount(x):
  x = np.asarray(x).astype(U64)
  return np.array([bin(int(v)).count("1") for v in x.ravel()], dtype=U64).reshape(x.shape)


def bit_reverse(x, bits):
  x = x.astype(U64)
  out = np.zeros_like(x)
  for i in range(bits):
    out |= ((x >> U64(i)) & U64(1)) << U64(bits - 1 - i)
  return out


def ctz(x, bits):
  """Index of the lowest set bit, -1 (all ones) for zero (S_CTZ_I32_B32 / V_CTZ_I32_B32)."""
  x = x.astype(U64)
  low = x & (~x + U64(1))
  idx = np.where(low == 0, -1, np.log2(np.maximum(low, U64(1)).astype(np.float64)).astype(I64))
  return idx.astype(I32)


def clz(x, bits):
  """Count of leading zeros from bit bits-1, -1 for zero (S_CLZ_I32_U32 / V_CLZ_I32_U32)."""
  x = x.astype(U64)
  top = np.floor(np.log2(np.maximum(x, U64(1)).astype(np.float64))).astype(I64)
  top = np.minimum(top, bits - 1)
  top = np.where(U64(1) << top.astype(U64) > x, top - 1, top)     # float64 rounding of wide values
  return np.where(x == 0, -1, bits - 1 - top).astype(I32)


def compile_saveexec(g, inst: Inst):
  """S_<op>_SAVEEXEC: sdst = EXEC; EXEC = op(S0, EXEC); SCC = EXEC != 0. The _WREXEC forms write the new EXEC to
  sdst instead of the old one."""
  mn = inst.mnemonic
  bits = 64 if mn.endswith("64") else 32
  ty = f"u{bits}"
  op = mn[2:].rsplit("_", 2)[0]
  fn = SAVEEXEC.get(op)
  if fn is None:
    raise inst.unsupported()
  a = ssrc(g, inst, "src0", ty)
  code = inst.code("sdst")
  d, ex, scc = g.scol(code, ty), g.scol(EXEC, ty), g.S[:, SCC]
  wrexec = "_wrexec_" in mn

  def run():
    old = ex.copy()
    new = fn(np.asarray(a), old)
    ex[...] = new
    d[...] = new if wrexec else old
    scc[...] = nz(new)
    g.sync_exec()
  return finish(g, inst, code, run)


def compile_pc(g, inst: Inst):
  """S_GETPC_B64: sdst = address of the next instruction; S_SETPC_B64: jump to S0; S_SWAPPC_B64: both."""
  base, nxt, mn = g.ctx.code_address, inst.nxt, inst.mnemonic
  if mn == "s_getpc_b64":
    d = g.scol(inst.code("sdst"), "u64")

    def getpc():
      d[...] = U64(base + nxt)
      return nxt
    return getpc
  src = ssrc(g, inst, "src0", "u64")
  d = g.scol(inst.code("sdst"), "u64") if mn == "s_swappc_b64" else None

  size = len(g.ctx.program.code)

  def setpc():
    targets = np.unique(np.asarray(src))
    if len(targets) != 1:
      raise inst.fail("waves of one group jump to different addresses (divergent s_setpc is not modelled)")
    target = int(targets[0]) - base
    if target % 4 or not 0 <= target < size:
      raise inst.fail(f"jump to {int(targets[0]):#x}, outside the kernel code at {base:#x}..{base + size:#x}")
    if d is not None:
      d[...] = U64(base + nxt)
    return target
  return setpc


def compile_sopk(g, inst: Inst):
  mn = inst.mnemonic
  imm = inst.vals.get("simm16", 0)
  if mn.startswith("s_waitcnt_"):
    return compile_wait(g, inst)
  if mn in ("s_version", "s_setprio"):
    return lambda nxt=inst.nxt: nxt
  if mn == "s_call_b64":
    d, base = g.scol(inst.code("sdst"), "u64"), g.ctx.code_address
    target = inst.nxt + 4 * sext16(imm)

    def call():
      d[...] = U64(base + inst.nxt)
      return target
    return call
  code = inst.code("sdst")
  scc = g.S[:, SCC]
  if mn.startswith("s_cmpk_"):
    op, ty = mn.split("_")[2], mn.split("_")[3]
    value = DTYPES[ty](sext16(imm) if ty == "i32" else imm)
    a = g.scol(code, ty)

    def cmpk():
      scc[...] = CMP[op](a, value)
    return finish(g, inst, SCC, cmpk)
  d = g.scol(code, "i32")
  k = I32(sext16(imm))
  if mn == "s_movk_i32":
    def run():
      d[...] = k
  elif mn == "s_cmovk_i32":
    def run():
      d[...] = np.where(scc != 0, k, d)
  elif mn in ("s_addk_i32", "s_addk_co_i32"):
    def run():
      r = d + k
      scc[...] = signed_overflow(d, k, r)
      d[...] = r
  elif mn == "s_mulk_i32":
    def run():
      d[...] = d * k
  else:
    raise inst.unsupported()
  return finish(g, inst, code, run)


# ---- program flow ---------------------------------------------------------------------------------------------

def compile_sopp(g, inst: Inst):
  mn, nxt = inst.mnemonic, inst.nxt
  if mn in NOPS:
    return lambda: nxt
  if mn == "s_endpgm":
    return lambda: END
  if mn.startswith(("s_waitcnt", "s_wait_")):
    return compile_wait(g, inst)
  if mn == "s_sendmsg" and inst.vals.get("simm16") == 3:     # MSG_DEALLOC_VGPRS: a hint before s_endpgm
    return lambda: nxt
  if mn in ("s_barrier", "s_barrier_wait"):
    return compile_barrier(g, inst)
  if mn == "s_code_end":
    raise inst.fail("executed s_code_end, the padding after the kernels: the kernel ran past its s_endpgm")
  if mn == "s_trap":
    raise inst.fail(f"s_trap {inst.vals.get('simm16', 0)}: the kernel trapped (no trap handler is modelled)")
  if mn == "s_branch" or mn.startswith("s_cbranch_"):
    return compile_branch(g, inst)
  raise inst.unsupported()


NOPS = ("s_nop", "s_delay_alu", "s_clause", "s_waitcnt_depctr", "s_set_inst_prefetch_distance", "s_icache_inv",
        "s_setprio", "s_sleep", "s_wait_alu", "s_singleuse_vdst", "s_wait_idle", "s_ttracedata_imm", "s_wait_event",
        "s_incperflevel", "s_decperflevel", "s_wait_expcnt", "s_wait_samplecnt", "s_wait_bvhcnt")


def compile_branch(g, inst: Inst):
  target = inst.nxt + 4 * sext16(inst.vals["simm16"])
  if not 0 <= target < len(g.ctx.program.code):
    raise inst.fail(f"branch target {target:#x} is outside the kernel code")
  nxt, mn = inst.nxt, inst.mnemonic
  if mn == "s_branch":
    return lambda: target
  cond = branch_condition(g, mn[len("s_cbranch_"):], inst)
  if g.W == 1:
    def uniform():
      return target if cond()[0] else nxt
    return uniform

  def divergent():
    taken = cond()
    if taken.all():
      return target
    if not taken.any():
      return nxt
    g.split = (taken, target, nxt)
    return SPLIT
  return divergent


def branch_condition(g, kind: str, inst: Inst):
  scc, EX = g.S[:, SCC], g.EX
  vcc = g.S[:, VCC:VCC + g.nw]
  conditions = {"scc0": lambda: scc == 0, "scc1": lambda: scc != 0, "vccz": lambda: ~vcc.any(axis=1),
                "vccnz": lambda: vcc.any(axis=1), "execz": lambda: ~EX.any(axis=1),
                "execnz": lambda: EX.any(axis=1)}
  if kind not in conditions:
    raise inst.unsupported()
  return conditions[kind]


def compile_barrier(g, inst: Inst):
  """S_BARRIER (gfx11) / S_BARRIER_WAIT (gfx12): the group stops here until every wave of its workgroups that has not
  ended arrives (wave.py releases it)."""
  nxt = inst.nxt

  def barrier():
    if g.ctx.program.generation == 11:
      check_lds_stores(g, inst)
    g.pc = nxt
    return BARRIER
  return barrier


def compile_barrier_signal(g, inst: Inst):
  """S_BARRIER_SIGNAL -1 (gfx12): arrive at the workgroup barrier; the wave blocks at S_BARRIER_WAIT."""
  if inst.code("src0") != 193:      # -1: the workgroup barrier; named barriers are not modelled
    raise inst.unsupported("only the workgroup barrier (-1) is modelled")
  nxt = inst.nxt

  def signal():
    check_lds_stores(g, inst)
    return nxt
  return signal


def check_lds_stores(g, inst: Inst) -> None:
  entry = g.wait.lds_stores_outstanding()
  if entry is not None:
    counter = "lgkmcnt(0)" if g.ctx.program.generation == 11 else "s_wait_dscnt 0"
    raise BarrierError(f"{inst.text!r} at pc {inst.pc:#x}: the LDS write {entry.text!r} (pc {entry.pc:#x}) is still "
                       f"outstanding, so other waves may not see it after the barrier; wait for {counter} first")


def compile_wait(g, inst: Inst):
  """s_waitcnt (gfx11: vmcnt, expcnt, lgkmcnt fields), s_waitcnt_<counter> (gfx11 SOPK, count in simm16 with a
  null sdst), s_wait_<counter> and s_wait_loadcnt_dscnt / s_wait_storecnt_dscnt (gfx12)."""
  mn, imm, wait, nxt = inst.mnemonic, inst.vals.get("simm16", 0), g.wait, inst.nxt
  w = g.ctx.program.target.sym("WAITCNT")
  gen = g.ctx.program.generation

  def field(shift, width):
    return (imm >> shift) & ((1 << width) - 1), (1 << width) - 1

  waits = []
  if mn == "s_waitcnt":
    if gen != 11:
      raise inst.unsupported("gfx12 code waits with s_wait_loadcnt / s_wait_dscnt / s_wait_kmcnt")
    waits = [("vmcnt",) + field(w["VmcntBitShiftLo"], w["VmcntBitWidthLo"]),
             ("lgkmcnt",) + field(w["LgkmcntBitShift"], w["LgkmcntBitWidth"])]
  elif mn.startswith("s_waitcnt_"):
    if inst.code("sdst") != 124:
      raise inst.unsupported("only the null register form is modelled")
    waits = [(mn[len("s_waitcnt_"):], imm, None)]
  elif mn in ("s_wait_loadcnt_dscnt", "s_wait_storecnt_dscnt"):
    first = mn.split("_")[2]
    waits = [(first,) + field(w["LoadcntStorecntBitShift"], w["LoadcntBitWidth"]),
             ("dscnt",) + field(w["DscntBitShift"], w["DscntBitWidth"])]
  else:
    waits = [(mn[len("s_wait_"):], imm, None)]
  waits = [(counter, n) for counter, n, top in waits if n != top and counter in wait.queues]

  def op():
    for counter, n in waits:
      wait.wait(counter, n)
    return nxt
  return op


def compile_scalar(g, inst: Inst):
  family = inst.family
  if family == "SOP2":
    return compile_sop2(g, inst)
  if family == "SOP1":
    return compile_sop1(g, inst)
  if family == "SOPC":
    return compile_sopc(g, inst)
  if family == "SOPK":
    return compile_sopk(g, inst)
  if family == "SOPP":
    return compile_sopp(g, inst)
  raise SimError(f"not a scalar family: {family}")
