"""The job list: the web side claims and enqueues, the worker side pops and acks.

A job is a small JSON document naming the assistant message to generate;
the prompt and history live in SQL. Popping moves the job atomically from
the queued list to the processing list (`BLMOVE`), so a worker that dies
holding a job leaves it there to be found, never lost; `ack` removes it once
its stream has ended.

Leases (issue 4): a worker holds each job it runs under a lease in the
`leases` sorted set, renewed every few seconds; expiry times are Redis server
time, so worker clocks do not matter. Any worker's reaper takes back a job
whose lease ran out: it moves the job back to the queue with `attempt + 1`
in one script, so it happens once however many reapers race. The new
attempt fences the old one off when it begins (`begin`). A processing entry
with no lease (its worker died between BLMOVE and leasing it) is adopted
with a fresh lease, so it too is taken back if nobody renews it.

A session has at most one active generation. Its `active` hash is claimed
before the prompt is stored and released only by the script that writes the
final event, so "queued counts as active" (API.md) holds across processes.
A claim expires after CLAIM_TTL_SECONDS unless its job is queued: a web
process that dies between claiming and queueing leaves no session blocked
for ever (the next prompt's POST fails the answer it left, see sessions.py).

The scripts that make each step atomic are lua/*.lua; keys.py names every
key and field they touch.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

import redis

from webapp.storage import keys

log = logging.getLogger(__name__)

# The web claims a session, stores the answer row and queues the job for this
# attempt; a job taken back from a lost worker runs again as attempt + 1.
FIRST_ATTEMPT = 1

# A POST takes well under a second from its claim to its job queued; one
# that has not queued it after this long died on the way.
CLAIM_TTL_SECONDS = 120


@dataclass(frozen=True, slots=True)
class Job:
    session_id: str
    message_id: str
    attempt: int = FIRST_ATTEMPT
    enqueued_at: float = 0.0
    # The attempt goes on with a paused answer (journal.py): it takes the
    # stream over with `journal.resume`, not `begin`.
    resume: bool = False
    # Attempts lost since the answer last went on (its first job, or a resume):
    # what JOB_MAX_ATTEMPTS bounds. An answer that waited for approvals has
    # used attempt numbers without losing a worker. None: none for a resume,
    # else `attempt - 1`.
    lost: int | None = None

    @property
    def lost_before(self) -> int:
        if self.lost is not None:
            return self.lost
        return 0 if self.resume else self.attempt - 1

    def dumps(self) -> str:
        fields = asdict(self)
        # Most jobs: the JSON stays as it was.
        if not self.resume:
            del fields["resume"]
        if self.lost is None:
            del fields["lost"]
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str) -> Job:
        fields = json.loads(raw)
        lost = fields.get("lost")
        return cls(
            session_id=str(fields["session_id"]),
            message_id=str(fields["message_id"]),
            attempt=int(fields.get("attempt", 1)),
            enqueued_at=float(fields.get("enqueued_at", 0.0)),
            resume=bool(fields.get("resume", False)),
            lost=None if lost is None else int(lost),
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """What `claim` found: the generation already active, or whether one was left unfinished."""

    active: str | None
    previous_unfinished: bool


def claim(client: redis.Redis, session_id: str, message_id: str) -> Claim:
    """Make `message_id` the session's active generation, unless one is active already.

    The claim expires unless `enqueue` follows. `previous_unfinished` says
    that the session's previous claim never reached its final event: its
    answer row may be left unfinished (a web process died mid-POST).
    """
    active, unfinished = keys.CLAIM(
        client,
        [keys.active(session_id), keys.meta(session_id)],
        [message_id, FIRST_ATTEMPT, CLAIM_TTL_SECONDS],
    )
    return Claim(active or None, unfinished == "1")


def release(client: redis.Redis, session_id: str, message_id: str) -> None:
    keys.RELEASE(client, [keys.active(session_id)], [message_id])


def request_cancel(client: redis.Redis, session_id: str, message_id: str) -> bool:
    """Flag the generation for cancellation; False if it is not the active one."""
    return bool(keys.CANCEL(client, [keys.active(session_id)], [message_id]))


def cancels_requested(client: redis.Redis, running: list[Job]) -> list[bool]:
    """For each running job, whether it must stop (one pipelined read).

    It must when its client asked it to, or when the session's `active` hash
    is gone: the session was deleted (sessions.delete_session) and nobody
    will read the answer.
    """
    with client.pipeline(transaction=False) as pipe:
        for job in running:
            pipe.hmget(keys.active(job.session_id), keys.ACTIVE_MESSAGE_ID, keys.ACTIVE_CANCEL)
        flags = pipe.execute()
    return [
        message_id is None or (message_id == job.message_id and cancel == keys.CANCEL_REQUESTED)
        for job, (message_id, cancel) in zip(running, flags, strict=True)
    ]


def enqueue(client: redis.Redis, session_id: str, message_id: str) -> Job:
    """Queue the claimed message's job; its claim then lasts until the final event."""
    job = Job(session_id, message_id, attempt=FIRST_ATTEMPT, enqueued_at=time.time())
    with client.pipeline(transaction=False) as pipe:  # two slots: one round trip, not atomic
        pipe.lpush(keys.JOBS_QUEUED, job.dumps())
        pipe.persist(keys.active(session_id))
        pipe.execute()
    log.info("job queued session=%s message=%s", session_id, message_id)
    return job


