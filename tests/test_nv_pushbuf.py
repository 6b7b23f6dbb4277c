"""nvdrv.pushbuf and nvdrv.methods against nvdrv/FACTS.md: method headers, emitters, decoder, patch points, GPFIFO.

The reference encoders here are built from FACTS.md's tables (5.1 GPFIFO entry, 5.4 header bits, 5.5 SEM_EXECUTE,
7.3 LAUNCH_DMA) by a generic "put value v in bits hi:lo" helper, not from nvdrv's constants; the method offsets
nvdrv names in its decoder are compared with the class tables of FACTS.md 5.5 / 5.6 / 7.2.
"""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nv_facts
from conftest import examples
from nvdrv import methods as m
from nvdrv.pushbuf import (SUBC_COMPUTE, SUBC_COPY, PushBuffer, decode, gpfifo_entry, header, hi32, lo32, qwords)


def place(value: int, hi: int, lo: int) -> int:
  """`value` in bits hi:lo of a word; refuses values wider than the field."""
  assert 0 <= value < 1 << (hi - lo + 1), f"{value:#x} does not fit bits {hi}:{lo}"
  return value << lo


def extract(word: int, hi: int, lo: int) -> int:
  return (word >> lo) & ((1 << (hi - lo + 1)) - 1)


HEADER = nv_facts.method_header_fields()
SEC_OP = nv_facts.sec_op_values()


def reference_header(subc: int, method: int, count: int, sec_op: int) -> int:
  return (place(method >> 2, *HEADER["method"]) | place(subc, *HEADER["subchannel"])
          | place(count, *HEADER["count"]) | place(sec_op, *HEADER["SEC_OP"]))


def sem_execute(**fields: int) -> int:
  bits = nv_facts.sem_execute_fields()
  return sum(place(value, *bits[name]) for name, value in fields.items())


def launch_dma(**fields: str) -> int:
  """LAUNCH_DMA from FACTS.md 7.3 value names, e.g. launch_dma(DATA_TRANSFER_TYPE="PIPELINED")."""
  table = nv_facts.launch_dma_fields()
  return sum(place(table[name][2][value], table[name][0], table[name][1]) for name, value in fields.items())


DECODED = re.compile(r"^\s*(\d+): \[(\d)\] (\S+) = (0x[0-9a-f]{8}|<truncated>)$")


def decoded(pb_or_words) -> list[tuple[int, str, int]]:
  """decode() output as (subchannel, method name, value) triples; every line must be a data line."""
  words = pb_or_words.words if isinstance(pb_or_words, PushBuffer) else pb_or_words
  out = []
  for line in decode(words):
    match = DECODED.match(line)
    assert match, f"unexpected decode line {line!r}"
    out.append((int(match.group(2)), match.group(3), int(match.group(4), 16)))
  return out


addresses = st.integers(0, (1 << 57) - 8).map(lambda a: a & ~7)  # 8-byte aligned, within the 57-bit VA fields
u64 = st.integers(0, (1 << 64) - 1)
u32 = st.integers(0, (1 << 32) - 1)


# ---- headers (FACTS.md 5.4) ----
def test_facts_header_layout_and_uvm_formula():
  # the 5.4 fields do not overlap; bit 12 lies between METHOD_ADDRESS 11:0 and SUBCHANNEL 15:13 and stays 0
  covered = sorted(bit for hi, lo in HEADER.values() for bit in range(lo, hi + 1))
  assert covered == [bit for bit in range(32) if bit != 12]
  assert (SEC_OP["INC_METHOD"], SEC_OP["NON_INC_METHOD"], SEC_OP["IMMD_DATA_METHOD"]) == (1, 3, 4)
  # FACTS.md 8.1 states UVM's INC header as 0x20000000 | count<<16 | subch<<13 | (mthd>>2)
  assert header(4, 0x400, 4) == 0x20000000 | 4 << 16 | 4 << 13 | (0x400 >> 2)


@settings(max_examples=examples(200))
@given(st.integers(0, 7), st.integers(0, (1 << 12) - 1).map(lambda d: d * 4), st.integers(0, (1 << 13) - 1),
       st.sampled_from([SEC_OP["INC_METHOD"], SEC_OP["NON_INC_METHOD"], SEC_OP["IMMD_DATA_METHOD"]]))
def test_header_fields(subc, method, count, sec_op):
  word = header(subc, method, count, sec_op)
  assert word == reference_header(subc, method, count, sec_op)
  assert extract(word, *HEADER["method"]) << 2 == method
  assert extract(word, *HEADER["subchannel"]) == subc
  assert extract(word, *HEADER["count"]) == count
  assert extract(word, *HEADER["SEC_OP"]) == sec_op
  assert not word & (1 << 12)


