"""Plain NumPy references, one small function per rule, written from each
framework's documented formula.  They import nothing from numba_adam and run
in float64: the ground truth the kernels are checked against."""

import numpy as np


def torch_adam(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
               amsgrad=False, maximize=False, decoupled_weight_decay=False,
               state=None):
    """``torch.optim.Adam`` (torch/optim/adam.py, single-tensor path) for
    ``len(grads)`` steps.  ``lr`` may be a list (one value per step).

    Returns (p, state) with state = dict(step, m, v, v_max).
    """
    p = np.array(p, dtype=np.float64)
    beta1, beta2 = betas
    if state is None:
        state = dict(step=0, m=np.zeros_like(p), v=np.zeros_like(p), v_max=np.zeros_like(p))
    m, v, v_max = (np.array(state[k], dtype=np.float64) for k in ("m", "v", "v_max"))
    step = state["step"]
    lrs = lr if isinstance(lr, (list, tuple)) else [lr] * len(grads)
    for g, lr_t in zip(grads, lrs):
        g = np.array(g, dtype=np.float64)
        step += 1
        if maximize:
            g = -g
        if weight_decay != 0:
            if decoupled_weight_decay:
                p = p * (1 - lr_t * weight_decay)
            else:
                g = g + weight_decay * p
        m = m + (1 - beta1) * (g - m)
        v = beta2 * v + (1 - beta2) * g * g
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        if amsgrad:
            v_max = np.maximum(v_max, v)
            denom = np.sqrt(v_max) / np.sqrt(bias_correction2) + eps
        else:
            denom = np.sqrt(v) / np.sqrt(bias_correction2) + eps
        p = p - lr_t / bias_correction1 * m / denom
    return p, dict(step=step, m=m, v=v, v_max=v_max)


def keras_adam(p, grads, lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
               weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
    """Keras 3 ``keras.optimizers.Adam`` (keras/src/optimizers/adam.py and
    base_optimizer.py: clip, then decoupled weight decay, then the epsilon-hat
    update).  ``p`` and each step's grads are lists of arrays; ``lr`` may be a
    list (one value per step)."""
    ps = [np.array(x, dtype=np.float64) for x in p]
    ms = [np.zeros_like(x) for x in ps]
    vs = [np.zeros_like(x) for x in ps]
    vhats = [np.zeros_like(x) for x in ps]
    lrs = lr if isinstance(lr, (list, tuple)) else [lr] * len(grads)
    for t, (step_grads, lr_t) in enumerate(zip(grads, lrs), start=1):
        gs = [np.array(g, dtype=np.float64) for g in step_grads]
        if clipnorm is not None:
            gs = [g * clipnorm / max(np.sqrt(np.sum(g * g)), clipnorm) for g in gs]
        if global_clipnorm is not None:
            norm = np.sqrt(sum(np.sum(g * g) for g in gs))
            gs = [g * global_clipnorm / max(norm, global_clipnorm) for g in gs]
        if clipvalue is not None:
            gs = [np.clip(g, -clipvalue, clipvalue) for g in gs]
        alpha = lr_t * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        for i, g in enumerate(gs):
            if weight_decay:
                ps[i] = ps[i] - ps[i] * weight_decay * lr_t
            ms[i] = ms[i] + (g - ms[i]) * (1 - beta_1)
            vs[i] = vs[i] + (g * g - vs[i]) * (1 - beta_2)
            if amsgrad:
                vhats[i] = np.maximum(vhats[i], vs[i])
                ps[i] = ps[i] - alpha * ms[i] / (np.sqrt(vhats[i]) + epsilon)
            else:
                ps[i] = ps[i] - alpha * ms[i] / (np.sqrt(vs[i]) + epsilon)
    return ps, ms, vs, vhats


def keras2_adam(p, grads, lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, decay=0.0,
                amsgrad=False, clipnorm=None, clipvalue=None):
    """Keras 2 ``Adam.get_updates`` as in tf.keras (tensorflow/python/keras/
    optimizers.py): lr decays as lr / (1 + decay * iterations); ``get_gradients``
    clips each gradient by its own norm (clipnorm) or value (clipvalue)."""
    ps = [np.array(x, dtype=np.float64) for x in p]
    ms = [np.zeros_like(x) for x in ps]
    vs = [np.zeros_like(x) for x in ps]
    vhats = [np.zeros_like(x) for x in ps]
    for iterations, step_grads in enumerate(grads):
        gs = [np.array(g, dtype=np.float64) for g in step_grads]
        if clipnorm is not None:
            gs = [g * clipnorm / max(np.sqrt(np.sum(g * g)), clipnorm) for g in gs]
        if clipvalue is not None:
            gs = [np.clip(g, -clipvalue, clipvalue) for g in gs]
        lr_t = lr * (1.0 / (1.0 + decay * iterations))
        t = iterations + 1
        lr_t = lr_t * (np.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t))
        for i, g in enumerate(gs):
            ms[i] = beta_1 * ms[i] + (1.0 - beta_1) * g
            vs[i] = beta_2 * vs[i] + (1.0 - beta_2) * g * g
            if amsgrad:
                vhats[i] = np.maximum(vhats[i], vs[i])
                ps[i] = ps[i] - lr_t * ms[i] / (np.sqrt(vhats[i]) + epsilon)
            else:
                ps[i] = ps[i] - lr_t * ms[i] / (np.sqrt(vs[i]) + epsilon)
    return ps, ms, vs, vhats


