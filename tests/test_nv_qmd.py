"""nvdrv.qmd against nvdrv/FACTS.md: field positions (5.7), set/get, build() read back with an independent bit reader,
and the shared-memory carve-out encoding (10.5).

QMD bits are read here from `Qmd.tobytes()` as one little-endian integer, never through Qmd.get, so a wrong word split
in nvdrv's own reader cannot hide a wrong writer.
"""
from __future__ import annotations

import re
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nv_facts
from conftest import examples
from nvdrv import qmd
from nvdrv.qmd import LAYOUTS, Qmd, build, sm_config_shared_mem

VERSIONS = sorted(LAYOUTS)

# Fields FACTS.md gives only in prose (10.2, the newer-NAK and cluster paragraphs), V04_00, transcribed by hand.
PROSE_V04 = {"DEPENDENT_QMD0_POINTER": (479, 448), "DEPENDENT_QMD_ENABLE(0)": (368, 368),
             "DEPENDENT_QMD0_ACTION": (371, 369), "DEPENDENCE_COUNTER": (15, 0),
             "HW_ONLY_DEPENDENCE_COUNTER": (303, 288), "GPC_CGA_HEIGHT": (2157, 2152), "GPC_CGA_DEPTH": (2165, 2160),
             "CGA_CTA_DISTRIBUTION_MODE": (2207, 2207), "GPU_CGA_WIDTH": (2223, 2208), "GPU_CGA_HEIGHT": (2239, 2224),
             "GPU_CGA_DEPTH": (2255, 2240)}
# FACTS.md 5.7 gives indexed fields for i = 0 and states the step per index: V04 VALID/INVALIDATE 4 bits,
# address/size 64 bits, RELEASE_* 16 bits; V03 constant-buffer address/size/invalidate 64 bits.
STEPS = {"V04_00": [("CONSTANT_BUFFER_VALID", 4), ("CONSTANT_BUFFER_INVALIDATE", 4), ("CONSTANT_BUFFER_ADDR", 64),
                    ("CONSTANT_BUFFER_SIZE", 64), ("RELEASE_", 16)],
         "V03_00": [("CONSTANT_BUFFER_ADDR", 64), ("CONSTANT_BUFFER_SIZE", 64), ("CONSTANT_BUFFER_INVALIDATE", 64)]}


def reference_position(version: str, name: str) -> tuple[int, int] | None:
  """Where FACTS.md puts field `name` of `version`, or None if the sheet does not say."""
  table = nv_facts.qmd_fields()[version]
  if name in table:
    return table[name]
  if version == "V04_00" and name in PROSE_V04:
    return PROSE_V04[name]
  indexed = re.fullmatch(r"(.+)\((\d+)\)", name)
  if indexed and indexed.group(1) + "(0)" in table:
    for prefix, step in STEPS[version]:
      if name.startswith(prefix):
        hi, lo = table[indexed.group(1) + "(0)"]
        i = int(indexed.group(2))
        return hi + step * i, lo + step * i
  return None


def bits(data: bytes, hi: int, lo: int) -> int:
  """Bits hi:lo of `data` viewed as one little-endian integer (the QMD as little-endian u32 words, FACTS.md 5.7)."""
  return (int.from_bytes(data, "little") >> lo) & ((1 << (hi - lo + 1)) - 1)


# ---- layouts ----
@pytest.mark.parametrize("version", VERSIONS)
def test_every_field_is_where_facts_put_it(version):
  layout, nbytes = LAYOUTS[version]
  missing = [name for name in layout if reference_position(version, name) is None]
  assert not missing, f"QMD {version} fields with no position in FACTS.md (add them there first): {missing}"
  for name, position in layout.items():
    assert position == reference_position(version, name), f"{version} {name}"
    hi, lo = position
    assert 0 <= lo <= hi < nbytes * 8, f"{version} {name} {hi}:{lo} outside the {nbytes}-byte QMD"
  # everything FACTS.md tabulates for this version is declared
  assert set(nv_facts.qmd_fields()[version]) <= set(layout)


