"""The OS seam of AM: one PCI function, as sysfs presents it (config space, BARs as mmaps) or as a simulated card
presents the same things (am/simcard). The driver reaches hardware only through `PciFunction` and the apertures
it returns; nothing in the driver knows which implementation it got.

  BAR 0  VRAM (64-bit BAR; the whole of VRAM once resized through resource0_resize, as amdgpu_device_resize_fb_bar
         does in the kernel; AMDevice.resize_vram_bar)
  BAR 2  doorbells (64-bit BAR)
  BAR 5  registers (MMIO, 32-bit BAR; registers past its end go through the NBIO index/data pair, see Registers)

System memory the card reaches by DMA (`alloc_dma`): host pages, locked, with the bus address of each 4 KiB page
(DmaBuffer.bus_addresses), for PTEs with SYSTEM set (am/ip/vm.py).

Linux sysfs (Documentation/PCI/sysfs-pci.rst, Documentation/ABI/testing/sysfs-bus-pci): /sys/bus/pci/devices/<BDF>/
{config, resource<N>, resource<N>_resize, enable, driver, driver/unbind, vendor, device, revision, boot_vga,
drm/card<N>/card<N>-<connector>/status}; resource<N> files mmap the BAR.

Taking a function is in two steps so that nothing irreversible happens before the driver holds the card's lock and
has checked what the card is doing (am/mmio/claim.py): constructing a PciFunction only finds it; `enable()` detaches
a bound kernel driver (when allowed) and enables the function.
"""
from __future__ import annotations

import glob
import mmap
import os
import tempfile
from typing import Protocol

import numpy as np

from am.errors import DeviceBusy, UnsupportedDevice

SYSFS = "/sys/bus/pci/devices"
VRAM_BAR, DOORBELL_BAR, REGISTER_BAR = 0, 2, 5
PCI_VENDOR_ID, PCI_DEVICE_ID, PCI_REVISION_ID, PCI_CLASS_DEVICE = 0x00, 0x02, 0x08, 0x0A  # PCI config header


class Aperture(Protocol):
  """A mapped BAR: 32/64-bit accesses and byte copies at byte offsets."""
  size: int

  def read32(self, offset: int) -> int: ...

  def write32(self, offset: int, value: int) -> None: ...


class PciFunction(Protocol):
  bdf: str
  lock_dir: str   # where the per-BDF lock file lives (am.mmio.claim.DeviceLock)

  def sysfs_read(self, name: str) -> str | None:
    """The text of sysfs attribute `name` (relative to the function's directory), None when it does not exist."""

  def sysfs_glob(self, pattern: str) -> list[str]:
    """Paths (relative to the function's directory) matching the glob `pattern`."""

  def enable(self) -> None:
    """Detach a bound kernel driver (where allowed) and enable the function; called with the card's lock held."""

  def config_read(self, offset: int, size: int) -> int: ...

  def bar_size(self, bar: int) -> int: ...

  def map_bar(self, bar: int) -> Aperture: ...

  def resize_bar(self, bar: int, size: int) -> int:
    """Resize BAR `bar` to the smallest size it offers that holds `size` bytes; every mapping of the function is
    dropped first (the caller maps again). Returns the new size. Raises UnsupportedDevice when it cannot."""

  def alloc_dma(self, size: int) -> DmaBuffer:
    """`size` bytes (rounded up to 4 KiB pages) of zeroed host memory the card can read and write by DMA."""

  def close(self) -> None: ...


class MemoryAperture:
  """A BAR (or any memory) as a numpy byte array: VRAM, doorbells on hardware, simulated VRAM."""

  def __init__(self, array: np.ndarray):
    self.bytes = array.view(np.uint8)
    self.size = self.bytes.size

  def _check(self, offset: int, size: int) -> None:
    if offset < 0 or offset + size > self.size:
      raise ValueError(f"access [0x{offset:x}, +0x{size:x}) outside the aperture of 0x{self.size:x} bytes")

  def read32(self, offset: int) -> int:
    self._check(offset, 4)
    return int(self.bytes[offset:offset + 4].view(np.uint32)[0])

  def write32(self, offset: int, value: int) -> None:
    self._check(offset, 4)
    self.bytes[offset:offset + 4].view(np.uint32)[0] = value

  def read64(self, offset: int) -> int:
    self._check(offset, 8)
    return int(self.bytes[offset:offset + 8].view(np.uint64)[0])

  def write64(self, offset: int, value: int) -> None:
    self._check(offset, 8)
    self.bytes[offset:offset + 8].view(np.uint64)[0] = value

  def read(self, offset: int, size: int) -> bytes:
    self._check(offset, size)
    return self.bytes[offset:offset + size].tobytes()

  def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
    self._check(offset, len(data))
    self.bytes[offset:offset + len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)

