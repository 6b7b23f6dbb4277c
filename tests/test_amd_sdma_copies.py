"""Host <-> VRAM copies on the SDMA queue (am/queues/transfer.py) on the simulated Navi31 and Navi48: bytes round trip
against numpy, the cross-queue waits in the rings (decoded with am.pm4.decode), the order they impose (each checked to
break when its wait is left out), AMDCardAllocator on both paths and a TinyJit step whose x.to("AMD") replays as a
copy. Needs AM_FIRMWARE_DIR like tests/test_am_queues.py."""
from __future__ import annotations

import numpy as np
import pytest

from am.pm4.decode import parse_pm4, parse_sdma
from am.pm4.pm4 import PM4Stream
from am.queues.dispatch import Buffer, dispatch
from am.queues.samples import BLOCK
from am.queues.transfer import SdmaTransfers
from compiler.dtypes import dtypes
from frontend import Tensor
from frontend.jit import TinyJit
from frontend.realize import CopyItem
from tests.conftest import assert_close, random_array
from tests.test_am_queues import dev, vector_add  # noqa: F401  (the booted-card fixture)
from tests.test_amd_sim_frontend import amd  # noqa: F401  (the DEV=AMD fixture)

SIZES = [1, 3, 4, 4095, 4097, (64 << 10) + 7, 1 << 20, (3 << 20) + 5]


def ring_words(mem, nbytes: int, vram) -> list[int]:
  return [int(w) for w in np.frombuffer(vram.read(mem.offset, nbytes), np.uint32)]


@pytest.mark.parametrize("offset", [0, 13])
def test_round_trip_sizes(dev, rng, offset):  # noqa: F811
  t = SdmaTransfers(dev, dev.gfx.queue)
  for n in SIZES:
    data = rng.integers(0, 256, n, dtype=np.uint8)
    buf = Buffer(dev, n + offset)
    t.copyin(buf, data, offset)
    out = t.copyout(buf, np.empty(n, np.uint8), offset)
    assert np.array_equal(out, data), f"{n} bytes at {offset}"
    assert np.array_equal(buf.read(np.uint8, n, offset), data)   # VRAM itself, through BAR 0
  assert not dev.ih.faults()


