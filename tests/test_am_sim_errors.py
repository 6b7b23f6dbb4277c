"""Error paths of the wave emulator (am/sim): faults that name the pc, instruction, wave and lane; use-before-wait
hazards; LDS writes not waited for before a barrier; unsupported instructions; runaway loops; bad dispatches; and the
page-table hook of the memory interface."""
from __future__ import annotations

import numpy as np
import pytest

from am.sim import (BarrierError, DispatchError, FlatMemory, MemoryFault, PagedMemory, PageMap, StepLimitExceeded,
                    UnsupportedInstruction, WaitcntHazard, dispatch)
from test_am_sim_wave import INDEX, TARGETS, kernel, pc_of, rng


def test_paged_memory_translates_through_the_walker():
  physical = FlatMemory(base=0, guard=0)
  frames = physical.alloc(3 * 4096, align=4096)
  va = 0x7000_0000
  pages = PageMap().map(va, frames + 2 * 4096, 4096).map(va + 4096, frames, 4096)   # scattered frames
  mem = PagedMemory(physical, pages)
  data = rng(20).integers(0, 1 << 30, 2048, dtype=np.uint32)
  mem.write(va, data)
  np.testing.assert_array_equal(physical.read_array(frames + 2 * 4096, np.uint32, 1024), data[:1024])
  np.testing.assert_array_equal(mem.read_array(va + 4000, np.uint32, 2), data[1000:1002])
  with pytest.raises(MemoryFault, match="no page-table entry"):
    mem.read(va + 2 * 4096, 4)


@pytest.mark.parametrize("target", TARGETS)
def test_out_of_range_access_names_pc_instruction_and_lane(target):
  co = kernel("""
    s_load_b64 s[4:5], s[0:1], 0x0
    {kwait}
  """ + INDEX + """
    global_load_b32 v2, v1, s[4:5] offset:4
    {vwait}
    s_endpgm
  """, target, nargs=1)
  mem = FlatMemory()
  buf = mem.alloc_array(np.arange(64, dtype=np.uint32))
  with pytest.raises(MemoryFault) as info:
    dispatch(co, "k", (1, 1, 1), (64, 1, 1), [buf], mem)
  e = info.value
  assert "global_load_b32 v2, v1, s[4:5] offset:4" in str(e) and "0 bytes past the end of the allocation" in str(e)
  assert e.lane == 31 and e.wave == 1 and e.pc == pc_of(co, "global_load") and e.address == buf + 256
  with pytest.raises(MemoryFault, match=r"not mapped") as info:
    dispatch(co, "k", (1, 1, 1), (64, 1, 1), [0], mem)
  assert info.value.lane == 0 and f"pc {pc_of(co, 'global_load'):#x}" in str(info.value)


@pytest.mark.parametrize("target", TARGETS)
def test_lds_out_of_range_is_an_error(target):
  co = kernel("""
    v_lshlrev_b32 v1, 4, v0
    ds_store_b32 v1, v0
    s_endpgm
  """, target, nargs=0, group_segment_fixed_size=256)
  with pytest.raises(MemoryFault, match="LDS") as info:
    dispatch(co, "k", (1, 1, 1), (64, 1, 1), [])
  assert info.value.lane == 16 and "ds_store_b32 v1, v0" in str(info.value)


