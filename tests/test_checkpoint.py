"""Checkpoints: atomic, checksummed, pickle-free, bit-exact resume."""

import copy
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

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


def rewrite(path, change_metadata=None, change_inner=None):
    """Rewrite a checkpoint's safetensors header with its checksum recomputed, as a crafted
    file would be: ``change_metadata(metadata)`` / ``change_inner(numba_adam_header)`` edit
    the header in place."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    outer = json.loads(data[8:8 + n])
    payload = data[8 + n:]
    meta = outer["__metadata__"]
    inner = json.loads(meta["numba_adam"])
    if change_inner:
        change_inner(inner)
    meta["numba_adam"] = json.dumps(inner)
    if change_metadata:
        change_metadata(meta)
    if meta.get("checksum", "").startswith("crc32:") and isinstance(meta.get("numba_adam"), str):
        crc = zlib.crc32(payload, zlib.crc32(meta["numba_adam"].encode()))
        meta["checksum"] = f"crc32:{crc:08x}"
    head = json.dumps(outer).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + payload)


def corrupt(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "flip":
        data[-5] ^= 0x01
    elif how == "flip header":
        data[len(data) // 4] ^= 0x01
    elif how == "version":
        rewrite(path, change_metadata=lambda meta: meta.update(format_version="99"))
        return
    elif how == "magic":
        data[:4] = b"XXXX"
    elif how == "empty":
        data = b""
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how, pattern", [
    ("truncate", "truncated"), ("flip", "checksum mismatch"), ("flip header", "a.ckpt"),
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


KILLED_WRITER = textwrap.dedent("""
    import numpy as np, numba_adam, sys
    buf = numba_adam.ParamBuffer({"w": np.full(4_000_000, float(sys.argv[2]))})
    opt = numba_adam.Adam(buf)
    print("ready", flush=True)
    while True:
        opt.save(sys.argv[1], params=True)
""")


def test_writers_killed_mid_save_leave_the_previous_checkpoint_and_nothing_else(tmp_path):
    """kill -9 a saving process again and again: the target always loads (the previous file
    or a complete new one), and each later save removes the temporary file left behind."""
    path = tmp_path / "big.ckpt"
    buf = numba_adam.ParamBuffer({"w": np.zeros(4_000_000)})
    opt = numba_adam.Adam(buf)
    opt.save(path, params=True)
    kills = cleaned = 0
    for round_ in range(1, 5):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path), str(round_)],
                                stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        deadline = time.time() + 30
        while time.time() < deadline:
            if any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
                proc.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.001)
        else:
            proc.kill()
        proc.wait()
        ckpt = numba_adam.load_checkpoint(path)      # never a partial file
        assert ckpt.params[0][0] in (0.0, *range(1, round_ + 1))
        left = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(left) <= 1
        opt.save(path, params=True)                   # clears what the killed writer left
        cleaned += len(left)
        assert [p.name for p in tmp_path.iterdir()] == ["big.ckpt"]
    assert kills >= 3 and cleaned >= 3, (kills, cleaned)


ENOSPC_RUN = textwrap.dedent("""
    import sys, os, numpy as np, numba_adam
    folder = sys.argv[1]
    path = os.path.join(folder, "a.ckpt")
    opt = numba_adam.Adam({"w": np.zeros(40_000)})          # 640 kB of float64 state
    opt.step({"w": np.ones(40_000)})
    opt.save(path)                                         # fits in the 1 MiB tmpfs
    before = open(path, "rb").read()
    opt.step({"w": np.ones(40_000)})
    try:
        opt.save(path)                                     # a second copy does not fit
    except numba_adam.CheckpointError as exc:
        assert path in str(exc) and "No space left" in str(exc), exc
    else:
        raise AssertionError("the save did not fail")
    assert open(path, "rb").read() == before
    assert os.listdir(folder) == ["a.ckpt"], os.listdir(folder)
    assert numba_adam.load_checkpoint(path).groups[0]["updates"] == 1
    print("ok")
