"""numba_adam's own worker threads: they sleep when idle, so they never take a core from
anyone else.

Why not Numba's ``parallel=True``: its OpenMP pool spins after every launch
(libgomp's default), and in a training loop those spinning threads take the
cores from the next BLAS call: a 68k-parameter loop iteration measured 16x
slower.  The usual fix, ``OMP_WAIT_POLICY=passive``, is process-wide: it
slows every other OpenMP library (torch's fused Adam on small tensors 8x).
So the kernels here are serial ``nogil`` functions over their work, and a
split launch runs one on the calling thread and on each worker at once: each
claims runs of work items from a shared schedule (an atomic counter) until
none are left, and a worker then blocks on a lock (a futex wait in the OS,
using no CPU) until the next launch.  Numba's own threading
layer is never started, and nothing in the process environment changes.

The thread count is ``set_num_threads(n)``, by default Numba's
``NUMBA_NUM_THREADS`` (the CPUs this process may use).  A launch while
another thread is using the pool (two optimizers stepped from two threads)
runs serially on its caller instead of waiting.  After ``os.fork`` the child
starts a new pool on its first parallel launch.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

_lock = threading.Lock()
_pool: _Pool | None = None
_requested: int | None = None


def get_num_threads() -> int:
    """Threads numba_adam's CPU kernels use (the caller's thread included)."""
    global _requested
    if _requested is None:
        import numba
        _requested = max(1, int(numba.config.NUMBA_NUM_THREADS))
    return _requested


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (>= 1) for numba_adam's CPU kernels from the next step on."""
    global _requested
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of threads must be an integer >= 1, got {n!r}")
    _requested = n


class _Pool:
    def __init__(self, workers: int) -> None:
        self.pid = os.getpid()
        self.workers = workers
        self.busy = threading.Lock()
        self._start = [threading.Lock() for _ in range(workers)]
        self._done = [threading.Lock() for _ in range(workers)]
        self._task: list[Any] = [None] * workers
        self._error: list[BaseException | None] = [None] * workers
        for lock in self._start + self._done:
            lock.acquire()
        for k in range(workers):
            threading.Thread(target=self._work, args=(k,), name=f"numba_adam-{k + 1}",
                             daemon=True).start()

    def _work(self, k: int) -> None:
        start, done = self._start[k], self._done[k]
        while True:
            start.acquire()            # sleeps until the next launch
            fn, args = self._task[k]
            self._task[k] = None
            try:
                fn(*args)
            except BaseException as exc:   # handed to the launching thread
                self._error[k] = exc
            finally:
                del fn, args               # keep no caller array alive between launches
                done.release()

    def run(self, fn: Callable[..., Any], shares: Sequence[tuple]) -> None:
        used = len(shares) - 1
        for k in range(used):
            self._task[k] = (fn, shares[k + 1])
            self._start[k].release()
        try:
            fn(*shares[0])
        finally:
            for k in range(used):
                self._done[k].acquire()
        errors = [e for e in self._error[:used] if e is not None]
        self._error[:used] = [None] * used
        if errors:
            raise errors[0]


def _get_pool(workers: int) -> _Pool:
    global _pool
    with _lock:
        if _pool is None or _pool.pid != os.getpid() or _pool.workers < workers:
            _pool = _Pool(workers)   # an old pool's threads stay asleep (daemons)
        return _pool


def run(fn: Callable[..., Any], shares: Sequence[tuple]) -> None:
    """``fn(*share)`` for every share, concurrently: the first on the calling thread.

    ``fn`` must release the GIL (a ``nogil`` Numba function) for the shares to
    run in parallel, and the shares must write disjoint memory.
    """
    if len(shares) == 1:
        fn(*shares[0])
        return
    pool = _get_pool(len(shares) - 1)
    if not pool.busy.acquire(blocking=False):
        for share in shares:         # the pool is in use by another thread
            fn(*share)
        return
    try:
        pool.run(fn, shares)
    finally:
        pool.busy.release()


# A split launch's runs hold at least this much weight (elements): claiming one costs an
# atomic add, so small work items are claimed together.
RUN_WEIGHT = 1 << 15
# The empty schedule: a kernel given it runs its ``lo .. hi`` on the calling thread.
NO_SCHEDULE = np.zeros(0, dtype=np.int64)


def schedule_of(weights: Sequence[int] | Any) -> Any:
    """A launch schedule (see ``_cpu.claim``): ``[0, edges...]``, runs of consecutive units
    of at least ``RUN_WEIGHT`` weight each (the last may be lighter)."""
    edges, run = [0], 0
    for unit, weight in enumerate(weights):
        run += int(weight)
        if run >= RUN_WEIGHT:
            edges.append(unit + 1)
            run = 0
    if edges[-1] != len(weights):
        edges.append(len(weights))
    return np.array([0, *edges], dtype=np.int64)


