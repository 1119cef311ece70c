"""gaussian_nll_loss, hinge_embedding_loss and sigmoid_focal_loss (pointwise family)
against torch 2.13 float64 autograd, plus finite differences as a second oracle.

torchvision is not a test dependency: its sigmoid_focal_loss is carried here as
the float64 torch expression it is (torchvision/ops/focal_loss.py)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossx

from _util import ATOL, BF16, RTOL, close, t64

REDUCTIONS = ["none", "mean", "sum"]
SHAPES = [(7,), (33,), (1003,), (3, 5, 7)]
HALF = [np.float16] + ([BF16] if BF16 is not None else [])


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha is not None and alpha >= 0:  # torchvision: `if alpha >= 0` (None is lossx's spelling of "off")
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "none":
        return loss
    return loss.mean() if reduction == "mean" else loss.sum()


def _reduced_scale(reduction, n):
    # Reductions add n float32 roundings; allow their growth (as test_pointwise.py).
    return 1.0 if reduction == "none" else max(1.0, np.sqrt(n) / 8)


def _gref(ref, go):
    if go is None:
        return torch.ones_like(ref)
    return torch.full_like(ref, go) if np.isscalar(go) else t64(go)


# ---- gaussian_nll_loss ----------------------------------------------------------------------------

VAR_KINDS = ["same", "last1", "drop_last", "mid1", "scalar"]


def _var_shape(kind, shape):
    if kind == "same":
        return shape
    if kind == "last1":
        return shape[:-1] + (1,)
    if kind == "drop_last":
        return shape[:-1]  # () for a 1-D input: torch accepts a 0-d var there
    if kind == "mid1":
        k = len(shape) // 2
        return shape[:k] + (1,) + shape[k + 1:]
    raise AssertionError(kind)


def _make_gauss(rng, shape, kind, lo=0.2):
    x = rng.standard_normal(shape) * 2
    y = rng.standard_normal(shape) * 2
    v = float(rng.uniform(lo, 3.0)) if kind == "scalar" else rng.uniform(lo, 3.0, _var_shape(kind, shape))
    return x, y, v


def check_gauss(x, y, v, dtype, reduction, full=False, eps=1e-6, go=None):
    """lossx vs torch autograd on the same dtype-rounded values; returns lossx's outputs."""
    x, y = x.astype(dtype), y.astype(dtype)
    scalar = np.isscalar(v)
    if not scalar:
        v = v.astype(dtype)
    loss, (gx, gy, gv) = lossx.gaussian_nll_loss(x, y, v, full, eps, reduction, return_grad=True, grad_output=go)
    xt, yt = t64(x, True), t64(y, True)
    vt = t64(np.float64(v) if scalar else v, True)
    # A Python-number var gets no gradient in torch: differentiate through a 0-d tensor expanded to the input.
    ref = F.gaussian_nll_loss(xt, yt, vt.expand(x.shape) if scalar else vt, full=full, eps=eps, reduction=reduction)
    if scalar:  # the value also agrees with torch's own float-var path
        close(ref.detach(), F.gaussian_nll_loss(xt.detach(), yt.detach(), float(v), full=full, eps=eps,
                                                reduction=reduction), np.float64)
    ref.backward(_gref(ref, go))
    scale = _reduced_scale(reduction, x.size)
    close(loss, ref, dtype, scale, "loss")
    close(gx, xt.grad, dtype, scale, "d_input")
    close(gy, yt.grad, dtype, scale, "d_target")
    # d_var = 0.5 (1/v - d^2/v^2) cancels where d^2 ~ v, and a broadcast var sums
    # many of them: bound its error by the sum of the magnitudes of the two terms.
    with torch.no_grad():
        vu = vt
        if not scalar and tuple(vt.shape) != x.shape and tuple(vt.shape) == x.shape[:-1]:
            vu = vt.unsqueeze(-1)  # torch's homoscedastic rule
        vc = vu.expand(x.shape).clamp(min=eps)
        g = _gref(ref, go).expand(x.shape) / (x.size if reduction == "mean" else 1)
        mag = (g.abs() * 0.5 * (1 / vc + (xt - yt) ** 2 / vc ** 2))
        mag = mag.sum() if scalar else mag.sum_to_size(vu.shape).reshape(vt.shape)
    err = np.abs(np.asarray(gv, np.float64) - vt.grad.numpy())
    bound = 8 * RTOL[np.dtype(dtype)] * mag.numpy() + ATOL[np.dtype(dtype)]
    assert np.all(err <= bound), f"d_var: max err {err.max()} vs bound {bound.min()}"
    assert gx.dtype == gy.dtype == np.dtype(dtype)
    assert gv.shape == (() if scalar else v.shape)
    assert gv.dtype == np.dtype(dtype)
    loss2 = lossx.gaussian_nll_loss(x, y, v, full, eps, reduction)
    np.testing.assert_array_equal(np.asarray(loss2), np.asarray(loss))
    return loss, (gx, gy, gv)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("full", [False, True], ids=["part", "full"])
