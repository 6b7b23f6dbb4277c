"""Registers by name with named fields, from the generated tables in am/generated/ (tools/gen_am_tables.py).

An IP block's registers sit in segments: a register's dword address is `base[BASE_IDX] + offset`, where `offset`
and `BASE_IDX` come from the linux offset header (am/generated/<ip>_<version>.py) and `base` is that IP instance's
segment bases, which the IP-discovery table of the card gives (amdgpu: adev->reg_offset[ip][instance][segment],
SOC15_REG_OFFSET in soc15_common.h). Until discovery lands, the caller passes the bases. The byte offset in the
register BAR (BAR 5 on Navi31/Navi48) is 4 * the dword address.

All register access goes through one injected object with `read32(byte_offset)` / `write32(byte_offset, value)`:
the PCI BAR mapping on hardware, `MemoryMMIO` in tests, a simulated card later. Nothing here knows which.

  gc = RegisterBlock(gc_11_0_0, mmio, bases=(0x1260, 0xA000, ...))
  gc.regCP_HQD_PQ_CONTROL.write(QUEUE_SIZE=7, RPTR_BLOCK_SIZE=5)      # every other field 0
  gc.regCP_HQD_PQ_CONTROL.update(UNORD_DISPATCH=1)                    # masked read-modify-write
  gc.regCP_HQD_PQ_CONTROL.read_fields()                               # {'QUEUE_SIZE': 7, ...}

AM_DEBUG=3 (am/debug.py; read when a block is made) prints every access to stderr: direction, IP, register name,
address, value and the decoded fields.
"""
from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Iterable, Mapping, Protocol, Sequence

from am import debug


class MMIO(Protocol):
  """The register aperture: 32-bit reads and writes at byte offsets."""

  def read32(self, offset: int) -> int: ...

  def write32(self, offset: int, value: int) -> None: ...


class MemoryMMIO:
  """An in-memory register aperture: every dword reads back what was last written (0 before that). `log` records
  each access as ('r' | 'w', byte offset, value)."""

  def __init__(self, size: int = 1 << 24):
    self.size = size
    self.values: dict[int, int] = {}
    self.log: list[tuple[str, int, int]] = []

  def _check(self, offset: int) -> None:
    if offset & 3 or not 0 <= offset < self.size:
      raise ValueError(f"MMIO access at byte offset 0x{offset:x}: needs a 4-byte aligned offset below 0x{self.size:x}")

  def read32(self, offset: int) -> int:
    self._check(offset)
    value = self.values.get(offset, 0)
    self.log.append(("r", offset, value))
    return value

  def write32(self, offset: int, value: int) -> None:
    self._check(offset)
    if not 0 <= value <= 0xFFFFFFFF:
      raise ValueError(f"MMIO write of {value:#x} at 0x{offset:x}: not a 32-bit value")
    self.values[offset] = value
    self.log.append(("w", offset, value))


class UnknownNameError(LookupError, AttributeError):
  """A register or field name that the table does not have (an AttributeError too, so `block.regXYZ` and
  getattr/hasattr behave as for any attribute)."""


def close_matches(name: str, choices: Iterable[str], kind: str, where: str) -> UnknownNameError:
  choices = list(choices)
  near = difflib.get_close_matches(name, choices, n=5, cutoff=0.6)
  hint = f"; close matches: {', '.join(near)}" if near else f"; {len(choices)} {kind}s exist"
  return UnknownNameError(f"no {kind} {name!r} in {where}{hint}")


@dataclass(frozen=True)
class Field:
  name: str
  shift: int
  mask: int  # in place (already shifted), as the sh_mask header writes it

  @property
  def width(self) -> int:
    return (self.mask >> self.shift).bit_length()

  @property
  def max(self) -> int:
    return self.mask >> self.shift


@dataclass(frozen=True)
class RegisterSpec:
  """One register of a table: where it is in its IP and which fields it has."""
  name: str
  ip: str
  offset: int
  base_idx: int | None
  fields: Mapping[str, Field]

  def field(self, name: str) -> Field:
    if name not in self.fields:
      raise close_matches(name, self.fields, "field", self.name)
    return self.fields[name]

  def encode(self, **values: int) -> int:
    """The register value with these fields set and all others 0.

    Raises:
      UnknownNameError: a field the register does not have (with close matches).
      ValueError: a value that does not fit its field.
    """
    word = 0
    for name, value in values.items():
      f = self.field(name)
      if not 0 <= value <= f.max:
        raise ValueError(f"{self.name}.{name} = {value:#x}: the field holds 0..{f.max:#x} ({f.width} bits)")
      word |= value << f.shift
    return word

  def decode(self, value: int) -> dict[str, int]:
    """Every field's value in `value`; set bits outside all fields appear as unk_<bit>."""
    out = {name: (value & f.mask) >> f.shift for name, f in self.fields.items()}
    covered = 0
    for f in self.fields.values():
      covered |= f.mask
    stray = value & ~covered & 0xFFFFFFFF
    while stray:
      bit = (stray & -stray).bit_length() - 1
      out[f"unk_{bit}"] = 1
      stray &= stray - 1
    return out

  def describe(self, value: int) -> str:
    fields = self.decode(value)
    shown = ", ".join(f"{k}={v:#x}" for k, v in fields.items() if v or k.startswith("unk_"))
    return f"{self.name}=0x{value:08x}" + (f" {{{shown}}}" if shown else "")


