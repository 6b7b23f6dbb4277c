"""A SIMT emulator for the PTX subset compiler/render_ptx.py emits, so its kernels can be checked without a GPU:
against the CPU backend kernel by kernel (tests/test_render_ptx.py), and the whole frontend on DEV=NV with
NV_EMULATE=1 (frontend/runtime/nv.py, NVEmuRuntime). Not a general PTX interpreter: it knows the instructions the
renderer uses and fails loudly (EmulatorError naming the line) on anything else.

Every thread of the grid is one lane of numpy arrays; each register is a uint64 array of raw bits, interpreted by
each instruction's type. Control flow is the renderer's structured form: a forward `@!p bra` skips threads to a
label (they rejoin there), a backward `@p bra` is a loop's back edge (leaving threads wait after it until no thread
loops). The emulator checks what a real GPU would fault or hang on: global accesses outside a buffer or misaligned,
integer division by zero, and `bar.sync` / `shfl.sync` reached by only part of a block or warp.

Deviations from hardware: fma.rn.f64 can be 1 ulp off (see _fma64); ex2.approx.f32 is numpy's exp2; out-of-range
float -> int conversions saturate as PTX specifies.
"""
from __future__ import annotations

import re

import numpy as np

from compiler.ir import INT32_MAX, INT32_MIN

BUFFER_SHIFT = 40  # global address of buffer i: (i + 1) << BUFFER_SHIFT
INT_TYPES = {"s8": np.int8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "u8": np.uint8, "u16": np.uint16,
             "u32": np.uint32, "u64": np.uint64, "b8": np.uint8, "b16": np.uint16, "b32": np.uint32, "b64": np.uint64}
FLOAT_TYPES = {"f16": np.float16, "f32": np.float32, "f64": np.float64}
WIDTH = {"s8": 8, "u8": 8, "b8": 8, "s16": 16, "u16": 16, "b16": 16, "f16": 16, "bf16": 16, "s32": 32, "u32": 32,
         "b32": 32, "f32": 32, "s64": 64, "u64": 64, "b64": 64, "f64": 64}
CMPS = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal,
        "ne": np.not_equal}


class EmulatorError(Exception):
  """The kernel did something a GPU would fault or hang on, or used an instruction the emulator does not know."""


def bf16_bits(x: np.ndarray) -> np.ndarray:
  """float32 values rounded to bfloat16 (nearest even; NaN stays quiet), as uint64 bits."""
  u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
  rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
  return np.where((u & 0x7FFFFFFF) > 0x7F800000, (u >> 16) | 0x40, rounded).astype(np.uint64)


def _saturate(v: np.ndarray, t: str) -> np.ndarray:
  """Integral float64 values clamped into integer type t (PTX cvt.rzi saturates)."""
  info = np.iinfo(INT_TYPES[t])
  low, high = v <= float(info.min), v >= float(info.max)
  inner = np.where(low | high, 0.0, v).astype(np.int64 if t.startswith("s") else np.uint64)
  return np.where(low, info.min, np.where(high, info.max, inner)).astype(inner.dtype)


