"""The simulated PSP: bootloader mailbox, sOS, KM ring and firmware loading, following the driver side of
psp_v13_0.c / psp_v14_0.c / amdgpu_psp.c (see am/ip/psp.py for the protocol) and checking what a PSP checks:

- every image is the signed one: its SHA-256 must equal that of the same region of the card's own firmware set
  (am.firmware.sets.FirmwareSet over the firmware_dir given to SimCard); a different byte -> refused;
- the bootloader takes its components in the order of am/firmware/sets.py (KDB/SPL before SYS_DRV before SOS);
- ring commands need the sOS and the KM ring; IP firmware needs the TOC and the TMR (Navi31's SMU image may come
  before the TMR: pmfw_centralized_cstate_management); GFX_CMD_ID_AUTOLOAD_RLC needs the RS64 PFP/ME/MEC, IMU and
  RLC_G images.

Refusals: bootloader C2PMSG_35 = 0x80000000 | code (bits 7:0, as psp_v13_0_wait_for_bootloader describes for newer
PSPs); ring commands resp.status != 0; the codes themselves are the simulator's (the sOS's are not public):
"""
from __future__ import annotations

import hashlib

from am.cstruct import CStruct
from am.firmware.sets import ASICS, FirmwareSet
from am.generated import ucode
from am.generated.boot import psp_if

BL_BAD_IMAGE, BL_BAD_ORDER = 0x01, 0x02
STATUS_BAD_IMAGE, STATUS_BAD_ORDER, STATUS_BAD_ARGS = 0xA0, 0xA1, 0xA2
STATUS_UNKNOWN = psp_if.CONSTANTS["PSP_ERR_UNKNOWN_COMMAND"]
TMR_SIZE = 0x400000   # what the simulated TOC asks for (PSP_TMR_SIZE of amdgpu_psp.h)
CMD = CStruct(psp_if.STRUCTS, psp_if.SIZES, "psp_gfx_cmd_resp")
FRAME = CStruct(psp_if.STRUCTS, psp_if.SIZES, "psp_gfx_rb_frame")
BL_NAMES = {v: k for k, v in ucode.ENUMS["psp_bootloader_cmd"].items()}
CMD_NAMES = {v: k for k, v in ucode.ENUMS["psp_gfx_cmd_id"].items()}
FW_NAMES = {v: k for k, v in ucode.ENUMS["psp_gfx_fw_type"].items()}
AUTOLOAD_NEEDS = ("GFX_FW_TYPE_RS64_PFP", "GFX_FW_TYPE_RS64_ME", "GFX_FW_TYPE_RS64_MEC", "GFX_FW_TYPE_IMU_I",
                  "GFX_FW_TYPE_IMU_D", "GFX_FW_TYPE_RLC_G")