""")


def test_a_full_disk_fails_the_save_cleanly(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    script = tmp_path / "run.py"
    script.write_text(ENOSPC_RUN)
    mount = f"mount -t tmpfs -o size=1m tmpfs {folder}"
    for prefix in (["unshare", "-rm"], []):    # a private mount namespace where allowed
        try:
            result = subprocess.run(prefix + ["sh", "-c", f"{mount} && exec {sys.executable} "
                                              f"{script} {folder}"],
                                    capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            continue
        if "ok" in result.stdout or "Error" in result.stderr:
            break
    else:
        pytest.skip("cannot mount a small tmpfs here")
    subprocess.run(["umount", str(folder)], capture_output=True)
    assert result.stdout.strip() == "ok", result.stderr[-3000:]


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


@pytest.mark.parametrize("version", [1, 2])
def test_older_formats_still_load_bit_for_bit(version):
    buf, plain, opt = _v1_model()
    g = np.random.default_rng(8)
    for _ in range(3):
        buf.grad[:] = g.standard_normal(buf.size)
        opt.step([buf.grads["w"], buf.grads["b"], g.standard_normal((3, 2)).astype(np.float32)])
    buf2, plain2, opt2 = _v1_model()
    buf2.data[:] = 0
    plain2[...] = 0
    path = os.path.join(os.path.dirname(__file__), "data", f"checkpoint_v{version}.ckpt")
    assert numba_adam.load_checkpoint(path).version == version
    opt2.load(path)
    np.testing.assert_array_equal(buf2.data, buf.data)
    np.testing.assert_array_equal(plain2, plain)
    assert_same(buf2, opt2, snapshot(buf, opt))


def test_a_checkpoint_is_a_safetensors_file(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file
    buf, opt = make(dict(amsgrad=True))
    train(buf, opt, 2)
    opt.save(tmp_path / "a.ckpt", params=True)
    ckpt = numba_adam.load_checkpoint(tmp_path / "a.ckpt")
    loaded = load_file(tmp_path / "a.ckpt")
    assert sorted(loaded) == sorted(ckpt.arrays)
    for name, array in loaded.items():
        np.testing.assert_array_equal(array, ckpt.arrays[name])
    with safe_open(tmp_path / "a.ckpt", framework="numpy") as f:
        meta = f.metadata()
    assert meta["format"] == "numba_adam checkpoint" and meta["format_version"] == "3"
    assert json.loads(meta["numba_adam"])["groups"][0]["updates"] == 2
    assert (tmp_path / "a.ckpt").stat().st_size % 4 == 0


def test_a_safetensors_file_from_elsewhere_is_refused_by_name(tmp_path):
    from safetensors.numpy import save_file
    save_file({"exp_avg": np.zeros(4, np.float32)}, tmp_path / "model.safetensors")
    buf, opt = make()
    with pytest.raises(CheckpointError, match="no numba_adam metadata"):
        opt.load(tmp_path / "model.safetensors")


def test_checkpoints_hold_logical_state_not_engine_offsets(tmp_path):
    buf, opt = make(dict(amsgrad=True))
    train(buf, opt, 2)
    opt.save(tmp_path / "a.ckpt")
    ckpt = numba_adam.load_checkpoint(tmp_path / "a.ckpt")
    assert ckpt.version == 3
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
    from numba_adam import checkpoint
    path, kind = sys.argv[1], sys.argv[2]
    directory = {"exp_avg": {"dtype": "<f4", "count": 2**28, "offset": 0}}
    with open(path, "wb") as f:
        if kind == "safetensors":     # valid structure, 1 GiB of zeros: only the checksum fails
            inner = json.dumps({"format": checkpoint.FORMAT_NAME, "groups": [],
                                "arrays": directory})
            head = json.dumps({"__metadata__": {
                "checksum": "crc32:00000000", "format": checkpoint.FORMAT_NAME,
                "format_version": "3", "numba_adam": inner},
                "exp_avg": {"dtype": "F32", "shape": [2**28], "data_offsets": [0, 2**30]}})
            f.write(struct.pack("<Q", len(head)) + head.encode())
            f.truncate(8 + len(head) + (1 << 30))
        else:                         # format 2
            header = json.dumps({"arrays": directory, "groups": []}).encode()
            f.write(checkpoint.MAGIC + struct.pack("<IIQ", 2, 0, len(header)) + header)
            base = -(-(32 + len(header)) // 64) * 64
            f.truncate(base + (1 << 30) + 32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        numba_adam.load_checkpoint(path)
    except numba_adam.CheckpointError as exc:
        print("refused:", str(exc)[-60:])
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
""")


