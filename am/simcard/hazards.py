"""Dispatches that may overlap on hardware, and the memory hazards between them: what makes a missing barrier visible
on the simulated card, which itself runs one dispatch after another.

The hardware rule (modelled): the CP does not wait for a dispatch's waves before it launches the next dispatch of the
queue, so two dispatches that no EVENT_WRITE CS_PARTIAL_FLUSH separates may run at the same time; the partial flush
waits until every compute wave before it has ended (radeonsi's si_emit_cache_flush and radv's cache-flush code emit
it between dependent dispatches for that reason). ACQUIRE_MEM only invalidates caches and RELEASE_MEM only writes
once earlier work is done: neither holds back the next dispatch, so neither ends the in-flight set.

The model: each dispatch records its footprint, the 4 KiB pages of virtual address (in the queue's VMID) its waves
read and wrote: every vector, scalar and atomic access translates through the dispatch's GpuMemory page by page
(gpuvm.py), which adds the pages to the footprint (an atomic counts as a read and a write); the CP's own packet reads
and writes are not included. Pages, not bytes: the AM driver's buffers are whole pages (am/ip/gmc.py allocates in
pages), so two buffers never share one and a page shared by two dispatches is a buffer shared by them; memory
sub-allocated within a page would be reported conservatively (a hazard between disjoint bytes of one page).

Per queue, the dispatches since the last CS_PARTIAL_FLUSH are "in flight". When a dispatch ends, its footprint is
compared with each in-flight one: it reads what one wrote (read after write), writes what one wrote (write after
write) or writes what one read (write after read). Each finding is a readable line in `card.hazards` naming both
dispatches (their number on the queue, kernel name when `card.kernel_names` maps the entry address to one, entry,
grid and block, the packet's place in the ring or IB) and the lowest shared page; then the dispatch joins the
in-flight set. With `card.raise_on_hazard` (AM_SIM_HAZARDS=raise in the environment when the card is made) the
queue's run ends by raising DispatchHazard, out of the host's doorbell write or register / VRAM read that let the
card run.

Not modelled: hazards between queues (the simulated MEC runs queues in turn; nothing orders them on hardware and
nothing here compares them), between a dispatch and CP packets (WRITE_DATA, COPY_DATA, RELEASE_MEM) or SDMA, host
writes through BAR 0 while a dispatch runs, and cache effects (a read that a barrier-free order would serve stale
from a cache is not told apart from one that merely races).
"""
from __future__ import annotations

from am.ip.pte import PAGE   # the footprint's granularity: the GPUVM page

RAISE_ENV = "AM_SIM_HAZARDS"   # "raise": a new card raises DispatchHazard instead of only recording


class DispatchHazard(RuntimeError):
  """Two dispatches of one queue with no CS_PARTIAL_FLUSH between them touch the same memory, one of them writing:
  on hardware they may run at the same time. The message lists the hazards (card.hazards keeps them too)."""


class Footprint:
  """The virtual pages one dispatch's waves read (`pages[False]`) and wrote (`pages[True]`), as page numbers.
  GpuMemory's page walk adds them: it already has each access's distinct pages, so recording costs one set update."""

  def __init__(self):
    self.pages: tuple[set[int], set[int]] = (set(), set())


def find(earlier: tuple[str, Footprint], later: tuple[str, Footprint], queue: str) -> list[str]:
  """The hazards between two dispatches of one queue that no CS_PARTIAL_FLUSH separates, each given as (label,
  footprint), `later` dispatched after `earlier`: one line per kind found, naming the lowest page both touch."""
  (e_label, e), (l_label, lt) = earlier, later
  (e_reads, e_writes), (l_reads, l_writes) = e.pages, lt.pages
  checks = (("read after write", l_reads & e_writes, "reads", "wrote"),
            ("write after write", l_writes & e_writes, "writes", "wrote"),
            ("write after read", l_writes & e_reads, "writes", "read"))
  out = []
  for kind, shared, verb, their_verb in checks:
    if shared:
      out.append(f"{kind} on {queue}: {l_label} {verb} page 0x{min(shared) * PAGE:x}, which {e_label} {their_verb}, "
                 "and no CS_PARTIAL_FLUSH separates them (on hardware they may run at the same time)")
  return out
