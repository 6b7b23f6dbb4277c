"""Instruction selection for the PTX renderer: register classes, constants, ALU ops, casts, bitcasts, accumulator
updates and warp shuffles, per dtype (the semantics each choice keeps are in compiler/render_ptx.py's docstring).

Functions take the renderer `r` (`new(cls)`, `emit(line)`, `reg(node)`, `cls(node)`, `as_cls(node, cls)`,
`operand(node, cls)`) and return the register holding the result.
"""
from __future__ import annotations

import struct

import numpy as np

from compiler import ptx_math
from compiler.dtypes import DType, dtypes
from compiler.ir import Node, Ops

REG_DECL = {"p": ".pred", "h": ".b16", "r": ".b32", "rd": ".b64", "f": ".f32", "fd": ".f64"}
BITS = {"p": "pred", "h": "b16", "r": "b32", "rd": "b64", "f": "b32", "fd": "b64"}
MEM_TYPE = {"bool": "u8", "int8": "s8", "uint8": "u8", "int16": "s16", "uint16": "u16", "int32": "s32",
            "uint32": "u32", "int64": "s64", "uint64": "u64", "float16": "b16", "bfloat16": "b16", "float32": "f32",
            "float64": "f64"}
FTYPE = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64"}
HALVES = (dtypes.float16, dtypes.bfloat16)
HALF_NATIVE = frozenset({Ops.ADD, Ops.SUB, Ops.MUL, Ops.NEG, Ops.MAX, Ops.TRUNC})  # sm_90 .f16/.bf16 instructions
FLOAT_MATH = frozenset({Ops.RECIP, Ops.SQRT, Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.TRUNC})
CMP = {Ops.CMPLT: "lt", Ops.CMPNE: "ne", Ops.CMPEQ: "eq"}
FCMP = {Ops.CMPLT: "lt", Ops.CMPNE: "neu", Ops.CMPEQ: "eq"}  # neu: NaN != x is true, as in C
LOGIC = {Ops.AND: "and", Ops.OR: "or", Ops.XOR: "xor"}


def reg_class(d: DType) -> str:
  """The register class holding a value of dtype d: p, r (8..32-bit ints), rd (64-bit ints), h, f or fd."""
  if d.is_bool:
    return "p"
  if d.is_int:
    return "rd" if d.itemsize == 8 else "r"
  return {"float16": "h", "bfloat16": "h", "float32": "f", "float64": "fd"}[d.name]


def acc_dtype(d: DType) -> DType:
  """The dtype an accumulator of d computes in (float16/bfloat16 accumulate in float32)."""
  return dtypes.float32 if d in HALVES else d


def itype(d: DType, cls: str) -> str:
  """The PTX integer type for d's arithmetic in a register of class cls ("r" 32-bit, "rd" 64-bit)."""
  return ("u" if d.is_unsigned else "s") + ("64" if cls == "rd" else "32")


def half_bits(value: float, d: DType) -> int:
  """The 16 bits of value rounded to float16, or to bfloat16 (nearest even from float32, NaN kept quiet)."""
  if d == dtypes.float16:
    return int(np.array(value, np.float16).view(np.uint16))
  u = int(np.array(value, np.float32).view(np.uint32))
  if (u & 0x7FFFFFFF) > 0x7F800000:
    return (u >> 16) | 0x40
  return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF


def float_literal(value: float, d: DType) -> str:
  """A float32 (0f + 8 hex digits) or float64 (0d + 16 hex digits) immediate."""
  if d == dtypes.float64:
    return ptx_math.f64(value)
  return "0f" + struct.pack(">f", np.float32(value)).hex().upper()


