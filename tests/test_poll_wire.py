"""Smuggling and malformed input on a kept connection (webapp/serving/poll_connections.py).

Once a parked poll is answered, the hub reads its connection's next request
with httptools instead of gunicorn. Each case here sends the same bytes two
ways, over real sockets to real gunicorn processes (tests/support/poll_pairs.py):
on a new connection to the process without the fast path (what gunicorn and
Flask answer: the reference), and on a kept connection to the one with it.
The answers must be the same bytes (Date aside), the connection must end
the same way (closed, or open and in step: a poll sent next is answered
as it should be), nothing may hang (every read has a deadline), and the
fast process's counts show which way each request took: read and served
by the hub, or handed to gunicorn and why.

The cases: conflicting Content-Length, Content-Length with
Transfer-Encoding, bodies on a GET, pipelined requests (two polls in one
write; a poll then a POST), heads at and past gunicorn's limits, invalid
bytes, and what the hub leaves to gunicorn (another version, an Upgrade,
an Expect, a header it maps or joins); then a request split at every
offset, sent a byte at a time, and half-sent then closed or left.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest
from flask import Flask

from tests.support.poll_pairs import (
    Pair,
    Stream,
    blank_date,
    connect,
    handbacks,
    kept_connection,
    kept_polls,
    request_bytes,
    start_pair,
)
from tests.support.processes import wait_for

HEADER_TIMEOUT_SECONDS = 1.0
READ_SECONDS = 20  # the bound on every read: a case that hangs fails here
LINE_LIMIT, FIELDS_LIMIT, FIELD_LIMIT = 4094, 100, 8190  # gunicorn's defaults, which relay keeps


@pytest.fixture(scope="module")
def pair(base_env: dict[str, str], app: Flask, log_dir: Path) -> Iterator[Pair]:
    env = dict(base_env, HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT_SECONDS))
    yield from start_pair(env, log_dir, "web-wire")


@pytest.fixture()
def stream(app: Flask, pair: Pair) -> Stream:
    return Stream(app, pair)


class Responses:
    """The responses on one connection, read one at a time, each under READ_SECONDS."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(READ_SECONDS)
        self.sock = sock
        self._file: BinaryIO = sock.makefile("rb")

    def next(self) -> bytes:
        """One response, Date blanked: a 1xx is its head; any other has a Content-Length."""
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = self._file.readline()
            assert line, f"closed mid-head: {head!r}"
            head += line
        if head.startswith(b"HTTP/1.1 1"):
            return head
        length = re.search(rb"\r\ncontent-length: *(\d+)", head, flags=re.IGNORECASE)
        assert length, f"no Content-Length: {head!r}"
        body = self._file.read(int(length[1]))
        return blank_date(head) + body

    def closed(self) -> bool:
        """Whether the server closed the connection (after what was read)."""
        return self._file.read(1) == b""


@dataclass(frozen=True)
class Exchange:
    """What a connection got for a case: its responses, and how it ended."""

    responses: list[bytes]
    closed: bool
    next_poll: bytes | None  # the answer to a poll sent next, when it stayed open


def exchange(sock: socket.socket, stream: Stream, data: bytes, count: int) -> Exchange:
    """Send `data`, read `count` responses, then see whether the connection is still in step."""
    with sock:
        sock.sendall(data)
        responses = Responses(sock)
        got = [responses.next() for _ in range(count)]
        if any(b"\r\nConnection: close\r\n" in response for response in got):
            assert responses.closed(), "a response said close and the connection stayed open"
            return Exchange(got, True, None)
        sock.sendall(request_bytes(stream.path(after="0-0", timeout="0"), stream.owner))
        return Exchange(got, False, responses.next())


def both_ways(pair: Pair, stream: Stream, data: bytes, count: int) -> tuple[Exchange, Exchange]:
    """The reference (gunicorn and Flask, a new connection) and the kept connection's."""
    reference = exchange(connect(pair.flask), stream, data, count)
    kept = exchange(kept_connection(pair, stream), stream, data, count)
    return reference, kept


# -- the cases -----------------------------------------------------------------------------


def head(
    stream: Stream, *lines: str, target: str | None = None, version: str = "HTTP/1.1"
) -> bytes:
    """A poll's head (answered at once), with these header lines; `target` replaces the path."""
    path = target if target is not None else stream.path(after="0-0", timeout="0")
    return ("\r\n".join([f"GET {path} {version}", "Host: relay.test", *lines]) + "\r\n\r\n").encode(
        "latin-1"
    )


def padded(stream: Stream, line_bytes: int) -> bytes:
    """A poll whose request line is `line_bytes` long (its query padded)."""
    path = stream.path(after="0-0", timeout="0") + "&pad="
    path += "x" * (line_bytes - len(f"GET {path} HTTP/1.1"))
    return head(stream, target=path)


def big_header(stream: Stream, line_bytes: int) -> bytes:
    """A poll with a header line `line_bytes` long, its CRLF included (as gunicorn counts)."""
    return head(stream, "X-Big: " + "a" * (line_bytes - len("X-Big: ") - 2))


