"""Streams the hub holds after their greenlet ended (webapp/sockets.py).

The bytes on the wire must be exactly what gunicorn would have written:
chunked for HTTP/1.1 with the final chunk at the time limit, raw and closed
for HTTP/1.0, whichever side wrote each part.
"""

from __future__ import annotations

import socket
import time

import httpx

from tests.support.client import create_session, post_prompt, read_sse
from tests.support.model_server import ModelServer


def read_until_closed(port: int, path: str, version: str, timeout: float = 20.0) -> bytes:
    """The whole response to one GET, read until the server closes or ends the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} {version}\r\nHost: x\r\n\r\n".encode())
        received = b""
        while not received.endswith(b"\r\n0\r\n\r\n"):
            data = sock.recv(65536)
            if not data:
                break
            received += data
        return received


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """Decode a chunked body; True if it ended with the last (zero-size) chunk."""
    decoded = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return decoded, rest == b"\r\n"
        assert rest[size : size + 2] == b"\r\n", "a chunk must end with CRLF"
        decoded, body = decoded + rest[:size], rest[size + 2 :]
    return decoded, False


def test_held_streams_send_whole_bodies_in_both_http_versions(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(SSE_MAX_SECONDS="3")
    web = stack.web()
    stack.worker()
    port = int(web.rsplit(":", 1)[1])
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        prompt = f"held {unique}"
        model_server.behave(prompt, chunks=["one ", "two ", "three"])
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        read_sse(web, session_id, until_message=message_id)  # the answer is complete
        path = f"/api/sessions/{session_id}/events"

        started = time.monotonic()
        http11 = read_until_closed(port, path, "HTTP/1.1")
        head, _, body = http11.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        text, whole = dechunk(body)
        assert whole, "the time limit ends the body with its last chunk"
        assert time.monotonic() - started >= 2.5  # held until SSE_MAX_SECONDS, not closed early
        assert text.startswith(b"retry: ") and text.count(b"event: end\n") == 1
        assert b"\n: keep-alive\n\n" in text  # HEARTBEAT_SECONDS is 1 in the tests

        http10 = read_until_closed(port, path, "HTTP/1.0")
        head, _, raw = http10.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding" not in head
        assert raw.replace(b": keep-alive\n\n", b"") == text.replace(b": keep-alive\n\n", b"")
