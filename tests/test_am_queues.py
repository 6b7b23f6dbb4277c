"""The AM driver's queues (am/queues) on the simulated Navi31 and Navi48: the MEC's PM4 executor, kernels on the wave
emulator through the GC hub's page tables, SDMA, faults reaching the driver as AMFault and the queue recovering.
Needs AM_FIRMWARE_DIR as tests/test_am_bringup.py (skips locally without it, fails under CI=true)."""
from __future__ import annotations


import numpy as np
import pytest

from am.device import AMDevice
from am.errors import AMFault
from am.ip.soc import DOORBELL_MEC_RING0
from am.pm4.pm4 import PM4Stream
from am.pm4.sdma import SDMAStream
from am.queues.compute import ComputeQueue
from am.queues.dispatch import Buffer, CommandBuffer, dispatch, kernel_user_values
from am.queues.kernel import GpuKernel
from am.queues.samples import run_vector_add, vector_add_code_object
from am.simcard.card import SimCard

CARDS = ["navi31", "navi48"]
CODE_OBJECTS: dict = {}



def booted_card(name: str, fw_dir: str) -> AMDevice:
  """The simulated card `name` booted through the AM driver; the card object is on `.card`."""
  card = SimCard(name, fw_dir)
  device = AMDevice(card, fw_dir)
  device.boot()
  device.card = card
  return device


@pytest.fixture(params=CARDS)
def dev(request, fw_dir):
  device = booted_card(request.param, fw_dir)
  yield device
  assert device.card.hazards == [], "dispatches without a barrier between them touched the same memory"


def vector_add(dev) -> GpuKernel:
  target = dev.caps.gfx_target
  if target not in CODE_OBJECTS:
    CODE_OBJECTS[target] = vector_add_code_object(target)
  return GpuKernel(dev, CODE_OBJECTS[target], "vector_add")


