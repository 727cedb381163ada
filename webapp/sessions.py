"""Sessions as a whole: create, list a caller's, delete; regenerate an answer.

Domain functions for the views (API.md rows `GET /api/sessions`, `DELETE
/api/sessions/{sid}`, `POST .../messages/{mid}/regenerate`). The views check
ids and access (auth.py) first; these functions take ids already checked and
raise errors.ApiError for what only they can tell.

Deliberate choices:
- A list entry's `title` (the first prompt's first 80 characters) and
  `updated_at` (its newest message) are read from the messages of the page's
  sessions, one grouped query each, not stored on the session: a stored copy
  would cost every prompt an extra write and give one fact two homes.
- The `next` cursor is the last entry's (created_at, id), base64url-encoded:
  opaque to clients, and stable when two sessions share a created_at.
- Delete takes Redis first, then SQL, then tells every web process. Once the
  session's `active` hash is gone, its running generation is fenced off
  (writer.py): its next write is refused, so it stops and recreates no key.
  Should SQL fail after that, the session is still listed, with its history,
  and the client's retried DELETE finishes the job.
- Regenerate reuses the prompt post's steps (`queue_answer`): claim the
  session, store the rows, queue the job, release the claim on failure.

Wiring (what the views and the read side still need; see also auth.py):

- DELETE view: check access, `delete_session(app, sid)`, answer 204.
- The hub (hub.py) must act on `events.SESSION_DELETED` notices: forget the
  channel's buffer, detach its sinks (held SSE streams end), wake followers,
  and make `Follower.next_batch` raise a new `SessionDeleted` that ends an
  SSE body and answers a waiting long-poll or `?wait=` (200, what it has).
  `api.ensure_session` trusts a followed channel as "exists in SQL": after a
  delete that no longer holds, so it must drop the channel on that notice.
- The worker's cancel poll (worker.py `_apply_cancels`) stops a generation
  waiting on the model only for `cancel == "1"`; it should also stop one
  whose `active` hash is gone (message_id None), or a deleted session's
  generation keeps waiting for the model's next piece before it is fenced.
- `api.post_message` should call `queue_answer` instead of its own copy of
  claim, store, commit, enqueue and release (it keeps its idempotent replay
  for a non-None return), so the two stay one.
- The regenerate view builds the same 202 body and Location as a prompt
  post, with the message id `regenerate` returns; `/api/chat` with
  `trigger: regenerate-message` calls `regenerate` on the last answer.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from flask import Flask
from sqlalchemy import and_, delete, func, or_, select

from . import events, jobs, keys, models
from .errors import ApiError
from .extensions import db, redis_store
from .models import ChatSession, Message

log = logging.getLogger(__name__)

PAGE_SIZE = 50
TITLE_CHARS = 80
# Keys per SCAN call when looking for a session's idempotency keys.
SCAN_COUNT = 1000


# -- create and list ----------------------------------------------------------


def create_session(owner: str | None) -> ChatSession:
    """A new session owned by `owner` (None while access control is off), committed."""
    chat = ChatSession(id=models.new_session_id(), owner=owner)
    db.session.add(chat)
    db.session.commit()
    return chat


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a caller's sessions, newest first, and the cursor of the next one."""

    sessions: list[dict[str, Any]]
    next: str | None

    def to_json(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "next": self.next}


def encode_cursor(created_at: datetime, session_id: str) -> str:
    raw = f"{created_at.isoformat()}|{session_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) of a `next` cursor; 400 invalid_cursor for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, session_id = raw.split("|", 1)
        return datetime.fromisoformat(moment), session_id
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ApiError(
            400, "invalid_cursor", "`before` takes the `next` of the previous page."
        ) from None


def list_sessions(owner: str, before: str | None, limit: int = PAGE_SIZE) -> Page:
    """`owner`'s sessions by created_at, newest first, after the `before` cursor."""
    s = ChatSession.__table__.c
    query = select(s.id, s.created_at).where(s.owner == owner)
    if before:
        created_at, session_id = decode_cursor(before)
        query = query.where(
            or_(s.created_at < created_at, and_(s.created_at == created_at, s.id < session_id))
        )
    rows = db.session.execute(query.order_by(s.created_at.desc(), s.id.desc()).limit(limit + 1))
    rows = list(rows)
    page, more = rows[:limit], len(rows) > limit
    ids = [row.id for row in page]
    titles, updated = _titles(ids), _updated(ids)
    sessions = [
        {
            "session_id": row.id,
            "title": titles.get(row.id, ""),
            "created_at": models.isoformat(row.created_at),
            "updated_at": models.isoformat(updated.get(row.id) or row.created_at),
        }
        for row in page
    ]
    last = page[-1] if more else None
    return Page(sessions, encode_cursor(last.created_at, last.id) if last else None)


def _titles(session_ids: list[str]) -> dict[str, str]:
    """The first prompt's first TITLE_CHARS characters, per session that has one."""
    if not session_ids:
        return {}
    m = Message.__table__.c
    first = (
        select(func.min(m.seq))
        .where(m.session_id.in_(session_ids), m.role == models.USER)
        .group_by(m.session_id)
    )
    query = select(m.session_id, func.substr(m.content, 1, TITLE_CHARS)).where(m.seq.in_(first))
    return {session_id: title for session_id, title in db.session.execute(query)}


def _updated(session_ids: list[str]) -> dict[str, datetime]:
    """When each session last changed: its newest message created or finished."""
    if not session_ids:
        return {}
    m = Message.__table__.c
    query = (
        select(m.session_id, func.max(m.created_at), func.max(m.finished_at))
        .where(m.session_id.in_(session_ids))
        .group_by(m.session_id)
    )
    return {
        session_id: max(t for t in (created, finished) if t is not None)
        for session_id, created, finished in db.session.execute(query)
    }


# -- delete ---------------------------------------------------------------------


def session_redis_keys(client: redis.Redis, session_id: str) -> list[str]:
    """Every Redis key of the session: the fixed ones and its idempotency keys.

    The idempotency keys have per-key names, so they are found with SCAN: it
    walks the whole keyspace (SCAN_COUNT keys a call), which a delete, a
    rare request, can afford.
    """
    found = set(client.scan_iter(match=keys.session_key_pattern(session_id), count=SCAN_COUNT))
    return sorted(found | set(keys.session_keys(session_id)))


def delete_session(app: Flask, session_id: str) -> None:
    """Delete the session's Redis keys and SQL rows, then tell every web process.

    Deleting the `active` hash fences a running generation off (see the
    module docstring), and the `deleted` notice ends the session's open
    streams and waiting polls (once the hub knows it).
    """
    client = redis_store.client_for(app)
    active = client.hget(keys.active(session_id), "message_id")
    # One DEL of keys that share one Cluster slot: atomic.
    client.delete(*session_redis_keys(client, session_id))
    try:
        db.session.execute(delete(Message).where(Message.session_id == session_id))
        db.session.execute(delete(ChatSession).where(ChatSession.id == session_id))
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    client.publish(keys.EVENTS_CHANNEL, events.deleted_notice(session_id))
    log.info("session deleted session=%s active=%s", session_id, active or "-")


# -- regenerate -------------------------------------------------------------------


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
