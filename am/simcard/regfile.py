"""The simulated register file: a dword store keyed by byte address (SMN addresses included), with per-register
write/read hooks and the per-queue banking of the CP_HQD_* / CP_MQD_* registers that GRBM_GFX_CNTL selects
(soc21_grbm_select: MEID, PIPEID, QUEUEID). The card's models read and write it by name through RegisterBlocks over
`raw` (no hooks), so the simulator uses the same generated tables as the driver."""
from __future__ import annotations

from typing import Callable

from am.mmio.regs import RegisterBlock


class RawStore:
  """Backing dwords; banked addresses are stored per selected queue."""

  def __init__(self):
    self.values: dict[int, int] = {}
    self.banked: set[int] = set()
    self.bank: Callable[[], tuple] = lambda: ()

  def key(self, offset: int):
    return (offset, self.bank()) if offset in self.banked else offset

  def read32(self, offset: int) -> int:
    return self.values.get(self.key(offset), 0)

  def write32(self, offset: int, value: int) -> None:
    self.values[self.key(offset)] = value & 0xFFFFFFFF


class SimRegisters:
  """The register BAR as the card presents it: read32/write32 at byte offsets, hooks by register."""

  def __init__(self, size: int):
    self.size = size
    self.raw = RawStore()
    self.on_write: dict[int, Callable[[int], None]] = {}
    self.on_read: dict[int, Callable[[], int]] = {}
    self.log: list[tuple[str, int, int]] = []

  def hook(self, block: RegisterBlock, name: str, write=None, read=None) -> None:
    offset = block[name].byte_offset
    if write:
      self.on_write[offset] = write
    if read:
      self.on_read[offset] = read

  def read32(self, offset: int) -> int:
    if offset & 3:
      raise ValueError(f"unaligned register read at 0x{offset:x}")
    value = self.on_read[offset]() if offset in self.on_read else self.raw.read32(offset)
    return value

  def write32(self, offset: int, value: int) -> None:
    if offset & 3:
      raise ValueError(f"unaligned register write at 0x{offset:x}")
    self.raw.write32(offset, value)
    if offset in self.on_write:
      self.on_write[offset](value)
