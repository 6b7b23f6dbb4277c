"""The kernel cache (frontend/realize.py): compiled programs are keyed by (device, canonical kernel text), so running
the same graph twice compiles once and a new shape or op compiles a new program; the CPU runtime's disk cache lets a
fresh process skip the C compiler.

Each test starts from an empty in-memory cache (monkeypatched), so counts do not depend on what ran before.
"""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from compiler.ir import print_ir
from compiler.schedule import Scheduler
from frontend import realize
from frontend.runtime import cpu


@pytest.fixture
def cache(monkeypatch) -> dict:
  fresh: dict = {}
  monkeypatch.setattr(realize, "kernel_cache", fresh)
  return fresh


def compiles(*tensors) -> int:
  before = realize.STATS["compiles"]
  tensors[0].realize(*tensors[1:])
  return realize.STATS["compiles"] - before


def graph(ta, tb):
  return (ta * tb + 1).sum(1)


def test_same_graph_twice_compiles_once(cache, data):
  for run in range(3):
    (a, ta), (b, tb) = data(4, 8), data(4, 8)
    out = graph(ta, tb)
    assert compiles(out) == (1 if run == 0 else 0)
    assert len(cache) == 1
    np.testing.assert_allclose(out.numpy(), (a * b + 1).sum(1), rtol=1e-5, atol=1e-6)


def test_key_is_device_and_kernel_text(on_cpu, cache, data):
  (_, ta), (_, tb) = data(4, 8), data(4, 8)
  out = graph(ta, tb)
  items = Scheduler(lambda n: n in realize.realized).schedule([out.lazydata])
  keys = {(out.device, print_ir(item.ast)) for item in items if item.ast is not None}
  out.realize()
  assert set(cache) == keys
  program, source = cache[keys.pop()]
  assert f"void {program.info.name}(" in source


def test_different_shapes_compile_separately(cache, data):
  shapes = [(4, 8), (8, 4), (5, 8), (4, 9)]
  for i, shape in enumerate(shapes):
    (_, ta), (_, tb) = data(*shape), data(*shape)
    assert compiles(graph(ta, tb)) == 1, f"shape {shape} should compile its own kernel"
    assert len(cache) == i + 1
  (_, ta), (_, tb) = data(*shapes[0]), data(*shapes[0])
  assert compiles(graph(ta, tb)) == 0
  assert len(cache) == len(shapes)


def test_different_ops_compile_separately(cache, data):
  (_, ta), (_, tb) = data(4, 8), data(4, 8)
  assert compiles(ta + tb) == 1
  assert compiles(ta * tb) == 1
  assert compiles(ta.permute(1, 0) + 1) == 1
  assert compiles(tb + ta) == 0  # the same kernel with its buffers swapped
  assert len(cache) == 3


def test_disk_cache_skips_the_compiler(on_cpu, cache, data, monkeypatch, tmp_path):
  """A second process (an empty in-memory cache) loads the compiled object from SOV_CACHE instead of running cc."""
  monkeypatch.setenv("SOV_CACHE", str(tmp_path))
  calls = []
  real_run = subprocess.run

  def counting_run(*args, **kwargs):
    calls.append(args[0])
    return real_run(*args, **kwargs)
  monkeypatch.setattr(cpu.subprocess, "run", counting_run)
  (a, ta), (b, tb) = data(3, 5), data(3, 5)
  assert compiles(graph(ta, tb)) == 1
  assert len(calls) == 1
  assert any(name.endswith(".so") for name in os.listdir(tmp_path / "cpu"))
  cache.clear()
  out = graph(ta, tb)
  assert compiles(out) == 1  # a miss in memory ...
  assert len(calls) == 1  # ... but no compiler run
  np.testing.assert_allclose(out.numpy(), (a * b + 1).sum(1), rtol=1e-5, atol=1e-6)
