"""What a generation records besides its events: the attempt's claim, the SQL row, the counts.

A generation (generation.py, answer.py) does no I/O of its own. It writes
events through its `StreamWriter` (writer.py) and records everything else
through a `Ledger`, the interface below. `SqlLedger` is the real one, on
the SQL session of the current app context and the process's Redis client.
tests/test_generation.py records the calls instead, and so runs a
generation's whole life with no Redis, no database and no model server.
"""

from __future__ import annotations

from typing import Any, Protocol

import gevent
import redis

from webapp.ops import metrics
from webapp.storage import jobs, models
from webapp.storage.extensions import db
from webapp.storage.jobs import Job


class Ledger(Protocol):
    def begin(self, job: Job) -> bool:
        """Make this attempt the stream's only writer, from sequence 0; False if it is stale."""
        ...

    def take(self, job: Job, model: str) -> tuple[bool, list[models.Turn]]:
        """Own the answer row and read the session's turns: (whether owned, the turns)."""
        ...

    def stored(self, job: Job) -> models.Message | None:
        """The answer as SQL holds it now."""
        ...

    def store(self, job: Job, **fields: Any) -> bool:
        """Store the final answer (`models.finish_answer`'s fields); False if fenced off."""
        ...

    def pause(self, job: Job, **fields: Any) -> bool:
        """Store the answer so far as `waiting` (`models.pause_answer`); False if fenced off."""
        ...

    def rollback(self) -> None:
        """Drop what a failure may have left half-done in the SQL transaction."""
        ...

    def first_token(self, waited_seconds: float, *, reasoning: bool) -> None: ...

    def ended(
        self,
        *,
        finish_reason: str,
        duration_seconds: float,
        chunks: int,
        usage: dict[str, int] | None,
    ) -> None: ...

    def failed(self, code: str, chunks: int) -> None: ...

    def tool_result(self, tool: str, status: str, seconds: float | None) -> None: ...

    def waiting(self, job: Job, waiting: bool) -> None:
        """The answer paused for inputs (True), or an attempt goes on with it (False)."""
        ...


class SqlLedger:
    """The ledger of SQL (the current app context's session), Redis jobs and metrics."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def begin(self, job: Job) -> bool:
        return jobs.begin(self._client, job)

    def take(self, job: Job, model: str) -> tuple[bool, list[models.Turn]]:
        return models.take_answer(job.session_id, job.message_id, job.attempt, model)

    def stored(self, job: Job) -> models.Message | None:
        return models.find_message(job.session_id, job.message_id)

    def store(self, job: Job, **fields: Any) -> bool:
        return models.finish_answer(job.session_id, job.message_id, job.attempt, **fields)

    def pause(self, job: Job, **fields: Any) -> bool:
        return models.pause_answer(job.session_id, job.message_id, job.attempt, **fields)

    def rollback(self) -> None:
        db.session.rollback()

    def first_token(self, waited_seconds: float, *, reasoning: bool) -> None:
        metrics.first_token(self._client, waited_seconds, reasoning=reasoning)

    def ended(
        self,
        *,
        finish_reason: str,
        duration_seconds: float,
        chunks: int,
        usage: dict[str, int] | None,
    ) -> None:
        metrics.generation_ended(
            self._client,
            finish_reason=finish_reason,
            duration_seconds=duration_seconds,
            chunks=chunks,
            usage=usage,
        )

    def failed(self, code: str, chunks: int) -> None:
        metrics.generation_failed(self._client, code, chunks)

    def tool_result(self, tool: str, status: str, seconds: float | None) -> None:
        # In a greenlet of its own: its round trip must not delay the next step.
        gevent.spawn(metrics.tool_result, self._client, tool, status, seconds)

    def waiting(self, job: Job, waiting: bool) -> None:
        metrics.answer_waiting(self._client, job.session_id, job.message_id, waiting)
