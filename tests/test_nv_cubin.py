"""nvdrv.compile (PTX -> cubin, cache, errors) and nvdrv.cubin (the parser) against independent references.

Every parsed number is checked against what NVIDIA's own tools print for the same cubin: `ptxas -v` (registers,
barriers, static smem, stack frame, cumulative stack, gmem), `cuobjdump -elf` (every .nv.info record: name, format,
value) and `cuobjdump -res-usage` (REG, STACK, SHARED, CONSTANT[0], GLOBAL, CONSTANT[N]). Relocations are applied
and the patched SASS is decoded with `nvdisasm -b SM90`. Runs with every distinct ptxas version found (here the
12.9 wheel and a 13.0 toolkit: cubin ABI 7 and 8). Skips only when no ptxas is installed.
"""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from nvdrv import compile as nvc
from nvdrv.cubin import (EIFMT_NAMES, R_CUDA_64, R_CUDA_ABS16_32, R_CUDA_ABS32_HI_32, R_CUDA_ABS32_LO_32,
                         R_CUDA_ABS55_16_34, R_CUDA_G64,
                         CubinError, KernelNotFound, Relocation, apply_relocations, parse_cubin, parse_nv_info)

FOUND, SEARCHED = nvc.find_compilers()
PTXAS = list({c.version: c for c in FOUND if c.kind == "ptxas"}.values())  # one per release
NVJITLINK = [c for c in FOUND if c.kind == "nvjitlink"]
CUOBJDUMP = nvc.find_cuda_tool("cuobjdump")
NVDISASM = nvc.find_cuda_tool("nvdisasm")
pytestmark = pytest.mark.skipif(not PTXAS, reason="no ptxas found; pip install nvidia-cuda-nvcc-cu12. Searched:\n"
                                + "\n".join(SEARCHED))
needs_cuobjdump = pytest.mark.skipif(CUOBJDUMP is None, reason="cuobjdump not found; pip install nvidia-cuda-cuobjdump")
needs_nvdisasm = pytest.mark.skipif(NVDISASM is None, reason="nvdisasm not found; pip install nvidia-cuda-nvdisasm")

