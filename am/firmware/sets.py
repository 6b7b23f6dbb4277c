"""The firmware each card needs, in the order amdgpu (linux 6.12) hands it to the PSP.

Both cards load everything through the PSP ("front-door", AMDGPU_FW_LOAD_PSP). amdgpu's order, which
`FirmwareSet.steps` reproduces:

1. PSP bootloader stages (amdgpu_psp.c psp_hw_start): KDB, SPL, SYS_DRV, SOC_DRV, INTF_DRV, DBG_DRV, RAS_DRV,
   IPKEYMGR_DRV, SOS, each only when the sOS file has that component and the PSP version has the loader
   (psp_v13_0.c has no IPKEYMGR_DRV stage; psp_v14_0.c has all). Quirk kept as amdgpu does it:
   psp_v13_0_bootloader_load_spl sends the KDB image with PSP_BL__LOAD_TOS_SPL_TABLE (psp_v13_0.c).
2. The TOC (psp_tmr_init -> psp_load_toc, GFX_CMD_ID_LOAD_TOC), which tells the TMR size.
3. MP0 13.0.0 (Navi31) has pmfw_centralized_cstate_management (psp_check_pmfw_centralized_cstate_management):
   the SMU firmware goes now, before the TMR is set up (psp_hw_start). MP0 14.0.3 (Navi48) has autoload without it:
   the SMU firmware goes first in psp_load_non_psp_fw.
4. Every other IP firmware, GFX_CMD_ID_LOAD_IP_FW, in AMDGPU_UCODE_ID order (psp_load_non_psp_fw walks
   adev->firmware.ucode[] by id); the ids come from the init_microcode functions: amdgpu_sdma.c
   amdgpu_sdma_init_microcode (v2 header: SDMA_UCODE_TH0/TH1, v3: SDMA_RS64), gfx_v11_0.c / gfx_v12_0.c
   init_microcode + amdgpu_gfx.c amdgpu_gfx_cp_init_microcode (RS64 PFP/ME/MEC and their per-pipe stacks),
   imu_v11_0.c / imu_v12_0.c (IMU_I/IMU_D), amdgpu_rlc.c (RLC_G and the v2.1+ lists). After RLC_G amdgpu sends
   GFX_CMD_ID_AUTOLOAD_RLC (psp_rlc_autoload_start). fw_type per id: amdgpu_psp.c psp_get_fw_type.
5. ASD (psp_asd_initialize, GFX_CMD_ID_LOAD_ASD), then RL (psp_rl_load, GFX_FW_TYPE_REG_LIST), then the TAs
   (RAS, HDCP, DTM, ...) that amdgpu starts once the GPU runs; those are marked required=False.

Left out on purpose: the MES and MES-KIQ ucodes (gc_*_mes*.bin, AMDGPU_UCODE_ID_CP_MES*), since AM programs the
compute queues' HQD registers directly (am/queues); and the RLC backdoor-autoload TOC (gc_*_toc.bin), which amdgpu
only reads for AMDGPU_FW_LOAD_RLC_BACKDOOR_AUTO.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from am.firmware.headers import FirmwareImage, parse
from am.firmware.locate import FirmwareError, find
from am.generated import ucode

UCODE_IDS = ucode.ENUMS["AMDGPU_UCODE_ID"]
PSP_COMPONENT = "PSP_FW_TYPE_PSP_"
# amdgpu_psp.c psp_get_fw_type, for the ids these cards load
FW_TYPE = {
  "AMDGPU_UCODE_ID_SDMA_UCODE_TH0": "GFX_FW_TYPE_SDMA_UCODE_TH0",
  "AMDGPU_UCODE_ID_SDMA_UCODE_TH1": "GFX_FW_TYPE_SDMA_UCODE_TH1",
  "AMDGPU_UCODE_ID_SDMA_RS64": "GFX_FW_TYPE_SDMA_UCODE_TH0",
  "AMDGPU_UCODE_ID_IMU_I": "GFX_FW_TYPE_IMU_I",
  "AMDGPU_UCODE_ID_IMU_D": "GFX_FW_TYPE_IMU_D",
  "AMDGPU_UCODE_ID_RLC_G": "GFX_FW_TYPE_RLC_G",
  "AMDGPU_UCODE_ID_RLC_RESTORE_LIST_CNTL": "GFX_FW_TYPE_RLC_RESTORE_LIST_SRM_CNTL",
  "AMDGPU_UCODE_ID_RLC_RESTORE_LIST_GPM_MEM": "GFX_FW_TYPE_RLC_RESTORE_LIST_GPM_MEM",
  "AMDGPU_UCODE_ID_RLC_RESTORE_LIST_SRM_MEM": "GFX_FW_TYPE_RLC_RESTORE_LIST_SRM_MEM",
  "AMDGPU_UCODE_ID_RLC_IRAM": "GFX_FW_TYPE_RLC_IRAM",
  "AMDGPU_UCODE_ID_RLC_DRAM": "GFX_FW_TYPE_RLC_DRAM_BOOT",
  "AMDGPU_UCODE_ID_RLC_P": "GFX_FW_TYPE_RLC_P",
  "AMDGPU_UCODE_ID_RLC_V": "GFX_FW_TYPE_RLC_V",
  "AMDGPU_UCODE_ID_GLOBAL_TAP_DELAYS": "GFX_FW_TYPE_GLOBAL_TAP_DELAYS",
  "AMDGPU_UCODE_ID_SE0_TAP_DELAYS": "GFX_FW_TYPE_SE0_TAP_DELAYS",
  "AMDGPU_UCODE_ID_SE1_TAP_DELAYS": "GFX_FW_TYPE_SE1_TAP_DELAYS",
  "AMDGPU_UCODE_ID_SE2_TAP_DELAYS": "GFX_FW_TYPE_SE2_TAP_DELAYS",
  "AMDGPU_UCODE_ID_SE3_TAP_DELAYS": "GFX_FW_TYPE_SE3_TAP_DELAYS",
  "AMDGPU_UCODE_ID_SMC": "GFX_FW_TYPE_SMU",
}
# RS64 CP ucode and stacks: AMDGPU_UCODE_ID_CP_RS64_<engine>[_P<n>_STACK] -> GFX_FW_TYPE_RS64_<engine>[_P<n>_STACK]
for _engine in ("PFP", "ME", "MEC"):
  for _id in UCODE_IDS:
    if re.fullmatch(rf"AMDGPU_UCODE_ID_CP_RS64_{_engine}(_P\d_STACK)?", _id):
      FW_TYPE[_id] = "GFX_FW_TYPE_" + _id[len("AMDGPU_UCODE_ID_CP_"):]
# RLC regions (am/firmware/headers.py) -> the ucode id amdgpu_rlc.c registers for them when their size is not 0
RLC_IDS = {"save_restore_list_cntl": "AMDGPU_UCODE_ID_RLC_RESTORE_LIST_CNTL",
           "save_restore_list_gpm": "AMDGPU_UCODE_ID_RLC_RESTORE_LIST_GPM_MEM",
           "save_restore_list_srm": "AMDGPU_UCODE_ID_RLC_RESTORE_LIST_SRM_MEM",
           "rlc_iram": "AMDGPU_UCODE_ID_RLC_IRAM", "rlc_dram": "AMDGPU_UCODE_ID_RLC_DRAM",
           "rlcp": "AMDGPU_UCODE_ID_RLC_P", "rlcv": "AMDGPU_UCODE_ID_RLC_V",
           "global_tap_delays": "AMDGPU_UCODE_ID_GLOBAL_TAP_DELAYS", "se0_tap_delays": "AMDGPU_UCODE_ID_SE0_TAP_DELAYS",
           "se1_tap_delays": "AMDGPU_UCODE_ID_SE1_TAP_DELAYS", "se2_tap_delays": "AMDGPU_UCODE_ID_SE2_TAP_DELAYS",
           "se3_tap_delays": "AMDGPU_UCODE_ID_SE3_TAP_DELAYS"}


@dataclass(frozen=True)
class FileSpec:
  role: str          # pfp, me, mec, rlc, imu, sdma, smc, sos, ta
  name: str          # file name amdgpu requests
  kind: str          # header kind (am/firmware/headers.py)
  crc: str | None    # the region crc32 covers in firmware-amd-graphics 20250410 (headers.py docstring)


@dataclass(frozen=True)
class Asic:
  name: str
  gc: str                       # ucode prefix of GC (amdgpu_ucode_ip_version_decode)
  psp: str
  smu: str
  sdma: str
  # psp_hw_start stages this PSP version has: (gating sOS component, component sent, PSP_BL__ command)
  bootloader: tuple[tuple[str, str, str], ...]
  smu_before_tmr: bool          # pmfw_centralized_cstate_management (docstring step 3; the file order is the same)
  rlc_crc: str | None = None
  smu_crc: str | None = "image"


def _stages(*stages: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
  """(gate, command) or (gate, component sent, command) -> sOS component names."""
  out = []
  for stage in stages:
    gate, command = stage[0], stage[-1]
    sent = stage[1] if len(stage) == 3 else gate
    out.append((PSP_COMPONENT + gate, PSP_COMPONENT + sent, command))
  return tuple(out)


NAVI31 = Asic(
  name="navi31", gc="gc_11_0_0", psp="psp_13_0_0", smu="smu_13_0_0", sdma="sdma_6_0_0",
  # psp_v13_0_funcs: kdb, spl (sending the KDB image), sysdrv, soc_drv, intf_drv, dbg_drv, ras_drv, sos
  bootloader=_stages(("KDB", "PSP_BL__LOAD_KEY_DATABASE"), ("SPL", "KDB", "PSP_BL__LOAD_TOS_SPL_TABLE"),
                     ("SYS_DRV", "PSP_BL__LOAD_SYSDRV"), ("SOC_DRV", "PSP_BL__LOAD_SOCDRV"),
                     ("INTF_DRV", "PSP_BL__LOAD_INTFDRV"), ("DBG_DRV", "PSP_BL__LOAD_DBGDRV"),
                     ("RAS_DRV", "PSP_BL__LOAD_RASDRV"), ("SOS", "PSP_BL__LOAD_SOSDRV")),
  smu_before_tmr=True, smu_crc=None)
NAVI48 = Asic(
  name="navi48", gc="gc_12_0_1", psp="psp_14_0_3", smu="smu_14_0_3", sdma="sdma_7_0_1",
  # psp_v14_0_funcs: every stage; DBG_DRV goes as PSP_BL__LOAD_HADDRV (the same value as PSP_BL__LOAD_DBGDRV)
  bootloader=_stages(("KDB", "PSP_BL__LOAD_KEY_DATABASE"), ("SPL", "PSP_BL__LOAD_TOS_SPL_TABLE"),
                     ("SYS_DRV", "PSP_BL__LOAD_SYSDRV"), ("SOC_DRV", "PSP_BL__LOAD_SOCDRV"),
                     ("INTF_DRV", "PSP_BL__LOAD_INTFDRV"), ("DBG_DRV", "PSP_BL__LOAD_HADDRV"),
                     ("RAS_DRV", "PSP_BL__LOAD_RASDRV"), ("IPKEYMGR_DRV", "PSP_BL__LOAD_IPKEYMGRDRV"),
                     ("SOS", "PSP_BL__LOAD_SOSDRV")),
  smu_before_tmr=False, smu_crc="first512")
ASICS = {"navi31": NAVI31, "navi48": NAVI48}


@dataclass(frozen=True)
class LoadStep:
  """One firmware hand-off to the PSP: `size` bytes of `file` at `offset`."""
  command: str             # PSP_BL__* (bootloader mailbox) or GFX_CMD_ID_* (ring command)
  fw_type: str | None      # GFX_FW_TYPE_* for GFX_CMD_ID_LOAD_IP_FW
  ucode_id: str | None     # AMDGPU_UCODE_ID_* (IP firmware) or the sOS/TA component name
  file: str
  region: str
  offset: int
  size: int
  version: int | None
  required: bool = True


@dataclass
class FirmwareSet:
  """The decoded firmware files of one card and the order they go to the PSP.

  Args:
    asic: 'navi31' or 'navi48'.
    firmware_dir: where the .bin(.zst/.xz) files are; default $AM_FIRMWARE_DIR, else /lib/firmware/amdgpu.
    pci_revision: Navi31 boards with PCI revision 0xCE take gc_11_0_0_rlc_1.bin (gfx_v11_0_init_microcode).

  Raises:
    FirmwareMissingError: a file is missing (names it, the directory and the package).
    FirmwareError: a file is truncated or inconsistent (names it and the header field).
  """
  asic: str
  firmware_dir: str | None = None
  pci_revision: int | None = None
  files: dict[str, FirmwareImage] = field(default_factory=dict)
  steps: list[LoadStep] = field(default_factory=list)

  def __post_init__(self):
    if self.asic not in ASICS:
      raise ValueError(f"unknown ASIC {self.asic!r}: one of {', '.join(ASICS)}")
    spec = ASICS[self.asic]
    for f in self.file_specs(spec):
      self.files[f.role] = parse(find(f.name, self.firmware_dir), f.kind, f.crc)
    self.steps = self.load_order(spec)

  def file_specs(self, spec: Asic) -> list[FileSpec]:
    rlc = f"{spec.gc}_rlc.bin"
    if spec is NAVI31 and self.pci_revision == 0xCE:
      rlc = "gc_11_0_0_rlc_1.bin"
    return [FileSpec("sos", f"{spec.psp}_sos.bin", "sos", "image"),
            FileSpec("ta", f"{spec.psp}_ta.bin", "ta", "image"),
            FileSpec("smc", f"{spec.smu}.bin", "smc", spec.smu_crc),
            FileSpec("sdma", f"{spec.sdma}.bin", "sdma", "image"),
            FileSpec("pfp", f"{spec.gc}_pfp.bin", "gfx", "image"),
            FileSpec("me", f"{spec.gc}_me.bin", "gfx", "image"),
            FileSpec("mec", f"{spec.gc}_mec.bin", "gfx", "image"),
            FileSpec("imu", f"{spec.gc}_imu.bin", "imu", "image"),
            FileSpec("rlc", rlc, "rlc", spec.rlc_crc)]

  def step(self, role: str, region: str, command: str, fw_type: str | None, ucode_id: str | None,
           required: bool = True) -> LoadStep:
    image = self.files[role]
    r = image.region(region)
    return LoadStep(command, fw_type, ucode_id, image.name, region, r.offset, r.size, r.version, required)

  def ip_firmware(self) -> list[tuple[str, str, str]]:
    """(ucode id, role, region) of every IP firmware amdgpu registers for PSP loading, SMC included."""
    out = [("AMDGPU_UCODE_ID_SMC", "smc", "image")]
    sdma = self.files["sdma"]
    if sdma.version == (3, 0):
      out.append(("AMDGPU_UCODE_ID_SDMA_RS64", "sdma", "ucode"))
    else:
      out += [("AMDGPU_UCODE_ID_SDMA_UCODE_TH0", "sdma", "ctx"), ("AMDGPU_UCODE_ID_SDMA_UCODE_TH1", "sdma", "ctl")]
    for role in ("pfp", "me", "mec"):
      if self.files[role].version != (2, 0):
        raise FirmwareError(f"{self.files[role].path}: header {self.files[role].version} is not RS64 (v2.0); "
                            f"{self.asic} firmware is RS64 (gfx_v11_0_init_microcode: rs64_enable)")
      engine = role.upper()
      out.append((f"AMDGPU_UCODE_ID_CP_RS64_{engine}", role, "ucode"))
      out += [(uid, role, "data") for uid in UCODE_IDS if re.fullmatch(rf"AMDGPU_UCODE_ID_CP_RS64_{engine}_P\d_STACK",
                                                                       uid)]
    out += [("AMDGPU_UCODE_ID_IMU_I", "imu", "iram"), ("AMDGPU_UCODE_ID_IMU_D", "imu", "dram"),
            ("AMDGPU_UCODE_ID_RLC_G", "rlc", "image")]
    rlc = self.files["rlc"]
    out += [(RLC_IDS[name], "rlc", name) for name, r in rlc.regions.items() if name in RLC_IDS and r.size]
    return sorted(out, key=lambda entry: UCODE_IDS[entry[0]])

  def load_order(self, spec: Asic) -> list[LoadStep]:
    sos, ta = self.files["sos"], self.files["ta"]
    steps = []
    for gate, sent, command in spec.bootloader:
      if gate in sos.regions and sos.regions[gate].size:
        steps.append(self.step("sos", sent, command, None, sent))
    if PSP_COMPONENT + "TOC" in sos.regions:
      steps.append(self.step("sos", PSP_COMPONENT + "TOC", "GFX_CMD_ID_LOAD_TOC", None, PSP_COMPONENT + "TOC"))
    # Navi31 sends the SMU ucode before the TMR setup, Navi48 first in psp_load_non_psp_fw: either way it comes
    # right after the TOC and before every other IP firmware (the TMR setup itself carries no firmware)
    steps.append(self.step("smc", "image", "GFX_CMD_ID_LOAD_IP_FW", FW_TYPE["AMDGPU_UCODE_ID_SMC"],
                           "AMDGPU_UCODE_ID_SMC"))
    for ucode_id, role, region in self.ip_firmware():
      if ucode_id != "AMDGPU_UCODE_ID_SMC":
        steps.append(self.step(role, region, "GFX_CMD_ID_LOAD_IP_FW", FW_TYPE[ucode_id], ucode_id))
    if "TA_FW_TYPE_PSP_ASD" in ta.regions:
      steps.append(self.step("ta", "TA_FW_TYPE_PSP_ASD", "GFX_CMD_ID_LOAD_ASD", None, "TA_FW_TYPE_PSP_ASD"))
    if PSP_COMPONENT + "RL" in sos.regions and sos.regions[PSP_COMPONENT + "RL"].size:
      steps.append(self.step("sos", PSP_COMPONENT + "RL", "GFX_CMD_ID_LOAD_IP_FW", "GFX_FW_TYPE_REG_LIST",
                             PSP_COMPONENT + "RL"))
    for name in ta.regions:
      if name.startswith("TA_FW_TYPE_") and name != "TA_FW_TYPE_PSP_ASD":
        steps.append(self.step("ta", name, "GFX_CMD_ID_LOAD_TA", None, name, required=False))
    return steps

  def payload(self, step: LoadStep) -> bytes:
    """The bytes `step` hands to the PSP."""
    image = next(im for im in self.files.values() if im.name == step.file)
    return image.data[step.offset:step.offset + step.size]

  def describe(self) -> str:
    lines = [f"{self.asic} firmware (load order):"]
    for i, s in enumerate(self.steps):
      what = s.fw_type or s.ucode_id
      flag = "" if s.required else "  (optional)"
      lines.append(f"{i:3d} {s.command:28s} {what:40s} {s.file}:{s.region} [{s.offset:#x}, +{s.size:#x}]{flag}")
    return "\n".join(lines)
