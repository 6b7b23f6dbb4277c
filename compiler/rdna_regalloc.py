"""Register allocation for RDNA machine code (compiler/rdna_code.py): liveness over the control-flow graph, then
linear scan over live intervals, one pass per register file.

Liveness is the usual backward dataflow over basic blocks (a block starts at a label and ends after a branch or
s_endpgm; a conditional branch also falls through), per dword of each VReg (a pair built by two 32-bit writes is
not live before its first write); `tied` instructions read what they write (accumulators, loop counters). A VReg's
interval runs from its first reference, or the start of a block it is live into, to its last reference, or the end
of a block it is live out of: values live around a loop's back edge hold their register through the whole loop, and
a value written under a narrowed EXEC keeps its register while other lanes' old contents still matter.

A register is handed to a new interval once every earlier interval on it has ended at or before the new interval's
first instruction (an instruction reads its sources before it writes its results). SGPR pairs are even-aligned (the
SReg_64 class); VGPR pairs need no alignment on gfx10+. When a file runs out, RegisterPressureError names the kernel,
the file, the limit and the values live at that instruction: nothing is spilled.
"""
from __future__ import annotations

import dataclasses

from compiler.rdna_code import Half, MInst, VReg, regof

SGPR_LIMIT = 106   # s0..s105 (gfx11 / gfx12; VCC above them is left alone)
VGPR_LIMIT = 256   # VGPRs a wave32 wave can address (AMDGPUUsage: GFX10-GFX12 max_vgpr 256)


class RegisterPressureError(Exception):
  """A kernel needs more registers of one file than the hardware gives a wave; the message says which kernel, which
  file and how many values were live."""


@dataclasses.dataclass
class Allocation:
  phys: dict            # VReg.id -> first physical register index
  vgprs: int            # VGPRs used (next free VGPR)
  sgprs: int            # SGPRs used (next free SGPR)


def blocks_of(insts: list[MInst]) -> list[tuple[int, int]]:
  """[start, end) instruction ranges of the basic blocks."""
  starts = {0}
  for i, inst in enumerate(insts):
    if inst.is_label:
      starts.add(i)
    if inst.is_branch or inst.op == "s_endpgm":
      starts.add(i + 1)
  cuts = sorted(s for s in starts if s < len(insts)) + [len(insts)]
  return list(zip(cuts[:-1], cuts[1:]))


def successors(insts: list[MInst], blocks: list[tuple[int, int]]) -> list[list[int]]:
  by_label = {insts[start].args[0]: b for b, (start, _) in enumerate(blocks) if insts[start].is_label}
  out = []
  for b, (start, end) in enumerate(blocks):
    last = insts[end - 1]
    succ = []
    if last.is_branch:
      succ.append(by_label[last.args[0]])
    if last.op not in ("s_branch", "s_endpgm") and b + 1 < len(blocks):
      succ.append(b + 1)
    out.append(succ)
  return out


def units(a) -> list[tuple[int, int]]:
  """The liveness units (VReg id, dword) an operand covers: a Half (or Slice) only its own dwords."""
  if isinstance(a, Half):
    return [(a.reg.id, a.index + k) for k in range(a.size)]
  return [(a.id, k) for k in range(a.size)]


def liveness(insts: list[MInst], blocks, succ) -> tuple[list[set], list[set]]:
  """(live-in, live-out) sets of liveness units per block."""
  uses, kills = [], []
  for start, end in blocks:
    use, kill = set(), set()
    for inst in insts[start:end]:
      for a in inst.uses():
        use.update(u for u in units(a) if u not in kill)
      for a in inst.defs():
        kill.update(units(a))
    uses.append(use)
    kills.append(kill)
  live_in = [set() for _ in blocks]
  live_out = [set() for _ in blocks]
  changed = True
  while changed:
    changed = False
    for b in reversed(range(len(blocks))):
      out = set().union(*(live_in[s] for s in succ[b])) if succ[b] else set()
      new_in = uses[b] | (out - kills[b])
      if out != live_out[b] or new_in != live_in[b]:
        live_out[b], live_in[b] = out, new_in
        changed = True
  return live_in, live_out


