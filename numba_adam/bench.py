"""``numba-adam bench``: numba_adam against NumPy, PyTorch and the memory-bandwidth limit,
fair by construction.

Every implementation runs in its own worker process, with that library's own
default settings (threads, wait policies), and is warmed up before timing.
The workers take samples in turn (A B C, B C A, C A B ...), so drifts in
memory speed and machine load fall on all of them alike; a pause before each
sample lets the previous worker's threads go idle.  Ratios are taken per round
(other / numba_adam in the same round) and reported as the median with the
range over rounds.

Three kinds of case:

- **step**: one optimizer step on its own, against NumPy, PyTorch (``fused``
  and ``foreach``), and a "roofline" kernel that moves the same bytes with no
  arithmetic (read p, g, m, v and write p, m, v, plus v_max with AMSGrad).
  With ``--state-bits 16,8`` each low-bit format runs beside its own roofline
  (uint16 or uint8 codes, and 8-bit's float32 block scales), and, where they
  are installed, bitsandbytes' ``Adam8bit`` and torchao's ``AdamW8bit`` on CPU
  tensors run beside our 8-bit state.
- **loop**: a training-loop iteration (two 256x256 matmuls, then the step),
  against the same loop with a serial same-bytes kernel in place of the step,
  and the in-loop step against the bare step of the same model on one thread.
  The same-bytes kernel's in-loop and bare steps are shown too: what any
  kernel moving these bytes loses between matmuls (caches, clocks after a
  pause) is not the optimizer's doing.
- **neighbour**: PyTorch's fused step and matmul, and NumPy's matmul, in a
  process that imported numba_adam and stepped it, against a process that did
  not.
- **jit** (``--jit``): ``numba_adam.jit.step`` in an ``@njit`` loop against
  ``opt.step()`` from Python, and a per-sample ``step_rows`` against Adam
  written inline (see ``numba_adam._bench_jit``).
- **torch** (``--torch``, on its own): ``numba_adam.torch.Adam`` on torch
  tensors against torch's fused Adam and ``DeepSpeedCPUAdam`` (see
  ``numba_adam._bench_torch``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from numba import prange

from . import _bench_jit, _bench_tables, _bench_torch

# -- the roofline: a kernel that moves exactly an Adam step's bytes -------------
# Written here, on nothing of numba_adam's: a plain prange loop in its own worker
# process, on Numba's TBB layer where the tbb package is installed (numba_adam's own
# steps run there too), else on whatever layer Numba starts by default.
_kernels: dict[str, Any] = {}


def _same_bytes(p, g, m, v, v_max):
    """Reads p, g, m, v (and v_max), writes p, m, v (and v_max): an Adam step's bytes."""
    if v_max.size:
        for i in prange(p.size):
            a = g[i]
            p[i] += a
            m[i] += a
            v[i] += a
            v_max[i] += a
    else:
        for i in prange(p.size):
            a = g[i]
            p[i] += a
            m[i] += a
            v[i] += a


def _same_bytes_codes(p, g, m, v, v_max, absmax):
    """The bytes of a low-bit step: reads p, g and the codes m, v (and v_max), writes p and
    the codes, and reads and writes the float32 block scales (``absmax``: empty for 16-bit
    state)."""
    if v_max.size:
        for i in prange(p.size):
            p[i] += g[i]
            m[i] = ~m[i]
            v[i] = ~v[i]
            v_max[i] = ~v_max[i]
    else:
        for i in prange(p.size):
            p[i] += g[i]
            m[i] = ~m[i]
            v[i] = ~v[i]
    if absmax.size:
        for b in prange(absmax.size):
            absmax[b] += 1


def _same_bytes_kernel(threaded: bool, codes: bool = False):
    """The same-bytes kernel (``codes``: of low-bit state), serial or ``parallel=True``
    (compiled on first use, so importing this module stays light for the workers that time
    other libraries)."""
    if (threaded, codes) not in _kernels:
        from numba import njit
        if threaded:
            _start_tbb_layer()
            # not cached: the serial twin's cache entry has the same function's name
            kernel = njit(nogil=True, parallel=True, fastmath=True, error_model="numpy")
        else:
            kernel = njit(nogil=True, cache=True, fastmath=True, error_model="numpy")
        _kernels[threaded, codes] = kernel(_same_bytes_codes if codes else _same_bytes)
    return _kernels[threaded, codes]


def _start_tbb_layer() -> None:
    """Put the tbb package's library in the process so Numba's default choice is TBB."""
    import ctypes

    from ._threads import tbb_library
    path = tbb_library()
    if path is not None:
        ctypes.CDLL(str(path))


def roofline_layer() -> str:
    """The threading layer the roofline ran on in this process ("none" before it ran)."""
    import numba
    try:
        return numba.threading_layer()
    except ValueError:
        return "none"


class SameBytes:
    """The roofline for ``n`` parameters: a prange loop that moves an Adam step's bytes on
    Numba's threads (``serial=True``: a plain loop on the caller); ``state_bits`` 16 or 8:
    the bytes of that state format (uint16 or uint8 codes, 8-bit's block scales)."""

    def __init__(self, n: int, dtype: Any = np.float32, amsgrad: bool = False,
                 serial: bool = False, rng: Any = None, state_bits: int = 32) -> None:
        rng = rng if rng is not None else np.random.default_rng(1)
        self.arrays = [(rng.standard_normal(n) * 1e-30).astype(dtype) for _ in range(2)]
        state = dtype if state_bits == 32 else {16: np.uint16, 8: np.uint8}[state_bits]
        self.arrays += [np.zeros(n, state), np.zeros(n, state), np.zeros(n if amsgrad else 0,
                                                                          state)]
        if state_bits == 32:
            self.arrays[2:4] = [(rng.standard_normal(n) * 1e-30).astype(dtype)
                                for _ in range(2)]
        else:
            blocks = (n + 255) // 256 if state_bits == 8 else 0    # m's and v's (v_max's)
            self.arrays.append(np.zeros((3 if amsgrad else 2) * blocks, np.float32))
        self._kernel = _same_bytes_kernel(not serial, codes=state_bits != 32)

    def __call__(self) -> None:
        self._kernel(*self.arrays)


