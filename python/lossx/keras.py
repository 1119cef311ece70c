"""Keras 3 semantics: ``lossx.keras.<name>`` mirrors ``keras.losses.<name>``.

Argument order ``(y_true, y_pred)``; the class / feature axis is ``axis`` (-1 by
default); ``y_true`` is cast to ``y_pred``'s dtype as Keras does. Like Keras'
function forms, each function returns per-sample values (``y_pred``'s shape
without the reduced axis) unless ``reduction`` asks otherwise:

* ``None`` / ``"none"``: per-sample values (the default);
* ``"sum_over_batch_size"`` (alias ``"mean"``): the sum divided by the number
  of per-sample values (by the number of non-ignored ones with ``ignore_class``),
  0 when that number is 0 (Keras' ``divide_no_nan``, unlike PyTorch's NaN);
* ``"sum"``.

``return_grad=True`` returns ``(loss, grad)`` with ``grad`` the gradient of the
returned loss with respect to ``y_pred`` (``y_pred``'s shape and dtype);
``grad_output`` (a scalar, or an array of the per-sample shape for
``reduction=None``) scales it.

Probabilities (``from_logits=False``) are normalised (``p / sum(p)`` over the
axis), clipped to ``[1e-7, 1 - 1e-7]`` and then logged, in that order, exactly as
Keras' ops; the gradient follows the clip (zero where it is active) and the
normalisation. float16/bfloat16 inputs accumulate in float32 and return a
float32 loss. NaN in a row gives NaN for that row.

Kernels: csrc/cpu/keras_rows.cc; ``from_logits`` cross entropies run the
row-softmax kernel (csrc/cpu/softmax.cc), which computes the same math.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _array as A
from . import _core
from ._backend import ACC_OFFSET, backend_for
from .softmax import _grad_output_arg

# Keras reduction names -> lossx reduction codes (1 = "sum over batch size").
REDUCTIONS = {None: 0, "none": 0, "sum_over_batch_size": 1, "mean": 1, "sum": 2}

# Kernel ids (lossx::KerasLoss in csrc/lossx/lossx.h).
_CCE, _SPARSE, _FOCAL, _CHINGE, _COSINE, _DICE, _TVERSKY = range(7)


def _reduction(fn, reduction):
    if not (reduction is None or isinstance(reduction, str)) or reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of None, 'none', 'sum_over_batch_size', 'sum', "
                         f"got {reduction!r}")
    return REDUCTIONS[reduction]


def _axes(fn, axis, ndim, allow_tuple):
    """Canonical reduced axes (sorted tuple)."""
    if axis is None:
        if not allow_tuple:
            raise ValueError(f"{fn}: axis must be an int, got None")
        return tuple(range(ndim))
    items = axis if (allow_tuple and isinstance(axis, (tuple, list))) else (axis,)
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise ValueError(f"{fn}: axis must be an int{' or a tuple of ints' if allow_tuple else ''}, "
                             f"got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"{fn}: axis {a} is out of range for y_pred with {ndim} dimensions")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{fn}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def _to_rows(be, x, axes, code=None):
    """x with `axes` moved last, contiguous, as (rows, cols)."""
    keep = [i for i in range(x.ndim) if i not in axes]
    perm = keep + list(axes)
    moved = x if perm == list(range(x.ndim)) else x.transpose(perm)
    cols = int(np.prod([x.shape[i] for i in axes], dtype=np.int64))
    return be.contiguous(moved, code).reshape(-1, cols), perm


def _from_rows(g, x_shape, perm):
    """(rows, cols) gradient back to y_pred's layout (a view when axes moved)."""
    moved_shape = tuple(x_shape[i] for i in perm)
    g = g.reshape(moved_shape)
    if perm == list(range(len(x_shape))):
        return g
    return g.transpose(np.argsort(perm))


def _pred(be, fn, y_pred):
    p = be.asarray(y_pred)
    code = be.dtype_code(p, fn, "y_pred")
    if p.ndim == 0:
        raise ValueError(f"{fn}: y_pred must have at least 1 dimension, got a scalar")
    return p, code


def _true_dense(be, fn, y_true, p):
    t = be.asarray(y_true)
    if not (be.is_float(t) or be.is_int(t) or t.dtype.kind == "b"):
        raise TypeError(f"{fn}: y_true must hold numbers (float, int or bool), got dtype {t.dtype}")
    if tuple(t.shape) != tuple(p.shape):
        raise A.shape_error(fn, "y_true and y_pred must have the same shape", "y_true", t.shape,
                            "y_pred", p.shape)
    return t


