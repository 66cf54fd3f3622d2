"""Numeric drift: the largest error against the trajectories recorded from the real torch,
Keras 3, MLX and tf_keras legacy Adam (``tests/data``), relative to each tensor's scale.

These sit on the same dashboard as the speed figures, so a kernel change that makes a
step faster but drifts numerically shows at once (lower is better; here float32 replays
sit between 3e-7 and 1.3e-5, float64 at 4e-15).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import replay  # noqa: E402


class Drift:
    timeout = 300
    unit = "relative error"

    def track_max_error_vs_torch_float32(self):
        return max(replay.max_relative_error(replay.torch(n, "float32"))
                   for n in replay.TORCH_SCENARIOS)

    def track_max_error_vs_torch_float64(self):
        return max(replay.max_relative_error(replay.torch(n, "float64"))
                   for n in replay.TORCH_SCENARIOS)

    def track_max_error_vs_keras3(self):
        return max(replay.max_relative_error(replay.keras3(n)) for n in replay.recorded("keras"))

    def track_max_error_vs_mlx(self):
        return max(replay.max_relative_error(replay.mlx_optimizers(n))
                   for n in replay.recorded("mlx"))

    def track_max_error_vs_tf_keras_legacy(self):
        return max(replay.max_relative_error(replay.keras_legacy(n))
                   for n in replay.LEGACY_CASES)
