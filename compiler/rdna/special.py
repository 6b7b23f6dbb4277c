"""Symbolic 16-bit immediates: s_waitcnt, s_waitcnt_depctr / s_wait_alu, s_delay_alu, hwreg(), sendmsg(),
ds_swizzle offsets, buffer formats, cache policy (glc/slc/dlc on gfx11, th:/scope: on gfx12) and s_version.

Each kind has `parse_<kind>(ts, target, instr) -> int` and `format_<kind>(value, target, instr) -> str`; the names and
bit layouts come from the generated tables (WAITCNT, DEPCTR, HWREG, SENDMSG, UFMT, CPOL, ...), the print rules follow
LLVM's AMDGPUInstPrinter so the disassembly matches `llvm-mc --disassemble` text.
"""
from __future__ import annotations

from .lexer import AsmSyntaxError, TokenStream, parse_int


def _field(value: int, shift: int, width: int) -> int:
  return value >> shift & ((1 << width) - 1)


def _items(ts: TokenStream, names: tuple) -> list:
  """name(arg) items separated by spaces, '&' or ','; stops at the first token that starts no item."""
  items = []
  while ts.peek_text().lower() in names and ts.peek_text(1) == "(":
    name = ts.next().text.lower()
    ts.expect("(")
    arg = ts.next() if ts.peek() is not None and ts.peek().kind == "id" else None
    value = arg.text if arg is not None else parse_int(ts)
    ts.expect(")")
    items.append((name, value))
    if ts.peek_text() in ("&", ",") and ts.peek_text(1).lower() in names:
      ts.next()
  return items


# ---- s_waitcnt (vmcnt / expcnt / lgkmcnt) ----------------------------------------------------------------------------

def waitcnt_fields(target) -> dict:
  w = target.sym("WAITCNT")
  return {"vmcnt": (w["VmcntBitShiftLo"], w["VmcntBitWidthLo"]), "expcnt": (w["ExpcntBitShift"], w["ExpcntBitWidth"]),
          "lgkmcnt": (w["LgkmcntBitShift"], w["LgkmcntBitWidth"])}


def parse_waitcnt(ts: TokenStream, target, instr) -> int:
  fields = waitcnt_fields(target)
  if ts.peek() is not None and ts.peek().kind == "num":
    return parse_int(ts) & 0xFFFF
  value = 0
  for shift, width in fields.values():
    value |= ((1 << width) - 1) << shift
  names = tuple(fields) + tuple(f"{n}_sat" for n in fields)
  items = _items(ts, names)
  if not items:
    raise AsmSyntaxError("expected vmcnt(N) / expcnt(N) / lgkmcnt(N) or an integer")
  for name, count in items:
    shift, width = fields[name.removesuffix("_sat")]
    if name.endswith("_sat"):
      count = min(count, (1 << width) - 1)
    elif not 0 <= count < 1 << width:
      raise AsmSyntaxError(f"{name}({count}) does not fit {width} bits")
    value = value & ~(((1 << width) - 1) << shift) | count << shift
  return value


def format_waitcnt(value: int, target, instr) -> str:
  fields = waitcnt_fields(target)
  counts = {name: _field(value, shift, width) for name, (shift, width) in fields.items()}
  defaults = {name: counts[name] == (1 << width) - 1 for name, (_, width) in fields.items()}
  print_all = all(defaults.values())
  return " ".join(f"{name}({counts[name]})" for name in fields if print_all or not defaults[name])


# ---- s_waitcnt_depctr / s_wait_alu -----------------------------------------------------------------------------------

def depctr_default(target) -> int:
  return sum(dflt << offset for _, _, dflt, offset, _ in target.sym("DEPCTR"))


def parse_depctr(ts: TokenStream, target, instr) -> int:
  if ts.peek() is not None and ts.peek().kind == "num":
    return parse_int(ts) & 0xFFFF
  table = {name: (mx, offset, width) for name, mx, _, offset, width in target.sym("DEPCTR")}
  items = _items(ts, tuple(table))
  if not items:
    raise AsmSyntaxError(f"expected one of {', '.join(table)} or an integer")
  value = depctr_default(target)
  for name, count in items:
    mx, offset, width = table[name]
    if not 0 <= count <= mx:
      raise AsmSyntaxError(f"{name}({count}) is out of range 0..{mx}")
    value = value & ~(((1 << width) - 1) << offset) | count << offset
  return value


