"""cuda/margin.cu's row code (multi_margin_loss, multilabel_margin_loss),
compiled for the HOST by nvcc (tests/margin_functors_host.cu: the same source,
no kernels), against lossx's CPU kernels on the same inputs: the GPU path's
label scan and error position, hinge arithmetic, gradient scale and gradients
are checked on machines without a GPU. The row code runs under a one-thread
team (the CPU's loop order) and under teams of 3 and 32 host threads (strided
lanes, concurrent mask updates, barriers and fixed-order reductions, as a warp
or block does it). The device's own warp shuffles, shared/global masks and
launch logic are tested on a GPU by tests/cuda/test_margin_cuda.py. Skipped
where nvcc is not installed.
"""
import ctypes
import re

import numpy as np
import pytest

import lossx

from _util import NVCC, build_host_lib
from test_margin import _mlm_target

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")

ULP = {np.dtype(np.float32): 2.0**-23, np.dtype(np.float64): 2.0**-52}
SHAPES = [(1, 1), (7, 7), (33, 129), (5, 1031), (33, 1), (3, 2), (2, 2049)]


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    lib = build_host_lib(tmp_path_factory.mktemp("margin_host"), "margin_functors_host.cu")
    p, i64, i = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.lossx_margin_host.restype = i64
    lib.lossx_margin_host.argtypes = [i, i, i, i64, i64, p, p, p, ctypes.c_double, i, i, p, i, p, p]
    return lib


def run_host(lib, kind, x, labels, w=None, margin=1.0, p=1, mean=False, go=None, grad=True, lanes=1):
    """(row losses, gradient or None, smallest bad label position or -1)."""
    dt = x.dtype
    N, C = x.shape
    x = np.ascontiguousarray(x)
    labels = np.ascontiguousarray(labels, np.int64)
    loss = np.full(N, -7.0, dt)  # overwritten for every row
    g = np.full((N, C), -7.0, dt) if grad else None
    ptr = lambda a: None if a is None else a.ctypes.data  # noqa: E731
    wv = None if w is None else np.ascontiguousarray(w, dt)
    gov = None if go is None else np.ascontiguousarray(np.reshape(go, -1), dt)
    per_row = gov is not None and gov.size == N and not mean
    bad = lib.lossx_margin_host(lanes, kind, int(dt == np.float64), N, C, ptr(x), ptr(labels), ptr(wv), margin, p, int(mean),
                                ptr(gov), int(per_row), ptr(loss), ptr(g))
    assert bad != -2, "the team's lanes took different paths (disagreeing reductions or barriers)"
    return loss, g, bad


def check(a, c, what, rtol, scale):
    a, c = np.asarray(a, np.float64), np.asarray(c, np.float64)
    assert a.shape == c.shape, (what, a.shape, c.shape)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(c), err_msg=what + ": NaN pattern")
    fin = np.isfinite(c)
    np.testing.assert_array_equal(a[~fin & ~np.isnan(c)], c[~fin & ~np.isnan(c)], err_msg=what + ": infinities")
    np.testing.assert_allclose(a[fin], c[fin], rtol=rtol, atol=rtol * scale + 1e-300, err_msg=what)


# The one-thread team adds in the CPU's order, a team of lanes in another one
# (lane partials, then a fixed tree), and the compilers may contract to FMAs:
# 4 ulps per accumulated term, i.e. 4 C ulps relative to the magnitude of the
# terms (the row's sum of |terms|, or the largest gradient entry). A wrong
# sign, factor or skipped class is off by O(1) of that scale.
def tol(dtype, C):
    return 4 * ULP[np.dtype(dtype)] * C


