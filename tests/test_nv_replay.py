"""nvdrv.replay.CommandBuffer without a GPU: what a prebuilt buffer hands the GPU, read back from the stand-in
device memory of tests/test_nv_launch.py and decoded with nvdrv.qmd's reader and nvdrv.pushbuf.decode.

In dep mode every QMD is sent up front and each grid but the first waits on a dependence counter that the grid before
it decrements; the memory barrier at the end of each inner grid is GPU-scope, the last grid keeps the system-scope one
and releases the timeline itself. A wrong pointer or field here would hang or race on the hardware."""
from __future__ import annotations

import struct
from array import array

import pytest

from nvdrv.program import Program
from nvdrv.pushbuf import decode
from nvdrv.qmd import Qmd
from nvdrv.replay import CommandBuffer
from tests.test_nv_launch import HostDevice, cubin, variable_kernel  # noqa: F401  (fixtures: saxpy, a Variable kernel)


@pytest.fixture
def dev():
  device = HostDevice("V04_00")
  device.mem.alloc_host = lambda size: device._host(size)
  yield device
  device.close()


def qmd_at(dev, address: int) -> Qmd:
  q = Qmd("V04_00")
  q.words = array("I", dev.read(address, q.nbytes))
  return q


def pushed_qmds(dev, cb) -> list[int]:
  words = struct.unpack(f"<{len(cb.pb)}I", dev.read(cb.pb_address, 4 * len(cb.pb)))
  return [int(line.split()[-1], 0) << 8 for line in decode(list(words)) if "SEND_PCAS_A" in line]


@pytest.mark.parametrize("inner", [3, 1, 0])
def test_dep_mode_links_every_grid_to_the_next(cubin, dev, inner):  # noqa: F811
  saxpy = Program(dev, cubin, "saxpy")
  x, y = dev._host(4096), dev._host(4096)
  cb = CommandBuffer(dev, mode="dep", inner_membar=inner)
  for i in range(4):
    cb.launch(saxpy, x, y, float(i), 100 + i, grid=(2, 1, 1), block=(64, 1, 1))
  cb.finalize()
  addresses = pushed_qmds(dev, cb)
  assert len(addresses) == 4, "dep mode sends every QMD up front"
  qmds = [qmd_at(dev, a) for a in addresses]
  for i, q in enumerate(qmds):
    assert q.get("DEPENDENCE_COUNTER") == (1 if i else 0)
    cbuf = ((q.get("CONSTANT_BUFFER_ADDR_UPPER_SHIFTED6(0)") << 32) | q.get("CONSTANT_BUFFER_ADDR_LOWER_SHIFTED6(0)"))
    params = dev.read((cbuf << 6) + saxpy.kernel.param_base, saxpy.kernel.param_size)
    assert params == saxpy.pack_args((x, y, float(i), 100 + i))
    if i + 1 < len(qmds):
      assert q.get("DEPENDENT_QMD_ENABLE(0)") == 1 and q.get("DEPENDENT_QMD0_ACTION") == 4  # DECREMENT_DEPENDENCE
      assert q.get("DEPENDENT_QMD0_POINTER") << 8 == addresses[i + 1]
      assert q.get("CWD_MEMBAR_TYPE") == inner
      assert q.get("RELEASE_ENABLE(0)") == 0
    else:
      assert q.get("DEPENDENT_QMD_ENABLE(0)") == 0
      assert q.get("CWD_MEMBAR_TYPE") == dev.cwd_membar == 1, "the last grid keeps the system-scope membar"
      assert q.get("RELEASE_ENABLE(0)") == 1 and q.get("RELEASE_MEMBAR_TYPE(0)") == 1  # FE_SYSMEMBAR
      sem = (q.get("RELEASE_SEMAPHORE0_ADDR_UPPER") << 32) | q.get("RELEASE_SEMAPHORE0_ADDR_LOWER")
      assert sem == dev.compute.semaphore


