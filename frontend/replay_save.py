"""TinyJit capture -> .sovreplay file (format: tools/REPLAY_FORMAT.md, container: tools/replay_format.py).

The file holds what a process without the frontend and the compiler needs to run the captured step again: the
kernels as the device runs them (CPU: the compiled shared objects, with their C source for reference; NV: cubins
with their launch geometry; AMD: RDNA code objects with theirs), the launches in order with their arguments as
indices into a buffer table, and the initial contents of every buffer whose contents carry from one step to the next.

Buffer roles, in order of precedence:
  input            a tensor argument of the jitted function (fed every step), or a `feeds` tensor (host-written,
                   e.g. the learning rate: fed when the caller has a value, else its saved contents stay)
  output           a tensor the function returns (read back after each step)
  parameter        named in `parameters`
  optimizer_state  named in `optimizer_state`
  state            unnamed, but some launch reads it before any launch writes it: its contents carry over
  intermediate     first written by a launch in the step; no contents saved (the loader zero-fills it)
A buffer first written whole by a launch of the step needs no saved contents; one a launch writes only part of (an
assign into a window) keeps the rest, so it is state unless written whole before.
"""
from __future__ import annotations

import platform
import subprocess

import numpy as np

from frontend.device import Device
from frontend.realize import buffer_of
from tools import replay_format
from tools.replay_format import CPU_ABI, host_isa

_TARGETS = ("CPU", "NV", "AMD")


class ReplaySaveError(Exception):
  """The capture cannot be written as a replay file (nothing captured, several devices, an unsupported device)."""


def tensor_buffer(t):
  """The Buffer holding realized tensor `t` (through reshapes), or None when `t` is not realized into one buffer."""
  node = t.lazydata
  while buffer_of(node) is None and node.op.name == "RESHAPE":
    node = node.src[0]
  buf = buffer_of(node)
  if buf is None or buf.size != node.size:
    return None
  return buf


class _Table:
  """The buffer table under construction: one entry per distinct Buffer, in first-seen order."""

  def __init__(self):
    self.index: dict[int, int] = {}
    self.buffers: list = []
    self.entries: list[dict] = []

  def add(self, buf) -> int:
    key = id(buf)
    if key not in self.index:
      self.index[key] = len(self.buffers)
      self.buffers.append(buf)
      self.entries.append({"size": buf.size, "dtype": buf.dtype.name, "role": "intermediate", "name": None,
                           "init": None})
    return self.index[key]


def _first_reads(items) -> set[int]:
  """ids of the Buffers whose contents carry into the step: some launch reads them before any launch writes all of
  them. A launch that writes only part of its output (an assign into rows at a Variable, a slice: info.writes is not
  the buffer's size) leaves the rest as it was, so that buffer counts as read where no earlier launch wrote it whole."""
  written, read_first = set(), set()
  for item in items:
    whole = [(buf, is_written and getattr(item.info, "writes", buf.size) == buf.size)  # a copy writes all of it
             for buf, (_, is_written) in zip(item.bufs, item.info.params)]
    read_first.update(id(buf) for buf, w in whole if not w and id(buf) not in written)
    written.update(id(buf) for buf, w in whole if w)
  return read_first


def _name(names, i: int, prefix: str) -> str:
  return names[i] if names is not None else f"{prefix}{i}"


