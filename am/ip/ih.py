"""IH: the interrupt handler ring (ih_v6_0.c for OSSSYS 6.0.0 / Navi31, ih_v7_0.c for OSSSYS 7.0.0 / Navi48).

ih_v6_0_irq_init/enable_ring: IH_RB_BASE = ring MC address >> 8, IH_RB_BASE_HI = >> 40, IH_RB_WPTR_ADDR_LO/HI =
the write-pointer write-back slot, IH_RB_CNTL (RB_SIZE = log2(ring dwords), WPTR_WRITEBACK_ENABLE,
WPTR_OVERFLOW_ENABLE), IH_RB_RPTR = IH_RB_WPTR = 0, then ih_v6_0_toggle_ring_interrupts: RB_ENABLE, ENABLE_INTR.

An IV entry is 8 dwords (amdgpu_irq.c amdgpu_ih_decode_iv_helper): dw0 client_id[7:0] src_id[15:8] ring_id[23:16]
vmid[27:24] vmid_src[31]; dw1 timestamp[31:0]; dw2 timestamp[47:32] in [15:0], timestamp_src[31]; dw3 pasid[15:0]
node_id[23:16]; dw4..7 src_data[0..3]. Client and source ids: am/generated/boot/ih.py.

VM faults: the GC hub's UTCL2 posts client SOC21_IH_CLIENTID_GFX, UTCL2_1_0__SRCID__FAULT, the MMHUB's client
SOC21_IH_CLIENTID_VMC, VMC_1_0__SRCID__VM_FAULT (gmc_v11_0_sw_init / gmc_v12_0_sw_init register both). Decoding as
gmc_v11_0_process_interrupt and kfd_int_process_v11.c do: address = src_data[0] << 12 | (src_data[1] & 0xf) << 44,
src_data[1] bit 5 a write (bit 7 a retry fault), the IV's VMID field the context, and ring_id the protection bits
(0x08 not present, 0x10 read, 0x20 write: kfd_vm_fault_info prot_valid / prot_read / prot_write).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from am import debug
from am.generated.boot import ih as facts
from am.ip.base import IpBlock

IV_BYTES = 32
CLIENT_NAMES = {v: k for k, v in facts.CLIENTS["soc21_ih_clientid"].items()}
GFX_SOURCES = {v: k for k, v in facts.SOURCES.items() if k.startswith("GFX_11_0_0")}
UTCL2_FAULT = facts.SOURCES["UTCL2_1_0__SRCID__FAULT"]
PROT_NOT_PRESENT, PROT_READ, PROT_WRITE = 0x08, 0x10, 0x20   # kfd_int_process_v11.c: ring_id & 0x08 / 0x10 / 0x20
FAULT_WRITE = 0x20                                           # src_data[1] & 0x20: write_fault (gmc_v11_0.c)
FAULT_SOURCES = {"GFX_11_0_0__SRCID__CP_BAD_OPCODE_ERROR", "GFX_11_0_0__SRCID__CP_PRIV_REG_FAULT",
                 "GFX_11_0_0__SRCID__CP_PRIV_INSTR_FAULT", "GFX_11_0_0__SRCID__CP_PM4_PKT_RSVD_BIT_ERROR",
                 "GFX_11_0_0__SRCID__SQ_INTERRUPT_ID", "GFX_11_0_0__SRCID__UTCL2_FAULT"}


@dataclass(frozen=True)
class IVEntry:
  client_id: int
  src_id: int
  ring_id: int
  vmid: int
  vmid_src: int
  timestamp: int
  pasid: int
  node_id: int
  src_data: tuple[int, int, int, int]

  @classmethod
  def decode(cls, raw: bytes) -> IVEntry:
    dw = struct.unpack("<8I", raw)
    return cls(dw[0] & 0xFF, (dw[0] >> 8) & 0xFF, (dw[0] >> 16) & 0xFF, (dw[0] >> 24) & 0xF, dw[0] >> 31,
               dw[1] | ((dw[2] & 0xFFFF) << 32), dw[3] & 0xFFFF, (dw[3] >> 16) & 0xFF, tuple(dw[4:8]))

  def encode(self) -> bytes:
    dw0 = self.client_id | (self.src_id << 8) | (self.ring_id << 16) | (self.vmid << 24) | (self.vmid_src << 31)
    return struct.pack("<8I", dw0, self.timestamp & 0xFFFFFFFF, (self.timestamp >> 32) & 0xFFFF,
                       self.pasid | (self.node_id << 16), *self.src_data)

  @property
  def client(self) -> str:
    return CLIENT_NAMES.get(self.client_id, f"client {self.client_id}")

  @property
  def source(self) -> str:
    if self.client in ("SOC21_IH_CLIENTID_GRBM_CP", "SOC21_IH_CLIENTID_GFX"):
      return GFX_SOURCES.get(self.src_id, f"src {self.src_id}")
    return f"src {self.src_id}"

  @property
  def is_fault(self) -> bool:
    """A VM fault or a CP/SQ error (not an end-of-pipe or SDMA trap notification)."""
    return self.client == "SOC21_IH_CLIENTID_VMC" or self.source in FAULT_SOURCES

  @property
  def is_vm_fault(self) -> bool:
    """A GC-hub (UTCL2) or MMHUB (VMC) page fault (kfd_int_process_v11.c tests the same two)."""
    return self.client == "SOC21_IH_CLIENTID_VMC" or (self.client == "SOC21_IH_CLIENTID_GFX"
                                                      and self.src_id == UTCL2_FAULT)

  @property
  def fault_address(self) -> int | None:
    """The faulting GPU virtual address (page) of a VM fault, else None."""
    if not self.is_vm_fault:
      return None
    return self.src_data[0] << 12 | (self.src_data[1] & 0xF) << 44

  @property
  def fault_write(self) -> bool | None:
    return bool(self.src_data[1] & FAULT_WRITE) if self.is_vm_fault else None

  @property
  def fault_kind(self) -> str | None:
    """What the translation found wrong, from the protection bits in ring_id."""
    if not self.is_vm_fault:
      return None
    if self.ring_id & PROT_WRITE:
      return "write to a read-only page"
    if self.ring_id & PROT_READ:
      return "read of a page without read permission"
    if self.ring_id & PROT_NOT_PRESENT:
      return "page not present"
    return "no protection bits reported"

  def describe(self) -> str:
    data = " ".join(f"0x{d:08x}" for d in self.src_data)
    text = f"{self.client} {self.source} ring {self.ring_id} vmid {self.vmid} data {data}"
    if self.is_vm_fault:
      hub = "MMHUB" if self.client == "SOC21_IH_CLIENTID_VMC" else "GC hub"
      access = "write" if self.fault_write else "read"
      text += f" (GPU page fault on the {hub}: {access} of 0x{self.fault_address:x} in VMID {self.vmid}, " \
              f"{self.fault_kind})"
    return text


class Ih(IpBlock):
  name = "ih"
  RING_BYTES = 64 << 10

  def init_sw(self) -> None:
    self.ring = self.dev.gmc.alloc(self.RING_BYTES, map_gart=False)
    self.wptr_slot = self.dev.gmc.alloc(4096, map_gart=False)
    self.rptr = 0
    self.events: list[IVEntry] = []

  def init_hw(self) -> list[str]:
    oss = self.dev.oss
    oss.regIH_RB_CNTL.update(RB_ENABLE=0, ENABLE_INTR=0)
    oss.regIH_RB_BASE.write((self.ring.mc >> 8) & 0xFFFFFFFF)
    oss.regIH_RB_BASE_HI.write(self.ring.mc >> 40)
    oss.regIH_RB_WPTR_ADDR_LO.write(self.wptr_slot.mc & 0xFFFFFFFF)
    oss.regIH_RB_WPTR_ADDR_HI.write(self.wptr_slot.mc >> 32)
    oss.regIH_RB_CNTL.write(RB_SIZE=(self.RING_BYTES // 4).bit_length() - 1, WPTR_WRITEBACK_ENABLE=1,
                            WPTR_OVERFLOW_ENABLE=1)
    oss.regIH_RB_RPTR.write(0)
    oss.regIH_RB_WPTR.write(0)
    oss.regIH_RB_CNTL.update(RB_ENABLE=1, ENABLE_INTR=1)
    cntl = oss.regIH_RB_CNTL.read_fields()
    return [f"IH ring at MC 0x{self.ring.mc:x}, {self.RING_BYTES >> 10} KiB, RB_ENABLE={cntl['RB_ENABLE']} "
            f"RB_SIZE={cntl['RB_SIZE']}, wptr write-back at 0x{self.wptr_slot.mc:x}"]

  def poll(self) -> list[IVEntry]:
    """The entries the card wrote since the last poll (ring wrap included); advances IH_RB_RPTR."""
    wptr = self.dev.vram.read32(self.wptr_slot.offset) % self.RING_BYTES
    out = []
    while self.rptr != wptr:
      out.append(IVEntry.decode(self.dev.vram.read(self.ring.offset + self.rptr, IV_BYTES)))
      self.rptr = (self.rptr + IV_BYTES) % self.RING_BYTES
    self.dev.oss.regIH_RB_RPTR.write(self.rptr)
    for entry in out:
      debug.log(debug.STAGES, f"IH: {entry.describe()}")
    return out

  def faults(self) -> list[IVEntry]:
    """Poll; return the fault entries and keep the others (EOP, SDMA trap) in `events`."""
    entries = self.poll()
    self.events.extend(e for e in entries if not e.is_fault)
    return [e for e in entries if e.is_fault]

  def fini_hw(self) -> None:
    self.dev.oss.regIH_RB_CNTL.update(RB_ENABLE=0, ENABLE_INTR=0)
