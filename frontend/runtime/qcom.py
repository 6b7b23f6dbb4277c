"""DEV=QCOM: the tensor frontend on a Qualcomm Adreno (a6xx, a7xx) through qcomdrv (kgsl ioctls only).

Kernels: the scheduler's kernel IR is lowered for the GPU (compiler/lower_gpu.py), rendered to OpenCL C
(compiler/render_cl.py), compiled by the device's OpenCL compiler (found through the driver's OS interface) into a
qcomdrv kernel binary and dispatched by qcomdrv.program; dispatches queue without waiting, in order. Buffers: GPU
objects mapped for the CPU, freed blocks kept per size for reuse (safe: every later dispatch is ordered after the work
already queued); copies in and out are CPU copies through the mapping after `synchronize`. float64 is not offered
(Adreno OpenCL has no cl_khr_fp64).

Which OS interface the device gets (the driver itself never asks):
  QCOM_SIM unset      the real one (qcomdrv.osif.LinuxOS) on /dev/kgsl-3d0; without it QCOM is unavailable
  QCOM_SIM=<chip>     the simulated kgsl device (qcomdrv.sim.SimKGSL) of that chip: a630, a650, a660, a730, a740,
                      or a6xx / a7xx for the simulator defaults (a660 / a740); tests run DEV=QCOM this way
"""
from __future__ import annotations

import os

import numpy as np

from compiler.dtypes import dtypes
from frontend.device import DeviceUnavailable

ALL_DTYPES = (dtypes.bool, dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64, dtypes.uint8, dtypes.uint16,
              dtypes.uint32, dtypes.uint64, dtypes.float16, dtypes.bfloat16, dtypes.float32)


class QCOMAllocator:
  host_memory = False
  CACHE_LIMIT = 1 << 30

  def __init__(self, dev):
    self.dev = dev
    self.cache: dict[int, list] = {}
    self.cached_bytes = 0

  def alloc(self, nbytes: int):
    free = self.cache.get(nbytes)
    if free:
      self.cached_bytes -= nbytes
      return free.pop()
    return self.dev.alloc(max(nbytes, 1))

  def free(self, mem, nbytes: int) -> None:
    if self.cached_bytes + nbytes > self.CACHE_LIMIT:
      self.dev.synchronize()
      self.dev.free(mem)
      return
    self.cache.setdefault(nbytes, []).append(mem)
    self.cached_bytes += nbytes

  def synchronize(self) -> None:
    """Wait for the queued work (the CPU touches GPU memory only after it); a fault or timeout is reported once and
    later work runs on a fresh context."""
    from qcomdrv.errors import QCOMFault
    try:
      self.dev.synchronize()
    except (QCOMFault, TimeoutError):
      self.dev.recover()
      raise

  def copyin(self, dst, src: np.ndarray) -> None:
    if not src.nbytes:
      return
    self.synchronize()  # a queued dispatch may still read or write dst
    self.dev.view(dst, 0, src.nbytes)[:] = src.reshape(-1).view(np.uint8)

  def copyout(self, dst: np.ndarray, src) -> None:
    if not dst.nbytes:
      return
    self.synchronize()
    dst.reshape(-1).view(np.uint8)[:] = np.frombuffer(self.dev.view(src, 0, dst.nbytes), np.uint8)

  def address(self, mem) -> int:
    return mem.gpuaddr


class QCOMProgram:
  """A compiled kernel; call with buffer GPU addresses (queued, returns at once)."""
  threads = 1  # DEBUG's kernel line: host threads

  def __init__(self, program, info):
    self.program, self.info = program, info
    self.groups, self.local = tuple(info.global_size), tuple(info.local_size)

  def __call__(self, addresses: list[int], values: tuple[int, ...] = ()) -> None:
    self.program(*addresses, *values, groups=self.groups, local=self.local)


class QCOMRuntime:
  """The frontend's face of one qcomdrv.device.QCOMDevice."""
  name = "QCOM"
  dtypes = ALL_DTYPES

  def __init__(self, os_interface=None):
    from qcomdrv.device import QCOMDevice
    self.dev = QCOMDevice(os=os_interface)
    self.compiler = self.dev.os.opencl_compiler()  # no compiler: QCOM is unavailable, the message says why
    self.allocator = QCOMAllocator(self.dev)

  def describe(self) -> str:
    return self.dev.describe()

  def lower(self, ast):
    from compiler.lower_gpu import lower_gpu
    return lower_gpu(ast)

  def program(self, kernel):
    from compiler.render_cl import render_cl
    from qcomdrv.program import Program
    name, source, info = render_cl(kernel)
    blob = self.compiler.compile(source, name)
    return QCOMProgram(Program(self.dev, blob), info), source

  def synchronize(self) -> None:
    self.allocator.synchronize()


def os_interface():
  """The OS interface the QCOM device runs on: simulated when QCOM_SIM names a chip (module docstring)."""
  chip = os.environ.get("QCOM_SIM")
  if chip:
    from qcomdrv.sim import SimKGSL
    return SimKGSL(chip)
  from qcomdrv.osif import DEVICE_PATH, LinuxOS
  if not os.path.exists(DEVICE_PATH):
    raise DeviceUnavailable(f"QCOM: no {DEVICE_PATH} (no Qualcomm Adreno with the kgsl driver on this machine; "
                            "QCOM_SIM=a740 runs the simulated one)")
  return LinuxOS()


def probe() -> QCOMRuntime:
  try:
    return QCOMRuntime(os_interface())
  except DeviceUnavailable:
    raise
  except Exception as e:  # an unsupported chip, no OpenCL compiler, a kgsl error...
    raise DeviceUnavailable(f"QCOM: {type(e).__name__}: {e}") from e
