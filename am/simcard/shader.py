"""DISPATCH_DIRECT on the simulated card: the SPI's wave launch from the COMPUTE_* registers, run on the wave emulator
(am/sim) with every memory access translated through the GC hub's page tables of the queue's VMID
(am/simcard/gpuvm.py).

What the launch reads (names from the generated GC tables; meanings from LLVM 19 AMDGPUUsage "compute_pgm_rsrc1/2"
and "Initial Kernel Execution State", which describe the values these registers receive):
  COMPUTE_PGM_LO/HI           entry address >> 8
  COMPUTE_PGM_RSRC1.VGPRS     (VGPRS + 1) * 8 VGPRs per wave in wave32, * 4 in wave64 (GFX10-GFX12 granule)
  COMPUTE_PGM_RSRC2           USER_SGPR: COMPUTE_USER_DATA_0.. go to s0..; then TGID_X/Y/Z_EN, TG_SIZE_EN add the
                              workgroup id x/y/z and workgroup-info SGPRs in that order; TIDIG_COMP_CNT: work-item
                              ids y (> 0) and z (> 1) packed into v0 (x | y << 10 | z << 20); LDS_SIZE in units of
                              128 dwords (mesa 25.0.7 ac_gpu_info.c lds_encode_granularity = 128 * 4 from GFX7 on);
                              SCRATCH_EN: scratch is not modelled (the dispatch is refused)
  COMPUTE_NUM_THREAD_X/Y/Z    NUM_THREAD_FULL: work-items per workgroup (partial workgroups are not modelled)
  COMPUTE_START_X/Y/Z         must be 0 (a non-zero start is not modelled)
  DISPATCH_INITIATOR          COMPUTE_SHADER_EN must be set; CS_W32_EN selects wave32
Code is fetched from the entry address page by page until an unmapped page or MAX_CODE bytes (the wave emulator
decodes lazily, so bytes after the kernel are never decoded unless the kernel runs into them).

Time: `launch` returns a Dispatch in flight; the MEC gives it time slices (`advance`: the host time card.py grants,
at most SLICE_SECONDS, in quanta of QUANTUM wave-group instructions, at least one quantum). There is no instruction
limit: a kernel that never ends runs for as long as the queue is not dequeued (mec.py: RESET_WAVES drops it).

Footprint: the dispatch's GpuMemory records the pages its waves read and write (gpuvm.py), which the MEC compares
with the other dispatches in flight on the queue once the dispatch has ended (hazards.py).

A wave's failed translation becomes a UTCL2 VM-fault IH entry (gpuvm.py) with the faulting address, the VMID, read or
write and the protection bits; any other emulator error (an unsupported or illegal instruction, an LDS access out of
range) an SQ_INTERRUPT_ID entry (the SQ interrupt word encoding is not modelled: src_data is 0) with the details in the
card log. Either way the queue stops, as a hung queue would.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from am.generated.boot import ih as ih_facts
from am.sim.dispatch import Context, Layout, cached_program, initial_group
from am.sim.errors import MemoryFault, SimError
from am.sim.wave import GroupRunner
from am.simcard.gpuvm import PAGE, GpuMemory

LDS_GRANULE = 128 * 4
MAX_CODE = 64 << 10
MAX_LDS = 64 << 10
BATCH_WAVES = 256
SLICE_SECONDS = 0.02      # host time one slice may take
QUANTUM = 1024            # wave-group instructions between looks at the clock


def fetch_code(card, entry: int, vmid: int) -> bytes:
  out = bytearray()
  va = entry
  while len(out) < MAX_CODE:
    at, _, _ = card.gmc.lookup(va, vmid=vmid)
    if at is None:
      break
    chunk = PAGE - va % PAGE
    out += card.phys_read(at, chunk)
    va += chunk
  return bytes(out)


class Dispatch:
  """One DISPATCH_DIRECT in flight: the workgroup batches still to run and the wave groups of the current one.
  `done` once every wave ended; `error` (why the queue stops, the IH entry posted) after a fault."""

  def __init__(self, card, code: bytes, entry: int, layout: Layout, grid: tuple, block: tuple, user: list,
               lds_size: int, vmid: int, ring_id: int):
    self.card, self.vmid, self.ring_id, self.grid, self.block, self.user = card, vmid, ring_id, grid, block, user
    self.layout = layout
    program = cached_program(code, card.caps.gfx_target)
    wg_items = block[0] * block[1] * block[2]
    self.waves_per_wg = -(-wg_items // layout.wave_size)
    self.per_batch = max(1, BATCH_WAVES // self.waves_per_wg)
    self.lds = np.zeros(max(self.per_batch * lds_size, 16), dtype=np.uint8)
    self.memory = GpuMemory(card, vmid)
    self.ctx = Context(program, self.memory, layout.wave_size, layout.vgprs, lds_size, self.lds, entry, sys.maxsize)
    n_wg = grid[0] * grid[1] * grid[2]
    self.batches = iter(range(0, n_wg, self.per_batch))
    self.n_wg = n_wg
    self.runner: GroupRunner | None = None
    self.done, self.error = False, None
    self.what = f"dispatch {grid} x {block} wave{layout.wave_size} at 0x{entry:x} on VMID {vmid}"
    self.entry, self.label = entry, self.what   # mec.py names it for hazard reports (hazards.py)

  def step(self, budget: int) -> bool:
    """Run about `budget` instructions; True once every wave ended. Raises the emulator's errors."""
    start = self.ctx.instructions
    while True:
      if self.runner is None:
        first = next(self.batches, None)
        if first is None:
          return True
        wgs = np.arange(first, min(self.n_wg, first + self.per_batch))
        self.lds[...] = 0
        group = initial_group(self.ctx, self.layout, wgs, self.grid, self.block, self.waves_per_wg, {})
        group.S[:, :len(self.user)] = np.array(self.user, dtype=np.uint32)
        self.runner = GroupRunner([group])
      left = budget - (self.ctx.instructions - start)
      if not self.runner.run(max(left, 1)):
        return False
      self.runner = None

  def advance(self, seconds: float = SLICE_SECONDS) -> None:
    """One time slice of up to `seconds` (at least one quantum); sets `done`, or `error` after posting the fault."""
    deadline = time.perf_counter() + min(seconds, SLICE_SECONDS)
    try:
      while not self.done:
        self.done = self.step(QUANTUM)
        if time.perf_counter() >= deadline:
          break
    except MemoryFault as e:
      if self.memory.fault is None:   # not a translation (an LDS access out of range): the SQ reports it
        self.error = sq_error(self.card, f"wave memory error: {e}", self.ring_id)
        return
      address, write, prot, why = self.memory.fault
      self.card.note(f"spi: wave memory fault: {e}")
      self.card.gmc.fault(address, f"shader access: {why}", write, self.vmid, prot)
      self.error = f"shader memory fault at 0x{address:x} (VMID {self.vmid})"
    except SimError as e:
      self.error = sq_error(self.card, f"wave error: {e}", self.ring_id)
    if self.done:
      self.card.note(f"spi: {self.what} done")

  def kill(self) -> None:
    self.card.note(f"spi: {self.what} killed after {self.ctx.instructions} instructions")
    self.done, self.runner = True, None


