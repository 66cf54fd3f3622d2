"""Which parameters of a ``numba_adam.torch`` optimizer have had a step.

torch skips a parameter whose gradient is None, keeps no state for it until its first
step, and counts each parameter's steps on its own; the engine counts each group's.  So
parameters with no gradient yet (frozen ones) are skipped as in torch, and the two cases
where torch's per-parameter count would part from the group's raise instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._flat import FlatGroup, saved_param_ids

MOMENT_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


class FirstSteps:
    """Per parameter (group order): whether it has had a step."""

    def __init__(self) -> None:
        self.stepped: list[bool] = []
        self.every = True            # every parameter has had a step: nothing to check

    def add(self, count: int) -> None:
        """``count`` new parameters, none stepped yet."""
        self.stepped += [False] * count
        self.every = all(self.stepped)

    def check(self, missing: set[int], labels: Sequence[str], groups: Sequence[int],
              counts: Sequence[int]) -> None:
        """Raise for a parameter torch would count apart from its group (``groups[i]``,
        whose completed steps are ``counts[group]``): one that had a gradient before and
        has none now (index in ``missing``), or one with its first gradient after its
        group's first step."""
        for i, stepped in enumerate(self.stepped):
            if i in missing and stepped:
                raise ValueError(
                    f"{labels[i]} has no gradient this step but had one before; torch "
                    f"would skip it and count its steps apart from its group's, "
                    f"numba_adam.torch counts a group's steps together. Give parameters "
                    f"that are trained only some steps an optimizer of their own")
            done = counts[groups[i]]
            if i not in missing and not stepped and done > 0:
                raise ValueError(
                    f"{labels[i]} has its first gradient at step {done + 1} of its group; "
                    f"torch would count its steps from 1, numba_adam.torch counts a "
                    f"group's steps together. Add parameters you unfreeze with "
                    f"add_param_group when you unfreeze them")

    def mark(self, missing: Sequence[int]) -> None:
        """A step happened for every parameter but the ``missing`` ones."""
        skipped = set(missing)
        self.stepped = [s or i not in skipped for i, s in enumerate(self.stepped)]
        self.every = all(self.stepped)

    def load(self, stepped: list[bool]) -> None:
        self.stepped = list(stepped)
        self.every = all(self.stepped)


def fill_unstepped(flats: Sequence[FlatGroup], saved_groups: list,
                   core_state: Any) -> list[bool] | None:
    """Which parameters have state in a saved state_dict (torch saves none for a frozen
    one).  A group with state for some parameters only gets zero moments at the same step
    for the others, in ``core_state`` (edited in place), so that the engine loads it.
    None where the layout does not match (the engine's check then names the problem)."""
    if not isinstance(core_state, dict) or len(saved_groups) != len(flats):
        return None
    stepped: list[bool] = []
    for f, saved in zip(flats, saved_groups):
        ids = saved_param_ids(saved, f)
        if ids is None:
            return None
        present = [pid in core_state for pid in ids]
        stepped += present
        if not any(present) or all(present):
            continue
        known = next(core_state[pid] for pid in ids if pid in core_state)
        if not isinstance(known, Mapping) or "step" not in known:
            return None
        keys = [k for k in MOMENT_KEYS if k in known]
        for pid, p, here in zip(ids, f.params, present):
            if not here:
                core_state[pid] = {"step": known["step"], **{
                    k: np.zeros(tuple(p.shape), f.buffer.data.dtype) for k in keys}}
    return stepped
