"""The simulated card's engines besides the PSP (psp.py). Each models only what the driver's bring-up and smoke
tests touch, and each check names its source:

SimGmc  VMID0 translation as gfxhub_v3_0 / gfxhub_v12_0 program it: CONTEXT0_CNTL.ENABLE_CONTEXT, system aperture
        [LOW << 18, HIGH << 18] = physical VRAM, GART [START << 12, END << 12] through one level of 8-byte PTEs at
        PAGE_TABLE_BASE (VALID bit required, amdgpu_gmc_pd_addr), PTE VALID/READABLE/WRITEABLE (amdgpu_vm.h);
        anything else is a fault, posted to the IH as a VMC UTCL2 fault (irqsrcs_vmc_1_0.h). Invalidation engine
        17: a REQ write sets the ACK bits of the VMIDs asked (gmc_v11_0_flush_vm_hub polls them).
SimIh   writes 8-dword IV entries (am/ip/ih.py layout) at the ring's write pointer once IH_RB_CNTL.RB_ENABLE is set,
        and the write pointer to IH_RB_WPTR and the write-back slot.
SimSmu  PMFW mailbox (smu_cmn.c): answers only once the PSP loaded the SMU image (then MP1_FIRMWARE_FLAGS
        INTERRUPTS_ENABLED = 1); unknown ids -> PPSMC_Result_UnknownCmd; EnableAllSmuFeatures before both
        SetAllowedFeaturesMask halves -> PPSMC_Result_CmdRejectedPrereq.
SimCp   RLC autoload status (set by the PSP's AUTOLOAD_RLC), MEC halt (stays halted without autoload), HQD
        registers banked per GRBM_GFX_CNTL me/pipe/queue, CP_HQD_ACTIVE accepted only for a queue whose PQ base
        translates, whose doorbell is enabled inside CP_MEC_DOORBELL_RANGE and whose EOP base is set; a doorbell runs
        the queue's PM4 from its rptr: NOP, WRITE_DATA (DST_SEL 5, memory), RELEASE_MEM (DATA_SEL 1/2), anything
        else -> a CP_BAD_OPCODE_ERROR IV entry and the queue stops.
SimSdma SDMA halt bit stays set until the PSP loaded the SDMA image; RB_ENABLE needs the engine running and a
        translatable ring base.
"""
from __future__ import annotations

import time

from am.generated.boot import ih as ih_facts
from am.generated.boot import smu as smu_facts
from am.ip.ih import IV_BYTES, IVEntry
from am.pm4.decode import parse_pm4

CLIENT = ih_facts.CLIENTS["soc21_ih_clientid"]
SRC = ih_facts.SOURCES


class SimGmc:
  def __init__(self, card):
    self.card = card
    for block, p in ((card.gc, "GC"), (card.blocks["MMHUB"], "MM")):
      ack = block[f"reg{p}VM_INVALIDATE_ENG17_ACK"]
      req = block[f"reg{p}VM_INVALIDATE_ENG17_REQ"]
      card.regs.hook(block, req.name, write=lambda v, req=req, ack=ack: ack.write(
        req.decode(v)["PER_VMID_INVALIDATE_REQ"]))

  def translate(self, va: int, write: bool = False, what: str = "access") -> int | None:
    """VRAM offset of GC-hub VMID0 address `va`, or None after posting a fault."""
    gc = self.card.gc
    low = gc.regGCMC_VM_SYSTEM_APERTURE_LOW_ADDR.read() << 18
    high = (gc.regGCMC_VM_SYSTEM_APERTURE_HIGH_ADDR.read() << 18) | 0x3FFFF
    if low <= va <= high and gc.regGCVM_CONTEXT0_CNTL.read_fields()["ENABLE_CONTEXT"]:
      return self.card.mc_to_vram(va)
    return self._walk(va, write, what)

  def _walk(self, va: int, write: bool, what: str) -> int | None:
    gc = self.card.gc
    if not gc.regGCVM_CONTEXT0_CNTL.read_fields()["ENABLE_CONTEXT"]:
      return self.fault(va, f"{what}: GCVM context 0 disabled")
    start = (gc.regGCVM_CONTEXT0_PAGE_TABLE_START_ADDR_LO32.read()
             | gc.regGCVM_CONTEXT0_PAGE_TABLE_START_ADDR_HI32.read() << 32) << 12
    end = (gc.regGCVM_CONTEXT0_PAGE_TABLE_END_ADDR_LO32.read()
           | gc.regGCVM_CONTEXT0_PAGE_TABLE_END_ADDR_HI32.read() << 32) << 12 | 0xFFF
    base = (gc.regGCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32.read()
            | gc.regGCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32.read() << 32)
    if not start <= va <= end:
      return self.fault(va, f"{what}: 0x{va:x} outside the GART [0x{start:x}, 0x{end:x}]")
    if not base & 1:
      return self.fault(va, f"{what}: page-table base 0x{base:x} lacks the VALID bit")
    table = self.card.mc_to_vram(base & ~0xFFF, 8)
    pte = self.card.vram.read64(table + ((va - start) >> 12) * 8)
    if not pte & 1 or not (pte >> 5) & 1 or (write and not (pte >> 6) & 1):
      return self.fault(va, f"{what}: PTE 0x{pte:016x} for 0x{va:x} not valid/readable/writeable")
    return (pte & 0x0000FFFFFFFFF000) | (va & 0xFFF)

  def fault(self, va: int, why: str) -> None:
    self.card.note(f"gmc: VM fault: {why}")
    self.card.ih.post(CLIENT["SOC21_IH_CLIENTID_VMC"], SRC["VMC_1_0__SRCID__VM_FAULT"], (va >> 12) & 0xFFFFFFFF,
                      va >> 44)
    return None

  def read32(self, va: int) -> int | None:
    at = self.translate(va)
    return None if at is None else self.card.vram.read32(at)

  def write(self, va: int, data: bytes) -> bool:
    at = self.translate(va, write=True)
    if at is None:
      return False
    self.card.vram.write(at, data)
    return True


