"""am/mmio: named-field registers over an in-memory MMIO aperture, and the generated register tables.

Register facts checked here are read off linux-source-6.12 (6.12.118-1~deb12u1) asic_reg headers by hand:
gc_11_0_0_offset.h `regCP_HQD_PQ_BASE 0x1fb1` (BASE_IDX 0), `regGRBM_GFX_INDEX 0x2200` (BASE_IDX 1);
gc_11_0_0_sh_mask.h `CP_HQD_PQ_CONTROL__QUEUE_SIZE__SHIFT 0x0`, `_MASK 0x0000003FL`, `RPTR_BLOCK_SIZE__SHIFT 0x8`,
`_MASK 0x00003F00L`; gc_12_0_0 keeps the same offsets for these.
"""
from __future__ import annotations

import importlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from am import generated
from am.generated import gc_11_0_0, gc_12_0_0, mp_13_0_0
from am.mmio.regs import MemoryMMIO, RegisterBlock, RegisterTable, UnknownNameError
from tests.conftest import examples

# GC segment bases (dwords) that Mesa's gfx11.json byte addresses imply (tests/test_am_mesa_crosscheck.py checks it);
# on hardware they come from IP discovery
GC_BASES = (0x1260, 0xA000, 0x1C000, 0x2402C00)


@pytest.fixture
def gc():
  return RegisterBlock(gc_11_0_0, MemoryMMIO(), GC_BASES, trace=None)


def test_register_address_from_segment_base(gc):
  assert gc.regCP_HQD_PQ_BASE.addr == 0x1260 + 0x1fb1
  assert gc.regCP_HQD_PQ_BASE.byte_offset == 4 * (0x1260 + 0x1fb1)
  assert gc.regGRBM_GFX_INDEX.addr == 0xA000 + 0x2200


def test_write_fields_zeroes_the_rest_and_reads_back(gc):
  reg = gc.regCP_HQD_PQ_CONTROL
  gc.mmio.write32(reg.byte_offset, 0xFFFFFFFF)
  reg.write(QUEUE_SIZE=7, RPTR_BLOCK_SIZE=5)
  assert reg.read() == 0x507
  fields = reg.read_fields()
  assert fields["QUEUE_SIZE"] == 7 and fields["RPTR_BLOCK_SIZE"] == 5
  assert sum(fields.values()) == 12


def test_update_is_masked_read_modify_write(gc):
  reg = gc.regCP_HQD_PQ_CONTROL
  reg.write(0xFFFF0000)
  gc.mmio.log.clear()
  written = reg.update(QUEUE_SIZE=3)
  assert gc.mmio.log == [("r", reg.byte_offset, 0xFFFF0000), ("w", reg.byte_offset, 0xFFFF0003)]
  assert written == 0xFFFF0003 and reg.read() == 0xFFFF0003


def test_unknown_field_raises_with_close_matches_before_any_access(gc):
  reg = gc.regCP_HQD_PQ_CONTROL
  with pytest.raises(UnknownNameError, match="QUEUE_SIZE"):
    reg.write(QUEUE_SIZ=1)
  with pytest.raises(UnknownNameError, match="close matches: QUEUE_SIZE"):
    reg.update(QUEUE_SIZ=1)
  assert gc.mmio.log == []


def test_unknown_register_raises_with_close_matches(gc):
  with pytest.raises(UnknownNameError, match="regCP_HQD_PQ_CONTROL"):
    gc.regCP_HQD_PQ_CONTROLL
  assert not hasattr(gc, "regNO_SUCH_THING_AT_ALL")  # an AttributeError too


def test_value_ranges_and_argument_errors(gc):
  reg = gc.regCP_HQD_PQ_CONTROL
  with pytest.raises(ValueError, match="QUEUE_SIZE = 0x40: the field holds 0..0x3f"):
    reg.write(QUEUE_SIZE=0x40)
  with pytest.raises(ValueError, match="not both"):
    reg.write(1, QUEUE_SIZE=1)
  with pytest.raises(ValueError, match="32-bit"):
    reg.write(1 << 32)


def test_decode_names_unknown_bits(gc):
  spec = gc.regCP_HQD_PQ_CONTROL.spec
  covered = 0
  for f in spec.fields.values():
    covered |= f.mask
  free = next(bit for bit in range(32) if not covered >> bit & 1)
  assert spec.decode(1 << free)[f"unk_{free}"] == 1
  assert spec.encode(**{k: v for k, v in spec.decode(0x507).items() if not k.startswith("unk_")}) == 0x507


def test_register_without_base_idx_and_missing_segment():
  gc = RegisterBlock(gc_11_0_0, MemoryMMIO(), GC_BASES[:1], trace=None)
  with pytest.raises(ValueError, match="no BASE_IDX"):
    gc.regGFX_IMU_FUSESTRAP.read()
  with pytest.raises(ValueError, match="segment 1 of GC, but only 1 segment bases were given"):
    gc.regGRBM_GFX_INDEX


def test_name_at_reverse_lookup(gc):
  assert gc.name_at(0x1260 + 0x1fb1) == "regCP_HQD_PQ_BASE"
  assert gc.name_at(0x7FFFFFFF) is None


