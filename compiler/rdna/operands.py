"""Registers, inline constants and literals of RDNA3/RDNA4 source operands: the values behind a 9-bit SRC field.

Source operand encodings (RDNA3/RDNA4 ISA guides, "Scalar/Vector ALU operands"; LLVM SIDefines.h EncValues):
  0-105 SGPRs, 106/107 vcc_lo/hi, 108-123 ttmp0-15, 124 null, 125 m0, 126/127 exec_lo/hi (SPECIAL_REGS in the tables),
  128-208 inline integers 0..64 then -1..-16, 235-238 src_{shared,private}_{base,limit}, 240-247 inline floats
  0.5 -0.5 1.0 -1.0 2.0 -2.0 4.0 -4.0, 248 1/(2*pi), 253 src_scc, 255 a 32-bit literal dword after the instruction,
  256-511 VGPRs.
A 64-bit float operand's literal is the high half of the double; a 16-bit operand's literal sits in the low half.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

INLINE_INT_ZERO = 128          # 128 + n for 0..64, 192 - n for -1..-16
INLINE_FLOAT_FIRST = 240
INLINE_FLOATS = (0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 4.0, -4.0)
INV_2PI_CODE = 248
LITERAL_CODE = 255
VGPR_BASE = 256
# 1/(2*pi) as each float format rounds it (inline constant 248)
INV_2PI_BITS = {"f16": 0x3118, "bf16": 0x3E22, "f32": 0x3E22F983, "f64": 0x3FC45F306DC9C882}
INV_2PI_TEXT = {"f64": "0.15915494309189532"}
REG_FILES = ("v", "s", "ttmp")   # register files; their encodings and sizes come from the tables (REG_FILES)
# OperandType of a SRC operand -> value type the constant is read as (SIDefines.h OperandType)
VALUE_TYPES = (("V2INT16", "v2i16"), ("V2FP16", "v2f16"), ("V2BF16", "v2bf16"), ("INT16", "i16"), ("FP16", "f16"),
               ("BF16", "bf16"), ("INT64", "i64"), ("FP64", "f64"), ("INT32", "i32"), ("FP32", "f32"),
               ("SPLIT_BARRIER", "i32"))
REG_RE = re.compile(r"^(v|s|ttmp)(?:(\d+)|\[(\d+)(?::(\d+))?\])(\.[lh])?$")


class OperandError(ValueError):
  """An operand that does not fit the instruction form being tried (the assembler then tries the next form)."""


@dataclass(frozen=True)
class Reg:
  """A register operand: file 'v'/'s'/'ttmp' (index in that file) or a special register name; bits 16..1024.

  16-bit VGPR halves (v5.l / v5.h) have bits=16 and index = 2*n + hi.
  """
  file: str
  index: int
  bits: int = 32

  def __str__(self) -> str:
    if self.file not in REG_FILES:
      return self.file
    if self.bits == 16:
      return f"{self.file}{self.index >> 1}.{'h' if self.index & 1 else 'l'}"
    count = self.bits // 32
    if count == 1:
      return f"{self.file}{self.index}"
    return f"{self.file}[{self.index}:{self.index + count - 1}]"


def v(index: int, count: int = 1) -> Reg:
  """VGPR v<index> or the tuple v[index:index+count-1]."""
  return Reg("v", index, 32 * count)


def s(index: int, count: int = 1) -> Reg:
  """SGPR s<index> or the tuple s[index:index+count-1]."""
  return Reg("s", index, 32 * count)


def ttmp(index: int, count: int = 1) -> Reg:
  return Reg("ttmp", index, 32 * count)


def parse_reg(text: str, target) -> Reg | None:
  """Parse register syntax: v1, s[2:3], ttmp[4:7], v[8], v1.l, vcc, exec_lo, null, m0, ...; None if not a register."""
  m = REG_RE.match(text)
  if m:
    file = m.group(1)
    lo = int(m.group(2) if m.group(2) is not None else m.group(3))
    hi = int(m.group(4)) if m.group(4) is not None else lo
    if hi < lo or hi >= target.reg_files[file][1]:
      raise OperandError(f"bad register range {text!r}")
    if m.group(5):
      if hi != lo or file != "v":
        raise OperandError(f"bad 16-bit register {text!r}")
      return Reg("v", 2 * lo + (m.group(5) == ".h"), 16)
    return Reg(file, lo, 32 * (hi - lo + 1))
  name = SPECIAL_ALIASES.get(text, text)
  for bits in (32, 64):
    if f"{name}:{bits}" in target.special_regs:
      return Reg(name, 0, 64 if f"{name}:64" in target.special_regs and name in WIDE_SPECIALS else bits)
  return None


# 64-bit names (vcc, exec, ...) vs 32-bit (vcc_lo); src_shared_base and friends are listed as both in SReg_32/SReg_64
WIDE_SPECIALS = ("vcc", "exec")
# Alternative spellings LLVM's parser accepts (AMDGPUAsmParser getSpecialRegForName)
SPECIAL_ALIASES = {"shared_base": "src_shared_base", "shared_limit": "src_shared_limit",
                   "private_base": "src_private_base", "private_limit": "src_private_limit", "scc": "src_scc"}


def reg_allowed(reg: Reg, regclass: str, target) -> bool:
  groups, specials = target.reg_classes[regclass]
  if reg.file not in REG_FILES:
    return any(name.split(":")[0] == reg.file for name in specials) and class_bits(regclass, target) in (reg.bits, 0)
  for file, bits, first, last, step in groups:
    if file == reg.file and bits == reg.bits and first <= reg.index <= last and (reg.index - first) % step == 0:
      return True
  return False


def class_bits(regclass: str, target) -> int:
  groups, specials = target.reg_classes[regclass]
  if groups:
    return groups[0][1]
  return int(specials[0].split(":")[1]) if specials else 0


def special_bits(reg: Reg, regclass: str, target) -> int:
  """Width a special register has in this class (src_shared_base is 32-bit in SReg_32, 64-bit in SReg_64)."""
  groups, specials = target.reg_classes[regclass]
  widths = [int(n.split(":")[1]) for n in specials if n.split(":")[0] == reg.file]
  return widths[0] if widths else reg.bits


def reg_encoding(reg: Reg, target) -> int:
  """Hardware operand encoding (9-bit SRC space; VGPRs 256+; 16-bit Lo128 halves set bit 7 for .h)."""
  if reg.file not in REG_FILES:
    return target.special_regs[f"{reg.file}:{reg.bits if f'{reg.file}:{reg.bits}' in target.special_regs else 32}"]
  if reg.bits == 16:
    # 16-bit VGPR halves in Lo128 fields: index in bits 6:0, hi half in bit 7 (getMachineOpValueT16Lo128)
    return VGPR_BASE + (reg.index >> 1) + ((reg.index & 1) << 7)
  return target.reg_files[reg.file][0] + reg.index


def reg_from_encoding(code: int, regclass: str, target) -> Reg | None:
  """A register field's code -> the register of `regclass` it names, or None. VGPR-only fields (8 bits) store the
  VGPR number without the 256 of the 9-bit source space."""
  groups, specials = target.reg_classes[regclass]
  files = {g[0] for g in groups}
  if files == {"v"} and not specials:
    code |= VGPR_BASE
  if code >= VGPR_BASE:
    if "v" not in files:
      return None
    vbits = [g[1] for g in groups if g[0] == "v"][0]
    if vbits == 16:
      return Reg("v", 2 * (code & 0x7F) + (code >> 7 & 1), 16)
    return Reg("v", code - VGPR_BASE, vbits)
  for file in ("s", "ttmp"):
    base, count = target.reg_files[file]
    if file in files and base <= code < base + count:
      fbits = [g[1] for g in groups if g[0] == file][0]
      return Reg(file, code - base, fbits)
  for name in specials:
    if target.special_regs[name] == code:
      reg_name, reg_bits = name.split(":")
      return Reg(reg_name, 0, int(reg_bits))
  return None


# ---- constants -------------------------------------------------------------------------------------------------------

def value_type(optype: str) -> str:
  for key, vtype in VALUE_TYPES:
    if key in optype:
      return vtype
  return "i32"


def float_bits(x: float, vtype: str) -> int:
  """IEEE bits of x in the operand's float format (round to nearest even); bf16 from the f32 bits."""
  if vtype in ("f16", "v2f16"):
    return struct.unpack("<H", struct.pack("<e", x))[0]
  if vtype in ("bf16", "v2bf16"):
    f32 = struct.unpack("<I", struct.pack("<f", x))[0]
    return (f32 + 0x7FFF + (f32 >> 16 & 1)) >> 16
  if vtype in ("f64", "i64"):
    return struct.unpack("<Q", struct.pack("<d", x))[0]
  return struct.unpack("<I", struct.pack("<f", x))[0]