def rand(n: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def test_scratch_register_through_the_ring(dev):
  s = PM4Stream(dev.caps.gfx_generation).set_uconfig_reg(dev.gc.regSCRATCH_REG0, 0xDEADBEEF)
  dev.gfx.queue.wait(dev.gfx.queue.exec(s))
  assert dev.gc.regSCRATCH_REG0.read() == 0xDEADBEEF


def test_indirect_buffers_nested_and_chained(dev):
  out = Buffer(dev, 64)
  gen = dev.caps.gfx_generation
  inner = CommandBuffer(dev)
  inner.stream.write_data(out.va + 4, 0x22222222)
  inner.upload()
  tail = CommandBuffer(dev)
  tail.stream.write_data(out.va + 8, 0x33333333)
  tail.upload()
  outer = CommandBuffer(dev)
  outer.stream.write_data(out.va, 0x11111111)
  outer.stream.indirect_buffer(inner.buf.va, len(inner.stream))          # IB2, returns here
  outer.stream.words.extend(PM4Stream(gen).copy_data(1, out.va + 4, 5, out.va + 12).words)  # after the IB2
  outer.stream.words.extend(PM4Stream(gen).indirect_buffer(tail.buf.va, len(tail.stream)).words)
  outer.stream.words[-1] |= 1 << 20                                      # IB_CONTROL.CHAIN: no return
  queue = dev.gfx.queue
  queue.wait(outer.submit(queue))
  assert out.read(np.uint32, 4).tolist() == [0x11111111, 0x22222222, 0x33333333, 0x22222222]


def test_fence_with_timestamps(dev):
  queue = dev.gfx.queue
  first = queue.exec(PM4Stream(dev.caps.gfx_generation).nop(4))
  queue.wait(first)
  start1, end1 = queue.signal.timestamps()
  second = queue.exec(PM4Stream(dev.caps.gfx_generation).event_write("CS_PARTIAL_FLUSH", 4))
  queue.wait(second)
  start2, end2 = queue.signal.timestamps()
  assert second == first + 1 and queue.signal.value() == second
  assert 0 < start1 < end1 < start2 < end2


def test_ring_wraps(dev):
  small = ComputeQueue(dev, pipe=0, queue=1, doorbell=DOORBELL_MEC_RING0 + 1, ring_bytes=256)
  small.program()
  out = Buffer(dev, 4096)
  for i in range(40):   # ~23 dwords per submission, 64 in the ring: wraps many times
    small.wait(small.exec(PM4Stream(dev.caps.gfx_generation).write_data(out.va + 4 * i, i + 1)))
  assert out.read(np.uint32, 40).tolist() == list(range(1, 41))
  assert small.wptr > 10 * small.ring_dw and small.rptr() == small.wptr % small.ring_dw


def test_kernel_matches_numpy(dev):
  lines = run_vector_add(dev, 512, seed=1)
  assert "matches numpy" in lines[0]


def test_faulting_kernel_then_recovery(dev):
  kern, queue, n = vector_add(dev), dev.gfx.queue, 128
  a, b = Buffer(dev, 4 * n).write(rand(n, 2)), Buffer(dev, 4 * n).write(rand(n, 3))
  bad = 0x40000000 + 0x3000          # outside the 64 MiB GART
  with pytest.raises(AMFault, match="compute queue me1 pipe0 queue0.*GPU page fault on the GC hub: write of "
                     "0x40003000 in VMID 0, page not present") as info:
    queue.wait(dispatch(queue, kern, [a.va, b.va, bad], (n // 64,), (64,)), timeout_s=1)
  assert (info.value.address, info.value.vmid, info.value.write) == (bad, 0, True)
  queue.reset()
  out = Buffer(dev, 4 * n)
  queue.wait(dispatch(queue, kern, [a.va, b.va, out.va], (n // 64,), (64,)))
  assert np.array_equal(out.read(np.float32, n), a.read(np.float32, n) + b.read(np.float32, n))


def test_bad_packet_then_recovery(dev):
  queue = dev.gfx.queue
  s = PM4Stream(dev.caps.gfx_generation)
  s.words.append(0xC0001000 | (0x7F << 8))   # type-3 header of an opcode the MEC has no handler for
  s.words.append(0)
  with pytest.raises(AMFault, match="CP_BAD_OPCODE_ERROR"):
    queue.wait(queue.exec(s), timeout_s=1)
  queue.reset()
  test_scratch_register_through_the_ring(dev)


def test_ib_replay_with_patched_values(dev):
  kern, queue, n = vector_add(dev), dev.gfx.queue, 256
  grid, block = (n // 64,), (64,)
  ins = [[Buffer(dev, 4 * n).write(rand(n, 10 * k + i)) for i in range(2)] for k in range(2)]
  outs = [Buffer(dev, 4 * n) for _ in range(2)]
  flag = Buffer(dev, 8)
  cb = CommandBuffer(dev)
  kern.emit(cb.stream, grid, block, kernel_user_values(queue, kern, [x.va for x in ins[0]] + [outs[0].va], grid, block))
  cb.stream.write_data(flag.va, 1, name="flag")
  queue.wait(cb.submit(queue))
  second = kernel_user_values(queue, kern, [x.va for x in ins[1]] + [outs[1].va], grid, block)
  cb.patch("kernarg.lo", second["kernarg"])
  cb.patch("kernarg.hi", second["kernarg"] >> 32)
  cb.patch("flag", 2)
  queue.wait(cb.submit(queue))
  for k in range(2):
    assert np.array_equal(outs[k].read(np.float32, n), ins[k][0].read(np.float32, n) + ins[k][1].read(np.float32, n))
  assert flag.read(np.uint32, 1)[0] == 2


def test_sdma_copy_fence_timestamp_trap(dev):
  q = dev.sdma.queue
  data = np.random.default_rng(5).integers(0, 2**32, 3000, dtype=np.uint32)
  src, dst = Buffer(dev, data.nbytes).write(data), Buffer(dev, data.nbytes)
  q.wait(q.copy(dst.va, src.va, data.nbytes))
  assert np.array_equal(dst.read(np.uint32, data.size), data)
  t1, t2 = q.timestamp(), q.timestamp()
  assert 0 < t1 < t2
  s = SDMAStream(dev.caps.sdma_generation).write(dst.va, 7, 8, 9).trap(0x42)
  q.wait(q.exec(s))
  assert dst.read(np.uint32, 3).tolist() == [7, 8, 9]
  assert not dev.ih.faults()
  trap = [e for e in dev.ih.events if e.source == "GFX_11_0_0__SRCID__SDMA_TRAP"]
  assert trap and trap[-1].src_data[0] == 0x42


def test_compute_waits_for_sdma(dev):
  """WAIT_REG_MEM stalls the compute queue until an SDMA FENCE writes the word it polls."""
  word, out = Buffer(dev, 8), Buffer(dev, 8)
  queue, q = dev.gfx.queue, dev.sdma.queue
  s = PM4Stream(dev.caps.gfx_generation).wait_mem(word.va, 5, function="==").write_data(out.va, 0xAB)
  value = queue.exec(s)
  assert out.read(np.uint32, 1)[0] == 0 and queue.signal.value() < value
  q.wait(q.exec(SDMAStream(dev.caps.sdma_generation).fence(word.va, 5)))
  queue.wait(value)
  assert out.read(np.uint32, 1)[0] == 0xAB


def test_write_pointer_past_2_to_the_32_and_hdp_flushes(dev):
  # gfx_v11_0_ring_set_wptr_compute rings a 64-bit doorbell (WDOORBELL64) with the 64-bit write pointer: past 2**32
  # the CP gets it whole (a 32-bit doorbell would hand it the low half, behind its read pointer, and nothing would
  # run). Before each doorbell the driver flushes HDP through the remapped register (hdp_v6_0_flush_hdp).
  queue = dev.gfx.queue
  queue.unmap()
  queue.wptr = (1 << 32) - 8
  dev.vram.write32(queue.wb.offset, queue.wptr % queue.ring_dw)   # the read pointer report of an empty ring
  queue.program()
  flushes = dev.card.hdp_flushes
  for i in range(3):
    s = PM4Stream(dev.caps.gfx_generation).set_uconfig_reg(dev.gc.regSCRATCH_REG0, 0x100 + i)
    queue.wait(queue.exec(s), timeout_s=2)
    assert dev.gc.regSCRATCH_REG0.read() == 0x100 + i
  assert queue.wptr > 1 << 32 and dev.card.hdp_flushes == flushes + 3


def test_sdma_waits_for_compute_and_flushes_hdp(dev):
  """POLL_REGMEM stalls the SDMA queue until the compute queue's WRITE_DATA writes the word it polls; its HDP_FLUSH
  form (sdma_v6_0_ring_emit_hdp_flush) writes GPU_HDP_FLUSH_REQ and waits for the same bits in GPU_HDP_FLUSH_DONE."""
  word, out = Buffer(dev, 8), Buffer(dev, 8)
  nbio = dev.nbio
  q = dev.sdma.queue
  s = SDMAStream(dev.caps.sdma_generation).poll_regmem(1, word.va, 5, 0xFFFFFFFF, function="==")
  s.hdp_flush(nbio.regBIF_BX_PF0_GPU_HDP_FLUSH_REQ.addr, nbio.regBIF_BX_PF0_GPU_HDP_FLUSH_DONE.addr, 1 << 2)
  s.write(out.va, 0xCD)
  value = q.exec(s)
  assert out.read(np.uint32, 1)[0] == 0 and dev.vram.read32(q.signal.offset) < value   # stalled on the poll
  queue = dev.gfx.queue
  queue.wait(queue.exec(PM4Stream(dev.caps.gfx_generation).write_data(word.va, 5)))
  q.wait(value, timeout_s=2)
  assert out.read(np.uint32, 1)[0] == 0xCD
  assert nbio.regBIF_BX_PF0_GPU_HDP_FLUSH_DONE.read() & (1 << 2)