def format_depctr(value: int, target, instr) -> str:
  table = target.sym("DEPCTR")
  used = sum(((1 << width) - 1) << offset for _, _, _, offset, width in table)
  vals = [(name, _field(value, offset, width), dflt, mx) for name, mx, dflt, offset, width in table]
  if value & ~used & 0xFFFF or any(val > mx for _, val, _, mx in vals):
    return f"{value:#x}"
  non_default = any(val != dflt for _, val, dflt, _ in vals)
  return " ".join(f"{name}({val})" for name, val, dflt, _ in vals if val != dflt or not non_default)


# ---- s_delay_alu -----------------------------------------------------------------------------------------------------

DELAY_FIELDS = (("instid0", 0, 4), ("instskip", 4, 3), ("instid1", 7, 4))   # SIMM16 layout (RDNA3 ISA, S_DELAY_ALU)


def parse_delay_alu(ts: TokenStream, target, instr) -> int:
  if ts.peek() is not None and ts.peek().kind == "num":
    return parse_int(ts) & 0xFFFF
  ids, skips = target.sym("DELAY_ALU_INSTID"), target.sym("DELAY_ALU_INSTSKIP")
  value = 0
  while True:
    name = ts.next().text.lower()
    spec = [f for f in DELAY_FIELDS if f[0] == name]
    if not spec:
      raise AsmSyntaxError(f"expected instid0/instskip/instid1, found {name!r}")
    ts.expect("(")
    arg = ts.next().text
    ts.expect(")")
    names = skips if name == "instskip" else ids
    if arg not in names:
      raise AsmSyntaxError(f"unknown {name} value {arg!r}; expected one of {', '.join(names)}")
    value |= names.index(arg) << spec[0][1]
    if not ts.accept("|"):
      return value


def format_delay_alu(value: int, target, instr) -> str:
  ids, skips = target.sym("DELAY_ALU_INSTID"), target.sym("DELAY_ALU_INSTSKIP")
  parts = []
  for name, shift, width in DELAY_FIELDS:
    field = _field(value, shift, width)
    names = skips if name == "instskip" else ids
    if field:
      label = names[field] if field < len(names) else f"/* invalid {name.rstrip('01')} value */"
      parts.append(f"{name}({label})")
  return " | ".join(parts) if parts else "0"


# ---- hwreg(...) ------------------------------------------------------------------------------------------------------

def parse_hwreg(ts: TokenStream, target, instr) -> int:
  if not ts.accept("hwreg"):
    return parse_int(ts) & 0xFFFF
  (id_hi, id_lo, _), (off_hi, off_lo, off_dflt), (size_hi, size_lo, size_dflt) = _hwreg_fields(target)
  ts.expect("(")
  tok = ts.peek()
  if tok is not None and tok.kind == "id":
    names = {name: code for code, name in target.sym("HWREG").items()}
    if tok.text not in names:
      raise AsmSyntaxError(f"unknown hardware register {tok.text!r} on {target.name}")
    ts.next()
    reg = names[tok.text]
  else:
    reg = parse_int(ts)
  offset, size = off_dflt, size_dflt
  if ts.accept(","):
    offset = parse_int(ts)
    ts.expect(",")
    size = parse_int(ts)
  ts.expect(")")
  if not (0 <= reg < 1 << (id_hi - id_lo + 1) and 0 <= offset < 32 and 1 <= size <= 32 and offset + size <= 32):
    raise AsmSyntaxError(f"hwreg({reg}, {offset}, {size}) is out of range")
  return reg << id_lo | offset << off_lo | (size - 1) << size_lo


def _hwreg_fields(target) -> tuple:
  f = target.sym("HWREG_FIELDS")
  return f["HwregId"], f["HwregOffset"], f["HwregSize"]


def format_hwreg(value: int, target, instr) -> str:
  (id_hi, id_lo, _), (off_hi, off_lo, off_dflt), (size_hi, size_lo, size_dflt) = _hwreg_fields(target)
  reg = _field(value, id_lo, id_hi - id_lo + 1)
  offset = _field(value, off_lo, off_hi - off_lo + 1)
  size = _field(value, size_lo, size_hi - size_lo + 1) + 1
  name = target.sym("HWREG").get(reg, str(reg))
  if offset == off_dflt and size == size_dflt:
    return f"hwreg({name})"
  return f"hwreg({name}, {offset}, {size})"


# ---- sendmsg(...) ----------------------------------------------------------------------------------------------------

