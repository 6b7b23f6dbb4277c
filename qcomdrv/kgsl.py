"""The kgsl interface (`/dev/kgsl-3d0`) as cffi declarations, request words and named constants.

The structs are written here in our own form from Mesa 25.0.7's copy of the kgsl uapi header
(src/freedreno/vulkan/msm_kgsl.h, FACT_SOURCES.md). Names are kgsl's, verbatim, so one grep reaches the header.
Request words are computed from these declarations the way <linux/ioctl.h> does (_IOC(dir, 0x09, nr, size));
tests/test_qcom_kgsl.py checks every word, struct size and field offset against qcomdrv/generated/kgsl.py, which the
C compiler computed from the header itself (tools/gen_qcom_tables.py), so a typo here cannot reach an ioctl.

Layouts are LP64 (`unsigned long` and `size_t` are 8 bytes): arm64, the only ABI kgsl devices run 64-bit userspace
on, lays these structs out as x86-64 does.
"""
from __future__ import annotations

import cffi

from qcomdrv.generated import kgsl as facts

CDEF = """
/* msm_kgsl.h: KGSL_PROP_DEVICE_INFO's answer. chip_id is core:8 major:8 minor:8 patch:8. */
struct kgsl_devinfo { unsigned int device_id; unsigned int chip_id; unsigned int mmu_enabled;
                      unsigned long gmem_gpubaseaddr; unsigned int gpu_id; size_t gmem_sizebytes; };
/* KGSL_PROP_DEVICE_SHADOW: where the memstore (per-context timestamps) lives */
struct kgsl_shadowprop { unsigned long gpuaddr; size_t size; unsigned int flags; };
struct kgsl_version { unsigned int drv_major; unsigned int drv_minor; unsigned int dev_major; unsigned int dev_minor; };
struct kgsl_gpu_model { char gpu_model[32]; };
struct kgsl_device_getproperty { unsigned int type; void *value; size_t sizebytes; };
struct kgsl_device_waittimestamp_ctxtid { unsigned int context_id; unsigned int timestamp; unsigned int timeout; };
struct kgsl_cmdstream_readtimestamp_ctxtid { unsigned int context_id; unsigned int type; unsigned int timestamp; };
struct kgsl_drawctxt_create { unsigned int flags; unsigned int drawctxt_id; };
struct kgsl_drawctxt_destroy { unsigned int drawctxt_id; };
struct kgsl_map_user_mem { int fd; unsigned long gpuaddr; size_t len; size_t offset; unsigned long hostptr;
                           unsigned int memtype; unsigned int flags; };
struct kgsl_sharedmem_free { unsigned long gpuaddr; };
struct kgsl_gpuobj_alloc { uint64_t size; uint64_t flags; uint64_t va_len; uint64_t mmapsize; unsigned int id;
                           unsigned int metadata_len; uint64_t metadata; };
struct kgsl_gpuobj_free { uint64_t flags; uint64_t priv; unsigned int id; unsigned int type; unsigned int len; };
struct kgsl_gpuobj_info { uint64_t gpuaddr; uint64_t flags; uint64_t size; uint64_t va_len; uint64_t va_addr;
                          unsigned int id; };
struct kgsl_command_object { uint64_t offset; uint64_t gpuaddr; uint64_t size; unsigned int flags; unsigned int id; };
struct kgsl_command_syncpoint { uint64_t priv; uint64_t size; unsigned int type; };
struct kgsl_gpu_command { uint64_t flags; uint64_t cmdlist; unsigned int cmdsize; unsigned int numcmds;
                          uint64_t objlist; unsigned int objsize; unsigned int numobjs; uint64_t synclist;
                          unsigned int syncsize; unsigned int numsyncs; unsigned int context_id;
                          unsigned int timestamp; };

/* libc */
int ioctl(int fd, unsigned long request, void *arg);
void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
int munmap(void *addr, size_t length);
"""

ffi = cffi.FFI()
ffi.cdef(CDEF)

# ---- request words (asm-generic/ioctl.h: nr bits 7:0, type 15:8, size 29:16, dir 31:30; _IOC_WRITE 1, READ 2) ----
KGSL_IOC_TYPE = 0x09
_DIRECTION = {"_IO": 0, "_IOW": 1, "_IOR": 2, "_IOWR": 3}


