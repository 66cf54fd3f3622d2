"""CUDA backend (numba-cuda), built from the same per-element arithmetic as the CPU.

Twin of ``_cpu``: the same launchers, array helpers and ``Plan`` methods.
Imported only when CUDA arrays appear.  Parameters live in flat device
storages (a ``ParamBuffer(device="cuda")``'s data, or one plain CUDA array);
the tensor table holds each tensor's element offset in its storage, so one
launch per storage updates every tensor of every group in it.  Blocks take
work items (grid-stride over items), threads stride within an item, so reads
and writes are coalesced.

Kernels run on the default stream; numba synchronises on a stream exported
through ``__cuda_array_interface__`` (v3) when it imports an array, and
PyTorch's tensors (v2, no stream) are ordered by the default stream.

Scalar dtype policy as on the CPU: the group-scalar table has the buffer's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import config, cuda, float32, float64, int64

from . import _codes, _formula
from ._config import (
    BETA2, CLIP_VALUE, CUDA_BLOCK_SIZE, DECAY, DENOM_SCALE, EPS, FLUSH_BELOW, GRAD_SIGN, GROUP,
    INDEX_BASE, ITEM_BEGIN, ITEM_COLUMNS, ITEM_LENGTH, ITEM_TENSOR, L2, ONE_MINUS_BETA1,
    ONE_MINUS_BETA2, PARAM_AT, SCALAR_COLUMNS, SKIP, STATE_BITS, STATE_CHUNK, STATE_OFFSET,
    STEP_SIZE, V_OFFSET, VMAX_OFFSET, WORK_ITEM_ELEMENTS,
)
from ._layout import Layout, touched_chunks
from .buffer import address_of

_device = cuda.jit(device=True)
effective_grad = _device(_formula.effective_grad)
first_moment = _device(_formula.first_moment)
second_moment = _device(_formula.second_moment)
amsgrad_max = _device(_formula.amsgrad_max)
param_update = _device(_formula.param_update)
_clip_scales = _device(_formula.clip_scales)

if config.ENABLE_CUDASIM:   # device functions run as Python: NumPy bit casts, Python ints
    def _float_bits(x):
        return int(np.float32(x).view(np.uint32))

    def _bits_float(bits):
        return np.uint32(int(bits) & 0xFFFFFFFF).view(np.float32)

    def _python_ints(f):
        """``f`` with NumPy integer arguments made Python ints (no fixed-width overflow)."""
        def call(*args):
            return f(*(int(a) if isinstance(a, np.integer) else a for a in args))
        return call

    _codecs = _codes.make_codecs(_python_ints, _float_bits, _bits_float, np.float32)
else:
    from . import _bits
    _codecs = _codes.make_codecs(_device, _bits.float_bits, _bits.bits_float, float32,
                                 _bits.NATIVE)
(random_bits, bf16_decode, bf16_encode, m8_decode, v8_decode, m8_encode, v8_encode,
 magnitude_bits, inverse_scale, _) = _codecs


@cuda.jit(device=True)
def update_one(p, pi, g, m, v, si, v_max, vi, row, grad_scale):
    """Adam update of element ``pi`` of p (state at ``si``, v_max at ``vi`` or -1)."""
    gi = effective_grad(g, p[pi], grad_scale, row[L2], row[CLIP_VALUE])
    mi = first_moment(m[si], gi, row[ONE_MINUS_BETA1], row[FLUSH_BELOW])
    v_new = second_moment(v[si], gi, row[BETA2], row[ONE_MINUS_BETA2], row[FLUSH_BELOW])
    m[si] = mi
    v[si] = v_new
    if vi >= 0:
        v_new = amsgrad_max(v_max[vi], v_new)
        v_max[vi] = v_new
    p[pi] = param_update(p[pi], mi, v_new, row[DECAY], row[STEP_SIZE], row[DENOM_SCALE],
                         row[EPS])


@cuda.jit
def adam_items(p, g, items, first_item, last_item, tensors, scalars, grad_scales, m, v, v_max):
    """Update items [first_item, last_item) of one storage (flat p and g)."""
    for item in range(first_item + cuda.blockIdx.x, last_item, cuda.gridDim.x):
        t = items[item, ITEM_TENSOR]
        if tensors[t, SKIP] == 0 and tensors[t, STATE_BITS] == 32:
            begin = items[item, ITEM_BEGIN]
            base = tensors[t, PARAM_AT] + begin
            state = tensors[t, STATE_OFFSET] + begin
            vmax = tensors[t, VMAX_OFFSET]
            row = scalars[tensors[t, GROUP]]
            scale = row[GRAD_SIGN] * grad_scales[t]
            for i in range(cuda.threadIdx.x, items[item, ITEM_LENGTH], cuda.blockDim.x):
                update_one(p, base + i, g[base + i], m, v, state + i, v_max,
                           vmax + begin + i if vmax >= 0 else -1, row, scale)


@cuda.jit(device=True)
def decode_one(bits, tensors, t, e, codes16, codes8, absmax, sm, sv, svm, j):
    """Element ``e`` of tensor ``t``'s compact m, v (and v_max) into slot ``j`` of the
    shared scratch."""
    m_at, v_at = tensors[t, STATE_OFFSET] + e, tensors[t, V_OFFSET] + e
    vmax = tensors[t, VMAX_OFFSET]
    if bits == 16:
        sm[j] = bf16_decode(codes16[m_at])
        sv[j] = bf16_decode(codes16[v_at])
        if vmax >= 0:
            svm[j] = bf16_decode(codes16[vmax + e])
    else:
        sm[j] = m8_decode(codes8[m_at]) * absmax[m_at // _codes.BLOCK]
        sv[j] = v8_decode(codes8[v_at]) * absmax[v_at // _codes.BLOCK]
        if vmax >= 0:
            svm[j] = v8_decode(codes8[vmax + e]) * absmax[(vmax + e) // _codes.BLOCK]


@cuda.jit(device=True)
def encode_chunk(bits, tensors, t, c0, k, codes16, codes8, absmax, sm, sv, svm, top, key):
    """Store the shared scratch (elements ``c0`` .. ``c0 + k - 1`` of tensor ``t``) as codes:
    16 bits with stochastic rounding, 8 bits against the chunk's new absmax (one block).
    Every thread of the block calls it."""
    m_at, v_at = tensors[t, STATE_OFFSET] + c0, tensors[t, V_OFFSET] + c0
    vmax = tensors[t, VMAX_OFFSET]
    if bits == 16:
        index = tensors[t, INDEX_BASE] + c0
        for j in range(cuda.threadIdx.x, k, cuda.blockDim.x):
            r = random_bits(key, index + j)
            codes16[m_at + j] = bf16_encode(float32(sm[j]), r & 0xFFFF)
            codes16[v_at + j] = bf16_encode(float32(sv[j]), r >> 16)
            if vmax >= 0:
                codes16[vmax + c0 + j] = bf16_encode(float32(svm[j]), r >> 16)
        return
    if cuda.threadIdx.x == 0:
        top[0] = 0
        top[1] = 0
        top[2] = 0
    cuda.syncthreads()
    for j in range(cuda.threadIdx.x, k, cuda.blockDim.x):
        cuda.atomic.max(top, 0, magnitude_bits(float32(sm[j])))
        cuda.atomic.max(top, 1, magnitude_bits(float32(sv[j])))
        if vmax >= 0:
            cuda.atomic.max(top, 2, magnitude_bits(float32(svm[j])))
    cuda.syncthreads()
    inv_m, scale_m = inverse_scale(top[0])
    inv_v, scale_v = inverse_scale(top[1])
    inv_vm, scale_vm = inverse_scale(top[2])
    for j in range(cuda.threadIdx.x, k, cuda.blockDim.x):
        den = v8_encode(float32(sv[j]) * inv_v)
        codes8[v_at + j] = den
        if vmax >= 0:
            den = v8_encode(float32(svm[j]) * inv_vm)
            codes8[vmax + c0 + j] = den
        codes8[m_at + j] = m8_encode(float32(sm[j]) * inv_m) if den != 0 else 0
    if cuda.threadIdx.x == 0:
        absmax[m_at // _codes.BLOCK] = scale_m
        absmax[v_at // _codes.BLOCK] = scale_v
        if vmax >= 0:
            absmax[(vmax + c0) // _codes.BLOCK] = scale_vm
    cuda.syncthreads()   # the scratch and maxima are reused by the next chunk


def _compact_kernels(scratch_type):
    """The kernels for 16- and 8-bit state, with shared scratch of the buffer's float type
    (so the arithmetic is the CPU's: decode, the same element update, encode)."""

    @cuda.jit
    def adam_compact_items(p, g, items, first_item, last_item, tensors, scalars, grad_scales,
                           codes16, codes8, absmax, keys):
        """Update the 16- and 8-bit tensors of items [first_item, last_item) of one storage:
        each block takes items, and decodes, updates and encodes one chunk at a time."""
        sm = cuda.shared.array(STATE_CHUNK, scratch_type)
        sv = cuda.shared.array(STATE_CHUNK, scratch_type)
        svm = cuda.shared.array(STATE_CHUNK, scratch_type)
        top = cuda.shared.array(3, int64)
        for item in range(first_item + cuda.blockIdx.x, last_item, cuda.gridDim.x):
            t = items[item, ITEM_TENSOR]
            bits = tensors[t, STATE_BITS]
            if tensors[t, SKIP] != 0 or bits == 32:
                continue
            begin = items[item, ITEM_BEGIN]
            n = items[item, ITEM_LENGTH]
            base = tensors[t, PARAM_AT] + begin
            row = scalars[tensors[t, GROUP]]
            scale = row[GRAD_SIGN] * grad_scales[t]
            vm = 0 if tensors[t, VMAX_OFFSET] >= 0 else -1
            key = keys[tensors[t, GROUP]]
            for c in range(0, n, STATE_CHUNK):
                k = min(STATE_CHUNK, n - c)
                for j in range(cuda.threadIdx.x, k, cuda.blockDim.x):
                    decode_one(bits, tensors, t, begin + c + j, codes16, codes8, absmax,
                               sm, sv, svm, j)
                    update_one(p, base + c + j, g[base + c + j], sm, sv, j, svm,
                               j if vm == 0 else -1, row, scale)
                encode_chunk(bits, tensors, t, begin + c, k, codes16, codes8, absmax, sm, sv,
                             svm, top, key)

    @cuda.jit
    def adam_compact_rows(p, base, t, tensors, chunks, row_slot, values, cols, lazy, zero, row,
                          grad_scale, codes16, codes8, absmax, keys):
        """Sparse gradient on a tensor with compact state: blocks take chunks; rows with a
        gradient are updated, the others with a zero gradient or, ``lazy``, not at all."""
        sm = cuda.shared.array(STATE_CHUNK, scratch_type)
        sv = cuda.shared.array(STATE_CHUNK, scratch_type)
        svm = cuda.shared.array(STATE_CHUNK, scratch_type)
        top = cuda.shared.array(3, int64)
        bits = tensors[t, STATE_BITS]
        vm = 0 if tensors[t, VMAX_OFFSET] >= 0 else -1
        key = keys[tensors[t, GROUP]]
        n = row_slot.shape[0] * cols
        for q in range(cuda.blockIdx.x, chunks.shape[0], cuda.gridDim.x):
            c0 = chunks[q] * STATE_CHUNK
            k = min(STATE_CHUNK, n - c0)
            for j in range(cuda.threadIdx.x, k, cuda.blockDim.x):
                e = c0 + j
                decode_one(bits, tensors, t, e, codes16, codes8, absmax, sm, sv, svm, j)
                slot = row_slot[e // cols]
                if slot >= 0 or not lazy:
                    gj = values[slot, e % cols] if slot >= 0 else zero
                    update_one(p, base + e, gj, sm, sv, j, svm, j if vm == 0 else -1, row,
                               grad_scale)
            encode_chunk(bits, tensors, t, c0, k, codes16, codes8, absmax, sm, sv, svm, top, key)

    return adam_compact_items, adam_compact_rows


COMPACT_KERNELS = {np.dtype(np.float32): _compact_kernels(float32),
                   np.dtype(np.float64): _compact_kernels(float64)}


@cuda.jit
def sum_squares_items(g, items, first_item, last_item, tensors, out):
    """Per-item float64 sums of squared gradients; each block sums its threads in order."""
    partial = cuda.shared.array(CUDA_BLOCK_SIZE, float64)
    for item in range(first_item + cuda.blockIdx.x, last_item, cuda.gridDim.x):
        t = items[item, ITEM_TENSOR]
        total = 0.0
        if tensors[t, SKIP] == 0:
            base = tensors[t, PARAM_AT] + items[item, ITEM_BEGIN]
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
def clip_scales_kernel(item_sums, item_tensor, tensor_group, extra_sums, clipnorms,
                       global_clipnorm, tensor_sums, grad_scales):
    """``_formula.clip_scales`` on one thread (a fixed order, no host round trip)."""
    if cuda.grid(1) == 0:
        _clip_scales(item_sums, item_tensor, tensor_group, extra_sums, clipnorms,
                     global_clipnorm, tensor_sums, grad_scales)


@cuda.jit
def adam_rows_dense_kernel(p, base, m, v, state, v_max, vmax_base, cols, n_rows, row_slot,
                           values, zero, row, grad_scale):
    """Sparse gradient, dense-equivalent: every element of the table moves."""
    for k in range(cuda.grid(1), n_rows * cols, cuda.gridsize(1)):
        slot = row_slot[k // cols]
        g = values[slot, k % cols] if slot >= 0 else zero
        update_one(p, base + k, g, m, v, state + k, v_max,
                   vmax_base + k if vmax_base >= 0 else -1, row, grad_scale)


@cuda.jit
def adam_rows_lazy_kernel(p, base, m, v, state, v_max, vmax_base, cols, rows, values, row,
                          grad_scale):
    """Sparse gradient, lazy: only the given rows change."""
    for k in range(cuda.grid(1), rows.shape[0] * cols, cuda.gridsize(1)):
        offset = rows[k // cols] * cols + k % cols
        update_one(p, base + offset, values[k // cols, k % cols], m, v, state + offset, v_max,
                   vmax_base + offset if vmax_base >= 0 else -1, row, grad_scale)


def launch_config(work_items: int) -> tuple[int, int]:
    """(blocks, threads) for a launch over ``work_items`` items (read from _config at call
    time, so tests can shrink them)."""
    from . import _config
    return max(1, min(work_items, _config.CUDA_MAX_BLOCKS)), _config.CUDA_BLOCK_SIZE


# -- arrays ------------------------------------------------------------------
def zeros(n: int, dtype: np.dtype):
    return cuda.to_device(np.zeros(max(n, 1), dtype=dtype))[:n]


def to_host(array) -> np.ndarray:
    return array.copy_to_host()


def host_view(array) -> np.ndarray:
    return array.copy_to_host()


def copy_from_host(target, host: np.ndarray) -> None:
    target.copy_to_device(np.ascontiguousarray(host, dtype=target.dtype))


def shaped(flat, shape: tuple, order: str):
    return flat.reshape(shape)


def as_device_array(array: Any):
    """A numba device array viewing a CUDA array (CuPy, PyTorch, numba), zero-copy."""
    if hasattr(array, "copy_to_host") and hasattr(array, "is_c_contiguous"):
        return array
    return cuda.as_cuda_array(array)


def as_array(value: Any, label: str):
    """A gradient as a C-contiguous numba device array; host arrays are refused."""
    from .buffer import is_cuda_array
    if not is_cuda_array(value):
        raise TypeError(f"gradient for {label} must be a CUDA array like its parameter, got "
                        f"{type(value).__name__}")
    array = as_device_array(value)
    if not array.is_c_contiguous():
        raise ValueError(f"gradient for {label} must be C-contiguous")
    return array


# -- plan ----------------------------------------------------------------------
@dataclass
class Storage:
    """One flat device array of parameters and the gradient array it is read with."""

    p: Any
    owner: Any            # its ParamBuffer, or None for a plain CUDA array
    tensors: list
    g: Any = None
    first_item: int = 0
    last_item: int = 0


class Plan:
    """The launch tables of one engine on the GPU (host copies and device copies)."""

    def __init__(self, layout: Layout, dtype: np.dtype) -> None:
        self.layout = layout
        self.dtype = np.dtype(dtype)
        specs = layout.specs
        self.storages: list[Storage] = []
        by_owner: dict[int, Storage] = {}
        offsets = np.zeros(len(specs), dtype=np.int64)
        for i, spec in enumerate(specs):
            if spec.owner is None:
                self.storages.append(Storage(spec.array.reshape(int(layout.numels[i])), None, [i]))
                continue
            if id(spec.owner) not in by_owner:
                by_owner[id(spec.owner)] = Storage(spec.owner.data, spec.owner, [])
                self.storages.append(by_owner[id(spec.owner)])
            by_owner[id(spec.owner)].tensors.append(i)
            offsets[i] = (address_of(spec.array) - address_of(spec.owner.data)) \
                // self.dtype.itemsize
        self.storage_of = {i: s for s in self.storages for i in s.tensors}
        # Items grouped by storage, so each launch covers one consecutive range.
        rank = {t: r for r, t in enumerate(i for s in self.storages for i in s.tensors)}
        items = layout.items
        if len(items):
            items = items[np.argsort([rank[t] for t in items[:, ITEM_TENSOR]], kind="stable")]
        for s in self.storages:
            where = np.flatnonzero(np.isin(items[:, ITEM_TENSOR], s.tensors))
            s.first_item, s.last_item = (int(where[0]), int(where[-1]) + 1) if where.size else (0, 0)
        self.items = items
        self.item_count = max(len(items), 1)
        self.tensors = layout.tensor_table()
        self.tensors[:, PARAM_AT] = offsets
        self.d_tensors = cuda.to_device(self.tensors)
        padded = items if len(items) else np.zeros((1, ITEM_COLUMNS), np.int64)
        self.d_items = cuda.to_device(padded)
        self.d_item_tensor = cuda.to_device(np.ascontiguousarray(padded[:, ITEM_TENSOR]))
        self.d_tensor_group = cuda.to_device(layout.groups)
        self.d_scalars = cuda.to_device(np.zeros((layout.n_groups, SCALAR_COLUMNS), self.dtype))
        self.d_keys = cuda.to_device(np.zeros(layout.n_groups, np.int64))
        self._skipping = False

    def bind_buffer_grads(self) -> None:
        for s in self.storages:
            s.g = s.owner.grad

    def bind_grads(self, grads: list) -> None:
        """Read tensor i's gradient from ``grads[i]`` (checked device arrays; None where sparse)."""
        for s in self.storages:
            if s.owner is None:
                g = grads[s.tensors[0]]
                s.g = s.p if g is None else g.reshape(s.p.size)
                continue
            s.g = s.owner.grad
            for i in s.tensors:   # gradients of ParamBuffer tensors go into its grad views
                if grads[i] is not None:
                    start, n = int(self.tensors[i, PARAM_AT]), int(self.layout.numels[i])
                    view = s.g[start:start + n].reshape(self.layout.shapes[i])
                    if address_of(view) != address_of(grads[i]):
                        view.copy_to_device(grads[i])

    def set_skipped(self, indices: list[int]) -> None:
        if indices or self._skipping:
            self.tensors[:, SKIP] = 0
            self.tensors[indices, SKIP] = 1
            self.d_tensors.copy_to_device(self.tensors)
            self._skipping = bool(indices)


# -- launchers (same names and signatures in _cpu) ----------------------------
def adam_step(plan: Plan, scalars: np.ndarray, grad_scales, state, keys: np.ndarray) -> None:
    """Update every tensor that is not skipped: one launch per storage, plus one for the
    tensors with 16- or 8-bit state (``keys``: each group's random key)."""
    plan.d_scalars.copy_to_device(scalars)
    compact = any(b != 32 for b in plan.layout.bits)
    if compact:
        plan.d_keys.copy_to_device(keys)
    for s in plan.storages:
        if s.last_item > s.first_item:
            blocks, threads = launch_config(s.last_item - s.first_item)
            adam_items[blocks, threads](s.p, s.g, plan.d_items, s.first_item, s.last_item,
                                        plan.d_tensors, plan.d_scalars, grad_scales,
                                        state.m, state.v, state.v_max)
            if compact:
                COMPACT_KERNELS[plan.dtype][0][blocks, threads](
                    s.p, s.g, plan.d_items, s.first_item, s.last_item, plan.d_tensors,
                    plan.d_scalars, grad_scales, state.codes16, state.codes8, state.absmax,
                    plan.d_keys)


def adam_rows(plan: Plan, scalars: np.ndarray, i: int, rows: np.ndarray, values: np.ndarray,
              scale: float, state, lazy: bool, keys: np.ndarray) -> None:
    """Sparse update of tensor ``i`` (after ``adam_step``, which uploads the scalars)."""
    layout = plan.layout
    n_rows = layout.shapes[i][0]
    cols = int(layout.numels[i]) // n_rows if n_rows else 0
    row = plan.d_scalars[int(layout.groups[i])]
    scale = plan.dtype.type(scale)
    d_values = cuda.to_device(np.ascontiguousarray(values.reshape(len(rows), cols)))
    p = plan.storage_of[i].p
    base, at = int(plan.tensors[i, PARAM_AT]), int(layout.state_offsets[i])
    vmax_base = int(layout.vmax_offsets[i])
    if layout.bits[i] != 32:
        slot = np.full(n_rows, -1, dtype=np.int64)
        slot[rows] = np.arange(len(rows))
        chunks = touched_chunks(rows, cols) if lazy else \
            np.arange(-(-n_rows * cols // STATE_CHUNK), dtype=np.int64)
        if len(chunks):
            plan.d_keys.copy_to_device(keys)
            blocks, threads = launch_config(len(chunks))
            COMPACT_KERNELS[plan.dtype][1][blocks, threads](
                p, base, i, plan.d_tensors, cuda.to_device(chunks), cuda.to_device(slot),
                d_values, cols, lazy, plan.dtype.type(0), row, scale, state.codes16,
                state.codes8, state.absmax, plan.d_keys)
        return
    if lazy:
        blocks, threads = launch_config(max(1, len(rows) * cols // WORK_ITEM_ELEMENTS + 1))
        adam_rows_lazy_kernel[blocks, threads](p, base, state.m, state.v, at, state.v_max,
                                               vmax_base, cols, cuda.to_device(rows), d_values,
                                               row, scale)
        return
    slot = np.full(n_rows, -1, dtype=np.int64)
    slot[rows] = np.arange(len(rows))
    blocks, threads = launch_config(max(1, n_rows * cols // WORK_ITEM_ELEMENTS + 1))
    adam_rows_dense_kernel[blocks, threads](p, base, state.m, state.v, at, state.v_max,
                                            vmax_base, cols, n_rows, cuda.to_device(slot),
                                            d_values, plan.dtype.type(0), row, scale)


def grad_sum_squares(plan: Plan, item_sums) -> None:
    """Per-item float64 sums of squared gradients (tensors that are skipped give 0)."""
    for s in plan.storages:
        if s.last_item > s.first_item:
            blocks, threads = launch_config(s.last_item - s.first_item)
            sum_squares_items[blocks, threads](s.g, plan.d_items, s.first_item, s.last_item,
                                               plan.d_tensors, item_sums)


def clip_scales(plan: Plan, item_sums, extra_sums, clipnorms, global_clipnorm: float,
                tensor_sums, grad_scales) -> None:
    """Norm-clipping factors (``_formula.clip_scales``) into ``grad_scales``, on the device."""
    clip_scales_kernel[1, 1](item_sums, plan.d_item_tensor, plan.d_tensor_group, extra_sums,
                             clipnorms, global_clipnorm, tensor_sums, grad_scales)
