"""Checkpoint save/load throughput against np.save (+ fsync) / np.load of the same bytes.

The baseline writes the same arrays one after another into one .npy-style file and
fsyncs it, as a save must to survive a crash; load reads them back into new arrays.
Ours: ``opt.save`` (checksum, fsync, atomic rename) and ``opt.load`` (verify, then copy
into the optimizer's state).  Medians of interleaved repeats, MB/s of array bytes.

    python tools/measure_checkpoint_io.py [--size 1e7] [--repeats 7]
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
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    n = int(args.size)
    folder = tempfile.mkdtemp(dir=".")
    try:
        buf = numba_adam.ParamBuffer({"w": np.random.default_rng(0).random(n)}, np.float32)
        opt = numba_adam.Adam(buf)
        buf.grad[:] = 1
        opt.step()
        state = opt.tensor_state(0)._asdict()
        path = os.path.join(folder, "run.ckpt")
        npy = os.path.join(folder, "run.npy")

        def arrays(with_params):
            chosen = [state["exp_avg"], state["exp_avg_sq"]]
            return chosen + [buf.data] if with_params else chosen

        def npy_save(with_params):
            with open(npy, "wb") as f:
                for a in arrays(with_params):
                    np.save(f, a)
                f.flush()
                os.fsync(f.fileno())

        def npy_load(with_params):
            with open(npy, "rb") as f:
                for _ in arrays(with_params):
                    np.load(f)

        for with_params in (False, True):
            what = "state+params" if with_params else "state"
            mb = sum(a.nbytes for a in arrays(with_params)) / 1e6
            rows = [("save", lambda: opt.save(path, params=with_params),
                     lambda: npy_save(with_params), "np.save+fsync"),
                    ("load", lambda: opt.load(path, params=with_params),
                     lambda: npy_load(with_params), "np.load")]
            for name, ours, theirs, label in rows:
                theirs()
                a, b = median_seconds(ours, args.repeats), median_seconds(theirs, args.repeats)
                print(f"{name} {what:13s} {mb:6.0f} MB  ours {mb / a:6.0f} MB/s   "
                      f"{label} {mb / b:6.0f} MB/s   time ratio {a / b:.2f}")
        raw = 3 * n * buf.data.itemsize
        size = os.path.getsize(path)
        print(f"file {size} bytes, raw arrays {raw} bytes: +{size - raw} bytes")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
