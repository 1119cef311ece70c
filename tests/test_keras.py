"""lossx.keras (Keras 3 semantics) against float64 references.

Values: float64 NumPy translations of Keras 3's own formulas
(keras/src/losses/losses.py and keras/src/backend/numpy/nn.py: normalise,
clip to [1e-7, 1-1e-7], log). Gradients: torch.autograd on float64 torch
re-implementations of the same formulas (clip included), plus central finite
differences in float64. keras itself is not a test dependency: its numpy
backend imports jax.
"""
import numpy as np
import pytest
import torch

import lossx
from lossx import _catalog, keras as K

from _util import ATOL, BF16, RTOL, t64

EPS = 1e-7
RED = {None: None, "none": None, "sum": "sum", "sum_over_batch_size": "mean"}


# ------------------------------------------------------------------ references
def _ax(axis, ndim):
    return tuple(range(ndim)) if axis is None else axis


def np_loss(name, t, p, o):
    """Keras' formula in float64 NumPy; o = the call's options."""
    t = np.asarray(t, np.float64)
    p = np.asarray(p, np.float64)
    axis = o.get("axis", None if name in ("dice", "tversky") else -1)
    if name in ("categorical_crossentropy", "categorical_focal_crossentropy"):
        ls = o.get("label_smoothing", 0.0)
        if ls:
            t = t * (1 - ls) + ls / t.shape[axis]
        if name == "categorical_crossentropy":
            if o.get("from_logits"):
                m = p.max(axis, keepdims=True)
                lp = p - m - np.log(np.exp(p - m).sum(axis, keepdims=True))
            else:
                q = np.clip(p / p.sum(axis, keepdims=True), EPS, 1 - EPS)
                lp = np.log(q)
            return -(t * lp).sum(axis)
        if o.get("from_logits"):
            e = np.exp(p - p.max(axis, keepdims=True))
            p = e / e.sum(axis, keepdims=True)
        q = np.clip(p / p.sum(axis, keepdims=True), EPS, 1 - EPS)
        alpha = np.asarray(o.get("alpha", 0.25), np.float64)
        return (alpha * (1 - q) ** o.get("gamma", 2.0) * -t * np.log(q)).sum(axis)
    if name == "sparse_categorical_crossentropy":
        y = np.asarray(t, np.int64)  # labels
        ic = o.get("ignore_class")
        valid = np.ones(y.shape, bool) if ic is None else y != ic
        yy = np.where(valid, y, 0)
        pm = np.moveaxis(p, axis, -1)
        if o.get("from_logits"):
            m = pm.max(-1, keepdims=True)
            lp = pm - m - np.log(np.exp(pm - m).sum(-1, keepdims=True))
        else:
            lp = np.log(np.clip(pm / pm.sum(-1, keepdims=True), EPS, 1 - EPS))
        loss = -np.take_along_axis(lp, yy[..., None], -1)[..., 0]
        return np.where(valid, loss, 0.0)
    if name == "categorical_hinge":
        return np.maximum(((1 - t) * p).max(-1) - (t * p).sum(-1) + 1, 0)
    ax = _ax(axis, p.ndim)
    if name == "cosine_similarity":
        def nrm(x):
            return x * np.minimum(1 / np.sqrt((x * x).sum(ax, keepdims=True)), 1 / EPS)
        return -(nrm(t) * nrm(p)).sum(ax)
    inter = (t * p).sum(ax)
    if name == "dice":
        return 1 - 2 * inter / (t.sum(ax) + p.sum(ax) + EPS)
    fp = ((1 - p) * t).sum(ax)
    fn = (p * (1 - t)).sum(ax)
    return 1 - inter / (inter + fp * o.get("alpha", 0.5) + fn * o.get("beta", 0.5) + EPS)


