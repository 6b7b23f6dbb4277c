"""The simulated SDMA engine 0, queue 0 (sdma_v6_0.c for SDMA 6.0 / Navi31, sdma_v7_0.c for SDMA 7.0 / Navi48).

Start: the halt bit (SDMA0_F32_CNTL.HALT / SDMA0_MCU_CNTL.HALT, caps.sdma_halt) stays set until the PSP loaded the
SDMA image; QUEUE0_RB_CNTL.RB_ENABLE needs the engine running and a translatable ring base.

Execution: a doorbell write carries the write pointer in bytes (sdma_v6_0_ring_set_wptr writes wptr << 2); the
engine runs the ring (RB_BASE << 8, 4 << RB_SIZE bytes) from its read pointer, through the GC hub, and writes the
64-bit byte read pointer to RB_RPTR_ADDR_LO/HI (RPTR_WRITEBACK_ENABLE). Packets (layouts of the generated
sdma_v6_0_0_pkt_open.h table, decoded with am.pm4.decode.parse_sdma):

  NOP                       skipped (1 + count dwords)
  COPY_LINEAR               COUNT + 1 bytes from SRC_ADDR to DST_ADDR
  WRITE_UNTILED             DW_3.count + 1 dwords to DST_ADDR
  FENCE                     the 32-bit DATA to ADDR
  TRAP                      an IH entry: client SOC21_IH_CLIENTID_GFX, GFX_11_0_0__SRCID__SDMA_TRAP (sdma_v6_0_sw_init),
                            ring_id = instance << 4 | queue, src_data[0] = INT_CONTEXT
  POLL_REGMEM               func as WAIT_REG_MEM's (sdma_v6_0.c: FUNC(3) /* == */); mem_poll 1: the dword at ADDR,
                            0: the register at byte offset ADDR_LO; hdp_flush 1: first write VALUE to the register
                            at byte offset ADDR_HI (sdma_v6_0_ring_emit_hdp_flush); unsatisfied: the engine stalls on
                            the packet and is polled again whenever any engine ran and at every host read
                            (card.py settle / tick), e.g. on a compute queue's signal (am/queues/transfer.py)
  TIMESTAMP_GET(_GLOBAL)    the 64-bit GPU clock to WRITE_ADDR (8-byte aligned)
A translation fault posts the VM fault (gpuvm.py) and stops the queue; an op without a handler stops it too, with the
reason in the card log (what the hardware reports for a bad SDMA op is not modelled).
"""
from __future__ import annotations

import struct

from am.generated.boot import ih as ih_facts
from am.pm4.decode import parse_sdma
from am.simcard.gpuvm import read_va, write_va
from am.simcard.mec import compare

CLIENT = ih_facts.CLIENTS["soc21_ih_clientid"]
SRC = ih_facts.SOURCES
WAIT = "wait"


