"""Smoke-test kernels for `sov am bringup`, tests/test_am_queues.py, tests/test_am_vm.py and hwtests/am, assembled
from text with compiler.rdna (imported here only, on first use: the driver itself takes any loaded code object).

vector_add: out[i] = a[i] + b[i] over float32, one work-item per element, 64-wide workgroups (s2 = workgroup id x,
s[0:1] = kernarg pointer, as build_kernel's defaults enable them).
spin: an s_branch to itself, a kernel that never ends (hang detection and queue recovery).
"""
from __future__ import annotations

import numpy as np

WAITS = {"gfx1100": ("s_waitcnt lgkmcnt(0)", "s_waitcnt vmcnt(0)"),
         "gfx1201": ("s_wait_kmcnt 0", "s_wait_loadcnt 0")}
VECTOR_ADD = """
  s_load_b128 s[4:7], s[0:1], 0x0
  s_load_b64 s[8:9], s[0:1], 0x10
  {kwait}
  s_lshl_b32 s20, s2, 6
  v_add_nc_u32 v1, s20, v0
  v_lshlrev_b32 v1, 2, v1
  global_load_b32 v2, v1, s[4:5]
  global_load_b32 v3, v1, s[6:7]
  {vwait}
  v_add_f32 v2, v2, v3
  global_store_b32 v1, v2, s[8:9]
  s_endpgm
"""
SPIN = """
loop:
  s_branch loop
  s_endpgm
"""
BLOCK = 64
VM_SAMPLE_VA = 0x7FFF_0000_0000   # high in the 47-bit user range: PDB2 entry 255


def vector_add_code_object(target: str):
  """A loaded code object with kernel `vector_add(a, b, out)` for gfx1100 or gfx1201."""
  from compiler.rdna import assemble, build_kernel, load_code_object, pointer_arg, write_code_object
  if target not in WAITS:
    raise ValueError(f"no vector_add sample for {target}; have {', '.join(WAITS)}")
  kwait, vwait = WAITS[target]
  code = assemble(VECTOR_ADD.format(kwait=kwait, vwait=vwait), target)
  kernel = build_kernel("vector_add", code, target, args=[pointer_arg(n, 8 * i) for i, n in enumerate("abo")])
  return load_code_object(write_code_object([kernel], target))


def spin_code_object(target: str):
  """A loaded code object with kernel `spin()`, which never ends."""
  from compiler.rdna import assemble, build_kernel, load_code_object, write_code_object
  return load_code_object(write_code_object([build_kernel("spin", assemble(SPIN, target), target, args=[])], target))


