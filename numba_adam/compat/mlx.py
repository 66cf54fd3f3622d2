"""MLX-style Adam and AdamW (``mlx.optimizers``) over nested dicts/lists of NumPy arrays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._engine import single_tensor_update
from ..optim import Adam as _EngineAdam, check_hyperparameter

__all__ = ["Adam", "AdamW"]


def _flatten(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(path, leaf) pairs of a nested dict/list/tuple, in a fixed order."""
    if isinstance(tree, dict):
        return [pair for k, v in tree.items() for pair in _flatten(v, f"{prefix}{k}.")]
    if isinstance(tree, (list, tuple)):
        return [pair for i, v in enumerate(tree) for pair in _flatten(v, f"{prefix}{i}.")]
    return [(prefix[:-1], tree)]


def _unflatten_like(tree: Any, leaves: dict[str, Any], prefix: str = "") -> Any:
    if isinstance(tree, dict):
        return {k: _unflatten_like(v, leaves, f"{prefix}{k}.") for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_unflatten_like(v, leaves, f"{prefix}{i}.") for i, v in enumerate(tree))
    return leaves[prefix[:-1]]


class Adam:
    r"""MLX's Adam: no bias correction unless asked.

    For each parameter, with ``bias_correction=False`` (MLX's default)::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        p = p - lr * m / (sqrt(v) + eps)

    and with ``bias_correction=True`` the torch form
    ``p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``.
    ``learning_rate`` is a float or a callable ``step -> lr`` (a
    ``numba_adam.schedules`` schedule, or MLX-style function), evaluated at
    the number of completed steps.  Trees are nested dicts/lists/tuples of
    NumPy arrays, updated in place (``update`` also returns the tree).

    Example:
        >>> import numpy as np
        >>> from numba_adam.compat import mlx
        >>> params = {"layer": {"w": np.ones(2), "b": np.zeros(1)}}
        >>> opt = mlx.Adam(learning_rate=0.1)
        >>> grads = {"layer": {"w": np.ones(2), "b": np.ones(1)}}
        >>> _ = opt.update(params, grads)
        >>> opt.step, [round(float(x), 4) for x in params["layer"]["w"]]
        (1, [0.6838, 0.6838])
    """

    def __init__(self, learning_rate: float | Callable[[int], float],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 bias_correction: bool = False) -> None:
        self._lr = check_hyperparameter("lr", learning_rate)
        self.betas = check_hyperparameter("betas", betas)
        self.eps = check_hyperparameter("eps", eps)
        self.bias_correction = check_hyperparameter("bias_correction", bias_correction)
        self._engine_opt: _EngineAdam | None = None
        self._tree: Any = None
        self._paths: list[str] = []

    def _group_options(self) -> dict[str, Any]:
        return dict(eps=self.eps, bias_correction=self.bias_correction)

    @property
    def learning_rate(self) -> float:
        """The learning rate the next step uses."""
        return float(self._lr(self.step)) if callable(self._lr) else self._lr

    @learning_rate.setter
    def learning_rate(self, value: float | Callable[[int], float]) -> None:
        self._lr = check_hyperparameter("lr", value)
        if self._engine_opt is not None:
            self._engine_opt.param_groups[0]["lr"] = value

    @property
    def step(self) -> int:
        """Number of completed updates."""
        return self._engine_opt.param_groups[0].updates if self._engine_opt else 0

    def init(self, parameters: Any) -> None:
        """Create zeroed state for every array in the ``parameters`` tree."""
        leaves = _flatten(parameters)
        self._engine_opt = _EngineAdam(
            [dict(params=[leaf for _, leaf in leaves], **self._group_options())],
            lr=self._lr, betas=self.betas)
        self._tree, self._paths = parameters, [path for path, _ in leaves]

    def update(self, model: Any, gradients: Any) -> Any:
        """Apply ``gradients`` (a tree shaped like ``model``) to ``model``'s arrays in place."""
        return self.apply_gradients(gradients, model)

    def apply_gradients(self, gradients: Any, parameters: Any) -> Any:
        """Update ``parameters`` in place from ``gradients``; returns ``parameters``."""
        if self._engine_opt is None:
            self.init(parameters)
        grads = dict(_flatten(gradients))
        missing = [p for p in self._paths if p not in grads]
        extra = [p for p in grads if p not in set(self._paths)]
        if missing or extra:
            raise ValueError(f"gradients tree does not match the parameters: missing "
                             f"{missing}, unexpected {extra}")
        if any(a is not b for (_, a), b in zip(_flatten(parameters),
                                               self._engine_opt.param_groups[0]["params"])):
            raise ValueError("apply_gradients must be given the parameters the optimizer was "
                             "initialised with")
        self._engine_opt.step([grads[p] for p in self._paths])
        return parameters

    @property
    def state(self) -> dict[str, Any]:
        """``{"step", "learning_rate"}`` plus, per parameter, ``{"m", "v"}`` (live views)."""
        state: dict[str, Any] = {"step": self.step, "learning_rate": self.learning_rate}
        if self._engine_opt is not None:
            engine = self._engine_opt._engine
            per_leaf = {p: dict(zip(("m", "v"), engine.tensor_state(i)[:2]))
                        for i, p in enumerate(self._paths)}
            tree = _unflatten_like(self._tree, per_leaf)
            if isinstance(tree, dict):
                state.update(tree)
            else:
                state["params"] = tree
        return state

    # -- per-array API (MLX's init_single/apply_single) -------------------
    def init_single(self, parameter: np.ndarray, state: dict) -> None:
        """Zeroed ``m`` and ``v`` for one array, stored in ``state``."""
        state["m"] = np.zeros(np.shape(parameter), dtype=np.asarray(parameter).dtype)
        state["v"] = np.zeros(np.shape(parameter), dtype=np.asarray(parameter).dtype)

    def apply_single(self, gradient: np.ndarray, parameter: np.ndarray, state: dict) -> np.ndarray:
        """The updated parameter (a new array) for update number ``step``; updates ``state``."""
        new = np.array(parameter, copy=True, order="C")
        single_tensor_update(new, np.ascontiguousarray(gradient, new.dtype), state["m"],
                             state["v"], lr=self.learning_rate, betas=self.betas,
                             step=max(self.step, 1), **self._group_options())
        return new


class AdamW(Adam):
    r"""MLX's AdamW: ``p = p * (1 - lr * weight_decay)``, then :class:`Adam`'s update."""

    def __init__(self, learning_rate: float | Callable[[int], float],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, bias_correction: bool = False) -> None:
        super().__init__(learning_rate, betas, eps, bias_correction)
        self.weight_decay = check_hyperparameter("weight_decay", weight_decay)

    def _group_options(self) -> dict[str, Any]:
        return dict(super()._group_options(), weight_decay=self.weight_decay,
                    decoupled_weight_decay=True)
