"""Checkpoint save/load time of a 1e7-parameter optimizer against np.save/np.load of the
same arrays, and the file size against the raw bytes.

    python tools/measure_checkpoint_io.py [--size 1e7] [--repeats 5]
"""

import argparse
import os
import shutil
import tempfile

import numpy as np

import numba_adam
from numba_adam.bench import median_seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=float, default=1e7)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = int(args.size)
    folder = tempfile.mkdtemp(dir=".")
    try:
        buf = numba_adam.ParamBuffer({"w": np.random.default_rng(0).random(n)})
        opt = numba_adam.Adam(buf)
        buf.grad[:] = 1
        opt.step()
        state = opt.tensor_state(0)._asdict()
        path = os.path.join(folder, "run.ckpt")

        def npy_save(names):
            arrays = dict(state, params=buf.data)   # the same bytes as the checkpoint
            for name in names:
                np.save(os.path.join(folder, f"{name}.npy"), arrays[name])

        def npy_load(names):
            for name in names:
                np.load(os.path.join(folder, f"{name}.npy"))

        plain, full = ["exp_avg", "exp_avg_sq"], ["exp_avg", "exp_avg_sq", "params"]
        rows = [
            ("save (state)", lambda: opt.save(path), lambda: npy_save(plain)),
            ("load (state)", lambda: opt.load(path), lambda: npy_load(plain)),
            ("save (state+params)", lambda: opt.save(path, params=True), lambda: npy_save(full)),
            ("load (state+params)", lambda: opt.load(path), lambda: npy_load(full)),
        ]
        for name, ours, theirs in rows:
            a, b = median_seconds(ours, args.repeats), median_seconds(theirs, args.repeats)
            print(f"{name:22s} ours {a * 1e3:7.1f} ms   np.save/np.load {b * 1e3:7.1f} ms   "
                  f"ratio {a / b:.2f}")
        raw = 3 * n * buf.data.itemsize
        size = os.path.getsize(path)
        print(f"file {size} bytes, raw arrays {raw} bytes: +{size - raw} bytes")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
