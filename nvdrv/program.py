"""Kernels on an NVDevice: load a cubin kernel, check a launch, build its QMD and constant bank 0, queue it.

A launch is three pieces of memory the compute engine reads (QMD and constant bank carved from the device's launch
arena in HBM, written by the CPU through BAR1; the pushbuffer in the channel's pinned host command ring):

  constant bank 0   the driver area CUDA's ABI expects below the parameters, then the parameters at
                    Kernel.param_base (0x210 on sm_90). Driver-area words (FACTS.md 11, measured from libcuda on the
                    H100): 0x00 blockDim.xyz, 0x0c gridDim.xyz, 0x18 shared window (u64), 0x20 local window (u64),
                    0x28 initial stack pointer, 0x208 global memory descriptor (0, as libcuda leaves it).
  QMD               V04_00 with QMD_TYPE 2 on Hopper (FACTS.md 11): code address, register count, grid and block,
                    shared memory and carve-out, local memory, constant bank 0.
  pushbuffer        SEND_PCAS_A (QMD address >> 8) + SEND_SIGNALING_PCAS2_B (INVALIDATE_COPY_SCHEDULE).

Every check on the launch (grid, block, shared memory, parameter count and sizes, freed buffers) happens before a
single word is queued, and raises ValueError naming the values.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from nvdrv import qmd
from nvdrv.cubin import SM90_RESERVED_SHARED, Kernel, apply_relocations, parse_cubin
from nvdrv.memory import GPUMemory
from nvdrv.pushbuf import PushBuffer

MAX_THREADS_PER_BLOCK = 1024
MAX_GRID = (2**31 - 1, 65535, 65535)
MAX_SHARED_PER_BLOCK = 227 << 10   # 228 KiB carve-out minus the 1 KiB the sm_90 ABI reserves per CTA
MAX_SHARED_CARVEOUT = 228 << 10
REGISTERS_PER_SM = 65536
STACK_TOP = 0x00FFFDC0             # initial stack pointer libcuda writes to c[0x0][0x28] (FACTS.md 11)
CODE_ALIGN = 128                   # .text sections' sh_addralign in ptxas output
STACK_RESERVE = 0x240              # the distance from that pointer to the 16 MiB top of the local window


@dataclass
class LaunchSlot:
  """Arena memory for one launch: QMD at GPU address `qmd`, constant bank 0 at `cbuf`; the *_cpu addresses are
  where the CPU writes them (a BAR1 mapping of the same device memory)."""
  qmd: int
  cbuf: int
  qmd_cpu: int
  cbuf_cpu: int


class Program:
  """Kernel `name` of `cubin` (bytes), uploaded to device memory of `dev`.

  Raises:
    nvdrv.cubin.KernelNotFound: the cubin has no kernel of that name.
    ValueError: the cubin needs what nvdrv does not load (relocations, global data).
  """

  def __init__(self, dev, cubin: bytes, name: str):
    self.dev = dev
    module = parse_cubin(cubin)
    self.kernel: Kernel = module.kernel(name)
    if any(s.relocations or s.bank is None for s in module.segments):
      raise ValueError(f"kernel {name!r} uses global variables; nvdrv loads kernels whose data is in constant "
                       f"banks only (no .global variables)")
    # constant banks other than 0 (ptxas puts wide literals there): uploaded once, bound by every launch's QMD
    self.banks: list[tuple[int, GPUMemory, int]] = []
    for seg in module.segments:
      if seg.bank and (seg.name.endswith(f".{name}") or seg.name == f".nv.constant{seg.bank}"):
        if dev.info.qmd_version != "V04_00":
          raise ValueError(f"kernel {name!r} needs constant bank {seg.bank}; nvdrv binds extra banks on QMD V04 only")
        mem = dev.mem.alloc_device(max(seg.size, 1), cpu_access=True)
        dev.osif.write(mem.cpu, seg.data or bytes(seg.size))
        self.banks.append((seg.bank, mem, seg.size))
    self.sections = self._layout(module)
    last = next(reversed(self.sections))
    size = self.sections[last] + len(module.code_sections[last])
    self.code = dev.mem.alloc_device(size + 4096, cpu_access=True)  # instruction prefetch reads past the end
    dev.osif.write(self.code.cpu, self._relocated_code(module))
    self.local_per_thread = (self.kernel.min_stack_size + STACK_RESERVE + 15) & ~15 if self.kernel.min_stack_size else 0
    self.cbuf_size = (self.kernel.param_base + self.kernel.param_size + 63) & ~63
    self._qmd_cache: dict[tuple, qmd.Qmd] = {}
    self._plans: dict[tuple, LaunchPlan] = {}

  def _layout(self, module) -> dict[str, int]:
    """Offset of each code section in the upload: the kernel at 0, then each function it calls (CODE_ALIGN apart)."""
    out, end = {}, 0
    for sec in module.code_closure(self.kernel.name):
      out[sec] = end
      end = (end + len(module.code_sections[sec]) + CODE_ALIGN - 1) // CODE_ALIGN * CODE_ALIGN
    return out

  def _relocated_code(self, module) -> bytes:
    """The uploaded code with relocations applied (relocatable output, e.g. nvJitLink's, and calls into separate
    function sections leave some): code symbols resolve to their GPU address, shared-memory symbols to their offset
    in the CTA's shared window. Anything else (an external function, a global variable) raises with its name."""
    addresses = {}
    for sym in module.symbols:
      if sym.section in self.sections:
        addresses[sym.name] = self.code.va + self.sections[sym.section] + sym.value
      elif sym.section.startswith(".nv.shared"):
        addresses[sym.name] = sym.value
    image = bytearray()
    for sec, off in self.sections.items():
      code = module.code_sections[sec]
      relocs = [r for r in module.relocations if r.section == sec]
      try:
        code = apply_relocations(code, relocs, addresses) if relocs else code
      except (KeyError, NotImplementedError) as e:
        raise ValueError(f"kernel {self.kernel.name!r}: cannot load its relocations: {e}") from e
      image += bytes(off - len(image)) + code
    return bytes(image)

  # ---- checks ----
  def check(self, args: tuple, grid: tuple[int, int, int], block: tuple[int, int, int], dynamic_shared: int) -> None:
    k = self.kernel
    if len(grid) != 3 or len(block) != 3 or any(not isinstance(v, int) or v < 1 for v in (*grid, *block)):
      raise ValueError(f"kernel {k.name}: grid {grid} and block {block} must be three positive integers each")
    if any(g > lim for g, lim in zip(grid, MAX_GRID)):
      raise ValueError(f"kernel {k.name}: grid {grid} exceeds the hardware limits {MAX_GRID}")
    threads = block[0] * block[1] * block[2]
    limit = MAX_THREADS_PER_BLOCK
    if k.max_threads:
      limit = min(limit, k.max_threads[0] * k.max_threads[1] * k.max_threads[2])
    if threads > limit or (k.reqntid and tuple(block) != k.reqntid):
      raise ValueError(f"kernel {k.name}: block {block} ({threads} threads) is over the {limit}-thread limit or "
                       f"differs from its .reqntid {k.reqntid}")
    if k.registers * threads > REGISTERS_PER_SM:
      raise ValueError(f"kernel {k.name}: {k.registers} registers x {threads} threads exceeds the {REGISTERS_PER_SM} "
                       f"registers of an SM; use smaller blocks")
    shared = self.shared_bytes(dynamic_shared)
    if dynamic_shared < 0 or shared - SM90_RESERVED_SHARED > MAX_SHARED_PER_BLOCK:
      raise ValueError(f"kernel {k.name}: {k.static_shared} static + {dynamic_shared} dynamic bytes of shared memory "
                       f"exceed the {MAX_SHARED_PER_BLOCK} bytes a block can have on sm_90")
    self.check_args(args)

  def check_args(self, args: tuple) -> None:
    k = self.kernel
    if len(args) != len(k.params):
      raise ValueError(f"kernel {k.name} takes {len(k.params)} parameters "
                       f"({', '.join(str(p.size) + ' B' for p in k.params)}); got {len(args)}")
    for param, arg in zip(k.params, args):
      if isinstance(arg, GPUMemory):
        arg.check_live(f"kernel {k.name} parameter {param.ordinal}")
        if param.size != 8:
          raise ValueError(f"kernel {k.name} parameter {param.ordinal} is {param.size} bytes; a buffer address is 8")
      elif isinstance(arg, (bytes, bytearray)) and len(arg) != param.size:
        raise ValueError(f"kernel {k.name} parameter {param.ordinal} is {param.size} bytes; got {len(arg)} bytes")

  def shared_bytes(self, dynamic_shared: int) -> int:
    base = self.kernel.shared_size or SM90_RESERVED_SHARED
    return base + dynamic_shared

  # ---- building ----
  def pack_args(self, args: tuple) -> bytes:
    out = bytearray(self.kernel.param_size)
    for param, arg in zip(self.kernel.params, args):
      out[param.offset:param.offset + param.size] = self.pack_arg(param, arg)
    return bytes(out)

  def pack_arg(self, param, arg) -> bytes:
    """The bytes of one argument for kernel parameter `param` (a GPUMemory passes its address)."""
    if isinstance(arg, GPUMemory):
      return struct.pack("<Q", arg.va)
    if isinstance(arg, (bytes, bytearray)):
      return bytes(arg)
    if isinstance(arg, float):
      return struct.pack("<f" if param.size == 4 else "<d", arg)
    if isinstance(arg, int):  # a negative value as two's complement: an int32 Variable of -3 is ff ff ff fd
      try:
        return arg.to_bytes(param.size, "little", signed=arg < 0)
      except OverflowError:
        raise ValueError(f"kernel {self.kernel.name} parameter {param.ordinal}: {arg} does not fit its {param.size} "
                         f"bytes") from None
    raise TypeError(f"kernel {self.kernel.name} parameter {param.ordinal}: cannot pass {type(arg).__name__}")

  def constant_bank(self, params: bytes, grid, block, dynamic_shared: int) -> bytes:
    cb = bytearray(self.cbuf_size)
    struct.pack_into("<3I3I", cb, 0x00, *block, *grid)
    struct.pack_into("<QQI", cb, 0x18, self.dev.shared_window, self.dev.local_window, STACK_TOP)
    struct.pack_into("<I", cb, 0x2C, dynamic_shared)
    cb[self.kernel.param_base:self.kernel.param_base + len(params)] = params
    return bytes(cb)

  def qmd(self, cbuf: int, grid, block, dynamic_shared: int) -> qmd.Qmd:
    """This launch's QMD: a cached template for the geometry, with the constant-bank address filled in."""
    key = (grid, block, dynamic_shared, self.dev.cwd_membar, self.dev.qmd_invalidate)
    template = self._qmd_cache.get(key)
    if template is None:
      template = self._qmd_cache[key] = self._build_qmd(cbuf, grid, block, dynamic_shared)
    q = template.copy()
    if q.version == "V03_00":
      q.set("CONSTANT_BUFFER_ADDR_LOWER(0)", cbuf & 0xFFFFFFFF).set("CONSTANT_BUFFER_ADDR_UPPER(0)", cbuf >> 32)
    else:
      q.set("CONSTANT_BUFFER_ADDR_LOWER_SHIFTED6(0)", (cbuf >> 6) & 0xFFFFFFFF)
      q.set("CONSTANT_BUFFER_ADDR_UPPER_SHIFTED6(0)", cbuf >> 38)
    return q

  def _build_qmd(self, cbuf: int, grid, block, dynamic_shared: int) -> qmd.Qmd:
    shared = self.shared_bytes(dynamic_shared)
    q = qmd.build(self.dev.info.qmd_version, program=self.code.va, registers=self.kernel.registers, grid=grid,
                  block=block, shared_bytes=shared, cbuf0=cbuf, cbuf0_size=self.cbuf_size, local_bytes=0,
                  max_shared=MAX_SHARED_CARVEOUT, barriers=max(self.kernel.barriers, 1),
                  cwd_membar=self.dev.cwd_membar, invalidate=self.dev.qmd_invalidate)
    if self.local_per_thread:
      q.set("SHADER_LOCAL_MEMORY_HIGH_SIZE", self.local_per_thread)
    for bank, mem, size in self.banks:
      q.set(f"CONSTANT_BUFFER_VALID({bank})", 1).set(f"CONSTANT_BUFFER_SIZE_SHIFTED4({bank})", (size + 15) >> 4)
      q.set(f"CONSTANT_BUFFER_ADDR_LOWER_SHIFTED6({bank})", (mem.va >> 6) & 0xFFFFFFFF)
      q.set(f"CONSTANT_BUFFER_ADDR_UPPER_SHIFTED6({bank})", mem.va >> 38)
    return q

  def __call__(self, *args, grid=(1, 1, 1), block=(1, 1, 1), dynamic_shared: int = 0, wait: bool = False) -> int:
    """Queue one launch on the compute channel; returns its timeline value (wait=True blocks until done).

    The first launch of a geometry is checked in full and leaves a LaunchPlan behind; later ones with that geometry
    and argument types pack the arguments straight into the plan's prebuilt bytes (a few microseconds of Python)."""
    grid, block = tuple(grid), tuple(block)
    dev = self.dev
    plan = self._plans.get((grid, block, dynamic_shared))
    current = plan is not None and plan.current(dev)
    value = plan.launch(args) if current and self.local_per_thread <= dev.local_per_thread else None
    if value is None:
      value = self._launch_slow(args, grid, block, dynamic_shared)
      if not current:
        self._plans[(grid, block, dynamic_shared)] = LaunchPlan(self, grid, block, dynamic_shared)
    if wait:
      dev.compute.wait(value)
    return value

  def arg_packer(self, types: tuple) -> tuple[struct.Struct, tuple[int, ...]] | None:
    """A struct packing arguments of these Python types into the parameter area in one call, and the positions
    of the GPUMemory arguments (packed as their VA); None where pack_args must decide (bytes arguments, sizes
    it alone handles, a wrong count, a type it refuses)."""
    params = self.kernel.params
    if len(types) != len(params):
      return None
    fmt, pos, memory = "<", 0, []
    for i, (param, t) in enumerate(zip(params, types)):
      if param.offset < pos:
        return None
      if t is GPUMemory and param.size == 8:
        code = "Q"
        memory.append(i)
      elif t is float:
        code = {4: "f", 8: "d"}.get(param.size)
      elif t is int or t is bool:
        code = {1: "B", 2: "H", 4: "I", 8: "Q"}.get(param.size)  # negative values: struct.error, pack_args
      else:
        code = None
      if code is None:
        return None
      fmt += "x" * (param.offset - pos) + code
      pos = param.offset + param.size
    return struct.Struct(fmt), tuple(memory)

  def _launch_slow(self, args: tuple, grid, block, dynamic_shared: int) -> int:
    self.check(args, grid, block, dynamic_shared)
    params = self.pack_args(args)  # raises on a value that does not fit, before any copy counts as awaited
    pb = PushBuffer()
    self.dev.order_compute_after_copies(pb)
    self.dev.ensure_local_memory(self.local_per_thread, pb)
    slot = self.dev.launch_slot(self.cbuf_size)
    cbuf = self.constant_bank(params, grid, block, dynamic_shared)
    self.dev.write(slot.cbuf_cpu, cbuf)
    self.dev.write(slot.qmd_cpu, self.qmd(slot.cbuf, grid, block, dynamic_shared).tobytes())
    self.dev.barrier(pb)
    pb.launch(slot.qmd)
    return self.dev.compute.submit(pb)

  def free(self) -> None:
    self.dev.mem.free(self.code)
    for _, mem, _ in self.banks:
      self.dev.mem.free(mem)


