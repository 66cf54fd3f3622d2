"""Keras, legacy Keras and MLX front-ends: references, recorded trajectories, errors."""


import numpy as np
import pytest

from numba_adam import schedules
from numba_adam.compat import keras, mlx
from numba_adam.compat.keras import legacy
import replay
from reference import keras2_adam, keras_adam, mlx_adam

F32 = dict(rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", replay.recorded("keras"))
def test_keras_matches_recorded_keras3(name):
    for label, ours, theirs in replay.keras3(name):
        np.testing.assert_allclose(ours, theirs, **F32, err_msg=label)


@pytest.mark.parametrize("name", replay.recorded("mlx"))
def test_mlx_matches_recorded_mlx(name):
    for label, ours, theirs in replay.mlx_optimizers(name):
        np.testing.assert_allclose(ours, theirs, **F32, err_msg=label)


KERAS_OPTIONS = {
    "default": dict(),
    "amsgrad": dict(amsgrad=True, beta_1=0.8, beta_2=0.9),
    "weight_decay": dict(weight_decay=0.2),
    "clipnorm": dict(clipnorm=0.5),
    "clipvalue": dict(clipvalue=0.3),
    "global_clipnorm": dict(global_clipnorm=0.7),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", KERAS_OPTIONS.values(), ids=KERAS_OPTIONS.keys())
def test_keras_matches_reference(options, dtype):
    rng = np.random.default_rng(1)
    init = [rng.standard_normal(s).astype(dtype) for s in [(5, 4), (7,)]]
    grads = [[rng.standard_normal(x.shape).astype(dtype) for x in init] for _ in range(5)]
    params = [x.copy() for x in init]
    opt = keras.Adam(learning_rate=0.02, **options)
    for g in grads:
        opt.apply(g, params)
    expected, ms, vs, _ = keras_adam(init, grads, lr=0.02, **options)
    tol = F32 if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p, e, **tol)
    variables = opt.variables
    assert int(variables[0]) == 5
    np.testing.assert_allclose(variables[1], ms[0], **tol)
    np.testing.assert_allclose(variables[3], vs[0], **tol)


def test_keras_callable_betas_and_zero_argument_lr_are_evaluated_each_step():
    rng = np.random.default_rng(2)
    init = [rng.standard_normal(6)]
    grads = [[rng.standard_normal(6)] for _ in range(4)]
    box = {"lr": 0.1, "b1": 0.9}
    p = [init[0].copy()]
    opt = keras.Adam(learning_rate=lambda: box["lr"], beta_1=lambda: box["b1"])
    opt.apply(grads[0], p)
    opt.apply(grads[1], p)
    box["lr"] = 0.1   # unchanged lr, but a callable beta must be read again
    expected, _, _, _ = keras_adam(init, grads[:2], lr=0.1)
    np.testing.assert_allclose(p[0], expected[0], rtol=1e-12)
    assert opt.learning_rate == 0.1


def test_keras_schedule_and_config_round_trip():
    sched = schedules.exponential_decay(0.1, 2, 0.5)
    opt = keras.Adam(learning_rate=sched, amsgrad=True, clipnorm=1.0)
    config = opt.get_config()
    assert config["learning_rate"] == sched.get_config()
    again = keras.Adam.from_config(config)
    assert again.get_config() == config
    p = [np.zeros(3)]
    again.apply([np.ones(3)], p)
    again.apply([np.ones(3)], p)
    assert again.iterations == 2 and again.learning_rate == sched(2)


def test_keras_checkpoint_restores_state_and_learning_rate(tmp_path):
    rng = np.random.default_rng(8)
    init = [rng.standard_normal((4, 3))]
    grads = [[rng.standard_normal((4, 3))] for _ in range(4)]
    a, b = [init[0].copy()], [init[0].copy()]
    sched = schedules.exponential_decay(0.1, 1, 0.5)
    oa, ob = keras.Adam(learning_rate=sched, amsgrad=True), keras.Adam(learning_rate=0.3, amsgrad=True)
    oa.apply(grads[0], a)
    oa.apply(grads[1], a)
    oa.save(tmp_path / "k.ckpt", params=True)
    ob.build(b)
    ob.load(tmp_path / "k.ckpt")
    assert ob.iterations == 2 and ob.learning_rate == sched(2)
    for g in grads[2:]:
        oa.apply(g, a)
        ob.apply(g, b)
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(clipnorm=1.0, clipvalue=1.0), ValueError, "Only one of `clipnorm`, `clipvalue`"),
    (dict(clipnorm=1.0, global_clipnorm=1.0), ValueError, "Only one of"),
    (dict(clipnorm=-1.0), ValueError, r"clipnorm must be"),
    (dict(beta_1=1.5), ValueError, r"betas\[0\] must be in"),
    (dict(learning_rate=-1), ValueError, r"lr must be >= 0"),
    (dict(epsilon=-1), ValueError, r"eps must be >= 0"),
])
def test_keras_bad_arguments(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        keras.Adam(**kwargs)


def test_keras_apply_needs_the_same_variables():
    a, b = np.zeros(2), np.zeros(2)
    opt = keras.Adam()
    opt.apply_gradients([(np.ones(2), a)])
    with pytest.raises(ValueError, match="same variables"):
        opt.apply_gradients([(np.ones(2), b)])
    assert not b.any()


@pytest.mark.parametrize("options", [dict(), dict(amsgrad=True), dict(decay=0.3),
                                     dict(clipnorm=0.5), dict(clipvalue=0.2, amsgrad=True)])
def test_legacy_keras_matches_keras2_formula(options):
    """Float64 check against the formula; float32 against tf_keras recordings below."""
    rng = np.random.default_rng(3)
    init = [rng.standard_normal(s) for s in [(3, 4), (2,)]]
    grads = [[rng.standard_normal(x.shape) for x in init] for _ in range(5)]
    params = [x.copy() for x in init]
    opt = legacy.Adam(lr=0.05, **options)
    for g in grads:
        opt.apply_gradients(zip(g, params))
    expected, ms, vs, vhats = keras2_adam(init, grads, lr=0.05, **options)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-11, atol=1e-12)
    weights = opt.get_weights()
    assert int(weights[0]) == 5 and len(weights) == 7
    np.testing.assert_allclose(weights[1], ms[0], rtol=1e-11)
    np.testing.assert_allclose(weights[4], vs[1], rtol=1e-11)
    if options.get("amsgrad"):
        np.testing.assert_allclose(weights[5], vhats[0], rtol=1e-11)
    else:
        assert weights[5].shape == (1,)


