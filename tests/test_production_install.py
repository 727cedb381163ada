"""The production install: a virtualenv from requirements.txt alone runs the Procfile.

Heroku's Python buildpack installs requirements.txt and nothing else. The
test venv has requirements-dev.txt on top, and what those packages pull in
can hide a missing pin: pytest brings `packaging`, which gunicorn 27's gevent
worker imports but declares only under its `[gevent]` extra (issue 13). So
this test builds a venv from requirements.txt alone in a temporary folder
(pip's cache makes that a few seconds after the first time), then runs the
Procfile's `release`, `web` and `worker` lines unchanged, each through
/bin/sh with that venv's bin first on PATH as a dyno would, against a real
redis-server and the test model server, and streams one answer end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import assert_answer_streams_and_is_stored
from tests.support.model_server import ModelServer
from tests.support.processes import (
    ROOT,
    Process,
    RedisServer,
    free_port,
    wait_for,
    wait_until_answers,
)

# The first build on a cold pip cache downloads every wheel.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TEST_VENV_BIN = str(Path(sys.executable).parent)


def procfile_lines() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


@pytest.fixture(scope="module")
def production_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with requirements.txt installed and nothing else."""
    venv = tmp_path_factory.mktemp("production") / "venv"
    # `-m venv` from the test venv still builds on the base interpreter, without
    # the test venv's packages (no --system-site-packages).
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(ROOT / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


def test_the_production_venv_has_no_test_packages(production_venv: Path) -> None:
    """The premise of the test below: what requirements-dev.txt adds is absent."""
    for module in ("pytest", "httpx", "playwright"):
        found = subprocess.run(
            [str(production_venv / "bin" / "python"), "-c", f"import {module}"],
            capture_output=True,
            timeout=60,
        )
        assert found.returncode != 0, f"{module} is importable in the production venv"


def test_the_production_venv_has_the_tool_packages(production_venv: Path) -> None:
    """The worker's tools run from requirements.txt alone: the MCP client and jsonschema."""
    probe = (
        "import jsonschema, mcp; "
        "from mcp.client.streamable_http import streamable_http_client; "
        "from webapp.write.tools.mcp_servers import McpServer"
    )
    found = subprocess.run(
        [str(production_venv / "bin" / "python"), "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr


@pytest.fixture()
def dyno_env(
    production_venv: Path, model_server: ModelServer, log_dir: Path, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """A dyno's environment: the production venv first on PATH, add-ons as URLs.

    A Redis of its own, so the shared test worker never takes this test's job.
    """
    redis_server = RedisServer(log_dir).start()
    port = free_port()
    path = [
        entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry != TEST_VENV_BIN
    ]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "LLM_", "DATABASE_", "REDIS_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(
        PATH=os.pathsep.join([str(production_venv / "bin"), *path]),
        REDIS_URL=redis_server.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'production.sqlite3'}",
        OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=model_server.base_url,
        LLM_MODEL="test-model",
        PORT=str(port),
        # Command-line settings override gunicorn.conf.py: listen on loopback only.
        GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port}",
        WORKER_POP_TIMEOUT_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    yield env
    redis_server.stop()


def dyno(name: str, env: dict[str, str], log_dir: Path) -> Process:
    """One Procfile line, run as a dyno runs it: by a shell, the line unchanged."""
    return Process(f"production-{name}", ["/bin/sh", "-c", procfile_lines()[name]], env, log_dir)


def loaded_files(pid: int) -> str:
    """The files a process has mapped: its interpreter and C extensions among them."""
    return Path(f"/proc/{pid}/maps").read_text()


def test_procfile_streams_an_answer_from_requirements_txt_alone(
    dyno_env: dict[str, str],
    production_venv: Path,
    model_server: ModelServer,
    log_dir: Path,
    unique: str,
) -> None:
    env = dyno_env
    release = dyno("release", env, log_dir).start()
    assert release.proc.wait(120) == 0, release.log_text()[-3000:]
    assert "Running upgrade" in release.log_text()

    web = dyno("web", env, log_dir).start()
    worker = dyno("worker", env, log_dir).start()
    base_url = f"http://127.0.0.1:{env['PORT']}"
    try:
        wait_until_answers(web, f"{base_url}/readyz", timeout=60)
        wait_for(
            lambda: "worker ready" in worker.log_text() or not worker.alive(),
            timeout=60,
            what="the Procfile's worker line",
        )
        assert worker.alive(), worker.log_text()[-3000:]
        # Both run on the production venv's packages (`exec` kept the pid):
        # gevent's C extensions are mapped from there.
        for proc in (web, worker):
            assert str(production_venv / "lib") in loaded_files(proc.pid)

        prompt = f"production install {unique}"
        chunks = ["Built ", "from ", "requirements.txt ", "alone."]
        model_server.behave(prompt, chunks=chunks)
        assert_answer_streams_and_is_stored(base_url, prompt, chunks)
    finally:
        web.stop(timeout=40)
        worker.stop(timeout=40)
    assert web.proc.returncode == 0, web.log_text()[-3000:]
    assert worker.proc.returncode == 0, worker.log_text()[-3000:]
