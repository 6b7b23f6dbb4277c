"""RDNA3 (gfx1100) / RDNA4 (gfx1201) assembler and disassembler against LLVM 19's llvm-mc.

- every instruction form in the tables, with random legal operands: our text -> llvm-mc -show-encoding must give our
  bytes, and llvm-mc --disassemble of our bytes must give our text (batched: one llvm-mc call per target and direction);
- round trip text -> bytes -> text -> bytes with our own assembler and disassembler;
- a few golden encodings with provenance (FACT_SOURCES.md), which need no LLVM.
The llvm-mc tests skip when llvm-mc-19 is missing, except under CI=true, where they fail (.ci/run installs llvm-19).
"""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess

import pytest

from compiler.rdna.asm import AsmError, Assembler, abs_, assemble, assemble_instruction, encode, neg
from compiler.rdna.disasm import DecodeError, decode_one, disassemble, disassemble_text, format_instruction
from compiler.rdna.operands import s, v
from compiler.rdna.sample import sample
from compiler.rdna.tables import get_target

LLVM_MC = "llvm-mc-19"
TARGETS = (("gfx11", "gfx1100"), ("gfx12", "gfx1201"))
ENDPGM = bytes.fromhex("0000b0bf")   # s_endpgm on gfx10+ (FACT_SOURCES.md pitfall: an unknown -mcpu falls back to GCN)


def llvm_mc_path() -> str:
  path = shutil.which(LLVM_MC)
  if path is None:
    if os.environ.get("CI") == "true":
      pytest.fail(f"{LLVM_MC} is missing under CI=true; .ci/run installs it with apt-get install llvm-19")
    pytest.skip(f"{LLVM_MC} not installed (Debian: apt-get install --no-install-recommends llvm-19)")
  return path


def run_mc(args: list, text: str) -> subprocess.CompletedProcess:
  return subprocess.run([llvm_mc_path(), "-arch=amdgcn", *args], input=text, capture_output=True, text=True,
                        timeout=300)


def checked_mcpu(cpu: str) -> str:
  """The -mcpu flag, after making sure llvm-mc knows the CPU (it silently falls back to GCN otherwise)."""
  out = run_mc([f"-mcpu={cpu}", "-show-encoding"], "s_endpgm\n")
  blob = encoding_bytes(out.stdout)
  if blob != [ENDPGM]:
    pytest.fail(f"llvm-mc -mcpu={cpu} encodes s_endpgm as {blob}, not {ENDPGM.hex()}: {out.stderr.strip()}")
  return f"-mcpu={cpu}"


def encoding_bytes(stdout: str) -> list:
  return [bytes(int(x, 16) for x in m.group(1).split(",") if x) for m in re.finditer(r"encoding: \[([^\]]*)\]", stdout)]


def mc_assemble(lines: list, cpu: str) -> list:
  """Assemble each line with llvm-mc: per line (text, bytes) or (None, error)."""
  src = "".join(f"rdna_{i}:\n{line}\n" for i, line in enumerate(lines))
  out = run_mc([checked_mcpu(cpu), "-show-encoding"], src)
  results: list = [(None, "no output")] * len(lines)
  current = None
  for line in out.stdout.splitlines():
    label = re.match(r"^rdna_(\d+):", line)
    if label:
      current = int(label.group(1))
      continue
    m = re.match(r"^\s+(.*?)\s*; encoding: \[([^\]]*)\]", line)
    if m and current is not None:
      results[current] = (m.group(1), bytes(int(x, 16) for x in m.group(2).split(",") if x))
  for m in re.finditer(r"<stdin>:(\d+):\d+: error: (.*)", out.stderr):
    index = (int(m.group(1)) - 2) // 2
    if 0 <= index < len(lines):
      results[index] = (None, m.group(2))
  return results


