"""pytest collection for the whole repository (doctests of the package included)."""

import importlib.util

# numba_adam.distributed imports mpi4py on import; without it there is nothing to doctest
collect_ignore = [] if importlib.util.find_spec("mpi4py") else ["numba_adam/distributed.py"]
