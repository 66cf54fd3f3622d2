"""``numba-adam bench``: numba_adam against NumPy, PyTorch and the memory-bandwidth limit.

Every implementation runs the same Adam step on the same data.  Timings are
interleaved (one step of each implementation in turn, repeated) because
memory speed drifts between runs; the table reports medians, effective GB/s
(bytes an Adam step must move: read p, g, m, v and write p, m, v, plus v_max
with AMSGrad), the share of the same-bytes roofline kernel, and numba_adam's
speed-up over each alternative.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import numba
import numpy as np
from numba import njit, prange

from ._config import PARALLEL_MIN_ELEMENTS, WORK_ITEM_ELEMENTS
from .buffer import ParamBuffer
from .optim import Adam


# -- the roofline: kernels that move exactly an Adam step's bytes -------------
@njit(inline="always", fastmath=True, error_model="numpy")
def _touch(p, g, m, v):
    for i in range(p.size):
        a = g[i]
        p[i] += a
        m[i] += a
        v[i] += a


@njit(inline="always", fastmath=True, error_model="numpy")
def _touch_amsgrad(p, g, m, v, v_max):
    for i in range(p.size):
        a = g[i]
        p[i] += a
        m[i] += a
        v[i] += a
        v_max[i] += a


@njit(parallel=True, cache=True, fastmath=True, error_model="numpy")
def same_bytes_parallel(p, g, m, v, v_max):
    """Reads p, g, m, v (and v_max), writes p, m, v (and v_max): the bytes of an Adam step."""
    chunk = WORK_ITEM_ELEMENTS
    for c in prange((p.size + chunk - 1) // chunk):
        a = c * chunk
        b = min(p.size, a + chunk)
        if v_max.size:
            _touch_amsgrad(p[a:b], g[a:b], m[a:b], v[a:b], v_max[a:b])
        else:
            _touch(p[a:b], g[a:b], m[a:b], v[a:b])


@njit(cache=True, fastmath=True, error_model="numpy")
def same_bytes_serial(p, g, m, v, v_max):
    """The serial twin, for sizes where waking threads costs more than it gives."""
    if v_max.size:
        _touch_amsgrad(p, g, m, v, v_max)
    else:
        _touch(p, g, m, v)


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


@dataclass
class Case:
    name: str
    shapes: list[tuple[int, ...]]

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

    @property
    def median(self) -> float:
        return float(np.median(self.seconds))


# -- implementations ---------------------------------------------------------
def _numba_adam(case: Case, dtype, amsgrad: bool, rng) -> Callable[[], None]:
    buf = ParamBuffer({str(i): rng.standard_normal(s) for i, s in enumerate(case.shapes)}, dtype)
    buf.grad[:] = rng.standard_normal(buf.size)
    opt = Adam(buf, lr=1e-3, amsgrad=amsgrad)
    return opt.step


def _numba_adam_arrays(case: Case, dtype, amsgrad: bool, rng) -> Callable[[], None]:
    params = [rng.standard_normal(s).astype(dtype) for s in case.shapes]
    grads = [rng.standard_normal(s).astype(dtype) for s in case.shapes]
    opt = Adam(params, lr=1e-3, amsgrad=amsgrad)
    return lambda: opt.step(grads)


def _numpy(case: Case, dtype, amsgrad: bool, rng) -> Callable[[], None]:
    """Adam in NumPy with in-place ops (no temporaries beyond one scratch per tensor)."""
    ps = [rng.standard_normal(s).astype(dtype) for s in case.shapes]
    gs = [rng.standard_normal(s).astype(dtype) for s in case.shapes]
    ms = [np.zeros_like(p) for p in ps]
    vs = [np.zeros_like(p) for p in ps]
    vmaxs = [np.zeros_like(p) for p in ps] if amsgrad else None
    scratch = [np.empty_like(p) for p in ps]
    state = {"t": 0}
    b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8

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
    def make(case: Case, dtype, amsgrad: bool, rng) -> Callable[[], None]:
        import torch
        tdtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
        params = [torch.tensor(rng.standard_normal(s), dtype=tdtype) for s in case.shapes]
        for p in params:
            p.grad = torch.tensor(rng.standard_normal(tuple(p.shape)), dtype=tdtype)
        opt = torch.optim.Adam(params, lr=1e-3, amsgrad=amsgrad, **{kind: True})
        return opt.step
    return make


def _roofline(case: Case, dtype, amsgrad: bool, rng) -> Callable[[], None]:
    n = case.size
    arrays = [rng.standard_normal(n).astype(dtype) for _ in range(4)]
    v_max = np.zeros(n if amsgrad else 0, dtype)
    p, g, m, v = arrays
    kernel = same_bytes_parallel if n >= PARALLEL_MIN_ELEMENTS else same_bytes_serial
    return lambda: kernel(p, g, m, v, v_max)


def implementations(torch_available: bool) -> dict[str, Callable]:
    impls = {"numba_adam": _numba_adam, "numba_adam (plain arrays)": _numba_adam_arrays,
             "numpy": _numpy}
    if torch_available:
        impls["torch fused"] = _torch("fused")
        impls["torch foreach"] = _torch("foreach")
    impls["roofline"] = _roofline
    return impls


def bytes_per_param(dtype, amsgrad: bool) -> int:
    return (9 if amsgrad else 7) * np.dtype(dtype).itemsize


# -- running -----------------------------------------------------------------
def run_case(case: Case, impls: dict, dtype, amsgrad: bool, repeats: int, seconds: float,
             progress: Callable[[str], None]) -> list[Result]:
    rng = np.random.default_rng(0)
    steps, results = {}, {}
    for name, make in impls.items():
        if name == "numba_adam (plain arrays)" and len(case.shapes) == 1:
            continue
        progress(f"{case.name}: preparing {name}")
        fn = make(case, dtype, amsgrad, rng)
        fn()   # compile / warm up
        steps[name] = fn
        results[name] = Result(case.name, name, case.size, len(case.shapes))
    # calls per sample: enough to fill about `seconds` per sample for the slowest
    probe = max(_time_once(fn) for fn in steps.values())
    inner = max(1, min(1000, int(seconds / max(probe, 1e-7) / max(repeats, 1))))
    for r in range(repeats):
        progress(f"{case.name}: repeat {r + 1}/{repeats}")
        for name, fn in steps.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            results[name].seconds.append((time.perf_counter() - start) / inner)
    return list(results.values())


def _time_once(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], None], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn``."""
    return float(np.median([_time_once(fn) for _ in range(repeats)]))


