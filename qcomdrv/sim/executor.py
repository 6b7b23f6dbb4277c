"""Runs a dispatch of stand-in code on the CPU: the kernel's OpenCL C compiled by the host C compiler with a small
OpenCL-C shim, executed over the grid against the simulated GPU memory ("the kernel's source semantics").

The shim maps OpenCL C onto C: address-space qualifiers vanish (`__local` becomes `static`, so one workgroup's
work-items share it; workgroups run one after another), `uint`/`uchar`/... are typedefs, `half` is _Float16,
`as_<type>` reinterprets bits, <tgmath.h> makes `sqrt(float)` single precision as in OpenCL, and the work-item
functions (get_local_id, get_group_id, get_global_id, ...) read the current work-item's ids.

Work-items of a workgroup run one at a time. A kernel that calls barrier() runs each work-item as a fiber (ucontext)
with its own stack: barrier() switches to the next work-item, and a round ends when every work-item reached the
barrier. A work-item that returns while others wait at a barrier is a barrier divergence (a hang on hardware) and is
reported as such. Compiled kernels are cached on disk by the hash of their C source (SOV_CACHE, default
~/.cache/sovereign, under qcomsim/).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile

import cffi

SHIM = r"""
#include <math.h>
#include <tgmath.h>
#include <string.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <ucontext.h>
typedef unsigned char uchar; typedef unsigned short ushort; typedef unsigned int uint; typedef unsigned long ulong;
typedef _Float16 half;
#define __kernel
#define __global
#define __constant const
#define __private
#define __local static
#define reqd_work_group_size(x, y, z)
#define CLK_LOCAL_MEM_FENCE 1
#define CLK_GLOBAL_MEM_FENCE 2
static unsigned __sim_lid[3], __sim_gid[3], __sim_lsize[3], __sim_ngroups[3];
static inline size_t get_local_id(uint d) { return d < 3 ? __sim_lid[d] : 0; }
static inline size_t get_group_id(uint d) { return d < 3 ? __sim_gid[d] : 0; }
static inline size_t get_local_size(uint d) { return d < 3 ? __sim_lsize[d] : 1; }
static inline size_t get_num_groups(uint d) { return d < 3 ? __sim_ngroups[d] : 1; }
static inline size_t get_global_id(uint d) { return d < 3 ? (size_t)__sim_gid[d] * __sim_lsize[d] + __sim_lid[d] : 0; }
static inline size_t get_global_size(uint d) { return d < 3 ? (size_t)__sim_ngroups[d] * __sim_lsize[d] : 1; }
static void barrier(int flags);
#define __sim_as(T, x) ({ __typeof__(x) __s = (x); T __d; memcpy(&__d, &__s, sizeof(T)); __d; })
#define as_char(x) __sim_as(char, x)
#define as_uchar(x) __sim_as(uchar, x)
#define as_short(x) __sim_as(short, x)
#define as_ushort(x) __sim_as(ushort, x)
#define as_int(x) __sim_as(int, x)
#define as_uint(x) __sim_as(uint, x)
#define as_long(x) __sim_as(long, x)
#define as_ulong(x) __sim_as(ulong, x)
#define as_float(x) __sim_as(float, x)
#define as_half(x) __sim_as(half, x)
#define as_double(x) __sim_as(double, x)
"""

RUNNER = r"""
#define __SIM_STACK (64 * 1024)
static int __sim_fibers;
static unsigned __sim_cur;
static ucontext_t __sim_main_ctx, *__sim_ctx;
static unsigned char *__sim_done;
static void barrier(int flags) { (void)flags; if (__sim_fibers) swapcontext(&__sim_ctx[__sim_cur], &__sim_main_ctx); }
static void __sim_set_lid(unsigned i) {
  __sim_lid[0] = i % __sim_lsize[0];
  __sim_lid[1] = (i / __sim_lsize[0]) % __sim_lsize[1];
  __sim_lid[2] = i / (__sim_lsize[0] * __sim_lsize[1]);
}
static void __sim_fiber(void) { __sim_call(); __sim_done[__sim_cur] = 1; }
/* 0: done; 1: barrier divergence; 2: out of memory for the fibers */
int qcomsim_run(void **args, const unsigned *ngroups, const unsigned *lsize, int fibers) {
  unsigned n = lsize[0] * lsize[1] * lsize[2], d, i;
  int status = 0;
  char *stacks = 0;
  __sim_args = args; __sim_fibers = fibers;
  for (d = 0; d < 3; d++) { __sim_ngroups[d] = ngroups[d]; __sim_lsize[d] = lsize[d]; }
  if (fibers) {
    stacks = malloc((size_t)n * __SIM_STACK);
    __sim_ctx = malloc(n * sizeof(ucontext_t));
    __sim_done = malloc(n);
    if (!stacks || !__sim_ctx || !__sim_done) { free(stacks); free(__sim_ctx); free(__sim_done); return 2; }
  }
  for (__sim_gid[2] = 0; __sim_gid[2] < ngroups[2] && !status; __sim_gid[2]++)
  for (__sim_gid[1] = 0; __sim_gid[1] < ngroups[1] && !status; __sim_gid[1]++)
  for (__sim_gid[0] = 0; __sim_gid[0] < ngroups[0] && !status; __sim_gid[0]++) {
    if (!fibers) {
      for (i = 0; i < n; i++) { __sim_set_lid(i); __sim_call(); }
      continue;
    }
    for (i = 0; i < n; i++) {
      getcontext(&__sim_ctx[i]);
      __sim_ctx[i].uc_stack.ss_sp = stacks + (size_t)i * __SIM_STACK;
      __sim_ctx[i].uc_stack.ss_size = __SIM_STACK;
      __sim_ctx[i].uc_link = &__sim_main_ctx;
      makecontext(&__sim_ctx[i], __sim_fiber, 0);
      __sim_done[i] = 0;
    }
    for (;;) {
      unsigned finished = 0;
      for (i = 0; i < n; i++) {
        if (__sim_done[i]) continue;
        __sim_cur = i; __sim_set_lid(i);
        swapcontext(&__sim_main_ctx, &__sim_ctx[i]);
      }
      for (i = 0; i < n; i++) finished += __sim_done[i];
      if (finished == n) break;
      if (finished) { status = 1; break; }
    }
  }
  if (fibers) { free(stacks); free(__sim_ctx); free(__sim_done); }
  return status;
}
"""

FLAGS = ["-O1", "-fPIC", "-shared", "-fwrapv", "-fno-strict-aliasing", "-ffp-contract=off", "-w"]
C_TYPES = {"bool": "bool", "char": "char", "uchar": "uchar", "short": "short", "ushort": "ushort", "half": "half",
           "int": "int", "uint": "uint", "long": "long", "ulong": "ulong", "float": "float", "double": "double",
           "size_t": "size_t"}


class ExecutionError(Exception):
  """The simulated shader could not be built or run; the message says why."""


def find_cc() -> str:
  for name in (os.environ.get("CC"), "gcc", "cc", "clang"):
    if name and shutil.which(name):
      return shutil.which(name)
  raise ExecutionError("the simulated Adreno runs kernels with the host C compiler: install gcc (apt-get install gcc)")


def cache_dir() -> str:
  root = os.environ.get("SOV_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "sovereign"))
  path = os.path.join(root, "qcomsim")
  os.makedirs(path, exist_ok=True)
  return path


def host_source(meta: dict, source: str) -> str:
  """The C file for one kernel: shim, the OpenCL C source, a call with the arguments from __sim_args, the runner."""
  args = []
  for k, param in enumerate(meta["params"]):
    kind = C_TYPES.get(param["type"], param["type"])
    args.append(f"({kind} *)__sim_args[{k}]" if param["kind"] == "buffer" else f"*({kind} *)__sim_args[{k}]")
  call = f"static void __sim_call(void) {{ {meta['name']}({', '.join(args)}); }}\n"
  return SHIM + "#line 1 \"kernel.cl\"\n" + source + "\n" + "static void **__sim_args;\n" + call + RUNNER


class Executor:
  """Compiles and runs stand-in kernels; one instance per simulated device."""

  def __init__(self):
    self.ffi = cffi.FFI()
    self.ffi.cdef("int qcomsim_run(void **args, const unsigned *ngroups, const unsigned *lsize, int fibers);")
    self.loaded: dict[str, object] = {}
    self.cc: str | None = None

  def build(self, meta: dict, source: str):
    """The loaded library for a kernel (compiled once per C source).

    Raises:
      ExecutionError: no C compiler, or the OpenCL C does not compile (the message has the diagnostics).
    """
    text = host_source(meta, source)
    key = hashlib.sha256(("\0".join(FLAGS) + text).encode()).hexdigest()[:24]
    if key in self.loaded:
      return self.loaded[key]
    path = os.path.join(cache_dir(), f"{meta['name']}_{key}.so")
    if not os.path.exists(path):
      self.cc = self.cc or find_cc()
      with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.c")
        with open(src, "w") as f:
          f.write(text)
        out = os.path.join(tmp, "kernel.so")
        proc = subprocess.run([self.cc, *FLAGS, "-o", out, src, "-lm"], capture_output=True, text=True)
        if proc.returncode != 0:
          numbered = "\n".join(f"{i + 1:5d} {line}" for i, line in enumerate(source.splitlines()))
          raise ExecutionError(f"the simulated shader compiler rejected kernel {meta['name']}:\n{proc.stderr[-4000:]}"
                               f"\n--- OpenCL C ---\n{numbered}")
        tmp_dst = f"{path}.{os.getpid()}.tmp"
        shutil.copy(out, tmp_dst)
        os.replace(tmp_dst, path)
    lib = self.ffi.dlopen(path)
    self.loaded[key] = lib
    return lib

  def run(self, meta: dict, source: str, args: list[int], groups: tuple[int, int, int],
          local: tuple[int, int, int]) -> None:
    """Run the kernel over `groups` workgroups of `local` work-items; `args` are host addresses: a buffer's data, or
    the bytes of a scalar argument.

    Raises:
      ExecutionError: barrier divergence, or no memory for the work-items' stacks.
    """
    lib = self.build(meta, source)
    pointers = self.ffi.new("void *[]", [self.ffi.cast("void *", a) for a in args] or [self.ffi.NULL])
    ngroups = self.ffi.new("unsigned[3]", list(groups))
    lsize = self.ffi.new("unsigned[3]", list(local))
    status = lib.qcomsim_run(pointers, ngroups, lsize, int(bool(meta.get("barrier"))))
    if status == 1:
      raise ExecutionError(f"kernel {meta['name']}: barrier divergence: some work-items of a workgroup returned while "
                           "others waited at barrier() (the workgroup would hang on hardware)")
    if status == 2:
      raise ExecutionError(f"kernel {meta['name']}: no host memory for {local} work-item stacks")
