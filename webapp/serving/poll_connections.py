"""Kept connections: once a parked poll is answered, the hub reads its connection's next request.

A poll loop asks again as soon as it is answered, on the same keep-alive
connection. Handed back to gunicorn, that next poll cost a whole request:
gunicorn's Python parser, the WSGI environ, the fast path's Response and
gunicorn's response writer, then the socket taken over again to park
(issue 25). Here the connection stays with the hub instead:

- it waits for its next request with no greenlet of its own
  (waiting_connections.py), under the limits gunicorn keeps: `keepalive`
  seconds for the first byte, then relay's header timeout for the rest
  of the head (gunicorn_worker.py); a worker greenlet reads the head with
  httptools (poll_heads.py) once bytes come;
- a poll the plan may answer goes to `Answerer`, the plan's way in that
  create_app hands over (http/stream.py, `kept_answerer`; the plan,
  http/poll_plan.py, alone decides): answered at once (`Reply`: the body
  shared by every poller at that cursor, the head as gunicorn writes it,
  poll_answers.py), or parked again on the same socket (`Hold`,
  parked_polls.py), after which this reader is back when it is answered;
- anything else goes back to gunicorn with the bytes read so far
  (handover.py, item 9), which reads it as if it had read them itself:
  another request, anything httptools refuses or that is near gunicorn's
  limits (poll_heads.py), and polls the plan needs Flask for (a SQL
  look-up, a refusal, an error), counted in
  `relay_kept_poll_handbacks_total{reason}`.

Priority (priority.py) holds as under gunicorn, and is decided once the
request is read, when what it is and what it costs are known: a poll
after one answered from its parking waits while prompts are in progress
(`wait_quiet`), a poll after one answered at once waits its turn
(`wait_turn`), and a request that is not a poll goes to gunicorn without
waiting. A poll served here is counted in
`relay_kept_polls_total` (added up and written when the workers run out
of work, or every COUNT_EVERY polls); gunicorn's access log does not see it, as it
does not see a parked poll's answer. FAST_POLL=false leaves this out:
gunicorn reads every request.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from webapp.ops import metrics
from webapp.serving import handover, poll_answers, priority
from webapp.serving.held_streams import send_watch
from webapp.serving.parked_polls import SEND_TIMEOUT_SECONDS, ParkedPoll, parking
from webapp.serving.poll_heads import (
    INCOMPLETE,
    LIMITS,
    MALFORMED,
    OTHER,
    HeadReader,
    HeadRules,
    PollHead,
)
from webapp.serving.waiting_connections import Waiting, Workers

log = logging.getLogger(__name__)

PLAN, FAILED = "plan", "failed"
REASONS = (OTHER, MALFORMED, LIMITS, PLAN, FAILED)
PROTOCOL = "HTTP/1.1"  # the only one read here (poll_heads.py)
RECV_BYTES = 65536
CLOSED = object()  # the client closed or reset the connection
# Polls counted in the metric at once at most: and whenever the workers run out of work.
COUNT_EVERY = 256


class Reply(NamedTuple):
    """The poll's answer now: the app's header lines (poll_answers.fields_of) and the body."""

    fields: bytes
    body: bytes


class Hold(NamedTuple):
    """Nothing to answer yet: park `poll` on the connection, up to `timeout_seconds`."""

    poll: ParkedPoll
    fields: bytes
    timeout_seconds: float


# A poll's head and the client's address -> its answer, its parking, or why gunicorn must read it.
Answerer = Callable[[PollHead, str], Reply | Hold | str]


@dataclass(frozen=True, slots=True)
class _Limits:
    rules: HeadRules
    idle_seconds: float  # gunicorn's keepalive: before a request's first byte
    header_seconds: float  # relay's header timeout: for the rest of its head
    # gunicorn reads every request where it puts more than the head in the
    # environ: the PROXY protocol's addresses, a SCRIPT_NAME to strip.
    reads_here: bool


class KeptReader:
    """The reader of this process's kept connections, with the plan's way in."""

    def __init__(self, answer: Answerer) -> None:
        self.answer = answer
        self._limits: _Limits | None = None
        self._workers = Workers(self._serve, self._count)
        self._waiting = Waiting(self._workers.submit, _close)
        self._served = 0  # polls served since they were last counted in the metric

    @property
    def limits(self) -> _Limits:
        if self._limits is None:  # gunicorn's worker starts after the app is made
            cfg, header_seconds = handover.worker_config()
            reads_here = cfg.proxy_protocol == "off" and not os.environ.get("SCRIPT_NAME")
            self._limits = _Limits(HeadRules.of(cfg), cfg.keepalive, header_seconds, reads_here)
        return self._limits

    def keep(self, sock: socket.socket, addr: Any, read_ahead: bytes) -> None:
        """Read the connection's next request (after its parked poll's answer)."""
        if not self.limits.reads_here:
            handover.hand_back(sock, addr, read_ahead)
            return
        self.resume(Kept(sock, addr, Waiting.watcher(sock.fileno())), read_ahead)

    def resume(self, kept: Kept, read_ahead: bytes) -> None:
        """After an answer from its parking: the connection's next request, maybe here already."""
        kept.next_request(read_ahead, at_once=False)
        if read_ahead:  # a pipelining client's next request is here already
            self._workers.submit(kept)
        else:
            self._wait(kept)

    def _wait(self, kept: Kept) -> None:
        """Until the next bytes come, within the idle or the header deadline."""
        deadline = kept.head_deadline
        if deadline is None:
            deadline = time.monotonic() + self.limits.idle_seconds
        self._waiting.watch(kept, kept.watcher, deadline)

    def _serve(self, kept: Kept) -> None:
        """In a worker: serve what came on the connection, then wait for more or let it go."""
        try:
            while self._serve_one(kept):
                if not kept.buffer:
                    self._wait(kept)
                    return
        except Exception:  # never out of the worker, never a connection left open
            log.exception("kept connection failed")
            _close(kept)

    def _serve_one(self, kept: Kept) -> bool:
        """Read and serve one request; True when the next one is read here too."""
        head = self._read(kept)
        if head is INCOMPLETE:
            self._wait(kept)
            return False
        if head is CLOSED:  # as gunicorn: close without a word
            _close(kept)
            return False
        if isinstance(head, str):
            return _hand_back(kept, head)  # other requests make way for nothing
        if kept.at_once:
            priority.lane.wait_turn()  # its loop asks again as soon as answered: prompts first
        else:
            priority.lane.wait_quiet()  # paced by news: it waits only for prompts in progress
        served = _answer(kept, head, self.answer, self.resume)
        if served is not None:
            self._served += 1
            if self._served >= COUNT_EVERY:
                self._count()
        return bool(served)

    def _count(self) -> None:
        """Add the polls served to `relay_kept_polls_total` (a file write: not one a poll)."""
        if self._served:
            metrics.kept_polls(self._served)
            self._served = 0
        parking.count_waiting()  # and those it parked

    def _read(self, kept: Kept) -> PollHead | str | object:
        """The head, once the bytes that came complete it; INCOMPLETE or CLOSED else."""
        if kept.unparsed:
            kept.unparsed = False
        else:
            try:
                data = os.read(kept.sock.fileno(), RECV_BYTES)
            except BlockingIOError:  # not readable after all: wait again
                return INCOMPLETE
            except OSError:  # the client reset
                return CLOSED
            if not data:  # the client closed, maybe half-way through a request
                return CLOSED
            kept.buffer += data
        if kept.head_deadline is None:  # the head's first bytes: the header deadline starts
            kept.head_deadline = time.monotonic() + self.limits.header_seconds
        return kept.reader.read(kept.buffer, self.limits.rules)


