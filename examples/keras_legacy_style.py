"""Legacy Keras (Keras 2) style: lr, decay, get_weights/set_weights.

    python examples/keras_legacy_style.py [--steps 200]
"""

import argparse

import numpy as np

from numba_adam.compat.keras import legacy


def main(steps: int = 200) -> float:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((512, 4))
    y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
    w, b = np.zeros((4, 1)), np.zeros(1)
    opt = legacy.Adam(lr=0.1, decay=1e-2)                  # lr / (1 + decay * iterations)
    loss = float("nan")
    for step in range(steps):
        out = x @ w + b
        loss = float(np.mean((out - y) ** 2))
        d = 2 * (out - y) / len(x)
        opt.apply_gradients([(x.T @ d, w), (d.sum(0), b)])
    weights = opt.get_weights()                            # [iterations] + ms + vs + vhats
    print(f"loss {loss:.6f}; {len(weights)} optimizer weights, iterations={int(weights[0])}")
    # a second optimizer picks up exactly where the first stopped
    twin_w, twin_b = w.copy(), b.copy()
    twin = legacy.Adam(lr=0.1, decay=1e-2)
    twin.apply_gradients([(np.zeros_like(w), twin_w), (np.zeros_like(b), twin_b)])  # builds it
    twin_w[...], twin_b[...] = w, b
    twin.set_weights(weights)
    d = 2 * (x @ w + b - y) / len(x)
    opt.apply_gradients([(x.T @ d, w), (d.sum(0), b)])
    twin.apply_gradients([(x.T @ d, twin_w), (d.sum(0), twin_b)])
    print(f"twin optimizer matches after set_weights: {np.array_equal(w, twin_w)}")
    return loss


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    main(parser.parse_args().steps)