class RegisterTable:
  """A generated register module (am.generated.<ip>_<version>) with specs built on first use."""

  def __init__(self, module: ModuleType):
    self.module = module
    self.ip: str = module.IP
    self.version: tuple = module.VERSION
    self._specs: dict[str, RegisterSpec] = {}

  def __contains__(self, name: str) -> bool:
    return name in self.module.REGISTERS

  def names(self) -> Iterable[str]:
    return self.module.REGISTERS.keys()

  def spec(self, name: str) -> RegisterSpec:
    if name in self._specs:
      return self._specs[name]
    if name not in self.module.REGISTERS:
      raise close_matches(name, self.module.REGISTERS, "register", f"{self.ip} {'.'.join(map(str, self.version))}")
    offset, base_idx, layout = self.module.REGISTERS[name]
    fields = {} if layout is None else {f: Field(f, s, m) for f, (s, m) in self.module.FIELDS[layout].items()}
    spec = RegisterSpec(name, self.ip, offset, base_idx, fields)
    self._specs[name] = spec
    return spec


class Register:
  """A register of one IP instance on one card: RegisterSpec + the block's MMIO and segment bases."""

  def __init__(self, block: RegisterBlock, spec: RegisterSpec):
    self.block = block
    self.spec = spec
    self.name = spec.name
    if spec.base_idx is None:
      self.addr = None
    elif spec.base_idx >= len(block.bases):
      raise ValueError(f"{spec.name} is in segment {spec.base_idx} of {spec.ip}, but only {len(block.bases)} segment "
                       f"bases were given ({block.describe_bases()})")
    else:
      self.addr = block.bases[spec.base_idx] + spec.offset  # dword address

  @property
  def byte_offset(self) -> int:
    if self.addr is None:
      raise ValueError(f"{self.name}: the offset header gives no BASE_IDX, so it has no MMIO address")
    return self.addr * 4

  def encode(self, **fields: int) -> int:
    return self.spec.encode(**fields)

  def decode(self, value: int) -> dict[str, int]:
    return self.spec.decode(value)

  def read(self) -> int:
    value = self.block.mmio.read32(self.byte_offset)
    self.block.trace("R", self, value)
    return value

  def read_fields(self) -> dict[str, int]:
    return self.decode(self.read())

  def write(self, value: int | None = None, **fields: int) -> None:
    """Write a whole value, or the named fields with every other field 0.

    Raises:
      UnknownNameError: a field the register does not have.
      ValueError: both a value and fields, or a value that does not fit.
    """
    if value is not None and fields:
      raise ValueError(f"{self.name}.write: give a whole value or fields, not both")
    if value is None:
      value = self.encode(**fields)
    elif not 0 <= value <= 0xFFFFFFFF:
      raise ValueError(f"{self.name}.write({value:#x}): not a 32-bit value")
    self.block.trace("W", self, value)
    self.block.mmio.write32(self.byte_offset, value)

  def update(self, **fields: int) -> int:
    """Masked read-modify-write: the named fields change, all other bits keep the value read. Returns the value
    written."""
    changes = self.encode(**fields)  # checks names and ranges before touching the hardware
    mask = 0
    for name in fields:
      mask |= self.spec.fields[name].mask
    value = (self.read() & ~mask) | changes
    self.write(value)
    return value

  def __repr__(self) -> str:
    where = "no address" if self.addr is None else f"dword 0x{self.addr:x}"
    return f"<{self.spec.ip} {self.name} {where}>"


def _stderr_trace(line: str) -> None:
  print(line, file=sys.stderr)


class RegisterBlock:
  """The registers of one IP instance: a generated table, the MMIO aperture and that instance's segment bases.

  Args:
    table: a generated register module (e.g. am.generated.gc_11_0_0) or a RegisterTable of one.
    mmio: the register aperture (read32/write32 at byte offsets).
    bases: dword base address of each segment (BASE_IDX 0, 1, ...) of this IP instance, as IP discovery reports.
    trace: called with one line per access; default: print to stderr when AM_DEBUG >= 3 (am/debug.py).
  """

  def __init__(self, table: ModuleType | RegisterTable, mmio: MMIO, bases: Sequence[int],
               trace: Callable[[str], None] | None = None):
    self.table = table if isinstance(table, RegisterTable) else RegisterTable(table)
    self.mmio = mmio
    self.bases = tuple(bases)
    if trace is None and debug.enabled(debug.REGISTERS):
      trace = _stderr_trace
    self._trace = trace
    self._registers: dict[str, Register] = {}
    self._by_addr: dict[int, str] | None = None

  def describe_bases(self) -> str:
    return ", ".join(f"seg{i}=0x{b:x}" for i, b in enumerate(self.bases))

  def reg(self, name: str) -> Register:
    register = self._registers.get(name)
    if register is None:
      register = Register(self, self.table.spec(name))
      self._registers[name] = register
    return register

  def __getitem__(self, name: str) -> Register:
    return self.reg(name)

  def __getattr__(self, name: str) -> Register:
    if name.startswith("reg"):
      return self.reg(name)
    raise AttributeError(f"{type(self).__name__} has no attribute {name!r} (registers are named reg...)")

  def name_at(self, addr: int) -> str | None:
    """The register at dword address `addr` (the first in header order when several share it), or None."""
    if self._by_addr is None:
      self._by_addr = {}
      for name, (offset, base_idx, _) in self.table.module.REGISTERS.items():
        if base_idx is not None and base_idx < len(self.bases):
          self._by_addr.setdefault(self.bases[base_idx] + offset, name)
    return self._by_addr.get(addr)

  def trace(self, direction: str, register: Register, value: int) -> None:
    if self._trace is not None:
      self._trace(f"am.mmio {direction} {self.table.ip} {register.spec.describe(value)} @0x{register.byte_offset:x}")
