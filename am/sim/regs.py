"""Register files of a group of waves that run in lockstep (same pc), vectorised over waves and lanes.

A group holds W waves of one dispatch (from one or several workgroups). Their state is numpy arrays that the compiled
instructions (closures, see wave.py) keep references to:

  S   (W, 256) uint32   scalar operand space, indexed by the 9-bit operand code of the RDNA3/RDNA4 ISA guides'
                        "Scalar ALU operands" table (compiler/rdna/operands.py): 0-105 SGPRs, 106/107 VCC, 108-123
                        TTMPs, 124 NULL, 125 M0, 126/127 EXEC, 253 SCC (0/1); slot 254 swallows writes to NULL.
  V   (nvgpr, W, L) uint32   VGPRs, one contiguous (W, L) plane per register; typed views (f32, i32, and the low /
                        high 16-bit halves as f16/u16/i16) share the memory.
  EX  (W, L) bool       EXEC as a lane mask, kept equal to S[:, 126:128] by sync_exec() after every EXEC write.

64-bit values in VGPRs are register pairs (low dword in the lower register); in SGPRs a pair of adjacent slots, read
through a uint64 view. Inline constants and literals follow the operand tables of the ISA guides: integers -16..64
sign-extended to the operand width, the float constants in the operand's float format, a literal dword zero-extended
(shifted into the high half for 64-bit float operands; LLVM 19 AMDGPUDisassembler::decodeLiteralConstant).
"""
from __future__ import annotations

import struct

import numpy as np

from compiler.rdna.operands import INLINE_FLOATS, INV_2PI_BITS

from .errors import SimError

__all__ = ["DTYPES", "EXEC", "M0", "NULL", "SCC", "VCC", "WaveGroup", "constant"]
VCC, NULL, M0, EXEC, SCC, SINK = 106, 124, 125, 126, 253, 254
LITERAL, VGPR0 = 255, 256
DTYPES = {"u32": np.uint32, "i32": np.int32, "f32": np.float32, "u16": np.uint16, "i16": np.int16, "f16": np.float16,
          "u64": np.uint64, "i64": np.int64, "f64": np.float64, "u8": np.uint8, "i8": np.int8}
UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def constant(code: int, literal: int | None, dtype: str, fp64_literal: bool = False):
  """The value of an inline-constant or literal operand code as a numpy scalar of `dtype`, or None if the code is not
  a constant."""
  dt = np.dtype(DTYPES[dtype])
  width = dt.itemsize
  if 128 <= code <= 208:
    n = code - 128 if code <= 192 else 192 - code
    bits = n & ((1 << 8 * width) - 1)
  elif 240 <= code <= 248:
    if code == 248:
      bits = INV_2PI_BITS[{2: "f16", 4: "f32", 8: "f64"}[width]]
    else:
      fmt = {2: "<e", 4: "<f", 8: "<d"}[width]
      bits = int.from_bytes(struct.pack(fmt, INLINE_FLOATS[code - 240]), "little")
  elif code == LITERAL:
    bits = literal << 32 if width == 8 and fp64_literal else literal & ((1 << 8 * width) - 1)
  elif code == NULL:
    bits = 0
  else:
    return None
  return np.array(bits, dtype=UNSIGNED[width]).view(dt)[()]


