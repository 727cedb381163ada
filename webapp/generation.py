"""One job: model deltas -> session stream events -> the stored answer in SQL.

A generation always ends in a final state, in the stream and in SQL: `end`
(finish_reason stop, length or cancelled) or `error`. The `finally` of
`run_generation` makes sure of it. The order of the last step is what makes
API.md's "end means stored" true: the SQL row is committed first, then the
`end` event is written, so a client that saw `end` finds the answer stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import redis
from flask import Flask

from . import events, models
from .extensions import db, redis_store
from .jobs import Job
from .llm import Delta, Finish, Model, ModelError
from .models import Message
from .writer import StreamWriter

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"


@dataclass
class Outcome:
    """What a generation produced so far."""

    started_at: float = field(default_factory=time.monotonic)
    parts: list[str] = field(default_factory=list)
    chunks: int = 0

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def duration_ms(self) -> int:
        return int((time.monotonic() - self.started_at) * 1000)


def build_prompt(
    history: list[Message], system_prompt: str, budget_chars: int
) -> list[dict[str, str]]:
    """The conversation the model sees: system prompt, earlier turns, new prompt.

    Earlier turns are dropped oldest-first until the whole fits the budget;
    the system prompt and the newest prompt are always kept. Assistant turns
    that failed or are still running say nothing worth repeating.
    """
    turns = [
        {"role": m.role, "content": m.content}
        for m in history
        if m.role == models.USER or (m.status in models.FINAL_STATUSES and m.content)
    ]
    newest, earlier = turns[-1:], turns[:-1]
    used = len(system_prompt) + sum(len(t["content"]) for t in newest)
    kept: list[dict[str, str]] = []
    for turn in reversed(earlier):
        used += len(turn["content"])
        if used > budget_chars:
            break
        kept.append(turn)
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return system + kept[::-1] + newest


class Generation:
    """Runs one job to its final state."""

    def __init__(self, app: Flask, model: Model, job: Job) -> None:
        self.app = app
        self.model = model
        self.job = job
        self.settings: Mapping[str, Any] = app.config
        self.client: redis.Redis = redis_store.client_for(app)
        self.writer = StreamWriter(
            self.client,
            job.session_id,
            job.message_id,
            job.attempt,
            stream_ttl_seconds=self.settings["STREAM_TTL_SECONDS"],
            maxlen=self.settings["STREAM_MAXLEN"],
        )
        self.outcome = Outcome()
        self.ended = False

    def _ids(self) -> tuple[str, str]:
        return self.job.session_id, self.job.message_id

    def run(self) -> None:
        message = models.find_message(self.job.session_id, self.job.message_id)
        if message is None or message.status in models.FINAL_STATUSES:
            log.warning("job skipped, message missing or final session=%s message=%s", *self._ids())
            return
        try:
            self._generate(message)
        except ModelError as exc:
            log.warning("generation failed session=%s message=%s code=%s: %s",
                        *self._ids(), exc.code, exc.message)
            self._fail(message, exc.code, exc.message)
        except Exception:
            log.exception("generation crashed session=%s message=%s", *self._ids())
            self._fail(message, INTERNAL_ERROR, "the generation failed unexpectedly")
        finally:
            if not self.ended:
                self._fail(message, INTERNAL_ERROR, "the generation stopped unexpectedly")

    def _generate(self, message: Message) -> None:
        history = [m for m in models.conversation(self.job.session_id) if m.seq < message.seq]
        prompt = build_prompt(
            history, self.settings["SYSTEM_PROMPT"], self.settings["CONTEXT_BUDGET_CHARS"]
        )
        start = {"message_id": message.id, "model": self.model.name,
                 "attempt": self.job.attempt, "cached": False}
        written = self.writer.append(events.START, events.dumps(start))
        if written.fenced:
            self.ended = True  # another attempt owns this message now
            log.warning("fenced off at start session=%s message=%s", *self._ids())
            return
        log.info("generation started session=%s message=%s attempt=%d",
                 *self._ids(), self.job.attempt)
        message.status, message.model = models.STREAMING, self.model.name
        db.session.commit()
        if written.cancel_requested:
            self._end(message, Finish(self.model.name, "cancelled", None))
            return
        for piece in self.model.stream(prompt):
            if isinstance(piece, Finish):
                self._end(message, piece)
                return
            if not self._chunk(message, piece):
                return
        raise ModelError("upstream_error", "the model stream ended without finishing")

    def _chunk(self, message: Message, delta: Delta) -> bool:
        """Append one delta; False when the generation must stop writing."""
        data = events.dumps({"message_id": self.job.message_id, "text": delta.text})
        written = self.writer.append(events.CHUNK, data)
        if written.fenced:
            self.ended = True
            log.warning("fenced off mid-answer session=%s message=%s", *self._ids())
            return False
        self.outcome.parts.append(delta.text)
        self.outcome.chunks += 1
        if written.cancel_requested:
            self._end(message, Finish(self.model.name, "cancelled", None))
            return False
        return True

    def _end(self, message: Message, finish: Finish) -> None:
        """Store the answer, then write `end`: a client that saw `end` finds it stored."""
        text = self.outcome.text
        message.content = text
        message.status = models.CANCELLED if finish.finish_reason == "cancelled" else models.DONE
        message.model = finish.model
        message.finish_reason = finish.finish_reason
        message.usage = finish.usage
        message.duration_ms = self.outcome.duration_ms
        message.finished_at = models.utcnow()
        db.session.commit()
        data = {
            "message_id": message.id,
            "finish_reason": finish.finish_reason,
            "usage": finish.usage,
            "duration_ms": message.duration_ms,
            "chunks": self.outcome.chunks,
            "text_length": len(text),
        }
        self.writer.finish(events.END, events.dumps(data))
        self.ended = True
        log.info("generation ended session=%s message=%s finish_reason=%s chunks=%d ms=%d",
                 *self._ids(), finish.finish_reason, self.outcome.chunks, message.duration_ms)

    def _fail(self, message: Message, code: str, text: str) -> None:
        """Record the failure in SQL, then end the stream with `error`."""
        if self.ended:
            return
        self.ended = True
        try:
            db.session.rollback()
            message.status = models.FAILED
            message.content = self.outcome.text
            message.error_code, message.error_message = code, text
            message.duration_ms = self.outcome.duration_ms
            message.finished_at = models.utcnow()
            db.session.commit()
        except Exception:
            log.exception("could not store the failure session=%s message=%s", *self._ids())
        data = {"message_id": message.id, "error": {"code": code, "message": text}}
        self.writer.finish(events.ERROR, events.dumps(data))


def run_generation(app: Flask, model: Model, job: Job) -> None:
    """Run one job inside its own app context (its own SQL session)."""
    with app.app_context():
        try:
            Generation(app, model, job).run()
        finally:
            db.session.remove()