def test_rings_hold_the_cross_queue_waits(dev):  # noqa: F811
  compute, sdma = dev.gfx.queue, dev.sdma.queue
  t = SdmaTransfers(dev, compute)
  compute.wait(compute.exec(PM4Stream(dev.caps.gfx_generation).nop()))
  expected_compute = compute.signal.last
  sdma_from, compute_from = sdma.wptr, compute.wptr
  buf = Buffer(dev, 8192)
  fence = t.copyin(buf, np.arange(2048, dtype=np.uint32))
  sdma_packets = parse_sdma(ring_words(sdma.ring, sdma.wptr, dev.vram)[sdma_from // 4:], dev.caps.sdma_generation)
  names = [p.name for p in sdma_packets]
  assert names == ["SDMA_PKT_POLL_REGMEM", "SDMA_PKT_COPY_LINEAR", "SDMA_PKT_FENCE"]
  poll = sdma_packets[0]
  body = {name: value for name, value, _ in poll.dwords}
  assert poll.header["mem_poll"] == 1 and poll.header["func"] == 5 and poll.header["hdp_flush"] == 0   # >= on memory
  assert body["ADDR_LO"] | body["ADDR_HI"] << 32 == compute.signal.va
  assert body["VALUE"] == expected_compute and body["MASK"] == 0xFFFFFFFF
  copy = {name: value for name, value, _ in sdma_packets[1].dwords}
  assert copy["DST_ADDR_LO"] | copy["DST_ADDR_HI"] << 32 == buf.va
  assert copy["SRC_ADDR_LO"] | copy["SRC_ADDR_HI"] << 32 == t.staging.va
  pm4 = parse_pm4(ring_words(compute.ring, compute.wptr * 4, dev.vram)[compute_from:], dev.caps.gfx_generation)
  waits = [p for p in pm4 if p.name == "PACKET3_WAIT_REG_MEM"]
  assert len(waits) == 1
  wait = {name: (value, fields) for name, value, fields in waits[0].dwords}
  assert wait["WAIT_CNTL"][1]["FUNCTION"] == 5 and wait["WAIT_CNTL"][1]["MEM_SPACE"] == 1
  assert wait["POLL_ADDRESS_LO"][0] | wait["POLL_ADDRESS_HI"][0] << 32 == sdma.signal.va
  assert wait["REFERENCE"][0] == fence
  compute.wait()
  assert sdma.value() >= fence


@pytest.mark.parametrize("leave_out", [None, "sdma poll", "compute wait"])
def test_kernels_before_and_after_a_copyin(dev, rng, leave_out):  # noqa: F811
  """A kernel queued before a copyin into `dst` reads the old bytes, one queued after reads the new. The compute
  queue is held on a gate word first, so both kernels and the copy are queued before anything runs; the simulated
  card then runs the compute queue as far as it can before it polls SDMA again, so without the SDMA poll the copy runs
  at its doorbell (before kernel A), and without the compute wait kernel B runs before the copy."""
  compute, sdma = dev.gfx.queue, dev.sdma.queue
  t = SdmaTransfers(dev, compute)
  n = 4 * BLOCK
  old, new = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
  dst, zeros = Buffer(dev, 4 * n).write(old), Buffer(dev, 4 * n)
  out_before, out_after, gate = Buffer(dev, 4 * n), Buffer(dev, 4 * n), Buffer(dev, 8)
  kern = vector_add(dev)
  compute.exec(PM4Stream(dev.caps.gfx_generation).wait_mem(gate.va, 1, function="=="))
  dispatch(compute, kern, [dst.va, zeros.va, out_before.va], (n // BLOCK,), (BLOCK,))
  if leave_out is None:
    t.copyin(dst, new)
  else:
    staged = Buffer(dev, 4 * n).write(new)
    fence = t.sdma_copy(dst.va, staged.va, 4 * n, after_compute=leave_out != "sdma poll")
    if leave_out != "compute wait":
      t.compute_waits_for(fence)
  dispatch(compute, kern, [dst.va, zeros.va, out_after.va], (n // BLOCK,), (BLOCK,))
  gate.write(np.ones(1, np.uint32))   # open the gate: the stalled MEC sees it at the host's next look (card.tick)
  compute.wait()
  sdma.wait()
  before, after = out_before.read(np.float32, n), out_after.read(np.float32, n)
  if leave_out is None:
    assert np.array_equal(before, old) and np.array_equal(after, new)
  elif leave_out == "sdma poll":
    assert np.array_equal(before, new), "the copy ran ahead of kernel A: what the SDMA poll prevents"
  else:
    assert np.array_equal(after, old), "kernel B ran ahead of the copy: what the compute wait prevents"


def test_transfer_sizes_that_do_not_fit(dev):  # noqa: F811
  t = SdmaTransfers(dev, dev.gfx.queue)
  buf = Buffer(dev, 100)
  with pytest.raises(ValueError, match="copyin of 101 bytes at offset 0 does not fit the 100-byte buffer"):
    t.copyin(buf, bytes(101))
  with pytest.raises(ValueError, match="copyout of 40 bytes at offset 70 does not fit the 100-byte buffer"):
    t.copyout(buf, np.empty(40, np.uint8), 70)


def test_allocator_round_trip_both_paths(amd, rng):  # noqa: F811
  alloc, sdma = amd.allocator, amd.dev.sdma.queue
  for n in SIZES:
    data = rng.integers(0, 256, n, dtype=np.uint8)
    buf = alloc.alloc(n)
    fences = sdma.last
    alloc.copyin(buf, data)
    out = np.empty(n, np.uint8)
    alloc.copyout(out, buf)
    assert np.array_equal(out, data), f"{n} bytes"
    on_sdma = sdma.last > fences
    assert on_sdma == (n > alloc.CPU_COPY_MAX), f"{n} bytes: SDMA {on_sdma}, CPU_COPY_MAX {alloc.CPU_COPY_MAX}"
    alloc.free(buf, n)
  compute, data = amd.queue, np.arange(17, dtype=np.float32)
  small, gate = alloc.alloc(data.nbytes), alloc.alloc(8)
  gate.write(bytes(8))
  compute.exec(PM4Stream(amd.dev.caps.gfx_generation).wait_mem(gate.va, 1, function="=="))   # the queue is busy
  fences = sdma.last
  alloc.copyin(small, data)                      # small, but queued behind the compute work: on SDMA
  assert sdma.last == fences + 1 and not np.array_equal(small.read(np.float32, data.size), data)
  gate.write(np.ones(1, np.uint32))
  out = np.empty(data.size, np.float32)
  alloc.copyout(out, small)
  assert np.array_equal(out, data) and compute.signal.value() == compute.signal.last


def test_allocator_sizes_that_do_not_fit(amd):  # noqa: F811
  buf = amd.allocator.alloc(16)
  with pytest.raises(ValueError, match="copyin of 32 bytes into a 16-byte AMD buffer"):
    amd.allocator.copyin(buf, np.zeros(8, np.float32))
  with pytest.raises(ValueError, match="copyout of 20 bytes from a 16-byte AMD buffer"):
    amd.allocator.copyout(np.zeros(5, np.float32), buf)


@pytest.mark.parametrize("n", [24, 3000])
def test_tinyjit_step_with_a_host_copy(amd, rng, n):  # noqa: F811
  w = random_array(rng, (n,), dtypes.float32)
  weight = Tensor(w, device="AMD").realize()

  @TinyJit
  def step(x):
    y = x.to("AMD")
    return (y * 2 + weight).relu().realize()

  fences = amd.dev.sdma.queue.last
  for _ in range(5):
    a = random_array(rng, (n,), dtypes.float32)
    got = step(Tensor(a, device="CPU")).numpy()
    assert_close(got, np.maximum(a.astype(np.float64) * 2 + w, 0), dtypes.float32)
  assert any(isinstance(item, CopyItem) for item in step.captured)   # the copy is part of the replayed step
  if 4 * n > amd.allocator.CPU_COPY_MAX:
    assert amd.dev.sdma.queue.last > fences


def test_a_chain_of_copies_behind_held_compute_work(dev, rng):  # noqa: F811
  """Twenty copyins queued while the compute queue is held: each SDMA copy waits for the compute wait of the one before
  it, a chain of forty cross-queue waits that the card resolves once the gate opens (the host only waits at the end)."""
  compute, sdma = dev.gfx.queue, dev.sdma.queue
  t = SdmaTransfers(dev, compute, staging_bytes=64 << 10, chunk_bytes=4096)
  gate = Buffer(dev, 8)
  compute.exec(PM4Stream(dev.caps.gfx_generation).wait_mem(gate.va, 1, function="=="))
  datas = [rng.integers(0, 256, 3000, dtype=np.uint8) for _ in range(20)]
  bufs = [Buffer(dev, 3000) for _ in datas]
  for buf, data in zip(bufs, datas):
    t.copyin(buf, data)
  assert sdma.value() < sdma.last and compute.signal.value() < compute.signal.last
  gate.write(np.ones(1, np.uint32))
  compute.wait(timeout_s=10)
  assert sdma.value() == sdma.last
  for buf, data in zip(bufs, datas):
    assert np.array_equal(buf.read(np.uint8, data.size), data)
