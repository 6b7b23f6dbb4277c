"""GPU memory: a virtual-address allocator and the two kinds of backing store nvdrv uses.

- Device memory (NV01_MEMORY_LOCAL_USER, HBM): mapped for the GPU through UVM at a VA from our allocator; optionally
  mapped for the CPU through BAR1 (NV_ESC_RM_MAP_MEMORY + mmap), which is how small transfers skip the copy engine.
- Host memory (anonymous shared pages wrapped as NV01_MEMORY_SYSTEM_OS_DESCRIPTOR): pinned by RM and mapped for the
  GPU at the same address the CPU sees it at, so a pointer means the same on both sides. Pushbuffers, QMDs,
  constant buffers, semaphores and staging buffers live there.

Every GPU VA comes from one window of CPU address space reserved with PROT_NONE below 1 TiB: host memory is mapped
into it with MAP_FIXED (so its CPU and GPU addresses agree), device memory takes VAs from it that no host mapping can
ever land on. The window must sit below 2**40 because a GPFIFO entry carries only VA bits 39:2 of a pushbuffer
(FACTS.md 5.1; a command ring at a 47-bit host address faulted as FAULT_PDE at the truncated address on the H100).
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field

from nvdrv import rmapi
from nvdrv.rm import NVError
from nvdrv.rmapi import ffi

PAGE_4K = 4 << 10
PAGE_64K = 64 << 10
PAGE_2M = 2 << 20


def round_up(value: int, align: int) -> int:
  return (value + align - 1) // align * align


class VAAllocator:
  """First-fit allocator over [base, base + size) with per-request alignment; frees coalesce with neighbours."""

  def __init__(self, base: int, size: int):
    self.base, self.size = base, size
    self.free_starts = [base]           # sorted starts of free blocks
    self.free_sizes = {base: size}      # start -> length

  def alloc(self, size: int, align: int) -> int:
    if size <= 0 or align <= 0:
      raise ValueError(f"VA allocation of {size:#x} bytes aligned to {align:#x}: both must be positive")
    for start in self.free_starts:
      length = self.free_sizes[start]
      addr = round_up(start, align)
      if addr + size <= start + length:
        self._take(start, addr, size)
        return addr
    raise MemoryError(f"GPU virtual address space exhausted: no {size:#x}-byte block aligned to {align:#x} "
                      f"in the {self.size:#x}-byte window at {self.base:#x}")

  def _take(self, start: int, addr: int, size: int) -> None:
    length = self.free_sizes.pop(start)
    self.free_starts.remove(start)
    if addr > start:
      self._insert(start, addr - start)
    if addr + size < start + length:
      self._insert(addr + size, start + length - addr - size)

  def _insert(self, start: int, length: int) -> None:
    bisect.insort(self.free_starts, start)
    self.free_sizes[start] = length

  def free(self, addr: int, size: int) -> None:
    if size <= 0:
      raise ValueError(f"VA block {addr:#x}+{size:#x}: the size of a block to free must be positive")
    i = bisect.bisect_left(self.free_starts, addr)
    after = self.free_starts[i] if i < len(self.free_starts) else None
    before = self.free_starts[i - 1] if i > 0 else None
    if not (self.base <= addr and addr + size <= self.base + self.size):
      raise ValueError(f"VA block {addr:#x}+{size:#x} is outside the window {self.base:#x}+{self.size:#x}")
    if (before is not None and before + self.free_sizes[before] > addr) or (after is not None and addr + size > after):
      raise ValueError(f"double free or overlap: VA block {addr:#x}+{size:#x} is already (partly) free")
    if after is not None and addr + size == after:
      size += self.free_sizes.pop(after)
      self.free_starts.remove(after)
    if before is not None and before + self.free_sizes[before] == addr:
      self.free_sizes[before] += size
    else:
      self._insert(addr, size)


@dataclass(eq=False)
class GPUMemory:
  """One allocation: `va` is its GPU address; `cpu` its CPU address (0 when the CPU cannot reach it)."""
  va: int
  size: int
  handle: int
  host: bool
  cpu: int = 0
  cpu_fd: int = -1
  freed: bool = field(default=False, repr=False)

  def check_live(self, what: str) -> None:
    if self.freed:
      raise ValueError(f"{what}: the {self.size}-byte {'host' if self.host else 'device'} buffer at GPU VA "
                       f"0x{self.va:x} was already freed (use after free)")


class MemoryManager:
  """Allocates and frees GPUMemory for one device (its RM device handle, UVM registration and VA window)."""

  WINDOW_BASE = 0x20_0000_0000  # 128 GiB
  WINDOW_SIZE = 0xC0_0000_0000  # 768 GiB: [128 GiB, 896 GiB), inside the 40-bit pushbuffer reach

  _window: VAAllocator | None = None  # one window per process, shared by every device (VAs stay unique)

  def __init__(self, dev):
    self.dev = dev
    if MemoryManager._window is None:
      got = dev.osif.reserve(self.WINDOW_SIZE, self.WINDOW_BASE)
      if got != self.WINDOW_BASE:
        dev.osif.munmap(got, self.WINDOW_SIZE)
        raise MemoryError(f"could not reserve the GPU VA window at 0x{self.WINDOW_BASE:x} (+0x{self.WINDOW_SIZE:x}) "
                          f"in this process's address space (the kernel offered 0x{got:x}): something is mapped there")
      MemoryManager._window = VAAllocator(self.WINDOW_BASE, self.WINDOW_SIZE)
    self.va = MemoryManager._window

  def alloc_device(self, size: int, cpu_access: bool = False, contiguous: bool = False) -> GPUMemory:
    """`size` bytes of HBM (rounded to 64 KiB pages, 2 MiB pages from 2 MiB up).

    Raises:
      ValueError: size <= 0.
      NVError: RM is out of device memory (NV_ERR_NO_MEMORY) or refused the request.
    """
    if size <= 0:
      raise ValueError(f"device allocation of {size} bytes: the size must be positive")
    page = PAGE_2M if size >= PAGE_2M else PAGE_64K
    size = round_up(size, page)
    params = ffi.new("NV_MEMORY_ALLOCATION_PARAMS *")
    params.owner = self.dev.rm.root
    params.type = rmapi.NVOS32_TYPE_IMAGE
    params.flags = rmapi.NVOS32_ALLOC_FLAGS_ALIGNMENT_FORCE | rmapi.NVOS32_ALLOC_FLAGS_IGNORE_BANK_PLACEMENT
    if not cpu_access:
      params.flags |= rmapi.NVOS32_ALLOC_FLAGS_MAP_NOT_REQUIRED
    physicality = (rmapi.NVOS32_ATTR_PHYSICALITY_CONTIGUOUS if contiguous
                   else rmapi.NVOS32_ATTR_PHYSICALITY_NONCONTIGUOUS)
    if page == PAGE_2M:
      params.attr = rmapi.NVOS32_ATTR_PAGE_SIZE_HUGE | physicality
      params.attr2 = rmapi.NVOS32_ATTR2_PAGE_SIZE_HUGE_2MB
    else:
      params.attr = rmapi.NVOS32_ATTR_PAGE_SIZE_BIG | physicality
    params.attr2 |= rmapi.NVOS32_ATTR2_ZBC_PREFER_NO_ZBC | rmapi.NVOS32_ATTR2_GPU_CACHEABLE_YES
    params.size = size
    params.alignment = page
    handle = self.dev.rm.alloc(self.dev.device, rmapi.NV01_MEMORY_LOCAL_USER, params)
    mem = self._map_gpu(handle, size, page, host=False)
    if cpu_access:
      # NV_BAR1_WC=1: map BAR1 write-combined (an experiment: the default mapping's CPU writes of a launch's QMD
      # and constants may be uncached; tools/bench_nv.py --profile-launch measures both)
      caching = (rmapi.NVOS33_FLAGS_CACHING_TYPE_WRITECOMBINED if os.environ.get("NV_BAR1_WC") == "1"
                 else rmapi.NVOS33_FLAGS_CACHING_TYPE_CACHED)
      mem.cpu, mem.cpu_fd = self.dev.rm.map_to_cpu(self.dev.device, handle, size, self.dev.dev_path,
                                                   flags=caching << rmapi.NVOS33_FLAGS_CACHING_TYPE_SHIFT)
    return mem

  def alloc_host(self, size: int) -> GPUMemory:
    """`size` bytes of pinned host memory (rounded to 4 KiB) at the same address for the CPU and the GPU."""
    if size <= 0:
      raise ValueError(f"host allocation of {size} bytes: the size must be positive")
    size = round_up(size, PAGE_2M if size >= PAGE_2M else PAGE_4K)
    cpu = self.va.alloc(size, PAGE_2M if size >= PAGE_2M else PAGE_4K)
    self.dev.osif.mmap(size, addr=cpu, fixed=True)
    op = ffi.new("nv_ioctl_nvos02_parameters_with_fd *")
    op.params.hRoot = self.dev.rm.root
    op.params.hObjectParent = self.dev.device
    op.params.hObjectNew = self.dev.rm.new_handle()
    op.params.hClass = rmapi.NV01_MEMORY_SYSTEM_OS_DESCRIPTOR
    op.params.flags = (rmapi.NVOS02_FLAGS_PHYSICALITY_NONCONTIGUOUS | rmapi.NVOS02_FLAGS_LOCATION_PCI
                       | rmapi.NVOS02_FLAGS_COHERENCY_CACHED | rmapi.NVOS02_FLAGS_MAPPING_NO_MAP)
    op.params.pMemory = cpu
    op.params.limit = size - 1
    op.fd = -1
    self.dev.osif.ioctl(self.dev.dev_fd, rmapi.ioc_rw(rmapi.NV_ESC_RM_ALLOC_MEMORY,
                                                      ffi.sizeof("nv_ioctl_nvos02_parameters_with_fd")), op)
    if op.params.status != 0:
      self._release_host_range(cpu, size)
      raise NVError(f"pinning {size} bytes of host memory at 0x{cpu:x}", op.params.status)
    mem = GPUMemory(va=cpu, size=size, handle=op.params.hObjectNew, host=True, cpu=cpu)
    self.dev.uvm.map_external(cpu, size, self.dev.uuid, self.dev.rm.ctl_fd, self.dev.rm.root, mem.handle)
    return mem

  def _map_gpu(self, handle: int, size: int, page: int, host: bool) -> GPUMemory:
    va = self.va.alloc(size, page)
    try:
      self.dev.uvm.map_external(va, size, self.dev.uuid, self.dev.rm.ctl_fd, self.dev.rm.root, handle)
    except NVError:
      self.va.free(va, size)
      self.dev.rm.free(handle, self.dev.device)
      raise
    return GPUMemory(va=va, size=size, handle=handle, host=host)

  def free(self, mem: GPUMemory) -> None:
    """Unmap and release `mem`. The caller makes sure no queued GPU work still uses it."""
    mem.check_live("free")
    mem.freed = True
    self.dev.uvm.free(mem.va, mem.size)
    if mem.cpu and not mem.host:
      self.dev.osif.munmap(mem.cpu, mem.size)
      self.dev.osif.close(mem.cpu_fd)
    self.dev.rm.free(mem.handle, self.dev.device)
    if mem.host:
      self._release_host_range(mem.cpu, mem.size)
    else:
      self.va.free(mem.va, mem.size)

  def _release_host_range(self, cpu: int, size: int) -> None:
    self.dev.osif.reserve(size, cpu, fixed=True)  # back to PROT_NONE: the range stays ours, its pages are released
    self.va.free(cpu, size)
