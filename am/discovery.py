"""The IP-discovery table: which IP blocks a card has, their versions, register bases, harvesting and GC shape.

Layout (drivers/gpu/drm/amd/include/discovery.h, linux-source-6.12; tables in am/generated/boot/discovery.py):

  binary_header           signature 0x28211407, binary_checksum over [10, binary_size), table_list[6]
  table_list[IP_DISCOVERY] -> ip_discovery_header 'IPDS', version, size, num_dies, die_info[16].die_offset
      die_header (die_id, num_ips), then num_ips entries of struct ip (v1) / ip_v3 / ip_v4: hw_id,
      instance, num_base_address, major.minor.revision, harvest (v1) or sub_revision/variant (v3+), then
      num_base_address 32-bit (or 64-bit when base_addr_64_bit) dword bases
  table_list[GC]          -> gc_info_v1_x / v2_x (gpu_info_header 'GC', version, size)
  table_list[HARVEST_INFO] -> harvest_table 'HARV', 32 (hw_id, instance) entries of harvested blocks

Each table has a byte-sum checksum (uint16) in table_list (amdgpu_discovery.c amdgpu_discovery_init and
amdgpu_discovery_calculate_checksum); the walk of the IP list follows amdgpu_discovery_reg_base_init. The table lies
in VRAM at (RCC_CONFIG_MEMSIZE << 20) - DISCOVERY_TMR_OFFSET (64 KiB), DISCOVERY_TMR_SIZE (10 KiB) long
(amdgpu_discovery.h, amdgpu_discovery_read_binary_from_mem).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from am.cstruct import CStruct
from am.errors import DiscoveryError
from am.generated.boot import discovery as T

DISCOVERY_TMR_OFFSET = 64 << 10   # amdgpu_discovery.h
DISCOVERY_TMR_SIZE = 10 << 10     # amdgpu_discovery.h
CHECKSUM_START = 10               # offsetof(binary_header, binary_checksum) + sizeof(binary_checksum)
HWIDS = {hw_id: name[:-len("_HWID")] for name, hw_id in reversed(list(T.HWIDS.items()))}  # first name per id wins
HWIDS[T.HWIDS["VCN_HWID"]] = "VCN"  # soc15_hw_ip.h: VCN_HWID is UVD_HWID; these cards have VCN

BINARY = CStruct(T.STRUCTS, T.SIZES, "binary_header")
TABLE_INFO = CStruct(T.STRUCTS, T.SIZES, "table_info")
IHDR = CStruct(T.STRUCTS, T.SIZES, "ip_discovery_header")
DIE_INFO = CStruct(T.STRUCTS, T.SIZES, "die_info")
DIE = CStruct(T.STRUCTS, T.SIZES, "die_header")
IP_V1 = CStruct(T.STRUCTS, T.SIZES, "ip")
IP_V3 = CStruct(T.STRUCTS, T.SIZES, "ip_v3")
IP_V4 = CStruct(T.STRUCTS, T.SIZES, "ip_v4")
GPU_INFO = CStruct(T.STRUCTS, T.SIZES, "gpu_info_header")
HARVEST = CStruct(T.STRUCTS, T.SIZES, "harvest_table")
HARVEST_INFO = CStruct(T.STRUCTS, T.SIZES, "harvest_info")


def checksum(data: bytes | bytearray | memoryview) -> int:
  """amdgpu_discovery_calculate_checksum: the byte sum, truncated to 16 bits."""
  return sum(bytes(data)) & 0xFFFF


@dataclass(frozen=True)
class IpInstance:
  """One IP block instance as the table lists it."""
  hw_id: int
  name: str                      # soc15_hw_ip.h name without _HWID: GC, MMHUB, MP0, NBIF, ...
  instance: int
  version: tuple[int, int, int]  # major, minor, revision
  variant: int                   # ip_v3+ (0 for v1 tables)
  sub_revision: int              # ip_v3+ (0 for v1 tables)
  harvest: int                   # struct ip (v1) harvest bits (0 for v3+)
  bases: tuple[int, ...]         # dword base of each register segment (BASE_IDX 0, 1, ...)

  def describe(self) -> str:
    bases = " ".join(f"0x{b:x}" for b in self.bases)
    return f"{self.name}[{self.instance}] {'.'.join(map(str, self.version))} bases {bases}"


@dataclass(frozen=True)
class Discovery:
  """The decoded table. `ips` keeps table order; `harvested` lists (block name, instance) the harvest table names."""
  version: tuple[int, int]
  ip_table_version: int
  ips: tuple[IpInstance, ...]
  harvested: tuple[tuple[str, int], ...]
  gc_info_version: tuple[int, int] | None
  gc_info: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

  def find(self, name: str, instance: int = 0) -> IpInstance | None:
    for ip in self.ips:
      if ip.name == name and ip.instance == instance:
        return ip
    return None

  def ip(self, name: str, instance: int = 0) -> IpInstance:
    """The IP instance by soc15 name.

    Raises:
      DiscoveryError: the table has no such block (names the blocks it has).
    """
    found = self.find(name, instance)
    if found is None:
      have = sorted({f"{ip.name}[{ip.instance}]" for ip in self.ips})
      raise DiscoveryError(f"the discovery table has no {name}[{instance}]; it lists {', '.join(have)}")
    return found

  def version_of(self, name: str, instance: int = 0) -> tuple[int, int, int] | None:
    found = self.find(name, instance)
    return None if found is None else found.version

  def describe(self) -> str:
    lines = [f"IP discovery v{self.version[0]}.{self.version[1]}, IP table v{self.ip_table_version}, "
             f"{len(self.ips)} IP instances"]
    lines += ["  " + ip.describe() for ip in self.ips]
    if self.harvested:
      lines.append("  harvested: " + ", ".join(f"{name}[{inst}]" for name, inst in self.harvested))
    if self.gc_info_version:
      shown = ", ".join(f"{k[3:]}={v}" for k, v in self.gc_info.items() if not k.startswith("header."))
      lines.append(f"  gc_info v{self.gc_info_version[0]}.{self.gc_info_version[1]}: {shown}")
    return "\n".join(lines)


def _table(blob: bytes, index: str) -> tuple[int, int]:
  base = BINARY.element("table_list", T.TABLES[index])
  return TABLE_INFO.get(blob, "offset", base), TABLE_INFO.get(blob, "checksum", base)


def _check_range(blob: bytes, offset: int, size: int, what: str) -> None:
  if offset + size > len(blob):
    raise DiscoveryError(f"discovery {what} at 0x{offset:x} (+0x{size:x}) runs past the table's end 0x{len(blob):x}")


def _check_sum(blob: bytes, offset: int, size: int, expected: int, what: str) -> None:
  _check_range(blob, offset, size, what)
  got = checksum(blob[offset:offset + size])
  if got != expected:
    raise DiscoveryError(f"discovery {what} checksum mismatch: bytes [0x{offset:x}, 0x{offset + size:x}) sum to "
                         f"0x{got:04x}, the table says 0x{expected:04x} (corrupt table or wrong VRAM offset)")


def parse(blob: bytes | bytearray | memoryview) -> Discovery:
  """Decode a discovery binary (the bytes read from VRAM, DISCOVERY_TMR_SIZE long or more).

  Raises:
    DiscoveryError: bad signature, checksum, table id or an entry that runs past the end (names which and the
      values found).
  """
  blob = bytes(blob)
  _check_range(blob, 0, BINARY.size, "binary header")
  signature = BINARY.get(blob, "binary_signature")
  if signature != T.CONSTANTS["BINARY_SIGNATURE"]:
    raise DiscoveryError(f"no IP-discovery table: binary signature 0x{signature:08x}, expected "
                         f"0x{T.CONSTANTS['BINARY_SIGNATURE']:08x} (is the VRAM offset right? is the card initialised "
                         "by its VBIOS?)")
  size = BINARY.get(blob, "binary_size")
  _check_sum(blob, CHECKSUM_START, size - CHECKSUM_START, BINARY.get(blob, "binary_checksum"), "binary")
  ip_version, ips = _parse_ips(blob)
  gc_version, gc_info = _parse_gc(blob)
  return Discovery((BINARY.get(blob, "version_major"), BINARY.get(blob, "version_minor")), ip_version, tuple(ips),
                   tuple(_parse_harvest(blob)), gc_version, MappingProxyType(gc_info))


def _parse_ips(blob: bytes) -> tuple[int, list[IpInstance]]:
  offset, expected = _table(blob, "IP_DISCOVERY")
  if not offset:
    raise DiscoveryError("the discovery binary has no IP_DISCOVERY table (table_list[0].offset is 0)")
  _check_range(blob, offset, IHDR.size, "IP discovery header")
  signature = IHDR.get(blob, "signature", offset)
  if signature != T.CONSTANTS["DISCOVERY_TABLE_SIGNATURE"]:
    raise DiscoveryError(f"IP discovery table signature 0x{signature:08x} at 0x{offset:x}, expected "
                         f"0x{T.CONSTANTS['DISCOVERY_TABLE_SIGNATURE']:08x} ('IPDS')")
  _check_sum(blob, offset, IHDR.get(blob, "size", offset), expected, "IP discovery table")
  version = IHDR.get(blob, "version", offset)
  wide = IHDR.get(blob, "base_addr_64_bit", offset)
  entry = IP_V4 if wide else IP_V3 if version >= 3 else IP_V1
  ips = []
  for die in range(IHDR.get(blob, "num_dies", offset)):
    die_offset = DIE_INFO.get(blob, "die_offset", IHDR.element("die_info", die) + offset)
    _check_range(blob, die_offset, DIE.size, f"die {die} header")
    if DIE.get(blob, "die_id", die_offset) != die:
      raise DiscoveryError(f"die header at 0x{die_offset:x} has die_id {DIE.get(blob, 'die_id', die_offset)}, "
                           f"expected {die}")
    pos = die_offset + DIE.size
    for _ in range(DIE.get(blob, "num_ips", die_offset)):
      _check_range(blob, pos, entry.size, "IP entry")
      count = entry.get(blob, "num_base_address", pos)
      width = 8 if wide else 4
      _check_range(blob, pos + entry.size, count * width, "IP base addresses")
      raw = entry.get_array(blob, "base_address_64" if wide else "base_address", count, pos)
      # amdgpu_discovery_reg_base_init: 64-bit bases keep their low 32 bits, top two cleared (dword addresses)
      bases = tuple(b & 0x3FFFFFFF for b in raw) if wide else tuple(raw)
      hw_id = entry.get(blob, "hw_id", pos)
      v3 = version >= 3
      ips.append(IpInstance(
        hw_id=hw_id, name=HWIDS.get(hw_id, f"unk_hwid{hw_id}"),
        instance=entry.get(blob, "instance_number" if v3 else "number_instance", pos),
        version=(entry.get(blob, "major", pos), entry.get(blob, "minor", pos), entry.get(blob, "revision", pos)),
        variant=entry.get(blob, "variant", pos) if v3 else 0,
        sub_revision=entry.get(blob, "sub_revision", pos) if v3 else 0,
        harvest=0 if v3 else entry.get(blob, "harvest", pos), bases=bases))
      pos += entry.size + count * width
  return version, ips


def _parse_gc(blob: bytes) -> tuple[tuple[int, int] | None, dict[str, int]]:
  offset, expected = _table(blob, "GC")
  if not offset:
    return None, {}
  _check_range(blob, offset, GPU_INFO.size, "gc_info header")
  table_id = GPU_INFO.get(blob, "table_id", offset)
  if table_id != T.CONSTANTS["GC_TABLE_ID"]:
    raise DiscoveryError(f"gc_info table id 0x{table_id:x} at 0x{offset:x}, expected 0x{T.CONSTANTS['GC_TABLE_ID']:x}")
  size = GPU_INFO.get(blob, "size", offset)
  _check_sum(blob, offset, size, expected, "gc_info")
  version = (GPU_INFO.get(blob, "version_major", offset), GPU_INFO.get(blob, "version_minor", offset))
  name = f"gc_info_v{version[0]}_{version[1]}"
  if name not in T.STRUCTS:
    known = sorted(n for n in T.STRUCTS if n.startswith("gc_info_v"))
    raise DiscoveryError(f"gc_info version {version[0]}.{version[1]} is not in discovery.h of linux 6.12 ({known})")
  layout = CStruct(T.STRUCTS, T.SIZES, name)
  if size < layout.size:
    raise DiscoveryError(f"gc_info v{version[0]}.{version[1]} says size {size}, the struct needs {layout.size}")
  return version, layout.unpack(blob, offset)


def _parse_harvest(blob: bytes) -> list[tuple[str, int]]:
  offset, expected = _table(blob, "HARVEST_INFO")
  if not offset:
    return []
  _check_range(blob, offset, HARVEST.size, "harvest table")
  signature = HARVEST.get(blob, "header.signature", offset)
  if signature != T.CONSTANTS["HARVEST_TABLE_SIGNATURE"]:
    raise DiscoveryError(f"harvest table signature 0x{signature:08x} at 0x{offset:x}, expected "
                         f"0x{T.CONSTANTS['HARVEST_TABLE_SIGNATURE']:08x} ('HARV')")
  _check_sum(blob, offset, HARVEST.size, expected, "harvest table")
  out = []
  for i in range(HARVEST.member("list").count):
    base = offset + HARVEST.element("list", i)
    hw_id = HARVEST_INFO.get(blob, "hw_id", base)
    if hw_id == 0:  # amdgpu_discovery_read_from_harvest_table stops at the first empty entry
      break
    out.append((HWIDS.get(hw_id, f"unk_hwid{hw_id}"), HARVEST_INFO.get(blob, "number_instance", base)))
  return out