def parse_sendmsg(ts: TokenStream, target, instr) -> int:
  if not ts.accept("sendmsg"):
    return parse_int(ts) & 0xFFFF
  enum = target.sym("SENDMSG_ENUM")
  ts.expect("(")
  msg = _symbol_or_int(ts, {name: code for code, name in target.sym("SENDMSG").items()}, "message")
  op = stream = 0
  if ts.accept(","):
    ops = {name: code for code, name in target.sym("SYSMSG").items()}
    ops.update({name: enum[name.replace("GS_OP_", "OP_GS_")] for name in
                ("GS_OP_NOP", "GS_OP_CUT", "GS_OP_EMIT", "GS_OP_EMIT_CUT")})
    op = _symbol_or_int(ts, ops, "message operation")
    if ts.accept(","):
      stream = parse_int(ts)
  ts.expect(")")
  return msg | op << enum["OP_SHIFT_"] | stream << 8


def _symbol_or_int(ts: TokenStream, names: dict, what: str) -> int:
  tok = ts.peek()
  if tok is not None and tok.kind == "id":
    if tok.text not in names:
      raise AsmSyntaxError(f"unknown {what} {tok.text!r}")
    ts.next()
    return names[tok.text]
  return parse_int(ts)


def format_sendmsg(value: int, target, instr) -> str:
  # gfx11+: the message id is the low 8 bits, operation and stream are gone (AMDGPUBaseInfo.cpp decodeMsg);
  # MSG_SYSMSG still requires an operation, which gfx11+ cannot encode, so it prints numerically.
  enum = target.sym("SENDMSG_ENUM")
  msg = value & enum["ID_MASK_GFX11Plus_"]
  name = target.sym("SENDMSG").get(msg)
  if name and name != "MSG_SYSMSG":
    return f"sendmsg({name})"
  if value == msg:
    return f"sendmsg({msg}, 0, 0)"
  return str(value)


# ---- ds_swizzle offset:swizzle(...) ---------------------------------------------------------------------------------

def parse_swizzle(ts: TokenStream, target, instr) -> int:
  e = target.sym("SWIZZLE_ENUM")
  if not ts.accept("swizzle"):
    return parse_int(ts) & 0xFFFF
  ts.expect("(")
  mode = ts.next().text
  args = []
  while ts.accept(","):
    tok = ts.peek()
    args.append(ts.next().text.strip('"') if tok is not None and tok.kind == "str" else parse_int(ts))
  ts.expect(")")
  mask = e["BITMASK_MASK"]
  if mode == "QUAD_PERM":
    return e["QUAD_PERM_ENC"] | sum(lane << (e["LANE_SHIFT"] * i) for i, lane in enumerate(args))
  if mode == "SWAP":
    return _bitmask(e, mask, 0, args[0])
  if mode == "REVERSE":
    return _bitmask(e, mask, 0, args[0] - 1)
  if mode == "BROADCAST":
    return _bitmask(e, mask - args[0] + 1, args[1], 0)
  if mode == "BITMASK_PERM":
    # one character per lane-id bit, most significant first: 0 / 1 force the bit, p keeps it, i inverts it
    and_mask = or_mask = xor_mask = 0
    for i, ch in enumerate(reversed(args[0])):
      and_mask |= (ch in "pi") << i
      or_mask |= (ch == "1") << i
      xor_mask |= (ch == "i") << i
    return _bitmask(e, and_mask, or_mask, xor_mask)
  raise AsmSyntaxError(f"unknown swizzle mode {mode!r}")


def _bitmask(e: dict, and_mask: int, or_mask: int, xor_mask: int) -> int:
  return (e["BITMASK_PERM_ENC"] | and_mask << e["BITMASK_AND_SHIFT"] | or_mask << e["BITMASK_OR_SHIFT"]
          | xor_mask << e["BITMASK_XOR_SHIFT"])


