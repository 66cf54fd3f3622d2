"""Record Adam trajectories from the real Keras 3 (jax backend) and MLX into tests/data/.

    pip install jax keras "mlx[cpu]"
    KERAS_BACKEND=jax python tools/record_keras_mlx.py

Legacy Keras is recorded separately from tf_keras (tools/record_tf_keras_legacy.py).
"""

import json
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import mlx.core as mx  # noqa: E402
import mlx.optimizers as mlx_opt  # noqa: E402
import numpy as np  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "keras_mlx_adam.npz"
SHAPES = [(4, 3), (5,)]
STEPS = 6

KERAS_CASES = {
    "default": dict(learning_rate=0.01),
    "amsgrad": dict(learning_rate=0.01, amsgrad=True, beta_1=0.8, beta_2=0.95, epsilon=1e-3),
    "weight_decay": dict(learning_rate=0.01, weight_decay=0.1),
    "clipnorm": dict(learning_rate=0.01, clipnorm=0.5),
    "clipvalue": dict(learning_rate=0.01, clipvalue=0.3),
    "global_clipnorm": dict(learning_rate=0.01, global_clipnorm=0.7),
    "schedule": dict(learning_rate=dict(name="exponential_decay", initial_lr=0.05,
                                        decay_steps=2, decay_rate=0.5)),
}
MLX_CASES = {
    "adam": ("Adam", dict(learning_rate=0.01)),
    "adam-bias-correction": ("Adam", dict(learning_rate=0.01, betas=[0.8, 0.95],
                                          bias_correction=True)),
    "adamw": ("AdamW", dict(learning_rate=0.01, weight_decay=0.1)),
    "adamw-schedule": ("AdamW", dict(learning_rate=dict(name="step_decay", initial_lr=0.05,
                                                        step_size=2, gamma=0.5),
                                     weight_decay=0.05, bias_correction=True)),
}


def keras_lr(lr):
    if isinstance(lr, dict):
        return keras.optimizers.schedules.ExponentialDecay(
            lr["initial_lr"], lr["decay_steps"], lr["decay_rate"])
    return lr


def mlx_lr(lr):
    if isinstance(lr, dict):
        return mlx_opt.step_decay(lr["initial_lr"], lr["gamma"], lr["step_size"])
    return lr


def main():
    rng = np.random.default_rng(42)
    out = {}
    for name, kwargs in KERAS_CASES.items():
        init = [rng.standard_normal(s).astype("float32") for s in SHAPES]
        grads = [rng.standard_normal((STEPS,) + s).astype("float32") for s in SHAPES]
        variables = [keras.Variable(x.copy()) for x in init]
        opt = keras.optimizers.Adam(**dict(kwargs, learning_rate=keras_lr(kwargs["learning_rate"])))
        for t in range(STEPS):
            opt.apply_gradients([(g[t], v) for g, v in zip(grads, variables)])
            for k, v in enumerate(variables):
                out[f"keras/{name}/traj{k}"] = np.concatenate(
                    [out.get(f"keras/{name}/traj{k}", np.empty((0,) + SHAPES[k], "float32")),
                     np.asarray(v.numpy())[None]])
        for k in range(len(SHAPES)):
            out[f"keras/{name}/init{k}"], out[f"keras/{name}/grads{k}"] = init[k], grads[k]
        out[f"keras/{name}/spec"] = np.array(json.dumps(kwargs))
    for name, (kind, kwargs) in MLX_CASES.items():
        init = [rng.standard_normal(s).astype("float32") for s in SHAPES]
        grads = [rng.standard_normal((STEPS,) + s).astype("float32") for s in SHAPES]
        params = {"a": mx.array(init[0]), "b": [mx.array(init[1])]}
        opt = getattr(mlx_opt, kind)(**dict(kwargs, learning_rate=mlx_lr(kwargs["learning_rate"])))
        for t in range(STEPS):
            params = opt.apply_gradients({"a": mx.array(grads[0][t]), "b": [mx.array(grads[1][t])]},
                                         params)
            for k, value in enumerate((params["a"], params["b"][0])):
                key = f"mlx/{name}/traj{k}"
                out[key] = np.concatenate([out.get(key, np.empty((0,) + SHAPES[k], "float32")),
                                           np.array(value)[None]])
        for k in range(len(SHAPES)):
            out[f"mlx/{name}/init{k}"], out[f"mlx/{name}/grads{k}"] = init[k], grads[k]
        out[f"mlx/{name}/spec"] = np.array(json.dumps([kind, kwargs]))
    out["versions"] = np.array(json.dumps(dict(keras=keras.__version__)))
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
