"""Generate compiler/rdna/generated/{gfx11,gfx12}.py, the RDNA3/RDNA4 instruction tables, from LLVM's AMDGPU TableGen.

Inputs (Debian bookworm, LLVM 19.1.7; nothing of them is committed; run it all in /tmp):

  cat > /etc/apt/sources.list.d/debian-src.sources <<'EOF'
  Types: deb-src
  URIs: http://deb.debian.org/debian
  Suites: bookworm
  Components: main
  Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
  EOF
  apt-get update && apt-get install -y --no-install-recommends llvm-19     # llvm-tblgen-19, llvm-mc-19
  cd /tmp && apt-get source --download-only llvm-toolchain-19              # 1:19.1.7-3~deb12u1, 164 MB
  tar xf llvm-toolchain-19_19.1.7.orig.tar.xz --wildcards '*/llvm/include/*' '*/llvm/lib/Target/AMDGPU/*' \\
      '*/llvm/test/MC/AMDGPU/*' '*/llvm/test/MC/Disassembler/AMDGPU/*'
  cd llvm-toolchain-19_19.1.7/llvm/lib/Target/AMDGPU
  llvm-tblgen-19 -dump-json -I ../../../include -I . AMDGPU.td -o /tmp/amdgpu.json      # ~1 min, 423 MB
  cd - && python tools/gen_rdna_tables.py /tmp/amdgpu.json /tmp/llvm-toolchain-19_19.1.7/llvm/lib/Target/AMDGPU

(~3 GB of memory to load the JSON. tests/test_rdna_llvm_vectors.py reads llvm/test/MC/AMDGPU from that same
/tmp/llvm-toolchain-19_19.1.7 tree when it is there.)

(No Debian patch touches llvm/lib/Target/AMDGPU, so the orig tarball is the source.)

What is kept, per target (gfx1100 = RDNA3, gfx1201 = RDNA4), wave32, LLVM 19's default true16 mode (fake16):
- every real encoding record of the target's decoder namespace (GFX11 / GFX11_FAKE16, GFX12 / GFX12_FAKE16) whose
  assembler predicates hold for the processor's feature closure, in the parsable variants Default and VOP3, minus
  DPP/SDWA, image, export, LDS-direct/param and interpolation encodings (not compute formats for this slice);
- per instruction: record name, encoding family, printed mnemonic, operand syntax template, size, fixed opcode bits
  (value, mask), operands (name, operand type) and the bit fields each operand variable occupies in `Inst`;
- operand types (kind + register class + parameters), register classes (register files/ranges and special registers),
  special register encodings;
- symbolic operand tables from the C++ sources next to the .td files (the parser/printer share them):
  Utils/AMDGPUAsmUtils.cpp (hwreg, sendmsg, depctr, buffer formats, swizzle), SIDefines.h (modifier, cache-policy,
  omod and message enums), Utils/AMDGPUBaseInfo.cpp (s_waitcnt field layout), MCTargetDesc/AMDGPUInstPrinter.cpp
  (s_delay_alu names).

Usage: python tools/gen_rdna_tables.py AMDGPU_JSON AMDGPU_SOURCE_DIR [--version 1:19.1.7-3~deb12u1]
The output depends only on the inputs (sorted, no timestamps): rerunning reproduces it byte for byte.
"""
from __future__ import annotations

import argparse
import ast
import json
import operator
import os
import re

OUT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "compiler", "rdna", "generated")
TARGETS = (("gfx11", "gfx1100", "GFX11", 11), ("gfx12", "gfx1201", "GFX12", 12))
# llvm-mc's default for gfx10+ without -mattr: wave32 (AMDGPUSubtarget, "wavefrontsize32" when neither size is given)
DEFAULT_FEATURES = ("FeatureWavefrontSize32",)
SKIP_FLAGS = ("DPP", "SDWA", "MIMG", "VIMAGE", "VSAMPLE", "EXP", "LDSDIR", "VINTERP", "VINTRP", "isPseudo",
              "isCodeGenOnly", "isAsmParserOnly")
# Special registers the AMDGPU asm parser rejects on gfx11/gfx12 ("register not available on this GPU", "execz and
# vccz are not supported", "lds_direct is not supported"): AMDGPUAsmParser::isRegisterAvailable / validateOperands.
UNAVAILABLE = {"flat_scratch", "flat_scratch_lo", "flat_scratch_hi", "xnack_mask", "xnack_mask_lo", "xnack_mask_hi",
               "tba", "tba_lo", "tba_hi", "tma", "tma_lo", "tma_hi", "src_pops_exiting_wave_id", "src_vccz",
               "src_execz", "src_lds_direct"}