@pytest.mark.parametrize("method", [0x1, 0x2, 0x403, 0x4000, 0x4004, 0x10000])
def test_header_rejects_bad_methods(method):
  with pytest.raises(ValueError, match=f"0x{method:x}"):
    header(0, method, 1)


@pytest.mark.parametrize("count", [-1, 1 << 13, (1 << 13) + 5])
def test_header_rejects_bad_counts(count):
  with pytest.raises(ValueError, match=f"{count} data words"):
    header(0, 0x100, count)


def test_method_rejects_too_many_data_words():
  pb = PushBuffer()
  with pytest.raises(ValueError, match="8192 data words"):
    pb.method(SUBC_COMPUTE, 0x1B4, *range(1 << 13))
  with pytest.raises(ValueError, match="8192 data words"):
    pb.method_non_inc(SUBC_COMPUTE, 0x1B4, bytes(4 << 13))
  assert len(pb) == 0


@pytest.mark.parametrize("subc", [-1, 8, 9])
def test_header_rejects_bad_subchannels(subc):
  # a subchannel of 8 would otherwise land in bit 16, the low bit of the count field
  with pytest.raises(ValueError, match=f"subchannel {subc}"):
    header(subc, 0x100, 1)


@pytest.mark.parametrize("sec_op", [-1, 8])
def test_header_rejects_bad_sec_op(sec_op):
  with pytest.raises(ValueError, match=f"SEC_OP {sec_op}"):
    header(1, 0x100, 1, sec_op)


# ---- method offsets nvdrv names (FACTS.md 5.5 host, 5.6 compute, 7.2 copy) ----
@pytest.mark.parametrize("heading,names,prefix", [("### 5.5", m.HOST_NAMES, "NVC86F_"),
                                                  ("### 5.6", m.COMPUTE_NAMES, "NVCBC0_"),
                                                  ("### 7.2", m.COPY_NAMES, "NVC8B5_")])
def test_method_offsets_match_facts(heading, names, prefix):
  facts = nv_facts.method_offsets(heading)
  compared = 0
  for offset, name in names.items():
    if name in facts:
      assert facts[name] == offset, f"{prefix}{name}"
      compared += 1
    constant = getattr(m, prefix + name, None)
    if constant is not None:
      assert constant == offset, f"methods.{prefix}{name} vs the decoder's name table"
  # copy: SET_OBJECT is a host method (clc8b5.h has none, FACTS.md 7.1); everything else must be in the sheet
  assert compared >= len(names) - (1 if prefix == "NVC8B5_" else 0)


def test_every_method_constant_matches_facts():
  tables = {"NVC86F_": nv_facts.method_offsets("### 5.5"), "NVCBC0_": nv_facts.method_offsets("### 5.6"),
            "NVC8B5_": nv_facts.method_offsets("### 7.2")}
  unchecked = []
  for name in dir(m):
    prefix, method = name[:7], name[7:]
    if prefix not in tables:
      continue
    if method in tables[prefix]:
      assert getattr(m, name) == tables[prefix][method], name
    else:
      unchecked.append(name)
  assert unchecked == ["NVC8B5_SET_OBJECT"]  # a host method bound on the copy subchannel (FACTS.md 7.1)


# ---- emitters -> decode ----
@settings(max_examples=examples(50))
@given(addresses, u64, st.booleans())
def test_semaphore_release(address, payload, wfi):
  pb = PushBuffer().semaphore_release(address, payload, wfi=wfi)
  execute = sem_execute(OPERATION=1, PAYLOAD_SIZE=1, RELEASE_WFI=int(wfi))  # RELEASE 1; PAYLOAD_SIZE 1 = 64-bit
  assert decoded(pb) == [
    (0, "NVC86F_SEM_ADDR_LO", address & 0xFFFFFFFC),       # bits 31:2 = address bits 31:2
    (0, "NVC86F_SEM_ADDR_HI", (address >> 32) & 0x1FFFFFF),  # bits 24:0 = address bits 56:32
    (0, "NVC86F_SEM_PAYLOAD_LO", payload & 0xFFFFFFFF),
    (0, "NVC86F_SEM_PAYLOAD_HI", payload >> 32),
    (0, "NVC86F_SEM_EXECUTE", execute)]
  assert len(pb) == 6


