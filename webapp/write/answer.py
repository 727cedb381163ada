"""One attempt's answer: its text so far, and the final writes that end it.

Every final write follows API.md's "end means stored": the SQL row is
updated first (fenced by attempt, models.py), then the final event is
written (fenced in Redis, writer.py), so a client that saw `end` finds the
answer stored. Each method says whether the attempt still owned the answer:
False means a newer attempt does, and nothing was written.

Its I/O goes through the generation's writer and ledger (ledger.py), so
tests/test_generation.py runs it with recording ones.
"""

from __future__ import annotations

import logging
import time

from webapp.storage import events, models
from webapp.storage.events import INTERNAL_ERROR
from webapp.storage.jobs import Job
from webapp.write.ledger import Ledger
from webapp.write.llm import Delta, Finish, Reasoning
from webapp.write.writer import StreamWriter

# The lines of an answer's end belong to its generation's story: one logger for both.
log = logging.getLogger("webapp.write.generation")


class Answer:
    """The text and reasoning of one attempt, piece by piece, and how it ends."""

    def __init__(self, job: Job, writer: StreamWriter, ledger: Ledger) -> None:
        self.job = job
        self.writer = writer
        self.ledger = ledger
        self.parts: list[str] = []
        self.reasoning_parts: list[str] = []
        self.pieces: list[Delta | Reasoning] = []  # both kinds, in the order they streamed
        self.started_at = time.monotonic()

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def chunks(self) -> int:
        return len(self.parts)

    def add(self, piece: Delta | Reasoning) -> int:
        """Take a piece that was written; return how many of its kind there are now."""
        parts = self.reasoning_parts if type(piece) is Reasoning else self.parts
        parts.append(piece.text)
        self.pieces.append(piece)
        return len(parts)

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_parts)

    @property
    def sent(self) -> bool:
        """Whether any piece went out: after one, asking the model again would repeat it."""
        return bool(self.parts or self.reasoning_parts)

    def _texts(self) -> dict[str, object]:
        """The stored texts and their piece counts, as models.finish_answer takes them."""
        return {
            "content": self.text,
            "chunk_count": self.chunks,
            "reasoning": self.reasoning,
            "reasoning_chunk_count": len(self.reasoning_parts),
        }

    @property
    def duration_ms(self) -> int:
        return int((time.monotonic() - self.started_at) * 1000)

    def _ids(self) -> tuple[str, str]:
        return self.job.session_id, self.job.message_id

    def end(self, finish: Finish) -> bool:
        """Store the answer, then write `end`."""
        cancelled = finish.finish_reason == events.FINISH_CANCELLED
        duration_ms = self.duration_ms
        stored = self.ledger.store(
            self.job,
            status=models.CANCELLED if cancelled else models.DONE,
            **self._texts(),
            usage=finish.usage,
            model=finish.model,
            finish_reason=finish.finish_reason,
            duration_ms=duration_ms,
        )
        if not stored:
            log.warning("fenced off at the end session=%s message=%s", *self._ids())
            return False
        data = events.end_data(
            self.job.message_id,
            finish_reason=finish.finish_reason,
            usage=finish.usage,
            duration_ms=duration_ms,
            chunks=self.chunks,
            text_length=len(self.text),
            reasoning_chunks=len(self.reasoning_parts),
            reasoning_length=len(self.reasoning),
        )
        if not self.finish_stream(events.END, data):
            return False
        self.ledger.ended(
            finish_reason=finish.finish_reason,
            duration_seconds=duration_ms / 1000,
            chunks=self.chunks,
            usage=finish.usage,
        )
        log.info(
            "generation ended session=%s message=%s finish_reason=%s chunks=%d ms=%d",
            *self._ids(),
            finish.finish_reason,
            self.chunks,
            duration_ms,
        )
        return True

    def fail(self, code: str, text: str, model: str) -> bool:
        """Record the failure in SQL, then write `error`."""
        try:
            self.ledger.rollback()  # whatever failed may have left the transaction broken
            stored = self.ledger.store(
                self.job,
                status=models.FAILED,
                **self._texts(),
                model=model,
                error_code=code,
                error_message=text,
                duration_ms=self.duration_ms,
            )
        except Exception:
            log.exception("could not store the failure session=%s message=%s", *self._ids())
            stored = True  # still end the stream: a client must not wait forever
        if not stored or not self.finish_stream(
            events.ERROR, events.error_data(self.job.message_id, code, text)
        ):
            return False
        self.ledger.failed(code, self.chunks)
        return True

    def replay(self, message: models.Message) -> bool:
        """SQL holds the final answer but the stream may lack its last event: write it."""
        if message.status == models.FAILED:
            code = message.error_code or INTERNAL_ERROR
            text = message.error_message or "the generation failed"
            data = events.error_data(message.id, code, text)
            written = self.finish_stream(events.ERROR, data)
        else:
            data = events.end_data(
                message.id,
                finish_reason=message.finish_reason,
                usage=message.usage,
                duration_ms=message.duration_ms,
                chunks=message.chunk_count or 0,
                text_length=len(message.content),
                reasoning_chunks=message.reasoning_chunk_count or 0,
                reasoning_length=len(message.reasoning or ""),
            )
            written = self.finish_stream(events.END, data)
        log.info("final event replayed from SQL session=%s message=%s", *self._ids())
        return written

    def finish_stream(self, event: str, data: str) -> bool:
        """Write the final event; False when a newer attempt owns the stream."""
        if self.writer.finish(event, data).fenced:
            log.warning("final %s fenced off session=%s message=%s", event, *self._ids())
            return False
        return True