# -- model shapes ------------------------------------------------------------
def transformer_shapes(layers: int = 18, d: int = 128, ff: int = 512, vocab: int = 9000,
                       context: int = 512, out: int = 1600) -> list[tuple[int, ...]]:
    """Tensor shapes of a small transformer: 294 tensors, 5.0M parameters by default."""
    shapes: list[tuple[int, ...]] = [(vocab, d), (context, d)]
    for _ in range(layers):
        for _ in range(4):                       # q, k, v, o projections
            shapes += [(d, d), (d,)]
        shapes += [(d,), (d,), (d,), (d,)]       # two layer norms
        shapes += [(d, ff), (ff,), (ff, d), (d,)]
    return shapes + [(d,), (d,), (d, out), (out,)]


def even_shapes(total: int, tensors: int) -> list[tuple[int, ...]]:
    base = total // tensors
    return [(base + (1 if i < total % tensors else 0),) for i in range(tensors)]


def _size(shapes) -> int:
    """Elements in all of ``shapes``."""
    return int(sum(np.prod(s) for s in shapes))


def bytes_per_param(dtype, amsgrad: bool, state_bits: int = 32) -> float:
    """Bytes a step moves per parameter: p read and written, g read, each moment read and
    written (8-bit state: plus its block scales)."""
    return 3 * np.dtype(dtype).itemsize + 2 * _state_bytes_per_param(dtype, amsgrad, state_bits)


def _state_bytes_per_param(dtype, amsgrad: bool, state_bits: int) -> float:
    """State held per parameter: each moment's value (8-bit: plus its share of a scale)."""
    value = {32: np.dtype(dtype).itemsize, 16: 2, 8: 1 + 4 / 256}[state_bits]
    return (3 if amsgrad else 2) * value


STATE_BITS_SUFFIX = {16: ", 16-bit state", 8: ", 8-bit state"}


def state_bits_of(implementation: str) -> int:
    """The state format an implementation name says (32 unless it names 16 or 8 bits)."""
    return next((b for b, s in STATE_BITS_SUFFIX.items() if implementation.endswith(s)), 32)


# -- what a worker process runs ------------------------------------------------
def _numba_adam(shapes, dtype, amsgrad, rng, state_bits=32):
    import numba_adam
    buf = numba_adam.ParamBuffer({str(i): rng.standard_normal(s) for i, s in enumerate(shapes)},
                                 dtype)
    buf.grad[:] = rng.standard_normal(buf.size) * 1e-3
    opt = numba_adam.Adam(buf, lr=1e-6, amsgrad=amsgrad, state_bits=state_bits)
    return opt.step


def _numba_adam_bits(state_bits: int, one_thread: bool = False):
    def make(shapes, dtype, amsgrad, rng):
        if one_thread:
            import numba_adam
            numba_adam.set_num_threads(1)
        return _numba_adam(shapes, dtype, amsgrad, rng, state_bits)
    return make


def _numba_adam_arrays(shapes, dtype, amsgrad, rng):
    import numba_adam
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [(rng.standard_normal(s) * 1e-3).astype(dtype) for s in shapes]
    opt = numba_adam.Adam(params, lr=1e-6, amsgrad=amsgrad)
    return lambda: opt.step(grads)


def _numpy(shapes, dtype, amsgrad, rng):
    """Adam in NumPy with in-place ops (no temporaries beyond one scratch per tensor)."""
    ps = [rng.standard_normal(s).astype(dtype) for s in shapes]
    gs = [(rng.standard_normal(s) * 1e-3).astype(dtype) for s in shapes]
    ms = [np.zeros_like(p) for p in ps]
    vs = [np.zeros_like(p) for p in ps]
    vmaxs = [np.zeros_like(p) for p in ps] if amsgrad else None
    scratch = [np.empty_like(p) for p in ps]
    state = {"t": 0}
    b1, b2, lr, eps = 0.9, 0.999, 1e-6, 1e-8

    def step():
        state["t"] += 1
        t = state["t"]
        step_size = lr / (1 - b1 ** t)
        inv_bc2 = 1 / np.sqrt(1 - b2 ** t)
        for i, (p, g, m, v, s) in enumerate(zip(ps, gs, ms, vs, scratch)):
            m += (1 - b1) * (g - m)
            v *= b2
            np.multiply(g, g, out=s)
            s *= 1 - b2
            v += s
            if vmaxs is not None:
                np.maximum(vmaxs[i], v, out=vmaxs[i])
                np.sqrt(vmaxs[i], out=s)
            else:
                np.sqrt(v, out=s)
            s *= inv_bc2
            s += eps
            np.divide(m, s, out=s)
            s *= step_size
            p -= s
    return step


def _torch(kind: str):
    def make(shapes, dtype, amsgrad, rng):
        import torch
        tdtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
        params = [torch.tensor(rng.standard_normal(s), dtype=tdtype) for s in shapes]
        for p in params:
            p.grad = torch.tensor(rng.standard_normal(tuple(p.shape)) * 1e-3, dtype=tdtype)
        opt = torch.optim.Adam(params, lr=1e-6, amsgrad=amsgrad, **{kind: True})
        return opt.step
    return make


def _roofline(state_bits: int = 32):
    def make(shapes, dtype, amsgrad, rng):
        return SameBytes(_size(shapes), dtype, amsgrad, rng=rng, state_bits=state_bits)
    return make