def _run(fn, kind, y_true, y_pred, *, axis, reduction, return_grad, grad_output, allow_tuple=False,
         from_logits=False, label_smoothing=0.0, alpha=0.25, beta=0.5, gamma=2.0, alpha_vec=None,
         ignore_class=None):
    """Shared driver: validation, layout, outputs and the one kernel call."""
    be = backend_for(y_pred, fn)
    p, code = _pred(be, fn, y_pred)
    acc = code + ACC_OFFSET
    red = _reduction(fn, reduction)
    if not (0.0 <= label_smoothing <= 1.0):
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing}")
    axes = _axes(fn, axis, p.ndim, allow_tuple)
    pm, perm = _to_rows(be, p, axes)
    M, C = pm.shape
    if C < 1:
        raise ValueError(f"{fn}: the reduced axis of y_pred is empty (shape {tuple(p.shape)})")
    loss_shape = tuple(p.shape[i] for i in range(p.ndim) if i not in axes)

    tm = labels = None
    if kind == _SPARSE:
        t = be.asarray(y_true)
        if t.ndim == p.ndim and t.shape[axes[0]] == 1:  # Keras squeezes a size-1 class axis
            t = t.reshape(loss_shape)
        if tuple(t.shape) != loss_shape:
            raise A.shape_error(fn, "y_true must have y_pred's shape without the class axis",
                                "y_true", t.shape, "y_pred", p.shape)
        if be.is_float(t):
            # Keras casts labels to int32; a fractional label is a mistake, not a label.
            t64 = np.asarray(t, dtype=np.float64)
            if not np.all(np.isfinite(t64) & (t64 == np.round(t64))):
                bad = int(np.flatnonzero(~(np.isfinite(t64) & (t64 == np.round(t64))).reshape(-1))[0])
                raise ValueError(f"{fn}: float labels must hold integers; position {bad} holds "
                                 f"{t64.reshape(-1)[bad]}")
            t = t64.astype(np.int64)
        elif not be.is_int(t):
            raise TypeError(f"{fn}: y_true must hold integer class labels, got dtype {t.dtype}")
        labels = be.labels(t).reshape(-1)
    else:
        t = _true_dense(be, fn, y_true, p)
        tm, _ = _to_rows(be, t, axes, code)

    av = None
    if alpha_vec is not None:
        av = be.asarray(alpha_vec)
        if tuple(av.shape) != (C,):
            raise A.shape_error(fn, "alpha needs one value per class", "alpha", av.shape, "y_pred", p.shape)
        av = be.contiguous(av, acc)

    loss = be.empty((M,) if red == 0 else (1,), acc)
    grad = go = None
    if return_grad:
        grad = be.empty((M, C), code)
        go = _grad_output_arg(be, fn, grad_output, red, loss_shape, acc)
    elif grad_output is not None:
        raise ValueError(f"{fn}: grad_output needs return_grad=True")

    _core.keras_rows(be.device, be.stream, code, kind, M, C, be.arg(tm), be.arg(labels), be.arg(pm),
                     bool(from_logits), float(label_smoothing), float(alpha), float(beta), float(gamma),
                     be.arg(av), ignore_class is not None, int(ignore_class or 0), red, be.arg(loss),
                     be.arg(grad), be.arg(go))
    out = loss.reshape(loss_shape) if red == 0 else be.scalar(loss)
    if not return_grad:
        return out
    return out, _from_rows(grad, tuple(p.shape), perm)


def _int_axis(fn, axis):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise ValueError(f"{fn}: axis must be of type int, got {axis!r}")
    return int(axis)


# ---------------------------------------------------------------- row losses


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1, *,
                             reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.categorical_crossentropy``: ``-sum_c t'_c log q_c`` over ``axis``.

    ``t' = t (1 - e) + e / C`` for ``label_smoothing=e``; ``q = clip(p / sum p, 1e-7,
    1 - 1e-7)`` for probabilities, ``q = softmax(y_pred)`` (computed as
    ``log_softmax``) with ``from_logits=True``. ``y_true`` need not sum to 1.
    """
    fn = "categorical_crossentropy"
    return _run(fn, _CCE, y_true, y_pred, axis=_int_axis(fn, axis), reduction=reduction,
                return_grad=return_grad, grad_output=grad_output, from_logits=from_logits,
                label_smoothing=float(label_smoothing))


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1, *,
                                    reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.sparse_categorical_crossentropy``: ``-log q[y]``.

    ``y_true`` holds integer labels with ``y_pred``'s shape without ``axis`` (a
    size-1 class axis is squeezed, as Keras does). Rows whose label equals
    ``ignore_class`` give 0 and a zero gradient, and ``"sum_over_batch_size"``
    divides by the number of other rows. Any other label outside ``[0, C)``
    raises IndexError (Keras would silently give 0).
    """
    fn = "sparse_categorical_crossentropy"
    if ignore_class is not None and (isinstance(ignore_class, bool) or not isinstance(ignore_class, numbers.Integral)):
        raise ValueError(f"{fn}: ignore_class must be an int or None, got {ignore_class!r}")
    return _run(fn, _SPARSE, y_true, y_pred, axis=_int_axis(fn, axis), reduction=reduction,
                return_grad=return_grad, grad_output=grad_output, from_logits=from_logits,
                ignore_class=ignore_class)


