"""GPU pointwise family (cuda/pointwise.cu) against the CPU path on the same inputs.

Skipped (not failed) where lossx has no CUDA, no GPU is usable, or neither
CuPy nor a CUDA build of PyTorch is installed. Run on a GPU machine with
    python -m pytest -q tests/cuda
(add -m "not large_memory" to leave out the > 2^31-element case).
"""
import numpy as np
import pytest

import lossx
from lossx import _core

from _util import BF16, POINTWISE_OWN_SIGNATURE

if not (_core.cuda_compiled() and _core.cuda_available()):
    pytest.skip("lossx CUDA backend not compiled or no usable GPU", allow_module_level=True)

from _gpu_util import LIBS, cp, lib, same_ns, to_dev, to_np, torch  # noqa: E402,F401

if not LIBS:
    pytest.skip("neither CuPy nor CUDA PyTorch is usable", allow_module_level=True)

from test_pointwise import CASES  # noqa: E402  (the CPU tests' cases: name, make(rng, shape), options, torch fn)

pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")

F32, F64, F16 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)
DTYPES = [F32, F64, F16] + ([BF16] if BF16 is not None else [])
REDUCTIONS = ["none", "mean", "sum"]
# 1003: one block with a tail of 3 (float32 groups of 4); (3, 5, 7): 105 elements,
# a tail for every group width; 100003: 25 blocks and a tail.
SHAPES = [(7,), (1003,), (3, 5, 7), (100003,)]

# Tolerances, in ulps of the compute type (float32 for float32/float16/bfloat16
# inputs, float64 for float64). Both sides compute the same formulas in the same
# precision on the same (already rounded) inputs; they differ in exp/log/log1p
# (CUDA's accurate versions vs Highway's and lossx's FastExp, <= 2 ulp each), in
# FMA contraction and in summation order. K = 32 ulps covers a chain of a few
# such operations, relative to the largest magnitude in the array (small
# entries carry the absolute error of their terms: x - y, y log y - y x).
# Gradients of float16/bfloat16 inputs are rounded to the storage type: one
# storage ulp (2^-10, 2^-7) more, since the two float32 values may straddle a
# rounding boundary.
K = 32
ULP = {F32: 2.0**-23, F64: 2.0**-52, F16: 2.0**-23}
STORE_ULP = {F32: 2.0**-23, F64: 2.0**-52, F16: 2.0**-10}
if BF16 is not None:
    ULP[BF16] = 2.0**-23
    STORE_ULP[BF16] = 2.0**-7


def acc_of(dtype):
    return np.float64 if np.dtype(dtype) == F64 else np.float32


def check(lib, gpu, cpu, what, rtol, scale=None):
    """gpu (device array) against cpu (NumPy): same namespace, shape, NaN and
    inf pattern, then |g - c| <= rtol (|c| + scale)."""
    same_ns(lib, gpu)
    g = np.asarray(to_np(gpu), dtype=np.float64)
    c = np.asarray(cpu, dtype=np.float64)
    assert g.shape == c.shape, (what, g.shape, c.shape)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(c), err_msg=what + ": NaN pattern")
    finite = np.isfinite(c)
    np.testing.assert_array_equal(np.isfinite(g), finite, err_msg=what + ": non-finite pattern")
    np.testing.assert_array_equal(g[np.isinf(c)], c[np.isinf(c)], err_msg=what + ": infinities")
    if scale is None:
        scale = float(np.max(np.abs(c[finite]))) if finite.any() else 1.0
    np.testing.assert_allclose(g[finite], c[finite], rtol=rtol, atol=rtol * scale + 1e-300, err_msg=what)


def check_loss(lib, gpu, cpu, cpu_none, reduction, dtype, what, divisor=None):
    """The loss: element-wise for "none"; for a reduction, the two sums differ by
    at most K ulps of sum |l_i| (summation order; the per-element errors are
    already of that size)."""
    rt = K * ULP[np.dtype(dtype)]
    if reduction == "none":
        check(lib, gpu, cpu, what, rt)
        return
    assert tuple(gpu.shape) == (), (what, gpu.shape)
    mag = float(np.sum(np.abs(np.asarray(cpu_none, dtype=np.float64))))
    if reduction in ("mean", "batchmean"):
        mag /= divisor
    check(lib, gpu, cpu, what, rt, scale=mag)


def check_grad(lib, gpu, cpu, dtype, what):
    check(lib, gpu, cpu, what, K * ULP[np.dtype(dtype)] + STORE_ULP[np.dtype(dtype)])
    assert str(gpu.dtype).split(".")[-1] == np.dtype(cpu.dtype).name, (what, gpu.dtype, cpu.dtype)


