"""A simulated Navi31 or Navi48, presented at the OS seam exactly as am.mmio.pci.SysfsPciFunction presents a real one:
PCI config space, BAR 0 (VRAM, numpy), BAR 2 (doorbells) and BAR 5 (registers with modelled side effects).

What the card does before the driver arrives (what the VBIOS/IFWI leaves): the discovery table at VRAM end -
DISCOVERY_TMR_OFFSET (amdgpu_discovery.c), RCC_CONFIG_MEMSIZE in MiB, MP0 C2PMSG_33 bit 31 (IFWI done), the PSP
bootloader ready (C2PMSG_35 = 0x80000000), GCMC/MMMC_VM_FB_LOCATION_BASE/TOP (VRAM in the MC space at
0x8000000000, read by gfxhub/mmhub get_fb_location). Everything else is zero until the driver writes it.

Models (one module each): psp.py (bootloader, sOS, KM ring, firmware signatures and order), engines.py (SMU
mailbox, IH writer), mec.py (HQDs and the PM4 executor), shader.py (DISPATCH_DIRECT on the am/sim wave emulator),
sdma.py (the SDMA engine), gpuvm.py (the GC hub: page walks of every VMID, TLB, VM faults; the card's physical
memory), hazards.py (dispatches a missing CS_PARTIAL_FLUSH would let overlap on hardware: `card.hazards`).
`card.log` records every step the card accepted or refused, with the reason, as a hardware trace would.
MODELLED.md lists what each model covers, from which source, and what it leaves out.

System memory: `alloc_dma` hands out pages of a simulated host pool (SimHostMemory) at bus addresses from
gpuvm.DMA_BASE; the card reaches them through PTEs with SYSTEM set.

Simulated time: the card is passive; it runs when the host touches it, and its shader engines get the host time that
passed. A doorbell runs its queue at once, a dispatch for up to one time slice (shader.SLICE_SECONDS) on the wave
emulator; every host read through BAR 0 or BAR 5 (the host polling a fence, a register, the IH write pointer) first
gives each busy queue a slice as long as the host time since the card last ran, at most SLICE_SECONDS and at least one
quantum of shader.QUANTUM wave instructions, and engines stalled on a wait look at their word again (`tick`: the
host may have written it; hardware polls it every POLL_INTERVAL). So a polling host shares its time about evenly with
the card, and a kernel that never ends keeps its queue busy for as long as the host polls, until
CP_HQD_DEQUEUE_REQUEST stops it (mec.py).

HDP: the flush register is remapped into the register BAR's MMIO hole (nbio_v4_3.c / nbif_v6_3_1.c: rmmio_remap
reg_offset = MMIO_REG_HOLE_OFFSET = 0x80000 - PAGE_SIZE, BIF_BX0_REMAP_HDP_MEM_FLUSH_CNTL = that offset +
KFD_MMIO_REMAP_HDP_MEM_FLUSH_CNTL (0)); a write there counts as a flush (`hdp_flushes`) once the remap register
points at it. GPU_HDP_FLUSH_REQ sets the same bits in GPU_HDP_FLUSH_DONE (what SDMA's HDP-flush POLL_REGMEM waits
for). The HDP write cache itself is not modelled: host writes through BAR 0 are visible at once.

GPU clock (RELEASE_MEM / COPY_DATA / SDMA timestamps): a 100 MHz counter from the host's monotonic clock
(soc21_get_xclk: the reference clock is 100 MHz, reference_freq 10000 in 10 kHz units), strictly increasing.
"""
from __future__ import annotations

import fnmatch
import os
import tempfile
import time
from importlib import import_module

import numpy as np

from am.caps import from_discovery
from am.discovery import DISCOVERY_TMR_OFFSET, parse
from am.mmio.pci import DOORBELL_BAR, DmaBuffer, MemoryAperture, PCI_DEVICE_ID, PCI_REVISION_ID, PCI_VENDOR_ID, \
  REGISTER_BAR, VRAM_BAR, rebar_choice
from am.mmio.regs import RegisterBlock
from am.simcard.cards import AMD_VENDOR, CARDS
from am.simcard.discovery_table import build
from am.simcard.hazards import RAISE_ENV
from am.simcard.regfile import SimRegisters

REGISTER_BAR_SIZE = 1 << 20
MMIO_REG_HOLE_OFFSET = 0x80000 - 4096   # nbio_v4_3.c / nbif_v6_3_1.c
GPU_CLOCK_HZ = 100_000_000
DOORBELL_BAR_SIZE = 2 << 20
FB_BASE = 0x8000000000   # MC address of VRAM as the simulated VBIOS leaves it
HOST_POOL = 64 << 20     # bytes of simulated host memory the card can reach by DMA