class Records:
  """The TableGen JSON dump: records by name plus `!instanceof` class lists."""

  def __init__(self, data: dict):
    self.data = data
    self.instanceof = data["!instanceof"]

  def __getitem__(self, name: str) -> dict:
    return self.data[name]


def feature_closure(recs: Records, cpu: str) -> set:
  procs = [recs[n] for n in recs.instanceof["Processor"] if recs[n]["Name"] == cpu]
  todo = [f["def"] for f in procs[0]["Features"]] + list(DEFAULT_FEATURES)
  out: set = set()
  while todo:
    feature = todo.pop()
    if feature not in out:
      out.add(feature)
      todo += [x["def"] for x in recs[feature].get("Implies", [])]
  return out


def eval_cond(dag, features: set) -> bool:
  if dag is None:
    return True
  if dag.get("kind") == "def":
    return dag["def"] in features
  args = [a[0] for a in dag["args"]]
  op = dag["operator"]["def"]
  if op == "all_of":
    return all(eval_cond(a, features) for a in args)
  if op == "any_of":
    return any(eval_cond(a, features) for a in args)
  if op == "not":
    return not eval_cond(args[0], features)
  raise SystemExit(f"unknown AssemblerCondDag operator {op!r}")


def predicates_hold(recs: Records, rec: dict, features: set) -> bool:
  for pred in rec["Predicates"]:
    prec = recs[pred["def"]]
    if prec.get("AssemblerMatcherPredicate") and not eval_cond(prec["AssemblerCondDag"], features):
      return False
  return True


# ---- registers -------------------------------------------------------------------------------------------------------

def eval_regset(recs: Records, node) -> list:
  """Evaluate a RegisterClass MemberList / RegisterTuples SubRegs set expression (TableGen's SetTheory operators)."""
  if isinstance(node, dict) and node.get("kind") == "def":
    rec = recs[node["def"]]
    if "RegisterClass" in rec["!superclasses"]:
      return eval_regset(recs, rec["MemberList"])
    if "RegisterTuples" in rec["!superclasses"]:
      lists = [eval_regset(recs, s) for s in rec["SubRegs"]]
      count = min(len(x) for x in lists)
      return [tuple(x[i] for x in lists) for i in range(count)]
    return [node["def"]]
  op = node["operator"]["def"]
  args = [a[0] for a in node["args"]]
  if op == "add":
    out: list = []
    for arg in args:
      out += [m for m in eval_regset(recs, arg) if m not in out]
    return out
  if op == "sub":
    drop = set(m for arg in args[1:] for m in eval_regset(recs, arg))
    return [m for m in eval_regset(recs, args[0]) if m not in drop]
  if op == "and":
    keep = set(eval_regset(recs, args[1]))
    return [m for m in eval_regset(recs, args[0]) if m in keep]
  if op == "sequence":
    fmt, lo, hi = args[0], args[1], args[2]
    step = 1 if hi >= lo else -1
    return [fmt.replace("%u", str(i)) for i in range(lo, hi + step, step)]
  if op == "interleave":
    lists = [eval_regset(recs, arg) for arg in args]
    out = []
    for i in range(max(len(x) for x in lists)):
      out += [x[i] for x in lists if i < len(x) and x[i] not in out]
    return out
  members = eval_regset(recs, args[0])
  if op == "trunc":
    return members[:args[1]]
  if op == "shl":
    return members[args[1]:]
  if op == "decimate":
    return members[::args[1]]
  if op == "rotl":
    n = args[1] % len(members)
    return members[n:] + members[:n]
  raise SystemExit(f"unknown register set operator {op!r}")


def reg_encoding(recs: Records, name: str) -> int:
  # Pseudo registers with per-generation MC variants (SIRegisterInfo.td: M0_gfx11plus, SGPR_NULL_gfx11plus,
  # TTMP0_gfx9plus): the gfx11/gfx12 encoding is the variant's HWEncoding.
  for suffix in ("_gfx11plus", "_gfx9plus"):
    if name + suffix in recs.data:
      name = name + suffix
      break
  if name == "SGPR_NULL64":
    return reg_encoding(recs, "SGPR_NULL")
  return sum(bit << i for i, bit in enumerate(recs[name]["HWEncoding"]))


def register_files(recs: Records) -> dict:
  files = {}
  for file, first in (("s", "SGPR"), ("ttmp", "TTMP"), ("v", "VGPR")):
    count = len([n for n in recs.instanceof["Register"] if re.fullmatch(first + r"\d+", n)])
    files[file] = (reg_encoding(recs, first + "0"), count)
  return files


def is_bool_class(cls: str) -> bool:
  return re.match(r"SReg_1(_|$)", cls) is not None


REG_NAME = re.compile(r"^(v|s|a|ttmp)(\d+)(\.[lh])?$")


