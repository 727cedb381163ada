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

An answer runs as a loop of steps (API.md, Tools): the generation claims
the answer, reads where an earlier attempt left it (steps.Plan: the journal
of steps it recorded, for a lost worker's or a paused answer's next
attempt), writes `start` with `from_step`, and hands the rest to the step
loop (step_loop.py), whose Finish it turns into the answer's end. An answer
that pauses for a person's decision or a client tool's output ends this
attempt in PAUSED, its job acked.

The generation decides; it does no I/O of its own. It reads the model
through `Model` (llm.py), writes events through its `StreamWriter`, records
the rest through its `Ledger` (ledger.py) and its `StepJournal`
(step_journal.py), and runs tools through the registry, all held by its
`Attempt` (attempt.py). `new_generation` wires the real ones;
tests/test_generation.py and tests/test_step_loop.py drive it with a
scripted model and recording ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from flask import Flask

from webapp.exceptions import Cancelled, Fenced, HandedBack, ModelError
from webapp.storage import events, jobs, models
from webapp.storage.events import INTERNAL_ERROR
from webapp.storage.extensions import db, redis_store
from webapp.storage.jobs import Job
from webapp.write.answer import Answer
from webapp.write.attempt import Attempt
from webapp.write.cache import AnswerCache, CachedAnswer
from webapp.write.history import build_prompt
from webapp.write.ledger import Ledger, SqlLedger
from webapp.write.lifecycle import MOVES, Lifecycle, State
from webapp.write.llm import MODEL_RETRIES, Finish, Messages, Model, RetryPolicy
from webapp.write.step_journal import RedisStepJournal, StepJournal
from webapp.write.step_loop import StepLoop
from webapp.write.steps import Plan, ToolBox
from webapp.write.tools.registry import ToolRegistry
from webapp.write.writer import StreamWriter, WriteBatcher

log = logging.getLogger(__name__)

__all__ = ["Generation", "build_prompt", "fail_lost", "new_generation"]


