"""ELF side of AMDGPU code objects: processor <-> e_flags, target IDs, and a writer for the shared object layout.

Facts, llvm-19-dev /usr/include/llvm-19/llvm/BinaryFormat/ELF.h (LLVM 19.1.7): EM_AMDGPU = 224,
ELFOSABI_AMDGPU_HSA = 64 (PAL 65, MESA3D 66), ELFABIVERSION_AMDGPU_HSA_V4/V5/V6 = 2/3/4, EF_AMDGPU_MACH (mask 0xff)
and its EF_AMDGPU_MACH_AMDGCN_* values, EF_AMDGPU_FEATURE_{XNACK,SRAMECC}_*_V4 (the v4+ feature encodings),
EF_AMDGPU_GENERIC_VERSION (0xff000000, v6), NT_AMDGPU_METADATA = 32. Target ID syntax: AMDGPUUsage.rst "Target ID"
(`amdgcn-amd-amdhsa--gfx90a:sramecc+:xnack-`, features in that order, `any` left out).

Layout the writer produces (compared with what ld.lld-19 -shared makes of llvm-mc-19's object; the ROCm loader maps
PT_LOAD segments and finds kernels by their dynamic symbols):
  segment  LOAD R   : ELF header, program headers, .note, .dynsym, .hash, .dynstr, .rodata (the 64-byte descriptors)
  segment  LOAD R X : .text (kernels 256-byte aligned)
  segment  LOAD R W : .dynamic (DT_HASH, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT)
  segment  DYNAMIC, NOTE over .dynamic and .note; then .symtab, .strtab, .shstrtab and the section headers.
Each segment starts on a new 4 KiB page of the address space at its file offset's page offset, as lld places them,
so p_vaddr = p_offset (mod p_align) holds and the file has no padding pages.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["CodeObjectError", "CodeObjectFormatError", "EM_AMDGPU", "ELFOSABI_AMDGPU_HSA", "NT_AMDGPU_METADATA",
           "ElfSymbol", "Processor", "PROCESSORS", "decode_e_flags", "e_flags", "processor", "target_id",
           "write_shared_object"]

EM_AMDGPU = 224
ELFOSABI_AMDGPU_HSA = 64
OSABI_NAMES = {0: "ELFOSABI_NONE (System V)", 3: "ELFOSABI_GNU", 64: "ELFOSABI_AMDGPU_HSA",
               65: "ELFOSABI_AMDGPU_PAL", 66: "ELFOSABI_AMDGPU_MESA3D"}
# ELFABIVERSION_AMDGPU_HSA_V<n> -> code object version n
ABI_VERSIONS = {2: 4, 3: 5, 4: 6}
ABI_VERSION_V5 = 3
NT_AMDGPU_METADATA = 32
NOTE_NAME = "AMDGPU"
EF_AMDGPU_MACH = 0x0FF
EF_AMDGPU_FEATURE_XNACK_V4 = 0x300
EF_AMDGPU_FEATURE_SRAMECC_V4 = 0xC00
EF_AMDGPU_GENERIC_VERSION = 0xFF000000
# EF_AMDGPU_FEATURE_XNACK_*_V4 / EF_AMDGPU_FEATURE_SRAMECC_*_V4
XNACK_V4 = {"unsupported": 0x000, "any": 0x100, "off": 0x200, "on": 0x300}
SRAMECC_V4 = {"unsupported": 0x000, "any": 0x400, "off": 0x800, "on": 0xC00}
TRIPLE = "amdgcn-amd-amdhsa"


@dataclass(frozen=True)
class Processor:
  name: str          # gfx1100
  mach: int          # EF_AMDGPU_MACH_AMDGCN_<NAME>
  generation: int    # 11 (RDNA3) or 12 (RDNA4): picks the instruction tables and descriptor fields
  isa: str           # compiler.rdna target whose tables decode its code


# EF_AMDGPU_MACH_AMDGCN_GFX11xx / GFX12xx. None of them has the xnack or sramecc feature (AMDGPUUsage processor
# table), so their feature bits are "unsupported" (0).
PROCESSORS = {p.name: p for p in (
  Processor("gfx1100", 0x041, 11, "gfx1100"), Processor("gfx1101", 0x046, 11, "gfx1100"),
  Processor("gfx1102", 0x047, 11, "gfx1100"), Processor("gfx1103", 0x044, 11, "gfx1100"),
  Processor("gfx1150", 0x043, 11, "gfx1100"), Processor("gfx1151", 0x04A, 11, "gfx1100"),
  Processor("gfx1152", 0x055, 11, "gfx1100"), Processor("gfx1200", 0x048, 12, "gfx1201"),
  Processor("gfx1201", 0x04E, 12, "gfx1201"),
)}
# names compiler.rdna accepts for its two targets
ALIASES = {"gfx11": "gfx1100", "rdna3": "gfx1100", "gfx12": "gfx1201", "rdna4": "gfx1201"}
# the other EF_AMDGPU_MACH_AMDGCN_* values, only to name them in errors
OTHER_MACHS = {
  0x020: "gfx600", 0x021: "gfx601", 0x022: "gfx700", 0x023: "gfx701", 0x024: "gfx702", 0x025: "gfx703",
  0x026: "gfx704", 0x028: "gfx801", 0x029: "gfx802", 0x02A: "gfx803", 0x02B: "gfx810", 0x02C: "gfx900",
  0x02D: "gfx902", 0x02E: "gfx904", 0x02F: "gfx906", 0x030: "gfx908", 0x031: "gfx909", 0x032: "gfx90c",
  0x033: "gfx1010", 0x034: "gfx1011", 0x035: "gfx1012", 0x036: "gfx1030", 0x037: "gfx1031", 0x038: "gfx1032",
  0x039: "gfx1033", 0x03A: "gfx602", 0x03B: "gfx705", 0x03C: "gfx805", 0x03D: "gfx1035", 0x03E: "gfx1034",
  0x03F: "gfx90a", 0x040: "gfx940", 0x042: "gfx1013", 0x045: "gfx1036", 0x04B: "gfx941", 0x04C: "gfx942",
  0x051: "gfx9-generic", 0x052: "gfx10-1-generic", 0x053: "gfx10-3-generic", 0x054: "gfx11-generic",
  0x059: "gfx12-generic",
}


class CodeObjectError(ValueError):
  """A code object that cannot be written or loaded; the loader's messages start with the file name."""