def build(jit, inputs=None, outputs=None, parameters=None, optimizer_state=None, feeds=None) -> tuple[dict, list]:
  """(manifest, blobs) for `jit`'s capture; see TinyJit.save for the arguments."""
  items = jit.captured
  if jit.cnt < 2 or not items:
    raise ReplaySaveError("TinyJit.save: nothing captured yet; call the jitted function twice (warm-up, capture) "
                          "before saving it")
  devices = sorted({b.device for item in items for b in item.bufs})
  if len(devices) != 1 or devices[0].split(":")[0] not in _TARGETS:
    raise ReplaySaveError(f"TinyJit.save: the capture runs on {devices}; replay files hold one device's step, and "
                          f"this version writes {', '.join(_TARGETS)} targets")
  table = _Table()
  launches = [[table.add(b) for b in item.bufs] for item in items]
  blobs: list[bytes] = []
  manifest = {"target": _target(devices[0], blobs), "buffers": table.entries, "inputs": [], "outputs": []}
  variables, var_index = _variables(items)
  if variables:  # format version 2; a step without Variables stays version 1 (replay_format.version_needed)
    manifest["variables"] = variables
  manifest["kernels"], kernel_of = _kernels(items, devices[0], blobs, var_index)
  manifest["launches"] = [{"kernel": kernel_of[i], "args": args} for i, args in enumerate(launches)]
  _mark_inputs(jit, table, manifest, inputs, feeds)
  _mark_outputs(jit, table, manifest, outputs)
  _mark_named(table, parameters, "parameter")
  _mark_named(table, optimizer_state, "optimizer_state")
  read_first = _first_reads(items)
  for i, (buf, entry) in enumerate(zip(table.buffers, table.entries)):
    if entry["role"] == "intermediate" and id(buf) in read_first:
      entry["role"], entry["name"] = "state", f"state{i}"
    keep = entry["role"] in replay_format.PERSISTENT_ROLES or entry.get("feed") or \
        (entry["role"] == "output" and id(buf) in read_first)
    if keep:
      entry["init"] = len(blobs)
      blobs.append(buf.numpy().tobytes())
  return manifest, blobs


def _variables(items) -> tuple[list[dict], dict]:
  """(variables[] of the manifest, Variable -> its index): every Variable a captured kernel reads, by name, with its
  bounds and its value in the last call (the launches' current values).

  Raises:
    ReplaySaveError: two different Variables with one name (a loader feeds Variables by name).
  """
  found: dict = {}
  for item in items:
    for var in getattr(item.info, "vars", ()):
      found[var] = item.var_vals[var]
  by_name: dict[str, list] = {}
  for var in found:
    by_name.setdefault(var.name, []).append(var.canonical())
  clashes = {name: forms for name, forms in by_name.items() if len(forms) > 1}
  if clashes:
    raise ReplaySaveError(f"TinyJit.save: Variables with one name and different bounds {clashes}; a replay file "
                          f"feeds Variables by name, so give each a name of its own")
  ordered = sorted(found, key=lambda v: v.name)
  entries = [{"name": v.name, "lo": v.lo, "hi": v.hi, "value": int(found[v])} for v in ordered]
  return entries, {v: i for i, v in enumerate(ordered)}


def _mark_inputs(jit, table: _Table, manifest: dict, names, feeds) -> None:
  if names is not None and len(names) != len(jit.signature):
    raise ReplaySaveError(f"TinyJit.save: {len(names)} input names {list(names)} for the {len(jit.signature)} tensor "
                          f"inputs of the captured function")
  for k, ((shape, dtype), slots) in enumerate(zip(jit.signature, jit.input_slots)):
    name = _name(names, k, "input")
    if slots:
      i, j = slots[0]
      index = table.add(jit.captured[i].bufs[j])
    else:  # an input no kernel reads still has a slot, so the caller's feeds stay valid
      index = len(table.entries)
      table.buffers.append(None)
      table.entries.append({"size": int(np.prod(shape)), "dtype": dtype.name, "name": None, "init": None})
    table.entries[index].update(role="input", name=name)
    manifest["inputs"].append({"name": name, "buffer": index, "shape": list(shape)})
  for name, t in (feeds or {}).items():
    buf = tensor_buffer(t)
    if buf is None or id(buf) not in table.index:
      raise ReplaySaveError(f"TinyJit.save: feed {name!r} is not a buffer the captured kernels use")
    index = table.index[id(buf)]
    table.entries[index].update(role="input", name=name, feed=True)
    manifest["inputs"].append({"name": name, "buffer": index, "shape": list(t.shape)})


def _mark_outputs(jit, table: _Table, manifest: dict, names) -> None:
  ret = jit.ret if isinstance(jit.ret, (tuple, list)) else [jit.ret]
  tensors = [r for r in ret if hasattr(r, "lazydata")]
  if names is not None and len(names) != len(tensors):
    raise ReplaySaveError(f"TinyJit.save: {len(names)} output names {list(names)} for the {len(tensors)} tensors the "
                          f"captured function returns")
  for k, t in enumerate(tensors):
    buf = tensor_buffer(t)
    if buf is None or id(buf) not in table.index:
      raise ReplaySaveError(f"TinyJit.save: returned tensor {k} (shape {t.shape}) is not written by the captured "
                            f"kernels; return realized results of the step")
    index = table.index[id(buf)]
    name = _name(names, k, "output")
    if table.entries[index]["role"] == "intermediate":
      table.entries[index].update(role="output", name=name)
    manifest["outputs"].append({"name": name, "buffer": index, "shape": list(t.shape)})


