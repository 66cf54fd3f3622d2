"""``numba-adam demo``: train a NumPy MLP on generated spirals with numba_adam.

The model (2 -> H -> H -> K, ReLU, softmax cross-entropy) has hand-written
forward and backward passes; its weights live in one ``ParamBuffer`` and the
backward pass writes straight into the buffer's gradient views, so each
``opt.step()`` is one kernel launch over every parameter.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .buffer import ParamBuffer

if TYPE_CHECKING:
    from .optim import Adam


# -- data and model ---------------------------------------------------------
def make_spirals(n_points: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` interleaved noisy spiral arms in 2-D: not linearly separable."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_points) % classes
    radius = rng.uniform(0.05, 1.0, n_points)
    angle = labels * (2 * np.pi / classes) + radius * 3.0 * np.pi + rng.normal(0, 0.12, n_points)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    order = rng.permutation(n_points)
    return points[order].astype(np.float32), labels[order]


def init_mlp(hidden: int, classes: int, seed: int) -> ParamBuffer:
    """He-initialised weights of a 2 -> hidden -> hidden -> classes MLP."""
    rng = np.random.default_rng(seed + 1)
    return ParamBuffer({
        "w1": rng.normal(0, np.sqrt(2 / 2), (2, hidden)), "b1": np.zeros(hidden),
        "w2": rng.normal(0, np.sqrt(2 / hidden), (hidden, hidden)), "b2": np.zeros(hidden),
        "w3": rng.normal(0, np.sqrt(2 / hidden), (hidden, classes)), "b3": np.zeros(classes),
    })


def forward(buf: ParamBuffer, x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Logits and the activations the backward pass needs."""
    h1 = np.maximum(x @ buf["w1"] + buf["b1"], 0)
    h2 = np.maximum(h1 @ buf["w2"] + buf["b2"], 0)
    return h2 @ buf["w3"] + buf["b3"], (x, h1, h2)


