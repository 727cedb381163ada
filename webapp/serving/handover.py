"""Every reliance of relay on gunicorn's internals, named in one numbered list.

WSGI says nothing of any of this. Each item names where gunicorn does it
(gunicorn 27) and the test that pins it, so an upgrade that changes it fails
there before a client sees a broken stream. Nothing outside webapp/serving/
touches gunicorn.

Handing a response over to the hub. Once an SSE client has caught up, its
connection goes from gunicorn to the hub (held_streams.py), which writes new
entries to the socket itself; a long-poll with nothing to answer is parked
the same way (parked_polls.py). This file holds the functions for that:

1. The client's socket is `environ["gunicorn.socket"]`
   (gunicorn/http/wsgi.py, `create`). Pinned: tests/test_handover.py.
2. The status line and headers go out with the first item the body yields
   (`Response.write` calls `send_headers`). Pinned: tests/test_handover.py.
3. An HTTP/1.1 response without Content-Length has a chunked body: each
   yielded item is one chunk, `<hex size>\\r\\n<data>\\r\\n`, and the body
   ends with the zero-size chunk (`Response.is_chunked`, `util.write_chunk`,
   `Response.close`); read/entries.py's `chunked` frames the same way. An
   HTTP/1.0 body is the bytes as they are, ended by closing the
   connection. Pinned: tests/test_handover.py.
4. An OSError with errno EPIPE out of the body (a `BrokenPipeError`) makes
   the worker log "Ignoring EPIPE" at debug level, close its socket and
   write nothing more (gunicorn/workers/base_async.py, `AsyncWorker.handle`).
   So raising one lets go of the connection quietly, and a duplicate of the
   socket, taken before, keeps it open for the hub. The send deadline
   (held_streams.py, `SlowClient`) ends a stuck write the same way, and a
   chat stream cut short (`cut`) too. Pinned: tests/test_handover.py.

relay's own worker class (gunicorn_worker.py, which registers itself with
`serve_with`):

5. `AsyncWorker.handle(listener, client, addr)` serves every request of one
   connection until it closes; called again for a connection that a parked
   poll answered, or whose next request relay's own reader hands back
   (poll_connections.py), it reads that connection's next request as if it
   had just been accepted (gunicorn/workers/base_async.py). `listener` is
   only asked for its address. The worker's `cfg` gives the limits and
   timeouts that reader keeps to (`keepalive`, `limit_request_line`,
   `limit_request_fields`, `limit_request_field_size`,
   `secure_scheme_headers`). Pinned: tests/test_longpoll.py (the next poll
   on the connection a parked poll was answered on), tests/test_poll_wire.py
   (a request handed back, and gunicorn's limits).
6. `AsyncWorker.handle` reads each request's headers under
   `worker.timeout_ctx()` (gevent's is `gevent.Timeout(keepalive, False)`,
   which leaves `req` None and closes the connection), in the greenlet that
   serves the connection; and `Parser.__init__` reads a socket through
   `SocketUnreader`, looked up in gunicorn/http/parser.py as it builds the
   parser, whose `chunk` makes every read of the socket. relay's worker
   replaces that name with a reader that starts the header deadline when a
   read brings bytes (gunicorn_worker.py, `TimedReads`, `HeaderDeadline`).
   Because `timeout_ctx()` is called before each request is read, a
   connection whose last request was a poll answered at once waits its
   turn there, before its next request is read (priority.py); a connection
   handed back (item 5) waits for prompts in progress before `handle`.
   Pinned: tests/test_handover.py, tests/test_gunicorn_edges.py.

Answers relay writes as gunicorn would:

7. A request gunicorn cannot parse is answered by `Worker.handle_error`
   through `util.write_error(sock, status_int, reason, mesg)`, looked up on
   the module at each call (gunicorn/workers/base.py); refusals.py puts its
   own there, from gunicorn.conf.py, so the answer is API.md's JSON.
   Pinned: tests/test_gunicorn_edges.py, tests/test_handover.py (the
   function's name and parameters).
8. A parked poll's answer is a whole response that relay writes itself
   (parked_polls.py, `head`): the head gunicorn's `Response.default_headers`
   writes (status line, `Server: gunicorn`, `Date` as `util.http_date`,
   `Connection: keep-alive` unless `Request.should_close`), then the app's
   headers and Content-Length. Pinned: tests/test_handover.py (against
   gunicorn's own), tests/test_longpoll.py (the same headers on the wire).

Bytes read ahead, and given back:

9. gunicorn reads a connection through its parser's reader (item 6), a
   `gunicorn.http.unreader.Unreader`: what it read past the request it
   parsed (a pipelining client's next requests; a poll that may park has
   no body) waits in that reader's buffer, and `take_buffered()` takes it
   without reading the socket; `unread(data)` puts bytes back in front of
   that buffer, to be parsed before anything read from the socket
   (gunicorn does the same with an HTTP/2 preface it read too far,
   `AsyncWorker.handle`). A poll parked from its response takes them with
   the socket (`read_ahead`), and a connection given back to gunicorn gives
   them back (`hand_back`): the new parser's reader, made in the greenlet
   that calls `handle` (item 6), starts with them (gunicorn_worker.py,
   `TimedReads`). Pinned: tests/test_handover.py,
   tests/test_poll_wire.py (pipelined requests).

The fast way in for polls (fast_poll.py) is plain WSGI middleware and
relies on nothing more: what it parks goes through items 1-5, 8 and 9 as
the view's polls do. The reader of kept connections (poll_connections.py)
reads with httptools, not gunicorn: it relies on items 5, 8 and 9.

`GUNICORN_CHECKED` is the range of releases this was checked against;
tests/test_handover.py pins it, so an upgrade past it fails there first.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import gevent
import gevent.local
from gevent import monkey

from webapp.exceptions import CutShort, HandedOver
from webapp.serving import priority

GUNICORN_CHECKED = ((27, 0), (28, 0))  # from, up to (excluded): major, minor
ENVIRON_SOCKET = "gunicorn.socket"
LAST_CHUNK = b"0\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Connection:
    """The client connection under a response that the hub may take over."""

    sock: socket.socket
    chunked: bool  # the body is chunked (HTTP/1.1), else raw (HTTP/1.0)

    def take(self) -> socket.socket:
        """A duplicate of the socket: it stays open when gunicorn closes its own."""
        return socket.socket(fileno=os.dup(self.sock.fileno()))


def connection(environ: dict[str, Any]) -> Connection | None:
    """This response's connection, or None where only yielding to the server is safe.

    Only gunicorn's plain HTTP/1.x GET responses under gevent qualify:
    another server or worker class, TLS inside gunicorn (bytes must go
    through the SSL object), HTTP/2 and HEAD keep yielding. Heroku ends TLS
    at its router, so there every stream qualifies.
    """
    sock = environ.get(ENVIRON_SOCKET)
    protocol = environ.get("SERVER_PROTOCOL")
    if (
        sock is None
        or not monkey.is_module_patched("socket")  # held streams live on gevent's loop
        or environ.get("REQUEST_METHOD") != "GET"
        or environ.get("wsgi.url_scheme") != "http"
        or protocol not in ("HTTP/1.1", "HTTP/1.0")
        or hasattr(sock, "do_handshake")  # TLS
        # A body gunicorn has not read would be taken for the next request (item 9).
        or environ.get("CONTENT_LENGTH", "") not in ("", "0")
        or "HTTP_TRANSFER_ENCODING" in environ
    ):
        return None
    # gunicorn chunks the body of an HTTP/1.1 GET response without Content-Length.
    return Connection(sock, chunked=protocol == "HTTP/1.1")


class _Worker(Protocol):
    """What relay uses of gunicorn's worker object (item 5)."""

    alive: bool
    sockets: list[socket.socket]
    cfg: Any
    header_timeout_seconds: float  # relay's (gunicorn_worker.py)

    def handle(self, listener: socket.socket, client: socket.socket, addr: Any) -> None: ...


