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
      CP_HQD_PQ_WPTR_LO/HI = 0, CP_HQD_ACTIVE = 1
  CP_MEC_DOORBELL_RANGE_LOWER/UPPER: the doorbell byte range the MEC answers (gfx_v11_0_kiq_init_register)

The MQD (struct v11_compute_mqd / v12_compute_mqd, am/generated/boot/mqd.py) is written with the same values, as
gfx_v11_0_compute_mqd_init fills it, so that a later restore can load the queue from memory.
The ring test: WRITE_DATA of a value to memory, then RELEASE_MEM of a fence, then the doorbell.
"""
from __future__ import annotations

import struct

from am.errors import AMError
from am.generated.boot import mqd as mqd_facts
from am.ip.base import IpBlock, wait_reg, wait_for
from am.ip.soc import DOORBELL_MEC_RING0, DOORBELL_SDMA_ENGINE0
from am.pm4.pm4 import PM4Stream

GFX11_MEC_HPD_SIZE = 2048   # gfx_v11_0.c (EOP buffer per queue)


class ComputeQueue:
  """One kernel compute queue on me 1 / pipe / queue, VMID 0, ring in the GART."""

  def __init__(self, gfx: Gfx, pipe: int, queue: int, doorbell: int, ring_bytes: int = 64 << 10):
    gmc = gfx.dev.gmc
    self.gfx, self.pipe, self.queue, self.doorbell = gfx, pipe, queue, doorbell
    self.ring_bytes = ring_bytes
    self.ring = gmc.alloc(ring_bytes)
    self.eop = gmc.alloc(GFX11_MEC_HPD_SIZE)
    self.mqd = gmc.alloc(4096)
    self.wb = gmc.alloc(4096)   # rptr report at +0, wptr poll at +8
    self.wptr = 0               # in dwords, never wraps (the 64-bit write pointer of the doorbell)

  def hqd_values(self, caps) -> dict[str, dict[str, int] | int]:
    pq_control = {"QUEUE_SIZE": (self.ring_bytes // 4).bit_length() - 2, "RPTR_BLOCK_SIZE": 5, "PRIV_STATE": 1}
    if caps.gfx_generation == 12:
      pq_control["KMD_QUEUE"] = 1
    rptr, wptr = self.wb.gart, self.wb.gart + 8
    return {
      "regCP_HQD_VMID": 0,
      "regCP_MQD_BASE_ADDR": self.mqd.gart & 0xFFFFFFFC, "regCP_MQD_BASE_ADDR_HI": self.mqd.gart >> 32,
      "regCP_HQD_PQ_BASE": (self.ring.gart >> 8) & 0xFFFFFFFF, "regCP_HQD_PQ_BASE_HI": self.ring.gart >> 40,
      "regCP_HQD_PQ_CONTROL": pq_control,
      "regCP_HQD_PQ_RPTR_REPORT_ADDR": rptr & 0xFFFFFFFC, "regCP_HQD_PQ_RPTR_REPORT_ADDR_HI": rptr >> 32,
      "regCP_HQD_PQ_WPTR_POLL_ADDR": wptr & 0xFFFFFFF8, "regCP_HQD_PQ_WPTR_POLL_ADDR_HI": wptr >> 32,
      "regCP_HQD_PQ_DOORBELL_CONTROL": {"DOORBELL_OFFSET": self.doorbell * 2, "DOORBELL_EN": 1},
      "regCP_HQD_EOP_BASE_ADDR": (self.eop.gart >> 8) & 0xFFFFFFFF, "regCP_HQD_EOP_BASE_ADDR_HI": self.eop.gart >> 40,
      "regCP_HQD_EOP_CONTROL": {"EOP_SIZE": (GFX11_MEC_HPD_SIZE // 4).bit_length() - 2},
      "regCP_HQD_PQ_WPTR_LO": 0, "regCP_HQD_PQ_WPTR_HI": 0,
    }

  def program(self) -> None:
    dev = self.gfx.dev
    gc = dev.gc
    values = self.hqd_values(dev.caps)
    mqd_layout = mqd_facts.MQD[dev.caps.mqd_struct]
    mqd = bytearray(mqd_facts.DWORDS[dev.caps.mqd_struct] * 4)
    gc.regGRBM_GFX_CNTL.write(MEID=1, PIPEID=self.pipe, QUEUEID=self.queue, VMID=0)
    for name, value in values.items():
      reg = gc[name]
      word = reg.encode(**value) if isinstance(value, dict) else value
      reg.write(word)
      member = name[3:].lower()
      if member in mqd_layout:
        struct.pack_into("<I", mqd, mqd_layout[member] * 4, word)
    dev.vram.write(self.mqd.offset, mqd)
    gc.regCP_HQD_ACTIVE.write(ACTIVE=1)
    active = gc.regCP_HQD_ACTIVE.read_fields()["ACTIVE"]
    gc.regGRBM_GFX_CNTL.write(0)
    if not active:
      raise AMError(f"the MEC did not activate HQD me1 pipe{self.pipe} queue{self.queue} (CP_HQD_ACTIVE reads 0): "
                    "check CP_MEC_RS64_CNTL.MEC_HALT, the PQ base mapping and the doorbell range")

  def submit(self, stream: PM4Stream) -> None:
    """Copy `stream` to the ring at the write pointer (wrapping), publish the write pointer, ring the doorbell."""
    dev = self.gfx.dev
    data = stream.tobytes()
    for i in range(0, len(data), 4):
      dev.vram.write(self.ring.offset + ((self.wptr * 4 + i) % self.ring_bytes), data[i:i + 4])
    self.wptr += len(data) // 4
    dev.vram.write64(self.wb.offset + 8, self.wptr)
    dev.doorbells.write64(self.doorbell * 8, self.wptr)

  def rptr(self) -> int:
    return self.gfx.dev.vram.read32(self.wb.offset)

  def unmap(self) -> None:
    gc = self.gfx.dev.gc
    gc.regGRBM_GFX_CNTL.write(MEID=1, PIPEID=self.pipe, QUEUEID=self.queue)
    gc.regCP_HQD_DEQUEUE_REQUEST.write(DEQUEUE_REQ=1)
    wait_reg(gc.regCP_HQD_ACTIVE, 1, 0, "HQD dequeue")
    gc.regGRBM_GFX_CNTL.write(0)


class Gfx(IpBlock):
  name = "gfx"

  def init_sw(self) -> None:
    self.scratch = self.dev.gmc.alloc(4096)
    self.queue = ComputeQueue(self, pipe=0, queue=0, doorbell=DOORBELL_MEC_RING0)
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
    return ["RLC autoload complete (RLC_RLCS_BOOTLOAD_STATUS.BOOTLOAD_COMPLETE=1), MEC RS64 running",
            f"compute queue me1 pipe0 queue0: ring GART 0x{self.queue.ring.gart:x}, doorbell {DOORBELL_MEC_RING0}, "
            "CP_HQD_ACTIVE=1",
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
    try:
      wait_for(lambda: self.dev.vram.read32(self.scratch.offset + 8), 0xFFFFFFFF, value, "compute fence",
               timeout_s)
    except AMError as e:
      faults = self.dev.ih.poll()
      if faults:
        from am.errors import AMFault
        raise AMFault(f"{e}; the IH ring reports: " + "; ".join(f.describe() for f in faults), faults) from e
      raise

  def fini_hw(self) -> None:
    self.queue.unmap()
    self.dev.gc.regCP_MEC_RS64_CNTL.update(MEC_HALT=1)
