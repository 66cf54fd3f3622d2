"""numba_adam's threads: Numba's own ``parallel=True`` kernels, on its TBB threading layer.

Why TBB and nothing else: TBB's idle workers sleep, so a training loop's
next BLAS call gets the cores back, and its launches are thread- and
fork-safe.  Numba's OpenMP layer spins after every launch (libgomp's
default): in a training loop those threads take the cores from the next
matmul (a 68k-parameter loop iteration measured 20x slower), and the usual
fix, ``OMP_WAIT_POLICY=passive``, is process-wide and slows every other
OpenMP library.  The workqueue layer wakes slowly and aborts when two Python
threads launch at once.

So numba_adam starts Numba's threading layer only when it will be TBB, and
only at the first step that shares work out (never at import).  With pip,
the ``tbb`` wheel puts ``libtbb.so.12`` in ``<prefix>/lib``, where the
loader does not look; numba_adam loads it from there by its path first,
so Numba's own loader finds it already in the process, with no environment
variable set.  Where TBB cannot load, where ``NUMBA_THREADING_LAYER`` asks
for another layer, or where the process already runs another one (the
user's own ``parallel=True`` code started OpenMP, say), every step runs
serially on the calling thread: correct, and as fast as one core allows.
``layer_report()`` (shown by ``numba-adam info``) says which applies.

The thread count is ``set_num_threads(n)``, by default ``NUMBA_NUM_THREADS``
(the CPUs this process may use).  A threaded kernel sets Numba's thread mask
(which is per calling thread) to it for its own launch and restores the
caller's after, so numba_adam's count and the user's ``numba.set_num_threads``
do not leak into each other.
"""

from __future__ import annotations

import ctypes
import threading
from importlib import metadata
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# The thread count, in an array so that compiled code (``numba_adam.jit`` handles) reads
# the current value without a call back into Python.
THREAD_COUNT = np.zeros(1, dtype=np.int64)
# Launches over fewer elements run serially: waking TBB's sleeping workers costs 6-9 us
# on a 2-core VM (a 16k-element same-bytes prange took 9.8 us, serially 4.0), the Adam
# arithmetic of 16k-20k elements on one core; at 6.6e4 two threads won (23 against 27 us).
THREADED_FROM = 1 << 16
# Oldest TBB that Numba's layer accepts (TBB_runtime_interface_version).
OLDEST_TBB_INTERFACE = 12060
TBB_LIBRARY_NAMES = ("libtbb.so.12", "libtbb.12.dylib", "tbb12.dll")

_choice_lock = threading.Lock()
_layer: str | None = None      # "tbb" once chosen, else None
_reason = "not chosen yet: the first step that shares out work chooses"
_chosen = False


def _max_threads() -> int:
    import numba
    return max(1, int(numba.config.NUMBA_NUM_THREADS))


THREAD_COUNT[0] = _max_threads()


def get_num_threads() -> int:
    """Threads numba_adam's CPU kernels use (the caller's thread included)."""
    return int(THREAD_COUNT[0])


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (1 .. NUMBA_NUM_THREADS) for numba_adam's CPU kernels from the next
    step on; the user's own Numba thread count is not changed."""
    top = _max_threads()
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= top:
        raise ValueError(f"the number of threads must be an integer >= 1 and at most "
                         f"NUMBA_NUM_THREADS ({top}), got {n!r}")
    THREAD_COUNT[0] = int(n)


def tbb_library() -> Path | None:
    """Where the ``tbb`` package installed its runtime library, if it is installed."""
    try:
        files = metadata.files("tbb") or ()
    except metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name in TBB_LIBRARY_NAMES:
            path = Path(entry.locate()).resolve()
            if path.is_file():
                return path
    return None


def _load_tbb() -> str | None:
    """Load a TBB runtime new enough for Numba's layer; None, or why it could not."""
    path = tbb_library()
    try:
        library = ctypes.CDLL(str(path) if path is not None else TBB_LIBRARY_NAMES[0])
    except OSError as exc:
        return f"the TBB library does not load ({exc}); pip install tbb"
    version = library.TBB_runtime_interface_version
    version.restype = ctypes.c_int
    if version() < OLDEST_TBB_INTERFACE:
        return (f"TBB interface {version()} is older than Numba needs "
                f"({OLDEST_TBB_INTERFACE}); pip install -U tbb")
    try:
        from numba.np.ufunc import tbbpool  # noqa: F401  (Numba's TBB layer module)
    except ImportError as exc:
        return f"Numba's TBB layer does not load ({exc})"
    return None


def _tbb_comes_first() -> bool:
    """Whether Numba's configuration starts TBB when TBB loads."""
    import numba
    wanted = str(numba.config.THREADING_LAYER).lower()
    if wanted in ("tbb", "safe", "threadsafe", "forksafe"):
        return True
    return wanted == "default" and list(numba.config.THREADING_LAYER_PRIORITY)[:1] == ["tbb"]