class CodeObjectFormatError(CodeObjectError):
  """e_flags or a processor name this package cannot place."""


def processor(name: str) -> Processor:
  """A gfx11/gfx12 processor by name (gfx1100 ... gfx1201, or compiler.rdna's gfx11 / rdna3 / gfx12 / rdna4).

  Raises:
    CodeObjectFormatError: any other name.
  """
  key = ALIASES.get(name.lower(), name.lower())
  if key not in PROCESSORS:
    raise CodeObjectFormatError(f"unknown or unsupported processor {name!r}; code objects are written and read for "
                                f"{', '.join(PROCESSORS)}")
  return PROCESSORS[key]


def e_flags(proc: Processor, xnack: str = "unsupported", sramecc: str = "unsupported") -> int:
  """EF_AMDGPU_MACH | XNACK_V4 | SRAMECC_V4 bits of a code object v4+ for the processor.

  Raises:
    CodeObjectFormatError: a feature setting other than unsupported/any/off/on, or one the processor lacks.
  """
  for feature, value, table in (("xnack", xnack, XNACK_V4), ("sramecc", sramecc, SRAMECC_V4)):
    if value not in table:
      raise CodeObjectFormatError(f"{feature} must be one of {', '.join(table)}, not {value!r}")
    if value != "unsupported":
      raise CodeObjectFormatError(f"{proc.name} has no {feature} feature: its e_flags say {feature} unsupported")
  return proc.mach | XNACK_V4[xnack] | SRAMECC_V4[sramecc]


