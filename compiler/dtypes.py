"""Scalar data types shared by the IR, the renderers and the tensor frontend.

A DType is a frozen value: its name, size in bytes, kind (bool, signed int, unsigned int, float) and the numpy
type that stores it on the host. bfloat16 has no numpy type; the host sees its raw bits as uint16.

Type promotion follows numpy between integers, and torch/tinygrad between integers and floats (an integer tensor
combined with a float tensor takes the float type, float16 + bfloat16 -> float32). Python scalars are weak: they
take the tensor's type when it can hold them.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True, eq=True)
class DType:
  name: str
  itemsize: int
  kind: str  # "b" bool, "i" signed integer, "u" unsigned integer, "f" floating point
  np_name: str  # the numpy type holding the bits on the host

  def __repr__(self) -> str:
    return f"dtypes.{self.name}"

  @property
  def is_float(self) -> bool:
    return self.kind == "f"

  @property
  def is_int(self) -> bool:
    return self.kind in ("i", "u")

  @property
  def is_unsigned(self) -> bool:
    return self.kind == "u"

  @property
  def is_bool(self) -> bool:
    return self.kind == "b"

  @property
  def np(self) -> np.dtype:
    return np.dtype(self.np_name)

  @property
  def bits(self) -> int:
    return self.itemsize * 8


class dtypes:  # noqa: N801 - tinygrad's public name
  bool = DType("bool", 1, "b", "bool")
  int8 = DType("int8", 1, "i", "int8")
  uint8 = DType("uint8", 1, "u", "uint8")
  int16 = DType("int16", 2, "i", "int16")
  uint16 = DType("uint16", 2, "u", "uint16")
  int32 = DType("int32", 4, "i", "int32")
  uint32 = DType("uint32", 4, "u", "uint32")
  int64 = DType("int64", 8, "i", "int64")
  uint64 = DType("uint64", 8, "u", "uint64")
  float16 = DType("float16", 2, "f", "float16")
  bfloat16 = DType("bfloat16", 2, "f", "uint16")
  float32 = DType("float32", 4, "f", "float32")
  float64 = DType("float64", 8, "f", "float64")
  # tinygrad aliases
  half = float16
  float = float32
  double = float64
  char = int8
  uchar = uint8
  short = int16
  ushort = uint16
  int = int32
  uint = uint32
  long = int64
  ulong = uint64
  default_float = float32
  default_int = int32
  index = int64  # the type of loop variables and buffer offsets in lowered kernels

  @staticmethod
  def all() -> tuple[DType, ...]:
    return ALL_DTYPES

  @staticmethod
  def from_np(npdt) -> DType:
    """The DType for a numpy dtype; raises TypeError for types we do not have (complex, object, ...)."""
    name = np.dtype(npdt).name
    if name not in _BY_NAME or name == "bfloat16":
      raise TypeError(f"numpy dtype {name} has no Sovereign dtype; use one of {[d.name for d in ALL_DTYPES]}")
    return _BY_NAME[name]

  @staticmethod
  def from_py(x) -> DType:
    """The default DType of a Python scalar or (nested) list."""
    if isinstance(x, (list, tuple)):
      return max((dtypes.from_py(v) for v in x), key=_py_rank, default=dtypes.default_float)
    if isinstance(x, bool):
      return dtypes.bool
    if isinstance(x, int):
      return dtypes.default_int
    if isinstance(x, float):
      return dtypes.default_float
    raise TypeError(f"cannot make a tensor from {type(x).__name__} {x!r}")

  is_float = staticmethod(lambda d: d.is_float)
  is_int = staticmethod(lambda d: d.is_int)
  is_unsigned = staticmethod(lambda d: d.is_unsigned)

  @staticmethod
  def min(d: DType):
    if d.is_bool:
      return False
    if d.is_int:
      return int(np.iinfo(d.np).min)
    return -math.inf

  @staticmethod
  def max(d: DType):
    if d.is_bool:
      return True
    if d.is_int:
      return int(np.iinfo(d.np).max)
    return math.inf


ALL_DTYPES = (dtypes.bool, dtypes.int8, dtypes.uint8, dtypes.int16, dtypes.uint16, dtypes.int32, dtypes.uint32,
              dtypes.int64, dtypes.uint64, dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64)
_BY_NAME = {d.name: d for d in ALL_DTYPES}


def to_dtype(x) -> DType:
  """Accepts a DType, its name ("float32"), or a numpy dtype."""
  if isinstance(x, DType):
    return x
  if isinstance(x, str) and x in _BY_NAME:
    return _BY_NAME[x]
  return dtypes.from_np(x)


def _py_rank(d: DType) -> int:
  return {"b": 0, "i": 1, "u": 1, "f": 2}[d.kind]


def _float_rank(d: DType) -> int:
  return {"float16": 0, "bfloat16": 0, "float32": 1, "float64": 2}[d.name]


def promote(a: DType, b: DType) -> DType:
  """The type of a binary op between tensors of types a and b."""
  if a == b:
    return a
  if a.is_float and b.is_float:
    if {a.name, b.name} == {"float16", "bfloat16"}:
      return dtypes.float32
    return a if _float_rank(a) > _float_rank(b) else b
  if a.is_float:
    return a
  if b.is_float:
    return b
  return dtypes.from_np(np.promote_types(a.np, b.np))


def least_upper_dtype(*ds: DType) -> DType:
  out = ds[0]
  for d in ds[1:]:
    out = promote(out, d)
  return out


def scalar_result_dtype(t: DType, scalar) -> DType:
  """The type of `tensor op scalar`: the scalar is weak and takes the tensor's type when that type can hold it."""
  if isinstance(scalar, bool) or t.is_float:
    return t
  if isinstance(scalar, int):
    return dtypes.default_int if t.is_bool else t
  return dtypes.default_float  # a float scalar with a bool/int tensor
