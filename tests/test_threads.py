"""Results do not depend on the number of Numba threads."""

import numpy as np
import pytest

import numba_adam
from cases import with_each_thread_count


@pytest.mark.parametrize("amsgrad", [False, True])
def test_one_and_two_threads_give_identical_results(amsgrad):
    rng = np.random.default_rng(5)
    init = {"w": rng.standard_normal((200, 300)).astype(np.float32),
            "b": rng.standard_normal(70_001).astype(np.float32)}
    grads = [rng.standard_normal(130_001).astype(np.float32) for _ in range(3)]

    def run():
        buf = numba_adam.ParamBuffer(init)
        opt = numba_adam.Adam(buf, lr=1e-2, amsgrad=amsgrad, weight_decay=0.01)
        for g in grads:
            buf.grad[:] = g
            opt.step()
        return buf.data.copy()

    one, two = with_each_thread_count(run)
    np.testing.assert_array_equal(one, two)
