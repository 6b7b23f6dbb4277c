"""am/firmware: the real Navi31/Navi48 firmware of firmware-amd-graphics 20250410-2~bpo12+1 (bookworm-backports),
found through AM_FIRMWARE_DIR (.ci/run fetches it), plus synthetic files for every error path and compression.

Without AM_FIRMWARE_DIR the real-file tests skip locally and fail under CI=true.
"""
from __future__ import annotations

import lzma
import shutil
import struct
import subprocess
import zlib

import pytest

from am.firmware.headers import parse
from am.firmware.locate import FirmwareError, FirmwareMissingError, find
from am.firmware.sets import FirmwareSet
from am.generated import ucode


# ---- the real files ----
NAVI31_VERSIONS = {"sos": (2, 0), "ta": (2, 0), "smc": (2, 1), "sdma": (2, 0), "pfp": (2, 0), "me": (2, 0),
                   "mec": (2, 0), "imu": (1, 0), "rlc": (2, 3)}
NAVI48_VERSIONS = {**NAVI31_VERSIONS, "smc": (2, 0), "sdma": (3, 0), "rlc": (2, 2)}


@pytest.mark.parametrize("asic,versions", [("navi31", NAVI31_VERSIONS), ("navi48", NAVI48_VERSIONS)])
def test_firmware_set_parses_the_real_files(fw_dir, asic, versions):
  fs = FirmwareSet(asic, fw_dir)
  assert {role: image.version for role, image in fs.files.items()} == versions
  for image in fs.files.values():
    assert image.header["header.size_bytes"] == len(image.data)
    assert "matches" in image.crc32 or image.kind in ("rlc", "smc")
  for step in fs.steps:
    assert step.size > 0 and len(fs.payload(step)) == step.size


def test_navi31_load_order(fw_dir):
  fs = FirmwareSet("navi31", fw_dir)
  commands = [s.command for s in fs.steps]
  # psp_v13_0: KDB, SPL (the KDB image, as psp_v13_0_bootloader_load_spl sends it), SYS_DRV, SOS; no SOC/INTF/DBG/RAS
  # components in psp_13_0_0_sos.bin
  assert commands[:4] == ["PSP_BL__LOAD_KEY_DATABASE", "PSP_BL__LOAD_TOS_SPL_TABLE", "PSP_BL__LOAD_SYSDRV",
                          "PSP_BL__LOAD_SOSDRV"]
  assert fs.steps[1].region == "PSP_FW_TYPE_PSP_KDB"
  assert commands[4] == "GFX_CMD_ID_LOAD_TOC" and fs.steps[5].fw_type == "GFX_FW_TYPE_SMU"
  ip = [s for s in fs.steps[6:] if s.command == "GFX_CMD_ID_LOAD_IP_FW" and s.ucode_id.startswith("AMDGPU_")]
  ids = [ucode.ENUMS["AMDGPU_UCODE_ID"][s.ucode_id] for s in ip]
  assert ids == sorted(ids)
  assert [s.fw_type for s in ip][:3] == ["GFX_FW_TYPE_SDMA_UCODE_TH0", "GFX_FW_TYPE_SDMA_UCODE_TH1",
                                         "GFX_FW_TYPE_RS64_PFP"]
  assert ip[-1].fw_type == "GFX_FW_TYPE_RLC_G"
  assert {"GFX_FW_TYPE_RLC_P", "GFX_FW_TYPE_RLC_V", "GFX_FW_TYPE_RLC_IRAM", "GFX_FW_TYPE_IMU_D"} <= {
    s.fw_type for s in ip}
  tail = [(s.command, s.required) for s in fs.steps[len(ip) + 6:]]
  assert tail[:2] == [("GFX_CMD_ID_LOAD_ASD", True), ("GFX_CMD_ID_LOAD_IP_FW", True)]
  assert all(cmd == "GFX_CMD_ID_LOAD_TA" and not required for cmd, required in tail[2:])


