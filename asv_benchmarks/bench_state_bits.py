"""16- and 8-bit optimizer state: step time, bytes moved, speed against 32-bit state, state
memory, and each format's compute cost per element (the input of the README's model)."""

import numpy as np

import numba_adam
from numba_adam.bench import SameBytes, bytes_per_param, median_seconds

from .common import roofline_ratio, warm_optimizer


class StateBits:
    params = ([1_000_000, 10_000_000], [32, 16, 8])
    param_names = ["size", "state_bits"]

    def setup(self, size, state_bits):
        self.buf, self.opt = warm_optimizer(size, state_bits=state_bits)
        self.base_buf, self.base = warm_optimizer(size, state_bits=32)
        self.roofline = SameBytes(size, state_bits=state_bits)
        for _ in range(10):   # past the serial/split trial of all three
            self.opt.step()
            self.base.step()
            self.roofline()

    def time_step(self, size, state_bits):
        self.opt.step()

    def track_seconds_per_gb(self, size, state_bits):
        moved = size * bytes_per_param(np.float32, False, state_bits)
        return median_seconds(self.opt.step, 15) / (moved / 1e9)

    track_seconds_per_gb.unit = "s/GB"

    def track_speed_over_32_bit_state(self, size, state_bits):
        """32-bit state's step time over this format's, interleaved (higher is better)."""
        ours, base = [], []
        for _ in range(9):
            ours.append(median_seconds(self.opt.step, 3))
            base.append(median_seconds(self.base.step, 3))
        return float(np.median(base) / np.median(ours))

    track_speed_over_32_bit_state.unit = "ratio"

    def track_time_over_roofline(self, size, state_bits):
        """Step time over that of the same-bytes kernel of this format (its codes and block
        scales): 1.0 is the memory-bus limit."""
        return roofline_ratio(self.opt.step, self.roofline)

    track_time_over_roofline.unit = "ratio"

    def track_state_bytes_per_param(self, size, state_bits):
        return self.opt.state_nbytes / size

    track_state_bytes_per_param.unit = "bytes"


class StateBitsComputeCost:
    """Nanoseconds per element on one thread with the model in cache: the difference of
    two sizes, so per-step overheads cancel."""

    params = [32, 16, 8]
    param_names = ["state_bits"]
    sizes = (1 << 12, 1 << 15)

    def setup(self, state_bits):
        self.threads = numba_adam.get_num_threads()
        numba_adam.set_num_threads(1)
        self.opts = [warm_optimizer(n, state_bits=state_bits)[1] for n in self.sizes]

    def teardown(self, state_bits):
        numba_adam.set_num_threads(self.threads)

    def track_ns_per_element(self, state_bits):
        small, large = (median_seconds(opt.step, 200) for opt in self.opts)
        return (large - small) / (self.sizes[1] - self.sizes[0]) * 1e9

    track_ns_per_element.unit = "ns"
