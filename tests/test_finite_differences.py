"""Finite differences: a second oracle, independent of torch, for every gradient
of every public loss (lossx.<name>, lossx.keras.<name>, lossx.tf.<name>).

Each case calls the loss in float64 with ``return_grad=True`` and a random
``grad_output`` (so the vector-Jacobian product is what is checked, not only the
gradient of a plain sum), and compares ``<grad, v>`` for random directions ``v``
with the central difference ``(L(x + h v) - L(x - h v)) / 2h`` of
``L = sum(grad_output * loss)``, for each differentiable input in turn. Inputs
are drawn away from kinks (hinges, clips, |d| = beta) so the loss is smooth
within h of them. ``test_every_catalog_loss_has_a_case`` keeps this list complete.
"""
import numpy as np
import pytest

import lossx
from lossx import _catalog

H = 1e-6


def _normal(rng, shape, scale=1.0):
    return rng.standard_normal(shape) * scale


def _pm1(rng, shape):
    return rng.choice([-1.0, 1.0], shape)


def _probs(rng, shape):
    p = rng.uniform(0.1, 1.0, shape)
    return p / p.sum(-1, keepdims=True)


def _log_probs(rng, shape):
    return np.log(_probs(rng, shape))


def _mlm_target(rng, N, C):
    t = np.full((N, C), -1, dtype=np.int64)
    for i in range(N):
        k = rng.integers(1, C)
        t[i, :k] = rng.choice(C, size=k, replace=False)
    return t


def _ctc_through_log_softmax(logits, targets, in_len, tgt_len, **kw):
    """ctc_loss(log_softmax(logits)): lossx's (torch's) CTC gradient is the
    gradient with respect to these logits (exp(lp) - gamma), not the bare
    partial derivative with respect to log_probs; see lossx.ctc_loss."""
    z = logits - logits.max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return lossx.ctc_loss(lp, targets, in_len, tgt_len, **kw)


def _ctc_case(r):
    T, N, C, S = 9, 3, 5, 3
    tl = np.array([3, 2, 1])
    return (_ctc_through_log_softmax, (_normal(r, (T, N, C)), r.integers(1, C, (N, S)), np.array([9, 7, 5]), tl),
            {"blank": 0})


# name -> list of (id, make(rng) -> (fn, args, kwargs), differentiable argument
# positions, position of each in lossx's gradient tuple (None: a single array)).
def _top(name):
    return getattr(lossx, name)


