"""The engine: one fused Adam launch a step over flat state, on the CPU or a GPU.

The engine owns the layout (where each tensor's state lives, the work items),
the state storage (``_state``), the backend's launch plan and the small
per-step tables: the group scalars and the per-tensor gradient factors.  The
backend module (``_cpu`` or ``_cuda``) is chosen once, when the engine is
built; both have the same launchers, so nothing here depends on the device.

A step is: bind the gradients (checked first, so a bad one changes nothing),
fill the group scalars, compute clip factors if any group clips by norm,
launch, then update the tensors that have sparse gradients row by row.
"""

from __future__ import annotations

import numpy as np

from ._config import GRAD_SIGN, SCALAR_COLUMNS
from ._layout import Layout, TensorSpec
from ._state import State
from .sparse import IndexedSlices


def backend_for(device: str):
    """The backend module for "cpu" or "cuda" (numba.cuda is imported only for "cuda")."""
    if device == "cuda":
        from . import _cuda
        return _cuda
    from . import _cpu
    return _cpu


class Engine:
    """Flat state, launch tables and per-step scalars for a fixed list of same-dtype tensors."""

    def __init__(self, specs: list[TensorSpec], amsgrad_by_group: list[bool], dtype: np.dtype,
                 device: str = "cpu", bits_by_group: list[int] | None = None,
                 min_8bit_sizes: list[int] | None = None) -> None:
        self.device = device
        self.backend = backend = backend_for(device)
        self.dtype = np.dtype(dtype)
        self.layout = layout = Layout(specs, amsgrad_by_group, bits_by_group, min_8bit_sizes)
        self.specs = layout.specs
        self.state = State(layout, self.dtype, backend)
        self.plan = backend.Plan(layout, self.dtype)
        n = len(layout)
        # group_scalars: one row per group, filled by the optimizer before each launch
        self.group_scalars = np.zeros((layout.n_groups, SCALAR_COLUMNS), dtype=self.dtype)
        # group_keys: each group's 32-bit random key for 16-bit rounding, set with the scalars
        self.group_keys = np.zeros(layout.n_groups, dtype=np.int64)
        self.grad_scales = backend.zeros(n, self.dtype)
        backend.copy_from_host(self.grad_scales, np.ones(n, self.dtype))
        self._scaled = False
        self._item_sums = backend.zeros(self.plan.item_count, np.float64)
        self._tensor_sums = backend.zeros(n, np.float64)
        self._extra_sums = np.zeros(n, dtype=np.float64)
        self._device_extra_sums = backend.zeros(n, np.float64)
        self._device_clipnorms = backend.zeros(layout.n_groups, np.float64)
        self.plain = [s.label for s in specs if s.owner is None]
        self._sparse_jobs: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._bound_to_buffers = False

    def __len__(self) -> int:
        return len(self.specs)

    # -- gradients --------------------------------------------------------
    def bind_buffer_grads(self) -> None:
        """Read every gradient from its ParamBuffer grad view."""
        if self._bound_to_buffers:
            return
        if self.plain:
            shown = ", ".join(self.plain[:5]) + (", ..." if len(self.plain) > 5 else "")
            raise TypeError(f"step() without grads reads gradients from ParamBuffer grad views, "
                            f"but {len(self.plain)} parameter(s) ({shown}) are plain arrays: "
                            f"pass their gradients with step(grads=[...])")
        self.plan.bind_buffer_grads()
        self._set_sparse([])
        self._bound_to_buffers = True

    def bind_grads(self, grads: list) -> list:
        """Read each tensor's gradient from ``grads``; every one is checked before anything changes.

        Returns the arrays that must stay alive until the launch.
        """
        if len(grads) != len(self.specs):
            raise ValueError(f"expected {len(self.specs)} gradients (one per parameter, in "
                             f"parameter-group order), got {len(grads)}")
        dense: list = []
        sparse = []
        for i, (g, spec) in enumerate(zip(grads, self.specs)):
            if isinstance(g, IndexedSlices):
                self._check_sparse(g, spec, i)
                sparse.append((i, *g.merged()))
                dense.append(None)
                continue
            if g is None:
                raise TypeError(f"gradient for {spec.label} is None; every parameter is updated "
                                f"each step, pass zeros to leave moments decaying")
            g = self.backend.as_array(g, spec.label)
            if g.shape != spec.array.shape:
                raise ValueError(f"gradient for {spec.label} has shape {g.shape}, "
                                 f"expected {spec.array.shape}")
            if np.dtype(g.dtype) != self.dtype:
                raise TypeError(f"gradient for {spec.label} has dtype {g.dtype}, "
                                f"expected {self.dtype}")
            dense.append(g)
        self.plan.bind_grads(dense)
        self._set_sparse(sparse)
        self._bound_to_buffers = False
        return dense

    def _check_sparse(self, g: IndexedSlices, spec: TensorSpec, i: int) -> None:
        if g.dense_shape != spec.array.shape:
            raise ValueError(f"sparse gradient for {spec.label} has dense_shape {g.dense_shape}, "
                             f"expected {spec.array.shape}")
        dtype = np.dtype(g.values.dtype)
        if dtype != self.dtype:
            raise TypeError(f"sparse gradient for {spec.label} has dtype {dtype}, "
                            f"expected {self.dtype}")
        if self.layout.orders[i] != "C":
            raise ValueError(f"sparse gradients need a C-ordered parameter; {spec.label} is "
                             f"Fortran-ordered")

    def _set_sparse(self, jobs: list) -> None:
        self.plan.set_skipped([i for i, _, _ in jobs])
        self._sparse_jobs = jobs

    @property
    def has_sparse_jobs(self) -> bool:
        return bool(self._sparse_jobs)

    # -- clipping and launch ----------------------------------------------
    def clip_by_norm(self, clipnorms: np.ndarray | None, global_clipnorm: float | None) -> None:
        """Per-tensor gradient factors for norm clipping, from the bound gradients.

        ``clipnorms[group]`` is a group's per-tensor limit (<= 0: none), or
        ``clipnorms`` is None when no group clips per tensor.  Norms are
        float64 sums over the fixed work items, combined in item order, so
        they are the same for any thread count and on either backend.
        """
        backend = self.backend
        if clipnorms is None and global_clipnorm is None:
            if self._scaled:
                backend.copy_from_host(self.grad_scales, np.ones(len(self.specs), self.dtype))
                self._scaled = False
            return
        backend.grad_sum_squares(self.plan, self._item_sums)
        extra = self._extra_sums
        extra[:] = 0.0
        for i, _, values in self._sparse_jobs:
            extra[i] = float(np.sum(np.square(values, dtype=np.float64)))
        backend.copy_from_host(self._device_extra_sums, extra)
        backend.copy_from_host(self._device_clipnorms, np.full(self.layout.n_groups, -1.0)
                               if clipnorms is None else clipnorms)
        backend.clip_scales(self.plan, self._item_sums, self._device_extra_sums,
                            self._device_clipnorms,
                            -1.0 if global_clipnorm is None else float(global_clipnorm),
                            self._tensor_sums, self.grad_scales)
        self._scaled = True

    def launch(self, lazy_by_group: list[bool] | None = None) -> None:
        """Update every tensor with ``self.group_scalars``: one fused launch, plus one per
        tensor that has a sparse gradient this step (lazy where its group says so)."""
        backend, plan, scalars = self.backend, self.plan, self.group_scalars
        backend.adam_step(plan, scalars, self.grad_scales, self.state, self.group_keys)
        for i, rows, values in self._sparse_jobs:
            group = int(self.layout.groups[i])
            scale = float(scalars[group, GRAD_SIGN])
            if self._scaled:
                scale *= float(backend.to_host(self.grad_scales[i:i + 1])[0])
            lazy = lazy_by_group is not None and lazy_by_group[group]
            backend.adam_rows(plan, scalars, i, rows, values, scale, self.state, lazy,
                              self.group_keys)
        self._sparse_jobs = []

    def clip_factors(self) -> np.ndarray:
        """The gradient factors of the last step (1 where nothing was clipped), on the host."""
        return self.backend.to_host(self.grad_scales)

