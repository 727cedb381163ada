"""One session's newest entries in a web process, shared by every client there that follows it.

The hub (hub.py) keeps one `Channel` per followed session and feeds it: from
notices as entries are written, from range reads when it must catch up.

Every entry with `base < id <= newest` is in `entries`: what the channel
holds is one contiguous run, and `merge` adds only runs that extend it, so a
reader of the channel sees each entry once, in order. Trimming moves `base`
forward over the oldest entries; a follower whose cursor is then older than
`base` reads on from Redis (hub.py), strictly after its cursor, so it too
sees each entry once. Caught-up followers may attach a `Sink` (held_streams.py's
held streams, parked_polls.py's parked polls): the channel then hands them each
new run as it merges it, and moves their cursor along.

Memory (issue 18): every entry's bytes, its encodings once they are made,
count against the process's budget (buffers.py), which trims channels when
it is passed: first history (entries before the answer under way), then the
answer's own entries, never what a follower reading the buffer still has
ahead of it. Encodings are kept only while a reader may still ask for them:
once every follower reading the buffer is past an entry, its encodings go
(a sink's encodings are made and used within one merge).

Refresh: when a notice cannot be merged (a gap, or a channel not placed
yet), the hub fills the gap with range reads (hub.py, `refresh`). Where that
stands is one value, `refresh`, whose moves are the table `REFRESH_MOVES`;
any other move raises IllegalMove (STYLE.md, habit 16).
"""

from __future__ import annotations

import bisect
import enum
import heapq
import itertools
import logging
from typing import Protocol

from gevent.event import Event

from webapp.exceptions import IllegalMove
from webapp.read.buffers import Budget
from webapp.read.entries import Entry
from webapp.storage import events
from webapp.storage.events import id_key

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


def _key(entry: Entry) -> tuple[int, int]:
    return id_key(entry.id)


# Ties between two encoded-entry records of one entry id (one process-wide order).
_order = itertools.count()


class RefreshState(enum.Enum):
    """Where a channel's refresh stands: the range reads that fill what notices left out."""

    CURRENT = "current"  # nothing known to be missing, and no refresher runs
    STALE = "stale"  # a notice went unmerged and no refresher runs: the next catch-up starts one
    DUE = "due"  # a refresher runs and must read (again): a gap, or news during its read
    READING = "reading"  # a refresher's range read is under way, nothing new since it began


# Every move a channel's refresh may make, read top to bottom; any other raises.
REFRESH_MOVES: dict[RefreshState, frozenset[RefreshState]] = {
    # A notice unmerged on an unplaced channel; or a gap, a reconnect: a refresher starts.
    RefreshState.CURRENT: frozenset({RefreshState.STALE, RefreshState.DUE}),
    # A follower's catch-up placed the channel and finds it stale: a refresher starts.
    RefreshState.STALE: frozenset({RefreshState.DUE}),
    # The refresher reads; or stops, the channel cleared meanwhile (nothing to read after).
    RefreshState.DUE: frozenset({RefreshState.READING, RefreshState.STALE}),
    # News during the read, or Redis failed: read again; else the channel is current.
    RefreshState.READING: frozenset({RefreshState.DUE, RefreshState.CURRENT}),
}


