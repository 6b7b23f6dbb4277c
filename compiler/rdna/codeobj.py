"""AMDHSA code objects (code object v5 ELF shared objects) for gfx11 / gfx12: write them from assembled kernels, load
them (ours or LLVM's) into what a driver needs to dispatch.

    code = assemble("global_store_b32 v0, v1, s[0:1]\\ns_endpgm", "gfx1100")
    kernel = build_kernel("store", code, "gfx1100", args=[pointer_arg("out", 0)])
    blob = write_code_object([kernel], "gfx1100")                 # bytes of an ET_DYN ELF (.hsaco)
    co = load_code_object(blob)                                   # CodeObject: target, kernels, image
    k = co.kernel("store")
    k.descriptor.read_fields(co.generation)["compute_pgm_rsrc2"]["USER_SGPR_COUNT"], k.kernarg_size, k.code

A code object holds, per kernel, the machine code in .text (symbol NAME, STT_FUNC, 256-byte aligned), a 64-byte kernel
descriptor in .rodata (symbol NAME.kd, STT_OBJECT; kernel_code_entry_byte_offset points from it to the code) and an
entry in the msgpack metadata note (kernarg layout, segment sizes, register counts). To dispatch, a driver copies
`image` to GPU memory at some base, writes base + value at base + offset for each of `relocations`, and puts
base + kernel.descriptor_offset into the AQL packet's kernel_object.

Modules: codeobj_descriptor (kernel descriptor fields, .amdhsa_* directives), codeobj_metadata (the note's keys,
hidden arguments), codeobj_elf (e_flags, target IDs, the ELF writer), msgpack (the note's encoding).
"""
from __future__ import annotations

import dataclasses
import io
import os
import struct
from dataclasses import dataclass, field

import numpy as np
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from . import msgpack
from .codeobj_descriptor import DescriptorError, KernelDescriptor, descriptor_from_directives
from .codeobj_elf import (ABI_VERSIONS, EM_AMDGPU, ELFOSABI_AMDGPU_HSA, NOTE_NAME, NT_AMDGPU_METADATA, OSABI_NAMES,
                          STT_FUNC, STT_OBJECT, STV_PROTECTED, CodeObjectError, CodeObjectFormatError, ElfSymbol,
                          decode_e_flags, e_flags, note_record, plan_layout, processor, target_id, write_shared_object)
from .codeobj_metadata import KernelMeta, MetadataError, metadata_document, parse_document
from .disasm import DecodeError, disassemble
from .operands import reg_from_encoding
from .tables import get_target

__all__ = ["CodeObject", "CodeObjectError", "Kernel", "build_kernel", "load_code_object", "register_usage",
           "write_code_object"]
ENTRY_ALIGN = 256           # AMDGPUUsage kernel descriptor: the entry "must be 256 byte aligned"
DESCRIPTOR_ALIGN = 64
R_AMDGPU_ABS64, R_AMDGPU_RELATIVE64 = 3, 13    # llvm-19-dev llvm/BinaryFormat/ELFRelocs/AMDGPU.def
SHF_ALLOC = 2
PT_LOAD = 1
S_NOP_0 = bytes.fromhex("000080bf")       # s_nop 0, gfx11 and gfx12 (llvm-mc-19 -show-encoding)
S_CODE_END = bytes.fromhex("00009fbf")    # s_code_end, gfx11 and gfx12
CODE_END_PAD = 96
MAX_IMAGE = 1 << 30          # a sanity bound on the loaded image (corrupt p_memsz would otherwise allocate it)
VCC_SGPRS = 2               # VCC is allocated after the highest SGPR when the kernel may use it (.amdhsa_reserve_vcc)


@dataclass(frozen=True)
class Kernel:
  """One kernel: name, machine code, descriptor and metadata. `descriptor_offset` and `entry_offset` are image offsets
  the loader fills in (the writer ignores them and descriptor.kernel_code_entry_byte_offset)."""
  name: str
  code: bytes
  descriptor: KernelDescriptor
  metadata: KernelMeta
  descriptor_offset: int = 0
  entry_offset: int = 0

  @property
  def args(self) -> tuple:
    return self.metadata.args

  @property
  def kernarg_size(self) -> int:
    return self.metadata.kernarg_segment_size

  @property
  def kernarg_align(self) -> int:
    return self.metadata.kernarg_segment_align

  @property
  def group_segment_size(self) -> int:
    """Static LDS bytes per work-group (dynamic LDS is added at dispatch)."""
    return self.descriptor.group_segment_fixed_size

  @property
  def private_segment_size(self) -> int:
    """Scratch bytes per work-item."""
    return self.descriptor.private_segment_fixed_size

  @property
  def sgpr_count(self) -> int:
    return self.metadata.sgpr_count

  @property
  def vgpr_count(self) -> int:
    return self.metadata.vgpr_count

  @property
  def wavefront_size(self) -> int:
    return self.metadata.wavefront_size