@pytest.mark.parametrize("kind", VAR_KINDS)
def test_gaussian_against_torch(kind, full, reduction, dtype, shape, rng):
    x, y, v = _make_gauss(rng, shape, kind)
    check_gauss(x, y, v, dtype, reduction, full=full)


@pytest.mark.parametrize("kind", ["same", "last1", "mid1"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_gaussian_simd_targets_threads(kind, reduction, cpu_config, rng):
    check_gauss(*_make_gauss(rng, (1003,), kind), np.float32, reduction)
    check_gauss(*_make_gauss(rng, (3, 5, 7), kind), np.float64, reduction, full=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_gaussian_var_below_eps(dtype, rng):
    # Clamped entries (0, below eps): torch clamps under no_grad, so their var
    # gradient is the formula at eps, not 0 -- lossx matches that.
    x, y, v = _make_gauss(rng, (4, 9), "same")
    v[0, :4] = [0.0, 1e-9, 1e-7, 0.999e-3]
    v[2, 3] = 0.0
    for eps in (1e-6, 1e-3):
        _, (_, _, gv) = check_gauss(x, y, v, dtype, "none", eps=eps)
        assert gv[0, 0] != 0


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", ["same", "last1"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_gaussian_half(kind, dtype, reduction, rng):
    # The kernel computes in float32 on the rounded inputs; gradients are rounded to the input dtype.
    x, y, v = _make_gauss(rng, (5, 33), kind, lo=0.5)
    check_gauss(x, y, v, dtype, reduction)


def test_gaussian_grad_output(rng):
    shape = (4, 9)
    for kind in ("same", "last1", "scalar"):
        x, y, v = _make_gauss(rng, shape, kind)
        check_gauss(x, y, v, np.float64, "sum", go=2.5)
        check_gauss(x, y, v, np.float64, "mean", go=np.array(-0.75))
        check_gauss(x, y, v, np.float64, "none", go=rng.standard_normal(shape))
        check_gauss(x, y, v, np.float32, "none", go=1.5)


def test_gaussian_mixed_dtypes(rng):
    # var is cast to the input's dtype; its gradient comes back in var's own dtype (like target's).
    x, y = rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal((6, 5)).astype(np.float32)
    v = rng.uniform(0.3, 2.0, (6, 1))
    loss, (gx, gy, gv) = lossx.gaussian_nll_loss(x, y, v, return_grad=True)
    assert gx.dtype == np.float32 and gv.dtype == np.float64 and gv.shape == (6, 1)
    xt, yt, vt = t64(x, True), t64(y, True), t64(v.astype(np.float32), True)
    r = F.gaussian_nll_loss(xt, yt, vt)
    r.backward()
    close(loss, r, np.float32)
    close(gv, vt.grad, np.float32)


def test_gaussian_zero_dim(rng):
    x, y = np.array(0.3), np.array(-0.4)
    for v in (np.array(0.7), 0.7):
        loss, (gx, gy, gv) = lossx.gaussian_nll_loss(x, y, v, reduction="sum", return_grad=True)
        xt, yt, vt = t64(x, True), t64(y, True), t64(np.float64(v), True)
        r = F.gaussian_nll_loss(xt, yt, vt, reduction="sum")
        r.backward()
        assert np.shape(loss) == () and gx.shape == gy.shape == gv.shape == ()
        close(loss, r, np.float64)
        close(gv, vt.grad, np.float64)


# ---- hinge_embedding_loss ----------------------------------------------------------------------


def _pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


def check_hinge(x, y, dtype, reduction, margin=1.0, go=None):
    x, y = x.astype(dtype), y.astype(dtype)
    loss, gx = lossx.hinge_embedding_loss(x, y, margin, reduction=reduction, return_grad=True, grad_output=go)
    xt = t64(x, True)
    ref = F.hinge_embedding_loss(xt, t64(y), margin=margin, reduction=reduction)
    ref.backward(_gref(ref, go))
    scale = _reduced_scale(reduction, x.size)
    close(loss, ref, dtype, scale, "loss")
    close(gx, xt.grad, dtype, scale, "d_input")
    assert isinstance(gx, np.ndarray) and gx.dtype == np.dtype(dtype) and gx.shape == x.shape
    np.testing.assert_array_equal(np.asarray(lossx.hinge_embedding_loss(x, y, margin, reduction=reduction)),
                                  np.asarray(loss))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [1.0, 0.3, -0.5, 0.0])
def test_hinge_against_torch(margin, reduction, dtype, shape, rng):
    check_hinge(rng.standard_normal(shape) * 1.5, _pm1(rng, shape), dtype, reduction, margin)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_hinge_simd_targets_threads(reduction, cpu_config, rng):
    check_hinge(rng.standard_normal(1003), _pm1(rng, 1003), np.float32, reduction, 0.7)
    check_hinge(rng.standard_normal((3, 5, 7)), _pm1(rng, (3, 5, 7)), np.float64, reduction, 1.0)


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_hinge_half(dtype, reduction, rng):
    check_hinge(rng.standard_normal(33), _pm1(rng, 33), dtype, reduction, 0.5)


def test_hinge_kink_and_grad_output(rng):
    # x == margin exactly: torch's clamp_min passes the gradient (-1) there.
    x = np.array([1.0, 1.0, 0.25, 0.25, 2.0, -3.0])
    y = np.array([-1.0, 1.0, -1.0, 1.0, -1.0, -1.0])
    for margin in (1.0, 0.25):
        check_hinge(x, y, np.float64, "none", margin)
        check_hinge(x, y, np.float32, "sum", margin, go=2.5)
    check_hinge(x, y, np.float64, "none", 1.0, go=rng.standard_normal(6))


# ---- sigmoid_focal_loss -----------------------------------------------------------------------


def check_focal(x, t, dtype, reduction, alpha=0.25, gamma=2.0, go=None, ref_alpha="same"):
    x, t = x.astype(dtype), t.astype(dtype)
    loss, (gx, gt) = lossx.sigmoid_focal_loss(x, t, alpha, gamma, reduction, return_grad=True, grad_output=go)
    xt, tt = t64(x, True), t64(t, True)
    ref = torchvision_sigmoid_focal_loss(xt, tt, alpha if ref_alpha == "same" else ref_alpha, gamma, reduction)
    ref.backward(_gref(ref, go))
    scale = _reduced_scale(reduction, x.size)
    close(loss, ref, dtype, scale, "loss")
    close(gx, xt.grad, dtype, scale, "d_inputs")
    # d_targets = at (ce gamma q^(gamma-1) (1 - 2p) - x q^gamma) + a2 loss cancels
    # where its terms are large (gamma < 1 near q = 0, large |x|): bound its error
    # by the sum of the terms' magnitudes, as gaussian_nll's d_var above.
    with torch.no_grad():
        a = -1.0 if alpha is None else alpha
        p = torch.sigmoid(xt)
        ce = F.binary_cross_entropy_with_logits(xt, tt, reduction="none")
        q = p * (1 - tt) + (1 - p) * tt
        f = q ** gamma
        fd = gamma * q ** (gamma - 1) if gamma != 0 else torch.zeros_like(q)
        at, a2 = ((2 * a - 1) * tt + (1 - a)).abs(), abs(2 * a - 1)
        mag = (ce * fd * (1 - 2 * p)).abs() + (xt * f).abs()
        mag = at * mag + a2 * (ce * f).abs() if a >= 0 else mag
        g = _gref(ref, go).expand(xt.shape) / (x.size if reduction == "mean" else 1)
        mag = (g.abs() * mag).numpy()
    err = np.abs(np.asarray(gt, np.float64) - tt.grad.numpy())
    bound = 8 * RTOL[np.dtype(dtype)] * mag + ATOL[np.dtype(dtype)] * scale + RTOL[np.dtype(dtype)] * scale * np.abs(
        tt.grad.numpy())
    assert np.all(err <= bound), f"d_targets: max err {err.max()} vs bound {bound[np.argmax(err - bound)]}"
    assert gx.dtype == gt.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(lossx.sigmoid_focal_loss(x, t, alpha, gamma, reduction)),
                                  np.asarray(loss))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha", [0.25, None, -1.0, 0.0, 1.0, 0.7])
@pytest.mark.parametrize("gamma", [2.0, 0.0, 1.0, 3.0, 1.5, 0.5])
def test_focal_against_torchvision(gamma, alpha, reduction, dtype, shape, rng):
    check_focal(rng.standard_normal(shape) * 3, rng.random(shape), dtype, reduction, alpha, gamma)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("gamma", [2.0, 1.5])
def test_focal_hard_targets(gamma, dtype, rng):
    # {0, 1} targets (the detection use), logits kept where torch's 1 - p_t is still accurate.
    check_focal(rng.uniform(-8, 8, (7, 33)), (rng.random((7, 33)) < 0.3).astype(float), dtype, "none",
                0.25, gamma)


def test_focal_defaults_are_torchvisions(rng):
    x, t = rng.standard_normal((5, 7)) * 2, rng.random((5, 7))
    out = lossx.sigmoid_focal_loss(x, t)
    assert out.shape == (5, 7)  # reduction="none"
    close(out, torchvision_sigmoid_focal_loss(t64(x), t64(t)), np.float64)  # alpha=0.25, gamma=2


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_focal_simd_targets_threads(reduction, cpu_config, rng):
    check_focal(rng.standard_normal(1003) * 3, rng.random(1003), np.float32, reduction, 0.25, 2.0)
    check_focal(rng.standard_normal((3, 5, 7)) * 3, rng.random((3, 5, 7)), np.float64, reduction, 0.6, 1.5)


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_focal_half(dtype, reduction, rng):
    check_focal(rng.standard_normal(33) * 2, rng.random(33), dtype, reduction, 0.25, 2.0)


def test_focal_grad_output(rng):
    shape = (4, 9)
    x, t = rng.standard_normal(shape) * 2, rng.random(shape)
    check_focal(x, t, np.float64, "sum", go=2.5)
    check_focal(x, t, np.float64, "mean", 0.4, 1.5, go=np.array(-0.75))
    check_focal(x, t, np.float64, "none", None, 3.0, go=rng.standard_normal(shape))
    check_focal(x, t, np.float32, "none", go=1.5)


def _stable_focal_ref(x, t, alpha, gamma):
    # torchvision's formula with 1 - p_t written as sigmoid(x)(1 - t) + sigmoid(-x) t, so that
    # float64 autograd stays accurate (and finite) where sigmoid saturates.
    q = torch.sigmoid(x) * (1 - t) + torch.sigmoid(-x) * t
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none") * q ** gamma
    return (alpha * t + (1 - alpha) * (1 - t)) * loss


def test_focal_extremes(cpu_config):
    # Large |logits| (exp(|x|) would overflow), hard and soft targets: finite, and equal
    # to the stable float64 reference; float32 underflows FastExp below -87.3 to 0.
    x = np.array([-1000, -200, -100, -40, -20, 20, 40, 100, 200, 1000, -1000, 1000, 50, -50], np.float64)
    t = np.array([1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0.3, 0.7], np.float64)
    for dt in (np.float32, np.float64):
        for gamma in (2.0, 1.5, 0.5):
            loss, (gx, gt) = lossx.sigmoid_focal_loss(x.astype(dt), t.astype(dt), 0.25, gamma, return_grad=True)
            assert np.all(np.isfinite(loss)) and np.all(np.isfinite(gx)) and np.all(np.isfinite(gt)), (dt, gamma)
            xt, tt = t64(x, True), t64(t, True)
            r = _stable_focal_ref(xt, tt, 0.25, gamma)
            r.sum().backward()
            fin = np.isfinite(xt.grad.numpy()) & np.isfinite(tt.grad.numpy())
            close(loss, r, dt, what=f"loss {dt} {gamma}")
            close(gx[fin], xt.grad.numpy()[fin], dt, what=f"d_inputs {dt} {gamma}")
            close(gt[fin], tt.grad.numpy()[fin], dt, what=f"d_targets {dt} {gamma}")
            # Where 1 - p_t is exactly 0 the gamma-term gradient is its limit 0.
            assert np.all(gx[~fin] == 0)


def test_focal_targets_outside_unit_interval(rng):
    # 1 - p_t < 0: an integer gamma has a real power (matches torch); a non-integer gamma gives NaN, as torch.
    x, t = rng.uniform(2.0, 4.0, 9), rng.uniform(1.5, 3.0, 9)  # p > 0.88, t > 1.5: 1 - p_t < 0
    check_focal(x, t, np.float64, "none", 0.25, 2.0)
    check_focal(x, t, np.float64, "none", 0.25, 3.0)
    loss = lossx.sigmoid_focal_loss(x, t, 0.25, 1.5)
    ref = torchvision_sigmoid_focal_loss(t64(x), t64(t), 0.25, 1.5)
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(ref.numpy()))
    assert np.isnan(loss).any()


