"""Running schedules: nodes -> kernels -> compiled programs -> buffers.

Realized graph nodes keep their place in the graph (so gradients can still be derived through them) and map to
their buffers in `realized`. Compiled programs are cached by device and the canonical text of the kernel AST, so
running the same graph twice compiles once. DEBUG=1 prints kernel counts and time per realize, 2 a line per
kernel, 3 the kernel IR, 4 the generated source.
"""
from __future__ import annotations

import atexit
import dataclasses
import os
import time
import weakref

import numpy as np

from compiler.ir import MOVEMENT, Node, Ops, print_ir
from compiler.lower import lower
from compiler.schedule import ScheduleItem, Scheduler
from frontend.device import Buffer, Device

realized: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
kernel_cache: dict[tuple[str, str], tuple[object, str]] = {}
STATS = {"kernels": 0, "time": 0.0, "compiles": 0}
_capture: list | None = None  # TinyJit's capture list while it records


def getenv(key: str, default=0):
  value = os.environ.get(key)
  if value is None:
    return default
  return type(default)(value) if not isinstance(default, str) else value


def buffer_of(node: Node) -> Buffer | None:
  if node.op is Ops.BUFFER:
    return node.arg
  return realized.get(node)


@dataclasses.dataclass
class ExecItem:
  """A compiled kernel bound to buffers and to the values of its Variables; JIT replay calls these directly."""
  program: object
  bufs: list[Buffer]
  name: str
  info: object
  var_vals: dict = dataclasses.field(default_factory=dict)  # Variable -> value, for each of info.vars

  def run(self) -> float:
    addresses = [Device[b.device].allocator.address(b.mem) for b in self.bufs]
    start = time.perf_counter()
    if self.info.vars:
      self.program(addresses, tuple(self.var_vals[v] for v in self.info.vars))
    else:
      self.program(addresses)
    return time.perf_counter() - start


@dataclasses.dataclass(frozen=True)
class CopyInfo:
  """What a device graph and the dependency analysis read of a copy: its destination is written, its source read."""
  name: str
  params: tuple


class CopyItem:
  """A copy between devices recorded by a TinyJit capture (bufs: destination, source): replay repeats it through the
  allocators, as eager does (on NV a copy-engine transfer that first waits for the compute work queued before it; a copy
into the GPU returns once queued, and later kernels wait for it on the GPU, not on the host)."""
  program = None

  def __init__(self, dst: Buffer, src: Buffer):
    self.bufs = [dst, src]
    self.name = f"copy {src.device} -> {dst.device}"
    self.info = CopyInfo(self.name, ((dst.dtype, True), (src.dtype, False)))

  def run(self) -> float:
    start = time.perf_counter()
    self.bufs[0].copyin(self.bufs[1].numpy())
    return time.perf_counter() - start


def exec_dependencies(items: list[ExecItem]) -> list[list[int]]:
  """Per captured item, the earlier items it must wait for (tools.replay_format.launch_dependencies over the buffers
  each kernel writes and reads): what a device graph orders; items with no edge between them may overlap."""
  from tools.replay_format import launch_dependencies
  accesses = []
  for item in items:
    pairs = [(id(b), written) for b, (_, written) in zip(item.bufs, item.info.params)]
    accesses.append(([b for b, w in pairs if w], [b for b, w in pairs if not w]))
  return launch_dependencies(accesses)


def get_program(device: str, ast: Node):
  key = (device, print_ir(ast))
  if key not in kernel_cache:
    kernel = getattr(Device[device], "lower", lower)(ast)  # GPU devices lower for threads and blocks
    if getenv("DEBUG") >= 3:
      print(f"--- kernel {kernel.arg.name} ---\n{key[1]}")
    kernel_cache[key] = Device[device].program(kernel)
    STATS["compiles"] += 1
    if getenv("DEBUG") >= 4:
      print(kernel_cache[key][1])
  return kernel_cache[key][0]


def _device_of(node: Node) -> str:
  """The device a kernel computing `node` runs on: the node's own, else its first source's (a COPY's source is on
  another device, so the node's own comes first)."""
  if node.device is not None:
    return node.device
  for n in node.toposort():
    if n.device is not None:
      return n.device
  return Device.DEFAULT


def _output_buffer(node: Node, device: str) -> Buffer:
  if node.op is Ops.ASSIGN:
    base = node.src[0]
    while base.op in MOVEMENT or base.op is Ops.DETACH:
      base = base.src[0]
    return buffer_of(base)
  return Buffer(device, node.size, node.dtype)


def run_item(item: ScheduleItem) -> None:
  out = item.bufs[0]
  device = _device_of(out)
  if item.kind == "empty":
    realized[out] = Buffer(device, 0, out.dtype)
    return
  if item.kind == "alias":
    realized[out] = buffer_of(item.bufs[1])
    return
  if item.kind == "copy":
    dst = Buffer(out.arg if isinstance(out.arg, str) else device, out.size, out.dtype)
    copy = CopyItem(dst, buffer_of(item.bufs[1]))
    run_exec(copy)
    realized[out] = dst
    if _capture is not None:
      _capture.append(copy)
    return
  program = get_program(device, item.ast)
  out_buf = _output_buffer(out, device)
  bufs = [out_buf] + [buffer_of(n) for n in item.bufs[1:]]
  exe = ExecItem(program, bufs, program.info.name, program.info, dict(item.var_vals))
  run_exec(exe)
  realized[out] = out_buf
  if _capture is not None:
    _capture.append(exe)


def run_exec(exe: ExecItem | CopyItem) -> None:
  """Runs one kernel launch or copy, counting launches in STATS and printing a line per item at DEBUG>=2 (JIT replay
  comes through here too)."""
  elapsed = exe.run()
  if isinstance(exe, CopyItem):
    if getenv("DEBUG") >= 2:
      print(f"*** {exe.name:<32} {exe.bufs[0].nbytes:>10} bytes {elapsed * 1e6:9.1f} us")
    return
  STATS["kernels"] += 1
  STATS["time"] += elapsed
  if getenv("DEBUG") >= 2:
    _print_kernel_line(exe, elapsed)


def _print_kernel_line(exe: ExecItem, elapsed: float) -> None:
  info = exe.info
  gflops = info.ops / max(elapsed, 1e-9) / 1e9
  gbs = info.bytes / max(elapsed, 1e-9) / 1e9
  threads = getattr(exe.program, "threads", 1)
  print(f"*** {info.name:<32} global={info.global_extent:<7} threads={threads} lanes={info.lanes:<2} "
        f"{elapsed * 1e6:9.1f} us {gflops:8.2f} GFLOP/s {gbs:8.2f} GB/s")


def realize_nodes(nodes: list[Node]) -> None:
  start = time.perf_counter()
  before = STATS["kernels"]
  items = Scheduler(lambda n: n in realized).schedule(nodes)
  for item in items:
    run_item(item)
  if getenv("DEBUG") >= 1 and STATS["kernels"] > before:
    print(f"realize: {STATS['kernels'] - before} kernels in {(time.perf_counter() - start) * 1e3:.2f} ms")


def buffer_from_numpy(data: np.ndarray, dtype, device: str) -> Buffer:
  buf = Buffer(device, int(data.size), dtype)
  return buf.copyin(data)


@atexit.register
def _summary():
  if getenv("DEBUG") >= 1 and STATS["kernels"]:
    print(f"total: {STATS['kernels']} kernels, {STATS['compiles']} compiled, {STATS['time'] * 1e3:.2f} ms in kernels")
