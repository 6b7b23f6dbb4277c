"""GPFIFO channels: how work reaches an engine, and how the host learns it is done.

A channel is a ring of 8-byte GPFIFO entries, each pointing at a pushbuffer segment (FACTS.md 5.1), plus a USERD
page whose GPPut word (offset 0x8C) tells the host engine how far the ring is filled (FACTS.md 5.2). Submitting:

  1. write the pushbuffer words into the channel's command ring (pinned host memory, GPU-visible at the same address);
  2. write the GPFIFO entry at ring[put];
  3. advance GPPut in USERD;
  4. write the channel's work-submit token to the usermode doorbell at offset 0x90 (FACTS.md 5.3). That store is
     uncached, so it also drains the CPU's write-combining buffers that hold steps 2 and 3 (Intel SDM 11.3.1).

Completion: every GPFIFO entry ends with a host semaphore release (after wait-for-idle) of the next value of the
channel's 64-bit timeline in host memory. A wait polls that word, and checks the channel's error notifier, which RM
writes when it tears the channel down after a fault (NV_CHANNELGPFIFO_NOTIFICATION_TYPE_ERROR), so a fault becomes
an exception naming it instead of a hang; every wait has a timeout.
"""
from __future__ import annotations

import struct
import time

from nvdrv import rmapi
from nvdrv.errors import channel_error
from nvdrv.pushbuf import PushBuffer, gpfifo_entry
from nvdrv.rmapi import ffi

USERD_GP_PUT = 0x8C
USERD_GP_GET = 0x88
USERD_SIZE = 0x200
DOORBELL_NOTIFY_CHANNEL_PENDING = 0x90
SEMAPHORE_OFFSET = 256
CHANNEL_UVM_RANGE = 64 << 20


