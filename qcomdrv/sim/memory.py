"""The simulated GPU's memory: kgsl objects backed by anonymous host mappings, at GPU addresses of their own.

GPU addresses are handed out upwards from VA_BASE with a guard page after each object (kgsl's
KGSL_MEMFLAGS_GUARD_PAGE does the same); they never equal the host addresses of the backing memory, so a driver
that passes a CPU pointer where the GPU needs a GPU address faults here as it would on hardware. Every GPU access
(IB fetch, packet memory operands, shader fetch, kernel arguments) translates through `translate`, which faults
unless the whole range lies inside one live object.
"""
from __future__ import annotations

import ctypes
import mmap
from dataclasses import dataclass, field

PAGE = 4096
VA_BASE = 0x0000_0010_0000_0000  # where simulated GPU addresses start (far from any host mapping)
MEMORY_LIMIT = 4 << 30  # bytes the simulated device can allocate in all (ENOMEM beyond)


class PageFault(Exception):
  """A GPU access outside every live object (an SMMU fault on hardware)."""


@dataclass
class SimObject:
  id: int
  gpuaddr: int
  size: int
  mmapsize: int
  flags: int
  host: int  # address of the backing memory in this process
  backing: mmap.mmap | None = field(default=None, repr=False)  # None for mapped user memory
  mapped: int = 0  # CPU mappings the driver holds (mmap without munmap)

  def contains(self, gpuaddr: int, length: int) -> bool:
    return self.gpuaddr <= gpuaddr and gpuaddr + length <= self.gpuaddr + self.size


class SimMemory:
  def __init__(self):
    self.objects: dict[int, SimObject] = {}
    self.next_id = 1
    self.next_va = VA_BASE
    self.allocated = 0

  def _place(self, size: int) -> int:
    gpuaddr = self.next_va
    self.next_va += -(-size // PAGE) * PAGE + PAGE  # and a guard page
    return gpuaddr

  def alloc(self, size: int, flags: int) -> SimObject | None:
    """A zeroed object of `size` bytes (rounded up to pages), or None when the device is out of memory."""
    mapsize = -(-size // PAGE) * PAGE
    if self.allocated + mapsize > MEMORY_LIMIT:
      return None
    backing = mmap.mmap(-1, mapsize)
    host = ctypes.addressof(ctypes.c_char.from_buffer(backing))
    obj = SimObject(self.next_id, self._place(mapsize), mapsize, mapsize, flags, host, backing)
    self.objects[obj.id] = obj
    self.next_id += 1
    self.allocated += mapsize
    return obj

  def map_user(self, host: int, length: int, flags: int) -> SimObject:
    obj = SimObject(self.next_id, self._place(length), length, length, flags, host, None)
    self.objects[obj.id] = obj
    self.next_id += 1
    return obj

  def free(self, obj: SimObject) -> None:
    del self.objects[obj.id]
    if obj.backing is not None:
      self.allocated -= obj.mmapsize
      # the backing stays alive while a CPU mapping or view of it may exist: kgsl keeps pages until munmap too

  def find_gpuaddr(self, gpuaddr: int) -> SimObject | None:
    for obj in self.objects.values():
      if obj.gpuaddr == gpuaddr:
        return obj
    return None

  def object_at(self, gpuaddr: int, length: int = 1) -> SimObject | None:
    for obj in self.objects.values():
      if obj.contains(gpuaddr, length):
        return obj
    return None

  def translate(self, gpuaddr: int, length: int, what: str) -> int:
    """The host address of GPU range [gpuaddr, gpuaddr + length).

    Raises:
      PageFault: no single live object holds the whole range; the message names `what` accessed it.
    """
    obj = self.object_at(gpuaddr, max(length, 1))
    if obj is None:
      near = self.object_at(gpuaddr)
      detail = (f"object {near.id} at 0x{near.gpuaddr:x} holds only {near.size} bytes" if near is not None
                else "no object is mapped there")
      raise PageFault(f"GPU page fault: {what} accessed 0x{gpuaddr:x}..0x{gpuaddr + length:x} ({detail})")
    return obj.host + (gpuaddr - obj.gpuaddr)

  def read(self, gpuaddr: int, length: int, what: str) -> bytes:
    return ctypes.string_at(self.translate(gpuaddr, length, what), length)

  def write(self, gpuaddr: int, data: bytes, what: str) -> None:
    ctypes.memmove(self.translate(gpuaddr, len(data), what), data, len(data))

  def read_u32(self, gpuaddr: int, what: str) -> int:
    return int.from_bytes(self.read(gpuaddr, 4, what), "little")
