"""Where everything lives: tensor specs, the flat state layout and the launch tables."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._codes import BLOCK
from ._config import (
    GROUP, INDEX_BASE, ITEM_COLUMNS, STATE_BITS, STATE_CHUNK, STATE_OFFSET, TENSOR_COLUMNS,
    V_OFFSET, VMAX_OFFSET, WORK_ITEM_ELEMENTS,
)


class TensorSpec(NamedTuple):
    """One parameter as the engine sees it."""

    array: Any                  # a NumPy array or a numba device array, updated in place
    group: int
    owner: Any                  # the ParamBuffer whose data holds the array, or None
    label: str                  # "params[3]" or the parameter's name, for messages
    # When the array is a piece of a larger tensor (one rank's shard, numba_adam.distributed):
    # the global index of its first element (keys 16-bit rounding) and the whole tensor's
    # element count (decides min_8bit_size), so a piece is stored and rounded as in the whole.
    index_base: int = -1
    whole_numel: int = -1


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
    """Element counts, state formats and offsets, and work items of a fixed list of tensors.

    Each tensor's state is stored in one format (``bits[i]``): 32-bit state
    in the flat ``m``/``v`` arrays (every such tensor back to back, each in
    its parameter's memory order) and ``v_max`` (AMSGrad groups only); 16-bit
    state in one uint16 array, 8-bit state in one uint8 array with a float32
    absmax per block, each tensor's m, v and v_max there as consecutive
    regions, an 8-bit region padded to whole blocks so no block straddles
    tensors or moments.  ``state_offsets``, ``v_offsets`` and
    ``vmax_offsets`` (-1: none) index the tensor's format's array.
    """

    def __init__(self, specs: list[TensorSpec], amsgrad_by_group: list[bool],
                 bits_by_group: list[int] | None = None,
                 min_8bit_sizes: list[int] | None = None) -> None:
        self.specs = list(specs)
        self.n_groups = len(amsgrad_by_group)
        bits_by_group = bits_by_group or [32] * self.n_groups
        numels = np.array([int(np.prod(s.array.shape, dtype=np.int64)) for s in specs],
                          dtype=np.int64)
        self.numels = numels
        self.size = int(numels.sum())
        self.shapes = [tuple(s.array.shape) for s in specs]
        self.orders = [memory_order(s.array) for s in specs]
        self.groups = np.array([s.group for s in specs], dtype=np.int64)
        self.index_base = np.concatenate(([0], np.cumsum(numels)))[:-1].astype(np.int64)
        given = [s.index_base >= 0 for s in specs]
        self.index_base[given] = [s.index_base for s in specs if s.index_base >= 0]
        whole = [s.whole_numel if s.whole_numel >= 0 else int(n) for s, n in zip(specs, numels)]
        min_8bit_sizes = min_8bit_sizes or [4096] * self.n_groups
        self.bits = [32 if bits_by_group[s.group] == 8 and n < min_8bit_sizes[s.group]
                     else bits_by_group[s.group] for s, n in zip(specs, whole)]
        self.amsgrad = [bool(amsgrad_by_group[s.group]) for s in specs]
        self.state_offsets = np.zeros(len(specs), np.int64)
        self.v_offsets = np.zeros(len(specs), np.int64)
        self.vmax_offsets = np.full(len(specs), -1, np.int64)
        ends = {32: 0, 16: 0, 8: 0}
        vmax_end = 0
        for i, (b, n) in enumerate(zip(self.bits, numels)):
            n = int(n)
            if b == 32:     # m and v share offsets; v_max is its own array
                self.state_offsets[i] = self.v_offsets[i] = ends[32]
                ends[32] += n
                if self.amsgrad[i]:
                    self.vmax_offsets[i] = vmax_end
                    vmax_end += n
                continue
            region = -(-n // BLOCK) * BLOCK if b == 8 else n
            at = ends[b]
            self.state_offsets[i], self.v_offsets[i] = at, at + region
            if self.amsgrad[i]:
                self.vmax_offsets[i] = at + 2 * region
            ends[b] = at + (3 if self.amsgrad[i] else 2) * region
        self.dense_size, self.vmax_size = ends[32], vmax_end
        self.codes16_size, self.codes8_size = ends[16], ends[8]
        self.items = split_items(numels)

    def __len__(self) -> int:
        return len(self.specs)

    def tensor_table(self) -> np.ndarray:
        """The tensor table with offsets and groups filled; backends fill PARAM_AT/GRAD_AT."""
        table = np.zeros((len(self.specs), TENSOR_COLUMNS), dtype=np.int64)
        table[:, STATE_OFFSET] = self.state_offsets
        table[:, V_OFFSET] = self.v_offsets
        table[:, VMAX_OFFSET] = self.vmax_offsets
        table[:, GROUP] = self.groups
        table[:, STATE_BITS] = self.bits
        table[:, INDEX_BASE] = self.index_base
        return table


def touched_chunks(rows: np.ndarray, cols: int) -> np.ndarray:
    """The state chunks that hold any element of ``rows`` (sorted, distinct)."""
    first = rows * cols // STATE_CHUNK
    last = ((rows + 1) * cols - 1) // STATE_CHUNK
    counts = (last - first + 1) if cols else np.zeros_like(rows)
    spans = np.repeat(first, counts) + (np.arange(counts.sum()) - np.repeat(
        np.cumsum(counts) - counts, counts))
    return np.unique(spans).astype(np.int64)
