"""lossx.keras element-wise losses (mean_absolute_error ... squared_hinge) and the
pointwise kernel's row mode they run on.

Values: float64 NumPy translations of Keras 3's formulas (keras/src/losses/losses.py
and backend/*/nn.py binary_crossentropy, keras 3.15). Gradients: torch.autograd on
float64 torch versions of the same formulas, written with TensorFlow's conventions
where Keras clips or takes a maximum (the gradient passes on [lo, hi] inclusive and
where maximum(v, c) has v >= c), plus central finite differences in float64. When
keras itself is importable with its torch backend (not a test dependency),
test_against_keras also compares with keras.losses directly.
"""
import os

import numpy as np
import pytest
import torch

import lossx
from lossx import _catalog, _core, keras as K

from _util import ATOL, BF16, RTOL, t64

EPS = 1e-7
RED = {None: None, "none": None, "sum": "sum", "sum_over_batch_size": "mean"}
SAME_RANK = {"mean_absolute_error", "mean_squared_error", "mean_absolute_percentage_error",
             "mean_squared_logarithmic_error", "huber", "log_cosh"}
NAMES = ["mean_absolute_error", "mean_squared_error", "mean_absolute_percentage_error",
         "mean_squared_logarithmic_error", "huber", "log_cosh", "poisson", "kl_divergence",
         "binary_crossentropy", "binary_focal_crossentropy", "hinge", "squared_hinge"]


# ------------------------------------------------------------------ references
def _smooth(t, o):
    ls = o.get("label_smoothing", 0.0)
    return t * (1 - ls) + 0.5 * ls if ls else t


def _hinge_labels(t):
    return 2 * t - 1 if ((t == 0) | (t == 1)).all() else t


def _hi(dtype):
    # Keras' upper clip 1 - 1e-7 in the compute type (float32 below float64):
    # 1 - float32(1 - 1e-7) is 1.19e-7, not 1e-7.
    return 1 - EPS if np.dtype(dtype) == np.float64 else float(np.float32(1 - EPS))


def np_elem(name, t, p, o, dtype=np.float64):
    """Keras' element losses in float64 NumPy (before the mean / sum over the axis)."""
    if name == "mean_absolute_error":
        return np.abs(t - p)
    if name == "mean_squared_error":
        return (t - p) ** 2
    if name == "mean_absolute_percentage_error":
        return 100 * np.abs((t - p) / np.maximum(np.abs(t), EPS))
    if name == "mean_squared_logarithmic_error":
        return (np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(t, EPS) + 1)) ** 2
    if name == "huber":
        dl = o.get("delta", 1.0)
        e = p - t
        return np.where(np.abs(e) <= dl, 0.5 * e * e, dl * np.abs(e) - 0.5 * dl * dl)
    if name == "log_cosh":
        e = p - t
        return e + np.logaddexp(0, -2 * e) - np.log(2.0)
    if name == "poisson":
        return p - t * np.log(p + EPS)
    if name == "kl_divergence":
        tc, pc = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
        return tc * np.log(tc / pc)
    if name in ("binary_crossentropy", "binary_focal_crossentropy"):
        ts = _smooth(t, o)
        logits = o.get("from_logits", False)
        if name == "binary_crossentropy" and logits:
            return np.maximum(p, 0) - p * ts + np.log1p(np.exp(-np.abs(p)))
        pr = 1 / (1 + np.exp(-p)) if logits else p
        q = np.clip(pr, EPS, _hi(dtype))
        bce = -(ts * np.log(q) + (1 - ts) * np.log(1 - q))
        if name == "binary_crossentropy":
            return bce
        # 1 - p_t, p_t = t p + (1 - t)(1 - p), written without Keras' cancellation
        # (lossx evaluates it so; it matters where p is within rounding of 0 or 1).
        u = ts * (1 - pr) + (1 - ts) * pr
        out = u ** o.get("gamma", 2.0) * bce
        if o.get("apply_class_balancing"):
            a = o.get("alpha", 0.25)
            out = (ts * a + (1 - ts) * (1 - a)) * out
        return out
    tt = _hinge_labels(t)
    m = np.maximum(1 - tt * p, 0)
    return m if name == "hinge" else m * m


