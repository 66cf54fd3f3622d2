"""What the Keras, legacy-Keras and MLX front-ends share: one parameter group, built on first use.

A front-end translates its framework's options into the engine's group keys
(``_make_optimizer``) and its state names into the logical state; this base
holds the optimizer, checks that later calls pass the same variables, counts
``iterations`` and saves/loads checkpoints.  It uses only the public API of
``numba_adam.Optimizer``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..optim import Optimizer


class SingleGroupOptimizer:
    """Base of the front-ends: one group over the variables of the first update."""

    def __init__(self) -> None:
        self._optimizer: Optimizer | None = None
        self._variables: list[Any] = []

    def _make_optimizer(self, variables: list[Any]) -> Optimizer:
        """The engine optimizer for ``variables``, with this front-end's options."""
        raise NotImplementedError

    @property
    def built(self) -> bool:
        """Whether the state exists (after ``build`` or the first update)."""
        return self._optimizer is not None

    def _build(self, variables: Sequence[Any]) -> Optimizer:
        variables = list(variables)
        self._optimizer = self._make_optimizer(variables)
        self._variables = variables
        return self._optimizer

    def _check_same_variables(self, variables: Sequence[Any]) -> None:
        if len(variables) != len(self._variables) or any(
                a is not b for a, b in zip(variables, self._variables)):
            raise ValueError(f"this optimizer was built for {len(self._variables)} variables; "
                             f"later updates must be given the same variables in the same order")

    def _update(self, grads: Sequence[Any], variables: Sequence[Any] | None) -> None:
        """One update: builds on the first call, then requires the same variables."""
        if self._optimizer is None:
            if variables is None:
                raise ValueError("the first update needs the variables, to build the optimizer")
            self._build(variables)
        elif variables is not None:
            self._check_same_variables(variables)
        self._optimizer.step(list(grads))

    def _state(self, index: int):
        """Tensor ``index``'s state: live views of 32-bit state, decoded copies otherwise."""
        opt = self._require_built()
        return opt.state_views(index) if opt.tensor_state_bits(index) == 32 else \
            opt.tensor_state(index)

    @property
    def _group(self):
        return self._require_built().param_groups[0]

    @property
    def iterations(self) -> int:
        """Number of updates applied so far."""
        return self._optimizer.param_groups[0].updates if self._optimizer is not None else 0

    def _set_group_option(self, key: str, value: Any) -> None:
        """Forward an option changed on the front-end to the built optimizer, if any."""
        if self._optimizer is not None:
            self._optimizer.param_groups[0][key] = value

    def _require_built(self) -> Optimizer:
        if self._optimizer is None:
            raise ValueError("the optimizer has no state yet: build it or apply gradients first")
        return self._optimizer

    def jit_handle(self) -> Any:
        """A handle for ``numba_adam.jit.step_rows`` (and, when the variables are views of a
        ``ParamBuffer``, ``numba_adam.jit.step``) from compiled code: this front-end's
        rule, state and step count (see ``numba_adam.Optimizer.jit_handle``)."""
        return self._require_built().jit_handle()

    def save(self, path: str | os.PathLike, params: bool = False) -> None:
        """Checkpoint the built optimizer (see ``numba_adam.Adam.save``)."""
        self._require_built().save(path, params=params)

    def load(self, path: str | os.PathLike, params: bool | None = None) -> None:
        """Restore a checkpoint written by :meth:`save` into the built optimizer."""
        self._require_built().load(path, params=params)
        self._loaded()

    def __reduce_ex__(self, protocol: int):
        if self._optimizer is not None:   # its state updates the caller's arrays in place
            self._optimizer.__reduce_ex__(protocol)   # raises the optimizer's TypeError
        return super().__reduce_ex__(protocol)

    def _loaded(self) -> None:
        """Hook: refresh front-end attributes after a load (the lr it reports, say)."""
