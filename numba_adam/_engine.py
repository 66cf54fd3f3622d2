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
from .buffer import ParamBuffer, address_of, is_cuda_array
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


def state_layout(specs: list[TensorSpec], amsgrad_by_group: list[bool]):
    """Element counts, m/v offsets, v_max offsets (-1: none) and v_max size, in spec order."""
    numels = np.array([int(np.prod(s.array.shape, dtype=np.int64)) for s in specs], dtype=np.int64)
    state_offsets = np.concatenate(([0], np.cumsum(numels)))[:-1].astype(np.int64)
    uses_vmax = np.array([amsgrad_by_group[s.group] for s in specs], dtype=bool)
    vmax_sizes = np.where(uses_vmax, numels, 0)
    vmax_offsets = np.concatenate(([0], np.cumsum(vmax_sizes)))[:-1].astype(np.int64)
    return numels, state_offsets, np.where(uses_vmax, vmax_offsets, -1), int(vmax_sizes.sum())


def split_items(numels) -> np.ndarray:
    """Work items (tensor, begin, length) of at most WORK_ITEM_ELEMENTS elements."""
    items = [(t, begin, min(WORK_ITEM_ELEMENTS, int(numel) - begin))
             for t, numel in enumerate(numels)
             for begin in range(0, int(numel), WORK_ITEM_ELEMENTS)]
    return np.array(items, dtype=np.int64).reshape(len(items), ITEM_COLUMNS)


def _memory_order(array: np.ndarray) -> str:
    """'C' or 'F': the order in which the flat state follows the array's memory."""
    return "C" if array.flags.c_contiguous else "F"


class _EngineBase:
    """What the CPU and CUDA engines share: gradient checks, sparse bookkeeping, state copy."""

    specs: list[TensorSpec]
    dtype: np.dtype
    _sparse_jobs: list

    def _check_count(self, grads: list) -> None:
        if len(grads) != len(self.specs):
            raise ValueError(f"expected {len(self.specs)} gradients (one per parameter, in "
                             f"parameter-group order), got {len(grads)}")

    def _check_dense(self, g, spec: TensorSpec) -> None:
        """Shape and dtype of one dense gradient (``g`` already an array)."""
        if g.shape != spec.array.shape:
            raise ValueError(f"gradient for {spec.label} has shape {g.shape}, "
                             f"expected {spec.array.shape}")
        if np.dtype(g.dtype) != self.dtype:
            raise TypeError(f"gradient for {spec.label} has dtype {g.dtype}, expected {self.dtype}")

    def _check_sparse(self, g: IndexedSlices, values, spec: TensorSpec) -> None:
        if g.dense_shape != spec.array.shape:
            raise ValueError(f"sparse gradient for {spec.label} has dense_shape {g.dense_shape}, "
                             f"expected {spec.array.shape}")
        if np.dtype(values.dtype) != self.dtype:
            raise TypeError(f"sparse gradient for {spec.label} has dtype {values.dtype}, "
                            f"expected {self.dtype}")

    @staticmethod
    def _none_gradient(spec: TensorSpec) -> TypeError:
        return TypeError(f"gradient for {spec.label} is None; every parameter is updated each "
                         f"step, pass zeros to leave moments decaying")

    def _plain_params_error(self, what: str) -> TypeError:
        shown = ", ".join(self.plain[:5]) + (", ..." if len(self.plain) > 5 else "")
        return TypeError(f"step() without grads reads gradients from ParamBuffer grad views, "
                         f"but {len(self.plain)} parameter(s) ({shown}) are {what}: pass their "
                         f"gradients with step(grads=[...])")

    @property
    def has_sparse_jobs(self) -> bool:
        return bool(self._sparse_jobs)

    def copy_state_from(self, other, mapping: dict[int, int]) -> None:
        """Copy tensor state from ``other`` (its index -> ours) after a re-layout."""
        for theirs, ours in mapping.items():
            self.write_state(ours, other.read_state(theirs))


