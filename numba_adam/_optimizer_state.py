"""What an optimizer holds, read and restored: per-tensor state, the torch-layout
state_dict, checkpoint files, and the handle that gives compiled code its state.

:class:`OptimizerState` is the part of :class:`numba_adam.optim.Optimizer` that reads
and writes the engine's state; the Optimizer builds the groups and steps them.  The
state_dict layout lives in ``_state_dict``, the file format in ``checkpoint``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import _state_dict, checkpoint
from ._checks import check_hyperparameter
from ._state import TensorState


class OptimizerState:
    """State reads, ``state_dict``/``load_state_dict``, ``save``/``load`` and
    ``jit_handle`` of an :class:`~numba_adam.optim.Optimizer` (over its groups, tensors
    and engine)."""

    # -- compiled code ------------------------------------------------------
    def jit_handle(self) -> Any:
        """A value ``@njit`` functions accept, to step this optimizer from compiled code.

        ``numba_adam.jit.step(handle)`` is ``self.step()`` (gradients from the
        ParamBuffer grad views) and ``numba_adam.jit.step_rows(handle, i, rows,
        values)`` is ``self.step_rows(i, rows, values)``.  The handle holds this
        optimizer's own state and tables, not copies, so ``state_dict()``, step
        counts, ``param_groups[i]["lr"]`` and checkpoints see every update made
        through it.  It goes out of date when a hyperparameter, a group or the
        global clipnorm changes, or state is loaded: a step through it then
        raises, and a new ``jit_handle()`` reflects the change.

        Raises:
            TypeError: a group's lr is a callable that is not a
                ``numba_adam.schedules`` schedule (compiled code cannot call
                Python), or the parameters are on the GPU.
            ValueError: a parameter is a strided view.
        """
        from . import jit
        if self._jit_handle is not None and jit.is_current(self._jit_handle):
            return self._jit_handle
        if self._layout_stale:
            self._rebuild_engine()
        if self._options_stale:
            self._refresh_options()
        groups = self._groups
        self._jit_handle = jit.make_handle(
            self._engine.jit_arrays(), self._engine, self._rules,
            [g.schedule if g.schedule is not None else g["lr"] for g in groups],
            self._seeds, self._clipnorms, self._global_clipnorm, self._step_counts)
        return self._jit_handle

    def _drop_jit_handle(self) -> None:
        """Mark the jit handle out of date (the options or arrays it carries changed)."""
        if self._jit_handle is not None:
            from . import jit
            jit.retire(self._jit_handle)
            self._jit_handle = None

    @property
    def state_nbytes(self) -> int:
        """Bytes of optimizer state held (m, v and AMSGrad's v_max)."""
        return self._engine.state.nbytes

    def tensor_state(self, index: int) -> TensorState:
        """Host copies of parameter ``index``'s state (group order), in logical form."""
        return self._engine.state.read(self._check_index(index))

    def state_views(self, index: int) -> TensorState:
        """Live views of parameter ``index``'s 32-bit state (writes go into the optimizer).

        Raises:
            TypeError: the parameter's state is 16- or 8-bit (use ``tensor_state``).
        """
        return self._engine.state.views(self._check_index(index))

    def tensor_state_bits(self, index: int) -> int:
        """How parameter ``index``'s state is stored: 32, 16 or 8 bits (a group with
        ``state_bits=8`` keeps 32-bit state for tensors under its ``min_8bit_size``)."""
        return self._engine.state.bits(self._check_index(index))

    def grad_scales(self) -> np.ndarray:
        """The factor each gradient was multiplied by in the last step (norm clipping; 1: none)."""
        return self._engine.clip_factors()

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or \
                not 0 <= index < len(self._specs):
            raise IndexError(f"parameter index must be in [0, {len(self._specs)}), got {index!r}")
        return int(index)

    # -- state_dict and checkpoints -------------------------------------------
    def state_dict(self, dequantize: bool = False) -> dict[str, Any]:
        """Optimizer state laid out like ``torch.optim.Adam.state_dict()`` (copies).

        ``{"state": {i: {"step", "exp_avg", "exp_avg_sq"[, "max_exp_avg_sq"]}},
        "param_groups": [{hyperparameters..., "params": [i, ...]}]}``; parameters
        that have not been stepped yet have no state entry, as in torch.  A
        schedule travels as ``lr_schedule`` (its config).

        16- and 8-bit state is held losslessly: ``exp_avg`` etc. are the flat
        codes (uint16 bfloat16 patterns, or uint8 codes, in the parameter's
        memory order) and 8-bit state adds ``exp_avg_absmax`` etc. (float32,
        one per 256 codes).  ``dequantize=True`` gives float32 moments shaped
        like the parameters instead, as torch's Adam holds them.
        """
        state = self._engine.state
        return self._export(lambda i: state.entries(i, dequantize=dequantize))

    def _export(self, read_state: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
        groups = self.param_groups
        return _state_dict.export(groups, [g.updates for g in groups], self._names,
                                  [g.schedule for g in groups], read_state)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore state saved by ``state_dict()`` (ours or torch's Adam/AdamW).

        Everything is checked before anything changes: group count, parameters
        per group, names, array shapes and kinds, hyperparameters and step counts.

        Raises:
            ValueError/TypeError: the state_dict does not fit this optimizer.
        """
        self._apply(self._check_state_dict(state_dict))

    def _check_state_dict(self, state_dict: Any) -> _state_dict.Checked:
        def known(gi: int) -> set:
            return set(self.param_groups[gi]) | set(self.defaults)

        return _state_dict.check(state_dict, self.param_groups, self._names,
                                 [tuple(s.array.shape) for s in self._specs], self.dtype, known,
                                 check_hyperparameter)

    def _apply(self, checked: _state_dict.Checked) -> None:
        """Commit a checked state_dict (nothing in it can fail any more)."""
        self._drop_jit_handle()
        layout = self._storage_options()
        for group, values in zip(self._groups, checked.group_values):
            for key, value in values.items():
                group._set(key, value)
        self._options_stale = True
        if layout != self._storage_options():
            self._engine = self._new_engine()
        empty = TensorState(None, None, None)
        for i in range(len(self._specs)):
            self._engine.state.write(i, checked.states.get(i, empty))
        for group, step in zip(self._groups, checked.steps):
            group._set_updates(step)

    def save(self, path: str | os.PathLike, params: bool = False) -> None:
        """Write the optimizer's state (with ``params=True`` the parameter values too) to ``path``.

        The file holds logical state (see :mod:`numba_adam.checkpoint`) and
        is written atomically.

        Raises:
            CheckpointError: a group's lr is a callable that is not a
                ``numba_adam.schedules`` schedule (it cannot be stored).
        """
        values = None
        if params:
            values = [s.array if isinstance(s.array, np.ndarray) else s.array.copy_to_host()
                      for s in self._specs]
        state = self._engine.state
        checkpoint.save(path, self._export(lambda i: state.entries(i, copy=False)),
                        optimizer=type(self).__name__, dtype=self.dtype,
                        shapes=[tuple(s.array.shape) for s in self._specs], params=values)

    def load(self, path: str | os.PathLike, params: bool | None = None) -> None:
        """Restore state written by :meth:`save`; nothing changes if the file is refused.

        Args:
            path: the checkpoint file.
            params: restore parameter values too: None (default) when the file
                has them, True to require them, False to leave them alone.

        Raises:
            CheckpointError: unreadable, corrupted or foreign file, or one
                saved from a different model (groups, names, shapes).
        """
        ckpt = checkpoint.load_checkpoint(path)
        ckpt.check_fits([len(g["params"]) for g in self.param_groups], self._names,
                        [tuple(s.array.shape) for s in self._specs])
        values = ckpt.params if params is not False else None
        if params and values is None:
            raise checkpoint.CheckpointError(f"{path} holds no parameter values (save with "
                                             f"params=True)")
        try:
            checked = self._check_state_dict(ckpt.state_dict())
        except (TypeError, ValueError) as exc:
            raise checkpoint.CheckpointError(f"{path} does not fit this optimizer: {exc}") \
                from None
        self._apply(checked)
        if values is not None:
            for spec, value in zip(self._specs, values):
                if isinstance(spec.array, np.ndarray):
                    np.copyto(spec.array, value, casting="same_kind")
                else:
                    spec.array.copy_to_device(np.ascontiguousarray(value, spec.array.dtype))
