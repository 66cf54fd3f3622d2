"""``numba-adam bench --jit``: stepping from compiled code (``numba_adam.jit``).

Two comparisons, each implementation in its own bench worker process:

- **step**: ``numba_adam.jit.step`` in an ``@njit`` loop against
  ``opt.step()`` called from Python, on the same model (one tensor of each
  size, and the 10-tensor latency model).  A call of either runs
  :func:`repeats` steps, so both are timed over the same work.
- **rows**: a per-sample update of one row of a (100000, 32) table, through
  ``numba_adam.jit.step_rows`` against Adam written inline in the user's
  kernel (bias correction included, the same fastmath flags as numba_adam's
  kernels), :data:`SAMPLES` samples a call.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

JIT_STEP_PYTHON = "numba_adam opt.step() from Python"
JIT_STEP_NJIT = "numba_adam jit.step in @njit"
JIT_ROWS_NJIT = "numba_adam jit.step_rows"
JIT_ROWS_INLINE = "Adam row inline in @njit"
ROWS_SHAPE = (100_000, 32)
SAMPLES = 20_000


def repeats(size: int) -> int:
    """Steps per timed call of a model with ``size`` parameters (more for small models)."""
    return max(1, min(200, 2_000_000 // max(size, 1)))


def _model(shapes, dtype, rng):
    import numba_adam
    buf = numba_adam.ParamBuffer({str(i): rng.standard_normal(s) for i, s in enumerate(shapes)},
                                 dtype)
    buf.grad[:] = rng.standard_normal(buf.size) * 1e-3
    return buf, numba_adam.Adam(buf, lr=1e-6)


def _step_python(shapes, dtype, amsgrad, rng) -> Callable[[], None]:
    buf, opt = _model(shapes, dtype, rng)
    count = repeats(buf.size)

    def run():
        for _ in range(count):
            opt.step()
    return run


def _step_njit(shapes, dtype, amsgrad, rng) -> Callable[[], None]:
    from numba import njit

    from numba_adam import jit as adam_jit
    buf, opt = _model(shapes, dtype, rng)
    handle, count = opt.jit_handle(), repeats(buf.size)

    @njit
    def steps(handle, count):
        for _ in range(count):
            adam_jit.step(handle)
    return lambda: steps(handle, count)


def _rows_data(dtype, rng):
    rows = rng.integers(0, ROWS_SHAPE[0], SAMPLES)
    values = (rng.standard_normal((SAMPLES, ROWS_SHAPE[1])) * 1e-3).astype(dtype)
    return rows, values


def _rows_njit(shapes, dtype, amsgrad, rng) -> Callable[[], None]:
    import numba_adam
    from numba import njit

    from numba_adam import jit as adam_jit
    table = rng.standard_normal(ROWS_SHAPE).astype(dtype)
    opt = numba_adam.Adam([table], lr=1e-6)
    handle = opt.jit_handle()
    rows, values = _rows_data(dtype, rng)

    @njit
    def per_sample(handle, rows, values):
        for k in range(rows.size):
            adam_jit.step_rows(handle, 0, rows[k:k + 1], values[k:k + 1])
    return lambda: per_sample(handle, rows, values)


def _rows_inline(shapes, dtype, amsgrad, rng) -> Callable[[], None]:
    import math

    from numba import njit

    from numba_adam._config import FASTMATH
    table = rng.standard_normal(ROWS_SHAPE).astype(dtype)
    m, v = np.zeros_like(table), np.zeros_like(table)
    rows, values = _rows_data(dtype, rng)
    step = np.zeros(1, np.int64)

    @njit(fastmath=FASTMATH)
    def per_sample(table, m, v, step, rows, values, lr, beta1, beta2, eps):
        c = np.empty(6, table.dtype)      # the constants in the table's dtype, as ours are
        c[0], c[1], c[2], c[3] = 1.0 - beta1, beta2, 1.0 - beta2, eps
        for k in range(rows.size):
            step[0] += 1
            t = float(step[0])
            c[4] = lr / (1.0 - beta1 ** t)
            c[5] = 1.0 / math.sqrt(1.0 - beta2 ** t)
            one_minus_beta1, b2, one_minus_beta2, e, step_size, denom_scale = \
                c[0], c[1], c[2], c[3], c[4], c[5]
            r = rows[k]
            p, mr, vr, g = table[r], m[r], v[r], values[k]
            for j in range(p.size):
                mj = mr[j] + one_minus_beta1 * (g[j] - mr[j])
                vj = b2 * vr[j] + one_minus_beta2 * g[j] * g[j]
                mr[j] = mj
                vr[j] = vj
                p[j] -= step_size * mj / (math.sqrt(vj) * denom_scale + e)
    return lambda: per_sample(table, m, v, step, rows, values, 1e-6, 0.9, 0.999, 1e-8)


JIT_IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    JIT_STEP_PYTHON: _step_python,
    JIT_STEP_NJIT: _step_njit,
    JIT_ROWS_NJIT: _rows_njit,
    JIT_ROWS_INLINE: _rows_inline,
}


def summarise_jit(rows: dict[str, Any], case: str, ratio: Callable) -> dict[str, Any]:
    """One summary row of a jit case: per-step (or per-row) times and their ratio."""
    if JIT_ROWS_NJIT in rows:
        ours, base = rows[JIT_ROWS_NJIT], rows[JIT_ROWS_INLINE]
        return dict(case=case, kind="rows", seconds_per_row=ours.median / SAMPLES,
                    inline_seconds_per_row=base.median / SAMPLES,
                    step_rows_over_inline=ratio(ours, base))
    ours, base = rows[JIT_STEP_NJIT], rows[JIT_STEP_PYTHON]
    count = repeats(ours.params)
    return dict(case=case, kind="step", params=ours.params, tensors=ours.tensors,
                njit_seconds_per_step=ours.median / count,
                python_seconds_per_step=base.median / count,
                python_over_njit=ratio(base, ours))


def format_jit(rows: list[dict[str, Any]], spread: Callable) -> list[str]:
    lines = ["", "numba_adam.jit (each side in its own process):"]
    for row in rows:
        if row["kind"] == "rows":
            lines.append(f"  {row['case']:<26} step_rows {row['seconds_per_row'] * 1e9:7.1f} ns "
                         f"per row, inline Adam {row['inline_seconds_per_row'] * 1e9:7.1f} ns: "
                         f"step_rows costs {spread(row['step_rows_over_inline'])} inline")
        else:
            lines.append(f"  {row['case']:<26} jit.step {row['njit_seconds_per_step'] * 1e6:9.2f}"
                         f" us, opt.step() {row['python_seconds_per_step'] * 1e6:9.2f} us: "
                         f"jitted is {spread(row['python_over_njit'])} faster")
    return lines
