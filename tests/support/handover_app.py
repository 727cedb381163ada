"""A test-only WSGI app that hands its response over as relay's SSE does (webapp/serving/handover.py).

It yields one item through gunicorn, takes the connection, writes the rest
of the body on its duplicate from another greenlet, and lets gunicorn go
with the EPIPE. tests/test_handover.py serves it with gunicorn's gevent
worker and reads the bytes on the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import gevent

from webapp.read.entries import chunked
from webapp.serving import handover


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    connection = handover.connection(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    if connection is None:
        yield b"no connection to take"
        return
    yield b"through gunicorn, "
    sock = connection.take()

    def finish() -> None:
        if connection.chunked:
            sock.sendall(chunked(b"then from the hub") + handover.LAST_CHUNK)
        else:
            sock.sendall(b"then from the hub")
        sock.close()

    gevent.spawn(finish)
    handover.let_go()