def summarize_class(recs: Records, cls: str, features: set, specials: dict) -> tuple:
  """Register class -> (((file, bits, first, last, step), ...), (special names...)) for the parser and printer."""
  groups: dict = {}
  names: list = []
  for member in eval_regset(recs, {"kind": "def", "def": cls}):
    regs = member if isinstance(member, tuple) else (member,)
    asm = recs[regs[0]]["AsmName"]
    m = REG_NAME.match(asm)
    if m is None:
      bits = 64 if recs[regs[0]]["SubRegIndices"] and recs[regs[0]]["SubRegIndices"][0]["def"] == "sub0" else 32
      if is_bool_class(cls) and bits == 64:
        continue
      if asm and asm not in UNAVAILABLE:
        key = f"{asm}:{bits}"
        if key not in names:
          names.append(key)
        specials[key] = reg_encoding(recs, regs[0])
      continue
    file, index, half = m.group(1), int(m.group(2)), m.group(3)
    if file == "a" and "FeatureMAIInsts" not in features:  # AGPRs exist only with the MAI (matrix core) feature
      continue
    if is_bool_class(cls) and len(regs) > 1:  # lane masks (BoolRC) are 32-bit in wave32
      continue
    bits = 16 if half else 32 * len(regs)
    if half:
      index = index * 2 + (half == ".h")
    # SGPR/TTMP tuples start at a multiple of min(bit_ceil(dwords), 4) (AMDGPUAsmParser::getRegularReg,
    # "invalid register alignment"); the disassembler flags others as invalid for the class
    align = min(1 << (len(regs) - 1).bit_length(), 4)
    if file in ("s", "ttmp") and index % align:
      continue
    if file == "ttmp" and bits not in (32, 64, 128, 256, 512):   # the parser's TTMP classes (getRegClass)
      continue
    groups.setdefault((file, bits), []).append(index)
  out = []
  for (file, bits), idx in sorted(groups.items()):
    idx = sorted(set(idx))
    step = idx[1] - idx[0] if len(idx) > 1 else 1
    if idx != list(range(idx[0], idx[-1] + 1, step)):
      raise SystemExit(f"register class {cls}: {file}{bits} indices are not an arithmetic range")
    out.append((file, bits, idx[0], idx[-1], step))
  return tuple(out), tuple(names)


# ---- operand types ---------------------------------------------------------------------------------------------------

PREFIX = re.compile(r'parse(?:IntWithPrefix|NamedBit|OperandArrayWithPrefix)\(\\?"(\w+)\\?"')
NAMED_BIT = re.compile(r'printNamedBit\(MI, OpNo, O, "(\w+)"\)')
SIMPLE_PRINT = {"printOffset": "named_int", "printOffset0": "named_int", "printOffset1": "named_int",
                "printByteSel": "named_int", "printSMEMOffsetMod": "named_int", "printFlatOffset": "flat_offset",
                "printSMEMOffset": "smem_offset", "printOModSI": "omod", "printOpSel": "array", "printOpSelHi": "array",
                "printNegLo": "array", "printNegHi": "array", "printCPol": "cpol", "printFORMAT": "format",
                "printSWaitCnt": "waitcnt", "printDepCtr": "depctr", "printSDelayALU": "delay_alu",
                "printHwreg": "hwreg", "printSendMsg": "sendmsg", "printEndpgm": "endpgm", "printSwizzle": "swizzle",
                "printIndexKey16bit": "index_key", "printIndexKey8bit": "index_key", "printU16ImmOperand": "imm",
                "printU32ImmOperand": "imm", "printOperandAndFPInputMods": "fpmods",
                "printOperandAndIntInputMods": "intmods"}


def default_value(rec: dict) -> int:
  ops = rec.get("DefaultOps")
  if ops and ops["args"]:
    return ops["args"][0][0]["args"][0][0]
  return int(rec.get("DefaultValue") or 0)


