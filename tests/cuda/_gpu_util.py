"""Shared by the GPU tests (tests/cuda/test_*_cuda.py): which GPU array
libraries are usable, conversions between NumPy and them, the output-namespace
check and the `lib` fixture. Importing this module never skips anything; each
test module skips itself first where lossx has no CUDA or no GPU is usable."""
import numpy as np
import pytest

from _util import BF16

LIBS = []
try:
    import torch

    if torch.cuda.is_available():
        LIBS.append("torch")
except ImportError:  # pragma: no cover
    torch = None
try:
    import cupy as cp

    if cp.cuda.runtime.getDeviceCount() > 0:
        LIBS.append("cupy")
except Exception:  # noqa: BLE001 - no cupy, or cupy without a usable driver
    cp = None


def to_dev(lib, a):
    a = np.asarray(a)
    if lib == "torch":
        if BF16 is not None and a.dtype == BF16:
            return torch.from_numpy(a.astype(np.float32)).to("cuda").to(torch.bfloat16)
        return torch.from_numpy(np.array(a, order="C")).to("cuda")  # (ascontiguousarray: 0-d becomes 1-d)
    if BF16 is not None and a.dtype == BF16:
        try:
            return cp.asarray(a)
        except Exception as e:  # noqa: BLE001
            pytest.skip(f"this CuPy has no bfloat16: {e}")
    return cp.asarray(a)


def to_np(a):
    if torch is not None and isinstance(a, torch.Tensor):
        if a.dtype == torch.bfloat16:
            return a.float().cpu().numpy()
        return a.detach().cpu().numpy()
    return cp.asnumpy(a)


def same_ns(lib, a):
    if lib == "torch":
        assert isinstance(a, torch.Tensor) and a.is_cuda, type(a)
    else:
        assert isinstance(a, cp.ndarray), type(a)


@pytest.fixture(params=LIBS)
def lib(request):
    return request.param