# ---- shared properties ------------------------------------------------------------------------


def _call(name, rng, shape, dtype=np.float64):
    """(function, args as numpy, options) for one random case of each loss."""
    if name == "gaussian":
        x, y, v = _make_gauss(rng, shape, "last1")
        return lossx.gaussian_nll_loss, [x, y, v], {"full": True}
    if name == "hinge":
        return lossx.hinge_embedding_loss, [rng.standard_normal(shape), _pm1(rng, shape)], {"margin": 0.6}
    return lossx.sigmoid_focal_loss, [rng.standard_normal(shape) * 3, rng.random(shape)], {"alpha": 0.3,
                                                                                           "gamma": 1.5}


@pytest.mark.parametrize("name", ["gaussian", "hinge", "focal"])
def test_bit_identical_across_threads(name, rng):
    fn, args, opts = _call(name, rng, (31, 3227))  # 100037 elements: many chunks and a tail
    args = [a.astype(np.float32) for a in args]
    old = lossx.get_num_threads()
    outs = []
    try:
        for nt in (1, 2, 3):
            lossx.set_num_threads(nt)
            m, g = fn(*args, **opts, reduction="mean", return_grad=True)
            s = fn(*args, **opts, reduction="sum")
            g = g if isinstance(g, tuple) else (g,)
            outs.append((np.asarray(m).tobytes(), np.asarray(s).tobytes(), *[gi.tobytes() for gi in g]))
    finally:
        lossx.set_num_threads(old)
    assert outs[0] == outs[1] == outs[2]


