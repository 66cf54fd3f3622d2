"""numba_adam.jit: stepping from @njit code is the Python step, bit for bit.

Each test runs the same sequence of updates twice, once through the Python
methods (``opt.step()``, ``opt.step_rows``) and once through a jitted loop
over the same optimizer class and options, and compares parameters, state and
step counts exactly.
"""

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

import numba_adam
from numba_adam import _codes, schedules
from numba_adam import jit as adam_jit
from numba_adam.sparse import IndexedSlices
from cases import dtypes


@njit
def jitted_steps(handle, grad, grads):
    """``len(grads)`` steps, writing each row of ``grads`` into the flat gradient first."""
    for k in range(grads.shape[0]):
        grad[:] = grads[k]
        adam_jit.step(handle)


@njit
def jitted_rows(handle, tensors, rows, values):
    """``step_rows(handle, tensors[k], rows[k], values[k])`` for every k."""
    for k in range(tensors.shape[0]):
        adam_jit.step_rows(handle, tensors[k], rows[k], values[k])


def model(dtype, seed=0, big=False):
    rng = np.random.default_rng(seed)
    rows = 700 if big else 40
    return numba_adam.ParamBuffer({
        "emb": rng.standard_normal((rows, 96)).astype(dtype),
        "w": rng.standard_normal((96, 33)).astype(dtype),
        "b": rng.standard_normal(33).astype(dtype),
    }, dtype=dtype)


def twin(make_opt, dtype, big=False):
    """Two equal buffers with an optimizer each."""
    a, b = model(dtype, big=big), model(dtype, big=big)
    return (a, make_opt(a)), (b, make_opt(b))


def gradients(size, dtype, steps, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((steps, size)) * rng.uniform(0.1, 3, (steps, 1))).astype(dtype)


def assert_same(opt_a, opt_b, buf_a, buf_b):
    np.testing.assert_array_equal(buf_a.data, buf_b.data)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["state"].keys() == sb["state"].keys()
    for i in sa["state"]:
        for key, value in sa["state"][i].items():
            np.testing.assert_array_equal(value, sb["state"][i][key], err_msg=f"{i} {key}")
    assert [g.updates for g in opt_a.param_groups] == [g.updates for g in opt_b.param_groups]
    assert [g["lr"] for g in opt_a.param_groups] == [g["lr"] for g in opt_b.param_groups]


def python_steps(opt, buf, grads):
    for g in grads:
        buf.grad[:] = g
        opt.step()


CONFIGS = {
    "adam": lambda buf: numba_adam.Adam(buf, lr=0.01),
    "adamw-amsgrad-schedule": lambda buf: numba_adam.AdamW(
        buf, lr=schedules.warmup_cosine_decay(0.0, 0.02, 3, 12), amsgrad=True),
    "groups-l2-maximize-clip": lambda buf: numba_adam.Adam(
        [{"params": [buf["emb"]], "clipnorm": 0.5, "weight_decay": 0.1, "maximize": True},
         {"params": [buf["w"], buf["b"]], "lr": schedules.exponential_decay(0.01, 3, 0.5, True),
          "betas": (0.8, 0.95)}], lr=0.02),
    "keras-rule-clipvalue": lambda buf: numba_adam.Optimizer(buf, dict(
        lr=schedules.piecewise_constant([2, 5], [0.01, 0.005, 0.001]), betas=(0.9, 0.999),
        eps=1e-7, epsilon_hat=True, clipvalue=0.7, weight_decay=0.004,
        decoupled_weight_decay=True)),
    "mlx-rule": lambda buf: numba_adam.Optimizer(buf, dict(
        lr=schedules.join([schedules.linear_warmup(0.0, 0.01, 4),
                           schedules.step_decay(0.01, 2, 0.5)], [4]),
        betas=(0.9, 0.999), eps=1e-8, bias_correction=False)),
    "bits16": lambda buf: numba_adam.Adam(buf, lr=0.01, state_bits=16, seed=123),
    "bits8": lambda buf: numba_adam.Adam(buf, lr=0.01, state_bits=8, min_8bit_size=256),
    "bits8-amsgrad-mixed": lambda buf: numba_adam.Adam(
        [{"params": [buf["emb"]], "state_bits": 8, "amsgrad": True, "min_8bit_size": 256},
         {"params": [buf["w"]], "state_bits": 16},
         {"params": [buf["b"]]}], lr=0.01),
}


