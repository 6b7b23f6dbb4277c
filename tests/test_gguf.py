"""Tests for frontend/nn/gguf.py: GGUF files written by gguf-py's GGUFWriter, read back with gguf_load, every tensor
type checked against gguf-py's numpy dequantizer (gguf.quants.dequantize, the independent reference), metadata round
trips, and every error path on damaged files.

Quantized blocks come from gguf.quants.quantize where gguf-py implements it (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) and, for
every quantized type, as random raw blocks: random bytes everywhere except the f16 scale fields, which hold random
halves in [-2, 2] so every value is finite. Each type compiles one kernel per shape.
"""
from __future__ import annotations

import os

import gguf
import numpy as np
import pytest

from compiler.dtypes import dtypes
from compiler.ir import Ops
from frontend import Tensor
from frontend.nn.gguf import QUANTIZED as BLOCK_TABLE
from frontend.nn.gguf import SUPPORTED_TYPES, GGUFError, gguf_architecture, gguf_load
from frontend.realize import STATS

Q = gguf.GGMLQuantizationType
QUANTIZED = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
# byte offsets of the f16 scale fields in each block (ggml-common.h block_* structs)
SCALE_FIELDS = {"Q8_0": (0,), "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q4_K": (0, 2),
                "Q5_K": (0, 2), "Q6_K": (208,)}
HAS_QUANTIZE = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"}
# value = scale * q, one multiply chain: bit-exact. The others add an offset (d * q + m), where a C compiler may fuse
# the multiply and add (one rounding instead of two): equal to within float32 rounding of the product.
EXACT = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q5_0", "Q6_K"}


def shapes_for(block_size: int) -> list[tuple[int, ...]]:
  """Several rows of two blocks, a 1-D tensor, and a 3-D tensor; rows run along the last (numpy) axis."""
  return [(3, 2 * block_size), (block_size,), (2, 2, block_size)]


