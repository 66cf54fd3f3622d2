"""How the optimizer state (m, v and AMSGrad's v_max) is stored: the seam for new formats.

A state storage owns the arrays the kernels read and write, and converts one
tensor's state to and from its *logical* form: float arrays shaped like the
parameter, named as in torch (``exp_avg``, ``exp_avg_sq``,
``max_exp_avg_sq``).  Everything above the engine (state_dict, checkpoints,
the front-ends) sees only the logical form, so a new storage (16- or 8-bit
codes, one rank's shard) changes nothing above it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from . import _codes
from ._layout import Layout


class TensorState(NamedTuple):
    """One tensor's optimizer state in logical form (``max_exp_avg_sq`` None without AMSGrad)."""

    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any = None


class CompactTensorState(NamedTuple):
    """One tensor's state as stored with 16- or 8-bit state: flat codes (uint16 bfloat16
    patterns, or uint8 codes) in the parameter's memory order and, for 8 bits, a float32
    absmax per 256-element block of them."""

    bits: int
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any = None
    exp_avg_absmax: Any = None
    exp_avg_sq_absmax: Any = None
    max_exp_avg_sq_absmax: Any = None

    def entries(self) -> dict[str, Any]:
        """The state_dict entries: torch's names for the codes, ``*_absmax`` for the scales."""
        return {k: v for k, v in self._asdict().items() if k != "bits" and v is not None}

    def logical(self) -> TensorState:
        """The float32 values the codes stand for (flat, in the codes' order)."""
        def value(codes, absmax, signed):
            if codes is None:
                return None
            flat = np.asarray(codes).ravel()
            return _codes.bf16_to_float(flat) if self.bits == 16 else \
                _codes.dequantize8(flat, absmax, signed)

        return TensorState(value(self.exp_avg, self.exp_avg_absmax, True),
                           value(self.exp_avg_sq, self.exp_avg_sq_absmax, False),
                           value(self.max_exp_avg_sq, self.max_exp_avg_sq_absmax, False))


