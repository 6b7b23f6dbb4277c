"""PTX -> cubin for NVIDIA GPUs (sm_90 first), without libcuda; plus SASS disassembly for DEBUG=4.

Where the assembler comes from, in this order (the first one found compiles; `find_compilers` lists them all):
  1. pip wheels, found through the `nvidia` namespace package (`importlib.util.find_spec("nvidia")`, every entry
     of its `submodule_search_locations`, never a hard-coded site-packages):
       nvidia-cuda-nvcc (CUDA 13)   nvidia/cu13/bin/ptxas
       nvidia-cuda-nvcc-cu12        nvidia/cuda_nvcc/bin/ptxas              (12.9.86 checked)
       nvidia-nvjitlink (CUDA 13)   nvidia/cu13/lib/libnvJitLink.so.13      (in-process, cffi ABI mode)
       nvidia-nvjitlink-cu12        nvidia/nvjitlink/lib/libnvJitLink.so.12 (12.9.86 checked)
  2. an installed CUDA toolkit: $CUDA_HOME/bin/ptxas, /usr/local/cuda/bin/ptxas, then `ptxas` on $PATH.
No wheel ships libnvptxcompiler (FACT_SOURCES.md, NVIDIA section), and libcuda is never used.

nvJitLink facts (nvJitLink.h of nvidia-nvjitlink-cu12 12.9.86, nvidia/nvjitlink/include/nvJitLink.h; the same
prototypes in CUDA 12.6's header): `nvJitLinkResult` and `nvJitLinkInputType` are C enums (int-sized);
NVJITLINK_INPUT_PTX = 2; the option string is "-arch=sm_NN". The header's `nvJitLinkCreate` etc. are static inline
wrappers around versioned symbols (`__nvJitLinkCreate_12_9`), but `nm -D libnvJitLink.so.12` (12.9.86) also exports
the plain names, which is what `ffi.dlopen` binds here. `nvJitLinkVersion` exists from 12.3 on.

Cubins are cached on disk under $SOV_CACHE/nv (default ~/.cache/sovereign/nv, the convention of
frontend/runtime/cpu.py), keyed by sha256(tool kind + tool version + arch + PTX text).
"""
from __future__ import annotations

import functools
import glob
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import cffi

ELF_MAGIC = b"\x7fELF"
TOOL_TIMEOUT_S = 300  # a ptxas run longer than this is treated as hung
INSTALL_HINT = ("pip install nvidia-cuda-nvcc-cu12 (or the 'nv' extra: pip install -e '.[nv]'), "
                "or install a CUDA toolkit and set CUDA_HOME")

# (path under the `nvidia` namespace, pip package) in lookup order
WHEEL_PTXAS = (("cu13/bin/ptxas", "nvidia-cuda-nvcc (CUDA 13)"),
               ("cuda_nvcc/bin/ptxas", "nvidia-cuda-nvcc-cu12"))
WHEEL_NVJITLINK = (("cu13/lib/libnvJitLink.so.*", "nvidia-nvjitlink (CUDA 13)"),
                   ("nvjitlink/lib/libnvJitLink.so.*", "nvidia-nvjitlink-cu12"))
WHEEL_NVDISASM = (("cu13/bin/nvdisasm", "nvidia-cuda-nvdisasm (CUDA 13)"),
                  ("cuda_nvdisasm/bin/nvdisasm", "nvidia-cuda-nvdisasm-cu12"))
WHEEL_CUOBJDUMP = (("cu13/bin/cuobjdump", "nvidia-cuda-cuobjdump (CUDA 13)"),
                   ("cuda_cuobjdump/bin/cuobjdump", "nvidia-cuda-cuobjdump-cu12"))
TOOLKIT_DEFAULT = "/usr/local/cuda"