class SimDoorbells(MemoryAperture):
  """BAR 2: stores what is written and tells the card, when the doorbell aperture is on."""

  def __init__(self, card):
    super().__init__(np.zeros(DOORBELL_BAR_SIZE, np.uint8))
    self.card = card

  def write32(self, offset: int, value: int) -> None:
    super().write32(offset, value)
    self.card.doorbell(offset, value)

  def write64(self, offset: int, value: int) -> None:
    super().write64(offset, value)
    self.card.doorbell(offset, value)


class SimHostMemory:
  """The simulated host's DMA-able memory: one zeroed pool at bus addresses DMA_BASE.., handed out in pages."""

  def __init__(self, size: int = HOST_POOL):
    from am.simcard.gpuvm import DMA_BASE
    self.base = DMA_BASE
    self.bytes = np.zeros(size, np.uint8)
    self.top = 0

  def alloc(self, size: int) -> DmaBuffer:
    size = -(-size // 4096) * 4096
    if size <= 0 or self.top + size > self.bytes.size:
      raise ValueError(f"DMA allocation of {size} bytes: the simulated host pool has {self.bytes.size - self.top} "
                       f"of {self.bytes.size} bytes left")
    at = self.top
    self.top += size
    return DmaBuffer(self.bytes[at:at + size], [self.base + at + i for i in range(0, size, 4096)])

  def holds(self, address: int, size: int) -> bool:
    return self.base <= address and address + size <= self.base + self.top


class HostVram(MemoryAperture):
  """BAR 0 as the host maps it (or `array`, a view of VRAM the host maps otherwise): each read first lets the busy
  engines run (SimCard.tick)."""

  def __init__(self, card, array: np.ndarray | None = None):
    super().__init__(card.vram.bytes if array is None else array)
    self.card = card

  def read32(self, offset: int) -> int:
    self.card.tick()
    return super().read32(offset)

  def read64(self, offset: int) -> int:
    self.card.tick()
    return super().read64(offset)

  def read(self, offset: int, size: int) -> bytes:
    self.card.tick()
    return super().read(offset, size)


class HostRegisters:
  """BAR 5 as the host maps it: the card's register file; each read first lets the busy engines run."""

  def __init__(self, card):
    self.card, self.regs = card, card.regs
    self.size = card.regs.size

  def read32(self, offset: int) -> int:
    self.card.tick()
    return self.regs.read32(offset)

  def write32(self, offset: int, value: int) -> None:
    self.regs.write32(offset, value)


class SimCard:
  """Args:
    name: 'navi31' or 'navi48'.
    firmware_dir: the firmware the card's PSP accepts (its "signatures"); default as am.firmware.locate.
    lock_dir: where drivers lock this card (am.mmio.claim); default a directory of this card object's own, so two
      SimCards are two cards. Cards built with the same lock_dir and name are one card, also across processes.

    vram_bar: the size BAR 0 has before the driver resizes it (default: all of VRAM, as after a resize). The card
      offers the resizable-BAR sizes from 256 MiB to VRAM's (sysfs resource0_resize, a hex bitmap, bit n = 2**n MiB).

  Attributes:
    sysfs: the sysfs attributes the card answers, by path relative to its PCI directory. Not driving a display by
      default (boot_vga 0, no DRM connectors); tests set e.g. sysfs["boot_vga"] = "1\n" or
      sysfs["drm/card0/card0-DP-1/status"] = "connected\n", or change sysfs["resource0_resize"].

  Raises:
    ValueError: an unknown card name (names the known ones).
  """

  def __init__(self, name: str, firmware_dir: str | None = None, lock_dir: str | None = None,
               vram_bar: int | None = None):
    if name not in CARDS:
      raise ValueError(f"no simulated card {name!r}; have {', '.join(CARDS)}")
    self.spec = CARDS[name]
    self.bdf = f"sim-{name}"
    self._own_lock_dir = None if lock_dir else tempfile.TemporaryDirectory(prefix=f"am-{name}-")
    self.lock_dir = lock_dir or self._own_lock_dir.name
    vram_mib = self.spec.vram_size >> 20
    rebar = sum(1 << n for n in range(8, vram_mib.bit_length()) if 1 << n <= vram_mib)   # 256 MiB .. VRAM
    self.sysfs: dict[str, str] = {"boot_vga": "0\n", "resource0_resize": f"{rebar:016x}\n"}
    self.vram_bar = vram_bar or self.spec.vram_size
    self.firmware_dir = firmware_dir
    self.log: list[str] = []
    # dispatch hazards (hazards.py): found ones, whether to raise them, and kernel names by entry address for the
    # reports (the card knows only entry addresses; a test or debugging host may fill it)
    self.hazards: list[str] = []
    self.raise_on_hazard = os.environ.get(RAISE_ENV, "") == "raise"
    self.kernel_names: dict[int, str] = {}
    self.vram = MemoryAperture(np.zeros(self.spec.vram_size, np.uint8))
    self.sysmem = SimHostMemory()
    self.doorbells = SimDoorbells(self)
    self.regs = SimRegisters(REGISTER_BAR_SIZE)
    table = build(self.spec.ips, self.spec.gc_info_version, self.spec.gc_info, self.spec.harvested)
    self.vram.write(self.spec.vram_size - DISCOVERY_TMR_OFFSET, table)
    self.disc = parse(table)
    self.caps = from_discovery(self.disc)
    self.blocks = {ip: RegisterBlock(import_module(f"am.generated.{mod}"), self.regs.raw, self.disc.ip(ip).bases)
                   for ip, mod in self.caps.register_modules.items()}
    self.gc, self.nbio = self.blocks["GC"], self.blocks["NBIF"]
    self._power_on()
    from am.simcard import engines, gpuvm, mec, psp, sdma
    self.gmc = gpuvm.SimGmc(self)
    self.ih = engines.SimIh(self)
    self.smu = engines.SimSmu(self)
    self.psp = psp.SimPsp(self)
    self.cp = mec.SimCp(self)
    self.sdma = sdma.SimSdma(self)
    self._indirect()
    self._hdp()
    self._clock = 0
    self._ticking = False
    self._idle_since = time.perf_counter()
    self.host_vram, self.host_regs = HostVram(self, self.vram.bytes[:self.vram_bar]), HostRegisters(self)

  def note(self, line: str) -> None:
    self.log.append(line)

  def _power_on(self) -> None:
    mp0, nbio = self.blocks["MP0"], self.nbio
    mp0[f"{self.caps.psp_msg_prefix}33"].write(0x80000000)
    mp0[f"{self.caps.psp_msg_prefix}35"].write(0x80000000)
    nbio.regRCC_DEV0_EPF0_RCC_CONFIG_MEMSIZE.write(self.spec.vram_size >> 20)
    top = (FB_BASE + self.spec.vram_size - 1) >> 24
    for block, p in ((self.gc, "GC"), (self.blocks["MMHUB"], "MM")):
      block[f"reg{p}MC_VM_FB_LOCATION_BASE"].write(FB_BASE >> 24)
      block[f"reg{p}MC_VM_FB_LOCATION_TOP"].write(top)

  def _indirect(self) -> None:
    """RSMU index/data (nbio_v4_3/nbif_v6_3_1 get_pcie_index_offset/get_pcie_data_offset): data accesses reach the
    register or SMN address last written to the index."""
    index = self.nbio.regBIF_BX_PF0_RSMU_INDEX
    data = self.nbio.regBIF_BX_PF0_RSMU_DATA
    self.regs.hook(self.nbio, data.name, write=lambda v: self.regs.write32(index.read(), v),
                   read=lambda: self.regs.read32(index.read()))

  def _hdp(self) -> None:
    self.hdp_flushes = 0
    remap = self.nbio.regBIF_BX0_REMAP_HDP_MEM_FLUSH_CNTL
    req, done = self.nbio.regBIF_BX_PF0_GPU_HDP_FLUSH_REQ, self.nbio.regBIF_BX_PF0_GPU_HDP_FLUSH_DONE

    def flush(value: int) -> None:
      if remap.read() != MMIO_REG_HOLE_OFFSET:
        self.note(f"hdp: write to the MMIO hole 0x{MMIO_REG_HOLE_OFFSET:x} with HDP_MEM_FLUSH_CNTL not remapped there")
        return
      self.hdp_flushes += 1

    self.regs.on_write[MMIO_REG_HOLE_OFFSET] = flush
    self.regs.hook(self.nbio, req.name, write=lambda v: done.write(v))

  def gpu_clock(self) -> int:
    """The GPU clock counter (100 MHz), never the same value twice."""
    now = time.perf_counter_ns() * GPU_CLOCK_HZ // 1_000_000_000
    self._clock = max(now, self._clock + 1)
    return self._clock

  def tick(self) -> None:
    """A slice of simulated time for the busy engines (the module docstring's time model), and another look for the
    engines stalled on a WAIT_REG_MEM / POLL_REGMEM (the host may have written the word); no-op when idle."""
    if self._ticking or not (self.cp.busy() or self.cp.waiting() or self.sdma.waiting()):
      return
    self._ticking = True
    try:
      self.cp.tick(time.perf_counter() - self._idle_since)
      self.settle()
    finally:
      self._ticking = False
      self._idle_since = time.perf_counter()

  def phys_read(self, at: int, size: int) -> bytes:
    """Bytes at a card-memory address (gpuvm.py: VRAM offset, or a bus address in the DMA pool)."""
    if at >= self.sysmem.base:
      return self.sysmem.bytes[at - self.sysmem.base:at - self.sysmem.base + size].tobytes()
    return self.vram.read(at, size)

  def phys_write(self, at: int, data: bytes) -> None:
    if at >= self.sysmem.base:
      self.sysmem.bytes[at - self.sysmem.base:at - self.sysmem.base + len(data)] = np.frombuffer(data, np.uint8)
    else:
      self.vram.write(at, data)

  def mc_to_vram(self, mc: int, size: int = 4) -> int | None:
    """VRAM offset of an MC address inside the FB aperture, else None."""
    offset = mc - FB_BASE
    return offset if 0 <= offset and offset + size <= self.spec.vram_size else None

  def doorbell(self, offset: int, value: int) -> None:
    if not self.nbio.regRCC_DEV0_EPF0_RCC_DOORBELL_APER_EN.read_fields()["BIF_DOORBELL_APER_EN"]:
      self.note(f"doorbell write at 0x{offset:x} dropped: BIF_DOORBELL_APER_EN=0")
      return
    if not self.cp.doorbell(offset, value) and not self.sdma.doorbell(offset, value):
      self.note(f"doorbell write at 0x{offset:x} (slot {offset // 8}) matched no queue")
    self.settle()

  def settle(self) -> None:
    """Engines stalled on a WAIT_REG_MEM / POLL_REGMEM see what the work just done wrote: rounds of the compute queues
    then SDMA until neither moves, so a chain of waits between them (copy after kernel after copy ...) resolves in one
    settle, however long. Each round that moves consumes a packet, so the rounds end."""
    while self.cp.poll() | self.sdma.poll():
      pass

  # ---- the PciFunction seam ----
  def sysfs_read(self, name: str) -> str | None:
    return self.sysfs.get(name)

  def sysfs_glob(self, pattern: str) -> list[str]:
    return [path for path in self.sysfs if fnmatch.fnmatchcase(path, pattern)]

  def enable(self) -> None:
    pass   # no kernel driver is ever bound to the simulated card; its function is always enabled

  def config_read(self, offset: int, size: int) -> int:
    config = {PCI_VENDOR_ID: AMD_VENDOR, PCI_DEVICE_ID: self.spec.device_id, PCI_REVISION_ID: self.spec.revision}
    return config.get(offset, 0) & ((1 << (8 * size)) - 1)

  def bar_size(self, bar: int) -> int:
    return {VRAM_BAR: self.vram_bar, DOORBELL_BAR: DOORBELL_BAR_SIZE, REGISTER_BAR: REGISTER_BAR_SIZE}[bar]

  def resize_bar(self, bar: int, size: int) -> int:
    """resource<bar>_resize as the kernel answers it (SysfsPciFunction.resize_bar): the smallest offered size that
    holds `size` bytes; only BAR 0 is resizable.

    Raises:
      UnsupportedDevice: no offered size is large enough, or another BAR (the names and sizes, via rebar_choice)."""
    text = self.sysfs.get("resource0_resize") if bar == VRAM_BAR else None
    bit = rebar_choice(self.bdf, bar, text, size, self.bar_size(bar))
    self.vram_bar = min(1 << (bit + 20), self.vram.size)
    self.host_vram = HostVram(self, self.vram.bytes[:self.vram_bar])
    self.note(f"pci: BAR 0 resized to {self.vram_bar >> 20} MiB (resource0_resize bit {bit})")
    return self.vram_bar

  def map_bar(self, bar: int):
    if bar not in (VRAM_BAR, DOORBELL_BAR, REGISTER_BAR):
      raise ValueError(f"BAR {bar} is not mapped on the simulated card (BARs 0, 2, 5)")
    return {VRAM_BAR: self.host_vram, DOORBELL_BAR: self.doorbells, REGISTER_BAR: self.host_regs}[bar]

  def alloc_dma(self, size: int) -> DmaBuffer:
    """Zeroed pages of the simulated host pool (SimHostMemory), with their bus addresses.

    Raises:
      ValueError: the pool (HOST_POOL bytes) is used up."""
    return self.sysmem.alloc(size)

  def close(self) -> None:
    pass
