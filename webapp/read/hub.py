"""The read side: follow session streams for every client of this web process.

SSE responses and long-polls both read through a `Follower` (follower.py),
which hands out the entries after its cursor, in order, each exactly once.
Behind it:

- One `Channel` per session that has local followers keeps the newest
  entries in memory (channel.py), each encoded once and shared, all
  channels within one byte budget per process (buffers.py).
- One listener greenlet per process holds one pub/sub connection. Every
  stream write publishes a `keys.Notice` naming the entry before it;
  when `prev_id` is the channel's newest id the entry is appended directly,
  so a live entry costs no extra Redis read however many clients follow it.
  When a notice shows a gap (a lost notice, a reconnect) the channel is
  refreshed with a range read from its newest id (its `Refresh` state and
  the table of its moves are in channel.py).
- A follower whose cursor is older than the buffer catches up with range
  reads, then reads from the buffer: both are "entries strictly after my
  cursor" on the same stream, so there is no gap and no duplicate.
- A caught-up SSE follower may attach a `Sink`: from then on the channel
  hands every new entry to the sink as it merges it (held_streams.py writes it
  to the client's socket), and no greenlet waits for that client. A
  follower attaches only while its cursor is the channel's newest id, and
  every merge extends exactly that id, so a sink too sees each entry once.
  A channel that must forget what it holds (a reset) detaches its sinks.

The hub is a Flask extension: `hub.init_app(app)` gives each app (one per
process) its own `Hub`, and views reach it through the module's `hub`.

Deliberate choices:
- Notices, not blocking XREADs: pub/sub takes and drops sessions freely on
  one connection, and works on Redis Cluster, where an XREAD over many
  sessions' keys would span slots.
- The hub reads streams through reader.py and never writes them. A cursor
  older than what is retained raises `Reset`, carrying the oldest cursor
  that is still whole.
"""

from __future__ import annotations

import logging
import time

import gevent
import redis
from flask import Flask, current_app

from webapp.exceptions import HubClosed, Reset
from webapp.read import reader
from webapp.read.buffers import Budget
from webapp.read.channel import Channel, RefreshState
from webapp.read.entries import Entry
from webapp.read.follower import Follower
from webapp.storage import events, keys
from webapp.storage.events import id_key
from webapp.storage.extensions import redis_store

log = logging.getLogger(__name__)

RECONNECT_BACKOFF_MAX_SECONDS = 1.0
# A long-poll loop leaves its channel between two polls: keep it (and its
# buffer, still fed by notices) this long, so the next poll reads no Redis.
CHANNEL_LINGER_SECONDS = 30.0


