"""Checkpoint save and load, and peak memory of an optimizer."""

import os
import tempfile

import numpy as np

import numba_adam
from numba_adam.bench import median_seconds

from .common import warm_optimizer


class Checkpoint:
    """Save and load of an AMSGrad optimizer (3 state arrays, + params): times, and MB/s
    against np.save + fsync / np.load of the same bytes measured in setup, which stays
    comparable across machines and disks."""

    params = ([1_000_000, 10_000_000], [False, True])
    param_names = ["size", "with_params"]
    repeats = 5

    def setup(self, size, with_params):
        self.buf, self.opt = warm_optimizer(size, "float32", "amsgrad")
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "bench.ckpt")
        self.npy = os.path.join(self.dir, "same_bytes.npy")
        state = self.opt.tensor_state(0)
        self.arrays = [a for a in state if a is not None] + ([self.buf.data] if with_params
                                                              else [])
        self.mb = sum(a.nbytes for a in self.arrays) / 1e6
        self.opt.save(self.path, params=with_params)
        self._npy_save()

    def teardown(self, size, with_params):
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def _npy_save(self):
        with open(self.npy, "wb") as f:
            for a in self.arrays:
                np.save(f, a)
            f.flush()
            os.fsync(f.fileno())

    def _npy_load(self):
        with open(self.npy, "rb") as f:
            for _ in self.arrays:
                np.load(f)

    def time_save(self, size, with_params):
        self.opt.save(self.path, params=with_params)

    def time_load(self, size, with_params):
        self.opt.load(self.path)

    def track_save_mb_per_s(self, size, with_params):
        return self.mb / median_seconds(lambda: self.opt.save(self.path, params=with_params),
                                        self.repeats)

    def track_load_mb_per_s(self, size, with_params):
        return self.mb / median_seconds(lambda: self.opt.load(self.path), self.repeats)

    def track_save_time_over_np_save_fsync(self, size, with_params):
        ours = median_seconds(lambda: self.opt.save(self.path, params=with_params), self.repeats)
        return ours / median_seconds(self._npy_save, self.repeats)

    def track_load_time_over_np_load(self, size, with_params):
        ours = median_seconds(lambda: self.opt.load(self.path), self.repeats)
        return ours / median_seconds(self._npy_load, self.repeats)

    track_save_mb_per_s.unit = track_load_mb_per_s.unit = "MB/s"
    track_save_time_over_np_save_fsync.unit = track_load_time_over_np_load.unit = "ratio"


class Memory:
    """Peak memory of building an optimizer and stepping it: state buffers + O(tensors)."""

    params = ([1_000_000],)
    param_names = ["size"]

    def setup(self, size):
        warm_optimizer(1000)   # kernels loaded before measuring

    def peakmem_optimizer_and_100_steps(self, size):
        buf = numba_adam.ParamBuffer({"w": np.zeros(size, np.float32)})
        opt = numba_adam.Adam(buf)
        for _ in range(100):
            opt.step()
