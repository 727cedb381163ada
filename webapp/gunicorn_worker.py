"""relay's gunicorn worker: gevent's, with a time limit on a request's headers.

gunicorn 27 has no setting for it: its gevent worker reads each request's
headers under one timeout, `keepalive` (95 s here), which also bounds how
long an idle keep-alive connection waits for its next request. So a client
that sends half a request and stops held a connection (a file, a greenlet)
for 95 s, and a few hundred of them were a cheap way to exhaust the
process's files (issue 18).

`Worker.timeout_ctx` keeps `keepalive` for the wait before a request's
first byte and gives the rest of its headers HEADER_TIMEOUT_SECONDS from
that byte; past either, the connection is closed as gunicorn closes an idle
one. The worker also tells handover.py it serves, so that a connection a
parked long-poll answered can be handed back for its next request.

What this relies on from gunicorn is named in handover.py (items 5 and 6)
and pinned by tests/test_gunicorn_edges.py. This module is imported by
gunicorn's arbiter (worker_class in gunicorn.conf.py): it imports gevent
and gunicorn only, as gunicorn's own "gevent" worker class does.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import time
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker

from . import handover

READ = 1  # libev/libuv: an io watcher for readability


class _HeadersTooSlow(BaseException):
    """Thrown into a header read past its deadline; HeaderDeadline swallows it (never escapes).

    A BaseException, as gevent.Timeout is, so that no `except Exception` on
    the way catches it.
    """


def _bytes_waiting(fd: int) -> int:
    """Bytes the kernel holds for `fd`, unread (FIONREAD: no wait, and gevent does not patch it)."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


class HeaderDeadline:
    """A header read's time limit: `idle_seconds` for the first byte, then `header_seconds`.

    No greenlet: bytes already waiting in the kernel start the shorter
    limit at once; otherwise an io watcher notes when the first byte
    arrives. A timer ticking every `header_seconds` (started in the reading
    greenlet, as gevent.Timeout starts its own: a timer started from a
    watcher's callback did not fire under gunicorn's worker) checks the
    limit, so a slow request is closed between one and two header timeouts
    after its first byte. Bytes a pipelining client sent earlier may sit in
    gunicorn's buffer instead; then the read keeps gunicorn's own limit
    until another byte arrives.
    """

    def __init__(self, fd: int, *, idle_seconds: float, header_seconds: float) -> None:
        self._fd = fd
        self._idle_seconds = idle_seconds
        self._header_seconds = header_seconds
        self._expired = _HeadersTooSlow()
        self._deadline = 0.0

    def __enter__(self) -> HeaderDeadline:
        loop = gevent.get_hub().loop
        self._greenlet = gevent.getcurrent()
        now = time.monotonic()
        waiting = _bytes_waiting(self._fd)
        self._deadline = now + (self._header_seconds if waiting else self._idle_seconds)
        self._tick = loop.timer(self._header_seconds, self._header_seconds)
        self._tick.start(self._check, update=True)
        self._first_byte = loop.io(self._fd, READ)
        if not waiting:
            self._first_byte.start(self._on_first_byte)
        return self

    def _on_first_byte(self) -> None:
        self._first_byte.stop()
        self._deadline = min(self._deadline, time.monotonic() + self._header_seconds)

    def _check(self) -> None:
        if time.monotonic() >= self._deadline:
            self._tick.stop()
            self._greenlet.throw(self._expired)

    def __exit__(self, typ: Any, value: Any, tb: Any) -> bool:
        for watcher in (self._tick, self._first_byte):
            watcher.stop()
            watcher.close()
        # Swallowed: gunicorn sees no request and closes the connection.
        return value is self._expired


class Worker(GeventWorker):
    """gunicorn's gevent worker, with HeaderDeadline around each request's header read."""

    # Set from HEADER_TIMEOUT_SECONDS by gunicorn.conf.py's post_fork.
    header_timeout_seconds = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[Any, socket.socket] = {}

    def run(self) -> None:
        handover.serve_with(self)
        super().run()

    def handle(self, listener: socket.socket, client: socket.socket, addr: Any) -> None:
        current = gevent.getcurrent()
        self._clients[current] = client
        try:
            super().handle(listener, client, addr)
        finally:
            self._clients.pop(current, None)

    def timeout_ctx(self) -> Any:
        client = self._clients.get(gevent.getcurrent())
        if client is None or client.fileno() < 0:
            return super().timeout_ctx()
        return HeaderDeadline(
            client.fileno(),
            idle_seconds=self.cfg.keepalive,
            header_seconds=self.header_timeout_seconds,
        )
