"""Connections waited on without a greenlet each: a watcher per socket, a sweep, a few greenlets.

A kept connection (poll_connections.py) is idle between two polls: a few
hundred microseconds when its poll loop asks again at once, up to
gunicorn's `keepalive`. A greenlet blocked in its read would be cheap to
hold but costly to make: a new one per poll, each with its own frame
stack (Python 3.11 maps one per greenlet, so an mmap and a munmap a poll
under strace), and its read tried once before it waits, cost about 12 µs
a poll against 8 µs for what is here (issue 25). So:

- `Waiting.watch` starts a libev io watcher on the socket and notes its
  deadline; a sweep every SWEEP_SECONDS ends those past it, as gunicorn
  ends an idle connection or a head that comes too slowly;
- a readable socket goes to `Workers`: greenlets kept for this, which
  serve ready connections one after another. One more is woken (or made)
  whenever work is left behind the one about to serve, so a worker that
  blocks (a Redis read, a turn priority.py makes a poll wait) never holds
  up the others; at most MAX_IDLE wait for work.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

import gevent

# How often deadlines are checked: a connection may outlive its by this much.
SWEEP_SECONDS = 0.25
# Workers kept waiting for work; more are made while all are busy, and end when idle.
MAX_IDLE = 8
READABLE = 1  # libev's EV_READ


class Workers:
    """Greenlets that call `serve` on each item submitted, more of them while some block.

    An idle worker waits by switching to gevent's hub, and is woken by a
    callback that switches back to it: a third of what waking it with an
    Event costs (both ways, 1.1 against 3.4 µs).
    """

    def __init__(self, serve: Callable[[Any], None], idle: Callable[[], None]) -> None:
        self._serve = serve
        self._on_idle = idle  # called as a worker runs out of work
        self._ready: deque[Any] = deque()
        self._idle: list[gevent.Greenlet] = []
        self._waking = 0  # woken or made, not yet running: they will take what is ready
        self.busy = 0  # workers serving an item now (running, or blocked in it)

    @property
    def idle(self) -> int:
        """Workers waiting for work."""
        return len(self._idle)

    def submit(self, item: Any) -> None:
        self._ready.append(item)
        self._wake_one()

    def _wake_one(self) -> None:
        if self._waking:
            return
        self._waking += 1
        if self._idle:
            gevent.get_hub().loop.run_callback(self._idle.pop().switch)
        else:
            gevent.spawn(self._work)

    def _work(self) -> None:
        hub, me = gevent.get_hub(), gevent.getcurrent()
        while True:
            self._waking -= 1
            while self._ready:
                item = self._ready.popleft()
                if self._ready:
                    self._wake_one()  # should this one block, another takes the rest
                self.busy += 1
                try:
                    self._serve(item)  # it catches what it raises: a worker never dies of it
                finally:
                    self.busy -= 1
            self._on_idle()
            if len(self._idle) >= MAX_IDLE:
                return
            self._idle.append(me)
            hub.switch()  # until _wake_one switches back


class Waiting:
    """Connections waited on: each readable one goes to `ready`, each late one to `expire`."""

    def __init__(
        self,
        ready: Callable[[Any], None],
        expire: Callable[[Any], None],
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        self._ready, self._expire = ready, expire
        self._sweep_seconds = sweep_seconds
        self._waiting: dict[Hashable, tuple[Any, float]] = {}  # item -> (watcher, deadline)
        self._sweeper: gevent.Greenlet | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    @staticmethod
    def watcher(fd: int) -> Any:
        """A watcher of `fd` for `watch`, made once per connection: its owner closes it.

        Made once, not once a wait: gevent checks the file each time it
        makes one (an fcntl call).
        """
        return gevent.get_hub().loop.io(fd, READABLE)

    def watch(self, item: Hashable, watcher: Any, deadline: float) -> None:
        """Until `watcher`'s file is readable (`ready(item)`), or `deadline` (`expire(item)`)."""
        self._waiting[item] = (watcher, deadline)
        watcher.start(self._readable, item)
        if self._sweeper is None:
            self._sweeper = gevent.spawn(self._sweep_while_waiting)

    def _readable(self, item: Hashable) -> None:
        watcher, _ = self._waiting.pop(item)
        watcher.stop()
        self._ready(item)

    def _sweep_while_waiting(self) -> None:
        try:
            while self._waiting:
                gevent.sleep(self._sweep_seconds)
                now = time.monotonic()
                late = [item for item, (_, deadline) in self._waiting.items() if deadline <= now]
                for item in late:
                    watcher, _ = self._waiting.pop(item)
                    watcher.stop()
                    self._expire(item)
        finally:
            self._sweeper = None
