"""16- and 8-bit optimizer state (API.md section 8): codes, kernels, round trips, accuracy."""

import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numba_adam
import reference as ref
from numba_adam import _codes


def model(seed=0, shapes=None, dtype=np.float32):
    rng = np.random.default_rng(seed)
    shapes = shapes or {"w": (40, 130), "b": (130,), "e": (700, 9)}
    return numba_adam.ParamBuffer({k: rng.standard_normal(s) for k, s in shapes.items()}, dtype)


def train(buf, opt, steps, seed=1):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        buf.grad[:] = rng.standard_normal(buf.size) * rng.uniform(0.1, 3.0)
        opt.step()


# -- the codes ------------------------------------------------------------------------
MAGNITUDES = [10.0 ** k for k in range(-12, 4)]


@pytest.mark.parametrize("magnitude", MAGNITUDES)
def test_bfloat16_nearest_round_trip_error(magnitude):
    x = (np.random.default_rng(0).uniform(-1, 1, 4096) * magnitude).astype(np.float32)
    back = _codes.bf16_to_float(_codes.float_to_bf16(x))
    assert np.all(np.abs(back - x) <= np.abs(x) * 2.0 ** -8)


def test_bfloat16_stochastic_rounding_is_unbiased():
    x = np.full(200_000, 1.0 + 2.0 ** -10, np.float32)     # 1/8 of a bfloat16 step up
    r = ref._lowbias32(np.arange(x.size, dtype=np.uint64) * 0x9E3779B1) & 0xFFFF
    back = _codes.bf16_to_float(_codes.float_to_bf16(x, r))
    assert set(np.unique(back)) == {1.0, 1.0 + 2.0 ** -7}
    assert abs(back.mean() - x[0]) < 2.0 ** -7 * 0.01


def test_bfloat16_keeps_inf_and_nan():
    x = np.array([np.inf, -np.inf, np.nan, np.finfo(np.float32).max], np.float32)
    back = _codes.bf16_to_float(_codes.float_to_bf16(x, 0xFFFF))
    assert back[0] == np.inf and back[1] == -np.inf and np.isnan(back[2])
    assert back[3] == np.inf   # the largest float32s round up to inf at most


@pytest.mark.parametrize("signed", [True, False])
def test_8bit_codes_are_the_documented_tables(signed):
    table = ref.code_table(4 if signed else 5, signed)
    codes = np.arange(256)
    valid = np.isfinite(table)
    ours = _codes.m8_to_float(codes) if signed else _codes.v8_to_float(codes)
    np.testing.assert_array_equal(ours[valid], table[valid].astype(np.float32))
    assert ours[0] == 0 and (not signed or ours[128] == 0)   # an exact zero


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("magnitude", [1e-6, 1.0, 1e4])
def test_8bit_quantizer_matches_a_nearest_code_search(signed, magnitude):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(2560) * np.exp(rng.uniform(-12, 0, 2560)) * magnitude)
    x = (x if signed else np.abs(x)).astype(np.float32)
    codes, absmax = _codes.quantize8(x, signed)
    want_codes, want_absmax = ref.quantize_blocks(x, signed)
    np.testing.assert_array_equal(absmax, want_absmax)
    np.testing.assert_array_equal(_codes.dequantize8(codes, absmax, signed),
                                  ref.dequantize_blocks(want_codes, want_absmax, signed))


@pytest.mark.parametrize("signed", [True, False])
def test_8bit_round_trip_error_by_magnitude(signed):
    """Relative error at most half a code step (1/16) wherever the code is normal."""
    rng = np.random.default_rng(2)
    for exponent in range(0, -40, -3):
        x = rng.uniform(0.5, 1.0, 256).astype(np.float32) * np.float32(2.0 ** exponent)
        x[0] = 1.0                                      # the block's absmax
        x = x if signed else np.abs(x)
        codes, absmax = _codes.quantize8(x * (1 if not signed else np.sign(rng.standard_normal(
            256)).astype(np.float32)), signed)
        back = np.abs(_codes.dequantize8(codes, absmax, signed))
        smallest_normal = 2.0 ** (-14 if signed else -30)
        normal = x >= smallest_normal
        assert np.all(np.abs(back - x)[normal] <= x[normal] / 16 + 1e-30)
        assert np.all(np.abs(back - x)[~normal] <= smallest_normal / 16)


