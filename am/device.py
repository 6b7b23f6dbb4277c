"""AMDevice: one Navi31/Navi48 card taken over from user space, booted IP block by IP block.

Boot order (amdgpu_device.c amdgpu_device_ip_init for SOC21/SOC24: GMC's hw_init runs inside the sw_init pass,
then COMMON and IH in phase 1, the PSP firmware load, then the rest in IP order):

  discover   MP0 C2PMSG_33 bit 31 (IFWI done), RCC_CONFIG_MEMSIZE, the discovery table at VRAM end - 64 KiB
  soc        NBIO: doorbell routing (S2A entries), doorbell aperture, self-ring aperture
  gmc        GC hub and MMHUB: FB/system aperture, VMID0 GART page table, TLB flush (user VMIDs 1-15 with 4-level
             page tables are made later, on demand: Gmc.create_vm, am/ip/vm.py)
  ih         IH ring in VRAM with write-pointer write-back
  psp        bootloader components -> sOS -> KM ring -> TOC -> TMR -> IP firmware -> RLC autoload
  smu        PMFW alive (MP1_FIRMWARE_FLAGS), version, driver table, feature enable
  gfx        RLC autoload complete, MEC RS64 unhalted, one compute queue through MQD + HQD registers (no MES, no KIQ)
  sdma       SDMA engine unhalted, one ring with doorbell

GPU states handled: a cold card (sOS not alive: the bootloader path); a card left running by amdgpu or by an
earlier AM run, torn down or not (sOS alive, C2PMSG_81 != 0: the bootloader stages are skipped as psp_v13_0/14_0 do,
the KM ring is created again, an HQD still active is dequeued before it is programmed as gfx_v11_0_kiq_init_register
does, the IH and SDMA rings are disabled before they are programmed); a BAR 0 smaller than VRAM (resized first, as
amdgpu_device_resize_fb_bar does). A stage that fails tears down the stages started before it (and itself), in
reverse, so nothing stays half-initialised and the card boots again. Nothing here knows whether the PciFunction is
real or simulated. AM_DEBUG >= 1 logs each stage and the teardown (am/debug.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import import_module

from am import debug, discovery
from am.caps import Capabilities, from_discovery
from am.errors import AMError, UnsupportedDevice
from am.ip.base import wait_for
from am.mmio.claim import DeviceLock, refuse_display
from am.mmio.pci import DOORBELL_BAR, PCI_DEVICE_ID, PCI_REVISION_ID, PCI_VENDOR_ID, REGISTER_BAR, VRAM_BAR, \
  PciFunction
from am.mmio.regs import RegisterBlock

SUPPORTED_IDS = {0x744C: "navi31 (Radeon RX 7900 XT/XTX)", 0x7550: "navi48 (Radeon RX 9070/9070 XT)"}
mmMP0_SMN_C2PMSG_33 = 0x16061   # amdgpu_discovery.c: read before the register bases are known
mmRCC_CONFIG_MEMSIZE = 0xDE3    # amdgpu_discovery.c
PCIE_INDEX_SEG, PCIE_INDEX_OFFSET = 1, 0   # regBIF_BX_PF0_RSMU_INDEX / _DATA (nbio_v4_3.c, nbif_v6_3_1.c
PCIE_DATA_OFFSET = 1                        # get_pcie_index_offset / get_pcie_data_offset), segment 1, dwords 0/1


class Mmio:
  """The register BAR with amdgpu's indirect path for what lies past its end (amdgpu_device_indirect_rreg/_wreg:
  the byte address goes to the NBIO PCIE index register, the value through the data register) and for SMN
  addresses (RREG32_PCIE)."""

  def __init__(self, bar, nbio_bases: tuple[int, ...] = ()):
    self.bar = bar
    self.size = 0 if bar is None else bar.size
    self.nbio_bases = nbio_bases

  def _index_data(self) -> tuple[int, int]:
    if not self.nbio_bases:
      raise UnsupportedDevice("indirect register access before IP discovery gave the NBIO bases")
    base = self.nbio_bases[PCIE_INDEX_SEG]
    return (base + PCIE_INDEX_OFFSET) * 4, (base + PCIE_DATA_OFFSET) * 4

  def read32(self, offset: int) -> int:
    if offset < self.size:
      return self.bar.read32(offset)
    return self.smn_read(offset)

  def write32(self, offset: int, value: int) -> None:
    if offset < self.size:
      self.bar.write32(offset, value)
    else:
      self.smn_write(offset, value)

  def smn_read(self, address: int) -> int:
    index, data = self._index_data()
    self.bar.write32(index, address)
    self.bar.read32(index)  # read back: posts the index write before the data access (amdgpu does the same)
    return self.bar.read32(data)

  def smn_write(self, address: int, value: int) -> None:
    index, data = self._index_data()
    self.bar.write32(index, address)
    self.bar.read32(index)
    self.bar.write32(data, value)


@dataclass
class StageReport:
  name: str
  seconds: float
  verified: list[str] = field(default_factory=list)


class AMDevice:
  """Taking the card (in this order, nothing irreversible before the checks): the exclusive per-BDF lock, the PCI
  id, display use, then pci.enable() (which detaches a bound amdgpu only where the PciFunction allows it). The lock
  is held until fini() or close() (or this process's exit).

  Args:
    pci: the PCI function (am.mmio.pci.SysfsPciFunction, or a simulated card's).
    firmware_dir: where the firmware files are (default $AM_FIRMWARE_DIR, else /lib/firmware/amdgpu).
    allow_display: take a card that drives a display (boot_vga, a connected connector) anyway.

  Raises:
    DeviceBusy: another driver instance holds the card (names the BDF and its PID), or a kernel driver is bound.
    UnsupportedDevice: not an AMD function, or a device id AM does not drive (names it and the supported list).
    DisplayInUse: the card drives a display and allow_display is False (names what was found and the override).
  """

  def __init__(self, pci: PciFunction, firmware_dir: str | None = None, allow_display: bool = False):
    self.pci = pci
    self.firmware_dir = firmware_dir
    self.reports: list[StageReport] = []
    self.blocks: list = []
    self.lock = DeviceLock(pci.lock_dir, pci.bdf)
    try:
      self._take(allow_display)
    except BaseException:
      self.lock.release()
      raise

  def _take(self, allow_display: bool) -> None:
    pci = self.pci
    vendor, device = pci.config_read(PCI_VENDOR_ID, 2), pci.config_read(PCI_DEVICE_ID, 2)
    if vendor != 0x1002 or device not in SUPPORTED_IDS:
      supported = ", ".join(f"1002:{d:04x} {n}" for d, n in SUPPORTED_IDS.items())
      raise UnsupportedDevice(f"PCI function {pci.bdf} is {vendor:04x}:{device:04x}; AM drives {supported}")
    refuse_display(pci, allow_display)
    pci.enable()
    self.revision = pci.config_read(PCI_REVISION_ID, 1)
    self.mmio = Mmio(None)
    self._map_bars()

  def _map_bars(self) -> None:
    self.vram = self.pci.map_bar(VRAM_BAR)
    self.doorbells = self.pci.map_bar(DOORBELL_BAR)
    self.mmio.bar = self.pci.map_bar(REGISTER_BAR)
    self.mmio.size = self.mmio.bar.size

  # ---- discovery ----
  def read_discovery(self) -> discovery.Discovery:
    """amdgpu_discovery_read_binary_from_mem: wait for IFWI, size VRAM, read the table at its end."""
    wait_for(lambda: self.mmio.read32(mmMP0_SMN_C2PMSG_33 * 4), 0x80000000, 0x80000000,
             "MP0 C2PMSG_33 bit 31 (IFWI init done)")
    self.vram_size = self.mmio.read32(mmRCC_CONFIG_MEMSIZE * 4) << 20
    if not self.vram_size:
      raise UnsupportedDevice(f"RCC_CONFIG_MEMSIZE of {self.pci.bdf} reads 0: the VBIOS has not initialised the card")
    if self.vram_size > self.vram.size:
      self.resize_vram_bar()
    pos = self.vram_size - discovery.DISCOVERY_TMR_OFFSET
    return discovery.parse(self.vram.read(pos, discovery.DISCOVERY_TMR_SIZE))

  def resize_vram_bar(self) -> None:
    """amdgpu_device_resize_fb_bar: grow BAR 0 to the smallest size the card offers that covers VRAM. Every BAR
    mapping is dropped first (sysfs-bus-pci: raw users of resourceN must be gone before a resize) and made again.

    Raises:
      UnsupportedDevice: the card offers no such size or the kernel refused (names the sizes and what to do)."""
    before = self.vram.size
    self.vram = self.doorbells = self.mmio.bar = None   # the PciFunction can only unmap what nobody holds
    try:
      self.pci.resize_bar(VRAM_BAR, self.vram_size)
    finally:
      self._map_bars()
    if self.vram.size < self.vram_size:
      raise UnsupportedDevice(f"BAR 0 of {self.pci.bdf} is {self.vram.size >> 20} MiB after the resize, VRAM is "
                              f"{self.vram_size >> 20} MiB")
    debug.log(debug.STAGES, f"BAR 0 of {self.pci.bdf} resized from {before >> 20} to {self.vram.size >> 20} MiB")

  def regs(self, ip: str, instance: int = 0) -> RegisterBlock:
    """The register block of discovery IP `ip` (GC, MMHUB, OSSSYS, MP0, MP1, NBIF, HDP, SMUIO, ATHUB)."""
    module = import_module(f"am.generated.{self.caps.register_modules[ip]}")
    return RegisterBlock(module, self.mmio, self.disc.ip(ip, instance).bases)

  def discover(self) -> list[str]:
    self.disc = self.read_discovery()
    self.caps: Capabilities = from_discovery(self.disc)
    self.mmio.nbio_bases = self.disc.ip("NBIF").bases
    self.gc, self.mmhub, self.oss = self.regs("GC"), self.regs("MMHUB"), self.regs("OSSSYS")
    self.mp0, self.mp1, self.nbio = self.regs("MP0"), self.regs("MP1"), self.regs("NBIF")
    c = self.caps
    return [f"discovery table at VRAM 0x{self.vram_size - discovery.DISCOVERY_TMR_OFFSET:x} "
            f"(VRAM {self.vram_size >> 20} MiB): {len(self.disc.ips)} IP instances, checksums ok",
            f"{c.asic} {c.gfx_target}: GC {'.'.join(map(str, self.disc.version_of('GC')))}, {c.num_se} SE, "
            f"{c.num_cu} CU, wave{c.wave_size}, PTE format {c.pte_format}"]

  # ---- boot ----
  def boot(self, on_stage=None) -> list[StageReport]:
    """Bring the card up; `on_stage(report)` is called after each stage.

    Raises:
      AMError subclasses: the stage that failed says what it waited for or what the card refused; the stages begun
        before it have been torn down again (a note on the exception lists them), so the card boots again.
    """
    from am.ip import gfx, gmc, ih, psp, sdma, smu, soc
    if self.blocks:
      raise AMError(f"{self.pci.bdf} is booted already; fini() it first")
    self._stage("discover", self.discover, on_stage)
    self.soc, self.gmc, self.ih = soc.Soc(self), gmc.Gmc(self), ih.Ih(self)
    self.psp, self.smu, self.gfx, self.sdma = psp.Psp(self), smu.Smu(self), gfx.Gfx(self), sdma.Sdma(self)
    blocks = [self.soc, self.gmc, self.ih, self.psp, self.smu, self.gfx, self.sdma]
    for block in blocks:
      block.init_sw()
    for block in blocks:
      self.blocks.append(block)   # before init_hw: a block that fails halfway is torn down too
      try:
        self._stage(block.name, block.init_hw, on_stage)
      except BaseException as e:
        self._roll_back(e)
        raise
    return self.reports

  def _roll_back(self, error: BaseException) -> None:
    """fini_hw of every block begun, in reverse, after `error` stopped the boot; failures are noted on `error`."""
    names = [block.name for block in self.blocks]
    failed = []
    for block in reversed(self.blocks):
      try:
        block.fini_hw()
      except Exception as e:   # noqa: BLE001 (go on: the other blocks still need their teardown)
        failed.append(f"{block.name}.fini_hw: {e}")
    self.blocks = []
    note = f"AM tore down the stages it had begun ({', '.join(reversed(names))}); the card can be booted again"
    if failed:
      note += "; teardown failures: " + "; ".join(failed)
    error.add_note(note)
    debug.log(debug.STAGES, f"boot of {self.pci.bdf} failed: {error}; {note}")

  def _stage(self, name: str, fn, on_stage) -> None:
    start = time.perf_counter()
    verified = fn()
    report = StageReport(name, time.perf_counter() - start, verified or [])
    self.reports.append(report)
    debug.log(debug.STAGES, f"[{name}] {report.seconds * 1000:.1f} ms" + "".join(f"\n    {v}" for v in report.verified))
    if on_stage:
      on_stage(report)

  def fini(self) -> None:
    """Tear down in reverse order so that the card boots again (queues unmapped, engines halted), then release the
    card's lock: another AMDevice (here or in another process) may take it."""
    blocks, self.blocks = self.blocks, []
    try:
      for block in reversed(blocks):
        block.fini_hw()
      if blocks:
        debug.log(debug.STAGES, f"{self.pci.bdf} torn down: {', '.join(b.name for b in reversed(blocks))}")
    finally:
      self.lock.release()

  def close(self) -> None:
    """fini() if the card was booted, else just release the card's lock (idempotent)."""
    self.fini()
