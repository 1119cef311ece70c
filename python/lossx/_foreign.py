"""Numba and JAX GPU arrays, used in place through a carrier library.

lossx's GPU backends (_gpu.py) speak CuPy and PyTorch: they allocate outputs,
cast and copy with the caller's library. A Numba device array or a JAX array
has no such operations, so a call holding one runs on views of its memory in a
carrier library (CuPy when installed, else PyTorch), and its array outputs come
back as the caller's type: Numba in -> Numba out, JAX in -> JAX out. Nothing is
copied to the host, and no copy is made on the device for the inputs.

Streams: a Numba array's ``__cuda_array_interface__`` names the stream its data
is ready on (``"stream"``, CAI v3); the whole call runs on that stream, so no
synchronisation is needed and the outputs are ready on it too. Without a stream
(``None``: nothing to wait for) the carrier's current stream is used. JAX arrays
are imported with ``__dlpack__(stream=...)`` of the carrier's stream, which
orders the call after JAX's producer; the outputs go back through DLPack, which
orders JAX's consumers after the call.

JAX arrays are immutable: ``inplace_grad=True`` with a JAX input is refused.

The same wrapper runs a call with a CuPy array under that array's device
(``with x.device``): CuPy allocates and launches on the current device, which
need not be the input's on a multi-GPU machine.
"""
from __future__ import annotations

import contextlib
import functools
import sys


class _Kinds(dict):
    """type -> "numba", "jax" or None, filled on first sight: the check costs one
    dict lookup per argument on the common (NumPy, CuPy, torch) path."""

    def __missing__(self, t):
        mod = t.__module__.partition(".")[0]
        if mod == "cupy" and t.__name__ == "ndarray":
            k = "cupy"
        else:
            k = "numba" if mod == "numba" else "jax" if mod in ("jax", "jaxlib") else None
        self[t] = k
        return k


_TYPE_KIND = _Kinds()


def _kind(a):
    return _TYPE_KIND[type(a)]


class _CaiView:
    """A __cuda_array_interface__ without its stream (already waited for, by
    running on it) that keeps the producer's array alive."""

    def __init__(self, desc, owner):
        d = dict(desc)
        d.pop("stream", None)
        d["version"] = min(int(d.get("version", 2)), 2)
        self.__cuda_array_interface__ = d
        self._owner = owner


class _Cupy:
    name = "cupy"

    def __init__(self):
        import cupy

        self.cp = cupy

    def from_cai(self, a):
        return self.cp.asarray(_CaiView(a.__cuda_array_interface__, a))

    def from_dlpack(self, a):
        return self.cp.from_dlpack(a)

    def device_of(self, t):
        return t.device.id

    def on_stream(self, stream, device):
        cp = self.cp
        dev = cp.cuda.Device(device)
        s = cp.cuda.Stream.null if stream == 0 else cp.cuda.ExternalStream(stream, device)
        stack = contextlib.ExitStack()
        stack.enter_context(dev)
        stack.enter_context(s)
        return stack

    def is_array(self, t):
        return isinstance(t, self.cp.ndarray)


class _Torch:
    name = "torch"

    def __init__(self):
        import torch

        if not torch.cuda.is_available():
            raise ImportError("PyTorch has no usable CUDA")
        self.torch = torch

    def from_cai(self, a):
        # (no device=: torch places the view on the pointer's own device; naming
        # one would copy across devices)
        return self.torch.as_tensor(_CaiView(a.__cuda_array_interface__, a))

    def from_dlpack(self, a):
        return self.torch.from_dlpack(a)

    def device_of(self, t):
        return t.device.index

    def on_stream(self, stream, device):
        torch = self.torch
        dev = torch.device("cuda", device)
        s = torch.cuda.default_stream(dev) if stream == 0 else torch.cuda.ExternalStream(stream, device=dev)
        return torch.cuda.stream(s)

    def is_array(self, t):
        return isinstance(t, self.torch.Tensor)


