"""AMDHSA kernel descriptor (code object v3+): the 64 bytes at symbol `NAME.kd` that the CP reads to launch a kernel.

    kd = descriptor_from_directives("gfx1100", next_free_vgpr=3, next_free_sgpr=10, kernarg_size=24,
                                    user_sgpr_kernarg_segment_ptr=1)
    kd.to_bytes()                                        # 64 bytes, as llvm-mc's .amdhsa_kernel makes them
    kd.read_fields(11)["compute_pgm_rsrc2"]["USER_SGPR_COUNT"]      # 2
    kd.update(11, compute_pgm_rsrc1={"FLOAT_DENORM_MODE_32": 3})   # a copy, masked read-modify-write

Facts, LLVM 19.1.7:
  layout and bit fields  llvm-19-dev /usr/include/llvm-19/llvm/Support/AMDHSAKernelDescriptor.h: struct
                         kernel_descriptor_t with its *_OFFSET enum, and the COMPUTE_PGM_RSRC1/2/3,
                         KERNEL_CODE_PROPERTY and KERNARG_PRELOAD_SPEC enums (AMDHSA_BITS_ENUM_ENTRY(name, shift,
                         width)). A field the header names for a range of generations ("GFX6_GFX11", "GFX12_PLUS")
                         exists here only for the generations in that range: gfx11 has ENABLE_DX10_CLAMP where gfx12 has
                         ENABLE_WG_RR_EN.
  directives, defaults   llvm-19-doc (1:19.1.7-3~deb12u1) /usr/share/doc/llvm-19-doc/html/_sources/AMDGPUUsage.rst.txt,
                         table amdhsa-kernel-directives-table: each `.amdhsa_*` directive, its default and the field
                         it controls; compute_pgm_rsrc3 GFX10-GFX11 table: SHARED_VGPR_COUNT 0 in wave32, and within
                         256 VGPRs with the private ones in wave64.
  register granules      AMDGPUUsage.rst "compute_pgm_rsrc1 for GFX6-GFX12": GRANULATED_WORKITEM_VGPR_COUNT =
                         max(0, ceil(vgprs_used / 8) - 1) in wave32, / 4 in wave64 (GFX10-GFX12, vgprs_used 1..256);
                         GRANULATED_WAVEFRONT_SGPR_COUNT "GFX10-GFX12: Reserved, must be 0 (128 SGPRs always
                         allocated)". llvm-mc writes 0 there; llc-19's object output writes ceil(sgpr_count / 8) - 1
                         all the same (rsrc1 0x600f0040 for a gfx1201 kernel), which the hardware ignores.
Only gfx11 (RDNA3) and gfx12 (RDNA4) are described; GFX6-GFX10 and GFX90A rows of the header are left out.
"""
from __future__ import annotations

import dataclasses
import difflib
import struct
from dataclasses import dataclass

from .codeobj_elf import processor

__all__ = ["DescriptorError", "KernelDescriptor", "DIRECTIVES", "FIELDS", "REGISTERS", "descriptor_from_directives",
           "pack_fields", "unpack_fields", "sgpr_granule", "user_sgpr_count", "vgpr_granule"]
SIZE = 64
GENERATIONS = (11, 12)
G11, G12, ALL = (11,), (12,), (11, 12)

# (member, byte offset, struct format): kernel_descriptor_t and GROUP_SEGMENT_FIXED_SIZE_OFFSET .. RESERVED3_OFFSET
LAYOUT = (
  ("group_segment_fixed_size", 0, "<I"),
  ("private_segment_fixed_size", 4, "<I"),
  ("kernarg_size", 8, "<I"),
  ("reserved0", 12, "4s"),                        # uint8_t reserved0[4]
  ("kernel_code_entry_byte_offset", 16, "<q"),    # int64_t, from the descriptor's address to the entry (256-aligned)
  ("reserved1", 24, "20s"),                       # uint8_t reserved1[20]
  ("compute_pgm_rsrc3", 44, "<I"),                # GFX10+ and GFX90A+
  ("compute_pgm_rsrc1", 48, "<I"),
  ("compute_pgm_rsrc2", 52, "<I"),
  ("kernel_code_properties", 56, "<H"),
  ("kernarg_preload", 58, "<H"),
  ("reserved3", 60, "4s"),                        # uint8_t reserved3[4]
)
REGISTERS = ("compute_pgm_rsrc1", "compute_pgm_rsrc2", "compute_pgm_rsrc3", "kernel_code_properties", "kernarg_preload")