def const(r, value, d: DType, cls: str | None = None) -> str:
  cls = cls or reg_class(d)
  out = r.new(cls)
  if d.is_bool:
    r.emit(f"mov.pred {out}, {1 if value else 0};")
  elif d.is_int:
    width = 64 if cls == "rd" else 32
    r.emit(f"mov.b{width} {out}, 0x{int(value) & ((1 << width) - 1):X};")
  elif d in HALVES:
    r.emit(f"mov.b16 {out}, 0x{half_bits(value, d):04X};")
  else:
    r.emit(f"mov.{FTYPE[d.name]} {out}, {float_literal(value, d)};")
  return out


def normalize(r, x: str, d: DType) -> str:
  """An 8/16-bit integer held in 32 bits, re-extended after an op that may have overflowed it (wraps like C)."""
  if not d.is_int or d.itemsize >= 4:
    return x
  out = r.new("r")
  r.emit(f"cvt.{'u' if d.is_unsigned else 's'}32.{MEM_TYPE[d.name]} {out}, {x};")
  return out


def _op(r, cls: str, text: str) -> str:
  """One instruction `text` with its destination written as {out}; returns the new register."""
  out = r.new(cls)
  r.emit(text.format(out=out))
  return out


# ---- ALU nodes ------------------------------------------------------------------------------------------------------

def alu(r, n: Node) -> str:
  op, d = n.op, n.dtype
  if op in CMP:
    return _compare(r, n)
  if d.is_bool:
    return _bool_alu(r, n)
  if op is Ops.WHERE:
    cls = r.cls(n)
    cond = r.reg(n.src[0])
    a, b = (r.as_cls(s, cls) if s.dtype == dtypes.int64 else r.reg(s) for s in n.src[1:])
    return _op(r, cls, f"selp.{BITS[cls]} {{out}}, {a}, {b}, {cond};")
  if d.is_float:
    return float_op(r, op, d, [r.reg(s) for s in n.src])
  if op in FLOAT_MATH:  # C computes these in float and converts back
    x = cast(r, r.reg(n.src[0]), d, dtypes.float32)
    return cast(r, float_op(r, op, dtypes.float32, [x]), dtypes.float32, d)
  cls = r.cls(n)
  if op in (Ops.SHL, Ops.SHR):
    return _shift(r, n, cls)
  a = r.as_cls(n.src[0], cls) if d == dtypes.int64 else r.reg(n.src[0])
  if len(n.src) == 1:
    return int_unary(r, op, d, cls, a)
  b_node = n.src[1]
  divisor = b_node.arg if b_node.op is Ops.CONST else None
  return int_binary(r, op, d, cls, a, r.operand(b_node, cls), divisor)


def int_unary(r, op: Ops, d: DType, cls: str, a: str) -> str:
  w = 64 if cls == "rd" else 32
  if op is Ops.NEG:
    return normalize(r, _op(r, cls, f"neg.s{w} {{out}}, {a};"), d)
  if op is Ops.NOT:
    return normalize(r, _op(r, cls, f"not.b{w} {{out}}, {a};"), d)
  raise ValueError(f"PTX renderer: no integer rendering for {op.name} on {d.name}")


def int_binary(r, op: Ops, d: DType, cls: str, a: str, b: str, divisor=None) -> str:
  w = 64 if cls == "rd" else 32
  t = itype(d, cls)
  if op in (Ops.ADD, Ops.SUB, Ops.MUL):
    name = {Ops.ADD: "add", Ops.SUB: "sub", Ops.MUL: "mul.lo"}[op]
    return normalize(r, _op(r, cls, f"{name}.s{w} {{out}}, {a}, {b};"), d)
  if op is Ops.MAX:
    return _op(r, cls, f"max.{t} {{out}}, {a}, {b};")
  if op in LOGIC:
    return _op(r, cls, f"{LOGIC[op]}.b{w} {{out}}, {a}, {b};")
  if op in (Ops.IDIV, Ops.MOD, Ops.FDIV):
    return _divide(r, op, d, cls, a, b, divisor)
  raise ValueError(f"PTX renderer: no integer rendering for {op.name} on {d.name}")


