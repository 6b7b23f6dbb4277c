"""The OS seam of qcomdrv: every open, ioctl, mmap and compiler lookup the driver makes goes through one object.

The interface (what qcomdrv.device calls, and what qcomdrv.sim.kgsl.SimKGSL implements for the simulated device):

  open(path) -> fd                      close(fd)
  ioctl(fd, request, arg)               arg a cffi pointer to the request's struct; raises OSError(errno)
  mmap(length, fd, offset) -> address   a shared read-write mapping of a GPU object (offset = id << 12)
  munmap(address, length)
  view(address, length) -> memoryview   CPU access to mapped memory (the mapping must outlive the view)
  kernel_log() -> list[str]             the kernel's recent messages about the GPU (fault details)
  opencl_compiler()                     the device's OpenCL compiler: an object with compile(source, name) -> bytes
                                        (a qcomdrv.binary container); raises CompilerUnavailable

`LinuxOS` is the real one, over libc through cffi (ABI mode: no C compiler needed, the GIL is released per call).
"""
from __future__ import annotations

import ctypes
import mmap as _mmap
import os

from qcomdrv.compile import CompilerUnavailable, VendorCompiler, find_library, no_compiler_message
from qcomdrv.kgsl import ffi

PROT_RW = _mmap.PROT_READ | _mmap.PROT_WRITE
MAP_FAILED = 0xFFFFFFFFFFFFFFFF
DEVICE_PATH = "/dev/kgsl-3d0"


class LinuxOS:
  """Files, ioctls and mappings through libc; the kernel log through /dev/kmsg."""

  def __init__(self):
    self.libc = ffi.dlopen(None)

  def open(self, path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)

  def close(self, fd: int) -> None:
    os.close(fd)

  def ioctl(self, fd: int, request: int, arg) -> None:
    rc = self.libc.ioctl(fd, request, arg)
    if rc != 0:
      err = ffi.errno
      raise OSError(err, f"ioctl(fd={fd}, request=0x{request:08x}) failed: {os.strerror(err)}")

  def mmap(self, length: int, fd: int, offset: int) -> int:
    ptr = self.libc.mmap(ffi.NULL, length, PROT_RW, _mmap.MAP_SHARED, fd, offset)
    address = int(ffi.cast("uintptr_t", ptr))
    if address == MAP_FAILED:
      err = ffi.errno
      raise OSError(err, f"mmap(length=0x{length:x}, fd={fd}, offset=0x{offset:x}) failed: {os.strerror(err)}")
    return address

  def munmap(self, address: int, length: int) -> None:
    if self.libc.munmap(ffi.cast("void *", address), length) != 0:
      err = ffi.errno
      raise OSError(err, f"munmap(0x{address:x}, 0x{length:x}) failed: {os.strerror(err)}")

  def view(self, address: int, length: int) -> memoryview:
    return memoryview((ctypes.c_char * length).from_address(address)).cast("B")

  def kernel_log(self) -> list[str]:
    """kgsl's recent kernel messages from /dev/kmsg ([] when it cannot be read)."""
    try:
      fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
      return []
    lines = []
    try:
      while True:
        try:
          record = os.read(fd, 8192)
        except BlockingIOError:
          break
        except (BrokenPipeError, InterruptedError):
          continue
        except OSError:
          break
        text = record.decode(errors="replace").split(";", 1)[-1].strip()
        if "kgsl" in text.lower() or "adreno" in text.lower():
          lines.append(text)
    finally:
      os.close(fd)
    return lines[-20:]

  def opencl_compiler(self) -> VendorCompiler:
    path = find_library()
    if path is None:
      raise CompilerUnavailable(no_compiler_message())
    return VendorCompiler(path)
