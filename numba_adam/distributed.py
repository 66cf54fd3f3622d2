"""Data-parallel Adam over MPI: each rank steps with its own gradient, all end equal.

Launch a script with ``mpiexec -n P python -m mpi4py train.py`` (``-m mpi4py``
makes an uncaught exception on one rank abort every rank).  Every rank builds
the optimizer over the same parameters and calls ``step()`` with the gradient
of its share of the batch; the update uses the mean over ranks::

    from numba_adam.distributed import DistributedAdam
    opt = DistributedAdam(buf, lr=1e-3)          # comm defaults to MPI.COMM_WORLD
    ...
    opt.step()                                   # buf's grads: this rank's gradient

**Where the state lives.**  The optimizer's tensors, in group order, make one
flat vector of N elements (each tensor in C order).  Its work items (runs of
at most ``WORK_ITEM_ELEMENTS`` = 32,768 elements of one tensor) are cut into P
contiguous runs of near-equal length, one per rank.  With ``shard_state=True``
(ZeRO stage 1) rank r holds the optimizer state of run r only.  Cutting on
work-item boundaries means:

- every 8-bit block (256 elements) lies in one shard, so the ranks' codes and
  scales side by side are the whole tensor's, and a checkpoint does not depend
  on P;
- each rank's per-item sums of squared gradients are those one process
  computes, so norm clipping (per tensor, or global) gives the same factors;
- the 16-bit rounding keys index elements of the whole model, as in one process.

**A step**, all in place on NumPy buffers, with no pickling and no per-tensor
messages:

1. every rank checks its gradients, and one 8-byte all-reduce agrees that all
   can step; otherwise every rank raises the same error and nothing changes;
2. the flat gradient is reduce-scattered and divided by P, so each rank has
   the mean gradient of its run (``deterministic=True``: an all-to-all, then a
   sum in rank order, the same bits on every run and equal to a single
   process given that mean);
3. norm clipping all-gathers the per-item sums (8 bytes per 32,768 elements);
4. the engine updates the rank's run of the parameters and state in one launch;
5. the parameters are all-gathered in place.

Without ``shard_state`` the gradient is all-reduced and every rank updates
everything with the full state.  Parameters held in one ParamBuffer, in
order, are reduced and gathered where they are.  Other parameters (plain
arrays, several buffers, groups out of buffer order) are packed into a flat
copy each step, one copy per tensor.

A failure inside the communication (not a checked bad input) writes what
failed to stderr and aborts the communicator, so no rank waits forever.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

try:
    from mpi4py import MPI
except (ImportError, RuntimeError) as _missing:   # no mpi4py, or no MPI library for it to load
    raise ImportError(f"numba_adam.distributed needs mpi4py and an MPI library ({_missing}): "
                      f"pip install 'numba-adam[mpi]' (mpi4py and the mpich wheel), or "
                      f"mpi4py built against the system MPI") from _missing

from numba import njit

from . import _checks, _cpu, _crc32, checkpoint
from ._config import ITEM_LENGTH, ITEM_TENSOR, SCALAR_COLUMNS
from ._codes import BLOCK, blocks
from ._engine import Engine, checked_gradient
from ._layout import Layout, TensorSpec, memory_order
from ._state import CompactTensorState, TensorState
from .buffer import address_of
from .optim import Adam
from .sparse import IndexedSlices

__all__ = ["DistributedAdam", "DistributedAdamW", "shard_bounds"]

_RAISED = {cls.__name__: cls for cls in (TypeError, ValueError, KeyError, IndexError,
                                         checkpoint.CheckpointError)}


def shard_bounds(items: np.ndarray, ranks: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut work items into ``ranks`` contiguous runs of near-equal element counts.

    Returns (item bounds, element bounds), each ``ranks + 1`` long and
    non-decreasing: rank r holds items ``[ib[r], ib[r+1])``, which are elements
    ``[eb[r], eb[r+1])`` of the flat vector.  Each cut is the item boundary
    nearest ``r * N / ranks``, so runs differ from N / ranks by less than one
    work item.

    >>> import numpy as np
    >>> items = np.array([[0, 0, 4], [0, 4, 4], [1, 0, 3]])
    >>> [b.tolist() for b in shard_bounds(items, 2)]
    [[0, 1, 3], [0, 4, 11]]
    """
    starts = np.concatenate(([0], np.cumsum(items[:, ITEM_LENGTH]))).astype(np.int64)
    total = int(starts[-1])
    cuts = [0]
    for r in range(1, ranks):
        target = total * r / ranks
        k = int(np.searchsorted(starts, target))
        if k > 0 and (k == len(starts) or target - starts[k - 1] <= starts[k] - target):
            k -= 1
        cuts.append(max(k, cuts[-1]))
    cuts.append(len(items))
    item_bounds = np.array(cuts, dtype=np.int64)
    return item_bounds, starts[item_bounds]