@pytest.mark.parametrize("name", ["gaussian", "hinge", "focal"])
def test_finite_differences(name, rng):
    # A second oracle: central differences of sum(go * loss) in float64 for every
    # differentiable argument (var included, at its own, un-broadcast shape).
    fn, args, opts = _call(name, rng, (3, 7))
    if name == "hinge":  # keep clear of the kink at x = margin
        x = args[0]
        args[0] = np.where(np.abs(x - opts["margin"]) < 1e-2, x + 0.1, x)
    go = rng.standard_normal((3, 7))
    _, g = fn(*args, **opts, reduction="none", return_grad=True, grad_output=go)
    g = g if isinstance(g, tuple) else (g,)

    def f(a):
        return float(np.sum(go * fn(*a, **opts, reduction="none")))

    for k, gk in enumerate(g):
        num = np.zeros_like(args[k])
        for i in np.ndindex(args[k].shape):
            h = 1e-6 * max(1.0, abs(args[k][i]))
            ap = [a.copy() for a in args]
            am = [a.copy() for a in args]
            ap[k][i] += h
            am[k][i] -= h
            num[i] = (f(ap) - f(am)) / (2 * h)
        np.testing.assert_allclose(gk, num, rtol=1e-6, atol=1e-7, err_msg=f"{name} gradient {k}")


