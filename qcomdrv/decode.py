"""Print an Adreno command stream by packet and register name, from the same tables the emitters encode with.

`decode(words, gen)` returns one line per packet header and one per register or payload dword:

      0: PKT7 CP_EVENT_WRITE (1 dword)
      1:   EVENT = CACHE_INVALIDATE
      2: PKT4 HLSQ_INVALIDATE_CMD (1 register)
      3:   HLSQ_INVALIDATE_CMD: { ... | CS_STATE = 1 | ... }

A header whose type is neither 4 nor 7, or whose parity bits are wrong, is reported as such and decoding continues
with the next dword (the CP would fault there). Used in error messages (qcomdrv.device) and DEBUG traces.
"""
from __future__ import annotations

from qcomdrv.pm4 import CP_TYPE4_PKT, CP_TYPE7_PKT, odd_parity_bit
from qcomdrv.regs import packets, registers


def header_problem(word: int) -> str | None:
  """Why `word` is not a valid PKT4/PKT7 header, or None."""
  kind = word >> 28
  if kind == CP_TYPE4_PKT:
    offset, count = (word >> 8) & 0x7FFFF, word & 0x7F
    if (word >> 27) & 1 != odd_parity_bit(offset) or (word >> 7) & 1 != odd_parity_bit(count):
      return f"PKT4 header 0x{word:08x} has wrong parity bits (offset 0x{offset:x}, count {count})"
    return None
  if kind == CP_TYPE7_PKT:
    opcode, count = (word >> 16) & 0x7F, word & 0x3FFF
    if (word >> 24) & 0xF:
      return f"PKT7 header 0x{word:08x} has bits 27:24 set"
    if (word >> 23) & 1 != odd_parity_bit(opcode) or (word >> 15) & 1 != odd_parity_bit(count):
      return f"PKT7 header 0x{word:08x} has wrong parity bits (opcode 0x{opcode:x}, count {count})"
    return None
  return f"0x{word:08x} is not a PKT4 or PKT7 header (type {kind})"


def packet_span(word: int) -> tuple[str, int, int]:
  """(kind "PKT4"|"PKT7", offset or opcode, payload dwords) of a valid header."""
  if word >> 28 == CP_TYPE4_PKT:
    return "PKT4", (word >> 8) & 0x3FFFF, word & 0x7F
  return "PKT7", (word >> 16) & 0x7F, word & 0x3FFF


def _payload(words: list[int], start: int, count: int) -> list[int | None]:
  return [words[start + k] if start + k < len(words) else None for k in range(count)]


def decode_pkt4(regs, offset: int, values: list[int | None], at: int) -> list[str]:
  lines = []
  k = 0
  while k < len(values):
    reg, part = regs.at(offset + k)
    index = at + 1 + k
    if values[k] is None:
      lines.append(f"{index:6d}:   {regs.name_at(offset + k)} <truncated>")
      k += 1
      continue
    if reg is not None and reg.dwords == 2 and part == 0 and k + 1 < len(values) and values[k + 1] is not None:
      value = values[k] | (values[k + 1] << 32)
      lines.append(f"{index:6d}:   {reg.describe(value)}")
      k += 2
      continue
    if reg is None or reg.dwords == 2:
      lines.append(f"{index:6d}:   {regs.name_at(offset + k)}: 0x{values[k]:x}")
    else:
      lines.append(f"{index:6d}:   {reg.describe(values[k])}")
    k += 1
  return lines


def decode_pkt7(pm4, name: str, values: list[int | None], at: int) -> list[str]:
  lines = []
  for k, value in enumerate(values):
    index = at + 1 + k
    if value is None:
      lines.append(f"{index:6d}:   [{k}] <truncated>")
      continue
    dword = pm4.dword(name, k)
    if dword.fields:
      lines.append(f"{index:6d}:   [{k}] {dword.fields_text(value)}")
    else:
      lines.append(f"{index:6d}:   [{k}] 0x{value:08x}")
  return lines


def decode(words, gen: str) -> list[str]:
  """Lines naming every packet and register of the command-stream dwords `words` for generation `gen`."""
  regs, pm4 = registers(gen), packets(gen)
  words = [int(w) for w in words]
  lines, i = [], 0
  while i < len(words):
    problem = header_problem(words[i])
    if problem is not None:
      lines.append(f"{i:6d}: !! {problem}")
      i += 1
      continue
    kind, what, count = packet_span(words[i])
    values = _payload(words, i + 1, count)
    if kind == "PKT4":
      lines.append(f"{i:6d}: PKT4 {regs.name_at(what)} ({count} register{'s' * (count != 1)})")
      lines += decode_pkt4(regs, what, values, i)
    else:
      name = pm4.names.get(what, f"unk_opcode_{what:02x}")
      lines.append(f"{i:6d}: PKT7 {name} ({count} dword{'s' * (count != 1)})")
      lines += decode_pkt7(pm4, name, values, i)
    i += 1 + count
  return lines
