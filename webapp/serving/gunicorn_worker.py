"""relay's gunicorn worker: gevent's, with a time limit on a request's headers.

gunicorn 27 has no setting for it: its gevent worker reads each request's
headers under one timeout, `keepalive` (95 s here), which also bounds how
long an idle keep-alive connection waits for its next request. So a client
that sent half a request and stopped held a connection (a file, a greenlet)
for 95 s, and a few hundred of them were a cheap way to exhaust the
process's files (issue 18).

`Worker.timeout_ctx` keeps `keepalive` for the wait before a request's
first byte and gives the rest of its headers HEADER_TIMEOUT_SECONDS from
the read that brought that byte; past either, the connection is closed as
gunicorn closes an idle one. The first byte is seen where gunicorn's
parser reads it, not guessed from the socket: the parser reads through
`TimedReads` (gunicorn's socket reader, which tells the header deadline
when a read returns bytes), in the same greenlet that waits, so the shorter
limit starts before the parser can wait for more. Only the parser reads
through it: the socket in the WSGI environ, which held streams and parked
polls take over (handover.py), is gunicorn's own.

The worker also tells handover.py it serves, so that a connection a parked
long-poll answered can be handed back for its next request; and a
connection whose last request was a poll waits its turn (priority.py)
before its next request is read, so prompt POSTs go first.

What this relies on from gunicorn is named in handover.py (items 5, 6 and 9)
and pinned by tests/test_handover.py and tests/test_gunicorn_edges.py.
This module is imported by gunicorn's arbiter (worker_class in
gunicorn.conf.py): it imports gevent and gunicorn only, as gunicorn's own
"gevent" worker class does.
"""

from __future__ import annotations

from typing import Any

import gevent
from gunicorn.http import parser as gunicorn_parser
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.ggevent import GeventWorker

from webapp.serving import handover, priority


class HeaderDeadline:
    """A header read's time limit: `idle_seconds` for its first byte, then `header_seconds`.

    Entered by gunicorn around the read of one request's headers, in the
    greenlet that reads them. Each limit is a `gevent.Timeout` that throws
    itself into that greenlet and is swallowed here, as gunicorn's own
    `Timeout(keepalive, False)` is: gunicorn then sees no request and
    closes the connection. gunicorn drains the unread rest of the previous
    request's body inside this read too: bytes of it start the shorter
    limit, so a body the app left unread must arrive within it as well.
    """

    def __init__(self, reads: TimedReads, *, idle_seconds: float, header_seconds: float) -> None:
        self._reads = reads
        self._idle_seconds = idle_seconds
        self._header_seconds = header_seconds
        self._limit: gevent.Timeout | None = None
        self._limits: list[gevent.Timeout] = []

    def __enter__(self) -> HeaderDeadline:
        # Bytes a pipelining client sent are already in gunicorn's buffer:
        # this request has begun.
        begun = self._reads.holds_bytes()
        self._start(self._header_seconds if begun else self._idle_seconds)
        self._reads.deadline = None if begun else self
        return self

    @property
    def seconds(self) -> float:
        """The limit running now: `idle_seconds` until the first bytes, then `header_seconds`."""
        return self._limit.seconds if self._limit is not None else self._idle_seconds

    def first_bytes(self) -> None:
        """The parser's read returned this request's first bytes: the shorter limit starts now."""
        self._reads.deadline = None
        self._start(self._header_seconds)

    def _start(self, seconds: float) -> None:
        if self._limit is not None:
            self._limit.close()
        self._limit = gevent.Timeout(seconds, False)
        self._limits.append(self._limit)
        self._limit.start()

    def __exit__(self, typ: Any, value: Any, tb: Any) -> bool:
        self._reads.deadline = None
        if self._limit is not None:
            self._limit.close()
        # Swallowed: gunicorn sees no request and closes the connection.
        return any(value is limit for limit in self._limits)


class TimedReads(SocketUnreader):
    """gunicorn's socket reader, which tells the header deadline when a read brings bytes.

    It starts with the bytes given back with the connection, if any
    (handover.py, item 9): they are read before the socket.
    """

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.deadline: HeaderDeadline | None = None
        given_back = handover.read_through(self)
        if given_back:
            self.unread(given_back)

    def chunk(self, size_hint: int | None = None) -> bytes:
        data = super().chunk(size_hint)
        if data and self.deadline is not None:
            self.deadline.first_bytes()
        return data

    def holds_bytes(self) -> bool:
        """Whether bytes read from the socket wait in the buffer, unparsed."""
        with self.buf.getbuffer() as held:
            return held.nbytes > 0


def read_requests_through_timed_reads() -> None:
    """Make gunicorn's parsers read through TimedReads (handover.py, item 6)."""
    gunicorn_parser.SocketUnreader = TimedReads


class Worker(GeventWorker):
    """gunicorn's gevent worker, with HeaderDeadline around each request's header read."""

    # Set from HEADER_TIMEOUT_SECONDS by gunicorn.conf.py's post_fork.
    header_timeout_seconds = 10.0

    def run(self) -> None:
        read_requests_through_timed_reads()
        handover.serve_with(self)
        super().run()

    def timeout_ctx(self) -> Any:
        if self.alive and priority.last_was_poll():
            # Before the next request is read: a waiting poll costs nothing (priority.py).
            priority.lane.wait_turn()
        reads = handover.reads_of_this_connection()
        if not isinstance(reads, TimedReads):
            return super().timeout_ctx()
        return HeaderDeadline(
            reads,
            idle_seconds=self.cfg.keepalive,
            header_seconds=self.header_timeout_seconds,
        )