HEADER = ".version 8.0\n.target sm_90\n.address_size 64\n"
SAXPY = HEADER + """
.visible .entry saxpy(.param .u64 x, .param .u64 y, .param .f32 a, .param .u32 n)
{
  .reg .pred %p<2>; .reg .b32 %r<6>; .reg .f32 %f<5>; .reg .b64 %rd<8>;
  ld.param.u64 %rd1, [x]; ld.param.u64 %rd2, [y]; ld.param.f32 %f1, [a]; ld.param.u32 %r1, [n];
  mov.u32 %r2, %ctaid.x; mov.u32 %r3, %ntid.x; mov.u32 %r4, %tid.x; mad.lo.s32 %r5, %r2, %r3, %r4;
  setp.ge.u32 %p1, %r5, %r1;
  @%p1 bra DONE;
  cvta.to.global.u64 %rd3, %rd1; cvta.to.global.u64 %rd4, %rd2; mul.wide.u32 %rd5, %r5, 4;
  add.s64 %rd6, %rd3, %rd5; add.s64 %rd7, %rd4, %rd5;
  ld.global.f32 %f2, [%rd6]; ld.global.f32 %f3, [%rd7]; fma.rn.f32 %f4, %f1, %f2, %f3; st.global.f32 [%rd7], %f4;
DONE:
  ret;
}
"""
SMEM = HEADER + """
.visible .entry smem(.param .u64 out)
{
  .shared .align 4 .b8 buf[1536];
  .reg .b32 %r<4>; .reg .b64 %rd<6>;
  ld.param.u64 %rd1, [out]; mov.u32 %r1, %tid.x; mov.u32 %r2, buf; shl.b32 %r3, %r1, 2; add.s32 %r2, %r2, %r3;
  st.shared.u32 [%r2], %r1;
  bar.sync 0;
  xor.b32 %r3, %r3, 4; mov.u32 %r2, buf; add.s32 %r2, %r2, %r3; ld.shared.u32 %r1, [%r2];
  cvta.to.global.u64 %rd2, %rd1; mov.u32 %r2, %tid.x; mul.wide.u32 %rd3, %r2, 4; add.s64 %rd4, %rd2, %rd3;
  st.global.u32 [%rd4], %r1;
  ret;
}
"""
LOCAL = HEADER + """
.visible .entry localarr(.param .u64 out, .param .u32 k) .reqntid 64, 2, 1
{
  .local .align 4 .b8 arr[256];
  .reg .b32 %r<8>; .reg .b64 %rd<8>;
  ld.param.u64 %rd1, [out]; ld.param.u32 %r1, [k]; mov.u32 %r2, %tid.x; and.b32 %r3, %r1, 63;
  mov.u64 %rd2, arr; mul.wide.u32 %rd3, %r3, 4; add.s64 %rd4, %rd2, %rd3; st.local.u32 [%rd4], %r2;
  and.b32 %r3, %r2, 63; mul.wide.u32 %rd3, %r3, 4; add.s64 %rd4, %rd2, %rd3; ld.local.u32 %r4, [%rd4];
  cvta.to.global.u64 %rd5, %rd1; st.global.u32 [%rd5], %r4;
  ret;
}
"""
PARAMS = HEADER + """
.visible .entry manyparams(.param .u32 a, .param .f32 b, .param .u64 c, .param .align 16 .b8 arr[48], .param .u8 d,
                           .param .u64 out)
{
  .reg .b32 %r<8>; .reg .f32 %f<4>; .reg .b64 %rd<8>; .reg .b16 %h<2>;
  ld.param.u32 %r1, [a]; ld.param.f32 %f1, [b]; ld.param.u64 %rd1, [c]; ld.param.u32 %r2, [arr+40];
  ld.param.u8 %h1, [d]; cvt.u32.u16 %r3, %h1; ld.param.u64 %rd2, [out];
  cvt.rn.f32.u32 %f2, %r1; add.f32 %f3, %f2, %f1; cvta.to.global.u64 %rd3, %rd2; st.global.f32 [%rd3], %f3;
  add.s32 %r4, %r2, %r3; st.global.u32 [%rd3+4], %r4; st.global.u64 [%rd3+8], %rd1;
  ret;
}
"""
GLOBALS = HEADER + """
.global .align 4 .b8 gtable[64];
.const .align 4 .f32 cscale[4] = {1.0, 2.0, 3.0, 4.0};
.global .align 4 .u32 ginit[4] = {7, 8, 9, 10};
.global .align 8 .u64 gptr = generic(ginit);
.visible .entry gread(.param .u64 out) .maxntid 128, 1, 1
{
  .reg .b32 %r<6>; .reg .f32 %f<3>; .reg .b64 %rd<10>;
  ld.param.u64 %rd1, [out]; mov.u32 %r1, %tid.x; and.b32 %r2, %r1, 15; mul.wide.u32 %rd2, %r2, 4;
  mov.u64 %rd3, gtable; add.s64 %rd4, %rd3, %rd2; ld.global.u32 %r3, [%rd4];
  and.b32 %r2, %r1, 3; mul.wide.u32 %rd2, %r2, 4; mov.u64 %rd5, cscale; add.s64 %rd5, %rd5, %rd2;
  ld.const.f32 %f1, [%rd5];
  ld.global.u64 %rd8, [gptr]; ld.u32 %r4, [%rd8+4]; ld.global.u32 %r5, [ginit+8]; add.u32 %r3, %r3, %r4;
  add.u32 %r3, %r3, %r5; cvt.rn.f32.u32 %f2, %r3; mul.f32 %f2, %f2, %f1;
  cvta.to.global.u64 %rd6, %rd1; mul.wide.u32 %rd7, %r1, 4; add.s64 %rd6, %rd6, %rd7; st.global.f32 [%rd6], %f2;
  ret;
}
"""
TEXT_RELOC = HEADER + """
.global .align 4 .b8 gtable[64];
.visible .entry gaddr(.param .u64 out)
{
  .reg .b64 %rd<4>;
  ld.param.u64 %rd1, [out]; mov.u64 %rd2, gtable; cvta.to.global.u64 %rd3, %rd1; st.global.u64 [%rd3], %rd2;
  ret;
}
"""
MODULES = {"saxpy": SAXPY, "smem": SMEM, "localarr": LOCAL, "manyparams": PARAMS, "gread": GLOBALS}


