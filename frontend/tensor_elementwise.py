"""Elementwise ops of Tensor: broadcasting, type promotion, casts, arithmetic, comparisons, bitwise ops, math.
Mixed into frontend.tensor.Tensor; `type(self)` is Tensor."""
from __future__ import annotations

from typing import TYPE_CHECKING

import math

import numpy as np

from compiler.dtypes import dtypes, least_upper_dtype, scalar_result_dtype, to_dtype
from compiler.ir import BoundVariable, Offset, Ops
from frontend import graph as g
from frontend.device import supports_dtype
from frontend.shapes import _broadcast_shape


if TYPE_CHECKING:
  from frontend.tensor import Tensor


class TensorElementwise:
  # ---- broadcasting and elementwise ---------------------------------------------------------------------------
  def _broadcasted(self, y, reverse: bool = False, match_dtype: bool = True) -> tuple[Tensor, Tensor]:
    x = self
    if not isinstance(y, type(self)):
      # an implicit constant never asks for gradients: c * 2 keeps c's requires_grad (False stays False)
      if isinstance(y, (np.ndarray, list, tuple)):
        y = type(self)(y, device=x.device, requires_grad=False)
      elif isinstance(y, (BoundVariable, Offset)):  # an int known at launch: typed as a Python int would be
        dt = scalar_result_dtype(x.dtype, 0)
        if dt != x.dtype:
          x = x.cast(dt)
        y = type(self)(g.bind(y, dt, (), x.lazydata.device or x.device), device=x.device, requires_grad=False)
      else:
        dt = scalar_result_dtype(x.dtype, y)
        if dt != x.dtype:
          x = x.cast(dt)
        y = type(self)(g.const(y, dt, (), x.lazydata.device or x.device), device=x.device, requires_grad=False)
    if x.device != y.device:
      raise ValueError(f"operands are on different devices: {x.device} and {y.device}; use .to() first")
    if match_dtype and x.dtype != y.dtype:
      dt = least_upper_dtype(x.dtype, y.dtype)
      x, y = x.cast(dt), y.cast(dt)
    shape = _broadcast_shape(x.shape, y.shape)
    x, y = x._broadcast_to(shape), y._broadcast_to(shape)
    return (y, x) if reverse else (x, y)

  def _broadcast_to(self, shape: tuple[int, ...]) -> Tensor:
    if self.shape == shape:
      return self
    padded = (1,) * (len(shape) - self.ndim) + self.shape
    return self.reshape(padded).expand(shape)

  def _alu(self, op: Ops, *others: Tensor) -> Tensor:
    return self._derive(g.alu(op, self.lazydata, *[o.lazydata for o in others]), *others)

  def _binop(self, op: Ops, y, reverse: bool = False) -> Tensor:
    a, b = self._broadcasted(y, reverse)
    return a._alu(op, b)

  def cast(self, dtype) -> Tensor:
    dtype = to_dtype(dtype)
    if dtype == self.dtype:
      return self
    if not supports_dtype(self.device, dtype):
      raise TypeError(f"device {self.device} does not support dtype {dtype.name}")
    return self._derive(g.cast(self.lazydata, dtype))

  def bitcast(self, dtype) -> Tensor:
    dtype = to_dtype(dtype)
    out = type(self)(g.bitcast(self.lazydata, dtype))
    out.requires_grad = False
    return out

  def float(self) -> Tensor:
    return self.cast(dtypes.float32)

  def half(self) -> Tensor:
    return self.cast(dtypes.float16)

  def double(self) -> Tensor:
    return self.cast(dtypes.float64)

  def int(self) -> Tensor:
    return self.cast(dtypes.int32)

  def long(self) -> Tensor:
    return self.cast(dtypes.int64)

  def bool(self) -> Tensor:
    return self.cast(dtypes.bool)

  def bfloat16(self) -> Tensor:
    return self.cast(dtypes.bfloat16)

  def _to_float(self) -> Tensor:
    return self if self.dtype.is_float else self.cast(dtypes.default_float)

  def add(self, y, reverse=False) -> Tensor:
    return self._binop(Ops.ADD, y, reverse)

  def sub(self, y, reverse=False) -> Tensor:
    return self._binop(Ops.SUB, y, reverse)

  def mul(self, y, reverse=False) -> Tensor:
    return self._binop(Ops.MUL, y, reverse)

  def div(self, y, reverse=False, rounding_mode: str | None = None) -> Tensor:
    a, b = self._broadcasted(y, reverse)
    if rounding_mode == "trunc":
      if a.dtype.is_int:
        return a._alu(Ops.IDIV, b)
      if a.dtype in (dtypes.float16, dtypes.bfloat16):  # a 16-bit quotient can round up to the next integer
        return (a.float() / b.float()).trunc().cast(a.dtype)
      return (a._to_float() / b._to_float()).trunc()
    if rounding_mode == "floor":
      return a // b
    a, b = a._to_float(), b._to_float()
    return a._alu(Ops.FDIV, b)

  def idiv(self, y, reverse=False) -> Tensor:
    """Integer division truncating toward zero (C semantics)."""
    a, b = self._broadcasted(y, reverse)
    return a._alu(Ops.IDIV, b)

  def __floordiv__(self, y) -> Tensor:
    return _floordiv(*self._broadcasted(y))

  def __rfloordiv__(self, y) -> Tensor:
    return _floordiv(*self._broadcasted(y, True))

  def mod(self, y, reverse=False) -> Tensor:
    """Python/numpy modulo: the result has the sign of the divisor."""
    a, b = self._broadcasted(y, reverse)
    if a.dtype in (dtypes.float16, dtypes.bfloat16):
      return (a.float() - _floordiv(a.float(), b.float()) * b.float()).cast(a.dtype)
    if a.dtype.is_int:
      return (b == 0).where(0, a - _floordiv(a, b) * b)  # x % 0 is 0 in numpy
    return a - _floordiv(a, b) * b

  def pow(self, y, reverse=False) -> Tensor:
    """self ** y (y ** self when reverse). Integer ** integer stays an integer (wrapping, as numpy); a negative
    integer exponent gives trunc(1 / base ** -y), which is 0 unless the base is 1 or -1. Other types compute in
    float as |a| ** b = exp2(b * log2|a|), with the sign of a negative base for an integral b (NaN otherwise)."""
    scalar = isinstance(y, (int, float)) and not isinstance(y, bool)
    if scalar and not reverse and isinstance(y, float) and not self.dtype.is_float:
      return self._to_float().pow(y)  # a float scalar makes an integer tensor float, as in every binary op
    if scalar and not reverse:
      if y == 2:
        return self * self
      if y == 1:
        return self
      if y == 0.5:
        return self._to_float().sqrt()
      if y == 0:
        return self.ones_like()
      if y == -1:
        return self._to_float().reciprocal()
      if isinstance(y, int) and self.dtype.is_int and y > 0:
        return _int_pow_const(self, y)
      if self.dtype.is_float or not isinstance(y, int):
        return _pow_scalar_exponent(self._to_float(), float(y))
    a, b = self._broadcasted(y, reverse)
    if a.dtype.is_int:
      return _int_pow(a, b)
    if scalar and reverse and b.dtype.is_float:
      return _pow_scalar_base(float(y), b)
    return _pow_tensors(a._to_float(), b._to_float())

  def maximum(self, y) -> Tensor:
    a, b = self._broadcasted(y)
    if a.dtype.is_bool:
      return a | b
    return a._alu(Ops.MAX, b)

  def minimum(self, y) -> Tensor:
    a, b = self._broadcasted(y)
    if a.dtype.is_bool:
      return a & b
    # min(a, b) = -max(-a, -b) for floats; for integers ~x = -1 - x reverses the order without overflow (-(-128)
    # wraps in int8) and works for unsigned types as well
    return -((-a).maximum(-b)) if a.dtype.is_float else ~((~a).maximum(~b))

  def where(self, x, y) -> Tensor:
    cond = self if self.dtype.is_bool else self != 0
    if not isinstance(x, type(self)) and not isinstance(y, type(self)):
      dt = least_upper_dtype(dtypes.from_py(x), dtypes.from_py(y))
      x = type(self)(x, device=self.device, dtype=dt, requires_grad=False)
    if not isinstance(x, type(self)):
      x, y = y._broadcasted(x, reverse=True)
    else:
      x, y = x._broadcasted(y)
    shape = _broadcast_shape(cond.shape, x.shape)
    cond, x, y = cond._broadcast_to(shape), x._broadcast_to(shape), y._broadcast_to(shape)
    return x._derive(g.alu(Ops.WHERE, cond.lazydata, x.lazydata, y.lazydata), y, cond)

  def _cmp(self, op: Ops, y, reverse=False) -> Tensor:
    a, b = self._broadcasted(y, reverse)
    out = a._alu(op, b)
    out.requires_grad = False
    return out

  def __lt__(self, y):
    return self._cmp(Ops.CMPLT, y)

  def __gt__(self, y):
    return self._cmp(Ops.CMPLT, y, True)

  # with floats a NaN is neither less, greater nor equal, so a <= b is (a < b) | (a == b), not !(b < a)
  def __le__(self, y):
    a, b = self._broadcasted(y)
    return a._cmp(Ops.CMPLT, b) | a._cmp(Ops.CMPEQ, b) if a.dtype.is_float else b._cmp(Ops.CMPLT, a).logical_not()

  def __ge__(self, y):
    a, b = self._broadcasted(y)
    return b._cmp(Ops.CMPLT, a) | a._cmp(Ops.CMPEQ, b) if a.dtype.is_float else a._cmp(Ops.CMPLT, b).logical_not()

  def __eq__(self, y):  # type: ignore[override]
    return self._cmp(Ops.CMPEQ, y)

  def __ne__(self, y):  # type: ignore[override]
    return self._cmp(Ops.CMPNE, y)

  def eq(self, y):
    return self == y

  def ne(self, y):
    return self != y

  def logical_not(self) -> Tensor:
    return self.bool()._alu(Ops.NOT)

  def _bitwise(self, op: Ops, y, reverse=False) -> Tensor:
    a, b = self._broadcasted(y, reverse)
    if a.dtype.is_float:
      raise TypeError(f"{op.name.lower()} needs integer or bool tensors, got {a.dtype.name}")
    return a._alu(op, b)

  def bitwise_and(self, y) -> Tensor:
    return self._bitwise(Ops.AND, y)

  def bitwise_or(self, y) -> Tensor:
    return self._bitwise(Ops.OR, y)

  def bitwise_xor(self, y) -> Tensor:
    return self._bitwise(Ops.XOR, y)

  def bitwise_not(self) -> Tensor:
    if self.dtype.is_float:
      raise TypeError(f"bitwise_not needs integer or bool tensors, got {self.dtype.name}")
    return self._alu(Ops.NOT)

  def lshift(self, y) -> Tensor:
    if self.dtype.is_float:
      raise TypeError(f"<< needs an integer tensor, got {self.dtype.name}")
    a, b = self._broadcasted(y)
    return a._alu(Ops.SHL, b)

  def rshift(self, y) -> Tensor:
    if self.dtype.is_float:
      raise TypeError(f">> needs an integer tensor, got {self.dtype.name}")
    a, b = self._broadcasted(y)
    return a._alu(Ops.SHR, b)

  # unary math
  def neg(self) -> Tensor:
    return self.logical_not() if self.dtype.is_bool else self._alu(Ops.NEG)

  def reciprocal(self) -> Tensor:
    return self._to_float()._alu(Ops.RECIP)

  def sqrt(self) -> Tensor:
    return self._to_float()._alu(Ops.SQRT)

  def rsqrt(self) -> Tensor:
    return self.sqrt().reciprocal()

  def exp2(self) -> Tensor:
    return self._to_float()._alu(Ops.EXP2)

  def log2(self) -> Tensor:
    return self._to_float()._alu(Ops.LOG2)

  def exp(self) -> Tensor:
    return (self._to_float() * (1 / math.log(2))).exp2()

  def log(self) -> Tensor:
    return self.log2() * math.log(2)

  def sin(self) -> Tensor:
    return self._to_float()._alu(Ops.SIN)

  def cos(self) -> Tensor:
    return ((math.pi / 2) - self._to_float()).sin()

  def tan(self) -> Tensor:
    return self.sin() / self.cos()

  def trunc(self) -> Tensor:
    return self if not self.dtype.is_float else self._alu(Ops.TRUNC)

  def floor(self) -> Tensor:
    if not self.dtype.is_float:
      return self
    t = self.trunc()
    return (self < t).where(t - 1, t)

  def ceil(self) -> Tensor:
    if not self.dtype.is_float:
      return self
    t = self.trunc()
    return (self > t).where(t + 1, t)

  def round(self) -> Tensor:
    """Rounds half to even, as numpy and torch do."""
    if not self.dtype.is_float:
      return self
    f = self.floor()
    diff = self - f
    even = (f * 0.5).floor() * 2 == f
    up = (diff > 0.5) | ((diff == 0.5) & even.logical_not())
    return up.where(f + 1, f)

  def abs(self) -> Tensor:
    if self.dtype.is_unsigned or self.dtype.is_bool:
      return self
    return (self < 0).where(-self, self)

  def sign(self) -> Tensor:
    """-1, 0 or 1 by the sign of each element; NaN stays NaN (as numpy and torch)."""
    zero = self.zeros_like()
    out = (self > 0).cast(self.dtype) - (self < 0).cast(self.dtype) + zero
    return self.isnan().where(self, out) if self.dtype.is_float else out

  def isnan(self) -> Tensor:
    return self != self

  def isinf(self, detect_positive: bool = True, detect_negative: bool = True) -> Tensor:
    pos = (self == math.inf) if detect_positive else self.zeros_like(dtype=dtypes.bool)
    neg = (self == -math.inf) if detect_negative else self.zeros_like(dtype=dtypes.bool)
    return pos | neg

  def isfinite(self) -> Tensor:
    return (self.isinf() | self.isnan()).logical_not()

  def lerp(self, end, weight) -> Tensor:
    return self + (end - self) * weight

  def square(self) -> Tensor:
    return self * self

  def clip(self, min_=None, max_=None) -> Tensor:
    if min_ is None and max_ is None:
      raise ValueError("clip needs at least one of min_ and max_")
    out = self
    if min_ is not None:
      out = out.maximum(min_)
    if max_ is not None:
      out = out.minimum(max_)
    return out

  clamp = clip

  # operators
  def __neg__(self):
    return self.neg()

  def __add__(self, y):
    return self.add(y)

  def __radd__(self, y):
    return self.add(y, True)

  def __sub__(self, y):
    return self.sub(y)

  def __rsub__(self, y):
    return self.sub(y, True)

  def __mul__(self, y):
    return self.mul(y)

  def __rmul__(self, y):
    return self.mul(y, True)

  def __truediv__(self, y):
    return self.div(y)

  def __rtruediv__(self, y):
    return self.div(y, True)

  def __mod__(self, y):
    return self.mod(y)

  def __rmod__(self, y):
    return self.mod(y, True)

  def __pow__(self, y):
    return self.pow(y)

  def __rpow__(self, y):
    return self.pow(y, True)

  def __matmul__(self, y):
    return self.matmul(y)

  def __rmatmul__(self, y):
    return type(self)(y, device=self.device).matmul(self) if not isinstance(y, type(self)) else y.matmul(self)

  def __and__(self, y):
    return self.bitwise_and(y)

  def __rand__(self, y):
    return self._bitwise(Ops.AND, y, True)

  def __or__(self, y):
    return self.bitwise_or(y)

  def __ror__(self, y):
    return self._bitwise(Ops.OR, y, True)

  def __xor__(self, y):
    return self.bitwise_xor(y)

  def __rxor__(self, y):
    return self._bitwise(Ops.XOR, y, True)

  def __invert__(self):
    return self.bitwise_not()

  def __lshift__(self, y):
    return self.lshift(y)

  def __rshift__(self, y):
    return self.rshift(y)

  def __iadd__(self, y):
    return self.assign(self + y)

  def __isub__(self, y):
    return self.assign(self - y)

  def __imul__(self, y):
    return self.assign(self * y)

  def __itruediv__(self, y):
    return self.assign(self / y)


