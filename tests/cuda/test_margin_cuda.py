"""GPU margin family (cuda/margin.cu: multi_margin_loss, multilabel_margin_loss)
and poly1_cross_entropy on GPU arrays, against the CPU path on the same inputs.

Skipped (not failed) where lossx has no CUDA, no GPU is usable, or neither CuPy
nor a CUDA build of PyTorch is installed. Run on a GPU machine with
    python -m pytest -q tests/cuda
"""
import re

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

from test_margin import _mlm_target  # noqa: E402

F32, F64, F16 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)
DTYPES = [F32, F64, F16] + ([BF16] if BF16 is not None else [])
REDUCTIONS = ["none", "mean", "sum"]
# Warp per row below 2048 classes, block per row from 2048 on; C = 1; unbatched (C,).
SHAPES = [(1, 1), (7, 7), (33, 129), (300, 64), (33, 1), (129,), (5, 4099), (17, 2048), (3, 2)]

# Compute-type ulps (float32 for float32 and half inputs) and storage ulps.
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
    np.testing.assert_array_equal(g[~fin & ~np.isnan(c)], c[~fin & ~np.isnan(c)], err_msg=what + ": infinities")
    np.testing.assert_allclose(g[fin], c[fin], rtol=rtol, atol=rtol * scale + 1e-300, err_msg=what)


def go_for(rng, reduction, rows_shape, dtype):
    acc = np.float64 if np.dtype(dtype) == F64 else np.float32
    return rng.uniform(-1.5, 1.5, rows_shape).astype(acc) if reduction == "none" else 0.75


def dev_go(lib, go):
    return to_dev(lib, go) if isinstance(go, np.ndarray) else go


def dtype_name(a):
    return str(a.dtype).split(".")[-1]


# ---- multi_margin_loss -------------------------------------------------------------------------
# A row's hinge sum and g_y = -sum_j g_j are added in a team tree on the GPU, in
# class order on the CPU, in the compute type (possibly with FMA on the GPU):
# 8 ulps per term, C terms, relative to the terms' magnitude. The other gradient
# entries are one product each, the CPU's: equal, but for g_y's rounding to a
# half dtype (one storage ulp). A reduced loss adds the rows' errors.

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True], ids=["", "w"])
def test_multi_margin_matches_cpu(lib, dtype, reduction, p, weighted, rng):
    for shape in SHAPES:
        C = shape[-1]
        x = rng.standard_normal(shape).astype(dtype)
        y = rng.integers(0, C, shape[:-1])
        w = rng.uniform(0.2, 2.0, C) if weighted else None
        margin = float(rng.choice([1.0, 0.3, -0.4]))
        go = go_for(rng, reduction, shape[:-1], dtype)
        cl, cg = lossx.multi_margin_loss(x, y, p, margin, w, reduction, return_grad=True, grad_output=go)
        gw = None if w is None else to_dev(lib, w)
        gl, gg = lossx.multi_margin_loss(to_dev(lib, x), to_dev(lib, y), p, margin, gw, reduction,
                                         return_grad=True, grad_output=dev_go(lib, go))
        what = f"p={p} w={weighted} {reduction} {shape}"
        rt = 8 * ULP[np.dtype(dtype)] * C
        nrows = int(np.prod(shape[:-1]))
        mag = (abs(margin) + 2 * float(np.max(np.abs(x.astype(np.float64))))) ** p * (np.max(w) if weighted else 1)
        check(lib, gl, cl, what + " loss", rt, mag * (nrows if reduction == "sum" else 1))
        assert dtype_name(gl) == ("float64" if np.dtype(dtype) == F64 else "float32")
        gscale = max(float(np.max(np.abs(cg.astype(np.float64)))) if cg.size else 0.0, 1e-30)
        check(lib, gg, cg, what + " grad", rt + STORE_ULP[np.dtype(dtype)], gscale)
        assert dtype_name(gg) == np.dtype(dtype).name and tuple(gg.shape) == shape
        fwd = lossx.multi_margin_loss(to_dev(lib, x), to_dev(lib, y), p, margin, gw, reduction)
        check(lib, fwd, cl, what + " forward only", rt, mag * (nrows if reduction == "sum" else 1))


# ---- multilabel_margin_loss ---------------------------------------------------------------------