def launch(card, dims: tuple[int, int, int], initiator: int, ring_id: int, vmid: int) -> Dispatch | str:
  """Start one DISPATCH_DIRECT on `vmid`: a Dispatch in flight, or why the queue stops (the IH entry is posted)."""
  gc = card.gc
  gc.regCOMPUTE_DISPATCH_INITIATOR.write(initiator)
  init = gc.regCOMPUTE_DISPATCH_INITIATOR.decode(initiator)
  rsrc1, rsrc2 = gc.regCOMPUTE_PGM_RSRC1.read_fields(), gc.regCOMPUTE_PGM_RSRC2.read_fields()
  block = tuple(gc[f"regCOMPUTE_NUM_THREAD_{a}"].read_fields()["NUM_THREAD_FULL"] for a in "XYZ")
  start = tuple(gc[f"regCOMPUTE_START_{a}"].read() for a in "XYZ")
  refusal = None
  if not init["COMPUTE_SHADER_EN"]:
    refusal = "DISPATCH_INITIATOR.COMPUTE_SHADER_EN = 0"
  elif rsrc2["SCRATCH_EN"]:
    refusal = "COMPUTE_PGM_RSRC2.SCRATCH_EN = 1: scratch is not modelled"
  elif any(start):
    refusal = f"COMPUTE_START_X/Y/Z = {start}: only 0 is modelled"
  elif min(block) < 1 or block[0] * block[1] * block[2] > 1024:
    refusal = f"COMPUTE_NUM_THREAD_X/Y/Z = {block}: 1..1024 work-items per workgroup"
  elif rsrc2["LDS_SIZE"] * LDS_GRANULE > MAX_LDS:
    refusal = f"COMPUTE_PGM_RSRC2.LDS_SIZE = {rsrc2['LDS_SIZE']}: more than {MAX_LDS} bytes"
  if refusal:
    return sq_error(card, f"dispatch refused: {refusal}", ring_id)
  entry = (gc.regCOMPUTE_PGM_LO.read() | gc.regCOMPUTE_PGM_HI.read() << 32) << 8
  code = fetch_code(card, entry, vmid)
  if not code:
    card.gmc.translate(entry, what="shader instruction fetch", vmid=vmid)
    return f"shader entry 0x{entry:x} does not translate in VMID {vmid}"
  wave = 32 if init["CS_W32_EN"] else 64
  user = [gc[f"regCOMPUTE_USER_DATA_{i}"].read() for i in range(rsrc2["USER_SGPR"])]
  system, sgpr = {}, len(user)
  for field, name in (("TGID_X_EN", "workgroup_id_x"), ("TGID_Y_EN", "workgroup_id_y"),
                      ("TGID_Z_EN", "workgroup_id_z"), ("TG_SIZE_EN", "workgroup_info")):
    if rsrc2[field]:
      system[name] = sgpr
      sgpr += 1
  vgprs = (rsrc1["VGPRS"] + 1) * (8 if wave == 32 else 4)
  layout = Layout(wave, vgprs, {}, system, rsrc2["TIDIG_COMP_CNT"])
  try:
    return Dispatch(card, code, entry, layout, dims, block, user, rsrc2["LDS_SIZE"] * LDS_GRANULE, vmid, ring_id)
  except SimError as e:
    return sq_error(card, f"wave launch: {e}", ring_id)


def sq_error(card, why: str, ring_id: int) -> str:
  card.note(f"spi: {why}")
  card.ih.post(ih_facts.CLIENTS["soc21_ih_clientid"]["SOC21_IH_CLIENTID_GRBM_CP"],
               ih_facts.SOURCES["GFX_11_0_0__SRCID__SQ_INTERRUPT_ID"], 0, 0, ring=ring_id)
  return why
