"""AMDHSA code object v5 metadata: the msgpack map in the NT_AMDGPU_METADATA note, as typed kernels and arguments.

    hidden, kernarg_size = implicit_args(20)     # v5 hidden arguments from offset 24; kernarg_size 24 + 256
    args = (pointer_arg("a", 0), pointer_arg("b", 8), value_arg("n", 16, 4)) + hidden
    meta = KernelMeta("vadd", "vadd.kd", kernarg_size, ..., args=args)
    doc = metadata_document("amdgcn-amd-amdhsa--gfx1100", [meta])   # {"amdhsa.kernels": [...], ...} -> msgpack.pack

Keys, types and required flags: llvm-19-doc (1:19.1.7-3~deb12u1) /usr/share/doc/llvm-19-doc/html/_sources/
AMDGPUUsage.rst.txt, tables "AMDHSA Code Object V3 Metadata Map", "... V3 Kernel Metadata Map", "... V3 Kernel
Argument Metadata Map", their V4 changes (amdhsa.version [1, 1], amdhsa.target required) and V5 changes
(amdhsa.version [1, 2]; kernel keys .uses_dynamic_stack,
.workgroup_processor_mode, .uniform_work_group_size; the hidden_* value kinds of the implicit arguments). Maps are
written with their keys sorted, as LLVM's msgpack::Document (a std::map) writes them, so the note's bytes match
LLVM's for the same content. Keys the tables do not name are kept ("Additional information can be added to the maps").
Deviation: the docs type .workgroup_processor_mode as boolean; llc-19 writes the integer 1, so both are accepted.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

__all__ = ["HIDDEN_ARGS_V5", "KernelArg", "KernelMeta", "MetadataError", "VERSION_V5", "implicit_args",
           "metadata_document", "parse_document", "pointer_arg", "value_arg"]
VERSION_V5 = [1, 2]
TOP_KEYS = {"amdhsa.version": ("ints", True), "amdhsa.target": ("str", True), "amdhsa.kernels": ("maps", True),
            "amdhsa.printf": ("strs", False)}
# kernel map key -> (type, required)
KERNEL_KEYS = {
  ".name": ("str", True), ".symbol": ("str", True), ".language": ("str", False), ".language_version": ("ints", False),
  ".args": ("maps", False), ".reqd_workgroup_size": ("ints", False), ".workgroup_size_hint": ("ints", False),
  ".vec_type_hint": ("str", False), ".device_enqueue_symbol": ("str", False),
  ".kernarg_segment_size": ("int", True), ".group_segment_fixed_size": ("int", True),
  ".private_segment_fixed_size": ("int", True), ".kernarg_segment_align": ("int", True),
  ".wavefront_size": ("int", True), ".sgpr_count": ("int", True), ".vgpr_count": ("int", True),
  ".agpr_count": ("int", False), ".max_flat_workgroup_size": ("int", True), ".sgpr_spill_count": ("int", False),
  ".vgpr_spill_count": ("int", False), ".kind": ("str", False), ".max_num_work_groups_x": ("int", False),
  ".max_num_work_groups_y": ("int", False), ".max_num_work_groups_z": ("int", False),
  ".uses_dynamic_stack": ("bool", False), ".workgroup_processor_mode": ("flag", False),
  ".uniform_work_group_size": ("int", False),
}
ARG_KEYS = {
  ".name": ("str", False), ".type_name": ("str", False), ".size": ("int", True), ".offset": ("int", True),
  ".value_kind": ("str", True), ".value_type": ("str", False), ".pointee_align": ("int", False),
  ".address_space": ("str", False), ".access": ("str", False), ".actual_access": ("str", False),
  ".is_const": ("bool", False), ".is_restrict": ("bool", False), ".is_volatile": ("bool", False),
  ".is_pipe": ("bool", False),
}
VALUE_KINDS = (
  "by_value", "global_buffer", "dynamic_shared_pointer", "sampler", "image", "pipe", "queue",   # V3
  "hidden_global_offset_x", "hidden_global_offset_y", "hidden_global_offset_z", "hidden_none", "hidden_printf_buffer",
  "hidden_hostcall_buffer", "hidden_default_queue", "hidden_completion_action", "hidden_multigrid_sync_arg",
  "hidden_block_count_x", "hidden_block_count_y", "hidden_block_count_z", "hidden_group_size_x",   # V5 additions
  "hidden_group_size_y", "hidden_group_size_z", "hidden_remainder_x", "hidden_remainder_y", "hidden_remainder_z",
  "hidden_grid_dims", "hidden_heap_v1", "hidden_dynamic_lds_size", "hidden_private_base", "hidden_shared_base",
  "hidden_queue_ptr",
)
ADDRESS_SPACES = ("private", "global", "constant", "local", "generic", "region")
# Code object v5 implicit ("hidden") arguments: (value kind, offset from the start of the implicit area, size).
# The area is 256 bytes and starts at the explicit arguments' end rounded up to 8. Offsets and sizes as llc-19
# -mtriple=amdgcn-amd-amdhsa -mcpu=gfx1100 writes them for a kernel that uses the implicit argument pointer, printf
# and dynamic LDS; private_base / shared_base (192 / 196) from LLVM 19 SIDefines.h ImplicitArg::Offset_COV5 (llc-19
# reads the apertures from registers on gfx11 and does not list them).
HIDDEN_ARGS_V5 = (
  ("hidden_block_count_x", 0, 4), ("hidden_block_count_y", 4, 4), ("hidden_block_count_z", 8, 4),
  ("hidden_group_size_x", 12, 2), ("hidden_group_size_y", 14, 2), ("hidden_group_size_z", 16, 2),
  ("hidden_remainder_x", 18, 2), ("hidden_remainder_y", 20, 2), ("hidden_remainder_z", 22, 2),
  ("hidden_global_offset_x", 40, 8), ("hidden_global_offset_y", 48, 8), ("hidden_global_offset_z", 56, 8),
  ("hidden_grid_dims", 64, 2), ("hidden_printf_buffer", 72, 8), ("hidden_hostcall_buffer", 80, 8),
  ("hidden_multigrid_sync_arg", 88, 8), ("hidden_heap_v1", 96, 8), ("hidden_default_queue", 104, 8),
  ("hidden_completion_action", 112, 8), ("hidden_dynamic_lds_size", 120, 4), ("hidden_private_base", 192, 4),
  ("hidden_shared_base", 196, 4), ("hidden_queue_ptr", 200, 8),
)
IMPLICIT_AREA_SIZE = 256
IMPLICIT_AREA_ALIGN = 8
# the hidden arguments a dispatcher fills for a plain compute kernel (grid and work-group sizes)
DEFAULT_HIDDEN = ("hidden_block_count_x", "hidden_block_count_y", "hidden_block_count_z", "hidden_group_size_x",
                  "hidden_group_size_y", "hidden_group_size_z", "hidden_remainder_x", "hidden_remainder_y",
                  "hidden_remainder_z", "hidden_global_offset_x", "hidden_global_offset_y", "hidden_global_offset_z",
                  "hidden_grid_dims")


class MetadataError(ValueError):
  """Metadata that misses a required key, has a value of the wrong type, or an unknown argument kind."""


@dataclass(frozen=True)
class KernelArg:
  """One `.args` entry: where the argument sits in the kernarg segment and how the runtime fills it."""
  offset: int
  size: int
  value_kind: str
  name: str | None = None
  address_space: str | None = None
  other: dict = field(default_factory=dict)    # further keys (.type_name, .is_const, ...) as they appear in the map

  def to_map(self) -> dict:
    if self.value_kind not in VALUE_KINDS:
      close = difflib.get_close_matches(self.value_kind, VALUE_KINDS, n=3)
      raise MetadataError(f"unknown .value_kind {self.value_kind!r}" + (f"; did you mean {', '.join(close)}?"
                                                                           if close else ""))
    if self.address_space is not None and self.address_space not in ADDRESS_SPACES:
      raise MetadataError(f".address_space {self.address_space!r} is not one of {', '.join(ADDRESS_SPACES)}")
    out = {".offset": self.offset, ".size": self.size, ".value_kind": self.value_kind, **self.other}
    if self.name is not None:
      out[".name"] = self.name
    if self.address_space is not None:
      out[".address_space"] = self.address_space
    check_map(out, ARG_KEYS, f"argument at offset {self.offset}")
    return dict(sorted(out.items()))

  @classmethod
  def from_map(cls, m: dict, where: str) -> KernelArg:
    check_map(m, ARG_KEYS, where)
    other = {k: v for k, v in m.items() if k not in (".offset", ".size", ".value_kind", ".name", ".address_space")}
    return cls(m[".offset"], m[".size"], m[".value_kind"], m.get(".name"), m.get(".address_space"), other)


# KernelMeta attribute -> map key, for the required scalar keys
KERNEL_FIELDS = ("name", "symbol", "kernarg_segment_size", "group_segment_fixed_size", "private_segment_fixed_size",
                 "kernarg_segment_align", "wavefront_size", "sgpr_count", "vgpr_count", "max_flat_workgroup_size")


@dataclass(frozen=True)
class KernelMeta:
  """One `amdhsa.kernels` entry: the required keys as attributes, `args`, and any further keys in `other`."""
  name: str
  symbol: str
  kernarg_segment_size: int
  group_segment_fixed_size: int
  private_segment_fixed_size: int
  kernarg_segment_align: int
  wavefront_size: int
  sgpr_count: int
  vgpr_count: int
  max_flat_workgroup_size: int
  args: tuple = ()
  other: dict = field(default_factory=dict)

  def to_map(self) -> dict:
    """The kernel's msgpack map (keys sorted).

    Raises:
      MetadataError: a value of the wrong type, an unknown value kind, or an argument past kernarg_segment_size.
    """
    out = {f".{name}": getattr(self, name) for name in KERNEL_FIELDS}
    out.update(self.other)
    if self.args:
      out[".args"] = [arg.to_map() for arg in self.args]
    for arg in self.args:
      if arg.offset + arg.size > self.kernarg_segment_size:
        raise MetadataError(f"kernel {self.name}: argument {arg.name or arg.value_kind} at {arg.offset}+{arg.size} "
                            f"ends past .kernarg_segment_size {self.kernarg_segment_size}")
    check_map(out, KERNEL_KEYS, f"kernel {self.name!r}")
    return dict(sorted(out.items()))

  @classmethod
  def from_map(cls, m: dict, where: str) -> KernelMeta:
    check_map(m, KERNEL_KEYS, where)
    name = m[".name"]
    args = tuple(KernelArg.from_map(a, f"{where}, argument {i}") for i, a in enumerate(m.get(".args", [])))
    other = {k: v for k, v in m.items() if k[1:] not in KERNEL_FIELDS and k != ".args"}
    return cls(name, *(m[f".{n}"] for n in KERNEL_FIELDS[1:]), args=args, other=other)


def type_ok(value, kind: str) -> bool:
  is_int = isinstance(value, int) and not isinstance(value, bool)
  if kind == "int":
    return is_int
  if kind == "str":
    return isinstance(value, str)
  if kind == "bool":
    return isinstance(value, bool)
  if kind == "flag":
    return isinstance(value, bool) or is_int and value in (0, 1)
  if kind in ("ints", "strs", "maps"):
    item = {"ints": "int", "strs": "str", "maps": None}[kind]
    if not isinstance(value, (list, tuple)):
      return False
    return all(isinstance(x, dict) if item is None else type_ok(x, item) for x in value)
  raise AssertionError(kind)


def check_map(m, keys: dict, where: str) -> None:
  """Raise MetadataError unless m is a map with every required key and known keys of the right type."""
  if not isinstance(m, dict):
    raise MetadataError(f"{where}: expected a map, got {type(m).__name__}")
  for key, (kind, required) in keys.items():
    if key not in m:
      if required:
        raise MetadataError(f"{where}: required key {key!r} is missing (AMDGPUUsage code object metadata)")
      continue
    if not type_ok(m[key], kind):
      raise MetadataError(f"{where}: {key} = {m[key]!r} should be {TYPE_WORDS[kind]}")


TYPE_WORDS = {"int": "an integer", "str": "a string", "bool": "a boolean", "flag": "a boolean or 0/1",
              "ints": "a sequence of integers", "strs": "a sequence of strings", "maps": "a sequence of maps"}


def metadata_document(target: str, kernels: list) -> dict:
  """The whole note's map for code object v5: amdhsa.kernels, amdhsa.target, amdhsa.version [1, 2]."""
  names = [k.name for k in kernels]
  if len(set(names)) != len(names):
    raise MetadataError(f"kernel names repeat: {names}")
  return {"amdhsa.kernels": [k.to_map() for k in kernels], "amdhsa.target": target, "amdhsa.version": list(VERSION_V5)}