def _targets(rng, shape, mode):
    C = shape[-1]
    if mode == "random":
        return _mlm_target(rng, shape)
    t = np.full(shape, -1, np.int64)
    for row in t.reshape(-1, C):
        k = {"empty": 0, "full": C, "dups": C}[mode]
        row[:k] = rng.permutation(C)[:k] if mode != "dups" else rng.integers(0, C // 3 + 1, k) % C
        if mode == "empty" and C > 1:
            row[1:] = rng.integers(0, C, C - 1)  # after the leading -1: not read
    return t


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("mode", ["random", "empty", "full", "dups"])
def test_multilabel_margin_matches_cpu(lib, dtype, reduction, mode, rng):
    for shape in SHAPES:
        C = shape[-1]
        x = rng.standard_normal(shape).astype(dtype)
        t = _targets(rng, shape, mode)
        go = go_for(rng, reduction, shape[:-1], dtype)
        cl, cg = lossx.multilabel_margin_loss(x, t, reduction, return_grad=True, grad_output=go)
        gl, gg = lossx.multilabel_margin_loss(to_dev(lib, x), to_dev(lib, t), reduction, return_grad=True,
                                              grad_output=dev_go(lib, go))
        what = f"{mode} {reduction} {shape}"
        # The hinge sum is in double on both sides (positive terms, another pair
        # order): up to (C/2)^2 double roundings, then one to the compute type;
        # a reduced loss adds the rows in double.
        rt = 2 * ULP[np.dtype(dtype)] + (C * C / 4) * 2.0**-52
        check(lib, gl, cl, what + " loss", rt, 1e-30)
        # Gradient entries: the CPU's sequence of +-scale additions, one per active
        # pair (only the count matters), rounded once to the storage type: the same bits.
        same_ns(lib, gg)
        assert dtype_name(gg) == np.dtype(dtype).name
        np.testing.assert_array_equal(np.asarray(to_np(gg), np.float64), cg.astype(np.float64), err_msg=what)
        fwd = lossx.multilabel_margin_loss(to_dev(lib, x), to_dev(lib, t), reduction)
        check(lib, fwd, cl, what + " forward only", rt, 1e-30)


@pytest.mark.parametrize("C", [392_000, 393_216, 400_003])
def test_multilabel_margin_global_mask(lib, rng, C):
    # From about 392,700 classes on, the per-row target masks (plus the kernel's
    # static shared memory) leave the 48 KiB of shared memory for a global
    # workspace (one per resident team); 393,216 is the size whose mask alone
    # fills 48 KiB exactly, 392,000 stays in shared memory.
    shape = (3, C)
    x = rng.standard_normal(shape).astype(np.float32)
    t = np.full(shape, -1, np.int64)
    t[0, :5] = rng.choice(shape[1], 5, replace=False)
    t[1, :2] = [7, 7]
    t[2, :3] = [shape[1] - 1, 0, 123_456]
    cl, cg = lossx.multilabel_margin_loss(x, t, "none", return_grad=True)
    gl, gg = lossx.multilabel_margin_loss(to_dev(lib, x), to_dev(lib, t), "none", return_grad=True)
    check(lib, gl, cl, "loss", 2 * ULP[F32] + 15 * shape[1] * 2.0**-52, 1e-30)
    np.testing.assert_array_equal(to_np(gg), cg)


def test_nan_and_hinge_boundary(lib):
    # NaN in x counts no hinge term (torch's kernel tests z > 0), a NaN weight
    # reaches the loss, z exactly 0 counts nothing: as on the CPU.
    x = np.array([[0.0, 1.0, 0.0, np.nan], [2.0, 1.0, 0.5, 0.25], [np.nan, 0.0, 1.0, 3.0]])
    y = np.array([1, 0, 2])
    for w in (None, np.array([1.0, np.nan, 2.0, 1.0])):
        for p in (1, 2):
            cl, cg = lossx.multi_margin_loss(x, y, p, 1.0, w, "none", return_grad=True)
            gl, gg = lossx.multi_margin_loss(to_dev(lib, x), to_dev(lib, y), p, 1.0,
                                             None if w is None else to_dev(lib, w), "none", return_grad=True)
            check(lib, gl, cl, f"loss w={w} p={p}", 1e-15, 1.0)
            check(lib, gg, cg, f"grad w={w} p={p}", 1e-15, 1.0)
    t = np.array([[1, -1, 0, 0], [0, 1, 2, 3], [3, 0, -1, 5]])
    cl, cg = lossx.multilabel_margin_loss(x, t, "none", return_grad=True)
    gl, gg = lossx.multilabel_margin_loss(to_dev(lib, x), to_dev(lib, t), "none", return_grad=True)
    np.testing.assert_array_equal(to_np(gl), cl)
    np.testing.assert_array_equal(to_np(gg), cg)


# ---- labels out of range -----------------------------------------------------------------------

def _cpu_message(call):
    with pytest.raises(IndexError) as e:
        call()
    return str(e.value)


@pytest.mark.parametrize("C", [1, 5, 3000])
def test_multi_margin_bad_labels_raise_then_context_usable(lib, rng, C):
    N = 2000  # many teams: the smallest position must win whatever the schedule
    x = rng.standard_normal((N, C)).astype(np.float32)
    for _ in range(5):
        y = rng.integers(0, C, N)
        pos = rng.choice(N, 4, replace=False)
        y[pos] = rng.choice([-1, -7, C, C + 5, 2**40], 4)
        msg = _cpu_message(lambda: lossx.multi_margin_loss(x, y, return_grad=True))
        with pytest.raises(IndexError, match=re.escape(msg)):
            lossx.multi_margin_loss(to_dev(lib, x), to_dev(lib, y), return_grad=True)
    y = rng.integers(0, C, N)
    check(lib, lossx.multi_margin_loss(to_dev(lib, x), to_dev(lib, y)), lossx.multi_margin_loss(x, y),
          "after the errors", 8 * ULP[F32] * C, 4.0)


@pytest.mark.parametrize("C", [1, 4, 37, 2500])
def test_multilabel_bad_labels_raise_like_the_cpu(lib, rng, C):
    # The list of each row ends at its first negative entry: a bad entry after
    # it is not an error; the reported position is the CPU's (the smallest flat one).
    N = 300
    x = rng.standard_normal((N, C)).astype(np.float32)
    raised = 0
    for _ in range(8):
        t = _mlm_target(rng, (N, C))
        for _ in range(int(rng.integers(1, 5))):
            t[int(rng.integers(0, N)), int(rng.integers(0, C))] = C + int(rng.integers(0, 3))
        try:
            c = lossx.multilabel_margin_loss(x, t)
        except IndexError as e:
            raised += 1
            with pytest.raises(IndexError, match=re.escape(str(e))):
                lossx.multilabel_margin_loss(to_dev(lib, x), to_dev(lib, t), return_grad=True)
        else:
            check(lib, lossx.multilabel_margin_loss(to_dev(lib, x), to_dev(lib, t)), c, "valid lists", 1e-6, 1e-30)
    assert raised > 0
    t = np.array([[0, -1, 9], [1, 5, -1]])  # the 9 follows the end marker: not read
    with pytest.raises(IndexError, match=r"label 5 at position \(1, 1\) is out of range \[-1, 3\)"):
        lossx.multilabel_margin_loss(to_dev(lib, np.ones((2, 3), np.float32)), to_dev(lib, t))


# ---- conventions, determinism, arguments ----------------------------------------------------------

def test_empty(lib):
    e = to_dev(lib, np.zeros((0, 5), np.float32))
    y = to_dev(lib, np.zeros(0, np.int64))
    t = to_dev(lib, np.zeros((0, 5), np.int64))
    for red, want in (("mean", np.nan), ("sum", 0.0)):
        np.testing.assert_equal(float(to_np(lossx.multi_margin_loss(e, y, reduction=red))), want)
        np.testing.assert_equal(float(to_np(lossx.multilabel_margin_loss(e, t, reduction=red))), want)
    loss, g = lossx.multi_margin_loss(e, y, reduction="none", return_grad=True)
    assert tuple(loss.shape) == (0,) and tuple(g.shape) == (0, 5)
    loss, g = lossx.multilabel_margin_loss(e, t, reduction="none", return_grad=True)
    assert tuple(loss.shape) == (0,) and tuple(g.shape) == (0, 5)


def test_many_rows_grid_stride_and_deterministic(lib, rng):
    # More rows than the grid has teams (65535 blocks x 8 warps), several
    # reduction chunks; repeated runs give the same bits.
    shape = (600_000, 3)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 3, shape[0])
    t = _mlm_target(rng, shape)
    dx, dy, dt = to_dev(lib, x), to_dev(lib, y), to_dev(lib, t)
    for red in ("mean", "sum"):
        cl, cg = lossx.multi_margin_loss(x, y, reduction=red, return_grad=True)
        gl, gg = lossx.multi_margin_loss(dx, dy, reduction=red, return_grad=True)
        check(lib, gl, cl, f"multi {red}", 1e-6, 1e-30)
        check(lib, gg, cg, f"multi {red} grad", 8 * ULP[F32] * 3, float(np.abs(cg).max()))
        first = to_np(gl).tobytes()
        for _ in range(2):
            assert to_np(lossx.multi_margin_loss(dx, dy, reduction=red)).tobytes() == first
        cl, cg = lossx.multilabel_margin_loss(x, t, reduction=red, return_grad=True)
        gl, gg = lossx.multilabel_margin_loss(dx, dt, reduction=red, return_grad=True)
        check(lib, gl, cl, f"multilabel {red}", 1e-6, 1e-30)
        np.testing.assert_array_equal(to_np(gg), cg)
        first = to_np(gl).tobytes()
        for _ in range(2):
            assert to_np(lossx.multilabel_margin_loss(dx, dt, reduction=red)).tobytes() == first


