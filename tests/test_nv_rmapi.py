"""nvdrv.rmapi against nvdrv/FACTS.md: every struct layout, escape request word and constant nvdrv sends to nvidia.ko.

The reference is FACTS.md, whose layouts were computed by compiling NVIDIA's 580.142 headers with gcc (DWARF record
layouts) and whose request words were computed from those sizes; rmapi.py's cffi declarations were written by hand.
A field typed or ordered wrongly in rmapi would corrupt an ioctl silently, so every offset, size and signedness of
every tabulated struct is compared, nested fields included.
"""
from __future__ import annotations

import pytest

import nv_facts
from nvdrv import rmapi
from nvdrv.rmapi import ffi

FACT_STRUCTS = nv_facts.struct_layouts()
DECLARED = set(ffi.list_types()[0])
CHECKED = sorted(DECLARED & set(FACT_STRUCTS))

# rmapi declares NvNotification's timeStamp wrapper struct flattened (nvgputypes.h: struct {NvU32 nanoseconds[2];}
# timeStamp; rmapi: NvU32 nanoseconds[2]): the same bytes under another path (STYLE.md wants NVIDIA's names). Mapped
# here so the bytes are still checked; test_known_renames fails once rmapi uses NVIDIA's path and the map can go.
RENAMED = {("NvNotification", "timeStamp.nanoseconds"): "nanoseconds"}
FLATTENED = {("NvNotification", "timeStamp")}

# FACTS.md type text -> whether the C type is signed (None: the sheet does not say, e.g. char).
SIGNED = {"NvS32": True, "int": True, "NvU8": False, "NvU16": False, "NvU32": False, "NvU64": False, "NvV16": False,
          "NvV32": False, "NvHandle": False, "NvBool": False, "NvP64": False, "NV_STATUS": False, "char": None}


def walk(struct: str, path: str):
  """(offset, cffi type) of the dotted field `path` in `struct`, walking ffi.typeof(...).fields."""
  ctype, offset = ffi.typeof(struct), 0
  for name in path.split("."):
    fields = dict(ctype.fields)
    if name not in fields:
      raise AssertionError(f"rmapi {struct} has no field {path!r} (FACTS.md tabulates it); fields: {list(fields)}")
    offset += fields[name].offset
    ctype = fields[name].type
  return offset, ctype


def test_facts_tabulate_most_declared_structs():
  # A parser that stopped finding tables would make the per-struct test below vacuous.
  assert len(CHECKED) >= 35, f"only {len(CHECKED)} rmapi structs found in FACTS.md: {CHECKED}"
  # Every rmapi type that FACTS.md does not tabulate on its own is a scalar typedef or appears nested in one that is.
  nested = {"nv_pci_info_t", "NV_MEMORY_DESC_PARAMS", "NvProcessorUuid", "UvmGpuMappingAttributes"}
  untabulated = {t for t in DECLARED - set(FACT_STRUCTS) if ffi.typeof(t).kind == "struct"}
  assert untabulated == nested, f"rmapi structs without a FACTS.md layout table: {sorted(untabulated - nested)}"


@pytest.mark.parametrize("struct", CHECKED)
def test_struct_layout_matches_facts(struct):
  size, fields = FACT_STRUCTS[struct]
  assert ffi.sizeof(struct) == size, f"sizeof({struct})"
  for path, offset, field_size, type_text in fields:
    if (struct, path) in FLATTENED:
      continue
    cpath = RENAMED.get((struct, path), path)
    got_offset, ctype = walk(struct, cpath)
    assert got_offset == offset, f"offsetof({struct}, {path})"
    assert ffi.offsetof(struct, *cpath.split(".")) == offset, f"ffi.offsetof({struct}, {path})"
    assert ffi.sizeof(ctype) == field_size, f"sizeof({struct}.{path}) ({type_text})"
    base = type_text.split("[")[0]
    leaf = ctype.item if ctype.kind == "array" else ctype
    if leaf.kind == "primitive" and SIGNED.get(base) is not None:
      assert (int(ffi.cast(leaf, -1)) < 0) == SIGNED[base], f"{struct}.{path}: {leaf.cname} vs {type_text}"


def test_known_renames():
  # The renames above must still be needed (and still point at the same bytes), or they should go.
  assert "timeStamp" not in dict(ffi.typeof("NvNotification").fields)
  assert ffi.offsetof("NvNotification", "nanoseconds") == 0


def test_uvm_mapping_attributes_layout():
  # FACTS.md 2 gives UvmGpuMappingAttributes (36 B) in prose rather than a table.
  layout = {"gpuUuid": 0, "gpuMappingType": 16, "gpuCachingType": 20, "gpuFormatType": 24, "gpuElementBits": 28,
            "gpuCompressionType": 32}
  assert ffi.sizeof("UvmGpuMappingAttributes") == 36
  for name, offset in layout.items():
    assert ffi.offsetof("UvmGpuMappingAttributes", name) == offset


# ---- request words (FACTS.md 1.1 / 1.2) ----
@pytest.mark.parametrize("escape,nrs,words", nv_facts.escape_words(), ids=lambda v: v if isinstance(v, str) else "")
def test_ioc_rw_reproduces_facts_words(escape, nrs, words):
  for word in words:
    # decode the word by the Linux _IOC layout: dir 31:30, size 29:16, type 15:8, nr 7:0
    assert word >> 30 == 3 and (word >> 8) & 0xFF == ord("F"), f"{escape}: 0x{word:08x} is not an _IOWR('F') word"
    nr, size = word & 0xFF, (word >> 16) & 0x3FFF
    assert nr in nrs, f"{escape}: 0x{word:08x} carries nr {nr}, the table says {nrs}"
    assert rmapi.ioc_rw(nr, size) == word


