"""Margin family: multilabel_soft_margin_loss, multi_margin_loss,
multilabel_margin_loss (margin_ranking_loss is element-wise: pointwise.py).

``torch.nn.functional`` semantics (argument order and defaults as torch's).
Kernels: csrc/cpu/margin.cc; multilabel_soft_margin_loss is the pointwise
kernel's binary_cross_entropy_with_logits in row mode (csrc/cpu/pointwise.cc).
No broadcasting: shapes must match as documented.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import _array as A
from . import _core
from ._backend import ACC_OFFSET, backend_for
from .embedding import _float_input, _number
from .pointwise import _run as _pw_run
from .softmax import _grad_output_arg

_MULTI, _ML_MARGIN = 2, 3


def _run(fn, kind, be, code, x0, rows_shape, C, labels, weight, margin, p, reduction,
         return_grad, grad_output):
    red = A.reduction_code(fn, reduction)
    acc = code + ACC_OFFSET
    N = math.prod(rows_shape)
    loss = be.empty((N,) if red == 0 else (1,), acc)
    g0 = go = None
    if return_grad:
        g0 = be.empty((N, C), code)
        go = _grad_output_arg(be, fn, grad_output, red, rows_shape, acc)
    _core.margin(be.device, be.stream, code, kind, N, C, be.arg(x0), be.arg(labels), be.arg(weight),
                 float(margin), int(p), red, be.arg(loss), be.arg(g0), be.arg(go))
    out = loss.reshape(rows_shape) if red == 0 else be.scalar(loss)
    return out, g0


def _rows_input(be, fn, input):
    x, code = _float_input(be, fn, input, "input")
    if x.ndim not in (1, 2):
        raise ValueError(f"{fn}: input must be 1-D (C,) or 2-D (N, C), got shape {tuple(x.shape)}")
    C = x.shape[-1]
    if C < 1:
        raise ValueError(f"{fn}: input has no classes (shape {tuple(x.shape)})")
    return x, code, C, tuple(x.shape[:-1])


def _weight(be, fn, weight, C, acc, x_shape):
    if weight is None:
        return None
    w = be.asarray(weight, fn, "weight")
    if not be.is_float(w):
        raise TypeError(f"{fn}: weight must be a float array, got {w.dtype}")
    if tuple(w.shape) != (C,):
        raise A.shape_error(fn, "weight needs one value per class", "weight", w.shape, "input", x_shape)
    return be.contiguous(w, acc)


def multilabel_soft_margin_loss(input, target, weight=None, reduction: str = "mean", *,
                                return_grad: bool = False, grad_output=None):
    r"""``-(1/C) sum_c w_c [t_c log sigmoid(x_c) + (1 - t_c) log sigmoid(-x_c)]`` per row.

    ``torch.nn.functional.multilabel_soft_margin_loss`` semantics: input ``(N, C)``
    (or ``(C,)``), target of the same shape holding {0, 1} (fractional targets
    are computed by the same formula, as in torch), class weights ``(C,)``.
    ``return_grad=True`` returns ``(loss, d_input)`` with
    ``d_input = scale w_c (sigmoid(x) - t) / C``.
    """
    fn = "multilabel_soft_margin_loss"
    be = backend_for(input, fn)
    x, code, C, rows_shape = _rows_input(be, fn, input)
    t = be.asarray(target, fn, "target")
    if not (be.is_int(t) or be.is_float(t)):
        raise TypeError(f"{fn}: target must be numeric (0 / 1), got {t.dtype}")
    if tuple(t.shape) != tuple(x.shape):
        raise A.shape_error(fn, "target must have the input's shape", "target", t.shape, "input", x.shape)
    if be.is_int(t):
        t = be.contiguous(t, code)
    # Class weights are validated as (C,) here; the kernel applies them with period C.
    w = _weight(be, fn, weight, C, code + ACC_OFFSET, x.shape)
    # The per-element term is binary_cross_entropy_with_logits' (softplus(x) - t x),
    # averaged over the row: the pointwise kernel's row mode.
    return _pw_run(fn, x, t, reduction, return_grad, grad_output, weight=w, target_grad=False, row_len=C,
                   kind="binary_cross_entropy_with_logits")


def multi_margin_loss(input, target, p: int = 1, margin: float = 1.0, weight=None, reduction: str = "mean", *,
                      return_grad: bool = False, grad_output=None):
    r"""``(1/C) sum_{j != y} w_y max(0, margin - x_y + x_j)^p`` per row, ``p`` 1 or 2.

    ``torch.nn.functional.multi_margin_loss`` semantics: input ``(N, C)`` with
    integer target ``(N,)``, or ``(C,)`` with a scalar target; labels outside
    ``[0, C)`` raise IndexError naming the position. ``return_grad=True`` returns
    ``(loss, d_input)``; a hinge term exactly at 0 contributes no gradient
    (torch's kernel tests ``> 0``).
    """
    fn = "multi_margin_loss"
    be = backend_for(input, fn)
    x, code, C, rows_shape = _rows_input(be, fn, input)
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"{fn}: p must be 1 or 2, got {p!r}")
    t = be.asarray(target, fn, "target")
    if not be.is_int(t):
        raise TypeError(f"{fn}: target must hold integer class labels, got {t.dtype}")
    if tuple(t.shape) != rows_shape:
        raise A.shape_error(fn, "labels must have the input's shape without the class axis", "target", t.shape,
                            "input", x.shape)
    margin = _number(fn, "margin", margin)
    w = _weight(be, fn, weight, C, code + ACC_OFFSET, x.shape)
    out, g0 = _run(fn, _MULTI, be, code, be.contiguous(x).reshape(-1, C), rows_shape, C,
                      be.labels(t).reshape(-1), w, margin, int(p), reduction, return_grad, grad_output)
    return (out, g0.reshape(x.shape)) if return_grad else out


def multilabel_margin_loss(input, target, reduction: str = "mean", *, return_grad: bool = False,
                           grad_output=None):
    r"""``(1/C) sum_{j in Y} sum_{k not in Y} max(0, 1 - (x_j - x_k))`` per row.

    ``torch.nn.functional.multilabel_margin_loss`` semantics: input ``(N, C)`` (or
    ``(C,)``) and an integer target of the same shape listing each row's classes,
    the list ending at the first negative entry (``-1``); entries after it are
    ignored. A listed class ``>= C`` raises IndexError naming the position.
    ``return_grad=True`` returns ``(loss, d_input)``.
    """
    fn = "multilabel_margin_loss"
    be = backend_for(input, fn)
    x, code, C, rows_shape = _rows_input(be, fn, input)
    t = be.asarray(target, fn, "target")
    if not be.is_int(t):
        raise TypeError(f"{fn}: target must hold integer class labels, got {t.dtype}")
    if tuple(t.shape) != tuple(x.shape):
        raise A.shape_error(fn, "target must have the input's shape", "target", t.shape, "input", x.shape)
    out, g0 = _run(fn, _ML_MARGIN, be, code, be.contiguous(x).reshape(-1, C), rows_shape, C,
                      be.labels(t).reshape(-1), None, 0.0, 1, reduction, return_grad, grad_output)
    return (out, g0.reshape(x.shape)) if return_grad else out


def poly1_cross_entropy(logits, labels, epsilon: float = 1.0, reduction: str = "mean", *,
                        ignore_index: int = -100, return_grad: bool = False, grad_output=None):
    r"""Poly-1 cross entropy (Leng et al. 2022): ``CE + epsilon (1 - p_t)`` per row.

    ``p_t = softmax(logits)[label] = exp(-CE)``. Shapes as :func:`lossx.cross_entropy`
    with integer labels (class axis 1); rows whose label is ``ignore_index`` count
    0 and are left out of the mean. Composed on the row-softmax kernel: the
    forward is one cross_entropy sweep; the gradient
    ``(1 + epsilon p_t) dCE/dlogits`` is a second sweep that scales each row
    through cross_entropy's per-row ``grad_output``. NumPy and GPU arrays (the
    per-row arithmetic in between runs in the caller's library, on its device;
    a reduced loss is a 0-d array there). ``return_grad=True`` returns
    ``(loss, d_logits)``.
    """
    from .softmax import _cross_entropy as cross_entropy

    fn = "poly1_cross_entropy"
    be = backend_for(logits, fn)
    red = A.reduction_code(fn, reduction)
    eps = _number(fn, "epsilon", epsilon)
    y = be.asarray(labels, fn, "labels")
    if not be.is_int(y):
        raise TypeError(f"{fn}: labels must be integer class labels, got {y.dtype}")
    acc = be.dtype_code(be.asarray(logits), fn, "logits") + ACC_OFFSET
    ce = cross_entropy(logits, y, ignore_index=ignore_index, reduction="none")  # validates shapes and labels
    rows_shape = tuple(ce.shape)
    valid = y != ignore_index
    # float64 per-row arithmetic, rounded once to the loss dtype (as the CPU kernels' rows).
    one_minus_pt = -be.expm1(-be.contiguous(ce, A.F64).reshape(rows_shape))
    rows = ce + be.contiguous(eps * one_minus_pt * valid, acc).reshape(rows_shape)
    count = None
    if red == 1:
        count = be.sum_axes(be.contiguous(valid, A.F64).reshape(-1), (0,))  # non-ignored rows
    with np.errstate(invalid="ignore", divide="ignore"):  # a mean of nothing is nan, as torch's
        if red == 0:
            out = rows
        else:
            total = be.sum_axes(rows.reshape(-1), (0,))
            if red == 1:
                total = total / count
            out = be.scalar(be.contiguous(total.reshape(1), acc))
        if not return_grad:
            return out
        if grad_output is None:
            go = be.full(rows_shape, 1.0, A.F64)
        elif isinstance(grad_output, numbers.Number) and red != 0:
            go = be.full(rows_shape, float(grad_output), A.F64)
        else:
            g = be.asarray(grad_output, fn, "grad_output")
            want = rows_shape if red == 0 else ()
            if tuple(g.shape) != want and not (red != 0 and tuple(g.shape) == (1,)):
                raise A.shape_error(fn, "grad_output must match the loss", "grad_output", g.shape, "loss", want)
            g = be.contiguous(g, A.F64)
            go = g.reshape(rows_shape) if red == 0 else be.full(rows_shape, 1.0, A.F64) * g.reshape(())
        if red == 1:
            go = go / count  # no valid row: every row is ignored and gets a zero gradient anyway
        # d/dz [CE + eps (1 - exp(-CE))] = (1 + eps p_t) dCE/dz
        go = be.contiguous(go * (1.0 + eps * (1.0 - one_minus_pt)), acc).reshape(rows_shape)
    _, g = cross_entropy(logits, y, ignore_index=ignore_index, reduction="none", return_grad=True,
                         grad_output=go)
    return out, g
