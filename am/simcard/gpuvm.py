"""GPU memory as the simulated card's engines see it: the GC hub translating (VMID, virtual address) through the page
tables the driver wrote, a TLB, the VM faults it posts to the IH, and the card's physical memory.

Physical memory: GPU physical addresses [0, VRAM size) are VRAM (the simulated card leaves MC_VM_FB_OFFSET at 0, so
vram_base_offset is 0 and a VRAM offset is its GPU physical address); bus addresses [DMA_BASE, +pool) are the host
pages SimCard.alloc_dma hands out (system memory as PTEs with SYSTEM reach it). `PhysMemory` serves both to the wave
emulator; read_va / write_va serve the command processors (CP, SDMA).

SimGmc.lookup(va, write, vmid): the context as gfxhub_v3_0 / gfxhub_v12_0 program it, entry layouts from
am/ip/pte.py (the generation's PteFormat):
  context  GCVM_CONTEXTn_CNTL (n = VMID; registers of context n at context 0 + n x the context-1 distance, as amdgpu
           addresses them): ENABLE_CONTEXT, PAGE_TABLE_DEPTH d, PAGE_TABLE_BLOCK_SIZE b; START / END (page numbers);
           PAGE_TABLE_BASE (GPU physical | VALID, amdgpu_gmc_pd_addr). VMID 0 first tries the system aperture
           [LOW << 18, HIGH << 18 | 0x3FFFF] = MC addresses of VRAM (MC_VM_MX_L1_TLB_CNTL.SYSTEM_ACCESS_MODE 3).
  walk     pfn = (va - start) >> 12; d page-directory levels, then the PTB (d = 0: one flat PTB, the GART). The root
           takes pfn >> shift_0, lower directories 9 bits, the PTB 9 + b bits (amdgpu_vm_pt_level_shift). A PDE must
           be VALID; with the generation's P bit (gfx11 bit 54, gfx12 bit 63) it is the PTE of a huge page (PDB0:
           2 MiB, PDB1: 1 GiB; its address must be aligned to that size), else bits 47:6 address the next table
           (SYSTEM: in system memory). A non-zero block fragment size (translate_further, which amdgpu leaves off on
           GFX11/12) is not modelled and faults, as does a table address outside VRAM / the DMA pool.
  PTE      VALID and READABLE required, WRITEABLE for writes; bits 47:12 the page, a bus address with SYSTEM. Not
           modelled, ignored: FRAG (a TLB hint), MTYPE and SNOOPED (caches), TMZ, EXECUTABLE (no execute
           protection), LOG, DCC; PRT (partially resident: VALID clear) faults like any invalid PTE.
  TLB      a successful translation is cached per (VMID, 4 KiB page) until an invalidation request
           (VM_INVALIDATE_ENG17_REQ) names the VMID with INVALIDATE_L1_PTES and INVALIDATE_L2_PTES set. The cache has
           no capacity limit: an entry changed without a flush is never seen, where hardware sees it once it evicts.
  faults   an IH entry as the GC hub's UTCL2 posts it (gmc_v11_0_sw_init / gmc_v12_0_sw_init register client
           SOC21_IH_CLIENTID_GFX, UTCL2_1_0__SRCID__FAULT): the IV's VMID field; src_data[0] = address bits 43:12,
           src_data[1] bits 3:0 = bits 47:44, bit 5 = a write (gmc_v11_0_process_interrupt; bit 7, retry, stays 0:
           no-retry faults); ring_id = the protection bits kfd_int_process_v11.c reads (0x08 not present: an invalid
           or missing entry, or outside START..END; 0x10 read permission; 0x20 write permission). The queue that made
           the access stops (mec.py, shader.py). GCVM_L2_PROTECTION_FAULT_STATUS / _ADDR are not modelled.
"""
from __future__ import annotations

import numpy as np

from am.generated.boot import ih as ih_facts
from am.ip.gmc import context_reg
from am.ip.pte import FORMATS, PAGE, PDE_ADDRESS, PTE_ADDRESS, READABLE, SYSTEM, VALID, WRITEABLE, get
from am.sim.errors import MemoryFault
from am.sim.memory import Memory, PagedMemory
from am.simcard.hazards import Footprint

