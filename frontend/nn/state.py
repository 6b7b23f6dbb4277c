"""Model state: naming a model's tensors, loading values into them, and safetensors files.

  sd = get_state_dict(model)                   # {"layers.0.weight": Tensor, ...}
  safe_save(sd, "model.safetensors")
  load_state_dict(model, safe_load("model.safetensors"))

The safetensors format (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian unsigned header
length N, then N bytes of JSON {name: {"dtype": "F32", "shape": [..], "data_offsets": [start, end]}, "__metadata__":
{str: str}} padded with spaces, then the tensor data, little-endian, each tensor at [start, end) counted from the end
of the header. The `safetensors` package writes and reads it; it goes through numpy, which has no bfloat16, so
bfloat16 tensors are written as their raw uint16 bits and the header's dtype is patched to "BF16" afterwards, and read
back from their offsets in the file as raw bits.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import struct
import types

import numpy as np

from compiler.dtypes import DType, dtypes
from compiler.ir import Node, Ops
from frontend import graph as g
from frontend.device import Device
from frontend.multi import MultiNode
from frontend.realize import buffer_from_numpy, buffer_of
from frontend.tensor import Tensor

# safetensors dtype names <-> ours (the format's list: BOOL, U8, I8, ..., BF16, F16, F32, F64, and float8 kinds)
SAFETENSORS_DTYPES: dict[str, DType] = {
  "BOOL": dtypes.bool, "U8": dtypes.uint8, "I8": dtypes.int8, "U16": dtypes.uint16, "I16": dtypes.int16,
  "U32": dtypes.uint32, "I32": dtypes.int32, "U64": dtypes.uint64, "I64": dtypes.int64,
  "F16": dtypes.float16, "BF16": dtypes.bfloat16, "F32": dtypes.float32, "F64": dtypes.float64,
}
_HEADER_LIMIT = 100 * 1024 * 1024  # the safetensors library refuses larger headers too
_MAX_KEYS_IN_MESSAGE = 8

# ---------------------------------------------------------------------------------------------------------------------
# walking a model


def _children(obj) -> list[tuple[str, object]] | None:
  """The named members to descend into, or None for a leaf (numbers, strings, classes, functions, modules)."""
  if isinstance(obj, (str, bytes, int, float, complex, type(None), np.ndarray, type, types.ModuleType,
                      types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
    return None
  if isinstance(obj, tuple) and hasattr(obj, "_asdict"):  # a namedtuple: its field names, not indices
    return [(str(k), v) for k, v in obj._asdict().items()]
  if isinstance(obj, dict):
    return [(str(k), v) for k, v in obj.items()]
  if isinstance(obj, (list, tuple)):
    return [(str(i), v) for i, v in enumerate(obj)]
  if hasattr(obj, "__dict__"):
    return list(vars(obj).items())
  return None


def _walk(obj, prefix: str, out: dict[str, Tensor], path_ids: set[int]) -> None:
  if isinstance(obj, Tensor):
    out[prefix.removesuffix(".")] = obj
    return
  if id(obj) in path_ids:
    return  # a reference back to an enclosing object (a cycle): its tensors are named on the way down already
  children = _children(obj)
  if not children:
    return
  path_ids.add(id(obj))
  for name, child in children:
    _walk(child, f"{prefix}{name}.", out, path_ids)
  path_ids.discard(id(obj))


def get_state_dict(obj, prefix: str = "") -> dict[str, Tensor]:
  """Names every Tensor reachable from obj by attribute, list/tuple index and dict key, as dotted paths.

  A tensor reachable along two paths (tied weights) appears under both names.

  Args:
    obj: a model (any object holding Tensors in attributes, lists, tuples, dicts or nested objects), or a Tensor.
    prefix: prepended to every key, e.g. "model." gives "model.layers.0.weight".

  Returns:
    {"layers.0.weight": Tensor, ...} in attribute order.
  """
  out: dict[str, Tensor] = {}
  _walk(obj, prefix, out, set())
  return out


def get_parameters(obj) -> list[Tensor]:
  """The Tensors of get_state_dict(obj), each once (tied weights are listed once)."""
  unique = {id(t): t for t in get_state_dict(obj).values()}
  return list(unique.values())


def _settle(t: Tensor) -> None:
  """Points t back at its buffer once an assign into it has run.

  Tensor.realize keeps the graph of a tensor that requires a gradient, and an assign's graph reaches back through the
  value it wrote (for an optimizer: the gradient, the loss, the previous step's assign, ...), so without this a
  training loop would keep every step's graph and buffers alive. Only call it on a tensor no pending graph still
  needs to differentiate through.
  """
  if isinstance(t.lazydata, MultiNode):  # a multi-device tensor: each shard on its own
    t.lazydata = t.lazydata.map(_settled_node)
  else:
    t.lazydata = _settled_node(t.lazydata)


def _settled_node(node: Node) -> Node:
  if node.op is not Ops.ASSIGN:
    return node
  buf = buffer_of(node)
  if buf is None or buf.size != node.size:
    return node
  base = Node(Ops.BUFFER, node.dtype, (), buf, (buf.size,), node.device)
  return g.reshape(base, node.shape)


def _key_list(keys: list[str]) -> str:
  shown = ", ".join(repr(k) for k in keys[:_MAX_KEYS_IN_MESSAGE])
  more = len(keys) - _MAX_KEYS_IN_MESSAGE
  return f"[{shown}{f', ... and {more} more' if more > 0 else ''}]"


def _as_tensor(key: str, value, like: Tensor) -> Tensor:
  if isinstance(value, Tensor):
    return value if value.device == like.device else value.to(like.device)
  if isinstance(value, np.ndarray):
    return Tensor(value, device=like.device)
  raise TypeError(f"load_state_dict: state_dict[{key!r}] is a {type(value).__name__}; values must be Tensors or "
                  "numpy arrays")


def load_state_dict(model, state_dict: dict, strict: bool = True, verbose: bool = False) -> None:
  """Copies state_dict's values into the model's tensors in place (so their buffers stay the same), casting to
  each tensor's dtype. Nothing is written unless every key that will be loaded has a matching shape.

  Args:
    model: the object whose get_state_dict names the destination tensors.
    state_dict: {key: Tensor or numpy array}, e.g. from safe_load.
    strict: require state_dict's keys to be exactly the model's keys; when False, keys missing on either side are
      skipped.
    verbose: print what was loaded and skipped.

  Raises:
    KeyError: strict and keys are missing from state_dict or not in the model (the message names both lists).
    ValueError: a value's shape differs from the model tensor's (the message names the key and both shapes).
    TypeError: a value is neither a Tensor nor a numpy array.
  """
  targets = get_state_dict(model)
  missing = [k for k in targets if k not in state_dict]
  unexpected = [k for k in state_dict if k not in targets]
  if strict and (missing or unexpected):
    raise KeyError(f"load_state_dict: state_dict is missing {len(missing)} of the model's keys {_key_list(missing)} "
                   f"and has {len(unexpected)} keys the model lacks {_key_list(unexpected)}; fix the names (see "
                   "get_state_dict(model).keys()) or pass strict=False to load only the keys both have")
  keys = [k for k in targets if k in state_dict]
  values = {}
  for k in keys:
    value = _as_tensor(k, state_dict[k], targets[k])
    if value.shape != targets[k].shape:
      raise ValueError(f"load_state_dict: {k!r} has shape {value.shape} in state_dict but {targets[k].shape} in the "
                       "model; nothing was loaded")
    values[k] = value
  written = {}
  for k in keys:
    targets[k].assign(values[k])
    written[id(targets[k])] = targets[k]
  if written:
    Tensor.realize(*written.values())
  for t in written.values():
    _settle(t)
  if verbose:
    print(f"load_state_dict: loaded {len(keys)} tensors; missing from state_dict {_key_list(missing)}; "
          f"unused from state_dict {_key_list(unexpected)}")


# ---------------------------------------------------------------------------------------------------------------------
# safetensors


def _safetensors():
  try:
    import safetensors
    import safetensors.numpy
  except ImportError as e:
    raise ImportError("reading and writing .safetensors files needs the safetensors package: pip install safetensors "
                      "(or pip install -e '.[train]')") from e
  return safetensors


def _read_header(path) -> tuple[dict, int]:
  """(the parsed JSON header, the file offset where tensor data starts), after checking everything the header
  promises about the file: a sane length, valid JSON, known dtypes, and offsets that fit shape and file.

  Raises:
    ValueError: the file is not a well-formed safetensors file (the message says which part is wrong).
  """
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) < 8:
      raise ValueError(f"{path}: {size} bytes is too short for a safetensors file (it starts with an 8-byte header "
                       "length); the file is truncated or not safetensors")
    (header_len,) = struct.unpack("<Q", head)
    if header_len > min(size - 8, _HEADER_LIMIT):
      raise ValueError(f"{path}: header length {header_len} runs past the end of the {size}-byte file; the file is "
                       "truncated or not safetensors")
    raw = f.read(header_len)
  try:
    header = json.loads(raw.decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: the {header_len}-byte header is not valid JSON ({e}); the file is corrupted or not "
                     "safetensors") from e
  if not isinstance(header, dict):  # a malformed file, not a caller passing the wrong type: ValueError
    raise ValueError(  # noqa: TRY004
      f"{path}: the header is a JSON {type(header).__name__}, not an object; not a safetensors file")
  data_start = 8 + header_len
  for key, entry in header.items():
    if key != "__metadata__":
      _check_entry(path, key, entry, size - data_start)
  metadata = header.get("__metadata__", {})
  if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
    raise ValueError(f"{path}: __metadata__ must map strings to strings, got {metadata!r}")
  return header, data_start


def _check_entry(path, key: str, entry, data_size: int) -> None:
  if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
    raise ValueError(f"{path}: header entry {key!r} is {entry!r}; it needs dtype, shape and data_offsets")
  name, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
  if name not in SAFETENSORS_DTYPES:
    raise ValueError(f"{path}: tensor {key!r} has dtype {name!r}, which Sovereign does not support (supported: "
                     f"{', '.join(SAFETENSORS_DTYPES)})")
  if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
    raise ValueError(f"{path}: tensor {key!r} has shape {shape!r}; it must be a list of non-negative integers")
  if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
    raise ValueError(f"{path}: tensor {key!r} has data_offsets {offsets!r}; it must be [start, end]")
  start, end = offsets
  expected = math.prod(shape) * SAFETENSORS_DTYPES[name].itemsize
  if not 0 <= start <= end <= data_size or end - start != expected:
    raise ValueError(f"{path}: tensor {key!r} ({name}, shape {shape}) needs {expected} bytes but its data_offsets "
                     f"are [{start}, {end}] in a data section of {data_size} bytes; the file is truncated or corrupted")


def safe_load_metadata(path) -> dict[str, str]:
  """The `__metadata__` strings of a safetensors file ({} when it has none); reads only the header.

  Raises:
    ValueError: the file is not a well-formed safetensors file.
  """
  header, _ = _read_header(path)
  return dict(header.get("__metadata__", {}))


def _tensor_from_bits(bits: np.ndarray, dtype: DType, shape: tuple[int, ...], device: str) -> Tensor:
  """A Tensor over a new buffer holding raw element bits (for bfloat16, which numpy cannot name)."""
  buf = buffer_from_numpy(np.ascontiguousarray(bits).reshape(-1), dtype, device)
  node = Node(Ops.BUFFER, dtype, (), buf, (buf.size,), device)
  return Tensor(g.reshape(node, shape), device=device)


def safe_load(path, device: str | None = None) -> dict[str, Tensor]:
  """Reads every tensor of a safetensors file.

  Args:
    path: the .safetensors file.
    device: where the tensors go (Device.DEFAULT when None).

  Returns:
    {name: Tensor} in the order of the file's header.

  Raises:
    ImportError: the safetensors package is not installed.
    ValueError: the file is not a well-formed safetensors file, or uses a dtype Sovereign lacks.
  """
  lib = _safetensors()
  device = Device.canonicalize(device)
  header, data_start = _read_header(path)
  out: dict[str, Tensor] = {}
  try:
    with lib.safe_open(str(path), framework="numpy") as f, open(path, "rb") as raw:
      for key, entry in header.items():
        if key == "__metadata__":
          continue
        dtype, shape = SAFETENSORS_DTYPES[entry["dtype"]], tuple(entry["shape"])
        if dtype == dtypes.bfloat16:
          start, end = entry["data_offsets"]
          raw.seek(data_start + start)
          bits = np.frombuffer(raw.read(end - start), dtype="<u2")
          out[key] = _tensor_from_bits(bits, dtype, shape, device)
        else:
          out[key] = Tensor(f.get_tensor(key), device=device, dtype=dtype)
  except lib.SafetensorError as e:
    raise ValueError(f"{path}: the safetensors library cannot read it ({e}); the file is corrupted") from e
  return out


def _check_for_save(tensors: dict, metadata) -> None:
  if not isinstance(tensors, dict):
    raise TypeError(f"safe_save needs a dict of name -> Tensor, got {type(tensors).__name__}")
  for key, t in tensors.items():
    if not isinstance(key, str) or key == "__metadata__":
      raise ValueError(f"safe_save: tensor name {key!r} is not allowed; names are strings other than '__metadata__'")
    if not isinstance(t, Tensor):
      raise TypeError(f"safe_save: tensors[{key!r}] is a {type(t).__name__}, not a Tensor")
  if metadata is not None and not (isinstance(metadata, dict) and
                                   all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
    raise TypeError(f"safe_save: metadata must map strings to strings, got {metadata!r}")


def _host_bits(t: Tensor) -> np.ndarray:
  """t's elements as a numpy array of the type storing its bits on the host (uint16 for bfloat16)."""
  return t._contiguous_buffer().numpy().reshape(t.shape)


def _encode_header(header: dict) -> bytes:
  text = json.dumps(header, separators=(",", ":")).encode("utf-8")
  return text + b" " * (-len(text) % 8)  # the format pads the header with spaces to a multiple of 8 bytes


def _patch_dtypes(src: str, dst: str, names: dict[str, str]) -> None:
  """Copies the safetensors file src to dst with the header dtype of each key in names replaced."""
  header, data_start = _read_header(src)
  for key, name in names.items():
    header[key]["dtype"] = name
  encoded = _encode_header(header)
  with open(src, "rb") as fin, open(dst, "wb") as fout:
    fout.write(struct.pack("<Q", len(encoded)))
    fout.write(encoded)
    fin.seek(data_start)
    shutil.copyfileobj(fin, fout)


def safe_save(tensors: dict[str, Tensor], path, metadata: dict[str, str] | None = None) -> None:
  """Writes tensors to a safetensors file (replacing it whole: a failed save leaves any old file as it was).

  Args:
    tensors: {name: Tensor}; names must be unique strings, e.g. get_state_dict(model).
    path: the file to write.
    metadata: optional string -> string pairs stored in the header (read back by safe_load_metadata).

  Raises:
    ImportError: the safetensors package is not installed.
    TypeError: a value is not a Tensor, or metadata is not str -> str.
    ValueError: a name is not a string or is '__metadata__'.
  """
  lib = _safetensors()
  _check_for_save(tensors, metadata)
  arrays = {key: _host_bits(t) for key, t in tensors.items()}
  bf16_keys = {key: "BF16" for key, t in tensors.items() if t.dtype == dtypes.bfloat16}
  tmp = f"{os.fspath(path)}.{os.getpid()}.tmp"  # next to path, so the final rename stays on one filesystem
  try:
    lib.numpy.save_file(arrays, tmp, metadata=metadata)
    if bf16_keys:
      # numpy has no bfloat16: the file holds the raw bits as U16; point the header at BF16
      patched = tmp + ".bf16"
      _patch_dtypes(tmp, patched, bf16_keys)
      os.replace(patched, tmp)
    os.replace(tmp, path)
  finally:
    for leftover in (tmp, tmp + ".bf16"):
      if os.path.exists(leftover):
        os.remove(leftover)


__all__ = ["get_parameters", "get_state_dict", "load_state_dict", "safe_load", "safe_load_metadata", "safe_save"]
