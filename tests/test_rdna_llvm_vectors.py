"""LLVM's own MC test vectors for gfx11/gfx12 (llvm/test/MC/AMDGPU/gfx11_*.s, gfx12_*.s, `encoding:` lines).

Runs when the llvm-toolchain-19 source tree is present (env RDNA_LLVM_SRC, or /tmp/llvm-toolchain-19_19.1.7 as
tools/gen_rdna_tables.py's docstring unpacks it); skips with the reason otherwise. Per file, only RUN lines of our
configuration count (gfx1100 / gfx1200-gfx1201, -show-encoding, wave32, LLVM 19's default fake16): their check prefixes
select the expected encodings, each checked against our assembly of the preceding source line. Compute formats only:
DPP, SDWA, image, export, LDS-direct/param and interpolation files are left out (not in the tables).
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass

import pytest
from test_rdna_asm import llvm_reads_back, mc_disassemble   # the llvm-mc helpers (tests/ is on sys.path)

from compiler.rdna.asm import assemble_instruction
from compiler.rdna.disasm import decode_one, format_instruction
from compiler.rdna.tables import get_target

DEFAULT_SRC = "/tmp/llvm-toolchain-19_19.1.7"
MC_DIR = "llvm/test/MC/AMDGPU"
CPUS = {"gfx11": ("gfx1100",), "gfx12": ("gfx1200", "gfx1201")}
NOT_COMPUTE = ("dpp", "sdwa", "mimg", "exp", "ldsdir", "vdsdir", "vinterp", "vimage", "vsample", "_err", "unsupported")
OK_ATTRS = {"+wavefrontsize32", "-wavefrontsize64", "-real-true16"}
NOT_COMPUTE_MNEMONICS = ("image_", "exp", "lds_direct", "lds_param", "ds_direct", "ds_param", "v_interp")
DPP_SYNTAX = re.compile(r"_dpp\b|\bdpp8:|\bquad_perm:|\brow_\w+|\bbank_mask:|\bfi:")


@dataclass(frozen=True)
class Vector:
  file: str
  line: int
  source: str
  encoding: bytes


def mc_dir() -> str:
  root = os.environ.get("RDNA_LLVM_SRC", DEFAULT_SRC)
  path = os.path.join(root, MC_DIR)
  if not os.path.isdir(path):
    pytest.skip(f"LLVM MC test vectors not found at {path}: unpack the llvm-toolchain-19 source (see "
                "tools/gen_rdna_tables.py) or set RDNA_LLVM_SRC")
  return path


def run_lines(text: str) -> list:
  joined = re.sub(r"\\\s*\n\s*(//|;)\s*RUN:", " ", text)
  return re.findall(r"^\s*(?://|;)\s*RUN:(.*)$", joined, re.M)


def our_prefixes(text: str, short: str) -> set:
  """Check prefixes of the RUN lines that assemble (-show-encoding) for our target and mode."""
  prefixes = set()
  for run in run_lines(text):
    mc = run.split("|")[0]
    cpu = re.search(r"-mcpu=(\w+)", mc)
    if cpu is None or cpu.group(1) not in CPUS[short] or "-show-encoding" not in mc or "-disassemble" in run:
      continue
    attrs = set(",".join(re.findall(r"-mattr=(\S+)", mc)).split(",")) - {""}
    if attrs - OK_ATTRS:
      continue
    for m in re.finditer(r"--?check-prefix(?:es)?=(\S+)", run):
      prefixes.update(m.group(1).split(","))
  return prefixes


def vectors(path: str, short: str) -> tuple:
  """(vectors, reason) of one test file; reason says why a file yields none."""
  name = os.path.basename(path)
  if any(word in name for word in NOT_COMPUTE):
    return [], "not a compute format"
  with open(path) as f:
    text = f.read()
  prefixes = our_prefixes(text, short)
  if not prefixes:
    return [], "no RUN line for our configuration (wave64 / real-true16 / other CPU)"
  out, source, source_line = [], None, 0
  for number, line in enumerate(text.splitlines(), 1):
    stripped = line.strip()
    check = re.match(r"^(?://|;)\s*([\w-]+):(.*)$", stripped)
    if check:
      enc = re.search(r"(?:encoding:\s*|^\s*)\[((?:0x[0-9a-fA-F]{2},?)+)\]", check.group(2))
      if enc and check.group(1) in prefixes and source is not None:
        out.append(Vector(name, source_line, source, bytes(int(x, 16) for x in enc.group(1).split(",") if x)))
      continue
    if stripped and not stripped.startswith(("//", ";", ".")):
      source, source_line = stripped, number
      if DPP_SYNTAX.search(stripped) or stripped.lower().startswith(NOT_COMPUTE_MNEMONICS):
        source = None   # DPP / image forms share some files with compute ones; not in the tables
  return out, "" if out else "no encoding lines for our prefixes"


def run_vectors(short: str) -> dict:
  target = get_target(short)
  base = mc_dir()
  results = {}
  for name in sorted(os.listdir(base)):
    if not name.startswith(short + "_") or not name.endswith(".s"):
      continue
    vecs, reason = vectors(os.path.join(base, name), short)
    fails = []
    for vec in vecs:
      try:
        got = assemble_instruction(vec.source, target)
      except ValueError as e:
        fails.append((vec, f"error: {e}"))
        continue
      if got != vec.encoding:
        fails.append((vec, f"ours {got.hex()} llvm {vec.encoding.hex()}"))
    results[name] = (len(vecs), fails, reason)
  return results


@pytest.mark.parametrize("short", ["gfx11", "gfx12"])
def test_llvm_mc_vectors(short: str) -> None:
  results = run_vectors(short)
  total = sum(n for n, _, _ in results.values())
  failed = sum(len(f) for _, f, _ in results.values())
  by_file = Counter({name: len(f) for name, (_, f, _) in results.items() if f})
  print(f"\n{short}: {total - failed}/{total} LLVM MC encoding vectors match "
        f"({100 * (total - failed) / max(total, 1):.2f}%); failures by file: {dict(by_file.most_common())}")
  assert total > 1000, f"only {total} vectors found for {short}"
  assert failed == 0, "\n".join(f"{v.file}:{v.line}: {v.source}: {why}" for _, fs, _ in results.values()
                                for v, why in fs[:5])


@pytest.mark.parametrize("short,cpu", [("gfx11", "gfx1100"), ("gfx12", "gfx1201")])
def test_llvm_mc_vectors_disassemble(short: str, cpu: str) -> None:
  """The vectors' bytes: our disassembly equals llvm-mc --disassemble, and our text assembles back to the bytes."""
  target = get_target(short)
  base = mc_dir()
  unique = {}
  for name in sorted(os.listdir(base)):
    if name.startswith(short + "_") and name.endswith(".s"):
      for vec in vectors(os.path.join(base, name), short)[0]:
        unique.setdefault(vec.encoding, vec)
  vecs = list(unique.values())
  llvm = mc_disassemble([vec.encoding for vec in vecs], cpu)
  bad = []
  for vec, llvm_text in zip(vecs, llvm):
    instr, ops, size = decode_one(vec.encoding, 0, target)
    ours = format_instruction(instr, ops, target, llvm_compat=True)
    if size != len(vec.encoding) or ours != llvm_text:
      bad.append(f"{vec.file}:{vec.line}: {vec.encoding.hex()}: ours {ours!r}, llvm-mc {llvm_text!r}")
    text = format_instruction(instr, ops, target)
    if llvm_reads_back(instr) and assemble_instruction(text, target) != vec.encoding:
      bad.append(f"{vec.file}:{vec.line}: {text!r} does not assemble back to {vec.encoding.hex()}")
  print(f"\n{short}: disassembled {len(vecs)} distinct vector encodings, {len(bad)} differences")
  assert not bad, "\n".join(bad[:20])