def _multi_inputs(rng, shape, dtype, weighted):
    N, C = shape
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.integers(0, C, N)
    w = rng.uniform(0.2, 2.0, C).astype(dtype) if weighted else None
    return x, y, w


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True], ids=["", "w"])
@pytest.mark.parametrize("margin", [1.0, -0.4])
@pytest.mark.parametrize("lanes", [1, 3, 32])
def test_multi_margin_matches_cpu(host_lib, rng, dtype, shape, p, weighted, margin, lanes):
    x, y, w = _multi_inputs(rng, shape, dtype, weighted)
    go = rng.uniform(-1.5, 1.5, shape[0]).astype(dtype)
    cl, cg = lossx.multi_margin_loss(x, y, p, margin, w, "none", return_grad=True, grad_output=go)
    hl, hg, bad = run_host(host_lib, 0, x, y, w, margin, p, go=go, lanes=lanes)
    assert bad == -1
    rt = tol(dtype, shape[1])
    # Scale of the loss terms: (|margin| + |x_y| + |x_j|)^p w_y / C, summed over the row.
    mag = (abs(margin) + 2 * np.max(np.abs(x))) ** p * (np.max(w) if weighted else 1.0)
    check(hl, cl, "loss", rt, mag)
    gscale = max(float(np.max(np.abs(cg))), 1e-30)
    check(hg, cg, "grad", rt, gscale)
    # Forward only: no gradient written, the same losses.
    fl, fg, _ = run_host(host_lib, 0, x, y, w, margin, p, grad=False, lanes=lanes)
    assert fg is None
    check(fl, cl, "forward-only loss", rt, mag)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", [0, 1], ids=["multi", "multilabel"])
@pytest.mark.parametrize("lanes", [1, 32])
def test_reduced_gradient_scale(host_lib, rng, dtype, reduction, kind, lanes):
    # The kernel's scale (1/N for a mean, times the one grad_output) per row.
    shape = (9, 13)
    x = rng.standard_normal(shape).astype(dtype)
    if kind == 0:
        y = rng.integers(0, shape[1], shape[0])
        cl, cg = lossx.multi_margin_loss(x, y, 2, 0.7, None, reduction, return_grad=True, grad_output=1.7)
    else:
        y = _mlm_target(rng, shape)
        cl, cg = lossx.multilabel_margin_loss(x, y, reduction, return_grad=True, grad_output=1.7)
    hl, hg, bad = run_host(host_lib, kind, x, y, None, 0.7, 2, mean=reduction == "mean",
                           go=np.array([1.7], dtype), lanes=lanes)
    assert bad == -1
    rt = tol(dtype, shape[1])
    total = np.sum(hl, dtype=np.float64)
    check(total / shape[0] if reduction == "mean" else total, cl, "reduced loss", rt * shape[0], 1.0)
    if kind == 1:
        np.testing.assert_array_equal(hg, cg)  # see test_multilabel_margin_matches_cpu
    else:
        check(hg, cg, "grad", rt, float(np.max(np.abs(cg))))


