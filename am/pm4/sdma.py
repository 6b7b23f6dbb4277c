"""SDMA packets for SDMA 6.0 (Navi31) and SDMA 7.0 (Navi48): one emitter per packet, from the generated
sdma_v6_0_0_pkt_open.h table (am/generated/sdma_pkt.py), which linux 6.12 uses for both versions.

An SDMA packet starts with a header dword whose low byte is the op (SDMA_OP_*) and next byte the sub-op
(SDMA_SUBOP_*); the words that follow depend on the pair. Which SDMA_PKT_* layout goes with which (op, sub_op) is
how amdgpu pairs them in sdma_v6_0.c / sdma_v7_0.c (OPS below). Every emitter writes one dword per line with a
trailing comment naming the word. Version differences stay inside the emitters:

- COPY_LINEAR sets HEADER.cpv on SDMA 7 (sdma_v7_0_emit_copy_buffer), not on SDMA 6 (sdma_v6_0_emit_copy_buffer).
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass

from am.generated import sdma_pkt

VERSIONS = (6, 7)
OP = {name: value for name, value in sdma_pkt.CONSTANTS.items() if name.startswith("SDMA_OP_")}
SUBOP = {name: value for name, value in sdma_pkt.CONSTANTS.items() if name.startswith("SDMA_SUBOP_")}
POLL_FUNCTIONS = {"always": 0, "<": 1, "<=": 2, "==": 3, "!=": 4, ">=": 5, ">": 6}  # amdgpu: FUNC(3) /* == */


@dataclass(frozen=True)
class Word:
  name: str
  index: int
  fields: dict[str, tuple[int, int]]   # field -> (shift, unshifted mask), as the header writes them

  def encode(self, **values: int) -> int:
    """Raises: KeyError for an unknown field; ValueError for a value that does not fit."""
    word = 0
    for name, value in values.items():
      if name not in self.fields:
        raise KeyError(f"{self.name} has no field {name!r}; it has {', '.join(self.fields)}")
      shift, mask = self.fields[name]
      if not 0 <= value <= mask:
        raise ValueError(f"{self.name}.{name} = {value:#x}: the field holds 0..{mask:#x}")
      word |= value << shift
    return word

  def decode(self, value: int) -> dict[str, int]:
    out = {name: (value >> shift) & mask for name, (shift, mask) in self.fields.items()}
    covered = 0
    for shift, mask in self.fields.values():
      covered |= mask << shift
    stray = value & ~covered & 0xFFFFFFFF
    while stray:
      bit = (stray & -stray).bit_length() - 1
      out[f"unk_{bit}"] = 1
      stray &= stray - 1
    return out


@dataclass(frozen=True)
class SdmaPacket:
  name: str
  words: tuple[Word, ...]

  def word(self, name: str) -> Word:
    for w in self.words:
      if w.name == name:
        return w
    raise KeyError(f"{self.name} has no word {name}")


def layout(name: str) -> SdmaPacket:
  words = tuple(Word(word, index, {f: (shift, mask) for f, shift, mask in fields})
                for word, index, fields in sdma_pkt.PACKETS[name])
  return SdmaPacket(name, words)


# (op, sub_op) -> layout, as amdgpu pairs them (sdma_v6_0.c: ring_insert_nop, emit_copy_buffer, ring_test_ring,
# ring_emit_fence, ring_emit_pipeline_sync / reg_wait / hdp_flush, ring_emit_ib, ring_emit_wreg, emit_mem_sync)
OPS = {
  (OP["SDMA_OP_NOP"], 0): "SDMA_PKT_NOP",
  (OP["SDMA_OP_COPY"], SUBOP["SDMA_SUBOP_COPY_LINEAR"]): "SDMA_PKT_COPY_LINEAR",
  (OP["SDMA_OP_WRITE"], SUBOP["SDMA_SUBOP_WRITE_LINEAR"]): "SDMA_PKT_WRITE_UNTILED",
  (OP["SDMA_OP_INDIRECT"], 0): "SDMA_PKT_INDIRECT",
  (OP["SDMA_OP_FENCE"], 0): "SDMA_PKT_FENCE",
  (OP["SDMA_OP_TRAP"], 0): "SDMA_PKT_TRAP",
  (OP["SDMA_OP_POLL_REGMEM"], 0): "SDMA_PKT_POLL_REGMEM",
  (OP["SDMA_OP_TIMESTAMP"], SUBOP["SDMA_SUBOP_TIMESTAMP_SET"]): "SDMA_PKT_TIMESTAMP_SET",
  (OP["SDMA_OP_TIMESTAMP"], SUBOP["SDMA_SUBOP_TIMESTAMP_GET"]): "SDMA_PKT_TIMESTAMP_GET",
  (OP["SDMA_OP_TIMESTAMP"], SUBOP["SDMA_SUBOP_TIMESTAMP_GET_GLOBAL"]): "SDMA_PKT_TIMESTAMP_GET_GLOBAL",
  (OP["SDMA_OP_SRBM_WRITE"], 0): "SDMA_PKT_SRBM_WRITE",
  (OP["SDMA_OP_GCR_REQ"], 0): "SDMA_PKT_GCR_REQ",
}
LAYOUTS = {name: layout(name) for name in OPS.values()}
COPY_LINEAR = LAYOUTS["SDMA_PKT_COPY_LINEAR"]
WRITE_UNTILED = LAYOUTS["SDMA_PKT_WRITE_UNTILED"]
FENCE = LAYOUTS["SDMA_PKT_FENCE"]
TRAP = LAYOUTS["SDMA_PKT_TRAP"]
POLL_REGMEM = LAYOUTS["SDMA_PKT_POLL_REGMEM"]
TIMESTAMP_GET = LAYOUTS["SDMA_PKT_TIMESTAMP_GET"]
TIMESTAMP_GET_GLOBAL = LAYOUTS["SDMA_PKT_TIMESTAMP_GET_GLOBAL"]
NOP = LAYOUTS["SDMA_PKT_NOP"]
MAX_COPY = COPY_LINEAR.word("COUNT").fields["count"][1] + 1  # bytes one COPY_LINEAR moves (COUNT is bytes - 1)


def lo32(value: int) -> int:
  return value & 0xFFFFFFFF


def hi32(value: int) -> int:
  return (value >> 32) & 0xFFFFFFFF


class SDMAStream:
  """A growing list of SDMA dwords for SDMA version 6 (Navi31) or 7 (Navi48)."""

  def __init__(self, version: int):
    if version not in VERSIONS:
      raise ValueError(f"SDMA version {version}: AM emits SDMA packets for {VERSIONS}")
    self.version = version
    self.words = array("I")

  def __len__(self) -> int:
    return len(self.words)

  def tobytes(self) -> bytes:
    return self.words.tobytes()

  def nop(self, ndw: int = 1) -> SDMAStream:
    """`ndw` one-dword NOPs (amdgpu's ring .nop; burst NOPs with a count are decoded too)."""
    for _ in range(ndw):
      self.words.append(NOP.word("HEADER").encode(op=OP["SDMA_OP_NOP"]))  # HEADER: op NOP, count 0
    return self

  def copy_linear(self, dst: int, src: int, nbytes: int, tmz: int = 0) -> SDMAStream:
    """Copy `nbytes` (1..MAX_COPY) from `src` to `dst`, byte addresses."""
    if not 1 <= nbytes <= MAX_COPY:
      raise ValueError(f"COPY_LINEAR of {nbytes} bytes: one packet moves 1..{MAX_COPY}; split the copy")
    cpv = 1 if self.version == 7 else 0  # sdma_v7_0_emit_copy_buffer sets CPV; sdma_v6_0 has no such bit set
    self.words.append(COPY_LINEAR.word("HEADER").encode(op=OP["SDMA_OP_COPY"], sub_op=SUBOP["SDMA_SUBOP_COPY_LINEAR"],
                                                        tmz=tmz, cpv=cpv))  # HEADER
    self.words.append(COPY_LINEAR.word("COUNT").encode(count=nbytes - 1))  # COUNT: bytes - 1
    self.words.append(0)                                   # PARAMETER: no endian swap, default cache policy
    self.words.append(lo32(src))                           # SRC_ADDR_LO
    self.words.append(hi32(src))                           # SRC_ADDR_HI
    self.words.append(lo32(dst))                           # DST_ADDR_LO
    self.words.append(hi32(dst))                           # DST_ADDR_HI
    return self

  def write(self, dst: int, *data: int) -> SDMAStream:
    """Write `data` dwords to `dst` (WRITE_LINEAR into SDMA_PKT_WRITE_UNTILED)."""
    if not data:
      raise ValueError("SDMA WRITE with no data")
    self.words.append(WRITE_UNTILED.word("HEADER").encode(op=OP["SDMA_OP_WRITE"],
                                                          sub_op=SUBOP["SDMA_SUBOP_WRITE_LINEAR"]))  # HEADER
    self.words.append(lo32(dst))                           # DST_ADDR_LO
    self.words.append(hi32(dst))                           # DST_ADDR_HI
    self.words.append(WRITE_UNTILED.word("DW_3").encode(count=len(data) - 1))  # DW_3: dwords - 1
    self.words.extend(lo32(d) for d in data)               # DATA0..
    return self

  def fence(self, address: int, value: int, mtype: int = 3) -> SDMAStream:
    """Write the 32-bit `value` to `address` once the packets before it are done (amdgpu: MTYPE 3, uncached)."""
    if address & 3:
      raise ValueError(f"SDMA FENCE to 0x{address:x}: needs a 4-byte aligned address")
    self.words.append(FENCE.word("HEADER").encode(op=OP["SDMA_OP_FENCE"], mtype=mtype))  # HEADER: op FENCE, MTYPE
    self.words.append(lo32(address))                       # ADDR_LO
    self.words.append(hi32(address))                       # ADDR_HI
    self.words.append(lo32(value))                         # DATA
    return self

  def trap(self, int_context: int = 0) -> SDMAStream:
    """Raise the SDMA trap interrupt, with `int_context` in the IH entry."""
    self.words.append(TRAP.word("HEADER").encode(op=OP["SDMA_OP_TRAP"]))  # HEADER: op TRAP
    self.words.append(TRAP.word("INT_CONTEXT").encode(int_context=int_context))  # INT_CONTEXT
    return self

  def poll_regmem(self, mem_poll: int, address: int, reference: int, mask: int, function: str = "==",
                  hdp_flush: int = 0, retry_count: int = 0xFFF, interval: int = 10) -> SDMAStream:
    """Stall until (*address & mask) <function> reference. mem_poll 1: `address` is a byte address in memory; 0: a
    register's byte address (amdgpu writes reg << 2)."""
    if function not in POLL_FUNCTIONS:
      raise ValueError(f"POLL_REGMEM function {function!r}: one of {', '.join(POLL_FUNCTIONS)}")
    if address & 3:
      raise ValueError(f"POLL_REGMEM at 0x{address:x}: needs a 4-byte aligned address")
    self.words.append(POLL_REGMEM.word("HEADER").encode(op=OP["SDMA_OP_POLL_REGMEM"], hdp_flush=hdp_flush,
                                                        func=POLL_FUNCTIONS[function], mem_poll=mem_poll))  # HEADER
    self.words.append(lo32(address))                       # ADDR_LO
    self.words.append(hi32(address))                       # ADDR_HI
    self.words.append(lo32(reference))                     # VALUE: reference
    self.words.append(lo32(mask))                          # MASK
    self.words.append(POLL_REGMEM.word("DW5").encode(interval=interval, retry_count=retry_count))  # DW5
    return self

  def hdp_flush(self, req_reg: int, done_reg: int, ref_and_mask: int) -> SDMAStream:
    """Flush HDP and wait for it (sdma_v6_0_ring_emit_hdp_flush): POLL_REGMEM with HDP_FLUSH writes ref_and_mask to
    the request register, then polls the done register until (done & ref_and_mask) == ref_and_mask. The registers
    are NBIO dword addresses (get_hdp_flush_req_offset / _done_offset); the packet carries them as byte offsets."""
    self.words.append(POLL_REGMEM.word("HEADER").encode(op=OP["SDMA_OP_POLL_REGMEM"], hdp_flush=1,
                                                        func=POLL_FUNCTIONS["=="]))  # HEADER: HDP_FLUSH, FUNC ==
    self.words.append(done_reg << 2)                       # ADDR_LO: the done register's byte offset
    self.words.append(req_reg << 2)                        # ADDR_HI: the request register's byte offset
    self.words.append(lo32(ref_and_mask))                  # VALUE: reference
    self.words.append(lo32(ref_and_mask))                  # MASK
    self.words.append(POLL_REGMEM.word("DW5").encode(interval=10, retry_count=0xFFF))  # DW5: retries, interval
    return self

  def timestamp(self, address: int, global_counter: bool = True) -> SDMAStream:
    """Write the 64-bit GPU timestamp to `address` (8-byte aligned): the global counter (TIMESTAMP_GET_GLOBAL) or
    the engine's (TIMESTAMP_GET)."""
    if address & 7:
      raise ValueError(f"SDMA TIMESTAMP to 0x{address:x}: needs an 8-byte aligned address")
    packet, sub_op = ((TIMESTAMP_GET_GLOBAL, "SDMA_SUBOP_TIMESTAMP_GET_GLOBAL") if global_counter
                      else (TIMESTAMP_GET, "SDMA_SUBOP_TIMESTAMP_GET"))
    self.words.append(packet.word("HEADER").encode(op=OP["SDMA_OP_TIMESTAMP"], sub_op=SUBOP[sub_op]))  # HEADER
    self.words.append(packet.word("WRITE_ADDR_LO").encode(write_addr_31_3=lo32(address) >> 3))  # WRITE_ADDR_LO
    self.words.append(hi32(address))                       # WRITE_ADDR_HI
    return self
