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

Kernels: csrc/cpu/keras_rows.cc (GPU arrays: cuda/keras_rows.cu); ``from_logits``
cross entropies run the row-softmax kernel (csrc/cpu/softmax.cc, cuda/softmax.cu),
which computes the same math. The
element-wise losses (mean_squared_error ... squared_hinge) run the pointwise
family's kernel (csrc/cpu/pointwise.cc) in its row mode, which reduces the
last axis inside the loop.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import _array as A
from . import _core
from ._backend import ACC_OFFSET, backend_for
from .pointwise import _first_invalid
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
    if type(axis) is int and -ndim <= axis < ndim:  # the common case
        return (axis % ndim,)
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
    if axes == (x.ndim - 1,):  # already last: no permutation
        return be.contiguous(x, code).reshape(-1, x.shape[-1]), list(range(x.ndim))
    keep = [i for i in range(x.ndim) if i not in axes]
    perm = keep + list(axes)
    moved = x if perm == list(range(x.ndim)) else be.permute(x, perm)
    cols = math.prod([x.shape[i] for i in axes])
    rows = math.prod([x.shape[i] for i in keep])  # (not -1: cols may be 0)
    return be.contiguous(moved, code).reshape(rows, cols), perm


def _from_rows(be, g, x_shape, perm):
    """(rows, cols) gradient back to y_pred's layout (a view when axes moved)."""
    moved_shape = tuple(x_shape[i] for i in perm)
    g = g.reshape(moved_shape)
    if perm == list(range(len(x_shape))):
        return g
    return be.permute(g, [int(i) for i in np.argsort(perm)])


def _pred(be, fn, y_pred):
    p = be.asarray(y_pred)
    code = be.dtype_code(p, fn, "y_pred")
    if p.ndim == 0:
        raise ValueError(f"{fn}: y_pred must have at least 1 dimension, got a scalar")
    return p, code


def _true_dense(be, fn, y_true, p):
    t = be.asarray(y_true, fn, "y_true")
    if not (be.is_float(t) or be.is_int(t) or be.is_bool(t)):
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
        t = be.asarray(y_true, fn, "y_true")
        if t.ndim == p.ndim and t.shape[axes[0]] == 1:  # Keras squeezes a size-1 class axis
            t = t.reshape(loss_shape)
        if tuple(t.shape) != loss_shape:
            raise A.shape_error(fn, "y_true must have y_pred's shape without the class axis",
                                "y_true", t.shape, "y_pred", p.shape)
        if be.is_float(t):
            # Keras casts labels to int32; a fractional label is a mistake, not a label.
            # A GPU array is tested by its own library (one read of the flag);
            # it comes to the host only to name the bad position.
            if be.device != A.CPU and not bool(((t != t.round()) | ((t - t) != 0)).any()):
                t = be.labels(t)
            else:
                t64 = np.asarray(be.to_host(t), dtype=np.float64)
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
        av = be.asarray(alpha_vec, fn, "alpha")
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
    return out, _from_rows(be, grad, tuple(p.shape), perm)


def _int_axis(fn, axis):
    if type(axis) is int:  # the common case, without the slower ABC checks below
        return axis
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


# ---------------------------------------------------------------- element-wise losses
# The pointwise family's kernel (csrc/cpu/pointwise.cc) in row mode: each
# element's loss is a functor of pointwise_losses.def, and the kernel reduces
# the last axis (mean, or sum for kl_divergence) in a fixed order.

_PW = _core.pointwise_codes


def _same_rank(t, p):
    """Keras' squeeze_or_expand_to_same_rank: a size-1 last axis is squeezed
    (or a rank-1 partner expanded) when the ranks differ by one."""
    if t.ndim == p.ndim + 1 and t.shape[-1] == 1:
        return (t, p.reshape(p.shape + (1,))) if p.ndim == 1 else (t.reshape(t.shape[:-1]), p)
    if p.ndim == t.ndim + 1 and p.shape[-1] == 1:
        return (t.reshape(t.shape + (1,)), p) if t.ndim == 1 else (t, p.reshape(p.shape[:-1]))
    return t, p


def _finite(fn, name, v):
    if type(v) is float and math.isfinite(v):  # the common case
        return v
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
        raise ValueError(f"{fn}: {name} must be a finite real number, got {v!r}")
    return float(v)


