"""Event delivery: Server-Sent Events and the long-poll fallback.

Both read through the hub (hub.py). Everything that can fail with a JSON
error (the session, the cursor, the timeout) is decided before a streaming
response starts; the generator gets plain values only.
"""

from __future__ import annotations

import errno
import json
import logging
import time
from collections.abc import Callable, Iterator

import redis
from flask import Blueprint, Response, current_app, request

from . import events, limits, metrics
from .api import ensure_session, seconds_arg
from .config import POLL_TIMEOUT_MAX_SECONDS
from .events import KEEP_ALIVE, ZERO_ID, encode_sse, parse_cursor
from .exceptions import ApiError, HandedOver, HubClosed, InvalidCursor, Reset
from .extensions import db
from .hub import Follower, hub
from .sockets import HeldStream, holder_for, send_watch

log = logging.getLogger(__name__)

bp = Blueprint("stream", __name__)

POLL_MAX_EVENTS = 1000
# Entries per SSE write: bounds what one slow client can hold in memory.
SSE_MAX_BATCH = 256
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx and similar proxies: do not buffer
}


def valid_cursor(raw: str | None) -> str:
    if raw is None or raw == "":
        return ZERO_ID
    try:
        parse_cursor(raw)
    except InvalidCursor:
        raise ApiError(
            400, "invalid_cursor", "A cursor is a stream entry id like 1700000000000-0."
        ) from None
    return raw


def check_session(session_id: str) -> None:
    """404 for an unknown session (a long-poll loop asks every few seconds: mostly no SQL)."""
    ensure_session(session_id)
    # A waiting request must not hold a pooled SQL connection. remove(), not
    # close(): when the hub answered for the session there is no SQL session,
    # and close() would build one only to close it (5% of a busy long-poll).
    db.session.remove()


def sse_cursor() -> str:
    """Last-Event-ID header, else ?last_event_id=, else the retained stream's start."""
    header = request.headers.get("Last-Event-ID")
    if header is not None and header.strip():
        return valid_cursor(header.strip())
    return valid_cursor(request.args.get("last_event_id"))


def poll_timeout() -> float:
    seconds = seconds_arg("timeout", POLL_TIMEOUT_MAX_SECONDS)
    if seconds is None:
        return min(current_app.config["POLL_TIMEOUT_SECONDS"], POLL_TIMEOUT_MAX_SECONDS)
    return seconds


class StreamEnd:
    """What to release when an SSE stream really ends, wherever it ends.

    gunicorn closes the response body when the generator finishes, or when
    the hub takes the stream over; after a hand-over, the held stream ends
    it instead (sockets.py).
    """

    def __init__(self, *callbacks: Callable[[], None]) -> None:
        self._callbacks = list(callbacks)
        self.handed_over = False

    def add(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def response_closed(self) -> None:
        if not self.handed_over:
            self.run()

    def run(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


def sse_body(
    follower: Follower,
    *,
    session_id: str,
    hold: Callable[[Callable[[], None]], HeldStream] | None,
    end: StreamEnd,
    retry_ms: int,
    heartbeat_seconds: float,
    deadline: float,
    send_timeout_seconds: float,
) -> Iterator[bytes]:
    """The SSE body: retry hint, then events and keep-alives until the deadline.

    Catching up, the body yields batches for the server to write. Once
    caught up, with `hold`, it hands the connection to the hub and ends
    (sockets.py); without it, it waits for new entries itself.
    """
    # The first write also sends the headers: gunicorn's, never the hub's.
    yield from send_watch.send(encode_sse(retry_ms=retry_ms), send_timeout_seconds, session_id)
    while (remaining := deadline - time.monotonic()) > 0:
        wait = min(heartbeat_seconds, remaining)
        try:
            batch = follower.next_batch(0 if hold else wait, SSE_MAX_BATCH)
            if not batch and hold is not None:
                if follower.caught_up():
                    follower.attach(hold(end.run))
                    end.handed_over = True
                    metrics.sse_held()
                    end.add(metrics.sse_let_go)
                    raise HandedOver(errno.EPIPE, "the hub holds this stream now")
                batch = follower.next_batch(wait, SSE_MAX_BATCH)
        except Reset as reset:
            log.info(
                "sse reset session=%s cursor=%s floor=%s", session_id, follower.cursor, reset.floor
            )
            follower.cursor = reset.floor
            metrics.reset_sent("sse")
            frame = encode_sse(events.reset_data(events.CURSOR_EXPIRED), event=events.RESET)
            yield from send_watch.send(frame, send_timeout_seconds, session_id)
            continue
        except HubClosed:
            log.info("sse closed for shutdown session=%s", session_id)
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Close: the client reconnects with Last-Event-ID and loses nothing.
            log.warning("sse closed, redis unavailable session=%s: %s", session_id, exc)
            return
        frame = b"".join(entry.sse for entry in batch) if batch else KEEP_ALIVE
        yield from send_watch.send(frame, send_timeout_seconds, session_id)


@bp.get("/api/sessions/<session_id>/events", endpoint="events")
def events_(session_id: str) -> Response:
    check_session(session_id)
    cursor = sse_cursor()
    config = current_app.config
    release = limits.acquire_stream(request, current_app.config)
    follower = hub.follow(session_id, cursor)
    log.info("sse open session=%s cursor=%s", session_id, cursor)
    resumed = bool(
        request.headers.get("Last-Event-ID", "").strip() or request.args.get("last_event_id")
    )
    metrics.sse_opened(resumed=resumed)
    end = StreamEnd(follower.close, release, metrics.sse_closed)
    deadline = time.monotonic() + config["SSE_MAX_SECONDS"]
    body = sse_body(
        follower,
        session_id=session_id,
        hold=holder_for(
            request.environ,
            session_id=session_id,
            deadline=deadline,
            heartbeat_seconds=config["HEARTBEAT_SECONDS"],
            send_timeout_seconds=config["SSE_SEND_TIMEOUT_SECONDS"],
        ),
        end=end,
        retry_ms=config["SSE_RETRY_MS"],
        heartbeat_seconds=config["HEARTBEAT_SECONDS"],
        deadline=deadline,
        send_timeout_seconds=config["SSE_SEND_TIMEOUT_SECONDS"],
    )
    response = Response(body, mimetype="text/event-stream", headers=SSE_HEADERS)
    # Runs when gunicorn closes the body, even if it never started iterating it.
    response.call_on_close(end.response_closed)
    return response


@bp.get("/api/sessions/<session_id>/poll")
def poll(session_id: str) -> Response:
    check_session(session_id)
    cursor = valid_cursor(request.args.get("after"))
    timeout = poll_timeout()
    release = limits.acquire_stream(request, current_app.config)
    try:
        answer = hub.poll(session_id, cursor, timeout, POLL_MAX_EVENTS)
    finally:
        release()
    if answer.reset:
        metrics.reset_sent("poll")
    body = (
        f'{{"events":[{",".join(entry.poll_json for entry in answer.entries)}],'
        f'"cursor":{json.dumps(answer.cursor)},"reset":{json.dumps(answer.reset)}}}'
    )
    return Response(body, mimetype="application/json", headers={"Cache-Control": "no-store"})