def test_bad_arguments_raise(lib):
    x = to_dev(lib, np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="integer class labels"):
        lossx.multi_margin_loss(x, to_dev(lib, np.zeros(2, np.float32)))
    with pytest.raises(ValueError, match=r"target has shape \(3,\).*input has shape \(2, 3\)"):
        lossx.multi_margin_loss(x, to_dev(lib, np.zeros(3, np.int64)))
    with pytest.raises(ValueError, match=r"weight has shape \(4,\)"):
        lossx.multi_margin_loss(x, to_dev(lib, np.zeros(2, np.int64)), weight=to_dev(lib, np.ones(4)))
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        lossx.multi_margin_loss(x, to_dev(lib, np.zeros(2, np.int64)), p=3)
    with pytest.raises(ValueError, match=r"target has shape \(2, 4\)"):
        lossx.multilabel_margin_loss(x, to_dev(lib, np.zeros((2, 4), np.int64)))


# ---- poly1_cross_entropy --------------------------------------------------------------------------
# Two cross_entropy sweeps on the GPU (fast-math exp/log, tree sums: see
# test_softmax_cuda.py) with the per-row arithmetic in the caller's library.
POLY_RTOL = {F32: 1e-5, F64: 1e-10, F16: 2e-3}
if BF16 is not None:
    POLY_RTOL[BF16] = 1.6e-2


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1, 1), (7, 7), (33, 129), (4, 6, 3), (129,), (64, 5000)], ids=str)
def test_poly1_matches_cpu(lib, dtype, reduction, shape, rng):
    x = (2 * rng.standard_normal(shape)).astype(dtype)
    rows = (shape[0],) + shape[2:] if len(shape) > 1 else ()
    C = shape[1] if len(shape) > 1 else shape[0]
    y = rng.integers(0, C, rows)
    if y.size > 2:
        y.reshape(-1)[1] = -100
    go = go_for(rng, reduction, rows, dtype)
    cl, cg = lossx.poly1_cross_entropy(x, y, 0.8, reduction, return_grad=True, grad_output=go)
    gl, gg = lossx.poly1_cross_entropy(to_dev(lib, x), to_dev(lib, y), 0.8, reduction, return_grad=True,
                                       grad_output=dev_go(lib, go))
    rt = POLY_RTOL[np.dtype(dtype)]
    nrows = max(1, int(np.prod(rows)))
    check(lib, gl, cl, "loss", rt, float(np.max(np.abs(cl))) * (nrows if reduction == "sum" else 1) + 1e-30)
    check(lib, gg, cg, "grad", rt, float(np.max(np.abs(cg.astype(np.float64)))) + 1e-30)
    assert dtype_name(gg) == np.dtype(dtype).name
    if reduction != "none":
        assert tuple(gl.shape) == ()  # a 0-d device array, nothing read back
    fwd = lossx.poly1_cross_entropy(to_dev(lib, x), to_dev(lib, y), 0.8, reduction)
    check(lib, fwd, cl, "forward only", rt, float(np.max(np.abs(cl))) * (nrows if reduction == "sum" else 1) + 1e-30)


def test_poly1_bad_labels_and_all_ignored(lib):
    x = to_dev(lib, np.ones((3, 4), np.float32))
    with pytest.raises(IndexError, match="position 1"):
        lossx.poly1_cross_entropy(x, to_dev(lib, np.array([0, 4, 1])))
    loss, g = lossx.poly1_cross_entropy(x, to_dev(lib, np.full(3, -100)), return_grad=True)
    assert np.isnan(float(to_np(loss)))
    np.testing.assert_array_equal(to_np(g), np.zeros((3, 4), np.float32))
