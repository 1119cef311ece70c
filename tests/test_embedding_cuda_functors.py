"""cuda/embedding.cu's row functors (triplet_margin_loss, cosine_embedding_loss),
compiled for the HOST by nvcc (tests/pair_functors_host.cu: the same source, no
kernels), against lossx's CPU kernels on the same inputs: the GPU path's sums,
finish (loss and gradient coefficients) and gradients are checked on machines
without a GPU. The kernel's teams, loads and reductions are tested on a GPU by
tests/cuda/test_embedding_cuda.py. Skipped where nvcc is not installed.
"""
import ctypes

import numpy as np
import pytest

import lossx

from _util import NVCC, build_host_lib
from test_embedding import _cos_term_scale, _dist_scale, _triplet_inputs

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")

# Row sums in the compute type in another order (one sequential sum here, SIMD
# lanes on the CPU) and exp/log of glibc vs Highway: 32 ulps, times sqrt(D) for
# the sums, relative to the magnitude of the terms that cancel (see test_embedding).
K = 32
ULP = {np.dtype(np.float32): 2.0**-23, np.dtype(np.float64): 2.0**-52}
SHAPES = [(1, 1), (7, 7), (33, 129), (5, 1031), (33, 1)]


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    lib = build_host_lib(tmp_path_factory.mktemp("pair_host"), "pair_functors_host.cu")
    p, i64, d = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    lib.lossx_pair_host.restype = None
    lib.lossx_pair_host.argtypes = [ctypes.c_int, ctypes.c_int, i64, i64, p, p, p, p, d, d, d, ctypes.c_int, p, p, p,
                                    p, p]
    return lib


def run_host(lib, kind, xs, target=None, margin=0.0, p=2.0, eps=1e-6, swap=False, go=None):
    dt = xs[0].dtype
    N, D = xs[0].shape
    xs = [np.ascontiguousarray(x) for x in xs] + [None] * (3 - len(xs))
    loss = np.empty(N, dt)
    grads = [np.empty((N, D), dt) if x is not None else None for x in xs]
    ptr = lambda a: None if a is None else a.ctypes.data  # noqa: E731
    tgt = None if target is None else np.ascontiguousarray(target, dt)
    gov = None if go is None else np.ascontiguousarray(go, dt)
    lib.lossx_pair_host(kind, int(dt == np.float64), N, D, ptr(xs[0]), ptr(xs[1]), ptr(xs[2]), ptr(tgt), margin, p,
                        eps, int(swap), ptr(gov), ptr(loss), ptr(grads[0]), ptr(grads[1]), ptr(grads[2]))
    return loss, [g for g in grads if g is not None]


def check(a, c, what, rtol, scale):
    a, c = np.asarray(a, np.float64), np.asarray(c, np.float64)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(c), err_msg=what + ": NaN pattern")
    fin = np.isfinite(c)
    np.testing.assert_allclose(a[fin], c[fin], rtol=rtol, atol=rtol * scale, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("p", [2.0, 1.0, 1.5, 0.7, 3.0])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_functor_matches_cpu(host_lib, rng, dtype, shape, p, swap):
    xs = _triplet_inputs(rng, shape, dtype)
    margin = float(rng.uniform(0.2, 1.5))
    go = rng.standard_normal(shape[0]).astype(dtype)
    cl, cg = lossx.triplet_margin_loss(*xs, margin=margin, p=p, swap=swap, reduction="none", return_grad=True,
                                       grad_output=go)
    hl, hg = run_host(host_lib, 0, xs, margin=margin, p=p, swap=swap, go=go)
    rt = K * ULP[np.dtype(dtype)] * max(1.0, np.sqrt(shape[1]))
    check(hl, cl, "loss", rt, _dist_scale(xs))
    # Each gradient is a difference of terms of size up to |grad_output| (and up to
    # the largest gradient entry for p < 1): a tiny entry is a cancellation.
    gscale = max(float(np.max(np.abs(np.stack(cg)))), float(np.max(np.abs(go))))
    for k in range(3):
        check(hg[k], cg[k], f"grad {k}", rt, gscale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("margin", [0.0, 0.3, -0.5])
def test_cosine_functor_matches_cpu(host_lib, rng, dtype, shape, margin):
    x1 = rng.standard_normal(shape).astype(dtype)
    x2 = (0.5 * x1 + rng.standard_normal(shape)).astype(dtype)
    y = rng.choice([-1, 1], size=shape[0])
    go = rng.standard_normal(shape[0]).astype(dtype)
    cl, cg = lossx.cosine_embedding_loss(x1, x2, y, margin, "none", return_grad=True, grad_output=go)
    hl, hg = run_host(host_lib, 1, [x1, x2], target=y, margin=margin, go=go)
    rt = K * ULP[np.dtype(dtype)] * max(1.0, np.sqrt(shape[1]))
    check(hl, cl, "loss", rt, 1.0)
    for k in range(2):
        check(hg[k], cg[k], f"grad {k}", rt, _cos_term_scale(x1, x2, go))


def test_zero_distance_zero_vectors_and_hinge_boundary(host_lib):
    a = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    n = np.array([[1.5, 2.0, 3.0], [-2.0, 0.0, 0.0]])
    pos = np.array([[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]])
    for p in (2.0, 1.0, 1.5):
        cl, cg = lossx.triplet_margin_loss(a, pos, n, margin=1.0, p=p, eps=0.0, reduction="none", return_grad=True)
        hl, hg = run_host(host_lib, 0, [a, pos, n], margin=1.0, p=p, eps=0.0)
        check(hl, cl, f"loss p={p}", 1e-13, 1.0)
        for k in range(3):
            check(hg[k], cg[k], f"grad {k} p={p}", 1e-13, 1.0)
    z = np.zeros((2, 4))
    cl, cg = lossx.cosine_embedding_loss(z, z.copy(), np.array([1, -1]), reduction="none", return_grad=True)
    hl, hg = run_host(host_lib, 1, [z, z.copy()], target=np.array([1.0, -1.0]))
    check(hl, cl, "cosine zero vectors", 1e-13, 1.0)
    check(hg[0], cg[0], "cosine zero vectors grad", 1e-13, 1.0)
