"""Staged NVIDIA bring-up check: each stage prints what it did, so a failure names the first step that broke.

  python tools/nv_bringup.py [--cubin FILE --kernel NAME]

Stages: device objects -> host semaphore release on the compute channel -> copy engine round trip ->
BAR1 CPU mapping of device memory -> (with a cubin) a kernel launch per QMD version.
"""
from __future__ import annotations

import argparse
import struct
import time
import traceback

import numpy as np


def stage(name):
  def wrap(fn):
    def run(*args):
      t0 = time.perf_counter()
      try:
        out = fn(*args)
        print(f"[ok]   {name} ({(time.perf_counter() - t0) * 1e3:.1f} ms)", flush=True)
        return out
      except Exception as e:
        print(f"[FAIL] {name}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
        raise
    return run
  return wrap


@stage("device bring-up")
def bring_up():
  from nvdrv.device import NVDevice
  dev = NVDevice()
  print("      ", dev.describe())
  return dev


@stage("semaphore release on compute and copy channels")
def semaphores(dev):
  from nvdrv.pushbuf import PushBuffer
  for ch in (dev.compute, dev.copy):
    ch.wait(ch.submit(PushBuffer()), timeout=5.0)
  print(f"       compute at {dev.compute.completed}, copy at {dev.copy.completed}")


@stage("copy engine: host -> device -> host, 64 MiB")
def copy_round_trip(dev):
  from nvdrv.pushbuf import PushBuffer
  n = 64 << 20
  src, dst = dev.mem.alloc_host(n), dev.mem.alloc_host(n)
  vram = dev.mem.alloc_device(n)
  data = np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8)
  dev.osif.view(src.cpu, n)[:] = data.tobytes()
  t0 = time.perf_counter()
  dev.copy.wait(dev.copy.submit(PushBuffer().copy(vram.va, src.va, n).copy(dst.va, vram.va, n)))
  dt = time.perf_counter() - t0
  back = np.frombuffer(dev.osif.view(dst.cpu, n), np.uint8)
  assert np.array_equal(back, data), f"{int((back != data).sum())} bytes differ"
  print(f"       {2 * n / dt / 1e9:.1f} GB/s for two {n >> 20} MiB copies")
  for m in (src, dst, vram):
    dev.mem.free(m)


@stage("BAR1: CPU mapping of device memory")
def bar1(dev):
  from nvdrv.pushbuf import PushBuffer
  n = 4 << 20
  vram = dev.mem.alloc_device(n, cpu_access=True)
  host = dev.mem.alloc_host(n)
  data = np.arange(n // 4, dtype=np.uint32)
  dev.osif.view(vram.cpu, n)[:] = data.tobytes()
  dev.copy.wait(dev.copy.submit(PushBuffer().copy(host.va, vram.va, n)))
  back = np.frombuffer(dev.osif.view(host.cpu, n), np.uint32)
  assert np.array_equal(back, data), "BAR1 write then copy-engine read differs"
  dev.mem.free(vram)
  dev.mem.free(host)


def launch_raw(dev, cubin_path, kernel, version):
  from elftools.elf.elffile import ELFFile

  from nvdrv import qmd
  from nvdrv.pushbuf import PushBuffer
  with open(cubin_path, "rb") as f:
    elf = ELFFile(f)
    text = elf.get_section_by_name(f".text.{kernel}")
    code, registers = text.data(), text["sh_info"] >> 24
  prog = dev.mem.alloc_device(len(code) + 4096, cpu_access=True)
  dev.osif.view(prog.cpu, len(code))[:] = code
  out = dev.mem.alloc_host(4096)
  view = dev.osif.view(out.cpu, 4096)
  view[:] = b"\xff" * 4096
  cbuf = dev.mem.alloc_host(4096)
  cbuf_bytes = bytes(0x210) + struct.pack("<QI", out.va, 0x1234)
  dev.osif.view(cbuf.cpu, len(cbuf_bytes))[:] = cbuf_bytes
  q = qmd.build(version, program=prog.va, registers=max(registers, 16), grid=(1, 1, 1), block=(32, 1, 1),
                shared_bytes=0, cbuf0=cbuf.va, cbuf0_size=0x220, local_bytes=0, max_shared=228 << 10)
  qmem = dev.mem.alloc_host(4096)
  dev.osif.view(qmem.cpu, q.nbytes)[:] = q.tobytes()
  dev.compute.wait(dev.compute.submit(PushBuffer().invalidate_caches().launch(qmem.va)), timeout=5.0)
  got = struct.unpack_from("<I", view, 0)[0]
  print(f"       QMD {version}: out[0] = 0x{got:x}")
  return got == 0x1234


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cubin")
  parser.add_argument("--kernel", default="k")
  args = parser.parse_args()
  dev = bring_up()
  semaphores(dev)
  copy_round_trip(dev)
  bar1(dev)
  if args.cubin:
    for version in ("V03_00", "V04_00"):
      try:
        ok = stage(f"launch with QMD {version}")(launch_raw)(dev, args.cubin, args.kernel, version)
        print(f"       -> {'CORRECT' if ok else 'wrong value'}")
      except Exception:
        from nvdrv.device import NVDevice
        dev = NVDevice()


if __name__ == "__main__":
  main()
