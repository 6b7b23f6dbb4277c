"""Parse a CUDA cubin (ELF64, EM_CUDA = 190) into what a loader needs to launch each kernel; apply its relocations.

What is read, per kernel `k` (an STT_FUNC symbol with STO_CUDA_ENTRY set in st_other):
  .text.k            SASS bytes; sh_flags bits 26:20 = barrier count (12.x toolkits); sh_info = kernel symbol index
  .nv.info           module records keyed by symbol: EIATTR_REGCOUNT, FRAME_SIZE, MIN_STACK_SIZE, MAX_STACK_SIZE
  .nv.info.k         kernel records: KPARAM_INFO, PARAM_CBANK, CBANK_PARAM_SIZE, MAX_THREADS, REQNTID, CRS_STACK_SIZE,
                     EXIT_INSTR_OFFSETS, CUDA_API_VERSION, NUM_BARRIERS (13.x), cluster records, ...
  .nv.shared.k       NOBITS; size = static shared memory the launch must reserve, incl. the sm_90 system 1 KB
  .nv.constant0.k    constant bank 0: driver area (params start at 0x210 on sm_90) + parameters
  .rela.text.k       relocations inside the code (relocatable `ptxas -c` output; whole-program cubins have none)
and per module: .nv.constant<N> (N != 0: `.const` data in bank 3, global-variable addresses in bank 4), .nv.global
(NOBITS) and .nv.global.init (initialised `.global` data), and their .rela.* sections.

How each fact was established (ptxas 12.9.86 from nvidia-cuda-nvcc-cu12 and ptxas 13.0.88 from the CUDA 13.0
toolkit, both -arch=sm_90, cross-checked with cuobjdump 13.5.37 and nvdisasm 13.5.37 from the pip wheels; no NVIDIA
header defines any of this):
  * .nv.info record: u8 format, u8 attribute, then EIFMT_SVAL(4): u16 size + payload; EIFMT_HVAL(3): u16 value;
    EIFMT_BVAL(2): u8 value + pad; EIFMT_NVAL(1): u16 0. Attribute codes: EIATTR_NAMES below, by matching every raw
    record of 14 test kernels (whole-program and -c) with the names `cuobjdump -elf` prints, in order.
  * Register count: EIATTR_REGCOUNT (= `ptxas -v` "Used N registers"). The .text section header byte cuobjdump
    prints as "reg =" (sh_info bits 31:24; shown by patching it) is 0 in both toolkits' output, so it is only a
    fallback. Barriers: "bar =" / nvdisasm SHF_BARRIERS read sh_flags bits 26:20 (also shown by patching); 13.0
    leaves them 0 and emits EIATTR_NUM_BARRIERS instead.
  * Shared memory: .nv.shared.k size = `cuobjdump -res-usage` SHARED = `ptxas -v` "N bytes smem" + 0x400; the SASS
    addresses the first user byte at 0x400 (`UMOV UR4, 0x400`). Kernels of a module without `.shared` data have no
    such section (0). So on sm_90 the launch reserves the section size; the user part is size - 0x400. In a
    relocatable cubin (`ptxas -c`, ET_REL) the section holds only the PTX's own bytes; the reserve comes at link time.
  * KPARAM_INFO payload: u32 index, u16 ordinal, u16 offset, u32 whose bits 31:18 are the size (sizes 1, 4, 8, 0x30
    compared with cuobjdump's "Size"); bits 17:0 (log alignment, space, cbank in cuobjdump's words) are kept raw.
    PARAM_CBANK: u32 symbol of .nv.constant0.k, u16 offset (0x210), u16 size. REGCOUNT/FRAME_SIZE/MIN_STACK_SIZE/
    MAX_STACK_SIZE: u32 symbol, u32 value. MAX_THREADS/REQNTID/CTA_PER_CLUSTER: 3 x u32.
  * Frame size = `ptxas -v` "N bytes stack frame"; MIN_STACK_SIZE = "N bytes cumulative stack size" = res-usage STACK.
  * e_flags: EI_ABIVERSION 7 (12.x) puts the SM in bits 7:0, ABI 8 (13.x) in bits 15:8 (cuobjdump "sm=").
  * Relocation type names from cuobjdump -elf; placement of R_CUDA_ABS32_*_32 (a u32 at bit 32 of the 128-bit
    instruction) shown by patching and decoding with `nvdisasm -b SM90` (`UMOV UR4, 0x55667788`).
Unknown attributes are kept raw under `unk_0x..`, never guessed.
"""
from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

