"""PM4 type-3 packet layouts for the compute packets AM emits: the one table the emitters (am/pm4/pm4.py) encode
with and the decoder (am/pm4/decode.py) reads back.

Opcodes come from the generated nvd.h table (am/generated/pm4.py: PACKET3). Field positions come from these
sources, named per field (`src`), and tests/test_am_pm4.py checks every field that has an nvd.h or
kfd_pm4_headers_ai.h counterpart against the generated tables:
  nvd   linux 6.12 amdgpu/nvd.h: the macro's shift; the width where the macro is a constant (1 << n) or where its
        comment lists the values (0..3 -> 2 bits)
  kfd   linux 6.12 amdkfd/kfd_pm4_headers_ai.h: bitfield widths (pm4_mec_release_mem, pm4_mec_write_data_mmio,
        PM4_MES_TYPE_3_HEADER)
  mesa  mesa 25.0.7 src/amd/registers/pkt3.json (GCR_CNTL, RELEASE_MEM_OP_gfx11, IB_CONTROL, CONTROL) and
        src/amd/common/sid.h (PKT3_* field macros)
  amd   what amdgpu writes there (gfx_v11_0.c), where no header names the bits
Where no source gives a width, a field is as wide as the values its source lists; bits no field covers decode as
unk_<bit>, so nothing is ever decoded under a guessed name. GFX11 and GFX12 share these layouts (pkt3.json maps
GCR_CNTL and RELEASE_MEM_OP_gfx11 to both); what differs by generation is which bits amdgpu sets, and that lives
in the emitters.
"""
from __future__ import annotations

from dataclasses import dataclass

from am.generated import pm4 as facts

TYPE3 = 3
NOP_HEADER_ONLY_COUNT = 0x3FFF  # PACKET3(PACKET3_NOP, 0x3FFF): a one-dword NOP (amdgpu ring .nop, Mesa PKT3_NOP_PAD)


@dataclass(frozen=True)
class Field:
  name: str
  shift: int
  width: int
  src: str
  nvd: str | None = None   # the nvd.h macro for this field, when there is one
  kfd: str | None = None   # (struct, field) in kfd_pm4_headers_ai.h, as "struct.field"

  @property
  def mask(self) -> int:
    return ((1 << self.width) - 1) << self.shift


@dataclass(frozen=True)
class Dword:
  """One dword of a packet; without fields the whole dword is one value named `name`."""
  name: str
  fields: tuple[Field, ...] = ()

  def encode(self, **values: int) -> int:
    """Raises: KeyError for a field this dword does not have; ValueError for a value that does not fit."""
    if not self.fields:
      if list(values) != [self.name] or not 0 <= values[self.name] <= 0xFFFFFFFF:
        raise ValueError(f"{self.name}: one 32-bit value named {self.name} expected, got {values}")
      return values[self.name]
    word = 0
    by_name = {f.name: f for f in self.fields}
    for name, value in values.items():
      if name not in by_name:
        raise KeyError(f"{self.name} has no field {name!r}; it has {', '.join(by_name)}")
      f = by_name[name]
      if not 0 <= value < (1 << f.width):
        raise ValueError(f"{self.name}.{name} = {value:#x}: the field holds {f.width} bits")
      word |= value << f.shift
    return word

  def decode(self, value: int) -> dict[str, int]:
    if not self.fields:
      return {self.name: value}
    out = {f.name: (value >> f.shift) & ((1 << f.width) - 1) for f in self.fields}
    covered = 0
    for f in self.fields:
      covered |= f.mask
    stray = value & ~covered & 0xFFFFFFFF
    while stray:
      bit = (stray & -stray).bit_length() - 1
      out[f"unk_{bit}"] = 1
      stray &= stray - 1
    return out


@dataclass(frozen=True)
class Packet:
  name: str                      # the nvd.h opcode macro, e.g. PACKET3_RELEASE_MEM
  body: tuple[Dword, ...]        # the fixed dwords after the header
  tail: str | None = None        # name of the repeated dwords after them (register values, data), if any

  @property
  def opcode(self) -> int:
    return facts.PACKET3[self.name]


def f(name: str, shift: int, width: int, src: str, nvd: str | None = None, kfd: str | None = None) -> Field:
  return Field(name, shift, width, src, nvd, kfd)


