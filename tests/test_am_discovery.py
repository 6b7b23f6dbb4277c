"""am/discovery.py against discovery binaries written by am/simcard/discovery_table.py from the same layout
(discovery.h): round trip for the simulated Navi31 (GC 11.0.0) and Navi48 (GC 12.0.1), capabilities, and the
errors for a corrupt table."""
from __future__ import annotations

import pytest

from am.caps import from_discovery
from am.discovery import BINARY, IHDR, TABLE_INFO, parse
from am.errors import DiscoveryError, UnsupportedDevice
from am.generated.boot import discovery as T
from am.simcard.cards import CARDS
from am.simcard.discovery_table import IpEntry, build


def table(name: str, harvested=()) -> bytes:
  spec = CARDS[name]
  return build(spec.ips, spec.gc_info_version, spec.gc_info, harvested)


@pytest.mark.parametrize("name,gc,target,cu", [("navi31", (11, 0, 0), "gfx1100", 96), ("navi48", (12, 0, 1),
                                                                                         "gfx1201", 64)])
def test_round_trip(name, gc, target, cu):
  spec = CARDS[name]
  disc = parse(table(name, harvested=(("VCN", 1),)))
  assert disc.version_of("GC") == gc
  assert [(ip.name, ip.instance, ip.version, ip.bases) for ip in disc.ips] == \
      [(ip.name, ip.instance, ip.version, ip.bases) for ip in spec.ips]
  assert disc.gc_info_version == spec.gc_info_version
  assert all(disc.gc_info[k] == v for k, v in spec.gc_info.items())
  assert disc.harvested == (("VCN", 1),)
  caps = from_discovery(disc)
  assert (caps.asic, caps.gfx_target, caps.num_cu) == (name, target, cu)
  assert disc.ip("MP0").bases[0] + 0x61 == 0x16061   # mmMP0_SMN_C2PMSG_33, read before discovery
  assert "gc_info" in disc.describe()


def patched(blob: bytes, offset: int, value: bytes) -> bytes:
  out = bytearray(blob)
  out[offset:offset + len(value)] = value
  return bytes(out)


def test_bad_binary_signature():
  with pytest.raises(DiscoveryError, match="binary signature 0x00000000"):
    parse(patched(table("navi31"), 0, bytes(4)))


def test_bad_binary_checksum():
  blob = table("navi31")
  with pytest.raises(DiscoveryError, match="binary checksum mismatch"):
    parse(patched(blob, len(blob) - 1, bytes([blob[-1] ^ 0xFF])))


def test_bad_ip_table_checksum_and_signature():
  blob = bytearray(table("navi48"))
  ip_offset = TABLE_INFO.get(blob, "offset", BINARY.element("table_list", T.TABLES["IP_DISCOVERY"]))
  IHDR.set(blob, "signature", 0x12345678, ip_offset)
  with pytest.raises(DiscoveryError, match="binary checksum"):
    parse(blob)
  # fix the outer checksum so the inner check is the one that fires
  from am.discovery import CHECKSUM_START, checksum
  BINARY.set(blob, "binary_checksum", checksum(blob[CHECKSUM_START:BINARY.get(blob, "binary_size")]))
  with pytest.raises(DiscoveryError, match="IP discovery table signature 0x12345678"):
    parse(blob)


def test_truncated_table():
  with pytest.raises(DiscoveryError, match="runs past"):
    parse(table("navi31")[:200])


def test_unsupported_gc():
  spec = CARDS["navi31"]
  ips = [IpEntry("GC", 0, (10, 3, 0), (0x1260,))] + [ip for ip in spec.ips if ip.name != "GC"]
  disc = parse(build(ips, spec.gc_info_version, spec.gc_info))
  with pytest.raises(UnsupportedDevice, match=r"GC 10\.3\.0 is not supported.*GC 11\.0\.0 \(navi31\)"):
    from_discovery(disc)
