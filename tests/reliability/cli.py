"""Run the ``lpm`` command line as a subprocess and check that it fails cleanly."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "lpm", *args], capture_output=True, text=True, timeout=120,
                          env=full_env, cwd=cwd)


def assert_clean_failure(result: subprocess.CompletedProcess, error: str, *needles: str) -> str:
    """Exit code != 0, stderr one line ``lpm: error: <error>: ...`` containing every needle, no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"lpm: error: {error}: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