def mc_disassemble(blobs: list, cpu: str) -> list:
  """Disassemble each byte string with llvm-mc: per blob the text, or None where LLVM found no single instruction."""
  src = "".join(" ".join(f"0x{b:02x}" for b in blob) + "\n" for blob in blobs)
  out = run_mc([checked_mcpu(cpu), "--disassemble", "-show-encoding"], src)
  warnings: dict = {}
  for m in re.finditer(r"<stdin>:(\d+):\d+: warning", out.stderr):
    warnings[int(m.group(1)) - 1] = warnings.get(int(m.group(1)) - 1, 0) + 1
  outputs = []
  for line in out.stdout.splitlines():
    m = re.match(r"^\s+(.*?)\s*; encoding: \[([^\]]*)\]", line)
    if m:
      outputs.append((m.group(1), len([x for x in m.group(2).split(",") if x])))
  results, pos = [], 0
  for i, blob in enumerate(blobs):
    texts, size = [], 4 * warnings.get(i, 0)   # LLVM skips 4 bytes per undecodable word
    while size < len(blob) and pos < len(outputs):
      texts.append(outputs[pos][0])
      size += outputs[pos][1]
      pos += 1
    results.append(texts[0] if len(texts) == 1 and not warnings.get(i) else None)
  return results


# ---- golden encodings (no LLVM needed) -------------------------------------------------------------------------------
# (target, text as llvm-mc prints it, bytes, provenance). FACT_SOURCES.md: gfx1100 s_endpgm = 00 00 b0 bf, gfx1201
# global_load_b32 v1, v0, s[2:3] is a 12-byte VGLOBAL; the rest: llvm-mc-19 -show-encoding (LLVM 19.1.7) output, the
# same lines as llvm/test/MC/AMDGPU/gfx11_asm_vop3.s:6 (v_add3_u32) and gfx12_asm_vopd_features.s:100 (v_dual_mov_b32).
GOLDEN = (
  ("gfx1100", "s_endpgm", "0000b0bf", "FACT_SOURCES.md"),
  ("gfx1100", "v_add_f32_e32 v1, v2, v3", "02070206", "llvm-mc-19"),
  ("gfx1100", "v_add3_u32 v5, v1, v2, s3", "050055d601050e00", "gfx11_asm_vop3.s:6"),
  ("gfx1100", "v_fma_f32 v1, -v2, |v3|, s5 clamp mul:2", "018213d602071628", "llvm-mc-19"),
  ("gfx1100", "v_pk_fma_f16 v1, v2, v3, v4 op_sel:[1,0,0] op_sel_hi:[0,1,1] neg_lo:[1,0,0]", "01480ecc02071234",
   "llvm-mc-19"),
  ("gfx1100", "v_cmp_eq_f32_e32 vcc_lo, v1, v2", "0105247c", "llvm-mc-19"),
  ("gfx1100", "v_dual_add_f32 v0, v1, v2 :: v_dual_mul_f32 v3, v4, v5", "010506c9040b0200", "llvm-mc-19"),
  ("gfx1100", "v_wmma_f32_16x16x16_f16 v[0:7], v[8:15], v[16:23], v[0:7]", "004040cc0821021c", "llvm-mc-19"),
  ("gfx1100", "s_waitcnt vmcnt(0) lgkmcnt(0)", "070089bf", "llvm-mc-19"),
  ("gfx1100", "s_load_b64 s[2:3], s[0:1], 0x10", "800004f4100000f8", "llvm-mc-19"),
  ("gfx1100", "global_load_b32 v1, v0, s[2:3] offset:-16 glc slc dlc", "f0ff52dc00000201", "llvm-mc-19"),
  ("gfx1100", "buffer_load_b32 v1, v2, s[4:7], s3 offen offset:4095 glc", "ff4f50e002014103", "llvm-mc-19"),
  ("gfx1100", "ds_store_2addr_b32 v1, v2, v3 offset0:4 offset1:8", "040838d801020300", "llvm-mc-19"),
  ("gfx1100", "v_fmaak_f32 v1, v2, v3, 0x41200000", "0207025a00002041", "llvm-mc-19"),
  ("gfx1201", "s_endpgm", "0000b0bf", "FACT_SOURCES.md"),
  ("gfx1201", "global_load_b32 v1, v0, s[2:3]", "020005ee0100000000000000", "FACT_SOURCES.md / llvm-mc-19"),
  ("gfx1201", "global_store_b32 v[2:3], v1, off th:TH_STORE_NT scope:SCOPE_SYS", "7c8006ee00009c0002000000",
   "llvm-mc-19"),
  ("gfx1201", "s_wait_loadcnt 0x0", "0000c0bf", "llvm-mc-19"),
  ("gfx1201", "s_wait_alu depctr_va_vdst(0)", "9f0f88bf", "llvm-mc-19"),
  ("gfx1201", "buffer_load_b32 v1, v2, s[4:7], s3 offen offset:4095", "030005c40108804002ff0f00", "llvm-mc-19"),
  ("gfx1201", "s_load_b32 s1, s[2:3], s4 offset:0x10", "410000f410000008", "llvm-mc-19"),
  ("gfx1201", "v_wmma_f32_16x16x16_f16 v[0:7], v[8:11], v[12:15], v[0:7]", "004040cc0819021c", "llvm-mc-19"),
  ("gfx1201", "v_dual_mov_b32 v2, v5 :: v_dual_mov_b32 v3, v1", "050110ca01010202", "gfx12_asm_vopd_features.s:100"),
)


