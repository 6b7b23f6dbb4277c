"""Wave emulator (am/sim) throughput on this machine, one core: lane-operations and instructions per second.

    python tools/bench_emu.py [--target gfx1100|gfx1201] [--waves 64] [--iters 40] [--quality-only]

Two kernels, assembled with compiler.rdna and dispatched through am.sim.dispatch:
  alu     a loop of 64 dependent v_fma_f32 per iteration in each lane (ALU-heavy): workgroups of 256 work-items
          (8 waves, run as one numpy batch), and a single wave alone (no batching to help);
  memory  each work-item loads 4 floats (global_load_b128), scales them and stores them back, 65536 work-items.
A lane-operation is one instruction executed for one lane slot of a wave (instructions x wave size). The issue's
target is >= 5 million lane-operations per second on one core for ALU-heavy kernels.

Generated-code quality (`--quality-only` skips the throughput part): float32 matmul kernels (64x64 @ 64x64, one
output per work-item; 256x64 @ 64x256, register-tiled by compiler.lower_gpu to two outputs per work-item) are
scheduled and lowered once (compiler.lower_gpu), then
  ours  rendered by compiler.render_rdna; the code object's .text is decoded with compiler.rdna.disassemble;
  LLVM  the same lowered kernel rendered as OpenCL C by compiler.render_cl (so each work-item computes the same
        outputs with the same loop), compiled with
          clang-19 -x cl -cl-std=CL2.0 -target amdgcn-amd-amdhsa -mcpu=<target> -O3 -nogpulib -S
        once as is and once with -fno-unroll-loops (the loop shape ours has). -nogpulib: no ROCm device library
        is installed here, so get_local_id / get_group_id are defined as the __builtin_amdgcn_workitem_id_x /
        __builtin_amdgcn_workgroup_id_x they lower to (the kernels use axis 0 only).
Both sides are measured the same way, statically: the innermost loop is the shortest span from a label to a branch
back to it (s_branch / s_cbranch_*); every machine instruction in it is counted, the back-branch, s_waitcnt and
LLVM's s_delay_alu / s_clause hints included (a VOPD v_dual_* pair is one instruction). Multiply-accumulates (MACs)
are the fused ones (v_fma*, v_fmac*, v_mac*, each half of a v_dual_fmac; v_pk_fma and v_dotN count 2 and N; a
v_wmma_*_16x16x16 counts 128, its 4096 per wave over 32 lanes) plus unfused v_mul_f32 + v_add_f32 pairs (min of the
two counts). The figure is loop instructions per MAC, and the last column is ours / LLVM (above 1: ours spends more
instructions per MAC). Both sides contract `acc + a * b` into one fma: OpenCL C by default (clang's -ffp-contract=on),
render_rdna as the PTX and C renderers do (compiler/rdna_alu.py says when). A last row, ours only, is a float16
64x64 @ 64x64 matmul, which render_rdna lowers to WMMA (compiler/rdna_wmma.py); LLVM is not given it (its OpenCL C
has no matrix operations, so the comparison would be with scalar code). Static counts ignore latency and memory
behaviour; they measure instruction selection and loop overhead only.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from am.sim import FlatMemory, dispatch  # noqa: E402
from compiler.rdna import assemble, build_kernel, load_code_object, pointer_arg, value_arg, write_code_object  # noqa: E402
from compiler.rdna import disassemble  # noqa: E402

TARGET_LANE_OPS = 5e6
UNROLL = 64


def waits(target: str) -> tuple:
  if target == "gfx1100":
    return "s_waitcnt lgkmcnt(0)", "s_waitcnt vmcnt(0)"
  return "s_wait_kmcnt 0", "s_wait_loadcnt 0"


def alu_kernel(target: str, iters: int):
  kwait, _ = waits(target)
  body = "\n".join("v_fma_f32 v1, v1, v2, v3" if i % 2 == 0 else "v_fma_f32 v4, v4, v2, v3" for i in range(UNROLL))
  src = f"""
    s_load_b64 s[4:5], s[0:1], 0x0
    v_cvt_f32_u32 v1, v0
    v_mov_b32 v4, v1
    v_mov_b32 v2, 0x3f7ff000
    v_mov_b32 v3, 0x3c000000
    s_mov_b32 s6, {iters}
    loop:
    {body}
    s_sub_u32 s6, s6, 1
    s_cmp_lg_u32 s6, 0
    s_cbranch_scc1 loop
    v_add_f32 v1, v1, v4
    s_lshl_b32 s7, s2, 8
    v_add_nc_u32 v5, s7, v0
    v_lshlrev_b32 v5, 2, v5
    {kwait}
    global_store_b32 v5, v1, s[4:5]
    s_endpgm
  """
  code = assemble(src, target)
  return build_kernel("alu", code, target, args=[pointer_arg("out", 0)])


def memory_kernel(target: str):
  kwait, vwait = waits(target)
  src = f"""
    s_load_b64 s[4:5], s[0:1], 0x0
    s_load_b32 s6, s[0:1], 0x8
    s_lshl_b32 s7, s2, 8
    v_add_nc_u32 v1, s7, v0
    v_lshlrev_b32 v1, 4, v1
    {kwait}
    global_load_b128 v[2:5], v1, s[4:5]
    {vwait}
    v_mul_f32 v2, s6, v2
    v_mul_f32 v3, s6, v3
    v_mul_f32 v4, s6, v4
    v_mul_f32 v5, s6, v5
    global_store_b128 v1, v[2:5], s[4:5]
    s_endpgm
  """
  code = assemble(src, target)
  return build_kernel("mem", code, target, args=[pointer_arg("buf", 0), value_arg("scale", 8, 4)])


def run(kernel, target: str, grid: int, block: int, args_fn, repeats: int = 3):
  """Best of `repeats` dispatches (the machine is shared; the fastest run is the least disturbed one)."""
  co = load_code_object(write_code_object([kernel], target))
  mem = FlatMemory()
  args = args_fn(mem)
  dispatch(co, kernel.name, (1, 1, 1), (block, 1, 1), args, mem)          # warm-up: decode once
  runs = [dispatch(co, kernel.name, (grid, 1, 1), (block, 1, 1), args, mem) for _ in range(repeats)]
  return min(runs, key=lambda s: s.seconds)


def report(name: str, stats) -> float:
  lane_rate = stats.lane_ops / stats.seconds
  print(f"{name:13s} {stats.waves:5d} waves  {stats.instructions:8d} instr  {stats.lane_ops:10d} lane-ops  "
        f"{stats.seconds:7.3f} s  {stats.instructions / stats.seconds / 1e3:8.1f} k instr/s  "
        f"{lane_rate / 1e6:8.2f} M lane-ops/s")
  return lane_rate


# ---- generated-code quality: instructions per multiply-accumulate in a matmul loop, ours against LLVM -------------

CLANG = "clang-19"
MATMULS = (((64, 64), (64, 64)), ((256, 64), (64, 256)))  # one output per work-item; a register tile of two
HALF_MATMULS = (((64, 64), (64, 64)),)  # float16: one 16x16 output tile per wave (WMMA)
CL_IDS = ("#define get_local_id(axis) __builtin_amdgcn_workitem_id_x()\n"
          "#define get_group_id(axis) __builtin_amdgcn_workgroup_id_x()\n")
BRANCH = re.compile(r"s_(c?branch)\w*$")
MAC_WEIGHTS = ((re.compile(r"v_(dual_)?(fma|fmac|mac)\w*"), 1), (re.compile(r"v_pk_fma\w*"), 2),
               (re.compile(r"v_dot(\d+)\w*"), None), (re.compile(r"v_wmma_\w+_16x16x16_\w+"), 128))


def matmul_kernels(shapes=MATMULS, dtype=np.float32) -> list:
  """(label, lowered KERNEL) for each matmul of `shapes`: what both compilers are given."""
  from compiler.lower_gpu import lower_gpu
  from compiler.schedule import Scheduler
  from frontend import Tensor
  from frontend.realize import realized
  rng = np.random.default_rng(0)
  out = []
  for sa, sb in shapes:
    a = Tensor(rng.standard_normal(sa).astype(dtype), device="CPU")
    b = Tensor(rng.standard_normal(sb).astype(dtype), device="CPU")
    items = Scheduler(lambda n: n in realized).schedule([(a @ b).lazydata])
    asts = [item.ast for item in items if item.ast is not None]
    out.append((f"{sa[0]}x{sa[1]} @ {sb[0]}x{sb[1]}", lower_gpu(asts[-1])))
  return out


def innermost_loop(insts: list, labels: dict) -> list:
  """Instruction texts of the shortest span from a label to a branch back to it (the back-branch included).

  Args:
    insts: (text, branch target key or None) per instruction, in program order.
    labels: branch target key -> index in insts of the instruction the label precedes.
  Raises:
    ValueError: no backward branch (the loop was unrolled away, or there was none).
  """
  backward = [(i, labels[t]) for i, (_, t) in enumerate(insts) if t is not None and labels.get(t, i + 1) <= i]
  loops = [(end - start, start, end) for end, start in backward]
  if not loops:
    raise ValueError("no backward branch in the kernel: no loop to measure")
  _, start, end = min(loops)
  return [text for text, _ in insts[start:end + 1]]


def our_instructions(code: bytes, target: str) -> tuple:
  """(insts, labels) for innermost_loop from machine code: branch targets are byte offsets (SOPP simm16 in dwords,
  relative to the next instruction)."""
  decoded = disassemble(code, target)
  labels = {d.offset: i for i, d in enumerate(decoded)}
  insts = []
  for d in decoded:
    target_offset = None
    if BRANCH.match(d.text.split(" ", 1)[0]):
      simm = int(d.text.split()[-1], 0) & 0xFFFF
      simm -= 0x10000 if simm & 0x8000 else 0
      target_offset = d.offset + 4 + 4 * simm
    insts.append((d.text, target_offset))
  return insts, labels


def llvm_instructions(asm: str, name: str) -> tuple:
  """(insts, labels) for innermost_loop from the assembly text of function `name` that llc/clang -S prints."""
  insts, labels, inside = [], {}, False
  for raw in asm.splitlines():
    line = raw.split(";", 1)[0].strip()
    label = re.fullmatch(r"([.\w$]+):", line)
    if label and label.group(1) == name:
      inside = True
    elif label and inside:
      labels[label.group(1)] = len(insts)
    elif inside and line.startswith(".Lfunc_end"):
      break
    elif inside and line and not line.startswith("."):
      op = line.split()[0]
      insts.append((line, line.split()[-1] if BRANCH.match(op) else None))
  if not insts:
    raise ValueError(f"function {name} not found in the assembly")
  return insts, labels


def count_macs(texts: list) -> tuple:
  """(fused, unfused) multiply-accumulates in instruction texts; each VOPD half is looked at alone."""
  fused, muls, adds = 0, 0, 0
  for text in texts:
    for part in text.split("::"):
      op = part.split()[0] if part.strip() else ""
      muls += op.startswith("v_mul_f32")
      adds += op.startswith("v_add_f32")
      for pattern, weight in MAC_WEIGHTS:
        hit = pattern.fullmatch(op)
        if hit:
          fused += weight if weight is not None else int(hit.group(1))
          break
  return fused, min(muls, adds)


def clang_asm(source: str, target: str, extra: list) -> str:
  """Assembly clang-19 prints for OpenCL C source (subprocess errors carry clang's message)."""
  cmd = [CLANG, "-x", "cl", "-cl-std=CL2.0", "-target", "amdgcn-amd-amdhsa", f"-mcpu={target}", "-O3", "-nogpulib",
         "-S", "-o", "-", "-", *extra]
  proc = subprocess.run(cmd, input=CL_IDS + source, capture_output=True, text=True, timeout=120)
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.strip()}")
  return proc.stdout