def parse_document(doc, where: str) -> tuple:
  """A decoded note map -> (amdhsa.version list, amdhsa.target, tuple of KernelMeta).

  Raises:
    MetadataError: a missing or mistyped key, naming `where` (the file) and the kernel.
  """
  check_map(doc, TOP_KEYS, f"{where}: metadata")
  version = list(doc["amdhsa.version"])
  if len(version) != 2 or version[0] != 1:
    raise MetadataError(f"{where}: amdhsa.version {version} is not a v3+ metadata version [1, minor]")
  kernels = tuple(KernelMeta.from_map(k, f"{where}: amdhsa.kernels[{i}]") for i, k in enumerate(doc["amdhsa.kernels"]))
  return version, doc["amdhsa.target"], kernels


def pointer_arg(name: str | None, offset: int, address_space: str = "global") -> KernelArg:
  """A 64-bit global buffer pointer argument."""
  return KernelArg(offset, 8, "global_buffer", name, address_space)


def value_arg(name: str | None, offset: int, size: int) -> KernelArg:
  """An argument copied by value into the kernarg segment."""
  return KernelArg(offset, size, "by_value", name)


def implicit_args(explicit_end: int, kinds: tuple = DEFAULT_HIDDEN) -> tuple:
  """The v5 hidden arguments `kinds` placed after explicit arguments that end at byte `explicit_end`.

  Returns:
    (tuple of KernelArg, kernarg segment size including the whole 256-byte implicit area).
  Raises:
    MetadataError: a kind that is not a v5 hidden argument.
  """
  table = {kind: (offset, size) for kind, offset, size in HIDDEN_ARGS_V5}
  start = -(-explicit_end // IMPLICIT_AREA_ALIGN) * IMPLICIT_AREA_ALIGN
  args = []
  for kind in kinds:
    if kind not in table:
      close = difflib.get_close_matches(kind, list(table), n=3)
      raise MetadataError(f"{kind!r} is not a code object v5 hidden argument"
                          + (f"; did you mean {', '.join(close)}?" if close else ""))
    offset, size = table[kind]
    args.append(KernelArg(start + offset, size, kind))
  return tuple(sorted(args, key=lambda a: a.offset)), start + IMPLICIT_AREA_SIZE
