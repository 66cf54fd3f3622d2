"""numba_adam's threads: results independent of their number; idle threads sleep; the
process is left as it was."""

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

    one, two, three = with_each_thread_count(run)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, three)


def test_clipping_and_sparse_rows_do_not_depend_on_the_thread_count():
    rng = np.random.default_rng(6)
    table = rng.standard_normal((3000, 64))
    dense = rng.standard_normal(100_000)
    rows = rng.choice(3000, 700, replace=False)
    values = rng.standard_normal((700, 64))

    def run():
        out = []
        for lazy in (False, True):
            t, d = table.copy(), dense.copy()
            opt = numba_adam.Adam([{"params": [t], "lazy_sparse": lazy, "clipnorm": 5.0},
                                   {"params": [d]}], lr=1e-2)
            opt.global_clipnorm = 3.0
            for _ in range(2):
                opt.step([numba_adam.IndexedSlices(values, rows, t.shape), dense])
            out += [t, d]
        return out

    for results in zip(*with_each_thread_count(run)):
        for r in results[1:]:
            np.testing.assert_array_equal(results[0], r)


def test_set_num_threads_checks_its_argument():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="integer >= 1"):
            numba_adam.set_num_threads(bad)


GOOD_NEIGHBOUR = """
import os, time, resource, sys
import numpy as np
before = dict(os.environ)
import numba_adam
buf = numba_adam.ParamBuffer({"w": np.zeros(2_000_000, np.float32)})
opt = numba_adam.Adam(buf)
opt.global_clipnorm = 1.0
numba_adam.set_num_threads(2)
for _ in range(3):
    buf.grad[:] = 1.0
    opt.step()
assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())
from numba.np.ufunc import parallel
assert not parallel._is_initialized, "numba's threading layer was started"
cpu = time.process_time()
time.sleep(0.3)
print(time.process_time() - cpu)
"""


def test_importing_and_stepping_leaves_the_process_as_it_was():
    """No environment variable set, Numba's threading layer not started, and the worker
    threads asleep between steps (no CPU time while the process idles)."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", GOOD_NEIGHBOUR], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(out.stdout.strip()) < 0.05, out.stdout


def _count_units_kernel():
    """A range kernel that adds 1 to ``out`` over the units it gets or claims, and records
    in ``split[0]`` whether it ran from a schedule."""
    from numba import njit

    from numba_adam import _cpu

    @njit(nogil=True)
    def kernel(lo, hi, schedule, out, split):
        split[0] = schedule.size > 0
        a, b = _cpu.claim(schedule, lo, hi, False)
        while a < b:
            out[a:b] += 1
            a, b = _cpu.claim(schedule, lo, hi, True)
    return kernel


def test_splitter_times_both_ways_then_keeps_the_faster(monkeypatch):
    from numba_adam import _threads
    kernel = _count_units_kernel()
    monkeypatch.setattr(_threads, "get_num_threads", lambda: 2)
    weights = np.full(8, _threads.RUN_WEIGHT, np.int64)     # 8 runs of one unit
    out, split = np.zeros(8), np.zeros(1, np.bool_)
    small = _threads.Splitter(_threads.SERIAL_BELOW - 1, weights)
    large = _threads.Splitter(_threads.SPLIT_FROM, weights)
    middle = _threads.Splitter(_threads.SERIAL_BELOW, weights)
    modes = {s: [] for s in (small, large, middle)}
    for _ in range(_threads.TRIAL_LAUNCHES + 1):
        for s in (small, large, middle):
            s.launch(kernel, out, split)
            modes[s].append(bool(split[0]))
    np.testing.assert_array_equal(out, 3 * (_threads.TRIAL_LAUNCHES + 1))  # each unit once
    assert not any(modes[small]) and all(modes[large])
    assert not small.split_chosen and large.split_chosen
    assert set(modes[middle]) == {True, False}        # the middle one tried both
    middle.launch(kernel, out, split)
    assert bool(split[0]) == middle.split_chosen


def test_schedule_runs_hold_at_least_the_run_weight():
    from numba_adam import _threads
    weights = [10] * 5 + [_threads.RUN_WEIGHT] * 2 + [_threads.RUN_WEIGHT - 1, 1, 3]
    schedule = _threads.schedule_of(weights)
    assert schedule[0] == 0
    edges = schedule[1:].tolist()
    assert edges[0] == 0 and edges[-1] == len(weights)
    runs = [sum(weights[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    assert all(r >= _threads.RUN_WEIGHT for r in runs[:-1]) and runs[-1] > 0


def test_a_late_worker_leaves_its_share_to_the_caller():
    """With the pool busy (another thread's launch), a split launch runs its shares one
    after another on the caller: the first claims every run, and each unit is done once."""
    from numba_adam import _threads
    kernel = _count_units_kernel()
    schedule = _threads.schedule_of(np.full(6, _threads.RUN_WEIGHT))
    out, split = np.zeros(6), np.zeros(1, np.bool_)
    pool = _threads._get_pool(1)
    assert pool.busy.acquire(blocking=False)
    try:
        _threads.run(kernel, [(0, 6, schedule, out, split)] * 2)
    finally:
        pool.busy.release()
    np.testing.assert_array_equal(out, 1)
    schedule[0] = 0
    _threads.run(kernel, [(0, 6, schedule, out, split)] * 2)     # on two threads
    np.testing.assert_array_equal(out, 2)


def _big_run(seed):
    rng = np.random.default_rng(seed)
    buf = numba_adam.ParamBuffer({"w": rng.standard_normal(1 << 23).astype(np.float32)})
    opt = numba_adam.Adam(buf, lr=1e-3)      # >= SPLIT_FROM: every step uses the pool
    for _ in range(3):
        buf.grad[:] = rng.standard_normal(buf.size)
        opt.step()
    return buf.data.copy()


def test_optimizers_stepped_from_two_threads_at_once_give_the_sequential_results():
    import threading
    expected = [_big_run(1), _big_run(2)]
    got = [None, None]

    def work(k):
        got[k] = _big_run(k + 1)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


def test_a_forked_child_gets_its_own_pool():
    import os
    expected = _big_run(3)
    pid = os.fork()
    if pid == 0:   # the parent's workers do not exist here
        ok = np.array_equal(_big_run(3), expected)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
