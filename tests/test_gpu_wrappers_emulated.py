"""The GPU code path of the Python wrappers (pointwise, pairwise/embedding,
Keras row, tf softmax, CTC and margin families, poly1_cross_entropy), without a GPU:
PyTorch CPU tensors stand in for CUDA tensors
(lossx._gpu.TorchBackend handles them) and the kernel call is sent to the CPU
kernels with the same raw pointers.

This exercises what tests/cuda cannot check on a machine without a GPU: the
GPU backend's array handling in the wrappers (device/library checks, weight
broadcasting with the caller's library, dtype casts, grad_output arrays, empty
arrays, output namespaces and 0-d losses). The CUDA kernels themselves are
tested in tests/cuda; their formulas in test_pointwise_cuda_functors.py.
"""
import numpy as np
import pytest
import torch

import lossx
from lossx import _array, _core, _gpu, ctc, embedding, keras, margin, pointwise, softmax, tf

from test_embedding import _triplet_inputs
from _util import POINTWISE_OWN_SIGNATURE
from test_pointwise import CASES

pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")


class _Stream:
    cuda_stream = 0


class _CpuKernels:
    """_core, with the device code of pointwise/pairwise/margin/cross_entropy/keras_rows/ctc calls replaced by the CPU's."""

    device_calls = 0

    def __getattr__(self, name):
        return getattr(_core, name)

    @classmethod
    def _cpu(cls, device, stream):
        if device == _array.CUDA:
            assert stream == 0  # the stand-in stream
            cls.device_calls += 1
        return _array.CPU

    def pointwise(self, device, stream, *args):
        return _core.pointwise(self._cpu(device, stream), 0, *args)

    def pairwise(self, device, stream, *args):
        return _core.pairwise(self._cpu(device, stream), 0, *args)

    def keras_pointwise(self, device, stream, *args):
        return _core.keras_pointwise(self._cpu(device, stream), 0, *args)

    def sigmoid_cross_entropy(self, device, stream, *args):
        return _core.sigmoid_cross_entropy(self._cpu(device, stream), 0, *args)

    def margin(self, device, stream, *args):
        return _core.margin(self._cpu(device, stream), 0, *args)

    def cross_entropy(self, device, stream, *args):
        return _core.cross_entropy(self._cpu(device, stream), 0, *args)

    def keras_rows(self, device, stream, *args):
        return _core.keras_rows(self._cpu(device, stream), 0, *args)

    def ctc(self, device, stream, *args):
        return _core.ctc(self._cpu(device, stream), 0, *args)


@pytest.fixture
def fake_gpu(monkeypatch):
    real_is_gpu = _array.is_gpu
    monkeypatch.setattr(_array, "is_gpu", lambda x: isinstance(x, torch.Tensor) or real_is_gpu(x))
    monkeypatch.setattr(_array, "require_cuda", lambda fn: None)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _Stream())
    monkeypatch.setattr(pointwise, "_core", _CpuKernels())
    monkeypatch.setattr(embedding, "_core", _CpuKernels())
    monkeypatch.setattr(keras, "_core", _CpuKernels())
    monkeypatch.setattr(tf, "_core", _CpuKernels())
    monkeypatch.setattr(margin, "_core", _CpuKernels())
    monkeypatch.setattr(softmax, "_core", _CpuKernels())
    monkeypatch.setattr(ctc, "_core", _CpuKernels())


def t(a):
    return torch.from_numpy(np.array(a, order="C"))  # (ascontiguousarray would make 0-d arrays 1-d)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("case", list(CASES))
def test_pointwise_through_the_gpu_backend(fake_gpu, case, reduction, rng):
    name, make, opts, _ = CASES[case]
    fn = getattr(lossx, name)
    for shape in ((7,), (3, 5, 7)):
        x, y, extra = make(rng, shape)
        x, y = x.astype(np.float32), y.astype(np.float32)
        extra = {k: v.astype(np.float32) for k, v in extra.items()}
        go = rng.uniform(-1, 1, shape).astype(np.float32) if reduction == "none" else 0.5
        cl, (cgx, cgy) = fn(x, y, reduction=reduction, **extra, **opts, return_grad=True, grad_output=go)
        gl, (ggx, ggy) = fn(t(x), t(y), reduction=reduction, **{k: t(v) for k, v in extra.items()}, **opts,
                            return_grad=True, grad_output=t(go) if reduction == "none" else go)
        for a, c in ((gl, cl), (ggx, cgx), (ggy, cgy)):
            assert isinstance(a, torch.Tensor)
            assert tuple(a.shape) == np.shape(c)
            np.testing.assert_array_equal(a.numpy(), np.asarray(c))
        # Host (NumPy) weights with a device input are uploaded; forward only.
        calls = _CpuKernels.device_calls
        f = fn(t(x), t(y), reduction=reduction, **extra, **opts)
        assert _CpuKernels.device_calls == calls + 1  # it took the GPU path
        np.testing.assert_array_equal(f.numpy(), np.asarray(fn(x, y, reduction=reduction, **extra, **opts)))


