"""MLX-style Adam and AdamW (``mlx.optimizers``) over nested dicts/lists of NumPy arrays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..optim import Optimizer, check_hyperparameter
from ._single import SingleGroupOptimizer

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


class Adam(SingleGroupOptimizer):
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
                 bias_correction: bool = False, state_bits: int = 32) -> None:
        super().__init__()
        self.state_bits = check_hyperparameter("state_bits", state_bits)
        self._lr = check_hyperparameter("lr", learning_rate)
        self.betas = check_hyperparameter("betas", betas)
        self.eps = check_hyperparameter("eps", eps)
        self.bias_correction = check_hyperparameter("bias_correction", bias_correction)
        self._tree: Any = None
        self._paths: list[str] = []

    def _group_options(self, lr: Any) -> dict[str, Any]:
        """The engine group keys of MLX's rule."""
        return dict(lr=lr, betas=self.betas, eps=self.eps, bias_correction=self.bias_correction,
                    state_bits=self.state_bits)

    def _make_optimizer(self, variables: list[np.ndarray]) -> Optimizer:
        return Optimizer(variables, self._group_options(self._lr))

    @property
    def learning_rate(self) -> float:
        """The learning rate the next step uses."""
        return float(self._lr(self.step)) if callable(self._lr) else self._lr

    @learning_rate.setter
    def learning_rate(self, value: float | Callable[[int], float]) -> None:
        self._lr = check_hyperparameter("lr", value)
        self._set_group_option("lr", value)

    @property
    def step(self) -> int:
        """Number of completed updates."""
        return self.iterations

    def init(self, parameters: Any) -> None:
        """Create zeroed state for every array in the ``parameters`` tree."""
        leaves = _flatten(parameters)
        self._build([leaf for _, leaf in leaves])
        self._tree, self._paths = parameters, [path for path, _ in leaves]

    def update(self, model: Any, gradients: Any) -> Any:
        """Apply ``gradients`` (a tree shaped like ``model``) to ``model``'s arrays in place."""
        return self.apply_gradients(gradients, model)

    def apply_gradients(self, gradients: Any, parameters: Any) -> Any:
        """Update ``parameters`` in place from ``gradients``; returns ``parameters``."""
        if not self.built:
            self.init(parameters)
        grads = dict(_flatten(gradients))
        missing = [p for p in self._paths if p not in grads]
        extra = [p for p in grads if p not in set(self._paths)]
        if missing or extra:
            raise ValueError(f"gradients tree does not match the parameters: missing "
                             f"{missing}, unexpected {extra}")
        self._check_same_variables([leaf for _, leaf in _flatten(parameters)])
        self._update([grads[p] for p in self._paths], None)
        return parameters

    @property
    def state(self) -> dict[str, Any]:
        """``{"step", "learning_rate"}`` plus, per parameter, ``{"m", "v"}`` (live views)."""
        state: dict[str, Any] = {"step": self.step, "learning_rate": self.learning_rate}
        if self.built:
            views = [self._state(i) for i in range(len(self._paths))]
            per_leaf = {p: {"m": s.exp_avg, "v": s.exp_avg_sq} for p, s in zip(self._paths, views)}
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
        """The updated parameter (a new array) for update number ``step``; updates ``state``.

        Runs the same engine over a one-array optimizer loaded with ``state``
        (a convenience for MLX-style code; ``update`` is the fast path).
        """
        new = np.array(parameter, copy=True, order="C")
        opt = Optimizer([new], self._group_options(self.learning_rate))
        opt.load_state_dict({"state": {0: {"step": max(self.step, 1) - 1, "exp_avg": state["m"],
                                           "exp_avg_sq": state["v"]}},
                             "param_groups": [{"params": [0]}]})
        opt.step([np.ascontiguousarray(gradient, new.dtype)])
        updated = opt.state_views(0) if opt.tensor_state_bits(0) == 32 else opt.tensor_state(0)
        state["m"][...] = updated.exp_avg
        state["v"][...] = updated.exp_avg_sq
        return new


class AdamW(Adam):
    r"""MLX's AdamW: ``p = p * (1 - lr * weight_decay)``, then :class:`Adam`'s update."""

    def __init__(self, learning_rate: float | Callable[[int], float],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, bias_correction: bool = False,
                 state_bits: int = 32) -> None:
        super().__init__(learning_rate, betas, eps, bias_correction, state_bits)
        self.weight_decay = check_hyperparameter("weight_decay", weight_decay)

    def _group_options(self, lr: Any) -> dict[str, Any]:
        return dict(super()._group_options(lr), weight_decay=self.weight_decay,
                    decoupled_weight_decay=True)