_serving: _Worker | None = None
_keepalive = False  # gunicorn's `keepalive` is set: it keeps connections open at all
# Reads the next request of a connection whose response is complete (poll_connections.py).
NextRequest = Callable[[socket.socket, Any, bytes], None]
_reader: NextRequest | None = None
# The connection this greenlet serves (one greenlet per connection): gunicorn's reader
# of it (`reads`), and bytes given back to read first (`given_back`).
_this_connection = gevent.local.local()


def serve_with(worker: _Worker | None) -> None:
    """Called by relay's gunicorn worker as it starts (gunicorn_worker.py)."""
    global _serving, _keepalive
    _serving = worker
    # Read once: gunicorn's config is slow to ask (`Config.__getattr__`), and a poll asks.
    _keepalive = worker is not None and worker.cfg.keepalive > 0


def read_next_with(reader: NextRequest | None) -> None:
    """Have `reader` read the next request of connections the hub answered (None: gunicorn)."""
    global _reader
    _reader = reader


def can_keep_alive() -> bool:
    """Whether a connection answered by the hub can be handed back to gunicorn (item 5)."""
    return _keepalive and _serving is not None and _serving.alive and bool(_serving.sockets)


def worker_config() -> tuple[Any, float]:
    """gunicorn's config for this worker, and relay's header timeout (item 5)."""
    assert _serving is not None, "only under relay's gunicorn worker (can_keep_alive)"
    return _serving.cfg, _serving.header_timeout_seconds


