"""Scenarios for tests/test_distributed.py, run on every rank under mpiexec.

``python -m mpi4py tests/mpi/worker.py SCENARIO [ARGS...]``: each scenario
asserts what it checks on every rank; a failure raises, mpi4py aborts every
rank and mpiexec exits non-zero, with the assertion on stderr.  The reference
is a single-process ``numba_adam.Adam`` given the mean gradient, summed in
rank order as ``deterministic=True`` promises.
"""

import sys

import numpy as np
from mpi4py import MPI

import numba_adam
from numba_adam import IndexedSlices, ParamBuffer, schedules
from numba_adam.distributed import DistributedAdam, DistributedAdamW

COMM = MPI.COMM_WORLD
RANK, RANKS = COMM.Get_rank(), COMM.Get_size()
SHAPES = {"embed": (300, 256), "w1": (64, 40), "b1": (40,), "w2": (40, 1000), "s": (),
          "big": (9000, 11)}   # 176,801 elements: several work items, pieces cut inside tensors


def model(dtype=np.float32, shapes=SHAPES) -> ParamBuffer:
    rng = np.random.default_rng(7)
    return ParamBuffer({k: rng.standard_normal(s) for k, s in shapes.items()}, dtype=dtype)


def gradient(step: int, rank: int, buf: ParamBuffer, scale: float = 1.0) -> dict:
    rng = np.random.default_rng(1000 * step + rank)
    return {k: (scale * rng.standard_normal(buf[k].shape)).astype(buf.dtype) for k in buf}


def mean_gradient(step: int, buf: ParamBuffer, scale: float = 1.0) -> dict:
    parts = [gradient(step, r, buf, scale) for r in range(RANKS)]
    out = {}
    for k in buf:
        acc = parts[0][k].copy()
        for p in parts[1:]:
            acc = acc + p[k]
        out[k] = acc / buf.dtype.type(RANKS)
    return out


CONFIGS = {
    "plain": dict(),
    "amsgrad_l2": dict(amsgrad=True, weight_decay=0.1),
    "clip": dict(global_clipnorm=5.0, clipnorm=2.0),
    "bf16": dict(state_bits=16, seed=3),
    "q8": dict(state_bits=8, min_8bit_size=1000, amsgrad=True),
    "adamw_schedule": dict(adamw=True, schedule=True),
}


def build(cls_kind: str, buf, config: dict, **extra):
    config = dict(config)
    clipnorm = config.pop("clipnorm", None)
    global_clipnorm = config.pop("global_clipnorm", None)
    adamw = config.pop("adamw", False)
    lr = schedules.CosineDecay(0.05, 20, alpha=0.1) if config.pop("schedule", False) else 0.05
    if cls_kind == "single":
        opt = (numba_adam.AdamW if adamw else numba_adam.Adam)(buf, lr=lr, **config)
    else:
        opt = (DistributedAdamW if adamw else DistributedAdam)(buf, lr=lr, **config, **extra)
    if clipnorm is not None:
        opt.param_groups[0]["clipnorm"] = clipnorm
    opt.global_clipnorm = global_clipnorm
    return opt


def assert_same_state(a: dict, b: dict, exact: bool, what: str) -> None:
    assert sorted(a["state"]) == sorted(b["state"]), what
    for i in a["state"]:
        for key, x in a["state"][i].items():
            y = b["state"][i][key]
            if exact:
                assert np.array_equal(np.asarray(x), np.asarray(y)), f"{what}: state {i} {key}"
            else:
                np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                           rtol=2e-4, atol=1e-6, err_msg=f"{what}: {i} {key}")


def run_pair(config_name: str, steps: int, exact: bool, shapes=SHAPES, **extra) -> None:
    config = CONFIGS[config_name]
    buf, ref_buf = model(shapes=shapes), model(shapes=shapes)
    opt = build("distributed", buf, config, **extra)
    ref = build("single", ref_buf, config)
    for step in range(steps):
        for k, g in gradient(step, RANK, buf).items():
            buf.grads[k][...] = g
        opt.step()
        ref.step(mean_gradient(step, ref_buf))
    what = f"{config_name} {extra}"
    if exact:
        assert np.array_equal(buf.data, ref_buf.data), f"{what}: parameters differ"
        assert np.array_equal(opt.grad_scales(), ref.grad_scales()), what
    else:
        np.testing.assert_allclose(buf.data, ref_buf.data, rtol=1e-4, atol=1e-5, err_msg=what)
    assert_same_state(opt.state_dict(), ref.state_dict(), exact, what)
    # every rank holds the same parameters
    every = np.zeros((RANKS, buf.size), buf.dtype)
    COMM.Allgather(buf.data, every)
    assert (every == every[0]).all(), f"{what}: ranks disagree"