def ioc(macro: str, nr: int, struct: str | None) -> int:
  """The request word <linux/ioctl.h>'s `macro`(KGSL_IOC_TYPE, nr, struct) gives, sized from our declarations."""
  size = ffi.sizeof(f"struct {struct}") if struct else 0
  if not 0 <= size < (1 << 14):
    raise ValueError(f"struct {struct} of {size} bytes does not fit the 14-bit _IOC size field")
  return (_DIRECTION[macro] << 30) | (size << 16) | (KGSL_IOC_TYPE << 8) | nr


IOCTL_KGSL_DEVICE_GETPROPERTY = ioc("_IOWR", 0x02, "kgsl_device_getproperty")
IOCTL_KGSL_DEVICE_WAITTIMESTAMP_CTXTID = ioc("_IOW", 0x07, "kgsl_device_waittimestamp_ctxtid")
IOCTL_KGSL_DRAWCTXT_CREATE = ioc("_IOWR", 0x13, "kgsl_drawctxt_create")
IOCTL_KGSL_DRAWCTXT_DESTROY = ioc("_IOW", 0x14, "kgsl_drawctxt_destroy")
IOCTL_KGSL_MAP_USER_MEM = ioc("_IOWR", 0x15, "kgsl_map_user_mem")
IOCTL_KGSL_CMDSTREAM_READTIMESTAMP_CTXTID = ioc("_IOWR", 0x16, "kgsl_cmdstream_readtimestamp_ctxtid")
IOCTL_KGSL_SHAREDMEM_FREE = ioc("_IOW", 0x21, "kgsl_sharedmem_free")
IOCTL_KGSL_GPUOBJ_ALLOC = ioc("_IOWR", 0x45, "kgsl_gpuobj_alloc")
IOCTL_KGSL_GPUOBJ_FREE = ioc("_IOW", 0x46, "kgsl_gpuobj_free")
IOCTL_KGSL_GPUOBJ_INFO = ioc("_IOWR", 0x47, "kgsl_gpuobj_info")
IOCTL_KGSL_GPU_COMMAND = ioc("_IOWR", 0x4A, "kgsl_gpu_command")

