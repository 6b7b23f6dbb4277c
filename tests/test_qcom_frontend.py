"""Frontend ops on DEV=QCOM in-process, on the simulated Adreno (QCOM_SIM=a740 unless the environment names another
chip): the kernel IR is lowered for the GPU, rendered to OpenCL C, compiled by the simulated device's stand-in
compiler, dispatched by the unmodified driver and executed by the simulated command processor.

Each op runs on QCOM and on CPU from the same fresh random data; QCOM must agree with CPU (which the rest of the suite
checks against numpy and torch): integers and bools exactly, floats within the dtype's tolerance (QCOM's exp2,
log2 and sin are the C library's, the CPU's exp2 a polynomial). A few results are also checked against numpy
directly. float64 is not offered on QCOM (Adreno has no fp64) and is refused with a TypeError naming the device.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from compiler.dtypes import dtypes
from frontend import Tensor
from frontend.device import Device
from frontend.jit import TinyJit
from frontend.realize import STATS, kernel_cache
from frontend.runtime.qcom import probe
from qcomdrv.sim import SimKGSL
from tests.conftest import assert_close, random_array


@pytest.fixture(scope="module")
def qcom():
  """The QCOM device of this process, opened on the simulator for these tests only: afterwards the registry forgets
  it and its compiled programs, so later tests in this process see QCOM as the environment has it (unavailable
  without QCOM_SIM) and Device.DEFAULT does not drift to the simulator."""
  opened_before = "QCOM" in Device._opened
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("QCOM_SIM", os.environ.get("QCOM_SIM", "a740"))
    runtime = Device["QCOM"]
  assert isinstance(runtime.dev.os, SimKGSL), "DEV=QCOM runs on real hardware here; these tests are for the simulator"
  yield runtime
  if not opened_before:
    Device._opened.pop("QCOM", None)
    for key in [k for k in kernel_cache if k[0] == "QCOM"]:
      del kernel_cache[key]


def both(qcom, fn, *arrays, dtypes_=None):
  """(QCOM result, CPU result) of fn over tensors made from `arrays` on each device."""
  kinds = dtypes_ or [None] * len(arrays)
  outs = []
  for device in ("QCOM", "CPU"):
    tensors = [Tensor(a, device=device, dtype=d) for a, d in zip(arrays, kinds)]
    outs.append(fn(*tensors).numpy())
  return outs


def check(qcom, fn, *arrays, dtypes_=None, scale=1.0, dtype=None):
  before = qcom.dev.fence
  got, want = both(qcom, fn, *arrays, dtypes_=dtypes_)
  assert qcom.dev.fence > before, "no kernel ran on QCOM"
  assert_close(got, want, dtype or dtypes.float32, scale=scale)
  return got


FLOAT_OPS = {
  "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "div": lambda a, b: a / b,
  "maximum": lambda a, b: a.maximum(b), "where": lambda a, b: (a < b).where(a, b * 2),
  "cmp": lambda a, b: (a == b) + (a != b) * 2 + (a < b) * 4, "neg_relu": lambda a, b: (-a).relu() + b,
  "exp_log": lambda a, b: a.exp() + b.abs().log(), "sqrt_sin": lambda a, b: a.abs().sqrt() + b.sin(),
  "sigmoid_tanh": lambda a, b: a.sigmoid() * b.tanh(), "recip": lambda a, b: 1 / b,
}


@pytest.mark.parametrize("name", list(FLOAT_OPS))
def test_float32_elementwise(qcom, rng, name):
  a, b = random_array(rng, (37, 29), dtypes.float32), random_array(rng, (37, 29), dtypes.float32)
  check(qcom, FLOAT_OPS[name], a, b, scale=4)


@pytest.mark.parametrize("d", [dtypes.float16, dtypes.bfloat16])
def test_half_types(qcom, rng, d):
  a, b = random_array(rng, (5, 33), d), random_array(rng, (5, 33), d)
  got = check(qcom, lambda x, y: (x * y + x).cast(dtypes.float32) - y.exp().cast(dtypes.float32), a, b,
              dtypes_=[d, d], dtype=d)
  assert got.dtype == np.float32


@pytest.mark.parametrize("d", [dtypes.int32, dtypes.int8, dtypes.uint8, dtypes.int64, dtypes.uint32])
def test_integers(qcom, rng, d):
  lo = 0 if d.is_unsigned else -100
  a = rng.integers(lo, 100, size=(9, 31)).astype(d.np)
  b = rng.integers(lo, 100, size=(9, 31)).astype(d.np)
  if d != dtypes.int64:  # the CPU backend leaves int64 (its index type) division unguarded: x // 0 traps there
    b[0, :5] = 0  # division by zero gives 0
  else:
    b[b == 0] = 7
  for fn in (lambda x, y: x * y + x - y, lambda x, y: x // y, lambda x, y: x % y, lambda x, y: (x & y) ^ (x | 3),
             lambda x, y: (x << 3) >> 2, lambda x, y: x.maximum(y)):
    got, want = both(qcom, fn, a, b, dtypes_=[d, d])
    np.testing.assert_array_equal(got, want)


def test_bool_and_casts(qcom, rng):
  a = random_array(rng, (64,), dtypes.float32, low=-300, high=300)
  got, want = both(qcom, lambda x: ((x > 0) & (x < 100)).cast(dtypes.int32) + x.cast(dtypes.int8).cast(dtypes.int32)
                   + x.cast(dtypes.uint8).cast(dtypes.int32), a)
  np.testing.assert_array_equal(got, want)
  bits, _ = both(qcom, lambda x: x.bitcast(dtypes.uint32), a)
  np.testing.assert_array_equal(bits, a.view(np.uint32))


@pytest.mark.parametrize("shape,axis", [((7, 13), 1), ((7, 13), 0), ((3, 5, 8), (0, 2)), ((4, 70000), 1),
                                        ((300, 700), None)])
def test_reductions(qcom, rng, shape, axis):
  a = random_array(rng, shape, dtypes.float32)
  got = check(qcom, lambda x: x.sum(axis=axis) + x.max(axis=axis), a, scale=50)
  want = a.sum(axis=axis) + a.max(axis=axis)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-3)


def test_argmax_mean_cumsum(qcom, rng):
  a = random_array(rng, (6, 50), dtypes.float32)
  got, want = both(qcom, lambda x: x.argmax(axis=1), a)
  np.testing.assert_array_equal(got, want)
  check(qcom, lambda x: x.mean(axis=0) + x.cumsum(axis=1)[:, -1].sum(), a, scale=20)


@pytest.mark.parametrize("m,k,n", [(33, 17, 9), (128, 256, 256)])
def test_matmul(qcom, rng, m, k, n):
  a, b = random_array(rng, (m, k), dtypes.float32), random_array(rng, (k, n), dtypes.float32)
  got = check(qcom, lambda x, y: x @ y, a, b, scale=100)
  np.testing.assert_allclose(got, a @ b, rtol=1e-3, atol=1e-3)


def test_softmax_layernorm(qcom, rng):
  a = random_array(rng, (16, 300), dtypes.float32)
  check(qcom, lambda x: x.softmax(axis=1) + x.log_softmax(axis=1) + x.layernorm(axis=1), a, scale=20)


def test_movement_and_indexing(qcom, rng):
  a = random_array(rng, (4, 6, 5), dtypes.float32)
  index = rng.integers(0, 6, size=(4, 3, 5)).astype(np.int32)
  check(qcom, lambda x: x.permute(2, 0, 1).pad(((1, 0), (0, 2), (1, 1))).flip(0)[1:, ::2].reshape(-1)[:50], a)
  check(qcom, lambda x: x.cat(x * 2, dim=1).expand(2, 4, 12, 5).sum(0), a)
  check(qcom, lambda x, i: x.gather(1, i), a, index, dtypes_=[None, dtypes.int32])


def test_conv2d_and_pool(qcom, rng):
  x = random_array(rng, (2, 3, 9, 9), dtypes.float32)
  w = random_array(rng, (4, 3, 3, 3), dtypes.float32)
  check(qcom, lambda a, b: a.conv2d(b, padding=1).max_pool2d(), x, w, scale=50)


def test_assign_and_arange(qcom):
  t = Tensor.arange(10, device="QCOM", dtype=dtypes.int32)
  t.assign(t * 3 + 1).realize()
  np.testing.assert_array_equal(t.numpy(), np.arange(10) * 3 + 1)


def test_tinyjit_replays_on_qcom(qcom, rng):
  @TinyJit
  def step(x, y):
    return (x * y + 1).sum(axis=0).realize()

  for _ in range(4):
    a, b = random_array(rng, (8, 16), dtypes.float32), random_array(rng, (8, 16), dtypes.float32)
    got = step(Tensor(a, device="QCOM"), Tensor(b, device="QCOM")).numpy()
    np.testing.assert_allclose(got, (a * b + 1).sum(axis=0), rtol=1e-5, atol=1e-5)
  assert step.launches > 0


def test_variables_are_int_arguments(qcom, rng):
  """Variables reach the kernel as `int` arguments after the buffers: a value and a window that starts at one, in a
  TinyJit step replayed with new values (the same programs; no compile after the capture)."""
  from frontend import Variable
  from frontend.realize import STATS
  pos = Variable("pos", 0, 9)
  table = random_array(rng, (10, 16), dtypes.float32)
  t = Tensor(table, device="QCOM").realize()
  step = TinyJit(lambda p: (t.shrink(((p, p + 1), None)) * p - (Tensor.arange(16, device="QCOM") < p)).realize())
  compiles = None
  for i, p in enumerate((2, 7, 0, 9, 5)):
    got = step(pos.bind(p)).numpy()
    np.testing.assert_allclose(got, table[p:p + 1] * p - (np.arange(16) < p), rtol=1e-6, atol=1e-6)
    if i >= 2:
      assert STATS["compiles"] == compiles
    compiles = STATS["compiles"]
  assert step.launches > 0


def test_copies_between_devices(qcom, rng):
  """.to() moves values both ways, and a kernel on a copied tensor runs on the copy's device (not its source's)."""
  a = random_array(rng, (6, 5), dtypes.float32)
  on_qcom = Tensor(a, device="QCOM") * 2
  on_cpu = on_qcom.to("CPU")
  np.testing.assert_allclose(on_cpu.numpy(), a * 2, rtol=1e-6)
  back = ((on_cpu + 1).permute(1, 0) + 0).to("QCOM")
  np.testing.assert_allclose(back.numpy(), (a * 2 + 1).T, rtol=1e-6)
  assert (on_cpu + 1).device == "CPU" and back.device == "QCOM"
  np.testing.assert_allclose((back.to("CPU").sum(0)).numpy(), (a * 2 + 1).T.sum(0), rtol=1e-5)


def test_float64_is_refused(qcom):
  with pytest.raises(TypeError, match="device QCOM does not support dtype float64"):
    Tensor(np.zeros(3), device="QCOM", dtype=dtypes.float64)


def test_default_device_and_kernel_counts(qcom, rng, monkeypatch):
  monkeypatch.setenv("DEV", "QCOM")
  before = STATS["kernels"]
  a = random_array(rng, (10,), dtypes.float32)
  assert Tensor(a).device == "QCOM"
  np.testing.assert_allclose((Tensor(a) * 2).numpy(), a * 2)
  assert STATS["kernels"] > before
  assert "a740" in qcom.describe() or os.environ.get("QCOM_SIM")


def test_probe_without_device_or_simulator(monkeypatch):
  from frontend.device import DeviceUnavailable
  monkeypatch.delenv("QCOM_SIM", raising=False)
  if os.path.exists("/dev/kgsl-3d0"):
    pytest.skip("this machine has a kgsl device")
  with pytest.raises(DeviceUnavailable, match="no /dev/kgsl-3d0.*QCOM_SIM=a740"):
    probe()
  monkeypatch.setenv("QCOM_SIM", "a999")
  with pytest.raises(DeviceUnavailable, match="UnsupportedChip: no Adreno called 'a999'"):
    probe()
