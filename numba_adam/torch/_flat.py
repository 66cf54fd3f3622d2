"""One parameter group's tensors moved into flat storage the engine steps in one launch.

``FlatGroup`` copies a group's CPU tensors once into a :class:`~numba_adam.ParamBuffer`
and points each ``param.data`` at its slice, so the model and the optimizer share the
memory.  Gradients are slices of a flat gradient tensor too: autograd accumulates into a
``param.grad`` that is already one of them (``zero_grad(set_to_none=False)``), and the
step reads them there.  A gradient autograd left as a fresh tensor is read where it is
(the engine takes one address per tensor), with no copy.

bfloat16 and float16 parameters keep float32 master weights in the buffer: the model
sees half-precision slices of a flat half tensor, each step converts the flat half
gradient to float32 (fresh half gradients are first gathered into it by one
``torch._foreach_copy_`` call), steps the master weights and rounds them back in one copy.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .. import _state_dict
from ..buffer import ParamBuffer

# dtypes the engine steps directly, and the half dtypes it steps through float32 masters
NATIVE = {torch.float32: np.float32, torch.float64: np.float64}
HALF = (torch.bfloat16, torch.float16)
_grad_of = operator.attrgetter("grad")
MASTER_KEY = "master_param"         # a state_dict entry's float32 master weights


def check_tensor(param: torch.Tensor, label: str) -> None:
    """Raise if ``param`` cannot be a numba_adam.torch parameter (nothing is changed)."""
    if param.device.type != "cpu":
        raise TypeError(f"{label} is on {param.device}; numba_adam.torch steps CPU tensors. "
                        f"For GPU training keep the weights in a numba_adam.ParamBuffer("
                        f"..., device='cuda') and step it with numba_adam.Adam")
    if param.layout != torch.strided:
        raise TypeError(f"{label} has layout {param.layout}; only dense (strided) "
                        f"parameters can be optimized")
    if param.is_complex():
        raise TypeError(f"{label} is complex ({param.dtype}); numba_adam steps real "
                        f"parameters (view a complex tensor as real pairs with "
                        f"torch.view_as_real)")
    if param.dtype not in NATIVE and param.dtype not in HALF:
        raise TypeError(f"{label} has dtype {param.dtype}; numba_adam.torch steps float32 "
                        f"and float64 parameters, and bfloat16/float16 ones through float32 "
                        f"master weights")


def check_gradients(grads: Sequence, labels: Sequence[str]) -> None:
    """Raise for a gradient the flat step cannot read (the message names the parameter)."""
    for grad, label in zip(grads, labels):
        if grad is not None and grad.layout != torch.strided:
            raise TypeError(f"the gradient of {label} is sparse ({grad.layout}); "
                            f"numba_adam.torch needs dense gradients (torch.optim.SparseAdam "
                            f"or numba_adam's IndexedSlices steps cover sparse updates)")


class FlatGroup:
    """A group's parameters in flat storage: the buffer the engine steps, and torch views."""

    def __init__(self, params: Sequence[torch.Tensor], labels: Sequence[str],
                 group_index: int) -> None:
        self.params = list(params)
        self.labels = list(labels)
        dtype = self.params[0].dtype
        self.master = dtype in HALF
        with torch.no_grad():
            values = {f"{group_index}.{j}": p.detach().float().numpy() if self.master
                      else p.detach().numpy() for j, p in enumerate(self.params)}
        # the copy happens here, before any parameter is repointed
        self.buffer = ParamBuffer(values, dtype=np.float32 if self.master else NATIVE[dtype])
        self._master_data = torch.from_numpy(self.buffer.data)
        self._master_grad = torch.from_numpy(self.buffer.grad)
        if self.master:
            self._data = self._master_data.to(dtype)
            self._grad = torch.zeros_like(self._data)
        else:
            self._data, self._grad = self._master_data, self._master_grad
        offsets = self.buffer.offsets
        self.data_views = [self._slice(self._data, offsets[n], p) for n, p in
                           zip(self.buffer.names, self.params)]
        self.grad_views = [self._slice(self._grad, offsets[n], p) for n, p in
                           zip(self.buffer.names, self.params)]
        # what the engine reads in master mode: the float32 gradient buffer, per tensor
        self._master_grad_arrays = [self.buffer.grads[n] for n in self.buffer.names]

    @staticmethod
    def _slice(flat: torch.Tensor, start: int, like: torch.Tensor) -> torch.Tensor:
        return flat[start:start + like.numel()].view(like.shape)

    def attach(self) -> None:
        """Point every parameter at its slice (and carry a gradient it has into the flat one).

        Called once the whole optimizer is built, so a refused optimizer leaves the
        tensors as they were."""
        with torch.no_grad():
            for p, data, grad in zip(self.params, self.data_views, self.grad_views):
                p.data = data
                if p.grad is not None:
                    grad.copy_(p.grad)
                    p.grad = grad

    # -- each step ----------------------------------------------------------
    def gradients(self) -> list:
        return list(map(_grad_of, self.params))

    def in_place(self, grads: list) -> bool:
        """Whether every gradient already is its flat slice (the fast path)."""
        return all(map(operator.is_, grads, self.grad_views))

    def gradient_arrays(self, grads: list) -> list[np.ndarray | None]:
        """The arrays the engine reads this step's gradients from (dense; None where a
        parameter has none): the tensors themselves, or, in master mode, the float32
        gradient buffer after the fresh gradients are gathered into the flat half one and
        converted."""
        if not self.master:
            return [None if g is None else g.detach().numpy() if g.requires_grad
                    else g.numpy() for g in grads]
        pairs = [(view, g) for view, g in zip(self.grad_views, grads)
                 if g is not None and g is not view]
        with torch.no_grad():
            torch._foreach_copy_([v for v, _ in pairs], [g for _, g in pairs])
        self.before_step()
        if all(g is not None for g in grads):
            return self._master_grad_arrays
        return [None if g is None else a for g, a in zip(grads, self._master_grad_arrays)]

    def before_step(self) -> None:
        """The float32 gradient the engine reads (half precision: converted, one copy)."""
        if self.master:
            with torch.no_grad():
                self._master_grad.copy_(self._grad)

    def after_step(self) -> None:
        """Round the float32 master weights into the half-precision parameters (one copy)."""
        if self.master:
            with torch.no_grad():
                self._data.copy_(self._master_data)

    def zero_grad(self, set_to_none: bool) -> None:
        """``torch.optim.Optimizer.zero_grad``: None, or zeros (a gradient that is a fresh
        tensor is replaced by its zeroed flat slice, so the next backward accumulates in
        place; a None gradient stays None, as in torch)."""
        if set_to_none:
            for p in self.params:
                p.grad = None
            return
        self._grad.zero_()
        if self.master:
            self._master_grad.zero_()
        grads = self.gradients()
        if not self.in_place(grads):
            for p, g, view in zip(self.params, grads, self.grad_views):
                if g is not None and g is not view:
                    p.grad = view

    # -- master weights -----------------------------------------------------
    def master_weights(self, j: int) -> np.ndarray:
        """A copy of parameter ``j``'s float32 master weights (master mode only)."""
        name = self.buffer.names[j]
        return self.buffer[name].copy()

    def set_master_weights(self, values: list[np.ndarray | None]) -> None:
        """Set the master weights (None: from the half-precision parameter) and round them
        into the parameters."""
        with torch.no_grad():
            for name, value, data in zip(self.buffer.names, values, self.data_views):
                self.buffer[name][...] = data.float().numpy() if value is None else value
            self.after_step()


def saved_param_ids(saved: Any, flat: FlatGroup) -> list | None:
    """A saved group's parameter ids, or None unless it lists one per parameter of
    ``flat``."""
    ids = saved.get("params", []) if isinstance(saved, Mapping) else []
    return ids if len(ids) == len(flat.params) else None


def checked_masters(flats: Sequence[FlatGroup], saved_groups: list,
                    saved_state: Any) -> dict[int, list]:
    """Master weights in a saved state for the master-weight groups among ``flats``, checked
    (shape, finite), by ``id`` of the group; {} where the layout does not match (the
    engine's check then refuses it)."""
    if not isinstance(saved_state, Mapping) or len(saved_groups) != len(flats):
        return {}
    out = {}
    for f, saved in zip(flats, saved_groups):
        ids = saved_param_ids(saved, f)
        if not f.master or ids is None:
            continue
        values = []
        for pid, p in zip(ids, f.params):
            entry = saved_state.get(pid)
            value = entry.get(MASTER_KEY) if isinstance(entry, Mapping) else None
            values.append(None if value is None else _state_dict.state_array(
                value, f"state_dict state[{pid!r}][{MASTER_KEY!r}]", tuple(p.shape),
                np.dtype(np.float32)))
        out[id(f)] = values
    return out
