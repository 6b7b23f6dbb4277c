"""The resource-manager (RM) and UVM interface of nvidia.ko 580.x, written as cffi declarations and named constants.

Every layout and number here comes from NVIDIA/open-gpu-kernel-modules at tag 580.142 (commit 1a5075f8); the
tables with offsets, sizes and the header each struct lives in are in nvdrv/FACTS.md (section numbers given below).
tests/test_nv_rmapi.py checks every struct's size and field offsets against that fact sheet, so a typo here cannot
reach an ioctl. Names are NVIDIA's, verbatim, so one grep reaches the upstream header.

The 580 layouts differ from 535/555 (NVOS46, NV_CHANNEL_ALLOC_PARAMS, NV_VASPACE_ALLOCATION_PARAMETERS and the class
list control grew); `SUPPORTED_VERSIONS` names the driver branches these declarations are valid for, and
nvdrv.rm refuses any other version before sending a single layout-dependent ioctl.
"""
from __future__ import annotations

import cffi

# Driver branches (the part of NV_VERSION_STRING before the first '.') whose layouts are declared below.
# 580.142 headers; checked on an H100 with 580.159.04.
SUPPORTED_VERSIONS = ("580",)

CDEF = """
typedef uint32_t NvHandle;
typedef uint32_t NvV32;
typedef uint32_t NvU32;
typedef uint64_t NvU64;
typedef uint8_t NvU8;
typedef uint8_t NvBool;
typedef uint64_t NvP64;

/* FACTS.md 1.4: escape parameter blocks (src/common/sdk/nvidia/inc/nvos.h). */
typedef struct { NvHandle hRoot; NvHandle hObjectParent; NvHandle hObjectOld; NvV32 status; } NVOS00_PARAMETERS;
typedef struct { NvHandle hRoot; NvHandle hObjectParent; NvHandle hObjectNew; NvV32 hClass; NvV32 flags;
                 NvP64 pMemory; NvU64 limit; NvV32 status; } NVOS02_PARAMETERS;
typedef struct { NvHandle hRoot; NvHandle hObjectParent; NvHandle hObjectNew; NvV32 hClass; NvP64 pAllocParms;
                 NvU32 paramsSize; NvV32 status; } NVOS21_PARAMETERS;
typedef struct { NvHandle hClient; NvHandle hObject; NvV32 cmd; NvU32 flags; NvP64 params; NvU32 paramsSize;
                 NvV32 status; } NVOS54_PARAMETERS;
typedef struct { NvHandle hClient; NvHandle hDevice; NvHandle hMemory; NvU64 offset; NvU64 length;
                 NvP64 pLinearAddress; NvU32 status; NvU32 flags; } NVOS33_PARAMETERS;
typedef struct { NvHandle hClient; NvHandle hDevice; NvHandle hMemory; NvP64 pLinearAddress; NvU32 status;
                 NvU32 flags; } NVOS34_PARAMETERS;
/* src/nvidia/arch/nvalloc/unix/include/nv-unix-nvos-params-wrappers.h */
typedef struct { NVOS02_PARAMETERS params; int fd; } nv_ioctl_nvos02_parameters_with_fd;
typedef struct { NVOS33_PARAMETERS params; int fd; } nv_ioctl_nvos33_parameters_with_fd;
/* kernel-open/common/inc/nv-ioctl.h */
typedef struct { NvU32 domain; NvU8 bus; NvU8 slot; NvU8 function; NvU16 vendor_id; NvU16 device_id; } nv_pci_info_t;
typedef struct { NvBool valid; nv_pci_info_t pci_info; NvU32 gpu_id; NvU16 interrupt_line; NvU64 reg_address;
                 NvU64 reg_size; NvU64 fb_address; NvU64 fb_size; NvU32 minor_number; NvU8 dev_name[10];
                 } nv_ioctl_card_info_t;
typedef struct { NvU32 cmd; NvU32 reply; char versionString[64]; } nv_ioctl_rm_api_version_t;
typedef struct { int ctl_fd; } nv_ioctl_register_fd_t;

/* FACTS.md 3.3: allocation parameters (class/cl0080.h, class/cl2080.h, nvos.h, alloc/alloc_channel.h). */
typedef struct { NvU32 deviceId; NvHandle hClientShare; NvHandle hTargetClient; NvHandle hTargetDevice; NvV32 flags;
                 NvU64 vaSpaceSize; NvU64 vaStartInternal; NvU64 vaLimitInternal; NvV32 vaMode;
                 } NV0080_ALLOC_PARAMETERS;
typedef struct { NvU32 subDeviceId; } NV2080_ALLOC_PARAMETERS;
typedef struct { NvU32 index; NvV32 flags; NvU64 vaSize; NvU64 vaStartInternal; NvU64 vaLimitInternal;
                 NvU32 bigPageSize; NvU64 vaBase; NvU32 pasid; } NV_VASPACE_ALLOCATION_PARAMETERS;
typedef struct { NvHandle hObjectError; NvHandle hObjectEccError; NvHandle hVASpace; NvU32 engineType;
                 NvBool bIsCallingContextVgpuPlugin; } NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS;
typedef struct { NvHandle hVASpace; NvU32 flags; NvU32 subctxId; } NV_CTXSHARE_ALLOCATION_PARAMETERS;
typedef struct { NvU64 base; NvU64 size; NvU32 addressSpace; NvU32 cacheAttrib; } NV_MEMORY_DESC_PARAMS;
typedef struct { NvHandle hObjectError; NvHandle hObjectBuffer; NvU64 gpFifoOffset; NvU32 gpFifoEntries; NvU32 flags;
                 NvHandle hContextShare; NvHandle hVASpace; NvHandle hUserdMemory[8]; NvU64 userdOffset[8];
                 NvU32 engineType; NvU32 cid; NvU32 subDeviceId; NvHandle hObjectEccError;
                 NV_MEMORY_DESC_PARAMS instanceMem; NV_MEMORY_DESC_PARAMS userdMem; NV_MEMORY_DESC_PARAMS ramfcMem;
                 NV_MEMORY_DESC_PARAMS mthdbufMem; NvHandle hPhysChannelGroup; NvU32 internalFlags;
                 NV_MEMORY_DESC_PARAMS errorNotifierMem; NV_MEMORY_DESC_PARAMS eccErrorNotifierMem;
                 NvU32 ProcessID; NvU32 SubProcessID; NvU32 encryptIv[3]; NvU32 decryptIv[3]; NvU32 hmacNonce[8];
                 NvU32 tpcConfigID; } NV_CHANNEL_ALLOC_PARAMS;
typedef struct { NvU32 owner; NvU32 type; NvU32 flags; NvU32 width; NvU32 height; int32_t pitch; NvU32 attr;
                 NvU32 attr2; NvU32 format; NvU32 comprCovg; NvU32 zcullCovg; NvU64 rangeLo; NvU64 rangeHi;
                 NvU64 size; NvU64 alignment; NvU64 offset; NvU64 limit; NvP64 address; NvU32 ctagOffset;
                 NvHandle hVASpace; NvU32 internalflags; NvU32 tag; int32_t numaNode; } NV_MEMORY_ALLOCATION_PARAMS;
typedef struct { NvBool bBar1Mapping; NvBool bPriv; } NV_HOPPER_USERMODE_A_PARAMS;

/* FACTS.md 4.1: control parameters (ctrl/ctrl0000, ctrl0080, ctrl2080, ctrla06c, ctrlc36f). */
typedef struct { NvU32 gpuIds[32]; NvU32 excludedGpuIds[32]; NvU32 gpuFlags[32];
                 } NV0000_CTRL_GPU_GET_PROBED_IDS_PARAMS;
typedef struct { NvU32 gpuIds[32]; NvU32 failedId; } NV0000_CTRL_GPU_ATTACH_IDS_PARAMS;
typedef struct { NvU32 gpuId; NvU32 gpuFlags; NvU32 deviceInstance; NvU32 subDeviceInstance; NvU32 sliStatus;
                 NvU32 boardId; NvU32 gpuInstance; int32_t numaId; } NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS;
typedef struct { NvU32 numClasses; NvU32 classList[200]; } NV0080_CTRL_GPU_GET_CLASSLIST_V2_PARAMS;
typedef struct { NvU32 index; NvU32 flags; NvU32 length; NvU8 data[256]; } NV2080_CTRL_GPU_GET_GID_INFO_PARAMS;
typedef struct { NvU32 workSubmitToken; } NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS;
typedef struct { NvBool bEnable; NvBool bSkipSubmit; NvBool bSkipEnable; } NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS;
typedef struct { NvU64 timesliceUs; } NVA06C_CTRL_SET_TIMESLICE_PARAMS;
typedef struct { NvU32 flags; NvU32 duration; } NV2080_CTRL_PERF_BOOST_PARAMS;

/* FACTS.md 2.1: UVM parameters (kernel-open/nvidia-uvm/uvm_ioctl.h). */
typedef struct { NvU8 uuid[16]; } NvProcessorUuid;
typedef struct { NvU64 flags; NvU32 rmStatus; } UVM_INITIALIZE_PARAMS;
typedef struct { int32_t uvmFd; NvU32 rmStatus; } UVM_MM_INITIALIZE_PARAMS;
typedef struct { NvProcessorUuid gpu_uuid; NvBool numaEnabled; int32_t numaNodeId; int32_t rmCtrlFd; NvHandle hClient;
                 NvHandle hSmcPartRef; NvU32 rmStatus; } UVM_REGISTER_GPU_PARAMS;
typedef struct { NvProcessorUuid gpuUuid; int32_t rmCtrlFd; NvHandle hClient; NvHandle hVaSpace; NvU32 rmStatus;
                 } UVM_REGISTER_GPU_VASPACE_PARAMS;
typedef struct { NvProcessorUuid gpuUuid; int32_t rmCtrlFd; NvHandle hClient; NvHandle hChannel; NvU64 base;
                 NvU64 length; NvU32 rmStatus; } UVM_REGISTER_CHANNEL_PARAMS;
typedef struct { NvU64 base; NvU64 length; NvU32 rmStatus; } UVM_CREATE_EXTERNAL_RANGE_PARAMS;
typedef struct { NvProcessorUuid gpuUuid; NvU32 gpuMappingType; NvU32 gpuCachingType; NvU32 gpuFormatType;
                 NvU32 gpuElementBits; NvU32 gpuCompressionType; } UvmGpuMappingAttributes;
typedef struct { NvU64 base; NvU64 length; NvU64 offset; UvmGpuMappingAttributes perGpuAttributes[256];
                 NvU64 gpuAttributesCount; int32_t rmCtrlFd; NvU32 hClient; NvU32 hMemory; NvU32 rmStatus;
                 } UVM_MAP_EXTERNAL_ALLOCATION_PARAMS;
typedef struct { NvU64 base; NvU64 length; NvU32 rmStatus; } UVM_FREE_PARAMS;

/* nvgputypes.h: the notifier record RM writes on channel errors (16 bytes). */
typedef struct { NvU32 nanoseconds[2]; NvV32 info32; uint16_t info16; uint16_t status; } NvNotification;

/* libc */
int ioctl(int fd, unsigned long request, void *arg);
void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
int munmap(void *addr, size_t length);
"""

