"""Replay trajectories recorded from the real torch.optim (tools/record_torch_trajectories.py)."""

import numpy as np
import pytest

import numba_adam
import replay

# torch's single-tensor path divides by sqrt(bc2) where the kernel multiplies
# by its reciprocal: a few ulps per step.
TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-13)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", replay.TORCH_SCENARIOS)
def test_matches_recorded_torch_trajectory(name, dtype):
    for label, ours, theirs in replay.torch(name, dtype):
        np.testing.assert_allclose(ours, theirs, **TOL[dtype], err_msg=label)


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
