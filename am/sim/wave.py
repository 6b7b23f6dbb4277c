"""The execution loop: groups of waves run instruction by instruction through per-pc closures, split where a scalar
branch diverges between waves, and meet again at workgroup barriers.

Each group owns a table with one entry per code dword. An entry starts as a trampoline that decodes the instruction
(program.py), compiles it for this group's register arrays (salu / valu / vmem / lds) and replaces itself; after that
an instruction costs one Python call plus its numpy work. A closure returns the next pc, or END / BARRIER / SPLIT.

Scheduling (run_groups): a group runs until it ends, reaches a barrier, or splits (its waves disagree on a branch:
two groups continue at the two targets). When every live group waits at a barrier, all of them are released: every
workgroup has then had all its non-ended waves arrive (s_endpgm'd waves no longer count), and groups waiting at the
same pc merge into one, so waves that diverged run batched again.
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

__all__ = ["compile_at", "run_group", "run_groups"]
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
  """Run g from g.pc until it ends (END), waits at a barrier (BARRIER, g.pc = the instruction after it) or splits
  (SPLIT, g.split set).

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
          raise StepLimitExceeded(f"the dispatch ran {ctx.max_steps} instructions without finishing (wave group at "
                                  f"pc {pc:#x}: {program.at(pc).text!r}); an infinite loop, or raise max_steps")
  finally:
    ctx.instructions += steps
    ctx.lane_slots += steps * g.W * g.L
  if nxt == SPLIT:
    g.pc = pc
  return nxt


def run_groups(groups: list) -> None:
  """Run groups of one dispatch to completion (see the module docstring for the barrier rule)."""
  runnable, waiting = list(groups), []
  while runnable or waiting:
    if not runnable:
      runnable = release(waiting)
      waiting = []
      continue
    g = runnable.pop()
    status = run_group(g)
    if status == BARRIER:
      waiting.append(g)
    elif status == SPLIT:
      taken, target, other = g.split
      runnable.append(g.subset(~taken, other))
      runnable.append(g.subset(taken, target))
    elif status != END:
      raise SimError(f"unexpected status {status} from the wave group at pc {g.pc:#x}")


def release(waiting: list) -> list:
  by_pc: dict = {}
  for g in waiting:
    by_pc.setdefault(g.pc, []).append(g)
  out = []
  for members in by_pc.values():
    out.append(members[0] if len(members) == 1 else type(members[0]).merge(members))
  return out
