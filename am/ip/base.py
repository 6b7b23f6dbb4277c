"""What every IP block shares: the device it belongs to and bounded polls that name what they waited for."""
from __future__ import annotations

import time
from typing import Callable

from am.errors import AMTimeout


class IpBlock:
  """One IP block of the AM driver (amdgpu's amd_ip_funcs: sw_init / hw_init / hw_fini)."""
  name = "ip"

  def __init__(self, dev):
    self.dev = dev

  def init_sw(self) -> None:
    """Allocate what the block needs (memory, firmware); touches no register."""

  def init_hw(self) -> list[str]:
    """Program the hardware; returns one line per fact it verified (printed by `sov am bringup`)."""
    return []

  def fini_hw(self) -> None:
    """Leave the hardware so that a later init_hw brings it up again."""


def wait_reg(reg, mask: int, expected: int, what: str, timeout_s: float = 2.0) -> int:
  """Poll register `reg` until (value & mask) == expected.

  Raises:
    AMTimeout: names the register, the expected and the last value read.
  """
  return wait_for(reg.read, mask, expected, f"{reg.name} ({what})", timeout_s)


def wait_for(read: Callable[[], int], mask: int, expected: int, what: str, timeout_s: float = 2.0) -> int:
  deadline = time.monotonic() + timeout_s
  value = read()
  while (value & mask) != expected:
    if time.monotonic() > deadline:
      raise AMTimeout(f"timed out after {timeout_s}s waiting for {what}: wanted (value & 0x{mask:x}) == "
                      f"0x{expected:x}, last read 0x{value:08x}")
    time.sleep(0)
    value = read()
  return value
