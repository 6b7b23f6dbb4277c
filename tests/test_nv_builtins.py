"""nvdrv.builtins: every copy16 variant the benchmark sweeps assembles with ptxas, and nvdisasm shows what it asked
for: `unroll` + 1 (the tail) 128-bit loads and stores, with the cache qualifiers mapped to their SASS forms. Whether
the bytes land right is checked on the GPU (hwtests/nv, tools/bench_nv.py --sweep-copy)."""
from __future__ import annotations

import subprocess

import pytest

from nvdrv.builtins import COPY_CONFIG, copy16_ptx
from nvdrv.compile import CompilerNotFound, compile_ptx, find_cuda_tool
from nvdrv.cubin import parse_cubin

NVDISASM = find_cuda_tool("nvdisasm")


def sass_memory_ops(ptx: str, tmp_path) -> list[str]:
  try:
    cubin = parse_cubin(compile_ptx(ptx))
  except CompilerNotFound as e:
    pytest.skip(str(e))
  if NVDISASM is None:
    pytest.skip("nvdisasm not found; pip install nvidia-cuda-nvdisasm")
  raw = tmp_path / "copy16.bin"
  raw.write_bytes(cubin.kernel("copy16").code)
  sass = subprocess.run([NVDISASM, "-b", "SM90", str(raw)], capture_output=True, text=True, check=True).stdout
  ops = [line.split("*/")[-1].strip().split()[0] for line in sass.splitlines() if "LDG" in line or "STG" in line]
  return [op for op in ops if not op.startswith("@")]


@pytest.mark.parametrize("unroll,load,store,want_load,want_store", [
  (COPY_CONFIG.unroll, COPY_CONFIG.load, COPY_CONFIG.store, None, None),
  (1, "", "", "LDG.E.128", "STG.E.128"),
  (4, ".nc", "", "LDG.E.128.CONSTANT", "STG.E.128"),
  (8, "", ".cs", "LDG.E.128", "STG.E.EF.128"),
])
def test_copy16_variants(unroll, load, store, want_load, want_store, tmp_path):
  ops = sass_memory_ops(copy16_ptx(unroll, load, store), tmp_path)
  loads, stores = [op for op in ops if op.startswith("LDG")], [op for op in ops if op.startswith("STG")]
  assert len(loads) == len(stores) == unroll + 1, ops
  assert all(op.endswith(".128") or ".128." in op for op in ops), ops
  if want_load:
    assert set(loads) == {want_load} and set(stores) == {want_store}, ops


def test_copy16_rejects_bad_variants():
  with pytest.raises(ValueError, match="unroll 0"):
    copy16_ptx(0)
  with pytest.raises(ValueError, match="'.weird'"):
    copy16_ptx(4, load=".weird")
