"""PSP: boot the security processor and load every IP firmware through it (amdgpu_psp.c psp_hw_start with
psp_v13_0.c for MP0 13.0.0 / Navi31 and psp_v14_0.c for MP0 14.0.3 / Navi48; the order is am/firmware/sets.py).

Bootloader mailbox (psp_v13_0_bootloader_load_component): wait C2PMSG_35 == 0x80000000 (ready, no error bits),
copy the component into the 1 MiB-aligned private buffer, C2PMSG_36 = its MC address >> 20, C2PMSG_35 = the
PSP_BL__ command, wait C2PMSG_35 == 0x80000000 again. After PSP_BL__LOAD_SOSDRV wait for C2PMSG_81 != 0 (sOS sign of
life); C2PMSG_58 then holds the sOS version. If C2PMSG_81 is already non-zero the bootloader stages are skipped.

KM ring (psp_v13_0_ring_create): wait C2PMSG_64 bit 31, C2PMSG_69/70 = ring MC address lo/hi, C2PMSG_71 = ring
size, C2PMSG_64 = PSP_RING_TYPE__KM << 16, wait (C2PMSG_64 & 0x8000FFFF) == 0x80000000.
Commands (psp_ring_cmd_submit, psp_cmd_submit_buf): a psp_gfx_cmd_resp in the command buffer, a psp_gfx_rb_frame
at the write pointer (cmd_buf_addr, fence_addr, fence_value = index), C2PMSG_67 = write pointer in dwords; the PSP
writes fence_value to the fence buffer and the status to resp.status.
"""
from __future__ import annotations

from am.cstruct import CStruct
from am.errors import AMTimeout, FirmwareLoadError
from am.firmware.sets import ASICS, FirmwareSet
from am.generated import ucode
from am.generated.boot import psp_if
from am.ip.base import IpBlock, wait_for

CMD = CStruct(psp_if.STRUCTS, psp_if.SIZES, "psp_gfx_cmd_resp")
FRAME = CStruct(psp_if.STRUCTS, psp_if.SIZES, "psp_gfx_rb_frame")
BL = ucode.ENUMS["psp_bootloader_cmd"]
GFX_CMD = ucode.ENUMS["psp_gfx_cmd_id"]
FW_TYPE = ucode.ENUMS["psp_gfx_fw_type"]
PSP_1_MEG = 0x100000          # amdgpu_psp.h
PSP_TMR_ALIGNMENT = 0x100000  # amdgpu_psp.h
RING_SIZE = 0x1000            # amdgpu_psp.c psp_ring_init
MBOX_READY = 0x80000000       # psp_v13_0.c MBOX_READY_FLAG


