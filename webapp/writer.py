"""The only code that writes session streams: fenced appends as Lua scripts.

Each write is one script run on the session's keys (one Cluster slot), so the
checks and the write are atomic:

- Fencing: a write goes through only while the session's `active` hash still
  names this message and attempt. A worker whose job was taken over (a
  higher attempt) or already finished writes nothing more (API.md, Events).
- Cancellation: the reply tells the writer whether a cancel was requested,
  so checking costs no extra round trip.
- Retention: the final write (end or error) releases the session, trims the
  stream to STREAM_MAXLEN and sets its TTL. The `meta` hash records the last
  id written and the `floor` (every entry at or below it is gone), which is
  how readers tell an old cursor (reset) from a current one.
- Notification: every append publishes `<sid> <prev_id> <id> <event> <data>`
  on one channel, which the hub of each web process follows (see hub.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from . import keys

# KEYS: stream, active, meta. ARGV: message_id, attempt, event, data, channel, session_id.
_FENCE_AND_APPEND = """
local active = redis.call('HMGET', KEYS[2], 'message_id', 'attempt', 'cancel')
if active[1] ~= ARGV[1] or active[2] ~= ARGV[2] then return {'', '0'} end
local prev = redis.call('HGET', KEYS[3], 'last_id')
if prev and redis.call('EXISTS', KEYS[1]) == 0 then
  -- the stream expired since: everything up to its last id is gone
  redis.call('HSET', KEYS[3], 'floor', prev)
end
local id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[3], 'data', ARGV[4])
redis.call('HSET', KEYS[3], 'last_id', id)
redis.call('PERSIST', KEYS[1])
redis.call('PUBLISH', ARGV[5],
  ARGV[6] .. ' ' .. (prev or '0-0') .. ' ' .. id .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
"""

_APPEND = _FENCE_AND_APPEND + """
return {id, active[3] or '0'}
"""

# ARGV continued: stream_ttl, maxlen, meta_ttl.
_FINISH = _FENCE_AND_APPEND + """
redis.call('DEL', KEYS[2])
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[8])
if excess > 0 then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[8])
  redis.call('HSET', KEYS[3], 'floor', gone[#gone][1])
end
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[9])
return {id, '0'}
"""


@dataclass(frozen=True, slots=True)
class Written:
    """Outcome of one write: the new entry id ('' when fenced off)."""

    entry_id: str
    cancel_requested: bool

    @property
    def fenced(self) -> bool:
        return not self.entry_id


class StreamWriter:
    """Writes one generation's events, fenced by its message id and attempt."""

    def __init__(
        self,
        client: redis.Redis,
        session_id: str,
        message_id: str,
        attempt: int,
        *,
        stream_ttl_seconds: int,
        maxlen: int,
    ) -> None:
        self._client = client
        self._keys = keys.session_keys(session_id)
        self._session_id = session_id
        self._fence = (message_id, str(attempt))
        self._stream_ttl = stream_ttl_seconds
        self._maxlen = maxlen
        self._append = client.register_script(_APPEND)
        self._finish = client.register_script(_FINISH)

    def _args(self, event: str, data: str) -> list[str]:
        return [*self._fence, event, data, keys.EVENTS_CHANNEL, self._session_id]

    def append(self, event: str, data: str) -> Written:
        entry_id, cancel = self._append(keys=self._keys, args=self._args(event, data))
        return Written(entry_id, cancel == "1")

    def finish(self, event: str, data: str) -> Written:
        """Write the final event, release the session and apply retention."""
        meta_ttl = self._stream_ttl * keys.META_TTL_FACTOR
        args = [*self._args(event, data), self._stream_ttl, self._maxlen, meta_ttl]
        entry_id, _ = self._finish(keys=self._keys, args=args)
        return Written(entry_id, False)