def _torch_8bit(library: str):
    """bitsandbytes' ``Adam8bit`` or torchao's ``AdamW8bit`` (weight decay 0, so the same
    update) on CPU tensors."""
    def make(shapes, dtype, amsgrad, rng):
        import torch
        if library == "bitsandbytes":
            import bitsandbytes
            optimizer, options = bitsandbytes.optim.Adam8bit, {}
        else:
            from torchao.optim import AdamW8bit as optimizer
            options = {"weight_decay": 0.0, "amsgrad": amsgrad}
        params = [torch.nn.Parameter(torch.tensor(rng.standard_normal(s), dtype=torch.float32))
                  for s in shapes]
        for p in params:
            p.grad = torch.tensor(rng.standard_normal(tuple(p.shape)) * 1e-3,
                                  dtype=torch.float32)
        return optimizer(params, lr=1e-6, **options).step
    return make


STEP_IMPLEMENTATIONS: dict[str, Callable] = {
    "numba_adam": _numba_adam, "numba_adam (plain arrays)": _numba_adam_arrays,
    "numpy": _numpy, "torch fused": _torch("fused"), "torch foreach": _torch("foreach"),
    "roofline": _roofline(),
}
NEEDS_TORCH = {"torch fused", "torch foreach"}
for _bits in STATE_BITS_SUFFIX:
    STEP_IMPLEMENTATIONS[f"numba_adam{STATE_BITS_SUFFIX[_bits]}"] = _numba_adam_bits(_bits)
    STEP_IMPLEMENTATIONS[f"roofline{STATE_BITS_SUFFIX[_bits]}"] = _roofline(_bits)
# Other libraries' 8-bit Adam, timed beside ours where installed (float32 only): the
# module each needs, and whether it has AMSGrad.
OTHER_8BIT = {f"bitsandbytes Adam8bit{STATE_BITS_SUFFIX[8]}": ("bitsandbytes", False),
              f"torchao AdamW8bit{STATE_BITS_SUFFIX[8]}": ("torchao", True)}
for _name, (_module, _) in OTHER_8BIT.items():
    STEP_IMPLEMENTATIONS[_name] = _torch_8bit(_module)
    NEEDS_TORCH.add(_name)
# Compute cost per element of each state format: one thread, the model in cache.
COST_IMPLEMENTATIONS: dict[str, Callable] = {
    f"1 thread{STATE_BITS_SUFFIX.get(b, ', 32-bit state')}": _numba_adam_bits(b, True)
    for b in (32, 16, 8)}
COST_SIZES = (1 << 12, 1 << 15)     # two in-cache sizes: their difference removes overheads


def _loop(make_step):
    """A training-loop iteration: two 256x256 float32 matmuls (NumPy's BLAS), then the step.
    Each call returns (iteration seconds, step seconds)."""
    a = np.random.default_rng(2).standard_normal((256, 256)).astype(np.float32)

    def iteration():
        start = time.perf_counter()
        a @ a
        a @ a
        middle = time.perf_counter()
        make_step()
        end = time.perf_counter()
        return end - start, end - middle
    return iteration


def _loop_numba_adam(shapes, dtype, amsgrad, rng):
    return _loop(_numba_adam(shapes, dtype, amsgrad, rng))


def _loop_same_bytes(shapes, dtype, amsgrad, rng):
    return _loop(SameBytes(_size(shapes), dtype, amsgrad, serial=True, rng=rng))


def _bare_one_thread(shapes, dtype, amsgrad, rng):
    import numba_adam
    numba_adam.set_num_threads(1)
    return _numba_adam(shapes, dtype, amsgrad, rng)


def _bare_same_bytes(shapes, dtype, amsgrad, rng):
    return SameBytes(_size(shapes), dtype, amsgrad, serial=True, rng=rng)


# The bare same-bytes kernel tells how much slower any kernel moving these bytes runs
# between matmuls than back to back (caches and clocks after the pause), so the in-loop
# step's ratio can be read against it.
LOOP_IMPLEMENTATIONS: dict[str, Callable] = {
    "numba_adam in the loop": _loop_numba_adam,
    "serial same-bytes kernel in the loop": _loop_same_bytes,
    "numba_adam bare, 1 thread": _bare_one_thread,
    "serial same-bytes kernel bare": _bare_same_bytes,
}


def _neighbour(what: str, with_numba_adam: bool):
    def make(shapes, dtype, amsgrad, rng):
        if with_numba_adam:   # imported and stepped (threads started) before anything else
            import numba_adam
            buf = numba_adam.ParamBuffer({"w": np.zeros(2_000_000, np.float32)})
            opt = numba_adam.Adam(buf)
            for _ in range(10):
                opt.step()
        if what == "numpy matmul 256":
            x = rng.standard_normal((256, 256)).astype(np.float32)
            return lambda: x @ x
        if what == "user's numba prange, 1e6":
            return _users_parallel_kernel(rng)
        import torch
        if what == "torch matmul 256":
            y = torch.randn(256, 256)
            return lambda: y @ y
        sizes = [1000] * 10 if what == "torch fused, 10 tensors" else [1_000_000]
        params = [torch.randn(n) for n in sizes]
        for p in params:
            p.grad = torch.randn(p.shape) * 1e-3
        return torch.optim.Adam(params, lr=1e-6, fused=True).step
    return make


def _users_parallel_kernel(rng):
    """A user's own ``@njit(parallel=True)`` loop over 1e6 floats, on the layer Numba gives
    it: its default one alone, TBB (started by numba_adam) beside numba_adam."""
    from numba import njit

    @njit(parallel=True)
    def scale_and_shift(x, y):
        for i in prange(x.size):
            y[i] = 0.5 * x[i] + 1.0

    x = rng.standard_normal(1_000_000).astype(np.float32)
    y = np.empty_like(x)
    return lambda: scale_and_shift(x, y)


NEIGHBOUR_MEASUREMENTS = ("torch fused, 10 tensors", "torch fused, 1e6", "torch matmul 256",
                          "numpy matmul 256", "user's numba prange, 1e6")
