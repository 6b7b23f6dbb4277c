"""VOPD dual issue: two independent VALU instructions of one basic block issued as one v_dual_X :: v_dual_Y, after
register allocation (the legality rules are about physical registers).

Rules (RDNA3 ISA guide, "Dual Issue VALU"; llvm-mc-19 enforces the same ones, and tests/test_render_rdna.py checks
every rendered kernel through it):
  * wave32 only (all of our kernels are); the pair is independent: Y does not read X's result (both read their
    sources before either writes, so X may read what Y writes), and they write different registers;
  * which opcodes may be X and which Y is the set of v_dual_X::v_dual_Y encodings in the target's tables (LLVM 19:
    X from FMAC, MUL, ADD, SUB, MOV, ...; Y adds ADD_NC_U32, LSHLREV_B32, AND_B32); gfx12 has the same encodings;
  * src0 may be a VGPR, an SGPR or a constant, vsrc1 must be a VGPR; together at most two SGPRs, or one SGPR and one
    literal, or one literal the two share; no input or output modifiers;
  * VGPR banks (register index mod 4): srcX0 and srcY0 in different banks, vsrcX1 and vsrcY1 in different banks;
    the destinations one even and one odd (the encoding stores only vdstY's upper bits). FMAC reads its destination
    through the SRC2 port: two of them need one even and one odd SRC2, which the destination rule already gives.
The same rules are applied on gfx12.

A later instruction of the block may move up to pair with an earlier one when nothing between them writes what it
reads, reads or writes what it writes, or changes EXEC.
"""
from __future__ import annotations

import functools

from compiler.rdna.asm import Abs, Neg
from compiler.rdna.tables import get_target
from compiler.rdna_code import Half, MInst, VReg, is_inline
from compiler.rdna_regalloc import physical

PAIRABLE = ("v_fmac_f32", "v_add_f32", "v_sub_f32", "v_mul_f32", "v_mov_b32", "v_add_nc_u32", "v_lshlrev_b32",
            "v_and_b32")
COMMUTATIVE = ("v_fmac_f32", "v_add_f32", "v_mul_f32", "v_add_nc_u32", "v_and_b32")  # src0 and vsrc1 may swap
LOOKAHEAD = 12  # instructions searched for a partner
FENCES = ("s_endpgm", "s_barrier", "s_barrier_signal", "s_barrier_wait")  # nothing moves across these


class Dual(MInst):
  """A VOPD pair after register allocation: the two halves are MInsts; defs, uses and the text come from them."""
  __slots__ = ("x", "y")

  def __init__(self, x: MInst, y: MInst):
    super().__init__("v_dual", x.args[:1] + y.args[:1] + x.args[1:] + y.args[1:], {}, 2, False, None)
    self.x, self.y = x, y

  def uses(self) -> list:
    return self.x.uses() + self.y.uses()

  def text(self, operand_text) -> str:
    halves = [f"v_dual_{h.op[2:]} " + ", ".join(operand_text(a) for a in h.args) for h in (self.x, self.y)]
    return " :: ".join(halves)


@functools.lru_cache(maxsize=None)
def dual_forms(target: str) -> frozenset:
  """(X mnemonic, Y mnemonic) pairs that have a VOPD encoding on the target."""
  tgt = get_target(target)
  return frozenset((a, b) for a in PAIRABLE for b in PAIRABLE if tgt.candidates(f"v_dual_{a[2:]}::v_dual_{b[2:]}"))


def vgprs(a, phys: dict) -> list[int]:
  return [i for f, i in physical(a, phys) if f == "v"]


def regs(a, phys: dict) -> set:
  return set(physical(a, phys))


def is_vgpr(a) -> bool:
  return isinstance(a, (VReg, Half)) and a.file == "v" and a.size == 1


def candidate(inst: MInst) -> bool:
  """A VALU op with a VOPD form whose operands it can take: a VGPR destination, vsrc1 a VGPR, no modifiers."""
  if inst.op not in PAIRABLE or inst.mods or inst.mem or inst.ndefs != 1 or not is_vgpr(inst.args[0]):
    return False
  srcs = inst.args[1:]
  if any(isinstance(a, (str, Neg, Abs)) for a in srcs):   # exec_lo, modifiers
    return False
  return len(srcs) == 1 or is_vgpr(srcs[1])


