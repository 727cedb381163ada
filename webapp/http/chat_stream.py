"""A chat stream: one answer as the AI SDK's UI message stream, read through the hub.

The chat routes (chat_api.py) decide everything that can fail with a JSON
error first (habit 4), take a snapshot, and call `response()` with plain
values: the answer's `UIMessageStream` (ui_stream.py), the bytes that open
the body, and a hub follower placed at the snapshot's cursor. The body then
maps each new entry of the session's stream through the `UIMessageStream`
until the answer ends, and writes `data: [DONE]`.

Deliberate choices:
- The body follows the hub like any SSE stream (a `Follower`: no Redis
  connection of its own, the channel's buffer feeds it), but it is never
  handed over to the hub (held_streams.py): its bytes depend on what its own
  `UIMessageStream` has shown, so no one encoding serves every client. Its
  greenlet waits for entries and sends keep-alives; it lives one answer long.
- It ends cleanly (`[DONE]`, then the end of the body) only after the
  answer's `finish`, `abort` or `error`. At SSE_MAX_SECONDS (or when the
  caller's token runs out), on a shutdown, or with Redis unreachable, it is
  cut instead: no `[DONE]` and no end of body (handover.cut). The AI SDK
  takes a clean close mid-answer for a finished answer and would keep the
  partial text as final; a cut makes it throw, and the app resumes
  (`resumeStream()`), which replays the answer from its beginning.
- A `reset` (the follower's cursor is older than the stream keeps) is a
  `reset-step`, then the answer as a new snapshot shows it, followed from
  that snapshot's cursor: the client shows exactly the stored text so far.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import redis
from flask import Flask, Response

from webapp.exceptions import HubClosed, Reset
from webapp.http.sse import SSE_HEADERS, SSE_MAX_BATCH
from webapp.http.ui_stream import DONE, HEADERS, UIMessageStream, encode
from webapp.ops import metrics
from webapp.read.entries import KEEP_ALIVE
from webapp.read.follower import Follower
from webapp.read.snapshot import snapshot
from webapp.serving import handover
from webapp.serving.held_streams import send_watch
from webapp.storage.extensions import redis_store

log = logging.getLogger(__name__)


def answer_now(session_id: str, message_id: str) -> tuple[dict[str, Any] | None, str]:
    """The answer as a snapshot shows it (None when the snapshot has no such message), and its cursor."""
    state = snapshot(redis_store.client, session_id)
    found = next((m for m in state["messages"] if m["id"] == message_id), None)
    return found, state["cursor"]


def response(
    app: Flask,
    follower: Follower,
    ui: UIMessageStream,
    *,
    session_id: str,
    opening: bytes,
    release: Callable[[], None],
    seconds: float,
    headers: dict[str, str] | None = None,
) -> Response:
    """The streaming response; `release` runs once, when the stream really ends."""
    settings = app.config
    log.info("chat stream open session=%s message=%s", session_id, ui.message_id)
    metrics.sse_opened(resumed=False)
    ended = False

    def end() -> None:
        nonlocal ended
        if not ended:
            ended = True
            follower.close()
            release()
            metrics.sse_closed()

    body = chat_body(
        app,
        follower,
        ui,
        session_id=session_id,
        opening=opening,
        deadline=time.monotonic() + seconds,
        heartbeat_seconds=settings["HEARTBEAT_SECONDS"],
        send_timeout_seconds=settings["SSE_SEND_TIMEOUT_SECONDS"],
    )
    stream = Response(
        body,
        mimetype="text/event-stream",
        headers={**SSE_HEADERS, **HEADERS, **(headers or {})},
    )
    # Runs when the server closes the body, even if it never started iterating it.
    stream.call_on_close(end)
    return stream


def chat_body(
    app: Flask,
    follower: Follower,
    ui: UIMessageStream,
    *,
    session_id: str,
    opening: bytes,
    deadline: float,
    heartbeat_seconds: float,
    send_timeout_seconds: float,
) -> Iterator[bytes]:
    """The body: the opening, the answer's chunks and keep-alives, then [DONE] (or a cut)."""

    def send(data: bytes) -> Iterator[bytes]:
        return send_watch.send(data, send_timeout_seconds, session_id)

    # The first write also sends the headers, so the client's fetch resolves at once.
    yield from send(opening or KEEP_ALIVE)
    while not ui.finished:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _cut(session_id, ui, "its time limit")
        try:
            batch = follower.next_batch(min(heartbeat_seconds, remaining), SSE_MAX_BATCH)
        except Reset as reset:
            log.info("chat stream reset session=%s floor=%s", session_id, reset.floor)
            metrics.reset_sent("sse")
            frame = _resync(app, follower, ui, session_id)
        except HubClosed:
            _cut(session_id, ui, "a shutdown")
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            _cut(session_id, ui, f"redis unavailable: {exc}")
        else:
            frame = b"".join(ui.frames(entry) for entry in batch) if batch else KEEP_ALIVE
        if frame:
            yield from send(frame)
    yield from send(DONE)
    log.info("chat stream done session=%s message=%s", session_id, ui.message_id)


def _resync(app: Flask, follower: Follower, ui: UIMessageStream, session_id: str) -> bytes:
    """After a reset: the answer as a new snapshot shows it, followed from its cursor."""
    with app.app_context():
        answer, cursor = answer_now(session_id, ui.message_id)
    if answer is None:  # deleted meanwhile, or superseded
        _cut(session_id, ui, "its answer is gone")
    follower.cursor = cursor
    return encode(ui.catch_up(answer), cursor)


def _cut(session_id: str, ui: UIMessageStream, why: str) -> NoReturn:
    log.info("chat stream cut session=%s message=%s: %s", session_id, ui.message_id, why)
    handover.cut(f"chat stream cut: {why}")
