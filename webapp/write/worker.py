"""The worker loop: pop jobs, run them as generations, keep their leases, reap the lost.

One greenlet pops jobs (a single blocking `BLMOVE` at a time, and only when
the pool has a free slot), and each job runs in a greenlet of its own, up to
WORKER_CONCURRENCY at once. Beside them, three small loops:

- leases: every few seconds, one call renews the leases of all running jobs;
- reaper: takes back jobs whose worker stopped renewing (it died), and runs
  them again with attempt + 1, or fails them for good after JOB_MAX_ATTEMPTS
  lost in a row (an answer that waited for a decision starts counting again);
- cancels: every CANCEL_POLL_SECONDS, one pipelined read of the cancel
  flags of the answers whose model has been silent since the last read, so
  a cancel stops those too (the stream writer sees the flag on every write).

SIGTERM (Heroku sends it 30 s before SIGKILL) stops the popping, lets running
generations finish within WORKER_SHUTDOWN_GRACE_SECONDS, then hands the rest
back to the queue for another worker. Connection errors back off
exponentially instead of spinning. RQ's worker has the same shape.

The worker starts the tool registry (write/tools/registry.py: Python
tools, MCP servers, client tools) before it takes a job, and closes it as
it stops. An answer that pauses for a decision (generation.py) ends its
job like a finished one: acked, holding no slot.

The loop runs in a gevent process: worker.py, the entry point, patches the
standard library first. `max_jobs` stops it after that many jobs (tests).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gevent
import redis
from flask import Flask
from gevent.event import Event
from gevent.pool import Pool

from webapp.exceptions import Cancelled, HandedBack
from webapp.ops import readiness
from webapp.storage import jobs
from webapp.storage.extensions import redis_store
from webapp.write.demo_model import DemoModel
from webapp.write.generation import Generation, fail_lost_job, new_generation, run_generation
from webapp.write.lifecycle import INTERRUPTIBLE, State
from webapp.write.llm import Model, OpenAIModel
from webapp.write.tools.registry import registry_or_exit
from webapp.write.writer import WriteBatcher

log = logging.getLogger(__name__)

BACKOFF_START_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 10.0
CANCEL_POLL_SECONDS = 0.25


@dataclass
class Running:
    taken: jobs.Taken
    generation: Generation
    greenlet: gevent.Greenlet | None = None
    pieces_seen: int = -1  # how many pieces its answer had at the last cancel poll


class Worker:
    """Pops jobs and runs them concurrently until told to stop."""

    def __init__(self, app: Flask, model: Model | None = None, max_jobs: int | None = None) -> None:
        self.app = app
        self.config = app.config
        # Reasoning models' thinking streams as `reasoning` events (issue 16);
        # the demo model thinks briefly too, so a newcomer sees it.
        self.model = model or model_from_settings(app.config, reasoning=True)
        # The tools its answers may call (none unless configured; the demo model
        # has the demo tools). An MCP server that does not answer is retried.
        self.tools = registry_or_exit(app.config, demo_model=isinstance(self.model, DemoModel))
        self.max_jobs = max_jobs
        self.pool = Pool(app.config["WORKER_CONCURRENCY"])
        self.stopping = Event()
        self.running: dict[str, Running] = {}
        self.client = redis_store.client_for(app)
        self.batcher = WriteBatcher(self.client)
        self.lease_seconds: float = app.config["JOB_LEASE_SECONDS"]
        self.pop_timeout = app.config["WORKER_POP_TIMEOUT_SECONDS"]
        # The socket may wait a little longer than the pop itself blocks.
        self.popper = redis_store.blocking_client(app, read_timeout_seconds=self.pop_timeout + 5)

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("worker stopping: no new jobs, %d running", len(self.running))
            self.stopping.set()

    # -- main loop ---------------------------------------------------------

    def run(self, *, handle_signals: bool = True) -> None:
        """Work until stopped (SIGTERM, SIGINT, `stop()`, or `max_jobs` taken), then drain."""
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                gevent.signal_handler(signum, self.stop)
        loops = [
            gevent.spawn(self._every, self.lease_seconds / 3, self._renew_leases),
            gevent.spawn(self._every, self.lease_seconds / 2, self._reap),
            gevent.spawn(self._every, CANCEL_POLL_SECONDS, self._apply_cancels),
        ]
        log.info(
            "worker ready concurrency=%d model=%s tools=%d",
            self.pool.size,
            self.model.name,
            len(self.tools.offered()),
        )
        try:
            self._pop_until_stopped()
            self._drain()
        finally:
            gevent.killall(loops)
            self.tools.close()  # the MCP sessions and the asyncio thread, if any
        log.info("worker stopped")

    def _pop_until_stopped(self) -> None:
        taken_count, backoff = 0, BACKOFF_START_SECONDS
        while not self.stopping.is_set():
            self.pool.wait_available()
            try:
                taken = jobs.pop(self.popper, self.pop_timeout)
                if taken is not None:
                    # Start first, lease second: the lease's round trip then
                    # overlaps the generation's first steps instead of delaying
                    # them. A job without a lease yet is safe: the reaper adopts
                    # processing jobs that have none.
                    self._start(taken)
                    taken_count += 1
                    jobs.lease(self.client, self.lease_seconds, [taken.raw])
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("job pop failed, retrying in %.1fs: %s", backoff, exc)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
                continue
            backoff = BACKOFF_START_SECONDS
            if self.max_jobs is not None and taken_count >= self.max_jobs:
                self.stop()

    def _start(self, taken: jobs.Taken) -> None:
        job = taken.job
        log.info(
            "job taken session=%s message=%s attempt=%d",
            job.session_id,
            job.message_id,
            job.attempt,
        )
        generation = new_generation(self.app, self.model, job, self.batcher, self.tools)
        running = Running(taken, generation)
        self.running[taken.raw] = running
        running.greenlet = self.pool.spawn(self._run, running)

    def _run(self, running: Running) -> None:
        try:
            run_generation(self.app, running.generation)
            if running.generation.state is not State.HANDED_BACK:  # else _drain gives it back
                jobs.ack(self.client, running.taken)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Unacked, the job's lease runs out and a reaper runs it again.
            log.error(
                "job left to the reaper session=%s message=%s: %s",
                running.taken.job.session_id,
                running.taken.job.message_id,
                exc,
            )
        finally:
            self.running.pop(running.taken.raw, None)

    def _drain(self) -> None:
        """Let running answers finish within the grace period, then hand the rest back."""
        grace = self.config["WORKER_SHUTDOWN_GRACE_SECONDS"]
        if self.pool.join(timeout=grace):
            return
        for running in list(self.running.values()):
            running.greenlet.kill(HandedBack, block=True, timeout=5)
            self._hand_back(running.taken)

    def _hand_back(self, taken: jobs.Taken) -> None:
        """Put a job back on the queue for its next attempt, or leave it to a reaper."""
        job, retry = taken.job, jobs.next_attempt(taken.job)
        try:
            handed = jobs.take_back(self.client, taken.raw, retry, force=True)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Still in the processing list: its lease runs out and a reaper runs it again.
            log.error(
                "job left to the reaper session=%s message=%s: %s",
                job.session_id,
                job.message_id,
                exc,
            )
            return
        if handed:
            log.warning(
                "job handed back session=%s message=%s next_attempt=%d",
                job.session_id,
                job.message_id,
                retry.attempt,
            )

    # -- side loops ----------------------------------------------------------

    def _every(self, seconds: float, action: Callable[[], None]) -> None:
        while True:
            gevent.sleep(seconds)
            try:
                action()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("%s failed: %s", action.__name__, exc)
            except Exception:
                log.exception("%s failed", action.__name__)

    def _renew_leases(self) -> None:
        jobs.renew(self.client, self.lease_seconds, list(self.running))

    def _reap(self) -> None:
        for raw in jobs.expired(self.client, self.lease_seconds):
            if raw in self.running:
                continue  # ours and alive: the renewal is late, not lost
            job = jobs.Job.loads(raw)
            # Attempts lost since the answer last went on, this one included.
            if job.lost_before + 1 >= self.config["JOB_MAX_ATTEMPTS"]:
                if jobs.take_back(self.client, raw, None):
                    fail_lost_job(self.app, self.model, job, self.batcher)
            elif jobs.take_back(self.client, raw, jobs.next_attempt(job)):
                log.warning(
                    "job taken back from a lost worker session=%s message=%s next_attempt=%d",
                    job.session_id,
                    job.message_id,
                    job.attempt + 1,
                )

    def _apply_cancels(self) -> None:
        """Interrupt generations waiting on their model that must stop.

        Their client asked them to, or their session was deleted. A writing
        generation sees either in its next write's reply (a cancel flag, or a
        fence); one whose model is silent writes nothing, so it is read here:
        those that wrote no piece since the last poll. Reading every running
        answer's flags (issue 18's fan-out: 100 streaming answers, 4 times a
        second) cost the worker a run of about 1 ms each time, which every
        delta arriving meanwhile waited for.
        """
        silent = []
        for running in self.running.values():
            seen, running.pieces_seen = running.pieces_seen, running.generation.answer.written
            if running.generation.state in INTERRUPTIBLE and seen == running.pieces_seen:
                silent.append(running)
        if not silent:
            return
        asked = jobs.cancels_requested(self.client, [r.taken.job for r in silent])
        for running, cancel in zip(silent, asked, strict=True):
            if cancel and running.generation.state in INTERRUPTIBLE:
                running.greenlet.kill(Cancelled, block=False)


def wait_until_ready(app: Flask) -> bool:
    """Wait for Redis, the database and its schema (ops/readiness.py); False if told to stop first.

    A Heroku add-on may come up after the dyno: each wait is one log line,
    with backoff, and SIGTERM or Ctrl-C meanwhile stops the process cleanly.
    """
    stopping = Event()
    handlers = [gevent.signal_handler(s, stopping.set) for s in (signal.SIGTERM, signal.SIGINT)]
    try:
        ready = readiness.wait_until_ready(app, stopping.wait)
    finally:
        for handler in handlers:
            handler.cancel()
    if not ready:
        log.info("worker stopped before its backing services were ready")
    return ready


def model_from_settings(settings: Mapping[str, Any], *, reasoning: bool = False) -> Model:
    """The configured model; with `reasoning=True` it yields `Reasoning` pieces too."""
    if not settings["OPENAI_API_KEY"]:
        log.warning("OPENAI_API_KEY is not set: answering with the demo model")
        return DemoModel(settings["DEMO_DELAY_SECONDS"], reasoning=reasoning)
    return OpenAIModel.from_settings(settings, reasoning=reasoning)
