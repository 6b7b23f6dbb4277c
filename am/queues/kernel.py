"""Kernels on a compute queue: upload a code object, fill the kernarg segment, emit the PM4 of a dispatch.

Upload: the code object's loadable image (compiler.rdna CodeObject.image) is copied to GPU memory (dev.gmc's address
space) at a base, each relocation gets base + addend (R_AMDGPU_RELATIVE64), the entry is base + Kernel.entry_offset
(256-byte aligned, AMDGPUUsage kernel descriptor).

Dispatch state (what an AQL packet processor would derive from the kernel descriptor, done here by the driver, as
Mesa's radeonsi does for compute shaders): COMPUTE_PGM_LO/HI = entry >> 8; COMPUTE_PGM_RSRC1/2/3 = the descriptor's
compute_pgm_rsrc1/2/3 (bit-compatible with the registers, AMDGPUUsage), RSRC2.LDS_SIZE = group segment size in
512-byte units (mesa ac_gpu_info.c lds_encode_granularity = 128 * 4; the descriptor leaves it 0 for the CP to fill);
COMPUTE_USER_DATA_0.. = the user SGPRs that kernel_code_properties enables, in AMDGPUUsage's order: dispatch ptr (2),
queue ptr (2), kernarg segment ptr (2), dispatch id (2), private segment size (1); COMPUTE_NUM_THREAD_X/Y/Z = the
workgroup size; COMPUTE_START_X/Y/Z = 0; COMPUTE_TMPRING_SIZE = 0 (no scratch); COMPUTE_RESOURCE_LIMITS = 0;
DISPATCH_DIRECT with COMPUTE_SHADER_EN, FORCE_START_AT_000 and CS_W32_EN for wave32 kernels; then EVENT_WRITE
CS_PARTIAL_FLUSH (index 4), as Mesa ends a compute dispatch before a signal (`flush=False` leaves it out: a launch
list places its own barriers, am.queues.launches).

The kernarg segment: explicit arguments at their metadata offsets; the code object v5 hidden arguments
hidden_block_count_x/y/z, hidden_group_size_x/y/z, hidden_grid_dims (AMDGPUUsage "Code Object V5 Metadata"); others
stay zero. The dispatch packet, for kernels that ask for its pointer, is an hsa_kernel_dispatch_packet_t (HSA runtime
spec 1.2: workgroup_size_x/y/z u16 at 4, 6, 8; grid_size_x/y/z u32 at 12, 16, 20; group_segment_size at 28;
kernel_object at 32; kernarg_address at 40).
"""
from __future__ import annotations

import struct


from am.pm4.pm4 import PM4Stream
from compiler.rdna.codeobj import kernarg_segment

LDS_GRANULE = 128 * 4
USER_SGPRS = (("ENABLE_SGPR_DISPATCH_PTR", "dispatch_ptr", 2), ("ENABLE_SGPR_QUEUE_PTR", "queue_ptr", 2),
              ("ENABLE_SGPR_KERNARG_SEGMENT_PTR", "kernarg", 2), ("ENABLE_SGPR_DISPATCH_ID", "dispatch_id", 2),
              ("ENABLE_SGPR_PRIVATE_SEGMENT_SIZE", "private_segment_size", 1))
MAX_USER_SGPRS = 16          # COMPUTE_USER_DATA_0..15
CS_PARTIAL_FLUSH_INDEX = 4   # Mesa si_emit_cache_flush: EVENT_TYPE(V_028A90_CS_PARTIAL_FLUSH) | EVENT_INDEX(4)


def triple(v, what: str) -> tuple[int, int, int]:
  t = tuple(int(x) for x in (v if isinstance(v, (tuple, list)) else (v,)))
  t = t + (1,) * (3 - len(t))
  if len(t) != 3 or min(t) < 1:
    raise ValueError(f"{what} must be 1 to 3 positive sizes, got {v!r}")
  return t


