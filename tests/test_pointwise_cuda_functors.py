"""cuda/pointwise.cu's device functors, compiled for the HOST by nvcc
(tests/pw_functors_host.cu: the same source, no kernels), against lossx's CPU
kernels on the same inputs.

This checks the GPU path's formulas (value, both gradients, weights and
grad_output, NaN propagation, BCE's -100 clamps and float32 denormals, the value
rules of binary_cross_entropy and soft_margin_loss) on machines without a GPU.
The kernels' memory traffic, reductions and streams are tested on a GPU by
tests/cuda/test_pointwise_cuda.py. Skipped where nvcc is not installed; a
compile error fails the test.
"""
import ctypes

import numpy as np
import pytest

import lossx

from _util import NVCC, build_host_lib
from test_pointwise import CASES

pytestmark = [
    pytest.mark.skipif(NVCC is None, reason="nvcc is not installed"),
    pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning"),
]

# Host libm (glibc's expf/logf/log1pf, <= 1 ulp) against Highway's and lossx's
# vector exp/log (<= 2 ulp): the tolerance of tests/cuda/test_pointwise_cuda.py,
# 32 ulps of the compute type relative to the array's largest magnitude.
K = 32
ULP = {np.dtype(np.float32): 2.0**-23, np.dtype(np.float64): 2.0**-52}
DEFAULT_BETA = {"smooth_l1_loss": 1.0, "huber_loss": 1.0, "poisson_nll_loss": 1e-8}
BETA_KEY = {"smooth_l1_loss": "beta", "huber_loss": "delta", "poisson_nll_loss": "eps"}
CODE = dict(lossx._core.pointwise_codes)


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    lib = build_host_lib(tmp_path_factory.mktemp("pw_host"), "pw_functors_host.cu")
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.lossx_pw_host.restype = ctypes.c_int
    dbl = ctypes.c_double
    c_int = ctypes.c_int
    lib.lossx_pw_host.argtypes = [c_int, c_int, dbl, c_int, c_int, c_int, dbl, dbl, dbl, c_int, dbl, c_int, c_int,
                                  i64, p, p, p, i64, p, i64, p, p, p, p, p, ctypes.POINTER(i64)]
    return lib


def run_host(lib, name, x, y, weight=None, pos_weight=None, grad_output=None, **opts):
    """What the CUDA kernel computes per element for reduction="none": (loss, d_input, d_target, bad)."""
    dt = x.dtype
    shape = x.shape

    def flat(a):
        return None if a is None else np.ascontiguousarray(np.broadcast_to(np.asarray(a, dt), shape)).ravel()

    xf, yf, w, pw, go = flat(x), flat(y), flat(weight), flat(pos_weight), flat(grad_output)
    n = xf.size
    loss, gx, gy, gz = np.empty(n, dt), np.empty(n, dt), np.empty(n, dt), np.empty(n, dt)
    bad = (ctypes.c_int64 * 2)()
    ptr = lambda a: None if a is None else a.ctypes.data  # noqa: E731
    beta = float(opts.get(BETA_KEY.get(name, "beta"), opts.get("beta", DEFAULT_BETA.get(name, 1.0))))
    alpha = opts.get("alpha", 0.25 if name == "sigmoid_focal_loss" else -1.0)
    rc = lib.lossx_pw_host(CODE[name], int(dt == np.float64), beta, int(opts.get("log_target", False)),
                           int(opts.get("log_input", True)), int(opts.get("full", False)),
                           -1.0 if alpha is None else float(alpha), float(opts.get("gamma", 2.0)),
                           float(opts.get("margin", 1.0)), int(opts.get("from_logits", False)),
                           float(opts.get("label_smoothing", 0.0)), int(opts.get("class_balancing", False)),
                           int(opts.get("binary_labels", False)), n, ptr(xf), ptr(yf), ptr(w), n, ptr(pw), n, ptr(go),
                           ptr(loss), ptr(gx), ptr(gy), ptr(gz), bad)
    assert rc == 0, f"{name}: no CUDA functor (rc {rc})"
    run_host.gz = gz.reshape(shape)  # d loss / d third operand, for the tests that have one
    return loss.reshape(shape), gx.reshape(shape), gy.reshape(shape), (bad[0], bad[1])


