"""The read side: follow session streams for every client of this web process.

SSE responses and long-polls both read through a `Follower`, which hands out
the entries after its cursor, in order, each exactly once. Behind it:

- One `Channel` per session that has local followers keeps the newest
  entries in memory (`BUFFER_ENTRIES`), each encoded once and shared.
- One listener greenlet per process holds one pub/sub connection. Every
  stream write publishes a `keys.Notice` naming the entry before it;
  when `prev_id` is the channel's newest id the entry is appended directly,
  so a live entry costs no extra Redis read however many clients follow it.
  When a notice shows a gap (a lost notice, a reconnect) the channel is
  refreshed with a range read from its newest id.
- A follower whose cursor is older than the buffer catches up with range
  reads, then reads from the buffer: both are "entries strictly after my
  cursor" on the same stream, so there is no gap and no duplicate.
- A caught-up SSE follower may attach a `Sink`: from then on the channel
  hands every new entry to the sink as it merges it (sockets.py writes it
  to the client's socket), and no greenlet waits for that client. A
  follower attaches only while its cursor is the channel's newest id, and
  every merge extends exactly that id, so a sink too sees each entry once.
  A channel that must forget what it holds (a reset) detaches its sinks.

Deliberate choices:
- Notices, not blocking XREADs: pub/sub takes and drops sessions freely on
  one connection, and works on Redis Cluster, where an XREAD over many
  sessions' keys would span slots.
- A reader never writes a stream. A cursor older than what is retained
  raises `Reset`, carrying the oldest cursor that is still whole.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from typing import Protocol

import gevent
import redis
from flask import Flask
from gevent.event import Event

from . import keys
from .events import ZERO_ID, Entry, id_key
from .exceptions import HubClosed, Reset
from .extensions import redis_store

log = logging.getLogger(__name__)

BUFFER_ENTRIES = 2048
CATCH_UP_BATCH = 1000
RECONNECT_BACKOFF_MAX_SECONDS = 1.0
# A long-poll loop leaves its channel between two polls: keep it (and its
# buffer, still fed by notices) this long, so the next poll reads no Redis.
CHANNEL_LINGER_SECONDS = 30.0


class Sink(Protocol):
    """Where a channel writes new entries for one caught-up follower."""

    def deliver(self, entries: list[Entry]) -> None:
        """Take entries right after the previous ones; must not block or raise."""

    def detach(self) -> None:
        """The channel stopped delivering (a reset, a shutdown)."""


class Channel:
    """The newest entries of one session, shared by its local followers."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.followers = 0
        # Every entry with base < id <= newest is in `entries`.
        self.base: str | None = None  # None until the first read placed us
        self.entries: list[Entry] = []
        self._keys: list[tuple[int, int]] = []
        self.changed = Event()
        # Caught-up followers the channel writes to itself (see Sink).
        self.live: dict[Follower, Sink] = {}
        self.refreshing = False
        self.dirty = False
        self.idle_since = 0.0

    @property
    def newest(self) -> str | None:
        return self.entries[-1].id if self.entries else self.base

    def place(self, base: str) -> None:
        """Anchor an empty channel: nothing after `base` is missing from it."""
        if self.base is None:
            self.base = base

    def merge(self, after: str, entries: list[Entry]) -> None:
        """Add a contiguous run of entries that follows `after`."""
        newest = self.newest
        if newest is None or id_key(after) > id_key(newest):
            return  # not contiguous with what we hold
        fresh = [e for e in entries if id_key(e.id) > id_key(newest)]
        if not fresh:
            return
        self.entries.extend(fresh)
        self._keys.extend(id_key(e.id) for e in fresh)
        if len(self.entries) > BUFFER_ENTRIES * 2:
            dropped = len(self.entries) - BUFFER_ENTRIES
            self.base = self.entries[dropped - 1].id
            del self.entries[:dropped], self._keys[:dropped]
        newest = fresh[-1].id
        for follower, sink in list(self.live.items()):
            follower.cursor = newest
            sink.deliver(fresh)
        self.wake()

    def detach_all(self) -> None:
        live, self.live = self.live, {}
        for sink in live.values():
            sink.detach()

    def wake(self) -> None:
        woken, self.changed = self.changed, Event()
        woken.set()

    def clear(self) -> None:
        """Forget everything: the next follower read goes to Redis (and may reset)."""
        self.base, self.entries, self._keys = None, [], []
        self.detach_all()
        self.wake()

    def after(self, cursor: str) -> list[Entry] | None:
        """Buffered entries after `cursor`, or None if the buffer does not reach back."""
        if self.base is None or id_key(cursor) < id_key(self.base):
            return None
        start = bisect.bisect_right(self._keys, id_key(cursor))
        return self.entries[start:]


