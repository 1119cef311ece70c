"""Sequence family: ctc_loss (``torch.nn.functional.ctc_loss`` semantics).

Kernels: csrc/cpu/ctc.cc (log-space forward-backward in float64, parallel over
the batch); cuda/ctc.cu for GPU arrays (a block per sample). Lengths are needed
on the host, as in PyTorch.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _array as A
from . import _core
from ._backend import ACC_OFFSET, backend_for
from .softmax import _grad_output_arg


def _host_lengths(fn, name, x, N, lp_shape):
    """Lengths as a contiguous int64 NumPy array of N values (ints, sequences,
    NumPy arrays, CPU or GPU tensors)."""
    if A.is_gpu(x):
        x = x.get() if hasattr(x, "get") else x.cpu().numpy()  # CuPy / torch: lengths live on the host
    if isinstance(x, (list, tuple)) and len(x) == 0:
        x = np.zeros(0, np.int64)  # np.asarray([]) would be float64
    if isinstance(x, bool):
        raise TypeError(f"{fn}: {name} must hold integers, got a bool")
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{fn}: {name} must hold integers (one length per sample), got dtype {a.dtype}")
    if a.size != N:
        raise A.shape_error(fn, f"{name} needs one length per sample (N = {N})", name, a.shape, "log_probs",
                            lp_shape)
    return np.ascontiguousarray(a.reshape(-1), dtype=np.int64)


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank: int = 0, reduction: str = "mean",
             zero_infinity: bool = False, *, return_grad: bool = False, grad_output=None):
    r"""Connectionist Temporal Classification loss, ``torch.nn.functional.ctc_loss`` semantics.

    For sample ``i`` with label sequence ``y`` (length ``L = target_lengths[i]``) and
    its first ``T_i = input_lengths[i]`` frames of log-probabilities ``lp``::

        loss_i = -log sum_{paths p in B^-1(y)} exp(sum_{t < T_i} lp[t, i, p_t])

    where ``B`` removes repeated symbols and then blanks (a repeated label needs a
    blank between its copies). Computed by the log-space forward-backward recursion
    over the extended sequence ``(blank, y1, blank, ..., yL, blank)`` in float64
    for every input dtype. No alignment (e.g. ``L`` plus the number of repeats
    exceeds ``T_i``) gives ``inf``, as in torch.

    Args:
        log_probs: ``(T, N, C)`` log-probabilities (e.g. ``log_softmax`` output), or
            ``(T, C)`` for one unbatched sample. float32, float64, float16 or bfloat16
            (half types are computed in float64 like the others; the loss is float32).
        targets: integer labels, padded ``(N, S)`` (sample ``i`` uses
            ``targets[i, :target_lengths[i]]``; the rest is not read) or
            concatenated 1-D with ``sum(target_lengths)`` labels. Unbatched: ``(S,)``
            with ``S = target_length`` (concatenated, as torch) or ``(1, S)``.
        input_lengths, target_lengths: one integer per sample (arrays, sequences,
            tensors; a scalar or 0-d array for unbatched input). Needed on the host.
        blank: index of the blank symbol, in ``[0, C)``.
        reduction: ``"mean"`` (torch's: the mean over samples of
            ``loss_i / max(target_length_i, 1)``), ``"sum"`` or ``"none"`` (``(N,)``,
            or 0-d for unbatched input).
        zero_infinity: infinite losses (and their gradients) become 0.
        return_grad: also return the gradient with respect to ``log_probs``.
        grad_output: scalar, or ``(N,)`` for ``reduction="none"``: scales the gradient.

    Returns:
        ``loss``, or ``(loss, grad)`` with ``grad`` shaped and typed like ``log_probs``.

    Gradient convention (PyTorch's): ``grad[t, i, c] = scale_i * (exp(lp[t, i, c]) -
    gamma[t, i, c])`` for ``t < T_i`` and 0 for ``t >= T_i``, where ``gamma`` is the
    posterior probability that frame ``t`` emits ``c`` (it sums to 1 over ``c``).
    The partial derivative of the loss with respect to ``log_probs`` alone is
    ``-gamma``; torch's CTC backward returns ``exp(lp) - gamma`` instead, which is
    the gradient with respect to the logits when ``log_probs = log_softmax(logits)``:
    log_softmax's backward ``g - softmax * sum_c g`` turns both ``-gamma`` and
    ``exp(lp) - gamma`` into ``softmax - gamma`` (``gamma`` and ``exp(lp)`` each sum
    to 1 over ``c``). lossx returns exactly what ``torch.autograd`` gives for a leaf
    ``log_probs`` tensor, so it matches torch and is right through log_softmax;
    if ``log_probs`` is not a normalised log_softmax output and the pure partial
    derivative is wanted, subtract ``scale_i * exp(lp)`` on the sample's first
    ``T_i`` frames. Samples whose loss is infinite get NaN gradients
    unless ``zero_infinity=True`` (torch's behaviour); a ``-inf`` log-probability
    gives a NaN gradient entry at that position, as in torch.

    Errors: wrong dtypes raise TypeError; shapes that do not fit raise ValueError
    naming both shapes; ``input_lengths[i]`` outside ``[0, T]``, negative
    ``target_lengths``, ``target_lengths[i] > S`` (padded) or lengths that do not
    sum to the number of concatenated labels raise ValueError naming the sample and
    value; a label outside ``[0, C)`` raises IndexError and a label equal to
    ``blank`` raises ValueError, naming the sample, the position and the value.
    lossx departs from torch where torch would read out of bounds or fail: labels
    are checked (torch does not), integer dtypes are required for targets (torch
    casts floats), and an empty batch gives ``nan`` (mean) / ``0`` (sum) where torch
    raises.
    """
    fn = "ctc_loss"
    be = backend_for(log_probs, fn)
    lp = be.asarray(log_probs)
    code = be.dtype_code(lp, fn, "log_probs")
    if lp.ndim not in (2, 3):
        raise ValueError(f"{fn}: log_probs must be (T, N, C) or unbatched (T, C), got shape {tuple(lp.shape)}")
    red = A.reduction_code(fn, reduction)
    if not isinstance(blank, numbers.Integral) or isinstance(blank, bool):
        raise TypeError(f"{fn}: blank must be an integer, got {blank!r}")
    batched = lp.ndim == 3
    T, C = int(lp.shape[0]), int(lp.shape[-1])
    N = int(lp.shape[1]) if batched else 1
    if not 0 <= int(blank) < C:
        raise ValueError(f"{fn}: blank is {int(blank)} but must be in [0, C) = [0, {C}) "
                         f"(log_probs has shape {tuple(lp.shape)})")

    t = be.asarray(targets, fn, "targets")
    if not be.is_int(t):
        raise TypeError(f"{fn}: targets must hold integer class labels, got dtype {t.dtype}")
    if t.ndim == 1:
        concatenated, S = True, int(t.shape[0])
    elif t.ndim == 2:
        concatenated, S = False, int(t.shape[1])
        if int(t.shape[0]) != N:
            raise A.shape_error(fn, "padded targets need one row per sample", "targets", t.shape, "log_probs",
                                lp.shape)
    else:
        raise ValueError(f"{fn}: targets must be 1-D (concatenated) or 2-D (N, S) padded, got shape "
                         f"{tuple(t.shape)}")
    il = _host_lengths(fn, "input_lengths", input_lengths, N, lp.shape)
    tl = _host_lengths(fn, "target_lengths", target_lengths, N, lp.shape)

    acc = code + ACC_OFFSET
    loss_shape = (N,) if batched else ()
    loss = be.empty((N,) if red == 0 else (1,), acc)
    grad = go = None
    if return_grad:
        grad = be.empty(tuple(lp.shape), code)
        go = _grad_output_arg(be, fn, grad_output, red, loss_shape, acc)
    # The contiguous copies must outlive the call: a raw pointer does not keep its array alive.
    lpc, tgc = be.contiguous(lp), be.labels(t)
    _core.ctc(be.device, be.stream, code, T, N, C, be.arg(lpc), be.arg(tgc), concatenated,
              S, il, tl, int(blank), bool(zero_infinity), red, be.arg(loss), be.arg(grad), be.arg(go))
    out = loss.reshape(loss_shape) if red == 0 else be.scalar(loss)
    return (out, grad) if return_grad else out