@dataclass(frozen=True)
class BitField:
  register: str        # kernel_descriptor_t member holding the bits
  name: str            # the header's field name, without the register prefix
  shift: int
  width: int
  generations: tuple   # generations (11, 12) that have this field

  @property
  def mask(self) -> int:
    return ((1 << self.width) - 1) << self.shift


def _fields(register: str, rows: tuple) -> tuple:
  return tuple(BitField(register, name, shift, width, gens) for name, shift, width, gens in rows)


# (name, shift, width, generations): the header's enum entry is <PREFIX>_<RANGE>_<name>, e.g.
# COMPUTE_PGM_RSRC1_GFX6_GFX11_ENABLE_DX10_CLAMP; the range is written after each row
FIELDS = _fields("compute_pgm_rsrc1", (
  ("GRANULATED_WORKITEM_VGPR_COUNT", 0, 6, ALL),        # COMPUTE_PGM_RSRC1 (GFX6+)
  ("GRANULATED_WAVEFRONT_SGPR_COUNT", 6, 4, ALL),       # GFX6+
  ("PRIORITY", 10, 2, ALL),                             # GFX6+
  ("FLOAT_ROUND_MODE_32", 12, 2, ALL),                  # GFX6+
  ("FLOAT_ROUND_MODE_16_64", 14, 2, ALL),               # GFX6+
  ("FLOAT_DENORM_MODE_32", 16, 2, ALL),                 # GFX6+
  ("FLOAT_DENORM_MODE_16_64", 18, 2, ALL),              # GFX6+
  ("PRIV", 20, 1, ALL),                                 # GFX6+
  ("ENABLE_DX10_CLAMP", 21, 1, G11),                    # GFX6_GFX11
  ("ENABLE_WG_RR_EN", 21, 1, G12),                      # GFX12_PLUS
  ("DEBUG_MODE", 22, 1, ALL),                           # GFX6+
  ("ENABLE_IEEE_MODE", 23, 1, G11),                     # GFX6_GFX11
  ("DISABLE_PERF", 23, 1, G12),                         # GFX12_PLUS
  ("BULKY", 24, 1, ALL),                                # GFX6+
  ("CDBG_USER", 25, 1, ALL),                            # GFX6+
  ("FP16_OVFL", 26, 1, ALL),                            # GFX9_PLUS
  ("RESERVED1", 27, 2, ALL),                            # GFX6+
  ("WGP_MODE", 29, 1, ALL),                             # GFX10_PLUS
  ("MEM_ORDERED", 30, 1, ALL),                          # GFX10_PLUS
  ("FWD_PROGRESS", 31, 1, ALL),                         # GFX10_PLUS
)) + _fields("compute_pgm_rsrc2", (
  ("ENABLE_PRIVATE_SEGMENT", 0, 1, ALL),                # COMPUTE_PGM_RSRC2 (GFX6+)
  ("USER_SGPR_COUNT", 1, 5, ALL),                       # GFX6+
  ("ENABLE_TRAP_HANDLER", 6, 1, G11),                   # GFX6_GFX11
  ("RESERVED1", 6, 1, G12),                             # GFX12_PLUS
  ("ENABLE_SGPR_WORKGROUP_ID_X", 7, 1, ALL),            # GFX6+
  ("ENABLE_SGPR_WORKGROUP_ID_Y", 8, 1, ALL),            # GFX6+
  ("ENABLE_SGPR_WORKGROUP_ID_Z", 9, 1, ALL),            # GFX6+
  ("ENABLE_SGPR_WORKGROUP_INFO", 10, 1, ALL),           # GFX6+
  ("ENABLE_VGPR_WORKITEM_ID", 11, 2, ALL),              # GFX6+
  ("ENABLE_EXCEPTION_ADDRESS_WATCH", 13, 1, ALL),       # GFX6+
  ("ENABLE_EXCEPTION_MEMORY", 14, 1, ALL),              # GFX6+
  ("GRANULATED_LDS_SIZE", 15, 9, ALL),                  # GFX6+ (AMDGPUUsage: must be 0, CP fills it in)
  ("ENABLE_EXCEPTION_IEEE_754_FP_INVALID_OPERATION", 24, 1, ALL),   # GFX6+
  ("ENABLE_EXCEPTION_FP_DENORMAL_SOURCE", 25, 1, ALL),              # GFX6+
  ("ENABLE_EXCEPTION_IEEE_754_FP_DIVISION_BY_ZERO", 26, 1, ALL),    # GFX6+
  ("ENABLE_EXCEPTION_IEEE_754_FP_OVERFLOW", 27, 1, ALL),            # GFX6+
  ("ENABLE_EXCEPTION_IEEE_754_FP_UNDERFLOW", 28, 1, ALL),           # GFX6+
  ("ENABLE_EXCEPTION_IEEE_754_FP_INEXACT", 29, 1, ALL),             # GFX6+
  ("ENABLE_EXCEPTION_INT_DIVIDE_BY_ZERO", 30, 1, ALL),              # GFX6+
  ("RESERVED0", 31, 1, ALL),                                        # GFX6+
)) + _fields("compute_pgm_rsrc3", (
  ("SHARED_VGPR_COUNT", 0, 4, G11),                     # COMPUTE_PGM_RSRC3_GFX10_GFX11
  ("RESERVED0", 0, 4, G12),                             # COMPUTE_PGM_RSRC3_GFX12_PLUS
  ("INST_PREF_SIZE", 4, 6, G11),                        # COMPUTE_PGM_RSRC3_GFX11
  ("TRAP_ON_START", 10, 1, G11),                        # COMPUTE_PGM_RSRC3_GFX11
  ("TRAP_ON_END", 11, 1, G11),                          # COMPUTE_PGM_RSRC3_GFX11
  ("INST_PREF_SIZE", 4, 8, G12),                        # COMPUTE_PGM_RSRC3_GFX12_PLUS
  ("RESERVED2", 12, 1, ALL),                            # COMPUTE_PGM_RSRC3_GFX10_PLUS
  ("RESERVED3", 13, 1, G11),                            # COMPUTE_PGM_RSRC3_GFX10_GFX11
  ("GLG_EN", 13, 1, G12),                               # COMPUTE_PGM_RSRC3_GFX12_PLUS
  ("RESERVED4", 14, 17, ALL),                           # COMPUTE_PGM_RSRC3_GFX10_PLUS
  ("IMAGE_OP", 31, 1, ALL),                             # COMPUTE_PGM_RSRC3_GFX11_PLUS
)) + _fields("kernel_code_properties", (
  ("ENABLE_SGPR_PRIVATE_SEGMENT_BUFFER", 0, 1, ALL),    # KERNEL_CODE_PROPERTY
  ("ENABLE_SGPR_DISPATCH_PTR", 1, 1, ALL),
  ("ENABLE_SGPR_QUEUE_PTR", 2, 1, ALL),
  ("ENABLE_SGPR_KERNARG_SEGMENT_PTR", 3, 1, ALL),
  ("ENABLE_SGPR_DISPATCH_ID", 4, 1, ALL),
  ("ENABLE_SGPR_FLAT_SCRATCH_INIT", 5, 1, ALL),
  ("ENABLE_SGPR_PRIVATE_SEGMENT_SIZE", 6, 1, ALL),
  ("RESERVED0", 7, 3, ALL),
  ("ENABLE_WAVEFRONT_SIZE32", 10, 1, ALL),              # GFX10+
  ("USES_DYNAMIC_STACK", 11, 1, ALL),
  ("RESERVED1", 12, 4, ALL),
)) + _fields("kernarg_preload", (
  ("LENGTH", 0, 7, ALL),                                # KERNARG_PRELOAD_SPEC
  ("OFFSET", 7, 9, ALL),
))

