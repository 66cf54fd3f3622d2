"""Bare step times of two numba_adam checkouts (say main and your branch), each in its own
processes, alternating, so a kernel or dispatch change is measured against the old code
on the same machine at the same time.

    git worktree add /tmp/main-tree main
    python tools/compare_trees.py /tmp/main-tree . --sizes 1e4,1e6,1e7,294,10 --rounds 7

Sizes are single tensors, except 294 (the transformer model of ``numba-adam bench``) and
10 (ten 1000-element tensors).  Prints medians and after/before with its range.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

STEPS = r"""
import sys, time, json, numpy as np, numba_adam
out = {}
for s in sys.argv[1:]:
    n = int(float(s))
    if n == 294:
        from numba_adam.bench import transformer_shapes
        shapes = transformer_shapes()
    elif n == 10:
        shapes = [(1000,)] * 10
    else:
        shapes = [(n,)]
    rng = np.random.default_rng(0)
    buf = numba_adam.ParamBuffer({str(i): rng.standard_normal(sh) for i, sh in
                                  enumerate(shapes)}, np.float32)
    buf.grad[:] = rng.standard_normal(buf.size) * 1e-3
    opt = numba_adam.Adam(buf, lr=1e-6)
    inner = max(1, int(2e6 / buf.size))
    for _ in range(3 * inner + 10):
        opt.step()
    times = []
    for _ in range(15):
        start = time.perf_counter()
        for _ in range(inner):
            opt.step()
        times.append((time.perf_counter() - start) / inner)
    out[s] = float(np.median(times))
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="checkout of the old code")
    parser.add_argument("after", help="checkout of the new code")
    parser.add_argument("--sizes", default="1e4,1e6,1e7,294,10")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    sizes = [s for s in args.sizes.split(",") if s]
    samples = {s: {"before": [], "after": []} for s in sizes}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            env = dict(os.environ, PYTHONPATH=tree)
            out = subprocess.run([sys.executable, "-c", STEPS, *sizes], env=env, cwd=tree,
                                 capture_output=True, text=True, check=True).stdout
            for size, seconds in json.loads(out).items():
                samples[size][name].append(seconds)
    print(f"{'size':>6} {'before us':>10} {'after us':>10}  after/before [range]")
    for size, both in samples.items():
        before, after = statistics.median(both["before"]), statistics.median(both["after"])
        ratios = [a / b for a, b in zip(both["after"], both["before"])]
        print(f"{size:>6} {before * 1e6:10.1f} {after * 1e6:10.1f}  {after / before:.2f} "
              f"[{min(ratios):.2f}-{max(ratios):.2f}]")


if __name__ == "__main__":
    main()
