"""Every Redis key and channel name, in one place.

Keys of one session carry the session id as a hash tag (`{sid}`), so they all
live in one Redis Cluster slot and one Lua script may touch them together
(https://redis.io/docs/reference/cluster-spec/#hash-tags). The two job lists
share the `{jobs}` tag so `BLMOVE` can move a job between them.

    relay:{jobs}:queued            list    jobs waiting for a worker (LPUSH / BLMOVE)
    relay:{jobs}:processing        list    jobs a worker has taken and not finished
    relay:{jobs}:leases            zset    processing job -> lease expiry (Redis server ms)
    relay:{<sid>}:stream           stream  the session's events (start, chunk, end, error)
    relay:{<sid>}:active           hash    the active generation: message_id, attempt, cancel
    relay:{<sid>}:meta             hash    last_id written, floor (everything <= floor is gone),
                                           the last claimed and the last finished message
    relay:{<sid>}:idem:<key>       string  the answer to a prompt post with that Idempotency-Key
    relay:rate:<address>:<window>  string  prompts counted in a rate-limit window
    relay:cache:<sha256>           string  a cached answer (cache.py), with a TTL
    relay:events                   channel one notice per appended event (see hub.py)
"""

from __future__ import annotations

PREFIX = "relay"

JOBS_QUEUED = f"{PREFIX}:{{jobs}}:queued"
JOBS_PROCESSING = f"{PREFIX}:{{jobs}}:processing"
JOBS_LEASES = f"{PREFIX}:{{jobs}}:leases"

# Pub/sub is not keyed, so one channel serves every session; each web
# process filters the notices for the sessions its clients follow.
EVENTS_CHANNEL = f"{PREFIX}:events"

# The meta hash outlives the stream so a reader can tell "expired" from "new".
META_TTL_FACTOR = 24


def stream(session_id: str) -> str:
    return f"{PREFIX}:{{{session_id}}}:stream"


def active(session_id: str) -> str:
    return f"{PREFIX}:{{{session_id}}}:active"


def meta(session_id: str) -> str:
    return f"{PREFIX}:{{{session_id}}}:meta"


def idempotency(session_id: str, key_digest: str) -> str:
    return f"{PREFIX}:{{{session_id}}}:idem:{key_digest}"


IDEMPOTENCY_TTL_SECONDS = 24 * 3600


def answer_cache(digest: str) -> str:
    return f"{PREFIX}:cache:{digest}"


def rate_limit(address: str, window: int) -> str:
    return f"{PREFIX}:rate:{address}:{window}"


def session_key_pattern(session_id: str) -> str:
    """A SCAN pattern matching every key of one session (ids hold no glob characters)."""
    return f"{PREFIX}:{{{session_id}}}:*"


def session_keys(session_id: str) -> list[str]:
    """The keys every stream-writing script takes, in its KEYS order."""
    return [stream(session_id), active(session_id), meta(session_id)]
