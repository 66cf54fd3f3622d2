"""Bad input gets a clear error naming the problem, and changes nothing."""

import copy
import pickle

import numpy as np
import pytest

import numba_adam
from numba_adam.compat import keras
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
    ((lambda b: [b[::2], b[2::2]])(np.zeros(6)), ValueError, r"share memory"),
    ([np.zeros(4, np.float32)[::2], np.zeros(3)], TypeError, r"per dtype"),
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
    (lambda sd: sd["param_groups"].__setitem__(0, "abc"), r"group 0 must be a dict, got str"),
])
def test_mismatched_state_dict_changes_nothing(edit, pattern, stepped):
    opt, params = stepped
    snap = snapshot(opt, params)
    sd = copy.deepcopy(snap[0])
    edit(sd)
    with pytest.raises((ValueError, TypeError), match=pattern):
        opt.load_state_dict(sd)
    assert_unchanged(opt, params, snap)


def test_params_of_a_group_cannot_be_replaced(stepped):
    opt, _ = stepped
    with pytest.raises(KeyError, match="add_param_group"):
        opt.param_groups[0]["params"] = []


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy, pickle.dumps],
                         ids=["copy", "deepcopy", "pickle"])
def test_copies_of_an_optimizer_are_refused_with_a_pointer_to_state_dict(copier):
    opt = numba_adam.Adam([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match=r"cannot be copied or pickled.*state_dict\(\)"):
        copier(opt)
    keras_opt = keras.Adam()
    keras_opt.apply([np.ones(3)], [np.zeros(3)])
    with pytest.raises(TypeError, match=r"cannot be copied"):
        copier(keras_opt)


def test_group_update_checks_every_value_before_setting_any():
    opt = numba_adam.Adam([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match=r"eps must be >= 0.0"):
        opt.param_groups[0].update(lr=0.5, eps=-1.0)
    assert opt.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize("step, exc, pattern", [
    ("5", TypeError, r"whole number"), (2.5, ValueError, r"whole number"),
    (True, TypeError, r"whole number"), (float("inf"), ValueError, r"whole number"),
    (-1, ValueError, r">= 0"),
])
def test_state_dict_step_counts_are_checked_not_coerced(step, exc, pattern):
    opt = numba_adam.Adam({"w": np.zeros(3)}, lr=0.1)
    opt.step({"w": np.ones(3)})
    before = opt.state_dict()
    sd = opt.state_dict()
    sd["state"][0]["step"] = step
    with pytest.raises(exc, match=pattern):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["state"][0]["step"] == before["state"][0]["step"] == 1
    np.testing.assert_array_equal(after["state"][0]["exp_avg"], before["state"][0]["exp_avg"])


def test_state_dict_step_counts_are_exact_integers():
    opt = numba_adam.Adam({"w": np.zeros(3)}, lr=0.1)
    opt.step({"w": np.ones(3)})
    sd = opt.state_dict()
    sd["state"][0]["step"] = 2 ** 53 + 1
    opt.load_state_dict(sd)
    assert opt.state_dict()["state"][0]["step"] == 2 ** 53 + 1


def test_state_dict_of_other_names_is_refused():
    rng = np.random.default_rng(0)
    a = numba_adam.Adam({"enc": np.zeros(3), "dec": np.zeros(3)}, lr=0.1)
    a.step({"enc": rng.standard_normal(3), "dec": rng.standard_normal(3)})
    b = numba_adam.Adam({"dec": np.zeros(3), "enc": np.zeros(3)}, lr=0.1)
    with pytest.raises(ValueError, match=r"parameter 0 is 'enc'.*'dec'"):
        b.load_state_dict(a.state_dict())
    assert b.state_dict()["state"] == {}


@pytest.mark.parametrize("bad, exc", [
    (np.array(["a", "b", "c"]), TypeError), (np.array([None, None, None]), TypeError),
    (np.array([1j, 2j, 3j]), TypeError),
])
def test_state_dict_arrays_of_the_wrong_kind_change_nothing(bad, exc):
    opt = numba_adam.Adam([np.zeros(3), np.zeros(3)], lr=0.1)
    opt.step([np.ones(3), np.ones(3)])
    before = opt.state_dict()
    sd = opt.state_dict()
    sd["state"][1]["exp_avg"] = bad
    sd["param_groups"][0]["lr"] = 0.5
    with pytest.raises(exc, match=r"state\[1\]\['exp_avg'\] must be a real numeric array"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.1
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["exp_avg"],
                                  before["state"][0]["exp_avg"])


@pytest.mark.parametrize("key, bad, pattern", [
    ("exp_avg", np.array([0.0, np.nan, 0.0]), r"'exp_avg'\] must be finite"),
    ("exp_avg", np.array([0.0, -np.inf, 0.0]), r"'exp_avg'\] must be finite"),
    ("exp_avg_sq", np.array([0.0, -1e-3, 0.0]), r"'exp_avg_sq'\] must be finite and >= 0"),
    ("exp_avg_sq", np.array([0.0, np.inf, 0.0]), r"'exp_avg_sq'\] must be finite and >= 0"),
])
def test_state_dict_moments_must_be_finite_and_second_moments_nonnegative(key, bad, pattern):
    opt = numba_adam.Adam([np.zeros(3), np.zeros(3)], lr=0.1)
    opt.step([np.ones(3), np.ones(3)])
    before = opt.state_dict()
    sd = opt.state_dict()
    sd["state"][1][key] = bad
    with pytest.raises(ValueError, match=pattern):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    for i in (0, 1):
        np.testing.assert_array_equal(after["state"][i][key], before["state"][i][key])


def test_legacy_set_weights_bad_values_change_nothing():
    from numba_adam.compat.keras import legacy
    opt = legacy.Adam(lr=0.1, amsgrad=True)
    params = [np.zeros(3), np.zeros(2)]
    opt.apply_gradients(zip([np.ones(3), np.ones(2)], params))
    good = opt.get_weights()
    cases = [
        ([np.array("7")] + good[1:], TypeError, r"iterations \(weight 0\) must be a whole number"),
        ([2.9] + good[1:], ValueError, r"iterations \(weight 0\) must be a whole number"),
        (good[:2] + [np.array([None, None])] + good[3:], TypeError, r"real numeric array"),
        (good[:3] + [np.array([1.0, np.nan, 2.0])] + good[4:], ValueError, r"must be finite"),
        (good[:-1] + [np.array(["a", "b"])], TypeError, r"real numeric array"),
    ]
    for weights, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            opt.set_weights(weights)
        for now, was in zip(opt.get_weights(), good):
            np.testing.assert_array_equal(now, was)
    assert legacy.Adam().set_weights([]) is None    # unbuilt: nothing to set, no IndexError


@pytest.mark.parametrize("parameter", [np.arange(3), np.array([True, False]), np.array([1j, 2j])],
                         ids=["int", "bool", "complex"])
def test_mlx_apply_single_refuses_non_float_parameters(parameter):
    from numba_adam.compat import mlx
    opt = mlx.Adam(0.1)
    state = {}
    opt.init_single(parameter, state)
    kept = {k: v.copy() for k, v in state.items()}
    with pytest.raises(TypeError, match=r"must be float32 or float64"):
        opt.apply_single(np.ones_like(parameter), parameter, state)
    for k, v in kept.items():
        np.testing.assert_array_equal(state[k], v)
