"""SOC / NBIO: doorbell routing and apertures (soc21.c / soc24.c common hw_init with nbio_v4_3.c for Navi31 and
nbif_v6_3_1.c for Navi48).

  gc_doorbell_init          S2A_DOORBELL_ENTRY_0_CTRL = 0x30000007, ENTRY_3_CTRL = 0x3000000d (constants of
                            nbio_v4_3.c / nbif_v6_3_1.c)
  sdma_doorbell_range       ENTRY_2: PORT2_ENABLE, AWID 0xe, RANGE_OFFSET = doorbell index, RANGE_SIZE, AWADDR 0x3
  ih_doorbell_range         ENTRY_1: PORT1_ENABLE, AWID 0, RANGE_OFFSET = IH doorbell, RANGE_SIZE 2
  enable_doorbell_aperture  RCC_DEV0_EPF0_RCC_DOORBELL_APER_EN.BIF_DOORBELL_APER_EN = 1
  selfring aperture         BIF_BX_PF0_DOORBELL_SELFRING_GPA_APER_BASE_LOW/HIGH, CNTL (EN=1, MODE=1, SIZE=0)

  remap_hdp_registers       BIF_BX0_REMAP_HDP_MEM_FLUSH_CNTL = MMIO_REG_HOLE_OFFSET (0x80000 - PAGE_SIZE) +
                            KFD_MMIO_REMAP_HDP_MEM_FLUSH_CNTL (0): HDP flushes are register-BAR writes there
                            (hdp_v6_0_flush_hdp / hdp_v7_0: write 0, then read back the memsize register to post it)

Doorbell indices are AM's layout in 64-bit doorbell slots of BAR 2 (amdgpu_doorbell.h AMDGPU_NAVI10_DOORBELL_*
numbers the same slots: MEC rings from 0x003, IH 0x188, SDMA engine 0 0x100).
"""
from __future__ import annotations

from am.ip.base import IpBlock

DOORBELL_MEC_RING0 = 0x003      # AMDGPU_NAVI10_DOORBELL_MEC_RING0
DOORBELL_SDMA_ENGINE0 = 0x100   # AMDGPU_NAVI10_DOORBELL_sDMA_ENGINE0
DOORBELL_IH = 0x188             # AMDGPU_NAVI10_DOORBELL_IH
MMIO_REG_HOLE_OFFSET = 0x80000 - 4096   # nbio_v4_3.c / nbif_v6_3_1.c rmmio_remap.reg_offset (byte offset in BAR 5)
DOORBELL_SDMA_RANGE = 20        # slots routed to SDMA (amdgpu passes adev->doorbell_index.sdma_doorbell_range)


class Soc(IpBlock):
  name = "soc"

  def init_hw(self) -> list[str]:
    nbio, entry = self.dev.nbio, self.dev.caps.s2a_doorbell_entry
    nbio[f"{entry}0_CTRL"].write(0x30000007)
    nbio[f"{entry}3_CTRL"].write(0x3000000D)
    # the 64-bit doorbell index of SDMA in the S2A entry is in dwords (index * 2, amdgpu_doorbell_index_on_bar)
    nbio[f"{entry}2_CTRL"].update(S2A_DOORBELL_PORT2_ENABLE=1, S2A_DOORBELL_PORT2_AWID=0xE,
                                  S2A_DOORBELL_PORT2_RANGE_OFFSET=DOORBELL_SDMA_ENGINE0 * 2,
                                  S2A_DOORBELL_PORT2_RANGE_SIZE=DOORBELL_SDMA_RANGE,
                                  S2A_DOORBELL_PORT2_AWADDR_31_28_VALUE=3)
    nbio[f"{entry}1_CTRL"].update(S2A_DOORBELL_PORT1_ENABLE=1, S2A_DOORBELL_PORT1_AWID=0,
                                  S2A_DOORBELL_PORT1_RANGE_OFFSET=DOORBELL_IH * 2, S2A_DOORBELL_PORT1_RANGE_SIZE=2,
                                  S2A_DOORBELL_PORT1_AWADDR_31_28_VALUE=0)
    nbio.regRCC_DEV0_EPF0_RCC_DOORBELL_APER_EN.update(BIF_DOORBELL_APER_EN=1)
    nbio.regBIF_BX0_REMAP_HDP_MEM_FLUSH_CNTL.write(MMIO_REG_HOLE_OFFSET)
    nbio.regBIF_BX_PF0_DOORBELL_SELFRING_GPA_APER_CNTL.write(DOORBELL_SELFRING_GPA_APER_EN=1,
                                                             DOORBELL_SELFRING_GPA_APER_MODE=1)
    aper = nbio.regRCC_DEV0_EPF0_RCC_DOORBELL_APER_EN.read_fields()["BIF_DOORBELL_APER_EN"]
    sdma = nbio[f"{entry}2_CTRL"].read_fields()
    where = nbio[f"{entry}2_CTRL"].byte_offset
    via = "past the register BAR: RSMU index/data" if where >= self.dev.mmio.size else "in the register BAR"
    return [f"doorbell aperture BIF_DOORBELL_APER_EN={aper} (BAR 2, {self.dev.doorbells.size >> 10} KiB)",
            f"S2A entry 2 routes SDMA doorbells from dword 0x{sdma['S2A_DOORBELL_PORT2_RANGE_OFFSET']:x} "
            f"(+{sdma['S2A_DOORBELL_PORT2_RANGE_SIZE']}); the S2A entries at byte 0x{where:x} are {via}"]

  def hdp_flush(self) -> None:
    """Make host writes through BAR 0 visible to the GPU (hdp_v6_0_flush_hdp)."""
    self.dev.mmio.write32(MMIO_REG_HOLE_OFFSET, 0)
    self.dev.nbio.regRCC_DEV0_EPF0_RCC_CONFIG_MEMSIZE.read()

  def fini_hw(self) -> None:
    self.dev.nbio.regRCC_DEV0_EPF0_RCC_DOORBELL_APER_EN.update(BIF_DOORBELL_APER_EN=0)