HEADER = Dword("HEADER", (
  f("PREDICATE", 0, 1, "mesa"),                        # sid.h PKT3_PREDICATE
  f("SHADER_TYPE", 1, 1, "nvd"),                       # nvd.h PACKET3_COMPUTE sets 1 << 1; sid.h PKT3_SHADER_TYPE_S
  f("RESET_FILTER_CAM", 2, 1, "mesa"),                 # sid.h PKT3_RESET_FILTER_CAM_S
  f("IT_OPCODE", 8, 8, "kfd", kfd="PM4_MES_TYPE_3_HEADER.opcode"),
  f("COUNT", 16, 14, "kfd", kfd="PM4_MES_TYPE_3_HEADER.count"),     # body dwords - 1
  f("TYPE", 30, 2, "kfd", kfd="PM4_MES_TYPE_3_HEADER.type"),
))

# GCR_CNTL of ACQUIRE_MEM: nvd.h PACKET3_ACQUIRE_MEM_GCR_CNTL_* (widths from its value comments; pkt3.json GCR_CNTL)
GCR_CNTL = Dword("GCR_CNTL", tuple(
  f(name, shift, width, "nvd", nvd=("PACKET3_ACQUIRE_MEM_GCR_RANGE_IS_PA" if name == "RANGE_IS_PA"
                                    else f"PACKET3_ACQUIRE_MEM_GCR_CNTL_{name}"))
  for name, shift, width in (("GLI_INV", 0, 2), ("GL1_RANGE", 2, 2), ("GLM_WB", 4, 1), ("GLM_INV", 5, 1),
                             ("GLK_WB", 6, 1), ("GLK_INV", 7, 1), ("GLV_INV", 8, 1), ("GL1_INV", 9, 1),
                             ("GL2_US", 10, 1), ("GL2_RANGE", 11, 2), ("GL2_DISCARD", 13, 1), ("GL2_INV", 14, 1),
                             ("GL2_WB", 15, 1), ("SEQ", 16, 2), ("RANGE_IS_PA", 18, 1))))

NOP = Packet("PACKET3_NOP", (), tail="PADDING")
SET_SH_REG = Packet("PACKET3_SET_SH_REG", (Dword("REG_OFFSET"),), tail="REG_DATA")  # reg - PACKET3_SET_SH_REG_START
SET_UCONFIG_REG = Packet("PACKET3_SET_UCONFIG_REG", (Dword("REG_OFFSET"),), tail="REG_DATA")
DISPATCH_DIRECT = Packet("PACKET3_DISPATCH_DIRECT", (  # Mesa: x, y, z, then COMPUTE_DISPATCH_INITIATOR's value
  Dword("DIM_X"), Dword("DIM_Y"), Dword("DIM_Z"), Dword("DISPATCH_INITIATOR")))
# nvd.h's dword list for gfx10+ (7 body dwords). nvd.h gives COHER_SIZE_HI as [7:0] and COHER_BASE_HI as [23:0],
# yet amdgpu (gfx_v11_0_emit_mem_sync) and Mesa both write 0xffffff to COHER_SIZE_HI, and Mesa's IB parser reads 25
# bits there and 32 in COHER_BASE_HI on GFX11+ (ac_parse_ib.c): those two follow Mesa.
ACQUIRE_MEM = Packet("PACKET3_ACQUIRE_MEM", (
  Dword("COHER_CNTL", (f("COHER_CNTL", 0, 31, "nvd"), f("ENGINE_SEL", 31, 1, "nvd"))),
  Dword("COHER_SIZE"),
  Dword("COHER_SIZE_HI", (f("COHER_SIZE_HI", 0, 25, "mesa"),)),
  Dword("COHER_BASE_LO"),
  Dword("COHER_BASE_HI"),
  Dword("POLL_INTERVAL", (f("POLL_INTERVAL", 0, 16, "nvd"),)),
  GCR_CNTL))
