"""Devices and buffers: the seam between the tensor frontend and a runtime (CPU now; NV, AMD, QCOM later).

A device kind is registered with a probe that either returns the device or raises DeviceUnavailable with the
reason, so `sov info` can say why a kind is missing. `Device.DEFAULT` is `DEV` from the environment, else the best
available kind in the order of DEVICE_PREFERENCE.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from compiler.dtypes import DType, dtypes

DEVICE_PREFERENCE = ("NV", "AMD", "QCOM", "CPU")


class DeviceUnavailable(Exception):
  """A device kind cannot be used on this machine; the message says why and what would fix it."""


class Buffer:
  """Device memory of `size` elements of `dtype`, allocated on first use."""

  def __init__(self, device: str, size: int, dtype: DType):
    self.device = device
    self.size = size
    self.dtype = dtype
    self._mem = None

  @property
  def nbytes(self) -> int:
    return self.size * self.dtype.itemsize

  @property
  def allocated(self) -> bool:
    return self._mem is not None

  def ensure(self) -> Buffer:
    if self._mem is None:
      self._mem = Device[self.device].allocator.alloc(self.nbytes)
    return self

  @property
  def mem(self):
    return self.ensure()._mem

  def copyin(self, data: np.ndarray) -> Buffer:
    raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if raw.nbytes != self.nbytes:
      raise ValueError(f"copyin of {raw.nbytes} bytes into a buffer of {self.nbytes} bytes")
    Device[self.device].allocator.copyin(self.mem, raw)
    return self

  def numpy(self) -> np.ndarray:
    """The contents as a flat numpy array (bfloat16 as its raw uint16 bits)."""
    out = np.empty(self.nbytes, np.uint8)
    Device[self.device].allocator.copyout(out, self.mem)
    return out.view(self.dtype.np)

  def __del__(self):
    mem, self._mem = self._mem, None
    if mem is not None:
      try:
        Device[self.device].allocator.free(mem, self.nbytes)
      except Exception:  # interpreter shutdown: the allocator may be gone already
        pass

  def host_view(self) -> np.ndarray | None:
    """A read-only numpy view of the buffer without a copy, when the device's memory is host memory; else None.
    Later kernels that write this buffer (assign) show through the view, as with torch's .numpy()."""
    allocator = Device[self.device].allocator
    if not getattr(allocator, "host_memory", False):
      return None
    view = self.mem.view(self.dtype.np)
    view.flags.writeable = False
    return view

  def __repr__(self) -> str:
    return f"<Buffer {self.device} {self.size} x {self.dtype.name}>"


class _DeviceRegistry:
  def __init__(self):
    self._probes: dict[str, Callable[[], object]] = {}
    self._opened: dict[str, object] = {}
    self._failed: dict[str, str] = {}

  def register(self, kind: str, probe: Callable[[], object]) -> None:
    self._probes[kind] = probe

  def canonicalize(self, name: str | None) -> str:
    if name is None:
      return self.DEFAULT
    kind, _, index = name.partition(":")
    kind = kind.upper()
    if kind not in self._probes:
      raise ValueError(f"unknown device {name!r}; known kinds: {', '.join(self._probes)}")
    if index and not index.isdigit():
      raise ValueError(f"unknown device {name!r}: the part after ':' must be a device index, as in {kind}:1")
    # "CPU:0" is "CPU" (as in tinygrad); "CPU:1", "CPU:2", ... are further devices of the kind, each with its buffers
    return kind if not index or int(index) == 0 else f"{kind}:{int(index)}"

  def __getitem__(self, name: str):
    name = self.canonicalize(name)
    if name not in self._opened:
      kind = name.split(":")[0]
      try:
        self._opened[name] = self._probes[kind]()
      except DeviceUnavailable as e:
        self._failed[kind] = str(e)
        raise
    return self._opened[name]

  def available(self, kind: str) -> tuple[bool, str]:
    """(usable, reason if not)."""
    try:
      self[kind]
      return True, ""
    except DeviceUnavailable as e:
      return False, str(e)

  @property
  def kinds(self) -> tuple[str, ...]:
    return tuple(self._probes)

  @property
  def DEFAULT(self) -> str:  # noqa: N802 - tinygrad's public name
    env = os.environ.get("DEV")
    if env:
      return self.canonicalize(env)
    for kind in DEVICE_PREFERENCE:
      if kind in self._probes and self.available(kind)[0]:
        return kind
    raise DeviceUnavailable("no device is available, not even CPU: " + "; ".join(self._failed.values()))


Device = _DeviceRegistry()


def _probe_cpu():
  from frontend.runtime.cpu import CPUDevice
  return CPUDevice()


def _unavailable(kind: str, why: str):
  def probe():
    raise DeviceUnavailable(f"{kind}: {why}")
  return probe


Device.register("CPU", _probe_cpu)


def _probe_nv():
  # NV_EMULATE=1: the PTX renderer's kernels on the PTX emulator, no GPU (frontend/runtime/nv.py)
  if os.environ.get("NV_EMULATE", "") not in ("", "0"):
    from frontend.runtime.nv import NVEmuRuntime
    return NVEmuRuntime()
  if not os.path.exists("/dev/nvidiactl"):
    raise DeviceUnavailable("NV: no /dev/nvidiactl (no NVIDIA GPU or kernel module on this machine); NV_EMULATE=1 runs "
                            "the PTX kernels on the PTX emulator instead")
  try:
    from frontend.runtime.nv import NVRuntime
    return NVRuntime()
  except Exception as e:  # an unsupported driver branch, no ptxas, a GPU in use by a faulted context...
    raise DeviceUnavailable(f"NV: {type(e).__name__}: {e}") from e


Device.register("NV", _probe_nv)


def _probe_amd():
  # AMD_SIM=navi31 / navi48: a simulated card through the AM driver; AMD_EMULATE=gfx1100 / gfx1201: RDNA code objects
  # run directly on the wave emulator; neither set, AMD is unavailable, so the default device stays CPU without a GPU
  from frontend.runtime.amd import probe
  return probe()


Device.register("AMD", _probe_amd)


def _probe_qcom():
  from frontend.runtime.qcom import probe  # /dev/kgsl-3d0, or the simulated kgsl device when QCOM_SIM names a chip
  return probe()


Device.register("QCOM", _probe_qcom)


def supports_dtype(device: str | tuple[str, ...], dtype: DType) -> bool:
  if isinstance(device, tuple):  # a multi-device tensor's devices
    return all(supports_dtype(d, dtype) for d in device)
  dev = Device[device]
  return dtype in getattr(dev, "dtypes", (dtype,))


__all__ = ["Buffer", "Device", "DeviceUnavailable", "dtypes"]