def mlx_adam(p, grads, learning_rate, betas=(0.9, 0.999), eps=1e-8, bias_correction=False,
             weight_decay=0.0):
    """``mlx.optimizers.Adam`` / ``AdamW`` (python/mlx/optimizers/optimizers.py):
    no bias correction by default; AdamW decays ``p *= 1 - lr * wd`` first.
    ``learning_rate`` may be a callable of the completed step count."""
    ps = [np.array(x, dtype=np.float64) for x in p]
    ms = [np.zeros_like(x) for x in ps]
    vs = [np.zeros_like(x) for x in ps]
    b1, b2 = betas
    for step, step_grads in enumerate(grads):
        lr = learning_rate(step) if callable(learning_rate) else learning_rate
        t = step + 1
        for i, g in enumerate(step_grads):
            g = np.array(g, dtype=np.float64)
            ps[i] = ps[i] * (1 - lr * weight_decay)
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            if bias_correction:
                c1 = lr / (1 - b1 ** t)
                c2 = 1 / np.sqrt(1 - b2 ** t)
                ps[i] = ps[i] - c1 * ms[i] / (np.sqrt(vs[i]) * c2 + eps)
            else:
                ps[i] = ps[i] - lr * ms[i] / (np.sqrt(vs[i]) + eps)
    return ps, ms, vs


# -- low-bit optimizer state (API.md section 8), written from numba_adam's documented codes
def _lowbias32(x):
    x = x & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def group_key(seed, step):
    """splitmix64 of (seed, step), low 32 bits."""
    mask = (1 << 64) - 1
    z = (seed * 0x9E3779B97F4A7C15 + step * 0xD1B54A32D192ED03 + 0x632BE59BD9B4E019) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) & 0xFFFFFFFF


