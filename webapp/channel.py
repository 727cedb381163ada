"""One session's newest entries in a web process, shared by every client there that follows it.

The hub (hub.py) keeps one `Channel` per followed session and feeds it: from
notices as entries are written, from range reads when it must catch up.
A channel holds the newest `BUFFER_ENTRIES` (up to twice that before it
trims), each encoded once for every client (events.Entry).

Every entry with `base < id <= newest` is in `entries`: what the channel
holds is one contiguous run, and `merge` adds only runs that extend it, so a
reader of the channel sees each entry once, in order. Caught-up followers
may attach a `Sink` (sockets.py's held streams): the channel then hands
them each new run as it merges it, and moves their cursor along.
"""

from __future__ import annotations

import bisect
import logging
from typing import Protocol

from gevent.event import Event

from .events import Entry, id_key

BUFFER_ENTRIES = 2048

log = logging.getLogger(__name__)


class Positioned(Protocol):
    """A follower, as a channel sees it: a cursor the channel moves as it delivers."""

    cursor: str


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
        self.live: dict[Positioned, Sink] = {}
        self.refreshing = False
        self.dirty = False
        self.idle_since = 0.0
        # The session's owner once a view looked it up (it never changes), so
        # access checks need no SQL; None: not known here (sessions.ensure).
        self.owner: str | None = None
        self.deleted = False

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

    def shut_down(self) -> None:
        """The process stops: end the held streams and wake every waiting reader."""
        if self.live:  # held streams end here; sse.py logs the others as they end
            log.info("sse closed for shutdown session=%s held=%d", self.session_id, len(self.live))
        self.detach_all()
        self.wake()

    def wake(self) -> None:
        woken, self.changed = self.changed, Event()
        woken.set()

    def clear(self) -> None:
        """Forget everything: the next follower read goes to Redis (and may reset)."""
        self.base, self.entries, self._keys = None, [], []
        self.detach_all()
        self.wake()

    def end(self) -> None:
        """The session was deleted: held streams end, waiting followers wake and stop."""
        self.deleted = True
        self.clear()

    def after(self, cursor: str) -> list[Entry] | None:
        """Buffered entries after `cursor`, or None if the buffer does not reach back."""
        if self.base is None or id_key(cursor) < id_key(self.base):
            return None
        start = bisect.bisect_right(self._keys, id_key(cursor))
        return self.entries[start:]