class SimSdma:
  def __init__(self, card):
    self.card = card
    self.firmware = False
    gc = card.gc
    self.halt_reg, self.halt_field = card.caps.sdma_halt
    gc[self.halt_reg].update(**{self.halt_field: 1})
    card.regs.hook(gc, self.halt_reg, write=self.halt)
    card.regs.hook(gc, "regSDMA0_QUEUE0_RB_CNTL", write=self.rb_cntl)
    self.rptr = 0        # bytes, 64-bit
    self.wptr = 0
    self.hung: str | None = None
    self.packets = 0
    self.vmid = 0        # the kernel ring runs on VMID 0 (a KFD user queue on the process's: simcard/kfd.py)

  def halt(self, value: int) -> None:
    reg = self.card.gc[self.halt_reg]
    if not reg.decode(value)[self.halt_field] and not self.firmware:
      self.card.note("sdma: unhalt refused: SDMA firmware not loaded")
      reg.update(**{self.halt_field: 1})

  def rb_cntl(self, value: int) -> None:
    gc = self.card.gc
    if not gc.regSDMA0_QUEUE0_RB_CNTL.decode(value)["RB_ENABLE"]:
      return
    base = self.ring_base()
    halted = gc[self.halt_reg].read_fields()[self.halt_field]
    if halted or self.card.gmc.translate(base, what="SDMA ring base", vmid=self.vmid) is None:
      self.card.note(f"sdma: RB_ENABLE refused (halted={halted}, ring 0x{base:x})")
      gc.regSDMA0_QUEUE0_RB_CNTL.update(RB_ENABLE=0)
      return
    self.rptr = gc.regSDMA0_QUEUE0_RB_RPTR.read() | gc.regSDMA0_QUEUE0_RB_RPTR_HI.read() << 32
    self.wptr, self.hung = self.rptr, None

  def ring_base(self) -> int:
    gc = self.card.gc
    return (gc.regSDMA0_QUEUE0_RB_BASE.read() | gc.regSDMA0_QUEUE0_RB_BASE_HI.read() << 32) << 8

  def enabled(self) -> bool:
    gc = self.card.gc
    return bool(gc.regSDMA0_QUEUE0_RB_CNTL.read_fields()["RB_ENABLE"])

  def doorbell(self, offset: int, value: int) -> bool:
    gc = self.card.gc
    if not (gc.regSDMA0_QUEUE0_DOORBELL.read_fields()["ENABLE"]
            and gc.regSDMA0_QUEUE0_DOORBELL_OFFSET.read_fields()["OFFSET"] * 4 == offset):
      return False
    if not self.enabled():
      self.card.note(f"sdma: doorbell wptr 0x{value:x} while RB_ENABLE=0: ignored")
      return True
    self.wptr = value
    self.run()
    return True

  def waiting(self) -> bool:
    """The queue has packets left and is not stopped: it is stalled on a POLL_REGMEM."""
    return self.enabled() and self.hung is None and self.rptr < self.wptr

  def poll(self) -> bool:
    before = self.rptr
    if self.enabled():
      self.run()
    return self.rptr != before

  def execute_ring(self, base: int, ring_bytes: int) -> None:
    """Fetch the packets between rptr and wptr from the ring at GPU address `base` and execute them, until one
    waits or fails (the queue then stops, `hung` saying why)."""
    if self.hung or self.rptr >= self.wptr:
      return
    words = []
    for at in range(self.rptr, self.wptr, 4):
      data = read_va(self.card, base + at % ring_bytes, 4, "SDMA ring fetch", self.vmid)
      if data is None:
        self.hung = f"ring fetch at byte {at} faulted"
        return
      words.append(int.from_bytes(data, "little"))
    for packet in parse_sdma(words, self.card.caps.sdma_generation):
      result = self.execute(packet)
      if result == WAIT:
        break
      if result:
        self.hung = f"{packet.name} at byte {self.rptr}: {result}"
        self.card.note(f"sdma: {self.hung}; queue stopped")
        break
      self.rptr += 4 * (1 + len(packet.dwords))
      self.packets += 1
      if self.hung:
        break

  def run(self) -> None:
    if self.hung or self.rptr >= self.wptr:
      return
    gc = self.card.gc
    self.execute_ring(self.ring_base(), 4 << gc.regSDMA0_QUEUE0_RB_CNTL.read_fields()["RB_SIZE"])
    wb = gc.regSDMA0_QUEUE0_RB_RPTR_ADDR_LO.read() | gc.regSDMA0_QUEUE0_RB_RPTR_ADDR_HI.read() << 32
    if gc.regSDMA0_QUEUE0_RB_CNTL.read_fields()["RPTR_WRITEBACK_ENABLE"]:
      write_va(self.card, wb, struct.pack("<Q", self.rptr), "SDMA rptr write-back", self.vmid)

  def execute(self, packet) -> str | None:
    if packet.note:
      return packet.note
    handler = HANDLERS.get(packet.name)
    if handler is None:
      return "no handler for this packet in the simulated SDMA engine"
    body = {name: (value, fields) for name, value, fields in packet.dwords}
    return handler(self, packet, body)

  def fault(self, what: str) -> None:
    self.hung = f"{what} faulted"


