"""``numba-adam bench --mpi``: a data-parallel step over 2 ranks against one process.

Each implementation is its own launch (``mpiexec -n P`` or a plain process),
one thread per rank, and the launches alternate round by round (A B C D,
B C D A, ...).  A launch warms up, then times ``steps`` steps one by one with
a barrier before each, and reports the median step (the slowest rank's).

- **one process**: ``numba_adam.Adam`` on the whole model, one thread.
- **DistributedAdam**: reduce-scatter + shard update + all-gather, default
  and ``deterministic=True``.
- **communication only**: the same reduce-scatter and all-gather without the
  update, so the step splits into communication and compute.
- **torch ZeroRedundancyOptimizer(Adam)** over gloo, with the gradient
  all-reduce DDP would do (``foreach`` Adam, one thread per rank).

The model is ``tensors`` equal 1-D tensors (ZeRO shards whole tensors, so
one big tensor would leave a rank idle).  Bytes per rank are the payload
``DistributedAdam.bytes_sent`` counts, against the bandwidth-optimal
2·(P−1)/P·N·itemsize of a reduce-scatter plus an all-gather.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ONE_PROCESS = "numba_adam Adam, one process"
DISTRIBUTED = "DistributedAdam"
DETERMINISTIC = "DistributedAdam deterministic"
COMMUNICATION = "reduce-scatter + all-gather only"
TORCH_ZERO = "torch ZeroRedundancyOptimizer(Adam), gloo"


def _shapes(size: int, tensors: int) -> list[int]:
    return [size // tensors + (1 if i < size % tensors else 0) for i in range(tensors)]


def _time_steps(step, barrier, steps: int) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        barrier()
        start = time.perf_counter()
        step()
        barrier()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def worker(kind: str, size: int, tensors: int, steps: int) -> dict[str, Any]:
    """One launch's measurement (run on every rank; rank 0 reports)."""
    rng = np.random.default_rng(0)
    sizes = _shapes(size, tensors)
    if kind == TORCH_ZERO:
        return _torch_zero(sizes, steps)
    import numba_adam
    buf = numba_adam.ParamBuffer({str(i): rng.standard_normal(n) for i, n in enumerate(sizes)})
    buf.grad[:] = rng.standard_normal(buf.size) * 1e-3
    if kind == ONE_PROCESS:
        opt = numba_adam.Adam(buf, lr=1e-6)
        seconds = _time_steps(opt.step, lambda: None, steps)
        return dict(seconds=seconds, ranks=1, state_nbytes=opt.state_nbytes)
    from mpi4py import MPI

    from .distributed import DistributedAdam
    comm = MPI.COMM_WORLD
    opt = DistributedAdam(buf, lr=1e-6, deterministic=kind == DETERMINISTIC)
    if kind == COMMUNICATION:
        lo, hi = opt.shard
        mine = np.zeros(hi - lo, buf.dtype)
        counts = comm.allgather(hi - lo)
        displs = np.cumsum([0] + counts[:-1]).tolist()

        def step():
            comm.Reduce_scatter(buf.grad, mine, recvcounts=counts, op=MPI.SUM)
            comm.Allgatherv(MPI.IN_PLACE, [buf.data, (counts, displs)])
    else:
        step = opt.step
    before = opt.bytes_sent
    seconds = _time_steps(step, comm.Barrier, steps)
    sent = (opt.bytes_sent - before) / (steps + 3) if kind != COMMUNICATION else None
    seconds = comm.allreduce(seconds, op=MPI.MAX)
    return dict(seconds=seconds, ranks=comm.Get_size(), bytes_sent_per_step=sent,
                state_nbytes=comm.allreduce(opt.state_nbytes, op=MPI.MAX))


