"""The KFD path (am/kfd) against the simulated /dev/kfd (am/simcard/kfd.py) on Navi31 (gfx1100) and Navi48 (gfx1201):
version check, topology, memory, PM4 and kernels on a KFD compute queue through am/queues, events, SDMA, faults.
Needs AM_FIRMWARE_DIR as tests/test_am_queues.py (the simulated card is booted by the AM driver, in amdgpu's place)."""
from __future__ import annotations


import numpy as np
import pytest

from am.errors import AMFault, AMTimeout, UnsupportedDevice
from am.kfd import generated as facts
from am.kfd.device import KfdDevice, KfdError
from am.kfd.queues import KfdComputeQueue, KfdSdmaQueue
from am.kfd.topology import parse_properties
from am.pm4.pm4 import DATA_SEL_64, INT_SEL_AFTER_WRITE_CONFIRM, PM4Stream
from am.queues.dispatch import Buffer, dispatch
from am.queues.kernel import GpuKernel
from am.queues.samples import BLOCK, vector_add_code_object
from am.simcard.kfd import SimKfd

CARDS = {"navi31": "gfx1100", "navi48": "gfx1201"}
CODE_OBJECTS: dict = {}



@pytest.fixture(params=list(CARDS))
def sim(request, fw_dir):
  return SimKfd(request.param, fw_dir)


@pytest.fixture
def dev(sim):
  return KfdDevice(sim)


def vector_add(dev) -> GpuKernel:
  target = dev.caps.gfx_target
  if target not in CODE_OBJECTS:
    CODE_OBJECTS[target] = vector_add_code_object(target)
  return GpuKernel(dev, CODE_OBJECTS[target], "vector_add")


def test_ioctl_words_match_the_header():
  assert facts.IOCTLS["AMDKFD_IOC_GET_VERSION"][0] == 0x80084B01   # _IOR('K', 1, 8 bytes)
  assert facts.IOCTLS["AMDKFD_IOC_CREATE_QUEUE"][0] == 0xC0604B02  # _IOWR('K', 2, 96 bytes)
  assert facts.SIZES["kfd_ioctl_alloc_memory_of_gpu_args"] == 40
  assert facts.SIZES["kfd_event_data"] == 48


def test_version_and_topology(dev, sim):
  assert dev.version == (1, facts.CONSTANTS["KFD_IOCTL_MINOR_VERSION"])
  assert dev.caps.gfx_target == CARDS[sim.card.spec.name]
  assert dev.gpu_id == sim.gpu_id and dev.node.num_cu == sim.card.caps.num_cu
  assert dev.gc.regCOMPUTE_PGM_LO.addr == 0x2E0C    # mesa sid.h R_00B830_COMPUTE_PGM_LO, byte 0xB830


@pytest.mark.parametrize("version", [(2, 0), (1, 3)])
def test_unknown_version_refused(fw_dir, version):
  with pytest.raises(UnsupportedDevice, match=f"version {version[0]}.{version[1]}"):
    KfdDevice(SimKfd("navi31", fw_dir, version=version))


def test_topology_parse_errors():
  assert parse_properties("simd_count 192\ngfx_target_version 110000\n", "p") == {"simd_count": 192,
                                                                                  "gfx_target_version": 110000}
  with pytest.raises(UnsupportedDevice, match="line 1"):
    parse_properties("simd_count lots\n", "p")


def test_memory_alloc_map_free_and_errors(dev, sim):
  buf = dev.gmc.alloc(8192, kind="vram")
  dev.vram.write(buf.gart + 4096, b"\x01\x02\x03\x04")
  assert dev.vram.read32(buf.gart + 4096) == 0x04030201
  with pytest.raises(KfdError, match="EBUSY"):      # still mapped
    dev.ioctl("AMDKFD_IOC_FREE_MEMORY_OF_GPU", handle=buf.handle)
  dev.gmc.free(buf)
  with pytest.raises(KfdError, match="EINVAL"):     # freed handle
    dev.ioctl("AMDKFD_IOC_FREE_MEMORY_OF_GPU", handle=buf.handle)
  with pytest.raises(KfdError, match="ENOMEM.*0x40000000 bytes"):
    dev.gmc.alloc(1 << 30, kind="vram")
  with pytest.raises(KfdError, match="EINVAL"):      # two memory types
    dev.ioctl("AMDKFD_IOC_ALLOC_MEMORY_OF_GPU", va_addr=0x7100_0000_0000, size=4096, gpu_id=dev.gpu_id,
              flags=facts.CONSTANTS["KFD_IOC_ALLOC_MEM_FLAGS_VRAM"] | facts.CONSTANTS["KFD_IOC_ALLOC_MEM_FLAGS_GTT"])
  with pytest.raises(KfdError, match="EINVAL"):
    dev.ioctl("AMDKFD_IOC_ALLOC_MEMORY_OF_GPU", va_addr=0x7100_0000_0000, size=4096, gpu_id=0x1234,
              flags=facts.CONSTANTS["KFD_IOC_ALLOC_MEM_FLAGS_VRAM"])
  with pytest.raises(ValueError, match="positive"):
    dev.gmc.alloc(0)
  assert any("gpu_id 0x1234 unknown" in line for line in sim.log)


