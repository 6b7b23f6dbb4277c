"""Smoke-test kernels for `sov am bringup`, tests/test_am_queues.py and hwtests/am, assembled from text with
compiler.rdna (imported here only, on first use: the driver itself takes any loaded code object).

vector_add: out[i] = a[i] + b[i] over float32, one work-item per element, 64-wide workgroups (s2 = workgroup id x,
s[0:1] = kernarg pointer, as build_kernel's defaults enable them).
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
BLOCK = 64


def vector_add_code_object(target: str):
  """A loaded code object with kernel `vector_add(a, b, out)` for gfx1100 or gfx1201."""
  from compiler.rdna import assemble, build_kernel, load_code_object, pointer_arg, write_code_object
  if target not in WAITS:
    raise ValueError(f"no vector_add sample for {target}; have {', '.join(WAITS)}")
  kwait, vwait = WAITS[target]
  code = assemble(VECTOR_ADD.format(kwait=kwait, vwait=vwait), target)
  kernel = build_kernel("vector_add", code, target, args=[pointer_arg(n, 8 * i) for i, n in enumerate("abo")])
  return load_code_object(write_code_object([kernel], target))


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