@pytest.mark.parametrize("wshape", [(3, 1, 1), (5, 1), (1, 5, 7), ()], ids=str)
def test_weight_broadcast_with_the_callers_library(fake_gpu, wshape, rng):
    x, y = rng.standard_normal((3, 5, 7)).astype(np.float32), rng.random((3, 5, 7)).astype(np.float32)
    w = rng.uniform(0.5, 2, wshape).astype(np.float32)
    pw = rng.uniform(0.5, 2, (7,)).astype(np.float32)
    c, (cg, cgt) = lossx.binary_cross_entropy_with_logits(x, y, w, pos_weight=pw, return_grad=True)
    g, (gg, ggt) = lossx.binary_cross_entropy_with_logits(t(x), t(y), t(w), pos_weight=t(pw), return_grad=True)
    assert g.shape == () and isinstance(g, torch.Tensor)
    np.testing.assert_array_equal(g.numpy(), c)
    np.testing.assert_array_equal(gg.numpy(), cg)
    np.testing.assert_array_equal(ggt.numpy(), cgt)


def test_mixed_dtypes_and_kl_variants(fake_gpu, rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    y = rng.standard_normal((4, 6))
    c, (cg, cgt) = lossx.huber_loss(x, y, delta=0.5, return_grad=True)
    g, (gg, ggt) = lossx.huber_loss(t(x), t(y), delta=0.5, return_grad=True)
    assert gg.dtype == torch.float32 and ggt.dtype == torch.float64
    np.testing.assert_array_equal(g.numpy(), c)
    np.testing.assert_array_equal(ggt.numpy(), cgt)
    p = rng.random((4, 6)).astype(np.float32)
    for red in ("batchmean", "none"):
        c, (cg, _) = lossx.kl_div(x, p, reduction=red, return_grad=True)
        g, (gg, _) = lossx.kl_div(t(x), t(p), reduction=red, return_grad=True)
        np.testing.assert_array_equal(g.numpy(), c)
        np.testing.assert_array_equal(gg.numpy(), cg)
    c = lossx.kl_div(np.array(0.3), np.array(0.5), reduction="batchmean")
    g = lossx.kl_div(t(np.array(0.3)), t(np.array(0.5)), reduction="batchmean")
    assert g.shape == () and float(g) == float(c)


@pytest.mark.parametrize("name", [n for n in lossx._catalog.names("pointwise") if n not in POINTWISE_OWN_SIGNATURE])
def test_empty(fake_gpu, name):
    e = torch.zeros((0, 3))
    fn = getattr(lossx, name)
    assert np.isnan(float(fn(e, e)))
    assert float(fn(e, e, reduction="sum")) == 0.0
    loss, (gx, gy) = fn(e, e, reduction="none", return_grad=True)
    assert tuple(loss.shape) == tuple(gx.shape) == tuple(gy.shape) == (0, 3)


def test_bad_arguments_raise(fake_gpu):
    x = torch.zeros(4)
    with pytest.raises(TypeError, match="target must be float32"):
        lossx.mse_loss(x, torch.zeros(4, dtype=torch.int32))
    with pytest.raises(TypeError, match="weight must be float32"):
        lossx.binary_cross_entropy_with_logits(x, x, torch.ones(4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(4,\).*\(5,\)"):
        lossx.mse_loss(x, torch.zeros(5))
    with pytest.raises(ValueError, match="grad_output"):
        lossx.mse_loss(x, x, reduction="none", return_grad=True, grad_output=torch.ones(3))


def test_device_and_library_mismatch_messages():
    # The checks of TorchBackend.asarray, on a backend that believes it is on cuda:0
    # (a "meta" tensor stands for a tensor on another device).
    be = _gpu.TorchBackend.__new__(_gpu.TorchBackend)
    be._torch, be._dev = torch, torch.device("cuda", 0)
    with pytest.raises(ValueError, match="mse_loss: target is on meta but the input is on cuda:0; pass all"):
        be.asarray(torch.zeros(4, device="meta"), "mse_loss", "target")

    class ForeignGpuArray:
        __cuda_array_interface__ = {"shape": (4,), "typestr": "<f4", "data": (64, False), "version": 3}

    with pytest.raises(TypeError, match="pos_weight is a GPU array of type .*ForeignGpuArray.* one library"):
        be.asarray(ForeignGpuArray(), "bce", "pos_weight")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape", [(7, 5), (9,), (0, 4)], ids=str)
def test_embedding_through_the_gpu_backend(fake_gpu, reduction, shape, rng):
    xs = _triplet_inputs(rng, shape, np.float32)
    go = rng.uniform(-1, 1, shape[:-1]).astype(np.float32) if reduction == "none" else 0.5
    calls = _CpuKernels.device_calls
    cl, cg = lossx.triplet_margin_loss(*xs, margin=0.7, p=1.5, swap=True, reduction=reduction, return_grad=True,
                                       grad_output=go)
    gl, gg = lossx.triplet_margin_loss(*[t(x) for x in xs], margin=0.7, p=1.5, swap=True, reduction=reduction,
                                       return_grad=True, grad_output=t(go) if reduction == "none" else go)
    assert _CpuKernels.device_calls == calls + 1
    np.testing.assert_array_equal(gl.numpy(), cl)
    for a, c in zip(gg, cg):
        assert isinstance(a, torch.Tensor) and tuple(a.shape) == c.shape
        np.testing.assert_array_equal(a.numpy(), c)
    y = np.where(rng.random(shape[:-1]) < 0.5, -1, 1)
    for target in (y, t(y), t(y.astype(np.float64))):  # host labels, device int64 and float64 labels
        cl, cg = lossx.cosine_embedding_loss(xs[0], xs[1], y, 0.2, reduction, return_grad=True, grad_output=go)
        gl, gg = lossx.cosine_embedding_loss(t(xs[0]), t(xs[1]), target, 0.2, reduction, return_grad=True,
                                             grad_output=t(go) if reduction == "none" else go)
        np.testing.assert_array_equal(gl.numpy(), cl)
        for a, c in zip(gg, cg):
            np.testing.assert_array_equal(a.numpy(), c)


def test_embedding_bad_arguments_raise(fake_gpu):
    x = torch.zeros((2, 3))
    with pytest.raises(TypeError, match="negative has dtype"):
        lossx.triplet_margin_loss(x, x, torch.zeros((2, 3), dtype=torch.float64))
    with pytest.raises(TypeError, match="target must be numeric"):
        lossx.cosine_embedding_loss(x, x, torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"target has shape \(3,\)"):
        lossx.cosine_embedding_loss(x, x, torch.ones(3))


# The Keras element-wise losses: row mode through the GPU backend (axes moved
# with the caller's library, the hinge label rule read back from the device).
from test_keras_elementwise import KERAS_EW_OPTIONS_FOR_GPU  # noqa: E402


@pytest.mark.parametrize("reduction", [None, "sum_over_batch_size", "sum"])
@pytest.mark.parametrize("name,o", KERAS_EW_OPTIONS_FOR_GPU, ids=[f"{n}-{o}" for n, o in KERAS_EW_OPTIONS_FOR_GPU])
def test_keras_elementwise_through_the_gpu_backend(fake_gpu, name, o, reduction, rng):
    from test_keras_elementwise import make, opts_of

    fn = getattr(lossx.keras, name)
    empty = (3, 0) if o.get("axis", -1) == 0 else (0, 3)  # no rows (the reduced axis itself is never empty)
    for shape in ((5, 7), (2, 3, 4), empty):
        tt, pp = make(name, shape, np.float32, rng, o)
        lshape = shape[:-1] if o.get("axis", -1) == -1 else shape[:o["axis"]] + shape[o["axis"] + 1:]
        go = rng.uniform(-1, 1, lshape).astype(np.float32) if reduction is None else 0.5
        cl, cg = fn(tt, pp, **opts_of(o), reduction=reduction, return_grad=True, grad_output=go)
        calls = _CpuKernels.device_calls
        gl, gg = fn(t(tt), t(pp), **opts_of(o), reduction=reduction, return_grad=True,
                    grad_output=t(go) if reduction is None else go)
        assert _CpuKernels.device_calls == calls + 1  # it took the GPU path
        for a, c in ((gl, cl), (gg, cg)):
            assert isinstance(a, torch.Tensor) and tuple(a.shape) == np.shape(c)
            np.testing.assert_array_equal(a.numpy(), np.asarray(c))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_multilabel_soft_margin_through_the_gpu_backend(fake_gpu, reduction, rng):
    # The pointwise kernel's row mode (rows of C) with (C,) class weights.
    for shape in ((6, 5), (7,), (0, 4)):
        x = rng.normal(0, 2, shape).astype(np.float32)
        y = (rng.random(shape) < 0.5).astype(np.int64)
        w = rng.uniform(0.5, 2, shape[-1:]).astype(np.float32)
        go = rng.uniform(-1, 1, shape[:-1]).astype(np.float32) if reduction == "none" else 0.5
        cl, cg = lossx.multilabel_soft_margin_loss(x, y, w, reduction, return_grad=True, grad_output=go)
        calls = _CpuKernels.device_calls
        gl, gg = lossx.multilabel_soft_margin_loss(t(x), t(y), t(w), reduction, return_grad=True,
                                                   grad_output=t(go) if reduction == "none" else go)
        assert _CpuKernels.device_calls == calls + 1
        for a, c in ((gl, cl), (gg, cg)):
            assert isinstance(a, torch.Tensor) and tuple(a.shape) == np.shape(c)
            np.testing.assert_array_equal(a.numpy(), np.asarray(c))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("vkind", ["full", "rows", "axis1", "number"])
def test_gaussian_nll_through_the_gpu_backend(fake_gpu, vkind, reduction, rng):
    # var in the kernel's third operand: materialised with the caller's library,
    # its gradient summed over the broadcast axes there (float64), in var's dtype.
    shape = (4, 3, 5)
    x, y = rng.normal(0, 1, shape).astype(np.float32), rng.normal(0, 1, shape).astype(np.float32)
    var = {"full": rng.uniform(0, 2, shape), "rows": rng.uniform(0, 2, shape[:-1]),
           "axis1": rng.uniform(0, 2, (4, 1, 5)), "number": 0.7}[vkind]
    if not isinstance(var, float):
        var = var.astype(np.float64)  # var's dtype differs from the input's: d_var keeps var's
    go = rng.uniform(-1, 1, shape).astype(np.float32) if reduction == "none" else 0.5
    cl, cg = lossx.gaussian_nll_loss(x, y, var, full=True, eps=0.1, reduction=reduction, return_grad=True,
                                     grad_output=go)
    tv = var if isinstance(var, float) else t(var)
    calls = _CpuKernels.device_calls
    gl, gg = lossx.gaussian_nll_loss(t(x), t(y), tv, full=True, eps=0.1, reduction=reduction, return_grad=True,
                                     grad_output=t(go) if reduction == "none" else go)
    assert _CpuKernels.device_calls == calls + 1
    for a, c in zip((gl,) + tuple(gg), (cl,) + tuple(cg)):
        assert isinstance(a, torch.Tensor) and tuple(a.shape) == np.shape(c)
        assert str(a.dtype).split(".")[-1] == np.asarray(c).dtype.name
        np.testing.assert_array_equal(a.numpy(), np.asarray(c))
    with pytest.raises(ValueError, match="var must be >= 0; element 2 is -0.5"):
        lossx.gaussian_nll_loss(t(x[0, 0]), t(y[0, 0]), t(np.array([1, 1, -0.5, 1, -2], np.float32)))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_margin_ranking_through_the_gpu_backend(fake_gpu, reduction, rng):
    shape = (6, 7)
    x1, x2 = rng.normal(0, 1, shape).astype(np.float32), rng.normal(0, 1, shape).astype(np.float32)
    for target in (np.where(rng.random(shape) < 0.5, -1, 1), np.where(rng.random(shape) < 0.5, -1.0, 1.0)):
        go = rng.uniform(-1, 1, shape).astype(np.float32) if reduction == "none" else 0.5
        cl, cg = lossx.margin_ranking_loss(x1, x2, target, 0.3, reduction, return_grad=True, grad_output=go)
        calls = _CpuKernels.device_calls
        gl, gg = lossx.margin_ranking_loss(t(x1), t(x2), t(target), 0.3, reduction, return_grad=True,
                                           grad_output=t(go) if reduction == "none" else go)
        assert _CpuKernels.device_calls == calls + 1
        for a, c in zip((gl,) + tuple(gg), (cl,) + tuple(cg)):
            assert isinstance(a, torch.Tensor) and tuple(a.shape) == np.shape(c)
            np.testing.assert_array_equal(a.numpy(), np.asarray(c))
    bad = np.ones(shape)
    bad[2, 3] = 1 + 1e-10  # a float64 target is tested in its own dtype
    with pytest.raises(ValueError, match=r"target at position 17 is 1; it must be 1 or -1"):
        lossx.margin_ranking_loss(t(x1), t(x2), t(bad))


def test_tf_sigmoid_ce_through_the_gpu_backend(fake_gpu, rng):
    for shape in ((6, 7), (5,), (0, 3)):
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
        z = rng.random(shape).astype(np.float32)
        go = rng.uniform(-1, 1, shape).astype(np.float32)
        cl, cg = lossx.tf.sigmoid_cross_entropy_with_logits(labels=z, logits=x, return_grad=True, grad_output=go)
        calls = _CpuKernels.device_calls
        gl, gg = lossx.tf.sigmoid_cross_entropy_with_logits(labels=t(z), logits=t(x), return_grad=True,
                                                            grad_output=t(go))
        assert _CpuKernels.device_calls == calls + 1
        for a, c in ((gl, cl), (gg, cg)):
            assert isinstance(a, torch.Tensor) and tuple(a.shape) == c.shape
            np.testing.assert_array_equal(a.numpy(), c)


# The Keras row losses (cuda/keras_rows.cu) and tf's softmax ops, which use them.
KERAS_ROWS_FOR_GPU = [
    ("categorical_crossentropy", {}),
    ("categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.1, "axis": 1}),
    ("sparse_categorical_crossentropy", {"ignore_class": 1}),
    ("sparse_categorical_crossentropy", {"from_logits": True, "float_labels": True}),
    ("categorical_focal_crossentropy", {"alpha": "vec", "from_logits": True}),
    ("categorical_hinge", {}),
    ("cosine_similarity", {"axis": (1, 2)}),
    ("dice", {}),
    ("tversky", {"alpha": 0.9, "beta": 0.1, "axis": (0, 2)}),
]


@pytest.mark.parametrize("reduction", [None, "sum_over_batch_size", "sum"])
@pytest.mark.parametrize("name,o", KERAS_ROWS_FOR_GPU, ids=[f"{n}-{o}" for n, o in KERAS_ROWS_FOR_GPU])
def test_keras_rows_through_the_gpu_backend(fake_gpu, name, o, reduction, rng):
    from test_keras import make

    fn = getattr(lossx.keras, name)
    for shape in ((4, 5, 6), (0, 5, 6)):
        o2 = {k: v for k, v in o.items() if k != "float_labels"}
        if o2.get("alpha") == "vec":
            o2["alpha"] = rng.uniform(0.1, 0.9, shape[-1]).astype(np.float32)
        tt, pp = make(name, shape, np.float32, rng, o2)
        if shape[0] == 0 and o2.get("axis", None if name in ("dice", "tversky") else -1) in (None, (0, 2)):
            # The reduced axes hold no element: an error on both paths.
            for a, b in ((tt, pp), (t(tt), t(pp))):
                with pytest.raises(ValueError, match="the reduced axis of y_pred is empty"):
                    fn(a, b, **o2, reduction=reduction)
            continue
        if o.get("float_labels"):
            tt = tt.astype(np.float32)
        cl = fn(tt, pp, **o2, reduction=reduction)
        go = rng.uniform(-1, 1, np.shape(cl)).astype(np.float32) if reduction is None else 0.5
        cl, cg = fn(tt, pp, **o2, reduction=reduction, return_grad=True, grad_output=go)
        calls = _CpuKernels.device_calls
        o3 = dict(o2, alpha=t(o2["alpha"])) if isinstance(o2.get("alpha"), np.ndarray) else o2
        gl, gg = fn(t(tt), t(pp), **o3, reduction=reduction, return_grad=True,
                    grad_output=t(go) if reduction is None else go)
        assert _CpuKernels.device_calls == calls + 1  # it took the GPU path
        for a, c in ((gl, cl), (gg, cg)):
            assert isinstance(a, torch.Tensor) and tuple(a.shape) == np.shape(c)
            np.testing.assert_array_equal(a.numpy(), np.asarray(c))


def test_keras_sparse_float_labels_checked_on_the_gpu_path(fake_gpu):
    p = torch.rand(3, 4)
    with pytest.raises(ValueError, match="float labels must hold integers; position 2 holds 1.5"):
        lossx.keras.sparse_categorical_crossentropy(torch.tensor([0.0, 3.0, 1.5]), p)
    with pytest.raises(ValueError, match="position 0 holds nan"):
        lossx.keras.sparse_categorical_crossentropy(torch.tensor([float("nan"), 3.0, 1.0]), p)
    with pytest.raises(IndexError, match="label 4 at position 1 is out of range"):
        lossx.keras.sparse_categorical_crossentropy(torch.tensor([0.0, 4.0, 1.0]), p)


@pytest.mark.parametrize("op", ["softmax_cross_entropy_with_logits", "sparse_softmax_cross_entropy_with_logits"])
def test_tf_softmax_ops_through_the_gpu_backend(fake_gpu, op, rng):
    fn = getattr(lossx.tf, op)
    for shape in ((6, 7), (2, 3, 5), (0, 3)):
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
        if op.startswith("sparse"):
            z = rng.integers(0, shape[-1], shape[:-1])
        else:
            z = rng.random(shape).astype(np.float32)
        go = rng.uniform(-1, 1, shape[:-1]).astype(np.float32)
        cl, cg = fn(labels=z, logits=x, return_grad=True, grad_output=go)
        calls = _CpuKernels.device_calls
        gl, gg = fn(labels=t(z), logits=t(x), return_grad=True, grad_output=t(go))
        assert _CpuKernels.device_calls == calls + 1
        for a, c in ((gl, cl), (gg, cg)):
            assert isinstance(a, torch.Tensor) and tuple(a.shape) == np.shape(c)
            np.testing.assert_array_equal(a.numpy(), np.asarray(c))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
def test_ctc_through_the_gpu_backend(fake_gpu, reduction, layout, rng):
    # Targets on the device; lengths from device tensors, lists or NumPy (they go to the host).
    from test_ctc import _lengths, _log_probs, _targets

    T, N, C, S = 9, 5, 4, 3
    lp = _log_probs(rng, T, N, C, np.float32)
    il, tl = _lengths(rng, T, N, S, np.arange(1, C))
    padded, concat = _targets(rng, N, S, np.arange(1, C), tl)
    tg = padded if layout == "padded" else concat
    go = rng.uniform(0.5, 2, N).astype(np.float32) if reduction == "none" else 0.5
    cl, cg = lossx.ctc_loss(lp, tg, il, tl, 0, reduction, return_grad=True, grad_output=go)
    calls = _CpuKernels.device_calls
    gl, gg = lossx.ctc_loss(t(lp), t(tg), t(il), list(tl), 0, reduction, return_grad=True,
                            grad_output=t(go) if reduction == "none" else go)
    assert _CpuKernels.device_calls == calls + 1
    for a, c in ((gl, cl), (gg, cg)):
        assert isinstance(a, torch.Tensor) and tuple(a.shape) == np.shape(c)
        np.testing.assert_array_equal(a.numpy(), np.asarray(c))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape", [(6, 5), (7,), (0, 4), (3, 1)], ids=str)
def test_margin_through_the_gpu_backend(fake_gpu, reduction, shape, rng):
    # multi_margin_loss and multilabel_margin_loss: device labels (any int dtype),
    # device or host class weights, per-row grad_output, 0-d reduced losses.
    from test_margin import _mlm_target

    C = shape[-1]
    x = rng.normal(0, 1, shape).astype(np.float32)
    y = rng.integers(0, C, shape[:-1])
    w = rng.uniform(0.5, 2, C).astype(np.float32)
    go = rng.uniform(-1, 1, shape[:-1]).astype(np.float32) if reduction == "none" else 0.5
    tgo = t(go) if reduction == "none" else go
    for p, wt in ((1, None), (2, t(w)), (1, w)):
        cl, cg = lossx.multi_margin_loss(x, y, p, 0.7, w if wt is not None else None, reduction, return_grad=True,
                                         grad_output=go)
        calls = _CpuKernels.device_calls
        gl, gg = lossx.multi_margin_loss(t(x), t(y.astype(np.int32)), p, 0.7, wt, reduction, return_grad=True,
                                         grad_output=tgo)
        assert _CpuKernels.device_calls == calls + 1
        for a, c in ((gl, cl), (gg, cg)):
            assert isinstance(a, torch.Tensor) and tuple(a.shape) == np.shape(c)
            np.testing.assert_array_equal(a.numpy(), np.asarray(c))
    tt = _mlm_target(rng, shape)
    cl, cg = lossx.multilabel_margin_loss(x, tt, reduction, return_grad=True, grad_output=go)
    calls = _CpuKernels.device_calls
    gl, gg = lossx.multilabel_margin_loss(t(x), t(tt), reduction, return_grad=True, grad_output=tgo)
    assert _CpuKernels.device_calls == calls + 1
    for a, c in ((gl, cl), (gg, cg)):
        assert isinstance(a, torch.Tensor) and tuple(a.shape) == np.shape(c)
        np.testing.assert_array_equal(a.numpy(), np.asarray(c))
    f = lossx.multilabel_margin_loss(t(x), t(tt), reduction)
    np.testing.assert_array_equal(f.numpy(), np.asarray(lossx.multilabel_margin_loss(x, tt, reduction)))


def test_margin_bad_labels_through_the_gpu_backend(fake_gpu):
    x = torch.zeros((3, 3))
    with pytest.raises(IndexError, match=r"multi_margin_loss: label 3 at position 1 is out of range \[0, 3\)"):
        lossx.multi_margin_loss(x, torch.tensor([0, 3, 7]))
    with pytest.raises(IndexError, match=r"label 5 at position \(1, 1\) is out of range \[-1, 3\)"):
        lossx.multilabel_margin_loss(x, torch.tensor([[0, -1, 9], [1, 5, -1], [0, 1, 2]]))
    with pytest.raises(TypeError, match="integer class labels"):
        lossx.multi_margin_loss(x, torch.zeros(3))
    with pytest.raises(ValueError, match=r"weight has shape \(4,\)"):
        lossx.multi_margin_loss(x, torch.zeros(3, dtype=torch.int64), weight=torch.ones(4))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape", [(7, 5), (4, 6, 3), (5,), (0, 4)], ids=str)
def test_poly1_through_the_gpu_backend(fake_gpu, reduction, shape, rng):
    # The per-row arithmetic between the two cross_entropy sweeps runs in torch
    # here (float64, rounded once), in NumPy on the CPU path: expm1 and the sums
    # may differ in the last bits of float64, i.e. not at all after rounding to
    # float32 but for a rare tie: 2 float32 ulps.
    x = (2 * rng.standard_normal(shape)).astype(np.float32)
    rows = (shape[0],) + shape[2:] if len(shape) > 1 else ()
    C = shape[1] if len(shape) > 1 else shape[0]
    y = rng.integers(0, C, rows)
    if y.size > 2:
        y.reshape(-1)[1] = -100
    go = rng.uniform(-1, 1, rows).astype(np.float32) if reduction == "none" else 0.5
    cl, cg = lossx.poly1_cross_entropy(x, y, 0.8, reduction, return_grad=True, grad_output=go)
    calls = _CpuKernels.device_calls
    gl, gg = lossx.poly1_cross_entropy(t(x), t(y), 0.8, reduction, return_grad=True,
                                       grad_output=t(go) if reduction == "none" else go)
    assert _CpuKernels.device_calls == calls + 2  # the forward sweep, then the gradient sweep
    for a, c in ((gl, cl), (gg, cg)):
        assert isinstance(a, torch.Tensor) and tuple(a.shape) == np.shape(c)
        assert str(a.dtype).split(".")[-1] == np.asarray(c).dtype.name
        np.testing.assert_allclose(a.numpy(), np.asarray(c), rtol=2.0**-22, atol=1e-30)
    # A device 0-d grad_output, host labels, forward only.
    if reduction != "none":
        gl2, gg2 = lossx.poly1_cross_entropy(t(x), y, 0.8, reduction, return_grad=True, grad_output=t(np.array(0.5)))
        np.testing.assert_array_equal(gg2.numpy(), gg.numpy())
    f = lossx.poly1_cross_entropy(t(x), t(y), 0.8, reduction)
    assert isinstance(f, torch.Tensor)
    np.testing.assert_array_equal(f.numpy(), gl.numpy())


def test_poly1_bad_input_through_the_gpu_backend(fake_gpu):
    x = torch.ones((2, 3))
    with pytest.raises(TypeError, match="labels must be integer"):
        lossx.poly1_cross_entropy(x, torch.zeros(2))
    with pytest.raises(IndexError, match="position 1"):
        lossx.poly1_cross_entropy(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="grad_output"):
        lossx.poly1_cross_entropy(x, torch.tensor([0, 1]), reduction="none", return_grad=True,
                                  grad_output=torch.ones(3))
    with pytest.raises(ValueError, match="grad_output"):
        lossx.poly1_cross_entropy(x, torch.tensor([0, 1]), return_grad=True, grad_output=torch.ones(2))


def test_ctc_with_layouts_that_need_copies(fake_gpu, rng):
    # (T, N, C) log_probs as a transposed (N, T, C) tensor and int32 targets:
    # both are copied to contiguous int64 / float buffers, which must live
    # until the kernel has run (a raw pointer does not keep them alive).
    T, N, C, S = 50, 16, 20, 10
    lp = torch.from_numpy(rng.standard_normal((N, T, C)).astype(np.float32)).log_softmax(-1).transpose(0, 1)
    tg = rng.integers(1, C, (N, S)).astype(np.int32)
    ref = lossx.ctc_loss(lp.contiguous().numpy(), tg, [T] * N, [S] * N, reduction="none")
    for _ in range(5):  # freed memory is not always reused at once
        out = lossx.ctc_loss(lp, t(tg), [T] * N, [S] * N, reduction="none")
        np.testing.assert_array_equal(out.numpy(), ref)


def test_bool_labels_of_the_callers_library(fake_gpu, rng):
    # torch dtypes have no .kind: bool labels are recognised through the backend.
    p = rng.uniform(0.05, 0.95, (6, 7)).astype(np.float32)
    yb = rng.random((6, 7)) < 0.5
    c = lossx.keras.binary_crossentropy(yb, p)
    g = lossx.keras.binary_crossentropy(t(yb), t(p))
    assert isinstance(g, torch.Tensor)
    np.testing.assert_array_equal(g.numpy(), np.asarray(c))
    c = lossx.keras.categorical_crossentropy(yb, p)
    g = lossx.keras.categorical_crossentropy(t(yb), t(p))
    np.testing.assert_array_equal(g.numpy(), np.asarray(c))
    x = rng.standard_normal((6, 7)).astype(np.float32)
    c = lossx.tf.sigmoid_cross_entropy_with_logits(labels=yb, logits=x)
    g = lossx.tf.sigmoid_cross_entropy_with_logits(labels=t(yb), logits=t(x))
    np.testing.assert_array_equal(g.numpy(), c)


@pytest.mark.parametrize("ldt", [torch.uint16, torch.uint32, torch.uint64, torch.uint8, torch.int16])
def test_unsigned_and_narrow_torch_labels(fake_gpu, rng, ldt):
    x = rng.standard_normal((9, 11)).astype(np.float32)
    y = rng.integers(0, 11, 9)
    c = lossx.cross_entropy(x, y, reduction="none")
    g = lossx.cross_entropy(t(x), torch.from_numpy(y).to(ldt), reduction="none")
    np.testing.assert_array_equal(g.numpy(), c)


def test_mismatch_messages_name_the_argument(fake_gpu, monkeypatch, rng):
    # Every argument besides the input names itself when it is on another
    # device: a "meta" tensor stands for one (the fake input lives on "cpu").
    meta = lambda a: torch.from_numpy(np.asarray(a)).to("meta")  # noqa: E731
    x = t(rng.standard_normal((4, 5)).astype(np.float32))
    y01 = rng.random((4, 5)).astype(np.float32)
    lab = rng.integers(0, 5, 4)
    cases = [
        ("y_true", lambda: lossx.keras.binary_crossentropy(meta(y01), x)),
        ("y_true", lambda: lossx.keras.categorical_crossentropy(meta(y01), x)),
        ("y_true", lambda: lossx.keras.sparse_categorical_crossentropy(meta(lab), x)),
        ("alpha", lambda: lossx.keras.categorical_focal_crossentropy(t(y01), x, alpha=meta(np.ones(5, np.float32)))),
        ("target", lambda: lossx.multi_margin_loss(x, meta(lab))),
        ("weight", lambda: lossx.multi_margin_loss(x, t(lab), weight=meta(np.ones(5, np.float32)))),
        ("target", lambda: lossx.multilabel_soft_margin_loss(x, meta(y01))),
        ("target", lambda: lossx.multilabel_margin_loss(x, meta(lab.reshape(4, 1).repeat(5, 1)))),
        ("var", lambda: lossx.gaussian_nll_loss(x, x, meta(np.ones((4, 5), np.float32)))),
        ("labels", lambda: lossx.tf.sigmoid_cross_entropy_with_logits(labels=meta(y01), logits=x)),
        ("labels", lambda: lossx.tf.sparse_softmax_cross_entropy_with_logits(labels=meta(lab), logits=x)),
        ("grad_output", lambda: lossx.tf.sigmoid_cross_entropy_with_logits(
            labels=t(y01), logits=x, return_grad=True, grad_output=meta(y01))),
        ("targets", lambda: lossx.ctc_loss(x.reshape(4, 1, 5).log_softmax(-1), meta(np.ones((1, 2), np.int64)),
                                           [4], [2])),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=rf": {name} is on meta but the input is on cpu"):
            call()


def test_is_gpu_asks_dlpack_when_the_cuda_array_interface_raises():
    # JAX raises from __cuda_array_interface__ for bfloat16 GPU arrays: such an
    # array is still on the GPU, as its __dlpack_device__ says.
    class JaxLikeBf16:
        @property
        def __cuda_array_interface__(self):
            raise TypeError("bfloat16 is not supported by __cuda_array_interface__")

        def __dlpack_device__(self):
            return (2, 0)

    class HostDlpack(JaxLikeBf16):
        def __dlpack_device__(self):
            return (1, 0)

    assert _array.is_gpu(JaxLikeBf16())
    assert not _array.is_gpu(HostDlpack())
    assert not _array.is_gpu(torch.zeros(3, requires_grad=True))


def test_uint64_labels_past_int64_are_named(fake_gpu, rng):
    # 2^64 - 100 would wrap to -100 (ignore_index): an IndexError instead, on both paths.
    x = rng.standard_normal((5, 7)).astype(np.float32)
    y = rng.integers(0, 7, 5).astype(np.uint64)
    y[3] = np.uint64(2**64 - 100)
    for lab in (y, torch.from_numpy(y.astype(np.int64)).to(torch.uint64)):
        xs = x if isinstance(lab, np.ndarray) else t(x)
        with pytest.raises(IndexError, match=rf"label {2**64 - 100} at position 3"):
            lossx.cross_entropy(xs, lab)
    yt = np.full((5, 7), -1, np.int64).astype(np.uint64)  # multilabel_margin's -1 end marker, as uint64
    with pytest.raises(IndexError, match="position 0"):
        lossx.multilabel_margin_loss(x, yt)
