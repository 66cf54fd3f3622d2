"""Numba CPU kernels: every parameter of every group in one launch.

A launch walks a table of work items (a range of one tensor); each item finds
its tensor's parameter and gradient by address, its flat state by offset and
its group's scalars by row, so tensors scattered in memory (plain arrays) and
slices of one flat ``ParamBuffer`` go through the same loop.

Scalar dtype policy: the per-group scalar table has the buffer's dtype, so a
float32 buffer runs float32 arithmetic, and each kernel has exactly one
signature per buffer dtype (float32, float64).
"""

import numpy as np
from numba import carray, njit, prange, types
from numba.extending import intrinsic

from . import _formula
from ._config import (
    BETA2, CLIP_VALUE, DECAY, DENOM_SCALE, EPS, FASTMATH, GRAD_ADDR, GRAD_SIGN, GROUP,
    ITEM_BEGIN, ITEM_LENGTH, ITEM_TENSOR, L2, ONE_MINUS_BETA1, ONE_MINUS_BETA2,
    PARAM_ADDR, SKIP, STATE_OFFSET, STEP_SIZE, VMAX_OFFSET,
)

_element = njit(inline="always", fastmath=FASTMATH, error_model="numpy")
effective_grad = _element(_formula.effective_grad)
first_moment = _element(_formula.first_moment)
second_moment = _element(_formula.second_moment)
amsgrad_max = _element(_formula.amsgrad_max)
param_update = _element(_formula.param_update)


@intrinsic
def _pointer_like(typingctx, address, like):
    """Reinterpret an integer address as a pointer to ``like``'s dtype."""
    pointer = types.CPointer(like.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(address, like), codegen


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _update_range(p, g, mt, vt, vmt, row, grad_scale):
    """Adam update of matching 1-D ranges; ``vmt`` is empty without AMSGrad."""
    l2 = row[L2]
    limit = row[CLIP_VALUE]
    decay = row[DECAY]
    one_minus_beta1 = row[ONE_MINUS_BETA1]
    beta2 = row[BETA2]
    one_minus_beta2 = row[ONE_MINUS_BETA2]
    step_size = row[STEP_SIZE]
    denom_scale = row[DENOM_SCALE]
    eps = row[EPS]
    if vmt.size == 0:
        for i in range(p.size):
            gi = effective_grad(g[i], p[i], grad_scale, l2, limit)
            mi = first_moment(mt[i], gi, one_minus_beta1)
            vi = second_moment(vt[i], gi, beta2, one_minus_beta2)
            mt[i] = mi
            vt[i] = vi
            p[i] = param_update(p[i], mi, vi, decay, step_size, denom_scale, eps)
    else:
        for i in range(p.size):
            gi = effective_grad(g[i], p[i], grad_scale, l2, limit)
            mi = first_moment(mt[i], gi, one_minus_beta1)
            vi = second_moment(vt[i], gi, beta2, one_minus_beta2)
            vmi = amsgrad_max(vmt[i], vi)
            mt[i] = mi
            vt[i] = vi
            vmt[i] = vmi
            p[i] = param_update(p[i], mi, vmi, decay, step_size, denom_scale, eps)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _update_item(item, items, tensors, hyper, grad_scales, m, v, v_max):
    """Adam update of one work item: a contiguous range of one tensor."""
    t = items[item, ITEM_TENSOR]
    if tensors[t, SKIP] != 0:
        return
    begin = items[item, ITEM_BEGIN]
    n = items[item, ITEM_LENGTH]
    byte_offset = begin * m.itemsize
    p = carray(_pointer_like(tensors[t, PARAM_ADDR] + byte_offset, m), n)
    g = carray(_pointer_like(tensors[t, GRAD_ADDR] + byte_offset, m), n)
    state = tensors[t, STATE_OFFSET] + begin
    vmax_start = tensors[t, VMAX_OFFSET] + begin
    vmt = v_max[vmax_start:vmax_start + n] if tensors[t, VMAX_OFFSET] >= 0 else v_max[:0]
    row = hyper[tensors[t, GROUP]]
    _update_range(p, g, m[state:state + n], v[state:state + n], vmt, row,
                  row[GRAD_SIGN] * grad_scales[t])


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def adam_step_parallel(items, tensors, hyper, grad_scales, m, v, v_max):
    """Update every work item, items spread over the thread pool."""
    for item in prange(items.shape[0]):
        _update_item(item, items, tensors, hyper, grad_scales, m, v, v_max)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def adam_step_serial(items, tensors, hyper, grad_scales, m, v, v_max):
    """Update every work item on the calling thread (small models)."""
    for item in range(items.shape[0]):
        _update_item(item, items, tensors, hyper, grad_scales, m, v, v_max)


@njit(parallel=True, cache=True, error_model="numpy")
def grad_sum_squares(items, tensors, like, out):
    """Sum of squared gradient elements of each work item, in float64.

    Items are a fixed chunking, so summing ``out`` per tensor in item order
    gives the same norms for any thread count.
    """
    for item in prange(items.shape[0]):
        t = items[item, ITEM_TENSOR]
        n = items[item, ITEM_LENGTH]
        if tensors[t, SKIP] != 0:
            out[item] = 0.0
            continue
        g = carray(_pointer_like(tensors[t, GRAD_ADDR] + items[item, ITEM_BEGIN] * like.itemsize,
                                 like), n)
        total = 0.0
        for i in range(n):
            x = np.float64(g[i])
            total += x * x
        out[item] = total


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def adam_rows_dense(p, m, v, v_max, row_slot, values, row, grad_scale, zeros):
    """Sparse gradient, dense-equivalent (Keras/TF): every row decays and moves.

    Row r's gradient is ``values[row_slot[r]]``, or zero where ``row_slot[r] < 0``;
    runs of zero-gradient rows are updated as one flat range against ``zeros``
    (a zero array of at least one chunk of rows), so untouched rows cost what
    a dense update costs, minus the gradient read.
    """
    n_rows, cols = p.shape
    chunk_rows = max(1, zeros.size // max(cols, 1))
    pf, mf, vf = p.ravel(), m.ravel(), v.ravel()
    use_vmax = v_max.shape[0] > 0
    vmf = v_max.ravel()
    for chunk in prange((n_rows + chunk_rows - 1) // chunk_rows):
        r = chunk * chunk_rows
        end = min(r + chunk_rows, n_rows)
        while r < end:
            slot = row_slot[r]
            if slot >= 0:
                last = r + 1
                g = values[slot]
            else:
                last = r + 1
                while last < end and row_slot[last] < 0:
                    last += 1
                g = zeros[:(last - r) * cols]
            a, b = r * cols, last * cols
            _update_range(pf[a:b], g, mf[a:b], vf[a:b], vmf[a:b] if use_vmax else vmf[:0],
                          row, grad_scale)
            r = last


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def adam_rows_lazy(p, m, v, v_max, rows, values, row, grad_scale):
    """Sparse gradient, lazy (TF LazyAdam, torch SparseAdam): only ``rows`` change."""
    for k in prange(rows.shape[0]):
        r = rows[k]
        vmt = v_max[r] if v_max.shape[0] > 0 else v_max.ravel()
        _update_range(p[r], values[k], m[r], v[r], vmt, row, grad_scale)