def test_submit_patches_the_release_payload_and_set_arg_the_constant_bank(cubin, dev):  # noqa: F811
  saxpy = Program(dev, cubin, "saxpy")
  x, y, z = dev._host(4096), dev._host(4096), dev._host(4096)
  cb = CommandBuffer(dev, mode="dep")
  for i in range(3):
    cb.launch(saxpy, x, y, 1.0, 10, grid=(1, 1, 1), block=(32, 1, 1))
  dev.compute.submit_segment = lambda address, nwords: None
  dev.compute.wait = lambda value, timeout=10.0: None
  dev.compute.completed = 0
  value = cb.submit()
  last = qmd_at(dev, pushed_qmds(dev, cb)[-1])
  assert last.get("RELEASE_SEMAPHORE0_PAYLOAD_LOWER") == value
  cb.set_arg(1, 1, z)
  value2 = cb.submit()
  assert value2 == value + 1
  qmds = [qmd_at(dev, a) for a in pushed_qmds(dev, cb)]
  assert qmds[-1].get("RELEASE_SEMAPHORE0_PAYLOAD_LOWER") == value2
  for i, q in enumerate(qmds):
    cbuf = ((q.get("CONSTANT_BUFFER_ADDR_UPPER_SHIFTED6(0)") << 32) | q.get("CONSTANT_BUFFER_ADDR_LOWER_SHIFTED6(0)"))
    params = dev.read((cbuf << 6) + saxpy.kernel.param_base, saxpy.kernel.param_size)
    assert params == saxpy.pack_args((x, z if i == 1 else y, 1.0, 10))


@pytest.mark.parametrize("mode", ["barrier", "dep"])
def test_submit_awaits_copies_queued_before_it(cubin, dev, mode, monkeypatch):  # noqa: F811
  """The buffer opens with a semaphore acquire of the copy channel's timeline; a submit after unwaited copies
  (copyin(wait=False): a TinyJit step's input batch) sets its payload to the last copy's value, in the pushbuffer the
  GPU fetches, so the launches wait for the copies on the GPU; a submit with nothing new leaves it as it was."""
  import numpy as np

  from nvdrv import transfer
  from nvdrv.memory import GPUMemory
  monkeypatch.setattr(transfer, "STAGING_BYTES", 4096)
  saxpy = Program(dev, cubin, "saxpy")
  x, y = dev._host(4096), dev._host(4096)
  cb = CommandBuffer(dev, mode=mode)
  for i in range(2):
    cb.launch(saxpy, x, y, 1.0, 10, grid=(1, 1, 1), block=(32, 1, 1))
  dev.compute.submit_segment = lambda address, nwords: None
  dev.compute.completed = 1 << 40

  def acquire() -> tuple[int, int]:
    words = struct.unpack(f"<{len(cb.pb)}I", dev.read(cb.pb_address, 4 * len(cb.pb)))
    lines = decode(list(words))
    at = next(k for k, line in enumerate(lines) if line.endswith(f"= 0x{dev.copy.semaphore & 0xFFFFFFFF:08x}"))
    assert "SEM_ADDR_LO" in lines[at] and "SEM_EXECUTE" in lines[at + 4] and int(lines[at + 4].split()[-1], 0) & 7 == 3
    return at, int(lines[at + 2].split()[-1], 0)

  cb.submit()
  first, payload = acquire()
  assert payload == 0 and first < 6, "it opens the buffer and, with no copies yet, is met at once"
  dst = GPUMemory(va=x.va, size=x.size, handle=0, host=False, cpu=0)
  dev.copyin(dst, np.ones(16, np.float32), wait=False)
  dev.copyin(dst, np.ones(16, np.float32), wait=False)
  cb.submit()
  assert acquire()[1] == 2 == dev.copy.value
  dev.copy.value = 7  # copies queued since, waited on the host by someone else: submit still awaits them
  cb.submit()
  assert acquire()[1] == 7
  cb.submit()
  assert acquire()[1] == 7 and dev.compute.acquired[dev.copy.semaphore] == 7


