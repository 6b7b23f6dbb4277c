"""Capabilities of a card, derived once from its IP-discovery table; the driver branches on these, never on raw
version tuples.

Which code drives which IP version is amdgpu 6.12's choice (amdgpu_discovery.c amdgpu_discovery_set_*_ip_blocks):
GC 11.0.0 -> gfx_v11_0 + gfxhub_v3_0 + imu_v11_0, MMHUB 3.0.0 -> mmhub_v3_0, OSSSYS 6.0.0 -> ih_v6_0,
MP0 13.0.0 -> psp_v13_0, MP1 13.0.0 -> smu_v13_0_0, NBIO 4.3.0 -> nbio_v4_3, SDMA 6.0.0 -> sdma_v6_0 (Navi31);
GC 12.0.1 -> gfx_v12_0 + gfxhub_v12_0, MMHUB 4.1.0 -> mmhub_v4_1_0, OSSSYS 7.0.0 -> ih_v7_0, MP0 14.0.3 -> psp_v14_0,
MP1 14.0.3 -> smu_v14_0_2, NBIO 6.3.1 -> nbif_v6_3_1, SDMA 7.0.1 -> sdma_v7_0 (Navi48).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from am.discovery import Discovery
from am.errors import UnsupportedDevice


@dataclass(frozen=True)
class Capabilities:
  asic: str                       # navi31 | navi48 (am.firmware.sets.ASICS key)
  gfx_target: str                 # LLVM processor name
  gfx_generation: int             # 11 | 12 (am.pm4 emitters)
  sdma_generation: int            # 6 | 7 (am.pm4.sdma)
  register_modules: Mapping[str, str]   # discovery IP name -> am.generated module of its registers
  psp_msg_prefix: str             # C2PMSG register prefix of the PSP mailbox (psp_v13_0.c / psp_v14_0.c)
  smu_messages: str               # am.generated.boot.smu key
  mqd_struct: str                 # am.generated.boot.mqd key
  pte_format: str                 # gfx11 | gfx12 (amdgpu_vm.h bit positions; see am.gmc)
  sdma_halt: tuple[str, str]      # (register, field) that halts the SDMA engine
  s2a_doorbell_entry: str         # NBIO register name prefix of the S2A doorbell routing entries
  num_se: int
  num_sa_per_se: int
  num_cu: int
  wave_size: int
  harvested: tuple[tuple[str, int], ...]


SUPPORTED = {(11, 0, 0): "navi31", (12, 0, 1): "navi48"}


def from_discovery(disc: Discovery) -> Capabilities:
  """Raises:
    UnsupportedDevice: a GC version AM has no code for (names it and the supported ones).
  """
  gc = disc.version_of("GC")
  if gc not in SUPPORTED:
    supported = ", ".join(f"GC {'.'.join(map(str, v))} ({name})" for v, name in SUPPORTED.items())
    raise UnsupportedDevice(f"GC {'.'.join(map(str, gc or ()))} is not supported; AM drives {supported}")
  asic = SUPPORTED[gc]
  gi = disc.gc_info
  cu = gi.get("gc_num_se", 0) * gi.get("gc_num_sa_per_se", 0) * 2 * (gi.get("gc_num_wgp0_per_sa", 0)
                                                                      + gi.get("gc_num_wgp1_per_sa", 0))
  common = {"num_se": gi.get("gc_num_se", 0), "num_sa_per_se": gi.get("gc_num_sa_per_se", 0), "num_cu": cu,
            "wave_size": gi.get("gc_wave_size", 32), "harvested": disc.harvested}
  if asic == "navi31":
    modules = {"GC": "gc_11_0_0", "MMHUB": "mmhub_3_0_0", "ATHUB": "athub_3_0_0", "OSSSYS": "osssys_6_0_0",
               "HDP": "hdp_6_0_0", "MP0": "mp_13_0_2", "MP1": "mp_13_0_2", "NBIF": "nbio_4_3_0",
               "SMUIO": "smuio_13_0_6"}
    return Capabilities(asic, "gfx1100", 11, 6, MappingProxyType(modules), "regMP0_SMN_C2PMSG_", "13_0_0",
                        "v11_compute_mqd", "gfx11", ("regSDMA0_F32_CNTL", "HALT"), "regS2A_DOORBELL_ENTRY_",
                        **common)
  modules = {"GC": "gc_12_0_0", "MMHUB": "mmhub_4_1_0", "ATHUB": "athub_4_1_0", "OSSSYS": "osssys_7_0_0",
             "HDP": "hdp_7_0_0", "MP0": "mp_14_0_2", "MP1": "mp_14_0_2", "NBIF": "nbif_6_3_1", "SMUIO": "smuio_14_0_2"}
  return Capabilities(asic, "gfx1201", 12, 7, MappingProxyType(modules), "regMPASP_SMN_C2PMSG_", "14_0_2",
                      "v12_compute_mqd", "gfx12", ("regSDMA0_MCU_CNTL", "HALT"), "regGDC_S2A0_S2A_DOORBELL_ENTRY_",
                      **common)
