"""GPU array backends (see the interface at the top of lossx/_backend.py).

CuPy arrays and PyTorch CUDA tensors run on their own device and on the
caller's current stream of that device; outputs are allocated by the caller's
library (CuPy in -> CuPy out, torch in -> torch out) and nothing is copied to
the host. The kernels receive raw device pointers (ints).

Numba device arrays and JAX arrays never get here: the public functions hand
them over as CuPy / PyTorch views of the same memory (lossx/_foreign.py).
"""
from __future__ import annotations

import numpy as np

from . import _array as A
from ._backend import ACC_OFFSET


def _np_dtype(code):
    if code >= ACC_OFFSET:
        return A.acc_dtype(code - ACC_OFFSET)
    if code == A.BF16:
        if A._ml is None:
            raise TypeError("bfloat16 CuPy arrays need the ml_dtypes package")
        return np.dtype(A._ml.bfloat16)
    return {A.F32: np.dtype(np.float32), A.F64: np.dtype(np.float64), A.F16: np.dtype(np.float16)}[code]


class CupyBackend:
    device = A.CUDA

    def __init__(self, x):
        import cupy as cp

        self._cp = cp
        self._dev = cp.cuda.Device(x.device.id)
        with self._dev:
            self.stream = cp.cuda.get_current_stream().ptr

    def asarray(self, x, fn=None, argname=None):
        cp = self._cp
        if isinstance(x, cp.ndarray):
            if x.device.id != self._dev.id:
                raise _device_error(fn, argname, f"cuda:{x.device.id}", f"cuda:{self._dev.id}")
            return x
        if A.is_gpu(x):
            raise _library_error(fn, argname, x, "a CuPy array")
        with self._dev:
            return cp.asarray(x)  # host data: uploaded once

    def broadcast_to(self, a, shape):
        return self._cp.broadcast_to(a, shape)

    @staticmethod
    def astype(a, dtype):
        return a.astype(dtype)

    @staticmethod
    def dtype_code(a, fn, argname):
        return A.float_code(fn, argname, np.dtype(a.dtype))

    @staticmethod
    def is_int(a):
        return np.dtype(a.dtype).kind in "iu"

    @staticmethod
    def is_bool(a):
        return np.dtype(a.dtype).kind == "b"

    @staticmethod
    def is_float(a):
        return A.is_float_dtype(np.dtype(a.dtype))

    def _nonnull(self, a):
        # Empty arrays have a null data pointer, which the kernels' argument
        # checks read as "not given": back them by a 1-element buffer.
        if a.size == 0:
            with self._dev:
                return self._cp.empty(1, dtype=a.dtype)[:0].reshape(a.shape)
        return a

    def labels(self, a):
        with self._dev:
            out = self._nonnull(self._cp.ascontiguousarray(a, dtype=np.int64))
            if a.dtype == np.uint64 and bool((out < 0).any()):  # wrapped past 2^63: one read, uint64 only
                A.check_uint64_labels(self._cp.asnumpy(a))
            return out

    def contiguous(self, a, code=None):
        with self._dev:
            if code is None:
                return self._nonnull(self._cp.ascontiguousarray(a))
            return self._nonnull(self._cp.ascontiguousarray(a, dtype=_np_dtype(code)))

    def move_last(self, a, axis):
        return self._cp.moveaxis(a, axis, -1)

    def move_back(self, a, axis):
        return self._cp.moveaxis(a, -1, axis)

    @staticmethod
    def permute(a, axes):
        return a.transpose(axes)

    def empty(self, shape, code):
        with self._dev:
            return self._nonnull(self._cp.empty(shape, dtype=_np_dtype(code)))

    def full(self, shape, value, code):
        with self._dev:
            return self._cp.full(shape, value, dtype=_np_dtype(code))

    def sum_axes(self, a, axes):
        return a.sum(axis=tuple(axes), dtype=self._cp.float64)

    def expm1(self, a):
        with self._dev:
            return self._cp.expm1(a)

    def to_host(self, a):
        return self._cp.asnumpy(a)

    @staticmethod
    def arg(a):
        return None if a is None else int(a.data.ptr)

    @staticmethod
    def scalar(a):
        return a.reshape(())  # 0-d device array: no host sync

    @staticmethod
    def writable(a):
        return bool(a.flags.c_contiguous)


