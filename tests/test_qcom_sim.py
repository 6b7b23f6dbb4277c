"""Dispatches through the unmodified driver on the simulated kgsl device: results, the state checks of the simulated
command processor (each forgotten or wrong piece of dispatch state faults, naming it), the launches the driver refuses
before submitting, timestamps, waits that time out and resume, and recovery after a fault.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qcomdrv import binary as kb
from qcomdrv.compile import CompilerUnavailable, vendor_binary_to_kernel
from qcomdrv.decode import packet_span
from qcomdrv.device import QCOMDevice
from qcomdrv.errors import QCOMError, QCOMFault, QCOMTimeout
from qcomdrv.osif import LinuxOS
from qcomdrv.pm4 import CommandStream
from qcomdrv.program import Program
from qcomdrv.regs import packets, registers
from qcomdrv.sim import SimKGSL

SAXPY = """
__kernel __attribute__((reqd_work_group_size(64, 1, 1)))
void saxpy(__global float* restrict out, __global const float* restrict x, float a, uint n) {
  size_t i = get_global_id(0);
  if (i < n) out[i] = a * x[i] + out[i];
}
"""
ROWSUM = """
__kernel __attribute__((reqd_work_group_size(64, 1, 1)))
void rowsum(__global float* restrict out, __global const float* restrict x) {
  __local float part[64];
  uint lid = get_local_id(0);
  part[lid] = x[get_group_id(0) * 64 + lid];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = 32; s > 0; s >>= 1) {
    if (lid < s) part[lid] += part[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid == 0) out[get_group_id(0)] = part[0];
}
"""
SCRATCH = """
__kernel void scratch(__global int* restrict out) {
  __local int tmp[1024];
  tmp[get_local_id(0)] = (int)get_local_id(0);
  barrier(CLK_LOCAL_MEM_FENCE);
  out[get_global_id(0)] = tmp[get_local_size(0) - 1 - get_local_id(0)];
}
"""
DIVERGE = """
__kernel void diverge(__global int* restrict out) {
  if (get_local_id(0) < 2) barrier(CLK_LOCAL_MEM_FENCE);
  out[get_local_id(0)] = 1;
}
"""
N = 1000
CHIPS = ["a630", "a660", "a740"]


class Bench:
  """A simulated device with saxpy's buffers filled with fresh random data."""

  def __init__(self, chip: str, seed: int = 0):
    self.sim = SimKGSL(chip)
    self.dev = QCOMDevice(os=self.sim, timeout_ms=2000)
    self.compiler = self.sim.opencl_compiler()
    rng = np.random.default_rng(seed)
    self.x, self.y = rng.uniform(-2, 2, N).astype(np.float32), rng.uniform(-2, 2, N).astype(np.float32)
    self.out, self.xbuf = self.dev.alloc(4 * N), self.dev.alloc(4 * N)
    self.put(self.out, self.y)
    self.put(self.xbuf, self.x)
    self.saxpy = self.program(SAXPY, "saxpy")

  def program(self, source: str, name: str, **kw) -> Program:
    return Program(self.dev, self.compiler.compile(source, name), **kw)

  def put(self, buf, array: np.ndarray) -> None:
    self.dev.view(buf, 0, array.nbytes)[:] = array.tobytes()

  def get(self, buf, count: int, dtype=np.float32) -> np.ndarray:
    return np.frombuffer(bytes(self.dev.view(buf, 0, count * np.dtype(dtype).itemsize)), dtype)

  def args(self):
    return self.out.gpuaddr, self.xbuf.gpuaddr, int(np.float32(1.5).view(np.uint32)), N

  def saxpy_stream(self) -> CommandStream:
    cs = self.dev.stream()
    self.saxpy.encode(cs, list(self.args()), (16, 1, 1), (64, 1, 1))
    return cs


@pytest.mark.parametrize("chip", CHIPS)
def test_saxpy(chip):
  bench = Bench(chip)
  timestamp = bench.saxpy(*bench.args(), groups=(16, 1, 1), local=(64, 1, 1))
  bench.dev.synchronize()
  assert timestamp == bench.dev.last_timestamp
  np.testing.assert_allclose(bench.get(bench.out, N), 1.5 * bench.x + bench.y, rtol=1e-6)


@pytest.mark.parametrize("chip", ["a650", "a730"])
def test_barrier_reduction_and_run_opencl(chip):
  bench = Bench(chip)
  rows = bench.dev.alloc(4 * 16)
  rowsum = bench.program(ROWSUM, "rowsum", dispatch_packet="CP_RUN_OPENCL")
  rowsum(rows.gpuaddr, bench.xbuf.gpuaddr, groups=(15, 1, 1), local=(64, 1, 1), wait=True)
  np.testing.assert_allclose(bench.get(rows, 15), bench.x[:960].reshape(15, 64).sum(1), rtol=1e-5)


