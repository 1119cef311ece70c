"""Numba device arrays and JAX GPU arrays (lossx/_foreign.py) on a GPU:
values against the CPU path, outputs of the caller's type, zero-copy inputs,
Numba's CAI v3 stream. Each library's tests skip where it is not installed
(or has no GPU); a carrier (CuPy or CUDA PyTorch) must be usable.
"""
import numpy as np
import pytest

import lossx
from lossx import _core

if not (_core.cuda_compiled() and _core.cuda_available()):
    pytest.skip("lossx CUDA backend not compiled or no usable GPU", allow_module_level=True)

from _gpu_util import LIBS  # noqa: E402

if not LIBS:
    pytest.skip("neither CuPy nor CUDA PyTorch is usable (lossx's carrier for Numba and JAX)",
                allow_module_level=True)


def _numba():
    numba_cuda = pytest.importorskip("numba.cuda")
    if not numba_cuda.is_available():
        pytest.skip("Numba sees no GPU")
    return numba_cuda


def _jax():
    jax = pytest.importorskip("jax")
    try:
        dev = jax.devices("gpu")[0]
    except Exception:  # noqa: BLE001
        pytest.skip("no JAX GPU backend")
    return jax, dev


def test_numba_cross_entropy(rng):
    cuda = _numba()
    x = (3 * rng.standard_normal((33, 1001))).astype(np.float32)
    y = rng.integers(0, 1001, 33)
    y[4] = -100
    c, clse, cg = lossx.cross_entropy(x, y, z_loss=1e-3, return_lse=True, return_grad=True)
    dx, dy = cuda.to_device(x), cuda.to_device(y)
    g, glse, gg = lossx.cross_entropy(dx, dy, z_loss=1e-3, return_lse=True, return_grad=True)
    for a, r in ((g, c), (glse, clse), (gg, cg)):
        assert cuda.is_cuda_array(a) and type(a).__module__.startswith("numba"), type(a)
        np.testing.assert_allclose(a.copy_to_host(), np.asarray(r), rtol=1e-5, atol=1e-6)
    # inplace_grad writes over the Numba array's own memory.
    _, gi = lossx.cross_entropy(dx, dy, return_grad=True, inplace_grad=True)
    assert gi.__cuda_array_interface__["data"][0] == dx.__cuda_array_interface__["data"][0]


def test_numba_on_its_stream(rng):
    # The input is produced on a Numba stream (CAI v3 "stream"); lossx runs
    # on that stream, so results are ready after stream.synchronize().
    cuda = _numba()
    x = (3 * rng.standard_normal((257, 4096))).astype(np.float32)
    y = rng.integers(0, 4096, 257)
    ref = lossx.cross_entropy(x, y, reduction="none")
    s = cuda.stream()
    dx = cuda.to_device(x, stream=s)
    dy = cuda.to_device(y, stream=s)
    out = lossx.cross_entropy(dx, dy, reduction="none")
    s.synchronize()
    np.testing.assert_allclose(out.copy_to_host(), ref, rtol=1e-5)


def test_jax_cross_entropy_and_pointwise(rng):
    jax, dev = _jax()
    x = (3 * rng.standard_normal((17, 777))).astype(np.float32)
    y = rng.integers(0, 777, 17).astype(np.int32)
    c, cg = lossx.cross_entropy(x, y, label_smoothing=0.1, return_grad=True)
    jx, jy = jax.device_put(x, dev), jax.device_put(y, dev)
    g, gg = lossx.cross_entropy(jx, jy, label_smoothing=0.1, return_grad=True)
    assert isinstance(g, jax.Array) and isinstance(gg, jax.Array)
    np.testing.assert_allclose(np.asarray(g), c, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gg), cg, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="immutable"):
        lossx.cross_entropy(jx, jy, return_grad=True, inplace_grad=True)
    a, b = rng.standard_normal((5, 9)).astype(np.float32), rng.standard_normal((5, 9)).astype(np.float32)
    m = lossx.mse_loss(jax.device_put(a, dev), jax.device_put(b, dev), reduction="none")
    np.testing.assert_allclose(np.asarray(m), lossx.mse_loss(a, b, reduction="none"), rtol=1e-6)


def test_jax_bfloat16(rng):
    jax, dev = _jax()
    import jax.numpy as jnp

    x = (3 * rng.standard_normal((8, 512))).astype(np.float32)
    y = rng.integers(0, 512, 8)
    jx = jax.device_put(x, dev).astype(jnp.bfloat16)
    ref = lossx.cross_entropy(np.asarray(jx.astype(jnp.float32)), y)
    out = lossx.cross_entropy(jx, jax.device_put(y, dev))
    assert isinstance(out, jax.Array)
    np.testing.assert_allclose(float(out), float(ref), rtol=1e-5)
