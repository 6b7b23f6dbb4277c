"""Pushbuffers: the method streams a GPFIFO channel fetches, one emitter per method group, and a decoder.

A pushbuffer is a sequence of 32-bit words. A header word names a method (a register of the engine class bound to a
subchannel) and how many data words follow (FACTS.md 5.4, from clc36f.h's NVC36F_DMA_* fields):

  bits 11:0  method address >> 2        bits 15:13  subchannel
  bits 28:16 count (or immediate data)  bits 31:29  SEC_OP: 1 INC (data to consecutive methods),
                                                    3 NON_INC (all data to one method), 4 IMMD (data in 28:16)

Subchannels are a software convention (FACTS.md 5.4): nvdrv binds the compute class on SUBC_COMPUTE and the copy
class on SUBC_COPY; host-class methods (semaphores, WFI, memory ops) work on any subchannel.

Every emitter appends the words of one method group and comments each dword. Values that a replay patches later
(addresses, semaphore payloads) are recorded with `mark(name)`, so a prebuilt buffer can be resubmitted with new
values by writing those words in place (see `PushBuffer.patch`).
"""
from __future__ import annotations

import struct
from array import array

from nvdrv import methods as m

SUBC_COMPUTE = 1
SUBC_COPY = 4

SEC_OP_INC = 1
SEC_OP_NON_INC = 3
SEC_OP_IMMD = 4
SEC_OP_NAMES = {0: "GRP0", 1: "INC", 2: "GRP2", 3: "NON_INC", 4: "IMMD", 5: "ONE_INC", 6: "RSVD", 7: "END_PB"}


def header(subc: int, method: int, count: int, sec_op: int = SEC_OP_INC) -> int:
  if not 0 <= subc < 8:
    raise ValueError(f"subchannel {subc} for method 0x{method:x}: the subchannel field (bits 15:13) holds 0..7")
  if not 0 <= sec_op < 8:
    raise ValueError(f"SEC_OP {sec_op} for method 0x{method:x}: the SEC_OP field (bits 31:29) holds 0..7")
  if method & 3 or method >= (1 << 14):
    raise ValueError(f"method 0x{method:x} is not a dword offset below 0x4000")
  if not 0 <= count < (1 << 13):
    raise ValueError(f"method 0x{method:x} with {count} data words: the count field holds at most 8191")
  return (sec_op << 29) | (count << 16) | (subc << 13) | (method >> 2)


def lo32(value: int) -> int:
  return value & 0xFFFFFFFF


def hi32(value: int) -> int:
  return (value >> 32) & 0xFFFFFFFF