def _divide(r, op: Ops, d: DType, cls: str, a: str, b: str, divisor) -> str:
  """C's truncating / and % with the C renderer's guards: x/0 -> 0, x%0 -> 0, x/-1 -> -x (wraps), x%-1 -> 0."""
  w = 64 if cls == "rd" else 32
  t = itype(d, cls)
  name = "rem" if op is Ops.MOD else "div"
  if divisor is not None and divisor != 0 and (divisor != -1 or d.is_unsigned):
    if d == dtypes.int64 and cls == "r":
      t = "u32"  # a narrow index: bounds exist only for a non-negative numerator over a positive constant
    return _op(r, cls, f"{name}.{t} {{out}}, {a}, {b};")
  zero, minus1 = _op(r, "p", f"setp.eq.s{w} {{out}}, {b}, 0;"), None
  bad = zero
  if not d.is_unsigned:
    minus1 = _op(r, "p", f"setp.eq.s{w} {{out}}, {b}, -1;")
    bad = _op(r, "p", f"or.pred {{out}}, {zero}, {minus1};")
  safe = _op(r, cls, f"selp.b{w} {{out}}, 1, {b}, {bad};")
  result = _op(r, cls, f"{name}.{t} {{out}}, {a}, {safe};")  # x % 1 == 0 covers both % guards
  if op is Ops.MOD:
    return result
  if minus1 is not None:
    negated = normalize(r, _op(r, cls, f"neg.s{w} {{out}}, {a};"), d)
    result = _op(r, cls, f"selp.b{w} {{out}}, {negated}, {result}, {minus1};")
  return _op(r, cls, f"selp.b{w} {{out}}, 0, {result}, {zero};")


def _shift(r, n: Node, cls: str) -> str:
  """C renderer semantics: a shift by >= the bit width gives 0 (PTX would clamp, and shr.s would fill signs)."""
  d, amount = n.dtype, n.src[1]
  w = 64 if cls == "rd" else 32
  a = r.as_cls(n.src[0], cls) if d == dtypes.int64 else r.reg(n.src[0])
  bcls = r.cls(amount)
  b = r.reg(amount)
  if amount.dtype.is_bool:
    b, bcls = _op(r, "r", f"selp.u32 {{out}}, 1, 0, {b};"), "r"
  big = _op(r, "p", f"setp.ge.{itype(amount.dtype, bcls)} {{out}}, {b}, {d.bits};")
  if bcls == "rd":
    b = _op(r, "r", f"cvt.u32.u64 {{out}}, {b};")
  name = f"shl.b{w}" if n.op is Ops.SHL else f"shr.{itype(d, cls)}"
  shifted = _op(r, cls, f"{name} {{out}}, {a}, {b};")
  return _op(r, cls, f"selp.b{w} {{out}}, 0, {normalize(r, shifted, d)}, {big};")


def _compare(r, n: Node) -> str:
  a_node, b_node = n.src
  d = a_node.dtype
  if d.is_bool:
    return _bool_alu(r, n)
  if d.is_float:
    a, b = r.reg(a_node), r.reg(b_node)
    return _op(r, "p", f"setp.{FCMP[n.op]}.{FTYPE[d.name]} {{out}}, {a}, {b};")
  cls = "rd" if "rd" in (r.cls(a_node), r.cls(b_node)) else r.cls(a_node)
  a = r.as_cls(a_node, cls) if d == dtypes.int64 else r.reg(a_node)
  return _op(r, "p", f"setp.{CMP[n.op]}.{itype(d, cls)} {{out}}, {a}, {r.operand(b_node, cls)};")