def scalars(inst: MInst) -> tuple[set, set]:
  """(SGPR keys, literal values) an instruction's sources take from the constant bus."""
  sgprs, literals = set(), set()
  for a in inst.args[1:]:
    if isinstance(a, (VReg, Half)) and a.file == "s":
      sgprs.add(a.reg.id if isinstance(a, Half) else a.id)
    elif isinstance(a, (int, float)) and not is_inline(a):
      literals.add(a)
  return sgprs, literals


def legal(x: MInst, y: MInst, phys: dict, forms: frozenset) -> bool:
  """x as the X half and y as the Y half meet the encoding and operand rules of the module docstring."""
  if (x.op, y.op) not in forms:
    return False
  dx, dy = vgprs(x.args[0], phys)[0], vgprs(y.args[0], phys)[0]
  if dx % 2 == dy % 2:
    return False
  for k in (1, 2):
    if len(x.args) > k and len(y.args) > k:
      bx, by = vgprs(x.args[k], phys), vgprs(y.args[k], phys)
      if bx and by and bx[0] % 4 == by[0] % 4:
        return False
  (sx, lx), (sy, ly) = scalars(x), scalars(y)
  sgprs, literals = sx | sy, lx | ly
  return len(literals) <= 1 and len(sgprs) + len(literals) <= 2


def movable(inst: MInst, between: list, phys: dict) -> bool:
  """inst can move above the instructions `between` (no dependence, no EXEC change among them)."""
  writes = {r for a in inst.defs() for r in regs(a, phys)}
  reads = {r for a in inst.uses() for r in regs(a, phys)}
  for other in between:
    if other.is_label or other.is_branch or other.op in FENCES:
      return False
    other_writes = {r for a in other.defs() for r in regs(a, phys)}
    other_reads = {r for a in other.uses() for r in regs(a, phys)}
    if "exec_lo" in other.args or other.op.startswith(("s_and_saveexec", "v_cmpx")):
      return False
    if writes & (other_reads | other_writes) or reads & other_writes:
      return False
  return True


def pair(insts: list, phys: dict, target: str) -> list:
  """The instruction list with independent VALU pairs merged into Dual instructions."""
  forms = dual_forms(target)
  out, pending = [], list(insts)
  while pending:
    inst = pending.pop(0)
    if not candidate(inst):
      out.append(inst)
      continue
    partners = []
    for j in range(min(LOOKAHEAD, len(pending))):
      other = pending[j]
      if other.is_label or other.is_branch:
        break
      if not candidate(other) or reads_result(inst, other, phys) or not movable(other, pending[:j], phys):
        continue
      dual = next((Dual(x, y) for a in variants(inst) for b in variants(other) for x, y in ((a, b), (b, a))
                   if legal(x, y, phys, forms)), None)
      if dual is not None:
        partners.append((j, dual))
    # a partner that can only be Y (v_add_nc_u32, ...) first: X-capable ones have more chances to pair later
    x_ops = {x for x, _ in forms}
    partner = next((p for p in partners if pending[p[0]].op not in x_ops), partners[0] if partners else None)
    if partner is None:
      out.append(inst)
      continue
    j, dual = partner
    del pending[j]
    out.append(dual)
  return out


def variants(inst: MInst) -> list:
  """inst, and inst with its two sources swapped where the operation commutes and both are VGPRs (a different bank
  pairing may make a pair legal)."""
  if inst.op in COMMUTATIVE and is_vgpr(inst.args[1]) and is_vgpr(inst.args[2]):
    return [inst, MInst(inst.op, (inst.args[0], inst.args[2], inst.args[1]), inst.mods, inst.ndefs, inst.tied)]
  return [inst]


def reads_result(first: MInst, second: MInst, phys: dict) -> bool:
  """second reads what first writes (or writes the same): then they cannot issue together, where second would read
  the old value."""
  written = {r for a in first.defs() for r in regs(a, phys)}
  return bool(written & {r for a in second.uses() + second.defs() for r in regs(a, phys)})
