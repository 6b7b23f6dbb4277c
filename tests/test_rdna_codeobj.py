"""HSA code objects (compiler/rdna/codeobj*.py, msgpack.py) against LLVM 19's tools.

(a) our objects: llvm-readelf-19 reads their headers, sections, symbols and notes without a warning, LLVM's metadata
    verifier accepts the note (llvm-readobj-19 prints the same map we wrote), and llvm-objdump-19 -d disassembles each
    kernel to the text compiler.rdna's disassembler prints;
(b) LLVM's objects: .s sources with random .amdhsa_* directives -> llvm-mc-19 -filetype=obj -> ld.lld-19 -shared; our
    loader's descriptor fields are what the directives asked for, descriptor_from_directives gives LLVM's 64 bytes,
    the metadata equals llvm-readobj-19's and re-encodes to LLVM's exact note bytes; llc-19 output's hidden arguments
    sit where HIDDEN_ARGS_V5 says;
(c) round trips: writer -> loader, descriptor fields <-> bytes, our msgpack <-> the msgpack package;
(d) bad input: errors that name the file and the problem.
LLVM tools skip when missing, except under CI=true, where they fail (.ci/run installs llvm-19 and lld-19).
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import re
import shutil
import struct
import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from compiler.rdna import msgpack
from compiler.rdna.asm import Assembler, assemble
from compiler.rdna.codeobj import CodeObjectError, build_kernel, load_code_object, register_usage, write_code_object
from compiler.rdna.codeobj_descriptor import (DIRECTIVES, FIELDS, REGISTERS, DescriptorError, KernelDescriptor,
                                              descriptor_from_directives, pack_fields, unpack_fields, vgpr_granule)
from compiler.rdna.codeobj_elf import PROCESSORS, processor, target_id
from compiler.rdna.codeobj_metadata import (HIDDEN_ARGS_V5, KernelMeta, MetadataError, implicit_args,
                                            metadata_document, parse_document, pointer_arg, value_arg)
from compiler.rdna.disasm import disassemble
from compiler.rdna.operands import s, v

CI = os.environ.get("CI") == "true"
TARGETS = ("gfx1100", "gfx1201")
PACKAGES = {"ld.lld-19": "lld-19"}   # every other tool here comes with llvm-19


def tool(name: str) -> str:
  path = shutil.which(name)
  if path is None:
    package = PACKAGES.get(name, "llvm-19")
    if CI:
      pytest.fail(f"{name} is missing under CI=true; .ci/run installs it with apt-get install {package}")
    pytest.skip(f"{name} not installed (Debian: apt-get install --no-install-recommends {package})")
  return path


# module -> how the test extra brings it: msgpack directly, PyYAML through tokenizers -> huggingface_hub
MODULES = {"msgpack": "msgpack", "yaml": "PyYAML (tokenizers -> huggingface_hub)"}


def need_module(name: str):
  try:
    return __import__(name)
  except ImportError:
    if CI:
      pytest.fail(f"{MODULES[name]} is missing under CI=true; pip install -e '.[test]' brings it")
    pytest.skip(f"{MODULES[name]} not installed (pip install -e '.[test]')")


def run(args: list, stdin: str | None = None) -> subprocess.CompletedProcess:
  out = subprocess.run([tool(args[0]), *args[1:]], input=stdin, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, f"{' '.join(args)} failed ({out.returncode}):\n{out.stderr}"
  assert not out.stderr.strip(), f"{' '.join(args)} warned:\n{out.stderr}"
  return out


def llvm_metadata(path: str) -> dict:
  """The metadata note as llvm-readobj-19 decodes it (JSON output; the note itself is YAML text)."""
  yaml = need_module("yaml")
  out = run(["llvm-readobj-19", "--notes", "--elf-output-style=JSON", path])
  notes = [n for sec in json.loads(out.stdout)[0]["NoteSections"] for n in sec["NoteSection"]["Notes"]]
  assert len(notes) == 1 and notes[0]["Owner"] == "AMDGPU", notes
  text = notes[0]["AMDGPU Metadata"]
  assert "Invalid AMDGPU Metadata" not in text, text   # llvm-readobj runs LLVM's metadata verifier on the note

  class Loader(yaml.SafeLoader):   # LLVM tags strings that YAML would read as other types: `!str n`
    pass
  Loader.add_constructor("!str", lambda loader, node: loader.construct_scalar(node))
  return yaml.load(text, Loader=Loader)


def raw_note(data: bytes) -> bytes:
  elf = ELFFile(io.BytesIO(data))
  return [n["n_desc"] for sec in elf.iter_sections() if sec["sh_type"] == "SHT_NOTE" for n in sec.iter_notes()][0]


def objdump(path: str, cpu: str) -> dict:
  """llvm-objdump-19 -d: function symbol -> [(address, instruction text)]."""
  out = run(["llvm-objdump-19", "-d", f"--mcpu={cpu}", path])
  functions, current = {}, None
  for line in out.stdout.splitlines():
    head = re.match(r"^[0-9a-f]{16} <(.+)>:$", line)
    if head:
      current = functions.setdefault(head.group(1), [])
      continue
    inst = re.match(r"^\t(.*?)\s*// ([0-9A-F]+):", line)
    if inst and current is not None:
      current.append((int(inst.group(2), 16), inst.group(1)))
  return functions


# ---- kernels built with our assembler --------------------------------------------------------------------------------

def fill_kernel(target: str):
  """out[id] = 42: the builder API, one kernarg (the output pointer)."""
  asm = Assembler(target)
  asm.emit("s_load_b64", s(2, 2), s(0, 2), 0)
  asm.emit("v_lshlrev_b32", v(0), 2, v(0))
  asm.emit("v_mov_b32", v(1), 42)
  if target == "gfx1100":
    asm.emit("s_waitcnt", "lgkmcnt(0)")
  else:
    asm.emit("s_wait_kmcnt", 0)
  asm.emit("global_store_b32", v(0), v(1), s(2, 2))
  asm.emit("s_endpgm")
  return build_kernel("fill", asm.code(), target, args=[pointer_arg("out", 0)], system_vgpr_workitem_id=0)


def vadd_kernel(target: str):
  """c[id] = a[id] + b[id] with s_load of the kernargs and the v5 hidden arguments after them."""
  wait_k, wait_v = ("s_waitcnt lgkmcnt(0)", "s_waitcnt vmcnt(0)") if target == "gfx1100" else \
                   ("s_wait_kmcnt 0", "s_wait_loadcnt 0")
  code = assemble(f"""
    s_load_b128 s[4:7], s[0:1], 0x0     ; a, b
    s_load_b64 s[8:9], s[0:1], 0x10     ; c
    s_load_b32 s10, s[0:1], 0x18        ; n
    v_lshlrev_b32 v0, 2, v0
    {wait_k}
    global_load_b32 v1, v0, s[4:5]
    global_load_b32 v2, v0, s[6:7]
    {wait_v}
    v_add_f32 v1, v1, v2
    global_store_b32 v0, v1, s[8:9]
    s_endpgm
  """, target)
  hidden, size = implicit_args(28)
  args = (pointer_arg("a", 0), pointer_arg("b", 8), pointer_arg("c", 16), value_arg("count", 24, 4)) + hidden
  return build_kernel("vadd", code, target, args=args, kernarg_size=size, group_segment_fixed_size=512,
                      max_flat_workgroup_size=256, metadata_extra={".uses_dynamic_stack": False})


@pytest.mark.parametrize("target", TARGETS)
def test_our_object_in_llvm_tools(target: str, tmp_path) -> None:
  kernels = [fill_kernel(target), vadd_kernel(target)]
  blob = write_code_object(kernels, target)
  path = str(tmp_path / f"ours_{target}.hsaco")
  with open(path, "wb") as f:
    f.write(blob)
  out = run(["llvm-readelf-19", "--file-header", "--sections", "--segments", "--symbols", "--dyn-syms", "--dynamic",
             "--hash-table", "--notes", path]).stdout
  assert f"Flags:                             0x{PROCESSORS[target].mach:X}, {target}" in out
  assert "OS/ABI:                            AMDGPU - HSA" in out and "ABI Version:                       3" in out
  assert "NT_AMDGPU_METADATA (AMDGPU Metadata)" in out and "Invalid AMDGPU Metadata" not in out
  for k in kernels:
    assert re.search(rf"\b64 OBJECT\s+GLOBAL DEFAULT\s+\d+ {k.name}\.kd$", out, re.M), out
    assert re.search(rf"\b{len(k.code)} FUNC\s+GLOBAL PROTECTED\s+\d+ {k.name}$", out, re.M), out
  co = load_code_object(blob)
  assert llvm_metadata(path) == co.metadata == metadata_document(target_id(processor(target)),
                                                                 [k.metadata for k in kernels])
  functions = objdump(path, target)
  for k in co.kernels:
    theirs = [text for addr, text in functions[k.name] if addr < k.entry_offset + len(k.code)]
    assert theirs == [d.text for d in disassemble(k.code, co.isa)]
  assert register_usage(kernels[1].code, target) == (3, 11)
  assert co.kernel("vadd").metadata.sgpr_count == 13   # + VCC


# ---- code objects LLVM made ------------------------------------------------------------------------------------------

def random_directives(rng: random.Random, generation: int) -> dict:
  """Some .amdhsa_* directives with random legal values; the rest are left to their defaults."""
  by_name = {(f.register, f.name): f for f in FIELDS if generation in f.generations}
  d = {"next_free_vgpr": rng.randint(1, 256), "next_free_sgpr": rng.randint(1, 100)}
  for name, (default, gens, register, field) in DIRECTIVES.items():
    if generation not in gens or name in d or name == "user_sgpr_count" or rng.random() < 0.3:
      continue
    if register is None:
      d[name] = rng.choice([0, 1]) if name == "reserve_vcc" else rng.randrange(0, 1 << 16, 4)
    elif name == "shared_vgpr_count":   # wave64 only, within 256 VGPRs with the private ones
      wave32, private = d.get("wavefront_size32", 1), (vgpr_granule(d["next_free_vgpr"], False) + 1) * 4
      d[name] = 0 if wave32 else rng.randint(0, min(15, (256 - private) // 8))
    else:
      d[name] = rng.randrange(1 << by_name[register, field].width)
  if rng.random() < 0.5:
    implied = sum(2 if name != "user_sgpr_private_segment_size" else 1 for name in
                  ("user_sgpr_dispatch_ptr", "user_sgpr_queue_ptr", "user_sgpr_kernarg_segment_ptr",
                   "user_sgpr_dispatch_id", "user_sgpr_private_segment_size") if d.get(name))
    d["user_sgpr_count"] = rng.randint(implied, 16)
  return d


def meta_for(name: str, d: dict) -> KernelMeta:
  size = d.get("kernarg_size", 0)
  args = (pointer_arg("src", 0), value_arg(None, 8, 4)) if size >= 12 else ()
  return KernelMeta(name, f"{name}.kd", size, d.get("group_segment_fixed_size", 0),
                    d.get("private_segment_fixed_size", 0), 8, 32 if d.get("wavefront_size32", 1) else 64,
                    d["next_free_sgpr"] + 2, d["next_free_vgpr"], 256, args)


def llvm_source(target: str, kernels: list) -> str:
  """An assembly file in llc's shape: code in .text, .amdhsa_kernel blocks in .rodata, the metadata as YAML."""
  yaml = need_module("yaml")
  lines = [f'.amdgcn_target "{target_id(processor(target))}"', ".amdhsa_code_object_version 5"]
  for name, body, d, _ in kernels:
    lines += [".text", f".globl {name}", ".p2align 8", f".type {name},@function", f"{name}:", body,
              f".L{name}_end:", f".size {name}, .L{name}_end-{name}", ".rodata", ".p2align 6", f".amdhsa_kernel {name}"]
    lines += [f"  .amdhsa_{key} {value}" for key, value in d.items()]
    lines.append(".end_amdhsa_kernel")
  doc = metadata_document(target_id(processor(target)), [meta for *_, meta in kernels])
  lines += [".amdgpu_metadata", "---", yaml.safe_dump(doc, sort_keys=True).strip(), "...", ".end_amdgpu_metadata"]
  return "\n".join(lines) + "\n"