class SimIh:
  def __init__(self, card):
    self.card = card
    self.wptr = 0

  def post(self, client: int, src: int, data0: int = 0, data1: int = 0, ring: int = 0) -> None:
    oss = self.card.blocks["OSSSYS"]
    cntl = oss.regIH_RB_CNTL.read_fields()
    if not cntl["RB_ENABLE"]:
      self.card.note(f"ih: interrupt client {client} src {src} dropped: IH ring disabled")
      return
    ring_mc = oss.regIH_RB_BASE.read() << 8 | oss.regIH_RB_BASE_HI.read() << 40
    size = 4 << cntl["RB_SIZE"]
    entry = IVEntry(client, src, ring, 0, 0, time.monotonic_ns() & 0xFFFFFFFFFFFF, 0, 0, (data0, data1, 0, 0))
    at = self.card.mc_to_vram(ring_mc + self.wptr, IV_BYTES)
    self.card.vram.write(at, entry.encode())
    self.wptr = (self.wptr + IV_BYTES) % size
    oss.regIH_RB_WPTR.write(self.wptr)
    wb = self.card.mc_to_vram(oss.regIH_RB_WPTR_ADDR_LO.read() | oss.regIH_RB_WPTR_ADDR_HI.read() << 32)
    if cntl["WPTR_WRITEBACK_ENABLE"] and wb is not None:
      self.card.vram.write32(wb, self.wptr)


class SimSmu:
  def __init__(self, card):
    self.card = card
    key = card.caps.smu_messages
    self.names = {v: k for k, v in smu_facts.MESSAGES[key].items()}
    self.ok, res = smu_facts.RESULTS[key]["PPSMC_Result_OK"], smu_facts.RESULTS[key]
    self.unknown, self.prereq = res["PPSMC_Result_UnknownCmd"], res["PPSMC_Result_CmdRejectedPrereq"]
    smn = smu_facts.SMN[key]
    self.flags_addr = smn["MP1_Public"] | smn["smnMP1_FIRMWARE_FLAGS"]
    self.running = False
    self.allowed = [False, False]
    self.enabled = 0
    self.mp1 = card.blocks["MP1"]
    card.regs.hook(self.mp1, "regMP1_SMN_C2PMSG_66", write=self.message)

  def start(self) -> None:
    """The PSP loaded the PMFW: it sets INTERRUPTS_ENABLED and answers the (empty) mailbox."""
    self.running = True
    self.card.regs.raw.write32(self.flags_addr, 1)
    self.mp1.regMP1_SMN_C2PMSG_90.write(self.ok)
    self.card.note("smu: PMFW running")

  def message(self, msg: int) -> None:
    if not self.running:
      self.card.note(f"smu: message {msg} ignored: PMFW not loaded")
      return
    name = self.names.get(msg)
    param = self.mp1.regMP1_SMN_C2PMSG_82.read()
    result, answer = self.ok, param
    if name is None:
      result = self.unknown
    elif name == "PPSMC_MSG_GetSmuVersion":
      answer = 0x004E3F00
    elif name == "PPSMC_MSG_GetDriverIfVersion":
      answer = 0x3D if self.card.caps.smu_messages == "13_0_0" else 0x2E
    elif name == "PPSMC_MSG_SetAllowedFeaturesMaskLow":
      self.allowed[0] = True
    elif name == "PPSMC_MSG_SetAllowedFeaturesMaskHigh":
      self.allowed[1] = True
    elif name == "PPSMC_MSG_EnableAllSmuFeatures":
      if not all(self.allowed):
        result = self.prereq
      else:
        self.enabled = 0x00000FFF_FFFFFFFF
    elif name == "PPSMC_MSG_DisableAllSmuFeatures":
      self.enabled = 0
    elif name == "PPSMC_MSG_GetRunningSmuFeaturesLow":
      answer = self.enabled & 0xFFFFFFFF
    elif name == "PPSMC_MSG_GetRunningSmuFeaturesHigh":
      answer = self.enabled >> 32
    self.card.note(f"smu: {name or msg} -> {result}")
    self.mp1.regMP1_SMN_C2PMSG_82.write(answer)
    self.mp1.regMP1_SMN_C2PMSG_90.write(result)


