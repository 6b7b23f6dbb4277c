"""GPUVM page-table entries per GFX generation, encoded and decoded from am/generated/boot/vm.py (amdgpu_vm.h), and
the page-table geometry amdgpu gives the user VMIDs. The driver (am/ip/gmc.py, am/ip/vm.py) encodes with these; the
simulated card's page walker (am/simcard/gpuvm.py) decodes with them.

Which amdgpu_vm.h macros each generation uses (linux-source-6.12, drivers/gpu/drm/amd/amdgpu):
  gfx11  gmc_v11_0.c ("PTE format" / "PDE format" comments, gmc_v11_0_get_vm_pte / _get_vm_pde), amdgpu_vm_pt.c
         AMDGPU_PDE_PTE_FLAG: MTYPE = AMDGPU_PTE_MTYPE_NV10 (50:48), PRT = AMDGPU_PTE_PRT (51, "T"), a PDE that is a
         PTE = AMDGPU_PDE_PTE (54, "P"), block fragment size = AMDGPU_PDE_BFS (63:59); no IS_PTE bit.
  gfx12  gmc_v12_0.c: MTYPE = AMDGPU_PTE_MTYPE_GFX12 (55:54), PRT = AMDGPU_PTE_PRT_GFX12 (56), PDE-is-PTE =
         AMDGPU_PDE_PTE_GFX12 (63, the same bit as AMDGPU_PTE_IS_PTE, "P" in both formats), BFS = AMDGPU_PDE_BFS_GFX12
         (62:58); GART PTEs carry AMDGPU_PTE_IS_PTE (gmc_v12_0_gart_init: gart_pte_flags).
  both   PTE: VALID 0, SYSTEM 1, SNOOPED 2, TMZ 3, EXECUTABLE 4, READABLE 5, WRITEABLE 6, FRAG 11:7, page address 47:12.
         PDE: VALID 0, SYSTEM 1, C 2 (the comments' name), address of the next table 47:6 (gmc_v11_0_get_vm_pde:
         BUG_ON(addr & 0xFFFF00000000003F)).
Addresses in PDEs and PTEs are GPU physical: for VRAM the offset + vram_base_offset (MC_VM_FB_OFFSET << 24,
amdgpu_gmc_vram_mc2pa as gmc_v11_0_get_vm_pde / gmc_v12_0_get_vm_pde apply it), with SYSTEM set a bus (DMA) address.

Geometry (amdgpu_vm_adjust_size(adev, 256 * 1024, 9, 3, 48) in gmc_v11_0_sw_init / gmc_v12_0_sw_init, amdgpu_vm.c;
amdgpu_vm_pt.c amdgpu_vm_pt_level_shift / _num_entries): max_pfn = 2^36 pages (256 TiB of 4 KiB pages), num_level
3 (three page-directory levels above the PTB, the root at PDB2), block_size 9; so GCVM_CONTEXTn_CNTL.PAGE_TABLE_DEPTH
= 3 and PAGE_TABLE_BLOCK_SIZE = block_size - 9 = 0 (gfxhub_v3_0.c / gfxhub_v12_0.c setup_vmid_config). Page-number
shift of each level: PDB2 27, PDB1 18, PDB0 9, PTB 0; every table has 512 entries of 8 bytes (the root:
round_up(max_pfn, 2^27) >> 27 = 512). A PDE with the P bit at PDB0 maps 2 MiB, at PDB1 1 GiB (amdgpu_vm_pt.c: leaf
PDEs are handled as PTEs). translate_further is off on gfx11/12 (only gmc_v9_0.c sets it), so amdgpu writes BFS 0 and
no AMDGPU_PTE_TF; FRAG is a TLB hint for runs of contiguous pages (amdgpu_vm_pte_fragment), which AM writes as 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from am.generated.boot import vm as facts

PAGE_SHIFT = facts.PAGE["AMDGPU_GPU_PAGE_SHIFT"]
PAGE = 1 << PAGE_SHIFT
PTE_ADDRESS = ((1 << 48) - 1) & ~(PAGE - 1)   # 47:12
PDE_ADDRESS = ((1 << 48) - 1) & ~0x3F         # 47:6
BIT = {name: 1 << bit for name, bit in facts.BITS.items()}
VALID, SYSTEM, SNOOPED = BIT["AMDGPU_PTE_VALID"], BIT["AMDGPU_PTE_SYSTEM"], BIT["AMDGPU_PTE_SNOOPED"]
TMZ, EXECUTABLE = BIT["AMDGPU_PTE_TMZ"], BIT["AMDGPU_PTE_EXECUTABLE"]
READABLE, WRITEABLE = BIT["AMDGPU_PTE_READABLE"], BIT["AMDGPU_PTE_WRITEABLE"]
LEVELS = ("AMDGPU_VM_PDB2", "AMDGPU_VM_PDB1", "AMDGPU_VM_PDB0", "AMDGPU_VM_PTB")
ENTRIES = 512                                  # 9 bits a level (amdgpu_vm_pt_num_entries)


def field(name: str, value: int) -> int:
  shift, largest = facts.FIELDS[name]
  if not 0 <= value <= largest:
    raise ValueError(f"{name} = {value}: the field holds 0..{largest}")
  return value << shift


def get(name: str, entry: int) -> int:
  shift, largest = facts.FIELDS[name]
  return (entry >> shift) & largest


@dataclass(frozen=True)
class PteFormat:
  """The generation-specific bits (caps.pte_format names one of FORMATS)."""
  name: str
  mtype: str            # FIELDS name of the MTYPE field
  prt: str              # BITS name of the PRT bit
  pde_pte: str          # BITS name of "this PDE is a PTE"
  bfs: str              # FIELDS name of the PDE block fragment size
  is_pte: str | None    # BITS name of the IS_PTE bit, where the generation has one
  generation: int

  def mtypes(self) -> dict[str, int]:
    return facts.MTYPES[self.generation]

  def pte(self, address: int, *, readable: bool = True, writeable: bool = True, executable: bool = False,
          system: bool = False, snooped: bool = False, mtype: str = "MTYPE_NC", huge: bool = False,
          is_pte: bool = False, valid: bool = True) -> int:
    """A PTE for the page at GPU physical `address` (a bus address when `system`). `huge`: the entry sits in a page
    directory (PDB0: 2 MiB, PDB1: 1 GiB) and carries the P bit. `is_pte`: AMDGPU_PTE_IS_PTE (gfx12 only).

    Raises:
      ValueError: an unaligned address, an unknown MTYPE name, or IS_PTE on a generation without it."""
    if address & ~PTE_ADDRESS:
      raise ValueError(f"PTE address 0x{address:x}: 4 KiB aligned, below 2^48")
    if mtype not in self.mtypes():
      raise ValueError(f"MTYPE {mtype!r}: the {self.name} values are {', '.join(self.mtypes())}")
    if is_pte and self.is_pte is None:
      raise ValueError(f"{self.name} PTEs have no IS_PTE bit")
    entry = address | field(self.mtype, self.mtypes()[mtype])
    for on, bit in ((valid, VALID), (readable, READABLE), (writeable, WRITEABLE), (executable, EXECUTABLE),
                    (system, SYSTEM), (system or snooped, SNOOPED), (huge, BIT[self.pde_pte]),
                    (is_pte, BIT[self.is_pte] if self.is_pte else 0)):
      if on:
        entry |= bit
    return entry

  def pde(self, address: int, system: bool = False) -> int:
    """A PDE pointing at the next-level table at GPU physical `address` (VALID; SYSTEM for a table in system memory,
    as amdgpu_ttm_tt_pde_flags sets it; BFS 0: no translate_further)."""
    if address & ~PDE_ADDRESS:
      raise ValueError(f"PDE address 0x{address:x}: 64-byte aligned, below 2^48")
    return address | VALID | (SYSTEM if system else 0)

  def decode_pte(self, entry: int) -> dict[str, int]:
    out = {"valid": entry & VALID, "system": (entry & SYSTEM) >> 1, "snooped": (entry & SNOOPED) >> 2,
           "tmz": (entry & TMZ) >> 3, "executable": (entry & EXECUTABLE) >> 4, "readable": (entry & READABLE) >> 5,
           "writeable": (entry & WRITEABLE) >> 6, "frag": get("AMDGPU_PTE_FRAG", entry),
           "address": entry & PTE_ADDRESS, "mtype": get(self.mtype, entry),
           "prt": (entry >> facts.BITS[self.prt]) & 1, "pde_pte": (entry >> facts.BITS[self.pde_pte]) & 1}
    if self.is_pte:
      out["is_pte"] = (entry >> facts.BITS[self.is_pte]) & 1
    return out

  def decode_pde(self, entry: int) -> dict[str, int]:
    return {"valid": entry & VALID, "system": (entry & SYSTEM) >> 1, "coherent": (entry & SNOOPED) >> 2,
            "pte": (entry >> facts.BITS[self.pde_pte]) & 1, "bfs": get(self.bfs, entry),
            "address": entry & PDE_ADDRESS}

  def is_huge(self, entry: int) -> bool:
    """A page-directory entry that is a PTE (the P bit)."""
    return bool((entry >> facts.BITS[self.pde_pte]) & 1)

  def mtype_name(self, value: int) -> str:
    return next((k for k, v in self.mtypes().items() if v == value), f"MTYPE {value}")


FORMATS = {
  "gfx11": PteFormat("gfx11", "AMDGPU_PTE_MTYPE_NV10", "AMDGPU_PTE_PRT", "AMDGPU_PDE_PTE", "AMDGPU_PDE_BFS", None, 11),
  "gfx12": PteFormat("gfx12", "AMDGPU_PTE_MTYPE_GFX12", "AMDGPU_PTE_PRT_GFX12", "AMDGPU_PDE_PTE_GFX12",
                     "AMDGPU_PDE_BFS_GFX12", "AMDGPU_PTE_IS_PTE", 12),
}


@dataclass(frozen=True)
class Geometry:
  """amdgpu_vm_adjust_size's outcome: max_pfn pages, num_level directory levels below the PTB count, block_size bits
  of page number resolved by a PTB; shifts: page-number shift of each level from the root down."""
  max_pfn: int
  num_level: int
  block_size: int

  @cached_property
  def shifts(self) -> tuple[int, ...]:
    """amdgpu_vm_pt_level_shift: 9 * (PDB0 - level) + block_size for the directories, 0 for the PTB."""
    return tuple(9 * (self.num_level - 1 - i) + self.block_size for i in range(self.num_level)) + (0,)

  @cached_property
  def levels(self) -> tuple[str, ...]:
    return LEVELS[len(LEVELS) - 1 - self.num_level:]

  def index(self, pfn: int, depth: int) -> int:
    """The entry of page number `pfn` in the table at `depth` (0 = root)."""
    shift = self.shifts[depth]
    if depth == 0:
      return pfn >> shift
    bits = self.block_size if depth == self.num_level else 9
    return (pfn >> shift) & ((1 << bits) - 1)

  def span(self, depth: int) -> int:
    """Bytes one entry of a table at `depth` covers."""
    return PAGE << self.shifts[depth]


def geometry(generation: int) -> Geometry:
  """amdgpu_vm_adjust_size(adev, min_vm_size, fragment_size_default, max_level, max_bits) with the generation's
  arguments and no module parameters: vm_size = min_vm_size GiB clamped to 1 << (max_bits - 30) (the RAM-based guess
  lies between them), max_pfn = vm_size << 18, num_level = min(max_level, DIV_ROUND_UP(log2(max_pfn), 9) - 1),
  block_size 9 when num_level > 1."""
  min_vm_size, _, max_level, max_bits = facts.VM_SIZE[generation]
  vm_size = min(min_vm_size, 1 << (max_bits - 30))
  max_pfn = vm_size << 18
  num_level = min(max_level, -(-((max_pfn - 1).bit_length()) // 9) - 1)
  if num_level <= 1:
    raise ValueError(f"GFX {generation}: num_level {num_level}; AM models the multi-level layout only")
  return Geometry(max_pfn, num_level, 9)
