import json
import subprocess
import sys

import numpy as np
import pytest

from numba_adam import cli, demo
from numba_adam.bench import SameBytes, bytes_per_param


def test_info_reports_versions_cache_and_cuda(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("numba_adam", "numba", "threading layer", "threads", "kernel cache", "CUDA"):
        assert key in out
    layer = next(line for line in out.splitlines() if line.startswith("threading layer"))
    assert "Numba's TBB layer" in layer, layer      # tbb is a dependency: it must load


def test_demo_loss_goes_down(tmp_path, capsys):
    assert cli.main(["demo", "--steps", "300", "--schedule", "constant", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    losses = np.loadtxt(tmp_path / "loss.csv", delimiter=",", skiprows=1)[:, 1]
    assert losses[-30:].mean() < 0.5 * losses[:30].mean()
    assert "test accuracy" in out and "GB/s" in out


def test_demo_trains_with_8_bit_state(tmp_path, capsys):
    assert cli.main(["demo", "--steps", "300", "--schedule", "constant", "--state-bits", "8",
                     "--out", str(tmp_path)]) == 0
    assert "8-bit state" in capsys.readouterr().out
    losses = np.loadtxt(tmp_path / "loss.csv", delimiter=",", skiprows=1)[:, 1]
    assert losses[-30:].mean() < 0.7 * losses[:30].mean()


def test_demo_resumes_from_its_checkpoint(tmp_path, capsys):
    assert cli.main(["demo", "--steps", "40", "--out", str(tmp_path)]) == 0
    first = (tmp_path / "checkpoint.ckpt").read_bytes()
    assert cli.main(["demo", "--steps", "10", "--resume", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "resuming after step 40" in out and "after step 50" in out
    assert len(np.loadtxt(tmp_path / "loss.csv", delimiter=",", skiprows=1)) == 50
    assert (tmp_path / "checkpoint.ckpt").read_bytes() != first


def test_demo_resume_without_checkpoint_fails_clearly(tmp_path, capsys):
    assert cli.main(["demo", "--steps", "5", "--resume", "--out", str(tmp_path)]) == 1
    assert "cannot resume" in capsys.readouterr().err


def test_demo_gradients_match_finite_differences():
    x, y = demo.make_spirals(20, 3, 0)
    buf = demo.init_mlp(6, 3, 0)
    demo.loss_and_grads(buf, x, y)
    analytic = buf.grad.copy()
    rng = np.random.default_rng(0)
    for i in rng.choice(buf.size, 12, replace=False):
        old = buf.data[i]
        buf.data[i] = old + 1e-2
        up = demo.loss_and_grads(buf, x, y)
        buf.data[i] = old - 1e-2
        down = demo.loss_and_grads(buf, x, y)
        buf.data[i] = old
        assert abs((up - down) / 2e-2 - analytic[i]) < 2e-2


def test_console_script_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "numba_adam.cli", "info"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "numba_adam" in result.stdout


def test_bench_runs_each_implementation_in_its_own_process_and_reports_ratios():
    result = subprocess.run(
        [sys.executable, "-m", "numba_adam.cli", "bench", "--sizes", "1e4", "--no-models",
         "--no-neighbour", "--repeats", "2", "--seconds", "0.005", "--json"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    rows = {r["implementation"]: r for r in out["step"]}
    assert {"numba_adam", "numpy", "roofline"} <= set(rows)
    assert len(rows["numpy"]["seconds"]) == 2
    ratio = rows["numpy"]["over_numba_adam"]
    assert ratio["low"] <= ratio["median"] <= ratio["high"]
    assert [r["case"] for r in out["loop"]] == ["training loop, 68k", "training loop, 1M"]
    assert all(r["in_loop_step_seconds"] > 0 for r in out["loop"])
    assert all(r["same_bytes_in_loop_step_seconds"] > 0 and r["same_bytes_bare_step_seconds"] > 0
               for r in out["loop"])
    spread = out["loop"][0]["same_bytes_in_loop_over_bare"]
    assert spread["low"] <= spread["median"] <= spread["high"]


def test_bench_state_bits_reports_formats_and_the_bandwidth_model():
    result = subprocess.run(
        [sys.executable, "-m", "numba_adam.cli", "bench", "--sizes", "1e5", "--no-models",
         "--no-loop", "--no-neighbour", "--no-torch", "--state-bits", "32,16,8",
         "--repeats", "2", "--seconds", "0.005", "--json"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    formats = {r["state_bits"]: r for r in out["formats"]}
    assert set(formats) == {32, 16, 8}
    assert formats[8]["state_bytes_per_param"] < 2.1 < formats[16]["state_bytes_per_param"]
    assert formats[16]["bytes_per_param"] == 20
    assert formats[8]["speed_over_32_bit"]["median"] > 0
    steps = {r["implementation"]: r for r in out["step"]}
    for suffix in (", 16-bit state", ", 8-bit state"):
        assert f"roofline{suffix}" in steps    # each format beside its own same-bytes kernel
        assert steps[f"numba_adam{suffix}"]["roofline_fraction"]["median"] > 0
        assert steps[f"roofline{suffix}"]["over_numba_adam"]["median"] > 0
    costs = {r["state_bits"]: r for r in out["costs"]}
    assert set(costs) == {32, 16, 8} and all(r["ns_per_element"] > 0 for r in costs.values())
    assert costs[8]["additive_wins_below_gb_per_s_per_core"] > 0
    bad = subprocess.run([sys.executable, "-m", "numba_adam.cli", "bench", "--state-bits", "4"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--state-bits must list 32, 16 or 8" in bad.stderr


def test_bench_torch_times_the_torch_front_end_against_torch_and_deepspeed():
    pytest.importorskip("torch")
    result = subprocess.run(
        [sys.executable, "-m", "numba_adam.cli", "bench", "--torch", "--sizes", "1e4",
         "--no-models", "--repeats", "2", "--seconds", "0.005", "--json"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    rows = {r["implementation"]: r for r in out["torch"]}
    expected = {"numba_adam.torch", "numba_adam.torch, fresh grads",
                "numba_adam.torch, 16-bit state", "numba_adam", "torch.optim.Adam fused"}
    assert expected <= set(rows)
    # DeepSpeed runs where it builds, and is named as left out (with why) where not
    assert ("DeepSpeedCPUAdam" in rows) == (out["deepspeed_left_out"] is None)
    speedup = rows["torch.optim.Adam fused"]["numba_adam_torch_speedup"]
    assert speedup["low"] <= speedup["median"] <= speedup["high"]
    assert rows["numba_adam.torch"]["numba_adam_torch_speedup"] is None
    speedup16 = rows["torch.optim.Adam fused"]["numba_adam_torch_16_bit_speedup"]
    assert speedup16["low"] <= speedup16["median"] <= speedup16["high"]
    assert rows["numba_adam"]["numba_adam_torch_16_bit_speedup"] is None
    bad = subprocess.run([sys.executable, "-m", "numba_adam.cli", "bench", "--torch",
                          "--dtype", "float64"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--dtype float32" in bad.stderr


@pytest.mark.parametrize("state_bits", [32, 16, 8])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_same_bytes_kernel_moves_a_steps_bytes(state_bits, amsgrad):
    """Each format's roofline holds (so moves) the bytes the bench credits a step with."""
    n = 1000
    roofline = SameBytes(n, np.float32, amsgrad=amsgrad, state_bits=state_bits)
    roofline()
    p, g = roofline.arrays[:2]
    moved = 2 * p.nbytes + g.nbytes + 2 * sum(a.nbytes for a in roofline.arrays[2:])
    assert moved == pytest.approx(n * bytes_per_param(np.float32, amsgrad, state_bits),
                                  rel=0.002)
