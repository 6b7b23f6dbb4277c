"""Cross-check the generated GC tables and the PM4 layouts against Mesa's register database
(src/amd/registers/gfx11.json, gfx12.json, pkt3.json of mesa 25.0.7).

Runs when the Mesa 25.0.7 source is present (env MESA_SRC, else /tmp/mesa-25.0.7 or /tmp/mesa/mesa-25.0.7:
`apt-get source --download-only mesa` from trixie deb-src, FACT_SOURCES.md, then
`tar xf mesa_25.0.7.orig.tar.xz 'mesa-25.0.7/src/amd/registers/*'`); skips with the reason otherwise. The JSON is
read as data. Mesa writes MMIO registers as byte addresses, so address // 4 - our offset must be one segment base
per BASE_IDX: 0x1260 and 0xA000, the GC bases of these chips.
"""
from __future__ import annotations

import json
import os
from collections import Counter, defaultdict

import pytest

from am.generated import gc_11_0_0, gc_12_0_0
from am.pm4 import packets as P

CANDIDATES = (os.environ.get("MESA_SRC", ""), "/tmp/mesa-25.0.7", "/tmp/mesa/mesa-25.0.7")
REGISTERS = "src/amd/registers"


def mesa_json(name: str) -> dict:
  for root in CANDIDATES:
    path = os.path.join(root, REGISTERS, name)
    if root and os.path.isfile(path):
      with open(path) as f:
        return json.load(f)
  pytest.skip(f"Mesa's {REGISTERS}/{name} not found under MESA_SRC or {', '.join(CANDIDATES[1:])}: unpack "
              f"mesa 25.0.7 (trixie deb-src) or set MESA_SRC")


@pytest.mark.parametrize("gen,module", [("gfx11", gc_11_0_0), ("gfx12", gc_12_0_0)])
def test_gc_registers_and_fields_match_mesa(gen, module):
  db = mesa_json(f"{gen}.json")
  types = db["register_types"]
  bases: dict[int, Counter] = defaultdict(Counter)
  compared, mismatches = 0, []
  for mapping in db["register_mappings"]:
    name = "reg" + mapping["name"]
    if mapping["map"]["to"] != "mm" or name not in module.REGISTERS:
      continue
    offset, base_idx, layout = module.REGISTERS[name]
    bases[base_idx][mapping["map"]["at"] // 4 - offset] += 1
    if "type_ref" not in mapping or layout is None:
      continue
    ours = {k: (shift, (mask >> shift).bit_length()) for k, (shift, mask) in module.FIELDS[layout].items()}
    for field in types[mapping["type_ref"]]["fields"]:
      lo, hi = field["bits"]
      if field["name"] in ours:
        compared += 1
        if ours[field["name"]] != (lo, hi - lo + 1):
          mismatches.append((name, field["name"], ours[field["name"]], (lo, hi - lo + 1)))
  assert {idx: list(c) for idx, c in bases.items()} == {0: [0x1260], 1: [0xA000]}
  assert sum(bases[0].values()) + sum(bases[1].values()) > 1500 and compared > 4000
  assert mismatches == []


def mesa_fields(db: dict, type_name: str) -> dict[str, tuple[int, int]]:
  return {f["name"]: (f["bits"][0], f["bits"][1] - f["bits"][0] + 1) for f in db["register_types"][type_name]["fields"]}


def ours(dword: P.Dword, prefix: str = "") -> dict[str, tuple[int, int]]:
  return {f.name[len(prefix):] if f.name.startswith(prefix) else f.name: (f.shift, f.width) for f in dword.fields}


def test_pm4_layouts_match_mesa_pkt3():
  db = mesa_json("pkt3.json")
  assert ours(P.GCR_CNTL) == mesa_fields(db, "GCR_CNTL")
  release = mesa_fields(db, "RELEASE_MEM_OP_gfx11")
  mine = ours(P.RELEASE_MEM.body[0], "GCR_")
  # EXECUTE: pkt3.json says [28:29], nvd.h PACKET3_RELEASE_MEM_EXECUTE is bit 28 alone; AM keeps nvd.h's
  assert release.pop("EXECUTE") == (28, 2) and mine.pop("EXECUTE") == (28, 1)
  assert mine == release
  ib = mesa_fields(db, "IB_CONTROL")
  assert {k: v for k, v in ours(P.INDIRECT_BUFFER.body[2]).items() if k in ib} == ib
  control = mesa_fields(db, "CONTROL_cik")  # WRITE_DATA's CONTROL
  assert {k: v for k, v in ours(P.WRITE_DATA.body[0]).items() if k in control} == control
