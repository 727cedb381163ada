"""One client's place in a session stream, and what a long-poll answers from there.

A `Follower` is what the hub (hub.py) hands out to every reader of a
session in this process: SSE responses, long-polls, `?wait=`, the AI SDK's
stream. It gives the entries after its cursor, in order, each exactly once:
from its channel's buffer when it reaches back far enough, else through the
hub's range reads (`catch_up`), and it may attach a sink once caught up
(channel.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

from webapp.exceptions import HubClosed, Reset, SessionDeleted
from webapp.read.channel import Channel, Sink
from webapp.read.entries import Entry


class Following(Protocol):
    """What a follower asks of its hub (hub.Hub)."""

    closed: bool

    def catch_up(self, channel: Channel, cursor: str, count: int | None = None) -> list[Entry]: ...

    def unfollow(self, channel: Channel, follower: Follower) -> None: ...


class Follower:
    """One client's position in a session stream."""

    def __init__(self, hub: Following, channel: Channel, cursor: str) -> None:
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
            if self._channel.deleted:
                raise SessionDeleted()
            changed = self._channel.changed
            entries = self._channel.after(self.cursor)
            if entries is None:
                entries = self._hub.catch_up(self._channel, self.cursor, limit)
            if entries:
                entries = entries[:limit]
                self.cursor = entries[-1].id
                return entries
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not changed.wait(remaining):
                return []

    @property
    def session_id(self) -> str:
        return self._channel.session_id

    def poll(self, timeout_seconds: float, limit: int) -> Poll:
        """A long-poll's answer from here: entries, or none after the wait, or a reset."""
        cursor = self.cursor
        try:
            batch = self.next_batch(timeout_seconds, limit)
        except HubClosed:
            return Poll([], cursor, reset=False)
        except Reset as exc:
            return Poll([], exc.floor, reset=True)
        return Poll(batch, batch[-1].id if batch else cursor, reset=False)

    def buffered_after(self, cursor: str) -> list[Entry] | None:
        """The channel's entries after `cursor`, or None if its buffer does not reach back."""
        return self._channel.after(cursor)

    def caught_up(self) -> bool:
        """Whether the cursor is the channel's newest id, which every merge extends."""
        channel = self._channel
        return not self._hub.closed and not channel.deleted and channel.newest == self.cursor

    def attach(self, sink: Sink) -> None:
        """Have the channel deliver every new entry to `sink` (only when caught up)."""
        assert self.caught_up(), "a sink attaches at the channel's newest id only"
        self._channel.attach(self, sink)

    def detach(self) -> None:
        self._channel.detach(self)

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
            self._hub.unfollow(self._channel, self)

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Poll(NamedTuple):
    """A long-poll's answer: the entries, the cursor to poll from next, and whether it reset."""

    entries: list[Entry]
    cursor: str
    reset: bool
