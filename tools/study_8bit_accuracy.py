"""How accurate is 8-bit Adam state, and which code and rounding buy the most accuracy?

Two measures, each over numba_adam's own 8-bit state, bitsandbytes' ``Adam8bit`` and
torchao's ``AdamW8bit`` (where installed, on CPU tensors), and NumPy simulations of other
codes:

- **update error**: Gaussian gradients (N(0, 1), independent per element and step) on
  2^20 parameters for 10 steps, the same gradients for every optimizer; the distance of
  the parameters from those of 32-bit Adam, over the distance 32-bit Adam moved them:
  ``|p_8bit - p_32| / |p_32 - p_0|``.
  The same again with each element's gradient scale drawn log-uniformly over 3 and 5
  decades, so a block holds moments of many magnitudes and a code's range shows.
- **digits**: the MLP of ``tests/test_state_bits.py`` on scikit-learn's digits (300 steps
  of 64 samples, lr 2e-3), over three seeds: test accuracy and the mean loss after
  warm-up, against 32-bit state's.

A simulated code is a table of the values it can hold (in [-1, 1] for m, [0, 1] for v,
times the block's absmax); encoding picks the nearest entry, or a neighbour at random
with probability given by the distance (stochastic rounding).  The simulation follows the
kernels: the step computes the new moments in float32 from the decoded ones, updates the
parameter from them, then encodes them; an element whose v encodes to 0 stores m = 0.

    python tools/study_8bit_accuracy.py            # ~2 minutes on 2 cores
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np

import numba_adam
from compare_8bit_codes import nearest, tree_map   # bitsandbytes' codes, rebuilt there
from numba_adam import _codes

BETA1, BETA2, EPS, LR = 0.9, 0.999, 1e-8, 1e-3


# -- code tables ---------------------------------------------------------------------------
def float_like(exponent_bits: int, mantissa_bits: int, signed: bool) -> np.ndarray:
    """A float-like code whose largest value is 1.0: 2^(E - top) (1 + M / 2^m) for E >= 1,
    evenly spaced below (like IEEE subnormals)."""
    top = 2 ** exponent_bits - 1
    values = [0.0]
    for e in range(2 ** exponent_bits):
        for mant in range(2 ** mantissa_bits):
            if e == 0:
                values.append(mant / 2 ** mantissa_bits * 2.0 ** (1 - top))
            else:
                values.append(2.0 ** (e - top) * (1 + mant / 2 ** mantissa_bits))
    values = np.array(sorted(set(v for v in values if v <= 1.0)))
    return np.unique(np.concatenate([-values, values])) if signed else values


def two_tier(fine_binades: int, signed: bool) -> np.ndarray:
    """4 mantissa bits in the top ``fine_binades`` binades below 1.0, 3 below them, and
    the last few codes evenly spaced down to zero: precision near the block maximum
    without giving up all of the range."""
    codes = 128 if signed else 256
    values = [1.0]
    for e in range(1, fine_binades + 1):
        values += [2.0 ** -e * (1 + k / 16) for k in range(16)]
    e = fine_binades
    while len(values) + 8 <= codes - 1:
        e += 1
        values += [2.0 ** -e * (1 + k / 8) for k in range(8)]
    rest = codes - 1 - len(values)
    values += [2.0 ** -e * k / (rest + 1) for k in range(1, rest + 1)]
    values = np.array(sorted(values + [0.0]))
    return np.unique(np.concatenate([-values, values])) if signed else values


def linear(signed: bool) -> np.ndarray:
    return np.arange(-127, 128) / 127 if signed else np.arange(256) / 255


OURS = (np.unique(_codes.m8_to_float(np.arange(256))).astype(np.float64),
        np.unique(_codes.v8_to_float(np.arange(_codes.V8_MAX + 1))).astype(np.float64))


def round_to(y: np.ndarray, table: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Nearest entry of ``table`` (``rng`` given: a neighbour drawn by distance)."""
    if rng is None:
        return nearest(y, table)
    i = np.clip(np.searchsorted(table, y), 1, len(table) - 1)
    lower, upper = table[i - 1], table[i]
    up = rng.random(y.shape) < (y - lower) / (upper - lower)
    return np.where(up, upper, lower)