def decode_e_flags(flags: int) -> tuple:
  """e_flags of a v4+ code object -> (Processor, xnack setting, sramecc setting).

  Raises:
    CodeObjectFormatError: a machine that is not gfx11/gfx12 (named when LLVM 19 knows it), unknown bits, or a
      feature setting the processor cannot have.
  """
  mach = flags & EF_AMDGPU_MACH
  if mach not in {p.mach for p in PROCESSORS.values()}:
    name = OTHER_MACHS.get(mach, "unknown to LLVM 19")
    raise CodeObjectFormatError(f"e_flags {flags:#x}: machine {mach:#04x} ({name}) is not a gfx11/gfx12 processor "
                                f"({', '.join(PROCESSORS)})")
  proc = next(p for p in PROCESSORS.values() if p.mach == mach)
  known = EF_AMDGPU_MACH | EF_AMDGPU_FEATURE_XNACK_V4 | EF_AMDGPU_FEATURE_SRAMECC_V4
  if flags & ~known:
    raise CodeObjectFormatError(f"e_flags {flags:#x} has bits {flags & ~known:#x} outside EF_AMDGPU_MACH and the v4+ "
                                "xnack/sramecc fields (EF_AMDGPU_GENERIC_VERSION belongs to generic targets only)")
  xnack = {v: k for k, v in XNACK_V4.items()}[flags & EF_AMDGPU_FEATURE_XNACK_V4]
  sramecc = {v: k for k, v in SRAMECC_V4.items()}[flags & EF_AMDGPU_FEATURE_SRAMECC_V4]
  for feature, value in (("xnack", xnack), ("sramecc", sramecc)):
    if value != "unsupported":
      raise CodeObjectFormatError(f"e_flags {flags:#x} set {feature} {value}, but {proc.name} has no {feature} feature")
  return proc, xnack, sramecc


def target_id(proc: Processor, xnack: str = "unsupported", sramecc: str = "unsupported") -> str:
  """amdhsa.target: `amdgcn-amd-amdhsa--<processor>[:sramecc+|-][:xnack+|-]`."""
  text = f"{TRIPLE}--{proc.name}"
  for feature, value in (("sramecc", sramecc), ("xnack", xnack)):
    if value in ("on", "off"):
      text += f":{feature}{'+' if value == 'on' else '-'}"
  return text


# ---- writer ----------------------------------------------------------------------------------------------------------
# ELF constants (ELF.h; System V gABI)
ET_DYN = 3
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_HASH, SHT_DYNAMIC, SHT_NOTE, SHT_DYNSYM = 1, 2, 3, 5, 6, 7, 11
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
PT_LOAD, PT_DYNAMIC, PT_NOTE = 1, 2, 4
PF_X, PF_W, PF_R = 1, 2, 4
DT_NULL, DT_HASH, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT = 0, 4, 5, 6, 10, 11
STB_GLOBAL = 1
STT_OBJECT, STT_FUNC = 1, 2
STV_DEFAULT, STV_PROTECTED = 0, 3
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
SYM = struct.Struct("<IBBHQQ")
DYN = struct.Struct("<qQ")
PAGE = 0x1000
NUM_PHDRS = 5


@dataclass(frozen=True)
class ElfSymbol:
  """A global symbol: offset within its section (.text or .rodata), size, STT_* type and STV_* visibility."""
  name: str
  section: str
  offset: int
  size: int
  type: int
  visibility: int = STV_DEFAULT


@dataclass(frozen=True)
class Placed:
  name: str
  type: int
  flags: int
  offset: int
  addr: int
  size: int
  align: int
  entsize: int = 0


def align_up(x: int, a: int) -> int:
  return (x + a - 1) // a * a


