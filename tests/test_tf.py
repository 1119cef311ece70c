"""lossx.tf (tf.nn semantics) against float64 torch references and autograd.

References are tf.nn's documented formulas: sigmoid CE
max(x, 0) - x z + log(1 + exp(-|x|)), softmax CE -sum labels * log_softmax,
sparse softmax CE -log_softmax[label].
"""
import numpy as np
import pytest
import torch

import lossx
from lossx import _catalog
from lossx import tf as T

from _util import ATOL, BF16, RTOL, t64


def close(a, e, dt, mag=1.0, what=""):
    dt = np.dtype(dt)
    np.testing.assert_allclose(np.asarray(a, np.float64), e, rtol=RTOL[dt], atol=ATOL[dt] * mag, err_msg=what)


def test_catalog():
    assert set(_catalog.TF) == set(T.__all__)
    for name in _catalog.TF:
        assert callable(getattr(lossx.tf, name))


# ------------------------------------------------------------------ worked values
def test_worked_sigmoid():
    out = T.sigmoid_cross_entropy_with_logits(labels=np.array([1.0], np.float32),
                                              logits=np.array([1.0], np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.3132617], rtol=1e-6)


def test_worked_sparse_softmax():
    out = T.sparse_softmax_cross_entropy_with_logits(labels=np.array(1), logits=np.array([1.0, 2.0], np.float32))
    assert out.shape == ()
    # float32: within 3 ulp of 0.31326166 (the row-softmax kernel forms lse - z[y]).
    np.testing.assert_allclose(out, 0.31326166, rtol=1e-6)


# ------------------------------------------------------------------ sigmoid
def th_sigmoid(z, x):
    return torch.clamp(x, min=0) - x * z + torch.log1p(torch.exp(-x.abs()))


