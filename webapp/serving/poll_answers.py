"""A long-poll's answer as the bytes on the wire, written as gunicorn writes a response.

Two kinds of answer are written here rather than by gunicorn: a parked
poll's (parked_polls.py), and a poll answered at once on a kept connection
(poll_connections.py). Both must be the bytes gunicorn would write for the
same response (handover.py, item 8; tests/test_poll_parity.py):

- `answer_at_once`: gunicorn's `Response.default_headers` (the status
  line, `Server`, `Date`, `Connection`), then the app's headers, then
  `Content-Length`, where werkzeug puts it for a body of known length;
- `head`: a parked poll's, as it was written before it was shared: the
  status line, `Server`, `Connection`, the app's headers, with `Date` and
  `Content-Length` added per answer (parked_polls.py).

What is made per poll is made once and shared: the app's header lines per
set of headers (`fields_of`), the Date per second, and a body per session
and cursor (`SharedBodies`): every poller at the same cursor gets the same
bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from email.utils import formatdate
from typing import Any

from webapp.read.entries import Entry, poll_body

# Headers of the app's response that the head writes itself, or leaves out.
HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection"})
STATUS = "200 OK"
SERVER = b"Server: gunicorn\r\n"
# Header sets seen: a handful (with or without each allowed origin), kept for good.
_FIELDS_LIMIT = 256
_fields: dict[tuple[tuple[str, str], ...], bytes] = {}


def asks_keep_alive(environ: Mapping[str, Any]) -> bool:
    """Whether the request leaves its connection open after the answer, as gunicorn reads it.

    gunicorn keeps an HTTP/1.1 connection open unless the request says
    `Connection: close` (`Request.should_close`, handover.py item 8). An
    HTTP/1.0 one is closed here even when it asks for keep-alive: closing
    is always allowed.
    """
    return (
        environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
        and "close" not in environ.get("HTTP_CONNECTION", "").lower()
    )


def fields_of(headers: Iterable[tuple[str, str]]) -> bytes:
    """The app's headers as header lines, hop-by-hop ones left out (made once per set)."""
    key = tuple(headers)
    fields = _fields.get(key)
    if fields is None:
        lines = [f"{name}: {value}\r\n" for name, value in key if name.lower() not in HOP_BY_HOP]
        fields = "".join(lines).encode("latin-1")
        if len(_fields) >= _FIELDS_LIMIT:
            _fields.clear()
        _fields[key] = fields
    return fields


def _connection(keep_alive: bool) -> bytes:
    return b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n"


def head(protocol: str, fields: bytes, keep_alive: bool) -> bytes:
    """A parked poll's head, up to Date and Content-Length (added per answer)."""
    status = f"{protocol} {STATUS}\r\n".encode("latin-1")
    return status + SERVER + _connection(keep_alive) + fields


def answer_at_once(fields: bytes, body: bytes, keep_alive: bool) -> bytes:
    """A whole HTTP/1.1 answer, as gunicorn writes the app's response with its Content-Length."""
    return b"HTTP/1.1 200 OK\r\n%sDate: %s\r\n%s%sContent-Length: %d\r\n\r\n%s" % (
        SERVER,
        http_date(),
        _connection(keep_alive),
        fields,
        len(body),
        body,
    )


_date: tuple[int, bytes] = (0, b"")


def http_date(timestamp: float | None = None) -> bytes:
    """An HTTP Date header's value, as gunicorn's `util.http_date` writes it (item 8).

    Whole seconds: made once a second for the time now.
    """
    global _date
    if timestamp is not None:
        return formatdate(timestamp, usegmt=True).encode()
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True).encode())
    return _date[1]


class SharedBodies:
    """Answers' bodies by session and range: pollers at the same cursor share one, made once.

    A body is fixed by its session, its first entry and its cursor (entries
    never change, and ids only grow), so it can be reused until it is
    dropped: all at once, when the bodies kept pass `limit_bytes`.
    """

    def __init__(self, limit_bytes: int = 1 << 20) -> None:
        self._bodies: dict[tuple[str, str, str, bool], bytes] = {}
        self._bytes = 0
        self._limit_bytes = limit_bytes

    def body(self, session_id: str, entries: list[Entry], cursor: str, reset: bool) -> bytes:
        key = (session_id, entries[0].id if entries else "", cursor, reset)
        body = self._bodies.get(key)
        if body is None:
            body = poll_body(entries, cursor, reset).encode()
            if self._bytes + len(body) > self._limit_bytes:
                self._bodies.clear()
                self._bytes = 0
            self._bodies[key] = body
            self._bytes += len(body)
        return body


bodies = SharedBodies()
