"""AM_DEBUG: what the AM driver logs to stderr, by level (the environment is read at each use, so a test or a shell can
change it between calls):

  1  each boot stage with its time and the facts it verified, each teardown, each queue submission (queue, dwords,
     new write pointer), each IH entry the driver reads, decoded
  2  and the packets of every submission, decoded from the tables they were encoded with (am.pm4.decode)
  3  and every register access: direction, IP, register name, byte address, value and decoded fields (am.mmio.regs)

Lines start with `am:` (`am.mmio` for register accesses). A value that is not a number counts as 1, so AM_DEBUG=yes
logs stages.
"""
from __future__ import annotations

import os
import sys

STAGES, PACKETS, REGISTERS = 1, 2, 3


def level() -> int:
  """The AM_DEBUG level: 0 when unset, empty or 0; 1 for a value that is not a number."""
  text = os.environ.get("AM_DEBUG", "").strip()
  if not text:
    return 0
  try:
    return int(text)
  except ValueError:
    return 1


def enabled(at: int) -> bool:
  return level() >= at


def log(at: int, line: str) -> None:
  """Print `line` to stderr (prefixed `am: `) when AM_DEBUG >= `at`."""
  if level() >= at:
    print(f"am: {line}", file=sys.stderr)
