"""The CUDA engine against the NumPy reference and the CPU engine (same tables)."""

import numpy as np
import pytest
from numba import cuda

import numba_adam
from numba_adam import IndexedSlices
from numba_adam.compat import keras
from cases import OPTION_SETS, tolerance
from reference import keras_adam, torch_adam

SHAPES = [(40, 30), (257,), (), (3, 1, 5)]
STEPS = 3


def problem(dtype, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(STEPS)]
    return init, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["default", "amsgrad", "everything", "everything-decoupled"])
def test_cuda_paramBuffer_matches_reference(name, dtype):
    options = OPTION_SETS[name]
    init, grads = problem(dtype)
    buf = numba_adam.ParamBuffer({str(k): x for k, x in enumerate(init)}, dtype, device="cuda")
    opt = numba_adam.Adam(buf, lr=1e-2, **options)
    for step_grads in grads:
        for k, g in enumerate(step_grads):
            buf.grads[str(k)].copy_to_device(np.ascontiguousarray(g))
        opt.step()
    state = opt.state_dict()["state"]
    for k in range(len(SHAPES)):
        expected, ref = torch_adam(init[k], [g[k] for g in grads], lr=1e-2, **options)
        np.testing.assert_allclose(buf[str(k)].copy_to_host(), expected, **tolerance(dtype))
        np.testing.assert_allclose(state[k]["exp_avg_sq"], ref["v"], **tolerance(dtype))


def test_cuda_plain_device_arrays_updated_in_place():
    init, grads = problem(np.float32, seed=1)
    params = [cuda.to_device(x) for x in init]
    opt = numba_adam.Adam(params, lr=1e-2, amsgrad=True, weight_decay=0.1)
    for step_grads in grads:
        opt.step([cuda.to_device(g) for g in step_grads])
    for k, p in enumerate(params):
        expected, _ = torch_adam(init[k], [g[k] for g in grads], lr=1e-2, amsgrad=True,
                                 weight_decay=0.1)
        np.testing.assert_allclose(p.copy_to_host(), expected, **tolerance(np.float32))


@pytest.mark.parametrize("bits", [32, 16])
def test_cuda_none_gradient_leaves_that_tensor_alone(bits):
    init, grads = problem(np.float32, seed=2)
    buf = numba_adam.ParamBuffer({str(k): x for k, x in enumerate(init)}, np.float32,
                                 device="cuda")
    opt = numba_adam.Adam(buf, lr=1e-2, state_bits=bits)
    held = buf["1"].copy_to_host()
    for step_grads in grads:
        opt.step([cuda.to_device(g) if k != 1 else None for k, g in enumerate(step_grads)])
    np.testing.assert_array_equal(buf["1"].copy_to_host(), held)
    assert not np.any(opt.tensor_state(1).exp_avg)
    if bits == 32:
        expected, _ = torch_adam(init[0], [g[0] for g in grads], lr=1e-2)
        np.testing.assert_allclose(buf["0"].copy_to_host(), expected, **tolerance(np.float32))


def test_cuda_keras_options_and_clipping_match_reference():
    init, grads = problem(np.float64, seed=2, shapes=[(20, 10), (33,)])
    for options in (dict(clipnorm=0.5), dict(global_clipnorm=0.7), dict(clipvalue=0.3),
                    dict(weight_decay=0.1, amsgrad=True)):
        params = [cuda.to_device(x) for x in init]
        opt = keras.Adam(learning_rate=0.02, **options)
        for g in grads:
            opt.apply([cuda.to_device(x) for x in g], params)
        expected, _, _, _ = keras_adam(init, grads, lr=0.02, **options)
        for p, e in zip(params, expected):
            np.testing.assert_allclose(p.copy_to_host(), e, rtol=1e-11, atol=1e-12,
                                       err_msg=str(options))


@pytest.mark.parametrize("lazy", [False, True])
def test_cuda_sparse_rows_match_the_cpu_engine(lazy):
    rng = np.random.default_rng(3)
    table = rng.standard_normal((50, 4))
    slices = [IndexedSlices(rng.standard_normal((12, 4)), rng.integers(0, 50, 12), (50, 4))
              for _ in range(STEPS)]
    host = table.copy()
    dev = cuda.to_device(table)
    cpu = numba_adam.Adam([{"params": [host], "lazy_sparse": lazy}], lr=0.05, amsgrad=True)
    gpu = numba_adam.Adam([{"params": [dev], "lazy_sparse": lazy}], lr=0.05, amsgrad=True)
    for s in slices:
        cpu.step([s])
        gpu.step([s])
    np.testing.assert_allclose(dev.copy_to_host(), host, rtol=1e-12, atol=1e-13)


