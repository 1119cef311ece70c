"""Row-softmax family (cross_entropy, nll_loss, log_softmax, logsumexp) against
torch 2.13 CPU float64 + autograd."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossx
from _util import BF16, FLOAT_DTYPES, close, t64

REDUCTIONS = ["none", "mean", "sum"]
# (input shape): unbatched, 2-D with SIMD tails, a single class, K-dim.
SHAPES = [(13,), (7, 5), (33, 1003), (3, 1), (4, 6, 3, 2)]


def _labels(rng, shape, C, ignore=False):
    rows = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
    y = rng.integers(0, C, size=rows)
    if ignore and y.size > 1:
        y.reshape(-1)[:: 3] = -100
    return y


def _ref(fn, inputs, kwargs, reduction, grad_output):
    """Run a torch function in float64 and return (loss, grads of inputs)."""
    out = fn(*inputs, **kwargs)
    if reduction == "none":
        out.backward(t64(grad_output))
    else:
        (out * (1.0 if grad_output is None else grad_output)).backward()
    return out, [i.grad for i in inputs if isinstance(i, torch.Tensor) and i.requires_grad]


def _grad_output(rng, reduction, loss_shape):
    if reduction == "none":
        return rng.standard_normal(loss_shape)
    return float(rng.uniform(0.5, 2.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_cross_entropy_labels(rng, dtype, shape, reduction, weighted, ignore, smoothing):
    C = shape[0] if len(shape) == 1 else shape[1]
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = _labels(rng, shape, C, ignore)
    w = rng.uniform(0.2, 2.0, C) if weighted else None
    loss_shape = y.shape if reduction == "none" else ()
    go = _grad_output(rng, reduction, loss_shape)
    xt = t64(x, True)
    ref, (gref,) = _ref(F.cross_entropy, [xt, torch.tensor(y)],
                        dict(weight=None if w is None else t64(w), reduction=reduction,
                             label_smoothing=smoothing), reduction, go)
    loss, g = lossx.cross_entropy(x, y, w, reduction=reduction, label_smoothing=smoothing,
                                  return_grad=True, grad_output=go)
    assert g.shape == x.shape and g.dtype == x.dtype
    assert np.asarray(loss).shape == tuple(ref.shape)
    scale = np.sqrt(C)  # float32 error grows with the row length
    close(loss, ref, dtype, scale, "loss")
    close(g, gref, dtype, scale, "grad")
    # The forward-only call gives the same value.
    assert np.array_equal(np.asarray(lossx.cross_entropy(x, y, w, reduction=reduction,
                                                         label_smoothing=smoothing)), np.asarray(loss))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(9,), (7, 5), (33, 1003), (3, 4, 5)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_probabilities(rng, dtype, shape, reduction, weighted, smoothing):
    C = shape[0] if len(shape) == 1 else shape[1]
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    t = rng.random(shape)
    t = (t / t.sum(axis=0 if len(shape) == 1 else 1, keepdims=True)).astype(dtype)
    w = rng.uniform(0.2, 2.0, C) if weighted else None
    rows = () if len(shape) == 1 else (shape[0],) + shape[2:]
    go = _grad_output(rng, reduction, rows if reduction == "none" else ())
    xt, tt = t64(x, True), t64(t, True)
    ref, (gx, gt) = _ref(F.cross_entropy, [xt, tt],
                         dict(weight=None if w is None else t64(w), reduction=reduction,
                              label_smoothing=smoothing), reduction, go)
    loss, (g, g_t) = lossx.cross_entropy(x, t, w, reduction=reduction, label_smoothing=smoothing,
                                         return_grad=True, grad_output=go)
    scale = np.sqrt(C)
    close(loss, ref, dtype, scale, "loss")
    close(g, gx, dtype, scale, "grad input")
    close(g_t, gt, dtype, scale, "grad target")


def _ce_extras_ref(x, y, w, zl, cap, reduction, go, ignore_index=-100):
    """lossx's documented extras in torch float64: z = cap*tanh(x/cap);
    loss_i = CE_i(z) + zl * lse_i^2 on non-ignored rows, same normaliser as CE."""
    xt = t64(x, True)
    z = cap * torch.tanh(xt / cap) if cap else xt
    yt = torch.tensor(y)
    wt = None if w is None else t64(w)
    per = F.cross_entropy(z, yt, weight=wt, reduction="none", ignore_index=ignore_index)
    lse = torch.logsumexp(z, dim=1)
    valid = yt != ignore_index
    per = per + zl * torch.where(valid, lse * lse, torch.zeros_like(lse))
    if reduction == "none":
        out = per
    elif reduction == "sum":
        out = per.sum()
    else:
        wy = (wt[yt.clamp(min=0)] if wt is not None else torch.ones_like(lse)) * valid
        out = per.sum() / wy.sum()
    _, (g,) = _ref(lambda a: out, [xt], {}, reduction, go)
    return out, g, lse


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zl,cap", [(1e-3, None), (0.0, 5.0), (1e-2, 3.0)])
@pytest.mark.parametrize("weighted", [False, True])
def test_z_loss_softcap_lse(rng, dtype, reduction, zl, cap, weighted):
    N, C = 19, 257
    x = (rng.standard_normal((N, C)) * 4).astype(dtype)
    y = rng.integers(0, C, N)
    y[::5] = -100
    w = rng.uniform(0.5, 1.5, C) if weighted else None
    go = _grad_output(rng, reduction, (N,) if reduction == "none" else ())
    ref, gref, lse_ref = _ce_extras_ref(x, y, w, zl, cap, reduction, go)
    loss, lse, g = lossx.cross_entropy(x, y, w, reduction=reduction, z_loss=zl, softcap=cap,
                                       return_lse=True, return_grad=True, grad_output=go)
    close(loss, ref, dtype, 16, "loss")
    close(g, gref, dtype, 16, "grad")
    close(lse, lse_ref, dtype, 16, "lse")


@pytest.mark.parametrize("normalizer", [None, "valid", "weights", 7.5])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sample_weight_normalizer(rng, normalizer, reduction):
    N, C = 23, 31
    x = rng.standard_normal((N, C))
    y = rng.integers(0, C, N)
    y[2] = -100
    w = rng.uniform(0.5, 2, C)
    sw = rng.uniform(0, 3, N)
    xt = t64(x, True)
    per = F.cross_entropy(xt, torch.tensor(y), weight=t64(w), reduction="none") * t64(sw)
    valid = y != -100
    if reduction == "none":
        ref = per
    elif reduction == "sum":
        ref = per.sum()
    else:
        denom = {None: w[y[valid]].sum(), "valid": valid.sum(),
                 "weights": (w[y[valid]] * sw[valid]).sum()}.get(normalizer, normalizer)
        ref = per.sum() / float(denom)
    go = _grad_output(rng, reduction, (N,) if reduction == "none" else ())
    _, (gref,) = _ref(lambda a: ref, [xt], {}, reduction, go)
    loss, g = lossx.cross_entropy(x, y, w, sample_weight=sw, normalizer=normalizer, reduction=reduction,
                                  return_grad=True, grad_output=go)
    close(loss, ref, np.float64)
    close(g, gref, np.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_half_and_all_dtypes(rng, dtype):
    """float16/bfloat16 inputs: float32 accumulation and loss, gradient in the input dtype."""
    N, C = 17, 517
    x = (rng.standard_normal((N, C)) * 2).astype(dtype)
    y = rng.integers(0, C, N)
    xt = t64(x, True)  # the reference sees the same rounded inputs
    ref = F.cross_entropy(xt, torch.tensor(y), label_smoothing=0.1)
    ref.backward()
    loss, g = lossx.cross_entropy(x, y, label_smoothing=0.1, return_grad=True)
    assert g.dtype == np.dtype(dtype)
    assert np.asarray(loss).dtype == (np.float64 if dtype == np.float64 else np.float32)
    close(loss, ref, np.float32 if dtype != np.float64 else np.float64, 8)
    close(g, xt.grad, dtype, 1, "grad")


@pytest.mark.parametrize("C", [1, 7, 8, 33, 1003, 40000])
def test_every_simd_target_and_thread_count(cpu_config, rng, C):
    N = 67
    x = (rng.standard_normal((N, C)) * 3).astype(np.float32)
    y = rng.integers(0, C, N)
    y[3] = -100
    w = rng.uniform(0.5, 1.5, C).astype(np.float32)
    xt = t64(x, True)
    ref = F.cross_entropy(xt, torch.tensor(y), weight=t64(w), label_smoothing=0.05)
    ref.backward()
    loss, g = lossx.cross_entropy(x, y, w, label_smoothing=0.05, return_grad=True)
    close(loss, ref, np.float32, np.sqrt(C))
    close(g, xt.grad, np.float32, np.sqrt(C))
    out, gl = lossx.log_softmax(x, return_grad=True)
    xt2 = t64(x, True)
    r2 = F.log_softmax(xt2, dim=1)
    r2.sum().backward()
    close(out, r2, np.float32, np.sqrt(C))
    close(gl, xt2.grad, np.float32, C)  # grad = 1 - C*softmax: cancellation scales with C


def test_bit_identical_across_threads(rng, simd_target):
    x = rng.standard_normal((1000, 1003)).astype(np.float32)
    y = rng.integers(0, 1003, 1000)
    results = []
    for n in (1, 2, 3):
        lossx.set_num_threads(n)
        results.append(lossx.cross_entropy(x, y, return_grad=True, label_smoothing=0.1))
    lossx.set_num_threads(0)
    for loss, g in results[1:]:
        assert loss.tobytes() == results[0][0].tobytes()
        assert g.tobytes() == results[0][1].tobytes()


def test_nll_loss(rng):
    for shape in [(8,), (9, 7), (5, 11, 3)]:
        C = shape[0] if len(shape) == 1 else shape[1]
        x = np.log(rng.dirichlet(np.ones(C), size=int(np.prod(shape)) // C)).reshape(
            (shape[0],) + shape[2:] + (C,) if len(shape) > 1 else shape)
        if len(shape) > 2:
            x = np.moveaxis(x, -1, 1)
        x = np.ascontiguousarray(x)
        y = _labels(rng, shape, C, ignore=True)
        w = rng.uniform(0.5, 2, C)
        for reduction in REDUCTIONS:
            go = _grad_output(rng, reduction, y.shape if reduction == "none" else ())
            xt = t64(x, True)
            ref, (gref,) = _ref(F.nll_loss, [xt, torch.tensor(y)], dict(weight=t64(w), reduction=reduction),
                                reduction, go)
            loss, g = lossx.nll_loss(x, y, w, reduction=reduction, return_grad=True, grad_output=go)
            close(loss, ref, np.float64)
            close(g, gref, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,dim", [((17,), 0), ((5, 33), 1), ((5, 33), 0), ((3, 4, 129), -1), ((3, 4, 7), 1)])
def test_log_softmax_logsumexp(rng, dtype, shape, dim):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape)
    xt = t64(x, True)
    ref = F.log_softmax(xt, dim=dim)
    ref.backward(t64(g))
    out, gi = lossx.log_softmax(x, dim, return_grad=True, grad_output=g.astype(dtype))
    close(out, ref, dtype, 4)
    close(gi, xt.grad, dtype, shape[dim])
    for keepdim in (False, True):
        xt = t64(x, True)
        ref = torch.logsumexp(xt, dim=dim, keepdim=keepdim)
        go = rng.standard_normal(tuple(ref.shape))
        ref.backward(t64(go))
        out, gi = lossx.logsumexp(x, dim, keepdim, return_grad=True, grad_output=go.astype(dtype))
        assert out.shape == tuple(ref.shape)
        close(out, ref, dtype, 4)
        close(gi, xt.grad, dtype, 4)


def test_strided_and_negative_strides(rng):
    base = rng.standard_normal((40, 70)).astype(np.float32)
    for x in (base[::2, ::3], base[::-1], base[:, ::-1], base.T[:33].T[:, :33]):
        y = rng.integers(0, x.shape[1], x.shape[0])
        xt = t64(np.ascontiguousarray(x), True)
        ref = F.cross_entropy(xt, torch.tensor(y))
        ref.backward()
        loss, g = lossx.cross_entropy(x, y, return_grad=True)
        close(loss, ref, np.float32)
        close(g, xt.grad, np.float32)
    y = rng.integers(0, 70, 80)[::2]  # strided labels
    x = base
    assert np.isclose(lossx.cross_entropy(x, y), F.cross_entropy(t64(x), torch.tensor(y)).item(), rtol=1e-5)


@pytest.mark.parametrize("ldt", [np.int32, np.int64, np.uint8, np.int16])
def test_label_dtypes(rng, ldt):
    x = rng.standard_normal((9, 5))
    y = rng.integers(0, 5, 9).astype(ldt)
    assert np.isclose(lossx.cross_entropy(x, y), F.cross_entropy(t64(x), torch.tensor(y.astype(np.int64))).item())


@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.2}, {"softcap": 5.0},
                                  {"z_loss": 1e-3, "weight": "w"}, {"soft": True}])
@pytest.mark.parametrize("C", [77, 4099])
def test_inplace_grad(rng, opts, C):
    """inplace_grad gives the same loss and gradient bit for bit, for every option
    that reads the logits after the exponentials are formed (C = 4099 spans
    several of the sweep's chunks)."""
    opts = dict(opts)
    x = rng.standard_normal((21, C)).astype(np.float32)
    y = rng.integers(0, C, 21)
    if opts.pop("soft", False):
        y = rng.random((21, C)).astype(np.float32)
        y /= y.sum(1, keepdims=True)
    if opts.get("weight") == "w":
        opts["weight"] = rng.random(C).astype(np.float32) + 0.5
    loss, g = lossx.cross_entropy(x, y, return_grad=True, **opts)
    buf = x.copy()
    loss2, g2 = lossx.cross_entropy(buf, y, return_grad=True, inplace_grad=True, **opts)
    if y.ndim == 2:  # soft targets: (grad_logits, grad_target)
        np.testing.assert_array_equal(g2[1], g[1])
        g, g2 = g[0], g2[0]
    assert g2 is buf
    np.testing.assert_array_equal(g2, g)
    assert loss2 == loss
    with pytest.raises(ValueError, match="inplace_grad"):
        lossx.cross_entropy(x[:, ::2], y[:, ::2] if y.ndim == 2 else y, return_grad=True,
                            inplace_grad=True)
    with pytest.raises(ValueError, match="inplace_grad"):
        lossx.cross_entropy(x, y, inplace_grad=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "bfloat16"])
