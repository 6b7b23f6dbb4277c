"""nvdrv.memory.VAAllocator: random alloc/free sequences against a model that only tracks the live blocks.

The model derives the free gaps of the window from the live blocks and predicts, by the allocator's documented
first-fit rule, the address every request must get (or that none fits). After every step the allocator's free list
must be exactly the model's gaps: sorted, disjoint, coalesced, inside the window.
"""
from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from conftest import examples
from nvdrv.memory import VAAllocator, round_up

BASE = 0x20_0000_0000
SIZE = 1 << 16  # small enough that random requests exhaust it


def gaps(base: int, size: int, live: dict[int, int]) -> list[tuple[int, int]]:
  """The free (start, length) runs of [base, base + size) around the live blocks {addr: size}."""
  out, cursor = [], base
  for addr in sorted(live):
    if addr > cursor:
      out.append((cursor, addr - cursor))
    cursor = addr + live[addr]
  if cursor < base + size:
    out.append((cursor, base + size - cursor))
  return out


def first_fit(free: list[tuple[int, int]], size: int, align: int) -> int | None:
  for start, length in free:
    addr = round_up(start, align)
    if addr + size <= start + length:
      return addr
  return None


class VAMachine(RuleBasedStateMachine):
  def __init__(self):
    super().__init__()
    self.va = VAAllocator(BASE, SIZE)
    self.live: dict[int, int] = {}
    self.freed: list[tuple[int, int]] = []

  @rule(size=st.integers(1, SIZE // 2) | st.integers(1, 0x800), align_log2=st.integers(0, 16),
        odd_align=st.sampled_from([None, 3, 0x180, 0x500]))
  def alloc(self, size, align_log2, odd_align):
    self.check_alloc(size, odd_align or 1 << align_log2)

  @rule(extra=st.integers(0, 1), align_log2=st.integers(0, 4))
  def alloc_largest_gap(self, extra, align_log2):
    # exactly the largest free run (fits when its start is aligned) or one byte more (never fits)
    free = gaps(BASE, SIZE, self.live)
    if free:
      self.check_alloc(max(length for _, length in free) + extra, 1 << align_log2)

  def check_alloc(self, size, align):
    expected = first_fit(gaps(BASE, SIZE, self.live), size, align)
    if expected is None:
      with pytest.raises(MemoryError, match=f"no {size:#x}-byte block aligned to {align:#x}.*{SIZE:#x}-byte window"):
        self.va.alloc(size, align)
      return
    addr = self.va.alloc(size, align)
    assert addr == expected
    assert addr % align == 0 and BASE <= addr and addr + size <= BASE + SIZE
    assert all(addr + size <= a or a + s <= addr for a, s in self.live.items()), "overlaps a live block"
    self.live[addr] = size

  @precondition(lambda self: self.live)
  @rule(data=st.data())
  def free(self, data):
    addr = data.draw(st.sampled_from(sorted(self.live)))
    size = self.live.pop(addr)
    self.va.free(addr, size)
    self.freed.append((addr, size))

  @precondition(lambda self: self.freed)
  @rule(data=st.data())
  def double_free(self, data):
    addr, size = data.draw(st.sampled_from(self.freed))
    if any(addr < a + s and a < addr + size for a, s in self.live.items()):
      return  # (part of) the range was handed out again: freeing it is not detectable as a double free
    with pytest.raises(ValueError, match=f"double free or overlap: VA block {addr:#x}\\+{size:#x}"):
      self.va.free(addr, size)

  @precondition(lambda self: self.live)
  @rule(data=st.data())
  def overlapping_free(self, data):
    # a range that starts inside a live block and runs into the free space after it
    addr = data.draw(st.sampled_from(sorted(self.live)))
    end = addr + self.live[addr]
    free_after = [start for start, _ in gaps(BASE, SIZE, self.live) if start == end]
    if not free_after:
      return
    with pytest.raises(ValueError, match="already \\(partly\\) free"):
      self.va.free(addr, self.live[addr] + 1)

  @rule(offset=st.integers(1, 0x1000), size=st.integers(1, 0x1000), below=st.booleans())
  def out_of_window_free(self, offset, size, below):
    addr = BASE - offset if below else BASE + SIZE - size + offset
    with pytest.raises(ValueError, match=f"{addr:#x}\\+{size:#x} is outside the window {BASE:#x}\\+{SIZE:#x}"):
      self.va.free(addr, size)

  @invariant()
  def free_list_is_the_complement_of_live_blocks(self):
    starts = self.va.free_starts
    assert starts == sorted(self.va.free_sizes)
    assert [(s, self.va.free_sizes[s]) for s in starts] == gaps(BASE, SIZE, self.live)

  def teardown(self):
    for addr, size in list(self.live.items()):
      self.va.free(addr, size)
    assert self.va.free_starts == [BASE] and self.va.free_sizes == {BASE: SIZE}
    assert self.va.alloc(SIZE, SIZE) == BASE


VAMachine.TestCase.settings = settings(max_examples=examples(60), stateful_step_count=40, deadline=None)
TestVAAllocator = VAMachine.TestCase


def test_coalescing_in_every_order():
  # four neighbouring blocks freed in each of the 24 orders always end as one block
  import itertools
  for order in itertools.permutations(range(4)):
    va = VAAllocator(BASE, 4 << 12)
    blocks = [va.alloc(1 << 12, 1 << 12) for _ in range(4)]
    assert blocks == [BASE + (i << 12) for i in range(4)]
    for i in order:
      va.free(blocks[i], 1 << 12)
    assert va.free_sizes == {BASE: 4 << 12}, order


def test_exhaustion_names_the_request_and_the_window():
  va = VAAllocator(BASE, 0x10000)
  va.alloc(0x8000, 0x1000)
  with pytest.raises(MemoryError, match=r"no 0x9000-byte block aligned to 0x1000 in the 0x10000-byte window at "
                                        r"0x2000000000"):
    va.alloc(0x9000, 0x1000)
  # fits by size but not once aligned: [0x8000, 0x10000) has no 0x10000-aligned start
  with pytest.raises(MemoryError, match="no 0x1000-byte block aligned to 0x10000"):
    VAAllocator(BASE + 0x8000, 0x8000).alloc(0x1000, 0x10000)


@pytest.mark.parametrize("size,align", [(0, 1), (-5, 1), (0x1000, 0), (0x1000, -0x1000)])
def test_alloc_rejects_non_positive_sizes_and_alignments(size, align):
  va = VAAllocator(BASE, 0x10000)
  with pytest.raises(ValueError, match=f"{size:#x} bytes aligned to {align:#x}"):
    va.alloc(size, align)
  assert va.free_sizes == {BASE: 0x10000}


@pytest.mark.parametrize("size", [0, -0x100])
def test_free_rejects_non_positive_sizes(size):
  va = VAAllocator(BASE, 0x10000)
  addr = va.alloc(0x1000, 0x1000)
  with pytest.raises(ValueError, match=f"{size:#x}"):
    va.free(addr + 0x10, size)
  va.free(addr, 0x1000)  # the free list was not disturbed by the refused call
  assert va.free_sizes == {BASE: 0x10000}
