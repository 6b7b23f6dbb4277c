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


class AMTimeout(AMError, TimeoutError):
  """A bounded poll ran out: names the register or memory word, what was expected and what was last read (a
  TimeoutError too, so generic timeout handling catches it).

  Attributes (set by queue waits, None otherwise):
    queue: the queue that did not finish (its description). waited: the value waited for. last: the last value
    reached. entries: the decoded IH entries (am.ip.ih.IVEntry) that arrived during the wait.
  """

  def __init__(self, message: str, queue: str | None = None, waited: int | None = None, last: int | None = None,
               entries=()):
    super().__init__(message)
    self.queue, self.waited, self.last, self.entries = queue, waited, last, list(entries)


class FirmwareLoadError(AMError):
  """The PSP or SMU refused or failed a step of the boot handshake (names the step and the status)."""


class AMFault(AMError):
  """The card reported a fault through the IH ring (page fault, illegal instruction, bad packet).

  Attributes:
    entries: the decoded IH entries (am.ip.ih.IVEntry) that describe it.
    address: the faulting GPU virtual address (page) of the first VM fault among them, else None.
    vmid, kind, write: that VM fault's VMID, kind ('page not present', 'write to a read-only page', ...) and whether
      the access was a write; None without a VM fault.
    queue: the queue whose wait saw the fault (its description), None if not raised by a queue wait.
  """

  def __init__(self, message: str, entries=(), queue: str | None = None):
    super().__init__(message)
    self.entries = list(entries)
    self.queue = queue
    vm = [e for e in self.entries if getattr(e, "fault_address", None) is not None]
    self.address = vm[0].fault_address if vm else None
    self.vmid = vm[0].vmid if vm else None
    self.kind = vm[0].fault_kind if vm else None
    self.write = vm[0].fault_write if vm else None
