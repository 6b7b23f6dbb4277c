"""qcomdrv's exceptions: failed kgsl calls, GPU faults and timeouts, each naming what went wrong and what to do."""
from __future__ import annotations

import errno
import os

# what a failing kgsl ioctl's errno usually means (kgsl.c's handlers; downstream msm-kgsl)
ERRNO_HINTS = {
  errno.EINVAL: "kgsl rejected an argument (unknown context or object id, size 0, a struct too small)",
  errno.ENOMEM: "the GPU allocation failed: out of memory",
  errno.ENOTTY: "kgsl does not know this ioctl (a kernel older or newer than msm_kgsl.h of Mesa 25.0.7?)",
  errno.ETIMEDOUT: "the GPU did not reach the timestamp within the timeout",
  errno.EDEADLK: "the context was invalidated after a GPU fault",
  errno.EPROTO: "the context faulted earlier (the command was queued anyway)",
  errno.EFAULT: "kgsl could not read or write a user pointer in the request",
  errno.EACCES: "permission denied on /dev/kgsl-3d0 (add the user to the video/graphics group)",
  errno.ENOENT: "no /dev/kgsl-3d0: not a Qualcomm device with the kgsl driver",
}


class QCOMError(OSError):
  """A kgsl call failed; `errno` is the kernel's error and the message names the call and its arguments."""

  def __init__(self, call: str, err: int, detail: str = ""):
    hint = ERRNO_HINTS.get(err, "")
    name = "EDEADLK" if err == errno.EDEADLK else errno.errorcode.get(err, str(err))  # not its alias EDEADLOCK
    text = f"{call} failed: {name} ({os.strerror(err)})"
    text += f"; {hint}" if hint else ""
    text += f"; {detail}" if detail else ""
    super().__init__(err, text)
    self.call = call


class QCOMFault(RuntimeError):
  """The GPU faulted (or hung and was reset) while running a submission of this process."""

  def __init__(self, context: int, timestamp: int, status: str, log: list[str], stream: list[str]):
    text = (f"GPU fault in kgsl context {context} at timestamp {timestamp}: {status}. The context is invalidated; "
            "later work in this process runs on a fresh context.")
    if log:
      text += "\nkernel log:\n  " + "\n  ".join(log)
    if stream:
      text += "\nthe faulting submission:\n" + "\n".join(stream)
    super().__init__(text)
    self.context, self.timestamp, self.status, self.log = context, timestamp, status, log


class QCOMTimeout(TimeoutError):
  """A wait for a GPU timestamp ran out of time."""
