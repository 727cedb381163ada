"""The code stays as ruff.toml says: lint-clean and formatted."""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import ROOT

PATHS = [
    "webapp",
    "worker.py",
    "wsgi.py",
    "gunicorn.conf.py",
    "scripts",
    "tests",
    "bench",
    "clients/python",
]


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ruff_finds_nothing() -> None:
    result = ruff("check", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_formatted() -> None:
    result = ruff("format", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
