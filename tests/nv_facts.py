"""Readers for the tables in nvdrv/FACTS.md, the independent reference the nvdrv unit tests check the driver against.

FACTS.md was written from NVIDIA's headers (struct layouts compiled with gcc from the 580.142 headers, method and QMD
fields read from clc86f.h / clcbc0.h / clcbc0qmd.h / clc8b5.h); nvdrv's Python tables were written separately. These
readers only parse markdown: they never import nvdrv, so a test compares two sources, not one source with itself.
Each reader checks what it can of the sheet's own consistency (decimal vs hex offsets, "dw N, bits h:l" vs the
absolute bit range) and fails loudly when a table it expects is missing, so a reformatted FACTS.md cannot turn the
tests into no-ops.
"""
from __future__ import annotations

import functools
import os
import re

FACTS_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "nvdrv", "FACTS.md")


@functools.cache
def text() -> str:
  with open(FACTS_PATH, encoding="utf-8") as f:
    return f.read()


def section(heading: str) -> list[str]:
  """The lines of the section whose heading starts with `heading` (e.g. "### 1.2"), up to the next heading of the
  same or a higher level."""
  lines = text().splitlines()
  level = len(heading) - len(heading.lstrip("#"))
  starts = [i for i, line in enumerate(lines) if line.startswith(heading)]
  if len(starts) != 1:
    raise AssertionError(f"FACTS.md: expected one heading starting with {heading!r}, found {len(starts)}")
  out = []
  for line in lines[starts[0] + 1:]:
    stripped = line.lstrip("#")
    if line.startswith("#") and stripped.startswith(" ") and len(line) - len(stripped) <= level:
      break
    out.append(line)
  return out


def cells(line: str) -> list[str]:
  """The cells of one markdown table row, with bold/backtick markup removed and escaped pipes restored."""
  parts = re.split(r"(?<!\\)\|", line.strip().strip("|"))
  return [p.replace("\\|", "|").replace("**", "").replace("`", "").strip() for p in parts]


def table_rows(lines: list[str]) -> list[list[str]]:
  """Every data row of every table in `lines` (header rows and |---| separators dropped)."""
  rows, previous_was_table = [], False
  for line in lines:
    is_table = line.lstrip().startswith("|")
    if is_table and previous_was_table and not re.fullmatch(r"\|[-| :]+\|?", line.strip()):
      rows.append(cells(line))
    elif is_table and not previous_was_table:
      pass  # header row
    previous_was_table = is_table
  return rows


# ---- struct layouts: "#### `NAME` — sizeof N (0xN)" + | field | offset | size | type | ----
STRUCT_HEADING = re.compile(r"^#### `(\w+)` — sizeof (\d+) \(0x([0-9a-f]+)\)$")
OFFSET_CELL = re.compile(r"^(\d+) \(0x([0-9a-f]+)\)$")


@functools.cache
def struct_layouts() -> dict[str, tuple[int, list[tuple[str, int, int, str]]]]:
  """name -> (sizeof, [(field path such as "params.hRoot", offset, size, type text)])."""
  out: dict[str, tuple[int, list[tuple[str, int, int, str]]]] = {}
  lines = text().splitlines()
  for i, line in enumerate(lines):
    heading = STRUCT_HEADING.match(line)
    if not heading:
      continue
    name, size, size_hex = heading.group(1), int(heading.group(2)), int(heading.group(3), 16)
    if size != size_hex:
      raise AssertionError(f"FACTS.md {name}: sizeof {size} disagrees with its hex form 0x{size_hex:x}")
    fields, j = [], i + 1
    while j < len(lines) and not lines[j].startswith("|"):
      j += 1
    while j < len(lines) and lines[j].startswith("|"):
      row = cells(lines[j])
      j += 1
      offset = OFFSET_CELL.match(row[1]) if len(row) == 4 else None
      if offset is None:
        continue  # header or separator row
      if int(offset.group(1)) != int(offset.group(2), 16):
        raise AssertionError(f"FACTS.md {name}.{row[0]}: offset {row[1]} disagrees with itself")
      fields.append((row[0], int(offset.group(1)), int(row[2]), row[3]))
    if not fields:
      raise AssertionError(f"FACTS.md {name}: heading without a field table")
    out[name] = (size, fields)
  return out


