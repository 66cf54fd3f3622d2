"""GPU step time against torch's fused CUDA Adam and a device-to-device copy of the
same bytes.  Without a usable GPU, setup raises NotImplementedError (asv skips)."""

import numpy as np

import numba_adam


def _require_gpu():
    try:
        from numba import cuda
        if not cuda.is_available():
            raise NotImplementedError("no CUDA GPU")
    except ImportError:
        raise NotImplementedError("numba-cuda is not installed") from None
    return cuda


class CudaStep:
    params = ([1_000_000, 10_000_000, 100_000_000], ["adam", "amsgrad"])
    param_names = ["size", "option"]
    timeout = 300

    def setup(self, size, option):
        cuda = _require_gpu()
        self.cuda = cuda
        rng = np.random.default_rng(0)
        buf = numba_adam.ParamBuffer({"w": rng.standard_normal(size)}, device="cuda")
        buf.grad.copy_to_device(rng.standard_normal(size).astype(np.float32))
        self.opt = numba_adam.Adam(buf, amsgrad=option == "amsgrad")
        self.opt.step()
        cuda.synchronize()

    def time_step(self, size, option):
        self.opt.step()
        self.cuda.synchronize()


class CudaAgainstTorch:
    """numba_adam's step time over torch fused's and over a same-bytes copy (lower is better)."""

    params = ([100_000_000],)
    param_names = ["size"]
    timeout = 600

    def setup(self, size):
        cuda = _require_gpu()
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed") from None
        if not torch.cuda.is_available():
            raise NotImplementedError("torch has no CUDA")
        self.torch = torch
        self.p = torch.randn(size, device="cuda")
        self.p.grad = torch.randn(size, device="cuda")
        self.torch_opt = torch.optim.Adam([self.p], fused=True)
        self.ours = numba_adam.Adam([self.p.detach()])
        self.g = self.p.grad
        self.src = torch.empty(size * 7 // 2, device="cuda")   # 28 bytes/param moved
        self.dst = torch.empty_like(self.src)
        self.torch_opt.step()
        self.ours.step([self.g])
        cuda.synchronize()

    def _time(self, fn, repeats=20):
        start = self.torch.cuda.Event(enable_timing=True)
        end = self.torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / repeats

    def track_time_over_torch_fused(self, size):
        return self._time(lambda: self.ours.step([self.g])) / self._time(self.torch_opt.step)

    def track_time_over_copy_roofline(self, size):
        return self._time(lambda: self.ours.step([self.g])) / self._time(
            lambda: self.dst.copy_(self.src))

    track_time_over_torch_fused.unit = "ratio"
    track_time_over_copy_roofline.unit = "ratio"
