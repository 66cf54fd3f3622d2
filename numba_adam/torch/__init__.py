"""numba_adam for PyTorch models: ``torch.optim.Optimizer`` subclasses over CPU tensors.

``numba_adam.torch.Adam`` replaces ``torch.optim.Adam`` with one changed line::

    optimizer = numba_adam.torch.Adam(model.parameters(), lr=0.01)

The parameters move into flat storage shared with the model, and each step is one
fused numba_adam launch over all of them (see :class:`Adam`).  ``state_dict()`` loads
into ``torch.optim.Adam`` and back (32-bit state), ``torch.optim.lr_scheduler`` works
unchanged, and ``state_bits=16``/``8`` (or ``Adam8bit``/``AdamW8bit``) keep compact
state.  This module is the only part of numba_adam that imports torch
(``pip install 'numba-adam[torch]'``).
"""

from ._optim import Adam, Adam8bit, AdamW, AdamW8bit

__all__ = ["Adam", "AdamW", "Adam8bit", "AdamW8bit"]