ffi = cffi.FFI()
ffi.cdef(CDEF.replace("NvU16", "uint16_t"))

# ---- escape numbers (FACTS.md 1.2; src/nvidia/arch/nvalloc/unix/include/nv_escape.h, nv-ioctl-numbers.h) ----
NV_IOCTL_MAGIC = ord("F")
NV_ESC_RM_ALLOC_MEMORY = 0x27
NV_ESC_RM_FREE = 0x29
NV_ESC_RM_CONTROL = 0x2A
NV_ESC_RM_ALLOC = 0x2B
NV_ESC_RM_MAP_MEMORY = 0x4E
NV_ESC_RM_UNMAP_MEMORY = 0x4F
NV_ESC_CARD_INFO = 200
NV_ESC_REGISTER_FD = 201
NV_ESC_CHECK_VERSION_STR = 210
NV_ESC_ATTACH_GPUS_TO_FD = 212

# NV_ESC_CHECK_VERSION_STR commands (kernel-open/common/inc/nv-ioctl.h)
NV_RM_API_VERSION_CMD_QUERY = ord("2")

# ---- UVM command numbers: raw request words on Linux (FACTS.md 2) ----
UVM_INITIALIZE = 0x30000001
UVM_REGISTER_GPU_VASPACE = 25
UVM_REGISTER_CHANNEL = 27
UVM_MAP_EXTERNAL_ALLOCATION = 33
UVM_FREE = 34
UVM_REGISTER_GPU = 37
UVM_CREATE_EXTERNAL_RANGE = 73
UVM_MM_INITIALIZE = 75
UvmGpuMappingTypeReadWriteAtomic = 1

