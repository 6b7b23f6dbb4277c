"""`sov replay`: run a saved step (.sovreplay, tools/REPLAY_FORMAT.md) with only numpy and the driver imported.

  sov replay step.sovreplay --info                                    # what the file holds
  sov replay step.sovreplay --inputs batch.npz --iters 1000           # train: stream inputs, report the loss
  sov replay step.sovreplay --inputs batch.npz --save-state out.npz   # then write the persistent buffers
  python -m tools.replay ...                                          # the same, in a process without the frontend

The npz holds one array per input slot, named as the file names them: shaped like the slot (one batch, reused every
step) or with a leading step axis (step i reads row i, cycling when --iters is larger). Inputs with saved contents
(e.g. a learning rate) may be left out: they keep their saved values. A Variable (format version 2: an int32 kernel
parameter such as a decode step's position) is fed the same way, by its name: an integer scalar, or one value per
step; unfed, it keeps its saved value.

This module imports neither `frontend` nor the compiler: a CPU file's kernels are shared objects loaded with cffi, an
NV file's cubins are loaded by nvdrv.program and launched from one nvdrv.replay.CommandBuffer, an AMD file's code
objects are loaded by the AM driver (which reads them with compiler.rdna.codeobj, the ISA toolchain's ELF reader; no
IR, no code generation) and launched from one am.queues.launches.LaunchList on a simulated card booted through the
AM driver (AMD_SIM=navi31|navi48, firmware from AM_FIRMWARE_DIR), or run on the wave emulator (am.sim) without
AMD_SIM. Every check (format, checksum, target, inputs) happens before anything is allocated or run.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import tempfile
import time

import numpy as np

from tools import replay_format
from tools.replay_format import (CPU_ABI, NUMPY_DTYPES, PERSISTENT_ROLES, ReplayFile, ReplayFormatError, host_isa,
                                 launch_dependencies)


DESCRIPTION = ("Run a step saved as a .sovreplay file (TinyJit.save, sov train-mnist --save-step) with only numpy and "
               "the driver imported: stream inputs from an npz, report the loss, write the persistent buffers.")


class ReplayError(Exception):
  """A replay file cannot run here (another target) or was given unusable inputs; nothing was changed."""


# ---------------------------------------------------------------------------------------------------------------------
# target checks


def check_target(rf: ReplayFile) -> None:
  """Refuses a file this machine cannot run, before anything is loaded.

  Raises:
    ReplayError: naming what the file needs and what this machine has.
  """
  target = rf.manifest["target"]
  kind = target["kind"]
  if kind == "CPU":
    _check_cpu_target(rf.path, target)
  elif kind == "NV":
    if not os.path.exists("/dev/nvidiactl"):
      raise ReplayError(f"{rf.path} targets NV {target.get('arch')} ({target.get('generation')}, QMD "
                        f"{target.get('qmd_version')}); this machine has no /dev/nvidiactl (no NVIDIA GPU or kernel "
                        f"module). Run it on a machine with that GPU, or save the step on this machine's device")
  elif kind == "AMD":
    _check_amd_target(rf.path, target)
  else:
    raise ReplayError(f"{rf.path} targets {kind}; this loader runs CPU, NV and AMD files")


AMD_CARDS = {"navi31": "gfx1100", "navi48": "gfx1201"}   # the simulated cards the loader can boot, and their ISA


def _check_amd_target(path: str, target: dict) -> None:
  gfx = target.get("gfx_target")
  if gfx not in AMD_CARDS.values():
    raise ReplayError(f"{path} targets AMD {gfx!r}; this loader runs gfx1100 (RDNA3) and gfx1201 (RDNA4) code")
  card = os.environ.get("AMD_SIM")
  if card and card not in AMD_CARDS:
    raise ReplayError(f"AMD_SIM={card!r} names no simulated card; use {' or '.join(AMD_CARDS)}")
  if card and AMD_CARDS[card] != gfx:
    runs = [c for c, g in AMD_CARDS.items() if g == gfx]
    raise ReplayError(f"{path} holds {gfx} code; AMD_SIM={card} is a {AMD_CARDS[card]} card. Run it with "
                      f"AMD_SIM={runs[0]} (or without AMD_SIM, on the wave emulator)")


def _check_cpu_target(path: str, target: dict) -> None:
  if target.get("abi") != CPU_ABI:
    raise ReplayError(f"{path}: CPU kernel ABI {target.get('abi')!r}; this loader runs {CPU_ABI!r}")
  here = (platform.system(), platform.machine())
  there = (target.get("system"), target.get("machine"))
  if here != there:
    raise ReplayError(f"{path} holds CPU kernels compiled for {there[0]} {there[1]}; this machine is {here[0]} "
                      f"{here[1]}. Save the step on a machine like this one")
  missing = sorted(set(target.get("isa", [])) - set(host_isa()))
  if missing:
    raise ReplayError(f"{path} holds kernels compiled with {' '.join(target.get('flags', []))} on a CPU with "
                      f"instruction sets this CPU lacks: {', '.join(missing)}. Save the step on this machine")


def check_nv_device(path: str, target: dict, info) -> None:
  """Refuses an NV file for another GPU generation or launch interface than the opened device's.

  Raises:
    ReplayError: naming the file's facts and the device's.
  """
  file_facts = (target.get("generation"), target.get("compute_class"), target.get("qmd_version"))
  device_facts = (info.name, info.compute_class, info.qmd_version)
  if file_facts != device_facts:
    raise ReplayError(f"{path} targets NV {target.get('arch')} ({file_facts[0]}, compute class "
                      f"0x{file_facts[1]:04x}, QMD {file_facts[2]}); this GPU is {device_facts[0]}, compute class "
                      f"0x{device_facts[1]:04x}, QMD {device_facts[2]}. Save the step on this GPU")


# ---------------------------------------------------------------------------------------------------------------------
# backends: memory, kernels and the launch list of one target


def _cache_dir() -> str:
  root = os.environ.get("SOV_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "sovereign"))
  path = os.path.join(root, "replay")
  os.makedirs(path, exist_ok=True)
  return path


class CPUBackend:
  """CPU target: buffers are 64-byte aligned numpy arrays; each launch is a prebuilt (packed kernel, argument array)
  pair, run by the file's thread pool exactly as the CPU runtime ran it (same threads, so the same chunks)."""

  def __init__(self, rf: ReplayFile):
    import cffi
    m = rf.manifest
    self.ffi = cffi.FFI()
    self.ffi.cdef("int sov_pool_start(int workers);\nvoid sov_pool_run(void *fn, void **args, long long n, "
                  "int threads);\nvoid sov_pool_run_list(int count, void **fns, void ***args, long long *ns, "
                  "int *threads);")
    for entry in sorted({k["entry"] for k in m["kernels"]}):  # one declaration per name; each library has its own
      self.ffi.cdef(f"void {entry}_packed(void **args, long long start, long long end);")
    self.pool = self._dlopen(rf.blob(m["target"]["pool_so_blob"]))
    threads = max([k["threads"] for k in m["kernels"]] + [1])
    if threads > 1:
      self.pool.sov_pool_start(threads - 1)
    self.libs = [self._dlopen(rf.blob(k["so_blob"])) for k in m["kernels"]]
    self.packed = [self.ffi.cast("void *", self.ffi.addressof(lib, f"{k['entry']}_packed"))
                   for lib, k in zip(self.libs, m["kernels"])]
    self.mem = [self.alloc(b["size"] * np.dtype(NUMPY_DTYPES[b["dtype"]]).itemsize) for b in m["buffers"]]
    for b, mem in zip(m["buffers"], self.mem):
      if b.get("init") is not None:
        mem[:] = np.frombuffer(rf.blob(b["init"]), np.uint8)
    self.launches = []
    for launch in m["launches"]:
      k = m["kernels"][launch["kernel"]]
      slots = [self.ffi.cast("void *", self.mem[a].ctypes.data) for a in launch["args"]]
      slots += [self._int_slot(v) for v in launch_values(m, launch)]
      args = self.ffi.new("void *[]", slots or 1)
      direct = getattr(self.libs[launch["kernel"]], f"{k['entry']}_packed")
      self.launches.append((direct, self.packed[launch["kernel"]], args, k["global_extent"], k["threads"]))
    try:  # pools saved since the runtime's CPUGraph run the whole list in one call
      self.run_list = self.pool.sov_pool_run_list
    except AttributeError:
      self.run_list = None
    self.list = (len(self.launches), self.ffi.new("void *[]", [p for _, p, *_ in self.launches]),
                 self.ffi.new("void **[]", [a for _, _, a, *_ in self.launches]),
                 self.ffi.new("long long[]", [n for *_, n, _ in self.launches]),
                 self.ffi.new("int[]", [t for *_, t in self.launches]))

  def _dlopen(self, blob):
    # Content-addressed files that stay: the dynamic loader knows a loaded object by its file's (device, inode), so
    # a deleted temporary file whose inode the next one reuses would hand back the first library.
    digest = hashlib.sha256(blob).hexdigest()[:32]
    path = os.path.join(_cache_dir(), f"{digest}.so")
    if not os.path.exists(path):
      fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=os.path.dirname(path))
      with os.fdopen(fd, "wb") as f:
        f.write(blob)
      os.replace(tmp, path)  # atomic: a concurrent loader never maps half a file
    return self.ffi.dlopen(path)

  @staticmethod
  def alloc(nbytes: int) -> np.ndarray:
    raw = np.zeros(nbytes + 64, np.uint8)
    start = (-raw.ctypes.data) % 64
    return raw[start:start + nbytes]

  def check_memory(self, mem, nbytes: int, what: str) -> None:
    if not isinstance(mem, np.ndarray) or mem.nbytes != nbytes or mem.ctypes.data % 64 or not mem.flags.c_contiguous:
      raise ReplayError(f"{what}: bind a C-contiguous, 64-byte aligned numpy array of {nbytes} bytes (Replay.alloc "
                        f"makes one); got {type(mem).__name__} of {getattr(mem, 'nbytes', '?')} bytes")

  def set_address(self, launch: int, arg: int, mem: np.ndarray) -> None:
    self.launches[launch][2][arg] = self.ffi.cast("void *", mem.ctypes.data)

  def _int_slot(self, value: int):
    return self.ffi.cast("void *", value & 0xFFFFFFFF)  # the packed entry reads an int parameter's slot as (int)

  def set_value(self, launch: int, ordinal: int, value: int) -> None:
    self.launches[launch][2][ordinal] = self._int_slot(value)

  def write(self, mem: np.ndarray, data: np.ndarray) -> None:
    np.copyto(mem.reshape(-1).view(np.uint8), data.reshape(-1).view(np.uint8))

  def read(self, buffer: int) -> np.ndarray:
    return self.mem[buffer].copy()

  def run(self) -> None:
    # One thread: one call over [0, n), as the runtime makes it. The pool splits [0, n) into 4 * threads chunks, and
    # a kernel's vector loop may round differently on a chunk's scalar tail, so the split must match the runtime's.
    if self.run_list is not None:
      self.run_list(*self.list)  # the same, in one call
      return
    for direct, packed, args, n, threads in self.launches:
      if threads == 1:
        direct(args, 0, n)
      else:
        self.pool.sov_pool_run(packed, args, n, threads)


