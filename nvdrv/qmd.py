"""Queue Meta Data (QMD): the in-memory launch descriptor the compute engine reads for each grid.

Field positions are bit ranges over the QMD as little-endian 32-bit words, NVIDIA's names verbatim:
V03_00 from NVIDIA/open-gpu-doc classes/compute/clc6c0qmd.h (repeated in clcbc0qmd.h), V04_00 from clcbc0qmd.h
(commit 5d957df1; table in nvdrv/FACTS.md 5.7). V03_00 is 256 bytes, V04_00 384 bytes; both are fetched from a
256-byte aligned address. Which of the two HOPPER_COMPUTE_A accepts on 580.x was settled on the H100 (see
nvdrv.device.GENERATIONS and FACTS.md 11: V04_00 with QMD_TYPE 2).

`Qmd.set(name, value)` refuses unknown names (listing close ones) and values wider than the field, so a QMD can
never be silently wrong; `Qmd.fields()` decodes one back for DEBUG output and tests.
"""
from __future__ import annotations

import difflib
from array import array

# name: (high bit, low bit)
V03_00 = {
  "OUTER_PUT": (30, 0), "QMD_GROUP_ID": (133, 128), "SM_GLOBAL_CACHING_ENABLE": (134, 134), "IS_QUEUE": (136, 136),
  "INVALIDATE_TEXTURE_HEADER_CACHE": (186, 186), "INVALIDATE_SHADER_DATA_CACHE": (189, 189),
  "INVALIDATE_SHADER_CONSTANT_CACHE": (191, 191), "PROGRAM_PREFETCH_ADDR_LOWER_SHIFTED": (287, 256),
  "CWD_MEMBAR_TYPE": (369, 368), "API_VISIBLE_CALL_LIMIT": (378, 378), "SAMPLER_INDEX": (382, 382),
  "CTA_RASTER_WIDTH": (415, 384), "CTA_RASTER_HEIGHT": (431, 416), "CTA_RASTER_DEPTH": (463, 448),
  "SHARED_MEMORY_SIZE": (561, 544), "MIN_SM_CONFIG_SHARED_MEM_SIZE": (567, 562),
  "MAX_SM_CONFIG_SHARED_MEM_SIZE": (574, 569), "QMD_VERSION": (579, 576), "QMD_MAJOR_VERSION": (583, 580),
  "CTA_THREAD_DIMENSION0": (607, 592), "CTA_THREAD_DIMENSION1": (623, 608), "CTA_THREAD_DIMENSION2": (639, 624),
  "CONSTANT_BUFFER_VALID(0)": (640, 640), "REGISTER_COUNT_V": (656, 648),
  "TARGET_SM_CONFIG_SHARED_MEM_SIZE": (662, 657), "SHARED_ALLOCATION_ENABLE": (663, 663),
  "SHADER_LOCAL_MEMORY_LOW_SIZE": (759, 736), "BARRIER_COUNT": (767, 763),
  "RELEASE0_ADDRESS_LOWER": (799, 768), "RELEASE0_ADDRESS_UPPER": (807, 800), "RELEASE0_MEMBAR_TYPE": (819, 819),
  "RELEASE0_ENABLE": (823, 823), "RELEASE0_STRUCTURE_SIZE": (831, 830), "RELEASE0_PAYLOAD_LOWER": (863, 832),
  "RELEASE0_PAYLOAD_UPPER": (895, 864), "CONSTANT_BUFFER_ADDR_LOWER(0)": (1055, 1024),
  "CONSTANT_BUFFER_ADDR_UPPER(0)": (1072, 1056), "CONSTANT_BUFFER_INVALIDATE(0)": (1074, 1074),
  "CONSTANT_BUFFER_SIZE_SHIFTED4(0)": (1087, 1075), "PROGRAM_ADDRESS_LOWER": (1567, 1536),
  "PROGRAM_ADDRESS_UPPER": (1584, 1568), "SHADER_LOCAL_MEMORY_HIGH_SIZE": (1623, 1600),
  "PROGRAM_PREFETCH_ADDR_UPPER_SHIFTED": (1640, 1632), "PROGRAM_PREFETCH_SIZE": (1649, 1641),
  "PROGRAM_PREFETCH_TYPE": (1651, 1650), "SASS_VERSION": (1663, 1656), "HW_ONLY_INNER_GET": (1854, 1824),
}
V04_00 = {
  "DEPENDENCE_COUNTER": (15, 0), "QMD_GROUP_ID": (21, 16), "QMD_TYPE": (25, 23), "HW_ONLY_INNER_GET": (190, 160),
  "HW_ONLY_DEPENDENCE_COUNTER": (303, 288),
  "RELEASE_ENABLE(0)": (320, 320), "RELEASE_STRUCTURE_SIZE(0)": (322, 321), "RELEASE_MEMBAR_TYPE(0)": (323, 323),
  "RELEASE_PAYLOAD64B(0)": (332, 332), "DEPENDENT_QMD_ENABLE(0)": (368, 368), "DEPENDENT_QMD0_ACTION": (371, 369),
  "DEPENDENT_QMD_PREFETCH(0)": (372, 372), "DEPENDENT_QMD_ENABLE(1)": (373, 373), "DEPENDENT_QMD1_ACTION": (376, 374),
  "DEPENDENT_QMD_PREFETCH(1)": (377, 377), "CWD_MEMBAR_TASK_CHASING_ENABLE": (382, 382),
  "CONSTANT_BUFFER_VALID(0)": (416, 416), "DEPENDENT_QMD0_POINTER": (479, 448), "DEPENDENT_QMD1_POINTER": (511, 480),
  "CONSTANT_BUFFER_INVALIDATE(0)": (419, 419), "SHADER_LOCAL_MEMORY_LOW_SIZE": (535, 512),
  "SASS_VERSION": (543, 536), "SHADER_LOCAL_MEMORY_HIGH_SIZE": (567, 544), "API_VISIBLE_CALL_LIMIT": (568, 568),
  "SAMPLER_INDEX": (569, 569), "QMD_MINOR_VERSION": (579, 576), "QMD_MAJOR_VERSION": (583, 580),
  "SHARED_MEMORY_SIZE": (601, 584), "INVALIDATE_TEXTURE_HEADER_CACHE": (602, 602),
  "INVALIDATE_SHADER_DATA_CACHE": (605, 605), "INVALIDATE_SHADER_CONSTANT_CACHE": (607, 607),
  "MIN_SM_CONFIG_SHARED_MEM_SIZE": (613, 608), "MAX_SM_CONFIG_SHARED_MEM_SIZE": (619, 614),
  "TARGET_SM_CONFIG_SHARED_MEM_SIZE": (625, 620), "SHARED_ALLOCATION_ENABLE": (626, 626),
  "RELEASE_SEMAPHORE0_ADDR_LOWER": (671, 640), "RELEASE_SEMAPHORE0_ADDR_UPPER": (696, 672),
  "RELEASE_SEMAPHORE0_PAYLOAD_LOWER": (735, 704), "RELEASE_SEMAPHORE0_PAYLOAD_UPPER": (767, 736),
  "GRID_WIDTH": (1055, 1024), "GRID_HEIGHT": (1071, 1056), "GRID_DEPTH": (1103, 1088),
  "CWD_MEMBAR_TYPE": (1137, 1136), "CTA_THREAD_DIMENSION0": (1167, 1152), "CTA_THREAD_DIMENSION1": (1183, 1168),
  "CTA_THREAD_DIMENSION2": (1199, 1184), "REGISTER_COUNT": (1208, 1200), "BARRIER_COUNT": (1215, 1211),
  "PROGRAM_ADDRESS_LOWER": (1247, 1216), "PROGRAM_ADDRESS_UPPER": (1272, 1248),
  "PROGRAM_PREFETCH_ADDR_LOWER_SHIFTED": (1375, 1344), "PROGRAM_PREFETCH_ADDR_UPPER_SHIFTED": (1392, 1376),
  "PROGRAM_PREFETCH_SIZE": (1401, 1393), "PROGRAM_PREFETCH_TYPE": (1403, 1402),
  "CONSTANT_BUFFER_ADDR_LOWER_SHIFTED6(0)": (1567, 1536), "CONSTANT_BUFFER_ADDR_UPPER_SHIFTED6(0)": (1586, 1568),
  "CONSTANT_BUFFER_SIZE_SHIFTED4(0)": (1599, 1587), "GPC_CGA_WIDTH": (2149, 2144), "OUTER_PUT": (3038, 3008),
}
# V04_00 constant buffers 1..7 (clcbc0qmd.h): VALID/INVALIDATE(i) step 4 bits from 416/419, the address and size
# fields of (i) step 64 bits from those of (0) (FACTS.md 5.7).
for _i in range(1, 8):
  V04_00[f"CONSTANT_BUFFER_VALID({_i})"] = (416 + 4 * _i, 416 + 4 * _i)
  V04_00[f"CONSTANT_BUFFER_ADDR_LOWER_SHIFTED6({_i})"] = (1567 + 64 * _i, 1536 + 64 * _i)
  V04_00[f"CONSTANT_BUFFER_ADDR_UPPER_SHIFTED6({_i})"] = (1586 + 64 * _i, 1568 + 64 * _i)
  V04_00[f"CONSTANT_BUFFER_SIZE_SHIFTED4({_i})"] = (1599 + 64 * _i, 1587 + 64 * _i)