def addr(body, lo: str, hi: str) -> int:
  return body[lo][0] | body[hi][0] << 32


def do_nop(sdma, packet, body):
  return None


def do_copy_linear(sdma, packet, body):
  size = body["COUNT"][1]["count"] + 1
  src, dst = addr(body, "SRC_ADDR_LO", "SRC_ADDR_HI"), addr(body, "DST_ADDR_LO", "DST_ADDR_HI")
  data = read_va(sdma.card, src, size, "SDMA copy source", sdma.vmid)
  if data is None or not write_va(sdma.card, dst, data, "SDMA copy destination", sdma.vmid):
    sdma.fault(f"COPY_LINEAR 0x{src:x} -> 0x{dst:x}")
  return None


def do_write(sdma, packet, body):
  data = [value for name, value, _ in packet.dwords if name.startswith("DATA")]
  dst = addr(body, "DST_ADDR_LO", "DST_ADDR_HI")
  if not write_va(sdma.card, dst, struct.pack(f"<{len(data)}I", *data), "SDMA write", sdma.vmid):
    sdma.fault(f"WRITE to 0x{dst:x}")
  return None


def do_fence(sdma, packet, body):
  dst = addr(body, "ADDR_LO", "ADDR_HI")
  if not write_va(sdma.card, dst, struct.pack("<I", body["DATA"][0]), "SDMA fence", sdma.vmid):
    sdma.fault(f"FENCE to 0x{dst:x}")
  return None


def do_trap(sdma, packet, body):
  sdma.card.ih.post(CLIENT["SOC21_IH_CLIENTID_GFX"], SRC["GFX_11_0_0__SRCID__SDMA_TRAP"],
                    body["INT_CONTEXT"][1]["int_context"], 0, ring=0)
  return None


def do_poll_regmem(sdma, packet, body):
  h = packet.header
  regs = sdma.card.regs
  if h["hdp_flush"]:
    regs.write32(body["ADDR_HI"][0], body["VALUE"][0])
  if h["mem_poll"]:
    at = addr(body, "ADDR_LO", "ADDR_HI")
    data = read_va(sdma.card, at, 4, "SDMA poll", sdma.vmid)
    if data is None:
      sdma.fault(f"POLL_REGMEM on 0x{at:x}")
      return None
    value = int.from_bytes(data, "little")
  else:
    value = regs.read32(body["ADDR_LO"][0])
  if h["func"] > 6:
    return f"POLL_REGMEM func {h['func']} not modelled"
  return None if compare(h["func"], value & body["MASK"][0], body["VALUE"][0]) else WAIT


def do_timestamp(sdma, packet, body):
  dst = body["WRITE_ADDR_LO"][1]["write_addr_31_3"] << 3 | body["WRITE_ADDR_HI"][0] << 32
  if not write_va(sdma.card, dst, struct.pack("<Q", sdma.card.gpu_clock()), "SDMA timestamp", sdma.vmid):
    sdma.fault(f"TIMESTAMP to 0x{dst:x}")
  return None


HANDLERS = {"SDMA_PKT_NOP": do_nop, "SDMA_PKT_COPY_LINEAR": do_copy_linear, "SDMA_PKT_WRITE_UNTILED": do_write,
            "SDMA_PKT_FENCE": do_fence, "SDMA_PKT_TRAP": do_trap, "SDMA_PKT_POLL_REGMEM": do_poll_regmem,
            "SDMA_PKT_TIMESTAMP_GET": do_timestamp, "SDMA_PKT_TIMESTAMP_GET_GLOBAL": do_timestamp}