@njit(cache=True)   # no fastmath: the sum and the division round as NumPy's do
def ordered_mean(parts: np.ndarray, divisor: np.ndarray, out: np.ndarray) -> None:
    """``out = (parts[0] + parts[1] + ... + parts[P-1]) / divisor[0]``, in rank order
    (``divisor`` holds P in the gradients' dtype, so the division rounds in that dtype)."""
    ranks, n = parts.shape
    d = divisor[0]
    for j in range(n):
        acc = parts[0, j]
        for r in range(1, ranks):
            acc += parts[r, j]
        out[j] = acc / d


def _mpi_failure(comm: Any, failure: BaseException | None, what: str) -> None:
    """Collective: raise on every rank, with the same message, if any rank failed."""
    flag = np.array([0 if failure is None else 1], dtype=np.int64)
    comm.Allreduce(MPI.IN_PLACE, flag, op=MPI.SUM)
    if flag[0] == 0:
        return
    reports = comm.allgather(None if failure is None else (type(failure).__name__,
                                                           str(failure)))
    failed = [(r, report) for r, report in enumerate(reports) if report is not None]
    kind = _RAISED.get(failed[0][1][0], RuntimeError)
    lines = "; ".join(f"rank {r}: {message}" for r, (_, message) in failed)
    raise kind(f"{what} failed on {len(failed)} of {comm.Get_size()} rank(s), so no rank "
               f"changed anything: {lines}") from failure


@contextmanager
def _abort_on_failure(comm: Any, what: str):
    """Abort the communicator if anything fails in a block the other ranks are inside too."""
    try:
        yield
    except BaseException as exc:
        sys.stderr.write(f"numba_adam.distributed: rank {comm.Get_rank()} of "
                         f"{comm.Get_size()} failed during {what} ({type(exc).__name__}: "
                         f"{exc}); aborting the communicator so no rank waits forever\n")
        sys.stderr.flush()
        comm.Abort(1)
        raise


class _Flat:
    """The data and grad arrays of a rank's run, as an engine reads a ParamBuffer's."""

    def __init__(self, data: np.ndarray, grad: np.ndarray) -> None:
        self.data, self.grad = data, grad


