"""Programs: a kernel binary loaded into a GPU object, and its dispatches.

A dispatch writes the whole compute state the kernel binary asks for, then launches (all in one submission):

  HLSQ_INVALIDATE_CMD                 drop cached compute state
  SP_CS_CTRL_REG0/1, SP_CS_OBJ_START, SP_CS_INSTRLEN, SP_CS_CONFIG, HLSQ_CS_CNTL, SP_CS_PVT_MEM_*
                                      the program: code address and length, register footprint, constants, shared
                                      memory (qcomdrv.pm4.CommandStream.cs_program)
  SP_CS_CNTL_0/1, HLSQ_CS_CNTL_0/1    where the hardware puts workgroup and local ids (the binary's regids)
  HLSQ_CS_NDRANGE_0..6, HLSQ_CS_KERNEL_GROUP_X/Y/Z (HLSQ_CS_LAST_LOCAL_SIZE on a7xx)
  CP_LOAD_STATE6_FRAG ST6_SHADER      preload the instructions (SS6_INDIRECT from the code object)
  CP_LOAD_STATE6_FRAG ST6_CONSTANTS   the constant file: every argument at the dword the binary names (buffer
                                      addresses as 64-bit GPU addresses)
  CP_EXEC_CS (or CP_RUN_OPENCL)       the grid in workgroups

Bad launches are refused before anything is submitted: a workgroup larger than 1024 work-items or than the binary's
required size, a grid whose work-item count does not fit HLSQ_CS_NDRANGE's 32 bits, a register footprint that does
not fit FULLREGFOOTPRINT or leaves too few waves resident for one workgroup, more shared memory or constants than the
chip has, and arguments that do not match the binary's table.
"""
from __future__ import annotations

import math
from array import array

from qcomdrv import binary as kb
from qcomdrv.chips import MAX_LOCAL_SIZE, ChipInfo
from qcomdrv.device import QCOMDevice

MAX_FULL_REGS = 63  # SP_CS_CTRL_REG0.FULLREGFOOTPRINT is 6 bits (a6xx.xml)
MAX_GLOBAL = (1 << 32) - 1  # HLSQ_CS_NDRANGE_1/3/5 GLOBALSIZE_* are 32 bits
SHARED_UNIT = 1024