# escape constant -> the parameter block nvdrv sends with it (nvdrv/rm.py, memory.py, device.py)
ESCAPE_PARAMS = {
  "NV_ESC_RM_ALLOC_MEMORY": "nv_ioctl_nvos02_parameters_with_fd", "NV_ESC_RM_FREE": "NVOS00_PARAMETERS",
  "NV_ESC_RM_CONTROL": "NVOS54_PARAMETERS", "NV_ESC_RM_ALLOC": "NVOS21_PARAMETERS",
  "NV_ESC_RM_MAP_MEMORY": "nv_ioctl_nvos33_parameters_with_fd", "NV_ESC_RM_UNMAP_MEMORY": "NVOS34_PARAMETERS",
  "NV_ESC_CARD_INFO": "nv_ioctl_card_info_t[32]", "NV_ESC_REGISTER_FD": "nv_ioctl_register_fd_t",
  "NV_ESC_CHECK_VERSION_STR": "nv_ioctl_rm_api_version_t", "NV_ESC_ATTACH_GPUS_TO_FD": "NvU32[1]",
}


@pytest.mark.parametrize("escape", sorted(ESCAPE_PARAMS))
def test_escape_numbers_and_words(escape):
  rows = {name: (nrs, words) for name, nrs, words in nv_facts.escape_words()}
  nrs, words = rows[escape]
  assert getattr(rmapi, escape) == nrs[0]
  # the first word of a row is the one for the struct nvdrv uses (NV_ESC_RM_ALLOC: NVOS21, not NVOS64)
  assert rmapi.ioc_rw(getattr(rmapi, escape), ffi.sizeof(ESCAPE_PARAMS[escape])) == words[0]


def test_ioc_rw_size_field_limits():
  assert rmapi.ioc_rw(0x2B, (1 << 14) - 1) == (3 << 30) | (0x3FFF << 16) | (0x46 << 8) | 0x2B
  for size in (1 << 14, (1 << 14) + 1, -1):
    with pytest.raises(ValueError, match=f"of {size} bytes"):
      rmapi.ioc_rw(0x2B, size)
  with pytest.raises(ValueError, match="14-bit"):
    rmapi.ioc_rw(0x2B, 1 << 20)


# ---- constants: UVM commands, classes, controls, and the flag words nvdrv builds ----
@pytest.mark.parametrize("heading,prefixes", [("## 2.", ("UVM_",)), ("### 3.1", ("NV", "FERMI", "KEPLER")),
                                              ("## 4.", ("NV",))])
def test_constants_match_facts(heading, prefixes):
  facts = nv_facts.named_numbers(heading)
  compared = [name for name in dir(rmapi) if name in facts and name.startswith(prefixes)]
  assert len(compared) >= 6, f"FACTS.md {heading}: only {compared} compared"
  for name in compared:
    assert getattr(rmapi, name) == facts[name], name


def test_hopper_class_numbers():
  from nvdrv import methods
  facts = nv_facts.named_numbers("### 3.1")
  for name in ("HOPPER_CHANNEL_GPFIFO_A", "HOPPER_COMPUTE_A", "HOPPER_DMA_COPY_A"):
    assert getattr(methods, name) == facts[name]


def test_memory_flag_words():
  # FACTS.md 16.1: the recommended NVOS02 word for wrapping user pages (what MemoryManager.alloc_host sends)
  assert (rmapi.NVOS02_FLAGS_PHYSICALITY_NONCONTIGUOUS | rmapi.NVOS02_FLAGS_LOCATION_PCI
          | rmapi.NVOS02_FLAGS_COHERENCY_CACHED | rmapi.NVOS02_FLAGS_MAPPING_NO_MAP) == 0x40001010
  # FACTS.md 16.2: attr VIDMEM | HUGE | NONCONTIGUOUS and attr2 PREFER_NO_ZBC | GPU_CACHEABLE | PAGE_SIZE_HUGE 2MB
  assert (rmapi.NVOS32_ATTR_LOCATION_VIDMEM | rmapi.NVOS32_ATTR_PAGE_SIZE_HUGE
          | rmapi.NVOS32_ATTR_PHYSICALITY_NONCONTIGUOUS) == 0x09800000
  assert (rmapi.NVOS32_ATTR2_ZBC_PREFER_NO_ZBC | rmapi.NVOS32_ATTR2_GPU_CACHEABLE_YES
          | rmapi.NVOS32_ATTR2_PAGE_SIZE_HUGE_2MB) == 0x00100005
  # FACTS.md 3.2: PAGE_SIZE 24:23 BIG 2; PHYSICALITY 28:27 CONTIGUOUS 2; ALLOC_FLAGS ALIGNMENT_FORCE 0x100, ...
  assert rmapi.NVOS32_ATTR_PAGE_SIZE_BIG == 2 << 23
  assert rmapi.NVOS32_ATTR_PHYSICALITY_CONTIGUOUS == 2 << 27
  assert (rmapi.NVOS32_ALLOC_FLAGS_IGNORE_BANK_PLACEMENT, rmapi.NVOS32_ALLOC_FLAGS_ALIGNMENT_FORCE,
          rmapi.NVOS32_ALLOC_FLAGS_MAP_NOT_REQUIRED, rmapi.NVOS32_ALLOC_FLAGS_PERSISTENT_VIDMEM) == (
          0x1, 0x100, 0x8000, 0x10000)
