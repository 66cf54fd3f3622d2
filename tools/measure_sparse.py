"""Sparse row update of a rows x cols embedding table with `touched` rows, against the
dense update (interleaved samples, medians).

    python tools/measure_sparse.py [--rows 1000000] [--cols 64] [--touched 10000]
"""

import argparse
import time

import numpy as np

import numba_adam
from numba_adam import IndexedSlices


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--touched", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = (args.rows, args.cols)
    idx = rng.integers(0, args.rows, args.touched)
    values = rng.standard_normal((args.touched, args.cols)).astype(np.float32)
    sparse = IndexedSlices(values, idx, shape)
    dense_grad = np.zeros(shape, np.float32)
    dense = numba_adam.Adam([np.zeros(shape, np.float32)])
    equivalent = numba_adam.Adam([np.zeros(shape, np.float32)])
    lazy = numba_adam.Adam([{"params": [np.zeros(shape, np.float32)], "lazy_sparse": True}])

    def build_and_step():
        dense_grad[...] = 0
        np.add.at(dense_grad, idx, values)
        dense.step([dense_grad])

    cases = {
        "dense step (gradient already dense)": lambda: dense.step([dense_grad]),
        "dense step incl. building the dense gradient": build_and_step,
        "sparse (dense-equivalent)": lambda: equivalent.step([sparse]),
        "sparse lazy": lambda: lazy.step([sparse]),
    }
    for fn in cases.values():
        fn()
    times = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    base = np.median(times["dense step (gradient already dense)"])
    for name, samples in times.items():
        t = np.median(samples)
        print(f"{name:46s} {t * 1e3:8.2f} ms   {base / t:5.2f}x vs the dense step")


if __name__ == "__main__":
    main()