def th_loss(name, t, p, o):
    """The same formulas in float64 torch, differentiable in p."""
    axis = o.get("axis", None if name in ("dice", "tversky") else -1)
    if name in ("categorical_crossentropy", "categorical_focal_crossentropy"):
        ls = o.get("label_smoothing", 0.0)
        if ls:
            t = t * (1 - ls) + ls / t.shape[axis]
        if o.get("from_logits"):
            if name == "categorical_crossentropy":
                return -(t * torch.log_softmax(p, axis)).sum(axis)
            p = torch.softmax(p, axis)
        q = torch.clamp(p / p.sum(axis, keepdim=True), EPS, 1 - EPS)
        if name == "categorical_crossentropy":
            return -(t * torch.log(q)).sum(axis)
        alpha = t64(np.asarray(o.get("alpha", 0.25)))
        return (alpha * (1 - q) ** o.get("gamma", 2.0) * -t * torch.log(q)).sum(axis)
    if name == "sparse_categorical_crossentropy":
        y = torch.tensor(np.asarray(t, np.int64))
        ic = o.get("ignore_class")
        valid = torch.ones(y.shape, dtype=torch.bool) if ic is None else y != ic
        yy = torch.where(valid, y, 0)
        pm = torch.movedim(p, axis, -1)
        if o.get("from_logits"):
            lp = torch.log_softmax(pm, -1)
        else:
            lp = torch.log(torch.clamp(pm / pm.sum(-1, keepdim=True), EPS, 1 - EPS))
        loss = -torch.gather(lp, -1, yy[..., None])[..., 0]
        return torch.where(valid, loss, torch.zeros((), dtype=loss.dtype))
    if name == "categorical_hinge":
        return torch.clamp(((1 - t) * p).amax(-1) - (t * p).sum(-1) + 1, min=0)
    ax = _ax(axis, p.ndim)
    if name == "cosine_similarity":
        def nrm(x):
            return x * torch.clamp(torch.rsqrt((x * x).sum(ax, keepdim=True)), max=1 / EPS)
        return -(nrm(t) * nrm(p)).sum(ax)
    inter = (t * p).sum(ax)
    if name == "dice":
        return 1 - 2 * inter / (t.sum(ax) + p.sum(ax) + EPS)
    fp = ((1 - p) * t).sum(ax)
    fn = (p * (1 - t)).sum(ax)
    return 1 - inter / (inter + fp * o.get("alpha", 0.5) + fn * o.get("beta", 0.5) + EPS)


def reduce_np(loss, reduction, count=None):
    r = RED[reduction]
    if r is None:
        return loss
    if r == "sum":
        return loss.sum()
    n = loss.size if count is None else count
    return loss.sum() / n if n else 0.0


def reduce_th(loss, reduction, count=None):
    r = RED[reduction]
    if r is None:
        return loss
    if r == "sum":
        return loss.sum()
    n = loss.numel() if count is None else count
    return loss.sum() / n if n else loss.sum() * 0


