"""amdgpu firmware headers: decode them from the generated struct tables (am/generated/ucode.py, from
amdgpu_ucode.h) and check that every size and offset they give stays inside the file.

Every file starts with struct common_firmware_header (32 bytes): size_bytes (the whole file), header_size_bytes,
header_version_major/minor (which per-kind struct follows), ip_version, ucode_version, ucode_size_bytes and
ucode_array_offset_bytes (the payload), crc32. The per-kind struct continues it:

  kind  struct(s)                             regions (what amdgpu hands the PSP; amdgpu_ucode.c
                                              amdgpu_ucode_init_single_fw unless noted)
  gfx   gfx_firmware_header_v1_0, v2_0 (RS64) v2: ucode = [ucode_array_offset, +ucode_size_bytes), data (the
                                              per-pipe stacks: every RS64 Pn_STACK id loads this same region)
  rlc   rlc_firmware_header_v2_0 .. v2_4      image (RLC_G); the register lists and, from v2.1 on, the
                                              save/restore lists, v2.2 IRAM/DRAM, v2.3 RLC_P/RLC_V, v2.4 tap
                                              delays, each at its *_offset_bytes from the file start (amdgpu_rlc.c)
  sdma  sdma_firmware_header_v2_0, v3_0       v2: ctx (thread 0) at ucode_array_offset, ctl (thread 1) at
                                              ctl_ucode_offset; v3: ucode (RS64) at ucode_array_offset
  imu   imu_firmware_header_v1_0              iram at ucode_array_offset, dram right after it
  mes   mes_firmware_header_v1_0              ucode and data at their *_offset_bytes
  smc   smc_firmware_header_v1_0, v2_0, v2_1  image; v2.0 one soft pptable, v2.1 a table of them
                                              (smu_v13_0.c / smu_v14_0.c set_pptable_v2_*)
  sos   psp_firmware_header_v2_0, v2_1        one region per psp_fw_bin_desc (fw_type from enum psp_fw_type),
                                              offset_bytes counted from ucode_array_offset (amdgpu_psp.c
                                              parse_sos_bin_descriptor)
  ta    ta_firmware_header_v2_0               the same with enum ta_fw_type (parse_ta_bin_descriptor)

crc32: CRC-32 (zlib's) over bytes [32, size_bytes) for most files of firmware-amd-graphics 20250410 (434 of its 638
files, every gfx v2, imu, mes, sdma and psp v2 header of Navi31/Navi48), over [32, 512) for some (smu_14_0_3.bin,
gc_12_0_*_toc.bin, older smc/sos/ta); for rlc v2.1+ and smu_13_0_0.bin no region tried matches. amdgpu never checks
it (amdgpu_ucode.c only prints it), so the check is per file: the caller says which region to expect, or None.
"""
from __future__ import annotations

import re
import struct as pystruct
import zlib
from dataclasses import dataclass, field

from am.firmware.locate import FirmwareError, FirmwareFile
from am.generated import ucode

COMMON = "common_firmware_header"
COMMON_BYTES = ucode.SIZES[COMMON]
SCALARS = {"uint8_t": "B", "uint16_t": "H", "uint32_t": "I", "uint64_t": "Q"}
KIND_PREFIX = {"gfx": "gfx", "rlc": "rlc", "sdma": "sdma", "imu": "imu", "mes": "mes", "smc": "smc", "sos": "psp",
               "ta": "ta"}
SUPPORTED = {"gfx": {(1, 0), (2, 0)}, "rlc": {(2, 0), (2, 1), (2, 2), (2, 3), (2, 4)}, "sdma": {(2, 0), (3, 0)},
             "imu": {(1, 0)}, "mes": {(1, 0)}, "smc": {(1, 0), (2, 0), (2, 1)}, "sos": {(2, 0), (2, 1)},
             "ta": {(2, 0)}}
# UCODE_MAX_PSP_PACKAGING (amdgpu_ucode.h): descriptors that fit the header union after the common header and count
PSP_MAX_PACKAGING = (ucode.HEADER_UNION_BYTES - COMMON_BYTES - 4) // ucode.SIZES["psp_fw_bin_desc"] * 2
INHERITED = re.compile(r"^v\d+_\d+$")
CRC_REGIONS = {"image": None, "first512": 512}  # end of the CRC-covered bytes (None: size_bytes)


@dataclass(frozen=True)
class Region:
  """Bytes [offset, offset + size) of the file, described by the header fields `source`."""
  name: str
  offset: int
  size: int
  source: str
  version: int | None = None   # a PSP/TA component's fw_version, a list's ucode version