LAYOUTS = {"V03_00": (V03_00, 256), "V04_00": (V04_00, 384)}


def _pieces(lo: int, width: int) -> list[tuple[int, int, int, int]]:
  """Split bits [lo, lo + width) into per-word pieces: (word index, shift in word, bits, bits already consumed)."""
  out, consumed = [], 0
  while consumed < width:
    word, shift = divmod(lo + consumed, 32)
    nbits = min(32 - shift, width - consumed)
    out.append((word, shift, nbits, consumed))
    consumed += nbits
  return out


class Qmd:
  """One QMD of `version` ("V03_00" or "V04_00"), all fields zero to start."""

  def __init__(self, version: str):
    if version not in LAYOUTS:
      raise ValueError(f"unknown QMD version {version!r}; known: {', '.join(LAYOUTS)}")
    self.version = version
    self.layout, self.nbytes = LAYOUTS[version]
    self.words = array("I", bytes(self.nbytes))

  def _field(self, name: str) -> tuple[int, int]:
    if name not in self.layout:
      close = difflib.get_close_matches(name, self.layout, n=3)
      raise KeyError(f"QMD {self.version} has no field {name!r}" + (f"; close: {', '.join(close)}" if close else ""))
    return self.layout[name]

  def set(self, name: str, value: int) -> Qmd:
    hi, lo = self._field(name)
    width = hi - lo + 1
    if not 0 <= value < (1 << width):
      raise ValueError(f"QMD {self.version} field {name} is {width} bits wide; {value} (0x{value:x}) does not fit")
    for word, shift, nbits, consumed in _pieces(lo, width):
      mask = ((1 << nbits) - 1) << shift
      self.words[word] = (self.words[word] & ~mask & 0xFFFFFFFF) | (((value >> consumed) << shift) & mask)
    return self

  def get(self, name: str) -> int:
    hi, lo = self._field(name)
    value = 0
    for word, shift, nbits, consumed in _pieces(lo, hi - lo + 1):
      value |= ((self.words[word] >> shift) & ((1 << nbits) - 1)) << consumed
    return value

  def word_field(self, name: str) -> tuple[int, int, int]:
    """(word index, shift, mask in the word) of a field that lies inside one 32-bit word: for hot paths that patch a
    prebuilt QMD's bytes in place (nvdrv.program.LaunchPlan) instead of calling `set`."""
    hi, lo = self._field(name)
    word, shift = divmod(lo, 32)
    if hi // 32 != word:
      raise ValueError(f"QMD {self.version} field {name} (bits {hi}:{lo}) spans two words")
    return word, shift, ((1 << (hi - lo + 1)) - 1) << shift

  def copy(self) -> Qmd:
    out = Qmd.__new__(Qmd)
    out.version, out.layout, out.nbytes, out.words = self.version, self.layout, self.nbytes, array("I", self.words)
    return out

  def fields(self) -> dict[str, int]:
    return {name: self.get(name) for name in self.layout if self.get(name)}

  def tobytes(self) -> bytes:
    return self.words.tobytes()