# ------------------------------------------------------------------ inputs
def make(name, shape, dtype, rng, o):
    """(y_true, y_pred) for `name`: probabilities with some entries small
    enough to be clipped, logits, labels, or real vectors as the loss needs."""
    axis = o.get("axis", -1)
    if o.get("from_logits") or name in ("categorical_hinge", "cosine_similarity"):
        p = rng.normal(0, 2, shape)
    else:
        p = rng.uniform(0.02, 1.0, shape)
        if name not in ("dice", "tversky") and p.size > 4:
            flat = p.reshape(-1)
            flat[rng.choice(p.size, max(1, p.size // 10), replace=False)] = 1e-10  # clipped at 1e-7
    if name == "categorical_hinge":
        # Distinct values per row (also after rounding to bfloat16): the max's
        # gradient at ties is a convention (torch splits it, lossx picks the first).
        perm = np.argsort(rng.random(shape), axis=-1)
        p = (perm - shape[-1] / 2 + 0.37) * 0.3  # never 0: no tie with the target's (1-t) p = 0
    p = p.astype(dtype)
    C = shape[axis if axis is not None else -1] if not isinstance(axis, tuple) else None
    if name == "sparse_categorical_crossentropy":
        lshape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
        y = rng.integers(0, C, lshape)
        if o.get("ignore_class") is not None:
            y[rng.random(lshape) < 0.3] = o["ignore_class"]
        return y, p
    if name in ("categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge") \
            and not o.get("soft"):
        idx = rng.integers(0, C, tuple(s for i, s in enumerate(shape) if i != axis % len(shape)))
        t = np.moveaxis(np.eye(C)[idx], -1, axis % len(shape))
    elif name == "cosine_similarity":
        t = rng.normal(size=shape)
    elif name in ("dice", "tversky"):
        t = (rng.random(shape) < 0.4).astype(np.float64)
    else:
        t = rng.uniform(0, 1, shape)
    return t.astype(dtype), p


def check(name, shape, dtype, rng, o, reduction=None, grad_output=None, scale=1.0):
    t, p = make(name, shape, dtype, rng, o)
    opts = {k: v for k, v in o.items() if k != "soft"}
    fn = getattr(K, name)
    loss, grad = fn(t, p, **opts, reduction=reduction, return_grad=True, grad_output=grad_output)
    dt = np.dtype(dtype)
    acc = np.float64 if dt == np.float64 else np.float32
    assert np.asarray(loss).dtype == acc
    assert grad.dtype == dt and grad.shape == p.shape
    count = None
    if name == "sparse_categorical_crossentropy" and o.get("ignore_class") is not None:
        count = int((t != o["ignore_class"]).sum())
    ref = reduce_np(np_loss(name, t, p, o), reduction, count)
    tol = RTOL[dt] * scale
    np.testing.assert_allclose(np.asarray(loss, np.float64), ref, rtol=tol, atol=ATOL[dt] * scale,
                               err_msg=f"{name} loss")
    pt = t64(p, True)
    tt = t if name == "sparse_categorical_crossentropy" else t64(t)
    L = reduce_th(th_loss(name, tt, pt, o), reduction, count)
    go = torch.ones(()) if grad_output is None else t64(np.asarray(grad_output))
    (L * go).sum().backward()
    e = pt.grad.numpy()
    # Gradient entries are differences like (u_k - U)/s whose rounding scales
    # with the row's largest term, so atol is relative to the largest entry.
    mag = max(1.0, np.abs(e).max())
    if name == "cosine_similarity":
        # Its gradient is -t^/|p| + cos p/|p|^2: two terms of size 1/|p| that
        # cancel (exactly, for 1-element rows), so rounding scales with 1/|p|.
        pp = np.asarray(p, np.float64)
        ax = _ax(o.get("axis", -1), p.ndim)
        mag = max(mag, float((1 / np.sqrt((pp * pp).sum(ax))).max()))
    np.testing.assert_allclose(grad.astype(np.float64), e, rtol=tol,
                               atol=ATOL[dt] * scale * mag, err_msg=f"{name} grad")


# One representative configuration per loss (run under every SIMD target and thread count).
BASIC = {
    "categorical_crossentropy": {},
    "sparse_categorical_crossentropy": {},
    "categorical_focal_crossentropy": {},
    "categorical_hinge": {},
    "cosine_similarity": {},
    "dice": {"axis": -1},
    "tversky": {"axis": -1, "alpha": 0.3, "beta": 0.7},
}


def test_catalog_lists_every_function():
    # The element-wise losses are checked in test_keras_elementwise.py.
    assert set(_catalog.KERAS) == set(K.__all__) and set(BASIC) <= set(K.__all__)
    for name in _catalog.KERAS:
        assert callable(getattr(lossx.keras, name))


# ------------------------------------------------------------------ worked values
YT = np.array([[0, 1, 0], [1, 0, 0]], np.float32)
YP = np.array([[0.15, 0.75, 0.1], [0.75, 0.15, 0.1]], np.float32)


def test_worked_categorical_crossentropy():
    loss = K.categorical_crossentropy(YT, YP)
    np.testing.assert_allclose(loss, [0.2876821, 0.2876821], rtol=1e-6)
    np.testing.assert_allclose(K.categorical_crossentropy(YT, YP, reduction="sum_over_batch_size"),
                               0.2876821, rtol=1e-6)


def test_worked_sparse_categorical_crossentropy():
    loss = K.sparse_categorical_crossentropy(np.array([1, 0]), YP)
    np.testing.assert_allclose(loss, [0.2876821, 0.2876821], rtol=1e-6)


def test_keras_docstring_examples():
    # The examples printed in Keras 3's docstrings (float32).
    f = K.categorical_focal_crossentropy(np.array([[0, 1, 0], [0, 0, 1]]),
                                         np.array([[0.05, 0.9, 0.05], [0.1, 0.85, 0.05]], np.float32))
    np.testing.assert_allclose(f, [2.63401289e-04, 6.75912094e-01], rtol=1e-5)
    yt = np.array([[[[1.0], [1.0]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[0.0], [0.0]]]], np.float32)
    yp = np.array([[[[0.0], [1.0]], [[0.0], [1.0]]], [[[0.4], [0.0]], [[0.0], [0.9]]]], np.float32)
    np.testing.assert_allclose(K.dice(yt, yp, axis=(1, 2, 3)), [0.5, 0.75757575], rtol=1e-6)
    np.testing.assert_allclose(K.dice(yt, yp), 0.6164384, rtol=1e-6)
    c = K.cosine_similarity(np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 1.0]], np.float32),
                            np.array([[1.0, 0.0], [1.0, 1.0], [-1.0, -1.0]], np.float32))
    np.testing.assert_allclose(c, [0.0, -0.99999994, 0.99999994], rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ values and gradients
@pytest.mark.parametrize("name", list(BASIC))
def test_basic_every_target(name, cpu_config, rng):
    check(name, (33, 7), np.float32, rng, BASIC[name], reduction="sum_over_batch_size")
    check(name, (5, 1003), np.float64, rng, BASIC[name])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (4, 33), (3, 5, 9)])
