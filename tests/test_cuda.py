"""CUDA without a GPU: the CUDA test suite under the simulator, and real PTX compilation."""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
needs_numba_cuda = pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                                      reason="numba-cuda is not installed")


@needs_numba_cuda
def test_cuda_suite_passes_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(HERE / "cuda")], env=env, capture_output=True, text=True,
                            timeout=1200, cwd=HERE.parent)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1]


PTX = textwrap.dedent("""
    import numba
    import numpy as np
    from numba import types
    from numba.cuda import compile_ptx, dispatcher
    from numba_adam import _cuda

    # Device functions called by a kernel are compiled for the current device's
    # compute capability; with no GPU (or driver) here, name the target instead.
    class TargetDevice:
        compute_capability = (8, 0)

    dispatcher.get_current_device = TargetDevice
    for dt in (types.float32, types.float64):
        f1, f2, i1, i2 = dt[::1], dt[:, ::1], types.int64[::1], types.int64[:, ::1]
        kernels = [
            (_cuda.adam_items, (f1, f1, i2, types.int64, types.int64, i2, f2, f1, f1, f1, f1)),
            (_cuda.sum_squares_items, (f1, i2, types.int64, types.int64, i2,
                                       types.float64[::1])),
            (_cuda.clip_scales_kernel, (types.float64[::1], i1, i1, types.float64[::1],
                                        types.float64[::1], types.float64, types.float64[::1],
                                        f1)),
            (_cuda.adam_rows_dense_kernel, (f1, types.int64, f1, f1, types.int64, f1,
                                            types.int64, types.int64, types.int64, i1, f2, dt,
                                            f1, dt)),
            (_cuda.adam_rows_lazy_kernel, (f1, types.int64, f1, f1, types.int64, f1,
                                           types.int64, types.int64, i1, f2, f1, dt)),
        ]
        items_kernel, rows_kernel = _cuda.COMPACT_KERNELS[np.dtype(str(dt))]
        compact = (types.uint16[::1], types.uint8[::1], types.float32[::1], i1)
        kernels += [
            (items_kernel, (f1, f1, i2, types.int64, types.int64, i2, f2, f1) + compact),
            (rows_kernel, (f1, types.int64, types.int64, i2, i1, i1, f2, types.int64,
                           types.boolean, dt, f1, dt) + compact),
        ]
        for kernel, sig in kernels:
            ptx, _ = compile_ptx(kernel.py_func, sig, cc=(8, 0))
            assert ".entry" in ptx and "sm_80" in ptx, kernel
            if kernel in (_cuda.adam_items, items_kernel):
                assert "sqrt.rn" in ptx and "div.rn" in ptx
            print(kernel.py_func.__name__, dt, len(ptx))
""")


@needs_numba_cuda
def test_kernels_compile_to_real_ptx():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", PTX], env=env, capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0 and "NVRTC" in result.stderr and "not found" in result.stderr.lower():
        pytest.fail("NVRTC is missing: install numba-cuda[cu12] (the [test] extra does)")
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.count("\n") == 14