def test_navi48_load_order_and_rs64_stacks(fw_dir):
  fs = FirmwareSet("navi48", fw_dir)
  boot = [s.command for s in fs.steps if s.command.startswith("PSP_BL__")]
  assert boot == ["PSP_BL__LOAD_KEY_DATABASE", "PSP_BL__LOAD_TOS_SPL_TABLE", "PSP_BL__LOAD_SYSDRV",
                  "PSP_BL__LOAD_SOCDRV", "PSP_BL__LOAD_INTFDRV", "PSP_BL__LOAD_HADDRV", "PSP_BL__LOAD_RASDRV",
                  "PSP_BL__LOAD_IPKEYMGRDRV", "PSP_BL__LOAD_SOSDRV"]
  by_type = {s.fw_type: s for s in fs.steps if s.fw_type}
  assert by_type["GFX_FW_TYPE_SDMA_UCODE_TH0"].file == "sdma_7_0_1.bin"  # the v3 (RS64) SDMA ucode goes as TH0
  mec = fs.files["mec"]
  stacks = [by_type[f"GFX_FW_TYPE_RS64_MEC_P{n}_STACK"] for n in range(4)]
  assert {(s.offset, s.size) for s in stacks} == {(mec.region("data").offset, mec.region("data").size)}
  assert mec.region("ucode").size == mec.header["ucode_size_bytes"] < mec.header["header.ucode_size_bytes"]
  assert by_type["GFX_FW_TYPE_RS64_PFP_P1_STACK"].file == "gc_12_0_1_pfp.bin"


def test_navi31_revision_0xce_takes_rlc_1(fw_dir):
  assert FirmwareSet("navi31", fw_dir, pci_revision=0xCE).files["rlc"].name == "gc_11_0_0_rlc_1.bin"


def test_psp_component_tables(fw_dir):
  sos = parse(find("psp_14_0_3_sos.bin", fw_dir), "sos", "image")
  names = [n for n in sos.regions if n != "image"]
  assert len(names) == sos.header["psp_fw_bin_count"] == 11
  assert "PSP_FW_TYPE_PSP_IPKEYMGR_DRV" in names
  payload = sos.region("image")
  assert all(payload.offset <= r.offset and r.offset + r.size <= payload.offset + payload.size
             for r in sos.regions.values())
  smc = parse(find("smu_13_0_0.bin", fw_dir), "smc")
  assert sum(name.startswith("pptable ") for name in smc.regions) == smc.header["pptable_count"]


def test_corrupt_real_file_names_crc32(fw_dir, tmp_path):
  data = bytearray(find("sdma_6_0_0.bin", fw_dir).data)
  data[1000] ^= 0xFF
  (tmp_path / "sdma_6_0_0.bin").write_bytes(bytes(data))
  with pytest.raises(FirmwareError, match="sdma_6_0_0.bin: header field crc32 is 0xa9464a1e"):
    parse(find("sdma_6_0_0.bin", str(tmp_path)), "sdma", "image")


def test_truncated_real_file_names_size_bytes(fw_dir, tmp_path):
  data = find("psp_13_0_0_sos.bin", fw_dir).data
  (tmp_path / "psp_13_0_0_sos.bin").write_bytes(data[:100000])
  with pytest.raises(FirmwareError, match="header field size_bytes says 268304 bytes but the file has 100000"):
    FirmwareSet("navi31", str(tmp_path))


# ---- synthetic files: error paths and compression, no package needed ----
def imu_file(iram: bytes = b"\x11" * 64, dram: bytes = b"\x22" * 32, version: tuple[int, int] = (1, 0),
             header_size: int | None = None, crc_fix: bool = True) -> bytes:
  """A valid imu_firmware_header_v1_0 file (amdgpu_ucode.h) around `iram` and `dram`."""
  array_offset = 256
  payload = iram + dram
  size = array_offset + len(payload)
  header = struct.pack("<IIHHHHIIII", size, header_size or ucode.SIZES["imu_firmware_header_v1_0"], *version, 11, 0,
                       0x1234, len(payload), array_offset, 0)
  header += struct.pack("<4I", len(iram), 0, len(dram), len(iram))
  data = bytearray(header.ljust(array_offset, b"\0") + payload)
  if crc_fix:
    struct.pack_into("<I", data, 28, zlib.crc32(bytes(data[32:])))
  return bytes(data)


def write(tmp_path, name: str, data: bytes) -> str:
  (tmp_path / name).write_bytes(data)
  return str(tmp_path)


