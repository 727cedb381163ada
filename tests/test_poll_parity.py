"""Both ways in for a long-poll give the same bytes (webapp/http/poll_plan.py, STYLE.md habit 19).

Two gunicorn web processes over one Redis and one database, the same but
for FAST_POLL: on one, every poll goes through Flask's view; on the other,
the fast path (serving/fast_poll.py) answers what its plan allows. Each case
sends the same request to both at once, on raw sockets, and compares the
status line, the headers and the body byte for byte (Date aside), over
issue 22's matrix:

- access control off; on with a valid token, an expired one, another
  user's, one scoped to the session (sent as `?access_token=`), one scoped
  to another session, and none;
- an allowed Origin, a refused one, and none;
- an answer with events at once, a poll parked then answered, and one
  parked until its timeout;
- a malformed cursor or timeout.

The fast process's `relay_fast_poll_fallbacks_total` shows the way each
took: no fallback for an accepted poll (the fast path served it), one
`refused` for an error, which Flask answers.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from flask import Flask

from tests.support.processes import start_web, wait_for
from tests.support.raw_http import read_framed
from webapp.http import auth
from webapp.storage import events, jobs
from webapp.storage.extensions import redis_store
from webapp.write.writer import StreamWriter

SECRET = "a-test-secret-for-both-ways-in-to-a-poll"
ORIGIN = "https://chat.example"
ORIGINS = {"allowed": ORIGIN, "refused": "https://elsewhere.example", "none": None}
REASONS = ("body", "lookup", "refused", "failed")


@dataclass
class Pair:
    """A web process without the fast path and one with it, on the same stack."""

    flask: str
    fast: str
    guarded: bool


def start_pair(env: dict[str, str], log_dir: Path, name: str) -> Iterator[Pair]:
    env = dict(env, CORS_ORIGINS=ORIGIN, LOG_LEVEL="WARNING")
    flask_proc, flask_url = start_web(dict(env, FAST_POLL="false"), log_dir, name=f"{name}-flask")
    fast_proc, fast_url = start_web(dict(env, FAST_POLL="true"), log_dir, name=f"{name}-fast")
    yield Pair(flask_url, fast_url, guarded="AUTH_JWT_SECRET" in env)
    fast_proc.stop()
    flask_proc.stop()


@pytest.fixture(scope="module")
def open_pair(base_env: dict[str, str], app: Flask, log_dir: Path) -> Iterator[Pair]:
    yield from start_pair(base_env, log_dir, "web-parity-open")


@pytest.fixture(scope="module")
def guarded_pair(base_env: dict[str, str], app: Flask, log_dir: Path) -> Iterator[Pair]:
    yield from start_pair(dict(base_env, AUTH_JWT_SECRET=SECRET), log_dir, "web-parity-guarded")


def token(sub: str = "alice", *, ttl: float = 300, sid: str | None = None) -> str:
    return auth.mint(SECRET, sub, ttl, session_id=sid)


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


# -- the stack: sessions, entries, scrapes ---------------------------------------------


class Stream:
    """A session made through the Flask process, written to as a worker would."""

    def __init__(self, app: Flask, pair: Pair) -> None:
        owner = {"Authorization": f"Bearer {token()}"} if pair.guarded else {}
        made = httpx.post(f"{pair.flask}/api/sessions", headers=owner, timeout=10)
        self.session_id: str = made.json()["session_id"]
        client = redis_store.client_for(app)
        jobs.claim(client, self.session_id, "the-answer")
        self._writer = StreamWriter(
            client, self.session_id, "the-answer", 1, stream_ttl_seconds=600, maxlen=1000
        )
        self.first = self.write("before")
        # The fast process follows the session from here, its owner known: it
        # needs SQL no more (this poll falls back, `lookup`).
        path = f"/api/sessions/{self.session_id}/poll?timeout=0"
        assert httpx.get(pair.fast + path, headers=owner, timeout=10).status_code == 200

    def write(self, text: str) -> str:
        data = events.chunk_data("the-answer", text)
        return self._writer.append(events.CHUNK, data).entry_id


def samples(base_url: str, name: str) -> dict[str, float]:
    """A metric's samples from the process's /metrics, by their labels."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    found = re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, flags=re.MULTILINE)
    return {labels: float(value) for labels, value in found}


def fallbacks(base_url: str) -> dict[str, float]:
    counted = samples(base_url, "relay_fast_poll_fallbacks_total")
    return {reason: counted.get(f'{{reason="{reason}"}}', 0.0) for reason in REASONS}


def waiting(base_url: str) -> float:
    return sum(samples(base_url, "relay_long_polls_waiting").values())