def float_kind(vtype: str) -> str:
  return {"f16": "f16", "v2f16": "f16", "bf16": "bf16", "v2bf16": "bf16", "f64": "f64", "i64": "f64"}.get(vtype, "f32")


def inline_float_code(bits: int, kind: str) -> int | None:
  """Inline constant code whose value, in float format `kind`, has these bits."""
  for i, x in enumerate(INLINE_FLOATS):
    if float_bits(x, kind) == bits:
      return INLINE_FLOAT_FIRST + i
  if INV_2PI_BITS[kind] == bits:
    return INV_2PI_CODE
  return None


def inline_int_code(n: int) -> int | None:
  if 0 <= n <= 64:
    return INLINE_INT_ZERO + n
  if -16 <= n <= -1:
    return INLINE_INT_ZERO + 64 - n
  return None


def encode_int(n: int, vtype: str) -> tuple:
  """Integer constant -> (SRC code, literal or None).

  Raises:
    OperandError: the value does not fit the operand.
  """
  code = inline_int_code(n)
  if code is not None:
    return code, None
  if vtype in ("i16", "f16", "bf16"):
    if not -0x8000 <= n <= 0xFFFF:
      raise OperandError(f"{n:#x} does not fit a 16-bit operand")
    bits = n & 0xFFFF
    inline = inline_float_code(bits, float_kind(vtype)) if vtype != "i16" else None
    return (inline, None) if inline is not None else (LITERAL_CODE, bits)
  if vtype in ("f64", "i64"):
    if -0x80000000 <= n <= 0xFFFFFFFF:
      return LITERAL_CODE, n & 0xFFFFFFFF
    bits = n & 0xFFFFFFFFFFFFFFFF
    inline = inline_float_code(bits, "f64")
    if inline is not None:
      return inline, None
    if vtype == "f64" and bits & 0xFFFFFFFF == 0:
      return LITERAL_CODE, bits >> 32
    raise OperandError(f"{n:#x} does not fit a 64-bit operand's 32-bit literal")
  if not -0x80000000 <= n <= 0xFFFFFFFF:
    raise OperandError(f"{n:#x} does not fit a 32-bit operand")
  bits = n & 0xFFFFFFFF
  if vtype.startswith("v2"):
    # packed: an inline constant is read into the low half; a value whose high half is 0 may use it
    inline = None
    if bits >> 16 == 0 and vtype != "v2i16":
      inline = inline_float_code(bits, float_kind(vtype))
    return (inline, None) if inline is not None else (LITERAL_CODE, bits)
  inline = inline_float_code(bits, "f32")
  return (inline, None) if inline is not None else (LITERAL_CODE, bits)


