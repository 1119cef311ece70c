"""cuda/keras_rows.cu's row code (lossx.keras's categorical, focal, hinge,
cosine, dice and tversky losses on GPU arrays), compiled for the HOST by nvcc
(tests/keras_functors_host.cu: the same source, a team of one, no kernels),
against lossx's CPU kernels on the same inputs. This checks the GPU path's
sweeps, Keras' clip and normalisation, the hinge's first-maximum rule, the
softmax of focal's from_logits and the sums losses' segments on machines
without a GPU; the kernels' teams and reductions are tested on a GPU by
tests/cuda/test_keras_cuda.py. Skipped where nvcc is not installed.
"""
import ctypes

import numpy as np
import pytest

from lossx import keras as K

from _util import NVCC, build_host_lib
from test_keras import make

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")

KIND = {"categorical_crossentropy": 0, "sparse_categorical_crossentropy": 1, "categorical_focal_crossentropy": 2,
        "categorical_hinge": 3, "cosine_similarity": 4, "dice": 5, "tversky": 6}
# Row sums in another order (one sequential sum here, SIMD lanes on the CPU) and
# libm's log/exp against Highway's: 32 ulps, times sqrt(C) for the sums.
K_ULP = 32
ULP = {np.dtype(np.float32): 2.0**-23, np.dtype(np.float64): 2.0**-52}
SHAPES = [(1, 1), (7, 7), (33, 129), (5, 1031), (3, 4099)]
CASES = [
    ("categorical_crossentropy", {}),
    ("categorical_crossentropy", {"label_smoothing": 0.1, "soft": True}),
    ("sparse_categorical_crossentropy", {}),
    ("sparse_categorical_crossentropy", {"ignore_class": 2}),
    ("categorical_focal_crossentropy", {}),
    ("categorical_focal_crossentropy", {"from_logits": True}),
    ("categorical_focal_crossentropy", {"alpha": 0.7, "gamma": 0.0}),
    ("categorical_focal_crossentropy", {"gamma": 0.5, "label_smoothing": 0.1, "soft": True}),
    ("categorical_focal_crossentropy", {"alpha": "vec", "from_logits": True, "gamma": 3.0}),
    ("categorical_hinge", {}),
    ("cosine_similarity", {}),
    ("dice", {"axis": -1}),
    ("tversky", {"axis": -1, "alpha": 0.9, "beta": 0.1}),
]


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    lib = build_host_lib(tmp_path_factory.mktemp("keras_host"), "keras_functors_host.cu")
    p, i64, d, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    lib.lossx_keras_host.restype = None
    lib.lossx_keras_host.argtypes = [c_int, c_int, i64, i64, p, p, p, c_int, d, d, d, d, p, c_int, i64, p, p, p]
    return lib


def run_host(lib, name, t, p, o, go):
    dt = p.dtype
    N, C = p.shape
    sparse = name == "sparse_categorical_crossentropy"
    t = np.ascontiguousarray(t, np.int64 if sparse else dt)
    p = np.ascontiguousarray(p)
    av = o.get("alpha")
    avec = np.ascontiguousarray(av, dt) if isinstance(av, np.ndarray) else None
    alpha = 0.0 if avec is not None else float(o.get("alpha", 0.25 if name != "tversky" else 0.5))
    loss = np.empty(N, dt)
    grad = np.empty((N, C), dt)
    ic = o.get("ignore_class")
    ptr = lambda a: None if a is None else a.ctypes.data  # noqa: E731
    lib.lossx_keras_host(KIND[name], int(dt == np.float64), N, C, None if sparse else ptr(t), ptr(t) if sparse else None,
                         ptr(p), int(bool(o.get("from_logits"))), float(o.get("label_smoothing", 0.0)), alpha,
                         float(o.get("beta", 0.5)), float(o.get("gamma", 2.0)), ptr(avec), int(ic is not None),
                         int(ic or 0), ptr(np.ascontiguousarray(go, dt)), ptr(loss), ptr(grad))
    return loss, grad


def cpu_call(name, t, p, o, go):
    kw = {k: v for k, v in o.items() if k != "soft"}
    return getattr(K, name)(t, p, reduction=None, return_grad=True, grad_output=go, **kw)


def check(a, c, what, rtol, scale):
    a, c = np.asarray(a, np.float64), np.asarray(c, np.float64)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(c), err_msg=what + ": NaN pattern")
    fin = np.isfinite(c)
    np.testing.assert_array_equal(a[~fin], c[~fin], err_msg=what + ": infinities")
    np.testing.assert_allclose(a[fin], c[fin], rtol=rtol, atol=rtol * scale, err_msg=what)


def inputs(name, shape, dtype, rng, o):
    o = dict(o)
    if o.get("alpha") == "vec":
        o["alpha"] = rng.uniform(0.1, 0.9, shape[-1]).astype(dtype)
    t, p = make(name, shape, dtype, rng, o)
    return t, p, o


