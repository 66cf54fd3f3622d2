"""The many-tensors model (ParamBuffer and plain arrays) and the small-model latency case."""

import numpy as np

import numba_adam
from numba_adam.bench import SameBytes, even_shapes, transformer_shapes

from .common import roofline_ratio


class ManyTensors:
    params = (["paramBuffer", "plain arrays"],)
    param_names = ["storage"]

    def setup(self, storage):
        rng = np.random.default_rng(0)
        shapes = transformer_shapes()
        arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        self.grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        if storage == "paramBuffer":
            buf = numba_adam.ParamBuffer({str(i): a for i, a in enumerate(arrays)})
            buf.grad[:] = rng.standard_normal(buf.size)
            self.opt = numba_adam.Adam(buf)
            self.step = self.opt.step
        else:
            self.opt = numba_adam.Adam(arrays)
            self.step = lambda: self.opt.step(self.grads)
        self.roofline = SameBytes(sum(a.size for a in arrays))
        for _ in range(10):   # past the serial/split trial of both
            self.step()
            self.roofline()

    def time_step(self, storage):
        self.step()

    def track_time_over_roofline(self, storage):
        """Step time over the same-bytes kernel's for the model's total size."""
        return roofline_ratio(self.step, self.roofline)

    track_time_over_roofline.unit = "ratio"


class Latency:
    """10 tensors, 10k parameters: the facade's per-step Python cost."""

    def setup(self):
        buf = numba_adam.ParamBuffer({str(i): np.zeros(s) for i, s in
                                      enumerate(even_shapes(10_000, 10))})
        self.opt = numba_adam.Adam(buf)
        self.opt.step()

    def time_step(self):
        self.opt.step()
