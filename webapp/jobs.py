"""The job list: the web side claims and enqueues, the worker side pops and acks.

A job is a small JSON document naming the assistant message to generate;
the prompt and history live in SQL. Popping moves the job atomically from
the queued list to the processing list (`BLMOVE`), so a worker that dies
holding a job leaves it there to be found, never lost; `ack` removes it once
its stream has ended.

A session has at most one active generation. Its `active` hash is claimed
before the prompt is stored and released only by the script that writes the
final event, so "queued counts as active" (API.md) holds across processes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

import redis

from . import keys

log = logging.getLogger(__name__)

# Returns the message id already active, or nil after claiming for ARGV[1].
_CLAIM = """
local current = redis.call('HGET', KEYS[1], 'message_id')
if current then return current end
redis.call('HSET', KEYS[1], 'message_id', ARGV[1], 'attempt', ARGV[2])
return false
"""

# Undo a claim whose prompt could not be stored or queued.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'message_id') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Ask the active generation to stop; the worker sees it on its next write.
_CANCEL = """
if redis.call('HGET', KEYS[1], 'message_id') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Job:
    session_id: str
    message_id: str
    attempt: int = 1
    enqueued_at: float = 0.0

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str) -> "Job":
        fields = json.loads(raw)
        return cls(
            session_id=str(fields["session_id"]),
            message_id=str(fields["message_id"]),
            attempt=int(fields.get("attempt", 1)),
            enqueued_at=float(fields.get("enqueued_at", 0.0)),
        )


def claim(client: redis.Redis, session_id: str, message_id: str) -> str | None:
    """Make `message_id` the session's active generation.

    Returns None on success, or the id of the generation already active.
    """
    return client.eval(_CLAIM, 1, keys.active(session_id), message_id, 1)


def release(client: redis.Redis, session_id: str, message_id: str) -> None:
    client.eval(_RELEASE, 1, keys.active(session_id), message_id)


def request_cancel(client: redis.Redis, session_id: str, message_id: str) -> bool:
    """Flag the generation for cancellation; False if it is not the active one."""
    return bool(client.eval(_CANCEL, 1, keys.active(session_id), message_id))


def active_message_id(client: redis.Redis, session_id: str) -> str | None:
    return client.hget(keys.active(session_id), "message_id")


def enqueue(client: redis.Redis, session_id: str, message_id: str) -> Job:
    job = Job(session_id, message_id, attempt=1, enqueued_at=time.time())
    client.lpush(keys.JOBS_QUEUED, job.dumps())
    log.info("job queued session=%s message=%s", session_id, message_id)
    return job


@dataclass(frozen=True, slots=True)
class Taken:
    """A job popped by a worker, with the exact text needed to ack it."""

    job: Job
    raw: str


def pop(blocking_client: redis.Redis, timeout_seconds: float) -> Taken | None:
    """Wait up to `timeout_seconds` for a job and move it to the processing list."""
    raw = blocking_client.blmove(
        keys.JOBS_QUEUED, keys.JOBS_PROCESSING, timeout_seconds, "RIGHT", "LEFT"
    )
    if raw is None:
        return None
    try:
        return Taken(Job.loads(raw), raw)
    except (ValueError, KeyError, TypeError):
        # A job nobody can run would be popped forever: drop it, loudly.
        log.error("dropping malformed job %r", raw)
        blocking_client.lrem(keys.JOBS_PROCESSING, 1, raw)
        return None


def ack(client: redis.Redis, taken: Taken) -> None:
    """Forget a finished job."""
    client.lrem(keys.JOBS_PROCESSING, 1, taken.raw)


def queue_depth(client: redis.Redis) -> tuple[int, int]:
    """(queued, processing) job counts."""
    with client.pipeline(transaction=False) as pipe:
        pipe.llen(keys.JOBS_QUEUED)
        pipe.llen(keys.JOBS_PROCESSING)
        queued, processing = pipe.execute()
    return int(queued), int(processing)