def _floordiv(a: Tensor, b: Tensor) -> Tensor:
  if a.dtype in (dtypes.float16, dtypes.bfloat16):
    # a quotient rounded to 16 bits can round up to the next integer (4.998 -> 5.0); floor it in float32
    return _floordiv(a.float(), b.float()).cast(a.dtype)
  if a.dtype.is_float:
    return (a / b).floor()
  q = a._alu(Ops.IDIV, b)
  if a.dtype.is_unsigned:
    return q
  # C division truncates; floor division steps down when the signs differ and there is a remainder (x // 0 is 0, as
  # numpy gives and the kernels' guarded IDIV returns: no step then)
  adjust = ((q * b) != a) & ((a < 0) != (b < 0)) & (b != 0)
  return adjust.where(q - 1, q)


def _pow_tensors(a: Tensor, b: Tensor) -> Tensor:
  """a ** b for float tensors of one shape and type."""
  mag = (b * a.abs().log2()).exp2()
  b_int = b.trunc() == b
  odd = (b.abs() % 2) == 1
  neg = a < 0
  sign = (neg & b_int & odd).where(-1.0, 1.0)
  nan = (neg & b_int.logical_not()).where(math.nan, 1.0)
  zero_case = (a == 0).where((b == 0).where(1.0, (b < 0).where(math.inf, 0.0)), mag * sign * nan)
  return zero_case.cast(a.dtype)


