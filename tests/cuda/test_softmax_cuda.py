"""GPU row-softmax family against the CPU path on the same inputs.

Skipped (not failed) where lossx has no CUDA, no GPU is usable, or neither
CuPy nor a CUDA build of PyTorch is installed. Run on a GPU machine with
    python -m pytest -q tests/cuda
"""
import numpy as np
import pytest

import lossx
from lossx import _core

from _util import BF16

if not (_core.cuda_compiled() and _core.cuda_available()):
    pytest.skip("lossx CUDA backend not compiled or no usable GPU", allow_module_level=True)

from _gpu_util import LIBS, cp, lib, same_ns, to_dev, to_np, torch  # noqa: E402,F401

if not LIBS:
    pytest.skip("neither CuPy nor CUDA PyTorch is usable", allow_module_level=True)

F32, F64, F16 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)
DTYPES = [F32, F64, F16] + ([BF16] if BF16 is not None else [])
# GPU vs CPU, both computing in float32 (float64 for float64): the differences
# are exp/log implementations (CUDA fast-math __expf/__logf, about 2 ulp) and
# summation order, a few ulp of the row length. Half outputs may round to the
# neighbouring half value: one ulp of the storage type (2^-10 f16, 2^-7 bf16).
RTOL = {F32: 1e-5, F64: 1e-10, F16: 2e-3}
if BF16 is not None:
    RTOL[BF16] = 1.6e-2


def check(lib, gpu, cpu, dtype, what, scale=None):
    same_ns(lib, gpu)
    g = np.asarray(to_np(gpu), dtype=np.float64)
    c = np.asarray(cpu, dtype=np.float64)
    assert g.shape == c.shape, (what, g.shape, c.shape)
    finite = np.isfinite(c)
    np.testing.assert_array_equal(np.isfinite(g), finite, err_msg=what + ": non-finite pattern")
    if scale is None:
        scale = float(np.max(np.abs(c[finite]))) if finite.any() else 1.0
    rt = RTOL[np.dtype(dtype)]
    # atol relative to the array's magnitude: small gradient entries carry the
    # absolute error of their row's softmax, not a relative one.
    np.testing.assert_allclose(g[finite], c[finite], rtol=rt, atol=rt * scale + 1e-30, err_msg=what)


# cross_entropy with hard labels has two kernels: ce_rows (the default) and
# ce_reg (the row in registers, clusters on sm_90; LOSSX_CUDA_CE_KERNEL=reg
# until it has passed here). The CE tests run under both.
@pytest.fixture(params=["rows", "reg"])
def ce_kernel(request, monkeypatch):
    if request.param == "reg":
        monkeypatch.setenv("LOSSX_CUDA_CE_KERNEL", "reg")
    else:
        monkeypatch.delenv("LOSSX_CUDA_CE_KERNEL", raising=False)
    return request.param


def rand_logits(rng, shape, dtype, spread=3.0):
    return (rng.standard_normal(shape) * spread).astype(dtype)


CE_CASES = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(weight=True),
    dict(weight=True, reduction="none"),
    dict(label_smoothing=0.1),
    dict(label_smoothing=0.2, weight=True),
    dict(ignore=True),
    dict(ignore=True, weight=True, label_smoothing=0.1),
    dict(z_loss=1e-3),
    dict(softcap=5.0),
    dict(softcap=3.0, label_smoothing=0.1, z_loss=1e-4, weight=True),
    dict(sample_weight=True),
    dict(sample_weight=True, normalizer="valid", ignore=True),
    dict(sample_weight=True, normalizer="weights", weight=True, ignore=True),
    dict(normalizer=7.5),
    dict(grad_output=0.75),
    dict(grad_output="array", reduction="none"),
    dict(return_lse=True, ignore=True),
]


def build_ce(rng, N, C, dtype, case):
    x = rand_logits(rng, (N, C), dtype)
    y = rng.integers(0, C, size=N).astype(np.int64)
    kw = {}
    if case.get("ignore"):
        y[rng.random(N) < 0.3] = -100
        y[0] = -100
    for k in ("reduction", "label_smoothing", "z_loss", "softcap", "normalizer", "return_lse"):
        if k in case:
            kw[k] = case[k]
    acc = np.float64 if np.dtype(dtype) == F64 else np.float32
    w = rng.uniform(0.2, 2.0, C).astype(acc) if case.get("weight") else None
    sw = rng.uniform(0.1, 1.5, N).astype(acc) if case.get("sample_weight") else None
    go = case.get("grad_output")
    if go == "array":
        go = rng.uniform(-1, 1, N).astype(acc)
    return x, y, w, sw, go, kw


