"""cuda/ctc.cu's per-sample code (ctc_loss on GPU arrays), compiled for the HOST
by nvcc (tests/ctc_functors_host.cu: the same source, a team of one, no
kernels), against lossx's CPU kernel on the same inputs: the alpha/beta
recursions with torch's special values, the per-class occupations, the gradient
rows, zero_infinity and the empty cases are checked on machines without a GPU.
The kernels' block striding, barriers and reductions are tested on a GPU by
tests/cuda/test_ctc_cuda.py. Skipped where nvcc is not installed.
"""
import ctypes

import numpy as np
import pytest

import lossx

from _util import NVCC, build_host_lib
from test_ctc import BLANKS, SHAPES, _lengths, _log_probs, _targets

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    lib = build_host_lib(tmp_path_factory.mktemp("ctc_host"), "ctc_functors_host.cu")
    p, i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.lossx_ctc_host.restype = c_int
    lib.lossx_ctc_host.argtypes = [c_int, i64, i64, i64, p, p, c_int, i64, p, p, i64, c_int, p, p, p]
    return lib


def run_host(lib, lp, targets, il, tl, blank, zero_infinity, go, grad=True):
    T, N, C = lp.shape
    lp = np.ascontiguousarray(lp)
    tg = np.ascontiguousarray(targets, np.int64)
    il = np.ascontiguousarray(il, np.int64)
    tl = np.ascontiguousarray(tl, np.int64)
    gov = np.ascontiguousarray(go, lp.dtype)
    nll = np.empty(N)
    g = np.full(lp.shape, np.nan, lp.dtype) if grad else None  # every entry must be written
    rc = lib.lossx_ctc_host(int(lp.dtype == np.float64), T, N, C, lp.ctypes.data, tg.ctypes.data,
                            int(tg.ndim == 1), tg.shape[-1] if tg.ndim == 2 else tg.size, il.ctypes.data,
                            tl.ctypes.data, blank, int(zero_infinity), gov.ctypes.data, nll.ctypes.data,
                            None if g is None else g.ctypes.data)
    assert rc == 0
    return nll, g


def check(a, c, what, atol):
    a, c = np.asarray(a, np.float64), np.asarray(c, np.float64)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(c), err_msg=what + ": NaN pattern")
    fin = np.isfinite(c)
    np.testing.assert_array_equal(a[~fin], c[~fin], err_msg=what + ": infinities")
    np.testing.assert_allclose(a[fin], c[fin], rtol=1e-12, atol=atol, err_msg=what)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("blank", list(BLANKS))
def test_samples_match_cpu(host_lib, rng, shape, dtype, layout, zero_infinity, blank):
    T, N, C, S = shape
    b = BLANKS[blank](C)
    labels = np.array([c for c in range(C) if c != b])
    lp = _log_probs(rng, T, N, C, dtype)
    il, tl = _lengths(rng, T, N, S, labels)
    padded, concat = _targets(rng, N, S, labels, tl)
    targets = padded if layout == "padded" else concat
    go = rng.uniform(0.5, 2.0, N) * rng.choice([-1, 1], N)
    cl, cg = lossx.ctc_loss(lp, targets, il, tl, b, "none", zero_infinity, return_grad=True,
                            grad_output=go.astype(dtype))
    hl, hg = run_host(host_lib, lp, targets, il, tl, b, zero_infinity, go)
    # Both compute in float64 from the same inputs; they differ in exp/log (glibc
    # vs Highway, ~1 ulp) and in the order of the blank class's occupation sum:
    # ulps of the log-space sums (|alpha| ~ T |log p|), as tests/test_ctc.py allows.
    check(hl.astype(cl.dtype) if dtype == np.float32 else hl, cl, "loss", 1e-12 * T if dtype == np.float64 else 1e-5)
    check(hg, cg, "grad", 1e-12 * T if dtype == np.float64 else 2e-6)
    # Forward only: the two-row alpha gives the same losses.
    fl, _ = run_host(host_lib, lp, targets, il, tl, b, zero_infinity, go, grad=False)
    np.testing.assert_array_equal(fl, hl)


def test_special_values_like_cpu(host_lib, rng):
    # -inf log-probabilities (impossible labels), NaN, and +inf, as torch/the CPU treat them.
    T, N, C = 9, 5, 4
    lp = _log_probs(rng, T, N, C, np.float64)
    lp[:, 0, 2] = -np.inf  # sample 0 can never emit class 2
    lp[3, 1, 1] = np.nan
    lp[4, 2, 0] = np.inf
    targets = np.array([[2, 1], [1, 3], [3, 3], [1, 1], [2, 3]])
    il = np.array([9, 9, 9, 3, 9])
    tl = np.array([2, 2, 2, 2, 1])
    go = np.ones(N)
    for zi in (False, True):
        cl, cg = lossx.ctc_loss(lp, targets, il, tl, 0, "none", zi, return_grad=True, grad_output=go)
        hl, hg = run_host(host_lib, lp, targets, il, tl, 0, zi, go)
        check(hl, cl, "loss", 1e-12)
        check(hg, cg, "grad", 1e-12)