class TorchBackend:
    device = A.CUDA

    def __init__(self, x):
        import torch

        self._torch = torch
        self._dev = x.device
        self.stream = int(torch.cuda.current_stream(x.device).cuda_stream)
        self._dtypes = {
            A.F32: torch.float32, A.F64: torch.float64, A.F16: torch.float16, A.BF16: torch.bfloat16,
        }
        self._codes = {v: k for k, v in self._dtypes.items()}
        self._ints = {torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64}
        # The wider unsigned dtypes (torch >= 2.3) convert to int64 like the rest.
        self._ints |= {getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n)}

    def _dtype(self, code):
        if code >= ACC_OFFSET:
            return self._torch.float64 if code - ACC_OFFSET == A.F64 else self._torch.float32
        return self._dtypes[code]

    def asarray(self, x, fn=None, argname=None):
        torch = self._torch
        if isinstance(x, torch.Tensor):
            if x.device == self._dev:
                return x
            if x.device.type != "cpu":
                raise _device_error(fn, argname, str(x.device), str(self._dev))
            return x.to(self._dev)  # host tensor: uploaded once
        if A.is_gpu(x):
            raise _library_error(fn, argname, x, "a PyTorch CUDA tensor")
        return torch.as_tensor(np.asarray(x), device=self._dev)

    def broadcast_to(self, a, shape):
        return self._torch.broadcast_to(a, tuple(shape))

    @staticmethod
    def astype(a, dtype):
        return a.to(dtype)

    def dtype_code(self, a, fn, argname):
        code = self._codes.get(a.dtype)
        if code is None:
            raise TypeError(f"{fn}: {argname} must be float32, float64, float16 or bfloat16, got {a.dtype}")
        return code

    def is_int(self, a):
        return a.dtype in self._ints

    def is_bool(self, a):
        return a.dtype == self._torch.bool

    def is_float(self, a):
        return a.dtype in self._codes

    def _nonnull(self, a):
        # Empty tensors have data_ptr() == 0, which the kernels' argument
        # checks read as "not given": back them by a 1-element buffer.
        if a.numel() == 0:
            return self._torch.empty(1, dtype=a.dtype, device=self._dev)[:0].reshape(a.shape)
        return a

    def labels(self, a):
        out = self._nonnull(a.to(self._torch.int64).contiguous())
        if a.dtype == getattr(self._torch, "uint64", None) and bool((out < 0).any()):  # wrapped past 2^63
            A.check_uint64_labels(out.cpu().numpy().view(np.uint64))
        return out

    def contiguous(self, a, code=None):
        if code is not None:
            a = a.to(self._dtype(code))
        return self._nonnull(a.contiguous())

    def move_last(self, a, axis):
        return self._torch.movedim(a, axis, -1)

    def move_back(self, a, axis):
        return self._torch.movedim(a, -1, axis)

    @staticmethod
    def permute(a, axes):
        return a.permute(*axes)

    def empty(self, shape, code):
        return self._nonnull(self._torch.empty(shape, dtype=self._dtype(code), device=self._dev))

    def full(self, shape, value, code):
        return self._torch.full(tuple(shape), value, dtype=self._dtype(code), device=self._dev)

    def sum_axes(self, a, axes):
        return a.sum(dim=tuple(axes), dtype=self._torch.float64)  # (dim=() would sum everything)

    def expm1(self, a):
        return self._torch.expm1(a)

    def to_host(self, a):
        a = a.detach()
        return (a.float() if a.dtype == self._torch.bfloat16 else a).cpu().numpy()

    def arg(self, a):
        if a is None:
            return None
        if a.numel() == 0:
            # torch reports data_ptr() == 0 for empty tensors, which the
            # kernels' argument checks read as "not given"; nothing is read.
            if not hasattr(self, "_dummy"):
                self._dummy = self._torch.empty(1, device=self._dev)
            return int(self._dummy.data_ptr())
        return int(a.data_ptr())

    @staticmethod
    def scalar(a):
        return a.reshape(())  # 0-d CUDA tensor: no host sync

    @staticmethod
    def writable(a):
        return a.is_contiguous()


def _device_error(fn, argname, got, want):
    return ValueError(f"{fn or 'lossx'}: {argname or 'an argument'} is on {got} but the input is on {want}; "
                      "pass all arrays on one device")


def _library_error(fn, argname, x, want):
    return TypeError(f"{fn or 'lossx'}: {argname or 'an argument'} is a GPU array of type "
                     f"{type(x).__module__}.{type(x).__name__} but the input is {want}; pass arrays of one "
                     "library (cupy.asarray / torch.as_tensor convert without a copy)")


def backend_for(x, fn):
    """The backend for a GPU array `x` (CuPy or a PyTorch CUDA tensor)."""
    mod = type(x).__module__.split(".")[0]
    if mod == "torch":
        return TorchBackend(x)
    if mod == "cupy":
        return CupyBackend(x)
    if mod in ("jax", "jaxlib", "numba"):
        raise TypeError(f"{fn}: {mod} arrays are taken by the public functions (lossx.<loss>), "
                        "which convert them; call those")
    raise TypeError(
        f"{fn}: GPU arrays of type {type(x).__module__}.{type(x).__name__} are not supported; "
        "pass a CuPy, Numba or JAX array or a PyTorch CUDA tensor (e.g. cupy.asarray(x), zero-copy)"
    )