# ---- classes (src/common/sdk/nvidia/inc/class/*.h) ----
NV01_ROOT_CLIENT = 0x41
NV01_DEVICE_0 = 0x80
NV20_SUBDEVICE_0 = 0x2080
NV01_MEMORY_SYSTEM = 0x3E
NV01_MEMORY_LOCAL_USER = 0x40
NV01_MEMORY_SYSTEM_OS_DESCRIPTOR = 0x71
FERMI_VASPACE_A = 0x90F1
FERMI_CONTEXT_SHARE_A = 0x9067
KEPLER_CHANNEL_GROUP_A = 0xA06C

# ---- allocation flags (nvos.h; FACTS.md 3.2) ----
NV_DEVICE_ALLOCATION_VAMODE_MULTIPLE_VASPACES = 2
NV_VASPACE_ALLOCATION_FLAGS_IS_EXTERNALLY_OWNED = 1 << 3
NV_VASPACE_ALLOCATION_FLAGS_ENABLE_PAGE_FAULTING = 1 << 6
NV_CTXSHARE_ALLOCATION_FLAGS_SUBCONTEXT_ASYNC = 1
NV2080_ENGINE_TYPE_GRAPHICS = 1
NV_CHANNELGPFIFO_NOTIFICATION_TYPE_ERROR = 0
NV_CHANNELGPFIFO_NOTIFICATION_TYPE__SIZE_1 = 3