def test_bad_inner_membar_is_refused(dev):
  with pytest.raises(ValueError, match="inner_membar 2"):
    CommandBuffer(dev, mode="dep", inner_membar=2)


def run_graph(dev, addresses: list[int], order_seed: int) -> tuple[list[int], list[int]]:
  """Plays the compute engine over QMDs read back from memory: every pushed QMD is queued, a grid may start once its
  dependence counter is zero, and on completion it decrements the counters of the QMDs its enabled slots name (action
  DECREMENT_DEPENDENCE). Running grids complete in a random order. Returns each launch's (start, end) step."""
  import random
  rng = random.Random(order_seed)
  index = {a: i for i, a in enumerate(addresses)}
  qmds = [qmd_at(dev, a) for a in addresses]
  counter = [q.get("DEPENDENCE_COUNTER") for q in qmds]
  start, end = [None] * len(qmds), [None] * len(qmds)
  running, clock = [], 0
  while None in end:
    for i, c in enumerate(counter):
      if c == 0 and start[i] is None:
        start[i] = clock
        running.append(i)
    assert running, f"deadlock: counters {counter}, nothing running"
    done = running.pop(rng.randrange(len(running)))
    clock += 1
    end[done] = clock
    for slot in range(2):
      if qmds[done].get(f"DEPENDENT_QMD_ENABLE({slot})"):
        assert qmds[done].get(f"DEPENDENT_QMD{slot}_ACTION") == 4
        target = index[qmds[done].get(f"DEPENDENT_QMD{slot}_POINTER") << 8]
        assert start[target] is None, f"launch {done} decrements launch {target}, which already started"
        counter[target] -= 1
  return start, end


@pytest.mark.parametrize("seed", range(6))
def test_dep_mode_orders_launches_by_their_dependencies_only(cubin, dev, seed):  # noqa: F811
  """A random dependency list: in every completion order the hardware could pick, each launch starts after the
  launches it depends on have ended, independent launches become runnable together, and the timeline is released by
  a grid that ends after all others."""
  import random
  rng = random.Random(seed)
  saxpy = Program(dev, cubin, "saxpy")
  x, y = dev._host(4096), dev._host(4096)
  cb = CommandBuffer(dev, mode="dep")
  n = 24
  after = [sorted(rng.sample(range(j), min(j, rng.choice([0, 0, 1, 2, 3, 5])))) for j in range(n)]
  for j in range(n):
    cb.launch(saxpy, x, y, 1.0, j, grid=(1, 1, 1), block=(32, 1, 1), after=after[j])
  cb.finalize()
  addresses = pushed_qmds(dev, cb)
  assert len(addresses) == n
  qmds = [qmd_at(dev, a) for a in addresses]
  assert [q.get("RELEASE_ENABLE(0)") for q in qmds] == [0] * (n - 1) + [1]
  roots = [j for j in range(n - 1) if not after[j]]  # the last launch joins all others: it releases the timeline
  for order in range(5):
    start, end = run_graph(dev, addresses, seed * 100 + order)
    for j in range(n):
      for i in after[j]:
        assert end[i] <= start[j], f"launch {j} started before launch {i}, which it depends on, ended"
    assert all(start[j] == 0 for j in roots), "launches that depend on nothing start at once"
    assert end[n - 1] == max(end), "the releasing grid ends last"


def test_dep_mode_fan_out_beyond_two_slots(cubin, dev):  # noqa: F811
  """One producer read by five consumers (a QMD names only two dependents), then a join over all of them."""
  saxpy = Program(dev, cubin, "saxpy")
  x, y = dev._host(4096), dev._host(4096)
  cb = CommandBuffer(dev, mode="dep")
  after = [[], [0], [0], [0], [0], [0], [1, 2, 3, 4, 5]]
  for j, a in enumerate(after):
    cb.launch(saxpy, x, y, 1.0, j, grid=(1, 1, 1), block=(32, 1, 1), after=a)
  cb.finalize()
  addresses = pushed_qmds(dev, cb)
  for seed in range(20):
    start, end = run_graph(dev, addresses, seed)
    for j, a in enumerate(after):
      assert all(end[i] <= start[j] for i in a)


