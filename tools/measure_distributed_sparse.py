"""What densifying a sparse gradient costs in DistributedAdam.

A 100000x64 embedding (512 rows touched) plus a 1e6 dense layer, stepped three
ways in alternating rounds: gradients in the ParamBuffer (reduced in place), a
dense gradient list (packed into a flat copy), and an IndexedSlices for the
embedding (densified into that copy).  Medians of 20 steps between barriers.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 mpiexec -n 2 python tools/measure_distributed_sparse.py
"""

import time

import numpy as np
from mpi4py import MPI

import numba_adam
from numba_adam import IndexedSlices
from numba_adam.distributed import DistributedAdam

COMM = MPI.COMM_WORLD
SHAPE = (100_000, 64)
ROWS = 512
DENSE = 1_000_000


def median_ms(step, count: int = 20) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(count):
        COMM.Barrier()
        start = time.perf_counter()
        step()
        COMM.Barrier()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> None:
    rng = np.random.default_rng(0)
    buf = numba_adam.ParamBuffer({"embed": rng.standard_normal(SHAPE),
                                  "w": rng.standard_normal(DENSE)})
    opt = DistributedAdam(buf, lr=1e-6)
    rows = rng.integers(0, SHAPE[0], ROWS)
    values = rng.standard_normal((ROWS, SHAPE[1])).astype(np.float32)
    sparse = {"embed": IndexedSlices(values, rows, SHAPE), "w": np.full(DENSE, 1e-3, np.float32)}
    dense = {"embed": np.zeros(SHAPE, np.float32), "w": sparse["w"]}
    np.add.at(dense["embed"], rows, values)
    buf.grad[:] = np.concatenate([dense["embed"].ravel(), dense["w"]])
    cases = {"ParamBuffer grads (in place)": lambda: opt.step(),
             "dense list (packed)": lambda: opt.step(dense),
             "IndexedSlices (densified, packed)": lambda: opt.step(sparse)}
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(3):
        for name, step in cases.items():
            results[name].append(median_ms(step))
    if COMM.Get_rank() == 0:
        for name, values in results.items():
            rounds = ", ".join(f"{x:.2f}" for x in values)
            print(f"{name:36} {np.median(values):7.2f} ms/step  (rounds {rounds})")


if __name__ == "__main__":
    main()
