"""The UVM side of nvidia.ko (/dev/nvidia-uvm): GPU page tables for our VA space.

Our VA space (FERMI_VASPACE_A) is created "externally owned" with page faulting enabled, which hands its page tables
to UVM. RM memory objects (device memory, pinned host memory) then become GPU-visible through UVM: reserve a VA
range (UVM_CREATE_EXTERNAL_RANGE), map an RM allocation into it (UVM_MAP_EXTERNAL_ALLOCATION), and release it with
UVM_FREE. UVM ioctl request words are raw command numbers and the result is the `rmStatus` field (FACTS.md 2).
"""
from __future__ import annotations

from nvdrv import rmapi
from nvdrv.rm import NVError
from nvdrv.rmapi import ffi


class UVM:
  """An initialised /dev/nvidia-uvm file, plus the second fd UVM_MM_INITIALIZE wants for process teardown."""

  def __init__(self, osif, path: str = "/dev/nvidia-uvm"):
    self.osif = osif
    self.fd = osif.open(path)
    self.call(rmapi.UVM_INITIALIZE, "UVM_INITIALIZE_PARAMS")
    self.mm_fd = osif.open(path)
    mm = ffi.new("UVM_MM_INITIALIZE_PARAMS *")
    mm.uvmFd = self.fd
    self.osif.ioctl(self.mm_fd, rmapi.UVM_MM_INITIALIZE, mm)  # rmStatus unchecked: it may answer NV_WARN_NOTHING_TO_DO

  def call(self, cmd: int, ctype: str, **fields):
    """Issue UVM command `cmd` with a fresh `ctype` parameter block filled from `fields`; returns the block."""
    params = ffi.new(f"{ctype} *", fields)
    self.osif.ioctl(self.fd, cmd, params)
    if params.rmStatus != 0:
      detail = ", ".join(f"{k}=0x{v:x}" for k, v in fields.items() if isinstance(v, int))
      raise NVError(f"UVM {ctype.removesuffix('_PARAMS')} ({detail})", params.rmStatus)
    return params

  def register_gpu(self, uuid: bytes, ctl_fd: int, client: int) -> None:
    self.call(rmapi.UVM_REGISTER_GPU, "UVM_REGISTER_GPU_PARAMS", gpu_uuid={"uuid": list(uuid)}, rmCtrlFd=ctl_fd,
              hClient=client)

  def register_vaspace(self, uuid: bytes, ctl_fd: int, client: int, vaspace: int) -> None:
    self.call(rmapi.UVM_REGISTER_GPU_VASPACE, "UVM_REGISTER_GPU_VASPACE_PARAMS", gpuUuid={"uuid": list(uuid)},
              rmCtrlFd=ctl_fd, hClient=client, hVaSpace=vaspace)

  def register_channel(self, uuid: bytes, ctl_fd: int, client: int, channel: int, base: int, length: int) -> None:
    self.call(rmapi.UVM_REGISTER_CHANNEL, "UVM_REGISTER_CHANNEL_PARAMS", gpuUuid={"uuid": list(uuid)}, rmCtrlFd=ctl_fd,
              hClient=client, hChannel=channel, base=base, length=length)

  def map_external(self, va: int, size: int, uuid: bytes, ctl_fd: int, client: int, memory: int) -> None:
    """Make RM memory object `memory` visible to the GPU at [va, va+size)."""
    self.call(rmapi.UVM_CREATE_EXTERNAL_RANGE, "UVM_CREATE_EXTERNAL_RANGE_PARAMS", base=va, length=size)
    params = ffi.new("UVM_MAP_EXTERNAL_ALLOCATION_PARAMS *")
    params.base = va
    params.length = size
    params.perGpuAttributes[0].gpuUuid.uuid = list(uuid)
    params.perGpuAttributes[0].gpuMappingType = rmapi.UvmGpuMappingTypeReadWriteAtomic
    params.gpuAttributesCount = 1
    params.rmCtrlFd = ctl_fd
    params.hClient = client
    params.hMemory = memory
    self.osif.ioctl(self.fd, rmapi.UVM_MAP_EXTERNAL_ALLOCATION, params)
    if params.rmStatus != 0:
      self.call(rmapi.UVM_FREE, "UVM_FREE_PARAMS", base=va, length=size)
      raise NVError(f"UVM map of memory 0x{memory:x} at VA 0x{va:x} ({size} bytes)", params.rmStatus)

  def free(self, va: int, size: int) -> None:
    self.call(rmapi.UVM_FREE, "UVM_FREE_PARAMS", base=va, length=size)

  def close(self) -> None:
    for fd in (self.mm_fd, self.fd):
      self.osif.close(fd)