def test_sem_execute_encoder_reproduces_facts_words():
  # FACTS.md 10.3 (nouveau's gv100 fence) and 8.3 (UVM's acquire) give ready-made SEM_EXECUTE words
  assert sem_execute(OPERATION=1, RELEASE_WFI=1) == 0x00100001
  assert sem_execute(OPERATION=3, ACQUIRE_SWITCH_TSG=1) == 0x00001003
  assert sem_execute(OPERATION=1, RELEASE_TIMESTAMP=1) == 0x02000001


@settings(max_examples=examples(50))
@given(addresses, u32)
def test_semaphore_acquire(address, payload):
  pb = PushBuffer().semaphore_acquire(address, payload)
  assert decoded(pb) == [
    (0, "NVC86F_SEM_ADDR_LO", address & 0xFFFFFFFC), (0, "NVC86F_SEM_ADDR_HI", address >> 32),
    (0, "NVC86F_SEM_PAYLOAD_LO", payload), (0, "NVC86F_SEM_PAYLOAD_HI", 0),
    (0, "NVC86F_SEM_EXECUTE", sem_execute(OPERATION=3, ACQUIRE_SWITCH_TSG=1))]  # ACQ_CIRC_GEQ 3, 32-bit payload


def test_host_and_object_emitters():
  pb = PushBuffer().set_object(SUBC_COMPUTE, 0xCBC0).set_object(SUBC_COPY, 0xC8B5).set_object(0, 0xC86F).wfi()
  assert decoded(pb) == [(1, "NVCBC0_SET_OBJECT", 0xCBC0), (4, "NVC8B5_SET_OBJECT", 0xC8B5),
                         (0, "NVC86F_SET_OBJECT", 0xC86F), (0, "NVC86F_WFI", 1)]  # WFI SCOPE 0:0 ALL 1


@settings(max_examples=examples(30))
@given(u64, u64, u64, u64, st.integers(1, 0xFF))
def test_compute_state_emitters(shared, local, base, per_tpc, sms):
  pb = PushBuffer().compute_windows(shared, local).compute_local_memory(base, per_tpc, sms)
  assert decoded(pb) == [
    (1, "NVCBC0_SET_SHADER_SHARED_MEMORY_WINDOW_A", shared >> 32), (1, "NVCBC0_SET_SHADER_SHARED_MEMORY_WINDOW_B",
                                                                    shared & 0xFFFFFFFF),
    (1, "NVCBC0_SET_SHADER_LOCAL_MEMORY_WINDOW_A", local >> 32), (1, "NVCBC0_SET_SHADER_LOCAL_MEMORY_WINDOW_B",
                                                                  local & 0xFFFFFFFF),
    (1, "NVCBC0_SET_SHADER_LOCAL_MEMORY_A", base >> 32), (1, "NVCBC0_SET_SHADER_LOCAL_MEMORY_B", base & 0xFFFFFFFF),
    (1, "NVCBC0_SET_SHADER_LOCAL_MEMORY_NON_THROTTLED_A", per_tpc >> 32),
    (1, "NVCBC0_SET_SHADER_LOCAL_MEMORY_NON_THROTTLED_B", per_tpc & 0xFFFFFFFF),
    (1, "NVCBC0_SET_SHADER_LOCAL_MEMORY_NON_THROTTLED_C", sms)]


def test_cache_emitters():
  pb = PushBuffer().compute_wfi().invalidate_caches()
  assert decoded(pb) == [
    (1, "NVCBC0_INVALIDATE_SHADER_CACHES", 0x14),  # FACTS.md 10.3: DATA bit 4 | FLUSH_DATA bit 2
    (1, "NVCBC0_INVALIDATE_SHADER_CACHES_NO_WFI", 1 | 1 << 4 | 1 << 12)]  # 5.6: I$ bit 0, GLOBAL_DATA 4, CONSTANT 12


@settings(max_examples=examples(30))
@given(st.integers(0, (1 << 40) - 1).map(lambda a: a & ~0xFF))
def test_launch(qmd_address):
  pb = PushBuffer().launch(qmd_address)
  assert decoded(pb) == [(1, "NVCBC0_SEND_PCAS_A", qmd_address >> 8),  # QMD_ADDRESS_SHIFTED8
                         (1, "NVCBC0_SEND_SIGNALING_PCAS2_B", 3)]       # PCAS_ACTION INVALIDATE_COPY_SCHEDULE


@pytest.mark.parametrize("qmd_address", [0x1001, 0x10080, 0x12345678])
def test_launch_rejects_unaligned_qmd(qmd_address):
  with pytest.raises(ValueError, match=f"0x{qmd_address:x}"):
    PushBuffer().launch(qmd_address)


