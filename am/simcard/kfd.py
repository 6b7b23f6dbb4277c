"""SimKfd: a simulated /dev/kfd (with its render node and sysfs) behind am.kfd's OS seam, over a simulated card.

Design: a KFD process finds the card already running, brought up by amdgpu.ko. Here the AM driver (am.device.AMDevice)
plays amdgpu.ko: it boots the simulated card (firmware through the simulated PSP, MEC, SDMA, IH, GART) and its VRAM
allocator and IH ring are the "kernel's". The process's GPU VM is VMID 8 (first_kfd_vmid of gmc_v11_0.c /
gmc_v12_0.c), an am.ip.vm.GpuVm of that driver: MAP_MEMORY_TO_GPU / UNMAP write its multi-level page table in VRAM
(with the TLB flush), and the card's GC hub walks it as it walks any VMID (am/simcard/gpuvm.py). GTT buffers are
backed by VRAM (a CPU mapping is a view of that VRAM, not the host pool); userptr allocations are refused
(EOPNOTSUPP).

Queues: CREATE_QUEUE of a compute queue programs an HQD of the card (me1 pipe1, VMID 8, ring / read and write pointers /
EOP at the process's addresses) through the AM driver's register blocks, as amdgpu's scheduler would map the MQD, so the
card's simulated MEC runs its PM4 (DISPATCH_DIRECT on the wave emulator, translated through VMID 8's page table: a
wave's access to an unmapped page is a VM fault). An SDMA queue runs on UserSdma, the card's SDMA packet handlers
(am/simcard/sdma.py) over the process's ring. Doorbells: the process's doorbell page is BAR 2's first 8 KiB; a write
runs the queue at once. Then the kernel's interrupt handling (kfd_int_process_v11.c) reads the IH ring: a
CP_EOP_INTERRUPT signals the event whose id is its context id if that event's slot was written
(kfd_signal_event_interrupt); a VM fault (VMC, or GFX UTCL2) signals the process's memory events with
kfd_hsa_memory_exception_data (NotPresent = ring_id & 0x08, ReadOnly = ring_id & 0x20, as event_interrupt_wq_v11 reads
them) and stops its queues (kfd_dqm_evict_pasid); a bad packet or shader error signals HW-exception events (GPU_HANG),
as the hang detection and reset that follow on hardware would. The card runs as the host touches it (card.py's time
model: reads of the process's mappings give busy queues time); WAIT_EVENTS gives them time until the events come or the
timeout passes, then reports KFD_IOC_WAIT_RESULT_TIMEOUT.

ioctl checks, each with the kernel's errno (kfd_chardev.c unless named): an unknown nr ENOTTY (kfd_ioctl); a request
word that differs from kfd_ioctl.h's EINVAL (the kernel copies min(sizes); the simulator refuses, to catch driver
bugs); unknown gpu_id EINVAL; memory or queue ioctls before ACQUIRE_VM ENODEV (kfd_bind_process_to_device);
ACQUIRE_VM with a non-render fd EINVAL, with a second fd EBUSY; ALLOC size 0, no or two memory types, DOORBELL not
the process slice, MMIO_REMAP not one page, an unaligned or overlapping address EINVAL (amdgpu_vm_bo_map), VRAM
exhausted ENOMEM; MAP/UNMAP/FREE of an unknown handle EINVAL, n_success > n_devices EINVAL, FREE of a mapped buffer
EBUSY, UNMAP of a queue's buffer EBUSY (unmap_bo_from_gpuvm queue_refcount); CREATE_QUEUE percentage > 100 or priority
> 15 EINVAL, a ring size not a power of two EINVAL (< 1 KiB clamped), an unknown type ENOTSUPP (524), ring / read /
write pointer / EOP / context save area not exactly a mapped buffer EINVAL, EOP smaller than 4096 EINVAL,
ctl_stack_size not the node's EINVAL, context save area smaller than the node's cwsr_size EINVAL (kfd_queue.c);
CREATE_EVENT with a second event page, a non-GTT page or one smaller than KFD_SIGNAL_EVENT_LIMIT slots EINVAL;
unknown event ids EINVAL; mmap of a wrong length EINVAL.
"""
from __future__ import annotations

import ctypes
import errno
import struct
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from am.cstruct import CStruct
from am.device import AMDevice
from am.ip.ih import IVEntry
from am.kfd import generated as facts
from am.mmio.pci import MemoryAperture
from am.simcard.card import MMIO_REG_HOLE_OFFSET, HostVram, SimCard
from am.simcard.gpuvm import write_va
from am.simcard.sdma import SimSdma