# -- the kernels against the NumPy reference ---------------------------------------------
@pytest.mark.parametrize("options", [{}, {"maximize": True}, {"clipvalue": 0.5}])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("bits", [16, 8])
def test_kernel_matches_the_reference(bits, amsgrad, options):
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal(70_000).astype(np.float32)   # several work items and blocks
    grads = [(rng.standard_normal(w0.size) * rng.uniform(0.01, 10)).astype(np.float32)
             for _ in range(8)]
    if amsgrad:       # small gradients last: v falls below v_max (AMSGrad's own path)
        grads += [g * np.float32(1e-3) for g in grads[:3]]
    buf = numba_adam.ParamBuffer({"w": w0})
    opt = numba_adam.Adam([{"params": buf, **options}], lr=1e-2, state_bits=bits, seed=7,
                          amsgrad=amsgrad)
    for g in grads:
        buf.grads["w"][:] = g
        opt.step()
    p, m, v, *v_max = ref.lowbit_torch_adam(w0, grads, bits, lr=1e-2, seed=7,
                                            amsgrad=amsgrad, **options)
    state = opt.tensor_state(0)
    pairs = [(state.exp_avg, m), (state.exp_avg_sq, v)]
    if amsgrad:
        pairs.append((state.max_exp_avg_sq, v_max[0]))
        assert np.mean(v_max[0] > v) > 0.3
    if bits == 16:      # the same random bits: the stored moments agree (but where fused
        # arithmetic moved a value by an ulp across a rounding threshold)
        for ours, theirs in pairs:
            assert np.mean(ours == theirs) > 0.999
        np.testing.assert_allclose(state.exp_avg, m, rtol=2.0 ** -7, atol=1e-7)
    else:               # fused arithmetic moves some values by an ulp, and so some codes
        for (ours, theirs), atol in zip(pairs, (1e-6, 1e-8, 1e-8)):
            np.testing.assert_allclose(ours, theirs, rtol=0.07, atol=atol)
    np.testing.assert_allclose(buf["w"], p, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("scale", [1e15, 1e7, 1e-12])
def test_8bit_kernel_matches_the_reference_at_extreme_block_scales(scale, amsgrad):
    """Block maxima far from 1 (m's above 2^16 and v's above 2^32, or both tiny): the
    codecs' exact power-of-two factors must stay apart from the block scales, which
    fast-math reassociation would fold them into (and overflow or underflow)."""
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal(20_000).astype(np.float32)
    grads = [(rng.standard_normal(w0.size) * scale).astype(np.float32) for _ in range(3)]
    w = w0.copy()
    opt = numba_adam.Adam([w], lr=1e-2, state_bits=8, amsgrad=amsgrad)
    for g in grads:
        opt.step([g])
    p, m, v, *v_max = ref.lowbit_torch_adam(w0, grads, 8, lr=1e-2, amsgrad=amsgrad)
    state = opt.tensor_state(0)
    np.testing.assert_allclose(state.exp_avg, m, rtol=0.07, atol=1e-6 * scale)
    np.testing.assert_allclose(state.exp_avg_sq, v, rtol=0.07, atol=1e-8 * scale ** 2)
    if amsgrad:
        np.testing.assert_allclose(state.max_exp_avg_sq, v_max[0], rtol=0.07,
                                   atol=1e-8 * scale ** 2)
    np.testing.assert_allclose(w, p, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bits", [16, 8])
@pytest.mark.parametrize("options", [{}, {"amsgrad": True}, {"weight_decay": 0.1},
                                     {"maximize": True, "decoupled_weight_decay": True,
                                      "weight_decay": 0.05}])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_low_bit_state_tracks_32_bit_state(bits, options, dtype):
    bufs, opts = {}, {}
    for b in (32, bits):
        bufs[b] = model(dtype=dtype)
        opts[b] = numba_adam.Adam(bufs[b], lr=1e-3, state_bits=b, min_8bit_size=1000,
                                  **options)
        train(bufs[b], opts[b], 20)
    drift = np.abs(bufs[bits].data - bufs[32].data).max()
    assert drift < (2e-4 if bits == 16 else 2e-3), drift
    s32, low = opts[32].tensor_state(0), opts[bits].tensor_state(0)
    relative = np.abs(low.exp_avg_sq - s32.exp_avg_sq) / s32.exp_avg_sq
    assert np.median(relative) < (0.005 if bits == 16 else 0.05)
    assert np.quantile(relative, 0.99) < (0.02 if bits == 16 else 0.2)
    if options.get("amsgrad"):
        assert np.all(low.max_exp_avg_sq >= 0)


def test_clipping_and_schedules_work_with_low_bit_state():
    for bits in (16, 8):
        bufs = []
        for b in (32, bits):
            buf = model()
            opt = numba_adam.Adam(buf, lr=numba_adam.schedules.cosine_decay(1e-2, 50),
                                  state_bits=b, min_8bit_size=1000)
            opt.global_clipnorm = 1.0
            train(buf, opt, 10)
            bufs.append(buf.data.copy())
            np.testing.assert_allclose(opt.grad_scales(), opt.grad_scales()[0])
        assert np.abs(bufs[0] - bufs[1]).max() < 1e-2


def test_small_tensors_keep_32_bit_state():
    buf = model()
    opt = numba_adam.Adam8bit(buf, lr=1e-3)     # min_8bit_size 4096: w (5200) and e (6300)
    train(buf, opt, 2)
    state = opt.state_dict()["state"]
    assert state[0]["exp_avg"].dtype == np.uint8 and "exp_avg_absmax" in state[0]
    assert state[1]["exp_avg"].dtype == np.float32 and state[1]["exp_avg"].shape == (130,)
    assert opt.param_groups[0]["state_bits"] == 8


def test_state_bytes_per_parameter():
    n = 1 << 20
    sizes = {}
    for bits in (32, 16, 8):
        opt = numba_adam.Adam(numba_adam.ParamBuffer({"w": np.zeros(n, np.float32)}),
                              state_bits=bits)
        sizes[bits] = opt.state_nbytes / n
    assert sizes[32] == 8 and sizes[16] <= 4.05 and sizes[8] <= 2.1, sizes


@pytest.mark.parametrize("bits", [16, 8])
def test_results_do_not_depend_on_the_thread_count(bits):
    out = []
    for threads in (1, 2):
        previous = numba_adam.get_num_threads()
        numba_adam.set_num_threads(threads)
        try:
            buf = numba_adam.ParamBuffer({"w": np.linspace(-1, 1, (1 << 23) + 300,
                                                           dtype=np.float32)})
            opt = numba_adam.Adam(buf, lr=1e-3, state_bits=bits)
            for k in range(3):
                buf.grad[:] = np.sin(np.arange(buf.size, dtype=np.float32) * (k + 1))
                opt.step()
            out.append((buf.data.copy(), opt.state_dict()["state"][0]))
        finally:
            numba_adam.set_num_threads(previous)
    np.testing.assert_array_equal(out[0][0], out[1][0])
    for key in out[0][1]:
        np.testing.assert_array_equal(out[0][1][key], out[1][1][key])


def test_the_seed_changes_16_bit_rounding_only():
    results = []
    for seed in (0, 0, 1):
        buf = model()
        opt = numba_adam.Adam(buf, lr=1e-3, state_bits=16, seed=seed)
        train(buf, opt, 5)
        results.append(opt.state_dict()["state"][0]["exp_avg_sq"])
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.array_equal(results[0], results[2])


# -- sparse gradients -----------------------------------------------------------------------
@pytest.mark.parametrize("bits", [16, 8])
def test_dense_equivalent_sparse_equals_a_dense_step(bits):
    rng = np.random.default_rng(4)
    table = rng.standard_normal((300, 40)).astype(np.float32)
    a, b = table.copy(), table.copy()
    oa = numba_adam.Adam([a], lr=1e-2, state_bits=bits, min_8bit_size=100)
    ob = numba_adam.Adam([b], lr=1e-2, state_bits=bits, min_8bit_size=100)
    for _ in range(4):
        rows = rng.integers(0, 300, 20)
        values = rng.standard_normal((20, 40)).astype(np.float32)
        sparse = numba_adam.IndexedSlices(values, rows, table.shape)
        oa.step([sparse])
        ob.step([sparse.to_dense()])
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for key, value in oa.state_dict()["state"][0].items():
        if key != "step":
            close = np.asarray(value) == np.asarray(ob.state_dict()["state"][0][key])
            assert close.mean() > 0.99, key


@pytest.mark.parametrize("bits", [16, 8])
def test_lazy_sparse_leaves_other_rows_alone(bits):
    rng = np.random.default_rng(5)
    table = rng.standard_normal((300, 40)).astype(np.float32)
    opt = numba_adam.Adam([{"params": [table], "lazy_sparse": True}], lr=1e-2,
                          state_bits=bits, min_8bit_size=100)
    opt.step([rng.standard_normal(table.shape).astype(np.float32)])
    before = table.copy()
    m_before = opt.tensor_state(0).exp_avg.copy()
    rows = np.array([3, 100, 101, 299])
    opt.step([numba_adam.IndexedSlices(np.ones((4, 40), np.float32), rows, table.shape)])
    others = np.setdiff1d(np.arange(300), rows)
    np.testing.assert_array_equal(table[others], before[others])
    assert not np.any(table[rows] == before[rows])
    m_after = opt.tensor_state(0).exp_avg
    if bits == 16:
        np.testing.assert_array_equal(m_after[others], m_before[others])
    else:       # re-encoded against the touched blocks' new scale: within a code step
        np.testing.assert_allclose(m_after[others], m_before[others], rtol=1 / 16, atol=1e-6)


# -- state_dict, conversions and checkpoints ---------------------------------------------
@pytest.mark.parametrize("bits", [16, 8])
def test_compact_state_dict_round_trip_is_bit_exact(bits):
    buf = model()
    opt = numba_adam.Adam(buf, lr=1e-3, state_bits=bits, amsgrad=True, min_8bit_size=1000)
    train(buf, opt, 3)
    sd = opt.state_dict()
    twin_buf = numba_adam.ParamBuffer({k: buf[k].copy() for k in buf.names})
    twin = numba_adam.Adam(twin_buf, lr=1e-3)            # a 32-bit optimizer...
    twin.load_state_dict(sd)                             # ...takes the group's state_bits
    assert twin.param_groups[0]["state_bits"] == bits
    train(buf, opt, 3, seed=9)
    train(twin_buf, twin, 3, seed=9)
    np.testing.assert_array_equal(buf.data, twin_buf.data)
    for key, value in opt.state_dict()["state"][0].items():
        np.testing.assert_array_equal(value, twin.state_dict()["state"][0][key])


@pytest.mark.parametrize("bits", [16, 8])
def test_dequantized_state_dict_continues_in_torch_layout(bits):
    buf = model()
    opt = numba_adam.Adam(buf, lr=1e-3, state_bits=bits, min_8bit_size=1000)
    train(buf, opt, 3)
    sd = opt.state_dict(dequantize=True)
    for i, name in enumerate(buf.names):
        entry = sd["state"][i]
        assert entry["exp_avg"].dtype == np.float32 and entry["exp_avg"].shape == buf[name].shape
        np.testing.assert_array_equal(entry["exp_avg_sq"], opt.tensor_state(i).exp_avg_sq)
    sd["param_groups"][0]["state_bits"] = 32
    plain = numba_adam.Adam(numba_adam.ParamBuffer({k: buf[k].copy() for k in buf.names}))
    plain.load_state_dict(sd)
    np.testing.assert_array_equal(plain.tensor_state(0).exp_avg, opt.tensor_state(0).exp_avg)


@pytest.mark.parametrize("bits", [16, 8])
def test_float_state_loads_into_a_low_bit_optimizer_quantized(bits):
    buf = model()
    opt32 = numba_adam.Adam(buf, lr=1e-3)
    train(buf, opt32, 3)
    sd = opt32.state_dict()
    del sd["param_groups"][0]["state_bits"]           # as in a torch state_dict
    low = numba_adam.Adam(numba_adam.ParamBuffer({k: buf[k].copy() for k in buf.names}),
                          lr=1e-3, state_bits=bits, min_8bit_size=1000)
    low.load_state_dict(sd)
    assert low.param_groups[0]["state_bits"] == bits
    tolerance = 2.0 ** -8 if bits == 16 else 1 / 16
    for i in range(3):
        want, got = opt32.tensor_state(i), low.tensor_state(i)
        big = np.abs(want.exp_avg_sq) > 1e-3 * np.abs(want.exp_avg_sq).max()
        np.testing.assert_allclose(got.exp_avg_sq[big], want.exp_avg_sq[big], rtol=tolerance)


def test_changing_state_bits_converts_the_state():
    buf = model()
    opt = numba_adam.Adam(buf, lr=1e-3, min_8bit_size=1000)
    train(buf, opt, 3)
    twin_buf = numba_adam.ParamBuffer({k: buf[k].copy() for k in buf.names})
    twin = numba_adam.Adam(twin_buf, lr=1e-3)
    twin.load_state_dict(opt.state_dict())
    nbytes = opt.state_nbytes
    opt.param_groups[0]["state_bits"] = 8
    train(buf, opt, 1)
    train(twin_buf, twin, 1)
    assert opt.state_nbytes < nbytes / 3
    relative = np.abs(opt.tensor_state(0).exp_avg_sq / twin.tensor_state(0).exp_avg_sq - 1)
    assert np.quantile(relative, 0.99) < 0.1
    with pytest.raises(ValueError, match="state_bits must be 32, 16 or 8"):
        opt.param_groups[0]["state_bits"] = 4
    with pytest.raises(TypeError, match="state_bits"):
        numba_adam.Adam(buf, state_bits="8")


@pytest.mark.parametrize("damage, message", [
    (lambda e: e["exp_avg"].__setitem__(0, 121), "above the largest valid code 120"),
    (lambda e: e["exp_avg_sq"].__setitem__(5, 250), "above the largest valid code 248"),
    (lambda e: e["exp_avg_absmax"].__setitem__(0, np.nan), "finite and >= 0"),
    (lambda e: e["exp_avg_sq_absmax"].__setitem__(1, -1.0), "finite and >= 0"),
    (lambda e: e.__setitem__("exp_avg_absmax", e["exp_avg_absmax"][:-1]), "float scales"),
    (lambda e: e.__setitem__("exp_avg_sq", e["exp_avg_sq"].astype(np.uint16)), "uint8 codes"),
    (lambda e: e.__setitem__("exp_avg", e["exp_avg"][:-1]), "codes for a parameter"),
])
def test_bad_8bit_codes_and_scales_are_refused_and_change_nothing(damage, message):
    buf = model()
    opt = numba_adam.Adam(buf, lr=1e-3, state_bits=8, min_8bit_size=1000)
    train(buf, opt, 2)
    sd = opt.state_dict()
    before = opt.state_dict()
    damage(sd["state"][0])
    with pytest.raises((ValueError, TypeError), match=message):
        opt.load_state_dict(sd)
    for key, value in before["state"][0].items():
        np.testing.assert_array_equal(value, opt.state_dict()["state"][0][key])


def test_bad_bfloat16_values_are_refused():
    buf = model()
    opt = numba_adam.Adam(buf, lr=1e-3, state_bits=16)
    train(buf, opt, 2)
    sd = opt.state_dict()
    sd["state"][0]["exp_avg_sq"][3] = 0xBF80          # -1.0
    with pytest.raises(ValueError, match="non-finite or negative bfloat16"):
        opt.load_state_dict(sd)
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"][3] = 0x7FC0             # NaN
    with pytest.raises(ValueError, match="non-finite bfloat16"):
        opt.load_state_dict(sd)


RESUME = textwrap.dedent("""
    import sys, numpy as np, numba_adam
    sys.path.insert(0, {tests!r})
    from test_state_bits import model, train
    buf = model()
    opt = numba_adam.Adam(buf, lr=1e-3, state_bits={bits}, amsgrad=True, min_8bit_size=1000)
    opt.load({path!r}, params=True)
    train(buf, opt, 4, seed=2)
    np.save({out!r}, buf.data)
""")


@pytest.mark.parametrize("bits", [16, 8])
def test_checkpoint_resume_in_a_fresh_process_is_bit_exact(bits, tmp_path):
    buf = model()
    opt = numba_adam.Adam(buf, lr=1e-3, state_bits=bits, amsgrad=True, min_8bit_size=1000)
    train(buf, opt, 3)
    path = tmp_path / "run.ckpt"
    opt.save(path, params=True)
    train(buf, opt, 4, seed=2)
    script = RESUME.format(tests=str(__import__("pathlib").Path(__file__).parent), bits=bits,
                           path=str(path), out=str(tmp_path / "out.npy"))
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), buf.data)
    ckpt = numba_adam.load_checkpoint(path)
    assert ckpt.tensors[0]["state_bits"] == bits
    assert ckpt.tensors[1].get("state_bits", 32) == (16 if bits == 16 else 32)   # b: 130


