"""PyTorch-style optimizers over the flat engine: ``Adam`` and ``AdamW``."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import __version__
from ._engine import CudaEngine, Engine, TensorSpec, as_device_array, group_scalars
from .buffer import ParamBuffer, address_of, check_float_dtype, is_cuda_array, owner_of
from .checkpoint import CheckpointError, load_checkpoint, write_checkpoint
from .schedules import Schedule, from_config as schedules_from_config

# Group keys torch writes into its state_dict that have no meaning here.
_TORCH_ONLY_KEYS = frozenset({"foreach", "fused", "capturable", "differentiable", "initial_lr"})
_BOOL_KEYS = ("amsgrad", "maximize", "decoupled_weight_decay", "epsilon_hat", "bias_correction",
              "lazy_sparse")
_CLIP_KEYS = ("clipnorm", "clipvalue", "global_clipnorm")


def _check_real(name: str, value: Any, low: float, high: float | None = None,
                high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (high is not None and (
            value >= high if high_open else value > high)):
        bound = "" if high is None else (f", {high})" if high_open else f", {high}]")
        expect = f"in [{low}{bound}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {expect}, got {value!r}")
    return value


def check_hyperparameter(key: str, value: Any) -> Any:
    """Validate and normalise one group hyperparameter; other keys pass unchanged.

    One helper serves the constructors, ``add_param_group``, edits of
    ``param_groups[i][key]`` and ``load_state_dict``.
    """
    if key == "lr":
        if callable(value):
            return value
        return _check_real("lr", value, 0.0)
    if key == "betas":
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {value!r}")
        return tuple(_check_real(f"betas[{i}]", b, 0.0, 1.0, high_open=True)
                     for i, b in enumerate(value))
    if key == "eps":
        return _check_real("eps", value, 0.0)
    if key in ("weight_decay", "decay"):
        return _check_real(key, value, 0.0)
    if key in _CLIP_KEYS:
        if value is None:
            return None
        value = _check_real(key, value, 0.0)
        if value <= 0:
            raise ValueError(f"{key} must be > 0 (or None for no clipping), got {value!r}")
        return value
    if key in _BOOL_KEYS:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{key} must be True or False, got {value!r}")
        return bool(value)
    return value


class ParamGroup(dict):
    """A parameter group: a dict whose hyperparameters are checked when set.

    Edits take effect at the next ``step()``; ``params`` cannot be replaced
    (add parameters with ``add_param_group``).  ``lr`` may be set to a
    schedule (any callable ``step -> lr``): the schedule is kept in
    ``schedule`` and ``group["lr"]`` shows the value the next step uses.
    ``updates`` counts the completed updates of this group.
    """

    def __init__(self, values: Mapping[str, Any], on_change: Callable[[str], None]):
        super().__init__()
        self._on_change = on_change
        self.schedule: Callable[[int], float] | None = None
        self.updates = 0
        for key, value in values.items():
            self._set(key, value)

    def _set(self, key: str, value: Any) -> None:
        value = check_hyperparameter(key, value)
        if key == "lr":
            self.schedule = value if callable(value) else None
            if self.schedule is not None:
                value = self.scheduled_lr()
        dict.__setitem__(self, key, value)

    def scheduled_lr(self) -> float:
        """The schedule's learning rate for the next update (completed updates so far)."""
        return _check_real("lr (from the schedule)", self.schedule(self.updates), 0.0)

    def show_scheduled_lr(self) -> None:
        """Refresh ``self["lr"]`` after an update; a bad value is reported by the next step."""
        try:
            dict.__setitem__(self, "lr", float(self.schedule(self.updates)))
        except Exception:
            dict.__setitem__(self, "lr", math.nan)

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "params":
            raise KeyError("a group's params cannot be replaced; use add_param_group")
        self._set(key, value)
        self._on_change(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __delitem__(self, key: str) -> None:
        raise KeyError(f"group keys cannot be removed (tried {key!r})")

    def __reduce__(self):
        return dict, (dict(self),)


def _to_numpy(value: Any) -> np.ndarray:
    """NumPy array from an array, scalar or PyTorch tensor (state_dict import)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _split_params(params: Any, where: str) -> tuple[list[np.ndarray], list[str | None]]:
    """Arrays and names (None where unnamed) from a ParamBuffer, dict, array list or array."""
    if isinstance(params, ParamBuffer):
        return params.values(), list(params.names)
    if isinstance(params, Mapping):
        return list(params.values()), [str(k) for k in params]
    if isinstance(params, np.ndarray):
        return [params], [None]
    if isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise TypeError(f"{where} must be a ParamBuffer, a dict name -> array or a list of "
                        f"arrays, got {type(params).__name__}")
    arrays = list(params)
    return arrays, [None] * len(arrays)


class Optimizer:
    """Base of the PyTorch-style optimizers: param groups, step, state_dict.

    Subclasses give ``defaults``: the group keys and their default values.
    """

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = {k: check_hyperparameter(k, v) for k, v in defaults.items()}
        self.param_groups: list[ParamGroup] = []
        self._specs: list[TensorSpec] = []
        self._names: list[str | None] = []
        self._dtype: np.dtype | None = None
        if isinstance(params, (ParamBuffer, Mapping, np.ndarray)):
            groups = [{"params": params}]
        elif isinstance(params, Iterable) and not isinstance(params, (str, bytes)):
            params = list(params)
            if not params:
                raise ValueError("optimizer got an empty parameter list")
            groups = params if params and all(isinstance(p, Mapping) for p in params) \
                else [{"params": params}]
        else:
            raise TypeError(f"params must be a ParamBuffer, a dict name -> array, a list of "
                            f"arrays or a list of group dicts, got {type(params).__name__}")
        prepared = []
        for g in groups:
            prepared.append(self._prepare_group(g, prepared))
        for group, specs, names in prepared:
            self._commit_group(group, specs, names)
        self._engine = self._new_engine()

    # -- building ---------------------------------------------------------
    def _prepare_group(self, group: Mapping[str, Any], pending: list) -> tuple:
        """Check a group dict and its arrays; return it without changing the optimizer."""
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"a parameter group must be a dict with a 'params' entry, got {group!r}")
        gi = len(self.param_groups) + len(pending)
        arrays, names = _split_params(group["params"], f"param_groups[{gi}]['params']")
        if not arrays:
            raise ValueError(f"param_groups[{gi}] has no parameters")
        values = {k: check_hyperparameter(k, v) for k, v in group.items() if k != "params"}
        for key, default in self.defaults.items():
            values.setdefault(key, default)
        first = self._specs[0] if self._specs else (pending[0][1][0] if pending else None)
        dtype = np.dtype(first.array.dtype) if first is not None else None
        device = is_cuda_array(first.array) if first is not None else None
        specs = []
        for j, (array, name) in enumerate(zip(arrays, names)):
            label = repr(name) if name is not None else f"param_groups[{gi}]['params'][{j}]"
            on_device = is_cuda_array(array)
            if on_device:
                array = as_device_array(array)
            elif not isinstance(array, np.ndarray):
                raise TypeError(f"parameter {label} must be a NumPy or CUDA array (it is "
                                f"updated in place), got {type(array).__name__}")
            check_float_dtype(array.dtype, f"parameter {label}")
            if dtype is None:
                dtype = np.dtype(array.dtype)
            elif array.dtype != dtype:
                raise TypeError(f"parameter {label} has dtype {array.dtype} but earlier "
                                f"parameters are {dtype}; use one optimizer per dtype")
            earlier_device = device if device is not None else on_device
            if on_device != earlier_device:
                raise TypeError(f"parameter {label} is on the {'GPU' if on_device else 'CPU'} "
                                f"but earlier parameters are not; use one optimizer per device")
            device = on_device
            if on_device:
                if not array.is_c_contiguous():
                    raise ValueError(f"CUDA parameter {label} must be C-contiguous")
            else:
                if not array.flags.writeable:
                    raise ValueError(f"parameter {label} is read-only")
                if not (array.flags.c_contiguous or array.flags.f_contiguous):
                    raise ValueError(f"parameter {label} is not contiguous in memory; copy it "
                                     f"into a ParamBuffer (or np.ascontiguousarray) first")
            owner = owner_of(array)
            if name is None and owner is not None:
                name = names[j] = owner.name_of(array)
                label = repr(name) if name is not None else label
            specs.append(TensorSpec(array, gi, owner, label))
        earlier = self._specs + [s for _, ss, _ in pending for s in ss]
        _check_no_overlap(earlier + specs)
        return values, specs, names

    def _commit_group(self, values: dict, specs: list[TensorSpec], names: list) -> None:
        self.param_groups.append(ParamGroup(
            {"params": [s.array for s in specs], **values}, self._on_group_change))
        self._specs.extend(specs)
        self._names.extend(names)
        if self._dtype is None:
            self._dtype = np.dtype(specs[0].array.dtype)
        self._name_index = {n: i for i, n in enumerate(self._names) if n is not None}

    def _new_engine(self) -> Engine:
        self._zero_spans = _grad_spans(self._specs)
        engine = CudaEngine if is_cuda_array(self._specs[0].array) else Engine
        return engine(self._specs, [bool(g["amsgrad"]) for g in self.param_groups], self._dtype)

    def _relayout(self) -> None:
        """Rebuild the engine after parameters or AMSGrad settings changed, keeping state."""
        old = self._engine
        self._engine = self._new_engine()
        self._engine.copy_state_from(old, {i: i for i in range(len(old.specs))})
        self._layout_stale = False

    _layout_stale = False
    _global_clipnorm: float | None = None

    @property
    def global_clipnorm(self) -> float | None:
        """Scale all gradients together so their joint L2 norm is at most this (None: off)."""
        return self._global_clipnorm

    @global_clipnorm.setter
    def global_clipnorm(self, value: float | None) -> None:
        self._global_clipnorm = check_hyperparameter("global_clipnorm", value)

    def _on_group_change(self, key: str) -> None:
        if key == "amsgrad":
            self._layout_stale = True

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group of parameters (with its own hyperparameters) to optimise from now on."""
        values, specs, names = self._prepare_group(param_group, [])
        self._commit_group(values, specs, names)
        self._relayout()

    # -- stepping ---------------------------------------------------------
    def step(self, grads: Sequence[Any] | Mapping[str, Any] | None = None,
             closure: Callable[[], Any] | None = None) -> Any:
        """Apply one update to every parameter; returns ``closure()``'s loss, if given.

        Args:
            grads: gradients aligned with the parameters (in group order), or a
                dict name -> gradient; None reads the ParamBuffer grad views.
                A gradient may be a ``numba_adam.IndexedSlices`` (rows of a
                C-ordered tensor): dense-equivalent by default, only the given
                rows with the group option ``lazy_sparse=True``.
            closure: called first (it may recompute the gradients).

        Raises:
            ValueError/TypeError: wrong number, shape or dtype of gradients;
                nothing is changed.
        """
        loss = closure() if closure is not None else None
        if self._layout_stale:
            self._relayout()
        engine = self._engine
        keep_alive = None
        if grads is None:
            engine.use_buffer_grads()
        else:
            keep_alive = engine.use_grads(self._align_grads(grads))
        hyper = engine.hyper
        groups = self.param_groups
        for i, group in enumerate(groups):
            lr = group["lr"] if group.schedule is None else group.scheduled_lr()
            beta1, beta2 = group["betas"]
            hyper[i] = group_scalars(
                group.updates + 1, lr, beta1, beta2, group["eps"], group["weight_decay"],
                group["maximize"], group["decoupled_weight_decay"],
                group.get("epsilon_hat", False), group.get("bias_correction", True),
                group.get("clipvalue"))
        engine.set_grad_scales([group.get("clipnorm") for group in groups], self._global_clipnorm)
        engine.launch([group.get("lazy_sparse", False) for group in groups]
                      if engine.has_sparse_jobs else None)
        del keep_alive
        for group in groups:
            group.updates += 1
            if group.schedule is not None:
                group.show_scheduled_lr()
        return loss

    def _align_grads(self, grads: Any) -> Sequence[Any]:
        if isinstance(grads, Mapping):
            missing = [n if n is not None else f"#{i}" for i, n in enumerate(self._names)
                       if n not in grads]
            unknown = [k for k in grads if k not in self._name_index]
            if unknown:
                raise ValueError(f"grads has names that are not parameters: {unknown}")
            if missing:
                raise ValueError(f"grads is missing gradients for: {missing}")
            return [grads[n] for n in self._names]
        if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
            raise TypeError(f"grads must be a sequence of arrays (one per parameter) or a "
                            f"dict name -> array, got {type(grads).__name__}")
        return grads

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the ParamBuffer gradients of this optimizer's parameters.

        The flat gradient buffer always exists, so it is zero-filled whatever
        ``set_to_none`` says (accepted for PyTorch compatibility).  Gradients
        passed to ``step(grads=...)`` belong to the caller and are not touched.
        """
        for owner, span in self._zero_spans:
            owner.grad[span] = 0

    # -- state ------------------------------------------------------------
    def _group_indices(self) -> list[range]:
        out, start = [], 0
        for group in self.param_groups:
            out.append(range(start, start + len(group["params"])))
            start += len(group["params"])
        return out

    def state_dict(self) -> dict[str, Any]:
        """Optimizer state laid out like ``torch.optim.Adam.state_dict()`` (copies).

        ``{"state": {i: {"step", "exp_avg", "exp_avg_sq"[, "max_exp_avg_sq"]}},
        "param_groups": [{hyperparameters..., "params": [i, ...]}]}``; parameters
        that have not been stepped yet have no state entry, as in torch.
        """
        state: dict[int, dict[str, Any]] = {}
        groups = []
        for gi, (group, indices) in enumerate(zip(self.param_groups, self._group_indices())):
            if group.updates > 0:
                for i in indices:
                    m, v, v_max = self._engine.read_state(i)
                    entry = {"step": group.updates, "exp_avg": m, "exp_avg_sq": v}
                    if v_max is not None:
                        entry["max_exp_avg_sq"] = v_max
                    state[i] = entry
            saved = {k: v for k, v in group.items() if k != "params"}
            if group.schedule is not None:
                saved["lr_schedule"] = (group.schedule.get_config()
                                        if isinstance(group.schedule, Schedule) else group.schedule)
            saved["params"] = list(indices)
            names = [self._names[i] for i in indices]
            if any(n is not None for n in names):
                saved["param_names"] = names
            groups.append(saved)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore state saved by ``state_dict()`` (ours or torch's Adam/AdamW).

        Everything is checked before anything changes: group count, parameters
        per group, array shapes, hyperparameters and step counts.

        Raises:
            ValueError/TypeError: the state_dict does not fit this optimizer.
        """
        self._commit_state(*self._prepare_state(state_dict))

    def _prepare_state(self, state_dict: Mapping[str, Any]) -> tuple:
        """Check a state_dict against this optimizer; return what to commit."""
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError("state_dict must be a dict with 'state' and 'param_groups' entries")
        saved_groups = list(state_dict["param_groups"])
        saved_state = state_dict["state"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(saved_groups)} parameter groups, this "
                             f"optimizer has {len(self.param_groups)}")
        new_values, new_steps, new_arrays = [], [], {}
        for gi, (saved, indices) in enumerate(zip(saved_groups, self._group_indices())):
            saved_ids = list(saved.get("params", []))
            if len(saved_ids) != len(indices):
                raise ValueError(f"state_dict group {gi} has {len(saved_ids)} parameters, this "
                                 f"optimizer's group {gi} has {len(indices)}")
            values = {}
            for key, value in saved.items():
                if key in ("params", "param_names", "lr_schedule") or key in _TORCH_ONLY_KEYS:
                    continue
                if key == "lr" and saved.get("lr_schedule") is not None:
                    continue   # the schedule decides the value
                if key not in self.param_groups[gi] and key not in self.defaults:
                    raise ValueError(f"state_dict group {gi} has unknown key {key!r}")
                if key == "betas" and isinstance(value, (list, tuple)):
                    value = tuple(_to_numpy(b).item() for b in value)
                elif hasattr(value, "detach"):   # a torch tensor hyperparameter
                    value = _to_numpy(value).item()
                values[key] = check_hyperparameter(key, value)
            schedule = saved.get("lr_schedule")
            if schedule is not None:
                values["lr"] = schedule if callable(schedule) else schedules_from_config(schedule)
            amsgrad = values.get("amsgrad", self.param_groups[gi]["amsgrad"])
            present = [pid in saved_state for pid in saved_ids]
            if any(present) and not all(present):
                raise ValueError(f"state_dict group {gi} has state for some parameters but "
                                 f"not others")
            step = 0
            if all(present) and present:
                steps = set()
                for pid, i in zip(saved_ids, indices):
                    entry = saved_state[pid]
                    steps.add(int(round(float(_to_numpy(entry["step"])))))
                    shape = self._specs[i].array.shape
                    keys = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if amsgrad else [])
                    for key in keys:
                        if key not in entry:
                            raise ValueError(f"state_dict state[{pid}] has no {key!r}")
                        array = _to_numpy(entry[key])
                        if array.shape != shape:
                            raise ValueError(f"state_dict state[{pid}][{key!r}] has shape "
                                             f"{array.shape}, parameter "
                                             f"{self._specs[i].label} has shape {shape}")
                        new_arrays[(i, key)] = array
                if len(steps) != 1:
                    raise ValueError(f"state_dict group {gi} has parameters at different step "
                                     f"counts {sorted(steps)}; numba_adam steps a group together")
                step = steps.pop()
                if step < 0:
                    raise ValueError(f"state_dict group {gi} has a negative step count {step}")
            new_values.append(values)
            new_steps.append(step)
        return new_values, new_steps, new_arrays

    def _commit_state(self, new_values: list, new_steps: list, new_arrays: dict) -> None:
        layout = [g["amsgrad"] for g in self.param_groups]
        for group, values in zip(self.param_groups, new_values):
            for key, value in values.items():
                group._set(key, value)
        if layout != [g["amsgrad"] for g in self.param_groups]:
            self._relayout()
        for i in range(len(self._specs)):
            self._engine.write_state(i, tuple(new_arrays.get((i, key)) for key in
                                              ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")))
        for group, step in zip(self.param_groups, new_steps):
            group.updates = step
            if group.schedule is not None:
                group.show_scheduled_lr()

    # -- checkpoints ------------------------------------------------------
    def save(self, path: str | os.PathLike, params: bool = False) -> None:
        """Write the optimizer's state (and with ``params=True`` the parameter values) to ``path``.

        The file holds every group's hyperparameters, schedule configs and
        step counts, and the flat m, v (and v_max) buffers; it is written
        atomically (see :mod:`numba_adam.checkpoint`).

        Raises:
            CheckpointError: a group's lr is a callable that is not a
                ``numba_adam.schedules`` schedule (it cannot be stored).
        """
        engine = self._engine
        groups = []
        for gi, (group, indices) in enumerate(zip(self.param_groups, self._group_indices())):
            schedule = group.schedule
            if schedule is not None and not isinstance(schedule, Schedule):
                raise CheckpointError(
                    f"param_groups[{gi}]['lr'] is a plain callable ({schedule!r}), which cannot be "
                    f"saved; use a numba_adam.schedules schedule or a float lr")
            groups.append(dict(
                hyperparameters={k: v for k, v in group.items() if k != "params"},
                lr_schedule=schedule.get_config() if schedule is not None else None,
                updates=group.updates,
                tensors=[dict(name=self._names[i], shape=list(self._specs[i].array.shape),
                              order=engine.orders[i], offset=int(engine.state_offsets[i]),
                              vmax_offset=int(engine.vmax_offsets[i])) for i in indices]))
        header = dict(format="numba_adam checkpoint", library_version=__version__,
                      optimizer=type(self).__name__, dtype=str(self._dtype), groups=groups)
        arrays = {key: [value] for key, value in engine.flat_state().items()}
        if params:
            arrays["params"] = [s.array if isinstance(s.array, np.ndarray)
                                else s.array.copy_to_host() for s in self._specs]
        write_checkpoint(path, header, arrays)

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
        ckpt = load_checkpoint(path)
        tensors = ckpt.tensors
        if len(ckpt.groups) != len(self.param_groups):
            raise CheckpointError(f"{path} holds {len(ckpt.groups)} parameter groups, this "
                                  f"optimizer has {len(self.param_groups)}")
        for gi, (saved, indices) in enumerate(zip(ckpt.groups, self._group_indices())):
            if len(saved["tensors"]) != len(indices):
                raise CheckpointError(f"{path}: group {gi} holds {len(saved['tensors'])} "
                                      f"parameters, this optimizer's has {len(indices)}")
        for i, (saved, spec) in enumerate(zip(tensors, self._specs)):
            name = self._names[i]
            if saved["name"] is not None and name is not None and saved["name"] != name:
                raise CheckpointError(f"{path}: parameter {i} is {saved['name']!r} in the file "
                                      f"but {name!r} here")
            if tuple(saved["shape"]) != spec.array.shape:
                raise CheckpointError(f"{path}: parameter {spec.label} has shape "
                                      f"{tuple(saved['shape'])} in the file, {spec.array.shape} here")
        values = ckpt.params if params is not False else None
        if params and values is None:
            raise CheckpointError(f"{path} holds no parameter values (save with params=True)")
        try:
            prepared = self._prepare_state(ckpt.state_dict())
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path} does not fit this optimizer: {exc}") from None
        self._commit_state(*prepared)
        if values is not None:
            for spec, value in zip(self._specs, values):
                if isinstance(spec.array, np.ndarray):
                    np.copyto(spec.array, value, casting="same_kind")
                else:
                    spec.array.copy_to_device(np.ascontiguousarray(value, spec.array.dtype))

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines + [")"])