def _bool_alu(r, n: Node) -> str:
  op = n.op
  s = [r.reg(x) for x in n.src]
  if op in (Ops.ADD, Ops.OR, Ops.MAX):
    return _op(r, "p", f"or.pred {{out}}, {s[0]}, {s[1]};")
  if op in (Ops.MUL, Ops.AND):
    return _op(r, "p", f"and.pred {{out}}, {s[0]}, {s[1]};")
  if op in (Ops.XOR, Ops.SUB, Ops.CMPNE):
    return _op(r, "p", f"xor.pred {{out}}, {s[0]}, {s[1]};")
  if op in (Ops.NOT, Ops.NEG):
    return _op(r, "p", f"not.pred {{out}}, {s[0]};")
  if op is Ops.CMPEQ:
    return _op(r, "p", f"not.pred {{out}}, {_op(r, 'p', f'xor.pred {{out}}, {s[0]}, {s[1]};')};")
  if op is Ops.CMPLT:  # false < true only
    return _op(r, "p", f"and.pred {{out}}, {_op(r, 'p', f'not.pred {{out}}, {s[0]};')}, {s[1]};")
  if op is Ops.WHERE:
    both = _op(r, "p", f"and.pred {{out}}, {s[0]}, {s[1]};")
    other = _op(r, "p", f"and.pred {{out}}, {_op(r, 'p', f'not.pred {{out}}, {s[0]};')}, {s[2]};")
    return _op(r, "p", f"or.pred {{out}}, {both}, {other};")
  # anything else (bool // bool, shifts): as 0/1 bytes, then != 0
  ints = [_op(r, "r", f"selp.u32 {{out}}, 1, 0, {x};") for x in s]
  if len(ints) == 1:
    value = int_unary(r, op, dtypes.uint8, "r", ints[0])
  else:
    value = int_binary(r, op, dtypes.uint8, "r", ints[0], ints[1])
  return _op(r, "p", f"setp.ne.u32 {{out}}, {value}, 0;")


def float_op(r, op: Ops, d: DType, xs: list[str]) -> str:
  """One float ALU op on registers of dtype d."""
  ft, cls = FTYPE[d.name], reg_class(d)
  if d in HALVES and op not in HALF_NATIVE:  # through float32, rounded once at the end
    wide = [_op(r, "f", f"cvt.f32.{ft} {{out}}, {x};") for x in xs]
    return _op(r, "h", f"cvt.rn.{ft}.f32 {{out}}, {float_op(r, op, dtypes.float32, wide)};")
  rn = ".rn" if d in HALVES else ""  # float32/64 + - * may contract to fma, as gcc -O3 does
  if op in (Ops.ADD, Ops.SUB, Ops.MUL):
    return _op(r, cls, f"{op.name.lower()}{rn}.{ft} {{out}}, {xs[0]}, {xs[1]};")
  if op is Ops.FDIV:
    return _op(r, cls, f"div.rn.{ft} {{out}}, {xs[0]}, {xs[1]};")
  if op is Ops.MAX:
    if d == dtypes.float64:
      return _max_f64(r, r.new("fd"), xs[0], xs[1])
    return _op(r, cls, f"max.NaN.{ft} {{out}}, {xs[0]}, {xs[1]};")
  if op is Ops.NEG:
    return _op(r, cls, f"neg.{ft} {{out}}, {xs[0]};")
  if op is Ops.TRUNC:
    return _op(r, cls, f"cvt.rzi.{ft}.{ft} {{out}}, {xs[0]};")
  if op is Ops.RECIP:
    return _op(r, cls, f"rcp.rn.{ft} {{out}}, {xs[0]};")
  if op is Ops.SQRT:
    return _op(r, cls, f"sqrt.rn.{ft} {{out}}, {xs[0]};")
  if op is Ops.EXP2 and d == dtypes.float32:
    return _op(r, cls, f"ex2.approx.f32 {{out}}, {xs[0]};")  # <= 2 ulp; no .ftz, so subnormal results stay
  if op in (Ops.EXP2, Ops.LOG2, Ops.SIN):
    fn = {Ops.EXP2: ptx_math.exp2_f64, Ops.LOG2: ptx_math.log2_f64, Ops.SIN: ptx_math.sin_f64}[op]
    if d == dtypes.float64:
      return fn(r, xs[0])
    wide = _op(r, "fd", f"cvt.f64.f32 {{out}}, {xs[0]};")
    return _op(r, "f", f"cvt.rn.f32.f64 {{out}}, {fn(r, wide)};")
  raise ValueError(f"PTX renderer: no float rendering for {op.name} on {d.name}")


