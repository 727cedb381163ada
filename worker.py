"""The worker entry point: `python worker.py`.

One greenlet pops jobs (a single blocking `BLMOVE` at a time, and only when
the pool has a free slot), and each job runs in a greenlet of its own, up to
WORKER_CONCURRENCY at once. SIGTERM (what Heroku sends before SIGKILL)
stops the popping and lets running generations finish within the grace
period. Connection errors back off exponentially instead of spinning.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import signal  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402
from flask import Flask  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.pool import Pool  # noqa: E402

from webapp import create_app, jobs  # noqa: E402
from webapp.extensions import redis_store  # noqa: E402
from webapp.generation import run_generation  # noqa: E402
from webapp.llm import Model, model_from_settings  # noqa: E402
from webapp.logs import configure  # noqa: E402

log = logging.getLogger("worker")

BACKOFF_START_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 10.0


class Worker:
    """Pops jobs and runs them concurrently until told to stop."""

    def __init__(self, app: Flask, model: Model | None = None, max_jobs: int | None = None) -> None:
        self.app = app
        self.model = model or model_from_settings(app.config)
        self.max_jobs = max_jobs
        self.pool = Pool(app.config["WORKER_CONCURRENCY"])
        self.stopping = Event()
        self.client = redis_store.client_for(app)
        pop_timeout = app.config["WORKER_POP_TIMEOUT_SECONDS"]
        self.pop_timeout = pop_timeout
        # The socket may wait a little longer than the pop itself blocks.
        self.popper = redis_store.blocking_client(app, read_timeout_seconds=pop_timeout + 5)

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("worker stopping: no new jobs, %d running", len(self.pool))
            self.stopping.set()

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, self.stop)
        log.info("worker ready concurrency=%d model=%s", self.pool.size, self.model.name)
        taken_count, backoff = 0, BACKOFF_START_SECONDS
        while not self.stopping.is_set():
            self.pool.wait_available()
            try:
                taken = jobs.pop(self.popper, self.pop_timeout)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("job pop failed, retrying in %.1fs: %s", backoff, exc)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
                continue
            backoff = BACKOFF_START_SECONDS
            if taken is None:
                continue
            self.pool.spawn(self._run, taken)
            taken_count += 1
            if self.max_jobs is not None and taken_count >= self.max_jobs:
                self.stop()
        grace = self.app.config["WORKER_SHUTDOWN_GRACE_SECONDS"]
        if not self.pool.join(timeout=grace):
            log.warning("worker exiting with %d generations unfinished", len(self.pool))
        log.info("worker stopped")

    def _run(self, taken: jobs.Taken) -> None:
        job = taken.job
        log.info("job taken session=%s message=%s attempt=%d",
                 job.session_id, job.message_id, job.attempt)
        try:
            run_generation(self.app, self.model, job)
        finally:
            jobs.ack(self.client, taken)


def main() -> None:
    app = create_app()
    configure(app.config["LOG_LEVEL"])
    Worker(app).run()


if __name__ == "__main__":
    main()
