"""Exceptions of the AM driver. Each says what went wrong with the values involved and what to do next."""
from __future__ import annotations


class AMError(RuntimeError):
  """Base class of everything the AM driver raises about a card."""


class UnsupportedDevice(AMError):
  """A PCI function AM does not drive (vendor/device id, or an IP version the driver has no code for)."""


class DeviceBusy(AMError):
  """Another process holds the card's lock, or a kernel driver is bound and unbinding was not asked for."""


class DisplayInUse(AMError):
  """The card drives a display (boot_vga, a connected DRM connector) and taking it was not asked for explicitly."""


class DiscoveryError(AMError):
  """The IP-discovery table is missing or corrupt (signature, checksum, size)."""


class AMTimeout(AMError):
  """A bounded poll ran out: names the register or memory word, what was expected and what was last read."""


class FirmwareLoadError(AMError):
  """The PSP or SMU refused or failed a step of the boot handshake (names the step and the status)."""


class AMFault(AMError):
  """The card reported a fault through the IH ring (page fault, illegal instruction, bad packet).

  Attributes:
    entries: the decoded IH entries (am.ip.ih.IVEntry) that describe it.
    address: the faulting GPU virtual address (page) of the first VM fault among them, else None.
  """

  def __init__(self, message: str, entries=()):
    super().__init__(message)
    self.entries = list(entries)
    addresses = [e.fault_address for e in self.entries if getattr(e, "fault_address", None) is not None]
    self.address = addresses[0] if addresses else None
