"""KfdDevice: one GPU that amdgpu.ko drives, used from user space through /dev/kfd (the ROCm kernel interface).

Open sequence (the order libhsakmt follows; every fact from include/uapi/linux/kfd_ioctl.h and amdkfd/kfd_chardev.c):

  /dev/kfd             open; AMDKFD_IOC_GET_VERSION: major must be KFD_IOCTL_MAJOR_VERSION (1), minor >= MIN_MINOR
  topology             /sys/devices/virtual/kfd/kfd/topology/nodes/*/{gpu_id,properties} (topology.py)
  register bases       /sys/class/drm/renderD<minor>/device/ip_discovery/die/0/GC/0/base_addr (amdgpu_discovery.c
                       sysfs, one "0x%08X" line per segment): PM4 addresses SH registers by their dword address
  ACQUIRE_VM           the render node /dev/dri/renderD<drm_render_minor> gives the process its GPU VM
  apertures            GET_PROCESS_APERTURES_NEW: every GPU address must lie in [gpuvm_base, gpuvm_limit]
  HDP flush page       ALLOC_MEMORY_OF_GPU(MMIO_REMAP, one page), mmap of /dev/kfd at the returned offset; a write of
                       0 at KFD_MMIO_REMAP_HDP_MEM_FLUSH_CNTL (0) flushes HDP (kgd_kfd_interface.h)
  fault events         CREATE_EVENT of KFD_IOC_EVENT_MEMORY and KFD_IOC_EVENT_HW_EXCEPTION: VM faults and GPU hangs
                       reach the process as these events (kfd_events.c kfd_signal_vm_fault_event / _reset_event)

GPU memory (KfdMemory): a CPU range is reserved (PROT_NONE) and the same address is the GPU address (KFD's dGPU
apertures share one address space with the CPU, kfd_flat_memory.c); ALLOC_MEMORY_OF_GPU(va_addr, size, flags);
mmap of the render node at the returned mmap_offset over the reserved range; MAP_MEMORY_TO_GPU on this gpu_id.
The device is shaped like am.device.AMDevice where am/queues touches it: `gmc.alloc(size)` returns an allocation whose
`va`, `gart` and `offset` are all the GPU address, `vram` reads and writes by GPU address through the CPU mappings,
`soc.hdp_flush()`, `doorbells.write64()`, `ih.faults()`, `caps`, `gc` (register addresses for PM4; the registers
themselves belong to the kernel here and are not accessible).
"""
from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from importlib import import_module

from am.cstruct import CStruct
from am.errors import AMError, UnsupportedDevice
from am.kfd import generated as facts
from am.kfd.osif import KfdOS, LinuxKfdOS
from am.kfd.topology import SUPPORTED, KfdNode, pick_node, read_topology
from am.mmio.regs import RegisterBlock

KFD_PATH = "/dev/kfd"
C = facts.CONSTANTS
PAGE = 4096
MIN_MINOR = 14        # kfd_ioctl.h "1.14 - Update kfd_event_data": the event data layout this driver reads
DOORBELL_SLICE = 8192  # kfd_doorbell.c kfd_doorbell_process_slice: 1024 queues x 8-byte doorbells per process
KFD_MMIO_REMAP_HDP_MEM_FLUSH_CNTL = 0   # kgd_kfd_interface.h: byte offset in the remapped MMIO page
MEMORY_KINDS = {"vram": C["KFD_IOC_ALLOC_MEM_FLAGS_VRAM"] | C["KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC"],
                "gtt": C["KFD_IOC_ALLOC_MEM_FLAGS_GTT"]}
ERRNO_HINTS = {errno.ENOMEM: "the GPU or the process is out of memory: free buffers or allocate less",
               errno.EINVAL: "the kernel refused an argument (see the values above and dmesg)",
               errno.EBUSY: "the object is still in use (mapped, or referenced by a queue)",
               errno.EPERM: "permission denied: add the user to the render and video groups"}