def make_case(case, rng, shape, dtype):
    name, make, opts, _ = CASES[case]
    x, y, extra = make(rng, shape)
    return (getattr(lossx, name), x.astype(dtype), y.astype(dtype),
            {k: v.astype(dtype) for k, v in extra.items()}, opts)


def run_both(lib, fn, x, y, extra, opts, reduction, go):
    d = lambda a: to_dev(lib, a) if isinstance(a, np.ndarray) else a  # noqa: E731
    cpu = fn(x, y, reduction=reduction, **extra, **opts, return_grad=True, grad_output=go)
    gpu = fn(d(x), d(y), reduction=reduction, **{k: d(v) for k, v in extra.items()}, **opts, return_grad=True,
             grad_output=d(go))
    return cpu, gpu


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_cpu(lib, case, reduction, dtype, rng):
    for shape in SHAPES:
        fn, x, y, extra, opts = make_case(case, rng, shape, dtype)
        acc = acc_of(dtype)
        go = rng.uniform(-1.5, 1.5, shape).astype(acc) if reduction == "none" else 0.75
        (cl, (cgx, cgy)), (gl, (ggx, ggy)) = run_both(lib, fn, x, y, extra, opts, reduction, go)
        cnone = fn(x, y, reduction="none", **extra, **opts)
        what = f"{case} {reduction} {shape}"
        check_loss(lib, gl, cl, cnone, reduction, dtype, what + " loss", divisor=x.size)
        check_grad(lib, ggx, cgx, dtype, what + " d_input")
        check_grad(lib, ggy, cgy, dtype, what + " d_target")
        assert str(gl.dtype).split(".")[-1] == np.dtype(acc).name
        # Forward only (the kGrad=false kernel) gives the same loss.
        d = lambda a: to_dev(lib, a)  # noqa: E731
        gf = fn(d(x), d(y), reduction=reduction, **{k: d(v) for k, v in extra.items()}, **opts)
        check_loss(lib, gf, cl, cnone, reduction, dtype, what + " forward only", divisor=x.size)


@pytest.mark.parametrize("case", ["mse", "bce_logits_w_pw", "kl_logt"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_grid_stride(lib, case, reduction, rng):
    # More groups than the fixed grid holds (4096 blocks x 256 threads x 4 groups
    # x 4 float32): every thread loops, and n leaves a tail of 3.
    shape = (4096 * 256 * 16 + 1021, 3)
    fn, x, y, extra, opts = make_case(case, rng, shape, np.float32)
    (cl, (cgx, cgy)), (gl, (ggx, ggy)) = run_both(lib, fn, x, y, extra, opts, reduction, None)
    cnone = cl if reduction == "none" else fn(x, y, reduction="none", **extra, **opts)
    check_loss(lib, gl, cl, cnone, reduction, np.float32, f"{case} loss", divisor=x.size)
    check_grad(lib, ggx, cgx, np.float32, f"{case} d_input")
    check_grad(lib, ggy, cgy, np.float32, f"{case} d_target")


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][0] != "binary_cross_entropy"])
def test_nan_propagates_like_cpu(lib, case, dtype, rng):
    fn, x, y, extra, opts = make_case(case, rng, (37,), dtype)
    x[[2, 20]] = np.nan
    if CASES[case][0] != "soft_margin_loss":  # targets must be +-1 there
        y[[5, 20]] = np.nan
    (cl, (cgx, cgy)), (gl, (ggx, ggy)) = run_both(lib, fn, x, y, extra, opts, "none", None)
    rt = K * ULP[dtype]
    check(lib, gl, cl, "loss", rt)
    check(lib, ggx, cgx, "d_input", rt)
    check(lib, ggy, cgy, "d_target", rt)
    _, (cgx, _) = fn(x, y, **extra, **opts, return_grad=True)
    gm, (ggx, _) = fn(to_dev(lib, x), to_dev(lib, y), **{k: to_dev(lib, v) for k, v in extra.items()}, **opts,
                      return_grad=True)
    assert np.isnan(float(to_np(gm)))
    check(lib, ggx, cgx, "mean d_input", rt)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_extremes(lib, dtype):
    # Large logits, probabilities exactly 0 and 1 (the -100 clamps) and a float32
    # denormal (1e-40: log = -92.1, inside the clamp; a flush-to-zero build would give -100).
    x = np.array([-200, -90, -30, -1e-3, 0, 1e-3, 30, 90, 200], dtype)
    y = np.array([0, 1, 1, 0.5, 1, 0, 0.2, 0, 1], dtype)
    c, (cg, cgt) = lossx.binary_cross_entropy_with_logits(x, y, reduction="none", return_grad=True)
    g, (gg, ggt) = lossx.binary_cross_entropy_with_logits(to_dev(lib, x), to_dev(lib, y), reduction="none",
                                                          return_grad=True)
    rt = K * ULP[dtype]
    check(lib, g, c, "bce logits", rt)
    check(lib, gg, cg, "bce logits d_input", rt)
    check(lib, ggt, cgt, "bce logits d_target", rt)
    p = np.array([0, 1, 0, 1, 1e-30, 0.5, 1 - 1e-7, 1e-40, 1e-50], dtype)
    q = np.array([1, 0, 0, 1, 1, 0.5, 0.3, 1, 0.5], dtype)
    c, (cg, cgt) = lossx.binary_cross_entropy(p, q, reduction="none", return_grad=True)
    g, (gg, ggt) = lossx.binary_cross_entropy(to_dev(lib, p), to_dev(lib, q), reduction="none", return_grad=True)
    check(lib, g, c, "bce", rt)
    check(lib, gg, cg, "bce d_input", rt)
    check(lib, ggt, cgt, "bce d_target", rt)
    if dtype == F32:
        assert abs(float(to_np(g)[7]) - 92.1034) < 1e-3  # -log(1e-40): denormals are not flushed


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_kl_batchmean_and_zero_dim(lib, dtype, rng):
    x, y = rng.standard_normal((6, 5)).astype(dtype), rng.random((6, 5)).astype(dtype)
    c, (cg, cgt) = lossx.kl_div(x, y, reduction="batchmean", return_grad=True)
    g, (gg, ggt) = lossx.kl_div(to_dev(lib, x), to_dev(lib, y), reduction="batchmean", return_grad=True)
    check_loss(lib, g, c, lossx.kl_div(x, y, reduction="none"), "batchmean", dtype, "batchmean", divisor=6)
    check_grad(lib, gg, cg, dtype, "batchmean d_input")
    check_grad(lib, ggt, cgt, dtype, "batchmean d_target")
    x0, y0 = np.array(0.3, dtype), np.array(0.5, dtype)
    for red in ("none", "sum", "batchmean"):
        c, (cg, cgt) = lossx.kl_div(x0, y0, reduction=red, return_grad=True)
        g, (gg, ggt) = lossx.kl_div(to_dev(lib, x0), to_dev(lib, y0), reduction=red, return_grad=True)
        assert tuple(g.shape) == () and tuple(gg.shape) == () and tuple(ggt.shape) == ()
        check(lib, g, c, f"0-d {red}", K * ULP[dtype])
        check(lib, gg, cg, f"0-d {red} d_input", K * ULP[dtype])