@dataclass
class FirmwareImage:
  name: str
  path: str
  kind: str
  struct: str                    # the per-kind header struct decoded
  version: tuple[int, int]       # header_version_major, header_version_minor
  header: dict[str, int]         # the header, inherited structs flattened ('header.size_bytes', 'ucode_size_bytes')
  regions: dict[str, Region]
  crc32: str                     # how crc32 checked out
  data: bytes = field(repr=False)

  @property
  def ucode_version(self) -> int:
    return self.header["header.ucode_version"]

  def region(self, name: str) -> Region:
    if name not in self.regions:
      raise FirmwareError(f"{self.name}: no region {name!r}; it has {', '.join(self.regions)}")
    return self.regions[name]

  def bytes_of(self, name: str) -> bytes:
    r = self.region(name)
    return self.data[r.offset:r.offset + r.size]


def read_struct(data: bytes, name: str, offset: int, where: str) -> dict[str, int]:
  """The struct's scalar members by flattened path (inherited vN_M prefixes dropped); flexible arrays skipped.

  Raises:
    FirmwareError: a member past the end of the data (names the member).
  """
  out: dict[str, int] = {}
  for member, member_offset, ctype in ucode.STRUCTS[name]:
    at = offset + member_offset
    if ctype.endswith("[]"):
      continue
    if ctype.startswith("struct "):
      inner = read_struct(data, ctype[len("struct "):], at, where)
      prefix = "" if INHERITED.match(member) else member + "."
      for key, value in inner.items():
        out[prefix + key] = value
      continue
    if "[" in ctype:
      continue
    fmt = "<" + SCALARS[ctype]
    if at + pystruct.calcsize(fmt) > len(data):
      raise FirmwareError(f"{where}: header field {name}.{member} at byte {at} lies past the end of the file "
                          f"({len(data)} bytes); truncated?")
    out[member] = pystruct.unpack_from(fmt, data, at)[0]
  return out


def parse(file: FirmwareFile, kind: str, crc: str | None = None) -> FirmwareImage:
  """Decode and check one firmware file.

  Args:
    file: what am.firmware.locate.find returned.
    kind: gfx, rlc, sdma, imu, mes, smc, sos or ta (which per-kind header to expect).
    crc: the region crc32 covers in this file ('image' = [32, size_bytes), 'first512' = [32, 512)), or None when it
      is not a checksum of the file (see the module docstring). Either known region matching is accepted.

  Raises:
    FirmwareError: naming the file and the header field that is wrong (size, version, offset, crc32).
  """
  data, where = file.data, file.path
  if kind not in KIND_PREFIX:
    raise ValueError(f"firmware kind {kind!r}: one of {', '.join(KIND_PREFIX)}")
  if len(data) < COMMON_BYTES:
    raise FirmwareError(f"{where}: {len(data)} bytes, shorter than the {COMMON_BYTES}-byte common_firmware_header "
                        f"(truncated)")
  common = read_struct(data, COMMON, 0, where)
  if common["size_bytes"] != len(data):
    raise FirmwareError(f"{where}: header field size_bytes says {common['size_bytes']} bytes but the file has "
                        f"{len(data)} (truncated or corrupt)")
  version = (common["header_version_major"], common["header_version_minor"])
  struct_name = f"{KIND_PREFIX[kind]}_firmware_header_v{version[0]}_{version[1]}"
  if version not in SUPPORTED[kind] or struct_name not in ucode.STRUCTS:
    supported = ", ".join(f"v{a}.{b}" for a, b in sorted(SUPPORTED[kind]))
    raise FirmwareError(f"{where}: header_version_major/minor {version[0]}.{version[1]} is not a {kind} header this "
                        f"parser knows ({supported})")
  if common["header_size_bytes"] != ucode.SIZES[struct_name]:
    raise FirmwareError(f"{where}: header field header_size_bytes is {common['header_size_bytes']}, but "
                        f"{struct_name} is {ucode.SIZES[struct_name]} bytes")
  header = read_struct(data, struct_name, 0, where)
  image = FirmwareImage(file.name, where, kind, struct_name, version, header, {}, "", data)
  add_region(image, "image", common["ucode_array_offset_bytes"], common["ucode_size_bytes"],
             "ucode_array_offset_bytes/ucode_size_bytes")
  if common["ucode_array_offset_bytes"] < common["header_size_bytes"]:
    raise FirmwareError(f"{where}: header field ucode_array_offset_bytes ({common['ucode_array_offset_bytes']}) "
                        f"points into the {common['header_size_bytes']}-byte header")
  KIND_REGIONS[kind](image)
  image.crc32 = check_crc(image, crc)
  return image


