"""nvdrv.program's two launch paths without a GPU: the first launch of a geometry goes the checked slow way and leaves a
LaunchPlan; later ones fill the plan's prebuilt bytes. Both must hand the GPU the same QMD, constant bank 0 and
pushbuffer words. The device below is host memory behind nvdrv's own OS seam (LinuxOS writes into an anonymous
mapping) with NVDevice's real launch arena and barrier; only the channel is a recorder.

The QMD is checked field by field with nvdrv.qmd's reader and the pushbuffer with nvdrv.pushbuf.decode, so a plan
that patched the wrong word would show here.
"""
from __future__ import annotations

import struct
import types
from array import array

import pytest

from hwtests.nv import kernels
from nvdrv.compile import CompilerNotFound, compile_ptx
from nvdrv.device import NVDevice
from nvdrv.memory import GPUMemory
from nvdrv.osif import LinuxOS
from nvdrv.program import Program
from nvdrv.pushbuf import PushBuffer, decode
from nvdrv.qmd import Qmd

ARENA = 1 << 16
HEAP = 1 << 20
HEAP_HINT = 0x31_0000_0000


class RecordingChannel:
  """What a GPFIFO channel is given: pushbuffer words per submission, and the timeline value each one releases."""

  def __init__(self, semaphore: int):
    self.semaphore, self.value, self.pushed, self.waits, self.acquired = semaphore, 0, [], [], {}

  def wait(self, value: int) -> None:
    self.waits.append(value)

  def submit(self, pb: PushBuffer) -> int:
    self.value += 1
    self.pushed.append(pb.tobytes() + PushBuffer().semaphore_release(self.semaphore, self.value).tobytes())
    return self.value

  def push(self, data: bytes, nwords: int) -> None:
    assert len(data) == 4 * nwords
    self.pushed.append(bytes(data))

  def synchronize(self) -> None:
    self.waits.append(self.value)


class HostDevice:
  """The parts of NVDevice a Program and the copies use, over host memory (GPU VA = CPU address); both channels are
  recorders."""
  launch_slot, arena_take, barrier, write = NVDevice.launch_slot, NVDevice.arena_take, NVDevice.barrier, NVDevice.write
  copyin, memcpy, copy_pushbuffer = NVDevice.copyin, NVDevice.memcpy, NVDevice.copy_pushbuffer
  _staging, _check_range = NVDevice._staging, NVDevice._check_range
  claim_copies, order_compute_after_copies = NVDevice.claim_copies, NVDevice.order_compute_after_copies

  def __init__(self, version: str):
    self.osif = LinuxOS()
    # GPU VAs must stay below 2**40 (a pushbuffer's reach): one anonymous mapping at a low address, carved up
    self.base = self.osif.mmap(HEAP, addr=HEAP_HINT)
    if self.base + HEAP > 1 << 40:
      self.osif.munmap(self.base, HEAP)
      pytest.skip(f"no host memory below 2**40 for a stand-in GPU VA space (got 0x{self.base:x})")
    self.put = 0
    self.info = types.SimpleNamespace(qmd_version=version)
    self.barrier_kind, self.cwd_membar, self.qmd_invalidate = "compute", 1, "all"
    self.shared_window, self.local_window, self.local_per_thread = 0x7F00_0000_0000, 0x7E00_0000_0000, 0
    self.arena, self.arena_put = self._host(ARENA), 0
    self.arena_view = self.osif.view(self.arena.cpu, ARENA)
    self.compute = RecordingChannel(semaphore=0x12_3456_7000)
    self.copy = RecordingChannel(semaphore=0x12_3456_8000)
    self.mem = types.SimpleNamespace(alloc_device=lambda size, cpu_access=False: self._host(size),
                                     alloc_host=self._host)

  def _host(self, size: int) -> GPUMemory:
    address = self.base + self.put
    self.put += (size + 4095) & ~4095
    assert self.put <= HEAP
    return GPUMemory(va=address, size=size, handle=0, host=True, cpu=address)

  def close(self) -> None:
    self.osif.munmap(self.base, HEAP)

  def ensure_local_memory(self, per_thread: int, pb: PushBuffer) -> None:
    assert per_thread == 0, "these kernels use no local memory"

  def read(self, address: int, size: int) -> bytes:
    return self.osif.read(address, size)