def test_low_bit_checkpoint_is_a_safetensors_file(tmp_path):
    safetensors = pytest.importorskip("safetensors.numpy")
    buf = model()
    opt = numba_adam.Adam8bit(buf, lr=1e-3, min_8bit_size=1000)
    train(buf, opt, 2)
    opt.save(tmp_path / "q.ckpt")
    arrays = safetensors.load_file(str(tmp_path / "q.ckpt"))
    assert arrays["groups.0.exp_avg.q8"].dtype == np.uint8
    assert arrays["groups.0.exp_avg_absmax"].dtype == np.float32
    assert arrays["groups.0.exp_avg.q8"].size == buf["w"].size + buf["e"].size
    assert arrays["groups.0.exp_avg"].size == buf["b"].size


def test_front_ends_pass_state_bits_through():
    from numba_adam.compat import keras, mlx
    w = np.ones((80, 80), np.float32)
    k = keras.Adam(learning_rate=1e-3, state_bits=8)
    k.apply([np.ones_like(w)], [w])
    assert k.get_config()["state_bits"] == 8
    assert keras.Adam.from_config(k.get_config()).get_config()["state_bits"] == 8
    legacy = keras.legacy.Adam(lr=1e-3, state_bits=16)
    legacy.apply_gradients([(np.ones_like(w), w)])
    assert legacy.get_config()["state_bits"] == 16
    params = {"w": w.copy()}
    m = mlx.Adam(learning_rate=1e-3, state_bits=16)
    m.update(params, {"w": np.ones_like(w)})
    assert m.state["w"]["v"].dtype == np.float32
    np.testing.assert_allclose(m.state["w"]["v"], 1e-3, rtol=2.0 ** -7)