class GpuKernel:
  """One kernel of a code object, uploaded to the card.

  Args:
    dev: the booted AMDevice. code_object: a compiler.rdna CodeObject (load_code_object). name: the kernel.
  Raises:
    KeyError: no such kernel. ValueError: the code object is for another GPU, or the kernel needs scratch.
  """

  def __init__(self, dev, code_object, name: str):
    if code_object.isa != dev.caps.gfx_target:
      raise ValueError(f"code object {code_object.name} is for {code_object.isa}; this card runs "
                       f"{dev.caps.gfx_target} (build it with target={dev.caps.gfx_target!r})")
    self.dev, self.kernel = dev, code_object.kernel(name)
    if self.kernel.private_segment_size:
      raise ValueError(f"kernel {name} uses {self.kernel.private_segment_size} bytes of scratch; AM sets up none yet")
    image = bytearray(code_object.image)
    self.mem = dev.gmc.alloc(max(len(image), 4096))
    base = self.mem.va
    for offset, addend in code_object.relocations:
      struct.pack_into("<Q", image, offset, base + addend)
    dev.vram.write(self.mem.offset, bytes(image))
    self.entry = base + self.kernel.entry_offset
    self.descriptor_va = base + self.kernel.descriptor_offset
    gen = dev.caps.gfx_generation
    self.fields = self.kernel.descriptor.read_fields(gen)
    self.wave32 = bool(self.fields["kernel_code_properties"]["ENABLE_WAVEFRONT_SIZE32"])
    self.user_sgprs = [(key, n) for field, key, n in USER_SGPRS if self.fields["kernel_code_properties"][field]]

  def rsrc2(self, dynamic_lds: int = 0) -> int:
    lds = -(-(self.kernel.group_segment_size + dynamic_lds) // LDS_GRANULE)
    spec = self.dev.gc.regCOMPUTE_PGM_RSRC2.spec
    return self.kernel.descriptor.compute_pgm_rsrc2 | spec.encode(LDS_SIZE=lds)

  def kernargs(self, args, grid: tuple, block: tuple) -> bytes:
    """The kernarg segment for `args` (ints for pointers and integers, floats, numpy scalars or bytes).

    Raises:
      ValueError: the wrong number of arguments, or a value that does not fit."""
    return kernarg_segment(self.kernel, args, grid, block)

  def dispatch_packet(self, grid: tuple, block: tuple, kernarg_va: int) -> bytes:
    packet = bytearray(64)
    struct.pack_into("<3H", packet, 4, *block)
    struct.pack_into("<3I", packet, 12, *(g * b for g, b in zip(grid, block)))
    struct.pack_into("<I", packet, 28, self.kernel.group_segment_size)
    struct.pack_into("<QQ", packet, 32, self.descriptor_va, kernarg_va)
    return bytes(packet)

  def emit(self, s: PM4Stream, grid, block, user: dict[str, int], dynamic_lds: int = 0,
           flush: bool = True) -> PM4Stream:
    """Append the dispatch's PM4 to `s`. `user`: values of the enabled user SGPRs (kernarg, dispatch_ptr, ...); a
    64-bit one is marked for patching as NAME.lo / NAME.hi. `flush`: end with EVENT_WRITE CS_PARTIAL_FLUSH, so what
    follows waits for the dispatch's waves; without it a later dispatch may run alongside this one.

    Raises:
      ValueError: a user SGPR the kernel enables is missing from `user`, or grid/block are out of range."""
    grid, block = triple(grid, "grid"), triple(block, "block")
    if block[0] * block[1] * block[2] > 1024:
      raise ValueError(f"workgroup of {block} work-items; at most 1024")
    gc = self.dev.gc
    values, names = [], []
    for key, n in self.user_sgprs:
      if key not in user:
        raise ValueError(f"kernel {self.kernel.name} enables the {key} user SGPRs; pass user[{key!r}]")
      values += [user[key] & 0xFFFFFFFF, user[key] >> 32][:n]
      names += [f"{key}.lo", f"{key}.hi"][:n]
    if len(values) > MAX_USER_SGPRS:
      raise ValueError(f"kernel {self.kernel.name} needs {len(values)} user SGPRs; COMPUTE_USER_DATA has 16")
    d = self.kernel.descriptor
    initiator = gc.regCOMPUTE_DISPATCH_INITIATOR.encode(COMPUTE_SHADER_EN=1, FORCE_START_AT_000=1,
                                                        CS_W32_EN=int(self.wave32))
    s.set_sh_reg(gc.regCOMPUTE_PGM_LO, (self.entry >> 8) & 0xFFFFFFFF, self.entry >> 40)
    s.set_sh_reg(gc.regCOMPUTE_PGM_RSRC1, d.compute_pgm_rsrc1, self.rsrc2(dynamic_lds))
    s.set_sh_reg(gc.regCOMPUTE_PGM_RSRC3, d.compute_pgm_rsrc3)
    s.set_sh_reg(gc.regCOMPUTE_TMPRING_SIZE, 0)
    s.set_sh_reg(gc.regCOMPUTE_RESOURCE_LIMITS, 0)
    s.set_sh_reg(gc.regCOMPUTE_START_X, 0, 0, 0, *block)   # START_X/Y/Z, then NUM_THREAD_X/Y/Z
    if values:
      s.set_sh_reg(gc.regCOMPUTE_USER_DATA_0, *values, names=tuple(names))
    s.dispatch_direct(*grid, initiator)
    if flush:
      s.event_write("CS_PARTIAL_FLUSH", CS_PARTIAL_FLUSH_INDEX)
    return s
