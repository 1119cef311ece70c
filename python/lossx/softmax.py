"""Row-softmax family: cross_entropy, nll_loss, log_softmax, logsumexp.

PyTorch semantics (torch.nn.functional names, class axis 1) plus lossx extras.
Kernels: csrc/cpu/softmax.cc (CPU), cuda/softmax.cu (GPU).
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _array as A
from . import _core
from ._backend import ACC_OFFSET, backend_for

_NORMALIZERS = {None: 0, "valid": 1, "weights": 2}
_ndarray = np.ndarray
_NUMBERS = (float, int)  # plain-call options; anything else goes to the checks


def _grad_output_arg(be, fn, grad_output, reduction, loss_shape, acc_code):
    """grad_output as an accumulation-dtype array: one value, or the loss's shape for 'none'."""
    if grad_output is None:
        return None
    if isinstance(grad_output, numbers.Number):
        if reduction == 0:
            g = be.empty(loss_shape, acc_code)
            g[...] = grad_output
            return be.contiguous(g).reshape(-1)
        g = be.empty((1,), acc_code)
        g[0] = grad_output
        return g
    g = be.asarray(grad_output, fn, "grad_output")
    want = tuple(loss_shape) if reduction == 0 else ()
    if tuple(g.shape) != want and not (reduction != 0 and tuple(g.shape) == (1,)):
        raise A.shape_error(fn, "grad_output must match the loss", "grad_output", g.shape, "loss", want)
    return be.contiguous(g, acc_code).reshape(-1)


