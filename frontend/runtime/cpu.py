"""The CPU runtime: kernels rendered to C, compiled by the system C compiler, loaded with cffi, run on all cores.

Each kernel's outermost loop is split into contiguous chunks, one per thread of a small C thread pool
(frontend/runtime/cpu_pool.py); one cffi call, with the GIL released, runs them all. Compiled objects are cached on
disk by the hash of their source and flags (`SOV_CACHE`, default ~/.cache/sovereign), so a second process compiles
nothing.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import cffi
import numpy as np

from compiler.dtypes import ALL_DTYPES
from compiler.lower import KernelInfo
from compiler.render_c import render
from frontend.device import DeviceUnavailable
from frontend.runtime.cpu_pool import POOL_CDEF, POOL_SOURCE, packed_entry

FLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-fno-math-errno", "-fwrapv", "-fno-strict-aliasing", "-w"]
MIN_WORK_PER_THREAD = 1 << 15  # element-ops below which a kernel runs on one thread


def find_cc() -> str:
  for name in (os.environ.get("CC"), "gcc", "clang", "cc"):
    if name and shutil.which(name):
      return shutil.which(name)
  raise DeviceUnavailable("CPU: no C compiler found; install gcc (apt-get install gcc) or clang, or set CC")


def cache_dir() -> str:
  root = os.environ.get("SOV_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "sovereign"))
  path = os.path.join(root, "cpu")
  os.makedirs(path, exist_ok=True)
  return path


class CPUAllocator:
  """Host memory as numpy byte arrays, 64-byte aligned (one cache line, one 512-bit vector).

  Freed blocks are kept per size (up to CACHE_LIMIT bytes) and handed out again, so a training step or a benchmark
  loop does not page-fault fresh memory on every call. A block that numpy views still reference is never reused."""
  host_memory = True  # buffers can be shared with numpy without copies
  CACHE_LIMIT = 1 << 30

  def __init__(self):
    self.cache: dict[int, list[np.ndarray]] = {}
    self.cached_bytes = 0

  def alloc(self, nbytes: int) -> np.ndarray:
    free = self.cache.get(nbytes)
    if free:
      self.cached_bytes -= nbytes
      return free.pop()
    raw = np.empty(nbytes + 64, np.uint8)
    start = (-raw.ctypes.data) % 64
    return raw[start:start + nbytes]

  def free(self, mem: np.ndarray, nbytes: int) -> None:
    # mem is a slice of an owning array; numpy views of mem point at that owner. References expected: to mem, the
    # caller's local, this parameter and getrefcount's argument; to the owner, mem's base and getrefcount's argument.
    # Anything more is a live numpy view (e.g. from Tensor.numpy()), and the block must not be reused.
    if sys.getrefcount(mem) > 3 or sys.getrefcount(mem.base) > 2 or self.cached_bytes + nbytes > self.CACHE_LIMIT:
      return
    self.cache.setdefault(nbytes, []).append(mem)
    self.cached_bytes += nbytes

  def copyin(self, dst: np.ndarray, src: np.ndarray) -> None:
    np.copyto(dst, src)

  def copyout(self, dst: np.ndarray, src: np.ndarray) -> None:
    np.copyto(dst, src)

  def address(self, mem: np.ndarray) -> int:
    return mem.ctypes.data


class CPUProgram:
  """One compiled kernel; call with buffer addresses and the values of info.vars. `lib_path`, `fn_name` and `source`
  (the C compiled, packed entry included) stay on the object so a TinyJit capture can be saved as a replay file
  (frontend/replay_save.py)."""

  def __init__(self, dev: CPUDevice, info: KernelInfo, lib_path: str, fn_name: str, source: str = ""):
    self.info = info
    self.dev = dev
    self.lib_path, self.fn_name, self.source = lib_path, fn_name, source
    self.ffi = cffi.FFI()
    nargs = len(info.params)
    self.ffi.cdef(f"void {fn_name}({', '.join(['void*'] * nargs + ['int'] * len(info.vars) + ['long long'] * 2)});")
    self.ffi.cdef(f"void {fn_name}_packed(void **args, long long start, long long end);")
    self.lib = self.ffi.dlopen(lib_path)
    self.fn = getattr(self.lib, fn_name)
    self.packed = dev.pool_ffi.cast("void *", self.ffi.cast("uintptr_t", self.ffi.addressof(self.lib,
                                                                                                f"{fn_name}_packed")))
    work = max(info.ops, info.bytes)
    self.threads = max(1, min(dev.threads, info.global_extent, work // MIN_WORK_PER_THREAD))

  def __call__(self, addresses: list[int], values: tuple[int, ...] = ()) -> None:
    n = self.info.global_extent
    if self.threads == 1:
      self.fn(*[self.ffi.cast("void*", a) for a in addresses], *values, 0, n)
      return
    args = packed_args(self.dev.pool_ffi, addresses, values)
    with self.dev.lock:
      self.dev.pool.sov_pool_run(self.packed, args, n, self.threads)


def packed_args(ffi, addresses, values) -> object:
  """A packed entry's argument array: the buffer addresses, then each Variable's value in its pointer-sized slot (the
  low 32 bits: the entry reads it as (int))."""
  slots = [ffi.cast("void *", a) for a in addresses] + [ffi.cast("void *", v & 0xFFFFFFFF) for v in values]
  return ffi.new("void *[]", slots or [ffi.NULL])


class CPUGraph:
  """A TinyJit capture on one CPU device as a launch list the thread pool runs in one call (sov_pool_run_list): each
  launch's argument array (buffer addresses, then Variable values in their slots) built once and patched in place,
  every launch made as CPUProgram makes it (one call where it runs on one thread, else the pool with its thread
  count: the same chunks, so the same results bit for bit). A replay costs one cffi call, not a Python call and an
  argument array per kernel."""

  def __init__(self, dev: CPUDevice, items):
    ffi = self.ffi = dev.pool_ffi
    self.dev, self.count = dev, len(items)
    self.args = [packed_args(ffi, [dev.allocator.address(b.mem) for b in item.bufs],
                             [item.var_vals[v] for v in item.info.vars]) for item in items]
    self.var_base = [len(item.info.params) for item in items]  # slot of each launch's first Variable
    self.table = ffi.new("void **[]", self.args)
    self.fns = ffi.new("void *[]", [item.program.packed for item in items])
    self.ns = ffi.new("long long[]", [item.info.global_extent for item in items])
    self.threads = ffi.new("int[]", [item.program.threads for item in items])

  def set_buffer(self, item: int, index: int, buf) -> None:
    self.args[item][index] = self.ffi.cast("void *", self.dev.allocator.address(buf.mem))

  def set_var(self, item: int, k: int, value: int) -> None:
    self.args[item][self.var_base[item] + k] = self.ffi.cast("void *", value & 0xFFFFFFFF)  # (int) in C

  def run(self) -> None:
    with self.dev.lock:
      self.dev.pool.sov_pool_run_list(self.count, self.fns, self.table, self.ns, self.threads)


_POOL: list[tuple] = []  # (ffi, library, threads, lock) of the process's thread pool, started by the first device


def _shared_pool(dev: CPUDevice) -> tuple:
  if not _POOL:
    _POOL.append(CPUDevice.start_pool(dev))
  return _POOL[0]


class CPUDevice:
  name = "CPU"
  dtypes = ALL_DTYPES

  def __init__(self):
    self.cc = find_cc()
    self.allocator = CPUAllocator()  # each CPU device ("CPU", "CPU:1", ...) has its own buffers
    # ... but they share the cores: one thread pool per process (the pool's state is global in its shared object,
    # and several pools would only spin against each other)
    self.pool_ffi, self.pool, self.threads, self.lock = _shared_pool(self)

  @staticmethod
  def start_pool(dev: CPUDevice) -> tuple:
    threads = max(1, int(os.environ.get("CPU_THREADS", os.cpu_count() or 1)))
    pool_ffi = cffi.FFI()
    pool_ffi.cdef(POOL_CDEF)
    pool = pool_ffi.dlopen(dev.compile("sov_pool", POOL_SOURCE, libs=("-lpthread",)))
    threads = 1 + pool.sov_pool_start(threads - 1) if threads > 1 else 1
    return pool_ffi, pool, threads, threading.Lock()  # the lock: one pool job at a time

  def describe(self) -> str:
    return f"CPU: {self.threads} threads, compiler {self.cc}"

  def render(self, kernel) -> tuple[str, str]:
    return render(kernel)

  def compile(self, fn_name: str, source: str, libs: tuple[str, ...] = ("-lm",)) -> str:
    """Compiles C source to a shared object (cached on disk); returns its path.

    Raises:
      RuntimeError: the compiler failed; the message holds its output and the source.
    """
    key = hashlib.sha256((self.cc + " ".join(FLAGS + list(libs)) + source).encode()).hexdigest()[:24]
    path = os.path.join(cache_dir(), f"{fn_name}_{key}.so")
    if os.path.exists(path):
      return path
    with tempfile.TemporaryDirectory() as tmp:
      src = os.path.join(tmp, "k.c")
      with open(src, "w") as f:
        f.write(source)
      out = os.path.join(tmp, "k.so")
      proc = subprocess.run([self.cc, *FLAGS, "-o", out, src, *libs], capture_output=True, text=True)
      if proc.returncode != 0:
        raise RuntimeError(f"C compiler failed for kernel {fn_name}:\n{proc.stderr}\n--- source ---\n{source}")
      tmp_dst = f"{path}.{os.getpid()}.tmp"
      shutil.copy(out, tmp_dst)
      os.replace(tmp_dst, path)  # atomic: concurrent processes never load a half-written object
    return path

  def program(self, kernel) -> tuple[CPUProgram, str]:
    fn_name, source = self.render(kernel)
    full_source = source + packed_entry(fn_name, len(kernel.arg.params), len(kernel.arg.vars))
    path = self.compile(fn_name, full_source)
    return CPUProgram(self, kernel.arg, path, fn_name, full_source), source

  def synchronize(self) -> None:
    """CPU kernels run to completion inside the call."""

  def graph(self, items) -> CPUGraph | None:
    """A TinyJit capture's consecutive kernels on this device as one launch list (CPUGraph), when every one is a
    CPUProgram of this device's pool."""
    if not items or not all(isinstance(item.program, CPUProgram) and item.program.dev.pool is self.pool
                            for item in items):
      return None
    return CPUGraph(self, items)


