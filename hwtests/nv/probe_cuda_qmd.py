"""Measurement tool, not part of nvdrv: which QMD fields libcuda sets for the kernels of a CUDA graph (and for an eager
launch), to compare with what nvdrv.replay.CommandBuffer builds. Run on the GPU machine, where PyTorch (CUDA) is the
baseline:  python hwtests/nv/probe_cuda_qmd.py [out-dir]

How: PyTorch captures a CUDA graph of 100 dependent `x += 1` kernels (the graph of tools/bench_nv.py) and replays it;
libcuda's QMDs reach GPU memory through its pushbuffers (inline data, at any 4-byte offset) or are kept in memory mapped
into this process through the driver's device files. The probe reads every readable mapping of /dev/nvidia* named in
/proc/self/maps and reports each 4-byte aligned block that decodes as a plausible QMD V04_00 (QMD_MAJOR_VERSION 4,
QMD_TYPE 2, block and grid sizes in range, a program address), with nvdrv.qmd's field names and the two words before
it (a method header, when it came inline). The raw blocks go to out-dir/qmds.bin (384 bytes each) with their
positions in out-dir/qmds.json.
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


def candidates(words):
  """Word offsets k where words[k:k+96] passes looks_like_qmd, vectorised over every offset (numpy)."""
  import numpy as np
  w = np.frombuffer(words, np.uint32)
  n = len(w) - QMD_BYTES // 4
  if n <= 0:
    return []

  def at(i):
    return w[i:i + n]
  ok = ((at(18) >> 4) & 0xF) == 4                        # QMD_MAJOR_VERSION (583:580)
  ok &= ((at(0) >> 23) & 7) == 2                          # QMD_TYPE (25:23): 2, as the H100 needs (FACTS.md 11)
  block0, block1, block2 = at(36) & 0xFFFF, at(36) >> 16, at(37) & 0xFFFF
  ok &= (block0 >= 1) & (block0 <= 1024) & (block1 >= 1) & (block1 <= 1024) & (block2 >= 1) & (block2 <= 64)
  ok &= (block0 * block1 * block2) <= 1024
  ok &= (at(32) >= 1) & ((at(33) & 0xFFFF) >= 1) & ((at(34) & 0xFFFF) >= 1)  # GRID_WIDTH, HEIGHT, DEPTH
  ok &= (at(38) != 0) | ((at(39) & 0x1FFFFFF) != 0)      # PROGRAM_ADDRESS
  return list(np.nonzero(ok)[0])


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
    for k in candidates(data):
      w = words[k:k + QMD_BYTES // 4]
      q = Qmd("V04_00")
      q.words = array("I", w)
      before = [f"{x:#010x}" for x in words[max(k - 2, 0):k]]
      found.append({"mapping": path, "map_start": start, "offset": 4 * int(k), "before": before,
                    "fields": q.fields()})
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
    print(f"\n{len(items)} x (first at {first['mapping']} +{first['offset']:#x}, after words {first['before']}):")
    for name, value in sorted(first["fields"].items()):
      print(f"  {name} = {value:#x}")


if __name__ == "__main__":
  main()
