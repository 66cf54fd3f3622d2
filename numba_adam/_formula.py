"""One element's Adam arithmetic, written once as plain scalar functions.

The CPU backend compiles these with ``njit(inline="always")`` and the CUDA
backend with ``cuda.jit(device=True)``, so both targets run the same
arithmetic.  Every constant arrives as an argument in the buffer's dtype: a
Python literal would promote float32 loops to float64.

One parameterisation covers every supported rule:

* gradient:  ``g = g * grad_sign + l2 * p``  (maximize negates first, then
  torch's L2 weight decay is added, as in ``torch.optim.Adam``)
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


def effective_grad(g, p, grad_sign, l2):
    """Gradient after the maximize sign and L2 weight decay."""
    return g * grad_sign + l2 * p


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