@dataclass(frozen=True)
class CodeObject:
  """A loaded code object: its target, the decoded metadata note, the kernels and the loadable image."""
  name: str                  # file name, or what the caller called the bytes
  processor: str             # gfx1100
  isa: str                   # compiler.rdna target that decodes its code (gfx1100 / gfx1201)
  generation: int            # 11 or 12
  target: str                # amdhsa.target: amdgcn-amd-amdhsa--gfx1100
  code_object_version: int   # 5 (ELF ABI version 3)
  xnack: str                 # unsupported / any / off / on (e_flags)
  sramecc: str
  metadata: dict             # the whole decoded NT_AMDGPU_METADATA map
  kernels: tuple
  image: bytes               # PT_LOAD segments at their addresses (memsz zero-filled), from address 0
  relocations: tuple = field(default=())   # (image offset, value - load base): 64-bit pointers to relocate

  def kernel(self, name: str) -> Kernel:
    """The kernel called `name` (metadata .name or symbol).

    Raises:
      KeyError: no such kernel; the message lists the kernels.
    """
    for k in self.kernels:
      if name in (k.name, k.metadata.symbol):
        return k
    raise KeyError(f"{self.name} has no kernel {name!r}; kernels: {', '.join(k.name for k in self.kernels)}")


# ---- building kernels ------------------------------------------------------------------------------------------------

def register_usage(code: bytes, target: str = "gfx1100") -> tuple:
  """(next_free_vgpr, next_free_sgpr): one past the highest VGPR and SGPR the code names, found by disassembling it
  with compiler.rdna's tables (registers an instruction reads implicitly, like VCC, are not counted)."""
  highest, isa = {"v": 0, "s": 0}, get_target(target)
  for inst in disassemble(code, target):
    for op in inst.instr.operands:
      if op.type.kind not in ("reg", "src") or op.name not in inst.ops.vals:
        continue
      reg = reg_from_encoding(inst.ops.vals[op.name], op.type.regclass, isa)
      if reg is None or reg.file not in highest:
        continue
      last = reg.index // 2 if reg.bits == 16 else reg.index + reg.bits // 32 - 1
      highest[reg.file] = max(highest[reg.file], last + 1)
  return highest["v"], highest["s"]


def build_kernel(name: str, code: bytes, target: str = "gfx1100", *, args=(), kernarg_size: int | None = None,
                 kernarg_segment_align: int | None = None, max_flat_workgroup_size: int = 1024,
                 metadata_extra: dict | None = None, **directives) -> Kernel:
  """A Kernel from assembled code: the descriptor from `.amdhsa_*`-style directives, the metadata to match.

  Args:
    args: KernelArg list (pointer_arg, value_arg, implicit_args in codeobj_metadata).
    kernarg_size: defaults to the end of the last argument.
    kernarg_segment_align: defaults to 8 with arguments, 4 without (at least the largest argument's alignment).
    directives: descriptor_from_directives' names (next_free_vgpr, system_vgpr_workitem_id, ...).
      next_free_vgpr / next_free_sgpr default to register_usage(code); user_sgpr_kernarg_segment_ptr to 1 when the
      kernel has arguments; group_segment_fixed_size / private_segment_fixed_size to 0.
  Raises:
    CodeObjectError: the directives or metadata do not fit (the underlying message included).
  """
  proc = processor(target)
  try:
    used_vgpr, used_sgpr = register_usage(code, proc.isa)
  except DecodeError as e:
    raise CodeObjectError(f"kernel {name}: the code is not {proc.name} machine code ({e})") from None
  size = max((a.offset + a.size for a in args), default=0) if kernarg_size is None else kernarg_size
  directives.setdefault("next_free_vgpr", used_vgpr)
  directives.setdefault("next_free_sgpr", used_sgpr)
  directives.setdefault("kernarg_size", size)
  directives.setdefault("user_sgpr_kernarg_segment_ptr", 1 if size else 0)
  try:
    descriptor = descriptor_from_directives(proc.generation, **directives)
  except DescriptorError as e:
    raise CodeObjectError(f"kernel {name}: {e}") from None
  fields = descriptor.read_fields(proc.generation)
  wave32 = fields["kernel_code_properties"]["ENABLE_WAVEFRONT_SIZE32"]
  align = kernarg_segment_align or max([8 if args else 4] + [min(16, a.size & -a.size) for a in args])
  vcc = VCC_SGPRS if directives.get("reserve_vcc", 1) else 0
  metadata = KernelMeta(name, f"{name}.kd", kernarg_segment_size=size,
                        group_segment_fixed_size=descriptor.group_segment_fixed_size,
                        private_segment_fixed_size=descriptor.private_segment_fixed_size, kernarg_segment_align=align,
                        wavefront_size=32 if wave32 else 64, sgpr_count=directives["next_free_sgpr"] + vcc,
                        vgpr_count=directives["next_free_vgpr"], max_flat_workgroup_size=max_flat_workgroup_size,
                        args=tuple(args), other=dict(metadata_extra or {}))
  return Kernel(name, bytes(code), descriptor, metadata)


