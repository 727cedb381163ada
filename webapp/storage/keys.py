"""The Redis protocol, whole: every key, hash field and notice, and the Lua scripts.

Keys of one session carry the session id as a hash tag (`{sid}`), so they all
live in one Redis Cluster slot and one Lua script may touch them together
(https://redis.io/docs/reference/cluster-spec/#hash-tags). The two job lists
share the `{jobs}` tag so `BLMOVE` can move a job between them.

    relay:{jobs}:queued            list    jobs waiting for a worker (LPUSH / BLMOVE)
    relay:{jobs}:processing        list    jobs a worker has taken and not finished
    relay:{jobs}:leases            zset    processing job -> lease expiry (Redis server ms)
    relay:{<sid>}:stream           stream  the session's events: fields `event`, `data`
    relay:{<sid>}:active           hash    the active generation: `message_id`, `attempt`,
                                           `seq` (its last write), `cancel` ("1": stop)
    relay:{<sid>}:meta             hash    `last_id` written, `floor` (every entry at or
                                           below it is gone), `claimed` (the last claimed
                                           message), `done_message_id`, `done_attempt`,
                                           `done_seq` (the last final write)
    relay:{<sid>}:journal          hash    the active answer's tool steps (journal.py):
                                           `message_id`, `step:<n>` (a step's model
                                           output), `call:<call_id>` (a tool call's
                                           progress), `paused`, `waits`, `resume_attempt`
    relay:{<sid>}:idem:<key>       string  the answer to a prompt post with that
                                           Idempotency-Key (idempotency.py)
    relay:rate:<address>:<window>  string  prompts counted in a rate-limit window
    relay:new:<digest>:<window>    string  new sessions counted in a window, per
                                           client (the digest of its subject: limits.py)
    relay:cache:<sha256>           string  a cached answer (cache.py), with a TTL
    relay:{metrics}:generation     hash    figures workers record; its fields are
                                           metrics.py's own (it alone writes and reads them)
    relay:{metrics}:waiting        set     `<sid> <mid>` of each answer waiting for a
                                           person or the front end (metrics.py's gauge)
    relay:events                   channel one `Notice` per appended event (hub.py)

Who touches what: writer.py alone writes streams (append.lua, finish.lua),
reader.py alone reads them; jobs.py owns the job lists and the `active` claim;
journal.py owns the journal of tool steps.

The Lua scripts live in `lua/`, one file each, read and hashed once when this
module is imported. They run by EVALSHA; a Redis that does not know a script
(it restarted) is sent the source once and asked again. A line
`-- include: <part>.lua` pulls in a shared part (a file whose name starts
with `_`), so the fence of every stream write is written once.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, NamedTuple

import redis

PREFIX = "relay"

JOBS_QUEUED = f"{PREFIX}:{{jobs}}:queued"
JOBS_PROCESSING = f"{PREFIX}:{{jobs}}:processing"
JOBS_LEASES = f"{PREFIX}:{{jobs}}:leases"

# Pub/sub is not keyed, so one channel serves every session; each web
# process filters the notices for the sessions its clients follow.
EVENTS_CHANNEL = f"{PREFIX}:events"

METRICS_GENERATION = f"{PREFIX}:{{metrics}}:generation"
METRICS_WAITING = f"{PREFIX}:{{metrics}}:waiting"

# The meta hash outlives the stream so a reader can tell "expired" from "new".
META_TTL_FACTOR = 24
IDEMPOTENCY_TTL_SECONDS = 24 * 3600


def stream(session_id: str) -> str:
    return f"{PREFIX}:{{{session_id}}}:stream"


def active(session_id: str) -> str:
    return f"{PREFIX}:{{{session_id}}}:active"


def meta(session_id: str) -> str:
    return f"{PREFIX}:{{{session_id}}}:meta"


def journal(session_id: str) -> str:
    return f"{PREFIX}:{{{session_id}}}:journal"


def idempotency(session_id: str, key_digest: str) -> str:
    return f"{PREFIX}:{{{session_id}}}:idem:{key_digest}"


def idempotency_index(session_id: str) -> str:
    """A set naming the session's idempotency keys, so a delete finds them without SCAN."""
    return f"{PREFIX}:{{{session_id}}}:idem-index"


def answer_cache(digest: str) -> str:
    return f"{PREFIX}:cache:{digest}"


def rate_limit(address: str, window: int) -> str:
    return f"{PREFIX}:rate:{address}:{window}"


def session_rate_limit(subject: str, window: int) -> str:
    """New sessions counted for one subject (a token's `sub` or an address) in a window.

    Hashed: a `sub` is the team's to choose and may hold any character,
    `{` and `}` (a Cluster hash tag) included.
    """
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    return f"{PREFIX}:new:{digest}:{window}"


def session_keys(session_id: str) -> list[str]:
    """The keys every stream-writing script takes, in its KEYS order."""
    return [stream(session_id), active(session_id), meta(session_id)]


# -- fields (the Lua scripts spell them too: they are part of this protocol) --

# A stream entry.
ENTRY_EVENT = "event"
ENTRY_DATA = "data"

