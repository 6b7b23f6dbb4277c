"""Memory instructions that go through the memory interface: scalar loads (SMEM), global / flat and buffer loads,
stores and atomics. Every access happens when the instruction issues; the registers it writes are queued on the
wave's counters (waitcnt.py) so a use before the matching wait is caught.

Addressing (RDNA3 / RDNA4 guides, "Scalar Memory Operations", "Global, Scratch and Flat Address Space", "Buffer
Instructions" (guide, unverified here); operand fields and the signedness of offsets from LLVM 19's encodings):
  SMEM     address = SGPR pair sbase + offset (+ SGPR soffset), low two bits ignored; s_buffer_load reads a V# instead.
  global   address = SGPR pair saddr + zero-extended VGPR vaddr + offset, or (saddr off) VGPR pair vaddr + offset;
           offset is signed. flat_* are treated as global: the LDS and scratch apertures of flat addressing are not
           modelled (such addresses fault as unmapped).
  buffer   V# (4 SGPRs; fields from mesa 25.0.7 src/amd/registers/gfx11-rsrc.json / gfx12-rsrc.json SQ_BUF_RSRC_WORD*):
           base = word0 | word1[15:0] << 32, STRIDE word1[29:16], NUM_RECORDS word2, OOB_SELECT word3[29:28];
           address = base + index * stride + offset, index = VGPR (idxen), offset = VGPR (offen) + inst offset +
           SGPR soffset. Range check by OOB_SELECT (our reading of the guide, not checked against hardware):
           0 index >= num_records or offset >= stride, 1 index >= num_records, 2 none, 3 offset + size >
           num_records. Out-of-range loads return 0, stores and atomics are dropped (no fault). Swizzled buffers,
           ADD_TID and format conversions (buffer_load_format_*, tbuffer) raise UnsupportedInstruction.
Atomics apply lane by lane in lane order (memory.Memory.atomic); cmpswap takes {new value, compare value} in vdata
(LLVM 19 SITargetLowering::LowerATOMIC_CMP_SWAP builds the vector {New, Old}); inc / dec wrap as the guide describes
(guide, unverified here).
"""
from __future__ import annotations

import numpy as np

from .errors import MemoryFault
from .program import Inst
from .regs import DTYPES, constant
from .waitcnt import Pending

__all__ = ["compile_buffer", "compile_global", "compile_smem"]
U32, U64 = np.uint32, np.uint64
SIZES = {"b32": 1, "b64": 2, "b96": 3, "b128": 4, "b256": 8, "b512": 16}
SUBDWORD = {"u8": (1, False), "i8": (1, True), "u16": (2, False), "i16": (2, True)}


def counters(gen: int) -> dict:
  if gen == 11:
    return {"load": "vmcnt", "store": "vscnt", "smem": "lgkmcnt", "lds": "lgkmcnt"}
  return {"load": "loadcnt", "store": "storecnt", "smem": "kmcnt", "lds": "dscnt"}


def regs_of(code: int, count: int) -> frozenset:
  return frozenset(range(code, code + count))


# ---- scalar memory --------------------------------------------------------------------------------------------------

