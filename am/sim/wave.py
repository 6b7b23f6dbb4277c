"""The execution loop: groups of waves run instruction by instruction through per-pc closures, split where a scalar
branch diverges between waves, and meet again at workgroup barriers.

Each group owns a table with one entry per code dword. An entry starts as a trampoline that decodes the instruction
(program.py), compiles it for this group's register arrays (salu / valu / vmem / lds) and replaces itself; after that
an instruction costs one Python call plus its numpy work. A closure returns the next pc, or END / BARRIER / SPLIT.

Scheduling (run_groups): a group runs until it ends, reaches a barrier, or splits (its waves disagree on a branch:
two groups continue at the two targets). When every live group waits at a barrier, all of them are released: every
workgroup has then had all its non-ended waves arrive (s_endpgm'd waves no longer count), and groups waiting at the
same pc merge into one, so waves that diverged run batched again.

Time slices (GroupRunner): with ctx.pause_at set, a group stops (PAUSE) once the dispatch has run that many
instructions, keeping its pc and registers; GroupRunner.run(budget) resumes where it stopped. A simulated card uses
this to run a dispatch a slice at a time (am/simcard/shader.py), so a kernel that never ends does not hold the host.
"""
from __future__ import annotations

import functools

import numpy as np

from .errors import SimError, StepLimitExceeded, UnsupportedInstruction
from .lds import compile_ds
from .program import Inst
from .salu import BARRIER, END, SPLIT, compile_scalar
from .valu import compile_vector
from .vmem import compile_buffer, compile_global, compile_smem

__all__ = ["GroupRunner", "PAUSE", "compile_at", "run_group", "run_groups"]
PAUSE = -4   # run_group: ctx.pause_at reached; g.pc is where the group resumes
COMPILERS = {"SOP1": compile_scalar, "SOP2": compile_scalar, "SOPC": compile_scalar, "SOPK": compile_scalar,
             "SOPP": compile_scalar, "VOP1": compile_vector, "VOP2": compile_vector, "VOP3": compile_vector,
             "VOPC": compile_vector, "VOP3SD": compile_vector, "VOP3P": compile_vector, "VOPD": compile_vector,
             "SMEM": compile_smem, "GLOBAL": compile_global, "FLAT": compile_global, "VGLOBAL": compile_global,
             "VFLAT": compile_global, "MUBUF": compile_buffer, "VBUFFER": compile_buffer, "DS": compile_ds}


def compile_at(g, pc: int):
  """Trampoline body: compile the instruction at pc for group g, install it, run it once."""
  inst = Inst(g.ctx.program, g.ctx.program.at(pc))
  compiler = COMPILERS.get(inst.family)
  if compiler is None:
    raise UnsupportedInstruction(inst.text, pc, f"the {inst.family} encoding family is not modelled")
  fn = compiler(g, inst)
  g.ops[pc >> 2] = fn
  return fn()


def off_the_end(pc: int):
  raise SimError(f"execution ran off the end of the kernel code at pc {pc:#x} (no s_endpgm)")


class OpTable(dict):
  """A group's compiled instructions by pc >> 2, filled on first use: a missing entry is a trampoline that compiles
  the instruction (compile_at installs it here), or off_the_end past the code. Nothing is built up front, so a
  dispatch costs nothing per byte of the code window (a card's window runs to the end of the mapped pages)."""
  __slots__ = ("g", "size")

  def __init__(self, g):
    super().__init__()
    self.g, self.size = g, len(g.ctx.program.code)

  def __missing__(self, index: int):
    pc = index * 4
    if pc >= self.size:
      return functools.partial(off_the_end, self.size)
    return functools.partial(compile_at, self.g, pc)


def install_table(g) -> None:
  g.ops = OpTable(g)


def run_group(g) -> int:
  """Run g from g.pc until it ends (END), waits at a barrier (BARRIER, g.pc = the instruction after it), splits
  (SPLIT, g.split set) or uses up the time slice (PAUSE, g.pc = the next instruction; only with ctx.pause_at).

  Raises:
    StepLimitExceeded: more than ctx.max_steps instructions in this dispatch.
    SimError and subclasses: from the instructions.
  """
  ctx = g.ctx
  if g.ops is None:
    install_table(g)
  ops, wait, program = g.ops, g.wait, ctx.program
  touched = program.touched_table
  pc, steps = g.pc, 0
  limit = ctx.max_steps - ctx.instructions
  slice_left = None if ctx.pause_at is None else ctx.pause_at - ctx.instructions
  pausing = slice_left is not None and slice_left < limit
  if pausing:
    limit = max(slice_left, 0)
  try:
    with np.errstate(all="ignore"):
      while True:
        if wait.pending:
          regs = touched[pc >> 2]
          if regs is None:
            regs = program.touched(pc)
          if regs & wait.pending:
            wait.check(regs, pc, program.at(pc).text)
        nxt = ops[pc >> 2]()
        steps += 1
        if nxt < 0:
          break
        pc = nxt
        if steps > limit:
          if pausing:
            nxt = PAUSE
            break
          raise StepLimitExceeded(f"the dispatch ran {ctx.max_steps} instructions without finishing (wave group at "
                                  f"pc {pc:#x}: {program.at(pc).text!r}); an infinite loop, or raise max_steps")
  finally:
    ctx.instructions += steps
    ctx.lane_slots += steps * g.W * g.L
  if nxt in (SPLIT, PAUSE):
    g.pc = pc
  return nxt


class GroupRunner:
  """The groups of one dispatch, run to completion in slices: run(budget) returns True once every wave ended, False
  when `budget` instructions ran first (call again to go on)."""

  def __init__(self, groups: list):
    self.runnable, self.waiting = list(groups), []
    self.ctx = groups[0].ctx if groups else None

  def run(self, budget: int | None = None) -> bool:
    if self.ctx is not None:
      self.ctx.pause_at = None if budget is None else self.ctx.instructions + budget
    while self.runnable or self.waiting:
      if not self.runnable:
        self.runnable = release(self.waiting)
        self.waiting = []
        continue
      g = self.runnable.pop()
      status = run_group(g)
      if status == BARRIER:
        self.waiting.append(g)
      elif status == SPLIT:
        taken, target, other = g.split
        self.runnable.append(g.subset(~taken, other))
        self.runnable.append(g.subset(taken, target))
      elif status == PAUSE:
        self.runnable.append(g)
        return False
      elif status != END:
        raise SimError(f"unexpected status {status} from the wave group at pc {g.pc:#x}")
    return True


def run_groups(groups: list) -> None:
  """Run groups of one dispatch to completion (see the module docstring for the barrier rule)."""
  GroupRunner(groups).run()


def release(waiting: list) -> list:
  by_pc: dict = {}
  for g in waiting:
    by_pc.setdefault(g.pc, []).append(g)
  out = []
  for members in by_pc.values():
    out.append(members[0] if len(members) == 1 else type(members[0]).merge(members))
  return out
