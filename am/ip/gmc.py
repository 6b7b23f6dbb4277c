"""GMC: the GC hub and the MMHUB (VMID0 GART page table, FB and system apertures, TLB flush), VRAM allocation, and
the user VMIDs' address spaces (GpuVm, am/ip/vm.py, made by `create_vm`).

Sequence per hub (gfxhub_v3_0.c / mmhub_v3_0.c gart_enable for Navi31; gfxhub_v12_0.c / mmhub_v4_1_0.c for
Navi48): init_gart_aperture_regs (CONTEXT0 page table base/start/end), init_system_aperture_regs (AGP off, system
aperture = VRAM), init_tlb_regs (MC_VM_MX_L1_TLB_CNTL), init_cache_regs (VM_L2_CNTL), enable_system_domain
(CONTEXT0_CNTL: ENABLE_CONTEXT=1, PAGE_TABLE_DEPTH=0: one flat level of PTEs for the GART, as amdgpu uses it), then
a flush through invalidation engine 17 (gmc_v11_0_flush_vm_hub: REQ with PER_VMID_INVALIDATE_REQ, poll ACK).

Addresses in page tables and in the page-table base registers are GPU physical: VRAM offset + vram_base_offset
(MMMC_VM_FB_OFFSET << 24, mmhub_v3_0_get_mc_fb_offset; amdgpu_gmc_vram_mc2pa), so the base is the table's physical
address | AMDGPU_PTE_VALID (amdgpu_gmc_pd_addr through gmc_v11_0_get_vm_pde). PTE layouts per generation:
am/ip/pte.py. GART PTE flags: gmc_v11_0.c / gmc_v12_0.c gart_init gart_pte_flags (MTYPE_UC, EXECUTABLE, and IS_PTE on
GFX12), and amdgpu_gart_map adds VALID | READABLE | WRITEABLE.

VM contexts 1-15 sit at even distances from context 0 (gfxhub_v3_0_init: hub->ctx_distance = CONTEXT1_CNTL -
CONTEXT0_CNTL, ctx_addr_distance likewise for the PAGE_TABLE_* registers): `context_reg` finds context n's register
from the named context-0 and context-1 ones.
"""
from __future__ import annotations

from dataclasses import dataclass

from am.errors import AMError
from am.ip.base import IpBlock, wait_reg
from am.ip.pte import FORMATS, PAGE, PTE_ADDRESS, VALID

MAX_VMID = 15


@dataclass
class Allocation:
  offset: int      # VRAM offset
  size: int
  mc: int          # MC address (fb_base + offset)
  va: int = 0      # GPU virtual address in the address space that mapped it (VMID0 GART or a GpuVm); 0: unmapped

  @property
  def gart(self) -> int:
    """The VMID0 GART address of an allocation of Gmc.alloc (the same number as `va`)."""
    return self.va


def context_reg(block, ctx0: str, ctx1: str, vmid: int):
  """VM context `vmid`'s instance of the register named `ctx0` for context 0 and `ctx1` for context 1.

  Raises:
    AMError: `vmid` outside 0..15, or no register at the computed address."""
  if not 0 <= vmid <= MAX_VMID:
    raise AMError(f"VMID {vmid}: the hubs have VM contexts 0..{MAX_VMID}")
  first, second = block[ctx0], block[ctx1]
  name = block.name_at(first.addr + vmid * (second.addr - first.addr))
  if name is None:
    raise AMError(f"no register of VM context {vmid} at the {ctx0} + {vmid} x ({ctx1} - {ctx0}) position")
  return block[name]


class VramAllocator:
  """First-fit over VRAM, leaving the top DISCOVERY_TMR_OFFSET-sized reserve untouched."""

  def __init__(self, size: int, reserved_top: int):
    self.free = [(0, size - reserved_top)]

  def alloc(self, size: int, align: int = PAGE) -> int:
    size = (size + PAGE - 1) // PAGE * PAGE
    for i, (start, end) in enumerate(self.free):
      aligned = (start + align - 1) // align * align
      if aligned + size <= end:
        pieces = [(start, aligned)] if aligned > start else []
        pieces += [(aligned + size, end)] if aligned + size < end else []
        self.free[i:i + 1] = pieces
        return aligned
    raise AMError(f"out of VRAM: no free range of {size:#x} bytes aligned to {align:#x} (free: "
                  f"{sum(e - s for s, e in self.free):#x} bytes in {len(self.free)} pieces)")

  def release(self, offset: int, size: int) -> None:
    size = (size + PAGE - 1) // PAGE * PAGE
    self.free = sorted(self.free + [(offset, offset + size)])
    merged = [self.free[0]]
    for start, end in self.free[1:]:
      if start == merged[-1][1]:
        merged[-1] = (merged[-1][0], end)
      else:
        merged.append((start, end))
    self.free = merged


