"""What relay relies on from gunicorn's internals (webapp/serving/handover.py), pinned.

If an upgrade of gunicorn changes any of it, these fail before a client
sees a broken stream: the version range the hand-over was checked against,
the chunk framing, and, served by gunicorn's gevent worker, the socket in
the environ, the headers written with the first item, and the quiet close
on EPIPE that lets the hub keep the connection; the parser's reader that
the header timeout hooks into (item 6); the function that answers a request
gunicorn refuses (item 7); the head and whole answer gunicorn writes, which
a parked poll and a poll answered on a kept connection write themselves
(item 8); and the bytes its reader holds past a request, taken and given
back (item 9).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent.socket
import pytest
from gunicorn import config as gunicorn_config
from gunicorn import http as gunicorn_http
from gunicorn import util
from gunicorn.http import parser as gunicorn_parser
from gunicorn.http import wsgi as gunicorn_wsgi
from gunicorn.workers import base as gunicorn_workers

from tests.support.processes import Process, free_port, python, wait_until_answers
from webapp.read.entries import chunked
from webapp.serving import gunicorn_worker, handover, poll_answers, refusals

JSON = "application/json"


def test_gunicorn_is_a_release_the_hand_over_was_checked_against() -> None:
    major, minor = (int(part) for part in importlib.metadata.version("gunicorn").split(".")[:2])
    low, high = handover.GUNICORN_CHECKED
    assert low <= (major, minor) < high, "check handover.py against this gunicorn, then the range"


def test_chunks_are_framed_as_gunicorn_frames_them() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        util.write_chunk(ours, b"data: x\n\n")
        util.write_chunk(ours, b"")  # how gunicorn ends a chunked body
        expected = chunked(b"data: x\n\n") + handover.LAST_CHUNK
        assert theirs.recv(1024) == expected


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Process]]:
    """gunicorn's gevent worker serving tests/support/handover_app.py, logging at debug."""
    folder = Path(tmp_path_factory.mktemp("handover"))
    config = folder / "gunicorn.conf.py"
    config.write_text('worker_class = "gevent"\nloglevel = "debug"\nerrorlog = "-"\n')
    port = free_port()
    argv = [python(), "-m", "gunicorn", "--config", str(config)]
    argv += ["--bind", f"127.0.0.1:{port}", "tests.support.handover_app:app"]
    server = Process("gunicorn-handover", argv, {"PATH": "/usr/bin:/bin"}, folder).start()
    wait_until_answers(server, f"http://127.0.0.1:{port}/")
    yield port, server
    server.stop()


