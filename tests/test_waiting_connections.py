"""Connections waited on without a greenlet each (webapp/serving/waiting_connections.py).

Run in a gevent-patched process, as the web serves, over socket pairs: a
readable socket goes to `ready` once, a late one to `expire`, and the
workers serve what is ready without one that blocks holding up the
others, keeping at most MAX_IDLE of themselves. Each test waits for the
state it checks, under a deadline.
"""

from __future__ import annotations

import socket
import time

import pytest
from gevent.event import Event

from tests.support.green import turn_until
from webapp.serving.priority import next_turn
from webapp.serving.waiting_connections import MAX_IDLE, Waiting, Workers

pytestmark = pytest.mark.gevent


def test_a_readable_socket_is_ready_once_and_no_longer_watched() -> None:
    ready: list[str] = []
    waiting = Waiting(ready.append, lambda item: pytest.fail("it was readable in time"))
    ours, theirs = socket.socketpair()
    with ours, theirs:
        watcher = Waiting.watcher(ours.fileno())
        waiting.watch("kept", watcher, time.monotonic() + 60)
        assert len(waiting) == 1
        for _ in range(5):
            next_turn()
        assert ready == [], "nothing to read yet"
        theirs.sendall(b"GET /")
        turn_until(lambda: ready)
        theirs.sendall(b" HTTP/1.1")  # more bytes: it is not watched any more
        for _ in range(5):
            next_turn()
        assert not watcher.active
        watcher.close()
    assert ready == ["kept"] and len(waiting) == 0


def test_a_socket_past_its_deadline_expires_and_is_not_ready_after() -> None:
    ready: list[str] = []
    expired: list[str] = []
    waiting = Waiting(ready.append, expired.append, sweep_seconds=0.01)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        watchers = Waiting.watcher(ours.fileno()), Waiting.watcher(theirs.fileno())
        waiting.watch("slow", watchers[0], time.monotonic() + 0.05)
        waiting.watch("on time", watchers[1], time.monotonic() + 60)
        turn_until(lambda: expired)
        theirs.sendall(b"late")  # "slow" is readable now: too late
        ours.sendall(b"in time")
        turn_until(lambda: ready)
        for _ in range(5):
            next_turn()
        for watcher in watchers:
            assert not watcher.active
            watcher.close()
    assert expired == ["slow"] and ready == ["on time"] and len(waiting) == 0


def test_a_worker_that_blocks_holds_up_no_other() -> None:
    release = Event()
    served: list[str] = []

    def serve(item: str) -> None:
        if item == "blocks":
            release.wait()  # a Redis read, or a poll's turn
        served.append(item)

    workers = Workers(serve, lambda: None)
    for item in ("blocks", "a", "b"):
        workers.submit(item)
    turn_until(lambda: served == ["a", "b"])
    release.set()
    turn_until(lambda: len(served) == 3)
    assert served == ["a", "b", "blocks"]


def test_workers_serve_in_order_say_when_idle_and_keep_few() -> None:
    release = Event()
    served: list[int] = []
    idle: list[int] = []

    def serve(item: int) -> None:
        release.wait()
        served.append(item)

    workers = Workers(serve, lambda: idle.append(len(served)))
    for item in range(3 * MAX_IDLE):  # each blocks: one worker each
        workers.submit(item)
    turn_until(lambda: workers.busy == 3 * MAX_IDLE)
    release.set()
    turn_until(lambda: workers.busy == 0 and len(served) == 3 * MAX_IDLE)
    assert served == list(range(3 * MAX_IDLE))
    assert idle and idle[-1] == 3 * MAX_IDLE, "told when the work ran out"
    # All ran out of work: MAX_IDLE wait for more, the others ended.
    assert workers.idle == MAX_IDLE
