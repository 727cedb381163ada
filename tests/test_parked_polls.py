"""A parked poll's life (webapp/serving/parked_polls.py): its table of moves, and lives lived.

Here with a stand-in for the hub's follower and a socket pair, no Redis:
the table itself, and the moves a poll makes on its own as it parks, is
woken and answers. Over real HTTP, with gunicorn and the hub, parked polls
are tests/test_longpoll.py's; that both ways in park alike is
tests/test_poll_parity.py's.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.state_tables import check_the_move, reachable
from webapp.exceptions import HandedOver
from webapp.read.entries import Entry
from webapp.serving import handover
from webapp.serving.parked_polls import POLL_MOVES, ParkedPoll, PollState

FINAL = {PollState.ANSWERED, PollState.CLOSED}
# Each state, from a new poll, through allowed moves only.
PATHS = {
    PollState.NEW: [],
    PollState.PARKED: [PollState.PARKED],
    PollState.READY: [PollState.PARKED, PollState.READY],
    PollState.ANSWERED: [PollState.PARKED, PollState.READY, PollState.ANSWERED],
    PollState.CLOSED: [PollState.CLOSED],
}


class StandIn:
    """What a parked poll uses of its follower (read/follower.py), over a list of entries."""

    def __init__(self, entries: list[Entry], cursor: str = "1-0") -> None:
        self.entries, self.cursor, self.session_id = entries, cursor, "s"
        self.sink: Any = None
        self.detached = 0

    def attach(self, sink: Any) -> None:
        self.sink = sink

    def detach(self) -> None:
        self.sink = None
        self.detached += 1

    def buffered_after(self, cursor: str) -> list[Entry]:
        return [e for e in self.entries if e.id > cursor]


class Ends:
    """An on_end that counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def poll_at(state: PollState, on_end: Any = None) -> ParkedPoll:
    poll = ParkedPoll(StandIn([]), limit=10, on_end=on_end or Ends())
    for step in PATHS[state]:
        poll.move(step)
    assert poll.state is state
    return poll


def test_every_state_has_its_moves_and_every_life_ends() -> None:
    assert set(POLL_MOVES) == set(PollState) == set(PATHS)
    for state in FINAL:
        assert not POLL_MOVES[state], f"{state} is final"
    for state in set(PollState) - FINAL:
        assert reachable(POLL_MOVES, state) & FINAL, f"a poll {state.value} never ends"


@pytest.mark.parametrize(
    ("state", "to"), list(itertools.product(PollState, PollState)), ids=lambda s: s.value
)
def test_a_poll_moves_only_as_its_table_allows(state: PollState, to: PollState) -> None:
    check_the_move(poll_at(state), POLL_MOVES, "parked poll", to)


def test_a_response_closed_before_it_parked_ends_the_poll_once() -> None:
    ends = Ends()
    poll = poll_at(PollState.NEW, ends)
    poll.response_closed()
    assert poll.state is PollState.CLOSED and ends.count == 1
    poll.response_closed()  # gunicorn closes once; a second call changes nothing
    poll.wake()  # nor does news for a poll that never parked
    assert poll.state is PollState.CLOSED and ends.count == 1


def test_once_parked_the_response_closing_is_not_the_end() -> None:
    ends = Ends()
    poll = poll_at(PollState.PARKED, ends)
    poll.response_closed()  # gunicorn lets go of its socket: the hub holds the poll
    assert poll.state is PollState.PARKED and ends.count == 0


def entry(n: int) -> Entry:
    return Entry(f"{n}-0", "chunk", json.dumps({"message_id": "m", "text": str(n)}))


@dataclass
class Life:
    """A parked poll's life on a socket pair, and what its client read."""

    poll: ParkedPoll
    follower: StandIn
    ends: Ends
    head: list[str]
    body: dict[str, Any]


def live(timeout_seconds: float, meanwhile: Callable[[ParkedPoll, StandIn], None]) -> Life:
    """Park a poll at entry 1, do `meanwhile`, and read its answer until it closes."""
    follower, ends = StandIn([entry(1)]), Ends()
    poll = ParkedPoll(follower, limit=10, on_end=ends)
    environ = {"SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "9"}
    headers = {"Content-Type": "application/json", "Content-Length": "99", "Vary": "Origin"}
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with pytest.raises(HandedOver):  # the body ends; gunicorn closes its own socket quietly
            poll.park(handover.Connection(ours, chunked=True), environ, headers, timeout_seconds)
        assert poll.state is PollState.PARKED and follower.sink is poll
        meanwhile(poll, follower)
        ours.close()  # the poll writes on its own duplicate
        data = b""
        while chunk := theirs.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return Life(poll, follower, ends, head.decode("latin-1").split("\r\n"), json.loads(body))


def news(poll: ParkedPoll, follower: StandIn) -> None:
    """Entry 2, as the channel hands it over when it merges it."""
    follower.entries.append(entry(2))
    poll.deliver([entry(2)])
    assert poll.state is PollState.READY and follower.sink is None


@pytest.mark.gevent
def test_a_parked_poll_is_woken_by_news_and_answers_on_its_socket() -> None:
    life = live(30, news)
    assert life.poll.state is PollState.ANSWERED and life.ends.count == 1
    assert life.head[:3] == ["HTTP/1.1 200 OK", "Server: gunicorn", "Connection: close"]
    assert "Content-Length: 99" not in life.head, "the head writes its own Content-Length"
    assert "Vary: Origin" in life.head and any(line.startswith("Date: ") for line in life.head)
    assert life.body["cursor"] == "2-0" and [e["id"] for e in life.body["events"]] == ["2-0"]


@pytest.mark.gevent
def test_a_parked_poll_answers_empty_at_its_deadline() -> None:
    life = live(0.05, lambda poll, follower: None)
    assert life.head[0] == "HTTP/1.1 200 OK"
    assert life.body == {"events": [], "cursor": "1-0", "reset": False}
    assert life.poll.state is PollState.ANSWERED and life.ends.count == 1
    assert life.follower.sink is None, "woken by its deadline, it left the channel"
    life.poll.wake()  # its deadline's wake-up again, or late news: nothing more
    assert life.poll.state is PollState.ANSWERED and life.ends.count == 1
