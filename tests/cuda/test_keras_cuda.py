"""GPU Keras row losses (cuda/keras_rows.cu: categorical, sparse and focal cross
entropy, categorical hinge, cosine_similarity, dice, tversky; the from_logits
cross entropies through cuda/softmax.cu) and tf's two softmax ops, against the
CPU path on the same inputs.

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

from test_keras import make  # noqa: E402
from test_keras_cuda_functors import _focal_condition  # noqa: E402

F32, F64, F16 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)
DTYPES = [F32, F64, F16] + ([BF16] if BF16 is not None else [])
REDUCTIONS = [None, "sum", "sum_over_batch_size"]
# GPU and CPU compute each row in float32 (float64 for float64) in different
# orders (a warp or block tree vs SIMD lanes), with libm (or fast-math, for the
# from_logits cross entropies) against Highway's exp/log: 64 ulps times sqrt(C),
# relative to the row's magnitude. Half gradients: one storage ulp more.
K = 64
ULP = {F32: 2.0**-23, F64: 2.0**-52, F16: 2.0**-23}
STORE_ULP = {F32: 0.0, F64: 0.0, F16: 2.0**-10}
if BF16 is not None:
    ULP[BF16] = 2.0**-23
    STORE_ULP[BF16] = 2.0**-7

CASES = [
    ("categorical_crossentropy", {}),
    ("categorical_crossentropy", {"label_smoothing": 0.1, "soft": True}),
    ("categorical_crossentropy", {"from_logits": True}),
    ("categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.2, "axis": 1}),
    ("sparse_categorical_crossentropy", {}),
    ("sparse_categorical_crossentropy", {"ignore_class": 2}),
    ("sparse_categorical_crossentropy", {"from_logits": True, "ignore_class": 0}),
    ("categorical_focal_crossentropy", {}),
    ("categorical_focal_crossentropy", {"from_logits": True}),
    ("categorical_focal_crossentropy", {"alpha": "vec", "gamma": 0.5, "label_smoothing": 0.1, "soft": True}),
    ("categorical_hinge", {}),
    ("cosine_similarity", {}),
    ("cosine_similarity", {"axis": (1, 2)}),
    ("dice", {}),
    ("dice", {"axis": -1}),
    ("tversky", {"alpha": 0.9, "beta": 0.1, "axis": (0, 2)}),
]
# Rows of 1 and 7 elements (fewer than a warp's lanes), 129 (a warp and a tail),
# 2500 and 4099 (a block per row); dice's axis=None row of 24594 elements spans
# two of the sums losses' 2^14-element segments.
SHAPES = [(1, 1, 1), (2, 3, 7), (33, 1, 129), (3, 2, 2500), (2, 3, 4099)]


def _opts(o, C, dtype, rng):
    o = {k: v for k, v in o.items() if k != "soft"}
    if o.get("alpha") == "vec":
        o["alpha"] = rng.uniform(0.1, 0.9, C).astype(np.float32)
    return o


def _inputs(name, o, shape, dtype, rng):
    o_make = dict(o)
    if o_make.get("alpha") == "vec":
        o_make.pop("alpha")
    t, p = make(name, shape, dtype, rng, o_make)
    return t, p, _opts(o, shape[-1], dtype, rng)


def check(lib, gpu, cpu, what, rtol, scale, store=0.0):
    same_ns(lib, gpu)
    g = np.asarray(to_np(gpu), dtype=np.float64)
    c = np.asarray(cpu, dtype=np.float64)
    assert g.shape == c.shape, (what, g.shape, c.shape)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(c), err_msg=what + ": NaN pattern")
    fin = np.isfinite(c)
    np.testing.assert_array_equal(g[~fin], c[~fin], err_msg=what + ": infinities")
    np.testing.assert_allclose(g[fin], c[fin], rtol=rtol + store, atol=(rtol + store) * scale + 1e-300,
                               err_msg=what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS, ids=str)
@pytest.mark.parametrize("name,o", CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_keras_rows_match_cpu(lib, name, o, reduction, dtype, rng):
    fn = getattr(lossx.keras, name)
    for shape in SHAPES:
        t, p, opts = _inputs(name, o, shape, dtype, rng)
        rows = fn(t, p, **opts)  # per-row values on the CPU: the reductions' error scale
        go = rng.uniform(0.5, 2.0, np.shape(rows)).astype(np.float32) if reduction is None else 0.75
        cl, cg = fn(t, p, **opts, reduction=reduction, return_grad=True, grad_output=go)
        dopts = dict(opts, alpha=to_dev(lib, opts["alpha"])) if isinstance(opts.get("alpha"), np.ndarray) else opts
        gl, gg = fn(to_dev(lib, t), to_dev(lib, p), **dopts, reduction=reduction, return_grad=True,
                    grad_output=to_dev(lib, go) if reduction is None else go)
        C = p.size // max(1, np.size(rows))
        rt = K * ULP[np.dtype(dtype)] * max(1.0, np.sqrt(C))
        if name == "categorical_focal_crossentropy":
            rt *= _focal_condition(p, opts)  # q's rounding amplified by q / (1 - q): see there
        r = np.abs(np.asarray(rows, np.float64))
        lscale = max(1.0, float(np.sum(r[np.isfinite(r)])) if reduction else float(np.max(r, initial=0.0)))
        check(lib, gl, cl, f"{name} {shape} loss", rt, lscale)
        cgf = np.abs(np.asarray(cg, np.float64))
        check(lib, gg, cg, f"{name} {shape} grad", rt, float(np.max(cgf[np.isfinite(cgf)], initial=1e-30)),
              STORE_ULP[np.dtype(dtype)])


@pytest.mark.parametrize("name,o", CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_nan_rows_and_determinism(lib, name, o, rng):
    fn = getattr(lossx.keras, name)
    t, p, opts = _inputs(name, o, (6, 2, 37), np.float32, rng)
    p[1, 0, 3] = np.nan
    p[4, 1, 36] = np.nan
    dopts = dict(opts, alpha=to_dev(lib, opts["alpha"])) if isinstance(opts.get("alpha"), np.ndarray) else opts
    cl, cg = fn(t, p, **opts, return_grad=True)
    dt, dp = to_dev(lib, t), to_dev(lib, p)
    gl, gg = fn(dt, dp, **dopts, return_grad=True)
    check(lib, gl, cl, "loss", K * ULP[F32] * 10, 1.0)
    np.testing.assert_array_equal(np.isnan(to_np(gg)), np.isnan(cg))
    gl2, gg2 = fn(dt, dp, **dopts, return_grad=True)
    np.testing.assert_array_equal(to_np(gl2), to_np(gl))  # same bits every run
    np.testing.assert_array_equal(to_np(gg2), to_np(gg))


def test_sparse_labels_on_the_gpu(lib, rng):
    K_ = lossx.keras
    p = rng.uniform(0.1, 1.0, (5, 4)).astype(np.float32)
    dp = to_dev(lib, p)
    with pytest.raises(IndexError, match=r"label 4 at position 3 is out of range \[0, 4\)"):
        K_.sparse_categorical_crossentropy(to_dev(lib, np.array([0, 1, 2, 4, -1])), dp)
    with pytest.raises(IndexError, match=r"label -1 at position 4 is out of range"):
        K_.sparse_categorical_crossentropy(to_dev(lib, np.array([0, 1, 2, 3, -1])), dp, from_logits=True)
    # An out-of-range ignore_class is no error; a mean over no counted row is 0.
    y = np.array([9, 1, 9, 3, 0])
    c = K_.sparse_categorical_crossentropy(y, p, ignore_class=9, reduction="sum_over_batch_size")
    g = K_.sparse_categorical_crossentropy(to_dev(lib, y), dp, ignore_class=9, reduction="sum_over_batch_size")
    check(lib, g, c, "ignored", 1e-6, 1.0)
    loss, grad = K_.sparse_categorical_crossentropy(to_dev(lib, np.full(5, 9)), dp, ignore_class=9,
                                                    reduction="sum_over_batch_size", return_grad=True)
    assert float(to_np(loss)) == 0.0 and not np.any(to_np(grad))
    # Float labels holding integers are labels; others are an error.
    c = K_.sparse_categorical_crossentropy(y.astype(np.float32) % 4, p)
    g = K_.sparse_categorical_crossentropy(to_dev(lib, y.astype(np.float32) % 4), dp)
    check(lib, g, c, "float labels", 1e-6, 1.0)
    with pytest.raises(ValueError, match="float labels must hold integers; position 1 holds 0.5"):
        K_.sparse_categorical_crossentropy(to_dev(lib, np.array([1.0, 0.5, 2, 3, 0], np.float32)), dp)


@pytest.mark.parametrize("name", ["categorical_crossentropy", "categorical_hinge", "dice"])
def test_empty_batch(lib, name):
    fn = getattr(lossx.keras, name)
    p = to_dev(lib, np.zeros((0, 4), np.float32))
    o = {"axis": -1} if name == "dice" else {}
    loss, g = fn(p, p, **o, reduction="sum_over_batch_size", return_grad=True)
    assert float(to_np(loss)) == 0.0 and tuple(g.shape) == (0, 4)
    assert tuple(fn(p, p, **o).shape) == (0,)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", ["softmax_cross_entropy_with_logits", "sparse_softmax_cross_entropy_with_logits"])
def test_tf_softmax_ops_match_cpu(lib, op, dtype, rng):
    fn = getattr(lossx.tf, op)
    for shape in ((6, 7), (2, 3, 1000), (4, 3000)):
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        z = rng.integers(0, shape[-1], shape[:-1]) if op.startswith("sparse") else rng.random(shape).astype(dtype)
        go = rng.uniform(-1, 1, shape[:-1]).astype(np.float32)
        cl, cg = fn(labels=z, logits=x, return_grad=True, grad_output=go)
        gl, gg = fn(labels=to_dev(lib, z), logits=to_dev(lib, x), return_grad=True, grad_output=to_dev(lib, go))
        rt = K * ULP[np.dtype(dtype)] * np.sqrt(shape[-1])
        check(lib, gl, cl, f"{op} {shape} loss", rt, float(np.max(np.abs(np.asarray(cl, np.float64)))))
        check(lib, gg, cg, f"{op} {shape} grad", rt, float(np.max(np.abs(np.asarray(cg, np.float64)))),
              STORE_ULP[np.dtype(dtype)])
