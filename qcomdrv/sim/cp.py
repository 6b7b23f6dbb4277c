"""The simulated command processor: decodes submitted IBs packet by packet (with the generated tables the driver
encodes from), keeps the register file and the compute constant file, checks the state a dispatch needs, and runs
dispatches through qcomdrv.sim.executor.

State model: each submission starts from unknown state (kgsl may run other contexts between two submissions, and the
driver cannot rely on what an earlier submission left), so a dispatch only uses registers, constants and a shader
preload written earlier in the same submission. HLSQ_INVALIDATE_CMD.CS_STATE drops loaded constants and the shader
preload, as it drops the HLSQ's cached copies on hardware.

Faults raise CPFault with a message naming the packet, register or field; the device model (qcomdrv.sim.kgsl) turns
them into a faulted, invalidated context and a kernel-log line. CP_WAIT_REG_MEM whose condition does not hold stops
execution there (`execute` returns the index); the device model resumes it later.
"""
from __future__ import annotations

import ctypes
import time

from qcomdrv.chips import ChipInfo
from qcomdrv.decode import header_problem, packet_span
from qcomdrv.regs import packets, registers
from qcomdrv.sim.dispatch import CPFault, DispatchCheck
from qcomdrv.sim.executor import ExecutionError, Executor
from qcomdrv.sim.memory import PageFault, SimMemory

COMPARE = {"WRITE_ALWAYS": lambda a, b: True, "WRITE_LT": lambda a, b: a < b, "WRITE_LE": lambda a, b: a <= b,
           "WRITE_EQ": lambda a, b: a == b, "WRITE_NE": lambda a, b: a != b, "WRITE_GE": lambda a, b: a >= b,
           "WRITE_GT": lambda a, b: a > b}
FLUSH_EVENTS = {"CACHE_FLUSH_TS", "CACHE_FLUSH7", "CACHE_CLEAN"}
INVALIDATE_EVENTS = {"CACHE_INVALIDATE", "CACHE_INVALIDATE7", "CACHE_FLUSH7"}
ALWAYS_ON_NS = 52  # the always-on counter ticks at 19.2 MHz (about 52 ns)


def gpu_counter() -> int:
  return time.monotonic_ns() // ALWAYS_ON_NS


