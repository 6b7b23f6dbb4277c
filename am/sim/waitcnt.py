"""Outstanding-memory counters of a wave and the "use before wait" check.

The emulator performs every memory access when the instruction issues, but it remembers what a real wave would still
be waiting for: each load, store or atomic is an entry in the queue of the counter it increments, holding the
registers it will write. s_waitcnt (gfx11) / s_wait_* (gfx12) retire entries; an instruction that reads or writes a
register of an entry still queued raises WaitcntHazard, because on hardware it would see the old value.

Counters (LLVM 19: llvm-19-doc AMDGPUUsage, GFX10-GFX11 memory model: "vmcnt reports completion of load, atomic
with return and sample instructions in order, and the vscnt reports the completion of store and atomic without return
in order"; SIInsertWaitcnts.cpp: "Scalar memory read always can go out of order"; the s_waitcnt fields in
AMDGPU/gfx11_waitcnt.rst; the gfx12 counters from the s_wait_* instructions of the generated tables):
  gfx11  vmcnt: vector memory loads and returning atomics, in order; vscnt: vector stores and non-returning atomics;
         lgkmcnt: LDS (in order) and scalar memory loads (out of order, so only lgkmcnt(0) is known to cover them).
  gfx12  loadcnt (vector loads, returning atomics), storecnt, dscnt (LDS), kmcnt (scalar loads, out of order).
Loads of one counter may write a register an earlier load of it still owes (they return in order): program.py
leaves load destinations out of the check.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .errors import WaitcntHazard

__all__ = ["Pending", "WaitState", "reg_name"]
# counter -> how a kernel waits for it, per generation (for the hint in the error message)
WAIT_SYNTAX = {"vmcnt": "s_waitcnt vmcnt({n})", "lgkmcnt": "s_waitcnt lgkmcnt({n})",
               "vscnt": "s_waitcnt_vscnt null, {n}", "loadcnt": "s_wait_loadcnt {n}",
               "storecnt": "s_wait_storecnt {n}", "dscnt": "s_wait_dscnt {n}", "kmcnt": "s_wait_kmcnt {n}"}
COUNTERS = {11: ("vmcnt", "lgkmcnt", "vscnt"), 12: ("loadcnt", "storecnt", "dscnt", "kmcnt")}


@dataclass(frozen=True)
class Pending:
  """One outstanding memory operation: the registers it writes (emulator codes: SGPR n, VGPR 256+n), where it was
  issued, whether it completes in order with the others of its counter, and whether it is an LDS write."""
  regs: frozenset
  pc: int
  text: str
  in_order: bool = True
  lds_store: bool = False


def reg_name(code: int) -> str:
  return f"v{code - 256}" if code >= 256 else f"s{code}"


class WaitState:
  """Queues of outstanding operations per counter, shared by the waves of a group (they issue the same code)."""

  def __init__(self, generation: int):
    self.generation = generation
    self.queues = {name: deque() for name in COUNTERS[generation]}
    self.pending: frozenset = frozenset()     # registers of all queued entries; empty means nothing to check

  def copy(self) -> WaitState:
    other = WaitState(self.generation)
    for name, q in self.queues.items():
      other.queues[name].extend(q)
    other.pending = self.pending
    return other

  def merge(self, other: WaitState) -> None:
    """Join another group's state (groups that meet again at a barrier): the longer queue of each counter."""
    for name, q in other.queues.items():
      if len(q) > len(self.queues[name]):
        self.queues[name] = deque(q)
    self.refresh()

  def refresh(self) -> None:
    regs = set()
    for q in self.queues.values():
      for entry in q:
        regs |= entry.regs
    self.pending = frozenset(regs)

  def issue(self, counter: str, entry: Pending) -> None:
    self.queues[counter].append(entry)
    if entry.regs:
      self.pending = self.pending | entry.regs

  def wait(self, counter: str, count: int) -> None:
    """The wave waits until at most `count` operations of the counter are outstanding. In-order entries retire oldest
    first; out-of-order ones (scalar loads) only at count 0."""
    q = self.queues.get(counter)
    if not q or len(q) <= count:
      return
    if count == 0:
      q.clear()
    else:
      in_order = [e for e in q if e.in_order]
      retire = max(0, len(in_order) - count)
      done = set(map(id, in_order[:retire]))
      kept = [e for e in q if id(e) not in done]
      q.clear()
      q.extend(kept)
    self.refresh()

  def check(self, touched: frozenset, pc: int, text: str) -> None:
    """Raise WaitcntHazard if the instruction at pc touches a register an outstanding load still owes."""
    hit = touched & self.pending
    if not hit:
      return
    for counter, q in self.queues.items():
      for i, entry in enumerate(q):
        regs = sorted(entry.regs & hit)
        if not regs:
          continue
        later = sum(1 for e in list(q)[i + 1:] if e.in_order) if entry.in_order else 0
        fix = WAIT_SYNTAX[counter].format(n=later)
        used = ", ".join(map(reg_name, regs))
        raise WaitcntHazard(f"use before wait: {text!r} at pc {pc:#x} uses {used}, which {entry.text!r} "
                            f"(pc {entry.pc:#x}) still owes on {counter}; a GPU would see the old value. "
                            f"Put {fix} before pc {pc:#x}")

  def lds_stores_outstanding(self) -> Pending | None:
    for counter in ("lgkmcnt", "dscnt"):
      for entry in self.queues.get(counter, ()):
        if entry.lds_store:
          return entry
    return None
