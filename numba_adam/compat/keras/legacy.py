"""Legacy Keras (Keras 2 / TF 1.x ``keras.optimizers.Adam``) on the numba_adam engine."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..._state_dict import step_count
from ...optim import Optimizer, check_hyperparameter
from ...schedules import inverse_time_decay
from .._single import SingleGroupOptimizer

__all__ = ["Adam"]

_EPSILON = 1e-7   # keras.backend.epsilon()


class Adam(SingleGroupOptimizer):
    r"""Keras 2's Adam: per-update learning-rate ``decay`` and epsilon hat.

    Keras 2's ``get_updates``, with ``iterations`` counting completed updates::

        lr_t = lr / (1 + decay * iterations)
        t = iterations + 1
        lr_t = lr_t * sqrt(1 - beta_2**t) / (1 - beta_1**t)
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g**2
        vhat = max(vhat, v)                          (if amsgrad)
        p = p - lr_t * m / (sqrt(v or vhat) + epsilon)

    ``epsilon=None`` means ``keras.backend.epsilon()`` (1e-7). ``clipnorm``
    clips each gradient by its own norm and ``clipvalue`` clamps each element,
    as tf.keras' ``get_gradients`` does (standalone Keras 2.2 clipped by the
    global norm instead; tests/data has tf_keras' trajectories).

    ``get_updates`` and ``get_gradients`` built symbolic graph operations on a
    loss tensor; a NumPy model has no graph to differentiate, so they raise
    ``NotImplementedError``: compute gradients with your backward pass and
    call ``apply_gradients``.

    Example:
        >>> import numpy as np
        >>> from numba_adam.compat.keras import legacy
        >>> w = np.ones(3)
        >>> opt = legacy.Adam(lr=0.1, decay=0.5)
        >>> opt.apply_gradients([(np.ones(3), w)])
        >>> [len(x) if x.ndim else int(x) for x in opt.get_weights()]   # iterations, m, v, vhat
        [1, 3, 3, 1]
    """

    def __init__(self, lr: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float | None = None, decay: float = 0.0, amsgrad: bool = False,
                 **kwargs: Any) -> None:
        super().__init__()
        allowed = {"clipnorm", "clipvalue", "state_bits"}
        for key in kwargs:
            if key not in allowed:
                raise TypeError(f"Unexpected keyword argument passed to optimizer: {key}")
        self.clipnorm = check_hyperparameter("clipnorm", kwargs.get("clipnorm"))
        self.clipvalue = check_hyperparameter("clipvalue", kwargs.get("clipvalue"))
        self.state_bits = check_hyperparameter("state_bits", kwargs.get("state_bits", 32))
        self.beta_1, self.beta_2 = check_hyperparameter("betas", (beta_1, beta_2))
        self.epsilon = _EPSILON if epsilon is None else check_hyperparameter("eps", epsilon)
        self.decay = check_hyperparameter("decay", decay)
        self.amsgrad = check_hyperparameter("amsgrad", amsgrad)
        self._lr = check_hyperparameter("lr", lr)

    @property
    def lr(self) -> float:
        """The base learning rate (before ``decay``)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = check_hyperparameter("lr", value)
        self._set_group_option("lr", self._schedule())

    def _schedule(self):
        return inverse_time_decay(self._lr, 1, self.decay) if self.decay > 0 else self._lr

    def _make_optimizer(self, variables: list[np.ndarray]) -> Optimizer:
        return Optimizer(variables, dict(
            lr=self._schedule(), betas=(self.beta_1, self.beta_2), eps=self.epsilon,
            amsgrad=self.amsgrad, epsilon_hat=True, clipnorm=self.clipnorm,
            clipvalue=self.clipvalue, state_bits=self.state_bits))

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, np.ndarray]]) -> None:
        """Apply ``(gradient, variable)`` pairs (variables are updated in place)."""
        pairs = list(grads_and_vars)
        if not pairs:
            raise ValueError("apply_gradients got no (gradient, variable) pairs")
        grads, variables = (list(x) for x in zip(*pairs))
        self._update(grads, variables)

    def get_updates(self, loss: Any, params: Sequence[Any]) -> None:
        """Graph-mode only in Keras 2; see the class docstring."""
        raise NotImplementedError(
            "get_updates builds symbolic update ops from a loss tensor (Keras 2 graph mode); "
            "NumPy models have no graph: compute gradients and call apply_gradients")

    def get_gradients(self, loss: Any, params: Sequence[Any]) -> None:
        """Graph-mode only in Keras 2; see the class docstring."""
        raise NotImplementedError(
            "get_gradients differentiates a symbolic loss tensor (Keras 2 graph mode); "
            "NumPy models compute their gradients in their own backward pass")

    # -- weights, in Keras 2's order: [iterations] + ms + vs + vhats --------
    def get_weights(self) -> list[np.ndarray]:
        """``[iterations] + ms + vs + vhats`` (vhats are 1-element zeros without amsgrad,
        as in Keras 2); copies."""
        if not self.built:
            return []
        opt = self._optimizer
        states = [opt.tensor_state(i) for i in range(len(self._variables))]
        vhats = ([s.max_exp_avg_sq for s in states] if self.amsgrad
                 else [np.zeros(1, opt.dtype) for _ in states])
        return ([np.array(self.iterations, dtype=np.int64)] + [s.exp_avg for s in states]
                + [s.exp_avg_sq for s in states] + vhats)

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set ``[iterations] + ms + vs + vhats``; ValueError/TypeError (nothing changed) on a
        mismatch."""
        current = self.get_weights()
        weights = list(weights)
        if not weights and not current:
            return    # Keras 2: an optimizer without weights takes an empty list
        if len(weights) != len(current):
            raise ValueError(f"Length of the specified weight list ({len(weights)}) does not "
                             f"match the number of weights of the optimizer ({len(current)})")
        for i, (new, old) in enumerate(zip(weights, current)):
            if np.shape(new) != old.shape:
                raise ValueError(f"Optimizer weight shape {old.shape} not compatible with "
                                 f"provided weight shape {np.shape(new)} (weight {i})")
        iterations = step_count(weights[0], "iterations (weight 0)")
        n = len(self._variables)
        state = {}
        for i in range(n):
            entry = {"step": iterations, "exp_avg": weights[1 + i],
                     "exp_avg_sq": weights[1 + n + i]}
            if self.amsgrad:
                entry["max_exp_avg_sq"] = weights[1 + 2 * n + i]
            state[i] = entry
        self._optimizer.load_state_dict({"state": state,
                                         "param_groups": [{"params": list(range(n))}]})

    def get_config(self) -> dict[str, Any]:
        config = dict(lr=self._lr, beta_1=self.beta_1, beta_2=self.beta_2, decay=self.decay,
                      epsilon=self.epsilon, amsgrad=self.amsgrad)
        if self.clipnorm is not None:
            config["clipnorm"] = self.clipnorm
        if self.clipvalue is not None:
            config["clipvalue"] = self.clipvalue
        if self.state_bits != 32:
            config["state_bits"] = self.state_bits
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Adam":
        return cls(**config)
