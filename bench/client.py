"""The load client: thousands of SSE streams and long-poll loops on one core, in its own process.

It runs as `python -m bench.client --port <web port>` and takes commands
from the bench, one JSON object per line on stdin, answering each with one
JSON line on stdout (see `Client`'s `op_*` methods). The bench measures the
server while the client holds its connections between commands.

Deliberate choices:
- asyncio Protocols over raw sockets and a small HTTP/1.1 parser (chunked
  bodies, Content-Length bodies), no HTTP library: an idle stream costs a
  transport and one small object, so 10,000 fit in one process, and 20,000
  deliveries/s leave the core mostly free (the bench reports its CPU).
- Every delivery is timed on arrival: one `time.monotonic_ns()` per read,
  shared by the events that read holds, minus the send stamp the bench
  model server put in the delta's text (`⟨i=.. t=..⟩`, model_server.py).
- A stream that the server closes is not reopened: the bench counts it as
  dropped, and what it missed as lost, instead of letting a reconnect hide it.
- `--target nchan` loads Nchan (bench/nchan.py) with the same code: its
  EventSource streams and long-polls, whose messages carry the same stamps
  (bench/publisher.py). Only the paths, the sign that a stream has started
  and the long-poll protocol differ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import sys
import time
from array import array
from collections.abc import Callable
from typing import Any

STAMP = re.compile(rb"\xe2\x9f\xa8i=(\d+) t=(\d+)(?: r=(\d+))?\xe2\x9f\xa9")
MESSAGE_ID = re.compile(rb'"message_id":"([^"]+)"')
CONTENT_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)\s*$")
CHUNKED = re.compile(rb"(?im)^transfer-encoding:\s*chunked\s*$")
MAX_HEAD_BYTES = 65536
LAST_MODIFIED = re.compile(rb"(?im)^last-modified:\s*(.*?)\s*$")
ETAG = re.compile(rb"(?im)^etag:\s*(.*?)\s*$")
# What the client loads: relay's API, or Nchan's locations (bench/nchan.py
# configures them: /sub/<channel> for EventSource, /lp/<channel> for long-poll).
TARGETS = ("relay", "nchan")
# The last message the Nchan publisher sends on a channel (bench/publisher.py):
# `end chunks=<n>`, standing for relay's `end` event.
NCHAN_END = b"end chunks="


def raise_fd_limit() -> None:
    """Soft open-files limit up to the hard one: every connection is a descriptor."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def percentiles(values_ns: array | list[int]) -> dict[str, float | int | None]:
    """p50/p90/p99/max/mean in milliseconds, nearest rank."""
    if not values_ns:
        return {
            "count": 0,
            "p50_ms": None,
            "p90_ms": None,
            "p99_ms": None,
            "max_ms": None,
            "mean_ms": None,
        }
    ordered = sorted(values_ns)
    count = len(ordered)

    def rank(p: float) -> float:
        return ordered[min(count - 1, max(0, int(p * count + 0.999999) - 1))] / 1e6

    return {
        "count": count,
        "p50_ms": rank(0.50),
        "p90_ms": rank(0.90),
        "p99_ms": rank(0.99),
        "max_ms": ordered[-1] / 1e6,
        "mean_ms": sum(ordered) / count / 1e6,
    }