class KfdError(AMError):
  """An ioctl on /dev/kfd failed. Attributes: ioctl (name), errno, values (the struct members passed)."""

  def __init__(self, ioctl: str, err: int, args: dict, why: str = ""):
    shown = ", ".join(f"{k}=0x{v:x}" for k, v in args.items() if isinstance(v, int) and v)
    name = errno.errorcode.get(err, str(err))
    hint = ERRNO_HINTS.get(err, "")
    super().__init__(f"{ioctl}({shown}) failed: {name} ({os.strerror(err)})" + (f"; {why}" if why else "")
                     + (f"; {hint}" if hint else ""))
    self.ioctl, self.errno, self.values = ioctl, err, args


@dataclass(frozen=True)
class KfdCaps:
  """What am/queues and the PM4 emitters branch on, derived once from the topology node."""
  asic: str
  gfx_target: str
  gfx_generation: int
  sdma_generation: int
  num_cu: int
  wave_size: int


class NoRegisterAccess:
  """The MMIO behind `KfdDevice.gc`: register addresses are for PM4 packets; the registers belong to amdgpu.ko."""
  size = 0

  def read32(self, offset: int) -> int:
    raise AMError(f"register read at 0x{offset:x}: on the KFD path registers belong to amdgpu.ko; use PM4 packets")

  def write32(self, offset: int, value: int) -> None:
    raise AMError(f"register write at 0x{offset:x}: on the KFD path registers belong to amdgpu.ko; use PM4 packets")


@dataclass
class KfdBuffer:
  """A buffer object of the process: `offset` and `gart` are its GPU address (= CPU address where mapped)."""
  offset: int
  size: int
  handle: int
  flags: int
  kind: str
  aperture: object | None = None    # the CPU mapping (MemoryAperture) when CPU-visible
  mapped: bool = False
  mc: int = 0

  @property
  def gart(self) -> int:
    return self.offset

  @property
  def va(self) -> int:
    return self.offset