class ShardedEngine:
    """The engine of a ``DistributedAdam``: the state of one rank's run, and the
    communication that turns every rank's gradient into one update.

    It answers what ``Optimizer`` asks of an engine (bind gradients, group
    scalars, clipping, launch, ``state``), keyed by the whole model's tensors;
    inside, an ordinary ``Engine`` holds and steps the rank's pieces of them.
    """

    def __init__(self, specs: list[TensorSpec], amsgrad_by_group: list[bool], dtype: np.dtype,
                 device: str, bits_by_group: list[int], min_8bit_sizes: list[int], *,
                 comm: Any, shard_state: bool, deterministic: bool) -> None:
        if device != "cpu":
            raise TypeError("DistributedAdam runs on the CPU (GPU buffers would need a "
                            "CUDA-aware MPI); these parameters are on the GPU")
        self.comm, self.ranks, self.rank = comm, comm.Get_size(), comm.Get_rank()
        self.dtype = np.dtype(dtype)
        self.shard_state, self.deterministic = shard_state, deterministic
        self.specs = list(specs)
        # the whole model's layout: offsets, formats and items (no state is allocated)
        self.layout = full = Layout(specs, amsgrad_by_group, bits_by_group, min_8bit_sizes)
        self.size = full.size
        self.item_bounds, self.bounds = shard_bounds(full.items, self.ranks)
        self.counts = np.diff(self.bounds).tolist()
        r = self.rank
        self.own = ((int(self.bounds[r]), int(self.bounds[r + 1])) if shard_state
                    else (0, self.size))
        self._flat_params, self._flat_grads = self._flat_buffers()
        self._grad_stage: np.ndarray | None = None
        lo, hi = self.own
        self.mean = np.zeros(hi - lo, self.dtype)
        self._parts = np.zeros(self.ranks * self.counts[r], self.dtype) if deterministic \
            else None
        self._divisor = np.full(1, self.ranks, self.dtype)
        self._factors = np.ones(len(specs), self.dtype)
        # MPI counts and displacements, and clipping's tables, fixed for the engine's life
        self.displs = self.bounds[:-1].tolist()
        mine = self.counts[r]
        self._parts_layout = ([mine] * self.ranks, [mine * k for k in range(self.ranks)])
        self._item_layout = (np.diff(self.item_bounds).tolist(), self.item_bounds[:-1].tolist())
        self._item_sums = np.zeros(len(full.items), np.float64)
        self._item_tensor = np.ascontiguousarray(full.items[:, ITEM_TENSOR])
        self._no_extra_sums = np.zeros(len(specs))
        self._tensor_sums = np.zeros(len(specs))
        self._no_clipnorms = np.full(full.n_groups, -1.0)
        self._payload = (self.size - mine) * self.dtype.itemsize   # bytes for other ranks
        # the rank's pieces: (tensor, first element, end) within its run
        base, numel = full.index_base, full.numels
        first = np.clip(lo - base, 0, numel)
        end = np.clip(hi - base, 0, numel)
        self.piece_tensor = np.flatnonzero(end > first)
        self.piece_range = {int(t): (int(first[t]), int(end[t])) for t in self.piece_tensor}
        owner = _Flat(self._flat_params[lo:hi], self.mean)
        pieces = [TensorSpec(self._flat_params[base[t] + a:base[t] + b], specs[t].group, owner,
                             f"{specs[t].label}[{a}:{b}]", int(base[t] + a), int(numel[t]))
                  for t, (a, b) in self.piece_range.items()]
        self.inner = Engine(pieces, amsgrad_by_group, dtype, "cpu", bits_by_group,
                            min_8bit_sizes) if pieces else None
        if self.inner is not None:
            items = full.items[self.item_bounds[r]:self.item_bounds[r + 1]] if shard_state \
                else full.items
            assert np.array_equal(self.inner.layout.items[:, ITEM_LENGTH], items[:, ITEM_LENGTH])
            self.group_scalars, self.group_keys = self.inner.group_scalars, self.inner.group_keys
        else:
            self.group_scalars = np.zeros((full.n_groups, SCALAR_COLUMNS), self.dtype)
            self.group_keys = np.zeros(full.n_groups, dtype=np.int64)
        self.state = ShardState(self)
        self.bytes_sent = 0   # payload handed to MPI for other ranks, summed over steps

    def __len__(self) -> int:
        return len(self.specs)

    # -- where the flat vector lives --------------------------------------------
    def _flat_buffers(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(flat parameters, flat gradients): views of one ParamBuffer when the tensors lie
        there back to back in group order, else a parameter copy (gradients staged)."""
        owners = {id(s.owner) for s in self.specs}
        first = self.specs[0]
        itemsize = self.dtype.itemsize
        in_place = first.owner is not None and len(owners) == 1 and all(
            s.array.flags.c_contiguous for s in self.specs) and all(
            address_of(b.array) == address_of(a.array) + a.array.size * itemsize
            for a, b in zip(self.specs, self.specs[1:]))
        if in_place:
            start = (address_of(first.array) - address_of(first.owner.data)) // itemsize
            return (first.owner.data[start:start + self.size],
                    first.owner.grad[start:start + self.size])
        return np.zeros(self.size, self.dtype), None

    @property
    def in_place(self) -> bool:
        """Whether the parameters and gradients are reduced and gathered where they are."""
        return self._flat_grads is not None

    def _tensor_region(self, flat: np.ndarray, t: int) -> np.ndarray:
        base, n = int(self.layout.index_base[t]), int(self.layout.numels[t])
        return flat[base:base + n].reshape(self.layout.shapes[t])

    def _stage(self) -> np.ndarray:
        if self._grad_stage is None:
            self._grad_stage = np.zeros(self.size, self.dtype)
        return self._grad_stage

    # -- gradients ----------------------------------------------------------------
    def bind_buffer_grads(self) -> None:
        """Reduce the ParamBuffer gradients of every rank into this rank's mean gradient."""
        if self.in_place:
            return self._reduce(self._flat_grads)
        plain = [s.label for s in self.specs if s.owner is None]
        if plain:
            raise TypeError(f"step() without grads reads gradients from ParamBuffer grad "
                            f"views, but {len(plain)} parameter(s) ({', '.join(plain[:5])}) "
                            f"are plain arrays: pass their gradients with step(grads=[...])")
        stage = self._stage()
        for t, s in enumerate(self.specs):   # contiguous views (owners hold no others)
            at = (address_of(s.array) - address_of(s.owner.data)) // self.dtype.itemsize
            grad = s.owner.grad[at:at + s.array.size]
            np.copyto(self._tensor_region(stage, t),
                      grad.reshape(s.array.shape, order=memory_order(s.array)))
        self._reduce(stage)

    def bind_grads(self, grads: Sequence[Any]) -> list:
        """Pack the given gradients (sparse ones densified) and reduce them."""
        checked = [checked_gradient(g, s, self.dtype, _cpu) for g, s in
                   zip(grads, self.specs)]
        stage = self._stage()
        for t, g in enumerate(checked):
            region = self._tensor_region(stage, t)
            if isinstance(g, IndexedSlices):
                rows, values = g.merged()
                region[...] = 0
                region.reshape(region.shape[0], -1)[rows] = values.reshape(len(rows), -1)
            else:
                np.copyto(region, g)
        self._reduce(stage)
        return []

    def _reduce(self, send: np.ndarray) -> None:
        """This rank's mean gradient (its run, or everything without shard_state)."""
        comm, ranks, rank = self.comm, self.ranks, self.rank
        lo, hi = int(self.bounds[rank]), int(self.bounds[rank + 1])
        with _abort_on_failure(comm, "the gradient reduction"):
            if self.deterministic:
                comm.Alltoallv([send, (self.counts, self.displs)],
                               [self._parts, self._parts_layout])
                out = self.mean if self.shard_state else self.mean[lo:hi]
                ordered_mean(self._parts.reshape(ranks, self.counts[rank]), self._divisor, out)
                if not self.shard_state:
                    comm.Allgatherv(MPI.IN_PLACE, [self.mean, (self.counts, self.displs)])
            else:
                if self.shard_state:
                    comm.Reduce_scatter(send, self.mean, recvcounts=self.counts, op=MPI.SUM)
                else:
                    comm.Allreduce(send, self.mean, op=MPI.SUM)
                np.divide(self.mean, self.dtype.type(ranks), out=self.mean)
        # the per-rank payload of a bandwidth-optimal reduce-scatter (all-reduce: twice it)
        self.bytes_sent += self._payload * (1 if self.shard_state else 2)
        if self.inner is not None:
            self.inner.bind_buffer_grads()

    @property
    def has_sparse_jobs(self) -> bool:
        return False   # sparse gradients are densified before the reduction

    # -- clipping and launch ----------------------------------------------------------
    def clip_by_norm(self, clipnorms: np.ndarray | None, global_clipnorm: float | None) -> None:
        """Clip factors from the norms of the whole tensors and model, over all ranks."""
        if clipnorms is None and global_clipnorm is None:
            if self.inner is not None:
                self.inner.clip_by_norm(None, None)
            self._factors[:] = 1
            return
        sums = self._item_sums
        local = self.inner.item_sums_of_squares() if self.inner is not None else sums[:0]
        if self.shard_state:
            with _abort_on_failure(self.comm, "the gradient norms"):
                self.comm.Allgatherv(local, [sums, self._item_layout])
        else:
            sums = local
        _cpu.clip_scales_kernel(sums, self._item_tensor, self.layout.groups,
                                self._no_extra_sums,
                                self._no_clipnorms if clipnorms is None else clipnorms,
                                -1.0 if global_clipnorm is None else float(global_clipnorm),
                                self._tensor_sums, self._factors)
        if self.inner is not None:
            self.inner.set_clip_factors(self._factors[self.piece_tensor])

    def launch(self, lazy_by_group: list[bool] | None = None) -> None:
        """Update this rank's run, then all-gather the parameters (unpacked if copied)."""
        if not self.in_place:
            for t, s in enumerate(self.specs):
                if t in self.piece_range:
                    np.copyto(self._tensor_region(self._flat_params, t), s.array)
        if self.inner is not None:
            self.inner.launch()
        if self.shard_state and self.ranks > 1:
            with _abort_on_failure(self.comm, "the parameter all-gather"):
                self.comm.Allgatherv(MPI.IN_PLACE, [self._flat_params,
                                                    (self.counts, self.displs)])
            self.bytes_sent += self._payload
        if not self.in_place:
            for t, s in enumerate(self.specs):
                np.copyto(s.array, self._tensor_region(self._flat_params, t))

    def clip_factors(self) -> np.ndarray:
        """Each whole tensor's gradient factor in the last step (1: not clipped)."""
        return self._factors.copy()

    def jit_arrays(self) -> dict[str, Any]:
        raise TypeError("numba_adam.jit cannot step a DistributedAdam (a step is collective "
                        "communication); call opt.step() on every rank")

    # -- who holds what -----------------------------------------------------------
    def ranges(self, t: int) -> list[tuple[int, int]]:
        """Tensor ``t``'s (first element, end) held by each rank (empty ranges included)."""
        base, n = int(self.layout.index_base[t]), int(self.layout.numels[t])
        if not self.shard_state:
            return [(0, n)] * self.ranks
        return [(min(max(int(lo) - base, 0), n), min(max(int(hi) - base, 0), n))
                for lo, hi in zip(self.bounds[:-1], self.bounds[1:])]

    def piece_index(self, t: int) -> int | None:
        """Where tensor ``t``'s piece sits among this rank's pieces (None: no piece here)."""
        if t not in self.piece_range:
            return None
        return int(np.searchsorted(self.piece_tensor, t))


class ShardState:
    """The state seam (``_state.State``'s interface) over the whole model's tensors, for
    state held in pieces across ranks: reads gather the pieces (collective), writes keep
    this rank's slice."""

    def __init__(self, engine: ShardedEngine) -> None:
        self.engine = engine
        self.layout = engine.layout

    @property
    def nbytes(self) -> int:
        """Bytes of optimizer state this rank holds."""
        return self.engine.inner.state.nbytes if self.engine.inner is not None else 0

    def bits(self, i: int) -> int:
        return self.layout.bits[i]

    def entry_kinds(self, i: int, dequantize: bool) -> list[tuple[str, np.dtype, bool]]:
        """Tensor ``i``'s state_dict entries: (name, dtype, counted in 8-bit blocks)."""
        bits = self.bits(i)
        keys = list(TensorState._fields[:3 if self.layout.amsgrad[i] else 2])
        if dequantize or bits == 32:
            dtype = self.engine.dtype if bits == 32 else np.dtype(np.float32)
            return [(k, dtype, False) for k in keys]
        codes = np.dtype(np.uint16 if bits == 16 else np.uint8)
        kinds = [(k, codes, False) for k in keys]
        if bits == 8:
            kinds += [(f"{k}_absmax", np.dtype(np.float32), True) for k in keys]
        return kinds

    def entries(self, i: int, copy: bool = True, dequantize: bool = False) -> dict[str, Any]:
        """Tensor ``i``'s whole state_dict entries on every rank (collective)."""
        engine = self.engine
        kinds = self.entry_kinds(i, dequantize)
        piece = engine.piece_index(i)
        local = {} if piece is None else \
            engine.inner.state.entries(piece, copy=not engine.shard_state, dequantize=dequantize)
        floats = dequantize or self.bits(i) == 32
        shape = self.layout.shapes[i]
        if not engine.shard_state:   # every rank holds everything
            return {key: (np.asarray(local[key]) if key in local else np.zeros(0, dtype))
                    .reshape(shape if floats else -1) for key, dtype, _ in kinds}
        ranges = engine.ranges(i)
        out = {}
        with _abort_on_failure(engine.comm, "a state gather"):
            for key, dtype, per_block in kinds:
                counts = [(blocks(b) - a // BLOCK if b > a else 0) if per_block else b - a
                          for a, b in ranges]
                whole = np.zeros(sum(counts), dtype)
                mine = np.ascontiguousarray(np.asarray(local[key]).reshape(-1), dtype) \
                    if key in local else np.zeros(0, dtype)
                engine.comm.Allgatherv(mine, [whole, (counts, np.cumsum([0] + counts[:-1])
                                                      .tolist())])
                out[key] = whole.reshape(shape) if floats else whole
        return out

    def read(self, i: int) -> TensorState:
        """Tensor ``i``'s state in logical form, on every rank (collective)."""
        return TensorState(**self.entries(i, dequantize=True))

    def snapshot(self, i: int) -> TensorState | CompactTensorState:
        entries = self.entries(i)
        return TensorState(**entries) if self.bits(i) == 32 else \
            CompactTensorState(self.bits(i), **entries)

    def views(self, i: int) -> TensorState:
        raise TypeError("DistributedAdam's state is held in pieces across ranks and has no "
                        "live views; read a tensor's with tensor_state(i) (collective)")

    def write(self, i: int, values: TensorState | CompactTensorState) -> None:
        """Set tensor ``i``'s state from whole host arrays; this rank keeps its slice."""
        engine = self.engine
        piece = engine.piece_index(i)
        if piece is None:
            return
        a, b = engine.piece_range[i]
        if isinstance(values, CompactTensorState):
            if values.bits != self.bits(i) or (values.max_exp_avg_sq is None and
                                               self.layout.amsgrad[i]):
                values = values.logical()   # flat floats, C order
            else:
                k, nb = a // BLOCK, blocks(b - a)
                engine.inner.state.write(piece, CompactTensorState(
                    values.bits, *(None if c is None else np.asarray(c).reshape(-1)[a:b]
                                   for c in values[1:4]),
                    *(None if s is None else np.asarray(s).reshape(-1)[k:k + nb]
                      for s in values[4:7])))
                return
        engine.inner.state.write(piece, TensorState(
            *(None if x is None else np.asarray(x).reshape(-1)[a:b] for x in values)))


class DistributedAdam(Adam):
    r"""Data-parallel :class:`~numba_adam.Adam` over MPI, with the state sharded over ranks.

    Every rank constructs it over equal parameters (checked) and calls
    ``step()`` with its own gradient; the update uses the mean over ranks, and
    every rank ends the step with the same parameters.  ``step``, ``save``,
    ``load``, ``state_dict`` and ``tensor_state`` are collective: call them on
    every rank, in the same order.  Bad input on any rank makes every rank
    raise the same error, with nothing changed.

    Args:
        params: as for :class:`~numba_adam.Adam`; a ParamBuffer (its tensors
            in order) is reduced and gathered in place, anything else goes
            through a flat copy.
        comm: an mpi4py intracommunicator (default ``MPI.COMM_WORLD``).
        shard_state: hold the state of about 1/P of the parameters per rank
            (reduce-scatter, shard update, all-gather); False: all-reduce, and
            every rank holds all of it.
        deterministic: sum the gradients in rank order, then divide by P: runs
            are bit-identical, and equal to a single-process Adam given that
            mean.  The default uses MPI's reduction, whose order may vary.
        lr, betas, eps, weight_decay, amsgrad, maximize,
        decoupled_weight_decay, state_bits, seed, min_8bit_size: as for
            :class:`~numba_adam.Adam`.

    Sparse (``IndexedSlices``) gradients are densified before the reduction,
    so ``lazy_sparse`` groups are refused, and so is ``step_rows``.
    """

    def __init__(self, params: Any, comm: Any = None, shard_state: bool = True,
                 deterministic: bool = False, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False, state_bits: int = 32, seed: int = 0,
                 min_8bit_size: int = 4096) -> None:
        comm = MPI.COMM_WORLD if comm is None else comm
        if not isinstance(comm, MPI.Intracomm):
            raise TypeError(f"comm must be an mpi4py intracommunicator (e.g. MPI.COMM_WORLD), "
                            f"got {type(comm).__name__}")
        self._comm = comm
        failure = None
        try:
            self._shard_state = _checks.boolean("shard_state", shard_state)
            self._deterministic = _checks.boolean("deterministic", deterministic)
            super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                             decoupled_weight_decay=decoupled_weight_decay,
                             state_bits=state_bits, seed=seed, min_8bit_size=min_8bit_size)
        except Exception as exc:   # agreed on by every rank, so none waits in a collective
            failure = exc
        _mpi_failure(comm, failure, f"{type(self).__name__}()")
        self._check_replicas()

    @property
    def comm(self) -> Any:
        """The communicator the ranks step over."""
        return self._comm

    @property
    def shard_state(self) -> bool:
        return self._shard_state

    @property
    def deterministic(self) -> bool:
        return self._deterministic

    @property
    def bytes_sent(self) -> int:
        """Gradient and parameter bytes this rank handed MPI for other ranks, over all steps
        (the payload of the collectives; the wire bytes depend on MPI's algorithms)."""
        return self._engine.bytes_sent

    @property
    def shard(self) -> tuple[int, int]:
        """(first, end) of the flat elements whose state this rank holds."""
        return self._engine.own

    def _make_engine(self, specs, amsgrad_by_group, dtype, device, bits_by_group,
                     min_8bit_sizes) -> ShardedEngine:
        return ShardedEngine(specs, amsgrad_by_group, dtype, device, bits_by_group,
                             min_8bit_sizes, comm=self._comm, shard_state=self._shard_state,
                             deterministic=self._deterministic)

    def _check_replicas(self) -> None:
        """Every rank must hold the same model and start from the same parameter values."""
        groups = [{k: (type(v).__name__ if callable(v) else v) for k, v in g.items()
                   if k != "params"} for g in self.param_groups]
        layout = json.dumps([[list(s.array.shape) for s in self._specs], str(self.dtype),
                             [s.group for s in self._specs], groups, self._shard_state,
                             self._deterministic], default=repr).encode()
        values = 0
        for s in self._specs:
            values = zlib.crc32(np.ascontiguousarray(s.array).view(np.uint8).reshape(-1),
                                values)
        mine = np.array([zlib.crc32(layout), values], dtype=np.int64)
        every = np.zeros((self._comm.Get_size(), 2), dtype=np.int64)
        self._comm.Allgather(mine, every)
        for column, what in ((0, "a different model (shapes, dtype, groups or options)"),
                             (1, "different parameter values")):
            differ = [r for r in range(len(every)) if every[r, column] != every[0, column]]
            if differ:
                raise ValueError(
                    f"{type(self).__name__}: rank(s) {differ} hold {what} than rank 0 "
                    f"(CRC-32 of each rank's {'description' if column == 0 else 'parameters'})"
                    f"; every rank must start from the same model, e.g. broadcast the "
                    f"parameters from rank 0 with comm.Bcast(buf.data, root=0)")

    # -- stepping ----------------------------------------------------------------
    def step(self, grads: Sequence[Any] | Any = None,
             closure: Callable[[], Any] | None = None) -> Any:
        """One update with the mean of every rank's gradient (collective).

        Each rank passes its own gradient as for :meth:`Adam.step`; every rank
        checks its input first, and if any rank's is bad every rank raises
        the same error and nothing changes.
        """
        loss = closure() if closure is not None else None
        failure = None
        try:
            if grads is not None:
                grads = list(self._align_grads(grads))
                if len(grads) != len(self._specs):
                    raise ValueError(f"expected {len(self._specs)} gradients (one per "
                                     f"parameter, in parameter-group order), got {len(grads)}")
                for g, spec in zip(grads, self._specs):
                    if g is None:
                        raise TypeError(f"gradient for {spec.label} is None; "
                                        f"{type(self).__name__} reduces every gradient over "
                                        f"the ranks each step: pass zeros to leave its "
                                        f"moments decaying")
                    checked_gradient(g, spec, self.dtype, _cpu)
                lazy = [i for i, g in enumerate(grads) if isinstance(g, IndexedSlices) and
                        self._groups[self._specs[i].group].get("lazy_sparse", False)]
                if lazy:
                    raise ValueError(f"{type(self).__name__} densifies sparse gradients before "
                                     f"the reduction, so lazy_sparse groups are not supported "
                                     f"({self._specs[lazy[0]].label} is in one)")
            elif not self._engine.in_place and any(s.owner is None for s in self._specs):
                raise TypeError("step() without grads reads gradients from ParamBuffer grad "
                                "views, but some parameters are plain arrays: pass their "
                                "gradients with step(grads=[...])")
            for group in self._groups:
                group.next_lr()
        except Exception as exc:   # agreed on by every rank, so none waits in a collective
            failure = exc
        _mpi_failure(self._comm, failure, "step()")
        with _abort_on_failure(self._comm, "step()"):
            super().step(grads)
        return loss

    def step_rows(self, param: int | str, rows: Any, values: Any) -> None:
        raise TypeError(f"{type(self).__name__}.step_rows is not available: pass the rows as "
                        f"an IndexedSlices gradient to step() (densified before the reduction)")

    # -- checkpoints ----------------------------------------------------------------
    def load(self, path: str | os.PathLike, params: bool | None = None) -> None:
        """Restore a checkpoint written with any number of ranks, or by a single-process
        optimizer (collective; every rank reads the file and keeps its shard)."""
        failure = None
        try:
            super().load(path, params)
        except Exception as exc:   # agreed on by every rank, so none waits in a collective
            failure = exc
        _mpi_failure(self._comm, failure, "load()")

    def save(self, path: str | os.PathLike, params: bool = False) -> None:
        """Write one checkpoint file, the same whatever the number of ranks (collective).

        Each rank writes the bytes of its own shard with MPI-IO (``Write_at_all``)
        and the CRC-32 of each; rank 0 writes the header and the combined
        checksum, then moves the file into place.  No rank gathers the state.
        The file loads into any number of ranks, or a single-process ``Adam``.
        """
        comm = self._comm
        root = comm.Get_rank() == 0
        failure, plan, target, tmp = None, None, None, None
        try:
            plan = self._file_plan(params)
            if root:
                target, tmp = checkpoint.temporary_path(path)
        except Exception as exc:   # agreed on by every rank, so none waits in a collective
            failure = exc
        _mpi_failure(comm, failure, "save()")
        layout, writes = plan
        shared_tmp = comm.bcast(str(tmp) if root else None, root=0)
        handle = None
        try:
            handle = MPI.File.Open(comm, shared_tmp, MPI.MODE_WRONLY)
        except MPI.Exception as exc:
            failure = checkpoint.CheckpointError(f"cannot save checkpoint to {path}: "
                                                 f"{exc.Get_error_string()}")
        if failure is not None and root and os.path.exists(tmp):
            os.unlink(tmp)
        _mpi_failure(comm, failure, "save()")
        with _abort_on_failure(comm, "save()"):   # a rank stuck mid-write would hang the rest
            rounds = comm.allreduce(len(writes), op=MPI.MAX)
            if root:
                handle.Write_at(0, np.frombuffer(layout.head, np.uint8))
            crcs, empty = [], np.zeros(0, np.uint8)
            for k in range(rounds):
                offset, data = writes[k] if k < len(writes) else (0, empty)
                handle.Write_at_all(offset, data)
                if data.size:
                    crcs.append((offset, data.nbytes, zlib.crc32(data)))
            everyone = comm.gather(crcs, root=0)
            if root:
                crc, at = zlib.crc32(layout.numba_adam_header), len(layout.head)
                for offset, length, part in sorted(c for rank in everyone for c in rank):
                    if offset != at:
                        raise AssertionError(f"bytes {at}..{offset} were not written")
                    crc = _crc32.combine(crc, part, length)
                    at += length
                if at != layout.size:
                    raise AssertionError(f"bytes {at}..{layout.size} were not written")
                handle.Write_at(layout.checksum_at,
                                np.frombuffer(checkpoint.format_checksum(crc), np.uint8))
            handle.Close()
        if root:
            try:
                checkpoint.commit(tmp, target)
            except checkpoint.CheckpointError as exc:
                failure = exc
        _mpi_failure(comm, failure, "save()")

    def _file_plan(self, params: bool) -> tuple[checkpoint.FileLayout, list]:
        """The file layout (from stand-ins of the right dtypes and sizes) and this rank's
        writes: (file offset, bytes) for its shard of every array."""
        engine = self._engine
        state = engine.state
        standins: dict[int, tuple[int, str]] = {}

        def stand_in(t: int, key: str, dtype: np.dtype, count: int) -> np.ndarray:
            array = np.broadcast_to(np.zeros((), dtype), (count,))
            standins[id(array)] = (t, key)
            return array

        def entries(t: int) -> dict[str, np.ndarray]:
            n = int(engine.layout.numels[t])
            return {key: stand_in(t, key, dtype, blocks(n) if per_block else n)
                    for key, dtype, per_block in state.entry_kinds(t, False)}

        values = [stand_in(t, "params", self.dtype, s.array.size) if params else None
                  for t, s in enumerate(self._specs)]
        header, arrays = checkpoint.contents(
            self._export(entries), optimizer=type(self).__name__, dtype=self.dtype,
            shapes=[tuple(s.array.shape) for s in self._specs],
            params=values if params else None)
        layout = checkpoint.file_layout(header, arrays)
        writes = []
        for name in layout.order:
            itemsize = layout.dtypes[name].itemsize
            at = layout.offsets[name]
            for piece in arrays[name]:
                t, key = standins[id(piece)]
                data = self._local_bytes(t, key)
                if data is not None and data[1].size:
                    writes.append((at + data[0] * itemsize, data[1]))
                at += piece.size * itemsize
        return layout, writes

    def _local_bytes(self, t: int, key: str) -> tuple[int, np.ndarray] | None:
        """(first element within the array piece, bytes) of what this rank writes for
        tensor ``t``'s entry ``key`` (each element is written by exactly one rank)."""
        engine = self._engine
        a, b = engine.ranges(t)[engine.rank] if engine.shard_state else \
            ((0, int(engine.layout.numels[t])) if engine.rank == 0 else (0, 0))
        if b <= a:
            return None
        if key == "params":
            flat = np.ascontiguousarray(self._specs[t].array).reshape(-1)[a:b]
            return a, flat.view(np.uint8)
        piece = engine.piece_index(t)
        local = engine.inner.state.entries(piece, copy=False)[key]
        local = np.ascontiguousarray(np.asarray(local).reshape(-1))
        first = a // BLOCK if key.endswith("_absmax") else a
        return first, local.view(np.uint8)


class DistributedAdamW(DistributedAdam):
    """:class:`DistributedAdam` with decoupled weight decay (``torch.optim.AdamW``),
    ``weight_decay`` defaulting to 1e-2."""

    def __init__(self, params: Any, comm: Any = None, shard_state: bool = True,
                 deterministic: bool = False, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 state_bits: int = 32, seed: int = 0, min_8bit_size: int = 4096) -> None:
        super().__init__(params, comm, shard_state, deterministic, lr, betas, eps, weight_decay,
                         amsgrad, maximize=maximize, decoupled_weight_decay=True,
                         state_bits=state_bits, seed=seed, min_8bit_size=min_8bit_size)