def scenario_deterministic() -> None:
    for name in CONFIGS:
        run_pair(name, 4, exact=True, deterministic=True)
    run_pair("plain", 3, exact=True, deterministic=True, shard_state=False)
    run_pair("clip", 3, exact=True, deterministic=True, shard_state=False)


def scenario_tiny(path: str) -> None:
    """Fewer work items than ranks: some ranks hold no state at all."""
    shapes = {"a": (10,), "b": (3, 4)}
    for name in ("plain", "clip", "bf16"):
        run_pair(name, 3, exact=True, shapes=shapes, deterministic=True)
    buf = model(shapes=shapes)
    opt = DistributedAdam(buf, lr=0.05, deterministic=True)
    assert (opt.state_nbytes == 0) == (opt.shard[0] == opt.shard[1])
    for step in range(2):
        opt.step(gradient(step, RANK, buf))
    opt.save(path, params=True)
    again = DistributedAdam(model(shapes=shapes), lr=0.05, deterministic=True)
    again.load(path)
    assert_same_state(again.state_dict(), opt.state_dict(), True, "tiny reload")


def scenario_default() -> None:
    for name in ("plain", "clip", "q8"):
        run_pair(name, 4, exact=False)
    run_pair("amsgrad_l2", 3, exact=False, shard_state=False)


def scenario_plain_arrays() -> None:
    """Plain arrays and sparse gradients: the packed path, densified rows."""
    base = model()
    arrays = {k: np.array(base[k], order="F" if base[k].ndim == 2 and k != "embed" else "C")
              for k in base}
    ref_arrays = {k: v.copy() for k, v in arrays.items()}
    opt = DistributedAdam(arrays, lr=0.05, deterministic=True)
    ref = numba_adam.Adam(ref_arrays, lr=0.05)
    for step in range(3):
        grads = gradient(step, RANK, base)
        rows = np.array([RANK, 5, 5 + step])
        grads["embed"] = IndexedSlices(np.ones((3, 256), np.float32) * (RANK + 1), rows,
                                       (300, 256))
        opt.step(grads)
        mean = mean_gradient(step, base)
        dense = np.zeros((300, 256), np.float32)
        for r in range(RANKS):
            part = np.zeros((300, 256), np.float32)
            np.add.at(part, np.array([r, 5, 5 + step]), np.float32(r + 1))
            dense = part if r == 0 else dense + part
        mean["embed"] = dense / np.float32(RANKS)
        ref.step(mean)
    for k in arrays:
        assert np.array_equal(arrays[k], ref_arrays[k]), k
    assert_same_state(opt.state_dict(), ref.state_dict(), True, "plain arrays")


def scenario_refusals() -> None:
    buf = model()
    mine = model()
    if RANK == 1:
        mine.data[3] += 1.0
    try:
        DistributedAdam(mine)
    except ValueError as exc:
        assert "rank(s) [1]" in str(exc) and "different parameter values" in str(exc), exc
    else:
        raise AssertionError("unequal parameters were accepted")
    try:
        DistributedAdam(buf, lr=-1.0 if RANK == RANKS - 1 else 0.1)
    except ValueError as exc:
        assert f"rank {RANKS - 1}: lr" in str(exc), exc
    else:
        raise AssertionError("an lr refused on one rank was accepted")
    opt = DistributedAdam(buf, lr=0.05)
    for k, g in gradient(0, RANK, buf).items():
        buf.grads[k][...] = g
    opt.step()
    before, state = buf.data.copy(), opt.state_dict()
    grads = gradient(1, RANK, buf)
    if RANK == 0:
        grads["w1"] = grads["w1"][:, :3]
    try:
        opt.step(grads)
    except ValueError as exc:
        assert "rank 0: gradient for 'w1' has shape (64, 3)" in str(exc), exc
    else:
        raise AssertionError("a bad gradient on rank 0 was accepted")
    assert np.array_equal(buf.data, before)
    assert_same_state(opt.state_dict(), state, True, "after a refused step")
    assert opt.param_groups[0].updates == 1
    grads = gradient(1, RANK, buf)
    if RANK == RANKS - 1:
        grads["w1"] = None           # one rank without a gradient: every rank refuses
    try:
        opt.step(grads)
    except TypeError as exc:
        assert f"rank {RANKS - 1}: gradient for 'w1' is None" in str(exc), exc
    else:
        raise AssertionError("a None gradient on one rank was accepted")
    assert np.array_equal(buf.data, before)
    opt.step(gradient(1, RANK, buf))   # and it steps on
    assert opt.param_groups[0].updates == 2
    failing = [False]

    def lr(step):   # a user schedule that fails on one rank only
        if failing[0]:
            raise ZeroDivisionError("simulated schedule failure")
        return 0.05
    opt.param_groups[0]["lr"] = lr
    failing[0] = RANK == RANKS - 1
    try:
        opt.step(gradient(2, RANK, buf))
    except RuntimeError as exc:   # an unlisted type: every rank raises RuntimeError alike
        assert f"rank {RANKS - 1}: simulated schedule failure" in str(exc), exc
    else:
        raise AssertionError("a failing schedule on one rank was ignored")
    assert opt.param_groups[0].updates == 2
    try:
        opt.step_rows(0, [1], np.zeros((1, 256), np.float32))
    except TypeError as exc:
        assert "IndexedSlices" in str(exc)
    else:
        raise AssertionError("step_rows was accepted")


