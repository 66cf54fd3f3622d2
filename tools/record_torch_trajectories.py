"""Record Adam/AdamW trajectories from the real torch.optim into tests/data/.

Run with torch installed (``pip install torch``):
    python tools/record_torch_trajectories.py
The tests replay every scenario on numba_adam and compare, without torch.
"""

import itertools
import json
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "torch_adam.npz"
SHAPES = [(4, 3), (5,), (), (2, 1, 3)]
STEPS = 6


def scenarios():
    """Every option combination on one group, plus groups, lr edits and a state round trip."""
    for optimizer, amsgrad, maximize, wd in itertools.product(
            ("Adam", "AdamW", "AdamDecoupled"), (False, True), (False, True), (0.0, 0.1)):
        if optimizer != "Adam" and wd == 0.0:
            continue
        opts = dict(lr=0.01, amsgrad=amsgrad, maximize=maximize, weight_decay=wd)
        yield (f"{optimizer}-ams{int(amsgrad)}-max{int(maximize)}-wd{wd}",
               dict(optimizer=optimizer, defaults=opts, groups=[dict(tensors=[0, 1, 2, 3])]))
    yield "two-groups", dict(optimizer="Adam", defaults=dict(lr=0.01), groups=[
        dict(tensors=[0, 2]),
        dict(tensors=[1, 3], lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.2, amsgrad=True)])
    yield "lr-edit", dict(optimizer="AdamW", defaults=dict(lr=0.02, weight_decay=0.05),
                          groups=[dict(tensors=[0, 1]), dict(tensors=[2, 3], lr=0.001)],
                          lr_edit=dict(step=3, group=1, lr=0.03))
    yield "state-roundtrip", dict(optimizer="Adam", defaults=dict(lr=0.01, amsgrad=True),
                                  groups=[dict(tensors=[0, 1, 2, 3])], roundtrip_at=3)


def make(kind, groups, defaults):
    if kind == "Adam":
        return torch.optim.Adam(groups, **defaults)
    if kind == "AdamW":
        return torch.optim.AdamW(groups, **defaults)
    return torch.optim.Adam(groups, decoupled_weight_decay=True, **defaults)


def record():
    out = {}
    rng = np.random.default_rng(1234)
    for name, spec in scenarios():
        for dtype in ("float32", "float64"):
            key = f"{name}/{dtype}"
            init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
            grads = [rng.standard_normal((STEPS,) + s).astype(dtype) for s in SHAPES]
            params = [torch.tensor(x.copy(), requires_grad=True) for x in init]

            def groups_of(ps):
                return [dict({k: v for k, v in g.items() if k != "tensors"},
                             params=[ps[i] for i in g["tensors"]]) for g in spec["groups"]]

            opt = make(spec["optimizer"], groups_of(params), spec["defaults"])
            traj = [np.empty((STEPS,) + s, dtype) for s in SHAPES]
            for t in range(STEPS):
                if spec.get("lr_edit", {}).get("step") == t:
                    opt.param_groups[spec["lr_edit"]["group"]]["lr"] = spec["lr_edit"]["lr"]
                if spec.get("roundtrip_at") == t:
                    sd = opt.state_dict()
                    opt = make(spec["optimizer"], groups_of(params), spec["defaults"])
                    opt.load_state_dict(sd)
                for p, g in zip(params, grads):
                    p.grad = torch.tensor(g[t])
                opt.step()
                for k, p in enumerate(params):
                    traj[k][t] = p.detach().numpy()
            for k in range(len(SHAPES)):
                out[f"{key}/init{k}"] = init[k]
                out[f"{key}/grads{k}"] = grads[k]
                out[f"{key}/traj{k}"] = traj[k]
            state = opt.state_dict()["state"]
            order = [i for g in spec["groups"] for i in g["tensors"]]
            for pos, k in enumerate(order):
                for field in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                    if field in state[pos]:
                        out[f"{key}/{field}{k}"] = state[pos][field].numpy()
        out[f"{name}/spec"] = np.array(json.dumps(spec))
    out["torch_version"] = np.array(torch.__version__)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {sum(1 for _ in scenarios())} scenarios)")


if __name__ == "__main__":
    record()
