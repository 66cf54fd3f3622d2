"""Shared set-up for the asv benchmarks: seeded data, warm optimizers."""

import numpy as np

import numba_adam


def warm_optimizer(size, dtype="float32", option="adam", tensors=1, state_bits=32):
    """A ParamBuffer of ``size`` elements in ``tensors`` tensors with a warmed-up optimizer."""
    rng = np.random.default_rng(0)
    base = size // tensors
    buf = numba_adam.ParamBuffer(
        {str(i): rng.standard_normal(base + (i < size % tensors)) for i in range(tensors)}, dtype)
    buf.grad[:] = rng.standard_normal(buf.size)
    kwargs = {
        "adam": {}, "amsgrad": {"amsgrad": True}, "l2": {"weight_decay": 0.01},
        "adamw": {"weight_decay": 0.01, "decoupled_weight_decay": True},
        "clipnorm": {},
    }[option]
    opt = numba_adam.Adam(buf, lr=1e-3, state_bits=state_bits, **kwargs)
    if option == "clipnorm":
        opt.global_clipnorm = 1.0
    opt.step()   # compile (or load from the cache) outside the timings
    return buf, opt


def bytes_per_param(dtype, option):
    from numba_adam.bench import bytes_per_param as moved
    return moved(dtype, option == "amsgrad")


def roofline_ratio(step, roofline, rounds=15):
    """Median time of ``step`` over that of the same-bytes ``roofline``, interleaved (memory
    speed drifts): 1.0 is the memory-bus limit, lower is better."""
    from numba_adam.bench import median_seconds
    ours, roof = [], []
    for _ in range(rounds):
        ours.append(median_seconds(step, 3))
        roof.append(median_seconds(roofline, 3))
    return float(np.median(ours) / np.median(roof))