class PushBuffer:
  """A growing list of pushbuffer words with named patch points."""

  def __init__(self):
    self.words = array("I")
    self.marks: dict[str, list[int]] = {}

  def __len__(self) -> int:
    return len(self.words)

  def mark(self, name: str) -> None:
    """Record that the next word is the value `name` (a replay may rewrite it)."""
    self.marks.setdefault(name, []).append(len(self.words))

  def patch(self, name: str, value: int) -> None:
    for index in self.marks[name]:
      self.words[index] = value & 0xFFFFFFFF

  def method(self, subc: int, method: int, *data: int) -> PushBuffer:
    self.words.append(header(subc, method, len(data)))
    self.words.extend(d & 0xFFFFFFFF for d in data)
    return self

  def method_non_inc(self, subc: int, method: int, data: bytes | array) -> PushBuffer:
    words = array("I", bytes(data)) if not isinstance(data, array) else data
    self.words.append(header(subc, method, len(words), SEC_OP_NON_INC))
    self.words.extend(words)
    return self

  def tobytes(self) -> bytes:
    return self.words.tobytes()

  # ---- host class (HOPPER_CHANNEL_GPFIFO_A, clc86f.h; FACTS.md 5.5) ----
  def set_object(self, subc: int, hclass: int) -> PushBuffer:
    return self.method(subc, m.NVC86F_SET_OBJECT, hclass)

  def semaphore_release(self, address: int, payload: int, wfi: bool = True, name: str | None = None) -> PushBuffer:
    """Write the 64-bit `payload` to `address` once the methods before it are done (with wfi: once the engines
    are idle, so every earlier kernel's writes are visible first)."""
    execute = (m.SEM_EXECUTE_OPERATION_RELEASE | m.SEM_EXECUTE_PAYLOAD_SIZE_64BIT
               | (m.SEM_EXECUTE_RELEASE_WFI_EN if wfi else 0))
    self.words.append(header(0, m.NVC86F_SEM_ADDR_LO, 5))
    if name:
      self.mark(name + ".addr_lo")
    self.words.append(lo32(address))                      # SEM_ADDR_LO: address bits 31:2
    if name:
      self.mark(name + ".addr_hi")
    self.words.append(hi32(address))                      # SEM_ADDR_HI: address bits 56:32
    if name:
      self.mark(name + ".payload_lo")
    self.words.append(lo32(payload))                      # SEM_PAYLOAD_LO
    if name:
      self.mark(name + ".payload_hi")
    self.words.append(hi32(payload))                      # SEM_PAYLOAD_HI
    self.words.append(execute)                            # SEM_EXECUTE: RELEASE, 64-bit payload, WFI
    return self

  def semaphore_acquire(self, address: int, payload: int, name: str | None = None) -> PushBuffer:
    """Stall this channel until the 32-bit value at `address` is >= `payload` in circular order."""
    self.words.append(header(0, m.NVC86F_SEM_ADDR_LO, 5))
    self.words.append(lo32(address))                      # SEM_ADDR_LO
    self.words.append(hi32(address))                      # SEM_ADDR_HI
    if name:
      self.mark(name + ".payload_lo")
    self.words.append(lo32(payload))                      # SEM_PAYLOAD_LO
    self.words.append(0)                                  # SEM_PAYLOAD_HI (unused: 32-bit acquire)
    self.words.append(m.SEM_EXECUTE_OPERATION_ACQ_CIRC_GEQ | m.SEM_EXECUTE_ACQUIRE_SWITCH_TSG_EN)  # SEM_EXECUTE
    return self

  def wfi(self) -> PushBuffer:
    return self.method(0, m.NVC86F_WFI, m.WFI_SCOPE_ALL)  # WFI: wait until every engine of the channel is idle

  # ---- compute class (HOPPER_COMPUTE_A, clcbc0.h; FACTS.md 5.6) ----
  def compute_windows(self, shared_window: int, local_window: int) -> PushBuffer:
    """Where the shared- and local-memory windows sit in the generic address space (never overlapping our VAs)."""
    self.method(SUBC_COMPUTE, m.NVCBC0_SET_SHADER_SHARED_MEMORY_WINDOW_A,
                hi32(shared_window),                      # SET_SHADER_SHARED_MEMORY_WINDOW_A: base bits 48:32
                lo32(shared_window))                      # SET_SHADER_SHARED_MEMORY_WINDOW_B: base bits 31:0
    return self.method(SUBC_COMPUTE, m.NVCBC0_SET_SHADER_LOCAL_MEMORY_WINDOW_A,
                       hi32(local_window),                # SET_SHADER_LOCAL_MEMORY_WINDOW_A
                       lo32(local_window))                # SET_SHADER_LOCAL_MEMORY_WINDOW_B

  def compute_local_memory(self, base: int, bytes_per_tpc: int, max_sm_count: int) -> PushBuffer:
    """The backing store for per-thread local memory (stack, spills): `bytes_per_tpc` for each TPC."""
    self.method(SUBC_COMPUTE, m.NVCBC0_SET_SHADER_LOCAL_MEMORY_A,
                hi32(base),                               # SET_SHADER_LOCAL_MEMORY_A: address bits 56:32
                lo32(base))                               # SET_SHADER_LOCAL_MEMORY_B: address bits 31:0
    return self.method(SUBC_COMPUTE, m.NVCBC0_SET_SHADER_LOCAL_MEMORY_NON_THROTTLED_A,
                       hi32(bytes_per_tpc),               # NON_THROTTLED_A: size per TPC, upper
                       lo32(bytes_per_tpc),               # NON_THROTTLED_B: size per TPC, lower
                       max_sm_count)                      # NON_THROTTLED_C: max SM count
  def compute_wfi(self) -> PushBuffer:
    """Wait until the compute engine is idle and its written data is flushed (INVALIDATE_SHADER_CACHES, which waits
    for idle unlike the _NO_WFI form; FLUSH_DATA bit 2 and DATA bit 4)."""
    return self.method(SUBC_COMPUTE, m.NVCBC0_INVALIDATE_SHADER_CACHES, m.FLUSH_DATA | m.INVALIDATE_DATA)

  def invalidate_caches(self) -> PushBuffer:
    return self.method(SUBC_COMPUTE, m.NVCBC0_INVALIDATE_SHADER_CACHES_NO_WFI,
                       m.INVALIDATE_INSTRUCTION | m.INVALIDATE_GLOBAL_DATA | m.INVALIDATE_CONSTANT)  # I$, data, cbufs

  def launch(self, qmd_address: int, name: str | None = None) -> PushBuffer:
    """Schedule the QMD at `qmd_address` (256-byte aligned): PCAS = the QMD pointer, then invalidate-copy-schedule."""
    if qmd_address & 0xFF:
      raise ValueError(f"QMD address 0x{qmd_address:x} is not 256-byte aligned")
    self.words.append(header(SUBC_COMPUTE, m.NVCBC0_SEND_PCAS_A, 1))
    if name:
      self.mark(name + ".qmd")
    self.words.append(qmd_address >> 8)                   # SEND_PCAS_A: QMD_ADDRESS_SHIFTED8
    return self.method(SUBC_COMPUTE, m.NVCBC0_SEND_SIGNALING_PCAS2_B,
                       m.PCAS_ACTION_INVALIDATE_COPY_SCHEDULE)  # SEND_SIGNALING_PCAS2_B: PCAS_ACTION

  # ---- copy class (HOPPER_DMA_COPY_A, clc8b5.h) ----
  def copy(self, dst: int, src: int, nbytes: int, name: str | None = None) -> PushBuffer:
    """A 1-D copy of `nbytes` (< 2**32) between virtual addresses, pipelined, flushed when done."""
    if not 0 < nbytes < (1 << 32):
      raise ValueError(f"one copy-engine launch moves 1..2**32-1 bytes, not {nbytes}; split the copy")
    self.words.append(header(SUBC_COPY, m.NVC8B5_OFFSET_IN_UPPER, 4))
    if name:
      self.mark(name + ".src_hi")
    self.words.append(hi32(src))                          # OFFSET_IN_UPPER: bits 56:32
    if name:
      self.mark(name + ".src_lo")
    self.words.append(lo32(src))                          # OFFSET_IN_LOWER
    if name:
      self.mark(name + ".dst_hi")
    self.words.append(hi32(dst))                          # OFFSET_OUT_UPPER
    if name:
      self.mark(name + ".dst_lo")
    self.words.append(lo32(dst))                          # OFFSET_OUT_LOWER
    self.method(SUBC_COPY, m.NVC8B5_LINE_LENGTH_IN, nbytes)  # LINE_LENGTH_IN: bytes in the one line
    return self.method(SUBC_COPY, m.NVC8B5_LAUNCH_DMA,
                       m.LAUNCH_DMA_1D_COPY)              # LAUNCH_DMA: pipelined, pitch->pitch, flush, no semaphore