def cross_entropy(
    input,
    target,
    weight=None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    sample_weight=None,
    normalizer=None,
    return_lse: bool = False,
    return_grad: bool = False,
    grad_output=None,
    inplace_grad: bool = False,
    _log_probs: bool = False,
    _name: str = "cross_entropy",
):
    r"""Cross entropy between logits and integer labels or class probabilities.

    ``torch.nn.functional.cross_entropy`` semantics. With ``lp = log_softmax(z)``
    over the class axis (axis 1; input shapes ``(C,)``, ``(N, C)`` or
    ``(N, C, d1, ..., dK)``) and class weights ``w`` (ones by default):

    * integer labels ``y``: ``loss_i = (1-e) w[y_i] (-lp[y_i]) + e/C sum_c w_c (-lp_c)``,
      0 where ``y_i == ignore_index``; ``mean`` divides the sum by ``sum_i w[y_i]``
      over non-ignored targets (NaN when there are none, like PyTorch).
    * probability targets ``t`` (float, same shape as input):
      ``loss_i = -sum_c w_c t'_c lp_c`` with ``t' = (1-e) t + e/C``; ``mean``
      divides by the number of rows ``N * d1 * ... * dK``.

    lossx extras:

    * ``z_loss=c`` adds ``c * lse_i**2`` to every non-ignored row (PaLM's z-loss).
    * ``softcap=s`` replaces the logits by ``s * tanh(z / s)`` first (Gemma 2).
    * ``sample_weight`` (per row, shape of the labels) multiplies each row's loss;
      ``normalizer`` then chooses the mean's denominator: ``None`` (PyTorch's),
      ``"valid"`` (number of non-ignored rows), ``"weights"`` (``sum w[y_i] * sample_weight_i``)
      or a number.
    * ``return_lse=True`` also returns the per-row log-sum-exp (float32, or float64 for float64 input).
    * ``return_grad=True`` returns the gradient computed in the same sweep:
      ``d loss / d z = scale_i ((A_i + 2 c lse_i) softmax(z) - a)`` where ``a`` holds
      the coefficients of ``-lp`` above and ``A_i = sum a``. With probability targets
      the gradient is a tuple ``(d/d input, d/d target)``.
      ``grad_output`` (a scalar, or an array of the loss's shape for ``reduction="none"``)
      scales it; ignored rows get exactly zero gradient, even when their logits are NaN.
    * ``inplace_grad=True`` writes the gradient over ``input`` (C-contiguous, writable,
      2-D) and returns it; saves one logits-sized buffer.

    Returns ``loss``, ``(loss, lse)``, ``(loss, grad)`` or ``(loss, lse, grad)``.
    The loss is float32 (float64 for float64 input); the gradient has the input's dtype.
    NaN or inf in a non-ignored row gives NaN/inf loss for that row, as in PyTorch.
    """
    if (type(input) is _ndarray and type(target) is _ndarray and weight is None and sample_weight is None
            and normalizer is None and softcap is None and grad_output is None
            and label_smoothing.__class__ in _NUMBERS and z_loss.__class__ in _NUMBERS
            and not (label_smoothing or z_loss or return_lse or inplace_grad)):
        # The plain call runs in C++ in one step (None: not a plain call after all).
        out = _core.ce_plain(input, target, ignore_index, reduction, _log_probs, True if return_grad else False)
        if out is not None:
            return out
    fn = _name
    be = backend_for(input, fn)
    x = be.asarray(input)
    code = be.dtype_code(x, fn, "input")
    acc = code + ACC_OFFSET
    red = A.reduction_code(fn, reduction)
    t = be.asarray(target, fn, "target")
    if x.ndim == 0:
        raise ValueError(f"{fn}: input must have at least 1 dimension (classes), got a scalar")
    unbatched = x.ndim == 1
    C = x.shape[0] if unbatched else x.shape[1]
    if C < 1:
        raise ValueError(f"{fn}: input has no classes (shape {tuple(x.shape)})")

    hard = be.is_int(t)
    if not hard and not be.is_float(t):
        raise TypeError(f"{fn}: target must hold integer class labels or float probabilities, got {t.dtype}")
    if hard:
        want = () if unbatched else (x.shape[0],) + tuple(x.shape[2:])
        if tuple(t.shape) != want:
            raise A.shape_error(fn, "labels must have the input's shape without the class axis",
                                "target", t.shape, "input", x.shape)
    else:
        if _log_probs:
            raise TypeError(f"{fn}: target must hold integer class labels, got {t.dtype}")
        if tuple(t.shape) != tuple(x.shape):
            raise A.shape_error(fn, "probability targets must have the input's shape",
                                "target", t.shape, "input", x.shape)
        if ignore_index >= 0:
            raise ValueError(f"{fn}: ignore_index is not supported with probability targets")
    if not (0.0 <= label_smoothing <= 1.0):
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if not (z_loss >= 0.0):
        raise ValueError(f"{fn}: z_loss must be >= 0, got {z_loss}")
    cap = 0.0
    if softcap is not None:
        if not (softcap > 0.0):
            raise ValueError(f"{fn}: softcap must be > 0 (or None), got {softcap}")
        cap = float(softcap)

    # Rows x classes, contiguous: moving the class axis last copies once for K-dim input.
    if unbatched:
        xm = be.contiguous(x).reshape(1, C)
        rows_shape = ()
    elif x.ndim == 2:
        xm = be.contiguous(x)
        rows_shape = (x.shape[0],)
    else:
        xm = be.contiguous(be.move_last(x, 1)).reshape(-1, C)
        rows_shape = (x.shape[0],) + tuple(x.shape[2:])
    M = xm.shape[0]

    labels = tm = None
    if hard:
        labels = be.labels(t).reshape(-1)
    else:
        if unbatched or x.ndim == 2:
            tm = be.contiguous(t, code).reshape(M, C)
        else:
            tm = be.contiguous(be.move_last(t, 1), code).reshape(-1, C)

    w = None
    if weight is not None:
        w = be.asarray(weight, fn, "weight")
        if tuple(w.shape) != (C,):
            raise A.shape_error(fn, "weight needs one value per class", "weight", w.shape, "input", x.shape)
        if not be.is_float(w):
            raise TypeError(f"{fn}: weight must be a float array, got {w.dtype}")
        w = be.contiguous(w, acc)
    sw = None
    if sample_weight is not None:
        sw = be.asarray(sample_weight, fn, "sample_weight")
        if tuple(sw.shape) != rows_shape:
            raise A.shape_error(fn, "sample_weight needs one value per row", "sample_weight", sw.shape,
                                "target", rows_shape)
        sw = be.contiguous(sw, acc).reshape(-1)
    if isinstance(normalizer, numbers.Number) and not isinstance(normalizer, bool):
        norm_code, norm_value = 3, float(normalizer)
        if not norm_value > 0:
            raise ValueError(f"{fn}: a numeric normalizer must be > 0, got {normalizer}")
    else:
        norm_code = _NORMALIZERS.get(normalizer, -1) if not isinstance(normalizer, bool) else -1
        norm_value = 1.0
        if norm_code < 0:
            raise ValueError(f"{fn}: normalizer must be None, 'valid', 'weights' or a number, got {normalizer!r}")

    loss_shape = rows_shape if red == 0 else ()
    loss = be.empty((M,) if red == 0 else (1,), acc)
    lse = be.empty((M,), acc) if return_lse else None
    grad = grad_t = go = None
    if return_grad:
        if inplace_grad:
            if xm is not x or not be.writable(x):
                raise ValueError(f"{fn}: inplace_grad needs a writable, C-contiguous 2-D input")
            grad = x
        else:
            grad = be.empty((M, C), code)
        if not hard:
            grad_t = be.empty((M, C), code)
        go = _grad_output_arg(be, fn, grad_output, red, loss_shape, acc)
    elif inplace_grad:
        raise ValueError(f"{fn}: inplace_grad=True needs return_grad=True")

    _core.cross_entropy(
        be.device, be.stream, code, M, C, be.arg(xm), be.arg(labels), be.arg(tm), be.arg(w), be.arg(sw),
        int(ignore_index), float(label_smoothing), float(z_loss), cap, red, norm_code, norm_value,
        bool(_log_probs), be.arg(loss), be.arg(lse), be.arg(grad), be.arg(grad_t), be.arg(go))
    if inplace_grad:
        A.mark_written(input)

    out_loss = loss.reshape(loss_shape) if red == 0 else be.scalar(loss)
    result = [out_loss]
    if return_lse:
        result.append(lse.reshape(rows_shape))
    if return_grad:
        g = _restore(be, grad, x)
        result.append((g, _restore(be, grad_t, x)) if not hard else g)
    return result[0] if len(result) == 1 else tuple(result)


