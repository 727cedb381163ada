"""Writing SSE bytes to client sockets: the send deadline, and direct writes.

A caught-up SSE client is written to directly by its channel (hub.py): the
listener greenlet that learns of a new entry writes the entry's bytes to
every live client's socket itself, one non-blocking write each. Going
through gunicorn instead would cost, per client and entry, two greenlet
switches, the generator, werkzeug's and gunicorn's write path: in the
fan-out bench that path was most of the web process's CPU.

Deliberate choices:
- Only gunicorn's plain-HTTP GET responses take the direct path
  (`sink_for`); anything else (another server, TLS in gunicorn, HEAD) keeps
  yielding to the server. Heroku ends TLS at its router.
- The bytes are exactly what gunicorn writes for a yielded item: HTTP/1.1
  bodies are chunked (`<hex size>\\r\\n<data>\\r\\n`), HTTP/1.0 bodies are
  raw. gunicorn writes the headers (on the first yield) and the final chunk.
- A write the socket cannot take whole is queued in the client's own
  buffer, and the client's greenlet flushes it with a blocking send under
  the send deadline. While anything is queued, new entries queue behind it,
  so the byte stream stays in order. A client whose queue passes
  `MAX_PENDING_BYTES`, or that stops reading for the send deadline, is
  disconnected; it resumes with Last-Event-ID and loses nothing.
- Failures reach the client's greenlet as an OSError with EPIPE or
  ECONNRESET, which gunicorn treats as a client gone: no traceback logged.

Exceptions, raised into a client's greenlet:

    BrokenPipeError
     └── SlowClient   the client stopped reading
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gevent
from gevent.event import Event

from .events import KEEP_ALIVE, Entry, chunked

log = logging.getLogger(__name__)

# What one live client may have queued before it counts as too slow.
MAX_PENDING_BYTES = 1 << 20


class SlowClient(BrokenPipeError):
    """A client stopped taking our writes; gunicorn closes its socket quietly (EPIPE)."""


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
                    gevent.kill(greenlet, SlowClient(errno.EPIPE, "client too slow"), block=False)


send_watch = SendWatch()


class SocketSink:
    """One live SSE client's socket, written to by its channel (see hub.Sink)."""

    __slots__ = (
        "_sock",
        "_fd",
        "_chunked",
        "_owner",
        "_pending",
        "_flushing",
        "_failed",
        "_wakeup",
        "attached",
        "session_id",
        "send_timeout_seconds",
    )

    def __init__(
        self, sock: Any, *, chunked: bool, session_id: str, send_timeout_seconds: float
    ) -> None:
        self._sock = sock
        self._fd: int = sock.fileno()
        self._chunked = chunked
        self._owner = gevent.getcurrent()  # the greenlet serving this response
        self._pending = bytearray()
        self._flushing = False
        self._failed = False
        self._wakeup = Event()
        self.attached = False
        self.session_id = session_id
        self.send_timeout_seconds = send_timeout_seconds

    # -- called by the channel, from whichever greenlet merged the entries --

    def deliver(self, entries: list[Entry]) -> None:
        if self._chunked:
            data = b"".join(entry.sse_chunk for entry in entries)
        else:
            data = b"".join(entry.sse for entry in entries)
        self._write(data)

    def detach(self) -> None:
        """The channel stopped writing to us (reset, shutdown): the owner reads on itself."""
        self.attached = False
        self._wakeup.set()

    # -- called by the owner --------------------------------------------------

    def serve(self, deadline: float, heartbeat_seconds: float) -> None:
        """Wait while the channel writes: flush what the socket refused, keep the line alive.

        Called right after the follower attached this sink to its channel;
        returns when the channel detaches it, or at `deadline`.
        """
        self.attached = True
        while self.attached and (remaining := deadline - time.monotonic()) > 0:
            woken = self._wakeup.wait(min(heartbeat_seconds, remaining))
            self._wakeup.clear()
            if self._pending:
                self._flush()
            elif not woken:
                self.write_frame(KEEP_ALIVE)
        self._flush()

    def write_frame(self, frame: bytes) -> None:
        self._write(chunked(frame) if self._chunked else frame)

    # -- writing ----------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        """Write now if the socket takes it all; queue the rest for the owner."""
        if self._failed:
            return
        if not self._pending and not self._flushing:
            try:
                sent = os.write(self._fd, data)  # the fd is non-blocking (gevent)
            except BlockingIOError:
                sent = 0
            except OSError as exc:  # EPIPE, ECONNRESET: the client is gone
                self._fail(exc)
                return
            if sent == len(data):
                return
            data = data[sent:]
        self._pending += data
        if len(self._pending) > MAX_PENDING_BYTES:
            log.warning("sse dropped a client that fell behind session=%s", self.session_id)
            self._fail(SlowClient(errno.EPIPE, "client too slow"))
        else:
            self._wakeup.set()

    def _flush(self) -> None:
        """Send the queue with a blocking send (the owner's greenlet yields meanwhile)."""
        self._flushing = True
        try:
            while self._pending and not self._failed:
                data = bytes(self._pending)
                self._pending.clear()
                with send_watch.watch(self.send_timeout_seconds, self.session_id):
                    self._sock.sendall(data)
        finally:
            self._flushing = False

    def _fail(self, exc: OSError) -> None:
        """Stop writing and end the response: the exception lands in the owner's wait."""
        self._failed = True
        self._pending.clear()
        gevent.kill(self._owner, exc, block=False)


def sink_for(
    environ: dict[str, Any], session_id: str, send_timeout_seconds: float
) -> SocketSink | None:
    """A direct-write sink for this response, or None where only yielding is safe."""
    sock = environ.get("gunicorn.socket")
    if (
        sock is None
        or environ.get("REQUEST_METHOD") != "GET"
        or environ.get("wsgi.url_scheme") != "http"
        or hasattr(sock, "do_handshake")  # TLS: bytes must go through the SSL object
    ):
        return None
    # gunicorn chunks every body of an HTTP/1.1+ GET response without Content-Length.
    is_chunked = environ.get("SERVER_PROTOCOL") not in ("HTTP/1.0", "HTTP/0.9")
    return SocketSink(
        sock, chunked=is_chunked, session_id=session_id, send_timeout_seconds=send_timeout_seconds
    )