EM_CUDA = 190
SHT_CUDA_INFO = 0x70000000  # .nv.info* (cuobjdump: CUDA_INFO)
STO_CUDA_ENTRY = 0x10  # st_other bit of kernel entry symbols (cuobjdump's ENTRY column)
SM90_RESERVED_SHARED = 0x400  # system shared memory at the start of each CTA's window on sm_90 (see docstring)

EIFMT_NVAL, EIFMT_BVAL, EIFMT_HVAL, EIFMT_SVAL = 1, 2, 3, 4
EIFMT_NAMES = {EIFMT_NVAL: "EIFMT_NVAL", EIFMT_BVAL: "EIFMT_BVAL", EIFMT_HVAL: "EIFMT_HVAL", EIFMT_SVAL: "EIFMT_SVAL"}

# .nv.info attribute codes, established with ptxas 12.9.86 / 13.0.88 and `cuobjdump -elf` 13.5.37 (module docstring)
EIATTR_MAX_THREADS = 0x05
EIATTR_PARAM_CBANK = 0x0A
EIATTR_EXTERNS = 0x0F
EIATTR_REQNTID = 0x10
EIATTR_FRAME_SIZE = 0x11
EIATTR_MIN_STACK_SIZE = 0x12
EIATTR_KPARAM_INFO = 0x17
EIATTR_CBANK_PARAM_SIZE = 0x19
EIATTR_MAXREG_COUNT = 0x1B
EIATTR_EXIT_INSTR_OFFSETS = 0x1C
EIATTR_CRS_STACK_SIZE = 0x1E
EIATTR_MAX_STACK_SIZE = 0x23
EIATTR_COOP_GROUP_INSTR_OFFSETS = 0x28
EIATTR_COOP_GROUP_MASK_REGIDS = 0x29
EIATTR_REGCOUNT = 0x2F
EIATTR_INT_WARP_WIDE_INSTR_OFFSETS = 0x31
EIATTR_SW_WAR = 0x36
EIATTR_CUDA_API_VERSION = 0x37
EIATTR_CTA_PER_CLUSTER = 0x3D
EIATTR_EXPLICIT_CLUSTER = 0x3E
EIATTR_MAX_CLUSTER_RANK = 0x3F
EIATTR_NUM_BARRIERS = 0x4C
EIATTR_SPARSE_MMA_MASK = 0x50
EIATTR_NAMES = {
  EIATTR_MAX_THREADS: "EIATTR_MAX_THREADS", EIATTR_PARAM_CBANK: "EIATTR_PARAM_CBANK", EIATTR_EXTERNS: "EIATTR_EXTERNS",
  EIATTR_REQNTID: "EIATTR_REQNTID", EIATTR_FRAME_SIZE: "EIATTR_FRAME_SIZE",
  EIATTR_MIN_STACK_SIZE: "EIATTR_MIN_STACK_SIZE", EIATTR_KPARAM_INFO: "EIATTR_KPARAM_INFO",
  EIATTR_CBANK_PARAM_SIZE: "EIATTR_CBANK_PARAM_SIZE", EIATTR_MAXREG_COUNT: "EIATTR_MAXREG_COUNT",
  EIATTR_EXIT_INSTR_OFFSETS: "EIATTR_EXIT_INSTR_OFFSETS", EIATTR_CRS_STACK_SIZE: "EIATTR_CRS_STACK_SIZE",
  EIATTR_MAX_STACK_SIZE: "EIATTR_MAX_STACK_SIZE", EIATTR_COOP_GROUP_INSTR_OFFSETS: "EIATTR_COOP_GROUP_INSTR_OFFSETS",
  EIATTR_COOP_GROUP_MASK_REGIDS: "EIATTR_COOP_GROUP_MASK_REGIDS", EIATTR_REGCOUNT: "EIATTR_REGCOUNT",
  EIATTR_INT_WARP_WIDE_INSTR_OFFSETS: "EIATTR_INT_WARP_WIDE_INSTR_OFFSETS", EIATTR_SW_WAR: "EIATTR_SW_WAR",
  EIATTR_CUDA_API_VERSION: "EIATTR_CUDA_API_VERSION", EIATTR_CTA_PER_CLUSTER: "EIATTR_CTA_PER_CLUSTER",
  EIATTR_EXPLICIT_CLUSTER: "EIATTR_EXPLICIT_CLUSTER", EIATTR_MAX_CLUSTER_RANK: "EIATTR_MAX_CLUSTER_RANK",
  EIATTR_NUM_BARRIERS: "EIATTR_NUM_BARRIERS", EIATTR_SPARSE_MMA_MASK: "EIATTR_SPARSE_MMA_MASK",
}
# .nv.compat records (13.x toolkits only), same record format and the same way of establishing them
EICOMPAT_NAMES = {0x02: "EICOMPAT_ATTR_ISA_CLASS", 0x03: "EICOMPAT_ATTR_INST_TENSORMAP_V1",
                  0x05: "EICOMPAT_ATTR_INST_TCGEN05_MMA", 0x06: "EICOMPAT_ATTR_ENABLE_OPPORTUNISTIC_FINALIZATION",
                  0x09: "EICOMPAT_ATTR_CUDA_ACCELERATOR_TARGET", 0x0B: "EICOMPAT_ATTR_CAN_FASTPATH_FINALIZE"}

