"""am/pm4: PM4 and SDMA emitters against golden dwords with provenance, emit -> decode round trips, and the layout
table against the generated nvd.h / kfd_pm4_headers_ai.h facts.

Golden vectors: the dwords amdgpu (linux-source-6.12 6.12.118-1~deb12u1, drivers/gpu/drm/amd/amdgpu) or Mesa 25.0.7
writes for the same operation, worked out by hand from the source lines cited with each vector (macro values from
nvd.h, sdma_v6_0_0_pkt_open.h, sid.h, kfd_pm4_headers_ai.h CACHE_FLUSH_AND_INV_TS_EVENT = 0x14).
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from am.generated import gc_11_0_0, gc_12_0_0
from am.generated import pm4 as facts
from am.mmio.regs import MemoryMMIO, RegisterBlock, RegisterTable
from am.pm4 import packets as P
from am.pm4.decode import format_pm4, format_sdma, parse_pm4, parse_sdma
from am.pm4.pm4 import PM4Stream
from am.pm4.sdma import MAX_COPY, SDMAStream
from tests.conftest import examples

ADDR = 0x123456780
SEQ = 0x1122334455667788
GC_BASES = (0x1260, 0xA000, 0x1C000, 0x2402C00)
INITIATOR = {11: RegisterTable(gc_11_0_0), 12: RegisterTable(gc_12_0_0)}


def pm4(gfx: int) -> PM4Stream:
  return PM4Stream(gfx)


# (description, gfx, build, expected dwords). Provenance in each description.
PM4_GOLDEN = [
  ("gfx_v11_0_ring_emit_fence, AMDGPU_FENCE_FLAG_64BIT|INT: RELEASE_MEM, GCR_SEQ|GL2_WB|GLM_INV|GLM_WB, "
   "CACHE_POLICY(3), CACHE_FLUSH_AND_INV_TS_EVENT, EVENT_INDEX(5), DATA_SEL(2), INT_SEL(2)", 11,
   lambda s: s.release_mem(ADDR, SEQ, data_sel=2, int_sel=2),
   [0xC0064900, 0x06603514, 0x42000000, 0x23456780, 0x00000001, 0x55667788, 0x11223344, 0x00000000]),
  ("gfx_v12_0_ring_emit_fence, same flags: no GLM bits on GFX12", 12,
   lambda s: s.release_mem(ADDR, SEQ, data_sel=2, int_sel=2),
   [0xC0064900, 0x06600514, 0x42000000, 0x23456780, 0x00000001, 0x55667788, 0x11223344, 0x00000000]),
  ("gfx_v11_0_ring_emit_fence, 32-bit seq, no interrupt: DATA_SEL(1), INT_SEL(0)", 11,
   lambda s: s.release_mem(0x1000, 7, data_sel=1),
   [0xC0064900, 0x06603514, 0x20000000, 0x00001000, 0x00000000, 0x00000007, 0x00000000, 0x00000000]),
  ("gfx_v11_0_ring_emit_ib_compute, vmid 3, 16 dwords: INDIRECT_BUFFER_VALID | length_dw | vmid << 24", 11,
   lambda s: s.indirect_buffer(0x7F0000001000, 16, vmid=3),
   [0xC0023F00, 0x00001000, 0x00007F00, 0x03800010]),
  ("gfx_v11_0_emit_mem_sync (and gfx_v12_0's, identical): ACQUIRE_MEM, CP_COHER_SIZE 0xffffffff, "
   "CP_COHER_SIZE_HI 0xffffff, POLL_INTERVAL 0xA, GCR_CNTL GL2_INV|GL2_WB|GLM_INV|GLM_WB|GL1_INV|GLV_INV|GLK_INV|"
   "GLI_INV(1)", 12, lambda s: s.acquire_mem(),
   [0xC0065800, 0x00000000, 0xFFFFFFFF, 0x00FFFFFF, 0x00000000, 0x00000000, 0x0000000A, 0x0000C3B1]),
  ("gfx_v11_0_ring_emit_pipeline_sync on a compute ring: wait_reg_mem(usepfp 0, mem_space 1, opt 0, addr, seq, "
   "0xffffffff, 4) -> MEM_SPACE(1)|OPERATION(0)|FUNCTION(3)|ENGINE(0)", 11,
   lambda s: s.wait_mem(0xABCD0000, 42, function="=="),
   [0xC0053C00, 0x00000013, 0xABCD0000, 0x00000000, 0x0000002A, 0xFFFFFFFF, 0x00000004]),
  ("gfx_v11_0_ring_emit_hdp_flush on a compute ring: wait_reg_mem(eng 0, mem_space 0, opt 1, req, done, "
   "ref_and_mask, ref_and_mask, 0x20)", 11,
   lambda s: s.wait_reg_mem(0, 0x1234, 0x1235, 0x4, 0x4, function="==", operation=1, poll_interval=0x20),
   [0xC0053C00, 0x00000043, 0x00001234, 0x00001235, 0x00000004, 0x00000004, 0x00000020]),
  ("gfx_v11_0_ring_emit_wreg on a compute ring: WRITE_DATA, cmd = WR_CONFIRM, reg, 0, val", 11,
   lambda s: s.write_data(0x5678, 0xCAFE, dst_sel=0),
   [0xC0033700, 0x00100000, 0x00005678, 0x00000000, 0x0000CAFE]),
  ("gfx_v11_0_ring_emit_rreg: COPY_DATA, src register, (5 << 8) dst memory, (1 << 20) write confirm", 11,
   lambda s: s.copy_data(0, 0x5678, 5, 0x100000040),
   [0xC0044000, 0x00100500, 0x00005678, 0x00000000, 0x00000040, 0x00000001]),
  ("gfx_v11_0_ring_test_ring (non-KIQ): SET_UCONFIG_REG, scratch - PACKET3_SET_UCONFIG_REG_START, 0xDEADBEEF; "
   "scratch = regSCRATCH_REG0 at GC segment 1", 11,
   lambda s: s.set_uconfig_reg(0xA000 + gc_11_0_0.REGISTERS["regSCRATCH_REG0"][0], 0xDEADBEEF),
   [0xC0017900, gc_11_0_0.REGISTERS["regSCRATCH_REG0"][0] - 0x2000, 0xDEADBEEF]),
  ("gfx_v11_0.c ring .nop = PACKET3(PACKET3_NOP, 0x3FFF)", 11, lambda s: s.nop(), [0xFFFF1000]),
  ("Mesa radeon_set_sh_reg(R_00B830_COMPUTE_PGM_LO, va >> 8): PKT3(SET_SH_REG, 1, 0), (0xB830 - 0xB000) >> 2",
   11, lambda s: s.set_sh_reg(0xB830 // 4, 0x00123456), [0xC0017600, 0x0000020C, 0x00123456]),
  ("Mesa si_emit_dispatch_packets / radv: PKT3(DISPATCH_DIRECT, 3, 0) | PKT3_SHADER_TYPE_S(1), x, y, z, "
   "COMPUTE_SHADER_EN(1) | FORCE_START_AT_000(1) | CS_W32_EN(1)", 11,
   lambda s: s.dispatch_direct(64, 2, 1, INITIATOR[11].spec("regCOMPUTE_DISPATCH_INITIATOR").encode(
     COMPUTE_SHADER_EN=1, FORCE_START_AT_000=1, CS_W32_EN=1)),
   [0xC0031502, 64, 2, 1, 0x00008005]),
  ("Mesa radv_cs.c CS_PARTIAL_FLUSH: PKT3(EVENT_WRITE, 0, 0), EVENT_TYPE(CS_PARTIAL_FLUSH) | EVENT_INDEX(4)", 12,
   lambda s: s.event_write("CS_PARTIAL_FLUSH", 4), [0xC0004600, 0x00000407]),
]


@pytest.mark.parametrize("desc,gfx,build,expected", PM4_GOLDEN, ids=[g[0].split(":")[0][:40] for g in PM4_GOLDEN])
def test_pm4_golden(desc, gfx, build, expected):
  s = pm4(gfx)
  build(s)
  assert [f"{w:08x}" for w in s.words] == [f"{w:08x}" for w in expected], desc
  packets = parse_pm4(s.words, gfx)
  assert len(packets) == 1 and not packets[0].note


SDMA_GOLDEN = [
  ("sdma_v6_0_ring_emit_fence: OP(FENCE) | MTYPE(3), addr lo, hi, seq; then TRAP, INT_CONTEXT(0)", 6,
   lambda s: s.fence(0xF000001000, 0x55).trap(), [0x00030005, 0x00001000, 0x000000F0, 0x00000055, 0x6, 0x0]),
  ("sdma_v7_0_ring_emit_fence: the same on SDMA 7", 7,
   lambda s: s.fence(0x2000, 1), [0x00030005, 0x00002000, 0x00000000, 0x00000001]),
  ("sdma_v6_0_ring_test_ring: OP(WRITE) | SUB_OP(WRITE_LINEAR), addr lo, hi, DW_3_COUNT(0), 0xDEADBEEF", 6,
   lambda s: s.write(0x3000, 0xDEADBEEF), [0x00000002, 0x00003000, 0x00000000, 0x00000000, 0xDEADBEEF]),
  ("sdma_v6_0_emit_copy_buffer: OP(COPY) | SUB_OP(COPY_LINEAR), byte_count - 1, 0, src lo, hi, dst lo, hi", 6,
   lambda s: s.copy_linear(0x200000000, 0x100000, 4096),
   [0x00000001, 0x00000FFF, 0x00000000, 0x00100000, 0x00000000, 0x00000000, 0x00000002]),
  ("sdma_v7_0_emit_copy_buffer: the same plus HEADER_CPV(1) (bit 19)", 7,
   lambda s: s.copy_linear(0x200000000, 0x100000, 4096),
   [0x00080001, 0x00000FFF, 0x00000000, 0x00100000, 0x00000000, 0x00000000, 0x00000002]),
  ("sdma_v6_0_ring_emit_pipeline_sync: OP(POLL_REGMEM) | HDP_FLUSH(0) | FUNC(3) | MEM_POLL(1), addr & ~3, hi, seq, "
   "0xffffffff, RETRY_COUNT(0xfff) | INTERVAL(4)", 6,
   lambda s: s.poll_regmem(1, 0x4000, 9, 0xFFFFFFFF, interval=4),
   [0xB0000008, 0x00004000, 0x00000000, 0x00000009, 0xFFFFFFFF, 0x0FFF0004]),
  ("sdma_v6_0_ring_emit_reg_wait: FUNC(3) on a register, reg << 2, 0, val, mask, RETRY_COUNT(0xfff)|INTERVAL(10)",
   6, lambda s: s.poll_regmem(0, 0x1234 << 2, 0x1, 0x3),
   [0x30000008, 0x000048D0, 0x00000000, 0x00000001, 0x00000003, 0x0FFF000A]),
  ("sdma_v6_0_ring_emit_hdp_flush: HDP_FLUSH(1) | FUNC(3), done << 2, req << 2, ref, mask, RETRY_COUNT(0xfff) | "
   "INTERVAL(10)", 6, lambda s: s.hdp_flush(0x1234, 0x1235, 0x4),
   [0x34000008, 0x000048D4, 0x000048D0, 0x00000004, 0x00000004, 0x0FFF000A]),
  ("sdma_pkt_open.h TIMESTAMP_GET_GLOBAL: OP(TIMESTAMP) | SUB_OP(GET_GLOBAL), WRITE_ADDR_31_3 << 3, hi", 6,
   lambda s: s.timestamp(0x8008), [0x0000020D, 0x00008008, 0x00000000]),
  ("sdma_v6_0.c ring .nop = SDMA_PKT_NOP_HEADER_OP(SDMA_OP_NOP)", 6, lambda s: s.nop(2), [0, 0]),
]


@pytest.mark.parametrize("desc,version,build,expected", SDMA_GOLDEN, ids=[g[0].split(":")[0][:40] for g in SDMA_GOLDEN])
def test_sdma_golden(desc, version, build, expected):
  s = SDMAStream(version)
  build(s)
  assert [f"{w:08x}" for w in s.words] == [f"{w:08x}" for w in expected], desc
  assert not any(p.note for p in parse_sdma(s.words, version))


# ---- round trips ----
u32 = st.integers(0, 0xFFFFFFFF)
gfx_gens = st.sampled_from((11, 12))


def body_fields(packet) -> dict:
  return {name: fields or value for name, value, fields in packet.dwords}


@settings(max_examples=examples(25))
@given(gfx_gens, st.integers(0, (1 << 48) - 1).map(lambda a: a & ~7), st.integers(0, (1 << 64) - 1),
       st.sampled_from((1, 2)), st.sampled_from((0, 2)), st.booleans(), st.integers(0, 3), u32)
def test_release_mem_round_trip(gfx, address, value, data_sel, int_sel, flush, cache_policy, ctxid):
  s = pm4(gfx).release_mem(address, value, data_sel=data_sel, int_sel=int_sel, flush=flush,
                           cache_policy=cache_policy, int_ctxid=ctxid)
  (p,) = parse_pm4(s.words, gfx)
  d = body_fields(p)
  assert p.name == "PACKET3_RELEASE_MEM" and p.header["COUNT"] == 6
  assert d["EVENT_CNTL"]["EVENT_TYPE"] == facts.VGT_EVENT_TYPE[gfx]["CACHE_FLUSH_AND_INV_TS_EVENT"]
  assert d["EVENT_CNTL"]["GCR_GL2_WB"] == flush and d["EVENT_CNTL"]["GCR_GLM_WB"] == (flush and gfx == 11)
  assert d["EVENT_CNTL"]["CACHE_POLICY"] == cache_policy
  assert (d["DATA_CNTL"]["DATA_SEL"], d["DATA_CNTL"]["INT_SEL"]) == (data_sel, int_sel)
  assert d["ADDRESS_LO"] | d["ADDRESS_HI"] << 32 == address
  assert d["DATA_LO"] | d["DATA_HI"] << 32 == value and d["INT_CTXID"] == ctxid


GCR_FIELDS = {f.name: f.width for f in P.GCR_CNTL.fields}


@settings(max_examples=examples(25))
@given(gfx_gens, st.fixed_dictionaries({}, optional={k: st.integers(0, (1 << w) - 1) for k, w in GCR_FIELDS.items()}),
       st.integers(0, (1 << 48) - 1), st.integers(0, (1 << 56) - 1), st.integers(0, 0xFFFF), st.integers(0, 1))
def test_acquire_mem_round_trip(gfx, gcr, base, size, poll, engine):
  s = pm4(gfx).acquire_mem(gcr, base=base, size=size, poll_interval=poll, engine_sel=engine)
  (p,) = parse_pm4(s.words, gfx)
  d = body_fields(p)
  assert {k: v for k, v in d["GCR_CNTL"].items() if v} == {k: v for k, v in gcr.items() if v}
  assert d["COHER_SIZE"] | d["COHER_SIZE_HI"]["COHER_SIZE_HI"] << 32 == size
  assert d["COHER_BASE_LO"] | d["COHER_BASE_HI"] << 32 == base
  assert d["POLL_INTERVAL"]["POLL_INTERVAL"] == poll and d["COHER_CNTL"]["ENGINE_SEL"] == engine


@settings(max_examples=examples(25))
@given(gfx_gens, st.integers(0, 1), u32, u32, u32, u32, st.sampled_from(("<", "<=", "==", "!=", ">=", ">")),
       st.integers(0, 1), st.integers(0, 1), u32)
def test_wait_reg_mem_round_trip(gfx, mem, lo, hi, ref, mask, function, operation, engine, poll):
  lo = lo & ~3 if mem else lo
  s = pm4(gfx).wait_reg_mem(mem, lo, hi, ref, mask, function, operation, engine, poll)
  (p,) = parse_pm4(s.words, gfx)
  d = body_fields(p)
  assert d["WAIT_CNTL"] == {"FUNCTION": ("always", "<", "<=", "==", "!=", ">=", ">").index(function),
                            "MEM_SPACE": mem, "OPERATION": operation, "ENGINE": engine}
  assert (d["POLL_ADDRESS_LO"], d["POLL_ADDRESS_HI"], d["REFERENCE"], d["MASK"], d["POLL_INTERVAL"]) == (
    lo, hi, ref, mask, poll)


@settings(max_examples=examples(25))
@given(gfx_gens, st.integers(0, (1 << 48) - 1).map(lambda a: a & ~3), st.integers(0, (1 << 20) - 1),
       st.integers(0, 15), st.integers(0, 2))
def test_indirect_buffer_round_trip(gfx, address, ndw, vmid, cache_policy):
  (p,) = parse_pm4(pm4(gfx).indirect_buffer(address, ndw, vmid=vmid, cache_policy=cache_policy).words, gfx)
  d = body_fields(p)
  assert d["IB_BASE_LO"] | d["IB_BASE_HI"] << 32 == address
  assert {k: v for k, v in d["IB_CONTROL"].items() if v} == {k: v for k, v in (
    ("IB_SIZE", ndw), ("VALID", 1), ("VMID", vmid), ("CACHE_POLICY", cache_policy)) if v}


@settings(max_examples=examples(25))
@given(gfx_gens, st.integers(0, (1 << 48) - 1), st.lists(u32, min_size=1, max_size=8), st.sampled_from((0, 5)),
       st.integers(0, 1), st.integers(0, 1), st.integers(0, 2), st.integers(0, 3))
def test_write_data_round_trip(gfx, dst, data, dst_sel, confirm, one_addr, engine, cache_policy):
  s = pm4(gfx).write_data(dst, *data, dst_sel=dst_sel, wr_confirm=confirm, wr_one_addr=one_addr,
                          engine_sel=engine, cache_policy=cache_policy)
  (p,) = parse_pm4(s.words, gfx)
  d = body_fields(p)
  assert d["CONTROL"] == {"DST_SEL": dst_sel, "WR_ONE_ADDR": one_addr, "RESUME_VF": 0, "WR_CONFIRM": confirm,
                          "CACHE_POLICY": cache_policy, "ENGINE_SEL": engine}
  assert d["DST_ADDR_LO"] | d["DST_ADDR_HI"] << 32 == dst
  assert [d[f"DATA[{i}]"] for i in range(len(data))] == data


@settings(max_examples=examples(25))
@given(gfx_gens, st.sampled_from((0, 1, 5, 9)), st.integers(0, (1 << 48) - 1), st.sampled_from((0, 5)),
       st.integers(0, (1 << 48) - 1), st.integers(0, 1), st.integers(0, 1), st.integers(0, 1))
def test_copy_data_round_trip(gfx, src_sel, src, dst_sel, dst, confirm, count_sel, engine):
  s = pm4(gfx).copy_data(src_sel, src, dst_sel, dst, wr_confirm=confirm, count_sel=count_sel, engine_sel=engine)
  (p,) = parse_pm4(s.words, gfx)
  d = body_fields(p)
  assert d["CONTROL"] == {"SRC_SEL": src_sel, "DST_SEL": dst_sel, "COUNT_SEL": count_sel, "WR_CONFIRM": confirm,
                          "ENGINE_SEL": engine}
  assert (d["SRC_ADDR_LO"] | d["SRC_ADDR_HI"] << 32, d["DST_ADDR_LO"] | d["DST_ADDR_HI"] << 32) == (src, dst)


@settings(max_examples=examples(25))
@given(gfx_gens, st.sampled_from(("CS_PARTIAL_FLUSH", "CACHE_FLUSH_AND_INV_EVENT", "CS_DONE", "BOTTOM_OF_PIPE_TS")),
       st.integers(0, 15), st.one_of(st.none(), st.integers(0, (1 << 48) - 1)))
def test_event_write_round_trip(gfx, event, index, address):
  (p,) = parse_pm4(pm4(gfx).event_write(event, index, address).words, gfx)
  d = body_fields(p)
  assert d["EVENT_CNTL"] == {"EVENT_TYPE": facts.VGT_EVENT_TYPE[gfx][event], "EVENT_INDEX": index}
  if address is not None:
    assert d["ADDRESS[0]"] | d["ADDRESS[1]"] << 32 == address


@settings(max_examples=examples(25))
@given(gfx_gens, st.integers(0, 0x3FF), st.lists(u32, min_size=1, max_size=16), st.booleans(), st.integers(1, 9))
def test_set_reg_dispatch_nop_round_trip(gfx, offset, values, uconfig, pad):
  s = pm4(gfx)
  start, method = (0xC000, s.set_uconfig_reg) if uconfig else (0x2C00, s.set_sh_reg)
  offset = min(offset, 0x400 - len(values))
  method(start + offset, *values)
  init = INITIATOR[gfx].spec("regCOMPUTE_DISPATCH_INITIATOR").encode(COMPUTE_SHADER_EN=1)
  s.dispatch_direct(values[0] or 1, 1, pad, init).nop(pad)
  p_set, p_dispatch, p_nop = parse_pm4(s.words, gfx)
  assert p_set.name == ("PACKET3_SET_UCONFIG_REG" if uconfig else "PACKET3_SET_SH_REG")
  d = body_fields(p_set)
  assert d["REG_OFFSET"] == offset and [d[f"REG_DATA[{i}]"] for i in range(len(values))] == values
  d = body_fields(p_dispatch)
  assert (d["DIM_X"], d["DIM_Y"], d["DIM_Z"], d["DISPATCH_INITIATOR"]) == (values[0] or 1, 1, pad, init)
  assert p_dispatch.header["SHADER_TYPE"] == 1
  assert p_nop.name == "PACKET3_NOP" and 1 + len(p_nop.dwords) == pad


@settings(max_examples=examples(25))
@given(st.sampled_from((6, 7)), st.integers(0, (1 << 48) - 1), st.integers(0, (1 << 48) - 1),
       st.integers(1, MAX_COPY), st.integers(0, (1 << 48) - 1).map(lambda a: a & ~7), u32,
       st.lists(u32, min_size=1, max_size=6), st.integers(0, (1 << 28) - 1), st.integers(0, 0xFFF),
       st.integers(0, 0xFFFF), st.booleans())
def test_sdma_round_trip(version, dst, src, nbytes, address, value, data, ctx, retry, interval, global_counter):
  s = SDMAStream(version)
  s.copy_linear(dst, src, nbytes).fence(address, value).trap(ctx).write(address, *data)
  s.poll_regmem(1, address, value, 0xFFFFFFFF, function=">=", retry_count=retry, interval=interval)
  s.timestamp(address, global_counter).nop(2)
  copy, fence, trap, write, poll, ts, nop1, nop2 = parse_sdma(s.words, version)
  w = {name: fields for name, _, fields in copy.dwords}
  assert copy.name == "SDMA_PKT_COPY_LINEAR" and copy.header["cpv"] == (version == 7)
  assert w["COUNT"]["count"] == nbytes - 1
  assert w["SRC_ADDR_LO"]["src_addr_31_0"] | w["SRC_ADDR_HI"]["src_addr_63_32"] << 32 == src
  assert w["DST_ADDR_LO"]["dst_addr_31_0"] | w["DST_ADDR_HI"]["dst_addr_63_32"] << 32 == dst
  assert fence.header["mtype"] == 3 and [v for _, v, _ in fence.dwords] == [address & 0xFFFFFFFF, address >> 32, value]
  assert trap.dwords[0][2] == {"int_context": ctx}
  assert [v for _, v, _ in write.dwords[3:]] == data and write.dwords[2][2]["count"] == len(data) - 1
  assert poll.header["func"] == 5 and poll.header["mem_poll"] == 1
  assert poll.dwords[4][2] == {"interval": interval, "retry_count": retry}
  assert ts.name == ("SDMA_PKT_TIMESTAMP_GET_GLOBAL" if global_counter else "SDMA_PKT_TIMESTAMP_GET")
  assert ts.dwords[0][2]["write_addr_31_3"] << 3 | ts.dwords[1][1] << 32 == address
  assert nop1.name == nop2.name == "SDMA_PKT_NOP"


# ---- tables against the generated nvd.h / kfd facts ----
NVD = {macro: (packet, shift, value) for packet, macro, shift, value in facts.NVD_FIELDS}


@pytest.mark.parametrize("packet", sorted(P.PACKETS))
def test_layout_fields_agree_with_nvd_and_kfd(packet):
  layout = P.PACKETS[packet]
  assert layout.opcode == facts.PACKET3[packet]
  for dword in layout.body:
    covered = 0
    for f in dword.fields:
      assert not covered & f.mask, f"{packet}.{dword.name}.{f.name} overlaps another field"
      covered |= f.mask
      assert f.mask >> 32 == 0
      if f.nvd:
        nvd_packet, shift, value = NVD[f.nvd]
        assert shift == f.shift, f"{f.name}: nvd.h {f.nvd} shift {shift} != {f.shift}"
        if value is not None:
          assert value & ~f.mask == 0, f"{f.name}: nvd.h {f.nvd} = {value:#x} outside the field"
      if f.kfd:
        struct, name = f.kfd.split(".")
        rows = {row[1]: row for row in facts.KFD_STRUCTS[struct]}
        assert (rows[name][2], rows[name][3]) == (f.shift, f.width), f"{f.name} vs kfd {f.kfd}"


def test_header_layout_is_kfd_type3_header():
  kfd = {name: (shift, width) for _, name, shift, width in facts.KFD_STRUCTS["PM4_MES_TYPE_3_HEADER"]}
  ours = {f.name: (f.shift, f.width) for f in P.HEADER.fields}
  assert (ours["IT_OPCODE"], ours["COUNT"], ours["TYPE"]) == (kfd["opcode"], kfd["count"], kfd["type"])


# ---- decoder output and errors ----
def test_format_pm4_names_registers_fields_and_events():
  gc = RegisterBlock(gc_11_0_0, MemoryMMIO(), GC_BASES, trace=None)
  s = pm4(11)
  s.set_sh_reg(gc.regCOMPUTE_PGM_RSRC1, 0x000C0041)
  s.release_mem(0x1000, 1, data_sel=1)
  s.nop()
  text = "\n".join(format_pm4(s.words, 11, regs=gc))
  assert "PACKET3_SET_SH_REG" in text and "regCOMPUTE_PGM_RSRC1" in text and "VGPRS=0x1" in text
  assert "EVENT_TYPE=CACHE_FLUSH_AND_INV_TS_EVENT(0x14)" in text and "header-only NOP" in text


def test_decoders_report_truncation_and_unknowns():
  words = list(pm4(11).release_mem(0x1000, 1).words)[:4]
  assert "truncated" in parse_pm4(words)[0].note
  assert parse_pm4([0xC0001200, 0])[0].name == "PACKET3_CLEAR_STATE"  # an opcode without a layout: raw dwords
  assert "unk_6" in format_pm4([0xC0004600, 0x00000040 | 7])[1]  # bit 6: no field there
  assert "no layout" in parse_sdma([0x00000009, 1, 2])[0].note  # COND_EXE is not decoded: the rest is left raw
  assert "\n".join(format_sdma(SDMAStream(6).fence(0x100, 2).words)).count("SDMA_PKT_FENCE") == 1


def test_emitter_errors():
  with pytest.raises(ValueError, match="outside"):
    pm4(11).set_sh_reg(0xC000, 1)
  with pytest.raises(ValueError, match="8-byte aligned"):
    pm4(11).release_mem(0x1004, 1, data_sel=2)
  with pytest.raises(KeyError, match="GL3_INV"):
    pm4(11).acquire_mem({"GL3_INV": 1})
  with pytest.raises(ValueError, match="holds 2 bits"):
    pm4(11).acquire_mem({"GLI_INV": 4})
  with pytest.raises(ValueError, match="GFX generation 10"):
    PM4Stream(10)
  with pytest.raises(ValueError, match="split the copy"):
    SDMAStream(6).copy_linear(0, 0, MAX_COPY + 1)
  with pytest.raises(ValueError, match="8-byte aligned"):
    SDMAStream(7).timestamp(0x1004)