NEIGHBOUR_IMPLEMENTATIONS: dict[str, Callable] = {}
for _what in NEIGHBOUR_MEASUREMENTS:
    NEIGHBOUR_IMPLEMENTATIONS[_what] = _neighbour(_what, False)
    NEIGHBOUR_IMPLEMENTATIONS[f"{_what}, numba_adam imported"] = _neighbour(_what, True)

ALL_IMPLEMENTATIONS = {**STEP_IMPLEMENTATIONS, **LOOP_IMPLEMENTATIONS,
                       **NEIGHBOUR_IMPLEMENTATIONS, **COST_IMPLEMENTATIONS,
                       **_bench_jit.JIT_IMPLEMENTATIONS, **_bench_torch.TORCH_IMPLEMENTATIONS}
NEEDS_TORCH.update(_bench_torch.TORCH_IMPLEMENTATIONS)


# OpenMP runtimes keep their threads spinning for a while after a parallel region
# (libgomp's default spin, Intel's 200 ms block time): a worker waits this long before
# each sample so that the previous worker's threads are asleep.
PAUSE_SECONDS = 0.25
WARM_UP_CALLS = 80


def worker_main() -> None:
    """A bench worker: one implementation, timed on request (JSON lines on stdin/stdout)."""
    # The replies go to the original stdout; what a library prints (DeepSpeed's build
    # log, say), from Python or C, goes to stderr instead of into the replies.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    setup = json.loads(sys.stdin.readline())
    name, threads = setup["implementation"], setup.get("threads")
    if threads and name in NEEDS_TORCH:
        import torch
        torch.set_num_threads(threads)
    if threads and (name.startswith("numba_adam") or "loop" in name):
        import numba_adam
        numba_adam.set_num_threads(threads)     # the 1-thread bare step sets its own
    fn = ALL_IMPLEMENTATIONS[name](
        [tuple(s) for s in setup["shapes"]], np.dtype(setup["dtype"]), setup["amsgrad"],
        np.random.default_rng(0))
    if threads and name.startswith("roofline"):
        import numba
        numba.set_num_threads(threads)
    # Warm up: compile or load from the cache, and fill caches.
    warm_until, calls = time.perf_counter() + 3.0, 0
    while calls < 3 or (calls < WARM_UP_CALLS and time.perf_counter() < warm_until):
        fn()
        calls += 1
    probe = min(_time_once(fn) for _ in range(3))
    inner = max(1, min(2000, int(setup["seconds"] / max(probe, 1e-7))))
    print(json.dumps({"ready": True, "layer": _layer_of(name)}), file=replies, flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        time.sleep(PAUSE_SECONDS)   # let the previous worker's threads go idle
        parts = []
        start = time.perf_counter()
        for _ in range(inner):
            parts.append(fn())
        total = (time.perf_counter() - start) / inner
        sample = {"seconds": total}
        if parts and isinstance(parts[0], tuple):    # a loop: (iteration, step) each call
            sample = {"seconds": float(np.median([p[0] for p in parts])),
                      "step_seconds": float(np.median([p[1] for p in parts]))}
        print(json.dumps(sample), file=replies, flush=True)


def _layer_of(implementation: str) -> str | None:
    """Which threading layer a worker's implementation ran on (None: not a Numba one)."""
    if implementation.startswith("roofline"):
        return f"Numba's {roofline_layer()} layer"
    if implementation.startswith("numba_adam"):
        from . import _threads
        return _threads.layer_report()
    return None


def _time_once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], None], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn``."""
    return float(np.median([_time_once(fn) for _ in range(repeats)]))


# -- the parent: cases, alternating workers, ratios ----------------------------
@dataclass
class Case:
    name: str
    shapes: list[tuple[int, ...]]
    kind: str = "step"                       # "step", "loop", "neighbour", "cost" or "jit"
    implementations: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes))


@dataclass
class Result:
    case: str
    implementation: str
    params: int
    tensors: int
    seconds: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    layer: str | None = None      # the threading layer it ran on (Numba-based ones)

    @property
    def median(self) -> float:
        return float(np.median(self.seconds))


class _Worker:
    def __init__(self, case: Case, implementation: str, args: argparse.Namespace) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from numba_adam.bench import worker_main; worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._send(dict(implementation=implementation, shapes=case.shapes, dtype=args.dtype,
                        amsgrad=args.amsgrad, seconds=args.seconds, threads=args.threads))
        self.layer = self._receive(f"{case.name}: {implementation} did not start").get("layer")

    def _send(self, message: Any) -> None:
        self.proc.stdin.write((json.dumps(message) if message else "") + "\n")
        self.proc.stdin.flush()

    def _receive(self, what: str) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{what} (worker exited with {self.proc.wait()})")
        return json.loads(line)

    def sample(self) -> dict:
        self._send({"sample": True})
        return self._receive("a bench worker died")

    def close(self) -> None:
        try:
            self._send(None)
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=60)


def run_case(case: Case, args: argparse.Namespace, progress: Callable[[str], None]
             ) -> list[Result]:
    """Time every implementation of ``case`` in its own process, samples alternating."""
    workers: dict[str, _Worker] = {}
    try:
        for name in case.implementations:
            progress(f"{case.name}: starting {name}")
            workers[name] = _Worker(case, name, args)
        results = {name: Result(case.name, name, case.size, len(case.shapes),
                                layer=worker.layer) for name, worker in workers.items()}
        names = list(workers)
        for r in range(args.repeats):
            progress(f"{case.name}: round {r + 1}/{args.repeats}")
            shift = r % len(names)     # rotate, so no one always follows the same worker
            for name in names[shift:] + names[:shift]:
                sample = workers[name].sample()
                results[name].seconds.append(sample["seconds"])
                if "step_seconds" in sample:
                    results[name].step_seconds.append(sample["step_seconds"])
    finally:
        for worker in workers.values():
            worker.close()
    return list(results.values())


def ratio(numerator: Result, denominator: Result, step: bool = False) -> dict[str, float]:
    """numerator / denominator per round: median, min and max."""
    a = numerator.step_seconds if step else numerator.seconds
    b = denominator.seconds
    values = [x / y for x, y in zip(a, b)]
    return dict(median=float(np.median(values)), low=float(min(values)),
                high=float(max(values)))


def _spread(r: dict[str, float]) -> str:
    return f"{r['median']:.2f}x [{r['low']:.2f}-{r['high']:.2f}]"


# -- cases -------------------------------------------------------------------
def torch_cases(args: argparse.Namespace, deepspeed: bool) -> list[Case]:
    """The ``--torch`` cases: one tensor of each size, and the 294-tensor model."""
    names = _bench_torch.implementations(args.amsgrad, deepspeed)
    models = [(f"1 tensor, {n:.0e}".replace("e+0", "e"), [(n,)]) for n in args.size_list]
    if not args.no_models:
        models.append(("294 tensors, 5.0M", transformer_shapes()))
    return [Case(_bench_torch.CASE_PREFIX + label, shapes, "step", names)
            for label, shapes in models]


def build_cases(args: argparse.Namespace, torch_available: bool) -> list[Case]:
    step_impls = [n for n in STEP_IMPLEMENTATIONS if (torch_available or n not in NEEDS_TORCH)
                  and state_bits_of(n) == 32]
    low_bit = [f"{who}{STATE_BITS_SUFFIX[b]}" for b in args.bits_list if b != 32
               for who in ("numba_adam", "roofline")]
    if 8 in args.bits_list and torch_available and np.dtype(args.dtype) == np.float32:
        low_bit += [name for name, (module, has_amsgrad) in OTHER_8BIT.items()
                    if importlib.util.find_spec(module) is not None
                    and (has_amsgrad or not args.amsgrad)]
    cases = []
    for n in args.size_list:
        cases.append(Case(f"1 tensor, {n:.0e}".replace("e+0", "e"), [(n,)], "step",
                          [i for i in step_impls if i != "numba_adam (plain arrays)"] + low_bit))
    if low_bit:
        for n in COST_SIZES:
            cases.append(Case(f"in-cache cost, {n}", [(n,)], "cost",
                              [name for name in COST_IMPLEMENTATIONS
                               if state_bits_of(name) in args.bits_list]))
    if not args.no_models:
        cases.append(Case("294 tensors, 5.0M", transformer_shapes(), "step", step_impls))
        cases.append(Case("10 tensors, 10k", even_shapes(10_000, 10), "step", step_impls))
    if not args.no_loop:
        for n, label in ((68_000, "68k"), (1_000_000, "1M")):
            cases.append(Case(f"training loop, {label}", [(n,)], "loop",
                              list(LOOP_IMPLEMENTATIONS)))
    if args.jit:
        step_pair = [_bench_jit.JIT_STEP_PYTHON, _bench_jit.JIT_STEP_NJIT]
        for n in sorted({10_000, *args.size_list}):
            cases.append(Case(f"jit step, {n:.0e}".replace("e+0", "e"), [(n,)], "jit",
                              step_pair))
        cases.append(Case("jit step, 10 tensors, 10k", even_shapes(10_000, 10), "jit",
                          step_pair))
        cases.append(Case("jit rows, 100000x32", [_bench_jit.ROWS_SHAPE], "jit",
                          [_bench_jit.JIT_ROWS_NJIT, _bench_jit.JIT_ROWS_INLINE]))
    if not args.no_neighbour:
        measured = [m for m in NEIGHBOUR_MEASUREMENTS if torch_available or "torch" not in m]
        cases.append(Case("good neighbour", [(1,)], "neighbour",
                          [name for m in measured for name in (m, f"{m}, numba_adam imported")]))
    return cases


def layers_used(results: list[Result]) -> dict[str, str]:
    """The threading layer of numba_adam's steps and of the roofline, as their workers
    reported it (the first of each)."""
    layers: dict[str, str] = {}
    for r in results:
        who = "roofline" if r.implementation.startswith("roofline") else "numba_adam"
        if r.layer and who not in layers:
            layers[who] = r.layer
    return layers


def _summarise_loop(case: str, rows: dict[str, Result]) -> dict:
    """A training-loop case: the step in the loop against the bare step and the serial
    same-bytes kernel."""
    loop = rows["numba_adam in the loop"]
    same = rows["serial same-bytes kernel in the loop"]
    bare = rows["numba_adam bare, 1 thread"]
    same_bare = rows["serial same-bytes kernel bare"]
    return dict(
        case=case, params=loop.params, iteration_seconds=loop.median,
        same_bytes_iteration_seconds=same.median,
        in_loop_step_seconds=float(np.median(loop.step_seconds)),
        bare_one_thread_step_seconds=bare.median,
        iteration_over_same_bytes=ratio(loop, same),
        in_loop_step_over_bare_one_thread=ratio(loop, bare, step=True),
        same_bytes_in_loop_step_seconds=float(np.median(same.step_seconds)),
        same_bytes_bare_step_seconds=same_bare.median,
        same_bytes_in_loop_over_bare=ratio(same, same_bare, step=True))


def _summarise_neighbour(rows: dict[str, Result]) -> list[dict]:
    """The good-neighbour case: each measurement with numba_adam imported over alone."""
    out = []
    for name, r in rows.items():
        if name.endswith(", numba_adam imported"):
            alone = rows[name[:-len(", numba_adam imported")]]
            out.append(dict(measurement=alone.implementation, alone_seconds=alone.median,
                            with_numba_adam_seconds=r.median, with_over_alone=ratio(r, alone)))
    return out


def _summarise_steps(case: str, rows: dict[str, Result], dtype, amsgrad: bool,
                     out: dict[str, list[dict]]) -> None:
    """A bare-step case: a row per implementation into ``out["step"]``, and one per
    numba_adam state format into ``out["formats"]`` where more than one format ran."""
    per_param = bytes_per_param(dtype, amsgrad)
    ours, torch = rows.get("numba_adam"), rows.get("torch fused")
    for name, r in rows.items():
        bits = state_bits_of(name)
        moved = bytes_per_param(dtype, amsgrad, bits)
        suffix = STATE_BITS_SUFFIX.get(bits, "")
        same_bits, roof = rows.get(f"numba_adam{suffix}"), rows.get(f"roofline{suffix}")
        roof_fraction = ratio(roof, r) if roof else None
        if roof is None and rows.get("roofline"):
            # only the 32-bit roofline ran: scale it to this format's bytes
            roof_fraction = _scaled(ratio(rows["roofline"], r), moved / per_param)
        out["step"].append(dict(
            case=case, implementation=name, params=r.params, tensors=r.tensors,
            median_seconds=r.median, seconds=r.seconds,
            gb_per_s=r.params * moved / r.median / 1e9,
            roofline_fraction=roof_fraction,
            over_numba_adam=ratio(r, same_bits) if same_bits and r is not same_bits
            else None))
        if not name.startswith("numba_adam"):
            continue
        if bits != 32 or (name == "numba_adam" and any(state_bits_of(n) != 32 for n in rows)):
            out["formats"].append(dict(
                case=case, state_bits=bits, params=r.params, median_seconds=r.median,
                gb_per_s=r.params * moved / r.median / 1e9, bytes_per_param=moved,
                roofline_fraction=roof_fraction,
                state_bytes_per_param=_state_bytes_per_param(dtype, amsgrad, bits),
                speed_over_32_bit=ratio(ours, r) if ours else None,
                speed_over_torch_fused=ratio(torch, r) if torch else None))


def summarise(results: list[Result], dtype, amsgrad: bool) -> dict[str, list[dict]]:
    """Per-case rows with medians and per-round ratios (what --json prints and the table
    shows)."""
    by_case: dict[str, dict[str, Result]] = {}
    for r in results:
        by_case.setdefault(r.case, {})[r.implementation] = r
    out: dict[str, list[dict]] = {"step": [], "loop": [], "neighbour": [], "formats": [],
                                  "jit": [], "torch": []}
    costs: dict[int, dict[int, float]] = {}
    for case, rows in by_case.items():
        if case.startswith("in-cache cost"):
            for name, r in rows.items():
                costs.setdefault(state_bits_of(name), {})[r.params] = r.median
        elif case.startswith("training loop"):
            out["loop"].append(_summarise_loop(case, rows))
        elif case.startswith("jit "):
            out["jit"].append(_bench_jit.summarise_jit(rows, case, ratio))
        elif case.startswith(_bench_torch.CASE_PREFIX):
            out["torch"] += _bench_torch.summarise_torch(
                rows, case, ratio, lambda name: bytes_per_param(dtype, amsgrad,
                                                                state_bits_of(name)))
        elif case == "good neighbour":
            out["neighbour"] += _summarise_neighbour(rows)
        else:
            _summarise_steps(case, rows, dtype, amsgrad, out)
    out["costs"] = _format_costs(costs, dtype, amsgrad)
    return out


def _scaled(r: dict[str, float], factor: float) -> dict[str, float]:
    return {k: v * factor for k, v in r.items()}



def _format_costs(costs: dict[int, dict[int, float]], dtype, amsgrad: bool) -> list[dict]:
    """Compute cost per element of each format (from two in-cache sizes, so fixed per-step
    costs cancel), and the bandwidth per core below which it beats 32-bit state.

    Two models of a step on one core with bandwidth B: *additive* (compute, then wait
    for memory: t = c + b / B), which fits this machine's 1-thread DRAM figures, and
    *overlapped* (t = max(c, b / B)), the best a prefetcher can do.
    """
    rows = []
    small, large = COST_SIZES
    c32 = b32 = None
    for bits in (32, 16, 8):
        if bits not in costs or set(costs[bits]) != {small, large}:
            continue
        c = (costs[bits][large] - costs[bits][small]) / (large - small) * 1e9   # ns/element
        b = bytes_per_param(dtype, amsgrad, bits)
        if bits == 32:
            c32, b32 = c, b
        row = dict(state_bits=bits, ns_per_element=c, bytes_per_element=b)
        if bits != 32 and c32 is not None:
            extra = c - c32
            row["additive_wins_below_gb_per_s_per_core"] = (b32 - b) / extra if extra > 0 \
                else math.inf
            row["overlapped_wins_below_gb_per_s_per_core"] = b32 / c if c > 0 else math.inf
        rows.append(row)
    return rows


def _roof_text(roof: dict[str, float] | None) -> str:
    return f"{roof['median']:.0%} [{roof['low']:.0%}-{roof['high']:.0%}]" if roof else "-"


def _step_lines(rows: list[dict]) -> list[str]:
    width = max(26, *(len(row["implementation"]) for row in rows))
    lines = [_bench_tables.header(width) + f"{'of roofline':>18} {'numba_adam is':>20}"]

    def cells(row: dict) -> str:
        over = _spread(row["over_numba_adam"]) if row["over_numba_adam"] else ""
        return f"{_roof_text(row['roofline_fraction']):>18} {over:>20}"

    return lines + _bench_tables.case_lines(rows, width, cells)


def _format_lines(rows: list[dict]) -> list[str]:
    lines = ["", f"{'state formats':<20} {'bits':>4} {'ms/step':>9} {'GB/s':>6} "
                 f"{'of roofline':>18} {'state B/param':>13} {'vs 32-bit state':>20} "
                 f"{'vs torch fused':>20}"]
    for row in rows:
        over32 = _spread(row["speed_over_32_bit"]) if row["state_bits"] != 32 else "1"
        torch = _spread(row["speed_over_torch_fused"]) if row["speed_over_torch_fused"] \
            else "-"
        lines.append(f"{row['case']:<20} {row['state_bits']:>4} "
                     f"{row['median_seconds'] * 1e3:9.4f} {row['gb_per_s']:6.1f} "
                     f"{_roof_text(row['roofline_fraction']):>18} "
                     f"{row['state_bytes_per_param']:13.3f} {over32:>20} {torch:>20}")
    lines.append("  (speeds: how many times faster than 32-bit state / torch's fused "
                 "fp32 Adam, per round)")
    return lines


def _cost_lines(rows: list[dict]) -> list[str]:
    lines = ["", "compute cost per element, 1 thread, data in cache; the bandwidth per "
                 "core below which a format beats 32-bit state:"]
    for row in rows:
        text = (f"  {row['state_bits']:>2}-bit: {row['ns_per_element']:.3f} ns/element, "
                f"{row['bytes_per_element']:.2f} B/element")
        if "additive_wins_below_gb_per_s_per_core" in row:
            text += (f"; wins below {row['additive_wins_below_gb_per_s_per_core']:.1f} "
                     f"GB/s per core (compute then memory), "
                     f"{row['overlapped_wins_below_gb_per_s_per_core']:.1f} GB/s "
                     f"(fully overlapped)")
        lines.append(text)
    return lines


def _loop_lines(rows: list[dict]) -> list[str]:
    lines = ["", "training loop (two 256x256 matmuls + step), per iteration:"]
    for row in rows:
        lines.append(
            f"  {row['case']}: iteration {row['iteration_seconds'] * 1e6:.0f} us, "
            f"{_spread(row['iteration_over_same_bytes'])} the same loop with a serial "
            f"same-bytes kernel; step in the loop {row['in_loop_step_seconds'] * 1e6:.0f} "
            f"us, {_spread(row['in_loop_step_over_bare_one_thread'])} the bare 1-thread "
            f"step ({row['bare_one_thread_step_seconds'] * 1e6:.0f} us); the same-bytes "
            f"kernel {row['same_bytes_in_loop_step_seconds'] * 1e6:.0f} us in the loop, "
            f"{_spread(row['same_bytes_in_loop_over_bare'])} its bare "
            f"{row['same_bytes_bare_step_seconds'] * 1e6:.0f} us")
    return lines


def _neighbour_lines(rows: list[dict]) -> list[str]:
    lines = ["", "good neighbour (time in a process that imported and stepped numba_adam "
                 "/ time in one that did not):"]
    for row in rows:
        lines.append(f"  {row['measurement']:<26} {row['alone_seconds'] * 1e6:9.1f} us "
                     f"alone, {_spread(row['with_over_alone'])} with numba_adam")
    return lines


def format_tables(summary: dict[str, list[dict]]) -> str:
    """The tables that ``numba-adam bench`` prints, from ``summarise``'s rows."""
    lines = []
    sections = (("step", _step_lines), ("formats", _format_lines), ("costs", _cost_lines),
                ("loop", _loop_lines),
                ("jit", lambda rows: _bench_jit.format_jit(rows, _spread)),
                ("torch", lambda rows: _bench_torch.format_torch(
                    rows, _spread, summary.get("deepspeed_left_out"))),
                ("neighbour", _neighbour_lines))
    for key, lines_of in sections:
        if summary[key]:
            lines += lines_of(summary[key])
    return "\n".join(lines)


