"""Parked long-polls: held by the hub until there is news, then answered on the socket itself.

A poll that finds nothing after its cursor would wait in a greenlet of its
own, and the wake-up, the read and the answer would go through Flask,
werkzeug and gunicorn once per poll: about 650 µs of web CPU each in the
fan-out bench (issue 18). Under gunicorn's gevent worker it is parked
instead, as caught-up SSE streams are held (held_streams.py): the view ends,
the hub holds the connection (a `ParkedPoll` attached to the session's
channel as a sink), and gunicorn's greenlet for it ends. When the channel
merges a new entry, or the poll's timeout passes, `Parking` answers it:

- in batches, with a turn of the event loop between two (priority.py), so
  that prompt POSTs and other requests are served between them however many
  polls are answered (they never queue behind a thousand answers);
- with one body per session and cursor in a batch: every poller at the same
  cursor gets the same bytes, built once;
- with a whole HTTP/1.1 response, as gunicorn would write it
  (poll_answers.py): its status line, the headers the app gave the
  response, Date and Content-Length; then, where relay's worker serves
  (handover.py), the connection's next request is read, by
  poll_connections.py (httptools) where the fast path is on, else by
  gunicorn (keep-alive); else the connection is closed.

A poll parks from two places: from its response's body under gunicorn
(`park`: the socket is taken over from gunicorn, with the bytes of a
pipelining client's next requests that gunicorn read already), and on a
connection whose requests the hub reads already (`hold`,
poll_connections.py).

A parked poll's life is one value, `state`, whose moves are the table
`POLL_MOVES`; any other move raises IllegalMove (STYLE.md, habit 16).
Everything this relies on from gunicorn is in handover.py (items 1, 4, 5,
8 and 9).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import gevent
from gevent.event import Event

from webapp.exceptions import IllegalMove
from webapp.ops import metrics
from webapp.read.entries import Entry, poll_body
from webapp.read.follower import Follower
from webapp.serving import handover, priority
from webapp.serving.held_streams import send_watch
from webapp.serving.poll_answers import asks_keep_alive, fields_of, head, http_date

log = logging.getLogger(__name__)

# Polls answered before the answering greenlet lets the rest of the process run.
ANSWER_BATCH = 64
# A parked poll's answer must reach its client within this, or the connection goes.
SEND_TIMEOUT_SECONDS = 30.0


class PollState(enum.Enum):
    """Where a poll that may park stands."""

    NEW = "new"  # its response exists; gunicorn has not run its body yet
    PARKED = "parked"  # the hub holds its connection: attached to the channel, with a deadline
    READY = "ready"  # news, a reset, a shutdown or its deadline came: queued for its answer
    ANSWERED = "answered"  # written, or its client was gone; the connection handed back or closed
    CLOSED = "closed"  # it never parked: gunicorn wrote its answer, or the client left first


# Every move of a parked poll's life, read top to bottom; any other raises.
POLL_MOVES: dict[PollState, frozenset[PollState]] = {
    PollState.NEW: frozenset({PollState.PARKED, PollState.CLOSED}),
    PollState.PARKED: frozenset({PollState.READY}),
    PollState.READY: frozenset({PollState.ANSWERED}),
    PollState.ANSWERED: frozenset(),
    PollState.CLOSED: frozenset(),
}


class ParkedPoll:
    """A long-poll that may be held by the hub until its channel has news (a channel.Sink)."""

    __slots__ = ("_follower", "_limit", "_on_end", "_sock", "_head", "_keep_alive", "_addr")
    __slots__ += ("_read_ahead", "_then", "cursor", "state")

    def __init__(self, follower: Follower, *, limit: int, on_end: Callable[[], None]) -> None:
        self._follower, self._limit, self._on_end = follower, limit, on_end
        self._sock: Any = None
        self._head, self._keep_alive, self._addr = b"", False, ("", 0)
        self._read_ahead = b""
        self._then: Callable[[bytes], None] | None = None
        self.cursor = follower.cursor  # the channel moves the follower's; the answer starts here
        self.state = PollState.NEW

    def move(self, to: PollState) -> None:
        """Move to `to`; IllegalMove unless POLL_MOVES allows it."""
        if to not in POLL_MOVES[self.state]:
            raise IllegalMove("parked poll", self.state.value, to.value)
        self.state = to

    # -- called from the response body (http/longpoll.py) -------------------------

    def park(
        self,
        connection: handover.Connection,
        environ: Mapping[str, Any],
        headers: Any,
        timeout_seconds: float,
    ) -> NoReturn:
        """Take the connection over from gunicorn and wait for news; ends the body (item 4).

        `headers`: the response's, final once gunicorn runs its body.
        """
        # Kept open only where gunicorn would, and can take the connection back.
        keep_alive = asks_keep_alive(environ) and handover.can_keep_alive()
        protocol = environ.get("SERVER_PROTOCOL", "HTTP/1.1")
        self.hold(
            connection.take(),
            (environ.get("REMOTE_ADDR", ""), int(environ.get("REMOTE_PORT") or 0)),
            head(protocol, fields_of(headers.items()), keep_alive),
            keep_alive=keep_alive,
            timeout_seconds=timeout_seconds,
            # A pipelining client's next requests, which gunicorn read already (item 9).
            read_ahead=handover.read_ahead(),
        )
        parking.count_waiting()
        handover.let_go()

    def hold(
        self,
        sock: socket.socket,
        addr: Any,
        head: bytes,
        *,
        keep_alive: bool,
        timeout_seconds: float,
        read_ahead: bytes = b"",
        then: Callable[[bytes], None] | None = None,
    ) -> None:
        """Hold the connection (the hub's now) until news or the deadline.

        `head`: the answer's, up to Date and Content-Length (poll_answers.head).
        `read_ahead`: bytes read past this request, for the next one.
        `then`: what reads the next request, given `read_ahead`, once the
        answer is written and the connection stays open; by default
        handover.next_request.
        """
        self._sock, self._addr, self._head = sock, addr, head
        self._keep_alive, self._read_ahead, self._then = keep_alive, read_ahead, then
        self.cursor = self._follower.cursor
        self.move(PollState.PARKED)
        self._follower.attach(self)
        parking.park(self, time.monotonic() + timeout_seconds)

    def response_closed(self) -> None:
        """gunicorn closed the response: unless it parked, the poll is over."""
        if self.state is PollState.NEW:
            self.move(PollState.CLOSED)
            self._on_end()

    # -- channel.Sink ---------------------------------------------------------------

    def deliver(self, entries: list[Entry]) -> None:
        # One answer per poll. Until it is written, the follower reads the
        # buffer from the poll's cursor, which keeps a budget trim
        # (buffers.py) off the entries the answer is made of.
        self._follower.cursor = self.cursor
        self._follower.detach()
        self.wake()

    def detach(self) -> None:
        """The channel stopped (a reset, a shutdown): answer with what there is."""
        self.wake()

    # -- called by Parking ------------------------------------------------------------

    def wake(self) -> None:
        """News, a reset, a shutdown or the deadline: queue the answer, once."""
        if self.state is PollState.PARKED:
            self.move(PollState.READY)
            parking.queue(self)

    def answer(self, bodies: dict[tuple[str, str], bytes], date: bytes) -> None:
        """Write the answer: `bodies` holds the batch's, one per session and cursor."""
        self._follower.detach()  # woken by its deadline, it is still attached
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

    def close(self) -> None:
        """Its answer failed: close the connection, once."""
        if self.state is PollState.READY:
            self._finish(keep=False)

    @property
    def session_id(self) -> str:
        return self._follower.session_id

    def _flush(self, rest: bytes) -> None:
        try:
            with send_watch.watch(SEND_TIMEOUT_SECONDS, self._follower.session_id):
                self._sock.sendall(rest)
        except OSError:
            self._finish(keep=False)
        else:
            self._finish(keep=self._keep_alive)
        parking.count_waiting()

    def _finish(self, *, keep: bool) -> None:
        self.move(PollState.ANSWERED)
        parking.answered()
        if keep and handover.can_keep_alive():
            if self._then is not None:
                self._then(self._read_ahead)
            else:
                handover.next_request(self._sock, self._addr, self._read_ahead)
        else:
            self._sock.close()
        self._on_end()


class Parking:
    """Every parked poll of this process: their deadlines, and one greenlet that answers them."""

    def __init__(self) -> None:
        self._deadlines: list[tuple[float, int, ParkedPoll]] = []
        self._order = itertools.count()
        self._ready: list[ParkedPoll] = []
        self._wake = Event()
        self._answerer: gevent.Greenlet | None = None
        # When the answerer wakes by itself next; -inf while it runs (it looks before it sleeps).
        self._sleeping_until = -math.inf
        # Polls parked less polls answered, not yet in relay_long_polls_waiting.
        self._waiting_change = 0

    def park(self, poll: ParkedPoll, deadline: float) -> None:
        self._waiting_change += 1
        heapq.heappush(self._deadlines, (deadline, next(self._order), poll))
        if self._answerer is None or self._answerer.dead:
            self._answerer = gevent.spawn(self._answer_forever)
        # Woken only for a deadline before the one it sleeps until: most polls
        # park with the same timeout, after the polls parked before them.
        if deadline < self._sleeping_until:
            self._wake.set()

    def answered(self) -> None:
        self._waiting_change -= 1

    def count_waiting(self) -> None:
        """Write the parked polls' count to relay_long_polls_waiting.

        Once a batch, not once a poll: a gauge's write takes a lock and
        writes its file (prometheus multiprocess mode), 2-5 µs a poll each
        way under load. Called after each batch of answers, by the kept
        connections' workers as they run out of work, and after a poll
        parks from its response.
        """
        if self._waiting_change:
            metrics.polls_waiting_changed(self._waiting_change)
            self._waiting_change = 0

    def queue(self, poll: ParkedPoll) -> None:
        """A woken poll, to be answered in the next batch."""
        self._ready.append(poll)
        self._wake.set()

    def _answer_forever(self) -> None:
        while True:
            self._wake.clear()
            self._sleeping_until = -math.inf
            now = time.monotonic()
            while self._deadlines and self._deadlines[0][0] <= now:
                heapq.heappop(self._deadlines)[2].wake()  # answered since: nothing to do
            if self._ready:
                self._answer_ready()
                continue
            wait = self._deadlines[0][0] - now if self._deadlines else None
            self._sleeping_until = math.inf if wait is None else self._deadlines[0][0]
            self._wake.wait(wait)

    def _answer_ready(self) -> None:
        ready, self._ready = self._ready, []
        date = http_date()
        for start in range(0, len(ready), ANSWER_BATCH):
            bodies: dict[tuple[str, str], bytes] = {}
            for poll in ready[start : start + ANSWER_BATCH]:
                try:
                    poll.answer(bodies, date)
                except Exception:  # never out of the answering greenlet
                    log.exception("long-poll answer failed session=%s", poll.session_id)
                    poll.close()
            self.count_waiting()
            priority.next_turn()  # requests in progress (prompt POSTs) go on between batches


parking = Parking()
