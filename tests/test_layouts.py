"""Any writeable float array is a parameter: strided views, Fortran order, transposes."""

import numpy as np
import pytest

import numba_adam
from numba_adam import IndexedSlices
from cases import OPTION_SETS, dtypes, tolerance
from reference import torch_adam

STEPS = 3


def strided_views(base):
    """Views of ``base`` (shape (6, 8)) that are not contiguous, and the elements they cover."""
    return {
        "every_other": base.reshape(-1)[::2],
        "columns": base[:, 1::3],
        "transposed_rows": base[::2].T,
        "reversed": base[::-1, ::-2],
    }


@dtypes
@pytest.mark.parametrize("name", ["default", "everything", "everything-decoupled"])
def test_strided_parameters_are_updated_in_place_like_the_reference(name, dtype):
    options = OPTION_SETS[name]
    rng = np.random.default_rng(0)
    bases = {k: rng.standard_normal((6, 8)).astype(dtype) for k in strided_views(np.zeros((6, 8)))}
    params = {k: strided_views(b)[k] for k, b in bases.items()}
    untouched = {k: b.copy() for k, b in bases.items()}
    init = {k: p.copy() for k, p in params.items()}
    grads = [{k: rng.standard_normal(p.shape).astype(dtype) for k, p in params.items()}
             for _ in range(STEPS)]
    opt = numba_adam.Adam(params, lr=1e-2, **options)
    for g in grads:
        opt.step(g)
    for k, p in params.items():
        expected, _ = torch_adam(init[k], [g[k] for g in grads], lr=1e-2, **options)
        np.testing.assert_allclose(p, expected, **tolerance(dtype))
        mask = np.ones(bases[k].shape, bool)
        strided_views(mask)[k][...] = False   # elements that are not the parameter's
        np.testing.assert_array_equal(bases[k][mask], untouched[k][mask])


def test_interleaved_strided_parameters_do_not_overlap():
    base = np.zeros(10)
    even, odd = base[::2], base[1::2]
    opt = numba_adam.Adam([even, odd], lr=0.1)
    opt.step([np.ones(5), -np.ones(5)])
    np.testing.assert_allclose(base, np.tile([-0.1, 0.1], 5), rtol=1e-6)


@pytest.mark.parametrize("lazy", [False, True])
def test_sparse_rows_of_a_strided_table(lazy):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((10, 8))
    table = base[:, ::2]
    dense_copy = np.ascontiguousarray(table)
    between = base[:, 1::2].copy()
    rows, values = np.array([1, 7, 1]), rng.standard_normal((3, 4))
    a = numba_adam.Adam([{"params": [table], "lazy_sparse": lazy}], lr=0.1)
    b = numba_adam.Adam([{"params": [dense_copy], "lazy_sparse": lazy}], lr=0.1)
    for opt in (a, b):
        opt.step([IndexedSlices(values, rows, (10, 4))])
    np.testing.assert_array_equal(table, dense_copy)
    np.testing.assert_array_equal(base[:, 1::2], between)


def test_fortran_and_strided_state_round_trips_through_a_checkpoint(tmp_path):
    rng = np.random.default_rng(2)

    f = np.asfortranarray(rng.standard_normal((5, 6)).astype(np.float32))
    strided = np.zeros((5, 6), np.float32)[:, ::2]
    strided[...] = rng.standard_normal(strided.shape)
    opt = numba_adam.Adam([f, strided], lr=0.01)
    grads = [[rng.standard_normal(f.shape).astype(np.float32),
              rng.standard_normal(strided.shape).astype(np.float32)] for _ in range(4)]
    for g in grads[:2]:
        opt.step(g)
    opt.save(tmp_path / "x.ckpt", params=True)
    f2, strided2 = np.zeros_like(f), np.zeros((5, 6), np.float32)[:, ::2]
    opt2 = numba_adam.Adam([f2, strided2], lr=0.01)
    opt2.load(tmp_path / "x.ckpt")
    for g in grads[2:]:
        opt.step(g)
        opt2.step(g)
    np.testing.assert_array_equal(f, f2)
    np.testing.assert_array_equal(strided, strided2)