@pytest.mark.parametrize("wshape", [(3, 1, 1), (5, 1), (1, 5, 7), (5, 7), ()], ids=str)
def test_weight_broadcast_shapes(lib, wshape, rng):
    # Trailing-block weights are passed with a period (the kernel wraps its index);
    # the others are materialised by the caller's library first.
    x, y = rng.standard_normal((3, 5, 7)).astype(np.float32), rng.random((3, 5, 7)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, wshape).astype(np.float32)
    pw = rng.uniform(0.5, 2.0, (7,)).astype(np.float32)
    for red in REDUCTIONS:
        c, (cg, cgt) = lossx.binary_cross_entropy_with_logits(x, y, w, pos_weight=pw, reduction=red,
                                                              return_grad=True)
        g, (gg, ggt) = lossx.binary_cross_entropy_with_logits(to_dev(lib, x), to_dev(lib, y), to_dev(lib, w),
                                                              pos_weight=to_dev(lib, pw), reduction=red,
                                                              return_grad=True)
        cn = lossx.binary_cross_entropy_with_logits(x, y, w, pos_weight=pw, reduction="none")
        check_loss(lib, g, c, cn, red, F32, f"loss {red}", divisor=x.size)
        check_grad(lib, gg, cg, F32, f"d_input {red}")
        check_grad(lib, ggt, cgt, F32, f"d_target {red}")
    # Host (NumPy) weights with a GPU input are uploaded.
    g = lossx.binary_cross_entropy_with_logits(to_dev(lib, x), to_dev(lib, y), w, pos_weight=pw)
    c = lossx.binary_cross_entropy_with_logits(x, y, w, pos_weight=pw)
    check_loss(lib, g, c, cn, "mean", F32, "host weights", divisor=x.size)


def test_mixed_float_dtypes(lib, rng):
    # As on the CPU: the target is cast to the input's dtype, its gradient comes
    # back in the target's own dtype.
    x = rng.standard_normal((6, 4)).astype(np.float32)
    y = rng.standard_normal((6, 4))
    c, (cg, cgt) = lossx.huber_loss(x, y, delta=0.5, return_grad=True)
    g, (gg, ggt) = lossx.huber_loss(to_dev(lib, x), to_dev(lib, y), delta=0.5, return_grad=True)
    check_loss(lib, g, c, lossx.huber_loss(x, y, delta=0.5, reduction="none"), "mean", F32, "loss", divisor=24)
    check_grad(lib, gg, cg, F32, "d_input")
    check_grad(lib, ggt, cgt, F32, "d_target")
    assert str(ggt.dtype).split(".")[-1] == "float64"


