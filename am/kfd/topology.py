"""The KFD topology as amdkfd publishes it in sysfs (kfd_topology.c): one directory per node under
/sys/devices/virtual/kfd/kfd/topology/nodes/<n>/ with `gpu_id` (0 for CPU nodes) and `properties`, lines of
"<name> <value>" (kfd_topology.c node_show: sysfs_show_32bit_prop / sysfs_show_64bit_prop).

gfx_target_version is major * 10000 + minor * 100 + stepping (kfd_device.c gfx_target_version values, e.g. 110000 for
GC 11.0.0, 120001 for GC 12.0.1); the LLVM processor name spells minor and stepping in hex: gfx1100, gfx1201.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from am.errors import UnsupportedDevice

TOPOLOGY = "/sys/devices/virtual/kfd/kfd/topology/nodes"
# LLVM target -> (GFX generation of am.pm4, SDMA generation of am.pm4.sdma, AM's name for the ASIC)
SUPPORTED = {"gfx1100": (11, 6, "navi31"), "gfx1201": (12, 7, "navi48")}


def gfx_target(version: int) -> str:
  """gfx_target_version (kfd_device.c) -> LLVM processor name."""
  major, minor, step = version // 10000, version // 100 % 100, version % 100
  return f"gfx{major}{minor:x}{step:x}"


@dataclass(frozen=True)
class KfdNode:
  """One GPU node of the KFD topology; `props` holds every property line as read."""
  index: int
  gpu_id: int
  props: Mapping[str, int]

  @property
  def gfx_target(self) -> str:
    return gfx_target(self.props["gfx_target_version"])

  @property
  def num_cu(self) -> int:
    return self.props["simd_count"] // max(self.props.get("simd_per_cu", 1), 1)

  def describe(self) -> str:
    p = self.props
    return (f"node {self.index}: gpu_id 0x{self.gpu_id:x} {self.gfx_target} (gfx_target_version "
            f"{p['gfx_target_version']}), {p['vendor_id']:04x}:{p['device_id']:04x}, {self.num_cu} CU "
            f"({p['simd_count']} SIMD), wave{p.get('wave_front_size', 0)}, {p.get('num_sdma_engines', 0)} SDMA "
            f"engines, render node renderD{p.get('drm_render_minor', 0)}")


def parse_properties(text: str, where: str) -> dict[str, int]:
  out = {}
  for n, line in enumerate(text.splitlines(), 1):
    parts = line.split()
    if not parts:
      continue
    if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
      raise UnsupportedDevice(f"{where} line {n}: {line!r} is not '<name> <integer>' (kfd_topology.c node_show)")
    out[parts[0]] = int(parts[1])
  return out


def read_topology(os_) -> list[KfdNode]:
  """Every GPU node (gpu_id != 0), in node order, read through the OS seam.

  Raises:
    UnsupportedDevice: no topology directory (amdgpu.ko not loaded), or a malformed properties file."""
  if not os_.exists(TOPOLOGY):
    raise UnsupportedDevice(f"no KFD topology at {TOPOLOGY}: load amdgpu (modprobe amdgpu) with KFD enabled")
  nodes = []
  for name in sorted(os_.listdir(TOPOLOGY), key=lambda s: int(s) if s.isdigit() else -1):
    if not name.isdigit():
      continue
    base = f"{TOPOLOGY}/{name}"
    gpu_id = int(os_.read_text(f"{base}/gpu_id").strip() or 0)
    if gpu_id == 0:
      continue
    props = parse_properties(os_.read_text(f"{base}/properties"), f"{base}/properties")
    nodes.append(KfdNode(int(name), gpu_id, MappingProxyType(props)))
  return nodes


def pick_node(nodes: list[KfdNode], gpu_id: int | None = None) -> KfdNode:
  """The node with `gpu_id`, else the first AM supports.

  Raises:
    UnsupportedDevice: no such gpu_id, or no supported GPU (names what was found and what AM drives)."""
  found = ", ".join(f"0x{n.gpu_id:x} ({n.gfx_target})" for n in nodes) or "none"
  for n in nodes:
    if gpu_id is None and n.gfx_target in SUPPORTED or n.gpu_id == gpu_id:
      if n.gfx_target not in SUPPORTED:
        break
      return n
  want = f"gpu_id 0x{gpu_id:x}" if gpu_id is not None else "a GPU"
  raise UnsupportedDevice(f"KFD topology has no usable {want}: found {found}; AM drives {', '.join(SUPPORTED)}")
