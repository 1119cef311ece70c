#!/usr/bin/env python3
"""Side-by-side timing of lossx against PyTorch (CPU) and plain NumPy.

Everything runs in ONE process on the SAME input arrays: the libraries are
interleaved call by call (lossx, torch, numpy, lossx, ...) so that a noisy
neighbour or a frequency change hits all of them alike, and each number is the
median of several samples taken after a warm-up. Tiny problems are timed in
batches of calls so that the per-call overhead is what gets measured.

Before timing, each library's loss (and gradient) is checked against torch, so
a fast wrong result never makes it into the table.

    python benchmarks/compare.py                       # default sizes, 2 threads
    python benchmarks/compare.py --threads 1 --json out.json --png out.png
    python benchmarks/compare.py --quick               # small sizes only (CI smoke)
    python benchmarks/compare.py --sizes 256x10,4096x32000

Which losses are timed comes from lossx._catalog: every catalog name that has an
entry in IMPLS below. Adding a loss = one IMPLS entry (input maker, lossx call,
torch call, optional NumPy call, bytes moved).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

DEFAULT_SIZES = [(256, 10), (4096, 1000), (1024, 32000), (4096, 32000), (256, 128256)]
QUICK_SIZES = [(256, 10), (512, 1000)]
LIBS = ("lossx", "torch", "numpy")
MODES = ("fwd", "fwd+bwd")


# ---------------------------------------------------------------------------
# The losses: one entry per catalog name.
#   make(rng, N, C)            -> dict of NumPy inputs
#   lossx(inp, grad)           -> loss, or (loss, grad)
#   torch(tin, grad)           -> loss tensor, or (loss, grad tensor); `tin` are the
#                                 same buffers as torch tensors (no copy)
#   numpy(inp, grad)           -> same as lossx, plain NumPy; None when there is none
#   nbytes(inp, grad)          -> bytes a perfect kernel must move (read + written)
# ---------------------------------------------------------------------------
@dataclass
class Impl:
    make: Callable
    lossx: Callable
    torch: Callable
    numpy: Optional[Callable]
    nbytes: Callable
    # Shapes (N, C) for this loss (None: the row-softmax sizes). N x C is the
    # input's shape: rows x classes, rows x features, or a flat 2-D block for
    # element-wise losses.
    sizes: Optional[list] = None
    quick_sizes: Optional[list] = None
    diff: Optional[tuple] = None  # inputs torch differentiates (None: every float input)
    tol: float = 1e-4  # relative agreement with torch required before timing


def _make_ce(rng, N, C):
    return {"logits": (rng.standard_normal((N, C), dtype=np.float32) * 2.0),
            "labels": rng.integers(0, C, size=N, dtype=np.int64)}


def _lossx_ce(inp, grad):
    import lossx
    return lossx.cross_entropy(inp["logits"], inp["labels"], return_grad=grad)


def _torch_ce(tin, grad):
    import torch.nn.functional as F
    x = tin["logits"]
    if not grad:
        return F.cross_entropy(x, tin["labels"])
    x.grad = None
    loss = F.cross_entropy(x, tin["labels"])
    loss.backward()
    return loss, x.grad


def _numpy_ce(inp, grad):
    # What a careful NumPy user writes: max-shifted log-softmax, gather, and
    # softmax - onehot for the gradient, in place where it is easy.
    x, y = inp["logits"], inp["labels"]
    N = x.shape[0]
    z = x - x.max(axis=1, keepdims=True)
    rows = np.arange(N)
    zy = z[rows, y]
    np.exp(z, out=z)
    s = z.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(s[:, 0]) - zy))
    if not grad:
        return loss
    z *= (1.0 / N) / s
    z[rows, y] -= 1.0 / N
    return loss, z


def _bytes_ce(inp, grad):
    return inp["logits"].nbytes * (2 if grad else 1)


def _make_nll(rng, N, C):
    inp = _make_ce(rng, N, C)
    x = inp["logits"]
    inp["logits"] = (x - np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)) - x.max(1, keepdims=True))
    return inp


def _lossx_nll(inp, grad):
    import lossx
    return lossx.nll_loss(inp["logits"], inp["labels"], return_grad=grad)


def _torch_nll(tin, grad):
    import torch.nn.functional as F
    x = tin["logits"]
    if not grad:
        return F.nll_loss(x, tin["labels"])
    x.grad = None
    loss = F.nll_loss(x, tin["labels"])
    loss.backward()
    return loss, x.grad


def _numpy_nll(inp, grad):
    x, y = inp["logits"], inp["labels"]
    N = x.shape[0]
    rows = np.arange(N)
    loss = float(-x[rows, y].mean())
    if not grad:
        return loss
    g = np.zeros_like(x)
    g[rows, y] = -1.0 / N
    return loss, g


def _bytes_nll(inp, grad):
    # Forward touches one logit and one label per row; the gradient is dense.
    N = inp["labels"].shape[0]
    return N * (8 + 4) + (inp["logits"].nbytes if grad else 0)


def _make_x(rng, N, C):
    return {"logits": rng.standard_normal((N, C), dtype=np.float32) * 2.0}


def _lossx_log_softmax(inp, grad):
    import lossx
    return lossx.log_softmax(inp["logits"], return_grad=grad)


def _torch_log_softmax(tin, grad):
    import torch
    import torch.nn.functional as F
    x = tin["logits"]
    if not grad:
        return F.log_softmax(x, -1)
    x.grad = None
    out = F.log_softmax(x, -1)
    out.backward(torch.ones_like(out))  # lossx's default: the gradient of out.sum()
    return out, x.grad


def _numpy_log_softmax(inp, grad):
    x = inp["logits"]
    m = x.max(axis=1, keepdims=True)
    out = x - m
    lse = np.log(np.exp(out).sum(axis=1, keepdims=True))
    out -= lse
    if not grad:
        return out
    return out, 1.0 - np.exp(out) * x.shape[1]


def _bytes_log_softmax(inp, grad):
    return inp["logits"].nbytes * (3 if grad else 2)


def _lossx_logsumexp(inp, grad):
    import lossx
    return lossx.logsumexp(inp["logits"], return_grad=grad)


def _torch_logsumexp(tin, grad):
    import torch
    x = tin["logits"]
    if not grad:
        return torch.logsumexp(x, -1)
    x.grad = None
    out = torch.logsumexp(x, -1)
    out.backward(torch.ones_like(out))
    return out, x.grad


def _numpy_logsumexp(inp, grad):
    x = inp["logits"]
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=1, keepdims=True)
    out = (m + np.log(s))[:, 0]
    if not grad:
        return out
    e /= s
    return out, e


def _bytes_logsumexp(inp, grad):
    return inp["logits"].nbytes * (2 if grad else 1)


# ---------------------------------------------------------------------------
# The other families, through one generic shape: `call(lib, inp)` evaluates the
# loss with either library; torch's gradients come from autograd over `diff`.
# ---------------------------------------------------------------------------
PW_SIZES = [(1024, 1023), (4096, 4096)]          # 2^24 elements: the size
PW_QUICK = [(64, 1000)]
EMB_SIZES = [(4096, 128), (65536, 128)]
EMB_QUICK = [(512, 128)]
ROW_SIZES = [(4096, 100), (4096, 1000)]
ROW_QUICK = [(256, 100)]


def _torch_generic(f, keys):
    def run(tin, grad):
        if not grad:
            return f(tin)
        for k in keys:
            tin[k].grad = None
        loss = f(tin)
        loss.backward()
        gs = tuple(tin[k].grad for k in keys)
        return loss, gs[0] if len(gs) == 1 else gs
    return run


def _lossx_generic(name, args, kw=None, pick=None):
    """pick: indices of lossx's gradient tuple that torch also gives."""
    def run(inp, grad):
        import lossx
        fn = lossx
        for part in name.split("."):
            fn = getattr(fn, part)
        out = fn(*[inp[a] for a in args], return_grad=grad, **(kw or {}))
        if grad and pick is not None:
            gs = tuple(out[1][i] for i in pick)
            return out[0], gs[0] if len(gs) == 1 else gs
        return out
    return run


