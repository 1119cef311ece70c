"""Margin family (margin_ranking_loss, multilabel_soft_margin_loss,
multi_margin_loss, multilabel_margin_loss) against torch 2.13 CPU float64 + autograd."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossx
from _util import FLOAT_DTYPES, close, t64

REDUCTIONS = ["none", "mean", "sum"]
# rows 1, 7, 33 and classes 1, 7, 129, plus unbatched (C,).
SHAPES = [(1, 1), (7, 7), (33, 129), (1, 129), (33, 1), (7,)]


def _go(rng, reduction, loss_shape):
    return rng.standard_normal(loss_shape) if reduction == "none" else float(rng.uniform(0.5, 2.0))


def _backward(out, reduction, go):
    out.backward(t64(go)) if reduction == "none" else (out * go).backward()


def _check(loss, grad, ref, rgrad, dtype, scale=1.0):
    assert np.asarray(loss).shape == tuple(ref.shape)
    close(loss, ref, dtype, scale, "loss")
    assert grad.dtype == np.dtype(dtype) and grad.shape == tuple(rgrad.shape)
    close(grad, rgrad, dtype, scale, "grad")


# ---- per-loss case builders: (lossx call, torch call, differentiable inputs) -------------------

def _ranking(rng, shape, dtype, reduction, go):
    x1, x2 = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    y = rng.choice([-1, 1], size=shape)
    m = float(rng.choice([0.0, 0.4]))
    ts = [t64(x1, True), t64(x2, True)]
    ref = F.margin_ranking_loss(*ts, torch.tensor(y), margin=m, reduction=reduction)
    _backward(ref, reduction, go)
    loss, (g1, g2) = lossx.margin_ranking_loss(x1, x2, y, m, reduction, return_grad=True, grad_output=go)
    return loss, [g1, g2], ref, [t.grad for t in ts]


def _soft(rng, shape, dtype, reduction, go, weighted):
    x = (2 * rng.standard_normal(shape)).astype(dtype)
    t = rng.integers(0, 2, size=shape).astype(np.float64)
    w = rng.uniform(0.2, 2.0, shape[-1]) if weighted else None
    xt = t64(x, True)
    ref = F.multilabel_soft_margin_loss(xt, t64(t), None if w is None else t64(w), reduction=reduction)
    _backward(ref, reduction, go)
    loss, g = lossx.multilabel_soft_margin_loss(x, t, w, reduction, return_grad=True, grad_output=go)
    return loss, [g], ref, [xt.grad]


def _multi(rng, shape, dtype, reduction, go, p, weighted):
    C = shape[-1]
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.integers(0, C, size=shape[:-1])
    w = rng.uniform(0.2, 2.0, C) if weighted else None
    m = float(rng.choice([1.0, 0.3]))
    xt = t64(x, True)
    ref = F.multi_margin_loss(xt, torch.tensor(y), p=p, margin=m, weight=None if w is None else t64(w),
                              reduction=reduction)
    _backward(ref, reduction, go)
    loss, g = lossx.multi_margin_loss(x, y, p, m, w, reduction, return_grad=True, grad_output=go)
    return loss, [g], ref, [xt.grad]


def _mlm_target(rng, shape):
    C = shape[-1]
    t = np.full(shape, -1, dtype=np.int64)
    for row in t.reshape(-1, C):
        k = rng.integers(0, C + 1)
        row[:k] = rng.permutation(C)[:k]
        if k < C and rng.random() < 0.5:
            row[k + 1:] = rng.integers(0, C, C - k - 1)  # after the -1: ignored, whatever it holds
    return t


def _mlm(rng, shape, dtype, reduction, go):
    x = rng.standard_normal(shape).astype(dtype)
    t = _mlm_target(rng, shape)
    xt = t64(x, True)
    ref = F.multilabel_margin_loss(xt, torch.tensor(t), reduction=reduction)
    _backward(ref, reduction, go)
    loss, g = lossx.multilabel_margin_loss(x, t, reduction, return_grad=True, grad_output=go)
    return loss, [g], ref, [xt.grad]


CASES = {
    "ranking": _ranking,
    "soft": lambda *a: _soft(*a, False),
    "soft_weighted": lambda *a: _soft(*a, True),
    "multi_p1": lambda *a: _multi(*a, 1, False),
    "multi_p2_weighted": lambda *a: _multi(*a, 2, True),
    "multi_p1_weighted": lambda *a: _multi(*a, 1, True),
    "multilabel_margin": _mlm,
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_vs_torch(rng, case, dtype, shape, reduction):
    loss_shape = shape if case == "ranking" else shape[:-1]
    go = _go(rng, reduction, loss_shape)
    loss, grads, ref, rgrads = CASES[case](rng, shape, dtype, reduction, go)
    assert np.asarray(loss).shape == tuple(ref.shape)
    close(loss, ref, dtype, 1.0, "loss")
    for g, r in zip(grads, rgrads):
        assert g.dtype == np.dtype(dtype) and g.shape == tuple(r.shape)
        close(g, r, dtype, 1.0, "grad")


@pytest.mark.parametrize("case", list(CASES))
def test_every_simd_target_and_thread_count(cpu_config, rng, case):
    for dtype in (np.float32, np.float64):
        go = rng.standard_normal((33, 129) if case == "ranking" else (33,))
        loss, grads, ref, rgrads = CASES[case](rng, (33, 129), dtype, "none", go)
        close(loss, ref, dtype)
        for g, r in zip(grads, rgrads):
            close(g, r, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_half_and_all_dtypes(rng, dtype):
    for case in CASES:
        loss, grads, ref, rgrads = CASES[case](rng, (13, 37), dtype, "mean", 1.0)
        assert np.asarray(loss).dtype == (np.float64 if dtype == np.float64 else np.float32)
        close(loss, ref, dtype, 1.0, case)
        for g, r in zip(grads, rgrads):
            assert g.dtype == np.dtype(dtype)
            close(g, r, dtype, 1.0, case)


def test_bit_identical_across_threads(rng):
    x = rng.standard_normal((5001, 33)).astype(np.float32)
    y = rng.integers(0, 33, 5001)
    t = _mlm_target(rng, x.shape)
    calls = [lambda: lossx.multi_margin_loss(x, y, return_grad=True),
             lambda: lossx.multilabel_margin_loss(x, t, return_grad=True),
             lambda: lossx.multilabel_soft_margin_loss(x, (x > 0).astype(np.float32), return_grad=True),
             lambda: lossx.margin_ranking_loss(x, x[::-1].copy(), np.sign(x[:, ::-1]).astype(np.float32) + (x == 0),
                                               return_grad=True)]
    for call in calls:
        outs = []
        for nt in (1, 2, 3):
            lossx.set_num_threads(nt)
            try:
                l, g = call()
            finally:
                lossx.set_num_threads(0)
            g = g if isinstance(g, tuple) else (g,)
            outs.append(np.asarray(l).tobytes() + b"".join(a.tobytes() for a in g))
        assert outs[0] == outs[1] == outs[2]


def _fd(f, x, rng, h=1e-6):
    _, g = f(x, return_grad=True)
    v = rng.standard_normal(x.shape)
    fd = (f(x + h * v) - f(x - h * v)) / (2 * h)
    np.testing.assert_allclose(np.sum(g * v), fd, rtol=1e-6, atol=1e-8)


def test_finite_differences(rng):
    x = rng.standard_normal((9, 6))
    y = rng.integers(0, 6, 9)
    t = _mlm_target(rng, x.shape)
    w = rng.uniform(0.5, 2, 6)
    tt = rng.integers(0, 2, x.shape).astype(float)
    for p in (1, 2):
        _fd(lambda a, **k: lossx.multi_margin_loss(a, y, p, 0.7, w, "sum", **k), x, rng)
    _fd(lambda a, **k: lossx.multilabel_margin_loss(a, t, "sum", **k), x, rng)
    _fd(lambda a, **k: lossx.multilabel_soft_margin_loss(a, tt, w, "sum", **k), x, rng)
    x2 = rng.standard_normal(x.shape)
    yy = rng.choice([-1, 1], x.shape)
    _, (g1, g2) = lossx.margin_ranking_loss(x, x2, yy, 0.2, "sum", return_grad=True)
    _fd(lambda a, **k: lossx.margin_ranking_loss(a, x2, yy, 0.2, "sum", **k)
        if not k else (0, lossx.margin_ranking_loss(a, x2, yy, 0.2, "sum", **k)[1][0]), x, rng)
    _fd(lambda b, **k: lossx.margin_ranking_loss(x, b, yy, 0.2, "sum", **k)
        if not k else (0, lossx.margin_ranking_loss(x, b, yy, 0.2, "sum", **k)[1][1]), x2, rng)


def test_hinge_boundaries_match_torch():
    # margin_ranking: exactly at the hinge the gradient passes (clamp_min's >=);
    # multi_margin: torch's kernel tests > 0, so a zero term gives no gradient.
    x1, x2, y = np.array([1.0, 0.0]), np.array([0.5, 0.0]), np.array([1.0, -1.0])
    ts = [t64(x1, True), t64(x2, True)]
    ref = F.margin_ranking_loss(*ts, torch.tensor(y), margin=0.5, reduction="sum")
    ref.backward()
    loss, (g1, g2) = lossx.margin_ranking_loss(x1, x2, y, 0.5, "sum", return_grad=True)
    close(loss, ref, np.float64)
    close(g1, ts[0].grad, np.float64)
    close(g2, ts[1].grad, np.float64)
    x = np.array([[1.0, 0.0, 0.5]])
    xt = t64(x, True)
    ref = F.multi_margin_loss(xt, torch.tensor([0]), margin=1.0)
    ref.backward()
    loss, g = lossx.multi_margin_loss(x, np.array([0]), return_grad=True)
    close(loss, ref, np.float64)
    close(g, xt.grad, np.float64)


def test_empty_batch():
    e = np.zeros((0, 4))
    for red, want in (("mean", np.nan), ("sum", 0.0)):
        np.testing.assert_equal(lossx.multi_margin_loss(e, np.zeros(0, np.int64), reduction=red), want)
        np.testing.assert_equal(lossx.multilabel_margin_loss(e, np.zeros((0, 4), np.int64), reduction=red), want)
        np.testing.assert_equal(lossx.multilabel_soft_margin_loss(e, e, reduction=red), want)
        np.testing.assert_equal(lossx.margin_ranking_loss(np.zeros(0), np.zeros(0), np.zeros(0), reduction=red),
                                want)


class TestBadInput:
    def test_wrong_dtype(self):
        with pytest.raises(TypeError, match="input"):
            lossx.multi_margin_loss(np.ones((2, 3), np.int64), np.zeros(2, np.int64))
        with pytest.raises(TypeError, match="integer class labels"):
            lossx.multi_margin_loss(np.ones((2, 3)), np.zeros(2))

    def test_shape_mismatch_names_both(self):
        with pytest.raises(ValueError, match=r"input2 has shape \(4,\).*input1 has shape \(3,\)"):
            lossx.margin_ranking_loss(np.ones(3), np.ones(4), np.ones(3))
        with pytest.raises(ValueError, match=r"target has shape \(3,\).*input has shape \(2, 3\)"):
            lossx.multi_margin_loss(np.ones((2, 3)), np.zeros(3, np.int64))
        with pytest.raises(ValueError, match=r"target has shape \(2, 4\).*input has shape \(2, 3\)"):
            lossx.multilabel_margin_loss(np.ones((2, 3)), np.zeros((2, 4), np.int64))
        with pytest.raises(ValueError, match=r"weight has shape \(4,\)"):
            lossx.multilabel_soft_margin_loss(np.ones((2, 3)), np.ones((2, 3)), np.ones(4))

    def test_ranking_target_not_pm1(self):
        with pytest.raises(ValueError, match="position 1 is 2"):
            lossx.margin_ranking_loss(np.ones(3), np.ones(3), np.array([1, 2, -1]))
        # Checked on the target's own values: a float64 target a hair off 1 does not
        # pass by rounding to a float32 1, and NaN / float32 / strided targets are caught.
        with pytest.raises(ValueError, match="position 2 is 1"):
            lossx.margin_ranking_loss(np.ones(3, np.float32), np.ones(3, np.float32),
                                      np.array([1.0, -1.0, 1 + 1e-10]))
        with pytest.raises(ValueError, match="position 0 is nan"):
            lossx.margin_ranking_loss(np.ones(2, np.float32), np.ones(2, np.float32),
                                      np.array([np.nan, 1.0], np.float32))
        with pytest.raises(ValueError, match="position 4 is 0"):
            lossx.margin_ranking_loss(np.ones((2, 3)), np.ones((2, 3)),
                                      np.array([[1.0, 9, -1, 9, 1, 9], [1, 9, 0, 9, 1, 9]])[:, ::2])

    @pytest.mark.parametrize("bad,pos", [(3, 1), (-1, 1)])
    def test_multi_margin_label_range(self, bad, pos):
        with pytest.raises(IndexError, match=f"label {bad} at position {pos}"):
            lossx.multi_margin_loss(np.ones((3, 3)), np.array([0, bad, 7]))

    def test_multilabel_margin_label_range(self):
        t = np.array([[0, -1, 9], [1, 5, -1]])  # the 9 follows the end marker: not read
        with pytest.raises(IndexError, match=r"label 5 at position \(1, 1\)"):
            lossx.multilabel_margin_loss(np.ones((2, 3)), t)

    @pytest.mark.parametrize("p", [0, 3, 1.5, True])
    def test_multi_margin_p(self, p):
        with pytest.raises(ValueError, match="p must be 1 or 2"):
            lossx.multi_margin_loss(np.ones((2, 3)), np.zeros(2, np.int64), p=p)

    def test_rank(self):
        with pytest.raises(ValueError, match="1-D"):
            lossx.multilabel_soft_margin_loss(np.ones((2, 3, 4)), np.ones((2, 3, 4)))

    def test_bad_reduction(self):
        with pytest.raises(ValueError, match="reduction"):
            lossx.multilabel_margin_loss(np.ones((2, 3)), np.zeros((2, 3), np.int64), reduction="batchmean")


# ---- poly1_cross_entropy (composed on the row-softmax kernel) ---------------------------------

def _poly1_ref(x, y, eps, reduction, go, ignore_index=-100):
    xt = t64(x, True)
    yt = torch.tensor(y)
    ce = F.cross_entropy(xt, yt, reduction="none", ignore_index=ignore_index)
    valid = yt != ignore_index
    rows = ce + eps * (1 - torch.exp(-ce)) * valid
    out = rows if reduction == "none" else rows.sum() / (valid.sum() if reduction == "mean" else 1)
    out.backward(t64(go) if reduction == "none" else torch.tensor(go, dtype=torch.float64))
    return out, xt.grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 7), (33, 129), (4, 6, 3)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [1.0, -0.5, 2.0])
def test_poly1_vs_torch(rng, dtype, shape, reduction, eps):
    x = (2 * rng.standard_normal(shape)).astype(dtype)
    rows = (shape[0],) + shape[2:]
    y = rng.integers(0, shape[1], rows)
    if y.size > 2:
        y.reshape(-1)[1] = -100
    go = _go(rng, reduction, rows)
    ref, rg = _poly1_ref(x, y, eps, reduction, go)
    loss, g = lossx.poly1_cross_entropy(x, y, eps, reduction, return_grad=True, grad_output=go)
    _check(loss, g, ref, rg, dtype)
    np.testing.assert_array_equal(lossx.poly1_cross_entropy(x, y, eps, reduction), loss)


def test_poly1_finite_differences_and_epsilon0(rng):
    x = rng.standard_normal((9, 6))
    y = rng.integers(0, 6, 9)
    _fd(lambda a, **k: lossx.poly1_cross_entropy(a, y, 1.3, "sum", **k), x, rng)
    np.testing.assert_allclose(lossx.poly1_cross_entropy(x, y, 0.0), lossx.cross_entropy(x, y), rtol=1e-14)


def test_poly1_bad_input():
    with pytest.raises(TypeError, match="labels must be integer"):
        lossx.poly1_cross_entropy(np.ones((2, 3)), np.zeros(2))
    with pytest.raises(IndexError, match="position 1"):
        lossx.poly1_cross_entropy(np.ones((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="reduction"):
        lossx.poly1_cross_entropy(np.ones((2, 3)), np.array([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match="grad_output"):
        lossx.poly1_cross_entropy(np.ones((2, 3)), np.array([0, 1]), reduction="none", return_grad=True,
                                  grad_output=np.ones(3))


def test_poly1_empty_batch_and_all_ignored():
    # An empty batch: torch's conventions (mean nan, sum 0), an empty gradient;
    # cross_entropy takes an empty per-row grad_output (it used to demand one value).
    x, y = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    for red, want in (("mean", np.nan), ("sum", 0.0)):
        loss, g = lossx.poly1_cross_entropy(x, y, reduction=red, return_grad=True)
        np.testing.assert_equal(float(loss), want)
        assert g.shape == (0, 4)
    loss, g = lossx.cross_entropy(x, y, reduction="none", return_grad=True, grad_output=np.zeros(0, np.float32))
    assert loss.shape == (0,) and g.shape == (0, 4)
    # Every row ignored: mean nan, a zero gradient.
    x = np.ones((3, 4))
    loss, g = lossx.poly1_cross_entropy(x, np.full(3, -100), return_grad=True, grad_output=2.0)
    assert np.isnan(loss)
    np.testing.assert_array_equal(g, np.zeros((3, 4)))