def test_command_buffer_wraps_around():
  """Submissions reuse the command buffer from its start once it is full (after waiting for what is in it)."""
  dev = QCOMDevice(os=SimKGSL("a660"), command_bytes=4096)
  out = dev.alloc(4)
  for k in range(100):  # 100 submissions of 128 bytes: three trips through 4 KiB
    cs = dev.stream()
    cs.mem_write(out.gpuaddr, k)
    dev.submit(cs)
  dev.synchronize()
  assert int.from_bytes(dev.view(out, 0, 4), "little") == 99 and dev.fence == 100 and dev.cursor < 4096


def test_timestamp_round_trip():
  dev = Bench("a740").dev
  first = dev.gpu_timestamp()
  second = dev.gpu_timestamp()
  assert 0 < first < second


# ---- the simulated CP's checks: drop or change one piece of a correct dispatch ----
def spans(words: list[int]):
  """(start, end, kind, register offset or opcode) of each packet."""
  i = 0
  while i < len(words):
    kind, what, count = packet_span(words[i])
    yield i, i + 1 + count, kind, what
    i += 1 + count


def drop(words: list[int], gen: str, name: str, nth: int = 0) -> list[int]:
  """The words without the nth packet that writes register `name` first, or is type-7 packet `name`."""
  regs, pm4 = registers(gen), packets(gen)
  hits = [(a, b) for a, b, kind, what in spans(words)
          if (kind == "PKT4" and regs.name_at(what) in (name, f"{name}_LO")) or
          (kind == "PKT7" and pm4.names.get(what) == name)]
  a, b = hits[nth]
  return words[:a] + words[b:]


def patch(words: list[int], gen: str, name: str, value: int | None = None, **fields) -> list[int]:
  """The words with register `name`'s written value replaced by `value`, or re-encoded with `fields` changed."""
  reg = registers(gen)[name]
  out = list(words)
  for a, b, kind, what in spans(words):
    if kind == "PKT4" and what <= reg.offset < what + (b - a - 1):
      index = a + 1 + reg.offset - what
      if value is None:
        value = reg.encode(**{**reg.decode(out[index]), **fields})
      out[index:index + reg.dwords] = [(value >> (32 * k)) & 0xFFFFFFFF for k in range(reg.dwords)]
  return out


def run_words(bench: Bench, words: list[int]) -> None:
  cs = CommandStream(bench.dev.chip)
  cs.words.extend(words)
  bench.dev.submit(cs)
  bench.dev.synchronize()


def fault_of(bench: Bench, words: list[int]) -> str:
  with pytest.raises(QCOMFault) as info:
    run_words(bench, words)
  return str(info.value)


MISSING = [("SP_CS_OBJ_START", "SP_CS_OBJ_START never written"), ("SP_CS_INSTRLEN", "SP_CS_INSTRLEN never written"),
           ("SP_CS_CTRL_REG0", "SP_CS_CTRL_REG0, SP_CS_CTRL_REG1 never written"),
           ("SP_CS_CONFIG", "SP_CS_CONFIG never written"), ("HLSQ_CS_CNTL", "HLSQ_CS_CNTL never written"),
           ("HLSQ_CS_NDRANGE_0", "HLSQ_CS_NDRANGE_0, HLSQ_CS_NDRANGE_1"),
           ("HLSQ_INVALIDATE_CMD", "no HLSQ_INVALIDATE_CMD with CS_STATE"),
           ("CP_LOAD_STATE6_FRAG@1", "argument out (constant c0.x) was never loaded"),
           ("CP_EVENT_WRITE7@0", "no CACHE_INVALIDATE event")]


@pytest.mark.parametrize("name,message", MISSING, ids=[m[0] for m in MISSING])
def test_forgotten_state_faults_naming_it(name, message):
  bench = Bench("a740")
  packet, _, nth = name.partition("@")
  text = fault_of(bench, drop(list(bench.saxpy_stream().words), "a7xx", packet, int(nth or 0)))
  assert message in text and "GPU fault in kgsl context" in text and "kernel log:" in text


@pytest.mark.parametrize("chip,name", [("a630", "HLSQ_CS_CNTL_0"), ("a660", "SP_CS_CNTL_0"),
                                       ("a740", "SP_CS_CNTL_0"), ("a740", "HLSQ_CS_LAST_LOCAL_SIZE")])
def test_forgotten_sysval_registers(chip, name):
  bench = Bench(chip)
  assert f"{name}" in fault_of(bench, drop(list(bench.saxpy_stream().words), bench.dev.chip.gen, name))


