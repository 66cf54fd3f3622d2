"""Numba CPU kernels: every parameter of every group in one launch.

A launch walks a table of work items (a range of one tensor); each item finds
its tensor's parameter and gradient by address, its flat state by offset and
its group's scalars by row, so tensors scattered in memory (plain arrays) and
slices of one flat ``ParamBuffer`` go through the same loop.

Scalar dtype policy: the per-group scalar table has the buffer's dtype, so a
float32 buffer runs float32 arithmetic, and each kernel has exactly one
signature per buffer dtype (float32, float64).
"""

from numba import carray, njit, prange, types
from numba.extending import intrinsic

from . import _formula
from ._config import (
    BETA2, DECAY, DENOM_SCALE, EPS, FASTMATH, GRAD_ADDR, GRAD_SIGN, GROUP,
    ITEM_BEGIN, ITEM_LENGTH, ITEM_TENSOR, L2, ONE_MINUS_BETA1, ONE_MINUS_BETA2,
    PARAM_ADDR, STATE_OFFSET, STEP_SIZE, VMAX_OFFSET,
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
def _update_item(item, items, tensors, hyper, m, v, v_max):
    """Adam update of one work item: a contiguous range of one tensor."""
    t = items[item, ITEM_TENSOR]
    begin = items[item, ITEM_BEGIN]
    n = items[item, ITEM_LENGTH]
    byte_offset = begin * m.itemsize
    p = carray(_pointer_like(tensors[t, PARAM_ADDR] + byte_offset, m), n)
    g = carray(_pointer_like(tensors[t, GRAD_ADDR] + byte_offset, m), n)
    state = tensors[t, STATE_OFFSET] + begin
    mt = m[state:state + n]
    vt = v[state:state + n]
    row = hyper[tensors[t, GROUP]]
    grad_sign = row[GRAD_SIGN]
    l2 = row[L2]
    decay = row[DECAY]
    one_minus_beta1 = row[ONE_MINUS_BETA1]
    beta2 = row[BETA2]
    one_minus_beta2 = row[ONE_MINUS_BETA2]
    step_size = row[STEP_SIZE]
    denom_scale = row[DENOM_SCALE]
    eps = row[EPS]
    if tensors[t, VMAX_OFFSET] < 0:
        for i in range(n):
            gi = effective_grad(g[i], p[i], grad_sign, l2)
            mi = first_moment(mt[i], gi, one_minus_beta1)
            vi = second_moment(vt[i], gi, beta2, one_minus_beta2)
            mt[i] = mi
            vt[i] = vi
            p[i] = param_update(p[i], mi, vi, decay, step_size, denom_scale, eps)
    else:
        vmax_start = tensors[t, VMAX_OFFSET] + begin
        vmt = v_max[vmax_start:vmax_start + n]
        for i in range(n):
            gi = effective_grad(g[i], p[i], grad_sign, l2)
            mi = first_moment(mt[i], gi, one_minus_beta1)
            vi = second_moment(vt[i], gi, beta2, one_minus_beta2)
            vmi = amsgrad_max(vmt[i], vi)
            mt[i] = mi
            vt[i] = vi
            vmt[i] = vmi
            p[i] = param_update(p[i], mi, vmi, decay, step_size, denom_scale, eps)


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def adam_step_parallel(items, tensors, hyper, m, v, v_max):
    """Update every work item, items spread over the thread pool."""
    for item in prange(items.shape[0]):
        _update_item(item, items, tensors, hyper, m, v, v_max)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def adam_step_serial(items, tensors, hyper, m, v, v_max):
    """Update every work item on the calling thread (small models)."""
    for item in range(items.shape[0]):
        _update_item(item, items, tensors, hyper, m, v, v_max)