# relocation types (names as cuobjdump -elf 13.5.37 prints them)
R_CUDA_64 = 2  # u64 S+A at the offset (global-variable addresses in .nv.constant4)
R_CUDA_G64 = 4  # u64 generic address S+A (pointers inside .nv.global.init)
R_CUDA_ABS32_32 = 55  # u32 S+A at bit 32 of the instruction
R_CUDA_ABS32_LO_32 = 56  # u32 (S+A) & 0xffffffff at bit 32 of the instruction
R_CUDA_ABS32_HI_32 = 57  # u32 (S+A) >> 32 at bit 32 of the instruction
# (56 is LO: cuobjdump 13.5.37 -elf names the type-56 entry of a `ptxas -c` div.rn.f32 kernel R_CUDA_ABS32_LO_32, and
# nvdisasm shows it on `MOV R20, 32@lo(...)`, the low half of the return address that the slow path's RET.ABS R20
# jumps to; with the two swapped, that return lands at a garbage address: Xid 13 on the H100)
R_CUDA_ABS16_32 = 59
R_CUDA_UNUSED_CLEAR64 = 73
R_CUDA_ABS55_16_34 = 75
R_CUDA_NAMES = {R_CUDA_64: "R_CUDA_64", R_CUDA_G64: "R_CUDA_G64", R_CUDA_ABS32_32: "R_CUDA_ABS32_32",
                R_CUDA_ABS32_HI_32: "R_CUDA_ABS32_HI_32", R_CUDA_ABS32_LO_32: "R_CUDA_ABS32_LO_32",
                R_CUDA_ABS16_32: "R_CUDA_ABS16_32", R_CUDA_UNUSED_CLEAR64: "R_CUDA_UNUSED_CLEAR64",
                R_CUDA_ABS55_16_34: "R_CUDA_ABS55_16_34"}
