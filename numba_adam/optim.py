"""PyTorch-style optimizers over the engine: ``Optimizer``, ``Adam`` and ``AdamW``.

This module builds parameter groups and steps them.  Reading and restoring their
state (state_dict, checkpoints) is ``_optimizer_state``'s job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import _checks
from ._checks import check_hyperparameter
from ._engine import Engine
from ._optimizer_state import OptimizerState
from ._codes import group_key
from ._formula import Rule, group_scalars
from ._layout import TensorSpec
from .buffer import ParamBuffer, address_of, check_float_dtype, is_cuda_array, owner_of

_REQUIRED_KEYS = ("lr", "betas", "eps")


def rule_of(group: Mapping[str, Any]) -> Rule:
    """The update rule a group's options describe (options it lacks take their defaults)."""
    beta1, beta2 = group["betas"]
    return Rule(beta1=beta1, beta2=beta2, eps=group["eps"],
                weight_decay=group.get("weight_decay", 0.0),
                decoupled_weight_decay=group.get("decoupled_weight_decay", False),
                maximize=group.get("maximize", False), epsilon_hat=group.get("epsilon_hat", False),
                bias_correction=group.get("bias_correction", True),
                clipvalue=group.get("clipvalue"))


class ParamGroup(dict):
    """A parameter group: a dict whose hyperparameters are checked when set.

    Edits take effect at the next ``step()``; ``params`` cannot be replaced
    (add parameters with ``add_param_group``).  ``lr`` may be set to a
    schedule (any callable ``step -> lr``): the schedule is kept in
    ``schedule`` and ``group["lr"]`` shows the value the next step uses.
    ``updates`` counts the completed updates of this group; the count lives in
    an array shared with the optimizer, so steps taken in compiled code
    (``numba_adam.jit``) count too, and ``group["lr"]`` follows them.
    """

    def __init__(self, values: Mapping[str, Any], on_change: Callable[[str], None]):
        super().__init__()
        self._on_change = on_change
        self.schedule: Callable[[int], float] | None = None
        self._counts = np.zeros(1, dtype=np.int64)
        self._index = 0
        self._shown = 0          # the update count that dict's "lr" was computed for
        for key, value in values.items():
            self._set(key, value)

    @property
    def updates(self) -> int:
        """Completed updates of this group (the step count of its state)."""
        return int(self._counts[self._index])

    def bind_counter(self, counts: np.ndarray, index: int) -> None:
        """Keep this group's update count in ``counts[index]`` (the optimizer's array)."""
        counts[index] = self.updates
        self._counts, self._index = counts, index

    def __getitem__(self, key: str) -> Any:
        if key == "lr":
            self.refresh()
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def refresh(self) -> None:
        """Show the schedule's next lr in ``self["lr"]`` if updates were counted elsewhere."""
        if self.schedule is not None and self._shown != self.updates:
            self._set_updates(self.updates)

    def _set(self, key: str, value: Any) -> None:
        value = check_hyperparameter(key, value)
        schedule = self.schedule
        if key == "lr":
            schedule = value if callable(value) else None
            if schedule is not None:
                value = _scheduled_lr(schedule, self.updates)
                self._shown = self.updates
        dict.__setitem__(self, key, value)
        if key == "lr":
            self.schedule = schedule

    def next_lr(self) -> float:
        """The learning rate of the next update (the schedule's at the completed updates)."""
        return self["lr"] if self.schedule is None else _scheduled_lr(self.schedule, self.updates)

    def _set_updates(self, count: int) -> None:
        """Record completed updates and show the schedule's next value in ``self["lr"]``."""
        self._counts[self._index] = count
        self._shown = count
        if self.schedule is not None:
            try:
                value = float(self.schedule(count))
            except Exception:   # reported by the next step, which evaluates it again
                value = math.nan
            dict.__setitem__(self, "lr", value)

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "params":
            raise KeyError("a group's params cannot be replaced; use add_param_group")
        self._set(key, value)
        self._on_change(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Set several keys: all are checked first, so a bad one changes none."""
        new = dict(*args, **kwargs)
        if "params" in new:
            raise KeyError("a group's params cannot be replaced; use add_param_group")
        for key, value in new.items():
            check_hyperparameter(key, value)
        for key, value in new.items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __delitem__(self, key: str) -> None:
        raise KeyError(f"group keys cannot be removed (tried {key!r})")

    def __reduce__(self):
        return dict, (dict(self),)


def _scheduled_lr(schedule: Callable[[int], float], updates: int) -> float:
    return _checks.real("lr (from the schedule)", schedule(updates), low=0.0)


def _split_params(params: Any, where: str) -> tuple[list[Any], list[str | None]]:
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


def _as_parameter(array: Any, label: str, dtype: np.dtype | None, on_gpu: bool | None) -> Any:
    """Check one parameter (any writeable float array, or a C-contiguous CUDA array)."""
    device = is_cuda_array(array)
    if device:
        from ._cuda import as_device_array
        array = as_device_array(array)
    elif not isinstance(array, np.ndarray):
        raise TypeError(f"parameter {label} must be a NumPy or CUDA array (it is updated in "
                        f"place), got {type(array).__name__}")
    check_float_dtype(array.dtype, f"parameter {label}")
    if dtype is not None and array.dtype != dtype:
        raise TypeError(f"parameter {label} has dtype {array.dtype} but earlier parameters are "
                        f"{dtype}; use one optimizer per dtype")
    if on_gpu is not None and device != on_gpu:
        raise TypeError(f"parameter {label} is on the {'GPU' if device else 'CPU'} but earlier "
                        f"parameters are not; use one optimizer per device")
    if device and not array.is_c_contiguous():
        raise ValueError(f"CUDA parameter {label} must be C-contiguous")
    if not device and not array.flags.writeable:
        raise ValueError(f"parameter {label} is read-only")
    return array


class Optimizer(OptimizerState):
    """Base of the optimizers: param groups and one fused step (state reads, state_dict and
    checkpoints come from :class:`~numba_adam._optimizer_state.OptimizerState`).

    ``defaults`` gives the group keys and their default values: ``lr``,
    ``betas`` and ``eps`` at least, and any of ``weight_decay``,
    ``decoupled_weight_decay``, ``amsgrad``, ``maximize``, ``epsilon_hat``
    (Keras' epsilon placement), ``bias_correction``, ``clipnorm``,
    ``clipvalue`` and ``lazy_sparse``.  ``Adam``/``AdamW`` use torch's keys;
    the Keras and MLX front-ends add their own.
    """

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        missing = [k for k in _REQUIRED_KEYS if k not in defaults]
        if missing:
            raise TypeError(f"optimizer defaults need {list(_REQUIRED_KEYS)}, missing {missing}")
        self.defaults = {k: check_hyperparameter(k, v) for k, v in defaults.items()}
        self._groups: list[ParamGroup] = []
        self._step_counts = np.zeros(0, dtype=np.int64)   # each group's completed updates
        self._jit_handle: Any = None
        self._specs: list[TensorSpec] = []
        self._names: list[str | None] = []
        self._global_clipnorm: float | None = None
        if isinstance(params, (ParamBuffer, Mapping, np.ndarray)):
            groups = [{"params": params}]
        elif isinstance(params, Iterable) and not isinstance(params, (str, bytes)):
            params = list(params)
            if not params:
                raise ValueError("optimizer got an empty parameter list")
            groups = params if all(isinstance(p, Mapping) for p in params) \
                else [{"params": params}]
        else:
            raise TypeError(f"params must be a ParamBuffer, a dict name -> array, a list of "
                            f"arrays or a list of group dicts, got {type(params).__name__}")
        prepared: list = []
        for group in groups:
            prepared.append(self._prepare_group(group, prepared))
        for values, specs, names in prepared:
            self._commit_group(values, specs, names)
        self._engine = self._new_engine()

    # -- building ---------------------------------------------------------
    def _prepare_group(self, group: Any, pending: list) -> tuple:
        """Check a group dict and its arrays; return it without changing the optimizer."""
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"a parameter group must be a dict with a 'params' entry, got "
                            f"{group!r}")
        gi = len(self._groups) + len(pending)
        arrays, names = _split_params(group["params"], f"param_groups[{gi}]['params']")
        if not arrays:
            raise ValueError(f"param_groups[{gi}] has no parameters")
        values = {k: check_hyperparameter(k, v) for k, v in group.items() if k != "params"}
        values = {**self.defaults, **values}
        earlier = self._specs + [s for _, specs, _ in pending for s in specs]
        dtype = np.dtype(earlier[0].array.dtype) if earlier else None
        on_gpu = is_cuda_array(earlier[0].array) if earlier else None
        specs = []
        for j, (array, name) in enumerate(zip(arrays, names)):
            label = repr(name) if name is not None else f"param_groups[{gi}]['params'][{j}]"
            array = _as_parameter(array, label, dtype, on_gpu)
            dtype, on_gpu = np.dtype(array.dtype), is_cuda_array(array)
            owner = owner_of(array) if on_gpu or _contiguous(array) else None
            if name is None and owner is not None:
                name = names[j] = owner.name_of(array)
                label = repr(name) if name is not None else label
            specs.append(TensorSpec(array, gi, owner, label))
        _check_no_overlap(earlier + specs)
        return values, specs, names

    def _commit_group(self, values: dict, specs: list[TensorSpec], names: list) -> None:
        self._groups.append(ParamGroup(
            {"params": [s.array for s in specs], **values}, self._on_group_change))
        self._step_counts = np.zeros(len(self._groups), dtype=np.int64)
        for i, group in enumerate(self._groups):
            group.bind_counter(self._step_counts, i)
        self._drop_jit_handle()
        self._specs.extend(specs)
        self._names.extend(names)
        self._name_index = {n: i for i, n in enumerate(self._names) if n is not None}
        self._options_stale = True

    def _storage_options(self) -> list[tuple]:
        """What decides the state layout, per group: AMSGrad, state_bits, min_8bit_size."""
        return [(bool(g.get("amsgrad", False)), g.get("state_bits", 32),
                 g.get("min_8bit_size", 4096)) for g in self._groups]

    def _new_engine(self) -> Engine:
        self._zero_spans = _grad_spans(self._specs)
        self._layout_stale = False
        options = self._storage_options()
        return self._make_engine(self._specs, [a for a, _, _ in options],
                                 np.dtype(self._specs[0].array.dtype),
                                 "cuda" if is_cuda_array(self._specs[0].array) else "cpu",
                                 [b for _, b, _ in options], [s for _, _, s in options])

    def _make_engine(self, specs: list[TensorSpec], amsgrad_by_group: list[bool],
                     dtype: np.dtype, device: str, bits_by_group: list[int],
                     min_8bit_sizes: list[int]) -> Any:
        """The engine that holds the state and steps ``specs`` (a subclass may hold the state
        elsewhere, e.g. one rank's shard: ``numba_adam.distributed``)."""
        return Engine(specs, amsgrad_by_group, dtype, device, bits_by_group, min_8bit_sizes)

    def _rebuild_engine(self) -> None:
        """A new engine after parameters or AMSGrad settings changed; the state carries over."""
        self._drop_jit_handle()
        old = self._engine
        states = [old.state.snapshot(i) for i in range(len(old))]
        self._engine = self._new_engine()
        for i, state in enumerate(states):
            self._engine.state.write(i, state)

    @property
    def param_groups(self) -> list[ParamGroup]:
        """The parameter groups (dicts of hyperparameters plus ``params``), in order."""
        for group in self._groups:
            group.refresh()
        return self._groups

    def _on_group_change(self, key: str) -> None:
        self._drop_jit_handle()
        self._options_stale = True
        if key in ("amsgrad", "state_bits", "min_8bit_size"):
            self._layout_stale = True

    def _refresh_options(self) -> None:
        """Per-group rules, clip limits and sparse modes, rebuilt only after an edit."""
        groups = self._groups
        self._rules = [rule_of(g) for g in groups]
        clipnorms = [g.get("clipnorm") for g in groups]
        self._clipnorms = (np.array([-1.0 if c is None else c for c in clipnorms])
                           if any(c is not None for c in clipnorms) else None)
        self._lazy = [bool(g.get("lazy_sparse", False)) for g in groups]
        # the random keys of 16-bit rounding, for the groups that use it
        self._seeds = [g.get("seed", 0) if g.get("state_bits", 32) == 16 else None
                       for g in groups]
        self._options_stale = False

    @property
    def global_clipnorm(self) -> float | None:
        """Scale all gradients together so their joint L2 norm is at most this (None: off)."""
        return self._global_clipnorm

    @global_clipnorm.setter
    def global_clipnorm(self, value: float | None) -> None:
        self._global_clipnorm = check_hyperparameter("global_clipnorm", value)
        self._drop_jit_handle()

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group of parameters (with its own hyperparameters) to optimise from now on."""
        values, specs, names = self._prepare_group(param_group, [])
        self._commit_group(values, specs, names)
        self._rebuild_engine()

    # -- stepping ---------------------------------------------------------
    def step(self, grads: Sequence[Any] | Mapping[str, Any] | None = None,
             closure: Callable[[], Any] | None = None) -> Any:
        """Apply one update to every parameter; returns ``closure()``'s loss, if given.

        Args:
            grads: gradients aligned with the parameters (in group order), or a
                dict name -> gradient; None reads the ParamBuffer grad views.
                A gradient may be a ``numba_adam.IndexedSlices`` (rows of a
                C-ordered tensor): dense-equivalent by default, only the given
                rows with the group option ``lazy_sparse=True``.  A gradient of
                None leaves that tensor and its state as they are this step (its
                group's step count still advances, as Keras' one iteration count
                does).
            closure: called first (it may recompute the gradients).

        Raises:
            ValueError/TypeError: wrong number, shape or dtype of gradients, or
                a schedule that gives an invalid lr; nothing is changed.
        """
        loss = closure() if closure is not None else None
        if self._layout_stale:
            self._rebuild_engine()
        if self._options_stale:
            self._refresh_options()
        engine = self._engine
        groups = self._groups
        lrs = [group.next_lr() for group in groups]
        keep_alive = None
        if grads is None:
            engine.bind_buffer_grads()
        else:
            keep_alive = engine.bind_grads(self._align_grads(grads))
        scalars, keys, seeds = engine.group_scalars, engine.group_keys, self._seeds
        updates = [group.updates + 1 for group in groups]
        for i, rule in enumerate(self._rules):
            scalars[i] = group_scalars(rule, lr=lrs[i], step=updates[i])
            if seeds[i] is not None:
                keys[i] = group_key(seeds[i], updates[i])
        engine.clip_by_norm(self._clipnorms, self._global_clipnorm)
        engine.launch(self._lazy if engine.has_sparse_jobs else None)
        del keep_alive
        for group, count in zip(groups, updates):
            group._set_updates(count)
        return loss

    def _align_grads(self, grads: Any) -> Sequence[Any]:
        if isinstance(grads, Mapping):
            unknown = [k for k in grads if k not in self._name_index]
            if unknown:
                raise ValueError(f"grads has names that are not parameters: {unknown}")
            missing = [n if n is not None else f"#{i}" for i, n in enumerate(self._names)
                       if n not in grads]
            if missing:
                raise ValueError(f"grads is missing gradients for: {missing}")
            return [grads[n] for n in self._names]
        if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
            raise TypeError(f"grads must be a sequence of arrays (one per parameter) or a "
                            f"dict name -> array, got {type(grads).__name__}")
        return grads

    def step_rows(self, param: int | str, rows: Any, values: Any) -> None:
        """One lazy update of some rows of one parameter (TF LazyAdam, torch SparseAdam).

        Row ``rows[k]`` of parameter ``param`` (an index in group order, or a
        name) has gradient ``values[k]`` (a row listed twice gets the sum); no
        other element or state changes.  It is one update of the parameter's
        group: the group's step count (bias correction, schedule) advances by
        one.  This is what ``numba_adam.jit.step_rows`` does from compiled code,
        with the same result bit for bit.

        Raises:
            IndexError/ValueError/TypeError: unknown parameter, rows out of range,
                values of the wrong shape or dtype; nothing is changed.
        """
        from . import jit
        if isinstance(param, str):
            if param not in self._name_index:
                raise KeyError(f"no parameter named {param!r}")
            index = self._name_index[param]
        else:
            index = self._check_index(param)
        shape = tuple(self._specs[index].array.shape)
        rows = np.asarray(rows)
        if rows.ndim != 1 or not (np.issubdtype(rows.dtype, np.integer) or rows.size == 0):
            raise TypeError(f"rows must be a 1-D integer array, got {rows.dtype} of shape "
                            f"{rows.shape}")
        values = np.asarray(values)
        if values.dtype != self.dtype:
            raise TypeError(f"values have dtype {values.dtype}, expected {self.dtype}")
        if not shape or values.shape != (rows.size,) + shape[1:]:
            raise ValueError(f"values for {self._specs[index].label} must have shape "
                             f"{(rows.size,) + shape[1:]} (one row per index), got "
                             f"{values.shape}")
        jit.step_rows(self.jit_handle(), index, rows.astype(np.int64, copy=False),
                      values.reshape(rows.size, -1) if rows.size else
                      values.reshape(0, int(np.prod(shape[1:], dtype=np.int64))))

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the ParamBuffer gradients of this optimizer's parameters.

        The flat gradient buffer always exists, so it is zero-filled whatever
        ``set_to_none`` says (accepted for PyTorch compatibility).  Gradients
        passed to ``step(grads=...)`` belong to the caller and are not touched.
        """
        for owner, span in self._zero_spans:
            owner.grad[span] = 0

    # -- what the optimizer holds -------------------------------------------
    @property
    def param_names(self) -> list[str | None]:
        """Each parameter's name (None where unnamed), in group order."""
        return list(self._names)

    @property
    def dtype(self) -> np.dtype:
        """The parameters' dtype (also the dtype of 32-bit state)."""
        return self._engine.dtype

    # -- copies -------------------------------------------------------------
    def __reduce_ex__(self, protocol: int):
        raise TypeError(f"{type(self).__name__} cannot be copied or pickled: it updates the "
                        f"caller's arrays in place. Save its state with state_dict() or "
                        f"save(path), and load it into a new optimizer over the new arrays")

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


def _byte_span(array: Any) -> tuple[int, int]:
    if isinstance(array, np.ndarray):
        low, high = np.lib.array_utils.byte_bounds(array) if hasattr(np.lib, "array_utils") \
            else np.byte_bounds(array)
        return low, high
    start = address_of(array)
    return start, start + array.nbytes


def _contiguous(array: np.ndarray) -> bool:
    return array.flags.c_contiguous or array.flags.f_contiguous


def _check_no_overlap(specs: list[TensorSpec]) -> None:
    """Raise if two parameters share memory (they would be updated twice)."""
    spans = sorted((*_byte_span(s.array), k) for k, s in enumerate(specs) if s.array.size)
    for (a0, a1, i), (b0, b1, j) in zip(spans, spans[1:]):
        if b0 < a1:
            a, b = specs[i].array, specs[j].array
            strided = isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and not (
                _contiguous(a) and _contiguous(b))
            if not strided or np.shares_memory(a, b):
                raise ValueError(f"parameters {specs[i].label} and {specs[j].label} share memory "
                                 f"(a parameter may appear only once across all groups)")


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
            writeable, float32 or float64 (all one dtype), and are updated
            in place; any memory layout works (strided views are staged
            through a contiguous copy each step).
        lr: learning rate (>= 0), or a schedule ``step -> lr``.
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
                 maximize: bool = False, decoupled_weight_decay: bool = False,
                 state_bits: int = 32, seed: int = 0, min_8bit_size: int = 4096) -> None:
        super().__init__(params, dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            maximize=maximize, decoupled_weight_decay=decoupled_weight_decay,
            state_bits=state_bits, seed=seed, min_8bit_size=min_8bit_size))


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
                 maximize: bool = False, state_bits: int = 32, seed: int = 0,
                 min_8bit_size: int = 4096) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, state_bits=state_bits, seed=seed,
                         min_8bit_size=min_8bit_size)


class Adam8bit(Adam):
    """:class:`Adam` with 8-bit block-quantized state (``state_bits=8``), as bitsandbytes
    names it: about 2 bytes of state per parameter instead of 8."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 maximize: bool = False, decoupled_weight_decay: bool = False, seed: int = 0,
                 min_8bit_size: int = 4096) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=decoupled_weight_decay, state_bits=8,
                         seed=seed, min_8bit_size=min_8bit_size)


class AdamW8bit(AdamW):
    """:class:`AdamW` with 8-bit block-quantized state (``state_bits=8``)."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, seed: int = 0, min_8bit_size: int = 4096) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         state_bits=8, seed=seed, min_8bit_size=min_8bit_size)
