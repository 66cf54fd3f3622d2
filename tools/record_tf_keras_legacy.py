"""Record legacy Keras Adam trajectories from tf_keras (``tf_keras.optimizers.legacy.Adam``).

    pip install tf_keras
    python tools/record_tf_keras_legacy.py

The legacy optimizer keeps Keras 2's rule: ``lr / (1 + decay * iterations)``,
epsilon hat, AMSGrad on the raw second moment.
"""

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "keras_legacy_adam.npz"
SHAPES = [(4, 3), (5,)]
STEPS = 6
CASES = {
    "default": dict(learning_rate=0.01),
    "decay": dict(learning_rate=0.05, decay=0.3),
    "amsgrad-decay": dict(learning_rate=0.05, decay=0.1, amsgrad=True, beta_1=0.8, beta_2=0.9),
    "epsilon": dict(learning_rate=0.01, epsilon=0.1),
    "clipnorm": dict(learning_rate=0.01, clipnorm=0.5),
    "clipvalue": dict(learning_rate=0.01, clipvalue=0.3),
}


def main():
    rng = np.random.default_rng(7)
    out = {}
    for name, kwargs in CASES.items():
        init = [rng.standard_normal(s).astype("float32") for s in SHAPES]
        grads = [rng.standard_normal((STEPS,) + s).astype("float32") * 3 for s in SHAPES]
        variables = [tf.Variable(x.copy()) for x in init]
        opt = tf_keras.optimizers.legacy.Adam(**kwargs)
        traj = [np.empty((STEPS,) + s, "float32") for s in SHAPES]
        for t in range(STEPS):
            opt.apply_gradients([(tf.constant(g[t]), v) for g, v in zip(grads, variables)])
            for k, v in enumerate(variables):
                traj[k][t] = v.numpy()
        for k in range(len(SHAPES)):
            out[f"{name}/init{k}"], out[f"{name}/grads{k}"] = init[k], grads[k]
            out[f"{name}/traj{k}"] = traj[k]
        for i, w in enumerate(opt.get_weights()):
            out[f"{name}/weight{i}"] = np.asarray(w)
        out[f"{name}/spec"] = np.array(json.dumps(kwargs))
    out["versions"] = np.array(json.dumps(dict(tf_keras=tf_keras.__version__)))
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