def add_region(image: FirmwareImage, name: str, offset: int, size: int, source: str,
               version: int | None = None, within: Region | None = None) -> None:
  bounds = within or Region("file", 0, len(image.data), "size_bytes")
  if size and not (bounds.offset <= offset and offset + size <= bounds.offset + bounds.size):
    raise FirmwareError(f"{image.path}: {name} at bytes [{offset}, {offset + size}) from header fields {source} lies "
                        f"outside the {bounds.name} [{bounds.offset}, {bounds.offset + bounds.size})")
  image.regions[name] = Region(name, offset, size, source, version)


def check_crc(image: FirmwareImage, crc: str | None) -> str:
  stored = image.header["header.crc32"]
  size = image.header["header.size_bytes"]
  matched = [name for name, end in CRC_REGIONS.items() if zlib.crc32(image.data[COMMON_BYTES:end or size]) == stored]
  if matched:
    return f"crc32 0x{stored:08x} matches bytes [32, {CRC_REGIONS[matched[0]] or size})"
  if crc is None:
    return f"crc32 0x{stored:08x} not checked (matches no known region of this file; amdgpu ignores it)"
  if crc not in CRC_REGIONS:
    raise ValueError(f"crc region {crc!r}: one of {', '.join(CRC_REGIONS)} or None")
  end = CRC_REGIONS[crc] or size
  actual = zlib.crc32(image.data[COMMON_BYTES:end])
  raise FirmwareError(f"{image.path}: header field crc32 is 0x{stored:08x} but bytes [32, {end}) give 0x{actual:08x} "
                      f"(corrupt file?)")


# ---- per-kind regions ----
def gfx_regions(image: FirmwareImage) -> None:
  h = image.header
  if image.version == (2, 0):  # RS64: the ucode proper, then the data (stack) region all pipes share
    add_region(image, "ucode", h["header.ucode_array_offset_bytes"], h["ucode_size_bytes"],
               "ucode_array_offset_bytes/ucode_size_bytes (v2)", within=image.regions["image"])
    add_region(image, "data", h["data_offset_bytes"], h["data_size_bytes"], "data_offset_bytes/data_size_bytes")
    return
  jt_offset = h["header.ucode_array_offset_bytes"] + h["jt_offset"] * 4  # v1: jump table in dwords from the ucode
  add_region(image, "jt", jt_offset, h["jt_size"] * 4, "jt_offset/jt_size (dwords)", within=image.regions["image"])


RLC_LISTS = {
  0: (("reg_list_format", "reg_list_format_array_offset_bytes", "reg_list_format_size_bytes"),
      ("reg_list", "reg_list_array_offset_bytes", "reg_list_size_bytes"),
      ("reg_list_format_separate", "reg_list_format_separate_array_offset_bytes",
       "reg_list_format_separate_size_bytes"),
      ("reg_list_separate", "reg_list_separate_array_offset_bytes", "reg_list_separate_size_bytes")),
  1: (("save_restore_list_cntl", "save_restore_list_cntl_offset_bytes", "save_restore_list_cntl_size_bytes"),
      ("save_restore_list_gpm", "save_restore_list_gpm_offset_bytes", "save_restore_list_gpm_size_bytes"),
      ("save_restore_list_srm", "save_restore_list_srm_offset_bytes", "save_restore_list_srm_size_bytes")),
  2: (("rlc_iram", "rlc_iram_ucode_offset_bytes", "rlc_iram_ucode_size_bytes"),
      ("rlc_dram", "rlc_dram_ucode_offset_bytes", "rlc_dram_ucode_size_bytes")),
  3: (("rlcp", "rlcp_ucode_offset_bytes", "rlcp_ucode_size_bytes"),
      ("rlcv", "rlcv_ucode_offset_bytes", "rlcv_ucode_size_bytes")),
  4: tuple((f"{n}_tap_delays", f"{n}_tap_delays_ucode_offset_bytes", f"{n}_tap_delays_ucode_size_bytes")
           for n in ("global", "se0", "se1", "se2", "se3")),
}


def rlc_regions(image: FirmwareImage) -> None:
  h = image.header
  for minor in range(image.version[1] + 1):
    for name, offset_key, size_key in RLC_LISTS[minor]:
      version_key = {"save_restore_list_cntl": "save_restore_list_cntl_ucode_ver",
                     "save_restore_list_gpm": "save_restore_list_gpm_ucode_ver",
                     "save_restore_list_srm": "save_restore_list_srm_ucode_ver", "rlcp": "rlcp_ucode_version",
                     "rlcv": "rlcv_ucode_version"}.get(name)
      add_region(image, name, h[offset_key], h[size_key], f"{offset_key}/{size_key}",
                 h[version_key] if version_key else None)