FIRST_STEP = """
import time, numpy as np
start = time.perf_counter()
import numba_adam
buf = numba_adam.ParamBuffer({"w": np.zeros(100_000)})
opt = numba_adam.Adam(buf)
opt.step()
print(time.perf_counter() - start)
"""


def first_step_times() -> tuple[float, float]:
    """Import + first step in a fresh process: with an empty kernel cache, then cached."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = []
        for _ in range(2):
            proc = subprocess.run([sys.executable, "-c", FIRST_STEP], env=env,
                                  capture_output=True, text=True, check=True)
            out.append(float(proc.stdout.strip().splitlines()[-1]))
    return out[0], out[1]


def format_table(results: list[Result], dtype, amsgrad: bool) -> str:
    per_param = bytes_per_param(dtype, amsgrad)
    lines = [f"{'case':<22} {'implementation':<26} {'ms/step':>9} {'GB/s':>7} "
             f"{'% roofline':>10} {'numba_adam is':>14}"]
    by_case: dict[str, dict[str, Result]] = {}
    for r in results:
        by_case.setdefault(r.case, {})[r.implementation] = r
    for case, rows in by_case.items():
        ours = rows.get("numba_adam")
        roof = rows.get("roofline")
        for name, r in rows.items():
            gbs = r.params * per_param / r.median / 1e9
            pct = f"{roof.median / r.median:.0%}" if roof else "-"
            ratio = f"{r.median / ours.median:.2f}x" if ours and name != "numba_adam" else ""
            lines.append(f"{case:<22} {name:<26} {r.median * 1e3:9.3f} {gbs:7.1f} {pct:>10} "
                         f"{ratio:>14}")
        lines.append("")
    return "\n".join(lines)


def plot(results: list[Result], dtype, amsgrad: bool, path: str) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'numba-adam[plot]'): no plot written"
    per_param = bytes_per_param(dtype, amsgrad)
    fig, ax = plt.subplots(figsize=(7, 4))
    names = sorted({r.implementation for r in results}, key=lambda n: (n == "roofline", n))
    for name in names:
        rows = sorted((r for r in results if r.implementation == name), key=lambda r: r.params)
        xs = [r.params for r in rows]
        ys = [r.params * per_param / r.median / 1e9 for r in rows]
        style = dict(color="black", ls="--") if name == "roofline" else {}
        ax.plot(xs, ys, marker="o", label=name, **style)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("effective GB/s")
    ax.set_title(f"Adam step, {np.dtype(dtype).name}{', AMSGrad' if amsgrad else ''}, "
                 f"{numba.get_num_threads()} threads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot: {path}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="1e6,1e7",
                        help="comma-separated single-tensor sizes (default 1e6,1e7; the DRAM "
                             "case here is 6e7)")
    parser.add_argument("--no-models", action="store_true",
                        help="skip the 294-tensor transformer and the 10-tensor latency cases")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--amsgrad", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="Numba and torch threads")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved samples (default 7)")
    parser.add_argument("--seconds", type=float, default=0.5,
                        help="target seconds per sample of the slowest implementation")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--first-step", action="store_true",
                        help="also time import + first step in fresh processes (cold, cached)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--plot", metavar="FILE.png", help="write GB/s vs size (matplotlib)")


def run(args: argparse.Namespace) -> int:
    import importlib.util
    dtype = np.dtype(args.dtype)
    torch_available = importlib.util.find_spec("torch") is not None and not args.no_torch
    if args.threads:
        numba.set_num_threads(args.threads)
        if torch_available:
            import torch
            torch.set_num_threads(args.threads)
    try:
        sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        print(f"numba-adam bench: --sizes must be numbers, got {args.sizes!r}", file=sys.stderr)
        return 2
    cases = [Case(f"1 tensor, {n:.0e}".replace("e+0", "e"), [(n,)]) for n in sizes]
    if not args.no_models:
        cases += [Case("294 tensors, 5.0M", transformer_shapes()),
                  Case("10 tensors, 10k", even_shapes(10_000, 10))]
    impls = implementations(torch_available)
    quiet = args.json
    progress = (lambda msg: None) if quiet else (
        lambda msg: print(f"  ... {msg}", file=sys.stderr, flush=True))
    results = []
    for case in cases:
        results += run_case(case, impls, dtype, args.amsgrad, args.repeats, args.seconds, progress)
    first = first_step_times() if args.first_step else None
    if args.json:
        print(json.dumps(dict(
            dtype=dtype.name, amsgrad=args.amsgrad, threads=numba.get_num_threads(),
            bytes_per_param=bytes_per_param(dtype, args.amsgrad),
            first_step_seconds=dict(cold=first[0], cached=first[1]) if first else None,
            results=[dict(case=r.case, implementation=r.implementation, params=r.params,
                          tensors=r.tensors, median_seconds=r.median, seconds=r.seconds)
                     for r in results]), indent=1))
    else:
        print(f"Adam step, {dtype.name}{', AMSGrad' if args.amsgrad else ''}, "
              f"{numba.get_num_threads()} threads, {args.repeats} interleaved samples; "
              f"{bytes_per_param(dtype, args.amsgrad)} bytes moved per parameter; "
              f"'numba_adam is Nx' = other's time / numba_adam's time")
        print(format_table(results, dtype, args.amsgrad))
        if first:
            print(f"first step in a fresh process (import + compile or cache load): "
                  f"cold cache {first[0]:.2f} s, cached {first[1]:.2f} s")
    if args.plot:
        print(plot(results, dtype, args.amsgrad, args.plot), file=sys.stderr)
    return 0
