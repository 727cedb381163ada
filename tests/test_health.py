"""ops/readiness.py and http/health.py: backing services at start and in /readyz, named by their variable, never a traceback.

Redis down: the worker waits with backoff (one line per wait) and goes on
when it comes up; the web process serves, /readyz and the API answer 503.
A database without the schema: /readyz and the API's 503 name the command
that fixes it. The CLI says either in one line.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import OperationalError, ProgrammingError

from tests.conftest import dispose, make_app
from tests.support.flask_cli import flask_cli
from tests.support.model_server import default_chunks
from tests.support.processes import Process, RedisServer, free_port, python, start_web, wait_for
from webapp.ops import readiness

UPGRADE = "flask --app wsgi db upgrade"
WAIT_LINE = "waiting for backing services"


def wait_lines(proc: Process) -> list[str]:
    return [line for line in proc.log_text().splitlines() if WAIT_LINE in line]


def assert_unavailable(response: httpx.Response, *words: str) -> dict:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    for word in words:
        assert word in error["message"], error
    return error


@pytest.mark.slow
def test_worker_waits_for_redis_and_the_schema_then_runs_a_job(
    base_env: dict[str, str], log_dir: Path, tmp_path: Path, model_server, unique: str
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    env = dict(base_env, REDIS_URL=url, DATABASE_URL=f"sqlite:///{tmp_path / 'wait.sqlite3'}")
    worker = Process("worker-waits", [python(), "worker.py"], env, log_dir).start()
    redis_server = None
    try:
        # Nothing listens on the port and the database is empty: both are named.
        wait_for(lambda: len(wait_lines(worker)) >= 2, timeout=20, what="two wait lines")
        first = wait_lines(worker)[0]
        assert f"REDIS_URL {url} does not answer" in first
        assert UPGRADE in first

        # The release phase runs: only Redis is left.
        flask_cli(env, "db", "upgrade")
        wait_for(
            lambda: any(UPGRADE not in line for line in wait_lines(worker)[2:]),
            timeout=30,
            what="a wait line for Redis alone",
        )
        redis_server = RedisServer(log_dir, port=port).start()
        wait_for(lambda: "worker ready" in worker.log_text(), timeout=30, what="worker ready")
        assert worker.alive()

        # And it works: an answer streams through it.
        prompt = f"after the wait {unique}"
        done = flask_cli(env, "relay", "enqueue-test", prompt, "--timeout", "60")
        assert "".join(default_chunks(prompt)) in done.stdout
        assert "end finish_reason=stop" in done.stdout
    finally:
        worker.stop()
        if redis_server is not None:
            redis_server.stop()
    log = worker.log_text()
    assert "Traceback" not in log
    # Each wait is one line, and the waits back off.
    delays = [float(line.split("next check in ")[1].split("s:")[0]) for line in wait_lines(worker)]
    assert delays == sorted(delays) and delays[0] < delays[-1]


def test_worker_wait_masks_the_password_and_stops_on_sigterm(
    base_env: dict[str, str], log_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = dict(
        base_env,
        REDIS_URL=f"redis://:hunter2@127.0.0.1:{port}/0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'masked.sqlite3'}",
    )
    worker = Process("worker-masked", [python(), "worker.py"], env, log_dir).start()
    try:
        wait_for(lambda: wait_lines(worker), timeout=20, what="a wait line")
        worker.signal(signal.SIGTERM)
        assert worker.proc.wait(10) == 0
    finally:
        worker.kill()
    log = worker.log_text()
    assert f"REDIS_URL redis://:****@127.0.0.1:{port}/0 does not answer" in log
    assert "hunter2" not in log and "Traceback" not in log


def test_web_serves_while_redis_is_down(
    base_env: dict[str, str], log_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = dict(
        base_env,
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'web-no-redis.sqlite3'}",
    )
    app = make_app(env)  # the schema is there; only Redis is missing
    proc, base_url = start_web(env, log_dir, name="web-no-redis")  # /healthz answers 200
    try:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            ready = http.get("/readyz")
            error = assert_unavailable(ready, "REDIS_URL")
            assert error["checks"]["database"] == "ok"
            assert "REDIS_URL" in error["checks"]["redis"]
            # Sessions live in SQL; a prompt needs Redis.
            session = http.post("/api/sessions")
            assert session.status_code == 201, session.text
            messages = f"/api/sessions/{session.json()['session_id']}/messages"
            assert_unavailable(http.post(messages, json={"content": "hello"}), "REDIS_URL")
            assert http.get("/healthz").status_code == 200
    finally:
        proc.stop()
        dispose(app)
    log = proc.log_text()
    assert f"not ready: REDIS_URL redis://127.0.0.1:{port}/0 does not answer" in log
    assert "Traceback" not in log


def test_database_without_schema_names_the_fix(
    base_env: dict[str, str], redis_server: RedisServer, log_dir: Path, tmp_path: Path
) -> None:
    env = dict(
        base_env,
        REDIS_URL=redis_server.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'no-schema.sqlite3'}",
    )
    proc, base_url = start_web(env, log_dir, name="web-no-schema")
    try:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            error = assert_unavailable(http.get("/readyz"), UPGRADE)
            assert error["checks"] == {"redis": "ok", "database": error["message"]}
            assert_unavailable(http.post("/api/sessions"), UPGRADE)

            flask_cli(env, "db", "upgrade")  # the release phase, late
            assert http.get("/readyz").status_code == 200
            assert http.post("/api/sessions").status_code == 201
    finally:
        proc.stop()
    log = proc.log_text()
    assert "not ready: DATABASE_URL sqlite:///" in log and UPGRADE in log
    assert "Traceback" not in log


def test_cli_says_redis_is_down_in_one_line(base_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = dict(
        base_env,
        REDIS_URL=f"redis://:hunter2@127.0.0.1:{port}/0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'cli.sqlite3'}",
    )
    done = flask_cli(env, "relay", "queue", check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert output.strip().splitlines() == [
        f"Error: REDIS_URL redis://:****@127.0.0.1:{port}/0 does not answer: "
        f"ConnectionError: Error 111 connecting to 127.0.0.1:{port}. Connection refused."
    ]


def test_release_says_the_database_is_down_in_one_line(base_env: dict[str, str]) -> None:
    port = free_port()
    env = dict(base_env, DATABASE_URL=f"postgres://relay:hunter2@127.0.0.1:{port}/relay")
    done = flask_cli(env, "db", "upgrade", check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith(
        f"relay: DATABASE_URL postgresql+psycopg://relay:****@127.0.0.1:{port}/relay does not answer"
    )
    assert "hunter2" not in output


class _PgError(Exception):
    """What psycopg raises: its SQLSTATE in `sqlstate`."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__("relation does not exist")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "schema"),
    [
        (ProgrammingError("SELECT", {}, _PgError("42P01")), True),  # undefined_table
        (ProgrammingError("SELECT", {}, _PgError("42703")), True),  # undefined_column
        (ProgrammingError("SELECT", {}, _PgError("42601")), False),  # a syntax error: ours
        (OperationalError("SELECT", {}, Exception("no such table: messages")), True),
        (OperationalError("SELECT", {}, Exception("database is locked")), False),
    ],
)
def test_schema_errors_are_told_from_others(error: Exception, schema: bool) -> None:
    assert readiness.is_schema_error(error) is schema
