"""Sparse row gradients and engine-level gradient clipping."""

import numpy as np
import pytest

import numba_adam
from numba_adam import IndexedSlices
from numba_adam.compat import keras
from cases import with_each_thread_count
from reference import torch_adam


def sparse_problem(rng, dtype, rows=40, cols=6, nnz=15, steps=4):
    table = rng.standard_normal((rows, cols)).astype(dtype)
    slices = []
    for _ in range(steps):
        idx = rng.integers(0, rows, nnz)          # duplicates likely
        slices.append(IndexedSlices(rng.standard_normal((nnz, cols)).astype(dtype), idx,
                                    (rows, cols)))
    return table, slices


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [dict(), dict(amsgrad=True, weight_decay=0.1),
                                     dict(decoupled_weight_decay=True, weight_decay=0.1,
                                          maximize=True)])
def test_sparse_dense_equivalent_equals_dense_update_with_zero_filled_gradient(dtype, options):
    rng = np.random.default_rng(0)
    table, slices = sparse_problem(rng, dtype)
    other = rng.standard_normal(5).astype(dtype)
    a, b = [table.copy(), other.copy()], [table.copy(), other.copy()]
    oa = numba_adam.Adam(a, lr=0.01, **options)
    ob = numba_adam.Adam(b, lr=0.01, **options)
    for s in slices:
        g = rng.standard_normal(5).astype(dtype)
        oa.step([s, g])
        ob.step([s.to_dense(), g])
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-14)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, **tol)
    np.testing.assert_allclose(oa.state_dict()["state"][0]["exp_avg"],
                               ob.state_dict()["state"][0]["exp_avg"], **tol)


def test_duplicate_indices_are_summed():
    s = IndexedSlices(np.array([[1.0], [2.0], [4.0]]), np.array([3, 1, 3]), (4, 1))
    np.testing.assert_array_equal(s.to_dense()[:, 0], [0, 2, 0, 5])
    rows, values = s.merged()
    assert rows.tolist() == [1, 3] and values[:, 0].tolist() == [2.0, 5.0]


def test_lazy_mode_touches_only_the_given_rows():
    rng = np.random.default_rng(1)
    table, slices = sparse_problem(rng, np.float64, steps=3)
    p = table.copy()
    opt = numba_adam.Adam([{"params": [p], "lazy_sparse": True}], lr=0.05)
    touched = set()
    for s in slices:
        opt.step([s])
        touched |= set(s.indices.tolist())
    untouched = sorted(set(range(len(p))) - touched)
    np.testing.assert_array_equal(p[untouched], table[untouched])
    assert not np.array_equal(p[sorted(touched)], table[sorted(touched)])
    # a row touched once at step 1 matches a one-step Adam with bias correction of step 1
    s = slices[0]
    rows, values = s.merged()
    only_first = [r for r in rows if r not in set(slices[1].indices) | set(slices[2].indices)]
    for r in only_first:
        k = rows.tolist().index(r)
        expected, _ = torch_adam(table[r], [values[k]], lr=0.05)
        np.testing.assert_allclose(p[r], expected, rtol=1e-12)


