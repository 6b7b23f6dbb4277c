"""QCOMDevice: one Adreno GPU driven from Python through kgsl's ioctls on /dev/kgsl-3d0 (no vendor user-space).

Bring-up, top to bottom (every call goes through the OS interface, qcomdrv.osif):

  /dev/kgsl-3d0     open
  properties        KGSL_PROP_DEVICE_INFO (chip id -> ChipInfo, or UnsupportedChip naming the supported list;
                    GMEM size), KGSL_PROP_VERSION, KGSL_PROP_GPU_MODEL (when the kernel has it)
  context           IOCTL_KGSL_DRAWCTXT_CREATE: a CL-type context without GMEM; kgsl numbers its submissions with
                    per-context timestamps
  memory            IOCTL_KGSL_GPUOBJ_ALLOC (GPU address assigned at allocation: no USE_CPU_MAP), GPUOBJ_INFO for
                    the address, mmap(fd, offset = id << 12) for the CPU; the command buffer and a signal page

Submission: each `submit` is one IOCTL_KGSL_GPU_COMMAND with one IB (KGSL_CMDLIST_IB) holding

  CP_SET_MARKER(RM6_COMPUTE)  cache invalidate (the CPU may have written inputs)  <body>  CP_WAIT_FOR_IDLE
  CACHE_FLUSH_TS event writing the submission's fence value to the signal page (results reach memory first)

kgsl runs one context's submissions in order, so later submissions see earlier results. `synchronize` waits for
the last kgsl timestamp (IOCTL_KGSL_DEVICE_WAITTIMESTAMP_CTXTID, bounded), then asks KGSL_PROP_GPU_RESET_STAT whether
the context faulted (QCOMFault, with the kernel log and the decoded submission) and checks the fence value.
After a fault the context is dead; `recover()` destroys it and creates a fresh one.

QCOM_DEBUG=1 prints every submission, decoded by packet and register name (qcomdrv.decode), to stderr.

Memory is write-combined (KGSL_CACHEMODE_WRITECOMBINE): CPU reads and writes go straight to memory, so no CPU cache
maintenance is needed around GPU work; the CPU touches a buffer only after `synchronize`.
"""
from __future__ import annotations

import errno
import os as _os
import sys
from dataclasses import dataclass

from qcomdrv import kgsl
from qcomdrv.chips import ChipInfo, chip_info
from qcomdrv.decode import decode
from qcomdrv.errors import QCOMError, QCOMFault, QCOMTimeout
from qcomdrv.kgsl import ffi
from qcomdrv.osif import DEVICE_PATH, LinuxOS
from qcomdrv.pm4 import CommandStream

COMMAND_BYTES = 1 << 20  # the command buffer IBs are written into, reused from the start when full
SIGNAL_BYTES = 4096
FENCE_OFFSET = 0  # u32 fence value of the last submission
TIMESTAMP_OFFSET = 64  # u64 CP_ALWAYS_ON_COUNTER sample of `gpu_timestamp`
IB_ALIGN = 64
DEFAULT_TIMEOUT_MS = 10_000


@dataclass
class GPUBuffer:
  """A GPU object: kgsl id (0 for mapped user memory), GPU address, size and the CPU address of its mapping."""
  id: int
  gpuaddr: int
  size: int
  mapsize: int
  cpu: int
  user: bool = False