class NVBackend:
  """NV target: the cubins loaded by nvdrv.program.Program, buffers in HBM, the launch list built once into an
  nvdrv.replay.CommandBuffer (dep mode: each QMD waits for the grids whose buffers it reads or overwrites,
  launch_order) and resubmitted each step."""

  def __init__(self, rf: ReplayFile, dev=None):
    from nvdrv.device import NVDevice
    from nvdrv.program import Program
    from nvdrv.replay import CommandBuffer
    m = rf.manifest
    self.dev = dev if dev is not None else NVDevice(0)
    check_nv_device(rf.path, m["target"], self.dev.info)
    self.programs = [Program(self.dev, bytes(rf.blob(k["cubin_blob"])), k["entry"]) for k in m["kernels"]]
    self.mem = []
    for b in m["buffers"]:
      nbytes = b["size"] * np.dtype(NUMPY_DTYPES[b["dtype"]]).itemsize
      self.mem.append(self.dev.mem.alloc_device(max(nbytes, 1)))
      if b.get("init") is not None and nbytes:
        self.dev.copyin(self.mem[-1], np.frombuffer(rf.blob(b["init"]), np.uint8))
    self.sizes = [b["size"] * np.dtype(NUMPY_DTYPES[b["dtype"]]).itemsize for b in m["buffers"]]
    self.cb = CommandBuffer(self.dev, mode="dep")
    for launch, after in zip(m["launches"], launch_order(m)):
      k = m["kernels"][launch["kernel"]]
      self.cb.launch(self.programs[launch["kernel"]], *[self.mem[a] for a in launch["args"]],
                     *launch_values(m, launch), grid=tuple(k["grid"]), block=tuple(k["block"]), after=after)
    self.cb.finalize()
    self.setters: dict[tuple[int, int], object] = {}  # (launch, ordinal) -> CommandBuffer.int_setter

  def alloc(self, nbytes: int):
    return self.dev.mem.alloc_device(max(nbytes, 1))

  def check_memory(self, mem, nbytes: int, what: str) -> None:
    if not hasattr(mem, "va") or mem.size < nbytes:
      raise ReplayError(f"{what}: bind a GPUMemory of at least {nbytes} bytes (Replay.alloc makes one); got "
                        f"{type(mem).__name__} of {getattr(mem, 'size', '?')} bytes")

  def set_address(self, launch: int, arg: int, mem) -> None:
    self.cb.set_arg(launch, arg, mem)  # waits for the previous submit, then patches the constant bank in place

  def set_value(self, launch: int, ordinal: int, value: int) -> None:
    setter = self.setters.get((launch, ordinal))
    if setter is None:
      setter = self.setters[(launch, ordinal)] = self.cb.int_setter(launch, ordinal)
    setter(value)  # the first set after a submit waits for it; then one 4-byte store into the constant bank

  def write(self, mem, data: np.ndarray) -> None:
    if self.cb.last_value:
      self.dev.compute.wait(self.cb.last_value)  # the previous step may still read this buffer
    self.dev.copyin(mem, data)

  def read(self, buffer: int) -> np.ndarray:
    if self.cb.last_value:
      self.dev.compute.wait(self.cb.last_value)
    return self.dev.copyout(self.mem[buffer], self.sizes[buffer])

  def run(self) -> None:
    self.cb.submit()