RELEASE_MEM = Packet("PACKET3_RELEASE_MEM", (
  Dword("EVENT_CNTL", (
    f("EVENT_TYPE", 0, 6, "kfd", nvd="PACKET3_RELEASE_MEM_EVENT_TYPE", kfd="pm4_mec_release_mem.event_type"),
    f("WAIT_SYNC", 7, 1, "mesa"),                                          # pkt3.json RELEASE_MEM_OP_gfx11
    f("EVENT_INDEX", 8, 4, "kfd", nvd="PACKET3_RELEASE_MEM_EVENT_INDEX", kfd="pm4_mec_release_mem.event_index"),
    f("GCR_GLM_WB", 12, 1, "nvd", nvd="PACKET3_RELEASE_MEM_GCR_GLM_WB"),
    f("GCR_GLM_INV", 13, 1, "nvd", nvd="PACKET3_RELEASE_MEM_GCR_GLM_INV"),
    f("GCR_GLV_INV", 14, 1, "nvd", nvd="PACKET3_RELEASE_MEM_GCR_GLV_INV"),
    f("GCR_GL1_INV", 15, 1, "nvd", nvd="PACKET3_RELEASE_MEM_GCR_GL1_INV"),
    f("GCR_GL2_US", 16, 1, "nvd", nvd="PACKET3_RELEASE_MEM_GCR_GL2_US"),
    f("GCR_GL2_RANGE", 17, 2, "mesa", nvd="PACKET3_RELEASE_MEM_GCR_GL2_RANGE"),  # nvd.h: 1 << 17; pkt3.json [17:18]
    f("GCR_GL2_DISCARD", 19, 1, "nvd", nvd="PACKET3_RELEASE_MEM_GCR_GL2_DISCARD"),
    f("GCR_GL2_INV", 20, 1, "nvd", nvd="PACKET3_RELEASE_MEM_GCR_GL2_INV"),
    f("GCR_GL2_WB", 21, 1, "nvd", nvd="PACKET3_RELEASE_MEM_GCR_GL2_WB"),
    f("GCR_SEQ", 22, 2, "mesa", nvd="PACKET3_RELEASE_MEM_GCR_SEQ"),              # nvd.h: 1 << 22; pkt3.json [22:23]
    f("GCR_GLK_WB", 24, 1, "mesa"),
    f("CACHE_POLICY", 25, 2, "kfd", nvd="PACKET3_RELEASE_MEM_CACHE_POLICY", kfd="pm4_mec_release_mem.cache_policy"),
    f("EXECUTE", 28, 1, "nvd", nvd="PACKET3_RELEASE_MEM_EXECUTE"),               # pkt3.json gives [28:29]
    f("GCR_GLK_INV", 30, 1, "mesa"),
    f("PWS_ENABLE", 31, 1, "mesa"))),
  Dword("DATA_CNTL", (
    f("DST_SEL", 16, 2, "kfd", nvd="PACKET3_RELEASE_MEM_DST_SEL", kfd="pm4_mec_release_mem.dst_sel"),
    f("INT_SEL", 24, 3, "kfd", nvd="PACKET3_RELEASE_MEM_INT_SEL", kfd="pm4_mec_release_mem.int_sel"),
    f("DATA_SEL", 29, 3, "kfd", nvd="PACKET3_RELEASE_MEM_DATA_SEL", kfd="pm4_mec_release_mem.data_sel"))),
  Dword("ADDRESS_LO"), Dword("ADDRESS_HI"), Dword("DATA_LO"), Dword("DATA_HI"), Dword("INT_CTXID")))
WAIT_REG_MEM = Packet("PACKET3_WAIT_REG_MEM", (
  Dword("WAIT_CNTL", (
    f("FUNCTION", 0, 3, "nvd", nvd="WAIT_REG_MEM_FUNCTION"),     # 0 always, 1 <, 2 <=, 3 ==, 4 !=, 5 >=, 6 >
    f("MEM_SPACE", 4, 2, "mesa", nvd="WAIT_REG_MEM_MEM_SPACE"),  # sid.h WAIT_REG_MEM_MEM_SPACE (& 0x3); 0 reg, 1 mem
    f("OPERATION", 6, 1, "nvd", nvd="WAIT_REG_MEM_OPERATION"),   # 0 wait_reg_mem, 1 wr_wait_wr_reg
    f("ENGINE", 8, 1, "nvd", nvd="WAIT_REG_MEM_ENGINE"))),       # 0 me, 1 pfp
  Dword("POLL_ADDRESS_LO"), Dword("POLL_ADDRESS_HI"), Dword("REFERENCE"), Dword("MASK"), Dword("POLL_INTERVAL")))