class Gmc(IpBlock):
  name = "gmc"
  GART_START = 0x0           # AMDGPU_GART_PLACEMENT_LOW with the FB high in the MC space (amdgpu_gmc_gart_location)
  GART_SIZE = 64 << 20
  vmid = 0                   # the address space Gmc.alloc maps into (am/queues programs CP_HQD_VMID from it)

  def init_sw(self) -> None:
    dev = self.dev
    from am.discovery import DISCOVERY_TMR_OFFSET
    self.vram = VramAllocator(dev.vram_size, DISCOVERY_TMR_OFFSET)
    fb = dev.gc.regGCMC_VM_FB_LOCATION_BASE.read_fields()["FB_BASE"]
    self.fb_base = fb << 24     # gfxhub get_fb_location: FB_BASE is in 16 MiB units
    self.fb_end = self.fb_base + dev.vram_size - 1
    self.vram_base = dev.mmhub.regMMMC_VM_FB_OFFSET.read_fields()["FB_OFFSET"] << 24   # vram_base_offset
    self.pte = FORMATS[dev.caps.pte_format]
    self.pte_format = self.pte.name
    self.gart_pages = self.GART_SIZE // PAGE
    self.table = self.alloc(self.gart_pages * 8, map_gart=False)
    self.next_gart_page = 1   # GART page 0 stays unmapped: a null pointer faults
    self.dummy = self.alloc(PAGE, map_gart=False)
    self.vms: dict[int, object] = {}   # VMID -> its am.ip.vm.GpuVm

  def pa(self, offset: int) -> int:
    """The GPU physical address of VRAM offset `offset` (what PDEs, PTEs and page-table bases hold)."""
    return self.vram_base + offset

  def alloc(self, size: int, align: int = PAGE, map_gart: bool = True) -> Allocation:
    """VRAM for the driver's own use, zeroed; mapped into the VMID0 GART when `map_gart`."""
    offset = self.vram.alloc(size, align)
    size = (size + PAGE - 1) // PAGE * PAGE
    self.dev.vram.write(offset, bytes(size))
    a = Allocation(offset, size, self.fb_base + offset)
    if map_gart:
      a.va = self.map(offset, size)
    return a

  def gart_pte(self, offset: int) -> int:
    """The GART PTE of VRAM page `offset` (gart_pte_flags + amdgpu_gart_map's VALID | READABLE | WRITEABLE)."""
    return self.pte.pte(self.pa(offset), executable=True, mtype="MTYPE_UC", is_pte=self.pte.is_pte is not None)

  def map(self, offset: int, size: int) -> int:
    """Map VRAM [offset, +size) into the GART; returns its GPU virtual address."""
    return self.map_ptes([self.gart_pte(offset + i) for i in range(0, size - size % PAGE, PAGE)])

  def map_system(self, dma) -> int:
    """Map every page of `dma` (am.mmio.pci.DmaBuffer: host memory by bus address) into the GART, as amdgpu maps GTT
    pages: gart_pte_flags plus AMDGPU_PTE_SYSTEM | AMDGPU_PTE_SNOOPED (amdgpu_ttm_tt_pte_flags); returns the GPU
    virtual address of its first page.

    Raises:
      AMError: the GART has too few free pages."""
    is_pte = self.pte.is_pte is not None
    return self.map_ptes([self.pte.pte(bus, executable=True, mtype="MTYPE_UC", is_pte=is_pte, system=True)
                          for bus in dma.bus_addresses])

  def map_ptes(self, ptes: list[int]) -> int:
    """Write `ptes` to the next free GART pages, then flush; returns the GPU virtual address of the first."""
    pages = len(ptes)
    if self.next_gart_page + pages > self.gart_pages:
      raise AMError(f"GART full: {pages} pages asked, {self.gart_pages - self.next_gart_page} left")
    first = self.next_gart_page
    for i, pte in enumerate(ptes):
      self.dev.vram.write64(self.table.offset + (first + i) * 8, pte)
    self.next_gart_page += pages
    self.flush()
    return self.GART_START + first * PAGE

  def vram_offset(self, va: int) -> int:
    """The VRAM offset behind GART address `va`, from the driver's own page table (for decoding tools).

    Raises:
      AMError: `va` is outside the GART or its page is not mapped."""
    page = (va - self.GART_START) // PAGE
    if not 0 <= page < self.gart_pages:
      raise AMError(f"0x{va:x} is outside the GART [0x{self.GART_START:x}, +0x{self.GART_SIZE:x})")
    pte = self.dev.vram.read64(self.table.offset + page * 8)
    if not pte & VALID:
      raise AMError(f"GART page of 0x{va:x} is not mapped (PTE 0x{pte:016x})")
    return ((pte & PTE_ADDRESS) - self.vram_base) | (va & (PAGE - 1))

  def create_vm(self, vmid: int | None = None):
    """A new GPU virtual address space (am.ip.vm.GpuVm) on `vmid` (default: the lowest free of 1..15).

    Raises:
      AMError: the VMID is taken or outside 1..15, or none is free."""
    from am.ip.vm import GpuVm
    if vmid is None:
      vmid = next((v for v in range(1, MAX_VMID + 1) if v not in self.vms), None)
      if vmid is None:
        raise AMError(f"all user VMIDs 1..{MAX_VMID} are taken; destroy a GpuVm first")
    return GpuVm(self.dev, vmid)

  def init_hw(self) -> list[str]:
    out = []
    for block, prefix in ((self.dev.gc, "GC"), (self.dev.mmhub, "MM")):
      self.enable_hub(block, prefix)
      ctx = block[f"reg{prefix}VM_CONTEXT0_CNTL"].read_fields()
      out.append(f"{prefix}HUB: FB 0x{self.fb_base:x}-0x{self.fb_end:x}, GART 0x{self.GART_START:x}"
                 f"+{self.GART_SIZE >> 20} MiB, CONTEXT0 ENABLE_CONTEXT={ctx['ENABLE_CONTEXT']} "
                 f"DEPTH={ctx['PAGE_TABLE_DEPTH']}")
    self.flush()
    out.append(f"TLB flush acknowledged on both hubs; PTE format {self.pte_format}: "
               f"0x{self.gart_pte(0x1000):016x} for GART page 0x1000")
    return out

  def enable_hub(self, block, p: str) -> None:
    base = self.pa(self.table.offset) | VALID
    end = self.GART_START + self.GART_SIZE - 1
    block[f"reg{p}VM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32"].write(base & 0xFFFFFFFF)
    block[f"reg{p}VM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32"].write(base >> 32)
    block[f"reg{p}VM_CONTEXT0_PAGE_TABLE_START_ADDR_LO32"].write((self.GART_START >> 12) & 0xFFFFFFFF)
    block[f"reg{p}VM_CONTEXT0_PAGE_TABLE_START_ADDR_HI32"].write(self.GART_START >> 44)
    block[f"reg{p}VM_CONTEXT0_PAGE_TABLE_END_ADDR_LO32"].write((end >> 12) & 0xFFFFFFFF)
    block[f"reg{p}VM_CONTEXT0_PAGE_TABLE_END_ADDR_HI32"].write(end >> 44)
    block[f"reg{p}MC_VM_AGP_BASE"].write(0)
    block[f"reg{p}MC_VM_AGP_BOT"].write(0xFFFFFF)   # BOT > TOP: the AGP aperture is off
    block[f"reg{p}MC_VM_AGP_TOP"].write(0)
    block[f"reg{p}MC_VM_SYSTEM_APERTURE_LOW_ADDR"].write(self.fb_base >> 18)
    block[f"reg{p}MC_VM_SYSTEM_APERTURE_HIGH_ADDR"].write(self.fb_end >> 18)
    block[f"reg{p}MC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_LSB"].write((self.dummy.offset >> 12) & 0xFFFFFFFF)
    block[f"reg{p}MC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_MSB"].write(self.dummy.offset >> 44)
    block[f"reg{p}MC_VM_MX_L1_TLB_CNTL"].update(ENABLE_L1_TLB=1, SYSTEM_ACCESS_MODE=3, ENABLE_ADVANCED_DRIVER_MODEL=1)
    block[f"reg{p}VM_L2_CNTL"].update(ENABLE_L2_CACHE=1)
    block[f"reg{p}VM_CONTEXT0_CNTL"].update(ENABLE_CONTEXT=1, PAGE_TABLE_DEPTH=0)

  def flush(self, vmid: int = 0) -> None:
    """gmc_v11_0_flush_vm_hub / gmc_v12_0: invalidation engine 17 on each hub, poll its ACK bit for `vmid`."""
    for block, p in ((self.dev.gc, "GC"), (self.dev.mmhub, "MM")):
      block[f"reg{p}VM_INVALIDATE_ENG17_REQ"].write(PER_VMID_INVALIDATE_REQ=1 << vmid, FLUSH_TYPE=0,
                                                     INVALIDATE_L2_PTES=1, INVALIDATE_L2_PDE0=1, INVALIDATE_L2_PDE1=1,
                                                     INVALIDATE_L2_PDE2=1, INVALIDATE_L1_PTES=1)
      wait_reg(block[f"reg{p}VM_INVALIDATE_ENG17_ACK"], 1 << vmid, 1 << vmid, f"TLB flush of VMID {vmid}")

  def fini_hw(self) -> None:
    for vm in list(self.vms.values()):
      vm.destroy()
    for block, p in ((self.dev.gc, "GC"), (self.dev.mmhub, "MM")):
      block[f"reg{p}VM_CONTEXT0_CNTL"].update(ENABLE_CONTEXT=0)
