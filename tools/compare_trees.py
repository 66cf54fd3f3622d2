"""Two numba_adam checkouts (say main and your branch), each in its own processes,
alternating, so a change is measured against the old code on the same machine at the
same time.  The old checkout need not have ``numba-adam bench`` or any newer API.

    git worktree add /tmp/main-tree main
    python tools/compare_trees.py /tmp/main-tree . --sizes 1e4,1e6,1e7,294,10 --rounds 7
    python tools/compare_trees.py /tmp/main-tree . --sizes "" --loop --neighbour

``--sizes``: bare step times.  Sizes are single tensors, except 294 (the transformer
model of ``numba-adam bench``) and 10 (ten 1000-element tensors); a trailing ``a``
(``294a``) steps plain arrays with a list of gradients instead of a ParamBuffer.
``--state-bits``: the optimizer state format of those steps (32, 16 or 8); ``--amsgrad``:
with AMSGrad.
``--loop``: a training loop at 68k and 1M parameters (two 256x256 NumPy matmuls, then
the step): the step inside the loop, the whole iteration over the same loop with a
serial same-bytes kernel (defined here, the same for both trees), and the bare step on
one thread.
``--neighbour``: torch's fused step and matmul and NumPy's matmul in a process that
imported and stepped the tree's numba_adam, over the same in a process that did not.
Prints medians and after/before with its range over rounds.

Each tree compiles into its own fresh Numba cache for the run: Numba checks a cached
kernel only against the file that defines it, so a change to a module it calls
(``_bits``, ``_codes``, ``_formula``) would otherwise be timed as the old kernel.
"""

import argparse
import json
import os
import statistics
import shutil
import subprocess
import sys
import tempfile

STEPS = r"""
import sys, time, json, numpy as np, numba_adam
out = {}
state_bits, amsgrad = int(sys.argv[1].rstrip("a")), sys.argv[1].endswith("a")
options = {} if state_bits == 32 else {"state_bits": state_bits}
if amsgrad:
    options["amsgrad"] = True
for s in sys.argv[2:]:
    arrays = s.endswith("a")      # plain arrays and a list of gradients, not a ParamBuffer
    n = int(float(s.rstrip("a")))
    if n == 294:
        from numba_adam.bench import transformer_shapes
        shapes = transformer_shapes()
    elif n == 10:
        shapes = [(1000,)] * 10
    else:
        shapes = [(n,)]
    rng = np.random.default_rng(0)
    if arrays:
        params = [rng.standard_normal(sh).astype(np.float32) for sh in shapes]
        grads = [(rng.standard_normal(sh) * 1e-3).astype(np.float32) for sh in shapes]
        opt = numba_adam.Adam(params, lr=1e-6, **options)
        step = lambda: opt.step(grads)
    else:
        buf = numba_adam.ParamBuffer({str(i): rng.standard_normal(sh) for i, sh in
                                      enumerate(shapes)}, np.float32)
        buf.grad[:] = rng.standard_normal(buf.size) * 1e-3
        opt = numba_adam.Adam(buf, lr=1e-6, **options)
        step = opt.step
    size = sum(int(np.prod(sh)) for sh in shapes)
    inner = max(1, int(2e6 / size))
    for _ in range(3 * inner + 10):
        step()
    times = []
    for _ in range(15):
        start = time.perf_counter()
        for _ in range(inner):
            step()
        times.append((time.perf_counter() - start) / inner)
    out[s] = float(np.median(times))
print(json.dumps(out))
"""

LOOP = r"""
import time, json, numpy as np, numba_adam
from numba import njit

@njit(nogil=True, fastmath=True)
def same_bytes(p, g, m, v):
    for i in range(p.size):
        a = g[i]
        p[i] += a
        m[i] += a
        v[i] += a

def median_of(fn, calls=400):
    for _ in range(50):
        fn()
    return float(np.median([fn() for _ in range(calls)]))

a = np.random.default_rng(2).standard_normal((256, 256)).astype(np.float32)
def loop(step):
    def iteration():
        start = time.perf_counter()
        a @ a
        a @ a
        middle = time.perf_counter()
        step()
        end = time.perf_counter()
        return end - start, end - middle
    return iteration

def timed(step):
    def once():
        start = time.perf_counter()
        step()
        return time.perf_counter() - start
    return once

out = {}
optimizers = {}
for label, n in (("68k", 68_000), ("1M", 1_000_000)):
    rng = np.random.default_rng(0)
    buf = numba_adam.ParamBuffer({"w": rng.standard_normal(n)}, np.float32)
    buf.grad[:] = rng.standard_normal(n) * 1e-3
    opt = numba_adam.Adam(buf, lr=1e-6)
    optimizers[label] = opt
    it = loop(opt.step)
    for _ in range(100):
        it()
    samples = [it() for _ in range(400)]
    out[f"loop {label}: step in the loop"] = float(np.median([s[1] for s in samples]))
    arrays = [rng.standard_normal(n).astype(np.float32) * 1e-30 for _ in range(4)]
    reference = loop(lambda: same_bytes(*arrays))
    for _ in range(100):
        reference()
    iteration = float(np.median([s[0] for s in samples]))
    out[f"loop {label}: iteration / same-bytes loop"] = iteration / float(
        np.median([reference()[0] for _ in range(400)]))
set_threads = getattr(numba_adam, "set_num_threads", None)
if set_threads is None:      # older trees ran on Numba's OpenMP pool
    import numba
    set_threads = numba.set_num_threads
set_threads(1)
for label, opt in optimizers.items():
    out[f"loop {label}: bare 1-thread step"] = median_of(timed(opt.step))
for label in optimizers:
    out[f"loop {label}: step in the loop / bare"] = (
        out[f"loop {label}: step in the loop"] / out[f"loop {label}: bare 1-thread step"])
print(json.dumps(out))
"""

