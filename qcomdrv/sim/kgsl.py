"""SimKGSL: a simulated /dev/kgsl-3d0 behind qcomdrv's OS interface (open, ioctl, mmap, munmap, close, view,
kernel_log, opencl_compiler), so the unmodified driver runs against simulated hardware.

ioctls are parsed as the kernel parses them: the request word's type (0x09) and number pick the handler, and the
argument is copied in and out through the struct layouts of qcomdrv/generated/kgsl.py (computed by the C compiler from
msm_kgsl.h; independent of the driver's cffi declarations). kgsl's kgsl_ioctl_helper (downstream msm-kgsl, e.g.
MiCode/Xiaomi_Kernel_OpenSource drivers/gpu/msm/kgsl_ioctl.c) answers an unknown number with -ENOIOCTLCMD (ENOTTY in
user space) and, for a request word whose size or direction differs from its own, copies min(user, kernel) bytes in
the directions both agree on. `strict=True` (the default) refuses such mismatched words with ENOTTY instead and logs
why: the simulator is there to catch driver bugs that real kgsl would silently tolerate.

Handlers follow kgsl.c's argument checks and errno values: EINVAL for unknown context or object ids, size 0 or over
4 GiB, a wrong property size, IBs outside every object, more than KGSL_MAX_NUMIBS (100) commands; ENOMEM when the
simulated memory (4 GiB) is exhausted; EDEADLK for work on, or waits for, a context invalidated by a fault;
ETIMEDOUT when a timestamp is not retired within the wait's timeout; EFAULT for bad user pointers.

Submissions run when they are queued (IOCTL_KGSL_GPU_COMMAND) on the context's command processor
(qcomdrv.sim.cp); a CP_WAIT_REG_MEM whose condition does not hold leaves the submission pending, and every later
ioctl on the context retries it (a wait polls until its timeout). A CP fault marks the context invalid with
KGSL_CTX_STAT_GUILTY_CONTEXT_RESET_EXT (reported once by KGSL_PROP_GPU_RESET_STAT), retires its pending timestamps
as kgsl's recovery does, and logs the reason where `kernel_log()` finds it.
"""
from __future__ import annotations

import ctypes
import errno
import time
from dataclasses import dataclass, field

import cffi

from qcomdrv import chips
from qcomdrv.generated import kgsl as facts
from qcomdrv.sim.compiler import SimOpenCLCompiler
from qcomdrv.sim.cp import CommandProcessor
from qcomdrv.sim.dispatch import CPFault
from qcomdrv.sim.executor import Executor
from qcomdrv.sim.memory import PAGE, SimMemory

DEVICE_PATH = "/dev/kgsl-3d0"
KGSL_IOC_TYPE = 0x09
KGSL_MAX_NUMIBS = 100  # kgsl.c: numcmds/numobjs/numsyncs above this are refused
UINT_MAX = (1 << 32) - 1
C = facts.CONSTANTS
STAT = facts.ENUMS["kgsl_ctx_reset_stat"]
ALLOC_FLAGS = (C["KGSL_MEMFLAGS_GPUREADONLY"] | C["KGSL_CACHEMODE_MASK"] | C["KGSL_MEMTYPE_MASK"]
               | C["KGSL_MEMALIGN_MASK"] | C["KGSL_MEMFLAGS_SECURE"])  # gpumem_alloc_entry keeps these (no SVM here)
_ffi = cffi.FFI()


class KgslErrno(Exception):
  def __init__(self, err: int, why: str = ""):
    super().__init__(why)
    self.errno = err


def address_of(arg) -> int:
  return arg if isinstance(arg, int) else int(_ffi.cast("uintptr_t", arg))


def unpack(struct: str, raw: bytes) -> dict:
  _, fields = facts.STRUCTS[struct]
  return {name: (int.from_bytes(raw[off:off + size], "little") if size in (1, 2, 4, 8) else raw[off:off + size])
          for name, off, size in fields}


