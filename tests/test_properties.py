"""Hypothesis properties of the kernel over any shapes and finite values."""

import numpy as np
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import numba_adam
from cases import tolerance
from reference import torch_adam

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)


@st.composite
def problems(draw, steps=3):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    tensor_shapes = draw(st.lists(shapes, min_size=1, max_size=4))
    init = [draw(hnp.arrays(dtype, s, elements=finite)) for s in tensor_shapes]
    grads = [[draw(hnp.arrays(dtype, s, elements=finite)) for s in tensor_shapes]
             for _ in range(steps)]
    options = draw(st.fixed_dictionaries({
        "amsgrad": st.booleans(), "maximize": st.booleans(),
        "weight_decay": st.sampled_from([0.0, 0.01]),
        "decoupled_weight_decay": st.booleans(),
    }))
    return dtype, init, grads, options


@given(problems())
def test_kernel_equals_reference(problem):
    dtype, init, grads, options = problem
    params = [x.copy() for x in init]
    opt = numba_adam.Adam(params, lr=1e-2, **options)
    for g in grads:
        opt.step(g)
    for k, p in enumerate(params):
        expected, _ = torch_adam(init[k], [g[k] for g in grads], lr=1e-2, **options)
        tol = tolerance(dtype)
        # relative to the size of the values involved: large gradients with
        # small eps make float32 rounding of sqrt(v) visible.
        np.testing.assert_allclose(p, expected, rtol=tol["rtol"] * 10,
                                   atol=tol["atol"] * 10 * (1 + np.abs(init[k]).max(initial=0)))


@given(problems(steps=5))
def test_amsgrad_max_never_decreases(problem):
    dtype, init, grads, options = problem
    params = [x.copy() for x in init]
    opt = numba_adam.Adam(params, amsgrad=True)
    previous = None
    for g in grads:
        opt.step(g)
        current = [s["max_exp_avg_sq"].copy() for s in opt.state_dict()["state"].values()]
        if previous is not None:
            for a, b in zip(previous, current):
                assert (b >= a).all()
        previous = current


@given(problems())
def test_maximize_on_g_equals_minimize_on_minus_g(problem):
    dtype, init, grads, options = problem
    options = dict(options, maximize=False)
    a = [x.copy() for x in init]
    b = [x.copy() for x in init]
    oa = numba_adam.Adam(a, maximize=True, **{k: v for k, v in options.items() if k != "maximize"})
    ob = numba_adam.Adam(b, **options)
    for g in grads:
        oa.step(g)
        ob.step([-x for x in g])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@given(problems())
def test_one_paramBuffer_launch_equals_per_array_updates(problem):
    dtype, init, grads, options = problem
    buf = numba_adam.ParamBuffer({str(k): x for k, x in enumerate(init)}, dtype=dtype)
    whole = numba_adam.Adam(buf, **options)
    singles = [x.copy() for x in init]
    each = [numba_adam.Adam([x], **options) for x in singles]
    for g in grads:
        for k, gk in enumerate(g):
            buf.grads[str(k)][...] = gk
            each[k].step([gk])
        whole.step()
    for k, x in enumerate(singles):
        np.testing.assert_array_equal(buf[str(k)], x)


@given(problems(), st.integers(1, 2))
def test_failed_step_leaves_a_state_snapshot_intact(problem, bad_index):
    dtype, init, grads, options = problem
    params = [x.copy() for x in init]
    opt = numba_adam.Adam(params, **options)
    opt.step(grads[0])
    before = opt.state_dict()
    values = [p.copy() for p in params]
    bad = list(grads[1]) + [np.zeros(bad_index, dtype)]
    try:
        opt.step(bad)
    except ValueError:
        pass
    else:
        raise AssertionError("a wrong number of gradients was accepted")
    after = opt.state_dict()
    for k in before["state"]:
        for key in before["state"][k]:
            np.testing.assert_array_equal(after["state"][k][key], before["state"][k][key])
    for p, v in zip(params, values):
        np.testing.assert_array_equal(p, v)


def test_kernel_signatures_stay_put_across_steps():
    from numba_adam import _cpu
    for dtype in (np.float32, np.float64):
        opt = numba_adam.Adam([np.zeros(5, dtype)], lr=0.1, amsgrad=True)
        opt.step([np.ones(5, dtype)])
    kernels = (_cpu.adam_items, _cpu.adam_items_threaded)
    before = [len(k.signatures) for k in kernels]
    for dtype in (np.float32, np.float64):
        opt = numba_adam.Adam([{"params": [np.zeros(3, dtype)]},
                               {"params": [np.zeros(2, dtype)], "maximize": True}], lr=0.5)
        for _ in range(3):
            opt.step([np.ones(3, dtype), np.ones(2, dtype)])
            opt.param_groups[0]["lr"] *= 0.5
    after = [len(k.signatures) for k in kernels]
    assert after == before
    assert all(n <= 2 for n in after)