# ---------------------------------------------------------------------------------------------------------------------
# references: NVIDIA's tools run on the same cubin

def run_ptxas(ptxas, ptx: str, tmp_path, *flags: str) -> tuple[bytes, str]:
  """(cubin, ptxas -v log) straight from ptxas."""
  src, out = tmp_path / "k.ptx", tmp_path / "k.cubin"
  src.write_text(ptx)
  proc = subprocess.run([ptxas.path, "-v", "-arch=sm_90", *flags, str(src), "-o", str(out)], capture_output=True,
                        text=True, check=True)
  return out.read_bytes(), proc.stdout + proc.stderr


def parse_ptxas_v(log: str) -> tuple[dict[str, dict[str, int]], int]:
  """{entry: {registers, barriers, smem, frame, cumulative}} and gmem bytes from a `ptxas -v` log."""
  kernels, entry, props, gmem = {}, None, None, 0
  for line in log.splitlines():
    if m := re.search(r"(\d+) bytes gmem", line):
      gmem = int(m.group(1))
    if m := re.search(r"Compiling entry function '(\w+)'", line):
      entry = m.group(1)
      kernels[entry] = {"smem": 0, "cumulative": 0}
    if m := re.search(r"Function properties for (\S+)", line):
      props = m.group(1)
    if (m := re.search(r"(\d+) bytes stack frame", line)) and props in kernels:
      kernels[props]["frame"] = int(m.group(1))
    if m := re.search(r"Used (\d+) registers, used (\d+) barriers", line):
      kernels[entry].update(registers=int(m.group(1)), barriers=int(m.group(2)))
      for key, pattern in (("smem", r"(\d+) bytes smem"), ("cumulative", r"(\d+) bytes cumulative stack size")):
        if m := re.search(pattern, line):
          kernels[entry][key] = int(m.group(1))
  return kernels, gmem


def cuobjdump(flag: str, cubin: bytes, tmp_path) -> str:
  path = tmp_path / "ref.cubin"
  path.write_bytes(cubin)
  return subprocess.run([CUOBJDUMP, flag, str(path)], capture_output=True, text=True, check=True).stdout


def cuobjdump_records(text: str) -> dict[str, list[dict[str, str | None]]]:
  """{section: [{name, fmt, value}]} for every .nv.info* / .nv.compat section `cuobjdump -elf` prints."""
  out, section = {}, None
  for line in text.splitlines():
    if line and not line[0].isspace():
      section = line.strip() if re.fullmatch(r"\.nv\.(info\S*|compat)", line.strip()) else None
      if section:
        out[section] = []
    elif section and (m := re.match(r"\t(Attribute|Format|Value):\t(.*)", line)):
      if m.group(1) == "Attribute":
        out[section].append({"name": m.group(2), "fmt": None, "value": None})
      else:
        out[section][-1][m.group(1).lower() if m.group(1) == "Value" else "fmt"] = m.group(2)
  return out


def cuobjdump_res(text: str) -> dict[str, dict[str, int]]:
  """{"Common" or function name: {REG: .., STACK: .., SHARED: .., CONSTANT[0]: ..}} from `cuobjdump -res-usage`."""
  out, current = {}, None
  for line in text.splitlines():
    if m := re.match(r"\s*(Common|Function (\S+)):", line):
      current = m.group(2) or "Common"
      out[current] = {}
    elif current:
      out[current].update({k: int(v) for k, v in re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line)})
  return out


def expected_value(name: str, value: str | None) -> tuple:
  """The numbers cuobjdump prints for one record, in the order our parser exposes them."""
  if value is None:
    return ()
  if name == "EIATTR_KPARAM_INFO":
    return tuple(int(x, 16) for x in re.findall(r"(?:Index|Ordinal|Offset|Size)\s*:\s*(0x[0-9a-f]+)", value))
  if name in ("EIATTR_REGCOUNT", "EIATTR_FRAME_SIZE", "EIATTR_MIN_STACK_SIZE"):
    m = re.search(r"\((0x[0-9a-f]+)\)\s+[a-z ]+:\s*(0x[0-9a-f]+|\d+)", value)
    return int(m.group(1), 16), int(m.group(2), 0)
  return tuple(int(x, 16) for x in value.split())