# type -> (bytes patched at r_offset, ((bit position, width, value shift), ...)): each field of the little-endian
# word at r_offset gets bits [shift, shift + width) of S+A. LO/HI_32 take their half of any address; for the other
# types S+A must fit the fields whole (below 2**(top bit), a multiple of 2**(lowest shift))
RELOC_FIELDS = {
  R_CUDA_64: (8, ((0, 64, 0),)),
  R_CUDA_G64: (8, ((0, 64, 0),)),  # assumes generic == global VA for .global data (verify on hardware)
  R_CUDA_ABS32_32: (8, ((32, 32, 0),)),
  R_CUDA_ABS32_LO_32: (8, ((32, 32, 0),)),
  R_CUDA_ABS32_HI_32: (8, ((32, 32, 32),)),
  # CALL.ABS target: address bits 9:2 at instruction bits 23:16, bits 56:10 at bits 80:34 (shown by setting each
  # instruction bit of a `ptxas -c` CALL.ABS.NOINC and decoding with nvdisasm 13.5.37: bit 16 -> 0x4, bit 34 -> 0x400)
  R_CUDA_ABS55_16_34: (16, ((16, 8, 2), (34, 47, 10))),
}


class CubinError(ValueError):
  """The bytes are not a CUDA cubin this parser understands; the message says what was found and where."""


class KernelNotFound(LookupError):
  """No kernel of that name; the message lists the kernels the cubin has."""


@dataclass(frozen=True)
class NvInfoAttr:
  """One .nv.info record. `value`: int for HVAL/BVAL, payload bytes for SVAL, None for NVAL."""
  code: int
  name: str  # EIATTR_* / EICOMPAT_* or unk_0x..
  fmt: int
  value: int | bytes | None

  def u32s(self) -> tuple[int, ...]:
    """The SVAL payload as little-endian u32 words."""
    if not isinstance(self.value, bytes) or len(self.value) % 4:
      raise CubinError(f"{self.name}: payload {self.value!r} is not a whole number of u32 words")
    return struct.unpack(f"<{len(self.value) // 4}I", self.value)


@dataclass(frozen=True)
class KernelParam:
  ordinal: int  # position in the PTX parameter list
  offset: int  # byte offset from the start of the parameter area (constant bank 0 + Kernel.param_base)
  size: int  # bytes
  info_bits: int  # KPARAM_INFO word bits 17:0, undecoded


@dataclass(frozen=True)
class Relocation:
  section: str  # the section whose bytes are patched
  offset: int  # byte offset in that section
  type: int  # R_CUDA_*
  symbol: str
  addend: int

  @property
  def type_name(self) -> str:
    return R_CUDA_NAMES.get(self.type, f"unk_{self.type}")


@dataclass(frozen=True)
class Segment:
  """A loadable data section: a constant bank (.nv.constant<N>) or global memory (.nv.global, .nv.global.init)."""
  name: str
  bank: int | None  # constant bank number, None for global memory
  size: int
  align: int
  data: bytes | None  # initial contents; None for NOBITS (zero-filled)
  relocations: tuple[Relocation, ...]


@dataclass(frozen=True)
class Symbol:
  name: str
  section: str  # defining section name
  value: int  # offset inside that section
  size: int


@dataclass(frozen=True)
class Kernel:
  name: str
  code: bytes
  registers: int
  barriers: int
  shared_size: int  # bytes the launch reserves (.nv.shared.<name>, includes SM90_RESERVED_SHARED); 0 if none
  static_shared: int  # the PTX's own `.shared` bytes (ptxas -v "bytes smem")
  const0_size: int  # .nv.constant0.<name> size: driver area + parameters
  param_base: int  # offset of the parameters in constant bank 0 (0x210 on sm_90)
  param_size: int  # EIATTR_CBANK_PARAM_SIZE
  params: tuple[KernelParam, ...]  # by ordinal
  frame_size: int  # EIATTR_FRAME_SIZE: bytes of local memory (stack) per thread for the kernel's own frame
  min_stack_size: int  # EIATTR_MIN_STACK_SIZE: cumulative over the calls it makes
  max_stack_size: int | None  # EIATTR_MAX_STACK_SIZE (relocatable cubins only)
  crs_stack_size: int | None
  max_threads: tuple[int, int, int] | None  # .maxntid
  reqntid: tuple[int, int, int] | None  # .reqntid
  cta_per_cluster: tuple[int, int, int] | None  # .reqnctapercluster
  max_cluster_rank: int | None
  explicit_cluster: bool
  maxreg_count: int | None  # EIATTR_MAXREG_COUNT (0xff = no limit given)
  exit_offsets: tuple[int, ...]  # byte offsets of EXIT instructions in `code`
  cuda_api_version: int | None
  relocations: tuple[Relocation, ...]  # patches inside `code`
  attributes: tuple[NvInfoAttr, ...]  # .nv.info.<name> as read, unknown records included


