"""Array backends: the few array operations the loss wrappers need, for each
array library lossx accepts. NumPy arrays run on the CPU; GPU arrays (CuPy,
PyTorch, JAX, Numba) are handled by lossx._gpu, which implements the same
interface for device memory so that outputs come from the caller's library.

Interface (duck-typed):
  device, stream                      -> ints passed to _core
  asarray(x, fn=None, argname=None)   -> array of this backend (no copy when possible); host data
                                         is uploaded, a GPU array on another device (or of another
                                         GPU library, or given with NumPy input) raises
  dtype_code(a, fn, argname)          -> lossx dtype code (TypeError otherwise)
  is_int(a)                           -> integer dtype?
  is_bool(a)                          -> bool dtype?
  labels(a)                           -> contiguous int64 copy/view
  contiguous(a, code=None)            -> C-contiguous (cast to dtype code when given)
  move_last(a, axis), move_back(a, axis), permute(a, axes) (a transposed view)
  empty(shape, code_or_acc)           -> new array of the caller's library
  full(shape, value, code)            -> filled array
  sum_axes(a, axes)                   -> float64 sum over the (non-empty) axes
  expm1(a)                            -> exp(a) - 1 element-wise, in the caller's library (small per-row
                                         arithmetic between two kernel calls, e.g. poly1_cross_entropy)
  to_host(a)                          -> NumPy copy (error messages only: a device-to-host read)
  arg(a)                              -> what _core takes for a (array or pointer)
  scalar(a)                           -> reduced loss as the caller expects
  broadcast_to(a, shape), astype(a, dtype)
"""
from __future__ import annotations

import numpy as np

from . import _array as A
from . import _core


class NumpyBackend:
    device = A.CPU
    stream = 0

    @staticmethod
    def asarray(x, fn=None, argname=None):
        if isinstance(x, np.ndarray):
            return x
        if A.is_gpu(x):
            raise ValueError(f"{fn or 'lossx'}: {argname or 'an argument'} is a GPU array but the input is a "
                             "NumPy array (CPU); pass all arrays on one device")
        return np.asarray(x)

    @staticmethod
    def broadcast_to(a, shape):
        return np.broadcast_to(a, shape)

    @staticmethod
    def astype(a, dtype):
        return a.astype(dtype)

    @staticmethod
    def dtype_code(a, fn, argname):
        return A.float_code(fn, argname, a.dtype)

    @staticmethod
    def is_int(a):
        return a.dtype.kind in "iu"

    @staticmethod
    def is_bool(a):
        return a.dtype.kind == "b"

    @staticmethod
    def is_float(a):
        return A.is_float_dtype(a.dtype)

    @staticmethod
    def labels(a):
        if a.dtype == np.uint64:
            A.check_uint64_labels(a)
        return np.ascontiguousarray(a, dtype=np.int64)

    @staticmethod
    def contiguous(a, code=None):
        if code is None:
            return np.ascontiguousarray(a)
        return np.ascontiguousarray(a, dtype=_np_dtype(code))

    @staticmethod
    def move_last(a, axis):
        # np.moveaxis costs microseconds even when there is nothing to move.
        return a if axis in (-1, a.ndim - 1) else np.moveaxis(a, axis, -1)

    @staticmethod
    def move_back(a, axis):
        return a if axis in (-1, a.ndim - 1) else np.moveaxis(a, -1, axis)

    @staticmethod
    def permute(a, axes):
        return np.transpose(a, axes)

    @staticmethod
    def empty(shape, code):
        dt = _np_dtype(code)
        # Large outputs come from lossx's buffer cache (csrc/buffer_cache.cc):
        # already-mapped memory instead of page-faulting a fresh array each call.
        if _prod(shape) * dt.itemsize >= _CACHE_MIN_BYTES:
            return _core.cached_empty(tuple(shape), dt)
        return np.empty(shape, dtype=dt)

    @staticmethod
    def full(shape, value, code):
        return np.full(shape, value, dtype=_np_dtype(code))

    @staticmethod
    def sum_axes(a, axes):
        return np.asarray(a.sum(axis=tuple(axes), dtype=np.float64))

    @staticmethod
    def expm1(a):
        return np.expm1(a)

    @staticmethod
    def to_host(a):
        return np.asarray(a)

    @staticmethod
    def arg(a):
        return a

    @staticmethod
    def scalar(a):
        return a[0]

    @staticmethod
    def writable(a):
        return a.flags.writeable and a.flags.c_contiguous


_CACHE_MIN_BYTES = 1 << 22


def _prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


# dtype code -> NumPy dtype; "acc:<code>" style lookups use ACC_* codes below.
ACC_OFFSET = 100  # code + ACC_OFFSET means "the accumulation dtype of code"


def _np_dtype(code):
    if code >= ACC_OFFSET:
        return A.acc_dtype(code - ACC_OFFSET)
    return _NP_DTYPES[code]


_NP_DTYPES = {A.F32: np.dtype(np.float32), A.F64: np.dtype(np.float64), A.F16: np.dtype(np.float16)}
if A._ml is not None:
    _NP_DTYPES[A.BF16] = np.dtype(A._ml.bfloat16)

NUMPY = NumpyBackend()


def backend_for(x, fn):
    """The backend for the first array argument of a loss call."""
    if isinstance(x, np.ndarray):
        return NUMPY
    if A.is_gpu(x):
        A.require_cuda(fn)
        from . import _gpu  # imported lazily: needs a GPU array library

        return _gpu.backend_for(x, fn)
    return NUMPY
