"""Requests gunicorn refuses before Flask sees them are answered in API.md's JSON.

gunicorn.conf.py replaces gunicorn.util.write_error, which gunicorn's worker
calls for a request it cannot parse. These tests talk raw HTTP to the test
session's gunicorn (run with gunicorn.conf.py), so an upgrade of gunicorn
that stops calling that function, or renames it, fails here.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest

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
