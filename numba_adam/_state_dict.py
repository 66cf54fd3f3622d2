"""The torch-layout ``state_dict``: export, check and the checked result to apply.

Shared by ``Optimizer.state_dict``/``load_state_dict`` and by checkpoints
(a checkpoint file holds the same logical state).  :func:`check` validates a
whole state_dict and converts every array before the optimizer changes
anything, so a refused state_dict leaves the optimizer as it was.
"""

from __future__ import annotations

import math
import mmap
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import _codes
from ._state import CompactTensorState, TensorState
from .schedules import Schedule, from_config as schedule_from_config

# Group keys torch writes into its state_dict that have no meaning here.
TORCH_ONLY_KEYS = frozenset({"foreach", "fused", "capturable", "differentiable", "initial_lr"})
STATE_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


class Checked(NamedTuple):
    """A state_dict checked against an optimizer: what ``load_state_dict`` applies."""

    group_values: list[dict[str, Any]]     # hyperparameters per group (lr may be a schedule)
    steps: list[int]                       # completed updates per group
    states: dict[int, TensorState | CompactTensorState]   # tensor index -> its state: floats
                                           # in the optimizer's dtype, or codes and scales


def export(groups: Sequence[Mapping[str, Any]], steps: Sequence[int], names: Sequence[Any],
           schedules: Sequence[Any], read_state: Callable[[int], dict[str, Any]]) -> dict:
    """A torch-layout state_dict: ``{"state": {i: {...}}, "param_groups": [...]}``.

    ``read_state(i)`` gives tensor i's entries (``exp_avg`` ..., and the
    ``*_absmax`` scales of 8-bit state)."""
    state: dict[int, dict[str, Any]] = {}
    saved_groups = []
    start = 0
    for group, step, schedule in zip(groups, steps, schedules):
        indices = list(range(start, start + len(group["params"])))
        start += len(indices)
        if step > 0:
            for i in indices:
                state[i] = {"step": step, **read_state(i)}
        saved = {k: v for k, v in group.items() if k != "params"}
        if schedule is not None:
            saved["lr_schedule"] = (schedule.get_config() if isinstance(schedule, Schedule)
                                    else schedule)
        saved["params"] = indices
        group_names = [names[i] for i in indices]
        if any(n is not None for n in group_names):
            saved["param_names"] = group_names
        saved_groups.append(saved)
    return {"state": state, "param_groups": saved_groups}


