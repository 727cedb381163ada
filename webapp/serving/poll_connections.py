"""Kept connections: once a parked poll is answered, the hub reads its connection's next request.

A poll loop asks again as soon as it is answered, on the same keep-alive
connection. Handed back to gunicorn, that next poll cost a whole request:
gunicorn's Python parser, the WSGI environ, the fast path's Response and
gunicorn's response writer, then the socket taken over again to park
(issue 25). Here the connection stays with the hub instead:

- its next request head is read with httptools (poll_heads.py), under the
  limits gunicorn keeps: `keepalive` seconds for the first byte, then
  relay's header timeout for the rest of the head (gunicorn_worker.py);
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
`relay_kept_polls_total`; gunicorn's access log does not see it, as it
does not see a parked poll's answer. FAST_POLL=false leaves this out:
gunicorn reads every request.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import gevent

from webapp.ops import metrics
from webapp.serving import handover, poll_answers, priority
from webapp.serving.held_streams import send_watch
from webapp.serving.parked_polls import SEND_TIMEOUT_SECONDS, ParkedPoll
from webapp.serving.poll_heads import (
    INCOMPLETE,
    LIMITS,
    MALFORMED,
    OTHER,
    HeadReader,
    HeadRules,
    PollHead,
)

log = logging.getLogger(__name__)

PLAN, FAILED = "plan", "failed"
REASONS = (OTHER, MALFORMED, LIMITS, PLAN, FAILED)
PROTOCOL = "HTTP/1.1"  # the only one read here (poll_heads.py)
RECV_BYTES = 65536


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


class _Reader:
    """The reader of kept connections in this process, with the plan's way in."""

    def __init__(self, answer: Answerer) -> None:
        self.answer = answer
        self._limits: _Limits | None = None

    @property
    def limits(self) -> _Limits:
        if self._limits is None:  # gunicorn's worker starts after the app is made
            cfg, header_seconds = handover.worker_config()
            reads_here = cfg.proxy_protocol == "off" and not os.environ.get("SCRIPT_NAME")
            self._limits = _Limits(HeadRules.of(cfg), cfg.keepalive, header_seconds, reads_here)
        return self._limits


_reader: _Reader | None = None


def serve_polls_with(answer: Answerer | None) -> None:
    """Read kept connections' requests here, polls answered by `answer` (None: gunicorn reads)."""
    global _reader
    _reader = _Reader(answer) if answer is not None else None
    handover.read_next_with(keep if answer is not None else None)
    metrics.kept_poll_handback_reasons(REASONS)


def keep(sock: socket.socket, addr: Any, read_ahead: bytes) -> None:
    """Read the next request of a connection whose poll was answered (handover.next_request)."""
    if _reader is None or not _reader.limits.reads_here:
        handover.hand_back(sock, addr, read_ahead)
        return
    gevent.spawn(_serve, _reader, Kept(sock, addr, read_ahead))


class Kept:
    """A connection the hub reads: its socket, peer, and bytes read past the last request."""

    __slots__ = ("sock", "addr", "buffer")

    def __init__(self, sock: socket.socket, addr: Any, buffer: bytes) -> None:
        self.sock, self.addr, self.buffer = sock, addr, buffer


def _serve(reader: _Reader, kept: Kept) -> None:
    at_once = False  # whether the last poll was answered at once (else: after it parked)
    try:
        while _serve_one(reader, kept, at_once):
            at_once = True
    except Exception:  # never out of the greenlet, never a connection left open
        log.exception("kept connection failed")
        kept.sock.close()


def _serve_one(reader: _Reader, kept: Kept, at_once: bool) -> bool:
    """Read and serve one request; True when the next one is read here too."""
    head = _read_head(reader.limits, kept)
    if head is None:  # closed, or a deadline passed: as gunicorn, close without a word
        kept.sock.close()
        return False
    if isinstance(head, str):
        return _hand_back(kept, head)  # other requests make way for nothing
    if at_once:
        priority.lane.wait_turn()  # its loop asks again as soon as answered: prompts first
    else:
        priority.lane.wait_quiet()  # paced by news: it waits only for prompts in progress
    try:
        answer = reader.answer(head, kept.addr[0])
    except Exception:  # the plan's way in answers FAILED itself; this is a last guard
        log.exception("kept poll failed")
        answer = FAILED
    if isinstance(answer, str):
        return _hand_back(kept, answer)
    metrics.kept_poll()
    rest = kept.buffer[head.size :]
    keep_alive = handover.can_keep_alive()
    if isinstance(answer, Hold):
        _hold(kept, answer, keep_alive, rest)
        return False
    data = poll_answers.answer_at_once(answer.fields, answer.body, keep_alive)
    if not _send(kept.sock, data, head.session_id) or not keep_alive:
        kept.sock.close()
        return False
    kept.buffer = rest
    return True


def _hold(kept: Kept, hold: Hold, keep_alive: bool, rest: bytes) -> None:
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
        )
    except Exception:
        poll.response_closed()  # never parked: it stops following, and its stream slot goes
        raise


def _read_head(limits: _Limits, kept: Kept) -> PollHead | str | None:
    """The next request's head: a poll, a reason to hand back, or None when the client is gone."""
    reader = HeadReader()
    deadline = None  # the header deadline starts with the head's first byte
    sock = kept.sock
    try:
        while True:
            if kept.buffer:
                if deadline is None:
                    deadline = time.monotonic() + limits.header_seconds
                head = reader.read(kept.buffer, limits.rules)
                if head is not INCOMPLETE:
                    return head
            timeout = limits.idle_seconds if deadline is None else deadline - time.monotonic()
            if timeout <= 0:
                return None
            sock.settimeout(timeout)
            try:
                data = sock.recv(RECV_BYTES)
            except OSError:  # a deadline (TimeoutError), or the client reset
                return None
            if not data:  # the client closed, maybe half-way through a request
                return None
            kept.buffer += data
    finally:
        sock.settimeout(None)  # writes are bounded by the send deadline (send_watch)


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
    # A poll the plan gave back waited its turn already; anything else makes way for nothing.
    handover.hand_back(kept.sock, kept.addr, kept.buffer, wait_quiet=False)
    return False