class Psp(IpBlock):
  name = "psp"

  def init_sw(self) -> None:
    gmc = self.dev.gmc
    self.fw = FirmwareSet(self.dev.caps.asic, self.dev.firmware_dir, self.dev.revision)
    self.pri = gmc.alloc(PSP_1_MEG, PSP_1_MEG, map_gart=False)
    self.fence = gmc.alloc(0x1000, map_gart=False)
    self.cmd = gmc.alloc(0x1000, map_gart=False)
    self.ring = gmc.alloc(RING_SIZE, map_gart=False)
    self.index = 0
    self.tmr = None

  def reg(self, n: int):
    return self.dev.mp0[f"{self.dev.caps.psp_msg_prefix}{n}"]

  def init_hw(self) -> list[str]:
    out = []
    steps = [s for s in self.fw.steps if s.required]
    boot = [s for s in steps if s.command.startswith("PSP_BL__")]
    if self.reg(81).read():
      out.append(f"sOS already alive (C2PMSG_81=0x{self.reg(81).read():x}): bootloader stages skipped")
    else:
      for step in boot:
        self.bootloader_load(step)
      out.append("bootloader: " + ", ".join(s.command.replace("PSP_BL__LOAD_", "") for s in boot))
    out.append(f"sOS alive (C2PMSG_81=0x{self.reg(81).read():08x})")
    self.ring_create()
    out.append(f"KM ring at MC 0x{self.ring.mc:x} ({RING_SIZE} bytes) created")
    loaded = 0
    asic = ASICS[self.dev.caps.asic]
    for step in steps[len(boot):]:
      # Navi31 (pmfw_centralized_cstate_management) sends the SMU firmware before the TMR setup, Navi48 after it
      smu_first = step.fw_type == "GFX_FW_TYPE_SMU" and asic.smu_before_tmr
      if self.tmr is None and step.command != "GFX_CMD_ID_LOAD_TOC" and not smu_first:
        self.setup_tmr()
      self.load(step)
      loaded += 1
      if step.ucode_id == "AMDGPU_UCODE_ID_RLC_G":
        self.submit(GFX_CMD["GFX_CMD_ID_AUTOLOAD_RLC"], {}, "RLC autoload")
    out.append(f"TOC: TMR of 0x{self.tmr_size:x} bytes at MC 0x{self.tmr.mc:x} set up")
    out.append(f"{loaded} firmware images accepted by the PSP (IP firmware, ASD, register list); RLC autoload "
               "started after RLC_G")
    return out

  # ---- bootloader mailbox ----
  def wait_bootloader(self, what: str) -> None:
    try:
      wait_for(self.reg(35).read, 0xFFFFFFFF, MBOX_READY, f"PSP bootloader C2PMSG_35 ready ({what})")
    except AMTimeout as e:
      status = self.reg(35).read()
      raise FirmwareLoadError(f"PSP bootloader failed {what}: C2PMSG_35=0x{status:08x} (bits 7:0 = error "
                              f"0x{status & 0xFF:02x})") from e

  def bootloader_load(self, step) -> None:
    what = f"{step.command} ({step.ucode_id}, {step.size} bytes of {step.file})"
    self.wait_bootloader(f"before {what}")
    self.dev.vram.write(self.pri.offset, self.fw.payload(step))
    self.reg(36).write(self.pri.mc >> 20)
    self.reg(35).write(BL[step.command])
    if step.command == "PSP_BL__LOAD_SOSDRV":
      try:
        wait_for(lambda: int(self.reg(81).read() != 0), 1, 1, "PSP C2PMSG_81 != 0 (sOS sign of life)")
      except AMTimeout as e:
        raise FirmwareLoadError(f"sOS did not come alive after {what}: C2PMSG_81=0, C2PMSG_35="
                                f"0x{self.reg(35).read():08x}") from e
    else:
      self.wait_bootloader(what)

  # ---- KM ring ----
  def ring_create(self) -> None:
    wait_for(self.reg(64).read, MBOX_READY, MBOX_READY, "PSP C2PMSG_64 bit 31 (sOS ready for ring creation)")
    self.reg(69).write(self.ring.mc & 0xFFFFFFFF)
    self.reg(70).write(self.ring.mc >> 32)
    self.reg(71).write(RING_SIZE)
    self.reg(64).write(psp_if.ENUMS["psp_ring_type"]["PSP_RING_TYPE__KM"] << 16)
    value = wait_for(self.reg(64).read, MBOX_READY, MBOX_READY, "PSP C2PMSG_64 response (KM ring create)")
    if value & 0xFFFF:
      raise FirmwareLoadError(f"PSP refused the KM ring: C2PMSG_64=0x{value:08x}")
    self.wptr = 0

  def submit(self, cmd_id: int, fields: dict[str, int], what: str) -> dict[str, int]:
    """One ring command; returns the decoded command buffer (resp.* included).

    Raises:
      FirmwareLoadError: resp.status != 0 (names the command and the status).
      AMTimeout: the fence never came.
    """
    self.index += 1
    cmd = CMD.pack(buf_size=CMD.size, buf_version=psp_if.CONSTANTS["PSP_GFX_CMD_BUF_VERSION"], cmd_id=cmd_id,
                   **fields)
    self.dev.vram.write(self.cmd.offset, cmd)
    frame = FRAME.pack(cmd_buf_addr_lo=self.cmd.mc & 0xFFFFFFFF, cmd_buf_addr_hi=self.cmd.mc >> 32,
                       fence_addr_lo=self.fence.mc & 0xFFFFFFFF, fence_addr_hi=self.fence.mc >> 32,
                       fence_value=self.index)
    self.dev.vram.write(self.ring.offset + self.wptr * 4, frame)
    self.wptr = (self.wptr + FRAME.size // 4) % (RING_SIZE // 4)
    self.reg(67).write(self.wptr)
    wait_for(lambda: self.dev.vram.read32(self.fence.offset), 0xFFFFFFFF, self.index, f"PSP fence of {what}")
    resp = CMD.unpack(self.dev.vram.read(self.cmd.offset, CMD.size))
    if resp["resp.status"]:
      raise FirmwareLoadError(f"PSP refused {what}: resp.status=0x{resp['resp.status']:x}")
    return resp

  def load(self, step) -> None:
    payload = self.fw.payload(step)
    if len(payload) > PSP_1_MEG:
      raise FirmwareLoadError(f"{step.file}:{step.region} is {len(payload)} bytes, more than the 1 MiB buffer")
    self.dev.vram.write(self.pri.offset, payload)
    what = f"{step.command} {step.fw_type or step.ucode_id} ({step.file}:{step.region}, {len(payload)} bytes)"
    lo, hi, size = self.pri.mc & 0xFFFFFFFF, self.pri.mc >> 32, len(payload)
    if step.command == "GFX_CMD_ID_LOAD_TOC":
      resp = self.submit(GFX_CMD[step.command], {"cmd.cmd_load_toc.toc_phy_addr_lo": lo,
                                                 "cmd.cmd_load_toc.toc_phy_addr_hi": hi,
                                                 "cmd.cmd_load_toc.toc_size": size}, what)
      self.tmr_size = resp["resp.tmr_size"]
    elif step.command == "GFX_CMD_ID_LOAD_ASD":
      self.submit(GFX_CMD[step.command], {"cmd.cmd_load_ta.app_phy_addr_lo": lo, "cmd.cmd_load_ta.app_phy_addr_hi": hi,
                                          "cmd.cmd_load_ta.app_len": size}, what)
    else:
      self.submit(GFX_CMD[step.command], {"cmd.cmd_load_ip_fw.fw_phy_addr_lo": lo,
                                          "cmd.cmd_load_ip_fw.fw_phy_addr_hi": hi,
                                          "cmd.cmd_load_ip_fw.fw_size": size,
                                          "cmd.cmd_load_ip_fw.fw_type": FW_TYPE[step.fw_type]}, what)

  def setup_tmr(self) -> None:
    """psp_tmr_init + psp_tmr_load: the TMR the TOC asked for, 1 MiB aligned, in VRAM."""
    self.tmr = self.dev.gmc.alloc(self.tmr_size, PSP_TMR_ALIGNMENT, map_gart=False)
    self.submit(GFX_CMD["GFX_CMD_ID_SETUP_TMR"], {
      "cmd.cmd_setup_tmr.buf_phy_addr_lo": self.tmr.mc & 0xFFFFFFFF,
      "cmd.cmd_setup_tmr.buf_phy_addr_hi": self.tmr.mc >> 32,
      "cmd.cmd_setup_tmr.buf_size": self.tmr.size, "cmd.cmd_setup_tmr.bitfield.virt_phy_addr": 1,
      "cmd.cmd_setup_tmr.system_phy_addr_lo": self.tmr.offset & 0xFFFFFFFF,
      "cmd.cmd_setup_tmr.system_phy_addr_hi": self.tmr.offset >> 32}, "GFX_CMD_ID_SETUP_TMR")

  def fini_hw(self) -> None:
    """psp_ring_stop (psp_v13_0_ring_stop): GFX_CTRL_CMD_ID_DESTROY_RINGS through C2PMSG_64; the sOS stays alive,
    so the next boot skips the bootloader as amdgpu does after a driver reload."""
    self.reg(64).write(ucode.ENUMS["psp_gfx_crtl_cmd_id"]["GFX_CTRL_CMD_ID_DESTROY_RINGS"])
    wait_for(self.reg(64).read, MBOX_READY, MBOX_READY, "PSP C2PMSG_64 response (ring destroy)")