# ---- writer ----------------------------------------------------------------------------------------------------------

def write_code_object(kernels: list, target: str = "gfx1100") -> bytes:
  """A code object v5 ELF with these kernels for the target (gfx1100, gfx1201, ...).

  Raises:
    CodeObjectError: no kernels, repeated names, metadata whose .symbol is not NAME.kd or whose sizes disagree with
      the descriptor, or metadata that does not validate.
  """
  proc = processor(target)
  if not kernels:
    raise CodeObjectError("a code object needs at least one kernel")
  for k in kernels:
    check_kernel(k)
  try:
    note_desc = msgpack.pack(metadata_document(target_id(proc), [k.metadata for k in kernels]))
  except MetadataError as e:
    raise CodeObjectError(f"metadata for {target}: {e}") from None
  note = note_record(NOTE_NAME, NT_AMDGPU_METADATA, note_desc)
  text, code_at = bytearray(), []
  for k in kernels:
    text += S_NOP_0 * (-len(text) % ENTRY_ALIGN // 4)   # llvm-mc fills .p2align in code with s_nop 0
    code_at.append(len(text))
    text += k.code
  # after the last kernel, like llc-19: s_code_end to a 128-byte boundary and 96 more, so instruction prefetch past
  # the end reads s_code_end (AMDGPUAsmPrinter's end-of-file padding)
  text += S_CODE_END * (-len(text) % 128 // 4 + CODE_END_PAD)
  symbols = []
  for i, k in enumerate(kernels):
    symbols.append(ElfSymbol(k.name, ".text", code_at[i], len(k.code), STT_FUNC, STV_PROTECTED))
    symbols.append(ElfSymbol(k.metadata.symbol, ".rodata", DESCRIPTOR_ALIGN * i, DESCRIPTOR_ALIGN, STT_OBJECT))
  placed = plan_layout(note, DESCRIPTOR_ALIGN * len(kernels), len(text), symbols)
  rodata = bytearray()
  for i, k in enumerate(kernels):
    kd_addr = placed[".rodata"].addr + DESCRIPTOR_ALIGN * i
    entry = placed[".text"].addr + code_at[i]
    rodata += dataclasses.replace(k.descriptor, kernel_code_entry_byte_offset=entry - kd_addr).to_bytes()
  return write_shared_object(e_flags(proc), note, bytes(rodata), bytes(text), symbols)


def check_kernel(k: Kernel) -> None:
  meta, kd = k.metadata, k.descriptor
  if meta.symbol != f"{k.name}.kd":
    raise CodeObjectError(f"kernel {k.name}: metadata .symbol is {meta.symbol!r}, the descriptor symbol must be "
                          f"{k.name + '.kd'!r}")
  if not k.code or len(k.code) % 4:
    raise CodeObjectError(f"kernel {k.name}: code of {len(k.code)} bytes; instructions are whole dwords")
  for what, in_meta, in_kd in (("kernarg size", meta.kernarg_segment_size, kd.kernarg_size),
                               ("group segment size", meta.group_segment_fixed_size, kd.group_segment_fixed_size),
                               ("private segment size", meta.private_segment_fixed_size,
                                kd.private_segment_fixed_size)):
    if in_meta != in_kd:
      raise CodeObjectError(f"kernel {k.name}: {what} is {in_meta} in the metadata but {in_kd} in the descriptor")


# ---- loader ----------------------------------------------------------------------------------------------------------

def load_code_object(source, name: str | None = None) -> CodeObject:
  """Load a code object v4-v6 ELF (ours, or ld.lld's) from a path or bytes.

  Args:
    source: a file path (str / os.PathLike) or the file's bytes.
    name: what error messages call the file (default: the path, or "<bytes>").
  Raises:
    CodeObjectError: not an ELF, not AMDGPU / HSA, a relocatable object, an unsupported processor, no or bad metadata
      note, a kernel whose .kd symbol or code is missing, or a bad descriptor; the message starts with the file name.
  """
  if isinstance(source, (str, os.PathLike)):
    name = name or os.fspath(source)
    with open(source, "rb") as f:
      data = f.read()
  else:
    data = bytes(source)
    name = name or "<bytes>"
  try:
    return Loader(data, name).load()
  except (CodeObjectFormatError, MetadataError, DescriptorError, msgpack.MsgpackError) as e:
    raise CodeObjectError(f"{name}: {e}") from None


class Loader:
  """One load: checks the ELF header by hand (pyelftools misnames OSABI 64 as ARM_AEABI), reads sections, symbols and
  notes with pyelftools, decodes the msgpack note and each kernel's descriptor."""

  def __init__(self, data: bytes, name: str):
    self.data, self.name = data, name

  def fail(self, message: str) -> CodeObjectError:
    return CodeObjectError(f"{self.name}: {message}")

  def load(self) -> CodeObject:
    abi = self.check_header()
    try:
      elf = ELFFile(io.BytesIO(self.data))
      flags = elf.header["e_flags"]
      segments = [s.header for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
      sections = list(elf.iter_sections())
      doc = self.read_metadata(sections)
      symbols = self.read_symbols(sections)
      relocations = self.read_relocations(sections)
    except (ELFError, OverflowError, struct.error, UnicodeDecodeError) as e:   # pyelftools on corrupt offsets / names
      raise self.fail(f"malformed ELF ({e}); the file may be truncated or corrupt ({len(self.data)} bytes)") from None
    proc, xnack, sramecc = decode_e_flags(flags)
    version, target, metas = parse_document(doc, self.name)
    expected = target_id(proc, xnack, sramecc)
    if target != expected:
      raise self.fail(f"metadata amdhsa.target {target!r} does not match e_flags {flags:#x} ({expected})")
    image = self.image(segments)
    kernels = tuple(self.kernel(meta, symbols, image, proc.generation) for meta in metas)
    return CodeObject(self.name, proc.name, proc.isa, proc.generation, target, ABI_VERSIONS[abi], xnack, sramecc,
                      doc, kernels, image, relocations)

  def check_header(self) -> int:
    head = self.data[:64]
    if head[:4] != b"\x7fELF"[:len(head)] or not head:
      raise self.fail(f"not an ELF file (starts with {head[:4].hex() or 'nothing'}, {len(self.data)} bytes)")
    if len(head) < 64:
      raise self.fail(f"truncated: {len(self.data)} bytes, shorter than the 64-byte ELF header")
    if head[4] != 2 or head[5] != 1:
      raise self.fail(f"not a 64-bit little-endian ELF (EI_CLASS {head[4]}, EI_DATA {head[5]}); AMDGPU code objects "
                      "are ELF64 LSB")
    e_type, e_machine = struct.unpack_from("<HH", head, 16)
    if e_machine != EM_AMDGPU:
      raise self.fail(f"e_machine is {e_machine}, not EM_AMDGPU ({EM_AMDGPU}): not an AMD GPU code object")
    if head[7] != ELFOSABI_AMDGPU_HSA:
      raise self.fail(f"OS ABI is {OSABI_NAMES.get(head[7], head[7])}, not ELFOSABI_AMDGPU_HSA (64): only HSA code "
                      "objects are loaded")
    if head[8] not in ABI_VERSIONS:
      raise self.fail(f"ABI version {head[8]} is not code object v4-v6 (ELFABIVERSION_AMDGPU_HSA_V4..V6 = 2..4)")
    phoff, shoff = struct.unpack_from("<QQ", head, 32)
    phnum, shnum = struct.unpack_from("<H", head, 56)[0], struct.unpack_from("<H", head, 60)[0]
    for what, offset, count, size in (("program", phoff, phnum, 56), ("section", shoff, shnum, 64)):
      if offset + count * size > len(self.data):
        raise self.fail(f"truncated: {count} {what} headers at {offset:#x} end past the file's {len(self.data):#x} "
                        "bytes")
    if e_type == 1:
      raise self.fail("a relocatable object (ET_REL): link it into a shared object first (ld.lld-19 -shared)")
    if e_type != 3:
      raise self.fail(f"e_type is {e_type}, not ET_DYN (3): code objects are shared objects")
    return head[8]

  def read_metadata(self, sections: list) -> dict:
    docs = []
    for sec in sections:
      if sec["sh_type"] != "SHT_NOTE":
        continue
      for note in sec.iter_notes():
        if note["n_name"] == NOTE_NAME and note["n_type"] == NT_AMDGPU_METADATA:
          docs.append(msgpack.unpack(note["n_desc"]))
    if len(docs) != 1:
      raise self.fail(f"{len(docs)} NT_AMDGPU_METADATA notes (owner {NOTE_NAME!r}, type {NT_AMDGPU_METADATA}); "
                      "a code object v3+ has exactly one")
    return docs[0]

  def read_symbols(self, sections: list) -> dict:
    """name -> (value, size, STT type) from .symtab, else .dynsym."""
    tables = [s for s in sections if s["sh_type"] == "SHT_SYMTAB"] or \
             [s for s in sections if s["sh_type"] == "SHT_DYNSYM"]
    out = {}
    for table in tables:
      for sym in table.iter_symbols():
        if sym.name and sym["st_shndx"] != "SHN_UNDEF":
          out[sym.name] = (sym["st_value"], sym["st_size"], sym["st_info"]["type"])
    return out

  def read_relocations(self, sections: list) -> tuple:
    """Dynamic relocations as (image offset, value - load base): R_AMDGPU_RELATIVE64 (base + addend) and
    R_AMDGPU_ABS64 against a symbol this object defines (base + symbol + addend), what ld.lld-19 emits for pointers
    in global data."""
    out = []
    for sec in sections:
      if sec["sh_type"] not in ("SHT_RELA", "SHT_REL") or not sec["sh_flags"] & SHF_ALLOC:
        continue
      symtab = sections[sec["sh_link"]] if 0 < sec["sh_link"] < len(sections) else None
      for rel in sec.iter_relocations():
        kind, offset = rel["r_info_type"], rel["r_offset"]
        addend = rel["r_addend"] if rel.is_RELA() else struct.unpack_from("<q", self.data, offset)[0]
        if kind == R_AMDGPU_ABS64 and symtab is not None and rel["r_info_sym"] < symtab.num_symbols():
          sym = symtab.get_symbol(rel["r_info_sym"])
          if sym["st_shndx"] == "SHN_UNDEF":
            raise self.fail(f"relocation at {offset:#x} needs symbol {sym.name!r}, which this object does not define")
          addend += sym["st_value"]
        elif kind != R_AMDGPU_RELATIVE64:
          raise self.fail(f"dynamic relocation type {kind} at {offset:#x} in {sec.name}: only R_AMDGPU_RELATIVE64 "
                          "and R_AMDGPU_ABS64 are supported")
        out.append((offset, addend))
    return tuple(out)

  def image(self, segments: list) -> bytes:
    if not segments:
      raise self.fail("no PT_LOAD segments")
    for s in segments:
      if s["p_filesz"] > s["p_memsz"] or s["p_vaddr"] + s["p_memsz"] > MAX_IMAGE:
        raise self.fail(f"PT_LOAD at address {s['p_vaddr']:#x}: file size {s['p_filesz']:#x}, memory size "
                        f"{s['p_memsz']:#x}; a code object image ends below {MAX_IMAGE:#x} and no segment has more "
                        "file than memory bytes")
    out = bytearray(max(s["p_vaddr"] + s["p_memsz"] for s in segments))
    for s in segments:
      if s["p_offset"] + s["p_filesz"] > len(self.data):
        raise self.fail(f"PT_LOAD at file offset {s['p_offset']:#x} + {s['p_filesz']:#x} runs past the end of the "
                        f"file ({len(self.data):#x} bytes): truncated")
      out[s["p_vaddr"]:s["p_vaddr"] + s["p_filesz"]] = self.data[s["p_offset"]:s["p_offset"] + s["p_filesz"]]
    return bytes(out)

  def kernel(self, meta: KernelMeta, symbols: dict, image: bytes, generation: int) -> Kernel:
    where = f"kernel {meta.name!r}"
    if meta.symbol not in symbols:
      raise self.fail(f"{where}: descriptor symbol {meta.symbol!r} (metadata .symbol) is not in the symbol table")
    kd_addr, kd_size, kd_type = symbols[meta.symbol]
    if kd_addr + 64 > len(image) or kd_addr % DESCRIPTOR_ALIGN:
      raise self.fail(f"{where}: descriptor at {kd_addr:#x} is outside the loaded image ({len(image):#x} bytes) or "
                      f"not {DESCRIPTOR_ALIGN}-byte aligned")
    try:
      descriptor = KernelDescriptor.from_bytes(image[kd_addr:kd_addr + 64])
      descriptor.read_fields(generation)
    except DescriptorError as e:
      raise self.fail(f"{where}: {e}") from None
    entry = kd_addr + descriptor.kernel_code_entry_byte_offset
    if not 0 <= entry < len(image) or entry % ENTRY_ALIGN:
      raise self.fail(f"{where}: entry {entry:#x} (descriptor {kd_addr:#x} + kernel_code_entry_byte_offset "
                      f"{descriptor.kernel_code_entry_byte_offset:#x}) is outside the image or not "
                      f"{ENTRY_ALIGN}-byte aligned")
    funcs = {value: size for value, size, kind in symbols.values() if kind == "STT_FUNC"}
    if entry not in funcs:
      raise self.fail(f"{where}: no function symbol at the entry {entry:#x}")
    # a symbol without .size runs to the next function or the end of the image
    end = entry + funcs[entry] if funcs[entry] else min([a for a in funcs if a > entry] + [len(image)])
    code = image[entry:end]
    return Kernel(meta.name, code, descriptor, meta, kd_addr, entry)


# ---- kernel arguments ------------------------------------------------------------------------------------------------

def kernarg_bytes(value, size: int, name: str) -> bytes:
  """One argument's bytes: ints (pointers, integers; two's complement), floats (f32 or f64 by size), numpy values or
  bytes of exactly `size`.

  Raises:
    ValueError: a value of another type, or one whose bytes are not `size` long."""
  if isinstance(value, (bytes, bytearray)):
    data = bytes(value)
  elif isinstance(value, (np.generic, np.ndarray)):
    data = np.asarray(value).tobytes()
  elif isinstance(value, float):
    data = struct.pack("<f" if size == 4 else "<d", value) if size in (4, 8) else b""
  elif isinstance(value, (int, np.integer)):
    data = (int(value) & ((1 << 8 * size) - 1)).to_bytes(size, "little")
  else:
    raise ValueError(f"kernel argument {name}: cannot pass {type(value).__name__} (use int, float, bytes or numpy)")
  if len(data) != size:
    raise ValueError(f"kernel argument {name} takes {size} bytes, got {len(data)}")
  return data


def kernarg_segment(kernel: Kernel, args, grid: tuple, block: tuple, dynamic_lds: int = 0) -> bytes:
  """The kernarg segment of a dispatch: the explicit arguments in metadata order from `args`, then the hidden code
  object v5 arguments the metadata asks for (block counts, group sizes, grid dims, dynamic LDS size).

  Raises:
    ValueError: the wrong number of arguments, or a value that does not fit its slot."""
  seg = bytearray(max(kernel.kernarg_size, 16))
  explicit = [a for a in kernel.args if not a.value_kind.startswith("hidden_")]
  if len(args) != len(explicit):
    names = ", ".join(a.name or a.value_kind for a in explicit)
    raise ValueError(f"kernel {kernel.name} takes {len(explicit)} arguments ({names}), got {len(args)}")
  for a, value in zip(explicit, args):
    seg[a.offset:a.offset + a.size] = kernarg_bytes(value, a.size, a.name or str(a.offset))
  hidden = {"hidden_block_count_x": grid[0], "hidden_block_count_y": grid[1], "hidden_block_count_z": grid[2],
            "hidden_group_size_x": block[0], "hidden_group_size_y": block[1], "hidden_group_size_z": block[2],
            "hidden_grid_dims": 1 + (grid[1] * block[1] > 1 or grid[2] * block[2] > 1) + (grid[2] * block[2] > 1),
            "hidden_dynamic_lds_size": dynamic_lds}
  for a in kernel.args:
    if a.value_kind in hidden:
      seg[a.offset:a.offset + a.size] = kernarg_bytes(hidden[a.value_kind], a.size, a.value_kind)
  return bytes(seg)
