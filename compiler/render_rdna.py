"""RDNA renderer: a GPU loop program (compiler/lower_gpu.py) to an AMDHSA code object for gfx1100 (RDNA3) or gfx1201
(RDNA4), wave32, through our own instruction selection and register allocation:

    compiler/rdna_isel.py      statements, values, memory, uniformity (SGPR vs VGPR), block reductions
    compiler/rdna_memory.py    loop induction variables for addresses, early and wide (b64 / b128) loads
    compiler/rdna_alu.py       ALU ops, compares, WHERE, accumulators, fused multiply-adds (when: its docstring)
    compiler/rdna_cast.py      casts, bitcasts
    compiler/rdna_math.py      division, sqrt, exp2, log2, sin, integer division (accuracy in its docstring)
    compiler/rdna_wmma.py      half matmul kernels as v_wmma_f32_16x16x16_f16 tiles (else the selector above)
    compiler/rdna_regalloc.py  liveness and linear-scan register allocation (or RegisterPressureError)
    compiler/rdna_vopd.py      VOPD dual issue of independent VALU pairs (after allocation: register banks)
    compiler/rdna_waitcnt.py   s_waitcnt / s_wait_* for every load result before its first use
    compiler/rdna/             the assembler (LLVM 19 tables) and the code object writer

    kernel = render_rdna(lower_gpu(ast), "gfx1100")
    kernel.asm                   # the assembly text (what DEBUG=4 prints)
    kernel.code_object           # ELF bytes: load_code_object(...) then am.sim.dispatch, or a driver
    kernel.info                  # GPUKernelInfo: grid (workgroups) and block (work-items) sizes (the WMMA form
                                 # launches its own: one wave per 16x16 output tile)

Kernel arguments: one 64-bit global pointer per buffer PARAM at byte 8*i, then one int32 per Variable at
8*params + 4*k (by-value arguments in the metadata).
Descriptor: wave32, the kernarg pointer user SGPRs, workgroup id x, work-item id x, the LDS the block reductions use,
float32 and float16/64 denormals kept (FLOAT_DENORM_MODE 3, like the C renderer), VGPR and SGPR counts from the code.
Not handled: hardware hazards that need no counter wait (gfx11 VALU/SALU forwarding hazards, gfx12 s_wait_alu) are
not modelled by the emulator and not inserted here.
"""
from __future__ import annotations

import dataclasses
import math

from compiler import rdna_wmma
from compiler.lower_gpu import GPUKernelInfo
from compiler.rdna import build_kernel, pointer_arg, value_arg, write_code_object
from compiler.rdna.asm import assemble_instruction, fmt_modifier, fmt_operand
from compiler.rdna.operands import s as sreg
from compiler.rdna.operands import v as vreg
from compiler.rdna.tables import get_target
from compiler.rdna_code import Abs, BRANCHES, Half, MInst, Neg, VReg
from compiler.rdna_isel import Selector
from compiler.rdna_regalloc import VGPR_LIMIT, allocate
from compiler.rdna_vopd import Dual, pair
from compiler.rdna_waitcnt import insert_waits

TARGETS = ("gfx1100", "gfx1201")
VGPRS_PER_SIMD = 1536  # wave32 VGPRs per SIMD lane on gfx11 / gfx12 (192 KiB register file)
SIMDS_PER_WGP = 4
_ENCODED: dict = {}  # (target, instruction text) -> bytes: kernels repeat most of their instructions


@dataclasses.dataclass(frozen=True)
class RDNAKernel:
  name: str
  target: str
  asm: str
  code: bytes
  code_object: bytes
  info: GPUKernelInfo
  vgprs: int
  sgprs: int
  lds_bytes: int


