"""Tensors spread over several devices: tinygrad's `Tensor.shard` model, and the all-reduce its reductions use.

A MultiNode is one logical value held as one graph node per device:
  - replicated (axis None): every device holds the whole value;
  - sharded on `axis`: device i holds the slice bounds[i] = (lo, hi) of that axis. The bounds partition
    [0, shape[axis]); `shard` cuts ceil-sized chunks as tinygrad does (10 over 4 devices: 3, 3, 3, 1; 3 over 4:
    1, 1, 1, 0), and shrink/pad/flip keep any partition, so a shard may be empty.

Every graph constructor of frontend.graph takes a MultiNode where it takes a Node and maps the operation over the
shards. Values meet across devices only through COPY nodes of the ordinary graph, so the scheduler runs them, and
autograd differentiates through them (the gradient of a COPY is a COPY back): see Tensor.backward for how a
replicated loss seeds its gradient and how the gradients of a replicated parameter are summed (all-reduced).

All-reduce (`all_reduce`) is built from COPY nodes and elementwise kernels:
  - tree: a binary-tree reduction onto the first device, then a broadcast back down the same tree; 2*ceil(log2 n)
    rounds of whole-value copies, so it wins for small values where each round's latency dominates;
  - ring: reduce-scatter then all-gather over n chunks, 2*(n-1) rounds each moving 1/n of the value, so each device
    sends and receives 2*(n-1)/n of it in all: the bandwidth-optimal choice for large values.
Both give bit-identical results on every device (each element is reduced once, then copied), so replicas of a
parameter never drift apart.
"""
from __future__ import annotations

import math

from compiler.dtypes import DType, dtypes
from compiler.ir import Node, Ops
from frontend import graph as g
from frontend.device import Device

RING_MIN_BYTES = 256 * 1024  # all_reduce picks the ring at or above this many bytes per device, else the tree


class MultiNode:
  """One logical value as one graph node per device, replicated (axis None) or sharded along `axis`.

  Args:
    nodes: one node per device, in device order (their devices must differ).
    axis: the sharded axis, or None when every node holds the whole value.
    bounds: for a sharded value, the (lo, hi) slice of `axis` that each node holds.
  """
  __slots__ = ("nodes", "axis", "bounds")

  def __init__(self, nodes: list[Node] | tuple[Node, ...], axis: int | None, bounds=None):
    nodes = tuple(nodes)
    devices = [n.device for n in nodes]
    if len(set(devices)) != len(devices):
      raise ValueError(f"a multi-device value needs distinct devices, got {devices}")
    self.nodes = nodes
    self.axis = axis
    self.bounds = None if axis is None else tuple((int(lo), int(hi)) for lo, hi in bounds)

  @property
  def devices(self) -> tuple[str, ...]:
    return tuple(n.device for n in self.nodes)

  @property
  def device(self) -> tuple[str, ...]:
    return self.devices

  @property
  def dtype(self) -> DType:
    return self.nodes[0].dtype

  @property
  def shape(self) -> tuple[int, ...]:
    shape = self.nodes[0].shape
    if self.axis is None:
      return shape
    total = sum(hi - lo for lo, hi in self.bounds)
    return shape[:self.axis] + (total,) + shape[self.axis + 1:]

  @property
  def size(self) -> int:
    return math.prod(self.shape)

  def map(self, fn) -> MultiNode:
    """fn applied to every shard, for operations that keep each shard's shape (cast, contiguous, detach...)."""
    return MultiNode([fn(n) for n in self.nodes], self.axis, self.bounds)

  def __repr__(self) -> str:
    layout = "replicated" if self.axis is None else f"axis={self.axis} bounds={list(self.bounds)}"
    return f"<MultiNode {self.dtype.name}{list(self.shape)} on {list(self.devices)} {layout}>"


