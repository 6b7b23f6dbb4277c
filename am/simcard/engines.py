"""The simulated card's GMC, IH and SMU (the PSP is psp.py, the MEC mec.py, SDMA sdma.py). Each models only what the
driver's bring-up and smoke tests touch, and each check names its source:

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
The MEC with its PM4 executor is mec.py (wave launch: shader.py), the SDMA engine sdma.py.
"""
from __future__ import annotations

import time

from am.generated.boot import ih as ih_facts
from am.generated.boot import smu as smu_facts
from am.ip.ih import IV_BYTES, IVEntry

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

  def lookup(self, va: int, write: bool = False) -> tuple[int | None, str]:
    """(VRAM offset, '') of GC-hub VMID0 address `va`, or (None, why it does not translate); posts nothing."""
    gc = self.card.gc
    if not gc.regGCVM_CONTEXT0_CNTL.read_fields()["ENABLE_CONTEXT"]:
      return None, "GCVM context 0 disabled"
    low = gc.regGCMC_VM_SYSTEM_APERTURE_LOW_ADDR.read() << 18
    high = (gc.regGCMC_VM_SYSTEM_APERTURE_HIGH_ADDR.read() << 18) | 0x3FFFF
    if low <= va <= high:
      at = self.card.mc_to_vram(va)
      return (at, "") if at is not None else (None, f"0x{va:x} in the system aperture but past VRAM")
    start = (gc.regGCVM_CONTEXT0_PAGE_TABLE_START_ADDR_LO32.read()
             | gc.regGCVM_CONTEXT0_PAGE_TABLE_START_ADDR_HI32.read() << 32) << 12
    end = (gc.regGCVM_CONTEXT0_PAGE_TABLE_END_ADDR_LO32.read()
           | gc.regGCVM_CONTEXT0_PAGE_TABLE_END_ADDR_HI32.read() << 32) << 12 | 0xFFF
    base = (gc.regGCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32.read()
            | gc.regGCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32.read() << 32)
    if not start <= va <= end:
      return None, f"0x{va:x} outside the GART [0x{start:x}, 0x{end:x}]"
    if not base & 1:
      return None, f"page-table base 0x{base:x} lacks the VALID bit"
    table = self.card.mc_to_vram(base & ~0xFFF, 8)
    pte = self.card.vram.read64(table + ((va - start) >> 12) * 8)
    if not pte & 1 or not (pte >> 5) & 1 or (write and not (pte >> 6) & 1):
      return None, f"PTE 0x{pte:016x} for 0x{va:x} not valid/readable{'/writeable' if write else ''}"
    return (pte & 0x0000FFFFFFFFF000) | (va & 0xFFF), ""

  def translate(self, va: int, write: bool = False, what: str = "access") -> int | None:
    """VRAM offset of GC-hub VMID0 address `va`, or None after posting a fault."""
    at, why = self.lookup(va, write)
    if at is None:
      return self.fault(va, f"{what}: {why}", write)
    return at

  def fault(self, va: int, why: str, write: bool = False) -> None:
    """A UTCL2 fault entry as gmc_v11_0_process_interrupt reads it: src_data[0] = address bits 43:12,
    src_data[1] bits 3:0 = address bits 47:44, bit 5 = write fault (bit 7, retry, stays 0: no-retry faults)."""
    self.card.note(f"gmc: VM fault: {why}")
    self.card.ih.post(CLIENT["SOC21_IH_CLIENTID_VMC"], SRC["VMC_1_0__SRCID__VM_FAULT"], (va >> 12) & 0xFFFFFFFF,
                      ((va >> 44) & 0xF) | (0x20 if write else 0))
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