def test_gpu_state_and_checkpoints_continue_on_the_cpu(tmp_path):
    init, grads = problem(np.float32, seed=4)
    buf = numba_adam.ParamBuffer({str(k): x for k, x in enumerate(init)}, device="cuda")
    gpu = numba_adam.Adam(buf, lr=1e-2, amsgrad=True)
    gpu.step([cuda.to_device(g) for g in grads[0]])
    gpu.save(tmp_path / "gpu.ckpt", params=True)
    sd = gpu.state_dict()
    host = numba_adam.ParamBuffer({str(k): x for k, x in enumerate(init)})
    cpu = numba_adam.Adam(host, lr=1e-2, amsgrad=True)
    cpu.load(tmp_path / "gpu.ckpt")
    np.testing.assert_array_equal(host.data, buf.data.copy_to_host())
    for step_grads in grads[1:]:
        gpu.step([cuda.to_device(g) for g in step_grads])
        cpu.step(step_grads)
    np.testing.assert_allclose(host.data, buf.data.copy_to_host(), **tolerance(np.float32))
    # and back: a CPU state_dict loads onto the GPU
    again = numba_adam.Adam(numba_adam.ParamBuffer(
        {str(k): x for k, x in enumerate(init)}, device="cuda"), lr=1e-2, amsgrad=True)
    again.load_state_dict(sd)
    assert again.state_dict()["state"][0]["step"] == 1


def test_cuda_bad_gradients_change_nothing():
    p = cuda.to_device(np.zeros(4, np.float32))
    opt = numba_adam.Adam([p], lr=0.1)
    with pytest.raises(TypeError, match="must be a CUDA array"):
        opt.step([np.ones(4, np.float32)])
    with pytest.raises(ValueError, match=r"has shape \(5,\)"):
        opt.step([cuda.to_device(np.ones(5, np.float32))])
    with pytest.raises(TypeError, match="use one optimizer per device"):
        numba_adam.Adam([p, np.zeros(3, np.float32)])
    assert not p.copy_to_host().any()


def test_zero_grad_and_views_on_the_device():
    buf = numba_adam.ParamBuffer({"w": np.ones((2, 3)), "s": 2.0}, device="cuda")
    assert buf["w"].shape == (2, 3) and buf["s"].shape == ()
    buf.grad[:] = 3
    numba_adam.Adam(buf).zero_grad()
    assert not buf.grad.copy_to_host().any()


@pytest.mark.parametrize("bits, amsgrad, dtype", [
    (16, False, np.float32), (16, True, np.float32), (8, False, np.float32),
    (8, True, np.float32), (16, False, np.float64), (8, True, np.float64)])
def test_cuda_low_bit_state_matches_the_cpu_engine(bits, amsgrad, dtype, tmp_path):
    """Same codes on both engines (16-bit: the same random bits), sparse steps included, and
    a GPU checkpoint continues on the CPU."""
    rng = np.random.default_rng(6)
    shapes = {"w": (6, 70), "b": (9,)}          # w: two 8-bit blocks, b: 32-bit (small)
    init = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    host = numba_adam.ParamBuffer(init, dtype)
    dev = numba_adam.ParamBuffer(init, dtype, device="cuda")
    options = dict(lr=1e-2, state_bits=bits, amsgrad=amsgrad, min_8bit_size=100)
    cpu, gpu = numba_adam.Adam(host, **options), numba_adam.Adam(dev, **options)
    for _ in range(2):
        g = rng.standard_normal(host.size).astype(dtype)
        host.grad[:] = g
        dev.grad.copy_to_device(g)
        cpu.step()
        gpu.step()
    for lazy in (False, True):
        cpu.param_groups[0]["lazy_sparse"] = gpu.param_groups[0]["lazy_sparse"] = lazy
        rows = IndexedSlices(rng.standard_normal((2, 70)).astype(dtype), [4, 1], (6, 70))
        bias = np.zeros(9, dtype)
        cpu.step([rows, bias])
        gpu.step([rows, cuda.to_device(bias)])
    np.testing.assert_allclose(dev.data.copy_to_host(), host.data, rtol=1e-5, atol=1e-6)
    ours, theirs = cpu.state_dict()["state"], gpu.state_dict()["state"]
    for key, value in ours[0].items():
        if key.endswith("_absmax"):    # scales: float arithmetic, rounded alike or an ulp off
            np.testing.assert_allclose(theirs[0][key], value, rtol=1e-5)
        else:
            same = np.asarray(value) == np.asarray(theirs[0][key])
            assert same.mean() > 0.98, key
    gpu.save(tmp_path / "gpu.ckpt", params=True)
    back = numba_adam.Adam([{"params": numba_adam.ParamBuffer(init, dtype),
                             "lazy_sparse": True}], **options)
    back.load(tmp_path / "gpu.ckpt")
    for key, value in back.state_dict()["state"][0].items():
        np.testing.assert_array_equal(value, theirs[0][key])
