"""Tests for frontend/nn/state.py: naming a model's tensors, load_state_dict and its error paths, and safetensors files
(round trips for every dtype with exact bits, files read and written by an independent reader, corrupted files).

Loading and saving move bytes between buffers and files without kernels, so these tests compile almost nothing.
"""
from __future__ import annotations

import collections
import json
import struct
import sys

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from compiler.dtypes import dtypes
from frontend import Tensor
from frontend.nn.state import get_parameters, get_state_dict, load_state_dict, safe_load, safe_load_metadata, safe_save


def raw_bits(t: Tensor) -> np.ndarray:
  """A tensor's stored elements as numpy holds them (bfloat16 as its uint16 bits): exact, NaN payloads included."""
  return t._contiguous_buffer().numpy().reshape(t.shape)


def buffer_identity(t: Tensor):
  """The Buffer behind a buffer-backed tensor (the same object as long as writes go in place)."""
  return t._contiguous_buffer()


class Block:
  def __init__(self, rng):
    self.weight = Tensor(rng.standard_normal((3, 2)).astype(np.float32))
    self.bias = Tensor(rng.standard_normal(3).astype(np.float32))
    self.activation = np.tanh  # a function: not descended into
    self.name = "block"


Pair = collections.namedtuple("Pair", ["left", "right"])


class Model:
  def __init__(self, seed: int = 0):
    rng = np.random.default_rng(seed)
    self.embed = Tensor(rng.standard_normal((5, 2)).astype(np.float32))
    self.layers = [Block(rng), Block(rng)]
    self.heads = {"cls": Block(rng), "scale": Tensor(rng.standard_normal(1).astype(np.float32))}
    self.pair = Pair(Tensor(rng.integers(-9, 9, 4).astype(np.int32)), None)
    self.shape = (3, 4)  # numbers: skipped
    self.tied = self.embed  # the same tensor under a second name
    self.parent = self  # a cycle: skipped


MODEL_KEYS = ["embed", "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias", "heads.cls.weight",
              "heads.cls.bias", "heads.scale", "pair.left", "tied"]


# ---------------------------------------------------------------------------------------------------------------------
# get_state_dict / get_parameters


def test_get_state_dict_names_nested_members():
  model = Model()
  sd = get_state_dict(model)
  assert list(sd) == MODEL_KEYS
  assert sd["layers.1.bias"] is model.layers[1].bias
  assert sd["heads.cls.weight"] is model.heads["cls"].weight
  assert sd["pair.left"] is model.pair.left
  assert sd["tied"] is sd["embed"]


def test_get_state_dict_prefix_and_plain_containers():
  t, u = Tensor([1.0]), Tensor([2.0])
  assert list(get_state_dict(Model(), prefix="model.")) == [f"model.{k}" for k in MODEL_KEYS]
  assert get_state_dict([t, (u,)]) == {"0": t, "1.0": u}
  assert get_state_dict({"a": {"b": t}, 3: u}) == {"a.b": t, "3": u}
  assert get_state_dict(t) == {"": t}
  assert get_state_dict(t, prefix="x") == {"x": t}
  assert get_state_dict(42) == {}


def test_get_parameters_lists_each_tensor_once():
  model = Model()
  params = get_parameters(model)
  assert len(params) == len(MODEL_KEYS) - 1  # "tied" is "embed" again
  assert [id(p) for p in params] == list(dict.fromkeys(id(t) for t in get_state_dict(model).values()))


# ---------------------------------------------------------------------------------------------------------------------
# load_state_dict


def test_load_state_dict_copies_in_place():
  model, source = Model(0), Model(1)
  buffers = {k: buffer_identity(t) for k, t in get_state_dict(model).items()}
  load_state_dict(model, get_state_dict(source))
  for k, t in get_state_dict(model).items():
    np.testing.assert_array_equal(t.numpy(), get_state_dict(source)[k].numpy(), err_msg=k)
    assert buffer_identity(t) is buffers[k], f"{k} got a new buffer instead of being written in place"
    assert len(t.lazydata.toposort()) <= 2, f"{k} keeps the graph of the load alive"


