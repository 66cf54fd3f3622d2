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
