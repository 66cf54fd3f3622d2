"""Replays of the trajectories recorded from the real libraries (torch, Keras 3, MLX, tf_keras
legacy), shared by the tests (which assert closeness) and asv (which tracks the largest
error, so a numeric drift shows on the same dashboard as a speed regression).

Each replay returns ``(label, ours, theirs)`` triples: our value after a step (a copy), and
the recorded one.
"""

import json
from pathlib import Path

import numpy as np

import numba_adam
from numba_adam import schedules
from numba_adam.compat import keras, mlx
from numba_adam.compat.keras import legacy

DATA_DIR = Path(__file__).parent / "data"
TORCH = np.load(DATA_DIR / "torch_adam.npz")
KERAS_MLX = np.load(DATA_DIR / "keras_mlx_adam.npz")
LEGACY = np.load(DATA_DIR / "keras_legacy_adam.npz")

TORCH_SCENARIOS = sorted({k.split("/")[0] for k in TORCH.files if k.endswith("/spec")})
LEGACY_CASES = sorted({k.split("/")[0] for k in LEGACY.files if k.endswith("/spec")})


def recorded(prefix):
    """Keras 3 ("keras") or MLX ("mlx") case names."""
    return sorted({k.split("/")[1] for k in KERAS_MLX.files if k.startswith(prefix + "/")})


def _build_torch(spec, params):
    groups = [dict({k: v for k, v in g.items() if k != "tensors"},
                   params=[params[i] for i in g["tensors"]]) for g in spec["groups"]]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    kind = spec["optimizer"]
    if kind == "AdamW":
        return numba_adam.AdamW(groups, **spec["defaults"])
    if kind == "AdamDecoupled":
        return numba_adam.Adam(groups, decoupled_weight_decay=True, **spec["defaults"])
    return numba_adam.Adam(groups, **spec["defaults"])


def torch(name, dtype):
    """torch.optim.Adam/AdamW: parameters after every step, then the final moments."""
    spec = json.loads(str(TORCH[f"{name}/spec"]))
    key = f"{name}/{dtype}"
    n = sum(1 for k in TORCH.files if k.startswith(f"{key}/init"))
    params = [TORCH[f"{key}/init{k}"].copy() for k in range(n)]
    grads = [TORCH[f"{key}/grads{k}"] for k in range(n)]
    order = [i for g in spec["groups"] for i in g["tensors"]]
    opt = _build_torch(spec, params)
    out = []
    for t in range(grads[0].shape[0]):
        if spec.get("lr_edit", {}).get("step") == t:
            opt.param_groups[spec["lr_edit"]["group"]]["lr"] = spec["lr_edit"]["lr"]
        if spec.get("roundtrip_at") == t:
            sd = opt.state_dict()
            opt = _build_torch(spec, params)
            opt.load_state_dict(sd)
        opt.step([grads[k][t] for k in order])
        out += [(f"tensor {k} after step {t + 1}", params[k].copy(), TORCH[f"{key}/traj{k}"][t])
                for k in range(n)]
    state = opt.state_dict()["state"]
    for pos, k in enumerate(order):
        for field in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            if f"{key}/{field}{k}" in TORCH.files:
                out.append((f"{field} of tensor {k}", state[pos][field],
                            TORCH[f"{key}/{field}{k}"]))
    return out


def _case(prefix, name):
    init = [KERAS_MLX[f"{prefix}/{name}/init{k}"].copy() for k in range(2)]
    grads = [KERAS_MLX[f"{prefix}/{name}/grads{k}"] for k in range(2)]
    traj = [KERAS_MLX[f"{prefix}/{name}/traj{k}"] for k in range(2)]
    return json.loads(str(KERAS_MLX[f"{prefix}/{name}/spec"])), init, grads, traj


def keras3(name):
    """keras.optimizers.Adam (Keras 3): parameters after every step."""
    spec, params, grads, traj = _case("keras", name)
    if isinstance(spec["learning_rate"], dict):
        spec["learning_rate"] = schedules.from_config(spec["learning_rate"])
    opt = keras.Adam(**spec)
    out = []
    for t in range(grads[0].shape[0]):
        assert opt.apply_gradients([(grads[0][t], params[0]), (grads[1][t], params[1])]) == t + 1
        out += [(f"tensor {k} after step {t + 1}", params[k].copy(), traj[k][t])
                for k in range(2)]
    return out


def mlx_optimizers(name):
    """mlx.optimizers.Adam/AdamW: parameters after every step."""
    (kind, spec), params, grads, traj = _case("mlx", name)
    if isinstance(spec["learning_rate"], dict):
        spec["learning_rate"] = schedules.from_config(spec["learning_rate"])
    spec["betas"] = tuple(spec.get("betas", (0.9, 0.999)))
    opt = getattr(mlx, kind)(**spec)
    tree = {"a": params[0], "b": [params[1]]}
    out = []
    for t in range(grads[0].shape[0]):
        assert opt.update(tree, {"a": grads[0][t], "b": [grads[1][t]]}) is tree
        out += [(f"tensor {k} after step {t + 1}", value.copy(), traj[k][t])
                for k, value in enumerate((tree["a"], tree["b"][0]))]
    assert opt.step == grads[0].shape[0]
    return out


def keras_legacy(name):
    """tf_keras.optimizers.legacy.Adam: parameters after every step, then its weights."""
    spec = json.loads(str(LEGACY[f"{name}/spec"]))
    spec["lr"] = spec.pop("learning_rate")
    params = [LEGACY[f"{name}/init{k}"].copy() for k in range(2)]
    grads = [LEGACY[f"{name}/grads{k}"] for k in range(2)]
    opt = legacy.Adam(**spec)
    out = []
    for t in range(grads[0].shape[0]):
        opt.apply_gradients([(grads[0][t], params[0]), (grads[1][t], params[1])])
        out += [(f"tensor {k} after step {t + 1}", params[k].copy(),
                 LEGACY[f"{name}/traj{k}"][t]) for k in range(2)]
    ours = opt.get_weights()
    theirs = [LEGACY[f"{name}/weight{i}"] for i in range(7) if f"{name}/weight{i}" in LEGACY.files]
    assert int(ours[0]) == int(theirs[0])
    # tf_keras omits the 1-element vhat placeholders
    out += [(f"weight {i + 1}", a, b) for i, (a, b) in enumerate(zip(ours[1:], theirs[1:]))]
    return out


def max_relative_error(pairs) -> float:
    """Largest |ours - theirs| relative to the recorded tensor's largest magnitude, over
    every pair (elements near zero do not blow it up)."""
    worst = 0.0
    for _, ours, theirs in pairs:
        theirs = np.asarray(theirs, dtype=np.float64)
        diff = np.abs(np.asarray(ours, dtype=np.float64) - theirs)
        scale = max(float(np.max(np.abs(theirs), initial=0.0)), 1e-30)
        worst = max(worst, float(np.max(diff, initial=0.0)) / scale)
    return worst
