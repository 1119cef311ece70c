"""Test helpers: dtype tables, tolerances, conversions to torch float64."""
import ctypes
import os
import shutil
import subprocess

import numpy as np
import torch

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # ml_dtypes is in the test extra; skip bf16 cases without it
    BF16 = None

# Relative tolerances against a float64 reference, per input dtype. float32 is
# a few ulp scaled by the reduction length; float16/bfloat16 inputs are rounded
# before the kernel sees them (we feed the reference the same rounded values),
# so their remaining error is float32 accumulation plus the rounding of the
# returned gradient to the input dtype (2^-11 for f16, 2^-8 for bf16).
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-5, np.dtype(np.float16): 2e-3}
ATOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-6, np.dtype(np.float16): 1e-3}
if BF16 is not None:
    RTOL[BF16] = 1.6e-2
    ATOL[BF16] = 8e-3

FLOAT_DTYPES = [np.float32, np.float64, np.float16] + ([BF16] if BF16 is not None else [])


def t64(a, requires_grad=False):
    """NumPy (any float dtype incl. bfloat16) -> float64 torch tensor."""
    t = torch.tensor(np.asarray(a, dtype=np.float64))
    return t.requires_grad_(requires_grad)


def close(actual, expected, dtype, scale=1.0, what=""):
    dt = np.dtype(dtype)
    a = np.asarray(actual, dtype=np.float64)
    e = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected, dtype=np.float64)
    np.testing.assert_allclose(a, e, rtol=RTOL[dt] * scale, atol=ATOL[dt] * scale, err_msg=what)


NVCC = shutil.which("nvcc")
TESTS = os.path.dirname(os.path.abspath(__file__))


def build_host_lib(out_dir, source):
    """Compiles tests/<source> (a .cu that includes CUDA functors for the host)
    into a shared library in out_dir with nvcc and loads it."""
    out = os.path.join(str(out_dir), os.path.splitext(source)[0] + ".so")
    cmd = [NVCC, "-std=c++17", "-O2", "-shared", "-Xcompiler", "-fPIC", "-I", os.path.join(TESTS, "..", "csrc"),
           os.path.join(TESTS, source), "-o", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr[-6000:]}"
    return ctypes.CDLL(out)


# Pointwise losses with no CUDA functor yet (none now); test_pointwise.py checks
# that this list is exactly what is missing, so it can only shrink.
POINTWISE_CPU_ONLY = set()
# Pointwise losses whose wrappers return another shape than (loss, (d_input,
# d_target)) or default to reduction="none": generic tests leave them out.
POINTWISE_OWN_SIGNATURE = {"gaussian_nll_loss", "margin_ranking_loss", "hinge_embedding_loss", "sigmoid_focal_loss"}
