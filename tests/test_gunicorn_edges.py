"""Requests gunicorn refuses before Flask sees them are answered in API.md's JSON.

gunicorn.conf.py replaces gunicorn.util.write_error, which gunicorn's worker
calls for a request it cannot parse. These tests talk raw HTTP to the test
session's gunicorn (run with gunicorn.conf.py), so an upgrade of gunicorn
that stops calling that function, or renames it, fails here.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.processes import start_web

MALFORMED = [
    pytest.param(b"GARBAGE\r\n\r\n", 400, "bad_request", id="request line"),
    pytest.param(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Name: v\r\n\r\n",
        400,
        "bad_request",
        id="header name",
    ),
    # limit_request_line is 4094 bytes by default.
    pytest.param(
        b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        414,
        "uri_too_long",
        id="request line too long",
    ),
    # limit_request_fields is 100 by default.
    pytest.param(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-Header-%d: v\r\n" % i for i in range(120))
        + b"\r\n",
        431,
        "request_headers_too_large",
        id="too many headers",
    ),
    # limit_request_field_size is 8190 bytes by default.
    pytest.param(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        431,
        "request_headers_too_large",
        id="header too large",
    ),
]


def exchange(base_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; read the answer until the server closes: (status, headers, body)."""
    address = urlsplit(base_url)
    data = b""
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(("request_bytes", "status", "code"), MALFORMED)
def test_a_request_gunicorn_refuses_is_answered_in_json(
    web: str, request_bytes: bytes, status: int, code: str
) -> None:
    answer_status, headers, body = exchange(web, request_bytes)
    assert answer_status == status
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    error = json.loads(body)["error"]
    assert error["code"] == code
    assert error["message"] and "<" not in error["message"]


def test_the_refusal_does_not_quote_the_request_back(web: str) -> None:
    _, _, body = exchange(web, b"<script>alert(1)</script> / HTTP/1.1\r\n\r\n")
    assert b"script" not in body


def test_the_server_serves_after_refusing(web: str) -> None:
    for param in MALFORMED:
        exchange(web, param.values[0])
    assert httpx.get(f"{web}/healthz", timeout=10).status_code == 200


# -- the header timeout (webapp/serving/gunicorn_worker.py) ------------------------------
# gunicorn 27 bounds a request's header read only by `keepalive`; relay's
# worker gives the headers HEADER_TIMEOUT_SECONDS from the read that brought
# their first byte. This relies on gunicorn reading headers under
# worker.timeout_ctx() through the parser's SocketUnreader (handover.py,
# item 6): if gunicorn stops doing either, a half-sent request stays open
# for keepalive (95 s) and the first test fails.

HEADER_TIMEOUT_SECONDS = 1.0
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def quick_web(base_env: dict[str, str], log_dir) -> Iterator[str]:
    env = dict(base_env, HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT_SECONDS))
    proc, base_url = start_web(env, log_dir, name="web-header-timeout")
    yield base_url
    proc.stop()


def connect(base_url: str) -> socket.socket:
    address = urlsplit(base_url)
    return socket.create_connection((address.hostname, address.port), timeout=30)


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock` without answering, or None if it did not."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return None
    assert data == b"", f"the server answered a half-sent request: {data[:200]!r}"
    return time.monotonic() - started


def read_response(reader: BinaryIO) -> bytes:
    """One whole response with Content-Length: its head and body may arrive apart."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()
        assert line, f"the server closed mid-head: {head!r}"
        head += line
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = reader.read(length)
    assert len(body) == length, f"the server closed mid-body: {body!r}"
    return head


def test_half_sent_requests_are_closed_after_the_header_timeout(quick_web: str) -> None:
    half_sent = [connect(quick_web) for _ in range(20)]
    try:
        for sock in half_sent:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        # Meanwhile other requests are served.
        with httpx.Client(base_url=quick_web, timeout=10) as http:
            assert http.get("/healthz").status_code == 200
        for sock in half_sent:
            # Well under keepalive (95 s), which bounded them before.
            waited = closed_within(sock, HEADER_TIMEOUT_SECONDS + 10)
            assert waited is not None, "a half-sent request was kept past the header timeout"
    finally:
        for sock in half_sent:
            sock.close()


def test_an_idle_keep_alive_connection_outlives_the_header_timeout(quick_web: str) -> None:
    with connect(quick_web) as sock:
        reader = sock.makefile("rb")
        sock.sendall(REQUEST)
        assert read_response(reader).startswith(b"HTTP/1.1 200")
        # Idle between requests, past the header timeout: still open.
        assert closed_within(sock, HEADER_TIMEOUT_SECONDS * 2.5) is None
        sock.sendall(REQUEST)
        assert read_response(reader).startswith(b"HTTP/1.1 200")


def test_pipelined_requests_are_each_served(quick_web: str) -> None:
    with connect(quick_web) as sock:
        # The second request's bytes sit in gunicorn's buffer when its header read starts.
        reader = sock.makefile("rb")
        sock.sendall(REQUEST + REQUEST)
        assert read_response(reader).startswith(b"HTTP/1.1 200")
        assert read_response(reader).startswith(b"HTTP/1.1 200")