def _bytes_rw(read_keys, grad_keys):
    def nbytes(inp, grad):
        r = sum(inp[k].nbytes for k in read_keys)
        return r + (sum(inp[k].nbytes for k in grad_keys) if grad else 0)
    return nbytes


def _make_pw(kind):
    def make(rng, N, C):
        x = rng.standard_normal((N, C), dtype=np.float32)
        y = rng.standard_normal((N, C), dtype=np.float32)
        if kind == "prob":          # binary_cross_entropy: x in (0, 1), y in [0, 1]
            x = rng.uniform(0.02, 0.98, (N, C)).astype(np.float32)
            y = rng.uniform(0, 1, (N, C)).astype(np.float32)
        elif kind == "pm1":         # +-1 targets
            y = np.where(rng.random((N, C)) < 0.5, -1, 1).astype(np.float32)
        elif kind == "logprob":     # kl_div: log-probabilities against probabilities
            x = np.log(rng.uniform(0.01, 1, (N, C))).astype(np.float32)
            y = rng.uniform(0, 1, (N, C)).astype(np.float32)
        elif kind == "count":       # poisson_nll_loss: counts
            y = rng.poisson(2.0, (N, C)).astype(np.float32)
        elif kind == "unit":        # targets in [0, 1]
            y = rng.uniform(0, 1, (N, C)).astype(np.float32)
        return {"input": x, "target": y}
    return make