class Generation:
    """Runs one attempt of one job to a final state (or, with tools, to a pause)."""

    def __init__(
        self,
        job: Job,
        model: Model,
        writer: StreamWriter,
        ledger: Ledger,
        *,
        journal: StepJournal,
        tools: ToolBox,
        system_prompt: str,
        budget_chars: int,
        max_tool_steps: int = 8,
        cache: AnswerCache | None = None,
        retries: RetryPolicy = MODEL_RETRIES,
    ) -> None:
        self.job = job
        self.model = model
        self.ledger = ledger
        self.system_prompt = system_prompt
        self.budget_chars = budget_chars
        self.cache = cache
        self.cache_key: str | None = None  # set when the cache was asked and missed
        self.answer = Answer(job, writer, ledger)
        self.life = Lifecycle(MOVES, State.NEW)
        self.attempt = Attempt(
            job,
            model,
            writer,
            ledger,
            journal,
            tools,
            self.answer,
            self.life,
            retries,
            max_tool_steps,
        )
        self.plan = Plan()
        self.loop: StepLoop | None = None

    @property
    def state(self) -> State:
        return self.life.state

    def _ids(self) -> tuple[str, str]:
        return self.job.session_id, self.job.message_id

    # -- the run -----------------------------------------------------------

    def run(self) -> None:
        """Run to a final state (or a pause), whatever happens on the way."""
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
            except Fenced:
                raise
            except Exception:
                log.exception("generation crashed session=%s message=%s", *self._ids())
                self.fail(INTERNAL_ERROR, "the generation failed unexpectedly")
        except Fenced:
            if not self.life.final:  # logged where it was seen (Attempt.fenced)
                self.life.move(State.FENCED)
        except HandedBack:
            # Whenever it comes, even while a final write is on its way: the
            # next attempt finds what this one stored and finishes from there.
            if not self.life.final:
                self.life.move(State.HANDED_BACK)
            log.info("generation handed back session=%s message=%s", *self._ids())
        finally:
            if not self.life.final:
                self.fail(INTERNAL_ERROR, "the generation stopped unexpectedly")
        self._retire()

    def _run(self) -> None:
        self.life.move(State.CLAIMING)
        if not self._take_over():
            self.life.move(State.FENCED)
            log.info("job stale, skipped session=%s message=%s", *self._ids())
            return
        history = self._claim()
        if history is None:
            return
        if self.job.resume or self.job.attempt != jobs.FIRST_ATTEMPT:
            self.plan = Plan.of(
                self.attempt.journal.read()
            )  # the steps an earlier attempt recorded
        prompt = build_prompt(history, self.system_prompt, self.budget_chars)
        tools = self.attempt.tools.offered()
        cached = self._cached_answer(prompt, tools) if self.plan.fresh else None
        start = events.start_data(
            self.job.message_id,
            model=cached.model if cached else self.model.name,
            attempt=self.job.attempt,
            cached=cached is not None,
            from_step=self.plan.from_step,
        )
        # `start` travels to Redis while the model is asked; its outcome is
        # read when the first piece is in (Attempt.confirm_sent).
        self.attempt.send(events.START, start)
        self.life.move(State.WRITING)
        self.answer.keep(self.plan.done)
        self.loop = StepLoop(self.attempt, prompt + self.plan.history(), self.plan, tools)
        finish = self.loop.cached(cached) if cached else self.loop.run()
        if finish is not None:
            self._end(finish)

    def _take_over(self) -> bool:
        """Make this attempt the stream's writer; False if the job is stale.

        The first attempt needs no round trip: the web's claim wrote attempt 1
        into `active`, with no writes counted yet (were it stale after all, its
        first write would be fenced off instead). A later attempt begins (a
        lost worker's) or resumes (an answer that waited: journal.resume).
        """
        if self.job.resume:
            taken = self.attempt.journal.resume()
        elif self.job.attempt != jobs.FIRST_ATTEMPT:
            taken = self.ledger.begin(self.job)
        else:
            return True
        if taken:
            self.ledger.waiting(self.job, False)  # if it waited, it goes on now
        return taken

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

    def _cached_answer(self, prompt: Messages, tools: Sequence[Any]) -> CachedAnswer | None:
        """The cached answer to this exact request, when the cache is on."""
        if self.cache is None:
            return None
        key, cached = self.cache.lookup(self.model.name, prompt, tools)
        self.cache_key = None if cached else key
        log.info("answer cache %s session=%s message=%s", "hit" if cached else "miss", *self._ids())
        return cached

    # -- final states ------------------------------------------------------

    def _settled(self, written: bool) -> None:
        """A final write is done: ENDED if it went through, FENCED if a newer attempt owns it."""
        self.life.move(State.ENDED if written else State.FENCED)

    def _end(self, finish: Finish) -> None:
        """Store the answer, then write `end`; remember a whole answer in the cache.

        A cancelled answer first gives the step it was in its whole events
        and its open calls results (StepLoop.close_cancelled).
        """
        if finish.finish_reason == events.FINISH_CANCELLED and self.loop is not None:
            self.loop.close_cancelled()
        self._settled(self.answer.end(finish))
        steps = self.answer.steps
        one_step = self.plan.fresh and len(steps) == 1 and not steps[0].calls
        if self.state is State.ENDED and self.cache is not None and self.cache_key and one_step:
            self.cache.put(self.cache_key, CachedAnswer.of(steps[0].pieces, finish))

    def fail(self, code: str, text: str) -> None:
        """Record the failure in SQL, then end the stream with `error` (unless final already)."""
        if not self.life.final:
            self._settled(self.answer.fail(code, text, self.model.name))

    def _retire(self) -> None:
        """An answer that ended after recording steps: its journal expires with its stream."""
        if self.state is State.ENDED and self.loop is not None:
            self.loop.retire()


def new_generation(
    app: Flask,
    model: Model,
    job: Job,
    batcher: WriteBatcher | None = None,
    tools: ToolBox | None = None,
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
        join_pieces=settings["WORKER_JOIN_PIECES"],
    )
    return Generation(
        job,
        model,
        writer,
        SqlLedger(client),
        journal=RedisStepJournal(client, job, settings["STREAM_TTL_SECONDS"]),
        tools=tools if tools is not None else ToolRegistry([], settings["TOOL_TIMEOUT_SECONDS"]),
        system_prompt=settings["SYSTEM_PROMPT"],
        budget_chars=settings["CONTEXT_BUDGET_CHARS"],
        max_tool_steps=settings["MAX_TOOL_STEPS"],
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

    The reaper's ending (worker.py): the model is never asked. Its job is the
    attempt after the last lost one, so that it takes the stream over.
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
    """`fail_lost` on the app's Redis and SQL, as the attempt after `job`, the last one lost."""
    with app.app_context():
        try:
            fail_lost(new_generation(app, model, jobs.next_attempt(job), batcher))
        finally:
            db.session.remove()
