"""Pairwise/embedding family (triplet_margin_loss, cosine_embedding_loss)
against torch 2.13 CPU float64 + autograd."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossx
from _util import BF16, FLOAT_DTYPES, close, t64

REDUCTIONS = ["none", "mean", "sum"]
# rows 1, 7, 33 and dims 1, 7, 129 (SIMD tails everywhere), plus unbatched (D,).
SHAPES = [(1, 1), (7, 7), (33, 129), (1, 129), (33, 1), (129,)]


def _go(rng, reduction, loss_shape):
    if reduction == "none":
        return rng.standard_normal(loss_shape)
    return float(rng.uniform(0.5, 2.0))


def _ref(fn, inputs, reduction, go, **kw):
    ts = [t64(x, True) for x in inputs]
    out = fn(*ts, reduction=reduction, **kw)
    if reduction == "none":
        out.backward(t64(go))
    else:
        (out * go).backward()
    return out, [t.grad for t in ts]


def _check(loss, grads, ref, rgrads, dtype, scale=1.0, gscale=1.0, lscale=1.0):
    assert np.asarray(loss).shape == tuple(ref.shape)
    close(loss, ref, dtype, scale * lscale, "loss")
    for k, (g, r) in enumerate(zip(grads, rgrads)):
        assert g.dtype == np.dtype(dtype) and g.shape == tuple(r.shape)
        close(g, r, dtype, scale * gscale, f"grad {k}")


def _cos_term_scale(x1, x2, go):
    """Size of the two terms whose difference is cosine's gradient, x2/|x1||x2| and
    cos x1/|x1|^2: both carry the input dtype's rounding, and for nearly parallel
    rows (always, when D = 1) they cancel, so the error is relative to them."""
    x1 = np.atleast_2d(np.asarray(x1, np.float64))
    x2 = np.atleast_2d(np.asarray(x2, np.float64))
    n1 = np.sqrt((x1 * x1).sum(-1) + 1e-12)
    n2 = np.sqrt((x2 * x2).sum(-1) + 1e-12)
    term = np.abs(x2).max(-1) / (n1 * n2) + np.abs(x1).max(-1) / n1**2 + np.abs(x1).max(-1) / (n1 * n2) \
        + np.abs(x2).max(-1) / n2**2
    return max(1.0, float(term.max() * np.abs(go).max()))


def _dist_scale(xs, go=1.0):
    """The triplet loss is margin + d(a,p) - d(a,n): its rounding error is relative to
    the distances, which cancel, not to the (possibly tiny) result."""
    a, p, n = (np.asarray(x, np.float64) for x in xs)
    d = max(np.abs(a - p).sum(-1).max(), np.abs(a - n).sum(-1).max(), np.abs(p - n).sum(-1).max())
    return max(1.0, float(d) * float(np.abs(go).max()))


def _triplet_inputs(rng, shape, dtype):
    a = rng.standard_normal(shape)
    # Positives near the anchor, negatives at mixed distances: both sides of the hinge occur.
    p = a + 0.7 * rng.standard_normal(shape)
    n = a + rng.uniform(0.3, 1.5) * rng.standard_normal(shape)
    return [x.astype(dtype) for x in (a, p, n)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", [2.0, 1.0, 1.5, 0.7, 3.0])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_vs_torch(rng, dtype, shape, reduction, p, swap):
    xs = _triplet_inputs(rng, shape, dtype)
    margin = float(rng.uniform(0.2, 1.5))
    go = _go(rng, reduction, shape[:-1])
    ref, rg = _ref(F.triplet_margin_loss, xs, reduction, go, margin=margin, p=p, swap=swap)
    loss, grads = lossx.triplet_margin_loss(*xs, margin=margin, p=p, swap=swap, reduction=reduction,
                                            return_grad=True, grad_output=go)
    assert isinstance(grads, tuple) and len(grads) == 3
    # General p goes through vector exp/log (a few ulp each) instead of one pow.
    _check(loss, grads, ref, rg, dtype, 1.0 if p in (1.0, 2.0) else 4.0, lscale=_dist_scale(xs, go))
    fwd = lossx.triplet_margin_loss(*xs, margin=margin, p=p, swap=swap, reduction=reduction)
    np.testing.assert_array_equal(fwd, loss)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.3, -0.5])
def test_cosine_vs_torch(rng, dtype, shape, reduction, margin):
    x1 = rng.standard_normal(shape).astype(dtype)
    x2 = (0.5 * x1 + rng.standard_normal(shape)).astype(dtype)
    y = rng.choice([-1, 1], size=shape[:-1])
    go = _go(rng, reduction, shape[:-1])
    ts = [t64(x, True) for x in (x1, x2)]
    ref = F.cosine_embedding_loss(*ts, torch.tensor(y), margin=margin, reduction=reduction)
    (ref.backward(t64(go)) if reduction == "none" else (ref * go).backward())
    loss, grads = lossx.cosine_embedding_loss(x1, x2, y, margin=margin, reduction=reduction,
                                              return_grad=True, grad_output=go)
    assert isinstance(grads, tuple) and len(grads) == 2
    _check(loss, grads, ref, [t.grad for t in ts], dtype, gscale=_cos_term_scale(x1, x2, go))
    np.testing.assert_array_equal(lossx.cosine_embedding_loss(x1, x2, y, margin, reduction), loss)


@pytest.mark.parametrize("tdtype", [np.int64, np.int32, np.float32, np.float64])
def test_cosine_target_dtypes(rng, tdtype):
    x1, x2 = rng.standard_normal((2, 9, 5))
    y = rng.choice([-1, 1], 9).astype(tdtype)
    ref = F.cosine_embedding_loss(t64(x1), t64(x2), torch.tensor(y.astype(np.int64)))
    close(lossx.cosine_embedding_loss(x1, x2, y), ref, np.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_half_and_all_dtypes(rng, dtype):
    xs = _triplet_inputs(rng, (13, 37), dtype)
    # The reference sees the same rounded inputs the kernel sees.
    ref, rg = _ref(F.triplet_margin_loss, xs, "mean", 1.0, p=2.0)
    loss, grads = lossx.triplet_margin_loss(*xs, return_grad=True)
    assert np.asarray(loss).dtype == (np.float64 if dtype == np.float64 else np.float32)
    _check(loss, grads, ref, rg, dtype, lscale=_dist_scale(xs))
    y = rng.choice([-1, 1], 13)
    ts = [t64(x, True) for x in xs[:2]]
    ref = F.cosine_embedding_loss(*ts, torch.tensor(y), margin=0.1)
    ref.backward()
    loss, grads = lossx.cosine_embedding_loss(xs[0], xs[1], y, 0.1, return_grad=True)
    _check(loss, grads, ref, [t.grad for t in ts], dtype, gscale=_cos_term_scale(xs[0], xs[1], 1 / 13))


@pytest.mark.parametrize("D", [1, 7, 129])
def test_every_simd_target_and_thread_count(cpu_config, rng, D):
    for dtype in (np.float32, np.float64):
        for p, swap in ((2.0, True), (1.0, False), (1.5, True)):
            xs = _triplet_inputs(rng, (33, D), dtype)
            go = rng.standard_normal(33)
            ref, rg = _ref(F.triplet_margin_loss, xs, "none", go, p=p, swap=swap)
            loss, grads = lossx.triplet_margin_loss(*xs, p=p, swap=swap, reduction="none", return_grad=True,
                                                    grad_output=go)
            _check(loss, grads, ref, rg, dtype, 1.0 if p != 1.5 else 4.0, lscale=_dist_scale(xs, go))
        y = rng.choice([-1, 1], 33)
        ts = [t64(x, True) for x in xs[:2]]
        ref = F.cosine_embedding_loss(*ts, torch.tensor(y), margin=0.2, reduction="sum")
        ref.backward()
        loss, grads = lossx.cosine_embedding_loss(xs[0], xs[1], y, 0.2, "sum", return_grad=True)
        _check(loss, grads, ref, [t.grad for t in ts], dtype, gscale=_cos_term_scale(xs[0], xs[1], 1.0))


def test_bit_identical_across_threads(rng, simd_target):
    xs = _triplet_inputs(rng, (3001, 65), np.float32)
    y = rng.choice([-1, 1], 3001)
    out = []
    for nt in (1, 2, 3):
        lossx.set_num_threads(nt)
        try:
            out.append((lossx.triplet_margin_loss(*xs, swap=True, return_grad=True),
                        lossx.cosine_embedding_loss(xs[0], xs[1], y, return_grad=True)))
        finally:
            lossx.set_num_threads(0)
    for (tl, tg), (cl, cg) in out[1:]:
        assert tl.tobytes() == out[0][0][0].tobytes() and cl.tobytes() == out[0][1][0].tobytes()
        for g, g0 in zip(tg + cg, out[0][0][1] + out[0][1][1]):
            assert g.tobytes() == g0.tobytes()


def _fd_check(f, xs, rng, h=1e-6):
    """Central differences of the scalar f along a random direction per input."""
    _, grads = f(*xs, return_grad=True)
    for k, g in enumerate(grads):
        v = rng.standard_normal(xs[k].shape)
        up = [x.copy() for x in xs]
        dn = [x.copy() for x in xs]
        up[k] += h * v
        dn[k] -= h * v
        fd = (f(*up) - f(*dn)) / (2 * h)
        np.testing.assert_allclose(np.sum(g * v), fd, rtol=1e-6, atol=1e-8, err_msg=f"input {k}")


@pytest.mark.parametrize("p,swap", [(2.0, False), (2.0, True), (1.0, True), (1.5, False), (3.0, True)])
def test_triplet_finite_differences(rng, p, swap):
    xs = _triplet_inputs(rng, (17, 9), np.float64)
    # |v|^p is not smooth at v = 0 for p < 2 (a kink for p = 1, unbounded curvature for
    # p = 1.5): a difference within the step h of 0 breaks the central difference itself
    # (about 1 seed in 400 did), so keep every pairwise difference away from 0.
    for i, j in ((0, 1), (0, 2), (1, 2)):
        v = xs[i] - xs[j] + 1e-6
        xs[j] = np.where(np.abs(v) < 1e-3, xs[j] - 1e-2 * np.sign(v + 1e-300), xs[j])
    _fd_check(lambda *a, **k: lossx.triplet_margin_loss(*a, margin=0.8, p=p, swap=swap, reduction="sum", **k),
              xs, rng)


@pytest.mark.parametrize("margin", [0.0, -0.3])
def test_cosine_finite_differences(rng, margin):
    x1, x2 = rng.standard_normal((2, 17, 9))
    y = rng.choice([-1, 1], 17)
    _fd_check(lambda a, b, **k: lossx.cosine_embedding_loss(a, b, y, margin, "sum", **k), [x1, x2], rng)


def test_zero_distance_and_zero_vectors():
    # eps = 0 and anchor == positive: torch's norm gradient is 0 at a zero norm, not NaN.
    a = np.array([[1.0, 2.0, 3.0]])
    n = np.array([[1.5, 2.0, 3.0]])
    ts = [t64(x, True) for x in (a, a.copy(), n)]
    ref = F.triplet_margin_loss(*ts, eps=0.0)
    ref.backward()
    loss, grads = lossx.triplet_margin_loss(a, a.copy(), n, eps=0.0, return_grad=True)
    _check(loss, grads, ref, [t.grad for t in ts], np.float64)
    # Zero vectors: torch's 1e-12 keeps the cosine finite.
    z = np.zeros((2, 4))
    ts = [t64(x, True) for x in (z, z.copy())]
    ref = F.cosine_embedding_loss(*ts, torch.tensor([1, -1]))
    ref.backward()
    loss, grads = lossx.cosine_embedding_loss(z, z.copy(), np.array([1, -1]), return_grad=True)
    _check(loss, grads, ref, [t.grad for t in ts], np.float64)


def test_hinge_boundary_passes_gradient():
    # margin + d(a,p) - d(a,n) == 0 exactly: clamp_min passes the gradient (>=), as torch does.
    a, p, n = np.array([[0.0]]), np.array([[1.0]]), np.array([[-2.0]])
    ts = [t64(x, True) for x in (a, p, n)]
    ref = F.triplet_margin_loss(*ts, margin=1.0, eps=0.0)
    ref.backward()
    loss, grads = lossx.triplet_margin_loss(a, p, n, margin=1.0, eps=0.0, return_grad=True)
    _check(loss, grads, ref, [t.grad for t in ts], np.float64)
    assert grads[0][0, 0] != 0


def test_empty_batch():
    e = np.zeros((0, 5))
    for red, want in (("mean", np.nan), ("sum", 0.0)):
        np.testing.assert_equal(lossx.triplet_margin_loss(e, e, e, reduction=red), want)
        np.testing.assert_equal(lossx.cosine_embedding_loss(e, e, np.zeros(0), reduction=red), want)
    assert lossx.triplet_margin_loss(e, e, e, reduction="none").shape == (0,)


class TestBadInput:
    def test_wrong_dtype(self):
        with pytest.raises(TypeError, match="anchor"):
            lossx.triplet_margin_loss(np.ones((2, 3), np.int32), np.ones((2, 3)), np.ones((2, 3)))

    def test_mixed_dtypes(self):
        with pytest.raises(TypeError, match="negative"):
            lossx.triplet_margin_loss(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3), np.float32))

    def test_shape_mismatch_names_both(self):
        with pytest.raises(ValueError, match=r"positive has shape \(2, 4\).*anchor has shape \(2, 3\)"):
            lossx.triplet_margin_loss(np.ones((2, 3)), np.ones((2, 4)), np.ones((2, 3)))
        with pytest.raises(ValueError, match=r"input2 has shape \(1, 3\).*input1 has shape \(2, 3\)"):
            lossx.cosine_embedding_loss(np.ones((2, 3)), np.ones((1, 3)), np.ones(2))

    def test_target_shape(self):
        with pytest.raises(ValueError, match=r"target has shape \(3,\)"):
            lossx.cosine_embedding_loss(np.ones((2, 3)), np.ones((2, 3)), np.ones(3))

    def test_target_not_pm1_names_position(self):
        with pytest.raises(ValueError, match="position 2 is 0"):
            lossx.cosine_embedding_loss(np.ones((4, 3)), np.ones((4, 3)), np.array([1, -1, 0, 1]))

    def test_rank(self):
        with pytest.raises(ValueError, match="1-D"):
            lossx.triplet_margin_loss(*(np.ones((2, 3, 4)),) * 3)

    @pytest.mark.parametrize("p", [0.0, -1.0, float("inf"), float("nan")])
    def test_bad_p(self, p):
        with pytest.raises(ValueError, match="p must be"):
            lossx.triplet_margin_loss(*(np.ones((2, 3)),) * 3, p=p)

    def test_bad_reduction(self):
        with pytest.raises(ValueError, match="reduction"):
            lossx.cosine_embedding_loss(np.ones((2, 3)), np.ones((2, 3)), np.ones(2), reduction="avg")

    def test_grad_output_shape(self):
        with pytest.raises(ValueError, match="grad_output"):
            lossx.triplet_margin_loss(*(np.ones((2, 3)),) * 3, reduction="none", return_grad=True,
                                      grad_output=np.ones(3))
