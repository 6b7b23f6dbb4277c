"""`sov am bringup / ring / ib / regs / discovery / fw / kfd` on the simulated cards (AM_FIRMWARE_DIR as
tests/test_am_bringup.py)."""
from __future__ import annotations


import pytest

from tools.sov import main



@pytest.mark.parametrize("card", ["navi31", "navi48"])
def test_bringup_runs_a_kernel(fw_dir, card, capsys):
  assert main(["am", "bringup", "--sim", card, "-n", "128"]) == 0
  out = capsys.readouterr().out
  assert f"{card} is up" in out and "vector_add on 128 float32: matches numpy" in out
  assert "[vm      ]" in out and "4-level page table" in out and "(VMID 1), buffers at 0x7fff00000000..: matches" in out
  assert "[hang    ]" in out and "spin kernel: AMTimeout after" in out and "after the reset: vector_add" in out
  assert "[fini    ]" in out and "lock released" in out


def test_ring_ib_regs(fw_dir, capsys):
  assert main(["am", "ring", "--sim", "navi31", "--queue", "sdma"]) == 0
  assert "SDMA_PKT_TIMESTAMP_GET_GLOBAL" in capsys.readouterr().out
  assert main(["am", "ring", "--sim", "navi48", "--kernel"]) == 0
  out = capsys.readouterr().out
  assert "PACKET3_DISPATCH_DIRECT" in out and "regCOMPUTE_USER_DATA_0" in out
  assert main(["am", "ib", "--sim", "navi48"]) == 0
  out = capsys.readouterr().out
  assert "(ok)" in out and "regCOMPUTE_PGM_LO" in out and "PACKET3_DISPATCH_DIRECT" in out
  assert main(["am", "regs", "--sim", "navi31", "SCRATCH_REG0=0x1234", "COMPUTE_PGM_RSRC2.USER_SGPR=2"]) == 0
  out = capsys.readouterr().out
  assert "regSCRATCH_REG0=0x00001234" in out and "USER_SGPR=0x2" in out


def test_discovery_and_fw(fw_dir, capsys):
  assert main(["am", "discovery", "--sim", "navi48"]) == 0
  out = capsys.readouterr().out
  assert "GC[0] 12.0.1 bases" in out and "gc_info v1.3" in out and "gfx_target='gfx1201'" in out
  assert main(["am", "fw", "--asic", "navi31", "--firmware-dir", fw_dir]) == 0
  out = capsys.readouterr().out
  assert "gc_11_0_0_mec.bin: header v2.0" in out and "crc32 0x" in out
  assert "PSP_BL__LOAD_SOSDRV" in out and "GFX_FW_TYPE_RS64_MEC" in out and "GFX_CMD_ID_LOAD_TOC" in out


def test_kfd_runs_vector_add(fw_dir, capsys):
  assert main(["am", "kfd", "--sim", "navi31", "-n", "128"]) == 0
  assert "vector_add on 128 float32 matches numpy" in capsys.readouterr().out