def enqueue_resume(client: redis.Redis, session_id: str, message_id: str, attempt: int) -> Job:
    """Queue the attempt due to go on with a paused answer (journal.give_input, journal.wake).

    Queued again by a retried input: the duplicate finds the attempt taken
    (journal.resume) and does nothing.
    """
    job = Job(session_id, message_id, attempt=attempt, enqueued_at=time.time(), resume=True)
    client.lpush(keys.JOBS_QUEUED, job.dumps())
    log.info("job queued session=%s message=%s attempt=%d resume", session_id, message_id, attempt)
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
    with client.pipeline(transaction=True) as pipe:
        pipe.lrem(keys.JOBS_PROCESSING, 1, taken.raw)
        pipe.zrem(keys.JOBS_LEASES, taken.raw)
        pipe.execute()


def lease(client: redis.Redis, ttl_seconds: float, raws: list[str]) -> int:
    """Put newly taken jobs under lease (only those still in the processing list)."""
    if not raws:
        return 0
    return keys.LEASE(
        client, [keys.JOBS_PROCESSING, keys.JOBS_LEASES], [int(ttl_seconds * 1000), *raws]
    )


def renew(client: redis.Redis, ttl_seconds: float, raws: list[str]) -> None:
    """Extend the leases of running jobs; a job taken back stays taken back."""
    if raws:
        keys.RENEW(client, [keys.JOBS_LEASES], [int(ttl_seconds * 1000), *raws])


def expired(client: redis.Redis, ttl_seconds: float, limit: int = 100) -> list[str]:
    """Jobs whose worker stopped renewing their lease."""
    return keys.EXPIRED(
        client, [keys.JOBS_PROCESSING, keys.JOBS_LEASES], [int(ttl_seconds * 1000), limit]
    )


def take_back(client: redis.Redis, raw: str, retry: Job | None, *, force: bool = False) -> bool:
    """Remove an expired job from processing and queue `retry` (None: drop it).

    True if this call took the job; False if its lease was renewed or
    another reaper took it first. `force` skips the expiry check: a worker
    handing back its own job at shutdown.
    """
    new_raw = retry.dumps() if retry is not None else ""
    return bool(
        keys.TAKE_BACK(
            client,
            [keys.JOBS_PROCESSING, keys.JOBS_LEASES, keys.JOBS_QUEUED],
            [raw, new_raw, "1" if force else "0"],
        )
    )


def begin(client: redis.Redis, job: Job) -> bool:
    """Make this attempt the one allowed to write, from sequence number 0; False if stale.

    Stale means an attempt as new or newer took the stream already: two jobs
    of one number (a reaper's and a resume's, see journal_resume.lua) must
    never both write, as their sequence numbers would collide.
    """
    return bool(keys.BEGIN(client, [keys.active(job.session_id)], [job.message_id, job.attempt]))


def owns(client: redis.Redis, job: Job) -> bool:
    """Whether the session's stream names this job's message and attempt as its writer."""
    owner = client.hmget(keys.active(job.session_id), keys.ACTIVE_MESSAGE_ID, keys.ACTIVE_ATTEMPT)
    return owner == [job.message_id, str(job.attempt)]


def next_attempt(job: Job) -> Job:
    """The attempt after a lost one: it begins (`begin`), even when the lost one resumed."""
    attempt, lost = job.attempt + 1, job.lost_before + 1
    # Lost as many as it is numbered after the first: the default, as loads() reads it.
    return Job(
        job.session_id,
        job.message_id,
        attempt,
        job.enqueued_at,
        lost=None if lost == attempt - 1 else lost,
    )


def queue_depth(client: redis.Redis) -> tuple[int, int]:
    """(queued, processing) job counts."""
    with client.pipeline(transaction=False) as pipe:
        pipe.llen(keys.JOBS_QUEUED)
        pipe.llen(keys.JOBS_PROCESSING)
        queued, processing = pipe.execute()
    return int(queued), int(processing)
