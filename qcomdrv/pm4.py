"""Adreno command streams: type-4 register writes and type-7 packets, one emitter per packet used for compute.

Packet headers (Mesa 25.0.7 src/freedreno/common/freedreno_pm4.h, pm4_pkt4_hdr / pm4_pkt7_hdr; the type values
CP_TYPE4_PKT 0x40000000 and CP_TYPE7_PKT 0x70000000 are adreno_pm4.xml's adreno_pm4_packet_type):

  PKT4  bits 31:28 = 4   bit 27 = odd parity of the register offset   bits 25:8 = register dword offset
        bit 7 = odd parity of the count   bits 6:0 = count: that many registers from the offset, one dword each
  PKT7  bits 31:28 = 7   bits 27:24 = 0   bit 23 = odd parity of the opcode   bits 22:16 = opcode
        bit 15 = odd parity of the count   bits 13:0 = count of payload dwords

"Odd parity" bit p of a value v makes popcount(v) + p odd. The CP rejects a header whose parity bits are wrong
(cffdec's pkt_is_type4/pkt_is_type7 checks are the same rule), so every header is built by `pkt4_header` /
`pkt7_header` and nothing else.

Every emitter appends one packet with one payload dword per line, each commented with its field. Generation
differences stay inside the emitters (`chip.has_event_write7`, the register table of `chip.gen`): CP_EVENT_WRITE on
a6xx and CP_EVENT_WRITE7 on a7xx share opcode 0x46 but not their payload; HLSQ_CS_* moved to new offsets on a7xx.
"""
from __future__ import annotations

from array import array

from qcomdrv.chips import ChipInfo
from qcomdrv.regs import packets, registers

CP_TYPE4_PKT = 0x4
CP_TYPE7_PKT = 0x7
PKT4_MAX_COUNT = 0x7F
PKT4_MAX_OFFSET = 0x3FFFF
PKT7_MAX_COUNT = 0x3FFF


def odd_parity_bit(value: int) -> int:
  """The bit that makes popcount(value) + bit odd."""
  return (bin(value).count("1") + 1) & 1


def pkt4_header(offset: int, count: int) -> int:
  if not 0 < offset <= PKT4_MAX_OFFSET:
    raise ValueError(f"PKT4 register offset 0x{offset:x} is outside 1..0x{PKT4_MAX_OFFSET:x}")
  if not 0 < count <= PKT4_MAX_COUNT:
    raise ValueError(f"PKT4 of {count} registers at 0x{offset:x}: one PKT4 writes 1..{PKT4_MAX_COUNT}")
  return ((CP_TYPE4_PKT << 28) | (odd_parity_bit(offset) << 27) | (offset << 8)
          | (odd_parity_bit(count) << 7) | count)


def pkt7_header(opcode: int, count: int) -> int:
  if not 0 <= opcode <= 0x7F:
    raise ValueError(f"PKT7 opcode 0x{opcode:x} does not fit 7 bits")
  if not 0 <= count <= PKT7_MAX_COUNT:
    raise ValueError(f"PKT7 0x{opcode:x} with {count} payload dwords: at most {PKT7_MAX_COUNT}")
  return ((CP_TYPE7_PKT << 28) | (odd_parity_bit(opcode) << 23) | (opcode << 16)
          | (odd_parity_bit(count) << 15) | count)


def lo32(value: int) -> int:
  return value & 0xFFFFFFFF


def hi32(value: int) -> int:
  return (value >> 32) & 0xFFFFFFFF


