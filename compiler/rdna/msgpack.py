"""MessagePack, the subset an AMDGPU code object's metadata note uses (NT_AMDGPU_METADATA, AMDGPUUsage "Code Object V3
Metadata": "represented as Message Pack formatted binary data"), so the code object reader needs no extra package.

    pack({"amdhsa.version": [1, 2]})        # b'\\x81\\xaeamdhsa.version\\x92\\x01\\x02'
    unpack(b'\\x92\\x01\\xa1a')              # [1, 'a']

Format facts from the MessagePack specification (github.com/msgpack/msgpack/blob/master/spec.md), first byte:
  0x00-0x7f positive fixint     0x80-0x8f fixmap (n pairs)    0x90-0x9f fixarray    0xa0-0xbf fixstr (n bytes)
  0xc0 nil  0xc2 false  0xc3 true    0xc4/c5/c6 bin 8/16/32    0xca float32  0xcb float64
  0xcc/cd/ce/cf uint 8/16/32/64      0xd0/d1/d2/d3 int 8/16/32/64
  0xd9/da/db str 8/16/32             0xdc/dd array 16/32       0xde/df map 16/32      0xe0-0xff negative fixint
Multi-byte lengths and numbers are big-endian. Not covered: the ext / timestamp types (0xc7-0xc9, 0xd4-0xd8).
The encoder picks the shortest form of each value (floats as float64), as the `msgpack` package's packb does, so
their bytes match; arrays decode to lists, str to str, bin to bytes.
"""
from __future__ import annotations

import struct

__all__ = ["MsgpackError", "pack", "unpack"]

