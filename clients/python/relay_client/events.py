"""Events of a session stream, their ids, and the cursor that applies each one once.

An event's id is its Redis stream entry id, `<ms>-<seq>` (API.md, Events):
ids only grow within a session, and they compare as pairs of numbers, not
as text (`9-0` comes before `10-0`). The same id is the SSE `id:`, the
`Last-Event-ID` a reconnect sends, and the long-poll cursor, so one
`Cursor` serves every transport.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ProtocolError

ZERO_ID = "0-0"
_ID = re.compile(r"\A([0-9]{1,20})-([0-9]{1,20})\Z")

START = "start"
CHUNK = "chunk"
REASONING = "reasoning"
END = "end"
ERROR = "error"
RESET = "reset"
TOOL_CALL = "tool_call"
TOOL_RESULT = "tool_result"
WAITING = "waiting"
# After these a message has nothing more to say.
FINAL = frozenset({END, ERROR})


def parse_id(raw: str) -> tuple[int, int]:
    """`(ms, seq)` of an entry id; ValueError for anything else."""
    match = _ID.match(raw)
    if not match:
        raise ValueError(f"not a stream entry id: {raw!r}")
    return int(match[1]), int(match[2])


def id_after(a: str, b: str) -> bool:
    """True when entry id `a` comes after `b`."""
    return parse_id(a) > parse_id(b)


@dataclass(frozen=True)
class Event:
    """One event: its entry id, its type and its data (a JSON object).

    A `reset` has no id; the client reloaded the session's snapshot when it
    came, and carries it in `snapshot` (API.md: "the client reloads the
    snapshot and goes on from its cursor").
    """

    id: str | None
    event: str
    data: dict[str, Any]
    snapshot: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def message_id(self) -> str | None:
        found = self.data.get("message_id")
        return found if isinstance(found, str) else None

    @classmethod
    def from_poll(cls, item: dict[str, Any]) -> Event:
        return cls(item.get("id"), item["event"], item["data"])


@dataclass(frozen=True)
class Poll:
    """One long-poll's answer: events after the cursor sent, the next cursor, a reset."""

    events: list[Event]
    cursor: str
    reset: bool


class Cursor:
    """The id of the last event applied: an event at or before it was seen, and is dropped.

    `value` None means "from the start of what the server retains".
    """

    def __init__(self, value: str | None = None) -> None:
        if value is not None:
            parse_id(value)
        self.value = value
        self.dropped = 0  # events seen twice and dropped here

    def admit(self, event_id: str) -> bool:
        """True, and move on, when `event_id` is new; False for an event already applied.

        ProtocolError for an id that is not a stream entry id.
        """
        try:
            key = parse_id(event_id)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        if self.value is not None and key <= parse_id(self.value):
            self.dropped += 1
            return False
        self.value = event_id
        return True