def test_bad_after_is_refused(cubin, dev):  # noqa: F811
  saxpy = Program(dev, cubin, "saxpy")
  x, y = dev._host(4096), dev._host(4096)
  cb = CommandBuffer(dev, mode="dep")
  cb.launch(saxpy, x, y, 1.0, 1, grid=(1, 1, 1), block=(32, 1, 1))
  with pytest.raises(ValueError, match=r"launch 1: after=\[1\] names \[1\]"):
    cb.launch(saxpy, x, y, 1.0, 1, grid=(1, 1, 1), block=(32, 1, 1), after=[1])
  with pytest.raises(ValueError, match=r"after=\['x', 0\] names \['x'\]"):
    cb.launch(saxpy, x, y, 1.0, 1, grid=(1, 1, 1), block=(32, 1, 1), after=["x", 0])
  with pytest.raises(ValueError, match="only a dep-mode"):
    CommandBuffer(dev, mode="chain").launch(saxpy, x, y, 1.0, 1, grid=(1, 1, 1), block=(32, 1, 1), after=[])


def test_bad_set_arg_is_refused(cubin, dev):  # noqa: F811
  saxpy = Program(dev, cubin, "saxpy")
  x, y = dev._host(4096), dev._host(4096)
  cb = CommandBuffer(dev, mode="dep")
  cb.launch(saxpy, x, y, 1.0, 1, grid=(1, 1, 1), block=(32, 1, 1))
  with pytest.raises(RuntimeError, match="finalized"):
    cb.set_arg(0, 1, x)
  cb.finalize()
  with pytest.raises(ValueError, match=r"set_arg\(0, 2\): 3 bytes for the 4-byte parameter 2 of kernel saxpy"):
    cb.set_arg(0, 2, b"abc")
  with pytest.raises(TypeError, match="parameter 1: cannot pass str"):
    cb.set_arg(0, 1, "x")


def test_int_setter_writes_what_set_arg_writes_and_waits_once_per_run(cubin, dev):  # noqa: F811
  """int_setter, the per-step patch NVGraph uses: the same constant-bank bytes as set_arg for an address (8 bytes)
  and a negative int32 (4 bytes; saxpy's n), and one wait for the last run before the first patch after a submit."""
  saxpy = Program(dev, cubin, "saxpy")
  x, y, z = dev._host(4096), dev._host(4096), dev._host(4096)
  cb = CommandBuffer(dev, mode="dep")
  cb.launch(saxpy, x, y, 1.0, 10, grid=(1, 1, 1), block=(32, 1, 1))
  with pytest.raises(RuntimeError, match="finalized"):
    cb.int_setter(0, 1)
  dev.compute.submit_segment = lambda address, nwords: None
  dev.compute.completed = 1 << 40
  value = cb.submit()
  set_y, set_n = cb.int_setter(0, 1), cb.int_setter(0, 3)
  waits = len(dev.compute.waits)
  set_y(z.va)
  set_n(-7)
  assert dev.compute.waits[waits:] == [value]  # one wait, for the run that read the old values
  params = dev.read(cb.launches[0].cbuf + saxpy.kernel.param_base, saxpy.kernel.param_size)
  assert params == saxpy.pack_args((x, z, 1.0, -7))
  cb.submit()
  set_n(5)
  assert dev.compute.waits[waits:] == [value, value + 1]