def _elementwise(fn, op, y_true, y_pred, *, reduction, return_grad, grad_output, axis=-1, same_rank=False,
                 row_sum=False, beta=1.0, from_logits=False, label_smoothing=0.0, class_balancing=False,
                 alpha=0.25, gamma=2.0, hinge=False):
    """Shared driver of the element-wise losses: validation, layout, outputs, one kernel call."""
    be = backend_for(y_pred, fn)
    p0, code = _pred(be, fn, y_pred)
    acc = code + ACC_OFFSET
    red = _reduction(fn, reduction)
    t = be.asarray(y_true, fn, "y_true")
    if not (be.is_float(t) or be.is_int(t) or be.is_bool(t)):
        raise TypeError(f"{fn}: y_true must hold numbers (float, int or bool), got dtype {t.dtype}")
    t0, p = t, p0
    if same_rank:
        t, p = _same_rank(t, p0)
    if tuple(t.shape) != tuple(p.shape):  # Keras would broadcast; lossx never does silently
        raise A.shape_error(fn, "y_true and y_pred must have the same shape", "y_true", t0.shape,
                            "y_pred", p0.shape)
    if not isinstance(from_logits, (bool, np.bool_)):
        raise ValueError(f"{fn}: from_logits must be a bool, got {from_logits!r}")
    label_smoothing = _finite(fn, "label_smoothing", label_smoothing)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing}")
    axes = _axes(fn, _int_axis(fn, axis), p.ndim, False)
    if p.shape[axes[0]] < 1:
        raise ValueError(f"{fn}: the reduced axis of y_pred is empty (shape {tuple(p.shape)})")
    pm, perm = _to_rows(be, p, axes)
    tm, _ = _to_rows(be, t, axes, code)
    M, L = pm.shape
    loss_shape = tuple(p.shape[i] for i in range(p.ndim) if i not in axes)
    n = M * L
    # Keras converts hinge labels only when every one of them is 0 or 1: a host
    # decision (tm holds the input's dtype code; GPU labels cost one device-to-host
    # read of the flag).
    binary = bool(hinge) and _first_invalid(tm.reshape(-1), code, 2, be) == -1

    kred = red
    if red == 1 and M == 0:
        kred = 2  # Keras' divide_no_nan: an empty "sum_over_batch_size" is 0
    loss = be.empty((M,) if red == 0 else (1,), acc)
    grad = go = None
    if return_grad:
        grad = be.empty((M, L), code)
        go = _grad_output_arg(be, fn, grad_output, red, loss_shape, acc)
    elif grad_output is not None:
        raise ValueError(f"{fn}: grad_output needs return_grad=True")
    _core.keras_pointwise(be.device, be.stream, code, _PW[op], n, L, 1.0 if row_sum else 1.0 / L,
                          be.arg(tm.reshape(-1)), be.arg(pm.reshape(-1)), float(beta), bool(from_logits),
                          label_smoothing, bool(class_balancing), float(alpha), float(gamma), binary, kred,
                          be.arg(loss), be.arg(grad), be.arg(go))
    out = loss.reshape(loss_shape) if red == 0 else be.scalar(loss)
    if not return_grad:
        return out
    return out, _from_rows(be, grad, tuple(p.shape), perm).reshape(p0.shape)


_COMMON = """

    ``reduction``: None / "none" (per-sample values, the default),
    "sum_over_batch_size" (their mean; 0 for an empty batch, as Keras) or "sum".
    ``return_grad=True`` returns ``(loss, d loss / d y_pred)``; ``grad_output``
    scales it (a scalar, or one value per sample for ``reduction=None``)."""


def _doc(f):
    f.__doc__ = f.__doc__.rstrip() + _COMMON
    return f