@pytest.mark.parametrize("version", VERSIONS)
def test_fields_do_not_overlap(version):
  layout, _ = LAYOUTS[version]
  ordered = sorted(layout.items(), key=lambda item: item[1][1])
  overlaps = [(a, b) for i, (a, (a_hi, _)) in enumerate(ordered) for b, (_, b_lo) in ordered[i + 1:] if b_lo <= a_hi]
  assert overlaps == []


def test_qmd_sizes():
  # FACTS.md 5.7: V03_00 is 64 words, V04_00 96 words
  assert {v: LAYOUTS[v][1] for v in VERSIONS} == {"V03_00": 256, "V04_00": 384}
  for version in VERSIONS:
    assert len(Qmd(version).tobytes()) == LAYOUTS[version][1]


# ---- set / get ----
@settings(max_examples=examples(30))
@given(st.sampled_from(VERSIONS), st.data())
def test_set_get_round_trip_all_fields(version, data):
  layout, nbytes = LAYOUTS[version]
  values = {name: data.draw(st.integers(0, (1 << (hi - lo + 1)) - 1), label=name) for name, (hi, lo) in layout.items()}
  q = Qmd(version)
  for name, value in values.items():
    assert q.set(name, value) is q
  raw = q.tobytes()
  for name, value in values.items():
    assert q.get(name) == value, name
    assert bits(raw, *layout[name]) == value, name
  assert {name: v for name, v in values.items() if v} == q.fields()
  clone = q.copy()
  assert clone.tobytes() == raw and clone.words is not q.words


@settings(max_examples=examples(100))
@given(st.sampled_from(VERSIONS), st.data())
def test_set_touches_only_its_field(version, data):
  layout, nbytes = LAYOUTS[version]
  name = data.draw(st.sampled_from(sorted(layout)), label="field")
  hi, lo = layout[name]
  value = data.draw(st.integers(0, (1 << (hi - lo + 1)) - 1), label="value")
  background = data.draw(st.binary(min_size=nbytes, max_size=nbytes), label="background")
  q = Qmd(version)
  q.words = array("I", background)
  q.set(name, value)
  after = int.from_bytes(q.tobytes(), "little")
  field_mask = ((1 << (hi - lo + 1)) - 1) << lo
  assert (after ^ int.from_bytes(background, "little")) & ~field_mask == 0
  assert (after & field_mask) >> lo == value


@settings(max_examples=examples(50))
@given(st.data())
def test_fields_spanning_words(data):
  # No NVIDIA field in V03/V04 crosses a 32-bit word, but Qmd.set/get split any range into per-word pieces; a
  # synthetic layout exercises that path (fields of 2..96 bits starting anywhere in a 4-word QMD).
  lo = data.draw(st.integers(0, 126), label="lo")
  hi = data.draw(st.integers(lo + 1, min(lo + 95, 127)), label="hi")
  value = data.draw(st.integers(0, (1 << (hi - lo + 1)) - 1), label="value")
  background = data.draw(st.binary(min_size=16, max_size=16), label="background")
  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(qmd.LAYOUTS, "TEST", ({"SPAN": (hi, lo)}, 16))
    q = Qmd("TEST")
    q.words = array("I", background)
    q.set("SPAN", value)
    assert q.get("SPAN") == value
  mask = ((1 << (hi - lo + 1)) - 1) << lo
  expected = (int.from_bytes(background, "little") & ~mask) | value << lo
  assert int.from_bytes(q.tobytes(), "little") == expected


@pytest.mark.parametrize("version,typo,close", [("V04_00", "GRID_WIDHT", "GRID_WIDTH"),
                                                ("V03_00", "CTA_RASTER_WIDTH0", "CTA_RASTER_WIDTH"),
                                                ("V04_00", "REGISTER_COUNT_V", "REGISTER_COUNT")])
def test_unknown_field_names_close_matches(version, typo, close):
  q = Qmd(version)
  with pytest.raises(KeyError, match=f"{version}.*{typo}.*close: .*{close}"):
    q.set(typo, 1)
  with pytest.raises(KeyError, match=close):
    q.get(typo)


def test_unknown_field_without_close_match():
  with pytest.raises(KeyError) as info:
    Qmd("V04_00").set("XYZZY", 1)
  assert "XYZZY" in str(info.value) and "close" not in str(info.value)


