"""Find an amdgpu firmware file on disk and return its bytes, uncompressed.

Distributions ship /lib/firmware/amdgpu/<name>.bin plain, as <name>.bin.zst or as <name>.bin.xz (the kernel's
CONFIG_FW_LOADER_COMPRESS_ZSTD / _XZ); all three are read. zstd needs the `zstandard` Python package or the `zstd`
command; xz uses Python's lzma. Symlinks (firmware-amd-graphics links gc_12_0_1_toc.bin to gc_12_0_0_toc.bin) are
followed.
"""
from __future__ import annotations

import lzma
import os
import shutil
import subprocess
from dataclasses import dataclass

DEFAULT_DIR = "/lib/firmware/amdgpu"
PACKAGE = "firmware-amd-graphics"
# The plain bookworm package lacks Navi48 (gc_12_0_1_*); this backports build has Navi31 and Navi48 (FACT_SOURCES.md).
PACKAGE_HINT = (f"{PACKAGE} (Debian: {PACKAGE}=20250410-2~bpo12+1 from bookworm-backports non-free-firmware; "
                f"apt-get download it and dpkg-deb -x it, then point AM_FIRMWARE_DIR at its lib/firmware/amdgpu)")
SUFFIXES = ("", ".zst", ".xz")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"


class FirmwareError(Exception):
  """A firmware file that is missing, unreadable, truncated or inconsistent."""


class FirmwareMissingError(FirmwareError, FileNotFoundError):
  pass


@dataclass(frozen=True)
class FirmwareFile:
  name: str        # the name amdgpu requests, e.g. gc_11_0_0_mec.bin
  path: str        # the file read (with .zst / .xz when compressed)
  data: bytes      # uncompressed contents


def search_dirs(firmware_dir: str | None = None) -> list[str]:
  """Where to look: the given directory, else $AM_FIRMWARE_DIR, else /lib/firmware/amdgpu."""
  if firmware_dir:
    return [firmware_dir]
  env = os.environ.get("AM_FIRMWARE_DIR")
  return [env] if env else [DEFAULT_DIR]


def find(name: str, firmware_dir: str | None = None) -> FirmwareFile:
  """Read firmware `name` (e.g. 'psp_13_0_0_sos.bin') from the first directory that has it in any supported form.

  Raises:
    FirmwareMissingError: no directory has it; names the file, the directories searched and the package.
    FirmwareError: it exists but cannot be decompressed (names the file and what to install).
  """
  dirs = search_dirs(firmware_dir)
  for directory in dirs:
    for suffix in SUFFIXES:
      path = os.path.join(directory, name + suffix)
      if os.path.isfile(path):
        with open(path, "rb") as f:
          raw = f.read()
        return FirmwareFile(name, path, decompress(raw, path))
  tried = ", ".join(f"{d}/{name}{{,.zst,.xz}}" for d in dirs)
  raise FirmwareMissingError(f"firmware {name} not found (looked for {tried}); it ships in {PACKAGE_HINT}")


def decompress(raw: bytes, path: str) -> bytes:
  if path.endswith(".xz"):
    if not raw.startswith(XZ_MAGIC):
      raise FirmwareError(f"{path}: not an xz stream (magic {raw[:6].hex()})")
    try:
      return lzma.decompress(raw)
    except lzma.LZMAError as e:
      raise FirmwareError(f"{path}: xz decompression failed: {e}") from e
  if path.endswith(".zst"):
    if not raw.startswith(ZSTD_MAGIC):
      raise FirmwareError(f"{path}: not a zstd frame (magic {raw[:4].hex()})")
    return zstd_decompress(raw, path)
  return raw


def zstd_decompress(raw: bytes, path: str) -> bytes:
  try:
    import zstandard
  except ImportError:
    zstandard = None
  if zstandard is not None:
    try:
      with zstandard.ZstdDecompressor().stream_reader(raw) as reader:
        return reader.read()
    except zstandard.ZstdError as e:
      raise FirmwareError(f"{path}: zstd decompression failed: {e}") from e
  tool = shutil.which("zstd")
  if tool is None:
    raise FirmwareError(f"{path} is zstd-compressed and neither the zstandard Python package nor the zstd command "
                        f"is available: pip install zstandard, or apt-get install zstd")
  done = subprocess.run([tool, "-d", "-c", "-q"], input=raw, capture_output=True)
  if done.returncode != 0:
    raise FirmwareError(f"{path}: zstd -d failed: {done.stderr.decode(errors='replace').strip()}")
  return done.stdout
