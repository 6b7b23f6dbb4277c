"""What the simulated CP checks before it runs a dispatch (CP_EXEC_CS or CP_RUN_OPENCL), each failure naming the
register, field or packet the driver got wrong:

  - every register a compute dispatch reads was written in this submission: SP_CS_CTRL_REG0/1, SP_CS_OBJ_START,
    SP_CS_INSTRLEN, SP_CS_CONFIG, HLSQ_CS_CNTL, HLSQ_CS_NDRANGE_0..6, the sysval registers (HLSQ_CS_CNTL_0/1 on a6xx,
    SP_CS_CNTL_0/1 where the chip has them), HLSQ_CS_LAST_LOCAL_SIZE on a7xx;
  - the UCHE was invalidated (a CACHE_INVALIDATE event) and the HLSQ's compute state dropped (HLSQ_INVALIDATE_CMD
    CS_STATE) earlier in the submission;
  - SP_CS_CONFIG.ENABLED and HLSQ_CS_CNTL.ENABLED are set;
  - the shader: SP_CS_OBJ_START is 32-byte aligned and inside a GPU object, SP_CS_INSTRLEN covers the code, the code
    is the stand-in compiler's, and a ST6_SHADER preload (if any) points at the same address and length;
  - registers: FULLREGFOOTPRINT / HALFREGFOOTPRINT at least what the code uses; THREADSIZE the same in
    SP_CS_CTRL_REG0, HLSQ_CS_CNTL_1 (and SP_CS_CNTL_1) and the code;
  - sysvals: the workgroup-id and local-id regids are where the code expects them;
  - constants: CONSTLEN and CONSTANTRAMMODE cover the code's constants, and every constant dword the code reads was
    loaded (CP_LOAD_STATE6_FRAG ST6_CONSTANTS) after the last HLSQ invalidate;
  - shared memory: SP_CS_CTRL_REG1.SHARED_SIZE enables at least what the code declares;
  - the grid: KERNELDIM 1..3, the local size equals the code's required size, GLOBALSIZE = local size x groups on
    every axis, no empty grid, and the workgroup's waves fit the register file at this footprint;
  - arguments: every buffer address lies inside a live GPU object.
"""
from __future__ import annotations

import math

from qcomdrv.sim.compiler import parse_code
from qcomdrv.sim.memory import PageFault

THREADSIZES = ("THREAD64", "THREAD128")
CONST_RAM = {"CONSTLEN_128": 128, "CONSTLEN_192": 192, "CONSTLEN_256": 256, "CONSTLEN_512": 512}


class CPFault(Exception):
  """The command processor (or a shader) faulted; the message says where and why."""


def shared_enabled(field: int) -> int:
  """Bytes SP_CS_CTRL_REG1.SHARED_SIZE enables (a6xx.xml: 0 enables all 32 KiB, n enables (n + 1) KiB)."""
  return 32 << 10 if field == 0 else (field + 1) << 10