class Hub:
    """Follows the session streams that this process's clients read."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._client: redis.Redis = redis_store.client_for(app)
        self._channels: dict[str, Channel] = {}
        self._listener: gevent.Greenlet | None = None
        self._last_sweep = 0.0
        self.closed = False

    def close(self) -> None:
        """End every follower's wait (SIGTERM): streams close and clients reconnect."""
        self.closed = True
        for channel in list(self._channels.values()):
            channel.detach_all()
            channel.wake()

    # -- followers -------------------------------------------------------

    def follows(self, session_id: str) -> bool:
        """Whether this process already follows the session (so it exists: none is deleted)."""
        return session_id in self._channels

    def follow(self, session_id: str, cursor: str) -> Follower:
        self._ensure_listening()
        channel = self._channels.get(session_id)
        if channel is None:
            channel = self._channels[session_id] = Channel(session_id)
        channel.followers += 1
        return Follower(self, channel, cursor)

    def _unfollow(self, channel: Channel) -> None:
        """Drop a follower; an unfollowed channel lingers so a long-poll loop finds it again."""
        channel.followers -= 1
        if channel.followers <= 0:
            channel.idle_since = time.monotonic()
            self._forget_idle_channels()

    def _forget_idle_channels(self) -> None:
        """Forget channels nobody followed for CHANNEL_LINGER_SECONDS (checked at most once a second)."""
        now = time.monotonic()
        if now - self._last_sweep < 1.0:
            return
        self._last_sweep = now
        for session_id, channel in list(self._channels.items()):
            if channel.followers <= 0 and now - channel.idle_since > CHANNEL_LINGER_SECONDS:
                del self._channels[session_id]

    def read_after(self, channel: Channel, cursor: str) -> list[Entry]:
        """Range-read entries after `cursor` from Redis and share them with the channel."""
        stream, meta = keys.stream(channel.session_id), keys.meta(channel.session_id)
        with self._client.pipeline(transaction=False) as pipe:
            pipe.xrange(stream, min=f"({cursor}", count=CATCH_UP_BATCH)
            pipe.exists(stream)
            pipe.hmget(meta, keys.META_FLOOR, keys.META_LAST_ID)
            rows, exists, (floor, last_id) = pipe.execute()
        # When the stream expired, everything up to its last id is gone.
        floor = (floor if exists else last_id) or ZERO_ID
        if cursor != ZERO_ID and id_key(cursor) < id_key(floor):
            raise Reset(floor)
        entries = [Entry.from_redis(entry_id, fields) for entry_id, fields in rows]
        channel.place(max(cursor, floor, key=id_key))
        channel.merge(cursor, entries)
        return entries

    def catch_up(self, channel: Channel, cursor: str) -> list[Entry]:
        """A follower's range read; then re-read for notices that came meanwhile."""
        entries = self.read_after(channel, cursor)
        if channel.dirty:
            self.refresh(channel)
        return entries

    # -- the listener ----------------------------------------------------

    def _ensure_listening(self) -> None:
        if self._listener is None or self._listener.dead:
            self._listener = gevent.spawn(self._listen_forever)

    def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            try:
                self._listen()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                log.warning("hub lost its pub/sub connection, retrying in %.1fs: %s", backoff, exc)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX_SECONDS)
            except Exception:
                log.exception("hub listener failed, restarting in %.1fs", backoff)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX_SECONDS)
            else:
                backoff = 0.1

    def _listen(self) -> None:
        client = redis_store.pubsub_client(self._app)
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(keys.EVENTS_CHANNEL)
            for message in pubsub.listen():
                if message["type"] == "subscribe":
                    # Notices sent while we were not listening are lost: re-read.
                    for channel in list(self._channels.values()):
                        self.refresh(channel)
                elif message["type"] == "message":
                    try:
                        self._on_notice(message["data"])
                    except ValueError:
                        log.error("hub ignored a malformed notice %r", message["data"][:200])
        finally:
            pubsub.close()
            client.close()

    def _on_notice(self, text: str) -> None:
        notice = keys.parse_notice(text)
        channel = self._channels.get(notice.session_id)
        if channel is None:
            return
        newest = channel.newest
        if newest is None or channel.refreshing:
            channel.dirty = True
        elif newest == notice.prev_id:
            channel.merge(notice.prev_id, [Entry(notice.entry_id, notice.event, notice.data)])
        elif id_key(notice.entry_id) > id_key(newest):
            self.refresh(channel)  # a gap: some notice was lost

    def refresh(self, channel: Channel) -> None:
        """Bring the channel up to date with a range read, in the background."""
        if channel.refreshing:
            channel.dirty = True
            return
        channel.refreshing = True
        gevent.spawn(self._refresh_until_clean, channel)

    def _refresh_until_clean(self, channel: Channel) -> None:
        """Range-read until no notice came meanwhile; retry through Redis outages."""
        backoff = 0.1
        channel.dirty = True
        try:
            while channel.dirty and channel.newest is not None:
                channel.dirty = False
                if channel.followers <= 0:
                    channel.clear()  # nobody waits: the next follower reads Redis itself
                    break
                try:
                    while len(self.read_after(channel, channel.newest)) == CATCH_UP_BATCH:
                        pass
                except Reset:
                    # We missed more than is retained: followers must reset too.
                    log.warning("hub channel fell behind the stream session=%s", channel.session_id)
                    channel.clear()
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning(
                        "hub refresh failed, retrying in %.1fs session=%s: %s",
                        backoff,
                        channel.session_id,
                        exc,
                    )
                    channel.dirty = True
                    gevent.sleep(backoff)
                    backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX_SECONDS)
        finally:
            channel.refreshing = False


