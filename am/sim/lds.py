"""LDS (DS) instructions: loads, stores, two-address forms, atomics and the lane permutes, on the workgroup's local
data share. Each workgroup of the dispatch owns `lds_size` bytes of ctx.lds; a wave reaches its own through
g.lds_base.

Semantics (RDNA3 / RDNA4 guides, "Data Share Operations"; guide, unverified here): address = VGPR addr + offset
(16-bit), the two-address forms use addr + offset0 * size and addr + offset1 * size (x64 for the stride64 forms);
d16 forms load into one 16-bit half and keep the other; atomics apply lane by lane in lane order; ds_bpermute_b32
reads lane (addr + offset) / 4 (mod wave size) whether or not it is active, ds_permute_b32 writes to it (lanes
nobody writes get 0). gfx11 renamed ds_cmpst to ds_cmpstore with data0 = new value, data1 = compare value (LLVM 19
DSInstructions.td: "the data operands (src and cmp) are swapped", pattern DSAtomicCmpXChg). Deviation: an access
outside the workgroup's allocation raises MemoryFault (hardware returns 0 / drops the write).
"""
from __future__ import annotations

import numpy as np

from .errors import MemoryFault
from .memory import distinct_rounds
from .program import Inst
from .regs import DTYPES
from .vmem import ATOMICS, SIZES, SUBDWORD, counters, regs_of
from .waitcnt import Pending

__all__ = ["compile_ds"]
U32 = np.uint32


class Lds:
  """Byte-addressed access to the LDS of the waves in a group, for the active lanes."""

  def __init__(self, g, inst: Inst):
    self.g, self.inst = g, inst
    self.mem = g.ctx.lds
    self.size = g.ctx.lds_size

  def index(self, lanes, offsets: np.ndarray, nbytes: int) -> np.ndarray:
    """LDS array indices of the active lanes' accesses, after the range check."""
    wi, li = lanes
    bad = offsets + nbytes > self.size
    if bad.any():
      i = int(np.argmax(bad))
      fault = MemoryFault(int(offsets[i]), nbytes, f"outside the workgroup's {self.size} bytes of LDS "
                          "(group_segment_fixed_size + dynamic LDS)", index=i, space="LDS")
      raise fault.locate(self.inst.pc, self.inst.text, int(self.g.waves[wi[i]]), int(li[i]))
    return self.g.lds_base[wi, 0] + offsets

  def load(self, idx: np.ndarray, nbytes: int) -> np.ndarray:
    return self.mem[idx[:, None] + np.arange(nbytes)]

  def store(self, idx: np.ndarray, data: np.ndarray) -> None:
    self.mem[idx[:, None] + np.arange(data.shape[1])] = data


def compile_ds(g, inst: Inst):
  mn = inst.mnemonic
  if mn == "ds_nop":
    return lambda nxt=inst.nxt: nxt
  if inst.vals.get("gds", 0):
    raise inst.unsupported("GDS is not modelled")
  if mn in ("ds_bpermute_b32", "ds_permute_b32"):
    return compile_permute(g, inst)
  if mn.startswith(("ds_load_2addr", "ds_store_2addr")):
    return compile_two(g, inst)
  if mn.startswith("ds_load_"):
    return compile_load(g, inst, mn[len("ds_load_"):])
  if mn.startswith("ds_store_"):
    return compile_store(g, inst, mn[len("ds_store_"):])
  return compile_atomic(g, inst)


def offsets_of(g, inst: Inst):
  addr = g.vreg(inst.code("addr") - 256, "u32")
  offset = U32(inst.vals.get("offset", 0))
  return lambda lanes: (addr[lanes] + offset).astype(np.int64)


def issue(g, inst: Inst, regs: frozenset, store: bool):
  counter = counters(g.ctx.program.generation)["lds"]
  entry = Pending(regs, inst.pc, inst.text, lds_store=store)
  wait = g.wait
  return lambda: wait.issue(counter, entry)