def random_blocks(rng, kind: str, shape: tuple[int, ...]) -> np.ndarray:
  """Raw blocks of type kind holding the values of `shape`: random bytes, f16 scale fields set to finite halves."""
  block_size, type_size = gguf.GGML_QUANT_SIZES[Q[kind]]
  n_blocks = int(np.prod(shape)) // block_size
  raw = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
  for offset in SCALE_FIELDS[kind]:
    raw[:, offset:offset + 2] = rng.uniform(-2, 2, (n_blocks, 1)).astype(np.float16).view(np.uint8)
  return raw.reshape(*shape[:-1], shape[-1] // block_size * type_size)


def write_gguf(path, tensors: dict[str, tuple[np.ndarray, str | None]], arch: str = "llama", kv=None) -> None:
  """Writes {name: (array, ggml type name or None for the array's own dtype)} plus metadata with gguf-py."""
  writer = gguf.GGUFWriter(str(path), arch=arch)
  for key, (add, value) in (kv or {}).items():
    getattr(writer, add)(key, value)
  for name, (array, kind) in tensors.items():
    writer.add_tensor(name, array, raw_dtype=None if kind is None else Q[kind])
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


def assert_matches(out: np.ndarray, ref: np.ndarray, kind: str) -> None:
  assert out.shape == ref.shape and out.dtype == np.float32
  assert np.isfinite(ref).all()
  if kind in EXACT:
    np.testing.assert_array_equal(out, ref)
  else:
    np.testing.assert_allclose(out, ref, rtol=2e-7, atol=2e-7 * float(np.abs(ref).max()))


def quantized_cases(rng, kind: str) -> dict[str, tuple[np.ndarray, str]]:
  block_size = gguf.GGML_QUANT_SIZES[Q[kind]][0]
  cases = {}
  for i, shape in enumerate(shapes_for(block_size)):
    cases[f"random.{i}"] = (random_blocks(rng, kind, shape), kind)
    if kind in HAS_QUANTIZE:
      values = rng.standard_normal(shape).astype(np.float32)
      cases[f"quantized.{i}"] = (gguf.quants.quantize(values, Q[kind]), kind)
  return cases


def test_block_sizes_match_gguf():
  assert list(BLOCK_TABLE) == QUANTIZED
  for kind, (block_size, type_size, _) in BLOCK_TABLE.items():
    assert (block_size, type_size) == gguf.GGML_QUANT_SIZES[Q[kind]], kind


@pytest.mark.parametrize("kind", QUANTIZED)
def test_quantized_types_match_gguf_reference(tmp_path, kind):
  rng = np.random.default_rng(sum(map(ord, kind)))
  cases = quantized_cases(rng, kind)
  write_gguf(tmp_path / "q.gguf", cases)
  tensors, _ = gguf_load(tmp_path / "q.gguf")
  assert list(tensors) == list(cases)
  for name, (raw, _) in cases.items():
    ref = gguf.quants.dequantize(raw, Q[kind])
    assert_matches(tensors[name].numpy(), ref, kind)


@pytest.mark.parametrize("kind", ["F32", "F16", "BF16"])
def test_float_types_match_gguf_reference(tmp_path, kind):
  rng = np.random.default_rng(7)
  cases = {}
  for i, shape in enumerate(shapes_for(8)):
    values = rng.standard_normal(shape).astype(np.float32)
    if kind == "F32":
      cases[f"t.{i}"] = (values, None)
    elif kind == "F16":
      cases[f"t.{i}"] = (values.astype(np.float16), None)
    else:
      cases[f"t.{i}"] = (gguf.quants.quantize(values, Q.BF16), "BF16")  # uint8 bytes, two per value
  write_gguf(tmp_path / "f.gguf", cases)
  tensors, _ = gguf_load(tmp_path / "f.gguf")
  for name, (array, _) in cases.items():
    assert_matches(tensors[name].numpy(), gguf.quants.dequantize(array, Q[kind]), kind)


def test_shapes_are_numpy_order(tmp_path):
  """GGUF stores ne[0] (the innermost axis) first; gguf_load returns the numpy shape, as ReaderTensor.data has."""
  values = np.random.default_rng(1).standard_normal((2, 3, 32)).astype(np.float32)
  write_gguf(tmp_path / "s.gguf", {"x": (values, None), "q": (gguf.quants.quantize(values, Q.Q8_0), "Q8_0")})
  reader = gguf.GGUFReader(tmp_path / "s.gguf")
  assert reader.tensors[0].shape.tolist() == [32, 3, 2]  # ne, innermost first
  tensors, _ = gguf_load(tmp_path / "s.gguf")
  assert tensors["x"].shape == tensors["q"].shape == (2, 3, 32)
  np.testing.assert_array_equal(tensors["x"].numpy(), values)


def test_quantized_tensor_is_lazy_over_one_upload(tmp_path):
  rng = np.random.default_rng(3)
  raw = random_blocks(rng, "Q4_K", (4, 512))
  write_gguf(tmp_path / "k.gguf", {"w": (raw, "Q4_K")})
  tensors, _ = gguf_load(tmp_path / "k.gguf")
  w = tensors["w"]
  assert w.dtype == dtypes.float32 and w.lazydata.op is not Ops.BUFFER  # not computed at load time
  buffers = [n for n in w.lazydata.toposort() if n.op is Ops.BUFFER]
  blocks = [n for n in buffers if n.arg.nbytes == raw.nbytes]
  assert len(blocks) == 1 and blocks[0].dtype == dtypes.uint8  # the block bytes, on the device once
  assert sum(n.arg.nbytes for n in buffers) < raw.nbytes + 64  # besides them only tiny shift tables
  before = STATS["kernels"]
  out = w.numpy()
  assert STATS["kernels"] - before == 1  # dequantization is one fused kernel
  ref = gguf.quants.dequantize(raw, Q.Q4_K)
  assert_matches(out, ref, "Q4_K")
  x = rng.standard_normal((1, 512)).astype(np.float32)
  y = (Tensor(x) @ w.T).numpy()  # the consumer reads the packed blocks
  np.testing.assert_allclose(y, x @ ref.T, rtol=1e-5, atol=1e-5 * float(np.abs(x @ ref.T).max()))


def test_dtype_float16(tmp_path):
  rng = np.random.default_rng(4)
  raw = random_blocks(rng, "Q6_K", (2, 256))
  values = rng.standard_normal((3, 8)).astype(np.float32)
  write_gguf(tmp_path / "h.gguf", {"q": (raw, "Q6_K"), "f": (values, None)})
  tensors, _ = gguf_load(tmp_path / "h.gguf", dtype=dtypes.float16)
  assert tensors["q"].dtype == tensors["f"].dtype == dtypes.float16
  np.testing.assert_array_equal(tensors["q"].numpy(), gguf.quants.dequantize(raw, Q.Q6_K).astype(np.float16))
  np.testing.assert_array_equal(tensors["f"].numpy(), values.astype(np.float16))
  with pytest.raises(TypeError, match="float type"):
    gguf_load(tmp_path / "h.gguf", dtype=dtypes.int32)


def test_metadata_round_trip(tmp_path):
  tokens = ["<s>", "</s>", "hello", "wörld", "Ġthe", ""]
  kv = {"general.name": ("add_string", "tiny test model"), "llama.block_count": ("add_uint32", 30),
        "llama.rope.freq_base": ("add_float32", 100000.0), "test.offset": ("add_int32", -7),
        "tokenizer.ggml.add_bos_token": ("add_bool", True), "tokenizer.ggml.tokens": ("add_array", tokens),
        "tokenizer.ggml.token_type": ("add_array", [1, 3, 1, 1, 1, 6])}
  write_gguf(tmp_path / "m.gguf", {"x": (np.arange(1, 9, dtype=np.float32), None)}, kv=kv)
  _, metadata = gguf_load(tmp_path / "m.gguf")
  assert metadata["general.architecture"] == "llama"
  assert metadata["general.name"] == "tiny test model"
  assert metadata["llama.block_count"] == 30 and type(metadata["llama.block_count"]) is int
  assert metadata["llama.rope.freq_base"] == 100000.0 and type(metadata["llama.rope.freq_base"]) is float
  assert metadata["test.offset"] == -7
  assert metadata["tokenizer.ggml.add_bos_token"] is True
  assert metadata["tokenizer.ggml.tokens"] == tokens
  assert metadata["tokenizer.ggml.token_type"] == [1, 3, 1, 1, 1, 6]
  assert not any(key.startswith("GGUF.") for key in metadata)  # gguf-py's own header entries are not metadata


def test_gguf_architecture():
  assert gguf_architecture({"general.architecture": "llama"}, require="llama") == "llama"
  assert gguf_architecture({"general.architecture": "qwen2"}) == "qwen2"
  with pytest.raises(GGUFError, match=r"'gpt2' model.*'llama' models only"):
    gguf_architecture({"general.architecture": "gpt2", "general.name": "GPT-2"}, require="llama")
  with pytest.raises(GGUFError, match="no general.architecture"):
    gguf_architecture({}, require="llama")


# ---------------------------------------------------------------------------------------------------------------------
# damaged and unsupported files


@pytest.fixture
def good_file(tmp_path):
  rng = np.random.default_rng(5)
  path = tmp_path / "good.gguf"
  write_gguf(path, {"a": (rng.standard_normal((2, 32)).astype(np.float32), None),
                    "blk.0.w": (random_blocks(rng, "Q8_0", (4, 64)), "Q8_0")})
  return path


def test_missing_file(tmp_path):
  path = tmp_path / "absent.gguf"
  with pytest.raises(GGUFError, match=f"{path}: no such file"):
    gguf_load(path)


def test_wrong_magic(tmp_path, good_file):
  data = bytearray(good_file.read_bytes())
  data[:4] = b"GGML"
  good_file.write_bytes(bytes(data))
  with pytest.raises(GGUFError, match=r"good.gguf: starts with b'GGML', not the GGUF magic"):
    gguf_load(good_file)
  safetensors_like = tmp_path / "model.safetensors"
  safetensors_like.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + b" " * 14)
  with pytest.raises(GGUFError, match="not a GGUF file.*safe_load"):
    gguf_load(safetensors_like)