# user SGPRs each kernel_code_properties bit asks the CP to set up, in SGPR order (AMDGPUUsage "Initial Kernel
# Execution State", SGPR register initial state): the count goes into USER_SGPR_COUNT. The private segment buffer
# (4) and flat scratch init (2) are GFX6-GFX10 only (architected flat scratch on gfx11+), so they count 0 here.
USER_SGPRS = (("ENABLE_SGPR_DISPATCH_PTR", 2), ("ENABLE_SGPR_QUEUE_PTR", 2), ("ENABLE_SGPR_KERNARG_SEGMENT_PTR", 2),
              ("ENABLE_SGPR_DISPATCH_ID", 2), ("ENABLE_SGPR_PRIVATE_SEGMENT_SIZE", 1))

# .amdhsa_<directive> -> (default, generations, register, field): AMDGPUUsage.rst amdhsa-kernel-directives-table
# (LLVM 19); register None means a top-level member. The derived ones (next_free_vgpr / next_free_sgpr / reserve_vcc
# -> granules, user_sgpr_count's default) are computed in descriptor_from_directives. Defaults marked "Target" in the
# table: wavefront_size32 1 (gfx10+ default to wave32), workgroup_processor_mode 1 (no cumode feature).
DIRECTIVES = {
  "group_segment_fixed_size": (0, ALL, None, "group_segment_fixed_size"),
  "private_segment_fixed_size": (0, ALL, None, "private_segment_fixed_size"),
  "kernarg_size": (0, ALL, None, "kernarg_size"),
  "user_sgpr_count": (None, ALL, "compute_pgm_rsrc2", "USER_SGPR_COUNT"),
  "user_sgpr_dispatch_ptr": (0, ALL, "kernel_code_properties", "ENABLE_SGPR_DISPATCH_PTR"),
  "user_sgpr_queue_ptr": (0, ALL, "kernel_code_properties", "ENABLE_SGPR_QUEUE_PTR"),
  "user_sgpr_kernarg_segment_ptr": (0, ALL, "kernel_code_properties", "ENABLE_SGPR_KERNARG_SEGMENT_PTR"),
  "user_sgpr_dispatch_id": (0, ALL, "kernel_code_properties", "ENABLE_SGPR_DISPATCH_ID"),
  "user_sgpr_private_segment_size": (0, ALL, "kernel_code_properties", "ENABLE_SGPR_PRIVATE_SEGMENT_SIZE"),
  "wavefront_size32": (1, ALL, "kernel_code_properties", "ENABLE_WAVEFRONT_SIZE32"),
  "uses_dynamic_stack": (0, ALL, "kernel_code_properties", "USES_DYNAMIC_STACK"),
  "enable_private_segment": (0, ALL, "compute_pgm_rsrc2", "ENABLE_PRIVATE_SEGMENT"),
  "system_sgpr_workgroup_id_x": (1, ALL, "compute_pgm_rsrc2", "ENABLE_SGPR_WORKGROUP_ID_X"),
  "system_sgpr_workgroup_id_y": (0, ALL, "compute_pgm_rsrc2", "ENABLE_SGPR_WORKGROUP_ID_Y"),
  "system_sgpr_workgroup_id_z": (0, ALL, "compute_pgm_rsrc2", "ENABLE_SGPR_WORKGROUP_ID_Z"),
  "system_sgpr_workgroup_info": (0, ALL, "compute_pgm_rsrc2", "ENABLE_SGPR_WORKGROUP_INFO"),
  "system_vgpr_workitem_id": (0, ALL, "compute_pgm_rsrc2", "ENABLE_VGPR_WORKITEM_ID"),
  "next_free_vgpr": (None, ALL, "compute_pgm_rsrc1", "GRANULATED_WORKITEM_VGPR_COUNT"),
  "next_free_sgpr": (None, ALL, "compute_pgm_rsrc1", "GRANULATED_WAVEFRONT_SGPR_COUNT"),
  "reserve_vcc": (1, ALL, None, None),
  "float_round_mode_32": (0, ALL, "compute_pgm_rsrc1", "FLOAT_ROUND_MODE_32"),
  "float_round_mode_16_64": (0, ALL, "compute_pgm_rsrc1", "FLOAT_ROUND_MODE_16_64"),
  "float_denorm_mode_32": (0, ALL, "compute_pgm_rsrc1", "FLOAT_DENORM_MODE_32"),
  "float_denorm_mode_16_64": (3, ALL, "compute_pgm_rsrc1", "FLOAT_DENORM_MODE_16_64"),
  "dx10_clamp": (1, G11, "compute_pgm_rsrc1", "ENABLE_DX10_CLAMP"),
  "ieee_mode": (1, G11, "compute_pgm_rsrc1", "ENABLE_IEEE_MODE"),
  "round_robin_scheduling": (0, G12, "compute_pgm_rsrc1", "ENABLE_WG_RR_EN"),
  "fp16_overflow": (0, ALL, "compute_pgm_rsrc1", "FP16_OVFL"),
  "workgroup_processor_mode": (1, ALL, "compute_pgm_rsrc1", "WGP_MODE"),
  "memory_ordered": (1, ALL, "compute_pgm_rsrc1", "MEM_ORDERED"),
  "forward_progress": (0, ALL, "compute_pgm_rsrc1", "FWD_PROGRESS"),
  "shared_vgpr_count": (0, G11, "compute_pgm_rsrc3", "SHARED_VGPR_COUNT"),
  "exception_fp_ieee_invalid_op": (0, ALL, "compute_pgm_rsrc2", "ENABLE_EXCEPTION_IEEE_754_FP_INVALID_OPERATION"),
  "exception_fp_denorm_src": (0, ALL, "compute_pgm_rsrc2", "ENABLE_EXCEPTION_FP_DENORMAL_SOURCE"),
  "exception_fp_ieee_div_zero": (0, ALL, "compute_pgm_rsrc2", "ENABLE_EXCEPTION_IEEE_754_FP_DIVISION_BY_ZERO"),
  "exception_fp_ieee_overflow": (0, ALL, "compute_pgm_rsrc2", "ENABLE_EXCEPTION_IEEE_754_FP_OVERFLOW"),
  "exception_fp_ieee_underflow": (0, ALL, "compute_pgm_rsrc2", "ENABLE_EXCEPTION_IEEE_754_FP_UNDERFLOW"),
  "exception_fp_ieee_inexact": (0, ALL, "compute_pgm_rsrc2", "ENABLE_EXCEPTION_IEEE_754_FP_INEXACT"),
  "exception_int_div_zero": (0, ALL, "compute_pgm_rsrc2", "ENABLE_EXCEPTION_INT_DIVIDE_BY_ZERO"),
}
MAX_VGPRS = 256       # AMDGPUUsage: GFX10-GFX12 max_vgpr 1..256
MAX_SGPRS = 106       # s0..s105 (compiler/rdna/generated tables, REG_FILES from SIRegisterInfo.td)
MAX_USER_SGPRS = 16   # AMDGPUUsage kernel descriptor: "must not exceed 16"