@pytest.mark.parametrize("C", [77, 4099])
def test_inplace_grad_lse_of_ignored_rows(rng, dtype, C):
    """An ignored row's gradient is zeros written over the logits: its lse must
    still be the logits', not log C of the zeros."""
    if dtype == "bfloat16" and BF16 is None:
        pytest.skip("needs ml_dtypes")
    dt = BF16 if dtype == "bfloat16" else dtype
    x = (3 * rng.standard_normal((13, C))).astype(dt)
    y = rng.integers(0, C, 13)
    y[[0, 5, 12]] = -100
    loss, lse, g = lossx.cross_entropy(x, y, return_grad=True, return_lse=True)
    buf = x.copy()
    loss2, lse2, g2 = lossx.cross_entropy(buf, y, return_grad=True, return_lse=True, inplace_grad=True)
    assert g2 is buf
    np.testing.assert_array_equal(lse2, lse)
    np.testing.assert_array_equal(np.asarray(g2, np.float32), np.asarray(g, np.float32))
    assert not np.any(np.asarray(g2[[0, 5, 12]], np.float32))
    assert loss2 == loss


def test_inplace_grad_bumps_torch_version_counter(rng):
    # Autograd must see the write: a graph that saved x refuses its backward.
    x = torch.from_numpy(rng.standard_normal((5, 7)).astype(np.float32))
    y = rng.integers(0, 7, 5)
    leaf = torch.zeros(1, requires_grad=True)
    z = (x * leaf).exp().sum()  # exp saves its output, mul saves x
    v0 = x._version
    lossx.cross_entropy(x, y, return_grad=True, inplace_grad=True)
    assert x._version > v0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.backward()