def llvm_link(source: str, target: str, tmp_path, stem: str) -> str:
  src, obj, so = (str(tmp_path / f"{stem}.{ext}") for ext in ("s", "o", "so"))
  with open(src, "w") as f:
    f.write(source)
  run(["llvm-mc-19", "-triple", "amdgcn-amd-amdhsa", f"-mcpu={target}", "-filetype=obj", src, "-o", obj])
  run(["ld.lld-19", "-shared", obj, "-o", so])
  return so


@pytest.mark.parametrize("target", TARGETS)
def test_llvm_objects_load(target: str, tmp_path) -> None:
  generation = processor(target).generation
  rng = random.Random(f"codeobj:{target}")
  kernels = []
  for i in range(12):
    d = random_directives(rng, generation)
    kernels.append((f"k{i}", f"s_mov_b32 s{i}, {i * 7}\ns_endpgm", d, meta_for(f"k{i}", d)))
  so = llvm_link(llvm_source(target, kernels), target, tmp_path, "llvm")
  with open(so, "rb") as f:
    data = f.read()
  co = load_code_object(data, name=so)
  assert (co.processor, co.code_object_version, co.xnack, co.sramecc) == (target, 5, "unsupported", "unsupported")
  assert co.metadata == llvm_metadata(so)
  assert msgpack.pack(co.metadata) == raw_note(data)   # LLVM's note, byte for byte, from our encoder
  for (name, body, d, meta), k in zip(kernels, co.kernels):
    assert k.name == name and k.metadata == meta and k.code == assemble(body, target)
    fields = k.descriptor.read_fields(generation)
    for directive, (default, gens, register, field) in DIRECTIVES.items():
      if generation not in gens or field is None or directive.startswith("next_free"):
        continue
      asked = d.get(directive, default)
      got = fields[field] if register is None else fields[register][field]
      assert asked is None or got == asked, f"{name}: .amdhsa_{directive} {asked} -> {register}.{field} = {got}"
    wave32 = d.get("wavefront_size32", 1)
    assert fields["compute_pgm_rsrc1"]["GRANULATED_WORKITEM_VGPR_COUNT"] == vgpr_granule(d["next_free_vgpr"], wave32)
    ours = descriptor_from_directives(target, **d)
    assert dataclasses.replace(k.descriptor, kernel_code_entry_byte_offset=0) == ours, name
    assert k.descriptor_offset + k.descriptor.kernel_code_entry_byte_offset == k.entry_offset
    assert co.image[k.descriptor_offset:k.descriptor_offset + 64] == \
           dataclasses.replace(ours, kernel_code_entry_byte_offset=k.entry_offset - k.descriptor_offset).to_bytes()


