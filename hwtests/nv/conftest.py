"""Fixtures for the nvdrv hardware tests: they skip cleanly, with the reason, unless an NVIDIA GPU with a driver
branch nvdrv supports is present (checked through /dev/nvidiactl, never through libcuda)."""
from __future__ import annotations

import os

import pytest

from hwtests.nv import kernels


def pytest_collection_modifyitems(items):
  for item in items:
    item.add_marker(pytest.mark.hw)


@pytest.fixture(scope="session")
def dev():
  if not os.path.exists("/dev/nvidiactl"):
    pytest.skip("no /dev/nvidiactl: no NVIDIA kernel module on this machine")
  from nvdrv.device import NVDevice
  device = NVDevice()
  if not device.info.tested:
    pytest.skip(f"{device.describe()}: only Hopper is tested by this suite")
  yield device


@pytest.fixture(scope="module")
def nv(dev):
  """The frontend's device name for the GPU, once the frontend's NV runtime can open it (else a skip saying why)."""
  from frontend.device import Device
  ok, why = Device.available("NV")
  if not ok:
    pytest.skip(why)
  return "NV"


@pytest.fixture(scope="session")
def programs(dev):
  from nvdrv.compile import compile_ptx
  from nvdrv.program import Program
  out = {}
  for name, src in (("saxpy", kernels.SAXPY), ("increment", kernels.INCREMENT), ("load_from", kernels.LOAD_FROM),
                    ("local_array", kernels.LOCAL_ARRAY), ("reverse_shared", kernels.REVERSE_SHARED)):
    out[name] = Program(dev, compile_ptx(src), name)
  return out