def _running_layer() -> str | None:
    import numba
    try:
        return numba.threading_layer()
    except ValueError:              # Numba has not started a threading layer yet
        return None


def _choose() -> tuple[str | None, str]:
    import numba
    running = _running_layer()
    if running is not None:
        if running == "tbb":
            return "tbb", "Numba's TBB layer (already started in this process)"
        return None, (f"serial: this process already runs Numba's {running!r} layer, and "
                      f"numba_adam shares work out on TBB only")
    if not _tbb_comes_first():
        return None, (f"serial: NUMBA_THREADING_LAYER={numba.config.THREADING_LAYER!r} "
                      f"asks for a layer other than TBB")
    problem = _load_tbb()
    if problem is not None:
        return None, f"serial: {problem}"
    numba.get_num_threads()         # starts Numba's layer now, so it can be checked
    running = _running_layer()
    if running != "tbb":
        return None, f"serial: Numba started its {running!r} layer instead of TBB"
    path = tbb_library()
    return "tbb", f"Numba's TBB layer ({path if path else 'libtbb from the loader path'})"


def parallel_layer() -> str | None:
    """"tbb" where numba_adam's threaded kernels may run, else None (serial kernels).

    Decided once, at the first call: that call may load TBB and start Numba's layer.
    """
    global _layer, _reason, _chosen
    if not _chosen:
        with _choice_lock:
            if not _chosen:
                _layer, _reason = _choose()
                _chosen = True
    return _layer


@njit(inline="always")
def worth_sharing(elements, units, threads):
    """Whether a launch over ``elements`` elements in ``units`` independent pieces is worth
    sharing out over ``threads`` threads (also called from compiled code)."""
    return elements >= THREADED_FROM and units > 1 and threads > 1


def threaded(elements: int, units: int) -> bool:
    """Whether a launch shares out over numba_adam's threads now (``worth_sharing``, and
    the process has a TBB layer: the first call that is worth it chooses)."""
    return (worth_sharing.py_func(elements, units, THREAD_COUNT[0])
            and parallel_layer() is not None)


def layer_report(choose: bool = False) -> str:
    """Which layer numba_adam's kernels run on, and why; ``choose``: choose now if not yet
    chosen (which may start Numba's layer), else only say what the choice would be."""
    if choose:
        parallel_layer()
    if _chosen:
        return _reason
    running = _running_layer()
    if running is not None and running != "tbb":
        return f"serial: this process already runs Numba's {running!r} layer"
    if not _tbb_comes_first():
        return "serial: NUMBA_THREADING_LAYER asks for a layer other than TBB"
    path = tbb_library()
    found = f"from {path}" if path is not None else "from the loader's search path"
    return f"Numba's TBB layer, loaded {found} at the first threaded step"


# -- Numba's thread mask and chunk size, from compiled code ------------------------
# Calls by symbol name (what Numba's own parfor code does), so kernels that use them
# stay cacheable; the symbols exist once Numba's layer is started, which compiling or
# loading a parallel=True kernel does.
def _call_layer(builder, name: str, args: list) -> ir.Value:
    """Call Numba's layer function ``name``, declared as Numba's parfor code declares it
    (integers as intp), so declarations in one module agree."""
    i64 = ir.IntType(64)
    returns = i64 if name.startswith("get_") else ir.VoidType()
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(returns, [i64] * len(args)), name)
    return builder.call(fn, args)


def _getter(name: str):
    @intrinsic
    def get(typingctx):
        def codegen(context, builder, signature, args):
            return _call_layer(builder, name, [])
        return types.int64(), codegen
    get.__doc__ = f"Numba's ``{name}()`` of the calling thread, from compiled code."
    return get


def _setter(name: str):
    @intrinsic
    def set_(typingctx, n):
        def codegen(context, builder, signature, args):
            _call_layer(builder, name, [args[0]])
            return context.get_dummy_value()
        return types.none(types.int64), codegen
    set_.__doc__ = f"Numba's ``{name}(n)`` for the calling thread, unchecked."
    return set_


thread_mask, chunk_size = _getter("get_num_threads"), _getter("get_parallel_chunksize")
set_thread_mask, set_chunk_size = _setter("set_num_threads"), _setter("set_parallel_chunksize")


@njit(inline="always")
def enter(threads):
    """Start of a threaded kernel: numba_adam's thread count and one work unit per task
    (TBB balances them as threads free up); returns the caller's settings."""
    saved = (thread_mask(), chunk_size())
    set_thread_mask(threads)
    set_chunk_size(1)
    return saved


@njit(inline="always")
def leave(saved):
    """End of a threaded kernel: the caller's thread count and chunk size again."""
    set_thread_mask(saved[0])
    set_chunk_size(saved[1])