LLC_KERNEL = """
@lds = external addrspace(3) global [0 x i32], align 4
define amdgpu_kernel void @scale(ptr addrspace(1) %out, ptr addrspace(1) %in, i32 %n) {
  %id = call i32 @llvm.amdgcn.workitem.id.x()
  %imp = call ptr addrspace(4) @llvm.amdgcn.implicitarg.ptr()
  %blocks = load i32, ptr addrspace(4) %imp
  %l = getelementptr [0 x i32], ptr addrspace(3) @lds, i32 0, i32 %id
  %x = load i32, ptr addrspace(3) %l
  %a = getelementptr i32, ptr addrspace(1) %in, i32 %id
  %y = load i32, ptr addrspace(1) %a
  %m = mul i32 %y, %n
  %s = add i32 %m, %blocks
  %t = add i32 %s, %x
  %b = getelementptr i32, ptr addrspace(1) %out, i32 %id
  store i32 %t, ptr addrspace(1) %b
  ret void
}
declare i32 @llvm.amdgcn.workitem.id.x()
declare ptr addrspace(4) @llvm.amdgcn.implicitarg.ptr()
!llvm.printf.fmts = !{!0}
!0 = !{!"1:1:4:%d\\0A"}
"""


@pytest.mark.parametrize("target", TARGETS)
def test_llc_object(target: str, tmp_path) -> None:
  """A kernel LLVM compiled: the hidden arguments llc-19 lists sit where HIDDEN_ARGS_V5 puts them, the descriptor
  matches llc's .amdhsa directives, and our disassembler reads llc's code as llvm-objdump does."""
  ll, obj, so = (str(tmp_path / f"scale.{ext}") for ext in ("ll", "o", "so"))
  with open(ll, "w") as f:
    f.write(LLC_KERNEL)
  asm = run(["llc-19", "-mtriple=amdgcn-amd-amdhsa", f"-mcpu={target}", ll, "-o", "-"]).stdout
  run(["llc-19", "-mtriple=amdgcn-amd-amdhsa", f"-mcpu={target}", "-filetype=obj", ll, "-o", obj])
  run(["ld.lld-19", "-shared", obj, "-o", so])
  co = load_code_object(so)
  k = co.kernel("scale")
  explicit = [a for a in k.args if not a.value_kind.startswith("hidden_")]
  hidden = [a for a in k.args if a.value_kind.startswith("hidden_")]
  ours, size = implicit_args(explicit[-1].offset + explicit[-1].size, tuple(a.value_kind for a in hidden))
  assert [(a.value_kind, a.offset, a.size) for a in hidden] == [(a.value_kind, a.offset, a.size) for a in ours]
  assert size == k.kernarg_size
  assert {"hidden_printf_buffer", "hidden_dynamic_lds_size"} <= {a.value_kind for a in hidden}
  block = asm[asm.index(".amdhsa_kernel scale"):asm.index(".end_amdhsa_kernel")]
  directives = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+\.amdhsa_(\w+) (\d+)$", block, re.M)}
  theirs = descriptor_from_directives(target, **directives).read_fields(co.generation)
  fields = k.descriptor.read_fields(co.generation)
  # llc's object path writes ceil(sgprs / 8) - 1 into the SGPR granule, which GFX10+ ignore; llvm-mc writes 0
  fields["compute_pgm_rsrc1"].pop("GRANULATED_WAVEFRONT_SGPR_COUNT")
  theirs["compute_pgm_rsrc1"].pop("GRANULATED_WAVEFRONT_SGPR_COUNT")
  theirs["kernel_code_entry_byte_offset"] = fields["kernel_code_entry_byte_offset"]
  assert fields == theirs
  listing = [text for addr, text in objdump(so, target)["scale"] if addr < k.entry_offset + len(k.code)]
  assert listing == [d.text for d in disassemble(k.code, co.isa)]


