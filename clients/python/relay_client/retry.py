"""How long to wait before trying again: the server's word first, then jittered backoff.

- The server says how long with `retry:` (SSE: the reconnection time) and
  `Retry-After` (a 429 or 503: seconds, or an HTTP date). Neither is ever
  cut short.
- Otherwise the wait doubles with each failure in a row, up to a cap, and
  is drawn from its upper half, so that clients cut off together do not
  come back together ("equal jitter",
  https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

# Below this a failing server would be asked again in a tight loop.
FLOOR_SECONDS = 0.25


def retry_after_seconds(header: str | None, now: float | None = None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) in seconds from now, or None."""
    if not header:
        return None
    value = header.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


@dataclass
class Backoff:
    """The waits of one retry loop: `base_seconds`, doubling per failure, up to `max_seconds`."""

    base_seconds: float = 0.5
    max_seconds: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, failures: int, *, at_least: float | None = None) -> float:
        """The wait after `failures` failures in a row (1 is the first), never below `at_least`.

        The first wait is the base itself (jittered), even when the server set
        it to 0 with `retry: 0`; later ones never start below FLOOR_SECONDS.
        """
        base = self.base_seconds if failures <= 1 else max(self.base_seconds, FLOOR_SECONDS)
        ceiling = min(base * 2 ** max(failures - 1, 0), self.max_seconds)
        wait = ceiling / 2 + self.rng.random() * ceiling / 2
        return max(wait, at_least or 0.0)


@dataclass(frozen=True)
class Policy:
    """How hard the client tries: retries of one request, reconnects of a stream, waits.

    The defaults follow relay's chat page: four tries of a post whose answer
    was lost, SSE reconnects that never give up (as EventSource), a stream
    that brings no byte for three of the server's default heartbeats (15 s)
    counted as stalled (or, without its first byte, held by a buffering
    proxy: long-poll, and SSE again later, as the JS client does).
    """

    attempts: int = 4  # tries of one request whose answer is lost
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 10.0
    # The first reconnect's wait until the server's `retry:` line says otherwise.
    reconnect_seconds: float = 1.0
    max_reconnect_seconds: float = 30.0
    # Connections in a row that bring nothing new before ConnectionLost; None: never.
    reconnects: int | None = None
    stall_seconds: float = 45.0
    # Long-polling before SSE is tried again, after a proxy held it (follow.py): 1st, 2nd, ...;
    # empty: long-poll for good once a proxy held it.
    sse_retry_seconds: tuple[float, ...] = (15.0, 30.0, 60.0, 120.0, 300.0)
    poll_seconds: float = 20.0  # a long-poll's `timeout` (API.md: at most 25)
    whole_wait_seconds: float = 25.0  # `?wait=` of the whole-answer mode
    seed: int | None = None  # of the jitter, for tests that replay one run

    def backoff(self) -> Backoff:
        return Backoff(self.backoff_seconds, self.max_backoff_seconds, random.Random(self.seed))

    def reconnect(self) -> Backoff:
        return Backoff(self.reconnect_seconds, self.max_reconnect_seconds, random.Random(self.seed))
