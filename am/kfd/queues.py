"""am/queues' compute and SDMA queues created through AMDKFD_IOC_CREATE_QUEUE: the PM4/SDMA builders, ring handling,
timeline signals and kernel dispatch are am.queues' own; only where the queue comes from differs.

CREATE_QUEUE arguments (kfd_chardev.c set_queue_properties_from_user, kfd_queue.c kfd_queue_acquire_buffers): the
ring, the read pointer (the CP writes it, RPTR_REPORT) and the write pointer (WPTR_POLL) are GPU addresses of buffers
mapped in the process VM, each mapping starting exactly there: the ring's mapping must be ring_size long, the pointers'
one page (the queue's write-back page holds the read pointer at +0 and the write pointer at +8). A compute queue also
needs an EOP buffer of at least the node's eop_buffer_size (4096 from GFX8 on) and a context save area of the node's
cwsr_size with ctl_stack_size equal to the node's (topology properties) plus the debugger area. The returned
doorbell_offset is the mmap offset of the doorbell page with the queue's byte offset inside it (SOC15).
"""
from __future__ import annotations

from am.kfd import generated as facts
from am.queues.compute import ComputeQueue
from am.queues.sdma import SdmaQueue

C = facts.CONSTANTS
QUEUE_PRIORITY = 7   # the middle of 0..KFD_MAX_QUEUE_PRIORITY, as ROCr's HSA_QUEUE_PRIORITY_NORMAL maps it


class KfdComputeQueue(ComputeQueue):
  """A PM4 compute queue (KFD_IOC_QUEUE_TYPE_COMPUTE) of the process; am.queues.dispatch works on it unchanged.

  Args:
    dev: the KfdDevice. ring_bytes: a power of two, 1 KiB (KFD_MIN_QUEUE_RING_SIZE) .. 2 MiB.
  Raises:
    KfdError: CREATE_QUEUE refused (names the values). ValueError: a bad ring size.
  """

  def __init__(self, dev, ring_bytes: int = 64 << 10):
    if ring_bytes < C["KFD_MIN_QUEUE_RING_SIZE"]:
      raise ValueError(f"KFD ring of {ring_bytes} bytes: at least KFD_MIN_QUEUE_RING_SIZE "
                       f"({C['KFD_MIN_QUEUE_RING_SIZE']})")
    super().__init__(dev, pipe=0, queue=0, doorbell=0, ring_bytes=max(ring_bytes, 4096))
    self.ctx_size, self.ctl_stack_size, total = dev.cwsr_sizes()
    self.cwsr = dev.gmc.alloc(total, kind="vram", executable=False, cpu=False)
    self.queue_id = None
    self.program()

  def program(self) -> None:
    dev = self.dev
    out = dev.ioctl("AMDKFD_IOC_CREATE_QUEUE", ring_base_address=self.ring.gart, ring_size=self.ring_bytes,
                    write_pointer_address=self.wb.gart + 8, read_pointer_address=self.wb.gart, gpu_id=dev.gpu_id,
                    queue_type=C["KFD_IOC_QUEUE_TYPE_COMPUTE"], queue_percentage=C["KFD_MAX_QUEUE_PERCENTAGE"],
                    queue_priority=QUEUE_PRIORITY, eop_buffer_address=self.eop.gart, eop_buffer_size=self.eop.size,
                    ctx_save_restore_address=self.cwsr.gart, ctx_save_restore_size=self.ctx_size,
                    ctl_stack_size=self.ctl_stack_size)
    self.queue_id = out["queue_id"]
    self.doorbell = dev.doorbells.attach(out["doorbell_offset"], self.wb.gart + 8)

  def unmap(self) -> None:
    if self.queue_id is not None:
      self.dev.ioctl("AMDKFD_IOC_DESTROY_QUEUE", queue_id=self.queue_id)
      self.queue_id = None

  def describe(self) -> str:
    return f"KFD queue {self.queue_id}: " + super().describe()

  @property
  def name(self) -> str:
    return f"KFD compute queue {self.queue_id}"

  def hqd_state(self) -> str:
    return "HQD registers belong to the kernel (not readable through /dev/kfd)"

  def reset(self) -> None:
    """Destroy the queue and create it again (the kernel dequeues the HQD); the timeline goes on."""
    self.unmap()
    self.dev.vram.write(self.wb.offset, bytes(16))
    self.wptr = 0
    self.program()


class KfdSdmaQueue(SdmaQueue):
  """An SDMA queue (KFD_IOC_QUEUE_TYPE_SDMA) of the process: am.queues.sdma's copies, fences and timestamps.

  Raises:
    KfdError: CREATE_QUEUE refused."""

  def __init__(self, dev, ring_bytes: int = 64 << 10):
    ring, wb = dev.gmc.alloc(ring_bytes), dev.gmc.alloc(4096)
    super().__init__(dev, ring, wb, doorbell=0)
    out = dev.ioctl("AMDKFD_IOC_CREATE_QUEUE", ring_base_address=ring.gart, ring_size=ring.size,
                    write_pointer_address=wb.gart + 8, read_pointer_address=wb.gart, gpu_id=dev.gpu_id,
                    queue_type=C["KFD_IOC_QUEUE_TYPE_SDMA"], queue_percentage=C["KFD_MAX_QUEUE_PERCENTAGE"],
                    queue_priority=QUEUE_PRIORITY)
    self.queue_id = out["queue_id"]
    self.doorbell = dev.doorbells.attach(out["doorbell_offset"], wb.gart + 8)

  def destroy(self) -> None:
    self.dev.ioctl("AMDKFD_IOC_DESTROY_QUEUE", queue_id=self.queue_id)
