"""The pointwise family (lossx.l1_loss ... poisson_nll_loss) against torch 2.13
float64 autograd: value and the gradients with respect to input AND target."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossx
from lossx import _catalog

from _util import BF16, FLOAT_DTYPES, POINTWISE_CPU_ONLY, close, t64

# torch's kl_div warns that "mean" is not the KL divergence; lossx follows torch anyway.
pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")

REDUCTIONS = ["none", "mean", "sum"]
SHAPES = [(1,), (7,), (33,), (1003,), (3, 5, 7)]


def _normal(rng, shape, s=2.0):
    return rng.standard_normal(shape) * s


def _pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


# case id -> (lossx name, make(rng, shape) -> (x, y, extra kwargs as numpy), options, torch fn)
def _plain(rng, shape):
    return _normal(rng, shape), _normal(rng, shape), {}


def _logits(rng, shape):
    return _normal(rng, shape, 3.0), rng.random(shape), {}


def _logits_w(rng, shape):
    x, y, _ = _logits(rng, shape)
    C = shape[-1]
    return x, y, {"weight": rng.uniform(0.2, 2.0, shape), "pos_weight": rng.uniform(0.5, 3.0, (C,))}


def _logits_wlast(rng, shape):
    x, y, _ = _logits(rng, shape)
    C = shape[-1]
    return x, y, {"weight": rng.uniform(0.2, 2.0, (C,))}


def _margin(rng, shape):
    return _normal(rng, shape), _pm1(rng, shape), {}


def _probs(rng, shape):
    return rng.uniform(0.01, 0.99, shape), rng.random(shape), {}


def _probs_w(rng, shape):
    x, y, _ = _probs(rng, shape)
    return x, y, {"weight": rng.uniform(0.2, 2.0, shape[-1:])}


def _kl(rng, shape):
    return _normal(rng, shape, 1.0), rng.uniform(0.01, 1.0, shape), {}


def _kl_log(rng, shape):
    return _normal(rng, shape, 1.0), _normal(rng, shape, 1.0), {}


def _pois_log(rng, shape):
    return _normal(rng, shape, 0.7), rng.uniform(0.0, 4.0, shape), {}


def _pois(rng, shape):
    return rng.uniform(0.1, 3.0, shape), rng.uniform(0.0, 4.0, shape), {}


def _reduce(l, reduction):
    return l if reduction == "none" else (l.mean() if reduction == "mean" else l.sum())


def _soft_margin_ref(x, y, reduction):
    # torch refuses a gradient for soft_margin_loss's target; autograd of its
    # own formula gives one (the value is checked against F.soft_margin_loss too).
    out = _reduce(torch.log1p(torch.exp(-y * x)), reduction)
    close(out.detach(), F.soft_margin_loss(x.detach(), y.detach(), reduction=reduction), np.float64)
    return out


CASES = {
    "l1": ("l1_loss", _plain, {}, F.l1_loss),
    "mse": ("mse_loss", _plain, {}, F.mse_loss),
    "smooth_l1": ("smooth_l1_loss", _plain, {"beta": 1.3}, F.smooth_l1_loss),
    "smooth_l1_b0": ("smooth_l1_loss", _plain, {"beta": 0.0}, F.smooth_l1_loss),
    "huber": ("huber_loss", _plain, {"delta": 0.7}, F.huber_loss),
    "bce_logits": ("binary_cross_entropy_with_logits", _logits, {}, F.binary_cross_entropy_with_logits),
    "bce_logits_w_pw": ("binary_cross_entropy_with_logits", _logits_w, {}, F.binary_cross_entropy_with_logits),
    "bce_logits_wlast": ("binary_cross_entropy_with_logits", _logits_wlast, {},
                         F.binary_cross_entropy_with_logits),
    "soft_margin": ("soft_margin_loss", _margin, {}, _soft_margin_ref),
    "bce": ("binary_cross_entropy", _probs, {}, F.binary_cross_entropy),
    "bce_w": ("binary_cross_entropy", _probs_w, {}, F.binary_cross_entropy),
    "kl": ("kl_div", _kl, {}, F.kl_div),
    "kl_logt": ("kl_div", _kl_log, {"log_target": True}, F.kl_div),
    "poisson_log": ("poisson_nll_loss", _pois_log, {}, F.poisson_nll_loss),
    "poisson_full": ("poisson_nll_loss", _pois, {"log_input": False, "full": True, "eps": 1e-6},
                     F.poisson_nll_loss),
}


def _torch_ref(tfn, x, y, extra, opts, reduction):
    xt, yt = t64(x, True), t64(y, True)
    kw = {k: t64(v) for k, v in extra.items()}
    out = tfn(xt, yt, reduction=reduction, **kw, **opts)
    return out, xt, yt


def check_case(case, dtype, shape, reduction, rng, go=None):
    name, make, opts, tfn = CASES[case]
    x, y, extra = make(rng, shape)
    x = x.astype(dtype)
    y = y.astype(dtype)
    extra = {k: v.astype(dtype) for k, v in extra.items()}
    fn = getattr(lossx, name)
    loss, (gx, gy) = fn(x, y, reduction=reduction, **extra, **opts, return_grad=True, grad_output=go)
    ref, xt, yt = _torch_ref(tfn, x, y, extra, opts, reduction)
    gref = torch.ones_like(ref) if go is None else (torch.full_like(ref, go) if np.isscalar(go) else t64(go))
    ref.backward(gref)
    n = max(x.size, 1)
    # Reductions add n float32 roundings; allow their growth.
    scale = 1.0 if reduction == "none" else max(1.0, np.sqrt(n) / 8)
    close(loss, ref, dtype, scale, f"{case} loss")
    close(gx, xt.grad, dtype, scale, f"{case} d_input")
    close(gy, yt.grad, dtype, scale, f"{case} d_target")
    assert gx.dtype == np.dtype(dtype) and gy.dtype == np.dtype(dtype)
    acc = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    assert np.asarray(loss).dtype == acc
    if reduction == "none":
        assert loss.shape == x.shape
    else:
        assert np.ndim(loss) == 0
    # Forward only gives the same value.
    loss2 = fn(x, y, reduction=reduction, **extra, **opts)
    np.testing.assert_array_equal(np.asarray(loss2), np.asarray(loss))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_against_torch(case, reduction, dtype, shape, rng):
    check_case(case, dtype, shape, reduction, rng)


@pytest.mark.parametrize("case", ["mse", "smooth_l1", "bce_logits_w_pw", "soft_margin", "bce_w", "kl",
                                  "poisson_full"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_simd_targets_threads(case, reduction, cpu_config, rng):
    check_case(case, np.float32, (1003,), reduction, rng)
    check_case(case, np.float64, (3, 5, 7), reduction, rng)


HALF = [np.float16] + ([BF16] if BF16 is not None else [])


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", ["l1", "mse", "huber", "bce_logits_w_pw", "bce", "soft_margin"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_half(case, dtype, reduction, rng):
    check_case(case, dtype, (33,), reduction, rng)


@pytest.mark.parametrize("case", ["mse", "bce_logits_w_pw", "bce", "poisson_log"])
def test_grad_output(case, rng):
    check_case(case, np.float64, (4, 9), "sum", rng, go=2.5)
    check_case(case, np.float64, (4, 9), "mean", rng, go=np.array(-0.75))
    check_case(case, np.float64, (4, 9), "none", rng, go=rng.standard_normal((4, 9)))
    check_case(case, np.float32, (4, 9), "none", rng, go=1.5)


@pytest.mark.parametrize("case", ["mse", "huber", "bce_logits_w_pw", "bce", "kl"])
def test_bit_identical_across_threads(case, rng):
    name, make, opts, _ = CASES[case]
    x, y, extra = make(rng, (100003,))
    x, y = x.astype(np.float32), y.astype(np.float32)
    extra = {k: v.astype(np.float32) for k, v in extra.items()}
    fn = getattr(lossx, name)
    old = lossx.get_num_threads()
    outs = []
    try:
        for nt in (1, 2, 3):
            lossx.set_num_threads(nt)
            m, (gx, gy) = fn(x, y, **extra, **opts, return_grad=True)
            s = fn(x, y, reduction="sum", **extra, **opts)
            outs.append((np.asarray(m).tobytes(), np.asarray(s).tobytes(), gx.tobytes(), gy.tobytes()))
    finally:
        lossx.set_num_threads(old)
    assert outs[0] == outs[1] == outs[2]


@pytest.mark.parametrize("name", _catalog.names("pointwise"))
def test_empty(name):
    args = [np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)]
    if name in ("gaussian_nll_loss", "margin_ranking_loss"):
        args.append(np.ones((0, 3), np.float32))  # var / the +-1 target
    ngrad = len(_catalog.CATALOG[name][1])
    fn = getattr(lossx, name)
    assert np.isnan(fn(*args, reduction="mean"))
    assert fn(*args, reduction="sum") == 0
    loss, g = fn(*args, reduction="none", return_grad=True)
    g = g if ngrad > 1 else (g,)  # one differentiable input: a bare array
    assert len(g) == ngrad
    assert loss.shape == (0, 3) and all(gi.shape == (0, 3) for gi in g)
    m, g = fn(*args, reduction="mean", return_grad=True)
    g = g if ngrad > 1 else (g,)
    assert np.isnan(m) and all(gi.shape == (0, 3) for gi in g)


def test_catalog_matches_kernel_list():
    assert list(lossx._core.pointwise_names) == _catalog.names("pointwise")
    for name in _catalog.names("pointwise"):
        assert name in lossx.__all__


def test_worked_values():
    f = np.float32
    assert lossx.l1_loss(np.array([2, 3], f), np.array([1, 0], f)) == pytest.approx(2.0)
    assert lossx.mse_loss(np.array([2, 3], f), np.array([1, 0], f)) == pytest.approx(5.0)
    x = np.full((10, 64), 1.5, f)
    v = lossx.binary_cross_entropy_with_logits(x, np.ones_like(x), pos_weight=np.ones(64, f))
    assert v == pytest.approx(0.2014, abs=1e-4)
    _, (g, _) = lossx.binary_cross_entropy_with_logits(x, np.ones_like(x), reduction="sum", return_grad=True)
    np.testing.assert_allclose(g, 1 / (1 + np.exp(-1.5)) - 1, rtol=1e-6)


def test_extremes_match_torch(cpu_config):
    # Large logits, probabilities exactly 0 and 1 (the -100 clamp), both dtypes.
    for dt in (np.float32, np.float64):
        x = np.array([-200, -30, -1e-3, 0, 1e-3, 30, 200], dt)
        y = np.array([0, 1, 0.5, 1, 0, 0.2, 1], dt)
        check_vals = lossx.binary_cross_entropy_with_logits(x, y, reduction="none")
        ref = F.binary_cross_entropy_with_logits(t64(x), t64(y), reduction="none")
        close(check_vals, ref, dt)
        # 1e-40 is a float32 denormal: log = -92.1, inside the clamp.
        p = np.array([0, 1, 0, 1, 1e-30, 0.5, 1 - 1e-7, 1e-40, 1e-50], dt)
        q = np.array([1, 0, 0, 1, 1, 0.5, 0.3, 1, 0.5], dt)
        loss, (gx, gy) = lossx.binary_cross_entropy(p, q, reduction="none", return_grad=True)
        pt, qt = t64(p, True), t64(q, True)
        r = F.binary_cross_entropy(pt, qt, reduction="none")
        r.sum().backward()
        close(loss, r, dt)
        close(gy, qt.grad, dt)
        fin = np.isfinite(pt.grad.numpy())
        np.testing.assert_allclose(gx[fin], pt.grad.numpy()[fin], rtol=1e-5 if dt == np.float32 else 1e-10)


# ---- bad inputs: one test per rule ------------------------------------------------------------


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4,\)"):
        lossx.mse_loss(np.zeros((3, 4)), np.zeros(4))


def test_non_float_input():
    with pytest.raises(TypeError, match="input"):
        lossx.l1_loss(np.zeros(3, np.int64), np.zeros(3))


def test_non_float_target():
    with pytest.raises(TypeError, match="target"):
        lossx.l1_loss(np.zeros(3), np.zeros(3, np.int32))


def test_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        lossx.mse_loss(np.zeros(3), np.zeros(3), reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        lossx.mse_loss(np.zeros(3), np.zeros(3), reduction="batchmean")


def test_bce_input_outside_unit_interval():
    with pytest.raises(ValueError, match=r"input .*element 1 is 1.5"):
        lossx.binary_cross_entropy(np.array([0.5, 1.5]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="input .*element 0"):
        lossx.binary_cross_entropy(np.array([np.nan, 0.5]), np.array([0.0, 1.0]))


def test_bce_target_outside_unit_interval():
    with pytest.raises(ValueError, match=r"target .*element 1 is -0.5"):
        lossx.binary_cross_entropy(np.array([0.5, 0.5]), np.array([0.0, -0.5]))


def test_soft_margin_target_pm1():
    with pytest.raises(ValueError, match=r"-1 and \+1"):
        lossx.soft_margin_loss(np.zeros(3), np.array([1.0, 0.0, -1.0]))


@pytest.mark.parametrize("dt", FLOAT_DTYPES)
@pytest.mark.parametrize("rule", [0, 1, 2])
def test_value_rule_scan_finds_first_bad_element(rng, dt, rule):
    """The value-rule scan (C++ for float32/64, NumPy for the half types) names
    the first bad element wherever it lies: first block, later blocks, the last
    element, with NaN and +-inf counted bad; clean arrays give -1."""
    from lossx.pointwise import _first_invalid
    code = {np.dtype(np.float32): 0, np.dtype(np.float64): 1}.get(np.dtype(dt))
    if code is None:
        code = 2 if np.dtype(dt) == np.float16 else 3
    n = 3 * 4096 + 5
    good = {0: lambda: np.where(rng.random(n) < 0.5, -1.0, 1.0), 1: lambda: rng.random(n),
            2: lambda: (rng.random(n) < 0.5).astype(np.float64)}[rule]().astype(dt)
    assert _first_invalid(good, code, rule) == -1
    for pos in (0, 17, 4095, 4096, 9000, n - 1):
        for bad in (0.5, np.nan, np.inf, -np.inf, 2.0) + ((-1.0,) if rule == 2 else ()):
            if rule == 1 and bad == 0.5:
                bad = -0.25
            v = good.copy()
            v[pos] = bad
            if pos + 3 < n:
                v[pos + 3] = bad  # a second bad element after the first
            assert _first_invalid(v, code, rule) == pos, (pos, bad)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_value_rule_scan_first_bad_across_threads(rng, threads, dt):
    # 40 blocks of 4096: several per thread. A bad value in a late block (the
    # second thread's) and one in an earlier block: the earlier one is named,
    # whatever the thread count and whichever thread finishes first.
    from lossx.pointwise import _first_invalid
    code = 0 if dt == np.float32 else 1
    n = 40 * 4096 + 3
    v = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(dt)
    assert _first_invalid(v, code, 0) == -1
    v[35 * 4096 + 7] = 0.0
    assert _first_invalid(v, code, 0) == 35 * 4096 + 7
    v[6 * 4096 + 100] = np.nan
    assert _first_invalid(v, code, 0) == 6 * 4096 + 100
    v[n - 1] = 3.0
    assert _first_invalid(v, code, 0) == 6 * 4096 + 100


def test_smooth_l1_negative_beta():
    with pytest.raises(ValueError, match="beta"):
        lossx.smooth_l1_loss(np.zeros(3), np.zeros(3), beta=-0.1)


def test_huber_nonpositive_delta():
    with pytest.raises(ValueError, match="delta"):
        lossx.huber_loss(np.zeros(3), np.zeros(3), delta=0.0)


def test_weight_not_broadcastable():
    with pytest.raises(ValueError, match=r"pos_weight.*\(3,\).*\(2, 4\)"):
        lossx.binary_cross_entropy_with_logits(np.zeros((2, 4)), np.zeros((2, 4)), pos_weight=np.ones(3))
    with pytest.raises(ValueError, match="weight"):
        lossx.binary_cross_entropy(np.full((2, 4), 0.5), np.zeros((2, 4)), weight=np.ones((3, 1)))


def test_grad_output_shape():
    with pytest.raises(ValueError, match="grad_output"):
        lossx.mse_loss(np.zeros((2, 3)), np.zeros((2, 3)), reduction="none", return_grad=True,
                       grad_output=np.ones(3))


def test_grad_output_needs_return_grad():
    with pytest.raises(ValueError, match="return_grad"):
        lossx.mse_loss(np.zeros(3), np.zeros(3), grad_output=2.0)


def test_poisson_negative_eps():
    with pytest.raises(ValueError, match="eps"):
        lossx.poisson_nll_loss(np.ones(3), np.ones(3), eps=-1.0)


def test_kl_batchmean():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 5)), rng.random((4, 5))
    v = lossx.kl_div(x, y, reduction="batchmean")
    ref = F.kl_div(t64(x), t64(y), reduction="batchmean")
    close(v, ref, np.float64)
    _, (gx, _) = lossx.kl_div(x, y, reduction="batchmean", return_grad=True)
    close(gx, -t64(y) / 4, np.float64)


def _fake_cuda_call():
    # Fake device pointers: only reached where nothing will dereference them.
    lossx._core.pointwise(1, 0, 0, 1, 4, 64, 64, None, 1, None, 1, 1.0, False, True, False, 1, 0.0,
                          64, None, None, None, None, None, -1.0, 2.0, 1.0, 0, 1.0)


@pytest.mark.skipif(lossx._core.cuda_compiled(), reason="this build has the CUDA backend")
def test_cuda_request_without_cuda_build():
    with pytest.raises(RuntimeError, match="built without CUDA"):
        _fake_cuda_call()


@pytest.mark.skipif(not lossx._core.cuda_compiled() or lossx._core.cuda_available(),
                    reason="needs a CUDA build on a machine without a usable GPU")
def test_cuda_request_without_gpu_is_a_clean_error():
    # The CUDA runtime finds no device: a RuntimeError naming CUDA, no crash.
    with pytest.raises(RuntimeError, match="CUDA"):
        _fake_cuda_call()


class _FakeGpuArray:
    """Looks like a GPU array to lossx (exposes __cuda_array_interface__) but is never read."""
    __cuda_array_interface__ = {"shape": (4,), "typestr": "<f4", "data": (64, False), "version": 3}
    shape, ndim, dtype = (4,), 1, np.dtype(np.float32)


@pytest.mark.skipif(lossx._core.cuda_compiled() and lossx._core.cuda_available(), reason="a GPU is usable here")
def test_gpu_array_without_usable_cuda_says_so():
    with pytest.raises(RuntimeError, match="CUDA|GPU"):
        lossx.mse_loss(_FakeGpuArray(), _FakeGpuArray())


@pytest.mark.skipif(lossx._core.cuda_compiled() and lossx._core.cuda_available(), reason="a GPU is usable here")
def test_gpu_arrays_of_every_new_cuda_path_without_usable_cuda_say_so():
    # Row mode (multilabel_soft_margin_loss, lossx.keras) and the third operand
    # (gaussian_nll_loss, margin_ranking_loss) now take GPU arrays; without a
    # usable GPU they fail cleanly before any array is read.
    g = _FakeGpuArray
    for call in (lambda: lossx.multilabel_soft_margin_loss(g(), g()), lambda: lossx.keras.log_cosh(g(), g()),
                 lambda: lossx.gaussian_nll_loss(g(), g(), g()), lambda: lossx.margin_ranking_loss(g(), g(), g())):
        with pytest.raises(RuntimeError, match="CUDA|GPU"):
            call()


def test_gpu_target_with_numpy_input_raises():
    with pytest.raises(ValueError, match="target is a GPU array but the input is a NumPy array"):
        lossx.mse_loss(np.zeros(4, np.float32), _FakeGpuArray())


@pytest.mark.skipif(not lossx._core.cuda_compiled(), reason="no CUDA backend in this build")
def test_every_pointwise_loss_has_a_cuda_functor():
    # A loss added to csrc/lossx/pointwise_losses.def builds without a CUDA functor
    # (GPU arrays then get "has no CUDA kernel yet"); this test is what says so in
    # a CUDA build. Add the functor to cuda/pointwise.cu (see the notes at its top).
    # The known gap (tests/_util.py) must shrink, never silently grow.
    known_cpu_only = POINTWISE_CPU_ONLY
    # Every kernel code, the Keras element-wise ones ("keras.*") included.
    missing = {n for n in lossx._core.pointwise_codes if n not in lossx._core.pointwise_cuda_names}
    assert missing == known_cpu_only, (f"no CUDA functor in cuda/pointwise.cu for {sorted(missing - known_cpu_only)}; "
                                       f"now on the GPU, drop from the list: {sorted(known_cpu_only - missing)}")


@pytest.mark.parametrize("wshape", [(3, 1, 1), (5, 1), (1, 5, 7), ()], ids=str)
def test_weight_broadcast_shapes(wshape, rng):
    # Trailing-block weights are passed with a period; others are materialised.
    x, y = rng.standard_normal((3, 5, 7)), rng.random((3, 5, 7))
    w = rng.uniform(0.5, 2.0, wshape)
    pw = rng.uniform(0.5, 2.0, (7,))
    for red in REDUCTIONS:
        loss, (gx, gy) = lossx.binary_cross_entropy_with_logits(x, y, w, pos_weight=pw, reduction=red,
                                                                return_grad=True, grad_output=1.0)
        xt, yt = t64(x, True), t64(y, True)
        r = F.binary_cross_entropy_with_logits(xt, yt, t64(w), pos_weight=t64(pw), reduction=red)
        r.backward(torch.ones_like(r))
        close(loss, r, np.float64)
        close(gx, xt.grad, np.float64)
        close(gy, yt.grad, np.float64)


def test_mixed_float_dtypes_and_strides(rng):
    # The target is cast to the input's dtype; its gradient comes back in its own dtype.
    x = rng.standard_normal((6, 4)).astype(np.float32).T  # not C-contiguous
    y = rng.standard_normal((4, 6))
    loss, (gx, gy) = lossx.huber_loss(x, y, delta=0.5, return_grad=True)
    assert gx.dtype == np.float32 and gy.dtype == np.float64
    xt, yt = t64(x, True), t64(y.astype(np.float32), True)
    r = F.huber_loss(xt, yt, delta=0.5)
    r.backward()
    close(loss, r, np.float32)
    close(gx, xt.grad, np.float32)
    close(gy, yt.grad, np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][0] != "binary_cross_entropy"])
def test_nan_propagates_like_torch(case, dtype, rng):
    # NaN in input and target lands where torch puts it (value and both gradients).
    # (binary_cross_entropy raises for NaN instead: test_bce_*_outside_unit_interval.)
    name, make, opts, tfn = CASES[case]
    x, y, extra = make(rng, (9,))
    x, y = x.astype(dtype), y.astype(dtype)
    x[2] = np.nan
    if name != "soft_margin_loss":  # targets must be +-1 there
        y[5] = np.nan
    extra = {k: v.astype(dtype) for k, v in extra.items()}
    loss, (gx, gy) = getattr(lossx, name)(x, y, reduction="none", **extra, **opts, return_grad=True)
    ref, xt, yt = _torch_ref(tfn, x, y, extra, opts, "none")
    ref.sum().backward()
    for what, a, b in (("loss", loss, ref), ("d_input", gx, xt.grad), ("d_target", gy, yt.grad)):
        b = b.detach().numpy()
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=what)
        # Where a NaN went in but a number comes out (l1's gradient is 0 there), it is torch's.
        np.testing.assert_allclose(np.asarray(a, np.float64)[[2, 5]], b[[2, 5]], rtol=1e-5, atol=1e-6,
                                   err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_exp_overflow_matches_torch(dtype, cpu_config):
    # exp of a large input is inf, as in torch, on every SIMD target (Highway's
    # Exp alone wraps to 0 or NaN past 177.8 / 1433).
    # (y x stays finite: exp(x) - y x with both infinite is nan or inf depending on FMA.)
    big = np.array([50, 88.5, 89, 120, 177.9, 700, 1500, 1e4, 1e30, -1e30, 1e38], dtype)
    t = np.linspace(0.5, 3, big.size).astype(dtype)
    for name, x, y, opts in (("poisson_nll_loss", big, t, {}), ("kl_div", np.zeros_like(big), big,
                                                                 {"log_target": True})):
        loss, (gx, gy) = getattr(lossx, name)(x, y, reduction="none", return_grad=True, **opts)
        xt, yt = t64(x, True), t64(y, True)
        r = getattr(F, name)(xt.to(torch.float32 if dtype == np.float32 else torch.float64),
                             yt.to(torch.float32 if dtype == np.float32 else torch.float64), reduction="none",
                             **opts)
        r.sum().backward()
        for what, a, b in (("loss", loss, r), ("d_input", gx, xt.grad), ("d_target", gy, yt.grad)):
            b = b.detach().double().numpy()
            np.testing.assert_array_equal(np.isinf(a), np.isinf(b), err_msg=f"{name} {what}")
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{name} {what}")
            fin = np.isfinite(b)
            np.testing.assert_allclose(a[fin], b[fin], rtol=1e-5 if dtype == np.float32 else 1e-12,
                                       err_msg=f"{name} {what}")


@pytest.mark.parametrize("reduction", ["none", "sum", "batchmean"])
def test_zero_dim(reduction):
    x, y = np.array(0.3), np.array(0.5)
    loss, (gx, gy) = lossx.kl_div(x, y, reduction=reduction, return_grad=True)
    xt, yt = t64(x, True), t64(y, True)
    r = F.kl_div(xt, yt, reduction=reduction)  # batchmean of a 0-d input is its sum
    r.backward()
    assert np.shape(loss) == () and gx.shape == gy.shape == ()
    close(loss, r, np.float64)
    close(gx, xt.grad, np.float64)
    close(gy, yt.grad, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_unit_accuracy(dtype, cpu_config):
    """The softplus family's own log1p on [0, 1] (one division and a short
    polynomial, vecmath-inl.h) stays within 2 ulp of long double log1pl; the
    shared ExpNegAbs's log1p(exp(-|z|)) and sigmoid, whose exp and single
    division add their own rounding, within 4 ulp. Its highest coefficient off by 0.01
    already shows as about 25 ulp (float32) near t = 1."""
    tiny = 1e-30 if dtype == np.float32 else 1e-300
    t = np.concatenate([np.linspace(0, 1, 1_000_003, dtype=dtype),
                        np.geomspace(tiny, 1, 100_001).astype(dtype), np.array([0, 1], dtype)])
    assert lossx._core._log1p_unit_max_ulp(t, 0) <= 2.0
    z = np.concatenate([np.linspace(-100, 100, 1_000_001).astype(dtype),
                        np.random.default_rng(5).standard_normal(100_003).astype(dtype)])
    assert lossx._core._log1p_unit_max_ulp(z, 1) <= 4.0
    assert lossx._core._log1p_unit_max_ulp(z, 2) <= 4.0
