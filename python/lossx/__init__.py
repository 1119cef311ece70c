"""lossx: loss functions with fused value + gradient on SIMD CPUs and CUDA GPUs.

    import numpy as np, lossx
    loss = lossx.cross_entropy(logits, labels)
    loss, dlogits = lossx.cross_entropy(logits, labels, return_grad=True)
"""
from __future__ import annotations

import os as _os
import sys as _sys

from . import _core
from ._catalog import CATALOG
from .softmax import cross_entropy, log_softmax, logsumexp, nll_loss
from .pointwise import *  # noqa: F401,F403,E402  (names from csrc/lossx/pointwise_losses.def)
from . import keras, tf  # noqa: E402  (lossx.keras.<name>, lossx.tf.<name>)
from .embedding import cosine_embedding_loss, triplet_margin_loss  # noqa: E402
from .margin import (  # noqa: E402
    multi_margin_loss, multilabel_margin_loss, multilabel_soft_margin_loss,
    poly1_cross_entropy)
from .ctc import ctc_loss  # noqa: E402
from . import _foreign  # noqa: E402

# Numba and JAX GPU arrays go through every public loss (lossx/_foreign.py).
_foreign.install(_sys.modules[__name__], CATALOG)
_foreign.install(keras, keras.__all__, "keras.")
_foreign.install(tf, tf.__all__, "tf.")

__version__ = _core.version()


def set_num_threads(n: int) -> None:
    """Threads used by the CPU kernels (n <= 0: OpenMP's default). Results are
    bit-identical for any thread count."""
    _core.set_num_threads(int(n))


def set_buffer_cache(max_bytes: int) -> None:
    """Bytes of freed large output arrays lossx keeps mapped for reuse (default 1 GiB;
    0 disables). Reusing them avoids page-faulting a fresh gradient every call."""
    _core.set_buffer_cache(int(max_bytes))


def get_num_threads() -> int:
    return _core.num_threads()


def info() -> dict:
    """Build and runtime facts: version, SIMD targets, threads, CUDA."""
    return {
        "version": __version__,
        "simd_target": _core.simd_target(),
        "simd_targets_compiled": list(_core.simd_targets(True)),
        "simd_targets_supported": list(_core.simd_targets(False)),
        "openmp_threads": _core.num_threads(),
        "cuda_compiled": bool(_core.cuda_compiled()),
        "cuda_available": bool(_core.cuda_available()),
    }


if _os.environ.get("LOSSX_NUM_THREADS"):
    try:
        set_num_threads(int(_os.environ["LOSSX_NUM_THREADS"]))
    except ValueError as _e:  # a typo in the variable should not break import silently
        raise ValueError(f"LOSSX_NUM_THREADS must be an integer, got {_os.environ['LOSSX_NUM_THREADS']!r}") from _e

__all__ = ["set_num_threads", "get_num_threads", "set_buffer_cache", "info", *CATALOG]
