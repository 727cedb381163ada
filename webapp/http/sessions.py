"""Chat sessions: create, find, find a message, cancel, delete.

What the JSON views (api.py) do, without the HTTP: they parse the request
(params.py), check access (auth.py), call these, and answer. Listing a
caller's sessions is session_list.py; every new answer in one (a prompt, a
regenerate) goes through prompts.py.

Deliberate choices:
- Delete takes Redis first, then SQL, then tells every web process. Once the
  session's `active` hash is gone, its running generation is fenced off
  (writer.py): its next write is refused, so it stops and recreates no key.
  Should SQL fail after that, the session is still listed, with its history,
  and the client's retried DELETE finishes the job. An answer waiting for a
  decision (API.md, Tools) just ends: its journal goes with the keys, and
  no job is left to run it.
- Cancel of a waiting answer queues the attempt that writes its `end`
  (journal.wake): only workers write streams.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask
from sqlalchemy import delete

from webapp.exceptions import ApiError
from webapp.http import auth, params
from webapp.http.auth import Caller
from webapp.ops import metrics
from webapp.read import snapshot
from webapp.read.hub import HubExtension, hub
from webapp.storage import jobs, journal, keys, models
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
    # A paused answer runs nowhere to see the flag: queue the attempt that ends
    # it (only workers write streams). One that is not paused sees the flag at
    # its next write, or at its pause (journal_pause.lua).
    due = journal.wake(client, session_id, message_id)
    if due is not None:
        jobs.enqueue_resume(client, session_id, message_id, due)
    log.info(
        "cancel requested session=%s message=%s waiting=%s",
        session_id,
        message_id,
        "yes" if due is not None else "no",
    )
    return "cancelling"


# -- delete ---------------------------------------------------------------------


def session_redis_keys(client: redis.Redis, session_id: str) -> list[str]:
    """Every Redis key of the session: the fixed ones and its idempotency keys.

    The idempotency keys have per-key names; `idempotency.remember` lists
    each in the session's index set, so a delete reads one set instead of
    walking the keyspace. A name whose key has expired is harmless to DEL.
    """
    index = keys.idempotency_index(session_id)
    fixed = [*keys.session_keys(session_id), keys.journal(session_id)]
    return sorted({*client.smembers(index), index, *fixed})


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
    if active:  # a waiting answer ends with its session: nothing runs it any more
        metrics.answer_waiting(client, session_id, active, waiting=False)
    HubExtension.of(app).end_session(session_id)  # this process at once, before the 204
    client.publish(keys.EVENTS_CHANNEL, keys.deleted_notice(session_id))
    log.info("session deleted session=%s active=%s", session_id, active or "-")
