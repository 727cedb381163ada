"""Every way in for a long-poll gives the same bytes (webapp/http/poll_plan.py, STYLE.md habit 19).

Two gunicorn web processes over one Redis and one database, the same but
for FAST_POLL (tests/support/poll_pairs.py): on one, every poll goes
through Flask's view; on the other, the fast path (serving/fast_poll.py)
answers what its plan allows, and a connection whose parked poll was
answered is read by the hub itself (serving/poll_connections.py, with
httptools). Each case sends the same request three ways at once, on raw
sockets: to the Flask process, to the fast process on a new connection,
and to the fast process on a kept connection; and compares the status
line, the headers and the body byte for byte (Date aside), over issue
22's matrix:

- access control off; on with a valid token, an expired one, another
  user's, one scoped to the session (sent as `?access_token=`), one scoped
  to another session, and none;
- an allowed Origin, a refused one, and none;
- an answer with events at once, a poll parked then answered, and one
  parked until its timeout;
- a malformed cursor or timeout.

The fast process's counts show the way each took: no fallback for an
accepted poll (the fast path served it) and one more kept poll (the hub
read it); for an error, one `refused` fallback per connection, which Flask
answers, and the kept connection's request handed to gunicorn (`plan`).
Malformed requests and smuggling on a kept connection are
tests/test_poll_wire.py's.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from tests.support.poll_pairs import (
    ORIGIN,
    SECRET,
    Pair,
    Stream,
    fallbacks,
    handbacks,
    kept_connection,
    kept_polls,
    request_bytes,
    response_bytes,
    send,
    start_pair,
    token,
    waiting,
)
from tests.support.processes import wait_for

ORIGINS = {"allowed": ORIGIN, "refused": "https://elsewhere.example", "none": None}


@pytest.fixture(scope="module")
def open_pair(base_env: dict[str, str], app: Flask, log_dir: Path) -> Iterator[Pair]:
    yield from start_pair(base_env, log_dir, "web-parity-open")


@pytest.fixture(scope="module")
def guarded_pair(base_env: dict[str, str], app: Flask, log_dir: Path) -> Iterator[Pair]:
    yield from start_pair(dict(base_env, AUTH_JWT_SECRET=SECRET), log_dir, "web-parity-guarded")


@dataclass(frozen=True)
class Access:
    """How a case's caller is (or is not) let in: the pair, and the credential."""

    guarded: bool
    credential: Callable[[str], tuple[dict[str, str], dict[str, str]]]  # -> (headers, query)
    status: int  # what a well-formed poll gets


def bearer(make: Callable[[str], str]) -> Callable[[str], tuple[dict[str, str], dict[str, str]]]:
    return lambda sid: ({"Authorization": f"Bearer {make(sid)}"}, {})


ACCESS = {
    "off": Access(False, lambda sid: ({}, {}), 200),
    "valid": Access(True, bearer(lambda sid: token()), 200),
    "scoped": Access(True, lambda sid: ({}, {"access_token": token(sid=sid)}), 200),
    "expired": Access(True, bearer(lambda sid: token(ttl=-60)), 401),
    "wrong_owner": Access(True, bearer(lambda sid: token("mallory")), 404),
    "scoped_elsewhere": Access(True, bearer(lambda sid: token(sid="another-session-0")), 404),
    "no_token": Access(True, lambda sid: ({}, {}), 401),
}
ACCEPTED = [name for name, access in ACCESS.items() if access.status == 200]
REFUSED = [name for name, access in ACCESS.items() if access.status != 200]


@dataclass
class Case:
    """One request of the matrix, sent three ways: Flask's, the fast path's, a kept connection."""

    pair: Pair
    stream: Stream
    headers: dict[str, str]
    query: dict[str, str]

    def send(self, **query: str) -> tuple[socket.socket, ...]:
        data = request_bytes(self.stream.path(**{**query, **self.query}), self.headers)
        kept = kept_connection(self.pair, self.stream)
        kept.sendall(data)
        return send(self.pair.flask, data), send(self.pair.fast, data), kept


def answers(socks: tuple[socket.socket, ...]) -> tuple[bytes, ...]:
    try:
        return tuple(response_bytes(sock) for sock in socks)
    finally:
        for sock in socks:
            sock.close()


def at_once(case: Case) -> tuple[bytes, ...]:
    return answers(case.send(after="0-0", timeout="20"))


def parked_then_answered(case: Case) -> tuple[bytes, ...]:
    before = waiting(case.pair.flask), waiting(case.pair.fast)
    socks = case.send(after=case.stream.first, timeout="20")
    wait_for(
        lambda: (
            (waiting(case.pair.flask), waiting(case.pair.fast)) >= (before[0] + 1, before[1] + 2)
        ),
        what="the three polls to park",
    )
    case.stream.write("news")
    return answers(socks)


