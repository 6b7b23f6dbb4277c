"""Kernel compilation: OpenCL C -> a qcomdrv kernel binary (qcomdrv.binary), through the device's own compiler.

What is public about Qualcomm's compiler (checked for this driver):
  - The device's OpenCL library (Android: /vendor/lib64/libOpenCL.so; Linux on Snapdragon: the Adreno OpenCL ICD)
    implements the Khronos API, which is documented: clCreateProgramWithSource, clBuildProgram and
    clGetProgramInfo(CL_PROGRAM_BINARIES) return a program binary for the device (constants from Khronos cl.h,
    Debian opencl-c-headers 3.0~2023.02.06: CL_PROGRAM_BINARY_SIZES 0x1165, CL_PROGRAM_BINARIES 0x1166,
    CL_PROGRAM_BUILD_LOG 0x1183, CL_DEVICE_TYPE_GPU 1 << 2).
  - The layout of that binary (where the ir3 instructions, the register footprint and the constant layout of the
    arguments are) is not publicly documented, and neither is libCB.so (the compiler back end the library loads)
    or its entry points.
So `VendorCompiler.compile` runs the documented Khronos path and then stops at `vendor_binary_to_kernel`, an explicit
seam that raises CompilerUnavailable saying exactly that. The compiler is found through the OS interface
(`os.opencl_compiler()`), so the simulated kgsl device supplies its stand-in (qcomdrv.sim.compiler) and the driver
has no simulated branch.
"""
from __future__ import annotations

import os

import cffi

CL_SUCCESS = 0
CL_DEVICE_TYPE_GPU = 1 << 2
CL_PROGRAM_BINARY_SIZES = 0x1165
CL_PROGRAM_BINARIES = 0x1166
CL_PROGRAM_BUILD_LOG = 0x1183

# where Qualcomm's OpenCL library lives: Android vendor partitions, then the Linux ICD names
LIBRARY_PATHS = ("/vendor/lib64/libOpenCL.so", "/system/vendor/lib64/libOpenCL.so", "/system/lib64/libOpenCL.so",
                 "/usr/lib/libOpenCL_adreno.so", "/usr/lib/aarch64-linux-gnu/libOpenCL_adreno.so")

CL_CDEF = """
typedef struct _cl_platform_id *cl_platform_id; typedef struct _cl_device_id *cl_device_id;
typedef struct _cl_context *cl_context; typedef struct _cl_program *cl_program;
int clGetPlatformIDs(unsigned int num_entries, cl_platform_id *platforms, unsigned int *num_platforms);
int clGetDeviceIDs(cl_platform_id platform, uint64_t device_type, unsigned int num_entries, cl_device_id *devices,
                   unsigned int *num_devices);
cl_context clCreateContext(const intptr_t *properties, unsigned int num_devices, const cl_device_id *devices,
                           void *pfn_notify, void *user_data, int *errcode_ret);
cl_program clCreateProgramWithSource(cl_context context, unsigned int count, const char **strings,
                                     const size_t *lengths, int *errcode_ret);
int clBuildProgram(cl_program program, unsigned int num_devices, const cl_device_id *device_list,
                   const char *options, void *pfn_notify, void *user_data);
int clGetProgramBuildInfo(cl_program program, cl_device_id device, unsigned int param_name, size_t size,
                          void *value, size_t *size_ret);
int clGetProgramInfo(cl_program program, unsigned int param_name, size_t size, void *value, size_t *size_ret);
int clReleaseProgram(cl_program program);
int clReleaseContext(cl_context context);
"""


class CompilerUnavailable(Exception):
  """No usable OpenCL compiler for the device; the message says what is missing."""


class CompileError(Exception):
  """The compiler rejected the kernel; the message holds its log and the source."""


def find_library(paths: tuple[str, ...] = LIBRARY_PATHS) -> str | None:
  env = os.environ.get("QCOM_OPENCL_LIB")
  for path in ((env,) if env else ()) + paths:
    if path and os.path.exists(path):
      return path
  return None