NIL, FALSE, TRUE = 0xC0, 0xC2, 0xC3
FLOAT32, FLOAT64 = 0xCA, 0xCB
# first byte -> (struct format of the number that follows)
UINTS = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q"}
INTS = {0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
# first byte -> (kind, struct format of the length that follows)
SIZED = {0xC4: ("bin", ">B"), 0xC5: ("bin", ">H"), 0xC6: ("bin", ">I"), 0xD9: ("str", ">B"), 0xDA: ("str", ">H"),
         0xDB: ("str", ">I"), 0xDC: ("array", ">H"), 0xDD: ("array", ">I"), 0xDE: ("map", ">H"), 0xDF: ("map", ">I")}
# kind -> ((largest length, first byte, length format), ...) shortest first; fix forms are handled apart
LENGTH_FORMS = {"str": ((0xFF, 0xD9, ">B"), (0xFFFF, 0xDA, ">H"), (0xFFFFFFFF, 0xDB, ">I")),
                "bin": ((0xFF, 0xC4, ">B"), (0xFFFF, 0xC5, ">H"), (0xFFFFFFFF, 0xC6, ">I")),
                "array": ((0xFFFF, 0xDC, ">H"), (0xFFFFFFFF, 0xDD, ">I")),
                "map": ((0xFFFF, 0xDE, ">H"), (0xFFFFFFFF, 0xDF, ">I"))}
FIX_FORMS = {"str": (0xA0, 31), "array": (0x90, 15), "map": (0x80, 15)}   # kind -> (first byte, largest length)
MAX_DEPTH = 512


class MsgpackError(ValueError):
  """Bytes that are not MessagePack of the supported subset, or a value that has no MessagePack form here."""


def pack(value) -> bytes:
  """Encode None, bool, int (-2**63 .. 2**64-1), float, str, bytes, list/tuple and dict (keys of those types).

  Raises:
    MsgpackError: a value of another type, or an int out of range.
  """
  out = bytearray()
  _pack(value, out, 0)
  return bytes(out)


def _pack(value, out: bytearray, depth: int) -> None:
  if depth > MAX_DEPTH:
    raise MsgpackError(f"value nested deeper than {MAX_DEPTH} levels")
  if value is None:
    out.append(NIL)
  elif value is True or value is False:
    out.append(TRUE if value else FALSE)
  elif isinstance(value, int):
    out += pack_int(value)
  elif isinstance(value, float):
    out += struct.pack(">Bd", FLOAT64, value)
  elif isinstance(value, str):
    data = value.encode("utf-8")
    out += pack_length("str", len(data)) + data
  elif isinstance(value, (bytes, bytearray, memoryview)):
    data = bytes(value)
    out += pack_length("bin", len(data)) + data
  elif isinstance(value, (list, tuple)):
    out += pack_length("array", len(value))
    for item in value:
      _pack(item, out, depth + 1)
  elif isinstance(value, dict):
    out += pack_length("map", len(value))
    for key, item in value.items():
      _pack(key, out, depth + 1)
      _pack(item, out, depth + 1)
  else:
    raise MsgpackError(f"cannot encode {type(value).__name__} {value!r} as MessagePack")


def pack_int(n: int) -> bytes:
  if 0 <= n <= 0x7F:
    return bytes([n])
  if -32 <= n < 0:
    return bytes([n & 0xFF])                  # negative fixint 0xe0-0xff
  if n > 0:
    for first, fmt in UINTS.items():
      if n < 1 << (8 * struct.calcsize(fmt)):
        return bytes([first]) + struct.pack(fmt, n)
  else:
    for first, fmt in INTS.items():
      if n >= -(1 << (8 * struct.calcsize(fmt) - 1)):
        return bytes([first]) + struct.pack(fmt, n)
  raise MsgpackError(f"integer {n} is out of MessagePack's range (-2**63 .. 2**64-1)")


def pack_length(kind: str, n: int) -> bytes:
  fix = FIX_FORMS.get(kind)
  if fix is not None and n <= fix[1]:
    return bytes([fix[0] | n])
  for largest, first, fmt in LENGTH_FORMS[kind]:
    if n <= largest:
      return bytes([first]) + struct.pack(fmt, n)
  raise MsgpackError(f"{kind} of length {n} is too long for MessagePack")


def unpack(data: bytes):
  """Decode exactly one MessagePack value that fills `data`.

  Raises:
    MsgpackError: truncated data, trailing bytes, an unsupported type byte, invalid UTF-8, an unhashable map key.
  """
  reader = Reader(bytes(data))
  value = reader.value(0)
  if reader.pos != len(reader.data):
    raise MsgpackError(f"{len(reader.data) - reader.pos} trailing bytes after the MessagePack value "
                       f"(at offset {reader.pos:#x})")
  return value


class Reader:
  """Cursor over the bytes being decoded; every read checks the length first."""

  def __init__(self, data: bytes):
    self.data = data
    self.pos = 0

  def take(self, n: int) -> bytes:
    if self.pos + n > len(self.data):
      raise MsgpackError(f"truncated MessagePack: {n} bytes needed at offset {self.pos:#x}, "
                         f"{len(self.data) - self.pos} left")
    chunk = self.data[self.pos:self.pos + n]
    self.pos += n
    return chunk

  def number(self, fmt: str):
    return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

  def value(self, depth: int):
    if depth > MAX_DEPTH:
      raise MsgpackError(f"MessagePack nested deeper than {MAX_DEPTH} levels")
    start = self.pos
    first = self.take(1)[0]
    if first <= 0x7F:
      return first
    if first >= 0xE0:
      return first - 0x100
    if first == NIL:
      return None
    if first in (FALSE, TRUE):
      return first == TRUE
    if first in UINTS:
      return self.number(UINTS[first])
    if first in INTS:
      return self.number(INTS[first])
    if first in (FLOAT32, FLOAT64):
      return self.number(">f" if first == FLOAT32 else ">d")
    if 0x80 <= first <= 0x8F:
      return self.sized("map", first & 0x0F, depth, start)
    if 0x90 <= first <= 0x9F:
      return self.sized("array", first & 0x0F, depth, start)
    if 0xA0 <= first <= 0xBF:
      return self.sized("str", first & 0x1F, depth, start)
    if first in SIZED:
      kind, fmt = SIZED[first]
      return self.sized(kind, self.number(fmt), depth, start)
    raise MsgpackError(f"unsupported MessagePack type byte {first:#04x} at offset {start:#x} "
                       "(ext and timestamp types are not used by AMDGPU metadata)")

  def sized(self, kind: str, n: int, depth: int, start: int):
    if kind == "bin":
      return self.take(n)
    if kind == "str":
      raw = self.take(n)
      try:
        return raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise MsgpackError(f"invalid UTF-8 in the string at offset {start:#x}: {e}") from None
    if kind == "array":
      return [self.value(depth + 1) for _ in range(n)]
    out = {}
    for _ in range(n):
      key_at = self.pos
      key = self.value(depth + 1)
      if isinstance(key, (list, dict)):
        raise MsgpackError(f"map key at offset {key_at:#x} is a {type(key).__name__}, which cannot be a dict key")
      out[key] = self.value(depth + 1)
    return out