@pytest.mark.parametrize("size", [0, 3, 20])
def test_file_shorter_than_fixed_header(good_file, size):
  good_file.write_bytes(good_file.read_bytes()[:size])
  with pytest.raises(GGUFError, match=f"{size} bytes is shorter than the 24-byte start of a GGUF header"):
    gguf_load(good_file)


@pytest.mark.parametrize("version, message", [(b"\x01\x00\x00\x00", "GGUF version 1; versions 2 and 3"),
                                              (b"\x00\x00\x00\x03", "a big-endian GGUF file")])
def test_version_field(good_file, version, message):
  data = bytearray(good_file.read_bytes())
  data[4:8] = version
  good_file.write_bytes(bytes(data))
  with pytest.raises(GGUFError, match=message):
    gguf_load(good_file)


@pytest.mark.parametrize("keep", [40, 120])
def test_header_cut_short(good_file, keep):
  good_file.write_bytes(good_file.read_bytes()[:keep])  # inside the key-values
  with pytest.raises(GGUFError, match=f"good.gguf: the GGUF header .* cannot be parsed.*{keep}-byte file is cut short"):
    gguf_load(good_file)


def test_tensor_data_truncated(good_file):
  data = good_file.read_bytes()
  good_file.write_bytes(data[:-100])  # the last tensor's 272 bytes (8 blocks) end 16 bytes of padding before the end
  with pytest.raises(GGUFError, match=r"tensor 'blk.0.w' \(Q8_0, shape \(4, 64\)\) needs bytes .* but the file ends at "
                                      f"{len(data) - 100}: the file is truncated"):
    gguf_load(good_file)


def test_unsupported_type(tmp_path):
  rng = np.random.default_rng(6)
  raw = rng.integers(0, 256, (2, gguf.GGML_QUANT_SIZES[Q.Q2_K][1]), dtype=np.uint8)
  write_gguf(tmp_path / "q2.gguf", {"ok": (np.ones(4, np.float32) * 3, None), "blk.3.ffn_up.weight": (raw, "Q2_K")})
  with pytest.raises(GGUFError) as info:
    gguf_load(tmp_path / "q2.gguf")
  message = str(info.value)
  assert "q2.gguf: tensor 'blk.3.ffn_up.weight' has type Q2_K" in message
  assert f"supported: {', '.join(SUPPORTED_TYPES)}" in message and "llama-quantize" in message


def test_unknown_type_number(good_file):
  reader = gguf.GGUFReader(good_file, "r+")
  reader.tensors[1].field.parts[4][0] = 99  # the ggml type of 'blk.0.w', written through the memory map
  del reader
  with pytest.raises(GGUFError, match="tensor 'blk.0.w' has ggml type number 99"):
    gguf_load(good_file)


def test_gguf_error_is_value_error(tmp_path):
  assert issubclass(GGUFError, ValueError)
  with pytest.raises(ValueError):
    gguf_load(os.fspath(tmp_path / "absent.gguf"))
