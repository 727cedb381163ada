"""The Python client's commands (clients/python), run as a user runs them: `python -m ...`.

The package is not installed into the venv: pytest imports it from its
source tree (pytest.ini's `pythonpath`), and its commands get the same tree
on PYTHONPATH.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.processes import ROOT

PACKAGE = ROOT / "clients" / "python"


def run_module(module: str, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <args>`, its output captured as text."""
    env = dict(os.environ, PYTHONPATH=str(PACKAGE))
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
