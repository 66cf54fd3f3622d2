"""Record learning-rate schedule values from Keras 3, optax and MLX into tests/data/.

    pip install jax keras optax "mlx[cpu]"
    KERAS_BACKEND=jax python tools/record_schedules.py

Each case names the library's schedule, its arguments, and our equivalent
(see the mapping table in numba_adam/schedules.py); tests/test_schedules.py
replays our schedule at the same steps without any of those libraries.
"""

import json
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import mlx.core as mx  # noqa: E402
import mlx.optimizers as mlx_opt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "schedules.json"
STEPS = [0, 1, 2, 3, 5, 9, 10, 11, 20, 37, 50, 99, 100, 101, 150, 250, 1000]
K = keras.optimizers.schedules


def keras_values(schedule):
    return [float(schedule(step)) for step in STEPS]


def optax_values(schedule):
    return [float(schedule(step)) for step in STEPS]


def mlx_values(schedule):
    return [float(schedule(mx.array(step))) for step in STEPS]


CASES = [
    # (library, their call, values, our name, our kwargs)
    ("keras", "ExponentialDecay(0.1, 10, 0.5)", keras_values(K.ExponentialDecay(0.1, 10, 0.5)),
     "exponential_decay", dict(initial_lr=0.1, decay_steps=10, decay_rate=0.5)),
    ("keras", "ExponentialDecay(0.1, 10, 0.5, staircase=True)",
     keras_values(K.ExponentialDecay(0.1, 10, 0.5, staircase=True)),
     "exponential_decay", dict(initial_lr=0.1, decay_steps=10, decay_rate=0.5, staircase=True)),
    ("keras", "InverseTimeDecay(0.1, 10, 0.5)", keras_values(K.InverseTimeDecay(0.1, 10, 0.5)),
     "inverse_time_decay", dict(initial_lr=0.1, decay_steps=10, decay_rate=0.5)),
    ("keras", "InverseTimeDecay(0.1, 10, 0.5, staircase=True)",
     keras_values(K.InverseTimeDecay(0.1, 10, 0.5, staircase=True)),
     "inverse_time_decay", dict(initial_lr=0.1, decay_steps=10, decay_rate=0.5, staircase=True)),
    ("keras", "PiecewiseConstantDecay([10, 100], [1.0, 0.5, 0.1])",
     keras_values(K.PiecewiseConstantDecay([10, 100], [1.0, 0.5, 0.1])),
     "piecewise_constant", dict(boundaries=[10, 100], values=[1.0, 0.5, 0.1])),
    ("keras", "PolynomialDecay(0.1, 100, 0.01, power=2.0)",
     keras_values(K.PolynomialDecay(0.1, 100, 0.01, power=2.0)),
     "polynomial_decay", dict(initial_lr=0.1, decay_steps=100, end_lr=0.01, power=2.0)),
    ("keras", "PolynomialDecay(0.1, 100, 0.01, power=0.5, cycle=True)",
     keras_values(K.PolynomialDecay(0.1, 100, 0.01, power=0.5, cycle=True)),
     "polynomial_decay", dict(initial_lr=0.1, decay_steps=100, end_lr=0.01, power=0.5, cycle=True)),
    ("keras", "CosineDecay(0.1, 100, alpha=0.1)", keras_values(K.CosineDecay(0.1, 100, alpha=0.1)),
     "cosine_decay", dict(initial_lr=0.1, decay_steps=100, alpha=0.1)),
    ("optax", "exponential_decay(0.1, 10, 0.5)", optax_values(optax.exponential_decay(0.1, 10, 0.5)),
     "exponential_decay", dict(initial_lr=0.1, decay_steps=10, decay_rate=0.5)),
    ("optax", "exponential_decay(0.1, 10, 0.5, staircase=True)",
     optax_values(optax.exponential_decay(0.1, 10, 0.5, staircase=True)),
     "exponential_decay", dict(initial_lr=0.1, decay_steps=10, decay_rate=0.5, staircase=True)),
    ("optax", "polynomial_schedule(0.1, 0.01, 2.0, 100)",
     optax_values(optax.polynomial_schedule(0.1, 0.01, 2.0, 100)),
     "polynomial_decay", dict(initial_lr=0.1, decay_steps=100, end_lr=0.01, power=2.0)),
    ("optax", "cosine_decay_schedule(0.1, 100, alpha=0.1)",
     optax_values(optax.cosine_decay_schedule(0.1, 100, alpha=0.1)),
     "cosine_decay", dict(initial_lr=0.1, decay_steps=100, alpha=0.1)),
    ("optax", "linear_schedule(0.0, 0.1, 50)", optax_values(optax.linear_schedule(0.0, 0.1, 50)),
     "linear_warmup", dict(initial_lr=0.0, end_lr=0.1, steps=50)),
    ("optax", "warmup_cosine_decay_schedule(0.0, 0.1, 10, 150, end_value=0.001)",
     optax_values(optax.warmup_cosine_decay_schedule(0.0, 0.1, 10, 150, end_value=0.001)),
     "warmup_cosine_decay", dict(initial_lr=0.0, peak_lr=0.1, warmup_steps=10, decay_steps=150,
                                 end_lr=0.001)),
    ("optax", "join_schedules([linear_schedule(0, 0.1, 10), exponential_decay(0.1, 20, 0.5)], [10])",
     optax_values(optax.join_schedules([optax.linear_schedule(0.0, 0.1, 10),
                                        optax.exponential_decay(0.1, 20, 0.5)], [10])),
     "join", dict(schedules=[dict(name="linear_warmup", initial_lr=0.0, end_lr=0.1, steps=10),
                             dict(name="exponential_decay", initial_lr=0.1, decay_steps=20,
                                  decay_rate=0.5)], boundaries=[10])),
    ("mlx", "exponential_decay(0.1, 0.9)", mlx_values(mlx_opt.exponential_decay(0.1, 0.9)),
     "exponential_decay", dict(initial_lr=0.1, decay_steps=1, decay_rate=0.9)),
    ("mlx", "step_decay(0.1, 0.5, 20)", mlx_values(mlx_opt.step_decay(0.1, 0.5, 20)),
     "step_decay", dict(initial_lr=0.1, step_size=20, gamma=0.5)),
    ("mlx", "cosine_decay(0.1, 100, end=0.01)", mlx_values(mlx_opt.cosine_decay(0.1, 100, 0.01)),
     "cosine_decay", dict(initial_lr=0.1, decay_steps=100, end_lr=0.01)),
    ("mlx", "linear_schedule(0.0, 0.1, 50)", mlx_values(mlx_opt.linear_schedule(0.0, 0.1, 50)),
     "linear_schedule", dict(initial_lr=0.0, end_lr=0.1, steps=50)),
    ("mlx", "join_schedules([linear_schedule(0, 0.1, 10), cosine_decay(0.1, 100)], [10])",
     mlx_values(mlx_opt.join_schedules([mlx_opt.linear_schedule(0.0, 0.1, 10),
                                        mlx_opt.cosine_decay(0.1, 100)], [10])),
     "join", dict(schedules=[dict(name="linear_warmup", initial_lr=0.0, end_lr=0.1, steps=10),
                             dict(name="cosine_decay", initial_lr=0.1, decay_steps=100,
                                  alpha=0.0)], boundaries=[10])),
]

if __name__ == "__main__":
    record = dict(steps=STEPS, versions=dict(keras=keras.__version__, optax=optax.__version__,
                                             mlx=mx.__version__ if hasattr(mx, "__version__") else "?"),
                  cases=[dict(library=lib, theirs=call, values=np.asarray(vals).tolist(),
                              ours=name, kwargs=kwargs) for lib, call, vals, name, kwargs in CASES])
    OUT.write_text(json.dumps(record, indent=1))
    print(f"wrote {OUT}: {len(CASES)} cases")
