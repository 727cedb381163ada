"""Event delivery: Server-Sent Events and the long-poll fallback.

Both read through the hub (hub.py); a poll with nothing to answer yet is
parked with it (longpoll.py). Everything that can fail with a JSON
error (the session, the cursor, the timeout, the stream limits) is decided
here, before a streaming response starts (sse.py).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from webapp.http import auth, limits, longpoll, params, sessions, sse
from webapp.http.auth import Caller
from webapp.storage.extensions import db

bp = Blueprint("stream", __name__)

POLL_MAX_EVENTS = 1000


def check_session(session_id: str, caller: Caller | None) -> None:
    """404 for an unknown session, or one the caller may not use.

    A long-poll loop asks every few seconds: mostly no SQL (sessions.ensure).
    """
    sessions.ensure(session_id, caller)
    # A waiting request must not hold a pooled SQL connection. remove(), not
    # close(): when the hub answered for the session there is no SQL session,
    # and close() would build one only to close it (5% of a busy long-poll).
    db.session.remove()


@bp.get("/api/sessions/<session_id>/events", endpoint="events")
def events_(session_id: str) -> Response:
    caller = auth.current_caller()
    check_session(session_id, caller)
    cursor = params.sse_cursor()
    release = limits.acquire_stream(request, current_app.config)
    return sse.response(
        session_id,
        cursor,
        resumed=params.sse_resumed(),
        release=release,
        environ=request.environ,
        settings=current_app.config,
        # A stream ends when its token expires: the client reconnects with a fresh one.
        max_seconds=auth.cap_seconds(caller, current_app.config["SSE_MAX_SECONDS"]),
    )


@bp.get("/api/sessions/<session_id>/poll")
def poll(session_id: str) -> Response:
    caller = auth.current_caller()
    check_session(session_id, caller)
    cursor = params.after_cursor()
    timeout = params.poll_timeout(current_app.config["POLL_TIMEOUT_SECONDS"])
    timeout = auth.cap_seconds(caller, timeout)  # a poll never waits past its token
    release = limits.acquire_stream(request, current_app.config)
    return longpoll.response(
        session_id,
        cursor,
        timeout,
        limit=POLL_MAX_EVENTS,
        release=release,
        environ=request.environ,
    )
