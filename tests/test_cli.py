"""cli.py: `flask --app wsgi relay ...`, run as an operator runs it, in a child process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.flask_cli import flask_cli
from tests.support.model_server import ModelServer, default_chunks
from tests.support.processes import Process, RedisServer
from webapp.http.auth import Verifier
from webapp.storage import keys
from webapp.storage.jobs import Job


def test_enqueue_test_posts_through_the_api_and_prints_the_answer(
    base_env: dict[str, str],
    web: str,
    worker: Process,
    model_server: ModelServer,
    unique: str,
) -> None:
    prompt = f"cli enqueue {unique}"
    done = flask_cli(base_env, "relay", "enqueue-test", prompt, "--timeout", "60")
    out = done.stdout
    session_id = next(line.split()[1] for line in out.splitlines() if line.startswith("session "))
    message_id = next(line.split()[1] for line in out.splitlines() if line.startswith("message "))
    assert "".join(default_chunks(prompt)) in out
    assert "end finish_reason=stop" in out

    # The same session and answer, as any client sees them.
    snapshot = httpx.get(f"{web}/api/sessions/{session_id}", timeout=10).json()
    user, answer = snapshot["messages"]
    assert (user["role"], user["content"]) == ("user", prompt)
    assert (answer["id"], answer["status"]) == (message_id, "done")
    assert answer["content"] == "".join(default_chunks(prompt))


def test_enqueue_test_reports_an_api_refusal(base_env: dict[str, str], web: str) -> None:
    done = flask_cli(base_env, "relay", "enqueue-test", "   ", "--no-follow", check=False)
    assert done.returncode != 0
    assert "400 empty_prompt" in done.stderr


@pytest.fixture()
def queue_redis(log_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(log_dir).start()
    yield server
    server.stop()


def test_queue_shows_depth_and_stuck_jobs(queue_redis: RedisServer) -> None:
    client = redis.Redis.from_url(queue_redis.url, decode_responses=True)
    now = time.time()
    client.lpush(
        keys.JOBS_QUEUED, Job("q1", "qm1", 1, now).dumps(), Job("q2", "qm2", 1, now).dumps()
    )
    stuck = Job("stuck-session", "stuck-message", 2, now - 900).dumps()
    fresh = Job("fresh-session", "fresh-message", 1, now - 5).dumps()
    client.lpush(keys.JOBS_PROCESSING, stuck, fresh)
    server_seconds = client.time()[0]
    client.zadd(keys.JOBS_LEASES, {stuck: (server_seconds - 30) * 1000})
    client.close()
    env = {"REDIS_URL": queue_redis.url}

    text = flask_cli(env, "relay", "queue", "--older-than", "60").stdout
    assert "queued 2" in text and "running 2" in text and "stuck 1" in text
    stuck_line = next(line for line in text.splitlines() if "stuck-session" in line)
    assert "message=stuck-message attempt=2" in stuck_line
    assert "lease expired" in stuck_line
    assert "fresh-session" not in text

    report = json.loads(
        flask_cli(env, "relay", "queue", "--older-than", "1", "--json")
        .stdout.strip()
        .splitlines()[-1]
    )
    assert (report["queued"], report["running"]) == (2, 2)
    assert {job["session_id"] for job in report["stuck"]} == {"stuck-session", "fresh-session"}
    fresh_report = next(job for job in report["stuck"] if job["session_id"] == "fresh-session")
    assert fresh_report["lease_expires_in_seconds"] is None


TOKEN_SECRET = "a-cli-test-secret-that-is-long-enough-for-hs256"


def test_token_prints_a_token_and_a_page_url_that_carries_it() -> None:
    env = {"AUTH_JWT_SECRET": TOKEN_SECRET, "AUTH_JWT_AUDIENCE": "relay-test", "PORT": "5123"}
    done = flask_cli(
        env, "relay", "token", "--sub", "alice", "--ttl", "120", "--session", "abcdefgh12345678"
    )
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    token = lines["token"]
    assert lines["url"] == f"http://localhost:5123/?session=abcdefgh12345678#access_token={token}"
    caller = Verifier(secret=TOKEN_SECRET, audience="relay-test").decode(token)
    assert (caller.sub, caller.sid) == ("alice", "abcdefgh12345678")
    assert 100 < caller.exp - time.time() <= 120

    plain = flask_cli(
        {"AUTH_JWT_SECRET": TOKEN_SECRET}, "relay", "token", "--sub", "bob", "--url", "https://x.io"
    )
    url = plain.stdout.splitlines()[1]
    assert url.startswith("url https://x.io/#access_token=eyJ")


def test_token_needs_the_secret() -> None:
    done = flask_cli(
        {"AUTH_JWT_SECRET": "", "AUTH_JWT_PUBLIC_KEY": ""},
        "relay",
        "token",
        "--sub",
        "alice",
        check=False,
    )
    assert done.returncode != 0 and done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "AUTH_JWT_SECRET" in errors[0], done.stderr
