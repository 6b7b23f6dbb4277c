"""nvdrv.replay.CommandBuffer without a GPU: what a prebuilt buffer hands the GPU, read back from the stand-in
device memory of tests/test_nv_launch.py and decoded with nvdrv.qmd's reader and nvdrv.pushbuf.decode.

In dep mode every QMD is sent up front and each grid but the first waits on a dependence counter that the grid before
it decrements; the memory barrier at the end of each inner grid is GPU-scope, the last grid keeps the system-scope one
and releases the timeline itself. A wrong pointer or field here would hang or race on the hardware."""
from __future__ import annotations

import struct
from array import array

import pytest

from nvdrv.program import Program
from nvdrv.pushbuf import decode
from nvdrv.qmd import Qmd
from nvdrv.replay import CommandBuffer
from tests.test_nv_launch import HostDevice, cubin  # noqa: F401  (cubin: the saxpy fixture)


@pytest.fixture
def dev():
  device = HostDevice("V04_00")
  device.mem.alloc_host = lambda size: device._host(size)
  yield device
  device.close()


def qmd_at(dev, address: int) -> Qmd:
  q = Qmd("V04_00")
  q.words = array("I", dev.read(address, q.nbytes))
  return q


def pushed_qmds(dev, cb) -> list[int]:
  words = struct.unpack(f"<{len(cb.pb)}I", dev.read(cb.pb_address, 4 * len(cb.pb)))
  return [int(line.split()[-1], 0) << 8 for line in decode(list(words)) if "SEND_PCAS_A" in line]


@pytest.mark.parametrize("inner", [3, 1, 0])
def test_dep_mode_links_every_grid_to_the_next(cubin, dev, inner):  # noqa: F811
  saxpy = Program(dev, cubin, "saxpy")
  x, y = dev._host(4096), dev._host(4096)
  cb = CommandBuffer(dev, mode="dep", inner_membar=inner)
  for i in range(4):
    cb.launch(saxpy, x, y, float(i), 100 + i, grid=(2, 1, 1), block=(64, 1, 1))
  cb.finalize()
  addresses = pushed_qmds(dev, cb)
  assert len(addresses) == 4, "dep mode sends every QMD up front"
  qmds = [qmd_at(dev, a) for a in addresses]
  for i, q in enumerate(qmds):
    assert q.get("DEPENDENCE_COUNTER") == (1 if i else 0)
    cbuf = ((q.get("CONSTANT_BUFFER_ADDR_UPPER_SHIFTED6(0)") << 32) | q.get("CONSTANT_BUFFER_ADDR_LOWER_SHIFTED6(0)"))
    params = dev.read((cbuf << 6) + saxpy.kernel.param_base, saxpy.kernel.param_size)
    assert params == saxpy.pack_args((x, y, float(i), 100 + i))
    if i + 1 < len(qmds):
      assert q.get("DEPENDENT_QMD_ENABLE(0)") == 1 and q.get("DEPENDENT_QMD0_ACTION") == 4  # DECREMENT_DEPENDENCE
      assert q.get("DEPENDENT_QMD0_POINTER") << 8 == addresses[i + 1]
      assert q.get("CWD_MEMBAR_TYPE") == inner
      assert q.get("RELEASE_ENABLE(0)") == 0
    else:
      assert q.get("DEPENDENT_QMD_ENABLE(0)") == 0
      assert q.get("CWD_MEMBAR_TYPE") == dev.cwd_membar == 1, "the last grid keeps the system-scope membar"
      assert q.get("RELEASE_ENABLE(0)") == 1 and q.get("RELEASE_MEMBAR_TYPE(0)") == 1  # FE_SYSMEMBAR
      sem = (q.get("RELEASE_SEMAPHORE0_ADDR_UPPER") << 32) | q.get("RELEASE_SEMAPHORE0_ADDR_LOWER")
      assert sem == dev.compute.semaphore


def test_submit_patches_the_release_payload_and_set_arg_the_constant_bank(cubin, dev):  # noqa: F811
  saxpy = Program(dev, cubin, "saxpy")
  x, y, z = dev._host(4096), dev._host(4096), dev._host(4096)
  cb = CommandBuffer(dev, mode="dep")
  for i in range(3):
    cb.launch(saxpy, x, y, 1.0, 10, grid=(1, 1, 1), block=(32, 1, 1))
  dev.compute.submit_segment = lambda address, nwords: None
  dev.compute.wait = lambda value, timeout=10.0: None
  dev.compute.completed = 0
  value = cb.submit()
  last = qmd_at(dev, pushed_qmds(dev, cb)[-1])
  assert last.get("RELEASE_SEMAPHORE0_PAYLOAD_LOWER") == value
  cb.set_arg(1, 1, z)
  value2 = cb.submit()
  assert value2 == value + 1
  qmds = [qmd_at(dev, a) for a in pushed_qmds(dev, cb)]
  assert qmds[-1].get("RELEASE_SEMAPHORE0_PAYLOAD_LOWER") == value2
  for i, q in enumerate(qmds):
    cbuf = ((q.get("CONSTANT_BUFFER_ADDR_UPPER_SHIFTED6(0)") << 32) | q.get("CONSTANT_BUFFER_ADDR_LOWER_SHIFTED6(0)"))
    params = dev.read((cbuf << 6) + saxpy.kernel.param_base, saxpy.kernel.param_size)
    assert params == saxpy.pack_args((x, z if i == 1 else y, 1.0, 10))


def test_bad_inner_membar_is_refused(dev):
  with pytest.raises(ValueError, match="inner_membar 2"):
    CommandBuffer(dev, mode="dep", inner_membar=2)
