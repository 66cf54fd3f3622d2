"""The PyTorch Adam tutorial loop (fit y = 2x + 1 with MSE), in NumPy with numba_adam.Adam.

    python examples/pytorch_tutorial.py [--steps 500]
"""

import argparse

import numpy as np

import numba_adam


def main(steps: int = 500) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    # nn.Linear(1, 1): a weight and a bias, in one flat buffer
    model = numba_adam.ParamBuffer({"weight": rng.normal(size=(1, 1)), "bias": np.zeros(1)})
    optimizer = numba_adam.Adam(model, lr=0.01)
    for epoch in range(steps):
        x = rng.standard_normal((5, 1)).astype(np.float32)   # 5 samples, 1 feature
        y = 2 * x + 1                                          # the relationship to learn
        output = x @ model["weight"].T + model["bias"]         # forward pass
        loss = float(np.mean((output - y) ** 2))               # MSE
        optimizer.zero_grad()
        d_out = 2 * (output - y) / len(x)                      # backward pass
        model.grads["weight"][...] = d_out.T @ x
        model.grads["bias"][...] = d_out.sum(axis=0)
        optimizer.step()
        if epoch % (steps // 5) == 0:
            print(f"Epoch [{epoch}/{steps}], Loss: {loss:.4f}")
    w, b = float(model["weight"][0, 0]), float(model["bias"][0])
    print(f"learned y = {w:.3f}x + {b:.3f}")
    return w, b


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500)
    main(parser.parse_args().steps)
