"""Shared fixtures: every CPU test runs on every SIMD target this machine
supports (forced through lossx's private Highway hook) and at 1 and 2 threads."""
import os
import secrets
import zlib

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


# Fresh inputs every run, reproducible: each test's seed is its id's CRC
# mixed with this run's seed, which a failing run prints (the string hash of
# the id alone changed with every process and could not be replayed).
RUN_SEED = int(os.environ.get("LOSSX_TEST_SEED") or secrets.randbelow(2**32))


@pytest.fixture
def rng(request):
    return np.random.default_rng([zlib.crc32(request.node.nodeid.encode()), RUN_SEED])


def pytest_terminal_summary(terminalreporter, exitstatus):
    if exitstatus != 0:
        terminalreporter.write_line(f"lossx: rerun with LOSSX_TEST_SEED={RUN_SEED} for the same random inputs")
