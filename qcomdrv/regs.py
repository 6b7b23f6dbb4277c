"""Named-field Adreno registers and packet payload dwords, built from the generated tables (one database drives
encode, decode and the decoder's names).

A `Register` encodes field values into its word (`encode(THREADSIZE="THREAD128", FULLREGFOOTPRINT=3)`) and decodes a
word back into fields (`decode(word)`). Field values are checked: an unknown field name raises at once, naming close
matches; a value that does not fit its bits, or is not a multiple of 2**shr for a field stored shifted (CONSTLEN is
stored >> 2), raises with the field and its range; enum-typed fields take the value's name or its number. 64-bit
registers (reg64) encode to one 64-bit value that a PKT4 writes as two dwords, low then high.

`Registers(gen)` is the table of one generation ("a6xx" or "a7xx"): `regs["SP_CS_CTRL_REG0"]`, array members as
`regs["SP_CS_BINDLESS_BASE[2].DESCRIPTOR"]`, and `regs.at(offset)` for the decoder. `Packets(gen)` is the same for
the payload dwords of type-7 packets (`packets.dword("CP_LOAD_STATE6", 0).encode(STATE_TYPE="ST6_SHADER", ...)`).
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass

from qcomdrv.generated import a6xx_regs, a7xx_regs, pm4_a6xx, pm4_a7xx

REG_TABLES = {"a6xx": a6xx_regs, "a7xx": a7xx_regs}
PM4_TABLES = {"a6xx": pm4_a6xx, "a7xx": pm4_a7xx}


def close_matches(name: str, choices) -> str:
  near = difflib.get_close_matches(name, list(choices), n=4, cutoff=0.5)
  return f"; close matches: {', '.join(near)}" if near else ""


@dataclass(frozen=True)
class Field:
  name: str
  low: int
  high: int
  shr: int  # the field holds value >> shr (the value's low shr bits must be zero)
  type: str  # uint, boolean, hex, an enum name, a3xx_regid ...

  @property
  def bits(self) -> int:
    return self.high - self.low + 1

  @property
  def mask(self) -> int:
    return ((1 << self.bits) - 1) << self.low


class Register:
  """One register (or one payload dword) with its fields; `enums` resolves enum-typed fields."""

  def __init__(self, name: str, offset: int, width: int, span: tuple[int, int] | None, fields: dict, enums: dict):
    self.name = name
    self.offset = offset
    self.width = width
    self.span = span
    self.fields = {f: Field(f, lo, hi, shr, kind) for f, (lo, hi, shr, kind) in fields.items()}
    self.enums = enums

  def __repr__(self) -> str:
    return f"<Register {self.name} @0x{self.offset:04x}>"

  @property
  def dwords(self) -> int:
    return self.width // 32

  def field(self, name: str) -> Field:
    field = self.fields.get(name)
    if field is None:
      known = ", ".join(self.fields) or "none (write the value itself)"
      raise KeyError(f"{self.name} has no field {name!r}{close_matches(name, self.fields)}; its fields: {known}")
    return field

  def field_value(self, field: Field, value) -> int:
    """The number a field value stands for (an enum name, a bool or an int), checked against the field's range."""
    if isinstance(value, str):
      values = self.enums.get(field.type, {})
      if value not in values:
        raise ValueError(f"{self.name}.{field.name} is of type {field.type}; {value!r} is not one of its values"
                         f"{close_matches(value, values)} (known: {', '.join(values) or 'none'})")
      value = values[value]
    value = int(value)
    if value < 0 or value & ((1 << field.shr) - 1):
      raise ValueError(f"{self.name}.{field.name} = {value}: must be a non-negative multiple of {1 << field.shr}")
    stored = value >> field.shr
    if stored >= (1 << field.bits):
      limit = ((1 << field.bits) - 1) << field.shr
      raise ValueError(f"{self.name}.{field.name} = {value} does not fit bits {field.high}:{field.low} "
                       f"(at most {limit})")
    return stored << field.low

  def encode(self, value: int | None = None, **fields) -> int:
    """The register word: a bare `value` (registers without fields, or a whole word) or named fields."""
    if value is not None and fields:
      raise ValueError(f"{self.name}: give either a whole value or fields, not both")
    if value is not None:
      value = int(value)
      limit = (1 << self.width) if self.span is None else (1 << (self.span[1] + 1))
      if not 0 <= value < limit:
        raise ValueError(f"{self.name} = 0x{value:x} does not fit the register (below 0x{limit:x})")
      return value
    word = 0
    for name, v in fields.items():
      word |= self.field_value(self.field(name), v)
    return word

  def decode(self, word: int) -> dict[str, int | str]:
    """Field name -> value (enum fields by value name when known) of a register word; unknown set bits are given as
    unk_<bit> so nothing is silently dropped."""
    out: dict[str, int | str] = {}
    covered = 0
    for field in self.fields.values():
      covered |= field.mask
      raw = ((word & field.mask) >> field.low) << field.shr
      names = {v: k for k, v in self.enums.get(field.type, {}).items()}
      out[field.name] = names.get(raw, raw)
    rest = word & ~covered & ((1 << self.width) - 1)
    if self.fields and rest:
      out[f"unk_{rest:x}"] = rest
    return out

  def fields_text(self, word: int) -> str:
    """`FIELD = value | ...` (numbers above 9 in hex, enum values by name)."""
    parts = []
    for name, value in self.decode(word).items():
      shown = value if isinstance(value, str) or value <= 9 else hex(value)
      parts.append(f"{name} = {shown}")
    return " | ".join(parts)

  def describe(self, word: int) -> str:
    """`NAME: { FIELD = value | ... }` (or `NAME: 0x...` for a register without fields), as the decoder prints."""
    if not self.fields:
      return f"{self.name}: 0x{word:x}"
    return f"{self.name}: {{ {self.fields_text(word)} }}"


