"""No per-step allocation of parameter-sized arrays; memory does not grow over steps."""

import tracemalloc

import numpy as np
import pytest

import numba_adam

SIZE = 1_000_000


def measure(step, steps=100):
    for _ in range(10):   # warm: kernels loaded, lazily built scratch and caches made
        step()
    # Fill CPython's free lists of small tuples first: tracemalloc counts a freed tuple kept
    # on a free list as allocated, so a list still filling up (2000 tuples of each size)
    # would look like growth.
    spare = [tuple(range(k)) + (object(),) for k in range(20) for _ in range(2000)]
    del spare
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(steps):
            step()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before, peak - before


@pytest.mark.parametrize("case", ["paramBuffer", "plain arrays", "clipping", "sparse"])
def test_steps_allocate_nothing_parameter_sized(case):
    rng = np.random.default_rng(0)
    if case in ("paramBuffer", "clipping"):
        buf = numba_adam.ParamBuffer({"w": rng.standard_normal((SIZE // 100, 100)),
                                      "b": np.zeros(100)})
        buf.grad[:] = rng.standard_normal(buf.size)
        opt = numba_adam.Adam(buf, amsgrad=True)
        if case == "clipping":
            opt.global_clipnorm = 1.0
        step = opt.step
    elif case == "plain arrays":
        params = [rng.standard_normal(SIZE // 10).astype(np.float32) for _ in range(10)]
        grads = [np.ones_like(p) for p in params]
        opt = numba_adam.Adam(params)
        step = lambda: opt.step(grads)                       # noqa: E731
    else:
        table = np.zeros((SIZE // 64, 64), np.float32)
        g = numba_adam.IndexedSlices(np.ones((100, 64), np.float32), np.arange(100),
                                     table.shape)
        opt = numba_adam.Adam([table])
        step = lambda: opt.step([g])                         # noqa: E731
    growth, peak = measure(step)
    assert growth < 8192, f"memory grew by {growth} bytes over 100 steps"
    # the largest temporary is O(tensors or touched rows), far below one parameter copy
    assert peak < 64 * 1024 + (100 * 64 * 4 * 3 if case == "sparse" else 0), peak


def test_optimizer_memory_is_its_state_buffers():
    tracemalloc.start()
    try:
        buf = numba_adam.ParamBuffer({"w": np.zeros(SIZE, np.float32)})
        base, _ = tracemalloc.get_traced_memory()
        opt = numba_adam.Adam(buf, amsgrad=True)
        opt.step()
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    state = 3 * SIZE * 4           # m, v, v_max
    assert state <= used - base < state + 64 * 1024
