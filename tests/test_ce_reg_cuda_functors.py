"""cuda/ce_reg.cuh's row code (cross_entropy with hard labels, the row held in
registers: the fused one-read/one-write kernel), compiled for the HOST by nvcc
(tests/ce_reg_host.cu: the same source, no kernels), against lossx's CPU
kernels on the same inputs. The row code runs under a one-thread team and
under teams of 3, 32 and 64 host threads (a lane's strided 16-byte vectors,
lanes left idle by short rows, fixed-order reductions, two teams sharing the
rows as the kernel's grid does), in float32, float16 and bfloat16 storage.
The device's shuffles, cluster exchange and launch logic are tested on a GPU
by tests/cuda/test_softmax_cuda.py under LOSSX_CUDA_CE_KERNEL=reg. Skipped
where nvcc is not installed.
"""
import ctypes

import ml_dtypes
import numpy as np
import pytest

import lossx

from _util import NVCC, build_host_lib

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")

# storage dtype -> (harness code, elements per 16-byte vector, storage rounding)
DTYPES = {
    "float32": (np.float32, 0, 4, 0.0),
    "bfloat16": (ml_dtypes.bfloat16, 1, 8, 2.0**-8),
    "float16": (np.float16, 2, 8, 2.0**-11),
}
LANES = [1, 3, 32, 64]
KREGVEC = 8  # ce_reg.cuh's kRegVec
F32_ULP = 2.0**-23


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    lib = build_host_lib(tmp_path_factory.mktemp("ce_reg_host"), "ce_reg_host.cu")
    p, i64, i, d = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    lib.lossx_ce_reg_host.restype = i
    lib.lossx_ce_reg_host.argtypes = [i, i, i64, i64, p, p, p, p, p, i64, d, d, d, i, d, d, p, p, p, i64]
    return lib


def capacity(lanes, vec):
    return lanes * KREGVEC * vec


