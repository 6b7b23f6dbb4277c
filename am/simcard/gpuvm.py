"""GPU memory as the simulated card's engines see it: VMID0 virtual addresses translated through the GC hub (SimGmc:
system aperture, then the GART page table) into the card's VRAM.

  VramMemory   the wave emulator's Memory interface (am/sim/memory.py) over the VRAM numpy array, by VRAM offset
  GpuMemory    am.sim PagedMemory in front of it, with SimGmc.lookup as the page walker: an unmapped page raises the
               emulator's MemoryFault (the shader launcher turns it into an IH VM-fault entry, as the UTCL2 would)
  read_va / write_va  byte ranges for the command processors (CP, SDMA), split at 4 KiB pages; a failed translation
               posts the VM fault and returns None / False
"""
from __future__ import annotations

import numpy as np

from am.sim.errors import MemoryFault
from am.sim.memory import Memory, PagedMemory

PAGE = 4096


class VramMemory(Memory):
  """The card's VRAM for the wave emulator, addressed by VRAM offset (what the page walk yields)."""

  def __init__(self, vram):
    self.bytes = vram.bytes

  def _offsets(self, addrs: np.ndarray, size: int) -> np.ndarray:
    offs = np.asarray(addrs, dtype=np.uint64).astype(np.int64)
    bad = (offs < 0) | (offs + size > self.bytes.size)
    if bad.any():
      index = int(np.argmax(bad))
      raise MemoryFault(int(offs[index]), size, "VRAM offset past the end of VRAM", index=index)
    return offs

  def load(self, addrs: np.ndarray, size: int) -> np.ndarray:
    offs = self._offsets(addrs, size)
    return self.bytes[offs[:, None] + np.arange(size)]

  def store(self, addrs: np.ndarray, data: np.ndarray) -> None:
    offs = self._offsets(addrs, data.shape[1])
    self.bytes[offs[:, None] + np.arange(data.shape[1])] = data


class GpuMemory(PagedMemory):
  """VMID0 virtual memory for one dispatch. `faults` keeps the first MemoryFault the walker raised (its address is
  the faulting virtual address)."""

  def __init__(self, card):
    self.card = card
    super().__init__(VramMemory(card.vram), self._walk, PAGE)

  def _walk(self, vpns: np.ndarray) -> np.ndarray:
    unique, where = np.unique(vpns, return_inverse=True)
    out = np.empty(len(unique), dtype=np.uint64)
    for i, vpn in enumerate(unique.tolist()):
      at, why = self.card.gmc.lookup(vpn * PAGE)
      if at is None:
        index = int(np.flatnonzero(where == i)[0])
        raise MemoryFault(vpn * PAGE, PAGE, f"GPUVM: {why}", index=index)
      out[i] = at // PAGE
    return out[where.reshape(-1)]


def read_va(card, va: int, size: int, what: str) -> bytes | None:
  """`size` bytes at virtual address `va`, page by page; None after posting a VM fault."""
  out = bytearray()
  while len(out) < size:
    at = card.gmc.translate(va + len(out), what=what)
    if at is None:
      return None
    chunk = min(size - len(out), PAGE - (va + len(out)) % PAGE)
    out += card.vram.read(at, chunk)
  return bytes(out)


def write_va(card, va: int, data: bytes, what: str) -> bool:
  """Write `data` at virtual address `va`, page by page; False after posting a VM fault (bytes of earlier pages
  stay written, as on the hardware)."""
  done = 0
  while done < len(data):
    at = card.gmc.translate(va + done, write=True, what=what)
    if at is None:
      return False
    chunk = min(len(data) - done, PAGE - (va + done) % PAGE)
    card.vram.write(at, data[done:done + chunk])
    done += chunk
  return True