class SimCp:
  def __init__(self, card):
    self.card = card
    gc = card.gc
    self.mec_firmware = False
    self.active: dict[tuple, int] = {}     # (me, pipe, queue) -> rptr in dwords
    raw = card.regs.raw
    raw.banked = {gc[n].byte_offset for n in gc.table.names() if n.startswith(("regCP_HQD_", "regCP_MQD_"))
                  and gc.table.spec(n).base_idx is not None}
    cntl = gc.regGRBM_GFX_CNTL
    raw.bank = lambda: self._select(cntl.read())
    gc.regCP_MEC_RS64_CNTL.write(MEC_HALT=1)
    gc.regCP_STAT.write(0x80000000)   # busy until the RLC autoload finishes (any non-zero value)
    card.regs.hook(gc, "regCP_MEC_RS64_CNTL", write=self.mec_cntl)
    card.regs.hook(gc, "regCP_HQD_ACTIVE", write=self.activate)
    card.regs.hook(gc, "regCP_HQD_DEQUEUE_REQUEST", write=self.dequeue)

  def _select(self, value: int) -> tuple:
    f = self.card.gc.regGRBM_GFX_CNTL.decode(value)
    return f["MEID"], f["PIPEID"], f["QUEUEID"]

  def autoload_done(self) -> None:
    gc = self.card.gc
    gc.regRLC_RLCS_BOOTLOAD_STATUS.update(BOOTLOAD_COMPLETE=1)
    gc.regCP_STAT.write(0)
    self.mec_firmware = True

  def mec_cntl(self, value: int) -> None:
    if not self.card.gc.regCP_MEC_RS64_CNTL.decode(value)["MEC_HALT"] and not self.mec_firmware:
      self.card.note("cp: MEC_HALT=0 refused: no MEC firmware (RLC autoload not done)")
      self.card.gc.regCP_MEC_RS64_CNTL.update(MEC_HALT=1)

  def _queue_error(self) -> str | None:
    gc = self.card.gc
    if gc.regCP_MEC_RS64_CNTL.read_fields()["MEC_HALT"]:
      return "MEC halted"
    pq = (gc.regCP_HQD_PQ_BASE.read() | gc.regCP_HQD_PQ_BASE_HI.read() << 32) << 8
    if self.card.gmc.translate(pq, what="HQD PQ base") is None:
      return f"PQ base 0x{pq:x} does not translate"
    db = gc.regCP_HQD_PQ_DOORBELL_CONTROL.read_fields()
    lower, upper = gc.regCP_MEC_DOORBELL_RANGE_LOWER.read(), gc.regCP_MEC_DOORBELL_RANGE_UPPER.read()
    if not db["DOORBELL_EN"] or not lower <= db["DOORBELL_OFFSET"] * 4 <= upper:
      return (f"doorbell EN={db['DOORBELL_EN']} offset {db['DOORBELL_OFFSET']} outside MEC range "
              f"[0x{lower:x}, 0x{upper:x}]")
    if not gc.regCP_HQD_EOP_BASE_ADDR.read() and not gc.regCP_HQD_EOP_BASE_ADDR_HI.read():
      return "EOP base not set"
    return None

  def activate(self, value: int) -> None:
    gc = self.card.gc
    sel = self._select(gc.regGRBM_GFX_CNTL.read())
    if not gc.regCP_HQD_ACTIVE.decode(value)["ACTIVE"]:
      self.active.pop(sel, None)
      return
    error = self._queue_error()
    if error:
      self.card.note(f"cp: HQD {sel} not activated: {error}")
      gc.regCP_HQD_ACTIVE.write(0)
      return
    self.active[sel] = 0
    self.card.note(f"cp: HQD me{sel[0]} pipe{sel[1]} queue{sel[2]} active")

  def dequeue(self, value: int) -> None:
    gc = self.card.gc
    sel = self._select(gc.regGRBM_GFX_CNTL.read())
    self.active.pop(sel, None)
    gc.regCP_HQD_ACTIVE.write(0)
    gc.regCP_HQD_DEQUEUE_REQUEST.write(0)

  def doorbell(self, offset: int, wptr: int) -> bool:
    gc, raw = self.card.gc, self.card.regs.raw
    for sel in list(self.active):
      saved = raw.bank
      raw.bank = lambda sel=sel: sel
      try:
        if gc.regCP_HQD_PQ_DOORBELL_CONTROL.read_fields()["DOORBELL_OFFSET"] * 4 == offset:
          self.run(sel, wptr)
          return True
      finally:
        raw.bank = saved
    return False

  def run(self, sel: tuple, wptr: int) -> None:
    gc, gmc = self.card.gc, self.card.gmc
    pq = (gc.regCP_HQD_PQ_BASE.read() | gc.regCP_HQD_PQ_BASE_HI.read() << 32) << 8
    dwords = 4 << gc.regCP_HQD_PQ_CONTROL.read_fields()["QUEUE_SIZE"]
    rptr = self.active[sel]
    words = []
    for i in range(rptr, wptr):
      word = gmc.read32(pq + (i % dwords) * 4)
      if word is None:
        return
      words.append(word)
    for packet in parse_pm4(words, self.card.caps.gfx_generation):
      if not self.execute(packet):
        self.card.ih.post(CLIENT["SOC21_IH_CLIENTID_GRBM_CP"], SRC["GFX_11_0_0__SRCID__CP_BAD_OPCODE_ERROR"],
                          packet.header.get("IT_OPCODE", 0), rptr + packet.offset, ring=sel[1])
        self.card.note(f"cp: bad packet {packet.name} at dword {rptr + packet.offset}; queue stopped")
        return
    self.active[sel] = wptr
    report = gc.regCP_HQD_PQ_RPTR_REPORT_ADDR.read() | gc.regCP_HQD_PQ_RPTR_REPORT_ADDR_HI.read() << 32
    gmc.write(report, (wptr % dwords).to_bytes(4, "little"))

  def execute(self, packet) -> bool:
    body = {name: (value, fields) for name, value, fields in packet.dwords}
    gmc = self.card.gmc
    if packet.name == "PACKET3_NOP":
      return True
    if packet.name == "PACKET3_WRITE_DATA" and body["CONTROL"][1]["DST_SEL"] == 5:
      dst = body["DST_ADDR_LO"][0] | body["DST_ADDR_HI"][0] << 32
      data = b"".join(v.to_bytes(4, "little") for name, v, _ in packet.dwords if name.startswith("DATA["))
      return gmc.write(dst, data)
    if packet.name == "PACKET3_RELEASE_MEM" and body["DATA_CNTL"][1]["DATA_SEL"] in (1, 2):
      dst = body["ADDRESS_LO"][0] | body["ADDRESS_HI"][0] << 32
      value = body["DATA_LO"][0] | body["DATA_HI"][0] << 32
      size = 4 if body["DATA_CNTL"][1]["DATA_SEL"] == 1 else 8
      return gmc.write(dst, value.to_bytes(8, "little")[:size])
    return False