def compile_load(g, inst: Inst, size: str):
  lds, offsets, nxt = Lds(g, inst), offsets_of(g, inst), inst.nxt
  vdst = inst.code("vdst") - 256
  if size in SIZES:
    count = SIZES[size]
    g.check_vgpr(vdst, count)
    planes = [g.V[vdst + k] for k in range(count)]
    nbytes, dt, target = 4 * count, U32, None
  else:
    name, _, d16 = size.partition("_")          # u16, u8_d16, i8_d16_hi
    width, signed = SUBDWORD[name]
    nbytes, dt = width, DTYPES[f"{'i' if signed else 'u'}{8 * width}"]
    target = g.vreg(vdst, "u16", d16.endswith("hi")) if d16 else g.V[vdst]
    count = 1
  done = issue(g, inst, regs_of(256 + vdst, count), store=False)

  def run():
    lanes = np.nonzero(g.EX)
    idx = lds.index(lanes, offsets(lanes), nbytes)
    data = np.ascontiguousarray(lds.load(idx, nbytes)).view(dt)
    if target is None:
      for k, plane in enumerate(planes):
        plane[lanes] = data[:, k]
    else:
      target[lanes] = data[:, 0]
    done()
    return nxt
  return run


def compile_store(g, inst: Inst, size: str):
  lds, offsets, nxt = Lds(g, inst), offsets_of(g, inst), inst.nxt
  data0 = inst.code("data0") - 256
  if size in SIZES:
    count = SIZES[size]
    g.check_vgpr(data0, count)
    planes = [g.V[data0 + k] for k in range(count)]
    nbytes, shift = 4 * count, 0
  else:
    name, _, hi = size.partition("_")         # b8, b16, b8_d16_hi
    nbytes, shift = (1 if name == "b8" else 2), (16 if hi else 0)
    planes = [g.V[data0]]
  done = issue(g, inst, frozenset(), store=True)

  def run():
    lanes = np.nonzero(g.EX)
    idx = lds.index(lanes, offsets(lanes), nbytes)
    words = np.stack([p[lanes] for p in planes], axis=1) >> U32(shift)
    lds.store(idx, np.ascontiguousarray(words).view(np.uint8)[:, :nbytes])
    done()
    return nxt
  return run


def compile_two(g, inst: Inst):
  """DS_LOAD_2ADDR / DS_STORE_2ADDR (_B32, _B64, _STRIDE64): two elements at offset0 and offset1 element units."""
  mn, lds, nxt = inst.mnemonic, Lds(g, inst), inst.nxt
  elem = 8 if mn.endswith("b64") else 4
  unit = elem * (64 if "stride64" in mn else 1)
  addr = g.vreg(inst.code("addr") - 256, "u32")
  offs = (inst.vals.get("offset0", 0) * unit, inst.vals.get("offset1", 0) * unit)
  words = elem // 4
  load = mn.startswith("ds_load")
  if load:
    first = inst.code("vdst") - 256
    g.check_vgpr(first, 2 * words)
    planes = [g.V[first + k] for k in range(2 * words)]
    done = issue(g, inst, regs_of(256 + first, 2 * words), store=False)
  else:
    sources = [inst.code("data0") - 256, inst.code("data1") - 256]
    planes = [g.V[s + k] for s in sources for k in range(words)]
    done = issue(g, inst, frozenset(), store=True)

  def run():
    lanes = np.nonzero(g.EX)
    base = addr[lanes].astype(np.int64)
    for half, off in enumerate(offs):
      idx = lds.index(lanes, base + off, elem)
      part = planes[half * words:(half + 1) * words]
      if load:
        data = np.ascontiguousarray(lds.load(idx, elem)).view(U32)
        for k, plane in enumerate(part):
          plane[lanes] = data[:, k]
      else:
        lds.store(idx, np.ascontiguousarray(np.stack([p[lanes] for p in part], axis=1)).view(np.uint8))
    done()
    return nxt
  return run


