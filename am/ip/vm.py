"""GpuVm: a GPU virtual address space on a user VMID (1..15) of the GC hub, with the multi-level page table amdgpu_vm
builds for GFX11 / GFX12 (entry layouts and geometry: am/ip/pte.py); VmDevice: the device as am/queues sees it when
its queues, buffers, kernels and signals live in that space.

Context programming (gfxhub_v3_0.c / gfxhub_v12_0.c setup_vmid_config; the base as gmc_v11_0_emit_flush_gpu_tlb
writes it for a job's VMID, here by MMIO):
  GCVM_CONTEXTn_PAGE_TABLE_START_ADDR = 0, _END_ADDR = max_pfn - 1 (page numbers, LO32 / HI32)
  GCVM_CONTEXTn_PAGE_TABLE_BASE_ADDR = the root PDB2's GPU physical address | AMDGPU_PTE_VALID (amdgpu_gmc_pd_addr)
  GCVM_CONTEXTn_CNTL: ENABLE_CONTEXT, PAGE_TABLE_DEPTH = num_level (3), PAGE_TABLE_BLOCK_SIZE = block_size - 9 (0),
      the *_PROTECTION_FAULT_ENABLE_DEFAULT bits amdgpu sets, RETRY_PERMISSION_OR_INVALID_PAGE_FAULT = 0 (no retry:
      AM has no recoverable-fault handler; a fault is reported once through the IH)
then a TLB flush of the VMID (invalidation engine 17, Gmc.flush). Only the GC hub's context is programmed: nothing AM
runs on the MMHUB (VCN, display) uses a user VMID.

Mapping (amdgpu_vm_bo_update -> amdgpu_vm_ptes_update): page tables are allocated in VRAM on first use, 4 KiB each,
all zero = every entry invalid; PDEs point down (PteFormat.pde), PTEs at the PTB map 4 KiB pages, or with `huge` a
PDB0 entry with the P bit maps 2 MiB. PTE flags: READABLE always, WRITEABLE and EXECUTABLE as asked, MTYPE_NC
(gmc_v11_0_map_mtype / gmc_v12_0_map_mtype for AMDGPU_VM_MTYPE_DEFAULT); system pages add SYSTEM | SNOOPED
(amdgpu_ttm_tt_pde_flags for cached GTT). The host writes the tables through BAR 0, so every update ends with an HDP
flush (amdgpu_vm_cpu_commit) and a TLB flush of the VMID: the GC hub caches translations, so a changed entry is not
seen before the flush (the simulated card's TLB models that).

VA layout: mappings lie in [VA_BOTTOM, 2^47): the bottom 64 KiB stay unmapped (AMDGPU_VA_RESERVED_BOTTOM), and from
2^47 on a shader sees sign-extended addresses (AMDGPU_GMC_HOLE_START in amdgpu_gmc.h), which AM does not hand out.
`alloc` places buffers from VA_BASE up.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from am.errors import AMError
from am.ip.gmc import Allocation, context_reg
from am.ip.pte import FORMATS, PAGE, PTE_ADDRESS, SYSTEM, VALID, geometry

VA_BOTTOM = 1 << 16             # AMDGPU_VA_RESERVED_BOTTOM (amdgpu_vm.h)
VA_HOLE = 1 << 47               # AMDGPU_GMC_HOLE_START (amdgpu_gmc.h)
VA_BASE = 0x4000_0000_0000      # where GpuVm.alloc starts (PDB2 entry 128)
HUGE = 2 << 20                  # a PDB0 entry with the P bit


@dataclass
class Mapping:
  va: int
  size: int
  pages: list[int]               # GPU physical (or bus) address of each 4 KiB page, or of each 2 MiB page when huge
  system: bool
  writeable: bool
  executable: bool
  huge: bool
  owned: Allocation | None = None   # VRAM that `alloc` took for it (released by `free`)


class GpuVm:
  """Args:
    dev: the booted AMDevice. vmid: 1..15, not used by another GpuVm (Gmc.create_vm picks one).

  Raises:
    AMError: a VMID outside 1..15 or taken."""

  def __init__(self, dev, vmid: int):
    gmc = dev.gmc
    if not 1 <= vmid <= 15 or vmid in gmc.vms:
      raise AMError(f"VMID {vmid}: user VMIDs are 1..15 and {sorted(gmc.vms) or 'none'} are taken")
    self.dev, self.vmid = dev, vmid
    self.fmt = FORMATS[dev.caps.pte_format]
    self.geo = geometry(dev.caps.gfx_generation)
    self.tables: dict[tuple[int, int], Allocation] = {(0, 0): gmc.alloc(PAGE, map_gart=False)}
    self.mappings: dict[int, Mapping] = {}
    self.next_va = VA_BASE
    self.queues: list = []          # compute queues made by `queue`, taken off their HQDs by `destroy`
    self._device: VmDevice | None = None
    gmc.vms[vmid] = self
    self.enable()

  @property
  def root(self) -> Allocation:
    return self.tables[(0, 0)]

  @property
  def va_end(self) -> int:
    return min(self.geo.max_pfn * PAGE, VA_HOLE)

  def regs(self, ctx0: str, ctx1: str):
    return context_reg(self.dev.gc, ctx0, ctx1, self.vmid)

  def enable(self) -> None:
    base = self.dev.gmc.pa(self.root.offset) | VALID
    last = self.geo.max_pfn - 1
    for ctx0, ctx1, value in (
        ("regGCVM_CONTEXT0_PAGE_TABLE_START_ADDR_LO32", "regGCVM_CONTEXT1_PAGE_TABLE_START_ADDR_LO32", 0),
        ("regGCVM_CONTEXT0_PAGE_TABLE_START_ADDR_HI32", "regGCVM_CONTEXT1_PAGE_TABLE_START_ADDR_HI32", 0),
        ("regGCVM_CONTEXT0_PAGE_TABLE_END_ADDR_LO32", "regGCVM_CONTEXT1_PAGE_TABLE_END_ADDR_LO32", last & 0xFFFFFFFF),
        ("regGCVM_CONTEXT0_PAGE_TABLE_END_ADDR_HI32", "regGCVM_CONTEXT1_PAGE_TABLE_END_ADDR_HI32", last >> 32),
        ("regGCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32", "regGCVM_CONTEXT1_PAGE_TABLE_BASE_ADDR_LO32", base & 0xFFFFFFFF),
        ("regGCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32", "regGCVM_CONTEXT1_PAGE_TABLE_BASE_ADDR_HI32", base >> 32)):
      self.regs(ctx0, ctx1).write(value)
    self.regs("regGCVM_CONTEXT0_CNTL", "regGCVM_CONTEXT1_CNTL").write(
      ENABLE_CONTEXT=1, PAGE_TABLE_DEPTH=self.geo.num_level, PAGE_TABLE_BLOCK_SIZE=self.geo.block_size - 9,
      RANGE_PROTECTION_FAULT_ENABLE_DEFAULT=1, DUMMY_PAGE_PROTECTION_FAULT_ENABLE_DEFAULT=1,
      PDE0_PROTECTION_FAULT_ENABLE_DEFAULT=1, VALID_PROTECTION_FAULT_ENABLE_DEFAULT=1,
      READ_PROTECTION_FAULT_ENABLE_DEFAULT=1, WRITE_PROTECTION_FAULT_ENABLE_DEFAULT=1,
      EXECUTE_PROTECTION_FAULT_ENABLE_DEFAULT=1, RETRY_PERMISSION_OR_INVALID_PAGE_FAULT=0)
    self.dev.gmc.flush(self.vmid)

  def describe(self) -> str:
    cntl = self.regs("regGCVM_CONTEXT0_CNTL", "regGCVM_CONTEXT1_CNTL").read_fields()
    return (f"VMID {self.vmid}: {len(self.geo.levels)}-level page table ({' -> '.join(self.geo.levels)}), root at "
            f"GPU PA 0x{self.dev.gmc.pa(self.root.offset):x}, VA 0..0x{self.geo.max_pfn * PAGE:x} (mapped below "
            f"0x{self.va_end:x}), CONTEXT{self.vmid}_CNTL ENABLE_CONTEXT={cntl['ENABLE_CONTEXT']} "
            f"DEPTH={cntl['PAGE_TABLE_DEPTH']} "
            f"BLOCK_SIZE={cntl['PAGE_TABLE_BLOCK_SIZE']}, {len(self.tables)} tables, {len(self.mappings)} mappings")

  # ---- page tables ----
  def _slot(self, table: Allocation, index: int) -> int:
    return table.offset + index * 8

  def _table(self, pfn: int, depth: int, create: bool) -> Allocation | None:
    """The table at `depth` on the walk of page `pfn`; directories on the way are made when `create`.

    Raises:
      AMError: a directory entry on the way is a huge-page PTE."""
    table = self.root
    for d in range(depth):
      key = (d + 1, pfn >> self.geo.shifts[d])
      slot = self._slot(table, self.geo.index(pfn, d))
      entry = self.dev.vram.read64(slot)
      if entry & VALID and self.fmt.is_huge(entry):
        raise AMError(f"VA 0x{pfn * PAGE:x} lies in a huge page of {self.geo.levels[d]}; unmap it first")
      if not entry & VALID:
        if not create:
          return None
        if key not in self.tables:
          self.tables[key] = self.dev.gmc.alloc(PAGE, map_gart=False)
        self.dev.vram.write64(slot, self.fmt.pde(self.dev.gmc.pa(self.tables[key].offset)))
      table = self.tables[key]
    return table

  def _write(self, va: int, entries: list[int], huge: bool, create: bool = True) -> None:
    """Write consecutive leaf entries (PTEs, or huge-page PDB0 entries) from `va`, one table's run at a time."""
    depth = self.geo.num_level - (1 if huge else 0)
    step = HUGE if huge else PAGE
    per_table = 1 << (self.geo.block_size if depth == self.geo.num_level else 9)
    done = 0
    while done < len(entries):
      pfn = (va + done * step) // PAGE
      index = self.geo.index(pfn, depth)
      count = min(len(entries) - done, per_table - index)
      table = self._table(pfn, depth, create)
      if table is not None:
        run = np.array(entries[done:done + count], dtype=np.uint64)
        self.dev.vram.write(self._slot(table, index), run.tobytes())
      done += count

  def _commit(self) -> None:
    self.dev.soc.hdp_flush()
    self.dev.gmc.flush(self.vmid)

  def walk(self, va: int) -> list[tuple[str, int, int]]:
    """The driver's own tables read back along the walk of `va`: (level, GPU PA of the entry, entry) from the root
    to the PTE (or the huge-page PTE, or the first invalid entry)."""
    pfn, out = va // PAGE, []
    table = self.root
    for depth, level in enumerate(self.geo.levels):
      slot = self._slot(table, self.geo.index(pfn, depth))
      entry = self.dev.vram.read64(slot)
      out.append((level, self.dev.gmc.pa(slot), entry))
      if depth == self.geo.num_level or not entry & VALID or self.fmt.is_huge(entry):
        break
      table = self.tables[(depth + 1, pfn >> self.geo.shifts[depth])]
    return out

  # ---- mappings ----
  def _check_range(self, va: int, size: int, align: int) -> None:
    if va % align or size % align or size <= 0:
      raise ValueError(f"mapping [0x{va:x}, +0x{size:x}): address and size must be positive multiples of 0x{align:x}")
    if va < VA_BOTTOM or va + size > self.va_end:
      raise ValueError(f"mapping [0x{va:x}, +0x{size:x}) leaves the VM's usable range [0x{VA_BOTTOM:x}, "
                       f"0x{self.va_end:x})")
    for m in self.mappings.values():
      if va < m.va + m.size and m.va < va + size:
        raise ValueError(f"[0x{va:x}, +0x{size:x}) overlaps the mapping [0x{m.va:x}, +0x{m.size:x}) of VMID "
                         f"{self.vmid}")

  def map(self, va: int, size: int, *, vram: int | None = None, dma=None, writeable: bool = True,
          executable: bool = False, huge: bool = False) -> Mapping:
    """Map VRAM [vram, +size) or the DMA buffer `dma` (am.mmio.pci.DmaBuffer: system pages by bus address) at `va`.

    Raises:
      ValueError: both or neither source, misalignment (4 KiB; 2 MiB for `huge`, VRAM only), a range outside
        [VA_BOTTOM, 2^47) or overlapping another mapping, a DMA buffer smaller than `size`.
      AMError: a directory entry on the way is a huge page."""
    if (vram is None) == (dma is None):
      raise ValueError("map needs exactly one of vram= (a VRAM offset) and dma= (a DmaBuffer)")
    step = HUGE if huge else PAGE
    self._check_range(va, size, step)
    if dma is not None:
      if huge:
        raise ValueError("huge pages map VRAM only (system pages are 4 KiB, not known to be contiguous)")
      if len(dma.bus_addresses) * PAGE < size:
        raise ValueError(f"DMA buffer of {len(dma.bus_addresses)} pages is smaller than the 0x{size:x}-byte mapping")
      pages = list(dma.bus_addresses[:size // PAGE])
    else:
      if vram % step:
        raise ValueError(f"VRAM offset 0x{vram:x} is not aligned to 0x{step:x}")
      pages = [self.dev.gmc.pa(vram + i) for i in range(0, size, step)]
    mapping = Mapping(va, size, pages, dma is not None, writeable, executable, huge)
    if huge:
      self._drop_ptbs(va, size)
    flags = self.fmt.pte(0, writeable=writeable, executable=executable, system=dma is not None, huge=huge)
    self._write(va, [address | flags for address in pages], huge)
    self.mappings[va] = mapping
    self._commit()
    return mapping

  def _drop_ptbs(self, va: int, size: int) -> None:
    """Release the PTBs under a range that huge pages take over (no live mapping is in them: the range is free)."""
    for chunk in range(va, va + size, HUGE):
      table = self.tables.pop((self.geo.num_level, chunk // PAGE >> self.geo.shifts[self.geo.num_level - 1]), None)
      if table is not None:
        self.dev.gmc.vram.release(table.offset, table.size)

  def unmap(self, va: int) -> Mapping:
    """Remove the mapping that starts at `va` (its entries become 0: invalid), then flush.

    Raises:
      ValueError: no mapping starts at `va`."""
    mapping = self.mappings.pop(va, None)
    if mapping is None:
      raise ValueError(f"no mapping of VMID {self.vmid} starts at 0x{va:x}")
    self._write(va, [0] * len(mapping.pages), mapping.huge, create=False)
    self._commit()
    return mapping

  def translate(self, va: int) -> tuple[bool, int]:
    """(system, address) behind `va` from the driver's tables: a GPU physical address or, when system, a bus address.

    Raises:
      AMError: `va` is not mapped."""
    level, _, entry = self.walk(va)[-1]
    if not entry & VALID:
      raise AMError(f"0x{va:x} is not mapped in VMID {self.vmid} ({level} entry 0x{entry:016x})")
    span = PAGE if level == "AMDGPU_VM_PTB" else self.geo.span(self.geo.levels.index(level))
    return bool(entry & SYSTEM), (entry & PTE_ADDRESS & ~(span - 1)) | (va & (span - 1))

  # ---- memory for am/queues ----
  def alloc(self, size: int, align: int = PAGE, map_gart: bool = True, writeable: bool = True,
            executable: bool = True) -> Allocation:
    """VRAM, zeroed, mapped at the next free VA when `map_gart` (the name am/queues uses for every address space);
    `va` is the address in this VM, `offset` the VRAM offset (am/queues reads and writes dev.vram there)."""
    a = self.dev.gmc.alloc(size, align, map_gart=False)
    if map_gart:
      va = -(-self.next_va // max(align, PAGE)) * max(align, PAGE)
      self.map(va, a.size, vram=a.offset, writeable=writeable, executable=executable).owned = a
      a.va = va
      self.next_va = va + a.size + PAGE   # an unmapped guard page between buffers
    return a

  def free(self, a: Allocation) -> None:
    """Unmap (when mapped) and release an allocation of `alloc`."""
    if a.va:
      self.unmap(a.va)
    self.dev.gmc.vram.release(a.offset, a.size)

  @property
  def device(self) -> VmDevice:
    if self._device is None:
      self._device = VmDevice(self.dev, self)
    return self._device

  def queue(self, pipe: int, queue: int, doorbell: int, ring_bytes: int = 64 << 10):
    """A compute queue on this VMID (am.queues.compute.ComputeQueue): ring, pointers, EOP and signal in the VM, the
    MQD in the VMID0 GART (amdgpu keeps MQDs in kernel memory); programmed and active.

    Raises:
      AMError: the MEC did not activate the HQD."""
    from am.queues.compute import ComputeQueue
    q = ComputeQueue(self.device, pipe, queue, doorbell, ring_bytes, mqd_gmc=self.dev.gmc)
    q.program()
    self.queues.append(q)
    return q

  def destroy(self) -> None:
    """Take the VM's queues off their HQDs (ComputeQueue.unmap), disable the context, flush, release the page tables
    and the memory `alloc` took.

    Raises:
      AMTimeout: a queue's HQD did not deactivate."""
    for q in self.queues:
      q.unmap()
    self.queues = []
    self.regs("regGCVM_CONTEXT0_CNTL", "regGCVM_CONTEXT1_CNTL").write(0)
    self.dev.gmc.flush(self.vmid)
    for m in self.mappings.values():
      if m.owned is not None:
        self.dev.gmc.vram.release(m.owned.offset, m.owned.size)
    for table in self.tables.values():
      self.dev.gmc.vram.release(table.offset, table.size)
    self.mappings, self.tables = {}, {}
    self.dev.gmc.vms.pop(self.vmid, None)


class VmDevice:
  """The booted AMDevice as am/queues uses it, with `gmc` the GpuVm: Buffer, GpuKernel, ComputeQueue, Signal and
  CommandBuffer made with it allocate in the VM, and the queue's HQD runs on the VM's VMID (ComputeQueue reads
  dev.gmc.vmid). Registers, doorbells, IH, HDP and BAR 0 are the card's.

  Attributes:
    device: the AMDevice. gmc: the GpuVm. vram, soc, doorbells, ih, caps, gc: the AMDevice's."""

  def __init__(self, dev, vm: GpuVm):
    self.device, self.gmc = dev, vm
    self.vram, self.soc, self.doorbells, self.ih, self.caps, self.gc = (dev.vram, dev.soc, dev.doorbells, dev.ih,
                                                                        dev.caps, dev.gc)
