"""One byte budget for every channel buffer of a web process (HUB_BUFFER_BYTES, issue 18).

Each channel (channel.py) counts what its entries hold, encodings included,
into `used` as it changes. When a merge leaves `used` past the limit, the
budget trims, in order of what matters least:

1. history: in every channel, the entries before the answer under way that
   no follower reading the buffer has ahead of it;
2. then, largest channel first, the answer's own entries that no such
   follower has ahead of it, until `used` is a quarter under the limit.

What a follower reading the buffer has ahead of it is never trimmed: a
reader is at most a batch or a send timeout behind, so it needs little
for long. Whatever a trim drops is still in Redis, and a follower whose
cursor is older than its channel's buffer reads on from there (hub.py).

Deliberate choices:
- Trimming runs inline, in the merge that passed the limit, and walks every
  channel. So that this stays rare, a trim frees a quarter of the budget,
  and when the readers' own entries keep `used` past the limit, the next
  trim waits until an eighth of the budget more has come.
- Sizes are what `sys.getsizeof` says of the entry, its id, its data and
  each encoding made (entries.Entry.size): Python's own objects, not an
  estimate of their text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sized
from typing import Protocol


class Trimmable(Protocol):
    """What a budget asks of a channel (channel.py): its size, and two ways to shrink."""

    entries: Sized
    bytes: int

    def trim_history(self) -> None: ...

    def trim_unread(self) -> None: ...


class Budget:
    """The bytes every channel of a process holds, against one limit (None: no limit)."""

    def __init__(
        self, limit: int | None, channels: Callable[[], Iterable[Trimmable]] = tuple
    ) -> None:
        self.limit = limit
        self.used = 0
        self.trims = 0
        self._channels = channels
        self._trim_at = limit

    def over(self) -> bool:
        return self.limit is not None and self.used > self.limit

    def settle(self) -> None:
        """Trim if `used` passed the limit (a channel calls this after each merge)."""
        if self._trim_at is not None and self.used > self._trim_at:
            self.trim()

    def trim(self) -> None:
        assert self.limit is not None
        self.trims += 1
        channels = [channel for channel in self._channels() if channel.entries]
        for channel in channels:
            channel.trim_history()
        goal = self.limit * 3 // 4
        if self.used > goal:
            for channel in sorted(channels, key=lambda c: c.bytes, reverse=True):
                channel.trim_unread()
                if self.used <= goal:
                    break
        self._trim_at = max(self.limit, self.used + self.limit // 8)