@dtypes
@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
def test_jitted_step_is_the_python_step(config, dtype):
    (a, opt_a), (b, opt_b) = twin(CONFIGS[config], dtype)
    if config == "groups-l2-maximize-clip":
        opt_a.global_clipnorm = opt_b.global_clipnorm = 2.0
    grads = gradients(a.size, dtype, 8)
    python_steps(opt_a, a, grads[:3])
    python_steps(opt_b, b, grads[:3])      # jitted steps continue a Python start
    python_steps(opt_a, a, grads[3:])
    jitted_steps(opt_b.jit_handle(), b.grad, grads[3:])
    assert_same(opt_a, opt_b, a, b)
    python_steps(opt_a, a, grads[:2])      # and Python steps continue jitted ones
    python_steps(opt_b, b, grads[:2])
    assert_same(opt_a, opt_b, a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_model_big_enough_to_share_out_steps_on_the_threaded_kernels(threads):
    """From compiled code, with or without norm clipping (its sums share out too)."""
    from numba_adam import _cpu, _threads
    previous = numba_adam.get_num_threads()
    numba_adam.set_num_threads(threads)
    try:
        (a, opt_a), (b, opt_b) = twin(lambda buf: numba_adam.Adam(buf, lr=0.01), np.float32,
                                      big=True)
        opt_a.global_clipnorm = opt_b.global_clipnorm = 50.0
        handle = opt_b.jit_handle()
        start, count, elements = handle.kind_spans[_cpu.KIND_32]
        assert _threads.worth_sharing.py_func(elements, count, 2)
        grads = gradients(a.size, np.float32, 14)
        python_steps(opt_a, a, grads)
        jitted_steps(handle, b.grad, grads)
        assert_same(opt_a, opt_b, a, b)
    finally:
        numba_adam.set_num_threads(previous)


def test_a_handle_outlives_its_optimizer_object():
    """Code that keeps only the handle (a closure over it, say) still steps."""
    import gc
    (a, opt_a), (b, opt_b) = twin(lambda buf: numba_adam.Adam(buf, lr=0.01), np.float32,
                                  big=True)
    handle = opt_b.jit_handle()
    del opt_b
    gc.collect()
    grads = gradients(a.size, np.float32, 3)
    python_steps(opt_a, a, grads)
    jitted_steps(handle, b.grad, grads)
    np.testing.assert_array_equal(a.data, b.data)


ALL_SCHEDULES = [
    schedules.constant(0.3),
    schedules.exponential_decay(0.1, 7, 0.93),
    schedules.exponential_decay(0.1, 7, 0.5, staircase=True),
    schedules.inverse_time_decay(0.2, 5, 0.7),
    schedules.inverse_time_decay(0.2, 5, 0.7, staircase=True),
    schedules.step_decay(1.0, 4, 0.9),
    schedules.piecewise_constant([0, 10, 50], [1.0, 0.5, 0.1, 0.01]),
    schedules.polynomial_decay(0.1, 40, 0.001, power=1.7),
    schedules.polynomial_decay(0.1, 40, 0.001, power=0.5, cycle=True),
    schedules.cosine_decay(0.1, 60, alpha=0.1),
    schedules.linear_warmup(0.0, 0.3, 25),
    schedules.warmup_cosine_decay(0.0, 1.0, 10, 110, end_lr=0.01),
    schedules.join([schedules.constant(0.5),
                    schedules.join([schedules.linear_warmup(0.1, 0.2, 5),
                                    schedules.cosine_decay(0.2, 30)], [9]),
                    schedules.step_decay(0.05, 3, 0.5)], [7, 60]),
]


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: s.name)
def test_compiled_schedules_give_the_python_values_exactly(schedule):
    table = np.array(schedule.segments(), dtype=np.float64)
    compiled = [adam_jit.schedule_value(table, 0, len(table), t) for t in range(300)]
    assert compiled == [schedule(t) for t in range(300)]


def test_compiled_group_keys_are_the_python_keys():
    for seed in (0, 1, -5, 2**40 + 3, 2**64 - 1, 123456789):
        for step in (1, 2, 3, 1000, 2**31 + 7):
            assert adam_jit.group_key(np.uint64(seed & (2**64 - 1)), step) == \
                _codes.group_key(seed, step)


def test_python_callables_and_gpu_only_options_are_refused_at_jit_handle():
    buf = model(np.float32)
    opt = numba_adam.Adam(buf, lr=lambda step: 0.01)
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['lr'\] is a Python callable"):
        opt.jit_handle()
    strided = np.zeros((6, 4), np.float32)[:, ::2]
    with pytest.raises(ValueError, match="strided view"):
        numba_adam.Adam([strided]).jit_handle()


