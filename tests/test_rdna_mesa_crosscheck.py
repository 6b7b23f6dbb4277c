"""Cross-check the tables' opcode numbers against Mesa's ACO opcode table (src/amd/compiler/aco_opcodes.py).

Runs when the Mesa 25.0.7 source is present (env MESA_SRC, or /tmp/mesa-25.0.7: `apt-get source --download-only
mesa` from trixie deb-src, FACT_SOURCES.md); skips with the reason otherwise. aco_opcodes.py is read with `ast`, never
executed: its format dicts (SOP2 = {("s_add_u32", ..., op(0x00, gfx11=...)), ...}) give each name's opcode per
generation, an omitted generation inheriting the previous one (aco_opcodes.py `op`). Our opcode of a row is its fixed
bits in the family's opcode field: the first-dword bit range over the bits every row of the family fixes, not all alike.
"""
from __future__ import annotations

import ast
import os

import pytest

from compiler.rdna.tables import get_target

DEFAULT_SRC = "/tmp/mesa-25.0.7"
ACO = "src/amd/compiler/aco_opcodes.py"
GENERATIONS = ("gfx6", "gfx7", "gfx8", "gfx9", "gfx10", "gfx11", "gfx12")
# ACO format dict -> our encoding families, per generation
FORMATS = {"SOP1": ("SOP1",), "SOP2": ("SOP2",), "SOPK": ("SOPK",), "SOPC": ("SOPC",), "SOPP": ("SOPP",),
           "SMEM": ("SMEM",), "VOP1": ("VOP1",), "VOP2": ("VOP2",), "VOPP": ("VOP3P",), "VOP3": ("VOP3", "VOP3SD"),
           "DS": ("DS",), "MUBUF": ("MUBUF", "VBUFFER"), "MTBUF": ("MTBUF", "VBUFFER"), "FLAT": ("FLAT", "VFLAT"),
           "GLOBAL": ("GLOBAL", "VGLOBAL"), "SCRATCH": ("SCRATCH", "VSCRATCH")}


def aco_opcodes() -> dict:
  root = os.environ.get("MESA_SRC", DEFAULT_SRC)
  path = os.path.join(root, ACO)
  if not os.path.isfile(path):
    pytest.skip(f"Mesa's {ACO} not found under {root}: unpack mesa 25.0.7 (trixie deb-src) or set MESA_SRC")
  with open(path) as f:
    tree = ast.parse(f.read())
  out = {}
  for node in tree.body:
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Set) and node.targets[0].id in FORMATS:
      for entry in node.value.elts:
        name = entry.elts[0].value
        call = [e for e in entry.elts if isinstance(e, ast.Call) and getattr(e.func, "id", "") == "op"][0]
        out[(node.targets[0].id, name)] = opcode_per_generation(call)
  return out


def opcode_per_generation(call: ast.Call) -> dict:
  given = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
  if call.args:
    given["gfx6"] = ast.literal_eval(call.args[0])
  out, last = {}, -1
  for gen in GENERATIONS:
    last = given.get(gen, last)
    out[gen] = last
  return out


def group(instr) -> tuple:
  # gfx12 VBUFFER holds both MUBUF and MTBUF rows; the bit telling them apart is no part of ACO's opcode
  return instr.family, instr.mnemonic.startswith("tbuffer_")


def opcode_fields(target) -> dict:
  """(family, typed) -> the first-dword bit range spanning the bits every row fixes and not all alike."""
  fields = {}
  for key in {group(i) for i in target.instructions}:
    rows = [i for i in target.instructions if group(i) == key]
    common = 0xFFFFFFFF
    for i in rows:
      common &= i.mask
    varying = 0
    for i in rows:
      varying |= (i.value ^ rows[0].value) & common
    bits = [b for b in range(32) if varying >> b & 1]
    fields[key] = list(range(bits[0], bits[-1] + 1))   # opcode fields are contiguous
  return fields


@pytest.mark.parametrize("short", ["gfx11", "gfx12"])
def test_opcodes_match_aco(short: str) -> None:
  target = get_target(short)
  aco = aco_opcodes()
  fields = opcode_fields(target)
  renamed = target.mnemonic_aliases
  checked, bad = 0, []
  for (fmt, name), ops in sorted(aco.items()):
    want = ops[short]
    if want < 0:
      continue
    mnemonic = renamed.get(name, name)
    # (TFE buffer loads set a bit ACO keeps apart from the opcode)
    rows = [i for i in target.instructions if i.base_mnemonic == mnemonic and i.family in FORMATS[fmt]
            and "_TFE_" not in i.record]
    for instr in rows:
      got = sum((instr.value >> b & 1) << k for k, b in enumerate(fields[group(instr)]))
      checked += 1
      if got != want:
        bad.append(f"{fmt} {name} ({instr.record}): tables {got:#x}, ACO {want:#x}")
  print(f"\n{short}: {checked} opcodes of our rows checked against ACO, {len(bad)} differ")
  assert checked > 500
  assert not bad, "\n".join(bad[:30])