C = facts.CONSTANTS
PAGE = 4096
ENOTSUPP = 524                 # include/linux/errno.h (kernel-internal, reaches user space as 524)
KFD_VMID = 8                   # amdgpu: VMIDs 8-15 are KFD's on GFX11/12 (first_vmid_kfd)
DOORBELL_SLICE = 8192          # kfd_doorbell.c kfd_doorbell_process_slice
COMPUTE_DOORBELLS = range(0x10, 0x100)    # inside the card's MEC doorbell range (am/ip/gfx.py)
SDMA_DOORBELLS = range(0x200, 0x300)
KFD_PIPE = 1                   # HQDs me1 pipe1 queue 0..7 (the AM driver's own queue is me1 pipe0 queue0)
GPUVM_BASE, GPUVM_LIMIT = 0x200000, (1 << 47) - 1     # kfd_flat_memory.c: dGPU SVM aperture up to 47 bits
VA_START = 0x7000_0000_0000
FIRST_NONSIGNAL_EVENT_ID = (0x7FFFFFFF >> 1) + 1      # kfd_events.h KFD_FIRST_NONSIGNAL_EVENT_ID
UNSIGNALED = (1 << 64) - 1
TOPOLOGY = "/sys/devices/virtual/kfd/kfd/topology/nodes"
RENDER_MINOR = 128
DRM_MMAP_BASE = 1 << 32


class KfdErrno(Exception):
  def __init__(self, err: int, why: str):
    super().__init__(why)
    self.errno = err


@dataclass
class Bo:
  handle: int
  va: int
  size: int
  flags: int
  vram: int | None                # VRAM offset of the backing, None for DOORBELL / MMIO_REMAP
  mmap_offset: int
  mapped: bool = False
  queue_refs: int = 0


@dataclass
class SimEvent:
  id: int
  type: int
  auto_reset: bool
  signaled: bool = False
  data: dict = field(default_factory=dict)


@dataclass
class SimQueue:
  id: int
  type: int
  slot: int
  bos: list
  hqd: tuple | None = None        # (pipe, queue) of a compute queue
  engine: object | None = None    # UserSdma of an SDMA queue


class UserSdma(SimSdma):
  """A process's SDMA queue on the card's SDMA packet handlers: the ring and pointers are the queue's, the
  translation the process VM's. Read pointer written back as 64-bit bytes, as for the kernel's queue."""

  def __init__(self, card, ring: int, ring_bytes: int, rptr_va: int):
    self.card, self.ring, self.ring_bytes, self.rptr_va = card, ring, ring_bytes, rptr_va
    self.rptr = self.wptr = self.packets = 0
    self.hung: str | None = None
    self.vmid = KFD_VMID

  def run(self) -> None:
    self.execute_ring(self.ring, self.ring_bytes)
    write_va(self.card, self.rptr_va, struct.pack("<Q", self.rptr), "SDMA rptr write-back", self.vmid)