def test_load_state_dict_accepts_numpy_and_casts_to_the_model_dtype():
  model = {"w": Tensor(np.zeros(4, np.float32)), "n": Tensor(np.zeros(4, np.int32))}
  load_state_dict(model, {"w": np.array([1.5, -2.0, 3.25, 0.5], np.float32), "n": Tensor([1, 2, 3, 4], dtype="int64")})
  assert model["n"].dtype == dtypes.int32
  np.testing.assert_array_equal(model["w"].numpy(), [1.5, -2.0, 3.25, 0.5])
  np.testing.assert_array_equal(model["n"].numpy(), [1, 2, 3, 4])


def test_load_state_dict_strict_names_missing_and_unexpected_keys():
  model = Model()
  sd = {k: v for k, v in get_state_dict(Model(1)).items() if k != "layers.1.bias"}
  sd["layers.2.weight"] = Tensor(np.ones((3, 2), np.float32))
  with pytest.raises(KeyError, match=r"missing 1 of the model's keys \['layers.1.bias'\] and has 1 keys the model "
                                     r"lacks \['layers.2.weight'\].*strict=False"):
    load_state_dict(model, sd)
  with pytest.raises(KeyError, match=r"missing 1 .*\['layers.1.bias'\] and has 0 keys"):
    load_state_dict(model, {k: v for k, v in sd.items() if k != "layers.2.weight"})
  with pytest.raises(KeyError, match=r"missing 0 .* and has 1 keys the model lacks \['layers.2.weight'\]"):
    load_state_dict(model, {**get_state_dict(Model(1)), "layers.2.weight": sd["layers.2.weight"]})


def test_load_state_dict_non_strict_loads_the_common_keys(capsys):
  model, source = Model(0), Model(1)
  before = model.layers[1].bias.numpy()
  sd = {k: v for k, v in get_state_dict(source).items() if k != "layers.1.bias"}
  sd["extra"] = Tensor([1.0])
  load_state_dict(model, sd, strict=False, verbose=True)
  np.testing.assert_array_equal(model.layers[1].bias.numpy(), before)
  np.testing.assert_array_equal(model.layers[0].weight.numpy(), source.layers[0].weight.numpy())
  out = capsys.readouterr().out
  assert "loaded 9 tensors" in out and "'layers.1.bias'" in out and "'extra'" in out


def test_load_state_dict_shape_mismatch_names_key_and_shapes_and_writes_nothing():
  model = Model(0)
  before = {k: t.numpy() for k, t in get_state_dict(model).items()}
  sd = dict(get_state_dict(Model(1)))
  sd["layers.1.weight"] = Tensor(np.ones((2, 3), np.float32))
  with pytest.raises(ValueError, match=r"'layers.1.weight' has shape \(2, 3\) in state_dict but \(3, 2\) in the "
                                       r"model; nothing was loaded"):
    load_state_dict(model, sd)
  with pytest.raises(ValueError, match=r"'layers.1.weight' has shape \(2, 3\)"):
    load_state_dict(model, sd, strict=False)
  for k, t in get_state_dict(model).items():
    np.testing.assert_array_equal(t.numpy(), before[k], err_msg=k)


def test_load_state_dict_rejects_other_value_types():
  with pytest.raises(TypeError, match=r"state_dict\['w'\] is a list"):
    load_state_dict({"w": Tensor([1.0, 2.0])}, {"w": [3.0, 4.0]})


# ---------------------------------------------------------------------------------------------------------------------
# safetensors round trips


