"""A long-poll response: answered at once when there are events, else parked with the hub.

A poll that finds nothing after its cursor would wait in a greenlet of its
own, and the wake-up, the read and the answer would go through Flask,
werkzeug and gunicorn once per poll: about 650 µs of web CPU each in the
fan-out bench (issue 18). Under gunicorn's gevent worker it is parked
instead, as caught-up SSE streams are held (held_streams.py): the view ends, the
hub holds the connection (a `ParkedPoll` attached to the session's channel
as a sink), and gunicorn's greenlet for it ends. When the channel merges a
new entry, or the poll's timeout passes, `Parking` answers it:

- in batches, with a turn of the event loop between two (priority.py), so
  that prompt POSTs and other requests are served between them however many
  polls are answered (they never queue behind a thousand answers);
- with one body per session and cursor in a batch: every poller at the same
  cursor gets the same bytes, built once;
- with a whole HTTP/1.1 response, as gunicorn would write it: its status
  line, the headers Flask gave the response, Content-Length; then, where
  relay's worker serves (handover.py), the connection goes back to gunicorn
  for the client's next request (keep-alive), else it is closed.

Everything this relies on from gunicorn is in handover.py.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import gevent
from flask import Response
from gevent.event import Event

from webapp.ops import metrics
from webapp.read.entries import Entry, poll_body
from webapp.read.hub import Follower, Hub, HubExtension, Poll, hub
from webapp.serving import handover, priority
from webapp.serving.held_streams import send_watch

log = logging.getLogger(__name__)

JSON_HEADERS = {"Cache-Control": "no-store"}
# Polls answered before the answering greenlet lets the rest of the process run.
ANSWER_BATCH = 64
# Headers of the parked request's response that the hub writes itself.
HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection"})


def json_response(poll: Poll) -> Response:
    if poll.reset:
        metrics.reset_sent("poll")
    body = poll_body(poll.entries, poll.cursor, poll.reset)
    return Response(body, mimetype="application/json", headers=JSON_HEADERS)


def response(
    session_id: str,
    cursor: str,
    timeout_seconds: float,
    *,
    limit: int,
    release: Callable[[], None],
    environ: dict[str, Any],
    from_hub: Hub | HubExtension = hub,
) -> Response:
    """The poll's response; `release` runs once, when the poll is answered.

    `from_hub`: the app's Hub, for a caller outside Flask's app context (fast_poll.py).
    """
    connection = handover.connection(environ) if timeout_seconds > 0 else None
    follower = from_hub.follow(session_id, cursor)
    park = False
    try:
        poll = follower.poll(0 if connection else timeout_seconds, limit)
        if connection is not None and not poll.entries and not poll.reset:
            if follower.caught_up():
                park = True
            else:  # a cursor ahead of the stream: wait here
                poll = follower.poll(timeout_seconds, limit)
    finally:
        if not park:
            follower.close()
            release()
    if park:
        return _parked_response(follower, connection, timeout_seconds, limit, release, environ)
    return json_response(poll)


def _parked_response(
    follower: Follower,
    connection: handover.Connection,
    timeout_seconds: float,
    limit: int,
    release: Callable[[], None],
    environ: dict[str, Any],
) -> Response:
    parked = {"yes": False}

    def end() -> None:
        follower.close()
        release()

    def body() -> Iterator[bytes]:
        # Flask and its after_request hooks are done: the headers are final.
        if not follower.caught_up():  # entries came meanwhile: answer through gunicorn
            poll = follower.poll(0, limit)
            yield poll_body(poll.entries, poll.cursor, poll.reset).encode()
            return
        keep_alive = _keeps_alive(environ)
        head = _head(environ, stream.headers, keep_alive)
        poll = ParkedPoll(
            connection.take(),
            follower,
            head=head,
            keep_alive=keep_alive,
            addr=(environ.get("REMOTE_ADDR", ""), int(environ.get("REMOTE_PORT") or 0)),
            limit=limit,
            on_end=end,
        )
        parked["yes"] = True
        follower.attach(poll)
        parking.park(poll, time.monotonic() + timeout_seconds)
        handover.let_go()

    stream = Response(body(), mimetype="application/json", headers=JSON_HEADERS)
    stream.call_on_close(lambda: None if parked["yes"] else end())
    return stream


def _keeps_alive(environ: dict[str, Any]) -> bool:
    """Whether gunicorn would keep this connection open after the answer (and can take it back)."""
    return (
        environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
        and "close" not in environ.get("HTTP_CONNECTION", "").lower()
        and handover.can_keep_alive()
    )


def _head(environ: dict[str, Any], headers: Any, keep_alive: bool) -> bytes:
    """The response head as gunicorn writes it, up to the Date and Content-Length (per answer)."""
    lines = [
        f"{environ.get('SERVER_PROTOCOL', 'HTTP/1.1')} 200 OK",
        "Server: gunicorn",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    lines += [
        f"{name}: {value}" for name, value in headers.items() if name.lower() not in HOP_BY_HOP
    ]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


class ParkedPoll:
    """A long-poll held by the hub until its channel has news or its time is up (a hub.Sink)."""

    __slots__ = ("_sock", "_follower", "_head", "_keep_alive", "_addr", "_limit", "_on_end")
    __slots__ += ("cursor", "state")

    def __init__(
        self,
        sock: Any,
        follower: Follower,
        *,
        head: bytes,
        keep_alive: bool,
        addr: Any,
        limit: int,
        on_end: Callable[[], None],
    ) -> None:
        self._sock, self._follower, self._head = sock, follower, head
        self._keep_alive, self._addr, self._limit, self._on_end = keep_alive, addr, limit, on_end
        self.cursor = follower.cursor  # the channel moves the follower's; the answer starts here
        self.state = "parked"  # -> "ready" -> "answered"
        metrics.poll_started()

    # -- hub.Sink ----------------------------------------------------------------

    def deliver(self, entries: list[Entry]) -> None:
        # One answer per poll. Until it is written, the follower reads the
        # buffer from the poll's cursor, which keeps a budget trim
        # (buffers.py) off the entries the answer is made of.
        self._follower.cursor = self.cursor
        self._follower.detach()
        parking.ready(self)

    def detach(self) -> None:
        """The channel stopped (a reset, a shutdown): answer with what there is."""
        parking.ready(self)

    # -- called by Parking ---------------------------------------------------------

    def answer(self, bodies: dict[tuple[str, str], bytes], date: bytes) -> None:
        key = (self._follower.session_id, self.cursor)
        body = bodies.get(key)
        if body is None:
            entries = (self._follower.buffered_after(self.cursor) or [])[: self._limit]
            cursor = entries[-1].id if entries else self.cursor
            body = bodies[key] = poll_body(entries, cursor, False).encode()
        data = b"%sDate: %s\r\nContent-Length: %d\r\n\r\n%s" % (self._head, date, len(body), body)
        try:
            sent = os.write(self._sock.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return self._finish(keep=False)
        if sent == len(data):
            return self._finish(keep=self._keep_alive)
        gevent.spawn(self._flush, data[sent:])

    @property
    def session_id(self) -> str:
        return self._follower.session_id

    def close(self) -> None:
        if self.state != "answered":
            self._finish(keep=False)

    def _flush(self, rest: bytes) -> None:
        try:
            with send_watch.watch(30.0, self._follower.session_id):
                self._sock.sendall(rest)
        except OSError:
            return self._finish(keep=False)
        self._finish(keep=self._keep_alive)

    def _finish(self, *, keep: bool) -> None:
        self.state = "answered"
        metrics.poll_finished()
        if keep and handover.can_keep_alive():
            handover.hand_back(self._sock, self._addr)
        else:
            self._sock.close()
        self._on_end()


class Parking:
    """Every parked poll of this process: their timeouts, and one greenlet that answers them."""

    def __init__(self) -> None:
        self._deadlines: list[tuple[float, int, ParkedPoll]] = []
        self._order = itertools.count()
        self._ready: list[ParkedPoll] = []
        self._wake = Event()
        self._answerer: gevent.Greenlet | None = None

    def park(self, poll: ParkedPoll, deadline: float) -> None:
        heapq.heappush(self._deadlines, (deadline, next(self._order), poll))
        if self._answerer is None or self._answerer.dead:
            self._answerer = gevent.spawn(self._answer_forever)
        self._wake.set()

    def ready(self, poll: ParkedPoll) -> None:
        if poll.state == "parked":
            poll.state = "ready"
            self._ready.append(poll)
            self._wake.set()

    def _answer_forever(self) -> None:
        while True:
            self._wake.clear()
            now = time.monotonic()
            while self._deadlines and self._deadlines[0][0] <= now:
                self.ready(heapq.heappop(self._deadlines)[2])
            if self._ready:
                self._answer_ready()
                continue
            wait = self._deadlines[0][0] - now if self._deadlines else None
            self._wake.wait(wait)

    def _answer_ready(self) -> None:
        ready, self._ready = self._ready, []
        date = formatdate(usegmt=True).encode()
        for start in range(0, len(ready), ANSWER_BATCH):
            bodies: dict[tuple[str, str], bytes] = {}
            for poll in ready[start : start + ANSWER_BATCH]:
                try:
                    poll._follower.detach()
                    poll.answer(bodies, date)
                except Exception:  # never out of the answering greenlet
                    log.exception("long-poll answer failed session=%s", poll.session_id)
                    poll.close()
            priority.next_turn()  # requests in progress (prompt POSTs) go on between batches


parking = Parking()
