"""pytest collection for the whole repository (doctests of the package included)."""

import hashlib
import os
from pathlib import Path

# Modules whose code the cached CPU kernels (defined in _cpu.py) compile in.
KERNEL_DEPENDENCIES = ("_bits.py", "_codes.py", "_config.py", "_formula.py", "_layout.py",
                       "_threads.py")


def _drop_stale_kernels() -> None:
    """Remove the checkout's cached kernels when a module they call has changed.

    Numba checks a cached kernel only against the file that defines it, so after an edit
    to ``_bits.py`` alone the tests would run (and pass or fail on) the old kernels.  A
    digest of those modules, kept beside the cache, says whether it is still theirs.
    (A cache elsewhere, under ``NUMBA_CACHE_DIR``, is left alone.)"""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    package = Path(__file__).resolve().parent / "numba_adam"
    cache = package / "__pycache__"
    digest = hashlib.sha256(b"".join((package / name).read_bytes()
                                     for name in KERNEL_DEPENDENCIES)).hexdigest()
    stamp = cache / "kernel-dependencies.sha256"
    if stamp.is_file() and stamp.read_text() == digest:
        return
    for cached in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
        cached.unlink(missing_ok=True)
    cache.mkdir(exist_ok=True)
    stamp.write_text(digest)


_drop_stale_kernels()


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