def _torch_zero(sizes: list[int], steps: int) -> dict[str, Any]:
    import torch
    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer
    rank, ranks = int(os.environ["PMI_RANK"]), int(os.environ["PMI_SIZE"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=os.environ["NUMBA_ADAM_BENCH_TORCH_INIT"],
                            rank=rank, world_size=ranks)
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(n, generator=generator)) for n in sizes]
    flat = torch.randn(sum(sizes), generator=generator) * 1e-3   # one bucket, as DDP's
    at = 0
    for p, n in zip(params, sizes):
        p.grad = flat[at:at + n]
        at += n
    opt = ZeroRedundancyOptimizer(params, optimizer_class=torch.optim.Adam, lr=1e-6,
                                  foreach=True)

    def step():   # the gradient all-reduce and mean DDP does in backward, then ZeRO's step
        dist.all_reduce(flat)
        flat.div_(ranks)
        opt.step()
    seconds = _time_steps(step, dist.barrier, steps)
    worst = torch.tensor([seconds])
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    dist.destroy_process_group()
    return dict(seconds=float(worst), ranks=ranks)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(kind: str, ranks: int, size: int, tensors: int, steps: int) -> dict[str, Any]:
    """Run one measurement in fresh processes (one thread each); returns rank 0's report."""
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
               NUMBA_ADAM_BENCH_TORCH_INIT=f"tcp://127.0.0.1:{_free_port()}")
    command = [sys.executable, "-m", "numba_adam._bench_mpi", kind, str(size), str(tensors),
               str(steps)]
    if kind != ONE_PROCESS:
        command = [mpiexec(), "-n", str(ranks)] + command
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def mpiexec() -> str:
    found = shutil.which("mpiexec", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if found is None:
        raise RuntimeError("no mpiexec found: pip install 'numba-adam[mpi]'")
    return found


def run_mpi(sizes: list[int], tensors: int, ranks: int, rounds: int, steps: int,
            torch_available: bool, progress) -> list[dict[str, Any]]:
    """Alternating launches of every implementation at each size; one summary per size."""
    kinds = [ONE_PROCESS, DISTRIBUTED, DETERMINISTIC, COMMUNICATION] + \
        ([TORCH_ZERO] if torch_available else [])
    summaries = []
    for size in sizes:
        samples: dict[str, list[dict]] = {k: [] for k in kinds}
        for r in range(rounds):
            for kind in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
                progress(f"mpi {size:.0e}: {kind}, round {r + 1}/{rounds}")
                samples[kind].append(launch(kind, ranks, size, tensors, steps))
        summaries.append(summarise_mpi(samples, size, tensors, ranks))
    return summaries


def _ratio(numerator: list[dict], denominator: list[dict]) -> dict[str, float]:
    values = [a["seconds"] / b["seconds"] for a, b in zip(numerator, denominator)]
    return dict(median=float(np.median(values)), low=min(values), high=max(values))


def summarise_mpi(samples: dict[str, list[dict]], size: int, tensors: int,
                  ranks: int) -> dict[str, Any]:
    itemsize = 4
    ours = samples[DISTRIBUTED]
    summary = dict(
        params=size, tensors=tensors, ranks=ranks,
        seconds={k: float(np.median([s["seconds"] for s in v])) for k, v in samples.items()},
        distributed_over_one_process=_ratio(ours, samples[ONE_PROCESS]),
        deterministic_over_default=_ratio(samples[DETERMINISTIC], ours),
        communication_share=_ratio(samples[COMMUNICATION], ours),
        bytes_sent_per_step=ours[0]["bytes_sent_per_step"],
        bytes_theory=2 * (ranks - 1) / ranks * size * itemsize,
        state_per_rank_over_one_process=ours[0]["state_nbytes"] /
        samples[ONE_PROCESS][0]["state_nbytes"])
    if TORCH_ZERO in samples:
        summary["torch_zero_over_distributed"] = _ratio(samples[TORCH_ZERO], ours)
    return summary


def format_mpi(summaries: list[dict[str, Any]], spread) -> list[str]:
    lines = []
    for s in summaries:
        lines += ["", f"Data-parallel step, {s['params']:.0e} float32 parameters in "
                      f"{s['tensors']} tensors, {s['ranks']} ranks of one thread "
                      f"(each launch its own processes, alternating rounds):"]
        for kind, seconds in s["seconds"].items():
            lines.append(f"  {kind:<44} {seconds * 1e3:8.2f} ms/step")
        lines.append(f"  DistributedAdam / one process: {spread(s['distributed_over_one_process'])}"
                     f"; deterministic / default: {spread(s['deterministic_over_default'])}; "
                     f"communication alone / DistributedAdam: {spread(s['communication_share'])}")
        if "torch_zero_over_distributed" in s:
            lines.append(f"  torch ZeRO / DistributedAdam: "
                         f"{spread(s['torch_zero_over_distributed'])}")
        lines.append(f"  payload per rank per step {s['bytes_sent_per_step'] / 1e6:.2f} MB, "
                     f"theory 2(P-1)/P*N*4 = {s['bytes_theory'] / 1e6:.2f} MB; state per rank "
                     f"{s['state_per_rank_over_one_process']:.4f} of one process's")
    return lines


if __name__ == "__main__":
    report = worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    rank = int(os.environ.get("PMI_RANK", "0"))
    if rank == 0:
        print(json.dumps(report), flush=True)