def _list_lengths_target(rng, shape, mode):
    N, C = shape
    if mode == "random":
        return _mlm_target(rng, shape)
    t = np.full(shape, -1, np.int64)
    for i, row in enumerate(t):
        k = {"empty": 0, "full": C, "one": min(1, C), "dups": C}[mode]
        row[:k] = rng.permutation(C)[:k] if mode != "dups" else rng.integers(0, max(1, C // 3 + 1), k) % C
        if mode == "empty" and C > 1:
            row[1:] = rng.integers(0, C, C - 1)  # after the leading -1: ignored
    return t


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("mode", ["random", "empty", "full", "one", "dups"])
@pytest.mark.parametrize("lanes", [1, 3, 32])
def test_multilabel_margin_matches_cpu(host_lib, rng, dtype, shape, mode, lanes):
    x = rng.standard_normal(shape).astype(dtype)
    t = _list_lengths_target(rng, shape, mode)
    go = rng.uniform(-1.5, 1.5, shape[0]).astype(dtype)
    cl, cg = lossx.multilabel_margin_loss(x, t, "none", return_grad=True, grad_output=go)
    hl, hg, bad = run_host(host_lib, 1, x, t, go=go, lanes=lanes)
    assert bad == -1
    # The hinge sum (positive terms: no cancellation) is accumulated in double on
    # both sides, over the pairs in another order (class-major here, list-major on
    # the CPU): up to (C/2)^2 double roundings, then one rounding to the compute type.
    rt = 2 * ULP[np.dtype(dtype)] + (shape[1] ** 2 / 4) * 2.0**-52
    check(hl, cl, "loss", rt, 1.0)
    # Gradient entries are repeated additions of +-scale/C, one per active pair:
    # the same additions as the CPU's, so the same bits (only the counts matter).
    np.testing.assert_array_equal(hg, cg)
    fl, _, _ = run_host(host_lib, 1, x, t, grad=False, lanes=lanes)
    check(fl, cl, "forward-only loss", rt, 1.0)


def test_multilabel_gradient_with_a_much_repeated_target(host_lib):
    # A class listed 3000 times in a row of 6000 classes: about 1.8e7 additions
    # of the same -scale/C into one gradient entry, past float32's 2^24 where
    # the sum stops changing; the GPU stops there too, with the CPU's bits.
    rng = np.random.default_rng(3)
    C = 6000
    x = (0.01 * rng.standard_normal((1, C))).astype(np.float32)
    t = np.full((1, C), -1, np.int64)
    t[0, :3000] = 5
    t[0, 3000] = 9
    cl, cg = lossx.multilabel_margin_loss(x, t, "sum", return_grad=True)
    hl, hg, bad = run_host(host_lib, 1, x, t)
    assert bad == -1
    np.testing.assert_array_equal(hg, cg)
    assert cg[0, 5] < 0


@pytest.mark.parametrize("lanes", [1, 3])
def test_hinge_boundary_and_nan(host_lib, lanes):
    # z exactly 0 counts nothing (torch's kernel tests > 0); NaN in x counts
    # nothing either; a NaN weight or grad_output reaches the loss / gradient.
    x = np.array([[0.0, 1.0, 0.0, np.nan], [2.0, 1.0, 0.5, 0.25], [np.nan, 0.0, 1.0, 3.0]])
    y = np.array([1, 0, 2])
    for w in (None, np.array([1.0, np.nan, 2.0, 1.0])):
        for p in (1, 2):
            for go in (np.array([1.0, -2.0, 0.5]), np.array([np.nan, 1.0, 1.0])):
                cl, cg = lossx.multi_margin_loss(x, y, p, 1.0, w, "none", return_grad=True, grad_output=go)
                hl, hg, _ = run_host(host_lib, 0, x, y, w, 1.0, p, go=go, lanes=lanes)
                check(hl, cl, f"loss w={w} p={p}", 1e-15, 1.0)
                check(hg, cg, f"grad w={w} p={p}", 1e-15, 1.0)
    t = np.array([[1, -1, 0, 0], [0, 1, 2, 3], [3, 0, -1, 5]])
    for go in (np.array([1.0, -2.0, 0.5]), np.array([np.nan, 1.0, 1.0])):
        cl, cg = lossx.multilabel_margin_loss(x, t, "none", return_grad=True, grad_output=go)
        hl, hg, _ = run_host(host_lib, 1, x, t, go=go, lanes=lanes)
        np.testing.assert_array_equal(hl, cl)
        np.testing.assert_array_equal(hg, cg)


def _cpu_error_position(call):
    with pytest.raises(IndexError) as e:
        call()
    return str(e.value)


@pytest.mark.parametrize("C", [1, 5, 40])
def test_multi_margin_bad_label_position(host_lib, rng, C):
    N = 50
    x = rng.standard_normal((N, C))
    for _ in range(20):
        y = rng.integers(0, C, N)
        nbad = int(rng.integers(1, 4))
        pos = rng.choice(N, nbad, replace=False)
        y[pos] = rng.choice([-1, -5, C, C + 3, 2**40], nbad)
        msg = _cpu_error_position(lambda: lossx.multi_margin_loss(x, y))
        _, _, bad = run_host(host_lib, 0, x, y, lanes=3)
        assert bad == int(pos.min())
        assert f"label {y[bad]} at position {bad} is out of range [0, {C})" in msg


@pytest.mark.parametrize("C", [1, 4, 37])
def test_multilabel_bad_label_position(host_lib, rng, C):
    # The CPU scans each row up to its first negative entry; a bad entry after
    # it is not an error. The GPU's smallest flat position must be the CPU's.
    N = 30
    x = rng.standard_normal((N, C))
    for _ in range(30):
        t = _mlm_target(rng, (N, C))
        # Bad entries anywhere, some hidden behind a -1.
        for _ in range(int(rng.integers(1, 4))):
            i, k = int(rng.integers(0, N)), int(rng.integers(0, C))
            t[i, k] = C + int(rng.integers(0, 3))
        _, _, bad = run_host(host_lib, 1, x, t, lanes=int(rng.choice([1, 3, 32])))
        try:
            lossx.multilabel_margin_loss(x, t)
            assert bad == -1
        except IndexError as e:
            m = re.search(r"label (\d+) at position \((\d+), (\d+)\) is out of range \[-1, (\d+)\)", str(e))
            assert m, str(e)
            assert bad == int(m.group(2)) * C + int(m.group(3))
            assert int(m.group(1)) == t.reshape(-1)[bad]