CASES = {
    "cross_entropy": [
        ("labels", lambda r: (_top("cross_entropy"), (_normal(r, (5, 7), 2), r.integers(0, 7, 5)),
                              {"weight": r.uniform(0.5, 2, 7), "label_smoothing": 0.15}), [0], [None]),
        ("kdim_extras", lambda r: (_top("cross_entropy"), (_normal(r, (3, 6, 4), 2), r.integers(0, 6, (3, 4))),
                                   {"z_loss": 1e-2, "softcap": 4.0}), [0], [None]),
        ("probs", lambda r: (_top("cross_entropy"), (_normal(r, (5, 7), 2), _probs(r, (5, 7))),
                             {"label_smoothing": 0.1}), [0, 1], [0, 1]),
    ],
    "nll_loss": [("w", lambda r: (_top("nll_loss"), (_normal(r, (6, 5)), r.integers(0, 5, 6)),
                                  {"weight": r.uniform(0.5, 2, 5)}), [0], [None])],
    "log_softmax": [("2d", lambda r: (_top("log_softmax"), (_normal(r, (4, 9), 2),), {}), [0], [None])],
    "logsumexp": [("2d", lambda r: (_top("logsumexp"), (_normal(r, (4, 9), 2),), {}), [0], [None])],
    # pointwise: both input and target are differentiable unless noted.
    "l1_loss": [("", lambda r: (_top("l1_loss"), (_normal(r, (5, 7)), _normal(r, (5, 7))), {}), [0, 1], [0, 1])],
    "mse_loss": [("", lambda r: (_top("mse_loss"), (_normal(r, (5, 7)), _normal(r, (5, 7))), {}), [0, 1], [0, 1])],
    "smooth_l1_loss": [("", lambda r: (_top("smooth_l1_loss"), (_normal(r, (5, 7)), _normal(r, (5, 7))),
                                       {"beta": 0.6}), [0, 1], [0, 1])],
    "huber_loss": [("", lambda r: (_top("huber_loss"), (_normal(r, (5, 7)), _normal(r, (5, 7))),
                                   {"delta": 0.7}), [0, 1], [0, 1])],
    "binary_cross_entropy_with_logits": [
        ("w_pw", lambda r: (_top("binary_cross_entropy_with_logits"),
                            (_normal(r, (5, 7), 3), r.uniform(0, 1, (5, 7))),
                            {"weight": r.uniform(0.5, 2, 7), "pos_weight": r.uniform(0.5, 2, 7)}), [0, 1], [0, 1])],
    "soft_margin_loss": [("", lambda r: (_top("soft_margin_loss"), (_normal(r, (5, 7), 2), _pm1(r, (5, 7))), {}),
                          [0], [0])],
    "binary_cross_entropy": [("w", lambda r: (_top("binary_cross_entropy"),
                                              (r.uniform(0.05, 0.95, (5, 7)), r.uniform(0, 1, (5, 7))),
                                              {"weight": r.uniform(0.5, 2, (5, 7))}), [0, 1], [0, 1])],
    "kl_div": [
        ("probs", lambda r: (_top("kl_div"), (_log_probs(r, (5, 7)), _probs(r, (5, 7))),
                             {"reduction": "batchmean"}), [0, 1], [0, 1]),
        ("log_target", lambda r: (_top("kl_div"), (_log_probs(r, (5, 7)), _log_probs(r, (5, 7))),
                                  {"log_target": True}), [0, 1], [0, 1]),
    ],
    "poisson_nll_loss": [
        ("log_full", lambda r: (_top("poisson_nll_loss"), (_normal(r, (5, 7)), r.uniform(1.5, 5, (5, 7))),
                                {"full": True}), [0, 1], [0, 1]),
        ("linear", lambda r: (_top("poisson_nll_loss"), (r.uniform(0.2, 3, (5, 7)), r.uniform(0.1, 0.9, (5, 7))),
                              {"log_input": False}), [0, 1], [0, 1]),
    ],
    "gaussian_nll_loss": [
        ("bcast_full", lambda r: (_top("gaussian_nll_loss"),
                                  (_normal(r, (5, 7)), _normal(r, (5, 7)), r.uniform(0.5, 2, (5, 1))),
                                  {"full": True}), [0, 1, 2], [0, 1, 2])],
    "hinge_embedding_loss": [
        ("", lambda r: (_top("hinge_embedding_loss"), (_normal(r, (5, 7)), _pm1(r, (5, 7))), {"margin": 0.8}),
         [0], [None])],
    "sigmoid_focal_loss": [
        ("alpha", lambda r: (_top("sigmoid_focal_loss"), (_normal(r, (5, 7), 3), r.uniform(0, 1, (5, 7))),
                             {"alpha": 0.3, "gamma": 1.5}), [0, 1], [0, 1]),
        ("no_alpha", lambda r: (_top("sigmoid_focal_loss"), (_normal(r, (5, 7), 3), r.uniform(0, 1, (5, 7))),
                                {"alpha": None, "gamma": 2.0}), [0, 1], [0, 1]),
    ],
    "ctc_loss": [("via_log_softmax", _ctc_case, [0], [None])],
    "triplet_margin_loss": [
        ("p3_swap", lambda r: (_top("triplet_margin_loss"), tuple(_normal(r, (6, 5)) for _ in range(3)),
                               {"margin": 3.0, "p": 3.0, "swap": True}), [0, 1, 2], [0, 1, 2])],
    "cosine_embedding_loss": [
        ("", lambda r: (_top("cosine_embedding_loss"), (_normal(r, (6, 5)), _normal(r, (6, 5)), _pm1(r, 6)),
                        {"margin": -0.5}), [0, 1], [0, 1])],
    "margin_ranking_loss": [
        ("", lambda r: (_top("margin_ranking_loss"), (_normal(r, (5, 7)), _normal(r, (5, 7)), _pm1(r, (5, 7))),
                        {"margin": 0.3}), [0, 1], [0, 1])],
    "multilabel_soft_margin_loss": [
        ("w", lambda r: (_top("multilabel_soft_margin_loss"),
                         (_normal(r, (5, 7), 2), r.integers(0, 2, (5, 7)).astype(float)),
                         {"weight": r.uniform(0.5, 2, 7)}), [0], [None])],
    "multi_margin_loss": [
        ("p2", lambda r: (_top("multi_margin_loss"), (_normal(r, (5, 7)), r.integers(0, 7, 5)),
                          {"p": 2, "margin": 0.8, "weight": r.uniform(0.5, 2, 7)}), [0], [None])],
    "multilabel_margin_loss": [
        ("", lambda r: (_top("multilabel_margin_loss"), (_normal(r, (5, 7)), _mlm_target(r, 5, 7)), {}),
         [0], [None])],
    "poly1_cross_entropy": [
        ("", lambda r: (_top("poly1_cross_entropy"), (_normal(r, (5, 7), 2), r.integers(0, 7, 5)),
                        {"epsilon": 2.0}), [0], [None])],
}

