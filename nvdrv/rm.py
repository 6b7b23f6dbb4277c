"""The resource manager (RM) client: objects, controls and CPU mappings through nvidia.ko escapes.

RM holds a tree of objects named by 32-bit handles: a root client, a device under it, a subdevice, memory, VA
spaces, channel groups, channels, engine objects. Each escape is an ioctl on /dev/nvidiactl (or /dev/nvidiaN for
the few "device only" ones) whose parameter block carries a `status` field: the ioctl can succeed as a transport
and still fail in RM, so both are checked (FACTS.md 1.1). Handles of objects below the client are chosen by us.

The first thing `RMClient` does is ask the module for its version string and refuse a driver branch whose struct
layouts nvdrv does not declare (nvdrv.rmapi.SUPPORTED_VERSIONS): a wrong layout would be a corrupted ioctl.
"""
from __future__ import annotations

import itertools

from nvdrv import rmapi
from nvdrv.generated.status import STATUS_CODES, STATUS_NAMES
from nvdrv.osif import LinuxOS
from nvdrv.rmapi import ffi


class NVError(RuntimeError):
  """An RM or UVM call returned a non-OK NV_STATUS; `status` holds the code, the message names it."""

  def __init__(self, what: str, status: int):
    self.status = status
    name = STATUS_NAMES.get(status, "unknown status")
    text = STATUS_CODES.get(name, (0, ""))[1]
    super().__init__(f"{what} failed: {name} (0x{status:x}): {text}")


class UnsupportedDriver(RuntimeError):
  """The kernel module's version has struct layouts nvdrv does not know."""


def check_version(osif: LinuxOS, ctl_fd: int) -> str:
  """The module's NV_VERSION_STRING through NV_ESC_CHECK_VERSION_STR (QUERY); raises UnsupportedDriver when its
  branch has no declared layouts. The version struct itself is the same in every branch (FACTS.md 1.3)."""
  params = ffi.new("nv_ioctl_rm_api_version_t *")
  params.cmd = rmapi.NV_RM_API_VERSION_CMD_QUERY
  size = ffi.sizeof("nv_ioctl_rm_api_version_t")
  osif.ioctl(ctl_fd, rmapi.ioc_rw(rmapi.NV_ESC_CHECK_VERSION_STR, size), params)
  version = ffi.string(params.versionString).decode(errors="replace")
  branch = version.split(".")[0]
  if params.reply != 1 or branch not in rmapi.SUPPORTED_VERSIONS:
    raise UnsupportedDriver(
      f"nvidia.ko reports version {version!r} (reply {params.reply}); nvdrv declares the RM struct layouts of driver "
      f"branch(es) {', '.join(rmapi.SUPPORTED_VERSIONS)} only and will not guess another branch's layouts. "
      f"Install a {rmapi.SUPPORTED_VERSIONS[-1]}.x driver, or add that branch's layouts to nvdrv/rmapi.py.")
  return version