class DoorbellPage(MemoryAperture):
  def __init__(self, kfd):
    super().__init__(np.zeros(DOORBELL_SLICE, np.uint8))
    self.kfd = kfd

  def write64(self, offset: int, value: int) -> None:
    super().write64(offset, value)
    self.kfd.doorbell(offset // 8, value)

  def write32(self, offset: int, value: int) -> None:
    super().write32(offset, value)
    self.kfd.doorbell(offset // 8, value)


class MmioRemapPage(MemoryAperture):
  """The page amdgpu remaps for user space: HDP_MEM_FLUSH_CNTL at +0 reaches the card's MMIO hole."""

  def __init__(self, card):
    super().__init__(np.zeros(PAGE, np.uint8))
    self.card = card

  def write32(self, offset: int, value: int) -> None:
    self.card.regs.write32(MMIO_REG_HOLE_OFFSET + offset, value)


def layout(name: str) -> CStruct:
  return CStruct(facts.STRUCTS, facts.SIZES, name)


class SimKfd:
  """Args:
    card: 'navi31' or 'navi48'. firmware_dir: what the simulated PSP accepts (as am.simcard.card.SimCard).
    version: (major, minor) GET_VERSION answers (tests use others to check the driver's refusal).
  """

  def __init__(self, card: str, firmware_dir: str | None = None, version: tuple[int, int] | None = None):
    self.card = SimCard(card, firmware_dir)
    self.amdgpu = AMDevice(self.card, firmware_dir)
    self.amdgpu.boot()
    self.vm = self.amdgpu.gmc.create_vm(KFD_VMID)
    self.version = version or (C["KFD_IOCTL_MAJOR_VERSION"], C["KFD_IOCTL_MINOR_VERSION"])
    self.gpu_id = (zlib.crc32(card.encode()) & 0xFFFF) or 1   # kfd_topology.c: a 16-bit hash of the device
    self.log: list[str] = []
    self.fds: dict[int, str] = {}
    self.next_fd = 100
    self.vm_fd: int | None = None
    self.reserved: dict[int, int] = {}
    self.next_va = VA_START
    self.bos: dict[int, Bo] = {}
    self.next_idr = 1
    self.events: dict[int, SimEvent] = {}
    self.signal_page: Bo | None = None
    self.queues: dict[int, SimQueue] = {}
    self.evicted: str | None = None
    self.files = self._sysfs()
    self.handlers = {"AMDKFD_IOC_GET_VERSION": self.get_version, "AMDKFD_IOC_ACQUIRE_VM": self.acquire_vm,
                     "AMDKFD_IOC_GET_PROCESS_APERTURES_NEW": self.apertures,
                     "AMDKFD_IOC_AVAILABLE_MEMORY": self.available, "AMDKFD_IOC_ALLOC_MEMORY_OF_GPU": self.alloc,
                     "AMDKFD_IOC_FREE_MEMORY_OF_GPU": self.free, "AMDKFD_IOC_MAP_MEMORY_TO_GPU": self.map,
                     "AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU": self.unmap, "AMDKFD_IOC_CREATE_QUEUE": self.create_queue,
                     "AMDKFD_IOC_DESTROY_QUEUE": self.destroy_queue, "AMDKFD_IOC_CREATE_EVENT": self.create_event,
                     "AMDKFD_IOC_DESTROY_EVENT": self.destroy_event, "AMDKFD_IOC_SET_EVENT": self.set_event,
                     "AMDKFD_IOC_WAIT_EVENTS": self.wait_events}
    self.by_nr = {nr: (name, word, s) for name, (word, _, nr, s) in facts.IOCTLS.items()}

  def klog(self, line: str) -> None:
    self.log.append(f"amdgpu: kfd: {line}")

  # ---- sysfs ----
  def node_properties(self) -> dict[str, int]:
    caps, gc = self.card.caps, self.card.disc.gc_info
    cu = caps.num_cu
    gfxv = 110000 if caps.gfx_generation == 11 else 120001
    wave_num = cu * 32                                            # kfd_queue.c kfd_queue_ctx_save_restore_size
    vgpr = 0x60000                                                # kfd_get_vgpr_size_per_cu for both versions
    wg_data = -(-(cu * (vgpr + 0x4000 + 0x10000 + 0x1000)) // PAGE) * PAGE
    ctl_stack = -(-(40 + wave_num * 12 + 8) // PAGE) * PAGE
    return {"cpu_cores_count": 0, "simd_count": cu * 2, "mem_banks_count": 1, "caches_count": 0,
            "io_links_count": 1, "p2p_links_count": 0, "cpu_core_id_base": 0, "simd_id_base": 0x80000000,
            "max_waves_per_simd": gc.get("gc_max_waves_per_simd", 16), "lds_size_in_kb": gc.get("gc_lds_size", 64),
            "gds_size_in_kb": 0, "num_gws": 64, "wave_front_size": caps.wave_size,
            "array_count": caps.num_se * caps.num_sa_per_se, "simd_arrays_per_engine": caps.num_sa_per_se,
            "cu_per_simd_array": cu // max(caps.num_se * caps.num_sa_per_se, 1), "simd_per_cu": 2,
            "max_slots_scratch_cu": 32, "gfx_target_version": gfxv, "vendor_id": 0x1002,
            "device_id": self.card.spec.device_id, "location_id": 0x300, "domain": 0,
            "drm_render_minor": RENDER_MINOR, "hive_id": 0, "num_sdma_engines": 2, "num_sdma_xgmi_engines": 0,
            "num_sdma_queues_per_engine": 6, "num_cp_queues": 8, "cwsr_size": ctl_stack + wg_data,
            "ctl_stack_size": ctl_stack}

  def _sysfs(self) -> dict[str, str]:
    props = "".join(f"{k} {v}\n" for k, v in self.node_properties().items())
    cpu = "cpu_cores_count 16\nsimd_count 0\n"
    bases = "".join(f"0x{b:08X}\n" for b in self.card.disc.ip("GC").bases)
    return {f"{TOPOLOGY}/0/gpu_id": "0\n", f"{TOPOLOGY}/0/properties": cpu, f"{TOPOLOGY}/1/gpu_id": f"{self.gpu_id}\n",
            f"{TOPOLOGY}/1/properties": props,
            f"/sys/class/drm/renderD{RENDER_MINOR}/device/ip_discovery/die/0/GC/0/base_addr": bases}

  def read_text(self, path: str) -> str:
    if path not in self.files:
      raise FileNotFoundError(errno.ENOENT, f"simulated sysfs has no {path}")
    return self.files[path]

  def listdir(self, path: str) -> list[str]:
    prefix = path.rstrip("/") + "/"
    names = {p[len(prefix):].split("/")[0] for p in self.files if p.startswith(prefix)}
    if not names:
      raise FileNotFoundError(errno.ENOENT, f"simulated sysfs has no directory {path}")
    return sorted(names)

  def exists(self, path: str) -> bool:
    return path in self.files or any(p.startswith(path.rstrip("/") + "/") for p in self.files)

  # ---- files and mappings ----
  def open(self, path: str) -> int:
    kinds = {"/dev/kfd": "kfd", f"/dev/dri/renderD{RENDER_MINOR}": "drm"}
    if path not in kinds:
      raise FileNotFoundError(errno.ENOENT, f"the simulated system has /dev/kfd and /dev/dri/renderD{RENDER_MINOR}, "
                              f"not {path}")
    self.next_fd += 1
    self.fds[self.next_fd] = kinds[path]
    return self.next_fd

  def close(self, fd: int) -> None:
    if self.fds.pop(fd, None) is None:
      raise OSError(errno.EBADF, f"close({fd}): not open")

  def reserve(self, size: int) -> int:
    va = self.next_va
    self.next_va += -(-size // (64 << 10)) * (64 << 10)
    self.reserved[va] = size
    return va

  def munmap(self, address: int, size: int) -> None:
    self.reserved.pop(address, None)

  def mmap(self, address: int, size: int, fd: int, offset: int) -> MemoryAperture:
    kind = self.fds.get(fd)
    if kind == "kfd":
      mtype = offset & ~((1 << C["KFD_MMAP_TYPE_SHIFT"]) - 1)
      gpu = (offset & C["KFD_MMAP_GPU_ID_MASK"]) >> C["KFD_MMAP_GPU_ID_SHIFT"]
      if gpu != self.gpu_id:
        raise OSError(errno.EINVAL, f"mmap of /dev/kfd at 0x{offset:x}: gpu_id 0x{gpu:x} unknown")
      if mtype == C["KFD_MMAP_TYPE_DOORBELL"] and size == DOORBELL_SLICE:
        self.doorbell_page = getattr(self, "doorbell_page", None) or DoorbellPage(self)
        return self.doorbell_page
      if mtype == C["KFD_MMAP_TYPE_MMIO"] and size == PAGE:
        return MmioRemapPage(self.card)
      raise OSError(errno.EINVAL, f"mmap of /dev/kfd at 0x{offset:x}, 0x{size:x} bytes: not a doorbell slice "
                    f"({DOORBELL_SLICE}) or MMIO page ({PAGE})")
    if kind == "drm":
      bo = next((b for b in self.bos.values() if b.mmap_offset == offset and b.vram is not None), None)
      if bo is None or size > bo.size or address != bo.va:
        raise OSError(errno.EINVAL, f"mmap of the render node at 0x{offset:x} (0x{size:x} bytes at 0x{address:x}): "
                      "no such buffer, too long, or not at the buffer's reserved address")
      aperture = HostVram(self.card, self.card.vram.bytes[bo.vram:bo.vram + size])
      aperture.address = address
      return aperture
    raise OSError(errno.EBADF, f"mmap on fd {fd}: not open")

  # ---- ioctl entry ----
  def ioctl(self, fd: int, request: int, buf: bytearray) -> None:
    if self.fds.get(fd) != "kfd":
      raise OSError(errno.EBADF if fd not in self.fds else errno.ENOTTY, f"ioctl on fd {fd}: not /dev/kfd")
    nr = request & 0xFF
    entry = self.by_nr.get(nr)
    if entry is None or (request >> 8) & 0xFF != ord("K"):
      raise OSError(errno.ENOTTY, f"simulated kfd: ioctl 0x{request:08x}: no such KFD ioctl")
    name, word, struct_name = entry
    try:
      if request != word:
        raise KfdErrno(errno.EINVAL, f"request 0x{request:08x} for {name} differs from kfd_ioctl.h's 0x{word:08x}")
      if name not in self.handlers:
        raise KfdErrno(errno.EOPNOTSUPP, f"{name} is not modelled")
      lay = layout(struct_name)
      if len(buf) != lay.size:
        raise KfdErrno(errno.EFAULT, f"{name}: argument of {len(buf)} bytes, struct {struct_name} is {lay.size}")
      args = lay.unpack(bytes(buf))
      result = self.handlers[name](args)
    except KfdErrno as e:
      self.klog(f"{name}: {e}")
      raise OSError(e.errno, f"simulated kfd: {e}") from None
    for key, value in (result or {}).items():
      lay.set(buf, key, value)

  # ---- checks shared by handlers ----
  def need_gpu(self, gpu_id: int) -> None:
    if gpu_id != self.gpu_id:
      raise KfdErrno(errno.EINVAL, f"gpu_id 0x{gpu_id:x} unknown (this system has 0x{self.gpu_id:x})")

  def need_vm(self) -> None:
    if self.vm_fd is None:
      raise KfdErrno(errno.ENODEV, "binding to a GPU whose VM was not acquired (AMDKFD_IOC_ACQUIRE_VM first)")

  def bo(self, handle: int) -> Bo:
    if handle >> 32 != self.gpu_id or handle not in self.bos:
      raise KfdErrno(errno.EINVAL, f"handle 0x{handle:x} is not a buffer of this process")
    return self.bos[handle]

  def user_ids(self, ptr: int, n: int) -> list[int]:
    if not n or not ptr:
      raise KfdErrno(errno.EINVAL, f"device_ids_array_ptr 0x{ptr:x} with n_devices {n}")
    return list(struct.unpack(f"<{n}I", ctypes.string_at(ptr, 4 * n)))

  # ---- handlers ----
  def get_version(self, args):
    return {"major_version": self.version[0], "minor_version": self.version[1]}

  def acquire_vm(self, args):
    self.need_gpu(args["gpu_id"])
    if self.fds.get(args["drm_fd"]) != "drm":
      raise KfdErrno(errno.EINVAL, f"drm_fd {args['drm_fd']} is not an open render node")
    if self.vm_fd is not None and self.vm_fd != args["drm_fd"]:
      raise KfdErrno(errno.EBUSY, f"the VM was acquired with fd {self.vm_fd} already")
    self.vm_fd = args["drm_fd"]

  def apertures(self, args):
    if args["num_of_nodes"] == 0:
      return {"num_of_nodes": 1}
    lay = layout("kfd_process_device_apertures")
    entry = lay.pack(gpuvm_base=GPUVM_BASE, gpuvm_limit=GPUVM_LIMIT, gpu_id=self.gpu_id)
    ctypes.memmove(args["kfd_process_device_apertures_ptr"], bytes(entry), lay.size)
    return {"num_of_nodes": 1}

  def available(self, args):
    self.need_gpu(args["gpu_id"])
    return {"available": sum(e - s for s, e in self.amdgpu.gmc.vram.free)}

  def alloc(self, args):
    flags, size, va = args["flags"], args["size"], args["va_addr"]
    if size == 0:
      raise KfdErrno(errno.EINVAL, "size 0")
    self.need_gpu(args["gpu_id"])
    self.need_vm()
    types = ("VRAM", "GTT", "USERPTR", "DOORBELL", "MMIO_REMAP")
    kinds = [k for k in types if flags & C[f"KFD_IOC_ALLOC_MEM_FLAGS_{k}"]]
    if len(kinds) != 1:
      raise KfdErrno(errno.EINVAL, f"flags 0x{flags:x} name {kinds or 'no'} memory types; exactly one is needed")
    kind = kinds[0]
    if kind == "USERPTR":
      raise KfdErrno(errno.EOPNOTSUPP, "userptr memory is not modelled by the simulator")
    if kind == "DOORBELL" and size != DOORBELL_SLICE or kind == "MMIO_REMAP" and size != PAGE:
      raise KfdErrno(errno.EINVAL, f"{kind} allocation of 0x{size:x} bytes (must be 0x"
                     f"{DOORBELL_SLICE if kind == 'DOORBELL' else PAGE:x})")
    if va % PAGE or size % PAGE:
      raise KfdErrno(errno.EINVAL, f"va 0x{va:x} / size 0x{size:x} not page aligned (amdgpu_vm_bo_map)")
    for other in self.bos.values():
      if va < other.va + other.size and other.va < va + size:
        raise KfdErrno(errno.EINVAL, f"[0x{va:x}, +0x{size:x}) overlaps buffer 0x{other.handle:x} at 0x{other.va:x}")
    vram = None
    if kind in ("VRAM", "GTT"):
      try:
        vram = self.amdgpu.gmc.vram.alloc(size)
      except Exception as e:   # am.errors.AMError: out of VRAM
        raise KfdErrno(errno.ENOMEM, str(e)) from None
      self.card.vram.write(vram, bytes(size))
    handle = (self.gpu_id << 32) | self.next_idr       # kfd_priv.h MAKE_HANDLE
    self.next_idr += 1
    if kind == "MMIO_REMAP":
      offset = C["KFD_MMAP_TYPE_MMIO"] | (self.gpu_id << C["KFD_MMAP_GPU_ID_SHIFT"])
    elif kind == "DOORBELL":
      offset = C["KFD_MMAP_TYPE_DOORBELL"] | (self.gpu_id << C["KFD_MMAP_GPU_ID_SHIFT"])
    else:
      offset = DRM_MMAP_BASE + vram
    self.bos[handle] = Bo(handle, va, size, flags, vram, offset)
    return {"handle": handle, "mmap_offset": offset}

  def free(self, args):
    bo = self.bo(args["handle"])
    if bo.mapped:
      raise KfdErrno(errno.EBUSY, f"buffer 0x{bo.handle:x} at 0x{bo.va:x} is still mapped")
    if bo is self.signal_page:
      raise KfdErrno(errno.EINVAL, "freeing the event page is not allowed")
    if bo.vram is not None:
      self.amdgpu.gmc.vram.release(bo.vram, bo.size)
    del self.bos[bo.handle]

  def map(self, args):
    bo = self.bo(args["handle"])
    ids = self.user_ids(args["device_ids_array_ptr"], args["n_devices"])
    if args["n_success"] > args["n_devices"]:
      raise KfdErrno(errno.EINVAL, f"n_success {args['n_success']} > n_devices {args['n_devices']}")
    for gpu in ids[args["n_success"]:]:
      self.need_gpu(gpu)
    if bo.vram is not None and not bo.mapped:
      self.vm.map(bo.va, bo.size, vram=bo.vram, writeable=bool(bo.flags & C["KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE"]),
                  executable=bool(bo.flags & C["KFD_IOC_ALLOC_MEM_FLAGS_EXECUTABLE"]))
    bo.mapped = True
    return {"n_success": args["n_devices"]}

  def unmap(self, args):
    bo = self.bo(args["handle"])
    self.user_ids(args["device_ids_array_ptr"], args["n_devices"])
    if not bo.mapped:
      raise KfdErrno(errno.EINVAL, f"buffer 0x{bo.handle:x} is not mapped")
    if bo.queue_refs:
      raise KfdErrno(errno.EBUSY, f"buffer at 0x{bo.va:x} is used by {bo.queue_refs} queue(s) (queue_refcount)")
    if bo.vram is not None:
      self.vm.unmap(bo.va)
    bo.mapped = False
    return {"n_success": args["n_devices"]}

  def queue_bo(self, va: int, size: int, what: str) -> Bo:
    """kfd_queue_buffer_get: a mapped buffer starting at `va`, exactly `size` long (0: any size)."""
    for bo in self.bos.values():
      if bo.mapped and bo.va <= va < bo.va + bo.size:
        if bo.va != va >> 12 << 12 or (size and bo.size != size):
          raise KfdErrno(errno.EINVAL, f"{what} 0x{va:x}: mapping [0x{bo.va:x}, +0x{bo.size:x}) does not start "
                         f"there or is not 0x{size:x} bytes")
        return bo
    raise KfdErrno(errno.EINVAL, f"{what} 0x{va:x} is in no mapped buffer")

  def create_queue(self, args):
    if args["queue_percentage"] & 0xFF > C["KFD_MAX_QUEUE_PERCENTAGE"]:
      raise KfdErrno(errno.EINVAL, f"queue_percentage {args['queue_percentage'] & 0xFF} > 100")
    if args["queue_priority"] > C["KFD_MAX_QUEUE_PRIORITY"]:
      raise KfdErrno(errno.EINVAL, f"queue_priority {args['queue_priority']} > {C['KFD_MAX_QUEUE_PRIORITY']}")
    size = args["ring_size"]
    if size & (size - 1):
      raise KfdErrno(errno.EINVAL, f"ring_size 0x{size:x} is not a power of 2")
    size = max(size, C["KFD_MIN_QUEUE_RING_SIZE"])
    qtype = args["queue_type"]
    if qtype not in (C["KFD_IOC_QUEUE_TYPE_COMPUTE"], C["KFD_IOC_QUEUE_TYPE_SDMA"]):
      raise KfdErrno(ENOTSUPP, f"queue_type {qtype} not supported (the simulator runs COMPUTE and SDMA)")
    self.need_gpu(args["gpu_id"])
    self.need_vm()
    bos = [self.queue_bo(args["write_pointer_address"], PAGE, "write pointer"),
           self.queue_bo(args["read_pointer_address"], PAGE, "read pointer"),
           self.queue_bo(args["ring_base_address"], size, "ring")]
    if qtype == C["KFD_IOC_QUEUE_TYPE_COMPUTE"]:
      bos += self.compute_buffers(args)
    for bo in bos:
      bo.queue_refs += 1
    qid = next(i for i in range(1024) if i not in self.queues)
    if qtype == C["KFD_IOC_QUEUE_TYPE_COMPUTE"]:
      slot = next(s for s in COMPUTE_DOORBELLS if s not in {q.slot for q in self.queues.values()})
      queue = SimQueue(qid, qtype, slot, bos, hqd=self.map_hqd(args, size, slot))
    else:
      slot = next(s for s in SDMA_DOORBELLS if s not in {q.slot for q in self.queues.values()})
      queue = SimQueue(qid, qtype, slot, bos, engine=UserSdma(self.card, args["ring_base_address"], size,
                                                              args["read_pointer_address"]))
    self.queues[qid] = queue
    offset = C["KFD_MMAP_TYPE_DOORBELL"] | (self.gpu_id << C["KFD_MMAP_GPU_ID_SHIFT"]) | slot * 8
    return {"queue_id": qid, "doorbell_offset": offset, "ring_size": size}

  def compute_buffers(self, args) -> list[Bo]:
    props = self.node_properties()
    out = []
    if args["eop_buffer_address"]:
      if args["eop_buffer_size"] < PAGE:
        raise KfdErrno(errno.EINVAL, f"eop_buffer_size 0x{args['eop_buffer_size']:x} < node eop_buffer_size 0x1000")
      out.append(self.queue_bo(args["eop_buffer_address"], -(-args["eop_buffer_size"] // PAGE) * PAGE, "EOP buffer"))
    if args["ctl_stack_size"] != props["ctl_stack_size"]:
      raise KfdErrno(errno.EINVAL, f"ctl_stack_size 0x{args['ctl_stack_size']:x} != node ctl_stack_size "
                     f"0x{props['ctl_stack_size']:x}")
    if args["ctx_save_restore_size"] < props["cwsr_size"]:
      raise KfdErrno(errno.EINVAL, f"ctx_save_restore_size 0x{args['ctx_save_restore_size']:x} < node cwsr_size "
                     f"0x{props['cwsr_size']:x}")
    debug = -(-(self.card.caps.num_cu * 32 * 32) // 64) * 64
    total = -(-(args["ctx_save_restore_size"] + debug) // PAGE) * PAGE
    out.append(self.queue_bo(args["ctx_save_restore_address"], total, "context save area"))
    return out

  def map_hqd(self, args, ring_bytes: int, slot: int) -> tuple[int, int]:
    """Map the queue onto a free HQD as the scheduler maps its MQD (kfd_mqd_manager_v11.c update_mqd values)."""
    used = {q.hqd for q in self.queues.values() if q.hqd}
    hqd = next(((KFD_PIPE, q) for q in range(8) if (KFD_PIPE, q) not in used), None)
    if hqd is None:
      raise KfdErrno(errno.ENOMEM, "no free hardware queue slot (8 compute queues per process in the simulator)")
    gc = self.amdgpu.gc
    mqd = self.amdgpu.gmc.alloc(PAGE)
    ring, rptr, wptr, eop = (args["ring_base_address"], args["read_pointer_address"], args["write_pointer_address"],
                             args["eop_buffer_address"])
    values = {"regCP_HQD_VMID": KFD_VMID, "regCP_MQD_BASE_ADDR": mqd.gart & 0xFFFFFFFC,
              "regCP_MQD_BASE_ADDR_HI": mqd.gart >> 32, "regCP_HQD_PQ_BASE": (ring >> 8) & 0xFFFFFFFF,
              "regCP_HQD_PQ_BASE_HI": ring >> 40,
              "regCP_HQD_PQ_CONTROL": gc.regCP_HQD_PQ_CONTROL.encode(QUEUE_SIZE=(ring_bytes // 4).bit_length() - 2,
                                                                     RPTR_BLOCK_SIZE=5),
              "regCP_HQD_PQ_RPTR_REPORT_ADDR": rptr & 0xFFFFFFFC, "regCP_HQD_PQ_RPTR_REPORT_ADDR_HI": rptr >> 32,
              "regCP_HQD_PQ_WPTR_POLL_ADDR": wptr & 0xFFFFFFF8, "regCP_HQD_PQ_WPTR_POLL_ADDR_HI": wptr >> 32,
              "regCP_HQD_PQ_DOORBELL_CONTROL": gc.regCP_HQD_PQ_DOORBELL_CONTROL.encode(DOORBELL_OFFSET=slot * 2,
                                                                                       DOORBELL_EN=1),
              "regCP_HQD_EOP_BASE_ADDR": (eop >> 8) & 0xFFFFFFFF, "regCP_HQD_EOP_BASE_ADDR_HI": eop >> 40,
              "regCP_HQD_PQ_WPTR_LO": 0, "regCP_HQD_PQ_WPTR_HI": 0}
    gc.regGRBM_GFX_CNTL.write(MEID=1, PIPEID=hqd[0], QUEUEID=hqd[1], VMID=KFD_VMID)
    for name, value in values.items():
      gc[name].write(value)
    gc.regCP_HQD_ACTIVE.write(ACTIVE=1)
    active = gc.regCP_HQD_ACTIVE.read_fields()["ACTIVE"]
    gc.regGRBM_GFX_CNTL.write(0)
    if not active:
      raise KfdErrno(errno.EIO, f"the MEC did not activate HQD pipe {hqd[0]} queue {hqd[1]}: {self.card.log[-1]}")
    return hqd

  def destroy_queue(self, args):
    queue = self.queues.pop(args["queue_id"], None)
    if queue is None:
      raise KfdErrno(errno.EINVAL, f"queue_id {args['queue_id']} is not a queue of this process")
    for bo in queue.bos:
      bo.queue_refs -= 1
    if queue.hqd:
      gc = self.amdgpu.gc
      gc.regGRBM_GFX_CNTL.write(MEID=1, PIPEID=queue.hqd[0], QUEUEID=queue.hqd[1])
      gc.regCP_HQD_DEQUEUE_REQUEST.write(DEQUEUE_REQ=1)
      gc.regGRBM_GFX_CNTL.write(0)
    if not self.queues:
      self.evicted = None

  def create_event(self, args):
    etype = args["event_type"]
    if args["event_page_offset"]:
      if self.signal_page is not None:
        raise KfdErrno(errno.EINVAL, "the event page is set already")
      bo = self.bo(args["event_page_offset"])
      if not bo.flags & C["KFD_IOC_ALLOC_MEM_FLAGS_GTT"] or bo.size < C["KFD_SIGNAL_EVENT_LIMIT"] * 8:
        raise KfdErrno(errno.EINVAL, f"event page 0x{bo.handle:x}: a GTT buffer of at least "
                       f"{C['KFD_SIGNAL_EVENT_LIMIT'] * 8} bytes is needed (flags 0x{bo.flags:x}, size 0x{bo.size:x})")
      self.signal_page = bo
      self.card.vram.write(bo.vram, b"\xff" * (C["KFD_SIGNAL_EVENT_LIMIT"] * 8))
    if etype == C["KFD_IOC_EVENT_SIGNAL"]:
      if self.signal_page is None:
        raise KfdErrno(errno.EINVAL, "signal event without an event page (dGPU: pass one with the first event)")
      used = {e.id for e in self.events.values()}
      eid = next((i for i in range(C["KFD_SIGNAL_EVENT_LIMIT"]) if i not in used), None)
      if eid is None:
        raise KfdErrno(errno.ENOMEM, f"all {C['KFD_SIGNAL_EVENT_LIMIT']} signal events in use")
      self.card.vram.write64(self.signal_page.vram + 8 * eid, UNSIGNALED)
    elif etype in (C["KFD_IOC_EVENT_MEMORY"], C["KFD_IOC_EVENT_HW_EXCEPTION"]):
      eid = FIRST_NONSIGNAL_EVENT_ID + len([e for e in self.events if e >= FIRST_NONSIGNAL_EVENT_ID])
    else:
      raise KfdErrno(errno.EINVAL, f"event_type {etype} is not modelled (SIGNAL, MEMORY, HW_EXCEPTION)")
    self.events[eid] = SimEvent(eid, etype, bool(args["auto_reset"]))
    slot = eid if etype == C["KFD_IOC_EVENT_SIGNAL"] else 0
    return {"event_id": eid, "event_trigger_data": eid, "event_slot_index": slot,
            "event_page_offset": C["KFD_MMAP_TYPE_EVENTS"] | (self.gpu_id << C["KFD_MMAP_GPU_ID_SHIFT"])}

  def event(self, eid: int) -> SimEvent:
    if eid not in self.events:
      raise KfdErrno(errno.EINVAL, f"event_id {eid} is not an event of this process")
    return self.events[eid]

  def destroy_event(self, args):
    self.event(args["event_id"])
    del self.events[args["event_id"]]

  def set_event(self, args):
    ev = self.event(args["event_id"])
    if ev.type != C["KFD_IOC_EVENT_SIGNAL"]:
      raise KfdErrno(errno.EINVAL, f"event {ev.id} is not a signal event")
    ev.signaled = True

  def wait_events(self, args):
    lay = layout("kfd_event_data")
    n, ptr = args["num_events"], args["events_ptr"]
    if not ptr or not n:
      raise KfdErrno(errno.EINVAL, f"events_ptr 0x{ptr:x}, num_events {n}")
    entries = [lay.unpack(ctypes.string_at(ptr + i * lay.size, lay.size)) for i in range(n)]
    events = [self.event(e["event_id"]) for e in entries]
    deadline = time.monotonic() + args["timeout"] / 1000
    while True:
      self.interrupts()
      done = [e.signaled for e in events]
      if (all(done) if args["wait_for_all"] else any(done)) or time.monotonic() >= deadline:
        break
      if not self.card.cp.busy():
        time.sleep(max(0.0, deadline - time.monotonic()))
        continue
      self.card.tick()
    if not (all(done) if args["wait_for_all"] else any(done)):
      return {"wait_result": C["KFD_IOC_WAIT_RESULT_TIMEOUT"]}
    for i, ev in enumerate(events):
      if ev.signaled and ev.data:
        ctypes.memmove(ptr + i * lay.size, bytes(lay.pack(event_id=ev.id, **ev.data)), lay.size)
      if ev.signaled and ev.auto_reset:
        ev.signaled = False
    return {"wait_result": C["KFD_IOC_WAIT_RESULT_COMPLETE"]}

  # ---- doorbells and interrupts ----
  def doorbell(self, slot: int, value: int) -> None:
    queue = next((q for q in self.queues.values() if q.slot == slot), None)
    if queue is None:
      self.klog(f"doorbell slot {slot} matches no queue")
      return
    if self.evicted:
      self.klog(f"doorbell of queue {queue.id} ignored: queues evicted after {self.evicted}")
      return
    if queue.engine is not None:
      queue.engine.wptr = value
      queue.engine.run()
    else:
      self.card.doorbells.write64(slot * 8, value)
    self.interrupts()

  def interrupts(self) -> None:
    """The kernel's IH processing for this process (kfd_int_process_v11.c event_interrupt_wq_v11)."""
    for entry in self.amdgpu.ih.poll():
      self.interrupt(entry)

  def interrupt(self, e: IVEntry) -> None:
    if e.source == "GFX_11_0_0__SRCID__CP_EOP_INTERRUPT":
      ev = self.events.get(e.src_data[0])
      if ev and self.signal_page is not None and self.card.vram.read64(self.signal_page.vram + 8 * ev.id) != UNSIGNALED:
        ev.signaled = True
      return
    if e.is_vm_fault:
      va = e.fault_address
      data = {"memory_exception_data.va": va, "memory_exception_data.gpu_id": self.gpu_id,
              "memory_exception_data.failure.NotPresent": int(bool(e.ring_id & 0x08)),
              "memory_exception_data.failure.ReadOnly": int(bool(e.ring_id & 0x20))}
      self.raise_events(C["KFD_IOC_EVENT_MEMORY"], data, f"VM fault at 0x{va:x}")
    elif e.is_fault:
      data = {"hw_exception_data.reset_type": C["KFD_HW_EXCEPTION_PER_ENGINE_RESET"],
              "hw_exception_data.reset_cause": C["KFD_HW_EXCEPTION_GPU_HANG"], "hw_exception_data.gpu_id": self.gpu_id}
      self.raise_events(C["KFD_IOC_EVENT_HW_EXCEPTION"], data, f"{e.source}")

  def raise_events(self, etype: int, data: dict, why: str) -> None:
    self.klog(f"{why}: queues of the process evicted")
    self.evicted = why
    for ev in self.events.values():
      if ev.type == etype:
        ev.signaled, ev.data = True, data
