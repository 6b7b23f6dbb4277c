"""Data-parallel training across processes through MPI (frontend/nn/distributed.py, `sov train-mnist --mpi`), run as
real MPI jobs of 2 and 3 processes on this machine: mpiexec starts tests/mpi_ranks.py (or `sov`) on every rank, the
ranks write what they computed, and the checks here compare it with numpy and with one process training alone.

Needs mpi4py and an MPI library with its mpiexec (the test extra installs mpi4py and the mpich wheel). Skips without
them locally; fails under CI, where their absence is a broken setup.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import mpi_ranks
from frontend.nn import distributed
from frontend.tensor import Tensor

REPO = Path(__file__).resolve().parent.parent
JOB_TIMEOUT = 120  # seconds for one mpiexec job; a rank stuck in a collective must not hang the suite


def _mpiexec() -> str:
  """The mpiexec of the MPI library mpi4py loads: the one next to this Python (the mpich wheel installs it there),
  else the first on PATH; skips (locally) or fails (CI) without mpi4py or an mpiexec."""
  reason = None
  try:
    distributed.require_mpi()  # loads libmpi: a missing library fails here, not in every rank
  except distributed.MpiUnavailable as e:
    reason = str(e)
  search = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
  found = shutil.which("mpiexec", path=search)
  if reason is None and found is None:
    reason = f"no mpiexec in {sysconfig.get_path('scripts')} or on PATH; pip install mpich (it ships mpiexec)"
  if reason is None:
    return found
  if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    pytest.fail(reason)
  pytest.skip(reason)


def run_job(ranks: int, args: list[str], timeout: float = JOB_TIMEOUT,
            check: bool = True) -> subprocess.CompletedProcess:
  """Runs `python ARGS` as an MPI job of `ranks` processes from the repository root; fails the test with the job's
  output when it runs past `timeout` (then its whole process group is killed) or, with check, exits non-zero.

  MPICH's Hydra launcher, as containers need it:
    -launcher fork   start the ranks as local child processes; never ssh/rsh, which a container lacks
    -bind-to none    no pinning of ranks to cores: with more ranks than cores (3 on a 2-core CI machine) pinned ranks
                     would share a core while another idles
  CPU_THREADS=1 keeps each rank's CPU kernels to one thread, so the ranks do not oversubscribe the cores either.
  The mpich 5.0.2 wheel needs no MPIR_CVAR_* settings here: its shared-memory transport carries traffic between the
  ranks of one machine, and it starts with no network interface and with a host name that does not resolve (both
  tried under `unshare -n -u`).
  """
  cmd = [_mpiexec(), "-launcher", "fork", "-bind-to", "none", "-n", str(ranks), sys.executable, *args]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
             CPU_THREADS="1")
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
  try:
    output, _ = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)  # mpiexec and the ranks it started: the session this Popen created
    output, _ = proc.communicate()
    pytest.fail(f"{' '.join(cmd)} ran past {timeout} s; output:\n{output[-4000:]}")
  if check and proc.returncode != 0:
    pytest.fail(f"{' '.join(cmd)} exited with {proc.returncode}; output:\n{output[-4000:]}")
  return subprocess.CompletedProcess(cmd, proc.returncode, output, None)


def run_ranks(ranks: int, case: str, out: Path) -> list[dict[str, np.ndarray]]:
  """Runs tests/mpi_ranks.py CASE on `ranks` processes; returns what each rank wrote, in rank order."""
  run_job(ranks, [str(REPO / "tests" / "mpi_ranks.py"), case, str(out), str(ranks)])
  results = []
  for rank in range(ranks):
    with np.load(out / f"rank{rank}.npz") as data:
      results.append(dict(data))
  return results


def as_stored(values: np.ndarray, dtype: str) -> np.ndarray:
  """values rounded to `dtype` as a Tensor stores them (bfloat16 and float16 round), as float64."""
  return Tensor(values, dtype=dtype).numpy().astype(np.float64)


TOLERANCE = {"float16": 2e-3, "bfloat16": 1e-2, "float32": 1e-6, "float64": 1e-12}  # rtol of one rounding


# ---- the collectives ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=[2, 3], ids=["2ranks", "3ranks"])
def collectives(request, tmp_path_factory) -> tuple[int, list[dict[str, np.ndarray]]]:
  """(ranks, what each rank wrote) of one `collectives` job per rank count, shared by the tests below."""
  ranks = request.param
  return ranks, run_ranks(ranks, "collectives", tmp_path_factory.mktemp(f"collectives{ranks}"))


def test_all_reduce_matches_numpy(collectives):
  ranks, results = collectives
  floats = [i for i, (_, dtype) in enumerate(mpi_ranks.COLLECTIVE_CASES) if dtype.startswith(("float", "bfloat"))]
  for i, (shape, dtype) in enumerate(mpi_ranks.COLLECTIVE_CASES):
    inputs = [mpi_ranks.rank_values(r, i, shape, dtype) for r in range(ranks)]
    for rank, got in enumerate(results):
      assert got[f"sum{i}"].shape == shape, (rank, dtype)
      if dtype in TOLERANCE:
        expected = sum(as_stored(x, dtype) for x in inputs)
        np.testing.assert_allclose(got[f"sum{i}"], expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype],
                                   err_msg=f"rank {rank} sum of {dtype}{list(shape)}")
        mean = got[f"mean{floats.index(i)}"]
        np.testing.assert_allclose(mean, expected / ranks, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype],
                                   err_msg=f"rank {rank} mean of {dtype}{list(shape)}")
      else:  # integers: exact, in the tensor's dtype
        assert got[f"sum{i}"].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got[f"sum{i}"], np.sum(inputs, axis=0, dtype=dtype))
  for rank in range(1, ranks):  # bit-identical on every rank: the reduction happens once, inside MPI
    for key in set(results[0]) - {"avg_int"}:  # average_parameters leaves integer tensors as each rank had them
      np.testing.assert_array_equal(results[rank][key], results[0][key], err_msg=f"{key} differs on rank {rank}")


def test_gradients_broadcast_average_sharded_and_mismatch(collectives):
  ranks, results = collectives
  grads = [mpi_ranks.rank_values(r, 50, mpi_ranks.GRAD_SHAPE, "float32") for r in range(ranks)]
  expected_grad = sum(mpi_ranks.grad_weight(r, ranks) * g.astype(np.float64) for r, g in enumerate(grads))
  root = [mpi_ranks.rank_values(0, 60 + i, shape, dtype)
          for i, (shape, dtype) in enumerate([((5, 3), "float32"), ((4,), "int32"), ((3, 2), "bfloat16")])]
  floats = [mpi_ranks.rank_values(r, 70, (6,), "float32").astype(np.float64) for r in range(ranks)]
  sharded = sum(mpi_ranks.rank_values(r, 80, (6, 4), "float32").astype(np.float64) for r in range(ranks))
  for rank, got in enumerate(results):
    np.testing.assert_allclose(got["grad"], expected_grad, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got["bcast0"], root[0])
    np.testing.assert_array_equal(got["bcast1"], root[1])
    np.testing.assert_array_equal(got["bcast2"], as_stored(root[2], "bfloat16"))
    np.testing.assert_allclose(got["avg_float"], np.mean(floats, axis=0), rtol=1e-6)
    np.testing.assert_array_equal(got["avg_int"], mpi_ranks.rank_values(rank, 71, (2,), "int64"))  # left alone
    np.testing.assert_allclose(got["sharded"], sharded, rtol=1e-6)
    message = str(got["mismatch"])
    assert "all_reduce: tensor 0 is float32[2, 1] on rank 0 but float32[2, 2] on rank 1" in message, message


def test_a_failing_rank_ends_the_job(tmp_path):
  """One rank raises while the others wait in an all-reduce for it: abort_on_error ends them all (MPI_Abort) with the
  failing rank's traceback, instead of the job waiting forever."""
  job = run_job(3, [str(REPO / "tests" / "mpi_ranks.py"), "abort", str(tmp_path), "3"], timeout=60, check=False)
  assert job.returncode != 0
  assert "rank 2 of 3 failed; aborting every rank" in job.stdout and "fails on purpose" in job.stdout, job.stdout
  assert not list(tmp_path.iterdir())  # no rank got past the all-reduce