CLIENT = ih_facts.CLIENTS["soc21_ih_clientid"]
SRC = ih_facts.SOURCES
DMA_BASE = 0x10_0000_0000        # bus address of the simulated host's DMA pool (64 GiB: above any VRAM offset)
PROT_NOT_PRESENT, PROT_READ, PROT_WRITE = 0x08, 0x10, 0x20   # ring_id bits (kfd_int_process_v11.c)
FAULT_WRITE = 0x20                                           # src_data[1] (gmc_v11_0_process_interrupt)


def context(block, vmid: int, ctx0: str, ctx1: str) -> int:
  return context_reg(block, ctx0, ctx1, vmid).read()


class SimGmc:
  def __init__(self, card):
    self.card = card
    self.fmt = FORMATS[card.caps.pte_format]
    self.tlb: dict[tuple[int, int], tuple[int, bool, bool]] = {}   # (vmid, vpn) -> (page address, readable, writable)
    for block, p in ((card.gc, "GC"), (card.blocks["MMHUB"], "MM")):
      ack = block[f"reg{p}VM_INVALIDATE_ENG17_ACK"]
      req = block[f"reg{p}VM_INVALIDATE_ENG17_REQ"]
      card.regs.hook(block, req.name, write=lambda v, req=req, ack=ack, gc=p == "GC": self.invalidate(req, ack, v, gc))

  def invalidate(self, req, ack, value: int, gc: bool) -> None:
    f = req.decode(value)
    vmids = f["PER_VMID_INVALIDATE_REQ"]
    if gc and f["INVALIDATE_L1_PTES"] and f["INVALIDATE_L2_PTES"]:
      self.tlb = {key: v for key, v in self.tlb.items() if not vmids >> key[0] & 1}
    elif gc:
      self.card.note(f"gmc: invalidation of VMIDs 0x{vmids:x} without L1 and L2 PTEs: the TLB keeps its entries")
    ack.write(vmids)

  # ---- translation ----
  def lookup(self, va: int, write: bool = False, vmid: int = 0) -> tuple[int | None, str, int]:
    """(physical address, '', 0) of GC-hub address `va` in `vmid`, or (None, why, protection bits); posts nothing."""
    vpn = va // PAGE
    hit = self.tlb.get((vmid, vpn))
    if hit is not None:
      page, _, writable = hit
      if write and not writable:
        return None, f"VMID {vmid} 0x{va:x}: write to a page without WRITEABLE (as the TLB holds it)", PROT_WRITE
      return page | (va & (PAGE - 1)), "", 0
    at, why, prot, cacheable = self.walk(va, write, vmid)
    if at is not None and cacheable:
      self.tlb[(vmid, vpn)] = cacheable
    return at, why, prot

  def walk(self, va: int, write: bool, vmid: int):
    """The page walk: (address, '', 0, (page, readable, writable) or None) or (None, why, protection bits, None)."""
    gc = self.card.gc
    cntl = context_reg(gc, "regGCVM_CONTEXT0_CNTL", "regGCVM_CONTEXT1_CNTL", vmid).read_fields()
    if not cntl["ENABLE_CONTEXT"]:
      return None, f"GCVM context {vmid} disabled", PROT_NOT_PRESENT, None
    if vmid == 0:
      low = gc.regGCMC_VM_SYSTEM_APERTURE_LOW_ADDR.read() << 18
      high = (gc.regGCMC_VM_SYSTEM_APERTURE_HIGH_ADDR.read() << 18) | 0x3FFFF
      if low <= va <= high:
        at = self.card.mc_to_vram(va)
        if at is None:
          return None, f"0x{va:x} in the system aperture but past VRAM", PROT_NOT_PRESENT, None
        return at, "", 0, None
    start = (context(gc, vmid, "regGCVM_CONTEXT0_PAGE_TABLE_START_ADDR_LO32",
                     "regGCVM_CONTEXT1_PAGE_TABLE_START_ADDR_LO32")
             | context(gc, vmid, "regGCVM_CONTEXT0_PAGE_TABLE_START_ADDR_HI32",
                       "regGCVM_CONTEXT1_PAGE_TABLE_START_ADDR_HI32") << 32) << 12
    end = (context(gc, vmid, "regGCVM_CONTEXT0_PAGE_TABLE_END_ADDR_LO32", "regGCVM_CONTEXT1_PAGE_TABLE_END_ADDR_LO32")
           | context(gc, vmid, "regGCVM_CONTEXT0_PAGE_TABLE_END_ADDR_HI32",
                     "regGCVM_CONTEXT1_PAGE_TABLE_END_ADDR_HI32") << 32) << 12 | 0xFFF
    base = (context(gc, vmid, "regGCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32",
                    "regGCVM_CONTEXT1_PAGE_TABLE_BASE_ADDR_LO32")
            | context(gc, vmid, "regGCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32",
                      "regGCVM_CONTEXT1_PAGE_TABLE_BASE_ADDR_HI32") << 32)
    if not start <= va <= end:
      return None, f"0x{va:x} outside VMID {vmid}'s range [0x{start:x}, 0x{end:x}]", PROT_NOT_PRESENT, None
    if not base & VALID:
      return None, f"VMID {vmid} page-table base 0x{base:x} lacks the VALID bit", PROT_NOT_PRESENT, None
    return self.walk_tables(va, write, vmid, va - start, base, cntl["PAGE_TABLE_DEPTH"],
                            9 + cntl["PAGE_TABLE_BLOCK_SIZE"])

  def walk_tables(self, va: int, write: bool, vmid: int, offset: int, base: int, depth: int, ptb_bits: int):
    pfn = offset // PAGE
    shifts = [ptb_bits + 9 * (depth - 1 - i) for i in range(depth)] + [0]
    table, table_system = base & PDE_ADDRESS, bool(base & SYSTEM)
    for level in range(depth + 1):
      bits = None if level == 0 else ptb_bits if level == depth else 9
      index = pfn >> shifts[level] if bits is None else (pfn >> shifts[level]) & ((1 << bits) - 1)
      entry = self.read_entry(table + index * 8, table_system)
      where = f"VMID {vmid} 0x{va:x}: level {level} of {depth + 1} entry {index} = 0x{(entry or 0):016x}"
      if entry is None:
        return None, f"{where}: table at 0x{table:x} is outside VRAM and the DMA pool", PROT_NOT_PRESENT, None
      if not entry & VALID:
        return None, f"{where}: not VALID", PROT_NOT_PRESENT, None
      if level < depth and not self.fmt.is_huge(entry):
        if get(self.fmt.bfs, entry):
          return None, f"{where}: block fragment size (translate_further) is not modelled", PROT_NOT_PRESENT, None
        table, table_system = entry & PDE_ADDRESS, bool(entry & SYSTEM)
        continue
      span = PAGE << shifts[level]
      page = entry & PTE_ADDRESS
      if page & (span - 1):
        return None, f"{where}: huge-page address not aligned to 0x{span:x}", PROT_NOT_PRESENT, None
      readable, writable = bool(entry & READABLE), bool(entry & WRITEABLE)
      if not readable:
        return None, f"{where}: not READABLE", PROT_READ, None
      if write and not writable:
        return None, f"{where}: write to a page without WRITEABLE", PROT_WRITE, None
      at = self.physical(page | (offset & (span - 1)), bool(entry & SYSTEM), PAGE)
      if at is None:
        return None, f"{where}: the page is outside VRAM and the DMA pool", PROT_NOT_PRESENT, None
      return at, "", 0, (at & ~(PAGE - 1), readable, writable)
    raise AssertionError("unreachable: the PTB level always returns")

  def physical(self, address: int, system: bool, size: int) -> int | None:
    """The card-memory address (PhysMemory's) of a GPU physical (or, `system`, bus) address, None if unbacked."""
    if system:
      return address if self.card.sysmem.holds(address, size) else None
    return address if 0 <= address and address + size <= self.card.vram.size else None

  def read_entry(self, address: int, system: bool) -> int | None:
    at = self.physical(address, system, 8)
    return None if at is None else int.from_bytes(self.card.phys_read(at, 8), "little")

  def translate(self, va: int, write: bool = False, what: str = "access", vmid: int = 0) -> int | None:
    """Card-memory address of GC-hub address `va` in `vmid`, or None after posting a fault."""
    at, why, prot = self.lookup(va, write, vmid)
    if at is None:
      return self.fault(va, f"{what}: {why}", write, vmid, prot)
    return at

  def fault(self, va: int, why: str, write: bool = False, vmid: int = 0, prot: int = PROT_NOT_PRESENT) -> None:
    """Post the UTCL2 fault entry (module docstring)."""
    self.card.note(f"gmc: VM fault: {why}")
    self.card.ih.post(CLIENT["SOC21_IH_CLIENTID_GFX"], SRC["UTCL2_1_0__SRCID__FAULT"], (va >> 12) & 0xFFFFFFFF,
                      ((va >> 44) & 0xF) | (FAULT_WRITE if write else 0), ring=prot, vmid=vmid)
    return None