def test_set_arg_packs_a_variable_as_int32(dev, variable_kernel):  # noqa: F811
  """set_arg on a Variable's parameter (4 bytes in the cubin's param info) writes an int32, negative values as two's
  complement, and refuses a value that does not fit before touching the constant bank."""
  name, blob, info = variable_kernel
  program = Program(dev, blob, name)
  nbuf = len(info.params)
  bufs = [dev._host(4096) for _ in range(nbuf)]
  cb = CommandBuffer(dev, mode="dep")
  cb.launch(program, *bufs, 3, 4, grid=info.global_size, block=info.local_size)
  cb.finalize()
  base = cb.launches[0].cbuf + program.kernel.param_base
  at = [base + p.offset for p in program.kernel.params[nbuf:]]
  assert [struct.unpack("<i", dev.read(a, 4))[0] for a in at] == [3, 4]
  cb.set_arg(0, nbuf, -5)
  cb.set_arg(0, nbuf + 1, 2**31 - 1)
  assert [struct.unpack("<i", dev.read(a, 4))[0] for a in at] == [-5, 2**31 - 1]
  with pytest.raises(ValueError, match=f"parameter {nbuf}: -4294967296 does not fit its 4 bytes"):
    cb.set_arg(0, nbuf, -(1 << 32))
  assert struct.unpack("<i", dev.read(at[0], 4))[0] == -5


def test_qmd_edges_keep_every_order_within_two_slots():
  import random
  from nvdrv.replay import qmd_edges
  rng = random.Random(7)
  for trial in range(200):
    n = rng.randrange(1, 40)
    after = [sorted(rng.sample(range(j), min(j, rng.choice([0, 1, 1, 2, 4, 8])))) for j in range(n)]
    out = qmd_edges(after)
    assert all(len(o) <= 2 for o in out) and all(j > k for k, o in enumerate(out) for j in o)
    reach = [1 << k for k in range(n)]
    for k in reversed(range(n)):
      for j in out[k]:
        reach[k] |= reach[j]
    for j, a in enumerate(after):
      assert all(reach[i] >> j & 1 for i in a), f"trial {trial}: {after} -> {out} loses an order into {j}"
    assert all(reach[k] >> (n - 1) & 1 for k in range(n)), "the last launch follows every other"


@pytest.mark.parametrize("prefetch, chasing", [(True, False), (False, True), (True, True)])
def test_link_bits_are_set_on_linking_grids_only(cubin, dev, prefetch, chasing):  # noqa: F811
  saxpy = Program(dev, cubin, "saxpy")
  x, y = dev._host(4096), dev._host(4096)
  cb = CommandBuffer(dev, mode="dep", prefetch=prefetch, task_chasing=chasing)
  for after in ([], [0], [0], [1, 2]):
    cb.launch(saxpy, x, y, 1.0, 1, grid=(1, 1, 1), block=(32, 1, 1), after=after)
  cb.finalize()
  qmds = [qmd_at(dev, a) for a in pushed_qmds(dev, cb)]
  for q in qmds:
    slots = [s for s in range(2) if q.get(f"DEPENDENT_QMD_ENABLE({s})")]
    assert [q.get(f"DEPENDENT_QMD_PREFETCH({s})") for s in slots] == [int(prefetch)] * len(slots)
    assert [q.get(f"DEPENDENT_QMD_PREFETCH({s})") for s in range(2) if s not in slots] == [0] * (2 - len(slots))
    assert q.get("CWD_MEMBAR_TASK_CHASING_ENABLE") == (int(chasing) if slots else 0)
  assert [len([s for s in range(2) if q.get(f"DEPENDENT_QMD_ENABLE({s})")]) for q in qmds] == [2, 1, 1, 0]


