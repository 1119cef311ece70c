"""tf.nn semantics: ``lossx.tf.<name>`` mirrors ``tf.nn.<name>``.

Keyword-only ``labels=`` / ``logits=``; per-element (sigmoid) or per-row
(softmax) values with no reduction, as TensorFlow returns them.
``return_grad=True`` returns ``(loss, grad)`` with ``grad`` the gradient of
``sum(grad_output * loss)`` with respect to ``logits`` (``grad_output`` defaults
to ones; a scalar or an array of the loss's shape). Labels are cast to the
logits' dtype (TensorFlow requires them to match already). float16/bfloat16
logits accumulate in float32 and give a float32 loss.

Kernels: the pointwise family's (csrc/cpu/pointwise.cc, cuda/pointwise.cu) for the
sigmoid op; the Keras row kernels (csrc/cpu/keras_rows.cc, cuda/keras_rows.cu) for the
softmax ops.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import _array as A
from . import _core
from ._backend import ACC_OFFSET, backend_for
from .keras import _CCE, _SPARSE


def _logits(be, fn, logits):
    x = be.asarray(logits)
    return x, be.dtype_code(x, fn, "logits")


def _grad_output(be, fn, grad_output, shape, acc):
    if grad_output is None:
        return None
    if isinstance(grad_output, numbers.Number):
        g = be.empty(shape, acc)
        g[...] = grad_output
        return be.contiguous(g).reshape(-1)
    g = be.asarray(grad_output, fn, "grad_output")
    if tuple(g.shape) != tuple(shape):
        raise A.shape_error(fn, "grad_output must match the loss", "grad_output", g.shape, "loss", shape)
    return be.contiguous(g, acc).reshape(-1)


def _float_labels(be, fn, labels, x, code):
    t = be.asarray(labels, fn, "labels")
    if not (be.is_float(t) or be.is_int(t) or be.is_bool(t)):
        raise TypeError(f"{fn}: labels must hold numbers, got dtype {t.dtype}")
    if tuple(t.shape) != tuple(x.shape):
        raise A.shape_error(fn, "labels and logits must have the same shape", "labels", t.shape,
                            "logits", x.shape)
    return t


def sigmoid_cross_entropy_with_logits(*, labels, logits, name=None, return_grad=False, grad_output=None):
    r"""``tf.nn.sigmoid_cross_entropy_with_logits``, element-wise:
    ``max(x, 0) - x z + log(1 + exp(-|x|))`` for logits ``x`` and labels ``z``.

    The gradient with respect to the logits is ``sigmoid(x) - z``.
    """
    fn = "sigmoid_cross_entropy_with_logits"
    be = backend_for(logits, fn)
    x, code = _logits(be, fn, logits)
    t = _float_labels(be, fn, labels, x, code)
    acc = code + ACC_OFFSET
    n = math.prod(x.shape)
    xm = be.contiguous(x).reshape(-1)
    tm = be.contiguous(t, code).reshape(-1)
    loss = be.empty((n,), acc)
    grad = go = None
    if return_grad:
        grad = be.empty((n,), code)
        go = _grad_output(be, fn, grad_output, tuple(x.shape), acc)
    elif grad_output is not None:
        raise ValueError(f"{fn}: grad_output needs return_grad=True")
    _core.sigmoid_cross_entropy(be.device, be.stream, code, n, be.arg(tm), be.arg(xm), be.arg(loss),
                                be.arg(grad), be.arg(go))
    loss = loss.reshape(x.shape)
    return (loss, grad.reshape(x.shape)) if return_grad else loss


def _softmax_rows(fn, kind, labels, logits, axis, return_grad, grad_output):
    be = backend_for(logits, fn)
    x, code = _logits(be, fn, logits)
    acc = code + ACC_OFFSET
    if x.ndim == 0:
        raise ValueError(f"{fn}: logits must have at least 1 dimension, got a scalar")
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{fn}: axis {axis!r} is not a valid axis for logits with {x.ndim} dimensions")
    axis = int(axis) % x.ndim
    C = x.shape[axis]
    if C < 1:
        raise ValueError(f"{fn}: logits have no classes (shape {tuple(x.shape)})")
    xm = be.contiguous(be.move_last(x, axis)) if axis != x.ndim - 1 else be.contiguous(x)
    moved_shape = tuple(xm.shape)
    xm = xm.reshape(-1, C)
    M = xm.shape[0]
    loss_shape = moved_shape[:-1]
    tm = lab = None
    if kind == _SPARSE:
        t = be.asarray(labels, fn, "labels")
        if not be.is_int(t):
            raise TypeError(f"{fn}: labels must hold integer class indices, got dtype {t.dtype}")
        if tuple(t.shape) != loss_shape:
            raise A.shape_error(fn, "labels must have the logits' shape without the last axis",
                                "labels", t.shape, "logits", x.shape)
        lab = be.labels(t).reshape(-1)
    else:
        t = _float_labels(be, fn, labels, x, code)
        tm = (be.contiguous(be.move_last(t, axis), code) if axis != x.ndim - 1
              else be.contiguous(t, code)).reshape(-1, C)
    loss = be.empty((M,), acc)
    grad = go = None
    if return_grad:
        grad = be.empty((M, C), code)
        go = _grad_output(be, fn, grad_output, loss_shape, acc)
    elif grad_output is not None:
        raise ValueError(f"{fn}: grad_output needs return_grad=True")
    _core.keras_rows(be.device, be.stream, code, kind, M, C, be.arg(tm), be.arg(lab), be.arg(xm), True,
                     0.0, 0.0, 0.0, 0.0, None, False, 0, 0, be.arg(loss), be.arg(grad), be.arg(go))
    loss = loss.reshape(loss_shape)
    if not return_grad:
        return loss
    g = grad.reshape(moved_shape)
    return loss, (be.move_back(g, axis) if axis != x.ndim - 1 else g)


def softmax_cross_entropy_with_logits(*, labels, logits, axis=-1, name=None, return_grad=False,
                                      grad_output=None):
    r"""``tf.nn.softmax_cross_entropy_with_logits``: per row,
    ``-sum_c labels_c log_softmax(logits)_c`` along ``axis``.

    ``labels`` are soft labels with the logits' shape and are not normalised.
    The gradient is the exact one, ``sum(labels) softmax(logits) - labels``;
    TensorFlow's op returns ``softmax(logits) - labels``, which equals it only
    when each row of labels sums to 1.
    """
    return _softmax_rows("softmax_cross_entropy_with_logits", _CCE, labels, logits, axis, return_grad,
                         grad_output)


def sparse_softmax_cross_entropy_with_logits(*, labels, logits, name=None, return_grad=False,
                                             grad_output=None):
    r"""``tf.nn.sparse_softmax_cross_entropy_with_logits``: per row,
    ``-log_softmax(logits)[labels]`` over the last axis.

    ``labels`` are integers with the logits' shape without the last axis; one
    outside ``[0, C)`` raises IndexError naming its position. The gradient is
    ``softmax(logits) - onehot(labels)``.
    """
    return _softmax_rows("sparse_softmax_cross_entropy_with_logits", _SPARSE, labels, logits, -1,
                         return_grad, grad_output)


__all__ = [
    "sigmoid_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits",
]
