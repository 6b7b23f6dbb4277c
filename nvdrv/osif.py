"""The OS seam of nvdrv: every open, ioctl and mmap the driver makes goes through one `LinuxOS` object.

Nothing else in nvdrv touches file descriptors or raw memory mappings directly, so a test can hand the driver a
different object with the same methods (a recorder, a replayer of a transcript taken on hardware) and the driver
code runs unmodified.
"""
from __future__ import annotations

import ctypes
import mmap as _mmap
import os

from nvdrv.rmapi import ffi

PROT_RW = _mmap.PROT_READ | _mmap.PROT_WRITE
PROT_NONE = 0         # asm-generic/mman-common.h
MAP_FIXED = 0x10      # asm-generic/mman-common.h
MAP_NORESERVE = 0x4000
MAP_FAILED = 0xFFFFFFFFFFFFFFFF


class LinuxOS:
  """Files, ioctls and mappings through libc (cffi ABI mode: no compiler needed, the GIL is released per call)."""

  def __init__(self):
    self.libc = ffi.dlopen(None)

  def open(self, path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)

  def close(self, fd: int) -> None:
    os.close(fd)

  def ioctl(self, fd: int, request: int, arg) -> None:
    """ioctl(fd, request, arg) with `arg` a cffi pointer (or 0); raises OSError with the errno on failure."""
    rc = self.libc.ioctl(fd, request, arg)
    if rc != 0:
      err = ffi.errno
      raise OSError(err, f"ioctl(fd={fd}, request=0x{request:08x}) failed: {os.strerror(err)}")

  def mmap(self, length: int, fd: int = -1, offset: int = 0, addr: int = 0, fixed: bool = False) -> int:
    """Map `length` bytes of `fd` (anonymous memory when fd is -1), shared, read-write; returns the address."""
    flags = _mmap.MAP_SHARED
    if fd == -1:
      flags |= _mmap.MAP_ANONYMOUS
    if fixed:
      flags |= MAP_FIXED
    ptr = self.libc.mmap(ffi.cast("void *", addr), length, PROT_RW, flags, fd, offset)
    address = int(ffi.cast("uintptr_t", ptr))
    if address == MAP_FAILED:
      err = ffi.errno
      raise OSError(err, f"mmap(length=0x{length:x}, fd={fd}, offset=0x{offset:x}) failed: {os.strerror(err)}")
    return address

  def reserve(self, length: int, addr: int = 0, fixed: bool = False) -> int:
    """Reserve `length` bytes of CPU address space (PROT_NONE, no backing) at `addr` (a hint unless `fixed`):
    addresses no other mapping will be given."""
    flags = _mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS | MAP_NORESERVE | (MAP_FIXED if fixed else 0)
    ptr = self.libc.mmap(ffi.cast("void *", addr), length, PROT_NONE, flags, -1, 0)
    address = int(ffi.cast("uintptr_t", ptr))
    if address == MAP_FAILED:
      err = ffi.errno
      raise OSError(err, f"reserving 0x{length:x} bytes of address space failed: {os.strerror(err)}")
    return address

  def munmap(self, addr: int, length: int) -> None:
    if self.libc.munmap(ffi.cast("void *", addr), length) != 0:
      err = ffi.errno
      raise OSError(err, f"munmap(0x{addr:x}, 0x{length:x}) failed: {os.strerror(err)}")

  def write(self, addr: int, data: bytes) -> None:
    """Copy `data` to mapped memory at `addr`."""
    ffi.memmove(ffi.cast("void *", addr), data, len(data))

  def read(self, addr: int, length: int) -> bytes:
    return bytes(ffi.buffer(ffi.cast("char *", addr), length))

  def view(self, addr: int, length: int) -> memoryview:
    """A writable memoryview over mapped memory (the mapping must outlive the view)."""
    return memoryview((ctypes.c_char * length).from_address(addr)).cast("B")