def compile_smem(g, inst: Inst):
  mn, nxt = inst.mnemonic, inst.nxt
  if mn in ("s_dcache_inv", "s_gl1_inv", "s_prefetch_data", "s_prefetch_inst", "s_prefetch_data_pc_rel",
            "s_prefetch_inst_pc_rel", "s_buffer_prefetch_data"):
    return lambda: nxt
  kind = mn.rsplit("_", 1)[1]
  if kind not in SIZES:
    raise inst.unsupported("sub-dword scalar loads are not modelled")
  count = SIZES[kind]
  dst = inst.code("sdst")
  cols = g.S[:, dst:dst + count]
  base = g.scol(inst.code("sbase"), "u64")
  desc = g.S[:, inst.code("sbase"):inst.code("sbase") + 4] if mn.startswith("s_buffer_") else None
  offset = inst.vals.get("offset", 0)
  soff = g.scol(inst.code("soffset"), "u32") if inst.has("soffset") and inst.code("soffset") != 124 else None
  memory, wait = g.ctx.memory, g.wait
  entry = Pending(regs_of(dst, count), inst.pc, inst.text, in_order=False)
  counter = counters(g.ctx.program.generation)["smem"]

  def run():
    off = np.full(g.W, offset, dtype=np.int64)
    if soff is not None:
      off = off + soff
    if desc is None:
      addrs = (base + off.astype(U64)) & ~U64(3)
      data = load_or_fault(memory, addrs, count, inst, g, None)
    else:
      start = desc[:, 0].astype(U64) | ((desc[:, 1].astype(U64) & U64(0xFFFF)) << U64(32))
      off = off.astype(U64) & ~U64(3)
      dword = off[:, None] + U64(4) * np.arange(count, dtype=U64)
      inside = dword + U64(4) <= desc[:, 2:3].astype(U64)
      data = np.zeros((g.W, count), dtype=U32)
      rows, k = np.nonzero(inside)
      if len(rows):
        data[rows, k] = load_or_fault(memory, start[rows] + dword[rows, k], 1, inst, g, None, rows)[:, 0]
    cols[...] = data
    wait.issue(counter, entry)
    return nxt
  return run


def load_or_fault(memory, addrs, count, inst: Inst, g, lanes, rows=None):
  try:
    return memory.load_dwords(addrs, count)
  except MemoryFault as e:
    raise locate(e, inst, g, lanes, rows) from None


def locate(e: MemoryFault, inst: Inst, g, lanes, rows=None) -> MemoryFault:
  """The fault with the instruction and the wave / lane of the failing element (lanes: (wi, li) of the active lanes,
  or None for a scalar access; rows: the waves a scalar access covered)."""
  if lanes is None:
    row = int(rows[e.index]) if rows is not None else e.index
    return e.locate(inst.pc, inst.text, int(g.waves[row]), None)
  wi, li = lanes
  return e.locate(inst.pc, inst.text, int(g.waves[wi[e.index]]), int(li[e.index]))


# ---- vector memory: shared parts ----------------------------------------------------------------------------------

def active(g):
  """(wave rows, lanes) of the active lanes."""
  return np.nonzero(g.EX)


def parse_access(inst: Inst, prefix: str):
  """global_load_b64 -> ("load", 2 dwords, None); global_load_i8 -> ("load", 0, (1, True)); d16 forms keep a half."""
  rest = inst.mnemonic[len(prefix):]
  kind, _, size = rest.partition("_")
  return kind, size


def vector_load(g, inst: Inst, addresses, size: str, vdst: int, counter: str):
  """A closure loading `size` at the per-lane addresses (callable -> (W, L) uint64) into VGPRs from vdst."""
  memory, wait, nxt = g.ctx.memory, g.wait, inst.nxt
  d16 = size.startswith("d16_")
  name = size[len("d16_"):] if d16 else size
  hi = name.startswith("hi_")
  name = name[len("hi_"):] if hi else name
  if name in SIZES:
    count = SIZES[name]
    g.check_vgpr(vdst, count)
    planes = [g.V[vdst + k] for k in range(count)]
  elif name in SUBDWORD or name == "b16":
    count = 1
    g.check_vgpr(vdst)
  else:
    raise inst.unsupported()
  entry = Pending(regs_of(256 + vdst, count), inst.pc, inst.text)
  target = g.vreg(vdst, "u16", hi) if d16 else g.V[vdst]

  def run():
    lanes = active(g)
    addrs = addresses()[lanes]
    try:
      if name in SIZES:
        data = memory.load_dwords(addrs, count)
      else:
        width, signed = SUBDWORD.get(name, (2, False))
        raw = np.ascontiguousarray(memory.load(addrs, width)).view(DTYPES[f"{'i' if signed else 'u'}{8 * width}"])
        data = raw[:, :1]
    except MemoryFault as e:
      raise locate(e, inst, g, lanes) from None
    if name in SIZES:
      for k, plane in enumerate(planes):
        plane[lanes] = data[:, k]
    else:
      target[lanes] = data[:, 0]          # d16: a 16-bit half; else zero / sign extended into 32 bits
    wait.issue(counter, entry)
    return nxt
  return run