FIRST_STEP = """
import sys, time, numpy as np
start = time.perf_counter()
import numba_adam
buf = numba_adam.ParamBuffer({"w": np.zeros(100_000)})
opt = numba_adam.Adam(buf, state_bits=int(sys.argv[1]) if len(sys.argv) > 1 else 32)
opt.step()
print(time.perf_counter() - start)
"""


def first_step_times(state_bits: int = 32) -> tuple[float, float]:
    """Import + first step in a fresh process: with an empty kernel cache, then cached."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = []
        for _ in range(2):
            proc = subprocess.run([sys.executable, "-c", FIRST_STEP, str(state_bits)], env=env,
                                  capture_output=True, text=True, check=True)
            out.append(float(proc.stdout.strip().splitlines()[-1]))
    return out[0], out[1]


def plot(summary: dict[str, list[dict]], dtype, amsgrad: bool, path: str) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'numba-adam[plot]'): no plot written"
    rows = [r for r in summary["step"] if r["tensors"] == 1]
    fig, ax = plt.subplots(figsize=(7, 4))
    names = sorted({r["implementation"] for r in rows},
                   key=lambda n: (n.startswith("roofline"), n))
    for name in names:
        mine = sorted((r for r in rows if r["implementation"] == name), key=lambda r: r["params"])
        style = dict(color="black", ls="--") if name.startswith("roofline") else {}
        ax.plot([r["params"] for r in mine], [r["gb_per_s"] for r in mine], marker="o",
                label=name, **style)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("effective GB/s")
    ax.set_title(f"Adam step, {np.dtype(dtype).name}{', AMSGrad' if amsgrad else ''}, "
                 f"each implementation in its own process")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot: {path}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=None,
                        help="comma-separated single-tensor sizes (default 1e6,1e7; the DRAM "
                             "case here is 6e7)")
    parser.add_argument("--no-models", action="store_true",
                        help="skip the 294-tensor transformer and the 10-tensor latency cases")
    parser.add_argument("--no-loop", action="store_true", help="skip the training-loop cases")
    parser.add_argument("--no-neighbour", action="store_true",
                        help="skip the good-neighbour case")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--amsgrad", action="store_true")
    parser.add_argument("--state-bits", default="32", metavar="LIST",
                        help="state formats to time, e.g. 32,16,8: adds numba_adam with 16- "
                             "and 8-bit state to the 1-tensor cases, and each format's "
                             "in-cache compute cost and bandwidth model")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for numba_adam and torch (default: each library's own)")
    parser.add_argument("--repeats", type=int, default=7, help="rounds of samples (default 7)")
    parser.add_argument("--seconds", type=float, default=0.3,
                        help="target seconds per sample (default 0.3)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--first-step", action="store_true",
                        help="also time import + first step in fresh processes (cold, cached)")
    parser.add_argument("--jit", action="store_true",
                        help="add numba_adam.jit cases: jit.step in @njit against opt.step() "
                             "from Python, and per-sample step_rows against inline Adam")
    parser.add_argument("--torch", action="store_true",
                        help="time numba_adam.torch.Adam on torch tensors instead, against "
                             "torch's fused Adam and DeepSpeedCPUAdam (where installed), on "
                             "one tensor of each --sizes and the 294-tensor model")
    parser.add_argument("--mpi", action="store_true",
                        help="time data-parallel steps instead (numba_adam.distributed over "
                             "mpiexec, --mpi-ranks ranks of one thread) against one process "
                             "and torch's ZeroRedundancyOptimizer; --sizes defaults to 1e7")
    parser.add_argument("--mpi-ranks", type=int, default=2, help="ranks for --mpi (default 2)")
    parser.add_argument("--mpi-tensors", type=int, default=100,
                        help="equal tensors the --mpi model is split into (default 100)")
    parser.add_argument("--mpi-steps", type=int, default=20,
                        help="timed steps per --mpi launch (default 20)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--plot", metavar="FILE.png", help="write GB/s vs size (matplotlib)")


def _run_mpi(args: argparse.Namespace, torch_available: bool, progress) -> int:
    from . import _bench_mpi
    if importlib.util.find_spec("mpi4py") is None:
        print("numba-adam bench --mpi needs mpi4py: pip install 'numba-adam[mpi]'",
              file=sys.stderr)
        return 2
    if args.mpi_ranks < 2 or args.mpi_tensors < 1 or args.mpi_steps < 1:
        print("numba-adam bench: --mpi-ranks must be >= 2, --mpi-tensors and --mpi-steps >= 1",
              file=sys.stderr)
        return 2
    sizes = args.size_list if args.sizes_given else [10_000_000]
    summaries = _bench_mpi.run_mpi(sizes, args.mpi_tensors, args.mpi_ranks, args.repeats,
                                   args.mpi_steps, torch_available, progress)
    if args.json:
        print(json.dumps(dict(mpi=summaries), indent=1))
    else:
        print("\n".join(_bench_mpi.format_mpi(summaries, _spread)).lstrip("\n"))
    return 0


def _parse_lists(args: argparse.Namespace) -> str | None:
    """Set ``args.size_list`` and ``args.bits_list`` from ``--sizes`` and ``--state-bits``;
    returns what is wrong with them (None when nothing is)."""
    args.sizes_given = args.sizes is not None
    args.sizes = args.sizes if args.sizes_given else "1e6,1e7"
    try:
        args.size_list = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        return f"--sizes must be numbers, got {args.sizes!r}"
    try:
        args.bits_list = sorted({int(b) for b in args.state_bits.split(",") if b.strip()},
                                reverse=True)
    except ValueError:
        args.bits_list = []
    if not args.bits_list or not set(args.bits_list) <= {32, 16, 8}:
        return f"--state-bits must list 32, 16 or 8, got {args.state_bits!r}"
    if args.threads is not None and args.threads < 1:
        return "--threads must be >= 1"
    return None


def _print_report(args: argparse.Namespace, dtype: np.dtype, summary: dict,
                  first: dict | None) -> None:
    """The summary as JSON (``--json``) or as tables."""
    if args.json:
        print(json.dumps(dict(
            dtype=dtype.name, amsgrad=args.amsgrad, threads=args.threads,
            repeats=args.repeats, bytes_per_param=bytes_per_param(dtype, args.amsgrad),
            first_step_seconds={str(bits): dict(cold=cold, cached=cached)
                                for bits, (cold, cached) in first.items()} if first else None,
            **summary), indent=1))
        return
    print(f"Adam step, {dtype.name}{', AMSGrad' if args.amsgrad else ''}; each "
          f"implementation in its own process with its own default threads"
          f"{f' (--threads {args.threads})' if args.threads else ''}; {args.repeats} "
          f"alternating rounds; ratios are medians [min-max] over rounds; "
          f"{bytes_per_param(dtype, args.amsgrad)} bytes moved per parameter")
    print(format_tables(summary))
    for name, layer in summary["layers"].items():
        print(f"{name} ran on: {layer}")
    for bits, (cold, cached) in (first or {}).items():
        print(f"\nfirst step in a fresh process (import + compile or cache load), "
              f"{bits}-bit state: cold cache {cold:.2f} s, cached {cached:.2f} s")


def run(args: argparse.Namespace) -> int:
    dtype = np.dtype(args.dtype)
    torch_available = importlib.util.find_spec("torch") is not None and not args.no_torch
    error = _parse_lists(args)
    if error:
        print(f"numba-adam bench: {error}", file=sys.stderr)
        return 2
    progress = (lambda msg: None) if args.json else (
        lambda msg: print(f"  ... {msg}", file=sys.stderr, flush=True))
    if args.mpi:
        return _run_mpi(args, torch_available, progress)
    deepspeed_left_out = None
    if args.torch:
        if not torch_available or dtype != np.float32:
            print("numba-adam bench --torch needs torch (pip install 'numba-adam[torch]') and "
                  "--dtype float32", file=sys.stderr)
            return 2
        progress("checking that DeepSpeedCPUAdam builds (the first time takes a minute)")
        deepspeed_left_out = _bench_torch.deepspeed_status()
        cases = torch_cases(args, deepspeed_left_out is None)
    else:
        cases = build_cases(args, torch_available)
    results = []
    for case in cases:
        results += run_case(case, args, progress)
    summary = summarise(results, dtype, args.amsgrad)
    summary["deepspeed_left_out"] = deepspeed_left_out
    summary["layers"] = layers_used(results)
    first = {bits: first_step_times(bits) for bits in args.bits_list} if args.first_step \
        else None
    _print_report(args, dtype, summary, first)
    if args.plot:
        print(plot(summary, dtype, args.amsgrad, args.plot), file=sys.stderr)
    return 0