def test_jit_graph_alternates_two_copies_and_patches_the_next_one(cubin, dev):  # noqa: F811
  """frontend.runtime.nv.NVGraph keeps two copies of a capture's command buffer: set_buffer patches the constant bank
  of the copy the next run submits (never the one that may still be running), and runs alternate between them."""
  import types

  from frontend.runtime.nv import NVGraph
  from hwtests.nv import kernels
  from nvdrv.compile import compile_ptx
  load = Program(dev, compile_ptx(kernels.LOAD_FROM), "load_from")  # (address, out): two buffers, as the frontend's
  mems = [dev._host(4096) for _ in range(4)]
  bufs = [types.SimpleNamespace(mem=m) for m in mems]
  program = types.SimpleNamespace(program=load, grid=(1, 1, 1), block=(32, 1, 1))
  info = types.SimpleNamespace(params=((None, False), (None, True)), vars=())  # reads the first, writes the second
  items = [types.SimpleNamespace(program=program, bufs=[bufs[0], bufs[1]], info=info, var_vals={}),
           types.SimpleNamespace(program=program, bufs=[bufs[1], bufs[2]], info=info, var_vals={})]
  runtime = types.SimpleNamespace(dev=dev, allocator=types.SimpleNamespace(address=lambda mem: mem.va))
  graph = NVGraph(runtime, items)
  submitted = []
  dev.compute.submit_segment = lambda address, nwords: submitted.append(address)
  dev.compute.completed = 1 << 40

  def x_of(cb, launch: int) -> int:
    return struct.unpack("<Q", dev.read(cb.launches[launch].cbuf + load.kernel.param_base, 8))[0]

  first, second = graph.cbs
  assert graph.cb is first
  graph.set_buffer(0, 0, bufs[3])
  assert x_of(first, 0) == mems[3].va and x_of(second, 0) == mems[0].va
  graph.run()
  assert graph.cb is second and submitted == [first.pb_address]
  graph.set_buffer(0, 0, bufs[3])
  assert x_of(second, 0) == mems[3].va
  graph.run()
  graph.set_buffer(0, 0, bufs[3])  # first already reads bufs[3]: nothing to patch
  graph.run()
  assert submitted == [first.pb_address, second.pb_address, first.pb_address]


def test_jit_graph_patches_variables_in_the_copy_to_run(cubin, dev):  # noqa: F811
  """NVGraph.set_var writes a Variable's value as the kernel's 4-byte parameter after its buffers, in the copy the
  next run submits; the other copy keeps its value until its own turn (TinyJit sets every value on every call)."""
  import types

  from compiler.ir import Variable
  from frontend.runtime.nv import NVGraph
  from hwtests.nv import kernels
  from nvdrv.compile import compile_ptx
  inc = Program(dev, compile_ptx(kernels.INCREMENT), "increment")  # (px, n: u32)
  n = Variable("n", -100, 100)
  mem = dev._host(4096)
  program = types.SimpleNamespace(program=inc, grid=(1, 1, 1), block=(32, 1, 1))
  info = types.SimpleNamespace(params=((None, True),), vars=(n,))
  items = [types.SimpleNamespace(program=program, bufs=[types.SimpleNamespace(mem=mem)], info=info, var_vals={n: 5})]
  runtime = types.SimpleNamespace(dev=dev, allocator=types.SimpleNamespace(address=lambda m: m.va))
  graph = NVGraph(runtime, items)
  dev.compute.submit_segment = lambda address, nwords: None
  dev.compute.completed = 1 << 40
  param = inc.kernel.params[1]

  def n_of(cb) -> int:
    return struct.unpack("<i", dev.read(cb.launches[0].cbuf + inc.kernel.param_base + param.offset, 4))[0]

  first, second = graph.cbs
  assert param.size == 4 and n_of(first) == n_of(second) == 5  # the captured value, in both copies
  graph.set_var(0, 0, -3)
  assert n_of(first) == -3 and n_of(second) == 5
  graph.run()
  graph.set_var(0, 0, -3)
  assert n_of(second) == -3
  graph.run()
  graph.set_var(0, 0, 42)
  assert (n_of(first), n_of(second)) == (42, -3)