# Callers inside lossx: the definition itself, not the interop wrapper that
# lossx/__init__.py installs under the public name (their arguments are
# already converted; a second wrapper only costs time).
_cross_entropy = cross_entropy


def _restore(be, g, x):
    """(rows, C) gradient back to the input's layout (a view for K-dim input)."""
    if tuple(g.shape) == tuple(x.shape):
        return g
    if x.ndim <= 2:
        return g.reshape(x.shape)
    shape = (x.shape[0],) + tuple(x.shape[2:]) + (x.shape[1],)
    return be.move_back(g.reshape(shape), 1)


def nll_loss(input, target, weight=None, *, ignore_index: int = -100, reduction: str = "mean",
             return_grad: bool = False, grad_output=None):
    r"""Negative log-likelihood of integer labels under log-probabilities ``input``.

    ``torch.nn.functional.nll_loss`` semantics: ``loss_i = -w[y_i] input[i, y_i]``,
    0 for ``y_i == ignore_index``; ``mean`` divides by ``sum w[y_i]`` over
    non-ignored targets. Shapes as :func:`cross_entropy`. The gradient is
    ``-scale_i w[y_i]`` at the label and 0 elsewhere.
    """
    # Checked here too: nll_loss's short signature makes its plain call 15% cheaper
    # (and a call that is not plain checks twice, at ~0.1 us).
    if weight is None and grad_output is None and type(input) is _ndarray and type(target) is _ndarray:
        out = _core.ce_plain(input, target, ignore_index, reduction, True, True if return_grad else False)
        if out is not None:
            return out
    return _cross_entropy(input, target, weight, ignore_index=ignore_index, reduction=reduction,
                          return_grad=return_grad, grad_output=grad_output, _log_probs=True,
                          _name="nll_loss")


