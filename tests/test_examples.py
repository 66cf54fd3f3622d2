"""Every example runs (fast settings) and learns, so they never rot."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pytorch_tutorial_learns_the_line(capsys):
    w, b = load("pytorch_tutorial").main(steps=400)
    assert abs(w - 2) < 0.1 and abs(b - 1) < 0.1


def test_torch_param_groups_example(capsys):
    assert load("torch_param_groups").main(steps=200) < 0.05


def test_torch_drop_in_follows_torch_optim_adam(capsys):
    """The tutorial with one changed line: the recorded trajectory tolerance of
    test_torch_trajectories.py, against torch.optim.Adam run the same way."""
    pytest.importorskip("torch")
    example = load("torch_drop_in")
    ours, theirs = example.main(epochs=500), example.main(epochs=500, use_torch=True)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    w, b = ours[-1]
    assert abs(w - 2) < 0.1 and abs(b - 1) < 0.1


def test_keras_style_example(capsys):
    assert load("keras_style").main(steps=150) < 0.3


def test_keras_legacy_style_example(capsys):
    assert load("keras_legacy_style").main(steps=150) < 0.01
    assert "matches after set_weights: True" in capsys.readouterr().out


def test_mlx_style_example(capsys):
    results = load("mlx_style").main(steps=200)
    assert all(loss < 0.05 for loss in results.values())


def test_matrix_factorization_trains_inside_njit(capsys):
    result = load("numba_matrix_factorization").main(epochs=4, n_users=800, n_items=600,
                                                       n_ratings=50_000)
    assert result["rmse_after"] < 0.75 * result["rmse_before"]
    assert result["identical"]      # the jitted loop is the Python loop, bit for bit
    assert "same embeddings both ways, bit for bit: True" in capsys.readouterr().out


def test_every_example_has_a_test():
    tested = {"pytorch_tutorial", "torch_drop_in", "torch_param_groups", "keras_style", "keras_legacy_style",
              "mlx_style", "numba_matrix_factorization"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested
