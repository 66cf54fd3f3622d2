"""numba_adam.torch against the real torch.optim.Adam/AdamW: same trajectories, same
state_dict, schedulers unchanged, compact state, master weights and bad input."""

import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import numba_adam                               # noqa: E402
import numba_adam.torch as nat                  # noqa: E402

# torch's single-tensor path divides by sqrt(bc2) where the kernel multiplies by its
# reciprocal: a few ulps per step (as in test_torch_trajectories.py)
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}
SHAPES = [(4, 3), (3,), (), (2, 5)]


def make_params(dtype=torch.float32, seed=0):
    """Parameters of mixed shapes: a 0-d one and a non-contiguous (transposed) one."""
    gen = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES]
    tensors[3] = tensors[3].t()              # (5, 2), not contiguous
    return [torch.nn.Parameter(t) for t in tensors]


def backward(params, step):
    """A loss whose gradient differs per element and per step; autograd leaves the
    gradient as a fresh tensor, or accumulates into the one there."""
    loss = sum((torch.sin(p * (1.0 + 0.1 * k) + step) * (k + 1)).sum()
               for k, p in enumerate(params))
    loss.backward()
    return loss


def train(optimizer, params, steps=8, set_to_none=True, scheduler=None):
    for step in range(steps):
        optimizer.zero_grad(set_to_none=set_to_none)
        backward(params, step)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def assert_same(ours, theirs, dtype=torch.float32):
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), **TOL[dtype])


OPTIONS = {
    "defaults": (torch.optim.Adam, nat.Adam, dict(lr=0.05)),
    "amsgrad": (torch.optim.Adam, nat.Adam, dict(lr=0.05, amsgrad=True)),
    "maximize": (torch.optim.Adam, nat.Adam, dict(lr=0.05, maximize=True)),
    "l2": (torch.optim.Adam, nat.Adam, dict(lr=0.05, weight_decay=0.1, betas=(0.8, 0.99))),
    "adamw": (torch.optim.AdamW, nat.AdamW, dict(lr=0.05)),
    "adamw_amsgrad": (torch.optim.AdamW, nat.AdamW, dict(lr=0.05, weight_decay=0.3,
                                                         amsgrad=True, eps=1e-6)),
    "decoupled": (torch.optim.Adam, nat.Adam, dict(lr=0.05, weight_decay=0.2,
                                                   decoupled_weight_decay=True)),
}


@pytest.mark.parametrize("set_to_none", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", OPTIONS)
def test_matches_torch_optim(name, dtype, set_to_none):
    torch_cls, our_cls, kwargs = OPTIONS[name]
    theirs, ours = make_params(dtype), make_params(dtype)
    train(torch_cls(theirs, **kwargs), theirs, set_to_none=set_to_none)
    train(our_cls(ours, **kwargs), ours, set_to_none=set_to_none)
    assert_same(ours, theirs, dtype)


def test_tensor_lr_and_param_groups_match_torch():
    def groups(params):
        return [{"params": params[:2], "lr": torch.tensor(0.02)},
                {"params": params[2:], "lr": 0.1, "amsgrad": True, "weight_decay": 0.01}]
    theirs, ours = make_params(), make_params()
    train(torch.optim.Adam(groups(theirs), lr=torch.tensor(0.05)), theirs)
    train(nat.Adam(groups(ours), lr=torch.tensor(0.05)), ours)
    assert_same(ours, theirs)


def test_model_parameters_share_the_flat_storage():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = nat.Adam(model.parameters(), lr=0.01)
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)                      # moving changed no value
    ptrs = sorted(p.data_ptr() for p in model.parameters())
    itemsize = 4
    sizes = {p.data_ptr(): p.numel() for p in model.parameters()}
    for a, b in zip(ptrs, ptrs[1:]):                  # one contiguous block, in order
        assert b - a == sizes[a] * itemsize
    for _ in range(2):          # the first backward makes fresh gradients; the second
        optimizer.zero_grad(set_to_none=False)        # accumulates into flat storage
        model(torch.randn(16, 4)).pow(2).mean().backward()
        optimizer.step()
    grads = [p.grad.data_ptr() for p in model.parameters()]
    assert grads == sorted(grads) and grads[-1] - grads[0] == (ptrs[-1] - ptrs[0])