@pytest.mark.parametrize("version", VERSIONS)
def test_values_wider_than_the_field(version):
  layout, _ = LAYOUTS[version]
  for name, (hi, lo) in layout.items():
    width = hi - lo + 1
    for bad in (1 << width, -1):
      with pytest.raises(ValueError, match=rf"{re.escape(name)} is {width} bits wide; {bad}"):
        Qmd(version).set(name, bad)


def test_unknown_version():
  with pytest.raises(ValueError, match="V05_00.*V03_00"):
    Qmd("V05_00")


# ---- sm_config_shared_mem (FACTS.md 10.5) ----
CARVEOUTS = nv_facts.carveouts_kb()
ENCODING = nv_facts.carveout_encoding()


def reference_sm_config(nbytes: int) -> int:
  kb = min(c for c in CARVEOUTS if c * 1024 >= nbytes)
  return ENCODING[kb]


def test_carveout_table_matches_facts():
  assert sorted(ENCODING) == CARVEOUTS
  assert list(qmd.SM90_CARVEOUTS_KB) == CARVEOUTS
  for kb, next_kb in zip(CARVEOUTS, CARVEOUTS[1:] + [None]):
    assert ENCODING[kb] == kb // 4 + 1  # the sheet's formula agrees with its own worked examples
    assert sm_config_shared_mem(kb * 1024) == ENCODING[kb]
    if next_kb is not None:  # one byte more needs the next carve-out
      assert sm_config_shared_mem(kb * 1024 + 1) == ENCODING[next_kb]


@settings(max_examples=examples(100))
@given(st.integers(0, 228 * 1024))
def test_sm_config_shared_mem(nbytes):
  assert sm_config_shared_mem(nbytes) == reference_sm_config(nbytes)


@pytest.mark.parametrize("nbytes", [228 * 1024 + 1, 256 * 1024, 1 << 30])
def test_sm_config_shared_mem_too_large(nbytes):
  with pytest.raises(ValueError, match=f"{nbytes} bytes.*228 KiB"):
    sm_config_shared_mem(nbytes)


# ---- build() ----
V04 = nv_facts.qmd_fields()["V04_00"]
V03 = nv_facts.qmd_fields()["V03_00"]


def launch_args(**overrides) -> dict:
  args = dict(program=0x7F_1234_5680, registers=32, grid=(3, 2, 1), block=(128, 1, 1), shared_bytes=1000,
              cbuf0=0x20_0000_1040, cbuf0_size=0x230, local_bytes=0x40, max_shared=228 * 1024)
  args.update(overrides)
  return args


launches = st.fixed_dictionaries({
  "program": st.integers(0, (1 << 49) - 1).map(lambda a: a & ~0x7F), "registers": st.integers(1, 255),
  "grid": st.tuples(st.integers(1, (1 << 31) - 1), st.integers(1, 0xFFFF), st.integers(1, 0xFFFF)),
  "block": st.tuples(st.integers(1, 1024), st.integers(1, 1024), st.integers(1, 64)),
  "shared_bytes": st.integers(0, 227 * 1024), "cbuf0": st.integers(0, (1 << 49) - 1).map(lambda a: a & ~63),
  "cbuf0_size": st.integers(0x210, 0x10000), "local_bytes": st.integers(0, 0xFFFF).map(lambda n: n & ~15),
  "max_shared": st.sampled_from([100 * 1024, 164 * 1024, 228 * 1024]), "barriers": st.integers(0, 16),
  "cwd_membar": st.sampled_from([0, 1, 3])})


