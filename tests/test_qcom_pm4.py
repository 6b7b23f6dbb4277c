"""qcomdrv command streams: PKT4/PKT7 headers with their parity bits, the emitters against golden dwords with
provenance, named-field register encoding, and the decoder.

Golden vectors are dwords the Adreno command processor ran, as Mesa 25.0.7's cffdump reference logs record them
(src/freedreno/.gitlab-ci/reference/): fd-clouds.log (gpu_id 630), dEQP-VK.draw.indirect_draw.indexed.
indirect_draw_count.triangle_list.log (gpu_id 640) and compute-a540.log (gpu_id 540; PKT7 headers and CP_EXEC_CS's
payload are the same on a5xx and a6xx). The log line each comes from is quoted with it.
"""
from __future__ import annotations

import pytest

from qcomdrv.chips import by_name
from qcomdrv.decode import decode, header_problem
from qcomdrv.pm4 import CommandStream, odd_parity_bit, pkt4_header, pkt7_header
from qcomdrv.regs import packets, registers

A630, A740 = by_name("a630"), by_name("a740")


def words(build, chip=A630) -> list[int]:
  cs = CommandStream(chip)
  build(cs)
  return list(cs.words)


GOLDEN = [
  ("dEQP-VK (a640) 0000000001058000: CP_EVENT_WRITE { EVENT = CACHE_INVALIDATE }",
   lambda cs: cs.cache_invalidate(), [0x70460001, 0x00000031]),
  ("dEQP-VK (a640) 0000000001058008: write HLSQ_INVALIDATE_CMD, every field set, CS_BINDLESS = GFX_BINDLESS = 0x1f",
   lambda cs: cs.reg("HLSQ_INVALIDATE_CMD", VS_STATE=1, HS_STATE=1, DS_STATE=1, GS_STATE=1, FS_STATE=1, CS_STATE=1,
                     CS_IBO=1, GFX_IBO=1, CS_SHARED_CONST=1, GFX_SHARED_CONST=1, CS_BINDLESS=0x1F,
                     GFX_BINDLESS=0x1F), [0x40BB0801, 0x000FFFFF]),
  ("dEQP-VK (a640) 0000000001058010: CP_WAIT_FOR_IDLE (no payload)", lambda cs: cs.wait_for_idle(), [0x70268000]),
  ("dEQP-VK (a640) 0000000001058024: write SP_FLOAT_CNTL { F16_NO_INF } (offset parity bit 27 set)",
   lambda cs: cs.reg("SP_FLOAT_CNTL", F16_NO_INF=True), [0x48AE0401, 0x00000008]),
  ("dEQP-VK (a640) 0000000001058358: CP_SET_MARKER { MARKER_MODE = SET_RENDER_MODE | MODE = RM6_BIN_RENDER_END }",
   lambda cs: cs.set_marker("RM6_BIN_RENDER_END"), [0x70E50001, 0x00000007]),
  ("fd-clouds (a630) 0000000001d91508: CP_EVENT_WRITE RB_DONE_TS, ADDR_0 = 0x1d90000, payload 1",
   lambda cs: cs.event_write("RB_DONE_TS", 0x1D90000, 1), [0x70460004, 0x00000016, 0x01D90000, 0, 1]),
  ("fd-clouds (a630) 0000000001d9151c: CP_WAIT_REG_MEM WRITE_EQ POLL_MEMORY 0x1d90000, REF 1, MASK ~0, delay 0x10",
   lambda cs: cs.wait_reg_mem(0x1D90000, 1, function="WRITE_EQ", delay=0x10),
   [0x70BC8006, 0x00000013, 0x01D90000, 0, 1, 0xFFFFFFFF, 0x10]),
  ("fd-clouds (a630) 0000000001d91538: CP_EVENT_WRITE CACHE_FLUSH_TS, ADDR_0 = 0x1d90000, payload 2",
   lambda cs: cs.cache_flush_ts(0x1D90000, 2), [0x70460004, 0x00000004, 0x01D90000, 0, 2]),
  ("dEQP-VK (a640) 0000000001054238: CP_LOAD_STATE6_FRAG ST6_SHADER SS6_INDIRECT NUM_UNIT 1 from 0x1054080 -- the "
   "log's STATE_BLOCK is SB6_FS_SHADER (0x720000); qcomdrv loads SB6_CS_SHADER (0xd << 18 more: 0x760000)",
   lambda cs: cs.load_state6_frag("ST6_SHADER", "SS6_INDIRECT", 0, 1, 0x1054080),
   [0x70348003, 0x00760000, 0x01054080, 0]),
  ("compute-a540 0000000500170120: CP_EXEC_CS NGROUPS 1, 2, 3", lambda cs: cs.exec_cs((1, 2, 3)),
   [0x70B30004, 0, 1, 2, 3]),
  ("compute-a540 0000000500190360: CP_NOP with one zero dword", lambda cs: cs.nop(0), [0x70100001, 0]),
]


@pytest.mark.parametrize("what,build,expected", GOLDEN, ids=[g[0][:40] for g in GOLDEN])
def test_golden_dwords(what, build, expected):
  assert [f"{w:08x}" for w in words(build)] == [f"{w:08x}" for w in expected], what