def lockstep(pairs, steps):
    """Step each (parameters, optimizer) pair on the same gradients, step by step."""
    for step in steps:
        for params, optimizer in pairs:
            optimizer.zero_grad()
            backward(params, step)
            optimizer.step()


@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours"])
def test_state_dict_interchanges_with_torch(direction):
    kwargs = dict(lr=0.05, amsgrad=True, weight_decay=0.01)
    first, second = (nat.AdamW, torch.optim.AdamW)
    if direction == "torch_to_ours":
        first, second = second, first
    reference = make_params()
    ref_opt = torch.optim.AdamW(reference, **kwargs)
    params = make_params()
    opt = first(params, **kwargs)
    lockstep([(reference, ref_opt), (params, opt)], range(4))
    saved = copy.deepcopy(opt.state_dict())
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = second(resumed_params, **kwargs)
    resumed.load_state_dict(saved)
    lockstep([(reference, ref_opt), (resumed_params, resumed)], range(4, 8))
    assert_same(resumed_params, reference)
    torch_layout = ref_opt.state_dict()
    ours = (resumed if direction == "torch_to_ours" else opt).state_dict()
    assert set(ours["state"]) == set(torch_layout["state"])
    assert set(ours["state"][0]) == set(torch_layout["state"][0])
    assert ours["state"][0]["step"].dtype == torch_layout["state"][0]["step"].dtype
    assert set(torch_layout["param_groups"][0]) <= set(ours["param_groups"][0])


def test_state_view_reads_the_moments():
    theirs, ours = make_params(), make_params()
    t_opt, o_opt = torch.optim.Adam(theirs, lr=0.05), nat.Adam(ours, lr=0.05)
    assert len(o_opt.state) == 0 and ours[0] not in o_opt.state
    assert o_opt.state[ours[0]] == {}                # torch's defaultdict gives {} too
    train(t_opt, theirs, steps=3)
    train(o_opt, ours, steps=3)
    assert len(o_opt.state) == len(ours)
    for p, q in zip(ours, theirs):
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(o_opt.state[p][key].numpy(),
                                       t_opt.state[q][key].numpy(), **TOL[torch.float32])
        assert float(o_opt.state[p]["step"]) == 3


SCHEDULES = {
    "step": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
    # OneCycleLR cycles betas[0] too
    "one_cycle": lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1,
                                                                 total_steps=12),
    "lambda": lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1 / (1 + e)),
}


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_lr_schedulers_work_unchanged(schedule):
    results = []
    for cls in (torch.optim.Adam, nat.Adam):
        params = make_params()
        opt = cls(params, lr=0.05)
        train(opt, params, steps=12, scheduler=SCHEDULES[schedule](opt))
        results.append((params, opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]))
    (theirs, t_lr, t_betas), (ours, o_lr, o_betas) = results
    assert_same(ours, theirs)
    assert o_lr == t_lr and o_betas == t_betas


def test_add_param_group_matches_torch():
    results = []
    for cls in (torch.optim.Adam, nat.Adam):
        params = make_params()
        opt = cls(params[:2], lr=0.05)
        train(opt, params[:2], steps=3)
        opt.add_param_group({"params": params[2:], "lr": 0.01, "amsgrad": True})
        assert opt.param_groups[1]["betas"] == (0.9, 0.999)     # defaults filled in
        for step in range(3, 7):
            opt.zero_grad()
            backward(params, step)
            opt.step()
        results.append(params)
    assert_same(results[1], results[0])


def test_step_with_closure_returns_the_loss():
    results = []
    for cls in (torch.optim.Adam, nat.Adam):
        params = make_params()
        opt = cls(params, lr=0.05)
        losses = []
        for step in range(4):
            def closure():
                opt.zero_grad()
                return backward(params, step)
            losses.append(float(opt.step(closure).detach()))
        results.append((params, losses))
    assert_same(results[1][0], results[0][0])
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5)


def test_optimizer_hooks_run():
    params = make_params()
    opt = nat.Adam(params, lr=0.05)
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    opt.register_state_dict_post_hook(lambda o, sd: {**sd, "extra": 1})
    backward(params, 0)
    opt.step()
    assert calls == ["pre", "post"]
    assert opt.state_dict()["extra"] == 1