class QCOMDevice:
  """One kgsl device and one context on it."""

  def __init__(self, os=None, path: str = DEVICE_PATH, timeout_ms: int = DEFAULT_TIMEOUT_MS,
               command_bytes: int = COMMAND_BYTES):
    self.os = os if os is not None else LinuxOS()
    self.timeout_ms = timeout_ms
    self.command_bytes = command_bytes
    self.fd = self.os.open(path)
    try:
      info = self.device_info()
      self.chip: ChipInfo = chip_info(info["chip_id"])  # raises UnsupportedChip naming the supported list
    except Exception:
      self.os.close(self.fd)
      raise
    self.gmem_bytes = info["gmem_sizebytes"]
    self.gpu_id = info["gpu_id"]
    self.model = self.gpu_model()
    self.context = self.create_context()
    self.buffers: list[GPUBuffer] = []
    self.commands = self.alloc(command_bytes, kgsl.KGSL_MEMTYPE_COMMAND, readonly=True)
    self.signal = self.alloc(SIGNAL_BYTES)
    self.cursor = 0
    self.fence = 0
    self.last_timestamp: int | None = None
    self.last_stream: list[int] = []

  def describe(self) -> str:
    return (f"QCOM: Adreno {self.chip.name} (chip id 0x{self.chip.chip_id:08x}, {self.chip.gen}, "
            f"{self.model or 'model unknown'}), GMEM {self.gmem_bytes >> 10} KiB, kgsl context {self.context}")

  # ---- ioctls ----
  def call(self, name: str, request: int, arg, detail: str = "") -> None:
    """ioctl(request) through the OS interface; a failure becomes QCOMError naming the ioctl."""
    try:
      self.os.ioctl(self.fd, request, arg)
    except OSError as e:
      raise QCOMError(name, e.errno or errno.EIO, detail) from None

  def getprop(self, prop: int, value, size: int, name: str) -> None:
    param = ffi.new("struct kgsl_device_getproperty *")
    param.type = prop
    param.value = ffi.cast("void *", value)
    param.sizebytes = size
    self.call(f"IOCTL_KGSL_DEVICE_GETPROPERTY({name})", kgsl.IOCTL_KGSL_DEVICE_GETPROPERTY, param)

  def device_info(self) -> dict[str, int]:
    info = ffi.new("struct kgsl_devinfo *")
    self.getprop(kgsl.KGSL_PROP_DEVICE_INFO, info, ffi.sizeof(info[0]), "KGSL_PROP_DEVICE_INFO")
    return {name: getattr(info, name) for name in ("device_id", "chip_id", "mmu_enabled", "gmem_gpubaseaddr",
                                                   "gpu_id", "gmem_sizebytes")}

  def version(self) -> tuple[int, int, int, int]:
    v = ffi.new("struct kgsl_version *")
    self.getprop(kgsl.KGSL_PROP_VERSION, v, ffi.sizeof(v[0]), "KGSL_PROP_VERSION")
    return v.drv_major, v.drv_minor, v.dev_major, v.dev_minor

  def gpu_model(self) -> str:
    """The kernel's name for the GPU ("Adreno740v2"); '' on kernels without KGSL_PROP_GPU_MODEL."""
    model = ffi.new("struct kgsl_gpu_model *")
    try:
      self.getprop(kgsl.KGSL_PROP_GPU_MODEL, model, ffi.sizeof(model[0]), "KGSL_PROP_GPU_MODEL")
    except QCOMError:
      return ""
    return ffi.string(model.gpu_model).decode(errors="replace")

  def reset_status(self) -> int:
    """KGSL_CTX_STAT_* of the worst reset since the last query, for this context."""
    value = ffi.new("unsigned int *", self.context)
    self.getprop(kgsl.KGSL_PROP_GPU_RESET_STAT, value, 4, "KGSL_PROP_GPU_RESET_STAT")
    return value[0]

  def create_context(self) -> int:
    create = ffi.new("struct kgsl_drawctxt_create *")
    create.flags = kgsl.context_flags()
    self.call("IOCTL_KGSL_DRAWCTXT_CREATE", kgsl.IOCTL_KGSL_DRAWCTXT_CREATE, create)
    return create.drawctxt_id

  def destroy_context(self, context: int) -> None:
    destroy = ffi.new("struct kgsl_drawctxt_destroy *")
    destroy.drawctxt_id = context
    self.call("IOCTL_KGSL_DRAWCTXT_DESTROY", kgsl.IOCTL_KGSL_DRAWCTXT_DESTROY, destroy)

  # ---- memory ----
  def alloc(self, size: int, kind: int = kgsl.KGSL_MEMTYPE_CL_BUFFER_MAP, readonly: bool = False) -> GPUBuffer:
    """A GPU object of at least `size` bytes, mapped for the CPU (write-combined)."""
    req = ffi.new("struct kgsl_gpuobj_alloc *")
    req.size = max(size, 1)
    req.flags = (kgsl.cachemode(kgsl.KGSL_CACHEMODE_WRITECOMBINE) | kgsl.memtype(kind)
                 | (kgsl.KGSL_MEMFLAGS_GPUREADONLY if readonly else 0))
    self.call("IOCTL_KGSL_GPUOBJ_ALLOC", kgsl.IOCTL_KGSL_GPUOBJ_ALLOC, req, f"size {size} bytes")
    info = ffi.new("struct kgsl_gpuobj_info *")
    info.id = req.id
    self.call("IOCTL_KGSL_GPUOBJ_INFO", kgsl.IOCTL_KGSL_GPUOBJ_INFO, info, f"object {req.id}")
    cpu = self.os.mmap(req.mmapsize, self.fd, kgsl.mmap_offset(req.id))
    buf = GPUBuffer(req.id, info.gpuaddr, req.size, req.mmapsize, cpu)
    self.buffers.append(buf)
    return buf

  def free(self, buf: GPUBuffer) -> None:
    if buf.user:
      req = ffi.new("struct kgsl_sharedmem_free *")
      req.gpuaddr = buf.gpuaddr
      self.call("IOCTL_KGSL_SHAREDMEM_FREE", kgsl.IOCTL_KGSL_SHAREDMEM_FREE, req, f"address 0x{buf.gpuaddr:x}")
    else:
      req = ffi.new("struct kgsl_gpuobj_free *")
      req.id = buf.id
      self.call("IOCTL_KGSL_GPUOBJ_FREE", kgsl.IOCTL_KGSL_GPUOBJ_FREE, req, f"object {buf.id}")
      self.os.munmap(buf.cpu, buf.mapsize)  # kgsl keeps the pages of a freed object until its last unmap
    if buf in self.buffers:
      self.buffers.remove(buf)

  def map_user(self, address: int, length: int) -> GPUBuffer:
    """Give the GPU access to `length` bytes of this process's memory at `address` (page-aligned)."""
    req = ffi.new("struct kgsl_map_user_mem *")
    req.fd = -1
    req.hostptr = address
    req.len = length
    req.memtype = kgsl.KGSL_USER_MEM_TYPE_ADDR
    req.flags = kgsl.usermem(kgsl.KGSL_USER_MEM_TYPE_ADDR) | kgsl.cachemode(kgsl.KGSL_CACHEMODE_WRITECOMBINE)
    self.call("IOCTL_KGSL_MAP_USER_MEM", kgsl.IOCTL_KGSL_MAP_USER_MEM, req, f"0x{length:x} bytes at 0x{address:x}")
    buf = GPUBuffer(0, req.gpuaddr, length, length, address, user=True)
    self.buffers.append(buf)
    return buf

  def view(self, buf: GPUBuffer, offset: int = 0, length: int | None = None) -> memoryview:
    length = buf.size - offset if length is None else length
    if offset < 0 or offset + length > buf.size:
      raise ValueError(f"bytes {offset}..{offset + length} are outside the {buf.size}-byte buffer")
    return self.os.view(buf.cpu + offset, length)

  # ---- submission ----
  def stream(self) -> CommandStream:
    """A command stream with the submission prologue; fill it, then `submit` it."""
    cs = CommandStream(self.chip)
    cs.set_marker("RM6_COMPUTE")
    cs.cache_invalidate()
    return cs

  def submit(self, cs: CommandStream) -> int:
    """Append the epilogue (wait for idle, flush caches and write the fence) and submit `cs` as one IB; returns the
    kgsl timestamp of the submission."""
    fence = self.fence + 1
    cs.wait_for_idle()
    cs.cache_flush_ts(self.signal.gpuaddr + FENCE_OFFSET, fence)
    data = cs.tobytes()
    if len(data) > self.command_bytes:
      raise ValueError(f"a submission of {len(data)} bytes exceeds the {self.command_bytes}-byte command buffer")
    if self.cursor + len(data) > self.command_bytes:
      self.synchronize()  # every IB in the buffer has run (and reached its fence): start over
      self.cursor = 0
    self.view(self.commands, self.cursor, len(data))[:] = data
    cmd = ffi.new("struct kgsl_command_object *")
    cmd.gpuaddr = self.commands.gpuaddr + self.cursor
    cmd.size = len(data)
    cmd.flags = kgsl.KGSL_CMDLIST_IB
    cmd.id = self.commands.id
    cmd.offset = self.cursor
    req = ffi.new("struct kgsl_gpu_command *")
    req.cmdlist = int(ffi.cast("uintptr_t", cmd))
    req.cmdsize = ffi.sizeof(cmd[0])
    req.numcmds = 1
    req.context_id = self.context
    if _os.environ.get("QCOM_DEBUG", "0") not in ("", "0"):
      print(f"qcomdrv: IB of context {self.context}, fence {fence}:\n" + "\n".join(decode(cs.words, self.chip.gen)),
            file=sys.stderr)
    self.call("IOCTL_KGSL_GPU_COMMAND", kgsl.IOCTL_KGSL_GPU_COMMAND, req, f"context {self.context}")
    self.fence = fence
    self.cursor += -(-len(data) // IB_ALIGN) * IB_ALIGN
    self.last_timestamp = req.timestamp
    self.last_stream = list(cs.words)
    return req.timestamp

  def wait(self, timestamp: int, timeout_ms: int | None = None) -> None:
    """Block until the GPU retired `timestamp` of this context, then check the context did not fault.

    Raises:
      QCOMTimeout: not retired within the timeout; QCOMFault: the context faulted or was reset.
    """
    timeout = self.timeout_ms if timeout_ms is None else timeout_ms
    req = ffi.new("struct kgsl_device_waittimestamp_ctxtid *")
    req.context_id, req.timestamp, req.timeout = self.context, timestamp, timeout
    try:
      self.os.ioctl(self.fd, kgsl.IOCTL_KGSL_DEVICE_WAITTIMESTAMP_CTXTID, req)
    except OSError as e:
      if e.errno == errno.ETIMEDOUT:
        raise QCOMTimeout(f"kgsl context {self.context}: timestamp {timestamp} not retired after {timeout} ms "
                          f"(the GPU is hung or waiting); the last submission:\n"
                          + "\n".join(decode(self.last_stream, self.chip.gen))) from None
      if e.errno != errno.EDEADLK:
        raise QCOMError("IOCTL_KGSL_DEVICE_WAITTIMESTAMP_CTXTID", e.errno or errno.EIO,
                        f"context {self.context}, timestamp {timestamp}") from None
    self.check_fault(timestamp)

  def check_fault(self, timestamp: int) -> None:
    status = self.reset_status()
    if status != kgsl.KGSL_CTX_STAT_NO_ERROR:
      name = kgsl.KGSL_CTX_STAT_NAMES.get(status, f"reset status {status}")
      raise QCOMFault(self.context, timestamp, name, self.os.kernel_log(), decode(self.last_stream, self.chip.gen))

  def synchronize(self) -> None:
    """Wait for every submission so far; the fence value then proves the last one ran to its end."""
    if self.last_timestamp is None:
      return
    self.wait(self.last_timestamp)
    seen = int.from_bytes(self.view(self.signal, FENCE_OFFSET, 4), "little")
    if seen != self.fence:
      raise QCOMFault(self.context, self.last_timestamp, f"the fence reads {seen}, expected {self.fence}: the "
                      "submission retired without reaching its CACHE_FLUSH_TS", self.os.kernel_log(),
                      decode(self.last_stream, self.chip.gen))

  def recover(self) -> None:
    """After a fault: a fresh context (the faulted one rejects work); buffers stay valid."""
    try:
      self.destroy_context(self.context)
    except QCOMError:
      pass
    self.context = self.create_context()
    self.last_timestamp = None
    self.cursor = 0
    self.view(self.signal, FENCE_OFFSET, 4)[:] = self.fence.to_bytes(4, "little")

  def gpu_timestamp(self) -> int:
    """The GPU's always-on counter, read by the CP (CP_REG_TO_MEM) and waited for: a timestamp round trip."""
    cs = self.stream()
    cs.reg_to_mem("CP_ALWAYS_ON_COUNTER", self.signal.gpuaddr + TIMESTAMP_OFFSET)
    self.submit(cs)
    self.synchronize()
    return int.from_bytes(self.view(self.signal, TIMESTAMP_OFFSET, 8), "little")

  def close(self) -> None:
    for buf in list(self.buffers):
      self.free(buf)
    self.destroy_context(self.context)
    self.os.close(self.fd)
