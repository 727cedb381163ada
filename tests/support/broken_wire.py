"""Proxies in front of a real relay that break the wire on purpose (proxies.py's `Proxy`).

- `ByteCuttingProxy` relays every response (or a share of them) up to a
  random byte offset (drawn from a seeded generator, one per connection),
  then closes both sides: cuts land inside headers, inside an SSE event,
  inside a JSON body.
- The rest make a deployment that breaks one rule of API.md, for the
  conformance check to name:
  - `RepeatingIds` sends every third `chunk` of an SSE stream twice;
  - `OffByOne` resumes one event early: a cursor (`Last-Event-ID`,
    `last_event_id`, `after`) goes upstream as the id just before it, so
    the event the client already has comes again;
  - `HtmlErrors` answers every error with an HTML page, as a default
    error handler or a gateway would.

`RepeatingIds` rewrites SSE bodies, so it asks relay for them over
HTTP/1.0: the body is then the SSE text itself, ended by closing, with no
chunked framing to take apart.
"""

from __future__ import annotations

import itertools
import random
import re
import socket
from collections.abc import Iterator

from tests.support.proxies import Proxy

U64_MAX = 2**64 - 1
CURSOR = re.compile(rb"(Last-Event-ID: |last_event_id=|after=)([0-9]+)-([0-9]+)")
ERROR_PAGE = b"<!doctype html><html><body><h1>Something went wrong</h1></body></html>"


class ByteCuttingProxy(Proxy):
    """Cuts responses at a seeded random offset in [min_bytes, max_bytes], then closes.

    `share` is the part of responses it cuts (all by default); the others pass
    whole. A long-poll answer is JSON, useless unless whole, and it holds every
    event since the last poll, so cutting every one could hold a client back for
    good once its backlog outgrew `max_bytes`: polls are tested with a share.
    """

    def __init__(
        self,
        upstream: str,
        seed: int,
        min_bytes: int = 1,
        max_bytes: int = 6000,
        share: float = 1.0,
    ) -> None:
        super().__init__(upstream)
        self._rng = random.Random(seed)
        self.min_bytes, self.max_bytes, self.share = min_bytes, max_bytes, share
        self.cuts = 0  # responses cut before their end

    def relay(self, client: socket.socket, upstream: socket.socket, accepted: float) -> None:
        with self._lock:
            left = self._rng.randint(self.min_bytes, self.max_bytes)
            if self._rng.random() >= self.share:
                left = -1  # this one passes whole
        for data in self.pump(client, upstream, accepted + self.max_seconds):
            if 0 <= left <= len(data):
                client.sendall(data[:left])
                with self._lock:
                    self.cuts += 1
                return
            client.sendall(data)
            left -= len(data) if left >= 0 else 0


class BrokenRelay(Proxy):
    """Relays relay's answers through `response`, which a subclass breaks."""

    def relay(self, client: socket.socket, upstream: socket.socket, accepted: float) -> None:
        body = self.pump(client, upstream, accepted + self.max_seconds)
        received = b""
        for data in body:
            received += data
            if b"\r\n\r\n" in received:
                break
        else:
            client.sendall(received)
            return
        head, _, first = received.partition(b"\r\n\r\n")
        for data in self.response(head + b"\r\n\r\n", first, body):
            client.sendall(data)

    def response(self, head: bytes, first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
        yield head + first
        yield from rest


class RepeatingIds(BrokenRelay):
    def request_head(self, head: bytes) -> bytes:
        head = super().request_head(head)
        if b"/events" in head.split(b"\r\n", 1)[0]:
            head = head.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
        return head

    def response(self, head: bytes, first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
        if b"text/event-stream" not in head.lower():
            yield from super().response(head, first, rest)
            return
        yield head
        pending, chunks = first, 0
        for data in itertools.chain([b""], rest):
            pending += data
            *frames, pending = pending.split(b"\n\n")
            for frame in frames:
                yield frame + b"\n\n"
                if b"\nevent: chunk\n" in frame:
                    chunks += 1
                    if chunks % 3 == 0:
                        yield frame + b"\n\n"
        yield pending


def one_before(match: re.Match[bytes]) -> bytes:
    ms, seq = int(match[2]), int(match[3])
    if (ms, seq) == (0, 0) or max(ms, seq) > U64_MAX:
        return match[0]  # nothing before it, or not an id at all: relay's to refuse
    earlier = f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{U64_MAX}"
    return match[1] + earlier.encode()


class OffByOne(BrokenRelay):
    def request_head(self, head: bytes) -> bytes:
        return CURSOR.sub(one_before, super().request_head(head))


class HtmlErrors(BrokenRelay):
    def response(self, head: bytes, first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
        status = int(head.split(b" ", 2)[1])
        if status < 400:
            yield from super().response(head, first, rest)
            return
        yield (
            b"HTTP/1.1 %d Error\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (status, len(ERROR_PAGE), ERROR_PAGE)
        )
