"""One element's Adam arithmetic, written once as plain scalar functions.

The CPU backend compiles these with ``njit(inline="always")`` and the CUDA
backend with ``cuda.jit(device=True)``, so both targets run the same
arithmetic.  Every constant arrives as an argument in the buffer's dtype: a
Python literal would promote float32 loops to float64.

One parameterisation covers every supported rule:

* gradient:  ``g = clip(g, c) * grad_scale + l2 * p``: Keras' clipvalue clamp,
  then one factor holding maximize's sign and any norm clipping, then torch's
  L2 weight decay (as ``torch.optim.Adam`` adds it after negating)
* moments:   ``m += (1 - b1) * (g - m)`` (torch's ``lerp``),
  ``v = b2 * v + (1 - b2) * g * g``
* update:    ``p = p * decay - step_size * m / (sqrt(v_hat) * denom_scale + eps)``

``decay`` is ``1 - lr * wd`` for decoupled weight decay (AdamW, Keras, MLX) and
1 otherwise.  torch's rule is ``step_size = lr / bc1``, ``denom_scale =
1 / sqrt(bc2)``; Keras' epsilon-hat rule is ``step_size = lr * sqrt(bc2) / bc1``,
``denom_scale = 1``; no bias correction (MLX default) is ``step_size = lr``,
``denom_scale = 1``.
"""

import math


def effective_grad(g, p, grad_scale, l2, limit):
    """Gradient after value clipping, sign/norm scaling and L2 weight decay.

    The clamp to [-limit, limit] lets NaN through (``limit`` is inf when off).
    """
    clipped = limit if g > limit else (-limit if g < -limit else g)
    return clipped * grad_scale + l2 * p


def first_moment(m, g, one_minus_beta1):
    """Exponential moving average of the gradient (torch's ``lerp_``)."""
    return m + one_minus_beta1 * (g - m)


def second_moment(v, g, beta2, one_minus_beta2):
    """Exponential moving average of the squared gradient."""
    return beta2 * v + one_minus_beta2 * (g * g)


def param_update(p, m, v_hat, decay, step_size, denom_scale, eps):
    """New parameter value from the moments (``v_hat`` is v or AMSGrad's max)."""
    return p * decay - step_size * m / (math.sqrt(v_hat) * denom_scale + eps)


def amsgrad_max(v_max, v):
    """Running maximum of the raw second moment (NaN in ``v`` propagates)."""
    return v_max if v_max >= v else v