# nvJitLink.h (12.9.86): the entry points used here, in our own words. Enums are declared as int (C enums of these
# value ranges are int-sized on the x86-64 and aarch64 ABIs).
NVJITLINK_CDEF = """
typedef struct nvJitLink *nvJitLinkHandle;
int nvJitLinkCreate(nvJitLinkHandle *handle, uint32_t numOptions, const char **options);
int nvJitLinkDestroy(nvJitLinkHandle *handle);
int nvJitLinkAddData(nvJitLinkHandle handle, int inputType, const void *data, size_t size, const char *name);
int nvJitLinkComplete(nvJitLinkHandle handle);
int nvJitLinkGetLinkedCubinSize(nvJitLinkHandle handle, size_t *size);
int nvJitLinkGetLinkedCubin(nvJitLinkHandle handle, void *cubin);
int nvJitLinkGetErrorLogSize(nvJitLinkHandle handle, size_t *size);
int nvJitLinkGetErrorLog(nvJitLinkHandle handle, char *log);
int nvJitLinkVersion(unsigned int *major, unsigned int *minor);
"""
NVJITLINK_INPUT_PTX = 2
NVJITLINK_RESULTS = {0: "NVJITLINK_SUCCESS", 1: "NVJITLINK_ERROR_UNRECOGNIZED_OPTION",
                     2: "NVJITLINK_ERROR_MISSING_ARCH", 3: "NVJITLINK_ERROR_INVALID_INPUT",
                     4: "NVJITLINK_ERROR_PTX_COMPILE", 5: "NVJITLINK_ERROR_NVVM_COMPILE", 6: "NVJITLINK_ERROR_INTERNAL",
                     7: "NVJITLINK_ERROR_THREADPOOL", 8: "NVJITLINK_ERROR_UNRECOGNIZED_INPUT",
                     9: "NVJITLINK_ERROR_FINALIZE"}


class CompilerNotFound(RuntimeError):
  """No ptxas or nvJitLink was found; the message lists every place searched and how to install one."""


class PTXCompileError(RuntimeError):
  """The assembler rejected the PTX or could not run; `log` is the tool's output, `lines` the PTX lines it names."""

  def __init__(self, message: str, log: str = "", lines: tuple[int, ...] = ()):
    super().__init__(message)
    self.log = log
    self.lines = lines


@dataclass(frozen=True)
class SearchPaths:
  """Where tools are looked for; `from_environment()` is the real machine, tests pass their own (the OS seam)."""
  nvidia_dirs: tuple[str, ...]  # the `nvidia` namespace package's directories (one per site-packages holding it)
  cuda_home: str | None  # $CUDA_HOME
  toolkit_default: str  # /usr/local/cuda
  path_env: str | None  # $PATH, searched by shutil.which

  @staticmethod
  def from_environment() -> SearchPaths:
    return SearchPaths(nvidia_dirs=nvidia_namespace_dirs(), cuda_home=os.environ.get("CUDA_HOME") or None,
                       toolkit_default=TOOLKIT_DEFAULT, path_env=os.environ.get("PATH"))


def nvidia_namespace_dirs() -> tuple[str, ...]:
  """The directories of the `nvidia` namespace package that the pip wheels install into (empty if none)."""
  try:
    spec = importlib.util.find_spec("nvidia")
  except (ImportError, ValueError):
    return ()
  if spec is None or spec.submodule_search_locations is None:
    return ()
  return tuple(str(p) for p in spec.submodule_search_locations)


@dataclass(frozen=True)
class Compiler:
  """One PTX assembler found on this machine: a ptxas executable or an nvJitLink shared library."""
  kind: str  # "ptxas" or "nvjitlink"
  path: str
  origin: str  # where it was found, e.g. "pip nvidia-cuda-nvcc-cu12" or "$CUDA_HOME"

  @property
  def version(self) -> str:
    """Tool kind and release, e.g. "ptxas V12.9.86" or "nvjitlink 12.9"; part of the cache key."""
    return ptxas_version(self.path) if self.kind == "ptxas" else nvjitlink_version(self.path)

  def compile(self, ptx: str, arch: str) -> bytes:
    """Assembles PTX text to a cubin for `arch` (e.g. "sm_90"); no caching.

    Raises:
      PTXCompileError: the tool rejected the PTX; the message holds its log and the offending PTX lines.
    """
    if self.kind == "ptxas":
      return run_ptxas(self.path, ptx, arch)
    return run_nvjitlink(self.path, ptx, arch)


@dataclass
class _Search:
  """Candidates in lookup order plus a line per place searched, for the not-found message."""
  found: list[Compiler] = field(default_factory=list)
  tried: list[str] = field(default_factory=list)

  def add(self, kind: str, path: str, origin: str) -> None:
    ok = os.path.isfile(path) and (kind == "nvjitlink" or os.access(path, os.X_OK))  # a .so need not be executable
    self.tried.append(f"  {origin}: {path} ({'found' if ok else 'missing'})")
    real = os.path.realpath(path)
    if ok and all(os.path.realpath(c.path) != real for c in self.found):
      self.found.append(Compiler(kind, path, origin))