class PhysMemory(Memory):
  """The card's memory for the wave emulator, by card-memory address (what the walk yields): VRAM below its size,
  the DMA pool from DMA_BASE."""

  def __init__(self, card):
    self.vram = card.vram.bytes
    self.pool = card.sysmem

  def _split(self, addrs: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(addrs, dtype=np.uint64).astype(np.int64)
    system = a >= DMA_BASE
    top = np.where(system, DMA_BASE + self.pool.top, self.vram.size)
    bad = (a < 0) | (a + size > top)
    if bad.any():
      index = int(np.argmax(bad))
      raise MemoryFault(int(a[index]), size, "card memory address past VRAM and the DMA pool", index=index)
    return a, system

  def load(self, addrs: np.ndarray, size: int) -> np.ndarray:
    a, system = self._split(addrs, size)
    span = np.arange(size)
    if not system.any():
      return self.vram[a[:, None] + span]
    out = np.empty((len(a), size), dtype=np.uint8)
    out[~system] = self.vram[a[~system][:, None] + span]
    out[system] = self.pool.bytes[(a[system] - DMA_BASE)[:, None] + span]
    return out

  def store(self, addrs: np.ndarray, data: np.ndarray) -> None:
    a, system = self._split(addrs, data.shape[1])
    span = np.arange(data.shape[1])
    self.vram[a[~system][:, None] + span] = data[~system]
    if system.any():
      self.pool.bytes[(a[system] - DMA_BASE)[:, None] + span] = data[system]


class GpuMemory(PagedMemory):
  """The virtual memory of one dispatch on `vmid`. `fault` keeps what the first failed walk found: (virtual address,
  write, protection bits, why), for the IH entry shader.py posts; `footprint` what the dispatch's waves read and
  wrote (hazards.py)."""

  def __init__(self, card, vmid: int):
    self.card, self.vmid = card, vmid
    self.writing = False
    self.fault: tuple[int, bool, int, str] | None = None
    self.footprint = Footprint()
    super().__init__(PhysMemory(card), self._walk, PAGE)

  def _walk(self, vpns: np.ndarray) -> np.ndarray:
    unique, where = np.unique(vpns, return_inverse=True)
    pages = unique.tolist()
    out = np.empty(len(unique), dtype=np.uint64)
    for i, vpn in enumerate(pages):
      at, why, prot = self.card.gmc.lookup(vpn * PAGE, self.writing, self.vmid)
      if at is None:
        index = int(np.flatnonzero(where == i)[0])
        self.fault = self.fault or (vpn * PAGE, self.writing, prot, why)
        raise MemoryFault(vpn * PAGE, PAGE, f"GPUVM: {why}", index=index)
      out[i] = at // PAGE
    self.footprint.pages[self.writing].update(pages)   # every wave access translates here, page by page
    return out[where.reshape(-1)]

  def store(self, addrs: np.ndarray, data: np.ndarray) -> None:
    self._as_write(super().store, addrs, data)

  def store_dwords(self, addrs: np.ndarray, data: np.ndarray) -> None:
    self._as_write(super().store_dwords, addrs, data)

  def _as_write(self, store, addrs: np.ndarray, data: np.ndarray) -> None:
    """Run a store with its page walks translating for write (permissions, the footprint's write set)."""
    self.writing = True
    try:
      store(addrs, data)
    finally:
      self.writing = False


def read_va(card, va: int, size: int, what: str, vmid: int = 0) -> bytes | None:
  """`size` bytes at virtual address `va` of `vmid`, page by page; None after posting a VM fault."""
  out = bytearray()
  while len(out) < size:
    at = card.gmc.translate(va + len(out), what=what, vmid=vmid)
    if at is None:
      return None
    chunk = min(size - len(out), PAGE - (va + len(out)) % PAGE)
    out += card.phys_read(at, chunk)
  return bytes(out)


def write_va(card, va: int, data: bytes, what: str, vmid: int = 0) -> bool:
  """Write `data` at virtual address `va` of `vmid`, page by page; False after posting a VM fault (bytes of earlier
  pages stay written, as on the hardware)."""
  done = 0
  while done < len(data):
    at = card.gmc.translate(va + done, write=True, what=what, vmid=vmid)
    if at is None:
      return False
    chunk = min(len(data) - done, PAGE - (va + done) % PAGE)
    card.phys_write(at, data[done:done + chunk])
    done += chunk
  return True