def our_value(attr) -> tuple:
  if attr.value is None:
    return ()
  if isinstance(attr.value, int):
    return (attr.value,)
  if attr.name == "EIATTR_KPARAM_INFO":
    index, ordinal, offset, word = struct.unpack("<IHHI", attr.value)
    return index, ordinal, offset, word >> 18
  return attr.u32s()


# ---------------------------------------------------------------------------------------------------------------------
# the parser against ptxas -v and cuobjdump

@pytest.fixture(params=PTXAS, ids=lambda c: c.version.replace(" ", "-"))
def ptxas(request):
  return request.param


@pytest.mark.parametrize("module", MODULES)
def test_parser_matches_ptxas_verbose(ptxas, module, tmp_path):
  cubin_bytes, log = run_ptxas(ptxas, MODULES[module], tmp_path)
  cubin = parse_cubin(cubin_bytes)
  reference, gmem = parse_ptxas_v(log)
  assert cubin.sm == 90 and not cubin.relocatable
  assert [k.name for k in cubin.kernels] == list(reference) == [module]
  assert cubin.global_size == gmem
  for name, ref in reference.items():
    k = cubin.kernel(name)
    got = {"registers": k.registers, "barriers": k.barriers, "smem": k.static_shared, "frame": k.frame_size,
           "cumulative": k.min_stack_size}
    assert got == ref, f"{ptxas.version} {name}: parsed {got}, ptxas -v says {ref}\n{log}"


@needs_cuobjdump
@pytest.mark.parametrize("module", MODULES)
def test_every_nv_info_record_matches_cuobjdump(ptxas, module, tmp_path):
  cubin_bytes, _ = run_ptxas(ptxas, MODULES[module], tmp_path)
  cubin = parse_cubin(cubin_bytes)
  reference = cuobjdump_records(cuobjdump("-elf", cubin_bytes, tmp_path))
  ours = {".nv.info": cubin.module_attributes, **{f".nv.info.{k.name}": k.attributes for k in cubin.kernels}}
  if cubin.compat:
    ours[".nv.compat"] = cubin.compat
  assert set(ours) == set(reference)
  for section, attrs in ours.items():
    assert len(attrs) == len(reference[section]), section
    for attr, ref in zip(attrs, reference[section]):
      ref_name = ref["name"] if ref["name"] != "unknown Attribute" else f"unk_{attr.code:#04x}"
      assert (attr.name, EIFMT_NAMES[attr.fmt]) == (ref_name, ref["fmt"]), f"{section}: {attr} vs {ref}"
      assert our_value(attr) == expected_value(attr.name, ref["value"]), f"{section}: {attr} vs {ref}"


@needs_cuobjdump
@pytest.mark.parametrize("module", MODULES)
def test_resources_match_cuobjdump_res_usage(ptxas, module, tmp_path):
  cubin_bytes, _ = run_ptxas(ptxas, MODULES[module], tmp_path)
  cubin = parse_cubin(cubin_bytes)
  reference = cuobjdump_res(cuobjdump("-res-usage", cubin_bytes, tmp_path))
  for k in cubin.kernels:
    got = {"REG": k.registers, "STACK": k.min_stack_size, "SHARED": k.shared_size, "CONSTANT[0]": k.const0_size}
    assert got == {key: reference[k.name][key] for key in got}, k.name
    assert k.const0_size == k.param_base + k.param_size  # cmem[0]: the 0x210-byte driver area, then the parameters
  common = {f"CONSTANT[{s.bank}]": s.size for s in cubin.segments if s.bank is not None}
  assert {"GLOBAL": cubin.global_size, **common} == reference["Common"]


def test_saxpy_layout(ptxas, tmp_path):
  k = parse_cubin(run_ptxas(ptxas, SAXPY, tmp_path)[0]).kernel("saxpy")
  assert [(p.ordinal, p.offset, p.size) for p in k.params] == [(0, 0, 8), (1, 8, 8), (2, 16, 4), (3, 20, 4)]
  assert (k.param_base, k.param_size, k.const0_size) == (0x210, 24, 0x228)  # FACT_SOURCES.md: params at c[0x0][0x210]
  assert (k.shared_size, k.frame_size, k.max_threads, k.reqntid) == (0, 0, None, None)
  assert len(k.code) % 16 == 0 and k.exit_offsets and all(o % 16 == 0 and o < len(k.code) for o in k.exit_offsets)