def _pow_scalar_exponent(a: Tensor, y: float) -> Tensor:
  """a ** y for a float tensor and a Python exponent: what depends on y alone is decided here, not in the kernel."""
  mag = (a.abs().log2() * y).exp2()
  if y.is_integer():
    signed = (a < 0).where(-mag, mag) if int(y) % 2 else mag
  else:
    signed = (a < 0).where(math.nan, mag)
  return (a == 0).where(math.inf if y < 0 else 0.0, signed)


def _pow_scalar_base(x: float, b: Tensor) -> Tensor:
  """x ** b for a Python base and a float tensor exponent."""
  if x == 0:
    return (b == 0).where(1.0, (b < 0).where(math.inf, 0.0)).cast(b.dtype)
  mag = (b * math.log2(abs(x))).exp2()
  if x > 0:
    return mag
  b_int = b.trunc() == b
  odd = (b.abs() % 2) == 1
  return b_int.where((b_int & odd).where(-mag, mag), math.nan)


def _int_pow_const(base: Tensor, exponent: int) -> Tensor:
  """base ** exponent for an integer tensor and a Python int > 0: square and multiply over the exponent's bits."""
  out, power = None, base
  while exponent:
    if exponent & 1:
      out = power if out is None else out * power
    exponent >>= 1
    if exponent:
      power = power * power
  return out


def _int_pow(base: Tensor, exponent: Tensor) -> Tensor:
  """base ** exponent for integer tensors of one type and shape, square and multiply over every bit of the
  exponent's type (products wrap, as numpy's do); a negative exponent gives trunc(1 / base ** -exponent)."""
  out, power = base.ones_like(), base
  value_bits = exponent.dtype.bits - (0 if exponent.dtype.is_unsigned else 1)
  for bit in range(value_bits):
    set_bit = ((exponent >> bit) & 1) != 0
    out = set_bit.where(out * power, out)
    if bit + 1 < value_bits:
      power = power * power
  if exponent.dtype.is_unsigned:
    return out
  odd = (exponent & 1) != 0
  negative_case = (base == 1).where(1, ((base == -1) & odd).where(-1, (base == -1).where(1, 0))).cast(base.dtype)
  return (exponent < 0).where(negative_case, out)
