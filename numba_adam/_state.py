"""How the optimizer state (m, v and AMSGrad's v_max) is stored: the seam for new formats.

A state storage owns the arrays the kernels read and write, and converts one
tensor's state to and from its *logical* form: float arrays shaped like the
parameter, named as in torch (``exp_avg``, ``exp_avg_sq``,
``max_exp_avg_sq``).  Everything above the engine (state_dict, checkpoints,
the front-ends) sees only the logical form, so a new storage (16- or 8-bit
codes, one rank's shard) changes nothing above it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._layout import Layout


class TensorState(NamedTuple):
    """One tensor's optimizer state in logical form (``max_exp_avg_sq`` None without AMSGrad)."""

    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any = None


class DenseState:
    """m, v and v_max as flat arrays in the parameters' dtype, each tensor in its memory order.

    ``backend`` is the ``_cpu`` or ``_cuda`` module: the arrays are allocated
    where the parameters live.
    """

    format = "dense"

    def __init__(self, layout: Layout, dtype: np.dtype, backend: Any) -> None:
        self.layout = layout
        self.dtype = np.dtype(dtype)
        self.backend = backend
        self.m = backend.zeros(layout.size, self.dtype)
        self.v = backend.zeros(layout.size, self.dtype)
        self.v_max = backend.zeros(layout.vmax_size, self.dtype)

    @property
    def nbytes(self) -> int:
        """Bytes of optimizer state held."""
        return (2 * self.layout.size + self.layout.vmax_size) * self.dtype.itemsize

    def views(self, i: int) -> TensorState:
        """Live views of tensor ``i``'s state, shaped like the parameter."""
        layout = self.layout
        shape, order = layout.shapes[i], layout.orders[i]
        start, n = int(layout.state_offsets[i]), int(layout.numels[i])
        vmax_start = int(layout.vmax_offsets[i])

        def view(flat, at):
            return self.backend.shaped(flat[at:at + n], shape, order)

        return TensorState(view(self.m, start), view(self.v, start),
                           view(self.v_max, vmax_start) if vmax_start >= 0 else None)

    def read(self, i: int) -> TensorState:
        """Host copies of tensor ``i``'s state."""
        return TensorState(*(None if x is None else self.backend.to_host(x)
                             for x in self.views(i)))

    def host_views(self, i: int) -> TensorState:
        """Tensor ``i``'s state readable on the host without a copy where it lives there
        (for writing checkpoints; read-only use)."""
        return TensorState(*(None if x is None else self.backend.host_view(x)
                             for x in self.views(i)))

    def write(self, i: int, values: TensorState) -> None:
        """Set tensor ``i``'s state from host arrays (None: zeros; v_max ignored without AMSGrad)."""
        for target, value in zip(self.views(i), values):
            if target is not None:
                host = np.zeros(target.shape, self.dtype) if value is None else \
                    np.asarray(value, dtype=self.dtype)
                self.backend.copy_from_host(target, host)
