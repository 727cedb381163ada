"""The Procfile, run as Heroku runs it: the release line to completion, then web and worker.

honcho (the Procfile runner in requirements.txt) starts the Procfile's own
lines, unchanged; only the environment is the test's: a Redis and a SQLite
file of its own, the test model server, and gunicorn bound to 127.0.0.1
through GUNICORN_CMD_ARGS. Then an answer streams end to end and is stored.
"""

from __future__ import annotations

import ast
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

pytestmark = pytest.mark.slow

HONCHO = str(Path(sys.executable).parent / "honcho")


def procfile_lines() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_procfile_has_the_three_heroku_process_types() -> None:
    lines = procfile_lines()
    assert set(lines) == {"release", "web", "worker"}
    assert lines["release"] == "flask --app wsgi db upgrade"
    assert "gunicorn --config gunicorn.conf.py wsgi:app" in lines["web"]
    assert "worker.py" in lines["worker"]


def web_line_binds(**env: str) -> list[str]:
    """Where the Procfile's web line listens, as gunicorn resolves gunicorn.conf.py."""
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    command = procfile_lines()["web"].removeprefix("exec ").split()
    assert command[0] == "gunicorn", command
    shown = subprocess.run(
        [gunicorn, *command[1:-1], "--print-config", command[-1]],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k != "HOST"}, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    (line,) = [line for line in shown.stdout.splitlines() if line.split()[:2] == ["bind", "="]]
    return ast.literal_eval(line.split("=", 1)[1].strip())


@pytest.mark.parametrize(
    ("host", "bind"),
    [("", "0.0.0.0:5123"), ("127.0.0.1", "127.0.0.1:5123"), ("::1", "[::1]:5123")],
)
def test_the_web_line_listens_on_every_interface_unless_host_says_otherwise(
    host: str, bind: str
) -> None:
    # Heroku's router reaches a dyno on its own interface and sets no HOST; scripts/run sets it.
    assert web_line_binds(PORT="5123", **({"HOST": host} if host else {})) == [bind]


@pytest.fixture()
def procfile_env(
    base_env: dict[str, str], log_dir: Path, tmp_path: Path
) -> Iterator[dict[str, str]]:
    redis_server = RedisServer(log_dir).start()
    port = free_port()
    env = dict(
        base_env,
        REDIS_URL=redis_server.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'procfile.sqlite3'}",
        PORT=str(port),
        # Command-line settings override gunicorn.conf.py: listen on loopback only.
        GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port}",
        PATH=f"{Path(sys.executable).parent}:{base_env.get('PATH', '')}",
    )
    yield env
    redis_server.stop()


def test_procfile_release_web_and_worker_stream_an_answer(
    procfile_env: dict[str, str],
    model_server: ModelServer,
    log_dir: Path,
    unique: str,
) -> None:
    env = procfile_env
    release = Process("procfile-release", [HONCHO, "start", "release"], env, log_dir).start()
    assert release.proc.wait(60) == 0, release.log_text()[-3000:]
    assert "Running upgrade" in release.log_text()

    port = env["PORT"]
    honcho = Process(
        "procfile-web-worker", [HONCHO, "start", "--port", port, "web", "worker"], env, log_dir
    ).start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(honcho, f"{base_url}/readyz", timeout=60)
        wait_for(
            lambda: "worker ready" in honcho.log_text(),
            timeout=30,
            what="the Procfile's worker line",
        )

        prompt = f"procfile {unique}"
        chunks = ["Heroku ", "runs ", "this ", "Procfile."]
        model_server.behave(prompt, chunks=chunks)
        assert_answer_streams_and_is_stored(base_url, prompt, chunks)
    finally:
        honcho.stop(timeout=40)
    log = honcho.log_text()
    assert "web.1 stopped" in log and "worker.1 stopped" in log
