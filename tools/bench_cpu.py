"""CPU benchmark: Sovereign's CPU backend beside numpy (and tinygrad's CPU backend when it is installed).

Cases: a fused chain of 10 elementwise ops over 2^24 floats, a 1024x1024 float32 matmul, the 3x3 conv2d of a
ResNet block, softmax over 4096x4096. Every result is checked against numpy before it is timed. Times are the
median of several runs after a warm-up (the warm-up compiles); ratios > 1 mean Sovereign is faster.

  python tools/bench_cpu.py [--repeat N] [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _median_time(fn, repeat: int) -> float:
  fn()
  times = []
  for _ in range(repeat):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _chain_np(x):
  y = x * 1.5 + 0.25
  y = np.maximum(y, x * 0.5)
  y = y * y - x
  y = y / (np.abs(x) + 1.0)
  return y - 0.125


def _chain_tensor(x):
  y = x * 1.5 + 0.25
  y = y.maximum(x * 0.5)
  y = y * y - x
  y = y / (x.abs() + 1.0)
  return y - 0.125


def _softmax_np(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _conv_np(x, w, pad: int):
  from numpy.lib.stride_tricks import sliding_window_view
  xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  windows = sliding_window_view(xp, w.shape[2:], axis=(2, 3))  # (N, C, H, W, kh, kw)
  return np.einsum("nchwij,ocij->nohw", windows, w, optimize=True)


def cases(quick: bool):
  rng = np.random.default_rng(0)
  n_chain = 1 << (20 if quick else 24)
  n_soft = 1024 if quick else 4096
  batch = 2 if quick else 8
  return [
    ("elementwise chain (10 ops, 2^%d)" % (20 if quick else 24), lambda T: _chain_tensor(T[0]), _chain_np,
     [rng.standard_normal(n_chain, dtype=np.float32)], 2 * 10 * n_chain),
    ("matmul 1024x1024 f32", lambda T: T[0] @ T[1], lambda a, b: a @ b,
     [rng.standard_normal((1024, 1024), dtype=np.float32), rng.standard_normal((1024, 1024), dtype=np.float32)],
     2 * 1024 ** 3),
    (f"conv2d ResNet 3x3 ({batch}x64x56x56)", lambda T: T[0].conv2d(T[1], padding=1),
     lambda x, w: _conv_np(x, w, 1),
     [rng.standard_normal((batch, 64, 56, 56), dtype=np.float32),
      rng.standard_normal((64, 64, 3, 3), dtype=np.float32) * 0.05], 2 * batch * 64 * 56 * 56 * 64 * 9),
    (f"softmax {n_soft}x{n_soft}", lambda T: T[0].softmax(-1), _softmax_np,
     [rng.standard_normal((n_soft, n_soft), dtype=np.float32)], 5 * n_soft * n_soft),
  ]


def _tinygrad():
  try:
    import tinygrad
    return tinygrad
  except ImportError:
    return None


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeat", type=int, default=5)
  parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
  args = parser.parse_args(argv)
  from frontend import Tensor
  tg = _tinygrad()
  rows = []
  for name, ours_fn, np_fn, inputs, flops in cases(args.quick):
    expected = np_fn(*inputs)
    ours_in = [Tensor(a).realize() for a in inputs]
    got = ours_fn(ours_in).numpy()
    err = float(np.max(np.abs(got - expected)) / (np.max(np.abs(expected)) + 1e-30))
    if err > 1e-3:
      raise SystemExit(f"{name}: Sovereign's result differs from numpy (relative error {err:.2e})")
    t_ours = _median_time(lambda: ours_fn(ours_in).realize(), args.repeat)
    t_np = _median_time(lambda: np_fn(*inputs), args.repeat)
    t_tg = None
    if tg is not None:
      tg_in = [tg.Tensor(a, device="CPU").realize() for a in inputs]
      t_tg = _median_time(lambda: ours_fn(tg_in).realize(), args.repeat)
    rows.append((name, t_ours, t_np, t_tg, flops))
  header = f"{'case':<34} {'sovereign':>11} {'numpy':>11} {'vs numpy':>9}"
  print(header + (f" {'tinygrad':>11} {'vs tg':>7}" if tg else ""))
  for name, t_ours, t_np, t_tg, flops in rows:
    line = f"{name:<34} {t_ours * 1e3:9.2f}ms {t_np * 1e3:9.2f}ms {t_np / t_ours:8.2f}x"
    if tg is not None:
      line += f" {t_tg * 1e3:9.2f}ms {t_tg / t_ours:6.2f}x"
    print(line + f"   ({flops / t_ours / 1e9:.1f} GFLOP/s ours)")
  if tg is None:
    version = "not installed (pip install tinygrad; its CPU backend needs clang)"
  else:
    from importlib.metadata import version as pkg_version
    version = pkg_version("tinygrad")
  print("ratios > 1: Sovereign faster. tinygrad:", version)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