_reader: KeptReader | None = None


def serve_polls_with(answer: Answerer | None) -> None:
    """Read kept connections' requests here, polls answered by `answer` (None: gunicorn reads)."""
    global _reader
    _reader = KeptReader(answer) if answer is not None else None
    handover.read_next_with(_reader.keep if _reader is not None else None)
    metrics.kept_poll_handback_reasons(REASONS)


class Kept:
    """A connection the hub reads, from one parked poll's answer to its hand-back or close.

    Its watcher and head reader serve every request it reads, parked or not.
    """

    __slots__ = ("sock", "addr", "watcher", "reader", "buffer", "unparsed", "head_deadline")
    __slots__ += ("at_once",)

    def __init__(self, sock: socket.socket, addr: Any, watcher: Any) -> None:
        self.sock, self.addr, self.watcher = sock, addr, watcher
        self.reader = HeadReader()
        self.buffer = b""  # bytes of the request being read, and of those after it
        self.unparsed = False  # the buffer holds bytes the reader has not seen
        self.head_deadline: float | None = None  # from the head's first byte
        self.at_once = False  # its last poll was answered at once (else from its parking)

    def next_request(self, rest: bytes, *, at_once: bool) -> None:
        """The last request was answered: on to the next, whose bytes may be here."""
        self.buffer, self.unparsed, self.at_once = rest, bool(rest), at_once
        self.reader.reset()  # a PollHead was read: llhttp is ready for the next message
        self.head_deadline = None

    def let_go(self) -> None:
        """Its socket is gunicorn's, or closed: the watcher goes first (the file may be reused)."""
        self.watcher.close()