def _fma64(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
  """a*b + c in float64 with the product kept exact (Dekker's two-product, then two-sum): within an ulp of a true
  fma even where a*b and c cancel, which is what the sin range reduction relies on."""
  def split(x):
    big = x * 134217729.0  # 2^27 + 1 (Veltkamp)
    hi = big - (big - x)
    return hi, x - hi
  p = a * b
  ah, al = split(a)
  bh, bl = split(b)
  p_err = ((ah * bh - p) + ah * bl + al * bh) + al * bl
  s = p + c
  bb = s - p
  s_err = (p - (s - bb)) + (c - bb)
  out = s + (s_err + p_err)
  return np.where(np.isfinite(out), out, p + c)


def _split_operands(text: str) -> list[str]:
  out, depth, cur = [], 0, ""
  for ch in text:
    if ch in "{[":
      depth += 1
    elif ch in "}]":
      depth -= 1
    if ch == "," and depth == 0:
      out.append(cur.strip())
      cur = ""
    else:
      cur += ch
  return out + [cur.strip()] if cur.strip() else out


class PTXEmulator:
  def __init__(self, ptx: str):
    self.params: list[str] = []
    self.scalars: list[str] = []  # the .s32 parameters (Variables), after the buffer pointers
    self.shared: dict[str, int] = {}  # shared symbol -> byte offset in the block's shared memory
    self.tables: dict[str, np.ndarray] = {}  # module-scope .const arrays with initializers
    self.shared_size = 0
    self.widths: dict[str, int] = {}  # register name prefix -> bits (0 for .pred)
    self.code: list[tuple] = []  # (guard, negated, opcode parts, operands, line) or ("label", name)
    self.labels: dict[str, int] = {}
    for line in ptx.splitlines():
      self._parse(line.strip())

  def _parse(self, line: str) -> None:
    if line.startswith(".param"):
      (self.params if line.split()[1] == ".u64" else self.scalars).append(line.split()[-1].rstrip(","))
    elif line.startswith(".reg"):
      _, kind, name = line.rstrip(";").split()
      self.widths[name.split("<")[0]] = 0 if kind == ".pred" else WIDTH[kind[1:]]
    elif line.startswith(".const"):
      m = re.fullmatch(r"\.const \.align \d+ \.b64 (\w+)\[(\d+)\] = \{(.*)\};", line)
      words = [int(w, 0) for w in m.group(3).split(",")]
      self.tables[m.group(1)] = np.array(words, np.uint64).view(np.uint8)
    elif line.startswith(".shared"):
      m = re.search(r"(\w+)\[(\d+)\]", line)
      self.shared[m.group(1)] = self.shared_size
      self.shared_size += int(m.group(2))
    elif line.endswith(":") and line.startswith("$"):
      self.labels[line[:-1]] = len(self.code)
      self.code.append(("label", line[:-1]))
    elif line and line[0] not in ".{})" and not line.startswith("//"):
      guard, negated = None, False
      if line.startswith("@"):
        g, line = line.split(None, 1)
        negated = g.startswith("@!")
        guard = g.lstrip("@!")
      opcode, _, rest = line.rstrip(";").partition(" ")
      self.code.append((guard, negated, opcode.split("."), _split_operands(rest), line))

  # ---- registers ----------------------------------------------------------------------------------------------
  def width(self, reg: str) -> int:
    prefix = re.match(r"%[a-z]+", reg).group(0)
    return self.widths[prefix]

  def raw(self, op: str) -> np.ndarray:
    """Raw uint64 bits of a register, immediate, special register or shared symbol, one per thread."""
    if op in self.regs:
      return self.regs[op]
    if op in ("%tid.x", "%ctaid.x"):
      return (self.tid if op == "%tid.x" else self.ctaid).astype(np.uint64)
    if op in self.shared:
      return np.full(self.n, self.shared[op], np.uint64)
    if op in self.tables:  # module tables are the buffers after the parameters
      index = len(self.params) + list(self.tables).index(op)
      return np.full(self.n, (index + 1) << BUFFER_SHIFT, np.uint64)
    if op.startswith(("0f", "0F")):
      return np.full(self.n, int(op[2:], 16), np.uint64)
    if op.startswith(("0d", "0D")):
      return np.full(self.n, int(op[2:], 16), np.uint64)
    if re.fullmatch(r"-?(0x[0-9A-Fa-f]+|\d+)", op):
      value = int(op, 0) if not op.startswith("-") else -int(op[1:], 0)
      return np.full(self.n, value & (2**64 - 1), np.uint64)
    raise EmulatorError(f"unknown operand {op!r}")

  def get(self, op: str, t: str) -> np.ndarray:
    """An operand's value as type t: ints as int64/uint64 arrays (extended from t's width), floats as their numpy
    type (bf16 as float32), pred as bool."""
    bits = self.raw(op)
    if t == "pred":
      return bits.astype(bool)
    if t == "bf16":
      return ((bits & 0xFFFF) << 16).astype(np.uint32).view(np.float32)
    if t in FLOAT_TYPES:
      w = WIDTH[t]
      return (bits & ((1 << w) - 1) if w < 64 else bits).astype(INT_TYPES[f"u{w}"]).view(FLOAT_TYPES[t])
    w = WIDTH[t]
    narrow = (bits & ((1 << w) - 1) if w < 64 else bits).astype(INT_TYPES[f"u{w}"])
    if t.startswith("s"):
      return narrow.view(INT_TYPES[f"s{w}"]).astype(np.int64)
    return narrow.astype(np.uint64)

  def put(self, dst: str, t: str, value: np.ndarray, mask: np.ndarray) -> None:
    if t == "pred":
      bits = np.asarray(value, bool).astype(np.uint64)
    elif t == "bf16":
      bits = bf16_bits(value)
    elif t in FLOAT_TYPES:
      w = WIDTH[t]
      bits = np.asarray(value).astype(FLOAT_TYPES[t]).view(INT_TYPES[f"u{w}"]).astype(np.uint64)
    else:
      bits = np.asarray(value).astype(np.int64 if np.asarray(value).dtype.kind == "i" else np.uint64).view(np.uint64)
    w = self.width(dst)
    if 0 < w < 64:
      bits = bits & np.uint64((1 << w) - 1)
    bits = np.broadcast_to(bits, (self.n,))
    reg = self.regs.setdefault(dst, np.zeros(self.n, np.uint64))
    reg[mask] = bits[mask]

  # ---- memory -------------------------------------------------------------------------------------------------
  def address(self, op: str) -> np.ndarray:
    m = re.fullmatch(r"\[([^+\]]+)(?:\+(-?\d+))?\]", op)
    if m.group(1) in self.params:
      return np.full(self.n, (self.params.index(m.group(1)) + 1) << BUFFER_SHIFT, np.uint64)
    if m.group(1) in self.scalars:  # ld.param of a scalar reads its value (as the bits a 64-bit register holds)
      return np.full(self.n, self.values[self.scalars.index(m.group(1))] & (2**64 - 1), np.uint64)
    return self.raw(m.group(1)) + np.uint64(int(m.group(2) or 0) & (2**64 - 1))

  def _global(self, addr: np.ndarray, size: int, mask: np.ndarray, line: str):
    which = (addr >> np.uint64(BUFFER_SHIFT)).astype(np.int64) - 1
    offset = (addr & np.uint64((1 << BUFFER_SHIFT) - 1)).astype(np.int64)
    sizes = np.array([b.size for b in self.buffers] + [0])
    known = (which >= 0) & (which < len(self.buffers))
    ok = known & (offset + size <= sizes[np.where(known, which, -1)]) & (offset % size == 0)
    bad = np.flatnonzero(mask & ~ok)
    if bad.size:
      lane = bad[0]
      raise EmulatorError(f"thread {lane}: {size}-byte access at buffer {which[lane]} offset {offset[lane]} is out "
                          f"of bounds or misaligned (buffer bytes {sizes[:-1].tolist()}): {line}")
    return which, offset

  def load(self, space: str, t: str, addr: np.ndarray, mask: np.ndarray, line: str) -> np.ndarray:
    size = WIDTH[t] // 8
    out = np.zeros(self.n, np.uint64)
    if space == "param":
      return addr
    if space in ("global", "const"):  # module .const tables sit with the buffers, after the parameters
      which, offset = self._global(addr, size, mask, line)
      for b in np.unique(which[mask]):
        sel = mask & (which == b)
        idx = offset[sel][:, None] + np.arange(size)
        out[sel] = self.buffers[b][idx].copy().view(INT_TYPES[f"u{size * 8}"]).reshape(-1)
    else:
      idx = (self.ctaid[mask] * self.shared_size + addr[mask].astype(np.int64))[:, None] + np.arange(size)
      out[mask] = self.smem[idx].copy().view(INT_TYPES[f"u{size * 8}"]).reshape(-1)
    return out

  def store(self, space: str, t: str, addr: np.ndarray, bits: np.ndarray, mask: np.ndarray, line: str) -> None:
    size = WIDTH[t] // 8
    data = (bits & np.uint64((1 << (size * 8)) - 1) if size < 8 else bits).astype(INT_TYPES[f"u{size * 8}"])
    if space == "global":
      which, offset = self._global(addr, size, mask, line)
      for b in np.unique(which[mask]):
        sel = mask & (which == b)
        self.buffers[b][offset[sel][:, None] + np.arange(size)] = data[sel].view(np.uint8).reshape(-1, size)
    else:
      start = self.ctaid[mask] * self.shared_size + addr[mask].astype(np.int64)
      self.smem[start[:, None] + np.arange(size)] = data[mask].view(np.uint8).reshape(-1, size)

  # ---- execution ------------------------------------------------------------------------------------------------
  def run(self, buffers: list[np.ndarray], grid: int, block: int, values: tuple[int, ...] = ()) -> None:
    """Runs the kernel over grid x block threads; buffers are uint8 arrays, one per pointer .param, written in place;
    values are the scalar .params after them (Variables), as ints.

    Raises:
      EmulatorError: a buffer or value count that does not match the kernel's parameters, or a value outside int32
        (a .param .s32 holds 4 bytes; the GPU launch would refuse it too).
    """
    if len(buffers) != len(self.params) or len(values) != len(self.scalars):
      raise EmulatorError(f"the kernel takes {len(self.params)} buffers and {len(self.scalars)} values "
                          f"{self.scalars}; got {len(buffers)} and {len(values)}")
    self.values = [int(v) for v in values]
    wide = [(name, v) for name, v in zip(self.scalars, self.values) if not INT32_MIN <= v <= INT32_MAX]
    if wide:
      raise EmulatorError(f"values {wide} do not fit the kernel's int32 parameters")
    self.buffers = list(buffers) + [t.copy() for t in self.tables.values()]
    self.n = grid * block
    self.block = block
    self.tid = np.arange(self.n) % block
    self.ctaid = np.arange(self.n) // block
    self.regs: dict[str, np.ndarray] = {}
    self.smem = np.zeros(grid * self.shared_size, np.uint8)
    active = np.ones(self.n, bool)
    pending: dict[str, np.ndarray] = {}
    waiting: dict[int, np.ndarray] = {}
    pc = 0
    while pc < len(self.code):
      ins = self.code[pc]
      if ins[0] == "label":
        active = active | pending.pop(ins[1], np.zeros(self.n, bool))
        pc += 1
        continue
      guard, negated, parts, ops, line = ins
      mask = active.copy()
      if guard is not None:
        g = self.get(guard, "pred")
        mask &= ~g if negated else g
      if parts[0] == "ret":
        break
      if parts[0] == "bra":
        target = self.labels[ops[0]]
        if target > pc:  # forward: the jumping threads rejoin at the label
          pending[ops[0]] = pending.get(ops[0], np.zeros(self.n, bool)) | mask
          active = active & ~mask
          pc += 1
        else:  # a loop's back edge
          waiting[pc] = waiting.get(pc, np.zeros(self.n, bool)) | (active & ~mask)
          if mask.any():
            active, pc = mask, target
          else:
            active, pc = waiting.pop(pc), pc + 1
        continue
      try:
        self.execute(parts, ops, mask, line)
      except EmulatorError:
        raise
      except Exception as e:
        raise EmulatorError(f"{type(e).__name__}: {e} at: {line}") from e
      pc += 1

  def execute(self, parts: list[str], ops: list[str], mask: np.ndarray, line: str) -> None:
    name, t = parts[0], parts[-1]
    if name == "bar":
      full = mask.reshape(-1, self.block)
      if not (full.all(1) | ~full.any(1)).all():
        raise EmulatorError(f"bar.sync reached by part of a block: {line}")
      return
    if name in ("ld", "st"):
      space = parts[1]
      if name == "ld":
        bits = self.load(space, t, self.address(ops[1]), mask, line)
        if t.startswith("s"):  # a narrow signed load sign-extends into the register
          return self.put(ops[0], "s64", self.get_bits_as(bits, t), mask)
        return self.put(ops[0], "u64", bits, mask)
      self.store(space, t, self.address(ops[0]), self.raw(ops[1]), mask, line)
      return
    if name == "mov":
      return self._mov(t, ops, mask)
    if name in ("cvta",):
      return self.put(ops[0], "u64", self.raw(ops[1]), mask)
    if name == "cvt":
      return self._cvt(parts, ops, mask)
    if name == "setp":
      return self._setp(parts[1], t, ops, mask)
    if name == "selp":
      a, b, p = self.raw(ops[1]), self.raw(ops[2]), self.get(ops[3], "pred")
      return self.put(ops[0], "u64", np.where(p, a, b), mask)
    if name == "shfl":
      full = mask.reshape(-1, 32)
      if not (full.all(1) | ~full.any(1)).all():
        raise EmulatorError(f"shfl.sync reached by part of a warp: {line}")
      src = np.arange(self.n) ^ int(ops[2])
      return self.put(ops[0], "u64", self.raw(ops[1])[src], mask)
    if name in ("and", "or", "xor", "not") and t == "pred":
      vals = [self.get(o, "pred") for o in ops[1:]]
      out = ~vals[0] if name == "not" else {"and": np.logical_and, "or": np.logical_or,
                                            "xor": np.logical_xor}[name](*vals)
      return self.put(ops[0], "pred", out, mask)
    if t in FLOAT_TYPES or t == "bf16":
      return self._float(name, parts, t, ops, mask)
    return self._int(name, parts, t, ops, mask, line)

  def get_bits_as(self, bits: np.ndarray, t: str) -> np.ndarray:
    w = WIDTH[t]
    return (bits & np.uint64((1 << w) - 1)).astype(INT_TYPES[f"u{w}"]).view(INT_TYPES[f"s{w}"]).astype(np.int64)

  def _mov(self, t: str, ops: list[str], mask: np.ndarray) -> None:
    dst, src = ops
    if dst.startswith("{"):  # unpack 64 bits into two 32-bit registers
      lo, hi = (x.strip() for x in dst[1:-1].split(","))
      bits = self.raw(src)
      self.put(lo, "u64", bits & np.uint64(0xFFFFFFFF), mask)
      self.put(hi, "u64", bits >> np.uint64(32), mask)
    elif src.startswith("{"):
      lo, hi = (x.strip() for x in src[1:-1].split(","))
      self.put(dst, "u64", (self.raw(lo) & np.uint64(0xFFFFFFFF)) | (self.raw(hi) << np.uint64(32)), mask)
    else:
      self.put(dst, "u64", self.raw(src), mask)

  def _cvt(self, parts: list[str], ops: list[str], mask: np.ndarray) -> None:
    dt, st = parts[-2], parts[-1]
    rnd = parts[1] if len(parts) > 3 else ""
    x = self.get(ops[1], st)
    with np.errstate(all="ignore"):
      if dt in FLOAT_TYPES or dt == "bf16":
        if st in FLOAT_TYPES or st == "bf16":
          x = {"rzi": np.trunc, "rni": np.rint}.get(rnd, lambda v: v)(x)
          if dt == "bf16":
            x = np.asarray(x, np.float32)  # float32 -> bf16 rounds once in put (only f32 sources are emitted)
        else:
          x = x.astype(np.float64) if dt != "f32" else x.astype(np.float32)
        return self.put(ops[0], dt, x, mask)
      if st in FLOAT_TYPES or st == "bf16":  # float -> int: truncate, NaN -> 0, saturate
        return self.put(ops[0], dt, _saturate(np.nan_to_num(np.trunc(x.astype(np.float64)), nan=0.0), dt), mask)
      return self.put(ops[0], dt, self.get_int_as(x, dt), mask)

  def get_int_as(self, x: np.ndarray, t: str) -> np.ndarray:
    """An integer value converted to type t (truncated to its width, extended by its signedness)."""
    w = WIDTH[t]
    bits = x.astype(np.int64).view(np.uint64) if x.dtype.kind == "i" else x.astype(np.uint64)
    return self.get_bits_as(bits, t) if t.startswith("s") else bits & np.uint64((1 << w) - 1 if w < 64 else 2**64 - 1)

  def _setp(self, cmp: str, t: str, ops: list[str], mask: np.ndarray) -> None:
    a, b = self.get(ops[1], t), self.get(ops[2], t)
    with np.errstate(invalid="ignore"):
      if cmp == "nan":
        out = np.isnan(a) | np.isnan(b)
      elif cmp.endswith("u") and cmp != "neu":
        out = CMPS[cmp[:-1]](a, b) | np.isnan(a) | np.isnan(b)
      elif cmp == "neu":
        out = ~np.equal(a, b)
      else:
        out = CMPS[cmp](a, b)
    self.put(ops[0], "pred", out, mask)

  def _float(self, name: str, parts: list[str], t: str, ops: list[str], mask: np.ndarray) -> None:
    x = [self.get(o, t) for o in ops[1:]]
    with np.errstate(all="ignore"):
      if name in ("add", "sub", "mul", "div"):
        fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[name]
        out = fn(x[0], x[1])
      elif name == "fma":
        out = x[0].astype(np.float64) * x[1] + x[2] if t == "f32" else _fma64(x[0], x[1], x[2])
      elif name == "max":
        out = np.maximum(x[0], x[1]) if "NaN" in parts else np.fmax(x[0], x[1])
      elif name == "min":
        out = np.minimum(x[0], x[1]) if "NaN" in parts else np.fmin(x[0], x[1])
      elif name == "neg":
        out = -x[0]
      elif name == "abs":
        out = np.abs(x[0])
      elif name == "rcp":
        out = np.ones_like(x[0]) / x[0]
      elif name == "sqrt":
        out = np.sqrt(x[0])
      elif name == "ex2":
        out = np.exp2(x[0])
      else:
        raise EmulatorError(f"unknown float instruction {'.'.join(parts)}")
    if t == "bf16":
      out = np.asarray(out, np.float32)
    self.put(ops[0], t, out, mask)

  def _int(self, name: str, parts: list[str], t: str, ops: list[str], mask: np.ndarray, line: str) -> None:
    if name == "mad" and parts[1] == "wide":
      a, b = self.get(ops[1], t), self.get(ops[2], t)
      c = self.get(ops[3], "s64" if t.startswith("s") else "u64")
      return self.put(ops[0], "s64", a * b + c, mask)
    x = [self.get(o, t) for o in ops[1:]]
    w = WIDTH[t]
    if name == "mul" and parts[1] == "hi":  # the high half of the double-width product, in exact integers
      wide = x[0].astype(object) * x[1].astype(object)
      return self.put(ops[0], "s64" if t.startswith("s") else "u64",
                      np.array([int(v) >> w for v in wide], np.int64 if t.startswith("s") else np.uint64), mask)
    with np.errstate(all="ignore"):
      if name in ("add", "sub", "mul", "mad"):
        fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "mad": np.multiply}[name]
        out = fn(x[0], x[1])
        if name == "mad":
          out = out + x[2]
      elif name in ("div", "rem"):
        if (x[1][mask] == 0).any():
          raise EmulatorError(f"integer division by zero: {line}")
        b = np.where(x[1] == 0, 1, x[1])
        q = np.abs(x[0]) // np.abs(b) if t.startswith("s") else x[0] // b
        if t.startswith("s"):
          q = np.where((x[0] < 0) != (b < 0), -q, q)
        out = q if name == "div" else x[0] - q * b
      elif name in ("max", "min"):
        out = (np.maximum if name == "max" else np.minimum)(x[0], x[1])
      elif name in ("and", "or", "xor"):
        fn = {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}[name]
        out = fn(x[0].astype(np.int64).view(np.uint64) if x[0].dtype.kind == "i" else x[0],
                 x[1].astype(np.int64).view(np.uint64) if x[1].dtype.kind == "i" else x[1])
      elif name == "not":
        out = ~(x[0].astype(np.int64).view(np.uint64) if x[0].dtype.kind == "i" else x[0])
      elif name == "neg":
        out = -x[0]
      elif name in ("shl", "shr"):
        amount = self.get(ops[2], "u32").astype(np.int64)
        clamped = np.minimum(amount, w)
        if name == "shl":
          bits = x[0].astype(np.int64).view(np.uint64) if x[0].dtype.kind == "i" else x[0]
          out = np.where(clamped >= w, np.uint64(0), bits << np.minimum(clamped, w - 1).astype(np.uint64))
        elif t.startswith("s"):
          out = x[0] >> np.minimum(clamped, 63)  # arithmetic shift; >= width fills with the sign
        else:
          out = np.where(clamped >= w, np.uint64(0), x[0] >> np.minimum(clamped, w - 1).astype(np.uint64))
      else:
        raise EmulatorError(f"unknown integer instruction {'.'.join(parts)}")
    self.put(ops[0], "s64" if np.asarray(out).dtype.kind == "i" else "u64", out, mask)