@settings(max_examples=examples(50))
@given(addresses, addresses, st.integers(1, (1 << 32) - 1))
def test_copy(dst, src, nbytes):
  pb = PushBuffer().copy(dst, src, nbytes)
  assert decoded(pb) == [
    (4, "NVC8B5_OFFSET_IN_UPPER", src >> 32), (4, "NVC8B5_OFFSET_IN_LOWER", src & 0xFFFFFFFF),
    (4, "NVC8B5_OFFSET_OUT_UPPER", dst >> 32), (4, "NVC8B5_OFFSET_OUT_LOWER", dst & 0xFFFFFFFF),
    (4, "NVC8B5_LINE_LENGTH_IN", nbytes),
    (4, "NVC8B5_LAUNCH_DMA", launch_dma(DATA_TRANSFER_TYPE="PIPELINED", FLUSH_ENABLE="TRUE",
                                        SRC_MEMORY_LAYOUT="PITCH", DST_MEMORY_LAYOUT="PITCH"))]


def test_launch_dma_encoder_reproduces_facts_words():
  # FACTS.md 7.4's ready-made words, rebuilt from the 7.3 field table (checks the reference encoder itself)
  words = nv_facts.launch_dma_examples()
  copy = dict(SRC_MEMORY_LAYOUT="PITCH", DST_MEMORY_LAYOUT="PITCH", DISABLE_PLC="TRUE")
  assert launch_dma(DATA_TRANSFER_TYPE="NON_PIPELINED", **copy) == \
    words["1-D virtual→virtual copy, NON_PIPELINED, no flush, DISABLE_PLC"]
  assert launch_dma(DATA_TRANSFER_TYPE="PIPELINED", **copy) == words["1-D copy, PIPELINED, no flush (follow-on chunks)"]
  assert launch_dma(DATA_TRANSFER_TYPE="NON_PIPELINED", REMAP_ENABLE="TRUE", **copy) == \
    words["memset (REMAP_ENABLE), NON_PIPELINED, no flush"]
  assert launch_dma(SEMAPHORE_TYPE="RELEASE_SEMAPHORE_NO_TIMESTAMP", FLUSH_ENABLE="TRUE", DISABLE_PLC="TRUE") == \
    words["semaphore release, 32-bit payload, flush SYS (UVM end-of-push)"]
  assert m.LAUNCH_DMA_1D_COPY == launch_dma(DATA_TRANSFER_TYPE="PIPELINED", FLUSH_ENABLE="TRUE",
                                            SRC_MEMORY_LAYOUT="PITCH", DST_MEMORY_LAYOUT="PITCH")


@pytest.mark.parametrize("nbytes", [0, -4, 1 << 32, (1 << 32) + 1])
def test_copy_rejects_bad_sizes(nbytes):
  with pytest.raises(ValueError, match=str(nbytes)):
    PushBuffer().copy(0x1000, 0x2000, nbytes)


def test_method_non_inc_and_generic_method():
  data = bytes(range(16))
  pb = PushBuffer().method_non_inc(SUBC_COMPUTE, 0x01B4, data).method(SUBC_COPY, 0x700, 7, 8, 9)
  words = [int.from_bytes(data[i:i + 4], "little") for i in range(0, 16, 4)]
  assert decoded(pb) == [(1, "NVCBC0_LOAD_INLINE_DATA", w) for w in words] + [
    (4, "NVC8B5_SET_REMAP_CONST_A", 7), (4, "NVC8B5_SET_REMAP_CONST_B", 8), (4, "NVC8B5_SET_REMAP_COMPONENTS", 9)]
  assert pb.words[0] == reference_header(SUBC_COMPUTE, 0x01B4, 4, SEC_OP["NON_INC_METHOD"])


def test_decode_special_headers():
  immediate = reference_header(SUBC_COMPUTE, 0x02C0, 3, SEC_OP["IMMD_DATA_METHOD"])
  empty = reference_header(0, 0x0078, 0, SEC_OP["INC_METHOD"])
  truncated = reference_header(SUBC_COPY, 0x400, 3, SEC_OP["INC_METHOD"])
  lines = decode([immediate, empty, truncated, 0x1234])
  assert lines[0] == "    0: [1] NVCBC0_SEND_SIGNALING_PCAS2_B = 0x3 (immediate)"
  assert lines[1] == f"    1: [0] INC header with no data (0x{empty:08x})"
  assert lines[2:] == ["    3: [4] NVC8B5_OFFSET_IN_UPPER = 0x00001234",
                       "    4: [4] NVC8B5_OFFSET_IN_LOWER = <truncated>",
                       "    5: [4] NVC8B5_OFFSET_OUT_UPPER = <truncated>"]
  unknown = decode([reference_header(SUBC_COMPUTE, 0x3FFC, 1, SEC_OP["INC_METHOD"]), 5])
  assert unknown == ["    1: [1] NVCBC0_unk_3ffc = 0x00000005"]