def _mark_named(table: _Table, named, role: str) -> None:
  for name, t in (named or {}).items():
    buf = tensor_buffer(t)
    if buf is None or id(buf) not in table.index:
      continue  # not used by the step (e.g. a parameter listed twice under the optimizer's names)
    entry = table.entries[table.index[id(buf)]]
    if entry["role"] in ("intermediate", "state"):
      entry.update(role=role, name=name, shape=list(t.shape))


# ---------------------------------------------------------------------------------------------------------------------
# per device: target facts and kernels


def _target(device: str, blobs: list[bytes]) -> dict:
  runtime = Device[device]
  kind = device.split(":")[0]
  if kind == "CPU":
    from frontend.runtime.cpu import FLAGS
    from frontend.runtime.cpu_pool import POOL_SOURCE
    pool_path = runtime.compile("sov_pool", POOL_SOURCE, libs=("-lpthread",))  # cached: no compile
    pool_blob = len(blobs)
    blobs.append(_read(pool_path))
    return {"kind": "CPU", "abi": CPU_ABI, "machine": platform.machine(), "system": platform.system(),
            "isa": host_isa(), "compiler": _cc_version(runtime.cc), "flags": list(FLAGS), "pool_so_blob": pool_blob,
            "threads": runtime.threads}
  if kind == "AMD":
    card = getattr(runtime, "card", None)
    return {"kind": "AMD", "gfx_target": runtime.target,
            "saved_on": f"simulated {card} (AM driver)" if card else "wave emulator"}
  info = runtime.dev.info
  return {"kind": "NV", "arch": "sm_90", "generation": info.name, "qmd_version": info.qmd_version,
          "compute_class": info.compute_class, "gpfifo_class": info.gpfifo_class, "driver_version": info.driver_version}


def _kernels(items, device: str, blobs: list[bytes], var_index: dict) -> tuple[list[dict], list[int]]:
  kernels: list[dict] = []
  seen: dict[int, int] = {}
  kernel_of = []
  for item in items:
    prog = item.program
    if id(prog) not in seen:
      seen[id(prog)] = len(kernels)
      params = [{"dtype": dtype.name, "written": bool(written)} for dtype, written in prog.info.params]
      entry = {"name": prog.info.name, "params": params}
      if getattr(prog.info, "vars", ()):
        entry["vars"] = [var_index[v] for v in prog.info.vars]  # int32 parameters after the buffers, in this order
      if device.split(":")[0] == "CPU":
        entry.update(entry=prog.fn_name, global_extent=prog.info.global_extent, threads=prog.threads,
                     so_blob=len(blobs), source_blob=len(blobs) + 1)
        blobs += [_read(prog.lib_path), prog.source.encode()]
      elif device.split(":")[0] == "AMD":
        entry.update(entry=prog.entry, grid=list(prog.grid), block=list(prog.block), code_object_blob=len(blobs))
        blobs.append(prog.code_object_bytes)
      else:
        if not prog.cubin:
          raise ReplaySaveError(f"kernel {prog.info.name}: its cubin was not kept (an NVProgram built without it)")
        entry.update(entry=prog.info.name, grid=list(prog.grid), block=list(prog.block), cubin_blob=len(blobs))
        blobs.append(prog.cubin)
      kernels.append(entry)
    kernel_of.append(seen[id(prog)])
  return kernels, kernel_of


def _read(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def _cc_version(cc: str) -> str:
  try:
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10).stdout
  except (OSError, subprocess.SubprocessError):
    return cc
  first = out.splitlines()[0] if out else ""
  return f"{cc}: {first}"


def save(jit, path: str, **names) -> int:
  """Writes `jit`'s capture to `path`; returns the file's size. See TinyJit.save."""
  manifest, blobs = build(jit, **names)
  manifest["created_by"] = "sovereign frontend.replay_save"
  return replay_format.write(str(path), manifest, blobs)
