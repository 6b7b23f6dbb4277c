"""The two simulated cards: what their discovery tables list and what their PCI functions report.

Facts vs. choices. IP versions are those amdgpu 6.12 drives for these ASICs (soc21.c / soc24.c,
amdgpu_discovery.c amdgpu_discovery_set_*_ip_blocks: GC 11.0.0 + MP0/MP1 13.0.0 + NBIO 4.3.0 + SDMA 6.0.0 for
Navi31; GC 12.0.1 + MP0/MP1 14.0.3 + NBIF 6.3.1 + SDMA 7.0.1 for Navi48). PCI ids are the PCI ID repository's (1002:744c
Navi 31 [Radeon RX 7900 XT/7900 XTX], 1002:7550 Navi 48 [Radeon RX 9070/9070 XT]). Register bases are the
simulator's choice, except the two amdgpu reads before discovery: mmMP0_SMN_C2PMSG_33 = 0x16061 and
mmRCC_CONFIG_MEMSIZE = 0xde3 (amdgpu_discovery.c), which fix MP0 segment 0 at 0x16000 and NBIO segment 2 at 0xd20.
A real card's bases come from its own table. gc_info values: the shader-engine/array/WGP counts give the public CU
counts (96 for Navi31, 64 for Navi48); the other numbers are plausible, not measured. VRAM is small (the simulator
holds it in host memory). DPM ranges: the GFXCLK maxima are the boards' public boost clocks (2500 MHz RX 7900 XTX,
2970 MHz RX 9070 XT); the minima and the UCLK range are plausible, not measured.
"""
from __future__ import annotations

from dataclasses import dataclass

from am.simcard.discovery_table import IpEntry

AMD_VENDOR = 0x1002


@dataclass(frozen=True)
class CardSpec:
  name: str
  device_id: int
  revision: int
  firmware_asic: str               # am.firmware.sets.ASICS key
  vram_size: int
  ips: tuple[IpEntry, ...]
  gc_info_version: tuple[int, int]
  gc_info: dict
  harvested: tuple[tuple[str, int], ...] = ()
  dpm_mhz: tuple[tuple[str, int, int], ...] = ()   # (PPCLK_e name, min, max MHz) the simulated PMFW reports


def _common_bases(mp1_seg1: int) -> dict[str, tuple[int, ...]]:
  return {"GC": (0x1260, 0xA000, 0x1C000, 0x2402C00), "MMHUB": (0x1A000, 0x2408800),
          "ATHUB": (0xC00, 0x2408C00), "OSSSYS": (0x4280, 0x2400C00), "HDP": (0xF20, 0x240A400),
          "MP0": (0x16000, 0xDC00, 0xE000, 0x243FC00), "MP1": (0x16000, mp1_seg1, 0xE000, 0x243FC00),
          "NBIF": (0x0, 0x14, 0xD20, 0x0, 0x241B000), "SMUIO": (0x16800, 0x16A00, 0x1E000),
          "SDMA0": (0x1260, 0xA000), "SDMA1": (0x1260, 0xA000), "DMU": (0x12, 0xC0, 0x34C0, 0x9000),
          "VCN": (0x7800, 0x7E00), "UMC": (0x14000, 0x2425800), "DF": (0x7000, 0x1C0000)}


def _ips(versions: dict[str, tuple[int, int, int]], bases: dict[str, tuple[int, ...]], vcn: int, umc: int):
  out = []
  for name, version in versions.items():
    count = {"VCN": vcn, "UMC": umc}.get(name, 1)
    for instance in range(count):
      out.append(IpEntry(name, instance, version, bases[name]))
  return tuple(out)


NAVI31 = CardSpec(
  name="navi31", device_id=0x744C, revision=0xC8, firmware_asic="navi31", vram_size=512 << 20,
  ips=_ips({"GC": (11, 0, 0), "MMHUB": (3, 0, 0), "ATHUB": (3, 0, 0), "OSSSYS": (6, 0, 0), "HDP": (6, 0, 0),
            "MP0": (13, 0, 0), "MP1": (13, 0, 0), "NBIF": (4, 3, 0), "SMUIO": (13, 0, 6), "SDMA0": (6, 0, 0),
            "SDMA1": (6, 0, 0), "DMU": (3, 2, 0), "VCN": (4, 0, 0), "UMC": (8, 10, 0), "DF": (4, 3, 0)},
           _common_bases(0xDC00), vcn=2, umc=6),
  gc_info_version=(1, 2),
  gc_info={"gc_num_se": 6, "gc_num_wgp0_per_sa": 4, "gc_num_wgp1_per_sa": 0, "gc_num_rb_per_se": 4,
           "gc_num_gl2c": 24, "gc_num_gprs": 1536, "gc_num_max_gs_thds": 32, "gc_gs_table_depth": 32,
           "gc_gsprim_buff_depth": 1792, "gc_double_offchip_lds_buffer": 1, "gc_wave_size": 32,
           "gc_max_waves_per_simd": 16, "gc_max_scratch_slots_per_cu": 32, "gc_lds_size": 64,
           "gc_num_sc_per_se": 2, "gc_num_sa_per_se": 2, "gc_num_packer_per_sc": 4, "gc_num_gl2a": 4,
           "gc_num_tcp_per_sa": 8, "gc_num_sdp_interface": 16, "gc_num_tcps": 96, "gc_num_tcp_per_wpg": 2,
           "gc_tcp_l1_size": 32, "gc_num_sqc_per_wgp": 1, "gc_l1_instruction_cache_size_per_sqc": 32,
           "gc_l1_data_cache_size_per_sqc": 16, "gc_gl1c_per_sa": 1, "gc_gl1c_size_per_instance": 256,
           "gc_gl2c_per_gpu": 6144},
  dpm_mhz=(("PPCLK_GFXCLK", 500, 2500), ("PPCLK_UCLK", 96, 1250)))
NAVI48 = CardSpec(
  name="navi48", device_id=0x7550, revision=0xC0, firmware_asic="navi48", vram_size=512 << 20,
  ips=_ips({"GC": (12, 0, 1), "MMHUB": (4, 1, 0), "ATHUB": (4, 1, 0), "OSSSYS": (7, 0, 0), "HDP": (7, 0, 0),
            "MP0": (14, 0, 3), "MP1": (14, 0, 3), "NBIF": (6, 3, 1), "SMUIO": (14, 0, 2), "SDMA0": (7, 0, 1),
            "SDMA1": (7, 0, 1), "DMU": (4, 0, 1), "VCN": (5, 0, 0), "UMC": (8, 14, 0), "DF": (4, 1, 0)},
           _common_bases(0x16200), vcn=1, umc=4),
  gc_info_version=(1, 3),
  gc_info={**NAVI31.gc_info, "gc_num_se": 4, "gc_num_gl2c": 16, "gc_num_tcps": 64, "gc_gl2c_per_gpu": 8192,
           "gc_tcp_size_per_cu": 32, "gc_tcp_cache_line_size": 128, "gc_instruction_cache_size_per_sqc": 64,
           "gc_instruction_cache_line_size": 128, "gc_scalar_data_cache_size_per_sqc": 32,
           "gc_scalar_data_cache_line_size": 64, "gc_tcc_size": 8192, "gc_tcc_cache_line_size": 128},
  dpm_mhz=(("PPCLK_GFXCLK", 500, 2970), ("PPCLK_UCLK", 96, 1258)))
CARDS = {"navi31": NAVI31, "navi48": NAVI48}
