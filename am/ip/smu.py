"""SMU: talk to the power-management firmware (PMFW) on MP1 (smu_cmn.c smu_cmn_send_smc_msg_with_param with the
mailbox of smu_v13_0_0_ppt.c / smu_v14_0_2_ppt.c: param C2PMSG_82, message C2PMSG_66, response C2PMSG_90).

Message protocol (__smu_cmn_send_msg / __smu_cmn_poll_stat): wait for C2PMSG_90 != 0 (the previous message was
answered), C2PMSG_90 = 0, C2PMSG_82 = parameter, C2PMSG_66 = message id, poll C2PMSG_90 != 0; 1 is
PPSMC_Result_OK, 0xFF Failed, 0xFE UnknownCmd, 0xFD CmdRejectedPrereq, 0xFC CmdRejectedBusy; the answer's
parameter is read back from C2PMSG_82. Before the first message, smu_v13_0_check_fw_status reads
MP1_FIRMWARE_FLAGS (SMN MP1_Public | smnMP1_FIRMWARE_FLAGS) until INTERRUPTS_ENABLED is 1.
Message ids and PPCLK_e clock ids: am/generated/boot/smu.py.

Clocks: the DPM range of GFXCLK and UCLK, read as smu_v13_0_get_dpm_ultimate_freq does (GetMinDpmFreq /
GetMaxDpmFreq with the clock id in param bits 31:16, the answer in MHz); AM leaves the PMFW's DPM in charge and sets
no clock.
"""
from __future__ import annotations

from am.errors import AMTimeout, FirmwareLoadError
from am.generated.boot import smu as facts
from am.ip.base import IpBlock, wait_for

MP1_FIRMWARE_FLAGS_INTERRUPTS_ENABLED = 1   # MP1_FIRMWARE_FLAGS__INTERRUPTS_ENABLED_MASK (mp_13_0_0_sh_mask.h)


class Smu(IpBlock):
  name = "smu"

  def init_sw(self) -> None:
    self.messages = facts.MESSAGES[self.dev.caps.smu_messages]
    self.clocks = facts.CLOCKS[self.dev.caps.smu_messages]
    self.dpm_mhz: dict[str, tuple[int, int]] = {}   # clock -> (min, max) MHz, once init_hw asked
    self.results = {v: k for k, v in facts.RESULTS[self.dev.caps.smu_messages].items()}
    smn = facts.SMN[self.dev.caps.smu_messages]
    self.fw_flags_addr = smn["MP1_Public"] | smn["smnMP1_FIRMWARE_FLAGS"]
    self.driver_table = self.dev.gmc.alloc(0x4000, map_gart=False)
    self.alive = False   # the PMFW answered: fini_hw has someone to tell

  def send(self, name: str, param: int = 0) -> int:
    """Send PPSMC_MSG_<name>; returns the parameter the PMFW answers with.

    Raises:
      FirmwareLoadError: the PMFW answered anything but PPSMC_Result_OK.
      AMTimeout: no answer.
    """
    msg = self.messages[f"PPSMC_MSG_{name}"]
    mp1 = self.dev.mp1
    wait_for(lambda: int(mp1.regMP1_SMN_C2PMSG_90.read() != 0), 1, 1, "SMU C2PMSG_90 != 0 (mailbox free)")
    mp1.regMP1_SMN_C2PMSG_90.write(0)
    mp1.regMP1_SMN_C2PMSG_82.write(param)
    mp1.regMP1_SMN_C2PMSG_66.write(msg)
    try:
      wait_for(lambda: int(mp1.regMP1_SMN_C2PMSG_90.read() != 0), 1, 1, f"SMU answer to PPSMC_MSG_{name}")
    except AMTimeout as e:
      raise AMTimeout(f"{e}; is the PMFW running (loaded through the PSP)?") from e
    result = mp1.regMP1_SMN_C2PMSG_90.read()
    if result != 1:
      raise FirmwareLoadError(f"SMU refused PPSMC_MSG_{name}(0x{param:x}): {self.results.get(result, hex(result))}")
    return mp1.regMP1_SMN_C2PMSG_82.read()

  def init_hw(self) -> list[str]:
    wait_for(lambda: self.dev.mmio.smn_read(self.fw_flags_addr), MP1_FIRMWARE_FLAGS_INTERRUPTS_ENABLED,
             MP1_FIRMWARE_FLAGS_INTERRUPTS_ENABLED, "MP1_FIRMWARE_FLAGS.INTERRUPTS_ENABLED (PMFW running)")
    version = self.send("GetSmuVersion")
    self.alive = True
    if_version = self.send("GetDriverIfVersion")
    self.send("SetDriverDramAddrHigh", self.driver_table.mc >> 32)
    self.send("SetDriverDramAddrLow", self.driver_table.mc & 0xFFFFFFFF)
    self.send("SetAllowedFeaturesMaskHigh", 0xFFFFFFFF)
    self.send("SetAllowedFeaturesMaskLow", 0xFFFFFFFF)
    self.send("EnableAllSmuFeatures")
    running = self.send("GetRunningSmuFeaturesHigh") << 32 | self.send("GetRunningSmuFeaturesLow")
    for clock in ("GFXCLK", "UCLK"):
      param = self.clocks[f"PPCLK_{clock}"] << 16
      self.dpm_mhz[clock] = (self.send("GetMinDpmFreq", param), self.send("GetMaxDpmFreq", param))
    ranges = ", ".join(f"{clock} {lo}-{hi} MHz" for clock, (lo, hi) in self.dpm_mhz.items())
    return [f"PMFW {version >> 16}.{(version >> 8) & 0xFF}.{version & 0xFF}, driver interface 0x{if_version:x}",
            f"driver table at MC 0x{self.driver_table.mc:x}; features enabled 0x{running:016x}",
            f"DPM ranges (GetMinDpmFreq / GetMaxDpmFreq): {ranges}"]

  def fini_hw(self) -> None:
    """Disable the features init_hw enabled; nothing to do when the PMFW never answered (a boot that failed first)."""
    if self.alive:
      self.send("DisableAllSmuFeatures")
