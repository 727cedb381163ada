"""PostgreSQL under gevent: a slow SQL call does not stop a web process's streams.

One gunicorn process (the Procfile's config: gevent worker class) serves 200
SSE streams while one of its requests sits in `SELECT pg_sleep(5)`. If the
driver blocked the gevent hub, no greenlet of that process could write a
byte until the SQL call returned; instead every stream must keep receiving
chunks during the call. The slow route comes from a test-only WSGI module
(tests/support/slow_app.py); the database is a fresh one, migrated by the
release command.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.client import create_session, post_prompt
from tests.support.flask_cli import flask_cli
from tests.support.model_server import ModelServer
from tests.support.postgres import fresh_database, server_url
from tests.support.processes import (
    Process,
    RedisServer,
    free_port,
    gunicorn_argv,
    start_worker,
    wait_until_answers,
)
from tests.support.raw_sse import StreamSet

pytestmark = pytest.mark.slow

STREAMS = 200
SESSIONS = 4
SLEEP_SECONDS = 5
# Chunks every 0.1 s for 15 s: they flow all through the slow call and stop
# on their own well inside the test's timeout.
CHUNKS = 150
CHUNK_DELAY_SECONDS = 0.1


def start_slow_web(env: dict[str, str], log_dir: Path) -> tuple[Process, str]:
    """gunicorn with the Procfile's config, one process, serving slow_app."""
    port = free_port()
    argv = gunicorn_argv(port, app="tests.support.slow_app:app")
    proc = Process("web-pg-gevent", argv, env, log_dir).start()
    base_url = f"http://127.0.0.1:{port}"
    wait_until_answers(proc, f"{base_url}/healthz")
    return proc, base_url


@pytest.fixture()
def pg_stack(base_env: dict[str, str], log_dir: Path) -> Iterator[tuple[str, str]]:
    """(web base URL, database URL): slow_app + a worker on a fresh PostgreSQL and Redis."""
    server_url()  # skip without TEST_DATABASE_URL
    with fresh_database("relay_gevent") as database_url:
        redis_server = RedisServer(log_dir).start()
        # All 200 streams come from one client address here.
        env = dict(
            base_env,
            DATABASE_URL=database_url,
            REDIS_URL=redis_server.url,
            WORKER_SHUTDOWN_GRACE_SECONDS="1",
            MAX_STREAMS_PER_CLIENT=str(STREAMS),
        )
        web = worker = None
        try:
            flask_cli(env, "db", "upgrade")
            web, base_url = start_slow_web(env, log_dir)
            worker = start_worker(env, log_dir, name="worker-pg-gevent")
            yield base_url, database_url
        finally:
            for proc in (worker, web, redis_server):
                if proc is not None:
                    proc.stop()


def sleeping_since(conn: psycopg.Connection, database: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active'"
        " AND query LIKE 'SELECT pg_sleep%%'",
        (database,),
    ).fetchone()
    return bool(row and row[0])


def test_sse_streams_flow_while_a_request_waits_in_pg_sleep(
    pg_stack: tuple[str, str], model_server: ModelServer, unique: str
) -> None:
    base_url, database_url = pg_stack
    port = int(base_url.rsplit(":", 1)[1])
    chunks = [f"w{i} " for i in range(CHUNKS)]
    streams = StreamSet()
    try:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            sessions = [create_session(http) for _ in range(SESSIONS)]
            for index in range(STREAMS):
                streams.open(port, f"/api/sessions/{sessions[index % SESSIONS]}/events")
            streams.pump(
                lambda: all(s.started for s in streams.streams), 30, f"{STREAMS} streams to start"
            )
            for number, session_id in enumerate(sessions):
                prompt = f"pg-gevent {unique} {number}"
                model_server.behave(prompt, chunks=chunks, delay_seconds=CHUNK_DELAY_SECONDS)
                post_prompt(http, session_id, prompt)
        streams.pump(
            lambda: all(s.chunk_times for s in streams.streams), 30, "every stream's first chunk"
        )

        slow: dict[str, object] = {}

        def slow_request() -> None:
            response = httpx.get(
                f"{base_url}/test/pg-sleep", params={"seconds": SLEEP_SECONDS}, timeout=60
            )
            slow["status"] = response.status_code
            slow["done"] = time.monotonic()

        caller = threading.Thread(target=slow_request, daemon=True)
        database = database_url.rsplit("/", 1)[1]
        with psycopg.connect(database_url, autocommit=True) as watcher:
            caller.start()
            # The window opens when PostgreSQL shows the web process inside the call.
            streams.pump(lambda: sleeping_since(watcher, database), 10, "pg_sleep to start")
            in_sql = time.monotonic()
            streams.pump(lambda: "done" in slow, SLEEP_SECONDS + 20, "the slow request")
        caller.join(5)
        assert slow["status"] == 200
        done = float(slow["done"])  # type: ignore[arg-type]

        # Every stream got chunks while the process had a request inside the
        # SQL call (bytes written before it began were read at once, so a
        # blocked hub would show nothing after the first moments).
        window_start = in_sql + 0.5
        starved = [s.path for s in streams.streams if s.chunks_between(window_start, done) == 0]
        assert starved == [], f"{len(starved)} of {STREAMS} streams got no chunk during pg_sleep"
    finally:
        streams.close()