# ---- 1.2: escape numbers and ready-made _IOWR request words ----
@functools.cache
def escape_words() -> list[tuple[str, list[int], list[int]]]:
  """Rows of the FACTS.md 1.2 table that give request words: (escape cell, [nr...], [request word...])."""
  out = []
  for row in table_rows(section("### 1.2")):
    words = [int(w, 16) for w in re.findall(r"0x[0-9a-fA-F]{8}", row[4])]
    if not words:
      continue
    nrs = [int(n, 0) for n in re.findall(r"0x[0-9A-Fa-f]+|\d+", row[1])]
    out.append((row[0], nrs, words))
  if len(out) < 10:
    raise AssertionError(f"FACTS.md 1.2: only {len(out)} rows with request words parsed")
  return out


# ---- bit-range tables ----
def bit_range(cell: str) -> tuple[int, int]:
  """ "31:2" -> (31, 2); "9" -> (9, 9)."""
  match = re.match(r"^(\d+)(?::(\d+))?", cell)
  if not match:
    raise AssertionError(f"FACTS.md: {cell!r} is not a bit range")
  hi = int(match.group(1))
  return hi, int(match.group(2)) if match.group(2) else hi


@functools.cache
def gpfifo_entry_fields() -> dict[str, tuple[str, int, int]]:
  """FACTS.md 5.1: field name -> (word "entry0"/"entry1", high bit, low bit); control-entry rows left out."""
  out = {}
  for word, bits, meaning in table_rows(section("### 5.1")):
    if "control entries" in bits:
      continue
    hi, lo = bit_range(bits)
    out[meaning.split(":")[0].strip()] = (word, hi, lo)
  return out


@functools.cache
def method_header_fields() -> dict[str, tuple[int, int]]:
  """FACTS.md 5.4: "method" / "subchannel" / "count" / "SEC_OP" -> (high bit, low bit) of a pushbuffer header."""
  out = {}
  for bits, meaning in table_rows(section("### 5.4")):
    key = {"method": "method", "subchannel": "subchannel", "count": "count", "SEC_OP": "SEC_OP"}[
      re.match(r"\w+", meaning).group(0)]
    out[key] = bit_range(bits)
  return out


@functools.cache
def sec_op_values() -> dict[str, int]:
  """FACTS.md 5.4 SEC_OP enum: name -> value (e.g. "INC_METHOD" -> 1)."""
  for bits, meaning in table_rows(section("### 5.4")):
    if meaning.startswith("SEC_OP"):
      return {name: int(value) for name, value in re.findall(r"([A-Z][A-Z0-9_]+) (\d+)", meaning)}
  raise AssertionError("FACTS.md 5.4: no SEC_OP row")


def _expand_names(cell: str) -> list[str]:
  """ "MEM_OP_A/B/C/D" -> the four names; "SET_DST_BLOCK_SIZE / _WIDTH" -> SET_DST_BLOCK_SIZE, SET_DST_BLOCK_WIDTH."""
  names = []
  for part in re.split(r"\s*[/,]\s*", cell.strip()):
    if names and (part.startswith("_") or "_" not in part):
      stem = names[-1].rsplit("_", 1)[0]
      part = stem + ("" if part.startswith("_") else "_") + part
    names.append(part)
  return names


@functools.cache
def method_offsets(heading: str) -> dict[str, int]:
  """A class's method table (FACTS.md 5.5 host, 5.6 compute, 7.2 copy): method name -> byte offset. Rows whose
  names and offsets cannot be paired one to one (e.g. LOAD_INLINE_QMD_DATA(i)) are left out."""
  out = {}
  for row in table_rows(section(heading)):
    names = _expand_names(row[0])
    offsets = re.findall(r"0x[0-9A-Fa-f]+", row[1])
    if len(names) != len(offsets) or "(" in row[0] or "+" in row[1]:
      continue
    for name, offset in zip(names, offsets):
      out[name] = int(offset, 16)
  if len(out) < 10:
    raise AssertionError(f"FACTS.md {heading}: only {len(out)} methods parsed")
  return out


@functools.cache
def launch_dma_fields() -> dict[str, tuple[int, int, dict[str, int]]]:
  """FACTS.md 7.3 (clc8b5 LAUNCH_DMA): field -> (high bit, low bit, {value name: value})."""
  out = {}
  for name, bits, values in table_rows(section("### 7.3")):
    hi, lo = bit_range(bits)
    enum = {value_name: int(value, 0) for value_name, value in re.findall(r"([A-Z][A-Z0-9_]+) (0x[0-9A-Fa-f]+|\d+)",
                                                                            values)}
    out[name] = (hi, lo, enum)
  return out


@functools.cache
def launch_dma_examples() -> dict[str, int]:
  """FACTS.md 7.4: operation text -> the first ready-made LAUNCH_DMA word of that row."""
  out = {}
  for operation, word in table_rows(section("### 7.4")):
    found = re.match(r"0x[0-9A-Fa-f]{8}", word)
    if found:
      out[operation] = int(found.group(0), 16)
  return out