class SSEConn(asyncio.Protocol):
    """One `GET .../events` stream: HTTP/1.1, chunked body, SSE events recorded as they come."""

    def __init__(
        self,
        client: Client,
        session_id: str,
        path: str,
        on_event: Callable[[SSEConn, bytes, bytes, bytes, int], None],
        opens_on: bytes = b"retry:",
    ) -> None:
        self.client = client
        self.opens_on = opens_on  # the first bytes of the body that say the server follows us
        self.session_id = session_id
        self.path = path
        self.on_event = on_event
        self.transport: asyncio.Transport | None = None
        self.raw = bytearray()
        self.text = bytearray()
        self.head_done = False
        self.chunked = False
        self.chunk_left = 0
        self.need_crlf = False
        self.status = 0
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed = False
        self.ended = False  # the server ended the body (a 0-length chunk)
        self.ids: set[bytes] = set()
        # The newest entry id received, or the cursor the stream started after.
        self.last_id = path.partition("last_event_id=")[2].encode()
        self.indices: set[int] = set()
        self.chunk_events = 0  # relay joins deltas that come together into one chunk
        self.duplicates = 0
        self.keepalives = 0
        self.last_read = 0  # monotonic ns of the last bytes from the server
        self.longest_quiet = 0  # the longest time between two reads since the last reset
        self.end: dict | None = None
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(  # type: ignore[attr-defined]
            f"GET {self.path} HTTP/1.1\r\nHost: {self.client.host}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.error = self.error or f"closed before the stream started ({exc!r})"
            self.opened.set_result(False)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        if self.last_read and now - self.last_read > self.longest_quiet:
            self.longest_quiet = now - self.last_read
        self.last_read = now
        raw = self.raw
        raw += data
        if not self.head_done:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                if len(raw) > MAX_HEAD_BYTES:
                    self._fail("response head too large")
                return
            head = bytes(raw[:end])
            del raw[: end + 4]
            self.head_done = True
            try:
                self.status = int(head[9:12])
            except ValueError:
                self.status = 0
            self.chunked = CHUNKED.search(head) is not None
            if self.status != 200:
                self._fail(f"HTTP {self.status}: {bytes(raw[:200])!r}")
                return
        if self.chunked:
            self._dechunk()
        else:
            self.text += raw
            raw.clear()
        text = self.text
        cut = text.rfind(b"\n\n")
        if cut >= 0:
            blocks = bytes(text[:cut]).split(b"\n\n")
            del text[: cut + 2]
            for block in blocks:
                self._block(block, now)
        if self.ended:
            # The server ended the response: for an SSE client that is a
            # disconnect, even though HTTP/1.1 keeps the socket for another request.
            self.error = self.error or "the server ended the stream"
            if not self.opened.done():
                self.opened.set_result(False)
            self.closed = True
            self.close()

    def _fail(self, error: str) -> None:
        self.error = error
        if not self.opened.done():
            self.opened.set_result(False)
        self.close()

    def _dechunk(self) -> None:
        """Move the payload of complete HTTP chunks from `raw` to `text`."""
        raw, pos, size_all = self.raw, 0, len(self.raw)
        while True:
            if self.need_crlf:
                if size_all - pos < 2:
                    break
                pos += 2
                self.need_crlf = False
            if self.chunk_left == 0:
                line_end = raw.find(b"\r\n", pos)
                if line_end < 0:
                    break
                size = int(bytes(raw[pos:line_end]).split(b";")[0], 16)
                pos = line_end + 2
                if size == 0:
                    self.ended = True
                    break
                self.chunk_left = size
            take = min(self.chunk_left, size_all - pos)
            if take <= 0:
                break
            self.text += raw[pos : pos + take]
            pos += take
            self.chunk_left -= take
            if self.chunk_left == 0:
                self.need_crlf = True
        del raw[:pos]

    def _block(self, block: bytes, now: int) -> None:
        if not self.opened.done() and (
            block.startswith(self.opens_on) or b"\n" + self.opens_on in block
        ):
            self.opened.set_result(True)
        if block.startswith(b":"):
            self.keepalives += 1
            return
        entry_id = event = data = b""
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                data = line[6:]
            elif line.startswith(b"id: "):
                entry_id = line[4:]
            elif line.startswith(b"event: "):
                event = line[7:]
        if not entry_id:
            return
        if entry_id in self.ids:
            self.duplicates += 1
            return
        self.ids.add(entry_id)
        self.last_id = entry_id
        self.on_event(self, entry_id, event, data, now)


def realtime_offset_ns() -> int:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC, read as tightly as we can.

    Redis stamps each entry id with its own wall clock in ms (the XADD time);
    with this offset that becomes a monotonic time, which splits a delivery's
    latency into the worker's part and the web's part (to within 1 ms).
    """
    best = None
    for _ in range(50):
        before = time.monotonic_ns()
        wall = time.time_ns()
        after = time.monotonic_ns()
        if best is None or after - before < best[0]:
            best = (after - before, wall - (before + after) // 2)
    return best[1]


class Timings:
    """Every delivery's latency, and its two halves either side of the Redis append."""

    def __init__(self) -> None:
        self.offset = realtime_offset_ns()
        self.total = array("q")  # model send -> client receipt
        self.upstream = array("q")  # model send -> XADD (the worker's part)
        self.downstream = array("q")  # XADD -> client receipt (Redis, the web, the network)
        self.loop_lag = array("q")  # how late the client's own event loop ran
        # When each delivered delta was sent, and when the last answer sent its
        # first: after that every answer streams (no start is under way).
        self.sent = array("q")
        self.last_first_sent = 0

    def add(self, entry_id: bytes | str, sent: int, now: int) -> None:
        if isinstance(entry_id, str):
            entry_id = entry_id.encode()
        # The id's ms is the XADD time rounded down: take the middle of that ms.
        appended = int(entry_id[: entry_id.index(b"-")]) * 1_000_000 + 500_000 - self.offset
        self.total.append(now - sent)
        self.sent.append(sent)
        self.upstream.append(appended - sent)
        self.downstream.append(now - appended)

    def add_total(self, sent: int, now: int) -> None:
        """A delivery whose id is not a Redis entry id (Nchan's): no split at the append."""
        self.total.append(now - sent)
        self.sent.append(sent)

    def first_delta(self, sent: int) -> None:
        """An answer's first delta was sent at `sent` (index 0 of its stamps)."""
        self.last_first_sent = max(self.last_first_sent, sent)

    def streaming(self) -> list[int]:
        """Latencies of the deltas sent once every answer had started: the steady state."""
        after = self.last_first_sent
        return [total for sent, total in zip(self.sent, self.total, strict=True) if sent > after]

    def __len__(self) -> int:
        return len(self.total)

    def summary(self) -> dict[str, Any]:
        return {
            "latency": percentiles(self.total),
            "latency_streaming": percentiles(self.streaming()),
            "upstream": percentiles(self.upstream),
            "downstream": percentiles(self.downstream),
            "client_loop_lag": percentiles(self.loop_lag),
        }


class FirstToken:
    """One TTFT round's stream: when each message's `start` was appended, its first chunk.

    A reasoning model's answer (the model server's `think=k`) streams
    `reasoning` events first: the first of those is timed on its own, and
    the request time (`r=`, on the model's first delta only) carries over to
    the first chunk.
    """

    def __init__(self, offset_ns: int) -> None:
        self.offset = offset_ns
        self.starts: dict[bytes, int] = {}  # message id -> XADD time of its `start`
        self.firsts: dict[bytes, tuple[int, int, int]] = {}  # -> (received, sent, requested)
        self.first_reasoning: dict[bytes, tuple[int, int, int]] = {}  # the same, for reasoning
        self.ends: set[bytes] = set()
        self.arrived = asyncio.Event()

    def on_event(self, conn: SSEConn, entry_id: bytes, event: bytes, data: bytes, now: int) -> None:
        message = MESSAGE_ID.search(data)
        if message is None:
            return
        if event == b"start":
            ms = int(entry_id[: entry_id.index(b"-")])
            self.starts[message[1]] = ms * 1_000_000 + 500_000 - self.offset
        elif event in (b"chunk", b"reasoning"):
            firsts = self.firsts if event == b"chunk" else self.first_reasoning
            stamp = STAMP.search(data)
            if message[1] in firsts or stamp is None:
                return
            thought = self.first_reasoning.get(message[1])
            requested = stamp[3] or (thought[2] if thought else None)
            if requested is not None:
                firsts[message[1]] = (now, int(stamp[2]), int(requested))
                self.arrived.set()
        elif event in (b"end", b"error"):
            self.ends.add(message[1])
            self.arrived.set()

    async def wait_end(self, message_id: bytes, timeout: float) -> bool:
        """Wait for the message's end (so rounds never overlap); True if a chunk came."""
        wait_until = time.monotonic() + timeout
        while message_id not in self.ends and time.monotonic() < wait_until:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), wait_until - time.monotonic())
            except TimeoutError:
                break
        return message_id in self.firsts


