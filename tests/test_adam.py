"""Adam/AdamW kernels against the NumPy reference, over dtypes, options and input paths."""

import numpy as np
import pytest

import numba_adam
from cases import dtypes, options, tolerance
from reference import torch_adam

SHAPES = [(7, 5), (11,), (), (3, 1, 4), (0,)]
STEPS = 4


def make_problem(rng, dtype, shapes=SHAPES, steps=STEPS):
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    return init, grads


def check_against_reference(opt, params, init, grads, options, dtype, lr=1e-2):
    for k, p in enumerate(params):
        expected, state = torch_adam(init[k], [g[k] for g in grads], lr=lr, **options)
        np.testing.assert_allclose(p, expected, **tolerance(dtype))
        sd = opt.state_dict()["state"].get(k)
        if p.size and sd is not None:
            np.testing.assert_allclose(sd["exp_avg"], state["m"], **tolerance(dtype))
            np.testing.assert_allclose(sd["exp_avg_sq"], state["v"], **tolerance(dtype))
            if options.get("amsgrad"):
                np.testing.assert_allclose(sd["max_exp_avg_sq"], state["v_max"], **tolerance(dtype))
            assert sd["step"] == len(grads)


@dtypes
@options
def test_paramBuffer_path_matches_reference(rng, dtype, options):
    init, grads = make_problem(rng, dtype)
    buf = numba_adam.ParamBuffer({f"p{k}": x for k, x in enumerate(init)}, dtype=dtype)
    opt = numba_adam.Adam(buf, lr=1e-2, **options)
    for step_grads in grads:
        for k, g in enumerate(step_grads):
            buf.grads[f"p{k}"][...] = g
        opt.step()
    check_against_reference(opt, buf.values(), init, grads, options, dtype)


@dtypes
@options
def test_plain_arrays_are_updated_in_place(rng, dtype, options):
    init, grads = make_problem(rng, dtype)
    params = [x.copy() for x in init]
    opt = numba_adam.Adam(params, lr=1e-2, **options)
    for step_grads in grads:
        opt.step(step_grads)
    check_against_reference(opt, params, init, grads, options, dtype)


@dtypes
def test_fortran_order_params_and_strided_grads(rng, dtype):
    init, grads = make_problem(rng, dtype, shapes=[(6, 4), (5, 3)])
    params = [np.asfortranarray(init[0]), init[1].copy()]
    opt = numba_adam.Adam(params, lr=1e-2, amsgrad=True)
    for step_grads in grads:
        # a C-ordered grad for the F-ordered param, and a non-contiguous one
        strided = np.zeros((10, 3), dtype)[::2]
        strided[...] = step_grads[1]
        opt.step([np.ascontiguousarray(step_grads[0]), strided])
    check_against_reference(opt, params, init, grads, dict(amsgrad=True), dtype)
    m = opt.state_dict()["state"][0]["exp_avg"]
    assert m.shape == (6, 4)


@dtypes
def test_large_model_uses_parallel_kernel_and_matches(rng, dtype):
    init, grads = make_problem(rng, dtype, shapes=[(300, 257), (40_000,), (3,)], steps=2)
    buf = numba_adam.ParamBuffer({str(k): x for k, x in enumerate(init)}, dtype=dtype)
    opt = numba_adam.Adam(buf, lr=1e-2, amsgrad=True)
    for step_grads in grads:
        opt.step([g for g in step_grads])
    check_against_reference(opt, buf.values(), init, grads, dict(amsgrad=True), dtype)


def test_dict_params_and_dict_grads(rng):
    params = {"w": rng.standard_normal((3, 2)).astype(np.float32),
              "b": np.zeros(2, np.float32)}
    init = {k: v.copy() for k, v in params.items()}
    opt = numba_adam.Adam(params, lr=0.1)
    g = {"b": np.ones(2, np.float32), "w": np.full((3, 2), -1, np.float32)}
    opt.step(g)
    np.testing.assert_allclose(params["w"], init["w"] + 0.1, rtol=1e-6)
    np.testing.assert_allclose(params["b"], init["b"] - 0.1, rtol=1e-6)
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]