def _max_f64(r, dst: str, a: str, b: str) -> str:
  """C's `a > b || a != a ? a : b`: a NaN in a wins; a NaN in b fails the comparison, so b (NaN) wins."""
  gt = _op(r, "p", f"setp.gt.f64 {{out}}, {a}, {b};")
  a_nan = _op(r, "p", f"setp.nan.f64 {{out}}, {a}, {a};")
  pick = _op(r, "p", f"or.pred {{out}}, {gt}, {a_nan};")
  r.emit(f"selp.f64 {dst}, {a}, {b}, {pick};")
  return dst


# ---- accumulators and warp shuffles -------------------------------------------------------------------------------

def combine(r, op: Ops, d: DType, dst: str, a: str, b: str) -> None:
  """dst = a op b for an accumulator of data dtype d (held as acc_dtype(d)); dst may be a."""
  ad = acc_dtype(d)
  cls = reg_class(ad)
  if cls == "p":
    r.emit(f"{'and' if op is Ops.MUL else 'or'}.pred {dst}, {a}, {b};")
  elif ad.is_int:
    w = 64 if cls == "rd" else 32
    if op is Ops.MAX:
      r.emit(f"max.{itype(ad, cls)} {dst}, {a}, {b};")
      return
    r.emit(f"{'add' if op is Ops.ADD else 'mul.lo'}.s{w} {dst}, {a}, {b};")
    if ad.itemsize < 4:
      r.emit(f"cvt.{'u' if ad.is_unsigned else 's'}32.{MEM_TYPE[ad.name]} {dst}, {dst};")
  elif op is Ops.MAX:
    if ad == dtypes.float64:
      _max_f64(r, dst, a, b)
    else:
      r.emit(f"max.NaN.{FTYPE[ad.name]} {dst}, {a}, {b};")
  else:
    r.emit(f"{'add' if op is Ops.ADD else 'mul'}.{FTYPE[ad.name]} {dst}, {a}, {b};")


def shuffle_xor(r, cls: str, v: str, offset: int) -> str:
  """The value of v in lane (laneid ^ offset) of the warp (all 32 lanes take part)."""
  if cls in ("r", "f"):
    return _op(r, cls, f"shfl.sync.bfly.b32 {{out}}, {v}, {offset}, 31, -1;")
  if cls == "p":
    word = _op(r, "r", f"selp.u32 {{out}}, 1, 0, {v};")
    got = shuffle_xor(r, "r", word, offset)
    return _op(r, "p", f"setp.ne.u32 {{out}}, {got}, 0;")
  lo, hi = r.new("r"), r.new("r")
  r.emit(f"mov.b64 {{{lo}, {hi}}}, {v};")
  slo, shi = shuffle_xor(r, "r", lo, offset), shuffle_xor(r, "r", hi, offset)
  return _op(r, cls, f"mov.b64 {{out}}, {{{{{slo}, {shi}}}}};")


# ---- casts and bitcasts ---------------------------------------------------------------------------------------------

