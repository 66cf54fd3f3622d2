"""Checkpoint save and load, and peak memory of an optimizer."""

import os
import tempfile

import numpy as np

import numba_adam

from .common import warm_optimizer


class Checkpoint:
    params = ([1_000_000], [False, True])
    param_names = ["size", "with_params"]

    def setup(self, size, with_params):
        self.buf, self.opt = warm_optimizer(size, "float32", "amsgrad")
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "bench.ckpt")
        self.opt.save(self.path, params=with_params)

    def teardown(self, size, with_params):
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def time_save(self, size, with_params):
        self.opt.save(self.path, params=with_params)

    def time_load(self, size, with_params):
        self.opt.load(self.path)


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
