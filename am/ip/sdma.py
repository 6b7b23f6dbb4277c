"""SDMA: engine 0 out of halt and its queue 0 ring (sdma_v6_0.c sdma_v6_0_gfx_resume for Navi31, sdma_v7_0.c for
Navi48; the SDMA registers sit in the GC register space, sdma_v6_0_get_reg_offset).

  halt off   SDMA0_F32_CNTL.HALT = 0 (SDMA 6) / SDMA0_MCU_CNTL.HALT = 0 (SDMA 7) (sdma_v6_0_enable / v7_0_enable)
  ring       QUEUE0_RB_CNTL (RB_SIZE = log2(dwords), RPTR_WRITEBACK_ENABLE), RB_BASE (>> 8), RB_BASE_HI (>> 40),
             RB_RPTR/WPTR = 0, RB_RPTR_ADDR_LO/HI, DOORBELL.ENABLE, DOORBELL_OFFSET (dwords), RB_CNTL.RB_ENABLE = 1
"""
from __future__ import annotations

from am.errors import AMError
from am.ip.base import IpBlock
from am.ip.soc import DOORBELL_SDMA_ENGINE0
from am.queues.sdma import SdmaQueue


class Sdma(IpBlock):
  name = "sdma"
  RING_BYTES = 64 << 10

  def init_sw(self) -> None:
    self.ring = self.dev.gmc.alloc(self.RING_BYTES)
    self.wb = self.dev.gmc.alloc(4096)
    self.queue = SdmaQueue(self.dev, self.ring, self.wb, DOORBELL_SDMA_ENGINE0)

  def init_hw(self) -> list[str]:
    gc = self.dev.gc
    halt_reg, halt_field = self.dev.caps.sdma_halt
    gc[halt_reg].update(**{halt_field: 0})
    if gc[halt_reg].read_fields()[halt_field]:
      raise AMError(f"SDMA0 stayed halted after {halt_reg}.{halt_field}=0 (SDMA firmware not loaded?)")
    gc.regSDMA0_QUEUE0_RB_CNTL.write(RB_SIZE=(self.RING_BYTES // 4).bit_length() - 1, RPTR_WRITEBACK_ENABLE=1)
    gc.regSDMA0_QUEUE0_RB_BASE.write((self.ring.gart >> 8) & 0xFFFFFFFF)
    gc.regSDMA0_QUEUE0_RB_BASE_HI.write(self.ring.gart >> 40)
    self.queue.reset_pointers()
    gc.regSDMA0_QUEUE0_RB_RPTR.write(0)
    gc.regSDMA0_QUEUE0_RB_RPTR_HI.write(0)
    gc.regSDMA0_QUEUE0_RB_WPTR.write(0)
    gc.regSDMA0_QUEUE0_RB_RPTR_ADDR_LO.write(self.wb.gart & 0xFFFFFFFC)
    gc.regSDMA0_QUEUE0_RB_RPTR_ADDR_HI.write(self.wb.gart >> 32)
    gc.regSDMA0_QUEUE0_DOORBELL_OFFSET.write(OFFSET=DOORBELL_SDMA_ENGINE0 * 2)
    gc.regSDMA0_QUEUE0_DOORBELL.write(ENABLE=1)
    gc.regSDMA0_QUEUE0_RB_CNTL.update(RB_ENABLE=1)
    if not gc.regSDMA0_QUEUE0_RB_CNTL.read_fields()["RB_ENABLE"]:
      raise AMError("SDMA0 queue 0 did not enable (RB_CNTL.RB_ENABLE reads 0)")
    stamp = self.queue.timestamp()
    return [f"SDMA{self.dev.caps.sdma_generation} engine 0 running ({halt_reg}.{halt_field}=0)",
            f"queue 0 ring GART 0x{self.ring.gart:x} ({self.RING_BYTES >> 10} KiB), doorbell {DOORBELL_SDMA_ENGINE0}",
            f"ring test: TIMESTAMP_GET_GLOBAL wrote GPU clock {stamp}, FENCE {self.queue.last} signalled"]

  def fini_hw(self) -> None:
    gc = self.dev.gc
    gc.regSDMA0_QUEUE0_RB_CNTL.update(RB_ENABLE=0)
    halt_reg, halt_field = self.dev.caps.sdma_halt
    gc[halt_reg].update(**{halt_field: 1})