def cast(r, x: str, s: DType, d: DType) -> str:
  """x (a register of dtype s, int64 in 64 bits) converted the way the C renderer converts s to d."""
  if s == d:
    return x
  if s.is_bool:
    dc = reg_class(d)
    if d.is_int:
      return _op(r, dc, f"selp.{itype(d, dc)} {{out}}, 1, 0, {x};")
    if d in HALVES:
      return _op(r, dc, f"selp.b16 {{out}}, 0x{half_bits(1.0, d):04X}, 0x0000, {x};")
    return _op(r, dc, f"selp.{FTYPE[d.name]} {{out}}, {float_literal(1.0, d)}, {float_literal(0.0, d)}, {x};")
  if d.is_bool:
    if s.is_int:
      return _op(r, "p", f"setp.ne.{itype(s, reg_class(s))} {{out}}, {x}, 0;")
    return _op(r, "p", f"setp.neu.{FTYPE[s.name]} {{out}}, {x}, {const(r, 0.0, s)};")  # NaN -> true, as in C
  if s.is_int and d.is_int:
    return _int_cast(r, x, s, d)
  if s.is_int:
    if d == dtypes.bfloat16:  # via float32, as C's _f2bf((float)x) rounds twice
      return cast(r, cast(r, x, s, dtypes.float32), dtypes.float32, d)
    return _op(r, reg_class(d), f"cvt.rn.{FTYPE[d.name]}.{itype(s, reg_class(s))} {{out}}, {x};")
  if d.is_int:
    return _float_to_int(r, x, s, d)
  if dtypes.bfloat16 in (s, d) and dtypes.float32 not in (s, d):  # through float32, as C does
    return cast(r, cast(r, x, s, dtypes.float32), dtypes.float32, d)
  rnd = "" if s.itemsize < d.itemsize else ".rn"
  return _op(r, reg_class(d), f"cvt{rnd}.{FTYPE[d.name]}.{FTYPE[s.name]} {{out}}, {x};")


def _int_cast(r, x: str, s: DType, d: DType) -> str:
  sc, dc = reg_class(s), reg_class(d)
  if dc == "rd":
    if sc == "rd":
      return x
    return _op(r, "rd", f"cvt.{itype(d, 'rd')}.{itype(s, 'r')} {{out}}, {x};")  # extends by the source's sign
  if sc == "rd":
    x = _op(r, "r", f"cvt.u32.u64 {{out}}, {x};")
  return normalize(r, x, d) if d.itemsize < s.itemsize or d.is_unsigned != s.is_unsigned else x


def _float_to_int(r, x: str, s: DType, d: DType) -> str:
  """Truncation toward zero, wrapping to narrow types the way gcc on x86-64 does for values in int32/int64."""
  if s in HALVES:
    x, s = cast(r, x, s, dtypes.float32), dtypes.float32
  ft = FTYPE[s.name]
  if d.itemsize < 4 or d == dtypes.int32:
    return normalize(r, _op(r, "r", f"cvt.rzi.s32.{ft} {{out}}, {x};"), d)
  wide = _op(r, "rd", f"cvt.rzi.s64.{ft} {{out}}, {x};")
  if d == dtypes.uint32:  # through int64, low 32 bits kept: negative values wrap
    return _op(r, "r", f"cvt.u32.u64 {{out}}, {wide};")
  if d == dtypes.int64:
    return wide
  big = _op(r, "rd", f"cvt.rzi.u64.{ft} {{out}}, {x};")  # uint64: negative values wrap through int64
  neg = _op(r, "p", f"setp.lt.{ft} {{out}}, {x}, {float_literal(0.0, s)};")
  return _op(r, "rd", f"selp.b64 {{out}}, {wide}, {big}, {neg};")


def bitcast(r, x: str, s: DType, d: DType) -> str:
  if s.itemsize != d.itemsize:
    raise ValueError(f"PTX renderer: bitcast {s.name} -> {d.name} changes the size ({s.itemsize} != {d.itemsize})")
  sc, dc = reg_class(s), reg_class(d)
  if s.is_bool or d.is_bool:
    return cast(r, x, s, d)  # a bool byte is 0 or 1
  if sc == dc:
    return normalize(r, x, d) if d.is_int and d.is_unsigned != s.is_unsigned else x
  if sc == "h":
    return normalize(r, _op(r, dc, f"cvt.u32.u16 {{out}}, {x};"), d)
  if dc == "h":
    return _op(r, dc, f"cvt.u16.u32 {{out}}, {x};")
  return _op(r, dc, f"mov.{BITS[dc]} {{out}}, {x};")