@pytest.mark.parametrize("target", TARGETS)
def test_use_before_wait_is_detected(target):
  co = kernel("""
    s_load_b64 s[4:5], s[0:1], 0x0
    {kwait}
  """ + INDEX + """
    global_load_b32 v2, v1, s[4:5]
    v_add_f32 v3, v2, v2
    s_endpgm
  """, target, nargs=1)
  mem = FlatMemory()
  with pytest.raises(WaitcntHazard) as info:
    dispatch(co, "k", (1, 1, 1), (64, 1, 1), [mem.alloc_array(np.ones(64, np.float32))], mem)
  msg = str(info.value)
  fix = "s_waitcnt vmcnt(0)" if target == "gfx1100" else "s_wait_loadcnt 0"
  assert "v_add_f32_e32 v3, v2, v2" in msg and "uses v2" in msg and fix in msg
  assert f"pc {pc_of(co, 'v_add_f32'):#x}" in msg
  smem = kernel("""
    s_load_b64 s[4:5], s[0:1], 0x0
    s_mov_b32 s6, s4
    s_endpgm
  """, target, nargs=1)
  with pytest.raises(WaitcntHazard, match="lgkmcnt|kmcnt"):
    dispatch(smem, "k", (1, 1, 1), (32, 1, 1), [0], mem)


def test_partial_wait_retires_only_older_loads():
  """vmcnt(1) after two loads makes the first valid, not the second."""
  src = """
    s_load_b64 s[4:5], s[0:1], 0x0
    {kwait}
    v_lshlrev_b32 v1, 2, v0
    global_load_b32 v2, v1, s[4:5]
    global_load_b32 v3, v1, s[4:5]
    s_waitcnt vmcnt(1)
    v_mov_b32 v4, v{reg}
    s_endpgm
  """
  mem = FlatMemory()
  buf = mem.alloc_array(np.ones(64, np.float32))
  dispatch(kernel(src.replace("{reg}", "2"), "gfx1100", nargs=1), "k", 1, 64, [buf], mem)
  with pytest.raises(WaitcntHazard, match="uses v3"):
    dispatch(kernel(src.replace("{reg}", "3"), "gfx1100", nargs=1), "k", 1, 64, [buf], mem)


def test_barrier_before_lds_writes_complete_is_an_error():
  co = kernel("""
    v_lshlrev_b32 v1, 2, v0
    ds_store_b32 v1, v0
    s_barrier
    s_endpgm
  """, "gfx1100", nargs=0, group_segment_fixed_size=512)
  with pytest.raises(BarrierError, match="lgkmcnt"):
    dispatch(co, "k", 1, 128, [])


@pytest.mark.parametrize("target", TARGETS)
def test_unsupported_instruction_names_text_and_pc(target):
  co = kernel("""
    v_mov_b32 v1, 1.0
    v_div_scale_f32 v2, vcc_lo, v1, v1, v1
    s_endpgm
  """, target, nargs=0)
  with pytest.raises(UnsupportedInstruction, match=r"v_div_scale_f32 v2, vcc_lo, v1, v1, v1' at pc 0x4"):
    dispatch(co, "k", 1, 32, [])


def test_scalar_load_fault_names_the_wave():
  co = kernel("""
    s_load_b64 s[4:5], s[0:1], 0x0
    s_waitcnt lgkmcnt(0)
    s_load_b32 s6, s[4:5], 0x40
    s_endpgm
  """, "gfx1100", nargs=1)
  with pytest.raises(MemoryFault, match=r"s_load_b32 s6, s\[4:5\], 0x40' at pc 0xc \(wave 0\)"):
    dispatch(co, "k", 1, 32, [0x1234_0000])


def test_runaway_loop_hits_the_step_limit():
  co = kernel("""
  top:
    s_branch top
  """, "gfx1100", nargs=0)
  with pytest.raises(StepLimitExceeded, match="s_branch"):
    dispatch(co, "k", 1, 32, [], max_steps=1000)


def test_dispatch_rejects_bad_setups():
  co = kernel("s_endpgm", "gfx1100", nargs=1)
  with pytest.raises(DispatchError, match="takes 1 arguments"):
    dispatch(co, "k", 1, 32, [])
  with pytest.raises(DispatchError, match="1024"):
    dispatch(co, "k", 1, 2048, [0])
  scratch = kernel("s_endpgm", "gfx1100", nargs=0, private_segment_fixed_size=16)
  with pytest.raises(DispatchError, match="scratch"):
    dispatch(scratch, "k", 1, 32, [])
