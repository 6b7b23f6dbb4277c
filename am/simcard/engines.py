"""The simulated card's IH and SMU (the GC hub is gpuvm.py, the PSP psp.py, the MEC mec.py, SDMA sdma.py). Each
models only what the driver's bring-up and smoke tests touch, and each check names its source:

SimIh   writes 8-dword IV entries (am/ip/ih.py layout: client, source, ring_id, VMID, src_data) at the ring's write
        pointer once IH_RB_CNTL.RB_ENABLE is set, and the write pointer to IH_RB_WPTR and the write-back slot; a
        driver write to IH_RB_WPTR moves the write pointer (a re-initialised ring starts empty). An entry posted while
        RB_ENABLE is 0 is dropped (noted in the card log); ring overflow is not modelled.
SimSmu  PMFW mailbox (smu_cmn.c): answers only once the PSP loaded the SMU image (then MP1_FIRMWARE_FLAGS
        INTERRUPTS_ENABLED = 1); unknown ids -> PPSMC_Result_UnknownCmd; EnableAllSmuFeatures before both
        SetAllowedFeaturesMask halves -> PPSMC_Result_CmdRejectedPrereq; GetMinDpmFreq / GetMaxDpmFreq answer the
        card's DPM range (cards.py) in MHz for the PPCLK_e id in param bits 31:16, PPSMC_Result_Failed for a clock
        without one (that code for it is the simulator's choice).
"""
from __future__ import annotations

import time

from am.generated.boot import smu as smu_facts
from am.ip.ih import IV_BYTES, IVEntry


class SimIh:
  def __init__(self, card):
    self.card = card
    self.wptr = 0
    card.regs.hook(card.blocks["OSSSYS"], "regIH_RB_WPTR", write=self.set_wptr)

  def set_wptr(self, value: int) -> None:
    """The driver (re)initialising the ring sets the write pointer (ih_v6_0_irq_init writes IH_RB_WPTR = 0)."""
    self.wptr = value

  def post(self, client: int, src: int, data0: int = 0, data1: int = 0, ring: int = 0, vmid: int = 0) -> None:
    oss = self.card.blocks["OSSSYS"]
    cntl = oss.regIH_RB_CNTL.read_fields()
    if not cntl["RB_ENABLE"]:
      self.card.note(f"ih: interrupt client {client} src {src} dropped: IH ring disabled")
      return
    ring_mc = oss.regIH_RB_BASE.read() << 8 | oss.regIH_RB_BASE_HI.read() << 40
    size = 4 << cntl["RB_SIZE"]
    entry = IVEntry(client, src, ring, vmid, 0, time.monotonic_ns() & 0xFFFFFFFFFFFF, 0, 0, (data0, data1, 0, 0))
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
    self.failed = res["PPSMC_Result_Failed"]
    clock_ids = smu_facts.CLOCKS[key]
    self.dpm = {clock_ids[name]: (lo, hi) for name, lo, hi in card.spec.dpm_mhz}
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
    elif name in ("PPSMC_MSG_GetMinDpmFreq", "PPSMC_MSG_GetMaxDpmFreq"):
      limits = self.dpm.get(param >> 16)
      if limits is None:
        result = self.failed
      else:
        answer = limits[0] if name == "PPSMC_MSG_GetMinDpmFreq" else limits[1]
    self.card.note(f"smu: {name or msg} -> {result}")
    self.mp1.regMP1_SMN_C2PMSG_82.write(answer)
    self.mp1.regMP1_SMN_C2PMSG_90.write(result)