WRONG = [("SP_CS_CTRL_REG0", {"FULLREGFOOTPRINT": 0}, "FULLREGFOOTPRINT = 0 but the shader uses"),
         ("SP_CS_CTRL_REG0", {"THREADSIZE": "THREAD128"}, "THREADSIZE {'SP_CS_CTRL_REG0': 'THREAD128'}"),
         ("SP_CS_INSTRLEN", {"value": 1}, "SP_CS_INSTRLEN too small"),
         ("HLSQ_CS_NDRANGE_0", {"LOCALSIZEX": 31}, "the shader requires (64, 1, 1)"),
         ("HLSQ_CS_NDRANGE_1", {"GLOBALSIZE_X": 64}, "GLOBALSIZE_X = 64, but local size (64, 1, 1) x (16, 1, 1)"),
         ("HLSQ_CS_CNTL", {"CONSTLEN": 0}, "HLSQ_CS_CNTL.CONSTLEN = 0"),
         ("SP_CS_CONFIG", {"ENABLED": False}, "SP_CS_CONFIG.ENABLED is 0"),
         ("SP_CS_CNTL_0", {"LOCALIDREGID": 4}, "LOCALIDREGID = 0x4 (shader: 0x0)"),
         ("SP_CS_OBJ_START", {"value": 0x7000_0000}, "GPU page fault: the shader fetch at SP_CS_OBJ_START"),
         ("SP_CS_OBJ_START", {"value": 0x7000_0010}, "must be a non-zero multiple of 32")]


@pytest.mark.parametrize("name,fields,message", WRONG, ids=[f"{w[0]}-{list(w[1])}" for w in WRONG])
def test_wrong_state_faults_naming_it(name, fields, message):
  bench = Bench("a660")
  assert message in fault_of(bench, patch(list(bench.saxpy_stream().words), "a6xx", name, **fields))


def test_shared_memory_must_be_enabled():
  bench = Bench("a740")
  scratch = bench.program(SCRATCH, "scratch")
  out = bench.dev.alloc(4 * 256)
  scratch(out.gpuaddr, groups=(2, 1, 1), local=(128, 1, 1), wait=True)
  assert list(bench.get(out, 4, np.int32)) == [127, 126, 125, 124]
  cs = bench.dev.stream()
  scratch.encode(cs, [out.gpuaddr], (2, 1, 1), (128, 1, 1))
  words = patch(list(cs.words), "a7xx", "SP_CS_CTRL_REG1", SHARED_SIZE=1)
  assert "SHARED_SIZE enables 2048 bytes of shared memory, the shader declares 4096" in fault_of(bench, words)


def test_cpu_pointer_as_argument_page_faults():
  bench = Bench("a740")
  args = list(bench.args())
  args[1] = bench.xbuf.cpu  # a CPU address where the GPU needs a GPU address
  cs = bench.dev.stream()
  bench.saxpy.encode(cs, args, (16, 1, 1), (64, 1, 1))
  assert "GPU page fault: argument x of kernel saxpy" in fault_of(bench, list(cs.words))


def test_malformed_and_unsupported_packets():
  bench = Bench("a740")
  words = list(bench.saxpy_stream().words)
  words[0] ^= 1 << 23
  assert "wrong parity bits" in fault_of(bench, words)
  bench.dev.recover()
  cs = CommandStream(bench.dev.chip)
  cs.pkt7("CP_DRAW_INDX", 0, 0, 0)
  assert "CP_DRAW_INDX is not simulated" in fault_of(bench, list(cs.words))


def test_results_must_be_flushed():
  """A submission whose dispatch is not followed by a cache flush faults (the CPU could read stale memory)."""
  bench = Bench("a740")
  dev = bench.dev
  data = bench.saxpy_stream().tobytes()
  dev.view(dev.commands, 0, len(data))[:] = data
  cmd = {"gpuaddr": dev.commands.gpuaddr, "size": len(data), "flags": 1, "id": dev.commands.id}
  from qcomdrv.kgsl import IOCTL_KGSL_GPU_COMMAND, ffi
  obj = ffi.new("struct kgsl_command_object *", cmd)
  req = ffi.new("struct kgsl_gpu_command *", {"cmdlist": int(ffi.cast("uintptr_t", obj)), "cmdsize": 32,
                                              "numcmds": 1, "context_id": dev.context})
  bench.sim.ioctl(dev.fd, IOCTL_KGSL_GPU_COMMAND, req)
  assert "without a CACHE_FLUSH_TS/CACHE_CLEAN after it" in bench.sim.kernel_log()[-1]


def test_barrier_divergence_faults():
  bench = Bench("a740")
  out = bench.dev.alloc(4 * 64)
  diverge = bench.program(DIVERGE, "diverge")
  diverge(out.gpuaddr, groups=(1, 1, 1), local=(8, 1, 1))
  with pytest.raises(QCOMFault, match="barrier divergence"):
    bench.dev.synchronize()


