"""Kernels nvdrv itself uses, in PTX (assembled on first use through nvdrv.compile).

COPY16: device-to-device copy on the SMs. The copy engine moves about 0.2 TB/s between two HBM buffers on the H100
(measured: tools/bench_nv.py), the SMs about 3 TB/s; each thread moves four independent 16-byte vectors per loop
trip (a grid-stride loop), so plenty of loads are in flight.
"""
from __future__ import annotations

COPY16 = """.version 8.0
.target sm_90
.address_size 64
.visible .entry copy16(.param .u64 dst, .param .u64 src, .param .u64 n16)
{
  .reg .b64 %rd<16>; .reg .b32 %r<24>; .reg .pred %p<4>;
  ld.param.u64 %rd1, [dst]; ld.param.u64 %rd2, [src]; ld.param.u64 %rd3, [n16];
  cvta.to.global.u64 %rd1, %rd1; cvta.to.global.u64 %rd2, %rd2;
  mov.u32 %r1, %ctaid.x; mov.u32 %r2, %ntid.x; mov.u32 %r3, %tid.x; mov.u32 %r4, %nctaid.x;
  mad.wide.u32 %rd4, %r1, %r2, 0; cvt.u64.u32 %rd5, %r3; add.u64 %rd4, %rd4, %rd5;  // i = global thread index
  mul.wide.u32 %rd6, %r4, %r2;                                                       // stride = threads in grid
  shl.b64 %rd7, %rd6, 1; add.u64 %rd8, %rd7, %rd6;                                   // 3 * stride
LOOP4:
  add.u64 %rd9, %rd4, %rd8; setp.ge.u64 %p1, %rd9, %rd3; @%p1 bra TAIL;             // i + 3*stride < n16: 4 at once
  shl.b64 %rd10, %rd4, 4; shl.b64 %rd11, %rd6, 4;
  add.u64 %rd12, %rd2, %rd10;
  ld.global.v4.u32 {%r5, %r6, %r7, %r8}, [%rd12]; add.u64 %rd12, %rd12, %rd11;
  ld.global.v4.u32 {%r9, %r10, %r11, %r12}, [%rd12]; add.u64 %rd12, %rd12, %rd11;
  ld.global.v4.u32 {%r13, %r14, %r15, %r16}, [%rd12]; add.u64 %rd12, %rd12, %rd11;
  ld.global.v4.u32 {%r17, %r18, %r19, %r20}, [%rd12];
  add.u64 %rd13, %rd1, %rd10;
  st.global.v4.u32 [%rd13], {%r5, %r6, %r7, %r8}; add.u64 %rd13, %rd13, %rd11;
  st.global.v4.u32 [%rd13], {%r9, %r10, %r11, %r12}; add.u64 %rd13, %rd13, %rd11;
  st.global.v4.u32 [%rd13], {%r13, %r14, %r15, %r16}; add.u64 %rd13, %rd13, %rd11;
  st.global.v4.u32 [%rd13], {%r17, %r18, %r19, %r20};
  shl.b64 %rd14, %rd6, 2; add.u64 %rd4, %rd4, %rd14;
  bra LOOP4;
TAIL:
  setp.ge.u64 %p2, %rd4, %rd3; @%p2 bra DONE;
  shl.b64 %rd10, %rd4, 4; add.u64 %rd12, %rd2, %rd10; add.u64 %rd13, %rd1, %rd10;
  ld.global.v4.u32 {%r5, %r6, %r7, %r8}, [%rd12];
  st.global.v4.u32 [%rd13], {%r5, %r6, %r7, %r8};
  add.u64 %rd4, %rd4, %rd6;
  bra TAIL;
DONE:
  ret;
}
"""
