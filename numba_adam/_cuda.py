"""CUDA kernels (numba-cuda) built from the same per-element arithmetic as the CPU.

Imported only when CUDA arrays appear.  Parameters live in flat device
"storages" (a ``ParamBuffer(device="cuda")``'s data, or one plain CUDA array);
the tensor table holds each tensor's element offset in its storage, so one
launch per storage updates every tensor of every group in it.  Blocks take
work items (grid-stride over items), threads stride within an item, so reads
and writes are coalesced.

Scalar dtype policy as on the CPU: the per-group table has the buffer's dtype.
"""

import math

import numpy as np
from numba import cuda, float64

from . import _formula
from ._config import (
    BETA2, CLIP_VALUE, CUDA_BLOCK_SIZE, DECAY, DENOM_SCALE, EPS, GRAD_SIGN, GROUP, ITEM_BEGIN,
    ITEM_LENGTH, ITEM_TENSOR, L2, ONE_MINUS_BETA1, ONE_MINUS_BETA2, PARAM_ADDR, SKIP,
    STATE_OFFSET, STEP_SIZE, VMAX_OFFSET,
)

_device = cuda.jit(device=True)
effective_grad = _device(_formula.effective_grad)
first_moment = _device(_formula.first_moment)
second_moment = _device(_formula.second_moment)
amsgrad_max = _device(_formula.amsgrad_max)
param_update = _device(_formula.param_update)


@cuda.jit(device=True)
def update_one(p, pi, g, m, v, si, v_max, vi, row, grad_scale):
    """Adam update of element ``pi`` of p (state at ``si``, v_max at ``vi`` or -1)."""
    gi = effective_grad(g, p[pi], grad_scale, row[L2], row[CLIP_VALUE])
    mi = first_moment(m[si], gi, row[ONE_MINUS_BETA1])
    v_new = second_moment(v[si], gi, row[BETA2], row[ONE_MINUS_BETA2])
    m[si] = mi
    v[si] = v_new
    if vi >= 0:
        v_new = amsgrad_max(v_max[vi], v_new)
        v_max[vi] = v_new
    p[pi] = param_update(p[pi], mi, v_new, row[DECAY], row[STEP_SIZE], row[DENOM_SCALE],
                         row[EPS])


@cuda.jit
def adam_step(p, g, items, first_item, last_item, tensors, hyper, grad_scales, m, v, v_max):
    """Update items [first_item, last_item) of one storage (flat p and g)."""
    for item in range(first_item + cuda.blockIdx.x, last_item, cuda.gridDim.x):
        t = items[item, ITEM_TENSOR]
        if tensors[t, SKIP] == 0:
            begin = items[item, ITEM_BEGIN]
            base = tensors[t, PARAM_ADDR] + begin
            state = tensors[t, STATE_OFFSET] + begin
            vmax = tensors[t, VMAX_OFFSET]
            row = hyper[tensors[t, GROUP]]
            scale = row[GRAD_SIGN] * grad_scales[t]
            for i in range(cuda.threadIdx.x, items[item, ITEM_LENGTH], cuda.blockDim.x):
                update_one(p, base + i, g[base + i], m, v, state + i, v_max,
                           vmax + begin + i if vmax >= 0 else -1, row, scale)


@cuda.jit
def grad_sum_squares(g, items, first_item, last_item, tensors, out):
    """Per-item float64 sums of squared gradients; each block sums its threads in order."""
    partial = cuda.shared.array(CUDA_BLOCK_SIZE, float64)
    for item in range(first_item + cuda.blockIdx.x, last_item, cuda.gridDim.x):
        t = items[item, ITEM_TENSOR]
        total = 0.0
        if tensors[t, SKIP] == 0:
            base = tensors[t, PARAM_ADDR] + items[item, ITEM_BEGIN]
            for i in range(cuda.threadIdx.x, items[item, ITEM_LENGTH], cuda.blockDim.x):
                x = float64(g[base + i])
                total += x * x
        partial[cuda.threadIdx.x] = total
        cuda.syncthreads()
        if cuda.threadIdx.x == 0:
            s = 0.0
            for k in range(cuda.blockDim.x):
                s += partial[k]
            out[item] = s
        cuda.syncthreads()


@cuda.jit
def clip_scales(item_sums, items, tensors, extra_sums, clipnorms, global_clipnorm,
                tensor_sums, grad_scales):
    """Norm-clipping factor of every tensor, combined on one thread in a fixed order."""
    if cuda.grid(1) != 0:
        return
    for t in range(tensor_sums.shape[0]):
        tensor_sums[t] = extra_sums[t]
    for item in range(items.shape[0]):
        tensor_sums[items[item, ITEM_TENSOR]] += item_sums[item]
    total = 0.0
    for t in range(tensor_sums.shape[0]):
        total += tensor_sums[t]
    shared_scale = 1.0
    if global_clipnorm > 0:
        shared_scale = global_clipnorm / max(math.sqrt(total), global_clipnorm)
    for t in range(tensor_sums.shape[0]):
        scale = shared_scale
        clipnorm = clipnorms[tensors[t, GROUP]]
        if clipnorm > 0:
            scale *= clipnorm / max(math.sqrt(tensor_sums[t]), clipnorm)
        grad_scales[t] = scale


@cuda.jit
def adam_rows_dense(p, base, m, v, state, v_max, vmax_base, cols, n_rows, row_slot, values,
                    zero, row, grad_scale):
    """Sparse gradient, dense-equivalent: every element of the table moves."""
    for k in range(cuda.grid(1), n_rows * cols, cuda.gridsize(1)):
        slot = row_slot[k // cols]
        g = values[slot, k % cols] if slot >= 0 else zero
        update_one(p, base + k, g, m, v, state + k, v_max,
                   vmax_base + k if vmax_base >= 0 else -1, row, grad_scale)


@cuda.jit
def adam_rows_lazy(p, base, m, v, state, v_max, vmax_base, cols, rows, values, row, grad_scale):
    """Sparse gradient, lazy: only the given rows change."""
    for k in range(cuda.grid(1), rows.shape[0] * cols, cuda.gridsize(1)):
        offset = rows[k // cols] * cols + k % cols
        update_one(p, base + offset, values[k // cols, k % cols], m, v, state + offset, v_max,
                   vmax_base + offset if vmax_base >= 0 else -1, row, grad_scale)


def launch_config(work_items: int) -> tuple[int, int]:
    """(blocks, threads) for a launch over ``work_items`` items (read from _config at call time,
    so tests can shrink them)."""
    from . import _config
    return max(1, min(work_items, _config.CUDA_MAX_BLOCKS)), _config.CUDA_BLOCK_SIZE


def zeros(shape, dtype, stream=0):
    return cuda.to_device(np.zeros(shape, dtype=dtype), stream=stream)