class Client:
    """Holds the connections between commands; each `op_*` is one command."""

    def __init__(self, host: str, port: int, target: str = "relay") -> None:
        self.host = host
        self.port = port
        self.nchan = target == "nchan"
        self.streams: list[SSEConn] = []
        self.timings = Timings()
        self.reset_at = 0
        self.poll_loops: list[asyncio.Task] = []
        # Polls answered since the last poll_start, counting loops cut off at
        # their deadline too (whose own results are lost with them).
        self.polls = 0

    async def watch_loop_lag(self) -> None:
        """Record how late a 10 ms sleep wakes: the client's own share of the latencies."""
        while True:
            started = time.monotonic_ns()
            await asyncio.sleep(0.01)
            self.timings.loop_lag.append(time.monotonic_ns() - started - 10_000_000)

    # -- SSE -------------------------------------------------------------

    def record(self, conn: SSEConn, entry_id: bytes, event: bytes, data: bytes, now: int) -> None:
        """The fan-out recorder: chunk index and latency per delivery, the `end`."""
        if event == b"chunk":
            conn.chunk_events += 1
            for stamp in STAMP.finditer(data):  # one a delta: a chunk may hold several
                self._stamped(conn.indices, stamp)
                self.timings.add(entry_id, int(stamp[2]), now)
        elif event == b"end":
            conn.end = json.loads(data)

    def record_nchan(
        self, conn: SSEConn, entry_id: bytes, event: bytes, data: bytes, now: int
    ) -> None:
        """The fan-out recorder for Nchan: a message is a stamp or the publisher's end."""
        stamp = STAMP.search(data)
        if stamp is not None:
            self._stamped(conn.indices, stamp)
            self.timings.add_total(int(stamp[2]), now)
        elif data.startswith(NCHAN_END):
            conn.end = {"chunks": int(data[len(NCHAN_END) :])}

    def _stamped(self, indices: set[int], stamp: re.Match[bytes]) -> None:
        """A stamped delta arrived: its index, and when its answer began if it is the first."""
        index = int(stamp[1])
        indices.add(index)
        if index == 0:
            self.timings.first_delta(int(stamp[2]))

    async def _open_one(
        self, session_id: str, on_event: Callable, timeout: float, after: str = ""
    ) -> SSEConn:
        loop = asyncio.get_running_loop()
        path = f"/sub/{session_id}" if self.nchan else f"/api/sessions/{session_id}/events"
        if after:  # as the chat page opens it: from its snapshot's cursor
            path += f"?last_event_id={after}"
        # Nchan's EventSource body starts with a `: hi` comment once it has
        # subscribed; relay's with `retry:` once it follows the session.
        opens_on = b":" if self.nchan else b"retry:"
        conn: SSEConn | None = None

        def factory() -> SSEConn:
            nonlocal conn
            conn = SSEConn(self, session_id, path, on_event, opens_on)
            return conn

        try:
            await asyncio.wait_for(loop.create_connection(factory, self.host, self.port), timeout)
            await asyncio.wait_for(asyncio.shield(conn.opened), timeout)
        except (TimeoutError, OSError) as exc:
            if conn is None:
                conn = SSEConn(self, session_id, path, on_event)
                conn.closed = True
            conn.error = conn.error or repr(exc)
            conn.close()
        return conn

    async def op_sse_open(
        self,
        sessions: list[str],
        batch: int = 500,
        timeout: float = 60.0,
        after: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Open one stream per entry of `sessions`, `batch` at a time; report how many started.

        `after` maps a session to the cursor its streams start after (default:
        the start of the stream).
        """
        after = after or {}
        started, failed, errors = time.monotonic(), 0, {}
        deadline = started + timeout
        for first in range(0, len(sessions), batch):
            left = deadline - time.monotonic()
            if left <= 0:
                failed += len(sessions) - first
                errors["not tried: out of time"] = len(sessions) - first
                break
            recorder = self.record_nchan if self.nchan else self.record
            opened = await asyncio.gather(
                *(
                    self._open_one(sid, recorder, left, after.get(sid, ""))
                    for sid in sessions[first : first + batch]
                )
            )
            for conn in opened:
                if conn.error is None and not conn.closed:
                    self.streams.append(conn)
                else:
                    failed += 1
                    key = (conn.error or "?")[:120]
                    errors[key] = errors.get(key, 0) + 1
        return {
            "opened": len(sessions) - failed,
            "failed": failed,
            "errors": errors,
            "seconds": time.monotonic() - started,
            "open_now": self._open_count(),
        }

    def _open_count(self) -> int:
        return sum(1 for conn in self.streams if not conn.closed)

    async def op_sse_status(self) -> dict[str, Any]:
        """Streams open, and since the last reset: keep-alives, the longest silences."""
        now = time.monotonic_ns()
        quiet = [max(c.longest_quiet, now - c.last_read) for c in self.streams if not c.closed]
        return {
            "streams": len(self.streams),
            "open": self._open_count(),
            "with_keepalive": sum(1 for c in self.streams if c.keepalives),
            "errors": sum(1 for c in self.streams if c.error),
            "longest_quiet": percentiles(quiet),
            # Streams with no read since the reset, by the order they were opened in.
            "silent_positions": [
                i
                for i, c in enumerate(self.streams)
                if not c.closed and c.last_read <= self.reset_at
            ][:50],
            "silent": sum(1 for c in self.streams if not c.closed and c.last_read <= self.reset_at),
        }

    async def op_sse_reset_counters(self) -> dict[str, Any]:
        now = self.reset_at = time.monotonic_ns()
        for conn in self.streams:
            conn.keepalives = 0
            conn.longest_quiet = 0
            conn.end = None  # an `end` read before the reset belongs to another answer
            conn.last_read = now
        self.timings = Timings()
        return {}

    async def op_sse_seen(self, last_ids: dict[str, str], timeout: float) -> dict[str, Any]:
        """Wait until every open stream of these sessions has read up to its session's id."""
        wanted = {sid: last.encode() for sid, last in last_ids.items()}
        mine = [c for c in self.streams if c.session_id in wanted]

        def behind() -> list[SSEConn]:
            return [
                c
                for c in mine
                if not c.closed and _id_key(c.last_id) < _id_key(wanted[c.session_id])
            ]

        deadline = time.monotonic() + timeout
        while behind() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return {
            "streams": len(mine),
            "behind": len(behind()),
            "closed": sum(c.closed for c in mine),
        }

    async def op_sse_wait_end(self, expected: dict[str, int], timeout: float) -> dict[str, Any]:
        """Wait until every stream of an expected session saw `end` (or closed); then count."""
        deadline = time.monotonic() + timeout
        mine = [c for c in self.streams if c.session_id in expected]
        while time.monotonic() < deadline:
            if all(c.end is not None or c.closed for c in mine):
                break
            await asyncio.sleep(0.05)
        lost = unexpected = duplicates = no_end = dropped = short_end = 0
        for conn in mine:
            want = expected[conn.session_id]
            got = sum(1 for i in conn.indices if 0 <= i < want)
            lost += want - got
            unexpected += len(conn.indices) - got
            duplicates += conn.duplicates
            no_end += conn.end is None
            dropped += conn.closed and conn.end is None
            # Nchan's end counts its messages, one a delta; relay's its chunk events.
            chunks = want if self.nchan else conn.chunk_events
            short_end += conn.end is not None and conn.end.get("chunks") != chunks
        return {
            "streams": len(mine),
            "deliveries": len(self.timings),
            "lost": lost,
            "duplicated": duplicates,
            "unexpected": unexpected,
            "no_end": no_end,
            "dropped": dropped,
            "end_with_wrong_chunk_count": short_end,
            "waited_seconds": timeout - max(0.0, deadline - time.monotonic()),
            **self.timings.summary(),
        }

    async def op_sse_close(self) -> dict[str, Any]:
        for conn in self.streams:
            conn.close()
        count = len(self.streams)
        self.streams = []
        self.timings = Timings()
        await asyncio.sleep(0.2)
        return {"closed": count}

    # -- long-poll -------------------------------------------------------

    async def _request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes]:
        status, _, body = await exchange(reader, writer, request)
        return status, body

    async def _poll_loop(
        self,
        session_id: str,
        want: int,
        poll_timeout: float,
        deadline: float,
        started: asyncio.Event,
    ) -> dict[str, Any]:
        """Poll one session from its start until its `end`, recording every event once."""
        seen: set[str] = set()
        indices: set[int] = set()
        result = {"polls": 0, "duplicated": 0, "errors": 0, "resets": 0, "end": None}
        cursor, reader, writer = "0-0", None, None
        first = True
        try:
            while time.monotonic() < deadline and result["end"] is None:
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(self.host, self.port)
                    request = (
                        f"GET /api/sessions/{session_id}/poll?after={cursor}"
                        f"&timeout={poll_timeout:g} HTTP/1.1\r\nHost: {self.host}\r\n\r\n"
                    )
                    pending = self._request(reader, writer, request.encode())
                    if first:
                        first = False
                        started.set()
                    status, body = await asyncio.wait_for(
                        pending, max(0.1, deadline - time.monotonic())
                    )
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ConnectionError):
                    result["errors"] += 1
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    await asyncio.sleep(0.05)
                    continue
                now = time.monotonic_ns()
                result["polls"] += 1
                self.polls += 1
                if status != 200:
                    result["errors"] += 1
                    await asyncio.sleep(0.05)
                    continue
                answer = json.loads(body)
                if answer.get("reset"):
                    result["resets"] += 1
                for event in answer["events"]:
                    if event["id"] in seen:
                        result["duplicated"] += 1
                        continue
                    seen.add(event["id"])
                    if event["event"] == "chunk":
                        for stamp in STAMP.finditer(event["data"]["text"].encode()):
                            self._stamped(indices, stamp)
                            self.timings.add(event["id"], int(stamp[2]), now)
                    elif event["event"] == "end":
                        result["end"] = event["data"]
                cursor = answer["cursor"]
        finally:
            started.set()
            if writer is not None:
                writer.close()
        got = sum(1 for i in indices if 0 <= i < want)
        result.update(lost=want - got, unexpected=len(indices) - got)
        return result

    async def _nchan_poll_loop(
        self,
        channel: str,
        want: int,
        poll_timeout: float,
        deadline: float,
        started: asyncio.Event,
    ) -> dict[str, Any]:
        """Long-poll one Nchan channel from its oldest message until the publisher's end.

        Nchan's long-poll protocol: each answer is one message, with its id in
        `Last-Modified` and `Etag`; the next poll sends them back as
        `If-Modified-Since` and `If-None-Match` and gets the message after
        it, or waits. A poll that waited `nchan_subscriber_timeout` is
        answered 408 and sent again unchanged. (`poll_timeout` is set in
        the server's config for Nchan, so it is unused here.)
        """
        seen: set[tuple[bytes, bytes]] = set()
        indices: set[int] = set()
        result = {"polls": 0, "duplicated": 0, "errors": 0, "resets": 0, "end": None}
        since = b""
        reader = writer = None
        first = True
        try:
            while time.monotonic() < deadline and result["end"] is None:
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(self.host, self.port)
                    request = f"GET /lp/{channel} HTTP/1.1\r\nHost: {self.host}\r\n".encode()
                    pending = exchange(reader, writer, request + since + b"\r\n")
                    if first:
                        first = False
                        started.set()
                    status, head, body = await asyncio.wait_for(
                        pending, max(0.1, deadline - time.monotonic())
                    )
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ConnectionError):
                    result["errors"] += 1
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    await asyncio.sleep(0.05)
                    continue
                now = time.monotonic_ns()
                result["polls"] += 1
                self.polls += 1
                if status == 408:
                    continue
                if status != 200:
                    result["errors"] += 1
                    await asyncio.sleep(0.05)
                    continue
                modified, etag = LAST_MODIFIED.search(head), ETAG.search(head)
                if modified is None or etag is None:
                    result["errors"] += 1
                    continue
                since = (
                    b"If-Modified-Since: "
                    + modified[1]
                    + b"\r\nIf-None-Match: "
                    + etag[1]
                    + b"\r\n"
                )
                if (modified[1], etag[1]) in seen:
                    result["duplicated"] += 1
                    continue
                seen.add((modified[1], etag[1]))
                stamp = STAMP.search(body)
                if stamp is not None:
                    self._stamped(indices, stamp)
                    self.timings.add_total(int(stamp[2]), now)
                elif body.startswith(NCHAN_END):
                    result["end"] = {"chunks": int(body[len(NCHAN_END) :])}
        finally:
            started.set()
            if writer is not None:
                writer.close()
        got = sum(1 for i in indices if 0 <= i < want)
        result.update(lost=want - got, unexpected=len(indices) - got)
        return result

    async def op_poll_start(
        self, sessions: list[str], expected: int, poll_timeout: float, timeout: float
    ) -> dict[str, Any]:
        """One long-poll loop per entry of `sessions`; answers once each sent its first poll."""
        deadline = time.monotonic() + timeout
        self.timings = Timings()
        self.polls = 0
        starts = [asyncio.Event() for _ in sessions]
        loop = self._nchan_poll_loop if self.nchan else self._poll_loop
        self.poll_loops = [
            asyncio.ensure_future(loop(sid, expected, poll_timeout, deadline, ev))
            for sid, ev in zip(sessions, starts, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in starts)), timeout)
        return {"loops": len(self.poll_loops)}

    async def op_poll_wait(self, timeout: float) -> dict[str, Any]:
        """Wait for every poll loop to see its `end` (each stops at its own deadline too)."""
        done, pending = await asyncio.wait(self.poll_loops, timeout=timeout)
        for task in pending:
            task.cancel()
        results = [task.result() for task in done if not task.cancelled() and not task.exception()]
        failed = len(self.poll_loops) - len(results)
        self.poll_loops = []

        def total(key: str) -> int:
            return sum(r[key] for r in results)

        return {
            "loops": len(results) + failed,
            "unfinished": failed,
            "polls": self.polls,
            "lost": total("lost"),
            "duplicated": total("duplicated"),
            "unexpected": total("unexpected"),
            "errors": total("errors"),
            "resets": total("resets"),
            "no_end": sum(r["end"] is None for r in results),
            "deliveries": len(self.timings),
            **self.timings.summary(),
        }

    # -- time to first token ---------------------------------------------

    async def op_ttft(self, sessions: list[str], prompt: str, timeout: float) -> dict[str, Any]:
        """For each session in turn: open its stream, post the prompt, time the first chunk."""
        samples: list[dict[str, int]] = []
        errors: list[str] = []
        deadline = time.monotonic() + timeout
        reader, writer = await asyncio.open_connection(self.host, self.port)
        body = json.dumps({"content": prompt}).encode()
        try:
            for session_id in sessions:
                if time.monotonic() > deadline:
                    errors.append("out of time")
                    break
                watch = FirstToken(self.timings.offset)
                conn = await self._open_one(session_id, watch.on_event, 10.0)
                if conn.error:
                    errors.append(conn.error)
                    continue
                try:
                    posted = time.monotonic_ns()
                    status, answer = await asyncio.wait_for(
                        self._request(
                            reader,
                            writer,
                            (
                                f"POST /api/sessions/{session_id}/messages HTTP/1.1\r\n"
                                f"Host: {self.host}\r\nContent-Type: application/json\r\n"
                                f"Content-Length: {len(body)}\r\n\r\n"
                            ).encode()
                            + body,
                        ),
                        10.0,
                    )
                    answered = time.monotonic_ns()
                    if status != 202:
                        errors.append(f"POST answered {status}: {answer[:200]!r}")
                        continue
                    message_id = json.loads(answer)["message_id"].encode()
                    if not await watch.wait_end(message_id, 10.0):
                        errors.append("no chunk within 10 s")
                        continue
                    received, sent, requested = watch.firsts[message_id]
                    thought = watch.first_reasoning.get(message_id, (0, 0, 0))
                    samples.append(
                        {
                            "posted": posted,
                            "answered": answered,
                            "received": received,
                            "model_sent": sent,
                            "model_requested": requested,
                            "start_appended": watch.starts.get(message_id, 0),
                            "reasoning_received": thought[0],
                            "reasoning_model_sent": thought[1],
                        }
                    )
                finally:
                    conn.close()
        finally:
            writer.close()
        return {"samples": samples, "errors": errors}