class SimSdma:
  def __init__(self, card):
    self.card = card
    self.firmware = False
    gc = card.gc
    self.halt_reg, self.halt_field = card.caps.sdma_halt
    gc[self.halt_reg].update(**{self.halt_field: 1})
    card.regs.hook(gc, self.halt_reg, write=self.halt)
    card.regs.hook(gc, "regSDMA0_QUEUE0_RB_CNTL", write=self.rb_cntl)

  def halt(self, value: int) -> None:
    reg = self.card.gc[self.halt_reg]
    if not reg.decode(value)[self.halt_field] and not self.firmware:
      self.card.note("sdma: unhalt refused: SDMA firmware not loaded")
      reg.update(**{self.halt_field: 1})

  def rb_cntl(self, value: int) -> None:
    gc = self.card.gc
    if not gc.regSDMA0_QUEUE0_RB_CNTL.decode(value)["RB_ENABLE"]:
      return
    base = (gc.regSDMA0_QUEUE0_RB_BASE.read() | gc.regSDMA0_QUEUE0_RB_BASE_HI.read() << 32) << 8
    halted = gc[self.halt_reg].read_fields()[self.halt_field]
    if halted or self.card.gmc.translate(base, what="SDMA ring base") is None:
      self.card.note(f"sdma: RB_ENABLE refused (halted={halted}, ring 0x{base:x})")
      gc.regSDMA0_QUEUE0_RB_CNTL.update(RB_ENABLE=0)

  def doorbell(self, offset: int, value: int) -> bool:
    gc = self.card.gc
    if gc.regSDMA0_QUEUE0_DOORBELL.read_fields()["ENABLE"] and \
        gc.regSDMA0_QUEUE0_DOORBELL_OFFSET.read_fields()["OFFSET"] * 4 == offset:
      self.card.note(f"sdma: doorbell wptr 0x{value:x} (packet execution not modelled yet)")
      return True
    return False
