"""The simulated MEC (compute micro-engine): HQD activation and the PM4 executor of its queues.

HQD state: registers banked per GRBM_GFX_CNTL me/pipe/queue (regfile.py); CP_HQD_ACTIVE is accepted only for a
queue whose PQ base translates, whose doorbell is enabled inside CP_MEC_DOORBELL_RANGE and whose EOP base is set.
The queue's VMID is CP_HQD_VMID.VMID when it is activated: every address of the queue (ring, read/write pointers,
IBs, packet operands) and of its dispatches translates in that VMID (gpuvm.py). IB_CONTROL.VMID is not modelled (an
IB runs on the queue's VMID; a different non-zero value is noted in the card log). The MEC stays halted until the RLC
autoload put its firmware in place (CP_MEC_RS64_CNTL.MEC_HALT).

Dequeue: CP_HQD_DEQUEUE_REQUEST.DEQUEUE_REQ as enum hqd_dequeue_request_type (amdgpu_amdkfd_gfx_v11.c): DRAIN_PIPE
(1) stops fetching and lets the dispatch in flight finish, CP_HQD_ACTIVE going to 0 only then (never, for a kernel
that does not end); RESET_WAVES (2) and SAVE_WAVES (3, context save is not modelled) drop the dispatch's waves and
the queue at once. SPI_COMPUTE_QUEUE_RESET, which gfx_v11_0_reset_kcq writes after RESET_WAVES, is stored only.

A doorbell write (64-bit, the write pointer in dwords, gfx_v11_0_ring_set_wptr_compute) runs the queue from its read
pointer: packets are fetched through the GC hub (read_va) from the ring or from an indirect buffer (the ring is
2 << CP_HQD_PQ_CONTROL.QUEUE_SIZE dwords: gfx_v11_0_compute_mqd_init sets QUEUE_SIZE = order_base_2(dwords) - 1),
then executed by the handlers below. After each run the read pointer (dwords, modulo the ring) is written to
CP_HQD_PQ_RPTR_REPORT_ADDR. Packet layouts are am/pm4/packets.py's (decoded with am.pm4.decode):

  NOP, ACQUIRE_MEM        no effect (caches are not modelled)
  SET_SH_REG              COMPUTE_* registers (dword address PACKET3_SET_SH_REG_START + REG_OFFSET, nvd.h)
  SET_UCONFIG_REG         user-config registers (SCRATCH_REG0 for amdgpu's ring test), side effects included
  WRITE_DATA              DST_SEL 5: memory; DST_SEL 0: registers (WR_ONE_ADDR: all to one register)
  RELEASE_MEM             DATA_SEL 1 / 2: 32 / 64-bit DATA, 3: the 64-bit GPU clock (kfd data_sel enum); INT_SEL 1..3:
                          a CP_EOP_INTERRUPT IH entry with INT_CTXID in src_data[0], ring_id = queue << 4 | me << 2 |
                          pipe (gfx_v11_0_eop_irq reads it back that way)
  EVENT_WRITE             any VGT_EVENT_TYPE of the generation (soc21_enum.h / soc24_enum.h); the dispatch before it
                          has completed already, so CS_PARTIAL_FLUSH has nothing to wait for, but it ends the queue's
                          set of dispatches in flight (hazards.py)
  WAIT_REG_MEM            memory or register, FUNCTION as nvd.h; OPERATION 1 writes REFERENCE to the first register
                          then waits on the second (amdgpu's HDP flush); unsatisfied: the queue stalls on the packet
                          and is polled again whenever any engine ran and at every host read (card.py settle /
                          tick), e.g. on an SDMA fence (am/queues/transfer.py)
  INDIRECT_BUFFER         IB_BASE, IB_SIZE dwords, VALID required; nested up to MAX_IB_DEPTH; CHAIN=1 replaces the
                          current IB instead of returning to it
  COPY_DATA               SRC_SEL 0 register, 1 memory, 5 immediate, 9 GPU clock; DST_SEL 0 register, 5 memory;
                          COUNT_SEL 1 copies 64 bits (sid.h COPY_DATA_*)
  DISPATCH_DIRECT         the wave launch of shader.py; the queue fetches nothing more until the dispatch's waves
                          have ended (they run in time slices, card.py), so the packets after it see its results.
                          Hardware does not wait: dispatches until the next CS_PARTIAL_FLUSH may overlap there, so
                          each one that ends is checked against those before it (hazards.py, card.hazards)
Anything else (an opcode without a handler, a type-0 packet, a selector value not listed) posts
CP_BAD_OPCODE_ERROR (data: opcode, dword position) and stops the queue until it is dequeued and mapped again.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from am.generated import pm4 as pm4_facts
from am.generated.boot import ih as ih_facts
from am.pm4.decode import parse_pm4
from am.pm4.pm4 import SH_REG_END, SH_REG_START, UCONFIG_REG_END, UCONFIG_REG_START, WAIT_FUNCTIONS
from am.simcard import hazards, shader
from am.simcard.gpuvm import read_va, write_va

CLIENT = ih_facts.CLIENTS["soc21_ih_clientid"]
SRC = ih_facts.SOURCES
MAX_IB_DEPTH = 2            # IB1 and IB2
COMPARE = {v: k for k, v in WAIT_FUNCTIONS.items()}
WAIT = "wait"
DRAIN_PIPE, RESET_WAVES = 1, 2   # enum hqd_dequeue_request_type (amdgpu_amdkfd_gfx_v11.c)


def compare(function: int, value: int, reference: int) -> bool:
  op = COMPARE.get(function)
  return {"always": True, "<": value < reference, "<=": value <= reference, "==": value == reference,
          "!=": value != reference, ">=": value >= reference, ">": value > reference}[op]


@dataclass
class Frame:
  """An indirect buffer being executed: base address, size and position in dwords."""
  base: int
  ndw: int
  pos: int = 0


@dataclass
class QueueState:
  sel: tuple                     # (me, pipe, queue)
  rptr: int = 0                  # ring dwords consumed (64-bit, never wraps)
  wptr: int = 0                  # the last doorbell value
  frames: list = field(default_factory=list)
  hung: str | None = None
  packets: int = 0
  vmid: int = 0                  # CP_HQD_VMID.VMID at activation
  busy: shader.Dispatch | None = None   # the dispatch in flight
  draining: bool = False         # DRAIN_PIPE asked: fetch nothing more, deactivate once `busy` ends
  dispatches: int = 0            # DISPATCH_DIRECT packets run since activation (names them in hazard reports)
  in_flight: list = field(default_factory=list)   # (label, footprint) of the dispatches since the last CS_PARTIAL_FLUSH
  unraised: list = field(default_factory=list)    # hazards found in this run, for card.raise_on_hazard

  @property
  def ring_id(self) -> int:
    me, pipe, queue = self.sel
    return (queue << 4) | (me << 2) | pipe

  @property
  def name(self) -> str:
    me, pipe, queue = self.sel
    return f"HQD me{me} pipe{pipe} queue{queue}"


class SimCp:
  def __init__(self, card):
    self.card = card
    gc = card.gc
    self.mec_firmware = False
    self.active: dict[tuple, QueueState] = {}
    raw = card.regs.raw
    raw.banked = {gc[n].byte_offset for n in gc.table.names() if n.startswith(("regCP_HQD_", "regCP_MQD_"))
                  and gc.table.spec(n).base_idx is not None}
    cntl = gc.regGRBM_GFX_CNTL
    raw.bank = lambda: self._select(cntl.read())
    gc.regCP_MEC_RS64_CNTL.write(MEC_HALT=1)
    gc.regCP_STAT.write(0x80000000)   # busy until the RLC autoload finishes (any non-zero value)
    card.regs.hook(gc, "regCP_MEC_RS64_CNTL", write=self.mec_cntl)
    card.regs.hook(gc, "regCP_HQD_ACTIVE", write=self.activate)
    card.regs.hook(gc, "regCP_HQD_DEQUEUE_REQUEST", write=self.dequeue)
    self.events = set(pm4_facts.VGT_EVENT_TYPE[card.caps.gfx_generation].values())
    self.cs_partial_flush = pm4_facts.VGT_EVENT_TYPE[card.caps.gfx_generation]["CS_PARTIAL_FLUSH"]

  def _select(self, value: int) -> tuple:
    f = self.card.gc.regGRBM_GFX_CNTL.decode(value)
    return f["MEID"], f["PIPEID"], f["QUEUEID"]

  def autoload_done(self) -> None:
    gc = self.card.gc
    gc.regRLC_RLCS_BOOTLOAD_STATUS.update(BOOTLOAD_COMPLETE=1)
    gc.regCP_STAT.write(0)
    self.mec_firmware = True

  def mec_cntl(self, value: int) -> None:
    if not self.card.gc.regCP_MEC_RS64_CNTL.decode(value)["MEC_HALT"] and not self.mec_firmware:
      self.card.note("cp: MEC_HALT=0 refused: no MEC firmware (RLC autoload not done)")
      self.card.gc.regCP_MEC_RS64_CNTL.update(MEC_HALT=1)

  def _queue_error(self) -> str | None:
    gc = self.card.gc
    if gc.regCP_MEC_RS64_CNTL.read_fields()["MEC_HALT"]:
      return "MEC halted"
    pq = (gc.regCP_HQD_PQ_BASE.read() | gc.regCP_HQD_PQ_BASE_HI.read() << 32) << 8
    vmid = gc.regCP_HQD_VMID.read_fields()["VMID"]
    if self.card.gmc.translate(pq, what="HQD PQ base", vmid=vmid) is None:
      return f"PQ base 0x{pq:x} does not translate in VMID {vmid}"
    db = gc.regCP_HQD_PQ_DOORBELL_CONTROL.read_fields()
    lower, upper = gc.regCP_MEC_DOORBELL_RANGE_LOWER.read(), gc.regCP_MEC_DOORBELL_RANGE_UPPER.read()
    if not db["DOORBELL_EN"] or not lower <= db["DOORBELL_OFFSET"] * 4 <= upper:
      return (f"doorbell EN={db['DOORBELL_EN']} offset {db['DOORBELL_OFFSET']} outside MEC range "
              f"[0x{lower:x}, 0x{upper:x}]")
    if not gc.regCP_HQD_EOP_BASE_ADDR.read() and not gc.regCP_HQD_EOP_BASE_ADDR_HI.read():
      return "EOP base not set"
    return None

  def activate(self, value: int) -> None:
    gc = self.card.gc
    sel = self._select(gc.regGRBM_GFX_CNTL.read())
    if not gc.regCP_HQD_ACTIVE.decode(value)["ACTIVE"]:
      self.active.pop(sel, None)
      return
    error = self._queue_error()
    if error:
      self.card.note(f"cp: HQD {sel} not activated: {error}")
      gc.regCP_HQD_ACTIVE.write(0)
      return
    wptr = gc.regCP_HQD_PQ_WPTR_LO.read() | gc.regCP_HQD_PQ_WPTR_HI.read() << 32
    vmid = gc.regCP_HQD_VMID.read_fields()["VMID"]
    self.active[sel] = QueueState(sel, rptr=wptr, wptr=wptr, vmid=vmid)
    self.card.note(f"cp: HQD me{sel[0]} pipe{sel[1]} queue{sel[2]} active on VMID {vmid}")

  def dequeue(self, value: int) -> None:
    gc = self.card.gc
    sel = self._select(gc.regGRBM_GFX_CNTL.read())
    request = gc.regCP_HQD_DEQUEUE_REQUEST.decode(value)["DEQUEUE_REQ"]
    state = self.active.get(sel)
    if not request:
      return
    if state is not None and state.busy is not None:
      if request == DRAIN_PIPE:
        state.draining = True
        self.card.note(f"cp: HQD {sel} draining: waits for {state.busy.what}")
        return
      state.busy.kill()
      state.busy = None
    self.drop(state, sel, request)

  def drop(self, state: QueueState | None, sel: tuple, request: int) -> None:
    """The HQD leaves the MEC: CP_HQD_ACTIVE and the request go to 0 (in the queue's own register bank)."""
    self.active.pop(sel, None)
    if state is not None:
      why = f" (hung: {state.hung})" if state.hung else ""
      how = {DRAIN_PIPE: "DRAIN_PIPE", RESET_WAVES: "RESET_WAVES"}.get(request, f"DEQUEUE_REQ {request}")
      self.card.note(f"cp: HQD {sel} dequeued ({how}) at rptr {state.rptr}{why}")
    saved = self._banked(sel)
    try:
      self.card.gc.regCP_HQD_ACTIVE.write(0)
      self.card.gc.regCP_HQD_DEQUEUE_REQUEST.write(0)
    finally:
      self.card.regs.raw.bank = saved

  # ---- execution ----
  def _banked(self, sel: tuple):
    raw = self.card.regs.raw
    saved = raw.bank
    raw.bank = lambda: sel
    return saved

  def doorbell(self, offset: int, wptr: int) -> bool:
    gc, raw = self.card.gc, self.card.regs.raw
    for state in list(self.active.values()):
      saved = self._banked(state.sel)
      try:
        if gc.regCP_HQD_PQ_DOORBELL_CONTROL.read_fields()["DOORBELL_OFFSET"] * 4 == offset:
          gc.regCP_HQD_PQ_WPTR_LO.write(wptr & 0xFFFFFFFF)
          gc.regCP_HQD_PQ_WPTR_HI.write(wptr >> 32)
          state.wptr = wptr
          self.run(state)
          return True
      finally:
        raw.bank = saved
    return False

  def busy(self) -> bool:
    """A dispatch is in flight on some queue."""
    return any(state.busy is not None for state in self.active.values())

  def waiting(self) -> bool:
    """Some queue without a dispatch in flight has packets left (it is stalled on a WAIT_REG_MEM)."""
    return any(state.busy is None and state.hung is None and (state.rptr < state.wptr or state.frames)
               for state in self.active.values())

  def tick(self, seconds: float) -> None:
    """A time slice of up to `seconds` for every queue with a dispatch in flight; a queue whose dispatch ends goes
    on fetching."""
    for state in list(self.active.values()):
      if state.busy is not None:
        saved = self._banked(state.sel)
        try:
          self.run(state, seconds)
        finally:
          self.card.regs.raw.bank = saved

  def poll(self) -> bool:
    """Run queues stalled on WAIT_REG_MEM again; True if any made progress (a queue with a dispatch in flight is
    left to `tick`)."""
    progress = False
    for state in list(self.active.values()):
      if state.busy is not None:
        continue
      before = (state.rptr, [f.pos for f in state.frames])
      saved = self._banked(state.sel)
      try:
        self.run(state)
      finally:
        self.card.regs.raw.bank = saved
      progress |= before != (state.rptr, [f.pos for f in state.frames])
    return progress

  def run(self, state: QueueState, seconds: float = shader.SLICE_SECONDS) -> None:
    """Fetch and execute the queue's packets until it is empty, stalls, stops, or its dispatch in flight has had a
    slice of `seconds` without ending."""
    gc = self.card.gc
    pq = (gc.regCP_HQD_PQ_BASE.read() | gc.regCP_HQD_PQ_BASE_HI.read() << 32) << 8
    ring_dw = 2 << gc.regCP_HQD_PQ_CONTROL.read_fields()["QUEUE_SIZE"]   # QUEUE_SIZE = log2(dwords) - 1
    while state.hung is None:
      if state.busy is not None and not self.advance_dispatch(state, seconds):
        break
      if state.draining:
        self.drop(state, state.sel, DRAIN_PIPE)
        break
      fetched = self.fetch(state, pq, ring_dw)
      if fetched is None:
        break
      words, where = fetched
      if not words:
        state.hung = f"packet fetch at {where} faulted"
        break
      packet = parse_pm4(words, self.card.caps.gfx_generation)[0]
      result = self.execute(state, packet)
      if result == WAIT:
        break
      if isinstance(result, str):
        self.bad_packet(state, packet, where, result)
        break
      self.advance(state, len(words), result)
      state.packets += 1
    report = gc.regCP_HQD_PQ_RPTR_REPORT_ADDR.read() | gc.regCP_HQD_PQ_RPTR_REPORT_ADDR_HI.read() << 32
    write_va(self.card, report, struct.pack("<I", state.rptr % ring_dw), "rptr report", state.vmid)
    if state.unraised:
      found, state.unraised = state.unraised, []
      raise hazards.DispatchHazard(f"{len(found)} dispatch hazard(s), also in card.hazards:\n" + "\n".join(found))

  def advance_dispatch(self, state: QueueState, seconds: float) -> bool:
    """One time slice of the queue's dispatch; True once it ended (the queue may fetch again)."""
    dispatch = state.busy
    dispatch.advance(seconds)
    if dispatch.error:
      state.hung, state.busy = dispatch.error, None
      return False
    if dispatch.done:
      state.busy = None
      self.check_hazards(state, dispatch)
      return True
    return False

  def check_hazards(self, state: QueueState, dispatch: shader.Dispatch) -> None:
    """Compare an ended dispatch with the queue's dispatches in flight (hazards.py), then add it to them."""
    ended = (dispatch.label, dispatch.memory.footprint)
    found = [line for earlier in state.in_flight for line in hazards.find(earlier, ended, state.name)]
    for line in found:
      self.card.note(f"cp: hazard: {line}")
    self.card.hazards += found
    if self.card.raise_on_hazard:
      state.unraised += found
    state.in_flight.append(ended)

  def fetch(self, state: QueueState, pq: int, ring_dw: int) -> tuple[list[int], str] | None:
    """The next packet's dwords and where it is, None when the queue is empty; ([], where) on a fetch fault."""
    while state.frames and state.frames[-1].pos >= state.frames[-1].ndw:
      state.frames.pop()
    if state.frames:
      top = state.frames[-1]
      header = read_va(self.card, top.base + top.pos * 4, 4, "IB fetch", state.vmid)
      if header is None:
        return [], f"IB 0x{top.base:x} dword {top.pos}"
      n = packet_dwords(int.from_bytes(header, "little"))
      n = min(n, top.ndw - top.pos)
      data = read_va(self.card, top.base + top.pos * 4, 4 * n, "IB fetch", state.vmid)
      where = f"IB 0x{top.base:x} dword {top.pos}"
    else:
      if state.rptr >= state.wptr:
        return None
      header = read_va(self.card, pq + (state.rptr % ring_dw) * 4, 4, "ring fetch", state.vmid)
      if header is None:
        return [], f"ring dword {state.rptr}"
      n = min(packet_dwords(int.from_bytes(header, "little")), state.wptr - state.rptr)
      data = bytearray()
      for i in range(n):
        word = read_va(self.card, pq + ((state.rptr + i) % ring_dw) * 4, 4, "ring fetch", state.vmid)
        if word is None:
          return [], f"ring dword {state.rptr + i}"
        data += word
      where = f"ring dword {state.rptr}"
    if data is None:
      return [], where
    return list(struct.unpack(f"<{len(data) // 4}I", data)), where

  def advance(self, state: QueueState, n: int, pending: PendingIB | None) -> None:
    if state.frames:
      state.frames[-1].pos += n
    else:
      state.rptr += n
    if pending is not None:
      if pending.chain and state.frames:
        state.frames.pop()
      state.frames.append(Frame(pending.base, pending.ndw))

  def bad_packet(self, state: QueueState, packet, where: str, why: str) -> None:
    opcode = packet.header.get("IT_OPCODE", 0)
    position = state.frames[-1].pos if state.frames else state.rptr
    self.card.ih.post(CLIENT["SOC21_IH_CLIENTID_GRBM_CP"], SRC["GFX_11_0_0__SRCID__CP_BAD_OPCODE_ERROR"], opcode,
                      position, ring=state.ring_id)
    state.hung = f"{packet.name} at {where}: {why}"
    self.card.note(f"cp: bad packet {packet.name} at {where}: {why}; queue stopped")

  def execute(self, state: QueueState, packet) -> str | PendingIB | None:
    """Run one packet: None when done, WAIT to stall on it, a PendingIB to enter, else why it is refused."""
    if packet.note.startswith("truncated"):
      return packet.note
    handler = HANDLERS.get(packet.name)
    if handler is None:
      return "no handler for this packet in the simulated MEC"
    body = {name: (value, fields) for name, value, fields in packet.dwords}
    return handler(self, state, packet, body)


def packet_dwords(header: int) -> int:
  kind = header >> 30
  if kind == 3:
    count = (header >> 16) & 0x3FFF
    nop_only = ((header >> 8) & 0xFF) == pm4_facts.PACKET3["PACKET3_NOP"] and count == 0x3FFF
    return 1 if nop_only else count + 2
  if kind == 0:
    return ((header >> 16) & 0x3FFF) + 2
  return 1


@dataclass
class PendingIB:
  base: int
  ndw: int
  chain: bool


def data_words(packet, prefix: str) -> list[int]:
  return [value for name, value, _ in packet.dwords if name.startswith(prefix)]


def do_nop(cp, state, packet, body):
  return None


def do_set_sh_reg(cp, state, packet, body):
  start, end = (SH_REG_START, SH_REG_END) if packet.name == "PACKET3_SET_SH_REG" else \
      (UCONFIG_REG_START, UCONFIG_REG_END)
  addr = start + body["REG_OFFSET"][0]
  values = data_words(packet, "REG_DATA[")
  if addr + len(values) > end:
    return f"registers 0x{addr:x}..+{len(values)} run past 0x{end:x}"
  for i, value in enumerate(values):
    if packet.name == "PACKET3_SET_SH_REG":
      cp.card.regs.raw.write32((addr + i) * 4, value)
    else:
      cp.card.regs.write32((addr + i) * 4, value)
  return None


def do_write_data(cp, state, packet, body):
  control = body["CONTROL"][1]
  dst = body["DST_ADDR_LO"][0] | body["DST_ADDR_HI"][0] << 32
  data = data_words(packet, "DATA[")
  if control["DST_SEL"] == 5:
    ok = write_va(cp.card, dst, struct.pack(f"<{len(data)}I", *data), "WRITE_DATA", state.vmid)
    return None if ok else fault(state, f"WRITE_DATA to 0x{dst:x}")
  if control["DST_SEL"] == 0:
    for i, value in enumerate(data):
      cp.card.regs.write32((dst + (0 if control["WR_ONE_ADDR"] else i)) * 4, value)
    return None
  return f"WRITE_DATA DST_SEL {control['DST_SEL']} not modelled (0 register, 5 memory)"


def do_release_mem(cp, state, packet, body):
  cntl = body["DATA_CNTL"][1]
  if body["EVENT_CNTL"][1]["EVENT_TYPE"] not in cp.events:
    return f"EVENT_TYPE {body['EVENT_CNTL'][1]['EVENT_TYPE']} is no VGT event of this generation"
  dst = body["ADDRESS_LO"][0] | body["ADDRESS_HI"][0] << 32
  value = body["DATA_LO"][0] | body["DATA_HI"][0] << 32
  sel = cntl["DATA_SEL"]
  if sel not in (0, 1, 2, 3) or cntl["DST_SEL"] > 1:
    return f"DATA_SEL {sel} / DST_SEL {cntl['DST_SEL']} not modelled"
  if sel == 3:
    value = cp.card.gpu_clock()
  if sel and not write_va(cp.card, dst, value.to_bytes(8, "little")[:4 if sel == 1 else 8], "RELEASE_MEM",
                          state.vmid):
    return fault(state, f"RELEASE_MEM to 0x{dst:x}")
  if cntl["INT_SEL"]:
    cp.card.ih.post(CLIENT["SOC21_IH_CLIENTID_GRBM_CP"], SRC["GFX_11_0_0__SRCID__CP_EOP_INTERRUPT"],
                    body["INT_CTXID"][0], 0, ring=state.ring_id)
  return None


def do_event_write(cp, state, packet, body):
  event = body["EVENT_CNTL"][1]["EVENT_TYPE"]
  if event == cp.cs_partial_flush:
    state.in_flight.clear()   # every dispatch before it has ended: none overlaps the next one
  return None if event in cp.events else f"EVENT_TYPE {event} is no VGT event of this generation"


def do_wait_reg_mem(cp, state, packet, body):
  cntl = body["WAIT_CNTL"][1]
  lo, hi = body["POLL_ADDRESS_LO"][0], body["POLL_ADDRESS_HI"][0]
  reference, mask = body["REFERENCE"][0], body["MASK"][0]
  if cntl["FUNCTION"] not in COMPARE:
    return f"FUNCTION {cntl['FUNCTION']} not in nvd.h"
  if cntl["MEM_SPACE"] == 1:
    data = read_va(cp.card, lo | hi << 32, 4, "WAIT_REG_MEM", state.vmid)
    if data is None:
      return fault(state, f"WAIT_REG_MEM on 0x{lo | hi << 32:x}")
    value = int.from_bytes(data, "little")
  elif cntl["MEM_SPACE"] == 0:
    if cntl["OPERATION"]:
      cp.card.regs.write32(lo * 4, reference)
      lo = hi
    value = cp.card.regs.read32(lo * 4)
  else:
    return f"MEM_SPACE {cntl['MEM_SPACE']} not modelled"
  return None if compare(cntl["FUNCTION"], value & mask, reference) else WAIT


def do_indirect_buffer(cp, state, packet, body):
  control = body["IB_CONTROL"][1]
  base = body["IB_BASE_LO"][0] | body["IB_BASE_HI"][0] << 32
  if not control["VALID"]:
    return "IB_CONTROL.VALID = 0"
  if base & 3:
    return f"IB base 0x{base:x} not dword aligned"
  depth = len(state.frames) + (0 if control["CHAIN"] and state.frames else 1)
  if depth > MAX_IB_DEPTH:
    return f"IB nesting deeper than {MAX_IB_DEPTH}"
  if control["VMID"] and control["VMID"] != state.vmid:
    cp.card.note(f"cp: IB_CONTROL.VMID {control['VMID']} not modelled: the IB runs on the queue's VMID {state.vmid}")
  return PendingIB(base, control["IB_SIZE"], bool(control["CHAIN"]))


def do_copy_data(cp, state, packet, body):
  control = body["CONTROL"][1]
  src = body["SRC_ADDR_LO"][0] | body["SRC_ADDR_HI"][0] << 32
  dst = body["DST_ADDR_LO"][0] | body["DST_ADDR_HI"][0] << 32
  size = 8 if control["COUNT_SEL"] else 4
  sel = control["SRC_SEL"]
  if sel == 0:
    value = cp.card.regs.read32(src * 4) | (cp.card.regs.read32(src * 4 + 4) << 32 if size == 8 else 0)
  elif sel == 1:
    data = read_va(cp.card, src, size, "COPY_DATA source", state.vmid)
    if data is None:
      return fault(state, f"COPY_DATA from 0x{src:x}")
    value = int.from_bytes(data, "little")
  elif sel == 5:
    value = src if size == 8 else src & 0xFFFFFFFF
  elif sel == 9:
    value = cp.card.gpu_clock()
  else:
    return f"COPY_DATA SRC_SEL {sel} not modelled (0, 1, 5, 9)"
  if control["DST_SEL"] == 5:
    if not write_va(cp.card, dst, value.to_bytes(8, "little")[:size], "COPY_DATA", state.vmid):
      return fault(state, f"COPY_DATA to 0x{dst:x}")
  elif control["DST_SEL"] == 0:
    for i in range(size // 4):
      cp.card.regs.write32((dst + i) * 4, (value >> (32 * i)) & 0xFFFFFFFF)
  else:
    return f"COPY_DATA DST_SEL {control['DST_SEL']} not modelled (0, 5)"
  return None


def do_dispatch_direct(cp, state, packet, body):
  dims = (body["DIM_X"][0], body["DIM_Y"][0], body["DIM_Z"][0])
  started = shader.launch(cp.card, dims, body["DISPATCH_INITIATOR"][0], state.ring_id, state.vmid)
  if isinstance(started, str):
    state.hung = started
    return None
  state.busy = started
  where = f"IB 0x{state.frames[-1].base:x} dword {state.frames[-1].pos}" if state.frames else \
      f"ring dword {state.rptr}"
  name = cp.card.kernel_names.get(started.entry, "kernel")
  started.label = (f"dispatch {state.dispatches} ({name} at 0x{started.entry:x}, grid {dims} x block "
                   f"{started.block}, {where})")
  state.dispatches += 1
  return None


def fault(state, what: str) -> None:
  """A VM fault was posted by the translation; the queue stops on it (no retry faults)."""
  state.hung = f"{what} faulted"
  return None


HANDLERS = {"PACKET3_NOP": do_nop, "PACKET3_ACQUIRE_MEM": do_nop, "PACKET3_SET_SH_REG": do_set_sh_reg,
            "PACKET3_SET_UCONFIG_REG": do_set_sh_reg, "PACKET3_WRITE_DATA": do_write_data,
            "PACKET3_RELEASE_MEM": do_release_mem, "PACKET3_EVENT_WRITE": do_event_write,
            "PACKET3_WAIT_REG_MEM": do_wait_reg_mem, "PACKET3_INDIRECT_BUFFER": do_indirect_buffer,
            "PACKET3_COPY_DATA": do_copy_data, "PACKET3_DISPATCH_DIRECT": do_dispatch_direct}
