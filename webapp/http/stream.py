"""Event delivery: Server-Sent Events and the long-poll.

Both read through the hub (hub.py). Everything that can fail with a JSON
error (the session, the cursor, the timeout, the stream limits) is decided
before a response starts: for SSE here (sse.py streams), for a long-poll by
its plan (poll_plan.py), which each of its ways in asks: the view below,
the fast path that skips Flask's dispatch (serving/fast_poll.py), through
`fast_answerer`, and a kept connection whose requests the hub reads itself
(serving/poll_connections.py), through `kept_answerer`. Only the view may
look a session up in SQL.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from webapp.exceptions import ApiError
from webapp.http import auth, limits, longpoll, params, poll_plan, sessions, sse
from webapp.http.auth import Caller
from webapp.http.poll_plan import LOOKUP, Refusal, Stored
from webapp.serving import fast_poll, poll_connections
from webapp.serving.poll_heads import PollHead
from webapp.storage.extensions import db
from webapp.storage.models import ChatSession

bp = Blueprint("stream", __name__)


def check_session(session_id: str, caller: Caller | None) -> None:
    """404 for an unknown session, or one the caller may not use.

    Mostly no SQL: sessions.ensure knows the sessions the hub follows.
    """
    sessions.ensure(session_id, caller)
    # A waiting request must not hold a pooled SQL connection. remove(), not
    # close(): when the hub answered for the session there is no SQL session,
    # and close() would build one only to close it.
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
    site = poll_plan.site_of(current_app)
    answer = longpoll.serve(session_id, request.environ, site, look_up=stored_session)
    if isinstance(answer, Refusal):
        if answer.status == 401:
            auth.note_refused(request.path, answer.message)
        raise ApiError(answer.status, answer.code, answer.message, answer.headers)
    assert answer is not LOOKUP, "the view looks sessions up"
    return answer


def stored_session(session_id: str) -> Stored:
    """What SQL holds of the session, for a poll's plan (its id's shape checked already)."""
    chat = db.session.get(ChatSession, session_id)
    stored = Stored(chat is not None, chat.owner if chat is not None else None)
    db.session.remove()  # a waiting poll holds no pooled SQL connection
    return stored


def fast_answerer(app: Flask) -> fast_poll.Answerer:
    """How the fast path (serving/fast_poll.py) answers a poll: as the view, without SQL."""
    site = poll_plan.site_of(app)

    def answer(session_id: str, environ: dict[str, Any]) -> Response | str:
        try:
            answer = longpoll.serve(session_id, environ, site)
        except Exception:  # Flask asks again, and answers with errors.py's JSON
            return fast_poll.FAILED
        if isinstance(answer, Refusal):
            return fast_poll.REFUSED
        if answer is LOOKUP:
            return fast_poll.LOOKUP
        return answer

    return answer


def kept_answerer(app: Flask) -> poll_connections.Answerer:
    """How a kept connection (serving/poll_connections.py) answers a poll: as the fast path."""
    site = poll_plan.site_of(app)

    def answer(
        head: PollHead, remote_addr: str
    ) -> poll_connections.Reply | poll_connections.Hold | str:
        try:
            answer = longpoll.serve_kept(head, remote_addr, site)
        except Exception:  # gunicorn reads it again, and Flask answers with errors.py's JSON
            return poll_connections.FAILED
        if isinstance(answer, Refusal) or answer is LOOKUP:
            return poll_connections.PLAN  # through gunicorn and the fast path to Flask
        return answer

    return answer
