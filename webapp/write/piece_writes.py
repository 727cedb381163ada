"""A step's text and reasoning, written with one write in flight: what comes meanwhile goes out as one.

API.md's `chunk` is "the next piece of the answer", of any length, so the
pieces a model sends while the previous write is on its way to Redis are
joined into one event, written as soon as that write's reply comes:

- the first piece of a burst is never held back: with no write in flight
  it is written at once, and the generation yields so the batcher sends it
  before the rest of the burst is read;
- a run of pieces of one kind makes one event; a `reasoning` piece between
  chunks ends the run, so the order of the kinds is kept;
- one write in flight per answer, as before: a retried write (writer.py)
  is recognised by its sequence number only while the writes of an answer
  reach Redis in order.

A paced model (pieces further apart than a write's round trip) gets one
event a piece, as before; a fast one, or a burst (a proxy that buffered, a
stall that ended) gets a few events in place of hundreds: one write, one
notice and one delivery per client each, instead of one a piece
(docs/performance.md, issue 25).

The next write goes out from the reply's callback, in gevent's hub, so a
piece waits for no read of the model. What can block stays in the
generation's greenlet: a write that failed is retried there (with backoff,
writer.py), the first-token metric is recorded there, and a fenced or
cancelled reply is raised there, at the next piece or when the step's
pieces are flushed. With WORKER_JOIN_PIECES off, a writer without a
batcher (tests' recording one) or a cached answer (`join=False`: it
streams again as it first streamed), each piece is written as it comes,
its reply awaited.
"""

from __future__ import annotations

import time
from typing import Any

import gevent

from webapp.exceptions import Cancelled
from webapp.storage import events
from webapp.write.attempt import Attempt
from webapp.write.llm import Delta, Reasoning
from webapp.write.writer import Written

# While a burst is read, yield this often: other answers and the replies go on meanwhile.
YIELD_EVERY = 32


class PieceWrites:
    """Writes one step's pieces (module docstring)."""

    def __init__(self, attempt: Attempt, number: int, *, join: bool = True) -> None:
        self.attempt = attempt
        self.number = number
        self.pipelined = join and bool(getattr(attempt.writer, "joins_pieces", False))
        self._runs: list[tuple[type, list[str]]] = []  # waiting pieces: runs of one kind
        self._flying: Any = None  # the reply of the write in flight (a gevent AsyncResult)
        self._outcome: BaseException | None = None  # Fenced or Cancelled, as a reply said
        # The first piece of a kind, sent: (kind, seconds since the prompt) for the metric.
        self._firsts: list[tuple[type, float]] = []
        self._closed = False
        self._merged = 0

    def put(self, piece: Delta | Reasoning) -> None:
        """Write `piece` now, or with the next write if one is in flight."""
        if not self.pipelined:
            self._write_now(piece)
            return
        self._check()
        kind = type(piece)
        if self._flying is None:  # and so nothing waits: see _read
            self._submit(kind, piece.text)
            gevent.sleep(0)  # the batcher sends it before the rest of a burst is read
            self._merged = 0
            return
        runs = self._runs
        if runs and runs[-1][0] is kind:
            runs[-1][1].append(piece.text)
        else:
            runs.append((kind, [piece.text]))
        self._merged += 1
        if self._merged >= YIELD_EVERY:
            self._merged = 0
            gevent.sleep(0)

    def flush(self) -> None:
        """Write what waits and read every reply: Fenced or Cancelled as a reply says."""
        while True:
            self._check()
            if self._flying is not None:
                self._flying.wait()
            elif self._runs:
                self._submit_waiting()
            else:
                return

    def close(self) -> None:
        """Write nothing more; the write in flight is read by the writer's next write."""
        self._closed = True
        self._runs = []

    # -- the writes ------------------------------------------------------------

    def _data(self, kind: type, text: str) -> tuple[str, str]:
        message_id = self.attempt.job.message_id
        if kind is Reasoning:
            return events.REASONING, events.reasoning_data(message_id, text, self.number)
        return events.CHUNK, events.chunk_data(message_id, text, self.number)

    def _write_now(self, piece: Delta | Reasoning) -> None:
        """One write for the piece, its reply awaited (a writer without a batcher)."""
        attempt = self.attempt
        written = attempt.writer.append(*self._data(type(piece), piece.text))
        if written.fenced:
            raise attempt.fenced("mid-answer")
        if attempt.answer.add(piece):
            waited = time.time() - attempt.job.enqueued_at
            attempt.ledger.first_token(waited, reasoning=type(piece) is Reasoning)
        if written.cancel_requested:
            raise Cancelled()

    def _submit(self, kind: type, text: str) -> None:
        """Queue the write of one event now; its reply comes to `_on_reply`."""
        attempt = self.attempt
        reply = attempt.writer.send_now(*self._data(kind, text))
        self._flying = reply
        if attempt.answer.add(kind(text)):  # recorded in the greenlet: it is a round trip
            self._firsts.append((kind, time.time() - attempt.job.enqueued_at))
        reply.rawlink(self._on_reply)

    def _submit_waiting(self) -> None:
        kind, texts = self._runs.pop(0)
        self._submit(kind, "".join(texts))

    def _on_reply(self, reply: Any) -> None:
        """In the hub: read a reply that came, and send what waits (nothing that blocks)."""
        if reply is self._flying and not self._closed and reply.successful():
            self._read()

    def _read(self) -> None:
        """The reply of the write in flight, which came (retried if it failed); then what waits."""
        written = self.attempt.writer.sent_written()
        self._flying = None
        self._outcome = self._verdict(written)
        if self._outcome is None and self._runs and not self._closed:
            self._submit_waiting()

    def _verdict(self, written: Written) -> BaseException | None:
        if written.fenced:
            return self.attempt.fenced("mid-answer")
        return Cancelled() if written.cancel_requested else None

    def _check(self) -> None:
        """In the generation's greenlet: what the hub could not do, then raise what a reply said."""
        if self._flying is not None and self._flying.ready():
            self._read()  # a failed write is retried here, with backoff (writer.py)
        while self._firsts:
            kind, waited = self._firsts.pop(0)
            self.attempt.ledger.first_token(waited, reasoning=kind is Reasoning)
        if self._outcome is not None:
            outcome, self._outcome = self._outcome, None
            raise outcome
