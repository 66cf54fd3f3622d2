import numpy as np
import pytest

import numba_adam


def test_views_share_the_flat_arrays_and_keep_shapes():
    w = np.arange(6.0).reshape(2, 3)
    buf = numba_adam.ParamBuffer({"w": w, "s": 3.5, "col": w[:, 1]})
    assert buf.names == ("w", "s", "col")
    assert buf.shapes == {"w": (2, 3), "s": (), "col": (2,)}
    assert buf.size == 9 and buf.data.dtype == np.float32
    np.testing.assert_array_equal(buf["w"], w)
    np.testing.assert_array_equal(buf["col"], [1.0, 4.0])
    assert float(buf["s"]) == 3.5
    buf["w"][0, 0] = -1
    assert buf.data[0] == -1
    buf.grads["col"][...] = 2
    np.testing.assert_array_equal(buf.grad, [0] * 7 + [2, 2])
    assert buf["w"] is buf["w"]
    assert buf.offsets == {"w": 0, "s": 6, "col": 7}


def test_values_are_copied_in():
    w = np.ones(3)
    buf = numba_adam.ParamBuffer({"w": w}, dtype=np.float64)
    buf["w"][:] = 5
    assert w[0] == 1.0 and buf.dtype == np.float64


def test_zero_grad():
    buf = numba_adam.ParamBuffer([("a", np.ones(2)), ("b", np.ones((2, 2)))])
    buf.grad[:] = 3
    buf.zero_grad()
    assert not buf.grad.any()


@pytest.mark.parametrize("args, exc, pattern", [
    (({},), ValueError, "at least one parameter"),
    (({"a": np.ones(2)}, np.int32), TypeError, "float32 or float64, got int32"),
    (({"a": np.ones(2, complex)},), TypeError, "real numeric"),
    (({"a": np.array(["x"])},), TypeError, "real numeric"),
    (([(1, np.ones(2))],), TypeError, "names must be strings"),
    (([("a", np.ones(2)), ("a", np.ones(2))],), ValueError, "appears twice"),
])
def test_bad_input(args, exc, pattern):
    with pytest.raises(exc, match=pattern):
        numba_adam.ParamBuffer(*args)


def test_unknown_name_lists_the_names():
    buf = numba_adam.ParamBuffer({"a": np.ones(2)})
    with pytest.raises(KeyError, match=r"names are \['a'\]"):
        buf["b"]
