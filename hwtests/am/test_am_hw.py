"""Stages: MMIO sentinel (IFWI-done bit, VRAM size, discovery table) -> full bring-up -> ring write through the
compute queue -> fence. See conftest.py for how to run; every test skips without a matching card."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.hw


def test_mmio_sentinel_and_discovery(device):
  lines = device.discover()
  assert device.caps.asic in ("navi31", "navi48")
  assert device.vram_size > 0 and lines


def test_bringup(device):
  reports = device.boot()
  assert [r.name for r in reports][-1] == "sdma"


def test_ring_write_and_fence(device):
  if not device.blocks:
    pytest.skip("bring-up did not complete")
  assert device.gfx.ring_test(0x5A5A1234) == 0x5A5A1234
