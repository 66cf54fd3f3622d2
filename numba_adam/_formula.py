"""The whole update rule: per-element arithmetic, clip factors and per-group scalars.

Element functions are plain scalar Python.  The CPU backend compiles them with
``njit(inline="always")`` and the CUDA backend with ``cuda.jit(device=True)``,
so both targets run the same arithmetic.  Every constant arrives as an
argument in the buffer's dtype: a Python literal would promote float32 loops
to float64.

One parameterisation covers every supported rule (torch, Keras, MLX):

* gradient:  ``g = clip(g, c) * grad_scale + l2 * p``: Keras' clipvalue clamp,
  then one factor holding maximize's sign and any norm clipping, then torch's
  L2 weight decay (as ``torch.optim.Adam`` adds it after negating)
* moments:   ``m += (1 - b1) * (g - m)`` (torch's ``lerp``),
  ``v = b2 * v + (1 - b2) * g * g``; a moment whose magnitude falls below
  ``SMALLEST_MOMENT`` (2**-126, float32's smallest normal number) is stored as 0.
  A parameter whose gradient stays zero (a dead unit, an unused embedding
  row) has its m shrink by b1 a step into subnormal numbers, and x86 CPUs
  compute with those 10-100x slower: 13% of the demo's moments went subnormal
  within 800 steps and made its step 11x slower.  A moment that small moves
  its parameter by under 1e-30, so the update is unchanged in practice; torch
  keeps the subnormal (unless ``torch.set_flush_denormal(True)``), TensorFlow
  flushes in its CPU threads.
* update:    ``p = p * decay - step_size * m / (sqrt(v_hat) * denom_scale + eps)``

``decay`` is ``1 - lr * wd`` for decoupled weight decay (AdamW, Keras, MLX) and
1 otherwise.  torch's rule is ``step_size = lr / bc1``, ``denom_scale =
1 / sqrt(bc2)``; Keras' epsilon-hat rule is ``step_size = lr * sqrt(bc2) / bc1``,
``denom_scale = 1``; no bias correction (MLX default) is ``step_size = lr``,
``denom_scale = 1``.  :func:`group_scalars` turns a :class:`Rule`, a learning
rate and a step number into those constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Moments below this magnitude are stored as zero: float32's smallest normal number, in
# every dtype, so results do not depend on the backend or dtype's subnormal speed.
SMALLEST_MOMENT = 2.0 ** -126


def effective_grad(g, p, grad_scale, l2, limit):
    """Gradient after value clipping, sign/norm scaling and L2 weight decay.

    The clamp to [-limit, limit] lets NaN through (``limit`` is inf when off).
    """
    clipped = limit if g > limit else (-limit if g < -limit else g)
    return clipped * grad_scale + l2 * p


def first_moment(m, g, one_minus_beta1, flush_below):
    """Exponential moving average of the gradient (torch's ``lerp_``); zero below
    ``flush_below`` in magnitude (NaN stays NaN).  Each backend compiles these element
    functions on their own, so the flush is written out in both."""
    m = m + one_minus_beta1 * (g - m)
    return m - m if abs(m) < flush_below else m


def second_moment(v, g, beta2, one_minus_beta2, flush_below):
    """Exponential moving average of the squared gradient; zero below ``flush_below``."""
    v = beta2 * v + one_minus_beta2 * (g * g)
    return v - v if v < flush_below else v


def param_update(p, m, v_hat, decay, step_size, denom_scale, eps):
    """New parameter value from the moments (``v_hat`` is v or AMSGrad's max)."""
    return p * decay - step_size * m / (math.sqrt(v_hat) * denom_scale + eps)


def amsgrad_max(v_max, v):
    """Running maximum of the raw second moment (NaN in ``v`` propagates)."""
    return v_max if v_max >= v else v


def sum_squares(values):
    """Sum of the squared elements of ``values`` in float64, in element order."""
    total = 0.0
    for x in values.ravel():
        total += float(x) * float(x)
    return total


def clip_scales(item_sums, item_tensor, tensor_group, extra_sums, clipnorms, global_clipnorm,
                tensor_sums, grad_scales):
    """Norm-clipping factor of every tensor from per-item float64 sums of squares.

    ``item_tensor[k]`` is work item k's tensor, ``extra_sums`` the sums of
    tensors whose gradient is sparse this step, ``clipnorms[group]`` a group's
    per-tensor limit (<= 0: none), ``global_clipnorm`` the joint limit (<= 0:
    none).  Sums are combined in item order on one thread, so the factors are
    the same for any thread count, on the CPU and on the GPU.
    """
    n = tensor_sums.shape[0]
    for t in range(n):
        tensor_sums[t] = extra_sums[t]
    for k in range(item_sums.shape[0]):
        tensor_sums[item_tensor[k]] += item_sums[k]
    shared = 1.0
    if global_clipnorm > 0:
        total = 0.0
        for t in range(n):
            total += tensor_sums[t]
        shared = global_clipnorm / max(math.sqrt(total), global_clipnorm)
    for t in range(n):
        scale = shared
        clipnorm = clipnorms[tensor_group[t]]
        if clipnorm > 0:
            scale *= clipnorm / max(math.sqrt(tensor_sums[t]), clipnorm)
        grad_scales[t] = scale


@dataclass(frozen=True, kw_only=True)
class Rule:
    """How one parameter group turns gradients into updates (everything but lr and step).

    ``epsilon_hat``: Keras' form (eps added to ``sqrt(v)``, bias corrections
    folded into the step size); otherwise torch's.  ``bias_correction=False``
    is MLX's default.  ``clipvalue`` clamps each gradient element (None: off).
    """

    beta1: float
    beta2: float
    eps: float
    weight_decay: float = 0.0
    decoupled_weight_decay: bool = False
    maximize: bool = False
    epsilon_hat: bool = False
    bias_correction: bool = True
    clipvalue: float | None = None


def group_scalars(rule: Rule, *, lr: float, step: int) -> tuple[float, ...]:
    """The group-scalar row (columns in ``_config``) for update number ``step`` (1-based).

    Computed in float64 once per group and step, as torch's for-loop Adam does,
    so the kernel is left with one sqrt and one division per element.
    """
    return scalar_row(rule.beta1, rule.beta2, rule.eps, rule.weight_decay,
                      rule.decoupled_weight_decay, rule.maximize, rule.epsilon_hat,
                      rule.bias_correction, math.inf if rule.clipvalue is None else rule.clipvalue,
                      lr, step)


def scalar_row(beta1, beta2, eps, weight_decay, decoupled, maximize, epsilon_hat,
               bias_correction, clipvalue, lr, step):
    """:func:`group_scalars` from plain numbers (``clipvalue`` inf: off), so compiled code
    (``numba_adam.jit``) computes the same row with the same float64 operations."""
    t = float(step)
    bc1 = 1.0 - beta1 ** t if bias_correction else 1.0
    bc2 = 1.0 - beta2 ** t if bias_correction else 1.0
    if epsilon_hat:        # Keras: alpha = lr * sqrt(bc2) / bc1, eps added to sqrt(v)
        step_size = lr * math.sqrt(bc2) / bc1
        denom_scale = 1.0
    else:                  # torch: lr / bc1, eps added to sqrt(v) / sqrt(bc2)
        step_size = lr / bc1
        denom_scale = 1.0 / math.sqrt(bc2)
    return (
        -1.0 if maximize else 1.0,
        0.0 if decoupled else weight_decay,
        1.0 - lr * weight_decay if decoupled else 1.0,
        1.0 - beta1,
        beta2,
        1.0 - beta2,
        step_size,
        denom_scale,
        eps,
        clipvalue,
        SMALLEST_MOMENT,
    )
