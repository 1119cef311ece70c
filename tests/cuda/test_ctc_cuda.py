"""GPU ctc_loss (cuda/ctc.cu) against the CPU path on the same inputs.

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

from test_ctc import BLANKS, SHAPES, _lengths, _log_probs, _targets  # noqa: E402

F32, F64, F16 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)
DTYPES = [F32, F64, F16] + ([BF16] if BF16 is not None else [])
REDUCTIONS = ["none", "mean", "sum"]
# Both devices compute in float64 from the same inputs: they differ in exp/log
# (CUDA's vs Highway's, ~1 ulp), the order of the blank class's occupation sum
# and of the reductions: ulps of the log-space sums (|alpha| ~ T |log p|).
# float32/half outputs are those float64 results rounded once: one storage ulp.
ATOL64 = 1e-12
STORE = {F32: 2.0**-23, F64: 0.0, F16: 2.0**-10}
if BF16 is not None:
    STORE[BF16] = 2.0**-7


def check(lib, gpu, cpu, what, dtype, T):
    same_ns(lib, gpu)
    g = np.asarray(to_np(gpu), dtype=np.float64)
    c = np.asarray(cpu, dtype=np.float64)
    assert g.shape == c.shape, (what, g.shape, c.shape)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(c), err_msg=what + ": NaN pattern")
    fin = np.isfinite(c)
    np.testing.assert_array_equal(g[~fin], c[~fin], err_msg=what + ": infinities")
    tol = ATOL64 * T + STORE[np.dtype(dtype)]
    np.testing.assert_allclose(g[fin], c[fin], rtol=tol, atol=tol * max(1.0, float(np.max(np.abs(c[fin]),
                                                                                          initial=0.0))),
                               err_msg=what)


def _case(rng, shape, dtype, layout, blank):
    T, N, C, S = shape
    b = BLANKS[blank](C)
    labels = np.array([c for c in range(C) if c != b])
    lp = _log_probs(rng, T, N, C, np.float64).astype(dtype)
    il, tl = _lengths(rng, T, N, S, labels)
    padded, concat = _targets(rng, N, S, labels, tl)
    return lp, (padded if layout == "padded" else concat), il, tl, b


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("blank", list(BLANKS))
def test_ctc_matches_cpu(lib, rng, dtype, reduction, layout, zero_infinity, blank):
    for shape in SHAPES:
        lp, tg, il, tl, b = _case(rng, shape, dtype, layout, blank)
        N = shape[1]
        go = rng.uniform(0.5, 2.0, N).astype(np.float32) if reduction == "none" else 1.25
        cl, cg = lossx.ctc_loss(lp, tg, il, tl, b, reduction, zero_infinity, return_grad=True, grad_output=go)
        gl, gg = lossx.ctc_loss(to_dev(lib, lp), to_dev(lib, tg), il, tl, b, reduction, zero_infinity,
                                return_grad=True, grad_output=to_dev(lib, go) if reduction == "none" else go)
        check(lib, gl, cl, f"{shape} loss", dtype, shape[0])
        check(lib, gg, cg, f"{shape} grad", dtype, shape[0])
        fl = lossx.ctc_loss(to_dev(lib, lp), to_dev(lib, tg), il, tl, b, reduction, zero_infinity)
        np.testing.assert_array_equal(to_np(fl), to_np(gl))  # forward alone: two alpha rows, same bits


def test_long_sequences_more_states_than_threads(lib, rng):
    # 2L + 1 = 601 states: each of the block's 256 threads strides several states.
    T, N, C, L = 900, 3, 40, 300
    lp = _log_probs(rng, T, N, C, np.float32)
    tg = rng.integers(1, C, (N, L))
    il, tl = np.array([900, 800, 650]), np.array([300, 250, 300])
    cl, cg = lossx.ctc_loss(lp, tg, il, tl, reduction="sum", return_grad=True)
    gl, gg = lossx.ctc_loss(to_dev(lib, lp), to_dev(lib, tg), il, tl, reduction="sum", return_grad=True)
    check(lib, gl, cl, "loss", F32, T)
    check(lib, gg, cg, "grad", F32, T)
    gl2, gg2 = lossx.ctc_loss(to_dev(lib, lp), to_dev(lib, tg), il, tl, reduction="sum", return_grad=True)
    np.testing.assert_array_equal(to_np(gl2), to_np(gl))  # the same bits every run
    np.testing.assert_array_equal(to_np(gg2), to_np(gg))


def test_bad_labels_raise_the_cpu_message(lib, rng):
    lp = _log_probs(rng, 6, 3, 5, np.float32)
    dlp = to_dev(lib, lp)
    il, tl = np.array([6, 6, 6]), np.array([2, 3, 1])
    for tg in (np.array([[1, 2, 9], [1, 5, 2], [3, 7, 7]]),  # padded: 5 at [1, 1]; padding (9, 7) is not read
               np.array([1, 2, 1, 0, 2, 3]),                 # concatenated: the blank at [3]
               np.array([[1, 2, 0], [1, 2, 3], [-1, 0, 0]])):  # -1 at [2, 0]
        with pytest.raises((IndexError, ValueError)) as cpu:
            lossx.ctc_loss(lp, tg, il, tl)
        with pytest.raises(cpu.type, match=re.escape(str(cpu.value))):
            lossx.ctc_loss(dlp, to_dev(lib, tg), il, tl)
    # The context is still usable afterwards.
    gl = lossx.ctc_loss(dlp, to_dev(lib, np.array([[1, 2, 3]] * 3)), il, np.array([3, 3, 3]))
    assert np.isfinite(float(to_np(gl)))


def test_empty_batch_and_lengths(lib):
    lp = to_dev(lib, np.zeros((4, 0, 3), np.float32))
    tg = to_dev(lib, np.zeros((0, 2), np.int64))
    assert np.isnan(float(to_np(lossx.ctc_loss(lp, tg, [], []))))
    assert float(to_np(lossx.ctc_loss(lp, tg, [], [], reduction="sum"))) == 0.0
    # Zero input length: inf (or -0.0 for an empty target), and a zero gradient.
    lp2 = np.log(np.full((3, 2, 4), 0.25, np.float32))
    loss, g = lossx.ctc_loss(to_dev(lib, lp2), to_dev(lib, np.array([[1, 2], [1, 1]])), [0, 0], [2, 0],
                             reduction="none", return_grad=True)
    np.testing.assert_array_equal(to_np(loss), [np.inf, -0.0])
    assert not np.any(to_np(g))
