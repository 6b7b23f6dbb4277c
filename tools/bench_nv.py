"""NVIDIA benchmark: nvdrv against PyTorch (CUDA) on the same GPU, in the same run; prints a table and the ratios.

  python tools/bench_nv.py [--repeat N] [--sweep-copy] [--profile-launch]

Cases (issue targets in brackets): pinned host->device and device->host copies of 256 MiB [>= 0.9x PyTorch];
device->device copy of 1 GiB [>= 0.9x]; one tiny kernel from launch to the host seeing it complete [<= PyTorch's
launch + synchronize]; 100 dependent tiny kernels as one prebuilt command buffer [<= 0.8x a PyTorch CUDA graph replay
of 100 x+=1 kernels]; host CPU time to resubmit that buffer [< 20 us, independent of the kernel count].
Times are medians over --repeat runs after a warm-up. "ratio" is PyTorch time / nvdrv time (> 1: nvdrv is faster).
--sweep-copy times the SM copy kernel's variants (nvdrv.builtins.CopyConfig) on 1 GiB, each checked for correct
bytes; --profile-launch prints where the host CPU time of a tiny launch goes (cProfile, 20,000 launches).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

MiB, GiB = 1 << 20, 1 << 30


def median_time(fn, repeat: int, warmup: int = 3) -> float:
  for _ in range(warmup):
    fn()
  samples = []
  for _ in range(repeat):
    t0 = time.perf_counter()
    fn()
    samples.append(time.perf_counter() - t0)
  return statistics.median(samples)


def ours(repeat: int) -> dict[str, float]:
  from hwtests.nv import kernels
  from nvdrv.compile import compile_ptx
  from nvdrv.device import NVDevice
  from nvdrv.program import Program
  from nvdrv.replay import CommandBuffer
  dev = NVDevice()
  res = {}
  n = 256 * MiB
  host, vram = dev.mem.alloc_host(n), dev.mem.alloc_device(n)
  dev.osif.view(host.cpu, n)[:] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).data
  res["h2d"] = n / median_time(lambda: dev.memcpy(vram.va, host.va, n), repeat)
  res["d2h"] = n / median_time(lambda: dev.memcpy(host.va, vram.va, n), repeat)
  big_a, big_b = dev.mem.alloc_device(GiB), dev.mem.alloc_device(GiB)
  res["d2d"] = 2 * GiB / median_time(lambda: dev.copy_device(big_b, big_a, GiB), repeat)
  res["d2d_ce"] = 2 * GiB / median_time(lambda: dev.memcpy(big_b.va, big_a.va, GiB), repeat)
  inc = Program(dev, compile_ptx(kernels.INCREMENT), "increment")
  x = dev.mem.alloc_device(4096)
  dev.copyin(x, np.zeros(1024, np.uint32))
  res["launch"] = median_time(lambda: inc(x, 1024, grid=(4, 1, 1), block=(256, 1, 1), wait=True), repeat * 10)
  res["launch_cpu"] = median_time(lambda: inc(x, 1024, grid=(4, 1, 1), block=(256, 1, 1)), repeat * 10, warmup=0)
  dev.compute.synchronize()
  expected = 3 + repeat * 20
  # the barrier between dependent launches x the end-of-grid membar (of every grid in barrier mode, of every grid
  # but the last in chain and dep modes, whose last grid keeps the system-scope one); -prefetch and -chasing set the
  # QMD link bits of nvdrv.replay.CommandBuffer(prefetch=, task_chasing=)
  variants = [("none", 1), ("compute", 3), ("compute", 1), ("chain", 3), ("dep", 1), ("dep", 3), ("dep", 0),
              ("dep-targeted", 3), ("dep-targeted", 0), ("dep-prefetch", 3), ("dep-chasing", 3),
              ("dep-prefetch-chasing", 3)]
  for kind, membar in variants:
    dev.qmd_invalidate = "targeted" if kind.endswith("-targeted") else "all"
    kind_base = kind.split("-")[0]
    chained = kind_base in ("chain", "dep")
    dev.barrier_kind = "compute" if chained else kind_base
    dev.cwd_membar = 1 if chained else membar
    cb = CommandBuffer(dev, mode=kind_base if chained else "barrier", inner_membar=membar,
                       prefetch="-prefetch" in kind, task_chasing="-chasing" in kind)
    for _ in range(100):
      cb.launch(inc, x, 1024, grid=(4, 1, 1), block=(256, 1, 1))
    try:
      res[f"graph100_{kind}_{membar}"] = median_time(lambda: dev.compute.wait(cb.submit(), timeout=3), repeat * 5)
    except Exception as e:
      print(f"variant {kind}/{membar} failed: {type(e).__name__}: {str(e)[:300]}")
      res[f"graph100_{kind}_{membar}"], res[f"correct_{kind}_{membar}"] = float("nan"), False
      dev.recover()
      dev.copyin(x, np.full(1024, expected, np.uint32))
      continue
    expected += 100 * (3 + repeat * 5)
    got = dev.copyout(x, 4096).view(np.uint32)
    res[f"correct_{kind}_{membar}"] = bool(np.all(got == expected))
    if not res[f"correct_{kind}_{membar}"]:
      dev.copyin(x, np.full(1024, expected, np.uint32))
  dev.barrier_kind, dev.cwd_membar, dev.qmd_invalidate = "compute", 1, "all"  # NVDevice's defaults
  res["graph100"] = res["graph100_dep_3"]  # what TinyJit on NV builds (frontend.runtime.nv.NVGraph)
  dev.copyin(x, np.zeros(1024, np.uint32))
  expected = 0
  cb = CommandBuffer(dev, mode="dep")
  for _ in range(100):
    cb.launch(inc, x, 1024, grid=(4, 1, 1), block=(256, 1, 1))
  submit_times = []
  for _ in range(repeat * 5):
    dev.compute.wait(cb.last_value)
    t0 = time.perf_counter()
    cb.submit()
    submit_times.append(time.perf_counter() - t0)
  dev.compute.synchronize()
  res["resubmit_cpu"] = statistics.median(submit_times)
  expected += 100 * repeat * 5
  got = dev.copyout(x, 4096).view(np.uint32)
  res["correct"] = bool(np.all(got == expected))
  return res


def sweep_copy(repeat: int) -> None:
  """Every CopyConfig variant on a 1 GiB device->device copy: GB/s (read + write) and whether the bytes are right."""
  import itertools

  from nvdrv.builtins import COPY_CONFIG, CopyConfig
  from nvdrv.device import NVDevice
  dev = NVDevice()
  src, dst, zero = dev.mem.alloc_device(GiB), dev.mem.alloc_device(GiB), dev.mem.alloc_device(GiB)
  pattern = np.random.default_rng(1).integers(0, 2**32, GiB // 4, dtype=np.uint32)
  dev.copyin(src, pattern)
  dev.copyin(zero, np.zeros(GiB // 4, np.uint32))
  probes = [0, GiB // 2 - 4096, GiB - MiB]
  print(f"{'unroll':>6s} {'load':>5s} {'store':>5s} {'block':>5s} {'per SM':>6s} {'GB/s':>8s} correct")
  for unroll, load, store, block, per_sm in itertools.product((4, 8), ("", ".nc"), ("", ".cs"), (256, 1024),
                                                               (4, 8, 16)):
    cfg = CopyConfig(unroll, load, store, block, per_sm)
    kernel, geometry = dev.copy_kernel(cfg), dev.copy_geometry(GiB // 16, cfg)
    dev.memcpy(dst.va, zero.va, GiB)
    seconds = median_time(lambda: kernel(dst, src, GiB // 16, **geometry, wait=True), repeat)
    ok = all(np.array_equal(dev.copyout(dst, MiB, offset=p).view(np.uint32), pattern[p // 4:(p + MiB) // 4])
             for p in probes)
    mark = "  <- COPY_CONFIG" if cfg == COPY_CONFIG else ""
    print(f"{unroll:6d} {load:>5s} {store:>5s} {block:5d} {per_sm:6d} {2 * GiB / seconds * 1e-9:8.1f} {ok}{mark}")


def profile_launch() -> None:
  """cProfile of 20,000 launches of a tiny kernel (no wait), top functions by own time."""
  import cProfile
  import pstats

  from hwtests.nv import kernels
  from nvdrv.compile import compile_ptx
  from nvdrv.device import NVDevice
  from nvdrv.program import Program
  dev = NVDevice()
  inc = Program(dev, compile_ptx(kernels.INCREMENT), "increment")
  x = dev.mem.alloc_device(4096)
  for _ in range(100):
    inc(x, 1024, grid=(4, 1, 1), block=(256, 1, 1))
  dev.compute.synchronize()
  prof = cProfile.Profile()
  t0 = time.perf_counter()
  prof.enable()
  for _ in range(20000):
    inc(x, 1024, grid=(4, 1, 1), block=(256, 1, 1))
  prof.disable()
  print(f"20,000 launches: {(time.perf_counter() - t0) / 20000 * 1e6:.2f} us each under the profiler")
  dev.compute.synchronize()
  pstats.Stats(prof).sort_stats("tottime").print_stats(14)


def torch_side(repeat: int) -> dict[str, float]:
  import torch
  res = {}
  n = 256 * MiB
  host = torch.empty(n, dtype=torch.uint8, pin_memory=True)
  dev = torch.empty(n, dtype=torch.uint8, device="cuda")

  def sync(fn):
    def run():
      fn()
      torch.cuda.synchronize()
    return run
  res["h2d"] = n / median_time(sync(lambda: dev.copy_(host, non_blocking=True)), repeat)
  res["d2h"] = n / median_time(sync(lambda: host.copy_(dev, non_blocking=True)), repeat)
  a, b = torch.empty(GiB, dtype=torch.uint8, device="cuda"), torch.empty(GiB, dtype=torch.uint8, device="cuda")
  res["d2d"] = 2 * GiB / median_time(sync(lambda: b.copy_(a)), repeat)
  x = torch.zeros(1024, dtype=torch.int32, device="cuda")
  res["launch"] = median_time(sync(lambda: x.add_(1)), repeat * 10)
  stream = torch.cuda.Stream()
  with torch.cuda.stream(stream):
    for _ in range(3):
      x.add_(1)
  torch.cuda.synchronize()
  graph = torch.cuda.CUDAGraph()
  with torch.cuda.graph(graph):
    for _ in range(100):
      x.add_(1)
  res["graph100"] = median_time(sync(graph.replay), repeat * 5)
  times = []
  for _ in range(repeat * 5):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    graph.replay()
    times.append(time.perf_counter() - t0)
  torch.cuda.synchronize()
  res["resubmit_cpu"] = statistics.median(times)
  return res


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeat", type=int, default=20)
  parser.add_argument("--sweep-copy", action="store_true", help="time every SM copy kernel variant and stop")
  parser.add_argument("--profile-launch", action="store_true", help="profile the host side of a launch and stop")
  args = parser.parse_args()
  if args.sweep_copy or args.profile_launch:
    if args.sweep_copy:
      sweep_copy(args.repeat)
    if args.profile_launch:
      profile_launch()
    return
  mine = ours(args.repeat)
  theirs = torch_side(args.repeat)
  rows = [("h2d", "host->device 256 MiB (pinned)", "GB/s", 1e-9, True),
          ("d2h", "device->host 256 MiB (pinned)", "GB/s", 1e-9, True),
          ("d2d", "device->device 1 GiB (read+write)", "GB/s", 1e-9, True),
          ("launch", "tiny kernel, launch to host sees done", "us", 1e6, False),
          ("graph100", "100 dependent kernels, prebuilt buffer", "us", 1e6, False),
          ("resubmit_cpu", "host CPU time to resubmit that buffer", "us", 1e6, False)]
  print(f"{'case':42s} {'nvdrv':>12s} {'pytorch':>12s} {'ratio':>7s}")
  for key, label, unit, scale, higher_better in rows:
    ratio = mine[key] / theirs[key] if higher_better else theirs[key] / mine[key]
    print(f"{label:42s} {mine[key] * scale:9.2f} {unit:<3s}{theirs[key] * scale:9.2f} {unit:<3s}{ratio:6.2f}x")
  print(f"nvdrv launch host CPU time (no wait): {mine['launch_cpu'] * 1e6:.1f} us")
  print(f"nvdrv results correct: {mine['correct']}; copy engine device->device: {mine['d2d_ce'] * 1e-9:.1f} GB/s")
  for key in sorted(k for k in mine if k.startswith("graph100_")):
    variant = key.removeprefix("graph100_")
    print(f"100 kernels, barrier_membar={variant}: {mine[key] * 1e6:.1f} us, correct={mine['correct_' + variant]}")


if __name__ == "__main__":
  main()
