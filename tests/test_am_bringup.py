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
from am.queues.samples import run_vector_add
from am.simcard.card import SimCard

STAGES = ["discover", "soc", "gmc", "ih", "psp", "smu", "gfx", "sdma"]



@pytest.mark.parametrize("name", ["navi31", "navi48"])
def test_boot_and_reboot(fw_dir, name):
  card = SimCard(name, fw_dir)
  dev = AMDevice(card, fw_dir)
  reports = dev.boot()
  assert [r.name for r in reports] == STAGES
  assert any("ring test" in line for line in reports[-2].verified)
  if name == "navi31":   # nbio_v4_3's S2A doorbell entries lie past the register BAR: reached through RSMU index/data
    assert "past the register BAR: RSMU index/data" in reports[1].verified[1]
    entry = dev.nbio.regS2A_DOORBELL_ENTRY_2_CTRL
    assert entry.byte_offset >= card.bar_size(5) and card.regs.raw.read32(entry.byte_offset) == entry.read() != 0
  assert dev.gfx.ring_test(0x12345678) == 0x12345678
  # clocks: the DPM range read by PPCLK_e id (smu13/14 driver_if headers); a clock without DPM is refused
  assert dev.smu.dpm_mhz["GFXCLK"] == (500, {"navi31": 2500, "navi48": 2970}[name])
  refused = r"SMU refused PPSMC_MSG_GetMaxDpmFreq\(0x[ca]0000\): PPSMC_Result_Failed"
  with pytest.raises(FirmwareLoadError, match=refused):
    dev.smu.send("GetMaxDpmFreq", dev.smu.clocks["PPCLK_DTBCLK"] << 16)
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
  dev = AMDevice(card, str(tmp_path))
  with pytest.raises(FirmwareLoadError, match="PSP refused GFX_CMD_ID_LOAD_IP_FW GFX_FW_TYPE_RLC_G") as info:
    dev.boot()
  assert any("RLC_G: image signature check failed" in line for line in card.log)
  # nothing stays half-initialised: the stages begun (psp, ih, gmc, soc) were torn down, in reverse
  assert "AM tore down the stages it had begun (psp, ih, gmc, soc)" in "".join(info.value.__notes__)
  assert dev.blocks == [] and "psp: rings destroyed" in card.log
  assert card.blocks["OSSSYS"].regIH_RB_CNTL.read_fields()["RB_ENABLE"] == 0
  assert card.gc.regGCVM_CONTEXT0_CNTL.read_fields()["ENABLE_CONTEXT"] == 0
  assert card.nbio.regRCC_DEV0_EPF0_RCC_DOORBELL_APER_EN.read_fields()["BIF_DOORBELL_APER_EN"] == 0
  dev.close()
  # ... and the card boots again with the right firmware (its sOS alive: the bootloader is skipped)
  good = AMDevice(card, fw_dir)
  assert [r.name for r in good.boot()] == STAGES and good.gfx.ring_test(0x600D) == 0x600D
  good.close()


@pytest.mark.parametrize("name", ["navi31", "navi48"])
def test_card_left_running_without_teardown_is_reinitialised(fw_dir, name):
  # an earlier AM run that died without fini (its lock went with the process): queues active, engines running,
  # the IH ring holding an old fault. The next run takes the card over, dequeuing the active HQD first
  # (gfx_v11_0_kiq_init_register), and sees no stale IH entry.
  card = SimCard(name, fw_dir)
  first = AMDevice(card, fw_dir)
  first.boot()
  s = PM4Stream(first.caps.gfx_generation).write_data(first.gmc.GART_SIZE - 4096 * 2, 1)   # an unmapped GART page
  first.gfx.queue.submit(s)
  assert first.ih.faults()
  first.lock.release()    # the process is gone; nothing was torn down
  second = AMDevice(card, fw_dir)
  reports = second.boot()
  assert [r.name for r in reports] == STAGES
  assert "after dequeuing the queue left active there" in reports[6].verified[1]
  assert any("dequeued (DRAIN_PIPE)" in line for line in card.log)
  assert run_vector_add(second, 128)[0].startswith("vector_add on 128 float32: matches numpy")
  # the re-initialised IH ring starts empty: a new fault is the first and only entry the driver reads
  second.gfx.queue.submit(PM4Stream(second.caps.gfx_generation).write_data(second.gmc.GART_SIZE - 4096 * 2, 1))
  assert len(second.ih.faults()) == 1 and second.ih.events == []
  second.close()


def test_small_vram_bar_is_resized(fw_dir):
  # amdgpu_device_resize_fb_bar: BAR 0 grown (resource0_resize) to the smallest offered size that covers VRAM
  card = SimCard("navi48", fw_dir, vram_bar=256 << 20)
  dev = AMDevice(card, fw_dir)
  assert dev.vram.size == 256 << 20
  dev.boot()
  assert dev.vram.size == card.spec.vram_size == card.bar_size(0)
  assert "pci: BAR 0 resized to 512 MiB (resource0_resize bit 9)" in card.log
  dev.close()
  small = SimCard("navi31", fw_dir, vram_bar=256 << 20)
  small.sysfs["resource0_resize"] = "0000000000000100\n"    # 256 MiB only
  dev = AMDevice(small, fw_dir)
  with pytest.raises(UnsupportedDevice, match="VRAM is 512 MiB but BAR 0 of sim-navi31 maps 256 MiB; "
                                              "resource0_resize offers 256 MiB, none large enough"):
    dev.boot()
  del small.sysfs["resource0_resize"]
  with pytest.raises(UnsupportedDevice, match="Re-Size BAR Support"):
    dev.discover()
  dev.close()


def test_am_debug_levels_log_stages_submissions_and_packets(fw_dir, monkeypatch, capsys):
  monkeypatch.setenv("AM_DEBUG", "1")
  dev = AMDevice(SimCard("navi31", fw_dir), fw_dir)
  dev.boot()
  err = capsys.readouterr().err
  assert "am: [psp]" in err and "am: [sdma]" in err and "ring test: TIMESTAMP_GET_GLOBAL" in err
  assert "am: compute queue me1 pipe0 queue0 (VMID 0): " in err and "am: SDMA queue: " in err
  assert "am.mmio" not in err and "PACKET3_RELEASE_MEM" not in err
  monkeypatch.setenv("AM_DEBUG", "2")
  dev.gfx.ring_test(0x1234)
  err = capsys.readouterr().err
  assert "PACKET3_WRITE_DATA" in err and "PACKET3_RELEASE_MEM" in err and "am.mmio" not in err
  monkeypatch.setenv("AM_DEBUG", "1")
  dev.close()
  assert "am: sim-navi31 torn down: sdma, gfx, smu, psp, ih, gmc, soc" in capsys.readouterr().err


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