def canonical_devices(device) -> str | tuple[str, ...]:
  """A device name or a tuple of them, canonical (Device.canonicalize), as Tensor keeps them.

  Raises:
    ValueError: an unknown device, an empty tuple, or a device named twice.
  """
  if not isinstance(device, (tuple, list)):
    return Device.canonicalize(device)
  names = tuple(Device.canonicalize(d) for d in device)
  if not names or len(set(names)) != len(names):
    raise ValueError(f"shard needs one or more distinct devices, got {list(device)} (canonical: {list(names)})")
  return names


def split_bounds(size: int, parts: int) -> tuple[tuple[int, int], ...]:
  """tinygrad's split of `size` over `parts`: chunks of ceil(size / parts), the last ones smaller or empty."""
  chunk = -(-size // parts)
  return tuple((min(i * chunk, size), min((i + 1) * chunk, size)) for i in range(parts))


def copy_to(node: Node, device: str) -> Node:
  """node's value on `device`: the node itself when it is there already, else a COPY."""
  if node.device == device:
    return node
  return Node(Ops.COPY, node.dtype, (node,), device, node.shape, device)


def _own_copy(node: Node, device: str) -> Node:
  if node.device != device:
    return copy_to(node, device)
  return Node(Ops.CONTIGUOUS, node.dtype, (node,), None, node.shape, node.device)


def _shrink_axis(node: Node, axis: int, lo: int, hi: int) -> Node:
  arg = tuple((lo, hi) if i == axis else (0, s) for i, s in enumerate(node.shape))
  return g.shrink(node, arg)


def _cat(pieces: list[Node], axis: int) -> Node:
  """Concatenation along `axis` of nodes on one device: each padded with zeros to the full extent, then summed
  (OR for bool), which the scheduler fuses into one kernel."""
  pieces = [p for p in pieces if p.shape[axis] > 0] or pieces[:1]
  if len(pieces) == 1:
    return pieces[0]
  total = sum(p.shape[axis] for p in pieces)
  combine = Ops.OR if pieces[0].dtype == dtypes.bool else Ops.ADD
  out, start = None, 0
  for p in pieces:
    width = p.shape[axis]
    padded = g.pad(p, tuple((start, total - start - width) if i == axis else (0, 0) for i in range(len(p.shape))))
    out = padded if out is None else g.alu(combine, out, padded)
    start += width
  return out


# ---- layouts: shard, gather, reshard ------------------------------------------------------------------------------
def shard(node: Node | MultiNode, devices: tuple[str, ...], axis: int | None, splits=None) -> MultiNode:
  """node split over devices along axis (ceil-sized chunks, or `splits` sizes), or replicated when axis is None."""
  if isinstance(node, MultiNode):
    node = gather(node, devices[0])
  if axis is None:
    # the copy on node's own device is a CONTIGUOUS of it, not node itself: node is the source of the other copies,
    # and autograd sums the gradients of a replicated value's copies, so none may be an ancestor of another
    return MultiNode([_own_copy(node, d) for d in devices], None)
  if splits is None:
    bounds = split_bounds(node.shape[axis], len(devices))
  else:
    starts = [sum(splits[:i]) for i in range(len(splits))]
    bounds = tuple((s, s + n) for s, n in zip(starts, splits))
  return MultiNode([copy_to(_shrink_axis(node, axis, lo, hi), d) for (lo, hi), d in zip(bounds, devices)], axis,
                   bounds)


def gather(x: MultiNode, device: str) -> Node:
  """The whole value of x on one device: the shards copied there and concatenated along the sharded axis."""
  if x.axis is None:
    local = [n for n in x.nodes if n.device == device]
    return local[0] if local else copy_to(x.nodes[0], device)
  order = sorted(range(len(x.nodes)), key=lambda i: x.bounds[i])
  return _cat([copy_to(x.nodes[i], device) for i in order if x.bounds[i][1] > x.bounds[i][0]] or
              [copy_to(x.nodes[order[0]], device)], x.axis)


def to_layout(x: MultiNode, axis: int | None, bounds) -> MultiNode:
  """x laid out as (axis, bounds) on its devices: a replicated x is cut locally; a sharded one is gathered to every
  device first (an all-gather), then cut."""
  if x.axis == axis and (axis is None or x.bounds == tuple(bounds)):
    return x
  full = x if x.axis is None else MultiNode([gather(x, d) for d in x.devices], None)
  if axis is None:
    return full
  return MultiNode([_shrink_axis(n, axis, lo, hi) for n, (lo, hi) in zip(full.nodes, bounds)], axis, bounds)


# ---- graph constructors over shards (frontend.graph dispatches here) ---------------------------------------------
def const(value, dtype: DType, shape: tuple[int, ...], devices: tuple[str, ...]) -> MultiNode:
  return MultiNode([g.const(value, dtype, shape, d) for d in devices], None)


def alu(op: Ops, *srcs) -> MultiNode:
  """op over shards; operands are brought to the layout of the first sharded one (replicated ones are cut locally).

  Raises:
    ValueError: an operand on one device or on other devices.
  """
  for s in srcs:
    if not isinstance(s, MultiNode) or s.devices != srcs[0].devices:
      where = s.device if isinstance(s, Node) else list(s.devices)
      raise ValueError(f"{op.name}: operands are on different devices: {list(srcs[0].devices)} and {where}; "
                       f"shard or copy them to the same devices first")
  sharded = [s for s in srcs if s.axis is not None]
  layout = (sharded[0].axis, sharded[0].bounds) if sharded else (None, None)
  srcs = [to_layout(s, *layout) for s in srcs]
  return MultiNode([g.alu(op, *shards) for shards in zip(*[s.nodes for s in srcs])], *layout)


def reduce(x: MultiNode, op: Ops, axes: tuple[int, ...]) -> MultiNode:
  """Per-shard reduction; over the sharded axis the partial results are then all-reduced (a replicated result)."""
  if x.axis is None or x.axis not in axes:
    return x.map(lambda n: g.reduce(n, op, axes))
  live = [i for i, (lo, hi) in enumerate(x.bounds) if hi > lo]
  partial = [g.reduce(x.nodes[i], op, axes) for i in live]
  reduced = all_reduce(partial, op)
  by_device = {n.device: n for n in reduced}
  return MultiNode([by_device.get(d) or copy_to(reduced[0], d) for d in x.devices], None)


def reshape(x: MultiNode, shape: tuple[int, ...], shard_reshape) -> MultiNode:
  """Reshape keeping the sharding: the axis moves to the new axis whose leading product matches, and each shard's
  slice must stay whole rows of it.

  Raises:
    ValueError: the reshape would cut through the shards (gather with .to(device) first).
  """
  if x.axis is None:
    return x.map(lambda n: shard_reshape(n, shape))
  found = _reshaped_axis(x.shape, x.axis, x.bounds, tuple(shape))
  if found is None:
    raise ValueError(f"cannot reshape {x.shape} sharded on axis {x.axis} (bounds {list(x.bounds)}) to {tuple(shape)}"
                     f": the new shape splits the shards; gather with .to(device) or reshard first")
  axis, bounds = found
  nodes = [shard_reshape(n, shape[:axis] + (hi - lo,) + shape[axis + 1:]) for n, (lo, hi) in zip(x.nodes, bounds)]
  return MultiNode(nodes, axis, bounds)


def _reshaped_axis(old: tuple[int, ...], axis: int, bounds, new: tuple[int, ...]):
  """(new axis, new bounds) for reshaping `old` sharded on `axis` to `new`, or None when no axis keeps the shards."""
  lead, inner = math.prod(old[:axis]), math.prod(old[axis + 1:])
  for cand in range(len(new)):
    new_inner = math.prod(new[cand + 1:])
    if math.prod(new[:cand]) != lead or new[cand] * new_inner != old[axis] * inner or new_inner == 0:
      continue
    if all((lo * inner) % new_inner == 0 and (hi * inner) % new_inner == 0 for lo, hi in bounds):
      return cand, tuple((lo * inner // new_inner, hi * inner // new_inner) for lo, hi in bounds)
  return None


def permute(x: MultiNode, order: tuple[int, ...]) -> MultiNode:
  out = x.map(lambda n: g.permute(n, order))
  return out if x.axis is None else MultiNode(out.nodes, tuple(order).index(x.axis), x.bounds)


def expand(x: MultiNode, shape: tuple[int, ...]) -> MultiNode:
  """Raises: ValueError: the sharded axis would grow."""
  if x.axis is None:
    return x.map(lambda n: g.expand(n, shape))
  if shape[x.axis] != x.shape[x.axis]:
    raise ValueError(f"cannot expand {x.shape} sharded on axis {x.axis} to {tuple(shape)}: the sharded axis would "
                     f"grow; gather with .to(device) first")
  nodes = [g.expand(n, shape[:x.axis] + (n.shape[x.axis],) + shape[x.axis + 1:]) for n in x.nodes]
  return MultiNode(nodes, x.axis, x.bounds)


def pad(x: MultiNode, arg: tuple[tuple[int, int], ...]) -> MultiNode:
  """Padding of the sharded axis goes to the shard holding its first (before) and its last (after) element."""
  if x.axis is None or arg[x.axis] == (0, 0):
    return x.map(lambda n: g.pad(n, arg))
  before, after = arg[x.axis]
  total = x.shape[x.axis]
  first = _edge_shard(x.bounds, lambda lo, hi: lo == 0)
  last = _edge_shard(x.bounds, lambda lo, hi: hi == total)
  nodes, bounds = [], []
  for i, (n, (lo, hi)) in enumerate(zip(x.nodes, x.bounds)):
    grow = (before if i == first else 0, after if i == last else 0)
    nodes.append(g.pad(n, tuple(grow if j == x.axis else p for j, p in enumerate(arg))))
    start = lo + before - grow[0]
    bounds.append((start, start + (hi - lo) + grow[0] + grow[1]))
  return MultiNode(nodes, x.axis, bounds)


def _edge_shard(bounds, is_edge) -> int:
  edges = [i for i, (lo, hi) in enumerate(bounds) if is_edge(lo, hi)]
  nonempty = [i for i in edges if bounds[i][1] > bounds[i][0]]
  return (nonempty or edges)[0]


def shrink(x: MultiNode, arg: tuple[tuple[int, int], ...]) -> MultiNode:
  """A shrink of the sharded axis keeps, on each device, the part of its shard inside the window (maybe none)."""
  if x.axis is None:
    return x.map(lambda n: g.shrink(n, arg))
  if arg[x.axis] == (0, x.shape[x.axis]):  # the sharded axis kept whole: each shard keeps all of its slice
    return x.map(lambda n: g.shrink(n, tuple((0, n.shape[j]) if j == x.axis else p for j, p in enumerate(arg))))
  start, stop = arg[x.axis]
  nodes, bounds = [], []
  for n, (lo, hi) in zip(x.nodes, x.bounds):
    keep_lo = min(max(lo, start), stop)
    keep_hi = max(min(hi, stop), keep_lo)
    local = (keep_lo - lo, keep_hi - lo) if keep_hi > keep_lo else (0, 0)
    nodes.append(g.shrink(n, tuple(local if j == x.axis else p for j, p in enumerate(arg))))
    bounds.append((keep_lo - start, keep_hi - start))
  return MultiNode(nodes, x.axis, bounds)


def flip(x: MultiNode, axes: tuple[int, ...]) -> MultiNode:
  out = x.map(lambda n: g.flip(n, axes))
  if x.axis is None or x.axis not in axes:
    return out
  total = x.shape[x.axis]
  return MultiNode(out.nodes, x.axis, [(total - hi, total - lo) for lo, hi in x.bounds])


# ---- all-reduce ---------------------------------------------------------------------------------------------------
def all_reduce(nodes: list[Node], op: Ops = Ops.ADD, algorithm: str | None = None) -> list[Node]:
  """The elementwise reduction (ADD, MAX or MUL) of same-shaped nodes on distinct devices, on every one of them.

  Args:
    nodes: one node per device.
    op: the reduction.
    algorithm: "ring", "tree", or None to choose by size (ring from RING_MIN_BYTES, and only when every device
      gets a chunk).

  Raises:
    ValueError: shapes or dtypes differ, devices repeat, or the algorithm or op is unknown.
  """
  if not nodes:
    raise ValueError("all_reduce needs at least one node")
  if any(n.shape != nodes[0].shape or n.dtype != nodes[0].dtype for n in nodes):
    raise ValueError(f"all_reduce needs one shape and dtype, got {[(n.shape, n.dtype.name) for n in nodes]}")
  if len({n.device for n in nodes}) != len(nodes):
    raise ValueError(f"all_reduce needs distinct devices, got {[n.device for n in nodes]}")
  if op not in (Ops.ADD, Ops.MAX, Ops.MUL):
    raise ValueError(f"all_reduce supports ADD, MAX and MUL, not {op.name}")
  if algorithm is None:
    big = nodes[0].size * nodes[0].dtype.itemsize >= RING_MIN_BYTES
    algorithm = "ring" if big and nodes[0].size >= len(nodes) else "tree"
  if algorithm == "tree":
    return _tree_all_reduce(list(nodes), op)
  if algorithm == "ring":
    return _ring_all_reduce(list(nodes), op)
  raise ValueError(f"unknown all_reduce algorithm {algorithm!r}; use 'ring', 'tree' or None")


def _tree_all_reduce(nodes: list[Node], op: Ops) -> list[Node]:
  # round k (stride 2^k): device i (i % 2^(k+1) == 0) adds in the value of device i + 2^k; then the same tree
  # in reverse copies the root's result down, so every device ends with the root's bits
  vals = list(nodes)
  count = len(vals)
  stride = 1
  while stride < count:
    for i in range(0, count - stride, 2 * stride):
      vals[i] = g.alu(op, vals[i], copy_to(vals[i + stride], vals[i].device))
    stride *= 2
  while stride > 1:
    stride //= 2
    for i in range(0, count - stride, 2 * stride):
      vals[i + stride] = copy_to(vals[i], nodes[i + stride].device)
  return vals


def _ring_all_reduce(nodes: list[Node], op: Ops) -> list[Node]:
  # chunks[d][c]: device d's copy of chunk c. Reduce-scatter step s: device d sends chunk (d - s) mod n to d + 1,
  # which combines it with its own; after n - 1 steps device d holds the whole reduction of chunk (d + 1) mod n.
  # All-gather step s: device d sends its finished chunk (d + 1 - s) mod n to d + 1, which keeps it.
  # Within a step every device sends one chunk and receives another, so the order of the sends does not matter.
  count = len(nodes)
  shape = nodes[0].shape
  bounds = split_bounds(nodes[0].size, count)
  chunks = [[_shrink_axis(g.reshape(n, (n.size,)), 0, lo, hi) for lo, hi in bounds] for n in nodes]
  for step in range(count - 1):
    for d in range(count):
      c, dst = (d - step) % count, (d + 1) % count
      if bounds[c][1] > bounds[c][0]:
        chunks[dst][c] = g.alu(op, chunks[dst][c], copy_to(chunks[d][c], nodes[dst].device))
  for step in range(count - 1):
    for d in range(count):
      c, dst = (d + 1 - step) % count, (d + 1) % count
      chunks[dst][c] = copy_to(chunks[d][c], nodes[dst].device)
  return [g.reshape(_cat(row, 0), shape) for row in chunks]
