"""The GPU machine's helper scripts still run (checked on the CPU here, so they
do not break unnoticed between GPU sessions)."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_gpu_sanitize_calls_run_on_cpu():
    pytest.importorskip("torch")
    env = dict(os.environ, LOSSX_SANITIZE_DEVICE="cpu")
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_sanitize.py")], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "all calls ran" in r.stdout