@pytest.fixture(scope="module")
def cubin() -> bytes:
  try:
    return compile_ptx(kernels.SAXPY)
  except CompilerNotFound as e:
    pytest.skip(str(e))


def launched(dev: HostDevice, pushed: bytes) -> tuple[Qmd, bytes, list[str]]:
  """The QMD a pushbuffer sends (from its SEND_PCAS_A word), its constant bank 0, and the decoded methods."""
  words = list(struct.unpack(f"<{len(pushed) // 4}I", pushed))
  lines = decode(words)
  pcas = [line for line in lines if "SEND_PCAS_A" in line]
  assert len(pcas) == 1, lines
  qmd_address = int(pcas[0].split()[-1], 0) << 8
  q = Qmd(dev.info.qmd_version)
  q.words = array("I", dev.read(qmd_address, q.nbytes))
  if q.version == "V04_00":
    upper, lower = q.get("CONSTANT_BUFFER_ADDR_UPPER_SHIFTED6(0)"), q.get("CONSTANT_BUFFER_ADDR_LOWER_SHIFTED6(0)")
    cbuf = ((upper << 32) | lower) << 6
  else:
    cbuf = (q.get("CONSTANT_BUFFER_ADDR_UPPER(0)") << 32) | q.get("CONSTANT_BUFFER_ADDR_LOWER(0)")
  return q, dev.read(cbuf, q.get("CONSTANT_BUFFER_SIZE_SHIFTED4(0)") << 4), lines


@pytest.fixture(params=["V04_00", "V03_00"])
def dev(request):
  device = HostDevice(request.param)
  yield device
  device.close()


def test_fast_path_sends_what_the_slow_path_sends(cubin, dev):
  saxpy = Program(dev, cubin, "saxpy")
  x, y = dev._host(4096), dev._host(4096)
  geometry = {"grid": (3, 2, 1), "block": (128, 1, 1)}
  calls = [(x, y, 2.5, 1000), (y, x, -1.25, 77), (x, x, 0.5, 3)]
  values = [saxpy(*args, **geometry) for args in calls]
  assert values == [1, 2, 3]
  assert len(saxpy._plans) == 1, "the first launch should leave a plan that the later ones use"
  slow_q, slow_cbuf, slow_lines = launched(dev, dev.compute.pushed[0])
  for i, (args, pushed) in enumerate(zip(calls, dev.compute.pushed)):
    q, cbuf, lines = launched(dev, pushed)
    # the same QMD but for where its constant bank lives
    differ = {k for k in q.layout if q.get(k) != slow_q.get(k)}
    assert differ <= {n for n in q.layout if n.startswith("CONSTANT_BUFFER_ADDR_") and n.endswith("(0)")}, differ
    # constant bank 0: the same driver area, this launch's parameters
    base = saxpy.kernel.param_base
    assert cbuf[:base] == slow_cbuf[:base]
    assert cbuf[base:base + saxpy.kernel.param_size] == saxpy.pack_args(args)
    assert struct.unpack_from("<3I3I", cbuf) == (128, 1, 1, 3, 2, 1)
    # the same methods, each releasing its own timeline value
    strip = [line.split(":", 1)[-1] for line in lines]
    assert [s for s in strip if "PCAS_A" not in s and "PAYLOAD" not in s] == \
           [s for s in (line.split(":", 1)[-1] for line in slow_lines) if "PCAS_A" not in s and "PAYLOAD" not in s]
    payload = [line for line in lines if "SEM_PAYLOAD_LO" in line]
    assert payload and int(payload[0].split()[-1], 0) == values[i], lines


def test_fast_path_still_checks_arguments(cubin, dev):
  saxpy = Program(dev, cubin, "saxpy")
  x = dev._host(4096)
  saxpy(x, x, 1.0, 8, grid=(1, 1, 1), block=(32, 1, 1))
  pushed = len(dev.compute.pushed)
  with pytest.raises(ValueError, match="takes 4 parameters"):
    saxpy(x, x, 1.0, grid=(1, 1, 1), block=(32, 1, 1))
  x.freed = True
  with pytest.raises(ValueError, match="use after free"):
    saxpy(x, x, 1.0, 8, grid=(1, 1, 1), block=(32, 1, 1))
  assert len(dev.compute.pushed) == pushed, "a rejected launch was queued"


