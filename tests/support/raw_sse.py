"""Many SSE connections read by one thread: raw sockets and a selector.

A few hundred streams cost one socket each and no thread, so a test can hold
that many open on a small machine and still see when each event arrived.
Each stream records the `time.monotonic()` at which every `chunk` event
came in, which is what a "did it keep flowing" test needs.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable


class RawStream:
    """One `GET .../events` over HTTP/1.0: the body is the raw SSE text, closed at the end."""

    def __init__(self, port: int, path: str) -> None:
        self.path = path
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(
            f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        self.sock.setblocking(False)
        self.head: bytes | None = None
        self.pending = b""
        self.started = False  # the `retry:` line arrived: the server is streaming
        self.chunk_times: list[float] = []
        self.event_ids: list[str] = []
        self.ended = False  # an `end` event arrived
        self.closed = False

    def feed(self, data: bytes, now: float) -> None:
        self.pending += data
        if self.head is None:
            if b"\r\n\r\n" not in self.pending:
                return
            self.head, _, self.pending = self.pending.partition(b"\r\n\r\n")
            status = self.head.split(b"\r\n", 1)[0]
            assert b" 200 " in status, f"{self.path}: {status!r}"
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            if line.startswith(b"retry:"):
                self.started = True
            elif line == b"event: chunk":
                self.chunk_times.append(now)
            elif line == b"event: end":
                self.ended = True
            elif line.startswith(b"id: "):
                self.event_ids.append(line[4:].decode())

    def chunks_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.chunk_times if start < t < end)

    def close(self) -> None:
        self.closed = True
        self.sock.close()


class StreamSet:
    """Reads every open stream as bytes arrive."""

    def __init__(self) -> None:
        self.streams: list[RawStream] = []
        self._selector = selectors.DefaultSelector()

    def open(self, port: int, path: str) -> RawStream:
        stream = RawStream(port, path)
        self.streams.append(stream)
        self._selector.register(stream.sock, selectors.EVENT_READ, stream)
        return stream

    def pump(self, until: Callable[[], bool], timeout: float, what: str) -> None:
        """Read until `until()` holds; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            for key, _ in self._selector.select(0.05):
                stream: RawStream = key.data
                data = stream.sock.recv(65536)
                if data:
                    stream.feed(data, time.monotonic())
                else:
                    self._selector.unregister(stream.sock)
                    stream.close()

    def close(self) -> None:
        for stream in self.streams:
            if not stream.closed:
                self._selector.unregister(stream.sock)
                stream.close()
        self._selector.close()
