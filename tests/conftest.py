"""Shared helpers for the differential op tests: a hypothesis profile, random data per dtype, dtype maps to numpy and
torch, and `assert_close` with tolerances suited to each dtype.

Every distinct shape and dtype compiles a new C kernel, so the profile keeps examples few and has no deadline
(the first run of a kernel includes its gcc compile). HYPOTHESIS_PROFILE=thorough runs ten times more examples.
"""
from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from compiler.dtypes import DType, dtypes
from frontend import Tensor

settings.register_profile("sovereign", max_examples=8, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=100, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "sovereign"))
# tests that set max_examples themselves scale it by this (HYPOTHESIS_PROFILE=thorough: 10x)
EXAMPLE_SCALE = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 1


def examples(n: int) -> int:
  """max_examples for a test: n normally, more under the thorough profile."""
  return n * EXAMPLE_SCALE

FLOAT_DTYPES = (dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64)
SINT_DTYPES = (dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64)
UINT_DTYPES = (dtypes.uint8, dtypes.uint16, dtypes.uint32, dtypes.uint64)
INT_DTYPES = SINT_DTYPES + UINT_DTYPES
ALL_DTYPES = (dtypes.bool,) + INT_DTYPES + FLOAT_DTYPES

TORCH_DTYPES = {"bool": torch.bool, "int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16,
                "uint16": torch.uint16, "int32": torch.int32, "uint32": torch.uint32, "int64": torch.int64,
                "uint64": torch.uint64, "float16": torch.float16, "bfloat16": torch.bfloat16,
                "float32": torch.float32, "float64": torch.float64}

# (rtol, atol) for values computed by one or a few rounded ops
TOLERANCES = {"float16": (5e-3, 5e-3), "bfloat16": (3e-2, 3e-2), "float32": (2e-5, 2e-6), "float64": (1e-10, 1e-12)}

# small shapes: rank 0..4, each dim 1..7
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=7)
nonscalar_shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=7)
seeds = st.integers(0, 2**32 - 1)
float_dtypes = st.sampled_from(FLOAT_DTYPES)
int_dtypes = st.sampled_from(INT_DTYPES)


def host_dtype(d: DType) -> np.dtype:
  """The numpy dtype that holds d's values exactly (bfloat16 values fit in float32)."""
  return np.dtype(np.float32) if d == dtypes.bfloat16 else d.np


def round_to(x: np.ndarray, d: DType) -> np.ndarray:
  """x rounded to the values representable in d (as d's host dtype)."""
  if d == dtypes.bfloat16:
    return torch.from_numpy(np.asarray(x, np.float32)).to(torch.bfloat16).float().numpy()
  return np.asarray(x).astype(d.np)


def random_array(rng: np.random.Generator, shape, d: DType, low: float = -3.0, high: float = 3.0,
                 nonzero: bool = True) -> np.ndarray:
  """Fresh random values of dtype d in [low, high) (integers: [low, high]); zeros are pushed away when nonzero.

  Returns the values in host_dtype(d); floats are already rounded to d, so they are the tensor's exact contents.
  """
  shape = tuple(shape)
  if d.is_bool:
    return rng.random(shape) < 0.5
  if d.is_int:
    lo, hi = max(int(low), dtypes.min(d)), min(int(high), dtypes.max(d))
    x = rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.int64 if not d.is_unsigned else np.uint64)
    if nonzero:
      x = np.where(x == 0, hi if hi != 0 else lo, x)
    return np.asarray(x).astype(d.np)
  x = rng.uniform(low, high, size=shape)
  if nonzero:
    span = (high - low) * 0.05
    x = np.where(np.abs(x) < span, np.where(x < 0, -span, span) + x, x)
    x = np.clip(x, low, high)
  return round_to(x, d)


def full_range_array(rng: np.random.Generator, shape, d: DType) -> np.ndarray:
  """Integers over d's whole range (bool: random bits)."""
  if d.is_bool:
    return rng.random(tuple(shape)) < 0.5
  info = np.iinfo(d.np)
  return rng.integers(info.min, info.max, size=tuple(shape), endpoint=True, dtype=d.np)


def make_tensor(x: np.ndarray, d: DType, requires_grad: bool | None = None) -> Tensor:
  return Tensor(np.asarray(x), dtype=d, requires_grad=requires_grad)


def to_torch(x: np.ndarray, d: DType | None = None, requires_grad: bool = False) -> torch.Tensor:
  t = torch.from_numpy(np.array(x, copy=True))
  if d is not None:
    t = t.to(TORCH_DTYPES[d.name])
  return t.requires_grad_(requires_grad)


def as_numpy(x) -> np.ndarray:
  if isinstance(x, Tensor):
    return x.numpy()
  if isinstance(x, torch.Tensor):
    x = x.detach()
    return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
  return np.asarray(x)


