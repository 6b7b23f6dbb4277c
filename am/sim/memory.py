"""The emulator's view of GPU memory: byte ranges at 64-bit GPU virtual addresses, read and written per lane.

    mem = FlatMemory()                          # allocations with unmapped guard gaps between them
    a = mem.alloc_array(np.arange(64, dtype=np.float32))
    mem.read_array(a, np.float32, 64)
    paged = PagedMemory(physical, PageMap().map(va, pa, size))   # a page-table walker sits behind `translate`

`Memory` is the interface the shader engine uses: vector `load` / `store` of `size` bytes at an array of addresses (one
per active lane), `atomic` read-modify-write in lane order, and whole-range `read` / `write` for the host side.
Unmapped or out-of-range addresses raise MemoryFault naming the first bad address and its index in the array; the
instruction that made the access adds its pc, text, wave and lane. `FlatMemory` is one numpy arena for tests and the
benchmark; `PagedMemory` puts a translation step (the hook a GPUVM page-table walker implements) in front of any other
Memory. Scratch (private) and LDS apertures of flat addressing are not modelled here.
"""
from __future__ import annotations

import abc

import numpy as np

from .errors import MemoryFault

__all__ = ["FlatMemory", "Memory", "PageMap", "PagedMemory"]
U64 = np.uint64


class Memory(abc.ABC):
  """Interface: subclasses implement load / store (vector) and may override the rest for speed."""

  @abc.abstractmethod
  def load(self, addrs: np.ndarray, size: int) -> np.ndarray:
    """(N,) uint64 addresses -> (N, size) uint8 bytes.

    Raises:
      MemoryFault: an address range that is not mapped.
    """

  @abc.abstractmethod
  def store(self, addrs: np.ndarray, data: np.ndarray) -> None:
    """Write data (N, size) uint8 at (N,) addresses; later rows win where ranges overlap."""

  def load_dwords(self, addrs: np.ndarray, count: int) -> np.ndarray:
    """(N,) addresses -> (N, count) uint32."""
    return np.ascontiguousarray(self.load(addrs, 4 * count)).view(np.uint32)

  def store_dwords(self, addrs: np.ndarray, data: np.ndarray) -> None:
    self.store(addrs, np.ascontiguousarray(data, dtype=np.uint32).view(np.uint8))

  def read(self, address: int, size: int) -> bytes:
    return self.load(np.array([address], dtype=U64), size).tobytes()

  def write(self, address: int, data) -> None:
    raw = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    self.store(np.array([address], dtype=U64), raw.reshape(1, -1))

  def read_array(self, address: int, dtype, count: int) -> np.ndarray:
    dt = np.dtype(dtype)
    return np.frombuffer(self.read(address, dt.itemsize * count), dtype=dt).copy()

  def atomic(self, addrs: np.ndarray, dtype, fn, data: np.ndarray) -> np.ndarray:
    """Read-modify-write each lane's element in lane order: new = fn(old, data). Returns the old values (N,).

    Lanes that hit the same address are applied one after another (lane order), in rounds of distinct addresses.
    """
    dt = np.dtype(dtype)
    old = np.empty(len(addrs), dtype=dt)
    for rows in distinct_rounds(addrs):
      cur = np.ascontiguousarray(self.load(addrs[rows], dt.itemsize)).view(dt)[:, 0]
      old[rows] = cur
      new = np.asarray(fn(cur, data[rows]), dtype=dt)
      self.store(addrs[rows], new.reshape(-1, 1).view(np.uint8))
    return old


def distinct_rounds(addrs: np.ndarray) -> list:
  """Index arrays that together cover 0..N-1 in order, each holding distinct addresses: round k has every address's
  k-th occurrence (by lane)."""
  if len(np.unique(addrs)) == len(addrs):
    return [np.arange(len(addrs))]
  order = np.argsort(addrs, kind="stable")
  sorted_addrs = addrs[order]
  starts = np.r_[0, np.flatnonzero(sorted_addrs[1:] != sorted_addrs[:-1]) + 1]
  rank = np.arange(len(addrs)) - np.repeat(starts, np.diff(np.r_[starts, len(addrs)]))
  ranks = np.empty(len(addrs), dtype=np.int64)
  ranks[order] = rank
  return [np.flatnonzero(ranks == k) for k in range(int(ranks.max()) + 1)]


