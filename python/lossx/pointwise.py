"""The pointwise loss family, ``torch.nn.functional`` semantics: one value per
element of ``input`` and ``target`` (which must have exactly the same shape;
nothing is broadcast silently), then ``reduction`` = "none" | "mean" | "sum"
("batchmean" too for ``kl_div``).

``return_grad=True`` returns ``(loss, (d_input, d_target))``: the gradients of
``grad_output * loss`` with respect to both inputs, in argument order
(``gaussian_nll_loss`` adds ``d_var``; ``hinge_embedding_loss``, whose +-1
target is not differentiable, returns ``(loss, d_input)``).
``grad_output`` is a scalar, or an array of the loss's shape for
``reduction="none"`` (default: ones). float16/bfloat16 inputs accumulate in
float32 and return a float32 loss; gradients come back in the input dtypes.

GPU arrays (CuPy, PyTorch CUDA tensors) run on their device and the caller's
current stream, with outputs from the caller's library and the reduced loss a
0-d device array (no host sync, except binary_cross_entropy,
soft_margin_loss and hinge_embedding_loss, whose value rules are checked on the
device and reported after one stream synchronisation; these three are refused
under CUDA graph capture). Every array argument must be on the input's
device; host data (NumPy weights, scalars) is uploaded.

Kernels: csrc/cpu/pointwise.cc (CPU: one Highway loop; a functor per loss) and
cuda/pointwise.cu (GPU: one kernel; a device functor per loss). The list of
losses is csrc/lossx/pointwise_losses.def; their codes come from
``_core.pointwise_codes``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import _array as A
from . import _core
from ._backend import ACC_OFFSET, backend_for
from .softmax import _grad_output_arg

_CODE = dict(_core.pointwise_codes)
_KL_REDUCTIONS = {**A.REDUCTIONS, "batchmean": 1}


def _weight_arg(be, fn, argname, w, shape, acc):
    """A weight broadcastable to `shape` -> (flat acc-dtype array, period).

    Element i of the flattened input uses flat[i % period]: a weight that varies
    only along trailing axes (pos_weight's (C,), a weight of shape (d, C)) is
    passed as is; any other broadcast is materialised once."""
    if w is None:
        return None, 1
    wa = be.asarray(w, fn, argname)
    if not be.is_float(wa):
        raise TypeError(f"{fn}: {argname} must be float32, float64, float16 or bfloat16, got {wa.dtype}")
    shape = tuple(shape)
    try:
        ok = np.broadcast_shapes(tuple(wa.shape), shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise A.shape_error(fn, f"{argname} must broadcast to the input's shape", argname, wa.shape,
                            "input", shape)
    ws = (1,) * (len(shape) - wa.ndim) + tuple(wa.shape)
    k = next((i for i, s in enumerate(ws) if s != 1), len(ws))
    if ws[k:] == shape[k:]:
        period = math.prod(shape[k:])
        return be.contiguous(wa, acc).reshape(-1), max(period, 1)
    full = be.broadcast_to(wa, shape)
    return be.contiguous(full, acc).reshape(-1), max(math.prod(shape), 1)


def _run(fn, input, target, reduction, return_grad, grad_output, *, weight=None, pos_weight=None,
         beta=1.0, log_target=False, log_input=True, full=False, check=None, reductions=A.REDUCTIONS,
         var=None, target_grad=True, var_grad=True, alpha=-1.0, gamma=2.0, margin=1.0, row_len=0, kind=None):
    """``var``: gaussian_nll_loss's variance already broadcast to the input's shape;
    its gradient comes back per element (accumulation dtype) for the caller to
    sum over the broadcast axes. Gradients: (d_input, d_target[, d_var]), or
    d_input alone when ``target_grad`` is False; ``var_grad=False``: a third
    operand that is not differentiable (margin_ranking_loss's +-1 target).
    ``row_len`` > 0: row mode over the last axis (of that length): a row's loss is
    the mean of its element losses and the output drops the last axis. ``kind``:
    the kernel's loss when ``fn`` (the name in messages) is another API's."""
    be = backend_for(input, fn)
    x = be.asarray(input)
    code = be.dtype_code(x, fn, "input")
    t = be.asarray(target, fn, "target")
    if not be.is_float(t):
        raise TypeError(f"{fn}: target must be float32, float64, float16 or bfloat16, got {t.dtype}")
    if tuple(t.shape) != tuple(x.shape):
        raise A.shape_error(fn, "input and target must have the same shape", "input", x.shape,
                            "target", t.shape)
    red = A.reduction_code(fn, reduction, reductions)
    mean_divisor = 0.0
    if reduction == "batchmean" and x.ndim > 0:
        mean_divisor = float(x.shape[0])
    elif reduction == "batchmean":
        red = A.REDUCTIONS["sum"]  # torch: a 0-d input has no batch axis
    acc = code + ACC_OFFSET
    shape = tuple(x.shape)
    n = math.prod(shape)
    xm = be.contiguous(x).reshape(-1)
    tm = be.contiguous(t, code).reshape(-1)
    if check is not None and be.device == A.CPU:
        # On the GPU the kernel checks the same rules in its sweep (same position;
        # the value printed with %g).
        check(xm, tm, code)
    w, wp = _weight_arg(be, fn, "weight", weight, shape, acc)
    pw, pwp = _weight_arg(be, fn, "pos_weight", pos_weight, shape, acc)
    vm = None if var is None else be.contiguous(var, code).reshape(-1)
    out_shape = shape[:-1] if row_len else shape
    loss = be.empty((n // row_len if row_len else n,) if red == 0 else (1,), acc)
    gi = gt = gv = go = None
    if return_grad:
        gi = be.empty((n,), code)
        if target_grad:
            gt = be.empty((n,), code)
        if vm is not None and var_grad:
            gv = be.empty((n,), acc)
        go = _grad_output_arg(be, fn, grad_output, red, out_shape, acc)
    elif grad_output is not None:
        raise ValueError(f"{fn}: grad_output needs return_grad=True")
    _core.pointwise(be.device, be.stream, code, _CODE[kind or fn], n, be.arg(xm), be.arg(tm), be.arg(w), wp,
                    be.arg(pw), pwp, float(beta), bool(log_target), bool(log_input), bool(full), red,
                    mean_divisor, be.arg(loss), be.arg(gi), be.arg(gt), be.arg(go), be.arg(vm), be.arg(gv),
                    float(alpha), float(gamma), float(margin), int(row_len), 1.0 / row_len if row_len else 1.0)
    out = loss.reshape(out_shape) if red == 0 else be.scalar(loss)
    if not return_grad:
        return out
    if not target_grad:
        return out, gi.reshape(shape)
    gt = gt.reshape(shape)
    if gt.dtype != t.dtype:
        gt = be.astype(gt, t.dtype)
    if gv is None:
        return out, (gi.reshape(shape), gt)
    return out, (gi.reshape(shape), gt, gv.reshape(shape))


def _real(fn, name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or np.isnan(v):
        raise ValueError(f"{fn}: {name} must be a real number, got {v!r}")
    return float(v)


def l1_loss(input, target, *, reduction="mean", return_grad=False, grad_output=None):
    """``mean(|input - target|)``; the gradient at ``input == target`` is 0."""
    return _run("l1_loss", input, target, reduction, return_grad, grad_output)


def mse_loss(input, target, *, reduction="mean", return_grad=False, grad_output=None):
    """``mean((input - target)^2)``."""
    return _run("mse_loss", input, target, reduction, return_grad, grad_output)


def smooth_l1_loss(input, target, *, reduction="mean", beta=1.0, return_grad=False, grad_output=None):
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - beta / 2`` (``d = input - target``).
    ``beta`` must be >= 0; ``beta = 0`` is ``l1_loss``."""
    beta = _real("smooth_l1_loss", "beta", beta)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    return _run("smooth_l1_loss", input, target, reduction, return_grad, grad_output, beta=beta)


def huber_loss(input, target, *, reduction="mean", delta=1.0, return_grad=False, grad_output=None):
    """``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - delta / 2)``; ``delta`` must be > 0."""
    delta = _real("huber_loss", "delta", delta)
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be > 0, got {delta}")
    return _run("huber_loss", input, target, reduction, return_grad, grad_output, beta=delta)


def binary_cross_entropy_with_logits(input, target, weight=None, *, reduction="mean", pos_weight=None,
                                     return_grad=False, grad_output=None):
    """``w [(1 - y) x + (1 + (pw - 1) y) softplus(-x)]``, i.e. without ``pos_weight``
    ``max(x, 0) - x y + log1p(exp(-|x|))``. ``weight`` broadcasts to the input's
    shape, ``pos_weight`` too (typically ``(C,)`` along the last axis). The input
    gradient is ``w (sigmoid(x) - y)`` without ``pos_weight``."""
    return _run("binary_cross_entropy_with_logits", input, target, reduction, return_grad, grad_output,
                weight=weight, pos_weight=pos_weight)


# The value rules as array expressions (NaN breaks each of them).
_BAD = {0: lambda w: (w != 1) & (w != -1), 1: lambda w: ~((w >= 0) & (w <= 1)), 2: lambda w: (w != 0) & (w != 1)}


def _first_invalid(v, code, rule, be=None):
    """Flat index of the first element of the C-contiguous 1-D array ``v``
    breaking ``rule`` (0: only -1 and +1; 1: inside [0, 1], NaN outside; 2: only 0
    and 1), or -1.
    ``code`` 0/1 (float32/float64) is scanned in C++ (one read, no copies); any
    other array (float16/bfloat16, integers) through NumPy in float64. A GPU
    array (``be`` its backend) is tested by its own library, and only read back
    to the host to find the position when something is bad."""
    if be is not None and be.device != A.CPU:
        if not bool(_BAD[rule](v).any()):  # one device-to-host read of the flag
            return -1
        v, code = be.to_host(v), -1
    if code in (0, 1):
        return _core.first_invalid(v, code, v.size, rule)
    bad = _BAD[rule](np.asarray(v, dtype=np.float64))
    return int(np.flatnonzero(bad)[0]) if bad.any() else -1


def _check_pm1(fn):
    def check(x, t, code):
        i = _first_invalid(t, code, 0)
        if i >= 0:
            raise ValueError(f"{fn}: target must hold only -1 and +1; element {i} is {float(t[i])}")
    return check


def soft_margin_loss(input, target, *, reduction="mean", return_grad=False, grad_output=None):
    """``log(1 + exp(-y x))`` (computed stably) with targets ``y`` in {-1, +1}."""
    return _run("soft_margin_loss", input, target, reduction, return_grad, grad_output,
                check=_check_pm1("soft_margin_loss"))


def _check_prob(x, t, code):
    # torch 2.13 checks both: input must be probabilities, and so must the target.
    for what, v in (("input", x), ("target", t)):
        i = _first_invalid(v, code, 1)
        if i >= 0:
            raise ValueError(f"binary_cross_entropy: {what} must hold probabilities in [0, 1]; element {i} "
                             f"is {float(v[i])}")


def binary_cross_entropy(input, target, weight=None, *, reduction="mean", return_grad=False,
                         grad_output=None):
    """``-w (y log x + (1 - y) log(1 - x))`` with each log clamped at >= -100.
    Inputs or targets outside [0, 1] (or NaN) raise ValueError, as torch. The input gradient is torch's
    ``w (x - y) / max(x (1 - x), 1e-12)``."""
    return _run("binary_cross_entropy", input, target, reduction, return_grad, grad_output,
                weight=weight, check=_check_prob)


def kl_div(input, target, *, reduction="mean", log_target=False, return_grad=False, grad_output=None):
    """``target (log target - input)`` (0 where target = 0) with log-probability
    inputs; ``log_target=True`` takes log-probability targets:
    ``exp(target) (target - input)``. ``reduction="batchmean"`` divides the sum
    by ``input.shape[0]`` (the KL divergence proper)."""
    return _run("kl_div", input, target, reduction, return_grad, grad_output, log_target=log_target,
                reductions=_KL_REDUCTIONS)


def poisson_nll_loss(input, target, log_input=True, full=False, *, eps=1e-8, reduction="mean",
                     return_grad=False, grad_output=None):
    """``exp(x) - y x`` (``log_input``) or ``x - y log(x + eps)``; ``full`` adds
    Stirling's ``y log y - y + log(2 pi y) / 2`` where ``y > 1``."""
    eps = _real("poisson_nll_loss", "eps", eps)
    if eps < 0:
        raise ValueError(f"poisson_nll_loss: eps must be >= 0, got {eps}")
    return _run("poisson_nll_loss", input, target, reduction, return_grad, grad_output, beta=eps,
                log_input=log_input, full=full)


def _var_arg(be, fn, var, shape, code):
    """torch's var rules -> (var broadcast to `shape`, axes its gradient sums over,
    var's shape, var's dtype); a Python number is one variance for every element
    (an array of the input's dtype code, in the caller's library)."""
    if isinstance(var, numbers.Real) and not isinstance(var, bool):
        v = float(var)
        if v < 0:
            raise ValueError(f"{fn}: var must be >= 0, got {v}")
        return be.full(shape, v, code), tuple(range(len(shape))), (), None
    va = be.asarray(var, fn, "var")
    if not be.is_float(va):
        raise TypeError(f"{fn}: var must be float32, float64, float16 or bfloat16, got {va.dtype}")
    if bool((va < 0).any()):  # on a GPU: one device-to-host read of the flag
        vv = be.to_host(va).astype(np.float64).reshape(-1)
        i = int(np.flatnonzero(vv < 0)[0])
        raise ValueError(f"{fn}: var must be >= 0; element {i} is {vv[i]}")
    vs = tuple(va.shape)
    vb = vs
    if vs != shape:
        if len(shape) >= 1 and vs == shape[:-1]:
            vb = vs + (1,)  # homoscedastic over the last axis: torch unsqueezes var
        elif not (len(vs) == len(shape) and sum(v for s, v in zip(shape, vs) if s != v) == 1):
            vb = None
        if vb is not None:
            try:
                ok = np.broadcast_shapes(vb, shape) == shape
            except ValueError:
                ok = False
            vb = vb if ok else None
        if vb is None:
            raise A.shape_error(fn, "var must have the input's shape, that shape without its last axis, "
                                "or that shape with a single axis of size 1", "var", vs, "input", shape)
    axes = tuple(k for k in range(len(shape)) if vb[k] != shape[k])
    return be.broadcast_to(va.reshape(vb), shape), axes, vs, va.dtype


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean", *, return_grad=False,
                      grad_output=None):
    """Gaussian negative log-likelihood, ``torch.nn.functional.gaussian_nll_loss``:
    ``0.5 (log(v) + (input - target)^2 / v)`` with ``v = max(var, eps)``; ``full``
    adds ``0.5 log(2 pi)``. The mean is over the input's elements.

    ``var`` (>= 0; any negative entry raises ValueError) is a Python number or an
    array of the input's shape, of the input's shape without its last axis
    (one variance per row, broadcast over the last axis), or of the input's shape
    with one mismatched axis of size 1 (torch's rules; anything else raises
    ValueError naming both shapes). ``eps`` must be >= 0. Input and target must
    have the same shape.

    ``return_grad=True`` returns ``(loss, (d_input, d_target, d_var))``; ``d_var``
    has var's shape (summed over the broadcast axis; a 0-d array for a number)
    and, as torch's autograd (which clamps under ``no_grad``), is
    ``0.5 (1/v - (input - target)^2 / v^2)`` at the clamped ``v`` also where
    ``var < eps``. A broadcast var is materialised at the input's size (one copy)."""
    fn = "gaussian_nll_loss"
    eps = _real(fn, "eps", eps)
    if eps < 0:
        raise ValueError(f"{fn}: eps must be >= 0, got {eps}")
    be = backend_for(input, fn)
    x = be.asarray(input)
    shape = tuple(x.shape)
    code = be.dtype_code(x, fn, "input")  # a bad input dtype is reported before var's problems
    vfull, axes, vshape, vdtype = _var_arg(be, fn, var, shape, code)
    r = _run(fn, input, target, reduction, return_grad, grad_output, beta=eps, full=full, var=vfull)
    if not return_grad:
        return r
    out, (gi, gt, gv) = r
    if vdtype is None:
        vdtype = gi.dtype
    if axes:
        gv = be.sum_axes(gv, axes)  # the broadcast axes, in float64 so their length does not cost accuracy
    gv = gv.reshape(vshape)
    if gv.dtype != vdtype:
        gv = be.astype(gv, vdtype)
    return out, (gi, gt, gv)


def margin_ranking_loss(input1, input2, target, margin=0.0, reduction="mean", *, return_grad=False,
                        grad_output=None):
    """``max(-y (x1 - x2) + margin, 0)`` element-wise, ``torch.nn.functional.margin_ranking_loss``.

    ``input1``, ``input2`` and ``target`` must have one shape (no broadcasting);
    targets must be +-1 (ValueError naming the first other element).
    ``return_grad=True`` returns ``(loss, (d_input1, d_input2))``; an element
    exactly at the hinge passes its gradient (``clamp_min``'s convention), a NaN
    one does not. The target rides in the pointwise kernel's third operand."""
    fn = "margin_ranking_loss"
    margin = _real(fn, "margin", margin)
    be = backend_for(input1, fn)
    x1, x2, t = be.asarray(input1), be.asarray(input2, fn, "input2"), be.asarray(target, fn, "target")
    code = be.dtype_code(x1, fn, "input1")
    if tuple(x2.shape) != tuple(x1.shape):
        raise A.shape_error(fn, "inputs must have the same shape", "input2", x2.shape, "input1", x1.shape)
    if tuple(t.shape) != tuple(x1.shape):
        raise A.shape_error(fn, "target must have the inputs' shape", "target", t.shape, "input1", x1.shape)
    if not (be.is_int(t) or be.is_float(t)):
        raise TypeError(f"{fn}: target must be numeric (+1 / -1), got {t.dtype}")
    # The +-1 rule on the target's own values (a float64 1 + 1e-10 must not pass by
    # rounding to a float32 1): float32/float64 scanned in C++, other dtypes in NumPy.
    # On a GPU: the same test by the caller's library (see _first_invalid).
    tflat = be.contiguous(t).reshape(-1)
    own = -1  # the target's own dtype, not the input's
    if be.device == A.CPU:
        own = {np.dtype(np.float32): 0, np.dtype(np.float64): 1}.get(np.dtype(tflat.dtype), -1)
    i = _first_invalid(tflat, own, 0, be)
    if i >= 0:
        raise ValueError(f"{fn}: target at position {i} is {float(tflat[i]):g}; it must be 1 or -1")
    tv = be.contiguous(t, code)
    r = _run(fn, x1, x2, reduction, return_grad, grad_output, var=tv, var_grad=False, margin=margin)
    if not return_grad:
        return r
    out, (g1, g2) = r
    if g2.dtype != g1.dtype:
        g2 = be.astype(g2, g1.dtype)
    return out, (g1, g2)


def hinge_embedding_loss(input, target, margin=1.0, *, reduction="mean", return_grad=False, grad_output=None):
    """``torch.nn.functional.hinge_embedding_loss``: ``x`` where ``y = 1``,
    ``max(margin - x, 0)`` where ``y = -1``. Targets must be -1 or +1 (anything
    else, NaN included, raises ValueError naming the first bad element; torch
    would silently add both terms). Only the input is differentiable:
    ``return_grad=True`` returns ``(loss, d_input)``; ``d_input`` is 1 where
    ``y = 1``, -1 where ``y = -1`` and ``x <= margin`` (torch's clamp passes the
    gradient at the kink), else 0."""
    fn = "hinge_embedding_loss"
    margin = _real(fn, "margin", margin)
    return _run(fn, input, target, reduction, return_grad, grad_output, margin=margin,
                check=_check_pm1(fn), target_grad=False)


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none", *, return_grad=False,
                       grad_output=None):
    """``torchvision.ops.sigmoid_focal_loss`` (RetinaNet): with ``p = sigmoid(x)``,
    ``ce = binary_cross_entropy_with_logits(x, y)`` and ``p_t = p y + (1 - p)(1 - y)``,
    ``ce (1 - p_t)^gamma``, times ``alpha y + (1 - alpha)(1 - y)`` when ``alpha >= 0``.

    Defaults are torchvision's (``alpha=0.25``, ``gamma=2``, ``reduction="none"``),
    not the ``alpha=None`` listed in CATALOG.md; ``alpha=None`` or a negative alpha
    disables the weighting. ``gamma`` must be finite and >= 0. Targets are float
    and may be soft (in [0, 1]; outside it ``1 - p_t`` can be negative, which a
    non-integer gamma turns into NaN, as torch). Computed stably: no overflow for
    any logit, and ``1 - p_t`` is formed as ``p (1 - y) + (1 - p) y`` so it keeps
    its accuracy where ``p`` saturates.

    ``return_grad=True`` returns ``(loss, (d_inputs, d_targets))``, torch's autograd
    of the formula; where ``1 - p_t`` is exactly 0 the gamma term's gradient is its
    limit 0 (torch gives NaN there for gamma < 1)."""
    fn = "sigmoid_focal_loss"
    alpha = -1.0 if alpha is None else _real(fn, "alpha", alpha)
    gamma = _real(fn, "gamma", gamma)
    if not (0 <= gamma < float("inf")):
        raise ValueError(f"{fn}: gamma must be finite and >= 0, got {gamma}")
    return _run(fn, inputs, targets, reduction, return_grad, grad_output, alpha=alpha, gamma=gamma)


__all__ = list(_core.pointwise_names)
