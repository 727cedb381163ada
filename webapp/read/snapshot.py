"""A session's state right now: stored messages plus the live answer so far.

SQL is read first, then the tail of the session stream. A message that SQL
still shows unfinished takes its text and status from the stream, and the
snapshot's `cursor` is the newest entry read, so a client that renders the
snapshot and follows events after `cursor` misses nothing and repeats
nothing. (If the answer ends between the two reads, the stream already shows
its `end`; if SQL is ahead of the stream, the client just sees an `end` for a
message it already shows finished.)

The stream is read backwards only as far as the unfinished generation
reaches (reader.py, `read_tail`).

An answer that is unfinished in SQL and in the stream, and is not the one
the session's claim names, will never finish: its job was never queued (a
web process died mid-POST, jobs.py) or its claim was lost with Redis's data.
The snapshot shows it failed, as the session's next POST records it in SQL
(sessions.py), so a client never waits for it.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from webapp.read import reader
from webapp.storage import events, models
from webapp.storage.models import Message
from webapp.storage.parts import Parts


def _apply(message: Message, parts: Parts, event: str, data: dict[str, Any]) -> None:
    """Fold one event into an unsaved copy of an unfinished message and its parts."""
    parts.apply(event, data)
    if event == events.START:
        message.status = models.STREAMING
        message.model = data.get("model", message.model)
    elif event == events.WAITING:
        message.status = models.WAITING
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
    tail = reader.read_tail(client, session_id, set(pending))
    for message in pending.values():
        models.db.session.expunge(message)  # folded in memory, never saved
    folded = {message_id: Parts() for message_id in pending}
    for event, data in tail.found:
        _apply(pending[data["message_id"]], folded[data["message_id"]], event, data)
    for message_id, parts in folded.items():
        message = pending[message_id]
        if message.status not in models.FINAL_STATUSES:  # a final one in SQL keeps its own
            message.content, message.reasoning = parts.content, parts.reasoning
            message.parts = json.dumps(parts.items, ensure_ascii=False)
    for message in pending.values():
        if message.status not in models.FINAL_STATUSES and message.id != tail.claimed:
            message.status = models.FAILED
            message.error_code, message.error_message = models.ORPHAN_ERROR
    return messages, tail.cursor


def snapshot(client: redis.Redis, session_id: str) -> dict[str, Any]:
    messages, cursor = live_messages(client, session_id)
    active = next((m.id for m in messages if m.status in models.ACTIVE_STATUSES), None)
    return {
        "session_id": session_id,
        "messages": [m.to_json() for m in messages],
        "active_message_id": active,
        "cursor": cursor,
    }