def intervals(insts: list[MInst]) -> tuple[dict, dict]:
  """(VReg id -> [first, last] instruction index, VReg id -> VReg)."""
  blocks = blocks_of(insts)
  succ = successors(insts, blocks)
  live_in, live_out = liveness(insts, blocks, succ)
  span: dict[int, list[int]] = {}
  regs: dict[int, VReg] = {}

  def touch(rid: int, pos: int) -> None:
    got = span.get(rid)
    if got is None:
      span[rid] = [pos, pos]
    else:
      got[0], got[1] = min(got[0], pos), max(got[1], pos)

  for i, inst in enumerate(insts):
    for a in inst.defs() + inst.uses():
      reg = regof(a)
      regs[reg.id] = reg
      touch(reg.id, i)
  for b, (start, end) in enumerate(blocks):
    for rid, _ in live_in[b]:
      touch(rid, start)
    for rid, _ in live_out[b]:
      touch(rid, end - 1)
  return span, regs


def allocate(insts: list[MInst], kernel: str, max_vgprs: int = VGPR_LIMIT, max_sgprs: int = SGPR_LIMIT) -> Allocation:
  """Physical registers for every VReg of the code.

  Raises:
    RegisterPressureError: a file ran out (the message names the kernel and the live values).
  """
  span, regs = intervals(insts)
  phys: dict[int, int] = {}
  files = {"s": _File(max_sgprs), "v": _File(max_vgprs)}
  order = sorted(span, key=lambda rid: (regs[rid].fixed is None, span[rid][0], rid))
  for rid in order:
    reg = regs[rid]
    start, end = span[rid]
    file = files[reg.file]
    if reg.fixed is not None:
      p = reg.fixed
    else:
      written = {regof(a).id for a in insts[start].defs()}
      p = file.first_free(start, reg.size, 2 if reg.file == "s" and reg.size > 1 else 1, written)
      if p is None:
        raise pressure_error(kernel, reg, len(file.end), span, regs, insts, start)
    file.take(p, reg.size, end, rid)
    phys[rid] = p
  used = {f: max((phys[rid] + regs[rid].size for rid in phys if regs[rid].file == f), default=0) for f in "sv"}
  return Allocation(phys, max(used["v"], 1), max(used["s"], 3))


class _File:
  """Per physical register: the last instruction of the interval holding it and that interval's VReg id."""

  def __init__(self, size: int):
    self.end = [-1] * size
    self.owner = [None] * size

  def free_at(self, p: int, start: int, written: set) -> bool:
    # an interval ending where the new one starts may hand over its register when that instruction only reads it
    return self.end[p] < start or self.end[p] == start and self.owner[p] not in written

  def first_free(self, start: int, size: int, align: int, written: set) -> int | None:
    for p in range(0, len(self.end) - size + 1, align):
      if all(self.free_at(p + k, start, written) for k in range(size)):
        return p
    return None

  def take(self, p: int, size: int, end: int, rid: int) -> None:
    for k in range(size):
      self.end[p + k], self.owner[p + k] = end, rid


def pressure_error(kernel: str, reg: VReg, limit: int, span: dict, regs: dict, insts: list,
                   start: int) -> RegisterPressureError:
  file = "VGPR" if reg.file == "v" else "SGPR"
  live = [rid for rid, (a, b) in span.items() if a <= start <= b and regs[rid].file == reg.file]
  dwords = sum(regs[rid].size for rid in live)
  return RegisterPressureError(
    f"kernel {kernel}: out of {file}s: {dwords} {file}s of {len(live)} values are live at instruction {start} "
    f"({insts[start]!r}), more than the {limit} this kernel may use (a wave32 wave addresses at most "
    f"{VGPR_LIMIT} VGPRs and {SGPR_LIMIT} SGPRs; a workgroup's waves must fit one WGP); nothing is spilled. Split the "
    "kernel (fewer fused ops, or smaller register tiles: compiler/lower_gpu.py TILE_CHOICES)")


def physical(a, phys: dict) -> list[tuple[str, int]]:
  """The physical registers ("s"/"v", index) an operand covers."""
  if isinstance(a, Half):
    return [(a.reg.file, phys[a.reg.id] + a.index + k) for k in range(a.size)]
  if isinstance(a, VReg):
    base = phys[a.id]
    return [(a.file, base + k) for k in range(a.size)]
  return []