@pytest.mark.parametrize("log_probs", [False, True])
def test_inplace_grad_with_a_bad_label_leaves_the_logits(rng, log_probs):
    x = rng.standard_normal((9, 33)).astype(np.float32)
    y = rng.integers(0, 33, 9)
    y[4] = 33
    buf = x.copy()
    with pytest.raises(IndexError, match="position 4"):
        lossx.cross_entropy(buf, y, return_grad=True, return_lse=not log_probs, inplace_grad=True,
                            _log_probs=log_probs)
    np.testing.assert_array_equal(buf, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "bfloat16"])
def test_inplace_nll_reads_the_log_probs_before_zeroing(rng, dtype):
    # The kernel API allows the gradient over the input for nll too; each row
    # used to be zeroed before its x[y] was read, giving a loss of -0.
    dt = BF16 if dtype == "bfloat16" else np.dtype(dtype)
    if dt is None:
        pytest.skip("no bfloat16 dtype")
    x = np.log(rng.dirichlet(np.ones(37), size=21)).astype(dt)
    y = rng.integers(0, 37, 21)
    y[3] = -100
    want = lossx.cross_entropy(x, y, reduction="none", return_grad=True, _log_probs=True)
    buf = x.copy()
    got = lossx.cross_entropy(buf, y, reduction="none", return_grad=True, inplace_grad=True, _log_probs=True)
    assert got[1] is buf
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(buf.astype(np.float32), want[1].astype(np.float32))
    assert np.all(got[0][y >= 0] > 0)


