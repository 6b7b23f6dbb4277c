"""The program tests/test_mpi.py runs on every rank of an MPI job (`mpiexec -n N python tests/mpi_ranks.py CASE OUT`);
each rank writes what it computed to OUT/rank<r>.npz and the test compares those with numpy in its own process.

  collectives  all_reduce (sum and mean) over COLLECTIVE_CASES, all_reduce_gradients with unequal weights after a
               real backward, broadcast_parameters, average_parameters, a sharded tensor, and the error of mismatched
               tensors
  train        train_mlp with SGD and Adam, each rank on its slice of every global batch
  abort        the last rank raises while the others wait in an all-reduce: abort_on_error must end the job

The inputs come from functions the test calls too (rank_values, train_mlp with comm=None), so both sides agree on
them by construction.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from frontend.nn import distributed as dist
from frontend.nn import optim
from frontend.tensor import Tensor

# (shape, dtype name): float and integer dtypes, a 0-d tensor, and one large enough to span several MPI packets
COLLECTIVE_CASES = [((3, 4), "float32"), ((7,), "float64"), ((2, 3, 5), "int32"), ((), "int64"), ((5, 2), "float16"),
                    ((4, 4), "bfloat16"), ((6,), "uint8"), ((300, 40), "float32")]
GRAD_SHAPE = (4, 3)
SHARD_DEVICES = ("CPU:1", "CPU:2")
OPTIMIZERS = {"sgd": lambda params: optim.SGD(params, lr=0.2, momentum=0.9),
              "adam": lambda params: optim.Adam(params, lr=0.05)}
TRAIN_STEPS = 4


def rank_values(rank: int, case: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
  """Rank `rank`'s input for COLLECTIVE_CASES[case]: fresh random values, never all zeros (as float32 for bfloat16,
  which numpy lacks; Tensor rounds them)."""
  rng = np.random.default_rng(1000 * rank + case)
  if dtype == "uint8":
    return rng.integers(1, 80, shape).astype(np.uint8)  # 3 ranks stay below 256: no wrap-around to reason about
  if dtype.startswith("int"):
    return rng.integers(-1000, 1000, shape).astype(dtype)
  return rng.standard_normal(shape).astype(np.float32 if dtype == "bfloat16" else dtype)


def grad_weight(rank: int, ranks: int) -> float:
  """Unequal weights summing to 1 (rank r weighs r+1 parts), as ranks with unequal slices of a batch have."""
  return (rank + 1) / (ranks * (ranks + 1) / 2)


def _collectives(comm) -> dict[str, np.ndarray]:
  rank, ranks = comm.Get_rank(), comm.Get_size()
  out: dict[str, np.ndarray] = {}
  tensors = [Tensor(rank_values(rank, i, shape, dtype), dtype=dtype)
             for i, (shape, dtype) in enumerate(COLLECTIVE_CASES)]
  for i, t in enumerate(dist.all_reduce(tensors, comm)):
    assert t.dtype == tensors[i].dtype and t.shape == tensors[i].shape
    out[f"sum{i}"] = t.numpy()
  floats = [t for t in tensors if t.dtype.is_float]
  for i, t in enumerate(dist.all_reduce(floats, comm, average=True)):
    out[f"mean{i}"] = t.numpy()

  x = Tensor(rank_values(rank, 50, GRAD_SHAPE, "float32"))
  w = Tensor(rank_values(0, 51, GRAD_SHAPE, "float32"), requires_grad=True)
  (w * x).sum().backward()  # d/dw = x
  dist.all_reduce_gradients([w], comm, weight=grad_weight(rank, ranks))
  out["grad"] = w.grad.numpy()

  params = [Tensor(rank_values(rank, 60, (5, 3), "float32")), Tensor(rank_values(rank, 61, (4,), "int32")),
            Tensor(rank_values(rank, 62, (3, 2), "bfloat16"), dtype="bfloat16")]
  dist.broadcast_parameters(params, comm)
  for i, p in enumerate(params):
    out[f"bcast{i}"] = p.numpy()

  buffers = [Tensor(rank_values(rank, 70, (6,), "float32")), Tensor(rank_values(rank, 71, (2,), "int64"))]
  dist.average_parameters(buffers, comm)
  out["avg_float"], out["avg_int"] = buffers[0].numpy(), buffers[1].numpy()

  sharded = Tensor(rank_values(rank, 80, (6, 4), "float32")).shard(SHARD_DEVICES, axis=0)
  (summed,) = dist.all_reduce([sharded], comm)
  assert summed.device == SHARD_DEVICES and summed.lazydata.axis == 0, (summed.device, summed.lazydata)
  out["sharded"] = summed.numpy()

  try:
    dist.all_reduce([Tensor(np.ones((2, rank + 1), np.float32))], comm)
  except dist.MpiMismatch as e:
    out["mismatch"] = np.array(str(e))
  return out


def train_mlp(opt_name: str, comm=None, batch: int = 11) -> dict[str, np.ndarray]:
  """TRAIN_STEPS steps of a 6-8-3 MLP on global batches of `batch` rows (11: unequal slices, 6+5 or 4+4+3). With
  comm, each rank takes its slice of every batch (dist.rank_bounds) and its initial weights are its own until
  broadcast_parameters gives it rank 0's; without, one process trains on the whole batches from rank 0's weights."""
  rank = 0 if comm is None else comm.Get_rank()
  data = np.random.default_rng(7)
  xs = data.standard_normal((TRAIN_STEPS, batch, 6)).astype(np.float32)
  teacher = data.standard_normal((6, 3)).astype(np.float32)
  ys = (xs @ teacher).argmax(-1).astype(np.int32)  # labels a linear model can learn, so the loss falls
  init = np.random.default_rng(100 + rank)
  params = [Tensor(init.standard_normal((6, 8)).astype(np.float32) * 0.5, requires_grad=True),
            Tensor(init.standard_normal(8).astype(np.float32) * 0.1, requires_grad=True),
            Tensor(init.standard_normal((8, 3)).astype(np.float32) * 0.5, requires_grad=True)]
  if comm is not None:
    dist.broadcast_parameters(params, comm)
  opt = OPTIMIZERS[opt_name](params)
  lo, hi = (0, batch) if comm is None else dist.rank_bounds(batch, comm)
  losses = []
  before = Tensor.training
  Tensor.training = True
  try:
    for step in range(TRAIN_STEPS):
      w1, b1, w2 = params
      loss = Tensor(xs[step, lo:hi]).linear(w1, b1).relu().linear(w2).sparse_categorical_crossentropy(
        Tensor(ys[step, lo:hi]))
      opt.zero_grad()
      loss.backward()
      share = (hi - lo) / batch
      if comm is not None:
        dist.all_reduce_gradients(opt.params, comm, weight=share)
      opt.step()
      losses.append(loss.item() * share if comm is None else comm.allreduce(loss.item() * share))
  finally:
    Tensor.training = before
  out = {f"param{i}": p.numpy() for i, p in enumerate(params)}
  out["losses"] = np.array(losses)
  return out


def _train(comm) -> dict[str, np.ndarray]:
  out = {}
  for name in OPTIMIZERS:
    for key, value in train_mlp(name, comm).items():
      out[f"{name}_{key}"] = value
  return out


def main(case: str, out_dir: str, expected_ranks: int) -> None:
  comm = dist.world()
  if comm.Get_size() != expected_ranks:  # e.g. an mpiexec of another MPI than mpi4py's: each process a world of one
    raise SystemExit(f"rank {comm.Get_rank()} sees a world of {comm.Get_size()} ranks, expected {expected_ranks}: the "
                     "mpiexec that started it belongs to another MPI library than the one mpi4py loaded")
  with dist.abort_on_error(comm):
    if case == "abort":
      if comm.Get_rank() == comm.Get_size() - 1:
        raise RuntimeError("this rank fails on purpose")
      dist.all_reduce([Tensor(np.ones(3, np.float32))], comm)  # waits for the failed rank: only MPI_Abort ends it
    results = _collectives(comm) if case == "collectives" else _train(comm)
    np.savez(os.path.join(out_dir, f"rank{comm.Get_rank()}.npz"), **results)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
