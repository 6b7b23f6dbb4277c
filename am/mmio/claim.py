"""Taking a card: the bad-input rules AM checks before it touches a PCI function (issue 6).

  lock     one driver instance per card: an flock on <lock_dir>/am-<bdf>.lock, never waited on. flock(2) locks
           belong to the open file description, so a second open in the same process conflicts too, and the kernel
           drops the lock when the holder exits or dies. The holder's PID is written into the file for the error.
  display  a card that drives a display is refused unless asked: sysfs `boot_vga` == 1 (the firmware's boot
           console, drivers/pci/pci-sysfs.c) or a DRM connector whose `status` reads "connected"
           (drivers/gpu/drm/drm_sysfs.c: /sys/bus/pci/devices/<BDF>/drm/card<N>/card<N>-<connector>/status).
           Connectors exist only while amdgpu is bound, so this runs before the function is taken from it.

Both go through the PciFunction seam (lock_dir, sysfs_read, sysfs_glob), so a simulated card answers the same files.
"""
from __future__ import annotations

import fcntl
import os

from am.errors import AMError, DeviceBusy, DisplayInUse

DRM_CONNECTOR_STATUS = "drm/card*/card*-*/status"


def lock_path(lock_dir: str, bdf: str) -> str:
  return os.path.join(lock_dir, f"am-{bdf.replace(':', '_')}.lock")


def _holder(fd: int) -> str:
  """Who holds the lock, from the PID its holder wrote (and /proc/<pid>/comm where readable)."""
  os.lseek(fd, 0, os.SEEK_SET)
  text = os.read(fd, 64).decode(errors="replace").strip()
  if not text.isdigit():
    return "a process that has not written its PID yet"
  pid = int(text)
  if pid == os.getpid():
    return f"PID {pid} (this process: another AMDevice on the same card is still open)"
  try:
    with open(f"/proc/{pid}/comm") as f:
      return f"PID {pid} ({f.read().strip()})"
  except OSError:
    return f"PID {pid}"


class DeviceLock:
  """The exclusive per-card lock, held from construction until release() (or the holder's exit).

  Args:
    lock_dir: directory of the lock files (the PciFunction's lock_dir).
    bdf: the card's PCI address; names the lock file and the errors.

  Raises:
    DeviceBusy: another holder has it (names the BDF, the holder's PID and the lock file); nothing waits.
    AMError: the lock file cannot be created (names the path).
  """

  def __init__(self, lock_dir: str, bdf: str):
    self.bdf = bdf
    self.path = lock_path(lock_dir, bdf)
    try:
      # no O_TRUNC: the PID of a current holder must survive our failed attempt
      self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise AMError(f"cannot create the lock file {self.path} for {bdf} ({e.strerror}); run as a user that can "
                    f"write {lock_dir}") from e
    try:
      fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
      holder = _holder(self.fd)
      self.release()
      raise DeviceBusy(f"{bdf} is already taken by {holder} (lock {self.path}); close that driver instance or "
                       f"end that process first: AM does not share a card and does not wait for one") from e
    os.ftruncate(self.fd, 0)
    os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

  @property
  def held(self) -> bool:
    return self.fd is not None

  def release(self) -> None:
    """Drop the lock (idempotent). The file stays: unlinking a lock file races with a process opening it."""
    if self.fd is None:
      return
    fd, self.fd = self.fd, None
    os.close(fd)

  def __del__(self):
    self.release()


def display_use(pci) -> list[str]:
  """What shows that `pci` drives a display: boot_vga == 1 and connected DRM connectors (empty: none)."""
  found = []
  boot_vga = pci.sysfs_read("boot_vga")
  if boot_vga is not None and boot_vga.strip() == "1":
    found.append("boot_vga = 1 (the firmware's boot display)")
  for status_file in sorted(pci.sysfs_glob(DRM_CONNECTOR_STATUS)):
    status = pci.sysfs_read(status_file)
    if status is not None and status.strip() == "connected":
      connector = os.path.basename(os.path.dirname(status_file))
      found.append(f"connector {connector} connected ({status_file})")
  return found


def refuse_display(pci, allow_display: bool) -> None:
  """Raises DisplayInUse when `pci` drives a display and allow_display is False."""
  found = display_use(pci)
  if found and not allow_display:
    raise DisplayInUse(f"{pci.bdf} drives a display: {'; '.join(found)}. Taking it blanks that screen and takes it "
                       f"from the desktop; pass allow_display=True (`sov am ... --allow-display`) to take it "
                       f"anyway, or move the display to another GPU")
