"""tools/bench_emu.py's code-quality measure: the innermost loop found in our machine code and in LLVM's assembly
text, and multiply-accumulates counted (fused, VOPD halves, unfused mul+add pairs). clang-19 only for the last test."""
from __future__ import annotations

import shutil

import pytest

from compiler.rdna import assemble
from tools.bench_emu import count_macs, innermost_loop, llvm_instructions, matmul_kernels, our_instructions, quality

LLVM_TEXT = """
\t.globl k
k:                                      ; @k
\ts_mov_b32 s2, 0
.LBB0_1:                                ; =>This Loop Header: Depth=1
\tv_mov_b32_e32 v1, 0
.LBB0_2:                                ;   Parent Loop BB0_1 Depth=2
\ts_add_u32 s2, s2, 1
\tv_dual_fmac_f32 v3, v7, v13 :: v_dual_fmac_f32 v4, v8, v16
\ts_delay_alu instid0(VALU_DEP_1)
\ts_cbranch_scc0 .LBB0_2
\ts_cbranch_scc0 .LBB0_1
\ts_endpgm
.Lfunc_end0:
\ts_nop 0
"""


def test_llvm_innermost_loop_and_vopd_halves():
  texts = innermost_loop(*llvm_instructions(LLVM_TEXT, "k"))
  assert texts[0] == "s_add_u32 s2, s2, 1" and texts[-1] == "s_cbranch_scc0 .LBB0_2" and len(texts) == 4
  assert count_macs(texts) == (2, 0)


def test_our_innermost_loop_from_machine_code():
  code = assemble("""
    s_mov_b32 s2, 0
    outer:
    v_mov_b32 v1, 0
    inner:
    v_mul_f32 v3, v1, v2
    v_add_f32 v1, v1, v3
    v_fmac_f32 v4, v1, v2
    s_add_i32 s2, s2, 1
    s_cmp_lt_i32 s2, 8
    s_cbranch_scc1 inner
    s_cbranch_scc1 outer
    s_endpgm
  """, "gfx1100")
  texts = innermost_loop(*our_instructions(code, "gfx1100"))
  assert texts[0].startswith("v_mul_f32") and texts[-1].startswith("s_cbranch_scc1") and len(texts) == 6
  assert count_macs(texts) == (1, 1)


def test_no_loop_is_a_clear_error():
  with pytest.raises(ValueError, match="no backward branch"):
    innermost_loop([("s_endpgm", None)], {})


@pytest.mark.skipif(shutil.which("clang-19") is None, reason="clang-19 not installed (apt-get install clang-19)")
def test_quality_table_against_llvm(capsys):
  assert len(matmul_kernels()) == 2
  quality("gfx1100")
  out = capsys.readouterr().out
  assert out.count("LLVM -O3 -fno-unroll-loops") == 2 and "ours (render_rdna)" in out
