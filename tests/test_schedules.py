"""Schedules against values recorded from Keras 3, optax and MLX (tools/record_schedules.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

import numba_adam
from numba_adam import schedules

RECORD = json.loads((Path(__file__).parent / "data" / "schedules.json").read_text())


def build(name, kwargs):
    if name == "join":
        return schedules.from_config({"name": "join", **kwargs})
    return getattr(schedules, name)(**kwargs)


@pytest.mark.parametrize("case", RECORD["cases"], ids=lambda c: f"{c['library']}:{c['theirs']}")
def test_schedule_equals_the_real_library(case):
    ours = build(case["ours"], case["kwargs"])
    got = [ours(step) for step in RECORD["steps"]]
    # Keras and MLX compute in float32
    np.testing.assert_allclose(got, case["values"], rtol=2e-6, atol=1e-9)


ALL = [
    schedules.constant(0.1),
    schedules.exponential_decay(0.1, 10, 0.5, staircase=True),
    schedules.inverse_time_decay(0.1, 10, 0.5),
    schedules.step_decay(0.1, 20, 0.5),
    schedules.piecewise_constant([10, 100], [1.0, 0.5, 0.1]),
    schedules.polynomial_decay(0.1, 100, 0.01, power=2.0, cycle=True),
    schedules.cosine_decay(0.1, 100, end_lr=0.01),
    schedules.linear_warmup(0.0, 0.1, 50),
    schedules.warmup_cosine_decay(0.0, 0.1, 10, 150, end_lr=0.001),
]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: s.name)
def test_from_config_reproduces_the_schedule(schedule):
    config = json.loads(json.dumps(schedule.get_config()))
    rebuilt = schedules.from_config(config)
    assert rebuilt == schedule
    assert [rebuilt(t) for t in range(0, 300, 7)] == [schedule(t) for t in range(0, 300, 7)]


@given(st.sampled_from(ALL), st.integers(0, 10_000))
def test_schedules_are_finite_and_non_negative(schedule, step):
    value = schedule(step)
    assert isinstance(value, float) and 0.0 <= value < 10


def test_schedules_are_immutable():
    s = schedules.constant(0.1)
    with pytest.raises(AttributeError):
        s.lr = 0.2


@pytest.mark.parametrize("make, exc, pattern", [
    (lambda: schedules.exponential_decay(0.1, -5, 0.5), ValueError, r"decay_steps must be > 0"),
    (lambda: schedules.exponential_decay(0.1, 0, 0.5), ValueError, r"decay_steps must be > 0"),
    (lambda: schedules.exponential_decay(0.1, 1.5, 0.5), TypeError, r"integer number of steps"),
    (lambda: schedules.piecewise_constant([], [0.1]), ValueError, r"at least one boundary"),
    (lambda: schedules.piecewise_constant([10], [0.1]), ValueError, r"len\(values\) == len\(boundaries\) \+ 1"),
    (lambda: schedules.piecewise_constant([10, 5], [1, 2, 3]), ValueError, r"increase strictly"),
    (lambda: schedules.join([schedules.constant(1)], [10]), ValueError, r"one more schedule"),
    (lambda: schedules.join([schedules.constant(1), lambda s: 1], [10]), TypeError, r"numba_adam schedule"),
    (lambda: schedules.cosine_decay(0.1, 10, alpha=0.1, end_lr=0.0), ValueError, r"not both"),
    (lambda: schedules.warmup_cosine_decay(0, 1, 10, 10), ValueError, r"must exceed warmup_steps"),
    (lambda: schedules.constant(-1), ValueError, r"lr must be >= 0"),
    (lambda: schedules.constant(float("nan")), ValueError, r"lr must be a finite number"),
    (lambda: schedules.constant("0.1"), TypeError, r"lr must be a real number"),
    (lambda: schedules.from_config({"name": "nope"}), ValueError, r"not a schedule config"),
    (lambda: schedules.from_config({"name": "constant", "rate": 1}), ValueError, r"bad constant config"),
    (lambda: schedules.constant(0.1)(-1), ValueError, r"non-negative integer"),
])
def test_invalid_arguments_raise(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()


def test_optimizer_evaluates_the_schedule_at_completed_updates():
    sched = schedules.piecewise_constant([1], [0.1, 0.01])     # 0.1 at steps 0 and 1
    p = np.zeros(3)
    opt = numba_adam.Adam([{"params": [p], "lr": sched}])
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(3):
        opt.step([np.ones(3)])
        seen.append(opt.param_groups[0]["lr"])
    assert seen == [0.1, 0.1, 0.01, 0.01]
    assert opt.param_groups[0].schedule is sched
    # each update of sign(g)-sized steps moves p by lr exactly (bias-corrected Adam, constant g)
    np.testing.assert_allclose(p, -(0.1 + 0.1 + 0.01), rtol=1e-6)


def test_plain_callables_work_as_schedules():
    p = np.zeros(2)
    opt = numba_adam.Adam([p], lr=lambda step: 0.1 / (step + 1))
    opt.step([np.ones(2)])
    opt.step([np.ones(2)])
    np.testing.assert_allclose(p, -(0.1 + 0.05), rtol=1e-6)


def test_state_dict_carries_the_schedule_and_step_counts():
    sched = schedules.exponential_decay(0.1, 1, 0.5)
    a, b = np.zeros(2), np.zeros(2)
    oa = numba_adam.Adam([a], lr=sched)
    for _ in range(2):
        oa.step([np.ones(2)])
    sd = oa.state_dict()
    assert sd["param_groups"][0]["lr_schedule"] == sched.get_config()
    assert sd["param_groups"][0]["lr"] == 0.025
    ob = numba_adam.Adam([b], lr=0.3)
    b[:] = a
    ob.load_state_dict(sd)
    assert ob.param_groups[0].schedule == sched and ob.param_groups[0]["lr"] == 0.025
    oa.step([np.ones(2)])
    ob.step([np.ones(2)])
    np.testing.assert_array_equal(a, b)


def test_a_schedule_giving_a_negative_lr_fails_the_step_cleanly():
    p = np.zeros(2)
    opt = numba_adam.Adam([p], lr=lambda step: 0.1 if step == 0 else -1.0)
    opt.step([np.ones(2)])
    before = p.copy()
    with pytest.raises(ValueError, match=r"lr \(from the schedule\) must be >= 0"):
        opt.step([np.ones(2)])
    np.testing.assert_array_equal(p, before)
