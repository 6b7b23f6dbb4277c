"""s_waitcnt (gfx11) / s_wait_* (gfx12) insertion after register allocation.

A memory instruction returns its data later than it issues; each outstanding one counts on a counter until then
(LLVM 19 AMDGPUUsage memory model and SIInsertWaitcnts.cpp, as am/sim/waitcnt.py models them):
  gfx11  vmcnt: vector loads, in order; lgkmcnt: LDS (in order) and scalar loads (out of order);
  gfx12  loadcnt: vector loads; dscnt: LDS; kmcnt: scalar loads (out of order).
Stores (vscnt / storecnt) return no registers and are not waited for. Vector loads return in order, so a vector load
may write (a d16 load: merge into) a register an earlier vector load still owes without a wait (am/sim/program.py
accepts the same; LLVM relies on it for d16 lo / hi loads into one VGPR). This pass follows the straight-line order of
the code with one queue per counter: before an instruction that reads or writes a register some queued load still
owes, it waits until the counter is down to the number of in-order entries issued after the newest such load (0
where out-of-order entries are queued on that counter, as scalar loads are). At a label, before a branch and
(for the LDS counter) before a barrier, every load counter is waited down to 0, so the state is the same on every
path into a block and LDS stores are visible to the workgroup after s_barrier.
"""
from __future__ import annotations

from compiler.rdna_code import MInst, regof, unwrap
from compiler.rdna_regalloc import physical

COUNTERS = {11: {"vload": "vmcnt", "smem": "lgkmcnt", "dsload": "lgkmcnt", "dsstore": "lgkmcnt"},
            12: {"vload": "loadcnt", "smem": "kmcnt", "dsload": "dscnt", "dsstore": "dscnt"}}
MAX_COUNT = {"vmcnt": 63, "lgkmcnt": 63, "loadcnt": 63, "dscnt": 63, "kmcnt": 31}
LDS_COUNTER = {11: "lgkmcnt", 12: "dscnt"}
BARRIERS = ("s_barrier", "s_barrier_signal")


class _Entry:
  __slots__ = ("regs", "in_order")

  def __init__(self, regs: frozenset, in_order: bool):
    self.regs, self.in_order = regs, in_order


def wait_text(gen: int, waits: dict) -> list[str]:
  """The wait instructions for {counter: count}."""
  if gen == 11:
    return ["s_waitcnt " + " ".join(f"{c}({n})" for c, n in sorted(waits.items(), key=lambda kv: kv[0][0] != "v"))]
  return [f"s_wait_{c} {n}" for c, n in sorted(waits.items())]


class WaitState:
  def __init__(self, gen: int):
    self.gen = gen
    self.queues: dict[str, list[_Entry]] = {c: [] for c in set(COUNTERS[gen].values())}

  def needed(self, touched: set, narrowed: dict | None = None) -> dict:
    """{counter: count} to wait for before an instruction touching these physical registers (narrowed: counter ->
    the registers that count for that counter instead)."""
    out = {}
    for counter, q in self.queues.items():
      regs = touched if narrowed is None else narrowed.get(counter, touched)
      hit = [i for i, e in enumerate(q) if e.regs & regs]
      if not hit:
        continue
      newest = hit[-1]
      if not q[newest].in_order or any(not e.in_order for e in q):
        out[counter] = 0
      else:
        out[counter] = min(sum(1 for e in q[newest + 1:] if e.in_order), MAX_COUNT[counter])
    return out

  def flush(self, counters=None) -> dict:
    return {c: 0 for c, q in self.queues.items() if q and (counters is None or c in counters)}

  def retire(self, waits: dict) -> None:
    for counter, n in waits.items():
      q = self.queues[counter]
      if n == 0:
        q.clear()
        continue
      in_order = [e for e in q if e.in_order]
      done = set(map(id, in_order[:max(0, len(in_order) - n)]))
      self.queues[counter] = [e for e in q if id(e) not in done]

  def issue(self, inst: MInst, phys: dict) -> None:
    counter = COUNTERS[self.gen].get(inst.mem)
    if counter is None:
      return
    regs = frozenset(p for a in inst.defs() for p in physical(a, phys))
    self.queues[counter].append(_Entry(regs, inst.mem != "smem"))


def insert_waits(insts: list[MInst], phys: dict, gen: int) -> list:
  """The instruction list with wait instructions (as text) inserted where needed."""
  state = WaitState(gen)
  out: list = []
  for inst in insts:
    if inst.is_label or inst.is_branch:
      waits = state.flush()
    elif inst.op in BARRIERS:
      waits = state.flush({LDS_COUNTER[gen]})
    else:
      touched = {p for a in inst.uses() + inst.defs() for p in physical(a, phys)}
      narrowed = None
      if inst.mem == "vload":  # vector loads return in order: one may write (or merge into) what an earlier one owes
        address = {p for a in inst.args[inst.ndefs:] if regof(a) is not None for p in physical(unwrap(a), phys)}
        narrowed = {COUNTERS[gen]["vload"]: address}
      waits = state.needed(touched, narrowed) if touched else {}
    if waits:
      state.retire(waits)
      out.extend(wait_text(gen, waits))
    out.append(inst)
    state.issue(inst, phys)
  return out