def test_nan_propagates_like_torch(rng):
    for dt in (np.float32, np.float64):
        # gaussian: NaN in input, target and var
        x, y, v = (a.astype(dt) for a in _make_gauss(rng, (9,), "same"))
        x[1], y[4], v[7] = np.nan, np.nan, np.nan
        loss, (gx, gy, gv) = lossx.gaussian_nll_loss(x, y, v, reduction="none", return_grad=True)
        xt, yt, vt = t64(x, True), t64(y, True), t64(v, True)
        r = F.gaussian_nll_loss(xt, yt, vt, reduction="none")
        r.sum().backward()
        for what, a, b in (("loss", loss, r), ("dx", gx, xt.grad), ("dy", gy, yt.grad), ("dv", gv, vt.grad)):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b.detach().numpy()), err_msg=f"gaussian {what}")
        # hinge: NaN input on both sides (targets must be +-1)
        x = rng.standard_normal(8).astype(dt)
        y = np.array([1, -1, 1, -1, 1, -1, 1, -1], dt)
        x[2], x[3] = np.nan, np.nan
        loss, gx = lossx.hinge_embedding_loss(x, y, reduction="none", return_grad=True)
        xt = t64(x, True)
        r = F.hinge_embedding_loss(xt, t64(y), reduction="none")
        r.sum().backward()
        np.testing.assert_array_equal(np.isnan(loss), np.isnan(r.detach().numpy()))
        np.testing.assert_array_equal(gx, xt.grad.numpy())  # 1 (y = 1) and 0 (y = -1): torch's clamp mask
        # focal: NaN input and target
        x, t = rng.standard_normal(9).astype(dt), rng.random(9).astype(dt)
        x[2], t[6] = np.nan, np.nan
        loss, (gx, gt) = lossx.sigmoid_focal_loss(x, t, return_grad=True)
        xt, tt = t64(x, True), t64(t, True)
        r = torchvision_sigmoid_focal_loss(xt, tt)
        r.sum().backward()
        for what, a, b in (("loss", loss, r), ("dx", gx, xt.grad), ("dt", gt, tt.grad)):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b.detach().numpy()), err_msg=f"focal {what}")


