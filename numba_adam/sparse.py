"""Sparse (row-slice) gradients: ``IndexedSlices`` and duplicate-row merging."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IndexedSlices:
    """A gradient that is non-zero only on some rows of a tensor (an embedding lookup's).

    Row ``indices[k]`` of the dense gradient gets ``values[k]``; a row listed
    twice gets the sum (as ``tf.IndexedSlices`` does).  The optimizer updates
    the tensor without ever building the dense gradient.

    Args:
        values: array of shape ``(len(indices),) + dense_shape[1:]``.
        indices: 1-D integer array of row numbers in ``[0, dense_shape[0])``.
        dense_shape: shape of the tensor the rows belong to.

    Example:
        >>> import numpy as np
        >>> g = IndexedSlices(np.ones((3, 2)), np.array([4, 0, 4]), (5, 2))
        >>> rows, summed = g.merged()
        >>> rows.tolist(), summed.tolist()
        ([0, 4], [[1.0, 1.0], [2.0, 2.0]])
    """

    values: np.ndarray
    indices: np.ndarray
    dense_shape: tuple

    def __post_init__(self) -> None:
        values = np.asarray(self.values)
        indices = np.asarray(self.indices)
        shape = tuple(int(s) for s in self.dense_shape)
        if not shape:
            raise ValueError("IndexedSlices needs a dense_shape of at least one dimension")
        if indices.ndim != 1 or not (np.issubdtype(indices.dtype, np.integer) or indices.size == 0):
            raise TypeError(f"IndexedSlices indices must be a 1-D integer array, got "
                            f"{indices.dtype} of shape {indices.shape}")
        if values.shape != (indices.size,) + shape[1:]:
            raise ValueError(f"IndexedSlices values have shape {values.shape}, expected "
                             f"{(indices.size,) + shape[1:]} for {indices.size} indices into "
                             f"{shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= shape[0]):
            bad = indices[(indices < 0) | (indices >= shape[0])][0]
            raise ValueError(f"IndexedSlices index {int(bad)} is out of range for "
                             f"{shape[0]} rows")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "indices", indices.astype(np.int64, copy=False))
        object.__setattr__(self, "dense_shape", shape)

    def merged(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct rows and their summed values (summed in a fixed order)."""
        order = np.argsort(self.indices, kind="stable")
        rows = self.indices[order]
        if rows.size == 0:
            return rows, self.values[:0]
        first = np.empty(rows.size, dtype=bool)
        first[0] = True
        np.not_equal(rows[1:], rows[:-1], out=first[1:])
        summed = self.values[order[first]]
        if not first.all():   # add each repeat to its row's first value, in index order
            repeat = ~first
            np.add.at(summed, (np.cumsum(first) - 1)[repeat], self.values[order[repeat]])
        return rows[first], summed

    def to_dense(self) -> np.ndarray:
        """The dense gradient (for checking; the optimizer never builds it)."""
        dense = np.zeros(self.dense_shape, dtype=self.values.dtype)
        np.add.at(dense, self.indices, self.values)
        return dense
