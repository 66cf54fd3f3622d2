"""Named option sets, bad inputs and per-dtype tolerances shared by the tests."""

import numpy as np
import pytest

DTYPES = [np.float32, np.float64]

# Kernel vs float64 reference after a few steps.
TOLERANCES = {
    np.dtype(np.float32): dict(rtol=2e-5, atol=2e-6),
    np.dtype(np.float64): dict(rtol=1e-12, atol=1e-13),
}

OPTION_SETS = {
    "default": dict(),
    "amsgrad": dict(amsgrad=True),
    "maximize": dict(maximize=True),
    "l2": dict(weight_decay=0.1),
    "decoupled": dict(weight_decay=0.1, decoupled_weight_decay=True),
    "everything": dict(weight_decay=0.05, amsgrad=True, maximize=True, betas=(0.8, 0.95),
                       eps=1e-6),
    "everything-decoupled": dict(weight_decay=0.05, amsgrad=True, maximize=True,
                                 decoupled_weight_decay=True, betas=(0.0, 0.5), eps=0.0),
}

options = pytest.mark.parametrize("options", list(OPTION_SETS.values()), ids=list(OPTION_SETS))
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)

# (constructor kwargs, exception, message pattern)
BAD_HYPERPARAMETERS = [
    (dict(lr=-0.1), ValueError, r"lr must be >= 0.0, got -0.1"),
    (dict(lr=float("nan")), ValueError, r"lr must be"),
    (dict(lr="0.1"), TypeError, r"lr must be a real number"),
    (dict(betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be in \[0.0, 1.0\), got 1.0"),
    (dict(betas=(-0.1, 0.9)), ValueError, r"betas\[0\] must be in"),
    (dict(betas=0.9), TypeError, r"betas must be a pair"),
    (dict(betas=(0.9, 0.99, 0.1)), TypeError, r"betas must be a pair"),
    (dict(eps=-1e-8), ValueError, r"eps must be >= 0.0"),
    (dict(weight_decay=-0.01), ValueError, r"weight_decay must be >= 0.0"),
    (dict(amsgrad="yes"), TypeError, r"amsgrad must be True or False"),
    (dict(maximize=1), TypeError, r"maximize must be True or False"),
]


def tolerance(dtype):
    return TOLERANCES[np.dtype(dtype)]


def with_each_thread_count(run):
    """``run()`` under 1, 2 and 3 numba_adam threads, as far as NUMBA_NUM_THREADS allows
    (the count restored after); the results."""
    import numba
    import numba_adam
    previous = numba_adam.get_num_threads()
    try:
        results = []
        for threads in range(1, min(3, numba.config.NUMBA_NUM_THREADS) + 1):
            numba_adam.set_num_threads(threads)
            results.append(run())
        return results
    finally:
        numba_adam.set_num_threads(previous)
