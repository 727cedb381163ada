"""A caller's sessions, newest first, a page at a time (API.md, `GET /api/sessions`).

Deliberate choices:
- A list entry's `title` (the first prompt's first 80 characters) and
  `updated_at` (its newest message) are read from the messages of the page's
  sessions, one grouped query each, not stored on the session: a stored copy
  would cost every prompt an extra write and give one fact two homes.
- The `next` cursor is the last entry's (created_at, id), base64url-encoded:
  opaque to clients, and stable when two sessions share a created_at.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select

from webapp.exceptions import ApiError
from webapp.storage import models
from webapp.storage.extensions import db
from webapp.storage.models import ChatSession, Message

PAGE_SIZE = 50
TITLE_CHARS = 80


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