def sample(dtype_name: str, shape: tuple[int, ...], rng: np.random.Generator) -> Tensor:
  """Fresh random values of a dtype, with the awkward ones (signed zero, infinities, NaN, extremes) mixed in."""
  d = getattr(dtypes, dtype_name)
  n = int(np.prod(shape))
  if d.is_bool:
    return Tensor(rng.random(shape) < 0.5)
  if d.is_int:
    info = np.iinfo(d.np)
    values = rng.integers(info.min, info.max, size=n, endpoint=True, dtype=d.np)
    values[:2] = [info.min, info.max][:n]
    return Tensor(values.reshape(shape))
  values = rng.standard_normal(n) * 100
  values[:5] = [-0.0, np.inf, -np.inf, np.nan, 1e-30][:n]
  return Tensor(values.astype(np.float32).reshape(shape), dtype=d)


ROUND_TRIP_DTYPES = ["float32", "float16", "bfloat16", "int8", "int32", "int64", "bool", "uint8", "float64", "uint16"]


@pytest.mark.parametrize("dtype_name", ROUND_TRIP_DTYPES)
def test_safetensors_round_trip_is_exact(tmp_path, dtype_name):
  rng = np.random.default_rng(len(dtype_name))
  tensors = {"matrix": sample(dtype_name, (6, 5), rng), "vector": sample(dtype_name, (7,), rng),
             "scalar": sample(dtype_name, (), rng), "empty": sample(dtype_name, (0, 3), rng)}
  path = tmp_path / "t.safetensors"
  safe_save(tensors, path)
  loaded = safe_load(path)
  assert set(loaded) == set(tensors)
  for k, t in tensors.items():
    assert loaded[k].dtype == t.dtype, k
    assert loaded[k].shape == t.shape, k
    np.testing.assert_array_equal(raw_bits(loaded[k]), raw_bits(t), err_msg=k)


def test_state_dict_round_trip_with_mixed_dtypes(tmp_path):
  model = Model(0)
  model.half = Tensor(np.linspace(-2, 2, 6, dtype=np.float32), dtype=dtypes.float16)
  model.brain = Tensor(np.linspace(-3, 3, 6, dtype=np.float32), dtype=dtypes.bfloat16)
  model.mask = Tensor(np.arange(6) % 2 == 0)
  model.count = Tensor(np.array([2**40, -3], np.int64))
  path = tmp_path / "model.safetensors"
  safe_save(get_state_dict(model), path, metadata={"step": "12", "note": "round trip"})
  target = Model(1)
  target.half, target.brain = Tensor.zeros(6, dtype=dtypes.float16), Tensor.zeros(6, dtype=dtypes.bfloat16)
  target.mask, target.count = Tensor(np.zeros(6, bool)), Tensor(np.zeros(2, np.int64))
  load_state_dict(target, safe_load(path))
  for k, t in get_state_dict(target).items():
    np.testing.assert_array_equal(raw_bits(t), raw_bits(get_state_dict(model)[k]), err_msg=k)
  assert safe_load_metadata(path) == {"step": "12", "note": "round trip"}


def test_bfloat16_file_is_readable_by_torch_and_back(tmp_path):
  values = np.array([1.0, -2.5, 3.140625, 0.0, -0.0, np.inf, 1e30, -7e-20], np.float32)
  ours = tmp_path / "ours.safetensors"
  safe_save({"w": Tensor(values, dtype=dtypes.bfloat16).reshape(2, 4)}, ours)
  theirs = safetensors.torch.load_file(ours)["w"]
  assert theirs.dtype == torch.bfloat16 and tuple(theirs.shape) == (2, 4)
  expected = torch.from_numpy(values).to(torch.bfloat16).reshape(2, 4)
  assert torch.equal(theirs.view(torch.int16), expected.view(torch.int16))
  written = tmp_path / "torch.safetensors"
  safetensors.torch.save_file({"w": expected, "f": torch.arange(3, dtype=torch.float32)}, written)
  loaded = safe_load(written)
  assert loaded["w"].dtype == dtypes.bfloat16
  np.testing.assert_array_equal(raw_bits(loaded["w"]), expected.view(torch.int16).numpy().view(np.uint16))
  np.testing.assert_array_equal(loaded["f"].numpy(), [0.0, 1.0, 2.0])