# -- accuracy on a real data set ----------------------------------------------------------
def _digits_run(bits):
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    rng = np.random.default_rng(1)
    buf = numba_adam.ParamBuffer({
        "w1": rng.normal(0, np.sqrt(2 / 64), (64, 128)), "b1": np.zeros(128),
        "w2": rng.normal(0, np.sqrt(2 / 128), (128, 10)), "b2": np.zeros(10)}, np.float32)
    opt = numba_adam.Adam(buf, lr=2e-3, state_bits=bits, min_8bit_size=256)
    losses = []
    batches = np.random.default_rng(2)
    for _ in range(300):
        idx = batches.integers(0, len(y_train), 64)
        xb, yb = x_train[idx], y_train[idx]
        h = np.maximum(xb @ buf["w1"] + buf["b1"], 0)
        logits = h @ buf["w2"] + buf["b2"]
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        losses.append(-np.log(probs[np.arange(64), yb] + 1e-12).mean())
        d2 = probs
        d2[np.arange(64), yb] -= 1
        d2 /= 64
        buf.grads["w2"][...] = h.T @ d2
        buf.grads["b2"][...] = d2.sum(axis=0)
        dh = (d2 @ buf["w2"].T) * (h > 0)
        buf.grads["w1"][...] = xb.T @ dh
        buf.grads["b1"][...] = dh.sum(axis=0)
        opt.step()
    h = np.maximum(x_test @ buf["w1"] + buf["b1"], 0)
    accuracy = float(np.mean(np.argmax(h @ buf["w2"] + buf["b2"], axis=1) == y_test))
    return accuracy, float(np.mean(losses[50:]))