def test_jit_graph_catches_the_other_copy_up_before_its_turn(cubin, dev):  # noqa: F811
  """A value set once holds for every later run: the copy not patched at set time gets it just before its own
  submit (one set_var, then two runs: both copies run with it)."""
  import types

  from compiler.ir import Variable
  from frontend.runtime.nv import NVGraph
  from hwtests.nv import kernels
  from nvdrv.compile import compile_ptx
  inc = Program(dev, compile_ptx(kernels.INCREMENT), "increment")
  n = Variable("n", -100, 100)
  program = types.SimpleNamespace(program=inc, grid=(1, 1, 1), block=(32, 1, 1))
  info = types.SimpleNamespace(params=((None, True),), vars=(n,))
  items = [types.SimpleNamespace(program=program, bufs=[types.SimpleNamespace(mem=dev._host(4096))], info=info,
                                 var_vals={n: 5})]
  graph = NVGraph(types.SimpleNamespace(dev=dev, allocator=types.SimpleNamespace(address=lambda m: m.va)), items)
  at = inc.kernel.param_base + inc.kernel.params[1].offset
  ran = []
  by_address = {cb.pb_address: cb for cb in graph.cbs}
  dev.compute.submit_segment = lambda address, nwords: ran.append(
    struct.unpack("<i", dev.read(by_address[address].launches[0].cbuf + at, 4))[0])
  dev.compute.completed = 1 << 40
  graph.set_var(0, 0, -7)
  graph.run()
  graph.run()
  graph.run()
  assert ran == [-7, -7, -7]


@pytest.mark.parametrize("seed", range(4))
def test_jit_graph_runs_every_step_with_the_values_set_last(dev, variable_kernel, seed):  # noqa: F811
  """Many steps over two launches of a rendered kernel with two Variables (tests/test_nv_launch.py variable_kernel):
  each step sets some values and buffers (or none, or the same again), then runs. The constant banks of the copy
  each run submits must hold exactly the last value set for every parameter, whichever copy was patched when."""
  import types

  import numpy as np

  from frontend.runtime.nv import NVGraph
  name, blob, info = variable_kernel
  program = Program(dev, blob, name)
  params, nbuf = program.kernel.params, len(info.params)
  mems = [dev._host(4096) for _ in range(nbuf + 3)]
  launch = types.SimpleNamespace(program=program, grid=info.global_size, block=info.local_size)
  items = [types.SimpleNamespace(program=launch, bufs=[types.SimpleNamespace(mem=m) for m in mems[:nbuf]], info=info,
                                 var_vals={v: i for v in info.vars}) for i in range(2)]
  graph = NVGraph(types.SimpleNamespace(dev=dev, allocator=types.SimpleNamespace(address=lambda m: m.va)), items)
  want = [[m.va for m in mems[:nbuf]] + [i] * len(info.vars) for i in range(2)]
  by_address = {cb.pb_address: cb for cb in graph.cbs}

  def held(cb) -> list[list[int]]:
    out = []
    for launch in cb.launches:
      bank = dev.read(launch.cbuf + program.kernel.param_base, program.kernel.param_size)
      out.append([struct.unpack_from("<Q" if p.size == 8 else "<i", bank, p.offset)[0] for p in params])
    return out

  ran = []
  dev.compute.submit_segment = lambda address, nwords: ran.append(held(by_address[address]))
  dev.compute.completed = 1 << 40
  rng = np.random.default_rng(seed)
  for step in range(24):
    for item in range(2):
      for k in range(len(info.vars)):
        if rng.random() < 0.5:
          value = int(rng.integers(-1000, 1001))
          graph.set_var(item, k, value)
          want[item][nbuf + k] = value
      if rng.random() < 0.3:
        j = int(rng.integers(0, nbuf))
        buf = types.SimpleNamespace(mem=mems[int(rng.integers(0, len(mems)))])
        graph.set_buffer(item, j, buf)
        want[item][j] = buf.mem.va
    graph.run()
    assert ran[-1] == want, f"step {step}: the submitted copy holds stale parameters"
  assert len(ran) == 24 and graph.turn == 0
