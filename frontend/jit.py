"""TinyJit: capture the kernels a function launches, then replay them with new input buffers.

Call 1 runs the function normally (warm-up: kernels compile). Call 2 runs it again while recording every kernel
launch (ExecItem: program + buffers) and every copy between devices (CopyItem, e.g. a CPU batch moved to the GPU inside
the step). Calls 3+ skip the function entirely: the recorded launches and copies run in order, with the buffers of the
new inputs swapped in where the recorded inputs were, and the same output tensors are returned (their buffers now
hold the new results). Bound Variables among the arguments (`step(x, pos=v.bind(5))`) are symbolic slots: the kernels
read them as scalar parameters, so a call with another value replays the same capture with that value patched in
(nothing recompiles, nothing is captured again). A call whose input shapes or dtypes match no capture so far (a
smaller last batch) is captured as well, up to `max_captures` signatures, and later calls replay the capture of
their signature. Each run of consecutive kernels on one device replays as that device's prebuilt command buffer
where it has one (NV, AMD cards: one submission, kernels ordered by the buffers they share), the rest item by item.
A replay does not wait for the device: its inputs are realized buffers already (Tensor.realize returns at once for
those) and the step is queued.
"""
from __future__ import annotations

import functools

from compiler.ir import Offset, as_offset
from frontend import realize
from frontend.device import Device
from frontend.tensor import Tensor


class JitError(Exception):
  """A jitted function was called in a way its capture cannot replay."""


def _input_tensors(args, kwargs) -> list[Tensor]:
  return [a for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor)]


def _input_vars(args, kwargs) -> dict:
  """Variable -> value of the BoundVariables among the arguments (alone or in an Offset such as `pos + 1`).

  Raises:
    JitError: one Variable passed with two values.
  """
  out: dict = {}
  for a in map(as_offset, list(args) + list(kwargs.values())):
    for b in a.bindings() if isinstance(a, Offset) else []:
      if out.setdefault(b.var, b.value) != b.value:
        raise JitError(f"TinyJit: Variable {b.var.name} passed twice, bound to {out[b.var]} and {b.value}")
  return out


_STATE = ("captured", "input_slots", "signature", "ret", "segments", "kernels", "var_slots", "patches")


def _describe(signature) -> list:
  """A signature as the error messages print it: (shape, dtype name) per tensor input, then the Variables."""
  return [e.canonical() if hasattr(e, "canonical") else (e[0], e[1].name) for e in signature]


def _vars_of(item) -> tuple:
  """The Variables a captured item reads, in its kernel's parameter order (none for a copy)."""
  return getattr(item.info, "vars", ())