def operand_type(recs: Records, name: str) -> tuple:
  """Operand record -> (kind, register class, parameter)."""
  rec = recs[name]
  supers = rec["!superclasses"]
  if "RegisterClass" in supers:
    return ("reg", name, "")
  regclass = rec.get("RegClass", {}).get("def", "") if isinstance(rec.get("RegClass"), dict) else ""
  optype = rec.get("OperandType", "")
  method = rec.get("PrintMethod", "")
  parser = rec.get("ParserMethod") or ""
  if "InputMods" in supers or "FPInputMods" in supers or "IntInputMods" in supers:
    return (SIMPLE_PRINT.get(method, "mods"), "", name)
  if regclass:
    if optype in ("OPERAND_REGISTER",):
      return ("reg", regclass, "")
    return ("src", regclass, optype)
  bit = NAMED_BIT.search(method)
  if bit:
    return ("bit", "", bit.group(1))
  if optype == "OPERAND_INLINE_SPLIT_BARRIER_INT32":
    # s_barrier_*: an 8-bit field the decoder reads like an SGPR source (decodeSplitBarrier): s10, ttmp0, -1 ...
    return ("src", "SReg_32", optype)
  if optype == "OPERAND_PCREL":
    return ("label", "", "")
  if optype in ("OPERAND_KIMM32", "OPERAND_KIMM16"):
    return ("kimm", "", optype[-2:])
  if optype == "OPERAND_UNKNOWN":
    return ("hidden", "", str(default_value(rec)))
  kind = SIMPLE_PRINT.get(method, "imm" if method == "printOperand" else "")
  if not kind:
    raise SystemExit(f"operand type {name}: unknown PrintMethod {method!r}")
  prefix = PREFIX.search(parser)
  if kind in ("named_int", "array", "cpol"):
    param = prefix.group(1) if prefix else str(default_value(rec))
    if kind == "named_int":
      bits = re.search(r"isUInt<(\d+)>", rec.get("Validator", "") or "")
      param = f"{param}:{bits.group(1) if bits else 0}"
    if kind == "cpol":
      # returning atomics: "glc" = the text must set glc (th:TH_ATOMIC_RETURN), "noglc" = must not,
      # "glc1" = implied (DefaultOps 1); the bit itself is fixed in the opcode bits, not in the cpol field
      pred = recs[rec["ParserMatchClass"]["def"]]["PredicateMethod"] or ""
      param = "noglc" if "!(Op.getImm() & CPol::GLC)" in pred else "glc" if "& CPol::GLC" in pred else \
          "glc1" if default_value(rec) == 1 else ""
    return (kind, "", param)
  if kind == "imm":
    width = rec["Type"]["def"] if isinstance(rec.get("Type"), dict) else "i32"
    return ("imm", "", width)
  return (kind, "", "")


def operand_type_name(recs: Records, name: str) -> str:
  rec = recs[name]
  if rec.get("!anonymous") not in (True, "true"):
    return name
  regclass = rec.get("RegClass", {}).get("def", "")
  return f"{rec['!superclasses'][-1]}<{regclass}>"


# ---- instructions ----------------------------------------------------------------------------------------------------

def family(name: str, rec: dict, asm: str, gen: int) -> str:
  supers = rec["!superclasses"]
  mnemonic = asm.split()[0] if asm else ""
  for flag in ("SOP1", "SOP2", "SOPK", "SOPC", "SOPP"):
    if rec[flag]:
      return flag
  if rec["SMRD"]:
    return "SMEM"
  if rec["DS"]:
    return "DS"
  if rec["FLAT"]:
    kind = "GLOBAL" if mnemonic.startswith("global_") else "SCRATCH" if mnemonic.startswith("scratch_") else "FLAT"
    return "V" + kind if gen >= 12 else kind
  if rec["MUBUF"] or rec["MTBUF"]:
    return "VBUFFER" if gen >= 12 else "MTBUF" if rec["MTBUF"] else "MUBUF"
  if any("VOPD" in s for s in supers):
    return "VOPD"
  if rec["VOP3P"] or any(s.startswith("VOP3Pe") for s in supers):
    return "VOP3P"
  if rec["VOP3"] or rec["Size"] == 8 and any(s.startswith("VOP3") for s in supers):
    return "VOP3SD" if any(s.startswith("VOP3be") for s in supers) else "VOP3"
  for flag in ("VOPC", "VOP1", "VOP2"):
    if rec[flag]:
      return flag
  raise SystemExit(f"{name}: unknown encoding family")


def inst_layout(name: str, bits: list) -> tuple:
  """Inst bits -> (fixed value, fixed mask, {variable: ((inst_lo, width, value_lo), ...)})."""
  value = mask = 0
  fields: dict = {}
  for pos, bit in enumerate(bits):
    if bit is None:
      continue
    if isinstance(bit, int):
      mask |= 1 << pos
      value |= bit << pos
      continue
    var = bit["var"]
    index = bit.get("index", 0)
    segs = fields.setdefault(var, [])
    if segs and segs[-1][0] + segs[-1][1] == pos and segs[-1][2] + segs[-1][1] == index:
      segs[-1][1] += 1
    else:
      segs.append([pos, 1, index])
  return value, mask, {k: tuple(tuple(s) for s in v) for k, v in fields.items()}


