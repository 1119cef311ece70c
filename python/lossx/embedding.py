"""Pairwise/embedding family: triplet_margin_loss, cosine_embedding_loss.

``torch.nn.functional`` semantics (argument order and defaults as torch's), one
value per row of ``(N, D)`` inputs (or one value for unbatched ``(D,)`` inputs).
Kernels: csrc/cpu/embedding.cc (CPU), cuda/embedding.cu (GPU arrays: CuPy,
PyTorch CUDA tensors, on their device and current stream, outputs from the
caller's library; cosine_embedding_loss's +-1 target rule costs one stream
synchronisation there). No broadcasting: the inputs' shapes must match.
"""
from __future__ import annotations

import math
import numbers

from . import _array as A
from . import _core
from ._backend import ACC_OFFSET, backend_for
from .softmax import _grad_output_arg

_TRIPLET, _COSINE = 0, 1


def _float_input(be, fn, x, argname, code=None):
    a = be.asarray(x, fn, argname)
    c = be.dtype_code(a, fn, argname)
    if code is not None and c != code:
        raise TypeError(f"{fn}: {argname} has dtype {a.dtype}, but the first input's dtype differs; "
                        "all inputs must share one dtype")
    return a, c


def _pm1_target(be, fn, target, want_shape, acc):
    t = be.asarray(target, fn, "target")
    if not (be.is_int(t) or be.is_float(t) or getattr(t.dtype, "kind", "") == "f"):
        raise TypeError(f"{fn}: target must be numeric (+1 / -1), got {t.dtype}")
    if tuple(t.shape) != tuple(want_shape):
        raise A.shape_error(fn, "target needs one value per row", "target", t.shape, "input1", want_shape)
    return be.contiguous(t, acc).reshape(-1)


def _run(fn, kind, xs, shape, code, target, margin, p, eps, swap, reduction, return_grad, grad_output, be):
    red = A.reduction_code(fn, reduction)
    acc = code + ACC_OFFSET
    D = shape[-1]
    rows_shape = tuple(shape[:-1])
    N = math.prod(rows_shape)
    xm = [be.contiguous(x).reshape(N, D) for x in xs]
    loss = be.empty((N,) if red == 0 else (1,), acc)
    grads = [None, None, None]
    go = None
    if return_grad:
        grads = [be.empty((N, D), code) for _ in xs] + [None] * (3 - len(xs))
        go = _grad_output_arg(be, fn, grad_output, red, rows_shape, acc)
    while len(xm) < 3:
        xm.append(None)
    _core.pairwise(be.device, be.stream, code, kind, N, D, be.arg(xm[0]), be.arg(xm[1]), be.arg(xm[2]),
                   be.arg(target), float(margin), float(p), float(eps), bool(swap), red, be.arg(loss),
                   be.arg(grads[0]), be.arg(grads[1]), be.arg(grads[2]), be.arg(go))
    out = loss.reshape(rows_shape) if red == 0 else be.scalar(loss)
    if not return_grad:
        return out
    return out, tuple(g.reshape(shape) for g in grads[: len(xs)])


def _number(fn, name, v):
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        raise TypeError(f"{fn}: {name} must be a real number, got {v!r}")
    return float(v)


def triplet_margin_loss(anchor, positive, negative, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6,
                        swap: bool = False, reduction: str = "mean", *, return_grad: bool = False,
                        grad_output=None):
    r"""``max(d(a, p) - d(a, n) + margin, 0)`` per row, ``d(x, y) = ||x - y + eps||_p``.

    ``torch.nn.functional.triplet_margin_loss`` semantics: inputs ``(N, D)`` (or
    ``(D,)``) of one shape; ``swap=True`` uses ``min(d(a, n), d(p, n))`` as the
    negative distance (a tie splits its gradient in half, like ``torch.minimum``).
    ``p`` may be any finite value > 0. ``return_grad=True`` returns
    ``(loss, (d_anchor, d_positive, d_negative))``; at a zero distance the norm's
    gradient is 0 (torch's convention), and a row with ``margin + d(a,p) - d(a,n) == 0``
    still passes its gradient (``clamp_min``'s).
    """
    fn = "triplet_margin_loss"
    be = backend_for(anchor, fn)
    a, code = _float_input(be, fn, anchor, "anchor")
    pos, _ = _float_input(be, fn, positive, "positive", code)
    neg, _ = _float_input(be, fn, negative, "negative", code)
    for name, x in (("positive", pos), ("negative", neg)):
        if tuple(x.shape) != tuple(a.shape):
            raise A.shape_error(fn, "inputs must have the same shape", name, x.shape, "anchor", a.shape)
    if a.ndim not in (1, 2):
        raise ValueError(f"{fn}: inputs must be 1-D (D,) or 2-D (N, D), got shape {tuple(a.shape)}")
    margin = _number(fn, "margin", margin)
    p = _number(fn, "p", p)
    eps = _number(fn, "eps", eps)
    if not (p > 0 and math.isfinite(p)):
        raise ValueError(f"{fn}: p must be finite and > 0, got {p}")
    return _run(fn, _TRIPLET, (a, pos, neg), tuple(a.shape), code, None, margin, p, eps, swap, reduction,
                return_grad, grad_output, be)


def cosine_embedding_loss(input1, input2, target, margin: float = 0.0, reduction: str = "mean", *,
                          return_grad: bool = False, grad_output=None):
    r"""``1 - cos(x1, x2)`` where ``target == 1``, ``max(cos(x1, x2) - margin, 0)`` where ``target == -1``.

    ``torch.nn.functional.cosine_embedding_loss`` semantics: ``cos = x1.x2 /
    sqrt((|x1|^2 + 1e-12) (|x2|^2 + 1e-12))``; inputs ``(N, D)`` with target
    ``(N,)``, or ``(D,)`` with a scalar target. Targets other than +-1 raise
    ValueError (torch silently gives 0 for them). ``return_grad=True`` returns
    ``(loss, (d_input1, d_input2))``.
    """
    fn = "cosine_embedding_loss"
    be = backend_for(input1, fn)
    x1, code = _float_input(be, fn, input1, "input1")
    x2, _ = _float_input(be, fn, input2, "input2", code)
    if tuple(x2.shape) != tuple(x1.shape):
        raise A.shape_error(fn, "inputs must have the same shape", "input2", x2.shape, "input1", x1.shape)
    if x1.ndim not in (1, 2):
        raise ValueError(f"{fn}: inputs must be 1-D (D,) or 2-D (N, D), got shape {tuple(x1.shape)}")
    t = _pm1_target(be, fn, target, x1.shape[:-1], code + ACC_OFFSET)
    margin = _number(fn, "margin", margin)
    return _run(fn, _COSINE, (x1, x2), tuple(x1.shape), code, t, margin, 2.0, 0.0, False, reduction,
                return_grad, grad_output, be)