def test_misaligned_views_same_bits(lib, rng):
    # A view that starts 4 bytes into its buffer cannot use 16-byte loads: the
    # kernel then loads element by element over the very same groups, so the
    # sum (and every gradient) has exactly the bits of the aligned call.
    n = 50001
    xb = rng.standard_normal(n + 1).astype(np.float32)
    yb = rng.standard_normal(n + 1).astype(np.float32)
    dx, dy = to_dev(lib, xb), to_dev(lib, yb)
    mis = lossx.mse_loss(dx[1:], dy[1:], return_grad=True)
    ali = lossx.mse_loss(to_dev(lib, xb[1:]), to_dev(lib, yb[1:]), return_grad=True)
    assert to_np(mis[0]).tobytes() == to_np(ali[0]).tobytes()
    assert to_np(mis[1][0]).tobytes() == to_np(ali[1][0]).tobytes()
    c = lossx.mse_loss(xb[1:], yb[1:], reduction="none")
    check_loss(lib, mis[0], lossx.mse_loss(xb[1:], yb[1:]), c, "mean", F32, "misaligned", divisor=n)
    gn = lossx.mse_loss(dx[1:], dy[1:], reduction="none")
    check(lib, gn, c, "misaligned none", K * ULP[F32])


def test_deterministic(lib, rng):
    x = rng.standard_normal(3_000_017).astype(np.float32)
    y = rng.random(3_000_017).astype(np.float32)
    dx, dy = to_dev(lib, x), to_dev(lib, y)
    first = to_np(lossx.binary_cross_entropy_with_logits(dx, dy, reduction="sum")).tobytes()
    for _ in range(3):
        assert to_np(lossx.binary_cross_entropy_with_logits(dx, dy, reduction="sum")).tobytes() == first


@pytest.mark.parametrize("name", [n for n in lossx._catalog.names("pointwise") if n not in POINTWISE_OWN_SIGNATURE])
def test_empty(lib, name):
    e = to_dev(lib, np.zeros((0, 3), np.float32))
    fn = getattr(lossx, name)
    m = fn(e, e)
    same_ns(lib, m)
    assert np.isnan(float(to_np(m)))
    assert float(to_np(fn(e, e, reduction="sum"))) == 0.0
    loss, (gx, gy) = fn(e, e, reduction="none", return_grad=True)
    assert tuple(loss.shape) == tuple(gx.shape) == tuple(gy.shape) == (0, 3)
    m, (gx, _) = fn(e, e, return_grad=True)
    assert np.isnan(float(to_np(m))) and tuple(gx.shape) == (0, 3)


def _context_usable(lib):
    if lib == "torch":
        torch.cuda.synchronize()
        assert float((torch.ones(4, device="cuda") * 2).sum()) == 8.0
    else:
        cp.cuda.Device().synchronize()
        assert float(cp.ones(4).sum()) == 4.0


def test_bce_out_of_range_raises_then_context_usable(lib):
    x = np.full(9, 0.5, np.float32)
    y = np.full(9, 0.25, np.float32)
    x[[4, 7]] = [1.5, -0.5]
    y[[1, 6]] = [2.0, -1.0]
    # The input rule first (as the CPU path: the whole input before the target), smallest position.
    with pytest.raises(ValueError, match=r"binary_cross_entropy: input must hold probabilities in \[0, 1\]; "
                                         r"element 4 is 1.5"):
        lossx.binary_cross_entropy(to_dev(lib, x), to_dev(lib, y), return_grad=True)
    x[[4, 7]] = 0.5
    with pytest.raises(ValueError, match=r"target must hold probabilities in \[0, 1\]; element 1 is 2"):
        lossx.binary_cross_entropy(to_dev(lib, x), to_dev(lib, y), reduction="none")
    y[[1, 6]] = 0.5
    x[3] = np.nan
    with pytest.raises(ValueError, match=r"input .*element 3 is nan"):
        lossx.binary_cross_entropy(to_dev(lib, x), to_dev(lib, y))
    x[3] = 0.5
    _context_usable(lib)
    check(lib, lossx.binary_cross_entropy(to_dev(lib, x), to_dev(lib, y)), lossx.binary_cross_entropy(x, y),
          "after the error", K * ULP[F32])


# Losses with their own wrapper signature (tests/test_pointwise_cuda_functors.py
# checks the same functors on the host): hinge_embedding_loss returns d_input
# only, sigmoid_focal_loss defaults to reduction="none".
OWN_CASES = {
    "hinge_embedding": ("hinge_embedding_loss", {"margin": 0.7}),
    "focal": ("sigmoid_focal_loss", {}),
    "focal_g1.5": ("sigmoid_focal_loss", {"gamma": 1.5, "alpha": None}),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(OWN_CASES))
