"""One attempt's answer: its steps so far, and the writes that end it (or pause it).

The answer is every step a client following this attempt holds (API.md,
Tools): the finished steps before `from_step`, as earlier attempts recorded
them, then the steps this attempt writes, piece by piece. Its texts, parts
and the counts `end` carries are all made from those steps, the one place
that holds them, when the answer ends or pauses: nothing but a list append
happens per piece.

Every final write follows API.md's "end means stored": the SQL row is
updated first (fenced by attempt, models.py), then the final event is
written (fenced in Redis, writer.py), so a client that saw `end` finds the
answer stored. Each method says whether the attempt still owned the answer:
False means a newer attempt does, and nothing was written.

Its I/O goes through the generation's writer and ledger (ledger.py), so
tests/test_generation.py runs it with recording ones.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from webapp.storage import events, models
from webapp.storage.events import INTERNAL_ERROR
from webapp.storage.jobs import Job
from webapp.storage.parts import Parts
from webapp.write.ledger import Ledger
from webapp.write.llm import Delta, Finish, Reasoning
from webapp.write.steps import Step
from webapp.write.writer import StreamWriter

# The lines of an answer's end belong to its generation's story: one logger for both.
log = logging.getLogger("webapp.write.generation")


class Answer:
    """The steps of one answer as this attempt holds them, and how it ends."""

    def __init__(self, job: Job, writer: StreamWriter, ledger: Ledger) -> None:
        self.job = job
        self.writer = writer
        self.ledger = ledger
        self.steps: list[Step] = []  # the kept steps, then this attempt's, in order
        self.current: Step | None = None  # the step this attempt writes now
        self.written = 0  # pieces this attempt wrote: the worker's cancel poll reads it
        self._firsts: set[type] = set()  # the kinds of piece this attempt wrote one of
        self.started_at = time.monotonic()

    def keep(self, steps: Sequence[Step]) -> None:
        """The finished steps before `from_step`: a client keeps them, so they count as written."""
        self.steps.extend(steps)

    def begin(self, step: Step) -> None:
        """This attempt writes `step` now (asked of the model, or sent again as recorded)."""
        self.steps.append(step)
        self.current = step

    def add(self, piece: Delta | Reasoning) -> bool:
        """Take a piece of the current step that was written; True if the first of its kind."""
        self.current.pieces.append(piece)  # type: ignore[union-attr]
        self.written += 1
        kind = type(piece)
        if kind in self._firsts:
            return False
        self._firsts.add(kind)
        return True

    @property
    def sent(self) -> bool:
        """Whether the current step sent a piece: after one, asking the model again repeats it."""
        return self.current is not None and bool(self.current.pieces)

    @property
    def duration_ms(self) -> int:
        return int((time.monotonic() - self.started_at) * 1000)

    def parts(self) -> Parts:
        parts = Parts()
        for step in self.steps:
            step.add_parts(parts, self.job.message_id)
        return parts

    def usage(self) -> dict[str, int] | None:
        """The tokens of every step's model call, added up; None when no step reported any."""
        reported = [step.finish.usage for step in self.steps if step.finish and step.finish.usage]
        if len(reported) <= 1:
            return reported[0] if reported else None
        return {name: sum(usage.get(name, 0) for usage in reported) for name in reported[0]}

    def _stored(self) -> tuple[dict[str, Any], dict[str, int]]:
        """The fields SQL stores of the answer so far, and the counts `end` carries."""
        parts = self.parts()
        content, reasoning = parts.content, parts.reasoning
        pieces = [piece for step in self.steps for piece in step.pieces]
        chunks = sum(1 for piece in pieces if type(piece) is Delta)
        # An answer of one step whose parts its texts give (every answer without
        # tools, as they were stored before) stores no parts: the texts stand in.
        plain = parts.items == Parts.of_texts(content, reasoning).items
        fields = {
            "content": content,
            "chunk_count": chunks,
            "reasoning": reasoning,
            "reasoning_chunk_count": len(pieces) - chunks,
            "parts": None if plain else json.dumps(parts.items, ensure_ascii=False),
        }
        counts = {
            "chunks": chunks,
            "text_length": len(content),
            "reasoning_chunks": len(pieces) - chunks,
            "reasoning_length": len(reasoning),
            "steps": parts.steps,
            "tool_calls": len(parts.tools()),
        }
        return fields, counts

    def _ids(self) -> tuple[str, str]:
        return self.job.session_id, self.job.message_id

    def end(self, finish: Finish) -> bool:
        """Store the answer, then write `end`."""
        cancelled = finish.finish_reason == events.FINISH_CANCELLED
        duration_ms = self.duration_ms
        fields, counts = self._stored()
        stored = self.ledger.store(
            self.job,
            status=models.CANCELLED if cancelled else models.DONE,
            **fields,
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
            **counts,
        )
        if not self.finish_stream(events.END, data):
            return False
        self.ledger.ended(
            finish_reason=finish.finish_reason,
            duration_seconds=duration_ms / 1000,
            chunks=counts["chunks"],
            usage=finish.usage,
        )
        log.info(
            "generation ended session=%s message=%s finish_reason=%s chunks=%d steps=%d "
            "tool_calls=%d ms=%d",
            *self._ids(),
            finish.finish_reason,
            counts["chunks"],
            counts["steps"],
            counts["tool_calls"],
            duration_ms,
        )
        return True

    def pause(self, model: str) -> bool:
        """Store the answer so far as `waiting` (API.md, Tools); False if fenced off."""
        fields, _ = self._stored()
        return self.ledger.pause(self.job, **fields, model=model)

    def fail(self, code: str, text: str, model: str) -> bool:
        """Record the failure in SQL, then write `error`."""
        chunks = 0
        try:
            self.ledger.rollback()  # whatever failed may have left the transaction broken
            fields, counts = self._stored()
            chunks = counts["chunks"]
            stored = self.ledger.store(
                self.job,
                status=models.FAILED,
                **fields,
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
        self.ledger.failed(code, chunks)
        return True

    def replay(self, message: models.Message) -> bool:
        """SQL holds the final answer but the stream may lack its last event: write it."""
        if message.status == models.FAILED:
            code = message.error_code or INTERNAL_ERROR
            text = message.error_message or "the generation failed"
            data = events.error_data(message.id, code, text)
            written = self.finish_stream(events.ERROR, data)
        else:
            parts = message.parts_list()
            data = events.end_data(
                message.id,
                finish_reason=message.finish_reason,
                usage=message.usage,
                duration_ms=message.duration_ms,
                chunks=message.chunk_count or 0,
                text_length=len(message.content),
                reasoning_chunks=message.reasoning_chunk_count or 0,
                reasoning_length=len(message.reasoning or ""),
                steps=parts.steps,
                tool_calls=len(parts.tools()),
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