def next_request(sock: socket.socket, addr: Any, read_ahead: bytes = b"") -> None:
    """A connection whose response is complete: its next request, read by relay or gunicorn."""
    if _reader is not None:
        _reader(sock, addr, read_ahead)
    else:
        hand_back(sock, addr, read_ahead)


def hand_back(
    sock: socket.socket, addr: Any, unread: bytes = b"", *, wait_quiet: bool = True
) -> None:
    """Give a connection back to gunicorn, for its next request; `unread` is read first (item 9).

    `wait_quiet`: first wait while prompts are in progress (priority.py),
    unless the caller waited already.
    """
    assert _serving is not None, "only under relay's gunicorn worker (can_keep_alive)"
    listener = _listener_of(sock, _serving.sockets)
    gevent.spawn(_handle, _serving, listener, sock, addr, unread, wait_quiet)


def _handle(
    worker: _Worker,
    listener: socket.socket,
    sock: socket.socket,
    addr: Any,
    unread: bytes,
    wait_quiet: bool,
) -> None:
    """Serve the connection's next request (most likely a poll) once no prompt is in progress."""
    if wait_quiet:
        priority.lane.wait_quiet()
    _this_connection.given_back = unread
    worker.handle(listener, sock, addr)


def read_through(reads: Any) -> bytes:
    """gunicorn's parser made `reads` for this greenlet's connection: what to read first (item 9)."""
    _this_connection.reads = reads
    given, _this_connection.given_back = getattr(_this_connection, "given_back", b""), b""
    return given


def reads_of_this_connection() -> Any:
    """gunicorn's reader of the connection this greenlet serves, if it has made one (item 6)."""
    return getattr(_this_connection, "reads", None)


def read_ahead() -> bytes:
    """What gunicorn read past this greenlet's request, taken from its reader (item 9)."""
    reads = reads_of_this_connection()
    return reads.take_buffered() if reads is not None else b""


def _listener_of(sock: socket.socket, listeners: list[socket.socket]) -> socket.socket:
    """The listening socket that accepted `sock` (gunicorn asks it for its address only)."""
    if len(listeners) > 1:
        try:
            local = sock.getsockname()
            for listener in listeners:
                bound = listener.getsockname()
                if isinstance(bound, tuple) and isinstance(local, tuple) and bound[1] == local[1]:
                    return listener
        except OSError:
            pass
    return listeners[0]


def let_go() -> NoReturn:
    """End the response body so that gunicorn closes its socket and says nothing (item 4)."""
    raise HandedOver(errno.EPIPE, "the hub holds this stream now")


def cut(reason: str) -> NoReturn:
    """End the response body with no end of body: gunicorn closes the socket (item 4)."""
    raise CutShort(errno.EPIPE, reason)
