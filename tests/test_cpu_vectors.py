"""The CPU target's vectors (compiler/lower.py's lane plans, compiler/render_c.py): their width follows the host's
registers (compiler.lower.host_lanes, SOV_CPU_LANES overrides it), and a matmul's epilogue with comparisons and
selects (a ReLU or GELU backward) stays in vectors, its booleans as vi32 masks. Results are checked against numpy at
every width, in fresh processes (LANES is fixed when compiler.lower is imported)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from compiler.lower import LANES, host_lanes, lower
from compiler.schedule import Scheduler
from frontend import Tensor
from frontend.device import Device
from frontend.realize import realized

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
  monkeypatch.setenv("DEV", "CPU")


def epilogue_graph(rng):
  """(tensor, numpy reference): a matmul whose epilogue compares, selects, ANDs masks and casts one to float, with
  NaN and infinities among the inputs (comparisons with NaN are false, in vectors as in scalars)."""
  a = rng.standard_normal((32, 48)).astype(np.float32)
  b = rng.standard_normal((48, 64)).astype(np.float32)
  c = rng.standard_normal((32, 64)).astype(np.float32)
  c[0, :8] = [np.nan, np.inf, -np.inf, 0.0, -0.0, np.nan, 1.0, -1.0]
  h = Tensor(a) @ Tensor(b)
  tc = Tensor(c)
  out = (h > 0).where(h, tc * 0.5) + (h < tc).cast("float32") * 2 + ((h > 0) & (tc < 0)).where(1.0, -1.0) \
      + (tc != tc).where(7.0, 0.0)
  hn = a.astype(np.float64) @ b
  with np.errstate(invalid="ignore"):
    want = np.where(hn > 0, hn, c * 0.5) + (hn < c) * 2.0 + np.where((hn > 0) & (c < 0), 1.0, -1.0) \
        + np.where(c != c, 7.0, 0.0)
  return out, want


def test_width_follows_the_host(monkeypatch):
  with open("/proc/cpuinfo") as f:
    flags = next((line.split(":", 1)[1].split() for line in f if line.startswith(("flags", "Features"))), [])
  monkeypatch.delenv("SOV_CPU_LANES", raising=False)
  assert host_lanes() == (16 if "avx512f" in flags else 8 if "avx" in flags else 4)
  monkeypatch.setenv("SOV_CPU_LANES", "12")
  with pytest.raises(ValueError, match="SOV_CPU_LANES='12': give 4, 8 or 16"):
    host_lanes()


def test_epilogue_with_masks_stays_in_vectors():
  out, want = epilogue_graph(np.random.default_rng(0))
  (item,) = [i for i in Scheduler(lambda n: n in realized).schedule([out.lazydata]) if i.kind == "kernel"]
  kernel = lower(item.ast)
  source = Device["CPU"].render(kernel)[1]
  assert kernel.arg.lanes == LANES and "_vsel(" in source and "__builtin_convertvector(-(" in source
  assert "_Bool" not in source.split(f"void {kernel.arg.name}(")[1], "no boolean computed lane by lane"
  np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-4)


def test_product_along_k_in_both_operands_is_tiled():
  """x @ w.T, both operands read along k: no output axis can be the vector axis, so the k loop keeps LANES partial
  sums per output; a 4x2 tile (4x4 with 16 lanes) of outputs shares each loaded vector of x and of w."""
  from compiler.ir import Ops
  rng = np.random.default_rng(3)
  x, w = rng.standard_normal((24, 64)).astype(np.float32), rng.standard_normal((40, 64)).astype(np.float32)
  out = Tensor(x) @ Tensor(w).T
  (item,) = [i for i in Scheduler(lambda n: n in realized).schedule([out.lazydata]) if i.kind == "kernel"]
  kernel = lower(item.ast)
  nodes = kernel.toposort()
  accs = [n for n in nodes if n.op is Ops.DEFACC and n.arg[1] == LANES]
  loops = [n for n in nodes if n.op is Ops.LOOP and any(s.op is Ops.ACCUM for s in n.src)]
  assert len(loops) == 1 and len(accs) == (16 if LANES == 16 else 8), "one k loop feeds the whole tile"
  np.testing.assert_allclose(out.numpy(), x.astype(np.float64) @ w.T, rtol=1e-5, atol=1e-5)


def test_scalar_products_are_tiled_too():
  """A product no vector plan fits (k = 11, outputs 6x6: a conv's weight gradient looks like this) still tiles its
  outputs, with scalar accumulators: one k loop, 2x2 outputs sharing each loaded value."""
  from compiler.ir import Ops
  rng = np.random.default_rng(6)
  a, b = rng.standard_normal((11, 6)).astype(np.float32), rng.standard_normal((11, 6)).astype(np.float32)
  out = Tensor(a).T @ Tensor(b)
  (item,) = [i for i in Scheduler(lambda n: n in realized).schedule([out.lazydata]) if i.kind == "kernel"]
  nodes = lower(item.ast).toposort()
  loops = [n for n in nodes if n.op is Ops.LOOP and any(s.op is Ops.ACCUM for s in n.src)]
  assert len(loops) == 1 and sum(n.op is Ops.DEFACC and n.arg[1] == 1 for n in nodes) == 4
  np.testing.assert_allclose(out.numpy(), a.T.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


def test_elementwise_kernels_run_in_vectors():
  """GELU, elementwise: LANES outputs per step with _vexp2 (GCC left the scalar loop that calls _exp2s scalar); NaN
  and infinities come out as numpy's formula gives them, and a row length that LANES does not divide stays scalar."""
  rng = np.random.default_rng(4)
  x = rng.standard_normal((16, 64)).astype(np.float32)
  x[0, :5] = [np.nan, np.inf, -np.inf, 0.0, -0.0]
  t = Tensor(x).gelu()
  (item,) = [i for i in Scheduler(lambda n: n in realized).schedule([t.lazydata]) if i.kind == "kernel"]
  kernel = lower(item.ast)
  assert kernel.arg.lanes == LANES and "_vexp2(" in Device["CPU"].render(kernel)[1]
  with np.errstate(invalid="ignore", over="ignore"):
    want = 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x.astype(np.float64) ** 3)))
  np.testing.assert_allclose(t.numpy(), want, rtol=1e-5, atol=1e-6)
  odd = Tensor(x[:, :60]).gelu()
  (item,) = [i for i in Scheduler(lambda n: n in realized).schedule([odd.lazydata]) if i.kind == "kernel"]
  assert lower(item.ast).arg.lanes == 1
  np.testing.assert_allclose(odd.numpy(), want[:, :60], rtol=1e-5, atol=1e-6)


