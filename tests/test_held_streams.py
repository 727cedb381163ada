"""Streams the hub holds after their greenlet ended (webapp/serving/held_streams.py).

The bytes on the wire must be exactly what gunicorn would have written:
chunked for HTTP/1.1 with the final chunk at the time limit, raw and closed
for HTTP/1.0, whichever side wrote each part.
"""

from __future__ import annotations

import socket
import time

import gevent.event
import gevent.socket
import httpx

from tests.support.client import create_session, post_prompt, read_sse
from tests.support.model_server import ModelServer
from webapp.read.entries import KEEP_ALIVE, Entry, chunked
from webapp.serving.held_streams import MAX_PENDING_BYTES, HeldStream, holder
from webapp.storage import events


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


# -- one held stream on a local socket pair (gevent's, as in the web process) --


def held_pair(**overrides: float) -> tuple[HeldStream, gevent.socket.socket, gevent.event.Event]:
    """A held stream writing into a small socket buffer that nobody reads yet."""
    ours, theirs = gevent.socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ended = gevent.event.Event()
    settings = {"deadline": time.monotonic() + 60, "heartbeat_seconds": 60.0}
    settings["send_timeout_seconds"] = 1.0
    settings.update(overrides)
    stream = HeldStream(ours, chunked=True, session_id="local", on_end=ended.set, **settings)
    return stream, theirs, ended


def big_entry(size: int) -> Entry:
    return Entry("1-1", "chunk", events.dumps({"text": "z" * size}))


def test_a_held_client_that_stops_reading_is_ended_by_the_send_deadline() -> None:
    """Queued below MAX_PENDING_BYTES: the flusher blocks, and the send deadline ends it."""
    stream, theirs, ended = held_pair(send_timeout_seconds=0.5)
    stream.deliver([big_entry(MAX_PENDING_BYTES // 2)])
    assert not stream.ended  # queued, and a flusher is trying
    assert ended.wait(10), "the send-deadline sweep must end the stream"
    theirs.close()


def test_a_held_client_that_falls_too_far_behind_is_ended_at_once() -> None:
    stream, theirs, ended = held_pair()
    stream.deliver([big_entry(MAX_PENDING_BYTES * 2)])
    assert stream.ended and ended.is_set()
    theirs.close()


def test_the_sweep_keeps_a_quiet_stream_alive_then_ends_it_with_the_last_chunk() -> None:
    stream, theirs, ended = held_pair(heartbeat_seconds=15.0, deadline=time.monotonic() + 100)
    holder.sweep(time.monotonic() + 15)  # quiet for a heartbeat: a keep-alive
    holder.sweep(time.monotonic() + 101)  # past the deadline: the end of the body
    assert ended.is_set()
    received = b""
    while data := theirs.recv(65536):
        received += data
    assert received == chunked(KEEP_ALIVE) + b"0\r\n\r\n"
    theirs.close()
