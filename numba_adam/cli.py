"""The ``numba-adam`` command line: ``demo`` (the main job), ``bench`` and ``info``."""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys


def cuda_status() -> str:
    """numba-cuda's presence and whether a GPU is usable, without failing."""
    if importlib.util.find_spec("numba_cuda") is None:
        return "numba-cuda not installed (pip install 'numba-adam[cuda]')"
    try:
        from numba import cuda
        if cuda.is_available():
            device = cuda.get_current_device()
            return f"available: {device.name.decode() if isinstance(device.name, bytes) else device.name}"
        return "numba-cuda installed, no usable GPU"
    except Exception as exc:  # driver problems are reported, not raised
        return f"numba-cuda installed, CUDA unusable: {exc}"


def info(args: argparse.Namespace) -> int:
    import llvmlite
    import numba
    import numpy

    from . import __version__, _cpu, _threads, get_num_threads
    rows = [
        ("numba_adam", __version__),
        ("python", platform.python_version()),
        ("numba", numba.__version__),
        ("numpy", numpy.__version__),
        ("llvmlite", llvmlite.__version__),
        ("threading layer", _threads.layer_report(choose=True)),
        ("threads", f"{get_num_threads()} (numba_adam.set_num_threads, or NUMBA_NUM_THREADS)"),
        ("kernel cache", _cpu.kernel_cache_status()),
        ("CUDA", cuda_status()),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="numba-adam", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    from .demo import add_arguments as demo_arguments
    demo_arguments(sub.add_parser("demo", help="train a NumPy MLP with numba_adam (the main job)"))
    from .bench import add_arguments as bench_arguments
    bench_arguments(sub.add_parser("bench", help="time numba_adam against NumPy, PyTorch and "
                                                 "the memory-bandwidth roofline"))
    sub.add_parser("info", help="versions, threading layer, threads, kernel cache, CUDA")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run
        return run(args)
    if args.command == "bench":
        from .bench import run
        return run(args)
    return info(args)


if __name__ == "__main__":
    sys.exit(main())