class DescriptorError(ValueError):
  """A kernel descriptor field or directive that does not exist for the generation, or a value that does not fit."""


def fields_of(register: str, generation: int) -> dict:
  """name -> BitField of one register for a generation."""
  check_generation(generation)
  if register not in REGISTERS:
    raise DescriptorError(f"unknown kernel descriptor register {register!r}; registers: {', '.join(REGISTERS)}")
  return {f.name: f for f in FIELDS if f.register == register and generation in f.generations}


def check_generation(generation: int) -> None:
  if generation not in GENERATIONS:
    raise DescriptorError(f"kernel descriptor fields are described for gfx11 and gfx12 only, not generation "
                          f"{generation!r}")


def pack_fields(register: str, generation: int, value: int = 0, **fields) -> int:
  """Set named bit fields of `register` in `value` (masked read-modify-write) and return the new value.

  Raises:
    DescriptorError: a field name the generation does not have (close matches named), or a value that does not fit.
  """
  known = fields_of(register, generation)
  for name, field_value in fields.items():
    f = known.get(name)
    if f is None:
      raise DescriptorError(unknown_field_message(register, name, generation, known))
    if not 0 <= int(field_value) < 1 << f.width:
      raise DescriptorError(f"{register}.{name} = {field_value} does not fit its {f.width} bits "
                            f"(0..{(1 << f.width) - 1})")
    value = (value & ~f.mask) | (int(field_value) << f.shift)
  return value