def categorical_focal_crossentropy(y_true, y_pred, alpha=0.25, gamma=2.0, from_logits=False,
                                   label_smoothing=0.0, axis=-1, *, reduction=None, return_grad=False,
                                   grad_output=None):
    r"""``keras.losses.categorical_focal_crossentropy``:
    ``sum_c -alpha_c t'_c (1 - q_c)^gamma log q_c``.

    ``q = clip(s / sum s, 1e-7, 1 - 1e-7)`` with ``s = y_pred``, or ``softmax(y_pred)``
    with ``from_logits=True`` (Keras normalises and clips after the softmax too).
    ``alpha`` is a number or one value per class; ``t'`` is label-smoothed as in
    :func:`categorical_crossentropy`.
    """
    fn = "categorical_focal_crossentropy"
    if not np.isfinite(gamma):
        raise ValueError(f"{fn}: gamma must be finite, got {gamma}")
    alpha_vec = None
    if isinstance(alpha, numbers.Number):
        a = float(alpha)
    else:
        alpha_vec, a = alpha, 0.0
    return _run(fn, _FOCAL, y_true, y_pred, axis=_int_axis(fn, axis), reduction=reduction,
                return_grad=return_grad, grad_output=grad_output, from_logits=from_logits,
                label_smoothing=float(label_smoothing), alpha=a, gamma=float(gamma), alpha_vec=alpha_vec)


def categorical_hinge(y_true, y_pred, *, reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.categorical_hinge``: ``max(neg - pos + 1, 0)`` over the last axis,
    ``pos = sum(t p)``, ``neg = max((1 - t) p)``.

    The gradient is ``-t`` plus ``1 - t`` at the first maximal element of
    ``(1 - t) p`` where the loss is positive, and 0 where it is 0.
    """
    return _run("categorical_hinge", _CHINGE, y_true, y_pred, axis=-1, reduction=reduction,
                return_grad=return_grad, grad_output=grad_output)


def cosine_similarity(y_true, y_pred, axis=-1, *, reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.cosine_similarity``: ``-sum(l2_normalize(t) * l2_normalize(p))``.

    Keras' ``l2_normalize(x) = x * min(rsqrt(sum x^2), 1/1e-7)``: a zero vector
    gives 0. Where the bound is active the gradient is ``-l2_normalize(t) * 1e7``.
    ``axis`` may be an int or a tuple of ints.
    """
    return _run("cosine_similarity", _COSINE, y_true, y_pred, axis=axis, allow_tuple=True,
                reduction=reduction, return_grad=return_grad, grad_output=grad_output)


def dice(y_true, y_pred, axis=None, *, reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.dice``: ``1 - 2 sum(t p) / (sum t + sum p + 1e-7)``.

    The sums run over ``axis`` (an int, a tuple of ints, or ``None`` = every
    axis, which gives one value, as in Keras).
    """
    return _run("dice", _DICE, y_true, y_pred, axis=axis, allow_tuple=True, reduction=reduction,
                return_grad=return_grad, grad_output=grad_output)


def tversky(y_true, y_pred, alpha=0.5, beta=0.5, axis=None, *, reduction=None, return_grad=False,
            grad_output=None):
    r"""``keras.losses.tversky``: ``1 - I / (I + alpha fp + beta fn + 1e-7)`` with
    ``I = sum(t p)``, ``fp = sum((1 - p) t)``, ``fn = sum(p (1 - t))`` (Keras' names).

    Sums over ``axis`` as in :func:`dice`; ``alpha = beta = 0.5`` is the Dice loss.
    """
    fn = "tversky"
    if not (np.isfinite(alpha) and np.isfinite(beta)):
        raise ValueError(f"{fn}: alpha and beta must be finite, got {alpha}, {beta}")
    return _run(fn, _TVERSKY, y_true, y_pred, axis=axis, allow_tuple=True, reduction=reduction,
                return_grad=return_grad, grad_output=grad_output, alpha=float(alpha), beta=float(beta))


# Element-wise Keras losses (mean_squared_error, mean_absolute_error, huber,
# log_cosh, poisson, kl_divergence, binary_crossentropy, binary_focal_crossentropy,
# hinge, squared_hinge, mean_absolute_percentage_error,
# mean_squared_logarithmic_error) belong to the pointwise family: they are its
# element functors with a mean over the last axis. Each is one line here once
# that family's row-mean kernel is bound, e.g.
#     mean_squared_error = _pointwise("mean_squared_error", "mse")
# where `_pointwise(name, op, **options)` builds a function with this module's
# signature conventions ((y_true, y_pred), reduction=None, return_grad,
# grad_output) around that kernel, reusing _reduction, _pred, _true_dense and
# _grad_output_arg for the validation.

__all__ = [
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "categorical_focal_crossentropy",
    "categorical_hinge",
    "cosine_similarity",
    "dice",
    "tversky",
]