# ---- constants (msm_kgsl.h; values through the generated table, which the C compiler evaluated) ----
C = facts.CONSTANTS
KGSL_PROP_DEVICE_INFO = C["KGSL_PROP_DEVICE_INFO"]
KGSL_PROP_DEVICE_SHADOW = C["KGSL_PROP_DEVICE_SHADOW"]
KGSL_PROP_VERSION = C["KGSL_PROP_VERSION"]
KGSL_PROP_GPU_RESET_STAT = C["KGSL_PROP_GPU_RESET_STAT"]
KGSL_PROP_UCHE_GMEM_VADDR = C["KGSL_PROP_UCHE_GMEM_VADDR"]
KGSL_PROP_GPU_MODEL = C["KGSL_PROP_GPU_MODEL"]
KGSL_CONTEXT_NO_GMEM_ALLOC = C["KGSL_CONTEXT_NO_GMEM_ALLOC"]
KGSL_CONTEXT_PREAMBLE = C["KGSL_CONTEXT_PREAMBLE"]
KGSL_CONTEXT_NO_FAULT_TOLERANCE = C["KGSL_CONTEXT_NO_FAULT_TOLERANCE"]
KGSL_CONTEXT_PRIORITY_SHIFT = C["KGSL_CONTEXT_PRIORITY_SHIFT"]
KGSL_CONTEXT_TYPE_SHIFT = C["KGSL_CONTEXT_TYPE_SHIFT"]
KGSL_CONTEXT_TYPE_CL = C["KGSL_CONTEXT_TYPE_CL"]
KGSL_CONTEXT_PREEMPT_STYLE_SHIFT = C["KGSL_CONTEXT_PREEMPT_STYLE_SHIFT"]
KGSL_CONTEXT_PREEMPT_STYLE_FINEGRAIN = C["KGSL_CONTEXT_PREEMPT_STYLE_FINEGRAIN"]
KGSL_MEMFLAGS_GPUREADONLY = C["KGSL_MEMFLAGS_GPUREADONLY"]
KGSL_MEMFLAGS_USE_CPU_MAP = C["KGSL_MEMFLAGS_USE_CPU_MAP"]
KGSL_MEMFLAGS_USERMEM_SHIFT = C["KGSL_MEMFLAGS_USERMEM_SHIFT"]
KGSL_CACHEMODE_SHIFT = C["KGSL_CACHEMODE_SHIFT"]
KGSL_CACHEMODE_MASK = C["KGSL_CACHEMODE_MASK"]
KGSL_CACHEMODE_WRITECOMBINE = C["KGSL_CACHEMODE_WRITECOMBINE"]
KGSL_CACHEMODE_UNCACHED = C["KGSL_CACHEMODE_UNCACHED"]
KGSL_MEMTYPE_SHIFT = C["KGSL_MEMTYPE_SHIFT"]
KGSL_MEMTYPE_MASK = C["KGSL_MEMTYPE_MASK"]
KGSL_MEMTYPE_COMMAND = C["KGSL_MEMTYPE_COMMAND"]
KGSL_MEMTYPE_CL_BUFFER_MAP = C["KGSL_MEMTYPE_CL_BUFFER_MAP"]
KGSL_MEMTYPE_CL_KERNEL_STACK = C["KGSL_MEMTYPE_CL_KERNEL_STACK"]
KGSL_CMDLIST_IB = C["KGSL_CMDLIST_IB"]
KGSL_OBJLIST_MEMOBJ = C["KGSL_OBJLIST_MEMOBJ"]
KGSL_USER_MEM_TYPE_ADDR = facts.ENUMS["kgsl_user_mem_type"]["KGSL_USER_MEM_TYPE_ADDR"]
KGSL_TIMESTAMP_RETIRED = facts.ENUMS["kgsl_timestamp_type"]["KGSL_TIMESTAMP_RETIRED"]
KGSL_CTX_STAT_NAMES = {value: name for name, value in facts.ENUMS["kgsl_ctx_reset_stat"].items()}
KGSL_CTX_STAT_NO_ERROR = facts.ENUMS["kgsl_ctx_reset_stat"]["KGSL_CTX_STAT_NO_ERROR"]

# mmap() offset of a GPU object: its id in pages (kgsl's mmap handler looks the object up by vm_pgoff; Mesa 25.0.7
# src/freedreno/vulkan/tu_knl_kgsl.cc maps with `offset = id << 12`)
PAGE_SHIFT = 12


def mmap_offset(obj_id: int) -> int:
  return obj_id << PAGE_SHIFT


def cachemode(mode: int) -> int:
  """The KGSL_CACHEMODE_* field of an allocation's flags."""
  return (mode << KGSL_CACHEMODE_SHIFT) & KGSL_CACHEMODE_MASK


def memtype(kind: int) -> int:
  """The KGSL_MEMTYPE_* field of an allocation's flags (a debugging hint for the kernel's memory accounting)."""
  return (kind << KGSL_MEMTYPE_SHIFT) & KGSL_MEMTYPE_MASK


def usermem(kind: int) -> int:
  """The KGSL_MEMFLAGS_USERMEM_* field of IOCTL_KGSL_MAP_USER_MEM's flags: KGSL_USERMEM_FLAG(kind)."""
  return (kind + 1) << KGSL_MEMFLAGS_USERMEM_SHIFT


def context_flags(priority: int = 1) -> int:
  """Flags for an OpenCL-style compute context (IOCTL_KGSL_DRAWCTXT_CREATE): no GMEM (compute never renders into
  it), a preamble (kgsl restores state with it after preemption), type CL, fine-grain preemption."""
  return (KGSL_CONTEXT_NO_GMEM_ALLOC | KGSL_CONTEXT_PREAMBLE | KGSL_CONTEXT_NO_FAULT_TOLERANCE
          | (priority << KGSL_CONTEXT_PRIORITY_SHIFT) | (KGSL_CONTEXT_TYPE_CL << KGSL_CONTEXT_TYPE_SHIFT)
          | (KGSL_CONTEXT_PREEMPT_STYLE_FINEGRAIN << KGSL_CONTEXT_PREEMPT_STYLE_SHIFT))