class CommandProcessor:
  """The CP of one context's queue."""

  def __init__(self, chip: ChipInfo, memory: SimMemory, executor: Executor):
    self.chip = chip
    self.memory = memory
    self.executor = executor
    self.regs = registers(chip.gen)
    self.pm4 = packets(chip.gen)
    self.file: dict[int, int] = {}
    self.consts = [0] * (chip.const_vec4 * 4)
    self.always_on = self.regs["CP_ALWAYS_ON_COUNTER"].offset
    self.dispatches = 0
    self.begin()

  def begin(self) -> None:
    """A new submission: nothing written yet (see the module docstring)."""
    self.written: set[int] = set()
    self.const_loaded: set[int] = set()
    self.shader_preload: tuple[int, int] | None = None
    self.cache_invalidated = False
    self.hlsq_invalidated = False
    self.unflushed: str | None = None  # the last dispatch whose results no flush has pushed to memory yet
    self.marker: str | None = None

  # ---- registers ----
  def value(self, name: str) -> int:
    reg = self.regs[name]
    words = [self.file.get(reg.offset + k, 0) for k in range(reg.dwords)]
    return words[0] | (words[1] << 32 if reg.dwords == 2 else 0)

  def written_all(self, name: str) -> bool:
    reg = self.regs[name]
    return all(reg.offset + k in self.written for k in range(reg.dwords))

  def fields(self, name: str) -> dict:
    return self.regs[name].decode(self.value(name))

  def read_register(self, offset: int) -> int:
    if offset in (self.always_on, self.always_on + 1):
      counter = gpu_counter()
      return counter & 0xFFFFFFFF if offset == self.always_on else counter >> 32
    return self.file.get(offset, 0)

  # ---- execution ----
  def execute(self, words: list[int], start: int = 0) -> int | None:
    """Run packets from index `start`; None when the IB is done, else the index of a stalled CP_WAIT_REG_MEM.

    Raises:
      CPFault: a malformed or unsupported packet, a memory fault, or a dispatch missing state.
    """
    i = start
    while i < len(words):
      problem = header_problem(words[i])
      if problem is not None:
        raise CPFault(f"IB dword {i}: {problem}: the CP raises an opcode error")
      kind, what, count = packet_span(words[i])
      if i + 1 + count > len(words):
        raise CPFault(f"IB dword {i}: the packet needs {count} payload dwords, the IB has {len(words) - i - 1} left")
      payload = words[i + 1:i + 1 + count]
      if kind == "PKT4":
        self.write_registers(what, payload)
      elif not self.packet(what, payload, i):
        return i
      i += 1 + count
    return None

  def write_registers(self, offset: int, values: list[int]) -> None:
    for k, value in enumerate(values):
      self.file[offset + k] = value
      self.written.add(offset + k)
    invalidate = self.regs["HLSQ_INVALIDATE_CMD"]
    if offset <= invalidate.offset < offset + len(values) and invalidate.decode(self.file[invalidate.offset])[
        "CS_STATE"]:
      self.hlsq_invalidated = True
      self.const_loaded.clear()
      self.shader_preload = None

  def packet(self, opcode: int, payload: list[int], at: int) -> bool:
    """Execute one type-7 packet; False when it stalls."""
    name = self.pm4.names.get(opcode)
    handler = {"CP_NOP": self.nop, "CP_SET_MARKER": self.set_marker, "CP_WAIT_FOR_IDLE": self.nop,
               "CP_EVENT_WRITE": self.event_write, "CP_EVENT_WRITE7": self.event_write7,
               "CP_WAIT_REG_MEM": self.wait_reg_mem, "CP_REG_TO_MEM": self.reg_to_mem, "CP_MEM_WRITE": self.mem_write,
               "CP_LOAD_STATE6_FRAG": self.load_state6, "CP_EXEC_CS": self.exec_cs,
               "CP_RUN_OPENCL": self.run_opencl}.get(name)
    if name is None:
      raise CPFault(f"IB dword {at}: opcode 0x{opcode:02x} is not a {self.chip.gen} packet: illegal opcode")
    if handler is None:
      raise CPFault(f"IB dword {at}: {name} is not simulated (the simulator models the packets qcomdrv emits for "
                    "compute)")
    try:
      return handler(payload) is not False
    except PageFault as e:
      raise CPFault(f"IB dword {at}: {name}: {e}") from None

  def nop(self, payload: list[int]) -> None:
    pass

  def set_marker(self, payload: list[int]) -> None:
    self.need(payload, 1, "CP_SET_MARKER")
    self.marker = str(self.pm4.dword("CP_SET_MARKER", 0).decode(payload[0])["MODE"])

  def need(self, payload: list[int], count: int, name: str) -> None:
    if len(payload) < count:
      raise CPFault(f"{name} with {len(payload)} payload dwords; it needs {count}")

  def write_timestamp(self, address: int, value: int, nbytes: int, what: str) -> None:
    self.memory.write(address, value.to_bytes(nbytes, "little"), what)

  def event(self, event: str) -> None:
    if event in INVALIDATE_EVENTS:
      self.cache_invalidated = True
    if event in FLUSH_EVENTS:
      self.unflushed = None

  def event_write(self, payload: list[int]) -> None:
    self.need(payload, 1, "CP_EVENT_WRITE")
    fields = self.pm4.dword("CP_EVENT_WRITE", 0).decode(payload[0])
    self.event(str(fields["EVENT"]))
    if len(payload) >= 4:
      address = payload[1] | (payload[2] << 32)
      if fields["TIMESTAMP"]:
        self.write_timestamp(address, gpu_counter(), 8, f"CP_EVENT_WRITE {fields['EVENT']}")
      else:
        self.write_timestamp(address, payload[3], 4, f"CP_EVENT_WRITE {fields['EVENT']}")

  def event_write7(self, payload: list[int]) -> None:
    self.need(payload, 1, "CP_EVENT_WRITE7")
    fields = self.pm4.dword("CP_EVENT_WRITE7", 0).decode(payload[0])
    self.event(str(fields["EVENT"]))
    if not fields["WRITE_ENABLED"]:
      return
    if fields["WRITE_DST"] != "EV_DST_RAM":
      raise CPFault(f"CP_EVENT_WRITE7 {fields['EVENT']}: WRITE_DST {fields['WRITE_DST']} is not simulated")
    source = fields["WRITE_SRC"]
    self.need(payload, 5 if source == "EV_WRITE_USER_64B" else 4 if source == "EV_WRITE_USER_32B" else 3,
              f"CP_EVENT_WRITE7 {source}")
    address = payload[1] | (payload[2] << 32)
    what = f"CP_EVENT_WRITE7 {fields['EVENT']}"
    if source == "EV_WRITE_USER_32B":
      self.write_timestamp(address, payload[3], 4, what)
    elif source == "EV_WRITE_USER_64B":
      self.write_timestamp(address, payload[3] | (payload[4] << 32), 8, what)
    else:
      self.write_timestamp(address, gpu_counter(), 8, what)

  def wait_reg_mem(self, payload: list[int]) -> bool:
    self.need(payload, 5, "CP_WAIT_REG_MEM")
    fields = self.pm4.dword("CP_WAIT_REG_MEM", 0).decode(payload[0])
    address = payload[1] | (payload[2] << 32)
    if fields["POLL"] == "POLL_MEMORY":
      current = self.memory.read_u32(address, "CP_WAIT_REG_MEM poll")
    elif fields["POLL"] == "POLL_REGISTER":
      current = self.read_register(payload[1])
    else:
      raise CPFault(f"CP_WAIT_REG_MEM POLL {fields['POLL']} is not simulated")
    masked, ref = current & payload[4], payload[3] & payload[4]
    if fields["SIGNED_COMPARE"]:
      masked, ref = masked - ((masked >> 31) << 32), ref - ((ref >> 31) << 32)
    compare = COMPARE.get(str(fields["FUNCTION"]))
    if compare is None:
      raise CPFault(f"CP_WAIT_REG_MEM FUNCTION {fields['FUNCTION']} is not a cp_cond_function")
    return compare(masked, ref)

  def reg_to_mem(self, payload: list[int]) -> None:
    self.need(payload, 3, "CP_REG_TO_MEM")
    fields = self.pm4.dword("CP_REG_TO_MEM", 0).decode(payload[0])
    count = max(int(fields["CNT"]), 1)  # adreno_pm4.xml: "number of registers/dwords copied is max(CNT, 1)"
    data = b"".join(self.read_register(fields["REG"] + k).to_bytes(4, "little") for k in range(count))
    self.memory.write(payload[1] | (payload[2] << 32), data, f"CP_REG_TO_MEM of {self.regs.name_at(fields['REG'])}")

  def mem_write(self, payload: list[int]) -> None:
    self.need(payload, 3, "CP_MEM_WRITE")
    data = b"".join(v.to_bytes(4, "little") for v in payload[2:])
    self.memory.write(payload[0] | (payload[1] << 32), data, "CP_MEM_WRITE")

  def load_state6(self, payload: list[int]) -> None:
    self.need(payload, 3, "CP_LOAD_STATE6_FRAG")
    f = self.pm4.dword("CP_LOAD_STATE6_FRAG", 0).decode(payload[0])
    address = payload[1] | (payload[2] << 32)
    if f["STATE_BLOCK"] != "SB6_CS_SHADER":
      raise CPFault(f"CP_LOAD_STATE6_FRAG to {f['STATE_BLOCK']}: only the compute stage (SB6_CS_SHADER) is simulated")
    if f["STATE_TYPE"] == "ST6_SHADER":
      if f["STATE_SRC"] != "SS6_INDIRECT":
        raise CPFault(f"CP_LOAD_STATE6_FRAG ST6_SHADER from {f['STATE_SRC']}: only SS6_INDIRECT is simulated")
      self.shader_preload = (address, f["NUM_UNIT"])
      return
    if f["STATE_TYPE"] != "ST6_CONSTANTS":
      raise CPFault(f"CP_LOAD_STATE6_FRAG {f['STATE_TYPE']} is not simulated (qcomdrv passes buffers as constants)")
    nwords = f["NUM_UNIT"] * 4
    if f["STATE_SRC"] == "SS6_DIRECT":
      if len(payload) - 3 != nwords:
        raise CPFault(f"CP_LOAD_STATE6_FRAG ST6_CONSTANTS SS6_DIRECT: NUM_UNIT {f['NUM_UNIT']} needs {nwords} "
                      f"inline dwords, the packet has {len(payload) - 3}")
      data = payload[3:]
    elif f["STATE_SRC"] == "SS6_INDIRECT":
      raw = self.memory.read(address, nwords * 4, "CP_LOAD_STATE6_FRAG constants")
      data = [int.from_bytes(raw[k:k + 4], "little") for k in range(0, len(raw), 4)]
    else:
      raise CPFault(f"CP_LOAD_STATE6_FRAG ST6_CONSTANTS from {f['STATE_SRC']} is not simulated")
    first = f["DST_OFF"] * 4
    if first + nwords > len(self.consts):
      raise CPFault(f"CP_LOAD_STATE6_FRAG constants c{f['DST_OFF']}..c{f['DST_OFF'] + f['NUM_UNIT'] - 1} exceed the "
                    f"{len(self.consts) // 4} vec4 constant file of {self.chip.name}")
    self.consts[first:first + nwords] = data
    self.const_loaded.update(range(first, first + nwords))

  def exec_cs(self, payload: list[int]) -> None:
    self.need(payload, 4, "CP_EXEC_CS")
    self.dispatch((payload[1], payload[2], payload[3]), "CP_EXEC_CS")

  def run_opencl(self, payload: list[int]) -> None:
    missing = [n for n in ("HLSQ_CS_KERNEL_GROUP_X", "HLSQ_CS_KERNEL_GROUP_Y", "HLSQ_CS_KERNEL_GROUP_Z")
               if not self.written_all(n)]
    if missing:
      raise CPFault(f"CP_RUN_OPENCL takes its grid from {', '.join(missing)}, never written in this submission")
    groups = tuple(self.value(f"HLSQ_CS_KERNEL_GROUP_{axis}") for axis in "XYZ")
    self.dispatch(groups, "CP_RUN_OPENCL")

  def dispatch(self, groups: tuple[int, int, int], packet: str) -> None:
    check = DispatchCheck(self, packet)
    meta, source, local = check.run(groups)
    args = check.arguments(meta)
    keep = [ctypes.create_string_buffer(value, len(value)) if isinstance(value, bytes) else None for value in args]
    hosts = [ctypes.addressof(k) if k is not None else v for k, v in zip(keep, args)]
    try:
      self.executor.run(meta, source, hosts, groups, local)
    except ExecutionError as e:
      raise CPFault(f"{packet}: {e}") from None
    self.dispatches += 1
    self.unflushed = f"{packet} of kernel {meta['name']}"