def parked_until_its_timeout(case: Case) -> tuple[bytes, ...]:
    started = time.monotonic()
    got = answers(case.send(after=case.stream.first, timeout="0.5"))
    assert time.monotonic() - started >= 0.45, "answered before its timeout"
    return got


KINDS = {"at_once": at_once, "parked": parked_then_answered, "timeout": parked_until_its_timeout}


def case_for(request: pytest.FixtureRequest, app: Flask, access: str, origin: str) -> Case:
    """A new session, the case's credential and Origin."""
    pair = request.getfixturevalue("guarded_pair" if ACCESS[access].guarded else "open_pair")
    stream = Stream(app, pair)
    headers, query = ACCESS[access].credential(stream.session_id)
    if ORIGINS[origin] is not None:
        headers = {**headers, "Origin": ORIGINS[origin]}
    return Case(pair, stream, headers, query)


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def check_the_headers(status: int, headers: dict[str, str], origin: str) -> None:
    """What the answer must carry whichever way it took (API.md: Cross-origin use, Errors)."""
    assert headers["Vary"] == "Origin"
    if origin == "allowed":
        assert headers["Access-Control-Allow-Origin"] == ORIGIN
        assert headers["Access-Control-Expose-Headers"] == "Retry-After, Idempotent-Replayed"
    else:
        assert "Access-Control-Allow-Origin" not in headers
    assert headers["Content-Type"] == "application/json"
    if status == 200:
        assert headers["Cache-Control"] == "no-store"
    if status == 401:
        assert headers["WWW-Authenticate"].startswith('Bearer realm="relay"')


# -- the matrix ------------------------------------------------------------------------


class Ways:
    """The fast process's counts of the way its polls took, before a case."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.fallbacks = fallbacks(pair.fast)
        self.handbacks = handbacks(pair.fast)
        self.kept = kept_polls(pair.fast)

    def check(self, *, refused: int, plan: int, kept: int) -> None:
        assert fallbacks(self.pair.fast) == dict(
            self.fallbacks, refused=self.fallbacks["refused"] + refused
        )
        assert handbacks(self.pair.fast) == dict(self.handbacks, plan=self.handbacks["plan"] + plan)
        assert kept_polls(self.pair.fast) == self.kept + kept


def the_same(answers: tuple[bytes, ...]) -> bytes:
    """Flask's answer, after checking that both others are the same bytes."""
    through_flask, fast, kept = answers
    assert fast == through_flask, "the fast path"
    assert kept == through_flask, "the kept connection"
    return through_flask


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("access", ACCEPTED)
def test_an_accepted_poll_is_the_same_bytes_every_way_and_the_fast_ways_serve_it(
    request: pytest.FixtureRequest, app: Flask, access: str, origin: str, kind: str
) -> None:
    case = case_for(request, app, access, origin)
    ways = Ways(case.pair)
    status, headers, body = parse(the_same(KINDS[kind](case)))
    assert status == 200, body
    check_the_headers(status, headers, origin)
    expected_events = {"at_once": 1, "parked": 1, "timeout": 0}[kind]
    assert body.count(b'"event":"chunk"') == expected_events, body
    # No fallback: the fast path served it; one kept poll: the hub read it.
    ways.check(refused=0, plan=0, kept=1)


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("access", REFUSED)
def test_a_refused_poll_is_the_same_bytes_every_way(
    request: pytest.FixtureRequest, app: Flask, access: str, origin: str
) -> None:
    case = case_for(request, app, access, origin)
    ways = Ways(case.pair)
    status, headers, body = parse(the_same(at_once(case)))
    assert status == ACCESS[access].status, body
    check_the_headers(status, headers, origin)
    # Flask answers every error: the kept connection's through gunicorn and the fast path.
    ways.check(refused=2, plan=1, kept=0)


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("access", ACCEPTED)
@pytest.mark.parametrize(
    ("query", "code"),
    [({"after": "1-"}, "invalid_cursor"), ({"timeout": "soon"}, "invalid_timeout")],
    ids=["cursor", "timeout"],
)
def test_a_malformed_cursor_or_timeout_is_the_same_bytes_every_way(
    request: pytest.FixtureRequest,
    app: Flask,
    access: str,
    origin: str,
    query: dict[str, str],
    code: str,
) -> None:
    case = case_for(request, app, access, origin)
    ways = Ways(case.pair)
    status, headers, body = parse(
        the_same(answers(case.send(**{"after": "0-0", "timeout": "0", **query})))
    )
    assert status == 400 and f'"code":"{code}"'.encode() in body, body
    check_the_headers(status, headers, origin)
    ways.check(refused=2, plan=1, kept=0)
