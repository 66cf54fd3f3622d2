import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# First examples compile kernels: no deadline.
settings.register_profile("numba_adam", deadline=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("numba_adam")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