def _pw(name, kind="normal", torch_name=None, kw=None, tkw=None, numpy=None, target_grad=True):
    """target_grad=False: torch does not differentiate the target, so only the
    input gradient is compared (lossx still writes both)."""
    import torch.nn.functional as F
    tf = getattr(F, torch_name or name)
    keys = ("input", "target") if target_grad else ("input",)
    return Impl(_make_pw(kind), _lossx_generic(name, ("input", "target"), kw, None if target_grad else (0,)),
                _torch_generic(lambda t: tf(t["input"], t["target"], **(tkw or kw or {})), keys),
                numpy, _bytes_rw(("input", "target"), ("input", "target")), PW_SIZES, PW_QUICK, diff=keys)


def _numpy_mse(inp, grad):
    d = inp["input"] - inp["target"]
    loss = float(np.mean(d * d))
    if not grad:
        return loss
    gi = d * (2.0 / d.size)
    return loss, (gi, -gi)


def _make_triplet(rng, N, D):
    return {k: rng.standard_normal((N, D), dtype=np.float32) for k in ("anchor", "positive", "negative")}


def _make_cosine(rng, N, D):
    return {"input1": rng.standard_normal((N, D), dtype=np.float32),
            "input2": rng.standard_normal((N, D), dtype=np.float32),
            "target": np.where(rng.random(N) < 0.5, -1, 1).astype(np.int64)}


def _make_ranking(rng, N, C):
    return {"input1": rng.standard_normal((N, C), dtype=np.float32),
            "input2": rng.standard_normal((N, C), dtype=np.float32),
            "target": np.where(rng.random((N, C)) < 0.5, -1.0, 1.0).astype(np.float32)}


def _make_mlsoft(rng, N, C):
    return {"input": rng.standard_normal((N, C), dtype=np.float32),
            "target": (rng.random((N, C)) < 0.3).astype(np.float32)}


def _make_multi(rng, N, C):
    return {"input": rng.standard_normal((N, C), dtype=np.float32),
            "target": rng.integers(0, C, size=N, dtype=np.int64)}