def test_reg_to_mem_golden_with_cnt_zero():
  """fd-clouds (a630) 0000000001d91904: CP_REG_TO_MEM { REG = 0x883 | CNT = 0 } DEST 0x1d90008 (CP_SCRATCH[0]): the
  same header and address; qcomdrv writes CNT = 1 for one register (max(CNT, 1) dwords are copied either way)."""
  got = words(lambda cs: cs.reg_to_mem("CP_SCRATCH[0].REG", 0x1D90008))
  assert got[0] == 0x703E8003 and got[2:] == [0x01D90008, 0]
  fields = packets("a6xx").dword("CP_REG_TO_MEM", 0).decode(got[1])
  assert (fields["REG"], fields["CNT"], fields["64B"]) == (0x883, 1, 0)
  wide = words(lambda cs: cs.reg_to_mem("CP_ALWAYS_ON_COUNTER", 0x1000))
  assert packets("a6xx").dword("CP_REG_TO_MEM", 0).decode(wide[1])["CNT"] == 2


@pytest.mark.parametrize("value", [0, 1, 2, 3, 7, 0x7F, 0x880, 0xA9B4, 0x3FFFF])
def test_odd_parity(value):
  assert (bin(value).count("1") + odd_parity_bit(value)) % 2 == 1


def test_headers_are_checked():
  assert pkt4_header(0xA9B0, 2) >> 28 == 4 and pkt7_header(0x33, 4) >> 28 == 7
  with pytest.raises(ValueError, match="one PKT4 writes 1..127"):
    pkt4_header(0xA9B0, 128)
  with pytest.raises(ValueError, match="outside 1..0x3ffff"):
    pkt4_header(0x40000, 1)
  with pytest.raises(ValueError, match="does not fit 7 bits"):
    pkt7_header(0x80, 0)
  assert header_problem(0x70B30004) is None
  assert "wrong parity" in header_problem(0x70B30004 ^ (1 << 23))
  assert "wrong parity" in header_problem(0x40BB0801 ^ (1 << 7))
  assert "not a PKT4 or PKT7" in header_problem(0xC0001000)


def test_named_fields():
  reg = registers("a6xx")["SP_CS_CTRL_REG0"]
  word = reg.encode(THREADSIZE="THREAD128", FULLREGFOOTPRINT=5, HALFREGFOOTPRINT=2, MERGEDREGS=True)
  assert word == (1 << 20) | (5 << 7) | (2 << 1) | (1 << 31)
  assert reg.decode(word)["THREADSIZE"] == "THREAD128" and reg.decode(word)["FULLREGFOOTPRINT"] == 5
  with pytest.raises(KeyError, match="no field 'FULLREGFOOTPRNT'.*close matches: FULLREGFOOTPRINT"):
    reg.encode(FULLREGFOOTPRNT=1)
  with pytest.raises(ValueError, match="does not fit bits 12:7"):
    reg.encode(FULLREGFOOTPRINT=64)
  with pytest.raises(ValueError, match="not one of its values"):
    reg.encode(THREADSIZE="THREAD256")
  cntl = registers("a6xx")["HLSQ_CS_CNTL"]
  assert cntl.encode(CONSTLEN=8, ENABLED=True) == 2 | (1 << 8)  # CONSTLEN is stored >> 2
  with pytest.raises(ValueError, match="multiple of 4"):
    cntl.encode(CONSTLEN=6)
  with pytest.raises(KeyError, match="no register 'SP_CS_OBJ_STRAT'.*SP_CS_OBJ_START"):
    registers("a6xx")["SP_CS_OBJ_STRAT"]


def test_generation_differences_stay_in_the_emitters():
  a6 = words(lambda cs: cs.cs_ndrange((64, 1, 1), (4, 1, 1)), A630)
  a7 = words(lambda cs: cs.cs_ndrange((64, 1, 1), (4, 1, 1)), A740)
  assert (a6[0] >> 8) & 0x3FFFF == 0xB990 and (a7[0] >> 8) & 0x3FFFF == 0xA9D4
  assert registers("a7xx").name_at((a7[-2] >> 8) & 0x3FFFF) == "HLSQ_CS_LAST_LOCAL_SIZE"
  assert words(lambda cs: cs.cache_invalidate(), A740) == [0x70460001, 51]  # CP_EVENT_WRITE7 CACHE_INVALIDATE7
  fence = words(lambda cs: cs.cache_flush_ts(0x1234_5678_9000, 7), A740)
  fields = packets("a7xx").dword("CP_EVENT_WRITE7", 0).decode(fence[1])
  assert (fields["EVENT"], fields["WRITE_SRC"], fields["WRITE_DST"], fields["WRITE_ENABLED"]) == \
      ("CACHE_FLUSH_TS", "EV_WRITE_USER_32B", "EV_DST_RAM", 1)
  assert fence[2:] == [0x56789000, 0x1234, 7]


def test_decoder_names_packets_and_registers():
  cs = CommandStream(A740)
  cs.set_marker()
  cs.cs_program(0x10_0000_1000, 2, 4, 0, "THREAD64", 4, 0)
  cs.exec_cs((3, 1, 1))
  text = "\n".join(decode(cs.words, "a7xx"))
  assert "PKT7 CP_SET_MARKER" in text and "MODE = RM6_COMPUTE" in text
  assert "SP_CS_CTRL_REG0: {" in text and "FULLREGFOOTPRINT = 4" in text and "THREADSIZE = THREAD64" in text
  assert "SP_CS_OBJ_START: 0x1000001000" in text and "HLSQ_CS_CNTL: { CONSTLEN = 4 | ENABLED = 1" in text
  assert "PKT7 CP_EXEC_CS (4 dwords)" in text and "NGROUPS_X = 3" in text
  broken = list(cs.words)
  broken[0] ^= 1 << 23
  assert "!! PKT7 header" in decode(broken, "a7xx")[0]
