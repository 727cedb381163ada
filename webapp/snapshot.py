"""A session's state right now: stored messages plus the live answer so far.

SQL is read first, then the tail of the session stream. A message that SQL
still shows unfinished takes its text and status from the stream, and the
snapshot's `cursor` is the newest entry read, so a client that renders the
snapshot and follows events after `cursor` misses nothing and repeats
nothing. (If the answer ends between the two reads, the stream already shows
its `end`; if SQL is ahead of the stream, the client just sees an `end` for a
message it already shows finished.)

The stream is read backwards only as far as the unfinished generation
reaches: a session has one generation at a time, so the first event of any
other message marks where it began.

An answer that is unfinished in SQL and in the stream, and is not the one
the session's claim names, will never finish: its job was never queued (a
web process died mid-POST, jobs.py) or its claim was lost with Redis's data.
The snapshot shows it failed, as the session's next POST records it in SQL
(api.py), so a client never waits for it.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import redis

from . import events, keys, models
from .events import ZERO_ID
from .models import Message

PAGE_ENTRIES = 500


class Tail(NamedTuple):
    cursor: str
    found: list[tuple[str, dict]]  # (event, data) of the pending messages, oldest first
    claimed: str | None  # the message id the session's claim names


def _tail(client: redis.Redis, session_id: str, pending: set[str]) -> Tail:
    """The cursor, the events of `pending` messages oldest first, and the claimed message."""
    stream = keys.stream(session_id)
    with client.pipeline(transaction=False) as pipe:
        pipe.xrevrange(stream, count=PAGE_ENTRIES)
        pipe.hget(keys.meta(session_id), keys.META_LAST_ID)
        pipe.hget(keys.active(session_id), keys.ACTIVE_MESSAGE_ID)
        page, last_id, claimed = pipe.execute()
    cursor = page[0][0] if page else (last_id or ZERO_ID)
    found: list[tuple[str, dict]] = []
    while page and pending:
        for _, fields in page:
            data = json.loads(fields.get(keys.ENTRY_DATA, "{}"))
            if data.get("message_id") not in pending:
                return Tail(cursor, found[::-1], claimed)
            found.append((fields.get(keys.ENTRY_EVENT, ""), data))
            if fields.get(keys.ENTRY_EVENT) == events.START:
                pending = pending - {data["message_id"]}
                if not pending:
                    return Tail(cursor, found[::-1], claimed)
        if len(page) < PAGE_ENTRIES:
            break
        page = client.xrevrange(stream, max=f"({page[-1][0]}", count=PAGE_ENTRIES)
    return Tail(cursor, found[::-1], claimed)


def _apply(message: Message, event: str, data: dict[str, Any]) -> None:
    """Fold one event into an unsaved copy of an unfinished message."""
    if event == events.START:
        message.content, message.status = "", models.STREAMING
        message.model = data.get("model", message.model)
    elif event == events.CHUNK:
        message.content += data.get("text", "")
    elif event == events.END:
        reason = data.get("finish_reason")
        message.status = models.CANCELLED if reason == events.FINISH_CANCELLED else models.DONE
        message.finish_reason = reason
        message.usage = data.get("usage")
    elif event == events.ERROR:
        error = data.get("error") or {}
        message.status = models.FAILED
        message.error_code, message.error_message = error.get("code"), error.get("message")


def live_messages(client: redis.Redis, session_id: str) -> tuple[list[Message], str]:
    """Messages with unfinished answers brought up to date, and the cursor."""
    messages = models.conversation(session_id)
    pending = {
        m.id: m
        for m in messages
        if m.role == models.ASSISTANT and m.status not in models.FINAL_STATUSES
    }
    tail = _tail(client, session_id, set(pending))
    for message in pending.values():
        models.db.session.expunge(message)  # folded in memory, never saved
    for event, data in tail.found:
        _apply(pending[data["message_id"]], event, data)
    for message in pending.values():
        if message.status not in models.FINAL_STATUSES and message.id != tail.claimed:
            message.status = models.FAILED
            message.error_code, message.error_message = models.ORPHAN_ERROR
    return messages, tail.cursor


def snapshot(client: redis.Redis, session_id: str) -> dict[str, Any]:
    messages, cursor = live_messages(client, session_id)
    active = next((m.id for m in messages if m.status in (models.QUEUED, models.STREAMING)), None)
    return {
        "session_id": session_id,
        "messages": [m.to_json() for m in messages],
        "active_message_id": active,
        "cursor": cursor,
    }