def test_keras_sparse_embedding_update_is_dense_equivalent():
    rng = np.random.default_rng(2)
    table, slices = sparse_problem(rng, np.float32)
    a, b = table.copy(), table.copy()
    oa, ob = keras.Adam(learning_rate=0.01), keras.Adam(learning_rate=0.01)
    for s in slices:
        oa.apply_gradients([(s, a)])
        ob.apply_gradients([(s.to_dense(), b)])
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_sparse_rows_of_a_paramBuffer_and_clipping():
    rng = np.random.default_rng(3)
    table, slices = sparse_problem(rng, np.float32)
    buf = numba_adam.ParamBuffer({"emb": table, "w": np.ones(3)})
    dense = [table.copy(), np.ones(3, np.float32)]
    oa = numba_adam.Adam(buf, lr=0.01)
    ob = numba_adam.Adam(dense, lr=0.01)
    oa.global_clipnorm = ob.global_clipnorm = 1.0
    for s in slices:
        g = np.full(3, 0.5, np.float32)
        oa.step({"emb": s, "w": g})
        ob.step([s.to_dense(), g])
    np.testing.assert_allclose(buf["emb"], dense[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(buf["w"], dense[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad, exc, pattern", [
    (lambda: IndexedSlices(np.ones((2, 3)), np.array([0, 9]), (5, 3)), ValueError,
     r"index 9 is out of range for 5 rows"),
    (lambda: IndexedSlices(np.ones((2, 3)), np.array([0, -1]), (5, 3)), ValueError, r"index -1"),
    (lambda: IndexedSlices(np.ones((2, 4)), np.array([0, 1]), (5, 3)), ValueError,
     r"values have shape \(2, 4\), expected \(2, 3\)"),
    (lambda: IndexedSlices(np.ones((2, 3)), np.array([[0, 1]]), (5, 3)), TypeError, r"1-D integer"),
    (lambda: IndexedSlices(np.ones((2, 3)), np.array([0.0, 1.0]), (5, 3)), TypeError, r"integer"),
])
def test_bad_indexed_slices(bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        bad()


def test_mismatched_sparse_gradient_changes_nothing():
    p = np.ones((5, 3))
    opt = numba_adam.Adam([p], lr=0.1)
    opt.step([np.ones((5, 3))])
    before, sd = p.copy(), opt.state_dict()
    with pytest.raises(ValueError, match=r"dense_shape \(6, 3\), expected \(5, 3\)"):
        opt.step([IndexedSlices(np.ones((1, 3)), np.array([0]), (6, 3))])
    with pytest.raises(TypeError, match=r"dtype float32, expected float64"):
        opt.step([IndexedSlices(np.ones((1, 3), np.float32), np.array([0]), (5, 3))])
    np.testing.assert_array_equal(p, before)
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["exp_avg"], sd["state"][0]["exp_avg"])


def test_per_group_clipnorm_and_clipvalue_in_the_torch_facade():
    rng = np.random.default_rng(4)
    init = [rng.standard_normal(8) * 5, rng.standard_normal(4) * 5]
    grads = [[rng.standard_normal(8) * 5, rng.standard_normal(4) * 5] for _ in range(3)]
    a, b = init[0].copy(), init[1].copy()
    opt = numba_adam.Adam([{"params": [a], "clipnorm": 1.0}, {"params": [b], "clipvalue": 0.5}],
                          lr=0.01)
    for g in grads:
        opt.step(g)
    ea, _ = torch_adam(init[0], [g[0] / max(1.0, np.linalg.norm(g[0])) for g in grads], lr=0.01)
    eb, _ = torch_adam(init[1], [np.clip(g[1], -0.5, 0.5) for g in grads], lr=0.01)
    np.testing.assert_allclose(a, ea, rtol=1e-12)
    np.testing.assert_allclose(b, eb, rtol=1e-12)
    with pytest.raises(ValueError, match=r"global_clipnorm must be > 0"):
        opt.global_clipnorm = 0.0


def test_global_norm_clipping_is_identical_for_one_and_two_threads():
    rng = np.random.default_rng(5)
    init = {"w": rng.standard_normal((400, 300)).astype(np.float32),
            "b": rng.standard_normal(90_001).astype(np.float32)}
    grads = [rng.standard_normal(210_001).astype(np.float32) * 10 for _ in range(3)]

    def run():
        buf = numba_adam.ParamBuffer(init)
        opt = numba_adam.Adam([{"params": [buf["w"]], "clipnorm": 3.0},
                               {"params": [buf["b"]]}], lr=1e-2)
        opt.global_clipnorm = 50.0
        for g in grads:
            buf.grad[:] = g
            opt.step()
        return buf.data.copy(), opt.grad_scales()

    results = with_each_thread_count(run)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert (results[0][1] < 1).all()
