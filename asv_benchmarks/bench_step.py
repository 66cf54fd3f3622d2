"""Step time over size x dtype x option, and effective bandwidth against the roofline."""


from numba_adam.bench import SameBytes, median_seconds

from .common import bytes_per_param, roofline_ratio, warm_optimizer


class StepTime:
    params = ([10_000, 1_000_000, 10_000_000], ["float32", "float64"],
              ["adam", "amsgrad", "adamw", "l2", "clipnorm"])
    param_names = ["size", "dtype", "option"]

    def setup(self, size, dtype, option):
        self.buf, self.opt = warm_optimizer(size, dtype, option)

    def time_step(self, size, dtype, option):
        self.opt.step()


class Bandwidth:
    """Seconds per GB moved (lower is better) and time relative to the same-bytes kernel,
    measured in setup on this machine, so the figure compares across machines."""

    params = ([10_000, 1_000_000, 10_000_000], ["float32"], ["adam", "amsgrad"])
    param_names = ["size", "dtype", "option"]
    unit = "s/GB"

    def setup(self, size, dtype, option):
        self.buf, self.opt = warm_optimizer(size, dtype, option)
        self.roofline = SameBytes(size, dtype, amsgrad=option == "amsgrad")
        for _ in range(10):   # past the serial/split trial of both
            self.opt.step()
            self.roofline()

    def track_seconds_per_gb(self, size, dtype, option):
        return median_seconds(self.opt.step, 15) / (size * bytes_per_param(dtype, option) / 1e9)

    def track_time_over_roofline(self, size, dtype, option):
        """numba_adam's step time divided by the same-bytes kernel's (1.0 is the bus limit)."""
        return roofline_ratio(self.opt.step, self.roofline)

    track_time_over_roofline.unit = "ratio"