def test_low_bit_state_trains_as_well_on_digits():
    runs = {bits: _digits_run(bits) for bits in (32, 16, 8)}
    accuracy32, loss32 = runs[32]
    assert accuracy32 > 0.9
    for bits in (16, 8):
        accuracy, loss = runs[bits]
        assert accuracy >= accuracy32 - 0.01, runs
        assert abs(loss - loss32) <= 0.1 * loss32, runs


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("decades, bound", [(0, 0.03), (3, 0.03), (5, 0.13)])
def test_8bit_update_error_on_gaussian_gradients(decades, bound, amsgrad):
    """10 steps of Gaussian gradients, each element's scale fixed at 10^-U(0, decades):
    the 8-bit parameters' distance from exact Adam's, over the distance exact Adam moved
    them (tools/study_8bit_accuracy.py: 2.7%, 2.7% and 11.7% on 2^20 parameters, where
    bitsandbytes' codes give 1.3%, 25% and 55%)."""
    rng = np.random.default_rng(0)
    n = 1 << 16
    p0 = rng.standard_normal(n)
    scale = 10.0 ** -rng.uniform(0, decades, n)
    grads = [rng.standard_normal(n) * scale for _ in range(10)]
    exact, _ = ref.torch_adam(p0, grads, amsgrad=amsgrad)
    buf = numba_adam.ParamBuffer({"w": p0}, np.float32)
    opt = numba_adam.Adam(buf, lr=1e-3, amsgrad=amsgrad, state_bits=8)
    for g in grads:
        buf.grad[:] = g
        opt.step()
    error = np.linalg.norm(buf["w"] - exact) / np.linalg.norm(exact - p0)
    assert error < bound
    assert error > bound / 10     # the codes do round: the measure sees them


