"""Run a code-object kernel over a grid on the wave emulator: workgroups of waves, the initial register state the
packet processor and SPI would set up, LDS per workgroup, barriers.

    mem = FlatMemory()
    out = mem.alloc(4 * n)
    stats = dispatch(co, "vadd", grid=(n // 64, 1, 1), block=(64, 1, 1), args=[a, b, out], memory=mem)
    mem.read_array(out, np.float32, n); stats.instructions, stats.lane_ops

Initial state (LLVM 19 AMDGPUUsage, "Initial Kernel Execution State", llvm-19-doc): user SGPRs from s0 in the order
dispatch ptr (2), queue ptr (2), kernarg segment ptr (2), dispatch id (2), private segment size (1), each present only
if its kernel_code_properties ENABLE_SGPR_* bit is set; then, from s[USER_SGPR_COUNT], the system SGPRs workgroup id
X, Y, Z (each if ENABLE_SGPR_WORKGROUP_ID_*), workgroup info ({first_wavefront, 14'b0, ordered_append_term[10:0],
threadgroup_size_in_wavefronts[5:0]}, if enabled). gfx1100 and gfx1201 use "Packed work-item IDs": v0 = x | y << 10 |
z << 20, with y / z zero unless ENABLE_VGPR_WORKITEM_ID > 0 / > 1. Work-items of a workgroup fill its waves in order
(x fastest); lanes past the workgroup size start with their EXEC bit clear. The dispatch packet (if the kernel asks
for its pointer) carries workgroup_size_x/y/z (u16 at 4, 6, 8) and grid_size_x/y/z (u32 at 12, 16, 20, in
work-items; LLVM 19 AMDGPULowerKernelAttributes.cpp), the rest zero; the queue pointer points at 256 zero bytes.
VGPRs per wave: (GRANULATED_WORKITEM_VGPR_COUNT + 1) * 8 in wave32, * 4 in wave64 (AMDGPUUsage compute_pgm_rsrc1).

Not modelled yet: private (scratch) memory and flat scratch (a kernel that enables them raises DispatchError),
kernarg preloading (GFX90A/GFX940 only), dynamic VGPRs, trap handlers. Grids are given in workgroups and are whole
(hidden_remainder_* are 0).
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass

import numpy as np

from compiler.rdna.codeobj import kernarg_segment

from .errors import DispatchError
from .memory import FlatMemory, Memory
from .program import Program
from .regs import EXEC, WaveGroup
from .waitcnt import WaitState
from .wave import GroupRunner

__all__ = ["Context", "Stats", "build_kernargs", "dispatch", "run_kernel"]
CODE_ADDRESS = 0x7F00_0000_0000          # where s_getpc reports the kernel code, unless the caller says otherwise
MAX_LDS = 64 * 1024                       # LDS per workgroup on gfx11 / gfx12 (AMDGPUUsage: 64 KiB)
HIDDEN_FILL = ("hidden_block_count_x", "hidden_block_count_y", "hidden_block_count_z", "hidden_group_size_x",
               "hidden_group_size_y", "hidden_group_size_z", "hidden_grid_dims", "hidden_dynamic_lds_size")


@dataclass
class Context:
  """What every wave group of one dispatch shares."""
  program: Program
  memory: Memory
  wave_size: int
  vgprs: int
  lds_size: int
  lds: np.ndarray
  code_address: int
  max_steps: int
  instructions: int = 0
  lane_slots: int = 0
  pause_at: int | None = None     # instruction count at which wave groups pause (wave.GroupRunner time slices)


@dataclass(frozen=True)
class Stats:
  """instructions: instructions executed, counted once per wave group step; lane_ops: those steps times the lanes of
  the waves they ran for (lane-operations); waves / workgroups launched; seconds of wall time."""
  instructions: int
  lane_ops: int
  waves: int
  workgroups: int
  seconds: float


@dataclass(frozen=True)
class Layout:
  wave_size: int
  vgprs: int
  user: dict             # name -> first SGPR
  system: dict           # name -> SGPR
  workitem_dims: int     # ENABLE_VGPR_WORKITEM_ID


def layout_of(kernel, generation: int) -> Layout:
  f = kernel.descriptor.read_fields(generation)
  props, rsrc1, rsrc2 = f["kernel_code_properties"], f["compute_pgm_rsrc1"], f["compute_pgm_rsrc2"]
  wave32 = bool(props["ENABLE_WAVEFRONT_SIZE32"])
  if rsrc2["ENABLE_PRIVATE_SEGMENT"] or kernel.private_segment_size or props["ENABLE_SGPR_FLAT_SCRATCH_INIT"]:
    raise DispatchError(f"kernel {kernel.name} uses private (scratch) memory: not modelled by the emulator yet")
  if props["ENABLE_SGPR_PRIVATE_SEGMENT_BUFFER"] or any(f["kernarg_preload"].values()):
    raise DispatchError(f"kernel {kernel.name} asks for a private segment buffer or kernarg preloading, which "
                        "gfx11 / gfx12 do not have (AMDGPUUsage)")
  user, sgpr = {}, 0
  for name, count in (("dispatch_ptr", 2), ("queue_ptr", 2), ("kernarg_segment_ptr", 2), ("dispatch_id", 2),
                      ("private_segment_size", 1)):
    if props[f"ENABLE_SGPR_{name.upper()}"]:
      user[name] = sgpr
      sgpr += count
  count = rsrc2["USER_SGPR_COUNT"]
  if count < sgpr:
    raise DispatchError(f"kernel {kernel.name}: USER_SGPR_COUNT {count} is less than the {sgpr} user SGPRs enabled")
  system = {}
  for name in ("WORKGROUP_ID_X", "WORKGROUP_ID_Y", "WORKGROUP_ID_Z", "WORKGROUP_INFO"):
    if rsrc2[f"ENABLE_SGPR_{name}"]:
      system[name.lower()] = count
      count += 1
  vgprs = (rsrc1["GRANULATED_WORKITEM_VGPR_COUNT"] + 1) * (8 if wave32 else 4)
  return Layout(32 if wave32 else 64, vgprs, user, system, rsrc2["ENABLE_VGPR_WORKITEM_ID"])


def triple(v, what: str) -> tuple:
  t = tuple(int(x) for x in (v if isinstance(v, (tuple, list)) else (v,)))
  t = t + (1,) * (3 - len(t))
  if len(t) != 3 or min(t) < 1:
    raise DispatchError(f"{what} must be 1 to 3 positive sizes, got {v!r}")
  return t


def run_kernel(kernel, isa: str, memory: Memory, grid, block, kernarg_address: int = 0, *, dispatch_ptr: int = 0,
               queue_ptr: int = 0, dispatch_id: int = 0, dynamic_lds: int = 0, code_address: int = CODE_ADDRESS,
               max_steps: int = 50_000_000, batch_waves: int = 256, slice_steps: int | None = None) -> Stats:
  """Run `kernel` (compiler.rdna Kernel) on the emulator: the low-level entry a simulated command processor calls.

  Args:
    isa: gfx1100 or gfx1201 (CodeObject.isa). memory: where global / buffer / scalar accesses go.
    grid: workgroups in x, y, z. block: work-items per workgroup in x, y, z.
    kernarg_address, dispatch_ptr, queue_ptr, dispatch_id: values of the user SGPRs the kernel enables.
    dynamic_lds: LDS bytes per workgroup on top of the kernel's group_segment_fixed_size.
    max_steps: instruction budget of the whole dispatch. batch_waves: waves run together as one numpy batch.
    slice_steps: run in time slices of this many instructions, each wave group pausing and resuming where it stopped
      (wave.GroupRunner, as a simulated card runs dispatches); the results are those of an uninterrupted run.
  Raises:
    DispatchError: a grid, block or kernel the emulator cannot set up.
    SimError and subclasses: faults, unsupported instructions, use-before-wait hazards, step limit.
  """
  start = time.perf_counter()
  program = cached_program(kernel.code, isa)
  lay = layout_of(kernel, program.generation)
  grid, block = triple(grid, "grid"), triple(block, "block")
  wg_items = block[0] * block[1] * block[2]
  if wg_items > 1024:
    raise DispatchError(f"workgroup of {wg_items} work-items; at most 1024")
  lds_size = kernel.group_segment_size + dynamic_lds
  if lds_size > MAX_LDS:
    raise DispatchError(f"{lds_size} bytes of LDS per workgroup; gfx11 / gfx12 have {MAX_LDS}")
  waves_per_wg = -(-wg_items // lay.wave_size)
  n_wg = grid[0] * grid[1] * grid[2]
  per_batch = max(1, batch_waves // waves_per_wg)
  lds = np.zeros(max(per_batch * lds_size, 16), dtype=np.uint8)
  ctx = Context(program, memory, lay.wave_size, lay.vgprs, lds_size, lds, code_address, max_steps)
  user_values = {"dispatch_ptr": dispatch_ptr, "queue_ptr": queue_ptr, "kernarg_segment_ptr": kernarg_address,
                 "dispatch_id": dispatch_id, "private_segment_size": 0}
  for first in range(0, n_wg, per_batch):
    wgs = np.arange(first, min(n_wg, first + per_batch))
    lds[...] = 0
    group = initial_group(ctx, lay, wgs, grid, block, waves_per_wg, user_values)
    runner = GroupRunner([group])
    while not runner.run(slice_steps):
      pass
  return Stats(ctx.instructions, ctx.lane_slots, n_wg * waves_per_wg, n_wg, time.perf_counter() - start)


PROGRAMS: dict = {}       # (code, isa) -> Program: decoding is done once per kernel, not per dispatch
MAX_PROGRAMS = 64


def cached_program(code: bytes, isa: str) -> Program:
  key = (bytes(code), isa)
  program = PROGRAMS.get(key)
  if program is None:
    if len(PROGRAMS) >= MAX_PROGRAMS:
      PROGRAMS.clear()
    program = PROGRAMS[key] = Program(code, isa)
  return program


def initial_group(ctx: Context, lay: Layout, wgs: np.ndarray, grid: tuple, block: tuple, waves_per_wg: int,
                  user_values: dict) -> WaveGroup:
  """The waves of workgroups `wgs` (linear ids, x fastest) with their initial SGPRs, v0 and EXEC."""
  W, L = len(wgs) * waves_per_wg, lay.wave_size
  S = np.zeros((W, 256), dtype=np.uint32)
  V = np.zeros((lay.vgprs, W, L), dtype=np.uint32)
  slot = np.repeat(np.arange(len(wgs)), waves_per_wg)
  wg = wgs[slot]
  wave_in_wg = np.tile(np.arange(waves_per_wg), len(wgs))
  for name, sgpr in lay.user.items():
    value = int(user_values[name])
    S[:, sgpr] = value & 0xFFFFFFFF
    if name != "private_segment_size":
      S[:, sgpr + 1] = value >> 32
  ids = {"workgroup_id_x": wg % grid[0], "workgroup_id_y": (wg // grid[0]) % grid[1],
         "workgroup_id_z": wg // (grid[0] * grid[1]),
         "workgroup_info": ((wave_in_wg == 0).astype(np.int64) << 31) | waves_per_wg}
  for name, sgpr in lay.system.items():
    S[:, sgpr] = ids[name]
  items = block[0] * block[1] * block[2]
  flat = wave_in_wg[:, None] * L + np.arange(L)[None, :]
  x, y, z = flat % block[0], (flat // block[0]) % block[1], flat // (block[0] * block[1])
  packed = x | (y << 10 if lay.workitem_dims > 0 else 0) | (z << 20 if lay.workitem_dims > 1 else 0)
  V[0] = np.where(flat < items, packed, 0)
  active = flat < items
  bits = np.packbits(active, axis=1, bitorder="little").view(np.uint32)
  S[:, EXEC:EXEC + bits.shape[1]] = bits
  waves = wgs[slot] * waves_per_wg + wave_in_wg
  return WaveGroup(ctx, waves, slot, S, V, WaitState(ctx.program.generation), 0)


# ---- kernel arguments and the high-level entry ---------------------------------------------------------------------

def build_kernargs(kernel, args, grid: tuple, block: tuple, dynamic_lds: int = 0) -> bytes:
  """The kernarg segment (compiler.rdna.codeobj.kernarg_segment); a bad argument raises DispatchError."""
  try:
    return kernarg_segment(kernel, args, grid, block, dynamic_lds)
  except ValueError as e:
    raise DispatchError(str(e)) from e


def dispatch(code_object, kernel_name: str, grid, block, args=(), memory: FlatMemory | None = None, *,
             dynamic_lds: int = 0, **options) -> Stats:
  """Run a kernel of a loaded code object (compiler.rdna load_code_object) with its arguments.

  Args:
    args: one value per explicit argument in metadata order: ints (pointers, integers), floats, bytes or numpy
      scalars. memory: a FlatMemory (a fresh one if None) that also receives the kernarg segment and dispatch packet.
    options: run_kernel's keywords (max_steps, batch_waves, code_address).
  Raises:
    DispatchError, SimError: see run_kernel.
  """
  memory = FlatMemory() if memory is None else memory
  kernel = code_object.kernel(kernel_name)
  grid, block = triple(grid, "grid"), triple(block, "block")
  kernarg = memory.alloc_array(np.frombuffer(build_kernargs(kernel, tuple(args), grid, block, dynamic_lds),
                                             dtype=np.uint8), align=64)
  packet = bytearray(64)
  struct.pack_into("<3H", packet, 4, *block)
  struct.pack_into("<3I", packet, 12, *(g * b for g, b in zip(grid, block)))
  dispatch_ptr = memory.alloc_array(np.frombuffer(bytes(packet), dtype=np.uint8), align=64)
  queue_ptr = memory.alloc(256)
  return run_kernel(kernel, code_object.isa, memory, grid, block, kernarg, dispatch_ptr=dispatch_ptr,
                    queue_ptr=queue_ptr, dynamic_lds=dynamic_lds, **options)
