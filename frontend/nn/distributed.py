"""Data-parallel training across processes (hosts) that exchange gradients through MPI (mpi4py).

  from frontend.nn import distributed as dist
  comm = dist.world()                               # MPI.COMM_WORLD; needs `pip install mpi4py mpich`
  dist.broadcast_parameters(params, comm)           # every rank starts from rank 0's values
  for rows in global_batches:                       # the same global order on every rank
    local = rows[slice(*dist.rank_bounds(len(rows), comm))]
    opt.zero_grad()
    model(x[local]).sparse_categorical_crossentropy(y[local]).backward()
    dist.all_reduce_gradients(opt.params, comm, weight=len(local) / len(rows))
    opt.step()

Run under an MPI launcher, one process per rank: `mpiexec -n 4 python train.py`. Without a launcher a process is a
world of one rank and every function here is an identity.

What crosses the wire: each tensor is realized and copied to host numpy, tensors of one wire dtype are packed into one
contiguous buffer, and one MPI_Allreduce (MPI_SUM) or MPI_Bcast per wire dtype moves it; the result is copied back to
the tensor's device (or devices: a tensor sharded over several devices of one host keeps its layout). float16 and
bfloat16 travel and are summed as float32, so a sum over many ranks rounds once, not once per rank. Gradients are
combined as sum_r(weight_r * grad_r): weight 1/size on every rank is the mean, and weight n_r/N (rank r's share of the
global batch) gives the gradient of the global batch's mean loss even when the shares are unequal.

Every rank must call each function with the same tensors (shapes and dtypes, in the same order): MPI collectives match
by call order, not by name. The functions check this with one small allgather first and raise the same error on every
rank, instead of letting MPI read mismatched buffers. A rank that fails for any other reason would leave the others
waiting in a collective forever; `abort_on_error(comm)` ends the whole job (MPI_Abort) instead.
"""
from __future__ import annotations

import contextlib
import os
import sys
import sysconfig
import traceback

import numpy as np

from compiler.dtypes import DType, dtypes
from frontend import multi
from frontend.multi import MultiNode
from frontend.nn.state import _settle
from frontend.tensor import Tensor

MPI_INSTALL = "pip install mpi4py mpich  (or: pip install -e '.[mpi]')"
_WIRE_FLOATS = (dtypes.float16, dtypes.bfloat16)  # summed on the host as float32


class MpiUnavailable(ImportError):
  """mpi4py, or the MPI library it loads, is missing."""


class MpiMismatch(ValueError):
  """The ranks called a collective with different tensors (count, shapes or dtypes)."""


def require_mpi():
  """The mpi4py.MPI module (importing it initializes MPI).

  Raises:
    MpiUnavailable: mpi4py is not installed or cannot load an MPI library; the message names the pip command.
  """
  # the mpich wheel's libmpi where mpi4py's own search misses it (see _libmpi_hint); set before the
  # first import, and inherited by the ranks a launcher starts from this process
  wheel_lib = os.path.join(sysconfig.get_path("data"), "lib", "libmpi.so.12")
  if "MPI4PY_LIBMPI" not in os.environ and os.path.exists(wheel_lib) and "mpi4py.MPI" not in sys.modules:
    os.environ["MPI4PY_LIBMPI"] = wheel_lib
  try:
    from mpi4py import MPI
  except ImportError as e:
    raise MpiUnavailable(f"training over MPI needs mpi4py and an MPI library, and mpi4py is not importable ({e}); "
                         f"install them: {MPI_INSTALL}") from e
  except (RuntimeError, OSError) as e:  # mpi4py is there but found no libmpi to load
    raise MpiUnavailable(f"mpi4py is installed but cannot load an MPI library ({e}); {_libmpi_hint()}") from e
  return MPI


def _libmpi_hint() -> str:
  """What to do when mpi4py finds no libmpi. The mpich wheel installs libmpi.so.12 in <prefix>/lib and mpi4py dlopens
  it by name, searching the interpreter's own prefixes; Debian's python3 installs root's packages under /usr/local,
  which only the dynamic linker's cache reaches, and pip does not refresh that cache."""
  wheel_lib = os.path.join(sysconfig.get_path("data"), "lib", "libmpi.so.12")
  if os.path.exists(wheel_lib):
    return f"{wheel_lib} is there: run `ldconfig` (as root) or export MPI4PY_LIBMPI={wheel_lib}"
  return f"install one: {MPI_INSTALL}"


