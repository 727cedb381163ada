"""The only code that reads session streams, as writer.py is the only code that writes them.

- `read_after`: the entries after a cursor, in order, or `Reset` when the
  cursor is older than what is retained. The hub reads this way, for every
  SSE stream and long-poll of its process.
- `read_tail`: the newest entries, backwards, as far back as the answers a
  snapshot still needs reach (snapshot.py).
- `read_blocking`: the entries after a cursor, waiting a while for some
  (`XREAD BLOCK`), for one reader on its own: the CLI, which runs without
  the hub.

What is retained: entries at or below the `floor` of the session's meta
hash were trimmed away; when the stream itself expired, everything up to
its `last_id` is gone (keys.py).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import redis

from webapp.exceptions import Reset
from webapp.read.entries import Entry
from webapp.storage import events, keys
from webapp.storage.events import ZERO_ID, id_key

CATCH_UP_BATCH = 1000
TAIL_PAGE_ENTRIES = 500


class Range(NamedTuple):
    """Entries after a cursor; every entry between `base` and the last of them is here."""

    entries: list[Entry]
    base: str


def read_after(
    client: redis.Redis, session_id: str, cursor: str, count: int = CATCH_UP_BATCH
) -> Range:
    """Up to `count` entries after `cursor`; Reset if the cursor is no longer retained."""
    stream, meta = keys.stream(session_id), keys.meta(session_id)
    with client.pipeline(transaction=False) as pipe:
        pipe.xrange(stream, min=f"({cursor}", count=count)
        pipe.exists(stream)
        pipe.hmget(meta, keys.META_FLOOR, keys.META_LAST_ID)
        rows, exists, (floor, last_id) = pipe.execute()
    # When the stream expired, everything up to its last id is gone.
    floor = (floor if exists else last_id) or ZERO_ID
    if cursor != ZERO_ID and id_key(cursor) < id_key(floor):
        raise Reset(floor)
    entries = [Entry.from_redis(entry_id, fields) for entry_id, fields in rows]
    return Range(entries, max(cursor, floor, key=id_key))


class Tail(NamedTuple):
    cursor: str  # the newest entry id, or the last one written when the stream expired
    found: list[tuple[str, dict[str, Any]]]  # (event, data) of the pending answers, oldest first
    claimed: str | None  # the message the session's claim names


def read_tail(client: redis.Redis, session_id: str, pending: set[str]) -> Tail:
    """The cursor, the events of the `pending` answers, and the claimed message.

    The stream is read backwards only as far as those answers reach: a
    session has one generation at a time, so the first event of any other
    message, or the `start` (from step 0) of the last pending one, marks
    where they began.
    """
    stream = keys.stream(session_id)
    with client.pipeline(transaction=False) as pipe:
        pipe.xrevrange(stream, count=TAIL_PAGE_ENTRIES)
        pipe.hget(keys.meta(session_id), keys.META_LAST_ID)
        pipe.hget(keys.active(session_id), keys.ACTIVE_MESSAGE_ID)
        page, last_id, claimed = pipe.execute()
    cursor = page[0][0] if page else (last_id or ZERO_ID)
    found: list[tuple[str, dict[str, Any]]] = []
    while page and pending:
        for _, fields in page:
            data = json.loads(fields.get(keys.ENTRY_DATA, "{}"))
            if data.get("message_id") not in pending:
                return Tail(cursor, found[::-1], claimed)
            event = fields.get(keys.ENTRY_EVENT, "")
            found.append((event, data))
            # An attempt that went on from a later step kept the earlier ones:
            # the answer began at the start that went on from step 0.
            if event == events.START and not data.get("from_step"):
                pending = pending - {data["message_id"]}
                if not pending:
                    return Tail(cursor, found[::-1], claimed)
        if len(page) < TAIL_PAGE_ENTRIES:
            break
        page = client.xrevrange(stream, max=f"({page[-1][0]}", count=TAIL_PAGE_ENTRIES)
    return Tail(cursor, found[::-1], claimed)


def read_blocking(
    client: redis.Redis, session_id: str, cursor: str, *, count: int, block_ms: int
) -> list[Entry]:
    """Up to `count` entries after `cursor`, waiting up to `block_ms` for the first.

    `client` needs a socket timeout longer than the block (extensions.py,
    `blocking_client`). Old cursors are not checked: the caller reads from
    the start or from an entry it just saw.
    """
    reply = client.xread({keys.stream(session_id): cursor}, count=count, block=block_ms)
    return [
        Entry.from_redis(entry_id, fields) for _, rows in reply or [] for entry_id, fields in rows
    ]