# ---- patch points ----
@settings(max_examples=examples(30))
@given(addresses, u64, st.integers(0, (1 << 40) - 1).map(lambda a: a & ~0xFF), addresses, addresses, u64)
def test_mark_and_patch_rewrite_exactly_the_marked_words(sem, payload, qmd, dst, src, new):
  pb = PushBuffer().wfi().semaphore_release(sem, payload, name="done").launch(qmd, name="k").copy(dst, src, 64,
                                                                                                   name="cp")
  pb.mark("twice")
  pb.words.append(0)
  pb.mark("twice")
  pb.words.append(0)
  expected_marks = {"done.addr_lo": 3, "done.addr_hi": 4, "done.payload_lo": 5, "done.payload_hi": 6, "k.qmd": 9,
                    "cp.src_hi": 13, "cp.src_lo": 14, "cp.dst_hi": 15, "cp.dst_lo": 16}
  assert {name: idxs for name, idxs in pb.marks.items() if name != "twice"} == {
    name: [idx] for name, idx in expected_marks.items()}
  assert pb.marks["twice"] == [len(pb) - 2, len(pb) - 1]
  for name, indexes in pb.marks.items():
    before = list(pb.words)
    pb.patch(name, new)
    changed = [i for i, (a, b) in enumerate(zip(before, pb.words)) if a != b]
    assert set(changed) <= set(indexes)
    assert all(pb.words[i] == new & 0xFFFFFFFF for i in indexes)
  names = [name for _, name, _ in decoded(pb.words[:len(pb) - 2])]
  assert names[1:5] == ["NVC86F_SEM_ADDR_LO", "NVC86F_SEM_ADDR_HI", "NVC86F_SEM_PAYLOAD_LO", "NVC86F_SEM_PAYLOAD_HI"]


def test_patch_unknown_name():
  pb = PushBuffer().semaphore_release(0x1000, 1, name="done")
  with pytest.raises(KeyError, match="done.payload"):
    pb.patch("done.payload", 2)


def test_unnamed_emitters_leave_no_marks():
  pb = PushBuffer().semaphore_release(0x1000, 1).launch(0x100).copy(0x1000, 0x2000, 8)
  assert pb.marks == {}


# ---- GPFIFO entries (FACTS.md 5.1) ----
ENTRY = nv_facts.gpfifo_entry_fields()


def entry_field(entry: int, name: str) -> int:
  word, hi, lo = ENTRY[name]
  return extract(entry & 0xFFFFFFFF if word == "entry0" else entry >> 32, hi, lo)


@settings(max_examples=examples(100))
@given(st.integers(0, (1 << 40) - 1).map(lambda a: a & ~3), st.integers(1, (1 << 21) - 1))
def test_gpfifo_entry_fields(address, nwords):
  entry = gpfifo_entry(address, nwords)
  assert 0 <= entry < 1 << 64
  assert entry_field(entry, "GET") << 2 == address & 0xFFFFFFFF
  assert entry_field(entry, "GET_HI") == address >> 32
  assert entry_field(entry, "LENGTH") == nwords
  assert (entry_field(entry, "FETCH"), entry_field(entry, "LEVEL"), entry_field(entry, "SYNC")) == (0, 0, 0)
  assert qwords(entry.to_bytes(8, "little")) == [entry]


@pytest.mark.parametrize("address,nwords", [
  (0x1002, 4),              # GET holds VA bits 31:2: the segment must be 4-byte aligned
  (0x1001, 4),
  (1 << 40, 4),             # GET_HI holds VA bits 39:32 only; bit 40 would spill into entry1 bit 8, 41 into LEVEL
  ((1 << 41) | 0x1000, 4),
  (-4, 4),
  (0x1000, 1 << 21),        # LENGTH is 21 bits (30:10)
  (0x1000, 0),              # LENGTH 0 makes a control entry whose OPCODE is GET_HI
  (0x1000, -1),
])
def test_gpfifo_entry_rejects(address, nwords):
  with pytest.raises(ValueError, match=f"{nwords} words"):
    gpfifo_entry(address, nwords)


def test_lo32_hi32():
  assert (lo32(0x1234_5678_9ABC_DEF0), hi32(0x1234_5678_9ABC_DEF0)) == (0x9ABC_DEF0, 0x1234_5678)
  assert hi32(1 << 64 | 5 << 32) == 5