@pytest.mark.parametrize("kind", ["safetensors", "format 2"])
def test_refusing_a_1_gib_garbage_file_takes_bounded_memory(tmp_path, kind):
    out = subprocess.run([sys.executable, "-c", REFUSE_GARBAGE, str(tmp_path / "g.ckpt"), kind],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    refused, grew_mb = out.stdout.splitlines()
    assert refused.startswith("refused:") and "checksum mismatch" in refused, refused
    assert int(grew_mb) < 64, out.stdout


# -- fuzzing: every damaged or crafted file is a CheckpointError, and changes nothing ------

@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    """One saved checkpoint (bytes) and an optimizer it fits; the fuzz tests load variants."""
    folder = tmp_path_factory.mktemp("fuzz")
    buf, opt = make(dict(amsgrad=True), schedules.cosine_decay(0.1, 20))
    train(buf, opt, 2)
    opt.save(folder / "good.ckpt", params=True)
    train(buf, opt, 1, seed=5)
    return folder, (folder / "good.ckpt").read_bytes(), buf, opt


FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _load_variant(fuzz_target, data: bytes) -> None:
    """Load ``data`` as a checkpoint: it loads, or raises CheckpointError with nothing changed."""
    folder, good, buf, opt = fuzz_target
    (folder / "variant.ckpt").write_bytes(data)
    snap = snapshot(buf, opt)
    try:
        opt.load(folder / "variant.ckpt")
    except CheckpointError as exc:
        assert "variant.ckpt" in str(exc)
        assert_same(buf, opt, snap)
    else:
        (folder / "good.ckpt").write_bytes(good)   # an accepted variant: back to a known state
        opt.load(folder / "good.ckpt")
        train(buf, opt, 1, seed=5)


@settings(max_examples=150, **FUZZ)
@given(cut=st.floats(0, 1, exclude_max=True))
def test_fuzz_every_truncation_is_refused(fuzz_target, cut):
    good = fuzz_target[1]
    (fuzz_target[0] / "variant.ckpt").write_bytes(good[:int(cut * len(good))])
    with pytest.raises(CheckpointError):
        numba_adam.load_checkpoint(fuzz_target[0] / "variant.ckpt")
    _load_variant(fuzz_target, good[:int(cut * len(good))])


@settings(max_examples=200, **FUZZ)
@given(where=st.floats(0, 1, exclude_max=True), mask=st.integers(1, 255))
def test_fuzz_byte_flips_are_refused_or_harmless(fuzz_target, where, mask):
    data = bytearray(fuzz_target[1])
    data[int(where * len(data))] ^= mask
    _load_variant(fuzz_target, bytes(data))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70)
                    | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _paths(value, prefix=()):
    """Every (container, key) position in a JSON value."""
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, child in items:
        yield prefix + (key,)
        yield from _paths(child, prefix + (key,))


@settings(max_examples=300, **FUZZ)
@given(pick=st.floats(0, 1, exclude_max=True), value=JSON, delete=st.booleans(),
       outer=st.booleans())
def test_fuzz_crafted_headers_with_valid_checksums(fuzz_target, tmp_path_factory, pick, value,
                                                   delete, outer):
    """Any field of the numba_adam header (or the safetensors entries) replaced or deleted,
    the checksum recomputed so the file passes the integrity check."""
    def craft(tree):
        paths = list(_paths(tree))
        path = paths[int(pick * len(paths))]
        node = tree
        for key in path[:-1]:
            node = node[key]
        if delete and isinstance(node, dict):
            del node[path[-1]]
        else:
            node[path[-1]] = value

    folder = fuzz_target[0]
    (folder / "crafted.ckpt").write_bytes(fuzz_target[1])
    if outer:
        data = fuzz_target[1]
        (n,) = struct.unpack("<Q", data[:8])
        head = json.loads(data[8:8 + n])
        meta = head.pop("__metadata__")
        craft(head)
        text = json.dumps(dict(head, __metadata__=meta)).encode()
        (folder / "crafted.ckpt").write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])
    else:
        rewrite(folder / "crafted.ckpt", change_inner=craft)
    _load_variant(fuzz_target, (folder / "crafted.ckpt").read_bytes())
