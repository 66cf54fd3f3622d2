"""numba_adam: the Adam optimizer as one fused Numba kernel over flat buffers."""

__version__ = "0.1.0"

from . import compat, schedules
from ._state import TensorState
from ._threads import get_num_threads, set_num_threads
from .buffer import ParamBuffer
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .optim import Adam, Adam8bit, AdamW, AdamW8bit, Optimizer, ParamGroup
from .sparse import IndexedSlices

__all__ = ["Adam", "Adam8bit", "AdamW", "AdamW8bit", "Checkpoint", "CheckpointError",
           "IndexedSlices", "Optimizer", "ParamBuffer", "ParamGroup", "TensorState", "compat",
           "get_num_threads", "load_checkpoint", "schedules", "set_num_threads"]