class Registers:
  """The registers of one generation, by name and by dword offset."""

  def __init__(self, gen: str):
    table = REG_TABLES[gen]
    self.gen = gen
    self.by_name: dict[str, Register] = {}
    for name, (offset, width, span, fields) in table.REGS.items():
      self.by_name[name] = Register(name, offset, width, span, fields, table.ENUMS)
    for name, (base, stride, length, members) in table.ARRAYS.items():
      for i in range(length):
        if not members:
          self.by_name[f"{name}[{i}]"] = Register(f"{name}[{i}]", base + i * stride, 32, None, {}, table.ENUMS)
        for member, (offset, width, span, fields) in members.items():
          full = f"{name}[{i}].{member}"
          self.by_name[full] = Register(full, base + i * stride + offset, width, span, fields, table.ENUMS)
    self.by_offset: dict[int, tuple[Register, int]] = {}
    for reg in self.by_name.values():
      for k in range(reg.dwords):
        self.by_offset.setdefault(reg.offset + k, (reg, k))

  def __getitem__(self, name: str) -> Register:
    reg = self.by_name.get(name)
    if reg is None:
      raise KeyError(f"no register {name!r} on {self.gen}{close_matches(name, self.by_name)}")
    return reg

  def __contains__(self, name: str) -> bool:
    return name in self.by_name

  def at(self, offset: int) -> tuple[Register | None, int]:
    """(register, dword index within it) at a dword offset; (None, 0) where the database names nothing."""
    return self.by_offset.get(offset, (None, 0))

  def name_at(self, offset: int) -> str:
    reg, k = self.at(offset)
    if reg is None:
      return f"unk_{offset:04x}"
    return reg.name + (("_LO", "_HI")[k] if reg.dwords == 2 else "")


class Packets:
  """Type-7 opcodes and payload layouts of one generation."""

  # packets whose payload is laid out by another packet's domain (adreno_pm4.xml: "for compute shaders,
  # CP_LOAD_STATE6_FRAG is used", with CP_LOAD_STATE6's dwords)
  LAYOUT_OF = {"CP_LOAD_STATE6_FRAG": "CP_LOAD_STATE6", "CP_LOAD_STATE6_GEOM": "CP_LOAD_STATE6"}

  def __init__(self, gen: str):
    table = PM4_TABLES[gen]
    self.gen = gen
    self.opcodes: dict[str, int] = dict(table.OPCODES)
    self.names: dict[int, str] = {}
    for name, value in table.OPCODES.items():
      self.names.setdefault(value, name)
    self.enums = table.ENUMS
    self.layouts = table.PACKETS

  def opcode(self, name: str) -> int:
    if name not in self.opcodes:
      raise KeyError(f"no type-7 packet {name!r} on {self.gen}{close_matches(name, self.opcodes)}")
    return self.opcodes[name]

  def dword(self, packet: str, index: int, name: str | None = None) -> Register:
    """Payload dword `index` of `packet` (the first layout, or the one called `name` where stripes give several)."""
    layout = self.layouts.get(self.LAYOUT_OF.get(packet, packet), {})
    entries = layout.get(index, ())
    for entry_name, width, fields in entries:
      if name is None or entry_name == name:
        return Register(f"{packet}[{index}]", index, width, None, fields, self.enums)
    return Register(f"{packet}[{index}]", index, 32, None, {}, self.enums)


@functools.cache
def registers(gen: str) -> Registers:
  return Registers(gen)


@functools.cache
def packets(gen: str) -> Packets:
  return Packets(gen)