def world():
  """MPI.COMM_WORLD: every process the launcher started (one, without a launcher).

  Raises:
    MpiUnavailable: see require_mpi.
  """
  return require_mpi().COMM_WORLD


def rank_bounds(size: int, comm) -> tuple[int, int]:
  """The (lo, hi) slice of `size` items (a global batch's rows) that this rank takes: tinygrad's ceil-sized chunks
  (frontend.multi.split_bounds), so 32 rows over 3 ranks are 11, 11, 10."""
  return multi.split_bounds(size, comm.Get_size())[comm.Get_rank()]


@contextlib.contextmanager
def abort_on_error(comm):
  """Inside the block, an exception on one rank prints its traceback and ends every rank (MPI_Abort), since the
  others would otherwise wait forever in their next collective. A world of one rank just lets it propagate."""
  try:
    yield
  except BaseException as e:
    if comm.Get_size() == 1 or (isinstance(e, SystemExit) and not e.code):
      raise
    print(f"rank {comm.Get_rank()} of {comm.Get_size()} failed; aborting every rank:", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)
    sys.stderr.flush()
    comm.Abort(1)


# ---------------------------------------------------------------------------------------------------------------------
# host <-> tensor


def _wire_dtype(d: DType) -> np.dtype:
  if d == dtypes.bool:
    raise TypeError("cannot sum bool tensors over MPI; cast them to an integer dtype first")
  return np.dtype(np.float32) if d in _WIRE_FLOATS else np.dtype(d.np)


def _like(values: np.ndarray, like: Tensor) -> Tensor:
  """values (host) as a tensor with like's dtype, device(s) and shard layout."""
  if not isinstance(like.lazydata, MultiNode):
    return Tensor(values, device=like.device, dtype=like.dtype)
  replicated = Tensor(values, device=like.device, dtype=like.dtype).lazydata
  return Tensor(multi.to_layout(replicated, like.lazydata.axis, like.lazydata.bounds))


def _check_same_everywhere(tensors: list[Tensor], comm, what: str) -> None:
  """Raises MpiMismatch on every rank unless every rank passed tensors of the same shapes and dtypes."""
  mine = [(tuple(t.shape), t.dtype.name) for t in tensors]
  everyone = comm.allgather(mine)
  first = everyone[0]
  for rank, theirs in enumerate(everyone):
    if theirs == first:
      continue
    if len(theirs) != len(first):
      detail = f"rank 0 passed {len(first)} tensors, rank {rank} passed {len(theirs)}"
    else:
      i = next(i for i, (a, b) in enumerate(zip(first, theirs)) if a != b)
      ours, other = first[i], theirs[i]
      detail = f"tensor {i} is {ours[1]}{list(ours[0])} on rank 0 but {other[1]}{list(other[0])} on rank {rank}"
    raise MpiMismatch(f"{what}: {detail}; every rank must pass the same tensors (shapes and dtypes) in the same order")


def _packed(arrays: list[np.ndarray]) -> dict[np.dtype, list[int]]:
  """Indices of `arrays` grouped by dtype, in first-seen order: each group travels as one buffer."""
  groups: dict[np.dtype, list[int]] = {}
  for i, a in enumerate(arrays):
    groups.setdefault(a.dtype, []).append(i)
  return groups


def _unpack(buf: np.ndarray, arrays: list[np.ndarray], indices: list[int], out: list) -> None:
  offset = 0
  for i in indices:
    n = arrays[i].size
    out[i] = buf[offset:offset + n].reshape(arrays[i].shape)
    offset += n


# ---------------------------------------------------------------------------------------------------------------------
# collectives