class FlatMemory(Memory):
  """Allocations in one numpy arena at base..base+size, each followed by an unmapped guard gap, so running off the
  end of a buffer faults. Address 0 and everything below `base` are unmapped.

  Args:
    base: first virtual address (default 4 GiB, so 32-bit truncated pointers fault).
    guard: unmapped bytes after each allocation.
  """

  def __init__(self, base: int = 1 << 32, guard: int = 4096):
    self.base, self.guard = base, guard
    self.top = base
    self.arena = np.zeros(1 << 16, dtype=np.uint8)
    self.starts = np.zeros(0, dtype=U64)
    self.ends = np.zeros(0, dtype=U64)

  def alloc(self, size: int, align: int = 256) -> int:
    """Map `size` zeroed bytes; returns their address."""
    if size <= 0:
      raise ValueError(f"allocation size must be positive, got {size}")
    start = -(-self.top // align) * align
    end = start + size
    self._grow(end - self.base)
    self.starts = np.append(self.starts, U64(start))
    self.ends = np.append(self.ends, U64(end))
    self.top = end + self.guard
    return start

  def alloc_array(self, array: np.ndarray, align: int = 256) -> int:
    """Allocate and fill with the array's bytes; returns the address."""
    data = np.ascontiguousarray(array)
    address = self.alloc(max(data.nbytes, 1), align)
    self.write(address, data)
    return address

  def _grow(self, need: int) -> None:
    if need <= len(self.arena):
      return
    bigger = np.zeros(max(need, 2 * len(self.arena)), dtype=np.uint8)
    bigger[:len(self.arena)] = self.arena
    self.arena = bigger

  def offsets(self, addrs: np.ndarray, size: int) -> np.ndarray:
    """Arena offsets (int64) of (N,) addresses, each range [a, a+size) inside one allocation.

    Raises:
      MemoryFault: the first address whose range is not inside an allocation.
    """
    a = np.asarray(addrs, dtype=U64)
    slot = np.searchsorted(self.starts, a, side="right").astype(np.int64) - 1
    inside = slot >= 0
    end = self.ends[np.maximum(slot, 0)] if len(self.ends) else np.zeros_like(a)
    ok = inside & (a + U64(size) <= end)
    if not ok.all():
      bad = int(np.argmin(ok))
      raise MemoryFault(int(a[bad]), size, self.reason(int(a[bad]), size), index=bad)
    return (a - U64(self.base)).astype(np.int64)

  def reason(self, address: int, size: int) -> str:
    slot = int(np.searchsorted(self.starts, U64(address), side="right")) - 1
    if slot >= 0:
      start, end = int(self.starts[slot]), int(self.ends[slot])
      if address < end:
        return f"runs past the end of the allocation [{start:#x}, {end:#x}) by {address + size - end} bytes"
      if address < end + self.guard:
        return f"starts {address - end} bytes past the end of the allocation [{start:#x}, {end:#x})"
    return "not mapped (no allocation holds it)"

  def load(self, addrs: np.ndarray, size: int) -> np.ndarray:
    offs = self.offsets(addrs, size)
    return self.arena[offs[:, None] + np.arange(size)]

  def store(self, addrs: np.ndarray, data: np.ndarray) -> None:
    offs = self.offsets(addrs, data.shape[1])
    self.arena[offs[:, None] + np.arange(data.shape[1])] = data

  def load_dwords(self, addrs: np.ndarray, count: int) -> np.ndarray:
    offs = self.offsets(addrs, 4 * count)
    if (offs & 3).any():
      return np.ascontiguousarray(self.arena[offs[:, None] + np.arange(4 * count)]).view(np.uint32)
    words = self.arena.view(np.uint32)
    if count == 1:
      return words[(offs >> 2)[:, None]]
    return words[(offs >> 2)[:, None] + np.arange(count)]

  def store_dwords(self, addrs: np.ndarray, data: np.ndarray) -> None:
    count = data.shape[1]
    offs = self.offsets(addrs, 4 * count)
    if (offs & 3).any():
      self.arena[offs[:, None] + np.arange(4 * count)] = np.ascontiguousarray(data, dtype=np.uint32).view(np.uint8)
      return
    self.arena.view(np.uint32)[(offs >> 2)[:, None] + np.arange(count)] = data


class PageMap:
  """A minimal page-table walker for tests: virtual page number -> physical page number, from map() calls. A GPUVM
  walker (the simulated card's page tables) takes its place behind PagedMemory."""

  def __init__(self, page_size: int = 4096):
    self.page_size = page_size
    self.pages: dict = {}

  def map(self, va: int, pa: int, size: int) -> PageMap:
    if va % self.page_size or pa % self.page_size:
      raise ValueError(f"va {va:#x} and pa {pa:#x} must be {self.page_size}-byte aligned")
    for i in range(-(-size // self.page_size)):
      self.pages[va // self.page_size + i] = pa // self.page_size + i
    return self

  def __call__(self, vpns: np.ndarray) -> np.ndarray:
    unique, where = np.unique(vpns, return_inverse=True)
    out = np.empty(len(unique), dtype=U64)
    for i, vpn in enumerate(unique.tolist()):
      ppn = self.pages.get(vpn)
      if ppn is None:
        index = int(np.flatnonzero(where == i)[0])
        raise MemoryFault(vpn * self.page_size, self.page_size, "no page-table entry maps this page", index=index)
      out[i] = ppn
    return out[where]


class PagedMemory(Memory):
  """Virtual addresses translated page by page, then accessed in `physical`.

  Args:
    physical: the backing Memory (addressed by physical address).
    translate: callable (N,) uint64 virtual page numbers -> (N,) uint64 physical page numbers; raises MemoryFault (with
      the index of the bad entry) for unmapped pages. This is where a page-table walker sits.
    page_size: bytes per page (a power of two).
  An access that crosses a page boundary is split into bytes, each translated on its own.
  """

  def __init__(self, physical: Memory, translate, page_size: int = 4096):
    self.physical, self.translate, self.page_size = physical, translate, page_size
    self.shift, self.mask = U64(page_size.bit_length() - 1), U64(page_size - 1)

  def physical_addresses(self, addrs: np.ndarray) -> np.ndarray:
    a = np.asarray(addrs, dtype=U64)
    return (self.translate(a >> self.shift) << self.shift) | (a & self.mask)

  def crosses(self, addrs: np.ndarray, size: int) -> bool:
    return bool(((np.asarray(addrs, dtype=U64) & self.mask) + U64(size) > U64(self.page_size)).any())

  def byte_addresses(self, addrs: np.ndarray, size: int) -> np.ndarray:
    flat = (np.asarray(addrs, dtype=U64)[:, None] + np.arange(size, dtype=U64)).reshape(-1)
    try:
      return self.physical_addresses(flat)
    except MemoryFault as e:
      raise MemoryFault(int(flat[e.index]), size, e.reason, index=e.index // size) from None

  def load(self, addrs: np.ndarray, size: int) -> np.ndarray:
    if self.crosses(addrs, size):
      return self.physical.load(self.byte_addresses(addrs, size), 1).reshape(len(addrs), size)
    return self.physical.load(self.physical_addresses(addrs), size)

  def store(self, addrs: np.ndarray, data: np.ndarray) -> None:
    size = data.shape[1]
    if self.crosses(addrs, size):
      self.physical.store(self.byte_addresses(addrs, size), data.reshape(-1, 1))
    else:
      self.physical.store(self.physical_addresses(addrs), data)

  def load_dwords(self, addrs: np.ndarray, count: int) -> np.ndarray:
    if self.crosses(addrs, 4 * count):
      return np.ascontiguousarray(self.load(addrs, 4 * count)).view(np.uint32)
    return self.physical.load_dwords(self.physical_addresses(addrs), count)

  def store_dwords(self, addrs: np.ndarray, data: np.ndarray) -> None:
    if self.crosses(addrs, 4 * data.shape[1]):
      self.store(addrs, np.ascontiguousarray(data, dtype=np.uint32).view(np.uint8))
    else:
      self.physical.store_dwords(self.physical_addresses(addrs), data)
