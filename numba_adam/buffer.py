"""ParamBuffer: every parameter of a model in one flat array, gradients in another."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# id(flat data array) -> ParamBuffer owning it, so optimizers recognise views.
_OWNERS: "weakref.WeakValueDictionary[int, ParamBuffer]" = weakref.WeakValueDictionary()
# ParamBuffers on the GPU, found by address range.
_DEVICE_OWNERS: "weakref.WeakSet[ParamBuffer]" = weakref.WeakSet()


def is_cuda_array(array: Any) -> bool:
    """True for CUDA arrays (``__cuda_array_interface__``, or the CUDA simulator's),
    without importing numba.cuda."""
    if isinstance(array, np.ndarray):
        return False
    module = type(array).__module__
    return hasattr(array, "__cuda_array_interface__") or (
        module.startswith(("numba.cuda.simulator", "numba_cuda.numba.cuda.simulator"))
        and hasattr(array, "copy_to_host"))


def address_of(array: Any) -> int:
    """Address of an array's first element: host, CUDA array interface, or the simulator."""
    if isinstance(array, np.ndarray):
        return array.ctypes.data
    try:
        return array.__cuda_array_interface__["data"][0]
    except AttributeError:
        return array._ary.ctypes.data      # CUDA simulator: a wrapped host array

def check_float_dtype(dtype: Any, what: str) -> np.dtype:
    """Return ``dtype`` as a NumPy dtype if it is float32 or float64, else raise TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{what} must be float32 or float64, got {dtype!r}") from exc
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(f"{what} must be float32 or float64, got {dt}")
    return dt


class ParamBuffer:
    """Named parameters stored in one contiguous 1-D array, gradients in another.

    Values are copied in once; afterwards ``buf[name]`` and ``buf.grads[name]``
    are views into ``buf.data`` and ``buf.grad`` shaped like the originals.  A
    model reads its weights from the views and writes its gradients into the
    grad views; an optimizer given the buffer (or its views) then updates
    every parameter in one kernel launch, without copying.

    Args:
        params: mapping name -> array-like, or an iterable of (name, array)
            pairs.  Any shape (0-d included) and any memory layout; values are
            cast to ``dtype``.
        dtype: float32 (default) or float64.
        device: "cpu" (default) or "cuda": ``data``, ``grad`` and the views
            are then numba-cuda device arrays, updated by the CUDA kernels.

    Raises:
        TypeError: a name is not a string, a value is not numeric, or
            ``dtype`` is not float32/float64.
        ValueError: no parameters, or a name appears twice.

    Example:
        >>> import numpy as np, numba_adam
        >>> buf = numba_adam.ParamBuffer({"w": np.ones((2, 3)), "b": np.zeros(3)})
        >>> buf["w"].shape, buf.size, buf.data.dtype
        ((2, 3), 9, dtype('float32'))
        >>> buf.grads["b"][:] = 1.0; buf.zero_grad(); float(buf.grad.sum())
        0.0
    """

    def __init__(self, params: Mapping[str, Any] | Iterable[tuple[str, Any]],
                 dtype: Any = np.float32, device: str = "cpu") -> None:
        dt = check_float_dtype(dtype, "ParamBuffer dtype")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"ParamBuffer device must be 'cpu' or 'cuda', got {device!r}")
        self.device = device
        pairs = list(params.items() if isinstance(params, Mapping) else params)
        if not pairs:
            raise ValueError("ParamBuffer needs at least one parameter, got none")
        arrays: dict[str, np.ndarray] = {}
        for entry in pairs:
            if not (isinstance(entry, tuple) and len(entry) == 2):
                raise TypeError(f"ParamBuffer expects (name, array) pairs, got {entry!r}")
            name, value = entry
            if not isinstance(name, str):
                raise TypeError(f"parameter names must be strings, got {name!r}")
            if name in arrays:
                raise ValueError(f"parameter name {name!r} appears twice")
            array = value.copy_to_host() if is_cuda_array(value) and hasattr(
                value, "copy_to_host") else np.asarray(value)
            if not (np.issubdtype(array.dtype, np.floating)
                    or np.issubdtype(array.dtype, np.integer)
                    or array.dtype == np.bool_):
                raise TypeError(
                    f"parameter {name!r} must be a real numeric array, got dtype {array.dtype}")
            arrays[name] = array

        self._names = tuple(arrays)
        self._shapes = {name: arrays[name].shape for name in self._names}
        sizes = [int(arrays[name].size) for name in self._names]
        self._offsets = dict(zip(self._names, np.concatenate(([0], np.cumsum(sizes)))[:-1].tolist()))
        total = int(sum(sizes))
        host = np.empty(total, dtype=dt)
        for name, size in zip(self._names, sizes):
            start = self._offsets[name]
            host[start:start + size].reshape(self._shapes[name])[...] = arrays[name]
        if device == "cuda":
            from numba import cuda
            self.data = cuda.to_device(host)
            self.grad = cuda.to_device(np.zeros(total, dtype=dt))
        else:
            self.data, self.grad = host, np.zeros(total, dtype=dt)
        self._views = {}
        self._grad_views = {}
        for name, size in zip(self._names, sizes):
            start = self._offsets[name]
            self._views[name] = self.data[start:start + size].reshape(self._shapes[name])
            self._grad_views[name] = self.grad[start:start + size].reshape(self._shapes[name])
        self._name_by_view = {(address_of(v), v.shape): name for name, v in self._views.items()}
        if device == "cuda":
            _DEVICE_OWNERS.add(self)
        else:
            _OWNERS[id(self.data)] = self

    # Mapping-like access to the parameter views.
    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._views[name]
        except KeyError:
            raise KeyError(f"no parameter named {name!r}; names are {list(self._names)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._views

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def items(self):
        """(name, view) pairs in storage order."""
        return self._views.items()

    def values(self) -> list[np.ndarray]:
        """Parameter views in storage order."""
        return list(self._views.values())

    @property
    def grads(self) -> Mapping[str, np.ndarray]:
        """Mapping name -> gradient view (shaped like the parameter)."""
        return self._grad_views

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._shapes)

    @property
    def offsets(self) -> dict[str, int]:
        """Element offset of each parameter in ``data`` and ``grad``."""
        return dict(self._offsets)

    @property
    def size(self) -> int:
        """Total number of elements."""
        return int(self.data.size)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def name_of(self, array: np.ndarray) -> str | None:
        """The name of the parameter whose view ``array`` is (same memory and shape), else None."""
        return self._name_by_view.get((address_of(array), array.shape))

    def zero_grad(self) -> None:
        """Set every gradient to zero (one fill of the flat ``grad``)."""
        self.grad[:] = 0

    def __repr__(self) -> str:
        where = ", cuda" if self.device == "cuda" else ""
        return f"ParamBuffer({len(self._names)} tensors, {self.size} elements, {self.dtype}{where})"


def owner_of(array: Any) -> ParamBuffer | None:
    """The ParamBuffer whose flat ``data`` holds ``array``'s memory, if any."""
    if not isinstance(array, np.ndarray):
        address = address_of(array)
        for buf in list(_DEVICE_OWNERS):
            start = address_of(buf.data)
            if start <= address < start + buf.data.nbytes:
                return buf
        return None
    for candidate in (array, array.base):
        if candidate is None:
            continue
        buf = _OWNERS.get(id(candidate))
        if buf is not None and buf.data is candidate:
            return buf
    return None