def _to_numpy(value: Any) -> Any:
    """NumPy array from an array, scalar or PyTorch tensor."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return value


def step_count(value: Any, where: str) -> int:
    """A saved step count as an int: integral, finite and >= 0 (torch saves a float tensor)."""
    value = _to_numpy(value)
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"{where} must be a single number, got an array of shape "
                             f"{value.shape}")
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where} must be a whole number, got {value!r}")
    if isinstance(value, numbers.Integral):
        count = int(value)
    else:
        value = float(value)
        if not math.isfinite(value) or value != math.floor(value) or abs(value) > 2 ** 53:
            raise ValueError(f"{where} must be a whole number, got {value!r}")
        count = int(value)
    if count < 0:
        raise ValueError(f"{where} must be >= 0, got {count}")
    return count


def state_array(value: Any, where: str, shape: tuple, dtype: np.dtype,
                nonnegative: bool = False) -> np.ndarray:
    """A saved moment as an array of the optimizer's dtype: kind, shape and finiteness
    checked (``nonnegative`` for second moments), no silent casts; a copy unless the
    source is an immutable checkpoint file."""
    array = np.asarray(_to_numpy(value))
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{where} must be a real numeric array, got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"{where} has shape {array.shape}, the parameter has shape {shape}")
    array = array.astype(dtype, copy=not _immutable(array))
    if array.size:
        low, high = array.min(), array.max()   # either is NaN if any value is
        if not (np.isfinite(low) and np.isfinite(high) and (low >= 0 or not nonnegative)):
            raise ValueError(f"{where} must be finite{' and >= 0' if nonnegative else ''}, "
                             f"got values in [{low}, {high}]")
    return array


def compact_state(entry: Mapping[str, Any], keys: Sequence[str], where: str, shape: tuple,
                  bits: int) -> CompactTensorState:
    """A saved 16- or 8-bit state (codes, and 8-bit scales), checked: dtypes, sizes, codes in
    range, scales finite and >= 0, second moments >= 0."""
    n = int(np.prod(shape, dtype=np.int64))
    kind = np.uint16 if bits == 16 else np.uint8
    codes, scales = [], []
    for key in keys:
        array = np.asarray(_to_numpy(entry[key]))
        if array.dtype != kind:
            raise TypeError(f"{where}[{key!r}] must be {np.dtype(kind)} codes like "
                            f"'exp_avg', got dtype {array.dtype}")
        if array.size != n or array.shape not in ((n,), tuple(shape)):
            raise ValueError(f"{where}[{key!r}] has shape {array.shape}, expected ({n},) "
                             f"codes for a parameter of shape {shape}")
        array = array.reshape(n)
        if bits == 16:
            values = _codes.bf16_to_float(array)
            bad = ~np.isfinite(values) | ((values < 0) if key != "exp_avg" else False)
            if bad.any():
                raise ValueError(f"{where}[{key!r}] holds non-finite"
                                 f"{'' if key == 'exp_avg' else ' or negative'} bfloat16 "
                                 f"values (first at element {int(np.argmax(bad))})")
        else:
            top = (array & 0x7F if key == "exp_avg" else array).max(initial=0)
            limit = _codes.M8_MAX if key == "exp_avg" else _codes.V8_MAX
            if top > limit:
                raise ValueError(f"{where}[{key!r}] holds 8-bit code {int(top)}, above the "
                                 f"largest valid code {limit}")
            scale = np.asarray(_to_numpy(entry.get(f"{key}_absmax")))
            if scale.dtype.kind != "f" or scale.shape != (_codes.blocks(n),):
                raise ValueError(f"{where}[{key + '_absmax'!r}] must be {_codes.blocks(n)} "
                                 f"float scales (one per 256 codes), got "
                                 f"{scale.dtype}{scale.shape}")
            scale = scale.astype(np.float32)
            if scale.size and not (np.isfinite(scale).all() and scale.min() >= 0):
                raise ValueError(f"{where}[{key + '_absmax'!r}] must be finite and >= 0")
            scales.append(scale)
        codes.append(array.copy())
    codes += [None] * (3 - len(codes))
    scales += [None] * (3 - len(scales))
    return CompactTensorState(bits, *codes, *(scales if bits == 8 else [None] * 3))


def _immutable(array: np.ndarray) -> bool:
    """True for a read-only view of a read-only memory map (a checkpoint file's arrays):
    nothing in this process can change it, so it needs no defensive copy."""
    root = array
    while isinstance(root, np.ndarray) and root.base is not None:
        if root.flags.writeable:
            return False
        root = root.base
    if isinstance(root, memoryview):
        root = root.obj if root.readonly else None
    return isinstance(root, mmap.mmap)


def _group_value(key: str, value: Any) -> Any:
    if key == "betas" and isinstance(value, (list, tuple)):
        return tuple(_to_numpy(b).item() if hasattr(_to_numpy(b), "item") else b for b in value)
    value = _to_numpy(value)
    return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


def check(state_dict: Any, groups: Sequence[Mapping[str, Any]], names: Sequence[Any],
          shapes: Sequence[tuple], dtype: np.dtype, known_keys: Callable[[int], set],
          check_value: Callable[[str, Any], Any]) -> Checked:
    """Check ``state_dict`` against an optimizer's groups, names and shapes; convert it.

    ``known_keys(gi)`` are the keys group ``gi`` may set; ``check_value``
    validates one hyperparameter.

    Raises:
        ValueError/TypeError: naming the group, tensor and entry at fault.
    """
    if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
        raise ValueError("state_dict must be a dict with 'state' and 'param_groups' entries")
    saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
    if not isinstance(saved_state, Mapping):
        raise TypeError(f"state_dict['state'] must be a dict, got {type(saved_state).__name__}")
    if isinstance(saved_groups, (str, bytes, Mapping)) or not isinstance(saved_groups, Sequence):
        raise TypeError(f"state_dict['param_groups'] must be a list of dicts, got "
                        f"{type(saved_groups).__name__}")
    if len(saved_groups) != len(groups):
        raise ValueError(f"state_dict has {len(saved_groups)} parameter groups, this "
                         f"optimizer has {len(groups)}")
    values_out, steps_out, states = [], [], {}
    start = 0
    for gi, (saved, group) in enumerate(zip(saved_groups, groups)):
        indices = range(start, start + len(group["params"]))
        start += len(indices)
        if not isinstance(saved, Mapping):
            raise TypeError(f"state_dict group {gi} must be a dict, got {type(saved).__name__}")
        values = _check_group_values(saved, gi, known_keys(gi), check_value)
        saved_ids = list(saved.get("params", []))
        if len(saved_ids) != len(indices):
            raise ValueError(f"state_dict group {gi} has {len(saved_ids)} parameters, this "
                             f"optimizer's group {gi} has {len(indices)}")
        _check_names(saved, [names[i] for i in indices], gi)
        amsgrad = values.get("amsgrad", group.get("amsgrad", False))
        step = _check_group_state(saved_state, saved_ids, indices, gi, amsgrad, shapes, dtype,
                                  states)
        values_out.append(values)
        steps_out.append(step)
    return Checked(values_out, steps_out, states)


def _check_group_state(saved_state: Mapping, saved_ids: list, indices: range, gi: int,
                       amsgrad: bool, shapes: Sequence[tuple], dtype: np.dtype,
                       states: dict[int, TensorState]) -> int:
    """Check and convert one group's per-tensor state into ``states``; returns its step count."""
    present = [pid in saved_state for pid in saved_ids]
    if any(present) and not all(present):
        raise ValueError(f"state_dict group {gi} has state for some parameters but not others")
    if not (present and all(present)):
        return 0
    steps = set()
    keys = STATE_KEYS if amsgrad else STATE_KEYS[:2]
    for pid, i in zip(saved_ids, indices):
        entry = saved_state[pid]
        if not isinstance(entry, Mapping) or "step" not in entry:
            raise ValueError(f"state_dict state[{pid!r}] must be a dict with a 'step'")
        steps.add(step_count(entry["step"], f"state_dict state[{pid!r}]['step']"))
        missing = [key for key in keys if key not in entry]
        if missing:
            raise ValueError(f"state_dict state[{pid!r}] has no {missing[0]!r}")
        codes = np.asarray(_to_numpy(entry["exp_avg"])).dtype
        if codes in (np.dtype(np.uint16), np.dtype(np.uint8)):
            states[i] = compact_state(entry, keys, f"state_dict state[{pid!r}]", shapes[i],
                                      16 if codes == np.uint16 else 8)
            continue
        states[i] = TensorState(*(state_array(entry[key], f"state_dict state[{pid!r}][{key!r}]",
                                              shapes[i], dtype, nonnegative=key != "exp_avg")
                                  for key in keys))
    if len(steps) != 1:
        raise ValueError(f"state_dict group {gi} has parameters at different step counts "
                         f"{sorted(steps)}; numba_adam steps a group together")
    return steps.pop()


def _check_names(saved: Mapping[str, Any], ours: list, gi: int) -> None:
    for j, (theirs, mine) in enumerate(zip(saved.get("param_names") or [], ours)):
        if theirs is not None and mine is not None and theirs != mine:
            raise ValueError(f"state_dict group {gi} parameter {j} is {theirs!r}, this "
                             f"optimizer's is {mine!r}")


def _check_group_values(saved: Mapping[str, Any], gi: int, known: set,
                        check_value: Callable[[str, Any], Any]) -> dict[str, Any]:
    values = {}
    schedule = saved.get("lr_schedule")
    for key, value in saved.items():
        if key in ("params", "param_names", "lr_schedule") or key in TORCH_ONLY_KEYS:
            continue
        if key == "lr" and schedule is not None:
            continue   # the schedule decides the value
        if key not in known:
            raise ValueError(f"state_dict group {gi} has unknown key {key!r}")
        try:
            values[key] = check_value(key, _group_value(key, value))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"state_dict group {gi}: {exc}") from None
    if schedule is not None:
        if callable(schedule):
            values["lr"] = schedule
        else:
            try:
                values["lr"] = schedule_from_config(schedule)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"state_dict group {gi} lr_schedule: {exc}") from None
    return values