def _wheel_files(nvidia_dirs: Sequence[str], pattern: str) -> list[str]:
  hits = []
  for base in nvidia_dirs:
    hits += sorted(glob.glob(os.path.join(base, pattern)), reverse=True)  # newest soname first
  return hits


def _search_wheels(nvidia_dirs: Sequence[str], wheels: Sequence[tuple[str, str]], kind: str, s: _Search) -> None:
  for rel, package in wheels:
    if not nvidia_dirs:
      s.tried.append(f"  pip {package}: python namespace package 'nvidia' not installed")
      continue
    hits = _wheel_files(nvidia_dirs, rel)
    if not hits:
      s.tried.append(f"  pip {package}: {os.path.join(nvidia_dirs[0], rel)} (missing)")
    for hit in hits:
      s.add(kind, hit, f"pip {package}")


def _search_toolkit(paths: SearchPaths, tool: str, s: _Search) -> None:
  if paths.cuda_home:
    s.add(tool, os.path.join(paths.cuda_home, "bin", tool), "$CUDA_HOME")
  else:
    s.tried.append(f"  $CUDA_HOME/bin/{tool}: $CUDA_HOME not set")
  s.add(tool, os.path.join(paths.toolkit_default, "bin", tool), "CUDA toolkit")
  on_path = shutil.which(tool, path=paths.path_env)
  if on_path:
    s.add(tool, on_path, "$PATH")
  else:
    s.tried.append(f"  {tool} on $PATH: not found")


def find_compilers(paths: SearchPaths | None = None) -> tuple[list[Compiler], list[str]]:
  """Every PTX assembler found, in lookup order (wheel ptxas, wheel nvJitLink, toolkit ptxas), and the search log.

  Args:
    paths: where to look; default: this process's `nvidia` namespace, $CUDA_HOME, /usr/local/cuda and $PATH.
  """
  paths = paths or SearchPaths.from_environment()
  s = _Search()
  _search_wheels(paths.nvidia_dirs, WHEEL_PTXAS, "ptxas", s)
  _search_wheels(paths.nvidia_dirs, WHEEL_NVJITLINK, "nvjitlink", s)
  _search_toolkit(paths, "ptxas", s)
  return s.found, s.tried


def find_compiler(paths: SearchPaths | None = None) -> Compiler:
  """The first PTX assembler in lookup order.

  Args:
    paths: where to look (see `find_compilers`).

  Raises:
    CompilerNotFound: none was found; the message lists every place searched and the install command.
  """
  found, tried = find_compilers(paths)
  if not found:
    searched = "\n".join(tried)
    raise CompilerNotFound(f"no PTX assembler (ptxas or libnvJitLink) found. Searched, in order:\n{searched}\n"
                           f"Fix: {INSTALL_HINT}.")
  return found[0]


def find_cuda_tool(name: str, paths: SearchPaths | None = None) -> str | None:
  """Path of a CUDA binary utility ("nvdisasm" or "cuobjdump") from the wheels or a toolkit, or None if absent.

  Args:
    name: "nvdisasm" or "cuobjdump".
    paths: where to look (see `find_compilers`).

  Raises:
    ValueError: `name` is not one of the two.
  """
  wheels = {"nvdisasm": WHEEL_NVDISASM, "cuobjdump": WHEEL_CUOBJDUMP}
  if name not in wheels:
    raise ValueError(f"unknown CUDA tool {name!r}; expected one of {sorted(wheels)}")
  paths = paths or SearchPaths.from_environment()
  s = _Search()
  _search_wheels(paths.nvidia_dirs, wheels[name], name, s)
  _search_toolkit(paths, name, s)
  return s.found[0].path if s.found else None


# ---------------------------------------------------------------------------------------------------------------------
# running the tools

def check_arch(arch: str) -> None:
  if not re.fullmatch(r"sm_\d{2,3}[af]?", arch):
    raise ValueError(f"arch must look like 'sm_90' or 'sm_90a', got {arch!r}")


