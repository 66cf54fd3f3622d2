"""MLX style: update(tree, grads) over a nested dict of arrays, with and without bias correction.

    python examples/mlx_style.py [--steps 300]
"""

import argparse

import numpy as np

from numba_adam.compat import mlx


def loss_and_grads(params, x, y):
    h = np.maximum(x @ params["l1"]["w"] + params["l1"]["b"], 0)
    out = h @ params["l2"]["w"]
    d = 2 * (out - y) / len(x)
    dh = (d @ params["l2"]["w"].T) * (h > 0)
    grads = {"l1": {"w": x.T @ dh, "b": dh.sum(0)}, "l2": {"w": h.T @ d}}
    return float(np.mean((out - y) ** 2)), grads


def main(steps: int = 300) -> dict:
    rng = np.random.default_rng(4)
    x = rng.uniform(-2, 2, (256, 1)).astype(np.float32)
    y = np.sin(x)
    results = {}
    for bias_correction in (False, True):
        params = {"l1": {"w": rng.normal(0, 1, (1, 32)).astype(np.float32),
                         "b": np.zeros(32, np.float32)},
                  "l2": {"w": rng.normal(0, 0.2, (32, 1)).astype(np.float32)}}
        opt = mlx.Adam(learning_rate=1e-2, bias_correction=bias_correction)
        loss = float("nan")
        for _ in range(steps):
            loss, grads = loss_and_grads(params, x, y)
            opt.update(params, grads)                    # arrays updated in place
        results[bias_correction] = loss
        print(f"bias_correction={bias_correction}: loss {loss:.5f} after {opt.step} steps")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    main(parser.parse_args().steps)