class Refresh:
    """One channel's refresh: its state, moved only as REFRESH_MOVES allows (hub.py drives it)."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = RefreshState.CURRENT

    @property
    def running(self) -> bool:
        """Whether a refresher runs for the channel (the hub starts one at most)."""
        return self.state is RefreshState.DUE or self.state is RefreshState.READING

    def move(self, to: RefreshState) -> None:
        """Move to `to`; IllegalMove unless REFRESH_MOVES allows it."""
        if to not in REFRESH_MOVES[self.state]:
            raise IllegalMove("channel refresh", self.state.value, to.value)
        self.state = to

    def fall_behind(self) -> None:
        """A notice went unmerged: the read under way goes again, or the next catch-up reads."""
        if self.state is RefreshState.CURRENT:
            self.move(RefreshState.STALE)
        elif self.state is RefreshState.READING:
            self.move(RefreshState.DUE)


class Channel:
    """The newest entries of one session, shared by its local followers."""

    # One per followed session: at 10,000 sessions, each attribute's dict slot counts.
    __slots__ = ("session_id", "budget", "base", "entries", "bytes", "_encoded", "answer_start")
    __slots__ += ("changed", "_followers", "refresh", "idle_since", "owner", "deleted")

    def __init__(self, session_id: str, budget: Budget | None = None) -> None:
        self.session_id = session_id
        self.budget = budget if budget is not None else Budget(None)
        # Every entry with base < id <= newest is in `entries`.
        self.base: str | None = None  # None until the first read placed us
        self.entries: list[Entry] = []
        self.bytes = 0  # what `entries` hold, encodings included (Entry.size)
        # Entries that may hold encodings, oldest first: (id key, order, entry).
        self._encoded: list[tuple[tuple[int, int], int, Entry]] = []
        # The `start` of the answer under way, while its end has not come.
        self.answer_start: str | None = None
        self.changed = Event()
        # Every open follower, with its sink while the channel writes to it
        # (see Sink); None while it reads `after()` itself (a reader).
        self._followers: dict[Positioned, Sink | None] = {}
        self.refresh = Refresh()
        self.idle_since = 0.0
        # The session's owner once a view looked it up (it never changes), so
        # access checks need no SQL; None: not known here (sessions.ensure).
        self.owner: str | None = None
        self.deleted = False

    @property
    def newest(self) -> str | None:
        return self.entries[-1].id if self.entries else self.base

    @property
    def followers(self) -> int:
        return len(self._followers)

    @property
    def live(self) -> dict[Positioned, Sink]:
        """The followers the channel writes to, with their sinks."""
        return {f: sink for f, sink in self._followers.items() if sink is not None}

    # -- followers ---------------------------------------------------------------

    def join(self, follower: Positioned) -> None:
        self._followers[follower] = None

    def leave(self, follower: Positioned) -> None:
        self._followers.pop(follower, None)
        self.forget_encodings()
        if self.budget.over():  # what it kept for this reader may go now
            self.trim_history()

    def attach(self, follower: Positioned, sink: Sink) -> None:
        self._followers[follower] = sink

    def detach(self, follower: Positioned) -> None:
        if follower in self._followers:
            self._followers[follower] = None

    def detach_all(self) -> None:
        live = self.live
        self._followers.update(dict.fromkeys(live))
        for sink in live.values():
            sink.detach()

    # -- entries -----------------------------------------------------------------

    def place(self, base: str) -> None:
        """Anchor an empty channel: nothing after `base` is missing from it."""
        if self.base is None:
            self.base = base

    def merge(self, after: str, entries: list[Entry]) -> None:
        """Add a contiguous run of entries that follows `after`."""
        newest = self.newest
        if newest is None or id_key(after) > id_key(newest):
            return  # not contiguous with what we hold
        newest_key = id_key(newest)
        fresh = [e for e in entries if id_key(e.id) > newest_key]
        if not fresh:
            return
        for entry in fresh:
            self._take(entry)
        self.entries.extend(fresh)
        newest = fresh[-1].id
        for follower, sink in list(self._followers.items()):
            if sink is not None:
                follower.cursor = newest
                sink.deliver(fresh)
        self.forget_encodings()
        self.wake()
        self.budget.settle()

    def _take(self, entry: Entry) -> None:
        entry.meter = self
        self._count(entry.size)
        if entry.encoded_size:  # made before it came here
            self.encoded(entry, 0, True)
        if entry.event == events.START:
            self.answer_start = entry.id
        elif entry.event in events.FINAL_EVENTS:
            self.answer_start = None

    def after(self, cursor: str) -> list[Entry] | None:
        """Buffered entries after `cursor`, or None if the buffer does not reach back."""
        if self.base is None or id_key(cursor) < id_key(self.base):
            return None
        start = bisect.bisect_right(self.entries, id_key(cursor), key=_key)
        return self.entries[start:]

    # -- memory --------------------------------------------------------------------

    def encoded(self, entry: Entry, size: int, first: bool) -> None:
        """An entry of ours made an encoding (entries.Meter): count it, and drop it later."""
        self._count(size)
        if first:
            heapq.heappush(self._encoded, (id_key(entry.id), next(_order), entry))

    def _count(self, size: int) -> None:
        self.bytes += size
        self.budget.used += size

    def oldest_reading(self) -> tuple[int, int] | None:
        """The oldest cursor of a follower reading the buffer (not Redis), or None."""
        cursors = [f.cursor for f, sink in self._followers.items() if sink is None]
        if not cursors or self.base is None:
            return None
        base = id_key(self.base)
        return min((c for c in map(id_key, cursors) if c >= base), default=None)

    def forget_encodings(self) -> None:
        """Drop the encodings of entries that every follower reading the buffer is past."""
        if self._encoded:
            self._forget_through(self.oldest_reading())

    def _forget_through(self, last: tuple[int, int] | None) -> None:
        forgotten = 0
        while self._encoded and (last is None or self._encoded[0][0] <= last):
            forgotten += heapq.heappop(self._encoded)[2].forget_encodings()
        self._count(-forgotten)

    def trim_history(self) -> None:
        """Trim what no follower reads and the answer under way does not need."""
        end = self._unread_end()
        if self.answer_start is not None:
            end = min(end, bisect.bisect_left(self.entries, id_key(self.answer_start), key=_key))
        self._trim(end)

    def trim_unread(self) -> None:
        """Trim whatever no follower reading the buffer has ahead of it."""
        self._trim(self._unread_end())

    def _unread_end(self) -> int:
        """How many of the oldest entries no follower reading the buffer has ahead of it."""
        oldest = self.oldest_reading()
        if oldest is None:
            return len(self.entries)
        return bisect.bisect_right(self.entries, oldest, key=_key)

    def _trim(self, end: int) -> None:
        """Drop the oldest `end` entries, moving `base` past them."""
        if end <= 0:
            return
        self._forget_through(id_key(self.entries[end - 1].id))
        for entry in self.entries[:end]:
            entry.meter = None
            self._count(-entry.size)
        self.base = self.entries[end - 1].id
        del self.entries[:end]

    def release(self) -> None:
        """Give back every byte held: the channel is forgotten or reset."""
        self._trim(len(self.entries))
        self.base, self.answer_start = None, None

    # -- lifecycle -----------------------------------------------------------------

    def shut_down(self) -> None:
        """The process stops: end the held streams and wake every waiting reader."""
        if held := len(self.live):  # held streams end here; sse.py logs the others as they end
            log.info("sse closed for shutdown session=%s held=%d", self.session_id, held)
        self.detach_all()
        self.wake()

    def wake(self) -> None:
        woken, self.changed = self.changed, Event()
        woken.set()

    def clear(self) -> None:
        """Forget everything: the next follower read goes to Redis (and may reset)."""
        self.release()
        self.detach_all()
        self.wake()

    def end(self) -> None:
        """The session was deleted: held streams end, waiting followers wake and stop."""
        self.deleted = True
        self.clear()
