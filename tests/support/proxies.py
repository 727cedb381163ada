"""Hostile HTTP proxies for browser tests: they buffer, cut, refuse or lose answers.

Both listen on 127.0.0.1 on a free port, forward to one upstream, and carry
one request per connection: they rewrite the request's `Connection` header to
`close`, so gunicorn closes the upstream connection after each response (and
says so to the browser). That gives "the upstream closed it" a meaning for
every response, and it means a cut only ever hits a request that is still
running when the time is up, not a quick one that happened to reuse an old
connection.

- `BufferingProxy` forwards response headers at once but holds the body
  until the upstream closes, like an anti-virus or corporate proxy that
  scans whole responses: an SSE stream shows its headers and then nothing.
- `CuttingProxy` forwards bytes as they come and closes both sides a short
  time after accepting, like a flaky network or a router's hard timeout.
- `SseRefusingProxy` answers the first SSE requests itself with a 503, like
  a gateway that does not allow streaming, then lets them through.
- `AnswerLosingProxy` forwards the first prompt posts to the upstream, lets
  them finish there, and closes the browser's connection without a byte of
  the answer: the prompt was taken, but the browser sees a network error.
- `FreezingProxy` lets the first event streams send some bytes, then
  relays nothing more and keeps them open, like a network gone silent.
- `ByteCuttingProxy` cuts each response at a random byte offset (seeded),
  headers included, until it has made its number of cuts.

Every connection is bounded by `max_seconds`; `stop()` closes them all.
`requests` logs the request line of each, in the order they came.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import selectors
import socket
import threading
import time
from collections.abc import Iterator

HEAD_LIMIT = 65536
HOP_BY_HOP = (b"connection", b"keep-alive", b"proxy-connection")


def read_head(sock: socket.socket, deadline: float) -> tuple[bytes, bytes]:
    """Bytes up to and including the blank line, and whatever came after."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = sock.recv(16384)
        if not chunk or len(data) > HEAD_LIMIT:
            raise ConnectionError("no complete request head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def one_request_per_connection(head: bytes) -> bytes:
    """The request head with `Connection: close` instead of any keep-alive."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    kept = [lines[0]] + [
        line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in HOP_BY_HOP
    ]
    return b"\r\n".join(kept + [b"Connection: close"]) + b"\r\n\r\n"


class Proxy:
    """Accepts connections and relays each to the upstream in its own thread."""

    def __init__(self, upstream: str, max_seconds: float = 60.0) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.max_seconds = max_seconds
        self.connections = 0
        self.requests: list[str] = []  # "GET /path HTTP/1.1", one per request
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            still_open = list(self._open)
        for sock in still_open:
            self._close(sock)
        self._thread.join(5)

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.2)  # closing a socket does not wake accept() on Linux
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed by stop()
            client.settimeout(None)
            with self._lock:
                self.connections += 1
                self._open.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        accepted = time.monotonic()
        upstream = None
        try:
            head, rest = read_head(client, accepted + 10)
            with self._lock:
                self.requests.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            answer = self.intercept(head)
            if answer is not None:
                client.sendall(answer)
                return
            upstream = socket.create_connection(self.upstream, timeout=5)
            with self._lock:
                self._open.add(upstream)
            upstream.sendall(self.request_head(head) + rest)
            self.relay(client, upstream, accepted)
        except OSError:
            pass  # either side went away: the browser sees a failed request
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        try:
            sock.close()
        except OSError:
            pass

    def pump(
        self, client: socket.socket, upstream: socket.socket, deadline: float
    ) -> Iterator[bytes]:
        """Request bytes go up as they come; yields response bytes; stops at EOF or deadline."""
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ)
            sel.register(upstream, selectors.EVENT_READ)
            while not self._stopped.is_set() and (remaining := deadline - time.monotonic()) > 0:
                for key, _ in sel.select(min(remaining, 0.25)):
                    data = key.fileobj.recv(65536)
                    if key.fileobj is client:
                        if not data:
                            return  # the browser gave up on this request
                        upstream.sendall(data)
                    elif data:
                        yield data
                    else:
                        return  # upstream closed: the response is complete

    def intercept(self, head: bytes) -> bytes | None:
        """A response to send instead of asking the upstream, or None."""
        return None

    def request_head(self, head: bytes) -> bytes:
        """The request head sent upstream (subclasses rewrite it)."""
        return one_request_per_connection(head)

    def relay(self, client: socket.socket, upstream: socket.socket, accepted: float) -> None:
        """Forward the response as it comes (subclasses hold or cut it)."""
        for data in self.pump(client, upstream, accepted + self.max_seconds):
            client.sendall(data)


class BufferingProxy(Proxy):
    """Passes response headers at once and holds every body until the upstream closes."""

    def __init__(self, upstream: str, max_seconds: float = 60.0) -> None:
        super().__init__(upstream, max_seconds)
        self.held_streams = 0  # text/event-stream responses it held

    def relay(self, client: socket.socket, upstream: socket.socket, accepted: float) -> None:
        received = b""
        head_sent = False
        for data in self.pump(client, upstream, accepted + self.max_seconds):
            received += data
            if not head_sent and b"\r\n\r\n" in received:
                head, _, received = received.partition(b"\r\n\r\n")
                client.sendall(head + b"\r\n\r\n")
                head_sent = True
                if b"text/event-stream" in head.lower():
                    with self._lock:
                        self.held_streams += 1
        client.sendall(received)


class CuttingProxy(Proxy):
    """Relays bytes as they come and closes both sides `cut_after_seconds` after accepting."""

    def __init__(self, upstream: str, cut_after_seconds: float) -> None:
        super().__init__(upstream, max_seconds=cut_after_seconds)
        self.cuts = 0  # connections closed while the upstream was still sending

    def relay(self, client: socket.socket, upstream: socket.socket, accepted: float) -> None:
        deadline = accepted + self.max_seconds
        for data in self.pump(client, upstream, deadline):
            client.sendall(data)
        if time.monotonic() >= deadline:
            with self._lock:
                self.cuts += 1


class SseRefusingProxy(Proxy):
    """Answers the first `refuse` SSE requests with 503; relays everything else."""

    def __init__(self, upstream: str, refuse: int) -> None:
        super().__init__(upstream)
        self.refuse = refuse
        self.sse_requests = 0

    def intercept(self, head: bytes) -> bytes | None:
        path = head.split(b" ", 2)[1]
        if b"/events" not in path:
            return None
        with self._lock:
            self.sse_requests += 1
            if self.sse_requests > self.refuse:
                return None
        body = b'{"error": {"code": "unavailable", "message": "no streaming here"}}'
        return (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )


class AnswerLosingProxy(Proxy):
    """Lets the first `lose` prompt posts run upstream and drops their answers."""

    def __init__(self, upstream: str, lose: int) -> None:
        super().__init__(upstream)
        self.lose = lose
        self.prompt_posts = 0  # POST .../messages requests forwarded upstream
        self.lost = 0  # of those, answers the browser never got
        self._request = threading.local()  # each connection is served on its own thread

    def intercept(self, head: bytes) -> bytes | None:
        method, path = (head.split(b" ", 2) + [b"", b""])[:2]
        self._request.prompt_post = method == b"POST" and path.rstrip(b"/").endswith(b"/messages")
        return None

    def relay(self, client: socket.socket, upstream: socket.socket, accepted: float) -> None:
        with self._lock:
            if self._request.prompt_post:
                self.prompt_posts += 1
            losing = self._request.prompt_post and self.prompt_posts <= self.lose
        if not losing:
            super().relay(client, upstream, accepted)
            return
        for _ in self.pump(client, upstream, accepted + self.max_seconds):
            pass  # the whole answer, read until the upstream closes, and thrown away
        with self._lock:
            self.lost += 1


class FreezingProxy(Proxy):
    """Relays `after_bytes` of each of the first `freeze` event streams, then nothing more.

    The frozen connection stays open (until the client closes it, or
    `max_seconds`): no error, no end, no keep-alive, as when a network path
    dies without a word. Only a client that watches for silence moves on.
    """

    def __init__(self, upstream: str, after_bytes: int, freeze: int) -> None:
        super().__init__(upstream)
        self.after_bytes = after_bytes
        self.freeze = freeze
        self.frozen = 0
        self._request = threading.local()

    def intercept(self, head: bytes) -> bytes | None:
        self._request.stream = b"/events" in head.split(b" ", 2)[1]
        return None

    def relay(self, client: socket.socket, upstream: socket.socket, accepted: float) -> None:
        with self._lock:
            freezing = self._request.stream and self.frozen < self.freeze
            self.frozen += freezing
        sent = 0
        deadline = accepted + self.max_seconds
        for data in self.pump(client, upstream, deadline):
            if freezing and sent + len(data) > self.after_bytes:
                client.sendall(data[: self.after_bytes - sent])
                self._hold(client, deadline)
                return
            client.sendall(data)
            sent += len(data)

    def _hold(self, client: socket.socket, deadline: float) -> None:
        """Send nothing until the client gives up on the connection (or the deadline)."""
        while not self._stopped.is_set() and (remaining := deadline - time.monotonic()) > 0:
            client.settimeout(min(remaining, 0.25))
            try:
                if not client.recv(65536):
                    return
            except TimeoutError:
                continue


class ByteCuttingProxy(Proxy):
    """Relays each response up to a random byte offset (seeded), then closes both sides.

    A stream (no Content-Length) is cut at an offset log-uniform in
    [min_bytes, max_bytes]: cuts at every scale, from inside its headers to
    deep into it. A response of known length is cut with probability
    `bounded_odds`, at an offset uniform within it, headers included: a
    long-poll whose answer outgrew every stream offset still gets through
    sometimes, as it would on a real flaky network. The draws come from a
    `random.Random(seed)`, in the order responses start. After `cuts` cuts
    it relays everything, so that a test always ends. With `only`, it cuts
    only the responses to requests whose request line matches it.
    """

    def __init__(
        self,
        upstream: str,
        seed: int,
        cuts: int,
        min_bytes: int = 16,
        max_bytes: int = 8192,
        bounded_odds: float = 0.5,
        only: re.Pattern[str] | None = None,
    ) -> None:
        super().__init__(upstream)
        self.only = only
        self.random = random.Random(seed)
        self.scale = (math.log(min_bytes), math.log(max_bytes))
        self.bounded_odds = bounded_odds
        self.cuts_left = cuts
        self.cuts: list[str] = []  # the request line of each response it cut
        self.cut_bytes: list[bytes] = []  # what it relayed of each, head included
        self._request = threading.local()

    def intercept(self, head: bytes) -> bytes | None:
        self._request.line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        return None

    def offset(self, head: bytes) -> int | None:
        """Where to cut the response whose head is `head` (None: not at all)."""
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if self.only is not None and not self.only.search(self._request.line):
            return None
        with self._lock:
            if length is None:
                return int(math.exp(self.random.uniform(*self.scale)))
            if self.random.random() >= self.bounded_odds:
                return None
            return self.random.randint(1, len(head) + int(length.group(1)) - 1)

    def relay(self, client: socket.socket, upstream: socket.socket, accepted: float) -> None:
        received = b""
        for data in self.pump(client, upstream, accepted + self.max_seconds):
            received += data
            if b"\r\n\r\n" in received:
                break
        else:
            client.sendall(received)
            return
        head = received[: received.index(b"\r\n\r\n") + 4]
        offset = self.offset(head)
        sent = 0
        relayed: list[bytes] = []  # what went to the client
        for data in itertools.chain(
            [received], self.pump(client, upstream, accepted + self.max_seconds)
        ):
            if offset is not None and sent + len(data) > offset:
                piece = data[: max(offset - sent, 0)]
                if self._take_cut(relayed + [piece]):
                    client.sendall(piece)
                    return
            relayed.append(data)
            client.sendall(data)
            sent += len(data)

    def _take_cut(self, relayed: list[bytes]) -> bool:
        with self._lock:
            if self.cuts_left <= 0:
                return False
            self.cuts_left -= 1
            self.cuts.append(self._request.line)
            self.cut_bytes.append(b"".join(relayed))
            return True
