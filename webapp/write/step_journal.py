"""One attempt's view of its answer's journal: the storage/journal.py protocol, bound and retried.

The generation loop records through a `StepJournal` bound to its session,
message and attempt (every write fenced by that attempt), so the loop's
code says what it records, not how; tests/test_generation.py records into
memory instead (tests/support/recorders.py).

`RedisStepJournal` retries a call that meets a Redis error, with backoff,
for up to `retry_seconds`, as the stream writer does (writer.retried): a Redis
restart pauses a tool step instead of failing the answer. Each script is
safe to run twice: a step's record and a call's result are first-write-wins,
a pause is the same pause, and a call this attempt started already is seen
as this attempt's own (`start_call` below).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import redis

from webapp.storage import jobs, journal
from webapp.storage.jobs import Job
from webapp.storage.journal import Journal, NewCall, Outcome
from webapp.write.writer import retried

T = TypeVar("T")


class StepJournal(Protocol):
    """The journal of one answer, as one attempt writes it (storage/journal.py has the rules)."""

    def read(self) -> Journal | None: ...

    def record_step(self, step: int, output: dict[str, Any], calls: list[NewCall]) -> Outcome: ...

    def start_call(self, call_id: str) -> Outcome:
        """`ok` (this attempt may run it), `running` (an earlier attempt did), `final` or `fenced`."""
        ...

    def record_result(self, call_id: str, result: dict[str, Any]) -> Outcome: ...

    def pause(self, waits: list[tuple[str, str]]) -> str: ...

    def resume(self) -> bool: ...

    def retire(self) -> None:
        """The answer ended: its journal expires as its stream does."""
        ...


class RedisStepJournal:
    """The journal in Redis, for `job`'s attempt."""

    def __init__(
        self, client: redis.Redis, job: Job, ttl_seconds: int, retry_seconds: float = 30.0
    ) -> None:
        self._client = client
        self._job = job
        self._ttl_seconds = ttl_seconds  # STREAM_TTL_SECONDS: kept as long as the stream
        self._retry_seconds = retry_seconds

    def _ids(self) -> tuple[redis.Redis, str, str]:
        return self._client, self._job.session_id, self._job.message_id

    def read(self) -> Journal | None:
        return self._retried(journal.read, *self._ids())

    def record_step(self, step: int, output: dict[str, Any], calls: list[NewCall]) -> Outcome:
        return self._retried(
            journal.record_step, *self._ids(), self._job.attempt, step, output, calls
        )

    def start_call(self, call_id: str) -> Outcome:
        found = self._retried(journal.start_call, *self._ids(), self._job.attempt, call_id)
        if found.status == journal.RUNNING and _started_by(found) == self._job.attempt:
            return Outcome(journal.OK)  # ours: a retry whose first reply was lost
        return found

    def record_result(self, call_id: str, result: dict[str, Any]) -> Outcome:
        return self._retried(
            journal.record_result, *self._ids(), self._job.attempt, call_id, result
        )

    def pause(self, waits: list[tuple[str, str]]) -> str:
        return self._retried(journal.pause, *self._ids(), self._job.attempt, waits)

    def resume(self) -> bool:
        tries = [0]

        def resume_once() -> bool:
            tries[0] += 1
            taken = journal.resume(*self._ids(), self._job.attempt)
            # A retry after a lost reply finds the answer resumed already: by us,
            # if the stream names our attempt (no other job takes that number).
            return taken or (tries[0] > 1 and jobs.owns(self._client, self._job))

        return self._retried(resume_once)

    def retire(self) -> None:
        journal.retire(*self._ids(), self._ttl_seconds)  # once: a failure costs only memory

    def _retried(self, call: Callable[..., T], *args: Any) -> T:
        ids = (self._job.session_id, self._job.message_id)
        return retried(lambda: call(*args), self._retry_seconds, "journal write", ids)


def _started_by(found: Outcome) -> int | None:
    """The attempt a `running` call's record says started it."""
    return journal.Call.parse("", found.record or "{}").attempt if found.record else None