class VendorCompiler:
  """Qualcomm's OpenCL compiler through the Khronos API of the device's libOpenCL."""

  def __init__(self, path: str):
    self.path = path
    self.ffi = cffi.FFI()
    self.ffi.cdef(CL_CDEF)
    try:
      self.lib = self.ffi.dlopen(path)
    except OSError as e:
      raise CompilerUnavailable(f"cannot load the OpenCL library {path}: {e}") from e

  def build(self, source: str, options: str = "") -> bytes:
    """The vendor program binary for `source` (documented Khronos calls only).

    Raises:
      CompilerUnavailable: no GPU device or context; CompileError: the build failed (with the build log).
    """
    ffi, lib = self.ffi, self.lib
    platform, device = ffi.new("cl_platform_id[1]"), ffi.new("cl_device_id[1]")
    count = ffi.new("unsigned int *")
    if lib.clGetPlatformIDs(1, platform, count) != CL_SUCCESS or count[0] == 0:
      raise CompilerUnavailable(f"{self.path}: no OpenCL platform")
    if lib.clGetDeviceIDs(platform[0], CL_DEVICE_TYPE_GPU, 1, device, count) != CL_SUCCESS or count[0] == 0:
      raise CompilerUnavailable(f"{self.path}: no OpenCL GPU device")
    err = ffi.new("int *")
    context = lib.clCreateContext(ffi.NULL, 1, device, ffi.NULL, ffi.NULL, err)
    if err[0] != CL_SUCCESS:
      raise CompilerUnavailable(f"{self.path}: clCreateContext failed with {err[0]}")
    try:
      text = ffi.new("char[]", source.encode())
      program = lib.clCreateProgramWithSource(context, 1, ffi.new("const char *[1]", [text]), ffi.NULL, err)
      if err[0] != CL_SUCCESS:
        raise CompileError(f"clCreateProgramWithSource failed with {err[0]}")
      try:
        status = lib.clBuildProgram(program, 1, device, options.encode(), ffi.NULL, ffi.NULL)
        if status != CL_SUCCESS:
          raise CompileError(f"clBuildProgram failed with {status}:\n{self.build_log(program, device[0])}\n"
                             f"--- source ---\n{source}")
        return self.program_binary(program)
      finally:
        lib.clReleaseProgram(program)
    finally:
      lib.clReleaseContext(context)

  def build_log(self, program, device) -> str:
    size = self.ffi.new("size_t *")
    self.lib.clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, self.ffi.NULL, size)
    log = self.ffi.new("char[]", size[0] + 1)
    self.lib.clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, size[0], log, self.ffi.NULL)
    return self.ffi.string(log).decode(errors="replace")

  def program_binary(self, program) -> bytes:
    sizes = self.ffi.new("size_t[1]")
    self.lib.clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, self.ffi.sizeof(sizes), sizes, self.ffi.NULL)
    data = self.ffi.new("unsigned char[]", sizes[0])
    pointers = self.ffi.new("unsigned char *[1]", [data])
    self.lib.clGetProgramInfo(program, CL_PROGRAM_BINARIES, self.ffi.sizeof(pointers), pointers, self.ffi.NULL)
    return bytes(self.ffi.buffer(data, sizes[0]))

  def compile(self, source: str, name: str) -> bytes:
    """OpenCL C -> a qcomdrv kernel binary.

    Raises:
      CompilerUnavailable: always, after a successful vendor build: see `vendor_binary_to_kernel`.
    """
    return vendor_binary_to_kernel(self.build(source), name, self.path)


def vendor_binary_to_kernel(vendor: bytes, name: str, library: str) -> bytes:
  """The seam where a vendor program binary would become a qcomdrv kernel binary.

  Raises:
    CompilerUnavailable: the vendor binary's layout is not publicly documented, so qcomdrv cannot take the code,
      register footprint and argument constants out of it.
  """
  raise CompilerUnavailable(
    f"{library} built kernel {name!r} ({len(vendor)} bytes, starting {vendor[:8].hex()}), but the layout of "
    "Qualcomm's OpenCL program binaries is not publicly documented: qcomdrv cannot extract the ir3 code, register "
    "footprint and argument constants from it. Dispatching on hardware needs that converter (qcomdrv.compile."
    "vendor_binary_to_kernel) or an ir3 compiler; the simulated device (QCOM_SIM=a6xx|a7xx) runs kernels without it.")


def no_compiler_message() -> str:
  return (f"no OpenCL compiler for the Adreno: none of {', '.join(LIBRARY_PATHS)} exists (set QCOM_OPENCL_LIB to "
          "the device's libOpenCL.so); qcomdrv compiles kernels with the device's own OpenCL library")