def note_record(name: str, note_type: int, desc: bytes) -> bytes:
  """One ELF note: namesz, descsz, type, then name and desc each padded to 4 bytes."""
  raw_name = name.encode() + b"\0"
  head = struct.pack("<III", len(raw_name), len(desc), note_type)
  return head + raw_name.ljust(align_up(len(raw_name), 4), b"\0") + desc.ljust(align_up(len(desc), 4), b"\0")


def sysv_hash(name: bytes) -> int:
  """The System V gABI ELF hash of a symbol name (DT_HASH buckets)."""
  h = 0
  for c in name:
    h = ((h << 4) + c) & 0xFFFFFFFF
    g = h & 0xF0000000
    if g:
      h ^= g >> 24
    h &= ~g & 0xFFFFFFFF
  return h


def hash_table(names: list) -> bytes:
  """DT_HASH: nbucket, nchain, buckets, chains over the dynamic symbols (index 0 is the null symbol)."""
  count = len(names) + 1
  buckets, chains = [0] * count, [0] * count
  for index, name in enumerate(names, start=1):
    b = sysv_hash(name.encode()) % count
    chains[index] = buckets[b]
    buckets[b] = index
  return struct.pack(f"<{2 + 2 * count}I", count, count, *buckets, *chains)


def string_table(names: list) -> tuple:
  """(bytes, {name: offset}) with the empty string at 0."""
  out, offsets = bytearray(b"\0"), {}
  for name in names:
    if name not in offsets:
      offsets[name] = len(out)
      out += name.encode() + b"\0"
  return bytes(out), offsets


def plan_layout(note: bytes, rodata_size: int, text_size: int, symbols: list) -> dict:
  """Offsets and addresses of the allocated sections: name -> Placed. Only sizes matter, so a caller may plan first
  (to learn where .text and .rodata land), fill in its bytes, then write."""
  names = [sym.name for sym in symbols]
  dynstr, _ = string_table(names)
  rows = ((".note", SHT_NOTE, SHF_ALLOC, len(note), 4, 0),
          (".dynsym", SHT_DYNSYM, SHF_ALLOC, SYM.size * (len(symbols) + 1), 8, SYM.size),
          (".hash", SHT_HASH, SHF_ALLOC, len(hash_table(names)), 4, 4),
          (".dynstr", SHT_STRTAB, SHF_ALLOC, len(dynstr), 1, 0),
          (".rodata", SHT_PROGBITS, SHF_ALLOC, rodata_size, 64, 0),
          (".text", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, text_size, 256, 0),
          (".dynamic", SHT_DYNAMIC, SHF_ALLOC | SHF_WRITE, DYN.size * 6, 8, DYN.size))
  offset = EHDR.size + PHDR.size * NUM_PHDRS
  placed, addr, segment_flags = {}, offset, SHF_ALLOC   # the first segment maps the file from offset 0 at address 0
  for name, sh_type, flags, size, align, entsize in rows:
    offset = align_up(offset, align)
    if flags != segment_flags:   # a new PT_LOAD: next page of the address space, same offset within the page
      addr = align_up(addr, PAGE) + offset % PAGE
      segment_flags = flags
    else:
      addr = align_up(addr, align)
    placed[name] = Placed(name, sh_type, flags, offset, addr, size, align, entsize)
    offset += size
    addr += size
  return placed