# -- raw HTTP ------------------------------------------------------------------------


def request_bytes(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: relay.test"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send(base_url: str, data: bytes) -> socket.socket:
    address = urlsplit(base_url)
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    sock.sendall(data)
    return sock


def response_bytes(sock: socket.socket) -> bytes:
    """One whole response framed by Content-Length, its Date blanked."""
    head, body = read_framed(sock)
    head = re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", head)
    return head + b"\r\n\r\n" + body


@dataclass
class Case:
    """One request of the matrix, sent to both processes of a pair."""

    pair: Pair
    stream: Stream
    headers: dict[str, str]
    query: dict[str, str]

    def path(self, **query: str) -> str:
        params = httpx.QueryParams({**query, **self.query})
        return f"/api/sessions/{self.stream.session_id}/poll?{params}"

    def send(self, **query: str) -> tuple[socket.socket, socket.socket]:
        data = request_bytes(self.path(**query), self.headers)
        return send(self.pair.flask, data), send(self.pair.fast, data)


def answers(socks: tuple[socket.socket, socket.socket]) -> tuple[bytes, bytes]:
    with socks[0], socks[1]:
        return response_bytes(socks[0]), response_bytes(socks[1])


def at_once(case: Case) -> tuple[bytes, bytes]:
    return answers(case.send(after="0-0", timeout="20"))


def parked_then_answered(case: Case) -> tuple[bytes, bytes]:
    before = waiting(case.pair.flask), waiting(case.pair.fast)
    socks = case.send(after=case.stream.first, timeout="20")
    wait_for(
        lambda: (
            (waiting(case.pair.flask), waiting(case.pair.fast)) >= (before[0] + 1, before[1] + 1)
        ),
        what="both polls to park",
    )
    case.stream.write("news")
    return answers(socks)


def parked_until_its_timeout(case: Case) -> tuple[bytes, bytes]:
    started = time.monotonic()
    got = answers(case.send(after=case.stream.first, timeout="0.5"))
    assert time.monotonic() - started >= 0.45, "answered before its timeout"
    return got


KINDS = {"at_once": at_once, "parked": parked_then_answered, "timeout": parked_until_its_timeout}


def case_for(request: pytest.FixtureRequest, app: Flask, access: str, origin: str) -> Case:
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


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("access", ACCEPTED)
def test_an_accepted_poll_is_the_same_bytes_either_way_and_the_fast_path_serves_it(
    request: pytest.FixtureRequest, app: Flask, access: str, origin: str, kind: str
) -> None:
    case = case_for(request, app, access, origin)
    counted = fallbacks(case.pair.fast)
    through_flask, fast = KINDS[kind](case)
    assert fast == through_flask
    status, headers, body = parse(fast)
    assert status == 200, body
    check_the_headers(status, headers, origin)
    expected_events = {"at_once": 1, "parked": 1, "timeout": 0}[kind]
    assert body.count(b'"event":"chunk"') == expected_events, body
    assert fallbacks(case.pair.fast) == counted, "the fast path served it: no fallback"


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("access", REFUSED)
def test_a_refused_poll_is_the_same_bytes_either_way(
    request: pytest.FixtureRequest, app: Flask, access: str, origin: str
) -> None:
    case = case_for(request, app, access, origin)
    counted = fallbacks(case.pair.fast)
    through_flask, fast = at_once(case)
    assert fast == through_flask
    status, headers, body = parse(fast)
    assert status == ACCESS[access].status, body
    check_the_headers(status, headers, origin)
    counted["refused"] += 1  # Flask answers every error
    assert fallbacks(case.pair.fast) == counted


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("access", ACCEPTED)
@pytest.mark.parametrize(
    ("query", "code"),
    [({"after": "1-"}, "invalid_cursor"), ({"timeout": "soon"}, "invalid_timeout")],
    ids=["cursor", "timeout"],
)
def test_a_malformed_cursor_or_timeout_is_the_same_bytes_either_way(
    request: pytest.FixtureRequest,
    app: Flask,
    access: str,
    origin: str,
    query: dict[str, str],
    code: str,
) -> None:
    case = case_for(request, app, access, origin)
    counted = fallbacks(case.pair.fast)
    through_flask, fast = answers(case.send(**{"after": "0-0", "timeout": "0", **query}))
    assert fast == through_flask
    status, headers, body = parse(fast)
    assert status == 400 and f'"code":"{code}"'.encode() in body, body
    check_the_headers(status, headers, origin)
    counted["refused"] += 1
    assert fallbacks(case.pair.fast) == counted