RELOC_KERNEL = """
@data = addrspace(1) global [4 x i32] [i32 11, i32 22, i32 33, i32 44], align 4
@table = addrspace(1) global ptr addrspace(1) @data, align 8
define amdgpu_kernel void @reader(ptr addrspace(1) %out) {
  %p = load ptr addrspace(1), ptr addrspace(1) @table
  %v = load i32, ptr addrspace(1) %p
  store i32 %v, ptr addrspace(1) %out
  ret void
}
"""


def test_llc_relocations(tmp_path) -> None:
  """A pointer in global data: ld.lld-19 leaves R_AMDGPU_ABS64 relocations (GOT entry -> table, table -> data) that
  the loader turns into (offset, value - base) pairs."""
  ll, obj, so = (str(tmp_path / f"reader.{ext}") for ext in ("ll", "o", "so"))
  with open(ll, "w") as f:
    f.write(RELOC_KERNEL)
  run(["llc-19", "-mtriple=amdgcn-amd-amdhsa", "-mcpu=gfx1100", "-filetype=obj", ll, "-o", obj])
  run(["ld.lld-19", "-shared", obj, "-o", so])
  listing = run(["llvm-readelf-19", "--dyn-syms", so]).stdout
  address = {m.group(2): int(m.group(1), 16) for m in re.finditer(r"^\s+\d+: ([0-9a-f]+)\s+\d+ OBJECT .* (\w+)$",
                                                                       listing, re.M)}
  co = load_code_object(so)
  assert (address["table"], address["data"]) in co.relocations and len(co.relocations) == 2
  assert struct.unpack_from("<4i", co.image, address["data"]) == (11, 22, 33, 44)