class DispatchCheck:
  """The checks of one dispatch on the CP state `cp` (a qcomdrv.sim.cp.CommandProcessor)."""

  def __init__(self, cp, packet: str):
    self.cp = cp
    self.packet = packet

  def fail(self, message: str):
    raise CPFault(f"{self.packet}: {message}")

  def required(self) -> list[str]:
    chip = self.cp.chip
    names = ["SP_CS_CTRL_REG0", "SP_CS_CTRL_REG1", "SP_CS_OBJ_START", "SP_CS_INSTRLEN", "SP_CS_CONFIG",
             "HLSQ_CS_CNTL"] + [f"HLSQ_CS_NDRANGE_{k}" for k in range(7)]
    if chip.gen == "a6xx":
      names += ["HLSQ_CS_CNTL_0", "HLSQ_CS_CNTL_1"]
    else:
      names += ["HLSQ_CS_CNTL_1", "HLSQ_CS_LAST_LOCAL_SIZE"]
    if chip.has_sp_cs_cntl:
      names += ["SP_CS_CNTL_0", "SP_CS_CNTL_1"]
    return names

  def run(self, groups: tuple[int, int, int]) -> tuple[dict, str, tuple[int, int, int]]:
    """(code metadata, OpenCL C source, local size) once every check passed."""
    missing = [name for name in self.required() if not self.cp.written_all(name)]
    if missing:
      self.fail(f"{', '.join(missing)} never written in this submission: the dispatch would run with stale or "
                "undefined state")
    if not self.cp.cache_invalidated:
      self.fail("no CACHE_INVALIDATE event before it in this submission: the shader could read stale UCHE lines of "
                "buffers the CPU rewrote")
    if not self.cp.hlsq_invalidated:
      self.fail("no HLSQ_INVALIDATE_CMD with CS_STATE before it in this submission: the HLSQ may use cached state")
    for name in ("SP_CS_CONFIG", "HLSQ_CS_CNTL"):
      if not self.cp.fields(name)["ENABLED"]:
        self.fail(f"{name}.ENABLED is 0: the compute stage is disabled")
    meta, source = self.fetch_code()
    self.check_program(meta)
    self.check_sysvals(meta)
    local = self.check_grid(meta, groups)
    self.check_constants(meta)
    return meta, source, local

  def fetch_code(self) -> tuple[dict, str]:
    cp = self.cp
    start, instrlen = cp.value("SP_CS_OBJ_START"), cp.value("SP_CS_INSTRLEN")
    if start == 0 or start % 32:
      self.fail(f"SP_CS_OBJ_START = 0x{start:x}: the shader address must be a non-zero multiple of 32")
    if instrlen == 0:
      self.fail("SP_CS_INSTRLEN = 0: no instructions")
    try:
      code = cp.memory.read(start, instrlen * 128, "the shader fetch at SP_CS_OBJ_START")
    except PageFault as e:
      self.fail(f"{e} (SP_CS_OBJ_START 0x{start:x}, SP_CS_INSTRLEN {instrlen})")
    try:
      meta, source = parse_code(code)
    except ValueError as e:
      self.fail(str(e))
    if cp.shader_preload is not None and cp.shader_preload != (start, instrlen):
      address, units = cp.shader_preload
      self.fail(f"the ST6_SHADER preload (0x{address:x}, NUM_UNIT {units}) differs from SP_CS_OBJ_START 0x{start:x} "
                f"/ SP_CS_INSTRLEN {instrlen}")
    return meta, source

  def check_program(self, meta: dict) -> None:
    cp = self.cp
    ctrl0 = cp.fields("SP_CS_CTRL_REG0")
    for field, key in (("FULLREGFOOTPRINT", "full_regs"), ("HALFREGFOOTPRINT", "half_regs")):
      if ctrl0[field] < meta[key]:
        self.fail(f"SP_CS_CTRL_REG0.{field} = {ctrl0[field]} but the shader uses {meta[key]} registers: waves would "
                  "overwrite each other's registers")
    want = THREADSIZES[meta["threadsize"]]
    sizes = {"SP_CS_CTRL_REG0": ctrl0["THREADSIZE"], "HLSQ_CS_CNTL_1": cp.fields("HLSQ_CS_CNTL_1")["THREADSIZE"]}
    if cp.chip.has_sp_cs_cntl:
      sizes["SP_CS_CNTL_1"] = cp.fields("SP_CS_CNTL_1")["THREADSIZE"]
    wrong = {name: value for name, value in sizes.items() if value != want}
    if wrong:
      self.fail(f"THREADSIZE {wrong} but the shader was compiled for {want} (the fields must agree)")
    cntl = cp.fields("HLSQ_CS_CNTL")
    ram = CONST_RAM.get(str(cp.fields("SP_CS_CTRL_REG1")["CONSTANTRAMMODE"]), 0)
    if cntl["CONSTLEN"] < meta["constlen"] or ram < cntl["CONSTLEN"]:
      self.fail(f"HLSQ_CS_CNTL.CONSTLEN = {cntl['CONSTLEN']} with CONSTANTRAMMODE for {ram} vec4, but the shader "
                f"reads {meta['constlen']} vec4 constants")
    enabled = shared_enabled(cp.fields("SP_CS_CTRL_REG1")["SHARED_SIZE"])
    if enabled < meta["shared_bytes"]:
      self.fail(f"SP_CS_CTRL_REG1.SHARED_SIZE enables {enabled} bytes of shared memory, the shader declares "
                f"{meta['shared_bytes']}")

  def check_sysvals(self, meta: dict) -> None:
    cp = self.cp
    names = ("WGIDCONSTID", "WGSIZECONSTID", "WGOFFSETCONSTID", "LOCALIDREGID")
    expected = dict(zip(names, meta["sysvals"][:4]))
    registers = ["HLSQ_CS_CNTL_0"] if cp.chip.gen == "a6xx" else []
    registers += ["SP_CS_CNTL_0"] if cp.chip.has_sp_cs_cntl else []
    for reg in registers:
      got = cp.fields(reg)
      wrong = {f: (got[f], want) for f, want in expected.items() if got[f] != want}
      if wrong:
        self.fail(f"{reg} {', '.join(f'{f} = 0x{g:x} (shader: 0x{w:x})' for f, (g, w) in wrong.items())}: the "
                  "hardware would deliver workgroup and local ids to registers the shader does not read")
    linear = cp.fields("HLSQ_CS_CNTL_1")["LINEARLOCALIDREGID"]
    if linear != meta["sysvals"][4]:
      self.fail(f"HLSQ_CS_CNTL_1.LINEARLOCALIDREGID = 0x{linear:x}, the shader expects 0x{meta['sysvals'][4]:x}")

  def check_grid(self, meta: dict, groups: tuple[int, int, int]) -> tuple[int, int, int]:
    cp = self.cp
    nd = cp.fields("HLSQ_CS_NDRANGE_0")
    local = (nd["LOCALSIZEX"] + 1, nd["LOCALSIZEY"] + 1, nd["LOCALSIZEZ"] + 1)
    if not 1 <= nd["KERNELDIM"] <= 3:
      self.fail(f"HLSQ_CS_NDRANGE_0.KERNELDIM = {nd['KERNELDIM']}: 1, 2 or 3")
    if any(meta["local_size"]) and tuple(meta["local_size"]) != local:
      self.fail(f"HLSQ_CS_NDRANGE_0 local size {local}, the shader requires {tuple(meta['local_size'])}")
    if min(groups) < 1:
      self.fail(f"an empty grid of {groups} workgroups")
    for axis, k in zip("XYZ", (1, 3, 5)):
      glob = cp.value(f"HLSQ_CS_NDRANGE_{k}")
      want = local["XYZ".index(axis)] * groups["XYZ".index(axis)]
      if glob != want:
        self.fail(f"HLSQ_CS_NDRANGE_{k}.GLOBALSIZE_{axis} = {glob}, but local size {local} x {groups} groups is {want}")
    if cp.chip.has_cs_last_local_size:
      last = cp.fields("HLSQ_CS_LAST_LOCAL_SIZE")
      last_size = (last["LOCALSIZEX"] + 1, last["LOCALSIZEY"] + 1, last["LOCALSIZEZ"] + 1)
      if last_size != local:
        self.fail(f"HLSQ_CS_LAST_LOCAL_SIZE {last_size} differs from the local size {local}: the last workgroup "
                  "would run short")
    threadsize = cp.chip.threadsize_base * (2 if meta["threadsize"] else 1)
    waves = -(-math.prod(local) // threadsize)
    fit = cp.chip.waves_that_fit(cp.fields("SP_CS_CTRL_REG0")["FULLREGFOOTPRINT"], threadsize)
    if waves > fit:
      self.fail(f"a workgroup of {math.prod(local)} work-items needs {waves} waves resident, only {fit} fit at "
                "this register footprint: the dispatch would hang")
    return local

  def check_constants(self, meta: dict) -> None:
    cp = self.cp
    limit = cp.fields("HLSQ_CS_CNTL")["CONSTLEN"] * 4
    for param in meta["params"]:
      dwords = range(param["const_dword"], param["const_dword"] + param["nbytes"] // 4)
      where = f"c{param['const_dword'] // 4}.{'xyzw'[param['const_dword'] % 4]}"
      if dwords.stop > limit:
        self.fail(f"argument {param['name']} in constant {where} lies beyond HLSQ_CS_CNTL.CONSTLEN")
      if any(d not in cp.const_loaded for d in dwords):
        self.fail(f"argument {param['name']} (constant {where}) was never loaded by CP_LOAD_STATE6_FRAG "
                  "ST6_CONSTANTS after the last HLSQ invalidate")

  def arguments(self, meta: dict) -> list[int | bytes]:
    """Host addresses of the buffers, and the bytes of the scalars, the shader's arguments hold."""
    cp = self.cp
    out: list[int | bytes] = []
    for param in meta["params"]:
      words = cp.consts[param["const_dword"]:param["const_dword"] + param["nbytes"] // 4]
      raw = b"".join(w.to_bytes(4, "little") for w in words)
      if param["kind"] != "buffer":
        out.append(raw)
        continue
      address = int.from_bytes(raw, "little")
      try:
        out.append(cp.memory.translate(address, 1, f"argument {param['name']} of kernel {meta['name']}"))
      except PageFault as e:
        self.fail(str(e))
    return out