def unknown_field_message(register: str, name: str, generation: int, known: dict) -> str:
  others = [g for g in GENERATIONS if g != generation and name in fields_of(register, g)]
  if others:
    return f"{register}.{name} does not exist on gfx{generation} (only on gfx{others[0]})"
  close = difflib.get_close_matches(name, list(known), n=3)
  hint = f"; did you mean {', '.join(close)}?" if close else f"; fields: {', '.join(known)}"
  return f"unknown field {register}.{name} for gfx{generation}{hint}"


def unpack_fields(register: str, generation: int, value: int) -> dict:
  """value -> {field name: value} for every field the generation has in `register`."""
  return {name: (value & f.mask) >> f.shift for name, f in fields_of(register, generation).items()}


@dataclass(frozen=True)
class KernelDescriptor:
  """kernel_descriptor_t: top-level members as ints, the packed registers as their raw values (read_fields and update
  reach their bit fields by name). Reserved bytes are always zero (to_bytes writes zeros, from_bytes checks)."""
  group_segment_fixed_size: int = 0
  private_segment_fixed_size: int = 0
  kernarg_size: int = 0
  kernel_code_entry_byte_offset: int = 0
  compute_pgm_rsrc3: int = 0
  compute_pgm_rsrc1: int = 0
  compute_pgm_rsrc2: int = 0
  kernel_code_properties: int = 0
  kernarg_preload: int = 0

  def to_bytes(self) -> bytes:
    """The 64 descriptor bytes.

    Raises:
      DescriptorError: a member does not fit its C type.
    """
    out = bytearray(SIZE)
    for member, offset, fmt in LAYOUT:
      if member.startswith("reserved"):
        continue
      try:
        struct.pack_into(fmt, out, offset, getattr(self, member))
      except struct.error:
        raise DescriptorError(f"kernel descriptor {member} = {getattr(self, member)} does not fit {fmt}") from None
    return bytes(out)

  @classmethod
  def from_bytes(cls, data: bytes) -> KernelDescriptor:
    """Decode 64 descriptor bytes.

    Raises:
      DescriptorError: not 64 bytes, or a reserved byte range is not zero.
    """
    if len(data) != SIZE:
      raise DescriptorError(f"a kernel descriptor is {SIZE} bytes, got {len(data)}")
    values = {}
    for member, offset, fmt in LAYOUT:
      value = struct.unpack_from(fmt, data, offset)[0]
      if member.startswith("reserved"):
        if any(value):
          raise DescriptorError(f"kernel descriptor {member} (bytes {offset}..{offset + len(value) - 1}) must be zero, "
                                f"is {value.hex()}")
        continue
      values[member] = value
    return cls(**values)

  def read_fields(self, generation: int) -> dict:
    """Top-level members as ints and each packed register as {field name: value} for the generation."""
    out = {}
    for member, _, _ in LAYOUT:
      if member.startswith("reserved"):
        continue
      value = getattr(self, member)
      out[member] = unpack_fields(member, generation, value) if member in REGISTERS else value
    return out

  def update(self, generation: int, **members) -> KernelDescriptor:
    """A copy with members replaced: ints for top-level members, {field: value} dicts (merged into the current value)
    or ints for the packed registers.

    Raises:
      DescriptorError: an unknown member or field.
    """
    changes = {}
    for member, value in members.items():
      if member not in {m for m, _, _ in LAYOUT if not m.startswith("reserved")}:
        close = difflib.get_close_matches(member, [m for m, _, _ in LAYOUT], n=3)
        raise DescriptorError(f"unknown kernel descriptor member {member!r}"
                              + (f"; did you mean {', '.join(close)}?" if close else ""))
      if isinstance(value, dict):
        value = pack_fields(member, generation, getattr(self, member), **value)
      changes[member] = value
    return dataclasses.replace(self, **changes)


