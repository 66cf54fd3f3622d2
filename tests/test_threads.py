"""numba_adam's threads: results independent of their number and of the threading layer;
idle threads sleep; the process is left as it was."""

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

    one, *more = with_each_thread_count(run)
    assert more
    for other in more:
        np.testing.assert_array_equal(one, other)


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
    import numba
    top = numba.config.NUMBA_NUM_THREADS
    for bad in (0, -1, 1.5, True, "2", top + 1):
        with pytest.raises(ValueError, match="integer >= 1 and at most NUMBA_NUM_THREADS"):
            numba_adam.set_num_threads(bad)
    assert numba_adam.get_num_threads() <= top


def _in_subprocess(code, env=None, *args):
    """Run ``code`` (with ``args`` as sys.argv[1:]) in a fresh interpreter; its stdout
    lines."""
    import os
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=600, env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()


GOOD_NEIGHBOUR = """
import os, time
import numpy as np
before = dict(os.environ)
import numba
import numba_adam
try:
    numba.threading_layer()
    raise AssertionError("importing numba_adam started a threading layer")
except ValueError:
    pass
small = numba_adam.ParamBuffer({"w": np.zeros(1000, np.float32)})
numba_adam.Adam(small).step()
try:
    numba.threading_layer()
    raise AssertionError("a small step started a threading layer")
except ValueError:
    pass
numba.set_num_threads(1)                 # the user's own count, and chunk size
numba.set_parallel_chunksize(7)
buf = numba_adam.ParamBuffer({"w": np.zeros(2_000_000, np.float32)})
opt = numba_adam.Adam(buf)
opt.global_clipnorm = 1.0
numba_adam.set_num_threads(2)
for _ in range(3):
    buf.grad[:] = 1.0
    opt.step()
assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())
assert numba.threading_layer() == "tbb", numba.threading_layer()
assert numba.get_num_threads() == 1 and numba.get_parallel_chunksize() == 7
cpu = time.process_time()
time.sleep(0.3)
print(time.process_time() - cpu)
"""


def test_importing_and_stepping_leaves_the_process_as_it_was():
    """No environment variable set; no threading layer until a step shares out, then TBB;
    the user's Numba thread count and chunk size as they set them; the workers asleep
    between steps (no CPU time while the process idles)."""
    assert float(_in_subprocess(GOOD_NEIGHBOUR)[-1]) < 0.05


FALLBACK = """
import hashlib, sys
import numpy as np
import numba
case = sys.argv[1] if len(sys.argv) > 1 else ""
from numba_adam import _threads
if case == "no tbb":                      # as if the tbb package were missing
    _threads.tbb_library = lambda: None
    _threads.TBB_LIBRARY_NAMES = ("libtbb-not-installed.so.12",)
elif case == "other layer running":      # the user's own parallel code started workqueue
    numba.config.THREADING_LAYER = "workqueue"
    @numba.njit(parallel=True)
    def users(x):
        for i in numba.prange(x.size):
            x[i] += 1.0
    users(np.zeros(100))
    numba.config.THREADING_LAYER = "default"
import numba_adam
numba_adam.set_num_threads(2)
rng = np.random.default_rng(3)
buf = numba_adam.ParamBuffer({"w": rng.standard_normal((300, 400)),
                              "b": rng.standard_normal(90_001)}, np.float32)
opt = numba_adam.Adam(buf, lr=1e-2, weight_decay=0.1)
opt.global_clipnorm = 10.0
for _ in range(3):
    buf.grad[:] = rng.standard_normal(buf.size)
    opt.step()
print(_threads.parallel_layer())
print(_threads.layer_report())
try:
    print(numba.threading_layer())
except ValueError:
    print("no layer")
print(hashlib.sha256(buf.data.tobytes()).hexdigest())
"""


@pytest.mark.parametrize("case, env, layer_after", [
    ("no tbb", {}, "no layer"),
    ("", {"NUMBA_THREADING_LAYER": "omp"}, "no layer"),
    ("other layer running", {}, "workqueue"),
])
def test_where_tbb_is_not_to_be_had_steps_run_serially_with_the_same_results(case, env,
                                                                          layer_after):
    """TBB missing, another layer asked for, or another layer already running: serial
    kernels (no spinning pool started), and the same bits as on TBB's threads."""
    threaded = _in_subprocess(FALLBACK)
    assert threaded[0] == "tbb" and threaded[2] == "tbb"
    fallback = _in_subprocess(FALLBACK, env, case)
    assert fallback[0] == "None" and fallback[1].startswith("serial: "), fallback
    assert fallback[2] == layer_after
    assert fallback[3] == threaded[3]


def test_three_and_four_threads_give_the_results_of_one():
    code = """
import hashlib, numpy as np, numba_adam
rng = np.random.default_rng(4)
init = {"w": rng.standard_normal((700, 300)), "b": rng.standard_normal(33_333)}
grads = [rng.standard_normal(243_333).astype(np.float32) for _ in range(3)]
for threads in (1, 3, 4):
    numba_adam.set_num_threads(threads)
    buf = numba_adam.ParamBuffer(init, np.float32)
    opt = numba_adam.Adam(buf, lr=1e-2, amsgrad=True)
    for g in grads:
        buf.grad[:] = g
        opt.step()
    print(hashlib.sha256(buf.data.tobytes()).hexdigest())
"""
    one, three, four = _in_subprocess(code, {"NUMBA_NUM_THREADS": "4"})
    assert one == three == four


def _big_run(seed):
    rng = np.random.default_rng(seed)
    buf = numba_adam.ParamBuffer({"w": rng.standard_normal(1 << 23).astype(np.float32)})
    opt = numba_adam.Adam(buf, lr=1e-3)      # big enough that every step shares out
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


def test_a_forked_child_steps_on_its_own_threads():
    import os
    expected = _big_run(3)
    pid = os.fork()
    if pid == 0:   # the parent's TBB workers do not exist here
        ok = np.array_equal(_big_run(3), expected)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
