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


def booted(device):
  if not device.blocks:
    pytest.skip("bring-up did not complete")
  return device


def test_scratch_register_through_the_ring(device):
  from am.pm4.pm4 import PM4Stream
  dev = booted(device)
  s = PM4Stream(dev.caps.gfx_generation).set_uconfig_reg(dev.gc.regSCRATCH_REG0, 0xDEADBEEF)
  dev.gfx.queue.wait(dev.gfx.queue.exec(s), timeout_s=2)
  assert dev.gc.regSCRATCH_REG0.read() == 0xDEADBEEF


def test_indirect_buffer_and_fence_timestamps(device):
  import numpy as np

  from am.queues.dispatch import Buffer, CommandBuffer
  dev = booted(device)
  out = Buffer(dev, 16)
  cb = CommandBuffer(dev)
  cb.stream.write_data(out.va, 0x1234, name="value")
  queue = dev.gfx.queue
  queue.wait(cb.submit(queue), timeout_s=2)
  start, end = queue.signal.timestamps()
  cb.patch("value", 0x5678)
  queue.wait(cb.submit(queue), timeout_s=2)
  assert out.read(np.uint32, 1)[0] == 0x5678
  assert 0 < start <= end <= queue.signal.timestamps()[0]


def test_sdma_copy(device):
  import numpy as np

  from am.queues.dispatch import Buffer
  dev = booted(device)
  data = np.random.default_rng().integers(0, 2**32, 1024, dtype=np.uint32)
  src, dst = Buffer(dev, data.nbytes).write(data), Buffer(dev, data.nbytes)
  q = dev.sdma.queue
  q.wait(q.copy(dst.va, src.va, data.nbytes), timeout_s=2)
  assert np.array_equal(dst.read(np.uint32, data.size), data)


def test_kernel_dispatch(device):
  from am.queues.samples import run_vector_add
  dev = booted(device)
  assert "matches numpy" in run_vector_add(dev, 4096)[0]


def test_fault_then_recovery(device):
  from am.errors import AMFault
  from am.queues.dispatch import Buffer, dispatch
  from am.queues.kernel import GpuKernel
  from am.queues.samples import vector_add_code_object
  dev = booted(device)
  kern = GpuKernel(dev, vector_add_code_object(dev.caps.gfx_target), "vector_add")
  a = Buffer(dev, 256)
  queue = dev.gfx.queue
  with pytest.raises(AMFault):
    queue.wait(dispatch(queue, kern, [a.va, a.va, 0x40003000], (1,), (64,)), timeout_s=2)
  queue.reset()
  test_scratch_register_through_the_ring(device)


def test_kernel_on_a_user_vmid(device):
  from am.queues.samples import run_vector_add_vm
  dev = booted(device)
  assert "matches numpy" in run_vector_add_vm(dev)[1]


def test_system_pages_on_a_user_vmid(device):
  import numpy as np

  from am.errors import UnsupportedDevice
  from am.ip.soc import DOORBELL_MEC_RING0
  from am.queues.dispatch import dispatch
  from am.queues.kernel import GpuKernel
  from am.queues.samples import BLOCK, VM_SAMPLE_VA, vector_add_code_object
  dev = booted(device)
  try:
    host = dev.pci.alloc_dma(3 * 4096)
  except UnsupportedDevice as e:
    pytest.skip(str(e))
  n = 4 * BLOCK
  a, b = np.random.default_rng().standard_normal((2, n)).astype(np.float32)
  host.write(0, a.tobytes())
  host.write(4096, b.tobytes())
  vm = dev.gmc.create_vm()
  try:
    queue = vm.queue(pipe=0, queue=1, doorbell=DOORBELL_MEC_RING0 + 1)
    vm.map(VM_SAMPLE_VA, 3 * 4096, dma=host)
    kern = GpuKernel(vm.device, vector_add_code_object(dev.caps.gfx_target), "vector_add")
    vas = [VM_SAMPLE_VA, VM_SAMPLE_VA + 4096, VM_SAMPLE_VA + 8192]
    queue.wait(dispatch(queue, kern, vas, (n // BLOCK,), (BLOCK,)), timeout_s=2)
    assert np.array_equal(np.frombuffer(host.read(8192, 4 * n), np.float32), a + b)
    queue.unmap()
  finally:
    vm.destroy()


def test_hung_kernel_detected_and_queue_recovered(device):
  from am.queues.samples import hang_and_recover
  dev = booted(device)
  assert "matches numpy" in hang_and_recover(dev, timeout_s=1.0)[1]


def test_teardown_leaves_the_card_bootable(device):
  # last stage: fini (queues unmapped, engines halted, PSP rings destroyed, lock released), then a second driver
  # instance boots the card again; its sOS stays alive, so the bootloader stages are skipped
  import os

  from am.device import AMDevice
  dev = booted(device)
  dev.fini()
  again = AMDevice(dev.pci, allow_display=os.environ.get("AM_ALLOW_DISPLAY") == "1")
  try:
    reports = again.boot()
    assert any("bootloader stages skipped" in line for line in reports[4].verified)
    assert again.gfx.ring_test(0x600DB007) == 0x600DB007
  finally:
    again.close()