def vector_store(g, inst: Inst, addresses, size: str, vdata: int, counter: str):
  memory, wait, nxt = g.ctx.memory, g.wait, inst.nxt
  entry = Pending(frozenset(), inst.pc, inst.text)
  hi = size.startswith("d16_hi_")
  name = size[len("d16_hi_"):] if hi else size
  if name in SIZES:
    count = SIZES[name]
    g.check_vgpr(vdata, count)
    planes = [g.V[vdata + k] for k in range(count)]
  elif name in ("b8", "b16"):
    width = 1 if name == "b8" else 2
    g.check_vgpr(vdata)
    src = g.V[vdata]
  else:
    raise inst.unsupported()

  def run():
    lanes = active(g)
    addrs = addresses()[lanes]
    try:
      if name in SIZES:
        memory.store_dwords(addrs, np.stack([p[lanes] for p in planes], axis=1))
      else:
        values = src[lanes] >> U32(16) if hi else src[lanes]
        memory.store(addrs, np.ascontiguousarray(values[:, None]).view(np.uint8)[:, :width])
    except MemoryFault as e:
      raise locate(e, inst, g, lanes) from None
    wait.issue(counter, entry)
    return nxt
  return run


ATOMICS = {
  "add": lambda old, x, c: old + x, "sub": lambda old, x, c: old - x, "and": lambda old, x, c: old & x,
  "or": lambda old, x, c: old | x, "xor": lambda old, x, c: old ^ x, "swap": lambda old, x, c: x,
  "min": lambda old, x, c: np.minimum(old, x), "max": lambda old, x, c: np.maximum(old, x),
  "min_num": lambda old, x, c: np.fmin(old, x), "max_num": lambda old, x, c: np.fmax(old, x),
  "inc": lambda old, x, c: np.where(old >= x, 0, old + 1).astype(old.dtype),
  "dec": lambda old, x, c: np.where((old == 0) | (old > x), x, old - 1).astype(old.dtype),
  "cmpswap": lambda old, x, c: np.where(old == c, x, old),
  "csub": lambda old, x, c: np.where(old >= x, old - x, old),
  "cond_sub": lambda old, x, c: np.where(old >= x, old - x, old),
}


def atomic_spec(inst: Inst, rest: str):
  """'add_u32' -> (fn, dtype, dwords of data); 'min_f32' on gfx11 is the NaN-ignoring min."""
  op, _, ty = rest.rpartition("_")
  ty = {"b32": "u32", "b64": "u64"}.get(ty, ty)
  if op in ("min", "max") and ty == "f32":
    op += "_num"
  if op not in ATOMICS or ty not in ("u32", "i32", "f32", "u64", "i64"):
    raise inst.unsupported()
  words = 2 if ty.endswith("64") else 1
  return ATOMICS[op], ty, words * (2 if op == "cmpswap" else 1), words


