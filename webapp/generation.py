"""One job: model deltas -> session stream events -> the stored answer in SQL.

A generation always ends in a final state, in the stream and in SQL: `end`
(finish_reason stop, length or cancelled) or `error`. The order of the last
step is what makes API.md's "end means stored" true: the SQL row is updated
first, then the `end` event is written, so a client that saw `end` finds the
answer stored.

Several attempts may run for one message when a worker is lost (jobs.py).
Each attempt is fenced twice: in Redis (writer.py) and in SQL, where the
answer row is updated only while `messages.attempt` is this attempt's number
and the row is not final yet. So whatever happens, one message has one
answer, written once.

Interruptions come from the worker, raised into the generation's greenlet:

    Interrupt (BaseException, so no `except Exception` swallows it)
     ├── Cancelled     a cancel was requested: end with finish_reason "cancelled"
     └── HandedBack    the worker is shutting down and returns the job to the
                       queue: write nothing more, the next attempt takes over
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Flask
from sqlalchemy import update

from . import events, jobs, metrics, models
from .cache import AnswerCache, CachedAnswer, cache_key
from .exceptions import Cancelled, HandedBack, ModelError
from .extensions import db, redis_store
from .jobs import Job
from .llm import Delta, Finish, Model, Piece
from .models import Message
from .writer import StreamWriter, WriteBatcher

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"
WORKER_LOST = "worker_lost"
CANCELLED = "cancelled"

MODEL_RETRIES = 3
MODEL_BACKOFF_SECONDS = (0.5, 1.0, 2.0)
MODEL_RETRY_AFTER_MAX_SECONDS = 10.0


@dataclass
class Outcome:
    """What a generation produced so far."""

    started_at: float = field(default_factory=time.monotonic)
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def chunks(self) -> int:
        return len(self.parts)

    @property
    def duration_ms(self) -> int:
        return int((time.monotonic() - self.started_at) * 1000)


def build_prompt(
    history: Sequence[models.Turn], system_prompt: str, budget_chars: int
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


def end_data(message: Message) -> dict[str, Any]:
    """The `end` event of a stored, finished answer."""
    return {
        "message_id": message.id,
        "finish_reason": message.finish_reason,
        "usage": message.usage,
        "duration_ms": message.duration_ms,
        "chunks": message.chunk_count or 0,
        "text_length": len(message.content),
    }


def error_data(message_id: str, code: str, text: str) -> dict[str, Any]:
    return {"message_id": message_id, "error": {"code": code, "message": text}}


class Generation:
    """Runs one attempt of one job to its final state."""

    def __init__(
        self, app: Flask, model: Model, job: Job, batcher: WriteBatcher | None = None
    ) -> None:
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
            batcher=batcher,
        )
        self.outcome = Outcome()
        ttl = self.settings["ANSWER_CACHE_TTL_SECONDS"]
        self.cache = AnswerCache(self.client, ttl) if ttl > 0 else None
        self.cache_key: str | None = None
        self.from_cache = False
        self.ended = False
        self.handed_back = False
        # True only while waiting on the model: the one place a cancel must interrupt.
        self.waiting_on_model = False

    def _ids(self) -> tuple[str, str]:
        return self.job.session_id, self.job.message_id

    # -- the run -----------------------------------------------------------

    def run(self) -> None:
        if not self._begin():
            log.info(
                "job stale, skipped session=%s message=%s attempt=%d",
                *self._ids(),
                self.job.attempt,
            )
            return
        try:
            history = self._claim()
            if history is not None:
                self._generate(history)
        except HandedBack:
            self.ended = self.handed_back = True  # write nothing more: the next attempt takes over
            log.info("generation handed back session=%s message=%s", *self._ids())
        except Cancelled:
            self._end(Finish(self.model.name, CANCELLED, None))
        except ModelError as exc:
            log.warning(
                "generation failed session=%s message=%s code=%s: %s",
                *self._ids(),
                exc.code,
                exc.message,
            )
            self.fail(exc.code, exc.message)
        except Exception:
            log.exception("generation crashed session=%s message=%s", *self._ids())
            self.fail(INTERNAL_ERROR, "the generation failed unexpectedly")
        finally:
            if not self.ended:
                self.fail(INTERNAL_ERROR, "the generation stopped unexpectedly")

    def _begin(self) -> bool:
        """Take the session's stream over for this attempt; False if the job is stale.

        The first attempt costs no round trip: the web's claim already wrote
        attempt 1 into `active`, with no writes counted yet. Should it be
        stale after all, its first write is fenced off instead.
        """
        return self.job.attempt == jobs.FIRST_ATTEMPT or jobs.begin(self.client, self.job)

    def _claim(self) -> list[models.Turn] | None:
        """Own the answer row and read its history, in one transaction; None if not ours.

        The web stores the row owned by the first attempt, so that attempt
        only reads (a write and its commit are the costliest step before the
        model is asked). A later attempt writes its number first, which
        fences off the older ones.

        A message that is missing, already final or owned by a later attempt
        gets no generation: its final event is written (or replayed) instead,
        or nothing at all when fenced off.
        """
        claimed = self.job.attempt == jobs.FIRST_ATTEMPT or self._claim_row()
        turns = models.turns(self.job.session_id)
        # End the SQL transaction: a long answer must not hold a pooled connection.
        db.session.commit()
        answer = next((t for t in turns if t.id == self.job.message_id), None)
        if answer is None:
            log.error("job for a missing message session=%s message=%s", *self._ids())
            self._finish_stream(
                events.ERROR,
                error_data(self.job.message_id, INTERNAL_ERROR, "the message was not found"),
            )
        elif answer.status in models.FINAL_STATUSES:
            self._replay_final(models.find_message(*self._ids()))
        elif not claimed or answer.attempt > self.job.attempt:
            self.ended = True
            log.warning("fenced off in SQL session=%s message=%s", *self._ids())
        else:
            return [t for t in turns if t.seq < answer.seq]
        return None

    def _generate(self, history: list[models.Turn]) -> None:
        prompt = build_prompt(
            history, self.settings["SYSTEM_PROMPT"], self.settings["CONTEXT_BUDGET_CHARS"]
        )
        cached = self._cached_answer(prompt)
        self.from_cache = cached is not None
        start = {
            "message_id": self.job.message_id,
            "model": cached.model if cached else self.model.name,
            "attempt": self.job.attempt,
            "cached": cached is not None,
        }
        # `start` travels to Redis while the model is asked; its outcome is
        # read before the first piece is written.
        self.writer.send(events.START, events.dumps(start))
        started = False
        for piece in cached.pieces() if cached else self._model_pieces(prompt):
            if not started:
                started = True
                if not self._started():
                    return
            if isinstance(piece, Finish):
                self._end(piece)
                return
            self._chunk(piece)
            if self.ended:
                return
        raise ModelError("upstream_error", "the model stream ended without finishing")

    def _started(self) -> bool:
        """Whether `start` was written; False when fenced off. Raises Cancelled if asked to."""
        written = self.writer.sent_written()
        if written.fenced:
            self.ended = True
            log.warning("fenced off at start session=%s message=%s", *self._ids())
            return False
        log.info(
            "generation started session=%s message=%s attempt=%d", *self._ids(), self.job.attempt
        )
        if written.cancel_requested:
            raise Cancelled()
        return True

    def _model_pieces(self, prompt: list[dict[str, str]]) -> Iterator[Piece]:
        """The model's pieces, retrying failures that happen before any text was sent."""
        for retry in range(MODEL_RETRIES + 1):
            pieces = self.model.stream(prompt)
            try:
                while True:
                    self.waiting_on_model = True
                    try:
                        piece = next(pieces)
                    except StopIteration:
                        return
                    finally:
                        self.waiting_on_model = False
                    yield piece
            except ModelError as exc:
                if self.outcome.chunks or not exc.retryable or retry == MODEL_RETRIES:
                    raise
                pause = MODEL_BACKOFF_SECONDS[min(retry, len(MODEL_BACKOFF_SECONDS) - 1)]
                if exc.retry_after_seconds is not None:
                    pause = min(max(pause, exc.retry_after_seconds), MODEL_RETRY_AFTER_MAX_SECONDS)
                log.warning(
                    "model failed before any text, retry %d in %.1fs session=%s message=%s: %s",
                    retry + 1,
                    pause,
                    *self._ids(),
                    exc.message,
                )
                self.waiting_on_model = True
                try:
                    time.sleep(pause)
                finally:
                    self.waiting_on_model = False
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()

    def _cached_answer(self, prompt: list[dict[str, str]]) -> CachedAnswer | None:
        """The cached answer to this exact request, when the cache is on."""
        if self.cache is None:
            return None
        self.cache_key = cache_key(self.model.name, prompt, self.settings["LLM_MAX_TOKENS"])
        cached = self.cache.get(self.cache_key)
        metrics.cache_lookup(self.client, hit=cached is not None)
        log.info("answer cache %s session=%s message=%s", "hit" if cached else "miss", *self._ids())
        return cached

    def _chunk(self, delta: Delta) -> None:
        data = events.dumps({"message_id": self.job.message_id, "text": delta.text})
        written = self.writer.append(events.CHUNK, data)
        if written.fenced:
            self.ended = True
            log.warning("fenced off mid-answer session=%s message=%s", *self._ids())
            return
        self.outcome.parts.append(delta.text)
        if self.outcome.chunks == 1:
            metrics.first_token(self.client, time.time() - self.job.enqueued_at)
        if written.cancel_requested:
            raise Cancelled()

    # -- SQL, fenced by attempt --------------------------------------------

    def _claim_row(self) -> bool:
        """Make this attempt the owner of the answer row, unless a later one is or it is final."""
        result = db.session.execute(
            update(Message)
            .where(
                Message.session_id == self.job.session_id,
                Message.id == self.job.message_id,
                Message.attempt < self.job.attempt,
                Message.status.not_in(models.FINAL_STATUSES),
            )
            .values(attempt=self.job.attempt, status=models.STREAMING, model=self.model.name)
            # No ORM objects are loaded yet: nothing in the session to keep in step.
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def _store(self, **values: Any) -> bool:
        """Finish the answer row if this attempt still owns it; False if fenced off.

        An attempt that died before claiming the row leaves it with an older
        attempt number, which a later attempt may still finish.
        """
        result = db.session.execute(
            update(Message)
            .where(
                Message.session_id == self.job.session_id,
                Message.id == self.job.message_id,
                Message.attempt <= self.job.attempt,
                Message.status.not_in(models.FINAL_STATUSES),
            )
            .values(
                content=self.outcome.text,
                chunk_count=self.outcome.chunks,
                finished_at=models.utcnow(),
                **values,
            )
        )
        db.session.commit()
        return result.rowcount == 1

    # -- final states ------------------------------------------------------

    def _end(self, finish: Finish) -> None:
        """Store the answer, then write `end`: a client that saw `end` finds it stored."""
        self.ended = True
        status = models.CANCELLED if finish.finish_reason == CANCELLED else models.DONE
        duration_ms = self.outcome.duration_ms
        if not self._store(
            status=status,
            model=finish.model,
            finish_reason=finish.finish_reason,
            duration_ms=duration_ms,
            prompt_tokens=(finish.usage or {}).get("prompt_tokens"),
            completion_tokens=(finish.usage or {}).get("completion_tokens"),
            total_tokens=(finish.usage or {}).get("total_tokens"),
        ):
            log.warning("fenced off at the end session=%s message=%s", *self._ids())
            return
        data = {
            "message_id": self.job.message_id,
            "finish_reason": finish.finish_reason,
            "usage": finish.usage,
            "duration_ms": duration_ms,
            "chunks": self.outcome.chunks,
            "text_length": len(self.outcome.text),
        }
        self._finish_stream(events.END, data)
        metrics.generation_ended(
            self.client,
            finish_reason=finish.finish_reason,
            duration_seconds=duration_ms / 1000,
            chunks=self.outcome.chunks,
            usage=finish.usage,
        )
        if self.cache is not None and self.cache_key and not self.from_cache:
            self.cache.put(
                self.cache_key,
                CachedAnswer(
                    list(self.outcome.parts), finish.model, finish.finish_reason, finish.usage
                ),
            )
        log.info(
            "generation ended session=%s message=%s finish_reason=%s chunks=%d ms=%d",
            *self._ids(),
            finish.finish_reason,
            self.outcome.chunks,
            data["duration_ms"],
        )

    def fail(self, code: str, text: str) -> None:
        """Record the failure in SQL, then end the stream with `error`."""
        if self.ended:
            return
        self.ended = True
        try:
            db.session.rollback()
            stored = self._store(
                status=models.FAILED,
                model=self.model.name,
                error_code=code,
                error_message=text,
                duration_ms=self.outcome.duration_ms,
            )
        except Exception:
            log.exception("could not store the failure session=%s message=%s", *self._ids())
            stored = True  # still end the stream: a client must not wait forever
        if stored:
            self._finish_stream(events.ERROR, error_data(self.job.message_id, code, text))
            metrics.generation_failed(self.client, code, self.outcome.chunks)

    def _replay_final(self, message: Message) -> None:
        """SQL holds the final answer but the stream may lack its last event: write it."""
        if message.status == models.FAILED:
            data = error_data(
                message.id,
                message.error_code or INTERNAL_ERROR,
                message.error_message or "the generation failed",
            )
            self._finish_stream(events.ERROR, data)
        else:
            self._finish_stream(events.END, end_data(message))
        self.ended = True
        log.info("final event replayed from SQL session=%s message=%s", *self._ids())

    def _finish_stream(self, event: str, data: dict[str, Any]) -> None:
        self.ended = True
        if self.writer.finish(event, events.dumps(data)).fenced:
            log.warning("final %s fenced off session=%s message=%s", event, *self._ids())


def run_generation(generation: Generation) -> None:
    """Run one attempt inside its own app context (its own SQL session)."""
    with generation.app.app_context():
        try:
            generation.run()
        finally:
            db.session.remove()


def fail_lost_job(app: Flask, model: Model, job: Job, batcher: WriteBatcher | None = None) -> None:
    """End a job whose workers kept dying: `error` worker_lost, in SQL and the stream."""
    with app.app_context():
        try:
            generation = Generation(app, model, job, batcher)
            if not jobs.begin(generation.client, job):
                return  # it finished after all, or a newer attempt owns it
            generation.fail(WORKER_LOST, "the answer was lost with its worker, too many times")
            log.error(
                "job failed for good session=%s message=%s attempts=%d",
                job.session_id,
                job.message_id,
                job.attempt,
            )
        finally:
            db.session.remove()