def test_after_a_jitted_loop_the_optimizer_reports_every_update(tmp_path):
    (a, opt_a), (b, opt_b) = twin(lambda buf: numba_adam.Adam(
        buf, lr=schedules.cosine_decay(0.05, 20)), np.float64)
    grads = gradients(a.size, np.float64, 12)
    jitted_steps(opt_b.jit_handle(), b.grad, grads[:6])
    group = opt_b.param_groups[0]
    assert group.updates == 6 and group["lr"] == schedules.cosine_decay(0.05, 20)(6)
    assert opt_b.state_dict()["state"][0]["step"] == 6
    opt_b.save(tmp_path / "ckpt.safetensors", params=True)
    resumed_buf = model(np.float64, seed=9)
    resumed = numba_adam.Adam(resumed_buf, lr=schedules.cosine_decay(0.05, 20))
    resumed.load(tmp_path / "ckpt.safetensors")
    python_steps(opt_a, a, grads)
    jitted_steps(resumed.jit_handle(), resumed_buf.grad, grads[6:])
    assert_same(opt_a, resumed, a, resumed_buf)


def test_a_handle_goes_out_of_date_when_the_optimizer_changes():
    buf = model(np.float32)
    opt = numba_adam.Adam(buf, lr=0.01)
    handle = opt.jit_handle()
    assert opt.jit_handle() is handle             # unchanged optimizer: the same handle
    opt.param_groups[0]["lr"] = 0.02
    before = buf.data.copy()
    with pytest.raises(ValueError, match="out of date"):
        jitted_steps(handle, buf.grad, gradients(buf.size, np.float32, 1))
    np.testing.assert_array_equal(buf.data, before)
    assert opt.param_groups[0].updates == 0
    fresh = opt.jit_handle()
    jitted_steps(fresh, buf.grad, gradients(buf.size, np.float32, 1))
    assert opt.param_groups[0].updates == 1


def test_step_reads_paramBuffer_gradients_only():
    opt = numba_adam.Adam([np.zeros(5, np.float32)])
    with pytest.raises(ValueError, match="plain-array parameters"):
        adam_jit.step(opt.jit_handle())
    assert opt.param_groups[0].updates == 0


# -- step_rows ------------------------------------------------------------------
ROW_CONFIGS = {
    "bits32": dict(),
    "bits32-amsgrad-clip": dict(amsgrad=True, clipnorm=0.3),
    "bits16": dict(state_bits=16, seed=7),
    "bits8": dict(state_bits=8, min_8bit_size=256),
    "bits8-amsgrad": dict(state_bits=8, min_8bit_size=256, amsgrad=True),
}


def row_updates(n_rows, cols, dtype, count, seed=3, per_update=5):
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n_rows, (count, per_update))
    values = rng.standard_normal((count, per_update, cols)).astype(dtype)
    return rows, values


@dtypes
@pytest.mark.parametrize("config", list(ROW_CONFIGS), ids=list(ROW_CONFIGS))
def test_jitted_step_rows_is_the_python_step_rows(config, dtype):
    options = ROW_CONFIGS[config]

    def make(buf):
        return numba_adam.Adam([{"params": [buf["emb"]], **options},
                                {"params": [buf["w"], buf["b"]], **options}],
                               lr=schedules.exponential_decay(0.01, 5, 0.9))

    (a, opt_a), (b, opt_b) = twin(make, dtype)
    rows, values = row_updates(40, 96, dtype, 6)
    rows[2] = np.array([5, 5, 5, 1, 5])                  # repeats are summed
    for r, v in zip(rows, values):
        opt_a.step_rows("emb", r, v)
    w_rows, w_values = row_updates(96, 33, dtype, 2, seed=4)
    for r, v in zip(w_rows, w_values):
        opt_a.step_rows(1, r, v)
    opt_a.step_rows(2, np.array([3, 0]), np.ones(2, dtype))
    handle = opt_b.jit_handle()
    jitted_rows(handle, np.zeros(len(rows), np.int64), rows, values)   # (includes the repeats)
    jitted_rows(handle, np.ones(2, np.int64), w_rows, w_values)
    adam_jit.step_rows(handle, 2, np.array([3, 0]), np.ones((2, 1), dtype))
    assert_same(opt_a, opt_b, a, b)
    assert [g.updates for g in opt_b.param_groups] == [6, 3]