class Hub:
    """Follows the session streams that this process's clients read."""

    def __init__(self, app: Flask, *, buffer_bytes: int | None = None) -> None:
        self._app = app
        self._client: redis.Redis = redis_store.client_for(app)
        self._channels: dict[str, Channel] = {}
        limit = app.config["HUB_BUFFER_BYTES"] if buffer_bytes is None else buffer_bytes
        self.budget = Budget(limit, self._channels.values)
        self._listener: gevent.Greenlet | None = None
        self._last_sweep = 0.0
        self.closed = False

    def close(self) -> None:
        """End every follower's wait (SIGTERM): streams close and clients reconnect."""
        self.closed = True
        for channel in list(self._channels.values()):
            channel.shut_down()

    # -- followers -------------------------------------------------------

    def channel(self, session_id: str) -> Channel | None:
        """The session's channel, if this process follows it (so it exists: none is deleted)."""
        return self._channels.get(session_id)

    def note_owner(self, session_id: str, owner: str | None) -> None:
        """Keep the owner a view found in SQL on the session's channel (it never changes)."""
        if (channel := self._channels.get(session_id)) is not None:
            channel.owner = owner

    def end_session(self, session_id: str) -> None:
        """The session was deleted: forget it, end its held streams, wake its readers."""
        if (channel := self._channels.pop(session_id, None)) is not None:
            log.info("hub ended a deleted session's readers session=%s", session_id)
            channel.end()

    def follow(self, session_id: str, cursor: str) -> Follower:
        self._ensure_listening()
        channel = self._channels.get(session_id)
        if channel is None:
            channel = self._channels[session_id] = Channel(session_id, self.budget)
        follower = Follower(self, channel, cursor)
        channel.join(follower)
        return follower

    def unfollow(self, channel: Channel, follower: Follower) -> None:
        """Drop a follower; an unfollowed channel lingers so a long-poll loop finds it again."""
        channel.leave(follower)
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
                channel.release()

    def read_after(
        self, channel: Channel, cursor: str, count: int = reader.CATCH_UP_BATCH
    ) -> list[Entry]:
        """Range-read entries after `cursor` from Redis and share them with the channel."""
        entries, base = reader.read_after(self._client, channel.session_id, cursor, count)
        if len(entries) < count:  # the end: a full batch may stop short of it
            channel.place(base)
        channel.merge(cursor, entries)
        return entries

    def catch_up(self, channel: Channel, cursor: str, count: int | None = None) -> list[Entry]:
        """A follower's range read of up to `count`; then re-read for notices that came meanwhile."""
        entries = self.read_after(channel, cursor, count or reader.CATCH_UP_BATCH)
        if channel.refresh.state is RefreshState.STALE:
            self.refresh(channel)
        return entries

    # -- what the views ask ----------------------------------------------

    def wait_until_at_rest(
        self, session_id: str, message_id: str, cursor: str, timeout_seconds: float
    ) -> None:
        """Return once the message's `end`, `error` or `waiting` is after `cursor`, or the time is up.

        The request waits on the hub, not on a Redis connection; a reset or a
        shutdown ends the wait early (the caller answers with what SQL and
        the stream hold then).
        """

        def is_at_rest(entry: Entry) -> bool:  # a waiting answer says nothing more for now
            return entry.event in events.AT_REST_EVENTS and (
                entry.parsed().get("message_id") == message_id
            )

        try:
            with self.follow(session_id, cursor) as follower:
                follower.wait_until(is_at_rest, timeout_seconds)
        except (Reset, HubClosed):
            pass

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
        if notice.event == keys.SESSION_DELETED:
            self.end_session(notice.session_id)
            return
        channel = self._channels.get(notice.session_id)
        if channel is None:
            return
        newest = channel.newest
        if newest is None or channel.refresh.running:
            channel.refresh.fall_behind()
        elif newest == notice.prev_id:
            channel.merge(notice.prev_id, [Entry(notice.entry_id, notice.event, notice.data)])
        elif id_key(notice.entry_id) > id_key(newest):
            self.refresh(channel)  # a gap: some notice was lost

    def refresh(self, channel: Channel) -> None:
        """Bring the channel up to date with a range read, in the background."""
        if channel.refresh.running:
            channel.refresh.fall_behind()  # the refresher reads again
            return
        channel.refresh.move(RefreshState.DUE)
        gevent.spawn(self._refresh_until_current, channel)

    def _refresh_until_current(self, channel: Channel) -> None:
        """Range-read until no notice came meanwhile; retry through Redis outages."""
        backoff = 0.1
        try:
            while channel.refresh.state is RefreshState.DUE and channel.newest is not None:
                channel.refresh.move(RefreshState.READING)
                if channel.followers <= 0:
                    channel.clear()  # nobody waits: the next follower reads Redis itself
                    break
                try:
                    while len(self.read_after(channel, channel.newest)) == reader.CATCH_UP_BATCH:
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
                    channel.refresh.fall_behind()
                    gevent.sleep(backoff)
                    backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX_SECONDS)
        finally:
            # Read up to the newest id: current. Due still, with nothing to read after: stale.
            reading = channel.refresh.state is RefreshState.READING
            channel.refresh.move(RefreshState.CURRENT if reading else RefreshState.STALE)


class HubExtension:
    """The process's hub as a Flask extension: `init_app` makes one `Hub` per app."""

    def init_app(self, app: Flask) -> None:
        # No connection and no greenlet yet: the listener starts with the
        # first follower, in the process that serves it.
        app.extensions["relay.hub"] = Hub(app)

    @staticmethod
    def of(app: Flask) -> Hub:
        return app.extensions["relay.hub"]

    def _current(self) -> Hub:
        return current_app.extensions["relay.hub"]

    def follows(self, session_id: str) -> bool:
        return self._current().channel(session_id) is not None

    def follow(self, session_id: str, cursor: str) -> Follower:
        return self._current().follow(session_id, cursor)

    def owner(self, session_id: str) -> str | None:
        """The owner a view found for a followed session; None when not known here."""
        channel = self._current().channel(session_id)
        return channel.owner if channel is not None else None

    def note_owner(self, session_id: str, owner: str | None) -> None:
        self._current().note_owner(session_id, owner)

    def wait_until_at_rest(
        self, session_id: str, message_id: str, cursor: str, timeout_seconds: float
    ) -> None:
        self._current().wait_until_at_rest(session_id, message_id, cursor, timeout_seconds)

    def close(self, app: Flask) -> None:
        """End this process's streams now (on SIGTERM, see gunicorn.conf.py)."""
        self.of(app).close()


hub = HubExtension()