# Shared-memory carve-outs an sm_90 SM can be configured with, in KiB (FACTS.md 10.5).
SM90_CARVEOUTS_KB = (0, 8, 16, 32, 64, 100, 132, 164, 196, 228)


def sm_config_shared_mem(nbytes: int) -> int:
  """*_SM_CONFIG_SHARED_MEM_SIZE for the smallest carve-out holding `nbytes`: KiB / 4 + 1 (FACTS.md 10.5)."""
  for kb in SM90_CARVEOUTS_KB:
    if kb * 1024 >= nbytes:
      return kb // 4 + 1
  raise ValueError(f"{nbytes} bytes of shared memory exceed the largest carve-out ({SM90_CARVEOUTS_KB[-1]} KiB)")


def build(version: str, *, program: int, registers: int, grid: tuple[int, int, int], block: tuple[int, int, int],
          shared_bytes: int, cbuf0: int, cbuf0_size: int, local_bytes: int, max_shared: int,
          barriers: int = 1, cwd_membar: int = 1, invalidate: str = "all") -> Qmd:
  """A QMD that runs the code at `program` over `grid` blocks of `block` threads, with constant bank 0 at `cbuf0`.

  Args:
    shared_bytes: static + dynamic shared memory per block; the SM is configured with the carve-out that fits it.
    local_bytes: per-thread local memory (stack frame and spills), 16-byte aligned.
    max_shared: the largest carve-out the SM supports (bytes).
  """
  q = Qmd(version)
  carve = max((shared_bytes + 255) & ~255, 8 * 1024)
  if version == "V03_00":
    q.set("QMD_MAJOR_VERSION", 3).set("QMD_VERSION", 0)
    q.set("CTA_RASTER_WIDTH", grid[0]).set("CTA_RASTER_HEIGHT", grid[1]).set("CTA_RASTER_DEPTH", grid[2])
    q.set("REGISTER_COUNT_V", registers)
    q.set("SM_GLOBAL_CACHING_ENABLE", 1)
    q.set("CONSTANT_BUFFER_ADDR_LOWER(0)", cbuf0 & 0xFFFFFFFF).set("CONSTANT_BUFFER_ADDR_UPPER(0)", cbuf0 >> 32)
  else:
    q.set("QMD_MAJOR_VERSION", 4).set("QMD_MINOR_VERSION", 0)
    q.set("QMD_TYPE", 2)  # with 0 the H100 completes the launch without running it (FACTS.md 11)
    q.set("GRID_WIDTH", grid[0]).set("GRID_HEIGHT", grid[1]).set("GRID_DEPTH", grid[2])
    q.set("REGISTER_COUNT", registers)
    if cbuf0 & 63:
      raise ValueError(f"constant buffer at 0x{cbuf0:x}: QMD V04 stores it in 64-byte units, align it to 64")
    q.set("CONSTANT_BUFFER_ADDR_LOWER_SHIFTED6(0)", (cbuf0 >> 6) & 0xFFFFFFFF)
    q.set("CONSTANT_BUFFER_ADDR_UPPER_SHIFTED6(0)", cbuf0 >> 38)
  q.set("QMD_GROUP_ID", 0x3F)
  q.set("API_VISIBLE_CALL_LIMIT", 1).set("SAMPLER_INDEX", 0)  # NO_CHECK; INDEPENDENTLY (clcbc0qmd.h)
  q.set("INVALIDATE_SHADER_DATA_CACHE", 1)  # L1: the grid must not read lines an earlier grid's stores made stale
  if invalidate == "all":
    q.set("INVALIDATE_TEXTURE_HEADER_CACHE", 1).set("INVALIDATE_SHADER_CONSTANT_CACHE", 1)
  else:  # "targeted": refetch only constant bank 0 (its contents change between launches at the same address)
    q.set("CONSTANT_BUFFER_INVALIDATE(0)", 1)
  q.set("CWD_MEMBAR_TYPE", cwd_membar)  # at grid end: L1_NONE 0, L1_SYSMEMBAR 1 (system-wide), L1_MEMBAR 3 (GPU)
  q.set("CTA_THREAD_DIMENSION0", block[0]).set("CTA_THREAD_DIMENSION1", block[1])
  q.set("CTA_THREAD_DIMENSION2", block[2])
  q.set("SHARED_MEMORY_SIZE", (shared_bytes + 255) & ~255)
  q.set("MIN_SM_CONFIG_SHARED_MEM_SIZE", sm_config_shared_mem(carve))  # the smallest carve-out that fits (NAK)
  q.set("MAX_SM_CONFIG_SHARED_MEM_SIZE", sm_config_shared_mem(max_shared))
  q.set("TARGET_SM_CONFIG_SHARED_MEM_SIZE", sm_config_shared_mem(carve))
  q.set("BARRIER_COUNT", barriers)
  q.set("SHADER_LOCAL_MEMORY_LOW_SIZE", local_bytes)
  q.set("PROGRAM_ADDRESS_LOWER", program & 0xFFFFFFFF).set("PROGRAM_ADDRESS_UPPER", program >> 32)
  q.set("CONSTANT_BUFFER_VALID(0)", 1)
  q.set("CONSTANT_BUFFER_SIZE_SHIFTED4(0)", (cbuf0_size + 15) >> 4)
  return q
