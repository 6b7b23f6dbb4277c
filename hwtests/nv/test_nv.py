"""nvdrv on a real NVIDIA GPU (written for the H100): every check compares against numpy or a known value.

Run on the GPU machine: python -m pytest -q hwtests/nv
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


def test_version_and_classes(dev):
  assert dev.info.driver_version.split(".")[0] == "580"
  assert (dev.info.gpfifo_class, dev.info.compute_class, dev.info.copy_class) == (0xC86F, 0xCBC0, 0xC8B5)
  assert len(dev.uuid) == 16


@pytest.mark.parametrize("size", [1 * KiB, 64 * KiB, 1 * MiB, 2 * MiB + 1, 256 * MiB, 1 * GiB, 8 * GiB])
def test_device_allocations(dev, size):
  mem = dev.mem.alloc_device(size)
  assert mem.size >= size and mem.va % (64 * KiB) == 0
  probe = np.random.default_rng(size).integers(0, 256, 4096, dtype=np.uint8)
  dev.copyin(mem, probe, offset=mem.size - 4096)  # the last page is really backed and mapped
  assert np.array_equal(dev.copyout(mem, 4096, offset=mem.size - 4096), probe)
  dev.mem.free(mem)


@pytest.mark.parametrize("size", [1 * KiB, 3 * MiB, 1 * GiB])
def test_host_allocations(dev, size):
  mem = dev.mem.alloc_host(size)
  dev.osif.write(mem.cpu + size - 1, b"\x5a")
  assert dev.osif.read(mem.cpu + size - 1, 1) == b"\x5a"
  dev.mem.free(mem)


@pytest.mark.parametrize("size", [1, 3, 4096, 1 * MiB + 7, 64 * MiB, 1 * GiB])
def test_copy_round_trip(dev, size):
  data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
  a, b = dev.mem.alloc_device(size), dev.mem.alloc_device(size)
  dev.copyin(a, data)
  dev.memcpy(b.va, a.va, size)  # device -> device
  back = dev.copyout(b, size)
  assert np.array_equal(back, data), f"{int((back != data).sum())} of {size} bytes differ"
  dev.mem.free(a)
  dev.mem.free(b)


@pytest.mark.parametrize("size", [16, 1000, 64 * MiB + 5])
def test_copy_device_on_sms(dev, size):
  data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
  a, b = dev.mem.alloc_device(size), dev.mem.alloc_device(size)
  dev.copyin(a, data)
  dev.copy_device(b, a, size)
  assert np.array_equal(dev.copyout(b, size), data)
  dev.mem.free(a)
  dev.mem.free(b)


def test_saxpy(dev, programs):
  n = 1_000_003
  rng = np.random.default_rng(7)
  x, y = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
  gx, gy = dev.mem.alloc_device(4 * n), dev.mem.alloc_device(4 * n)
  dev.copyin(gx, x)
  dev.copyin(gy, y)
  programs["saxpy"](gx, gy, 2.5, n, grid=((n + 255) // 256, 1, 1), block=(256, 1, 1), wait=True)
  got = dev.copyout(gy).view(np.float32)[:n]
  np.testing.assert_allclose(got, np.float32(2.5) * x + y, rtol=1e-6, atol=1e-6)
  dev.mem.free(gx)
  dev.mem.free(gy)


def test_copyin_without_host_wait_is_ordered_on_the_gpu(dev, programs):
  """copyin(wait=False) returns once the copy is queued: the kernel after it must still read the new data (the compute
  channel acquires the copy's value), and the next copyin into the same buffer must not overwrite it while that
  kernel reads (the copy channel acquires the compute value). 4 MiB per copy, so a race would show."""
  n = 1 << 20
  rng = np.random.default_rng(3)
  batches = [rng.integers(0, 1000, n).astype(np.float32) for _ in range(12)]
  src, acc = dev.mem.alloc_device(4 * n), dev.mem.alloc_device(4 * n)
  dev.copyin(acc, np.zeros(n, np.float32))
  for batch in batches:
    dev.copyin(src, batch, wait=False)
    programs["saxpy"](src, acc, 1.0, n, grid=(n // 256, 1, 1), block=(256, 1, 1))
  got = dev.copyout(acc).view(np.float32)
  assert np.array_equal(got, np.sum(batches, axis=0, dtype=np.float32))
  dev.mem.free(src)
  dev.mem.free(acc)


def test_ten_thousand_launches(dev, programs):
  n = 4096
  buf = dev.mem.alloc_device(4 * n)
  dev.copyin(buf, np.zeros(n, np.uint32))
  for _ in range(10_000):
    programs["increment"](buf, n, grid=(n // 256, 1, 1), block=(256, 1, 1))
  dev.compute.synchronize()
  assert np.array_equal(dev.copyout(buf, 4 * n).view(np.uint32), np.full(n, 10_000, np.uint32))
  dev.mem.free(buf)


def test_local_memory(dev, programs):
  out = dev.mem.alloc_device(4 * 256)
  programs["local_array"](out, grid=(1, 1, 1), block=(256, 1, 1), wait=True)
  t = np.arange(256)[:, None]
  arr = (t * np.arange(64)[None, :]) % 7
  idx = (np.arange(64)[None, :] * 37 + t) & 63
  expect = np.take_along_axis(arr, idx, axis=1).sum(axis=1).astype(np.uint32)
  assert np.array_equal(dev.copyout(out, 4 * 256).view(np.uint32), expect)
  dev.mem.free(out)


@pytest.mark.parametrize("threads", [32, 1024])
def test_dynamic_shared_memory(dev, programs, threads):
  blocks = 7
  data = np.random.default_rng(threads).integers(0, 2**32, blocks * threads, dtype=np.uint32)
  src, dst = dev.mem.alloc_device(data.nbytes), dev.mem.alloc_device(data.nbytes)
  dev.copyin(src, data)
  programs["reverse_shared"](src, dst, grid=(blocks, 1, 1), block=(threads, 1, 1), dynamic_shared=4 * threads,
                             wait=True)
  expect = data.reshape(blocks, threads)[:, ::-1].reshape(-1)
  assert np.array_equal(dev.copyout(dst, data.nbytes).view(np.uint32), expect)


def test_bad_launches_raise_before_submitting(dev, programs):
  buf = dev.mem.alloc_device(4096)
  saxpy = programs["saxpy"]
  before = dev.compute.value
  with pytest.raises(ValueError, match="grid"):
    saxpy(buf, buf, 1.0, 1, grid=(2**31, 1, 1), block=(1, 1, 1))
  with pytest.raises(ValueError, match="1024-thread"):
    saxpy(buf, buf, 1.0, 1, grid=(1, 1, 1), block=(1025, 1, 1))
  with pytest.raises(ValueError, match="shared memory"):
    programs["reverse_shared"](buf, buf, grid=(1, 1, 1), block=(32, 1, 1), dynamic_shared=300 * 1024)
  with pytest.raises(ValueError, match="takes 4 parameters"):
    saxpy(buf, buf, 1.0, grid=(1, 1, 1), block=(1, 1, 1))
  with pytest.raises(ValueError, match="4 bytes; got 8"):
    saxpy(buf, buf, b"\0" * 8, 1, grid=(1, 1, 1), block=(1, 1, 1))
  dev.mem.free(buf)
  with pytest.raises(ValueError, match="use after free"):
    saxpy(buf, buf, 1.0, 1, grid=(1, 1, 1), block=(1, 1, 1))
  with pytest.raises(ValueError, match="use after free"):
    dev.mem.free(buf)
  with pytest.raises(ValueError, match="use after free"):
    dev.copyin(buf, b"1234")
  assert dev.compute.value == before, "a rejected launch reached the GPU"


FAULT_SCRIPT = """
from nvdrv.compile import compile_ptx
from nvdrv.device import NVDevice
from nvdrv.errors import NVFault
from nvdrv.program import Program
from hwtests.nv import kernels
dev = NVDevice()
load_from = Program(dev, compile_ptx(kernels.LOAD_FROM), "load_from")
out = dev.mem.alloc_host(4096)
try:
  load_from(0x10_0000_0000, out, grid=(1, 1, 1), block=(1, 1, 1), wait=True)  # 64 GiB: never mapped
  print("NO FAULT")
except NVFault as e:
  print("FAULT", e)
dev.recover()
from hwtests.nv.test_nv import test_saxpy
test_saxpy(dev, {"saxpy": Program(dev, compile_ptx(kernels.SAXPY), "saxpy")})  # raises if wrong
print("OK")
"""


def test_fault_then_recover(dev):
  """A kernel that reads an unmapped address raises NVFault naming the Xid and the channel; after recover() the same
  process runs correct work. In a process of its own, so that nothing of the fault can reach the devices other tests
  in this session use."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.run([sys.executable, "-c", FAULT_SCRIPT], capture_output=True, text=True, env=env, timeout=120)
  print(proc.stdout, proc.stderr)
  lines = proc.stdout.strip().splitlines()
  assert proc.returncode == 0 and lines and lines[-1] == "OK", proc.stdout + proc.stderr
  fault = next(line for line in lines if line.startswith(("FAULT", "NO FAULT")))
  assert fault.startswith("FAULT") and "Xid" in fault and "compute" in fault, fault


def test_two_processes_at_once(dev):
  script = textwrap.dedent("""
    import numpy as np
    from nvdrv.device import NVDevice
    from nvdrv.compile import compile_ptx
    from nvdrv.program import Program
    from hwtests.nv import kernels
    dev = NVDevice()
    inc = Program(dev, compile_ptx(kernels.INCREMENT), "increment")
    n = 1 << 20
    buf = dev.mem.alloc_device(4 * n)
    dev.copyin(buf, np.arange(n, dtype=np.uint32))
    for _ in range(500):
      inc(buf, n, grid=(n // 256, 1, 1), block=(256, 1, 1))
    ok = np.array_equal(dev.copyout(buf).view(np.uint32), np.arange(n, dtype=np.uint32) + 500)
    print("OK" if ok else "WRONG")
  """)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
  procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env) for _ in range(2)]
  outputs = [p.communicate(timeout=120)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), outputs
  assert all(o.strip().endswith("OK") for o in outputs), outputs
