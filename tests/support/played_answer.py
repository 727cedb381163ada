"""The worker's side of an answer in steps, played by a test: the writes API.md's Tools section fixes.

Tests of the web's tool routes (the AI SDK's continuation in
tests/test_chat_tools.py) run a real web over a Redis of their own with no
worker, and write what a worker would, in the order the contract gives:
the answer's stream entries through the real StreamWriter (fenced by the
attempt), and its journal through journal.py (a step recorded before its
calls run, a pause before `waiting`, the due attempt resuming before its
`start`). So they do not depend on how the worker's loop is built, only on
what it writes; tests that need the real loop say so. `end` stores the
answer in SQL first, as a worker does ("`end` means stored"), with the
parts its events fold to.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from flask import Flask

from tests.support.processes import wait_for
from webapp.storage import events, jobs, journal, keys, models
from webapp.storage.journal import NewCall
from webapp.storage.parts import Parts
from webapp.write.writer import StreamWriter

TTL_SECONDS = 3600
MAXLEN = 10_000


def queued_job(client: redis.Redis, session_id: str, *, resume: bool) -> jobs.Job:
    """Wait for the web to queue a job of this session (a prompt's, or a resume); take it."""

    def found() -> jobs.Job | None:
        for raw in client.lrange(keys.JOBS_QUEUED, 0, -1):
            job = jobs.Job.loads(raw)
            if job.session_id == session_id and job.resume == resume:
                client.lrem(keys.JOBS_QUEUED, 1, raw)
                return job
        return None

    return wait_for(found, timeout=30, what=f"a {'resume' if resume else 'new'} job")  # type: ignore[return-value]


class PlayedAnswer:
    """One answer's attempts as a worker writes them; the test calls each write in order."""

    def __init__(self, app: Flask, client: redis.Redis, session_id: str, message_id: str) -> None:
        self.app, self.client = app, client
        self.session_id, self.message_id = session_id, message_id
        self.attempt = 0
        self.writer: StreamWriter | None = None
        self.parts = Parts()  # what this attempt's events fold to (a resumed step folds again)

    def _take(self, attempt: int) -> None:
        self.attempt = attempt
        self.writer = StreamWriter(
            self.client,
            self.session_id,
            self.message_id,
            attempt,
            stream_ttl_seconds=TTL_SECONDS,
            maxlen=MAXLEN,
        )

    def begin(self, attempt: int = jobs.FIRST_ATTEMPT) -> PlayedAnswer:
        """An attempt takes the stream over: the first owns it from the web's claim, a later begins."""
        if attempt != jobs.FIRST_ATTEMPT:
            job = jobs.Job(self.session_id, self.message_id, attempt)
            assert jobs.begin(self.client, job), "the attempt is stale"
        self._take(attempt)
        return self

    def resume(self, attempt: int) -> PlayedAnswer:
        """The attempt an input made due goes on with the paused answer."""
        assert journal.resume(self.client, self.session_id, self.message_id, attempt)
        self._take(attempt)
        return self

    def write(self, event: str, data: str) -> None:
        assert self.writer is not None
        written = self.writer.append(event, data)
        assert not written.fenced, f"{event} was fenced off"
        self.parts.apply(event, json.loads(data))

    def start(self, from_step: int = 0) -> None:
        data = events.start_data(
            self.message_id, model="m", attempt=self.attempt, cached=False, from_step=from_step
        )
        self.write(events.START, data)

    def chunk(self, text: str, step: int = 0) -> None:
        self.write(events.CHUNK, events.chunk_data(self.message_id, text, step))

    def call(
        self,
        call_id: str,
        name: str,
        arguments: Any,
        *,
        step: int = 0,
        runs_on: str = events.RUNS_ON_SERVER,
        approval_id: str | None = None,
    ) -> None:
        data = events.tool_call_data(
            self.message_id,
            step=step,
            call_id=call_id,
            name=name,
            arguments=arguments,
            runs_on=runs_on,
            approval_id=approval_id,
        )
        self.write(events.TOOL_CALL, data)

    def record_step(self, step: int, calls: list[NewCall]) -> None:
        outcome = journal.record_step(
            self.client, self.session_id, self.message_id, self.attempt, step, {}, calls
        )
        assert outcome.status == "ok", outcome

    def result(
        self,
        call_id: str,
        status: str = events.TOOL_OK,
        output: Any = None,
        error: str | None = None,
        step: int = 0,
    ) -> None:
        data = events.tool_result_data(
            self.message_id, step=step, call_id=call_id, status=status, output=output, error=error
        )
        self.write(events.TOOL_RESULT, data)

    def pause(self, *waits: tuple[str, str]) -> None:
        """Pause for these (call_id, kind) inputs, then say so: `waiting`."""
        paused = journal.pause(
            self.client, self.session_id, self.message_id, self.attempt, list(waits)
        )
        assert paused == "paused", paused
        self.write(events.WAITING, events.waiting_data(self.message_id, list(waits)))

    def end(self, steps: int, tool_calls: int, text_length: int = 0) -> None:
        """Store the answer in SQL, then write `end`: the parts of the steps this attempt wrote."""
        assert self.writer is not None
        with self.app.app_context():
            assert models.finish_answer(
                self.session_id,
                self.message_id,
                self.attempt,
                status=models.DONE,
                content=self.parts.content,
                chunk_count=1,
                reasoning=self.parts.reasoning,
                parts=json.dumps(self.parts.items),
                finish_reason=events.FINISH_STOP,
            )
        data = events.end_data(
            self.message_id,
            finish_reason=events.FINISH_STOP,
            usage=None,
            duration_ms=1,
            chunks=1,
            text_length=text_length,
            steps=steps,
            tool_calls=tool_calls,
        )
        assert not self.writer.finish(events.END, data).fenced