def test_fast_path_packs_every_argument_kind_as_pack_args_does(cubin, dev):
  """The plan's one-struct packer (per tuple of argument types) and pack_args agree on every kind of argument:
  buffers or their integer VAs, floats, integers (negative ones and bytes go the checked slow path); each launch's
  constant bank holds exactly its own arguments, and a launch never reuses the previous one's bytes."""
  saxpy = Program(dev, cubin, "saxpy")
  x, y = dev._host(4096), dev._host(4096)
  geometry = {"grid": (2, 1, 1), "block": (64, 1, 1)}
  calls = [(x, y, 2.5, 1000), (x.va, y.va, -0.125, 3), (x, y.va, 1e30, 2**32 - 1), (y, x, 0.0, -5),
           (x, (7).to_bytes(8, "little"), 4.0, 9), (x, y, 1.5, True), (x, y, 3.0, 0)]
  for args in calls:
    saxpy(*args, **geometry)
  assert len(saxpy._plans) == 1
  for args, pushed in zip(calls, dev.compute.pushed):
    _, cbuf, _ = launched(dev, pushed)
    base = saxpy.kernel.param_base
    assert cbuf[base:base + saxpy.kernel.param_size] == saxpy.pack_args(args), args


@pytest.fixture(scope="module")
def variable_kernel():
  """(name, cubin, info) of a kernel the compiler renders (compiler/render_ptx.py) for a window of rows that starts
  at Variable `row`, scaled by Variable `k`: its buffers' pointers, then two int32 parameters (k, row: by name)."""
  import numpy as np

  from compiler.ir import Variable
  from compiler.lower_gpu import lower_gpu
  from compiler.render_ptx import render_ptx
  from compiler.schedule import Scheduler
  from frontend.realize import realized
  from frontend.tensor import Tensor
  k, row = Variable("k", -1000, 1000), Variable("row", 0, 7)
  x = Tensor(np.ones((8, 4), np.float32), device="CPU")
  t = x.shrink(((row.bind(1), row.bind(1) + 1), None)) * k.bind(2)
  asts = [item.ast for item in Scheduler(lambda n: n in realized).schedule([t.lazydata]) if item.ast is not None]
  name, ptx, info = render_ptx(lower_gpu(asts[-1]))
  assert info.vars == (k, row)
  try:
    return name, compile_ptx(ptx), info
  except CompilerNotFound as e:
    pytest.skip(str(e))


def test_variable_values_are_int32_params_after_the_buffers(dev, variable_kernel):
  """A rendered kernel that reads two Variables: ptxas gives each a 4-byte parameter after the 8-byte buffer
  pointers, and NVProgram(addresses, values) packs each value there as an int32, in info.vars order. The first
  launch takes the slow path, later ones the plan's packer; a negative value goes the checked slow path (the packer
  packs unsigned) and must land as two's complement all the same."""
  from frontend.runtime.nv import NVProgram
  name, cubin, info = variable_kernel
  program = NVProgram(Program(dev, cubin, name), info, cubin)
  kernel = program.program.kernel
  nbuf = len(info.params)
  assert [p.size for p in kernel.params] == [8] * nbuf + [4, 4]
  slow = []
  slow_path = program.program._launch_slow
  program.program._launch_slow = lambda args, *rest: slow.append(args[nbuf:]) or slow_path(args, *rest)
  bufs = [dev._host(4096) for _ in range(nbuf)]
  calls = [(2, 1), (-3, 7), (1000, 0), (-1000, 5), (0, 0), (-1, 3)]
  for values in calls:
    program([b.va for b in bufs], values)
  assert slow == [(2, 1), (-3, 7), (-1000, 5), (-1, 3)] and len(program.program._plans) == 1
  assert len(dev.compute.pushed) == len(calls)
  for values, pushed in zip(calls, dev.compute.pushed):
    _, cbuf, _ = launched(dev, pushed)
    at = [kernel.param_base + p.offset for p in kernel.params]
    assert [struct.unpack_from("<Q", cbuf, at[i])[0] for i in range(nbuf)] == [b.va for b in bufs]
    assert tuple(struct.unpack_from("<i", cbuf, at[nbuf + j])[0] for j in range(2)) == values
  with pytest.raises(ValueError, match=r"parameter 2: 4294967296 does not fit its 4 bytes"):
    program([b.va for b in bufs], (1 << 32, 0))
  assert len(dev.compute.pushed) == len(calls), "a value that does not fit was queued"