def all_reduce_host(tensors: list[Tensor], comm, weight: float = 1.0) -> list[np.ndarray]:
  """sum over ranks of weight * t, for each tensor, as host arrays of the wire dtype (float32 for float16/bfloat16).

  Args:
    tensors: the same shapes and dtypes, in the same order, on every rank (not bool).
    comm: an mpi4py communicator.
    weight: this rank's factor (may differ between ranks); 1 is the plain sum. An integer tensor needs weight 1.

  Raises:
    MpiMismatch: the ranks passed different tensors.
    TypeError: a bool tensor, or an integer tensor with a weight other than 1.
  """
  MPI = require_mpi()
  _check_same_everywhere(tensors, comm, "all_reduce")
  arrays = []
  for t in tensors:
    wire = _wire_dtype(t.dtype)
    if weight != 1.0 and not np.issubdtype(wire, np.floating):
      raise TypeError(f"weight {weight} on an integer tensor ({t.dtype.name}{list(t.shape)}) would round; pass "
                      "weight=1 for integers, or cast them to a float dtype")
    a = t.numpy().astype(wire, copy=False)
    arrays.append(a * wire.type(weight) if weight != 1.0 else a)
  out: list = [None] * len(arrays)
  for indices in _packed(arrays).values():
    buf = np.concatenate([arrays[i].reshape(-1) for i in indices])
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    _unpack(buf, arrays, indices, out)
  return out


def all_reduce(tensors: list[Tensor], comm, average: bool = False) -> list[Tensor]:
  """The sum (or mean, with average=True) over ranks of each tensor, as new tensors with the same dtypes, devices
  and shard layouts.

  Raises:
    MpiMismatch: the ranks passed different tensors.
    TypeError: a bool tensor, or average=True with an integer tensor.
  """
  weight = 1.0 / comm.Get_size() if average else 1.0
  if average:
    for t in tensors:
      if not t.dtype.is_float:
        raise TypeError(f"the mean of {t.dtype.name}{list(t.shape)} over ranks would round; pass average=False")
  sums = all_reduce_host(tensors, comm, weight=weight)
  return [_like(s, t) for s, t in zip(sums, tensors)]


def all_reduce_gradients(params: list[Tensor], comm, weight: float | None = None) -> None:
  """Replaces every parameter's .grad with sum over ranks of weight * grad, so each rank's optimizer takes the same
  step. Parameters without a gradient (None on every rank) are left alone.

  Args:
    params: the optimizer's parameters (opt.params), the same on every rank.
    comm: an mpi4py communicator.
    weight: this rank's share; None is 1/size (the mean). Pass n_local / n_global when the ranks' slices of a global
      batch differ in size, so the result is the gradient of the global batch's mean loss.

  Raises:
    MpiMismatch: the ranks differ in which parameters have gradients, or in their shapes and dtypes.
  """
  with_grad = [p for p in params if p.grad is not None]
  if weight is None:
    weight = 1.0 / comm.Get_size()
  grads = [p.grad for p in with_grad]
  sums = all_reduce_host(grads, comm, weight=weight)
  for p, s in zip(with_grad, sums):
    p.grad = _like(s, p.grad)


def broadcast_parameters(params: list[Tensor], comm, root: int = 0) -> None:
  """Writes rank `root`'s values into every rank's tensors in place (their buffers stay the same, as with
  load_state_dict), so all ranks start identical. Pass every tensor of the model's state (get_state_dict(model)
  .values()), buffers such as batch norm's running statistics included.

  Raises:
    MpiMismatch: the ranks passed different tensors.
  """
  require_mpi()  # a missing mpi4py is reported as such, not as a failed method call on comm
  _check_same_everywhere(params, comm, "broadcast_parameters")
  arrays = [p.numpy() for p in params]  # bfloat16 arrives as float32 and goes back exactly
  out: list = [None] * len(arrays)
  for indices in _packed(arrays).values():
    buf = np.concatenate([arrays[i].reshape(-1) for i in indices])
    comm.Bcast(buf, root=root)
    _unpack(buf, arrays, indices, out)
  for p, values in zip(params, out):
    p.assign(_like(values, p))
  if params:
    Tensor.realize(*params)
  for p in params:
    _settle(p)


def average_parameters(params: list[Tensor], comm) -> None:
  """Writes the mean over ranks into every rank's float tensors in place; others are left as they are. For state
  that each rank updates from its own data, e.g. batch norm's running statistics, before evaluating or saving.

  Raises:
    MpiMismatch: the ranks passed different tensors.
  """
  floats = [p for p in params if p.dtype.is_float]
  means = all_reduce(floats, comm, average=True)
  for p, m in zip(floats, means):
    p.assign(m)
  if floats:
    Tensor.realize(*floats)
  for p in floats:
    _settle(p)
