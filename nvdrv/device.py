"""NVDevice: one NVIDIA GPU driven from Python through nvidia.ko's device files only.

Bring-up, top to bottom (each step needs the objects of the steps before it; FACTS.md names every struct):

  /dev/nvidiactl      version check (refuse unknown layouts) -> root client (NV01_ROOT_CLIENT)
  /dev/nvidia-uvm     UVM_INITIALIZE, UVM_MM_INITIALIZE
  probe               GET_PROBED_IDS -> ATTACH_IDS -> GET_ID_INFO_V2 (device instance); CARD_INFO (minor number)
  /dev/nvidiaN        open, REGISTER_FD with the ctl fd
  RM objects          NV01_DEVICE_0 -> NV20_SUBDEVICE_0 -> class list (pick host/compute/copy/usermode classes)
                      -> usermode doorbell page (mapped for the CPU) -> FERMI_VASPACE_A (externally owned,
                      page faulting: UVM owns its page tables) -> GID (UUID) -> UVM_REGISTER_GPU, _GPU_VASPACE
  channels            KEPLER_CHANNEL_GROUP_A (GR runlist) -> FERMI_CONTEXT_SHARE_A -> GPFIFO channels for
                      compute and copy, each with its engine object, work-submit token and UVM registration
                      -> GPFIFO_SCHEDULE (enable the group)
  engine state        SET_OBJECT per subchannel, shared/local memory windows, local memory backing store

After a fault the channel group is dead; `recover()` frees it and builds a fresh one in the same process.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from nvdrv import rmapi
from nvdrv.channel import Channel
from nvdrv.memory import PAGE_2M, MemoryManager
from nvdrv.pushbuf import SUBC_COMPUTE, SUBC_COPY, PushBuffer
from nvdrv.rm import NVError, RMClient
from nvdrv.rmapi import ffi
from nvdrv.transfer import TransferMixin
from nvdrv.uvm import UVM

def read_kmsg() -> list[str]:
  """Every record in the kernel log ring, or [] when /dev/kmsg cannot be read."""
  try:
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
  except OSError:
    return []
  lines = []
  try:
    while True:
      try:
        record = os.read(fd, 8192)
      except BlockingIOError:
        break
      except BrokenPipeError:  # the record we were at was overwritten; the next read continues
        continue
      except OSError:
        break
      lines.append(record.decode(errors="replace").split(";", 1)[-1].strip())
  finally:
    os.close(fd)
  return lines


# Classes by generation, newest first: (name, gpfifo, compute, copy, usermode, qmd version, tested).
# Numbers: sdk/nvidia/inc/class/cl{c56f,c6c0,c7c0,c6b5,c7b5,c9c0,c561,c86f,cbc0,c8b5,c661,c96f,cdc0,c9b5,c761}.h.
GENERATIONS = (
  ("Blackwell", 0xC96F, 0xCDC0, 0xC9B5, 0xC761, None, False),
  ("Hopper", 0xC86F, 0xCBC0, 0xC8B5, 0xC661, "V04_00", True),
  ("Ada", 0xC56F, 0xC9C0, 0xC7B5, 0xC561, "V03_00", False),
  ("Ampere", 0xC56F, 0xC7C0, 0xC7B5, 0xC561, "V03_00", False),
  ("Ampere", 0xC56F, 0xC6C0, 0xC6B5, 0xC561, "V03_00", False),
)

# Generic-address apertures: an address in [SHARED_WINDOW, +4 GiB) means shared memory, one in [LOCAL_WINDOW, +16 MiB)
# local memory. They must not overlap any VA a kernel dereferences: ours all lie in [128 GiB, 896 GiB) (nvdrv.memory).
# Hopper wants the shared window 4 GiB aligned (FACTS.md 10.4).
SHARED_WINDOW = 0x7FFE_0000_0000
LOCAL_WINDOW = 0x7FFD_0000_0000
WARPS_PER_SM = 64                                  # resident warps per SM on sm_90
SMS_PER_TPC = 2
MAX_TPCS = 72                                      # GH100's full TPC count; sizes the local-memory backing store
ARENA_BYTES = 16 << 20                             # device memory for QMDs and constant banks


@dataclass(frozen=True)
class GPUInfo:
  """What bring-up learned about the GPU, derived once."""
  name: str
  gpu_id: int
  minor: int
  pci: str
  gpfifo_class: int
  compute_class: int
  copy_class: int
  usermode_class: int
  qmd_version: str | None
  tested: bool
  driver_version: str


class NVDevice(TransferMixin):
  """One GPU. `index` picks among the probed GPUs in RM's order.

  Raises:
    FileNotFoundError: no /dev/nvidiactl (no NVIDIA kernel module loaded).
    UnsupportedDriver: a driver branch without declared layouts.
    RuntimeError: the GPU's class list has no supported compute generation.
  """

  def __init__(self, index: int = 0, osif=None):
    self.rm = RMClient(osif)
    self.osif = self.rm.osif
    self.uvm = UVM(self.osif)
    gpu_id, instance = self._attach(index)
    card = self._card_info(gpu_id)
    self.dev_path = f"/dev/nvidia{card.minor_number}"
    self.dev_fd = self.osif.open(self.dev_path)
    register = ffi.new("nv_ioctl_register_fd_t *", {"ctl_fd": self.rm.ctl_fd})
    self.osif.ioctl(self.dev_fd, rmapi.ioc_rw(rmapi.NV_ESC_REGISTER_FD, 4), register)
    dev_params = ffi.new("NV0080_ALLOC_PARAMETERS *", {
      "deviceId": instance, "hClientShare": self.rm.root,
      "vaMode": rmapi.NV_DEVICE_ALLOCATION_VAMODE_MULTIPLE_VASPACES})
    self.device = self.rm.alloc(self.rm.root, rmapi.NV01_DEVICE_0, dev_params)
    self.subdevice = self.rm.alloc(self.device, rmapi.NV20_SUBDEVICE_0, ffi.new("NV2080_ALLOC_PARAMETERS *"))
    pci = f"{card.pci_info.domain:04x}:{card.pci_info.bus:02x}:{card.pci_info.slot:02x}.{card.pci_info.function}"
    self.info = self._choose_classes(gpu_id, card.minor_number, pci)
    self._map_doorbell()
    vaspace = ffi.new("NV_VASPACE_ALLOCATION_PARAMETERS *", {
      "flags": rmapi.NV_VASPACE_ALLOCATION_FLAGS_ENABLE_PAGE_FAULTING
      | rmapi.NV_VASPACE_ALLOCATION_FLAGS_IS_EXTERNALLY_OWNED, "vaBase": 0x1000})
    self.vaspace = self.rm.alloc(self.device, rmapi.FERMI_VASPACE_A, vaspace)
    self.uuid = self._uuid()
    self._boost_clocks()
    self.uvm.register_gpu(self.uuid, self.rm.ctl_fd, self.rm.root)
    self.uvm.register_vaspace(self.uuid, self.rm.ctl_fd, self.rm.root, self.vaspace)
    self.mem = MemoryManager(self)
    self.shared_window, self.local_window = SHARED_WINDOW, LOCAL_WINDOW
    self.barrier_kind = os.environ.get("NV_BARRIER", "compute")
    self.cwd_membar = int(os.environ.get("NV_CWD_MEMBAR", "1"))
    self.qmd_invalidate = os.environ.get("NV_QMD_INVALIDATE", "all")
    self.local_memory, self.local_per_thread = None, 0
    # QMDs and constant banks in HBM (written by the CPU through BAR1): the compute engine fetches them on the
    # critical path of every launch, and from host memory each fetch is a PCIe round trip.
    self.arena = self.mem.alloc_device(ARENA_BYTES, cpu_access=True)
    self.arena_view = self.osif.view(self.arena.cpu, self.arena.size)
    self.arena_put = 0
    self._create_channels()

  # ---- bring-up steps ----
  def _attach(self, index: int) -> tuple[int, int]:
    probed = self.rm.control(self.rm.root, rmapi.NV0000_CTRL_CMD_GPU_GET_PROBED_IDS,
                             ffi.new("NV0000_CTRL_GPU_GET_PROBED_IDS_PARAMS *"), "GET_PROBED_IDS")
    ids = [g for g in probed.gpuIds if g != rmapi.NV0000_CTRL_GPU_INVALID_ID]
    if not 0 <= index < len(ids):
      raise IndexError(f"NV device index {index} requested, but RM probed {len(ids)} GPU(s): "
                       f"{', '.join(hex(g) for g in ids) or 'none'}")
    attach = ffi.new("NV0000_CTRL_GPU_ATTACH_IDS_PARAMS *")
    attach.gpuIds[0] = ids[index]
    attach.gpuIds[1] = rmapi.NV0000_CTRL_GPU_INVALID_ID
    self.rm.control(self.rm.root, rmapi.NV0000_CTRL_CMD_GPU_ATTACH_IDS, attach, "ATTACH_IDS")
    info = ffi.new("NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS *", {"gpuId": ids[index]})
    self.rm.control(self.rm.root, rmapi.NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2, info, "GET_ID_INFO_V2")
    return ids[index], info.deviceInstance

  def _card_info(self, gpu_id: int):
    cards = ffi.new("nv_ioctl_card_info_t[32]")
    self.osif.ioctl(self.rm.ctl_fd, rmapi.ioc_rw(rmapi.NV_ESC_CARD_INFO, ffi.sizeof(cards)), cards)
    for card in cards:
      if card.valid and card.gpu_id == gpu_id:
        copy = ffi.new("nv_ioctl_card_info_t *")
        ffi.memmove(copy, ffi.addressof(card), ffi.sizeof(copy[0]))  # the array dies with this frame
        return copy
    raise RuntimeError(f"NV_ESC_CARD_INFO lists no card with gpu id 0x{gpu_id:x}")

  def _choose_classes(self, gpu_id: int, minor: int, pci: str) -> GPUInfo:
    params = self.rm.control(self.device, rmapi.NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2,
                             ffi.new("NV0080_CTRL_GPU_GET_CLASSLIST_V2_PARAMS *"), "GET_CLASSLIST_V2")
    available = set(params.classList[0:params.numClasses])
    for name, gpfifo, compute, copy, usermode, qmd, tested in GENERATIONS:
      if {gpfifo, compute, copy, usermode} <= available:
        return GPUInfo(name, gpu_id, minor, pci, gpfifo, compute, copy, usermode, qmd, tested, self.rm.version)
    raise RuntimeError(f"no supported compute generation in this GPU's class list: "
                       f"{', '.join(hex(c) for c in sorted(available))}")

  def _map_doorbell(self) -> None:
    params = ffi.new("NV_HOPPER_USERMODE_A_PARAMS *", {"bBar1Mapping": 1, "bPriv": 0})
    self.usermode = self.rm.alloc(self.subdevice, self.info.usermode_class, params)
    self.doorbell_cpu, self.doorbell_fd = self.rm.map_to_cpu(self.subdevice, self.usermode, 0x10000, self.dev_path)
    self.doorbell = self.osif.view(self.doorbell_cpu + 0x90, 4).cast("I")

  def _uuid(self) -> bytes:
    gid = ffi.new("NV2080_CTRL_GPU_GET_GID_INFO_PARAMS *",
                  {"flags": rmapi.NV2080_GPU_CMD_GPU_GET_GID_FLAGS_FORMAT_BINARY})
    self.rm.control(self.subdevice, rmapi.NV2080_CTRL_CMD_GPU_GET_GID_INFO, gid, "GET_GID_INFO")
    if gid.length != 16:
      raise RuntimeError(f"GPU UUID of {gid.length} bytes; UVM expects 16")
    return bytes(gid.data[0:16])

  def _boost_clocks(self) -> None:
    """Ask RM for maximum clocks while this client computes, as libcuda does for every CUDA context (a per-client
    request that ends with the client or after an hour; no global clock setting is changed). Without it the H100
    idles at low clocks and every launch and copy is slower (FACTS.md 10)."""
    flags = (rmapi.NV2080_CTRL_PERF_BOOST_FLAGS_CMD_BOOST_TO_MAX | rmapi.NV2080_CTRL_PERF_BOOST_FLAGS_CUDA_YES
             | rmapi.NV2080_CTRL_PERF_BOOST_FLAGS_CUDA_PRIORITY_HIGH)
    params = ffi.new("NV2080_CTRL_PERF_BOOST_PARAMS *", {"flags": flags,
                                                        "duration": rmapi.NV2080_CTRL_PERF_BOOST_DURATION_MAX})
    try:
      self.rm.control(self.subdevice, rmapi.NV2080_CTRL_CMD_PERF_BOOST, params, "PERF_BOOST")
      self.boosted = True
    except NVError:
      self.boosted = False  # e.g. not permitted in a VM: work still runs, at the clocks the GPU chooses

  def _create_channels(self) -> None:
    tsg = ffi.new("NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS *", {"engineType": rmapi.NV2080_ENGINE_TYPE_GRAPHICS})
    self.tsg = self.rm.alloc(self.device, rmapi.KEPLER_CHANNEL_GROUP_A, tsg)
    ctxshare = ffi.new("NV_CTXSHARE_ALLOCATION_PARAMETERS *", {
      "hVASpace": self.vaspace, "flags": rmapi.NV_CTXSHARE_ALLOCATION_FLAGS_SUBCONTEXT_ASYNC})
    self.ctxshare = self.rm.alloc(self.tsg, rmapi.FERMI_CONTEXT_SHARE_A, ctxshare)
    self.gpfifo_area = self.mem.alloc_device(PAGE_2M, cpu_access=True, contiguous=True)
    entries = 0x10000 // 8
    self.compute = Channel(self, "compute", self.info.compute_class, SUBC_COMPUTE, entries, self.gpfifo_area, 0)
    self.copy = Channel(self, "copy", self.info.copy_class, SUBC_COPY, entries, self.gpfifo_area, 0x20000)
    schedule = ffi.new("NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS *", {"bEnable": 1})
    self.rm.control(self.tsg, rmapi.NVA06C_CTRL_CMD_GPFIFO_SCHEDULE, schedule, "GPFIFO_SCHEDULE")
    setup = PushBuffer().set_object(SUBC_COMPUTE, self.info.compute_class)
    setup.compute_windows(self.shared_window, self.local_window)
    self.compute.wait(self.compute.submit(setup), timeout=5.0)
    self.copy.wait(self.copy.submit(PushBuffer().set_object(SUBC_COPY, self.info.copy_class)), timeout=5.0)

  def recover(self) -> None:
    """After a fault: free the dead channel group (RM frees its channels and engine objects with it) and build a
    fresh one, so the same process can run correct work again. Memory allocations survive."""
    for channel in (self.compute, self.copy):
      channel.release()
    self.rm.free(self.tsg, self.device)
    self.mem.free(self.gpfifo_area)
    self.local_per_thread = 0  # the new channel must be pointed at the local memory again
    self.arena_put = 0
    self._staging_done = [0, 0]
    self._create_channels()

  # ---- runtime ----
  def write(self, address: int, data: bytes) -> None:
    """CPU write into host memory or CPU-mapped device memory (address = CPU address = GPU VA)."""
    self.osif.write(address, data)

  def launch_slot(self, cbuf_size: int):
    """Arena space for one QMD (384 B, 256-aligned) and constant bank 0 of `cbuf_size` bytes (256-aligned)."""
    from nvdrv.program import LaunchSlot
    offset = self.arena_take(512 + ((cbuf_size + 255) & ~255))
    return LaunchSlot(qmd=self.arena.va + offset, cbuf=self.arena.va + offset + 512,
                      qmd_cpu=self.arena.cpu + offset, cbuf_cpu=self.arena.cpu + offset + 512)

  def arena_take(self, need: int) -> int:
    """Offset of `need` bytes of the launch arena. The arena is a ring; before it wraps, the compute channel
    drains, so no queued launch's memory is overwritten."""
    offset = self.arena_put
    if offset + need > self.arena.size:
      self.compute.synchronize()
      offset = 0
    self.arena_put = offset + need
    return offset

  def ensure_local_memory(self, per_thread: int, pb: PushBuffer) -> None:
    """Grow the local-memory backing store so every resident thread can have `per_thread` bytes; the methods that
    point the compute engine at it go into `pb` (ahead of the launch that needs it). Sizing: FACTS.md 10.4."""
    if per_thread <= self.local_per_thread:
      return
    per_warp = (per_thread * 32 + 0x1FF) & ~0x1FF
    per_tpc = (per_warp * WARPS_PER_SM * SMS_PER_TPC + 0x7FFF) & ~0x7FFF
    old = self.local_memory
    self.local_memory = self.mem.alloc_device((per_tpc * MAX_TPCS + 0x1FFFF) & ~0x1FFFF)
    self.local_per_thread = per_thread
    pb.wfi()
    pb.compute_local_memory(self.local_memory.va, per_tpc, 0xFF)
    if old is not None:
      self.synchronize()
      self.mem.free(old)

  def barrier(self, pb: PushBuffer) -> None:
    """Make the work queued before `pb` finish (and its writes visible) before what `pb` adds next: the compute
    engine's wait-for-idle with a data flush (INVALIDATE_SHADER_CACHES FLUSH_DATA | DATA, NVK's compute barrier,
    FACTS.md 10.3), or the host's WFI (NV_BARRIER=host), or nothing (NV_BARRIER=none: for measurements only)."""
    if self.barrier_kind == "compute":
      pb.compute_wfi()
    elif self.barrier_kind == "host":
      pb.wfi()

  def fault_detail(self) -> str:
    """The kernel log's line for this process's newest Xid (engine, faulting address, fault type), when the log is
    readable (/dev/kmsg needs root or CAP_SYSLOG); RM prints it a moment after it writes the notifier."""
    for _ in range(5):
      mine = [line for line in read_kmsg() if "Xid" in line and f"pid={os.getpid()}," in line]
      if mine:
        return mine[-1]
      time.sleep(0.02)
    return ""

  def synchronize(self, timeout: float = 10.0) -> None:
    self.compute.synchronize(timeout)
    self.copy.synchronize(timeout)

  def describe(self) -> str:
    i = self.info
    return (f"NV {i.name} gpu_id=0x{i.gpu_id:x} pci={i.pci} driver={i.driver_version} compute=0x{i.compute_class:04x}"
            f" copy=0x{i.copy_class:04x}{'' if i.tested else ' (untested generation)'}")

  def close(self) -> None:
    for fd in (self.doorbell_fd, self.dev_fd):
      os.close(fd)
    self.uvm.close()
    self.rm.close()