# `active(sid)`.
ACTIVE_MESSAGE_ID = "message_id"
ACTIVE_ATTEMPT = "attempt"
ACTIVE_SEQ = "seq"
ACTIVE_CANCEL = "cancel"
CANCEL_REQUESTED = "1"

# `meta(sid)`.
META_LAST_ID = "last_id"
META_FLOOR = "floor"
META_CLAIMED = "claimed"
META_DONE_MESSAGE_ID = "done_message_id"
META_DONE_ATTEMPT = "done_attempt"
META_DONE_SEQ = "done_seq"

# The journal (journal.py): a step's output and a call's progress live under
# these prefixes; the rest are the pause's fields.
JOURNAL_MESSAGE_ID = "message_id"
JOURNAL_STEP = "step:"
JOURNAL_CALL = "call:"
JOURNAL_PAUSED = "paused"
JOURNAL_WAITS = "waits"
JOURNAL_RESUME_ATTEMPT = "resume_attempt"
PAUSE_WAITING = "waiting"
PAUSE_RESUMING = "resuming"
# What journal_pause.lua answers besides `fenced`: the answer paused (its
# reply spells the field it sets), every input came already, or a cancel did.
PAUSED = JOURNAL_PAUSED
GO_ON = "go_on"
CANCELLED = "cancelled"

HASH_FIELDS = frozenset(
    {
        ACTIVE_MESSAGE_ID,
        ACTIVE_ATTEMPT,
        ACTIVE_SEQ,
        ACTIVE_CANCEL,
        META_LAST_ID,
        META_FLOOR,
        META_CLAIMED,
        META_DONE_MESSAGE_ID,
        META_DONE_ATTEMPT,
        META_DONE_SEQ,
        JOURNAL_MESSAGE_ID,
        JOURNAL_PAUSED,
        JOURNAL_WAITS,
        JOURNAL_RESUME_ATTEMPT,
    }
)


# -- the notice ----------------------------------------------------------------


class Notice(NamedTuple):
    """What every stream write publishes on EVENTS_CHANNEL (built in _fence_and_append.lua).

    One line of text, fields split by single spaces, `data` last because it
    may hold spaces: `<session_id> <prev_id> <entry_id> <event> <data>`.
    `prev_id` is the session's entry before this one ("0-0" for its first),
    which lets a reader see that it missed none.
    """

    session_id: str
    prev_id: str
    entry_id: str
    event: str
    data: str


# Not a stream event: the notice that a session was deleted (sessions.py), so
# every web process ends its readers. Both ids are 0-0: no entry follows 0-0,
# so a hub that does not know this event ignores it.
SESSION_DELETED = "deleted"


def deleted_notice(session_id: str) -> str:
    """The notice of a deleted session, shaped like every notice."""
    return f"{session_id} 0-0 0-0 {SESSION_DELETED} {{}}"


def parse_notice(text: str) -> Notice:
    """Split a notice into its fields; ValueError if it is not one."""
    parts = text.split(" ", 4)
    if len(parts) != len(Notice._fields):
        raise ValueError(f"not a notice: {text[:200]!r}")
    return Notice(*parts)


# -- the Lua scripts -------------------------------------------------------------

LUA_FOLDER = Path(__file__).resolve().parent / "lua"
_INCLUDE = re.compile(r"^-- include: (_\w+\.lua)$", re.MULTILINE)


def lua_source(name: str) -> str:
    """The text of `lua/<name>.lua`, with its `-- include:` lines replaced by those parts."""
    text = (LUA_FOLDER / f"{name}.lua").read_text()
    return _INCLUDE.sub(lambda match: (LUA_FOLDER / match[1]).read_text().rstrip("\n"), text)


class Script:
    """One Lua script, run by its SHA on whichever client is given."""

    __slots__ = ("name", "source", "sha")

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = lua_source(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def __call__(self, client: redis.Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self.load(client)
            return client.evalsha(self.sha, len(keys), *keys, *args)

    def load(self, client: redis.Redis) -> None:
        """Teach Redis the script (after it restarted and forgot it)."""
        client.script_load(self.source)


# Stream writes (writer.py).
APPEND = Script("append")
FINISH = Script("finish")
# A session's one active generation (jobs.py).
CLAIM = Script("claim")
RELEASE = Script("release")
CANCEL = Script("cancel")
BEGIN = Script("begin")
# Job leases (jobs.py).
LEASE = Script("lease")
RENEW = Script("renew")
EXPIRED = Script("expired")
TAKE_BACK = Script("take_back")
# The journal of tool steps (journal.py).
JOURNAL_STEP_SCRIPT = Script("journal_step")
JOURNAL_CALL_SCRIPT = Script("journal_call")
JOURNAL_PAUSE = Script("journal_pause")
JOURNAL_INPUT = Script("journal_input")
JOURNAL_RESUME = Script("journal_resume")
JOURNAL_WAKE = Script("journal_wake")
JOURNAL_RETIRE = Script("journal_retire")
# Rate limits (limits.py).
COUNT = Script("count")