INDIRECT_BUFFER = Packet("PACKET3_INDIRECT_BUFFER", (
  Dword("IB_BASE_LO"), Dword("IB_BASE_HI"),
  Dword("IB_CONTROL", (
    f("IB_SIZE", 0, 20, "mesa"),                                         # pkt3.json IB_CONTROL
    f("CHAIN", 20, 1, "mesa"),
    f("PRE_ENA", 21, 1, "nvd", nvd="INDIRECT_BUFFER_PRE_ENB"),
    f("VALID", 23, 1, "nvd", nvd="INDIRECT_BUFFER_VALID"),
    f("VMID", 24, 4, "amd"),                                             # gfx_v11_0_ring_emit_ib_compute: vmid << 24
    f("CACHE_POLICY", 28, 2, "nvd", nvd="INDIRECT_BUFFER_CACHE_POLICY"),  # 0 LRU, 1 stream, 2 bypass
    # nvd.h calls bit 30 PRE_RESUME; on compute queues amdgpu sets it to inherit the VMID from the MQD (MES queues,
    # gfx_v11_0_ring_emit_ib_compute) and sid.h names it S_3F3_INHERIT_VMID_MQD_COMPUTE
    f("PRE_RESUME", 30, 1, "nvd", nvd="INDIRECT_BUFFER_PRE_RESUME")))))
WRITE_DATA = Packet("PACKET3_WRITE_DATA", (
  Dword("CONTROL", (
    f("DST_SEL", 8, 4, "kfd", nvd="WRITE_DATA_DST_SEL", kfd="pm4_mec_write_data_mmio.dst_sel"),  # 0 reg, 5 memory
    f("WR_ONE_ADDR", 16, 1, "nvd", nvd="WR_ONE_ADDR", kfd="pm4_mec_write_data_mmio.addr_incr"),
    f("RESUME_VF", 19, 1, "kfd", kfd="pm4_mec_write_data_mmio.resume_vf"),
    f("WR_CONFIRM", 20, 1, "nvd", nvd="WR_CONFIRM", kfd="pm4_mec_write_data_mmio.wr_confirm"),
    f("CACHE_POLICY", 25, 2, "kfd", nvd="WRITE_DATA_CACHE_POLICY", kfd="pm4_mec_write_data_mmio.cache_policy"),
    f("ENGINE_SEL", 30, 2, "nvd", nvd="WRITE_DATA_ENGINE_SEL"))),      # 0 me, 1 pfp, 2 ce; pkt3.json [30:31]
  Dword("DST_ADDR_LO"), Dword("DST_ADDR_HI")), tail="DATA")
EVENT_WRITE = Packet("PACKET3_EVENT_WRITE", (
  Dword("EVENT_CNTL", (
    f("EVENT_TYPE", 0, 6, "nvd", nvd="EVENT_TYPE"),       # VGT_EVENT_TYPE; 6 bits as RELEASE_MEM's (kfd)
    f("EVENT_INDEX", 8, 4, "nvd", nvd="EVENT_INDEX"))),   # 4 bits as RELEASE_MEM's (kfd)
), tail="ADDRESS")  # events with index 1..3 (ZPASS_DONE, SAMPLE_*) carry an address
COPY_DATA = Packet("PACKET3_COPY_DATA", (
  Dword("CONTROL", (
    f("SRC_SEL", 0, 4, "mesa"),       # sid.h COPY_DATA_SRC_SEL (& 0xf): 0 reg, 1 mem, 5 immediate, 9 timestamp
    f("DST_SEL", 8, 4, "mesa"),       # sid.h COPY_DATA_DST_SEL (& 0xf): 0 reg, 5 memory
    f("COUNT_SEL", 16, 1, "mesa"),    # sid.h COPY_DATA_COUNT_SEL: 64-bit copy
    f("WR_CONFIRM", 20, 1, "mesa"),   # sid.h COPY_DATA_WR_CONFIRM
    f("ENGINE_SEL", 30, 1, "mesa"))),  # sid.h COPY_DATA_ENGINE_PFP
  Dword("SRC_ADDR_LO"), Dword("SRC_ADDR_HI"), Dword("DST_ADDR_LO"), Dword("DST_ADDR_HI")))

PACKETS = {p.name: p for p in (NOP, SET_SH_REG, SET_UCONFIG_REG, DISPATCH_DIRECT, ACQUIRE_MEM, RELEASE_MEM,
                               WAIT_REG_MEM, INDIRECT_BUFFER, WRITE_DATA, EVENT_WRITE, COPY_DATA)}
BY_OPCODE = {p.opcode: p for p in PACKETS.values()}
