"""Keras-style training: apply_gradients, a schedule, clipnorm, a sparse embedding update.

    python examples/keras_style.py [--steps 300]
"""

import argparse

import numpy as np

from numba_adam import IndexedSlices, schedules
from numba_adam.compat import keras


def main(steps: int = 300) -> float:
    rng = np.random.default_rng(2)
    vocab, dim, n = 1000, 16, 20_000
    tokens = rng.integers(0, vocab, n)
    target = (tokens % 2).astype(np.float32)              # learn each token's parity
    embedding = rng.normal(0, 0.1, (vocab, dim)).astype(np.float32)
    dense = rng.normal(0, 0.1, (dim, 1)).astype(np.float32)
    lr = schedules.cosine_decay(0.05, decay_steps=steps, alpha=0.1)
    opt = keras.Adam(learning_rate=lr, clipnorm=1.0)      # Keras' epsilon-hat Adam
    loss = float("nan")
    for step in range(steps):
        batch = rng.integers(0, n, 128)
        ids = tokens[batch]
        e = embedding[ids]                                # embedding lookup
        logits = (e @ dense)[:, 0]
        prob = 1 / (1 + np.exp(-logits))
        loss = float(-np.mean(target[batch] * np.log(prob + 1e-7)
                              + (1 - target[batch]) * np.log(1 - prob + 1e-7)))
        d_logits = ((prob - target[batch]) / len(batch))[:, None]
        grad_dense = e.T @ d_logits
        grad_embedding = IndexedSlices(d_logits @ dense.T, ids, embedding.shape)  # rows only
        opt.apply_gradients([(grad_embedding, embedding), (grad_dense, dense)])
        if step % (steps // 5) == 0:
            print(f"step {opt.iterations}: loss {loss:.4f}, lr {opt.learning_rate:.4f}")
    print(f"final loss {loss:.4f} after {opt.iterations} iterations")
    return loss


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    main(parser.parse_args().steps)