def ptx_excerpt(ptx: str, log: str) -> tuple[tuple[int, ...], str]:
  """The PTX lines a tool log names ("..., line 12; error : ..."), each with one line of context either side."""
  numbers = tuple(dict.fromkeys(int(n) for n in re.findall(r"line (\d+)", log)))[:5]
  src = ptx.splitlines()
  out = []
  for n in numbers:
    for i in range(max(1, n - 1), min(len(src), n + 1) + 1):
      out.append(f"{'>' if i == n else ' '} {i:5d} | {src[i - 1]}")
    out.append("")
  return numbers, "\n".join(out)


def _compile_error(tool: str, arch: str, ptx: str, log: str) -> PTXCompileError:
  numbers, excerpt = ptx_excerpt(ptx, log)
  where = f"\n--- offending PTX lines ---\n{excerpt}" if excerpt else f"\n--- PTX ---\n{ptx}"
  return PTXCompileError(f"{tool} failed for {arch}:\n{log.strip()}{where}", log, numbers)


@functools.lru_cache(maxsize=None)
def ptxas_version(path: str) -> str:
  """ "ptxas V12.9.86" from `ptxas --version` (the whole output if it has no V<release> token)."""
  proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
  match = re.search(r"\bV(\d+\.\d+\.\d+)", proc.stdout)
  return f"ptxas V{match.group(1)}" if match else f"ptxas {proc.stdout.strip()}"