def test_process_vm_is_a_page_table_the_card_walks(dev, sim):
  """MAP_MEMORY_TO_GPU writes VMID 8's 4-level page table in VRAM (am.ip.vm.GpuVm of the driver playing amdgpu), which
  the card's GC hub walks; UNMAP clears the PTE and flushes, so the address faults again."""
  buf = dev.gmc.alloc(8192, kind="vram")
  bo = next(b for b in sim.bos.values() if b.va == buf.gart)
  walk = sim.vm.walk(buf.gart + 4096)
  assert sim.vm.vmid == 8 and [level[10:] for level, _, _ in walk] == ["PDB2", "PDB1", "PDB0", "PTB"]
  # VALID 1 | EXECUTABLE 0x10 | READABLE 0x20 | WRITEABLE 0x40 (amdgpu_vm.h): KfdMemory asks EXECUTABLE | WRITABLE
  assert walk[-1][2] == sim.amdgpu.gmc.pa(bo.vram + 4096) | 0x71
  assert sim.card.gmc.lookup(buf.gart + 4100, write=True, vmid=8)[0] == bo.vram + 4100
  dev.gmc.unmap(buf)
  assert sim.vm.walk(buf.gart + 4096)[-1][2] == 0
  assert sim.card.gmc.lookup(buf.gart + 4100, vmid=8)[0] is None


def test_queue_buffers_checked(dev):
  ring = dev.gmc.alloc(8192)
  with pytest.raises(KfdError, match="EINVAL"):    # the pointers are not in mapped buffers
    dev.ioctl("AMDKFD_IOC_CREATE_QUEUE", ring_base_address=ring.gart, ring_size=4096, write_pointer_address=0x1000,
              read_pointer_address=0x1000, gpu_id=dev.gpu_id, queue_type=1, queue_percentage=100)
  with pytest.raises(KfdError, match="ENOTSUPP|524|Unknown"):
    dev.ioctl("AMDKFD_IOC_CREATE_QUEUE", ring_base_address=ring.gart, ring_size=4096, gpu_id=dev.gpu_id,
              queue_type=9, queue_percentage=100)
  with pytest.raises(KfdError, match="EINVAL"):
    dev.ioctl("AMDKFD_IOC_CREATE_QUEUE", ring_base_address=ring.gart, ring_size=3000, gpu_id=dev.gpu_id,
              queue_percentage=100)


def test_scratch_write_through_a_kfd_compute_queue(dev):
  queue = KfdComputeQueue(dev)
  buf = dev.gmc.alloc(4096)
  queue.wait(queue.exec(PM4Stream(dev.caps.gfx_generation).write_data(buf.gart + 16, 0xDEADBEEF, 0x12345678)))
  assert dev.vram.read64(buf.gart + 16) == 0x12345678_DEADBEEF
  start, end = queue.signal.timestamps()
  assert 0 < start < end
  with pytest.raises(KfdError, match="EBUSY"):      # the ring is a queue's buffer
    dev.gmc.unmap(queue.ring)
  queue.unmap()


def test_vector_add_through_kfd(dev):
  n = 4 * BLOCK
  rng = np.random.default_rng(7)
  a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
  queue = KfdComputeQueue(dev)
  bufs = [Buffer(dev, 4 * n).write(a), Buffer(dev, 4 * n).write(b), Buffer(dev, 4 * n)]
  queue.wait(dispatch(queue, vector_add(dev), [x.va for x in bufs], grid=(n // BLOCK,), block=(BLOCK,)))
  np.testing.assert_array_equal(bufs[2].read(np.float32, n), a + b)


def test_event_signal_and_timeout(dev):
  queue = KfdComputeQueue(dev)
  event = dev.events.create()
  s = PM4Stream(dev.caps.gfx_generation)
  s.release_mem(event.slot_va, 1, data_sel=DATA_SEL_64, int_sel=INT_SEL_AFTER_WRITE_CONFIRM, int_ctxid=event.id)
  queue.submit(s)
  dev.events.wait(event, timeout_ms=100)
  with pytest.raises(AMTimeout, match=f"event {event.id}.*not signalled within 20 ms"):
    dev.events.wait(event, timeout_ms=20)           # auto-reset: consumed by the first wait
  dev.events.destroy(event)
  with pytest.raises(KfdError, match="EINVAL"):
    dev.events.wait(event, timeout_ms=0)


def test_sdma_copy(dev):
  n = 3000
  src = np.random.default_rng(3).integers(0, 2**32, n, dtype=np.uint32)
  a, b = Buffer(dev, 4 * n).write(src), Buffer(dev, 4 * n)
  queue = KfdSdmaQueue(dev)
  queue.wait(queue.copy(b.va, a.va, 4 * n))
  np.testing.assert_array_equal(b.read(np.uint32, n), src)
  assert queue.rptr() == queue.wptr


def test_faulting_kernel_reported(dev, sim):
  n = 2 * BLOCK
  queue = KfdComputeQueue(dev)
  a, b = Buffer(dev, 4 * n), Buffer(dev, 4 * n)
  bad = 0x6000_0000_0000                           # never allocated: not in the process VM
  value = dispatch(queue, vector_add(dev), [a.va, b.va, bad], grid=(n // BLOCK,), block=(BLOCK,))
  with pytest.raises(AMFault, match="GPU memory fault at 0x6000") as e:
    queue.wait(value, timeout_s=1)
  assert e.value.address == bad
  assert any("evicted" in line for line in sim.log)
