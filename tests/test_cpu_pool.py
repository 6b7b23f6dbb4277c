"""The CPU runtime's thread pool (frontend/runtime/cpu_pool.py): every element of a kernel's outer loop is computed
exactly once whatever the thread count, including more threads than cores and extents that do not split evenly, and
back-to-back launches (workers spinning) and launches after an idle pause (workers asleep on the futex) both work."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
  import time
  import numpy as np
  from frontend import Tensor
  from frontend.device import Device
  rng = np.random.default_rng(0)
  for n in (1 << 20, 1_000_003, 65_537):
    a = rng.integers(-1000, 1000, n).astype(np.int32)  # integers: exact, whatever the compiler contracts
    b = rng.standard_normal((n // 61, 61)).astype(np.float32)
    for k in range(3):  # fresh values each time: a reused output buffer cannot hold the right answer already
      np.testing.assert_array_equal((Tensor(a) * 3 + k).numpy(), a * 3 + k)
      np.testing.assert_allclose(Tensor(b).sum(axis=1).numpy(), b.sum(axis=1), rtol=1e-5, atol=1e-5)
    time.sleep(0.3)  # past the spin window: the next launch wakes sleeping workers
  c = rng.integers(-5, 5, 70_001).astype(np.int32)
  for k in range(200):  # back to back: workers awake, claims racing with the caller's
    np.testing.assert_array_equal((Tensor(c) + k).numpy(), c + k)
  print("threads", Device["CPU"].threads)
""")


@pytest.mark.parametrize("threads", [2, 7])
def test_every_chunk_runs_once(threads):
  env = dict(os.environ, CPU_THREADS=str(threads), DEV="CPU")
  proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split() == ["threads", str(threads)]