@dataclass(frozen=True)
class Cubin:
  sm: int  # e.g. 90
  relocatable: bool  # ET_REL (`ptxas -c`); compile_ptx makes ET_EXEC
  abi_version: int  # EI_ABIVERSION: 7 from 12.x toolkits, 8 from 13.x
  kernels: tuple[Kernel, ...]
  segments: tuple[Segment, ...]
  symbols: tuple[Symbol, ...]  # named symbols defined in a section
  module_attributes: tuple[NvInfoAttr, ...]  # .nv.info
  compat: tuple[NvInfoAttr, ...]  # .nv.compat (13.x)
  relocations: tuple[Relocation, ...]  # every relocation of a loadable section (debug sections left out)
  code_sections: Mapping[str, bytes]  # every .text.* section: kernels and the functions they call

  def kernel(self, name: str) -> Kernel:
    """The kernel called `name`.

    Raises:
      KernelNotFound: no such kernel; the message lists the ones present.
    """
    for k in self.kernels:
      if k.name == name:
        return k
    raise KernelNotFound(f"no kernel {name!r} in this cubin; it has {[k.name for k in self.kernels]}")

  @property
  def global_size(self) -> int:
    """Bytes of `.global` data (.nv.global + .nv.global.init); ptxas -v "N bytes gmem"."""
    return sum(s.size for s in self.segments if s.bank is None)

  def code_closure(self, name: str) -> tuple[str, ...]:
    """The .text sections kernel `name` needs loaded: its own first, then every function section its code reaches
    through relocations (a CALL.ABS to a separate `.text.__cuda_sm3x_div_rn_noftz_f32_slowpath`, as some ptxas
    releases emit), transitively, in the order first reached.

    Raises:
      KernelNotFound: no such kernel.
    """
    self.kernel(name)
    where = {s.name: s.section for s in self.symbols}
    order = [f".text.{name}"]
    for section in order:  # grows while iterating: a breadth-first walk of the call graph
      for r in self.relocations:
        target = where.get(r.symbol, "")
        if r.section == section and target in self.code_sections and target not in order:
          order.append(target)
    return tuple(order)

  def symbol_addresses(self, bases: Mapping[str, int]) -> dict[str, int]:
    """Device address of every symbol whose section has a base in `bases` (section name -> device address)."""
    return {s.name: bases[s.section] + s.value for s in self.symbols if s.section in bases}


# ---------------------------------------------------------------------------------------------------------------------
# .nv.info records

def parse_nv_info(data: bytes, section: str = ".nv.info", names: Mapping[int, str] = EIATTR_NAMES) \
    -> tuple[NvInfoAttr, ...]:
  """Splits an .nv.info (or .nv.compat) section into records.

  Args:
    data: the section bytes.
    section: its name, for error messages.
    names: attribute code -> name table (EIATTR_NAMES, or EICOMPAT_NAMES for .nv.compat).

  Raises:
    CubinError: an unknown format byte or a record running past the end (the message gives the offset).
  """
  out, pos = [], 0
  while pos < len(data):
    if pos + 4 > len(data):
      raise CubinError(f"{section}: truncated record header at offset {pos:#x} (section is {len(data):#x} bytes)")
    fmt, code = data[pos], data[pos + 1]
    name = names.get(code, f"unk_{code:#04x}")
    if fmt == EIFMT_SVAL:
      (size,) = struct.unpack_from("<H", data, pos + 2)
      if pos + 4 + size > len(data):
        raise CubinError(f"{section}: {name} at {pos:#x} claims {size} bytes, only {len(data) - pos - 4} remain")
      value = bytes(data[pos + 4:pos + 4 + size])
      pos += 4 + size
    elif fmt == EIFMT_HVAL:
      (value,) = struct.unpack_from("<H", data, pos + 2)
      pos += 4
    elif fmt == EIFMT_BVAL:
      value = data[pos + 2]
      pos += 4
    elif fmt == EIFMT_NVAL:
      value = None
      pos += 4
    else:
      raise CubinError(f"{section}: unknown record format {fmt:#x} (attribute {code:#x}) at offset {pos:#x}")
    out.append(NvInfoAttr(code, name, fmt, value))
  return tuple(out)