class LaunchPlan:
  """Prebuilt bytes for launches of one Program with one geometry on the current compute channel: the QMD (constant
  bank address to fill), constant bank 0's driver area, and the submission's pushbuffer words (QMD address and the
  timeline payload to fill). Built from the same emitters as the slow path, so both send identical words."""

  def __init__(self, program: Program, grid, block, dynamic_shared: int):
    dev = program.dev
    self.program, self.dev, self.channel = program, dev, dev.compute
    self.barrier_kind, self.cwd_membar, self.invalidate = dev.barrier_kind, dev.cwd_membar, dev.qmd_invalidate
    q = program.qmd(0, grid, block, dynamic_shared)
    self.blob = bytearray(q.tobytes().ljust(512, b"\0") + program.constant_bank(b"", grid, block, dynamic_shared))
    self.blob_words = memoryview(self.blob).cast("I")
    self.need = 512 + ((program.cbuf_size + 255) & ~255)  # what NVDevice.launch_slot takes
    self.param_at = 512 + program.kernel.param_base
    # the constant bank address is the only QMD field that changes per launch: its two words are patched in place
    lower, upper = (("CONSTANT_BUFFER_ADDR_LOWER(0)", "CONSTANT_BUFFER_ADDR_UPPER(0)") if q.version == "V03_00" else
                    ("CONSTANT_BUFFER_ADDR_LOWER_SHIFTED6(0)", "CONSTANT_BUFFER_ADDR_UPPER_SHIFTED6(0)"))
    self.cbuf_shift = 0 if q.version == "V03_00" else 6
    self.lo_word, lo_shift, lo_mask = q.word_field(lower)
    self.hi_word, hi_shift, self.hi_mask = q.word_field(upper)
    if (lo_shift, lo_mask, hi_shift) != (0, 0xFFFFFFFF, 0):
      raise ValueError(f"QMD {q.version}: {lower}/{upper} are not a whole word and a word's low bits")
    pb = PushBuffer()
    dev.barrier(pb)
    pb.launch(0, name="l")
    pb.semaphore_release(self.channel.semaphore, 0, name="done")
    self.pushbuffer = bytearray(pb.tobytes())
    self.words, self.nwords = memoryview(self.pushbuffer).cast("I"), len(pb)
    self.at_qmd = pb.marks["l.qmd"][0]
    self.at_lo, self.at_hi = pb.marks["done.payload_lo"][0], pb.marks["done.payload_hi"][0]
    self.packers: dict[tuple, tuple[struct.Struct, tuple[int, ...]] | None] = {}

  def current(self, dev) -> bool:
    """Whether the plan's words are still what the slow path would send: same compute channel (not recreated by a
    recovery), barrier, end-of-grid membar and cache invalidation settings."""
    return (self.channel is dev.compute and self.barrier_kind == dev.barrier_kind
            and self.cwd_membar == dev.cwd_membar and self.invalidate == dev.qmd_invalidate)

  def launch(self, args: tuple) -> int | None:
    """Queue a launch with `args`; returns its timeline value, or None (nothing queued) when these arguments need
    the checked slow path: types without a prebuilt packer, a negative integer, a freed buffer (it raises there)."""
    types = tuple(map(type, args))
    try:
      packer = self.packers[types]
    except KeyError:
      packer = self.packers[types] = self.program.arg_packer(types)
    if packer is None:
      return None
    st, memory = packer
    if memory:
      args = list(args)
      for i in memory:
        if args[i].freed:
          return None
        args[i] = args[i].va
    blob = self.blob
    try:
      st.pack_into(blob, self.param_at, *args)
    except struct.error:
      return None
    dev = self.dev
    offset = dev.arena_take(self.need)
    qmd_va = dev.arena.va + offset
    words = self.blob_words
    cbuf = (qmd_va + 512) >> self.cbuf_shift
    words[self.lo_word] = cbuf & 0xFFFFFFFF
    words[self.hi_word] = (words[self.hi_word] & ~self.hi_mask) | (cbuf >> 32)  # VAs < 2**40: the upper part fits
    dev.arena_view[offset:offset + len(blob)] = blob
    dev.order_compute_after_copies()  # unwaited copies: an acquire as a submission of its own, before this one
    ch = self.channel
    ch.value += 1
    pb = self.words
    pb[self.at_qmd] = qmd_va >> 8
    pb[self.at_lo] = ch.value & 0xFFFFFFFF
    pb[self.at_hi] = ch.value >> 32
    ch.push(self.pushbuffer, self.nwords)
    return ch.value
