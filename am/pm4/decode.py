"""Decode PM4 and SDMA dword streams back to packet, dword and field names, from the same tables the emitters use
(am/pm4/packets.py, the generated sdma_pkt/pm4 tables, the GC register tables): for error messages, AM_DEBUG
traces and tests.

  parse_pm4(words, gfx=11)       -> [Decoded]   structured, for tests and tools
  format_pm4(words, gfx, regs)   -> [str]       one line per dword; `regs` (a GC RegisterBlock) names the
                                                registers SET_SH_REG / SET_UCONFIG_REG write and decodes them
  parse_sdma / format_sdma(words, version=6)

PM4 type-0 packets (register writes) and type-2 fillers are shown raw; a type-3 opcode without a layout here is
shown by its nvd.h name with its dwords raw. Set bits outside every known field show as unk_<bit>.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from am.generated import pm4 as facts
from am.mmio.regs import RegisterTable
from am.pm4 import packets as P
from am.pm4 import sdma as S

OPCODE_NAMES: dict[int, str] = {}
for _name, _value in facts.PACKET3.items():
  OPCODE_NAMES.setdefault(_value, _name)
_GC_TABLES: dict[int, RegisterTable] = {}
REG_PACKETS = {"PACKET3_SET_SH_REG": facts.REG_RANGES["PACKET3_SET_SH_REG_START"],
               "PACKET3_SET_UCONFIG_REG": facts.REG_RANGES["PACKET3_SET_UCONFIG_REG_START"]}


@dataclass
class Decoded:
  offset: int                                   # dword index of the header in the stream
  name: str                                     # PACKET3_* / SDMA_PKT_* / PACKET0 / PACKET2
  header: dict[str, int]
  dwords: list[tuple[str, int, dict[str, int]]] = field(default_factory=list)  # (name, value, fields)
  note: str = ""                                # 'truncated', 'unknown opcode', ...


def gc_table(gfx: int) -> RegisterTable:
  """The GC register table of a generation (loaded on first use: the tables are large)."""
  if gfx not in _GC_TABLES:
    if gfx == 11:
      from am.generated import gc_11_0_0 as module
    else:
      from am.generated import gc_12_0_0 as module
    _GC_TABLES[gfx] = RegisterTable(module)
  return _GC_TABLES[gfx]


def parse_pm4(words, gfx: int = 11) -> list[Decoded]:
  """Split a PM4 stream into packets and name every dword."""
  words = [w & 0xFFFFFFFF for w in words]
  out, i = [], 0
  while i < len(words):
    h = words[i]
    kind = h >> 30
    if kind == 2:
      out.append(Decoded(i, "PACKET2", {"TYPE": 2}))
      i += 1
      continue
    if kind != P.TYPE3:
      count = (h >> 16) & 0x3FFF
      body = words[i + 1:i + 2 + count] if kind == 0 else []
      item = Decoded(i, f"PACKET{kind}", {"TYPE": kind, "COUNT": count, "REG": h & 0xFFFF})
      item.dwords = [(f"REG_DATA[{k}]", v, {}) for k, v in enumerate(body)]
      item.note = "" if kind == 0 else "type-1 packets do not exist on GFX11/GFX12; length unknown"
      out.append(item)
      i += 1 + len(body) if kind == 0 else 1
      continue
    header = P.HEADER.decode(h)
    opcode, count = header["IT_OPCODE"], header["COUNT"]
    nbody = 0 if (opcode == P.NOP.opcode and count == P.NOP_HEADER_ONLY_COUNT) else count + 1
    body = words[i + 1:i + 1 + nbody]
    packet = P.BY_OPCODE.get(opcode)
    item = Decoded(i, packet.name if packet else OPCODE_NAMES.get(opcode, f"PACKET3_unk_0x{opcode:02x}"), header)
    item.dwords = name_body(packet, body)
    if len(body) < nbody:
      item.note = f"truncated: {len(body)} of {nbody} body dwords"
    elif packet is None:
      item.note = "no layout for this opcode; dwords shown raw"
    out.append(item)
    i += 1 + nbody
  return out


def name_body(packet: P.Packet | None, body: list[int]) -> list[tuple[str, int, dict[str, int]]]:
  if packet is None:
    return [(f"DW{k + 1}", v, {}) for k, v in enumerate(body)]
  named = []
  for k, value in enumerate(body):
    if k < len(packet.body):
      dword = packet.body[k]
      named.append((dword.name, value, dword.decode(value) if dword.fields else {}))
    else:
      tail = packet.tail or "EXTRA"
      named.append((f"{tail}[{k - len(packet.body)}]", value, {}))
  return named


def format_pm4(words, gfx: int = 11, regs=None) -> list[str]:
  """Pretty-print a PM4 stream. `regs`: a GC RegisterBlock (am.mmio.regs) to name SET_*_REG registers."""
  lines = []
  for item in parse_pm4(words, gfx):
    extra = f"  ; {item.note}" if item.note else ""
    shader = " compute" if item.header.get("SHADER_TYPE") else ""
    if item.name == "PACKET3_NOP" and item.header["COUNT"] == P.NOP_HEADER_ONLY_COUNT:
      extra = "  ; header-only NOP" + extra
    lines.append(f"{item.offset:5d}: {item.name} (count {item.header.get('COUNT', 0)}){shader}{extra}")
    base = None
    for k, (name, value, fields) in enumerate(item.dwords):
      at = item.offset + 1 + k
      shown = describe_fields(item.name, name, fields, gfx)
      if item.name in REG_PACKETS and name == "REG_OFFSET":
        base = REG_PACKETS[item.name] + value
        shown = f" -> dword 0x{base:x}" + (f" {regs.name_at(base) or '?'}" if regs is not None else "")
      elif base is not None and name.startswith("REG_DATA["):
        shown = describe_register(regs, base + int(name[len("REG_DATA["):-1]), value)
      elif item.name == "PACKET3_DISPATCH_DIRECT" and name == "DISPATCH_INITIATOR":
        shown = " " + gc_table(gfx).spec("regCOMPUTE_DISPATCH_INITIATOR").describe(value)
      lines.append(f"{at:5d}:   {name} = 0x{value:08x}{shown}")
  return lines


def describe_fields(packet: str, dword: str, fields: dict[str, int], gfx: int) -> str:
  parts = []
  for name, value in fields.items():
    if not value and not name.startswith("unk_"):
      continue
    if name == "EVENT_TYPE":
      events = {v: k for k, v in facts.VGT_EVENT_TYPE[gfx].items()}
      parts.append(f"{name}={events.get(value, '?')}({value:#x})")
    else:
      parts.append(f"{name}={value:#x}")
  return f" {{{', '.join(parts)}}}" if parts else ""


def describe_register(regs, addr: int, value: int) -> str:
  if regs is None:
    return f" (dword 0x{addr:x})"
  name = regs.name_at(addr)
  if name is None:
    return f" (dword 0x{addr:x}, no register there)"
  return " " + regs.table.spec(name).describe(value)


# ---- SDMA ----
def sdma_length(name: str, header: int, words: list[int], i: int) -> int:
  """Dwords of the packet at words[i]: fixed by its layout, except NOP (1 + HEADER.count) and WRITE_UNTILED
  (4 + DW_3.count + 1)."""
  if name == "SDMA_PKT_NOP":
    return 1 + S.NOP.word("HEADER").decode(header)["count"]
  if name == "SDMA_PKT_WRITE_UNTILED":
    if i + 3 >= len(words):
      return len(words) - i
    return 4 + S.WRITE_UNTILED.word("DW_3").decode(words[i + 3])["count"] + 1
  return len(S.LAYOUTS[name].words)


def parse_sdma(words, version: int = 6) -> list[Decoded]:
  """Split an SDMA stream into packets. An (op, sub_op) without a layout stops the decode (its length is
  unknown); the rest is reported in that item's note."""
  words = [w & 0xFFFFFFFF for w in words]
  op_names = {v: k for k, v in S.OP.items()}
  out, i = [], 0
  while i < len(words):
    h = words[i]
    op, sub_op = h & 0xFF, (h >> 8) & 0xFF
    name = S.OPS.get((op, sub_op))
    if name is None:
      label = op_names.get(op, f"SDMA_OP_unk_{op}")
      out.append(Decoded(i, label, {"op": op, "sub_op": sub_op},
                         note=f"no layout for op {op} sub_op {sub_op}; {len(words) - i} dwords left undecoded"))
      break
    n = sdma_length(name, h, words, i)
    packet = S.LAYOUTS[name]
    item = Decoded(i, name, packet.words[0].decode(h))
    for k, value in enumerate(words[i + 1:i + n], start=1):
      if k < len(packet.words):
        w = packet.words[k]
        item.dwords.append((w.name, value, w.decode(value)))
      else:
        item.dwords.append((f"DATA{k - 4}" if name == "SDMA_PKT_WRITE_UNTILED" else f"DW{k}", value, {}))
    if i + n > len(words):
      item.note = f"truncated: {len(words) - i} of {n} dwords"
    out.append(item)
    i += n
  return out


def format_sdma(words, version: int = 6) -> list[str]:
  lines = []
  for item in parse_sdma(words, version):
    head = ", ".join(f"{k}={v:#x}" for k, v in item.header.items() if v and k not in ("op",))
    extra = f"  ; {item.note}" if item.note else ""
    lines.append(f"{item.offset:5d}: {item.name}" + (f" {{{head}}}" if head else "") + extra)
    for k, (name, value, fields) in enumerate(item.dwords):
      whole = len(fields) == 1 and fields.get(next(iter(fields))) == value  # one field spanning the dword
      shown = "" if whole else ", ".join(f"{f}={v:#x}" for f, v in fields.items() if v or f.startswith("unk_"))
      lines.append(f"{item.offset + 1 + k:5d}:   {name} = 0x{value:08x}" + (f" {{{shown}}}" if shown else ""))
  return lines