class WaveGroup:
  """State of W waves at one pc. `ctx` is the dispatch (wave size, VGPR count, LDS, memory, program)."""

  def __init__(self, ctx, waves: np.ndarray, slots: np.ndarray, S: np.ndarray, V: np.ndarray, wait, pc: int):
    self.ctx, self.waves, self.slots, self.wait, self.pc = ctx, waves, slots, wait, pc
    self.W, self.L = len(waves), ctx.wave_size
    self.nw = self.L // 32
    self.S, self.V = S, V
    self.EX = np.zeros((self.W, self.L), dtype=bool)
    self.full = [True]
    self.rows = np.arange(self.W)
    self.lds_base = (slots.astype(np.int64) * ctx.lds_size)[:, None]
    self.ops = None        # the per-pc closure table (wave.py)
    self.split = None      # (taken mask, taken pc, other pc) after a divergent scalar branch
    self.status = None
    self._sviews = {name: S.view(dt) for name, dt in DTYPES.items() if np.dtype(dt).itemsize == 4}
    self._s16 = {name: S.view(DTYPES[name]) for name in ("u16", "i16", "f16")}
    self._vviews = {name: V.view(dt) for name, dt in DTYPES.items() if np.dtype(dt).itemsize == 4}
    halves = V.view(np.uint16)
    self._vhalf = {}
    for name in ("u16", "i16", "f16"):
      typed = halves.view(DTYPES[name])
      self._vhalf[name, 0] = typed[:, :, 0::2]
      self._vhalf[name, 1] = typed[:, :, 1::2]
    self.sync_exec()

  # ---- EXEC and lane masks ----------------------------------------------------------------------------------------
  def sync_exec(self) -> None:
    bits = np.unpackbits(self.S[:, EXEC:EXEC + self.nw].view(np.uint8), axis=1, bitorder="little")
    self.EX[...] = bits.view(bool)
    self.full[0] = bool(self.EX.all())

  def mask_reader(self, code: int, literal: int | None = None):
    """A callable returning the (W, L) bool lane mask held in the SGPR(s) at `code` (VCC, an SGPR pair in wave64)."""
    if code < 128:
      cols = self.S[:, code:code + self.nw]
      return lambda: np.unpackbits(cols.view(np.uint8), axis=1, bitorder="little").view(bool)
    value = constant(code, literal, "u64" if self.nw == 2 else "u32")
    if value is None:
      raise SimError(f"operand code {code} is not a lane mask")
    bits = np.unpackbits(np.array([value]).view(np.uint8), bitorder="little")[:self.L].view(bool)
    fixed = np.broadcast_to(bits, (self.W, self.L))
    return lambda: fixed

  def mask_writer(self, code: int):
    """A callable storing a (W, L) bool lane mask into the SGPR(s) at `code` (EXEC updates EX too)."""
    if code == NULL:
      return lambda bits: None
    cols = self.S[:, code:code + self.nw]
    if code != EXEC:
      def write(bits):
        cols[...] = np.packbits(bits, axis=1, bitorder="little").view(np.uint32)
      return write
    EX, full = self.EX, self.full

    def write_exec(bits):
      cols[...] = np.packbits(bits, axis=1, bitorder="little").view(np.uint32)
      EX[...] = bits
      full[0] = bool(bits.all())
    return write_exec

  # ---- operand views ---------------------------------------------------------------------------------------------
  def check_vgpr(self, index: int, count: int = 1) -> None:
    if index + count > self.ctx.vgprs:
      raise SimError(f"v{index + count - 1} is beyond the {self.ctx.vgprs} VGPRs the kernel descriptor allocates "
                     "(GRANULATED_WORKITEM_VGPR_COUNT); raise .amdhsa_next_free_vgpr")

  def vreg(self, index: int, dtype: str, hi: bool = False) -> np.ndarray:
    """VGPR `index` as a (W, L) view of a 32-bit or 16-bit type (hi: the upper half for 16-bit types)."""
    self.check_vgpr(index)
    if np.dtype(DTYPES[dtype]).itemsize == 2:
      return self._vhalf[dtype, int(hi)][index]
    return self._vviews[dtype][index]

  def vpair_reader(self, index: int, dtype: str):
    """A callable returning VGPRs index, index+1 as one (W, L) 64-bit array (a copy)."""
    self.check_vgpr(index, 2)
    lo, hi, dt = self.V[index], self.V[index + 1], DTYPES[dtype]
    return lambda: np.stack((lo, hi), axis=-1).view(dt)[..., 0]

  def vpair_writer(self, index: int):
    """A callable storing a (W, L) 64-bit array into VGPRs index, index+1 under EXEC."""
    self.check_vgpr(index, 2)
    lo, hi, EX, full = self.V[index], self.V[index + 1], self.EX, self.full

    def write(value):
      words = np.ascontiguousarray(value).view(np.uint32)
      if full[0]:
        lo[...] = words[..., 0::2]
        hi[...] = words[..., 1::2]
      else:
        np.copyto(lo, words[..., 0::2], where=EX)
        np.copyto(hi, words[..., 1::2], where=EX)
    return write

  def sbroadcast(self, code: int, dtype: str, hi: bool = False) -> np.ndarray:
    """Scalar operand `code` as a (W, 1) view, to combine with (W, L) lane values (hi: upper 16-bit half)."""
    width = np.dtype(DTYPES[dtype]).itemsize
    if width == 4:
      return self._sviews[dtype][:, code:code + 1]
    if width == 2:
      half = 2 * code + int(hi)
      return self._s16[dtype][:, half:half + 1]
    return self.S[:, code:code + 2].view(DTYPES[dtype])

  def scol(self, code: int, dtype: str) -> np.ndarray:
    """Scalar operand `code` as a (W,) view (one value per wave); writes to NULL go to a sink slot."""
    code = SINK if code == NULL else code
    width = np.dtype(DTYPES[dtype]).itemsize
    if width == 4:
      return self._sviews[dtype][:, code]
    if width == 8:
      return self.S[:, code:code + 2].view(DTYPES[dtype])[:, 0]
    return self._s16[dtype][:, 2 * code]

  # ---- splitting and merging -------------------------------------------------------------------------------------
  def subset(self, mask: np.ndarray, pc: int) -> WaveGroup:
    """The waves where mask is True, as a new group (copies of their registers) at pc."""
    return WaveGroup(self.ctx, self.waves[mask], self.slots[mask], self.S[mask], self.V[:, mask], self.wait.copy(), pc)

  @staticmethod
  def merge(groups: list) -> WaveGroup:
    """One group from several at the same pc (wave order restored)."""
    waves = np.concatenate([g.waves for g in groups])
    order = np.argsort(waves, kind="stable")
    first = groups[0]
    S = np.concatenate([g.S for g in groups])[order]
    V = np.concatenate([g.V for g in groups], axis=1)[:, order]
    slots = np.concatenate([g.slots for g in groups])[order]
    wait = first.wait.copy()
    for g in groups[1:]:
      wait.merge(g.wait)
    return WaveGroup(first.ctx, waves[order], slots, S, V, wait, first.pc)