class KfdMemory:
  """GPU memory of the process (am.ip.gmc.Gmc's `alloc` for am/queues)."""
  vmid = None   # the kernel picks the process VM's VMID when it maps a queue; user space is not told

  def __init__(self, dev):
    self.dev = dev
    self.buffers: dict[int, KfdBuffer] = {}

  def alloc(self, size: int, align: int = PAGE, map_gart: bool = True, kind: str = "gtt", executable: bool = True,
            cpu: bool = True) -> KfdBuffer:
    """Reserve an address, allocate, map for the CPU (when `cpu`) and the GPU (when `map_gart`), zero it.

    Raises:
      ValueError: a size or kind that cannot be allocated. KfdError: the kernel refused (ENOMEM names the size).
      AMError: the reserved address lies outside the process's GPUVM aperture."""
    if size <= 0:
      raise ValueError(f"GPU buffer of {size} bytes: the size must be positive")
    if kind not in MEMORY_KINDS:
      raise ValueError(f"memory kind {kind!r}: have {', '.join(MEMORY_KINDS)}")
    size = -(-size // PAGE) * PAGE
    flags = MEMORY_KINDS[kind] | C["KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE"] | C["KFD_IOC_ALLOC_MEM_FLAGS_NO_SUBSTITUTE"]
    if executable:
      flags |= C["KFD_IOC_ALLOC_MEM_FLAGS_EXECUTABLE"]
    va = self.dev.reserve(size)
    try:
      out = self.dev.ioctl("AMDKFD_IOC_ALLOC_MEMORY_OF_GPU", va_addr=va, size=size, gpu_id=self.dev.gpu_id,
                           flags=flags)
    except KfdError as e:
      if e.errno == errno.ENOMEM:
        raise KfdError(e.ioctl, e.errno, e.values, f"{size:#x} bytes of {kind} asked, "
                       f"{self.dev.available_memory():#x} bytes of VRAM left for this process") from None
      raise
    buf = KfdBuffer(va, size, out["handle"], flags, kind)
    self.buffers[va] = buf
    if cpu:
      buf.aperture = self.dev.os.mmap(va, size, self.dev.drm_fd, out["mmap_offset"])
      buf.aperture.write(0, bytes(size))
    if map_gart:
      self.map(buf)
    return buf

  def map(self, buf: KfdBuffer) -> None:
    ids = (ctypes.c_uint32 * 1)(self.dev.gpu_id)
    out = self.dev.ioctl("AMDKFD_IOC_MAP_MEMORY_TO_GPU", handle=buf.handle, device_ids_array_ptr=ctypes.addressof(ids),
                         n_devices=1, n_success=0)
    if out["n_success"] != 1:
      raise AMError(f"MAP_MEMORY_TO_GPU of handle 0x{buf.handle:x} mapped {out['n_success']} of 1 devices")
    buf.mapped = True

  def unmap(self, buf: KfdBuffer) -> None:
    ids = (ctypes.c_uint32 * 1)(self.dev.gpu_id)
    self.dev.ioctl("AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU", handle=buf.handle,
                   device_ids_array_ptr=ctypes.addressof(ids), n_devices=1, n_success=0)
    buf.mapped = False

  def free(self, buf: KfdBuffer) -> None:
    """Unmap from the GPU, drop the CPU mapping, free the memory.

    Raises:
      KfdError: EBUSY while a queue still uses the buffer."""
    if buf.mapped:
      self.unmap(buf)
    self.dev.ioctl("AMDKFD_IOC_FREE_MEMORY_OF_GPU", handle=buf.handle)
    self.dev.os.munmap(buf.offset, buf.size)
    self.buffers.pop(buf.offset, None)

  def find(self, va: int, size: int) -> tuple[KfdBuffer, int]:
    for buf in self.buffers.values():
      if buf.offset <= va and va + size <= buf.offset + buf.size:
        if buf.aperture is None:
          raise AMError(f"GPU address 0x{va:x} is in a buffer without a CPU mapping (kind {buf.kind})")
        return buf, va - buf.offset
    raise AMError(f"[0x{va:x}, +0x{size:x}) is in no buffer of this process")


class ProcessMemory:
  """Host access to the process's buffers by GPU address (am.queues reads and writes `dev.vram` at `offset`)."""

  def __init__(self, memory: KfdMemory):
    self.memory = memory

  def read(self, va: int, size: int) -> bytes:
    buf, at = self.memory.find(va, size)
    return buf.aperture.read(at, size)

  def write(self, va: int, data) -> None:
    buf, at = self.memory.find(va, len(data))
    buf.aperture.write(at, data)

  def read32(self, va: int) -> int:
    buf, at = self.memory.find(va, 4)
    return buf.aperture.read32(at)

  def write32(self, va: int, value: int) -> None:
    buf, at = self.memory.find(va, 4)
    buf.aperture.write32(at, value)

  def read64(self, va: int) -> int:
    buf, at = self.memory.find(va, 8)
    return buf.aperture.read64(at)

  def write64(self, va: int, value: int) -> None:
    buf, at = self.memory.find(va, 8)
    buf.aperture.write64(at, value)


class Doorbells:
  """The process's doorbell page (mmap of /dev/kfd at CREATE_QUEUE's doorbell_offset without its in-page bits).
  A doorbell write first stores the write pointer at the queue's write_pointer_address, which the scheduler reads
  when it maps the queue again (kfd_mqd_manager_v11.c: cp_hqd_pq_wptr_poll_addr = write_ptr)."""

  def __init__(self, dev):
    self.dev = dev
    self.aperture = None
    self.shadows: dict[int, int] = {}

  def attach(self, doorbell_offset: int, wptr_va: int) -> int:
    """The doorbell slot (8-byte index into the page) of a queue created with `doorbell_offset`."""
    if self.aperture is None:
      self.aperture = self.dev.os.mmap(0, DOORBELL_SLICE, self.dev.fd, doorbell_offset & ~(DOORBELL_SLICE - 1))
    slot = (doorbell_offset & (DOORBELL_SLICE - 1)) // 8
    self.shadows[slot] = wptr_va
    return slot

  def write64(self, offset: int, value: int) -> None:
    shadow = self.shadows.get(offset // 8)
    if shadow is not None:
      self.dev.vram.write64(shadow, value)
    self.aperture.write64(offset, value)


class Hdp:
  """`soc.hdp_flush()` of am/queues through the remapped MMIO page."""

  def __init__(self, aperture):
    self.aperture = aperture

  def hdp_flush(self) -> None:
    self.aperture.write32(KFD_MMIO_REMAP_HDP_MEM_FLUSH_CNTL, 0)


class KfdDevice:
  """Args:
    os_: the OS seam (default LinuxKfdOS; tests pass am.simcard.kfd.SimKfd). gpu_id: the node (default: the first
    GPU AM supports).

  Raises:
    UnsupportedDevice: no /dev/kfd or topology, a KFD ioctl major version AM does not speak, no supported GPU.
    KfdError: an ioctl of the open sequence failed.
  """

  def __init__(self, os_: KfdOS | None = None, gpu_id: int | None = None):
    from am.kfd.events import Events, Faults
    self.os = os_ or LinuxKfdOS()
    try:
      self.fd = self.os.open(KFD_PATH)
    except FileNotFoundError:
      raise UnsupportedDevice(f"no {KFD_PATH}: load amdgpu.ko (modprobe amdgpu) on a machine with an AMD GPU") from None
    except PermissionError:
      raise UnsupportedDevice(f"{KFD_PATH} is not accessible: add the user to the render group") from None
    self.version = self.check_version()
    self.node: KfdNode = pick_node(read_topology(self.os), gpu_id)
    self.gpu_id = self.node.gpu_id
    gen, sdma, asic = SUPPORTED[self.node.gfx_target]
    self.caps = KfdCaps(asic, self.node.gfx_target, gen, sdma, self.node.num_cu,
                        self.node.props.get("wave_front_size", 32))
    minor = self.node.props["drm_render_minor"]
    self.gc = RegisterBlock(import_module(f"am.generated.{'gc_11_0_0' if gen == 11 else 'gc_12_0_0'}"),
                            NoRegisterAccess(), self.gc_bases(minor))
    self.drm_fd = self.os.open(f"/dev/dri/renderD{minor}")
    self.ioctl("AMDKFD_IOC_ACQUIRE_VM", drm_fd=self.drm_fd, gpu_id=self.gpu_id)
    self.aperture = self.gpuvm_aperture()
    self.gmc = KfdMemory(self)
    self.vram = ProcessMemory(self.gmc)
    self.doorbells = Doorbells(self)
    self.soc = Hdp(self.mmio_remap())
    self.events = Events(self)
    self.ih = Faults(self)

  # ---- ioctls ----
  def ioctl(self, name: str, **fields: int) -> dict[str, int]:
    """Run AMDKFD_IOC_<name> with the struct members `fields`; returns the struct as the kernel left it.

    Raises:
      KfdError: the kernel answered an errno. ValueError: a value that does not fit its member."""
    word, _, _, struct = facts.IOCTLS[name]
    layout = CStruct(facts.STRUCTS, facts.SIZES, struct)
    buf = layout.pack(**fields)
    try:
      self.os.ioctl(self.fd, word, buf)
    except OSError as e:
      raise KfdError(name, e.errno, fields, str(e.strerror) if e.strerror and "simulated" in str(e.strerror)
                     else "") from None
    return layout.unpack(buf)

  def check_version(self) -> tuple[int, int]:
    v = self.ioctl("AMDKFD_IOC_GET_VERSION")
    major, minor = v["major_version"], v["minor_version"]
    want = C["KFD_IOCTL_MAJOR_VERSION"]
    if major != want or minor < MIN_MINOR:
      raise UnsupportedDevice(f"{KFD_PATH} speaks KFD ioctl version {major}.{minor}; AM needs {want}.{MIN_MINOR} or "
                              f"later of major {want} (written against {want}.{C['KFD_IOCTL_MINOR_VERSION']}, "
                              "linux 6.12): use a newer kernel")
    return major, minor

  def gc_bases(self, minor: int) -> tuple[int, ...]:
    path = f"/sys/class/drm/renderD{minor}/device/ip_discovery/die/0/GC/0/base_addr"
    if not self.os.exists(path):
      raise UnsupportedDevice(f"no {path}: amdgpu exposes IP discovery in sysfs from linux 5.18; AM needs the GC "
                              "register bases for its PM4")
    return tuple(int(line, 16) for line in self.os.read_text(path).split())

  def gpuvm_aperture(self) -> tuple[int, int]:
    nodes = 16
    array = (ctypes.c_uint8 * (facts.SIZES["kfd_process_device_apertures"] * nodes))()
    out = self.ioctl("AMDKFD_IOC_GET_PROCESS_APERTURES_NEW", kfd_process_device_apertures_ptr=ctypes.addressof(array),
                     num_of_nodes=nodes)
    layout = CStruct(facts.STRUCTS, facts.SIZES, "kfd_process_device_apertures")
    for i in range(out["num_of_nodes"]):
      entry = layout.unpack(bytes(array), i * layout.size)
      if entry["gpu_id"] == self.gpu_id:
        return entry["gpuvm_base"], entry["gpuvm_limit"]
    raise AMError(f"GET_PROCESS_APERTURES_NEW lists no aperture for gpu_id 0x{self.gpu_id:x}")

  def reserve(self, size: int) -> int:
    va = self.os.reserve(size)
    base, limit = self.aperture
    if not base <= va and va + size - 1 <= limit:
      self.os.munmap(va, size)
      raise AMError(f"reserved CPU range [0x{va:x}, +0x{size:x}) is outside the GPUVM aperture [0x{base:x}, "
                    f"0x{limit:x}] of gpu_id 0x{self.gpu_id:x}")
    return va

  def mmio_remap(self):
    va = self.reserve(PAGE)
    out = self.ioctl("AMDKFD_IOC_ALLOC_MEMORY_OF_GPU", va_addr=va, size=PAGE, gpu_id=self.gpu_id,
                     flags=C["KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP"] | C["KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE"]
                     | C["KFD_IOC_ALLOC_MEM_FLAGS_COHERENT"] | C["KFD_IOC_ALLOC_MEM_FLAGS_UNCACHED"])
    return self.os.mmap(va, PAGE, self.fd, out["mmap_offset"])

  def available_memory(self) -> int:
    return self.ioctl("AMDKFD_IOC_AVAILABLE_MEMORY", gpu_id=self.gpu_id)["available"]

  def cwsr_sizes(self) -> tuple[int, int, int]:
    """(ctx_save_restore_size, ctl_stack_size, bytes to allocate) of a compute queue: the node's cwsr_size and
    ctl_stack_size, plus the debugger area kfd_queue.c adds (ALIGN(waves x 32, 64), waves = CUs x 32 from GFX10.1)."""
    p = self.node.props
    debug = -(-(self.node.num_cu * 32 * 32) // 64) * 64
    total = -(-(p["cwsr_size"] + debug) // PAGE) * PAGE
    return p["cwsr_size"], p["ctl_stack_size"], total

  def describe(self) -> list[str]:
    base, limit = self.aperture
    return [f"/dev/kfd ioctl version {self.version[0]}.{self.version[1]}", self.node.describe(),
            f"GPUVM aperture [0x{base:x}, 0x{limit:x}], GC register bases "
            + ", ".join(f"0x{b:x}" for b in self.gc.bases)]

  def close(self) -> None:
    for buf in list(self.gmc.buffers.values()):
      self.gmc.free(buf)
    self.os.close(self.drm_fd)
    self.os.close(self.fd)