NEIGHBOUR = r"""
import sys, time, json, numpy as np
if sys.argv[1] == "with":
    import numba_adam
    buf = numba_adam.ParamBuffer({"w": np.zeros(2_000_000, np.float32)})
    opt = numba_adam.Adam(buf)
    for _ in range(10):
        opt.step()
import torch

def per_call(fn, seconds=0.3):
    for _ in range(20):
        fn()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < 0.05:
        fn()
        calls += 1
    inner = max(1, int(calls * seconds / 0.05 / 5))
    times = []
    for _ in range(5):
        time.sleep(0.05)
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return float(np.median(times))

out = {}
for label, sizes in (("torch fused, 10 tensors", [1000] * 10), ("torch fused, 1e6", [10**6])):
    params = [torch.randn(n) for n in sizes]
    for p in params:
        p.grad = torch.randn(p.shape) * 1e-3
    out[label] = per_call(torch.optim.Adam(params, lr=1e-6, fused=True).step)
y = torch.randn(256, 256)
out["torch matmul 256"] = per_call(lambda: y @ y)
x = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
out["numpy matmul 256"] = per_call(lambda: x @ x)
print(json.dumps(out))
"""


def _run(script: str, tree: str, cache: str, *argv: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=tree, NUMBA_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", script, *argv], env=env, cwd=tree,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="checkout of the old code")
    parser.add_argument("after", help="checkout of the new code")
    parser.add_argument("--sizes", default="1e4,1e6,1e7,294,10")
    parser.add_argument("--loop", action="store_true", help="also the training-loop figures")
    parser.add_argument("--neighbour", action="store_true",
                        help="also the good-neighbour figures (needs torch)")
    parser.add_argument("--state-bits", type=int, choices=(32, 16, 8), default=32,
                        help="state format of the --sizes steps")
    parser.add_argument("--amsgrad", action="store_true", help="the --sizes steps with AMSGrad")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    sizes = [s for s in args.sizes.split(",") if s]
    samples: dict[str, dict[str, list[float]]] = {}

    def add(name: str, label: str, value: float) -> None:
        samples.setdefault(label, {"before": [], "after": []})[name].append(value)

    state = f"{args.state_bits}{'a' if args.amsgrad else ''}"    # the script's argv[1]
    caches = {name: tempfile.mkdtemp(prefix=f"compare-trees-{name}-") for name in trees}
    try:
        for round_ in range(args.rounds):
            for name, tree in trees.items():
                cache = caches[name]
                if sizes:
                    for size, seconds in _run(STEPS, tree, cache, state, *sizes).items():
                        add(name, size, seconds)
                if args.loop:
                    for label, value in _run(LOOP, tree, cache).items():
                        add(name, label, value)
                if args.neighbour:    # with and without side by side, in turn first
                    order = ("with", "without") if round_ % 2 else ("without", "with")
                    times = {how: _run(NEIGHBOUR, tree, cache, how) for how in order}
                    for label, seconds in times["with"].items():
                        add(name, f"neighbour: {label}, with / without",
                            seconds / times["without"][label])
    finally:
        for cache in caches.values():
            shutil.rmtree(cache, ignore_errors=True)
    print(f"{'measurement':>44} {'before':>10} {'after':>10}  after/before [range]")
    for label, both in samples.items():
        before, after = statistics.median(both["before"]), statistics.median(both["after"])
        ratios = [a / b for a, b in zip(both["after"], both["before"])]
        unit = 1e6 if "/" not in label else 1.0     # seconds as us; ratios as they are
        print(f"{label:>44} {before * unit:10.2f} {after * unit:10.2f}  {after / before:.2f} "
              f"[{min(ratios):.2f}-{max(ratios):.2f}]")


if __name__ == "__main__":
    main()