def run_ptxas(path: str, ptx: str, arch: str) -> bytes:
  """Runs `ptxas -arch=<arch> kernel.ptx -o kernel.cubin` in a temporary directory; returns the cubin bytes.

  Raises:
    PTXCompileError: ptxas exited non-zero or ran past TOOL_TIMEOUT_S; the message holds its log and the PTX lines.
  """
  check_arch(arch)
  with tempfile.TemporaryDirectory(prefix="sov-ptx-") as tmp:
    src = os.path.join(tmp, "kernel.ptx")
    out = os.path.join(tmp, "kernel.cubin")
    with open(src, "w") as f:
      f.write(ptx)
    try:
      proc = subprocess.run([path, f"-arch={arch}", src, "-o", out], capture_output=True, text=True,
                            timeout=TOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
      raise PTXCompileError(f"{path} ran longer than {TOOL_TIMEOUT_S} s on {arch} PTX and was killed") from e
    if proc.returncode != 0 or not os.path.exists(out):
      raise _compile_error(f"{path} (exit {proc.returncode})", arch, ptx, proc.stdout + proc.stderr)
    with open(out, "rb") as f:
      return f.read()


_ffi = cffi.FFI()
_ffi.cdef(NVJITLINK_CDEF)


@functools.lru_cache(maxsize=None)
def _nvjitlink(path: str):
  return _ffi.dlopen(path)


@functools.lru_cache(maxsize=None)
def nvjitlink_version(path: str) -> str:
  """ "nvjitlink 12.9" from nvJitLinkVersion (12.3+), else the library's file name."""
  lib = _nvjitlink(path)
  major, minor = _ffi.new("unsigned int *"), _ffi.new("unsigned int *")
  try:
    rc = lib.nvJitLinkVersion(major, minor)
  except AttributeError:  # libraries before 12.3 lack the symbol
    return f"nvjitlink {os.path.basename(path)}"
  return f"nvjitlink {major[0]}.{minor[0]}" if rc == 0 else f"nvjitlink {os.path.basename(path)}"


def run_nvjitlink(path: str, ptx: str, arch: str) -> bytes:
  """Assembles PTX in-process with nvJitLink (Create, AddData(PTX), Complete, GetLinkedCubin, Destroy).

  Raises:
    PTXCompileError: a call returned an error; the message holds the call, the result name and the error log.
  """
  check_arch(arch)
  lib = _nvjitlink(path)
  handle = _ffi.new("nvJitLinkHandle *")
  option = _ffi.new("char[]", f"-arch={arch}".encode())
  options = _ffi.new("const char *[1]", [option])
  rc = lib.nvJitLinkCreate(handle, 1, options)
  if rc != 0:
    raise PTXCompileError(f"nvJitLinkCreate(-arch={arch}) failed: {NVJITLINK_RESULTS.get(rc, rc)} ({path})")
  try:
    data = ptx.encode() + b"\0"
    rc = lib.nvJitLinkAddData(handle[0], NVJITLINK_INPUT_PTX, data, len(data), b"kernel.ptx")
    if rc == 0:
      rc = lib.nvJitLinkComplete(handle[0])
    if rc != 0:
      log = _nvjitlink_error_log(lib, handle[0])
      raise _compile_error(f"nvJitLink ({path}): {NVJITLINK_RESULTS.get(rc, rc)}", arch, ptx, log)
    size = _ffi.new("size_t *")
    _check_nvjitlink(lib.nvJitLinkGetLinkedCubinSize(handle[0], size), "nvJitLinkGetLinkedCubinSize")
    buf = _ffi.new("char[]", size[0])
    _check_nvjitlink(lib.nvJitLinkGetLinkedCubin(handle[0], buf), "nvJitLinkGetLinkedCubin")
    return bytes(_ffi.buffer(buf, size[0]))
  finally:
    lib.nvJitLinkDestroy(handle)


def _check_nvjitlink(rc: int, call: str) -> None:
  if rc != 0:
    raise PTXCompileError(f"{call} failed: {NVJITLINK_RESULTS.get(rc, rc)}")


def _nvjitlink_error_log(lib, handle) -> str:
  size = _ffi.new("size_t *")
  if lib.nvJitLinkGetErrorLogSize(handle, size) != 0 or size[0] == 0:
    return "(no error log)"
  buf = _ffi.new("char[]", size[0])
  if lib.nvJitLinkGetErrorLog(handle, buf) != 0:
    return "(error log unavailable)"
  return _ffi.string(buf).decode(errors="replace")


# ---------------------------------------------------------------------------------------------------------------------
# the cached entry point

def cache_dir() -> str:
  """$SOV_CACHE/nv (default ~/.cache/sovereign/nv), created if missing."""
  root = os.environ.get("SOV_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "sovereign"))
  path = os.path.join(root, "nv")
  os.makedirs(path, exist_ok=True)
  return path


def cache_path(ptx: str, arch: str, compiler: Compiler) -> str:
  """Where the cubin for (tool version, arch, PTX) is cached."""
  key = hashlib.sha256(f"{compiler.version}\0{arch}\0{ptx}".encode()).hexdigest()
  return os.path.join(cache_dir(), f"{key}.cubin")


def compile_ptx(ptx: str, arch: str = "sm_90", compiler: Compiler | None = None, cache: bool = True) -> bytes:
  """Assembles PTX to a cubin for `arch`, from the disk cache when the same tool version has done it before.

  Args:
    ptx: PTX source text (its `.target` should match `arch`).
    arch: SASS target, e.g. "sm_90" (H100) or "sm_90a".
    compiler: which assembler; default: the first of `find_compilers()`.
    cache: read and write $SOV_CACHE/nv.

  Raises:
    ValueError: `arch` is malformed.
    CompilerNotFound: no assembler is installed; the message says what was searched and what to install.
    PTXCompileError: the assembler rejected the PTX; the message holds its log and the offending PTX lines.
  """
  check_arch(arch)
  compiler = compiler or find_compiler()
  path = cache_path(ptx, arch, compiler) if cache else None
  if path and os.path.exists(path):
    with open(path, "rb") as f:
      cubin = f.read()
    if cubin.startswith(ELF_MAGIC):
      return cubin
  cubin = compiler.compile(ptx, arch)
  if not cubin.startswith(ELF_MAGIC):
    raise PTXCompileError(f"{compiler.kind} at {compiler.path} returned {len(cubin)} bytes that are not an ELF cubin "
                          f"(first bytes {cubin[:8].hex()})")
  if path:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
      f.write(cubin)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a cubin
  return cubin


def disassemble(cubin: bytes, paths: SearchPaths | None = None) -> str | None:
  """SASS text of a cubin from nvdisasm (for DEBUG=4), or None when nvdisasm is not installed.

  Args:
    cubin: the ELF bytes (from `compile_ptx`).
    paths: where to look for nvdisasm (see `find_compilers`).

  Raises:
    RuntimeError: nvdisasm is installed but failed; the message holds its output.
  """
  tool = find_cuda_tool("nvdisasm", paths)
  if tool is None:
    return None
  with tempfile.TemporaryDirectory(prefix="sov-sass-") as tmp:
    src = os.path.join(tmp, "kernel.cubin")
    with open(src, "wb") as f:
      f.write(cubin)
    proc = subprocess.run([tool, "-c", src], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
  if proc.returncode != 0:
    raise RuntimeError(f"{tool} -c failed (exit {proc.returncode}) on a {len(cubin)}-byte cubin:\n{proc.stderr}")
  return proc.stdout
