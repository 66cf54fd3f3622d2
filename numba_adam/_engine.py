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

from typing import Any

import numpy as np

from numba import njit

from . import _formula
from ._config import GRAD_SIGN, SCALAR_COLUMNS
from ._layout import Layout, TensorSpec, memory_order
from ._state import State
from .sparse import IndexedSlices


# The float64 sum of squares of a sparse gradient's values, for norm clipping: compiled,
# so numba_adam.jit's step_rows computes the same sum in the same order.
sum_squares = njit(cache=True, error_model="numpy")(_formula.sum_squares)


def backend_for(device: str):
    """The backend module for "cpu" or "cuda" (numba.cuda is imported only for "cuda")."""
    if device == "cuda":
        from . import _cuda
        return _cuda
    from . import _cpu
    return _cpu


def checked_gradient(g: Any, spec: TensorSpec, dtype: np.dtype, backend: Any) -> Any:
    """``g`` as the array (or IndexedSlices) a step reads for ``spec``'s parameter.

    Raises:
        TypeError/ValueError: the wrong shape or dtype, or rows of a Fortran-ordered
            parameter (the message names the parameter).  A None gradient never comes
            here: the engine skips that tensor, data-parallel ranks refuse it.
    """
    if isinstance(g, IndexedSlices):
        if g.dense_shape != spec.array.shape:
            raise ValueError(f"sparse gradient for {spec.label} has dense_shape {g.dense_shape}, "
                             f"expected {spec.array.shape}")
        if np.dtype(g.values.dtype) != dtype:
            raise TypeError(f"sparse gradient for {spec.label} has dtype {g.values.dtype}, "
                            f"expected {dtype}")
        if memory_order(spec.array) != "C":
            raise ValueError(f"sparse gradients need a C-ordered parameter; {spec.label} is "
                             f"Fortran-ordered")
        return g
    g = backend.as_array(g, spec.label)
    if g.shape != spec.array.shape:
        raise ValueError(f"gradient for {spec.label} has shape {g.shape}, "
                         f"expected {spec.array.shape}")
    if np.dtype(g.dtype) != dtype:
        raise TypeError(f"gradient for {spec.label} has dtype {g.dtype}, expected {dtype}")
    return g


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
        self._scaled = np.zeros(1, dtype=np.bool_)   # grad_scales hold clip factors (not 1)
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
        self._set_skipped([])
        self._bound_to_buffers = True

    def bind_grads(self, grads: list) -> list:
        """Read each tensor's gradient from ``grads``; every one is checked before anything changes.

        Returns the arrays that must stay alive until the launch.
        """
        if len(grads) != len(self.specs):
            raise ValueError(f"expected {len(self.specs)} gradients (one per parameter, in "
                             f"parameter-group order), got {len(grads)}")
        dense: list = []
        sparse, absent = [], []
        dtype, host = self.dtype, self.device == "cpu"
        for i, (g, spec) in enumerate(zip(grads, self.specs)):
            if host and type(g) is np.ndarray and g.dtype == dtype and g.shape == spec.array.shape:
                dense.append(g)      # the common case on the CPU, without the checks' calls
                continue
            if g is None:            # no gradient this step: the tensor is left as it is
                absent.append(i)
                dense.append(None)
                continue
            g = checked_gradient(g, spec, dtype, self.backend)
            if isinstance(g, IndexedSlices):
                sparse.append((i, *g.merged()))
                dense.append(None)
            else:
                dense.append(g)
        self.plan.bind_grads(dense)
        self._set_skipped(sparse, absent)
        self._bound_to_buffers = False
        return dense

    def _set_skipped(self, jobs: list, absent: list[int] = ()) -> None:
        """This step's sparse jobs (their rows are updated apart) and the tensors without a
        gradient: both are left out of the dense launch."""
        self.plan.set_skipped([i for i, _, _ in jobs] + list(absent))
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
            if self._scaled[0]:
                backend.copy_from_host(self.grad_scales, np.ones(len(self.specs), self.dtype))
                self._scaled[0] = False   # in place: jit handles share this flag
            return
        backend.grad_sum_squares(self.plan, self._item_sums)
        extra = self._extra_sums
        extra[:] = 0.0
        for i, _, values in self._sparse_jobs:
            extra[i] = sum_squares(values)
        backend.copy_from_host(self._device_extra_sums, extra)
        backend.copy_from_host(self._device_clipnorms, np.full(self.layout.n_groups, -1.0)
                               if clipnorms is None else clipnorms)
        backend.clip_scales(self.plan, self._item_sums, self._device_extra_sums,
                            self._device_clipnorms,
                            -1.0 if global_clipnorm is None else float(global_clipnorm),
                            self._tensor_sums, self.grad_scales)
        self._scaled[0] = True

    def item_sums_of_squares(self) -> np.ndarray:
        """Float64 sums of squared gradients per work item (``layout.items``), from the bound
        dense gradients, on the host: what norm clipping starts from.  A caller that
        combines them with other processes' sums sets the result with ``set_clip_factors``."""
        self.backend.grad_sum_squares(self.plan, self._item_sums)
        return self.backend.to_host(self._item_sums)

    def set_clip_factors(self, factors: np.ndarray) -> None:
        """Multiply each tensor's gradient by ``factors[i]`` in the next launch (norm
        clipping computed elsewhere; ``clip_by_norm`` computes its own)."""
        self.backend.copy_from_host(self.grad_scales, np.asarray(factors, self.dtype))
        self._scaled[0] = True

    def launch(self, lazy_by_group: list[bool] | None = None) -> None:
        """Update every tensor with ``self.group_scalars``: one fused launch, plus one per
        tensor that has a sparse gradient this step (lazy where its group says so)."""
        backend, plan, scalars = self.backend, self.plan, self.group_scalars
        backend.adam_step(plan, scalars, self.grad_scales, self.state, self.group_keys)
        for i, rows, values in self._sparse_jobs:
            group = int(self.layout.groups[i])
            scale = float(scalars[group, GRAD_SIGN])
            if self._scaled[0]:
                scale *= float(backend.to_host(self.grad_scales[i:i + 1])[0])
            lazy = lazy_by_group is not None and lazy_by_group[group]
            backend.adam_rows(plan, scalars, i, rows, values, scale, self.state, lazy,
                              self.group_keys)
        self._sparse_jobs = []

    def jit_arrays(self) -> dict[str, Any]:
        """The arrays ``numba_adam.jit`` handles carry (the engine's own, not copies)."""
        if self.device != "cpu":
            raise TypeError("numba_adam.jit runs on the CPU; this optimizer's parameters are "
                            "on the GPU")
        plan, state, layout = self.plan, self.state, self.layout
        if plan.staged:
            label = self.specs[min(plan.staged)].label
            raise ValueError(f"numba_adam.jit needs contiguous parameters; {label} is a strided "
                             f"view (the Python step stages it through a copy)")
        return dict(
            items=plan.items, item_tensor=plan.item_tensor, tensors=plan.tensors,
            buffer_grad_at=plan.buffer_grad_at, tensor_group=layout.groups,
            scalars=self.group_scalars, keys=self.group_keys, grad_scales=self.grad_scales,
            scaled=self._scaled, item_sums=self._item_sums, tensor_sums=self._tensor_sums,
            extra_sums=self._extra_sums, m=state.m, v=state.v, v_max=state.v_max,
            like=plan.like, codes16=state.codes16, codes8=state.codes8, absmax=state.absmax,
            kinds=frozenset(self.backend.kernel_kind(layout, t) for t in range(len(layout))),
            kind_items=plan.kind_items, kind_spans=plan.kind_spans, plain=list(self.plain))

    def clip_factors(self) -> np.ndarray:
        """The gradient factors of the last step (1 where nothing was clipped), on the host."""
        return self.backend.to_host(self.grad_scales)