@pytest.mark.parametrize("shape", [(1,), (7,), (33,), (5, 201), (3, 4, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid(shape, dtype, rng):
    x = (rng.normal(0, 4, shape)).astype(dtype)
    z = rng.uniform(0, 1, shape).astype(dtype)
    go = rng.normal(size=shape)
    loss, g = T.sigmoid_cross_entropy_with_logits(labels=z, logits=x, return_grad=True, grad_output=go)
    xt = t64(x, True)
    ref = th_sigmoid(t64(z), xt)
    (ref * t64(go)).sum().backward()
    close(loss, ref.detach().numpy(), dtype, what="loss")
    assert g.dtype == np.dtype(dtype) and g.shape == x.shape
    close(g, xt.grad.numpy(), dtype, what="grad")
    # the identity d/dx = sigmoid(x) - z
    close(g, go * (1 / (1 + np.exp(-x.astype(np.float64))) - z), dtype)


def test_sigmoid_every_target(cpu_config, rng):
    x = rng.normal(0, 3, 40003).astype(np.float32)
    z = (rng.random(40003) < 0.5).astype(np.float32)
    loss, g = T.sigmoid_cross_entropy_with_logits(labels=z, logits=x, return_grad=True)
    xt = t64(x, True)
    ref = th_sigmoid(t64(z), xt)
    ref.sum().backward()
    close(loss, ref.detach().numpy(), np.float32)
    close(g, xt.grad.numpy(), np.float32)


@pytest.mark.parametrize("dtype", [np.float16] + ([BF16] if BF16 is not None else []), ids=str)
def test_sigmoid_half(dtype, rng):
    x = rng.normal(0, 3, 99).astype(dtype)
    z = rng.uniform(0, 1, 99).astype(dtype)
    loss, g = T.sigmoid_cross_entropy_with_logits(labels=z, logits=x, return_grad=True)
    assert loss.dtype == np.float32 and g.dtype == np.dtype(dtype)
    xt = t64(x, True)
    ref = th_sigmoid(t64(z), xt)
    ref.sum().backward()
    close(loss, ref.detach().numpy(), dtype)
    close(g, xt.grad.numpy(), dtype)


def test_sigmoid_extremes_and_nan():
    x = np.array([-200.0, -30.0, 0.0, 30.0, 200.0, np.nan], np.float32)
    z = np.array([0.0, 1.0, 0.5, 0.0, 1.0, 1.0], np.float32)
    loss, g = T.sigmoid_cross_entropy_with_logits(labels=z, logits=x, return_grad=True)
    xd = x[:5].astype(np.float64)
    ref = np.maximum(xd, 0) - xd * z[:5] + np.log1p(np.exp(-np.abs(xd)))
    np.testing.assert_allclose(loss[:5], ref, rtol=2e-6, atol=1e-30)
    np.testing.assert_allclose(g[:5], 1 / (1 + np.exp(-xd)) - z[:5], rtol=2e-6, atol=1e-30)
    assert np.isnan(loss[5]) and np.isnan(g[5])


# ------------------------------------------------------------------ softmax
@pytest.mark.parametrize("shape,axis", [((1, 1), -1), ((7, 3), -1), ((5, 1003), -1), ((4, 6, 5), 1), ((3, 4), 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_soft_labels(shape, axis, dtype, rng):
    x = rng.normal(0, 2, shape).astype(dtype)
    y = rng.uniform(0, 1, shape).astype(dtype)  # not normalised, as tf allows
    loss, g = T.softmax_cross_entropy_with_logits(labels=y, logits=x, axis=axis, return_grad=True)
    xt = t64(x, True)
    ref = -(t64(y) * torch.log_softmax(xt, axis)).sum(axis)
    ref.sum().backward()
    close(loss, ref.detach().numpy(), dtype, what="loss")
    assert g.shape == x.shape
    close(g, xt.grad.numpy(), dtype, what="grad")


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (33, 17), (2, 3, 1003)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_softmax(shape, dtype, rng):
    x = rng.normal(0, 2, shape).astype(dtype)
    y = rng.integers(0, shape[-1], shape[:-1])
    go = rng.normal(size=shape[:-1])
    loss, g = T.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x, return_grad=True, grad_output=go)
    xt = t64(x, True)
    ref = -torch.gather(torch.log_softmax(xt, -1), -1, torch.tensor(y)[..., None])[..., 0]
    (ref * t64(go)).sum().backward()
    close(loss, ref.detach().numpy(), dtype, what="loss")
    close(g, xt.grad.numpy(), dtype, what="grad")


def test_softmax_every_target(cpu_config, rng):
    x = rng.normal(0, 2, (65, 33)).astype(np.float32)
    y = rng.integers(0, 33, 65)
    loss, g = T.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x, return_grad=True)
    xt = t64(x, True)
    ref = torch.nn.functional.cross_entropy(xt, torch.tensor(y), reduction="none")
    ref.sum().backward()
    close(loss, ref.detach().numpy(), np.float32)
    close(g, xt.grad.numpy(), np.float32)
    yl = rng.uniform(0, 1, (65, 33)).astype(np.float32)
    loss2 = T.softmax_cross_entropy_with_logits(labels=yl, logits=x)
    close(loss2, -(t64(yl) * torch.log_softmax(t64(x), -1)).sum(-1).numpy(), np.float32)


def test_empty():
    assert T.sparse_softmax_cross_entropy_with_logits(labels=np.zeros((0,), np.int64),
                                                      logits=np.zeros((0, 3))).shape == (0,)
    assert T.sigmoid_cross_entropy_with_logits(labels=np.zeros((0, 2)), logits=np.zeros((0, 2))).shape == (0, 2)


# ------------------------------------------------------------------ bad input
def test_keyword_only():
    with pytest.raises(TypeError):
        T.sigmoid_cross_entropy_with_logits(np.ones(2), np.ones(2))
    with pytest.raises(TypeError):
        T.sparse_softmax_cross_entropy_with_logits(np.ones(2, np.int64), np.ones((2, 3)))


def test_bad_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        T.sigmoid_cross_entropy_with_logits(labels=np.ones(3), logits=np.ones(4))
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 3\)"):
        T.softmax_cross_entropy_with_logits(labels=np.ones((2, 4)), logits=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        T.sparse_softmax_cross_entropy_with_logits(labels=np.ones(3, np.int64), logits=np.ones((2, 3)))


def test_bad_dtype():
    with pytest.raises(TypeError, match="logits"):
        T.sigmoid_cross_entropy_with_logits(labels=np.ones(2), logits=np.ones(2, np.int64))
    with pytest.raises(TypeError, match="integer"):
        T.sparse_softmax_cross_entropy_with_logits(labels=np.ones(2), logits=np.ones((2, 3)))
    with pytest.raises(TypeError, match="labels"):
        T.softmax_cross_entropy_with_logits(labels=np.array([["a", "b"]]), logits=np.ones((1, 2)))


def test_label_out_of_range_index_error():
    with pytest.raises(IndexError, match="label 3 at position 1"):
        T.sparse_softmax_cross_entropy_with_logits(labels=np.array([0, 3]), logits=np.ones((2, 3)))
    with pytest.raises(IndexError, match="label -100 at position 0"):
        T.sparse_softmax_cross_entropy_with_logits(labels=np.array([-100, 0]), logits=np.ones((2, 3)))


def test_bad_options():
    with pytest.raises(ValueError, match="axis"):
        T.softmax_cross_entropy_with_logits(labels=np.ones((2, 3)), logits=np.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match="grad_output"):
        T.sigmoid_cross_entropy_with_logits(labels=np.ones(3), logits=np.ones(3), return_grad=True,
                                            grad_output=np.ones(4))
