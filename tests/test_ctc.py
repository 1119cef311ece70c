"""Sequence family: ctc_loss against torch 2.13 CPU float64 + autograd, plus
finite differences through log_softmax and every bad-input rule."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossx
from _util import BF16, FLOAT_DTYPES, close, t64

REDUCTIONS = ["none", "mean", "sum"]
# (T, N, C, S): odd sizes; C = 2 leaves a single non-blank label (every target is repeats).
SHAPES = [(1, 1, 2, 1), (7, 4, 5, 3), (33, 6, 29, 9), (51, 5, 2, 13), (9, 11, 3, 4)]
BLANKS = {"first": lambda C: 0, "last": lambda C: C - 1, "mid": lambda C: C // 2}
# float64: the gradient is exp of differences of log-space sums over O(T) frames
# (|alpha|, |beta| ~ T * |log p|), summed in another order than torch's log-add:
# a few ulp of those sums, i.e. ~1e-13 absolute at T = 51. float32 outputs are
# float64 results rounded once (inputs are identical), well inside float32's
# tolerance.
GRAD_SCALE = 10.0


def _log_probs(rng, T, N, C, dtype, spread=2.0):
    x = spread * rng.standard_normal((T, N, C))
    return torch.tensor(x).log_softmax(-1).numpy().astype(dtype)


def _lengths(rng, T, N, S, labels):
    """Random lengths with the special samples CTC must get right placed first:
    a full-length sample, an all-repeats target with exactly enough frames and one
    frame too few, a target longer than its input, empty input, empty target."""
    il = rng.integers(0, T + 1, N)
    tl = rng.integers(0, S + 1, N)
    specials = [
        (T, min(S, (T + 1) // 2)),
        (min(T, 2 * min(S, (T + 1) // 2) - 1), min(S, (T + 1) // 2)),  # repeats: 2L - 1 frames suffice
        (max(2 * min(S, (T + 1) // 2) - 2, 0), min(S, (T + 1) // 2)),  # one frame too few for all repeats
        (min(T, max(S - 1, 0)), S),  # more labels than frames
        (0, 0), (0, min(S, 1)), (T, 0),
    ]
    for i, (a, b) in enumerate(specials[:N]):
        il[i], tl[i] = max(min(a, T), 0), b
    return il, tl


def _targets(rng, N, S, labels, tl, repeat_rows=(1, 2)):
    padded = rng.choice(labels, (N, S)).astype(np.int64)
    for i in repeat_rows:
        if i < N:
            padded[i, :] = labels[0]  # a repeated label needs a blank between copies
    for i in range(N):
        padded[i, tl[i]:] = -1  # padding is never read (torch does not either)
    concat = np.concatenate([padded[i, : tl[i]] for i in range(N)]) if N else np.zeros(0, np.int64)
    return padded, concat


def _torch_ref(lp, targets, il, tl, blank, reduction, zero_infinity, go):
    x = t64(lp, True)
    out = F.ctc_loss(x, torch.tensor(targets), torch.tensor(il), torch.tensor(tl), blank=blank,
                     reduction=reduction, zero_infinity=zero_infinity)
    if reduction == "none":
        out.backward(t64(go))
    else:
        (out * go).backward()
    return out.detach(), x.grad


def _go(rng, reduction, shape):
    return rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape) if reduction == "none" else float(
        rng.uniform(0.5, 2.0))


def _run_case(rng, shape, dtype, layout, reduction, zero_infinity, blank_of=BLANKS["first"]):
    T, N, C, S = shape
    blank = blank_of(C)
    labels = np.array([c for c in range(C) if c != blank])
    lp = _log_probs(rng, T, N, C, dtype)
    il, tl = _lengths(rng, T, N, S, labels)
    padded, concat = _targets(rng, N, S, labels, tl)
    targets = padded if layout == "padded" else concat
    go = _go(rng, reduction, (N,))
    ref, rgrad = _torch_ref(lp, targets, il, tl, blank, reduction, zero_infinity, go)
    loss, grad = lossx.ctc_loss(lp, targets, il, tl, blank, reduction, zero_infinity, return_grad=True,
                                grad_output=go)
    return loss, grad, ref, rgrad, (lp, targets, il, tl, blank)


def _check(loss, grad, ref, rgrad, dtype):
    acc = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    assert np.asarray(loss).dtype == acc and np.asarray(loss).shape == tuple(ref.shape)
    close(loss, ref, dtype, 1.0, "loss")
    assert grad.dtype == np.dtype(dtype) and grad.shape == tuple(rgrad.shape)
    # NaN (impossible alignments without zero_infinity) must sit exactly where torch puts it.
    np.testing.assert_array_equal(np.isnan(np.asarray(grad, np.float64)), torch.isnan(rgrad).numpy())
    close(grad, rgrad, dtype, GRAD_SCALE if np.dtype(dtype) == np.float64 else 1.0, "grad")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("blank", list(BLANKS))
def test_vs_torch(rng, shape, dtype, layout, reduction, zero_infinity, blank):
    loss, grad, ref, rgrad, _ = _run_case(rng, shape, dtype, layout, reduction, zero_infinity, BLANKS[blank])
    _check(loss, grad, ref, rgrad, dtype)
    if shape[1] >= 4 and not zero_infinity:
        assert np.isinf(np.asarray(ref)).any()  # the impossible samples really are in there


@pytest.mark.parametrize("layout", ["padded", "concatenated"])
def test_forward_only_equals_fused(rng, layout):
    # The forward alone keeps two alpha rows instead of the table: same numbers.
    for reduction in REDUCTIONS:
        loss, _, _, _, (lp, targets, il, tl, blank) = _run_case(rng, (33, 6, 29, 9), np.float64, layout,
                                                                reduction, False)
        np.testing.assert_array_equal(lossx.ctc_loss(lp, targets, il, tl, blank, reduction), loss)


def test_every_simd_target_and_thread_count(cpu_config, rng):
    for dtype in (np.float32, np.float64):
        for layout in ("padded", "concatenated"):
            loss, grad, ref, rgrad, _ = _run_case(rng, (33, 6, 29, 9), dtype, layout, "none", False,
                                                  BLANKS["mid"])
            _check(loss, grad, ref, rgrad, dtype)


def test_bit_identical_across_threads(rng):
    T, N, C, S = 41, 37, 23, 11
    lp = _log_probs(rng, T, N, C, np.float32)
    labels = np.arange(1, C)
    il, tl = _lengths(rng, T, N, S, labels)
    padded, concat = _targets(rng, N, S, labels, tl)
    outs = []
    for nt in (1, 2, 3):
        lossx.set_num_threads(nt)
        try:
            res = [lossx.ctc_loss(lp, tg, il, tl, reduction=r, return_grad=True)
                   for tg in (padded, concat) for r in REDUCTIONS]
        finally:
            lossx.set_num_threads(0)
        outs.append(b"".join(np.asarray(l).tobytes() + g.tobytes() for l, g in res))
    assert outs[0] == outs[1] == outs[2]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_all_dtypes(rng, dtype):
    # Half inputs are widened exactly and computed in float64; the reference gets
    # the same rounded values, so only the float32 loss and the rounding of the
    # gradient to the input dtype remain (RTOL/ATOL of _util).
    for layout in ("padded", "concatenated"):
        loss, grad, ref, rgrad, _ = _run_case(rng, (13, 5, 7, 4), dtype, layout, "mean", False)
        _check(loss, grad, ref, rgrad, dtype)


def test_long_float32_sequence(rng):
    # 400 frames, 60 labels: float32 log-space recursions drift; lossx's float64
    # recursion returns the float64 answer rounded once.
    T, N, C, S = 400, 3, 31, 60
    lp = _log_probs(rng, T, N, C, np.float32, spread=1.0)
    tl = np.array([60, 45, 13])
    il = np.array([400, 333, 100])
    tg = rng.integers(1, C, (N, S))
    ref, rgrad = _torch_ref(lp, tg, il, tl, 0, "none", False, np.ones(N))
    loss, grad = lossx.ctc_loss(lp, tg, il, tl, reduction="none", return_grad=True)
    np.testing.assert_allclose(loss, ref.numpy(), rtol=1e-6)
    np.testing.assert_allclose(grad, rgrad.numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_log_probs(rng, dtype):
    # Log-probabilities down to about -2000 (logits 300 sigma apart): the
    # recursions' exp terms underflow exactly where torch's do, forced alignments
    # through near-impossible classes stay finite, and none becomes inf or NaN
    # unless torch's does.
    T, N, C, S = 15, 6, 5, 4
    lp = _log_probs(rng, T, N, C, dtype, spread=300.0)
    assert lp.min() < -708
    il = np.array([15, 15, 7, 8, 4, 15])
    tl = np.array([4, 2, 4, 3, 2, 1])
    tg = rng.integers(1, C, (N, S))
    tg[2] = [1, 2, 1, 2]  # 7 frames for 4 labels: hardly any freedom, so improbable frames are forced
    ref, rgrad = _torch_ref(lp, tg, il, tl, 0, "none", False, np.ones(N))
    assert np.isfinite(ref.numpy()).all() and (ref.numpy() > 700).any()
    loss, grad = lossx.ctc_loss(lp, tg, il, tl, reduction="none", return_grad=True)
    _check(loss, grad, ref, rgrad, dtype)


def _ctc_call(device):
    lp = np.log(np.full((2, 1, 3), 1 / 3))
    loss = np.zeros(1)
    # device, stream, dtype (float64), T, N, C, log_probs, targets, concatenated, S,
    # input_lengths, target_lengths, blank, zero_infinity, reduction (mean), loss, grad, grad_output
    lossx._core.ctc(device, 0, 1, 2, 1, 3, lp, np.array([1]), True, 1, np.array([2]), np.array([1]), 0, False,
                    1, loss, None, None)
    return lp, loss[0]


@pytest.mark.skipif(lossx._core.cuda_compiled(), reason="this build has the CUDA backend")
def test_cuda_switch_without_cuda_build():
    # The dispatch's device switch (a CUDA build reaches cuda/ctc.cu with GPU pointers).
    lp, v = _ctc_call(0)
    close(v, F.ctc_loss(t64(lp), torch.tensor([1]), [2], [1]), np.float64)  # CPU: these arguments are fine
    with pytest.raises(RuntimeError, match="built without CUDA"):
        _ctc_call(1)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("tshape", ["1d", "2d"])
def test_unbatched(rng, reduction, tshape):
    T, C, L = 11, 6, 4
    lp = _log_probs(rng, T, 1, C, np.float64)[:, 0]
    y = rng.integers(1, C, L)
    tg = y if tshape == "1d" else y[None]
    x = t64(lp, True)
    ref = F.ctc_loss(x, torch.tensor(tg), torch.tensor(9), torch.tensor(L), reduction=reduction)
    ref.backward(torch.tensor(1.5, dtype=torch.float64))
    for il, tl in ((9, L), (np.array(9), np.array(L)), ([9], (L,)), (torch.tensor(9), torch.tensor([L]))):
        loss, g = lossx.ctc_loss(lp, tg, il, tl, reduction=reduction, return_grad=True, grad_output=1.5)
        assert np.asarray(loss).shape == () and g.shape == (T, C)
        close(loss, ref.detach(), np.float64)
        close(g, x.grad, np.float64)


def test_lengths_and_targets_as_other_types(rng):
    T, N, C, S = 9, 3, 5, 4
    lp = _log_probs(rng, T, N, C, np.float64)
    tg = rng.integers(1, C, (N, S))
    il, tl = [9, 8, 5], (4, 2, 3)
    ref = lossx.ctc_loss(lp, tg, np.array(il), np.array(tl), reduction="none")
    close(ref, F.ctc_loss(t64(lp), torch.tensor(tg), torch.tensor(il), torch.tensor(tl), reduction="none"),
          np.float64)
    for it in (np.int32, np.int64, np.uint8, np.int16):
        np.testing.assert_array_equal(
            lossx.ctc_loss(lp, tg.astype(it), np.array(il, it), np.array(tl, it), reduction="none"), ref)
    np.testing.assert_array_equal(lossx.ctc_loss(lp, tg, il, tl, reduction="none"), ref)
    np.testing.assert_array_equal(lossx.ctc_loss(lp, tg, torch.tensor(il), torch.tensor(tl).int(),
                                                 reduction="none"), ref)
    # Strided log_probs (a (N, T, C) array viewed time-major) are copied once.
    strided = np.ascontiguousarray(lp.transpose(1, 0, 2)).transpose(1, 0, 2)
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(lossx.ctc_loss(strided, tg, il, tl, reduction="none"), ref)


def test_empty_batch_and_empty_inputs():
    # torch raises for empty log_probs; lossx follows its empty-batch convention.
    for red, want in (("mean", np.nan), ("sum", 0.0)):
        e = np.zeros((5, 0, 3))
        loss, g = lossx.ctc_loss(e, np.zeros((0, 2), np.int64), [], [], reduction=red, return_grad=True)
        np.testing.assert_equal(loss, want)
        assert g.shape == (5, 0, 3)
    assert lossx.ctc_loss(np.zeros((5, 0, 3)), np.zeros(0, np.int64), [], [], reduction="none").shape == (0,)
    # T = 0: every input length is 0; an empty target costs 0, any other one inf.
    lp = np.zeros((0, 3, 4))
    loss, g = lossx.ctc_loss(lp, np.array([1, 2, 3]), [0, 0, 0], [0, 2, 1], reduction="none", return_grad=True)
    np.testing.assert_array_equal(loss, [0.0, np.inf, np.inf])
    assert g.shape == (0, 3, 4)
    np.testing.assert_array_equal(
        lossx.ctc_loss(lp, np.array([1, 2, 3]), [0, 0, 0], [0, 2, 1], reduction="none", zero_infinity=True), 0.0)


def test_zero_lengths_vs_torch(rng):
    # Every combination of empty input / empty target torch accepts.
    T, C = 6, 4
    lp = _log_probs(rng, T, 4, C, np.float64)
    il, tl = np.array([0, 0, 6, 3]), np.array([0, 2, 0, 0])
    tg = rng.integers(1, C, (4, 2))
    for zi in (False, True):
        ref, rgrad = _torch_ref(lp, tg, il, tl, 0, "none", zi, np.ones(4))
        loss, grad = lossx.ctc_loss(lp, tg, il, tl, reduction="none", zero_infinity=zi, return_grad=True)
        _check(loss, grad, ref, rgrad, np.float64)
        assert (grad[:, :2] == 0).all()  # no frames: no gradient, even for the infinite loss
        assert (grad[3:, 3] == 0).all()  # frames past input_length


def test_nan_and_neg_inf_like_torch(rng):
    # NaN in -> NaN out exactly where torch's formulas put it; a -inf
    # log-probability (a class with probability 0) gives NaN at that entry, as torch.
    T, N, C, S = 12, 4, 6, 4
    lp = _log_probs(rng, T, N, C, np.float64)
    lp[5, 0, 2] = np.nan
    lp[11, 1, 0] = np.nan  # last frame of a full-length sample
    lp[:, 2, 4] = -np.inf
    lp[3, 3, 1] = -np.inf
    il, tl = np.array([12, 12, 12, 9]), np.array([4, 3, 2, 4])
    tg = np.array([[1, 2, 3, 1], [2, 2, 5, 0], [1, 3, 0, 0], [1, 5, 1, 4]])
    for red in REDUCTIONS:
        for zi in (False, True):
            ref, rgrad = _torch_ref(lp, tg, il, tl, 0, red, zi, np.ones(N) if red == "none" else 1.0)
            loss, grad = lossx.ctc_loss(lp, tg, il, tl, 0, red, zi, return_grad=True)
            np.testing.assert_array_equal(np.isnan(loss), torch.isnan(ref).numpy())
            _check(loss, grad, ref, rgrad, np.float64)


def _fd_check(f, x, g, rng, h=1e-6):
    v = rng.standard_normal(x.shape)
    fd = (f(x + h * v) - f(x - h * v)) / (2 * h)
    np.testing.assert_allclose(np.sum(g * v), fd, rtol=1e-6, atol=1e-8)


def _log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
def test_finite_differences_through_log_softmax(rng, reduction, layout):
    # Second oracle: logits -> log_softmax -> ctc, where torch's convention
    # (exp(lp) - gamma) and the pure partial (-gamma) agree after log_softmax's
    # backward g - softmax * sum(g).
    T, N, C, S = 9, 4, 5, 3
    z = rng.standard_normal((T, N, C))
    labels = np.arange(1, C)
    il, tl = np.array([9, 7, 8, 5]), np.array([3, 2, 0, 3])
    padded, concat = _targets(rng, N, S, labels, tl, repeat_rows=(3,))
    tg = padded if layout == "padded" else concat
    go = _go(rng, reduction, (N,))
    w = go if reduction == "none" else np.ones(N)

    def f(zz):
        out = lossx.ctc_loss(_log_softmax(zz), tg, il, tl, reduction=reduction)
        return float(np.sum(np.asarray(out) * w)) if reduction == "none" else float(out) * go

    lp = _log_softmax(z)
    _, g = lossx.ctc_loss(lp, tg, il, tl, reduction=reduction, return_grad=True, grad_output=go)
    dz = g - np.exp(lp) * g.sum(-1, keepdims=True)
    _fd_check(f, z, dz, rng)


def test_gradient_convention_pure_partial(rng):
    # The documented relation: d loss / d log_probs alone = grad - scale * exp(lp)
    # on each sample's first input_length frames (checked by finite differences
    # on log_probs that are NOT renormalised).
    T, N, C = 8, 3, 4
    lp = _log_probs(rng, T, N, C, np.float64)
    tg = np.array([[1, 2], [3, 3], [2, 0]])
    il, tl = np.array([8, 6, 5]), np.array([2, 2, 1])
    _, g = lossx.ctc_loss(lp, tg, il, tl, reduction="sum", return_grad=True)
    mask = (np.arange(T)[:, None] < il[None, :])[..., None]
    pure = g - np.exp(lp) * mask
    _fd_check(lambda x: float(lossx.ctc_loss(x, tg, il, tl, reduction="sum")), lp, pure, rng)
    np.testing.assert_allclose((g * mask).sum(-1), 0.0, atol=1e-12)  # exp(lp) and gamma both sum to 1


def test_catalog_and_export():
    assert lossx._catalog.CATALOG["ctc_loss"] == ("sequence", ("log_probs",))
    assert "ctc_loss" in lossx.__all__ and lossx.ctc_loss.__doc__


class TestBadInput:
    lp = _log_probs(np.random.default_rng(1), 6, 3, 5, np.float64)
    tg = np.array([[1, 2, 3], [4, 4, 0], [2, 0, 0]])
    il = np.array([6, 5, 4])
    tl = np.array([3, 2, 1])

    def call(self, lp=None, tg=None, il=None, tl=None, **kw):
        return lossx.ctc_loss(self.lp if lp is None else lp, self.tg if tg is None else tg,
                              self.il if il is None else il, self.tl if tl is None else tl, **kw)

    def test_dtypes(self):
        with pytest.raises(TypeError, match="log_probs must be float32, float64"):
            self.call(lp=self.lp.astype(np.int64))
        with pytest.raises(TypeError, match="targets must hold integer class labels, got dtype float64"):
            self.call(tg=self.tg.astype(np.float64))
        with pytest.raises(TypeError, match="input_lengths must hold integers"):
            self.call(il=self.il.astype(np.float32))
        with pytest.raises(TypeError, match="target_lengths must hold integers.*bool"):
            self.call(tl=np.array([True, True, False]))
        with pytest.raises(TypeError, match="blank must be an integer"):
            self.call(blank=0.0)

    def test_ranks(self):
        with pytest.raises(ValueError, match=r"log_probs must be \(T, N, C\).*shape \(30,\)"):
            self.call(lp=self.lp.reshape(-1)[:30])
        with pytest.raises(ValueError, match=r"targets must be 1-D .* got shape \(3, 1, 3\)"):
            self.call(tg=self.tg[:, None])

    def test_shape_mismatches_name_both(self):
        with pytest.raises(ValueError, match=r"targets has shape \(2, 3\) but log_probs has shape \(6, 3, 5\)"):
            self.call(tg=self.tg[:2])
        with pytest.raises(ValueError, match=r"input_lengths has shape \(2,\) but log_probs has shape \(6, 3, 5\)"):
            self.call(il=self.il[:2])
        with pytest.raises(ValueError, match=r"target_lengths has shape \(4,\) but log_probs"):
            self.call(tl=np.array([1, 1, 1, 1]))
        with pytest.raises(ValueError, match=r"grad_output has shape \(2,\) but loss has shape \(3,\)"):
            self.call(reduction="none", return_grad=True, grad_output=np.ones(2))

    @pytest.mark.parametrize("bad,msg", [(7, r"input_lengths\[1\] is 7, but it must be in \[0, T\] = \[0, 6\]"),
                                         (-2, r"input_lengths\[1\] is -2")])
    def test_input_length_range(self, bad, msg):
        with pytest.raises(ValueError, match=msg):
            self.call(il=np.array([6, bad, 9]))

    def test_negative_target_length(self):
        with pytest.raises(ValueError, match=r"target_lengths\[2\] is -1; lengths must be >= 0"):
            self.call(tl=np.array([3, 2, -1]))

    def test_padded_target_length_past_s(self):
        with pytest.raises(ValueError, match=r"target_lengths\[1\] is 4, but padded targets hold only S = 3"):
            self.call(tl=np.array([3, 4, 1]))

    def test_concatenated_lengths_must_sum(self):
        cat = np.array([1, 2, 3, 4, 4, 2])
        with pytest.raises(ValueError, match=r"target_lengths\[2\] is 2, which takes the running sum .* to 7, "
                                             r"past the 6 concatenated"):
            self.call(tg=cat, tl=np.array([3, 2, 2]))
        with pytest.raises(ValueError, match="target_lengths sum to 5, but there are 6 concatenated targets"):
            self.call(tg=cat, tl=np.array([3, 2, 0]))
        # unbatched 1-D targets are concatenated too (torch's rule): exactly target_length labels
        with pytest.raises(ValueError, match="target_lengths sum to 2, but there are 3"):
            lossx.ctc_loss(self.lp[:, 0], np.array([1, 2, 3]), 6, 2)

    @pytest.mark.parametrize("bad", [5, 99, -1])
    def test_label_out_of_range(self, bad):
        tg = self.tg.copy()
        tg[1, 1] = bad
        tg[2, 0] = 7  # a later bad label: the first one is reported
        with pytest.raises(IndexError, match=rf"sample 1, label position 1 \(targets\[1, 1\]\) is {bad}, "
                                             r"out of range \[0, C\) = \[0, 5\)"):
            self.call(tg=tg)
        cat = np.array([1, 2, 3, 4, bad, 2])
        with pytest.raises(IndexError, match=rf"sample 1, label position 1 \(targets\[4\]\) is {bad}"):
            self.call(tg=cat)

    def test_label_equal_to_blank(self):
        tg = self.tg.copy()
        tg[0, 2] = 3
        with pytest.raises(ValueError, match=r"sample 0, label position 2 \(targets\[0, 2\]\) is 3, the blank"):
            self.call(tg=tg, blank=3)
        with pytest.raises(ValueError, match=r"sample 1, label position 0 .* is 0, the blank"):
            self.call(tg=np.array([1, 2, 3, 0, 4, 2]))

    def test_first_bad_label_whatever_the_threads(self, threads):
        T, N, C = 5, 64, 4
        lp = np.log(np.full((T, N, C), 0.25))
        tg = np.ones((N, 2), np.int64)
        tg[40, 1] = 9
        tg[3, 0] = 8
        with pytest.raises(IndexError, match=r"sample 3, label position 0 .* is 8"):
            lossx.ctc_loss(lp, tg, np.full(N, T), np.full(N, 2))

    def test_padding_is_not_read(self):
        tg = self.tg.copy()
        tg[2, 1:] = [-5, 99]  # after target_lengths[2] = 1: never read, never checked
        np.testing.assert_array_equal(self.call(tg=tg, reduction="none"), self.call(reduction="none"))

    @pytest.mark.parametrize("blank", [5, -1])
    def test_blank_range(self, blank):
        with pytest.raises(ValueError, match=rf"blank is {blank} but must be in \[0, C\) = \[0, 5\)"):
            self.call(blank=blank)

    def test_bad_reduction(self):
        with pytest.raises(ValueError, match="reduction must be one of"):
            self.call(reduction="batchmean")