def _id_key(entry_id: bytes) -> tuple[int, int]:
    """Sort key of a Redis entry id (b"" sorts first)."""
    ms, _, seq = entry_id.partition(b"-")
    return (int(ms or 0), int(seq or 0))


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes, bytes]:
    """One request on a keep-alive connection: (status, response head, body)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = CONTENT_LENGTH.search(head)
    if length is None:
        raise ConnectionError(f"no Content-Length: {head[:200]!r}")
    body = await reader.readexactly(int(length[1]))
    return int(head[9:12]), head, body


async def serve(client: Client) -> None:
    """Read commands from stdin, answer each on stdout, until `quit` or end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    lag_watch = asyncio.ensure_future(client.watch_loop_lag())
    print(json.dumps({"ready": True}), flush=True)
    while line := await reader.readline():
        command = json.loads(line)
        op = command.pop("op")
        if op == "quit":
            break
        try:
            answer = await getattr(client, f"op_{op}")(**command)
        except Exception as exc:  # report to the bench, keep the connections
            answer = {"exception": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    lag_watch.cancel()
    for conn in client.streams:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", choices=TARGETS, default="relay")
    args = parser.parse_args()
    raise_fd_limit()
    run(serve(Client(args.host, args.port, args.target)))


def run(main: Any) -> None:
    """asyncio.run on uvloop when it is installed: about half the CPU per read."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


if __name__ == "__main__":
    main()
