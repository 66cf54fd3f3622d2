"""Flat optimizer state, launch tables and per-step scalars: one kernel launch a step.

The engine owns m, v (and v_max for AMSGrad groups) as flat contiguous arrays,
a tensor table (addresses, state offsets, group row) and a work-item table.
Both tables are built once, when the parameters are given; a step only fills
the small per-group scalar table and launches the kernel.  The facades
(torch-, Keras- and MLX-style) translate their options into the per-group
options read by :func:`group_scalars`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _cpu
from ._config import (
    GRAD_ADDR, GRAD_SIGN, GROUP, HYPER_COLUMNS, ITEM_COLUMNS, PARALLEL_MIN_ELEMENTS, PARAM_ADDR,
    SKIP, STATE_OFFSET, TENSOR_COLUMNS, VMAX_OFFSET, WORK_ITEM_ELEMENTS,
)
from .buffer import ParamBuffer
from .sparse import IndexedSlices


class TensorSpec(NamedTuple):
    """One parameter as the engine sees it."""

    array: np.ndarray
    group: int
    owner: ParamBuffer | None   # the ParamBuffer whose data holds the array
    label: str                  # "params[3]" or the parameter's name, for messages


def group_scalars(step: int, lr: float, beta1: float, beta2: float, eps: float,
                  weight_decay: float, maximize: bool, decoupled: bool,
                  epsilon_hat: bool = False, bias_correction: bool = True,
                  clipvalue: float | None = None) -> tuple:
    """The per-group row of the scalar table for update number ``step`` (1-based).

    Computed in float64 once per group and step, as torch's for-loop Adam does,
    so the kernel is left with one sqrt and one division per element.
    """
    bc1 = 1.0 - beta1 ** step if bias_correction else 1.0
    bc2 = 1.0 - beta2 ** step if bias_correction else 1.0
    if epsilon_hat:   # Keras: alpha = lr * sqrt(bc2) / bc1, eps added to sqrt(v)
        step_size = lr * math.sqrt(bc2) / bc1
        denom_scale = 1.0
    else:             # torch: lr / bc1, eps added to sqrt(v) / sqrt(bc2)
        step_size = lr / bc1
        denom_scale = 1.0 / math.sqrt(bc2)
    return (
        -1.0 if maximize else 1.0,
        0.0 if decoupled else weight_decay,
        1.0 - lr * weight_decay if decoupled else 1.0,
        1.0 - beta1,
        beta2,
        1.0 - beta2,
        step_size,
        denom_scale,
        eps,
        math.inf if clipvalue is None else clipvalue,
    )


def _memory_order(array: np.ndarray) -> str:
    """'C' or 'F': the order in which the flat state follows the array's memory."""
    return "C" if array.flags.c_contiguous else "F"


