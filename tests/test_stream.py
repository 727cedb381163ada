"""The SSE and long-poll views (webapp/http/stream.py, sse.py) and the parameters they read (params.py).

In process, through Flask's test client: there is no gunicorn socket, so an
SSE body yields every byte itself (held_streams.py's hand-over is tested with
gunicorn in test_held_streams.py and test_handover.py). Those tests run in
a gevent-patched child (the `gevent` marker), as a web process does; the
parameter tests need no Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.conftest import dispose, make_app
from webapp import create_app
from webapp.exceptions import ApiError
from webapp.http import params
from webapp.read.hub import HubExtension
from webapp.storage import events, jobs
from webapp.storage.extensions import redis_store
from webapp.write.writer import StreamWriter

SETTINGS = {"SSE_MAX_SECONDS": 1.5, "HEARTBEAT_SECONDS": 0.3, "SSE_RETRY_MS": 1234}


@pytest.fixture()
def stream_app(base_env: dict[str, str], log_dir: Path, unique: str) -> Iterator[Flask]:
    env = dict(base_env, DATABASE_URL=f"sqlite:///{log_dir / f'stream-{unique}.sqlite3'}")
    app = make_app(env, **SETTINGS)
    yield app
    dispose(app)


def write(
    app: Flask, session_id: str, texts: list[str], finish: bool = True, **kw: Any
) -> list[str]:
    """Write an answer's chunks (and its end) as a worker would; their entry ids."""
    client = redis_store.client_for(app)
    jobs.claim(client, session_id, "the-answer")
    kw.setdefault("stream_ttl_seconds", 3600)
    kw.setdefault("maxlen", 10_000)
    writer = StreamWriter(client, session_id, "the-answer", 1, **kw)
    ids = [
        writer.append(events.CHUNK, events.chunk_data("the-answer", text)).entry_id
        for text in texts
    ]
    if finish:
        data = events.end_data(
            "the-answer",
            finish_reason="stop",
            usage=None,
            duration_ms=1,
            chunks=len(ids),
            text_length=sum(map(len, texts)),
        )
        ids.append(writer.finish(events.END, data).entry_id)
    return ids


def new_session(app: Flask) -> str:
    return app.test_client().post("/api/sessions").get_json()["session_id"]


def read_whole(app: Flask, path: str, **kw: Any) -> tuple[Any, bytes]:
    """The response and its whole body, read until the server ends it."""
    response = app.test_client().get(path, buffered=False, **kw)
    body = b"".join(response.response)
    response.close()
    return response, body


@pytest.mark.gevent
def test_sse_sends_retry_then_events_then_keep_alives_until_its_time_is_up(
    stream_app: Flask,
) -> None:
    session_id = new_session(stream_app)
    write(stream_app, session_id, ["one", "two"])
    response, body = read_whole(stream_app, f"/api/sessions/{session_id}/events")
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert body.startswith(b"retry: 1234\n\n")
    frames = body.split(b"\n\n")
    assert [f.split(b"\n")[1] for f in frames if f.startswith(b"id: ")] == [
        b"event: chunk",
        b"event: chunk",
        b"event: end",
    ]
    assert b": keep-alive" in frames[-2], "quiet after the end: keep-alives until the limit"
    hub = HubExtension.of(stream_app)
    assert hub._channels[session_id].followers == 0, "the stream's end let go of the follower"


@pytest.mark.gevent
def test_sse_resets_an_old_cursor_and_goes_on_from_the_floor(stream_app: Flask) -> None:
    session_id = new_session(stream_app)
    ids = write(stream_app, session_id, ["0", "1", "2", "3"], maxlen=2)
    # The header wins over the query parameter.
    path = f"/api/sessions/{session_id}/events?last_event_id={ids[-1]}"
    _, body = read_whole(stream_app, path, headers={"Last-Event-ID": ids[0]})
    frames = [f for f in body.split(b"\n\n") if f.startswith((b"id: ", b"event: "))]
    assert frames[0] == b'event: reset\ndata: {"reason":"cursor_expired"}'
    assert [f.split(b"\n")[0] for f in frames[1:]] == [f"id: {i}".encode() for i in ids[-2:]]


@pytest.mark.gevent
def test_a_poll_answers_at_once_when_there_are_events_and_waits_when_not(
    stream_app: Flask,
) -> None:
    session_id = new_session(stream_app)
    ids = write(stream_app, session_id, ["one", "two"], finish=False)
    http = stream_app.test_client()
    path = f"/api/sessions/{session_id}/poll"
    everything = http.get(path, query_string={"timeout": 20}).get_json()
    assert [e["id"] for e in everything["events"]] == ids
    assert everything["events"][0]["data"] == {"message_id": "the-answer", "text": "one", "step": 0}
    assert (everything["cursor"], everything["reset"]) == (ids[-1], False)
    ahead = "99999999999999-0"
    for cursor in (ids[-1], ahead):
        quiet = http.get(path, query_string={"after": cursor, "timeout": 0.2}).get_json()
        assert quiet == {"events": [], "cursor": cursor, "reset": False}


# -- parameters ----------------------------------------------------------------


@pytest.fixture(scope="module")
def bare_app() -> Flask:
    """An app for request contexts only: it never connects anywhere."""
    return create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


@pytest.mark.parametrize(
    ("raw", "default", "expected"),
    [("1000", 20, 25.0), ("-3", 20, 0.0), (None, 20, 20), (None, 60, 25.0)],
)
def test_the_poll_timeout_is_clamped_to_0_to_25_seconds(
    raw: str | None, default: float, expected: float
) -> None:
    assert params.poll_timeout_of(raw, default) == expected


@pytest.mark.parametrize("raw", ["nan", "inf", "soon", ""])
def test_a_timeout_that_is_no_number_is_400(raw: str) -> None:
    with pytest.raises(ApiError) as error:
        params.poll_timeout_of(raw, 20)
    assert (error.value.status, error.value.code) == (400, "invalid_timeout")


def test_the_sse_cursor_comes_from_the_header_then_the_query(bare_app: Flask) -> None:
    with bare_app.test_request_context("/?last_event_id=2-0", headers={"Last-Event-ID": "1-0"}):
        assert params.sse_cursor() == "1-0" and params.sse_resumed()
    with bare_app.test_request_context("/?last_event_id=2-0", headers={"Last-Event-ID": " "}):
        assert params.sse_cursor() == "2-0"
    with bare_app.test_request_context("/"):
        assert params.sse_cursor() == "0-0" and not params.sse_resumed()
