"""DEV=NV: the tensor frontend on an NVIDIA GPU through nvdrv (device files only; no libcuda, no CUDA runtime).

Kernels: the scheduler's kernel IR is lowered for the GPU (compiler/lower_gpu.py), rendered to PTX
(compiler/render_ptx.py), assembled to a cubin (nvdrv.compile: ptxas or nvJitLink from pip wheels or a toolkit) and
launched by nvdrv.program on the compute channel; launches queue without waiting, in order. Buffers: device memory
from nvdrv, with freed blocks kept per size for reuse (reuse is safe: every later copy or launch is ordered after
the work already queued). Copies into a buffer go through pinned staging memory and the copy engine without a host
wait: the compute channel waits for them on the GPU (nvdrv.transfer.order_compute_after_copies). Reading a buffer
back (Buffer.numpy) goes through the copy engine after the queued work.

NV_EMULATE=1: no GPU; the same PTX runs on compiler/ptx_emulator.py (every thread of the grid as a numpy lane, with
bounds and barrier checks), each launch to completion inside the call, buffers are host byte arrays. It checks the
PTX renderer on the whole frontend suite without a GPU (NV_EMULATE=1 DEV=NV python -m pytest tests/test_ops_*.py);
it says nothing about nvdrv, ptxas or timing.

NV_SYNC=1: every launch waits for its grid to finish, so a GPU fault is raised by the launch that caused it, naming the
kernel, its geometry and its buffers' addresses (as CUDA_LAUNCH_BLOCKING does for CUDA); slow, for finding faults.
"""
from __future__ import annotations

import os
import time

import numpy as np

from compiler.dtypes import dtypes

SYNC = os.environ.get("NV_SYNC", "0") not in ("", "0")  # wait for every launch: a fault names its kernel

ALL_DTYPES = (dtypes.bool, dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64, dtypes.uint8, dtypes.uint16,
              dtypes.uint32, dtypes.uint64, dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64)


class NVAllocator:
  host_memory = False
  CACHE_LIMIT = 4 << 30

  def __init__(self, dev):
    self.dev = dev
    self.cache: dict[int, list] = {}
    self.cached_bytes = 0

  def alloc(self, nbytes: int):
    free = self.cache.get(nbytes)
    if free:
      self.cached_bytes -= nbytes
      return free.pop()
    return self.dev.mem.alloc_device(max(nbytes, 1))

  def free(self, mem, nbytes: int) -> None:
    if self.cached_bytes + nbytes > self.CACHE_LIMIT:
      self.dev.synchronize()
      self.dev.mem.free(mem)
      return
    self.cache.setdefault(nbytes, []).append(mem)
    self.cached_bytes += nbytes

  def copyin(self, dst, src: np.ndarray) -> None:
    if src.nbytes:
      self.dev.copyin(dst, src, wait=False)  # later kernels wait for it on the GPU; the host goes on

  def copyout(self, dst: np.ndarray, src) -> None:
    if not dst.nbytes:
      return
    from nvdrv.errors import NVFault
    try:
      dst[:] = self.dev.copyout(src, dst.nbytes)
    except (NVFault, TimeoutError):
      self.dev.recover()  # the fault is reported once; later work in this process runs on fresh channels
      raise

  def address(self, mem) -> int:
    return mem.va


class NVProgram:
  """A rendered, assembled kernel; call with buffer addresses (queued, returns at once). The cubin stays on the
  object so a TinyJit capture can be saved as a replay file (frontend/replay_save.py)."""
  threads = 1  # DEBUG's kernel line: host threads (the GPU's parallelism is in info.global_extent)

  def __init__(self, program, info, cubin: bytes = b""):
    self.program, self.info, self.cubin = program, info, cubin
    self.grid, self.block = tuple(info.global_size), tuple(info.local_size)

  def __call__(self, addresses: list[int], values: tuple[int, ...] = ()) -> None:
    """Queues the kernel on buffer addresses and the values of its Variables (int32 parameters after them)."""
    if not SYNC:
      self.program(*addresses, *values, grid=self.grid, block=self.block)
      return
    from nvdrv.errors import NVFault
    try:
      self.program(*addresses, *values, grid=self.grid, block=self.block, wait=True)
      time.sleep(1e-3)  # a grid can end (and release its semaphore) before RM has written the fault to the notifier
      self.program.dev.compute.check_error()
    except (NVFault, TimeoutError) as e:
      self.program.dev.recover()
      named = "".join(f", {v.name}={value}" for v, value in zip(self.info.vars, values))
      e.args = (f"kernel {self.info.name} (grid {self.grid}, block {self.block}, buffers "
                f"{', '.join(hex(a) for a in addresses)}{named}): {e}",)
      raise