def _first(attrs: Iterable[NvInfoAttr], code: int) -> NvInfoAttr | None:
  return next((a for a in attrs if a.code == code), None)


def _by_symbol(attrs: Iterable[NvInfoAttr], code: int) -> dict[int, int]:
  """Module records of (u32 symbol index, u32 value) -> {symbol index: value}."""
  out = {}
  for a in attrs:
    if a.code == code:
      sym, value = a.u32s()[:2]
      out[sym] = value
  return out


def _triple(attrs: Iterable[NvInfoAttr], code: int) -> tuple[int, int, int] | None:
  a = _first(attrs, code)
  return None if a is None else tuple(a.u32s()[:3])


def _params(attrs: Iterable[NvInfoAttr]) -> tuple[KernelParam, ...]:
  params = []
  for a in attrs:
    if a.code == EIATTR_KPARAM_INFO:
      _index, ordinal, offset, word = struct.unpack("<IHHI", a.value)
      params.append(KernelParam(ordinal, offset, word >> 18, word & 0x3FFFF))
  return tuple(sorted(params, key=lambda p: p.ordinal))


# ---------------------------------------------------------------------------------------------------------------------
# ELF

def _open(data: bytes) -> ELFFile:
  if not isinstance(data, (bytes, bytearray, memoryview)):
    raise TypeError(f"parse_cubin wants the cubin bytes, got {type(data).__name__}")
  data = bytes(data)
  if not data.startswith(b"\x7fELF"):
    raise CubinError(f"not an ELF file ({len(data)} bytes starting {data[:8].hex()}); expected a cubin from ptxas")
  try:
    elf = ELFFile(io.BytesIO(data))
    machine = elf["e_machine"]
  except (ELFError, struct.error, ValueError) as e:
    raise CubinError(f"malformed ELF ({len(data)} bytes): {e}") from e
  if elf.elfclass != 64 or machine not in ("EM_CUDA", EM_CUDA):
    raise CubinError(f"ELF{elf.elfclass} for machine {machine}, not a CUDA cubin (ELF64, EM_CUDA = {EM_CUDA})")
  return elf


def _sm(elf: ELFFile) -> int:
  flags = elf["e_flags"]
  abi = elf["e_ident"]["EI_ABIVERSION"]
  return (flags >> 8) & 0xFF if abi >= 8 else flags & 0xFF


def _relocations(elf: ELFFile) -> list[Relocation]:
  out = []
  for sec in elf.iter_sections():
    if sec["sh_type"] not in ("SHT_REL", "SHT_RELA"):
      continue
    target = elf.get_section(sec["sh_info"]).name
    if target.startswith(".debug"):
      continue  # debug info is not loaded
    symtab = elf.get_section(sec["sh_link"])
    for r in sec.iter_relocations():
      symbol = symtab.get_symbol(r["r_info_sym"]).name
      addend = r["r_addend"] if sec["sh_type"] == "SHT_RELA" else 0
      out.append(Relocation(target, r["r_offset"], r["r_info_type"], symbol, addend))
  return out


def _symbols(elf: ELFFile) -> tuple[list[Symbol], list[tuple[int, str]]]:
  """Named symbols defined in a section, and (symbol index, name) of each kernel entry in symtab order."""
  symtab = elf.get_section_by_name(".symtab")
  if symtab is None:
    raise CubinError("cubin has no .symtab section")
  raw = symtab.data()
  symbols, entries = [], []
  for i, s in enumerate(symtab.iter_symbols()):
    shndx = s["st_shndx"]
    if not s.name or not isinstance(shndx, int):
      continue
    section = elf.get_section(shndx).name
    symbols.append(Symbol(s.name, section, s["st_value"], s["st_size"]))
    st_other = raw[i * symtab["sh_entsize"] + 5]  # Elf64_Sym.st_other; pyelftools drops the CUDA bits
    if s["st_info"]["type"] == "STT_FUNC" and st_other & STO_CUDA_ENTRY:
      entries.append((i, s.name))
  return symbols, entries