@pytest.mark.parametrize("state_bits", [32, 16, 8])
def test_a_none_gradient_leaves_that_tensor_and_its_state_alone(rng, state_bits):
    init, grads = make_problem(rng, np.float32, shapes=[(300,), (5, 4), (7,)])
    params = [x.copy() for x in init]
    opt = numba_adam.Adam(params, lr=0.01, state_bits=state_bits, min_8bit_size=1)
    opt.step(grads[0])
    held, held_state = params[1].copy(), opt.tensor_state(1)
    for step_grads in grads[1:]:
        opt.step([step_grads[0], None, step_grads[2]])
    np.testing.assert_array_equal(params[1], held)
    for saved, now in zip(held_state, opt.tensor_state(1)):
        assert (saved is None and now is None) or np.array_equal(saved, now)
    assert opt.param_groups[0].updates == len(grads)     # the group's count still advances
    if state_bits == 32:          # the others step as if the held tensor were not there
        others = [init[0].copy(), init[2].copy()]
        alone = numba_adam.Adam(others, lr=0.01)
        for step_grads in grads:
            alone.step([step_grads[0], step_grads[2]])
        np.testing.assert_array_equal(params[0], others[0])
        np.testing.assert_array_equal(params[2], others[1])


def test_param_groups_have_their_own_hyperparameters(rng):
    init, grads = make_problem(rng, np.float64, shapes=[(4,), (3,)])
    a, b = init[0].copy(), init[1].copy()
    opt = numba_adam.Adam([{"params": [a]}, {"params": [b], "lr": 0.5, "amsgrad": True}], lr=0.01)
    for step_grads in grads:
        opt.step(step_grads)
    ra, _ = torch_adam(init[0], [g[0] for g in grads], lr=0.01)
    rb, _ = torch_adam(init[1], [g[1] for g in grads], lr=0.5, amsgrad=True)
    np.testing.assert_allclose(a, ra, rtol=1e-12)
    np.testing.assert_allclose(b, rb, rtol=1e-12)


def test_lr_edit_takes_effect_at_next_step(rng):
    init, grads = make_problem(rng, np.float64, shapes=[(5,)])
    p = init[0].copy()
    opt = numba_adam.Adam([p], lr=0.01)
    opt.step(grads[0])
    opt.param_groups[0]["lr"] = 0.2
    for g in grads[1:]:
        opt.step(g)
    expected, _ = torch_adam(init[0], [g[0] for g in grads], lr=[0.01] + [0.2] * (STEPS - 1))
    np.testing.assert_allclose(p, expected, rtol=1e-12)


def test_add_param_group_keeps_existing_state(rng):
    init, grads = make_problem(rng, np.float64, shapes=[(5,), (3,)])
    a, b = init[0].copy(), init[1].copy()
    opt = numba_adam.Adam([a], lr=0.01)
    opt.step([grads[0][0]])
    opt.add_param_group({"params": [b], "lr": 0.1})
    for g in grads[1:]:
        opt.step(g)
    ra, _ = torch_adam(init[0], [g[0] for g in grads], lr=0.01)
    rb, _ = torch_adam(init[1], [g[1] for g in grads[1:]], lr=0.1)
    np.testing.assert_allclose(a, ra, rtol=1e-12)
    np.testing.assert_allclose(b, rb, rtol=1e-12)
    steps = [s["step"] for s in opt.state_dict()["state"].values()]
    assert steps == [STEPS, STEPS - 1]


def test_turning_amsgrad_on_starts_a_fresh_maximum(rng):
    init, grads = make_problem(rng, np.float64, shapes=[(6,)])
    p = init[0].copy()
    opt = numba_adam.Adam([p], lr=0.01)
    opt.step(grads[0])
    opt.param_groups[0]["amsgrad"] = True
    opt.step(grads[1])
    state = opt.state_dict()["state"][0]
    np.testing.assert_array_equal(state["max_exp_avg_sq"], state["exp_avg_sq"])


def test_adamw_is_adam_with_decoupled_decay(rng):
    init, grads = make_problem(rng, np.float32, shapes=[(9,)])
    p1, p2 = init[0].copy(), init[0].copy()
    o1 = numba_adam.AdamW([p1], lr=0.01, weight_decay=0.3)
    o2 = numba_adam.Adam([p2], lr=0.01, weight_decay=0.3, decoupled_weight_decay=True)
    for g in grads:
        o1.step(g)
        o2.step(g)
    np.testing.assert_array_equal(p1, p2)
    assert o1.param_groups[0]["decoupled_weight_decay"] is True


