"""Round-trip error of numba_adam's 8-bit codes against bitsandbytes' dynamic tree map.

Both quantize blocks of 256 values against the block's absmax and round to the nearest
code.  The tree map is rebuilt here from its published construction (Dettmers 2015,
"8-Bit Approximations for Parallelism in Deep Learning"; bitsandbytes'
``create_dynamic_map`` with 7 exponent bits): for each decade 10^(i-6), i = 0..6, the
midpoints of an even split of [0.1, 1] into 2^i (signed) or 2^(i+1) (unsigned) parts,
plus 0 and 1.  Values are drawn log-uniformly over a range of magnitudes below the
block maximum, as Adam's moments are.

    python tools/compare_8bit_codes.py
"""

from __future__ import annotations

import numpy as np

from numba_adam import _codes


def tree_map(signed: bool) -> np.ndarray:
    values = [0.0, 1.0]
    for i in range(7):
        parts = 2 ** i if signed else 2 ** (i + 1)
        edges = np.linspace(0.1, 1.0, parts + 1)
        means = (edges[:-1] + edges[1:]) / 2 * 10.0 ** (i - 6)
        values += list(means) + (list(-means) if signed else [])
    return np.unique(np.array(values, np.float32))


def nearest(y: np.ndarray, table: np.ndarray) -> np.ndarray:
    i = np.clip(np.searchsorted(table, y), 1, len(table) - 1)
    lower, upper = table[i - 1], table[i]
    return np.where(np.abs(y - lower) <= np.abs(upper - y), lower, upper)


def tree_round_trip(x: np.ndarray, signed: bool) -> np.ndarray:
    blocks = x.reshape(-1, 256)
    absmax = np.abs(blocks).max(axis=1, keepdims=True)
    return (nearest(blocks / absmax, tree_map(signed)) * absmax).ravel()


def ours_round_trip(x: np.ndarray, signed: bool) -> np.ndarray:
    codes, absmax = _codes.quantize8(x, signed)
    return _codes.dequantize8(codes, absmax, signed)


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'moment':<7} {'decades below the block max':>28} {'code':>6} "
          f"{'median rel. error':>18} {'99th pct':>9} {'flushed to 0':>13}")
    for signed, name in ((True, "m"), (False, "v")):
        for decades in (2, 4, 6, 8, 10):
            magnitude = 10.0 ** -rng.uniform(0, decades, 256 * 2000)
            x = magnitude * (np.sign(rng.standard_normal(magnitude.size)) if signed else 1)
            x = x.astype(np.float32)
            x.reshape(-1, 256)[:, 0] = 1.0       # every block reaches its max
            for label, round_trip in (("tree", tree_round_trip), ("ours", ours_round_trip)):
                back = round_trip(x, signed)
                error = np.abs(back - x) / np.abs(x)
                print(f"{name:<7} {decades:>28} {label:>6} {np.median(error):18.4f} "
                      f"{np.quantile(error, 0.99):9.4f} {np.mean(back == 0):13.2%}")


if __name__ == "__main__":
    main()