@pytest.mark.parametrize("reduction", [None, "sum", "sum_over_batch_size"])
@pytest.mark.parametrize("name", list(BASIC))
def test_shapes_reductions(name, reduction, shape, dtype, rng):
    check(name, shape, dtype, rng, BASIC[name], reduction=reduction)


OPTIONS = [
    ("categorical_crossentropy", {"from_logits": True}),
    ("categorical_crossentropy", {"label_smoothing": 0.1, "soft": True}),
    ("categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.2}),
    ("categorical_crossentropy", {"axis": 1}),
    ("categorical_crossentropy", {"axis": 0, "from_logits": True}),
    ("sparse_categorical_crossentropy", {"from_logits": True}),
    ("sparse_categorical_crossentropy", {"ignore_class": 2}),
    ("sparse_categorical_crossentropy", {"ignore_class": -1, "from_logits": True}),
    ("sparse_categorical_crossentropy", {"axis": 1}),
    ("sparse_categorical_crossentropy", {"axis": 1, "from_logits": True, "ignore_class": 0}),
    ("categorical_focal_crossentropy", {"from_logits": True}),
    ("categorical_focal_crossentropy", {"alpha": 0.7, "gamma": 0.0}),
    ("categorical_focal_crossentropy", {"gamma": 0.5, "label_smoothing": 0.1, "soft": True}),
    ("categorical_focal_crossentropy", {"alpha": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]}),
    ("categorical_focal_crossentropy", {"axis": 1, "from_logits": True, "gamma": 3.0}),
    ("cosine_similarity", {"axis": 1}),
    ("cosine_similarity", {"axis": (1, 2)}),
    ("dice", {}),
    ("dice", {"axis": (1, 2)}),
    ("dice", {"axis": 0}),
    ("tversky", {}),
    ("tversky", {"alpha": 0.9, "beta": 0.1, "axis": (0, 2)}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,o", OPTIONS, ids=[f"{n}-{o}" for n, o in OPTIONS])
def test_options(name, o, dtype, rng):
    for reduction in (None, "sum_over_batch_size"):
        check(name, (6, 9, 9), dtype, rng, o, reduction=reduction)
        check(name, (2, 1, 9), dtype, rng, o, reduction=reduction)


@pytest.mark.parametrize("name", list(BASIC))
def test_grad_output(name, rng):
    o = BASIC[name]
    check(name, (8, 5), np.float64, rng, o, reduction=None, grad_output=rng.normal(size=(8,)))
    check(name, (8, 5), np.float64, rng, o, reduction="sum", grad_output=-2.5)


@pytest.mark.parametrize("dtype", [np.float16] + ([BF16] if BF16 is not None else []), ids=str)
@pytest.mark.parametrize("name", list(BASIC))
def test_half_inputs(name, dtype, rng):
    check(name, (9, 17), dtype, rng, BASIC[name], reduction="sum_over_batch_size")


def test_long_rows_segments_and_threads(rng):
    # axis=None sums one 70001-element row in fixed segments; bits must not
    # depend on the thread count.
    t = (rng.random((7, 10001)) < 0.5).astype(np.float32)
    p = rng.uniform(0, 1, (7, 10001)).astype(np.float32)
    old = lossx.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            lossx.set_num_threads(n)
            outs.append([K.dice(t, p, return_grad=True), K.tversky(t, p, 0.2, 0.8, return_grad=True),
                         K.cosine_similarity(t, p, axis=(0, 1), return_grad=True),
                         K.categorical_focal_crossentropy(t, p, return_grad=True)])
    finally:
        lossx.set_num_threads(old)
    for a, b in zip(*outs):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    check("dice", (7, 10001), np.float32, rng, {}, scale=10)  # 70001-term float32 sums


# ------------------------------------------------------------------ finite differences
@pytest.mark.parametrize("name,o", [(n, BASIC[n]) for n in BASIC] + [
    ("categorical_focal_crossentropy", {"from_logits": True, "gamma": 1.5}),
    ("categorical_crossentropy", {"label_smoothing": 0.3, "soft": True}),
    ("sparse_categorical_crossentropy", {"ignore_class": 1}),
], ids=str)
def test_finite_differences(name, o, rng):
    t, p = make(name, (4, 6), np.float64, rng, o)
    if not o.get("from_logits") and name not in ("categorical_hinge", "cosine_similarity"):
        p = rng.uniform(0.05, 1.0, p.shape)  # away from the clip's kinks
    opts = {k: v for k, v in o.items() if k != "soft"}
    fn = getattr(K, name)
    _, g = fn(t, p, **opts, reduction="sum", return_grad=True)
    h = 1e-6
    num = np.empty_like(p)
    for idx in np.ndindex(p.shape):
        pp, pm = p.copy(), p.copy()
        pp[idx] += h
        pm[idx] -= h
        num[idx] = (fn(t, pp, **opts, reduction="sum") - fn(t, pm, **opts, reduction="sum")) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ clip, NaN, empty
def test_clip_zeroes_gradient():
    # q = 1e-9 / sum < 1e-7 is clipped: its gradient through the clip is 0, the
    # rest comes only through the normalisation.
    t = np.array([[1.0, 0.0, 0.0]])
    p = np.array([[1e-9, 0.5, 0.5]])
    loss, g = K.categorical_crossentropy(t, p, return_grad=True)
    np.testing.assert_allclose(loss, [-np.log(1e-7)])
    s = p.sum()
    np.testing.assert_allclose(g, [[0.0, 0.0, 0.0]], atol=1e-12)  # U = 0 too
    t2 = np.array([[0.0, 1.0, 0.0]])
    _, g2 = K.categorical_crossentropy(t2, p, return_grad=True)
    u = -1 / (0.5 / s)
    U = u * 0.5 / s
    np.testing.assert_allclose(g2, [[-U / s, (u - U) / s, -U / s]])


def test_nan_propagates():
    p = np.array([[0.2, np.nan, 0.3], [0.2, 0.5, 0.3]])
    t = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    for name in BASIC:
        if name == "sparse_categorical_crossentropy":
            loss = K.sparse_categorical_crossentropy(np.array([0, 0]), p)
        else:
            loss = getattr(K, name)(t, p, **({"axis": -1} if name in ("dice", "tversky") else {}))
        assert np.isnan(loss[0]) and np.isfinite(loss[1]), name


@pytest.mark.parametrize("name", list(BASIC))
def test_empty_batch(name):
    p = np.zeros((0, 4))
    t = np.zeros((0,), np.int64) if name == "sparse_categorical_crossentropy" else np.zeros((0, 4))
    o = {"axis": -1} if name in ("dice", "tversky") else {}
    fn = getattr(K, name)
    assert fn(t, p, **o).shape == (0,)
    # Keras divides with divide_no_nan: an empty mean is 0, not NaN.
    loss, g = fn(t, p, **o, reduction="sum_over_batch_size", return_grad=True)
    assert loss == 0 and g.shape == (0, 4)
    assert fn(t, p, **o, reduction="sum") == 0
    # Per-row grad_output of no rows (this once failed a size check in the binding).
    loss, g = fn(t, p, **o, return_grad=True, grad_output=np.zeros((0,)))
    assert loss.shape == (0,) and g.shape == (0, 4)
    if name in ("dice", "tversky"):  # their default axis=None reduces the empty axis too
        with pytest.raises(ValueError, match="the reduced axis of y_pred is empty"):
            fn(t, p)


def test_all_ignored_mean_is_zero():
    p = np.random.default_rng(0).uniform(0.1, 1, (3, 4))
    loss, g = K.sparse_categorical_crossentropy(np.full(3, 7), p, ignore_class=7,
                                                reduction="sum_over_batch_size", return_grad=True)
    assert loss == 0 and not g.any()


def test_sparse_label_axis_squeezed():
    p = np.random.default_rng(1).uniform(0.1, 1, (5, 3))
    y = np.array([0, 2, 1, 1, 0])
    np.testing.assert_array_equal(K.sparse_categorical_crossentropy(y[:, None], p),
                                  K.sparse_categorical_crossentropy(y, p))
    # Float labels holding integers are accepted (Keras casts them).
    np.testing.assert_array_equal(K.sparse_categorical_crossentropy(y.astype(np.float32), p),
                                  K.sparse_categorical_crossentropy(y, p))


# ------------------------------------------------------------------ bad input
def test_bad_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 5\)"):
        K.categorical_crossentropy(np.zeros((4, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 5\)"):
        K.dice(np.zeros((4, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(3,\).*\(4, 5\)"):
        K.sparse_categorical_crossentropy(np.zeros(3, np.int64), np.ones((4, 5)))


def test_bad_dtype():
    with pytest.raises(TypeError, match="y_pred"):
        K.categorical_crossentropy(np.zeros((2, 3)), np.ones((2, 3), np.int32))
    with pytest.raises(TypeError, match="y_true"):
        K.cosine_similarity(np.array([["a", "b"]]), np.ones((1, 2)))
    with pytest.raises(TypeError, match="integer"):
        K.sparse_categorical_crossentropy(np.array(["x"]), np.ones((1, 2)))


def test_label_out_of_range_index_error():
    p = np.full((4, 3), 0.3)
    with pytest.raises(IndexError, match="label 3 at position 2"):
        K.sparse_categorical_crossentropy(np.array([0, 1, 3, 0]), p)
    with pytest.raises(IndexError, match="label -1 at position 1"):
        K.sparse_categorical_crossentropy(np.array([0, -1, 2, 0]), p, from_logits=True)
    # ignore_class exempts its own value only.
    with pytest.raises(IndexError, match="label 5 at position 3"):
        K.sparse_categorical_crossentropy(np.array([0, -1, 2, 5]), p, ignore_class=-1)


def test_fractional_float_labels_rejected():
    with pytest.raises(ValueError, match="integers"):
        K.sparse_categorical_crossentropy(np.array([0.5, 1.0]), np.ones((2, 3)))


def test_bad_options():
    t, p = np.eye(3), np.full((3, 3), 0.3)
    with pytest.raises(ValueError, match="reduction"):
        K.categorical_crossentropy(t, p, reduction="batchmean")
    with pytest.raises(ValueError, match="label_smoothing"):
        K.categorical_crossentropy(t, p, label_smoothing=1.5)
    with pytest.raises(ValueError, match="axis"):
        K.categorical_crossentropy(t, p, axis=2)
    with pytest.raises(ValueError, match="axis"):
        K.categorical_crossentropy(t, p, axis=True)
    with pytest.raises(ValueError, match=r"alpha.*\(2,\)"):
        K.categorical_focal_crossentropy(t, p, alpha=[0.1, 0.2])
    with pytest.raises(ValueError, match="grad_output"):
        K.dice(t, p, grad_output=1.0)
    with pytest.raises(ValueError, match="grad_output"):
        K.cosine_similarity(t, p, return_grad=True, grad_output=np.ones(4))
    with pytest.raises(ValueError, match="ignore_class"):
        K.sparse_categorical_crossentropy(np.zeros(3, np.int64), p, ignore_class=1.5)