def _tmax(v, c):
    # maximum(v, c) with TensorFlow's gradient convention (v gets it where v >= c).
    return torch.where(v >= c, v, torch.full_like(v, c))


def th_elem(name, t, p, o, dtype=np.float64):
    """The same in float64 torch, differentiable in p."""
    if name == "mean_absolute_error":
        return torch.abs(t - p)
    if name == "mean_squared_error":
        return (t - p) ** 2
    if name == "mean_absolute_percentage_error":
        return 100 * torch.abs((t - p) / torch.clamp(torch.abs(t), min=EPS))
    if name == "mean_squared_logarithmic_error":
        return (torch.log(_tmax(p, EPS) + 1) - torch.log(torch.clamp(t, min=EPS) + 1)) ** 2
    if name == "huber":
        dl = o.get("delta", 1.0)
        e = p - t
        return torch.where(torch.abs(e) <= dl, 0.5 * e * e, dl * torch.abs(e) - 0.5 * dl * dl)
    if name == "log_cosh":
        e = p - t
        # softplus's default threshold (20) makes it linear above 20, which in
        # float64 puts a 3e-9 error in the gradient for |e| > 10 (a flaky failure
        # against lossx's exact tanh); no threshold keeps the reference exact.
        return e + torch.nn.functional.softplus(-2 * e, threshold=1e4) - np.log(2.0)
    if name == "poisson":
        return p - t * torch.log(p + EPS)
    if name == "kl_divergence":
        tc, pc = torch.clamp(t, EPS, 1), torch.clamp(p, EPS, 1)
        return tc * torch.log(tc / pc)
    if name in ("binary_crossentropy", "binary_focal_crossentropy"):
        ts = _smooth(t, o)
        logits = o.get("from_logits", False)
        if name == "binary_crossentropy" and logits:
            return torch.nn.functional.binary_cross_entropy_with_logits(p, ts, reduction="none")
        pr = torch.sigmoid(p) if logits else p
        q = torch.clamp(pr, EPS, _hi(dtype))
        bce = -(ts * torch.log(q) + (1 - ts) * torch.log(1 - q))
        if name == "binary_crossentropy":
            return bce
        # 1 - p_t, p_t = t p + (1 - t)(1 - p), written without Keras' cancellation
        # (lossx evaluates it so; it matters where p is within rounding of 0 or 1).
        u = ts * (1 - pr) + (1 - ts) * pr
        out = u ** o.get("gamma", 2.0) * bce
        if o.get("apply_class_balancing"):
            a = o.get("alpha", 0.25)
            out = (ts * a + (1 - ts) * (1 - a)) * out
        return out
    tt = t64(_hinge_labels(t.detach().numpy()))
    m = _tmax(1 - tt * p, 0.0)
    return m if name == "hinge" else m * m


def _rows(name, elem, axis):
    return elem.sum(axis) if name == "kl_divergence" else elem.mean(axis)


def reduce_np(loss, reduction):
    r = RED[reduction]
    if r is None:
        return loss
    if r == "sum":
        return loss.sum()
    return loss.sum() / loss.size if loss.size else 0.0


def reduce_th(loss, reduction):
    r = RED[reduction]
    if r is None:
        return loss
    return loss.sum() if r == "sum" or loss.numel() == 0 else loss.sum() / loss.numel()