def _segments(elf: ELFFile, relocs: list[Relocation]) -> tuple[Segment, ...]:
  out = []
  for sec in elf.iter_sections():
    bank = re.fullmatch(r"\.nv\.constant(\d+)", sec.name)
    if not bank and sec.name not in (".nv.global", ".nv.global.init"):
      continue
    data = None if sec["sh_type"] == "SHT_NOBITS" else sec.data()
    mine = tuple(r for r in relocs if r.section == sec.name)
    out.append(Segment(sec.name, int(bank.group(1)) if bank else None, sec["sh_size"], sec["sh_addralign"], data,
                       mine))
  return tuple(out)


def _shared_sizes(elf: ELFFile, name: str) -> tuple[int, int]:
  """(bytes the launch reserves, the PTX's own static bytes) from .nv.shared.<name>."""
  shared = elf.get_section_by_name(f".nv.shared.{name}")
  size = shared["sh_size"] if shared is not None else 0
  if elf["e_type"] == "ET_REL":
    return size, size
  return size, max(0, size - SM90_RESERVED_SHARED)


def _kernel(elf: ELFFile, name: str, sym: int, module: tuple[NvInfoAttr, ...], relocs: list[Relocation]) -> Kernel:
  text = elf.get_section_by_name(f".text.{name}")
  info = elf.get_section_by_name(f".nv.info.{name}")
  if text is None or info is None:
    raise CubinError(f"kernel {name!r}: missing section .text.{name} or .nv.info.{name}")
  attrs = parse_nv_info(info.data(), info.name)
  shared_size, static_shared = _shared_sizes(elf, name)
  const0 = elf.get_section_by_name(f".nv.constant0.{name}")
  cbank = _first(attrs, EIATTR_PARAM_CBANK)
  param_base = struct.unpack("<IHH", cbank.value)[1] if cbank is not None else 0
  param_size = _first(attrs, EIATTR_CBANK_PARAM_SIZE)
  regcount = _by_symbol(module, EIATTR_REGCOUNT)
  num_barriers = _first(attrs, EIATTR_NUM_BARRIERS)
  max_stack = _by_symbol(module, EIATTR_MAX_STACK_SIZE)
  crs = _first(attrs, EIATTR_CRS_STACK_SIZE)
  rank = _first(attrs, EIATTR_MAX_CLUSTER_RANK)
  maxreg = _first(attrs, EIATTR_MAXREG_COUNT)
  exits = _first(attrs, EIATTR_EXIT_INSTR_OFFSETS)
  api = _first(attrs, EIATTR_CUDA_API_VERSION)
  return Kernel(
    name=name, code=text.data(),
    registers=regcount.get(sym, text["sh_info"] >> 24),
    barriers=num_barriers.value if num_barriers is not None else (text["sh_flags"] >> 20) & 0x7F,
    shared_size=shared_size, static_shared=static_shared,
    const0_size=const0["sh_size"] if const0 is not None else 0,
    param_base=param_base, param_size=param_size.value if param_size is not None else 0, params=_params(attrs),
    frame_size=_by_symbol(module, EIATTR_FRAME_SIZE).get(sym, 0),
    min_stack_size=_by_symbol(module, EIATTR_MIN_STACK_SIZE).get(sym, 0),
    max_stack_size=max_stack.get(sym), crs_stack_size=crs.u32s()[0] if crs is not None else None,
    max_threads=_triple(attrs, EIATTR_MAX_THREADS), reqntid=_triple(attrs, EIATTR_REQNTID),
    cta_per_cluster=_triple(attrs, EIATTR_CTA_PER_CLUSTER), max_cluster_rank=rank.u32s()[0] if rank else None,
    explicit_cluster=_first(attrs, EIATTR_EXPLICIT_CLUSTER) is not None,
    maxreg_count=maxreg.value if maxreg is not None else None, exit_offsets=exits.u32s() if exits else (),
    cuda_api_version=api.u32s()[0] if api is not None else None,
    relocations=tuple(r for r in relocs if r.section == text.name), attributes=attrs)