def test_global_step_hooks_run_and_a_removed_hook_stops():
    import torch.optim.optimizer as torch_optimizer
    params = make_params()
    opt = nat.Adam(params, lr=0.05)
    calls = []
    pre = torch_optimizer.register_optimizer_step_pre_hook(
        lambda o, a, k: calls.append(("pre", type(o).__name__)))
    post = torch_optimizer.register_optimizer_step_post_hook(
        lambda o, a, k: calls.append(("post", type(o).__name__)))
    try:
        backward(params, 0)
        opt.step()
    finally:
        pre.remove()
        post.remove()
    backward(params, 1)
    opt.step()                                   # no hook left: the direct path
    assert calls == [("pre", "Adam"), ("post", "Adam")]


def test_the_profiler_sees_the_step():
    params = make_params()
    opt = nat.Adam(params, lr=0.05)
    backward(params, 0)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    assert "Optimizer.step#Adam.step" in {e.key for e in prof.key_averages()}


def test_step_under_enable_grad_records_no_graph():
    torch_params = make_params()
    params = make_params()
    ref, opt = torch.optim.Adam(torch_params, lr=0.05), nat.Adam(params, lr=0.05)
    for step in range(3):
        for ps, o in ((torch_params, ref), (params, opt)):
            backward(ps, step)
            with torch.enable_grad():
                o.step()
    assert all(p.grad_fn is None and p.is_leaf for p in params)
    assert_same(params, torch_params)


# -- fast path -------------------------------------------------------------------
def record_core_steps(monkeypatch):
    """Which arrays each engine step read gradients from (None: the flat storage)."""
    calls = []
    real_step = numba_adam.optim.Adam.step

    def step(self, grads=None, closure=None):
        calls.append(None if grads is None else list(grads))
        return real_step(self, grads, closure)
    monkeypatch.setattr(numba_adam.optim.Adam, "step", step)
    return calls


def test_fresh_gradients_are_read_where_they_are_then_in_place(monkeypatch):
    params = make_params()
    opt = nat.Adam(params, lr=0.05)
    calls = record_core_steps(monkeypatch)
    backward(params, 0)                   # fresh gradients: read from the tensors, no copy
    opt.step()
    assert [a.ctypes.data for a in calls[0]] == [p.grad.data_ptr() for p in params]
    for step in range(1, 4):              # zeros in flat storage: backward accumulates there
        opt.zero_grad(set_to_none=False)
        backward(params, step)
        opt.step()
    assert calls[1:] == [None] * 3


def test_fresh_half_gradients_are_gathered_once_per_step(monkeypatch):
    model = torch.nn.Linear(4, 2).to(torch.bfloat16)
    opt = nat.Adam(model.parameters(), lr=0.01)
    gathered = []
    real_copy = torch._foreach_copy_
    monkeypatch.setattr(torch, "_foreach_copy_",
                        lambda *a, **k: (gathered.append(1), real_copy(*a, **k)))
    for set_to_none in (True, True, False, False):
        opt.zero_grad(set_to_none=set_to_none)
        model(torch.ones(3, 4, dtype=torch.bfloat16)).float().sum().backward()
        opt.step()
    # zero_grad(set_to_none=False) puts the flat slices back: in place from then on
    assert gathered == [1, 1]


def test_all_gradients_none_steps_nothing():
    params = make_params()
    opt = nat.Adam(params, lr=0.05)
    before = [p.detach().clone() for p in params]
    opt.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert len(opt.state) == 0


def frozen(params, count=2):
    """``params`` with the first ``count`` frozen (no gradient ever), as in fine-tuning."""
    for p in params[:count]:
        p.requires_grad_(False)
    return params


@pytest.mark.parametrize("set_to_none", [True, False])
@pytest.mark.parametrize("name", ["defaults", "amsgrad", "adamw"])
def test_frozen_parameters_are_skipped_as_in_torch(name, set_to_none):
    torch_cls, our_cls, kwargs = OPTIONS[name]
    theirs, ours = frozen(make_params()), frozen(make_params())
    their_opt, our_opt = torch_cls(theirs, **kwargs), our_cls(ours, **kwargs)
    before = snapshot(ours[:2])
    train(their_opt, theirs, set_to_none=set_to_none)
    train(our_opt, ours, set_to_none=set_to_none)
    assert_same(ours, theirs)
    assert_unchanged(ours[:2], before)
    assert sorted(our_opt.state_dict()["state"]) == sorted(their_opt.state_dict()["state"])
    assert [p in our_opt.state for p in ours] == [False, False, True, True]