def quality_row(kernel: str, compiler: str, texts: list) -> float:
  fused, unfused = count_macs(texts)
  macs = fused + unfused
  per_mac = len(texts) / macs if macs else float("inf")
  print(f"{kernel:20s} {compiler:27s} {len(texts):6d} {fused:6d} {unfused:8d} {macs:5d} {per_mac:9.2f}", end="")
  return per_mac


def quality(target: str) -> None:
  from compiler.render_cl import render_cl
  from compiler.render_rdna import render_rdna
  clang = shutil.which(CLANG)
  print(f"\nmatmul loop code quality, {target}: static instructions in the innermost loop per multiply-accumulate")
  print(f"{'kernel':20s} {'compiler':27s} {'instr':>6s} {'fused':>6s} {'mul+add':>8s} {'MACs':>5s} {'instr/MAC':>9s}"
        f"  ours/LLVM")
  for label, kernel in matmul_kernels():
    ours = render_rdna(kernel, target)
    insts, labels = our_instructions(ours.code, target)
    our_rate = quality_row(label, "ours (render_rdna)", innermost_loop(insts, labels))
    print()
    if clang is None:
      continue
    name, source, _ = render_cl(kernel)
    for flavour, extra in (("-O3", []), ("-O3 -fno-unroll-loops", ["-fno-unroll-loops"])):
      asm = clang_asm(source, target, extra)
      try:
        texts = innermost_loop(*llvm_instructions(asm, name))
      except ValueError as err:
        print(f"{label:20s} LLVM {flavour:22s} {err}")
        continue
      rate = quality_row(label, f"LLVM {flavour}", texts)
      print(f"  {our_rate / rate:8.2f}")
  for label, kernel in matmul_kernels(HALF_MATMULS, np.float16):
    ours = render_rdna(kernel, target)
    quality_row(f"{label} f16", "ours (render_rdna, WMMA)", innermost_loop(*our_instructions(ours.code, target)))
    print()
  if clang is None:
    print(f"LLVM's side skipped: {CLANG} not found on PATH (Debian: apt-get install --no-install-recommends clang-19)")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--target", default="gfx1100", choices=("gfx1100", "gfx1201"))
  p.add_argument("--waves", type=int, default=64, help="waves of the ALU kernel (8 per workgroup)")
  p.add_argument("--iters", type=int, default=40, help="loop iterations of the ALU kernel")
  p.add_argument("--quality-only", action="store_true", help="only the matmul code-quality comparison with LLVM")
  args = p.parse_args(argv)
  if args.quality_only:
    quality(args.target)
    return 0
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  groups = max(1, args.waves // 8)
  alu = alu_kernel(args.target, args.iters)
  alu_batched = run(alu, args.target, groups, 256, lambda mem: [mem.alloc(4 * 256 * groups)])
  alu_single = run(alu, args.target, 1, 32, lambda mem: [mem.alloc(4 * 256)])
  n_mem = 1 << 16
  data = np.random.default_rng(0).standard_normal(4 * n_mem).astype(np.float32)
  mem_stats = run(memory_kernel(args.target), args.target, n_mem // 256, 256,
                  lambda mem: [mem.alloc_array(data), np.float32(0.5)])
  print(f"wave emulator (am/sim) on one core, {args.target}, wave32; best of 3 runs:")
  batched_rate = report("alu batched", alu_batched)
  single_rate = report("alu 1 wave", alu_single)
  report("memory", mem_stats)
  for name, rate in (("batched waves", batched_rate), ("a single wave", single_rate)):
    verdict = "meets" if rate >= TARGET_LANE_OPS else "MISSES"
    print(f"target >= {TARGET_LANE_OPS / 1e6:.0f} M lane-ops/s (ALU-heavy), {name}: {verdict} "
          f"({rate / TARGET_LANE_OPS:.1f}x)")
  quality(args.target)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