def vgpr_limit(threads: int) -> int:
  """VGPRs a wave may take so that a whole workgroup fits on one WGP (its waves spread over 4 SIMDs)."""
  waves_per_simd = -(-math.ceil(threads / 32) // SIMDS_PER_WGP)
  return min(VGPR_LIMIT, VGPRS_PER_SIMD // waves_per_simd // 8 * 8)


def operand_text(a, phys: dict) -> str:
  if isinstance(a, (Neg, Abs)):
    return str(type(a)(physical_reg(a.operand, phys)))
  return fmt_operand(physical_reg(a, phys))


def physical_reg(a, phys: dict):
  if isinstance(a, Half):
    base = phys[a.reg.id] + a.index
    return sreg(base, a.size) if a.reg.file == "s" else vreg(base, a.size)
  if isinstance(a, VReg):
    return sreg(phys[a.id], a.size) if a.file == "s" else vreg(phys[a.id], a.size)
  return a


def instruction_text(inst: MInst, phys: dict) -> str:
  if isinstance(inst, Dual):
    return inst.text(lambda a: operand_text(a, phys))
  text = inst.op
  if inst.args:
    text += " " + ", ".join(operand_text(a, phys) for a in inst.args)
  for name, value in inst.mods.items():
    if value is not False and value is not None:
      text += " " + fmt_modifier(name, value)
  return text


def assemble_lines(lines: list[str], target: str) -> bytes:
  """Assembly lines (`name:` labels) to bytes; instructions without labels are encoded once per process."""
  tgt = get_target(target)
  labels, pc, sized = {}, 0, []
  for line in lines:
    if line.endswith(":"):
      labels[line[:-1]] = pc
      continue
    if line.split(" ", 1)[0] in BRANCHES:
      sized.append((line, None))
      pc += 4
      continue
    key = (target, line)
    code = _ENCODED.get(key)
    if code is None:
      code = _ENCODED[key] = assemble_instruction(line, tgt)
    sized.append((line, code))
    pc += len(code)
  out = bytearray()
  for line, code in sized:
    out += code if code is not None else assemble_instruction(line, tgt, labels=labels, pc=len(out))
  return bytes(out)


def render_rdna(kernel, target: str = "gfx1100", max_vgprs: int | None = None) -> RDNAKernel:
  """Renders a KERNEL from compiler.lower_gpu.lower_gpu for gfx1100 or gfx1201.

  Raises:
    ValueError: not a GPU kernel, or IR the renderer does not lower (named in the message).
    RegisterPressureError: more live values than registers (compiler/rdna_regalloc.py).
  """
  if target not in TARGETS:
    raise ValueError(f"RDNA renderer: target {target!r}; use one of {', '.join(TARGETS)}")
  tiles = rdna_wmma.match(kernel) if isinstance(kernel.arg, GPUKernelInfo) else None
  sel = rdna_wmma.WmmaSelector(kernel, target, tiles) if tiles is not None else Selector(kernel, target)
  code = sel.select()
  info: GPUKernelInfo = sel.info   # the WMMA form launches one wave per 16x16 output tile
  threads = info.local_size[0]
  alloc = allocate(code.insts, info.name, max_vgprs or vgpr_limit(threads))
  lines = []
  for item in insert_waits(pair(code.insts, alloc.phys, target), alloc.phys, code.generation):
    if isinstance(item, str):
      lines.append(item)
    elif item.is_label:
      lines.append(f"{item.args[0]}:")
    elif item.op != "entry":
      lines.append(instruction_text(item, alloc.phys))
  binary = assemble_lines(lines, target)
  args = [pointer_arg(f"p{i}", 8 * i) for i in range(len(info.params))]
  args += [value_arg(f"var_{v.name}", 8 * len(info.params) + 4 * k, 4) for k, v in enumerate(info.vars)]
  built = build_kernel(info.name, binary, target, args=args,
                       kernarg_size=max(8 * len(info.params) + 4 * len(info.vars), 8),
                       max_flat_workgroup_size=threads, group_segment_fixed_size=sel.lds_bytes,
                       float_denorm_mode_32=3, float_denorm_mode_16_64=3)
  asm = "\n".join(line if line.endswith(":") else "  " + line for line in lines)
  header = (f"; {info.name} {target}: grid {info.global_size[0]} x block {threads}, {alloc.vgprs} VGPRs, "
            f"{alloc.sgprs} SGPRs, {sel.lds_bytes} bytes LDS")
  return RDNAKernel(info.name, target, header + "\n" + asm, binary, write_code_object([built], target), info,
                    alloc.vgprs, alloc.sgprs, sel.lds_bytes)
