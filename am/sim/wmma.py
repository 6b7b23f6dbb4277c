"""Wave matrix multiply-accumulate (WMMA, VOP3P) in wave32: D = A x B + C for 16x16x16 tiles, A and B of float16 or
bfloat16, C and D of float32.

Lane layouts, from AMD's Matrix Instruction Calculator (github.com/ROCm/amd_matrix_instruction_calculator v1.3.2,
commit 2ef9189: `matrix_calculator.py -a rdna3|rdna4 -i v_wmma_f32_16x16x16_f16 -w 32 --detail-instruction`), with
"vR.half" meaning VGPR src+R, bits [15:0] (half 0) or [31:16] (half 1), and i the row, j the column, k the reduction
index:
  RDNA3 (gfx11)  A[i][k]: v(k // 2).(k % 2) in lanes i and i + 16 (8 VGPRs; the two half-waves hold the same data)
                 B[k][j]: v(k // 2).(k % 2) in lanes j and j + 16
                 C/D[i][j]: v(i // 2) in lane 16 * (i % 2) + j
  RDNA4 (gfx12)  A[i][k]: v(2 * (k // 8) + (k // 2) % 2).(k % 2) in lane 16 * ((k // 4) % 2) + i (4 VGPRs)
                 B[k][j]: the same with j for i
                 C/D[i][j]: v(i % 8) in lane 16 * (i // 8) + j
Numerics: the products of 16-bit inputs are exact, summed with C in float64 and rounded once to float32. The guides
do not give the hardware's internal order or width of the sum, so the last bits of real results may differ. Refused
here (UnsupportedInstruction), not modelled: input modifiers (neg_lo / neg_hi), an EXEC that is not all ones, and
on gfx11 A or B data that differs between the two half-waves (the layout above says they must be the same).
"""
from __future__ import annotations

import numpy as np

from .program import Inst
from .regs import constant

__all__ = ["compile_wmma"]
INPUTS = {"v_wmma_f32_16x16x16_f16": "f16", "v_wmma_f32_16x16x16_bf16": "bf16"}


def layout(gen: int):
  """(reg, half, lane) index arrays of shape (16, 16) for A[i][k] (B[k][j] is the same with j for i), and (reg, lane)
  for C/D[i][j], per the module docstring."""
  i, k = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
  if gen == 11:
    ab = (k // 2, k % 2, i)
    cd = (i // 2, 16 * (i % 2) + k)   # here k plays j
  else:
    ab = (2 * (k // 8) + (k // 2) % 2, k % 2, 16 * ((k // 4) % 2) + i)
    cd = (i % 8, 16 * (i // 8) + k)
  return ab, cd


def halves(g, first: int, count: int) -> np.ndarray:
  """VGPRs first .. first+count-1 as (W, count, 2, L) uint16: [..., r, h, lane] = bits of half h of VGPR r."""
  g.check_vgpr(first, count)
  words = np.stack([g.V[first + r].view(np.uint32) for r in range(count)], axis=1)
  return np.stack((words & 0xFFFF, words >> 16), axis=2).astype(np.uint16)


def to_f64(bits: np.ndarray, kind: str) -> np.ndarray:
  if kind == "f16":
    return bits.view(np.float16).astype(np.float64)
  return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def compile_wmma(g, inst: Inst):
  kind = INPUTS.get(inst.mnemonic)
  if kind is None or g.L != 32:
    raise inst.unsupported("only the wave32 float32 = 16-bit x 16-bit WMMA forms are modelled")
  for name in ("src0", "src1", "src2"):
    if inst.vals.get(f"{name}_modifiers", 0):
      raise inst.unsupported("WMMA input modifiers (neg_lo / neg_hi) are not modelled")
  gen = g.ctx.program.generation
  nab = 8 if gen == 11 else 4
  (reg, half, lane), (creg, clane) = layout(gen)
  a0, b0, d0 = inst.code("src0") - 256, inst.code("src1") - 256, inst.code("vdst") - 256
  c_code = inst.code("src2")
  fixed_c = None if c_code >= 256 else constant(c_code, inst.literal, "f32")
  if a0 < 0 or b0 < 0:
    raise inst.unsupported("WMMA A and B must be VGPRs")
  g.check_vgpr(d0, 8)
  nxt, full = inst.nxt, g.full

  def run():
    if not full[0]:
      raise inst.fail("WMMA with some EXEC bits clear: the emulator models the whole-wave form only")
    a_bits, b_bits = halves(g, a0, nab), halves(g, b0, nab)
    if gen == 11 and not (np.array_equal(a_bits[..., :16], a_bits[..., 16:])
                          and np.array_equal(b_bits[..., :16], b_bits[..., 16:])):
      raise inst.fail("RDNA3 WMMA needs A and B replicated in both half-waves (lanes 0-15 = lanes 16-31)")
    a = to_f64(a_bits[:, reg, half, lane], kind)                    # (W, 16, 16): A[i][k]
    b = to_f64(b_bits[:, reg, half, lane], kind).transpose(0, 2, 1)  # B[k][j]
    if fixed_c is None:
      g.check_vgpr(c_code - 256, 8)
      c_regs = np.stack([g.V[c_code - 256 + r].view(np.float32) for r in range(8)], axis=1)   # (W, 8, 32)
      c = c_regs[:, creg, clane].astype(np.float64)
    else:
      c = np.full((g.W, 16, 16), np.float64(fixed_c))
    d = (np.matmul(a, b) + c).astype(np.float32)
    out = np.zeros((g.W, 8, 32), np.float32)
    out[:, creg, clane] = d
    for r in range(8):
      g.V[d0 + r].view(np.float32)[...] = out[:, r]
    return nxt
  return run
