"""GPU faults as exceptions.

When an engine faults (an MMU fault on a bad address, an illegal instruction, a bad method), RM removes the channel
from the scheduler and writes the channel's error notifier: NvNotification {timeStamp u64, info32 u32, info16 u16,
status u16} at index NV_CHANNELGPFIFO_NOTIFICATION_TYPE_ERROR (sdk nvgputypes.h, nvos.h). info32 holds the error code
from nverror.h, the same number the kernel log prints as an Xid.
"""
from __future__ import annotations

from nvdrv.generated.xid import XID_NAMES

XID_HINTS = {
  31: "a kernel or copy read or wrote a GPU virtual address that is not mapped (or was freed)",
  13: "the graphics/compute engine raised an exception (illegal instruction, misaligned or out-of-range access)",
  32: "the host engine could not fetch or decode the pushbuffer",
  43: "the channel was reset after an error",
  45: "the channel was removed preemptively because another channel of its group faulted",
  69: "a method was sent to an engine class that does not support it",
}


class NVFault(RuntimeError):
  """A channel was torn down by a GPU fault. `xid` is the nverror.h code; the channel cannot run more work."""

  def __init__(self, channel_name: str, channel_handle: int, xid: int, info16: int, status: int, detail: str = ""):
    self.xid, self.info16, self.status = xid, info16, status
    name = XID_NAMES.get(xid, f"unknown error code {xid}")
    hint = XID_HINTS.get(xid, "")
    super().__init__(f"GPU fault on channel {channel_name} (handle 0x{channel_handle:x}): {name} (Xid {xid}"
                     f"{', info16 0x%x' % info16 if info16 else ''}, notifier status 0x{status:x})"
                     f"{': ' + hint if hint else ''}{'; ' + detail if detail else ''}. The channel is dead; "
                     f"later work needs a fresh channel (NVDevice.recover()).")


def channel_error(channel, info32: int, info16: int, status: int) -> NVFault:
  return NVFault(channel.name, channel.handle, info32, info16, status, channel.dev.fault_detail())