@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours"])
def test_frozen_parameters_state_dict_interchanges_with_torch(direction):
    first, second = (nat.Adam, torch.optim.Adam)
    if direction == "torch_to_ours":
        first, second = second, first
    reference = frozen(make_params())
    ref_opt = torch.optim.Adam(reference, lr=0.05)
    params = frozen(make_params())
    opt = first(params, lr=0.05)
    lockstep([(reference, ref_opt), (params, opt)], range(4))
    resumed_params = frozen([torch.nn.Parameter(p.detach().clone()) for p in params])
    resumed = second(resumed_params, lr=0.05)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    lockstep([(reference, ref_opt), (resumed_params, resumed)], range(4, 8))
    assert_same(resumed_params, reference)
    assert sorted(resumed.state_dict()["state"]) == [2, 3]


@pytest.mark.parametrize("bits", [16, 8])
def test_frozen_parameters_with_low_bit_state_resume_bit_exact(bits):
    params = frozen(make_params())
    opt = nat.Adam(params, lr=0.05, state_bits=bits, min_8bit_size=1)
    train(opt, params, steps=3)
    twins = frozen([torch.nn.Parameter(p.detach().clone()) for p in params])
    twin = nat.Adam(twins, lr=0.05, state_bits=bits, min_8bit_size=1)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    train(opt, params, steps=3)
    train(twin, twins, steps=3)
    assert all(torch.equal(a, b) for a, b in zip(params, twins))
    assert_state_equal(opt.state_dict(), twin.state_dict())


def test_unfrozen_parameter_is_refused_and_nothing_changes():
    params = frozen(make_params(), count=1)
    opt = nat.Adam(params, lr=0.05)
    train(opt, params, steps=2)
    saved = copy.deepcopy(opt.state_dict())
    params[0].requires_grad_(True)
    opt.zero_grad()
    backward(params, 2)
    before = snapshot(params)
    with pytest.raises(ValueError, match=r"first gradient at step 3 .*add_param_group"):
        opt.step()
    assert_unchanged(params, before)
    assert_state_equal(opt.state_dict(), saved)


def test_unfreezing_with_add_param_group_matches_torch():
    theirs, ours = frozen(make_params()), frozen(make_params())
    for params, cls in ((theirs, torch.optim.Adam), (ours, nat.Adam)):
        opt = cls(params[2:], lr=0.05)
        train(opt, params, steps=3)
        for p in params[:2]:
            p.requires_grad_(True)
        opt.add_param_group({"params": params[:2], "lr": 0.02})
        train(opt, params, steps=3)
    assert_same(ours, theirs)


# -- compact state and master weights --------------------------------------------
@pytest.mark.parametrize("bits", [16, 8])
def test_low_bit_state_is_numba_adams(bits):
    """The same data through numba_adam.Adam on a ParamBuffer gives the same bits."""
    params = make_params()
    values = {f"0.{j}": p.detach().numpy().copy() for j, p in enumerate(params)}
    buffer = numba_adam.ParamBuffer(values, dtype=np.float32)
    kwargs = dict(lr=0.05, state_bits=bits, seed=7, min_8bit_size=4)
    core = numba_adam.Adam(buffer, **kwargs)
    opt = nat.Adam(params, **kwargs)
    for step in range(6):
        opt.zero_grad()
        backward(params, step)
        core.step([p.grad.numpy().copy() for p in params])
        opt.step()
    for j, p in enumerate(params):
        np.testing.assert_array_equal(p.detach().numpy(), buffer[f"0.{j}"])


@pytest.mark.parametrize("cls,bits", [(nat.Adam8bit, 8), (nat.AdamW8bit, 8),
                                      (nat.Adam, 16)])