def stochastic_bf16(x, random16):
    """float32 -> bfloat16 value (as float32), rounded up with probability of the remainder:
    truncate after adding 16 random bits below the kept half."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    out = ((bits + np.asarray(random16, np.uint64)) >> 16) << 16
    finite = np.isfinite(np.asarray(x, np.float32))
    out = np.where(finite, out, (bits >> 16) << 16)
    return out.astype(np.uint32).view(np.float32)


def code_table(exponent_bits, signed):
    """Every value of a float-like 8-bit code in [-1, 1] (signed) or [0, 1], by code."""
    mant = 3
    bias = (1 << exponent_bits) - 1
    mags = []
    for code in range(1 << (exponent_bits + mant)):
        e, m = code >> mant, code & 7
        mags.append(m / 8 * 2.0 ** (1 - bias) if e == 0 else 2.0 ** (e - bias) * (1 + m / 8))
    mags = np.array(mags)
    mags[mags > 1] = np.nan             # codes above 1.0 are unused
    if not signed:
        return mags
    return np.concatenate([mags, -mags])


def nearest_code(y, table):
    """The code whose value is nearest to y (NaN entries never chosen)."""
    valid = np.flatnonzero(np.isfinite(table))
    values = table[valid]
    return valid[np.argmin(np.abs(y[:, None] - values[None, :]), axis=1)]


def quantize_blocks(x, signed, block=256):
    """Block-wise absmax quantization: (codes, absmax) as the documented 8-bit state."""
    table = code_table(4 if signed else 5, signed)
    x = np.asarray(x, np.float32)
    codes = np.zeros(x.size, np.int64)
    absmax = np.zeros(-(-x.size // block), np.float32)
    for k in range(absmax.size):
        part = x[k * block:(k + 1) * block]
        absmax[k] = np.max(np.abs(part))
        inverse = np.float32(1) / absmax[k] if absmax[k] else np.float32(0)
        codes[k * block:(k + 1) * block] = nearest_code(part * inverse, table)
    return codes, absmax


def dequantize_blocks(codes, absmax, signed, block=256):
    table = code_table(4 if signed else 5, signed)
    return (table[codes] * np.repeat(absmax, block)[:codes.size]).astype(np.float32)


def lowbit_torch_adam(p, grads, bits, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, seed=0,
                      index_base=0, amsgrad=False, maximize=False, clipvalue=None):
    """``torch.optim.Adam``'s rule on one flat float32 tensor whose m and v (and, with
    ``amsgrad``, v_max) are stored with 16 bits (bfloat16, stochastic rounding keyed on
    seed, step and element index; v_max rounds with v's bits) or 8 bits (blocks of 256,
    float-like codes; a zero code of the denominator's moment zeroes the first moment)
    between steps.  ``clipvalue`` clamps each gradient element first (Keras' option), then
    ``maximize`` negates it.  Returns (p, m, v) with m, v the stored values, and v_max's
    with ``amsgrad``: (p, m, v, v_max)."""
    p = np.array(p, np.float32)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    v_max = np.zeros_like(p)
    b1, b2 = betas
    index = index_base + np.arange(p.size, dtype=np.uint64)
    for step, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float32)
        if clipvalue is not None:
            g = np.clip(g, np.float32(-clipvalue), np.float32(clipvalue))
        if maximize:
            g = -g
        m_new = (m + np.float32(1 - b1) * (g - m)).astype(np.float32)
        v_new = (np.float32(b2) * v + np.float32(1 - b2) * g * g).astype(np.float32)
        vmax_new = np.maximum(v_max, v_new)
        bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
        den = vmax_new if amsgrad else v_new
        p = (p - np.float32(lr / bc1) * m_new /
             (np.sqrt(den) * np.float32(1 / np.sqrt(bc2)) + np.float32(eps))).astype(np.float32)
        if bits == 16:
            r = _lowbias32(group_key(seed, step) + index * 0x9E3779B1)
            m = stochastic_bf16(m_new, r & 0xFFFF)
            v = stochastic_bf16(v_new, (r >> 16) & 0xFFFF)
            v_max = stochastic_bf16(vmax_new, (r >> 16) & 0xFFFF)
        else:
            mc, ms = quantize_blocks(m_new, True)
            vc, vs = quantize_blocks(v_new, False)
            vmc, vms = quantize_blocks(vmax_new, False)
            mc[(vmc if amsgrad else vc) == 0] = 0
            m, v = dequantize_blocks(mc, ms, True), dequantize_blocks(vc, vs, False)
            v_max = dequantize_blocks(vmc, vms, False)
    return (p, m, v, v_max) if amsgrad else (p, m, v)
