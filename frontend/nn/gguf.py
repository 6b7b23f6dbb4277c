"""GGUF model files (llama.cpp's format): tensors, dequantized lazily on the device, and metadata.

  tensors, metadata = gguf_load("SmolLM2-135M-Instruct.Q4_1.gguf")
  gguf_architecture(metadata, require="llama")      # 'llama', or GGUFError naming the file's architecture
  w = tensors["blk.0.attn_q.weight"]                 # a lazy float32 Tensor: dequantizes inside its consumer's kernel

The format (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): the magic "GGUF", a uint32 version (2 or 3),
uint64 tensor and key-value counts, the key-value pairs, one info record per tensor (name, dims, ggml type, offset),
padding to `general.alignment` (32 by default), then the tensor data; little-endian (the format allows big-endian
files; they are refused here). The `gguf` package (gguf-py, from llama.cpp) parses the header; this module checks what
the header promises against the file, uploads each tensor's bytes to the device once and expresses the dequantization
as Tensor ops on those bytes, so nothing is computed on the host.

Shapes: a GGUF tensor's dims list ne[0] first, the number of elements along the innermost (contiguous) axis, as in
ggml's `ne` (ggml/include/ggml.h). The returned Tensors have numpy/torch order, the reverse: a (rows, cols) weight is
stored as ne = [cols, rows]. gguf-py does the same: GGUFReader._build_tensors reads ne and builds
`np_dims = tuple(reversed(dims.tolist()))` for ReaderTensor.data (gguf/gguf_reader.py), and GGUFWriter writes a numpy
shape's dims last-first (write_ti_data_to_file in gguf/gguf_writer.py). Quantization blocks run along ne[0], so the
innermost numpy axis must be a multiple of the block size.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from compiler.dtypes import DType, dtypes, to_dtype
from frontend.device import Device
from frontend.tensor import Tensor

# ---------------------------------------------------------------------------------------------------------------------
# dequantization: raw blocks (n_blocks, type_size) uint8 -> values (n_blocks, block_size) float32, as lazy Tensor ops
#
# Block layouts come from llama.cpp's ggml/src/ggml-common.h (the block_* structs) and gguf-py's gguf/quants.py (the
# reference numpy dequantizers, and GGML_QUANT_SIZES in gguf/constants.py for (block_size, type_size)). Byte offsets
# are within one block; "f16" is an IEEE half, little-endian; QK_K = 256.


def _bytes(raw: Tensor, start: int, size: int) -> Tensor:
  """Bytes [start, start + size) of every block: (n_blocks, size) uint8."""
  return raw.shrink(((0, raw.shape[0]), (start, start + size)))


def _f16(raw: Tensor, start: int) -> Tensor:
  """The little-endian f16 at byte `start` of every block, as float32: (n_blocks, 1)."""
  low = _bytes(raw, start, 1).cast(dtypes.uint16)
  high = _bytes(raw, start + 1, 1).cast(dtypes.uint16)
  return (low | (high << 8)).bitcast(dtypes.float16).cast(dtypes.float32)


@functools.lru_cache(maxsize=None)
def _shift_table(width: int, device: str) -> Tensor:
  """(8 // width, 1) uint8: the right shifts that bring each width-bit field of a byte down to bit 0."""
  shifts = np.arange(0, 8, width, dtype=np.uint8).reshape(-1, 1)
  return Tensor(shifts, device=device, requires_grad=False)


def _unpack(packed: Tensor, width: int) -> Tensor:
  """Splits each byte into its width-bit fields, lowest first: (..., m) -> (..., 8 // width, m) with
  out[..., k, j] = (packed[..., j] >> (k * width)) & (2**width - 1)."""
  count = 8 // width
  spread = packed.unsqueeze(-2).expand(*packed.shape[:-1], count, packed.shape[-1])
  return (spread >> _shift_table(width, packed.device)) & ((1 << width) - 1)


def _q8_0(raw: Tensor) -> Tensor:
  # block_q8_0, 34 bytes for 32 values: d f16 @0, qs int8[32] @2; value[i] = qs[i] * d
  qs = _bytes(raw, 2, 32).bitcast(dtypes.int8).cast(dtypes.float32)
  return qs * _f16(raw, 0)


def _nibbles32(raw: Tensor, start: int) -> Tensor:
  """The 32 4-bit quants of a 32-value block from 16 bytes at `start`: value i < 16 is the low nibble of byte i,
  value i + 16 its high nibble (block_q4_0/q4_1/q5_0/q5_1): (n_blocks, 32) uint8."""
  return _unpack(_bytes(raw, start, 16), 4).reshape(raw.shape[0], 32)


def _high_bits32(raw: Tensor, start: int) -> Tensor:
  """Bit i of the little-endian uint32 at `start` (qh of block_q5_0/q5_1), moved to bit 4: (n_blocks, 32) uint8."""
  qh = _bytes(raw, start, 4).reshape(raw.shape[0], 4, 1)
  return _unpack(qh, 1).reshape(raw.shape[0], 32) << 4  # byte j, bit k is bit 8j + k


def _q4_0(raw: Tensor) -> Tensor:
  # block_q4_0, 18 bytes for 32 values: d f16 @0, qs[16] @2; value = (q - 8) * d
  q = _nibbles32(raw, 2).cast(dtypes.float32)
  return (q - 8) * _f16(raw, 0)


def _q4_1(raw: Tensor) -> Tensor:
  # block_q4_1, 20 bytes for 32 values: d f16 @0, m f16 @2, qs[16] @4; value = q * d + m
  q = _nibbles32(raw, 4).cast(dtypes.float32)
  return _f16(raw, 0) * q + _f16(raw, 2)


def _q5_0(raw: Tensor) -> Tensor:
  # block_q5_0, 22 bytes for 32 values: d f16 @0, qh uint32 @2 (bit i = bit 4 of value i), qs[16] @6;
  # value = (q - 16) * d
  q = (_nibbles32(raw, 6) | _high_bits32(raw, 2)).cast(dtypes.float32)
  return (q - 16) * _f16(raw, 0)


def _q5_1(raw: Tensor) -> Tensor:
  # block_q5_1, 24 bytes for 32 values: d f16 @0, m f16 @2, qh uint32 @4, qs[16] @8; value = q * d + m
  q = (_nibbles32(raw, 8) | _high_bits32(raw, 4)).cast(dtypes.float32)
  return _f16(raw, 0) * q + _f16(raw, 2)


def _k_scales(raw: Tensor, start: int) -> tuple[Tensor, Tensor]:
  """The 8 6-bit scales and 8 6-bit mins packed in 12 bytes at `start` (block_q4_K/q5_K `scales`; llama.cpp's
  get_scale_min_k4 in ggml-quants.c, gguf-py's Q4_K.get_scale_min): with bytes b[0..11], for sub-block j < 4
  scale = b[j] & 63, min = b[j + 4] & 63; for j >= 4 the low 4 bits sit in b[j + 4] (scale low nibble, min high
  nibble) and the top 2 bits are the top 2 bits of b[j - 4] (scale) and b[j] (min). Returns two (n_blocks, 8) uint8."""
  first, second, third = (_bytes(raw, start + 4 * i, 4) for i in range(3))
  scale = first.bitwise_and(63).cat((third & 15) | ((first >> 6) << 4), dim=1)
  minimum = second.bitwise_and(63).cat((third >> 4) | ((second >> 6) << 4), dim=1)
  return scale, minimum


def _k_nibbles(raw: Tensor, start: int) -> Tensor:
  """The 4-bit quants of a 256-value K block from 128 bytes at `start`: each 64 values take 32 bytes, low nibbles
  first, then high nibbles (dequantize_row_q4_K): (n_blocks, 8, 32) uint8 by sub-block of 32."""
  qs = _bytes(raw, start, 128).reshape(raw.shape[0], 4, 32)
  return _unpack(qs, 4).reshape(raw.shape[0], 8, 32)


def _k_affine(raw: Tensor, q: Tensor) -> Tensor:
  """value = d * scale[j] * q - dmin * min[j] for sub-block j of 32, with d f16 @0, dmin f16 @2, scales @4."""
  n_blocks = raw.shape[0]
  scale, minimum = _k_scales(raw, 4)
  step = (_f16(raw, 0) * scale.cast(dtypes.float32)).reshape(n_blocks, 8, 1)
  offset = (_f16(raw, 2) * minimum.cast(dtypes.float32)).reshape(n_blocks, 8, 1)
  return (step * q.cast(dtypes.float32) - offset).reshape(n_blocks, 256)


def _q4_k(raw: Tensor) -> Tensor:
  # block_q4_K, 144 bytes for 256 values in 8 sub-blocks of 32: d f16 @0, dmin f16 @2, scales[12] @4, qs[128] @16
  return _k_affine(raw, _k_nibbles(raw, 16))


def _q5_k(raw: Tensor) -> Tensor:
  # block_q5_K, 176 bytes for 256 values: d f16 @0, dmin f16 @2, scales[12] @4, qh[32] @16, qs[128] @48;
  # bit 4 of the value at position l of sub-block j is bit j of qh[l]
  high = _unpack(_bytes(raw, 16, 32), 1) << 4
  return _k_affine(raw, _k_nibbles(raw, 48) | high)


def _q6_k(raw: Tensor) -> Tensor:
  # block_q6_K, 210 bytes for 256 values in 16 sub-blocks of 16: ql[128] @0 (low 4 bits), qh[64] @128 (high 2 bits),
  # scales int8[16] @192, d f16 @208; value = d * scales[o // 16] * (q - 32) for output o. Each half h of 128 values
  # uses ql[64h .. 64h + 63] and qh[32h .. 32h + 31]: position 32k + l (k < 4, l < 32) takes the low nibble (k < 2) or
  # high nibble (k >= 2) of ql[64h + 32(k % 2) + l] and bits 2k, 2k + 1 of qh[32h + l] (dequantize_row_q6_K).
  n_blocks = raw.shape[0]
  low = _unpack(_bytes(raw, 0, 128).reshape(n_blocks, 2, 64), 4).reshape(n_blocks, 2, 4, 32)
  high = _unpack(_bytes(raw, 128, 64).reshape(n_blocks, 2, 32), 2)
  q = (low | (high << 4)).cast(dtypes.float32).reshape(n_blocks, 16, 16)
  scale = _bytes(raw, 192, 16).bitcast(dtypes.int8).cast(dtypes.float32)
  step = (_f16(raw, 208) * scale).reshape(n_blocks, 16, 1)
  return (step * (q - 32)).reshape(n_blocks, 256)


# ggml type name -> (values per block, bytes per block, dequantizer); sizes as gguf.constants.GGML_QUANT_SIZES
QUANTIZED = {
  "Q8_0": (32, 34, _q8_0), "Q4_0": (32, 18, _q4_0), "Q4_1": (32, 20, _q4_1), "Q5_0": (32, 22, _q5_0),
  "Q5_1": (32, 24, _q5_1), "Q4_K": (256, 144, _q4_k), "Q5_K": (256, 176, _q5_k), "Q6_K": (256, 210, _q6_k),
}
SUPPORTED_TYPES = ("F32", "F16", "BF16", *QUANTIZED)


# ---------------------------------------------------------------------------------------------------------------------
# reading


class GGUFError(ValueError):
  """A GGUF file that cannot be loaded: missing, not GGUF, truncated, or using a type or architecture we lack."""


def _gguf():
  try:
    import gguf
  except ImportError as e:
    raise ImportError("reading .gguf files needs the gguf package (gguf-py from llama.cpp): pip install gguf (or pip "
                      "install -e '.[models]')") from e
  return gguf


_MAGIC = b"GGUF"
_FIXED_HEADER = 24  # magic, uint32 version, uint64 tensor count, uint64 key-value count


def _check_start(path: str) -> None:
  """Checks what can be told before parsing: the file exists, starts with the magic and a version gguf-py reads."""
  if not os.path.isfile(path):
    raise GGUFError(f"{path}: no such file; check the path (a model's .gguf is usually downloaded from its Hugging "
                    "Face repository)")
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(8)
  if not head.startswith(_MAGIC) and not _MAGIC.startswith(head):
    raise GGUFError(f"{path}: starts with {head[:4]!r}, not the GGUF magic {_MAGIC!r}: not a GGUF file (for "
                    ".safetensors use frontend.nn.state.safe_load)")
  if size < _FIXED_HEADER:
    raise GGUFError(f"{path}: {size} bytes is shorter than the {_FIXED_HEADER}-byte start of a GGUF header: the file "
                    "is truncated; download it again")
  version = int.from_bytes(head[4:8], "little")
  if version & 0xFFFF == 0:
    raise GGUFError(f"{path}: a big-endian GGUF file (version field {head[4:8].hex()}); only little-endian files are "
                    "supported: convert it with `gguf-convert-endian FILE little` (from the gguf package)")
  if version not in (2, 3):
    raise GGUFError(f"{path}: GGUF version {version}; versions 2 and 3 are supported: re-convert the model with a "
                    "current llama.cpp")


@functools.lru_cache(maxsize=None)
def _reader_class():
  gguf = _gguf()

  class CheckedReader(gguf.GGUFReader):
    """gguf.GGUFReader whose tensor table is checked against the file before the reader maps the data: known type,
    whole blocks per row, data inside the file. (The stock reader fails on these with a bare numpy error.)"""

    def __init__(self, path: str):
      self.path_for_errors = path
      super().__init__(path)

    def _build_tensors(self, start_offs: int, fields: list) -> None:
      for field in fields:
        # the tensor info record as gguf-py splits it (GGUFReader._get_tensor_info_field): name length, name bytes,
        # n_dims, dims (ne[0] first), ggml type, offset from the start of the data section
        _, name_bytes, _, dims, raw_type, offset = field.parts
        name = bytes(name_bytes).decode("utf-8", "replace")
        _check_tensor_info(self, name, dims.tolist(), int(raw_type[0]), start_offs + int(offset[0]))
      super()._build_tensors(start_offs, fields)

  return CheckedReader


def _check_tensor_info(reader, name: str, dims: list[int], type_id: int, start: int) -> None:
  gguf = _gguf()
  path, size = reader.path_for_errors, len(reader.data)
  try:
    qtype = gguf.GGMLQuantizationType(type_id)
  except ValueError:
    raise GGUFError(f"{path}: tensor {name!r} has ggml type number {type_id}, which gguf {_gguf_version()} does not "
                    f"know; the file is corrupted or needs a newer gguf package (pip install -U gguf)") from None
  block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
  ne0 = dims[0] if dims else 1
  if ne0 % block_size:
    raise GGUFError(f"{path}: tensor {name!r} ({qtype.name}) has rows of {ne0} values, not a multiple of the "
                    f"{block_size}-value block; the file is corrupted")
  n_bytes = int(np.prod(dims, dtype=np.int64)) // block_size * type_size
  if start + n_bytes > size:
    shape = tuple(reversed(dims))
    raise GGUFError(f"{path}: tensor {name!r} ({qtype.name}, shape {shape}) needs bytes [{start}, {start + n_bytes}) "
                    f"but the file ends at {size}: the file is truncated; download it again")


def _gguf_version() -> str:
  from importlib.metadata import PackageNotFoundError, version
  try:
    return version("gguf")
  except PackageNotFoundError:
    return "(unknown version)"


def _open(path: str):
  _check_start(path)
  try:
    return _reader_class()(path)
  except GGUFError:
    raise
  except (ValueError, IndexError, KeyError, OverflowError) as e:
    size = os.path.getsize(path)
    raise GGUFError(f"{path}: the GGUF header (key-values and tensor table) cannot be parsed: {type(e).__name__}: "
                    f"{e}; the {size}-byte file is cut short or corrupted: download it again") from e


def _metadata(path: str, reader) -> dict[str, object]:
  """The file's key-value pairs as Python values (str, int, float, bool, or lists of them), in file order. gguf-py's
  own entries for the fixed header ("GGUF.version", ...) are left out."""
  out: dict[str, object] = {}
  for key, field in reader.fields.items():
    if key.startswith("GGUF."):
      continue
    try:
      out[key] = field.contents()
    except UnicodeDecodeError as e:
      raise GGUFError(f"{path}: metadata {key!r} holds a string that is not UTF-8 ({e}); the file is corrupted") from e
  return out


def _type_name(tensor) -> str:
  return tensor.tensor_type.name


def _check_types(path: str, reader) -> None:
  for tensor in reader.tensors:
    if _type_name(tensor) not in SUPPORTED_TYPES:
      raise GGUFError(f"{path}: tensor {tensor.name!r} has type {_type_name(tensor)}, which gguf_load cannot "
                      f"dequantize (supported: {', '.join(SUPPORTED_TYPES)}); re-quantize the model to one of those "
                      "with llama.cpp's llama-quantize (e.g. Q8_0, Q4_K_M)")


def _load_tensor(tensor, device: str, dtype: DType) -> Tensor:
  """One upload of the tensor's bytes, then lazy ops to `dtype` in numpy shape order."""
  shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
  kind = _type_name(tensor)
  if kind == "F32":
    return Tensor(tensor.data, device=device, dtype=dtypes.float32).cast(dtype)
  if kind == "F16":
    return Tensor(tensor.data, device=device, dtype=dtypes.float16).cast(dtype)
  if kind == "BF16":
    # a bfloat16 is the top half of a float32: widen the 16 bits and shift them up (gguf-py's BF16.dequantize_blocks)
    bits = Tensor(tensor.data.view("<u2"), device=device, dtype=dtypes.uint16, requires_grad=False)
    return (bits.cast(dtypes.uint32) << 16).bitcast(dtypes.float32).reshape(shape).cast(dtype)
  _, type_size, dequantize = QUANTIZED[kind]
  raw = Tensor(tensor.data.reshape(-1, type_size), device=device, dtype=dtypes.uint8, requires_grad=False)
  out = dequantize(raw).reshape(shape).cast(dtype)
  out.requires_grad = False
  return out


def gguf_load(path, device: str | None = None, dtype=dtypes.float32) -> tuple[dict[str, Tensor], dict[str, object]]:
  """Reads a GGUF file: its tensors as lazy Tensors and its metadata as Python values.

  Each tensor's bytes go to the device once (quantized blocks as a uint8 buffer); the returned Tensor dequantizes
  them with Tensor ops when it is realized, so the work fuses into whatever consumes it (a matmul reads the packed
  weights). Supported types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K.

  Args:
    path: the .gguf file.
    device: where the tensors go (Device.DEFAULT when None).
    dtype: the float type of the returned tensors (float32, or float16/bfloat16 to halve what consumers read).

  Returns:
    (tensors, metadata): {GGUF tensor name: Tensor} in file order, shaped in numpy order (ne reversed, see the module
    docstring); {key: value} with strings decoded and arrays as lists (tokenizer.ggml.tokens etc. included).

  Raises:
    ImportError: the gguf package is not installed.
    GGUFError (a ValueError): the file is missing, not GGUF, truncated or corrupted, or has a tensor of an
      unsupported type; the message names the file, the tensor and what to do.
    TypeError: dtype is not a float type.
  """
  dtype = to_dtype(dtype)
  if not dtype.is_float:
    raise TypeError(f"gguf_load: dtype must be a float type (float32, float16, bfloat16), got {dtype.name}")
  path = os.fspath(path)
  device = Device.canonicalize(device)
  reader = _open(path)
  metadata = _metadata(path, reader)
  _check_types(path, reader)
  tensors = {t.name: _load_tensor(t, device, dtype) for t in reader.tensors}
  return tensors, metadata


def gguf_architecture(metadata: dict[str, object], require: str | None = None) -> str:
  """The model architecture a GGUF file declares (`general.architecture`, e.g. "llama").

  Args:
    metadata: the metadata returned by gguf_load.
    require: when given, the architecture the caller implements.

  Raises:
    GGUFError: the key is missing, or differs from `require` (the message names both and the model).
  """
  arch = metadata.get("general.architecture")
  name = metadata.get("general.name", "this model")
  if not isinstance(arch, str):
    raise GGUFError(f"{name}: the GGUF metadata has no general.architecture string (got {arch!r}); the file was not "
                    "written by a llama.cpp converter, or is corrupted")
  if require is not None and arch != require:
    raise GGUFError(f"{name}: a {arch!r} model, but this code runs {require!r} models only; pick a GGUF whose "
                    f"general.architecture is {require!r} (SmolLM2's files, for one, are 'llama')")
  return arch


__all__ = ["GGUFError", "SUPPORTED_TYPES", "gguf_architecture", "gguf_load"]
