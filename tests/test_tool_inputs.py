"""Decisions and client outputs for waiting tool calls (webapp/http/tool_inputs.py).

The app in process, on a redis-server and a SQLite database of this
module's own, with no worker: an answer is made to wait by writing its
journal as a worker would (journal.py), so each test sees exactly what the
endpoints store and queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from tests.conftest import dispose
from tests.support.processes import RedisServer
from webapp import create_app
from webapp.storage import jobs, journal, keys, models
from webapp.storage.extensions import db
from webapp.storage.journal import NewCall

SECRET = "tool-inputs-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(Path(tmp_path_factory.mktemp("tool-inputs-redis"))).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def app(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    database = tmp_path_factory.mktemp("tool-inputs-db") / "relay.sqlite3"
    app = create_app({"REDIS_URL": redis_url, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}"})
    with app.app_context():
        db.create_all()
    yield app
    dispose(app)


@pytest.fixture()
def client(app: Flask) -> redis.Redis:
    connection = redis.Redis.from_url(app.config["REDIS_URL"], decode_responses=True)
    connection.flushdb()
    return connection


def waiting_answer(app: Flask, client: redis.Redis, *calls: NewCall) -> tuple[str, str]:
    """A session whose answer waits for `calls`, as its worker leaves it."""
    with app.app_context():
        session_id = models.new_session_id()
        db.session.add(models.ChatSession(id=session_id))
        message_id = models.new_message_id()
        models.add_prompt(session_id, "refund my order", message_id)
        db.session.commit()
    jobs.claim(client, session_id, message_id)
    journal.record_step(client, session_id, message_id, 1, 0, {"text": ""}, list(calls))
    waits = [(call.call_id, call.waits_for) for call in calls if call.waits_for]
    assert journal.pause(client, session_id, message_id, 1, waits) == "paused"  # type: ignore[arg-type]
    return session_id, message_id


def post(app: Flask, path: str, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
    response = app.test_client().post(path, json=body, headers=headers)
    return response.status_code, response.get_json()


def queued_resumes(client: redis.Redis) -> list[jobs.Job]:
    return [jobs.Job.loads(raw) for raw in client.lrange(keys.JOBS_QUEUED, 0, -1)]


def test_an_approval_is_stored_and_the_answer_queued_to_go_on(
    app: Flask, client: redis.Redis
) -> None:
    sid, mid = waiting_answer(app, client, NewCall("call_1", "refund", "approval"))
    path = f"/api/sessions/{sid}/messages/{mid}/tools/call_1/approval"
    status, body = post(app, path, {"approved": True, "reason": "fine"})
    assert status == 202 and body["status"] == "accepted" and body["call_id"] == "call_1"
    assert queued_resumes(client) == [
        jobs.Job(
            sid, mid, attempt=2, enqueued_at=queued_resumes(client)[0].enqueued_at, resume=True
        )
    ]
    # The same decision again (another reason) is accepted and queues the same attempt.
    assert post(app, path, {"approved": True})[0] == 202
    assert [job.attempt for job in queued_resumes(client)] == [2, 2]
    status, body = post(app, path, {"approved": False})
    assert (status, body["error"]["code"]) == (409, "tool_call_settled")
    call = journal.read(client, sid, mid).calls["call_1"]  # type: ignore[union-attr]
    assert call.input == {"approved": True, "reason": "fine"}


def test_an_answer_waiting_for_two_inputs_goes_on_after_the_second(
    app: Flask, client: redis.Redis
) -> None:
    calls = NewCall("a", "delete_file", "approval"), NewCall("b", "pick_color", "output")
    sid, mid = waiting_answer(app, client, *calls)
    base = f"/api/sessions/{sid}/messages/{mid}/tools"
    assert post(app, f"{base}/b/output", {"output": {"color": "red"}})[0] == 202
    assert queued_resumes(client) == []
    assert post(app, f"{base}/b/output", {"output": {"color": "red"}})[0] == 202
    status, body = post(app, f"{base}/b/output", {"error": "the user closed the dialog"})
    assert (status, body["error"]["code"]) == (409, "tool_call_settled")
    assert post(app, f"{base}/a/approval", {"approved": False})[0] == 202
    assert [job.attempt for job in queued_resumes(client)] == [2]


@pytest.mark.parametrize(
    ("kind", "body", "status", "code"),
    [
        ("approval", {"approved": "yes"}, 400, "invalid_tool_input"),
        ("approval", {"approved": True, "extra": 1}, 400, "invalid_tool_input"),
        ("approval", {"approved": True, "reason": 5}, 400, "invalid_tool_input"),
        ("approval", [True], 400, "invalid_tool_input"),
        ("output", {}, 400, "invalid_tool_input"),
        ("output", {"output": 1, "error": "x"}, 400, "invalid_tool_input"),
        ("output", {"error": ""}, 400, "invalid_tool_input"),
        ("output", {"error": ["x"]}, 400, "invalid_tool_input"),
    ],
)
def test_a_body_of_the_wrong_shape_changes_nothing(
    app: Flask, client: redis.Redis, kind: str, body: Any, status: int, code: str
) -> None:
    sid, mid = waiting_answer(
        app, client, NewCall("a", "refund", "approval"), NewCall("o", "pick", "output")
    )
    call_id = "a" if kind == "approval" else "o"
    answer = post(app, f"/api/sessions/{sid}/messages/{mid}/tools/{call_id}/{kind}", body)
    assert (answer[0], answer[1]["error"]["code"]) == (status, code)
    calls = journal.read(client, sid, mid).calls  # type: ignore[union-attr]
    assert calls["a"].input is None and calls["o"].input is None


def test_unknown_calls_wrong_kinds_and_bad_bodies_get_api_errors(
    app: Flask, client: redis.Redis
) -> None:
    sid, mid = waiting_answer(app, client, NewCall("a", "refund", "approval"))
    base = f"/api/sessions/{sid}/messages/{mid}/tools"
    test_client = app.test_client()
    cases = [
        (post(app, f"{base}/zz/approval", {"approved": True}), 404, "tool_call_not_found"),
        (post(app, f"{base}/a/output", {"output": 1}), 409, "not_waiting"),
        (post(app, f"/api/sessions/{'x' * 20}/messages/{mid}/tools/a/approval", {}), 404, None),
    ]
    for (status, body), want_status, want_code in cases:
        assert status == want_status
        assert want_code is None or body["error"]["code"] == want_code
    raw = test_client.post(f"{base}/a/approval", data="{", content_type="application/json")
    assert (raw.status_code, raw.get_json()["error"]["code"]) == (400, "invalid_json")
    form = test_client.post(f"{base}/a/approval", data="approved=true")
    assert (form.status_code, form.get_json()["error"]["code"]) == (415, "unsupported_media_type")
    assert journal.read(client, sid, mid).calls["a"].input is None  # type: ignore[union-attr]


def test_a_decision_on_another_owners_session_is_a_404(
    redis_url: str, tmp_path: Path, client: redis.Redis
) -> None:
    import jwt

    database = tmp_path / "relay.sqlite3"
    app = create_app(
        {
            "REDIS_URL": redis_url,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
            "AUTH_JWT_SECRET": SECRET,
        }
    )
    with app.app_context():
        db.create_all()
    try:

        def token(sub: str) -> str:
            claims = {"sub": sub, "exp": 4102444800}
            return "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")

        status, body = post(app, "/api/sessions", {}, Authorization=token("alice"))
        sid = body["session_id"]
        with app.app_context():
            mid = models.new_message_id()
            models.add_prompt(sid, "refund", mid)
            db.session.commit()
        jobs.claim(client, sid, mid)
        journal.record_step(client, sid, mid, 1, 0, {}, [NewCall("a", "refund", "approval")])
        path = f"/api/sessions/{sid}/messages/{mid}/tools/a/approval"
        status, body = post(app, path, {"approved": True}, Authorization=token("mallory"))
        assert (status, body["error"]["code"]) == (404, "session_not_found")
        assert journal.read(client, sid, mid).calls["a"].input is None  # type: ignore[union-attr]
        assert post(app, path, {"approved": True}, Authorization=token("alice"))[0] == 202
    finally:
        dispose(app)
