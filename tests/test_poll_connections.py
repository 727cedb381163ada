"""A kept connection's reader (webapp/serving/poll_connections.py), in process.

Run in a gevent-patched process, as the web serves, over a socket pair,
with stand-ins for gunicorn's worker (what handover.py item 5 names) and
for the plan's way in: priority holds on this path (a kept connection
waits for prompts in progress before its next request is read, and after
a poll answered at once it waits its turn), what is not a poll goes to
gunicorn with its bytes, a poll that must wait is parked on the same
socket with what came after it, and a way in that raises hands the poll
to gunicorn. Over real HTTP, tests/test_poll_wire.py and
tests/test_poll_parity.py.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from gunicorn.config import Config

from tests.support.green import turn_until
from webapp.ops import metrics
from webapp.serving import handover, poll_connections, priority
from webapp.serving.poll_connections import Hold, Reply
from webapp.serving.poll_heads import PollHead
from webapp.serving.priority import PollLane, next_turn

pytestmark = pytest.mark.gevent

POLL = b"GET /api/sessions/abcdefgh/poll?after=0-0 HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
FIELDS = b"Content-Type: application/json\r\n"


@dataclass
class Gunicorn:
    """What relay uses of gunicorn's worker (handover.py, item 5), recording hand-backs."""

    sockets: list[socket.socket]
    cfg: Any = field(default_factory=Config)
    alive: bool = True
    header_timeout_seconds: float = 10.0
    handed: list[bytes] = field(default_factory=list)

    def handle(self, listener: socket.socket, client: socket.socket, addr: Any) -> None:
        # What gunicorn's new parser would read first (gunicorn_worker.TimedReads).
        self.handed.append(handover.read_through(None))
        client.close()


@dataclass
class Way:
    """The plan's way in: answers every poll with `reply` (or what `answer` says)."""

    answer: Callable[[PollHead], Reply | Hold | str] = lambda head: Reply(FIELDS, b"{}")
    asked: list[PollHead] = field(default_factory=list)

    def __call__(self, head: PollHead, remote_addr: str) -> Reply | Hold | str:
        self.asked.append(head)
        return self.answer(head)


@pytest.fixture()
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Gunicorn, Way, PollLane]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    worker = Gunicorn([listener])
    worker.cfg.set("keepalive", 95)
    way, lane = Way(), PollLane(max_wait_seconds=60)
    monkeypatch.setattr(priority, "lane", lane)
    handover.serve_with(worker)
    poll_connections.serve_polls_with(way)
    yield worker, way, lane
    poll_connections.serve_polls_with(None)
    handover.serve_with(None)  # type: ignore[arg-type]
    listener.close()


@pytest.fixture()
def client(served: tuple[Gunicorn, Way, PollLane]) -> Iterator[socket.socket]:
    """The client's end of a connection whose parked poll was just answered."""
    ours, theirs = socket.socketpair()
    handover.next_request(ours, ("127.0.0.1", 9), b"")
    theirs.settimeout(10)
    with ours, theirs:
        yield theirs


def answer_of(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"{}"):
        chunk = sock.recv(65536)
        assert chunk, f"closed: {data!r}"
        data += chunk
    return data


def test_a_poll_on_a_kept_connection_is_answered_as_gunicorn_writes(
    served: tuple[Gunicorn, Way, PollLane], client: socket.socket
) -> None:
    _, way, _ = served
    before = metrics.KEPT_POLLS._value.get()
    client.sendall(POLL + POLL[:10])
    head, _, body = answer_of(client).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[:2] == [b"HTTP/1.1 200 OK", b"Server: gunicorn"] and lines[2].startswith(b"Date:")
    assert lines[3:] == [b"Connection: keep-alive", FIELDS.strip(), b"Content-Length: 2"]
    assert body == b"{}" and way.asked[0].session_id == "abcdefgh" and len(way.asked) == 1
    client.sendall(POLL[10:])  # the rest of the next one: read on, in step
    assert answer_of(client).endswith(b"\r\n\r\n{}") and len(way.asked) == 2
    assert metrics.KEPT_POLLS._value.get() == before + 2