def printed_syntax(recs: Records, rec: dict, fam: str, ops: dict) -> tuple:
  """AsmString -> (printed mnemonic, operand template) the way AMDGPUInstPrinter prints it (wave32)."""
  asm = re.sub(r"\{([^{}|]*)(\|[^{}]*)?\}", r"\1", rec["AsmString"])  # {a|b}: asm writer variant 0 is `a`
  m = re.match(r"^([\w.]+)(.*)$", asm)
  mnemonic, rest = m.group(1), m.group(2)
  first = re.match(r"^\$(\w+)", rest)
  if first and first.group(1) in ops and recs[ops[first.group(1)]].get("PrintMethod") == "printVOPDst":
    # printVOPDst: the encoding suffix then a space before the first (destination) operand
    single = rec.get("IsSingle") == 1
    if fam in ("VOP3", "VOP3SD", "VOP3P") and not single:
      mnemonic += "_e64"
    elif fam in ("VOP1", "VOP2") and not single and rec["Size"] == 4:
      mnemonic += "_e32"
    rest = " " + rest
  rest = rest.strip(" ") if not rest.startswith("$") else rest
  if rest and not rest.startswith(("$", " ")):
    rest = " " + rest
  # AMDGPUInstPrinter prints an MTBUF format after soffset (printSymbolicFormat from the soffset operand)
  rest = rest.replace(",$format $soffset", ", $soffset$format")
  # Implicit VCC of VOP2/VOPC e32 forms, printed by AMDGPUInstPrinter (wave32: vcc_lo); Defs/Uses name VCC.
  defs = {x["def"] for x in rec["Defs"]}
  uses = {x["def"] for x in rec["Uses"]}
  if fam == "VOP2" and rec["Size"] == 4:
    if "VCC" in defs:
      rest = rest.replace("$vdst, ", "$vdst, vcc_lo, ", 1)
    if "VCC" in uses:
      rest += ", vcc_lo"
  if fam == "VOPC" and "VCC" in defs:
    rest = " vcc_lo, " + rest.lstrip(" ")
  return mnemonic, rest.lstrip(" ") if rest.startswith(" ") else rest


# per-instruction flags the printer and parser branch on (TSFlags bits named in SIInstrFormats.td, plus MCInstrDesc's
# mayLoad/mayStore)
FLAG_NAMES = ("VOP3P", "VOP3_OPSEL", "IsPacked", "IsWMMA", "IsSWMMAC", "IsAtomicRet", "IsAtomicNoRet", "FlatGlobal",
              "FlatScratch", "IsDOT", "mayLoad", "mayStore")


def tsflag_bits(source_dir: str) -> dict:
  with open(os.path.join(source_dir, "SIInstrFormats.td")) as f:
    return {name: int(bit) for bit, name in re.findall(r"let TSFlags\{(\d+)\} = (\w+);", f.read())}


def instr_flags(rec: dict, bits: dict) -> tuple:
  tsflags = rec["TSFlags"]
  out = []
  for name in FLAG_NAMES:
    value = rec.get(name) if name.startswith("may") else tsflags[bits[name]]
    if value == 1:
      out.append(name)
  if rec["VALU"] and any(u["def"] in ("VCC", "VCC_LO") for u in rec["Uses"]):
    out.append("UsesVCC")   # an implicit VCC read (v_cndmask_b32_e32, v_div_fmas, carry-in): one constant-bus read
  return tuple(out)


def collect(recs: Records, gen: int, tag: str, features: set, tsbits: dict) -> tuple:
  insts, optypes, classes, specials = [], {}, {}, {}
  for name in sorted(recs.instanceof["Instruction"]):
    rec = recs[name]
    if rec.get("DecoderNamespace") not in (tag, tag + "_FAKE16") or rec["AsmVariantName"] not in ("Default", "VOP3"):
      continue
    if any(rec.get(flag) for flag in SKIP_FLAGS) or not rec["AsmString"]:
      continue
    if not predicates_hold(recs, rec, features):
      continue
    fam = family(name, rec, rec["AsmString"], gen)
    operands, opnames = [], {}
    for arg in rec["OutOperandList"]["args"] + rec["InOperandList"]["args"]:
      tname = operand_type_name(recs, arg[0]["def"])
      if tname not in optypes:
        optypes[tname] = operand_type(recs, arg[0]["def"])
      operands.append((arg[1], tname))
      opnames[arg[1]] = arg[0]["def"]
    value, mask, fields = inst_layout(name, rec["Inst"])
    mnemonic, syntax = printed_syntax(recs, rec, fam, opnames)
    tied = tuple(tuple(x.strip().lstrip("$") for x in c.split("=")) for c in rec["Constraints"].split(",")
                 if "=" in c)
    insts.append((name, fam, mnemonic, syntax, rec["Size"], value, mask, tuple(operands),
                  tuple(sorted(fields.items())), tied, instr_flags(rec, tsbits), len(rec["OutOperandList"]["args"])))
  for kind, regclass, _ in optypes.values():
    if regclass and regclass not in classes:
      classes[regclass] = summarize_class(recs, regclass, features, specials)
  inline_values(classes, specials)
  return insts, optypes, classes, specials