def encode_float(x: float, vtype: str) -> tuple:
  """Floating-point constant -> (SRC code, literal or None); integer operands read it as f32 bits.

  Raises:
    OperandError: the value cannot be encoded for this operand.
  """
  if x == 0.0 and math.copysign(1.0, x) > 0:
    return INLINE_INT_ZERO, None
  kind = float_kind(vtype) if vtype not in ("i16", "v2i16", "i32") else "f32"
  bits = float_bits(x, kind)
  inline = inline_float_code(bits, kind)
  if inline is None and kind == "bf16" and float_bits(x, "f32") == INV_2PI_BITS["f32"]:
    inline = INV_2PI_CODE   # 0.15915494 rounds to bf16 0x3e23, yet llvm-mc reads it as the inline 1/(2*pi)
  if inline is not None:
    return inline, None
  if vtype == "i64":
    raise OperandError(f"{x} is not an inline constant of a 64-bit integer operand")
  if kind == "f64":
    return LITERAL_CODE, bits >> 32
  return LITERAL_CODE, bits


def format_inline(code: int, vtype: str) -> str | None:
  """Printed form of an inline constant code, or None if the code is not one."""
  if INLINE_INT_ZERO <= code <= INLINE_INT_ZERO + 64:
    return str(code - INLINE_INT_ZERO)
  if INLINE_INT_ZERO + 65 <= code <= INLINE_INT_ZERO + 80:
    return str(INLINE_INT_ZERO + 64 - code)
  if INLINE_FLOAT_FIRST <= code < INLINE_FLOAT_FIRST + len(INLINE_FLOATS):
    return repr(INLINE_FLOATS[code - INLINE_FLOAT_FIRST])
  if code == INV_2PI_CODE:
    return INV_2PI_TEXT.get(float_kind(vtype), "0.15915494")
  return None


def format_literal(value: int, vtype: str) -> str:
  if vtype in ("i16", "f16", "bf16"):
    value &= 0xFFFF
  return f"{value:#x}"