def test_focal_worked_value():
    # One logit by hand: x = 1, t = 1: ce = log(1 + e^-1), 1 - p_t = 1 - sigmoid(1).
    ce = math.log1p(math.exp(-1.0))
    q = 1 - 1 / (1 + math.exp(-1.0))
    v = lossx.sigmoid_focal_loss(np.array([1.0], np.float32), np.array([1.0], np.float32), 0.25, 2.0, "sum")
    assert v == pytest.approx(0.25 * ce * q * q, rel=1e-6)


# ---- bad inputs: one test per rule ------------------------------------------------------------


def test_gaussian_negative_var():
    with pytest.raises(ValueError, match=r"var must be >= 0; element 2 is -0.5"):
        lossx.gaussian_nll_loss(np.zeros(4), np.zeros(4), np.array([1.0, 0.0, -0.5, 2.0]))
    with pytest.raises(ValueError, match=r"var must be >= 0, got -1.0"):
        lossx.gaussian_nll_loss(np.zeros(4), np.zeros(4), -1.0)


@pytest.mark.parametrize("vshape", [(4,), (3, 2), (2, 4, 1), (1, 1), (3, 0)], ids=str)
def test_gaussian_var_wrong_shape(vshape):
    # (4,) is neither input.shape nor input.shape[:-1] = (2,); (1, 1) has two mismatched
    # axes; (3, 0) breaks broadcasting although torch's size rule lets it through.
    shape = (2, 4) if vshape != (3, 0) else (3, 4)
    with pytest.raises(ValueError, match=r"var has shape \(.*\) but input has shape \(.*\)") as e:
        lossx.gaussian_nll_loss(np.zeros(shape), np.zeros(shape), np.ones(vshape))
    assert str(tuple(vshape)) in str(e.value) and str(shape) in str(e.value)


def test_gaussian_var_not_float():
    with pytest.raises(TypeError, match="var"):
        lossx.gaussian_nll_loss(np.zeros(3), np.zeros(3), np.ones(3, np.int64))


def test_gaussian_negative_eps():
    with pytest.raises(ValueError, match="eps"):
        lossx.gaussian_nll_loss(np.zeros(3), np.zeros(3), np.ones(3), eps=-1e-6)


def test_gaussian_input_target_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(1, 4\)"):
        lossx.gaussian_nll_loss(np.zeros((3, 4)), np.zeros((1, 4)), np.ones((3, 4)))


def test_hinge_target_pm1():
    with pytest.raises(ValueError, match=r"-1 and \+1; element 1 is 0.0"):
        lossx.hinge_embedding_loss(np.zeros(3), np.array([1.0, 0.0, -1.0]))
    with pytest.raises(ValueError, match=r"element 2 is nan"):
        lossx.hinge_embedding_loss(np.zeros(3), np.array([1.0, -1.0, np.nan]))


def test_hinge_bad_margin():
    with pytest.raises(ValueError, match="margin"):
        lossx.hinge_embedding_loss(np.zeros(3), np.ones(3), float("nan"))


def test_focal_bad_gamma():
    with pytest.raises(ValueError, match=r"gamma must be finite and >= 0, got -0.5"):
        lossx.sigmoid_focal_loss(np.zeros(3), np.zeros(3), gamma=-0.5)
    with pytest.raises(ValueError, match="gamma"):
        lossx.sigmoid_focal_loss(np.zeros(3), np.zeros(3), gamma=float("inf"))


def test_focal_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        lossx.sigmoid_focal_loss(np.zeros(3), np.zeros(3), alpha=float("nan"))


def test_focal_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        lossx.sigmoid_focal_loss(np.zeros(3), np.zeros(3), reduction="batchmean")


def test_focal_target_not_float():
    with pytest.raises(TypeError, match="target"):
        lossx.sigmoid_focal_loss(np.zeros(3), np.zeros(3, np.int64))