class Channel:
  """One GPFIFO channel of the device's channel group, with engine `engine_class` bound on subchannel `subc`."""

  def __init__(self, dev, name: str, engine_class: int, subc: int, entries: int, area, area_offset: int,
               cmd_bytes: int = 8 << 20):
    self.dev, self.name, self.engine_class, self.subc, self.entries = dev, name, engine_class, subc, entries
    self.ring = dev.osif.view(area.cpu + area_offset, entries * 8).cast("Q")
    self.gp_put = dev.osif.view(area.cpu + area_offset + entries * 8 + USERD_GP_PUT, 4).cast("I")
    self.cmd = dev.mem.alloc_host(cmd_bytes)
    self.cmd_view = dev.osif.view(self.cmd.cpu, self.cmd.size)
    self.cmd_put = 0
    self.status = dev.mem.alloc_host(4096)  # [0:48] error notifier (3 NvNotification), [256:264] timeline semaphore
    self.status_view = dev.osif.view(self.status.cpu, self.status.size)
    self.semaphore_word = self.status_view[SEMAPHORE_OFFSET:SEMAPHORE_OFFSET + 8].cast("Q")
    self.semaphore = self.status.va + SEMAPHORE_OFFSET
    self.value = 0        # last timeline value submitted
    self.completed = 0    # last timeline value seen complete
    self.put = 0
    self.acquired: dict[int, int] = {}  # another timeline's semaphore address -> the value this queue already awaits
    params = ffi.new("NV_CHANNEL_ALLOC_PARAMS *")
    params.hObjectError = self.status.handle
    params.hObjectBuffer = area.handle
    params.gpFifoOffset = area.va + area_offset
    params.gpFifoEntries = entries
    params.hContextShare = dev.ctxshare
    params.hUserdMemory[0] = area.handle
    params.userdOffset[0] = area_offset + entries * 8
    self.handle = dev.rm.alloc(dev.tsg, dev.info.gpfifo_class, params)
    self.engine = dev.rm.alloc(self.handle, engine_class)
    token = ffi.new("NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS *")
    self.token = dev.rm.control(self.handle, rmapi.NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN, token,
                                "GET_WORK_SUBMIT_TOKEN").workSubmitToken
    # UVM maps the channel's RM-internal buffers into our VA space itself; it needs an unused VA range for them.
    # (A range already mapped, such as the GPFIFO area, is refused with NV_ERR_INVALID_ADDRESS; seen on the H100.)
    self.uvm_range = dev.mem.va.alloc(CHANNEL_UVM_RANGE, 2 << 20)
    dev.uvm.register_channel(dev.uuid, dev.rm.ctl_fd, dev.rm.root, self.handle, self.uvm_range, CHANNEL_UVM_RANGE)

  def release(self) -> None:
    """Free the host memory of a channel whose RM object is about to be freed (its channel group is going away)."""
    self.dev.mem.free(self.cmd)
    self.dev.mem.free(self.status)

  # ---- submission ----
  def _write_cmd(self, words: bytes, queued: int | None = None) -> int:
    """Copy pushbuffer bytes into the command ring; returns their GPU address. Wraps to the start after draining
    the work queued so far: timeline value `queued` (default: self.value, the last one submitted)."""
    n = len(words)
    if n > self.cmd.size:
      raise ValueError(f"a {n}-byte pushbuffer does not fit channel {self.name}'s {self.cmd.size}-byte command ring")
    if self.cmd_put + n > self.cmd.size:
      # everything queued has been fetched and run; the ring can be reused from the start
      self.wait(self.value if queued is None else queued)
      self.cmd_put = 0
    start = self.cmd_put
    self.cmd_view[start:start + n] = words
    self.cmd_put = (start + n + 63) & ~63
    return self.cmd.va + start

  def submit(self, pb: PushBuffer) -> int:
    """Queue `pb` followed by a release of the next timeline value; returns that value (pass it to `wait`)."""
    tail = PushBuffer().semaphore_release(self.semaphore, self.value + 1)
    address = self._write_cmd(pb.tobytes() + tail.tobytes())  # before the value is taken: a wrap drains the last one
    self.value += 1
    self._kick(gpfifo_entry(address, len(pb) + len(tail)))
    return self.value

  def push(self, data: bytes, nwords: int) -> None:
    """Queue pushbuffer bytes that already end with the release of `self.value` (the caller advanced it, so the
    work queued before them ends at self.value - 1)."""
    self._kick(gpfifo_entry(self._write_cmd(data, self.value - 1), nwords))

  def submit_segment(self, address: int, nwords: int) -> None:
    """Queue a prebuilt pushbuffer that already ends with its own timeline release (see nvdrv.replay)."""
    self._kick(gpfifo_entry(address, nwords))

  def _kick(self, entry: int) -> None:
    while self.value - self.read_completed() >= self.entries - 1:
      self.wait(self.value - self.entries + 2)
    self.ring[self.put] = entry
    self.put = (self.put + 1) % self.entries
    self.gp_put[0] = self.put
    self.dev.doorbell[0] = self.token

  # ---- completion ----
  def read_completed(self) -> int:
    self.completed = self.semaphore_word[0]
    return self.completed

  def check_error(self) -> None:
    """Raise NVFault if RM has written this channel's error notifier."""
    info32, info16, status = struct.unpack_from("<IHH", self.status_view, 8)  # NvNotification[ERROR] after timeStamp
    if status:
      raise channel_error(self, info32, info16, status)

  def wait(self, value: int, timeout: float = 10.0) -> None:
    """Block until the timeline reaches `value`; raises NVFault on a channel error, TimeoutError after `timeout` s."""
    if self.completed >= value:
      return
    deadline = time.perf_counter() + timeout
    spins = 0
    while self.read_completed() < value:
      spins += 1
      if spins % 256 == 0:
        self.check_error()
        if time.perf_counter() > deadline:
          self.check_error()
          raise TimeoutError(
            f"channel {self.name} (handle 0x{self.handle:x}): timeline value {value} not reached after {timeout} s "
            f"(at {self.completed}, submitted {self.value}); the GPU may be hung on this channel's work. "
            f"The channel is unusable now; create a fresh device or channel.")
        if spins > 4096:
          time.sleep(20e-6)

  def synchronize(self, timeout: float = 10.0) -> None:
    self.wait(self.value, timeout)