class Engine:
    """Flat state and launch tables for a fixed list of same-dtype tensors."""

    def __init__(self, specs: list[TensorSpec], amsgrad_by_group: list[bool], dtype: np.dtype):
        self.specs = list(specs)
        self.dtype = np.dtype(dtype)
        n = len(specs)
        numels = np.array([s.array.size for s in specs], dtype=np.int64)
        self.numels = numels
        self.state_offsets = np.concatenate(([0], np.cumsum(numels)))[:-1].astype(np.int64)
        uses_vmax = np.array([amsgrad_by_group[s.group] for s in specs], dtype=bool)
        vmax_sizes = np.where(uses_vmax, numels, 0)
        vmax_offsets = np.concatenate(([0], np.cumsum(vmax_sizes)))[:-1].astype(np.int64)
        self.vmax_offsets = np.where(uses_vmax, vmax_offsets, -1)
        self.size = int(numels.sum())

        self.m = np.zeros(self.size, dtype=self.dtype)
        self.v = np.zeros(self.size, dtype=self.dtype)
        self.v_max = np.zeros(int(vmax_sizes.sum()), dtype=self.dtype)
        self.hyper = np.zeros((len(amsgrad_by_group), HYPER_COLUMNS), dtype=self.dtype)

        self.tensors = np.zeros((n, TENSOR_COLUMNS), dtype=np.int64)
        self.tensors[:, PARAM_ADDR] = [s.array.ctypes.data for s in specs]
        self.tensors[:, STATE_OFFSET] = self.state_offsets
        self.tensors[:, VMAX_OFFSET] = self.vmax_offsets
        self.tensors[:, GROUP] = [s.group for s in specs]
        # Gradient addresses of ParamBuffer-backed tensors never change: the
        # grad lives at the same offset in the owner's flat grad array.
        self.buffer_grad_addr = np.array(
            [s.owner.grad.ctypes.data + (s.array.ctypes.data - s.owner.data.ctypes.data)
             if s.owner is not None else -1 for s in specs], dtype=np.int64)
        self.plain = [s.label for s in specs if s.owner is None]
        self.grad_scales = np.ones(n, dtype=self.dtype)
        self._scaled = False
        self._sparse_jobs: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._skipping = False
        self._row_slots: dict[int, np.ndarray] = {}
        self._zeros: np.ndarray | None = None
        self._grads_from_buffers = False
        self._grad_addr = np.zeros(n, dtype=np.int64)
        self._staging: np.ndarray | None = None
        self._staging_views: dict[int, np.ndarray] = {}
        self.orders = [_memory_order(s.array) for s in specs]

        items = [(t, begin, min(WORK_ITEM_ELEMENTS, int(numel) - begin))
                 for t, numel in enumerate(numels)
                 for begin in range(0, int(numel), WORK_ITEM_ELEMENTS)]
        self.items = np.array(items, dtype=np.int64).reshape(len(items), ITEM_COLUMNS)
        self._item_sums = np.zeros(len(items), dtype=np.float64)
        self._kernel = (_cpu.adam_step_parallel if self.size >= PARALLEL_MIN_ELEMENTS
                        else _cpu.adam_step_serial)

    # -- gradients --------------------------------------------------------
    def use_buffer_grads(self) -> None:
        """Point every tensor at its gradient view in its ParamBuffer."""
        if self._grads_from_buffers:
            return
        if self.plain:
            shown = ", ".join(self.plain[:5]) + (", ..." if len(self.plain) > 5 else "")
            raise TypeError(
                f"step() without grads reads gradients from ParamBuffer grad views, but "
                f"{len(self.plain)} parameter(s) ({shown}) are plain arrays: pass their "
                f"gradients with step(grads=[...])")
        self.tensors[:, GRAD_ADDR] = self.buffer_grad_addr
        self._grads_from_buffers = True
        self._set_sparse([])

    def use_grads(self, grads: list) -> list[np.ndarray]:
        """Point every tensor at a caller-given gradient; check all before changing anything.

        Returns the arrays that must stay alive until the launch.
        """
        specs = self.specs
        if len(grads) != len(specs):
            raise ValueError(f"expected {len(specs)} gradients (one per parameter, in "
                             f"parameter-group order), got {len(grads)}")
        addr = self._grad_addr
        dtype = self.dtype
        arrays = []
        restage = []
        sparse = []
        for i, (g, spec) in enumerate(zip(grads, specs)):
            p = spec.array
            if isinstance(g, IndexedSlices):
                self._check_sparse(g, spec)
                sparse.append(i)
                arrays.append(g)
                continue
            if type(g) is not np.ndarray:
                if g is None:
                    raise TypeError(f"gradient for {spec.label} is None; every parameter is "
                                    f"updated each step, pass zeros to leave moments decaying")
                g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"gradient for {spec.label} has shape {g.shape}, "
                                 f"expected {p.shape}")
            if g.dtype != dtype:
                raise TypeError(f"gradient for {spec.label} has dtype {g.dtype}, expected {dtype}")
            if g.flags.c_contiguous if self.orders[i] == "C" else g.flags.f_contiguous:
                addr[i] = g.ctypes.data
            else:
                restage.append(i)
            arrays.append(g)
        # Gradients laid out unlike their parameter are copied, once per step,
        # into a staging buffer that has the parameter's layout.
        for i in restage:
            view = self._staging_view(i)
            np.copyto(view, arrays[i])
            addr[i] = view.ctypes.data
        for i in sparse:
            addr[i] = self.buffer_grad_addr[i] if self.buffer_grad_addr[i] >= 0 else \
                self.tensors[i, PARAM_ADDR]   # never read: the tensor is skipped
        self.tensors[:, GRAD_ADDR] = addr
        self._grads_from_buffers = False
        self._set_sparse([(i, *arrays[i].merged()) for i in sparse])
        return arrays

    def _check_sparse(self, g: IndexedSlices, spec: TensorSpec) -> None:
        p = spec.array
        if g.dense_shape != p.shape:
            raise ValueError(f"sparse gradient for {spec.label} has dense_shape {g.dense_shape}, "
                             f"expected {p.shape}")
        if g.values.dtype != self.dtype:
            raise TypeError(f"sparse gradient for {spec.label} has dtype {g.values.dtype}, "
                            f"expected {self.dtype}")
        if not p.flags.c_contiguous:
            raise ValueError(f"sparse gradients need a C-ordered parameter; {spec.label} is "
                             f"Fortran-ordered")

    def _set_sparse(self, jobs: list) -> None:
        if jobs or self._skipping:
            self.tensors[:, SKIP] = 0
            for i, _, _ in jobs:
                self.tensors[i, SKIP] = 1
            self._skipping = bool(jobs)
        self._sparse_jobs = jobs

    def _staging_view(self, i: int) -> np.ndarray:
        view = self._staging_views.get(i)
        if view is None:
            if self._staging is None:
                self._staging = np.zeros(self.size, dtype=self.dtype)
            spec = self.specs[i]
            view = np.ndarray(spec.array.shape, dtype=self.dtype, buffer=self._staging,
                              offset=int(self.state_offsets[i]) * self.dtype.itemsize,
                              order=self.orders[i])
            self._staging_views[i] = view
        return view

    # -- launch -------------------------------------------------------------
    @property
    def has_sparse_jobs(self) -> bool:
        return bool(self._sparse_jobs)

    def set_grad_scales(self, clipnorm_by_group: list, global_clipnorm: float | None) -> None:
        """Per-tensor gradient factors for norm clipping (per tensor and/or global).

        Norms are float64 sums over the fixed work items, combined in item
        order, so they are identical for any thread count and run to run.
        """
        if global_clipnorm is None and not any(c is not None for c in clipnorm_by_group):
            if self._scaled:
                self.grad_scales[:] = 1
                self._scaled = False
            return
        _cpu.grad_sum_squares(self.items, self.tensors, self.m, self._item_sums)
        sums = np.bincount(self.items[:, 0], weights=self._item_sums, minlength=len(self.specs))
        for i, _, values in self._sparse_jobs:
            sums[i] = float(np.sum(np.square(values, dtype=np.float64)))
        scales = np.ones(len(self.specs))
        groups = self.tensors[:, GROUP]
        for gi, clipnorm in enumerate(clipnorm_by_group):
            if clipnorm is not None:
                mask = groups == gi
                scales[mask] = clipnorm / np.maximum(np.sqrt(sums[mask]), clipnorm)
        if global_clipnorm is not None:
            norm = math.sqrt(float(np.sum(sums)))
            scales *= global_clipnorm / max(norm, global_clipnorm)
        self.grad_scales[:] = scales
        self._scaled = True

    def launch(self, lazy_by_group: list[bool] | None = None) -> None:
        """Update every tensor with the scalars in ``self.hyper``: one kernel call,
        plus one per tensor that has a sparse gradient this step."""
        self._kernel(self.items, self.tensors, self.hyper, self.grad_scales,
                     self.m, self.v, self.v_max)
        for i, rows, values in self._sparse_jobs:
            p, m, v, v_max = self._row_views(i)
            group = int(self.tensors[i, GROUP])
            row = self.hyper[group]
            scale = self.dtype.type(row[GRAD_SIGN] * self.grad_scales[i])
            values = values.reshape(len(rows), p.shape[1])
            if lazy_by_group is not None and lazy_by_group[group]:
                _cpu.adam_rows_lazy(p, m, v, v_max, rows, values, row, scale)
            else:
                slot = self._row_slots.get(i)
                if slot is None:
                    slot = self._row_slots[i] = np.full(p.shape[0], -1, dtype=np.int64)
                slot[rows] = np.arange(len(rows))
                try:
                    _cpu.adam_rows_dense(p, m, v, v_max, slot, values, row, scale,
                                         self._zero_rows(p.shape[1]))
                finally:
                    slot[rows] = -1
        self._sparse_jobs = []

    def _zero_rows(self, cols: int) -> np.ndarray:
        """A zero gradient for a run of untouched rows (at least one row long)."""
        size = max(WORK_ITEM_ELEMENTS, cols)
        if self._zeros is None or self._zeros.size < size:
            self._zeros = np.zeros(size, dtype=self.dtype)
        return self._zeros

    def _row_views(self, i: int) -> tuple[np.ndarray, ...]:
        """Tensor ``i``'s parameter and state as (rows, columns) arrays."""
        p = self.specs[i].array
        shape = (p.shape[0], p.size // p.shape[0] if p.shape[0] else 0)
        m, v, v_max = self.tensor_state(i)
        v_max = v_max.reshape(shape) if v_max is not None else np.zeros((0, shape[1]), self.dtype)
        return p.reshape(shape), m.reshape(shape), v.reshape(shape), v_max

    # -- state access -----------------------------------------------------
    def tensor_state(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Views of tensor ``i``'s m, v and v_max (None without AMSGrad), shaped like it."""
        shape, order = self.specs[i].array.shape, self.orders[i]
        start, n = int(self.state_offsets[i]), int(self.numels[i])
        m = self.m[start:start + n].reshape(shape, order=order)
        v = self.v[start:start + n].reshape(shape, order=order)
        vmax_start = int(self.vmax_offsets[i])
        v_max = (self.v_max[vmax_start:vmax_start + n].reshape(shape, order=order)
                 if vmax_start >= 0 else None)
        return m, v, v_max

    def copy_state_from(self, other: "Engine", mapping: dict[int, int]) -> None:
        """Copy tensor state from ``other`` (its index -> ours) after a re-layout."""
        for theirs, ours in mapping.items():
            for dst, src in zip(self.tensor_state(ours), other.tensor_state(theirs)):
                if dst is not None and src is not None:
                    dst[...] = src


def single_tensor_update(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, *,
                         lr: float, betas: tuple[float, float], step: int, eps: float,
                         weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
                         bias_correction: bool = True, epsilon_hat: bool = False) -> None:
    """Update one C-contiguous tensor in place with caller-owned m and v (MLX's apply_single)."""
    for name, array in (("gradient", g), ("m", m), ("v", v)):
        if array.shape != p.shape or array.dtype != p.dtype or not array.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous {p.dtype} array of shape {p.shape}, "
                             f"got {array.dtype} {array.shape}")
    n = p.size
    tensors = np.array([[p.ctypes.data, g.ctypes.data, 0, -1, 0, 0]], dtype=np.int64)
    items = np.array([(0, b, min(WORK_ITEM_ELEMENTS, n - b))
                      for b in range(0, n, WORK_ITEM_ELEMENTS)], dtype=np.int64)
    hyper = np.array([group_scalars(step, lr, betas[0], betas[1], eps, weight_decay, False,
                                    decoupled_weight_decay, epsilon_hat, bias_correction)],
                     dtype=p.dtype)
    _cpu.adam_step_serial(items.reshape(-1, ITEM_COLUMNS), tensors, hyper,
                          np.ones(1, p.dtype), m.reshape(-1), v.reshape(-1),
                          np.zeros(0, p.dtype))