def parse_cubin(data: bytes) -> Cubin:
  """Parses cubin bytes (from `nvdrv.compile.compile_ptx`) into kernels, data segments, symbols and relocations.

  Args:
    data: the ELF file contents.

  Raises:
    TypeError: `data` is not bytes-like.
    CubinError: not an ELF, not ELF64/EM_CUDA, or a malformed section; the message names what was found.
  """
  elf = _open(data)
  try:
    info = elf.get_section_by_name(".nv.info")
    module = parse_nv_info(info.data(), info.name) if info is not None else ()
    compat_sec = elf.get_section_by_name(".nv.compat")
    compat = parse_nv_info(compat_sec.data(), compat_sec.name, EICOMPAT_NAMES) if compat_sec is not None else ()
    relocs = _relocations(elf)
    symbols, entries = _symbols(elf)
    kernels = tuple(_kernel(elf, name, sym, module, relocs) for sym, name in entries)
    return Cubin(sm=_sm(elf), relocatable=elf["e_type"] == "ET_REL", abi_version=elf["e_ident"]["EI_ABIVERSION"],
                 kernels=kernels, segments=_segments(elf, relocs), symbols=tuple(symbols), module_attributes=module,
                 compat=compat, relocations=tuple(relocs),
                 code_sections={sec.name: sec.data() for sec in elf.iter_sections() if sec.name.startswith(".text.")})
  except (ELFError, struct.error) as e:
    raise CubinError(f"malformed cubin section: {e}") from e


def apply_relocations(data: bytes, relocations: Iterable[Relocation], addresses: Mapping[str, int]) -> bytes:
  """Returns `data` (a section's bytes) with each relocation's field set from its symbol's device address.

  Args:
    data: the bytes of the section the relocations patch (Kernel.code or Segment.data).
    relocations: Kernel.relocations or Segment.relocations.
    addresses: symbol name -> device address (see Cubin.symbol_addresses).

  Raises:
    KeyError: a relocation names a symbol missing from `addresses` (the message names it).
    NotImplementedError: a relocation type with no writer (R_CUDA_ABS16_32, ...).
    CubinError: a field would fall outside `data`, or a value does not fit its field.
  """
  out = bytearray(data)
  for r in relocations:
    if r.symbol not in addresses:
      raise KeyError(f"{r.type_name} at {r.section}+{r.offset:#x} needs the address of {r.symbol!r}, which is not "
                     f"in the {len(addresses)} addresses given")
    if r.type not in RELOC_FIELDS:
      raise NotImplementedError(f"{r.type_name} ({r.type}) at {r.section}+{r.offset:#x} is not supported; "
                                f"supported: {[R_CUDA_NAMES[t] for t in RELOC_FIELDS]}")
    size, fields = RELOC_FIELDS[r.type]
    value = addresses[r.symbol] + r.addend
    if r.offset + size > len(out):
      raise CubinError(f"{r.type_name} at {r.section}+{r.offset:#x} writes past the end ({len(out)} bytes)")
    if r.type not in (R_CUDA_ABS32_LO_32, R_CUDA_ABS32_HI_32):  # the others hold the whole value
      top = max(shift + width for _, width, shift in fields)
      low = min(shift for _, _, shift in fields)
      if not 0 <= value < 1 << top:
        raise CubinError(f"{r.type_name} for {r.symbol!r}: value {value:#x} does not fit {top} bits")
      if value & ((1 << low) - 1):
        raise CubinError(f"{r.type_name} for {r.symbol!r}: value {value:#x} is not a multiple of {1 << low}")
    word = int.from_bytes(out[r.offset:r.offset + size], "little")
    for pos, width, shift in fields:
      mask = (1 << width) - 1
      word = (word & ~(mask << pos)) | (((value >> shift) & mask) << pos)
    out[r.offset:r.offset + size] = word.to_bytes(size, "little")
  return bytes(out)