_carrier_cache = []


def _carrier(fn):
    """CuPy when it is installed, else CUDA PyTorch; one of them is needed."""
    if not _carrier_cache:
        errors = []
        for cls in (_Cupy, _Torch):
            try:
                _carrier_cache.append(cls())
                break
            except Exception as e:  # noqa: BLE001 - any failure: try the next library
                errors.append(f"{cls.name}: {e}")
        else:
            raise TypeError(
                f"{fn}: Numba and JAX GPU arrays need CuPy or a CUDA build of PyTorch installed "
                f"(lossx allocates and casts through one of them); none is usable ({'; '.join(errors)})")
    return _carrier_cache[0]


def _to_numba(t):
    from numba import cuda

    return cuda.as_cuda_array(_CaiView(t.__cuda_array_interface__, t))


def _to_jax(t):
    import jax.dlpack

    return jax.dlpack.from_dlpack(t)


_OUT = {"numba": _to_numba, "jax": _to_jax}


def _convert_out(r, carrier, kind):
    if isinstance(r, tuple):
        return tuple(_convert_out(v, carrier, kind) for v in r)
    if carrier.is_array(r):
        return _OUT[kind](r)
    return r


def call(f, fn, kind, first, args, kw):
    """f(*args, **kw) with its Numba/JAX arrays as carrier views; a CuPy call
    under its first array's device (CuPy launches on the current device, which
    may be another GPU). `first`: the first array argument of that kind."""
    if kind == "cupy":
        with first.device:
            return f(*args, **kw)
    carrier = _carrier(fn)
    if kind == "jax" and kw.get("inplace_grad"):
        raise ValueError(f"{fn}: inplace_grad=True cannot write into a JAX array (JAX arrays are immutable); "
                         "drop inplace_grad, or pass a CuPy array or a PyTorch tensor")
    foreign = [a for a in (*args, *kw.values()) if _kind(a) in ("numba", "jax")]
    if any(_kind(a) != kind for a in foreign):
        raise TypeError(f"{fn}: pass arrays of one library, got both Numba and JAX arrays")
    to_view = carrier.from_cai if kind == "numba" else carrier.from_dlpack
    views = {id(a): to_view(a) for a in foreign}
    cargs = [views.get(id(a), a) for a in args]
    ckw = {k: views.get(id(v), v) for k, v in kw.items()}
    ctx = contextlib.nullcontext()
    stream = first.__cuda_array_interface__.get("stream") if kind == "numba" else None
    if stream is not None:
        # CAI v3: 1 is the legacy default stream, whose runtime handle is 0
        # (2, the per-thread default stream, is a valid handle as it is).
        ctx = carrier.on_stream(0 if stream == 1 else int(stream), carrier.device_of(views[id(first)]))
    with ctx:
        return _convert_out(f(*cargs, **ckw), carrier, kind)


def interop(f, fn):
    """f, taking Numba and JAX GPU arrays too (any positional or keyword array argument)."""
    kinds = _TYPE_KIND

    @functools.wraps(f)
    def wrapper(*args, **kw):
        for a in args:
            if kinds[type(a)]:
                return call(f, fn, kinds[type(a)], a, args, kw)
        if kw:
            for a in kw.values():
                if kinds[type(a)]:
                    return call(f, fn, kinds[type(a)], a, args, kw)
        return f(*args, **kw)

    wrapper.__wrapped_by_lossx_interop__ = True
    return wrapper


def install(module, names, prefix=""):
    """Wrap `names` of `module` (and the same function where it is defined)."""
    for name in names:
        f = getattr(module, name)
        if getattr(f, "__wrapped_by_lossx_interop__", False):
            continue
        w = interop(f, prefix + name)
        setattr(module, name, w)
        home = sys.modules.get(f.__module__)
        if home is not None and getattr(home, name, None) is f:
            setattr(home, name, w)