def _rows_of(be, fn, input, dim):
    x = be.asarray(input)
    code = be.dtype_code(x, fn, "input")
    if x.ndim == 0:
        raise ValueError(f"{fn}: input must have at least 1 dimension")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{fn}: dim {dim} is out of range for an input of {x.ndim} dimensions")
    dim %= x.ndim
    moved = be.contiguous(be.move_last(x, dim)) if dim != x.ndim - 1 else be.contiguous(x)
    cols = x.shape[dim]
    if cols < 1:
        raise ValueError(f"{fn}: dimension {dim} is empty (shape {tuple(x.shape)})")
    return x, code, dim, moved, moved.reshape(-1, cols), cols


def log_softmax(input, dim: int = -1, *, return_grad: bool = False, grad_output=None):
    r"""``log_softmax(x)_j = x_j - logsumexp(x)`` along ``dim``.

    ``return_grad=True`` returns ``(out, grad)`` with the vector-Jacobian product
    ``grad = g - softmax(x) * sum(g)`` for ``g = grad_output`` (ones by default,
    i.e. the gradient of ``out.sum()``).
    """
    fn = "log_softmax"
    be = backend_for(input, fn)
    x, code, dim, moved, xm, cols = _rows_of(be, fn, input, dim)
    out = be.empty(xm.shape, code)
    gi = go = None
    if return_grad:
        gi = be.empty(xm.shape, code)
        if grad_output is not None:
            g = be.asarray(grad_output, fn, "grad_output")
            if tuple(g.shape) != tuple(x.shape):
                raise A.shape_error(fn, "grad_output must match the output", "grad_output", g.shape,
                                    "output", x.shape)
            go = be.contiguous(be.move_last(g, dim), code).reshape(xm.shape)
    _core.softmax_family(be.device, be.stream, code, xm.shape[0], cols, be.arg(xm), True, be.arg(out),
                         be.arg(go), be.arg(gi))
    out = be.move_back(out.reshape(moved.shape), dim)
    if not return_grad:
        return out
    return out, be.move_back(gi.reshape(moved.shape), dim)


def logsumexp(input, dim: int = -1, keepdim: bool = False, *, return_grad: bool = False, grad_output=None):
    r"""``log(sum(exp(x)))`` along ``dim``, computed stably (max-shifted).

    ``return_grad=True`` returns ``(out, grad)`` with ``grad = g * softmax(x)`` for
    ``g = grad_output`` (shape of ``out``; ones by default).
    """
    fn = "logsumexp"
    be = backend_for(input, fn)
    x, code, dim, moved, xm, cols = _rows_of(be, fn, input, dim)
    rows_shape = tuple(moved.shape[:-1])
    out = be.empty((xm.shape[0],), code)
    gi = go = None
    kept = tuple(x.shape[:dim]) + (1,) + tuple(x.shape[dim + 1:])
    out_shape = kept if keepdim else rows_shape
    if return_grad:
        gi = be.empty(xm.shape, code)
        if grad_output is not None:
            g = be.asarray(grad_output, fn, "grad_output")
            if tuple(g.shape) != tuple(out_shape):
                raise A.shape_error(fn, "grad_output must match the output", "grad_output", g.shape,
                                    "output", out_shape)
            go = be.contiguous(g, code).reshape(-1)
    _core.softmax_family(be.device, be.stream, code, xm.shape[0], cols, be.arg(xm), False, be.arg(out),
                         be.arg(go), be.arg(gi))
    out = out.reshape(out_shape)
    if not return_grad:
        return out
    return out, be.move_back(gi.reshape(moved.shape), dim)