# NVOS32 attr / attr2 / flags of NV_MEMORY_ALLOCATION_PARAMS (field positions in FACTS.md 3.2)
NVOS32_TYPE_IMAGE = 0
NVOS32_ATTR_PAGE_SIZE_BIG = 2 << 23
NVOS32_ATTR_PAGE_SIZE_HUGE = 3 << 23
NVOS32_ATTR_LOCATION_VIDMEM = 0 << 25
NVOS32_ATTR_PHYSICALITY_NONCONTIGUOUS = 1 << 27
NVOS32_ATTR_PHYSICALITY_CONTIGUOUS = 2 << 27
NVOS32_ATTR2_ZBC_PREFER_NO_ZBC = 1 << 0
NVOS32_ATTR2_GPU_CACHEABLE_YES = 1 << 2
NVOS32_ATTR2_PAGE_SIZE_HUGE_2MB = 1 << 20
NVOS32_ALLOC_FLAGS_IGNORE_BANK_PLACEMENT = 0x1
NVOS32_ALLOC_FLAGS_ALIGNMENT_FORCE = 0x100
NVOS32_ALLOC_FLAGS_MAP_NOT_REQUIRED = 0x8000
NVOS32_ALLOC_FLAGS_PERSISTENT_VIDMEM = 0x10000

# NVOS33 (RM_MAP_MEMORY) flags: CACHING_TYPE is bits 25:23 (nvos.h, 580.142); rm's memMap_IMPL asserts these equal
# NV_MEMORY_CACHED / UNCACHED / WRITECOMBINED, the CPU mapping type nv-mmap.c then applies
NVOS33_FLAGS_CACHING_TYPE_SHIFT = 23
NVOS33_FLAGS_CACHING_TYPE_CACHED = 0
NVOS33_FLAGS_CACHING_TYPE_UNCACHED = 1
NVOS33_FLAGS_CACHING_TYPE_WRITECOMBINED = 2

# NVOS02 flags for wrapping user memory (NV01_MEMORY_SYSTEM_OS_DESCRIPTOR)
NVOS02_FLAGS_PHYSICALITY_NONCONTIGUOUS = 1 << 4
NVOS02_FLAGS_LOCATION_PCI = 0 << 8
NVOS02_FLAGS_COHERENCY_CACHED = 1 << 12
NVOS02_FLAGS_MAPPING_NO_MAP = 1 << 30

# ---- controls (FACTS.md 4) ----
NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2 = 0x205
NV0000_CTRL_CMD_GPU_GET_PROBED_IDS = 0x214
NV0000_CTRL_CMD_GPU_ATTACH_IDS = 0x215
NV0000_CTRL_GPU_INVALID_ID = 0xFFFFFFFF
NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2 = 0x800292
NV2080_CTRL_CMD_GPU_GET_GID_INFO = 0x2080014A
NV2080_GPU_CMD_GPU_GET_GID_FLAGS_FORMAT_BINARY = 2
NVA06C_CTRL_CMD_GPFIFO_SCHEDULE = 0xA06C0101
NVA06C_CTRL_CMD_SET_TIMESLICE = 0xA06C0103
NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN = 0xC36F0108
NV2080_CTRL_CMD_PERF_BOOST = 0x2080200A
NV2080_CTRL_PERF_BOOST_FLAGS_CMD_BOOST_TO_MAX = 2
NV2080_CTRL_PERF_BOOST_FLAGS_CUDA_YES = 1 << 4
NV2080_CTRL_PERF_BOOST_FLAGS_CUDA_PRIORITY_HIGH = 1 << 6
NV2080_CTRL_PERF_BOOST_DURATION_MAX = 3600


def ioc_rw(nr: int, size: int) -> int:
  """The Linux _IOWR request word for escape `nr` with a `size`-byte parameter block (FACTS.md 1.1)."""
  if not 0 <= size < (1 << 14):
    raise ValueError(f"ioctl payload of {size} bytes does not fit the 14-bit _IOC size field")
  return (3 << 30) | (size << 16) | (NV_IOCTL_MAGIC << 8) | nr
