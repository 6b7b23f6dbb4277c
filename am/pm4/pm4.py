"""PM4 command streams for the compute queues of GFX11 (Navi31) and GFX12 (Navi48): one emitter per packet.

A type-3 packet is a header dword (TYPE=3, IT_OPCODE, COUNT = body dwords - 1, SHADER_TYPE, PREDICATE) and its
body; the layouts are in am/pm4/packets.py, which am/pm4/decode.py reads back. Every emitter writes one dword per
line with the field it carries in a trailing comment. Generation differences stay inside the emitters:

- RELEASE_MEM's cache flush: GFX11 writes back and invalidates GLM (GCR_GLM_WB with GCR_GLM_INV, "must be set
  together", gfx_v11_0_ring_emit_fence); GFX12 leaves GLM out (gfx_v12_0_ring_emit_fence), as Mesa does on GFX12
  (radv_cs.c: no L2 metadata flush from GFX12 on).
- DISPATCH_DIRECT's initiator is a COMPUTE_DISPATCH_INITIATOR value whose fields come from that generation's GC
  register table (am.generated.gc_11_0_0 / gc_12_0_0).

Addresses of registers are dword addresses (Register.addr of am.mmio.regs). Values that a later submission
rewrites (fence values, IB addresses) can be recorded with `mark`, as nvdrv's PushBuffer does.
"""
from __future__ import annotations

from array import array

from am.generated import pm4 as facts
from am.pm4 import packets as P

GENERATIONS = (11, 12)
SH_REG_START = facts.REG_RANGES["PACKET3_SET_SH_REG_START"]
SH_REG_END = facts.REG_RANGES["PACKET3_SET_SH_REG_END"]
UCONFIG_REG_START = facts.REG_RANGES["PACKET3_SET_UCONFIG_REG_START"]
UCONFIG_REG_END = facts.REG_RANGES["PACKET3_SET_UCONFIG_REG_END"]
WAIT_FUNCTIONS = {"always": 0, "<": 1, "<=": 2, "==": 3, "!=": 4, ">=": 5, ">": 6}  # nvd.h WAIT_REG_MEM_FUNCTION
DATA_SEL_NONE, DATA_SEL_32, DATA_SEL_64, DATA_SEL_GPU_CLOCK = 0, 1, 2, 3  # kfd mec_release_mem_data_sel_enum
INT_SEL_NONE, INT_SEL_AFTER_WRITE_CONFIRM = 0, 2                          # kfd mec_release_mem_int_sel_enum
# ACQUIRE_MEM GCR_CNTL that amdgpu uses on both generations (gfx_v11_0/gfx_v12_0_emit_mem_sync): invalidate I$, K$,
# V$, GL1 and GL2, write back GL2 and GLM. Mesa drops GLM on GFX12 (radv_cs.c); AM follows the kernel.
FULL_GCR = {"GLI_INV": 1, "GLK_INV": 1, "GLV_INV": 1, "GL1_INV": 1, "GLM_WB": 1, "GLM_INV": 1, "GL2_WB": 1,
            "GL2_INV": 1}


def lo32(value: int) -> int:
  return value & 0xFFFFFFFF


def hi32(value: int) -> int:
  return (value >> 32) & 0xFFFFFFFF


def reg_addr(reg) -> int:
  """A register's dword address: a Register (am.mmio.regs) or an int."""
  addr = getattr(reg, "addr", reg)
  if not isinstance(addr, int):
    raise TypeError(f"register {reg!r}: need a dword address or a Register with one")
  return addr