# ---- data-parallel training ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("ranks", [2, 3])
def test_data_parallel_training_matches_one_process(tmp_path, ranks):
  """Each rank trains on its (unequal) slice of every batch from its own initial weights until rank 0's are broadcast;
  after the weighted all-reduce every rank takes the step one process takes on the whole batch."""
  results = run_ranks(ranks, "train", tmp_path)
  for name in mpi_ranks.OPTIMIZERS:
    alone = mpi_ranks.train_mlp(name)
    assert alone["losses"][-1] < alone["losses"][0]
    for rank, got in enumerate(results):
      np.testing.assert_allclose(got[f"{name}_losses"], alone["losses"], rtol=1e-5, err_msg=f"{name} rank {rank}")
      for i in range(3):
        np.testing.assert_allclose(got[f"{name}_param{i}"], alone[f"param{i}"], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name} parameter {i} on rank {rank}")
        np.testing.assert_array_equal(got[f"{name}_param{i}"], results[0][f"{name}_param{i}"])


@pytest.mark.slow
def test_sov_train_mnist_mpi_converges(tmp_path):
  pytest.importorskip("sklearn", reason="the digits data set comes from scikit-learn")
  for module in ("tqdm", "matplotlib", "safetensors"):
    pytest.importorskip(module, reason="sov train-mnist needs the [train] extras")
  out = tmp_path / "run"
  job = run_job(2, ["-m", "tools.sov", "train-mnist", "--mpi", "--dataset", "digits", "--steps", "30",
                    "--batch-size", "32", "--out", str(out)], timeout=300)
  assert "data-parallel over 2 MPI ranks" in job.stdout
  assert job.stdout.count("test accuracy:") == 1, job.stdout[-3000:]  # rank 0 alone reports
  accuracy = float(re.search(r"test accuracy: ([\d.]+)%", job.stdout).group(1)) / 100
  first, last = (float(v) for v in re.search(r"loss: ([\d.]+) .*-> ([\d.]+)", job.stdout).groups())
  assert accuracy > 0.8 and last < first * 0.6, job.stdout[-3000:]
  assert (out / "mnist.safetensors").is_file() and (out / "loss.png").is_file()


def test_errors_name_the_fix(monkeypatch, tmp_path, capsys):
  """Without mpi4py the message names the pip command; --save-step is refused with --mpi. (No MPI job needed.)"""
  from tools import sov
  monkeypatch.setitem(sys.modules, "mpi4py", None)  # what a missing mpi4py looks like to `from mpi4py import MPI`
  with pytest.raises(distributed.MpiUnavailable, match=re.escape(distributed.MPI_INSTALL)):
    distributed.world()
  pytest.importorskip("sklearn", reason="the digits data set comes from scikit-learn")
  for module in ("tqdm", "matplotlib", "safetensors"):
    pytest.importorskip(module, reason="sov train-mnist needs the [train] extras")
  args = ["train-mnist", "--mpi", "--dataset", "digits", "--steps", "2", "--out", str(tmp_path)]
  assert sov.main(args) == 1
  assert "--mpi: training over MPI needs mpi4py" in capsys.readouterr().err
  assert sov.main([*args, "--save-step", str(tmp_path / "s.sovreplay")]) == 1
  assert "drop --devices/--mpi or --save-step" in capsys.readouterr().err