class CommandStream:
  """A growing list of command-stream dwords for one chip, with one emitter per packet."""

  def __init__(self, chip: ChipInfo):
    self.chip = chip
    self.regs = registers(chip.gen)
    self.pm4 = packets(chip.gen)
    self.words = array("I")

  def __len__(self) -> int:
    return len(self.words)

  def tobytes(self) -> bytes:
    return self.words.tobytes()

  # ---- generic packets ----
  def pkt4(self, name: str, *values: int) -> CommandStream:
    """Write `values` to the registers starting at register `name` (consecutive dword offsets; a 64-bit register
    takes two values, low then high). Emitters call this with values made by Register.encode."""
    reg = self.regs[name]
    self.words.append(pkt4_header(reg.offset, len(values)))
    self.words.extend(lo32(v) for v in values)
    return self

  def reg(self, name: str, value: int | None = None, **fields) -> CommandStream:
    """One register write by name and fields (a 64-bit register becomes its low and high dwords)."""
    reg = self.regs[name]
    word = reg.encode(value, **fields)
    if reg.dwords == 2:
      return self.pkt4(name, lo32(word), hi32(word))
    return self.pkt4(name, word)

  def pkt7(self, name: str, *payload: int) -> CommandStream:
    self.words.append(pkt7_header(self.pm4.opcode(name), len(payload)))
    self.words.extend(lo32(v) for v in payload)
    return self

  def field(self, packet: str, index: int, **fields) -> int:
    """Payload dword `index` of `packet` from named fields (adreno_pm4.xml's layout for this generation)."""
    return self.pm4.dword(packet, index).encode(**fields)

  # ---- type-7 emitters ----
  def nop(self, *payload: int) -> CommandStream:
    return self.pkt7("CP_NOP", *payload)                  # CP_NOP: payload skipped by the CP

  def set_marker(self, mode: str = "RM6_COMPUTE") -> CommandStream:
    """Tell the CP which mode the following commands run in (RM6_COMPUTE before dispatches; preemption uses it)."""
    return self.pkt7("CP_SET_MARKER",
                     self.field("CP_SET_MARKER", 0, MARKER_MODE="SET_RENDER_MODE", MODE=mode))  # 0: MODE

  def wait_for_idle(self) -> CommandStream:
    return self.pkt7("CP_WAIT_FOR_IDLE")                  # CP_WAIT_FOR_IDLE: no payload

  def event_write(self, event: str, address: int | None = None, value: int = 0) -> CommandStream:
    """Trigger `event` (vgt_event_type), and with `address` write the 32-bit `value` there once the event is done
    (CACHE_FLUSH_TS: after the caches are flushed, so the value lands after every earlier write)."""
    if self.chip.has_event_write7:
      return self.event_write7(event, address, value)
    if address is None:
      return self.pkt7("CP_EVENT_WRITE", self.field("CP_EVENT_WRITE", 0, EVENT=event))  # 0: EVENT
    return self.pkt7("CP_EVENT_WRITE",
                     self.field("CP_EVENT_WRITE", 0, EVENT=event),  # 0: EVENT
                     lo32(address),                       # 1: ADDR_0_LO
                     hi32(address),                       # 2: ADDR_0_HI
                     value)                               # 3: the value written (the payload dword)

  def event_write7(self, event: str, address: int | None = None, value: int = 0) -> CommandStream:
    """a7xx: CP_EVENT_WRITE7; with `address`, WRITE_SRC = EV_WRITE_USER_32B to EV_DST_RAM."""
    if address is None:
      return self.pkt7("CP_EVENT_WRITE7", self.field("CP_EVENT_WRITE7", 0, EVENT=event))  # 0: EVENT
    control = self.field("CP_EVENT_WRITE7", 0, EVENT=event, WRITE_SRC="EV_WRITE_USER_32B", WRITE_DST="EV_DST_RAM",
                         WRITE_ENABLED=True)
    return self.pkt7("CP_EVENT_WRITE7",
                     control,                             # 0: EVENT, WRITE_SRC, WRITE_DST, WRITE_ENABLED
                     lo32(address),                       # 1: address, low
                     hi32(address),                       # 2: address, high
                     value)                               # 3: PAYLOAD_0

  def cache_invalidate(self) -> CommandStream:
    """Invalidate the GPU caches (UCHE) so the next dispatch reads what the CPU wrote."""
    return self.event_write("CACHE_INVALIDATE7" if self.chip.has_event_write7 else "CACHE_INVALIDATE")

  def cache_flush_ts(self, address: int, value: int) -> CommandStream:
    """Flush the GPU caches to memory, then write `value` to `address` (the end-of-submission fence)."""
    return self.event_write("CACHE_FLUSH_TS", address, value)

  def wait_reg_mem(self, address: int, ref: int, mask: int = 0xFFFFFFFF, function: str = "WRITE_GE",
                   delay: int = 16) -> CommandStream:
    """Stall the CP until (*address & mask) `function` ref holds (cp_cond_function: WRITE_EQ, WRITE_GE, ...)."""
    return self.pkt7("CP_WAIT_REG_MEM",
                     self.field("CP_WAIT_REG_MEM", 0, FUNCTION=function, POLL="POLL_MEMORY"),  # 0: FUNCTION, POLL
                     lo32(address),                       # 1: POLL_ADDR_LO
                     hi32(address),                       # 2: POLL_ADDR_HI
                     ref,                                 # 3: REF
                     mask,                                # 4: MASK
                     delay)                               # 5: DELAY_LOOP_CYCLES

  def reg_to_mem(self, name: str, address: int) -> CommandStream:
    """Copy register `name` (both dwords of a 64-bit one) to memory at `address`."""
    reg = self.regs[name]
    wide = reg.dwords == 2
    return self.pkt7("CP_REG_TO_MEM",
                     self.field("CP_REG_TO_MEM", 0, REG=reg.offset, CNT=2 if wide else 1,
                                **{"64B": wide}),  # 0: REG, CNT, 64B
                     lo32(address),                       # 1: DEST
                     hi32(address))                       # 2: DEST_HI

  def mem_write(self, address: int, *values: int) -> CommandStream:
    return self.pkt7("CP_MEM_WRITE",
                     lo32(address),                       # 0: ADDR_LO
                     hi32(address),                       # 1: ADDR_HI
                     *values)                             # 2..: the dwords written

  def load_state6_frag(self, state_type: str, state_src: str, dst_off: int, num_unit: int,
                       address: int = 0, data: bytes = b"") -> CommandStream:
    """CP_LOAD_STATE6_FRAG for the compute stage (STATE_BLOCK SB6_CS_SHADER): SS6_INDIRECT loads `num_unit` units
    from `address`, SS6_DIRECT loads the inline `data` (4 dwords per unit for ST6_CONSTANTS)."""
    words = array("I", data)
    control = self.field("CP_LOAD_STATE6_FRAG", 0, DST_OFF=dst_off, STATE_TYPE=state_type, STATE_SRC=state_src,
                         STATE_BLOCK="SB6_CS_SHADER", NUM_UNIT=num_unit)
    return self.pkt7("CP_LOAD_STATE6_FRAG",
                     control,                             # 0: DST_OFF, STATE_TYPE, STATE_SRC, STATE_BLOCK, NUM_UNIT
                     self.field("CP_LOAD_STATE6_FRAG", 1, EXT_SRC_ADDR=lo32(address)),  # 1: EXT_SRC_ADDR
                     self.field("CP_LOAD_STATE6_FRAG", 2, EXT_SRC_ADDR_HI=hi32(address)),  # 2: EXT_SRC_ADDR_HI
                     *words)                              # 3..: inline state (SS6_DIRECT)

  def exec_cs(self, groups: tuple[int, int, int]) -> CommandStream:
    """Dispatch the bound compute program over `groups` workgroups."""
    return self.pkt7("CP_EXEC_CS",
                     0,                                   # 0: (reserved)
                     self.field("CP_EXEC_CS", 1, NGROUPS_X=groups[0]),  # 1: NGROUPS_X
                     self.field("CP_EXEC_CS", 2, NGROUPS_Y=groups[1]),  # 2: NGROUPS_Y
                     self.field("CP_EXEC_CS", 3, NGROUPS_Z=groups[2]))  # 3: NGROUPS_Z

  def run_opencl(self) -> CommandStream:
    """The OpenCL blob's dispatch: the grid comes from HLSQ_CS_KERNEL_GROUP_X/Y/Z. adreno_pm4.xml documents no
    payload layout; one zero dword is sent (unk_0: meaning unknown, unverified without hardware)."""
    return self.pkt7("CP_RUN_OPENCL", 0)                  # 0: unk_0

  # ---- compute state (type-4 writes; register names from a6xx.xml of this generation) ----
  def hlsq_invalidate(self) -> CommandStream:
    """Drop the compute state the HLSQ cached (state, IBOs, shared consts), so the writes below take effect."""
    shared = {"CS_SHARED_CONST": True} if self.chip.gen == "a6xx" else {}  # a7xx's register has no such field
    return self.reg("HLSQ_INVALIDATE_CMD", CS_STATE=True, CS_IBO=True, **shared)

  def cs_program(self, shader: int, instrlen: int, full_regs: int, half_regs: int, threadsize: str,
                 constlen: int, shared_size: int, branchstack: int = 0) -> CommandStream:
    """The program state of one compute shader: where its instructions are, how many registers and constants it
    needs and how much shared memory (SP_CS_CTRL_REG1.SHARED_SIZE: 0 means all 32 KiB, else (n + 1) KiB)."""
    regs = self.regs
    const_mode = "CONSTLEN_512" if constlen > 256 else "CONSTLEN_256" if constlen > 192 else \
        "CONSTLEN_192" if constlen > 128 else "CONSTLEN_128"
    ctrl0 = regs["SP_CS_CTRL_REG0"].encode(THREADMODE="MULTI", FULLREGFOOTPRINT=full_regs,
                                           HALFREGFOOTPRINT=half_regs, BRANCHSTACK=branchstack,
                                           THREADSIZE=threadsize, MERGEDREGS=False)
    ctrl1 = regs["SP_CS_CTRL_REG1"].encode(SHARED_SIZE=shared_size, CONSTANTRAMMODE=const_mode)
    self.pkt4("SP_CS_CTRL_REG0",
              ctrl0,                                      # SP_CS_CTRL_REG0: THREADSIZE, FULL/HALFREGFOOTPRINT
              ctrl1)                                      # SP_CS_CTRL_REG1: SHARED_SIZE, CONSTANTRAMMODE
    self.pkt4("SP_CS_OBJ_START",
              lo32(shader),                               # SP_CS_OBJ_START_LO
              hi32(shader))                               # SP_CS_OBJ_START_HI
    self.pkt4("SP_CS_INSTRLEN", regs["SP_CS_INSTRLEN"].encode(instrlen))  # SP_CS_INSTRLEN: instruction units
    self.pkt4("SP_CS_CONFIG", regs["SP_CS_CONFIG"].encode(ENABLED=True, NTEX=0, NSAMP=0, NIBO=0))  # SP_CS_CONFIG
    self.pkt4("HLSQ_CS_CNTL", regs["HLSQ_CS_CNTL"].encode(CONSTLEN=constlen, ENABLED=True))  # HLSQ_CS_CNTL
    self.pkt4("SP_CS_PVT_MEM_PARAM",
              regs["SP_CS_PVT_MEM_PARAM"].encode(),       # SP_CS_PVT_MEM_PARAM: no private memory
              0,                                          # SP_CS_PVT_MEM_ADDR_LO
              0,                                          # SP_CS_PVT_MEM_ADDR_HI
              regs["SP_CS_PVT_MEM_SIZE"].encode())        # SP_CS_PVT_MEM_SIZE
    return self

  def cs_sysvals(self, wgid: int, wgsize: int, wgoffset: int, localid: int, linear_localid: int,
                 threadsize: str) -> CommandStream:
    """Which registers the hardware fills with the workgroup id, size, offset and the local ids (a3xx_regid:
    register << 2 | component; 0xfc = unused). SP_CS_CNTL_* and HLSQ_CS_CNTL_* must agree."""
    regs = self.regs
    cntl0 = dict(WGIDCONSTID=wgid, WGSIZECONSTID=wgsize, WGOFFSETCONSTID=wgoffset, LOCALIDREGID=localid)
    if self.chip.has_sp_cs_cntl:
      self.pkt4("SP_CS_CNTL_0",
                regs["SP_CS_CNTL_0"].encode(**cntl0),      # SP_CS_CNTL_0: WGID/WGSIZE/WGOFFSET/LOCALID regids
                regs["SP_CS_CNTL_1"].encode(LINEARLOCALIDREGID=linear_localid,
                                            THREADSIZE=threadsize))  # SP_CS_CNTL_1: LINEARLOCALIDREGID, THREADSIZE
    if self.chip.gen == "a6xx":
      self.pkt4("HLSQ_CS_CNTL_0",
                regs["HLSQ_CS_CNTL_0"].encode(**cntl0),    # HLSQ_CS_CNTL_0: the same regids
                regs["HLSQ_CS_CNTL_1"].encode(LINEARLOCALIDREGID=linear_localid,
                                              THREADSIZE=threadsize))  # HLSQ_CS_CNTL_1
    else:
      self.pkt4("HLSQ_CS_CNTL_1", regs["HLSQ_CS_CNTL_1"].encode(LINEARLOCALIDREGID=linear_localid,
                                                                THREADSIZE=threadsize))  # HLSQ_CS_CNTL_1
    return self

  def cs_ndrange(self, local: tuple[int, int, int], groups: tuple[int, int, int]) -> CommandStream:
    """The grid: local size (stored minus one), global size in work-items, zero offsets; the group counts
    (HLSQ_CS_KERNEL_GROUP_*) for CP_RUN_OPENCL, and on a7xx the size of the last workgroup."""
    regs = self.regs
    dims = 1 + (local[1] > 1 or groups[1] > 1) + (local[2] > 1 or groups[2] > 1)
    ndrange0 = regs["HLSQ_CS_NDRANGE_0"].encode(KERNELDIM=dims, LOCALSIZEX=local[0] - 1, LOCALSIZEY=local[1] - 1,
                                                LOCALSIZEZ=local[2] - 1)
    self.pkt4("HLSQ_CS_NDRANGE_0",
              ndrange0,                                   # HLSQ_CS_NDRANGE_0: KERNELDIM, LOCALSIZEX/Y/Z - 1
              local[0] * groups[0],                       # HLSQ_CS_NDRANGE_1: GLOBALSIZE_X
              0,                                          # HLSQ_CS_NDRANGE_2: GLOBALOFF_X
              local[1] * groups[1],                       # HLSQ_CS_NDRANGE_3: GLOBALSIZE_Y
              0,                                          # HLSQ_CS_NDRANGE_4: GLOBALOFF_Y
              local[2] * groups[2],                       # HLSQ_CS_NDRANGE_5: GLOBALSIZE_Z
              0)                                          # HLSQ_CS_NDRANGE_6: GLOBALOFF_Z
    self.pkt4("HLSQ_CS_KERNEL_GROUP_X",
              groups[0],                                  # HLSQ_CS_KERNEL_GROUP_X
              groups[1],                                  # HLSQ_CS_KERNEL_GROUP_Y
              groups[2])                                  # HLSQ_CS_KERNEL_GROUP_Z
    if self.chip.has_cs_last_local_size:
      self.pkt4("HLSQ_CS_LAST_LOCAL_SIZE",
                regs["HLSQ_CS_LAST_LOCAL_SIZE"].encode(LOCALSIZEX=local[0] - 1, LOCALSIZEY=local[1] - 1,
                                                       LOCALSIZEZ=local[2] - 1))  # every group is full
    return self