@_doc
def mean_absolute_error(y_true, y_pred, *, reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.mean_absolute_error``: ``mean(|y_true - y_pred|, axis=-1)``.

    Gradient ``sign(y_pred - y_true) / L`` (0 where they are equal). As in Keras, a
    size-1 last axis of one argument is squeezed when the ranks differ by one.
    """
    return _elementwise("mean_absolute_error", "keras.mean_absolute_error", y_true, y_pred, same_rank=True, reduction=reduction,
                        return_grad=return_grad, grad_output=grad_output)


@_doc
def mean_squared_error(y_true, y_pred, *, reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.mean_squared_error``: ``mean((y_true - y_pred)^2, axis=-1)``.

    Gradient ``2 (y_pred - y_true) / L``. Ranks are matched as in
    :func:`mean_absolute_error`.
    """
    return _elementwise("mean_squared_error", "mse_loss", y_true, y_pred, same_rank=True, reduction=reduction,
                        return_grad=return_grad, grad_output=grad_output)


@_doc
def mean_absolute_percentage_error(y_true, y_pred, *, reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.mean_absolute_percentage_error``:
    ``100 mean(|y_true - y_pred| / max(|y_true|, 1e-7), axis=-1)``.

    Gradient ``100 sign(y_pred - y_true) / (L max(|y_true|, 1e-7))``. Ranks are
    matched as in :func:`mean_absolute_error`.
    """
    return _elementwise("mean_absolute_percentage_error", "keras.mean_absolute_percentage_error", y_true, y_pred,
                        same_rank=True, reduction=reduction, return_grad=return_grad, grad_output=grad_output)


@_doc
def mean_squared_logarithmic_error(y_true, y_pred, *, reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.mean_squared_logarithmic_error``:
    ``mean((log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))^2, axis=-1)``.

    The logs are computed as ``log1p``. Gradient ``2 d / (L (max(y_pred, 1e-7) + 1))``
    where ``y_pred >= 1e-7``, 0 below (the ``maximum`` is flat there). Ranks are
    matched as in :func:`mean_absolute_error`.
    """
    return _elementwise("mean_squared_logarithmic_error", "keras.mean_squared_logarithmic_error", y_true, y_pred,
                        same_rank=True, reduction=reduction, return_grad=return_grad, grad_output=grad_output)


@_doc
def huber(y_true, y_pred, delta=1.0, *, reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.huber``: ``mean(0.5 e^2 if |e| <= delta else delta |e| - 0.5 delta^2, axis=-1)``
    with ``e = y_pred - y_true``; ``delta >= 0``.

    Gradient ``e / L`` inside, ``delta sign(e) / L`` outside. Ranks are matched as in
    :func:`mean_absolute_error`.
    """
    fn = "huber"
    delta = _finite(fn, "delta", delta)
    if delta < 0:
        raise ValueError(f"{fn}: delta must be >= 0, got {delta}")
    return _elementwise(fn, "huber_loss", y_true, y_pred, same_rank=True, beta=delta, reduction=reduction,
                        return_grad=return_grad, grad_output=grad_output)


@_doc
def log_cosh(y_true, y_pred, *, reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.log_cosh``: ``mean(log(cosh(y_pred - y_true)), axis=-1)``.

    Keras writes it ``x + softplus(-2x) - log 2``; lossx evaluates the same
    function without that form's cancellation near 0. Gradient
    ``tanh(y_pred - y_true) / L``. Ranks are matched as in :func:`mean_absolute_error`.
    """
    return _elementwise("log_cosh", "keras.log_cosh", y_true, y_pred, same_rank=True, reduction=reduction,
                        return_grad=return_grad, grad_output=grad_output)


@_doc
def poisson(y_true, y_pred, *, reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.poisson``: ``mean(y_pred - y_true log(y_pred + 1e-7), axis=-1)``.

    Gradient ``(1 - y_true / (y_pred + 1e-7)) / L``; ``y_pred + 1e-7 < 0`` gives NaN,
    as the log does.
    """
    return _elementwise("poisson", "keras.poisson", y_true, y_pred, reduction=reduction,
                        return_grad=return_grad, grad_output=grad_output)


@_doc
def kl_divergence(y_true, y_pred, *, reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.kl_divergence``: ``sum(t log(t / q), axis=-1)`` with
    ``t = clip(y_true, 1e-7, 1)`` and ``q = clip(y_pred, 1e-7, 1)``.

    A sum, not a mean, over the last axis (as Keras). Gradient ``-t / q`` where
    ``1e-7 <= y_pred <= 1``, 0 outside (the clip is flat there).
    """
    return _elementwise("kl_divergence", "keras.kl_divergence", y_true, y_pred, row_sum=True, reduction=reduction,
                        return_grad=return_grad, grad_output=grad_output)


@_doc
def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1, *, reduction=None,
                        return_grad=False, grad_output=None):
    r"""``keras.losses.binary_crossentropy``: ``mean(-(t log q + (1 - t) log(1 - q)), axis)``.

    ``t = y_true (1 - e) + e / 2`` with ``label_smoothing=e``; ``q = clip(y_pred, 1e-7,
    1 - 1e-7)``, gradient ``(q - t) / (q (1 - q) L)`` inside the clip and 0 outside.
    ``from_logits=True``: the stable ``max(x, 0) - x t + log1p(exp(-|x|))``, gradient
    ``(sigmoid(x) - t) / L``, unclipped (Keras' TensorFlow, JAX and PyTorch backends;
    its NumPy backend clips ``sigmoid(x)``).
    """
    return _elementwise("binary_crossentropy", "keras.binary_crossentropy", y_true, y_pred, axis=axis,
                        from_logits=from_logits, label_smoothing=label_smoothing, reduction=reduction,
                        return_grad=return_grad, grad_output=grad_output)


@_doc
def binary_focal_crossentropy(y_true, y_pred, apply_class_balancing=False, alpha=0.25, gamma=2.0,
                              from_logits=False, label_smoothing=0.0, axis=-1, *, reduction=None,
                              return_grad=False, grad_output=None):
    r"""``keras.losses.binary_focal_crossentropy``: ``mean(w (1 - p_t)^gamma bce, axis)``.

    ``p = y_pred`` (``sigmoid(y_pred)`` with ``from_logits``), ``t`` the label-smoothed
    ``y_true`` as in :func:`binary_crossentropy`, ``p_t = t p + (1 - t)(1 - p)``, ``bce``
    the clipped binary cross entropy of ``p`` (clipped with ``from_logits`` too, as
    Keras), ``w = alpha t + (1 - alpha)(1 - t)`` with ``apply_class_balancing`` else 1.
    ``(1 - p_t)^gamma`` is an exact product for integer ``gamma`` in [0, 16], else
    ``exp(gamma log(1 - p_t))`` (NaN where ``1 - p_t < 0``). The gradient is the full
    chain rule through the focal factor, the clip (0 outside) and the sigmoid.
    """
    fn = "binary_focal_crossentropy"
    if not isinstance(apply_class_balancing, (bool, np.bool_)):
        raise ValueError(f"{fn}: apply_class_balancing must be a bool, got {apply_class_balancing!r}")
    return _elementwise(fn, "keras.binary_focal_crossentropy", y_true, y_pred, axis=axis,
                        from_logits=from_logits, label_smoothing=label_smoothing,
                        class_balancing=apply_class_balancing, alpha=_finite(fn, "alpha", alpha),
                        gamma=_finite(fn, "gamma", gamma), reduction=reduction, return_grad=return_grad,
                        grad_output=grad_output)


@_doc
def hinge(y_true, y_pred, *, reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.hinge``: ``mean(max(1 - t y_pred, 0), axis=-1)``.

    ``t = 2 y_true - 1`` when every ``y_true`` is 0 or 1 (Keras' conversion of
    binary labels), else ``y_true``. Gradient ``-t / L`` where ``1 - t y_pred >= 0``
    (TensorFlow's ``maximum`` passes it at the tie), else 0.
    """
    return _elementwise("hinge", "keras.hinge", y_true, y_pred, hinge=True, reduction=reduction,
                        return_grad=return_grad, grad_output=grad_output)


@_doc
def squared_hinge(y_true, y_pred, *, reduction=None, return_grad=False, grad_output=None):
    r"""``keras.losses.squared_hinge``: ``mean(max(1 - t y_pred, 0)^2, axis=-1)``, ``t``
    as in :func:`hinge`. Gradient ``-2 t max(1 - t y_pred, 0) / L``.
    """
    return _elementwise("squared_hinge", "keras.squared_hinge", y_true, y_pred, hinge=True, reduction=reduction,
                        return_grad=return_grad, grad_output=grad_output)


__all__ = [
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "categorical_focal_crossentropy",
    "categorical_hinge",
    "cosine_similarity",
    "dice",
    "tversky",
    "mean_absolute_error",
    "mean_squared_error",
    "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    "huber",
    "log_cosh",
    "poisson",
    "kl_divergence",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "hinge",
    "squared_hinge",
]
