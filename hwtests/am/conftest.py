"""Staged AM smoke tests on a real RX 7900 XTX (Navi31) or RX 9070 XT (Navi48), run only when named:

  AM_PCI=0000:03:00.0 AM_UNBIND=1 python -m pytest hwtests/am -q

Needs root (sysfs resource mmaps), the card not driving a display (AM_ALLOW_DISPLAY=1 takes one anyway), BAR 0
covering VRAM or resizable to it (the driver resizes it through resource0_resize; Resizable BAR on in the firmware
setup), and the firmware of firmware-amd-graphics (AM_FIRMWARE_DIR or /lib/firmware/amdgpu). Every test
skips cleanly unless an AMD function with a supported device id is present; stages run in order and each bounded poll
times out with an AMTimeout."""
from __future__ import annotations

import os

import pytest

from am.device import SUPPORTED_IDS


def find_card() -> str | None:
  from am.mmio.pci import SYSFS, amd_functions
  wanted = os.environ.get("AM_PCI")
  for bdf in ([wanted] if wanted else amd_functions()):
    try:
      with open(os.path.join(SYSFS, bdf, "device")) as f:
        if int(f.read(), 16) in SUPPORTED_IDS:
          return bdf
    except OSError:
      continue
  return None


@pytest.fixture(scope="session")
def device():
  bdf = find_card()
  if bdf is None:
    pytest.skip(f"no supported AMD card ({', '.join(f'1002:{d:04x}' for d in SUPPORTED_IDS)}) in sysfs")
  if os.geteuid() != 0:
    pytest.skip("mapping PCI BARs through sysfs needs root")
  from am.device import AMDevice
  from am.mmio.pci import SysfsPciFunction
  pci = SysfsPciFunction(bdf, unbind=os.environ.get("AM_UNBIND") == "1")
  dev = AMDevice(pci, allow_display=os.environ.get("AM_ALLOW_DISPLAY") == "1")
  yield dev
  dev.close()
  pci.close()
