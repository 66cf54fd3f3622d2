"""CPU backend (Numba): every parameter of every group in one kernel launch.

Twin of ``_cuda``: both modules have the same launchers (``adam_step``,
``adam_rows``, ``grad_sum_squares``, ``clip_scales``), the same array helpers
and a ``Plan`` with the same methods, so the engine is written once.

A launch walks a table of work items (a range of one tensor); each item finds
its tensor's parameter and gradient by address, its flat state by offset and
its group's scalars by row, so tensors scattered in memory (plain arrays) and
slices of one flat ``ParamBuffer`` go through the same loop.  A parameter
that is not contiguous (a strided view) is copied into a contiguous staging
array before the launch and back after it; only its own elements are
written.

Scalar dtype policy: the group-scalar table has the buffer's dtype, so a
float32 buffer runs float32 arithmetic, and each kernel has exactly one
signature per buffer dtype (float32, float64).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numba import carray, float32, njit, prange, types
from numba.extending import intrinsic

from . import _bits, _codes, _formula, _threads
from ._config import (
    BETA2, CLIP_VALUE, DECAY, DENOM_SCALE, EPS, FASTMATH, FLUSH_BELOW, GRAD_AT, GRAD_SIGN, GROUP,
    INDEX_BASE, ITEM_BEGIN, ITEM_LENGTH, ITEM_TENSOR, L2, ONE_MINUS_BETA1, ONE_MINUS_BETA2,
    PARAM_AT, SKIP, STATE_BITS, STATE_CHUNK, STATE_OFFSET, STEP_SIZE, V_OFFSET, VMAX_OFFSET,
    WORK_ITEM_ELEMENTS,
)
from ._layout import Layout, touched_chunks

_element = njit(inline="always", fastmath=FASTMATH, error_model="numpy")
effective_grad = _element(_formula.effective_grad)
first_moment = _element(_formula.first_moment)
second_moment = _element(_formula.second_moment)
amsgrad_max = _element(_formula.amsgrad_max)
param_update = _element(_formula.param_update)
clip_scales_kernel = njit(cache=True, error_model="numpy")(_formula.clip_scales)
shifted_key = _element(_codes.shifted_key)


@intrinsic
def _pointer_like(typingctx, address, like):
    """Reinterpret an integer address as a pointer to ``like``'s dtype."""
    pointer = types.CPointer(like.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(address, like), codegen


(random_bits, bf16_decode, bf16_encode, m8_decode, v8_decode, m8_encode, v8_encode,
 magnitude_bits, inverse_scale, mix_bits) = _codes.make_codecs(_element, _bits.float_bits,
                                                     _bits.bits_float, float32, _bits.NATIVE)


@njit(inline="always")
def _row_constants(row):
    """A group-scalar row's constants, as the element loops use them."""
    return (row[L2], row[CLIP_VALUE], row[DECAY], row[ONE_MINUS_BETA1], row[BETA2],
            row[ONE_MINUS_BETA2], row[STEP_SIZE], row[DENOM_SCALE], row[EPS],
            row[FLUSH_BELOW])


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _gradient(g, p, grad_scale, l2, limit, plain):
    """``effective_grad``, or ``g + l2 * p`` where the caller knows that the clamp and the
    factor change nothing (``plain``: a constant at each call site, so each loop compiles
    without the other's arithmetic).  The two differ at most in the rounding of the L2
    term, which the compiler may fuse into one multiply-add in either."""
    return g + l2 * p if plain else effective_grad(g, p, grad_scale, l2, limit)


@njit(inline="always")
def plain_gradient(grad_scale, limit):
    """Whether ``effective_grad``'s clamp and factor are identities for a whole range: no
    clipvalue, and a factor of 1 (no maximize, no norm clipping).  The element loops branch
    on it once per range: the clamp and factor cost a fifth of an in-cache step."""
    return limit == np.inf and grad_scale == 1


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _range_loop(p, g, mt, vt, vmt, row, grad_scale, plain, amsgrad):
    """The element loop of ``_update_range``, for one constant (``plain``, ``amsgrad``)."""
    (l2, limit, decay, one_minus_beta1, beta2, one_minus_beta2, step_size, denom_scale,
     eps, flush_below) = _row_constants(row)
    for i in range(p.size):
        gi = _gradient(g[i], p[i], grad_scale, l2, limit, plain)
        mi = first_moment(mt[i], gi, one_minus_beta1, flush_below)
        vi = second_moment(vt[i], gi, beta2, one_minus_beta2, flush_below)
        mt[i] = mi
        vt[i] = vi
        if amsgrad:
            vi = amsgrad_max(vmt[i], vi)
            vmt[i] = vi
        p[i] = param_update(p[i], mi, vi, decay, step_size, denom_scale, eps)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _update_range(p, g, mt, vt, vmt, row, grad_scale):
    """Adam update of matching 1-D ranges; ``vmt`` is empty without AMSGrad."""
    if vmt.size > 0:              # AMSGrad keeps one loop: each copy costs compile time
        _range_loop(p, g, mt, vt, vmt, row, grad_scale, False, True)
    elif plain_gradient(grad_scale, row[CLIP_VALUE]):
        _range_loop(p, g, mt, vt, vmt, row, grad_scale, True, False)
    else:
        _range_loop(p, g, mt, vt, vmt, row, grad_scale, False, False)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _decode16(codes16, at, n, out):
    """Float values of ``n`` bfloat16 codes into ``out``."""
    src = codes16[at:at + n]     # a slice: indices from range() need no wraparound check
    for j in range(n):
        out[j] = bf16_decode(src[j])


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _decode8(codes8, at, n, absmax, signed, out):
    """Float values of one block of 8-bit codes (signed: a first moment) into ``out``."""
    scale = absmax[at // _codes.BLOCK]
    src = codes8[at:at + n]
    if signed:
        for j in range(n):
            out[j] = m8_decode(src[j]) * scale
    else:
        for j in range(n):
            out[j] = v8_decode(src[j]) * scale


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _encode16(sm, sv, svm, codes16, m_at, v_at, vmax_at, n, key, index):
    """bfloat16 codes of ``sm[:n]``, ``sv[:n]`` (and ``svm[:n]`` where ``vmax_at >= 0``),
    stochastically rounded: m with the low 16 bits of the hash of (key, element index),
    v and v_max with the high 16."""
    m, v = codes16[m_at:m_at + n], codes16[v_at:v_at + n]
    start = shifted_key(key, index)
    weyl = start
    for j in range(n):
        r = mix_bits(weyl)
        weyl += _codes.HASH_STEP
        m[j] = bf16_encode(float32(sm[j]), r & 0xFFFF)
        v[j] = bf16_encode(float32(sv[j]), r >> 16)
    if vmax_at >= 0:
        vm = codes16[vmax_at:vmax_at + n]
        weyl = start
        for j in range(n):
            vm[j] = bf16_encode(float32(svm[j]), mix_bits(weyl) >> 16)
            weyl += _codes.HASH_STEP


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _top8(x, n):
    """The pattern of the largest |x| over ``x[:n]`` (one block): its absmax."""
    top = magnitude_bits(float32(0))      # the codes' own integer type: 32-bit lanes
    for j in range(n):
        top = max(top, magnitude_bits(float32(x[j])))
    return top


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _encode8_with(x, codes8, at, n, absmax, signed, top):
    """One block whose largest |x| has pattern ``top``: the nearest codes of x / absmax."""
    inverse, scale = inverse_scale(top)
    absmax[at // _codes.BLOCK] = scale
    dst = codes8[at:at + n]
    if signed:
        for j in range(n):
            dst[j] = m8_encode(float32(x[j]) * inverse)
    else:
        for j in range(n):
            dst[j] = v8_encode(float32(x[j]) * inverse)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _encode8_moments(sm, sden, codes8, m_at, den_at, n, absmax, top_m, top_den):
    """One block of m and of the moment in its denominator (v, or AMSGrad's v_max) in one
    pass, against absmax patterns ``top_m``, ``top_den``: m's code is zero where the
    denominator's is (a zero denominator code would divide m by eps alone)."""
    m_inverse, m_scale = inverse_scale(top_m)
    den_inverse, den_scale = inverse_scale(top_den)
    absmax[m_at // _codes.BLOCK] = m_scale
    absmax[den_at // _codes.BLOCK] = den_scale
    m, den = codes8[m_at:m_at + n], codes8[den_at:den_at + n]
    for j in range(n):
        den_code = v8_encode(float32(sden[j]) * den_inverse)
        m_code = m8_encode(float32(sm[j]) * m_inverse)
        den[j] = den_code
        m[j] = _bits.zero_where_zero(m_code, den_code)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _decode_state8(t, tensors, begin, n, codes8, absmax, sm, sv, svm):
    """Decode ``n`` elements (one block) of tensor ``t``'s 8-bit state from element
    ``begin`` into the float scratch arrays ``sm``, ``sv``, ``svm`` (m, v, v_max)."""
    _decode8(codes8, tensors[t, STATE_OFFSET] + begin, n, absmax, True, sm)
    _decode8(codes8, tensors[t, V_OFFSET] + begin, n, absmax, False, sv)
    if tensors[t, VMAX_OFFSET] >= 0:
        _decode8(codes8, tensors[t, VMAX_OFFSET] + begin, n, absmax, False, svm)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _encode_state8(t, tensors, begin, n, codes8, absmax, sm, sv, svm):
    """Store ``sm``, ``sv``, ``svm`` as one block of tensor ``t``'s 8-bit state."""
    m_at = tensors[t, STATE_OFFSET] + begin
    v_at = tensors[t, V_OFFSET] + begin
    vmax_at = tensors[t, VMAX_OFFSET] + begin if tensors[t, VMAX_OFFSET] >= 0 else -1
    if vmax_at >= 0:
        _encode8_with(sv, codes8, v_at, n, absmax, False, _top8(sv, n))
        _encode8_moments(sm, svm, codes8, m_at, vmax_at, n, absmax, _top8(sm, n),
                         _top8(svm, n))
    else:
        _encode8_moments(sm, sv, codes8, m_at, v_at, n, absmax, _top8(sm, n), _top8(sv, n))


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _decode_state16(t, tensors, begin, n, codes16, sm, sv, svm):
    """Decode ``n`` elements of tensor ``t``'s 16-bit state into ``sm``, ``sv``, ``svm``."""
    _decode16(codes16, tensors[t, STATE_OFFSET] + begin, n, sm)
    _decode16(codes16, tensors[t, V_OFFSET] + begin, n, sv)
    if tensors[t, VMAX_OFFSET] >= 0:
        _decode16(codes16, tensors[t, VMAX_OFFSET] + begin, n, svm)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _encode_state16(t, tensors, begin, n, codes16, sm, sv, svm, key):
    """Store ``sm``, ``sv``, ``svm`` as tensor ``t``'s 16-bit state from ``begin``."""
    vmax_at = tensors[t, VMAX_OFFSET] + begin if tensors[t, VMAX_OFFSET] >= 0 else -1
    _encode16(sm, sv, svm, codes16, tensors[t, STATE_OFFSET] + begin,
              tensors[t, V_OFFSET] + begin, vmax_at, n, key, tensors[t, INDEX_BASE] + begin)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _range16_loop(p, g, mc, vc, vmc, row, grad_scale, start, plain, amsgrad):
    """The element loop of ``_update_range16``, for one constant (``plain``, ``amsgrad``)."""
    (l2, limit, decay, one_minus_beta1, beta2, one_minus_beta2, step_size, denom_scale,
     eps, flush_below) = _row_constants(row)
    weyl = start        # start + i * HASH_STEP as a running sum: no multiply per element
    for i in range(p.size):
        gi = _gradient(g[i], p[i], grad_scale, l2, limit, plain)
        mi = first_moment(bf16_decode(mc[i]), gi, one_minus_beta1, flush_below)
        vi = second_moment(bf16_decode(vc[i]), gi, beta2, one_minus_beta2, flush_below)
        r = mix_bits(weyl)
        weyl += _codes.HASH_STEP
        mc[i] = bf16_encode(float32(mi), r & 0xFFFF)
        vc[i] = bf16_encode(float32(vi), r >> 16)
        if amsgrad:
            vi = amsgrad_max(bf16_decode(vmc[i]), vi)
            vmc[i] = bf16_encode(float32(vi), r >> 16)
        p[i] = param_update(p[i], mi, vi, decay, step_size, denom_scale, eps)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _update_range16(p, g, mc, vc, vmc, row, grad_scale, key, index):
    """``_update_range`` over bfloat16 moments in one fused pass: decode, the same element
    update, then stochastic rounding with the hash of (key, ``index`` + i); ``vmc`` is
    empty without AMSGrad.  (One loop, no scratch: 16-bit state needs no block scale.)"""
    start = shifted_key(key, index)
    if vmc.size > 0:              # AMSGrad keeps one loop: each copy costs compile time
        _range16_loop(p, g, mc, vc, vmc, row, grad_scale, start, False, True)
    elif plain_gradient(grad_scale, row[CLIP_VALUE]):
        _range16_loop(p, g, mc, vc, vmc, row, grad_scale, start, True, False)
    else:
        _range16_loop(p, g, mc, vc, vmc, row, grad_scale, start, False, False)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _update_block8(p, g, mc, vc, m_scale, v_scale, row, grad_scale, sm, sv, plain):
    """First pass over one 8-bit block without AMSGrad: decode, the element update, and the
    new moments into ``sm``/``sv`` for encoding; returns the pattern maxima of |m|, |v|.
    ``plain``: a constant at each call site (``plain_gradient``)."""
    (l2, limit, decay, one_minus_beta1, beta2, one_minus_beta2, step_size, denom_scale,
     eps, flush_below) = _row_constants(row)
    top_m = magnitude_bits(float32(0))    # the codes' own integer type: 32-bit lanes
    top_v = top_m
    for i in range(p.size):
        gi = _gradient(g[i], p[i], grad_scale, l2, limit, plain)
        mi = first_moment(m8_decode(mc[i]) * m_scale, gi, one_minus_beta1, flush_below)
        vi = second_moment(v8_decode(vc[i]) * v_scale, gi, beta2, one_minus_beta2,
                           flush_below)
        sm[i] = mi
        sv[i] = vi
        top_m = max(top_m, magnitude_bits(float32(mi)))
        top_v = max(top_v, magnitude_bits(float32(vi)))
        p[i] = param_update(p[i], mi, vi, decay, step_size, denom_scale, eps)
    return top_m, top_v


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _update_block8_amsgrad(p, g, mc, vc, vmc, m_scale, v_scale, vmax_scale, row, grad_scale,
                           sm, sv, svm):
    """``_update_block8`` with AMSGrad: v_max's codes too, and the maximum of its |v_max|."""
    (l2, limit, decay, one_minus_beta1, beta2, one_minus_beta2, step_size, denom_scale,
     eps, flush_below) = _row_constants(row)
    top_m = magnitude_bits(float32(0))
    top_v = top_m
    top_vm = top_m
    for i in range(p.size):
        gi = effective_grad(g[i], p[i], grad_scale, l2, limit)
        mi = first_moment(m8_decode(mc[i]) * m_scale, gi, one_minus_beta1, flush_below)
        vi = second_moment(v8_decode(vc[i]) * v_scale, gi, beta2, one_minus_beta2,
                           flush_below)
        vmi = amsgrad_max(v8_decode(vmc[i]) * vmax_scale, vi)
        sm[i] = mi
        sv[i] = vi
        svm[i] = vmi
        top_m = max(top_m, magnitude_bits(float32(mi)))
        top_v = max(top_v, magnitude_bits(float32(vi)))
        top_vm = max(top_vm, magnitude_bits(float32(vmi)))
        p[i] = param_update(p[i], mi, vmi, decay, step_size, denom_scale, eps)
    return top_m, top_v, top_vm


# The 8-bit block loop does enough arithmetic per byte that the hardware prefetchers alone
# leave DRAM idle between bursts: it prefetches PREFETCH_AHEAD elements ahead (6e7
# parameters, 2 threads: 75 -> 60 ms).  The fused 16-bit loop runs best unchunked and
# without (38 ms against 41-52 ms with chunks and prefetches).
PREFETCH_AHEAD = 2048


@njit(inline="always")
def _prefetch_chunk(array, start):
    """Prefetch the ``STATE_CHUNK`` elements of ``array`` from element ``start``: a fixed
    count of cache lines, which compiles to straight-line code (a prefetch never faults,
    so lines past the array's end cost nothing).  A loop clipped to the array took 1.03x
    the 8-bit step time at 3e4 parameters and 1.09x at 1e6."""
    address = array.ctypes.data + start * array.itemsize
    for line in range(STATE_CHUNK * array.itemsize // 64):
        _bits.prefetch(address + line * 64)


@njit(inline="always")
def _prefetch_chunk8(p, g, codes8, c, n, code_starts):
    """Prefetch the chunk ``PREFETCH_AHEAD`` elements past element ``c`` of one 8-bit work
    item (none within that distance of its end): its parameters, gradients and the codes
    from each of ``code_starts``."""
    ahead = c + PREFETCH_AHEAD
    if ahead < n:
        _prefetch_chunk(p, ahead)
        _prefetch_chunk(g, ahead)
        for at in code_starts:
            _prefetch_chunk(codes8, at + ahead)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _item_arrays(item, items, tensors, scalars, grad_scales, like):
    """Work item ``item``'s tensor, first element, length, parameter and gradient ranges,
    group-scalar row and gradient factor."""
    t = items[item, ITEM_TENSOR]
    begin = items[item, ITEM_BEGIN]
    n = items[item, ITEM_LENGTH]
    byte_offset = begin * like.itemsize
    p = carray(_pointer_like(tensors[t, PARAM_AT] + byte_offset, like), n)
    g = carray(_pointer_like(tensors[t, GRAD_AT] + byte_offset, like), n)
    row = scalars[tensors[t, GROUP]]
    return t, begin, n, p, g, row, row[GRAD_SIGN] * grad_scales[t]


@njit(inline="always")
def _updates(item, items, tensors):
    """Whether this launch updates work item ``item``: its tensor is not skipped this step
    (a launch's items are those of one state format: ``Plan.launches``)."""
    return tensors[items[item, ITEM_TENSOR], SKIP] == 0


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _update_item(item, items, tensors, scalars, grad_scales, m, v, v_max):
    """Adam update of one work item with 32-bit state: a contiguous range of one tensor."""
    if not _updates(item, items, tensors):
        return
    t, begin, n, p, g, row, grad_scale = _item_arrays(item, items, tensors, scalars,
                                                      grad_scales, m)
    state = tensors[t, STATE_OFFSET] + begin
    vmax_start = tensors[t, VMAX_OFFSET] + begin
    vmt = v_max[vmax_start:vmax_start + n] if tensors[t, VMAX_OFFSET] >= 0 else v_max[:0]
    _update_range(p, g, m[state:state + n], v[state:state + n], vmt, row, grad_scale)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _update_item16(item, items, tensors, scalars, grad_scales, like, codes16, keys):
    """Adam update of one work item with 16-bit state: one fused pass (``_update_range16``)."""
    _bits.prefer_wide_vectors()
    if not _updates(item, items, tensors):
        return
    t, begin, n, p, g, row, grad_scale = _item_arrays(item, items, tensors, scalars,
                                                      grad_scales, like)
    mc = codes16[tensors[t, STATE_OFFSET] + begin:][:n]
    vc = codes16[tensors[t, V_OFFSET] + begin:][:n]
    vmc = codes16[tensors[t, VMAX_OFFSET] + begin:][:n] if tensors[t, VMAX_OFFSET] >= 0 \
        else codes16[:0]
    _update_range16(p, g, mc, vc, vmc, row, grad_scale, keys[tensors[t, GROUP]],
                    tensors[t, INDEX_BASE] + begin)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _update_item8(item, items, tensors, scalars, grad_scales, like, codes8, absmax, sm, sv):
    """Adam update of one work item with 8-bit state and no AMSGrad, a block at a time:
    decode and update in one pass into float scratch arrays of ``STATE_CHUNK`` (``sm``,
    ``sv``), then encode against the block's new absmax."""
    _bits.prefer_wide_vectors()
    if not _updates(item, items, tensors):
        return
    t, begin, n, p, g, row, grad_scale = _item_arrays(item, items, tensors, scalars,
                                                      grad_scales, like)
    m_at, v_at = tensors[t, STATE_OFFSET] + begin, tensors[t, V_OFFSET] + begin
    plain = plain_gradient(grad_scale, row[CLIP_VALUE])
    for c in range(0, n, STATE_CHUNK):
        k = min(STATE_CHUNK, n - c)
        _prefetch_chunk8(p, g, codes8, c, n, (m_at, v_at))
        mb, vb = (m_at + c) // _codes.BLOCK, (v_at + c) // _codes.BLOCK
        pc, gc = p[c:c + k], g[c:c + k]
        mc, vc = codes8[m_at + c:m_at + c + k], codes8[v_at + c:v_at + c + k]
        if plain:
            top_m, top_v = _update_block8(pc, gc, mc, vc, absmax[mb], absmax[vb], row,
                                          grad_scale, sm, sv, True)
        else:
            top_m, top_v = _update_block8(pc, gc, mc, vc, absmax[mb], absmax[vb], row,
                                          grad_scale, sm, sv, False)
        _encode8_moments(sm, sv, codes8, m_at + c, v_at + c, k, absmax, top_m, top_v)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _update_item8_amsgrad(item, items, tensors, scalars, grad_scales, like, codes8, absmax, sm,
                          sv, svm):
    """``_update_item8`` with AMSGrad: v_max decoded and encoded beside m and v, and m's
    code zeroed where v_max's (the denominator) is."""
    _bits.prefer_wide_vectors()
    if not _updates(item, items, tensors):
        return
    t, begin, n, p, g, row, grad_scale = _item_arrays(item, items, tensors, scalars,
                                                      grad_scales, like)
    m_at, v_at = tensors[t, STATE_OFFSET] + begin, tensors[t, V_OFFSET] + begin
    vm_at = tensors[t, VMAX_OFFSET] + begin
    for c in range(0, n, STATE_CHUNK):
        k = min(STATE_CHUNK, n - c)
        _prefetch_chunk8(p, g, codes8, c, n, (m_at, v_at, vm_at))
        mb, vb, vmb = ((m_at + c) // _codes.BLOCK, (v_at + c) // _codes.BLOCK,
                       (vm_at + c) // _codes.BLOCK)
        pc, gc = p[c:c + k], g[c:c + k]
        mc, vc = codes8[m_at + c:m_at + c + k], codes8[v_at + c:v_at + c + k]
        vmc = codes8[vm_at + c:vm_at + c + k]
        top_m, top_v, top_vm = _update_block8_amsgrad(
            pc, gc, mc, vc, vmc, absmax[mb], absmax[vb], absmax[vmb], row, grad_scale,
            sm, sv, svm)
        _encode8_with(sv, codes8, v_at + c, k, absmax, False, top_v)
        _encode8_moments(sm, svm, codes8, m_at + c, vm_at + c, k, absmax, top_m, top_vm)


@njit(inline="always")
def _scratch(dtype):
    """Float scratch for one chunk of decoded m, v and v_max."""
    return np.empty(STATE_CHUNK, dtype), np.empty(STATE_CHUNK, dtype), \
        np.empty(STATE_CHUNK, dtype)


# Each launch is written once, as a ``prange`` over independent work units (work items,
# row chunks, rows), and compiled twice: ``serial_kernel`` (prange is a plain loop there) and
# inlined into a ``parallel=True`` twin named ``*_threaded``, which runs it on Numba's
# TBB layer with numba_adam's thread count (see ``_threads``).  A unit's result does
# not depend on the thread that computes it, so every thread count gives the same bits.
serial_kernel = njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
_inline = njit(inline="always", fastmath=FASTMATH, error_model="numpy")
_threaded = njit(nogil=True, cache=True, parallel=True, fastmath=FASTMATH, error_model="numpy")


def _items32(threads, items, tensors, scalars, grad_scales, m, v, v_max):
    """Update the 32-bit-state work items ``items``."""
    for item in prange(items.shape[0]):
        _update_item(item, items, tensors, scalars, grad_scales, m, v, v_max)


# One kernel per state format (two for 8 bits), each compiled only when a model needs it:
# in one kernel with the 32-bit path they made every first compile 10x longer (1 -> 11 s).
def _items16(threads, items, tensors, scalars, grad_scales, like, codes16, keys):
    """Update the 16-bit-state work items ``items``."""
    for item in prange(items.shape[0]):
        _update_item16(item, items, tensors, scalars, grad_scales, like, codes16, keys)


def _items8(threads, items, tensors, scalars, grad_scales, like, codes8, absmax):
    """Update the 8-bit-state work items ``items`` (tensors without AMSGrad)."""
    for item in prange(items.shape[0]):
        sm, sv, _ = _scratch(like.dtype)
        _update_item8(item, items, tensors, scalars, grad_scales, like, codes8, absmax, sm, sv)


def _items8_amsgrad(threads, items, tensors, scalars, grad_scales, like, codes8, absmax):
    """Update the 8-bit-state work items ``items`` (tensors with AMSGrad)."""
    for item in prange(items.shape[0]):
        sm, sv, svm = _scratch(like.dtype)
        _update_item8_amsgrad(item, items, tensors, scalars, grad_scales, like, codes8,
                              absmax, sm, sv, svm)


@njit(inline="always", error_model="numpy")
def _item_sum_squares(item, items, tensors, like):
    """Work item ``item``'s sum of squared gradient elements in float64 (0 if skipped)."""
    t = items[item, ITEM_TENSOR]
    n = items[item, ITEM_LENGTH]
    if tensors[t, SKIP] != 0:
        return 0.0
    g = carray(_pointer_like(tensors[t, GRAD_AT] + items[item, ITEM_BEGIN] * like.itemsize,
                             like), n)
    total = 0.0
    for i in range(n):
        x = np.float64(g[i])
        total += x * x
    return total


def _sum_squares(threads, items, tensors, like, out):
    """Each work item's sum of squared gradient elements, in float64, into ``out``."""
    for item in prange(items.shape[0]):
        out[item] = _item_sum_squares(item, items, tensors, like)


def _rows_dense(threads, p, m, v, v_max, row_slot, values, row, grad_scale, zeros):
    """Sparse gradient, dense-equivalent (Keras/TF): every row decays and moves.

    Rows are handled in chunks of ``zeros.size // cols`` rows.  Row r's
    gradient is ``values[row_slot[r]]``, or zero where ``row_slot[r] < 0``;
    runs of zero-gradient rows are updated as one flat range against ``zeros``
    (a zero array of at least one chunk of rows), so untouched rows cost what a
    dense update costs, minus the gradient read.
    """
    n_rows, cols = p.shape
    chunk_rows = max(1, zeros.size // max(cols, 1))
    pf, mf, vf = p.ravel(), m.ravel(), v.ravel()
    use_vmax = v_max.shape[0] > 0
    vmf = v_max.ravel()
    for chunk in prange(-(-n_rows // chunk_rows)):
        r = chunk * chunk_rows
        end = min(r + chunk_rows, n_rows)
        while r < end:
            slot = row_slot[r]
            last = r + 1
            if slot >= 0:
                g = values[slot]
            else:
                while last < end and row_slot[last] < 0:
                    last += 1
                g = zeros[:(last - r) * cols]
            a, b = r * cols, last * cols
            _update_range(pf[a:b], g, mf[a:b], vf[a:b], vmf[a:b] if use_vmax else vmf[:0],
                          row, grad_scale)
            r = last


def _rows_lazy(threads, p, m, v, v_max, rows, values, row, grad_scale):
    """Sparse gradient, lazy (TF LazyAdam, torch SparseAdam): only ``rows`` change (rows
    are distinct: duplicates were merged before)."""
    for k in prange(rows.size):
        r = rows[k]
        vmt = v_max[r] if v_max.shape[0] > 0 else v_max.reshape(0)   # a view, no copy
        _update_range(p[r], values[k], m[r], v[r], vmt, row, grad_scale)


# State chunks per unit of the compact row kernel (one scratch allocation each).
COMPACT_CHUNKS_PER_UNIT = WORK_ITEM_ELEMENTS // STATE_CHUNK


def _rows_compact(threads, chunks, t, tensors, p, row_slot, values, row, grad_scale, zeros, lazy,
                  codes16, codes8, absmax, keys):
    """Sparse gradient on a tensor with 16- or 8-bit state, over its state ``chunks``.

    Each chunk (an 8-bit block) is decoded, its elements in rows with a
    gradient (``row_slot[r] >= 0``) are updated with it, the others with a zero
    gradient (dense-equivalent) or not at all (``lazy``), and the chunk is
    encoded again.  Untouched 16-bit values re-encode to themselves; untouched
    8-bit values are re-encoded against the block's new absmax.
    """
    cols = values.shape[1]
    bits = tensors[t, STATE_BITS]
    amsgrad = tensors[t, VMAX_OFFSET] >= 0
    key = keys[tensors[t, GROUP]]
    n = p.size
    per = COMPACT_CHUNKS_PER_UNIT
    for unit in prange(-(-chunks.size // per)):
        sm, sv, svm = _scratch(p.dtype)
        for k in range(unit * per, min(chunks.size, (unit + 1) * per)):
            c0 = chunks[k] * STATE_CHUNK
            c1 = min(c0 + STATE_CHUNK, n)
            if bits == 16:
                _decode_state16(t, tensors, c0, c1 - c0, codes16, sm, sv, svm)
            else:
                _decode_state8(t, tensors, c0, c1 - c0, codes8, absmax, sm, sv, svm)
            e = c0
            while e < c1:
                r = e // cols
                end = min(c1, (r + 1) * cols)
                slot = row_slot[r]
                if slot >= 0 or not lazy:
                    a, b = e - c0, end - c0
                    g = values[slot, e - r * cols:end - r * cols] if slot >= 0 \
                        else zeros[:end - e]
                    _update_range(p[e:end], g, sm[a:b], sv[a:b],
                                  svm[a:b] if amsgrad else svm[:0], row, grad_scale)
                e = end
            if bits == 16:
                _encode_state16(t, tensors, c0, c1 - c0, codes16, sm, sv, svm, key)
            else:
                _encode_state8(t, tensors, c0, c1 - c0, codes8, absmax, sm, sv, svm)


# The serial kernels ...  (They take ``threads`` too, and ignore it: with the threaded
# twins' signatures, callers in compiled code, ``numba_adam.jit``, choose either at run time.)
adam_items = serial_kernel(_items32)
adam_items16 = serial_kernel(_items16)
adam_items8 = serial_kernel(_items8)
adam_items8_amsgrad = serial_kernel(_items8_amsgrad)
sum_squares = njit(nogil=True, cache=True, error_model="numpy")(_sum_squares)
adam_rows_dense = serial_kernel(_rows_dense)
adam_rows_lazy = serial_kernel(_rows_lazy)
adam_rows_compact = serial_kernel(_rows_compact)

# ... and their threaded twins, each the same body inlined under Numba's thread mask (one
# short function each: Numba inlines no call with *args, and a cached kernel needs a name).
_items32_body, _items16_body, _items8_body, _items8_amsgrad_body, _rows_dense_body, \
    _rows_lazy_body, _rows_compact_body = (_inline(f) for f in (
        _items32, _items16, _items8, _items8_amsgrad, _rows_dense, _rows_lazy, _rows_compact))
_sum_squares_body = njit(inline="always", error_model="numpy")(_sum_squares)


@_threaded
def adam_items_threaded(threads, items, tensors, scalars, grad_scales, m, v, v_max):
    saved = _threads.enter(threads)
    _items32_body(threads, items, tensors, scalars, grad_scales, m, v, v_max)
    _threads.leave(saved)


@_threaded
def adam_items16_threaded(threads, items, tensors, scalars, grad_scales, like, codes16, keys):
    saved = _threads.enter(threads)
    _items16_body(threads, items, tensors, scalars, grad_scales, like, codes16, keys)
    _threads.leave(saved)


@_threaded
def adam_items8_threaded(threads, items, tensors, scalars, grad_scales, like, codes8, absmax):
    saved = _threads.enter(threads)
    _items8_body(threads, items, tensors, scalars, grad_scales, like, codes8, absmax)
    _threads.leave(saved)


@_threaded
def adam_items8_amsgrad_threaded(threads, items, tensors, scalars, grad_scales, like, codes8,
                                 absmax):
    saved = _threads.enter(threads)
    _items8_amsgrad_body(threads, items, tensors, scalars, grad_scales, like, codes8, absmax)
    _threads.leave(saved)


@njit(nogil=True, cache=True, parallel=True, error_model="numpy")
def sum_squares_threaded(threads, items, tensors, like, out):
    saved = _threads.enter(threads)
    _sum_squares_body(threads, items, tensors, like, out)
    _threads.leave(saved)


@_threaded
def adam_rows_dense_threaded(threads, p, m, v, v_max, row_slot, values, row, grad_scale,
                             zeros):
    saved = _threads.enter(threads)
    _rows_dense_body(threads, p, m, v, v_max, row_slot, values, row, grad_scale, zeros)
    _threads.leave(saved)


@_threaded
def adam_rows_lazy_threaded(threads, p, m, v, v_max, rows, values, row, grad_scale):
    saved = _threads.enter(threads)
    _rows_lazy_body(threads, p, m, v, v_max, rows, values, row, grad_scale)
    _threads.leave(saved)


@_threaded
def adam_rows_compact_threaded(threads, chunks, t, tensors, p, row_slot, values, row,
                               grad_scale, zeros, lazy, codes16, codes8, absmax, keys):
    saved = _threads.enter(threads)
    _rows_compact_body(threads, chunks, t, tensors, p, row_slot, values, row, grad_scale, zeros, lazy,
                       codes16, codes8, absmax, keys)
    _threads.leave(saved)


def _launch(serial, threaded, elements: int, units: int, *args) -> None:
    """``serial``, or ``threaded`` over numba_adam's threads where ``elements`` in ``units``
    pieces are worth sharing out (``_threads.threaded``)."""
    (threaded if _threads.threaded(elements, units) else serial)(
        _threads.THREAD_COUNT[0], *args)


def kernel_cache_status() -> str:
    """Whether the main CPU kernels are in Numba's on-disk cache ("warm", "partly warm" or
    "cold"), and where it was looked for: ``NUMBA_CACHE_DIR`` if set, else the package's
    ``__pycache__`` and, for read-only installs, the per-user cache."""
    import numba
    if numba.config.CACHE_DIR:
        folders = [Path(numba.config.CACHE_DIR)]
    else:
        folders = [Path(__file__).parent / "__pycache__", Path.home() / ".cache" / "numba"]
    index_files = [p.name for folder in folders if folder.is_dir() for p in folder.rglob("*.nbi")]
    found = [any(name.startswith(f"{Path(__file__).stem}.{kernel.py_func.__name__}-")
                 for name in index_files)
             for kernel in (adam_items, adam_items_threaded, sum_squares)]
    state = "warm" if all(found) else ("partly warm" if any(found) else "cold")
    return f"{state} ({', '.join(str(f) for f in folders)})"


# -- arrays ------------------------------------------------------------------
def zeros(n: int, dtype: np.dtype) -> np.ndarray:
    return np.zeros(n, dtype=dtype)


def to_host(array: np.ndarray) -> np.ndarray:
    return np.array(array, copy=True)


def host_view(array: np.ndarray) -> np.ndarray:
    return array


def copy_from_host(target: np.ndarray, host: np.ndarray) -> None:
    target[...] = host


def shaped(flat: np.ndarray, shape: tuple, order: str) -> np.ndarray:
    return flat.reshape(shape, order=order)


def as_array(value: Any, label: str) -> np.ndarray:
    """A gradient as a NumPy array (lists and scalars accepted)."""
    return value if type(value) is np.ndarray else np.asarray(value)


@njit(cache=True)
def array_address(a):
    """The address of ``a``'s first element: what ``a.ctypes.data`` gives, in 0.16 µs
    instead of 0.9 (it is read for every gradient of every step given as arrays)."""
    return a.ctypes.data


# -- plan ----------------------------------------------------------------------
# Which range kernel updates a tensor: one per state format, and for 8-bit state
# one with AMSGrad's third moment and one without (each compiles only when needed).
KIND_32, KIND_16, KIND_8, KIND_8_AMSGRAD = range(4)


def kernel_kind(layout: Layout, t: int) -> int:
    bits = layout.bits[t]
    if bits == 8:
        return KIND_8_AMSGRAD if layout.amsgrad[t] else KIND_8
    return KIND_32 if bits == 32 else KIND_16
class Plan:
    """The launch tables of one engine on the CPU, and where each gradient is read from."""

    def __init__(self, layout: Layout, dtype: np.dtype) -> None:
        self.layout = layout
        self.dtype = np.dtype(dtype)
        specs = layout.specs
        self.items = layout.items
        self.item_tensor = np.ascontiguousarray(self.items[:, ITEM_TENSOR])
        self.item_count = len(self.items)
        self.tensors = layout.tensor_table()
        self.like = np.zeros(0, self.dtype)   # carries the dtype into typed kernels
        # Strided parameters are updated in a contiguous copy (see the module docstring).
        self.staged = {i: np.zeros(s.array.shape, self.dtype) for i, s in enumerate(specs)
                        if not (s.array.flags.c_contiguous or s.array.flags.f_contiguous)}
        self.tensors[:, PARAM_AT] = [self.staged[i].ctypes.data if i in self.staged
                                     else s.array.ctypes.data for i, s in enumerate(specs)]
        # Gradient addresses of ParamBuffer tensors never change: the grad lives
        # at the same offset in the owner's flat grad array.
        self.buffer_grad_at = np.array(
            [s.owner.grad.ctypes.data + (s.array.ctypes.data - s.owner.data.ctypes.data)
             if s.owner is not None else -1 for s in specs], dtype=np.int64)
        self._grad_at = np.zeros(len(specs), dtype=np.int64)
        self._grad_staging: dict[int, np.ndarray] = {}
        self._skipping = False
        self._row_slots: dict[int, np.ndarray] = {}
        self._zeros: np.ndarray | None = None
        # Each kernel updates the items of its own state format: the items grouped by
        # kind in one table, so each launch's work units are only those it updates.
        kinds = np.array([kernel_kind(layout, t) for t in self.item_tensor], dtype=np.int64)
        order = np.argsort(kinds, kind="stable")
        self.kind_items = np.ascontiguousarray(self.items[order])
        counts = np.bincount(kinds, minlength=4)
        lengths = self.items[:, ITEM_LENGTH]
        # per kind: first row in kind_items, number of items, number of elements
        self.kind_spans = np.array(
            [(counts[:k].sum(), counts[k], lengths[kinds == k].sum()) for k in range(4)],
            dtype=np.int64).reshape(4, 3)
        self.elements = int(lengths.sum())
        # per kind present: its items (a view) and their element count, for adam_step
        self.launches = [(k, self.kind_items[s:s + n], int(e))
                         for k, (s, n, e) in enumerate(self.kind_spans.tolist()) if n]

    def bind_buffer_grads(self) -> None:
        """Read every gradient from its ParamBuffer grad view."""
        self.tensors[:, GRAD_AT] = self.buffer_grad_at

    def bind_grads(self, grads: list) -> None:
        """Read tensor i's gradient from ``grads[i]`` (checked arrays; None where sparse or
        absent: the tensor is skipped)."""
        at = self._grad_at
        orders = self.layout.orders
        for i, g in enumerate(grads):
            if g is None:       # sparse or absent this step: skipped, never read
                at[i] = self.tensors[i, PARAM_AT]
            elif g.flags.c_contiguous if orders[i] == "C" else g.flags.f_contiguous:
                at[i] = array_address(g)
            else:               # laid out unlike its parameter: copied once per step
                view = self._grad_staging.get(i)
                if view is None:
                    view = self._grad_staging[i] = np.zeros(g.shape, self.dtype, order=orders[i])
                np.copyto(view, g)
                at[i] = view.ctypes.data
        self.tensors[:, GRAD_AT] = at

    def set_skipped(self, indices: list[int]) -> None:
        """Leave these tensors out of the next ``adam_step`` (their rows are updated apart)."""
        if indices or self._skipping:
            self.tensors[:, SKIP] = 0
            self.tensors[indices, SKIP] = 1
            self._skipping = bool(indices)

    def stage_in(self, only: int | None = None) -> None:
        """Copy strided parameters (all, or tensor ``only``) into their staging arrays."""
        for i, stage in self.staged.items():
            if only is None or i == only:
                np.copyto(stage, self.layout.specs[i].array)

    def stage_out(self, only: int | None = None) -> None:
        """Copy updated staging arrays back into the strided parameters."""
        for i, stage in self.staged.items():
            if only is None or i == only:
                np.copyto(self.layout.specs[i].array, stage)

    def param_rows(self, i: int) -> np.ndarray:
        """Tensor ``i``'s parameter as a C-ordered (rows, columns) view, for sparse updates."""
        p = self.staged.get(i, self.layout.specs[i].array)
        return p.reshape(p.shape[0], -1) if p.shape[0] else p.reshape(0, 0)

    def row_slots(self, i: int, n_rows: int) -> np.ndarray:
        slot = self._row_slots.get(i)
        if slot is None:
            slot = self._row_slots[i] = np.full(n_rows, -1, dtype=np.int64)
        return slot

    def zero_rows(self, cols: int) -> np.ndarray:
        """A zero gradient for a run of untouched rows (at least one row long)."""
        size = max(WORK_ITEM_ELEMENTS, cols)
        if self._zeros is None or self._zeros.size < size:
            self._zeros = np.zeros(size, dtype=self.dtype)
        return self._zeros


# -- launchers (same names and signatures in _cuda) ---------------------------
def adam_step(plan: Plan, scalars: np.ndarray, grad_scales: np.ndarray, state,
              keys: np.ndarray) -> None:
    """Update every tensor that is not skipped: one kernel launch per state format present
    (``keys``: each group's random key for 16-bit rounding)."""
    if plan.staged:
        plan.stage_in()
    tables = (plan.tensors, scalars, grad_scales)
    for kind, items, elements in plan.launches:
        if kind == KIND_32:
            _launch(adam_items, adam_items_threaded, elements, len(items), items, *tables,
                    state.m, state.v, state.v_max)
        elif kind == KIND_16:
            _launch(adam_items16, adam_items16_threaded, elements, len(items), items, *tables,
                    plan.like, state.codes16, keys)
        elif kind == KIND_8:
            _launch(adam_items8, adam_items8_threaded, elements, len(items), items, *tables,
                    plan.like, state.codes8, state.absmax)
        else:
            _launch(adam_items8_amsgrad, adam_items8_amsgrad_threaded, elements, len(items),
                    items, *tables, plan.like, state.codes8, state.absmax)
    if plan.staged:
        plan.stage_out()


def adam_rows(plan: Plan, scalars: np.ndarray, i: int, rows: np.ndarray, values: np.ndarray,
              scale: float, state, lazy: bool, keys: np.ndarray) -> None:
    """Sparse update of tensor ``i``: only ``rows`` (lazy), or every row (dense-equivalent)."""
    p = plan.param_rows(i)
    shape = p.shape
    row = scalars[plan.layout.groups[i]]
    scale = plan.dtype.type(scale)
    values = values.reshape(len(rows), shape[1])
    zeros = plan.zero_rows(shape[1])
    plan.stage_in(i)
    if lazy and state.bits(i) == 32:     # the only path that needs no row-slot table
        m, v, v_max = _row_views(state, i, shape, plan.dtype)
        _launch(adam_rows_lazy, adam_rows_lazy_threaded, values.size, len(rows),
                p, m, v, v_max, rows, values, row, scale)
        plan.stage_out(i)
        return
    slot = plan.row_slots(i, shape[0])
    slot[rows] = np.arange(len(rows))
    try:
        if state.bits(i) != 32:
            chunks = touched_chunks(rows, shape[1]) if lazy else \
                np.arange(-(-p.size // STATE_CHUNK), dtype=np.int64)
            _launch(adam_rows_compact, adam_rows_compact_threaded, len(chunks) * STATE_CHUNK,
                    -(-len(chunks) // COMPACT_CHUNKS_PER_UNIT), chunks, i, plan.tensors,
                    p.reshape(-1), slot, values, row, scale, zeros, lazy, state.codes16,
                    state.codes8, state.absmax, keys)
        else:
            m, v, v_max = _row_views(state, i, shape, plan.dtype)
            chunk_rows = max(1, zeros.size // max(shape[1], 1))
            _launch(adam_rows_dense, adam_rows_dense_threaded, p.size,
                    -(-shape[0] // chunk_rows), p, m, v, v_max, slot, values, row, scale, zeros)
    finally:
        slot[rows] = -1
    plan.stage_out(i)


def _row_views(state, i: int, shape: tuple, dtype: np.dtype) -> tuple:
    m, v, v_max = state.views(i)
    return (m.reshape(shape), v.reshape(shape),
            v_max.reshape(shape) if v_max is not None else np.zeros((0, shape[1]), dtype))


def grad_sum_squares(plan: Plan, item_sums: np.ndarray) -> None:
    """Per-item float64 sums of squared gradients (tensors that are skipped give 0)."""
    _launch(sum_squares, sum_squares_threaded, plan.elements, plan.item_count, plan.items,
            plan.tensors, plan.like, item_sums)


def clip_scales(plan: Plan, item_sums, extra_sums, clipnorms, global_clipnorm: float,
                tensor_sums, grad_scales) -> None:
    """Norm-clipping factors (``_formula.clip_scales``) into ``grad_scales``."""
    clip_scales_kernel(item_sums, plan.item_tensor, plan.layout.groups,
                       extra_sums, clipnorms, global_clipnorm, tensor_sums, grad_scales)
