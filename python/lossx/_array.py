"""Array plumbing shared by every loss: dtype codes, validation helpers,
device detection. Kept small and branch-light: it runs on every call."""
from __future__ import annotations

import numpy as np

from . import _core

# Storage dtypes the kernels accept -> code passed to the C++ layer.
F32, F64, F16, BF16 = 0, 1, 2, 3
_FLOAT_CODES = {np.dtype(np.float32): F32, np.dtype(np.float64): F64, np.dtype(np.float16): F16}
try:  # bfloat16 comes from ml_dtypes when installed
    import ml_dtypes as _ml

    _FLOAT_CODES[np.dtype(_ml.bfloat16)] = BF16
except ImportError:  # pragma: no cover - ml_dtypes is a test dependency
    _ml = None

REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}
_ACC = {F32: np.dtype(np.float32), F64: np.dtype(np.float64), F16: np.dtype(np.float32), BF16: np.dtype(np.float32)}

CPU, CUDA = 0, 1


def float_code(name: str, arg: str, dt: np.dtype) -> int:
    code = _FLOAT_CODES.get(dt)
    if code is None:
        raise TypeError(
            f"{name}: {arg} must be float32, float64, float16 or bfloat16, got {dt}"
        )
    return code


def acc_dtype(code: int) -> np.dtype:
    """float64 for float64 inputs, float32 for every other dtype."""
    return _ACC[code]


def is_float_dtype(dt: np.dtype) -> bool:
    return dt in _FLOAT_CODES


def reduction_code(name: str, reduction: str, allowed=REDUCTIONS) -> int:
    code = allowed.get(reduction) if isinstance(reduction, str) else None
    if code is None:
        raise ValueError(
            f"{name}: reduction must be one of {sorted(allowed)}, got {reduction!r}"
        )
    return code


def check_uint64_labels(a: np.ndarray) -> None:
    """uint64 labels past 2^63 - 1 wrap to negative int64 values, which would
    read as ignore_index (-100) or as the end of a multilabel list: name the
    first one instead."""
    flat = a.reshape(-1)
    big = np.flatnonzero(flat > np.iinfo(np.int64).max)
    if big.size:
        raise IndexError(f"label {int(flat[big[0]])} at position {int(big[0])} is out of range "
                         "(uint64 labels must be below 2^63)")


def mark_written(x) -> None:
    """Tell PyTorch that lossx wrote into tensor `x` through its raw pointer
    (inplace_grad): autograd then refuses a backward that saved the old values,
    as it does after torch's own in-place operations."""
    if type(x).__module__.split(".")[0] == "torch":
        import torch

        torch.autograd.graph.increment_version(x)


def is_gpu(x) -> bool:
    """True for arrays living on a CUDA device (CuPy, PyTorch, Numba, JAX)."""
    if isinstance(x, np.ndarray):
        return False
    if type(x).__module__.split(".")[0] == "torch":
        # (torch's __cuda_array_interface__ raises for tensors that require grad)
        return bool(getattr(x, "is_cuda", False))
    try:
        if hasattr(x, "__cuda_array_interface__"):
            return True
    except Exception:  # noqa: BLE001 - e.g. JAX raises it for bfloat16 GPU arrays: ask DLPack below
        pass
    dev = getattr(x, "__dlpack_device__", None)
    if dev is not None:
        try:
            return dev()[0] in (2, 13)  # kDLCUDA, kDLCUDAManaged
        except Exception:  # noqa: BLE001 - any failure means "not a GPU array"
            return False
    return False


def require_cuda(name: str):
    if not _core.cuda_compiled():
        raise RuntimeError(
            f"{name}: got a GPU array, but this lossx was built without CUDA "
            "(nvcc was not found at build time); rebuild with LOSSX_CUDA=ON"
        )
    if not _core.cuda_available():
        raise RuntimeError(f"{name}: got a GPU array, but no CUDA device/driver is usable")


def shape_error(name: str, what: str, a_name: str, a_shape, b_name: str, b_shape) -> ValueError:
    return ValueError(
        f"{name}: {what}: {a_name} has shape {tuple(a_shape)} but {b_name} has shape {tuple(b_shape)}"
    )
