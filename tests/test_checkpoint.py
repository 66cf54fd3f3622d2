"""Checkpoints: atomic, checksummed, pickle-free, bit-exact resume."""

import copy
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import numba_adam
from numba_adam import CheckpointError, schedules
from cases import OPTION_SETS

SHAPES = {"w": (6, 5), "b": (5,), "s": ()}


def make(options=None, schedule=None, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    buf = numba_adam.ParamBuffer({k: rng.standard_normal(s) for k, s in SHAPES.items()}, dtype)
    opt = numba_adam.Adam([{"params": [buf["w"], buf["s"]]}, {"params": [buf["b"]], "lr": 0.05}],
                          lr=schedule if schedule is not None else 0.01, **(options or {}))
    return buf, opt


def train(buf, opt, steps, seed=1):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        buf.grad[:] = rng.standard_normal(buf.size)
        opt.step()


def snapshot(buf, opt):
    return buf.data.copy(), copy.deepcopy(opt.state_dict())


def assert_same(buf, opt, snap):
    data, sd = snap
    np.testing.assert_array_equal(buf.data, data)
    now = opt.state_dict()
    assert now["param_groups"] == sd["param_groups"]
    for k, entry in sd["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(now["state"][k][key], value)


def test_round_trip_restores_state_params_and_schedule(tmp_path):
    sched = schedules.cosine_decay(0.1, 20)
    buf, opt = make(dict(amsgrad=True), sched)
    train(buf, opt, 3)
    opt.save(tmp_path / "a.ckpt", params=True)
    expected = snapshot(buf, opt)
    buf2, opt2 = make()
    opt2.load(tmp_path / "a.ckpt")
    assert_same(buf2, opt2, expected)
    assert opt2.param_groups[0].schedule == sched
    ckpt = numba_adam.load_checkpoint(tmp_path / "a.ckpt")
    assert ckpt.optimizer == "Adam" and ckpt.dtype == np.float32
    assert [g["updates"] for g in ckpt.groups] == [3, 3]
    np.testing.assert_array_equal(ckpt.params[0], buf["w"])


def test_load_without_params_leaves_values(tmp_path):
    buf, opt = make()
    train(buf, opt, 2)
    opt.save(tmp_path / "a.ckpt")
    buf2, opt2 = make(seed=9)
    before = buf2.data.copy()
    opt2.load(tmp_path / "a.ckpt")
    np.testing.assert_array_equal(buf2.data, before)
    with pytest.raises(CheckpointError, match="holds no parameter values"):
        opt2.load(tmp_path / "a.ckpt", params=True)


def test_plain_callable_lr_is_refused_at_save_time(tmp_path):
    buf, opt = make(schedule=lambda step: 0.1)
    with pytest.raises(CheckpointError, match=r"plain callable .* cannot be saved"):
        opt.save(tmp_path / "a.ckpt")
    assert not os.listdir(tmp_path)


def corrupt(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "flip":
        data[len(data) // 2] ^= 0x01
    elif how == "version":
        struct.pack_into("<I", data, 16, 99)
    elif how == "magic":
        data[:4] = b"XXXX"
    elif how == "empty":
        data = b""
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how, pattern", [
    ("truncate", "truncated"), ("flip", "checksum mismatch"),
    ("version", "format version 99"), ("magic", "not a numba_adam checkpoint"),
    ("empty", "truncated"),
])
def test_damaged_files_raise_and_change_nothing(tmp_path, how, pattern):
    buf, opt = make(dict(amsgrad=True))
    train(buf, opt, 2)
    opt.save(tmp_path / "a.ckpt", params=True)
    corrupt(tmp_path / "a.ckpt", how)
    train(buf, opt, 1, seed=4)
    snap = snapshot(buf, opt)
    with pytest.raises(CheckpointError, match=pattern):
        opt.load(tmp_path / "a.ckpt")
    assert_same(buf, opt, snap)


def test_missing_file_raises_checkpoint_error(tmp_path):
    buf, opt = make()
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        opt.load(tmp_path / "nope.ckpt")


@pytest.mark.parametrize("other, pattern", [
    (lambda: numba_adam.Adam([np.zeros((6, 5), np.float32)]), "holds 2 parameter groups"),
    (lambda: numba_adam.Adam([{"params": [np.zeros((6, 5), np.float32)]},
                              {"params": [np.zeros(5, np.float32)]}]), "group 0 holds 2"),
    (lambda: numba_adam.Adam([{"params": [np.zeros((5, 6), np.float32), np.zeros((), np.float32)]},
                              {"params": [np.zeros(5, np.float32)]}]), r"has shape \(6, 5\) in the file"),
    (lambda: numba_adam.Adam([{"params": {"w": np.zeros((6, 5), np.float32),
                                          "t": np.zeros((), np.float32)}},
                              {"params": {"b": np.zeros(5, np.float32)}}]), r"is 's' in the file but 't'"),
])
def test_checkpoint_of_another_model_is_refused(tmp_path, other, pattern):
    buf, opt = make()
    train(buf, opt, 2)
    opt.save(tmp_path / "a.ckpt", params=True)
    target = other()
    target.step([np.ones(p.shape, np.float32) for g in target.param_groups for p in g["params"]])
    sd = copy.deepcopy(target.state_dict())
    with pytest.raises(CheckpointError, match=pattern):
        target.load(tmp_path / "a.ckpt")
    assert target.state_dict()["param_groups"] == sd["param_groups"]


def test_pickle_payload_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps(Payload()))
    buf, opt = make()
    with pytest.raises(CheckpointError, match="not a numba_adam checkpoint"):
        opt.load(path)
    with pytest.raises(CheckpointError):
        numba_adam.load_checkpoint(path)
    assert not marker.exists()


def test_a_killed_writer_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "big.ckpt"
    buf = numba_adam.ParamBuffer({"w": np.zeros(8_000_000)})
    opt = numba_adam.Adam(buf)
    opt.save(path, params=True)
    good = path.read_bytes()
    writer = textwrap.dedent(f"""
        import numpy as np, numba_adam, sys
        buf = numba_adam.ParamBuffer({{"w": np.ones(8_000_000)}})
        opt = numba_adam.Adam(buf)
        print("ready", flush=True)
        while True:
            opt.save({str(path)!r}, params=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    killed_mid_write = False
    deadline = time.time() + 30
    while time.time() < deadline and not killed_mid_write:
        if any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
            proc.send_signal(signal.SIGKILL)
            killed_mid_write = True
        time.sleep(0.001)
    proc.wait()
    assert killed_mid_write, "never caught the writer mid-save"
    # The target is either the old or a complete new checkpoint, never a partial one.
    numba_adam.load_checkpoint(path)
    data = path.read_bytes()
    assert data == good or len(data) == len(good)
    # The next save clears what the killed writer left behind.
    opt.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["big.ckpt"]


RESUME = textwrap.dedent("""
    import sys, json, numpy as np
    sys.path.insert(0, {tests!r})
    import numba_adam
    from test_checkpoint import make, train
    from numba_adam import schedules
    cases = json.loads({cases!r})
    out = {{}}
    for name, (options, use_schedule, k, n) in cases.items():
        sched = schedules.warmup_cosine_decay(0.0, 0.1, 3, 20) if use_schedule else None
        buf, opt = make(options, sched, seed=7)
        opt.load({folder!r} + "/" + name + ".ckpt")
        train(buf, opt, n - k, seed=100 + k)
        out[name] = buf.data
    np.savez({folder!r} + "/resumed.npz", **out)
""")


def test_save_load_in_a_fresh_process_resumes_bit_for_bit(tmp_path):
    import json
    cases, unbroken = {}, {}
    for name, options in OPTION_SETS.items():
        for use_schedule in (False, True):
            key = f"{name}-{'sched' if use_schedule else 'const'}"
            k, n = 3, 7
            sched = schedules.warmup_cosine_decay(0.0, 0.1, 3, 20) if use_schedule else None
            buf, opt = make(options, sched)
            train(buf, opt, k, seed=1)
            opt.save(tmp_path / f"{key}.ckpt", params=True)
            train(buf, opt, n - k, seed=100 + k)
            unbroken[key] = buf.data.copy()
            cases[key] = (options, use_schedule, k, n)
    script = RESUME.format(tests=os.path.dirname(__file__), cases=json.dumps(cases),
                           folder=str(tmp_path))
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    resumed = np.load(tmp_path / "resumed.npz")
    for key, data in unbroken.items():
        np.testing.assert_array_equal(resumed[key], data, err_msg=key)


def test_checkpoint_state_dict_loads_with_load_state_dict(tmp_path):
    buf, opt = make(dict(amsgrad=True))
    train(buf, opt, 2)
    opt.save(tmp_path / "a.ckpt")
    buf2, opt2 = make()
    buf2.data[:] = buf.data
    opt2.load_state_dict(numba_adam.load_checkpoint(tmp_path / "a.ckpt").state_dict())
    train(buf, opt, 1, seed=3)
    train(buf2, opt2, 1, seed=3)
    np.testing.assert_array_equal(buf.data, buf2.data)


def _v1_model():
    """The model and training run tests/data/checkpoint_v1.ckpt was written from (format 1)."""
    rng = np.random.default_rng(7)
    buf = numba_adam.ParamBuffer({"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)})
    plain = np.asfortranarray(rng.standard_normal((3, 2)).astype(np.float32))
    opt = numba_adam.Adam([{"params": [buf["w"], buf["b"]], "amsgrad": True},
                           {"params": [plain], "lr": schedules.cosine_decay(0.1, 20),
                            "weight_decay": 0.01}], lr=0.01)
    return buf, plain, opt


def test_format_1_checkpoints_still_load_bit_for_bit():
    buf, plain, opt = _v1_model()
    g = np.random.default_rng(8)
    for _ in range(3):
        buf.grad[:] = g.standard_normal(buf.size)
        opt.step([buf.grads["w"], buf.grads["b"], g.standard_normal((3, 2)).astype(np.float32)])
    buf2, plain2, opt2 = _v1_model()
    buf2.data[:] = 0
    plain2[...] = 0
    path = os.path.join(os.path.dirname(__file__), "data", "checkpoint_v1.ckpt")
    assert numba_adam.load_checkpoint(path).version == 1
    opt2.load(path)
    np.testing.assert_array_equal(buf2.data, buf.data)
    np.testing.assert_array_equal(plain2, plain)
    assert_same(buf2, opt2, snapshot(buf, opt))


def test_checkpoints_hold_logical_state_not_engine_offsets(tmp_path):
    buf, opt = make(dict(amsgrad=True))
    train(buf, opt, 2)
    opt.save(tmp_path / "a.ckpt")
    ckpt = numba_adam.load_checkpoint(tmp_path / "a.ckpt")
    assert ckpt.version == 2
    for group in ckpt.groups:
        for t in group["tensors"]:
            assert set(t) == {"name", "shape"}
    assert sorted(ckpt.arrays) == [f"groups.{g}.{k}" for g in (0, 1)
                                   for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")]
    sd = opt.state_dict()
    np.testing.assert_array_equal(ckpt.arrays["groups.0.exp_avg"],
                                  np.concatenate([sd["state"][0]["exp_avg"].ravel(),
                                                  sd["state"][1]["exp_avg"].ravel()]))


def test_a_save_removes_only_temporaries_of_writers_that_are_gone(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".a.ckpt.{dead.pid}.x1.tmp"
    live = tmp_path / f".a.ckpt.{os.getppid()}.x2.tmp"     # the process that runs pytest
    other = tmp_path / f".b.ckpt.{dead.pid}.x3.tmp"        # another target's
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    buf, opt = make()
    opt.save(tmp_path / "a.ckpt")
    assert not stale.exists() and live.exists() and other.exists()


def test_saving_through_a_symlink_updates_its_target(tmp_path):
    buf, opt = make()
    train(buf, opt, 1)
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "real.ckpt"
    opt.save(target)
    link = tmp_path / "latest.ckpt"
    link.symlink_to(target)
    train(buf, opt, 1)
    opt.save(link)
    assert link.is_symlink()
    assert numba_adam.load_checkpoint(target).groups[0]["updates"] == 2


def test_a_new_checkpoint_is_private_and_an_old_one_keeps_its_mode(tmp_path):
    buf, opt = make()
    opt.save(tmp_path / "a.ckpt")
    assert (tmp_path / "a.ckpt").stat().st_mode & 0o777 == 0o600
    os.chmod(tmp_path / "a.ckpt", 0o644)
    opt.save(tmp_path / "a.ckpt")
    assert (tmp_path / "a.ckpt").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("where", ["directory", "missing folder", "empty"])
def test_save_errors_are_checkpoint_errors_that_name_the_path(tmp_path, where):
    buf, opt = make()
    path = {"directory": tmp_path, "missing folder": tmp_path / "no" / "a.ckpt",
            "empty": ""}[where]
    with pytest.raises(CheckpointError, match=r"cannot save checkpoint to"):
        opt.save(path)


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_only_regular_files_are_read(tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    else:
        path = tmp_path if kind == "directory" else "/dev/zero"
    buf, opt = make()
    with pytest.raises(CheckpointError, match=r"not a regular file"):
        opt.load(path)


REFUSE_GARBAGE = textwrap.dedent("""
    import resource, struct, sys, json
    import numba_adam
    path = sys.argv[1]
    header = json.dumps({"arrays": {"exp_avg": {"dtype": "<f4", "count": 2**28, "offset": 0}},
                         "groups": []}).encode()
    with open(path, "wb") as f:
        f.write(numba_adam.checkpoint.MAGIC + struct.pack("<IIQ", 2, 0, len(header)) + header)
        base = -(-(32 + len(header)) // 64) * 64
        f.truncate(base + (1 << 30) + 32)   # sparse: sizes agree, so the checksum is computed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        numba_adam.load_checkpoint(path)
    except numba_adam.CheckpointError as exc:
        print("refused:", str(exc)[-60:])
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
""")


def test_refusing_a_1_gib_garbage_file_takes_bounded_memory(tmp_path):
    out = subprocess.run([sys.executable, "-c", REFUSE_GARBAGE, str(tmp_path / "g.ckpt")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    refused, grew_mb = out.stdout.splitlines()
    assert refused.startswith("refused:")
    assert int(grew_mb) < 64, out.stdout