@pytest.mark.parametrize("C", [1, 2, 7, 33, 64, 65])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1, "weight": "w"}, {"z_loss": 1e-2}])
def test_short_rows_blocks(rng, C, dtype, opts):
    """Rows of up to 64 classes run a vector's worth at a time, one row per lane,
    with the remainder on the row path: values, gradients and log-sum-exp against
    torch for block-multiple and ragged row counts, ignored rows and a NaN row
    (its block falls back to the row path's exact handling), and the same loss
    with and without the gradient."""
    opts = dict(opts)
    if opts.get("weight") == "w":
        opts["weight"] = rng.uniform(0.5, 2.0, C).astype(dtype)
    zl = opts.pop("z_loss", 0.0)
    N = 8 * 5 + 3
    x = (rng.standard_normal((N, C)) * 3).astype(dtype)
    y = rng.integers(0, C, N)
    y[[3, 17]] = -100
    x[9, 0] = np.nan
    xt = t64(x, True)
    tw = {k: (t64(v) if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
    per = F.cross_entropy(xt, torch.tensor(y), reduction="none", **tw)
    lse_ref = torch.logsumexp(xt, 1)
    per = per + zl * lse_ref ** 2 * (torch.tensor(y) != -100)
    per.sum().backward()
    loss, lse, g = lossx.cross_entropy(x, y, reduction="none", z_loss=zl, return_grad=True, return_lse=True,
                                       grad_output=np.ones(N, dtype), **opts)
    ok = np.arange(N) != 9
    close(loss[ok], per.detach().numpy()[ok], dtype, np.sqrt(C), "loss")
    assert np.isnan(loss[9]) and np.isnan(lse[9]) and np.isnan(g[9]).all()
    close(g[ok], xt.grad.numpy()[ok], dtype, np.sqrt(C), "grad")
    close(lse[ok], lse_ref.detach().numpy()[ok], dtype, np.sqrt(C), "lse")
    assert (g[[3, 17]] == 0).all()
    np.testing.assert_array_equal(lossx.cross_entropy(x, y, reduction="none", z_loss=zl, **opts), loss)


@pytest.mark.parametrize("C", [1, 2, 7, 10, 33, 48, 49])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_short_rows_blocks(rng, C, dtype):
    """log_softmax and logsumexp over rows of up to 48 columns run a vector's
    worth of rows at a time (the remainder, and a block holding a NaN or inf
    row, on the row path): values and gradients against torch, with and without
    grad_output, and the same outputs forward-only, with the gradient and for 1
    and 2 threads."""
    N = 8 * 5 + 3
    x = (rng.standard_normal((N, C)) * 3).astype(dtype)
    x[9, 0] = np.nan
    x[20, -1] = np.inf
    x[26, :] = -np.inf
    ok = np.ones(N, bool)
    ok[[9, 20, 26]] = False
    g = rng.standard_normal((N, C)).astype(dtype)
    go = rng.standard_normal(N).astype(dtype)
    xt = t64(x, True)
    ref = F.log_softmax(xt, 1)
    ref.backward(t64(g))
    out, gi = lossx.log_softmax(x, 1, return_grad=True, grad_output=g)
    close(out[ok], ref.detach().numpy()[ok], dtype, 4, "log_softmax")
    close(gi[ok], xt.grad.numpy()[ok], dtype, C, "log_softmax grad")
    assert np.isnan(out[9]).all() and np.isnan(gi[9]).all()
    xt = t64(x, True)
    F.log_softmax(xt, 1).backward(torch.ones(N, C, dtype=torch.float64))
    _, gi1 = lossx.log_softmax(x, 1, return_grad=True)
    close(gi1[ok], xt.grad.numpy()[ok], dtype, C, "log_softmax grad of the sum")
    xt = t64(x, True)
    lref = torch.logsumexp(xt, 1)
    lref.backward(t64(go))
    lse, gl = lossx.logsumexp(x, 1, return_grad=True, grad_output=go)
    close(lse[ok], lref.detach().numpy()[ok], dtype, 4, "logsumexp")
    close(gl[ok], xt.grad.numpy()[ok], dtype, 4, "logsumexp grad")
    assert np.isnan(lse[9]) and lse[20] == np.inf and lse[26] == -np.inf
    np.testing.assert_array_equal(lossx.log_softmax(x, 1), out)
    np.testing.assert_array_equal(lossx.logsumexp(x, 1), lse)
    before = lossx.get_num_threads()
    try:
        big = np.repeat(x, 200, axis=0)  # several parallel chunks
        res = []
        for th in (1, 2):
            lossx.set_num_threads(th)
            res.append((lossx.log_softmax(big, 1, return_grad=True), lossx.logsumexp(big, 1)))
        np.testing.assert_array_equal(res[0][0][0], res[1][0][0])
        np.testing.assert_array_equal(res[0][0][1], res[1][0][1])
        np.testing.assert_array_equal(res[0][1], res[1][1])
    finally:
        lossx.set_num_threads(before)


@pytest.mark.parametrize("where", ["first", "last", "rising", "above", "far"])
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1, "weight": "w"}, {"soft": True}])
def test_long_rows_running_max(rng, where, opts):
    """Rows longer than the sweep's chunk (2048) are read once, with a running
    max: the sum is rescaled whenever a later chunk holds a larger logit, and the
    stored exponentials of earlier chunks are rescaled in the gradient pass.
    The max in the first chunk, in the last, or growing chunk by chunk. Chunks
    after the first are summed against the first chunk's max: a later logit 10
    above it is summed as it is ("above"), one 100 above it would overflow the
    exp and makes the chunk be swept again after a max pass ("far")."""
    opts = dict(opts)
    N, C = 7, 9001
    x = rng.standard_normal((N, C)).astype(np.float32) * 2
    if where == "first":
        x[:, 5] = 30
    elif where == "last":
        x[:, C - 3] = 30
    elif where == "rising":
        x += np.linspace(0, 40, C, dtype=np.float32)
    elif where == "above":
        x[:, 4100] = x[:, :2048].max(1) + 10
    else:
        x[:, 7000] = x[:, :2048].max(1) + 100
    y = rng.integers(0, C, N)
    y[0] = C - 3
    yt = torch.tensor(y)
    soft = opts.pop("soft", False)
    if soft:
        y = rng.random((N, C)).astype(np.float32)
        y /= y.sum(1, keepdims=True)
        yt = t64(y).requires_grad_()
    if opts.get("weight") == "w":
        opts["weight"] = rng.random(C).astype(np.float32) + 0.5
    tw = {k: (t64(v) if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
    xt = t64(x).requires_grad_()
    ref = F.cross_entropy(xt, yt, **tw)
    ref.backward()
    loss, g = lossx.cross_entropy(x, y, return_grad=True, **opts)
    close(loss, ref.item(), np.float32)
    if soft:
        close(g[1], yt.grad.numpy(), np.float32, what="grad_target")
        g = g[0]
    close(g, xt.grad.numpy(), np.float32)
    lse = lossx.logsumexp(x)
    close(lse, torch.logsumexp(t64(x), 1).numpy(), np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opts", [{}, {"weight": "w", "z_loss": 1e-3}, {"label_smoothing": 0.1},
                                  {"softcap": 20.0}, {"soft": True}])
def test_streamed_gradient_rows(threads, dtype, opts):
    """Large gradients with long rows (at least 2^22 elements, rows of at least
    8192) are written by the next row's sweep with non-temporal stores, the plain
    hard-label gradient scaled on the way out. Each row's result must be the one
    a small call (which builds the gradient in place) gives, bit for bit, and
    torch's: per-row grad_output with zeros, ignored rows, a NaN row and a row
    opening with a chunk of -inf (both take the exact path, which writes the
    previous row out at once), at the end of a call's rows too."""
    rng = np.random.default_rng(7)
    opts = dict(opts)
    # Smoothing and soft targets give -inf logits a gradient (torch agrees).
    zero_at_minf = "label_smoothing" not in opts and "soft" not in opts
    N, C = 517, 8192
    x = (rng.standard_normal((N, C)) * 2).astype(dtype)
    soft = opts.pop("soft", False)
    if soft:
        y = rng.random((N, C)).astype(dtype)
        y /= y.sum(1, keepdims=True)
        yt = t64(y)
    else:
        y = rng.integers(0, C, N)
        y[[5, 6, 200]] = -100
        y[40] = 2048 + 3
        yt = torch.tensor(y)
    x[[9, 516], 17] = np.nan
    x[40, :2048] = -np.inf
    x[40, 2048 + 3] = 1.0
    if opts.get("weight") == "w":
        opts["weight"] = rng.uniform(0.5, 2.0, C).astype(dtype)
    go = rng.standard_normal(N).astype(dtype)
    go[[3, 300]] = 0
    loss, g = lossx.cross_entropy(x, y, reduction="none", grad_output=go, return_grad=True, **opts)
    if soft:
        g = g[0]
    # The same rows in calls too small to stream.
    for b in range(0, N, 128):
        sl = slice(b, b + 128)
        l2, g2 = lossx.cross_entropy(x[sl], y[sl], reduction="none", grad_output=go[sl],
                                     return_grad=True, **opts)
        if soft:
            g2 = g2[0]
        np.testing.assert_array_equal(l2, loss[sl])
        np.testing.assert_array_equal(g2, g[sl])
    zl = opts.pop("z_loss", 0.0)
    cap = opts.pop("softcap", None)
    xt = t64(x, True)
    xc = cap * torch.tanh(xt / cap) if cap else xt
    tw = {k: (t64(v) if isinstance(v, np.ndarray) else v) for k, v in opts.items()}
    per = F.cross_entropy(xc, yt, reduction="none", **tw)
    if zl:
        per = per + zl * torch.logsumexp(xc, 1) ** 2 * (yt != -100)
    per.backward(t64(go))
    ok = np.ones(N, bool)
    ok[[9, 516]] = False
    close(loss[ok], per.detach().numpy()[ok], dtype, np.sqrt(C))
    close(g[ok], xt.grad.numpy()[ok], dtype, np.sqrt(C))
    assert np.isnan(g[[9, 516]]).all()
    assert (g[[3, 300]] == 0).all()
    if not soft:
        assert (g[[5, 6, 200]] == 0).all()
    if zero_at_minf:
        assert (g[40, :2048] == 0).all()


def test_known_identity_sum_gradient(rng):
    """CATALOG: d/dlogits of cross_entropy (sum) = softmax(logits) - onehot(labels)."""
    x = rng.standard_normal((6, 10))
    y = rng.integers(0, 10, 6)
    _, g = lossx.cross_entropy(x, y, reduction="sum", return_grad=True)
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(g, p - np.eye(10)[y], atol=1e-12)


def test_long_rows_and_extreme_values(rng):
    x = (rng.standard_normal((3, 200003)) * 30).astype(np.float32)
    x[0, 5] = 1e4  # dominates its row: softmax saturates, no overflow
    x[1, :100] = -1e30
    y = np.array([5, 7, 200002])
    xt = t64(x, True)
    ref = F.cross_entropy(xt, torch.tensor(y), reduction="sum")
    ref.backward()
    loss, g = lossx.cross_entropy(x, y, reduction="sum", return_grad=True)
    close(loss, ref, np.float32, 50)
    close(g, xt.grad, np.float32, 50)


def test_nonfinite_logits():
    x = np.array([[0.0, 1.0, -np.inf], [np.nan, 1.0, 2.0], [np.inf, 0.0, 1.0], [1.0, np.nan, 0.0]],
                 dtype=np.float32)
    y = np.array([1, 2, 1, -100])
    loss, g = lossx.cross_entropy(x, y, reduction="none", return_grad=True)
    ref = F.cross_entropy(torch.tensor(x, dtype=torch.float64), torch.tensor(y), reduction="none").numpy()
    assert np.isfinite(loss[0]) and np.isclose(loss[0], ref[0], rtol=1e-6)
    assert np.isnan(loss[1]) and np.isnan(ref[1])
    assert np.isnan(loss[2]) and np.isnan(ref[2])
    assert loss[3] == 0 and ref[3] == 0
    assert g[0, 2] == 0 and np.all(np.isfinite(g[0]))
    assert np.all(g[3] == 0), "ignored rows never get NaN gradients"


NAN_BITS = [0x7FC00000, 0x7FC001FF, 0xFFC00003, 0x7F800001, 0xFFFFFFFF]


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # numpy on signalling NaNs
@pytest.mark.parametrize("C", [10, 100, 5000])
def test_nan_payloads_and_nonfinite_rows(simd_target, C):
    """Every NaN bit pattern (quiet, signalling, negative, with payload bits in the
    low mantissa, which the sweep's exp would shift into the exponent) makes its
    row's loss, lse and gradient NaN, wherever it sits: first or last chunk of a
    long row, in a short-row block, in the SIMD tail. +inf rows are NaN, rows of
    -inf are NaN (torch: -inf - -inf), and -inf next to finite logits is exact;
    logsumexp gives torch's +inf and -inf for those two rows."""
    rng = np.random.default_rng(C)
    N = 8 * len(NAN_BITS) + 5
    x = rng.standard_normal((N, C)).astype(np.float32)
    bad = {}
    for k, b in enumerate(NAN_BITS):
        for r, col in enumerate([0, C - 1, C // 2, min(2100, C - 1)]):
            i = 8 * k + r
            x.view(np.uint32)[i, col] = b
            bad[i] = "nan"
    i0 = 8 * len(NAN_BITS)
    x[i0, C // 3] = np.inf
    x[i0 + 1] = -np.inf
    x[i0 + 2, : C // 2] = -np.inf  # a leading chunk of -inf when C > 4096
    x[i0 + 3, ::3] = -np.inf
    bad[i0] = bad[i0 + 1] = "nan"
    y = (np.arange(N) * 7 + 1) % C
    y[i0 + 2] = C - 1
    y[i0 + 3] = 1
    xt = t64(x)
    ref = F.cross_entropy(xt, torch.tensor(y), reduction="none").numpy()
    loss, lse, g = lossx.cross_entropy(x, y, reduction="none", return_grad=True, return_lse=True,
                                       grad_output=np.ones(N, np.float32))
    for i in range(N):
        if i in bad:
            assert np.isnan(ref[i]), i
            assert np.isnan(loss[i]) and np.isnan(g[i]).all(), (i, loss[i])
            assert np.isnan(lse[i]) or (i == i0 and lse[i] == np.inf), (i, lse[i])
    ok = np.array([i not in bad for i in range(N)])
    close(loss[ok], ref[ok], np.float32, np.sqrt(C))
    assert (g[i0 + 2, : C // 2] == 0).all() and (g[i0 + 3, 3::3] == 0).all()
    np.testing.assert_array_equal(lossx.cross_entropy(x, y, reduction="none"), loss)
    lse2 = lossx.logsumexp(x)
    # torch's logsumexp: +inf for the row holding +inf, -inf for the row of -inf.
    assert all(np.isnan(lse2[i]) for i in bad if i not in (i0, i0 + 1))
    assert lse2[i0] == np.inf and lse2[i0 + 1] == -np.inf
    close(lse2[ok], torch.logsumexp(xt, 1).numpy()[ok], np.float32, np.sqrt(C))


def test_empty_and_all_ignored():
    x = np.zeros((0, 5), np.float32)
    y = np.zeros((0,), np.int64)
    assert np.isnan(lossx.cross_entropy(x, y))
    assert lossx.cross_entropy(x, y, reduction="sum") == 0
    assert lossx.cross_entropy(x, y, reduction="none").shape == (0,)
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    x[1] = np.nan
    y = np.full(4, -100)
    loss, g = lossx.cross_entropy(x, y, return_grad=True)
    assert np.isnan(loss) and np.isnan(F.cross_entropy(torch.tensor(x), torch.tensor(y)).item())
    assert np.all(g == 0)
    assert lossx.cross_entropy(x, y, reduction="sum") == 0


class TestBadInput:
    x = np.random.default_rng(2).standard_normal((4, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 3])

    def test_wrong_dtype(self):
        with pytest.raises(TypeError, match="float32"):
            lossx.cross_entropy(self.x.astype(np.int32), self.y)
        with pytest.raises(TypeError, match="target"):
            lossx.cross_entropy(self.x, self.y.astype(bool))
        with pytest.raises(TypeError, match="integer"):
            lossx.nll_loss(self.x, self.x)

    def test_shape_mismatch_names_both(self):
        with pytest.raises(ValueError, match=r"\(3,\).*\(4, 5\)"):
            lossx.cross_entropy(self.x, self.y[:3])
        with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
            lossx.cross_entropy(self.x, self.x[:, :4])
        with pytest.raises(ValueError, match="weight"):
            lossx.cross_entropy(self.x, self.y, np.ones(4))
        with pytest.raises(ValueError, match="grad_output"):
            lossx.cross_entropy(self.x, self.y, reduction="none", return_grad=True, grad_output=np.ones(3))

    @pytest.mark.parametrize("bad,pos", [(5, 2), (-1, 1), (100, 3)])
    def test_label_out_of_range(self, bad, pos):
        y = self.y.copy()
        y[pos] = bad
        with pytest.raises(IndexError, match=rf"label {bad} at position {pos}"):
            lossx.cross_entropy(self.x, y)
        with pytest.raises(IndexError, match=rf"position {pos}"):
            lossx.nll_loss(self.x, y, return_grad=True)

    def test_first_bad_label_reported_whatever_threads(self):
        x = np.zeros((5000, 3), np.float32) + 0.5
        y = np.zeros(5000, np.int64)
        y[4000] = 9
        y[1234] = 7
        for n in (1, 2):
            lossx.set_num_threads(n)
            with pytest.raises(IndexError, match="position 1234"):
                lossx.cross_entropy(x, y)
        lossx.set_num_threads(0)

    @pytest.mark.parametrize("kw,msg", [
        (dict(reduction="avg"), "reduction"),
        (dict(label_smoothing=1.5), "label_smoothing"),
        (dict(label_smoothing=-0.1), "label_smoothing"),
        (dict(softcap=0.0), "softcap"),
        (dict(softcap=-1.0), "softcap"),
        (dict(z_loss=-1.0), "z_loss"),
        (dict(normalizer="bogus"), "normalizer"),
        (dict(normalizer=0), "normalizer"),
    ])
    def test_invalid_options(self, kw, msg):
        with pytest.raises(ValueError, match=msg):
            lossx.cross_entropy(self.x, self.y, **kw)

    def test_ignore_index_with_probabilities(self):
        t = np.full((4, 5), 0.2, np.float32)
        with pytest.raises(ValueError, match="ignore_index"):
            lossx.cross_entropy(self.x, t, ignore_index=0)

    def test_scalar_and_empty_class_axis(self):
        with pytest.raises(ValueError):
            lossx.cross_entropy(np.float32(1.0), np.int64(0))
        with pytest.raises(ValueError, match="no classes"):
            lossx.cross_entropy(np.zeros((3, 0), np.float32), np.zeros(3, np.int64))

    def test_gpu_array_without_cuda(self):
        class FakeGPU:
            __cuda_array_interface__ = {"shape": (4, 5), "typestr": "<f4", "data": (0, False), "version": 3}

        if lossx._core.cuda_compiled() and lossx._core.cuda_available():
            pytest.skip("CUDA is usable here")
        with pytest.raises(RuntimeError, match="CUDA"):
            lossx.cross_entropy(FakeGPU(), self.y)


def test_info_and_threads_env():
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, LOSSX_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "lossx", "info"], capture_output=True, text=True, env=env,
                         check=True).stdout
    info = json.loads(out)
    assert info["openmp_threads"] == 1
    assert info["simd_target"] in info["simd_targets_compiled"]
    assert set(info["simd_targets_supported"]) <= set(info["simd_targets_compiled"])
    assert isinstance(info["cuda_compiled"], bool) and isinstance(info["cuda_available"], bool)


@pytest.mark.skipif(BF16 is None, reason="ml_dtypes not installed")
def test_exp_accuracy():
    """The float32 fast exp stays within 2 ulp over its whole range."""
    x = np.concatenate([np.linspace(-87.3, 88.7, 2_000_003, dtype=np.float32),
                        np.random.default_rng(3).uniform(-20, 20, 100_001).astype(np.float32)])
    assert lossx._core._exp_max_ulp(x) <= 2.0


def test_exp_softmax_accuracy():
    """The softmax sweep's exp (arguments z - max <= 0): within 2.1 ulp of float64
    exp on [-2, 0], where the terms that make a softmax live; below, the one-FMA
    argument reduction adds |x| * 1.4e-8 relative (documented in vecmath-inl.h),
    about 0.23 ulp per unit of |x|. Exactly 0 below -87.3, -inf included."""
    rng = np.random.default_rng(4)
    near = np.concatenate([np.linspace(-2, 0, 1_000_003, dtype=np.float32),
                           -rng.uniform(0, 2, 100_001).astype(np.float32)])
    assert lossx._core._exp_max_ulp(near, softmax=True) <= 2.1
    for k in range(2, 88):
        x = np.linspace(-min(k + 1, 87.3), -k, 20_001, dtype=np.float32)
        assert lossx._core._exp_max_ulp(x, softmax=True) <= 2.1 + 0.23 * (k + 1), k
    # Above 0 (a long row's later chunks are summed against the first chunk's
    # max, and accepted while their terms stay below 2^20, x < 13.9): same bound.
    for k in range(0, 14):
        x = np.linspace(k, k + 1, 20_001, dtype=np.float32)
        assert lossx._core._exp_max_ulp(x, softmax=True) <= 2.1 + 0.23 * (k + 1), k
    # Below the range: exact zeros in cross_entropy's gradient (its sweep's exp).
    z = np.zeros((1, 20), np.float32)
    z[0, 1] = 100.0  # every other class is 100 below the max: exp underflows
    z[0, 2] = -np.inf
    _, g = lossx.cross_entropy(z, np.array([1]), return_grad=True)
    assert g[0, 0] == 0 and g[0, 2] == 0 and np.isfinite(g).all()


def test_concurrent_python_threads(rng):
    """Kernels release the GIL and keep no shared mutable state: many Python
    threads at once give the same results as one."""
    from concurrent.futures import ThreadPoolExecutor

    cases = []
    for _ in range(8):
        x = rng.standard_normal((64, 1003)).astype(np.float32)
        y = rng.integers(0, 1003, 64)
        cases.append((x, y, lossx.cross_entropy(x, y, return_grad=True)))

    def run(case):
        x, y, (loss, g) = case
        for _ in range(20):
            l2, g2 = lossx.cross_entropy(x, y, return_grad=True)
            if l2.tobytes() != loss.tobytes() or g2.tobytes() != g.tobytes():
                return False
        return True

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(run, cases))


def test_buffer_cache_reuses_only_freed_blocks(rng):
    """Large outputs come from a bounded cache of freed blocks; a live array's
    memory is never handed out again, and a limit of 0 disables caching."""
    x = rng.standard_normal((64, 20000)).astype(np.float32)  # 5 MB gradient: cached size class
    y = rng.integers(0, 20000, 64)
    _, g1 = lossx.cross_entropy(x, y, return_grad=True)
    _, g2 = lossx.cross_entropy(x, y, return_grad=True)
    assert g1.ctypes.data != g2.ctypes.data  # both alive: distinct memory
    ref = g1.copy()
    addr = g2.ctypes.data
    del g2
    _, g3 = lossx.cross_entropy(x, y, return_grad=True)
    assert g3.ctypes.data == addr  # the freed block came back
    np.testing.assert_array_equal(g3, ref)
    np.testing.assert_array_equal(g1, ref)  # untouched by the reuse
    lossx.set_buffer_cache(0)
    try:
        del g3
        assert lossx._core.buffer_cache_held() == 0
    finally:
        lossx.set_buffer_cache(1 << 30)


# --- The plain call (2-D NumPy logits, int64 labels, default options) runs in
# C++ in one step (_core.ce_plain); it must be the general path, bit for bit.

def _spy_plain(monkeypatch):
    """Record whether each call took the plain path."""
    real, taken = lossx._core.ce_plain, []

    def spy(*a):
        try:
            r = real(*a)
        except Exception:
            taken.append("raised")
            raise
        taken.append(r is not None)
        return r

    monkeypatch.setattr(lossx._core, "ce_plain", spy)
    return taken


def _general_only(monkeypatch):
    monkeypatch.setattr(lossx._core, "ce_plain", lambda *a: None)


def _same(a, b):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for u, v in zip(a, b):
            _same(u, v)
        return
    assert type(a) is type(b) and a.dtype == b.dtype and np.shape(a) == np.shape(b)
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [(1, 1), (7, 5), (300, 1003), (70001, 3)])  # the last: several chunks
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("grad", [False, True])
def test_plain_call_is_the_general_path(rng, monkeypatch, threads, fn, dtype, size, reduction, grad):
    N, C = size
    x = rng.standard_normal(size).astype(dtype)
    y = rng.integers(0, C, N)
    y[1::4] = -100
    f = getattr(lossx, fn)
    taken = _spy_plain(monkeypatch)
    plain = f(x, y, reduction=reduction, return_grad=grad)
    other = f(x, np.where(y < 0, 0, y), ignore_index=2, reduction=reduction, return_grad=grad)
    assert taken == [True, True]
    _general_only(monkeypatch)
    _same(plain, f(x, y, reduction=reduction, return_grad=grad))
    _same(other, f(x, np.where(y < 0, 0, y), ignore_index=2, reduction=reduction, return_grad=grad))


def test_plain_call_all_ignored_and_bad_labels(monkeypatch):
    x = np.ones((3, 4), np.float32)
    taken = _spy_plain(monkeypatch)
    loss = lossx.cross_entropy(x, np.full(3, -100))
    assert type(loss) is np.float32 and np.isnan(loss)  # torch's empty mean
    with pytest.raises(IndexError, match="label 4 at position 1 is out of range"):
        lossx.nll_loss(x, np.array([0, 4, 9]))
    with pytest.raises(IndexError, match="label -3 at position 2 is out of range"):
        lossx.cross_entropy(x, np.array([0, 1, -3]), return_grad=True)
    assert taken == [True, "raised", "raised"]  # the plain path's own label check


@pytest.mark.parametrize("case", ["int32", "uint64", "fortran", "strided", "1d", "3d", "float16", "np_int_ignore",
                                  "truthy_grad", "empty", "subclass", "swapped_labels", "swapped_logits"])
def test_plain_call_leaves_other_inputs_to_the_general_path(rng, monkeypatch, case):
    x = rng.standard_normal((6, 5)).astype(np.float32)
    y = rng.integers(0, 5, 6)
    kw = {}
    if case == "int32":
        y = y.astype(np.int32)
    elif case == "uint64":
        y = y.astype(np.uint64)
    elif case == "fortran":
        x = np.asfortranarray(x)
    elif case == "strided":
        x = rng.standard_normal((6, 10)).astype(np.float32)[:, ::2]
    elif case == "1d":
        x, y = x[0], y[0]
    elif case == "3d":
        x = rng.standard_normal((6, 5, 3)).astype(np.float32)
        y = rng.integers(0, 5, (6, 3))
    elif case == "float16":
        x = x.astype(np.float16)
    elif case == "np_int_ignore":
        kw["ignore_index"] = np.int64(2)
    elif case == "truthy_grad":
        kw["return_grad"] = 1
    elif case == "empty":
        x, y = x[:0], y[:0]
    elif case == "subclass":
        x = x.view(np.matrix)  # not an exact ndarray: the general path decides
    elif case == "swapped_labels":
        y = y.astype(">i8")  # int64's type number, bytes the other way round
    elif case == "swapped_logits":
        x = x.astype(">f4")
        taken = _spy_plain(monkeypatch)
        with pytest.raises(TypeError, match="got >f4"):  # not read as native float32
            lossx.cross_entropy(x, y)
        assert taken == [False]
        return
    taken = _spy_plain(monkeypatch)
    got = lossx.cross_entropy(x, y, **kw)
    # A truthy return_grad is return_grad=True, and still a plain call.
    assert taken == ([True] if case == "truthy_grad" else [False] if taken else []), taken
    _general_only(monkeypatch)
    _same(got, lossx.cross_entropy(x, y, **kw))


@pytest.mark.parametrize("reduction,match", [("MEAN", "reduction must be one of"), (None, "reduction must be one of")])
def test_plain_call_errors_are_the_general_paths(monkeypatch, reduction, match):
    x = np.zeros((2, 3), np.float32)
    taken = _spy_plain(monkeypatch)
    with pytest.raises(ValueError, match=match):
        lossx.cross_entropy(x, np.array([0, 1]), reduction=reduction)
    with pytest.raises(ValueError, match="labels must have the input's shape"):
        lossx.nll_loss(x, np.array([0, 1, 2]))
    assert taken == [False, False, False]  # nll_loss checks, then cross_entropy does