def shared_size_field(nbytes: int) -> int:
  """SP_CS_CTRL_REG1.SHARED_SIZE for `nbytes` of shared memory: 0 enables all 32 KiB, n enables (n + 1) KiB."""
  units = -(-nbytes // SHARED_UNIT)
  return 0 if units <= 1 or units >= 32 else units - 1


def check_binary(chip: ChipInfo, kernel: kb.KernelBinary) -> None:
  """Raises ValueError when the binary cannot run on `chip` at all (registers, shared memory, constants)."""
  if kernel.full_regs > MAX_FULL_REGS or kernel.half_regs > MAX_FULL_REGS:
    raise ValueError(f"kernel {kernel.name} uses {kernel.full_regs} full / {kernel.half_regs} half vec4 registers "
                     f"per thread; SP_CS_CTRL_REG0's footprint fields hold at most {MAX_FULL_REGS}: too many "
                     "registers (split the kernel or lower its unrolling)")
  if kernel.shared_bytes > chip.shared_mem_bytes:
    raise ValueError(f"kernel {kernel.name} needs {kernel.shared_bytes} bytes of shared memory; {chip.name} has "
                     f"{chip.shared_mem_bytes} per workgroup")
  if kernel.constlen > chip.const_vec4 or kernel.constlen % 4:
    raise ValueError(f"kernel {kernel.name} reads {kernel.constlen} vec4 constants; HLSQ_CS_CNTL.CONSTLEN takes a "
                     f"multiple of 4 up to {chip.const_vec4} on {chip.name}")
  for k, arg in enumerate(kernel.args):
    if arg.const_dword + arg.nbytes // 4 > kernel.constlen * 4:
      raise ValueError(f"kernel {kernel.name} argument {k} at constant dword {arg.const_dword} lies outside its "
                       f"{kernel.constlen} vec4 constants")


def check_launch(chip: ChipInfo, kernel: kb.KernelBinary, groups: tuple[int, ...], local: tuple[int, ...]) -> None:
  """Raises ValueError for a launch the hardware cannot run (see the module docstring), before any submission."""
  if len(groups) != 3 or len(local) != 3 or min(groups) < 1 or min(local) < 1:
    raise ValueError(f"launch of {kernel.name}: groups {groups} and local size {local} need three sizes >= 1 each")
  threads = math.prod(local)
  if threads > MAX_LOCAL_SIZE or max(local) > MAX_LOCAL_SIZE:
    raise ValueError(f"launch of {kernel.name}: a workgroup of {local} ({threads} work-items) exceeds the "
                     f"{MAX_LOCAL_SIZE} work-items HLSQ_CS_NDRANGE_0 can describe; use more, smaller groups")
  required = tuple(kernel.local_size)
  if any(required) and required != tuple(local):
    raise ValueError(f"launch of {kernel.name}: local size {local}, but the kernel was compiled for {required} "
                     "(reqd_work_group_size)")
  for axis, (g, n) in enumerate(zip(groups, local)):
    if g * n > MAX_GLOBAL:
      raise ValueError(f"launch of {kernel.name}: {g} groups x {n} work-items on axis {'xyz'[axis]} = {g * n} "
                       f"exceeds the {MAX_GLOBAL} GLOBALSIZE_{'XYZ'[axis]} holds; oversized dispatch")
  wave = chip.threadsize_base * (2 if kernel.threadsize else 1)
  waves = -(-threads // wave)
  fit = chip.waves_that_fit(kernel.full_regs, wave)
  if waves > fit:
    raise ValueError(f"launch of {kernel.name}: a workgroup of {threads} work-items needs {waves} waves of {wave} "
                     f"resident at once, but {kernel.full_regs} full vec4 registers per thread let only {fit} fit "
                     f"one SP of {chip.name} (register file {chip.reg_size_vec4} vec4 x {chip.wave_granularity}): "
                     "too many registers for this workgroup size; use a smaller workgroup")


class Program:
  """A kernel binary resident in a GPU object; call with argument values (buffer GPU addresses, scalars)."""

  def __init__(self, dev: QCOMDevice, blob: bytes, dispatch_packet: str = "CP_EXEC_CS"):
    self.dev = dev
    self.kernel = kb.parse(blob)
    check_binary(dev.chip, self.kernel)
    self.dispatch_packet = dispatch_packet
    self.code = dev.alloc(max(self.kernel.instrlen, 1) * kb.CODE_ALIGN, readonly=True)
    dev.view(self.code, 0, len(self.kernel.code))[:] = self.kernel.code

  @property
  def name(self) -> str:
    return self.kernel.name

  def constants(self, args: list[int]) -> bytes:
    """The constant file: each argument's value at its dword (a buffer's 64-bit GPU address, or a scalar's bits)."""
    kernel = self.kernel
    if len(args) != len(kernel.args):
      raise ValueError(f"kernel {kernel.name} takes {len(kernel.args)} arguments, got {len(args)}")
    words = array("I", bytes(kernel.constlen * 16))
    for arg, value in zip(kernel.args, args):
      data = int(value).to_bytes(arg.nbytes, "little", signed=int(value) < 0)
      words[arg.const_dword:arg.const_dword + arg.nbytes // 4] = array("I", data)
    return words.tobytes()

  def encode(self, cs, args: list[int], groups: tuple[int, int, int], local: tuple[int, int, int]) -> None:
    """Append the state and launch of one dispatch to the command stream `cs`."""
    kernel, dev = self.kernel, self.dev
    check_launch(dev.chip, kernel, groups, local)
    consts = self.constants(args)
    cs.hlsq_invalidate()
    cs.cs_program(self.code.gpuaddr, kernel.instrlen, kernel.full_regs, kernel.half_regs, kernel.threadsize_name,
                  kernel.constlen, shared_size_field(kernel.shared_bytes), kernel.branchstack)
    cs.cs_sysvals(*kernel.sysvals, threadsize=kernel.threadsize_name)
    cs.cs_ndrange(local, groups)
    cs.load_state6_frag("ST6_SHADER", "SS6_INDIRECT", 0, kernel.instrlen, self.code.gpuaddr)
    if kernel.constlen:
      cs.load_state6_frag("ST6_CONSTANTS", "SS6_DIRECT", 0, kernel.constlen, data=consts)
    if self.dispatch_packet == "CP_RUN_OPENCL":
      cs.run_opencl()
    else:
      cs.exec_cs(groups)

  def __call__(self, *args: int, groups=(1, 1, 1), local=(1, 1, 1), wait: bool = False) -> int:
    """Dispatch over `groups` workgroups of `local` work-items; returns the kgsl timestamp (queued, unless wait)."""
    cs = self.dev.stream()
    self.encode(cs, list(args), tuple(groups), tuple(local))
    timestamp = self.dev.submit(cs)
    if wait:
      self.dev.synchronize()
    return timestamp