def check(a, c, what, dtype):
    a = np.asarray(a, np.float64)
    c = np.asarray(c, np.float64)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(c), err_msg=what + ": NaN pattern")
    np.testing.assert_array_equal(np.isinf(a), np.isinf(c), err_msg=what + ": inf pattern")
    np.testing.assert_array_equal(a[np.isinf(c)], c[np.isinf(c)], err_msg=what + ": infinities")
    fin = np.isfinite(c)
    scale = float(np.max(np.abs(c[fin]))) if fin.any() else 1.0
    rt = K * ULP[np.dtype(dtype)]
    np.testing.assert_allclose(a[fin], c[fin], rtol=rt, atol=rt * scale + 1e-300, err_msg=what)


def compare(lib, name, x, y, extra, opts, dtype, go, what):
    fn = getattr(lossx, name)
    cl, (cgx, cgy) = fn(x, y, reduction="none", **extra, **opts, return_grad=True, grad_output=go)
    hl, hgx, hgy, _ = run_host(lib, name, x, y, grad_output=go, **extra, **opts)
    check(hl, cl, what + " loss", dtype)
    check(hgx, cgx, what + " d_input", dtype)
    check(hgy, cgy, what + " d_target", dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(CASES))
def test_functor_matches_cpu(host_lib, case, dtype, rng):
    name, make, opts, _ = CASES[case]
    for shape in ((1003,), (3, 5, 7)):
        x, y, extra = make(rng, shape)
        x, y = x.astype(dtype), y.astype(dtype)
        extra = {k: v.astype(dtype) for k, v in extra.items()}
        go = rng.uniform(-1.5, 1.5, shape).astype(dtype)
        compare(host_lib, name, x, y, extra, opts, dtype, go, f"{case} {shape}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][0] != "binary_cross_entropy"])
def test_functor_nan_like_cpu(host_lib, case, dtype, rng):
    name, make, opts, _ = CASES[case]
    x, y, extra = make(rng, (37,))
    x, y = x.astype(dtype), y.astype(dtype)
    x[[2, 20]] = np.nan
    if name != "soft_margin_loss":
        y[[5, 20]] = np.nan
    extra = {k: v.astype(dtype) for k, v in extra.items()}
    compare(host_lib, name, x, y, extra, opts, dtype, None, case)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_functor_extremes(host_lib, dtype):
    x = np.array([-200, -90, -30, -1e-3, 0, 1e-3, 30, 90, 200], dtype)
    y = np.array([0, 1, 1, 0.5, 1, 0, 0.2, 0, 1], dtype)
    compare(host_lib, "binary_cross_entropy_with_logits", x, y, {}, {}, dtype, None, "bce logits")
    compare(host_lib, "binary_cross_entropy_with_logits", x, y, {"pos_weight": np.full(9, 2.5, dtype)}, {}, dtype,
            None, "bce logits pos_weight")
    compare(host_lib, "soft_margin_loss", x, np.where(y > 0.5, 1, -1).astype(dtype), {}, {}, dtype, None,
            "soft margin")
    p = np.array([0, 1, 0, 1, 1e-30, 0.5, 1 - 1e-7, 1e-40, 1e-50], dtype)
    q = np.array([1, 0, 0, 1, 1, 0.5, 0.3, 1, 0.5], dtype)
    compare(host_lib, "binary_cross_entropy", p, q, {}, {}, dtype, None, "bce")
    loss = run_host(host_lib, "binary_cross_entropy", p, q)[0]
    assert abs(loss[7] - 92.1034) < 1e-3  # a float32 denormal probability is not flushed to 0
    assert loss[0] == 100 and loss[1] == 100  # log(0) clamped at -100
    big = np.array([-1e4, -700, 700, 1e4], dtype)  # exp overflows / underflows in both dtypes
    for nm, opts in (("kl_div", {"log_target": True}), ("poisson_nll_loss", {})):
        compare(host_lib, nm, big, np.array([0.5, -2, 0.25, 3], dtype), {}, opts, dtype, None, nm + " big")


# Losses whose CPU wrappers are not in test_pointwise.CASES (another return shape,
# or no torch.nn.functional reference): (name, make(rng, shape), options).
def _pm1(rng, shape):
    return rng.normal(0, 1.5, shape), np.where(rng.random(shape) < 0.5, -1.0, 1.0)


def _focal(rng, shape):
    x = rng.normal(0, 3, shape)
    x.reshape(-1)[:3] = [-60.0, 0.0, 60.0]  # saturated sigmoids, and the kink-free middle
    return x, rng.uniform(0, 1, shape)


EXTRA_CASES = {
    "hinge_embedding": ("hinge_embedding_loss", _pm1, {}),
    "hinge_embedding_m": ("hinge_embedding_loss", _pm1, {"margin": 0.3}),
    "focal": ("sigmoid_focal_loss", _focal, {}),
    "focal_g0_noalpha": ("sigmoid_focal_loss", _focal, {"gamma": 0.0, "alpha": None}),
    "focal_g1.5": ("sigmoid_focal_loss", _focal, {"gamma": 1.5, "alpha": 0.7}),
    "focal_g3": ("sigmoid_focal_loss", _focal, {"gamma": 3.0}),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(EXTRA_CASES))
@pytest.mark.parametrize("nan", [False, True], ids=["finite", "nan"])
def test_extra_functors_match_cpu(host_lib, case, dtype, nan, rng):
    name, make, opts = EXTRA_CASES[case]
    x, y = (a.astype(dtype) for a in make(rng, (1003,)))
    if nan:
        x[[2, 20]] = np.nan
        if name != "hinge_embedding_loss":  # targets must be +-1 there
            y[[5, 20]] = np.nan
    go = rng.uniform(-1.5, 1.5, x.shape).astype(dtype)
    fn = getattr(lossx, name)
    reduction = {"reduction": "none"}
    cl, grads = fn(x, y, **reduction, **opts, return_grad=True, grad_output=go)
    cgx, cgy = (grads, np.zeros_like(x)) if name == "hinge_embedding_loss" else grads
    hl, hgx, hgy, bad = run_host(host_lib, name, x, y, grad_output=go, **opts)
    check(hl, cl, case + " loss", dtype)
    check(hgx, cgx, case + " d_input", dtype)
    check(hgy, cgy, case + " d_target", dtype)
    assert bad == (-1, -1)


def test_hinge_embedding_target_rule(host_lib):
    t = np.array([1, -1, 1, 0.5, -1, np.nan], np.float32)
    assert run_host(host_lib, "hinge_embedding_loss", np.zeros(6, np.float32), t)[3] == (-1, 3)
    with pytest.raises(ValueError, match="element 3 is 0.5"):
        lossx.hinge_embedding_loss(np.zeros(6, np.float32), t)


def test_value_rules_flag_the_first_bad_element(host_lib):
    x = np.full(9, 0.5, np.float32)
    y = np.full(9, 0.25, np.float32)
    x[[4, 7]] = [1.5, np.nan]
    y[[1, 6]] = [-0.5, 2.0]
    assert run_host(host_lib, "binary_cross_entropy", x, y)[3] == (4, 1)
    x[[4, 7]] = [0.0, 1.0]
    assert run_host(host_lib, "binary_cross_entropy", x, y)[3] == (-1, 1)
    t = np.array([1, -1, 1, 0.5, -1, np.nan], np.float32)
    assert run_host(host_lib, "soft_margin_loss", np.zeros(6, np.float32), t)[3] == (-1, 3)
    # The CPU path's checks agree on what is bad.
    with pytest.raises(ValueError, match="element 3 is 0.5"):
        lossx.soft_margin_loss(np.zeros(6, np.float32), t)
    assert run_host(host_lib, "mse_loss", x, y)[3] == (-1, -1)


# ---- The Keras element-wise losses (lossx.keras; the kernel's row mode on the
# GPU). With rows of one element the CPU API's per-row loss and gradient are the
# element's, which is what the functor computes.
from test_keras_elementwise import NAMES as KERAS_NAMES, OPTIONS as KERAS_OPTIONS, make as keras_make, opts_of

KERAS_OP = {"mean_squared_error": "mse_loss", "huber": "huber_loss"}
KERAS_CASES = [(n, {}) for n in KERAS_NAMES] + [(n, o) for n, o in KERAS_OPTIONS if "axis" not in o]


def keras_host_opts(name, o, t):
    """The kernel options lossx.keras passes for these Keras options."""
    return {"beta": o.get("delta", 1.0), "from_logits": o.get("from_logits", False),
            "label_smoothing": o.get("label_smoothing", 0.0),
            "class_balancing": o.get("apply_class_balancing", False), "alpha": o.get("alpha", 0.25),
            "gamma": o.get("gamma", 2.0),
            "binary_labels": name in ("hinge", "squared_hinge") and bool(np.all((t == 0) | (t == 1)))}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("nan", [False, True], ids=["finite", "nan"])
@pytest.mark.parametrize("name,o", KERAS_CASES, ids=[f"{n}-{o}" for n, o in KERAS_CASES])
def test_keras_functors_match_cpu(host_lib, name, o, dtype, nan, rng):
    t, p = keras_make(name, (1001,), dtype, rng, o, smooth=o.get("soft", False))
    if nan:
        p[[2, 20]] = np.nan
        t[[5, 20]] = np.nan
    go = rng.uniform(-1.5, 1.5, p.shape).astype(dtype)
    cl, cg = getattr(lossx.keras, name)(t[:, None], p[:, None], **opts_of(o), return_grad=True, grad_output=go)
    op = KERAS_OP.get(name, "keras." + name)
    hl, hgx, hgy, bad = run_host(host_lib, op, p, t, grad_output=go, **keras_host_opts(name, o, t))
    check(hl, cl, f"{name} loss", dtype)
    check(hgx, cg[:, 0], f"{name} d_y_pred", dtype)
    if op.startswith("keras."):
        assert not np.any(hgy)  # Keras gives y_true no gradient
    assert bad == (-1, -1)


# ---- The losses with a third operand: gaussian_nll_loss (var, differentiable)
# and margin_ranking_loss (the +-1 target). The harness passes it as pw.
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("nan", [False, True], ids=["finite", "nan"])
@pytest.mark.parametrize("opts", [{}, {"full": True}, {"eps": 0.5}], ids=str)
def test_gaussian_nll_functor_matches_cpu(host_lib, opts, nan, dtype, rng):
    shape = (1001,)
    x, y = rng.normal(0, 2, shape).astype(dtype), rng.normal(0, 2, shape).astype(dtype)
    var = rng.uniform(0, 3, shape).astype(dtype)
    var[:7] = [0, 1e-9, 0.25, 0.5, 0.7, 1e-3, 2.0]  # below and around the clamp
    if nan:
        x[[2, 20]] = np.nan
        y[[5, 20]] = np.nan
        var[[9, 30]] = np.nan
    go = rng.uniform(-1.5, 1.5, shape).astype(dtype)
    cl, (cgx, cgy, cgv) = lossx.gaussian_nll_loss(x, y, var, reduction="none", return_grad=True, grad_output=go,
                                                 **opts)
    hl, hgx, hgy, bad = run_host(host_lib, "gaussian_nll_loss", x, y, pos_weight=var, grad_output=go,
                                 beta=opts.get("eps", 1e-6), full=opts.get("full", False))
    check(hl, cl, "loss", dtype)
    check(hgx, cgx, "d_input", dtype)
    check(hgy, cgy, "d_target", dtype)
    check(run_host.gz, cgv, "d_var", dtype)
    assert bad == (-1, -1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("margin", [0.0, 0.7])
def test_margin_ranking_functor_matches_cpu(host_lib, margin, dtype, rng):
    shape = (1001,)
    x1, x2 = rng.normal(0, 1, shape).astype(dtype), rng.normal(0, 1, shape).astype(dtype)
    x1[[2, 20]] = np.nan
    x2[:3] = x1[:3] + np.array([margin, -margin, 0], dtype)  # at and near the hinge
    t = np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(dtype)
    go = rng.uniform(-1.5, 1.5, shape).astype(dtype)
    cl, (cg1, cg2) = lossx.margin_ranking_loss(x1, x2, t, margin, "none", return_grad=True, grad_output=go)
    hl, hg1, hg2, bad = run_host(host_lib, "margin_ranking_loss", x1, x2, pos_weight=t, grad_output=go,
                                 margin=margin)
    check(hl, cl, "loss", dtype)
    check(hg1, cg1, "d_input1", dtype)
    check(hg2, cg2, "d_input2", dtype)
    assert not np.any(run_host.gz)  # the target is not differentiable


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_tf_sigmoid_ce_functor_matches_cpu(host_lib, dtype, rng):
    # lossx.tf.sigmoid_cross_entropy_with_logits is the kernel's "tf." code on both devices.
    x = (rng.standard_normal(1001) * 4).astype(dtype)
    z = rng.random(1001).astype(dtype)
    x[:8] = [np.inf, -np.inf, np.nan, 0, 90, -90, 800, -800]
    z[:8] = [1, 0.5, 0.3, 0.5, 1, 0, 0.2, 0.7]
    z[20] = np.nan
    go = rng.uniform(-1.5, 1.5, x.shape).astype(dtype)
    cl, cg = lossx.tf.sigmoid_cross_entropy_with_logits(labels=z, logits=x, return_grad=True, grad_output=go)
    hl, hgx, hgy, bad = run_host(host_lib, "tf.sigmoid_cross_entropy_with_logits", x, z, grad_output=go)
    check(hl, cl, "loss", dtype)
    check(hgx, cg, "d_logits", dtype)
    assert not np.any(hgy) and bad == (-1, -1)
    assert np.isnan(cl[0])  # tf's form at a +inf logit with label 1: inf - inf
