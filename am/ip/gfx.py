"""GFX: RLC autoload, MEC (RS64) start and one compute queue programmed directly through MQD + HQD registers, with no
MES and no KIQ (gfx_v11_0.c / gfx_v12_0.c).

  wait_for_rlc_autoload_complete  CP_STAT == 0 and RLC_RLCS_BOOTLOAD_STATUS.BOOTLOAD_COMPLETE (the PSP's
                                  GFX_CMD_ID_AUTOLOAD_RLC started it)
  cp_compute_enable               CP_MEC_RS64_CNTL: pipe 0 out of reset and active, MEC_HALT = 0
  kiq_init_register (the same HQD programming amdgpu does for its KIQ, here for our compute queue):
      GRBM_GFX_CNTL selects me 1 / pipe / queue (soc21_grbm_select), then CP_MQD_BASE_ADDR, CP_HQD_PQ_BASE (>> 8),
      CP_HQD_PQ_CONTROL (QUEUE_SIZE = log2(dwords) - 1, RPTR_BLOCK_SIZE 5, PRIV_STATE, [KMD_QUEUE on GFX12]),
      CP_HQD_PQ_RPTR_REPORT_ADDR, CP_HQD_PQ_WPTR_POLL_ADDR, CP_HQD_PQ_DOORBELL_CONTROL (DOORBELL_OFFSET in dwords,
      DOORBELL_EN), CP_HQD_EOP_BASE_ADDR (>> 8) / CP_HQD_EOP_CONTROL (EOP_SIZE = log2(dwords) - 1),
      CP_HQD_PQ_WPTR_LO/HI = 0, CP_HQD_ACTIVE = 1 (a queue still active there is dequeued first)
  CP_MEC_DOORBELL_RANGE_LOWER/UPPER: the doorbell byte range the MEC answers (gfx_v11_0_kiq_init_register)

The MQD (struct v11_compute_mqd / v12_compute_mqd, am/generated/boot/mqd.py) is written with the same values, as
gfx_v11_0_compute_mqd_init fills it, so that a later restore can load the queue from memory (am/queues/compute.py).
The ring test: WRITE_DATA of a value to memory, then RELEASE_MEM of a fence, then the doorbell.
"""
from __future__ import annotations

from am.errors import AMError
from am.ip.base import IpBlock, wait_for, wait_reg
from am.ip.soc import DOORBELL_MEC_RING0, DOORBELL_SDMA_ENGINE0
from am.pm4.pm4 import PM4Stream
from am.queues.compute import ComputeQueue, wait_value


class Gfx(IpBlock):
  name = "gfx"

  def init_sw(self) -> None:
    self.scratch = self.dev.gmc.alloc(4096)
    self.queue = ComputeQueue(self.dev, pipe=0, queue=0, doorbell=DOORBELL_MEC_RING0)
    self.fence = 0

  def init_hw(self) -> list[str]:
    gc = self.dev.gc
    wait_for(gc.regCP_STAT.read, 0xFFFFFFFF, 0, "CP_STAT == 0 (CP idle after RLC autoload)")
    wait_reg(gc.regRLC_RLCS_BOOTLOAD_STATUS, gc.regRLC_RLCS_BOOTLOAD_STATUS.spec.field("BOOTLOAD_COMPLETE").mask,
             gc.regRLC_RLCS_BOOTLOAD_STATUS.spec.field("BOOTLOAD_COMPLETE").mask, "RLC autoload complete")
    gc.regCP_MEC_RS64_CNTL.update(MEC_INVALIDATE_ICACHE=0, MEC_PIPE0_RESET=0, MEC_PIPE0_ACTIVE=1, MEC_HALT=0)
    if gc.regCP_MEC_RS64_CNTL.read_fields()["MEC_HALT"]:
      raise AMError("the MEC stayed halted after CP_MEC_RS64_CNTL.MEC_HALT=0 (MEC firmware not loaded?)")
    gc.regCP_MEC_DOORBELL_RANGE_LOWER.write(DOORBELL_MEC_RING0 * 8)
    gc.regCP_MEC_DOORBELL_RANGE_UPPER.write(DOORBELL_SDMA_ENGINE0 * 8 - 8)
    self.queue.program()
    value = self.ring_test()
    taken = ", after dequeuing the queue left active there" if self.queue.took_over else ""
    return ["RLC autoload complete (RLC_RLCS_BOOTLOAD_STATUS.BOOTLOAD_COMPLETE=1), MEC RS64 running",
            f"compute queue me1 pipe0 queue0: ring GART 0x{self.queue.ring.gart:x}, doorbell {DOORBELL_MEC_RING0}, "
            f"CP_HQD_ACTIVE=1{taken}",
            f"ring test: WRITE_DATA wrote 0x{value:08x}, RELEASE_MEM fence {self.fence} signalled, rptr "
            f"{self.queue.rptr()}"]

  def ring_test(self, value: int = 0xCAFEF00D) -> int:
    self.fence += 1
    s = PM4Stream(self.dev.caps.gfx_generation)
    s.write_data(self.scratch.gart, value)
    s.release_mem(self.scratch.gart + 8, self.fence)
    self.queue.submit(s)
    self.wait_fence(self.fence)
    got = self.dev.vram.read32(self.scratch.offset)
    if got != value:
      raise AMError(f"ring test: WRITE_DATA left 0x{got:08x} at GART 0x{self.scratch.gart:x}, expected 0x{value:08x}")
    return got

  def wait_fence(self, value: int, timeout_s: float = 2.0) -> None:
    """Wait for the ring test's fence word; a fault on the IH ring raises AMFault at once."""
    wait_value(self.dev, lambda: self.dev.vram.read32(self.scratch.offset + 8), value, "compute fence", timeout_s,
               self.queue.describe)

  def fini_hw(self) -> None:
    self.queue.unmap()
    self.dev.gc.regCP_MEC_RS64_CNTL.update(MEC_HALT=1)