def inline_values(classes: dict, specials: dict) -> None:
  """src_scc (an inline value, like src_shared_base) reads as an operand of any width: AMDGPUAsmParser accepts it in
  64-bit sources (isInlineValue) though SIRegisterInfo.td lists it in 32-bit classes only."""
  for name, (groups, names) in list(classes.items()):
    if "src_shared_base:64" in names and "src_scc:64" not in names:
      classes[name] = (groups, names + ("src_scc:64",))
      specials["src_scc:64"] = specials["src_scc:32"]


def aliases(recs: Records, features: set, records: set) -> tuple:
  """MnemonicAlias (old -> new mnemonic) and InstAlias rows (another syntax for one of our records) of the target."""
  mnemonics = {}
  for name in sorted(recs.instanceof["MnemonicAlias"]):
    rec = recs[name]
    if predicates_hold(recs, rec, features):
      mnemonics.setdefault(rec["FromMnemonic"].lower(), rec["ToMnemonic"].lower())
  rows = []
  for name in sorted(recs.instanceof["InstAlias"]):
    rec = recs[name]
    result = rec["ResultInst"]["operator"]["def"]
    if result in records and predicates_hold(recs, rec, features) and rec["AsmVariantName"] in ("Default", "VOP3"):
      m = re.match(r"^([\w.]+)\s*(.*)$", rec["AsmString"])
      rows.append((result, m.group(1).lower(), m.group(2)))
  return dict(sorted(mnemonics.items())), tuple(sorted(set(rows)))


# ---- symbolic operand tables from the C++ sources --------------------------------------------------------------------

BINOPS = {ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitOr: operator.or_, ast.BitAnd: operator.and_,
          ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.GtE: operator.ge,
          ast.Eq: operator.eq, ast.Gt: operator.gt, ast.Lt: operator.lt, ast.LtE: operator.le}


