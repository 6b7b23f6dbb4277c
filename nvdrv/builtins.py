"""Kernels nvdrv itself uses, in PTX (assembled on first use through nvdrv.compile).

copy16: device-to-device copy on the SMs. The copy engine moves about 0.2 TB/s between two HBM buffers on the H100
(measured: tools/bench_nv.py), the SMs about 3 TB/s. A grid-stride loop in which each thread first loads `unroll`
independent 16-byte vectors, then stores them, so plenty of loads are in flight; `load`/`store` are PTX cache
qualifiers ("" for the defaults, ".nc" for the read-only path, ".cs" for streaming stores). COPY_CONFIG is what
copy_device uses; `tools/bench_nv.py --sweep-copy` measures the alternatives on the GPU.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CopyConfig:
  unroll: int = 4  # 16-byte vectors per thread per loop trip
  load: str = ".nc"  # PTX ld qualifier after `.global` (.nc: the source is read-only while the kernel runs)
  store: str = ""  # PTX st qualifier after `.global`
  block: int = 1024  # threads per block
  blocks_per_sm: int = 16  # grid = blocks_per_sm x SMs (fewer for small copies)


# The H100 (2026-12-07, `bench_nv.py --sweep-copy --repeat 3`, 1 GiB): every configuration lands at 2.6-2.9 TB/s,
# within run-to-run noise of each other; .nc loads with 1024-thread blocks were the highest group (2.80-2.89 TB/s)
# against 2.74-2.86 for the default loads that COPY_CONFIG used before (2.72 TB/s in the benchmark, PyTorch 2.98).
COPY_CONFIG = CopyConfig()
H100_SMS = 132  # SMs of an H100 SXM; the grid size only needs to be about right on other parts


def copy16_ptx(unroll: int = 4, load: str = "", store: str = "") -> str:
  """PTX of `copy16(dst, src, n16)`: copies n16 16-byte vectors from src to dst (both 16-byte aligned)."""
  if unroll < 1 or load not in ("", ".nc", ".cg", ".cs", ".lu") or store not in ("", ".cg", ".cs", ".wt"):
    raise ValueError(f"copy16: unroll {unroll} must be >= 1; load {load!r} / store {store!r} must be PTX cache "
                     f"qualifiers")
  regs = [f"{{%r{4 * i}, %r{4 * i + 1}, %r{4 * i + 2}, %r{4 * i + 3}}}" for i in range(unroll)]
  loads = "\n".join(f"  ld.global{load}.v4.u32 {r}, [%a];" + ("  add.u64 %a, %a, %step;" if i < unroll - 1 else "")
                    for i, r in enumerate(regs))
  stores = "\n".join(f"  st.global{store}.v4.u32 [%b], {r};" + ("  add.u64 %b, %b, %step;" if i < unroll - 1 else "")
                     for i, r in enumerate(regs))
  return f""".version 8.0
.target sm_90
.address_size 64
.visible .entry copy16(.param .u64 dst, .param .u64 src, .param .u64 n16)
{{
  .reg .b64 %dst, %src, %n, %i, %stride, %step, %last, %a, %b, %off; .reg .b32 %r<{4 * unroll}>, %t<4>; .reg .pred %p;
  ld.param.u64 %dst, [dst]; ld.param.u64 %src, [src]; ld.param.u64 %n, [n16];
  cvta.to.global.u64 %dst, %dst; cvta.to.global.u64 %src, %src;
  mov.u32 %t0, %ctaid.x; mov.u32 %t1, %ntid.x; mov.u32 %t2, %tid.x; mov.u32 %t3, %nctaid.x;
  mad.wide.u32 %i, %t0, %t1, 0; cvt.u64.u32 %off, %t2; add.u64 %i, %i, %off;   // i = global thread index
  mul.wide.u32 %stride, %t3, %t1;                                               // threads in the grid
  shl.b64 %step, %stride, 4;                                                    // their bytes
  mul.lo.u64 %last, %stride, {unroll - 1};
MAIN:                                                                  // while i + (unroll-1)*stride < n
  add.u64 %off, %i, %last; setp.ge.u64 %p, %off, %n; @%p bra TAIL;
  shl.b64 %off, %i, 4; add.u64 %a, %src, %off; add.u64 %b, %dst, %off;
{loads}
{stores}
  mad.lo.u64 %i, %stride, {unroll}, %i;
  bra MAIN;
TAIL:
  setp.ge.u64 %p, %i, %n; @%p bra DONE;
  shl.b64 %off, %i, 4; add.u64 %a, %src, %off; add.u64 %b, %dst, %off;
  ld.global{load}.v4.u32 {regs[0]}, [%a];
  st.global{store}.v4.u32 [%b], {regs[0]};
  add.u64 %i, %i, %stride;
  bra TAIL;
DONE:
  ret;
}}
"""
