"""Staged qcomdrv tests for a real Adreno, in the order bring-up meets them: properties -> allocation and CPU mapping
-> a submission retiring its kgsl timestamp (fence written by CACHE_FLUSH_TS) -> the CP writing and polling memory
-> a timestamp round trip through CP_REG_TO_MEM -> a compute dispatch -> the frontend on DEV=QCOM. Every wait is
bounded (5 s); each stage names what it checks, so the first failure says how far bring-up got.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

KiB, MiB = 1 << 10, 1 << 20
SAXPY = """
__kernel __attribute__((reqd_work_group_size(64, 1, 1)))
void saxpy(__global float* restrict out, __global const float* restrict x, float a, uint n) {
  size_t i = get_global_id(0);
  if (i < n) out[i] = a * x[i] + out[i];
}
"""


def test_1_properties(dev):
  assert dev.chip.gen in ("a6xx", "a7xx") and dev.gmem_bytes > 0
  assert dev.version()[0] == 3  # KGSL_VERSION_MAJOR
  assert dev.reset_status() == 0, "the context starts without a reset"


@pytest.mark.parametrize("size", [1, 4 * KiB, 1 * MiB + 3, 64 * MiB])
def test_2_allocation(dev, size):
  buf = dev.alloc(size)
  assert buf.size >= size and buf.gpuaddr != 0 and buf.gpuaddr % 4096 == 0
  probe = np.random.default_rng(size).integers(0, 256, min(size, 4096), dtype=np.uint8)
  dev.view(buf, buf.size - probe.size, probe.size)[:] = probe.tobytes()  # the last page is backed and mapped
  assert bytes(dev.view(buf, buf.size - probe.size, probe.size)) == probe.tobytes()
  dev.free(buf)


def test_3_empty_submission_retires(dev):
  timestamp = dev.submit(dev.stream())
  dev.synchronize()  # waits for the kgsl timestamp, checks the reset status and the CACHE_FLUSH_TS fence
  assert timestamp == dev.last_timestamp


def test_4_cp_writes_and_polls_memory(dev):
  out = dev.alloc(4096)
  cs = dev.stream()
  cs.mem_write(out.gpuaddr, 0x12345678, 0x9ABCDEF0)
  cs.wait_reg_mem(out.gpuaddr, 0x12345678, function="WRITE_EQ")
  cs.mem_write(out.gpuaddr + 8, 1)
  dev.submit(cs)
  dev.synchronize()
  assert np.frombuffer(bytes(dev.view(out, 0, 12)), np.uint32).tolist() == [0x12345678, 0x9ABCDEF0, 1]
  dev.free(out)


def test_5_timestamp_round_trip(dev):
  first, second = dev.gpu_timestamp(), dev.gpu_timestamp()
  assert 0 < first < second, "CP_ALWAYS_ON_COUNTER read back by CP_REG_TO_MEM must advance"


def test_6_dispatch(dev, compiler):
  from qcomdrv.program import Program
  n = 1000
  rng = np.random.default_rng(0)
  x, y = rng.uniform(-2, 2, n).astype(np.float32), rng.uniform(-2, 2, n).astype(np.float32)
  out, xbuf = dev.alloc(4 * n), dev.alloc(4 * n)
  dev.view(out, 0, 4 * n)[:] = y.tobytes()
  dev.view(xbuf, 0, 4 * n)[:] = x.tobytes()
  saxpy = Program(dev, compiler.compile(SAXPY, "saxpy"))
  saxpy(out.gpuaddr, xbuf.gpuaddr, int(np.float32(1.5).view(np.uint32)), n, groups=(16, 1, 1), local=(64, 1, 1),
        wait=True)
  got = np.frombuffer(bytes(dev.view(out, 0, 4 * n)), np.float32)
  np.testing.assert_allclose(got, 1.5 * x + y, rtol=1e-6)


def test_7_frontend(dev, compiler):
  code = ("import numpy as np; from frontend import Tensor; "
          "print((Tensor(np.arange(8, dtype=np.float32)) * 2).sum().numpy())")
  env = dict(os.environ, DEV="QCOM")
  env.pop("QCOM_SIM", None)
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == "56.0"