def format_swizzle(value: int, target, instr) -> str:
  e, ids = target.sym("SWIZZLE_ENUM"), target.sym("SWIZZLE")
  if value & e["QUAD_PERM_ENC_MASK"] == e["QUAD_PERM_ENC"]:
    lanes = [str(value >> (e["LANE_SHIFT"] * i) & e["LANE_MASK"]) for i in range(e["LANE_NUM"])]
    return f"swizzle({ids[e['ID_QUAD_PERM']]},{','.join(lanes)})"
  if value & e["BITMASK_PERM_ENC_MASK"] != e["BITMASK_PERM_ENC"]:
    return str(value)
  mx = e["BITMASK_MAX"]
  and_mask = value >> e["BITMASK_AND_SHIFT"] & e["BITMASK_MASK"]
  or_mask = value >> e["BITMASK_OR_SHIFT"] & e["BITMASK_MASK"]
  xor_mask = value >> e["BITMASK_XOR_SHIFT"] & e["BITMASK_MASK"]
  if and_mask == mx and or_mask == 0 and bin(xor_mask).count("1") == 1:
    return f"swizzle({ids[e['ID_SWAP']]},{xor_mask})"
  if and_mask == mx and or_mask == 0 and xor_mask > 0 and (xor_mask + 1) & xor_mask == 0:
    return f"swizzle({ids[e['ID_REVERSE']]},{xor_mask + 1})"
  group = mx - and_mask + 1
  if group > 1 and group & (group - 1) == 0 and or_mask < group and xor_mask == 0:
    return f"swizzle({ids[e['ID_BROADCAST']]},{group},{or_mask})"
  # each lane-id bit: what lanes with that bit 0 and 1 read (printSwizzleBitmask): constant 0/1, kept p, inverted i
  probe0 = (or_mask ^ xor_mask)
  probe1 = ((e["BITMASK_MASK"] & and_mask) | or_mask) ^ xor_mask
  chars = []
  for i in reversed(range(e["BITMASK_WIDTH"])):
    p0, p1 = probe0 >> i & 1, probe1 >> i & 1
    chars.append(("1" if p0 else "0") if p0 == p1 else ("i" if p0 else "p"))
  return f'swizzle({ids[e["ID_BITMASK_PERM"]]},"{"".join(chars)}")'


# ---- buffer format ---------------------------------------------------------------------------------------------------

def parse_format(ts: TokenStream, target, instr) -> int:
  """format:[BUF_FMT_*] | format:[BUF_DATA_FORMAT_*, BUF_NUM_FORMAT_*] | format:N (after the `format:` prefix)."""
  if not ts.accept("["):
    return parse_int(ts)
  ufmt, dfmt_names, nfmt_names = target.sym("UFMT"), target.sym("DFMT"), target.sym("NFMT")
  enum = target.sym("FORMAT_ENUM")
  dfmt, nfmt, unified = enum["DFMT_DEFAULT"], enum["NFMT_DEFAULT"], None
  while True:
    name = ts.next().text
    if name in ufmt:
      unified = ufmt.index(name)
    elif name in dfmt_names:
      dfmt = dfmt_names.index(name)
    elif name in nfmt_names and name:
      nfmt = nfmt_names.index(name)
    else:
      raise AsmSyntaxError(f"unknown buffer format {name!r}")
    if not ts.accept(","):
      break
  ts.expect("]")
  if unified is not None:
    return unified
  legacy = dfmt << enum["DFMT_SHIFT"] | nfmt << enum["NFMT_SHIFT"]
  table = target.sym("DFMT_NFMT_TO_UFMT")
  if legacy not in table:
    raise AsmSyntaxError(f"format [{dfmt_names[dfmt]}, {nfmt_names[nfmt]}] has no unified gfx11+ encoding")
  return table.index(legacy)


def format_format(value: int, target, instr) -> str:
  if value == target.sym("FORMAT_ENUM")["UFMT_DEFAULT"]:
    return ""
  ufmt = target.sym("UFMT")
  if value < len(ufmt) and ufmt[value]:
    return f" format:[{ufmt[value]}]"
  return f" format:{value}"


# ---- cache policy ----------------------------------------------------------------------------------------------------

CPOL_GFX11_BITS = ("glc", "slc", "dlc")


def parse_cpol_item(ts: TokenStream, target, instr, value: int) -> int | None:
  """One cache-policy word (glc / slc / dlc on gfx11; th:X / scope:X on gfx12) added to value, or None."""
  c = target.sym("CPOL")
  word = ts.peek_text().lower()
  if target.generation < 12:
    if word in CPOL_GFX11_BITS:
      ts.next()
      return value | c[word.upper()]
    return None
  if word not in ("th", "scope") or ts.peek_text(1) != ":":
    return None
  ts.next()
  ts.next()
  tok = ts.peek()
  if word == "scope":
    if tok is not None and tok.kind == "id":
      name = ts.next().text
      if name not in ("SCOPE_CU", "SCOPE_SE", "SCOPE_DEV", "SCOPE_SYS"):
        raise AsmSyntaxError(f"unknown scope {name!r}")
      return value & ~c["SCOPE"] | c[name]
    return value & ~c["SCOPE"] | parse_int(ts) << 3
  if tok is not None and tok.kind == "id":
    return value & ~c["TH"] | th_value(ts.next().text, c)
  return value & ~c["TH"] | parse_int(ts)