def test_own_signature_losses_match_cpu(lib, case, reduction, dtype, rng):
    name, opts = OWN_CASES[case]
    fn = getattr(lossx, name)
    for shape in SHAPES:
        x = rng.normal(0, 2, shape).astype(dtype)
        if name == "hinge_embedding_loss":
            y = np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(dtype)
        else:
            y = rng.uniform(0, 1, shape).astype(dtype)
        go = rng.uniform(-1.5, 1.5, shape).astype(acc_of(dtype)) if reduction == "none" else 0.75
        cl, cg = fn(x, y, reduction=reduction, **opts, return_grad=True, grad_output=go)
        d = lambda a: to_dev(lib, a) if isinstance(a, np.ndarray) else a  # noqa: E731
        gl, gg = fn(d(x), d(y), reduction=reduction, **opts, return_grad=True, grad_output=d(go))
        what = f"{case} {reduction} {shape}"
        check_loss(lib, gl, cl, fn(x, y, reduction="none", **opts), reduction, dtype, what + " loss",
                   divisor=x.size)
        if name == "hinge_embedding_loss":
            check_grad(lib, gg, cg, dtype, what + " d_input")
        else:
            check_grad(lib, gg[0], cg[0], dtype, what + " d_input")
            check_grad(lib, gg[1], cg[1], dtype, what + " d_target")


@pytest.mark.parametrize("name", ["soft_margin_loss", "hinge_embedding_loss"])
def test_target_pm1(lib, name):
    x = np.zeros(5, np.float32)
    y = np.array([1, -1, 0.5, 1, 0], np.float32)
    with pytest.raises(ValueError, match=name + r": target must hold only -1 and \+1; element 2 is 0.5"):
        getattr(lossx, name)(to_dev(lib, x), to_dev(lib, y))
    _context_usable(lib)


def test_bad_dtypes_raise(lib):
    x = to_dev(lib, np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="target"):
        lossx.mse_loss(x, to_dev(lib, np.zeros(4, np.int32)))
    with pytest.raises(TypeError, match="input"):
        lossx.mse_loss(to_dev(lib, np.zeros(4, np.int64)), x)
    with pytest.raises(TypeError, match="weight"):
        lossx.binary_cross_entropy_with_logits(x, x, to_dev(lib, np.ones(4, np.int64)))
    with pytest.raises(ValueError, match=r"\(4,\).*\(5,\)"):
        lossx.mse_loss(x, to_dev(lib, np.zeros(5, np.float32)))


def _device_count(lib):
    return torch.cuda.device_count() if lib == "torch" else cp.cuda.runtime.getDeviceCount()


def test_mismatched_devices_raise(lib):
    if _device_count(lib) < 2:
        pytest.skip("needs two GPUs")
    if lib == "torch":
        x = torch.zeros(4, device="cuda:0")
        y = torch.zeros(4, device="cuda:1")
    else:
        x = cp.zeros(4, cp.float32)
        with cp.cuda.Device(1):
            y = cp.zeros(4, cp.float32)
    with pytest.raises(ValueError, match="target is on cuda:1 but the input is on cuda:0"):
        lossx.mse_loss(x, y)
    with pytest.raises(ValueError, match="pos_weight is on cuda:1"):
        lossx.binary_cross_entropy_with_logits(x, x, pos_weight=y)


def test_input_on_second_gpu(lib, rng):
    # The kernel runs on the input's device, whichever device is current.
    if _device_count(lib) < 2:
        pytest.skip("needs two GPUs")
    x = rng.standard_normal(1000).astype(np.float32)
    y = rng.standard_normal(1000).astype(np.float32)
    c, (cg, _) = lossx.mse_loss(x, y, return_grad=True)
    if lib == "torch":
        dx, dy = torch.from_numpy(x).to("cuda:1"), torch.from_numpy(y).to("cuda:1")
    else:
        with cp.cuda.Device(1):
            dx, dy = cp.asarray(x), cp.asarray(y)
    g, (gg, _) = lossx.mse_loss(dx, dy, return_grad=True)
    assert (g.device.index if lib == "torch" else g.device.id) == 1
    check(lib, g, c, "loss on cuda:1", K * ULP[F32] * 8)
    check(lib, gg, cg, "grad on cuda:1", K * ULP[F32])


@pytest.mark.skipif("torch" not in LIBS or "cupy" not in LIBS, reason="needs CuPy and CUDA PyTorch")
def test_mixed_libraries_raise():
    x = torch.zeros(4, device="cuda")
    with pytest.raises(TypeError, match="one library"):
        lossx.mse_loss(x, cp.zeros(4, cp.float32))
    with pytest.raises(TypeError, match="one library"):
        lossx.mse_loss(cp.zeros(4, cp.float32), x)


