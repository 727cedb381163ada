"""logs.py: one line per event on stdout; LOG_FORMAT=json gives log drains one object per line."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.support.client import create_session, post_prompt, read_sse
from tests.support.model_server import ModelServer
from tests.support.processes import RedisServer, start_web, start_worker
from webapp.http.auth import mint
from webapp.ops.logs import configure, redact


@pytest.fixture()
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_json_format_puts_ids_and_key_values_in_fields(
    restore_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure("INFO", "json")
    log = logging.getLogger("webapp.write.generation")
    log.info(
        "generation ended session=%s message=%s finish_reason=%s chunks=%d",
        "S-1_abc",
        "M_2",
        "stop",
        12,
    )
    try:
        raise RuntimeError("model went away\nsecond line")
    except RuntimeError:
        log.exception("generation crashed session=%s message=%s", "S-1_abc", "M_2")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, "one line per event, tracebacks included"
    ended, crashed = (json.loads(line) for line in lines)
    assert (
        ended["msg"] == "generation ended session=S-1_abc message=M_2 finish_reason=stop chunks=12"
    )
    assert (ended["session"], ended["message"], ended["finish_reason"], ended["chunks"]) == (
        "S-1_abc",
        "M_2",
        "stop",
        "12",
    )
    assert (ended["level"], ended["logger"]) == ("INFO", "webapp.write.generation")
    assert ended["time"].endswith("Z") and isinstance(ended["pid"], int)
    assert crashed["session"] == "S-1_abc" and crashed["level"] == "ERROR"
    assert "RuntimeError: model went away\nsecond line" in crashed["exc"]


def test_text_is_the_default(
    restore_logging: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    configure("INFO")
    logging.getLogger("webapp.storage.jobs").info("job queued session=%s message=%s", "s", "m")
    line = capsys.readouterr().out.strip()
    assert not line.startswith("{")
    assert " INFO " in line and line.endswith("webapp.storage.jobs job queued session=s message=m")


@pytest.fixture()
def json_stack(base_env: dict[str, str], app, log_dir: Path) -> Iterator[tuple[str, Any, Any]]:
    """gunicorn and a worker with LOG_FORMAT=json, on a Redis of their own."""
    redis_server = RedisServer(log_dir).start()
    env = dict(base_env, REDIS_URL=redis_server.url, LOG_FORMAT="json")
    web, base_url = start_web(env, log_dir, name="web-json")
    worker = start_worker(env, log_dir, name="worker-json")
    yield base_url, web, worker
    worker.stop()
    web.stop()
    redis_server.stop()


def test_web_and_worker_log_json_lines_with_session_and_message_ids(
    json_stack: tuple[str, Any, Any],
    model_server: ModelServer,
    unique: str,
) -> None:
    base_url, web, worker = json_stack
    prompt = f"json logs {unique}"
    model_server.behave(prompt, chunks=["logged ", "as ", "json"])
    with httpx.Client(base_url=base_url, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        assert read_sse(base_url, session_id, until_message=message_id).events[-1].event == "end"
    worker.stop()
    web.stop()

    worker_lines = [line for line in worker.log_text().splitlines() if line.strip()]
    assert worker_lines and all(line.startswith("{") for line in worker_lines), worker_lines[:5]
    ended = [r for r in json_lines(worker.log_text()) if r["msg"].startswith("generation ended")]
    assert [(r["session"], r["message"]) for r in ended] == [(session_id, message_id)]

    web_records = json_lines(web.log_text())
    created = [r for r in web_records if r["msg"].startswith("session created")]
    assert [r["session"] for r in created] == [session_id]
    posted = [
        r
        for r in web_records
        if r["logger"] == "gunicorn.access"
        and r.get("path") == f"/api/sessions/{session_id}/messages"
    ]
    assert [(r["method"], r["status"]) for r in posted] == [("POST", 202)]
    assert isinstance(posted[0]["duration_ms"], int)


# -- tokens never reach a log line (API.md, Access control) --------------------------

LOG_SECRET = "a-log-test-secret-that-is-long-enough-for-hs256"


def test_redact_hides_token_values_and_keeps_the_rest() -> None:
    token = mint(LOG_SECRET, "alice", 60)
    line = f'GET /api/sessions/s1/events?last_event_id=1-0&access_token={token}&x=1 HTTP/1.1"'
    assert redact(line) == (
        'GET /api/sessions/s1/events?last_event_id=1-0&access_token=[redacted]&x=1 HTTP/1.1"'
    )
    assert redact(f"Authorization: Bearer {token}") == "Authorization: Bearer [redacted]"
    assert redact("?ACCESS%5Ftoken=abc&b=2") == "?ACCESS%5Ftoken=[redacted]&b=2"
    assert token not in redact(f"a bare token {token} in a message")
    assert redact("session created session=abc message=def") == (
        "session created session=abc message=def"
    )


def test_the_filter_redacts_messages_and_tracebacks(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    token = mint(LOG_SECRET, "alice", 60)
    configure("INFO", "json")
    log = logging.getLogger("webapp.http.api")
    log.info("odd request url=%s", f"/api/x?access_token={token}")
    try:
        raise ValueError(f"bad token {token}")
    except ValueError:
        log.exception("failed session=%s", "s1")
    out = capsys.readouterr().out
    assert token not in out
    first, second = json_lines(out)
    assert first["url"] == "/api/x?access_token=[redacted]"
    assert "ValueError: bad token [redacted]" in second["exc"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_token_reaches_the_web_log(
    base_env: dict[str, str], app, log_dir: Path, log_format: str
) -> None:
    """gunicorn's access log and the app's lines, with tokens in every place a client puts them."""
    env = dict(base_env, AUTH_JWT_SECRET=LOG_SECRET, LOG_FORMAT=log_format)
    web, base_url = start_web(env, log_dir, name=f"web-redact-{log_format}")
    good = mint(LOG_SECRET, "alice", 300)
    expired = jwt.encode({"sub": "alice", "exp": int(time.time()) - 60}, LOG_SECRET)
    garbage = "not-a-jwt-but-still-secret-9f8e7d"
    try:
        with httpx.Client(base_url=base_url, timeout=10) as http:
            created = http.post("/api/sessions", params={"access_token": good})
            assert created.status_code == 201, created.text
            session_id = created.json()["session_id"]
            poll = http.get(
                f"/api/sessions/{session_id}/poll",
                params={"after": "0-0", "timeout": "0", "access_token": good},
                headers={"Referer": f"{base_url}/?access_token={good}"},
            )
            assert poll.status_code == 200, poll.text
            with http.stream(
                "GET", f"/api/sessions/{session_id}/events", params={"access_token": good}
            ) as stream:
                assert stream.status_code == 200
                next(stream.iter_lines())
            assert http.get("/api/x", params={"access_token": expired}).status_code == 401
            assert http.get("/api/x", params={"access_token": garbage}).status_code == 401
            assert (
                http.get("/api/x", headers={"Authorization": f"Bearer {good}"}).status_code == 404
            )
    finally:
        web.stop()
    text = web.log_text()
    for secret in (good, expired, garbage):
        assert secret not in text
    redacted_requests = [line for line in text.splitlines() if "access_token=[redacted]" in line]
    # The request lines of the text format; the JSON format logs the path alone.
    assert len(redacted_requests) >= (5 if log_format == "text" else 0), text[-2000:]
    assert f"/api/sessions/{session_id}/poll" in text