def test_closure_is_called_first_and_its_loss_returned(rng):
    buf = numba_adam.ParamBuffer({"w": np.ones(3)})
    calls = []

    def closure():
        calls.append(buf["w"].copy())
        buf.grads["w"][...] = 1.0
        return 42.0

    assert numba_adam.Adam(buf, lr=0.1).step(closure=closure) == 42.0
    np.testing.assert_array_equal(calls[0], np.ones(3))
    np.testing.assert_allclose(buf["w"], 0.9, rtol=1e-6)


def test_zero_grad_clears_only_the_optimizers_views():
    buf = numba_adam.ParamBuffer({"a": np.ones(3), "b": np.ones(2), "c": np.ones(4)})
    buf.grad[:] = 5
    opt = numba_adam.Adam([buf["a"], buf["c"]])
    opt.zero_grad()
    assert buf.grads["a"].sum() == 0 and buf.grads["c"].sum() == 0
    assert buf.grads["b"].sum() == 10


def test_views_of_a_paramBuffer_read_their_grad_views(rng):
    buf = numba_adam.ParamBuffer({"a": np.zeros(3), "b": np.zeros(2)})
    opt = numba_adam.Adam([{"params": [buf["b"]], "lr": 1.0}, {"params": [buf["a"]]}], lr=0.1)
    buf.grad[:] = 1.0
    opt.step()
    np.testing.assert_allclose(buf["b"], -1.0, rtol=1e-6)
    np.testing.assert_allclose(buf["a"], -0.1, rtol=1e-6)


def test_non_finite_gradients_propagate_like_torch():
    p = np.zeros(3, np.float32)
    opt = numba_adam.Adam([p], lr=0.1)
    opt.step([np.array([np.nan, np.inf, 1.0], np.float32)])
    assert np.isnan(p[0]) and np.isnan(p[1]) and np.isfinite(p[2])


@pytest.mark.parametrize("dtype, state_bits", [(np.float32, 32), (np.float64, 32),
                                               (np.float32, 16)])
def test_moments_that_would_go_subnormal_are_stored_as_zero(rng, dtype, state_bits):
    """Zero gradients shrink m by beta1 a step, into subnormal numbers after ~800 steps
    (x86 computes with those 10-100x slower).  Below 2**-126 a moment is stored as 0;
    the parameters still follow torch's rule, whose subnormal moments move nothing."""
    tiny = 2.0 ** -126
    p0 = rng.standard_normal(64).astype(dtype)
    first = (rng.standard_normal(64) * 1e-3).astype(dtype)
    grads = [first] + [np.zeros(64, dtype)] * 899
    p = p0.copy()
    opt = numba_adam.Adam([p], lr=1e-3, state_bits=state_bits)
    for g in grads:
        opt.step([g])
    want_p, want = torch_adam(p0, grads, lr=1e-3)
    close = tolerance(dtype) if state_bits == 32 else dict(rtol=2e-3)   # bf16 moments
    np.testing.assert_allclose(p, want_p, **close)
    state = opt.state_dict()["state"][0]
    m, v = np.asarray(state["exp_avg"], np.float64), np.asarray(state["exp_avg_sq"], np.float64)
    assert np.all(np.abs(want["m"]) < tiny)          # torch's m went subnormal (in float32)
    assert np.all(m == 0)
    assert np.all((v == 0) | (v >= tiny)) and np.all(v > 0)   # v (0.999 a step) did not


@dtypes
def test_state_dict_round_trip_continues_identically(rng, dtype):
    init, grads = make_problem(rng, dtype, shapes=[(4, 2), (3,)], steps=6)
    a = [x.copy() for x in init]
    b = [x.copy() for x in init]
    oa = numba_adam.Adam(a, lr=0.01, amsgrad=True, weight_decay=0.1)
    ob = numba_adam.Adam(b, lr=0.01, amsgrad=True, weight_decay=0.1)
    for g in grads[:3]:
        oa.step(g)
        ob.step(g)
    sd = oa.state_dict()
    fresh = numba_adam.Adam(b, lr=0.5)
    fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["lr"] == 0.01
    for g in grads[3:]:
        oa.step(g)
        fresh.step(g)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_state_dict_holds_copies():
    p = np.zeros(2)
    opt = numba_adam.Adam([p])
    opt.step([np.ones(2)])
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"][:] = 99
    assert opt.state_dict()["state"][0]["exp_avg"][0] != 99
