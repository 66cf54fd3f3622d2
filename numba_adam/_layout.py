"""Where everything lives: tensor specs, the flat state layout and the launch tables."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._config import (
    GROUP, ITEM_COLUMNS, STATE_OFFSET, TENSOR_COLUMNS, VMAX_OFFSET,
    WORK_ITEM_ELEMENTS,
)


class TensorSpec(NamedTuple):
    """One parameter as the engine sees it."""

    array: Any                  # a NumPy array or a numba device array, updated in place
    group: int
    owner: Any                  # the ParamBuffer whose data holds the array, or None
    label: str                  # "params[3]" or the parameter's name, for messages


def memory_order(array: Any) -> str:
    """'C' or 'F': the order the flat state follows (strided arrays are staged in C order)."""
    flags = getattr(array, "flags", None)
    return "F" if flags is not None and not flags.c_contiguous and flags.f_contiguous else "C"


def split_items(numels: np.ndarray) -> np.ndarray:
    """Work items (tensor, begin, length) of at most WORK_ITEM_ELEMENTS elements."""
    items = [(t, begin, min(WORK_ITEM_ELEMENTS, int(numel) - begin))
             for t, numel in enumerate(numels)
             for begin in range(0, int(numel), WORK_ITEM_ELEMENTS)]
    return np.array(items, dtype=np.int64).reshape(len(items), ITEM_COLUMNS)


class Layout:
    """Element counts, flat state offsets and work items of a fixed list of tensors.

    m and v hold every tensor back to back in spec order, each in its
    parameter's memory order; v_max holds only the tensors of AMSGrad groups.
    """

    def __init__(self, specs: list[TensorSpec], amsgrad_by_group: list[bool]) -> None:
        self.specs = list(specs)
        self.n_groups = len(amsgrad_by_group)
        numels = np.array([int(np.prod(s.array.shape, dtype=np.int64)) for s in specs],
                          dtype=np.int64)
        self.numels = numels
        self.size = int(numels.sum())
        self.shapes = [tuple(s.array.shape) for s in specs]
        self.orders = [memory_order(s.array) for s in specs]
        self.groups = np.array([s.group for s in specs], dtype=np.int64)
        self.state_offsets = np.concatenate(([0], np.cumsum(numels)))[:-1].astype(np.int64)
        uses_vmax = np.array([amsgrad_by_group[s.group] for s in specs], dtype=bool)
        vmax_sizes = np.where(uses_vmax, numels, 0)
        vmax_starts = np.concatenate(([0], np.cumsum(vmax_sizes)))[:-1].astype(np.int64)
        self.vmax_offsets = np.where(uses_vmax, vmax_starts, -1).astype(np.int64)
        self.vmax_size = int(vmax_sizes.sum())
        self.items = split_items(numels)

    def __len__(self) -> int:
        return len(self.specs)

    def tensor_table(self) -> np.ndarray:
        """The tensor table with offsets and groups filled; backends fill PARAM_AT/GRAD_AT."""
        table = np.zeros((len(self.specs), TENSOR_COLUMNS), dtype=np.int64)
        table[:, STATE_OFFSET] = self.state_offsets
        table[:, VMAX_OFFSET] = self.vmax_offsets
        table[:, GROUP] = self.groups
        return table