# Keras: (y_true, y_pred), gradient with respect to y_pred only.
_K = lossx.keras
KERAS_CASES = {
    "categorical_crossentropy": [
        ("probs", lambda r: (_K.categorical_crossentropy, (_probs(r, (5, 6)), r.uniform(0.1, 1, (5, 6))),
                             {"label_smoothing": 0.2}), [1], [None]),
        ("logits", lambda r: (_K.categorical_crossentropy, (_probs(r, (5, 6)), _normal(r, (5, 6))),
                              {"from_logits": True}), [1], [None]),
    ],
    "sparse_categorical_crossentropy": [
        ("", lambda r: (_K.sparse_categorical_crossentropy, (r.integers(0, 6, 5), r.uniform(0.1, 1, (5, 6))), {}),
         [1], [None])],
    "categorical_focal_crossentropy": [
        ("", lambda r: (_K.categorical_focal_crossentropy, (_probs(r, (5, 6)), _normal(r, (5, 6))),
                        {"from_logits": True, "gamma": 1.5}), [1], [None])],
    "categorical_hinge": [
        ("", lambda r: (_K.categorical_hinge, (np.eye(6)[r.integers(0, 6, 5)], _normal(r, (5, 6))), {}),
         [1], [None])],
    "cosine_similarity": [("", lambda r: (_K.cosine_similarity, (_normal(r, (5, 6)), _normal(r, (5, 6))), {}),
                           [1], [None])],
    "dice": [("", lambda r: (_K.dice, (r.uniform(0, 1, (5, 6)), r.uniform(0.1, 1, (5, 6))), {}), [1], [None])],
    "tversky": [("", lambda r: (_K.tversky, (r.uniform(0, 1, (5, 6)), r.uniform(0.1, 1, (5, 6))),
                                {"alpha": 0.3, "beta": 0.7}), [1], [None])],
    # element-wise (mean over the last axis); probabilities kept inside Keras' clip
    "mean_absolute_error": [("", lambda r: (_K.mean_absolute_error, (_normal(r, (5, 7)), _normal(r, (5, 7))), {}),
                             [1], [None])],
    "mean_squared_error": [("", lambda r: (_K.mean_squared_error, (_normal(r, (5, 7)), _normal(r, (5, 7))), {}),
                            [1], [None])],
    "mean_absolute_percentage_error": [
        ("", lambda r: (_K.mean_absolute_percentage_error, (r.uniform(0.5, 2, (5, 7)), _normal(r, (5, 7))), {}),
         [1], [None])],
    "mean_squared_logarithmic_error": [
        ("", lambda r: (_K.mean_squared_logarithmic_error, (r.uniform(0, 3, (5, 7)), r.uniform(0.1, 3, (5, 7))),
                        {}), [1], [None])],
    "huber": [("", lambda r: (_K.huber, (_normal(r, (5, 7)), _normal(r, (5, 7))), {"delta": 0.7}), [1], [None])],
    "log_cosh": [("", lambda r: (_K.log_cosh, (_normal(r, (5, 7)), _normal(r, (5, 7), 3)), {}), [1], [None])],
    "poisson": [("", lambda r: (_K.poisson, (r.uniform(0, 3, (5, 7)), r.uniform(0.1, 3, (5, 7))), {}), [1], [None])],
    "kl_divergence": [("", lambda r: (_K.kl_divergence, (_probs(r, (5, 7)), _probs(r, (5, 7))), {}), [1], [None])],
    "binary_crossentropy": [
        ("probs", lambda r: (_K.binary_crossentropy, (r.uniform(0, 1, (5, 7)), r.uniform(0.05, 0.95, (5, 7))),
                             {"label_smoothing": 0.1}), [1], [None]),
        ("logits", lambda r: (_K.binary_crossentropy, (r.uniform(0, 1, (5, 7)), _normal(r, (5, 7), 3)),
                              {"from_logits": True}), [1], [None]),
    ],
    "binary_focal_crossentropy": [
        ("balanced", lambda r: (_K.binary_focal_crossentropy,
                                (r.uniform(0, 1, (5, 7)), r.uniform(0.05, 0.95, (5, 7))),
                                {"apply_class_balancing": True, "gamma": 1.5}), [1], [None]),
        ("logits", lambda r: (_K.binary_focal_crossentropy, (r.uniform(0, 1, (5, 7)), _normal(r, (5, 7), 2)),
                              {"from_logits": True, "label_smoothing": 0.2}), [1], [None]),
    ],
    "hinge": [("", lambda r: (_K.hinge, (_pm1(r, (5, 7)), _normal(r, (5, 7), 2)), {}), [1], [None])],
    "squared_hinge": [("", lambda r: (_K.squared_hinge, (r.integers(0, 2, (5, 7)).astype(float),
                                                         _normal(r, (5, 7), 2)), {}), [1], [None])],
}