def _grad_spans(specs: list[TensorSpec]) -> list[tuple[ParamBuffer, slice]]:
    """(buffer, flat slice) covering the ParamBuffer gradients of ``specs``, merged."""
    spans: dict[int, tuple[ParamBuffer, list]] = {}
    for s in specs:
        if s.owner is not None:
            start = (address_of(s.array) - address_of(s.owner.data)) // s.array.dtype.itemsize
            spans.setdefault(id(s.owner), (s.owner, []))[1].append([start, start + s.array.size])
    out = []
    for owner, ranges in spans.values():
        ranges.sort()
        merged = [ranges[0]]
        for a, b in ranges[1:]:
            if a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out.extend((owner, slice(a, b)) for a, b in merged)
    return out


def _check_no_overlap(specs: list[TensorSpec]) -> None:
    """Raise if two parameters share memory (they would be updated twice)."""
    spans = sorted((address_of(s.array), address_of(s.array) + s.array.nbytes, s.label)
                   for s in specs if s.array.nbytes)
    for (a0, a1, la), (b0, b1, lb) in zip(spans, spans[1:]):
        if b0 < a1:
            raise ValueError(f"parameters {la} and {lb} share memory (a parameter may appear "
                             f"only once across all groups)")


class Adam(Optimizer):
    r"""Adam, with the update rule of ``torch.optim.Adam`` for every option.

    For each parameter, with gradient g at update t (1-based)::

        g = -g if maximize else g
        g = g + weight_decay * p                     (unless decoupled)
        p = p * (1 - lr * weight_decay)              (if decoupled_weight_decay)
        m = m + (1 - beta1) * (g - m)
        v = beta2 * v + (1 - beta2) * g**2
        v_max = max(v_max, v)                        (if amsgrad)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v or v_max) / sqrt(1 - beta2**t) + eps)

    Every parameter of every group is updated by one kernel launch.

    Args:
        params: a ParamBuffer (fastest: no per-tensor work per step), a dict
            name -> array, a list of arrays, or a list of group dicts
            ``{"params": ..., **overrides}``.  Plain arrays must be
            contiguous, writeable, float32 or float64 (all one dtype); they
            are updated in place.
        lr: learning rate (>= 0).
        betas: decay rates of the moment averages, each in [0, 1).
        eps: added to the denominator (>= 0).
        weight_decay: L2 penalty added to the gradient (>= 0), or decoupled
            decay with ``decoupled_weight_decay=True``.
        amsgrad: use the running maximum of the second moment.
        maximize: maximise the objective instead of minimising it.
        decoupled_weight_decay: AdamW's decay ``p *= 1 - lr * weight_decay``.

    Raises:
        TypeError/ValueError: invalid parameters or hyperparameters, naming them.

    Example:
        >>> import numpy as np, numba_adam
        >>> buf = numba_adam.ParamBuffer({"w": np.zeros(3)})
        >>> opt = numba_adam.Adam(buf, lr=0.1)
        >>> buf.grads["w"][:] = [1.0, -1.0, 0.0]
        >>> opt.step()
        >>> [round(float(x), 4) for x in buf["w"]]
        [-0.1, 0.1, 0.0]
    """

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 maximize: bool = False, decoupled_weight_decay: bool = False) -> None:
        super().__init__(params, dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            maximize=maximize, decoupled_weight_decay=decoupled_weight_decay))


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``): ``p *= 1 - lr * wd`` first.

    Same arguments as :class:`Adam`, with ``weight_decay`` defaulting to 1e-2.

    Example:
        >>> import numpy as np, numba_adam
        >>> buf = numba_adam.ParamBuffer({"w": np.ones(2)})
        >>> opt = numba_adam.AdamW(buf, lr=0.1, weight_decay=0.5)
        >>> opt.step()   # zero gradient: only the decay acts
        >>> buf["w"].tolist()
        [0.949999988079071, 0.949999988079071]
    """

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
