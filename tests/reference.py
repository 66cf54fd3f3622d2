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