class Follower:
    """One client's position in a session stream."""

    def __init__(self, hub: Hub, channel: Channel, cursor: str) -> None:
        self._hub = hub
        self._channel = channel
        self.cursor = cursor
        self._closed = False

    def next_batch(self, timeout_seconds: float, limit: int | None = None) -> list[Entry]:
        """Up to `limit` entries after the cursor, waiting up to `timeout_seconds` for some.

        Returns [] on timeout; raises Reset if the cursor is no longer retained.
        """
        deadline = time.monotonic() + max(timeout_seconds, 0.0)
        while True:
            if self._hub.closed:
                raise HubClosed()
            changed = self._channel.changed
            entries = self._channel.after(self.cursor)
            if entries is None:
                entries = self._hub.catch_up(self._channel, self.cursor)
            if entries:
                entries = entries[:limit]
                self.cursor = entries[-1].id
                return entries
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not changed.wait(remaining):
                return []

    def caught_up(self) -> bool:
        """Whether the cursor is the channel's newest id, which every merge extends."""
        return not self._hub.closed and self._channel.newest == self.cursor

    def attach(self, sink: Sink) -> None:
        """Have the channel deliver every new entry to `sink` (only when caught up)."""
        assert self.caught_up(), "a sink attaches at the channel's newest id only"
        self._channel.live[self] = sink

    def detach(self) -> None:
        self._channel.live.pop(self, None)

    def wait_until(self, done: Callable[[Entry], bool], timeout_seconds: float) -> bool:
        """Read on until an entry satisfies `done` or the time runs out."""
        deadline = time.monotonic() + timeout_seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if any(done(entry) for entry in self.next_batch(remaining)):
                return True
        return False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.detach()
            self._hub._unfollow(self._channel)

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def get_hub(app: Flask) -> Hub:
    """The process's hub, created on first use (after gunicorn forked us)."""
    hub = app.extensions.get("relay.hub")
    if hub is None:
        hub = app.extensions["relay.hub"] = Hub(app)
    return hub


def close_hub(app: Flask) -> None:
    """End this process's streams now (called on SIGTERM, see gunicorn.conf.py)."""
    hub = app.extensions.get("relay.hub")
    if hub is not None:
        hub.close()
