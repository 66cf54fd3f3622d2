"""Adam from inside your own Numba code: ``step(handle)`` and ``step_rows(handle, ...)``.

``opt.jit_handle()`` gives a handle (a named tuple of the optimizer's own
arrays) that ``@njit`` functions accept::

    handle = opt.jit_handle()

    @njit
    def train(handle, grad, n_batches):
        for batch in range(n_batches):
            ...                                  # write the gradient into grad
            numba_adam.jit.step(handle)          # = opt.step()

``step`` runs the optimizer's own kernels over every group: the schedules,
the group scalars and the norm-clipping factors are computed in compiled code
with the same float64 operations as ``opt.step()``, so a jitted loop gives the
same parameters, state and step counts bit for bit.  Models big enough to
share a step out over threads (``numba_adam.get_num_threads()``) run the
threaded kernels ``opt.step()`` uses (Numba's ``parallel=True`` on its TBB
layer), called straight from compiled code; smaller ones run the serial twins.

``step_rows(handle, i, rows, values)`` is ``opt.step_rows(i, rows, values)``:
a lazy update of some rows of parameter ``i`` (TF LazyAdam, torch
SparseAdam), cheap enough to call per sample: it is inlined into the caller
and reads the handle's arrays through one table of addresses, so a call
costs a few hundred nanoseconds beyond the row arithmetic.  It is one
update of the parameter's group, so the group's step count advances by one;
there are no per-row step counts.  Give each embedding table its own group when their
counts should be independent (torch SparseAdam keeps one per parameter).

Errors (a parameter index or row out of range, values of the wrong shape, a
schedule giving an invalid lr, an out-of-date handle) raise before anything
changes.  The dtype of ``values`` is checked when the function compiles.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections import namedtuple
from typing import Any

import numpy as np
from numba import carray, njit, types
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload

from . import _cpu, _engine, _formula, _threads, schedules
from ._config import GRAD_AT, GRAD_SIGN, GROUP, PARAM_AT, SKIP, STATE_BITS, STATE_OFFSET, \
    VMAX_OFFSET

__all__ = ["step", "step_rows"]

# Columns of a handle's ``rules`` table (float64, one row per group).
BETA1, BETA2, EPS, WEIGHT_DECAY, DECOUPLED, MAXIMIZE, EPSILON_HAT, BIAS_CORRECTION, \
    CLIPVALUE = range(9)
RULE_COLUMNS = 9

# Columns of a handle's ``flags`` (int64).
IDENT, PLAIN, CLIPS = range(3)

_FIELDS = (
    "current",        # bool[1]: False once the optimizer changed what the handle carries
    "flags", "global_clipnorm",
    "items", "item_tensor", "tensors", "buffer_grad_at", "tensor_group", "row_shapes",
    "row_slot_at", "row_slots",
    "scalars", "keys", "grad_scales", "scaled", "item_sums", "tensor_sums", "extra_sums",
    "like", "m", "v", "v_max", "codes16", "codes8", "absmax", "scratch",
    "rules", "clipnorms", "seeds", "keyed", "segments", "segment_spans", "counts",
    "kind_items", "kind_spans", "thread_count",
    "views",          # int64 (len(_VIEWS), 3): address and shape of the arrays steps read
)

# The arrays step and step_rows read, in the order of ``views``.  Compiled steps rebuild
# them from raw addresses (views without a reference count): reading this many arrays
# from the handle costs a reference-count pair each, which is most of a small update.
_VIEWS = ("current", "counts", "segment_spans", "segments", "rules", "scalars", "keyed",
          "keys", "seeds", "clipnorms", "global_clipnorm", "scratch", "tensors", "row_shapes",
          "like", "m", "v", "v_max", "row_slot_at", "row_slots", "codes16", "codes8", "absmax",
          "flags", "buffer_grad_at", "items", "item_tensor", "tensor_group", "item_sums",
          "extra_sums", "tensor_sums", "grad_scales", "scaled", "kind_items", "kind_spans",
          "thread_count")

# One named-tuple class per set of kernel kinds a model needs: the class is part of
# the handle's Numba type, so a jitted step compiles only the kernels its model uses.
_classes: dict[frozenset, type] = {}
# handle ident -> its engine, kept alive while the handle lives (even if the optimizer
# is dropped: the handle's tables hold its parameters' addresses); a finalizer on the
# handle's ``current`` array removes the entry.
_engines: dict[int, Any] = {}
_idents = itertools.count(1)


def _handle_class(kinds: frozenset) -> type:
    cls = _classes.get(kinds)
    if cls is None:
        name = "JitHandle_" + "_".join(str(k) for k in sorted(kinds))
        cls = namedtuple(name, _FIELDS)
        cls.KINDS = kinds
        cls.__doc__ = ("A numba_adam optimizer's arrays, for numba_adam.jit.step and "
                       "step_rows (made by Optimizer.jit_handle()).")
        _classes[kinds] = cls
    return cls


def _lr_segments(lrs: list) -> tuple[list, list[tuple[int, int]]]:
    """Every group's lr as schedule segments, and each group's (first row, row count)."""
    segments, spans = [], []
    for g, lr in enumerate(lrs):
        if isinstance(lr, schedules.Schedule):
            rows = lr.segments()
        elif callable(lr):
            raise TypeError(f"param_groups[{g}]['lr'] is a Python callable ({lr!r}); compiled "
                            f"code can run numba_adam.schedules schedules only (or a float lr)")
        else:
            rows = schedules.Constant(lr).segments()
        spans.append((len(segments), len(rows)))
        segments.extend(rows)
    return segments, spans


def _rule_table(rules: list) -> np.ndarray:
    """One row of ``RULE_COLUMNS`` per group's update rule."""
    table = np.zeros((len(rules), RULE_COLUMNS), dtype=np.float64)
    for g, rule in enumerate(rules):
        table[g] = (rule.beta1, rule.beta2, rule.eps, rule.weight_decay,
                    rule.decoupled_weight_decay, rule.maximize, rule.epsilon_hat,
                    rule.bias_correction, math.inf if rule.clipvalue is None else rule.clipvalue)
    return table