def test_am_debug_traces_every_access_by_name(monkeypatch, capsys):
  monkeypatch.setenv("AM_DEBUG", "3")   # am/debug.py: level 3 adds every register access
  gc = RegisterBlock(gc_11_0_0, MemoryMMIO(), GC_BASES)
  gc.regCP_HQD_PQ_CONTROL.write(QUEUE_SIZE=7)
  gc.regCP_HQD_PQ_CONTROL.read()
  err = capsys.readouterr().err.splitlines()
  assert err[0].startswith("am.mmio W GC regCP_HQD_PQ_CONTROL=0x00000007 {QUEUE_SIZE=0x7}")
  assert err[1].startswith("am.mmio R GC regCP_HQD_PQ_CONTROL=0x00000007")


@pytest.mark.parametrize("value", ["", "0", "1", "2"])
def test_am_debug_below_3_traces_no_register(monkeypatch, capsys, value):
  monkeypatch.setenv("AM_DEBUG", value)
  gc = RegisterBlock(gc_11_0_0, MemoryMMIO(), GC_BASES)
  gc.regCP_HQD_PQ_CONTROL.write(QUEUE_SIZE=7)
  assert capsys.readouterr().err == ""


def test_indirect_access_past_the_register_bar():
  # amdgpu_device_indirect_rreg/_wreg: an address past BAR 5 goes to the NBIO RSMU index register (NBIF segment 1,
  # dword 0), is read back to post it, then the value moves through the data register (dword 1)
  from am.device import Mmio
  bar = MemoryMMIO(size=0x1000)
  mmio = Mmio(bar)
  with pytest.raises(Exception, match="before IP discovery"):
    mmio.read32(0x2000)
  mmio.nbio_bases = (0x0, 0x14)
  index, data = 0x14 * 4, 0x15 * 4
  mmio.write32(0x40, 7)                   # inside the BAR: direct
  mmio.write32(0x90A0000, 0xABCD)         # past it: index, read back, data
  assert bar.log[-4:] == [("w", 0x40, 7), ("w", index, 0x90A0000), ("r", index, 0x90A0000), ("w", data, 0xABCD)]
  bar.values[data] = 0x1234               # what the card answers through the data register
  assert mmio.read32(0x90A0004) == 0x1234
  assert bar.log[-3:] == [("w", index, 0x90A0004), ("r", index, 0x90A0004), ("r", data, 0x1234)]
  assert mmio.smn_read(0x3B10024) == 0x1234 and bar.values[index] == 0x3B10024   # SMN addresses the same way


def test_memory_mmio_rejects_bad_offsets():
  mmio = MemoryMMIO(size=0x100)
  with pytest.raises(ValueError, match="aligned"):
    mmio.read32(2)
  with pytest.raises(ValueError, match="below 0x100"):
    mmio.write32(0x100, 0)


def test_generated_index_lists_every_register_module():
  here = os.path.dirname(generated.__file__)
  modules = {f[:-3] for f in os.listdir(here) if f.endswith(".py") and f != "__init__.py"}
  assert modules - {"pm4", "sdma_pkt", "ucode"} == set(generated.REGISTER_MODULES)


@pytest.mark.parametrize("module_name", sorted(generated.REGISTER_MODULES))
def test_generated_register_tables_are_consistent(module_name):
  module = importlib.import_module(f"am.generated.{module_name}")
  with open(module.__file__) as f:
    assert f.readline().startswith("# generated by tools/gen_am_tables.py from linux-source-6.12 (")
  ip, version = generated.REGISTER_MODULES[module_name]
  assert (module.IP, module.VERSION) == (ip, version)
  for name, (offset, base_idx, layout) in module.REGISTERS.items():
    assert name.startswith("reg") and 0 <= offset < 1 << 32 and (base_idx is None or 0 <= base_idx < 8)
    assert layout is None or 0 <= layout < len(module.FIELDS)
  for fields in module.FIELDS:
    for shift, mask in fields.values():
      assert mask and mask >> 32 == 0 and mask & ((1 << shift) - 1) == 0


def test_gc12_and_mp_tables_load():
  assert RegisterTable(gc_12_0_0).spec("regCP_HQD_PQ_BASE").offset == 0x1fb1
  assert "regMP0_SMN_C2PMSG_64" in RegisterTable(mp_13_0_0)


REGS = [name for name, (_, base_idx, layout) in gc_11_0_0.REGISTERS.items()
        if layout is not None and base_idx is not None]


@settings(max_examples=examples(60))
@given(st.sampled_from(REGS), st.data())
def test_encode_decode_round_trip(name, data):
  spec = RegisterTable(gc_11_0_0).spec(name)
  values = {f.name: data.draw(st.integers(0, f.max)) for f in spec.fields.values()}
  word = spec.encode(**values)
  assert spec.decode(word) == values
  gc = RegisterBlock(gc_11_0_0, MemoryMMIO(1 << 26), GC_BASES, trace=None)
  gc.reg(name).write(**values)
  assert gc.reg(name).read_fields() == values
