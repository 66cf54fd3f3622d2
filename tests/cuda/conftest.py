"""CUDA tests: run under the simulator (NUMBA_ENABLE_CUDASIM=1, set before numba
loads; tests/test_cuda.py does that in a subprocess) or on a real GPU."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # reference.py, cases.py


def _cuda_usable():
    try:
        from numba import cuda
    except ImportError:
        return False
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or cuda.is_available()


collect_ignore_glob = [] if _cuda_usable() else ["test_*.py"]


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    """Under the simulator: one block of 32 threads, so block and item loops wrap."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        from numba_adam import _config
        monkeypatch.setattr(_config, "CUDA_BLOCK_SIZE", 32)
        monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 1)