class RMClient:
  """One RM root client on an open /dev/nvidiactl.

  Args:
    osif: the OS seam (nvdrv.osif.LinuxOS or a stand-in with the same methods).
  Raises:
    FileNotFoundError / PermissionError: no /dev/nvidiactl or no access to it.
    UnsupportedDriver: the module's branch has no declared layouts.
  """

  def __init__(self, osif: LinuxOS | None = None, ctl_path: str = "/dev/nvidiactl"):
    self.osif = osif or LinuxOS()
    self.ctl_fd = self.osif.open(ctl_path)
    self.version = check_version(self.osif, self.ctl_fd)
    self._handles = itertools.count(0xCF000001)
    self.root = 0
    self.root = self.alloc(0, rmapi.NV01_ROOT_CLIENT, handle=0)

  def new_handle(self) -> int:
    return next(self._handles)

  def _escape(self, fd: int, nr: int, params, ctype: str) -> None:
    self.osif.ioctl(fd, rmapi.ioc_rw(nr, ffi.sizeof(ctype)), params)

  def alloc(self, parent: int, hclass: int, params=None, handle: int | None = None) -> int:
    """Allocate an object of class `hclass` under `parent` (NV_ESC_RM_ALLOC with NVOS21); returns its handle.

    Args:
      params: a cffi pointer to the class's allocation parameters, or None for classes without any.
      handle: the new object's handle; None picks the next free one (0 lets RM choose, used for the root client).
    Raises:
      NVError: RM refused, e.g. NV_ERR_INVALID_ARGUMENT for a parameter block of the wrong size.
    """
    op = ffi.new("NVOS21_PARAMETERS *")
    op.hRoot = self.root
    op.hObjectParent = parent
    op.hObjectNew = self.new_handle() if handle is None else handle
    op.hClass = hclass
    if params is not None:
      op.pAllocParms = int(ffi.cast("uintptr_t", params))
      op.paramsSize = ffi.sizeof(params[0])
    self._escape(self.ctl_fd, rmapi.NV_ESC_RM_ALLOC, op, "NVOS21_PARAMETERS")
    if op.status != 0:
      raise NVError(f"RM alloc of class 0x{hclass:04x} under handle 0x{parent:x}", op.status)
    return op.hObjectNew

  def free(self, handle: int, parent: int | None = None) -> None:
    op = ffi.new("NVOS00_PARAMETERS *")
    op.hRoot = self.root
    op.hObjectParent = self.root if parent is None else parent
    op.hObjectOld = handle
    self._escape(self.ctl_fd, rmapi.NV_ESC_RM_FREE, op, "NVOS00_PARAMETERS")
    if op.status != 0:
      raise NVError(f"RM free of handle 0x{handle:x}", op.status)

  def control(self, obj: int, cmd: int, params, what: str = ""):
    """Run control `cmd` on object `obj` with the parameter block `params` (NVOS54); returns `params`."""
    op = ffi.new("NVOS54_PARAMETERS *")
    op.hClient = self.root
    op.hObject = obj
    op.cmd = cmd
    op.params = int(ffi.cast("uintptr_t", params))
    op.paramsSize = ffi.sizeof(params[0])
    self._escape(self.ctl_fd, rmapi.NV_ESC_RM_CONTROL, op, "NVOS54_PARAMETERS")
    if op.status != 0:
      raise NVError(f"RM control 0x{cmd:08x} {what} on handle 0x{obj:x}", op.status)
    return params

  def map_to_cpu(self, device: int, memory: int, length: int, dev_path: str, offset: int = 0,
                 flags: int = 0) -> tuple[int, int]:
    """CPU mapping of RM memory: NV_ESC_RM_MAP_MEMORY prepares an mmap context on a fresh fd of `dev_path`, then
    mmap(fd, length, 0) maps it (nv-mmap.c rejects a nonzero file offset; FACTS.md 1.2). `flags`: NVOS33 flags
    (e.g. the caching type). Returns (address, fd); keep the fd open as long as the mapping lives."""
    fd = self.osif.open(dev_path)
    op = ffi.new("nv_ioctl_nvos33_parameters_with_fd *")
    op.params.hClient = self.root
    op.params.hDevice = device
    op.params.hMemory = memory
    op.params.offset = offset
    op.params.length = length
    op.params.flags = flags
    op.fd = fd
    self._escape(self.ctl_fd, rmapi.NV_ESC_RM_MAP_MEMORY, op, "nv_ioctl_nvos33_parameters_with_fd")
    if op.params.status != 0:
      self.osif.close(fd)
      raise NVError(f"RM map of memory 0x{memory:x} ({length} bytes) to the CPU", op.params.status)
    return self.osif.mmap(length, fd), fd

  def close(self) -> None:
    if self.ctl_fd >= 0:
      self.osif.close(self.ctl_fd)  # closing the ctl fd frees the client and every object under it
      self.ctl_fd = -1