@pytest.mark.skipif("torch" not in LIBS, reason="needs CUDA PyTorch")
def test_torch_side_stream(rng):
    # Work queued on a side stream: lossx must run after it, on the same stream.
    n = 1 << 20
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.random(n).astype(np.float32)
    c, (cg, cgt) = lossx.binary_cross_entropy_with_logits(x, y, return_grad=True)
    cb = lossx.binary_cross_entropy(1 / (1 + np.exp(-x)), y)
    src, dy = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    s = torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(s):
        dst = torch.zeros_like(src)
        torch.cuda._sleep(50_000_000)  # keep the side stream busy before the copy
        dst.copy_(src)
        g, (gg, ggt) = lossx.binary_cross_entropy_with_logits(dst, dy, return_grad=True)
        gb = lossx.binary_cross_entropy(torch.sigmoid(dst), dy)  # the checked path syncs this stream
    s.synchronize()
    cn = lossx.binary_cross_entropy_with_logits(x, y, reduction="none")
    check_loss("torch", g, c, cn, "mean", F32, "loss on a side stream", divisor=n)
    check_grad("torch", gg, cg, F32, "d_input on a side stream")
    check_grad("torch", ggt, cgt, F32, "d_target on a side stream")
    assert abs(float(gb) - float(cb)) <= 1e-5 * abs(float(cb))


@pytest.mark.skipif("cupy" not in LIBS, reason="needs CuPy")
def test_cupy_side_stream(rng):
    n = 1 << 20
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    c, (cg, _) = lossx.mse_loss(x, y, return_grad=True)
    src, dy = cp.asarray(x), cp.asarray(y)
    cp.cuda.Device().synchronize()
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        from lossx import _gpu

        assert _gpu.backend_for(src, "t").stream == s.ptr
        big = cp.ones((4096, 4096), cp.float32)
        for _ in range(5):
            big = big @ big * (1.0 / 4096)  # busy work ahead of the copy
        dst = src + big[0, 0] - 1.0
        g, (gg, _) = lossx.mse_loss(dst, dy, return_grad=True)
    s.synchronize()
    check_loss("cupy", g, c, lossx.mse_loss(x, y, reduction="none"), "mean", F32, "loss on a side stream", divisor=n)
    check_grad("cupy", gg, cg, F32, "grad on a side stream")


@pytest.mark.skipif("torch" not in LIBS, reason="needs CUDA PyTorch")
def test_torch_requires_grad_and_autograd_agree(rng):
    x = torch.from_numpy(rng.standard_normal((5, 40)).astype(np.float32)).cuda().requires_grad_(True)
    y = torch.from_numpy(rng.random((5, 40)).astype(np.float32)).cuda()
    loss, (g, _) = lossx.binary_cross_entropy_with_logits(x, y, return_grad=True)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(x, y)
    ref.backward()
    assert abs(float(loss) - float(ref)) < 1e-6
    torch.testing.assert_close(g, x.grad, rtol=1e-5, atol=1e-8)


@pytest.mark.large_memory
@pytest.mark.skipif("torch" not in LIBS, reason="needs CUDA PyTorch")
def test_more_than_2_31_elements():
    # bf16 mse_loss over 2^31 + 37 elements (4.3 GB per array): the elements past
    # index 2^31 must be read, written and summed like the first ones.
    n = 2**31 + 37
    free, _ = torch.cuda.mem_get_info()
    if free < 20 * 2**30:
        pytest.skip("needs 20 GB of free GPU memory")
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(n, device="cuda", generator=gen, dtype=torch.bfloat16)
    y = torch.randn(n, device="cuda", generator=gen, dtype=torch.bfloat16)
    loss, (gx, gy) = lossx.mse_loss(x, y, reduction="sum", return_grad=True, grad_output=0.5)
    tail = slice(n - 4099, n)  # past 2^31, across the last groups and the tail of 5
    d = x[tail].float() - y[tail].float()
    torch.testing.assert_close(gx[tail].float(), (d + d) * 0.5, rtol=2**-7, atol=0)
    torch.testing.assert_close(gy[tail].float(), -(d + d) * 0.5, rtol=2**-7, atol=0)
    head = slice(0, 4099)
    dh = x[head].float() - y[head].float()
    torch.testing.assert_close(gx[head].float(), (dh + dh) * 0.5, rtol=2**-7, atol=0)
    del gx, gy
    ref = sum(float(((x[i:i + 2**28].double() - y[i:i + 2**28].double()) ** 2).sum()) for i in range(0, n, 2**28))
    assert abs(float(loss) - ref) <= 1e-5 * ref
    none = lossx.mse_loss(x[-2**20:], y[-2**20:], reduction="none")
    d = x[-2**20:].float() - y[-2**20:].float()
    torch.testing.assert_close(none, d * d, rtol=1e-6, atol=0)