class State:
    """The optimizer state of every tensor, each in its layout's format (32, 16 or 8 bits).

    Arrays (allocated where the parameters live; ``backend`` is ``_cpu`` or
    ``_cuda``): ``m``, ``v`` and ``v_max`` in the parameters' dtype for
    32-bit tensors; ``codes16`` (uint16) for 16-bit tensors; ``codes8``
    (uint8) and ``absmax`` (float32, one per 256-element block of
    ``codes8``) for 8-bit tensors.  Offsets are the layout's.
    """

    def __init__(self, layout: Layout, dtype: np.dtype, backend: Any) -> None:
        self.layout = layout
        self.dtype = np.dtype(dtype)
        self.backend = backend
        self.m = backend.zeros(layout.dense_size, self.dtype)
        self.v = backend.zeros(layout.dense_size, self.dtype)
        self.v_max = backend.zeros(layout.vmax_size, self.dtype)
        self.codes16 = backend.zeros(layout.codes16_size, np.uint16)
        self.codes8 = backend.zeros(layout.codes8_size, np.uint8)
        self.absmax = backend.zeros(layout.codes8_size // _codes.BLOCK, np.float32)

    @property
    def nbytes(self) -> int:
        """Bytes of optimizer state held (codes and scales included)."""
        layout = self.layout
        return ((2 * layout.dense_size + layout.vmax_size) * self.dtype.itemsize
                + 2 * layout.codes16_size + layout.codes8_size + 4 * (layout.codes8_size // 256))

    def bits(self, i: int) -> int:
        """How tensor ``i``'s state is stored: 32, 16 or 8 bits per value."""
        return self.layout.bits[i]

    def _regions(self, i: int) -> list[int]:
        layout = self.layout
        vmax = int(layout.vmax_offsets[i])
        return [int(layout.state_offsets[i]), int(layout.v_offsets[i])] + \
            ([vmax] if vmax >= 0 else [])

    def views(self, i: int) -> TensorState:
        """Live views of 32-bit tensor ``i``'s state, shaped like the parameter."""
        if self.bits(i) != 32:
            raise TypeError(f"{self.layout.specs[i].label} has {self.bits(i)}-bit state, which "
                            f"has no live float views; read it with tensor_state()")
        layout = self.layout
        shape, order = layout.shapes[i], layout.orders[i]
        n = int(layout.numels[i])
        arrays = (self.m, self.v, self.v_max)
        return TensorState(*(self.backend.shaped(flat[at:at + n], shape, order)
                             for flat, at in zip(arrays, self._regions(i))))

    def compact(self, i: int, copy: bool = True) -> CompactTensorState:
        """Tensor ``i``'s codes and scales (``copy=False``: host views where possible)."""
        layout = self.layout
        bits, n = self.bits(i), int(layout.numels[i])
        fetch = self.backend.to_host if copy else self.backend.host_view
        flat = self.codes16 if bits == 16 else self.codes8
        codes = [fetch(flat[at:at + n]) for at in self._regions(i)]
        codes += [None] * (3 - len(codes))
        scales = [None] * 3
        if bits == 8:
            nb = _codes.blocks(n)
            scales = [fetch(self.absmax[at // _codes.BLOCK:at // _codes.BLOCK + nb])
                      for at in self._regions(i)] + [None] * (3 - len(self._regions(i)))
        return CompactTensorState(bits, *codes, *scales)

    def read(self, i: int) -> TensorState:
        """Host copies of tensor ``i``'s state in logical form (low-bit state decoded)."""
        if self.bits(i) != 32:
            return self._shaped(i, self.compact(i).logical())
        return TensorState(*(None if x is None else self.backend.to_host(x)
                             for x in self.views(i)))

    def _shaped(self, i: int, flat: TensorState) -> TensorState:
        """Flat values in tensor ``i``'s memory order, shaped like its parameter."""
        shape, order = self.layout.shapes[i], self.layout.orders[i]
        return TensorState(*(None if x is None else x.reshape(shape, order=order)
                             for x in flat))

    def snapshot(self, i: int) -> TensorState | CompactTensorState:
        """Host copies of tensor ``i``'s state as stored (for ``write`` into a new layout)."""
        return self.read(i) if self.bits(i) == 32 else self.compact(i)

    def entries(self, i: int, copy: bool = True, dequantize: bool = False) -> dict[str, Any]:
        """Tensor ``i``'s state_dict entries, lossless: floats, or codes and scales
        (``dequantize``: float values shaped like the parameter, float32 for low-bit state)."""
        if dequantize:
            return {k: x for k, x in self.read(i)._asdict().items() if x is not None}
        if self.bits(i) != 32:
            return self.compact(i, copy).entries()
        fetch = self.backend.to_host if copy else self.backend.host_view
        views = self.views(i)
        return {k: fetch(x) for k, x in zip(TensorState._fields, views) if x is not None}

    def write(self, i: int, values: TensorState | CompactTensorState) -> None:
        """Set tensor ``i``'s state from host arrays: logical floats (None: zeros; v_max
        ignored without AMSGrad), quantized where the state is compact, or codes, kept
        bit for bit when their format is this tensor's (converted otherwise)."""
        bits = self.bits(i)
        if isinstance(values, CompactTensorState):
            if values.bits != bits or (values.max_exp_avg_sq is None and
                                       self.layout.amsgrad[i]):   # flat, in memory order
                values = self._shaped(i, values.logical())
            else:
                return self._write_compact(i, values)
        if bits == 32:
            for target, value in zip(self.views(i), values):
                if target is not None:
                    host = np.zeros(target.shape, self.dtype) if value is None else \
                        np.asarray(value, dtype=self.dtype)
                    self.backend.copy_from_host(target, host)
            return
        self._write_compact(i, quantize(values, bits, self.layout.shapes[i],
                                        self.layout.amsgrad[i], self.layout.orders[i]))

    def _write_compact(self, i: int, state: CompactTensorState) -> None:
        n = int(self.layout.numels[i])
        flat = self.codes16 if state.bits == 16 else self.codes8
        regions = self._regions(i)
        for at, codes, scale in zip(regions, state[1:4], state[4:7]):
            self.backend.copy_from_host(flat[at:at + n], np.asarray(codes).reshape(n))
            if state.bits == 8:
                k = at // _codes.BLOCK
                self.backend.copy_from_host(self.absmax[k:k + _codes.blocks(n)],
                                            np.asarray(scale, np.float32))


def quantize(values: TensorState, bits: int, shape: tuple, amsgrad: bool,
             order: str = "C") -> CompactTensorState:
    """The codes of a logical state (None: zeros), rounded to nearest as a fresh start.

    8-bit: a first moment whose denominator code is zero is stored as zero,
    as the kernels do (see ``_codes``).
    """
    def flat(x):
        return np.zeros(int(np.prod(shape, dtype=np.int64)), np.float32) if x is None else \
            np.asarray(x, np.float32).ravel(order=order)

    m, v = flat(values.exp_avg), flat(values.exp_avg_sq)
    vm = flat(values.max_exp_avg_sq) if amsgrad else None

    if bits == 16:
        return CompactTensorState(16, *(None if x is None else _codes.float_to_bf16(x)
                                        for x in (m, v, vm)))
    mc, ms = _codes.quantize8(m, signed=True)
    vc, vs = _codes.quantize8(v, signed=False)
    vmc, vms = _codes.quantize8(vm, signed=False) if vm is not None else (None, None)
    mc[(vmc if vmc is not None else vc) == 0] = 0
    return CompactTensorState(8, mc, vc, vmc, ms, vs, vms)