def launch_order(m: dict) -> list[list[int]]:
  """Per launch of manifest `m`, the earlier launches it must wait for: tools.replay_format.launch_dependencies over
  the buffer-table indices each launch writes and reads (its kernel's params[].written)."""
  accesses = []
  for launch in m["launches"]:
    params = m["kernels"][launch["kernel"]]["params"]
    accesses.append(([a for a, p in zip(launch["args"], params) if p["written"]],
                     [a for a, p in zip(launch["args"], params) if not p["written"]]))
  return launch_dependencies(accesses)


def launch_values(m: dict, launch: dict) -> list[int]:
  """The saved values of the Variables launch `launch` of manifest `m` passes, in its kernel's parameter order (the
  int32 parameters after the buffers); none before format version 2."""
  return [m["variables"][i]["value"] for i in m["kernels"][launch["kernel"]].get("vars", [])]


def _amd_code_objects(rf: ReplayFile) -> list:
  from compiler.rdna.codeobj import load_code_object
  return [load_code_object(bytes(rf.blob(k["code_object_blob"])), name=f"{rf.path}: kernel {k['name']}")
          for k in rf.manifest["kernels"]]


class AMDCardBackend:
  """AMD target on a card booted through the AM driver: the code objects uploaded with am.queues.kernel.GpuKernel,
  buffers in the card's GART-mapped VRAM, the launch list recorded once into one indirect buffer
  (am.queues.launches.LaunchList, a barrier only before a launch that waits for one still in flight: launch_order)
  and resubmitted each step with one INDIRECT_BUFFER packet."""

  def __init__(self, rf: ReplayFile, dev):
    from am.queues.dispatch import Buffer
    from am.queues.kernel import GpuKernel
    from am.queues.launches import LaunchList
    m = rf.manifest
    self.dev, self.queue = dev, dev.gfx.queue
    if dev.caps.gfx_target != m["target"]["gfx_target"]:
      raise ReplayError(f"{rf.path} holds {m['target']['gfx_target']} code; this card runs {dev.caps.gfx_target}")
    self.kernels = [GpuKernel(dev, co, k["entry"]) for co, k in zip(_amd_code_objects(rf), m["kernels"])]
    self.sizes = [b["size"] * np.dtype(NUMPY_DTYPES[b["dtype"]]).itemsize for b in m["buffers"]]
    self.mem = [Buffer(dev, max(n, 1)) for n in self.sizes]
    for b, mem in zip(m["buffers"], self.mem):
      if b.get("init") is not None and mem.size:
        mem.write(rf.blob(b["init"]))
    self.args = [[self.mem[a].va for a in launch["args"]] + launch_values(m, launch) for launch in m["launches"]]
    self.launches = LaunchList(dev, self.queue)
    for launch, args, after in zip(m["launches"], self.args, launch_order(m)):
      k = m["kernels"][launch["kernel"]]
      self.launches.add(self.kernels[launch["kernel"]], args, k["grid"], k["block"], after=after)
    self.launches.finalize()

  def alloc(self, nbytes: int):
    from am.queues.dispatch import Buffer
    return Buffer(self.dev, max(nbytes, 1))

  def check_memory(self, mem, nbytes: int, what: str) -> None:
    if not hasattr(mem, "va") or not hasattr(mem, "write") or mem.size < nbytes:
      raise ReplayError(f"{what}: bind an am.queues Buffer of at least {nbytes} bytes (Replay.alloc makes one); got "
                        f"{type(mem).__name__} of {getattr(mem, 'size', '?')} bytes")

  def set_address(self, launch: int, arg: int, mem) -> None:
    self.set_value(launch, arg, mem.va)

  def set_value(self, launch: int, ordinal: int, value: int) -> None:
    self.args[launch][ordinal] = value
    self.launches.set_args(launch, self.args[launch])  # waits for the previous submit, rewrites the kernarg segment

  def write(self, mem, data: np.ndarray) -> None:
    self.queue.wait(self.launches.last)  # the previous step may still read this buffer
    mem.write(data.reshape(-1).view(np.uint8))

  def read(self, buffer: int) -> np.ndarray:
    self.queue.wait(self.launches.last)
    return self.mem[buffer].read(np.uint8, self.sizes[buffer])

  def run(self) -> None:
    self.launches.submit()