class DmaBuffer(MemoryAperture):
  """Host memory for the GPU: the host reads and writes it as a MemoryAperture; `bus_addresses[i]` is the bus
  address of its 4 KiB page i (what a system PTE holds)."""

  def __init__(self, array: np.ndarray, bus_addresses: list[int], keep=None):
    super().__init__(array)
    self.bus_addresses = bus_addresses
    self.keep = keep   # what must stay alive while the card may access the pages (a mapping)


def rebar_choice(bdf: str, bar: int, bitmap_text: str | None, size: int, current: int) -> int:
  """The bit to write to resource<bar>_resize for the smallest offered size >= `size` bytes (sysfs-bus-pci: the
  file reads as a hex bitmap, bit n = 2**n MiB, the PCIe Resizable BAR capability's encoding).

  Raises:
    UnsupportedDevice: no resize file (no Resizable BAR capability, or it is off) or no offered size is large enough;
      names the sizes and what to do."""
  need = f"VRAM is {size >> 20} MiB but BAR {bar} of {bdf} maps {current >> 20} MiB"
  if bitmap_text is None:
    raise UnsupportedDevice(f"{need} and the function offers no resizing (no resource{bar}_resize in sysfs): turn on "
                            "'Above 4G Decoding' and 'Re-Size BAR Support' in the firmware setup")
  bitmap = int(bitmap_text.strip() or "0", 16)
  offered = [n for n in range(64) if bitmap >> n & 1]
  fits = [n for n in offered if (1 << (n + 20)) >= size]
  if not fits:
    sizes = ", ".join(f"{1 << n} MiB" for n in offered) or "none"
    raise UnsupportedDevice(f"{need}; resource{bar}_resize offers {sizes}, none large enough")
  return fits[0]


PAGEMAP_PFN = (1 << 55) - 1     # /proc/self/pagemap: bits 0-54 page frame number, bit 63 page present
PAGEMAP_PRESENT = 1 << 63       # (Documentation/admin-guide/mm/pagemap.rst)


def default_lock_dir() -> str:
  """/run/lock (the FHS place for device locks) where this user can write it, else the temp directory."""
  return "/run/lock" if os.access("/run/lock", os.W_OK) else tempfile.gettempdir()