class NVGraph:
  """A TinyJit capture as a prebuilt nvdrv CommandBuffer: replay patches the input buffers' addresses into the
  launches' constant banks and resubmits the whole step with one GPFIFO entry. Its launches are linked in "dep"
  mode: each QMD waits in hardware for the grids whose buffers it reads or overwrites
  (frontend.realize.exec_dependencies), so kernels that touch unrelated buffers run concurrently and no kernel waits on
  a wait-for-idle (a dependent grid costs about 1.6 us on the H100 against 2.4 us after a wait-for-idle,
  tools/bench_nv.py).

  Two copies of the buffer take turns: a run's constant banks cannot be patched while it is queued, so the next run's
  inputs go into the other copy, and the host queues step k+1 while the GPU runs step k (it waits only for step k-1,
  the last run of the copy it patches). Each copy records the arguments its constant banks hold (buffer addresses,
  then Variable values), so a patch writes only what differs in the copy about to run; what was set while the other
  copy had its turn is written into this one just before it is submitted (a value set once holds for every later run,
  whichever copy runs it).

  Parameter ordinals follow the kernels' contract (compiler.lower_gpu.GPUKernelInfo): the buffer pointers in PARAM
  order, then one int32 per Variable in info.vars order."""

  def __init__(self, runtime, items):
    from frontend.realize import exec_dependencies
    from nvdrv.replay import CommandBuffer
    after = exec_dependencies(items)
    self.cbs, self.args = [], []
    self.var_base = [len(item.info.params) for item in items]  # parameter ordinal of each launch's first Variable
    for _ in range(2):
      cb = CommandBuffer(runtime.dev, mode="dep")
      args = []
      for item, deps in zip(items, after):
        args.append([runtime.allocator.address(b.mem) for b in item.bufs] +
                    [item.var_vals[v] for v in item.info.vars])
        cb.launch(item.program.program, *args[-1], grid=item.program.grid, block=item.program.block, after=deps)
      cb.finalize()
      self.cbs.append(cb)
      self.args.append(args)
    self.turn = 0  # the copy the next run submits
    self.setters: list[dict] = [{}, {}]  # per copy: (launch, ordinal) -> CommandBuffer.int_setter
    self.wanted: dict[tuple[int, int], int] = {}  # (launch, ordinal) -> the value set last
    self.behind: list[set] = [set(), set()]  # per copy: (launch, ordinal) set while the other copy had its turn

  @property
  def cb(self):
    """The copy the next run submits."""
    return self.cbs[self.turn]

  def set_buffer(self, item: int, index: int, buf) -> None:
    """Launch `item`'s buffer parameter `index` points at `buf` from the next run on."""
    self._set(item, index, buf.mem.va)

  def set_var(self, item: int, k: int, value: int) -> None:
    """Launch `item`'s k-th Variable (parameter len(info.params) + k) takes `value` from the next run on."""
    self._set(item, self.var_base[item] + k, value)

  def _set(self, item: int, ordinal: int, value: int) -> None:
    """Writes the value into the copy about to run now (its wait for that copy's last run happens here, while the
    GPU may still run the other copy) and marks the other copy to catch up before its own turn."""
    key = (item, ordinal)
    self.wanted[key] = value
    self._write(self.turn, key, value)
    self.behind[self.turn].discard(key)
    self.behind[self.turn ^ 1].add(key)

  def _write(self, copy: int, key: tuple[int, int], value: int) -> None:
    held = self.args[copy][key[0]]
    if held[key[1]] == value:
      return
    setter = self.setters[copy].get(key)
    if setter is None:
      setter = self.setters[copy][key] = self.cbs[copy].int_setter(*key)
    setter(value)
    held[key[1]] = value

  def run(self) -> None:
    """Submits the copy whose turn it is, first bringing it up to every value set since its last run."""
    behind = self.behind[self.turn]
    for key in behind:  # empty when every value is set on every call (TinyJit does): each _set clears its key
      self._write(self.turn, key, self.wanted[key])
    behind.clear()
    self.cbs[self.turn].submit()
    self.turn ^= 1


