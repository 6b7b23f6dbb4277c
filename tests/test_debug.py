"""DEBUG levels (frontend/realize.py), read from the environment at each realize: 1 prints the kernel count and time
of a realize, 2 adds one line per kernel (name, launch dims, time, GFLOP/s, GB/s), 3 the kernel IR and 4 the C source
of each kernel as it is compiled.

The IR and source print on a compile, so each test starts from an empty in-memory kernel cache.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from compiler.ir import print_ir
from compiler.schedule import Scheduler
from frontend import realize
from frontend.tensor import Tensor

REALIZE_LINE = re.compile(r"^realize: (\d+) kernels in ([\d.]+) ms$")
KERNEL_LINE = re.compile(r"^\*\*\* (?P<name>[A-Za-z_]\w*)\s+global=(?P<global>\d+)\s+threads=(?P<threads>\d+)\s+"
                         r"lanes=(?P<lanes>\d+)\s+(?P<us>[\d.]+) us\s+(?P<gflops>[\d.]+) GFLOP/s\s+"
                         r"(?P<gbs>[\d.]+) GB/s$")


@pytest.fixture
def cache(monkeypatch) -> dict:
  fresh: dict = {}
  monkeypatch.setattr(realize, "kernel_cache", fresh)
  return fresh


def two_kernel_graph(seed: int = 0) -> Tensor:
  """Two kernels on (64, 256): an elementwise one made contiguous, then a row max fused with its epilogue."""
  x = Tensor(np.random.default_rng(seed).standard_normal((64, 256)).astype(np.float32))
  y = (x * 2 + 1).contiguous()
  return (y - y.max(-1, keepdim=True)).exp2()


def run(monkeypatch, capsys, level: int | None, out: Tensor) -> tuple[list[str], int]:
  """(the lines printed while realizing out with DEBUG=level, the kernels launched)."""
  if level is None:
    monkeypatch.delenv("DEBUG", raising=False)
  else:
    monkeypatch.setenv("DEBUG", str(level))
  before = realize.STATS["kernels"]
  capsys.readouterr()
  out.realize()
  text = capsys.readouterr().out
  monkeypatch.delenv("DEBUG", raising=False)
  return text.splitlines(), realize.STATS["kernels"] - before


@pytest.mark.parametrize("level", [None, 0])
def test_quiet_by_default(monkeypatch, capsys, cache, level):
  lines, kernels = run(monkeypatch, capsys, level, two_kernel_graph())
  assert lines == [] and kernels == 2


def test_debug1_prints_kernel_count_and_time(monkeypatch, capsys, cache):
  out = two_kernel_graph()
  lines, kernels = run(monkeypatch, capsys, 1, out)
  assert len(lines) == 1, lines
  match = REALIZE_LINE.match(lines[0])
  assert match, lines[0]
  assert int(match.group(1)) == kernels == 2
  assert float(match.group(2)) > 0


def test_debug1_silent_when_nothing_runs(monkeypatch, capsys, cache):
  out = two_kernel_graph()
  out.realize()
  assert run(monkeypatch, capsys, 1, out) == ([], 0)


def test_debug2_prints_one_line_per_kernel(monkeypatch, capsys, cache):
  out = two_kernel_graph()
  lines, kernels = run(monkeypatch, capsys, 2, out)
  kernel_lines = [KERNEL_LINE.match(line) for line in lines if line.startswith("***")]
  assert len(kernel_lines) == kernels == 2, lines
  assert REALIZE_LINE.match(lines[-1])
  programs = {program.info.name: program for program, _ in cache.values()}
  for match in kernel_lines:
    assert match, lines
    program = programs[match["name"]]
    info = program.info
    assert int(match["global"]) == info.global_extent
    assert int(match["lanes"]) == info.lanes
    assert int(match["threads"]) == program.threads
    us = float(match["us"])
    assert us > 0
    # the rates follow from the estimated work and the printed time (rounded to 0.1 us)
    assert float(match["gflops"]) == pytest.approx(info.ops / (us * 1e3), rel=0.05, abs=0.02)
    assert float(match["gbs"]) == pytest.approx(info.bytes / (us * 1e3), rel=0.05, abs=0.02)


def test_debug3_prints_kernel_ir(monkeypatch, capsys, cache):
  out = two_kernel_graph()
  items = Scheduler(lambda n: n in realize.realized).schedule([out.lazydata])
  texts = [print_ir(item.ast) for item in items if item.ast is not None]
  lines, _ = run(monkeypatch, capsys, 3, out)
  printed = "\n".join(lines)
  assert sum(line.startswith("--- kernel ") for line in lines) == 2
  for text in texts:
    assert text in printed
  assert "#include" not in printed
  assert len([line for line in lines if line.startswith("***")]) == 2  # level 3 includes level 2


def test_debug3_prints_ir_only_when_compiling(monkeypatch, capsys, cache):
  run(monkeypatch, capsys, None, two_kernel_graph(seed=1))
  lines, _ = run(monkeypatch, capsys, 3, two_kernel_graph(seed=2))  # same kernels: cache hits
  assert not any(line.startswith("--- kernel ") for line in lines)
  assert len([line for line in lines if line.startswith("***")]) == 2


def test_debug4_prints_c_source(on_cpu, monkeypatch, capsys, cache):
  out = two_kernel_graph()
  lines, _ = run(monkeypatch, capsys, 4, out)
  printed = "\n".join(lines)
  names = [program.info.name for program, _ in cache.values()]
  assert len(names) == 2
  for name in names:
    assert re.search(rf"^void {name}\(.*long long start, long long end\) {{$", printed, re.MULTILINE), printed
    assert f"--- kernel {name} ---" in printed
  for _, source in cache.values():
    assert source.strip() in printed
  assert printed.count("#include <math.h>") == 2