def loss_and_grads(buf: ParamBuffer, x: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy; writes its gradient into ``buf.grads``."""
    logits, (x, h1, h2) = forward(buf, x)
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    probs = exp / exp.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = float(-np.log(probs[np.arange(n), y] + 1e-12).mean())
    d3 = probs
    d3[np.arange(n), y] -= 1
    d3 /= n
    g = buf.grads
    np.matmul(h2.T, d3, out=g["w3"])
    g["b3"][...] = d3.sum(axis=0)
    d2 = (d3 @ buf["w3"].T) * (h2 > 0)
    np.matmul(h1.T, d2, out=g["w2"])
    g["b2"][...] = d2.sum(axis=0)
    d1 = (d2 @ buf["w2"].T) * (h1 > 0)
    np.matmul(x.T, d1, out=g["w1"])
    g["b1"][...] = d1.sum(axis=0)
    return loss


def accuracy(buf: ParamBuffer, x: np.ndarray, y: np.ndarray) -> float:
    logits, _ = forward(buf, x)
    return float((logits.argmax(axis=1) == y).mean())


# -- progress ---------------------------------------------------------------
class Progress:
    """A one-line progress bar on a terminal; a line every tenth of the run elsewhere.

    Kept in-house so the runtime dependencies stay numba, numpy and llvmlite.
    """

    def __init__(self, total: int, stream=None, width: int = 30):
        self.total, self.width = total, width
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._next_line = 0

    def update(self, done: int, note: str) -> None:
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw < 0.1 and done < self.total:
                return
            self._last_draw = now
            filled = int(self.width * done / self.total)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r[{bar}] {done}/{self.total} {now - self.start:5.1f}s {note}")
            if done == self.total:
                self.stream.write("\n")
        elif done >= self._next_line or done == self.total:
            self.stream.write(f"step {done}/{self.total} ({now - self.start:.1f}s) {note}\n")
            self._next_line = done + max(1, self.total // 10)
        self.stream.flush()


# -- command ----------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    parser.add_argument("--optimizer", choices=("adam", "adamw"), default="adam")
    parser.add_argument("--amsgrad", action="store_true", help="use the AMSGrad variant")
    parser.add_argument("--state-bits", type=int, choices=(32, 16, 8), default=32,
                        help="optimizer state format: 32 (default), 16 (bfloat16) or 8 "
                             "(block-quantized; tensors under 4096 elements keep 32)")
    parser.add_argument("--lr", type=float, default=3e-3, help="(peak) learning rate (default 3e-3)")
    parser.add_argument("--schedule", choices=SCHEDULES, default="warmup_cosine",
                        help="learning-rate schedule over the run (default warmup_cosine)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.ckpt (optimizer state, weights, schedule)")
    parser.add_argument("--hidden", type=int, default=256, help="hidden width (default 256)")
    parser.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="data and initialisation seed")
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel over MPI: launch with mpiexec -n P; each rank "
                             "takes a share of every batch (numba_adam.distributed)")
    parser.add_argument("--out", type=Path, default=Path("numba-adam-demo"),
                        help="folder for the loss curve and checkpoint (default ./numba-adam-demo)")


SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential")


def build_schedule(name: str, lr: float, steps: int):
    from . import schedules
    if name == "cosine":
        return schedules.cosine_decay(lr, steps, alpha=0.01)
    if name == "warmup_cosine":
        warmup = max(1, steps // 20)
        return schedules.warmup_cosine_decay(0.0, lr, warmup, max(steps, warmup + 1), end_lr=lr / 100)
    if name == "exponential":
        return schedules.exponential_decay(lr, max(1, steps), 0.01)
    return lr


def build_optimizer(args: argparse.Namespace, buf: ParamBuffer) -> Adam:
    lr = build_schedule(args.schedule, args.lr, args.steps)
    if getattr(args, "distributed", False):
        from .distributed import DistributedAdam as Adam, DistributedAdamW as AdamW
    else:
        from .optim import Adam, AdamW
    if args.optimizer == "adamw":
        return AdamW(buf, lr=lr, amsgrad=args.amsgrad, weight_decay=1e-4,
                     state_bits=args.state_bits)
    return Adam(buf, lr=lr, amsgrad=args.amsgrad, state_bits=args.state_bits)


class _Ranks:
    """Who this process is in a --distributed run (one process otherwise)."""

    def __init__(self, distributed: bool) -> None:
        self.comm = None
        self.rank, self.size, self.threads = 0, 1, None
        if distributed:
            from mpi4py import MPI
            self.comm = MPI.COMM_WORLD
            self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
            self.threads = self._share_cores()

    def _share_cores(self) -> int:
        """Give each rank its share of this machine's cores, for numba_adam and BLAS.

        Ranks on one machine that each run a thread per core oversubscribe it
        (the 2-rank demo ran 50x slower with OpenBLAS's default threads).  The
        demo, a program of its own, sets this; numba_adam never does on import.
        """
        from mpi4py import MPI

        from . import set_num_threads
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
        threads = max(1, cores // local)
        set_num_threads(threads)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            print("numba-adam demo: threadpoolctl is not installed, so NumPy's BLAS keeps its "
                  "own thread count; pip install 'numba-adam[mpi]', or set "
                  f"OMP_NUM_THREADS={threads} when launching", file=sys.stderr)
        else:
            threadpool_limits(threads)
        return threads

    def share(self, batch: np.ndarray) -> np.ndarray:
        """This rank's near-equal share of a batch every rank drew alike."""
        return np.array_split(batch, self.size)[self.rank]

    def mean(self, value: float, weight: int) -> float:
        """The batch-weighted mean of a per-rank value (the whole batch's loss)."""
        if self.comm is None:
            return value
        total = self.comm.allreduce(np.array([value * weight, weight], np.float64))
        return float(total[0] / total[1])


def write_curve(losses: list[float], out: Path) -> str:
    """Loss curve as CSV always, and as PNG when matplotlib is installed."""
    csv = out / "loss.csv"
    csv.write_text("step,loss\n" + "".join(f"{i + 1},{v:.6g}\n" for i, v in enumerate(losses)))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return (f"loss curve: {csv} (for a PNG plot: pip install 'numba-adam[plot]' "
                f"and run the demo again)")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(losses) + 1), losses, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title("numba-adam demo")
    fig.tight_layout()
    png = out / "loss.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return f"loss curve: {png}"


def _argument_error(args: argparse.Namespace) -> str | None:
    """Why ``args`` cannot run (None when they can)."""
    if args.steps < 1:
        return "--steps must be at least 1"
    if args.distributed:
        import importlib.util
        if importlib.util.find_spec("mpi4py") is None:
            return ("--distributed needs mpi4py: pip install 'numba-adam[mpi]', "
                    "then mpiexec -n 2 numba-adam demo --distributed")
    return None


def _resume(opt: Adam, out: Path) -> list[float]:
    """Load ``out``'s checkpoint into ``opt`` (parameters too) and return the losses
    recorded so far; raises ``CheckpointError`` when it cannot be loaded."""
    opt.load(out / "checkpoint.ckpt", params=True)
    if not (out / "loss.csv").exists():
        return []
    return np.loadtxt(out / "loss.csv", delimiter=",", skiprows=1, ndmin=2)[:, 1].tolist()


def _headline(args: argparse.Namespace, buf: ParamBuffer, opt: Adam, ranks: "_Ranks", classes: int,
              done: int) -> str:
    """The run's first line: model, optimizer, state, schedule and data."""
    mib = opt.state_nbytes / 2**20
    return (f"numba-adam demo: {buf.size:,} parameters in {len(buf)} tensors, "
            f"{args.optimizer}{' amsgrad' if args.amsgrad else ''}"
            f"{f', {args.state_bits}-bit state' if args.state_bits != 32 else ''} "
            f"({mib:.1f} MiB), lr {args.lr} ({args.schedule}), {args.steps} steps of batch "
            f"{args.batch} on {classes}-arm spirals"
            + (f", resuming after step {done}" if done else "")
            + (f", data-parallel over {ranks.size} ranks (state {mib:.1f} MiB per rank, "
               f"{ranks.threads} thread(s) each)" if args.distributed else ""))


def _train(args: argparse.Namespace, buf: ParamBuffer, opt: Adam, ranks: "_Ranks", x: np.ndarray,
           y: np.ndarray, losses: list[float]) -> tuple[float, float, float]:
    """``args.steps`` steps on minibatches of ``(x, y)``, each loss appended to ``losses``;
    returns the first step's seconds (compile or cache load), the optimizer's seconds
    after it, and the whole loop's seconds."""
    rng = np.random.default_rng([args.seed + 2, opt.param_groups[0].updates])
    optimizer_seconds = 0.0
    first_step_seconds = None
    progress = Progress(args.steps, sys.stdout)
    start = time.perf_counter()
    for step in range(args.steps):
        batch = ranks.share(rng.integers(0, len(x), args.batch))
        losses.append(ranks.mean(loss_and_grads(buf, x[batch], y[batch]), len(batch)))
        t0 = time.perf_counter()
        opt.step()
        if first_step_seconds is None:     # compile or cache load: reported on its own
            first_step_seconds = time.perf_counter() - t0
        else:
            optimizer_seconds += time.perf_counter() - t0
        progress.update(step + 1, f"loss {np.mean(losses[-50:]):.4f}")
    return first_step_seconds, optimizer_seconds, time.perf_counter() - start


def _timing(args: argparse.Namespace, buf: ParamBuffer, first_step_seconds: float,
            optimizer_seconds: float, total: float) -> list[str]:
    """The report's timing lines: the first step apart, then the optimizer's share."""
    from .bench import bytes_per_param
    lines = [f"first step {first_step_seconds:.2f}s (compile, or load from the kernel "
             f"cache; cached next time)"]
    if args.steps > 1:
        updates = buf.size * (args.steps - 1)
        moved = bytes_per_param(buf.data.dtype, args.amsgrad, args.state_bits)
        lines.append(f"time {total:.1f}s; optimizer after the first step "
                     f"{optimizer_seconds:.3f}s = {optimizer_seconds / total:.1%} of the run, "
                     f"{optimizer_seconds / (args.steps - 1) * 1e3:.3f} ms/step, "
                     f"{updates / optimizer_seconds / 1e6:,.0f}M parameters/s, "
                     f"{updates * moved / optimizer_seconds / 1e9:.1f} GB/s")
    return lines


def run(args: argparse.Namespace) -> int:
    error = _argument_error(args)
    if error:
        print(f"numba-adam demo: {error}", file=sys.stderr)
        return 2
    ranks = _Ranks(args.distributed)
    if ranks.rank != 0:   # one report: rank 0's (every rank has the same parameters)
        sys.stdout = open(os.devnull, "w")
    classes = 5
    x, y = make_spirals(12_000, classes, args.seed)
    x_train, y_train, x_test, y_test = x[:10_000], y[:10_000], x[10_000:], y[10_000:]
    buf = init_mlp(args.hidden, classes, args.seed)
    opt = build_optimizer(args, buf)
    args.out.mkdir(parents=True, exist_ok=True)
    losses: list[float] = []
    if args.resume:
        from .checkpoint import CheckpointError
        try:
            losses = _resume(opt, args.out)
        except CheckpointError as exc:
            print(f"numba-adam demo: cannot resume: {exc}", file=sys.stderr)
            return 1
    done = opt.param_groups[0].updates
    print(_headline(args, buf, opt, ranks, classes, done))
    timing = _train(args, buf, opt, ranks, x_train, y_train, losses)
    print(f"final loss {np.mean(losses[-100:]):.4f} (first of this run "
          f"{losses[len(losses) - args.steps]:.4f}), "
          f"train accuracy {accuracy(buf, x_train, y_train):.1%}, "
          f"test accuracy {accuracy(buf, x_test, y_test):.1%}")
    print("\n".join(_timing(args, buf, *timing)))
    checkpoint = args.out / "checkpoint.ckpt"
    opt.save(checkpoint, params=True)
    print(f"checkpoint: {checkpoint} after step {opt.param_groups[0].updates} "
          f"(continue with --resume)")
    if ranks.rank == 0:
        print(write_curve(losses, args.out))
    return 0
