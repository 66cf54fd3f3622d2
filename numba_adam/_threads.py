"""numba_adam's own worker threads: they sleep when idle, so they never take a core from
anyone else.

Why not Numba's ``parallel=True``: its OpenMP pool spins after every launch
(libgomp's default), and in a training loop those spinning threads take the
cores from the next BLAS call: a 68k-parameter loop iteration measured 16x
slower.  The usual fix, ``OMP_WAIT_POLICY=passive``, is process-wide: it
slows every other OpenMP library (torch's fused Adam on small tensors 8x).
So the kernels here are serial ``nogil`` functions over a range of work, and
a launch splits the range over this pool: the calling thread runs the first
share, each worker one more, and a worker then blocks on a lock (a futex
wait in the OS, using no CPU) until the next launch.  Numba's own threading
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


def split(weights: Sequence[int] | Any, parts: int) -> list[tuple[int, int]]:
    """Cut ``range(len(weights))`` into at most ``parts`` contiguous, non-empty ranges of
    about equal total weight."""
    import numpy as np
    weights = np.asarray(weights, dtype=np.int64)
    n = len(weights)
    parts = max(1, min(parts, n))
    if parts == 1:
        return [(0, n)]
    ends = np.cumsum(weights)
    cuts = np.searchsorted(ends, ends[-1] * np.arange(1, parts) / parts, side="left") + 1
    edges = sorted({0, n, *(int(min(max(c, 1), n - 1)) for c in cuts)})
    return list(zip(edges[:-1], edges[1:]))


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
    """Runs a range kernel over ``weights``' units: serially or split over the threads."""

    def __init__(self, elements: int, weights: Any) -> None:
        self.elements = elements
        self.weights = weights
        self._threads = 0
        self.chosen: list[tuple[int, int]] = [(0, len(weights))]
        self._trial: dict[str, list[float]] | None = None
        self._retrial_in: int | None = None

    def _reset(self, threads: int) -> None:
        self._threads = threads
        serial = [(0, len(self.weights))]
        split_shares = split(self.weights, threads) if threads > 1 else serial
        self._candidates = {"serial": serial, "split": split_shares}
        self._trial = None
        self._retrial_in = None
        self._units = len(self.weights)
        self._always_serial = len(split_shares) == 1 or self.elements < SERIAL_BELOW
        if self._always_serial:
            self.chosen = serial
        elif self.elements >= SPLIT_FROM:
            self.chosen = split_shares
        else:
            self.chosen = serial
            self._start_trial(FIRST_RETRIAL)

    def _start_trial(self, next_in: int = RETRIAL_EVERY) -> None:
        self._trial = {"serial": [], "split": []}
        self._launches = 0
        self._retrial_in = next_in

    def launch(self, kernel: Callable[..., Any], *args: Any) -> None:
        """``kernel(lo, hi, *args)`` over every unit."""
        threads = _requested if _requested is not None else get_num_threads()
        if threads != self._threads:
            self._reset(threads)
        if self._always_serial:            # the fast path of small models
            kernel(0, self._units, *args)
            return
        if self._trial is None:
            run_shares(kernel, self.chosen, args)
            if self._retrial_in is not None:
                self._retrial_in -= 1
                if self._retrial_in <= 0:
                    self._start_trial()
            return
        self._launches += 1
        mode = "serial" if self._launches == 1 or self._launches % 2 else "split"
        start = time.perf_counter()
        run_shares(kernel, self._candidates[mode], args)
        if self._launches > 1:
            self._trial[mode].append(time.perf_counter() - start)
        if self._launches > TRIAL_LAUNCHES:
            serial, parallel = min(self._trial["serial"]), min(self._trial["split"])
            self.chosen = self._candidates["split" if parallel < SPLIT_MUST_WIN_BY * serial
                                           else "serial"]
            self._trial = None

    @property
    def split_chosen(self) -> bool:
        """Whether launches are split over threads (after the trial)."""
        return len(self.chosen) > 1


def run_shares(kernel: Callable[..., Any], shares: list[tuple[int, int]], args: tuple) -> None:
    if len(shares) == 1:
        kernel(shares[0][0], shares[0][1], *args)
    else:
        run(kernel, [(lo, hi) + args for lo, hi in shares])