def scenario_memory() -> None:
    shapes = {"a": (1000, 1000), "b": (1000,), "c": (500, 2003)}
    buf = model(shapes=shapes)
    single = numba_adam.Adam(model(shapes=shapes)).state_nbytes
    for bits in (32, 8):
        full = numba_adam.Adam(model(shapes=shapes), state_bits=bits).state_nbytes
        opt = DistributedAdam(buf, state_bits=bits)
        per_element = full / buf.size   # shards differ from N/P by under one work item
        assert opt.state_nbytes <= (buf.size / RANKS + 32768) * per_element, \
            (bits, opt.state_nbytes, full)
        every = COMM.allreduce(opt.state_nbytes)
        assert abs(every - full) <= 4 * 256 * RANKS, (every, full)   # padding of cut blocks
        first, end = opt.shard
        assert end - first <= buf.size / RANKS + 32768
    assert DistributedAdam(buf, shard_state=False).state_nbytes == single


def coarse_gradient(step: int, buf: ParamBuffer) -> dict:
    """The same gradient on every rank, in 1/64ths: sums over ranks are exact, so the mean
    is this gradient for any number of ranks (a run can change P and stay comparable)."""
    rng = np.random.default_rng(step)
    return {k: (np.round(rng.standard_normal(buf[k].shape) * 64) / 64).astype(buf.dtype)
            for k in buf}


RESUME_CONFIG = dict(CONFIGS["q8"], amsgrad=False, schedule=True)


def scenario_resume(steps_before: str, steps_after: str, path_in: str, path_out: str,
                    kind: str = "distributed") -> None:
    """Load ``path_in`` (unless '-') saved after ``steps_before`` steps, run to
    ``steps_after``, check against an uninterrupted single process, save ``path_out``
    (``kind`` "single": a plain single-process Adam does this stage)."""
    k0, k1 = int(steps_before), int(steps_after)
    buf = model()
    opt = build(kind, buf, RESUME_CONFIG, **({"deterministic": True}
                                             if kind == "distributed" else {}))
    if path_in != "-":
        opt.load(path_in)
    assert opt.param_groups[0].updates == k0
    for step in range(k0, k1):
        opt.step(coarse_gradient(step, buf))
    ref_buf = model()
    ref = build("single", ref_buf, RESUME_CONFIG)
    for step in range(k1):
        ref.step(coarse_gradient(step, ref_buf))
    assert np.array_equal(buf.data, ref_buf.data), "the resumed run left the uninterrupted one"
    assert_same_state(opt.state_dict(), ref.state_dict(), True, "resumed")
    opt.save(path_out, params=True)


def scenario_abort(where: str) -> None:
    """A failure on rank 1 that the other ranks cannot see coming must end the job."""
    buf = model()
    opt = DistributedAdam(buf, lr=0.05)
    if RANK == 1 and where == "inside":   # fails between the reduction and the gather
        def broken(*args, **kwargs):
            raise RuntimeError("simulated failure inside the update")
        opt._engine.inner.launch = broken
    if RANK == 1 and where == "before":    # the user's own code fails before step()
        raise RuntimeError("simulated failure in the training loop")
    opt.step(gradient(0, RANK, buf))
    opt.step(gradient(1, RANK, buf))


if __name__ == "__main__":
    globals()[f"scenario_{sys.argv[1]}"](*sys.argv[2:])
    COMM.Barrier()
    if RANK == 0:
        print(f"scenario {sys.argv[1]} passed on {RANKS} ranks", flush=True)