# ---- round trips -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_round_trip(target: str) -> None:
  generation = processor(target).generation
  rng = random.Random(f"round-trip:{target}")
  kernels = []
  for i in range(5):
    d = random_directives(rng, generation)
    code = assemble("\n".join(["s_nop 0"] * rng.randint(0, 70) + ["s_endpgm"]), target)
    kernels.append(build_kernel(f"kernel_{i}", code, target, args=meta_for("x", d).args, **d))
  co = load_code_object(write_code_object(kernels, target))
  assert co.metadata == metadata_document(target_id(processor(target)), [k.metadata for k in kernels])
  for sent, got in zip(kernels, co.kernels):
    assert (got.name, got.code, got.metadata) == (sent.name, sent.code, sent.metadata)
    assert got.descriptor == dataclasses.replace(sent.descriptor,
                                                 kernel_code_entry_byte_offset=got.entry_offset - got.descriptor_offset)
    assert got.entry_offset % 256 == 0 and got.descriptor_offset % 64 == 0
    assert co.image[got.entry_offset:got.entry_offset + len(got.code)] == sent.code
    assert (got.kernarg_size, got.group_segment_size, got.private_segment_size) == \
           (sent.descriptor.kernarg_size, sent.descriptor.group_segment_fixed_size,
            sent.descriptor.private_segment_fixed_size)


