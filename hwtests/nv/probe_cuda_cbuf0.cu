// Measurement tool, not part of nvdrv: run on a machine with the CUDA toolkit (nvcc -arch=sm_90 -o probe probe_cuda_cbuf0.cu)
// to see what libcuda writes into the driver area of constant bank 0. Its output on the H100 is recorded in nvdrv/FACTS.md section 11.
// Reads CUDA's constant bank 0 driver area (c[0x0][0x0..0x210]) from inside a kernel, through the generic
// address of the first kernel parameter (cvta.param, PTX 7.7+, sm_70+). Measurement of the reference only.
#include <cstdio>
extern "C" __global__ void probe(unsigned long long *out, int pad) {
  unsigned long long a;
  asm volatile("{ .reg .u64 t; mov.u64 t, probe_param_0; cvta.param.u64 %0, t; }" : "=l"(a));
  const unsigned int *base = (const unsigned int *)(a - 0x210);
  for (int i = 0; i < 0x210 / 4; i++) ((unsigned int *)out)[i] = base[i];
  out[0x210 / 8] = a;
}
int main() {
  unsigned long long *d, h[0x220 / 8];
  cudaMalloc(&d, 0x220);
  probe<<<3, 64>>>(d, 7);
  cudaError_t e = cudaDeviceSynchronize();
  cudaMemcpy(h, d, 0x220, cudaMemcpyDeviceToHost);
  printf("err=%d param_generic=0x%llx dev_ptr=%p\n", (int)e, h[0x210 / 8], d);
  unsigned int *w = (unsigned int *)h;
  for (int i = 0; i < 0x210 / 4; i++) if (w[i]) printf("c[0x0][0x%03x] = 0x%08x\n", i * 4, w[i]);
}