def write_shared_object(flags: int, note: bytes, rodata: bytes, text: bytes, symbols: list,
                        abi_version: int = ABI_VERSION_V5) -> bytes:
  """The ET_DYN code object around these section contents.

  Args:
    flags: e_flags (see e_flags()).
    note: the .note section's records (note_record()).
    symbols: ElfSymbol list; offsets are within .text / .rodata.
  """
  placed = plan_layout(note, len(rodata), len(text), symbols)
  names = [sym.name for sym in symbols]
  dynstr, name_at = string_table(names)
  index = {name: i for i, name in enumerate(placed, start=1)}
  symtab = bytearray(SYM.size)
  for sym in symbols:
    section = placed[sym.section]
    symtab += SYM.pack(name_at[sym.name], STB_GLOBAL << 4 | sym.type, sym.visibility, index[sym.section],
                       section.addr + sym.offset, sym.size)
  dynamic = b"".join(DYN.pack(tag, value) for tag, value in (
    (DT_HASH, placed[".hash"].addr), (DT_STRTAB, placed[".dynstr"].addr), (DT_SYMTAB, placed[".dynsym"].addr),
    (DT_STRSZ, len(dynstr)), (DT_SYMENT, SYM.size), (DT_NULL, 0)))
  contents = {".note": note, ".dynsym": bytes(symtab), ".hash": hash_table(names), ".dynstr": dynstr,
              ".rodata": rodata, ".text": text, ".dynamic": dynamic}
  out = bytearray(placed[".dynamic"].offset + placed[".dynamic"].size)
  for name, section in placed.items():
    assert len(contents[name]) == section.size, name
    out[section.offset:section.offset + section.size] = contents[name]
  # non-allocated sections: .symtab (the same globals), .strtab, .shstrtab
  extra = [(".symtab", SHT_SYMTAB, bytes(symtab), 8, SYM.size), (".strtab", SHT_STRTAB, dynstr, 1, 0)]
  shstrtab, sh_name = string_table(list(placed) + [name for name, *_ in extra] + [".shstrtab"])
  extra.append((".shstrtab", SHT_STRTAB, shstrtab, 1, 0))
  for name, sh_type, data, align, entsize in extra:
    out += bytes(align_up(len(out), align) - len(out))
    placed[name] = Placed(name, sh_type, 0, len(out), 0, len(data), align, entsize)
    out += data
  index = {name: i for i, name in enumerate(placed, start=1)}
  links = {".dynsym": (index[".dynstr"], 1), ".hash": (index[".dynsym"], 0), ".dynamic": (index[".dynstr"], 0),
           ".symtab": (index[".strtab"], 1)}   # (sh_link, sh_info = index of the first global symbol)
  out += bytes(align_up(len(out), 8) - len(out))
  shoff = len(out)
  out += bytes(SHDR.size)
  for name, sec in placed.items():
    link, info = links.get(name, (0, 0))
    out += SHDR.pack(sh_name[name], sec.type, sec.flags, sec.addr, sec.offset, sec.size, link, info, sec.align,
                     sec.entsize)
  ident = b"\x7fELF" + bytes([2, 1, 1, ELFOSABI_AMDGPU_HSA, abi_version]) + bytes(7)
  out[:EHDR.size] = EHDR.pack(ident, ET_DYN, EM_AMDGPU, 1, 0, EHDR.size, shoff, flags, EHDR.size, PHDR.size,
                              NUM_PHDRS, SHDR.size, len(placed) + 1, index[".shstrtab"])
  out[EHDR.size:EHDR.size + PHDR.size * NUM_PHDRS] = program_headers(placed)
  return bytes(out)


def program_headers(placed: dict) -> bytes:
  def span(first: str, last: str, p_type: int, p_flags: int, align: int, from_zero: bool = False) -> bytes:
    start = 0 if from_zero else placed[first].offset
    vaddr = 0 if from_zero else placed[first].addr
    size = placed[last].offset + placed[last].size - start
    return PHDR.pack(p_type, p_flags, start, vaddr, vaddr, size, size, align)
  return (span(".note", ".rodata", PT_LOAD, PF_R, PAGE, from_zero=True)
          + span(".text", ".text", PT_LOAD, PF_R | PF_X, PAGE)
          + span(".dynamic", ".dynamic", PT_LOAD, PF_R | PF_W, PAGE)
          + span(".dynamic", ".dynamic", PT_DYNAMIC, PF_R | PF_W, 8)
          + span(".note", ".note", PT_NOTE, PF_R, 4))