def test_safe_save_leaves_no_temporary_files_and_replaces_old_files(tmp_path):
  path = tmp_path / "a.safetensors"
  safe_save({"x": Tensor([1.0, 2.0])}, path)
  safe_save({"y": Tensor([3, 4, 5])}, path)
  assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]
  assert list(safe_load(path)) == ["y"]
  assert safe_load_metadata(path) == {}


def test_safe_save_argument_errors(tmp_path):
  path = tmp_path / "bad.safetensors"
  with pytest.raises(TypeError, match=r"tensors\['w'\] is a ndarray, not a Tensor"):
    safe_save({"w": np.zeros(2)}, path)
  with pytest.raises(TypeError, match="metadata must map strings to strings"):
    safe_save({"w": Tensor([1.0])}, path, metadata={"step": 3})
  with pytest.raises(ValueError, match="tensor name 3 is not allowed"):
    safe_save({3: Tensor([1.0])}, path)
  assert not path.exists()


def test_missing_safetensors_package_says_how_to_install(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "safetensors", None)  # makes `import safetensors` raise ImportError
  with pytest.raises(ImportError, match="pip install safetensors"):
    safe_save({"w": Tensor([1.0])}, tmp_path / "x.safetensors")
  with pytest.raises(ImportError, match="pip install safetensors"):
    safe_load(tmp_path / "x.safetensors")


# ---------------------------------------------------------------------------------------------------------------------
# corrupted files


def good_file(tmp_path) -> bytes:
  path = tmp_path / "good.safetensors"
  safetensors.numpy.save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.int64)}, path)
  return path.read_bytes()


def with_header(header: dict, data: bytes) -> bytes:
  text = json.dumps(header).encode()
  return struct.pack("<Q", len(text)) + text + data


def corruptions(blob: bytes) -> dict[str, tuple[bytes, str]]:
  (n,) = struct.unpack("<Q", blob[:8])
  header, data = json.loads(blob[8:8 + n]), blob[8 + n:]
  a = header["a"]
  return {
    "empty": (b"", "too short for a safetensors file"),
    "truncated_length": (blob[:5], "too short for a safetensors file"),
    "huge_header_length": (struct.pack("<Q", 1 << 40) + blob[8:], "header length 1099511627776 runs past the end"),
    "not_json": (struct.pack("<Q", 8) + b"{not js}" + data, "header is not valid JSON"),
    "json_list": (with_header([1, 2], data), "header is a JSON list"),  # type: ignore[arg-type]
    "truncated_data": (blob[:-5], "data_offsets are"),
    "unknown_dtype": (with_header({**header, "a": {**a, "dtype": "C64"}}, data), "dtype 'C64'"),
    "shape_disagrees": (with_header({**header, "a": {**a, "shape": [3, 3]}}, data), "needs 36 bytes"),
    "missing_offsets": (with_header({**header, "a": {"dtype": "F32", "shape": [2, 3]}}, data), "needs dtype, shape"),
    "garbage": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "runs past the end"),
    # each entry is self-consistent, but the two overlap: only the safetensors library's own checks catch it
    "overlapping": (with_header({**header, "a": {**a, "data_offsets": [0, 24]}}, data),
                    "the safetensors library cannot read it"),
  }


@pytest.mark.parametrize("kind", ["empty", "truncated_length", "huge_header_length", "not_json", "json_list",
                                  "truncated_data", "unknown_dtype", "shape_disagrees", "missing_offsets", "garbage",
                                  "overlapping"])
def test_corrupted_file_raises_a_clear_error(tmp_path, kind):
  blob, message = corruptions(good_file(tmp_path))[kind]
  path = tmp_path / f"{kind}.safetensors"
  path.write_bytes(blob)
  with pytest.raises(ValueError, match=message) as info:
    safe_load(path)
  assert str(path) in str(info.value)
  if kind != "overlapping":  # safe_load_metadata reads the header only
    with pytest.raises(ValueError, match=message):
      safe_load_metadata(path)
