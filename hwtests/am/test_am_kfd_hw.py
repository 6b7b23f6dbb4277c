"""The KFD path on a real RX 7900 XTX (gfx1100) or RX 9070 XT (gfx1201) driven by amdgpu.ko: the scenarios of
tests/test_am_kfd.py, staged (memory -> PM4 write -> kernel -> event -> SDMA -> fault), each wait bounded.

  python -m pytest hwtests/am/test_am_kfd_hw.py -q

Needs amdgpu loaded with KFD (/dev/kfd), the user in the render group, no root. Skips cleanly without /dev/kfd or
without a supported GPU in the KFD topology. The fault stage runs last: the kernel evicts the process's queues."""
from __future__ import annotations

import os

import numpy as np
import pytest

from am.errors import AMFault, UnsupportedDevice


@pytest.fixture(scope="module")
def kfd():
  if not os.path.exists("/dev/kfd"):
    pytest.skip("no /dev/kfd: amdgpu.ko is not loaded (or KFD is disabled)")
  from am.kfd.device import KfdDevice
  try:
    dev = KfdDevice()
  except UnsupportedDevice as e:
    pytest.skip(str(e))
  yield dev
  dev.close()


@pytest.fixture(scope="module")
def queue(kfd):
  from am.kfd.queues import KfdComputeQueue
  q = KfdComputeQueue(kfd)
  yield q
  q.unmap()


def test_open_and_topology(kfd):
  print("\n".join(kfd.describe()))
  assert kfd.caps.gfx_target in ("gfx1100", "gfx1201")


def test_memory_roundtrip(kfd):
  buf = kfd.gmc.alloc(1 << 20, kind="gtt")
  kfd.vram.write(buf.gart + 4096, b"sovereign")
  assert kfd.vram.read(buf.gart + 4096, 9) == b"sovereign"
  kfd.gmc.free(buf)


def test_pm4_write_through_the_ring(kfd, queue):
  from am.pm4.pm4 import PM4Stream
  buf = kfd.gmc.alloc(4096)
  queue.wait(queue.exec(PM4Stream(kfd.caps.gfx_generation).write_data(buf.gart, 0xDEADBEEF)), timeout_s=2)
  assert kfd.vram.read32(buf.gart) == 0xDEADBEEF
  start, end = queue.signal.timestamps()
  assert 0 < start <= end


def test_vector_add(kfd, queue):
  from am.queues.dispatch import Buffer, dispatch
  from am.queues.kernel import GpuKernel
  from am.queues.samples import BLOCK, vector_add_code_object
  n = 64 * BLOCK
  rng = np.random.default_rng()
  a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
  kern = GpuKernel(kfd, vector_add_code_object(kfd.caps.gfx_target), "vector_add")
  bufs = [Buffer(kfd, 4 * n).write(a), Buffer(kfd, 4 * n).write(b), Buffer(kfd, 4 * n)]
  queue.wait(dispatch(queue, kern, [x.va for x in bufs], grid=(n // BLOCK,), block=(BLOCK,)), timeout_s=5)
  np.testing.assert_array_equal(bufs[2].read(np.float32, n), a + b)


def test_event_signal(kfd, queue):
  from am.pm4.pm4 import DATA_SEL_64, INT_SEL_AFTER_WRITE_CONFIRM, PM4Stream
  event = kfd.events.create()
  s = PM4Stream(kfd.caps.gfx_generation)
  s.release_mem(event.slot_va, 1, data_sel=DATA_SEL_64, int_sel=INT_SEL_AFTER_WRITE_CONFIRM, int_ctxid=event.id)
  queue.submit(s)
  kfd.events.wait(event, timeout_ms=2000)
  kfd.events.destroy(event)


def test_sdma_copy(kfd):
  from am.kfd.queues import KfdSdmaQueue
  from am.queues.dispatch import Buffer
  n = 1 << 16
  src = np.random.default_rng().integers(0, 2**32, n, dtype=np.uint32)
  a, b = Buffer(kfd, 4 * n).write(src), Buffer(kfd, 4 * n)
  q = KfdSdmaQueue(kfd)
  q.wait(q.copy(b.va, a.va, 4 * n), timeout_s=2)
  np.testing.assert_array_equal(b.read(np.uint32, n), src)
  q.destroy()


def test_fault_reported(kfd, queue):
  from am.queues.dispatch import Buffer, dispatch
  from am.queues.kernel import GpuKernel
  from am.queues.samples import BLOCK, vector_add_code_object
  kern = GpuKernel(kfd, vector_add_code_object(kfd.caps.gfx_target), "vector_add")
  a = Buffer(kfd, 4 * BLOCK)
  with pytest.raises(AMFault):
    queue.wait(dispatch(queue, kern, [a.va, a.va, 0x10_0000_0000], grid=(1,), block=(BLOCK,)), timeout_s=5)