def digest(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


class SimPsp:
  def __init__(self, card):
    self.card = card
    self.asic = ASICS[card.spec.firmware_asic]
    fs = FirmwareSet(card.spec.firmware_asic, card.firmware_dir, card.spec.revision)
    self.boot_order = [(s.command, s.size, digest(fs.payload(s))) for s in fs.steps if s.command.startswith("PSP_BL__")]
    self.images: dict[str, set[str]] = {}
    for s in fs.steps:
      self.images.setdefault(s.fw_type or s.command, set()).add(digest(fs.payload(s)))
    self.booted = 0
    self.ring_mc = None
    self.rptr = 0
    self.toc = False
    self.tmr = False
    self.loaded: set[str] = set()
    mp0, p = card.blocks["MP0"], card.caps.psp_msg_prefix
    self.reg = lambda n: mp0[f"{p}{n}"]
    card.regs.hook(mp0, f"{p}35", write=self.bootloader)
    card.regs.hook(mp0, f"{p}64", write=self.ring_control)
    card.regs.hook(mp0, f"{p}67", write=self.ring_wptr)

  # ---- bootloader ----
  def bootloader(self, value: int) -> None:
    command = BL_NAMES.get(value)
    if self.booted >= len(self.boot_order):
      return self._bl_fail(BL_BAD_ORDER, f"bootloader command 0x{value:x} after the sOS is up")
    want, size, want_digest = self.boot_order[self.booted]
    if command != want:
      return self._bl_fail(BL_BAD_ORDER, f"bootloader got {command or hex(value)}, expected {want} next")
    mc = self.reg(36).read() << 20
    offset = self.card.mc_to_vram(mc, 1 << 20)
    if offset is None:
      return self._bl_fail(BL_BAD_ORDER, f"{command}: C2PMSG_36 points at MC 0x{mc:x}, outside VRAM")
    image = self.card.vram.read(offset, 1 << 20)
    if digest(image[:size]) != want_digest:
      return self._bl_fail(BL_BAD_IMAGE, f"{command}: image signature check failed")
    self.booted += 1
    self.card.note(f"psp bootloader: {command} accepted")
    if command == "PSP_BL__LOAD_SOSDRV":
      self.reg(81).write(0x1)            # sOS sign of life
      self.reg(64).write(0x80000000)     # ready for ring creation
    self.card.regs.raw.write32(self.reg(35).byte_offset, 0x80000000)

  def _bl_fail(self, code: int, why: str) -> None:
    self.card.note(f"psp bootloader REFUSED: {why}")
    self.card.regs.raw.write32(self.reg(35).byte_offset, 0x80000000 | code)

  # ---- KM ring ----
  def ring_control(self, value: int) -> None:
    raw = self.card.regs.raw
    at = self.reg(64).byte_offset
    if value == ucode.ENUMS["psp_gfx_crtl_cmd_id"]["GFX_CTRL_CMD_ID_DESTROY_RINGS"]:
      self.ring_mc = None
      self.card.note("psp: rings destroyed")
      raw.write32(at, 0x80000000)
      return
    if value >> 16 != psp_if.ENUMS["psp_ring_type"]["PSP_RING_TYPE__KM"]:
      self.card.note(f"psp: C2PMSG_64 command 0x{value:x} not modelled")
      raw.write32(at, 0x80000000 | 0x1)
      return
    mc = self.reg(69).read() | self.reg(70).read() << 32
    size = self.reg(71).read()
    if not self.reg(81).read() or self.card.mc_to_vram(mc, max(size, 1)) is None or not size:
      self.card.note(f"psp: KM ring refused (sOS alive={bool(self.reg(81).read())}, MC 0x{mc:x}, size {size})")
      raw.write32(at, 0x80000000 | 0x2)
      return
    self.ring_mc, self.ring_size, self.rptr = mc, size, 0
    self.card.note(f"psp: KM ring at MC 0x{mc:x} size {size}")
    raw.write32(at, 0x80000000)

  def ring_wptr(self, wptr: int) -> None:
    if self.ring_mc is None:
      self.card.note("psp: C2PMSG_67 written with no KM ring")
      return
    base = self.card.mc_to_vram(self.ring_mc, self.ring_size)
    while self.rptr != wptr:
      frame = FRAME.unpack(self.card.vram.read(base + self.rptr * 4, FRAME.size))
      self.execute(frame)
      self.rptr = (self.rptr + FRAME.size // 4) % (self.ring_size // 4)

  def execute(self, frame: dict[str, int]) -> None:
    vram = self.card.vram
    cmd_at = self.card.mc_to_vram(frame["cmd_buf_addr_lo"] | frame["cmd_buf_addr_hi"] << 32, CMD.size)
    fence_at = self.card.mc_to_vram(frame["fence_addr_lo"] | frame["fence_addr_hi"] << 32)
    cmd = CMD.unpack(vram.read(cmd_at, CMD.size))
    name = CMD_NAMES.get(cmd["cmd_id"], hex(cmd["cmd_id"]))
    status, tmr_size, why = self.command(name, cmd)
    self.card.note(f"psp: {name} {'accepted' if status == 0 else f'REFUSED (0x{status:x}): {why}'}"
                   + (f" ({why})" if status == 0 and why else ""))
    out = bytearray(vram.read(cmd_at, CMD.size))
    CMD.set(out, "resp.status", status)
    CMD.set(out, "resp.tmr_size", tmr_size)
    vram.write(cmd_at, out)
    vram.write32(fence_at, frame["fence_value"])

  def _image(self, lo: int, hi: int, size: int) -> bytes | None:
    at = self.card.mc_to_vram(lo | hi << 32, max(size, 1))
    return None if at is None else self.card.vram.read(at, size)

  def command(self, name: str, cmd: dict[str, int]) -> tuple[int, int, str]:
    if name == "GFX_CMD_ID_LOAD_TOC":
      image = self._image(cmd["cmd.cmd_load_toc.toc_phy_addr_lo"], cmd["cmd.cmd_load_toc.toc_phy_addr_hi"],
                          cmd["cmd.cmd_load_toc.toc_size"])
      if image is None or digest(image) not in self.images.get(name, ()):
        return STATUS_BAD_IMAGE, 0, "TOC signature check failed"
      self.toc = True
      return 0, TMR_SIZE, f"TMR size 0x{TMR_SIZE:x}"
    if name == "GFX_CMD_ID_SETUP_TMR":
      mc = cmd["cmd.cmd_setup_tmr.buf_phy_addr_lo"] | cmd["cmd.cmd_setup_tmr.buf_phy_addr_hi"] << 32
      size = cmd["cmd.cmd_setup_tmr.buf_size"]
      if not self.toc:
        return STATUS_BAD_ORDER, 0, "SETUP_TMR before LOAD_TOC"
      if size < TMR_SIZE or mc % 0x100000 or self.card.mc_to_vram(mc, size) is None:
        return STATUS_BAD_ARGS, 0, f"TMR at MC 0x{mc:x} size 0x{size:x}: needs >= 0x{TMR_SIZE:x}, 1 MiB aligned, VRAM"
      self.tmr = True
      return 0, 0, ""
    if name in ("GFX_CMD_ID_LOAD_IP_FW", "GFX_CMD_ID_LOAD_ASD"):
      return self.load(name, cmd)
    if name == "GFX_CMD_ID_AUTOLOAD_RLC":
      missing = [t for t in AUTOLOAD_NEEDS if t not in self.loaded]
      if missing:
        return STATUS_BAD_ORDER, 0, f"RLC autoload without {', '.join(missing)}"
      self.card.cp.autoload_done()
      return 0, 0, "RLC autoload complete"
    return STATUS_UNKNOWN, 0, "command not modelled"

  def load(self, name: str, cmd: dict[str, int]) -> tuple[int, int, str]:
    if name == "GFX_CMD_ID_LOAD_ASD":
      key = name
      image = self._image(cmd["cmd.cmd_load_ta.app_phy_addr_lo"], cmd["cmd.cmd_load_ta.app_phy_addr_hi"],
                          cmd["cmd.cmd_load_ta.app_len"])
    else:
      key = FW_NAMES.get(cmd["cmd.cmd_load_ip_fw.fw_type"], hex(cmd["cmd.cmd_load_ip_fw.fw_type"]))
      image = self._image(cmd["cmd.cmd_load_ip_fw.fw_phy_addr_lo"], cmd["cmd.cmd_load_ip_fw.fw_phy_addr_hi"],
                          cmd["cmd.cmd_load_ip_fw.fw_size"])
    early_smu = key == "GFX_FW_TYPE_SMU" and self.asic.smu_before_tmr and self.toc
    if not self.tmr and not early_smu:
      return STATUS_BAD_ORDER, 0, f"{key} before the TMR is set up"
    if image is None or digest(image) not in self.images.get(key, ()):
      return STATUS_BAD_IMAGE, 0, f"{key}: image signature check failed"
    self.loaded.add(key)
    if key == "GFX_FW_TYPE_SMU":
      self.card.smu.start()
    if key.startswith("GFX_FW_TYPE_SDMA"):
      self.card.sdma.firmware = True
    return 0, 0, key
