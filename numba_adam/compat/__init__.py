"""Framework-flavoured front-ends (Keras, legacy Keras, MLX) over the same engine."""

from . import keras, mlx  # noqa: F401  (reachable after a plain ``import numba_adam``)

__all__ = ["keras", "mlx"]