def vector_atomic(g, inst: Inst, addresses, rest: str, counters_: dict):
  fn, ty, data_words, words = atomic_spec(inst, rest)
  memory, wait, nxt = g.ctx.memory, g.wait, inst.nxt
  vdata = inst.code("vdata") - 256
  returns = inst.has("vdst")
  vdst = inst.code("vdst") - 256 if returns else None
  g.check_vgpr(vdata, data_words)
  planes = [g.V[vdata + k] for k in range(data_words)]
  outs = [g.V[vdst + k] for k in range(words)] if returns else []
  dt = DTYPES[ty]
  counter = counters_["load"] if returns else counters_["store"]
  entry = Pending(regs_of(256 + vdst, words) if returns else frozenset(), inst.pc, inst.text)

  def run():
    lanes = active(g)
    addrs = addresses()[lanes]
    raw = np.stack([p[lanes] for p in planes], axis=1)
    data = raw[:, :words].copy().view(dt)[:, 0]
    cmp = raw[:, words:].copy().view(dt)[:, 0] if data_words > words else None
    try:
      if cmp is None:
        old = memory.atomic(addrs, dt, lambda cur, x: fn(cur, x, None), data)
      else:
        old = atomic_cmpswap(memory, addrs, dt, fn, data, cmp)
    except MemoryFault as e:
      raise locate(e, inst, g, lanes) from None
    if returns:
      words_out = np.ascontiguousarray(old).view(U32).reshape(len(old), words)
      for k, plane in enumerate(outs):
        plane[lanes] = words_out[:, k]
    wait.issue(counter, entry)
    return nxt
  return run


def atomic_cmpswap(memory, addrs, dt, fn, data, cmp):
  """Compare-and-swap needs each lane's compare value next to its data: pack them so Memory.atomic's rounds keep
  the pairing."""
  pairs = np.stack([data, cmp], axis=1)
  index = np.arange(len(addrs))
  return memory.atomic(addrs, dt, lambda cur, rows: fn(cur, pairs[rows, 0], pairs[rows, 1]), index)


# ---- global / flat ---------------------------------------------------------------------------------------------

def compile_global(g, inst: Inst):
  prefix = "global_" if inst.mnemonic.startswith("global_") else "flat_"
  kind, size = parse_access(inst, prefix)
  if kind in ("inv", "wb", "wbinv"):
    return lambda nxt=inst.nxt: nxt
  if "addtid" in size or "lds" in size or "_tr_" in inst.mnemonic or size == "block":
    raise inst.unsupported()
  addresses = global_addresses(g, inst)
  names = counters(g.ctx.program.generation)
  if kind == "load":
    return vector_load(g, inst, addresses, size, inst.code("vdst") - 256, names["load"])
  if kind == "store":
    return vector_store(g, inst, addresses, size, inst.code("vdata") - 256, names["store"])
  if kind == "atomic":
    return vector_atomic(g, inst, addresses, size, names)
  raise inst.unsupported()


def global_addresses(g, inst: Inst):
  offset = U64(inst.vals.get("offset", 0) & 0xFFFFFFFFFFFFFFFF)
  vaddr = inst.code("vaddr") - 256
  if inst.has("saddr"):
    base = g.sbroadcast(inst.code("saddr"), "u64")
    v = g.vreg(vaddr, "u32")
    return lambda: base + v.astype(U64) + offset
  pair = g.vpair_reader(vaddr, "u64")
  return lambda: pair() + offset


# ---- buffer -------------------------------------------------------------------------------------------------------

def compile_buffer(g, inst: Inst):
  kind, size = parse_access(inst, "buffer_")
  record = inst.d.instr.record
  if kind in ("gl0", "gl1") or inst.mnemonic.startswith("buffer_gl"):
    return lambda nxt=inst.nxt: nxt
  if "format" in size or "lds" in size or "_TFE_" in record or inst.mnemonic.startswith("tbuffer"):
    raise inst.unsupported("format conversion, LDS and TFE buffer forms are not modelled")
  idxen = "_IDXEN_" in record or "_BOTHEN_" in record
  offen = "_OFFEN_" in record or "_BOTHEN_" in record
  nbytes = buffer_access_bytes(inst, kind, size)
  addresses = buffer_addresses(g, inst, idxen, offen, nbytes)
  names = counters(g.ctx.program.generation)
  vdata = inst.code("vdata") - 256
  if kind == "load":
    return masked(g, addresses, vector_load(g, inst, addresses.get, size, vdata, names["load"]), zero=(vdata, size))
  if kind == "store":
    return masked(g, addresses, vector_store(g, inst, addresses.get, size, vdata, names["store"]))
  if kind == "atomic":
    return masked(g, addresses, vector_atomic(g, inst, addresses.get, size, names))
  raise inst.unsupported()