_T = lossx.tf
TF_CASES = {
    "sigmoid_cross_entropy_with_logits": [
        ("", lambda r: (_T.sigmoid_cross_entropy_with_logits, (),
                        {"labels": r.uniform(0, 1, (5, 6)), "logits": _normal(r, (5, 6), 3)}), ["logits"], [None])],
    "softmax_cross_entropy_with_logits": [
        ("", lambda r: (_T.softmax_cross_entropy_with_logits, (),
                        {"labels": _probs(r, (5, 6)), "logits": _normal(r, (5, 6), 2)}), ["logits"], [None])],
    "sparse_softmax_cross_entropy_with_logits": [
        ("", lambda r: (_T.sparse_softmax_cross_entropy_with_logits, (),
                        {"labels": r.integers(0, 6, 5), "logits": _normal(r, (5, 6), 2)}), ["logits"], [None])],
}


def _all_cases():
    for table, cases in (("", CASES), ("keras.", KERAS_CASES), ("tf.", TF_CASES)):
        for name, variants in cases.items():
            for vid, make, diff, slots in variants:
                yield pytest.param(make, diff, slots, id=f"{table}{name}[{vid}]" if vid else f"{table}{name}")


def test_every_catalog_loss_has_a_case():
    missing = [n for n in _catalog.names() if n not in CASES]
    missing += ["keras." + n for n in _catalog.KERAS if n not in KERAS_CASES]
    missing += ["tf." + n for n in _catalog.TF if n not in TF_CASES]
    assert not missing, f"losses without a finite-difference case: {missing}"


def _loss_value(fn, args, kwargs, go):
    out = fn(*args, **kwargs)
    return float(np.sum(np.asarray(out, dtype=np.float64) * go))


@pytest.mark.parametrize("make,diff,slots", list(_all_cases()))
@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_gradient_matches_finite_differences(make, diff, slots, reduction, rng):
    fn, args, kwargs = make(rng)
    kwargs = dict(kwargs)
    if reduction == "none" or "reduction" not in kwargs:
        # Losses without a reduction argument (log_softmax, logsumexp, tf.*) return arrays.
        try:
            fn(*args, **kwargs, reduction=reduction)
            kwargs["reduction"] = reduction
        except TypeError:
            pass
    out = np.asarray(fn(*args, **kwargs), dtype=np.float64)
    go = rng.uniform(0.5, 1.5, out.shape) if out.ndim else np.float64(rng.uniform(0.5, 1.5))
    res = fn(*args, **kwargs, return_grad=True, grad_output=go if out.ndim else float(go))
    loss, grads = res[0], res[-1]
    np.testing.assert_allclose(np.asarray(loss, dtype=np.float64), out, rtol=1e-12, atol=1e-14)
    for pos, slot in zip(diff, slots):
        g = grads if slot is None else grads[slot]
        base = kwargs[pos] if isinstance(pos, str) else args[pos]
        assert np.shape(g) == np.shape(base), (pos, np.shape(g), np.shape(base))
        for _ in range(2):
            v = rng.standard_normal(np.shape(base))

            def at(s):
                a2, k2 = list(args), dict(kwargs)
                if isinstance(pos, str):
                    k2[pos] = base + s * H * v
                else:
                    a2[pos] = base + s * H * v
                return _loss_value(fn, a2, k2, go)

            fd = (at(1) - at(-1)) / (2 * H)
            an = float(np.sum(np.asarray(g, dtype=np.float64) * v))
            # Central differences in float64 with h = 1e-6 carry ~1e-9 relative error.
            assert an == pytest.approx(fd, rel=1e-6, abs=1e-7), (pos, an, fd)
