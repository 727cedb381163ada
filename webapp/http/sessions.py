"""Chat sessions: create, find, accept a prompt, cancel, regenerate an answer, delete.

What the JSON views (api.py) do, without the HTTP: they parse the request
(params.py), check access (auth.py), call these, and answer. Listing a
caller's sessions is session_list.py.

A session has at most one active generation, from the moment its prompt is
accepted until its final event (API.md). Every new answer (`queue_answer`:
a prompt, a regenerate) claims the session in Redis first (jobs.py), then
stores its rows in SQL, then queues the job; a failure on the way releases
the claim.

Deliberate choices:
- Delete takes Redis first, then SQL, then tells every web process. Once the
  session's `active` hash is gone, its running generation is fenced off
  (writer.py): its next write is refused, so it stops and recreates no key.
  Should SQL fail after that, the session is still listed, with its history,
  and the client's retried DELETE finishes the job.
- A regenerated answer is `superseded`: kept in SQL, left out of the
  snapshot and of the history sent to the model (models.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask
from sqlalchemy import delete

from webapp.exceptions import ApiError
from webapp.http import auth, params
from webapp.http.auth import Caller
from webapp.read import snapshot
from webapp.read.hub import HubExtension, hub
from webapp.storage import jobs, keys, models
from webapp.storage.extensions import db, redis_store
from webapp.storage.models import ChatSession, Message

log = logging.getLogger(__name__)


def create(owner: str | None = None) -> str:
    """A new session owned by `owner` (None while access control is off); its id."""
    chat = ChatSession(id=models.new_session_id(), owner=owner)
    db.session.add(chat)
    db.session.commit()
    log.info("session created session=%s", chat.id)
    return chat.id


def find(session_id: str) -> ChatSession:
    """The session, or 404 session_not_found."""
    chat = db.session.get(ChatSession, params.valid_id(session_id, "session"))
    if chat is None:
        raise auth.session_not_found()
    return chat


def find_for(caller: Caller | None, session_id: str) -> ChatSession:
    """The session if `caller` may use it (auth.py); else 404, as for an unknown id."""
    chat = find(session_id)
    auth.check_session(caller, chat.owner, chat.id)
    return chat


def ensure(session_id: str, caller: Caller | None) -> None:
    """404 unless the session exists and `caller` may use it; no SQL when the hub follows it.

    A session that has a channel here was found in SQL before (a delete ends
    the channel: hub.py), and the channel keeps its owner, which never
    changes. A chat page posts while its stream is open, often here.
    """
    session_id = params.valid_id(session_id, "session")
    if hub.follows(session_id) and (
        caller is None or auth.can_access(caller, hub.owner(session_id), session_id)
    ):
        return
    chat = find_for(caller, session_id)
    hub.note_owner(session_id, chat.owner)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A prompt post's outcome: the answer queued, or the generation that is active."""

    message_id: str | None
    active: str | None = None


def accept_prompt(client: redis.Redis, session_id: str, content: str) -> Accepted:
    """Store the prompt and queue its answer, unless a generation is active."""
    message_id = models.new_message_id()
    active = queue_answer(
        client, session_id, message_id, lambda: models.add_prompt(session_id, content, message_id)
    )
    return Accepted(None, active=active) if active is not None else Accepted(message_id)


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


# -- new answers ----------------------------------------------------------------


def queue_answer(
    client: redis.Redis, session_id: str, message_id: str, store: Callable[[], None]
) -> str | None:
    """Claim the session for `message_id`, store its rows with `store`, queue its job.

    The steps of a prompt post (api.py), for any new answer. Returns None once
    queued, or the message id already active (nothing is stored then). When
    `store` or anything after the claim fails, the transaction is rolled back,
    the claim released and the error raised.
    """
    claimed = jobs.claim(client, session_id, message_id)
    if claimed.active is not None:
        return claimed.active
    try:
        if claimed.previous_unfinished and (orphans := models.fail_orphans(session_id)):
            log.warning("unfinished answer failed session=%s count=%d", session_id, orphans)
        store()
        db.session.commit()
        jobs.enqueue(client, session_id, message_id)
    except Exception:
        db.session.rollback()
        jobs.release(client, session_id, message_id)
        raise
    return None


def regenerate(app: Flask, session_id: str, message_id: str) -> str:
    """Supersede the session's last answer and queue a new one; the new message id.

    409 `generation_active` while any answer of the session is queued or
    running; 404 `message_not_found` for an id the session does not have;
    409 `not_regenerable` unless `message_id` is its last answer and final.
    """
    answer_id = models.new_message_id()

    def store() -> None:
        if models.find_message(session_id, message_id) is None:
            raise ApiError(404, "message_not_found", "No message with that id in this session.")
        # The claim is ours, so no answer of the session is queued or running:
        # an unfinished one is an orphan, which the snapshot shows as failed.
        models.fail_orphans(session_id)
        history = models.turns(session_id)
        last = next((t for t in reversed(history) if t.role == models.ASSISTANT), None)
        if last is None or last.id != message_id or not models.supersede(session_id, message_id):
            raise ApiError(
                409,
                "not_regenerable",
                "Only the session's last finished answer can be regenerated.",
            )
        models.add_answer(session_id, answer_id)

    active = queue_answer(redis_store.client_for(app), session_id, answer_id, store)
    if active is not None:
        raise ApiError(
            409, "generation_active", "An answer is still being generated.", message_id=active
        )
    log.info(
        "answer regenerated session=%s message=%s superseded=%s", session_id, answer_id, message_id
    )
    return answer_id


# -- delete ---------------------------------------------------------------------


def session_redis_keys(client: redis.Redis, session_id: str) -> list[str]:
    """Every Redis key of the session: the fixed ones and its idempotency keys.

    The idempotency keys have per-key names; `idempotency.remember` lists
    each in the session's index set, so a delete reads one set instead of
    walking the keyspace. A name whose key has expired is harmless to DEL.
    """
    index = keys.idempotency_index(session_id)
    return sorted({*client.smembers(index), index, *keys.session_keys(session_id)})


def delete_session(app: Flask, session_id: str) -> None:
    """Delete the session's Redis keys and SQL rows, then tell every web process.

    Deleting the `active` hash fences a running generation off (see the
    module docstring), and the `deleted` notice ends the session's open
    streams and waiting polls (once the hub knows it).
    """
    client = redis_store.client_for(app)
    active = client.hget(keys.active(session_id), keys.ACTIVE_MESSAGE_ID)
    # One DEL of keys that share one Cluster slot: atomic.
    client.delete(*session_redis_keys(client, session_id))
    try:
        db.session.execute(delete(Message).where(Message.session_id == session_id))
        db.session.execute(delete(ChatSession).where(ChatSession.id == session_id))
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    HubExtension.of(app).end_session(session_id)  # this process at once, before the 204
    client.publish(keys.EVENTS_CHANNEL, keys.deleted_notice(session_id))
    log.info("session deleted session=%s active=%s", session_id, active or "-")