def test_static_shared_includes_the_sm90_reserve(ptxas, tmp_path):
  k = parse_cubin(run_ptxas(ptxas, SMEM, tmp_path)[0]).kernel("smem")
  assert (k.static_shared, k.shared_size, k.barriers) == (1536, 1536 + 0x400, 1)


def test_local_array_forces_a_stack_frame(ptxas, tmp_path):
  k = parse_cubin(run_ptxas(ptxas, LOCAL, tmp_path)[0]).kernel("localarr")
  assert (k.frame_size, k.min_stack_size, k.reqntid) == (256, 256, (64, 2, 1))
  assert [(p.offset, p.size) for p in k.params] == [(0, 8), (8, 4)]


def test_param_layout_follows_ptx_alignment(ptxas, tmp_path):
  k = parse_cubin(run_ptxas(ptxas, PARAMS, tmp_path)[0]).kernel("manyparams")
  # .u32 a @0, .f32 b @4, .u64 c @8, .align 16 .b8 arr[48] @16, .u8 d @64, .u64 out @72 (natural alignment)
  assert [(p.ordinal, p.offset, p.size) for p in k.params] == [(0, 0, 4), (1, 4, 4), (2, 8, 8), (3, 16, 48),
                                                                (4, 64, 1), (5, 72, 8)]
  assert (k.param_size, k.const0_size) == (80, 0x210 + 80)


def test_globals_constants_and_their_relocations(ptxas, tmp_path):
  cubin = parse_cubin(run_ptxas(ptxas, GLOBALS, tmp_path)[0])
  k = cubin.kernel("gread")
  assert k.max_threads == (128, 1, 1)
  seg = {s.name: s for s in cubin.segments}
  assert seg[".nv.constant3"].data == struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)  # .const initialiser, bank 3
  assert seg[".nv.global"].data is None and seg[".nv.global"].size == 64  # gtable: NOBITS
  init = seg[".nv.global.init"]
  sym = {s.name: s for s in cubin.symbols}
  ginit = sym["ginit"]
  assert init.data[ginit.value:ginit.value + 16] == struct.pack("<4I", 7, 8, 9, 10)
  assert {(r.type, r.symbol) for r in init.relocations} == {(R_CUDA_G64, "ginit")}
  bank4 = seg[".nv.constant4"]  # whole-program ptxas: the SASS loads each global's address from bank 4
  assert {r.symbol for r in bank4.relocations} == {"gtable", "gptr", "ginit"}
  assert {r.type for r in bank4.relocations} == {R_CUDA_64}
  bases = {".nv.global": 0x7F00_0000_0000, ".nv.global.init": 0x7F00_0001_0000}
  addresses = cubin.symbol_addresses(bases)
  patched = apply_relocations(bank4.data, bank4.relocations, addresses)
  for r in bank4.relocations:
    assert struct.unpack_from("<Q", patched, r.offset)[0] == bases[sym[r.symbol].section] + sym[r.symbol].value
  patched_init = apply_relocations(init.data, init.relocations, addresses)
  gptr = sym["gptr"]
  assert struct.unpack_from("<Q", patched_init, gptr.value)[0] == addresses["ginit"]


@needs_nvdisasm
def test_text_relocations_patch_the_instruction_immediates(ptxas, tmp_path):
  """ptxas -c (and nvJitLink) leave R_CUDA_ABS32_LO/HI_32 in .rela.text; nvdisasm decodes the patched immediates."""
  cubin = parse_cubin(run_ptxas(ptxas, TEXT_RELOC, tmp_path, "-c")[0])
  assert cubin.relocatable
  k = cubin.kernel("gaddr")
  assert {r.type for r in k.relocations} == {R_CUDA_ABS32_LO_32, R_CUDA_ABS32_HI_32}
  code = apply_relocations(k.code, k.relocations, {"gtable": 0x1122_3344_5566_7788})
  by_offset = sass_by_offset(code, tmp_path)
  for r in k.relocations:  # each instruction carries its own half (swapped halves would still show both numbers)
    half = "0x55667788" if r.type == R_CUDA_ABS32_LO_32 else "0x11223344"
    assert re.search(rf"\b{half}\b", by_offset[r.offset]), (r.type_name, by_offset[r.offset])