def vgpr_granule(next_free_vgpr: int, wave32: bool = True) -> int:
  """GRANULATED_WORKITEM_VGPR_COUNT for GFX10-GFX12: max(0, ceil(vgprs_used / granule) - 1), granule 8 in wave32 and
  4 in wave64 (AMDGPUUsage compute_pgm_rsrc1 table)."""
  if not 0 <= next_free_vgpr <= MAX_VGPRS:
    raise DescriptorError(f"next_free_vgpr {next_free_vgpr} is out of range 0..{MAX_VGPRS}")
  granule = 8 if wave32 else 4
  return max(0, -(-next_free_vgpr // granule) - 1)


def sgpr_granule(next_free_sgpr: int, generation: int) -> int:
  """GRANULATED_WAVEFRONT_SGPR_COUNT: reserved and 0 on GFX10-GFX12 (128 SGPRs always allocated). next_free_sgpr is
  still checked against the 106 SGPRs s0..s105 a gfx11/gfx12 wave can name (llvm-mc-19 does not check it)."""
  check_generation(generation)
  if not 0 <= next_free_sgpr <= MAX_SGPRS:
    raise DescriptorError(f"next_free_sgpr {next_free_sgpr} is out of range 0..{MAX_SGPRS}")
  return 0


def user_sgpr_count(kernel_code_properties: int, generation: int) -> int:
  """User SGPRs the kernel_code_properties bits enable (the default of .amdhsa_user_sgpr_count)."""
  enabled = unpack_fields("kernel_code_properties", generation, kernel_code_properties)
  return sum(count for name, count in USER_SGPRS if enabled[name])


def descriptor_from_directives(target, **directives) -> KernelDescriptor:
  """The descriptor an `.amdhsa_kernel` block with these `.amdhsa_<name>` directives makes (LLVM 19's defaults for the
  rest). kernel_code_entry_byte_offset stays 0: the code object writer fills it in.

  Args:
    target: a generation (11, 12) or an object with a `.generation` (compiler.rdna Target) or a name (gfx1100).
    directives: next_free_vgpr and next_free_sgpr are required; see DIRECTIVES for the others.
  Raises:
    DescriptorError: an unknown directive (close matches named), one the generation lacks, a value that does not fit,
      user_sgpr_count below what the enabled user SGPRs need, or shared VGPRs that AMDGPUUsage forbids.
    CodeObjectError: an unknown processor name.
  """
  generation = generation_of(target)
  check_directives(directives, generation)
  values = {name: directives.get(name, default) for name, (default, gens, _, _) in DIRECTIVES.items()
            if generation in gens}
  for required in ("next_free_vgpr", "next_free_sgpr"):
    if values[required] is None:
      raise DescriptorError(f".amdhsa_{required} is required (AMDGPUUsage amdhsa-kernel-directives-table)")
  registers = dict.fromkeys(REGISTERS, 0)
  top = {}
  for name, value in values.items():
    _, _, register, field = DIRECTIVES[name]
    if register is None and field is not None:
      top[field] = int(value)
    elif register is not None and name not in ("next_free_vgpr", "next_free_sgpr", "user_sgpr_count"):
      registers[register] = pack_fields(register, generation, registers[register], **{field: int(value)})
  wave32 = bool(values["wavefront_size32"])
  check_shared_vgprs(values, wave32)
  rsrc1 = {"GRANULATED_WORKITEM_VGPR_COUNT": vgpr_granule(values["next_free_vgpr"], wave32),
           "GRANULATED_WAVEFRONT_SGPR_COUNT": sgpr_granule(values["next_free_sgpr"], generation)}
  registers["compute_pgm_rsrc1"] = pack_fields("compute_pgm_rsrc1", generation, registers["compute_pgm_rsrc1"], **rsrc1)
  implied = user_sgpr_count(registers["kernel_code_properties"], generation)
  count = implied if values["user_sgpr_count"] is None else int(values["user_sgpr_count"])
  if count < implied or count > MAX_USER_SGPRS:
    raise DescriptorError(f".amdhsa_user_sgpr_count {count} must be {implied}..{MAX_USER_SGPRS}: the enabled user "
                          f"SGPRs need {implied}")
  registers["compute_pgm_rsrc2"] = pack_fields("compute_pgm_rsrc2", generation, registers["compute_pgm_rsrc2"],
                                               USER_SGPR_COUNT=count)
  return KernelDescriptor(**top, **registers)


def check_shared_vgprs(values: dict, wave32: bool) -> None:
  """AMDGPUUsage compute_pgm_rsrc3 (GFX10-GFX11) SHARED_VGPR_COUNT: 0 in wave32; in wave64
  (GRANULATED_WORKITEM_VGPR_COUNT + 1) * 4 + shared_vgpr_count * 8 must not exceed 256."""
  shared = int(values.get("shared_vgpr_count", 0))
  if shared and wave32:
    raise DescriptorError(f".amdhsa_shared_vgpr_count {shared} needs wave64 (.amdhsa_wavefront_size32 0); in wave32 "
                          "it must be 0")
  total = (vgpr_granule(values["next_free_vgpr"], wave32) + 1) * 4 + shared * 8
  if shared and total > MAX_VGPRS:
    raise DescriptorError(f".amdhsa_shared_vgpr_count {shared} with .amdhsa_next_free_vgpr {values['next_free_vgpr']} "
                          f"needs {total} VGPRs, more than {MAX_VGPRS}")


def check_directives(directives: dict, generation: int) -> None:
  for name in directives:
    spec = DIRECTIVES.get(name)
    if spec is None:
      close = difflib.get_close_matches(name, list(DIRECTIVES), n=3)
      hint = f"; did you mean {', '.join(close)}?" if close else ""
      raise DescriptorError(f"unknown directive .amdhsa_{name}{hint}")
    if generation not in spec[1]:
      raise DescriptorError(f".amdhsa_{name} does not exist on gfx{generation} "
                            f"(only gfx{'/gfx'.join(str(g) for g in spec[1])})")


def generation_of(target) -> int:
  """11 or 12 from a generation number, a Target or a processor name (gfx1100, gfx11, rdna3, gfx1201, ...)."""
  if isinstance(target, int):
    check_generation(target)
    return target
  if hasattr(target, "generation"):
    return target.generation
  return processor(str(target)).generation