def _focal_condition(p, o):
    p = np.asarray(p, np.float64)
    if o.get("from_logits"):
        p = np.exp(p - p.max(-1, keepdims=True))
    q = p / p.sum(-1, keepdims=True)
    q = q[(q > 1e-7) & (q < 1 - 1e-7)]  # a clipped q is a constant: no rounding to amplify
    return max(1.0, float(np.max(q / (1 - q), initial=1.0)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name,o", CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_rows_match_cpu(host_lib, rng, name, o, shape, dtype):
    t, p, o = inputs(name, shape, dtype, rng, o)
    go = rng.uniform(0.5, 2.0, shape[0]).astype(dtype) * rng.choice([-1, 1], shape[0])
    cl, cg = cpu_call(name, t, p, o, go)
    hl, hg = run_host(host_lib, name, t, p, o, go)
    rt = K_ULP * ULP[np.dtype(dtype)] * max(1.0, np.sqrt(shape[1]))
    if name == "categorical_focal_crossentropy":
        # (1 - q)^gamma and gamma log q / (1 - q) amplify q's rounding (exp/log of
        # the softmax, the normalisation) by q / (1 - q): up to 1e7 at the clip.
        rt *= _focal_condition(p, o)
    # The loss is a sum of terms of either sign (cosine, hinge): relative to the
    # largest term's scale rather than to a sum that may cancel to ~0.
    check(hl, cl, "loss", rt, max(1.0, float(np.max(np.abs(cl)))))
    # Each gradient entry is a difference of row-level terms (scale (u - U) / s,
    # p (g - G)): a tiny entry is a cancellation, bounded by the row's largest entry.
    gscale = np.max(np.abs(np.asarray(cg, np.float64)), axis=1, keepdims=True)
    for i in range(shape[0]):
        check(hg[i], cg[i], f"grad row {i}", rt, float(gscale[i, 0]) if np.isfinite(gscale[i, 0]) else 1.0)


@pytest.mark.parametrize("name,o", CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_nan_rows(host_lib, rng, name, o):
    t, p, o = inputs(name, (4, 9), np.float64, rng, o)
    if name.startswith("sparse"):
        t[[0, 1, 3]] = 0  # counted rows (an ignored row is 0 whatever its p)
    p[1, 3] = np.nan
    p[3, 8] = np.nan
    go = np.ones(4)
    cl, cg = cpu_call(name, t, p, o, go)
    hl, hg = run_host(host_lib, name, t, p, o, go)
    assert np.isnan(cl[1]) and np.isnan(cl[3]) and np.isfinite(cl[0]), (name, cl)
    check(hl, cl, "loss", 1e-12, 1.0)
    check(hg, cg, "grad", 1e-12, float(np.nanmax(np.abs(cg))) if np.isfinite(np.nanmax(np.abs(cg))) else 1.0)


@pytest.mark.parametrize("name", ["cosine_similarity", "dice", "tversky"])
def test_sums_losses_long_rows_in_segments(host_lib, rng, name):
    # 2^14-element segments as the CPU cuts them: rows of 1, 2 and 3 segments.
    for C in (16384, 16385, 40000):
        o = {"axis": -1} if name != "cosine_similarity" else {}
        t, p, o = inputs(name, (2, C), np.float32, rng, o)
        go = np.array([1.5, -0.5], np.float32)
        cl, cg = cpu_call(name, t, p, o, go)
        hl, hg = run_host(host_lib, name, t, p, o, go)
        rt = K_ULP * ULP[np.dtype(np.float32)] * np.sqrt(16384)
        check(hl, cl, f"loss C={C}", rt, max(1.0, float(np.max(np.abs(cl)))))
        check(hg, cg, f"grad C={C}", rt, float(np.max(np.abs(cg))))


def test_hinge_first_maximum_and_zero_loss(host_lib):
    # Ties of (1 - t) p: the gradient goes to the first; a row at loss 0 gets 0.
    t = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    p = np.array([[0.5, 0.2, 0.5, 0.1], [3.0, 0.5, 0.4, 0.1]])
    go = np.ones(2)
    hl, hg = run_host(host_lib, "categorical_hinge", t, p, {}, go)
    np.testing.assert_array_equal(hl, [1.3, 0.0])
    np.testing.assert_array_equal(hg, [[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    cl, cg = cpu_call("categorical_hinge", t, p, {}, go)
    np.testing.assert_array_equal(hl, cl)
    np.testing.assert_array_equal(hg, cg)


def test_hinge_nan_product_propagates(host_lib):
    # (1 - t) p is NaN where t = 1 and p = inf (row 0), or where p is NaN at a
    # position that is not the largest (row 1): Keras' max propagates it, and
    # both devices now do (fmax on the GPU and x86's max on the CPU dropped it
    # or not by position, giving loss 0 for row 0).
    t = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    p = np.array([[np.inf, 0.5, 0.2], [np.nan, 0.2, 3.0], [0.7, 0.2, 0.1]])
    go = np.ones(3)
    hl, hg = run_host(host_lib, "categorical_hinge", t, p, {}, go)
    cl, cg = cpu_call("categorical_hinge", t, p, {}, go)
    assert np.isnan(hl[:2]).all() and np.isnan(cl[:2]).all(), (hl, cl)
    assert np.isnan(hg[:2]).all() and np.isnan(cg[:2]).all()
    np.testing.assert_allclose(hl[2], 1.5, rtol=1e-15)
    np.testing.assert_array_equal(hl, cl)
    np.testing.assert_array_equal(hg, cg)