def test_native_code_functions_equal_the_shared_definitions():
    """The CPU's 32-bit IR twins (``_bits.NATIVE``) against ``_codes``' own versions: the
    hash (and its shifted key and running form), every bfloat16 and 8-bit code, and
    encodings of patterns around every rounding boundary, bit for bit."""
    from numba import float32, njit
    from numba_adam import _bits, _cpu
    generic = dict(zip(_codes.CODECS, _codes.make_codecs(
        njit(inline="always"), _bits.float_bits, _bits.bits_float, float32)))

    def both(name, out_dtype, *args):
        ours, theirs = _run_both(getattr(_cpu, name), generic[name], out_dtype, *args)
        np.testing.assert_array_equal(ours.view(np.uint8), theirs.view(np.uint8), err_msg=name)
        return ours

    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2 ** 32, 100_000, dtype=np.int64)
    indices = rng.integers(0, 2 ** 40, 100_000, dtype=np.int64)
    hashes = both("random_bits", np.int64, keys, indices)
    weyl = keys.astype(np.uint64) + (indices.astype(np.uint64) & 0xFFFFFFFF) * 0x9E3779B1
    np.testing.assert_array_equal(hashes, ref._lowbias32(weyl).astype(np.int64))
    starts = np.array([_codes.shifted_key(int(k), int(i) - 7) for k, i in zip(keys, indices)])
    np.testing.assert_array_equal(both("random_bits", np.int64, starts,
                                       np.full(keys.size, 7, np.int64)), hashes)
    # the running Weyl sums of the CPU loops: 64-bit, of which only the low 32 bits count
    high = rng.integers(0, 2 ** 20, keys.size) * 2 ** 32
    running = starts + 7 * np.int64(_codes.HASH_STEP) + high
    np.testing.assert_array_equal(both("mix_bits", np.int64, running), hashes)

    codes16 = np.arange(1 << 16, dtype=np.uint16)
    np.testing.assert_array_equal(both("bf16_decode", np.float32, codes16).view(np.uint32),
                                  _codes.bf16_to_float(codes16).view(np.uint32))
    # every top half (all NaN and Inf patterns among them) with low halves that round
    # down, up and carry, against random and extreme noise
    tops = np.arange(1 << 16, dtype=np.uint32) << 16
    lows = np.array([0, 1, 0x7FFF, 0x8000, 0xFFFF], np.uint32)
    patterns = (tops[:, None] | lows[None, :]).ravel()
    values = patterns.view(np.float32)
    for noise in (rng.integers(0, 1 << 16, values.size, dtype=np.int64),
                  np.full(values.size, 0xFFFF, np.int64), np.zeros(values.size, np.int64)):
        np.testing.assert_array_equal(both("bf16_encode", np.int64, values, noise),
                                      _codes.float_to_bf16(values, noise))

    codes8 = np.arange(256, dtype=np.uint8)
    both("m8_decode", np.float32, codes8)
    both("v8_decode", np.float32, codes8)
    # all exponents and signs, with mantissas at and around the 8-bit codes' rounding ties
    tops = np.arange(1 << 12, dtype=np.uint32) << 20
    lows = np.array([0, 1, 0x7FFFF, 0x80000, 0x80001, 0xFFFFF], np.uint32)
    values = np.concatenate([(tops[:, None] | lows[None, :]).ravel(), patterns,
                             rng.integers(0, 1 << 32, 200_000, dtype=np.uint32)]).view(np.float32)
    for name in ("m8_encode", "v8_encode", "magnitude_bits"):
        both(name, np.int64, values)