def sass_by_offset(code: bytes, tmp_path) -> dict[int, str]:
  """nvdisasm's line for each instruction offset of raw sm_90 `code`."""
  raw = tmp_path / "code.bin"
  raw.write_bytes(code)
  sass = subprocess.run([NVDISASM, "-b", "SM90", str(raw)], capture_output=True, text=True, check=True).stdout
  return {int(m.group(1), 16): m.group(2) for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+(.*?);", sass)}


@needs_nvdisasm
def test_slow_path_returns_to_the_calling_kernel(ptxas, tmp_path):
  """A separately placed div.rn.f32 slow path returns through RET.ABS to the 64-bit address the kernel puts in a
  register pair (MOV lo, MOV hi, each relocated against the kernel's own symbol). Both halves must land in the right
  registers, or the return jumps to garbage (Xid 13 on the H100)."""
  cubin = parse_cubin(run_ptxas(ptxas, DIVIDE, tmp_path, "-c")[0])
  k = cubin.kernel("fdiv")
  base = 0x20_1234_5600
  addresses = {s.name: base + s.value for s in cubin.symbols if s.section == ".text.fdiv"}
  halves = {r.type: r for r in k.relocations if r.type in (R_CUDA_ABS32_LO_32, R_CUDA_ABS32_HI_32)}
  assert set(halves) == {R_CUDA_ABS32_LO_32, R_CUDA_ABS32_HI_32} and halves[R_CUDA_ABS32_LO_32].symbol == "fdiv"
  calls = [r for r in k.relocations if r.type == R_CUDA_ABS55_16_34]
  code = apply_relocations(k.code, list(halves.values()), {**addresses, calls[0].symbol: 0})
  lines = sass_by_offset(code, tmp_path)
  regs = {}
  for kind, r in halves.items():
    m = re.fullmatch(r"MOV (R\d+), (0x[0-9a-f]+|\d+)\s*", lines[r.offset].strip())
    assert m, lines[r.offset]
    regs[kind] = (int(m.group(1)[1:]), int(m.group(2), 0))
  (lo_reg, lo), (hi_reg, hi) = regs[R_CUDA_ABS32_LO_32], regs[R_CUDA_ABS32_HI_32]
  assert hi_reg == lo_reg + 1, "RET.ABS reads the pair Rn (low half), Rn+1 (high half)"
  assert (hi << 32 | lo) == base + halves[R_CUDA_ABS32_LO_32].addend, "the return address is just past the CALL"
  assert halves[R_CUDA_ABS32_LO_32].addend == calls[0].offset + 16


DIVIDE = HEADER + """
.visible .entry fdiv(.param .u64 p)
{
  .reg .f32 %f<4>; .reg .b64 %rd<3>;
  ld.param.u64 %rd1, [p]; cvta.to.global.u64 %rd2, %rd1;
  ld.global.f32 %f1, [%rd2]; ld.global.f32 %f2, [%rd2+4]; div.rn.f32 %f3, %f1, %f2; st.global.f32 [%rd2+8], %f3;
  ret;
}
"""
SLOWPATH = ".text.__cuda_sm3x_div_rn_noftz_f32_slowpath"


@needs_nvdisasm
def test_call_relocation_patches_the_call_target(ptxas, tmp_path):
  """`div.rn.f32` calls a slow-path function; ptxas -c (and some toolkits' whole-program output, seen on the H100
  machine's) put it in its own section and leave R_CUDA_ABS55_16_34 on the CALL.ABS. The patched target decodes."""
  cubin = parse_cubin(run_ptxas(ptxas, DIVIDE, tmp_path, "-c")[0])
  k = cubin.kernel("fdiv")
  assert cubin.code_closure("fdiv") == (".text.fdiv", SLOWPATH)
  calls = [r for r in k.relocations if r.type == R_CUDA_ABS55_16_34]
  assert len(calls) == 1 and calls[0].symbol == SLOWPATH[len(".text."):]
  target = 0x1_2345_6789_ABC4  # bits at both ends of the split field
  addresses = {s.name: 0x7000_0000 + s.value for s in cubin.symbols if s.section == ".text.fdiv"}
  code = apply_relocations(k.code, k.relocations, {**addresses, calls[0].symbol: target})
  raw = tmp_path / "code.bin"
  raw.write_bytes(code)
  sass = subprocess.run([NVDISASM, "-b", "SM90", str(raw)], capture_output=True, text=True, check=True).stdout
  assert re.search(rf"CALL\.ABS\.NOINC {target:#x}\b", sass), sass
  for bad, why in ((target + 2, "multiple of 4"), (1 << 57, "does not fit 57 bits")):
    with pytest.raises(CubinError, match=why):
      apply_relocations(k.code, calls, {calls[0].symbol: bad})


def test_apply_relocations_errors(ptxas, tmp_path):
  cubin = parse_cubin(run_ptxas(ptxas, GLOBALS, tmp_path, "-c")[0])
  k = cubin.kernel("gread")
  with pytest.raises(KeyError, match=f"needs the address of '{k.relocations[0].symbol}'"):
    apply_relocations(k.code, k.relocations, {})
  abs16 = [r for r in k.relocations if r.type == R_CUDA_ABS16_32]  # the .const access
  assert abs16, [r.type_name for r in k.relocations]
  with pytest.raises(NotImplementedError, match="R_CUDA_ABS16_32"):
    apply_relocations(k.code, abs16, {"cscale": 0})
  past_end = Relocation(".text.gread", len(k.code) - 4, R_CUDA_64, "gtable", 0)
  with pytest.raises(CubinError, match="past the end"):
    apply_relocations(k.code, [past_end], {"gtable": 0})


# ---------------------------------------------------------------------------------------------------------------------
# bad input

def test_garbage_bytes_are_rejected():
  with pytest.raises(CubinError, match=r"not an ELF file \(15 bytes starting 0001676172626167\)"):
    parse_cubin(b"\x00\x01garbage-bytes")
  with pytest.raises(TypeError, match="str"):
    parse_cubin("not bytes")


def test_non_cuda_elf_is_rejected():
  with open(sys.executable, "rb") as f:
    host_elf = f.read()
  with pytest.raises(CubinError, match=r"machine EM_X86_64|machine EM_AARCH64|not a CUDA cubin"):
    parse_cubin(host_elf)


def test_truncated_cubin_is_rejected(ptxas, tmp_path):
  cubin = run_ptxas(ptxas, SAXPY, tmp_path)[0]
  with pytest.raises(CubinError):
    parse_cubin(cubin[:200])


def test_missing_kernel_names_the_ones_present(ptxas, tmp_path):
  cubin = parse_cubin(run_ptxas(ptxas, SAXPY, tmp_path)[0])
  with pytest.raises(KernelNotFound, match=r"'nope'.*\['saxpy'\]"):
    cubin.kernel("nope")


def test_nv_info_record_errors_name_the_offset():
  with pytest.raises(CubinError, match="unknown record format 0x9 .* at offset 0x4"):
    parse_nv_info(bytes([0x03, 0x1B, 0xFF, 0x00, 0x09, 0x2F, 0, 0]))
  with pytest.raises(CubinError, match="claims 8 bytes"):
    parse_nv_info(bytes([0x04, 0x2F, 0x08, 0x00, 1, 2, 3, 4]))
  attrs = parse_nv_info(bytes([0x01, 0x3E, 0, 0, 0x02, 0x4C, 0x02, 0, 0x03, 0x77, 0x34, 0x12]))
  assert [(a.name, a.value) for a in attrs] == [("EIATTR_EXPLICIT_CLUSTER", None), ("EIATTR_NUM_BARRIERS", 2),
                                                ("unk_0x77", 0x1234)]


# ---------------------------------------------------------------------------------------------------------------------
# compile_ptx: cache, errors, tool lookup

@dataclass(frozen=True)
class CountingCompiler(nvc.Compiler):
  runs: list = field(default_factory=list)

  def compile(self, ptx: str, arch: str) -> bytes:
    self.runs.append(arch)
    return super().compile(ptx, arch)


def test_compile_cache_skips_the_tool(ptxas, tmp_path, monkeypatch):
  monkeypatch.setenv("SOV_CACHE", str(tmp_path))
  counting = CountingCompiler(ptxas.kind, ptxas.path, ptxas.origin)
  first = nvc.compile_ptx(SAXPY, "sm_90", counting)
  path = nvc.cache_path(SAXPY, "sm_90", counting)
  assert path.startswith(str(tmp_path / "nv")) and os.path.exists(path)
  mtime = os.stat(path).st_mtime_ns
  second = nvc.compile_ptx(SAXPY, "sm_90", counting)
  assert first == second and counting.runs == ["sm_90"] and os.stat(path).st_mtime_ns == mtime
  nvc.compile_ptx(SAXPY, "sm_90a", counting)  # another arch is another key
  nvc.compile_ptx(SAXPY, "sm_90", counting, cache=False)
  assert counting.runs == ["sm_90", "sm_90a", "sm_90"]
  assert parse_cubin(first).kernel("saxpy").registers > 0


def test_ptxas_syntax_error_shows_log_and_lines(ptxas, tmp_path, monkeypatch):
  monkeypatch.setenv("SOV_CACHE", str(tmp_path))
  bad = SAXPY.replace("fma.rn.f32", "fma.bogus.f32")
  line = bad.splitlines().index(next(x for x in bad.splitlines() if "fma.bogus" in x)) + 1
  with pytest.raises(nvc.PTXCompileError) as info:
    nvc.compile_ptx(bad, "sm_90", ptxas)
  assert f"line {line}" in info.value.log and info.value.lines == (line,)
  assert f">{line:6d} | " in str(info.value) and "fma.bogus.f32" in str(info.value)


def test_bad_arch_is_rejected(ptxas):
  with pytest.raises(ValueError, match="'90'"):
    nvc.compile_ptx(SAXPY, "90", ptxas)


@pytest.mark.skipif(not NVJITLINK, reason="libnvJitLink not found; pip install nvidia-nvjitlink-cu12 to test it")
def test_nvjitlink_compiles_in_process(tmp_path, monkeypatch):
  monkeypatch.setenv("SOV_CACHE", str(tmp_path))
  cubin = parse_cubin(nvc.compile_ptx(GLOBALS, "sm_90", NVJITLINK[0]))
  k = cubin.kernel("gread")
  assert k.registers > 0 and [(p.offset, p.size) for p in k.params] == [(0, 8)]
  # nvJitLink links a relocatable object: global addresses stay as R_CUDA_ABS32_LO/HI_32 in .rela.text (12.9.86)
  lo_hi = [r for r in k.relocations if r.type in (R_CUDA_ABS32_LO_32, R_CUDA_ABS32_HI_32)]
  assert {r.symbol for r in lo_hi} == {"gtable", "gptr", "ginit"}
  with pytest.raises(nvc.PTXCompileError, match="fma.bogus"):
    nvc.compile_ptx(SAXPY.replace("fma.rn.f32", "fma.bogus.f32"), "sm_90", NVJITLINK[0])


def test_lookup_order_and_not_found_message(tmp_path):
  def touch(rel: str) -> str:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)
  wheel = touch("site/nvidia/cuda_nvcc/bin/ptxas")
  jit = touch("site/nvidia/nvjitlink/lib/libnvJitLink.so.12")
  home = touch("home/bin/ptxas")
  paths = nvc.SearchPaths((str(tmp_path / "site/nvidia"),), str(tmp_path / "home"), str(tmp_path / "none"), "")
  found, _ = nvc.find_compilers(paths)
  assert [(c.kind, c.path) for c in found] == [("ptxas", wheel), ("nvjitlink", jit), ("ptxas", home)]
  empty = nvc.SearchPaths((), None, str(tmp_path / "none"), str(tmp_path / "none"))
  with pytest.raises(nvc.CompilerNotFound) as info:
    nvc.find_compiler(empty)
  message = str(info.value)
  assert "pip install nvidia-cuda-nvcc-cu12" in message and "$CUDA_HOME not set" in message
  assert "namespace package 'nvidia' not installed" in message and str(tmp_path / "none/bin/ptxas") in message


def test_disassemble(ptxas, tmp_path, monkeypatch):
  monkeypatch.setenv("SOV_CACHE", str(tmp_path))
  cubin = nvc.compile_ptx(SAXPY, "sm_90", ptxas)
  assert nvc.disassemble(cubin, nvc.SearchPaths((), None, str(tmp_path), str(tmp_path))) is None
  if NVDISASM is not None:
    sass = nvc.disassemble(cubin)
    assert "saxpy" in sass and "EXIT" in sass and "FFMA" in sass