class Engine(_EngineBase):
    """Flat state and launch tables for a fixed list of same-dtype tensors."""

    def __init__(self, specs: list[TensorSpec], amsgrad_by_group: list[bool], dtype: np.dtype):
        self.specs = list(specs)
        self.dtype = np.dtype(dtype)
        n = len(specs)
        numels, self.state_offsets, self.vmax_offsets, vmax_size = state_layout(
            specs, amsgrad_by_group)
        self.numels = numels
        self.size = int(numels.sum())

        self.m = np.zeros(self.size, dtype=self.dtype)
        self.v = np.zeros(self.size, dtype=self.dtype)
        self.v_max = np.zeros(vmax_size, dtype=self.dtype)
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

        self.items = split_items(numels)
        self._item_sums = np.zeros(len(self.items), dtype=np.float64)
        self._kernel = (_cpu.adam_step_parallel if self.size >= PARALLEL_MIN_ELEMENTS
                        else _cpu.adam_step_serial)

    # -- gradients --------------------------------------------------------
    def use_buffer_grads(self) -> None:
        """Point every tensor at its gradient view in its ParamBuffer."""
        if self._grads_from_buffers:
            return
        if self.plain:
            raise self._plain_params_error("plain arrays")
        self.tensors[:, GRAD_ADDR] = self.buffer_grad_addr
        self._grads_from_buffers = True
        self._set_sparse([])

    def use_grads(self, grads: list) -> list[np.ndarray]:
        """Point every tensor at a caller-given gradient; check all before changing anything.

        Returns the arrays that must stay alive until the launch.
        """
        specs = self.specs
        self._check_count(grads)
        addr = self._grad_addr
        arrays = []
        restage = []
        sparse = []
        for i, (g, spec) in enumerate(zip(grads, specs)):
            p = spec.array
            if isinstance(g, IndexedSlices):
                self._check_sparse(g, g.values, spec)
                if not p.flags.c_contiguous:
                    raise ValueError(f"sparse gradients need a C-ordered parameter; "
                                     f"{spec.label} is Fortran-ordered")
                sparse.append(i)
                arrays.append(g)
                continue
            if type(g) is not np.ndarray:
                if g is None:
                    raise self._none_gradient(spec)
                g = np.asarray(g)
            self._check_dense(g, spec)
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

    def read_state(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Host copies of tensor ``i``'s m, v and v_max (None without AMSGrad)."""
        return tuple(None if x is None else x.copy() for x in self.tensor_state(i))

    def write_state(self, i: int, values: tuple) -> None:
        """Set tensor ``i``'s m, v, v_max from host arrays (None: zeros; ignored without AMSGrad)."""
        for target, value in zip(self.tensor_state(i), values):
            if target is not None:
                target[...] = 0 if value is None else value

    def flat_state(self) -> dict[str, np.ndarray]:
        """The flat state buffers on the host, for checkpoints."""
        return {"exp_avg": self.m, "exp_avg_sq": self.v, "max_exp_avg_sq": self.v_max}


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


class CudaEngine(_EngineBase):
    """Flat device state and launch tables for CUDA tensors: one launch per storage.

    A storage is a ``ParamBuffer(device="cuda")``'s flat data (all its tensors
    in one launch) or one plain CUDA array.  Kernels run on the default
    stream; numba synchronises on a stream exported through
    ``__cuda_array_interface__`` (v3) when it imports an array, and
    PyTorch's tensors (v2, no stream) are ordered by the default stream.
    """

    def __init__(self, specs: list[TensorSpec], amsgrad_by_group: list[bool], dtype: np.dtype):
        from numba import cuda

        from . import _cuda
        self._cuda, self._k = cuda, _cuda
        self.specs = list(specs)
        self.dtype = np.dtype(dtype)
        self.numels, self.state_offsets, self.vmax_offsets, vmax_size = state_layout(
            specs, amsgrad_by_group)
        self.size = int(self.numels.sum())
        self.orders = ["C"] * len(specs)
        self.n_groups = len(amsgrad_by_group)
        # storages: flat parameter array, its owner (or None), tensor indices
        self.storages: list[dict] = []
        by_key: dict[int, int] = {}
        offsets = np.zeros(len(specs), dtype=np.int64)
        for i, spec in enumerate(specs):
            key = id(spec.owner) if spec.owner is not None else -1 - i
            if key not in by_key:
                by_key[key] = len(self.storages)
                flat = (spec.owner.data if spec.owner is not None
                        else spec.array.reshape(int(self.numels[i])))
                self.storages.append(dict(p=flat, g=None, owner=spec.owner, tensors=[]))
            storage = self.storages[by_key[key]]
            storage["tensors"].append(i)
            if spec.owner is not None:
                offsets[i] = (address_of(spec.array) - address_of(spec.owner.data)) \
                    // self.dtype.itemsize
        order = [i for s in self.storages for i in s["tensors"]]
        items = split_items(self.numels)
        items = items[np.argsort(np.array([order.index(t) for t in items[:, 0]]), kind="stable")] \
            if len(items) else items
        for s in self.storages:
            mine = np.isin(items[:, 0], s["tensors"])
            where = np.flatnonzero(mine)
            s["items"] = (int(where[0]), int(where[-1]) + 1) if where.size else (0, 0)
        self.items = items
        tensors = np.zeros((len(specs), TENSOR_COLUMNS), dtype=np.int64)
        tensors[:, PARAM_ADDR] = offsets
        tensors[:, STATE_OFFSET] = self.state_offsets
        tensors[:, VMAX_OFFSET] = self.vmax_offsets
        tensors[:, GROUP] = [s.group for s in specs]
        self.tensors = tensors
        self.d_tensors = cuda.to_device(tensors)
        self.d_items = cuda.to_device(items if len(items) else np.zeros((1, ITEM_COLUMNS), np.int64))
        self.m = _cuda.zeros(self.size, self.dtype)
        self.v = _cuda.zeros(self.size, self.dtype)
        self.v_max = _cuda.zeros(max(vmax_size, 1), self.dtype)
        self.hyper = np.zeros((self.n_groups, HYPER_COLUMNS), dtype=self.dtype)
        self.d_hyper = cuda.to_device(self.hyper)
        self.grad_scales = _cuda.zeros(len(specs), self.dtype)
        self.grad_scales[:] = 1
        self._scaled = False
        self._item_sums = _cuda.zeros(max(len(items), 1), np.float64)
        self._tensor_sums = _cuda.zeros(len(specs), np.float64)
        self._sparse_jobs: list = []
        self._skipping = False
        self.plain = [s.label for s in specs if s.owner is None]

    # -- gradients --------------------------------------------------------
    def use_buffer_grads(self) -> None:
        if self.plain:
            raise self._plain_params_error("plain CUDA arrays")
        for s in self.storages:
            s["g"] = s["owner"].grad
        self._set_sparse([])

    def use_grads(self, grads: list) -> list:
        specs = self.specs
        self._check_count(grads)
        arrays, sparse = [], []
        for i, (g, spec) in enumerate(zip(grads, specs)):
            if isinstance(g, IndexedSlices):
                values = g.values.copy_to_host() if is_cuda_array(g.values) else g.values
                self._check_sparse(g, values, spec)
                sparse.append(i)
                arrays.append(IndexedSlices(values, g.indices, g.dense_shape))
                continue
            if g is None:
                raise self._none_gradient(spec)
            if not is_cuda_array(g):
                raise TypeError(f"gradient for {spec.label} must be a CUDA array like its "
                                f"parameter, got {type(g).__name__}")
            g = as_device_array(g)
            self._check_dense(g, spec)
            if not g.is_c_contiguous():
                raise ValueError(f"gradient for {spec.label} must be C-contiguous")
            arrays.append(g)
        # checked: now point storages at the gradients
        for s in self.storages:
            if s["owner"] is not None:
                s["g"] = s["owner"].grad
                for i in s["tensors"]:
                    if i not in sparse:
                        view = self._grad_view(s, i)
                        if address_of(view) != address_of(arrays[i]):
                            view.copy_to_device(arrays[i])
            else:
                i = s["tensors"][0]
                s["g"] = s["p"] if i in sparse else arrays[i].reshape(int(self.numels[i]))
        self._set_sparse([(i, *arrays[i].merged()) for i in sparse])
        return arrays

    def _grad_view(self, storage: dict, i: int):
        start, n = int(self.tensors[i, PARAM_ADDR]), int(self.numels[i])
        return storage["owner"].grad[start:start + n].reshape(self.specs[i].array.shape)

    def _set_sparse(self, jobs: list) -> None:
        if jobs or self._skipping:
            self.tensors[:, SKIP] = 0
            for i, _, _ in jobs:
                self.tensors[i, SKIP] = 1
            self.d_tensors.copy_to_device(self.tensors)
            self._skipping = bool(jobs)
        self._sparse_jobs = jobs

    # -- clipping and launch ------------------------------------------------
    def set_grad_scales(self, clipnorm_by_group: list, global_clipnorm: float | None) -> None:
        """Norm-clipping factors computed on the device, in a fixed order."""
        k = self._k
        if global_clipnorm is None and not any(c is not None for c in clipnorm_by_group):
            if self._scaled:
                self.grad_scales[:] = 1
                self._scaled = False
            return
        for s in self.storages:
            first, last = s["items"]
            if last > first:
                blocks, threads = k.launch_config(last - first)
                k.grad_sum_squares[blocks, threads](s["g"], self.d_items, first, last,
                                                    self.d_tensors, self._item_sums)
        extra = np.zeros(len(self.specs))
        for i, _, values in self._sparse_jobs:
            extra[i] = float(np.sum(np.square(values, dtype=np.float64)))
        clipnorms = np.array([-1.0 if c is None else c for c in clipnorm_by_group])
        items = self.d_items if len(self.items) else self._cuda.to_device(
            np.zeros((0, ITEM_COLUMNS), np.int64))
        k.clip_scales[1, 1](self._item_sums, items, self.d_tensors, self._cuda.to_device(extra),
                            self._cuda.to_device(clipnorms),
                            -1.0 if global_clipnorm is None else float(global_clipnorm),
                            self._tensor_sums, self.grad_scales)
        self._scaled = True

    def launch(self, lazy_by_group: list[bool] | None = None) -> None:
        """One kernel launch per storage, plus one per sparse gradient."""
        k = self._k
        self.d_hyper.copy_to_device(self.hyper)
        for s in self.storages:
            first, last = s["items"]
            if last > first:
                blocks, threads = k.launch_config(last - first)
                k.adam_step[blocks, threads](s["p"], s["g"], self.d_items, first, last,
                                             self.d_tensors, self.d_hyper, self.grad_scales,
                                             self.m, self.v, self.v_max)
        for i, rows, values in self._sparse_jobs:
            self._launch_sparse(i, rows, values, lazy_by_group)
        self._sparse_jobs = []

    def _launch_sparse(self, i, rows, values, lazy_by_group) -> None:
        k, cuda = self._k, self._cuda
        spec = self.specs[i]
        storage = next(s for s in self.storages if i in s["tensors"])
        n_rows = spec.array.shape[0]
        cols = int(self.numels[i]) // n_rows if n_rows else 0
        group = int(self.tensors[i, GROUP])
        row = self.d_hyper[group]
        scale = self.dtype.type(self.hyper[group][GRAD_SIGN])
        if self._scaled:
            scale = scale * self.dtype.type(self.grad_scales[i:i + 1].copy_to_host()[0])
        d_values = cuda.to_device(np.ascontiguousarray(values.reshape(len(rows), cols)))
        base, state = int(self.tensors[i, PARAM_ADDR]), int(self.state_offsets[i])
        vmax_base = int(self.vmax_offsets[i])
        if lazy_by_group is not None and lazy_by_group[group]:
            blocks, threads = k.launch_config(max(1, len(rows) * cols // WORK_ITEM_ELEMENTS + 1))
            k.adam_rows_lazy[blocks, threads](storage["p"], base, self.m, self.v, state,
                                              self.v_max, vmax_base, cols, cuda.to_device(rows),
                                              d_values, row, scale)
        else:
            slot = np.full(n_rows, -1, dtype=np.int64)
            slot[rows] = np.arange(len(rows))
            blocks, threads = k.launch_config(max(1, n_rows * cols // WORK_ITEM_ELEMENTS + 1))
            k.adam_rows_dense[blocks, threads](storage["p"], base, self.m, self.v, state,
                                               self.v_max, vmax_base, cols, n_rows,
                                               cuda.to_device(slot), d_values,
                                               self.dtype.type(0), row, scale)

    # -- state access -----------------------------------------------------
    def tensor_state(self, i: int):
        """Device views of tensor ``i``'s m, v and v_max (None without AMSGrad)."""
        shape, start, n = self.specs[i].array.shape, int(self.state_offsets[i]), int(self.numels[i])
        vmax_start = int(self.vmax_offsets[i])
        return (self.m[start:start + n].reshape(shape), self.v[start:start + n].reshape(shape),
                self.v_max[vmax_start:vmax_start + n].reshape(shape) if vmax_start >= 0 else None)

    def read_state(self, i: int):
        return tuple(None if x is None else x.copy_to_host() for x in self.tensor_state(i))

    def write_state(self, i: int, values: tuple) -> None:
        for target, value in zip(self.tensor_state(i), values):
            if target is not None:
                host = np.zeros(target.shape, self.dtype) if value is None else \
                    np.ascontiguousarray(value, dtype=self.dtype)
                target.copy_to_device(host)

    def flat_state(self) -> dict[str, np.ndarray]:
        vmax = self.v_max.copy_to_host() if self.vmax_offsets.max(initial=-1) >= 0 else \
            np.zeros(0, self.dtype)
        return {"exp_avg": self.m.copy_to_host(), "exp_avg_sq": self.v.copy_to_host(),
                "max_exp_avg_sq": vmax}



def as_device_array(array):
    """A numba device array viewing a CUDA array (CuPy, PyTorch, numba), zero-copy."""
    if hasattr(array, "copy_to_host") and hasattr(array, "is_c_contiguous"):
        return array
    from numba import cuda
    return cuda.as_cuda_array(array)