# ---- lossx.keras element-wise losses: the kernel's row mode (pw_rows_kernel for
# reduction=None, the element-wise kernel with the row scale for the others).
from test_keras_elementwise import KERAS_EW_OPTIONS_FOR_GPU, OPTIONS as KERAS_OPTIONS  # noqa: E402
from test_keras_elementwise import make as keras_make, opts_of  # noqa: E402

KERAS_GPU_CASES = KERAS_EW_OPTIONS_FOR_GPU + [(n, o) for n, o in KERAS_OPTIONS if "axis" not in o]
KERAS_REDUCTIONS = [None, "sum_over_batch_size", "sum"]
# Rows of 1, 3 (fewer than a warp's lanes), 37 (a warp and a tail) and 1000
# elements; 2 x 50001 rows of 3 cover more rows than the grid's warps.
KERAS_SHAPES = [(9, 1), (11, 3), (5, 2, 37), (4, 1000), (2, 50001, 3)]


@pytest.mark.parametrize("dtype", [F32, F64] + ([BF16] if BF16 is not None else []), ids=str)
@pytest.mark.parametrize("reduction", KERAS_REDUCTIONS, ids=str)
@pytest.mark.parametrize("name,o", KERAS_GPU_CASES, ids=[f"{n}-{o}" for n, o in KERAS_GPU_CASES])
def test_keras_elementwise_matches_cpu(lib, name, o, reduction, dtype, rng):
    fn = getattr(lossx.keras, name)
    opts = opts_of(o)
    for shape in KERAS_SHAPES:
        t, p = keras_make(name, shape, dtype, rng, o, smooth=o.get("soft", False))
        ax = o.get("axis", -1)
        lshape = tuple(s for i, s in enumerate(shape) if i != ax % len(shape))
        go = rng.uniform(-1.5, 1.5, lshape).astype(acc_of(dtype)) if reduction is None else 0.75
        cl, cg = fn(t, p, **opts, reduction=reduction, return_grad=True, grad_output=go)
        gl, gg = fn(to_dev(lib, t), to_dev(lib, p), **opts, reduction=reduction, return_grad=True,
                    grad_output=to_dev(lib, go) if reduction is None else go)
        cnone = fn(t, p, **opts)
        what = f"{name} {o} {reduction} {shape}"
        red = "none" if reduction is None else ("mean" if reduction == "sum_over_batch_size" else "sum")
        check_loss(lib, gl, cl, cnone, red, dtype, what + " loss", divisor=max(1, cnone.size))
        check_grad(lib, gg, cg, dtype, what + " d_y_pred")
        gf = fn(to_dev(lib, t), to_dev(lib, p), **opts, reduction=reduction)  # forward only
        check_loss(lib, gf, cl, cnone, red, dtype, what + " forward only", divisor=max(1, cnone.size))


def test_keras_elementwise_rows_deterministic(lib, rng):
    t, p = keras_make("log_cosh", (300, 777), np.float32, rng, {})
    a = to_np(lossx.keras.log_cosh(to_dev(lib, t), to_dev(lib, p)))
    b = to_np(lossx.keras.log_cosh(to_dev(lib, t), to_dev(lib, p)))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_soft_margin_matches_cpu(lib, reduction, dtype, rng):
    # binary_cross_entropy_with_logits in row mode (rows of C), class weights of period C.
    for shape in ((7, 5), (300, 77), (33,)):
        x = rng.normal(0, 2, shape).astype(dtype)
        y = (rng.random(shape) < 0.5).astype(dtype)
        w = rng.uniform(0.5, 2, shape[-1:]).astype(dtype)
        go = rng.uniform(-1.5, 1.5, shape[:-1]).astype(acc_of(dtype)) if reduction == "none" else 0.75
        cl, cg = lossx.multilabel_soft_margin_loss(x, y, w, reduction, return_grad=True, grad_output=go)
        d = lambda a: to_dev(lib, a)  # noqa: E731
        gl, gg = lossx.multilabel_soft_margin_loss(d(x), d(y), d(w), reduction, return_grad=True,
                                                   grad_output=d(go) if reduction == "none" else go)
        cnone = lossx.multilabel_soft_margin_loss(x, y, w, "none")
        what = f"multilabel_soft_margin {reduction} {shape}"
        check_loss(lib, gl, cl, cnone, reduction, dtype, what + " loss", divisor=max(1, cnone.size))
        check_grad(lib, gg, cg, dtype, what + " d_input")