@pytest.mark.parametrize("generation", [11, 12])
def test_descriptor_fields(generation: int) -> None:
  """Each register's fields tile it exactly once; bytes -> fields -> bytes for random values."""
  widths = {"compute_pgm_rsrc1": 32, "compute_pgm_rsrc2": 32, "compute_pgm_rsrc3": 32, "kernel_code_properties": 16,
            "kernarg_preload": 16}
  for register in REGISTERS:
    covered = 0
    for f in FIELDS:
      if f.register == register and generation in f.generations:
        assert not covered & f.mask, f"{register}.{f.name} overlaps another field"
        covered |= f.mask
    assert covered == (1 << widths[register]) - 1, f"{register}: bits {~covered & ((1 << widths[register]) - 1):#x}"
  rng = random.Random(generation)
  for _ in range(50):
    values = {r: rng.getrandbits(widths[r]) for r in REGISTERS}
    kd = KernelDescriptor(rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(32), rng.randint(-2**40, 2**40),
                          **values)
    assert KernelDescriptor.from_bytes(kd.to_bytes()) == kd
    fields = kd.read_fields(generation)
    assert all(pack_fields(r, generation, **fields[r]) == values[r] for r in REGISTERS)
    assert kd.update(generation, **{r: fields[r] for r in REGISTERS}) == kd
  assert [vgpr_granule(n) for n in (0, 1, 8, 9, 256)] == [0, 0, 0, 1, 31]
  assert [vgpr_granule(n, wave32=False) for n in (1, 4, 5, 256)] == [0, 0, 1, 63]