def test_called_function_sections_are_loaded_and_linked(dev, tmp_path):
  """A kernel whose code calls a function in a separate .text section (`ptxas -c` output, as some toolkits' ptxas
  emits for div.rn.f32's slow path): both are uploaded, the callee at a 128-byte boundary after the kernel, and the
  CALL.ABS in the uploaded code targets the callee's GPU address (decoded by nvdisasm)."""
  import subprocess

  from nvdrv.compile import find_compilers, find_cuda_tool
  from nvdrv.cubin import parse_cubin
  from tests.test_nv_cubin import DIVIDE, SLOWPATH
  ptxas = next((c.path for c in find_compilers()[0] if c.kind == "ptxas"), None)
  nvdisasm = find_cuda_tool("nvdisasm")
  if ptxas is None or nvdisasm is None:
    pytest.skip("needs ptxas and nvdisasm (pip install nvidia-cuda-nvcc-cu12 nvidia-cuda-nvdisasm)")
  (tmp_path / "k.ptx").write_text(DIVIDE)
  subprocess.run([ptxas, "-c", "-arch=sm_90", str(tmp_path / "k.ptx"), "-o", str(tmp_path / "k.cubin")], check=True)
  blob = (tmp_path / "k.cubin").read_bytes()
  module = parse_cubin(blob)
  prog = Program(dev, blob, "fdiv")
  kernel_size = len(module.code_sections[".text.fdiv"])
  callee_at = (kernel_size + 127) // 128 * 128
  assert prog.sections == {".text.fdiv": 0, SLOWPATH: callee_at}
  uploaded = dev.read(prog.code.va, callee_at + len(module.code_sections[SLOWPATH]))
  assert uploaded[callee_at:] == module.code_sections[SLOWPATH]
  (tmp_path / "code.bin").write_bytes(uploaded[:kernel_size])
  sass = subprocess.run([nvdisasm, "-b", "SM90", str(tmp_path / "code.bin")], capture_output=True, text=True,
                        check=True).stdout
  assert f"CALL.ABS.NOINC {prog.code.va + callee_at:#x}" in sass, sass


