"""Fixtures for the qcomdrv hardware tests: they skip cleanly, with the reason, unless /dev/kgsl-3d0 exists and
reports a chip qcomdrv supports (checked through the kgsl ioctls themselves, never through vendor libraries)."""
from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(items):
  for item in items:
    item.add_marker(pytest.mark.hw)


@pytest.fixture(scope="session")
def dev():
  from qcomdrv.chips import UnsupportedChip
  from qcomdrv.device import QCOMDevice
  from qcomdrv.osif import DEVICE_PATH
  if os.environ.get("QCOM_SIM"):
    pytest.skip("QCOM_SIM is set: these tests are for real hardware (tests/test_qcom_*.py cover the simulator)")
  if not os.path.exists(DEVICE_PATH):
    pytest.skip(f"no {DEVICE_PATH}: not a Qualcomm device with the kgsl driver")
  try:
    device = QCOMDevice(timeout_ms=5000)
  except UnsupportedChip as e:
    pytest.skip(str(e))
  except PermissionError as e:
    pytest.skip(f"cannot open {DEVICE_PATH}: {e} (add the user to the video/graphics group)")
  yield device
  device.close()


@pytest.fixture(scope="session")
def compiler(dev):
  """The device's OpenCL compiler through qcomdrv's seam; skips with the seam's reason where it cannot be used."""
  from qcomdrv.compile import CompilerUnavailable
  try:
    compiler = dev.os.opencl_compiler()
    compiler.compile("__kernel void probe(__global int* out) { out[0] = 1; }", "probe")
  except CompilerUnavailable as e:
    pytest.skip(f"no usable kernel compiler: {e}")
  return compiler