def test_legacy_set_weights_round_trip_and_errors():
    rng = np.random.default_rng(4)
    init = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    a = [x.copy() for x in init]
    b = [x.copy() for x in init]
    oa, ob = legacy.Adam(lr=0.1, decay=0.1, amsgrad=True), legacy.Adam(lr=0.1, decay=0.1, amsgrad=True)
    with pytest.raises(ValueError, match=r"does not match the number of weights of the optimizer \(0\)"):
        ob.set_weights([np.zeros(1)])
    for _ in range(3):
        g = [rng.standard_normal(x.shape) for x in init]
        oa.apply_gradients(zip(g, a))
    ob.apply_gradients(zip([np.zeros(x.shape) for x in init], b))
    b[0][...] = a[0]
    b[1][...] = a[1]
    before = ob.get_weights()
    bad = oa.get_weights()
    bad[2] = np.zeros(5)
    with pytest.raises(ValueError, match=r"not compatible with provided weight shape \(5,\)"):
        ob.set_weights(bad)
    for x, y in zip(ob.get_weights(), before):
        np.testing.assert_array_equal(x, y)
    ob.set_weights(oa.get_weights())
    g = [rng.standard_normal(x.shape) for x in init]
    oa.apply_gradients(zip(g, a))
    ob.apply_gradients(zip(g, b))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert ob.iterations == 4


def test_legacy_config_and_graph_mode_methods():
    opt = legacy.Adam(lr=0.01, epsilon=None, decay=0.5, clipvalue=1.0)
    config = opt.get_config()
    assert config == dict(lr=0.01, beta_1=0.9, beta_2=0.999, decay=0.5, epsilon=1e-7,
                          amsgrad=False, clipvalue=1.0)
    assert legacy.Adam.from_config(config).get_config() == config
    with pytest.raises(NotImplementedError, match="apply_gradients"):
        opt.get_updates(None, [])
    with pytest.raises(NotImplementedError, match="backward pass"):
        opt.get_gradients(None, [])
    with pytest.raises(TypeError, match="Unexpected keyword argument passed to optimizer: foo"):
        legacy.Adam(foo=1)


@pytest.mark.parametrize("kind, kwargs", [("Adam", dict()), ("Adam", dict(bias_correction=True)),
                                          ("AdamW", dict(weight_decay=0.1))])
def test_mlx_matches_reference_and_exposes_state(kind, kwargs):
    rng = np.random.default_rng(5)
    init = [rng.standard_normal((3, 3)), rng.standard_normal(2)]
    grads = [[rng.standard_normal(x.shape) for x in init] for _ in range(4)]
    tree = {"w": init[0].copy(), "nested": {"b": [init[1].copy()]}}
    lr = schedules.step_decay(0.05, 2, 0.5)
    opt = getattr(mlx, kind)(learning_rate=lr, **kwargs)
    for g in grads:
        opt.update(tree, {"w": g[0], "nested": {"b": [g[1]]}})
    expected, ms, vs = mlx_adam(init, grads, lr, **kwargs)
    np.testing.assert_allclose(tree["w"], expected[0], rtol=1e-11)
    np.testing.assert_allclose(tree["nested"]["b"][0], expected[1], rtol=1e-11)
    state = opt.state
    assert state["step"] == 4 and state["learning_rate"] == lr(4)
    np.testing.assert_allclose(state["nested"]["b"][0]["v"], vs[1], rtol=1e-11)


def test_mlx_apply_single_equals_update():
    rng = np.random.default_rng(6)
    p0, g = rng.standard_normal(5), rng.standard_normal(5)
    single = mlx.AdamW(learning_rate=0.1, bias_correction=True)
    state = {}
    single.init_single(p0, state)
    new = single.apply_single(g, p0, state)
    tree = {"p": p0.copy()}
    whole = mlx.AdamW(learning_rate=0.1, bias_correction=True)
    whole.update(tree, {"p": g})
    np.testing.assert_array_equal(new, tree["p"])
    np.testing.assert_array_equal(state["m"], whole.state["p"]["m"])
    assert not np.array_equal(new, p0)


def test_mlx_gradient_tree_must_match():
    opt = mlx.Adam(learning_rate=0.1)
    tree = {"a": np.zeros(2), "b": np.zeros(2)}
    with pytest.raises(ValueError, match=r"missing \['b'\], unexpected \['c'\]"):
        opt.update(tree, {"a": np.ones(2), "c": np.ones(2)})
    assert not tree["a"].any()


@pytest.mark.parametrize("name", replay.LEGACY_CASES)
def test_legacy_keras_matches_recorded_tf_keras(name):
    """Trajectories of tf_keras.optimizers.legacy.Adam (tools/record_tf_keras_legacy.py)."""
    for label, ours, theirs in replay.keras_legacy(name):
        np.testing.assert_allclose(ours, theirs, **F32, err_msg=label)
