"""Issue 6's bad-input rules for taking a card (am/mmio/claim.py), through the PciFunction seam: one driver instance
per card (an flock per BDF, refused at once with the holder's PID, released by fini/close and by the holder's exit),
and a card that drives a display refused unless allow_display. The simulated card answers the sysfs files; one test
reads a sysfs-shaped directory through SysfsPciFunction itself."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from am.device import AMDevice
from am.errors import DeviceBusy, DisplayInUse, UnsupportedDevice
from am.mmio import pci as pci_module
from am.mmio.claim import display_use, lock_path
from am.mmio.pci import SysfsPciFunction
from am.simcard.card import SimCard

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLDER = """
import sys
from am.device import AMDevice
from am.simcard.card import SimCard
dev = AMDevice(SimCard("navi31", sys.argv[1], lock_dir=sys.argv[2]), sys.argv[1])
print("taken", flush=True)
sys.stdin.read()
"""


def test_second_taker_in_this_process_is_refused_until_close(fw_dir, tmp_path):
  first = AMDevice(SimCard("navi31", fw_dir, lock_dir=str(tmp_path)), fw_dir)
  with open(lock_path(str(tmp_path), "sim-navi31")) as f:
    assert f.read().strip() == str(os.getpid())
  same_card = SimCard("navi31", fw_dir, lock_dir=str(tmp_path))
  with pytest.raises(DeviceBusy, match=rf"sim-navi31 is already taken by PID {os.getpid()} \(this process") as info:
    AMDevice(same_card, fw_dir)
  assert "does not wait" in str(info.value) and str(tmp_path) in str(info.value)
  first.close()
  second = AMDevice(same_card, fw_dir)
  assert second.lock.held
  second.close()
  second.close()   # idempotent
  assert not second.lock.held


def test_lock_released_by_fini_after_boot(fw_dir, tmp_path):
  card = SimCard("navi48", fw_dir, lock_dir=str(tmp_path))
  dev = AMDevice(card, fw_dir)
  dev.boot()
  with pytest.raises(DeviceBusy, match="sim-navi48"):
    AMDevice(card, fw_dir)
  dev.fini()
  AMDevice(card, fw_dir).close()


def test_other_cards_and_default_lock_dirs_are_independent(fw_dir):
  # two SimCard objects without a shared lock_dir are two cards
  a = AMDevice(SimCard("navi31", fw_dir), fw_dir)
  b = AMDevice(SimCard("navi31", fw_dir), fw_dir)
  a.close()
  b.close()


def test_second_taker_in_another_process_is_refused_with_its_pid(fw_dir, tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT)
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, fw_dir, str(tmp_path)], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "taken", holder.stderr.read()
    card = SimCard("navi31", fw_dir, lock_dir=str(tmp_path))
    with pytest.raises(DeviceBusy, match=rf"sim-navi31 is already taken by PID {holder.pid} \(python"):
      AMDevice(card, fw_dir)
  finally:
    holder.stdin.close()
    holder.wait(timeout=10)
  # the kernel dropped the holder's lock at its exit
  AMDevice(card, fw_dir).close()


@pytest.mark.parametrize("files, found", [
  ({"boot_vga": "1\n"}, "boot_vga = 1"),
  ({"drm/card1/card1-DP-2/status": "connected\n", "drm/card1/card1-HDMI-A-1/status": "disconnected\n"},
   "connector card1-DP-2 connected"),
])
def test_display_driving_card_is_refused_unless_allowed(fw_dir, tmp_path, files, found):
  card = SimCard("navi48", fw_dir, lock_dir=str(tmp_path))
  card.sysfs.update(files)
  with pytest.raises(DisplayInUse, match=f"sim-navi48 drives a display: {found}") as info:
    AMDevice(card, fw_dir)
  assert "allow_display=True" in str(info.value) and "--allow-display" in str(info.value)
  assert "HDMI" not in str(info.value)
  # the refusal left nothing held: the same card is taken with the override
  dev = AMDevice(card, fw_dir, allow_display=True)
  assert dev.lock.held
  dev.close()


def test_simulated_card_drives_no_display_by_default(fw_dir):
  card = SimCard("navi31", fw_dir)
  assert card.sysfs_read("boot_vga") == "0\n"
  assert display_use(card) == []


def test_sysfs_function_reads_boot_vga_and_connectors(tmp_path, monkeypatch):
  # a directory shaped as /sys/bus/pci/devices/<BDF> (drivers/pci/pci-sysfs.c, drm_sysfs.c)
  bdf = "0000:03:00.0"
  function = tmp_path / bdf
  (function / "drm" / "card0" / "card0-DP-1").mkdir(parents=True)
  (function / "drm" / "card0" / "card0-DP-1" / "status").write_text("connected\n")
  (function / "boot_vga").write_text("0\n")
  monkeypatch.setattr(pci_module, "SYSFS", str(tmp_path))
  pci = SysfsPciFunction(bdf, lock_dir=str(tmp_path))
  assert display_use(pci) == ["connector card0-DP-1 connected (drm/card0/card0-DP-1/status)"]
  (function / "drm" / "card0" / "card0-DP-1" / "status").write_text("disconnected\n")
  (function / "boot_vga").write_text("1\n")
  assert display_use(pci) == ["boot_vga = 1 (the firmware's boot display)"]


def fake_function(tmp_path, monkeypatch, driver: str | None = None):
  """A directory shaped as /sys/bus/pci/devices/<BDF> (drivers/pci/pci-sysfs.c), with `driver` bound if given."""
  bdf = "0000:03:00.0"
  function = tmp_path / "devices" / bdf
  function.mkdir(parents=True)
  (function / "enable").write_text("0\n")
  if driver:
    bound = tmp_path / "drivers" / driver
    bound.mkdir(parents=True)
    (bound / "unbind").write_text("")
    (function / "driver").symlink_to(bound)
  monkeypatch.setattr(pci_module, "SYSFS", str(tmp_path / "devices"))
  return bdf, function


def test_card_bound_to_amdgpu_is_refused_unless_unbind(tmp_path, monkeypatch):
  bdf, function = fake_function(tmp_path, monkeypatch, driver="amdgpu")
  with pytest.raises(DeviceBusy, match=r"0000:03:00.0 is bound to amdgpu; pass --unbind \(or unbind=True\)"):
    SysfsPciFunction(bdf, lock_dir=str(tmp_path)).enable()
  assert (tmp_path / "drivers" / "amdgpu" / "unbind").read_text() == ""
  assert (function / "enable").read_text() == "0\n"   # nothing touched
  SysfsPciFunction(bdf, unbind=True, lock_dir=str(tmp_path)).enable()
  assert (tmp_path / "drivers" / "amdgpu" / "unbind").read_text() == bdf
  assert (function / "enable").read_text() == "1"


def test_sysfs_bar_resize_writes_the_smallest_fitting_size(tmp_path, monkeypatch):
  # sysfs-bus-pci resourceN_resize: reads as a hex bitmap (bit n = 2**n MiB), takes the bit number
  bdf, function = fake_function(tmp_path, monkeypatch)
  with open(function / "resource0", "wb") as f:
    f.truncate(256 << 20)
  (function / "resource0_resize").write_text("0000000000007f00\n")   # 256 MiB .. 16 GiB
  pci = SysfsPciFunction(bdf, lock_dir=str(tmp_path))
  pci.resize_bar(0, 3 << 30)                                        # 3 GiB of VRAM -> 4 GiB (bit 12)
  assert (function / "resource0_resize").read_text() == "12\n"
  (function / "resource0_resize").write_text("0000000000000300\n")   # 256 and 512 MiB only
  with pytest.raises(UnsupportedDevice, match="VRAM is 1024 MiB but BAR 0 of 0000:03:00.0 maps 256 MiB; "
                                              "resource0_resize offers 256 MiB, 512 MiB, none large enough"):
    pci.resize_bar(0, 1 << 30)
  (function / "resource0_resize").unlink()
  with pytest.raises(UnsupportedDevice, match="no resource0_resize in sysfs.*Re-Size BAR Support"):
    pci.resize_bar(0, 1 << 30)


def test_sysfs_dma_memory_behind_a_translating_iommu_is_refused(tmp_path, monkeypatch):
  bdf, function = fake_function(tmp_path, monkeypatch)
  (function / "iommu_group").mkdir()
  (function / "iommu_group" / "type").write_text("DMA-FQ\n")
  with pytest.raises(UnsupportedDevice, match="behind an IOMMU in 'DMA-FQ' mode.*iommu=pt"):
    SysfsPciFunction(bdf, lock_dir=str(tmp_path)).alloc_dma(4096)


def test_sysfs_dma_memory_has_the_page_frames_as_bus_addresses(tmp_path, monkeypatch):
  # locked anonymous pages, their frame numbers from /proc/self/pagemap (Documentation/admin-guide/mm/pagemap.rst):
  # the bus addresses where no IOMMU translates (iommu_group/type identity, as here: none)
  bdf, function = fake_function(tmp_path, monkeypatch)
  try:
    buf = SysfsPciFunction(bdf, lock_dir=str(tmp_path)).alloc_dma(3 * 4096 - 100)
  except UnsupportedDevice as e:   # not root, or RLIMIT_MEMLOCK too small: what the error says to fix
    pytest.skip(str(e))
  assert len(buf.bus_addresses) == 3 and len(set(buf.bus_addresses)) == 3
  assert all(a and a % 4096 == 0 for a in buf.bus_addresses)
  assert buf.read(0, 3 * 4096) == bytes(3 * 4096)
  buf.write32(8192, 0xC0FFEE)
  assert buf.read32(8192) == 0xC0FFEE