@functools.cache
def sem_execute_fields() -> dict[str, tuple[int, int]]:
  """FACTS.md 5.5 SEM_EXECUTE row: field -> (high bit, low bit), e.g. RELEASE_WFI -> (20, 20)."""
  for row in table_rows(section("### 5.5")):
    if row[0] == "SEM_EXECUTE":
      return {name: (int(hi), int(lo) if lo else int(hi))
              for name, hi, lo in re.findall(r"(?:^|; )([A-Z][A-Z_]+) (\d+)(?::(\d+))?", row[2])}
  raise AssertionError("FACTS.md 5.5: no SEM_EXECUTE row")


# ---- 5.7: QMD field positions ----
QMD_RANGE = re.compile(r"^(\d+):(\d+) \(dw (\d+), bits (\d+):(\d+)\)$")


@functools.cache
def qmd_fields() -> dict[str, dict[str, tuple[int, int]]]:
  """FACTS.md 5.7: {"V03_00": {NVIDIA field name: (high bit, low bit)}, "V04_00": {...}}. Indexed names such as
  CONSTANT_BUFFER_VALID(i) are given for i = 0, as the table does, and named "(0)"."""
  out: dict[str, dict[str, tuple[int, int]]] = {"V03_00": {}, "V04_00": {}}
  for row in table_rows(section("### 5.7")):
    names = [n.strip().replace("(i)", "(0)") for n in row[3].split("/")]
    for version, cell, name in (("V03_00", row[1], names[0]), ("V04_00", row[2], names[1])):
      if cell == "–":
        continue
      match = QMD_RANGE.match(cell)
      if not match:
        raise AssertionError(f"FACTS.md 5.7 {row[0]}: cannot read {cell!r}")
      hi, lo, dw, dw_hi, dw_lo = (int(g) for g in match.groups())
      if (hi, lo) != (32 * dw + dw_hi, 32 * dw + dw_lo):
        raise AssertionError(f"FACTS.md 5.7 {name}: {hi}:{lo} is not dw {dw} bits {dw_hi}:{dw_lo}")
      out[version][name] = (hi, lo)
  return out


# ---- 9.3: RC error codes (Xids) ----
@functools.cache
def xid_names() -> dict[int, str]:
  """FACTS.md 9.3 rows naming one code: code -> nverror.h name."""
  out = {}
  for row in table_rows(section("### 9.3")):
    if re.fullmatch(r"\d+", row[0]) and re.fullmatch(r"[A-Z][A-Z0-9_]+", row[1]):
      out[int(row[0])] = row[1]
  if len(out) < 8:
    raise AssertionError(f"FACTS.md 9.3: only {len(out)} single-code rows parsed")
  return out


# ---- 10.5: shared-memory carve-outs and their *_SM_CONFIG_SHARED_MEM_SIZE encoding ----
@functools.cache
def carveouts_kb() -> list[int]:
  """The sm_90 carve-out sizes in KiB, smallest first."""
  for line in section("### 10.5"):
    if "sm_90 per-SM carve-out sizes" in line:
      listed = re.search(r"\*\*([\d, ]+) KB\*\*", line).group(1)
      return [int(kb) for kb in listed.split(",")]
  raise AssertionError("FACTS.md 10.5: no sm_90 carve-out list")


@functools.cache
def carveout_encoding() -> dict[int, int]:
  """The worked encoding examples of FACTS.md 10.5: KiB -> field value (e.g. 228 -> 58)."""
  for line in section("### 10.5"):
    if "Encoding" in line:
      pairs = re.findall(r"(\d+)→(\d+)", line.replace("**", ""))
      return {int(kb): int(hw) for kb, hw in pairs}
  raise AssertionError("FACTS.md 10.5: no encoding line")


# ---- name -> number tables (UVM commands, classes, control commands) ----
NUMBER = r"0x[0-9A-Fa-f]+|\d+"


@functools.cache
def named_numbers(heading: str) -> dict[str, int]:
  """Rows of the tables in a section whose first cell names constants and whose second cell gives their values
  ("NAME | 0x80", "A / B | 0x0 / 0x1"); parenthesised remarks after a name are dropped."""
  out = {}
  for row in table_rows(section(heading)):
    if len(row) < 2 or not re.fullmatch(rf"(?:{NUMBER})(?: / (?:{NUMBER}))*", row[1]):
      continue
    names = _expand_names(re.sub(r"\s*\([^)]*\)", "", row[0]))
    values = [int(v, 0) for v in row[1].split(" / ")]
    if len(names) == len(values) and all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]+", n) for n in names):
      out.update(zip(names, values))
  return out