class AMDEmulatorBackend:
  """AMD target without a card: each launch runs on the wave emulator (am.sim.run_kernel) over one flat memory that
  holds the file's buffers, with its kernarg segment built once (am.sim.build_kernargs) and rebuilt when bound."""

  def __init__(self, rf: ReplayFile):
    from am.sim import FlatMemory, build_kernargs, run_kernel
    m = rf.manifest
    self.build_kernargs, self.run_kernel = build_kernargs, run_kernel
    self.memory = FlatMemory()
    self.code_objects = _amd_code_objects(rf)
    self.kernels = [co.kernel(k["entry"]) for co, k in zip(self.code_objects, m["kernels"])]
    self.sizes = [b["size"] * np.dtype(NUMPY_DTYPES[b["dtype"]]).itemsize for b in m["buffers"]]
    self.mem = [self.alloc(n) for n in self.sizes]
    for b, mem, n in zip(m["buffers"], self.mem, self.sizes):
      if b.get("init") is not None and n:
        self.write(mem, np.frombuffer(rf.blob(b["init"]), np.uint8))
    self.launches = []
    for launch in m["launches"]:
      k = m["kernels"][launch["kernel"]]
      kern = self.kernels[launch["kernel"]]
      grid, block = tuple(k["grid"]), tuple(k["block"])
      kernarg = self.memory.alloc(max(kern.kernarg_size, 16))
      args = [self.mem[a] for a in launch["args"]] + launch_values(m, launch)
      self.launches.append([kern, self.code_objects[launch["kernel"]].isa, grid, block, kernarg, args])
      self._write_kernargs(len(self.launches) - 1)

  def _write_kernargs(self, index: int) -> None:
    kern, _, grid, block, kernarg, args = self.launches[index]
    self.write(kernarg, np.frombuffer(self.build_kernargs(kern, tuple(args), grid, block), np.uint8))

  def alloc(self, nbytes: int) -> int:
    return self.memory.alloc(max(nbytes, 1))

  def check_memory(self, mem, nbytes: int, what: str) -> None:
    if not isinstance(mem, int) or not self.memory.base <= mem <= self.memory.top - nbytes:
      raise ReplayError(f"{what}: bind an address of {nbytes} bytes of the emulator's memory (Replay.alloc makes "
                        f"one); got {mem!r}")

  def set_address(self, launch: int, arg: int, mem: int) -> None:
    self.set_value(launch, arg, mem)

  def set_value(self, launch: int, ordinal: int, value: int) -> None:
    self.launches[launch][5][ordinal] = value
    self._write_kernargs(launch)

  def write(self, mem: int, data: np.ndarray) -> None:
    if data.nbytes:
      self.memory.write(mem, np.ascontiguousarray(data).reshape(-1).view(np.uint8))

  def read(self, buffer: int) -> np.ndarray:
    size = self.sizes[buffer]
    return self.memory.read_array(self.mem[buffer], np.uint8, size) if size else np.zeros(0, np.uint8)

  def run(self) -> None:
    for kern, isa, grid, block, kernarg, _ in self.launches:
      self.run_kernel(kern, isa, self.memory, grid, block, kernarg)


