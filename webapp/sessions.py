"""Chat sessions: create one, find one, accept a prompt into one, cancel its answer.

What the JSON views (api.py) do, without the HTTP: they parse the request
(params.py), call these, and answer.

A session has at most one active generation, from the moment its prompt is
accepted until its final event (API.md). `accept_prompt` claims the session
in Redis first (jobs.py), then stores the prompt and its queued answer in
SQL, then queues the job; a failure on the way releases the claim.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from . import jobs, models, params, snapshot
from .exceptions import ApiError
from .extensions import db
from .hub import hub
from .models import ChatSession

log = logging.getLogger(__name__)


def create() -> str:
    """A new session; its id."""
    chat = ChatSession(id=models.new_session_id())
    db.session.add(chat)
    db.session.commit()
    log.info("session created session=%s", chat.id)
    return chat.id


def find(session_id: str) -> ChatSession:
    """The session, or 404 session_not_found."""
    chat = db.session.get(ChatSession, params.valid_id(session_id, "session"))
    if chat is None:
        raise ApiError(404, "session_not_found", "No session with that id.")
    return chat


def ensure(session_id: str) -> None:
    """404 for an unknown session, without SQL when this process's hub follows it.

    Sessions are never deleted, so one that has a channel here was found in
    SQL before. A chat page posts while its stream is open, often here.
    """
    if not hub.follows(params.valid_id(session_id, "session")):
        find(session_id)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A prompt post's outcome: the answer queued, or the generation that is active."""

    message_id: str | None
    active: str | None = None


def accept_prompt(client: redis.Redis, session_id: str, content: str) -> Accepted:
    """Store the prompt and queue its answer, unless a generation is active."""
    message_id = models.new_message_id()
    claimed = jobs.claim(client, session_id, message_id)
    if claimed.active is not None:
        return Accepted(None, active=claimed.active)
    try:
        if claimed.previous_unfinished and (orphans := models.fail_orphans(session_id)):
            log.warning("unfinished answer failed session=%s count=%d", session_id, orphans)
        models.add_prompt(session_id, content, message_id)
        db.session.commit()
        jobs.enqueue(client, session_id, message_id)
    except Exception:
        db.session.rollback()
        jobs.release(client, session_id, message_id)
        raise
    return Accepted(message_id)


def find_message(
    client: redis.Redis, session_id: str, message_id: str
) -> tuple[dict[str, Any], str]:
    """The message as a snapshot shows it, and the snapshot's cursor; 404 if there is none."""
    params.valid_id(message_id, "message")
    messages, cursor = snapshot.live_messages(client, session_id)
    for message in messages:
        if message.id == message_id:
            return message.to_json(), cursor
    raise ApiError(404, "message_not_found", "No message with that id in this session.")


def cancel(client: redis.Redis, session_id: str, message_id: str) -> str:
    """Ask the message's generation to stop; the status to answer with."""
    message, _ = find_message(client, session_id, message_id)
    if message["role"] != models.ASSISTANT:
        raise ApiError(409, "not_cancellable", "Only an assistant answer can be cancelled.")
    if not jobs.request_cancel(client, session_id, message_id):
        return message["status"]
    log.info("cancel requested session=%s message=%s", session_id, message_id)
    return "cancelling"