# ---- The kernel's third operand: gaussian_nll_loss's var (differentiable) and
# margin_ranking_loss's +-1 target. tests/test_pointwise_cuda_functors.py checks
# the functors on the host.
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("vkind", ["full", "rows", "number"])
def test_gaussian_nll_matches_cpu(lib, vkind, reduction, dtype, rng):
    for shape in ((1003, 1), (3, 5, 7), (100003,)):
        x, y = rng.normal(0, 2, shape).astype(dtype), rng.normal(0, 2, shape).astype(dtype)
        var = {"full": lambda: rng.uniform(0, 3, shape).astype(dtype),
               "rows": lambda: rng.uniform(0, 3, shape[:-1]).astype(dtype),
               "number": lambda: 0.8}[vkind]()
        go = rng.uniform(-1.5, 1.5, shape).astype(acc_of(dtype)) if reduction == "none" else 0.75
        kw = dict(full=True, eps=0.05, reduction=reduction, return_grad=True)
        cl, (cgx, cgy, cgv) = lossx.gaussian_nll_loss(x, y, var, grad_output=go, **kw)
        d = lambda a: to_dev(lib, a) if isinstance(a, np.ndarray) else a  # noqa: E731
        gl, (ggx, ggy, ggv) = lossx.gaussian_nll_loss(d(x), d(y), d(var), grad_output=d(go), **kw)
        what = f"gaussian_nll {vkind} {reduction} {shape}"
        cnone = lossx.gaussian_nll_loss(x, y, var, full=True, eps=0.05, reduction="none")
        check_loss(lib, gl, cl, cnone, reduction, dtype, what + " loss", divisor=x.size)
        check_grad(lib, ggx, cgx, dtype, what + " d_input")
        check_grad(lib, ggy, cgy, dtype, what + " d_target")
        # d_var: summed over the broadcast axes in float64 on both sides.
        rt = K * ULP[np.dtype(dtype)] + STORE_ULP[np.dtype(dtype)]
        scale = float(np.sum(np.abs(np.asarray(cgv, np.float64)))) / max(1, np.size(cgv)) if vkind != "full" else None
        check(lib, ggv, cgv, what + " d_var", rt * (x.size if vkind == "number" else 1), scale=scale)
    with pytest.raises(ValueError, match="var must be >= 0; element 1 is -1"):
        lossx.gaussian_nll_loss(to_dev(lib, np.zeros(3, np.float32)), to_dev(lib, np.zeros(3, np.float32)),
                                to_dev(lib, np.array([1, -1, 2], np.float32)))
    _context_usable(lib)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_margin_ranking_matches_cpu(lib, reduction, dtype, rng):
    for shape in SHAPES:
        x1, x2 = rng.normal(0, 1, shape).astype(dtype), rng.normal(0, 1, shape).astype(dtype)
        target = np.where(rng.random(shape) < 0.5, -1, 1)
        go = rng.uniform(-1.5, 1.5, shape).astype(acc_of(dtype)) if reduction == "none" else 0.75
        cl, (cg1, cg2) = lossx.margin_ranking_loss(x1, x2, target, 0.2, reduction, return_grad=True, grad_output=go)
        d = lambda a: to_dev(lib, a) if isinstance(a, np.ndarray) else a  # noqa: E731
        gl, (gg1, gg2) = lossx.margin_ranking_loss(d(x1), d(x2), d(target), 0.2, reduction, return_grad=True,
                                                   grad_output=d(go))
        what = f"margin_ranking {reduction} {shape}"
        check_loss(lib, gl, cl, lossx.margin_ranking_loss(x1, x2, target, 0.2, "none"), reduction, dtype,
                   what + " loss", divisor=x1.size)
        check_grad(lib, gg1, cg1, dtype, what + " d_input1")
        check_grad(lib, gg2, cg2, dtype, what + " d_input2")
    t = np.array([1, -1, 0.5, 1], np.float32)
    with pytest.raises(ValueError, match="target at position 2 is 0.5; it must be 1 or -1"):
        lossx.margin_ranking_loss(to_dev(lib, np.zeros(4, np.float32)), to_dev(lib, np.zeros(4, np.float32)),
                                  to_dev(lib, t))
    _context_usable(lib)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_tf_sigmoid_ce_matches_cpu(lib, dtype, rng):
    # The pointwise kernel's "tf." code: per-element loss and logits gradient.
    for shape in SHAPES:
        x = (rng.standard_normal(shape) * 4).astype(dtype)
        z = rng.random(shape).astype(dtype)
        go = rng.uniform(-1.5, 1.5, shape).astype(acc_of(dtype))
        fn = lossx.tf.sigmoid_cross_entropy_with_logits
        cl, cg = fn(labels=z, logits=x, return_grad=True, grad_output=go)
        gl, gg = fn(labels=to_dev(lib, z), logits=to_dev(lib, x), return_grad=True, grad_output=to_dev(lib, go))
        check_loss(lib, gl, cl, cl, "none", dtype, f"tf sigmoid {shape} loss")
        check_grad(lib, gg, cg, dtype, f"tf sigmoid {shape} d_logits")
