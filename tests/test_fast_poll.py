"""The way in for polls that skips Flask's dispatch (webapp/serving/fast_poll.py).

In process, through Flask's test client, which calls the app's WSGI
callable: `FastPolls` while FAST_POLL is on. A before_request hook that the
test adds counts what Flask dispatched, so a poll answered without it shows.
With no gunicorn socket no poll parks here; over real HTTP both ways in are
compared byte for byte by tests/test_poll_parity.py. The middleware's own
accounting (a fallback counted and logged per reason) is checked with a
plain WSGI app and answer function, as create_app hands it them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.conftest import dispose, make_app
from webapp.ops import metrics
from webapp.serving import fast_poll
from webapp.serving.fast_poll import FastPolls
from webapp.storage import events, jobs
from webapp.storage.extensions import redis_store
from webapp.write.writer import StreamWriter


def fallbacks(reason: str) -> float:
    return metrics.FAST_POLL_FALLBACKS.labels(reason)._value.get()


class Dispatched:
    """A before_request hook: the requests Flask dispatched."""

    def __init__(self, app: Flask) -> None:
        self.count = 0
        app.before_request(self.hook)

    def hook(self) -> None:
        self.count += 1


@pytest.fixture()
def polled_app(base_env: dict[str, str], log_dir: Path, unique: str) -> Iterator[Flask]:
    env = dict(base_env, DATABASE_URL=f"sqlite:///{log_dir / f'fast-{unique}.sqlite3'}")
    app = make_app(env)
    yield app
    dispose(app)


def session_with_an_entry(app: Flask) -> tuple[str, str]:
    session_id = app.test_client().post("/api/sessions").get_json()["session_id"]
    client = redis_store.client_for(app)
    jobs.claim(client, session_id, "the-answer")
    writer = StreamWriter(client, session_id, "the-answer", 1, stream_ttl_seconds=60, maxlen=100)
    entry = writer.append(events.CHUNK, events.chunk_data("the-answer", "hi")).entry_id
    return session_id, entry


@pytest.mark.gevent
def test_a_followed_sessions_poll_is_answered_without_flasks_dispatch(polled_app: Flask) -> None:
    fast = polled_app.wsgi_app
    assert isinstance(fast, FastPolls)
    dispatched = Dispatched(polled_app)
    session_id, entry = session_with_an_entry(polled_app)
    path = f"/api/sessions/{session_id}/poll?after=0-0&timeout=0"
    http = polled_app.test_client()
    looked_up, answered, through_flask = (
        fallbacks(fast_poll.LOOKUP),
        fast.answered,
        dispatched.count,
    )

    first = http.get(path)  # the hub does not follow the session yet: Flask looks it up
    assert fallbacks(fast_poll.LOOKUP) == looked_up + 1 and fast.answered == answered
    assert dispatched.count == through_flask + 1
    second = http.get(path)  # followed now, its owner known: the fast path answers
    assert fast.answered == answered + 1 and fallbacks(fast_poll.LOOKUP) == looked_up + 1
    assert dispatched.count == through_flask + 1, "Flask dispatched nothing"

    assert first.status_code == second.status_code == 200
    assert first.headers == second.headers and first.data == second.data
    assert second.get_json()["cursor"] == entry


@pytest.mark.gevent
def test_what_the_plan_cannot_answer_without_flask_is_handed_to_it(polled_app: Flask) -> None:
    session_id, _ = session_with_an_entry(polled_app)
    http = polled_app.test_client()
    path = f"/api/sessions/{session_id}/poll"
    http.get(path, query_string={"timeout": 0})  # followed from here on
    counts = {reason: fallbacks(reason) for reason in fast_poll.REASONS}

    refused = http.get(path, query_string={"after": "abc"})
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "invalid_cursor"
    with_a_body = http.get(path, query_string={"timeout": 0}, json={"a": 1})
    assert with_a_body.status_code == 200
    # werkzeug's routing refuses a WebSocket handshake to the poll's route: Flask answers it.
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket"}
    assert http.get(path, query_string={"timeout": 0}, headers=upgrade).status_code == 400
    assert {reason: fallbacks(reason) - counts[reason] for reason in fast_poll.REASONS} == {
        fast_poll.BODY: 1,
        fast_poll.UPGRADE: 1,
        fast_poll.LOOKUP: 0,
        fast_poll.REFUSED: 1,
        fast_poll.FAILED: 0,
    }


@pytest.mark.gevent
def test_with_fast_poll_off_every_poll_goes_through_flask(
    base_env: dict[str, str], log_dir: Path, unique: str
) -> None:
    env = dict(base_env, DATABASE_URL=f"sqlite:///{log_dir / f'slow-{unique}.sqlite3'}")
    app = make_app(env, FAST_POLL=False)
    try:
        assert not isinstance(app.wsgi_app, FastPolls)
        dispatched = Dispatched(app)
        session_id, entry = session_with_an_entry(app)
        for _ in range(2):
            answer = app.test_client().get(f"/api/sessions/{session_id}/poll?timeout=0")
            assert answer.get_json()["cursor"] == entry
        assert dispatched.count == 3  # the session's creation, and both polls
    finally:
        dispose(app)


# -- the middleware's own accounting -------------------------------------------------------


def flask_stand_in(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("299 Flask", [])
    return [b"flask"]


def answered_here(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b"here"]


def call(app: FastPolls, path: str, **environ: Any) -> tuple[str, bytes]:
    got: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, **environ}
    body = b"".join(app(environ, lambda status, headers: got.append(status)))
    return got[0], body


@pytest.mark.parametrize("reason", fast_poll.REASONS)
def test_each_fallback_is_counted_by_reason_and_logged_once(
    reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = FastPolls(flask_stand_in, lambda session_id, environ: reason)
    before = fallbacks(reason)
    with caplog.at_level(logging.DEBUG, logger=fast_poll.__name__):
        environ = {
            fast_poll.BODY: {"CONTENT_LENGTH": "2"},
            fast_poll.UPGRADE: {"HTTP_UPGRADE": "websocket"},
        }.get(reason, {})
        assert call(app, "/api/sessions/abcdefgh/poll", **environ) == ("299 Flask", b"flask")
    assert fallbacks(reason) == before + 1 and app.answered == 0
    lines = [r.getMessage() for r in caplog.records if r.name == fast_poll.__name__]
    assert lines == [f"long-poll handed to flask reason={reason} session='abcdefgh'"]


def test_only_a_get_of_the_poll_route_is_asked_for() -> None:
    asked: list[str] = []

    def answer(session_id: str, environ: dict[str, Any]) -> Any:
        asked.append(session_id)
        return answered_here

    app = FastPolls(flask_stand_in, answer)
    assert call(app, "/api/sessions/abcdefgh/poll") == ("200 OK", b"here")
    assert call(app, "/api/sessions/abcdefgh/poll", REQUEST_METHOD="HEAD")[0] == "299 Flask"
    assert call(app, "/api/sessions/abcdefgh/events")[0] == "299 Flask"
    assert call(app, "/api/sessions/a/b/poll")[0] == "299 Flask"
    assert asked == ["abcdefgh"] and app.answered == 1