def get(port: int, version: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET / {version}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while data := sock.recv(65536):
            received += data
        return received


def test_a_response_handed_over_mid_body_reaches_the_client_whole(
    served: tuple[int, Process],
) -> None:
    port, server = served
    quiet_before = server.log_text().count("Ignoring EPIPE")
    head, _, body = get(port, "HTTP/1.1").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head
    first = chunked(b"through gunicorn, ")
    assert body == first + chunked(b"then from the hub") + handover.LAST_CHUNK

    head, _, body = get(port, "HTTP/1.0").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"Transfer-Encoding" not in head
    assert body == b"through gunicorn, then from the hub"

    log = server.log_text()
    quiet = log.count("Ignoring EPIPE") - quiet_before
    assert quiet == 2, "gunicorn let go of both connections on the EPIPE, quietly"
    assert "Traceback" not in log and "Error handling request" not in log


# -- item 6: the header timeout's hooks (webapp/serving/gunicorn_worker.py) ----------------
# That gunicorn reads headers under worker.timeout_ctx() is pinned end to end
# by tests/test_gunicorn_edges.py (a half-sent request closed after the
# header timeout); here, that its parser reads through the reader relay puts
# in gunicorn/http/parser.py, and that the first bytes read start the limit.


@pytest.fixture
def timed_parsers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Put back gunicorn's own reader after the test.
    monkeypatch.setattr(gunicorn_parser, "SocketUnreader", gunicorn_parser.SocketUnreader)
    gunicorn_worker.read_requests_through_timed_reads()
    yield


def parser_on(sock: socket.socket) -> Any:
    return gunicorn_http.get_parser(gunicorn_config.Config(), sock, ("127.0.0.1", 1))


def test_gunicorn_parsers_read_through_timed_reads(timed_parsers: None) -> None:
    ours, theirs = gevent.socket.socketpair()
    with ours, theirs:
        parser = parser_on(ours)
        assert isinstance(parser.unreader, gunicorn_worker.TimedReads)
        theirs.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with gunicorn_worker.HeaderDeadline(
            parser.unreader, idle_seconds=60, header_seconds=30
        ) as deadline:
            assert deadline.seconds == 60, "no bytes yet: the idle limit"
            request = next(parser)
            assert deadline.seconds == 30, "the read that brought bytes started the header limit"
        assert request.path == "/"


def test_a_half_sent_request_is_cut_at_the_header_limit(timed_parsers: None) -> None:
    ours, theirs = gevent.socket.socketpair()
    with ours, theirs:
        parser = parser_on(ours)
        theirs.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        request = None
        started = time.monotonic()
        with gunicorn_worker.HeaderDeadline(parser.unreader, idle_seconds=60, header_seconds=0.2):
            request = next(parser)
        assert request is None, "the limit ended the read, quietly, as gunicorn's own does"
        assert time.monotonic() - started < 30, "the header limit, not the idle one, ended it"


def test_pipelined_bytes_start_the_header_limit_at_once(timed_parsers: None) -> None:
    ours, theirs = gevent.socket.socketpair()
    with ours, theirs:
        parser = parser_on(ours)
        theirs.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert next(parser).path == "/1"
        with gunicorn_worker.HeaderDeadline(
            parser.unreader, idle_seconds=60, header_seconds=30
        ) as deadline:
            assert deadline.seconds == 30, "the next request's bytes were already read"
            assert next(parser).path == "/2"


# -- item 7: the answer to a request gunicorn refuses (webapp/serving/refusals.py) ----------
# That gunicorn's worker calls it for every request it cannot parse, and that
# the answer is JSON, is pinned end to end by tests/test_gunicorn_edges.py.


def test_gunicorn_answers_refused_requests_through_util_write_error() -> None:
    theirs = inspect.signature(util.write_error)
    ours = inspect.signature(refusals.write_json_error)
    assert (
        list(theirs.parameters) == list(ours.parameters) == ["sock", "status_int", "reason", "mesg"]
    )
    # Looked up on the module at each call, so replacing it there takes effect.
    assert "util.write_error(" in inspect.getsource(gunicorn_workers.Worker.handle_error)


# -- item 8: the answers relay writes itself (webapp/serving/poll_answers.py) -------------

APP_HEADERS = [("Cache-Control", "no-store"), ("Vary", "Origin"), ("Content-Type", JSON)]


def gunicorn_answer(request: bytes, body: bytes) -> tuple[bytes, Any, dict[str, Any]]:
    """gunicorn's own bytes for a response with its length, as its worker writes the app's."""
    cfg = gunicorn_config.Config()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(request)
        req = next(gunicorn_http.get_parser(cfg, ours, ("127.0.0.1", 1)))
        response, environ = gunicorn_wsgi.create(req, ours, ("127.0.0.1", 1), ("x", 80), cfg)
        response.start_response("200 OK", [*APP_HEADERS, ("Content-Length", str(len(body)))])
        response.write(body)
        written = theirs.recv(65536)
    return DATE.sub(b"Date: -", written), response, environ


DATE = re.compile(rb"Date: [^\r]*")
ANSWER_REQUESTS = [
    b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /p HTTP/1.0\r\nHost: x\r\n\r\n",
    b"GET /p HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
]


@pytest.mark.parametrize(
    "request_bytes", ANSWER_REQUESTS, ids=["1.1", "1.1 close", "1.0", "1.0 keep-alive"]
)
def test_a_parked_poll_writes_the_head_gunicorn_writes(request_bytes: bytes) -> None:
    written, response, environ = gunicorn_answer(request_bytes, b"{}")
    keep_alive = poll_answers.asks_keep_alive(environ)
    # Kept open only where gunicorn would keep it (1.0 keep-alive: closed, which is allowed).
    assert not keep_alive or not response.should_close()
    theirs = [line for line in response.default_headers() if not line.startswith("Date: ")]
    if not keep_alive:
        theirs = [line.replace("keep-alive", "close") for line in theirs]
    protocol = environ["SERVER_PROTOCOL"]
    head = poll_answers.head(protocol, poll_answers.fields_of(APP_HEADERS), keep_alive)
    ours = head.decode("latin-1").split("\r\n")
    assert [f"{line}\r\n" for line in ours[: len(theirs)]] == theirs
    now = 1_700_000_000.5
    assert poll_answers.http_date(now).decode() == util.http_date(now)
    before, ours_now, after = util.http_date(), poll_answers.http_date(), util.http_date()
    assert ours_now.decode() in (before, after), "the Date of now, made once a second"


def test_a_poll_answered_at_once_on_a_kept_connection_is_gunicorns_bytes() -> None:
    """poll_connections.py writes the whole answer as gunicorn writes the app's response."""
    body = b'{"events":[],"cursor":"0-0","reset":false}'
    written, _, _ = gunicorn_answer(ANSWER_REQUESTS[0], body)
    ours = poll_answers.answer_at_once(poll_answers.fields_of(APP_HEADERS), body, keep_alive=True)
    assert DATE.sub(b"Date: -", ours) == written


# -- item 9: bytes read ahead, and given back (webapp/serving/handover.py) -----------------

TWO = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"


def test_what_gunicorn_read_past_a_request_waits_in_its_reader_to_be_taken() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        parser = parser_on(ours)
        theirs.sendall(TWO)
        assert next(parser).path == "/1"
        assert parser.unreader.take_buffered() == TWO[TWO.index(b"GET /2") :]
        assert parser.unreader.take_buffered() == b"", "taken, not copied"


def test_bytes_given_back_are_parsed_before_the_socket(timed_parsers: None) -> None:
    """A connection handed back with bytes read ahead: gunicorn's next parser starts with them."""
    ours, theirs = gevent.socket.socketpair()
    with ours, theirs:
        handover._this_connection.given_back = b"GET /given HTTP/1.1\r\nHo"
        parser = parser_on(ours)
        assert handover.reads_of_this_connection() is parser.unreader
        theirs.sendall(b"st: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert next(parser).path == "/given"
        assert next(parser).path == "/next"
        assert parser_on(ours).unreader.take_buffered() == b"", "given back once"