def th_value(name: str, c: dict) -> int:
  """TH_LOAD_NT / TH_STORE_RT_WB / TH_ATOMIC_NT_RETURN / TH_ATOMIC_CASCADE_RT ... -> th bits (SIDefines.h CPol)."""
  for prefix in ("TH_LOAD_", "TH_STORE_"):
    if name.startswith(prefix):
      rest = name[len(prefix):]
      if rest in ("LU", "RT_WB", "BYPASS"):
        return c["TH_LU"]
      if f"TH_{rest}" in c:
        return c[f"TH_{rest}"]
  if name.startswith("TH_ATOMIC_"):
    value = 0
    for part, bit in (("RETURN", "TH_ATOMIC_RETURN"), ("NT", "TH_ATOMIC_NT"), ("CASCADE", "TH_ATOMIC_CASCADE")):
      if part in name[len("TH_ATOMIC_"):].split("_"):
        value |= c[bit]
    return value
  raise AsmSyntaxError(f"unknown temporal hint {name!r}")


def format_cpol(value: int, target, instr) -> str:
  c = target.sym("CPOL")
  if target.generation < 12:
    return "".join(f" {w}" for w in CPOL_GFX11_BITS if value & c[w.upper()])
  th, scope = value & c["TH"], value & c["SCOPE"]
  out = ""
  if th:
    out += " th:" + th_name(th, scope, instr, c)
  if scope:
    out += " scope:" + {c["SCOPE_SE"]: "SCOPE_SE", c["SCOPE_DEV"]: "SCOPE_DEV", c["SCOPE_SYS"]: "SCOPE_SYS"}[scope]
  return out


def th_name(th: int, scope: int, instr, c: dict) -> str:
  # AMDGPUInstPrinter::printTH: atomics name their RETURN / NT / CASCADE bits; loads and stores name the policy
  if "IsAtomicRet" in instr.flags or "IsAtomicNoRet" in instr.flags:
    if th & c["TH_ATOMIC_CASCADE"]:
      if scope >= c["SCOPE_DEV"]:
        return "TH_ATOMIC_CASCADE" + ("_NT" if th & c["TH_ATOMIC_NT"] else "_RT")
      return f"TH_ATOMIC_{th:#x}"
    if th & c["TH_ATOMIC_NT"]:
      return "TH_ATOMIC_NT" + ("_RETURN" if th & c["TH_ATOMIC_RETURN"] else "")
    return "TH_ATOMIC_RETURN" if th & c["TH_ATOMIC_RETURN"] else f"TH_ATOMIC_{th:#x}"
  store = "mayStore" in instr.flags
  if not store and th == c["TH_RESERVED"]:
    return f"{th:#x}"
  names = {c["TH_NT"]: "NT", c["TH_HT"]: "HT", c["TH_NT_RT"]: "NT_RT", c["TH_RT_NT"]: "RT_NT",
           c["TH_NT_HT"]: "NT_HT", c["TH_NT_WB"]: "NT_WB"}
  if th == c["TH_LU"]:
    rest = "BYPASS" if scope == c["SCOPE_SYS"] else "RT_WB" if store else "LU"
  else:
    rest = names[th]
  return ("TH_STORE_" if store else "TH_LOAD_") + rest


# ---- s_version -------------------------------------------------------------------------------------------------------

def parse_version(ts: TokenStream, target, instr) -> int:
  names = {name: code for code, name in target.sym("UC_VERSIONS").items()}
  names.update(target.sym("UC_VERSION_BITS"))
  value = 0
  while True:
    while ts.accept("("):   # an OR chain, possibly parenthesized the way MCBinaryExpr prints: (A|B)|C
      pass
    tok = ts.peek()
    if tok is not None and tok.kind == "id" and tok.text in names:
      ts.next()
      value |= names[tok.text]
    else:
      value |= parse_int(ts)
    while ts.accept(")"):
      pass
    if not ts.accept("|"):
      return value & 0xFFFF


def format_version(value: int, target, instr) -> str:
  bits = target.sym("UC_VERSION_BITS")
  version = value & 0xFF
  flags = [name for name, bit in bits.items() if value & bit]
  if version | sum(bits[n] for n in flags) != value:
    return f"{value:#x}" if value > 64 else str(value)
  expr = target.sym("UC_VERSIONS").get(version, str(version))
  for flag in flags:   # MCBinaryExpr prints a nested OR as (A|B)|C
    expr = f"({expr})|{flag}" if "|" in expr else f"{expr}|{flag}"
  return expr
