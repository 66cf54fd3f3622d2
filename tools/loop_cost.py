"""The compiled element loops of each state format, counted and modelled: a noise-free
companion to ``compare_trees.py`` and ``numba-adam bench`` on a shared, noisy machine.

    python tools/loop_cost.py --state-bits 32,16,8
    python tools/loop_cost.py --state-bits 16 --amsgrad --mcpu skylake

For each format, a fresh process (its own empty Numba cache, one thread) builds an
``Adam`` over one tensor and takes one step with ``NUMBA_DUMP_ASSEMBLY=1``, so the
kernels are compiled for this machine as a user's would be (the process imports
numba_adam as Python finds it from the current directory: run it from a checkout's root
to see that checkout's).  They run here too, so ``NUMBA_CPU_NAME`` can only pick a
target this CPU executes.  Every innermost vector loop of the dump is listed with its
instruction count, the elements one pass covers and, where LLVM's ``llvm-mca`` is
installed (Debian: ``apt install llvm``, or ``llvm-19`` for Zen 4; the newest
``llvm-mca-NN`` on PATH is used), its modelled cycles per pass and per element on
``--mcpu`` (default: the CPU compiled for; another name models that core running this
code).

A kernel compiles every variant it may take: the update loop appears once per
gradient form (the plain one, without clamp and gradient factor, is the shortest) and,
with AMSGrad, once more.  8-bit state runs an update loop and then the encode loop (no
square root) over each block.  The cycles are a model of the core's ports, a pointer
next to a measured time, not a measurement.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile

STEP = r"""
import sys, numpy as np, numba_adam
numba_adam.set_num_threads(1)
w = np.linspace(-1, 1, 1 << 15, dtype=np.float32)
opt = numba_adam.Adam([w], lr=1e-3, amsgrad=sys.argv[2] == "1", state_bits=int(sys.argv[1]))
opt.step([np.full_like(w, 0.5)])
"""

HEADER = re.compile(r"^-+ASSEMBLY (\S+?)-+$")
LABEL = re.compile(r"^(\.?L\w+):")
JUMP = re.compile(r"^\s+j\w+\s+(\.?L\w+)")
# packed float arithmetic (scalar code uses the ps forms only for bitwise ops and moves)
PACKED = re.compile(r"^v(add|sub|mul|div|sqrt|max|min|fn?m(add|sub)\d+)ps\s")


def innermost_loops(assembly: str) -> list[tuple[str, list[str], int | None]]:
    """(function name, instructions, ``elements_per_pass``) of each innermost vector loop:
    a backward jump to a label with no other backward jump between them, whose body does
    packed float arithmetic and whose counter does not step one element at a time."""
    loops, function, labels, jumps = [], "?", {}, []
    lines = assembly.splitlines()
    for i, line in enumerate(lines):
        header = HEADER.match(line)
        if header:
            function, labels = header.group(1), {}
            continue
        label = LABEL.match(line)
        if label:
            labels[label.group(1)] = i
            continue
        jump = JUMP.match(line)
        if jump and jump.group(1) in labels:
            jumps.append((labels[jump.group(1)], i, function))
    for start, end, name in jumps:
        if any(start < s and e < end for s, e, _ in jumps):
            continue                                   # holds another loop
        body = [x.strip() for x in lines[start + 1:end + 1]
                if x.startswith("\t") and not x.strip().startswith(".")]
        elements = elements_per_pass(body)
        if any(PACKED.match(x) for x in body) and elements != 1:
            loops.append((name, body, elements))
    return loops


def elements_per_pass(body: list[str]) -> int | None:
    """The loop counter's step where the counter indexes memory (``(base,%reg,scale)``),
    so the step counts elements; None where the loop steps pointers instead."""
    for line in reversed(body):
        step = re.match(r"(?:add[lq]\s+\$(\d+),|inc[lq])\s*(%\w+)$", line)
        if step and any(f",{step.group(2)}," in x for x in body):
            return int(step.group(1) or 1)
    return None


@functools.lru_cache(maxsize=None)
def find_mca() -> str | None:
    """The newest llvm-mca on PATH: Debian's versioned ``llvm-mca-NN`` beside the default
    one, since older ones lack newer cores (LLVM 14 has no znver4, LLVM 19 has)."""
    versions = {}
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        for name in os.listdir(folder) if os.path.isdir(folder) else ():
            found = re.fullmatch(r"llvm-mca-(\d+)", name)
            tool = shutil.which(name) if found else None
            if tool:
                versions.setdefault(int(found.group(1)), tool)
    return versions[max(versions)] if versions else shutil.which("llvm-mca")


def mca_cycles(body: list[str], mcpu: str) -> float | None:
    """llvm-mca's cycles per pass of ``body`` on ``mcpu``, or None without llvm-mca."""
    tool = find_mca()
    if tool is None:
        return None
    passes = 200
    out = subprocess.run([tool, f"-mcpu={mcpu}", f"-iterations={passes}"],
                         input="\n".join(body) + "\n", capture_output=True, text=True)
    if "not a recognized processor" in out.stderr:     # it would model a generic core
        raise SystemExit(f"this llvm-mca has no model of {mcpu!r}: {out.stderr.strip()}")
    total = re.search(r"Total Cycles:\s*(\d+)", out.stdout)
    return int(total.group(1)) / passes if total else None


def host_cpu() -> str:
    import llvmlite.binding as llvm
    return llvm.get_host_cpu_name()


def dump(state_bits: int, amsgrad: bool) -> str:
    """The assembly Numba prints while one fresh process compiles and takes one step."""
    cache = tempfile.mkdtemp(prefix="loop-cost-cache-")
    try:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, NUMBA_DUMP_ASSEMBLY="1")
        done = subprocess.run([sys.executable, "-c", STEP, str(state_bits), str(int(amsgrad))],
                              env=env, capture_output=True, text=True, check=True)
        return done.stdout
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-bits", default="32,16,8")
    parser.add_argument("--amsgrad", action="store_true")
    parser.add_argument("--mcpu", default=None, help="llvm-mca's CPU model (default: the "
                        "CPU Numba compiles for, this machine's unless NUMBA_CPU_NAME names one)")
    args = parser.parse_args()
    named = os.environ.get("NUMBA_CPU_NAME", "host")      # the target Numba compiles for
    mcpu = args.mcpu or (named if named != "host" else host_cpu())
    if find_mca() is None:
        print("llvm-mca not found: instruction counts only (apt install llvm for cycles)")
    print(f"{'format':<14} {'function':<28} {'instr':>5} {'elements':>8} "
          f"{'cycles/pass':>11} {'cycles/element':>14}   sqrt  ({mcpu})")
    for bits in (int(b) for b in args.state_bits.split(",")):
        label = f"{bits}-bit" + (" amsgrad" if args.amsgrad else "")
        for name, body, n in innermost_loops(dump(bits, args.amsgrad)):
            cycles = mca_cycles(body, mcpu)
            per = f"{cycles / n:.2f}" if cycles and n else "-"
            sqrt = "yes" if any("sqrtp" in x for x in body) else ""
            print(f"{label:<14} {name[:28]:<28} {len(body):>5} {n or '?':>8} "
                  f"{cycles if cycles is not None else '-':>11} {per:>14}   {sqrt}")


if __name__ == "__main__":
    main()
