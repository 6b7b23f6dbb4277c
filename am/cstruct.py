"""Read and write the C structs of the generated bring-up tables (am/generated/boot/) by member name.

    hdr = CStruct(discovery.STRUCTS, discovery.SIZES, "binary_header")
    hdr.unpack(blob)["binary_signature"]; hdr.pack(binary_signature=0x28211407, ...)
    cmd = CStruct(psp_if.STRUCTS, psp_if.SIZES, "psp_gfx_cmd_resp")
    cmd.pack(cmd_id=6, **{"cmd.cmd_load_ip_fw.fw_size": 4096})

Members are the flattened names of the tables (nested members dotted). Bitfields read and write their bits;
arrays of scalars are lists; arrays of structs are read element by element with `element()`. Unknown member
names raise at once with close matches, as registers do (am.mmio.regs).
"""
from __future__ import annotations

import struct as pystruct
from dataclasses import dataclass

from am.mmio.regs import close_matches

FORMATS = {"uint8_t": "B", "uint16_t": "H", "uint32_t": "I", "uint64_t": "Q"}


@dataclass(frozen=True)
class Member:
  name: str
  offset: int
  ctype: str
  count: int     # 0 scalar, N array, -1 flexible array
  shift: int
  width: int     # bitfield width, 0 when not a bitfield


class CStruct:
  """One struct of a generated table: its size and named members."""

  def __init__(self, structs: dict, sizes: dict, name: str):
    if name not in structs:
      raise close_matches(name, structs, "struct", "the generated table")
    self.name = name
    self.size = sizes[name]
    self.sizes = sizes
    self.members = {row[0]: Member(*row) for row in structs[name]}

  def member(self, name: str) -> Member:
    if name not in self.members:
      raise close_matches(name, self.members, "member", f"struct {self.name}")
    return self.members[name]

  def offset(self, name: str) -> int:
    return self.member(name).offset

  def element(self, name: str, index: int) -> int:
    """Byte offset of element `index` of an array member of struct type."""
    m = self.member(name)
    size = self.sizes[m.ctype.split()[1]] if m.ctype.startswith(("struct ", "union ")) else \
        pystruct.calcsize(FORMATS[m.ctype])
    if m.count >= 0 and not 0 <= index < m.count:
      raise IndexError(f"{self.name}.{name}[{index}]: the array has {m.count} elements")
    return m.offset + index * size

  def get(self, data: bytes | bytearray | memoryview, name: str, base: int = 0) -> int:
    m = self.member(name)
    if m.count:
      raise ValueError(f"{self.name}.{name} is an array; use get_array")
    word = pystruct.unpack_from("<" + FORMATS[m.ctype], data, base + m.offset)[0]
    return (word >> m.shift) & ((1 << m.width) - 1) if m.width else word

  def get_array(self, data, name: str, count: int | None = None, base: int = 0) -> list[int]:
    m = self.member(name)
    n = m.count if count is None else count
    if n < 0:
      raise ValueError(f"{self.name}.{name} is a flexible array: pass count")
    fmt = FORMATS[m.ctype]
    return list(pystruct.unpack_from(f"<{n}{fmt}", data, base + m.offset))

  def set(self, buf: bytearray, name: str, value: int, base: int = 0) -> None:
    m = self.member(name)
    fmt = "<" + FORMATS[m.ctype]
    bits = 8 * pystruct.calcsize(fmt)
    if m.width:
      if not 0 <= value < (1 << m.width):
        raise ValueError(f"{self.name}.{name} = {value:#x}: the bitfield holds {m.width} bits")
      word = pystruct.unpack_from(fmt, buf, base + m.offset)[0]
      mask = ((1 << m.width) - 1) << m.shift
      value = (word & ~mask) | (value << m.shift)
    elif not 0 <= value < (1 << bits):
      raise ValueError(f"{self.name}.{name} = {value:#x}: the member holds {bits} bits")
    pystruct.pack_into(fmt, buf, base + m.offset, value)

  def set_array(self, buf: bytearray, name: str, values, base: int = 0) -> None:
    m = self.member(name)
    fmt = FORMATS[m.ctype]
    pystruct.pack_into(f"<{len(values)}{fmt}", buf, base + m.offset, *values)

  def pack(self, **values: int) -> bytearray:
    """A zeroed struct with the named members set (dotted names: pass them with **{...})."""
    buf = bytearray(self.size)
    for name, value in values.items():
      self.set(buf, name, value)
    return buf

  def unpack(self, data, base: int = 0) -> dict[str, int]:
    """Every scalar member and bitfield by name (arrays left out)."""
    return {name: self.get(data, name, base) for name, m in self.members.items() if not m.count
            and m.ctype in FORMATS}