@settings(max_examples=examples(50))
@given(launches)
def test_build_v04(args):
  raw = build("V04_00", **args).tobytes()
  assert len(raw) == 384

  def field(name):
    return bits(raw, *V04[name])

  assert (field("QMD_TYPE"), field("QMD_MAJOR_VERSION"), field("QMD_MINOR_VERSION")) == (2, 4, 0)  # GRID_CTA
  assert (field("GRID_WIDTH"), field("GRID_HEIGHT"), field("GRID_DEPTH")) == args["grid"]
  assert tuple(field(f"CTA_THREAD_DIMENSION{i}") for i in range(3)) == args["block"]
  assert field("REGISTER_COUNT") == args["registers"]
  assert field("PROGRAM_ADDRESS_LOWER") | field("PROGRAM_ADDRESS_UPPER") << 32 == args["program"]
  cbuf_shifted = field("CONSTANT_BUFFER_ADDR_LOWER_SHIFTED6(0)") | field("CONSTANT_BUFFER_ADDR_UPPER_SHIFTED6(0)") << 32
  assert cbuf_shifted << 6 == args["cbuf0"]
  assert field("CONSTANT_BUFFER_SIZE_SHIFTED4(0)") == (args["cbuf0_size"] + 15) // 16
  assert field("CONSTANT_BUFFER_VALID(0)") == 1
  shared = (args["shared_bytes"] + 255) // 256 * 256
  assert field("SHARED_MEMORY_SIZE") == shared
  assert field("MIN_SM_CONFIG_SHARED_MEM_SIZE") == reference_sm_config(max(shared, 8 * 1024))  # NAK: smallest fit
  assert field("TARGET_SM_CONFIG_SHARED_MEM_SIZE") == reference_sm_config(max(shared, 8 * 1024))
  assert field("MAX_SM_CONFIG_SHARED_MEM_SIZE") == reference_sm_config(args["max_shared"])
  assert field("SHADER_LOCAL_MEMORY_LOW_SIZE") == args["local_bytes"]
  assert field("BARRIER_COUNT") == args["barriers"]
  assert field("CWD_MEMBAR_TYPE") == args["cwd_membar"]
  assert field("API_VISIBLE_CALL_LIMIT") == 1  # NO_CHECK (FACTS.md 10.2)


@settings(max_examples=examples(20))
@given(launches)
def test_build_v03(args):
  raw = build("V03_00", **args).tobytes()
  assert len(raw) == 256

  def field(name):
    return bits(raw, *V03[name])

  assert (field("QMD_MAJOR_VERSION"), field("QMD_VERSION")) == (3, 0)
  assert (field("CTA_RASTER_WIDTH"), field("CTA_RASTER_HEIGHT"), field("CTA_RASTER_DEPTH")) == args["grid"]
  assert tuple(field(f"CTA_THREAD_DIMENSION{i}") for i in range(3)) == args["block"]
  assert field("REGISTER_COUNT_V") == args["registers"]
  assert field("PROGRAM_ADDRESS_LOWER") | field("PROGRAM_ADDRESS_UPPER") << 32 == args["program"]
  # V03 stores the constant-buffer address unshifted (FACTS.md 5.7 units note)
  assert field("CONSTANT_BUFFER_ADDR_LOWER(0)") | field("CONSTANT_BUFFER_ADDR_UPPER(0)") << 32 == args["cbuf0"]
  assert field("CONSTANT_BUFFER_VALID(0)") == 1
  assert field("SM_GLOBAL_CACHING_ENABLE") == 1  # FACTS.md 10.2: NAK sets it for V03


@pytest.mark.parametrize("cbuf0", [0x20_0000_1001, 0x20_0000_1020, 0x20_0000_103F])
def test_build_v04_rejects_unaligned_cbuf(cbuf0):
  with pytest.raises(ValueError, match=f"0x{cbuf0:x}.*64"):
    build("V04_00", **launch_args(cbuf0=cbuf0))


def test_build_rejects_out_of_range_launches():
  with pytest.raises(ValueError, match="GRID_HEIGHT is 16 bits wide; 65536"):
    build("V04_00", **launch_args(grid=(1, 1 << 16, 1)))
  with pytest.raises(ValueError, match="REGISTER_COUNT is 9 bits wide; 512"):
    build("V04_00", **launch_args(registers=512))
  with pytest.raises(ValueError, match="228 KiB"):
    build("V04_00", **launch_args(shared_bytes=229 * 1024))


def test_build_sampler_index_independently():
  raw = build("V04_00", **launch_args()).tobytes()
  assert bits(raw, *V04["SAMPLER_INDEX"]) == 0