# Below SERIAL_BELOW elements a launch always runs on the caller (waking a thread costs
# more than half the work: ~50 µs measured on a 2-core VM); from SPLIT_FROM on it is
# always split.  In between, a Splitter times both in its first launches and keeps the
# faster, so the choice is made on this machine, for this model, in the user's own loop
# (where BLAS threads may be holding the other cores).  It times them again after
# FIRST_RETRIAL and then every RETRIAL_EVERY launches, so a choice made under a passing
# load (start-up, say) does not stick.
SERIAL_BELOW = 1 << 16
SPLIT_FROM = 1 << 23
TRIAL_LAUNCHES = 10         # timed launches, alternating split and serial, after one warm-up
SPLIT_MUST_WIN_BY = 0.9     # split only if its best time is under 90% of serial's
RETRIAL_EVERY = 1000
FIRST_RETRIAL = 50          # the first choice is made at start-up, often under load: recheck soon


class Splitter:
    """Runs a kernel over ``weights``' units: serially, or on the caller and the workers at
    once, each claiming runs of units from a shared schedule as it becomes free.

    Claiming rather than cutting equal shares matters because a sleeping worker
    starts late (waking one took ~90 µs on this project's 2-core VM, a fifth of a
    1e6-parameter step) and a shared machine slows one thread at a time: the caller
    starts at once and each thread takes more or less work as it goes.  Results do
    not depend on which thread updates which unit.

    Kernels take ``(lo, hi, schedule, *args)`` and follow ``_cpu.claim``.
    """

    def __init__(self, elements: int, weights: Any) -> None:
        self.elements = elements
        self.weights = weights
        self._threads = 0
        self._schedule = schedule_of(weights)
        self._runs = len(self._schedule) - 2
        self.split_chosen = False
        self._trial: dict[str, list[float]] | None = None
        self._retrial_in: int | None = None

    def _reset(self, threads: int) -> None:
        self._threads = threads
        self._parts = max(1, min(threads, self._runs))
        self._trial = None
        self._retrial_in = None
        self._units = len(self.weights)
        self._always_serial = self._parts == 1 or self.elements < SERIAL_BELOW
        if self._always_serial:
            self.split_chosen = False
        elif self.elements >= SPLIT_FROM:
            self.split_chosen = True
        else:
            self.split_chosen = False
            self._start_trial(FIRST_RETRIAL)

    def _start_trial(self, next_in: int = RETRIAL_EVERY) -> None:
        self._trial = {"serial": [], "split": []}
        self._launches = 0
        self._retrial_in = next_in

    def _follow_thread_count(self) -> None:
        threads = _requested if _requested is not None else get_num_threads()
        if threads != self._threads:
            self._reset(threads)

    def launch(self, kernel: Callable[..., Any], *args: Any) -> None:
        """``kernel`` over every unit, serially or split as chosen (timing both at first)."""
        self._follow_thread_count()
        if self._always_serial:            # the fast path of small models
            kernel(0, self._units, NO_SCHEDULE, *args)
            return
        if self._trial is None:
            self._run(kernel, self.split_chosen, args)
            if self._retrial_in is not None:
                self._retrial_in -= 1
                if self._retrial_in <= 0:
                    self._start_trial()
            return
        self._launches += 1
        split_now = self._launches > 1 and self._launches % 2 == 0
        start = time.perf_counter()
        self._run(kernel, split_now, args)
        if self._launches > 1:
            self._trial["split" if split_now else "serial"].append(time.perf_counter() - start)
        if self._launches > TRIAL_LAUNCHES:
            serial, parallel = min(self._trial["serial"]), min(self._trial["split"])
            self.split_chosen = parallel < SPLIT_MUST_WIN_BY * serial
            self._trial = None

    def launch_as_chosen(self, kernel: Callable[..., Any], *args: Any) -> None:
        """``kernel`` over every unit the way this splitter's launches now run, without
        counting towards its timing (another kernel over the same units)."""
        self._follow_thread_count()
        self._run(kernel, self.split_chosen and not self._always_serial, args)

    def _run(self, kernel: Callable[..., Any], split_now: bool, args: tuple) -> None:
        if not split_now:
            kernel(0, self._units, NO_SCHEDULE, *args)
            return
        self._schedule[0] = 0
        share = (0, self._units, self._schedule) + args
        run(kernel, [share] * self._parts)


def run_shares(kernel: Callable[..., Any], shares: list[tuple[int, int]], args: tuple) -> None:
    if len(shares) == 1:
        kernel(shares[0][0], shares[0][1], *args)
    else:
        run(kernel, [(lo, hi) + args for lo, hi in shares])