def test_a_loaded_boolean_is_a_vector_mask():
  """A boolean tensor read from memory (a causal mask) is LANES bytes widened to a vi32 mask: in an epilogue, in an
  elementwise kernel and inside a reduction with LANES partial sums (a masked softmax's row sum). Results are
  numpy's, and -inf where the mask is off stays out of the sums."""
  rng = np.random.default_rng(5)
  x, w = rng.standard_normal((16, 32)).astype(np.float32), rng.standard_normal((32, 64)).astype(np.float32)
  keep = rng.random((16, 64)) < 0.5
  got = Tensor(keep).where(Tensor(x) @ Tensor(w), -1.0)
  np.testing.assert_allclose(got.numpy(), np.where(keep, x.astype(np.float64) @ w, -1.0), rtol=1e-5, atol=1e-5)
  y = rng.standard_normal((16, 64)).astype(np.float32)
  np.testing.assert_array_equal(Tensor(keep).where(Tensor(y), 2.0).numpy(), np.where(keep, y, np.float32(2.0)))
  causal = np.tril(np.ones((64, 64), bool))
  s = rng.standard_normal((4, 64, 64)).astype(np.float32)
  out = Tensor(causal).where(Tensor(s), -float("inf")).softmax(-1)
  items = [i for i in Scheduler(lambda n: n in realized).schedule([out.lazydata]) if i.kind == "kernel"]
  sources = [Device["CPU"].render(lower(i.ast))[1] for i in items]
  assert any("vu8" in src.split("void r_")[-1] for src in sources), "the mask is loaded as vectors somewhere"
  e = np.where(causal, np.exp(s - np.where(causal, s, -np.inf).max(-1, keepdims=True)), 0.0)
  np.testing.assert_allclose(out.numpy(), e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)


CHECK = """
import numpy as np
from compiler.lower import LANES
from tests.test_cpu_vectors import epilogue_graph
assert LANES == {lanes}, LANES
out, want = epilogue_graph(np.random.default_rng(1))
np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-4)
a = np.random.default_rng(2).standard_normal((40, 72)).astype(np.float32)
from frontend import Tensor
t = Tensor(a)
np.testing.assert_allclose((t @ t.T).relu().numpy(), np.maximum(a.astype(np.float64) @ a.T, 0), rtol=1e-4, atol=1e-4)
np.testing.assert_allclose(t.softmax(-1).numpy().sum(-1), np.ones(40), rtol=1e-5)
b = np.random.default_rng(3).standard_normal((36, 64)).astype(np.float32)
got = (Tensor(b) @ Tensor(b[:20]).T).numpy()
np.testing.assert_allclose(got, b.astype(np.float64) @ b[:20].T, rtol=1e-4, atol=1e-4)
m = np.random.default_rng(4).random((36, 64)) < 0.3
np.testing.assert_array_equal(Tensor(m).where(Tensor(b), 0.5).numpy(), np.where(m, b, np.float32(0.5)))
e = Tensor(b).exp() * 2 - Tensor(b).sigmoid()
np.testing.assert_allclose(e.numpy(), np.exp(b.astype(np.float64)) * 2 - 1 / (1 + np.exp(-b.astype(np.float64))),
                           rtol=1e-5, atol=1e-5)
print("ok")
"""


@pytest.mark.parametrize("lanes", [4, 8, 16])
def test_every_width_computes_the_same(lanes, tmp_path):
  env = dict(os.environ, SOV_CPU_LANES=str(lanes), DEV="CPU", SOV_CACHE=str(tmp_path))
  proc = subprocess.run([sys.executable, "-c", CHECK.format(lanes=lanes)], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
