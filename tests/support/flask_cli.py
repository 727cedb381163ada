"""Run `flask --app wsgi ...` commands in a child process, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.processes import ROOT

FLASK = str(Path(sys.executable).parent / "flask")


def flask_cli(
    env: Mapping[str, str], *args: str, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess:
    """Run `flask --app wsgi <args>` with `env` over a clean copy of ours."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    done = subprocess.run(
        [FLASK, "--app", "wsgi", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, f"flask {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done
