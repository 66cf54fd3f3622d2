"""pytest collection for the whole repository (doctests of the package included)."""


def _mpi_usable() -> bool:
    try:   # mpi4py may be installed with no MPI library to load (the placeholder mpich wheel)
        from mpi4py import MPI   # noqa: F401
    except (ImportError, RuntimeError, OSError):
        return False
    return True


def _torch_installed() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# numba_adam.distributed imports mpi4py's MPI on import, numba_adam.torch imports torch;
# without them there is nothing to doctest
collect_ignore = [] if _mpi_usable() else ["numba_adam/distributed.py"]
if not _torch_installed():
    collect_ignore.append("numba_adam/torch")