def test_fault_then_recover():
  bench = Bench("a740")
  words = drop(list(bench.saxpy_stream().words), "a7xx", "SP_CS_OBJ_START")
  fault_of(bench, words)
  with pytest.raises(QCOMError, match="IOCTL_KGSL_GPU_COMMAND failed: EDEADLK"):
    bench.saxpy(*bench.args(), groups=(16, 1, 1), local=(64, 1, 1))
  bench.dev.recover()
  bench.saxpy(*bench.args(), groups=(16, 1, 1), local=(64, 1, 1), wait=True)
  np.testing.assert_allclose(bench.get(bench.out, N), 1.5 * bench.x + bench.y, rtol=1e-6)


def test_wait_times_out_then_resumes():
  bench = Bench("a660")
  dev = bench.dev
  flag, out = dev.alloc(4), dev.alloc(4)
  cs = dev.stream()
  cs.wait_reg_mem(flag.gpuaddr, 1, function="WRITE_EQ")
  cs.mem_write(out.gpuaddr, 0xC0FFEE)
  timestamp = dev.submit(cs)
  with pytest.raises(QCOMTimeout, match=r"timestamp 1 not retired after 20 ms(.|\n)*CP_WAIT_REG_MEM"):
    dev.wait(timestamp, timeout_ms=20)
  assert bench.get(out, 1, np.uint32)[0] == 0
  dev.view(flag)[:4] = (1).to_bytes(4, "little")
  dev.synchronize()
  assert bench.get(out, 1, np.uint32)[0] == 0xC0FFEE


# ---- launches the driver refuses before submitting ----
def tweaked(bench: Bench, source: str, name: str, **changes) -> bytes:
  kernel = kb.parse(bench.compiler.compile(source, name))
  return dataclasses.replace(kernel, **changes).pack()


def test_bad_launches_are_refused_before_submission():
  bench = Bench("a740")
  submitted = bench.dev.fence
  with pytest.raises(ValueError, match="exceeds the 1024 work-items"):
    bench.saxpy(*bench.args(), groups=(1, 1, 1), local=(2048, 1, 1))
  with pytest.raises(ValueError, match="compiled for \\(64, 1, 1\\)"):
    bench.saxpy(*bench.args(), groups=(32, 1, 1), local=(32, 1, 1))
  with pytest.raises(ValueError, match="oversized dispatch"):
    bench.saxpy(*bench.args(), groups=(1 << 27, 1, 1), local=(64, 1, 1))
  with pytest.raises(ValueError, match="takes 4 arguments, got 3"):
    bench.saxpy(*bench.args()[:3], groups=(16, 1, 1), local=(64, 1, 1))
  with pytest.raises(ValueError, match="hold at most 63: too many registers"):
    Program(bench.dev, tweaked(bench, SAXPY, "saxpy", full_regs=64))
  heavy = Program(bench.dev, tweaked(bench, SCRATCH, "scratch", full_regs=40))
  with pytest.raises(ValueError, match="needs 16 waves of 64 resident at once, but 40 full vec4 registers per "
                                       "thread let only 4 fit"):
    heavy(bench.out.gpuaddr, groups=(1, 1, 1), local=(1024, 1, 1))
  with pytest.raises(ValueError, match="needs 65536 bytes of shared memory; a740 has 32768"):
    Program(bench.dev, tweaked(bench, SCRATCH, "scratch", shared_bytes=65536))
  assert bench.dev.fence == submitted  # nothing reached the GPU


def test_binary_container_round_trip_and_errors():
  bench = Bench("a740")
  blob = bench.compiler.compile(ROWSUM, "rowsum")
  kernel = kb.parse(blob)
  assert kernel.pack() == blob and kernel.local_size == (64, 1, 1) and kernel.shared_bytes == 256
  assert [a.const_dword for a in kernel.args] == [0, 4] and kernel.constlen == 4
  with pytest.raises(ValueError, match="not a qcomdrv kernel binary"):
    kb.parse(b"\x7fELF" + bytes(100))
  with pytest.raises(ValueError, match="runs past"):
    kb.parse(blob[:-10])


def test_no_compiler_on_the_host_is_a_clear_error(monkeypatch):
  monkeypatch.delenv("QCOM_OPENCL_LIB", raising=False)
  with pytest.raises(CompilerUnavailable, match="none of /vendor/lib64/libOpenCL.so.*QCOM_OPENCL_LIB"):
    LinuxOS().opencl_compiler()
  with pytest.raises(CompilerUnavailable, match="not publicly documented"):
    vendor_binary_to_kernel(b"\x7fELF....", "k", "/vendor/lib64/libOpenCL.so")
