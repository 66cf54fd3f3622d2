"""torch.optim-style use: param groups, an lr edit, AMSGrad, state_dict round trip.

    python examples/torch_param_groups.py [--steps 300]
"""

import argparse

import numpy as np

import numba_adam


def main(steps: int = 300) -> float:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((256, 8)).astype(np.float32)
    true_w = rng.standard_normal((8, 1)).astype(np.float32)
    y = np.tanh(x @ true_w)
    # plain NumPy arrays, updated in place; the output layer learns faster
    hidden = {"w1": rng.standard_normal((8, 16)).astype(np.float32) * 0.3,
              "b1": np.zeros(16, np.float32)}
    head = {"w2": rng.standard_normal((16, 1)).astype(np.float32) * 0.3,
            "b2": np.zeros(1, np.float32)}
    opt = numba_adam.AdamW([{"params": hidden}, {"params": head, "lr": 3e-2, "amsgrad": True}],
                           lr=1e-2, weight_decay=1e-4)
    loss = float("nan")
    for step in range(steps):
        h = np.tanh(x @ hidden["w1"] + hidden["b1"])
        out = h @ head["w2"] + head["b2"]
        loss = float(np.mean((out - y) ** 2))
        d_out = 2 * (out - y) / len(x)
        d_h = (d_out @ head["w2"].T) * (1 - h ** 2)
        grads = {"w1": x.T @ d_h, "b1": d_h.sum(0), "w2": h.T @ d_out, "b2": d_out.sum(0)}
        opt.step(grads)                                   # a dict name -> gradient
        if step == steps // 2:
            opt.param_groups[1]["lr"] = 1e-2              # takes effect at the next step
            saved = opt.state_dict()                      # torch's layout
            opt = numba_adam.AdamW([{"params": hidden}, {"params": head}])
            opt.load_state_dict(saved)                    # same run, continued
    print(f"final MSE {loss:.5f}; groups: "
          + ", ".join(f"lr={g['lr']} amsgrad={g['amsgrad']}" for g in opt.param_groups))
    return loss


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    main(parser.parse_args().steps)
