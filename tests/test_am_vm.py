"""User VMIDs (am/ip/vm.py GpuVm) and hung queues on the simulated Navi31 (gfx1100) and Navi48 (gfx1201): kernels on
a user VMID through the 4-level page table the driver writes and the card's GC hub walks (am/simcard/gpuvm.py), the
entries' bits against the linux-source-6.12 headers, faults decoded with their kind, address, VMID and queue, the
TLB that needs the flush, huge and system pages; a kernel that never ends detected as AMTimeout and its queue
recovered for a correct next dispatch. Needs AM_FIRMWARE_DIR as tests/test_am_bringup.py.

Header values used as literals (drivers/gpu/drm/amd/amdgpu/amdgpu_vm.h unless named): AMDGPU_PTE_VALID 1 << 0,
SYSTEM 1 << 1, SNOOPED 1 << 2, EXECUTABLE 1 << 4, READABLE 1 << 5, WRITEABLE 1 << 6; AMDGPU_PTE_MTYPE_NV10_SHIFT(m)
m << 48 (GFX11), AMDGPU_PTE_MTYPE_GFX12_SHIFT(m) m << 54; AMDGPU_PDE_PTE 1 << 54 (GFX11), AMDGPU_PDE_PTE_GFX12 and
AMDGPU_PTE_IS_PTE 1 << 63; AMDGPU_PTE_PRT 1 << 51, AMDGPU_PTE_PRT_GFX12 1 << 56; AMDGPU_PDE_BFS(a) a << 59,
AMDGPU_PDE_BFS_GFX12(a) (a & 0x1f) << 58; soc21_enum.h / soc24_enum.h MTYPE_NC 0, MTYPE_UC 3; gmc_v11_0.c /
gmc_v12_0.c amdgpu_vm_adjust_size(adev, 256 * 1024, 9, 3, 48).
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from am.errors import AMError, AMFault, AMTimeout
from am.generated.boot import mqd as mqd_facts
from am.ip.pte import FORMATS, geometry
from am.ip.soc import DOORBELL_MEC_RING0
from am.ip.vm import HUGE
from am.queues.compute import DRAIN_PIPE
from am.queues.dispatch import Buffer, dispatch
from am.queues.kernel import GpuKernel
from am.queues.samples import BLOCK, WAITS, spin_code_object, vector_add_code_object
from am.simcard import shader
from tests.test_am_queues import booted_card

CARDS = ["navi31", "navi48"]
@pytest.fixture(params=CARDS)
def dev(request, fw_dir):
  device = booted_card(request.param, fw_dir)
  yield device
  assert device.card.hazards == [], "dispatches without a barrier between them touched the same memory"


CODE_OBJECTS: dict = {}
VALID, SYSTEM, SNOOPED, EXECUTABLE, READABLE, WRITEABLE = 1, 2, 4, 16, 32, 64
HIGH_VA = 0x7FF0_0000_0000           # PDB2 entry 255, near the top of the 47-bit user range




def code_object(target: str, name: str):
  key = (target, name)
  if key not in CODE_OBJECTS:
    CODE_OBJECTS[key] = {"vector_add": vector_add_code_object, "spin": spin_code_object,
                         "count": count_code_object}[name](target)
  return CODE_OBJECTS[key]


def count_code_object(target: str):
  """count(out): one scalar loop of COUNT iterations, then out[0] = COUNT (a finite kernel of ~3 * COUNT steps)."""
  from compiler.rdna import assemble, build_kernel, load_code_object, pointer_arg, write_code_object
  kwait, _ = WAITS[target]
  src = f"""
    s_load_b64 s[4:5], s[0:1], 0x0
    {kwait}
    s_mov_b32 s6, 0
  loop:
    s_add_u32 s6, s6, 1
    s_cmp_lg_u32 s6, {COUNT}
    s_cbranch_scc1 loop
    v_mov_b32 v1, 0
    v_mov_b32 v2, s6
    global_store_b32 v1, v2, s[4:5]
    s_endpgm
  """
  kernel = build_kernel("count", assemble(src, target), target, args=[pointer_arg("out", 0)])
  return load_code_object(write_code_object([kernel], target))


COUNT = 20_000


def kernel(owner, name: str) -> GpuKernel:
  return GpuKernel(owner, code_object(owner.caps.gfx_target, name), name)


def rand(n: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def vram_buffer(dev, data: np.ndarray, align: int = 4096):
  """VRAM with `data`, not mapped anywhere (the test maps it)."""
  mem = dev.gmc.alloc(max(data.nbytes, 4096), align, map_gart=False)
  dev.vram.write(mem.offset, data.tobytes())
  return mem


def run_add(queue, vm, vas, n: int, timeout_s: float = 5.0, kern: GpuKernel | None = None) -> None:
  kern = kern or kernel(vm.device, "vector_add")
  queue.wait(dispatch(queue, kern, vas, grid=(n // BLOCK,), block=(BLOCK,)), timeout_s)


# ---- entry layouts ----
def test_entry_layouts_match_the_headers():
  gfx11, gfx12 = FORMATS["gfx11"], FORMATS["gfx12"]
  page = 0x1234_5678_9000
  rwx = VALID | READABLE | WRITEABLE | EXECUTABLE
  assert gfx11.pte(page, executable=True, mtype="MTYPE_UC") == page | rwx | 3 << 48
  assert gfx12.pte(page, executable=True, mtype="MTYPE_UC", is_pte=True) == page | rwx | 3 << 54 | 1 << 63
  assert gfx11.pte(page, writeable=False) == page | VALID | READABLE                       # MTYPE_NC = 0
  assert gfx11.pte(page, system=True) == page | VALID | READABLE | WRITEABLE | SYSTEM | SNOOPED
  assert gfx11.pte(0x20_0000, huge=True) == 0x20_0000 | VALID | READABLE | WRITEABLE | 1 << 54
  assert gfx12.pte(0x20_0000, huge=True) == 0x20_0000 | VALID | READABLE | WRITEABLE | 1 << 63
  assert gfx11.pde(0x5040) == 0x5040 | VALID and gfx12.pde(0x5040, system=True) == 0x5040 | VALID | SYSTEM
  assert gfx11.decode_pde(3 << 59 | 0x5000 | 1)["bfs"] == 3 and gfx12.decode_pde(3 << 58 | 0x5000 | 1)["bfs"] == 3
  assert gfx11.decode_pte(1 << 51)["prt"] == 1 and gfx12.decode_pte(1 << 56)["prt"] == 1
  decoded = gfx12.decode_pte(gfx12.pte(page, writeable=False, mtype="MTYPE_UC"))
  assert (decoded["address"], decoded["writeable"], decoded["readable"], decoded["mtype"]) == (page, 0, 1, 3)
  with pytest.raises(ValueError, match="aligned"):
    gfx11.pte(0x1234)
  with pytest.raises(ValueError, match="no IS_PTE"):
    gfx11.pte(page, is_pte=True)
  for generation in (11, 12):
    geo = geometry(generation)
    assert (geo.max_pfn, geo.num_level, geo.block_size, geo.shifts) == (1 << 36, 3, 9, (27, 18, 9, 0))


# ---- kernels on a user VMID ----
def test_kernel_on_a_user_vmid_at_a_high_va(dev):
  n = 4 * BLOCK
  vm = dev.gmc.create_vm(3)
  queue = vm.queue(pipe=0, queue=1, doorbell=DOORBELL_MEC_RING0 + 1)
  a, b = rand(n, 1), rand(n, 2)
  mems = [vram_buffer(dev, x) for x in (a, b, np.zeros(n, np.float32))]
  vas = [HIGH_VA + i * (1 << 30) for i in range(3)]                 # three PDB1 entries apart
  for va, mem in zip(vas, mems):
    vm.map(va, mem.size, vram=mem.offset)
  run_add(queue, vm, vas, n)
  np.testing.assert_array_equal(np.frombuffer(dev.vram.read(mems[2].offset, 4 * n), np.float32), a + b)
  gc = dev.gc
  cntl = vm.regs("regGCVM_CONTEXT0_CNTL", "regGCVM_CONTEXT1_CNTL")
  assert cntl.name == "regGCVM_CONTEXT3_CNTL"
  fields = cntl.read_fields()
  assert (fields["ENABLE_CONTEXT"], fields["PAGE_TABLE_DEPTH"], fields["PAGE_TABLE_BLOCK_SIZE"]) == (1, 3, 0)
  base_lo, base_hi = gc.regGCVM_CONTEXT3_PAGE_TABLE_BASE_ADDR_LO32, gc.regGCVM_CONTEXT3_PAGE_TABLE_BASE_ADDR_HI32
  base = base_lo.read() | base_hi.read() << 32
  assert base == dev.gmc.pa(vm.root.offset) | VALID
  assert (gc.regGCVM_CONTEXT3_PAGE_TABLE_END_ADDR_LO32.read(), gc.regGCVM_CONTEXT3_PAGE_TABLE_END_ADDR_HI32.read()) \
      == (0xFFFFFFFF, 0xF)                                           # max_pfn - 1 = 2^36 - 1
  gc.regGRBM_GFX_CNTL.write(MEID=1, PIPEID=0, QUEUEID=1)
  assert gc.regCP_HQD_VMID.read_fields()["VMID"] == 3
  gc.regGRBM_GFX_CNTL.write(0)
  member = mqd_facts.MQD[dev.caps.mqd_struct]["cp_hqd_vmid"]         # v11/v12_compute_mqd.cp_hqd_vmid
  assert dev.vram.read32(queue.mqd.offset + 4 * member) == 3


def test_entries_in_vram_decode_to_the_header_bits(dev):
  vm = dev.gmc.create_vm(6)
  data = vram_buffer(dev, np.zeros(1024, np.uint32))
  code = vram_buffer(dev, np.zeros(1024, np.uint32))
  vm.map(HIGH_VA, 4096, vram=data.offset, writeable=False)
  vm.map(HIGH_VA + 0x1000, 4096, vram=code.offset, executable=True)
  walk = vm.walk(HIGH_VA)
  assert [level for level, _, _ in walk] == ["AMDGPU_VM_PDB2", "AMDGPU_VM_PDB1", "AMDGPU_VM_PDB0", "AMDGPU_VM_PTB"]
  assert walk[0][1] == dev.gmc.pa(vm.root.offset) + 8 * (HIGH_VA >> 39)     # PDB2 index: VA bits 47:39
  for _, slot, entry in walk:                                       # what the driver reads back is in VRAM
    assert dev.vram.read64(slot - dev.gmc.vram_base) == entry
  for (_, _, pde), (_, next_slot, _) in zip(walk, walk[1:]):
    assert pde == (next_slot & ~0xFFF) | VALID                      # a PDE: next table's address | VALID, nothing else
  pte = walk[-1][2]
  assert pte == dev.gmc.pa(data.offset) | VALID | READABLE          # read-only, MTYPE_NC, no IS_PTE / P bit
  assert vm.walk(HIGH_VA + 0x1000)[-1][2] == dev.gmc.pa(code.offset) | VALID | READABLE | WRITEABLE | EXECUTABLE
  assert dev.vram.read64(walk[-1][1] - dev.gmc.vram_base) == pte
  assert vm.translate(HIGH_VA + 0x123) == (False, dev.gmc.pa(data.offset) + 0x123)


def test_same_va_in_two_vmids(dev):
  n = 2 * BLOCK
  va_in, va_out = HIGH_VA, HIGH_VA + (2 << 20)
  results = []
  for vmid, slot, seed in ((2, 1, 10), (5, 2, 11)):
    vm = dev.gmc.create_vm(vmid)
    queue = vm.queue(pipe=0, queue=slot, doorbell=DOORBELL_MEC_RING0 + slot)
    x = rand(n, seed)
    src, out = vram_buffer(dev, x), vram_buffer(dev, np.zeros(n, np.float32))
    vm.map(va_in, src.size, vram=src.offset, writeable=False)
    vm.map(va_out, out.size, vram=out.offset)
    results.append((queue, vm, out, x))
  for queue, vm, out, x in results:                                 # the same addresses, each VMID its own memory
    run_add(queue, vm, [va_in, va_in, va_out], n)
    np.testing.assert_array_equal(np.frombuffer(dev.vram.read(out.offset, 4 * n), np.float32), x + x)


def test_buffers_code_and_ring_in_the_vm(dev):
  """Everything of a VmDevice (ring, signal, code, kernargs, buffers) lives in the VM; the GART holds only the MQD."""
  n = 2 * BLOCK
  vm = dev.gmc.create_vm()
  queue = vm.queue(pipe=0, queue=1, doorbell=DOORBELL_MEC_RING0 + 1)
  a, b = Buffer(vm.device, 4 * n).write(rand(n, 3)), Buffer(vm.device, 4 * n).write(rand(n, 4))
  out = Buffer(vm.device, 4 * n)
  assert min(queue.ring.va, a.va, queue.signal.va) >= 0x4000_0000_0000 and queue.mqd.va < dev.gmc.GART_SIZE
  run_add(queue, vm, [a.va, b.va, out.va], n)
  np.testing.assert_array_equal(out.read(np.float32, n), a.read(np.float32, n) + b.read(np.float32, n))


# ---- faults ----
def test_unmapped_access_is_a_decoded_fault_then_the_queue_recovers(dev):
  n = 2 * BLOCK
  vm = dev.gmc.create_vm(4)
  queue = vm.queue(pipe=0, queue=1, doorbell=DOORBELL_MEC_RING0 + 1)
  a, b, out = (vram_buffer(dev, x) for x in (rand(n, 5), rand(n, 6), np.zeros(n, np.float32)))
  for i, mem in enumerate((a, b, out)):
    vm.map(HIGH_VA + i * 0x10000, mem.size, vram=mem.offset)
  hole = HIGH_VA + 0x4000_0000                                      # no PDB1 entry there
  with pytest.raises(AMFault, match=r"compute queue me1 pipe0 queue1 \(VMID 4\).*write of 0x7ff040000000 in VMID 4, "
                                    "page not present") as info:
    run_add(queue, vm, [HIGH_VA, HIGH_VA + 0x10000, hole], n, timeout_s=2)
  fault = info.value
  assert (fault.address, fault.vmid, fault.write, fault.kind) == (hole, 4, True, "page not present")
  assert fault.queue == queue.name
  with pytest.raises(AMFault, match="read of 0x7ff040000000 in VMID 4"):   # a read fault after the reset
    queue.reset()
    run_add(queue, vm, [hole, HIGH_VA, HIGH_VA + 0x20000], n, timeout_s=2)
  queue.reset()
  run_add(queue, vm, [HIGH_VA, HIGH_VA + 0x10000, HIGH_VA + 0x20000], n)
  want = np.frombuffer(dev.vram.read(a.offset, 4 * n), np.float32) + np.frombuffer(dev.vram.read(b.offset, 4 * n),
                                                                                     np.float32)
  np.testing.assert_array_equal(np.frombuffer(dev.vram.read(out.offset, 4 * n), np.float32), want)


def test_write_to_a_read_only_page_faults(dev):
  n = BLOCK
  vm = dev.gmc.create_vm(7)
  queue = vm.queue(pipe=0, queue=1, doorbell=DOORBELL_MEC_RING0 + 1)
  x = rand(n, 7)
  src, out = vram_buffer(dev, x), vram_buffer(dev, np.full(n, 42, np.float32))
  vm.map(HIGH_VA, src.size, vram=src.offset)
  vm.map(HIGH_VA + 0x10000, out.size, vram=out.offset, writeable=False)
  with pytest.raises(AMFault, match="write to a read-only page") as info:
    run_add(queue, vm, [HIGH_VA, HIGH_VA, HIGH_VA + 0x10000], n, timeout_s=2)
  assert (info.value.address, info.value.vmid, info.value.write) == (HIGH_VA + 0x10000, 7, True)
  assert (np.frombuffer(dev.vram.read(out.offset, 4 * n), np.float32) == 42).all()


def test_unmap_removes_the_translation(dev):
  n = BLOCK
  vm = dev.gmc.create_vm(8)
  queue = vm.queue(pipe=0, queue=1, doorbell=DOORBELL_MEC_RING0 + 1)
  src, out = vram_buffer(dev, rand(n, 8)), vram_buffer(dev, np.zeros(n, np.float32))
  vm.map(HIGH_VA, src.size, vram=src.offset)
  vm.map(HIGH_VA + 0x10000, out.size, vram=out.offset)
  run_add(queue, vm, [HIGH_VA, HIGH_VA, HIGH_VA + 0x10000], n)
  vm.unmap(HIGH_VA)
  assert vm.walk(HIGH_VA)[-1][2] == 0
  with pytest.raises(AMFault, match="page not present"):
    run_add(queue, vm, [HIGH_VA, HIGH_VA, HIGH_VA + 0x10000], n, timeout_s=2)


def test_a_changed_pte_is_seen_only_after_the_tlb_flush(dev):
  """The card caches translations per VMID until an invalidation names it (gmc_v11_0_flush_vm_hub)."""
  n = BLOCK
  vm = dev.gmc.create_vm(9)
  queue = vm.queue(pipe=0, queue=1, doorbell=DOORBELL_MEC_RING0 + 1)
  first, second = rand(n, 12), rand(n, 13)
  old, new = vram_buffer(dev, first), vram_buffer(dev, second)
  out = vram_buffer(dev, np.zeros(n, np.float32))
  vm.map(HIGH_VA, old.size, vram=old.offset)
  vm.map(HIGH_VA + 0x10000, out.size, vram=out.offset)
  args = [HIGH_VA, HIGH_VA, HIGH_VA + 0x10000]
  kern = kernel(vm.device, "vector_add")                            # made once: mapping its code would flush
  result = lambda: np.frombuffer(dev.vram.read(out.offset, 4 * n), np.float32)   # noqa: E731
  run_add(queue, vm, args, n, kern=kern)
  np.testing.assert_array_equal(result(), first + first)
  _, slot, _ = vm.walk(HIGH_VA)[-1]
  dev.vram.write64(slot - dev.gmc.vram_base, vm.fmt.pte(dev.gmc.pa(new.offset)))   # retarget the PTE, no flush
  run_add(queue, vm, args, n, kern=kern)
  np.testing.assert_array_equal(result(), first + first)            # the TLB still holds the old page
  dev.gmc.flush(vm.vmid)
  run_add(queue, vm, args, n, kern=kern)
  np.testing.assert_array_equal(result(), second + second)


def test_huge_pages(dev):
  n = 2 * BLOCK
  vm = dev.gmc.create_vm(10)
  queue = vm.queue(pipe=0, queue=1, doorbell=DOORBELL_MEC_RING0 + 1)
  big = dev.gmc.alloc(HUGE, HUGE, map_gart=False)
  a, b = rand(n, 14), rand(n, 15)
  dev.vram.write(big.offset + 0x1000, a.tobytes())
  dev.vram.write(big.offset + 0x80000, b.tobytes())
  va = HIGH_VA + 0x4000_0000
  vm.map(va, HUGE, vram=big.offset, huge=True)
  walk = vm.walk(va + 0x123456)
  p_bit = 1 << 54 if dev.caps.gfx_generation == 11 else 1 << 63   # AMDGPU_PDE_PTE / AMDGPU_PDE_PTE_GFX12
  assert [level for level, _, _ in walk][-1] == "AMDGPU_VM_PDB0"
  assert walk[-1][2] == dev.gmc.pa(big.offset) | VALID | READABLE | WRITEABLE | p_bit
  run_add(queue, vm, [va + 0x1000, va + 0x80000, va + 0x1F0000], n)
  np.testing.assert_array_equal(np.frombuffer(dev.vram.read(big.offset + 0x1F0000, 4 * n), np.float32), a + b)
  with pytest.raises(ValueError, match="overlaps"):
    vm.map(va + 0x1000, 4096, vram=big.offset)
  vm.unmap(va)
  small = vram_buffer(dev, np.zeros(1024, np.uint32))
  vm.map(va, 4096, vram=small.offset)                               # a 4 KiB page where the huge page was
  assert vm.walk(va)[-1][0] == "AMDGPU_VM_PTB"


def test_system_pages(dev):
  n = 4 * BLOCK
  vm = dev.gmc.create_vm(11)
  queue = vm.queue(pipe=0, queue=1, doorbell=DOORBELL_MEC_RING0 + 1)
  host = dev.pci.alloc_dma(3 * 4096)
  a, b = rand(n, 16), rand(n, 17)
  host.write(0, a.tobytes())
  host.write(4096, b.tobytes())
  vm.map(HIGH_VA, 3 * 4096, dma=host)
  pte = vm.walk(HIGH_VA + 4096)[-1][2]
  assert pte == host.bus_addresses[1] | VALID | READABLE | WRITEABLE | SYSTEM | SNOOPED
  run_add(queue, vm, [HIGH_VA, HIGH_VA + 4096, HIGH_VA + 8192], n)
  np.testing.assert_array_equal(np.frombuffer(host.read(8192, 4 * n), np.float32), a + b)


def test_vram_allocator_first_fit_alignment_merge_and_exhaustion():
  from am.ip.gmc import VramAllocator
  a = VramAllocator(1 << 20, 64 << 10)          # the top 64 KiB stay reserved (the discovery TMR)
  x, y = a.alloc(100), a.alloc(4096, align=64 << 10)
  assert (x, y) == (0, 0x10000)                  # whole pages, aligned as asked
  a.release(x, 100)
  assert a.alloc(4096) == 0                      # first fit takes the freed page again
  a.release(0, 4096)
  a.release(y, 4096)
  assert a.free == [(0, 0xF0000)]                # neighbours merged back into one range
  with pytest.raises(AMError, match=r"out of VRAM: no free range of 0xf1000 bytes aligned to 0x1000 \(free: "
                                    r"0xf0000 bytes in 1 pieces\)"):
    a.alloc(0xF1000)


def test_vm_refusals(dev):
  vm = dev.gmc.create_vm(12)
  with pytest.raises(AMError, match="VMID 12"):
    dev.gmc.create_vm(12)
  with pytest.raises(AMError, match="1..15"):
    dev.gmc.create_vm(0)
  mem = vram_buffer(dev, np.zeros(1024, np.uint32))
  with pytest.raises(ValueError, match="usable range"):
    vm.map(1 << 47, 4096, vram=mem.offset)                          # the sign-extended upper half
  with pytest.raises(ValueError, match="exactly one"):
    vm.map(HIGH_VA, 4096)
  with pytest.raises(ValueError, match="no mapping"):
    vm.unmap(HIGH_VA)
  vm.destroy()
  assert not vm.regs("regGCVM_CONTEXT0_CNTL", "regGCVM_CONTEXT1_CNTL").read_fields()["ENABLE_CONTEXT"]
  assert dev.gmc.create_vm(12).vmid == 12


# ---- hung queues ----
@pytest.mark.parametrize("on_vm", [False, True], ids=["vmid0", "user_vmid"])
def test_hung_kernel_times_out_and_the_queue_recovers(dev, on_vm):
  if on_vm:
    vm = dev.gmc.create_vm(13)
    owner, queue = vm.device, vm.queue(pipe=0, queue=1, doorbell=DOORBELL_MEC_RING0 + 1)
  else:
    owner, queue = dev, dev.gfx.queue
  value = dispatch(queue, kernel(owner, "spin"), [], grid=(2,), block=(BLOCK,))
  start = time.perf_counter()
  with pytest.raises(AMTimeout) as info:
    queue.wait(value, timeout_s=0.2)
  assert time.perf_counter() - start < 2.0                          # the host was never held by the kernel
  e = info.value
  assert isinstance(e, TimeoutError)
  assert (e.queue, e.waited, e.last) == (queue.name, value, value - 1)
  assert f"{queue.name} hung? timed out after 0.2s waiting for its signal to reach {value} (last reached " \
         f"{value - 1})" in str(e)
  assert "IH entries during the wait: none" in str(e) and str(e).endswith("HQD ACTIVE=1 DEQUEUE_REQ=0")
  assert "next:     0: PACKET3_EVENT_WRITE" in str(e)                # stuck behind the dispatch
  assert queue.signal.value() == value - 1                          # still spinning after the wait gave up
  with pytest.raises(AMTimeout, match="DRAIN_PIPE"):
    queue.dequeue(DRAIN_PIPE, 0.1)                                  # waves that never end never drain
  queue.reset()                                                     # RESET_WAVES kills them
  assert any("killed" in line for line in dev.card.log)
  n = 2 * BLOCK
  a, b, out = Buffer(owner, 4 * n).write(rand(n, 20)), Buffer(owner, 4 * n).write(rand(n, 21)), Buffer(owner, 4 * n)
  queue.wait(dispatch(queue, kernel(owner, "vector_add"), [a.va, b.va, out.va], grid=(n // BLOCK,), block=(BLOCK,)))
  np.testing.assert_array_equal(out.read(np.float32, n), a.read(np.float32, n) + b.read(np.float32, n))


def test_long_kernel_finishes_across_time_slices(dev, monkeypatch):
  """With slices of one quantum, a finite kernel of ~3 * COUNT instructions runs over many host polls."""
  monkeypatch.setattr(shader, "SLICE_SECONDS", 0.0)
  queue, out = dev.gfx.queue, Buffer(dev, 16)
  value = dispatch(queue, kernel(dev, "count"), [out.va], grid=(1,), block=(BLOCK,))
  assert queue.signal.value() < value                               # not done after the doorbell's slice
  queue.wait(value)
  assert out.read(np.uint32, 1)[0] == COUNT


def test_drain_lets_the_dispatch_in_flight_finish(dev, monkeypatch):
  """DRAIN_PIPE: the waves in flight run to their end, then the HQD goes inactive; nothing after them is fetched."""
  monkeypatch.setattr(shader, "SLICE_SECONDS", 0.0)
  queue, out = dev.gfx.queue, Buffer(dev, 16)
  value = dispatch(queue, kernel(dev, "count"), [out.va], grid=(1,), block=(BLOCK,))
  queue.dequeue(DRAIN_PIPE, 5.0)
  assert out.read(np.uint32, 1)[0] == COUNT and queue.signal.value() < value
  queue.reset()
  assert dev.gfx.ring_test(0x600DF00D) == 0x600DF00D