@pytest.mark.parametrize("cpu,text,hexbytes,source", GOLDEN)
def test_golden(cpu: str, text: str, hexbytes: str, source: str) -> None:
  blob = bytes.fromhex(hexbytes)
  assert assemble(text, cpu) == blob, source
  assert disassemble_text(blob, cpu) == text, source


# ---- every form: random operands against llvm-mc ---------------------------------------------------------------------

SAMPLES = int(os.environ.get("RDNA_SAMPLES", "2"))
SEED = int(os.environ.get("RDNA_SEED", "2024"))


def llvm_reads_back(instr) -> bool:
  """Forms whose llvm-mc text does not assemble back to them, so only the disassembly is compared:
  stores with tfe ("TFE modifier has no meaning for store instructions") and the operand-less VOP3 forms of
  v_nop / v_pipeflush (printed without _e64, they read back as VOP1)."""
  if "mayStore" in instr.flags and "mayLoad" not in instr.flags and " tfe" in instr.syntax:
    return False
  return not (instr.family == "VOP3" and not instr.operands)


def samples(short: str) -> list:
  target = get_target(short)
  rng = random.Random(f"{SEED}:{short}")
  out = []
  for instr in target.instructions:
    for _ in range(SAMPLES):
      ops = sample(instr, target, rng)
      out.append((instr, encode(instr, ops, target), format_instruction(instr, ops, target),
                  format_instruction(instr, ops, target, llvm_compat=True)))
  return out


@pytest.mark.parametrize("short,cpu", TARGETS)
def test_every_form_against_llvm_mc(short: str, cpu: str) -> None:
  items = samples(short)
  asm = mc_assemble([text for _, _, text, _ in items], cpu)
  dis = mc_disassemble([blob for _, blob, _, _ in items], cpu)
  bad = []
  for (instr, blob, text, llvm_text), (_, llvm_blob), llvm_dis in zip(items, asm, dis):
    if llvm_reads_back(instr) and llvm_blob != blob:
      bad.append(f"{instr.record}: {text!r}: ours {blob.hex()}, llvm-mc {llvm_blob if llvm_blob is None else ''}"
                 f"{llvm_blob.hex() if isinstance(llvm_blob, bytes) else ''}")
    if llvm_dis != llvm_text:
      bad.append(f"{instr.record}: {blob.hex()}: ours {llvm_text!r}, llvm-mc --disassemble {llvm_dis!r}")
  print(f"\n{short}: {len(items)} random forms of {len(get_target(short).instructions)} instructions, "
        f"{len(bad)} differences from llvm-mc")
  assert not bad, "\n".join(bad[:20])