class PM4Stream:
  """A growing list of PM4 dwords for one GFX generation (11 or 12)."""

  def __init__(self, gfx: int):
    if gfx not in GENERATIONS:
      raise ValueError(f"GFX generation {gfx}: AM emits PM4 for {GENERATIONS}")
    self.gfx = gfx
    self.words = array("I")
    self.marks: dict[str, list[int]] = {}

  def __len__(self) -> int:
    return len(self.words)

  def tobytes(self) -> bytes:
    return self.words.tobytes()

  def mark(self, name: str | None) -> None:
    """Record that the next dword is the value `name` (a later submission may rewrite it with `patch`)."""
    if name:
      self.marks.setdefault(name, []).append(len(self.words))

  def patch(self, name: str, value: int) -> None:
    """Rewrite the dwords marked `name` with the low 32 bits of `value`.

    Raises:
      KeyError: no dword was marked `name` (the message lists the marks)."""
    if name not in self.marks:
      raise KeyError(f"no dword marked {name!r}; marks: {', '.join(self.marks) or 'none'}")
    for index in self.marks[name]:
      self.words[index] = lo32(value)

  def header(self, packet: P.Packet, body: int, shader_type: int = 0, predicate: int = 0) -> None:
    if not 1 <= body <= 0x3FFF:
      raise ValueError(f"{packet.name} with {body} body dwords: COUNT (body - 1) holds 0..0x3FFE")
    self.words.append(P.HEADER.encode(TYPE=P.TYPE3, COUNT=body - 1, IT_OPCODE=packet.opcode,
                                      SHADER_TYPE=shader_type, PREDICATE=predicate))

  # ---- packets ----
  def nop(self, ndw: int = 1) -> PM4Stream:
    """`ndw` dwords of padding in all: a header-only NOP (COUNT 0x3FFF, amdgpu's ring .nop) for 1 dword, else a
    header and ndw - 1 zero dwords."""
    if ndw < 1:
      raise ValueError(f"a NOP takes at least 1 dword, not {ndw}")
    if ndw == 1:
      self.words.append(P.HEADER.encode(TYPE=P.TYPE3, COUNT=P.NOP_HEADER_ONLY_COUNT, IT_OPCODE=P.NOP.opcode))
      return self
    self.header(P.NOP, ndw - 1)
    self.words.extend([0] * (ndw - 1))                     # PADDING
    return self

  def _set_regs(self, packet: P.Packet, start: int, end: int, reg, values: tuple[int, ...],
                names: tuple[str | None, ...] = ()) -> PM4Stream:
    addr = reg_addr(reg)
    if not values:
      raise ValueError(f"{packet.name} at 0x{addr:x} with no values")
    if not start <= addr or addr + len(values) > end:
      raise ValueError(f"{packet.name}: registers 0x{addr:x}..0x{addr + len(values) - 1:x} are outside "
                       f"[0x{start:x}, 0x{end:x}) (nvd.h {packet.name}_START/_END)")
    self.header(packet, 1 + len(values))
    self.words.append(addr - start)                        # REG_OFFSET: dword address - _START
    for i, value in enumerate(values):
      self.mark(names[i] if i < len(names) else None)
      self.words.append(lo32(value))                       # REG_DATA: one value per consecutive register
    return self

  def set_sh_reg(self, reg, *values: int, names: tuple[str | None, ...] = ()) -> PM4Stream:
    """Write consecutive SH (persistent-state) registers starting at `reg` (COMPUTE_PGM_LO, COMPUTE_USER_DATA_*).
    `names[i]` marks value i for a later `patch`."""
    return self._set_regs(P.SET_SH_REG, SH_REG_START, SH_REG_END, reg, values, names)

  def set_uconfig_reg(self, reg, *values: int) -> PM4Stream:
    """Write consecutive user-config registers starting at `reg` (amdgpu's ring test writes SCRATCH_REG0 this way)."""
    return self._set_regs(P.SET_UCONFIG_REG, UCONFIG_REG_START, UCONFIG_REG_END, reg, values)

  def dispatch_direct(self, x: int, y: int, z: int, initiator: int) -> PM4Stream:
    """Launch an x*y*z grid of workgroups. `initiator` is a COMPUTE_DISPATCH_INITIATOR value, built with this
    generation's GC table (e.g. RegisterTable(gc_11_0_0).spec('regCOMPUTE_DISPATCH_INITIATOR').encode(...)).
    SHADER_TYPE=1 as Mesa sends it (si_emit_dispatch_packets / radv)."""
    for name, dim in (("x", x), ("y", y), ("z", z)):
      if not 1 <= dim <= 0xFFFFFFFF:
        raise ValueError(f"dispatch {name} = {dim}: 1..2**32-1 workgroups")
    self.header(P.DISPATCH_DIRECT, 4, shader_type=1)
    self.words.append(x)                                   # DIM_X: workgroups in x
    self.words.append(y)                                   # DIM_Y
    self.words.append(z)                                   # DIM_Z
    self.words.append(lo32(initiator))                     # DISPATCH_INITIATOR: COMPUTE_DISPATCH_INITIATOR value
    return self

  def acquire_mem(self, gcr: dict[str, int] | None = None, base: int = 0, size: int = (1 << 56) - 1,
                  poll_interval: int = 0xA, engine_sel: int = 0, coher_cntl: int = 0) -> PM4Stream:
    """Make memory coherent for what follows: invalidate/write back the caches named by the GCR_CNTL fields `gcr`
    (None: amdgpu's full invalidate, FULL_GCR) over [base, base + size) bytes (the default covers everything, as
    amdgpu's 0xffffffff / 0xffffff)."""
    gcr_cntl = P.GCR_CNTL.encode(**(FULL_GCR if gcr is None else gcr))
    size_dw = P.ACQUIRE_MEM.body[2].encode(COHER_SIZE_HI=size >> 32)
    self.header(P.ACQUIRE_MEM, 7)
    self.words.append(P.ACQUIRE_MEM.body[0].encode(COHER_CNTL=coher_cntl, ENGINE_SEL=engine_sel))  # COHER_CNTL
    self.words.append(lo32(size))                          # COHER_SIZE: size bits 31:0
    self.words.append(size_dw)                             # COHER_SIZE_HI: size bits 55:32
    self.words.append(lo32(base))                          # COHER_BASE_LO
    self.words.append(hi32(base))                          # COHER_BASE_HI
    self.words.append(P.ACQUIRE_MEM.body[5].encode(POLL_INTERVAL=poll_interval))  # POLL_INTERVAL
    self.words.append(gcr_cntl)                            # GCR_CNTL: which caches, in which order
    return self

  def release_mem(self, address: int, value: int, data_sel: int = DATA_SEL_64, int_sel: int = INT_SEL_NONE,
                  event: str = "CACHE_FLUSH_AND_INV_TS_EVENT", event_index: int = 5, flush: bool = True,
                  cache_policy: int = 3, int_ctxid: int = 0, name: str | None = None) -> PM4Stream:
    """At end of pipe, write `value` (DATA_SEL: 1 = low 32 bits, 2 = 64 bits, 3 = GPU clock) to `address` and,
    with int_sel, raise an interrupt; with flush, write back GL2 first (amdgpu's fence, ring_emit_fence)."""
    if address & (7 if data_sel in (DATA_SEL_64, DATA_SEL_GPU_CLOCK) else 3):
      raise ValueError(f"RELEASE_MEM to 0x{address:x}: 64-bit data needs an 8-byte aligned address, 32-bit 4")
    gcr = {"GCR_SEQ": 1, "GCR_GL2_WB": 1} if flush else {}
    if flush and self.gfx == 11:
      gcr.update(GCR_GLM_WB=1, GCR_GLM_INV=1)  # GFX11 only: GLM_INV must be set with GLM_WB (gfx_v11_0.c)
    event_type = facts.VGT_EVENT_TYPE[self.gfx][event]
    self.header(P.RELEASE_MEM, 7)
    self.words.append(P.RELEASE_MEM.body[0].encode(EVENT_TYPE=event_type, EVENT_INDEX=event_index,
                                                   CACHE_POLICY=cache_policy, **gcr))  # EVENT_CNTL: event, GCR bits
    self.words.append(P.RELEASE_MEM.body[1].encode(DATA_SEL=data_sel, INT_SEL=int_sel))  # DATA_CNTL
    self.mark(name and name + ".addr")
    self.words.append(lo32(address))                       # ADDRESS_LO
    self.words.append(hi32(address))                       # ADDRESS_HI
    self.mark(name and name + ".value")
    self.words.append(lo32(value))                         # DATA_LO
    self.words.append(hi32(value))                         # DATA_HI
    self.words.append(lo32(int_ctxid))                     # INT_CTXID: reported with the interrupt
    return self

  def wait_reg_mem(self, mem_space: int, address_lo: int, address_hi: int, reference: int, mask: int,
                   function: str = "==", operation: int = 0, engine: int = 0, poll_interval: int = 4) -> PM4Stream:
    """Stall until (*address & mask) <function> reference. mem_space 1: address_lo/hi is a dword-aligned memory
    address; 0: address_lo is a register's dword address (with operation 1, write address_lo, wait on address_hi,
    as amdgpu's HDP flush does)."""
    if function not in WAIT_FUNCTIONS:
      raise ValueError(f"WAIT_REG_MEM function {function!r}: one of {', '.join(WAIT_FUNCTIONS)}")
    if mem_space and address_lo & 3:
      raise ValueError(f"WAIT_REG_MEM on memory at 0x{address_lo:x}: needs a 4-byte aligned address")
    self.header(P.WAIT_REG_MEM, 6)
    self.words.append(P.WAIT_REG_MEM.body[0].encode(FUNCTION=WAIT_FUNCTIONS[function], MEM_SPACE=mem_space,
                                                    OPERATION=operation, ENGINE=engine))  # WAIT_CNTL
    self.words.append(lo32(address_lo))                    # POLL_ADDRESS_LO (memory) or register
    self.words.append(lo32(address_hi))                    # POLL_ADDRESS_HI (memory) or second register
    self.words.append(lo32(reference))                     # REFERENCE
    self.words.append(lo32(mask))                          # MASK
    self.words.append(lo32(poll_interval))                 # POLL_INTERVAL
    return self

  def wait_mem(self, address: int, reference: int, mask: int = 0xFFFFFFFF, function: str = ">=") -> PM4Stream:
    return self.wait_reg_mem(1, lo32(address), hi32(address), reference, mask, function)

  def indirect_buffer(self, address: int, ndw: int, vmid: int = 0, cache_policy: int = 0,
                      name: str | None = None) -> PM4Stream:
    """Run the `ndw`-dword PM4 buffer at `address` (4-byte aligned), then come back."""
    if address & 3:
      raise ValueError(f"indirect buffer at 0x{address:x}: needs a 4-byte aligned address")
    control = P.INDIRECT_BUFFER.body[2].encode(IB_SIZE=ndw, VALID=1, VMID=vmid, CACHE_POLICY=cache_policy)
    self.header(P.INDIRECT_BUFFER, 3)
    self.mark(name and name + ".addr_lo")
    self.words.append(lo32(address))                       # IB_BASE_LO
    self.mark(name and name + ".addr_hi")
    self.words.append(hi32(address))                       # IB_BASE_HI
    self.words.append(control)                             # IB_CONTROL: IB_SIZE dwords, VALID, VMID
    return self

  def write_data(self, dst: int, *data: int, dst_sel: int = 5, wr_confirm: int = 1, wr_one_addr: int = 0,
                 engine_sel: int = 0, cache_policy: int = 0, name: str | None = None) -> PM4Stream:
    """Write `data` dwords to memory (dst_sel 5: `dst` a byte address) or registers (dst_sel 0: `dst` a register's
    dword address; wr_one_addr 1 writes them all to that one register). `name` marks the first data dword."""
    if not data:
      raise ValueError("WRITE_DATA with no data")
    control = P.WRITE_DATA.body[0].encode(DST_SEL=dst_sel, WR_ONE_ADDR=wr_one_addr, WR_CONFIRM=wr_confirm,
                                          ENGINE_SEL=engine_sel, CACHE_POLICY=cache_policy)
    self.header(P.WRITE_DATA, 3 + len(data))
    self.words.append(control)                             # CONTROL: DST_SEL, WR_CONFIRM, ENGINE_SEL
    self.words.append(lo32(dst))                           # DST_ADDR_LO (or register)
    self.words.append(hi32(dst))                           # DST_ADDR_HI
    self.mark(name)
    self.words.extend(lo32(d) for d in data)               # DATA
    return self

  def event_write(self, event: str, event_index: int, address: int | None = None) -> PM4Stream:
    """Send a VGT event (CS_PARTIAL_FLUSH with index 4 waits for compute work to drain, as Mesa/radv emit it)."""
    event_type = facts.VGT_EVENT_TYPE[self.gfx][event]
    self.header(P.EVENT_WRITE, 1 if address is None else 3)
    self.words.append(P.EVENT_WRITE.body[0].encode(EVENT_TYPE=event_type, EVENT_INDEX=event_index))  # EVENT_CNTL
    if address is not None:
      self.words.append(lo32(address))                     # ADDRESS lo (sample/ZPASS events)
      self.words.append(hi32(address))                     # ADDRESS hi
    return self

  def copy_data(self, src_sel: int, src: int, dst_sel: int, dst: int, wr_confirm: int = 1, count_sel: int = 0,
                engine_sel: int = 0) -> PM4Stream:
    """Copy one dword (count_sel 1: two) from src (sel 0 register, 1 memory, 5 the immediate `src`, 9 timestamp)
    to dst (sel 0 register, 5 memory)."""
    control = P.COPY_DATA.body[0].encode(SRC_SEL=src_sel, DST_SEL=dst_sel, COUNT_SEL=count_sel,
                                         WR_CONFIRM=wr_confirm, ENGINE_SEL=engine_sel)
    self.header(P.COPY_DATA, 5)
    self.words.append(control)                             # CONTROL: SRC_SEL, DST_SEL, COUNT_SEL, WR_CONFIRM
    self.words.append(lo32(src))                           # SRC_ADDR_LO (or register, or immediate data)
    self.words.append(hi32(src))                           # SRC_ADDR_HI
    self.words.append(lo32(dst))                           # DST_ADDR_LO (or register)
    self.words.append(hi32(dst))                           # DST_ADDR_HI
    return self