# ------------------------------------------------------------------ inputs
def make(name, shape, dtype, rng, o, smooth=False):
    """(y_true, y_pred) in each loss's domain, with some entries on the clipped
    side of Keras' clips (their gradient must be 0) and none at a kink."""
    n = int(np.prod(shape))

    def sprinkle(p, values):
        if n > 4:
            flat = p.reshape(-1)
            for v in values:
                flat[rng.choice(n, max(1, n // 12), replace=False)] = v
        return p

    if name in ("mean_absolute_error", "mean_squared_error", "huber", "log_cosh"):
        t, p = rng.normal(0, 1.5, shape), rng.normal(0, 1.5, shape)
    elif name == "mean_absolute_percentage_error":
        # |y_true| away from 0: the gradient is 100 / |y_true|.
        t = rng.uniform(0.3, 2.0, shape) * np.where(rng.random(shape) < 0.5, -1, 1)
        p = rng.normal(0, 1.5, shape)
    elif name == "mean_squared_logarithmic_error":
        t, p = rng.uniform(-0.5, 3.0, shape), rng.uniform(0.01, 3.0, shape)
        p = sprinkle(p, [-0.7])  # below eps: the maximum is flat there
    elif name == "poisson":
        t, p = rng.uniform(0.0, 4.0, shape), rng.uniform(0.05, 3.0, shape)
    elif name == "kl_divergence":
        t, p = rng.uniform(0.0, 1.0, shape), rng.uniform(0.01, 1.0, shape)
        p = sprinkle(p, [1e-10, 1.5])  # outside [eps, 1]: clipped
    elif name in ("binary_crossentropy", "binary_focal_crossentropy"):
        t = rng.uniform(0, 1, shape) if smooth else (rng.random(shape) < 0.5).astype(np.float64)
        if o.get("from_logits"):
            p = sprinkle(rng.normal(0, 3, shape), [40.0, -40.0])  # sigmoid saturates
        else:
            p = sprinkle(rng.uniform(0.02, 0.98, shape), [1e-10, 1.0])  # clipped
    else:  # hinge, squared_hinge
        if o.get("pm1"):
            t = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
        elif o.get("real"):
            t = rng.normal(0, 1, shape)
        else:
            t = (rng.random(shape) < 0.5).astype(np.float64)
        p = rng.normal(0, 1.5, shape)
    return t.astype(dtype), p.astype(dtype)


def opts_of(o):
    return {k: v for k, v in o.items() if k not in ("pm1", "real", "soft")}


def check(name, shape, dtype, rng, o, reduction=None, grad_output=None, scale=1.0):
    t, p = make(name, shape, dtype, rng, o, smooth=o.get("soft", False))
    fn = getattr(K, name)
    loss, grad = fn(t, p, **opts_of(o), reduction=reduction, return_grad=True, grad_output=grad_output)
    dt = np.dtype(dtype)
    acc = np.float64 if dt == np.float64 else np.float32
    assert np.asarray(loss).dtype == acc
    assert grad.dtype == dt and grad.shape == p.shape
    axis = o.get("axis", -1)
    t64_, p64 = np.asarray(t, np.float64), np.asarray(p, np.float64)
    ref = reduce_np(_rows(name, np_elem(name, t64_, p64, o, dtype), axis), reduction)
    assert np.shape(loss) == np.shape(ref)
    tol = RTOL[dt] * scale
    np.testing.assert_allclose(np.asarray(loss, np.float64), ref, rtol=tol, atol=ATOL[dt] * scale,
                               err_msg=f"{name} loss")
    pt = t64(p, True)
    L = reduce_th(_rows(name, th_elem(name, t64(t), pt, o, dtype), axis), reduction)
    go = torch.ones(()) if grad_output is None else t64(np.asarray(grad_output))
    (L * go).sum().backward()
    e = pt.grad.numpy()
    if o.get("gamma", 2.0) < 1:
        # Where 1 - p_t = 0 (a clipped p equal to its label) d(1-p_t)^gamma is infinite:
        # lossx returns +-inf, autograd's product form inf * 0 = NaN.
        bad = ~np.isfinite(e)
        assert not np.isfinite(grad[bad]).any()
        e = np.where(bad, 0.0, e)
        grad = np.where(bad, 0, grad)
    mag = max(1.0, np.abs(e).max())  # gradients are rounded relative to the largest entry of a row
    np.testing.assert_allclose(grad.astype(np.float64), e, rtol=tol, atol=ATOL[dt] * scale * mag,
                               err_msg=f"{name} grad")


BASIC = {name: {} for name in NAMES}


def test_catalog_lists_every_function():
    from test_keras import BASIC as ROWS

    assert set(_catalog.KERAS) == set(K.__all__) == set(ROWS) | set(NAMES)
    for name in NAMES:
        assert callable(getattr(lossx.keras, name)) and getattr(K, name).__doc__
    # The Keras kinds stay out of the top-level (torch) table.
    assert not any(n.startswith("keras.") for n in _core.pointwise_names)
    assert set(_core.pointwise_names) < set(_core.pointwise_codes)


# ------------------------------------------------------------------ worked values
def test_worked_values():
    # CATALOG.md: MAE y_true=[1,0], y_pred=[2,3] -> 2.0; MSE -> 5.0 (float32).
    yt, yp = np.array([1, 0], np.float32), np.array([2, 3], np.float32)
    assert K.mean_absolute_error(yt, yp) == np.float32(2.0)
    assert K.mean_squared_error(yt, yp) == np.float32(5.0)


def test_keras_docstring_examples():
    # The examples printed in Keras 3's docstrings (float32).
    yt = np.array([[0, 1], [0, 0]])
    yp = np.array([[0.6, 0.4], [0.4, 0.6]], np.float32)
    np.testing.assert_allclose(K.binary_crossentropy(yt, yp), [0.916, 0.714], atol=5e-4)
    np.testing.assert_allclose(K.binary_focal_crossentropy(yt, yp, gamma=2), [0.330, 0.206], atol=5e-4)
    a = np.array([[0.0, 1.0], [0.0, 0.0]], np.float32)
    b = np.array([[0.6, 0.4], [0.4, 0.6]], np.float32)
    np.testing.assert_allclose(K.huber(a, b, reduction="sum_over_batch_size"), 0.155, atol=5e-4)
    np.testing.assert_allclose(K.log_cosh(a, np.array([[1.0, 1.0], [0.0, 0.0]], np.float32),
                                          reduction="sum_over_batch_size"), 0.108, atol=5e-4)
    # BinaryFocalCrossentropy class examples, reduced with sum_over_batch_size.
    yt4 = np.array([0, 1, 0, 0])
    yp4 = np.array([-18.6, 0.51, 2.94, -12.8], np.float32)
    np.testing.assert_allclose(np.mean(K.binary_focal_crossentropy(yt4, yp4, gamma=2, from_logits=True)),
                               0.691, atol=5e-4)
    np.testing.assert_allclose(np.mean(K.binary_focal_crossentropy(
        yt4, yp4, apply_class_balancing=True, gamma=2, from_logits=True)), 0.51, atol=5e-3)


# ------------------------------------------------------------------ values and gradients
@pytest.mark.parametrize("name", NAMES)
def test_basic_every_target(name, cpu_config, rng):
    check(name, (33, 7), np.float32, rng, BASIC[name], reduction="sum_over_batch_size")
    check(name, (5, 1003), np.float64, rng, BASIC[name])
    check(name, (41,), np.float32, rng, BASIC[name], reduction="sum")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (4, 33), (3, 5, 9), (17,), (9, 1)])
@pytest.mark.parametrize("reduction", [None, "sum", "sum_over_batch_size"])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_reductions(name, reduction, shape, dtype, rng):
    check(name, shape, dtype, rng, BASIC[name], reduction=reduction)


OPTIONS = [
    ("huber", {"delta": 0.5}),
    ("huber", {"delta": 2.5}),
    ("huber", {"delta": 0.0}),
    ("binary_crossentropy", {"from_logits": True}),
    ("binary_crossentropy", {"label_smoothing": 0.2}),
    ("binary_crossentropy", {"label_smoothing": 0.1, "soft": True}),
    ("binary_crossentropy", {"from_logits": True, "label_smoothing": 0.3}),
    ("binary_crossentropy", {"axis": 1}),
    ("binary_crossentropy", {"axis": 0, "from_logits": True}),
    ("binary_focal_crossentropy", {"from_logits": True}),
    ("binary_focal_crossentropy", {"apply_class_balancing": True}),
    ("binary_focal_crossentropy", {"apply_class_balancing": True, "alpha": 0.7, "from_logits": True}),
    ("binary_focal_crossentropy", {"gamma": 0.0}),
    ("binary_focal_crossentropy", {"gamma": 1.5, "label_smoothing": 0.1, "soft": True}),
    ("binary_focal_crossentropy", {"gamma": 3.0, "from_logits": True, "label_smoothing": 0.2}),
    ("binary_focal_crossentropy", {"gamma": 0.5, "axis": 1}),
    ("binary_focal_crossentropy", {"gamma": 1.0, "axis": 0, "apply_class_balancing": True}),
    ("hinge", {"pm1": True}),
    ("hinge", {"real": True}),  # not all 0/1: Keras leaves the labels as they are
    ("squared_hinge", {"pm1": True}),
    ("squared_hinge", {"real": True}),
]


# Every loss once, and the options that change the layout or the kernel's flags
# (tests/test_gpu_wrappers_emulated.py runs these through the GPU backend).
KERAS_EW_OPTIONS_FOR_GPU = [(n, {}) for n in NAMES] + [
    ("binary_crossentropy", {"axis": 0, "from_logits": True}),
    ("binary_focal_crossentropy", {"gamma": 1.0, "axis": 0, "apply_class_balancing": True}),
    ("hinge", {"pm1": True}),
    ("squared_hinge", {"real": True}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,o", OPTIONS, ids=[f"{n}-{o}" for n, o in OPTIONS])
def test_options(name, o, dtype, rng):
    for reduction in (None, "sum_over_batch_size"):
        check(name, (6, 9, 9), dtype, rng, o, reduction=reduction)
        check(name, (2, 1, 9), dtype, rng, o, reduction=reduction)


@pytest.mark.parametrize("name", NAMES)
def test_grad_output(name, rng):
    o = BASIC[name]
    check(name, (8, 5), np.float64, rng, o, reduction=None, grad_output=rng.normal(size=(8,)))
    check(name, (8, 5), np.float64, rng, o, reduction="sum", grad_output=-2.5)
    check(name, (8, 5), np.float32, rng, o, reduction="sum_over_batch_size", grad_output=0.75)
    check(name, (8, 5), np.float64, rng, o, reduction=None, grad_output=1.5)


@pytest.mark.parametrize("dtype", [np.float16] + ([BF16] if BF16 is not None else []), ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_half_inputs(name, dtype, rng):
    # The reference sees the same rounded inputs; the kernel computes in float32.
    check(name, (9, 17), dtype, rng, BASIC[name], reduction="sum_over_batch_size")
    check(name, (4, 3), dtype, rng, BASIC[name])


# ------------------------------------------------------------------ row mode, long rows, threads
@pytest.mark.parametrize("shape", [(3, 8191), (2, 20000), (5, 8192), (16385, 1), (4099, 3), (1, 40001),
                                   (3, 30011)])  # 11 chunks: rows split across both threads
def test_rows_crossing_chunks(shape, cpu_config, rng):
    # The kernel works in fixed 8192-element chunks: rows that cross one or more
    # chunk boundaries are summed from pieces; values and gradients as elsewhere.
    for name in ("mean_squared_error", "binary_crossentropy", "kl_divergence"):
        check(name, shape, np.float32, rng, {}, scale=5)  # up to 40001-term float32 row sums
        check(name, shape, np.float64, rng, {}, reduction=None, grad_output=rng.normal(size=shape[:-1]))


def test_bit_identical_across_threads(rng):
    t, p = make("log_cosh", (7, 10001), np.float32, rng, {})
    tb, pb = make("binary_focal_crossentropy", (33, 1999), np.float32, rng, {"from_logits": True})
    old = lossx.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            lossx.set_num_threads(n)
            res = []
            for red in (None, "sum", "sum_over_batch_size"):
                res.append(K.log_cosh(t, p, reduction=red, return_grad=True))
                res.append(K.binary_focal_crossentropy(tb, pb, from_logits=True, reduction=red, return_grad=True,
                                                       grad_output=np.arange(33.0) if red is None else 2.0))
            outs.append(res)
    finally:
        lossx.set_num_threads(old)
    for a, b in zip(*outs):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("L", [1, 3, 16, 8191, 8193, 20000])
@pytest.mark.parametrize("reduction", [0, 1, 2])
def test_row_mode_kernel(L, reduction, cpu_config, rng):
    # The kernel's row mode on its own (torch's mse_loss functor, any row_scale):
    # row r's loss is row_scale * sum of its element losses; kSum / kMean reduce rows.
    M = max(1, 30000 // L)
    x, y = rng.normal(size=M * L), rng.normal(size=M * L)
    go = rng.normal(size=M) if reduction == 0 else np.array([1.7])
    scale = 0.37
    loss = np.empty(M if reduction == 0 else 1)
    grad = np.empty(M * L)
    _core.keras_pointwise(0, 0, 1, _core.pointwise_codes["mse_loss"], M * L, L, scale, y, x, 1.0, False, 0.0,
                          False, 0.25, 2.0, False, reduction, loss, grad, go)
    rows = scale * ((x - y) ** 2).reshape(M, L).sum(1)
    ref = rows if reduction == 0 else (rows.mean() if reduction == 1 else rows.sum())
    np.testing.assert_allclose(loss if reduction == 0 else loss[0], ref, rtol=1e-12)
    gs = np.repeat(go, L) if reduction == 0 else go[0] / (M if reduction == 1 else 1)
    np.testing.assert_allclose(grad, 2 * (x - y) * scale * gs, rtol=1e-12, atol=1e-14)


def test_torch_pointwise_untouched_by_row_fields(rng):
    # Element mode (row_len 0) is the torch path: still one value per element.
    x, y = rng.normal(size=37), rng.normal(size=37)
    np.testing.assert_allclose(lossx.mse_loss(x, y, reduction="none"), (x - y) ** 2, rtol=1e-14)


# ------------------------------------------------------------------ finite differences
FD = [(n, {}) for n in NAMES] + [
    ("huber", {"delta": 0.7}),
    ("binary_crossentropy", {"from_logits": True, "label_smoothing": 0.2}),
    ("binary_focal_crossentropy", {"from_logits": True, "gamma": 1.5, "apply_class_balancing": True}),
    ("binary_focal_crossentropy", {"gamma": 2.5, "label_smoothing": 0.1, "soft": True}),
    ("hinge", {"real": True}),
]


@pytest.mark.parametrize("name,o", FD, ids=str)
def test_finite_differences(name, o, rng):
    t, p = make(name, (4, 6), np.float64, rng, o, smooth=o.get("soft", False))
    # Away from kinks: inside the clips, |e| away from delta, hinge margins away from 0.
    if name in ("kl_divergence", "binary_crossentropy", "binary_focal_crossentropy") and not o.get("from_logits"):
        p = rng.uniform(0.05, 0.95, p.shape)
    if name == "binary_crossentropy" or name == "binary_focal_crossentropy":
        if o.get("from_logits"):
            p = rng.normal(0, 2, p.shape)
    if name == "mean_squared_logarithmic_error":
        p = rng.uniform(0.05, 3.0, p.shape)
    if name in ("hinge", "squared_hinge"):
        tt = _hinge_labels(t)
        m = 1 - tt * p
        p = np.where(np.abs(m) < 0.05, p + 0.2, p)
    if name == "huber":
        e = p - t
        p = np.where(np.abs(np.abs(e) - o.get("delta", 1.0)) < 0.05, p + 0.2, p)
    fn = getattr(K, name)
    kw = opts_of(o)
    _, g = fn(t, p, **kw, reduction="sum", return_grad=True)
    h = 1e-6
    num = np.empty_like(p)
    for idx in np.ndindex(p.shape):
        pp, pm = p.copy(), p.copy()
        pp[idx] += h
        pm[idx] -= h
        num[idx] = (fn(t, pp, **kw, reduction="sum") - fn(t, pm, **kw, reduction="sum")) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ clips, NaN, empty, ranks
def test_clipped_entries_have_zero_gradient():
    t = np.array([[0.3, 0.7, 0.5]])
    _, g = K.kl_divergence(t, np.array([[1e-9, 1.5, 0.5]]), return_grad=True)
    assert g[0, 0] == 0 and g[0, 1] == 0 and g[0, 2] == -1.0  # -t / q inside
    _, g = K.binary_crossentropy(np.array([[1.0, 0.0, 1.0]]), np.array([[1e-9, 1.0, 0.5]]), return_grad=True)
    assert g[0, 0] == 0 and g[0, 1] == 0 and g[0, 2] != 0
    _, g = K.mean_squared_logarithmic_error(np.array([[1.0, 1.0]]), np.array([[-3.0, 2.0]]), return_grad=True)
    assert g[0, 0] == 0 and g[0, 1] != 0
    # The clip's boundary itself passes the gradient (TensorFlow's clip_by_value).
    _, g = K.kl_divergence(np.array([[0.5]]), np.array([[1.0]]), return_grad=True)
    assert g[0, 0] == -0.5


def test_hinge_label_conversion_is_global():
    p = np.array([[0.3, -0.2], [0.8, 1.4]])
    binary = np.array([[0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(K.hinge(binary, p), np.maximum(1 - (2 * binary - 1) * p, 0).mean(-1))
    mixed = np.array([[0.0, 1.0], [1.0, 2.0]])  # one label is 2: nothing is converted
    np.testing.assert_allclose(K.hinge(mixed, p), np.maximum(1 - mixed * p, 0).mean(-1))


@pytest.mark.parametrize("name", NAMES)
def test_nan_propagates(name):
    t = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    p = np.array([[0.2, np.nan, 0.3], [0.2, 0.5, 0.3]])
    loss, g = getattr(K, name)(t, p, return_grad=True)
    assert np.isnan(loss[0]) and np.isfinite(loss[1]), name
    assert np.isnan(g[0, 1]) and np.isfinite(g[1]).all(), name


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch(name):
    p = np.zeros((0, 4))
    fn = getattr(K, name)
    assert fn(p, p).shape == (0,)
    # Keras' divide_no_nan: an empty mean is 0, not NaN.
    loss, g = fn(p, p, reduction="sum_over_batch_size", return_grad=True)
    assert loss == 0 and g.shape == (0, 4)
    assert fn(p, p, reduction="sum") == 0


def test_rank_matching_like_keras(rng):
    # squeeze_or_expand_to_same_rank: (N,) against (N, 1) is expanded; (N, 5, 1)
    # against (N, 5) is squeezed. The gradient keeps y_pred's own shape.
    t = rng.normal(size=6)
    p = rng.normal(size=(6, 1))
    loss, g = K.mean_squared_error(t, p, return_grad=True)
    np.testing.assert_allclose(loss, (t - p[:, 0]) ** 2)
    assert g.shape == (6, 1)
    t3 = rng.normal(size=(2, 5, 1))
    p2 = rng.normal(size=(2, 5))
    np.testing.assert_allclose(K.log_cosh(t3, p2), np.log(np.cosh(p2 - t3[..., 0])).mean(-1))
    p3 = rng.normal(size=(2, 5, 1))
    loss, g = K.huber(p2, p3, return_grad=True)
    assert loss.shape == (2,) and g.shape == (2, 5, 1)
    # poisson, kl_divergence, the cross entropies and hinges do not match ranks in Keras.
    with pytest.raises(ValueError, match=r"\(6,\).*\(6, 1\)"):
        K.poisson(np.abs(t), np.abs(p))


def test_log_cosh_accurate_near_zero():
    # Keras' x + softplus(-2x) - log 2 loses everything to cancellation for small x
    # in float32; lossx's evaluation keeps the relative accuracy.
    e = np.array([[1e-4, -3e-3, 2e-2, 0.5, -0.99, 1.0, 3.0, -30.0, 100.0]], np.float32)
    ref = np.log(np.cosh(e.astype(np.float64)))
    ref[0, -1] = 100.0 - np.log(2.0)
    loss = K.log_cosh(np.zeros((9, 1), np.float32), e.T)
    np.testing.assert_allclose(loss, ref[0], rtol=3e-6)


def test_y_true_int_and_bool():
    p = np.array([[0.2, 0.9], [0.6, 0.4]], np.float32)
    for t in (np.array([[0, 1], [1, 0]]), np.array([[False, True], [True, False]])):
        np.testing.assert_array_equal(K.binary_crossentropy(t, p),
                                      K.binary_crossentropy(t.astype(np.float32), p))


# ------------------------------------------------------------------ bad input
def test_bad_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 5\)"):
        K.mean_squared_error(np.zeros((4, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(4, 1\).*\(4, 5\)"):  # Keras would broadcast
        K.binary_crossentropy(np.zeros((4, 1)), np.ones((4, 5)) / 2)


def test_bad_dtype():
    with pytest.raises(TypeError, match="y_pred"):
        K.mean_absolute_error(np.zeros((2, 3)), np.ones((2, 3), np.int32))
    with pytest.raises(TypeError, match="y_true"):
        K.hinge(np.array([["a", "b"]]), np.ones((1, 2)))


def test_bad_options():
    t, p = np.eye(3), np.full((3, 3), 0.3)
    with pytest.raises(ValueError, match="reduction"):
        K.poisson(t, p, reduction="mean_over_everything")
    with pytest.raises(ValueError, match="label_smoothing"):
        K.binary_crossentropy(t, p, label_smoothing=1.5)
    with pytest.raises(ValueError, match="delta"):
        K.huber(t, p, delta=-1.0)
    with pytest.raises(ValueError, match="delta"):
        K.huber(t, p, delta=float("nan"))
    with pytest.raises(ValueError, match="gamma"):
        K.binary_focal_crossentropy(t, p, gamma=float("inf"))
    with pytest.raises(ValueError, match="alpha"):
        K.binary_focal_crossentropy(t, p, apply_class_balancing=True, alpha="x")
    with pytest.raises(ValueError, match="apply_class_balancing"):
        K.binary_focal_crossentropy(t, p, apply_class_balancing="yes")
    with pytest.raises(ValueError, match="from_logits"):
        K.binary_crossentropy(t, p, from_logits="no")
    with pytest.raises(ValueError, match="axis"):
        K.binary_crossentropy(t, p, axis=2)
    with pytest.raises(ValueError, match="axis"):
        K.binary_focal_crossentropy(t, p, axis=1.0)
    with pytest.raises(ValueError, match="grad_output"):
        K.kl_divergence(t, p, grad_output=1.0)
    with pytest.raises(ValueError, match=r"grad_output.*\(4,\)"):
        K.log_cosh(t, p, return_grad=True, grad_output=np.ones(4))
    with pytest.raises(ValueError, match="empty"):
        K.mean_squared_error(np.zeros((3, 0)), np.zeros((3, 0)))
    with pytest.raises(ValueError, match="scalar"):
        K.mean_squared_error(np.float64(1.0), np.float64(2.0))


def test_kernel_rules():
    # The C++ dispatcher's own checks (reachable from C++ callers): row_len must
    # divide n, and the Keras kinds have no y_true gradient.
    x = np.full(10, 0.5)
    loss = np.empty(10)
    with pytest.raises(ValueError, match="row_len"):
        _core.keras_pointwise(0, 0, 1, _core.pointwise_codes["keras.poisson"], 10, 3, 1.0, x, x, 1.0, False,
                              0.0, False, 0.25, 2.0, False, 2, loss, None, None)
    with pytest.raises(ValueError, match="y_true"):
        _core.pointwise(0, 0, 1, _core.pointwise_codes["keras.poisson"], 10, x, x, None, 1, None, 1, 1.0, False,
                        True, False, 0, 0.0, loss, np.empty(10), np.empty(10), None, None, None, -1.0, 2.0, 1.0, 0, 1.0)


# ------------------------------------------------------------------ keras itself, where installed
KERAS_CASES = [(n, {}) for n in NAMES] + [(n, o) for n, o in OPTIONS if "axis" not in o]


@pytest.mark.parametrize("name,o", KERAS_CASES, ids=str)
def test_against_keras(name, o, rng):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch" or not hasattr(keras.losses, name):
        pytest.skip("needs keras 3 with its torch backend")
    t, p = make(name, (5, 11), np.float64, rng, o, smooth=o.get("soft", False))
    kw = opts_of(o)
    pt = torch.tensor(p, requires_grad=True)
    ref = getattr(keras.losses, name)(torch.tensor(t), pt, **kw)
    ref.sum().backward()
    loss, g = getattr(K, name)(t, p, **kw, return_grad=True)
    # Keras' torch backend promotes float64 with float32 to float32 (JAX's rule),
    # so its means and some products are float32: float32-level tolerances.
    e = pt.grad.numpy()
    np.testing.assert_allclose(loss, ref.detach().double().numpy(), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(g, e, rtol=2e-6, atol=1e-7 * max(1.0, np.abs(e).max()))