def compile_atomic(g, inst: Inst):
  """DS_<op>[_RTN]_<type>: read-modify-write of naturally aligned 32/64-bit LDS elements."""
  mn = inst.mnemonic
  returns = "_rtn_" in mn
  rest = mn[len("ds_"):].replace("_rtn", "")
  op, _, ty = rest.rpartition("_")
  ty = {"b32": "u32", "b64": "u64"}.get(ty, ty)
  if op in ("min", "max") and ty.startswith("f"):
    op += "_num"
  op = {"storexchg": "swap", "cmpstore": "cmpswap", "sub_clamp": "csub"}.get(op, op)
  if op == "rsub":
    fn = lambda old, x, c: x - old      # noqa: E731 (DS_RSUB: MEM = DATA - MEM)
  elif op in ATOMICS and ty in ("u32", "i32", "f32", "u64", "i64", "f64"):
    fn = ATOMICS[op]
  else:
    raise inst.unsupported()
  lds, offsets, nxt = Lds(g, inst), offsets_of(g, inst), inst.nxt
  dt = DTYPES[ty]
  width = np.dtype(dt).itemsize
  words = width // 4
  d0 = [g.V[inst.code("data0") - 256 + k] for k in range(words)]
  d1 = [g.V[inst.code("data1") - 256 + k] for k in range(words)] if op == "cmpswap" else None
  vdst = inst.code("vdst") - 256 if returns else None
  outs = [g.V[vdst + k] for k in range(words)] if returns else []
  done = issue(g, inst, regs_of(256 + vdst, words) if returns else frozenset(), store=True)
  view = lds.mem.view(dt)

  def run():
    lanes = np.nonzero(g.EX)
    idx = lds.index(lanes, offsets(lanes), width)
    if (idx % width).any():
      raise inst.fail("misaligned LDS atomic")
    elem = idx // width
    data = np.ascontiguousarray(np.stack([p[lanes] for p in d0], axis=1)).view(dt)[:, 0]
    cmp = np.ascontiguousarray(np.stack([p[lanes] for p in d1], axis=1)).view(dt)[:, 0] if d1 else None
    old = np.empty(len(elem), dtype=dt)
    for rows in distinct_rounds(elem):
      cur = view[elem[rows]]
      old[rows] = cur
      view[elem[rows]] = fn(cur, data[rows], cmp[rows] if cmp is not None else None)
    if returns:
      out = np.ascontiguousarray(old).view(U32).reshape(len(old), words)
      for k, plane in enumerate(outs):
        plane[lanes] = out[:, k]
    done()
    return nxt
  return run


def compile_permute(g, inst: Inst):
  """DS_BPERMUTE_B32: dst[lane] = data0[sel(lane)]; DS_PERMUTE_B32: dst[sel(lane)] = data0[lane]; sel = (addr +
  offset) / 4 mod wave size. No LDS memory is touched; the result counts on the LDS counter."""
  addr, src = g.vreg(inst.code("addr") - 256, "u32"), g.vreg(inst.code("data0") - 256, "u32")
  dst = g.vreg(inst.code("vdst") - 256, "u32")
  offset, L, nxt, EX = U32(inst.vals.get("offset", 0)), g.L, inst.nxt, g.EX
  backward = inst.mnemonic == "ds_bpermute_b32"
  done = issue(g, inst, regs_of(inst.code("vdst"), 1), store=False)
  rows = g.rows[:, None]

  def run():
    sel = ((addr + offset) >> U32(2)) % U32(L)
    if backward:
      np.copyto(dst, src[rows, sel], where=EX)
    else:
      out = np.zeros_like(dst)
      wi, li = np.nonzero(EX)
      out[wi, sel[wi, li]] = src[wi, li]
      np.copyto(dst, out, where=EX)
    done()
    return nxt
  return run
