"""Prompt POSTs before long-polls: polls wait their turn, every other request goes first.

A thousand poll loops that ask again as soon as they are answered keep a web
process busy whatever a poll costs (issue 18, long-poll at 20,000
deliveries/s). gevent serves every socket that is ready in one turn of its
event loop, one after another: a prompt POST that waits for Redis (three
round trips) waited behind every poll that came in meanwhile, each time.
So polls take turns here:

- A connection whose last request was a poll answered at once waits its
  turn *before* gunicorn reads its next request (relay's worker,
  gunicorn_worker.py). Its bytes stay in the kernel meanwhile: a waiting
  poll costs no parsing and no CPU. Such a loop asks as fast as it is
  answered and takes every free moment of the process. (The next request
  is not read yet: a POST that a client sends on a connection it last
  polled on waits as a poll would. Clients that poll and post at once, as
  the chat page does, hold more than one connection.)
- A poll that was parked (parked_polls.py) waited for news: its loop asks only
  as often as news comes. When handover.py hands its connection back, it
  only waits while a prompt is in progress (`wait_quiet`, at most
  `MAX_WAIT_SECONDS`), and never queues behind the turns below: at 2,000
  deliveries/s most polls are parked, and holding them in turns built a
  queue that delayed news by hundreds of ms (p99 274 ms, against 76).
- While a request other than a wait is in its view (`prompt_started` to
  `prompt_ended`, the Flask hooks below: POSTs, snapshots, an SSE stream
  opening; not polls or `?wait=`), the queue of polls moves only once its
  oldest has waited `MAX_WAIT_SECONDS`: polls are delayed, not starved. A
  streamed body (SSE, the AI SDK's stream) counts only until its view
  returns.
- The queue moves oldest first, `TURN` at a time, with a turn of the
  event loop between two (`next_turn`): a prompt's next step (its Redis
  reply) is served between them, and a thousand polls released at once
  never stand in front of the next prompt. With nothing in progress and
  nobody waiting, a poll goes on at once.

Measured with `bench --pin --scenario longpoll` (issue 18): with 4 a turn
and 50 ms, the 100 prompts were posted in 1.8 s while 1,000 loops polled
at 20,000 deliveries/s; with 16 a turn, or a timer 0.1 ms ahead as the
turn, in over 2 s.

The parked polls' answers (parked_polls.Parking) are not held here: they carry
the news, and are cheap (one shared body each). They too let the loop turn
between two batches (`next_turn`).

A connection whose requests the hub reads itself (poll_connections.py)
keeps the same order, decided once a request has been read: a poll waits
its turn after one answered at once, waits for quiet after one answered
from its parking, and anything else goes to gunicorn without waiting.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

import gevent
import gevent.local
from gevent.event import Event

if TYPE_CHECKING:
    from flask import Flask

# Waiting polls let through between two turns of the event loop.
TURN = 4
# The longest a poll waits while other requests are in progress.
MAX_WAIT_SECONDS = 0.05


def next_turn() -> None:
    """Let the event loop poll its sockets and serve every one that is ready, then go on.

    A timer due now does that: the loop polls without blocking, and serves
    the ready sockets and the timer in the same turn. `gevent.sleep(0)`
    would not: it resumes among the loop's callbacks, which run for up to
    the switch interval (5 ms) before any socket is polled. A timer in the
    future would block the loop for at least 1 ms (libev's shortest wait
    on epoll) when nothing else is ready. `gevent.idle()` would wait for a
    turn with nothing ready, which a busy process may never have.
    """
    hub = gevent.get_hub()
    with hub.loop.timer(0) as due_now:
        hub.wait(due_now)


class PollLane:
    """The count of requests that polls make way for, and the polls waiting for them."""

    def __init__(self, turn: int = TURN, max_wait_seconds: float = MAX_WAIT_SECONDS) -> None:
        self._turn = turn
        self._max_wait_seconds = max_wait_seconds
        self._prompts = 0  # requests other than waits, in their view now
        self._waiting: deque[tuple[float, Event]] = deque()
        self._queued = Event()
        self._quiet = Event()
        self._quiet.set()
        self._releaser: gevent.Greenlet | None = None
        self.waited = 0  # polls that waited their turn, for tests and the curious

    def wait_turn(self) -> None:
        """Return at once when nothing goes first, else when this poll's turn comes."""
        if not self._prompts and not self._waiting:
            return
        self.waited += 1
        turn = Event()
        self._waiting.append((time.monotonic(), turn))
        if self._releaser is None or self._releaser.dead:
            self._releaser = gevent.spawn(self._release_forever)
        self._queued.set()
        turn.wait()

    def wait_quiet(self) -> None:
        """For a poll paced by news: wait, at most MAX_WAIT_SECONDS, while prompts are in progress."""
        if self._prompts:
            self.waited += 1
            self._quiet.wait(self._max_wait_seconds)

    def prompt_started(self) -> None:
        self._prompts += 1
        self._quiet.clear()

    def prompt_ended(self) -> None:
        self._prompts = max(0, self._prompts - 1)
        if not self._prompts:
            self._quiet.set()

    def _release_forever(self) -> None:
        """Oldest first, `turn` at a time, with a turn of the loop between two."""
        while True:
            if not self._waiting:
                self._queued.clear()
                self._queued.wait()
                continue
            waited = time.monotonic() - self._waiting[0][0]
            if self._prompts and waited < self._max_wait_seconds:
                self._quiet.wait(self._max_wait_seconds - waited)
                continue
            for _ in range(min(self._turn, len(self._waiting))):
                self._waiting.popleft()[1].set()
            next_turn()


lane = PollLane()

# Whether the request this greenlet served last was a poll (one greenlet per connection).
_connection = gevent.local.local()


def last_was_poll() -> bool:
    """Whether this connection's last request was a poll: its next one likely is too."""
    return getattr(_connection, "polled", False)


def note_request(is_poll: bool, is_wait: bool) -> None:
    """Called as a request's view is about to run (a Flask before_request hook)."""
    _connection.polled = is_poll
    _connection.prompt = not is_wait
    if not is_wait:
        lane.prompt_started()


def note_done() -> None:
    """Called as the request's view is done (teardown)."""
    if getattr(_connection, "prompt", False):
        _connection.prompt = False
        lane.prompt_ended()


def init_app(app: Flask) -> None:
    """Count the requests polls make way for; registered first, so it runs for every request."""
    from flask import request

    from webapp.ops.metrics import waits

    @app.before_request
    def note() -> None:
        note_request(is_poll=request.endpoint == "stream.poll", is_wait=waits())

    app.teardown_request(lambda exc: note_done())
