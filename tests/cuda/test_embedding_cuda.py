"""GPU pairwise/embedding family (cuda/embedding.cu: triplet_margin_loss,
cosine_embedding_loss) against the CPU path on the same inputs.

Skipped (not failed) where lossx has no CUDA, no GPU is usable, or neither CuPy
nor a CUDA build of PyTorch is installed. Run on a GPU machine with
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

from test_embedding import _cos_term_scale, _dist_scale, _triplet_inputs  # noqa: E402

F32, F64, F16 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)
DTYPES = [F32, F64, F16] + ([BF16] if BF16 is not None else [])
REDUCTIONS = ["none", "mean", "sum"]
# Warp per row below 2048 elements, block per row from 2048 on; dims that are
# and are not multiples of the 16-byte group; unbatched (D,).
SHAPES = [(1, 1), (7, 7), (33, 129), (300, 64), (33, 1), (129,), (5, 4099), (17, 2048)]

# GPU and CPU sum each row in the compute type (float32 for float32 and half
# inputs) in different orders (a warp or block tree vs SIMD lanes), and general
# p goes through exp/log (<= 2 ulp on both sides): 32 ulps times sqrt(D),
# relative to the magnitude of the terms that cancel (the distances for the
# triplet loss, x2/|x1||x2| and cos x1/|x1|^2 for cosine's gradient, as in
# tests/test_embedding.py). Half gradients: one storage ulp more (2^-10, 2^-7).
K = 32
ULP = {F32: 2.0**-23, F64: 2.0**-52, F16: 2.0**-23}
STORE_ULP = {F32: 0.0, F64: 0.0, F16: 2.0**-10}
if BF16 is not None:
    ULP[BF16] = 2.0**-23
    STORE_ULP[BF16] = 2.0**-7


def check(lib, gpu, cpu, what, rtol, scale):
    same_ns(lib, gpu)
    g = np.asarray(to_np(gpu), dtype=np.float64)
    c = np.asarray(cpu, dtype=np.float64)
    assert g.shape == c.shape, (what, g.shape, c.shape)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(c), err_msg=what + ": NaN pattern")
    fin = np.isfinite(c)
    np.testing.assert_allclose(g[fin], c[fin], rtol=rtol, atol=rtol * scale + 1e-300, err_msg=what)


def tol(dtype, D):
    return K * ULP[np.dtype(dtype)] * max(1.0, np.sqrt(D))


def go_for(rng, reduction, rows_shape, dtype):
    acc = np.float64 if np.dtype(dtype) == F64 else np.float32
    return rng.uniform(-1.5, 1.5, rows_shape).astype(acc) if reduction == "none" else 0.75


def dev_go(lib, go):
    return to_dev(lib, go) if isinstance(go, np.ndarray) else go


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", [2.0, 1.0, 1.5, 0.7])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_matches_cpu(lib, dtype, reduction, p, swap, rng):
    for shape in SHAPES:
        xs = _triplet_inputs(rng, shape, dtype)
        margin = float(rng.uniform(0.2, 1.5))
        go = go_for(rng, reduction, shape[:-1], dtype)
        kw = dict(margin=margin, p=p, swap=swap, reduction=reduction)
        cl, cg = lossx.triplet_margin_loss(*xs, **kw, return_grad=True, grad_output=go)
        gl, gg = lossx.triplet_margin_loss(*[to_dev(lib, x) for x in xs], **kw, return_grad=True,
                                           grad_output=dev_go(lib, go))
        rt = tol(dtype, shape[-1])
        what = f"p={p} swap={swap} {reduction} {shape}"
        # A reduced loss adds the rows' errors: scale by the distances of all rows.
        nrows = int(np.prod(shape[:-1]))
        lsc = _dist_scale(xs) * (nrows if reduction == "sum" else 1)
        check(lib, gl, cl, what + " loss", rt, lsc)
        gscale = max(float(np.max(np.abs(np.stack(cg)))) if np.size(cg[0]) else 0.0, float(np.max(np.abs(go))))
        for k in range(3):
            check(lib, gg[k], cg[k], f"{what} grad {k}", rt + STORE_ULP[np.dtype(dtype)], gscale)
            assert str(gg[k].dtype).split(".")[-1] == np.dtype(dtype).name
        fwd = lossx.triplet_margin_loss(*[to_dev(lib, x) for x in xs], **kw)
        check(lib, fwd, cl, what + " forward only", rt, lsc)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.3, -0.5])
def test_cosine_matches_cpu(lib, dtype, reduction, margin, rng):
    for shape in SHAPES:
        x1 = rng.standard_normal(shape).astype(dtype)
        x2 = (0.5 * x1.astype(np.float64) + rng.standard_normal(shape)).astype(dtype)
        y = rng.choice([-1, 1], size=shape[:-1])
        go = go_for(rng, reduction, shape[:-1], dtype)
        cl, cg = lossx.cosine_embedding_loss(x1, x2, y, margin, reduction, return_grad=True, grad_output=go)
        gl, gg = lossx.cosine_embedding_loss(to_dev(lib, x1), to_dev(lib, x2), to_dev(lib, y), margin, reduction,
                                             return_grad=True, grad_output=dev_go(lib, go))
        rt = tol(dtype, shape[-1])
        what = f"margin={margin} {reduction} {shape}"
        nrows = int(np.prod(shape[:-1]))
        check(lib, gl, cl, what + " loss", rt, float(nrows if reduction == "sum" else 1))
        for k in range(2):
            check(lib, gg[k], cg[k], f"{what} grad {k}", rt + STORE_ULP[np.dtype(dtype)],
                  _cos_term_scale(x1, x2, go))


def test_cosine_target_rule_raises_then_context_usable(lib, rng):
    x1, x2 = rng.standard_normal((2, 9, 5)).astype(np.float32)
    y = np.array([1, -1, 1, 0, 1, 2, -1, 1, 1])
    with pytest.raises(ValueError, match="cosine_embedding_loss: target at position 3 is 0; it must be 1 or -1"):
        lossx.cosine_embedding_loss(to_dev(lib, x1), to_dev(lib, x2), to_dev(lib, y), return_grad=True)
    y[[3, 5]] = 1
    c = lossx.cosine_embedding_loss(x1, x2, y)
    g = lossx.cosine_embedding_loss(to_dev(lib, x1), to_dev(lib, x2), to_dev(lib, y))
    check(lib, g, c, "after the error", tol(F32, 5), 1.0)
    # Host and float targets are accepted too.
    g = lossx.cosine_embedding_loss(to_dev(lib, x1), to_dev(lib, x2), y.astype(np.float64))
    check(lib, g, c, "host float target", tol(F32, 5), 1.0)


def test_zero_distance_zero_vectors_and_hinge_boundary(lib):
    a = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    n = np.array([[1.5, 2.0, 3.0], [-2.0, 0.0, 0.0]])
    pos = np.array([[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]])
    for p in (2.0, 1.0, 1.5):
        cl, cg = lossx.triplet_margin_loss(a, pos, n, margin=1.0, p=p, eps=0.0, reduction="none", return_grad=True)
        gl, gg = lossx.triplet_margin_loss(to_dev(lib, a), to_dev(lib, pos), to_dev(lib, n), margin=1.0, p=p,
                                           eps=0.0, reduction="none", return_grad=True)
        check(lib, gl, cl, f"loss p={p}", 1e-13, 1.0)
        for k in range(3):
            check(lib, gg[k], cg[k], f"grad {k} p={p}", 1e-13, 1.0)
    z = np.zeros((2, 4))
    cl, cg = lossx.cosine_embedding_loss(z, z.copy(), np.array([1, -1]), reduction="none", return_grad=True)
    gl, gg = lossx.cosine_embedding_loss(to_dev(lib, z), to_dev(lib, z.copy()), to_dev(lib, np.array([1, -1])),
                                         reduction="none", return_grad=True)
    check(lib, gl, cl, "cosine zero vectors", 1e-13, 1.0)
    check(lib, gg[0], cg[0], "cosine zero vectors grad", 1e-13, 1.0)


def test_empty(lib):
    e = to_dev(lib, np.zeros((0, 5), np.float32))
    t = to_dev(lib, np.zeros(0, np.float32))
    for red, want in (("mean", np.nan), ("sum", 0.0)):
        np.testing.assert_equal(float(to_np(lossx.triplet_margin_loss(e, e, e, reduction=red))), want)
        np.testing.assert_equal(float(to_np(lossx.cosine_embedding_loss(e, e, t, reduction=red))), want)
    loss, grads = lossx.triplet_margin_loss(e, e, e, reduction="none", return_grad=True)
    assert tuple(loss.shape) == (0,) and all(tuple(g.shape) == (0, 5) for g in grads)


def test_deterministic(lib, rng):
    xs = [to_dev(lib, x) for x in _triplet_inputs(rng, (20011, 96), np.float32)]
    first = to_np(lossx.triplet_margin_loss(*xs)).tobytes()
    for _ in range(3):
        assert to_np(lossx.triplet_margin_loss(*xs)).tobytes() == first


def test_bad_arguments_raise(lib):
    x = to_dev(lib, np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="negative has dtype"):
        lossx.triplet_margin_loss(x, x, to_dev(lib, np.zeros((2, 3), np.float64)))
    with pytest.raises(TypeError, match="anchor"):
        lossx.triplet_margin_loss(to_dev(lib, np.zeros((2, 3), np.int32)), x, x)
    with pytest.raises(ValueError, match=r"positive has shape \(2, 4\).*anchor has shape \(2, 3\)"):
        lossx.triplet_margin_loss(x, to_dev(lib, np.zeros((2, 4), np.float32)), x)


def test_mismatched_devices_raise(lib):
    n = torch.cuda.device_count() if lib == "torch" else cp.cuda.runtime.getDeviceCount()
    if n < 2:
        pytest.skip("needs two GPUs")
    if lib == "torch":
        x, y = torch.zeros((2, 3), device="cuda:0"), torch.zeros((2, 3), device="cuda:1")
    else:
        x = cp.zeros((2, 3), cp.float32)
        with cp.cuda.Device(1):
            y = cp.zeros((2, 3), cp.float32)
    with pytest.raises(ValueError, match="positive is on cuda:1 but the input is on cuda:0"):
        lossx.triplet_margin_loss(x, y, x)


@pytest.mark.skipif("torch" not in LIBS, reason="needs CUDA PyTorch")
def test_torch_side_stream_and_autograd(rng):
    a, p, n = _triplet_inputs(rng, (512, 300), np.float32)
    c, cg = lossx.triplet_margin_loss(a, p, n, return_grad=True)
    src = torch.from_numpy(a).cuda()
    dp, dn = torch.from_numpy(p).cuda(), torch.from_numpy(n).cuda()
    s = torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(s):
        dst = torch.zeros_like(src)
        torch.cuda._sleep(50_000_000)  # keep the side stream busy before the copy
        dst.copy_(src)
        g, gg = lossx.triplet_margin_loss(dst, dp, dn, return_grad=True)
    s.synchronize()
    check("torch", g, c, "loss on a side stream", tol(F32, 300), _dist_scale([a, p, n]))
    check("torch", gg[0], cg[0], "grad on a side stream", tol(F32, 300), float(np.abs(cg[0]).max()))
    # And against torch's own autograd on the GPU.
    ts = [torch.from_numpy(x).cuda().requires_grad_(True) for x in (a, p, n)]
    ref = torch.nn.functional.triplet_margin_loss(*ts)
    ref.backward()
    assert abs(float(g) - float(ref)) <= 1e-5 * max(1.0, abs(float(ref)))
    torch.testing.assert_close(gg[0], ts[0].grad, rtol=1e-4, atol=1e-6)