@pytest.mark.parametrize("short", ["gfx11", "gfx12"])
def test_round_trip(short: str) -> None:
  """text -> bytes -> text -> bytes with our assembler and disassembler alone, every form."""
  target = get_target(short)
  bad = []
  for instr, blob, text, _ in samples(short):
    first = assemble_instruction(text, target)
    decoded, ops, size = decode_one(first, 0, target)
    again = format_instruction(decoded, ops, target)
    if size != len(first) or again != text or assemble_instruction(again, target) != first:
      bad.append(f"{instr.record}: {text!r} -> {first.hex()} -> {again!r}")
    if llvm_reads_back(instr) and first != blob:   # (v_nop's VOP3 form prints as v_nop, which reads as VOP1)
      bad.append(f"{instr.record}: {text!r} assembles to {first.hex()}, sampled as {blob.hex()}")
  assert not bad, "\n".join(bad[:20])


# ---- builder API, errors, the llvm-mc CPU guard ----------------------------------------------------------------------

def test_builder_matches_text() -> None:
  asm = Assembler("gfx1100")
  asm.emit("v_add_f32", v(1), v(2), v(3))
  asm.emit("v_fma_f32", v(1), neg(v(2)), abs_(v(3)), s(5), clamp=True, mul=2)
  asm.emit("global_load_b32", v(1), v(0), s(2, 2), offset=-16, glc=True, slc=True, dlc=True)
  asm.emit("v_pk_fma_f16", v(1), v(2), v(3), v(4), op_sel=[1, 0, 0], op_sel_hi=[0, 1, 1], neg_lo=[1, 0, 0])
  asm.emit("v_add_f32", v(4), neg(1.0), v(5))
  text = "\n".join(line for line, _ in asm.lines)
  assert asm.code() == assemble(text, "gfx1100")
  assert [d.text for d in disassemble(asm.code(), "gfx1100")] == [
    "v_add_f32_e32 v1, v2, v3", "v_fma_f32 v1, -v2, |v3|, s5 clamp mul:2",
    "global_load_b32 v1, v0, s[2:3] offset:-16 glc slc dlc",
    "v_pk_fma_f16 v1, v2, v3, v4 op_sel:[1,0,0] op_sel_hi:[0,1,1] neg_lo:[1,0,0]",
    "v_add_f32_e64 v4, neg(1.0), v5"]


def test_labels_and_branches() -> None:
  code = assemble("""
    s_mov_b32 s0, 4        ; loop counter
  loop:
    s_sub_u32 s0, s0, 1
    s_cmp_lg_u32 s0, 0
    s_cbranch_scc1 loop    // back 3 dwords
    s_branch done
    s_nop 0
  done:
    s_endpgm
  """, "gfx1201")
  texts = [d.text for d in disassemble(code, "gfx1201")]
  assert texts[3] == f"s_cbranch_scc1 {(-3) & 0xFFFF}" and texts[4] == "s_branch 1" and texts[-1] == "s_endpgm"


def test_errors_name_the_problem() -> None:
  with pytest.raises(AsmError, match="unknown instruction 'v_add_f33'.*v_add_f32"):
    assemble("v_add_f33 v1, v2, v3", "gfx1100")
  with pytest.raises(AsmError, match="invalid operands.*v_add_f32"):
    assemble("v_add_f32 v1, v2", "gfx1100")
  with pytest.raises(AsmError, match="constant bus"):
    assemble("v_fma_f32 v1, s1, s2, s3", "gfx1100")
  with pytest.raises(DecodeError, match="no gfx1100 instruction"):
    disassemble(bytes.fromhex("ffffffff"), "gfx1100")
  with pytest.raises(ValueError, match="unknown RDNA target"):
    get_target("gfx906")


def test_llvm_mc_cpu_guard() -> None:
  """An -mcpu llvm-mc does not know silently falls back to GCN: its s_endpgm is not 0xbfb00000."""
  out = run_mc(["-mcpu=gfx9999", "-show-encoding"], "s_endpgm\n")
  assert encoding_bytes(out.stdout) != [ENDPGM]
  assert checked_mcpu("gfx1100") == "-mcpu=gfx1100"
