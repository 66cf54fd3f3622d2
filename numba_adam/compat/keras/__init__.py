"""Keras-style Adam (tf.keras / Keras 3 semantics) on the numba_adam engine."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ...optim import Optimizer, check_hyperparameter
from ...schedules import Schedule, from_config as _schedule_from_config
from .._single import SingleGroupOptimizer
from . import legacy  # noqa: F401  (numba_adam.compat.keras.legacy after a plain import)

__all__ = ["Adam", "legacy"]


class _ZeroArgumentLR:
    """Adapts a Keras-style zero-argument learning-rate callable to ``step -> lr``."""

    def __init__(self, fn: Callable[[], float]):
        self.fn = fn

    def __call__(self, step: int) -> float:
        return float(self.fn())

    def __repr__(self) -> str:
        return f"{self.fn!r}"


def _value(x: Any) -> float:
    return float(x() if callable(x) else x)


class Adam(SingleGroupOptimizer):
    r"""Adam with Keras' update rule ("epsilon hat").

    At update t (1-based), for each variable p with gradient g::

        g = clip(g)                                  (clipnorm | clipvalue | global_clipnorm)
        p = p - p * weight_decay * lr                (if weight_decay)
        m = m + (g - m) * (1 - beta_1)
        v = v + (g**2 - v) * (1 - beta_2)
        v_hat = max(v_hat, v)                        (if amsgrad)
        alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
        p = p - alpha * m / (sqrt(v or v_hat) + epsilon)

    ``learning_rate`` is a float, a ``numba_adam.schedules`` schedule
    (evaluated at ``iterations``) or a zero-argument callable; ``beta_1`` and
    ``beta_2`` are floats or zero-argument callables (evaluated every update).
    Sparse gradients are ``numba_adam.IndexedSlices``: duplicate indices are
    summed and, as in TF/Keras, moments decay on every row (dense-equivalent);
    ``lazy_sparse=True`` updates only the given rows (TF's LazyAdam).

    Variables are NumPy arrays (or ParamBuffer views), updated in place. The
    optimizer is built for the variables of its first ``apply``; later calls
    must pass the same variables.

    Raises:
        ValueError: more than one of clipnorm, clipvalue, global_clipnorm, or
            invalid hyperparameters.

    Example:
        >>> import numpy as np
        >>> from numba_adam.compat import keras
        >>> var = np.array([10.0])
        >>> opt = keras.Adam(learning_rate=0.1)
        >>> opt.apply_gradients([(var.copy(), var)])    # d(var**2/2)/dvar = var
        1
        >>> [round(float(x), 4) for x in var]           # first step: -lr * sign(grad)
        [9.9]
    """

    def __init__(self, learning_rate: float | Schedule | Callable[[], float] = 0.001,
                 beta_1: float | Callable[[], float] = 0.9,
                 beta_2: float | Callable[[], float] = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str = "Adam",
                 lazy_sparse: bool = False, state_bits: int = 32) -> None:
        super().__init__()
        clipping = {k: v for k, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                                      ("global_clipnorm", global_clipnorm)) if v is not None}
        if len(clipping) > 1:
            raise ValueError(f"Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be "
                             f"set. Received: {clipping}")
        for key, value in clipping.items():
            check_hyperparameter(key, value)
        for key, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not callable(beta):
                check_hyperparameter("betas", (beta, 0.5) if key == "beta_1" else (0.5, beta))
        self.epsilon = check_hyperparameter("eps", epsilon)
        self.amsgrad = check_hyperparameter("amsgrad", amsgrad)
        self.weight_decay = (None if weight_decay is None
                             else check_hyperparameter("weight_decay", weight_decay))
        self.lazy_sparse = check_hyperparameter("lazy_sparse", lazy_sparse)
        self.state_bits = check_hyperparameter("state_bits", state_bits)
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.beta_1, self.beta_2 = beta_1, beta_2
        self.name = name
        self.learning_rate = learning_rate

    # -- learning rate -----------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The learning rate the next update uses."""
        if isinstance(self._lr, (int, float)):
            return float(self._lr)
        if isinstance(self._lr, Schedule):
            return self._lr(self.iterations)
        return float(self._lr())

    @learning_rate.setter
    def learning_rate(self, value: float | Schedule | Callable[[], float]) -> None:
        if isinstance(value, dict):
            value = _schedule_from_config(value)
        if not callable(value):
            value = check_hyperparameter("lr", value)
        self._lr = value
        self._set_group_option("lr", self._engine_lr())

    def _engine_lr(self):
        if isinstance(self._lr, Schedule) or not callable(self._lr):
            return self._lr
        return _ZeroArgumentLR(self._lr)

    # -- applying ----------------------------------------------------------
    def _make_optimizer(self, variables: list[np.ndarray]) -> Optimizer:
        opt = Optimizer(variables, dict(
            lr=self._engine_lr(), betas=(_value(self.beta_1), _value(self.beta_2)),
            eps=self.epsilon, weight_decay=self.weight_decay or 0.0,
            decoupled_weight_decay=True, amsgrad=self.amsgrad, epsilon_hat=True,
            lazy_sparse=self.lazy_sparse, clipnorm=self.clipnorm, clipvalue=self.clipvalue,
            state_bits=self.state_bits))
        opt.global_clipnorm = self.global_clipnorm
        return opt

    def build(self, var_list: Sequence[np.ndarray]) -> None:
        """Create the optimizer state for ``var_list`` (done by the first ``apply``)."""
        self._build(var_list)

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, np.ndarray]]) -> int:
        """Apply ``(gradient, variable)`` pairs; returns ``iterations``."""
        pairs = list(grads_and_vars)
        if not pairs:
            raise ValueError("apply_gradients got no (gradient, variable) pairs")
        grads, variables = zip(*pairs)
        return self.apply(list(grads), list(variables))

    def apply(self, grads: Sequence[Any], trainable_variables: Sequence[np.ndarray] | None = None
              ) -> int:
        """Apply ``grads`` to ``trainable_variables`` (the built variables if None)."""
        if self.built and (callable(self.beta_1) or callable(self.beta_2)):
            self._set_group_option("betas", (_value(self.beta_1), _value(self.beta_2)))
        self._update(grads, trainable_variables)
        return self.iterations

    # -- state -------------------------------------------------------------
    @property
    def variables(self) -> list[np.ndarray]:
        """``[iterations]`` + momentums + velocities (+ velocity_hats): live views of 32-bit
        state, decoded copies of 16- and 8-bit state."""
        out = [np.array(self.iterations, dtype=np.int64)]
        if not self.built:
            return out
        states = [self._state(i) for i in range(len(self._variables))]
        out += [s.exp_avg for s in states] + [s.exp_avg_sq for s in states]
        if self.amsgrad:
            out += [s.max_exp_avg_sq for s in states]
        return out

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments; a schedule appears as its config."""
        lr = self._lr.get_config() if isinstance(self._lr, Schedule) else self._lr
        return dict(name=self.name, learning_rate=lr, beta_1=self.beta_1, beta_2=self.beta_2,
                    epsilon=self.epsilon, amsgrad=self.amsgrad, weight_decay=self.weight_decay,
                    clipnorm=self.clipnorm, clipvalue=self.clipvalue,
                    global_clipnorm=self.global_clipnorm, lazy_sparse=self.lazy_sparse,
                    state_bits=self.state_bits)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Adam":
        return cls(**config)

    def _loaded(self) -> None:
        """After ``load``: report the learning rate or schedule the file restored."""
        group = self._group
        self._lr = group.schedule if group.schedule is not None else group["lr"]
