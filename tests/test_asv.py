"""The asv benchmark suite runs (one quick sample each) against the installed package."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("asv") is None, reason="asv is not installed")
def test_asv_quick_run_passes(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("asv needs the git checkout")
    env = dict(os.environ, HOME=str(tmp_path))   # asv keeps its machine file in HOME
    subprocess.run(["asv", "machine", "--yes", "--machine", "ci"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=120)
    result = subprocess.run(
        ["asv", "run", "--python=same", "--quick", "--show-stderr", "--machine", "ci",
         "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "failed" not in output.lower(), output[-4000:]
    for name in ("StepTime.time_step", "Bandwidth.track_seconds_per_gb", "Latency.time_step",
                 "ManyTensors.time_step", "SparseRows.time_step", "Checkpoint.time_save",
                 "Checkpoint.time_load", "Checkpoint.track_save_mb_per_s",
                 "Checkpoint.track_load_time_over_np_load", "peakmem_optimizer_and_100_steps",
                 "FirstStep.track_first_step_seconds", "ManyTensors.track_time_over_roofline",
                 "Drift.track_max_error_vs_torch_float32", "Drift.track_max_error_vs_mlx",
                 "StateBits.track_speed_over_32_bit_state",
                 "StateBitsComputeCost.track_ns_per_element"):
        assert name in output, f"{name} did not run"