def run_vector_add(dev, n: int = 1024, seed: int | None = None) -> list[str]:
  """Run vector_add on `n` fresh random float32 pairs through the compute queue, check against numpy.

  Raises:
    AssertionError: a result differs (names the first wrong index). AMFault / AMTimeout: from the queue."""
  from am.queues.dispatch import Buffer, dispatch
  from am.queues.kernel import GpuKernel
  if n % BLOCK:
    raise ValueError(f"n = {n}: a multiple of {BLOCK}")
  rng = np.random.default_rng(seed)
  a = rng.standard_normal(n).astype(np.float32)
  b = rng.standard_normal(n).astype(np.float32)
  kern = GpuKernel(dev, vector_add_code_object(dev.caps.gfx_target), "vector_add")
  bufs = [Buffer(dev, 4 * n).write(a), Buffer(dev, 4 * n).write(b), Buffer(dev, 4 * n)]
  queue = dev.gfx.queue
  queue.wait(dispatch(queue, kern, [x.va for x in bufs], grid=(n // BLOCK,), block=(BLOCK,)))
  got, want = bufs[2].read(np.float32, n), a + b
  if not np.array_equal(got, want):
    bad = int(np.flatnonzero(got != want)[0])
    raise AssertionError(f"vector_add: out[{bad}] = {got[bad]!r}, numpy says {want[bad]!r}")
  start, end = queue.signal.timestamps()
  return [f"vector_add on {n} float32: matches numpy ({n // BLOCK} workgroups of {BLOCK}, kernel at "
          f"0x{kern.entry:x}), GPU time {(end - start) / 100:.1f} us by the queue's timestamps"]


def run_vector_add_vm(dev, n: int = 256, seed: int | None = None) -> list[str]:
  """vector_add on a compute queue of a fresh user VMID (am.ip.vm.GpuVm): the three buffers mapped at VM_SAMPLE_VA and
  up, code, ring and kernargs in the VM too; checked against numpy; the output page's walk decoded. The VM is
  destroyed after.

  Raises:
    AssertionError: a result differs. AMFault / AMTimeout: from the queue."""
  from am.ip.soc import DOORBELL_MEC_RING0
  from am.queues.dispatch import dispatch
  from am.queues.kernel import GpuKernel
  rng = np.random.default_rng(seed)
  a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
  vm = dev.gmc.create_vm()
  mems = [dev.gmc.alloc(4 * n, map_gart=False) for _ in range(3)]
  queue = None
  try:
    queue = vm.queue(pipe=0, queue=1, doorbell=DOORBELL_MEC_RING0 + 1)
    kern = GpuKernel(vm.device, vector_add_code_object(dev.caps.gfx_target), "vector_add")
    vas = [VM_SAMPLE_VA + i * (1 << 20) for i in range(3)]
    for va, mem, data in zip(vas, mems, (a, b, np.zeros(n, np.float32))):
      dev.vram.write(mem.offset, data.tobytes())
      vm.map(va, mem.size, vram=mem.offset)
    queue.wait(dispatch(queue, kern, vas, grid=(n // BLOCK,), block=(BLOCK,)))
    got = np.frombuffer(dev.vram.read(mems[2].offset, 4 * n), np.float32)
    if not np.array_equal(got, a + b):
      bad = int(np.flatnonzero(got != a + b)[0])
      raise AssertionError(f"vector_add on VMID {vm.vmid}: out[{bad}] = {got[bad]!r}, numpy says {(a + b)[bad]!r}")
    walk = vm.walk(vas[2])
    pte = vm.fmt.decode_pte(walk[-1][2])
    return [vm.describe(),
            f"vector_add on {n} float32 on {queue.name}, buffers at 0x{vas[0]:x}..: matches numpy",
            "walk of 0x%x: " % vas[2] + " -> ".join(f"{level[10:]} 0x{entry:016x}" for level, _, entry in walk),
            f"PTE ({vm.fmt.name}): page 0x{pte['address']:x} valid {pte['valid']} readable {pte['readable']} "
            f"writeable {pte['writeable']} {vm.fmt.mtype_name(pte['mtype'])}"]
  finally:
    if queue is not None:
      queue.unmap()
    vm.destroy()
    for mem in mems:
      dev.gmc.vram.release(mem.offset, mem.size)


def hang_and_recover(dev, timeout_s: float = 0.2) -> list[str]:
  """A kernel that never ends on the kernel compute queue: the wait times out (AMTimeout names the queue and the
  values), reset() (RESET_WAVES) recovers the queue, and vector_add runs on it again.

  Raises:
    AssertionError: the wait did not time out. AMFault / AMTimeout: the recovered queue failed."""
  import time

  from am.errors import AMTimeout
  from am.queues.dispatch import dispatch
  from am.queues.kernel import GpuKernel
  queue = dev.gfx.queue
  spin = GpuKernel(dev, spin_code_object(dev.caps.gfx_target), "spin")
  start = time.perf_counter()
  try:
    queue.wait(dispatch(queue, spin, [], grid=(1,), block=(BLOCK,)), timeout_s=timeout_s)
  except AMTimeout as e:
    caught = e
  else:
    raise AssertionError("a kernel that never ends finished")
  detected = time.perf_counter() - start
  queue.reset()
  lines = run_vector_add(dev, 4 * BLOCK)
  return [f"spin kernel: AMTimeout after {detected * 1000:.0f} ms on {caught.queue} (waited for {caught.waited}, "
          f"last {caught.last}); reset with RESET_WAVES", f"after the reset: {lines[0]}"]