def class_counts(lanes, vec):
    """Row lengths from one vector to the team's capacity: most lanes idle,
    a partial last sweep, and every register of every lane in use."""
    cap = capacity(lanes, vec)
    return sorted({vec, 3 * vec, vec * (cap // vec // 2 + 1), cap - vec, cap} - {0})


def ptr(a):
    return None if a is None else a.ctypes.data


def run_host(lib, x, y, *, lanes, w=None, sw=None, go=None, ignore_index=-100, eps=0.0, zl=0.0, softcap=0.0,
             reduction="none", norm=1.0, grad=True, lse=True, inplace=False, err_pos=-1):
    """(row losses, lse or None, gradient or None) from ce_reg_rows."""
    N, C = x.shape
    code = next(v[1] for v in DTYPES.values() if np.dtype(v[0]) == x.dtype)
    x = np.ascontiguousarray(x)
    y = np.ascontiguousarray(y, np.int64)
    f32 = lambda a: None if a is None else np.ascontiguousarray(np.reshape(a, -1), np.float32)  # noqa: E731
    wv, swv, gov = f32(w), f32(sw), f32(go)
    wsum_all = float(np.sum(wv, dtype=np.float64)) if wv is not None else float(C)
    row_loss = np.full(N, -7.0, np.float32)  # overwritten for every row
    lse_out = np.full(N, -7.0, np.float32) if lse else None
    if inplace:
        g = x
    else:
        g = np.full((N, C), -7.0, x.dtype) if grad else None
    red = {"none": 0, "mean": 1, "sum": 2}[reduction]
    rc = lib.lossx_ce_reg_host(lanes, code, N, C, ptr(x), ptr(y), ptr(wv), ptr(swv), ptr(gov), ignore_index, eps, zl,
                               softcap, red, norm, wsum_all, ptr(row_loss), ptr(lse_out), ptr(g), err_pos)
    assert rc != -2, "the team's lanes took different paths (disagreeing reductions or barriers)"
    assert rc == 0, f"harness refused the call ({rc})"
    return row_loss, lse_out, g


def default_norm(y, w, ignore_index, sw=None, normalizer=None):
    """ce_prep + ce_finalize's mean denominator (PyTorch's by default)."""
    valid = y != ignore_index
    wy = np.ones(len(y)) if w is None else np.asarray(w, np.float64)[np.where(valid, y, 0)]
    if normalizer == "valid":
        return float(valid.sum())
    if normalizer == "weights":
        s = np.ones(len(y)) if sw is None else np.asarray(sw, np.float64)
        return float((wy * s)[valid].sum())
    return float(wy[valid].sum())


def check(a, c, what, rtol, scale):
    a, c = np.asarray(a, np.float64), np.asarray(c, np.float64)
    assert a.shape == c.shape, (what, a.shape, c.shape)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(c), err_msg=what + ": NaN pattern")
    inf = np.isinf(c)
    np.testing.assert_array_equal(a[inf], c[inf], err_msg=what + ": infinities")
    fin = np.isfinite(c)
    np.testing.assert_allclose(a[fin], c[fin], rtol=rtol, atol=rtol * scale + 1e-30, err_msg=what)


def tol(C):
    # Both sides accumulate in float32, in different orders (lane partials and
    # a fixed tree here, SIMD lanes on the CPU), with different exp/log (libm
    # here, Highway's on the CPU) and possible FMA contraction: a few ulps per
    # accumulated term, 4 C ulps relative to the magnitude of the terms. A
    # wrong sign, factor or skipped class is off by O(1) of that scale.
    return 4 * F32_ULP * max(C, 8)


def inputs(rng, N, C, dt, scale=3.0):
    x = (scale * rng.standard_normal((N, C))).astype(dt)
    y = rng.integers(0, C, N)
    return x, y


def compare(lib, x, y, lanes, *, reduction="none", w=None, sw=None, go=None, ignore_index=-100, eps=0.0, zl=0.0,
            softcap=None, normalizer=None, inplace=False, grad=True):
    N, C = x.shape
    store_ulp = next(v[3] for v in DTYPES.values() if np.dtype(v[0]) == x.dtype)
    ref_rows, ref_lse = lossx.cross_entropy(x, y, w, ignore_index=ignore_index, reduction="none", label_smoothing=eps,
                                            z_loss=zl, softcap=softcap, sample_weight=sw, return_lse=True)
    ref = lossx.cross_entropy(x, y, w, ignore_index=ignore_index, reduction=reduction, label_smoothing=eps, z_loss=zl,
                              softcap=softcap, sample_weight=sw, normalizer=normalizer, grad_output=go,
                              return_grad=grad)
    ref_loss, ref_g = ref if grad else (ref, None)
    norm = (normalizer if isinstance(normalizer, float) else default_norm(y, w, ignore_index, sw, normalizer))
    xin = x.copy()
    rows, lse, g = run_host(lib, xin, y, lanes=lanes, w=w, sw=sw, go=go, ignore_index=ignore_index, eps=eps, zl=zl,
                            softcap=softcap or 0.0, reduction=reduction, norm=norm, grad=grad, inplace=inplace)
    t = tol(C)
    check(lse, ref_lse, "lse", t, np.nanmax(np.abs(np.where(np.isfinite(ref_lse), ref_lse, 0))) + 1)
    fin_rows = np.where(np.isfinite(ref_rows), ref_rows, 0)
    check(rows, ref_rows, "row losses", t, np.max(np.abs(fin_rows)) + np.max(np.abs(np.where(np.isfinite(
        ref_lse), ref_lse, 0))) + 1)
    if reduction != "none" and np.all(np.isfinite(ref_rows)):
        total = float(np.sum(rows, dtype=np.float64))
        got = total / norm if reduction == "mean" else total
        np.testing.assert_allclose(got, float(ref_loss), rtol=t * 4, atol=1e-30, err_msg="reduced loss")
    if grad:
        if not inplace:
            np.testing.assert_array_equal(xin.view(np.uint8), x.view(np.uint8), err_msg="input modified")
        ga, gc = g.astype(np.float64), np.asarray(ref_g).astype(np.float64)
        scale = np.max(np.abs(np.where(np.isfinite(gc), gc, 0)), initial=0.0)
        # Storage rounding: the two float32 gradients differ by the tolerance
        # above, and each rounds to the half type, so an element may land one
        # storage ulp apart (store_ulp is half an ulp relative: two of them).
        check(ga, gc, "gradient", t + 2 * store_ulp, scale)
    return rows, lse, g


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("lanes", LANES)
def test_plain_rows_every_length(host_lib, dtype, lanes):
    rng = np.random.default_rng([lanes, len(dtype)])
    dt, _, vec, _ = DTYPES[dtype]
    for C in class_counts(lanes, vec):
        x, y = inputs(rng, 7, C, dt)
        for red in ("none", "mean", "sum"):
            compare(host_lib, x, y, lanes, reduction=red)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("lanes", [1, 3, 32])
@pytest.mark.parametrize("opt", ["weights_ignore", "smoothing", "smoothing_weights", "z_loss", "softcap",
                                 "sample_weight", "grad_output", "all"])
def test_options(host_lib, dtype, lanes, opt):
    rng = np.random.default_rng([lanes, len(dtype), len(opt)])
    dt, _, vec, _ = DTYPES[dtype]
    C = vec * (capacity(lanes, vec) // vec // 2 + 1)
    N = 9
    x, y = inputs(rng, N, C, dt)
    kw = {}
    if opt in ("weights_ignore", "smoothing_weights", "all"):
        kw["w"] = rng.uniform(0.2, 2.0, C).astype(np.float32)
        y[[1, 6]] = -100
    if opt in ("smoothing", "smoothing_weights", "all"):
        kw["eps"] = 0.15
    if opt in ("z_loss", "all"):
        kw["zl"] = 1e-3 if opt == "z_loss" else 2e-4
    if opt in ("softcap", "all"):
        kw["softcap"] = 2.5 if opt == "softcap" else 4.0
    if opt in ("sample_weight", "all"):
        kw["sw"] = rng.uniform(0.1, 3.0, N).astype(np.float32)
    for red in ("none", "mean", "sum"):
        go = None
        if opt in ("grad_output", "all"):
            go = (rng.uniform(-2, 2, N) if red == "none" else rng.uniform(-2, 2, ())).astype(np.float32)
        compare(host_lib, x, y, lanes, reduction=red, go=go, **kw)


@pytest.mark.parametrize("normalizer", ["valid", "weights", 11.5])
def test_normalizers(host_lib, normalizer):
    rng = np.random.default_rng(5)
    x, y = inputs(rng, 8, 36, np.float32)
    y[2] = 7
    y[3] = -1  # ignore_index
    w = rng.uniform(0.2, 2.0, 36).astype(np.float32)
    sw = rng.uniform(0.1, 3.0, 8).astype(np.float32)
    compare(host_lib, x, y, 3, reduction="mean", w=w, sw=sw, ignore_index=-1, normalizer=normalizer)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("lanes", [1, 32])
def test_inplace_grad(host_lib, dtype, lanes):
    rng = np.random.default_rng([lanes, len(dtype), 9])
    dt, _, vec, _ = DTYPES[dtype]
    C = capacity(lanes, vec) - vec
    x, y = inputs(rng, 5, C, dt)
    y[2] = -100
    _, _, g = compare(host_lib, x, y, lanes, reduction="mean", eps=0.1, zl=1e-3, inplace=True)
    assert g is not None


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("lanes", [1, 3, 32])
def test_nonfinite_rows(host_lib, dtype, lanes):
    rng = np.random.default_rng([lanes, len(dtype), 3])
    dt, _, vec, _ = DTYPES[dtype]
    C = 3 * vec if lanes > 1 else capacity(1, vec)
    x, y = inputs(rng, 7, C, dt)
    x[0, C // 2] = np.nan
    x[1, 1] = np.inf
    x[2, :] = -np.inf
    x[3, ::3] = -np.inf  # finite: the -inf classes have probability 0
    y[3] = 1
    x[4, 0] = np.nan  # ignored: zero gradient whatever the logits
    y[4] = -100
    x[5, y[5]] = -np.inf  # the label's logit -inf: loss +inf
    for red in ("none", "sum"):
        compare(host_lib, x, y, lanes, reduction=red)


def test_large_logits_no_cancellation(host_lib):
    # lse - z_y computed as log(s) + (m - z_y): 1e4-sized logits keep the loss's relative accuracy.
    rng = np.random.default_rng(11)
    x = (1e4 + rng.standard_normal((6, 64))).astype(np.float32)
    y = rng.integers(0, 64, 6)
    rows, _, _ = run_host(host_lib, x.copy(), y, lanes=3)
    ref = lossx.cross_entropy(x.astype(np.float64), y, reduction="none")
    np.testing.assert_allclose(rows, ref, rtol=1e-4)


@pytest.mark.parametrize("base", [0.0, 1e3, 1e4])
def test_smoothing_with_large_logits(host_lib, base):
    # Label smoothing's sum_j w_j z_j is taken relative to the row's max: unshifted,
    # A lse - sum a_j z_j cancelled to a 1e-4 relative error at logits near 1e4.
    rng = np.random.default_rng(7)
    x = (base + rng.standard_normal((8, 2048))).astype(np.float32)
    y = rng.integers(0, 2048, 8)
    w = rng.uniform(0.5, 2, 2048).astype(np.float32)
    rows, _, _ = run_host(host_lib, x.copy(), y, lanes=64, eps=0.1, w=w)
    ref = lossx.cross_entropy(x.astype(np.float64), y, weight=w.astype(np.float64), label_smoothing=0.1,
                              reduction="none")
    # float32 sums of 2048 terms of the row's spread (a few units), not of its values.
    np.testing.assert_allclose(rows, ref, rtol=2e-6)


def test_out_of_range_label_rows_are_zero(host_lib):
    # launch_ce fails such a call from ce_prep's error slot; the row code must
    # only keep clear of out-of-bounds reads and writes.
    rng = np.random.default_rng(4)
    x, y = inputs(rng, 4, 32, np.float32)
    y[1], y[2] = 32, -5
    rows, lse, g = run_host(host_lib, x.copy(), y, lanes=3)
    assert rows[1] == 0 and rows[2] == 0 and not np.any(g[1:3])
    ref_rows, ref_lse = lossx.cross_entropy(x[[0, 3]], y[[0, 3]], reduction="none", return_lse=True)
    check(rows[[0, 3]], ref_rows, "valid rows", tol(32), 10)
    check(lse, lossx.logsumexp(x, dim=1), "lse of every row", tol(32), 10)


@pytest.mark.parametrize("lanes", [1, 3])
def test_recorded_bad_label_writes_nothing(host_lib, lanes):
    # With ce_prep's error slot set the call fails: under inplace_grad the
    # logits must come back as they were (the CPU path never touches them).
    rng = np.random.default_rng(5)
    x, y = inputs(rng, 5, 32, np.float32)
    y[3] = 40
    buf = x.copy()
    rows, lse, g = run_host(host_lib, buf, y, lanes=lanes, inplace=True, err_pos=3)
    np.testing.assert_array_equal(buf, x)
    assert np.all(rows == -7.0) and np.all(lse == -7.0)
    rows, lse, g = run_host(host_lib, buf, y, lanes=lanes, inplace=True)  # the same call, no error recorded
    assert not np.array_equal(buf, x)  # (the check above can fail)


@pytest.mark.parametrize("lanes", [1, 3])
def test_inplace_grad_lse_of_ignored_rows(host_lib, lanes):
    rng = np.random.default_rng(6)
    x, y = inputs(rng, 6, 32, np.float32)
    y[[1, 4]] = -100
    _, lse, _ = run_host(host_lib, x.copy(), y, lanes=lanes)
    buf = x.copy()
    _, lse2, g = run_host(host_lib, buf, y, lanes=lanes, inplace=True)
    np.testing.assert_array_equal(lse2, lse)
    assert not np.any(g[[1, 4]])


def test_harness_rejects_rows_the_kernel_does_not_take(host_lib):
    x = np.ones((2, 6), np.float32)  # 6 classes: not whole float32 vectors
    y = np.zeros(2, np.int64)
    rl = np.zeros(2, np.float32)
    assert host_lib.lossx_ce_reg_host(1, 0, 2, 6, ptr(x), ptr(y), None, None, None, -100, 0.0, 0.0, 0.0, 0, 1.0,
                                      6.0, ptr(rl), None, None, -1) == -3