WIDE_VECTORS_SCRIPT = """
import numpy as np
from numba import float32, njit, types
from numba_adam import _bits

def loop(x, y):
    for i in range(x.size):
        y[i] = np.sqrt(x[i]) * float32(3)

def wide_loop(x, y):
    _bits.prefer_wide_vectors()
    for i in range(x.size):
        y[i] = np.sqrt(x[i]) * float32(3)

for f in (loop, wide_loop):
    kernel = njit(f)
    kernel.compile((types.float32[::1], types.float32[::1]))   # compiled, never run
    print(f.__name__, "zmm" in kernel.inspect_asm(kernel.signatures[0]))
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 code only")
def test_prefer_wide_vectors_widens_only_its_own_function(tmp_path):
    """LLVM's Intel AVX-512 server tuning vectorises 256 bits wide unless a function asks
    for more: ``prefer_wide_vectors`` makes the function it is in (and only that one) use
    512-bit vectors.  Compiled for skylake-avx512, never run, so any x86 machine checks it."""
    env = dict(os.environ, NUMBA_CPU_NAME="skylake-avx512", NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_CPU_FEATURES", None)
    done = subprocess.run([sys.executable, "-c", WIDE_VECTORS_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.split() == ["loop", "False", "wide_loop", "True"]


def _run_both(native, shared, out_dtype, *args):
    """Two scalar code functions over the elements of ``args``, compiled: their results."""
    from numba import njit

    if len(args) == 1:
        @njit
        def run(x, ours, theirs):
            for i in range(x.size):
                ours[i] = native(x[i])
                theirs[i] = shared(x[i])
    else:
        @njit
        def run(x, y, ours, theirs):
            for i in range(x.size):
                ours[i] = native(x[i], y[i])
                theirs[i] = shared(x[i], y[i])

    ours, theirs = np.zeros(args[0].size, out_dtype), np.zeros(args[0].size, out_dtype)
    run(*args, ours, theirs)
    return ours, theirs


def test_legacy_keras_weights_round_trip_with_8_bit_state():
    from numba_adam.compat.keras import legacy
    w = np.linspace(-1, 1, 6000, dtype=np.float32)
    opt = legacy.Adam(lr=1e-3, state_bits=8)
    opt.apply_gradients([(np.sin(w), w)])
    weights = opt.get_weights()
    assert weights[1].dtype == np.float32 and weights[1].shape == w.shape
    opt.set_weights(weights)                 # float state in: quantized again, same codes
    np.testing.assert_array_equal(opt.get_weights()[2], weights[2])


def test_groups_with_different_formats_step_and_resume_together(tmp_path):
    def make():
        buf = model()
        opt = numba_adam.Adam([{"params": [buf["w"]], "state_bits": 8},
                               {"params": [buf["b"]], "state_bits": 16},
                               {"params": [buf["e"]], "amsgrad": True, "state_bits": 8}],
                              lr=1e-3, min_8bit_size=1000)
        return buf, opt
    buf, opt = make()
    assert [opt.tensor_state_bits(i) for i in range(3)] == [8, 16, 8]
    train(buf, opt, 3)
    opt.save(tmp_path / "mixed.ckpt", params=True)
    train(buf, opt, 3, seed=4)
    again_buf, again = make()
    again.load(tmp_path / "mixed.ckpt")
    train(again_buf, again, 3, seed=4)
    np.testing.assert_array_equal(again_buf.data, buf.data)
    for i in range(3):
        for key, value in opt.state_dict()["state"][i].items():
            np.testing.assert_array_equal(value, again.state_dict()["state"][i][key])
    reference_buf = model()     # each group tracks a 32-bit run of the same groups
    reference = numba_adam.Adam([{"params": [reference_buf["w"]]},
                                 {"params": [reference_buf["b"]]},
                                 {"params": [reference_buf["e"]], "amsgrad": True}], lr=1e-3)
    train(reference_buf, reference, 3)
    train(reference_buf, reference, 3, seed=4)
    assert np.abs(reference_buf.data - buf.data).max() < 2e-3


def test_8bit_steps_stay_bounded_where_v_underflows():
    """The eps trap: elements whose v is far below their block's maximum encode v as 0. A
    stored m would then step by m / eps; the zero-m rule keeps every step near lr."""
    rng = np.random.default_rng(8)
    n = 8192
    scale = (10.0 ** -rng.uniform(0, 7, n)).astype(np.float32)   # 7 decades per block
    scale[::256] = 1.0
    w = np.zeros(n, np.float32)
    opt = numba_adam.Adam8bit([w], lr=1e-3)
    for _ in range(30):
        opt.step([(rng.standard_normal(n) * scale).astype(np.float32)])
    state = opt.tensor_state(0)
    underflowed = state.exp_avg_sq == 0
    assert 0.1 < underflowed.mean() < 0.9
    assert np.all(state.exp_avg[underflowed] == 0) and np.any(state.exp_avg[~underflowed])
    worst = 0.0
    for _ in range(10):      # no gradient: Adam's steps decay, and stay below ~lr
        before = w.copy()
        opt.step([np.zeros(n, np.float32)])
        worst = max(worst, float(np.abs(w - before).max()))
    assert worst < 10 * 1e-3, worst
