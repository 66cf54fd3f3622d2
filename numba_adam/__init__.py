"""numba_adam: the Adam optimizer as one fused Numba kernel over flat buffers."""

__version__ = "0.1.0"

import os as _os

# A training loop alternates NumPy's BLAS (whose threads spin after each call)
# with our parallel kernel.  With OpenMP threads spinning too, two cores
# thrash: measured 8.6 ms instead of 0.5 ms per step for 1e6 parameters after
# a 256x256 matmul.  Passive waiting avoids it; set OMP_WAIT_POLICY=active
# before importing numba_adam to spin instead (about 20% faster bare steps).
_os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from . import compat, schedules  # noqa: E402
from ._state import TensorState  # noqa: E402
from .buffer import ParamBuffer  # noqa: E402
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint  # noqa: E402
from .optim import Adam, AdamW, Optimizer, ParamGroup  # noqa: E402
from .sparse import IndexedSlices  # noqa: E402

__all__ = ["Adam", "AdamW", "Checkpoint", "CheckpointError", "IndexedSlices", "Optimizer",
           "ParamBuffer", "ParamGroup", "TensorState", "compat", "load_checkpoint", "schedules"]
