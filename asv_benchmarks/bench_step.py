"""Step time over size x dtype x option, and effective bandwidth against the roofline."""

import numpy as np

from numba_adam.bench import median_seconds, same_bytes_parallel, same_bytes_serial
from numba_adam._config import PARALLEL_MIN_ELEMENTS

from .common import bytes_per_param, warm_optimizer


class StepTime:
    params = ([10_000, 1_000_000, 10_000_000], ["float32", "float64"],
              ["adam", "amsgrad", "adamw", "l2", "clipnorm"])
    param_names = ["size", "dtype", "option"]

    def setup(self, size, dtype, option):
        self.buf, self.opt = warm_optimizer(size, dtype, option)

    def time_step(self, size, dtype, option):
        self.opt.step()


class Bandwidth:
    """Seconds per GB moved (lower is better) and time relative to the roofline kernel."""

    params = ([1_000_000, 10_000_000], ["float32"], ["adam", "amsgrad"])
    param_names = ["size", "dtype", "option"]
    unit = "s/GB"

    def setup(self, size, dtype, option):
        self.buf, self.opt = warm_optimizer(size, dtype, option)
        rng = np.random.default_rng(1)
        self.arrays = [rng.standard_normal(size).astype(dtype) for _ in range(4)]
        self.v_max = np.zeros(size if option == "amsgrad" else 0, dtype)
        self.kernel = same_bytes_parallel if size >= PARALLEL_MIN_ELEMENTS else same_bytes_serial
        self.kernel(*self.arrays, self.v_max)

    def track_seconds_per_gb(self, size, dtype, option):
        return median_seconds(self.opt.step, 15) / (size * bytes_per_param(dtype, option) / 1e9)

    def track_time_over_roofline(self, size, dtype, option):
        """numba_adam's step time divided by the same-bytes kernel's (1.0 is the bus limit)."""
        ours, roof = [], []
        for _ in range(15):   # interleaved: memory speed drifts
            ours.append(median_seconds(self.opt.step, 1))
            roof.append(median_seconds(lambda: self.kernel(*self.arrays, self.v_max), 1))
        return float(np.median(ours) / np.median(roof))

    track_time_over_roofline.unit = "ratio"