def random_value(rng: random.Random, depth: int = 0):
  kinds = ["int", "float", "str", "bin", "nil", "bool"] + (["list", "map"] * 2 if depth < 3 else [])
  kind = rng.choice(kinds)
  if kind == "int":
    edge = rng.choice([0, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 2**32 - 1, 2**32, 2**64 - 1, -1, -32, -33, -128,
                       -129, -2**15, -2**15 - 1, -2**31, -2**31 - 1, -2**63])
    return rng.choice([edge, rng.randint(-2**63, 2**64 - 1), rng.randint(-40, 300)])
  if kind == "float":
    return rng.choice([0.0, -1.5, 1e300, rng.uniform(-1e6, 1e6)])
  if kind in ("str", "bin"):   # lengths around each size class's bounds; the long ones only at the top
    n = rng.choice([0, 1, 31, 32, 255, 256, rng.randint(0, 70)] + ([65535, 65536] if depth == 0 else []))
    start = rng.randrange(6)
    text = ("ab.é_€" * (n // 6 + 2))[start:start + n]
    return text if kind == "str" else text.encode()[:n]
  if kind == "nil":
    return None
  if kind == "bool":
    return rng.random() < 0.5
  n = rng.choice([0, 1, 15, 16, rng.randint(0, 20)])
  if kind == "list":
    return [random_value(rng, depth + 1) for _ in range(n)]
  return {rng.choice([f"k{i}", i - 10, f".key_{i}"]): random_value(rng, depth + 1) for i in range(n)}


def test_msgpack_against_package() -> None:
  reference = need_module("msgpack")
  rng = random.Random(7)
  for _ in range(300):
    value = random_value(rng)
    theirs = reference.packb(value, use_bin_type=True)
    assert msgpack.pack(value) == theirs
    assert msgpack.unpack(theirs) == value
    assert reference.unpackb(msgpack.pack(value), raw=False, strict_map_key=False) == value
  assert msgpack.unpack(reference.packb(1.5, use_single_float=True)) == 1.5
  for bad, message in ((b"\x92\x01", "truncated"), (b"\x01\x02", "trailing"), (b"\xd4\x01\x00", "ext"),
                       (b"\xa2\xff\xfe", "UTF-8"), (b"\x81\x90\x01", "map key")):
    with pytest.raises(msgpack.MsgpackError, match=message):
      msgpack.unpack(bad)
  with pytest.raises(msgpack.MsgpackError, match="cannot encode set"):
    msgpack.pack({1, 2})


# ---- errors ----------------------------------------------------------------------------------------------------------

def patched(blob: bytes, offset: int, fmt: str, value) -> bytes:
  out = bytearray(blob)
  struct.pack_into(fmt, out, offset, value)
  return bytes(out)


def test_bad_input(tmp_path) -> None:
  blob = write_code_object([fill_kernel("gfx1100")], "gfx1100")
  path = tmp_path / "fill.hsaco"
  cases = [
    (b"hello, not an ELF", "not an ELF file"),
    (patched(blob, 18, "<H", 62), "e_machine is 62, not EM_AMDGPU"),                     # EM_X86_64
    (patched(blob, 7, "<B", 65), "ELFOSABI_AMDGPU_PAL, not ELFOSABI_AMDGPU_HSA"),
    (patched(blob, 8, "<B", 1), "ABI version 1 is not code object v4-v6"),
    (patched(blob, 48, "<I", 0x2F), r"machine 0x2f \(gfx906\) is not a gfx11/gfx12"),    # e_flags
    (patched(blob, 48, "<I", 0x141), "e_flags 0x141 set xnack any, but gfx1100 has no xnack feature"),
    (patched(blob, 48, "<I", 0x46), "amdhsa.target 'amdgcn-amd-amdhsa--gfx1100' does not match e_flags 0x46"),
    (patched(blob, 16, "<H", 1), r"relocatable object \(ET_REL\)"),
    (blob[:40], "truncated: 40 bytes"),
    (blob[:len(blob) // 2], "truncated"),
    (blob.replace(b"fill.kd\0", b"fill.kx\0"), "descriptor symbol 'fill.kd'.*not in the symbol table"),
  ]
  for data, message in cases:
    path.write_bytes(data)
    with pytest.raises(CodeObjectError, match=f"^{re.escape(str(path))}: .*{message}"):
      load_code_object(path)
  with pytest.raises(CodeObjectError, match="<bytes>: .*relocatable"):
    load_code_object(patched(blob, 16, "<H", 1))


def test_writer_and_descriptor_errors() -> None:
  kernel = fill_kernel("gfx1100")
  with pytest.raises(CodeObjectError, match="at least one kernel"):
    write_code_object([], "gfx1100")
  with pytest.raises(CodeObjectError, match="unsupported processor 'gfx906'"):
    write_code_object([kernel], "gfx906")
  bad_meta = dataclasses.replace(kernel, metadata=dataclasses.replace(kernel.metadata, kernarg_segment_size=4))
  with pytest.raises(CodeObjectError, match="kernarg size is 4 in the metadata but 8 in the descriptor"):
    write_code_object([bad_meta], "gfx1100")
  with pytest.raises(CodeObjectError, match="ends past .kernarg_segment_size"):
    write_code_object([build_kernel("k", kernel.code, args=[pointer_arg("p", 0)], kernarg_size=4)], "gfx1100")
  with pytest.raises(CodeObjectError, match="did you mean dx10_clamp"):
    build_kernel("k", kernel.code, dx10_clam=1)
  with pytest.raises(CodeObjectError, match=r"\.amdhsa_dx10_clamp does not exist on gfx12"):
    build_kernel("k", assemble("s_endpgm", "gfx1201"), "gfx1201", dx10_clamp=0)
  with pytest.raises(CodeObjectError, match="kernel k: the code is not gfx1201 machine code"):
    build_kernel("k", kernel.code, "gfx1201")
  with pytest.raises(CodeObjectError, match="shared_vgpr_count 1 needs wave64"):
    build_kernel("k", kernel.code, shared_vgpr_count=1)
  with pytest.raises(CodeObjectError, match="needs 264 VGPRs"):
    build_kernel("k", kernel.code, wavefront_size32=0, next_free_vgpr=256, shared_vgpr_count=1)
  with pytest.raises(CodeObjectError, match="user_sgpr_count 1 must be 4..16"):
    build_kernel("k", kernel.code, user_sgpr_count=1, user_sgpr_dispatch_ptr=1, user_sgpr_kernarg_segment_ptr=1)
  with pytest.raises(DescriptorError, match="ENABLE_WG_RR_EN does not exist on gfx11"):
    pack_fields("compute_pgm_rsrc1", 11, ENABLE_WG_RR_EN=1)
  with pytest.raises(DescriptorError, match="did you mean WGP_MODE"):
    pack_fields("compute_pgm_rsrc1", 11, WGP_MOD=1)
  with pytest.raises(DescriptorError, match="does not fit its 2 bits"):
    pack_fields("compute_pgm_rsrc2", 12, ENABLE_VGPR_WORKITEM_ID=4)
  with pytest.raises(DescriptorError, match="reserved1 .* must be zero"):
    KernelDescriptor.from_bytes(bytes(30) + b"\x01" + bytes(33))
  with pytest.raises(MetadataError, match="did you mean hidden_block_count_x"):
    implicit_args(0, ("hidden_block_cont_x",))
  with pytest.raises(MetadataError, match=r"required key '.vgpr_count' is missing"):
    parse_document({"amdhsa.version": [1, 2], "amdhsa.target": "x",
                    "amdhsa.kernels": [{k: v for k, v in kernel.metadata.to_map().items() if k != ".vgpr_count"}]},
                   "f.hsaco")
  assert unpack_fields("kernarg_preload", 11, 0x83) == {"LENGTH": 3, "OFFSET": 1}


def test_hidden_args_table() -> None:
  """HIDDEN_ARGS_V5 entries lie inside the 256-byte area, do not overlap, and are naturally aligned."""
  end = 0
  for kind, offset, size in sorted(HIDDEN_ARGS_V5, key=lambda row: row[1]):
    assert offset >= end and offset % size == 0 and offset + size <= 256, kind
    end = offset + size