def tolerance(d: DType, scale: float = 1.0) -> tuple[float, float]:
  rtol, atol = TOLERANCES[d.name]
  return rtol * scale, atol * scale


def assert_close(actual, expected, dtype: DType | None = None, rtol: float | None = None, atol: float | None = None,
                 scale: float = 1.0, check_dtype: bool = True) -> None:
  """Compares a Tensor (or array) with an expected array: shapes exactly, integers and bools exactly, floats within
  the dtype's tolerance times scale (NaN matches NaN, infinities must agree).

  Args:
    actual: a Tensor, numpy array or torch tensor.
    expected: a numpy array, torch tensor or Python scalar.
    dtype: the dtype that sets the tolerance; actual.dtype for a Tensor, else float32.
    check_dtype: for a Tensor, also require dtype == actual.dtype when dtype is given.
  """
  if isinstance(actual, Tensor):
    if dtype is not None and check_dtype:
      assert actual.dtype == dtype, f"dtype {actual.dtype} != expected {dtype}"
    dtype = dtype or actual.dtype
  dtype = dtype or dtypes.float32
  got = as_numpy(actual)
  want = as_numpy(expected)
  assert got.shape == want.shape, f"shape {got.shape} != expected {want.shape}"
  if not dtype.is_float:
    np.testing.assert_array_equal(got, want.astype(got.dtype) if want.dtype != got.dtype else want)
    return
  d_rtol, d_atol = tolerance(dtype, scale)
  np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), equal_nan=True,
                             rtol=d_rtol if rtol is None else rtol, atol=d_atol if atol is None else atol)


@pytest.fixture
def rng(request) -> np.random.Generator:
  """A numpy generator seeded from the test's id (reproducible), for tests without hypothesis."""
  return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def check_grad(ours, theirs, inputs: list[np.ndarray], rng: np.random.Generator, scale: float = 1.0,
               dtype: DType = dtypes.float32) -> None:
  """Values and gradients of ours(*Tensors) against theirs(*torch tensors), both weighted by one random upstream
  gradient (so every output element matters).

  Args:
    ours: a function of Tensors (requires_grad=True) returning one Tensor.
    theirs: the same function written with torch.
    inputs: float arrays, one per argument.
    scale: multiplies the dtype's tolerance.
  """
  ts = [Tensor(x, dtype=dtype, requires_grad=True) for x in inputs]
  tts = [to_torch(x, dtype, requires_grad=True) for x in inputs]
  out, tout = ours(*ts), theirs(*tts)
  weight = round_to(rng.uniform(0.5, 1.5, size=tuple(tout.shape)) * rng.choice([-1, 1], size=tuple(tout.shape)),
                    dtype)
  (out * Tensor(weight, dtype=dtype)).sum().backward()
  (tout * to_torch(weight, dtype)).sum().backward()
  assert_close(out, tout, dtype, scale=scale)
  for i, (t, tt) in enumerate(zip(ts, tts)):
    assert t.grad is not None, f"input {i} got no gradient"
    assert t.grad.shape == t.shape, f"input {i}: gradient shape {t.grad.shape} != {t.shape}"
    assert_close(t.grad, tt.grad, dtype, scale=scale)


@pytest.fixture
def data(request):
  """make(*shape) -> (fresh random array, a Tensor of it); seeded by the test's name, so runs repeat."""
  rng = np.random.default_rng(zlib.crc32(request.node.name.encode()))

  def make(*shape):
    x = rng.uniform(-2, 2, size=shape).astype(np.float32)
    return x, Tensor(x)
  return make


@pytest.fixture
def on_cpu(monkeypatch):
  """For tests of the CPU runtime itself (its C source, its compiler cache): the default device is CPU whatever DEV
  says, so the suite can run on DEV=NV with these still testing what they are about."""
  monkeypatch.setenv("DEV", "CPU")


AMD_FIRMWARE_PACKAGE = "firmware-amd-graphics=20250410-2~bpo12+1"


@pytest.fixture(scope="session")
def fw_dir() -> str:
  """lib/firmware/amdgpu of the pinned firmware package, from AM_FIRMWARE_DIR (.ci/run fetches it and sets it).
  Skips without it locally; fails under CI, where its absence is a broken setup."""
  path = os.environ.get("AM_FIRMWARE_DIR")
  if path and os.path.isfile(os.path.join(path, "gc_12_0_1_mec.bin")):
    return path
  reason = (f"AM_FIRMWARE_DIR ({path or 'unset'}) has no gc_12_0_1_mec.bin: point it at lib/firmware/amdgpu of "
            f"{AMD_FIRMWARE_PACKAGE} (bookworm-backports non-free-firmware; .ci/run fetches it)")
  if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    pytest.fail(reason)
  pytest.skip(reason)
