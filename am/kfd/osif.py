"""The OS seam of the KFD path: every file, ioctl, sysfs read and mapping the driver makes goes through one object.

  open(path) -> fd, close(fd)
  ioctl(fd, request, buf)          buf: a bytearray holding the struct; the kernel's answer is copied back into it;
                                   raises OSError(errno)
  read_text(path) -> str, listdir(path) -> list[str], exists(path) -> bool     (sysfs)
  reserve(size) -> address         a CPU virtual range with no access (mmap PROT_NONE), used as the GPU address too
                                   (KFD's dGPU apertures let CPU and GPU share addresses, kfd_flat_memory.c)
  mmap(address, size, fd, offset) -> MemoryAperture   a shared read-write mapping at `address` (MAP_FIXED)
  munmap(address, size)

Pointers inside ioctl structs (device id arrays, event data) are addresses of ctypes buffers of this process, read and
written by the kernel (or by the simulator, which runs in the same process). `LinuxKfdOS` is the real one (libc
through ctypes); am/simcard/kfd.py SimKfd the simulated one.
"""
from __future__ import annotations

import ctypes
import fcntl
import mmap as _mmap
import os
from typing import Protocol

import numpy as np

from am.mmio.pci import MemoryAperture

MAP_FAILED = ctypes.c_void_p(-1).value
MAP_NORESERVE = 0x4000   # <asm-generic/mman.h>
MAP_FIXED = 0x10


class KfdOS(Protocol):
  def open(self, path: str) -> int: ...

  def close(self, fd: int) -> None: ...

  def ioctl(self, fd: int, request: int, buf: bytearray) -> None: ...

  def read_text(self, path: str) -> str: ...

  def listdir(self, path: str) -> list[str]: ...

  def exists(self, path: str) -> bool: ...

  def reserve(self, size: int) -> int: ...

  def mmap(self, address: int, size: int, fd: int, offset: int) -> MemoryAperture: ...

  def munmap(self, address: int, size: int) -> None: ...


class LinuxKfdOS:
  """/dev/kfd, the render node and sysfs of this machine."""

  def __init__(self):
    self.libc = ctypes.CDLL(None, use_errno=True)
    self.libc.mmap.restype = ctypes.c_void_p
    self.libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                               ctypes.c_long]
    self.libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

  def open(self, path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)

  def close(self, fd: int) -> None:
    os.close(fd)

  def ioctl(self, fd: int, request: int, buf: bytearray) -> None:
    fcntl.ioctl(fd, request, buf, True)

  def read_text(self, path: str) -> str:
    with open(path) as f:
      return f.read()

  def listdir(self, path: str) -> list[str]:
    return os.listdir(path)

  def exists(self, path: str) -> bool:
    return os.path.exists(path)

  def _mmap(self, address: int, size: int, prot: int, flags: int, fd: int, offset: int) -> int:
    got = self.libc.mmap(address or None, size, prot, flags, fd, offset)
    if got in (None, MAP_FAILED):
      err = ctypes.get_errno()
      raise OSError(err, f"mmap(0x{address:x}, 0x{size:x}, fd={fd}, offset=0x{offset:x}): {os.strerror(err)}")
    return got

  def reserve(self, size: int) -> int:
    return self._mmap(0, size, _mmap.PROT_NONE, _mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)

  def mmap(self, address: int, size: int, fd: int, offset: int) -> MemoryAperture:
    flags = _mmap.MAP_SHARED | (MAP_FIXED if address else 0)
    at = self._mmap(address, size, _mmap.PROT_READ | _mmap.PROT_WRITE, flags, fd, offset)
    array = np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(at))
    aperture = MemoryAperture(array)
    aperture.address = at
    return aperture

  def munmap(self, address: int, size: int) -> None:
    if self.libc.munmap(address, size) != 0:
      err = ctypes.get_errno()
      raise OSError(err, f"munmap(0x{address:x}, 0x{size:x}): {os.strerror(err)}")
