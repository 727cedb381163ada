"""Writing SSE bytes to client sockets: the send deadline, and held streams.

Once an SSE client has caught up, its response is handed over: the hub
holds the connection (a `HeldStream`, a duplicate of the socket's file
descriptor) and gunicorn's greenlet for it ends. From then on, the channel
that merges a new entry writes its bytes to every held socket itself, one
non-blocking write each, and one sweep per process sends the keep-alives
and ends streams at their time limit. Per client, that saves two greenlet
switches and the generator, werkzeug and gunicorn write path per entry
(most of the web's CPU in the fan-out bench), and a greenlet with its
stack while idle (most of the memory per connection).

Everything this relies on from gunicorn (its socket in the environ, its
chunked framing, its quiet close on EPIPE) is in handover.py, and only
there.

Deliberate choices:
- The bytes are exactly what gunicorn would write for a yielded item, so a
  client cannot tell who wrote which part: gunicorn writes the headers (on
  the first yield), the held stream the rest and the final chunk.
- A write the socket cannot take whole is queued, and a greenlet started
  for that client alone flushes it under the send deadline; new entries
  queue behind it, so the byte stream stays in order. A client whose queue
  passes `MAX_PENDING_BYTES`, or that stops reading for the send deadline,
  is disconnected.
- A held stream that the hub can no longer feed (a reset, a shutdown) is
  ended, not fed otherwise: EventSource reconnects with Last-Event-ID and
  the ordinary path catches it up. Nothing is lost either way.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gevent

from webapp.exceptions import SlowClient
from webapp.read.entries import KEEP_ALIVE, Entry, chunked
from webapp.serving import handover

log = logging.getLogger(__name__)

# What one live client may have queued before it counts as too slow.
MAX_PENDING_BYTES = 1 << 20
KEEP_ALIVE_CHUNK = chunked(KEEP_ALIVE)


class SendWatch:
    """Drops SSE clients that stopped reading: one sweep per process, no timer per write.

    A greenlet about to block in a send marks itself with a deadline and
    clears the mark when the send is done. Once a second, the sweep throws
    SlowClient into any greenlet still past its deadline; it lands in the
    blocked send, which closes the connection and frees the greenlet. (A
    gevent.Timeout per write did the same for ~5% of the web's CPU in the
    fan-out bench.)
    """

    SWEEP_SECONDS = 1.0

    def __init__(self) -> None:
        self._writing: dict[Any, tuple[float, str]] = {}
        self._sweeper: gevent.Greenlet | None = None

    @contextmanager
    def watch(self, seconds: float, session_id: str) -> Iterator[None]:
        """Bound the sends inside the block (by the current greenlet) to `seconds`."""
        current = gevent.getcurrent()
        self._writing[current] = (time.monotonic() + seconds, session_id)
        if self._sweeper is None or self._sweeper.dead:
            self._sweeper = gevent.spawn(self._sweep_forever)
        try:
            yield
        finally:
            self._writing.pop(current, None)

    def send(self, data: bytes, seconds: float, session_id: str) -> Iterator[bytes]:
        """Yield `data` for the server to write, under the send deadline.

        The generator stays suspended while the server writes what it yielded.
        """
        with self.watch(seconds, session_id):
            yield data

    def _sweep_forever(self) -> None:
        while True:
            gevent.sleep(self.SWEEP_SECONDS)
            now = time.monotonic()
            for greenlet, (deadline, session_id) in list(self._writing.items()):
                if now >= deadline and self._writing.pop(greenlet, None):
                    log.warning("sse dropped a client that stopped reading session=%s", session_id)
                    gevent.kill(greenlet, SlowClient(errno.EPIPE, "client too slow"))


send_watch = SendWatch()


class HeldStream:
    """An SSE response held by the hub after its greenlet ended (a hub.Sink)."""

    __slots__ = (
        "_sock",
        "_fd",
        "_chunked",
        "_pending",
        "_flusher",
        "_on_end",
        "ended",
        "quiet_since",
        "deadline",
        "heartbeat_seconds",
        "session_id",
        "send_timeout_seconds",
    )

    def __init__(
        self,
        sock: socket.socket,
        *,
        chunked: bool,
        session_id: str,
        deadline: float,
        heartbeat_seconds: float,
        send_timeout_seconds: float,
        on_end: Callable[[], None],
    ) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._chunked = chunked
        self._pending = bytearray()
        self._flusher: gevent.Greenlet | None = None
        self._on_end = on_end
        self.ended = False
        self.quiet_since = time.monotonic()
        self.deadline = deadline
        self.heartbeat_seconds = heartbeat_seconds
        self.session_id = session_id
        self.send_timeout_seconds = send_timeout_seconds
        holder.add(self)

    # -- hub.Sink: called by the channel -------------------------------------

    def deliver(self, entries: list[Entry]) -> None:
        if self._chunked:
            self._write(b"".join(entry.sse_chunk for entry in entries))
        else:
            self._write(b"".join(entry.sse for entry in entries))

    def detach(self) -> None:
        """The channel can no longer feed us (a reset, a shutdown): end the response."""
        self.end()

    # -- called by the holder's sweep -------------------------------------------

    def keep_alive(self) -> None:
        self._write(KEEP_ALIVE_CHUNK if self._chunked else KEEP_ALIVE)

    def end(self) -> None:
        """Finish the body if the socket takes it, close, and release what the stream held."""
        if self.ended:
            return
        self.ended = True
        holder.discard(self)
        if self._chunked and not self._pending:
            try:
                os.write(self._fd, handover.LAST_CHUNK)  # a whole body
            except OSError:
                pass  # gone or full: the client reconnects either way
        self._pending.clear()
        self._sock.close()
        try:
            self._on_end()
        except Exception:  # never into the hub's listener or the sweep
            log.exception("sse stream end failed session=%s", self.session_id)

    # -- writing ----------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        """Write now if the socket takes it all; queue the rest for a flusher."""
        if self.ended:
            return
        self.quiet_since = time.monotonic()
        if not self._pending and self._flusher is None:
            try:
                sent = os.write(self._fd, data)  # the descriptor is non-blocking (gevent)
            except BlockingIOError:
                sent = 0
            except OSError:  # EPIPE, ECONNRESET: the client is gone
                self.end()
                return
            if sent == len(data):
                return
            data = data[sent:]
        self._pending += data
        if len(self._pending) > MAX_PENDING_BYTES:
            log.warning(
                "sse dropped a client that stopped reading session=%s: over %d bytes queued",
                self.session_id,
                MAX_PENDING_BYTES,
            )
            self.end()
        elif self._flusher is None:
            self._flusher = gevent.spawn(self._flush)

    def _flush(self) -> None:
        """Send the queue with blocking sends, under the send deadline."""
        try:
            while self._pending and not self.ended:
                data = bytes(self._pending)
                self._pending.clear()
                with send_watch.watch(self.send_timeout_seconds, self.session_id):
                    self._sock.sendall(data)
        except OSError:  # gone, closed meanwhile, or SlowClient from the sweep
            self.end()
        finally:
            self._flusher = None


class Holder:
    """Every held stream of this process; one sweep sends keep-alives and ends streams."""

    SWEEP_SECONDS = 0.5

    def __init__(self) -> None:
        self._streams: set[HeldStream] = set()
        self._sweeper: gevent.Greenlet | None = None

    def add(self, stream: HeldStream) -> None:
        self._streams.add(stream)
        if self._sweeper is None or self._sweeper.dead:
            self._sweeper = gevent.spawn(self._sweep_forever)

    def discard(self, stream: HeldStream) -> None:
        self._streams.discard(stream)

    def _sweep_forever(self) -> None:
        while True:
            gevent.sleep(self.SWEEP_SECONDS)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> None:
        for stream in list(self._streams):
            if now >= stream.deadline:
                stream.end()
            # Early by up to one sweep, so no stream is quiet for longer than its heartbeat.
            elif now - stream.quiet_since >= stream.heartbeat_seconds - self.SWEEP_SECONDS:
                stream.keep_alive()


holder = Holder()


def holder_for(
    environ: dict[str, Any],
    *,
    session_id: str,
    deadline: float,
    heartbeat_seconds: float,
    send_timeout_seconds: float,
) -> Callable[[Callable[[], None]], HeldStream] | None:
    """How to hand this response over to the hub, or None where only yielding is safe.

    The returned function takes the connection (handover.py) into a
    HeldStream that calls `on_end` when it finishes.
    """
    connection = handover.connection(environ)
    if connection is None:
        return None

    def hold(on_end: Callable[[], None]) -> HeldStream:
        return HeldStream(
            connection.take(),
            chunked=connection.chunked,
            session_id=session_id,
            deadline=deadline,
            heartbeat_seconds=heartbeat_seconds,
            send_timeout_seconds=send_timeout_seconds,
            on_end=on_end,
        )

    return hold
