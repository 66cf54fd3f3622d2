"""Bad input gets a clear error naming the problem, and changes nothing."""

import copy

import numpy as np
import pytest

import numba_adam
from cases import BAD_HYPERPARAMETERS


def snapshot(opt, params):
    return copy.deepcopy(opt.state_dict()), [p.copy() for p in params]


def assert_unchanged(opt, params, snap):
    sd, values = snap
    now = opt.state_dict()
    assert now["param_groups"] == sd["param_groups"]
    assert now["state"].keys() == sd["state"].keys()
    for k in sd["state"]:
        for key, value in sd["state"][k].items():
            np.testing.assert_array_equal(now["state"][k][key], value)
    for p, v in zip(params, values):
        np.testing.assert_array_equal(p, v)


@pytest.fixture
def stepped():
    params = [np.ones((2, 3), np.float32), np.ones(4, np.float32)]
    opt = numba_adam.Adam(params, lr=0.1, amsgrad=True)
    opt.step([np.ones((2, 3), np.float32), np.ones(4, np.float32)])
    return opt, params


@pytest.mark.parametrize("kwargs, exc, pattern", BAD_HYPERPARAMETERS)
def test_invalid_hyperparameters_are_refused_everywhere(kwargs, exc, pattern, stepped):
    with pytest.raises(exc, match=pattern):
        numba_adam.Adam([np.zeros(2)], **kwargs)
    opt, params = stepped
    snap = snapshot(opt, params)
    with pytest.raises(exc, match=pattern):
        opt.add_param_group({"params": [np.zeros(2, np.float32)], **kwargs})
    key, value = next(iter(kwargs.items()))
    with pytest.raises(exc, match=pattern):
        opt.param_groups[0][key] = value
    sd = copy.deepcopy(snap[0])
    sd["param_groups"][0][key] = value
    with pytest.raises(exc, match=pattern):
        opt.load_state_dict(sd)
    assert_unchanged(opt, params, snap)


@pytest.mark.parametrize("grads, exc, pattern", [
    ([np.ones((3, 2), np.float32), np.ones(4, np.float32)], ValueError,
     r"gradient for param_groups\[0\]\['params'\]\[0\] has shape \(3, 2\), expected \(2, 3\)"),
    ([np.ones((2, 3), np.float64), np.ones(4, np.float32)], TypeError,
     r"has dtype float64, expected float32"),
    ([np.ones((2, 3), np.float32)], ValueError, r"expected 2 gradients .* got 1"),
    ([np.ones((2, 3), np.float32), None], TypeError, r"is None"),
    (np.ones(3, np.float32), TypeError, r"grads must be a sequence"),
    ({"w": np.ones(3)}, ValueError, r"names that are not parameters"),
])
def test_bad_gradients_change_nothing(grads, exc, pattern, stepped):
    opt, params = stepped
    snap = snapshot(opt, params)
    with pytest.raises(exc, match=pattern):
        opt.step(grads)
    assert_unchanged(opt, params, snap)


def test_bad_gradient_after_good_ones_changes_nothing(stepped):
    opt, params = stepped
    snap = snapshot(opt, params)
    with pytest.raises(ValueError, match=r"\[1\] has shape \(5,\)"):
        opt.step([np.full((2, 3), 7, np.float32), np.ones(5, np.float32)])
    assert_unchanged(opt, params, snap)


def test_missing_dict_grads_are_named():
    params = {"w": np.zeros(2), "b": np.zeros(1)}
    opt = numba_adam.Adam(params)
    with pytest.raises(ValueError, match=r"missing gradients for: \['b'\]"):
        opt.step({"w": np.ones(2)})


def test_step_without_grads_needs_paramBuffer_views():
    with pytest.raises(TypeError, match=r"plain arrays: pass their gradients"):
        numba_adam.Adam([np.zeros(3)]).step()


@pytest.mark.parametrize("params, exc, pattern", [
    ([np.zeros(3, np.int64)], TypeError, r"must be float32 or float64, got int64"),
    ([[1.0, 2.0]], TypeError, r"must be a NumPy or CUDA array"),
    ([np.zeros(3, np.float32), np.zeros(3)], TypeError, r"use one optimizer per dtype"),
    ([np.zeros((4, 4))[:, 1]], ValueError, r"not contiguous"),
    ([], ValueError, r"empty parameter list"),
    (3.0, TypeError, r"params must be"),
    ([{"lr": 0.1}], TypeError, r"'params' entry"),
])
def test_bad_params_are_refused(params, exc, pattern):
    with pytest.raises(exc, match=pattern):
        numba_adam.Adam(params)


def test_read_only_and_shared_params_are_refused():
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"read-only"):
        numba_adam.Adam([ro])
    p = np.zeros(6)
    with pytest.raises(ValueError, match=r"share memory"):
        numba_adam.Adam([p[:4], p[2:]])
    opt = numba_adam.Adam([p])
    with pytest.raises(ValueError, match=r"share memory"):
        opt.add_param_group({"params": [p]})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("edit, pattern", [
    (lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])), r"2 parameter groups"),
    (lambda sd: sd["param_groups"][0]["params"].pop(), r"has 1 parameters"),
    (lambda sd: sd["state"][1].update(exp_avg=np.zeros(5)), r"has shape \(5,\)"),
    (lambda sd: sd["state"][1].pop("max_exp_avg_sq"), r"no 'max_exp_avg_sq'"),
    (lambda sd: sd["state"].pop(1), r"some parameters but not others"),
    (lambda sd: sd["state"][1].update(step=7), r"different step counts"),
    (lambda sd: sd["param_groups"][0].update(colour="red"), r"unknown key 'colour'"),
    (lambda sd: sd.pop("state"), r"'state' and 'param_groups'"),
])
def test_mismatched_state_dict_changes_nothing(edit, pattern, stepped):
    opt, params = stepped
    snap = snapshot(opt, params)
    sd = copy.deepcopy(snap[0])
    edit(sd)
    with pytest.raises(ValueError, match=pattern):
        opt.load_state_dict(sd)
    assert_unchanged(opt, params, snap)


def test_params_of_a_group_cannot_be_replaced(stepped):
    opt, _ = stepped
    with pytest.raises(KeyError, match="add_param_group"):
        opt.param_groups[0]["params"] = []