def _row_shapes(engine: Any, tensors: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per tensor (rows, columns, C order), or (-1, 1, 1) for a scalar; its first slot in
    the row-slot table (16/8-bit state's sparse rows go through it; -1 for 32-bit), and
    the number of slots."""
    specs = engine.specs
    row_shapes = np.zeros((len(specs), 3), dtype=np.int64)
    slot_at = np.full(len(specs), -1, dtype=np.int64)
    n_slots = 0
    for i, spec in enumerate(specs):
        shape = tuple(spec.array.shape)
        if shape:
            cols = int(np.prod(shape[1:], dtype=np.int64))
            order_c = engine.layout.orders[i] == "C" or len(shape) == 1
            row_shapes[i] = (shape[0], cols, order_c)
            if tensors[i, STATE_BITS] != 32:
                slot_at[i] = n_slots
                n_slots += shape[0]
        else:
            row_shapes[i] = (-1, 1, 1)
    return row_shapes, slot_at, n_slots


def make_handle(arrays: dict[str, Any], engine: Any, rules: list, lrs: list, seeds: list,
                clipnorms: np.ndarray | None, global_clipnorm: float | None,
                counts: np.ndarray) -> Any:
    """A handle over an engine's arrays (``Engine.jit_arrays()``) and the group options.

    ``lrs[g]`` is group g's lr, a float or a ``numba_adam.schedules`` schedule;
    ``seeds[g]`` its 16-bit rounding seed (None: no 16-bit state); ``counts``
    the optimizer's array of completed updates per group, shared, not copied.
    """
    segments, spans = _lr_segments(lrs)
    table = _rule_table(rules)
    tensors = arrays["tensors"]
    row_shapes, slot_at, n_slots = _row_shapes(engine, tensors)
    ident = next(_idents)
    _engines[ident] = engine
    flags = np.zeros(3, dtype=np.int64)
    flags[IDENT] = ident
    flags[PLAIN] = len(arrays["plain"])
    flags[CLIPS] = clipnorms is not None or global_clipnorm is not None
    dtype = arrays["m"].dtype
    cls = _handle_class(arrays["kinds"])
    handle = cls(
        current=np.ones(1, dtype=np.bool_), flags=flags,
        global_clipnorm=np.array([-1.0 if global_clipnorm is None else global_clipnorm]),
        items=arrays["items"], item_tensor=arrays["item_tensor"], tensors=tensors,
        buffer_grad_at=arrays["buffer_grad_at"], tensor_group=arrays["tensor_group"],
        row_shapes=row_shapes, row_slot_at=slot_at,
        row_slots=np.full(n_slots, -1, dtype=np.int64),
        scalars=arrays["scalars"], keys=arrays["keys"], grad_scales=arrays["grad_scales"],
        scaled=arrays["scaled"], item_sums=arrays["item_sums"],
        tensor_sums=arrays["tensor_sums"], extra_sums=arrays["extra_sums"],
        like=arrays["like"], m=arrays["m"], v=arrays["v"], v_max=arrays["v_max"],
        codes16=arrays["codes16"], codes8=arrays["codes8"], absmax=arrays["absmax"],
        scratch=np.zeros(1, dtype=dtype), rules=table,
        clipnorms=np.full(len(rules), -1.0) if clipnorms is None else
        np.array(clipnorms, dtype=np.float64),
        seeds=np.array([0 if s is None else s & 0xFFFFFFFFFFFFFFFF for s in seeds],
                       dtype=np.uint64),
        keyed=np.array([s is not None for s in seeds], dtype=np.bool_),
        segments=np.array(segments, dtype=np.float64).reshape(-1, schedules.SEGMENT_COLUMNS),
        segment_spans=np.array(spans, dtype=np.int64).reshape(-1, 2), counts=counts,
        kind_items=arrays["kind_items"], kind_spans=arrays["kind_spans"],
        thread_count=_threads.THREAD_COUNT, views=None)
    handle = handle._replace(views=_views(handle))
    weakref.finalize(handle.current, _engines.pop, ident, None)
    return handle


def _views(handle: Any) -> np.ndarray:
    """Address and shape of each of ``_VIEWS`` (the handle keeps the arrays alive)."""
    table = np.zeros((len(_VIEWS), 3), dtype=np.int64)
    for k, name in enumerate(_VIEWS):
        array = getattr(handle, name)
        if not array.flags.c_contiguous:
            raise ValueError(f"numba_adam jit handle: {name} is not contiguous")
        shape = array.shape + (1,) * (2 - array.ndim)
        table[k] = (array.ctypes.data, shape[0], shape[1])
    return table


def is_current(handle: Any) -> bool:
    """Whether ``handle`` still matches its optimizer."""
    return bool(handle.current[0])


def retire(handle: Any) -> None:
    """Mark ``handle`` out of date: steps through it raise from now on."""
    handle.current[0] = False
    _engines.pop(int(handle.flags[IDENT]), None)


# -- schedules, scalars and keys in compiled code ------------------------------
@njit(error_model="python")
def _leaf_value(row, step):
    """A leaf schedule's value at ``step``: the arithmetic of its ``value`` method."""
    kind = int(row[2])
    a, b, c, d, e = row[3], row[4], row[5], row[6], row[7]
    if kind == schedules.KIND_CONSTANT:
        return a
    if kind == schedules.KIND_EXPONENTIAL or kind == schedules.KIND_INVERSE_TIME:
        p = step / int(b)
        if d != 0.0:
            p = float(math.floor(p))
        if kind == schedules.KIND_EXPONENTIAL:
            return a * c ** p
        return a / (1.0 + c * p)
    if kind == schedules.KIND_STEP:
        return a * c ** float(step // int(b))
    if kind == schedules.KIND_POLYNOMIAL:
        decay_steps = int(b)
        if e != 0.0:
            decay_steps = decay_steps * max(1, int(math.ceil(step / decay_steps)))
        else:
            step = min(step, decay_steps)
        frac = 1.0 - step / decay_steps
        return (a - c) * frac ** d + c
    if kind == schedules.KIND_COSINE:
        decay_steps = int(b)
        step = min(step, decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / decay_steps))
        return a * ((1.0 - c) * cosine + c)
    # KIND_LINEAR
    steps = int(c)
    frac = min(step, steps) / steps
    return a + (b - a) * frac


@njit(error_model="python")
def schedule_value(segments, first, count, step):
    """The value at ``step`` of the schedule in rows ``first .. first + count - 1``."""
    k = first
    for j in range(first + 1, first + count):
        if segments[j, 0] <= step:
            k = j
        else:
            break
    return _leaf_value(segments[k], step - int(segments[k, 1]))


@njit(error_model="python")
def group_key(seed, step):
    """``numba_adam._codes.group_key`` in compiled code (``seed`` as uint64)."""
    z = seed * np.uint64(0x9E3779B97F4A7C15) + np.uint64(step) * np.uint64(0xD1B54A32D192ED03) \
        + np.uint64(0x632BE59BD9B4E019)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.int64((z ^ (z >> np.uint64(31))) & np.uint64(0xFFFFFFFF))


_scalar_row = njit(error_model="python")(_formula.scalar_row)


@njit
def _check_current(current):
    if not current[0]:
        raise ValueError("this numba_adam jit handle is out of date: the optimizer's options, "
                         "groups or state changed after jit_handle(); call opt.jit_handle() "
                         "again")


@njit
def _prepare_group(counts, segment_spans, segments, rules, scalars, keyed, keys, seeds, g):
    """Fill group ``g``'s scalar row and random key for its next update; raises (changing
    no state) if its schedule gives an invalid lr."""
    updates = counts[g]
    span = segment_spans[g]
    lr = schedule_value(segments, span[0], span[1], updates)
    if not (lr >= 0.0 and lr < math.inf):
        raise ValueError("the schedule of param_groups[" + str(g) + "] gave an lr that is "
                         "not a finite number >= 0")
    r = rules[g]
    row = _scalar_row(r[BETA1], r[BETA2], r[EPS], r[WEIGHT_DECAY], r[DECOUPLED] != 0.0,
                      r[MAXIMIZE] != 0.0, r[EPSILON_HAT] != 0.0, r[BIAS_CORRECTION] != 0.0,
                      r[CLIPVALUE], lr, updates + 1)
    out = scalars[g]
    for j in range(len(row)):
        out[j] = row[j]
    if keyed[g]:
        keys[g] = group_key(seeds[g], updates + 1)


# -- the fused step ------------------------------------------------------------
def _kinds_of(handle_type: Any) -> frozenset:
    cls = getattr(handle_type, "instance_class", None)
    kinds = getattr(cls, "KINDS", None)
    if kinds is None:
        raise TypingError("expected a handle from Optimizer.jit_handle()")
    return kinds


# A function that takes the handle reads the arrays it needs in straight-line code and
# hands them on as arguments: where the handle is still used after a branch, Numba keeps
# a reference on each of its ~35 arrays (atomic counts, about 0.35 us a call).  The
# kernels a model needs are picked at compile time (from the handle's type) and passed
# on too, so every kernel adapter below has one signature.
@njit(inline="always")
def _state32(like, m, v, v_max, codes16, codes8, absmax, keys):
    return m, v, v_max


@njit(inline="always")
def _state16(like, m, v, v_max, codes16, codes8, absmax, keys):
    return like, codes16, keys


@njit(inline="always")
def _state8(like, m, v, v_max, codes16, codes8, absmax, keys):
    return like, codes8, absmax


# kind -> its kernels (serial, threaded) and which state arrays they take
_KERNELS = {
    _cpu.KIND_32: (_cpu.adam_items, _cpu.adam_items_threaded, _state32),
    _cpu.KIND_16: (_cpu.adam_items16, _cpu.adam_items16_threaded, _state16),
    _cpu.KIND_8: (_cpu.adam_items8, _cpu.adam_items8_threaded, _state8),
    _cpu.KIND_8_AMSGRAD: (_cpu.adam_items8_amsgrad, _cpu.adam_items8_amsgrad_threaded,
                          _state8),
}
_runners: dict[tuple[int, bool], Any] = {}


@njit
def _skip(kind_items, spans, threads, tensors, scalars, grad_scales, like, m, v, v_max,
          codes16, codes8, absmax, keys):
    pass


def _runner(kind: int, threaded: bool) -> Any:
    """The launch of ``kind``'s kernel from compiled code, serial or threaded as
    ``_threads.worth_sharing`` says at run time; ``threaded`` False where the process has
    no TBB layer (its twin is then never compiled, so no layer starts)."""
    key = (kind, threaded)
    if key not in _runners:
        serial, parallel, state_of = _KERNELS[kind]
        if not threaded:
            parallel = serial

        @njit
        def run(kind_items, spans, threads, tensors, scalars, grad_scales, like, m, v, v_max,
                codes16, codes8, absmax, keys):
            start, count, elements = spans[kind, 0], spans[kind, 1], spans[kind, 2]
            items = kind_items[start:start + count]
            state = state_of(like, m, v, v_max, codes16, codes8, absmax, keys)
            if _threads.worth_sharing(elements, count, threads):
                parallel(threads, items, tensors, scalars, grad_scales, *state)
            else:
                serial(threads, items, tensors, scalars, grad_scales, *state)
        _runners[key] = run
    return _runners[key]


def _sums_runner(threaded: bool) -> Any:
    """``_runner`` for the per-item gradient sums of squares (norm clipping)."""
    key = (-1, threaded)
    if key not in _runners:
        serial = _cpu.sum_squares
        parallel = _cpu.sum_squares_threaded if threaded else serial

        @njit
        def run(threads, elements, items, tensors, like, out):
            if _threads.worth_sharing(elements, items.shape[0], threads):
                parallel(threads, items, tensors, like, out)
            else:
                serial(threads, items, tensors, like, out)
        _runners[key] = run
    return _runners[key]


def step(handle):
    """One update of every parameter from the ParamBuffer gradients: ``opt.step()``.

    Callable from ``@njit`` code, where it is inlined into the caller, and from
    Python.  Raises ValueError, with nothing changed, if the handle is out of
    date, a parameter is a plain array (its gradient has no ParamBuffer view
    to read) or a schedule gives an invalid lr.
    """
    _step_compiled(handle)


@overload(step, inline="always")
def _step_impl(handle):
    # Inlined, so the handle is not passed on: only its views table is read.
    kinds = _kinds_of(handle)
    _check_views(handle)
    threaded = _threads.parallel_layer() is not None     # may start Numba's TBB layer
    k32, k16, k8, k8a = (_runner(kind, threaded) if kind in kinds else _skip
                         for kind in (_cpu.KIND_32, _cpu.KIND_16, _cpu.KIND_8,
                                      _cpu.KIND_8_AMSGRAD))
    sums = _sums_runner(threaded)
    f = handle.types[_FIELDS.index("m")].dtype

    def impl(handle):
        w = handle.views
        _step_body(_flat(w, 0, np.bool_), _flat(w, 23, np.int64), _flat(w, 1, np.int64),
                   _table(w, 2, np.int64), _table(w, 3, np.float64), _table(w, 4, np.float64),
                   _table(w, 5, f), _flat(w, 6, np.bool_), _flat(w, 7, np.int64),
                   _flat(w, 8, np.uint64), _table(w, 12, np.int64), _flat(w, 24, np.int64),
                   _table(w, 25, np.int64), _flat(w, 26, np.int64), _flat(w, 27, np.int64),
                   _flat(w, 14, f), _flat(w, 28, np.float64), _flat(w, 29, np.float64),
                   _flat(w, 30, np.float64), _flat(w, 9, np.float64),
                   _flat(w, 10, np.float64), _flat(w, 31, f), _flat(w, 32, np.bool_),
                   _flat(w, 15, f), _flat(w, 16, f), _flat(w, 17, f), _flat(w, 20, np.uint16),
                   _flat(w, 21, np.uint8), _flat(w, 22, np.float32), _table(w, 33, np.int64),
                   _table(w, 34, np.int64), _flat(w, 35, np.int64), k32, k16, k8, k8a, sums)
    return impl


@njit
def _step_body(current, flags, counts, segment_spans, segments, rules, scalars, keyed, keys,
               seeds, tensors, buffer_grad_at, items, item_tensor, tensor_group, like,
               item_sums, extra_sums, tensor_sums, clipnorms, global_clipnorm, grad_scales,
               scaled, m, v, v_max, codes16, codes8, absmax, kind_items, kind_spans,
               thread_count, k32, k16, k8, k8a, sums):
    _check_current(current)
    if flags[PLAIN] > 0:
        raise ValueError("numba_adam.jit.step reads gradients from ParamBuffer grad views, "
                         "but this optimizer has plain-array parameters: put them in a "
                         "ParamBuffer, or update them with step_rows")
    n_groups = counts.shape[0]
    for g in range(n_groups):
        _prepare_group(counts, segment_spans, segments, rules, scalars, keyed, keys, seeds, g)
    for t in range(tensors.shape[0]):
        tensors[t, GRAD_AT] = buffer_grad_at[t]
        tensors[t, SKIP] = 0
    # the norm-clipping factors of the bound gradients (as ``Engine.clip_by_norm``)
    threads = thread_count[0]
    if flags[CLIPS]:
        sums(threads, kind_spans[:, 2].sum(), items, tensors, like, item_sums)
        extra_sums[:] = 0.0
        _cpu.clip_scales_kernel(item_sums, item_tensor, tensor_group, extra_sums, clipnorms,
                                global_clipnorm[0], tensor_sums, grad_scales)
        scaled[0] = True
    elif scaled[0]:
        grad_scales[:] = 1.0
        scaled[0] = False
    k32(kind_items, kind_spans, threads, tensors, scalars, grad_scales, like, m, v, v_max,
        codes16, codes8, absmax, keys)
    k16(kind_items, kind_spans, threads, tensors, scalars, grad_scales, like, m, v, v_max,
        codes16, codes8, absmax, keys)
    k8(kind_items, kind_spans, threads, tensors, scalars, grad_scales, like, m, v, v_max,
       codes16, codes8, absmax, keys)
    k8a(kind_items, kind_spans, threads, tensors, scalars, grad_scales, like, m, v, v_max,
        codes16, codes8, absmax, keys)
    for g in range(n_groups):
        counts[g] += 1


@njit
def _step_compiled(handle):
    step(handle)


# -- lazy row updates ----------------------------------------------------------
def _check_row_types(handle, rows, values) -> None:
    """Compile-time checks of step_rows' argument types (Numba types)."""
    _kinds_of(handle)
    if not isinstance(rows, types.Array) or rows.ndim != 1 or \
            not isinstance(rows.dtype, types.Integer):
        raise TypingError(f"step_rows: rows must be a 1-D integer array, got {rows}")
    if not isinstance(values, types.Array) or values.ndim != 2:
        raise TypingError(f"step_rows: values must be a 2-D array (one row of the parameter "
                          f"per index, its trailing dimensions flattened), got {values}")
    if values.dtype != handle.types[_FIELDS.index("m")].dtype:
        raise TypingError(f"step_rows: values must have the parameters' dtype "
                          f"{handle.types[_FIELDS.index('m')].dtype}, got {values.dtype}")


@njit
def _increasing(rows):
    for k in range(1, rows.size):
        if rows[k] <= rows[k - 1]:
            return False
    return True


@njit
def _merged(rows, values):
    """Distinct rows, sorted, and their values, summing repeats in index order (as
    ``IndexedSlices.merged`` does)."""
    order = np.argsort(rows, kind="mergesort")
    distinct = 1
    for k in range(1, rows.size):
        if rows[order[k]] != rows[order[k - 1]]:
            distinct += 1
    out_rows = np.empty(distinct, dtype=np.int64)
    out = np.empty((distinct, values.shape[1]), dtype=values.dtype)
    j = -1
    for k in range(rows.size):
        r = rows[order[k]]
        if j < 0 or r != out_rows[j]:
            j += 1
            out_rows[j] = r
            out[j] = values[order[k]]
        else:
            out[j] += values[order[k]]
    return out_rows, out


@njit
def _touched_chunks(rows, cols):
    """``_layout.touched_chunks`` for increasing rows: the sorted distinct state chunks."""
    chunk = _cpu.STATE_CHUNK
    count = 0
    last = -1
    for r in rows:
        first, end = r * cols // chunk, ((r + 1) * cols - 1) // chunk
        for c in range(max(first, last + 1), end + 1):
            count += 1
        last = max(last, end)
    out = np.empty(count, dtype=np.int64)
    count = 0
    last = -1
    for r in rows:
        first, end = r * cols // chunk, ((r + 1) * cols - 1) // chunk
        for c in range(max(first, last + 1), end + 1):
            out[count] = c
            count += 1
        last = max(last, end)
    return out


@_cpu.serial_kernel  # the row kernels' own flags, so the inlined update rounds as theirs
def _lazy_rows32(tensors, row_shapes, like, m_all, v_all, v_max_all, row_slot_at, row_slots,
                 codes16, codes8, absmax, keys, t, rows, values, row, scale):
    """``_cpu.adam_rows_lazy`` on flat row slices: the same per-row update
    (``_cpu._update_range``), without building (rows, columns) views on every call."""
    cols = row_shapes[t, 1]
    p = carray(_cpu._pointer_like(tensors[t, PARAM_AT], like), row_shapes[t, 0] * cols)
    at, vmax_at = tensors[t, STATE_OFFSET], tensors[t, VMAX_OFFSET]
    no_v_max = v_max_all[:0]
    for k in range(rows.size):
        lo = rows[k] * cols
        a = at + lo
        vmt = v_max_all[vmax_at + lo:vmax_at + lo + cols] if vmax_at >= 0 else no_v_max
        _cpu._update_range(p[lo:lo + cols], values[k], m_all[a:a + cols], v_all[a:a + cols],
                           vmt, row, scale)


@njit
def _lazy_rows_compact(tensors, row_shapes, like, m_all, v_all, v_max_all, row_slot_at,
                       row_slots, codes16, codes8, absmax, keys, t, rows, values, row, scale):
    n_rows, cols = row_shapes[t, 0], row_shapes[t, 1]
    p = carray(_cpu._pointer_like(tensors[t, PARAM_AT], like), n_rows * cols)
    at = row_slot_at[t]
    slot = row_slots[at:at + n_rows]
    for k in range(rows.size):
        slot[rows[k]] = k
    chunks = _touched_chunks(rows, cols)
    _cpu.adam_rows_compact(np.int64(1), chunks, t, tensors, p, slot, values, row, scale,
                           like, np.bool_(True), codes16, codes8, absmax, keys)
    for k in range(rows.size):
        slot[rows[k]] = -1


@njit
def _skip_rows(tensors, row_shapes, like, m_all, v_all, v_max_all, row_slot_at, row_slots,
               codes16, codes8, absmax, keys, t, rows, values, row, scale):
    pass


@njit
def _row_scale(scalars, clipnorms, global_clipnorm, scratch, g, values):
    """The gradient factor of a lazy row update: maximize's sign times any norm-clipping
    factor of ``values`` (the update's whole gradient), rounded as the Python step does."""
    sign = np.float64(scalars[g, GRAD_SIGN])
    clipnorm = clipnorms[g]
    if clipnorm > 0 or global_clipnorm[0] > 0:
        total = _engine.sum_squares(values)
        factor = 1.0
        if global_clipnorm[0] > 0:
            factor = global_clipnorm[0] / max(math.sqrt(total), global_clipnorm[0])
        if clipnorm > 0:
            factor *= clipnorm / max(math.sqrt(total), clipnorm)
        scratch[0] = factor           # the factor in the buffer's dtype, as stored
        sign *= np.float64(scratch[0])
    scratch[0] = sign
    return scratch[0]


@intrinsic
def _pointer_to(typingctx, address, dtype):
    """Reinterpret an integer address as a pointer to ``dtype`` (a NumPy scalar type)."""
    element = dtype.dtype if isinstance(dtype, types.DType) else dtype.instance_type
    pointer = types.CPointer(element)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(address, dtype), codegen


# What the compiled steps view each of ``_VIEWS`` as (None: the parameters' dtype).
_VIEW_DTYPES = (types.boolean, types.int64, types.int64, types.float64, types.float64,
                None, types.boolean, types.int64, types.uint64, types.float64,
                types.float64, None, types.int64, types.int64, None, None, None, None,
                types.int64, types.int64, types.uint16, types.uint8, types.float32,
                types.int64, types.int64, types.int64, types.int64, types.int64,
                types.float64, types.float64, types.float64, None, types.boolean,
                types.int64, types.int64, types.int64)
_VIEW_NDIMS = (1, 1, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1,
               1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 2, 1)


def _check_views(handle) -> None:
    """That every array of ``_VIEWS`` has the dtype and rank the compiled steps view it as
    (Numba types, at compile time)."""
    param = handle.types[_FIELDS.index("m")].dtype
    for k, (name, dtype) in enumerate(zip(_VIEWS, _VIEW_DTYPES)):
        have = handle.types[_FIELDS.index(name)]
        if have.dtype != (param if dtype is None else dtype) or have.ndim != _VIEW_NDIMS[k]:
            raise TypingError(f"numba_adam jit handle: {name} is {have}, not what the "
                              f"compiled steps read")


@njit(inline="always")
def _flat(views, k, dtype):
    return carray(_pointer_to(views[k, 0], dtype), views[k, 1])


@njit(inline="always")
def _table(views, k, dtype):
    return carray(_pointer_to(views[k, 0], dtype), (views[k, 1], views[k, 2]))


def step_rows(handle, tensor, rows, values):
    """Lazy update of rows ``rows`` of parameter ``tensor`` with gradients ``values``
    (shape ``(len(rows), columns)``): ``opt.step_rows(tensor, rows, values)``.

    One update of the parameter's group (its step count advances); only the
    given rows and their state change.  Raises IndexError/ValueError, with
    nothing changed, for a parameter index or row out of range, values of the
    wrong shape, an out-of-date handle or a schedule giving an invalid lr.
    Callable from ``@njit`` code, where it is inlined into the caller, and
    from Python.
    """
    _step_rows_compiled(handle, tensor, rows, values)


@overload(step_rows, inline="always")
def _step_rows_impl(handle, tensor, rows, values):
    # Inlined, so the handle is not passed on: only its views table is read.
    _check_row_types(handle, rows, values)
    kinds = _kinds_of(handle)
    dense = _lazy_rows32 if _cpu.KIND_32 in kinds else _skip_rows
    compact = _lazy_rows_compact if kinds - {_cpu.KIND_32} else _skip_rows

    _check_views(handle)

    def impl(handle, tensor, rows, values):
        w = handle.views
        f = values.dtype                         # the parameters' dtype (checked on typing)
        _rows_body(_flat(w, 0, np.bool_), _flat(w, 1, np.int64), _table(w, 2, np.int64),
                   _table(w, 3, np.float64), _table(w, 4, np.float64), _table(w, 5, f),
                   _flat(w, 6, np.bool_), _flat(w, 7, np.int64), _flat(w, 8, np.uint64),
                   _flat(w, 9, np.float64), _flat(w, 10, np.float64), _flat(w, 11, f),
                   _table(w, 12, np.int64), _table(w, 13, np.int64), _flat(w, 14, f),
                   _flat(w, 15, f), _flat(w, 16, f), _flat(w, 17, f), _flat(w, 18, np.int64),
                   _flat(w, 19, np.int64), _flat(w, 20, np.uint16), _flat(w, 21, np.uint8),
                   _flat(w, 22, np.float32), tensor, rows, values, dense, compact)
    return impl


@njit
def _rows_body(current, counts, segment_spans, segments, rules, scalars, keyed, keys, seeds,
               clipnorms, global_clipnorm, scratch, tensors, row_shapes, like, m, v, v_max,
               row_slot_at, row_slots, codes16, codes8, absmax, tensor, rows, values, dense,
               compact):
    _check_current(current)
    n = tensors.shape[0]
    if tensor < 0 or tensor >= n:
        raise IndexError("step_rows: parameter index " + str(tensor) + " is out of range for "
                         + str(n) + " parameters")
    n_rows, cols = row_shapes[tensor, 0], row_shapes[tensor, 1]
    if n_rows < 0:
        raise ValueError("step_rows: parameter " + str(tensor) + " is a 0-d array and has "
                         "no rows")
    if row_shapes[tensor, 2] == 0:
        raise ValueError("step_rows needs a C-ordered parameter; parameter " + str(tensor)
                         + " is Fortran-ordered")
    if values.shape[0] != rows.size or values.shape[1] != cols:
        raise ValueError("step_rows: values have shape (" + str(values.shape[0]) + ", "
                         + str(values.shape[1]) + "), expected (len(rows), columns) = ("
                         + str(rows.size) + ", " + str(cols) + ") for parameter "
                         + str(tensor))
    for k in range(rows.size):
        if rows[k] < 0 or rows[k] >= n_rows:
            raise IndexError("step_rows: row " + str(rows[k]) + " is out of range for "
                             "parameter " + str(tensor) + " with " + str(n_rows) + " rows")
    g = tensors[tensor, GROUP]
    _prepare_group(counts, segment_spans, segments, rules, scalars, keyed, keys, seeds, g)
    if not _increasing(rows):     # merge repeats and sort (as IndexedSlices.merged does)
        rows, values = _merged(rows, values)
    scale = _row_scale(scalars, clipnorms, global_clipnorm, scratch, g, values)
    if tensors[tensor, STATE_BITS] == 32:
        dense(tensors, row_shapes, like, m, v, v_max, row_slot_at, row_slots, codes16, codes8,
              absmax, keys, tensor, rows, values, scalars[g], scale)
    else:
        compact(tensors, row_shapes, like, m, v, v_max, row_slot_at, row_slots, codes16,
                codes8, absmax, keys, tensor, rows, values, scalars[g], scale)
    counts[g] += 1


@njit
def _step_rows_compiled(handle, tensor, rows, values):
    step_rows(handle, tensor, rows, values)
