"""The worker loop (webapp/write/worker.py), in process, on a Redis and a database of its own.

It runs in a gevent-patched child (the `gevent` marker): the loop, its side
loops and the generations are greenlets, as in `python worker.py`. Prompts
go in through the real API (Flask's test client); the model is the test
model server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from tests.conftest import dispose, make_app
from tests.support.model_server import ModelServer, default_chunks
from tests.support.processes import RedisServer, wait_for
from webapp.storage import jobs, keys
from webapp.storage.extensions import db, redis_store
from webapp.storage.models import Message
from webapp.write.lifecycle import State
from webapp.write.worker import Worker

pytestmark = pytest.mark.gevent


class Setup:
    """An app on a private Redis and SQLite file, and how to post prompts into it."""

    def __init__(self, base_env: dict[str, str], log_dir: Path, name: str, **settings: Any):
        self.redis = RedisServer(log_dir).start()
        env = dict(
            base_env,
            REDIS_URL=self.redis.url,
            DATABASE_URL=f"sqlite:///{log_dir / f'{name}.sqlite3'}",
        )
        self.app = make_app(env, **settings)
        self.client = redis_store.client_for(self.app)
        self.http = self.app.test_client()

    def post(self, prompt: str) -> tuple[str, str]:
        """(session id, answer id) of a new session's first prompt."""
        session_id = self.http.post("/api/sessions").get_json()["session_id"]
        response = self.http.post(f"/api/sessions/{session_id}/messages", json={"content": prompt})
        assert response.status_code == 202, response.get_data(as_text=True)
        return session_id, response.get_json()["message_id"]

    def events(self, session_id: str) -> list[tuple[str, dict[str, Any]]]:
        entries = self.client.xrange(keys.stream(session_id))
        return [
            (fields[keys.ENTRY_EVENT], json.loads(fields[keys.ENTRY_DATA])) for _, fields in entries
        ]

    def row(self, message_id: str) -> Message:
        with self.app.app_context():
            message = db.session.scalar(db.select(Message).where(Message.id == message_id))
            db.session.expunge(message)
            db.session.remove()
            return message

    def close(self) -> None:
        dispose(self.app)
        self.redis.stop()


@pytest.fixture()
def setup(base_env: dict[str, str], log_dir: Path, request: pytest.FixtureRequest):
    made: list[Setup] = []

    def make(**settings: Any) -> Setup:
        made.append(Setup(base_env, log_dir, f"{request.node.name}-{len(made)}", **settings))
        return made[-1]

    yield make
    for one in made:
        one.close()


def running(worker: Worker) -> Iterator[gevent.Greenlet]:
    return gevent.spawn(worker.run, handle_signals=False)


def test_a_job_runs_to_its_end_and_is_acked(setup, model_server: ModelServer, unique: str) -> None:
    stack = setup()
    prompt = f"worker runs {unique}"
    session_id, message_id = stack.post(prompt)

    Worker(stack.app, max_jobs=1).run(handle_signals=False)

    names = [name for name, _ in stack.events(session_id)]
    assert names == ["start", *["chunk"] * len(default_chunks(prompt)), "end"]
    assert stack.client.llen(keys.JOBS_PROCESSING) == 0
    assert stack.client.zcard(keys.JOBS_LEASES) == 0
    row = stack.row(message_id)
    assert (row.status, row.content) == ("done", "".join(default_chunks(prompt)))


def test_stop_hands_running_jobs_back_as_their_next_attempt(
    setup, model_server: ModelServer, unique: str
) -> None:
    stack = setup(WORKER_SHUTDOWN_GRACE_SECONDS=0.2)
    prompt = f"worker hands back {unique}"
    behavior = model_server.behave(prompt, chunks=["one ", "two"], gate_after=1)
    session_id, message_id = stack.post(prompt)
    worker = Worker(stack.app)
    loop = running(worker)
    try:
        wait_for(lambda: len(stack.events(session_id)) == 2, what="the first chunk")
        (generation,) = [r.generation for r in worker.running.values()]
        worker.stop()
        loop.join(timeout=20)
        assert loop.dead
        assert generation.state is State.HANDED_BACK
        (queued,) = stack.client.lrange(keys.JOBS_QUEUED, 0, -1)
        assert jobs.Job.loads(queued).attempt == 2
        assert stack.client.llen(keys.JOBS_PROCESSING) == 0
        assert [name for name, _ in stack.events(session_id)] == ["start", "chunk"]
    finally:
        behavior.gate.set()
        loop.kill()