def test_synthetic_imu_parses(tmp_path):
  image = parse(find("x_imu.bin", write(tmp_path, "x_imu.bin", imu_file())), "imu", "image")
  assert image.bytes_of("iram") == b"\x11" * 64 and image.bytes_of("dram") == b"\x22" * 32
  assert image.ucode_version == 0x1234 and "matches" in image.crc32


@pytest.mark.parametrize("mutate,message", [
  (lambda d: d[:20], "shorter than the 32-byte common_firmware_header"),
  (lambda d: d + b"\0" * 4, "size_bytes says 352 bytes but the file has 356"),
  (lambda d: imu_file(version=(2, 0)), "header_version_major/minor 2.0 is not a imu header"),
  (lambda d: imu_file(header_size=60), "header_size_bytes is 60, but imu_firmware_header_v1_0 is 48"),
  (lambda d: imu_file(crc_fix=False), "header field crc32 is 0x00000000"),
  (lambda d: d[:32] + struct.pack("<I", 999) + d[36:], "iram at bytes .*imu_iram_ucode_size_bytes lies outside"),
])
def test_synthetic_errors_name_the_field(tmp_path, mutate, message):
  data = mutate(imu_file())
  if len(data) >= 32 and message.startswith("iram"):  # keep the crc right so the region check is what fails
    data = data[:28] + struct.pack("<I", zlib.crc32(data[32:])) + data[32:]
  with pytest.raises(FirmwareError, match=message):
    parse(find("x_imu.bin", write(tmp_path, "x_imu.bin", data)), "imu", "image")


def test_missing_file_names_file_dirs_and_package(tmp_path):
  with pytest.raises(FirmwareMissingError) as e:
    FirmwareSet("navi48", str(tmp_path))
  text = str(e.value)
  assert "psp_14_0_3_sos.bin" in text and str(tmp_path) in text and "firmware-amd-graphics" in text
  assert "bookworm-backports" in text


def test_unknown_asic():
  with pytest.raises(ValueError, match="navi31, navi48"):
    FirmwareSet("navi21")


def test_xz_compressed(tmp_path):
  data = imu_file()
  directory = write(tmp_path, "x_imu.bin.xz", lzma.compress(data, format=lzma.FORMAT_XZ))
  assert find("x_imu.bin", directory).data == data
  write(tmp_path, "y_imu.bin.xz", b"not xz at all")
  with pytest.raises(FirmwareError, match="y_imu.bin.xz: not an xz stream"):
    find("y_imu.bin", directory)


def zstd_raw_frame(data: bytes) -> bytes:
  """A zstd frame of raw (stored) blocks, RFC 8878: magic, a single-segment frame header with a 4-byte content
  size, then blocks of at most 128 KiB, each with a 3-byte header (last flag, type 0 = raw, size << 3)."""
  out = bytearray(b"\x28\xb5\x2f\xfd" + bytes([0xA0]) + struct.pack("<I", len(data)))
  chunks = [data[i:i + (128 << 10)] for i in range(0, len(data), 128 << 10)] or [b""]
  for i, chunk in enumerate(chunks):
    last = 1 if i == len(chunks) - 1 else 0
    out += (len(chunk) << 3 | last).to_bytes(3, "little") + chunk
  return bytes(out)


def have_zstd() -> bool:
  try:
    import zstandard  # noqa: F401
    return True
  except ImportError:
    return shutil.which("zstd") is not None


def test_zstd_compressed(tmp_path):
  data = imu_file(iram=bytes(range(256)) * 600)  # > 128 KiB: two raw blocks
  directory = write(tmp_path, "x_imu.bin.zst", zstd_raw_frame(data))
  if have_zstd():
    assert find("x_imu.bin", directory).data == data
  else:
    with pytest.raises(FirmwareError, match="pip install zstandard, or apt-get install zstd"):
      find("x_imu.bin", directory)
  if shutil.which("zstd"):  # a real compressor's frame too
    packed = subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
    assert find("z_imu.bin", write(tmp_path, "z_imu.bin.zst", packed)).data == data


def test_plain_file_wins_over_compressed(tmp_path):
  write(tmp_path, "x_imu.bin", imu_file())
  write(tmp_path, "x_imu.bin.xz", b"garbage")
  assert find("x_imu.bin", str(tmp_path)).path.endswith("x_imu.bin")
