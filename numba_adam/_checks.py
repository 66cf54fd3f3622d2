"""One family of validators for hyperparameters, schedule arguments and step counts
(``check_hyperparameter`` is the one for every optimizer group key).

Policy, the same everywhere: a value of the wrong kind (a string, a bool
where a number is due) raises ``TypeError``; a number of the right kind that is
NaN, infinite or out of range raises ``ValueError``.  Messages name the
argument, the value and what was expected.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np


def real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
         high_open: bool = False, positive: bool = False) -> float:
    """``value`` as a finite float in range, else TypeError (not a number) / ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if low is not None and high is not None:
        if value < low or (value >= high if high_open else value > high):
            closing = ")" if high_open else "]"
            raise ValueError(f"{name} must be in [{low}, {high}{closing}, got {value!r}")
    elif low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return value


def integer(name: str, value: Any, *, low: int = 0, what: str = "an integer") -> int:
    """``value`` as an int >= ``low``; floats, strings and bools are refused, never rounded."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    value = int(value)
    if value < low:
        raise ValueError(f"{name} must be {'> 0' if low == 1 else f'>= {low}'}, got {value}")
    return value


def boolean(name: str, value: Any) -> bool:
    """``value`` as a bool; 0/1 and strings are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


_BOOL_KEYS = ("amsgrad", "maximize", "decoupled_weight_decay", "epsilon_hat", "bias_correction",
              "lazy_sparse")
_CLIP_KEYS = ("clipnorm", "clipvalue", "global_clipnorm")


def check_hyperparameter(key: str, value: Any) -> Any:
    """Validate and normalise one group hyperparameter; other keys pass unchanged.

    One helper serves the constructors, ``add_param_group``, edits of
    ``param_groups[i][key]``, ``load_state_dict`` and the front-ends.
    """
    if key == "lr":
        return value if callable(value) else real("lr", value, low=0.0)
    if key == "betas":
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {value!r}")
        return tuple(real(f"betas[{i}]", b, low=0.0, high=1.0, high_open=True)
                     for i, b in enumerate(value))
    if key in ("eps", "weight_decay", "decay"):
        return real(key, value, low=0.0)
    if key in _CLIP_KEYS:
        if value is None:
            return None
        value = real(key, value, low=0.0)
        if value <= 0:
            raise ValueError(f"{key} must be > 0 (or None for no clipping), got {value!r}")
        return value
    if key in _BOOL_KEYS:
        return boolean(key, value)
    if key == "state_bits":
        value = integer(key, value, what="32, 16 or 8")
        if value not in (8, 16, 32):
            raise ValueError(f"state_bits must be 32, 16 or 8, got {value!r}")
        return value
    if key in ("seed", "min_8bit_size"):
        return integer(key, value)
    return value
