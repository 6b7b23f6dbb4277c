"""Write an IP-discovery binary from a list of IP instances: the card side of am/discovery.py, in the same layout
(drivers/gpu/drm/amd/include/discovery.h; am/generated/boot/discovery.py). The simulated cards put its output in
VRAM where amdgpu looks for it; tests corrupt it to check the parser's errors.

Written: binary_header (version 1.0), an ip_discovery_header of version 3 (struct ip_v3 entries, 32-bit bases,
one die), a gc_info table of the version asked for, and a harvest table. Each checksum as
amdgpu_discovery_calculate_checksum computes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from am.cstruct import CStruct
from am.discovery import BINARY, CHECKSUM_START, DIE, DIE_INFO, DISCOVERY_TMR_SIZE, HARVEST, HARVEST_INFO, IHDR, \
  IP_V3, TABLE_INFO, checksum
from am.generated.boot import discovery as T


@dataclass(frozen=True)
class IpEntry:
  name: str                      # soc15_hw_ip.h name without _HWID
  instance: int
  version: tuple[int, int, int]
  bases: tuple[int, ...]
  variant: int = 0
  sub_revision: int = 0


def _align(value: int, to: int = 8) -> int:
  return (value + to - 1) // to * to


def ip_section(ips: Sequence[IpEntry], version: int = 3) -> bytearray:
  """ip_discovery_header + one die_header + the ip_v3 entries; die_offset is relative to the binary, so the caller
  patches it (see build)."""
  out = IHDR.pack(signature=T.CONSTANTS["DISCOVERY_TABLE_SIGNATURE"], version=version, id=0, num_dies=1)
  out += DIE.pack(die_id=0, num_ips=len(ips))
  for ip in ips:
    out += IP_V3.pack(hw_id=T.HWIDS[f"{ip.name}_HWID"], instance_number=ip.instance, num_base_address=len(ip.bases),
                      major=ip.version[0], minor=ip.version[1], revision=ip.version[2], variant=ip.variant,
                      sub_revision=ip.sub_revision)
    out += b"".join(base.to_bytes(4, "little") for base in ip.bases)
  return out


def gc_section(version: tuple[int, int], values: Mapping[str, int]) -> bytearray:
  layout = CStruct(T.STRUCTS, T.SIZES, f"gc_info_v{version[0]}_{version[1]}")
  out = layout.pack(**{"header.table_id": T.CONSTANTS["GC_TABLE_ID"], "header.version_major": version[0],
                       "header.version_minor": version[1], "header.size": layout.size})
  for name, value in values.items():
    layout.set(out, name, value)
  return out


def harvest_section(harvested: Sequence[tuple[str, int]]) -> bytearray:
  out = HARVEST.pack(**{"header.signature": T.CONSTANTS["HARVEST_TABLE_SIGNATURE"], "header.version": 1})
  for i, (name, instance) in enumerate(harvested):
    base = HARVEST.element("list", i)
    HARVEST_INFO.set(out, "hw_id", T.HWIDS[f"{name}_HWID"], base)
    HARVEST_INFO.set(out, "number_instance", instance, base)
  return out


def build(ips: Sequence[IpEntry], gc_version: tuple[int, int], gc_info: Mapping[str, int],
          harvested: Sequence[tuple[str, int]] = ()) -> bytes:
  """The whole binary, at most DISCOVERY_TMR_SIZE bytes.

  Raises:
    ValueError: the tables do not fit DISCOVERY_TMR_SIZE.
  """
  blob = bytearray(_align(BINARY.size))
  tables = {}
  ip_offset = len(blob)
  ips_bytes = ip_section(ips)
  IHDR.set(ips_bytes, "size", len(ips_bytes))
  DIE_INFO.set(ips_bytes, "die_offset", ip_offset + IHDR.size, IHDR.element("die_info", 0))
  for name, section in (("IP_DISCOVERY", ips_bytes), ("GC", gc_section(gc_version, gc_info)),
                        ("HARVEST_INFO", harvest_section(harvested))):
    offset = _align(len(blob))
    blob += bytes(offset - len(blob)) + section
    tables[name] = (offset, checksum(section), len(section))
  if len(blob) > DISCOVERY_TMR_SIZE:
    raise ValueError(f"discovery binary of {len(blob)} bytes exceeds DISCOVERY_TMR_SIZE {DISCOVERY_TMR_SIZE}")
  BINARY.set(blob, "binary_signature", T.CONSTANTS["BINARY_SIGNATURE"])
  BINARY.set(blob, "version_major", 1)
  BINARY.set(blob, "binary_size", len(blob))
  for name, (offset, csum, size) in tables.items():
    base = BINARY.element("table_list", T.TABLES[name])
    TABLE_INFO.set(blob, "offset", offset, base)
    TABLE_INFO.set(blob, "checksum", csum, base)
    TABLE_INFO.set(blob, "size", size, base)
  BINARY.set(blob, "binary_checksum", checksum(blob[CHECKSUM_START:]))
  return bytes(blob)
