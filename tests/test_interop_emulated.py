"""Numba and JAX GPU arrays (lossx/_foreign.py) without a GPU.

Stand-ins: FakeNumba exposes a __cuda_array_interface__ (with a CAI v3
stream) over a PyTorch CPU tensor and FakeJax a DLPack-style array; the
carrier library is replaced by one that hands back those CPU tensors, which
test_gpu_wrappers_emulated's fake_gpu fixture sends down the GPU code path to
the CPU kernels. This checks what is lossx's own: which arguments are
converted, on which stream the call runs, that array outputs come back as the
caller's type (tuples included) and the refusals. tests/cuda/test_interop_cuda.py
runs the real libraries on a GPU.
"""
import contextlib

import numpy as np
import pytest
import torch

import lossx
from lossx import _foreign

from test_gpu_wrappers_emulated import fake_gpu  # noqa: F401  (fixture)


class FakeNumba:
    def __init__(self, t, stream=None):
        self.t, self.stream = t, stream

    @property
    def __cuda_array_interface__(self):
        return {"shape": tuple(self.t.shape), "typestr": self.t.numpy().dtype.str, "strides": None,
                "data": (self.t.data_ptr(), False), "version": 3, "stream": self.stream}


FakeNumba.__module__ = "numba.cuda.cudadrv.devicearray"


class FakeJax:
    def __init__(self, t):
        self.t = t


FakeJax.__module__ = "jaxlib.xla_extension"


class FakeCarrier:
    name = "fake"

    def __init__(self):
        self.streams = []

    def from_cai(self, a):
        assert isinstance(a, FakeNumba)
        return a.t

    def from_dlpack(self, a):
        assert isinstance(a, FakeJax)
        return a.t

    def device_of(self, t):
        return 0

    def on_stream(self, stream, device):
        self.streams.append((stream, device))
        return contextlib.nullcontext()

    def is_array(self, t):
        return isinstance(t, torch.Tensor)


@pytest.fixture
def carrier(fake_gpu, monkeypatch):  # noqa: F811
    c = FakeCarrier()
    monkeypatch.setattr(_foreign, "_carrier", lambda fn: c)
    monkeypatch.setattr(_foreign, "_OUT", {"numba": FakeNumba, "jax": FakeJax})
    return c


def t(a):
    return torch.from_numpy(np.array(a, order="C"))


WRAP = {"numba": FakeNumba, "jax": FakeJax}


@pytest.mark.parametrize("kind", ["numba", "jax"])
def test_cross_entropy_outputs_of_the_callers_type(carrier, kind, rng):
    x = rng.standard_normal((7, 11)).astype(np.float32)
    y = rng.integers(0, 11, 7)
    y[2] = -100
    W = WRAP[kind]
    cl, clse, cg = lossx.cross_entropy(x, y, label_smoothing=0.1, return_lse=True, return_grad=True)
    gl, glse, gg = lossx.cross_entropy(W(t(x)), W(t(y)), label_smoothing=0.1, return_lse=True, return_grad=True)
    for a, c in ((gl, cl), (glse, clse), (gg, cg)):
        assert isinstance(a, W)
        np.testing.assert_array_equal(a.t.numpy(), np.asarray(c))
    assert carrier.streams == []  # no producer stream given: the carrier's current one


def test_numba_runs_on_the_producers_stream(carrier, rng):
    x = rng.standard_normal((5, 9)).astype(np.float32)
    y = rng.integers(0, 9, 5)
    lossx.cross_entropy(FakeNumba(t(x), stream=7), FakeNumba(t(y), stream=7))
    assert carrier.streams == [(7, 0)]
    lossx.cross_entropy(FakeNumba(t(x), stream=1), FakeNumba(t(y), stream=1))  # CAI's legacy default stream
    assert carrier.streams[-1] == (0, 0)