def _make_mlmargin(rng, N, C):
    t = np.full((N, C), -1, dtype=np.int64)
    k = max(1, C // 20)  # a few labels per row: the pair loop is O(k C)
    for i in range(N):
        t[i, :k] = rng.choice(C, size=k, replace=False)
    return {"input": rng.standard_normal((N, C), dtype=np.float32), "target": t}


def _torch_poly1(t):
    import torch
    import torch.nn.functional as F
    ce = F.cross_entropy(t["logits"], t["labels"], reduction="none")
    return (ce + (1 - torch.exp(-ce))).mean()


def _make_gauss(rng, N, C):
    inp = _make_pw("normal")(rng, N, C)
    inp["var"] = rng.uniform(0.5, 2.0, (N, C)).astype(np.float32)
    return inp


def _torch_focal(t):
    # torchvision.ops.sigmoid_focal_loss (alpha 0.25, gamma 2), mean: what users run today.
    import torch
    import torch.nn.functional as F
    x, y = t["input"], t["target"]
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** 2
    return (loss * (0.25 * y + 0.75 * (1 - y))).mean()


# Keras (lossx.keras) and tf.nn (lossx.tf) against the same formula written in
# torch (what a user porting the loss would write): y_pred differentiable only.
def _k_make(kind):
    def make(rng, N, C):
        p = rng.uniform(0.02, 0.98, (N, C)).astype(np.float32)
        if kind == "probs":
            t = rng.dirichlet(np.ones(C), N).astype(np.float32)
        elif kind == "binary":
            t = (rng.random((N, C)) < 0.5).astype(np.float32)
        elif kind == "sparse":
            t = rng.integers(0, C, N, dtype=np.int64)
        else:  # real
            t = rng.standard_normal((N, C), dtype=np.float32)
            p = rng.standard_normal((N, C), dtype=np.float32)
        return {"y_true": t, "y_pred": p}
    return make


def _keras(name, kind, formula, kw=None, tf=False):
    args = ("y_true", "y_pred")
    if tf:
        def lx(inp, grad, _n=name):
            import lossx
            out = getattr(lossx.tf, _n)(labels=inp["y_true"], logits=inp["y_pred"], return_grad=grad)
            return (out[0].mean(), out[1] / out[0].size) if grad else out.mean()
    else:
        lx = _lossx_generic("keras." + name, args, {"reduction": "sum_over_batch_size", **(kw or {})})
    return Impl(_k_make(kind), lx, _torch_generic(lambda t: formula(t["y_true"], t["y_pred"]), ("y_pred",)),
                None, _bytes_rw(args, ("y_pred",)), ROW_SIZES, ROW_QUICK, diff=("y_pred",))


def _keras_impls():
    import torch
    import torch.nn.functional as F
    eps = 1e-7
    clip = lambda p: p.clamp(eps, 1 - eps)
    norm = lambda p: clip(p / p.sum(-1, keepdim=True))
    lbl = lambda t: torch.where(t == 0, -1.0, t)
    table = {
        "categorical_crossentropy": ("probs", lambda t, p: -(t * norm(p).log()).sum(-1).mean()),
        "sparse_categorical_crossentropy": (
            "sparse", lambda t, p: -norm(p).log().gather(1, t[:, None]).mean()),
        "categorical_focal_crossentropy": (
            "probs", lambda t, p: (-(0.25 * (1 - norm(p)) ** 2) * t * norm(p).log()).sum(-1).mean()),
        "categorical_hinge": ("binary", lambda t, p: (((1 - t) * p).amax(-1) - (t * p).sum(-1) + 1).clamp_min(0).mean()),
        "cosine_similarity": ("real", lambda t, p: -(F.normalize(t, dim=-1, eps=eps) * F.normalize(p, dim=-1, eps=eps)).sum(-1).mean()),
        "dice": ("binary", lambda t, p: 1 - 2 * (t * p).sum() / (t.sum() + p.sum() + eps)),
        "tversky": ("binary", lambda t, p: 1 - (t * p).sum() / ((t * p).sum() + 0.5 * ((1 - p) * t).sum()
                                                              + 0.5 * (p * (1 - t)).sum() + eps)),
        "mean_absolute_error": ("real", lambda t, p: (p - t).abs().mean()),
        "mean_squared_error": ("real", lambda t, p: ((p - t) ** 2).mean()),
        "mean_absolute_percentage_error": ("real", lambda t, p: (100 * (t - p).abs() / t.abs().clamp_min(eps)).mean()),
        "mean_squared_logarithmic_error": (
            "probs", lambda t, p: ((p.clamp_min(eps) + 1).log() - (t.clamp_min(eps) + 1).log()).pow(2).mean()),
        "huber": ("real", lambda t, p: F.huber_loss(p, t)),
        "log_cosh": ("real", lambda t, p: ((p - t) + F.softplus(-2 * (p - t)) - np.log(2.0)).mean()),
        "poisson": ("probs", lambda t, p: (p - t * (p + eps).log()).mean()),
        "kl_divergence": ("probs", lambda t, p: (clip(t) * (clip(t) / clip(p)).log()).sum(-1).mean()),
        "binary_crossentropy": ("binary", lambda t, p: F.binary_cross_entropy(clip(p), t)),
        "binary_focal_crossentropy": (
            "binary", lambda t, p: (F.binary_cross_entropy(clip(p), t, reduction="none")
                                    * (1 - (t * p + (1 - t) * (1 - p))) ** 2).mean()),
        "hinge": ("binary", lambda t, p: (1 - lbl(t) * p).clamp_min(0).mean()),
        "squared_hinge": ("binary", lambda t, p: (1 - lbl(t) * p).clamp_min(0).pow(2).mean()),
    }
    out = {"keras." + n: _keras(n, k, f) for n, (k, f) in table.items()}
    out["tf.sigmoid_cross_entropy_with_logits"] = _keras(
        "sigmoid_cross_entropy_with_logits", "binary", lambda t, p: F.binary_cross_entropy_with_logits(p, t), tf=True)
    out["tf.softmax_cross_entropy_with_logits"] = _keras(
        "softmax_cross_entropy_with_logits", "probs", lambda t, p: F.cross_entropy(p, t), tf=True)
    out["tf.sparse_softmax_cross_entropy_with_logits"] = _keras(
        "sparse_softmax_cross_entropy_with_logits", "sparse", lambda t, p: F.cross_entropy(p, t), tf=True)
    return out


CTC_T, CTC_S = 100, 20


def _make_ctc(rng, N, C):
    # (T, N, C) log-probabilities, padded targets without the blank 0.
    z = rng.standard_normal((CTC_T, N, C)).astype(np.float32)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return {"log_probs": lp.astype(np.float32), "targets": rng.integers(1, C, (N, CTC_S), dtype=np.int64),
            "input_lengths": np.full(N, CTC_T, np.int64),
            "target_lengths": rng.integers(CTC_S // 2, CTC_S + 1, N, dtype=np.int64)}


def _generic_impls():
    import torch.nn.functional as F
    out = {
        "l1_loss": _pw("l1_loss"),
        "mse_loss": _pw("mse_loss", numpy=_numpy_mse),
        "smooth_l1_loss": _pw("smooth_l1_loss"),
        "huber_loss": _pw("huber_loss"),
        "binary_cross_entropy_with_logits": _pw("binary_cross_entropy_with_logits", "unit"),
        "soft_margin_loss": _pw("soft_margin_loss", "pm1", target_grad=False),
        "binary_cross_entropy": _pw("binary_cross_entropy", "prob"),
        "kl_div": _pw("kl_div", "logprob", kw={"reduction": "batchmean"}),
        "poisson_nll_loss": _pw("poisson_nll_loss", "count"),
        "gaussian_nll_loss": Impl(
            _make_gauss, _lossx_generic("gaussian_nll_loss", ("input", "target", "var")),
            _torch_generic(lambda t: F.gaussian_nll_loss(t["input"], t["target"], t["var"]),
                           ("input", "target", "var")),
            None, _bytes_rw(("input", "target", "var"), ("input", "target", "var")), PW_SIZES, PW_QUICK),
        "hinge_embedding_loss": Impl(
            _make_pw("pm1"), _lossx_generic("hinge_embedding_loss", ("input", "target")),
            _torch_generic(lambda t: F.hinge_embedding_loss(t["input"], t["target"]), ("input",)),
            None, _bytes_rw(("input", "target"), ("input",)), PW_SIZES, PW_QUICK, diff=("input",)),
        "sigmoid_focal_loss": Impl(
            _make_pw("unit"), _lossx_generic("sigmoid_focal_loss", ("input", "target"), {"reduction": "mean"}),
            _torch_generic(_torch_focal, ("input", "target")),
            None, _bytes_rw(("input", "target"), ("input", "target")), PW_SIZES, PW_QUICK),
        "ctc_loss": Impl(
            _make_ctc, _lossx_generic("ctc_loss", ("log_probs", "targets", "input_lengths", "target_lengths")),
            _torch_generic(lambda t: F.ctc_loss(t["log_probs"], t["targets"], t["input_lengths"],
                                                t["target_lengths"]), ("log_probs",)),
            None, _bytes_rw(("log_probs",), ("log_probs",)), [(32, 29), (64, 128)], [(8, 29)], diff=("log_probs",),
            tol=1e-3),  # torch's float32 CTC runs its recursions in float32 over T frames, lossx in float64
        "triplet_margin_loss": Impl(
            _make_triplet, _lossx_generic("triplet_margin_loss", ("anchor", "positive", "negative")),
            _torch_generic(lambda t: F.triplet_margin_loss(t["anchor"], t["positive"], t["negative"]),
                           ("anchor", "positive", "negative")),
            None, _bytes_rw(("anchor", "positive", "negative"), ("anchor", "positive", "negative")),
            EMB_SIZES, EMB_QUICK),
        "cosine_embedding_loss": Impl(
            _make_cosine, _lossx_generic("cosine_embedding_loss", ("input1", "input2", "target")),
            _torch_generic(lambda t: F.cosine_embedding_loss(t["input1"], t["input2"], t["target"]),
                           ("input1", "input2")),
            None, _bytes_rw(("input1", "input2"), ("input1", "input2")), EMB_SIZES, EMB_QUICK),
        "margin_ranking_loss": Impl(
            _make_ranking, _lossx_generic("margin_ranking_loss", ("input1", "input2", "target")),
            _torch_generic(lambda t: F.margin_ranking_loss(t["input1"], t["input2"], t["target"]),
                           ("input1", "input2")),
            None, _bytes_rw(("input1", "input2", "target"), ("input1", "input2")), PW_SIZES, PW_QUICK,
            diff=("input1", "input2")),
        "multilabel_soft_margin_loss": Impl(
            _make_mlsoft, _lossx_generic("multilabel_soft_margin_loss", ("input", "target")),
            _torch_generic(lambda t: F.multilabel_soft_margin_loss(t["input"], t["target"]), ("input",)),
            None, _bytes_rw(("input", "target"), ("input",)), ROW_SIZES, ROW_QUICK, diff=("input",)),
        "multi_margin_loss": Impl(
            _make_multi, _lossx_generic("multi_margin_loss", ("input", "target")),
            _torch_generic(lambda t: F.multi_margin_loss(t["input"], t["target"]), ("input",)),
            None, _bytes_rw(("input",), ("input",)), ROW_SIZES, ROW_QUICK),
        "multilabel_margin_loss": Impl(
            _make_mlmargin, _lossx_generic("multilabel_margin_loss", ("input", "target")),
            _torch_generic(lambda t: F.multilabel_margin_loss(t["input"], t["target"]), ("input",)),
            None, _bytes_rw(("input", "target"), ("input",)), ROW_SIZES, ROW_QUICK),
        "poly1_cross_entropy": Impl(
            _make_ce, _lossx_generic("poly1_cross_entropy", ("logits", "labels")),
            _torch_generic(_torch_poly1, ("logits",)), None, _bytes_ce),
    }
    return out


IMPLS = {
    "cross_entropy": Impl(_make_ce, _lossx_ce, _torch_ce, _numpy_ce, _bytes_ce),
    "nll_loss": Impl(_make_nll, _lossx_nll, _torch_nll, _numpy_nll, _bytes_nll),
    "log_softmax": Impl(_make_x, _lossx_log_softmax, _torch_log_softmax, _numpy_log_softmax, _bytes_log_softmax),
    "logsumexp": Impl(_make_x, _lossx_logsumexp, _torch_logsumexp, _numpy_logsumexp, _bytes_logsumexp),
}
IMPLS.update(_generic_impls())
IMPLS.update(_keras_impls())


def benchmarked_losses():
    """Catalog names with an IMPLS entry (in catalog order), and those without."""
    from lossx import _catalog
    names = _catalog.names() + ["keras." + n for n in _catalog.KERAS] + ["tf." + n for n in _catalog.TF]
    return [n for n in names if n in IMPLS], [n for n in names if n not in IMPLS]


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------
def _to_torch(inp, grad, diff=None):
    import torch
    out = {}
    for k, v in inp.items():
        t = torch.from_numpy(v)
        if grad and t.is_floating_point() and (diff is None or k in diff):
            t.requires_grad_(True)
        out[k] = t
    return out


def _sample(fn, inner):
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def time_interleaved(fns, repeats, min_sample_s=0.02, budget_s=20.0):
    """fns: {name: callable}. Returns {name: [seconds per call, ...]}.

    Each library gets a warm-up, then an inner batch size so that a sample lasts
    at least min_sample_s; rounds run the libraries one after the other. A
    library whose samples already cost more than budget_s stops after 3 samples
    (plain NumPy at 4096x32000 would otherwise take minutes).
    """
    inner = {}
    for name, fn in fns.items():
        fn()  # warm-up: first-touch of outputs, thread pools, caches
        t = _sample(fn, 1)
        inner[name] = max(1, min(10000, int(min_sample_s / max(t, 1e-9))))
    samples = {name: [] for name in fns}
    spent = {name: 0.0 for name in fns}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            for name, fn in fns.items():
                if r >= 3 and spent[name] > budget_s:
                    continue
                s = _sample(fn, inner[name])
                samples[name].append(s)
                spent[name] += s * inner[name]
    finally:
        if gc_was:
            gc.enable()
    return samples


def _check(loss_name, mode, ref, got, lib, tol=1e-4):
    """got/ref: loss or (loss, grad). rtol 1e-4: float32 sums over up to 1e8 terms."""
    import torch
    def arr(v):
        return v.detach().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    rl, gl = (ref, None) if mode == "fwd" else ref
    ol, og = (got, None) if mode == "fwd" else got
    pairs = [("value", ol, rl)]
    if isinstance(gl, tuple):  # one gradient per differentiable input
        if not isinstance(og, tuple) or len(og) != len(gl):
            raise SystemExit(f"{lib} {loss_name} {mode}: {len(gl)} gradients expected")
        pairs += [(f"gradient {k}", o, r) for k, (o, r) in enumerate(zip(og, gl))]
    else:
        pairs.append(("gradient", og, gl))
    for what, o, r in pairs:
        if r is None:
            continue
        o, r = arr(o), arr(r)
        # atol relative to the largest entry: tiny entries carry absolute, not relative, float32 error.
        if o.shape != r.shape or not np.allclose(o, r, rtol=tol, atol=0.1 * tol * float(np.abs(r).max())):
            raise SystemExit(f"{lib} {loss_name} {mode}: {what} differs from torch "
                             f"(shapes {o.shape} vs {r.shape}, max abs diff "
                             f"{float(np.abs(o - r).max()) if o.shape == r.shape else float('nan'):.3g})")


def copy_ceiling(threads, mb=512, repeats=5):
    """GB/s of a large copy (bytes read + written): NumPy (one thread) and
    torch's copy_ (its thread pool)."""
    import torch
    n = mb << 20
    src = np.ones(n, dtype=np.uint8)
    dst = np.zeros(n, dtype=np.uint8)
    ts, td = torch.from_numpy(src), torch.from_numpy(dst)
    res = time_interleaved({"np.copyto": lambda: np.copyto(dst, src), "torch copy_": lambda: td.copy_(ts)},
                           repeats, min_sample_s=0.0)
    out = {}
    for name, s in res.items():
        sec = statistics.median(s)
        out[name] = {"ms": sec * 1e3, "gbps": 2 * n / sec / 1e9, "mb": mb,
                     "threads": 1 if name == "np.copyto" else threads}
    return out


def run(losses, sizes, threads, repeats, libs, quick=False):
    import torch
    import lossx
    lossx.set_num_threads(threads)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    results = []
    for loss_name in losses:
        impl = IMPLS[loss_name]
        own = impl.quick_sizes if quick else impl.sizes
        for N, C in (sizes or own or (QUICK_SIZES if quick else DEFAULT_SIZES)):
            inp = impl.make(rng, N, C)
            for mode in MODES:
                grad = mode == "fwd+bwd"
                tin = _to_torch(inp, grad, impl.diff)
                fns = {"lossx": lambda: impl.lossx(inp, grad), "torch": lambda: impl.torch(tin, grad)}
                if impl.numpy is not None and "numpy" in libs:
                    fns["numpy"] = lambda: impl.numpy(inp, grad)
                fns = {k: v for k, v in fns.items() if k in libs or k == "torch"}
                ref = fns["torch"]()
                for lib, fn in fns.items():
                    if lib != "torch":
                        _check(loss_name, mode, ref, fn(), lib, impl.tol)
                del ref
                samples = time_interleaved(fns, repeats)
                nbytes = impl.nbytes(inp, grad)
                row = {"loss": loss_name, "mode": mode, "N": N, "C": C, "bytes": nbytes, "libs": {}}
                for lib, s in samples.items():
                    sec = statistics.median(s)
                    row["libs"][lib] = {"ms": sec * 1e3, "gbps": nbytes / sec / 1e9, "samples": len(s),
                                        "min_ms": min(s) * 1e3}
                t_ms = row["libs"]["torch"]["ms"]
                for lib, d in row["libs"].items():
                    d["speedup_vs_torch"] = t_ms / d["ms"]
                results.append(row)
                print(_row_line(row), file=sys.stderr, flush=True)
                del tin, fns
            del inp
            gc.collect()
    return results


def _row_line(row):
    parts = [f"{lib} {d['ms']:.4g} ms" for lib, d in row["libs"].items()]
    return f"  {row['loss']} {row['mode']} {row['N']}x{row['C']}: " + ", ".join(parts)


def markdown(results, copy, meta):
    libs = [l for l in LIBS if any(l in r["libs"] for r in results)]
    head = ["loss", "mode", "N x C"] + [f"{l} ms" for l in libs] + [f"{l} GB/s" for l in libs] + \
        [f"{l} / torch" for l in libs if l != "torch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["loss"], r["mode"], f"{r['N']}x{r['C']}"]
        get = lambda l, k, f: (f.format(r["libs"][l][k]) if l in r["libs"] else "-")
        cells += [get(l, "ms", "{:.4g}") for l in libs]
        cells += [get(l, "gbps", "{:.3g}") for l in libs]
        cells += [get(l, "speedup_vs_torch", "{:.2f}x") for l in libs if l != "torch"]
        lines.append("| " + " | ".join(cells) + " |")
    out = [f"threads={meta['threads']}  lossx {meta['lossx']} ({meta['simd_target']})  torch {meta['torch']}  "
           f"numpy {meta['numpy']}  cpu: {meta['cpu']}", "",
           "ms: median per call; GB/s: bytes a perfect kernel moves (logits read, + gradient written for "
           "fwd+bwd) / time; `x / torch`: torch time / x time (higher is faster). NumPy runs one thread.", ""]
    out += lines
    if copy:
        mb = next(iter(copy.values()))["mb"]
        out += ["", f"| copy {mb} MB (read + write) | threads | ms | GB/s |", "|---|---|---|---|"]
        for name, d in copy.items():
            out.append(f"| {name} | {d['threads']} | {d['ms']:.4g} | {d['gbps']:.3g} |")
    return "\n".join(out)


def plot(results, copy, path, threads):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    libs = [l for l in LIBS if l != "torch" and any(l in r["libs"] for r in results)]
    labels = [f"{r['loss']}\n{r['mode']}\n{r['N']}x{r['C']}" for r in results]
    x = np.arange(len(results))
    width = 0.8 / max(1, len(libs))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(results) + 2), 4.5))
    for k, lib in enumerate(libs):
        vals = [r["libs"][lib]["speedup_vs_torch"] if lib in r["libs"] else np.nan for r in results]
        bars = ax.bar(x + (k - (len(libs) - 1) / 2) * width, vals, width, label=lib)
        ax.bar_label(bars, fmt="%.2g", fontsize=7)
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="torch")
    ax.set_yscale("log")
    fmt = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(fmt)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("speed-up vs torch CPU (higher is faster)")
    title = f"float32, mean reduction, {threads} thread(s)"
    if copy and "torch copy_" in copy:
        title += f"; copy ceiling {copy['torch copy_']['gbps']:.1f} GB/s"
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_sizes(text):
    sizes = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            n, c = part.split("x")
            sizes.append((int(n), int(c)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"size {part!r} is not NxC (e.g. 4096x32000)") from None
    if not sizes:
        raise argparse.ArgumentTypeError("no sizes given")
    return sizes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=int(os.environ.get("LOSSX_NUM_THREADS", "2") or 2),
                   help="threads for lossx and torch (default: LOSSX_NUM_THREADS or 2)")
    p.add_argument("--quick", action="store_true", help="small sizes only, few repeats (CI smoke)")
    p.add_argument("--sizes", type=parse_sizes, help="comma-separated NxC list, e.g. 256x10,4096x32000")
    p.add_argument("--repeats", type=int, default=None, help="samples per library (default 9, quick 3)")
    p.add_argument("--losses", help="comma-separated subset of the benchmarked catalog names")
    p.add_argument("--no-numpy", action="store_true", help="skip the plain NumPy implementation")
    p.add_argument("--no-copy", action="store_true", help="skip the copy ceiling")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--png", help="write a bar chart (speed-up vs torch) here")
    a = p.parse_args(argv)
    if a.threads < 1:
        p.error("--threads must be >= 1")

    import torch
    import lossx
    losses, missing = benchmarked_losses()
    if a.losses:
        want = [s.strip() for s in a.losses.split(",") if s.strip()]
        unknown = [w for w in want if w not in losses]
        if unknown:
            p.error(f"not benchmarked: {unknown}; available: {losses}")
        losses = want
    sizes = a.sizes  # None: each loss's own default sizes
    repeats = a.repeats or (3 if a.quick else 9)
    libs = tuple(l for l in LIBS if not (a.no_numpy and l == "numpy"))
    meta = {"threads": a.threads, "lossx": lossx.__version__, "simd_target": lossx.info()["simd_target"],
            "torch": torch.__version__, "numpy": np.__version__, "cpu": _cpu_name(),
            "python": platform.python_version(), "repeats": repeats,
            "catalog_not_benchmarked": missing}
    print(f"compare: losses {losses}, sizes {sizes or 'per loss'}, threads {a.threads}", file=sys.stderr)
    if missing:
        print(f"compare: catalog entries without a benchmark entry: {missing}", file=sys.stderr)
    results = run(losses, sizes, a.threads, repeats, libs, quick=a.quick)
    copy = None
    if not a.no_copy:
        copy = copy_ceiling(a.threads, mb=64 if a.quick else 512, repeats=3 if a.quick else 5)
    print(markdown(results, copy, meta))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "results": results, "copy": copy}, f, indent=1)
    if a.png:
        plot(results, copy, a.png, a.threads)
    return 0


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cpus)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