def test_the_reaper_runs_a_lost_workers_job_again_as_the_next_attempt(
    setup, model_server: ModelServer, unique: str
) -> None:
    stack = setup(JOB_LEASE_SECONDS=0.4)
    prompt = f"worker reaps {unique}"
    session_id, message_id = stack.post(prompt)
    # Another worker took the job and died: its lease runs out at once.
    taken = jobs.pop(stack.client, 1)
    assert jobs.lease(stack.client, 0.001, [taken.raw]) == 1

    Worker(stack.app, max_jobs=1).run(handle_signals=False)

    starts = [data for name, data in stack.events(session_id) if name == "start"]
    assert [start["attempt"] for start in starts] == [2]
    row = stack.row(message_id)
    assert (row.status, row.attempt) == ("done", 2)


def test_the_reaper_fails_a_job_lost_on_its_last_attempt(setup, unique: str) -> None:
    stack = setup(JOB_LEASE_SECONDS=0.4, JOB_MAX_ATTEMPTS=2)
    session_id, message_id = stack.post(f"worker gives up {unique}")
    taken = jobs.pop(stack.client, 1)
    last = jobs.next_attempt(taken.job)  # attempt 2 of 2 was lost too
    stack.client.lrem(keys.JOBS_PROCESSING, 1, taken.raw)
    stack.client.lpush(keys.JOBS_PROCESSING, last.dumps())
    jobs.lease(stack.client, 0.001, [last.dumps()])
    worker = Worker(stack.app)
    loop = running(worker)
    try:
        wait_for(lambda: stack.events(session_id), timeout=10, what="the final event")
    finally:
        worker.stop()
        loop.join(timeout=20)
    ((name, data),) = stack.events(session_id)
    assert (name, data["error"]["code"]) == ("error", "worker_lost")
    row = stack.row(message_id)
    assert (row.status, row.error_code) == ("error", "worker_lost")
    assert stack.client.llen(keys.JOBS_PROCESSING) == stack.client.llen(keys.JOBS_QUEUED) == 0


def test_a_cancel_stops_an_answer_whose_model_went_silent(
    setup, model_server: ModelServer, unique: str
) -> None:
    stack = setup()
    prompt = f"worker cancels {unique}"
    model_server.behave(prompt, chunks=["one ", "two"], stall_after=1)
    session_id, message_id = stack.post(prompt)
    worker = Worker(stack.app, max_jobs=1)
    loop = running(worker)
    try:
        wait_for(lambda: len(stack.events(session_id)) == 2, what="the first chunk")
        assert jobs.request_cancel(stack.client, session_id, message_id)
        loop.join(timeout=20)
        assert loop.dead, "the silent model's answer must end on the cancel"
    finally:
        loop.kill()
    name, data = stack.events(session_id)[-1]
    assert (name, data["finish_reason"], data["chunks"]) == ("end", "cancelled", 1)
    assert stack.row(message_id).status == "cancelled"


def test_lost_redis_backs_off_instead_of_spinning(setup, caplog: pytest.LogCaptureFixture) -> None:
    stack = setup(WORKER_POP_TIMEOUT_SECONDS=0.1)
    worker = Worker(stack.app)
    stack.redis.stop()
    with caplog.at_level(logging.WARNING, logger="webapp.write.worker"):
        loop = running(worker)
        wait_for(
            lambda: sum("job pop failed" in r.message for r in caplog.records) >= 3,
            what="three failed pops",
        )
        failed = [r.message for r in caplog.records if "job pop failed" in r.message]
        worker.stop()
        loop.join(timeout=10)
    assert loop.dead, "stop() ends the backoff's wait"
    assert failed[:3] == [
        f"job pop failed, retrying in {seconds}s: " + failed[i].split(": ", 1)[1]
        for i, seconds in enumerate(("0.2", "0.4", "0.8"))
    ]
