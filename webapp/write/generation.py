"""One job: model pieces -> session stream events -> the stored answer in SQL.

A generation always ends in a final state, in the stream and in SQL: `end`
(finish_reason stop, length or cancelled) or `error`. The order of the last
step is what makes API.md's "end means stored" true: the SQL row is updated
first, then the `end` event is written, so a client that saw `end` finds the
answer stored.

Several attempts may run for one message when a worker is lost (jobs.py).
Each attempt is fenced twice: in Redis (writer.py) and in SQL (models.py,
`claim_answer` and `finish_answer`). So whatever happens, one message has
one answer, written once.

A generation's life is one state, moved only as lifecycle.py's table
allows; its worker reads it. The worker raises an interrupt (exceptions.py)
into the generation's greenlet: `Cancelled` ends the answer with
finish_reason "cancelled", `HandedBack` stops it writing anything more.

The generation decides; it does no I/O of its own. It reads the model
through `Model` (llm.py), writes events through its `StreamWriter` and
records the rest through its `Ledger` (ledger.py). `new_generation`
wires the real ones; tests/test_generation.py drives it with a scripted
model and recording ones.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator, Sequence

from flask import Flask

from webapp.exceptions import Cancelled, HandedBack, ModelError
from webapp.storage import events, jobs, models
from webapp.storage.events import INTERNAL_ERROR
from webapp.storage.extensions import db, redis_store
from webapp.storage.jobs import Job
from webapp.write.answer import Answer
from webapp.write.cache import AnswerCache, CachedAnswer
from webapp.write.ledger import Ledger, SqlLedger
from webapp.write.lifecycle import MOVES, Lifecycle, State
from webapp.write.llm import MODEL_RETRIES, Delta, Finish, Model, Piece, Reasoning, RetryPolicy
from webapp.write.writer import StreamWriter, WriteBatcher, Written

log = logging.getLogger(__name__)


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


class Generation:
    """Runs one attempt of one job to a final state."""

    def __init__(
        self,
        job: Job,
        model: Model,
        writer: StreamWriter,
        ledger: Ledger,
        *,
        system_prompt: str,
        budget_chars: int,
        cache: AnswerCache | None = None,
        retries: RetryPolicy = MODEL_RETRIES,
    ) -> None:
        self.job = job
        self.model = model
        self.writer = writer
        self.ledger = ledger
        self.system_prompt = system_prompt
        self.budget_chars = budget_chars
        self.cache = cache
        self.cache_key: str | None = None  # set when the cache was asked and missed
        self.retries = retries
        self.answer = Answer(job, writer, ledger)
        self.life = Lifecycle(MOVES, State.NEW)

    @property
    def state(self) -> State:
        return self.life.state

    def _ids(self) -> tuple[str, str]:
        return self.job.session_id, self.job.message_id

    # -- the run -----------------------------------------------------------

    def run(self) -> None:
        """Run to a final state, whatever happens on the way."""
        try:
            try:
                self._run()
            except Cancelled:
                self._end(Finish(self.model.name, events.FINISH_CANCELLED, None))
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
        except HandedBack:
            # Whenever it comes, even while a final write is on its way: the
            # next attempt finds what this one stored and finishes from there.
            if not self.life.final:
                self.life.move(State.HANDED_BACK)
            log.info("generation handed back session=%s message=%s", *self._ids())
        finally:
            if not self.life.final:
                self.fail(INTERNAL_ERROR, "the generation stopped unexpectedly")

    def _run(self) -> None:
        self.life.move(State.CLAIMING)
        # Take the stream over. The first attempt needs no round trip: the web's
        # claim wrote attempt 1 into `active`, with no writes counted yet (were
        # it stale after all, its first write would be fenced off instead).
        if self.job.attempt != jobs.FIRST_ATTEMPT and not self.ledger.begin(self.job):
            self.life.move(State.FENCED)
            log.info("job stale, skipped session=%s message=%s", *self._ids())
            return
        history = self._claim()
        if history is None:
            return
        prompt = build_prompt(history, self.system_prompt, self.budget_chars)
        cached = self._cached_answer(prompt)
        start = events.start_data(
            self.job.message_id,
            model=cached.model if cached else self.model.name,
            attempt=self.job.attempt,
            cached=cached is not None,
        )
        # `start` travels to Redis while the model is asked; its outcome is
        # read when the first piece is in.
        self.writer.send(events.START, start)
        self.life.move(State.WRITING)
        pieces = cached.pieces() if cached else self._model_pieces(prompt)
        for index, piece in enumerate(pieces):
            if index == 0 and not self._started(self.writer.sent_written()):
                return
            if isinstance(piece, Finish):
                self._end(piece)
                return
            if not self._write(piece):
                return
        raise ModelError(events.UPSTREAM_ERROR, "the model stream ended without finishing")

    def _claim(self) -> list[models.Turn] | None:
        """Own the answer row and read its history, in one transaction; None if not ours.

        The web stores the row owned by the first attempt, so that attempt
        only reads (a write and its commit are the costliest step before the
        model is asked). A later attempt writes its number first, which
        fences off the older ones. A message that is missing or final already
        gets its final event written (or replayed) instead of a generation.
        """
        claimed, turns = self.ledger.take(self.job, self.model.name)
        answer = next((t for t in turns if t.id == self.job.message_id), None)
        if answer is None:
            log.error("job for a missing message session=%s message=%s", *self._ids())
            text = "the message was not found"
            data = events.error_data(self.job.message_id, INTERNAL_ERROR, text)
            self._settled(self.answer.finish_stream(events.ERROR, data))
        elif answer.status in models.FINAL_STATUSES:
            self._settled(self.answer.replay(self.ledger.stored(self.job)))
        elif not claimed or answer.attempt > self.job.attempt:
            self.life.move(State.FENCED)
            log.warning("fenced off in SQL session=%s message=%s", *self._ids())
        else:
            return [t for t in turns if t.seq < answer.seq]
        return None

    def _started(self, written: Written) -> bool:
        """Whether `start` was written; False when fenced off. Raises Cancelled if asked to."""
        if written.fenced:
            self.life.move(State.FENCED)
            log.warning("fenced off at start session=%s message=%s", *self._ids())
            return False
        log.info(
            "generation started session=%s message=%s attempt=%d", *self._ids(), self.job.attempt
        )
        if written.cancel_requested:
            raise Cancelled()
        return True

    def _cached_answer(self, prompt: list[dict[str, str]]) -> CachedAnswer | None:
        """The cached answer to this exact request, when the cache is on."""
        if self.cache is None:
            return None
        key, cached = self.cache.lookup(self.model.name, prompt)
        self.cache_key = None if cached else key
        log.info("answer cache %s session=%s message=%s", "hit" if cached else "miss", *self._ids())
        return cached

    def _model_pieces(self, prompt: list[dict[str, str]]) -> Iterator[Piece]:
        """The model's pieces, asked again after failures as `self.retries` allows.

        Every wait on the model (its next piece, a pause before asking
        again) runs in the ASKING state, the one in which the worker may
        cancel.
        """
        return self.retries.stream(
            self.model,
            prompt,
            # Reasoning counts as sent text: a new request would stream it again.
            text_sent=lambda: self.answer.sent,
            wait=functools.partial(self.life.during, State.ASKING),
            ids=self._ids(),
        )

    def _write(self, piece: Delta | Reasoning) -> bool:
        """Write a piece of the answer or its reasoning; False when fenced off (or Cancelled).

        Both kinds take the same fenced, exactly-once append, and count apart.
        """
        thought = type(piece) is Reasoning
        build = events.reasoning_data if thought else events.chunk_data
        written = self.writer.append(
            events.REASONING if thought else events.CHUNK, build(self.job.message_id, piece.text)
        )
        if written.fenced:
            self.life.move(State.FENCED)
            log.warning("fenced off mid-answer session=%s message=%s", *self._ids())
            return False
        if self.answer.add(piece) == 1:
            self.ledger.first_token(time.time() - self.job.enqueued_at, reasoning=thought)
        if written.cancel_requested:
            raise Cancelled()
        return True

    # -- final states ------------------------------------------------------

    def _settled(self, written: bool) -> None:
        """A final write is done: ENDED if it went through, FENCED if a newer attempt owns it."""
        self.life.move(State.ENDED if written else State.FENCED)

    def _end(self, finish: Finish) -> None:
        """Store the answer, then write `end`; remember a whole answer in the cache."""
        self._settled(self.answer.end(finish))
        if self.state is State.ENDED and self.cache is not None and self.cache_key:
            cached = CachedAnswer.of(self.answer.pieces, finish)
            self.cache.put(self.cache_key, cached)

    def fail(self, code: str, text: str) -> None:
        """Record the failure in SQL, then end the stream with `error` (unless final already)."""
        if not self.life.final:
            self._settled(self.answer.fail(code, text, self.model.name))


def new_generation(
    app: Flask, model: Model, job: Job, batcher: WriteBatcher | None = None
) -> Generation:
    """A generation of `job` on the app's settings, Redis and SQL, writing through `batcher`."""
    settings = app.config
    client = redis_store.client_for(app)
    writer = StreamWriter(
        client,
        job.session_id,
        job.message_id,
        job.attempt,
        stream_ttl_seconds=settings["STREAM_TTL_SECONDS"],
        maxlen=settings["STREAM_MAXLEN"],
        batcher=batcher,
    )
    return Generation(
        job,
        model,
        writer,
        SqlLedger(client),
        system_prompt=settings["SYSTEM_PROMPT"],
        budget_chars=settings["CONTEXT_BUDGET_CHARS"],
        cache=AnswerCache.from_settings(client, settings),
    )


def run_generation(app: Flask, generation: Generation) -> None:
    """Run one attempt inside its own app context (its own SQL session)."""
    with app.app_context():
        try:
            generation.run()
        finally:
            db.session.remove()


def fail_lost(generation: Generation) -> None:
    """End a job whose workers kept dying: `error` worker_lost, unless it is settled.

    The reaper's ending (worker.py): the model is never asked.
    """
    generation.life.move(State.CLAIMING)
    if not generation.ledger.begin(generation.job):
        generation.life.move(State.FENCED)  # it finished after all, or a newer attempt owns it
        return
    generation.fail(events.WORKER_LOST, "the answer was lost with its worker, too many times")
    job = generation.job
    log.error(
        "job failed for good session=%s message=%s attempts=%d",
        job.session_id,
        job.message_id,
        job.attempt,
    )


def fail_lost_job(app: Flask, model: Model, job: Job, batcher: WriteBatcher | None = None) -> None:
    """`fail_lost` on the app's Redis and SQL."""
    with app.app_context():
        try:
            fail_lost(new_generation(app, model, job, batcher))
        finally:
            db.session.remove()