class TinyJit:
  """Capture-and-replay of a function's kernels (module docstring). One capture per input signature (shapes and
  dtypes): a call with a signature not seen before captures again, e.g. a smaller last batch, up to `max_captures`
  signatures; calls with a known one replay its capture."""

  def __init__(self, fxn, max_captures: int = 8):
    self.fxn = fxn
    self.max_captures = max_captures
    self.cnt = 0
    self.captured: list[realize.ExecItem] = []
    self.input_slots: list[list[tuple[int, int]]] = []  # per input: (exec item index, buffer index)
    self.signature: list[tuple[tuple[int, ...], object]] = []  # (shape, dtype) per tensor input
    self.var_slots: dict = {}  # Variable argument (by name) -> [(exec item index, position in its info.vars)]
    self.patches: tuple[list, dict] = ([], {})  # _patch_plan: the writes a replay makes, per input and Variable
    self.ret = None
    self.segments: list[tuple[int, int, object]] = []  # (first item, end, device graph or None) in order
    self.kernels = 0  # kernel launches in the capture (its items less the copies)
    self.captures: dict[tuple, dict] = {}  # signature -> the state above for that capture; the current one included
    self.launches = 0  # kernel launches made by replay, for tests and DEBUG
    functools.update_wrapper(self, fxn)

  def reset(self) -> None:
    self.cnt = 0
    self.captured, self.input_slots, self.signature, self.ret = [], [], [], None
    self.segments, self.kernels, self.captures, self.var_slots, self.patches = [], 0, {}, {}, ([], {})

  @property
  def graph(self):
    """The device's prebuilt command buffer for the capture, where one device graph covers it all, else None."""
    whole = len(self.segments) == 1 and self.segments[0][2] is not None
    return self.segments[0][2] if whole else None

  def __get__(self, obj, objtype=None):
    return functools.partial(self.__call__, obj)  # support methods

  def __call__(self, *args, **kwargs):
    inputs = _input_tensors(args, kwargs)
    for t in inputs:
      t.realize()
    buffers = [t._contiguous_buffer() for t in inputs]
    var_vals = _input_vars(args, kwargs)
    if self.cnt == 0:
      self.cnt = 1
      return self.fxn(*args, **kwargs)
    if self.cnt == 1:
      return self._capture(args, kwargs, inputs, buffers, var_vals)
    signature = tuple((t.shape, t.dtype) for t in inputs) + tuple(sorted(var_vals, key=lambda v: v.name))
    if signature != tuple(self.signature) + tuple(self.var_slots):
      if signature in self.captures:
        self.__dict__.update(self.captures[signature])
      elif len(self.captures) >= self.max_captures:
        name = getattr(self.fxn, "__name__", "function")
        raise JitError(f"TinyJit {name}: called with inputs {_describe(signature)}, a new signature "
                       f"after {len(self.captures)} captures (max_captures={self.max_captures}): "
                       f"{[_describe(sig) for sig in self.captures]}. Pass fewer distinct shapes and "
                       f"dtypes, raise max_captures, or call .reset()")
      else:
        return self._capture(args, kwargs, inputs, buffers, var_vals)
    return self._replay(inputs, buffers, var_vals)

  def _capture(self, args, kwargs, inputs, buffers, var_vals):
    """Run the function while recording its launches and copies; the result becomes the current capture (and the one
    for this input signature). A failed capture leaves the captures before it as they were."""
    realize._capture = []
    try:
      ret = self.fxn(*args, **kwargs)
      outs = [r for r in (ret if isinstance(ret, (tuple, list)) else [ret]) if isinstance(r, Tensor)]
      if outs:
        outs[0].realize(*outs[1:])
    finally:
      captured, realize._capture = realize._capture, None
    if len({id(b) for b in buffers}) != len(buffers):
      raise JitError("TinyJit: the same tensor was passed as two inputs while capturing; replay could not tell them "
                     "apart. Pass distinct tensors (e.g. t and t.clone()).")
    self.captured, self.ret, self.cnt = captured, ret, 2
    self.signature = [(t.shape, t.dtype) for t in inputs]
    self.var_slots = {var: [(i, k) for i, item in enumerate(captured) for k, v in enumerate(_vars_of(item))
                            if v == var] for var in sorted(var_vals, key=lambda v: v.name)}
    self.input_slots = []
    for buf in buffers:
      slots = [(i, j) for i, item in enumerate(self.captured) for j, b in enumerate(item.bufs) if b is buf]
      self.input_slots.append(slots)
    self.segments = self._make_segments()
    self.patches = self._patch_plan()
    self.kernels = sum(not isinstance(item, realize.CopyItem) for item in captured)
    self.captures[tuple(self.signature) + tuple(self.var_slots)] = {key: getattr(self, key) for key in _STATE}
    return ret

  def _patch_plan(self) -> tuple[list, dict]:
    """What a replay writes per input and per Variable, worked out once: (the captured item's buffer list or values,
    its index there, the device graph holding the item or None, the item's index in that graph)."""
    where = {i: (graph, i - start) for start, end, graph in self.segments if graph is not None
             for i in range(start, end)}
    buffers = [[(self.captured[i].bufs, j, *where.get(i, (None, 0))) for i, j in slots] for slots in self.input_slots]
    values = {var: [(self.captured[i].var_vals, k, *where.get(i, (None, 0))) for i, k in slots]
              for var, slots in self.var_slots.items()}
    return buffers, values

  def _make_segments(self) -> list[tuple[int, int, object]]:
    """The capture cut into runs of consecutive kernels on one device, each as that device's prebuilt command buffer
    where it has one (NV, AMD cards), and copies between devices, which replay repeats one by one."""
    segments, items, start = [], self.captured, 0
    while start < len(items):
      if isinstance(items[start], realize.CopyItem):
        segments.append((start, start + 1, None))
        start += 1
        continue
      device, end = items[start].bufs[0].device, start + 1
      while end < len(items) and not isinstance(items[end], realize.CopyItem) and items[end].bufs[0].device == device:
        end += 1
      make = getattr(Device[device], "graph", None)
      segments.append((start, end, make(items[start:end]) if make else None))
      start = end
    return segments

  def save(self, path, inputs=None, outputs=None, parameters=None, optimizer_state=None, feeds=None) -> int:
    """Writes the captured step to a .sovreplay file that tools/replay.py runs without the frontend or the compiler
    (format: tools/REPLAY_FORMAT.md). Buffer contents are saved as they are now: after the last call.

    Args:
      path: the file to write (replaced atomically).
      inputs: names of the tensor inputs, in call order (default input0, input1, ...).
      outputs: names of the returned tensors (default output0, ...).
      parameters, optimizer_state: name -> Tensor, labelling persistent buffers (e.g. get_state_dict(model)); a
        loader's --save-state writes them under these names.
      feeds: name -> Tensor for host-written buffers the kernels read (a learning rate): the loader may feed them
        per step like inputs; unfed, their saved contents stay.
    Variables the kernels read are saved by name with their last values (format version 2); the loader feeds them
    like inputs, and keeps the saved value where none is fed.

    Returns:
      the size of the file in bytes.

    Raises:
      frontend.replay_save.ReplaySaveError: nothing captured yet, a capture over several devices or on a device
        without a replay target, names that do not match the capture, two Variables of one name.
    """
    from frontend import replay_save
    return replay_save.save(self, path, inputs=inputs, outputs=outputs, parameters=parameters,
                            optimizer_state=optimizer_state, feeds=feeds)

  def _replay(self, inputs, buffers, var_vals):
    buffer_patches, value_patches = self.patches
    for var, value in var_vals.items():
      for values, k, graph, local in value_patches[var]:
        values[var] = value
        if graph is not None:
          graph.set_var(local, k, value)
    for buf, patches in zip(buffers, buffer_patches):
      for bufs, j, graph, local in patches:
        bufs[j] = buf
        if graph is not None:
          graph.set_buffer(local, j, buf)
    for start, end, graph in self.segments:
      if graph is not None:
        graph.run()
        realize.STATS["kernels"] += end - start
      else:
        for item in self.captured[start:end]:
          realize.run_exec(item)
    self.launches += self.kernels
    return self.ret