def c_value(expr: str, names: dict) -> int:
  """Evaluate a C integer constant expression (enum initializer, small `return` expression) over `names`."""
  py = re.sub(r"\b(0x[0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", expr.replace("UINT64_C", ""))
  py = " ".join(py.split()).replace("||", " or ").replace("&&", " and ").replace("(unsigned)", "")
  tern = re.match(r"^(.*?)\?(.*):(.*)$", py, re.S)
  if tern:
    py = f"({tern.group(2)}) if ({tern.group(1)}) else ({tern.group(3)})"

  def walk(node):
    if isinstance(node, ast.Expression):
      return walk(node.body)
    if isinstance(node, ast.Constant):
      return node.value
    if isinstance(node, ast.Name):
      return names[node.id]
    if isinstance(node, ast.BinOp):
      return BINOPS[type(node.op)](walk(node.left), walk(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
      return -walk(node.operand)
    if isinstance(node, ast.Compare):
      return BINOPS[type(node.ops[0])](walk(node.left), walk(node.comparators[0]))
    if isinstance(node, ast.BoolOp):
      vals = [walk(v) for v in node.values]
      return all(vals) if isinstance(node.op, ast.And) else any(vals)
    if isinstance(node, ast.IfExp):
      return walk(node.body) if walk(node.test) else walk(node.orelse)
    raise SystemExit(f"unsupported C expression {expr!r}")
  return int(walk(ast.parse(py.strip(), mode="eval")))


def namespace_body(text: str, namespace: str) -> str:
  start = re.search(r"namespace " + namespace + r"\s*\{", text)
  if start is None:
    raise SystemExit(f"namespace {namespace} not found")
  depth, pos = 1, start.end()
  while depth:
    nxt = re.compile(r"[{}]").search(text, pos)
    depth += 1 if nxt.group() == "{" else -1
    pos = nxt.end()
  return text[start.end():pos - 1]


def c_enums(text: str, namespace: str) -> dict:
  body = re.sub(r"//[^\n]*", "", namespace_body(text, namespace))
  names: dict = {}
  for block in re.findall(r"enum[^{;]*\{(.*?)\};", body, re.S):
    nxt = 0
    for entry in block.split(","):
      entry = entry.strip()
      if not entry:
        continue
      name, _, expr = entry.partition("=")
      nxt = c_value(expr, names) if expr.strip() else nxt
      names[name.strip()] = nxt
      nxt += 1
  return names


def c_array(text: str, name: str) -> list:
  body = re.search(name + r"(?:\[\])?\s*=\s*\{(.*?)\};", text, re.S).group(1)
  return [x.strip() for x in re.sub(r"//[^\n]*", "", body).split(",") if x.strip()]


def c_strings(text: str, name: str) -> tuple:
  return tuple(json.loads(x) for x in c_array(text, name))


# Condition helpers of AMDGPUAsmUtils.cpp tables, as truth values per generation (their names state the rule).
CONDITIONS = {"isGFX11Plus": lambda g: g >= 11, "isGFX12Plus": lambda g: g >= 12, "isNotGFX11Plus": lambda g: g < 11,
              "isNotGFX12Plus": lambda g: g < 12, "isNotGFX10Plus": lambda g: g < 10, "isNotGFX9Plus": lambda g: g < 9,
              "isGFX9Plus": lambda g: g >= 9, "isGFX10Plus": lambda g: g >= 10, "isGFX11": lambda g: g == 11,
              "isGFX10": lambda g: g == 10, "isGFX940": lambda g: False, "isGFX8_GFX9_GFX10": lambda g: g <= 10,
              "isGFX9_GFX10": lambda g: g <= 10, "isGFX9_GFX10_GFX11": lambda g: g <= 11,
              "isGFX10_GFX11": lambda g: g in (10, 11), "isGFX10_3_GFX11": lambda g: g in (10, 11),
              "isGFX10Before1030": lambda g: False, "isGFX10_BEncoding": lambda g: g >= 10}


def custom_operands(text: str, table: str, ids: dict, gen: int) -> dict:
  """`{{"NAME"}, ID, cond}` rows -> {encoding: name} (first valid name per encoding, as the printer picks it)."""
  out: dict = {}
  body = re.search(r"CustomOperand\w*\s+" + table + r"\[\]\s*=\s*\{(.*?)\n\};", text, re.S).group(1)
  for row in re.findall(r"\{\{\"(\w*)\"\}(?:,\s*(\w+))?(?:,\s*(\w+))?\}", body):
    name, ident, cond = row
    if not name or (cond and not CONDITIONS[cond](gen)):
      continue
    out.setdefault(ids[ident], name)
  return out


def symbolic_tables(src: str, gen: int) -> dict:
  def read(path):
    with open(os.path.join(src, path)) as f:
      return f.read()
  utils, defines = read("Utils/AMDGPUAsmUtils.cpp"), read("SIDefines.h")
  base, printer = read("Utils/AMDGPUBaseInfo.cpp"), read("MCTargetDesc/AMDGPUInstPrinter.cpp")
  base_h, disasm = read("Utils/AMDGPUBaseInfo.h"), read("Disassembler/AMDGPUDisassembler.cpp")
  hwreg_fields = {}
  for name, hi, lo, dflt in re.findall(r"(Hwreg\w+)\s*(?:=|:)\s*EncodingField<(\d+), (\d+)(?:, (\d+))?>", base_h):
    hwreg_fields[name] = (int(hi), int(lo), int(dflt or 0))
  sendmsg, hwreg = c_enums(defines, "SendMsg"), c_enums(defines, "Hwreg")
  fmt = c_enums(defines, "MTBUFFormat")
  waitcnt = {}
  for fn, expr in re.findall(r"unsigned get(\w+)\(unsigned VersionMajor\)\s*\{\s*return ([^;]+);", base):
    waitcnt[fn] = c_value(expr, {"VersionMajor": gen})
  depctr = []
  for row in re.findall(r'\{\{"(\w+)"\},\s*(\d+),\s*(\d+),\s*(\d+),\s*(\d+)(?:,\s*(\w+))?\}', utils):
    if not row[5] or CONDITIONS[row[5]](gen):
      depctr.append((row[0],) + tuple(int(x) for x in row[1:5]))
  return {
    "SRC_MODS": c_enums(defines, "SISrcMods"),
    "VOP3P_OP_SEL_HI": c_enums(defines, "VOP3PEncoding"),
    "OMOD": c_enums(defines, "SIOutMods"),
    "CPOL": {k: v for k, v in c_enums(defines, "CPol").items() if k != "VOLATILE"},
    "WAITCNT": waitcnt,
    "HWREG": custom_operands(utils, "Operands", hwreg, gen),
    "SENDMSG": custom_operands(utils, "MsgOperands", sendmsg, gen),
    "SYSMSG": custom_operands(utils, "SysMsgOperands", sendmsg, gen),
    "SENDMSG_ENUM": {k: v for k, v in sendmsg.items() if k.endswith("_") or k.startswith("OP_")},
    "DEPCTR": tuple(depctr),
    "DELAY_ALU_INSTID": c_strings(printer, "InstIds"),
    "DELAY_ALU_INSTSKIP": c_strings(printer, "InstSkips"),
    "UFMT": c_strings(utils, "UfmtSymbolicGFX11"),
    "DFMT": c_strings(utils, "DfmtSymbolic"),
    "NFMT": c_strings(utils, "NfmtSymbolicGFX10"),
    "DFMT_NFMT_TO_UFMT": tuple(c_value(x, fmt) for x in c_array(utils, "DfmtNfmt2UFmtGFX11")),
    "FORMAT_ENUM": {k: v for k, v in fmt.items() if k.endswith(("_SHIFT", "_MASK", "_DEFAULT"))},
    "SWIZZLE": c_strings(utils, r"Swizzle \{\s*// [^\n]*\nconst char\* const IdSymbolic"),
    "SWIZZLE_ENUM": c_enums(defines, "Swizzle"),
    # s_getreg/s_setreg simm16 fields (hi, lo, default); HwregSize holds size-1 (AMDGPUBaseInfo.h)
    "HWREG_FIELDS": hwreg_fields,
    # VOPD: X and Y VGPRs of [dst, src0, src1, src2] must differ under these masks (AMDGPUBaseInfo.h)
    "VOPD_VGPR_BANK_MASKS": tuple(int(x) for x in re.search(r"VOPD_VGPR_BANK_MASKS\[\] = \{([^}]*)\}", base_h)
                                  .group(1).split(",")),
    "UC_VERSIONS": {int(code): name for name, code in re.findall(r'\{"(UC_VERSION_\w+)", (\d+)\}', utils)},
    "UC_VERSION_BITS": {name: int(v, 16) for name, v in re.findall(r'"(UC_VERSION_\w+_BIT)", (0x[0-9a-f]+)', disasm)},
  }


# ---- rendering -------------------------------------------------------------------------------------------------------

def render(cpu: str, gen: int, source: str, insts, optypes, classes, specials, tables, files) -> str:
  lines = [f"# generated by tools/gen_rdna_tables.py from {source}; do not edit",
           "# ruff: noqa: E501  (one table row per line)",
           f'"""{cpu} (RDNA{gen - 8}) instruction tables for compiler/rdna (see compiler/rdna/__init__.py)."""', "",
           f"TARGET = {cpu!r}", f"GENERATION = {gen}", f"SOURCE = {source!r}", "",
           "# special register 'name:bits' -> hardware operand encoding (SIRegisterInfo.td HWEncoding)",
           "SPECIAL_REGS = {"]
  lines += [f"  {k!r}: {v}," for k, v in sorted(specials.items())]
  lines += ["}", "", "# register file -> (encoding of register 0, count): SIRegisterInfo.td SGPR0/TTMP0_gfx9plus/VGPR0",
            f"REG_FILES = {files!r}"]
  lines += ["", "# register class -> (((file, bits, first, last, step), ...), (special 'name:bits', ...));",
            "# 16-bit VGPR halves count as index*2 + hi", "REG_CLASSES = {"]
  lines += [f"  {k!r}: {v!r}," for k, v in sorted(classes.items())]
  lines += ["}", "", "# operand type -> (kind, register class, parameter)", "OPERAND_TYPES = {"]
  lines += [f"  {k!r}: {v!r}," for k, v in sorted(optypes.items())]
  lines += ["}", ""]
  for key in sorted(tables):
    lines.append(f"{key} = {tables[key]!r}")
  lines += ["", "# (record, family, mnemonic, syntax, size, value, mask, operands, fields, tied, flags, ndefs): fields",
            "# are (variable, ((inst_lo, width, value_lo), ...)); the first ndefs operands are outputs; by record name",
            "INSTRUCTIONS = ("]
  lines += [f"  {i!r}," for i in insts]
  lines += [")", ""]
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("json", help="llvm-tblgen-19 -dump-json output for AMDGPU.td")
  parser.add_argument("source", help="llvm/lib/Target/AMDGPU of the same LLVM source tree")
  parser.add_argument("--version", default="1:19.1.7-3~deb12u1")
  args = parser.parse_args()
  with open(args.json) as f:
    recs = Records(json.load(f))
  write_tables(recs, args.source, args.version)


def write_tables(recs: Records, source_dir: str, version: str) -> None:
  os.makedirs(OUT_DIR, exist_ok=True)
  for short, cpu, tag, gen in TARGETS:
    features = feature_closure(recs, cpu)
    insts, optypes, classes, specials = collect(recs, gen, tag, features, tsflag_bits(source_dir))
    tables = symbolic_tables(source_dir, gen)
    tables["MNEMONIC_ALIASES"], tables["INST_ALIASES"] = aliases(recs, features, {i[0] for i in insts})
    source = f"llvm-toolchain-19@{version}:llvm/lib/Target/AMDGPU"
    path = os.path.join(OUT_DIR, f"{short}.py")
    with open(path, "w") as f:
      f.write(render(cpu, gen, source, insts, optypes, classes, specials, tables, register_files(recs)))
    print(f"wrote {path}: {len(insts)} instructions, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
  main()