def pack(struct: str, values: dict) -> bytes:
  size, fields = facts.STRUCTS[struct]
  raw = bytearray(size)
  for name, off, width in fields:
    value = values.get(name, 0)
    if isinstance(value, bytes):
      raw[off:off + width] = value[:width].ljust(width, b"\0")
    else:
      raw[off:off + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
  return bytes(raw)


def copy_from_user(address: int, length: int) -> bytes:
  if address == 0:
    raise KgslErrno(errno.EFAULT, "NULL user pointer")
  return ctypes.string_at(address, length)


def copy_to_user(address: int, data: bytes) -> None:
  if address == 0:
    raise KgslErrno(errno.EFAULT, "NULL user pointer")
  ctypes.memmove(address, data, len(data))


@dataclass
class Submission:
  timestamp: int
  words: list[int]
  position: int = 0


@dataclass
class Context:
  id: int
  flags: int
  cp: CommandProcessor
  issued: int = 0
  retired: int = 0
  queue: list[Submission] = field(default_factory=list)
  invalid: bool = False
  reset_stat: int = 0


class SimKGSL:
  """The simulated kgsl device of one Adreno chip ("a740", "a660", or a generation "a6xx"/"a7xx")."""

  def __init__(self, chip: str | chips.ChipInfo = "a740", strict: bool = True):
    self.chip = chip if isinstance(chip, chips.ChipInfo) else chips.by_name(chip)
    self.strict = strict
    self.memory = SimMemory()
    self.executor = Executor()
    self.contexts: dict[int, Context] = {}
    self.next_context = 1
    self.fds: set[int] = set()
    self.next_fd = 1000
    self.log: list[str] = []
    self.freed: list = []  # objects freed while the driver still had them mapped (their pages live until munmap)
    self.memstore = self.memory.alloc(PAGE, 0)
    by_nr: dict[int, tuple[str, int, str]] = {}
    for name, (word, _, nr, struct) in facts.IOCTLS.items():
      by_nr.setdefault(nr, (name, word, struct))
    handlers = {"IOCTL_KGSL_DEVICE_GETPROPERTY": self.getproperty, "IOCTL_KGSL_DRAWCTXT_CREATE": self.ctx_create,
                "IOCTL_KGSL_DRAWCTXT_DESTROY": self.ctx_destroy, "IOCTL_KGSL_GPUOBJ_ALLOC": self.gpuobj_alloc,
                "IOCTL_KGSL_GPUOBJ_FREE": self.gpuobj_free, "IOCTL_KGSL_GPUOBJ_INFO": self.gpuobj_info,
                "IOCTL_KGSL_MAP_USER_MEM": self.map_user_mem, "IOCTL_KGSL_SHAREDMEM_FREE": self.sharedmem_free,
                "IOCTL_KGSL_GPU_COMMAND": self.gpu_command,
                "IOCTL_KGSL_DEVICE_WAITTIMESTAMP_CTXTID": self.wait_timestamp,
                "IOCTL_KGSL_CMDSTREAM_READTIMESTAMP_CTXTID": self.read_timestamp}
    self.handlers = {nr: (name, word, struct, handlers[name]) for nr, (name, word, struct) in by_nr.items()
                     if name in handlers}

  def klog(self, message: str) -> None:
    self.log.append(f"kgsl kgsl-3d0: {message}")

  # ---- the OS interface ----
  def open(self, path: str) -> int:
    if path != DEVICE_PATH:
      raise FileNotFoundError(errno.ENOENT, f"the simulated kgsl device is {DEVICE_PATH}, not {path}")
    self.next_fd += 1
    self.fds.add(self.next_fd)
    return self.next_fd

  def close(self, fd: int) -> None:
    if fd not in self.fds:
      raise OSError(errno.EBADF, f"close({fd}): not an open kgsl file")
    self.fds.remove(fd)

  def ioctl(self, fd: int, request: int, arg) -> None:
    """The kernel's ioctl entry: raises OSError(errno) as the libc wrapper's failure would."""
    if fd not in self.fds:
      raise OSError(errno.EBADF, f"ioctl on fd {fd}: not an open kgsl file")
    try:
      self.dispatch(request, address_of(arg))
    except KgslErrno as e:
      raise OSError(e.errno, f"simulated kgsl: request 0x{request:08x}: {e}") from None

  def dispatch(self, request: int, address: int) -> None:
    nr, kind, usize = request & 0xFF, (request >> 8) & 0xFF, (request >> 16) & 0x3FFF
    entry = self.handlers.get(nr) if kind == KGSL_IOC_TYPE else None
    if entry is None:
      raise KgslErrno(errno.ENOTTY, "unknown ioctl (kgsl returns -ENOIOCTLCMD)")
    name, word, struct, handler = entry
    ksize = facts.STRUCTS[struct][0]
    if request != word:
      why = f"request 0x{request:08x} for {name} differs from msm_kgsl.h's 0x{word:08x} (size {usize} vs {ksize})"
      self.klog(why)
      if self.strict:
        raise KgslErrno(errno.ENOTTY, why)
    raw = bytearray(ksize)
    if (word >> 30) & 1 and (request >> 30) & 1:  # both write to the kernel (_IOC_WRITE)
      count = min(usize, ksize)
      raw[:count] = copy_from_user(address, count)
    result = handler(unpack(struct, bytes(raw)))
    if (word >> 31) & 1 and (request >> 31) & 1 and result is not None:  # both read back (_IOC_READ)
      copy_to_user(address, pack(struct, result)[:min(usize, ksize)])

  def mmap(self, length: int, fd: int, offset: int) -> int:
    obj = self.memory.objects.get(offset >> 12)
    if fd not in self.fds or obj is None or obj.backing is None or offset & (PAGE - 1):
      raise OSError(errno.EINVAL, f"mmap(offset=0x{offset:x}): no kgsl object {offset >> 12}")
    if length > obj.mmapsize:
      raise OSError(errno.EINVAL, f"mmap of {length} bytes of object {obj.id} ({obj.mmapsize} mappable)")
    obj.mapped += 1
    return obj.host

  def munmap(self, address: int, length: int) -> None:
    for obj in list(self.memory.objects.values()) + self.freed:
      if obj.host == address and obj.mapped:
        obj.mapped -= 1
        self.freed = [o for o in self.freed if o.mapped]
        return
    if address % PAGE or length == 0:
      raise OSError(errno.EINVAL, f"munmap(0x{address:x}, {length}): unaligned or empty")
    # Linux: unmapping a range that holds no mapping succeeds

  def view(self, address: int, length: int) -> memoryview:
    for obj in list(self.memory.objects.values()) + self.freed:
      if obj.backing is not None and obj.host <= address and address + length <= obj.host + obj.mmapsize:
        start = address - obj.host
        return memoryview(obj.backing)[start:start + length]
    return memoryview((ctypes.c_char * length).from_address(address)).cast("B")

  def kernel_log(self) -> list[str]:
    return self.log[-20:]

  def opencl_compiler(self) -> SimOpenCLCompiler:
    return SimOpenCLCompiler()

  # ---- properties ----
  def getproperty(self, p: dict) -> dict:
    prop, value, size = p["type"], p["value"], p["sizebytes"]
    answers = {C["KGSL_PROP_DEVICE_INFO"]: self.prop_devinfo, C["KGSL_PROP_VERSION"]: self.prop_version,
               C["KGSL_PROP_GPU_MODEL"]: self.prop_model, C["KGSL_PROP_DEVICE_SHADOW"]: self.prop_shadow,
               C["KGSL_PROP_UCHE_GMEM_VADDR"]: lambda: (0).to_bytes(8, "little"),
               C["KGSL_PROP_GPU_RESET_STAT"]: lambda: self.prop_reset_stat(value, size)}
    if prop not in answers:
      raise KgslErrno(errno.EINVAL, f"property 0x{prop:x} is not simulated")
    data = answers[prop]()
    if size != len(data):
      raise KgslErrno(errno.EINVAL, f"property 0x{prop:x} is {len(data)} bytes, sizebytes says {size}")
    copy_to_user(value, data)
    return p

  def prop_devinfo(self) -> bytes:
    gpu_id = int(self.chip.name[1:])
    return pack("kgsl_devinfo", {"device_id": 1, "chip_id": self.chip.chip_id, "mmu_enabled": 1,
                                 "gmem_gpubaseaddr": 0, "gpu_id": gpu_id, "gmem_sizebytes": self.chip.gmem_bytes})

  def prop_version(self) -> bytes:
    return pack("kgsl_version", {"drv_major": C["KGSL_VERSION_MAJOR"], "drv_minor": C["KGSL_VERSION_MINOR"],
                                 "dev_major": 3, "dev_minor": 1})

  def prop_model(self) -> bytes:
    return pack("kgsl_gpu_model", {"gpu_model": f"Adreno{self.chip.name[1:]} (simulated)".encode()})

  def prop_shadow(self) -> bytes:
    return pack("kgsl_shadowprop", {"gpuaddr": self.memstore.gpuaddr, "size": self.memstore.size, "flags": 0})

  def prop_reset_stat(self, value: int, size: int) -> bytes:
    if size != 4:
      raise KgslErrno(errno.EINVAL, f"KGSL_PROP_GPU_RESET_STAT takes 4 bytes, sizebytes says {size}")
    ctx = self.context(int.from_bytes(copy_from_user(value, 4), "little"))
    status, ctx.reset_stat = ctx.reset_stat, STAT["KGSL_CTX_STAT_NO_ERROR"]  # reported once
    return status.to_bytes(4, "little")

  # ---- contexts ----
  def context(self, context_id: int) -> Context:
    ctx = self.contexts.get(context_id)
    if ctx is None:
      raise KgslErrno(errno.EINVAL, f"no context {context_id}")
    return ctx

  def ctx_create(self, p: dict) -> dict:
    ctx = Context(self.next_context, p["flags"], CommandProcessor(self.chip, self.memory, self.executor))
    self.contexts[ctx.id] = ctx
    self.next_context += 1
    return {"flags": p["flags"], "drawctxt_id": ctx.id}

  def ctx_destroy(self, p: dict) -> None:
    self.context(p["drawctxt_id"])
    del self.contexts[p["drawctxt_id"]]

  # ---- memory ----
  def gpuobj_alloc(self, p: dict) -> dict:
    if p["size"] == 0 or p["size"] > UINT_MAX:
      raise KgslErrno(errno.EINVAL, f"GPU object of {p['size']} bytes (1 .. 4 GiB)")
    obj = self.memory.alloc(p["size"], p["flags"] & ALLOC_FLAGS)
    if obj is None:
      raise KgslErrno(errno.ENOMEM, f"out of simulated GPU memory for {p['size']} bytes")
    return {**p, "size": obj.size, "flags": obj.flags, "mmapsize": obj.mmapsize, "id": obj.id}

  def gpuobj_free(self, p: dict) -> None:
    obj = self.memory.objects.get(p["id"])
    if obj is None or obj.backing is None:
      raise KgslErrno(errno.EINVAL, f"no GPU object {p['id']}")
    if p["flags"]:
      raise KgslErrno(errno.EINVAL, "KGSL_GPUOBJ_FREE_ON_EVENT is not simulated")
    self.memory.free(obj)
    if obj.mapped:
      self.freed.append(obj)

  def gpuobj_info(self, p: dict) -> dict:
    obj = self.memory.objects.get(p["id"])
    if obj is None:
      raise KgslErrno(errno.EINVAL, f"no GPU object {p['id']}")
    return {"gpuaddr": obj.gpuaddr, "flags": obj.flags, "size": obj.size, "va_len": obj.size, "va_addr": 0,
            "id": obj.id}

  def map_user_mem(self, p: dict) -> dict:
    if p["memtype"] != facts.ENUMS["kgsl_user_mem_type"]["KGSL_USER_MEM_TYPE_ADDR"]:
      raise KgslErrno(errno.EINVAL, f"user memory type {p['memtype']} is not simulated (KGSL_USER_MEM_TYPE_ADDR is)")
    if p["hostptr"] == 0 or p["hostptr"] % PAGE or p["len"] == 0 or p["len"] % PAGE:
      raise KgslErrno(errno.EINVAL, f"user memory at 0x{p['hostptr']:x} of {p['len']} bytes: page-aligned and whole "
                      "pages")
    obj = self.memory.map_user(p["hostptr"], p["len"], p["flags"])
    return {**p, "gpuaddr": obj.gpuaddr}

  def sharedmem_free(self, p: dict) -> None:
    obj = self.memory.find_gpuaddr(p["gpuaddr"])
    if obj is None:
      raise KgslErrno(errno.EINVAL, f"no GPU mapping at 0x{p['gpuaddr']:x}")
    self.memory.free(obj)

  # ---- submission and timestamps ----
  def gpu_command(self, p: dict) -> dict:
    if max(p["numcmds"], p["numobjs"], p["numsyncs"]) > KGSL_MAX_NUMIBS:
      raise KgslErrno(errno.EINVAL, f"more than {KGSL_MAX_NUMIBS} commands, objects or syncpoints")
    if p["numsyncs"]:
      raise KgslErrno(errno.EINVAL, "syncpoints are not simulated")
    ctx = self.context(p["context_id"])
    if ctx.invalid:
      raise KgslErrno(errno.EDEADLK, f"context {ctx.id} was invalidated by a fault")
    words = self.fetch_ibs(p)
    ctx.issued += 1
    ctx.queue.append(Submission(ctx.issued, words))
    self.run(ctx)
    return {**p, "timestamp": ctx.issued}

  def fetch_ibs(self, p: dict) -> list[int]:
    size = facts.STRUCTS["kgsl_command_object"][0]
    if p["numcmds"] and p["cmdsize"] == 0:
      raise KgslErrno(errno.EINVAL, "cmdsize 0")
    words: list[int] = []
    for k in range(p["numcmds"]):
      raw = copy_from_user(p["cmdlist"] + k * p["cmdsize"], min(size, p["cmdsize"])).ljust(size, b"\0")
      cmd = unpack("kgsl_command_object", raw)
      if not cmd["flags"] & C["KGSL_CMDLIST_IB"]:
        raise KgslErrno(errno.EINVAL, f"command {k} flags 0x{cmd['flags']:x} without KGSL_CMDLIST_IB")
      if cmd["size"] == 0 or cmd["size"] % 4 or self.memory.object_at(cmd["gpuaddr"], cmd["size"]) is None:
        raise KgslErrno(errno.EINVAL, f"IB {k} at 0x{cmd['gpuaddr']:x} of {cmd['size']} bytes is not inside a GPU "
                        "object")
      data = self.memory.read(cmd["gpuaddr"], cmd["size"], "IB fetch")
      words += [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]
    return words

  def run(self, ctx: Context) -> None:
    """Execute the context's queue as far as it goes (see the module docstring)."""
    while ctx.queue and not ctx.invalid:
      sub = ctx.queue[0]
      if sub.position == 0:
        ctx.cp.begin()
      try:
        stalled = ctx.cp.execute(sub.words, sub.position)
      except CPFault as e:
        self.fault(ctx, sub, str(e))
        return
      if stalled is not None:
        sub.position = stalled
        return
      if ctx.cp.unflushed:
        self.fault(ctx, sub, f"{ctx.cp.unflushed} ended its submission without a CACHE_FLUSH_TS/CACHE_CLEAN after "
                             "it: its results may still sit in the GPU cache when the CPU reads them")
        return
      ctx.retired = sub.timestamp
      ctx.queue.pop(0)

  def fault(self, ctx: Context, sub: Submission, reason: str) -> None:
    self.klog(f"GPU fault in context {ctx.id} at timestamp {sub.timestamp}: {reason}")
    ctx.invalid = True
    ctx.reset_stat = STAT["KGSL_CTX_STAT_GUILTY_CONTEXT_RESET_EXT"]
    ctx.retired = ctx.issued
    ctx.queue.clear()

  def wait_timestamp(self, p: dict) -> None:
    ctx = self.context(p["context_id"])
    deadline = time.monotonic() + p["timeout"] / 1000
    while True:
      self.run(ctx)
      if ctx.invalid:
        raise KgslErrno(errno.EDEADLK, f"context {ctx.id} was invalidated by a fault")
      if ctx.retired >= p["timestamp"]:
        return
      if time.monotonic() >= deadline:
        raise KgslErrno(errno.ETIMEDOUT, f"timestamp {p['timestamp']} of context {ctx.id} not retired")
      time.sleep(0.001)

  def read_timestamp(self, p: dict) -> dict:
    ctx = self.context(p["context_id"])
    self.run(ctx)
    kinds = facts.ENUMS["kgsl_timestamp_type"]
    values = {kinds["KGSL_TIMESTAMP_CONSUMED"]: ctx.retired, kinds["KGSL_TIMESTAMP_RETIRED"]: ctx.retired,
              kinds["KGSL_TIMESTAMP_QUEUED"]: ctx.issued}
    if p["type"] not in values:
      raise KgslErrno(errno.EINVAL, f"timestamp type {p['type']}")
    return {**p, "timestamp": values[p["type"]]}