def unpack(res, return_lse):
    if return_lse:
        loss, lse, g = res
    else:
        (loss, g), lse = res, None
    return loss, lse, g


def check_ce(lib, gpu, cpu, dtype, return_lse, what):
    """cross_entropy(..., return_grad=True) results: loss, lse, gradient."""
    gl, glse, gg = unpack(gpu, return_lse)
    cl, clse, cg = unpack(cpu, return_lse)
    check(lib, gl, cl, dtype, f"loss {what}")
    if return_lse:
        check(lib, glse, clse, dtype, f"lse {what}")
    check(lib, gg, cg, dtype, f"grad {what}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_cross_entropy_matches_cpu(ce_kernel, lib, dtype, case, rng):
    for N, C in ((37, 7), (19, 1003), (5, 4099)):
        x, y, w, sw, go, kw = build_ce(rng, N, C, dtype, case)
        cpu = lossx.cross_entropy(x, y, w, sample_weight=sw, grad_output=go, return_grad=True, **kw)
        d = lambda a: None if a is None else to_dev(lib, a)  # noqa: E731
        gpu = lossx.cross_entropy(d(x), d(y), d(w), sample_weight=d(sw),
                                  grad_output=d(go) if isinstance(go, np.ndarray) else go,
                                  return_grad=True, **kw)
        check_ce(lib, gpu, cpu, dtype, kw.get("return_lse", False), f"{N}x{C}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_only_and_kdim(ce_kernel, lib, dtype, rng):
    x = rand_logits(rng, (3, 11, 4, 5), dtype)
    y = rng.integers(0, 11, size=(3, 4, 5)).astype(np.int64)
    y[1, 2, 3] = -100
    for red in ("mean", "none", "sum"):
        c = lossx.cross_entropy(x, y, reduction=red)
        g = lossx.cross_entropy(to_dev(lib, x), to_dev(lib, y), reduction=red)
        check(lib, g, c, dtype, f"kdim fwd {red}")
    c, cg = lossx.cross_entropy(x, y, label_smoothing=0.05, return_grad=True)
    g, gg = lossx.cross_entropy(to_dev(lib, x), to_dev(lib, y), label_smoothing=0.05, return_grad=True)
    check(lib, g, c, dtype, "kdim loss")
    assert tuple(gg.shape) == x.shape
    check(lib, gg, cg, dtype, "kdim grad")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("opts", [dict(), dict(label_smoothing=0.1, weight=True), dict(softcap=4.0, z_loss=1e-3),
                                  dict(reduction="none"), dict(reduction="sum", sample_weight=True)],
                         ids=lambda o: ",".join(o) or "plain")
def test_soft_targets(lib, dtype, opts, rng):
    for N, C in ((9, 13), (4, 2051)):
        x = rand_logits(rng, (N, C), dtype)
        t = rng.random((N, C))
        t = (t / t.sum(1, keepdims=True)).astype(dtype)
        acc = np.float64 if np.dtype(dtype) == F64 else np.float32
        kw = {k: v for k, v in opts.items() if k not in ("weight", "sample_weight")}
        w = rng.uniform(0.5, 2, C).astype(acc) if opts.get("weight") else None
        sw = rng.uniform(0.5, 2, N).astype(acc) if opts.get("sample_weight") else None
        cl, (cgx, cgt) = lossx.cross_entropy(x, t, w, sample_weight=sw, return_grad=True, **kw)
        d = lambda a: None if a is None else to_dev(lib, a)  # noqa: E731
        gl, (ggx, ggt) = lossx.cross_entropy(d(x), d(t), d(w), sample_weight=d(sw), return_grad=True, **kw)
        check(lib, gl, cl, dtype, "soft loss")
        check(lib, ggx, cgx, dtype, "soft grad input")
        check(lib, ggt, cgt, dtype, "soft grad target")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("red", ["mean", "sum", "none"])
def test_nll_loss(lib, dtype, red, rng):
    N, C = 41, 17
    x = rand_logits(rng, (N, C), dtype)
    y = rng.integers(0, C, size=N).astype(np.int64)
    y[::5] = -100
    acc = np.float64 if np.dtype(dtype) == F64 else np.float32
    w = rng.uniform(0.5, 2, C).astype(acc)
    c, cg = lossx.nll_loss(x, y, w, reduction=red, return_grad=True)
    g, gg = lossx.nll_loss(to_dev(lib, x), to_dev(lib, y), to_dev(lib, w), reduction=red, return_grad=True)
    check(lib, g, c, dtype, "nll loss")
    check(lib, gg, cg, dtype, "nll grad")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,dim", [((7, 33), -1), ((3, 1003), 1), ((4, 5, 6), 1), ((2, 8193), -1)])
def test_log_softmax_logsumexp(lib, dtype, shape, dim, rng):
    x = rand_logits(rng, shape, dtype)
    go = rng.standard_normal(shape).astype(dtype)
    c, cg = lossx.log_softmax(x, dim, return_grad=True, grad_output=go)
    g, gg = lossx.log_softmax(to_dev(lib, x), dim, return_grad=True, grad_output=to_dev(lib, go))
    check(lib, g, c, dtype, "log_softmax")
    check(lib, gg, cg, dtype, "log_softmax grad")
    c, cg = lossx.log_softmax(x, dim, return_grad=True)
    g, gg = lossx.log_softmax(to_dev(lib, x), dim, return_grad=True)
    check(lib, gg, cg, dtype, "log_softmax grad (ones)")
    for keep in (False, True):
        c, cg = lossx.logsumexp(x, dim, keep, return_grad=True)
        g, gg = lossx.logsumexp(to_dev(lib, x), dim, keep, return_grad=True)
        check(lib, g, c, dtype, "logsumexp")
        check(lib, gg, cg, dtype, "logsumexp grad")
    c = lossx.logsumexp(x, dim)
    g = lossx.logsumexp(to_dev(lib, x), dim)
    check(lib, g, c, dtype, "logsumexp fwd")


def test_nonfinite_rows(ce_kernel, lib, rng):
    x = rand_logits(rng, (6, 50), np.float32)
    y = rng.integers(0, 50, size=6).astype(np.int64)
    y[1] = y[3] = -100
    x[1, 4] = np.nan  # ignored row: zero gradient, zero loss, even with NaN logits
    x[3, :] = np.inf
    x[2, 7] = np.nan  # non-ignored NaN row -> NaN, like PyTorch and the CPU path
    x[4, 9] = -np.inf  # -inf in a row with finite max is fine
    c, cg = lossx.cross_entropy(x, y, reduction="none", return_grad=True)
    g, gg = lossx.cross_entropy(to_dev(lib, x), to_dev(lib, y), reduction="none", return_grad=True)
    gn, ggn = to_np(g), to_np(gg)
    assert np.all(ggn[1] == 0) and np.all(ggn[3] == 0)
    assert gn[1] == 0 and gn[3] == 0
    assert np.isnan(gn[2]) and np.all(np.isnan(ggn[2]))
    assert np.isfinite(gn[4])
    ok = [0, 4, 5]
    check(lib, g[ok], c[ok], np.float32, "finite rows")
    check(lib, gg[ok], cg[ok], np.float32, "finite rows grad")
    # The mean over the non-ignored rows is NaN because row 2 is.
    assert np.isnan(float(to_np(lossx.cross_entropy(to_dev(lib, x), to_dev(lib, y)))))


def test_bad_label_then_context_usable(ce_kernel, lib, rng):
    x = rand_logits(rng, (20, 9), np.float32)
    y = rng.integers(0, 9, size=20).astype(np.int64)
    y[13], y[5], y[17] = 9, -3, 100
    with pytest.raises(IndexError, match=r"label -3 at position 5"):
        lossx.cross_entropy(to_dev(lib, x), to_dev(lib, y), return_grad=True)
    with pytest.raises(IndexError, match=r"position 5"):
        lossx.nll_loss(to_dev(lib, x), to_dev(lib, y))
    y[[5, 13, 17]] = 1
    c = lossx.cross_entropy(x, y)
    g = lossx.cross_entropy(to_dev(lib, x), to_dev(lib, y))
    check(lib, g, c, np.float32, "after the error")
    if lib == "torch":
        torch.cuda.synchronize()
        assert float((torch.ones(4, device="cuda") * 2).sum()) == 8.0
    else:
        cp.cuda.Device().synchronize()
        assert float(cp.ones(4).sum()) == 4.0


def test_empty_and_all_ignored(ce_kernel, lib):
    x = np.ones((4, 5), np.float32)
    y = np.full(4, -100, np.int64)
    assert np.isnan(float(to_np(lossx.cross_entropy(to_dev(lib, x), to_dev(lib, y)))))
    assert float(to_np(lossx.cross_entropy(to_dev(lib, x), to_dev(lib, y), reduction="sum"))) == 0.0
    _, gg = lossx.cross_entropy(to_dev(lib, x), to_dev(lib, y), reduction="sum", return_grad=True)
    assert np.all(to_np(gg) == 0)
    e = np.zeros((0, 5), np.float32)
    ye = np.zeros(0, np.int64)
    assert np.isnan(float(to_np(lossx.cross_entropy(to_dev(lib, e), to_dev(lib, ye)))))
    assert float(to_np(lossx.cross_entropy(to_dev(lib, e), to_dev(lib, ye), reduction="sum"))) == 0.0


def test_deterministic(ce_kernel, lib, rng):
    x = rand_logits(rng, (20000, 300), np.float32)
    y = rng.integers(0, 300, size=20000).astype(np.int64)
    dx, dy = to_dev(lib, x), to_dev(lib, y)
    a = to_np(lossx.cross_entropy(dx, dy))
    for _ in range(3):
        assert to_np(lossx.cross_entropy(dx, dy)) == a


# Rows for every ce_reg team: one block of 32..512 threads, one of 1024 (no
# clusters), clusters of 2, 4 and 8 blocks on sm_90 (fp32 holds 32 classes per
# thread, half types 64), and lengths ce_reg leaves to ce_rows (not whole
# 16-byte vectors; past the largest team).
REG_SHAPES = [(9, 8), (33, 1000), (7, 4096), (5, 16384), (3, 32768), (3, 65536), (2, 131072), (2, 262144),
              (3, 1002), (2, 262152)]


@pytest.mark.parametrize("dtype", [F32, F16] + ([BF16] if BF16 is not None else []), ids=str)
@pytest.mark.parametrize("shape", REG_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_cross_entropy_team_sizes(ce_kernel, lib, dtype, shape, rng):
    N, C = shape
    x = rand_logits(rng, shape, dtype)
    y = rng.integers(0, C, size=N).astype(np.int64)
    y[-1] = -100
    w = rng.uniform(0.2, 2.0, C).astype(np.float32)
    for kw in (dict(), dict(weight=w, label_smoothing=0.1, z_loss=1e-4, softcap=6.0, return_lse=True)):
        cpu = lossx.cross_entropy(x, y, return_grad=True, **kw)
        gkw = dict(kw, weight=to_dev(lib, w)) if "weight" in kw else kw
        gpu = lossx.cross_entropy(to_dev(lib, x), to_dev(lib, y), return_grad=True, **gkw)
        check_ce(lib, gpu, cpu, dtype, kw.get("return_lse", False), f"{N}x{C}")
        # In place: the same gradient bits as the separate buffer.
        dx = to_dev(lib, x)
        gkw = dict(gkw, return_lse=False)
        _, gi = lossx.cross_entropy(dx, to_dev(lib, y), return_grad=True, inplace_grad=True, **gkw)
        _, gs = lossx.cross_entropy(to_dev(lib, x), to_dev(lib, y), return_grad=True, **gkw)
        np.testing.assert_array_equal(to_np(gi), to_np(gs), err_msg=f"inplace {N}x{C}")


def test_inplace_grad(ce_kernel, lib, rng):
    x = rand_logits(rng, (8, 1000), np.float32)
    y = rng.integers(0, 1000, size=8).astype(np.int64)
    c, cg = lossx.cross_entropy(x, y, return_grad=True)
    dx = to_dev(lib, x)
    g, gg = lossx.cross_entropy(dx, to_dev(lib, y), return_grad=True, inplace_grad=True)
    check(lib, g, c, np.float32, "loss")
    check(lib, gg, cg, np.float32, "inplace grad")
    assert np.array_equal(to_np(dx), to_np(gg))


@pytest.mark.parametrize("C", [1000, 4096, 50000])
def test_inplace_grad_with_lse_ignored_rows_and_large_rows(ce_kernel, lib, rng):
    # An ignored row's zeros go over the logits only after its lse is formed,
    # and z_y is read before any warp writes the gradient over it: the same
    # bits as a separate gradient buffer, every row length and block size.
    N = 12
    x = rand_logits(rng, (N, C), np.float32)
    y = rng.integers(0, C, size=N).astype(np.int64)
    y[[0, 7]] = -100
    for kw in (dict(), dict(label_smoothing=0.1, z_loss=1e-3, softcap=8.0)):
        l1, lse1, g1 = lossx.cross_entropy(to_dev(lib, x), to_dev(lib, y), return_grad=True, return_lse=True, **kw)
        dx = to_dev(lib, x)
        l2, lse2, g2 = lossx.cross_entropy(dx, to_dev(lib, y), return_grad=True, return_lse=True,
                                           inplace_grad=True, **kw)
        np.testing.assert_array_equal(to_np(lse2), to_np(lse1))
        np.testing.assert_array_equal(to_np(g2), to_np(g1))
        assert float(to_np(l2)) == float(to_np(l1))
        assert not np.any(to_np(g2)[[0, 7]])
        check(lib, lse2, lossx.logsumexp(x, dim=1), np.float32, "lse of every row")


@pytest.mark.parametrize("log_probs", [False, True])
def test_inplace_grad_with_a_bad_label_leaves_the_logits(ce_kernel, lib, rng, log_probs):
    # As on the CPU: the call fails and the logits are untouched (the
    # kernels return at once when ce_prep has recorded a bad label; nll's
    # gradient was a memset queued before the check, which zeroed them).
    x = rand_logits(rng, (9, 4096), np.float32)
    y = rng.integers(0, 4096, size=9).astype(np.int64)
    y[4] = 4096
    dx = to_dev(lib, x)
    with pytest.raises(IndexError, match="position 4"):
        lossx.cross_entropy(dx, to_dev(lib, y), return_grad=True, return_lse=not log_probs, inplace_grad=True,
                            _log_probs=log_probs)
    np.testing.assert_array_equal(to_np(dx), x)


@pytest.mark.parametrize("dtype", [F32, F16])
@pytest.mark.parametrize("C", [7, 4096])
def test_inplace_nll(lib, rng, dtype, C):
    # The gradient kernel runs after the loss kernel has read x[y]: in place,
    # the loss is still right (the memset before made it -0).
    x = np.log(rng.dirichlet(np.ones(C), size=37)).astype(dtype)
    y = rng.integers(0, C, 37)
    y[5] = -100
    want = lossx.cross_entropy(x, y, reduction="none", return_grad=True, _log_probs=True)
    dx = to_dev(lib, x)
    loss, g = lossx.cross_entropy(dx, to_dev(lib, y), reduction="none", return_grad=True, inplace_grad=True,
                                  _log_probs=True)
    np.testing.assert_allclose(to_np(loss), want[0], rtol=1e-6)
    np.testing.assert_array_equal(to_np(dx), want[1])


def test_inplace_grad_soft_targets_misaligned_against_the_gradient_target(ce_kernel, lib, rng):
    # Logits at a 4-byte offset from a 16-byte boundary, grad_target freshly
    # allocated (aligned): the two gradient passes deal elements to threads
    # differently, and the logits gradient overwrote x[j] before grad_target's
    # pass had read it, without a barrier between them.
    if lib != "torch":
        pytest.skip("an offset view that stays C-contiguous and writable: torch")
    C = 4096
    base = torch.randn(4 * C + 1, device="cuda")
    x = base[1:].view(4, C)
    p = torch.rand(4, C, device="cuda")
    p /= p.sum(1, keepdim=True)
    want_loss, (want_g, want_gt) = lossx.cross_entropy(x.clone(), p, reduction="none", return_grad=True)
    loss, (g, gt) = lossx.cross_entropy(x, p, reduction="none", return_grad=True, inplace_grad=True)
    assert g.data_ptr() == x.data_ptr()
    torch.testing.assert_close(loss, want_loss, rtol=0, atol=0)
    torch.testing.assert_close(gt, want_gt, rtol=0, atol=0)
    torch.testing.assert_close(g, want_g, rtol=0, atol=0)


@pytest.mark.parametrize("base", [0.0, 1e4])
def test_large_logits_smoothing_and_soft_targets(ce_kernel, lib, base, rng):
    # Sums of a_j z_j are shifted (by the max or the row's first logit): near
    # 1e4 the unshifted A lse - sum a_j z_j lost 1e-4 of the loss to cancellation.
    x = (base + rng.standard_normal((16, 2048))).astype(np.float32)
    y = rng.integers(0, 2048, 16)
    p = rng.random((16, 2048)).astype(np.float32)
    p /= p.sum(1, keepdims=True)
    x64 = x.astype(np.float64)
    for tgt, kw in ((y, dict(label_smoothing=0.1)), (p, dict()), (p, dict(label_smoothing=0.2))):
        ref = lossx.cross_entropy(x64, tgt.astype(np.float64) if tgt is p else tgt, reduction="none", **kw)
        out = lossx.cross_entropy(to_dev(lib, x), to_dev(lib, tgt), reduction="none", **kw)
        # float32 sums of 2048 terms the size of the row's spread, fast-math exp.
        np.testing.assert_allclose(to_np(out), ref, rtol=1e-5, err_msg=str(kw))


@pytest.mark.skipif("torch" not in LIBS, reason="needs CUDA PyTorch")
def test_cuda_graph_capture(rng):
    # Integer labels need one host read (the label check): under capture the
    # call is refused before it queues anything, with a message saying so.
    # Soft targets read nothing back: they capture, and replays give the eager value.
    x = torch.from_numpy(rand_logits(rng, (64, 1000), np.float32)).cuda()
    y = torch.from_numpy(rng.integers(0, 1000, 64)).cuda()
    t = torch.softmax(torch.from_numpy(rand_logits(rng, (64, 1000), np.float32)).cuda(), -1)
    ref = lossx.cross_entropy(x, t)
    torch.cuda.synchronize()
    with pytest.raises(RuntimeError, match="CUDA graph capture does not allow"):
        with torch.cuda.graph(torch.cuda.CUDAGraph()):
            lossx.cross_entropy(x, y)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = lossx.cross_entropy(x, t)
    for _ in range(2):
        g.replay()
        torch.cuda.synchronize()
        assert float(out) == float(ref)


@pytest.mark.skipif("torch" not in LIBS, reason="needs CUDA PyTorch")
def test_torch_stream_ordering(rng):
    # Work queued on a side stream: lossx must run after it on the same stream.
    N, C = 64, 5000
    x = rand_logits(rng, (N, C), np.float32)
    y = rng.integers(0, C, size=N).astype(np.int64)
    t = rng.random((N, C)).astype(np.float32)
    t /= t.sum(1, keepdims=True)
    c_lsm = lossx.log_softmax(x)
    c_soft = lossx.cross_entropy(x, t)
    c_hard, c_g = lossx.cross_entropy(x, y, return_grad=True)
    src = torch.from_numpy(x).cuda()
    dt, dy = torch.from_numpy(t).cuda(), torch.from_numpy(y).cuda()
    s = torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(s):
        dst = torch.zeros_like(src)
        torch.cuda._sleep(50_000_000)  # keep the side stream busy before the copy
        dst.copy_(src)
        lsm = lossx.log_softmax(dst)
        soft = lossx.cross_entropy(dst, dt)
        hard, g = lossx.cross_entropy(dst, dy, return_grad=True)
    s.synchronize()
    check("torch", lsm, c_lsm, np.float32, "log_softmax on a side stream")
    check("torch", soft, c_soft, np.float32, "soft CE on a side stream")
    check("torch", hard, c_hard, np.float32, "hard CE on a side stream")
    check("torch", g, c_g, np.float32, "grad on a side stream")


@pytest.mark.skipif("cupy" not in LIBS, reason="needs CuPy")
def test_cupy_stream(rng):
    N, C = 64, 5000
    x = rand_logits(rng, (N, C), np.float32)
    y = rng.integers(0, C, size=N).astype(np.int64)
    c_lsm = lossx.log_softmax(x)
    c_hard = lossx.cross_entropy(x, y)
    src = cp.asarray(x)
    dy = cp.asarray(y)
    cp.cuda.Device().synchronize()
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        from lossx import _gpu

        assert _gpu.backend_for(src, "t").stream == s.ptr
        big = cp.ones((4096, 4096), cp.float32)
        for _ in range(5):
            big = big @ big * (1.0 / 4096)  # busy work ahead of the copy
        dst = src + big[0, 0] - 1.0
        lsm = lossx.log_softmax(dst)
        hard = lossx.cross_entropy(dst, dy)
    s.synchronize()
    check("cupy", lsm, c_lsm, np.float32, "log_softmax on a side stream")
    check("cupy", hard, c_hard, np.float32, "CE on a side stream")


@pytest.mark.skipif("torch" not in LIBS, reason="needs CUDA PyTorch")
def test_torch_requires_grad_input(rng):
    x = torch.from_numpy(rand_logits(rng, (5, 40), np.float32)).cuda().requires_grad_(True)
    y = torch.from_numpy(rng.integers(0, 40, size=5)).cuda()
    loss, g = lossx.cross_entropy(x, y, return_grad=True)
    ref = torch.nn.functional.cross_entropy(x, y)
    ref.backward()
    assert abs(float(loss) - float(ref)) < 1e-5
    torch.testing.assert_close(g, x.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.skipif("torch" not in LIBS, reason="needs CUDA PyTorch")
def test_more_than_2_31_elements():
    N, C = 16448, 131072  # 2^31 + 64 rows of 2^17 bf16 elements, 4.3 GB
    free, _ = torch.cuda.mem_get_info()
    if free < 12 * 2**30:
        pytest.skip("needs 12 GB of free GPU memory")
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.randn(N, C, device="cuda", generator=gen) * 2).to(torch.bfloat16)
    y = torch.randint(0, C, (N,), device="cuda", generator=gen)
    y[-1] = C - 1  # the very last element is the label of the last row
    y[-2] = -100
    loss, g = lossx.cross_entropy(x, y, reduction="none", return_grad=True)
    tail = slice(N - 64, N)  # rows entirely beyond element 2^31
    assert (N - 64) * C >= 2**31
    ref = torch.nn.functional.cross_entropy(x[tail].float(), y[tail], reduction="none")
    torch.testing.assert_close(loss[tail], ref, rtol=1e-5, atol=1e-5)
    p = torch.softmax(x[tail].float(), 1)
    keep = y[tail] != -100
    p[keep, y[tail][keep]] -= 1
    p[~keep] = 0
    torch.testing.assert_close(g[tail].float(), p, rtol=1.6e-2, atol=1e-6)
    head = slice(0, 64)
    ref0 = torch.nn.functional.cross_entropy(x[head].float(), y[head], reduction="none")
    torch.testing.assert_close(loss[head], ref0, rtol=1e-5, atol=1e-5)
    del g
    mean = lossx.cross_entropy(x, y)
    full = torch.stack([torch.nn.functional.cross_entropy(x[i:i + 2048].float(), y[i:i + 2048], reduction="sum")
                      for i in range(0, N, 2048)]).sum() / (y != -100).sum()
    torch.testing.assert_close(mean, full.float(), rtol=1e-5, atol=0)


def test_logsumexp_infinite_rows_like_torch(lib):
    # torch (and the CPU path): +inf for a row holding +inf, -inf for a row of
    # -inf, NaN for a row holding NaN; log_softmax of all three is NaN.
    x = np.zeros((4, 37), np.float32)
    x[0, 5] = np.inf
    x[1, :] = -np.inf
    x[2, 3] = np.nan
    lse = to_np(lossx.logsumexp(to_dev(lib, x), 1))
    assert lse[0] == np.inf and lse[1] == -np.inf and np.isnan(lse[2]) and np.isfinite(lse[3])
    np.testing.assert_array_equal(np.isnan(lossx.logsumexp(x, 1)), np.isnan(lse))
    ls = to_np(lossx.log_softmax(to_dev(lib, x), 1))
    assert np.isnan(ls[:3]).all() and np.isfinite(ls[3]).all()
