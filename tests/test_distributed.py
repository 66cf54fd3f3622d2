"""numba_adam.distributed under real MPI: each test runs tests/mpi/worker.py on 1-3 ranks.

The worker asserts on every rank (see its scenarios); here we check that
mpiexec succeeded, or for the abort tests that the job ended quickly with
the message, instead of hanging.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py.MPI", reason="numba_adam.distributed needs mpi4py and an MPI "
                    "library (numba-adam[mpi])")

WORKER = Path(__file__).parent / "mpi" / "worker.py"
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join(
    [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH")


def mpirun(ranks: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # one thread per rank: the ranks share this machine's cores
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    return subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, "-m", "mpi4py",
                           str(WORKER), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "passed on" in result.stdout


@pytest.mark.parametrize("ranks", [2, 3])
def test_deterministic_mode_equals_one_process_given_the_mean_bit_for_bit(ranks):
    """Six option sets (AMSGrad, L2, clipping, 16/8-bit, AdamW with a schedule), sharded and
    not: parameters, state_dict and clip factors equal a single Adam's, on every rank."""
    check(mpirun(ranks, "deterministic"))


@pytest.mark.parametrize("ranks", [2, 3])
def test_default_mode_is_close_to_one_process(ranks):
    check(mpirun(ranks, "default"))


def test_ranks_without_any_state_still_step_save_and_load(tmp_path):
    check(mpirun(3, "tiny", str(tmp_path / "tiny.ckpt")))


def test_plain_arrays_and_sparse_gradients_take_the_packed_path():
    """Fortran-ordered plain arrays, and IndexedSlices densified before the reduction."""
    check(mpirun(3, "plain_arrays"))


@pytest.mark.parametrize("ranks", [2, 3])
def test_unequal_parameters_and_bad_input_on_one_rank_are_refused_everywhere(ranks):
    check(mpirun(ranks, "refusals"))


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_each_rank_holds_about_one_pth_of_the_state(ranks):
    check(mpirun(ranks, "memory"))


def test_checkpoints_reshard_2_to_1_to_3(tmp_path):
    """Saved by 2 ranks, continued by a plain single-process Adam, then by 3 ranks: each
    stage equals an uninterrupted single-process run bit for bit."""
    a, b, c = (str(tmp_path / f"{x}.ckpt") for x in "abc")
    check(mpirun(2, "resume", "0", "3", "-", a))
    single = subprocess.run([sys.executable, str(WORKER), "resume", "3", "5", a, b, "single"],
                            capture_output=True, text=True, timeout=300)
    check(single)
    check(mpirun(3, "resume", "5", "8", b, c))
    safetensors = pytest.importorskip("safetensors.numpy")
    arrays = safetensors.load_file(c)
    assert arrays["groups.0.params"].size == 218401
    assert arrays["groups.0.exp_avg.q8"].dtype == np.uint8


@pytest.mark.parametrize("where", ["inside", "before"])
def test_a_rank_that_fails_ends_the_job_instead_of_hanging(where):
    start = time.monotonic()
    result = mpirun(2, "abort", where, timeout=120)
    assert result.returncode != 0
    assert "simulated failure" in result.stderr
    if where == "inside":
        assert "aborting the communicator so no rank waits forever" in result.stderr
    assert time.monotonic() - start < 100


def test_distributed_demo_reaches_the_single_process_accuracy(tmp_path):
    """mpiexec -n 2 numba-adam demo --distributed: each rank half of every batch."""
    def accuracy(output: str) -> float:
        line = next(x for x in output.splitlines() if x.startswith("final loss"))
        return float(line.rsplit("test accuracy ", 1)[1].rstrip("%")) / 100

    demo = [sys.executable, "-m", "numba_adam.cli", "demo", "--steps", "1500"]
    single = subprocess.run(demo + ["--out", str(tmp_path / "one")], capture_output=True,
                            text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    both = subprocess.run([MPIEXEC, "-n", "2", *demo, "--distributed", "--out",
                           str(tmp_path / "two")], capture_output=True, text=True, timeout=300)
    assert both.returncode == 0, both.stderr[-3000:]
    assert "data-parallel over 2 ranks" in both.stdout
    assert both.stdout.count("final loss") == 1          # one report, from rank 0
    assert accuracy(both.stdout) >= accuracy(single.stdout) - 0.01 >= 0.9
    assert (tmp_path / "two" / "checkpoint.ckpt").is_file()