def buffer_access_bytes(inst: Inst, kind: str, size: str) -> int:
  name = size.split("_")[-1]
  if kind == "atomic":
    return 8 if name.endswith("64") else 4
  if name in SIZES:
    return 4 * SIZES[name]
  return {"u8": 1, "i8": 1, "b8": 1, "u16": 2, "i16": 2, "b16": 2}.get(name, 4)


class BufferAddresses:
  """Per-lane addresses and the in-range mask of a buffer access, computed once per execution."""

  def __init__(self, g, inst: Inst, idxen: bool, offen: bool, nbytes: int):
    self.g, self.inst, self.nbytes = g, inst, nbytes
    first = inst.code("vaddr") - 256 if idxen or offen else None
    self.index = g.vreg(first, "u32") if idxen else None
    self.voffset = g.vreg(first + int(idxen), "u32") if offen else None
    self.desc = g.S[:, inst.code("srsrc"):inst.code("srsrc") + 4]
    code = inst.code("soffset")
    self.soffset = g.sbroadcast(code, "u32") if code < 128 else np.uint32(constant_soffset(inst, code))
    self.offset = inst.vals.get("offset", 0)
    self.addrs = self.inside = None

  def compute(self) -> None:
    d = self.desc.astype(U64)
    if ((d[:, 1] >> U64(30)) != 0).any() or ((d[:, 3] >> U64(23)) & U64(1)).any():
      raise self.inst.unsupported("swizzled or ADD_TID buffers are not modelled")
    base = (d[:, 0] | ((d[:, 1] & U64(0xFFFF)) << U64(32)))[:, None]
    stride = ((d[:, 1] >> U64(16)) & U64(0x3FFF))[:, None]
    records = d[:, 2:3]
    oob = ((d[:, 3] >> U64(28)) & U64(3))[:, None]
    shape = (self.g.W, self.g.L)
    index = self.index.astype(U64) if self.index is not None else np.zeros(shape, dtype=U64)
    off = (self.voffset.astype(U64) if self.voffset is not None else np.zeros(shape, dtype=U64))
    off = off + U64(self.offset) + np.asarray(self.soffset).astype(U64)
    self.addrs = base + index * stride + off
    checks = {0: (index < records) & ((stride == 0) | (off < stride)), 1: index < records,
              2: np.ones(shape, dtype=bool), 3: off + U64(self.nbytes) <= records}
    self.inside = np.broadcast_to(checks[0], shape)
    for sel in (1, 2, 3):
      self.inside = np.where(oob == sel, checks[sel], self.inside)

  def get(self):
    return self.addrs


def constant_soffset(inst: Inst, code: int) -> int:
  value = constant(code, inst.literal, "u32")
  if value is None:
    raise inst.unsupported("soffset operand")
  return int(value)


def buffer_addresses(g, inst, idxen, offen, nbytes):
  return BufferAddresses(g, inst, idxen, offen, nbytes)


def masked(g, addresses: BufferAddresses, run, zero=None):
  """Run a vector access with EXEC narrowed to the in-range lanes; out-of-range load lanes get 0."""
  EX, full = g.EX, g.full
  planes = []
  if zero is not None:
    vdata, size = zero
    count = SIZES.get(size, 1)
    planes = [g.V[vdata + k] for k in range(count)] if not size.startswith("d16") else []

  def op():
    addresses.compute()
    saved, saved_full = EX.copy(), full[0]
    outside = saved & ~addresses.inside
    np.logical_and(EX, addresses.inside, out=EX)
    full[0] = bool(EX.all())
    try:
      nxt = run()
    finally:
      EX[...] = saved
      full[0] = saved_full
    for plane in planes:
      plane[outside] = 0
    return nxt
  return op