class SysfsPciFunction:
  """A real PCI function through sysfs. Constructing it only finds the function; AMDevice takes the lock, checks
  display use, then calls enable().

  Args:
    bdf: domain:bus:device.function, e.g. 0000:03:00.0.
    unbind: let enable() unbind a bound kernel driver (amdgpu); without it a bound driver is an error.
    lock_dir: directory of the per-BDF lock files (default /run/lock, else the temp directory).

  Raises:
    UnsupportedDevice: no such function in sysfs.
  """

  def __init__(self, bdf: str, unbind: bool = False, lock_dir: str | None = None):
    self.bdf = bdf
    self.unbind = unbind
    self.lock_dir = lock_dir or default_lock_dir()
    self.path = os.path.join(SYSFS, bdf)
    if not os.path.isdir(self.path):
      raise UnsupportedDevice(f"no PCI function {bdf} in {SYSFS}; `lspci -D -d 1002:` lists AMD functions")
    self._maps: dict[int, mmap.mmap] = {}

  def sysfs_read(self, name: str) -> str | None:
    try:
      with open(os.path.join(self.path, name)) as f:
        return f.read()
    except OSError:
      return None

  def sysfs_glob(self, pattern: str) -> list[str]:
    return [os.path.relpath(p, self.path) for p in glob.glob(os.path.join(self.path, pattern))]

  def enable(self) -> None:
    """Raises:
      DeviceBusy: a kernel driver is bound and unbind is False (names it and the flag to pass)."""
    driver = os.path.join(self.path, "driver")
    if os.path.exists(driver):
      name = os.path.basename(os.readlink(driver))
      if not self.unbind:
        raise DeviceBusy(f"{self.bdf} is bound to {name}; pass --unbind (or unbind=True) to take it from the "
                         f"kernel driver")
      with open(os.path.join(driver, "unbind"), "w") as f:
        f.write(self.bdf)
    with open(os.path.join(self.path, "enable"), "w") as f:
      f.write("1")

  def config_read(self, offset: int, size: int) -> int:
    with open(os.path.join(self.path, "config"), "rb") as f:
      f.seek(offset)
      return int.from_bytes(f.read(size), "little")

  def bar_size(self, bar: int) -> int:
    return os.path.getsize(os.path.join(self.path, f"resource{bar}"))

  def map_bar(self, bar: int) -> MemoryAperture:
    if bar not in self._maps:
      fd = os.open(os.path.join(self.path, f"resource{bar}"), os.O_RDWR | os.O_SYNC)
      try:
        self._maps[bar] = mmap.mmap(fd, self.bar_size(bar), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
      finally:
        os.close(fd)
    return MemoryAperture(np.frombuffer(self._maps[bar], dtype=np.uint8))

  def resize_bar(self, bar: int, size: int) -> int:
    """Through resource<bar>_resize (sysfs-bus-pci): the smallest offered size that holds `size` bytes. The kernel
    wants no driver bound (enable() detached it) and no mapping of resource<N> alive, so every mapping of this
    function is closed first; the caller must hold none of them (AMDevice drops its apertures).

    Raises:
      UnsupportedDevice: no such size (rebar_choice), a mapping still in use, or the kernel refused the write
        (a bridge window too small for the new size, a driver still bound)."""
    current = self.bar_size(bar)
    bit = rebar_choice(self.bdf, bar, self.sysfs_read(f"resource{bar}_resize"), size, current)
    try:
      self.close()
    except BufferError as e:
      raise UnsupportedDevice(f"cannot resize BAR {bar} of {self.bdf}: a mapping of it is still in use ({e})") from e
    try:
      with open(os.path.join(self.path, f"resource{bar}_resize"), "w") as f:
        f.write(f"{bit}\n")
    except OSError as e:
      raise UnsupportedDevice(f"the kernel refused to resize BAR {bar} of {self.bdf} to {1 << bit} MiB "
                              f"({e.strerror}): the bridge above it may lack the address space (see sysfs-bus-pci on "
                              f"soft-removing peer devices), or a driver is still bound") from e
    return self.bar_size(bar)

  def alloc_dma(self, size: int) -> DmaBuffer:
    """Anonymous shared pages, touched and locked (mlock) so they stay resident at one physical address, which
    /proc/self/pagemap gives. That is the bus address only where no IOMMU translates the card's DMA (its IOMMU group
    type 'identity', or no IOMMU): AM sets up no IOMMU mapping of its own.

    Raises:
      UnsupportedDevice: an IOMMU translates the card's DMA, the page frame numbers are hidden (reading them needs
        CAP_SYS_ADMIN), or the pages cannot be locked (RLIMIT_MEMLOCK)."""
    import ctypes
    iommu = self.sysfs_read("iommu_group/type")
    if iommu is not None and iommu.strip() != "identity":
      raise UnsupportedDevice(f"{self.bdf} sits behind an IOMMU in {iommu.strip()!r} mode; system memory for AM "
                              "needs it in passthrough (iommu=pt on the kernel command line) or off")
    pages = -(-size // 4096)
    m = mmap.mmap(-1, pages * 4096, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, mmap.PROT_READ | mmap.PROT_WRITE)
    array = np.frombuffer(m, dtype=np.uint8)
    array[::4096] = 0   # touch every page
    libc = ctypes.CDLL(None, use_errno=True)
    address = ctypes.addressof(ctypes.c_char.from_buffer(m))
    if libc.mlock(ctypes.c_void_p(address), ctypes.c_size_t(pages * 4096)):
      raise UnsupportedDevice(f"mlock of {pages * 4096} bytes failed: {os.strerror(ctypes.get_errno())} (raise "
                              "RLIMIT_MEMLOCK: ulimit -l)")
    with open("/proc/self/pagemap", "rb") as f:
      f.seek(address // 4096 * 8)
      entries = np.frombuffer(f.read(pages * 8), dtype=np.uint64)
    pfns = [int(e) & PAGEMAP_PFN for e in entries]
    if not all(int(e) & PAGEMAP_PRESENT for e in entries) or not all(pfns):
      raise UnsupportedDevice("/proc/self/pagemap hides the page frame numbers: run as root (CAP_SYS_ADMIN) to "
                              "give the card system memory")
    return DmaBuffer(array, [pfn * 4096 for pfn in pfns], keep=m)

  def close(self) -> None:
    for m in self._maps.values():
      m.close()
    self._maps = {}


def amd_functions() -> list[str]:
  """BDFs of the AMD display-class functions in sysfs (empty where there is none or no sysfs)."""
  out = []
  if not os.path.isdir(SYSFS):
    return out
  for bdf in sorted(os.listdir(SYSFS)):
    try:
      with open(os.path.join(SYSFS, bdf, "vendor")) as f:
        vendor = int(f.read(), 16)
      with open(os.path.join(SYSFS, bdf, "class")) as f:
        cls = int(f.read(), 16)
    except OSError:
      continue
    if vendor == 0x1002 and cls >> 16 == 0x03:
      out.append(bdf)
  return out