class SimulatedAdam8bit:
    """Adam over block-quantized m and v (NumPy, float32 arithmetic)."""

    def __init__(self, n: int, m_table, v_table, block: int = 256, stochastic: bool = False,
                 seed: int = 0):
        self.tables, self.block, self.n = (m_table, v_table), block, n
        self.rng = np.random.default_rng(seed) if stochastic else None
        size = -(-n // block) * block
        self.m, self.v, self.t = np.zeros(size, np.float32), np.zeros(size, np.float32), 0

    def _store(self, x: np.ndarray, table: np.ndarray) -> np.ndarray:
        blocks = x.reshape(-1, self.block)
        absmax = np.abs(blocks).max(axis=1, keepdims=True)
        scale = np.where(absmax > 0, absmax, 1)
        return (round_to(blocks / scale, table, self.rng) * absmax).astype(np.float32).ravel()

    def step(self, p: np.ndarray, g: np.ndarray) -> None:
        self.t += 1
        gp = np.zeros_like(self.m)
        gp[:self.n] = g
        m = np.float32(BETA1) * self.m + np.float32(1 - BETA1) * gp
        v = np.float32(BETA2) * self.v + np.float32(1 - BETA2) * gp * gp
        c1, c2 = 1 - BETA1 ** self.t, 1 - BETA2 ** self.t
        update = (m[:self.n] / c1) / (np.sqrt(v[:self.n] / c2) + EPS)
        p -= (LR * update).astype(np.float32)
        self.v = self._store(v, self.tables[1])
        self.m = np.where(self.v == 0, 0, self._store(m, self.tables[0])).astype(np.float32)


def numba_adam_8bit(n: int):
    buf = numba_adam.ParamBuffer({"w": np.zeros(n, np.float32)}, np.float32)
    opt = numba_adam.Adam(buf, lr=LR, state_bits=8)

    def step(p, g):
        buf["w"][...] = p
        buf.grads["w"][...] = g
        opt.step()
        p[...] = buf["w"]
    return step


def torch_8bit(library: str, n: int):
    import torch
    param = torch.nn.Parameter(torch.zeros(n))
    if library == "bitsandbytes":
        import bitsandbytes
        opt = bitsandbytes.optim.Adam8bit([param], lr=LR)
    else:
        from torchao.optim import AdamW8bit
        opt = AdamW8bit([param], lr=LR, weight_decay=0.0)

    def step(p, g):
        with torch.no_grad():
            param.copy_(torch.from_numpy(p))
        param.grad = torch.from_numpy(g.copy())
        opt.step()
        p[...] = param.detach().numpy()
    return step


def simulated(m_table, v_table, block=256, stochastic=False):
    def make(n):
        return SimulatedAdam8bit(n, m_table, v_table, block, stochastic).step
    return make


def variants() -> dict:
    out = {"numba_adam 8-bit (m E4M3, v E5M3, nearest, block 256)": numba_adam_8bit}
    for library in ("bitsandbytes", "torchao"):
        if importlib.util.find_spec(library) and importlib.util.find_spec("torch"):
            out[f"{library} 8-bit (dynamic tree map)"] = (
                lambda n, lib=library: torch_8bit(lib, n))
    m_ours, v_ours = OURS
    out.update({
        "sim: ours (check)": simulated(m_ours, v_ours),
        "sim: ours, stochastic rounding": simulated(m_ours, v_ours, stochastic=True),
        "sim: ours, block 128": simulated(m_ours, v_ours, block=128),
        "sim: ours, block 2048": simulated(m_ours, v_ours, block=2048),
        "sim: m E3M4, v E5M3": simulated(float_like(3, 4, True), v_ours),
        "sim: m E3M4 stochastic, v E5M3": simulated(float_like(3, 4, True), v_ours,
                                                   stochastic=True),
        "sim: m E4M3, v E4M4": simulated(m_ours, float_like(4, 4, False)),
        "sim: m E3M4, v E4M4": simulated(float_like(3, 4, True), float_like(4, 4, False)),
        "sim: m E2M5, v E4M4": simulated(float_like(2, 5, True), float_like(4, 4, False)),
        "sim: m E3M4, v E3M5": simulated(float_like(3, 4, True), float_like(3, 5, False)),
        "sim: m linear, v E4M4": simulated(linear(True), float_like(4, 4, False)),
        "sim: two tiers, m 3 and v 6 binades fine": simulated(two_tier(3, True),
                                                              two_tier(6, False)),
        "sim: tree map (bitsandbytes' codes)": simulated(tree_map(True).astype(np.float64),
                                                         tree_map(False).astype(np.float64)),
    })
    return out


# -- the two measures ----------------------------------------------------------------------
def update_error(make, decades: float = 0, n: int = 1 << 20, steps: int = 10) -> float:
    """``decades``: each element's gradients are scaled by a fixed 10^-U(0, decades), so
    a block holds moments of many magnitudes (as a layer's do)."""
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(n).astype(np.float32)
    scale = 10.0 ** -rng.uniform(0, decades, n)
    grads = [(rng.standard_normal(n) * scale).astype(np.float32) for _ in range(steps)]
    reference = SimulatedAdam8bit(n, None, None)      # float32 moments: no _store
    reference._store = lambda x, table: x
    exact, low = p0.copy(), p0.copy()
    step = make(n)
    for g in grads:
        reference.step(exact, g)
        step(low, g)
    return float(np.linalg.norm(low - exact) / np.linalg.norm(exact - p0))


def digits(make, seed: int) -> tuple[float, float]:
    from sklearn.datasets import load_digits
    data = load_digits()
    x, y = (data.data / 16.0).astype(np.float32), data.target
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    rng = np.random.default_rng(seed + 1)
    shapes = [(64, 128), (128,), (128, 10), (10,)]
    w1, b1, w2, b2 = [rng.normal(0, np.sqrt(2 / s[0]), s).astype(np.float32) if len(s) == 2
                      else np.zeros(s, np.float32) for s in shapes]
    sizes = [a.size for a in (w1, b1, w2, b2)]
    flat = np.concatenate([a.ravel() for a in (w1, b1, w2, b2)])
    step = make(flat.size)
    batches, losses = np.random.default_rng(seed + 2), []
    for _ in range(300):
        w1, b1, w2, b2 = (a.reshape(s) for a, s in zip(np.split(flat, np.cumsum(sizes)[:-1]),
                                                         shapes))
        idx = batches.integers(0, len(y_train), 64)
        xb, yb = x_train[idx], y_train[idx]
        h = np.maximum(xb @ w1 + b1, 0)
        logits = h @ w2 + b2
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        losses.append(-np.log(probs[np.arange(64), yb] + 1e-12).mean())
        d2 = probs
        d2[np.arange(64), yb] -= 1
        d2 /= 64
        dh = (d2 @ w2.T) * (h > 0)
        grad = np.concatenate([(xb.T @ dh).ravel(), dh.sum(axis=0), (h.T @ d2).ravel(),
                               d2.sum(axis=0)]).astype(np.float32)
        step(flat, grad)
    w1, b1, w2, b2 = (a.reshape(s) for a, s in zip(np.split(flat, np.cumsum(sizes)[:-1]),
                                                     shapes))
    h = np.maximum(x_test @ w1 + b1, 0)
    return float(np.mean(np.argmax(h @ w2 + b2, axis=1) == y_test)), float(np.mean(losses[50:]))


def main() -> None:
    warnings.filterwarnings("ignore")
    seeds = (0, 10, 20)

    def exact32(n):
        reference = SimulatedAdam8bit(n, None, None)
        reference._store = lambda x, table: x
        return reference.step

    base = [digits(exact32, s) for s in seeds]
    print(f"32-bit digits: accuracy {np.mean([a for a, _ in base]):.4f}, "
          f"loss {np.mean([l for _, l in base]):.4f}")
    print(f"{'8-bit state':<58} {'update error':>12} {'3 decades':>9} {'5 decades':>9} "
          f"{'digits acc.':>11} {'loss/32-bit':>11}")
    for name, make in variants().items():
        runs = [digits(make, s) for s in seeds]
        loss_ratio = np.mean([l / b for (_, l), (_, b) in zip(runs, base)])
        errors = [update_error(make, decades) for decades in (0, 3, 5)]
        print(f"{name:<58} {errors[0]:12.2%} {errors[1]:9.2%} {errors[2]:9.2%} "
              f"{np.mean([a for a, _ in runs]):11.4f} {loss_ratio:11.4f}", flush=True)


if __name__ == "__main__":
    main()
