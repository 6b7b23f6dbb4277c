"""PTX kernels for the nvdrv hardware tests, written by hand for sm_90 (PTX ISA 8.0)."""

HEADER = ".version 8.0\n.target sm_90\n.address_size 64\n"

# y[i] = a * x[i] + y[i] for i < n
SAXPY = HEADER + """
.visible .entry saxpy(.param .u64 px, .param .u64 py, .param .f32 a, .param .u32 n)
{
  .reg .b64 %rd<8>; .reg .b32 %r<6>; .reg .f32 %f<5>; .reg .pred %p;
  ld.param.u64 %rd1, [px]; ld.param.u64 %rd2, [py]; ld.param.f32 %f1, [a]; ld.param.u32 %r1, [n];
  mov.u32 %r2, %ctaid.x; mov.u32 %r3, %ntid.x; mov.u32 %r4, %tid.x;
  mad.lo.u32 %r5, %r2, %r3, %r4;
  setp.ge.u32 %p, %r5, %r1;
  @%p bra DONE;
  cvta.to.global.u64 %rd1, %rd1; cvta.to.global.u64 %rd2, %rd2;
  mul.wide.u32 %rd3, %r5, 4;
  add.u64 %rd4, %rd1, %rd3; add.u64 %rd5, %rd2, %rd3;
  ld.global.f32 %f2, [%rd4]; ld.global.f32 %f3, [%rd5];
  fma.rn.f32 %f4, %f1, %f2, %f3;
  st.global.f32 [%rd5], %f4;
DONE:
  ret;
}
"""

# x[i] += 1 for i < n (u32)
INCREMENT = HEADER + """
.visible .entry increment(.param .u64 px, .param .u32 n)
{
  .reg .b64 %rd<4>; .reg .b32 %r<8>; .reg .pred %p;
  ld.param.u64 %rd1, [px]; ld.param.u32 %r1, [n];
  mov.u32 %r2, %ctaid.x; mov.u32 %r3, %ntid.x; mov.u32 %r4, %tid.x;
  mad.lo.u32 %r5, %r2, %r3, %r4;
  setp.ge.u32 %p, %r5, %r1;
  @%p bra DONE;
  cvta.to.global.u64 %rd1, %rd1;
  mul.wide.u32 %rd2, %r5, 4; add.u64 %rd3, %rd1, %rd2;
  ld.global.u32 %r6, [%rd3]; add.u32 %r7, %r6, 1; st.global.u32 [%rd3], %r7;
DONE:
  ret;
}
"""

# reads the u32 at an arbitrary address and stores it to out[0]: with an unmapped address it must fault
LOAD_FROM = HEADER + """
.visible .entry load_from(.param .u64 addr, .param .u64 out)
{
  .reg .b64 %rd<3>; .reg .b32 %r1;
  ld.param.u64 %rd1, [addr]; ld.param.u64 %rd2, [out];
  ld.global.u32 %r1, [%rd1];
  st.global.u32 [%rd2], %r1;
  ret;
}
"""

# out[t] = sum_{j<64} (t * j) % 7 through a per-thread local array indexed at run time (forces a stack frame)
LOCAL_ARRAY = HEADER + """
.visible .entry local_array(.param .u64 out)
{
  .local .align 4 .b8 arr[256];
  .reg .b64 %rd<6>; .reg .b32 %r<12>; .reg .pred %p;
  ld.param.u64 %rd1, [out];
  mov.u32 %r1, %tid.x;
  mov.u64 %rd2, arr;
  mov.u32 %r2, 0;
FILL:
  mul.lo.u32 %r3, %r1, %r2; rem.u32 %r4, %r3, 7;
  mul.wide.u32 %rd3, %r2, 4; add.u64 %rd4, %rd2, %rd3; st.local.u32 [%rd4], %r4;
  add.u32 %r2, %r2, 1; setp.lt.u32 %p, %r2, 64; @%p bra FILL;
  mov.u32 %r5, 0; mov.u32 %r2, 0;
SUM:
  mul.lo.u32 %r6, %r2, 37; add.u32 %r6, %r6, %r1; and.b32 %r6, %r6, 63;
  mul.wide.u32 %rd3, %r6, 4; add.u64 %rd4, %rd2, %rd3; ld.local.u32 %r7, [%rd4];
  add.u32 %r5, %r5, %r7;
  add.u32 %r2, %r2, 1; setp.lt.u32 %p, %r2, 64; @%p bra SUM;
  cvta.to.global.u64 %rd1, %rd1; mul.wide.u32 %rd3, %r1, 4; add.u64 %rd4, %rd1, %rd3;
  st.global.u32 [%rd4], %r5;
  ret;
}
"""

# out[block*n + t] = in[block*n + (n-1-t)] through dynamic shared memory (n = ntid.x)
REVERSE_SHARED = HEADER + """
.extern .shared .align 4 .b8 buf[];
.visible .entry reverse_shared(.param .u64 pin, .param .u64 pout)
{
  .reg .b64 %rd<8>; .reg .b32 %r<10>;
  ld.param.u64 %rd1, [pin]; ld.param.u64 %rd2, [pout];
  cvta.to.global.u64 %rd1, %rd1; cvta.to.global.u64 %rd2, %rd2;
  mov.u32 %r1, %tid.x; mov.u32 %r2, %ntid.x; mov.u32 %r3, %ctaid.x;
  mad.lo.u32 %r4, %r3, %r2, %r1;
  mul.wide.u32 %rd3, %r4, 4; add.u64 %rd4, %rd1, %rd3; ld.global.u32 %r5, [%rd4];
  mov.u32 %r6, buf; shl.b32 %r7, %r1, 2; add.u32 %r7, %r6, %r7; st.shared.u32 [%r7], %r5;
  bar.sync 0;
  sub.u32 %r8, %r2, %r1; sub.u32 %r8, %r8, 1; shl.b32 %r8, %r8, 2; add.u32 %r8, %r6, %r8; ld.shared.u32 %r9, [%r8];
  add.u64 %rd5, %rd2, %rd3; st.global.u32 [%rd5], %r9;
  ret;
}
"""
