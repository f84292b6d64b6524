"""Usage errors (missing arguments, unknown options) are one stderr line and exit 2."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv, needle", [
    (["card"], "Missing argument"),
    (["stats", "--bogus"], "--bogus"),
    (["stats", "--batch-size", "many"], "--batch-size"),
])
def test_usage_error_is_one_line_exit_2(argv, needle):
    out = subprocess.run([sys.executable, "-m", "ptytui", *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert needle in lines[0] and "Traceback" not in out.stderr
