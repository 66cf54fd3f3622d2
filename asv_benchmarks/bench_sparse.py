"""Sparse row updates of an embedding table against the dense update."""

import numpy as np

import numba_adam
from numba_adam import IndexedSlices


class SparseRows:
    params = (["dense", "dense-equivalent", "lazy"],)
    param_names = ["mode"]

    def setup(self, mode):
        rng = np.random.default_rng(0)
        rows, cols, touched = 100_000, 64, 1_000
        table = rng.standard_normal((rows, cols)).astype(np.float32)
        idx = rng.integers(0, rows, touched)
        self.grad = IndexedSlices(rng.standard_normal((touched, cols)).astype(np.float32), idx,
                                  (rows, cols))
        if mode == "dense":
            self.grad = self.grad.to_dense()
        self.opt = numba_adam.Adam([{"params": [table], "lazy_sparse": mode == "lazy"}])
        self.opt.step([self.grad])

    def time_step(self, mode):
        self.opt.step([self.grad])
