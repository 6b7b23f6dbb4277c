"""The Adreno chips qcomdrv supports, derived once into a frozen ChipInfo the driver branches on.

Facts per chip, with their sources:
  chip ids, GMEM size, family   linux-source-6.12 (6.12.118-1~deb12u1) drivers/gpu/drm/msm/adreno/a6xx_catalog.c:
                                a630 0x06030001/0x06030002 SZ_1M 6XX_GEN1; a650 0x06050002 SZ_1M + SZ_128K 6XX_GEN3;
                                a660 0x06060001 SZ_1M + SZ_512K 6XX_GEN4; a730 0x07030001 SZ_2M 7XX_GEN1;
                                a740 0x43050a01 3 * SZ_1M 7XX_GEN2
  register file, waves, SPs     Mesa 25.0.7 src/freedreno/common/freedreno_devices.py: reg_size_vec4 96 (a6xx gen1,
                                a7xx), 64 (a6xx gen3, gen4); threadsize_base 64; max_waves 16; wave_granularity 2;
                                cs_shared_mem_size 32 KiB; num_ccu (= SP cores) 2, 3, 3, 4, 6
  register offsets, packets     qcomdrv/generated/ (a6xx.xml, adreno_pm4.xml), picked by `gen`

kgsl reports chip_id as core:8 major:8 minor:8 patch:8 (msm_kgsl.h, struct kgsl_devinfo). a6xx parts are matched on
core.major.minor (any patch level); a7xx ids are matched exactly, as the catalog lists them.
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_LOCAL_SIZE = 1024  # HLSQ_CS_NDRANGE_0.LOCALSIZEX holds size - 1 in 10 bits


@dataclass(frozen=True)
class ChipInfo:
  """Everything qcomdrv needs to know about one Adreno, derived from its kgsl chip id."""
  name: str  # "a630" ...
  chip_id: int  # the id kgsl reports for it (KGSL_PROP_DEVICE_INFO)
  gen: str  # "a6xx" | "a7xx": which generated register and packet tables apply
  family: str  # the kernel catalog's family (ADRENO_6XX_GEN1 ...)
  gmem_bytes: int
  reg_size_vec4: int  # full-precision vec4 registers per fiber slot (the register file one SP shares among waves)
  wave_granularity: int
  max_waves: int
  threadsize_base: int  # threads per wave at THREAD64; THREAD128 doubles it
  sp_cores: int
  shared_mem_bytes: int  # local (shared) memory one workgroup may use
  const_vec4: int  # constant file size in vec4 (CONSTLEN_512 needs a7xx; a6xx CONSTANTRAMMODE tops at 256)

  @property
  def has_event_write7(self) -> bool:
    """a7xx replaced CP_EVENT_WRITE by CP_EVENT_WRITE7 (same opcode 0x46, new payload; adreno_pm4.xml)."""
    return self.gen == "a7xx"

  @property
  def has_sp_cs_cntl(self) -> bool:
    """SP_CS_CNTL_0/1, the SP's copy of HLSQ_CS_CNTL_0/1, is "new in a6xx gen4" (a6xx.xml): a660 and a7xx."""
    return self.family in ("ADRENO_6XX_GEN4", "ADRENO_7XX_GEN1", "ADRENO_7XX_GEN2")

  @property
  def has_cs_last_local_size(self) -> bool:
    """a7xx has HLSQ_CS_LAST_LOCAL_SIZE (the size of the last, partial, workgroup; a6xx.xml)."""
    return self.gen == "a7xx"

  def waves_that_fit(self, full_regs: int, threadsize: int) -> int:
    """Waves of this register footprint (vec4 full registers per thread) resident at once on one SP: the register
    file holds reg_size_vec4 registers for each of `wave_granularity` waves of threadsize_base threads."""
    if full_regs <= 0:
      return self.max_waves
    per_wave = full_regs * (threadsize // self.threadsize_base)
    return min(self.max_waves, (self.reg_size_vec4 // per_wave) * self.wave_granularity)


CHIPS = (
  ChipInfo("a630", 0x06030001, "a6xx", "ADRENO_6XX_GEN1", 1 << 20, 96, 2, 16, 64, 2, 32 << 10, 256),
  ChipInfo("a630", 0x06030002, "a6xx", "ADRENO_6XX_GEN1", 1 << 20, 96, 2, 16, 64, 2, 32 << 10, 256),
  ChipInfo("a650", 0x06050002, "a6xx", "ADRENO_6XX_GEN3", (1 << 20) + (128 << 10), 64, 2, 16, 64, 3, 32 << 10, 256),
  ChipInfo("a660", 0x06060001, "a6xx", "ADRENO_6XX_GEN4", (1 << 20) + (512 << 10), 64, 2, 16, 64, 3, 32 << 10, 256),
  ChipInfo("a730", 0x07030001, "a7xx", "ADRENO_7XX_GEN1", 2 << 20, 96, 2, 16, 64, 4, 32 << 10, 512),
  ChipInfo("a740", 0x43050A01, "a7xx", "ADRENO_7XX_GEN2", 3 << 20, 96, 2, 16, 64, 6, 32 << 10, 512),
)

# one of each generation, the simulator's defaults (QCOM_SIM=a6xx / a7xx)
SIM_DEFAULTS = {"a6xx": "a660", "a7xx": "a740"}


class UnsupportedChip(Exception):
  """kgsl reported a chip id qcomdrv has no tables for."""


def supported_list() -> str:
  return ", ".join(f"{c.name} (0x{c.chip_id:08x})" for c in CHIPS)


def chip_info(chip_id: int) -> ChipInfo:
  """The ChipInfo for a kgsl chip id.

  Raises:
    UnsupportedChip: the id is none of CHIPS; the message names it and the supported list.
  """
  for chip in CHIPS:
    if chip.chip_id == chip_id:
      return chip
  for chip in CHIPS:  # a6xx: any patch level of a listed core.major.minor
    if chip.gen == "a6xx" and chip.chip_id >> 8 == chip_id >> 8:
      return chip
  raise UnsupportedChip(f"Adreno chip id 0x{chip_id:08x} is not supported by qcomdrv; supported: {supported_list()}")


def by_name(name: str) -> ChipInfo:
  """The first ChipInfo called `name` ("a740"), or the simulator default of a generation ("a7xx").

  Raises:
    UnsupportedChip: unknown name; the message lists the supported chips.
  """
  name = SIM_DEFAULTS.get(name.lower(), name.lower())
  for chip in CHIPS:
    if chip.name == name:
      return chip
  raise UnsupportedChip(f"no Adreno called {name!r}; supported: {supported_list()} (or a6xx / a7xx for the "
                        f"simulator defaults {SIM_DEFAULTS['a6xx']} / {SIM_DEFAULTS['a7xx']})")
