"""Replay trajectories recorded from the real torch.optim (tools/record_torch_trajectories.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

import numba_adam

DATA = np.load(Path(__file__).parent / "data" / "torch_adam.npz")
SCENARIOS = sorted({k.split("/")[0] for k in DATA.files if k.endswith("/spec")})
# torch's single-tensor path divides by sqrt(bc2) where the kernel multiplies
# by its reciprocal: a few ulps per step.
TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-13)}


def build(spec, params):
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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", SCENARIOS)
def test_matches_recorded_torch_trajectory(name, dtype):
    spec = json.loads(str(DATA[f"{name}/spec"]))
    key = f"{name}/{dtype}"
    n = sum(1 for k in DATA.files if k.startswith(f"{key}/init"))
    params = [DATA[f"{key}/init{k}"].copy() for k in range(n)]
    grads = [DATA[f"{key}/grads{k}"] for k in range(n)]
    order = [i for g in spec["groups"] for i in g["tensors"]]
    opt = build(spec, params)
    for t in range(grads[0].shape[0]):
        if spec.get("lr_edit", {}).get("step") == t:
            opt.param_groups[spec["lr_edit"]["group"]]["lr"] = spec["lr_edit"]["lr"]
        if spec.get("roundtrip_at") == t:
            sd = opt.state_dict()
            opt = build(spec, params)
            opt.load_state_dict(sd)
        opt.step([grads[k][t] for k in order])
        for k in range(n):
            np.testing.assert_allclose(params[k], DATA[f"{key}/traj{k}"][t], **TOL[dtype],
                                       err_msg=f"tensor {k} after step {t + 1}")
    state = opt.state_dict()["state"]
    for pos, k in enumerate(order):
        for field in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            if f"{key}/{field}{k}" in DATA.files:
                np.testing.assert_allclose(state[pos][field], DATA[f"{key}/{field}{k}"], **TOL[dtype])


def test_live_torch_state_dict_imports_and_continues():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    init = rng.standard_normal((4, 3))
    tp = torch.tensor(init.copy(), requires_grad=True)
    topt = torch.optim.AdamW([tp], lr=0.05, amsgrad=True)
    grads = rng.standard_normal((6, 4, 3))
    for g in grads[:3]:
        tp.grad = torch.tensor(g)
        topt.step()
    p = tp.detach().numpy().copy()
    opt = numba_adam.AdamW([p], lr=0.05, amsgrad=True)
    opt.load_state_dict(topt.state_dict())
    for g in grads[3:]:
        tp.grad = torch.tensor(g)
        topt.step()
        opt.step([g])
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12)