class NVEmuAllocator:
  """Buffers as host byte arrays; a buffer's "address" is its array (what PTXEmulator.run takes per parameter)."""
  host_memory = False

  def alloc(self, nbytes: int) -> np.ndarray:
    return np.zeros(max(nbytes, 1), np.uint8)

  def free(self, mem, nbytes: int) -> None:
    pass

  def copyin(self, dst: np.ndarray, src: np.ndarray) -> None:
    if src.nbytes:
      dst[:src.nbytes] = src.reshape(-1).view(np.uint8)

  def copyout(self, dst: np.ndarray, src: np.ndarray) -> None:
    if dst.nbytes:
      dst.reshape(-1).view(np.uint8)[:] = src[:dst.nbytes]

  def address(self, mem: np.ndarray) -> np.ndarray:
    return mem


class NVEmuProgram:
  """A rendered kernel run on the PTX emulator; call with the buffers' arrays (runs to completion)."""
  threads = 1

  def __init__(self, ptx: str, info):
    from compiler.ptx_emulator import PTXEmulator
    self.emulator, self.info = PTXEmulator(ptx), info
    if tuple(info.global_size[1:]) != (1, 1) or tuple(info.local_size[1:]) != (1, 1):
      raise NotImplementedError(f"kernel {info.name}: the PTX emulator runs 1-D launches; got grid "
                                f"{info.global_size}, block {info.local_size}")

  def __call__(self, addresses: list[np.ndarray], values: tuple[int, ...] = ()) -> None:
    self.emulator.run(addresses, self.info.global_size[0], self.info.local_size[0], values)


class NVEmuRuntime:
  """DEV=NV with NV_EMULATE=1: PTX from the same renderer, run on the PTX emulator (no GPU, no ptxas)."""
  name = "NV"
  dtypes = ALL_DTYPES

  def __init__(self):
    self.allocator = NVEmuAllocator()

  def describe(self) -> str:
    return "NV: PTX on the emulator (NV_EMULATE=1; no GPU)"

  def lower(self, ast):
    from compiler.lower_gpu import lower_gpu
    return lower_gpu(ast)

  def program(self, kernel):
    from compiler.render_ptx import render_ptx
    _, ptx, info = render_ptx(kernel)
    return NVEmuProgram(ptx, info), ptx

  def synchronize(self) -> None:
    """Launches run to completion inside the call."""


class NVRuntime:
  """The frontend's face of one nvdrv.device.NVDevice."""
  name = "NV"
  dtypes = ALL_DTYPES

  def __init__(self, index: int = 0):
    from nvdrv.compile import find_compiler
    from nvdrv.device import NVDevice
    find_compiler()  # no PTX assembler: NV is unavailable (the message says what to install), not a failure later
    self.dev = NVDevice(index)
    self.allocator = NVAllocator(self.dev)

  def describe(self) -> str:
    return self.dev.describe()

  def lower(self, ast):
    from compiler.lower_gpu import lower_gpu
    return lower_gpu(ast)

  def program(self, kernel):
    from compiler.render_ptx import render_ptx
    from nvdrv.compile import compile_ptx, disassemble
    from nvdrv.program import Program
    name, ptx, info = render_ptx(kernel)
    cubin = compile_ptx(ptx)
    source = ptx
    from frontend.realize import getenv
    if getenv("DEBUG") >= 4:
      source += "\n" + (disassemble(cubin) or "(nvdisasm not found: pip install nvidia-cuda-nvdisasm)")
    return NVProgram(Program(self.dev, cubin, name), info, cubin), source

  def graph(self, items) -> NVGraph | None:
    """A replayable command buffer for a TinyJit capture, when every item is a kernel of this device."""
    if not items or not all(isinstance(item.program, NVProgram) and item.program.program.dev is self.dev
                            for item in items):
      return None
    return NVGraph(self, items)

  def synchronize(self) -> None:
    self.dev.synchronize()