def test_a_poll_on_a_kept_connection_makes_way_for_prompts(
    served: tuple[Gunicorn, Way, PollLane], client: socket.socket
) -> None:
    _, way, lane = served
    # After a parked poll's answer: it waits while a prompt is in progress.
    lane.prompt_started()
    client.sendall(POLL)
    turn_until(lambda: lane.waited == 1)
    for _ in range(20):  # every chance to read the poll: it must not
        next_turn()
    assert not way.asked
    lane.prompt_ended()
    answer_of(client)
    # Answered at once, its loop asks again at once: it waits its turn behind prompts.
    lane.prompt_started()
    client.sendall(POLL)
    turn_until(lambda: lane.waited == 2)
    for _ in range(20):
        next_turn()
    assert len(way.asked) == 1
    lane.prompt_ended()
    answer_of(client)
    assert len(way.asked) == 2


def test_what_is_not_a_poll_goes_to_gunicorn_with_its_bytes(
    served: tuple[Gunicorn, Way, PollLane], client: socket.socket
) -> None:
    worker, way, lane = served
    client.sendall(POLL + POST[:20])
    answer_of(client)
    lane.prompt_started()  # a prompt in progress: a POST does not wait as a poll would
    client.sendall(POST[20:])
    turn_until(lambda: worker.handed)
    assert worker.handed == [POST] and len(way.asked) == 1 and lane.waited == 0
    lane.prompt_ended()


def test_a_way_in_that_raises_hands_the_poll_to_gunicorn(
    served: tuple[Gunicorn, Way, PollLane], client: socket.socket
) -> None:
    worker, way, _ = served

    def fail(head: PollHead) -> Reply:
        raise RuntimeError("Redis went away")

    way.answer = fail
    client.sendall(POLL)
    turn_until(lambda: worker.handed)
    assert worker.handed == [POLL], "gunicorn reads it again, and Flask answers"


class Parked:
    """Stands in for a ParkedPoll: what `hold` was given."""

    def __init__(self) -> None:
        self.held: dict[str, Any] = {}

    def hold(self, sock: socket.socket, addr: Any, head: bytes, **rest: Any) -> None:
        self.held = dict(rest, head=head, addr=addr)

    def response_closed(self) -> None:
        raise AssertionError("it parked")


def parked_after(way: Way, client: socket.socket, data: bytes) -> Parked:
    """Send `data`, whose first poll the way in parks: what it was parked with."""
    parked = Parked()
    way.answer = lambda head: Hold(parked, FIELDS, 20.0)  # type: ignore[arg-type]
    client.sendall(data)
    turn_until(lambda: parked.held)
    way.answer = Way().answer
    return parked


def test_a_poll_that_must_wait_parks_on_the_same_socket_with_what_came_after(
    served: tuple[Gunicorn, Way, PollLane], client: socket.socket
) -> None:
    _, way, _ = served
    parked = parked_after(way, client, POLL + POST)
    then = parked.held.pop("then")
    assert parked.held == {
        "head": b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nConnection: keep-alive\r\n" + FIELDS,
        "addr": ("127.0.0.1", 9),
        "keep_alive": True,
        "timeout_seconds": 20.0,
        "read_ahead": POST,
    }
    # Answered from its parking, the connection is read here again: the POST goes to gunicorn.
    worker, _, _ = served
    then(POST)
    turn_until(lambda: worker.handed)
    assert worker.handed == [POST]


def test_after_an_answer_from_its_parking_the_next_poll_is_read_here(
    served: tuple[Gunicorn, Way, PollLane], client: socket.socket
) -> None:
    _, way, _ = served
    parked = parked_after(way, client, POLL)
    parked.held["then"](b"")  # its answer was written: the connection waits for the next
    client.sendall(POLL)
    assert answer_of(client).endswith(b"\r\n\r\n{}") and len(way.asked) == 2