def parked(stream: Stream) -> bytes:
    """A poll that parks, and is answered empty at its timeout."""
    return head(stream, target=stream.path(after=stream.newest, timeout="0.2"))


def cancel(stream: Stream) -> bytes:
    """A POST with a known answer (404: no such message)."""
    return (
        f"POST /api/sessions/{stream.session_id}/messages/no-such-message/cancel HTTP/1.1\r\n"
        "Host: relay.test\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@dataclass(frozen=True)
class Case:
    data: Callable[[Stream], bytes]
    responses: int  # how many the reference sends
    status: int  # the first one's
    handed_back: str | None  # the kept connection's reason, None when the hub served it
    kept: int = 0  # polls the hub served on the kept connection, the poll sent next included


CASES = {
    # Smuggling: framing that two parsers could read two ways is refused by both.
    "conflicting content-length": Case(
        lambda s: head(s, "Content-Length: 0", "Content-Length: 5") + b"hello", 1, 400, "malformed"
    ),
    "content-length and chunked": Case(
        lambda s: head(s, "Content-Length: 5", "Transfer-Encoding: chunked") + b"0\r\n\r\n",
        1,
        400,
        "malformed",
    ),
    "chunked body on a get": Case(
        lambda s: head(s, "Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n",
        1,
        200,
        "other",
    ),
    "content-length body on a get": Case(
        lambda s: head(s, "Content-Length: 5") + b"hello", 1, 200, "other"
    ),
    "transfer-encoding not chunked": Case(
        lambda s: head(s, "Transfer-Encoding: gzip"), 1, 400, "malformed"
    ),
    "content-type without a body": Case(
        lambda s: head(s, "Content-Type: application/json"), 1, 200, "other"
    ),
    # Limits: at gunicorn's, served; past them, refused as gunicorn refuses.
    "request line at the limit": Case(lambda s: padded(s, LINE_LIMIT), 1, 200, "limits"),
    "request line past the limit": Case(lambda s: padded(s, LINE_LIMIT + 1), 1, 414, "limits"),
    "headers at the limit": Case(
        lambda s: head(s, *(f"X-H{i}: v" for i in range(FIELDS_LIMIT - 1))), 1, 200, "limits"
    ),
    "headers past the limit": Case(
        lambda s: head(s, *(f"X-H{i}: v" for i in range(FIELDS_LIMIT))), 1, 431, "limits"
    ),
    "header line at the limit": Case(lambda s: big_header(s, FIELD_LIMIT), 1, 200, "limits"),
    "header line past the limit": Case(lambda s: big_header(s, FIELD_LIMIT + 1), 1, 431, "limits"),
    "a head bigger than the hub reads": Case(
        lambda s: head(s, *(f"X-H{i}: {'v' * 400}" for i in range(60))), 1, 200, "limits"
    ),
    # Invalid bytes and forms: refused by both.
    "NUL in a header value": Case(lambda s: head(s, "X: a\x00b"), 1, 400, "malformed"),
    "DEL in a header value": Case(lambda s: head(s, "X: a\x7fb"), 1, 400, "malformed"),
    "control byte in the path": Case(
        lambda s: head(s, target=f"/api/sessions/{s.session_id}\x01/poll"), 1, 400, "malformed"
    ),
    "byte over 0x7f in the path": Case(
        lambda s: head(s, target=f"/api/sessions/{s.session_id}\xff/poll"), 1, 400, "malformed"
    ),
    "bare LF": Case(lambda s: head(s, "X: a\nY: b"), 1, 400, "malformed"),
    "obsolete line folding": Case(lambda s: head(s, "X: a", " b"), 1, 400, "malformed"),
    "space before a colon": Case(lambda s: head(s, "X : a"), 1, 400, "malformed"),
    "lowercase method": Case(lambda s: b"get" + head(s)[3:], 1, 400, "malformed"),
    "two empty lines first": Case(lambda s: b"\r\n\r\n" + head(s), 1, 400, "other"),
    "Host twice": Case(lambda s: head(s, "Host: again"), 1, 400, "other"),
    # What the hub leaves to gunicorn, which serves it.
    "one empty line first": Case(lambda s: b"\r\n" + head(s), 1, 200, "other"),
    "HTTP/1.0": Case(lambda s: head(s, version="HTTP/1.0"), 1, 200, "other"),
    "Connection: close": Case(lambda s: head(s, "Connection: close"), 1, 200, "other"),
    "Expect: 100-continue": Case(lambda s: head(s, "Expect: 100-continue"), 2, 100, "other"),
    "an Upgrade": Case(
        lambda s: head(s, "Connection: Upgrade", "Upgrade: websocket"), 1, 400, "other"
    ),
    "a header name with _": Case(lambda s: head(s, "X_Forwarded_For: 10.0.0.1"), 1, 200, "other"),
    "Authorization twice": Case(
        lambda s: head(s, "Authorization: Bearer a", "Authorization: Bearer b"), 1, 200, "other"
    ),
    "scheme header": Case(lambda s: head(s, "X-Forwarded-Proto: https"), 1, 200, "other"),
    "absolute form": Case(
        lambda s: head(s, target="http://relay.test" + s.path(after="0-0", timeout="0")),
        1,
        200,
        "other",
    ),
    "fragment": Case(
        lambda s: head(s, target=s.path(after="0-0", timeout="0") + "#x"), 1, 200, "other"
    ),
    "percent-encoded path": Case(
        lambda s: head(s, target=s.path(after="0-0", timeout="0").replace("/poll", "/p%6fll")),
        1,
        200,
        "other",
    ),
    "another path": Case(lambda s: head(s, target="/healthz"), 1, 200, "other"),
    # Pipelined: answered in order; what is not a poll goes to gunicorn with its bytes.
    "two polls in one write": Case(lambda s: head(s) + head(s), 2, 200, None, kept=3),
    "two polls in one write, the first parked": Case(
        lambda s: parked(s) + head(s), 2, 200, None, kept=3
    ),
    "a parked poll then a post in one write": Case(
        lambda s: parked(s) + cancel(s), 2, 200, "other", kept=1
    ),
    "a poll then a post in one write": Case(
        lambda s: (
            head(s)
            + (
                f"POST /api/sessions/{s.session_id}/messages/no-such-message/cancel HTTP/1.1\r\n"
                "Host: relay.test\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        ),
        2,
        200,
        "other",
        kept=1,
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_a_kept_connection_answers_as_gunicorn_and_flask_would(
    pair: Pair, stream: Stream, name: str
) -> None:
    case = CASES[name]
    data = case.data(stream)
    before_handbacks, before_kept = handbacks(pair.fast), kept_polls(pair.fast)
    reference, kept = both_ways(pair, stream, data, case.responses)
    assert re.match(rb"HTTP/1\.[01] %d " % case.status, reference.responses[0]), reference
    assert kept == reference
    if case.status >= 400:
        assert re.search(rb'\r\n\r\n\{"error": ?\{"code": ?"', reference.responses[0]), "JSON"
    after = handbacks(pair.fast)
    if case.handed_back is not None:
        assert after[case.handed_back] == before_handbacks[case.handed_back] + 1, after
    assert kept_polls(pair.fast) == before_kept + case.kept


# -- bytes as they come ----------------------------------------------------------------------


@pytest.mark.parametrize("polls", [1, 2], ids=["a poll", "two polls in one write"])
def test_requests_split_at_every_offset_are_answered_in_step(
    pair: Pair, stream: Stream, polls: int
) -> None:
    """Into two writes at each offset, then a byte at a time: each gets the same answers."""
    data = head(stream) * polls
    reference = exchange(connect(pair.flask), stream, data, polls).responses
    before = kept_polls(pair.fast)
    with kept_connection(pair, stream) as sock:
        responses = Responses(sock)
        for offset in range(1, len(data)):
            sock.sendall(data[:offset])
            sock.sendall(data[offset:])
            assert [responses.next() for _ in range(polls)] == reference, f"split at {offset}"
        for byte in data:
            sock.sendall(bytes([byte]))
        assert [responses.next() for _ in range(polls)] == reference, "a byte at a time"
    assert kept_polls(pair.fast) == before + len(data) * polls, "the hub read every one"


def open_sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if fd.resolve(strict=False).name.startswith("socket:"))


def test_a_request_half_sent_then_closed_leaves_no_connection_open(
    pair: Pair, stream: Stream
) -> None:
    worker = pair.fast_worker_pid()
    before = open_sockets(worker)
    data = head(stream)
    for cut in (1, len(data) // 2, len(data) - 1):
        with kept_connection(pair, stream) as sock:
            sock.sendall(data[:cut])
    wait_for(lambda: open_sockets(worker) <= before, what="the server to close its sockets")
    with kept_connection(pair, stream) as sock:  # and it serves on
        sock.sendall(data)
        assert Responses(sock).next().startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize("behind", [False, True], ids=["alone", "pipelined behind a poll"])
def test_a_request_half_sent_then_left_is_closed_after_the_header_timeout(
    pair: Pair, stream: Stream, behind: bool
) -> None:
    with kept_connection(pair, stream) as sock:
        sock.sendall((head(stream) if behind else b"") + head(stream)[:20])
        if behind:
            assert Responses(sock).next().startswith(b"HTTP/1.1 200 OK")
        sock.settimeout(HEADER_TIMEOUT_SECONDS + 10)  # well under keepalive (95 s)
        assert sock.recv(65536) == b"", "closed without an answer"


def test_an_idle_kept_connection_outlives_the_header_timeout(pair: Pair, stream: Stream) -> None:
    with kept_connection(pair, stream) as sock:
        sock.settimeout(HEADER_TIMEOUT_SECONDS * 2.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # idle between requests, past the header timeout: still open
        sock.sendall(head(stream))
        assert Responses(sock).next().startswith(b"HTTP/1.1 200 OK")
