"""A stream entry as readers hold it, with its wire encodings made once and kept.

The writer stores each event as two fields, its type and its JSON data
(storage/events.py); a reader builds an `Entry` from them and asks it for
the bytes each transport sends: the SSE frame, the same frame as one HTTP/1.1
chunk (for writing straight to a held socket, serving/held_streams.py), and
the long-poll JSON object. `data` is spliced into each as stored, never
parsed and serialised again.

Deliberate choices:
- `data` is produced by `json.dumps`, which escapes every control character,
  so it is always a single line: model output holding NUL, CR or LF cannot
  break SSE framing.
- `id` and `event` are checked for CR/LF anyway, because the SSE encoder is
  the one place that guards the wire format.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

from webapp.storage import keys
from webapp.storage.events import START


def chunked(data: bytes) -> bytes:
    """`data` as one chunk of an HTTP/1.1 chunked body, as gunicorn frames a yielded item."""
    return b"%X\r\n%s\r\n" % (len(data), data)


class Meter(Protocol):
    """Counts the bytes of the entries it holds (channel.py): told of each encoding made."""

    def encoded(self, entry: Entry, size: int, first: bool) -> None:
        """`first`: the entry held no encoding before this one."""


@dataclass(slots=True)
class Entry:
    """One stream entry, with its wire encodings computed when first asked and kept.

    An entry in a channel's buffer has that channel as its `meter`, which
    counts every byte the entry holds, its encodings included, against the
    process's budget (buffers.py), and drops the encodings no reader needs.
    """

    id: str
    event: str
    data: str  # the stored JSON text
    _sse: bytes | None = field(default=None, repr=False)
    _poll: str | None = field(default=None, repr=False)
    _chunk: bytes | None = field(default=None, repr=False)
    meter: Meter | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A handful of event names: one string each, shared by every entry.
        self.event = sys.intern(self.event)

    @classmethod
    def from_redis(cls, entry_id: str | bytes, fields: dict) -> Entry:
        def text(value: str | bytes) -> str:
            return value.decode() if isinstance(value, bytes) else value

        decoded = {text(k): text(v) for k, v in fields.items()}
        return cls(
            text(entry_id), decoded.get(keys.ENTRY_EVENT, ""), decoded.get(keys.ENTRY_DATA, "{}")
        )

    @property
    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = encode_sse(self.data, event=self.event, id=self.id)
            self._made(self._sse, first=self._poll is None)
        return self._sse

    @property
    def sse_chunk(self) -> bytes:
        """`sse` as one HTTP/1.1 chunk, for writing straight to a socket (held_streams.py)."""
        if self._chunk is None:
            self._chunk = chunked(self.sse)  # made after `sse`: never the first
            self._made(self._chunk, first=False)
        return self._chunk

    @property
    def poll_json(self) -> str:
        """The entry as a long-poll JSON object, `data` spliced in unparsed."""
        if self._poll is None:
            self._poll = (
                f'{{"id":{json.dumps(self.id)},"event":{json.dumps(self.event)},'
                f'"data":{self.data}}}'
            )
            self._made(self._poll, first=self._sse is None)
        return self._poll

    def _made(self, encoding: bytes | str, *, first: bool) -> None:
        if self.meter is not None:
            self.meter.encoded(self, sys.getsizeof(encoding), first)

    @property
    def size(self) -> int:
        """The bytes this entry holds now: itself, its id and data, and its encodings."""
        return ENTRY_BYTES + sys.getsizeof(self.id) + sys.getsizeof(self.data) + self.encoded_size

    @property
    def encoded_size(self) -> int:
        size = 0
        if self._sse is not None:
            size += sys.getsizeof(self._sse)
        if self._poll is not None:
            size += sys.getsizeof(self._poll)
        if self._chunk is not None:
            size += sys.getsizeof(self._chunk)
        return size

    def forget_encodings(self) -> int:
        """Drop the cached encodings (they are made again if asked for); the bytes they held."""
        freed = self.encoded_size
        self._sse = self._poll = self._chunk = None
        return freed

    def parsed(self) -> dict[str, Any]:
        return json.loads(self.data)


# The entry object itself, with its slot in a channel's list (its event name is shared).
ENTRY_BYTES = sys.getsizeof(Entry("0-0", START, "")) + 8


def poll_body(entries: list[Entry], cursor: str, reset: bool) -> str:
    """A long-poll answer, `{"events", "cursor", "reset"}`, each entry's data spliced in."""
    return (
        f'{{"events":[{",".join(entry.poll_json for entry in entries)}],'
        f'"cursor":{json.dumps(cursor)},"reset":{json.dumps(reset)}}}'
    )


def _one_line(value: str, what: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"SSE {what} must not contain CR or LF: {value!r}")
    return value


def encode_sse(
    data: str | None = None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry_ms: int | None = None,
    comment: str | None = None,
) -> bytes:
    """Encode one SSE message (https://html.spec.whatwg.org/#server-sent-events).

    Multi-line `data` becomes several `data:` lines, which the client joins
    with LF again; a comment is a line starting with a colon.
    """
    lines: list[str] = []
    if comment is not None:
        lines.extend(f": {part}" for part in comment.splitlines() or [""])
    if retry_ms is not None:
        lines.append(f"retry: {int(retry_ms)}")
    if id is not None:
        lines.append(f"id: {_one_line(id, 'id')}")
    if event is not None:
        lines.append(f"event: {_one_line(event, 'event')}")
    if data is not None:
        parts = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        lines.extend(f"data: {part}" for part in parts)
    return ("\n".join(lines) + "\n\n").encode()


KEEP_ALIVE = encode_sse(comment="keep-alive")
