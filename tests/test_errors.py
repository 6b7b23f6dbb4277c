"""User-facing errors name what went wrong with the values involved: shapes, devices, dtypes, indices, compiler
output."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.dtypes import dtypes
from frontend import realize
from frontend.device import Device, DeviceUnavailable
from frontend.runtime import cpu
from frontend.tensor import Tensor


def ones(*shape) -> Tensor:
  return Tensor(np.ones(shape, np.float32))


# ---- shapes ---------------------------------------------------------------------------------------------------------

def test_broadcast_mismatch_names_both_shapes():
  with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 4\)"):
    ones(3, 4) + ones(5, 4)


def test_matmul_mismatch_names_both_shapes():
  with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 6\)"):
    ones(3, 4) @ ones(5, 6)


def test_assign_mismatch_names_both_shapes():
  with pytest.raises(ValueError, match=r"\(4, 3\).*\(3, 4\)"):
    ones(3, 4).assign(ones(4, 3))


@pytest.mark.parametrize("shape", [(5, 3), (13,), (2, 2, 2)])
def test_reshape_wrong_size(shape):
  with pytest.raises(ValueError, match=r"cannot reshape \(3, 4\) \(12 elements\) to " + r"\(" + r", ".join(
      str(s) for s in shape)):
    ones(3, 4).reshape(shape)


def test_reshape_two_unknown_dims():
  with pytest.raises(ValueError, match="only one dimension can be -1"):
    ones(3, 4).reshape(-1, -1)


def test_expand_non_unit_axis():
  with pytest.raises(ValueError, match=r"cannot expand shape \(2, 3\) to \(4, 3\)"):
    ones(2, 3).expand(4, 3)


def test_permute_not_a_permutation():
  with pytest.raises(ValueError, match=r"\(0, 0\).*\(2, 3\)"):
    ones(2, 3).permute(0, 0)


def test_reduce_axis_out_of_range():
  with pytest.raises(IndexError, match="axis 3"):
    ones(2, 3).sum(axis=3)


# ---- indexing -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("index,axis,bad", [(5, 0, 5), (-4, 0, -4), ((slice(None), 7), 1, 7), ((0, -5), 1, -5)])
def test_index_out_of_range(index, axis, bad):
  size = (3, 4)[axis]
  with pytest.raises(IndexError, match=f"index {bad} is out of bounds for axis {axis} with size {size}"):
    ones(3, 4)[index]


def test_list_index_out_of_range():
  with pytest.raises(IndexError, match="index 9 is out of bounds for axis 0 with size 3"):
    ones(3, 4)[[0, 9]]


def test_tensor_index_out_of_range():
  with pytest.raises(IndexError, match="index 9 is out of bounds for axis 0 with size 3"):
    ones(3, 4)[Tensor(np.array([0, 9], np.int32))]


def test_tensor_index():
  x = np.arange(12, dtype=np.float32).reshape(3, 4)
  np.testing.assert_array_equal(Tensor(x)[Tensor(np.array([2, 0], np.int32))].numpy(), x[[2, 0]])


def test_setitem_out_of_range():
  with pytest.raises(IndexError, match="index 3 is out of bounds for axis 0 with size 3"):
    ones(3, 4)[3] = 1.0


# ---- devices and dtypes ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["TPU", "gpu:0", "metal"])
def test_unknown_device_names_known_kinds(name):
  with pytest.raises(ValueError) as info:
    Tensor([1.0], device=name)
  message = str(info.value)
  assert repr(name) in message
  for kind in Device.kinds:
    assert kind in message


def test_unknown_device_in_to():
  with pytest.raises(ValueError, match="unknown device 'FOO'.*CPU"):
    ones(2).to("FOO")


def test_unavailable_device_says_why():
  kind = next(k for k in ("AMD", "QCOM", "NV") if not Device.available(k)[0])
  with pytest.raises(DeviceUnavailable, match=f"{kind}: "):
    Tensor(np.ones(3, np.float32), device=kind)


class LimitedDevice:
  """A registered device kind that supports only float32 and int32 (allocation never reached in these tests)."""
  name = "LIMITED"
  dtypes = (dtypes.float32, dtypes.int32)


@pytest.fixture
def limited_device(monkeypatch):
  monkeypatch.setitem(Device._probes, "LIMITED", LimitedDevice)
  monkeypatch.setitem(Device._opened, "LIMITED", LimitedDevice())
  return "LIMITED"


def test_unsupported_dtype_names_device_and_dtype(limited_device):
  with pytest.raises(TypeError, match="device LIMITED does not support dtype float64"):
    Tensor([1.0, 2.0], device=limited_device, dtype=dtypes.float64)


def test_unsupported_cast_names_device_and_dtype(limited_device):
  x = Tensor(2.0, device=limited_device)
  with pytest.raises(TypeError, match="device LIMITED does not support dtype float16"):
    x.cast(dtypes.float16)


def test_operands_on_different_devices(limited_device):
  with pytest.raises(ValueError, match="different devices: CPU and LIMITED"):
    Tensor(1.0, device="CPU") + Tensor(2.0, device=limited_device)


def test_dtype_mismatch_in_bitcast():
  with pytest.raises(TypeError, match="float32 to float16 changes the item size"):
    ones(4).bitcast(dtypes.float16)


# ---- the C compiler -------------------------------------------------------------------------------------------------

def test_compile_failure_shows_compiler_output():
  dev = Device["CPU"]
  source = "void broken_kernel(float* p0) { p0[0] = undeclared_name; }\n"
  with pytest.raises(RuntimeError) as info:
    dev.compile("broken_kernel", source)
  message = str(info.value)
  assert "broken_kernel" in message
  assert "undeclared_name" in message and "error" in message  # the compiler's own diagnostic
  assert source in message


def test_compile_failure_surfaces_through_realize(monkeypatch, on_cpu):
  """A renderer bug reaches the user as the compiler's message, not as a missing symbol later."""
  monkeypatch.setattr(realize, "kernel_cache", {})

  def bad_render(kernel):
    return kernel.arg.name, f"void {kernel.arg.name}(void) {{ return 1 }}\n"
  monkeypatch.setattr(cpu, "render", bad_render)
  with pytest.raises(RuntimeError, match=r"(?s)C compiler failed for kernel E_3_5:.*error: expected"):
    (ones(3, 5) * 2).realize()