def sdma_regions(image: FirmwareImage) -> None:
  h = image.header
  if image.version == (3, 0):
    add_region(image, "ucode", h["header.ucode_array_offset_bytes"], h["ucode_size_bytes"],
               "ucode_array_offset_bytes/ucode_size_bytes (v3)", within=image.regions["image"])
    return
  add_region(image, "ctx", h["header.ucode_array_offset_bytes"], h["ctx_ucode_size_bytes"],
             "ucode_array_offset_bytes/ctx_ucode_size_bytes", within=image.regions["image"])
  add_region(image, "ctl", h["ctl_ucode_offset"], h["ctl_ucode_size_bytes"], "ctl_ucode_offset/ctl_ucode_size_bytes",
             within=image.regions["image"])


def imu_regions(image: FirmwareImage) -> None:
  h = image.header
  start = h["header.ucode_array_offset_bytes"]
  add_region(image, "iram", start, h["imu_iram_ucode_size_bytes"],
             "ucode_array_offset_bytes/imu_iram_ucode_size_bytes", within=image.regions["image"])
  add_region(image, "dram", start + h["imu_iram_ucode_size_bytes"], h["imu_dram_ucode_size_bytes"],
             "ucode_array_offset_bytes+imu_iram_ucode_size_bytes/imu_dram_ucode_size_bytes",
             within=image.regions["image"])


def mes_regions(image: FirmwareImage) -> None:
  h = image.header
  add_region(image, "ucode", h["mes_ucode_offset_bytes"], h["mes_ucode_size_bytes"],
             "mes_ucode_offset_bytes/mes_ucode_size_bytes", h["mes_ucode_version"])
  add_region(image, "data", h["mes_ucode_data_offset_bytes"], h["mes_ucode_data_size_bytes"],
             "mes_ucode_data_offset_bytes/mes_ucode_data_size_bytes", h["mes_ucode_data_version"])


def smc_regions(image: FirmwareImage) -> None:
  h = image.header
  if image.version == (2, 0):
    add_region(image, "pptable", h["ppt_offset_bytes"], h["ppt_size_bytes"], "ppt_offset_bytes/ppt_size_bytes")
  elif image.version == (2, 1):
    entry = "smc_soft_pptable_entry"
    for i in range(h["pptable_count"]):
      at = h["pptable_entry_offset"] + i * ucode.SIZES[entry]
      e = read_struct(image.data, entry, at, f"{image.path} pptable entry {i} (pptable_entry_offset)")
      add_region(image, f"pptable {e['id']}", e["ppt_offset_bytes"], e["ppt_size_bytes"],
                 f"pptable entry {i} ppt_offset_bytes/ppt_size_bytes")


def component_regions(image: FirmwareImage, count_key: str, array_struct: str, type_enum: str) -> None:
  """PSP v2 component table: psp_fw_bin_desc entries right after the fixed header, each one's offset_bytes counted
  from ucode_array_offset_bytes."""
  h = image.header
  count = h[count_key]
  if count >= PSP_MAX_PACKAGING:
    raise FirmwareError(f"{image.path}: header field {count_key} is {count}; at most {PSP_MAX_PACKAGING - 1} "
                        f"descriptors fit (UCODE_MAX_PSP_PACKAGING)")
  desc = ucode.SIZES["psp_fw_bin_desc"]
  table = next(off for name, off, ctype in ucode.STRUCTS[array_struct] if ctype == "struct psp_fw_bin_desc[]")
  if table + count * desc > h["header.ucode_array_offset_bytes"]:
    raise FirmwareError(f"{image.path}: {count} descriptors ({count_key}) from byte {table} run into the payload at "
                        f"ucode_array_offset_bytes {h['header.ucode_array_offset_bytes']}")
  names = {v: k for k, v in ucode.ENUMS[type_enum].items()}
  payload = image.regions["image"]
  for i in range(count):
    e = read_struct(image.data, "psp_fw_bin_desc", table + i * desc, image.path)
    name = names.get(e["fw_type"], f"{type_enum}_unk_{e['fw_type']}")
    add_region(image, name, payload.offset + e["offset_bytes"], e["size_bytes"],
               f"{count_key}[{i}] offset_bytes/size_bytes", e["fw_version"], within=payload)


def sos_regions(image: FirmwareImage) -> None:
  component_regions(image, "psp_fw_bin_count", image.struct, "psp_fw_type")


def ta_regions(image: FirmwareImage) -> None:
  component_regions(image, "ta_fw_bin_count", image.struct, "ta_fw_type")


KIND_REGIONS = {"gfx": gfx_regions, "rlc": rlc_regions, "sdma": sdma_regions, "imu": imu_regions, "mes": mes_regions,
                "smc": smc_regions, "sos": sos_regions, "ta": ta_regions}
