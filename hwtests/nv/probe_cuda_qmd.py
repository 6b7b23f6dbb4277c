"""Measurement tool, not part of nvdrv: which QMD fields libcuda sets for the kernels of a CUDA graph (and for an eager
launch), to compare with what nvdrv.replay.CommandBuffer builds. Run on the GPU machine, where PyTorch (CUDA) is the
baseline:  python hwtests/nv/probe_cuda_qmd.py [out-dir]

How: PyTorch captures a CUDA graph of 100 dependent `x += 1` kernels (the graph of tools/bench_nv.py) and replays it;
libcuda keeps the QMDs it built in memory mapped into this process through the driver's device files. The probe reads
every readable mapping of /dev/nvidia* named in /proc/self/maps and reports each 256-byte aligned block that decodes
as a QMD V04_00 (QMD_MAJOR_VERSION 4, block and grid sizes in range, a program address), with nvdrv.qmd's field
names. The raw blocks go to out-dir/qmds.bin (384 bytes each) with their positions in out-dir/qmds.json.
Observation of the reference only: nothing here is used by nvdrv.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import sys
from array import array

QMD_BYTES = 384


def mappings() -> list[tuple[int, int, str, str]]:
  out = []
  with open("/proc/self/maps") as f:
    for line in f:
      m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)", line)
      if m and "/dev/nvidia" in m.group(4) and m.group(3).startswith("r"):
        out.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4).strip()))
  return out


def looks_like_qmd(w) -> bool:
  major = (w[18] >> 20) & 0xF  # QMD_MAJOR_VERSION: bits 583:580
  block = w[36] & 0xFFFF  # CTA_THREAD_DIMENSION0: bits 1167:1152
  grid = w[32]  # GRID_WIDTH: bits 1055:1024
  program = w[38] | (w[39] & 0x1FFFFFF) << 32  # PROGRAM_ADDRESS: bits 1272:1216
  return major == 4 and 1 <= block <= 1024 and 1 <= grid < 1 << 31 and program != 0


def main() -> None:
  import torch

  from nvdrv.qmd import Qmd
  out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
  os.makedirs(out_dir, exist_ok=True)
  x = torch.zeros(1024, device="cuda")
  s = torch.cuda.Stream()
  with torch.cuda.stream(s):
    for _ in range(3):
      x.add_(1)
  torch.cuda.current_stream().wait_stream(s)
  g = torch.cuda.CUDAGraph()
  with torch.cuda.graph(g):
    for _ in range(100):
      x.add_(1)
  for _ in range(5):
    g.replay()
  y = torch.zeros(3 * 1000 + 7, device="cuda")  # an eager launch of another size, for comparison
  y.mul_(2)
  torch.cuda.synchronize()
  print(f"x[0] = {x[0].item()} (expected {3 + 500})", flush=True)

  found, blobs = [], bytearray()
  for start, end, perms, path in mappings():
    size = end - start
    print(f"scan {start:#x}-{end:#x} {perms} {size >> 10} KiB {path}", flush=True)
    if size > 256 << 20:
      print("  skipped: larger than 256 MiB", flush=True)
      continue
    data = ctypes.string_at(start, size)
    words = array("I", data)
    for off in range(0, size - QMD_BYTES + 1, 256):
      w = words[off // 4:(off + QMD_BYTES) // 4]
      if looks_like_qmd(w):
        q = Qmd("V04_00")
        q.words = array("I", w)
        found.append({"mapping": path, "map_start": start, "offset": off, "fields": q.fields()})
        blobs += bytes(w)
  with open(os.path.join(out_dir, "qmds.bin"), "wb") as f:
    f.write(blobs)
  with open(os.path.join(out_dir, "qmds.json"), "w") as f:
    json.dump(found, f, indent=1)
  print(f"{len(found)} QMD-shaped blocks")
  seen = {}
  for item in found:  # one line per distinct field set (the 100 graph QMDs differ only in pointers)
    key = tuple(sorted((k, v) for k, v in item["fields"].items() if "POINTER" not in k and "ADDR" not in k
                       and "PROGRAM_ADDRESS" not in k))
    seen.setdefault(key, []).append(item)
  for key, items in seen.items():
    first = items[0]
    print(f"\n{len(items)} x (first at {first['mapping']} +{first['offset']:#x}):")
    for name, value in sorted(first["fields"].items()):
      print(f"  {name} = {value:#x}")


if __name__ == "__main__":
  main()