def test_low_bit_state_dict_resumes_bit_exact(cls, bits):
    kwargs = {"min_8bit_size": 4} if bits == 8 else {"state_bits": bits}
    straight, resumed_params = make_params(), None
    opt = cls(straight, lr=0.05, **kwargs)
    train(opt, straight, steps=3)
    saved = copy.deepcopy(opt.state_dict())
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in straight]
    resumed = cls(resumed_params, lr=0.05, **kwargs)
    resumed.load_state_dict(saved)
    for step in range(3, 7):
        for ps, o in ((straight, opt), (resumed_params, resumed)):
            o.zero_grad()
            backward(ps, step)
            o.step()
    for a, b in zip(straight, resumed_params):
        assert torch.equal(a, b)
    dense = opt.state_dict(dequantize=True)["state"][0]
    assert dense["exp_avg"].dtype == torch.float32


def regression(dtype, steps=300, lr=0.01):
    """Fit a linear model with ``dtype`` parameters; the float32 loss of the result."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(256, 8, generator=gen)
    y = x @ torch.linspace(-1, 1, 8) + 0.5
    model = torch.nn.Linear(8, 1).to(dtype)
    torch.manual_seed(2)
    model.reset_parameters()
    opt = nat.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x.to(dtype)).squeeze(1), y.to(dtype)).backward()
        opt.step()
    with torch.no_grad():
        output = torch.nn.functional.linear(x, model.weight.float(), model.bias.float())
        return float(torch.nn.functional.mse_loss(output.squeeze(1), y)), opt, model


def test_bf16_parameters_train_like_fp32_through_master_weights():
    fp32_loss, _, _ = regression(torch.float32)
    bf16_loss, opt, model = regression(torch.bfloat16)
    assert fp32_loss < 1e-3
    assert bf16_loss < 1e-3                   # bf16 steps alone stall near 1e-2 here
    state = opt.state_dict()["state"]
    for j, p in enumerate(model.parameters()):
        master = state[j]["master_param"]
        assert master.dtype == torch.float32 and p.dtype == torch.bfloat16
        assert torch.equal(master.to(torch.bfloat16), p.detach())


def test_bf16_master_weights_resume_bit_exact_and_from_torch():
    def fresh():
        torch.manual_seed(3)
        return torch.nn.Linear(6, 3).to(torch.bfloat16)

    def steps(model, opt, start, stop):
        for step in range(start, stop):
            opt.zero_grad()
            gen = torch.Generator().manual_seed(step)
            x = torch.randn(4, 6, generator=gen).to(torch.bfloat16)
            model(x).float().pow(2).mean().backward()
            opt.step()

    straight = fresh()
    opt = nat.Adam(straight.parameters(), lr=0.02)
    steps(straight, opt, 0, 3)
    saved = copy.deepcopy(opt.state_dict())
    steps(straight, opt, 3, 6)
    resumed = fresh()
    resumed_opt = nat.Adam(resumed.parameters(), lr=0.02)
    resumed_opt.load_state_dict(saved)
    steps(resumed, resumed_opt, 3, 6)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    # torch.optim.Adam's own bf16 state (no master weights) loads: masters from the params
    t_model = fresh()
    t_opt = torch.optim.Adam(t_model.parameters(), lr=0.02)
    steps(t_model, t_opt, 0, 2)
    ours = nat.Adam(t_model.parameters(), lr=0.02)
    ours.load_state_dict(t_opt.state_dict())
    steps(t_model, ours, 2, 4)
    assert all(torch.isfinite(p).all() for p in t_model.parameters())


# -- bad input: a clear error, nothing changed --------------------------------------
def snapshot(params):
    return [(p.detach().clone(), p.data_ptr(), None if p.grad is None else p.grad.clone())
            for p in params]


def assert_unchanged(params, before):
    for p, (value, ptr, grad) in zip(params, before):
        assert torch.equal(p.detach(), value) and p.data_ptr() == ptr
        assert (p.grad is None) == (grad is None)
        if grad is not None:
            assert torch.equal(p.grad, grad)


BAD_PARAMS = {
    "meta device": (lambda: [torch.nn.Parameter(torch.zeros(3, device="meta"))], "CPU tensors"),
    "complex": (lambda: [torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))], "complex"),
    "integer": (lambda: [torch.zeros(3, dtype=torch.int64)], "dtype"),
    "non-leaf": (lambda: [torch.zeros(3, requires_grad=True) * 2], "leaf"),
    "mixed dtypes": (lambda: [torch.nn.Parameter(torch.zeros(3)),
                              torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))], "dtype"),
    "sparse param": (lambda: [torch.nn.Parameter(torch.zeros(3).to_sparse())], "layout"),
}


@pytest.mark.parametrize("case", BAD_PARAMS)
def test_bad_parameters_are_refused(case):
    make, message = BAD_PARAMS[case]
    params = make()
    with pytest.raises((TypeError, ValueError), match=message):
        nat.Adam(params, lr=0.01)


def test_refused_optimizer_leaves_tensors_alone():
    good = make_params()
    for p in good:
        p.grad = torch.ones_like(p)
    before = snapshot(good)
    bad = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype"):
        nat.Adam([{"params": good}, {"params": [bad]}])
    with pytest.raises(ValueError, match="more than one"):      # torch's own check
        nat.Adam([{"params": good[:2]}, {"params": good[1:]}])
    with pytest.raises(ValueError, match="capturable"):
        nat.Adam(good, capturable=True)
    with pytest.raises(ValueError, match="lr"):
        nat.Adam(good, lr=-1.0)
    assert_unchanged(good, before)
    opt = nat.Adam(good[:2])
    with pytest.raises(TypeError, match="dtype"):
        opt.add_param_group({"params": [bad]})
    assert len(opt.param_groups) == 1
    assert_unchanged(good[2:], before[2:])


def test_sparse_gradient_is_refused_and_nothing_steps():
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    opt = nat.Adam(embedding.parameters(), lr=0.1)
    embedding(torch.tensor([1, 2])).sum().backward()
    before = embedding.weight.detach().clone()
    with pytest.raises(TypeError, match="sparse"):
        opt.step()
    assert torch.equal(embedding.weight.detach(), before) and len(opt.state) == 0


def test_gradients_for_only_some_parameters_are_refused():
    params = make_params()
    opt = nat.Adam(params, lr=0.05)
    train(opt, params, steps=2)
    saved = copy.deepcopy(opt.state_dict())
    opt.zero_grad()
    params[0].grad = torch.ones_like(params[0])
    before = snapshot(params)
    with pytest.raises(ValueError, match="no gradient"):
        opt.step()
    assert_unchanged(params, before)
    assert_state_equal(opt.state_dict(), saved)


def test_bad_hyperparameter_edit_is_refused_at_step():
    params = make_params()
    opt = nat.Adam(params, lr=0.05)
    train(opt, params, steps=1)
    opt.param_groups[0]["betas"] = (0.9, 1.5)
    backward(params, 1)
    before = snapshot(params)
    with pytest.raises(ValueError, match=r"param_groups\[0\].*beta"):
        opt.step()
    assert_unchanged(params, before)


def assert_state_equal(a, b):
    assert a["state"].keys() == b["state"].keys()
    for key in a["state"]:
        for name, value in a["state"][key].items():
            assert torch.equal(value, b["state"][key][name]), (key, name)


STATE_DICT_CASES = {
    "another optimizer": (lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
                          "momentum"),
    "other shapes": (lambda params: torch.optim.Adam([torch.nn.Parameter(torch.zeros(s))
                                                      for s in [(2,), (3,), (), (5, 2)]]),
                     "shape"),
    "fewer params": (lambda params: torch.optim.Adam(params[:3]), "param"),
}


@pytest.mark.parametrize("case", STATE_DICT_CASES)
def test_state_dict_that_does_not_fit_is_refused(case):
    make, message = STATE_DICT_CASES[case]
    other_params = make_params(seed=1)
    other = make(other_params)
    backward(other.param_groups[0]["params"], 0)
    other.step()
    params = make_params()
    opt = nat.Adam(params, lr=0.05)
    train(opt, params, steps=2)
    saved, before = copy.deepcopy(opt.state_dict()), snapshot(params)
    with pytest.raises((ValueError, TypeError), match=message):
        opt.load_state_dict(other.state_dict())
    assert_state_equal(opt.state_dict(), saved)
    assert opt.param_groups[0]["lr"] == 0.05
    assert_unchanged(params, before)


def test_cannot_be_pickled_or_copied():
    opt = nat.Adam(make_params())
    with pytest.raises(TypeError, match="state_dict"):
        pickle.dumps(opt)
    with pytest.raises(TypeError, match="state_dict"):
        copy.deepcopy(opt)


def test_the_core_never_imports_torch():
    code = ("import sys, numba_adam, numba_adam.compat, numba_adam.cli; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