def gpfifo_entry(address: int, nwords: int) -> int:
  """The 64-bit GPFIFO entry pointing at a pushbuffer segment (FACTS.md 5.1): GET = VA bits 39:2 across both words,
  LENGTH in words at entry bits 62:42. Addresses at or above 2**40 would spill into LEVEL/LENGTH, and LENGTH 0 would
  make a control entry whose OPCODE is GET_HI, so both are refused."""
  if address & 3 or not 0 <= address < (1 << 40) or not 0 < nwords < (1 << 21):
    raise ValueError(f"pushbuffer segment at {address:#x} of {nwords} words: a GPFIFO entry needs a 4-byte aligned "
                     f"address below 2**40 and 1..2**21-1 words")
  return address | (nwords << 42)


def decode(words, classes: dict[int, int] | None = None) -> list[str]:
  """Pretty-print pushbuffer `words` by method name. `classes` maps subchannel -> bound class (default: compute on
  SUBC_COMPUTE, copy on SUBC_COPY)."""
  classes = classes or {SUBC_COMPUTE: m.HOPPER_COMPUTE_A, SUBC_COPY: m.HOPPER_DMA_COPY_A}
  words = list(words)
  lines, i = [], 0
  while i < len(words):
    word = words[i]
    method, subc = (word & 0xFFF) << 2, (word >> 13) & 7
    count, sec_op = (word >> 16) & 0x1FFF, word >> 29
    if sec_op == SEC_OP_IMMD:
      lines.append(f"{i:5d}: [{subc}] {m.method_name(classes.get(subc), method)} = 0x{count:x} (immediate)")
      i += 1
      continue
    for k in range(count):
      target = method + 4 * k if sec_op == SEC_OP_INC else method
      value = words[i + 1 + k] if i + 1 + k < len(words) else None
      shown = "<truncated>" if value is None else f"0x{value:08x}"
      lines.append(f"{i + 1 + k:5d}: [{subc}] {m.method_name(classes.get(subc), target)} = {shown}")
    if count == 0:
      lines.append(f"{i:5d}: [{subc}] {SEC_OP_NAMES[sec_op]} header with no data (0x{word:08x})")
    i += 1 + count
  return lines


def qwords(data: bytes) -> list[int]:
  return list(struct.unpack(f"<{len(data) // 8}Q", data))
