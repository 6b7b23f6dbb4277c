"""The unmodified AM driver (am/device.py, am/ip/) booting the simulated Navi31 and Navi48 (am/simcard) at the OS
seam, and the card refusing what a card would refuse. The PSP model checks the real firmware images of
firmware-amd-graphics 20250410-2~bpo12+1, found through AM_FIRMWARE_DIR (as tests/test_am_firmware.py): without it
these tests skip locally and fail under CI=true."""
from __future__ import annotations

import os

import pytest

from am.device import AMDevice
from am.errors import AMFault, FirmwareLoadError, UnsupportedDevice
from am.pm4.pm4 import PM4Stream
from am.simcard.card import SimCard

STAGES = ["discover", "soc", "gmc", "ih", "psp", "smu", "gfx", "sdma"]



@pytest.mark.parametrize("name", ["navi31", "navi48"])
def test_boot_and_reboot(fw_dir, name):
  card = SimCard(name, fw_dir)
  dev = AMDevice(card, fw_dir)
  reports = dev.boot()
  assert [r.name for r in reports] == STAGES
  assert any("ring test" in line for line in reports[-2].verified)
  assert dev.gfx.ring_test(0x12345678) == 0x12345678
  dev.fini()
  # the card stays powered with its sOS alive: a second driver instance skips the bootloader, as amdgpu does
  again = AMDevice(card, fw_dir).boot()
  assert any("bootloader stages skipped" in line for line in again[4].verified)


def test_corrupt_firmware_is_refused(fw_dir, tmp_path):
  # the driver reads a firmware directory where one byte of the RLC_G image differs (gc_11_0_0_rlc.bin carries no
  # CRC the parser could check); the card's PSP knows the signed image and refuses it
  from am.firmware.sets import FirmwareSet
  step = next(s for s in FirmwareSet("navi31", fw_dir).steps if s.ucode_id == "AMDGPU_UCODE_ID_RLC_G")
  for name in os.listdir(fw_dir):
    os.symlink(os.path.join(fw_dir, name), tmp_path / name)
  data = bytearray(open(os.path.join(fw_dir, step.file), "rb").read())
  data[step.offset + 64] ^= 0xFF
  os.unlink(tmp_path / step.file)
  (tmp_path / step.file).write_bytes(bytes(data))
  card = SimCard("navi31", fw_dir)
  with pytest.raises(FirmwareLoadError, match="PSP refused GFX_CMD_ID_LOAD_IP_FW GFX_FW_TYPE_RLC_G"):
    AMDevice(card, str(tmp_path)).boot()
  assert any("RLC_G: image signature check failed" in line for line in card.log)


def test_bootloader_order_is_checked(fw_dir):
  card = SimCard("navi48", fw_dir)
  dev = AMDevice(card, fw_dir)
  dev.discover()
  mp0 = dev.mp0
  mp0.regMPASP_SMN_C2PMSG_35.write(0x20000)   # PSP_BL__LOAD_SOSDRV first
  assert mp0.regMPASP_SMN_C2PMSG_35.read() == 0x80000002
  assert "expected PSP_BL__LOAD_KEY_DATABASE next" in card.log[-1]


def test_page_fault_reaches_the_ih_ring(fw_dir):
  card = SimCard("navi48", fw_dir)
  dev = AMDevice(card, fw_dir)
  dev.boot()
  s = PM4Stream(12)
  s.write_data(dev.gmc.GART_SIZE - 4096 * 2, 1)   # GART page never mapped
  dev.gfx.fence += 1
  s.release_mem(dev.gfx.scratch.gart + 8, dev.gfx.fence)
  dev.gfx.queue.submit(s)
  with pytest.raises(AMFault, match="SOC21_IH_CLIENTID_GFX GFX_11_0_0__SRCID__UTCL2_FAULT") as info:
    dev.gfx.wait_fence(dev.gfx.fence, timeout_s=0.2)
  # the GC hub's UTCL2 reports through client GFX (10), UTCL2_1_0__SRCID__FAULT (0) (gmc_v12_0_sw_init)
  assert (info.value.entries[0].client_id, info.value.entries[0].src_id) == (10, 0)
  assert (info.value.address, info.value.vmid, info.value.write) == (dev.gmc.GART_SIZE - 4096 * 2, 0, True)
  assert info.value.kind == "page not present"


def test_unsupported_pci_id(fw_dir):
  card = SimCard("navi31", fw_dir)
  card.config_read = lambda offset, size: {0: 0x1002, 2: 0x73BF}.get(offset, 0)
  with pytest.raises(UnsupportedDevice, match="1002:73bf.*1002:744c"):
    AMDevice(card, fw_dir)
