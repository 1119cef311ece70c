"""Shared fixtures: every CPU test runs on every SIMD target this machine
supports (forced through lossx's private Highway hook) and at 1 and 2 threads."""
import numpy as np
import pytest

import lossx
from lossx import _core

TARGETS = list(_core.simd_targets())


@pytest.fixture(params=TARGETS)
def simd_target(request):
    assert _core._force_simd_target(request.param), request.param
    assert _core.simd_target() == request.param
    yield request.param
    _core._force_simd_target("")


@pytest.fixture(params=[1, 2])
def threads(request):
    old = lossx.get_num_threads()
    lossx.set_num_threads(request.param)
    yield request.param
    lossx.set_num_threads(old)


@pytest.fixture
def cpu_config(simd_target, threads):
    """Run the test body under one (target, threads) combination."""
    return simd_target, threads


@pytest.fixture
def rng(request):
    # Fresh inputs per test, reproducible from the test id when a failure is reported.
    seed = abs(hash(request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)
