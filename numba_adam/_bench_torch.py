"""``numba-adam bench --torch``: ``numba_adam.torch.Adam`` on torch tensors against
torch's fused CPU Adam and DeepSpeed's ``DeepSpeedCPUAdam``.

Each implementation steps the same model (float32 ``torch.nn.Parameter`` tensors with
gradients) in its own bench worker process, with its own default threads:

- ``numba_adam.torch``: gradients in the flat storage, as after
  ``zero_grad(set_to_none=False)`` (the step reads them in place);
- ``numba_adam.torch, fresh grads``: gradients as separate tensors, as autograd leaves
  them after ``zero_grad()``; each step gathers them (one copy per group);
- ``numba_adam.torch, 16-bit state``: in-place gradients, bfloat16 moments;
- ``numba_adam`` on a ``ParamBuffer`` (NumPy, no torch): the engine alone, so the
  front-end's own cost shows;
- ``torch.optim.Adam fused``, and ``DeepSpeedCPUAdam`` (``adamw_mode=False``: the same
  update) where deepspeed is installed and its C++ extension builds.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Any, Callable

from . import _bench_tables

OURS = "numba_adam.torch"
OURS_FRESH = "numba_adam.torch, fresh grads"
OURS_16 = "numba_adam.torch, 16-bit state"
ENGINE = "numba_adam"        # the bench's own ParamBuffer implementation
TORCH_FUSED = "torch.optim.Adam fused"
DEEPSPEED = "DeepSpeedCPUAdam"
CASE_PREFIX = "torch: "


def _params(shapes, rng):
    import torch
    params = [torch.nn.Parameter(torch.tensor(rng.standard_normal(s), dtype=torch.float32))
              for s in shapes]
    grads = [torch.tensor(rng.standard_normal(s) * 1e-3, dtype=torch.float32) for s in shapes]
    return params, grads


def _ours(in_place: bool, state_bits: int = 32):
    def make(shapes, dtype, amsgrad, rng):
        import numba_adam.torch
        params, grads = _params(shapes, rng)
        opt = numba_adam.torch.Adam(params, lr=1e-6, amsgrad=amsgrad, state_bits=state_bits)
        for p, g in zip(params, grads):
            p.grad = g
        if in_place:
            opt.step()                           # gathers once; then the grads are flat slices
            opt.zero_grad(set_to_none=False)
            for p, g in zip(params, grads):
                p.grad.copy_(g)
        return opt.step
    return make


def _torch_fused(shapes, dtype, amsgrad, rng):
    import torch
    params, grads = _params(shapes, rng)
    for p, g in zip(params, grads):
        p.grad = g
    return torch.optim.Adam(params, lr=1e-6, amsgrad=amsgrad, fused=True).step


def _deepspeed(shapes, dtype, amsgrad, rng):
    from deepspeed.ops.adam import DeepSpeedCPUAdam
    params, grads = _params(shapes, rng)
    for p, g in zip(params, grads):
        p.grad = g
    return DeepSpeedCPUAdam(params, lr=1e-6, adamw_mode=False, weight_decay=0.0).step


TORCH_IMPLEMENTATIONS: dict[str, Callable] = {
    OURS: _ours(True), OURS_FRESH: _ours(False), OURS_16: _ours(True, 16),
    TORCH_FUSED: _torch_fused, DEEPSPEED: _deepspeed,
}

# Builds (or loads the built) DeepSpeed CPU Adam extension once, before any timing.
_DEEPSPEED_PROBE = ("import torch\nfrom deepspeed.ops.adam import DeepSpeedCPUAdam\n"
                    "DeepSpeedCPUAdam([torch.nn.Parameter(torch.zeros(4))])\n")


def deepspeed_status() -> str | None:
    """None when DeepSpeedCPUAdam can run here, else why not (it is then left out)."""
    if importlib.util.find_spec("deepspeed") is None:
        return "deepspeed is not installed (pip install deepspeed ninja; it needs g++)"
    proc = subprocess.run([sys.executable, "-c", _DEEPSPEED_PROBE], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        return f"DeepSpeedCPUAdam did not build or load: {last}"
    return None


def implementations(amsgrad: bool, deepspeed: bool) -> list[str]:
    """The implementations a torch case times (DeepSpeedCPUAdam has no AMSGrad)."""
    names = [OURS, OURS_FRESH, OURS_16, ENGINE, TORCH_FUSED]
    return names + [DEEPSPEED] if deepspeed and not amsgrad else names


def summarise_torch(rows: dict[str, Any], case: str, ratio: Callable,
                    bytes_per_param: Callable[[str], float]) -> list[dict[str, Any]]:
    """Per implementation: time, GB/s (the bytes its state format moves), and how many
    times faster ``numba_adam.torch`` (in-place gradients) is, per round, with 32-bit
    state and with 16-bit state (the latter against the other libraries only)."""
    ours, ours16 = rows[OURS], rows.get(OURS_16)
    return [dict(case=case[len(CASE_PREFIX):], implementation=name, params=r.params,
                 tensors=r.tensors, median_seconds=r.median, seconds=r.seconds,
                 gb_per_s=r.params * bytes_per_param(name) / r.median / 1e9,
                 numba_adam_torch_speedup=ratio(r, ours) if r is not ours else None,
                 numba_adam_torch_16_bit_speedup=ratio(r, ours16)
                 if ours16 is not None and name in (TORCH_FUSED, DEEPSPEED) else None)
            for name, r in rows.items()]


def format_torch(rows: list[dict[str, Any]], spread: Callable, skipped: str | None
                 ) -> list[str]:
    width = max(len(r["implementation"]) for r in rows)
    lines = ["", "numba_adam.torch against torch and DeepSpeed (fp32 parameters):",
             _bench_tables.header(width)
             + f"{'numba_adam.torch is':>20} {'with 16-bit state':>20}"]

    def cells(row: dict[str, Any]) -> str:
        faster, faster16 = (spread(row[key]) if row[key] else "" for key in (
            "numba_adam_torch_speedup", "numba_adam_torch_16_bit_speedup"))
        return f"{faster:>20} {faster16:>20}"

    lines += [line.rstrip() for line in _bench_tables.case_lines(rows, width, cells)]
    lines += ["  (how many times faster numba_adam.torch, gradients in place, is than the "
              "row: median [min-max] over rounds;",
              "   with 16-bit state: how many times faster its 16-bit row is than torch's "
              "and DeepSpeed's)"]
    if skipped:
        lines.append(f"  {DEEPSPEED} left out: {skipped}")
    return lines