def _close(kept: Kept) -> None:
    kept.let_go()
    kept.sock.close()


def _answer(
    kept: Kept, head: PollHead, answer: Answerer, resume: Callable[[Kept, bytes], None]
) -> bool | None:
    """Ask the plan's way in; answer, park or hand back.

    True when the connection reads on; None when the poll was handed back.
    """
    try:
        outcome = answer(head, kept.addr[0])
    except Exception:  # the plan's way in answers FAILED itself; this is a last guard
        log.exception("kept poll failed")
        outcome = FAILED
    if isinstance(outcome, str):
        _hand_back(kept, outcome)
        return None
    rest = kept.buffer[head.size :]
    keep_alive = handover.can_keep_alive()
    if isinstance(outcome, Hold):
        _hold(kept, outcome, keep_alive, rest, resume)
        return False
    data = poll_answers.answer_at_once(outcome.fields, outcome.body, keep_alive)
    if not _send(kept.sock, data, head.session_id) or not keep_alive:
        _close(kept)
        return False
    kept.next_request(rest, at_once=True)
    return True


def _hold(
    kept: Kept, hold: Hold, keep_alive: bool, rest: bytes, resume: Callable[[Kept, bytes], None]
) -> None:
    poll = hold.poll
    try:
        head = poll_answers.head(PROTOCOL, hold.fields, keep_alive)
        poll.hold(
            kept.sock,
            kept.addr,
            head,
            keep_alive=keep_alive,
            timeout_seconds=hold.timeout_seconds,
            read_ahead=rest,
            # Answered, it comes back here with the same watcher and reader.
            then=functools.partial(resume, kept),
        )
    except Exception:
        poll.response_closed()  # never parked: it stops following, and its stream slot goes
        raise


def _send(sock: socket.socket, data: bytes, session_id: str) -> bool:
    """Write all of `data`: at once when the socket takes it, else under the send deadline."""
    try:
        sent = os.write(sock.fileno(), data)
    except BlockingIOError:
        sent = 0
    except OSError:
        return False
    if sent == len(data):
        return True
    try:
        # The id as the path gave it (printable ASCII: poll_heads.py), cut short for the log.
        with send_watch.watch(SEND_TIMEOUT_SECONDS, session_id[:80]):
            sock.sendall(data[sent:])
    except OSError:
        return False
    return True


def _hand_back(kept: Kept, reason: str) -> bool:
    metrics.kept_poll_handed_back(reason)
    log.debug("kept connection handed to gunicorn reason=%s", reason)
    kept.let_go()
    # A poll the plan gave back waited its turn already; anything else makes way for nothing.
    handover.hand_back(kept.sock, kept.addr, kept.buffer, wait_quiet=False)
    return False
