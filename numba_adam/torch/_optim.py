"""``torch.optim.Optimizer`` subclasses whose step is numba_adam's fused kernel."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.optim.optimizer as torch_optimizer

from ..optim import Adam as _CoreAdam
from ._first_steps import FirstSteps, fill_unstepped
from ._flat import (HALF, MASTER_KEY, FlatGroup, check_gradients, check_tensor,
                    checked_masters)

# the group keys the engine reads (torch's names, plus numba_adam's state options)
CORE_KEYS = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize",
             "decoupled_weight_decay", "state_bits", "seed", "min_8bit_size")
# torch options numba_adam has no use for: which of them must stay off, and why
UNSUPPORTED = {"capturable": "CUDA graph capture", "differentiable": "autograd through step()"}


# torch's registries of step hooks for every optimizer (module-level dicts, never rebound)
_GLOBAL_STEP_HOOKS = (getattr(torch_optimizer, "_global_optimizer_pre_hooks", None),
                      getattr(torch_optimizer, "_global_optimizer_post_hooks", None))
_HOOKS_FOUND = None not in _GLOBAL_STEP_HOOKS


def _watched(optimizer: torch.optim.Optimizer) -> bool:
    """Whether anything observes this step: the profiler, or a step hook (global or the
    optimizer's own).  Where torch keeps hooks elsewhere than we look: True, always."""
    pre = getattr(optimizer, "_optimizer_step_pre_hooks", None)
    post = getattr(optimizer, "_optimizer_step_post_hooks", None)
    if not _HOOKS_FOUND or pre is None or post is None:
        return True
    return bool(pre or post or _GLOBAL_STEP_HOOKS[0] or _GLOBAL_STEP_HOOKS[1]) \
        or torch.autograd._profiler_enabled()


def _observable_step(step: Callable) -> Callable:
    """``step`` behind torch's own step wrapper (a profiler range, the step hooks) when
    something observes it, and called directly otherwise: measured on the 2-core test
    machine, the wrapper costs 6 us of a 16-parameter step and 35-60 us of a
    1e6-parameter one (whose 20 MB leave Python's own data out of the caches), a tenth
    of that step.  Marked ``hooked`` so that ``torch.optim.Optimizer`` does not wrap
    it again."""
    wrapped = torch.optim.Optimizer.profile_hook_step(step)

    @functools.wraps(step)
    def observable_step(self, *args, **kwargs):
        if _watched(self):
            return wrapped(self, *args, **kwargs)
        return step(self, *args, **kwargs)

    observable_step.hooked = True
    return observable_step


def _number(value: Any) -> Any:
    """A tensor scalar as a Python float; anything else unchanged."""
    return float(value) if isinstance(value, torch.Tensor) else value


def _host(value: Any) -> Any:
    """A saved state value the engine's checks can read: tensors as NumPy arrays (half
    precision moments, as torch keeps them for bfloat16 parameters, widened to float32)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return (value.float() if value.dtype in HALF else value).numpy()
    return value


def _check_supported(group: Mapping[str, Any], where: str) -> None:
    for key, what in UNSUPPORTED.items():
        if group.get(key):
            raise ValueError(f"{where}: {key}=True ({what}) is not supported by "
                             f"numba_adam.torch; leave it False")


def core_values(group: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's hyperparameters of a torch group (tensor lr or betas as Python floats;
    betas as a new tuple, so that an edit of a list in place shows as a change).  Each
    step compares these with the last ones synced, so this is kept cheap."""
    values = {k: group[k] for k in CORE_KEYS}
    values["lr"] = _number(values["lr"])
    betas = values["betas"]
    if isinstance(betas, (tuple, list)):
        values["betas"] = tuple(map(_number, betas))
    return values


class _StateView(Mapping):
    """``optimizer.state``: param -> {"step", "exp_avg", "exp_avg_sq"[, "max_exp_avg_sq"]},
    read from the engine (32-bit state: live views; 16-/8-bit state: decoded copies)."""

    def __init__(self, index_of: Callable[[Any], int | None],
                 entry_of: Callable[[int], dict], params: Callable[[], list]) -> None:
        self._index_of, self._entry_of, self._params = index_of, entry_of, params

    def __getitem__(self, param: Any) -> dict:
        index = self._index_of(param)
        if index is None:
            raise KeyError(param)
        return self._entry_of(index)      # {} before the parameter's first step, as in torch

    def __contains__(self, param: object) -> bool:
        index = self._index_of(param)
        return index is not None and bool(self._entry_of(index))

    def __iter__(self) -> Iterator:
        return (p for i, p in enumerate(self._params()) if self._entry_of(i))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Adam(torch.optim.Optimizer):
    r"""``torch.optim.Adam`` over CPU tensors, stepped by one fused numba_adam launch.

    The arguments are torch's, with its defaults, plus numba_adam's state options.
    When built, the optimizer moves every parameter into flat storage it shares with
    the model (``param.data`` becomes a slice of it; the values are unchanged), so
    a step is one kernel launch over all parameters with no per-tensor Python work
    when the gradients are already slices of the flat gradient storage
    (``zero_grad(set_to_none=False)``).  Gradients autograd leaves as fresh tensors
    (after ``zero_grad()``, torch's default) are read where they are, without a copy.

    bfloat16/float16 parameters keep float32 master weights in the optimizer: the
    update is computed in float32 and rounded into the parameters after each step.

    Args:
        params: ``model.parameters()``, named parameters, or group dicts.
        lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay:
            as in ``torch.optim.Adam`` (``lr`` and ``betas`` may be tensors).
        foreach, fused: accepted for compatibility; the step is always fused.
        capturable, differentiable: must be False.
        state_bits: 32, 16 (bfloat16, stochastic rounding) or 8 (block-quantized).
        seed: the key of 16-bit state's rounding.
        min_8bit_size: tensors smaller than this keep 32-bit state with ``state_bits=8``.

    Parameters that have had no gradient yet (frozen ones) are skipped and keep no
    state, as in torch.  Each group keeps one step count where torch counts each
    parameter's own steps, so two cases raise instead of counting apart: a
    parameter that had a gradient before and has none now, and one whose first
    gradient comes after its group's first step (add parameters you unfreeze with
    ``add_param_group`` when you unfreeze them).

    Raises:
        TypeError/ValueError: a CUDA, sparse, complex or non-leaf tensor, parameters
            of several dtypes, a parameter listed twice, or an invalid hyperparameter;
            the tensors are left as they were.

    Example:
        >>> import torch
        >>> from numba_adam.torch import Adam
        >>> w = torch.nn.Parameter(torch.zeros(3))
        >>> opt = Adam([w], lr=0.1)
        >>> w.grad = torch.tensor([1.0, -1.0, 0.0])
        >>> opt.step()
        >>> [round(x, 4) for x in w.tolist()]
        [-0.1, 0.1, 0.0]
    """

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False, state_bits: int = 32, seed: int = 0,
                 min_8bit_size: int = 4096) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay, state_bits=state_bits,
                        seed=seed, min_8bit_size=min_8bit_size)
        _check_supported(defaults, type(self).__name__)
        self._core: _CoreAdam | None = None
        self._flats: list[FlatGroup] = []
        self._first_steps = FirstSteps()
        super().__init__(params, defaults)
        # groups are checked as torch adds them; the flat storage is built for all at once
        flats = [self._flatten(g, gi) for gi, g in enumerate(self.param_groups)]
        self._check_one_dtype(flats)
        self._core = _CoreAdam([{"params": f.buffer, **core_values(g)}
                                for f, g in zip(flats, self.param_groups)],
                               **core_values(defaults))
        self._commit(flats)
        self.state = _StateView(lambda p: self._index.get(id(p)), self._state_entry,
                                lambda: self._params)

    # -- building -------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (``torch.optim.Optimizer.add_param_group``); its parameters move into
        flat storage of their own.  A refused group leaves the optimizer unchanged."""
        super().add_param_group(param_group)
        group, gi = self.param_groups[-1], len(self.param_groups) - 1
        try:
            self._check_group(group, gi)
            if self._core is not None:
                flat = self._flatten(group, gi)
                self._check_one_dtype(self._flats + [flat])
                self._core.add_param_group({"params": flat.buffer, **core_values(group)})
                self._commit([flat])
        except Exception:
            self.param_groups.pop()
            raise

    def _check_group(self, group: Mapping[str, Any], gi: int) -> None:
        _check_supported(group, f"param_groups[{gi}]")
        seen = {id(p) for g in self.param_groups[:gi] for p in g["params"]}
        for p, label in zip(group["params"], self._labels(group, gi)):
            check_tensor(p, label)
            if id(p) in seen:
                raise ValueError(f"{label} is listed twice; a parameter may appear only once "
                                 f"across all groups")
            seen.add(id(p))

    @staticmethod
    def _labels(group: Mapping[str, Any], gi: int) -> list[str]:
        names = group.get("param_names")
        return [repr(names[j]) if names else f"param_groups[{gi}]['params'][{j}]"
                for j in range(len(group["params"]))]

    def _flatten(self, group: Mapping[str, Any], gi: int) -> FlatGroup:
        if not group["params"]:
            raise ValueError(f"param_groups[{gi}] has no parameters")
        return FlatGroup(group["params"], self._labels(group, gi), gi)

    @staticmethod
    def _check_one_dtype(flats: list[FlatGroup]) -> None:
        for f in flats:
            for p, label in zip(f.params, f.labels):
                if p.dtype != flats[0].params[0].dtype:
                    raise TypeError(f"{label} has dtype {p.dtype} but earlier parameters are "
                                    f"{flats[0].params[0].dtype}; use one optimizer per dtype")

    def _commit(self, flats: list[FlatGroup]) -> None:
        """Point the new groups' tensors at the flat storage (nothing can fail from here)."""
        for f in flats:
            f.attach()
        self._flats.extend(flats)
        self._params = [p for f in self._flats for p in f.params]
        self._index = {id(p): i for i, p in enumerate(self._params)}
        self._where = [(f, j) for f in self._flats for j in range(len(f.params))]
        self._synced = [core_values(g) for g in self.param_groups]
        self._param_labels = [f.labels[j] for f, j in self._where]
        self._group_of = [gi for gi, f in enumerate(self._flats) for _ in f.params]
        self._first_steps.add(len(self._params) - len(self._first_steps.stepped))

    # -- stepping -------------------------------------------------------------
    @_observable_step
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adam update of every parameter; returns ``closure()``'s loss, if given.

        Raises:
            ValueError/TypeError: an invalid hyperparameter in ``param_groups``, a sparse
                gradient, or a gradient missing or first present where torch would count
                that parameter's steps apart (see the class); nothing is changed.
        """
        # No grad mode is set for the whole step (torch.no_grad() as a decorator cost 16 us
        # per step): the engine writes through NumPy, which autograd does not record, and
        # the few torch copies (half precision, fresh half gradients) set it themselves.
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._sync_hyperparameters()
        flats = self._flats
        grads = [f.gradients() for f in flats]
        if all(f.in_place(g) for f, g in zip(flats, grads)):
            if not self._first_steps.every:
                self._check_first_steps(set())
            for f in flats:                  # the fast path: gradients in the flat storage
                f.before_step()
            self._core.step()
            missing: list[int] = []
        else:
            missing = [i for i, x in enumerate(x for g in grads for x in g) if x is None]
            if len(missing) == len(self._params):
                return loss                  # no gradient at all: torch steps nothing
            arrays = self._gradient_arrays(grads, missing)
            self._core.step(arrays)
        for f in flats:
            f.after_step()
        if not self._first_steps.every:
            self._first_steps.mark(missing)
        return loss

    def _check_first_steps(self, missing: set[int]) -> None:
        counts = [g.updates for g in self._core.param_groups]
        self._first_steps.check(missing, self._param_labels, self._group_of, counts)

    def _sync_hyperparameters(self) -> None:
        """Pass edits of ``param_groups`` (an lr scheduler's, say) to the engine."""
        core_groups = None
        for gi, group in enumerate(self.param_groups):
            values = core_values(group)
            if values == self._synced[gi]:
                continue
            _check_supported(group, f"param_groups[{gi}]")
            core_groups = core_groups or self._core.param_groups
            try:
                core_groups[gi].update(values)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"param_groups[{gi}]: {exc}") from None
            self._synced[gi] = values

    def _gradient_arrays(self, grads: list[list], missing: list[int]) -> list:
        """The arrays to read gradients from, checked (None for the ``missing`` ones, which
        this step skips)."""
        if missing or not self._first_steps.every:
            self._check_first_steps(set(missing))
        for f, g in zip(self._flats, grads):
            check_gradients(g, f.labels)
        return [a for f, g in zip(self._flats, grads) for a in f.gradient_arrays(g)]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients: to None (default, as in torch), or to zeros in the flat
        storage, so the next ``backward()`` accumulates in place and ``step()`` reads it
        without a copy."""
        for f in self._flats:
            f.zero_grad(set_to_none)

    # -- state ----------------------------------------------------------------
    def _state_entry(self, index: int) -> dict[str, Any]:
        """``self.state[param]`` of the parameter at ``index`` (group order)."""
        step = self._core.param_groups[self._group_of[index]].updates
        if step == 0 or not self._first_steps.stepped[index]:
            return {}
        if self._core.tensor_state_bits(index) == 32:
            arrays = self._core.state_views(index)            # live: writes reach the engine
        else:
            arrays = self._core.tensor_state(index)           # decoded copies
        entry = {"step": torch.tensor(float(step))}
        entry.update((k, torch.from_numpy(x)) for k, x in arrays._asdict().items()
                     if x is not None)
        return entry

    def state_dict(self, dequantize: bool = False) -> dict[str, Any]:
        """The state in ``torch.optim.Adam``'s layout (tensors are copies).

        32-bit state loads into ``torch.optim.Adam`` and back.  16-/8-bit state is
        stored losslessly as codes (and 8-bit block scales), named as in torch;
        ``dequantize=True`` gives float32 moments instead.  With master weights,
        each entry adds ``master_param`` (float32).
        """
        for hook in self._optimizer_state_dict_pre_hooks.values():
            hook(self)
        core = self._core.state_dict(dequantize=dequantize)
        state = {}
        for i, entry in core["state"].items():
            if not self._first_steps.stepped[i]:
                continue                       # frozen so far: torch keeps no state for it
            out = {"step": torch.tensor(float(entry["step"]))}
            out.update((k, torch.from_numpy(v)) for k, v in entry.items() if k != "step")
            f, j = self._where[i]
            if f.master:
                out[MASTER_KEY] = torch.from_numpy(f.master_weights(j))
            state[i] = out
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": c["params"]}
                  for g, c in zip(self.param_groups, core["param_groups"])]
        result = {"state": state, "param_groups": groups}
        for hook in self._optimizer_state_dict_post_hooks.values():
            result = hook(self, result) or result
        return result

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a state_dict of this optimizer or of ``torch.optim.Adam``/``AdamW``.

        Everything is checked before anything changes (groups, parameter counts,
        shapes, hyperparameters, master weights); a state_dict of another optimizer
        (SGD's ``momentum``, say) is refused.  Without ``master_param`` entries, master
        weights are taken from the parameters.
        """
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            state_dict = hook(self, state_dict) or state_dict
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(
                state_dict):
            raise ValueError("state_dict must be a dict with 'state' and 'param_groups' entries")
        saved_groups = list(state_dict["param_groups"])
        for gi, saved in enumerate(saved_groups):
            if isinstance(saved, Mapping):
                _check_supported(saved, f"state_dict group {gi}")
        saved_state = state_dict["state"]
        core_state = saved_state
        if isinstance(saved_state, Mapping):
            core_state = {pid: ({k: _host(v) for k, v in e.items() if k != MASTER_KEY}
                                if isinstance(e, Mapping) else e)
                          for pid, e in saved_state.items()}
        masters = checked_masters(self._flats, saved_groups, saved_state)
        stepped = fill_unstepped(self._flats, saved_groups, core_state)
        self._core.load_state_dict({
            "state": core_state,
            "param_groups": [{k: v for k, v in g.items() if k != "param_names"}
                             if isinstance(g, Mapping) else g for g in saved_groups]})
        if stepped is not None:
            self._first_steps.load(stepped)
        for group, saved in zip(self.param_groups, saved_groups):
            group.update((k, v) for k, v in saved.items() if k not in ("params", "param_names"))
        self._synced = [core_values(g) for g in self.param_groups]
        for f in self._flats:
            if f.master:
                f.set_master_weights(masters.get(id(f), [None] * len(f.params)))
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)

    def __reduce_ex__(self, protocol: int):
        raise TypeError(f"numba_adam.torch.{type(self).__name__} cannot be copied or pickled "
                        f"(it shares storage with the model); save state_dict() instead")


class AdamW(Adam):
    """``torch.optim.AdamW`` (decoupled weight decay, default 1e-2) on the same engine."""

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None, state_bits: int = 32,
                 seed: int = 0, min_8bit_size: int = 4096) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True, state_bits=state_bits,
                         seed=seed, min_8bit_size=min_8bit_size)


class Adam8bit(Adam):
    """:class:`Adam` with 8-bit block-quantized state (about 2 bytes per parameter)."""

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False, seed: int = 0,
                 min_8bit_size: int = 4096) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=decoupled_weight_decay, state_bits=8,
                         seed=seed, min_8bit_size=min_8bit_size)


class AdamW8bit(AdamW):
    """:class:`AdamW` with 8-bit block-quantized state."""

    def __init__(self, params: Any, lr: float | torch.Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 seed: int = 0, min_8bit_size: int = 4096) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         state_bits=8, seed=seed, min_8bit_size=min_8bit_size)