@pytest.mark.parametrize("config", list(ROW_CONFIGS), ids=list(ROW_CONFIGS))
def test_step_rows_is_a_lazy_sparse_step(config):
    """With one parameter in one group, step_rows is ``step`` with a lazy IndexedSlices."""
    options = ROW_CONFIGS[config]
    rng = np.random.default_rng(5)
    start = rng.standard_normal((300, 24)).astype(np.float32)
    a, b = start.copy(), start.copy()
    opt_a = numba_adam.Adam([{"params": [a], "lazy_sparse": True, **options}], lr=0.01)
    opt_b = numba_adam.Adam([{"params": [b], "lazy_sparse": True, **options}], lr=0.01)
    for _ in range(5):
        rows = rng.choice(300, 7, replace=False)
        values = rng.standard_normal((7, 24)).astype(np.float32)
        opt_a.step([IndexedSlices(values, rows, a.shape)])
        opt_b.step_rows(0, rows, values)
    np.testing.assert_array_equal(a, b)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    for key, value in sa["state"][0].items():
        np.testing.assert_array_equal(value, sb["state"][0][key])


@pytest.mark.parametrize("call, error, message", [
    (lambda h, d: adam_jit.step_rows(h, 3, np.array([0]), np.zeros((1, 96), d)), IndexError,
     "parameter index 3 is out of range for 3 parameters"),
    (lambda h, d: adam_jit.step_rows(h, 0, np.array([0, 40]), np.zeros((2, 96), d)),
     IndexError, "row 40 is out of range for parameter 0 with 40 rows"),
    (lambda h, d: adam_jit.step_rows(h, 0, np.array([-1]), np.zeros((1, 96), d)), IndexError,
     "row -1 is out of range"),
    (lambda h, d: adam_jit.step_rows(h, 0, np.array([1, 2]), np.zeros((2, 95), d)), ValueError,
     r"values have shape \(2, 95\), expected \(len\(rows\), columns\) = \(2, 96\)"),
    (lambda h, d: adam_jit.step_rows(h, 0, np.array([1]), np.zeros((1, 96), np.float64)),
     TypingError, "values must have the parameters' dtype float32"),
    (lambda h, d: adam_jit.step_rows(h, 0, np.array([1.0]), np.zeros((1, 96), d)),
     TypingError, "rows must be a 1-D integer array"),
])
def test_bad_row_updates_raise_and_change_nothing(call, error, message):
    buf = model(np.float32)
    opt = numba_adam.Adam(buf, lr=0.01, state_bits=8, min_8bit_size=256)
    adam_jit.step_rows(opt.jit_handle(), 0, np.array([2]), np.ones((1, 96), np.float32))
    params, state = buf.data.copy(), opt.state_dict()
    with pytest.raises(error, match=message):
        call(opt.jit_handle(), np.float32)
    np.testing.assert_array_equal(buf.data, params)
    for key, value in opt.state_dict()["state"][0].items():
        np.testing.assert_array_equal(value, state["state"][0][key])
    assert opt.param_groups[0].updates == 1


def test_python_step_rows_checks_its_arguments():
    buf = model(np.float32)
    opt = numba_adam.Adam(buf)
    with pytest.raises(KeyError, match="no parameter named 'nope'"):
        opt.step_rows("nope", [0], np.zeros((1, 96), np.float32))
    with pytest.raises(TypeError, match="values have dtype float64, expected float32"):
        opt.step_rows("emb", [0], np.zeros((1, 96)))
    with pytest.raises(ValueError, match=r"must have shape \(1, 96\)"):
        opt.step_rows("emb", [0], np.zeros((1, 9), np.float32))
    assert opt.param_groups[0].updates == 0


def test_a_schedule_that_fails_in_compiled_code_changes_nothing():
    buf = model(np.float64)
    opt = numba_adam.Adam(buf, lr=schedules.exponential_decay(0.01, 1, 1e300))
    grads = gradients(buf.size, np.float64, 2)
    jitted_steps(opt.jit_handle(), buf.grad, grads)      # lr 0.01, then 1e298
    before = buf.data.copy()
    with pytest.raises(ValueError, match=r"schedule of param_groups\[0\] gave an lr"):
        jitted_steps(opt.jit_handle(), buf.grad, grads[:1])   # 1e598: inf
    np.testing.assert_array_equal(buf.data, before)
    assert opt.param_groups[0].updates == 2
    with pytest.raises(OverflowError):
        opt.step()                          # the Python step refuses it too (Python's pow)


def test_keras_front_end_hands_out_a_handle():
    from numba_adam.compat import keras
    buf = model(np.float32)
    opt = keras.Adam(learning_rate=0.01)
    opt.apply_gradients(zip([np.zeros_like(v) for v in buf.values()], buf.values()))
    handle = opt.jit_handle()
    adam_jit.step_rows(handle, 0, np.array([1]), np.ones((1, 96), np.float32))
    assert opt.iterations == 2