def test_command_ring_wrap_waits_only_for_work_already_queued():
  """Channel.push is given words whose timeline value the caller has already taken: when they wrap the command
  ring, the channel must drain what was queued before them (value - 1), not wait for their own release, which the GPU
  can only write after they are queued (that wait could only end in a timeout)."""
  from array import array
  from types import SimpleNamespace
  from nvdrv.channel import Channel
  ch = object.__new__(Channel)
  ch.name, ch.handle, ch.entries, ch.put, ch.token, ch.semaphore = "compute", 1, 16, 0, 7, 0x2000
  ch.cmd = SimpleNamespace(size=4096, va=0x10_0000)
  ch.cmd_view = memoryview(bytearray(4096))
  ch.cmd_put = 4096 - 64
  ch.semaphore_word = array("Q", [5])
  ch.completed, ch.value = 5, 6  # five launches done; the caller took value 6 for the words it pushes
  ch.ring = array("Q", [0] * 16)
  ch.gp_put = array("I", [0])
  ch.dev = SimpleNamespace(doorbell=array("I", [0]))
  ch.check_error = lambda: None
  data = PushBuffer().semaphore_release(0x1000, 6).tobytes()
  data += bytes(128 - len(data) % 128)
  ch.push(data, len(data) // 4)
  assert ch.cmd_put == 128 and bytes(ch.cmd_view[:len(data)]) == data, "the words went to the start of the ring"
  assert ch.put == 1 and ch.gp_put[0] == 1 and ch.dev.doorbell[0] == 7, "one GPFIFO entry and the doorbell"
  ch.semaphore_word[0] = 6  # the pushed words ran; Channel.submit takes its value itself and must wrap the same way
  ch.cmd_put = 4096 - 16  # less room than the release and its tail need
  assert ch.submit(PushBuffer().semaphore_release(0x1000, 99)) == 7
  assert ch.cmd_put == 64 and ch.put == 2, "submit's words went to the start of the ring"


def methods(pushed: bytes) -> list[tuple[str, int]]:
  """(method name without its class prefix, value) of every data word of a pushbuffer, through nvdrv.pushbuf.decode."""
  out = []
  for line in decode(struct.unpack(f"<{len(pushed) // 4}I", pushed)):
    name, value = line.split("] ")[1].split(" = ")
    out.append((name.split("_", 1)[1], int(value.split()[0], 0)))  # NVC86F_SEM_ADDR_LO -> SEM_ADDR_LO
  return out


def test_copyin_without_wait_is_awaited_by_the_next_compute_submission(monkeypatch, cubin):
  """copyin(wait=False) returns with the data in pinned staging memory and the copy queued on the copy channel (after
  an acquire of the compute work queued before it). The next compute submission starts with an acquire of that copy's
  value: the slow launch path inside its own words, the fast path as a submission of its own; a launch with no new
  copy queues no acquire. Nothing waits on the host but a staging buffer's reuse."""
  import numpy as np

  from nvdrv import transfer
  monkeypatch.setattr(transfer, "STAGING_BYTES", 4096)
  dev = HostDevice("V04_00")
  try:
    saxpy = Program(dev, cubin, "saxpy")
    vram = dev._host(3 * 4096)
    dst = GPUMemory(va=vram.va, size=vram.size, handle=0, host=False, cpu=0)  # device memory, not CPU-mapped
    data = np.arange(2500, dtype=np.uint32)  # 10000 bytes: three staging chunks, slots 0, 1, 0
    dev.compute.value = 5  # five launches queued before the copy
    dev.copyin(dst, data, offset=8, wait=False)
    assert len(dev.copy.pushed) == 3 and dev.copy.value == 3 and not dev.compute.pushed
    for i, pushed in enumerate(dev.copy.pushed):
      words = methods(pushed)
      got = dict(words)
      assert words[0] == ("SEM_ADDR_LO", dev.compute.semaphore & 0xFFFFFFFF) and words[2] == ("SEM_PAYLOAD_LO", 5)
      assert got["OFFSET_OUT_LOWER"] | got["OFFSET_OUT_UPPER"] << 32 == dst.va + 8 + 4096 * i
      assert got["OFFSET_IN_LOWER"] | got["OFFSET_IN_UPPER"] << 32 == dev._staging_bufs[i % 2].va
      assert got["LINE_LENGTH_IN"] == min(4096, 10000 - 4096 * i)
    assert dev.copy.waits == [0, 0, 1], "slot 0 is refilled only after the copy that read it (value 1) is done"
    assert dev.read(dev._staging_bufs[0].va, 10000 - 8192) == data.tobytes()[8192:], "the last chunk is staged"

    def acquires(pushed: bytes) -> list[int]:
      words = methods(pushed)
      return [words[k + 2][1] for k, (name, value) in enumerate(words)
              if name == "SEM_ADDR_LO" and value == dev.copy.semaphore & 0xFFFFFFFF
              and words[k + 4][0] == "SEM_EXECUTE" and words[k + 4][1] & 7 == 3]  # ACQ_CIRC_GEQ (clc86f.h)

    geometry = {"grid": (4, 1, 1), "block": (64, 1, 1)}
    saxpy(dst, dst, 2.0, 256, **geometry)  # first launch of this geometry: the slow path
    assert len(dev.compute.pushed) == 1 and acquires(dev.compute.pushed[0]) == [3]
    saxpy(dst, dst, 2.0, 256, **geometry)
    assert len(dev.compute.pushed) == 2 and acquires(dev.compute.pushed[1]) == [], "copy 3 is already awaited"
    dev.copyin(dst, data[:4], wait=True)
    assert dev.copy.waits[-1] == 4
    saxpy(dst, dst, 2.0, 256, **geometry)
    assert len(dev.compute.pushed) == 3 and acquires(dev.compute.pushed[2]) == [], "copy 4 was waited on the host"
    dev.copyin(dst, data[:4], wait=False)
    saxpy(dst, dst, 2.0, 256, **geometry)  # fast path: the acquire goes first, as a submission of its own
    assert [acquires(p) for p in dev.compute.pushed[3:]] == [[5], []]
    dev.order_compute_after_copies()
    assert len(dev.compute.pushed) == 5, "nothing new to await"
  finally:
    dev.close()