def boot_amd_card(card: str):
  """Boot the simulated `card` through the AM driver (firmware from AM_FIRMWARE_DIR).

  Raises:
    ReplayError: the boot failed (names the error and AM_FIRMWARE_DIR)."""
  from am.device import AMDevice
  from am.simcard.card import SimCard
  dev = AMDevice(SimCard(card))
  try:
    dev.boot()
  except Exception as e:
    where = os.environ.get("AM_FIRMWARE_DIR", "unset: /lib/firmware/amdgpu")
    raise ReplayError(f"booting the simulated {card} failed ({type(e).__name__}: {e}); AM_FIRMWARE_DIR ({where}) "
                      f"must hold lib/firmware/amdgpu of firmware-amd-graphics") from e
  return dev


# ---------------------------------------------------------------------------------------------------------------------
# the loaded step


class Replay:
  """A loaded replay file, ready to run steps. Build with `load`."""

  def __init__(self, rf: ReplayFile, backend):
    self.file, self.backend = rf, backend
    m = rf.manifest
    self.buffers = m["buffers"]
    self.inputs = {s["name"]: s for s in m["inputs"]}
    self.outputs = {s["name"]: s for s in m["outputs"]}
    self.slots = {name: [(i, j) for i, launch in enumerate(m["launches"]) for j, a in enumerate(launch["args"])
                         if a == s["buffer"]] for name, s in self.inputs.items()}
    self.bound: dict[str, object] = {}  # input name -> caller memory patched into the launches (bind)
    self.variables = {v["name"]: v for v in m.get("variables", [])}
    self.values = {name: v["value"] for name, v in self.variables.items()}  # what the launches pass now
    self.var_slots: dict[str, list[tuple[int, int]]] = {name: [] for name in self.variables}  # (launch, ordinal)
    for i, launch in enumerate(m["launches"]):
      kernel = m["kernels"][launch["kernel"]]
      for k, index in enumerate(kernel.get("vars", [])):
        self.var_slots[m["variables"][index]["name"]].append((i, len(kernel["params"]) + k))
    self.steps = 0

  def input_spec(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
    slot = self.inputs[name]
    return tuple(slot["shape"]), np.dtype(NUMPY_DTYPES[self.buffers[slot["buffer"]]["dtype"]])

  def check_feeds(self, feeds: dict[str, np.ndarray], stepped: bool = False) -> None:
    """Checks names, shapes and dtypes of `feeds` (with a leading step axis when `stepped`); a Variable's feed must
    be integers within its bounds.

    Raises:
      ReplayError: an unknown name, a missing input without saved contents, a wrong shape or dtype, a Variable's
        value out of its bounds.
    """
    for name, value in feeds.items():
      if name in self.variables:
        self._check_values(name, value, stepped)
        continue
      if name not in self.inputs:
        known = f"; its Variables are {list(self.variables)}" if self.variables else ""
        raise ReplayError(f"input {name!r} is not a slot of {self.file.path}; its inputs are {list(self.inputs)}"
                          f"{known}")
      shape, dtype = self.input_spec(name)
      value = np.asarray(value)
      if value.dtype != dtype:
        raise ReplayError(f"input {name!r} is {value.dtype}, the step takes {dtype}; convert it with "
                          f".astype(np.{dtype.name})")
      if value.shape != shape and not (stepped and value.shape[1:] == shape and value.shape[0] > 0):
        steps = " or (steps, *shape)" if stepped else ""
        raise ReplayError(f"input {name!r} has shape {value.shape}, the step takes {shape}{steps}")
    missing = [n for n, s in self.inputs.items() if n not in feeds and n not in self.bound
               and self.buffers[s["buffer"]].get("init") is None]
    if missing and self.steps == 0:
      raise ReplayError(f"inputs {missing} have no saved contents; give them (arrays named {missing})")

  def _check_values(self, name: str, value, stepped: bool) -> None:
    v = self.variables[name]
    array = np.asarray(value)
    shapes = "an integer or, per step, a 1-D array of them" if stepped else "one integer"
    if array.dtype.kind not in "iu" or not (array.ndim == 0 or (stepped and array.ndim == 1 and array.size)):
      raise ReplayError(f"Variable {name!r}: got {array.dtype} of shape {array.shape}; it takes {shapes}")
    lo, hi = int(array.min()), int(array.max())
    if lo < v["lo"] or hi > v["hi"]:
      bad = lo if lo < v["lo"] else hi
      raise ReplayError(f"Variable {name!r}: value {bad} is outside its bounds [{v['lo']}, {v['hi']}] (the kernels' "
                        f"index arithmetic relies on them)")

  def set_var(self, name: str, value: int) -> None:
    """Makes every launch that reads Variable `name` pass `value` from the next step on.

    Raises:
      ReplayError: no such Variable, not an integer, outside the Variable's bounds.
    """
    if name not in self.variables:
      raise ReplayError(f"{name!r} is not a Variable of {self.file.path}; its Variables are {list(self.variables)}")
    self._check_values(name, value, stepped=False)
    value = int(value)
    if value != self.values[name]:
      for launch, ordinal in self.var_slots[name]:
        self.backend.set_value(launch, ordinal, value)
      self.values[name] = value

  def bind(self, name: str, memory) -> None:
    """Makes input `name` read `memory` (what the loader's alloc returns: see `alloc`):
    its address is patched into every launch argument that reads the input. The caller then writes inputs there."""
    if name not in self.inputs:
      raise ReplayError(f"input {name!r} is not a slot of {self.file.path}; its inputs are {list(self.inputs)}")
    shape, dtype = self.input_spec(name)
    self.backend.check_memory(memory, int(np.prod(shape)) * dtype.itemsize, f"bind({name!r})")
    for launch, arg in self.slots[name]:
      self.backend.set_address(launch, arg, memory)
    self.bound[name] = memory

  def step(self, feeds: dict[str, np.ndarray] | None = None) -> None:
    """Runs one step: writes the fed inputs, then every launch in order."""
    feeds = feeds or {}
    self.check_feeds(feeds)
    for name, value in feeds.items():
      if name in self.variables:
        self.set_var(name, value)
        continue
      memory = self.bound.get(name, self.backend.mem[self.inputs[name]["buffer"]])
      self.backend.write(memory, np.ascontiguousarray(value))
    self.backend.run()
    self.steps += 1

  def alloc(self, name: str):
    """Device memory sized for input `name`, to `bind` (CPU: an aligned numpy uint8 array; NV: a GPUMemory; AMD: an
    am.queues Buffer on a card, an address of the emulator's memory without one)."""
    shape, dtype = self.input_spec(name)
    return self.backend.alloc(int(np.prod(shape)) * dtype.itemsize)

  def output(self, name: str) -> np.ndarray:
    slot = self.outputs[name]
    dtype = NUMPY_DTYPES[self.buffers[slot["buffer"]]["dtype"]]
    return self.backend.read(slot["buffer"]).view(dtype).reshape(slot["shape"])

  def state(self) -> dict[str, np.ndarray]:
    """The persistent buffers (parameters, optimizer state, unnamed state, fed inputs with saved contents) by name."""
    out = {}
    for i, b in enumerate(self.buffers):
      if b["role"] in PERSISTENT_ROLES or (b["role"] == "input" and b.get("init") is not None):
        data = self.backend.read(i).view(NUMPY_DTYPES[b["dtype"]])
        out[b["name"]] = data.reshape(b["shape"]) if b.get("shape") is not None else data
    return out


def load(path: str, nv_device=None, rf: ReplayFile | None = None, amd_device=None) -> Replay:
  """Reads, checks and loads a replay file (format, checksum, target; then kernels, buffers, launches).

  Args:
    path: the .sovreplay file.
    nv_device: an open nvdrv NVDevice to load an NV file on (default: open GPU 0).
    rf: the file already read by replay_format.read (then `path` is not read again).
    amd_device: a booted am AMDevice to load an AMD file on (default: the simulated card AMD_SIM names, booted
      here; without AMD_SIM, the wave emulator).

  Raises:
    ReplayFormatError: not a replay file, a newer format version, corrupted.
    ReplayError: a file for another target.
  """
  rf = rf if rf is not None else replay_format.read(path)
  check_target(rf)
  kind = rf.manifest["target"]["kind"]
  if kind == "CPU":
    return Replay(rf, CPUBackend(rf))
  if kind == "AMD":
    if amd_device is None and os.environ.get("AMD_SIM"):
      amd_device = boot_amd_card(os.environ["AMD_SIM"])
    return Replay(rf, AMDCardBackend(rf, amd_device) if amd_device is not None else AMDEmulatorBackend(rf))
  return Replay(rf, NVBackend(rf, nv_device))


# ---------------------------------------------------------------------------------------------------------------------
# the command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("file", help="the .sovreplay file (TinyJit.save, sov train-mnist --save-step)")
  parser.add_argument("--inputs", metavar="NPZ", help="arrays named by input slot or Variable, optionally with a "
                                                       "step axis")
  parser.add_argument("--iters", type=int, default=None, metavar="N",
                      help="steps to run (default: the npz's step count, else 1)")
  parser.add_argument("--save-state", metavar="NPZ", help="write the persistent buffers here after the last step")
  parser.add_argument("--print-every", type=int, default=0, metavar="K", help="print the loss every K steps")
  parser.add_argument("--info", action="store_true", help="describe the file and exit")


def _load_inputs(replay: Replay, path: str | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
  """(per-step arrays, reused arrays, step count of the npz or 0) after checking every array."""
  if path is None:
    replay.check_feeds({})
    return {}, {}, 0
  with np.load(path, allow_pickle=False) as npz:
    arrays = {name: npz[name] for name in npz.files}
  replay.check_feeds(arrays, stepped=True)
  stepped = {n: a for n, a in arrays.items()
             if a.shape != (() if n in replay.variables else replay.input_spec(n)[0])}
  reused = {n: a for n, a in arrays.items() if n not in stepped}
  counts = {len(a) for a in stepped.values()}
  if len(counts) > 1:
    raise ReplayError(f"{path}: inputs with a step axis disagree on the step count: "
                      f"{ {n: len(a) for n, a in stepped.items()} }")
  return stepped, reused, counts.pop() if counts else 0


def main_from_args(args: argparse.Namespace) -> int:
  rf = replay_format.read(args.file)
  if args.info:
    print(replay_format.describe(rf))
    return 0
  start = time.perf_counter()
  replay = load(args.file, rf=rf)
  stepped, reused, count = _load_inputs(replay, args.inputs)
  iters = args.iters if args.iters is not None else max(count, 1)
  if iters < 1:
    raise ReplayError(f"--iters {iters}: give a whole number >= 1")
  print(f"loaded {args.file}: {len(rf.manifest['launches'])} launches per step on {rf.manifest['target']['kind']} "
        f"in {(time.perf_counter() - start) * 1e3:.1f} ms")
  if count and iters > count:
    print(f"note: {count} steps of inputs for {iters} iterations; cycling through them")
  has_loss = "loss" in replay.outputs
  start = time.perf_counter()
  for i in range(iters):
    feeds = dict(reused) if i == 0 else {}
    feeds.update({n: a[i % count] for n, a in stepped.items()})
    replay.step(feeds)
    if has_loss and args.print_every and (i + 1) % args.print_every == 0:
      print(f"step {i + 1}: loss {float(replay.output('loss').reshape(-1)[0]):.6f}")
  elapsed = time.perf_counter() - start
  outputs = {n: replay.output(n) for n in replay.outputs}
  summary = ", ".join(f"{n} {o.reshape(-1)[0]:.6g}" if o.size == 1 else f"{n} {o.shape}" for n, o in outputs.items())
  print(f"{iters} steps in {elapsed:.3f} s ({elapsed / iters * 1e3:.2f} ms/step); last step: {summary or 'no outputs'}")
  if args.save_state:
    np.savez(args.save_state, **replay.state())
    print(f"state: {args.save_state}")
  return 0


def main(argv: list[str] | None = None) -> int:
  """`python -m tools.replay`: `sov replay` in a process that imports neither the frontend nor the compiler."""
  parser = argparse.ArgumentParser(prog="sov replay", description=DESCRIPTION)
  add_arguments(parser)
  args = parser.parse_args(argv)
  try:
    return main_from_args(args)
  except (ReplayError, ReplayFormatError, OSError) as e:
    print(f"sov replay: error: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
