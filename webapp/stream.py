"""Event delivery: Server-Sent Events and the long-poll fallback.

Both read through the hub (hub.py); a poll with nothing to answer yet is
parked with it (longpoll.py). Everything that can fail with a JSON
error (the session, the cursor, the timeout, the stream limits) is decided
here, before a streaming response starts (sse.py).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from . import limits, longpoll, params, sessions, sse
from .extensions import db

bp = Blueprint("stream", __name__)

POLL_MAX_EVENTS = 1000


def check_session(session_id: str) -> None:
    """404 for an unknown session (a long-poll loop asks every few seconds: mostly no SQL)."""
    sessions.ensure(session_id)
    # A waiting request must not hold a pooled SQL connection. remove(), not
    # close(): when the hub answered for the session there is no SQL session,
    # and close() would build one only to close it (5% of a busy long-poll).
    db.session.remove()


@bp.get("/api/sessions/<session_id>/events", endpoint="events")
def events_(session_id: str) -> Response:
    check_session(session_id)
    cursor = params.sse_cursor()
    release = limits.acquire_stream(request, current_app.config)
    return sse.response(
        session_id,
        cursor,
        resumed=params.sse_resumed(),
        release=release,
        environ=request.environ,
        settings=current_app.config,
    )


@bp.get("/api/sessions/<session_id>/poll")
def poll(session_id: str) -> Response:
    check_session(session_id)
    cursor = params.after_cursor()
    timeout = params.poll_timeout(current_app.config["POLL_TIMEOUT_SECONDS"])
    release = limits.acquire_stream(request, current_app.config)
    return longpoll.response(
        session_id,
        cursor,
        timeout,
        limit=POLL_MAX_EVENTS,
        release=release,
        environ=request.environ,
    )