def test_keyword_only_and_keras_functions(carrier, rng):
    x = rng.standard_normal((6, 4)).astype(np.float32)
    lab = rng.integers(0, 4, 6)
    c = lossx.tf.sparse_softmax_cross_entropy_with_logits(labels=lab, logits=x)
    g = lossx.tf.sparse_softmax_cross_entropy_with_logits(labels=FakeJax(t(lab)), logits=FakeJax(t(x)))
    assert isinstance(g, FakeJax)
    np.testing.assert_array_equal(g.t.numpy(), c)
    p = rng.uniform(0.05, 0.95, (6, 4)).astype(np.float32)
    tt = rng.random((6, 4)).astype(np.float32)
    c, cg = lossx.keras.binary_crossentropy(tt, p, return_grad=True)
    g, gg = lossx.keras.binary_crossentropy(FakeNumba(t(tt)), FakeNumba(t(p)), return_grad=True)
    assert isinstance(g, FakeNumba) and isinstance(gg, FakeNumba)
    np.testing.assert_array_equal(gg.t.numpy(), cg)
    # A NumPy y_true next to a Numba y_pred: the call still takes the device path.
    g = lossx.keras.binary_crossentropy(tt, FakeNumba(t(p)))
    np.testing.assert_array_equal(g.t.numpy(), np.asarray(lossx.keras.binary_crossentropy(tt, p)))


def test_every_public_loss_is_wrapped():
    for name in lossx.CATALOG:
        assert getattr(getattr(lossx, name), "__wrapped_by_lossx_interop__", False), name
    for mod in (lossx.keras, lossx.tf):
        for name in mod.__all__:
            assert getattr(getattr(mod, name), "__wrapped_by_lossx_interop__", False), name
    assert lossx.softmax.cross_entropy is lossx.cross_entropy  # the defining module's name too


def test_refusals(carrier, rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    y = rng.integers(0, 5, 3)
    with pytest.raises(ValueError, match="inplace_grad=True cannot write into a JAX array"):
        lossx.cross_entropy(FakeJax(t(x)), FakeJax(t(y)), return_grad=True, inplace_grad=True)
    with pytest.raises(TypeError, match="one library, got both Numba and JAX"):
        lossx.cross_entropy(FakeNumba(t(x)), FakeJax(t(y)))
    # Numba arrays may be written in place: the gradient is the input's memory.
    xn = t(x.copy())
    _, g = lossx.cross_entropy(FakeNumba(xn), FakeNumba(t(y)), return_grad=True, inplace_grad=True)
    assert g.t.data_ptr() == xn.data_ptr()


def test_no_carrier_library_is_a_clear_error(monkeypatch):
    class Broken:
        name = "none"

        def __init__(self):
            raise ImportError("not installed")

    monkeypatch.setattr(_foreign, "_carrier_cache", [])
    monkeypatch.setattr(_foreign, "_Cupy", Broken)
    monkeypatch.setattr(_foreign, "_Torch", Broken)
    x = FakeNumba(t(np.ones((2, 3), np.float32)))
    with pytest.raises(TypeError, match="cross_entropy: Numba and JAX GPU arrays need CuPy or a CUDA build of "
                                        "PyTorch"):
        lossx.cross_entropy(x, np.zeros(2, np.int64))


def test_cai_view_drops_the_stream_and_keeps_the_owner():
    owner = FakeNumba(t(np.ones(3, np.float32)), stream=5)
    v = _foreign._CaiView(owner.__cuda_array_interface__, owner)
    assert "stream" not in v.__cuda_array_interface__ and v.__cuda_array_interface__["version"] == 2
    assert v._owner is owner
    assert v.__cuda_array_interface__["data"][0] == owner.t.data_ptr()


class _Device:
    entered = []

    def __init__(self, i):
        self.id = i

    def __enter__(self):
        _Device.entered.append(self.id)

    def __exit__(self, *exc):
        _Device.entered.append(-1)


class ndarray(np.ndarray):  # noqa: N801 - stands for cupy.ndarray (the wrapper keys on module and name)
    device = _Device(3)


ndarray.__module__ = "cupy._core.core"


def test_cupy_calls_run_under_the_inputs_device(rng):
    # A CuPy stand-in (a NumPy subclass, so the CPU path computes it): the whole
    # call runs inside `with x.device`, where CuPy's allocations and launches go.
    x = rng.standard_normal((4, 6)).view(ndarray)
    y = rng.integers(0, 6, 4)
    _Device.entered.clear()
    out = lossx.cross_entropy(x, y)
    assert _Device.entered == [3, -1]
    assert float(out) == float(lossx.cross_entropy(np.asarray(x).view(np.ndarray), y))
