"""An SSE response: from the hub to the client, through gunicorn or held by the hub.

`response()` builds it once the view has decided everything that could
fail with a JSON error (habit 4): the body generator gets plain values.

The body sends a `retry:` hint, then catches up in batches that gunicorn
writes. Once caught up, under gunicorn's gevent worker, the connection is
handed over to the hub (held_streams.py, handover.py) and the body ends: the
channel then writes new entries to the socket itself. Elsewhere the body
waits for entries, sending a keep-alive whenever it has been quiet for
HEARTBEAT_SECONDS. It ends at SSE_MAX_SECONDS; the client reconnects with
Last-Event-ID and loses nothing.

What goes on the wire is an `Encoding`: relay's own (events.py's SSE, one
SSE event per entry, the same bytes for every client, so a held stream can
share them), or another protocol's, which is served the same way but is
never handed over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import redis
from flask import Response

from webapp.exceptions import HubClosed, Reset, SessionDeleted
from webapp.ops import metrics
from webapp.read.entries import KEEP_ALIVE, Entry, encode_sse
from webapp.read.follower import Follower
from webapp.read.hub import hub
from webapp.serving import handover
from webapp.serving.held_streams import HeldStream, holder_for, send_watch
from webapp.storage import events

log = logging.getLogger(__name__)

# Entries per SSE write: bounds what one slow client can hold in memory.
SSE_MAX_BATCH = 256
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx and similar proxies: do not buffer
}


class Encoding:
    """relay's own SSE: one event per entry (events.py), with the entry id as `id:`."""

    media_type = "text/event-stream"
    keep_alive = KEEP_ALIVE
    # Every client gets the same bytes for an entry, so the hub may hold the stream.
    holdable = True

    def opening(self, retry_ms: int) -> bytes:
        return encode_sse(retry_ms=retry_ms)

    def entries(self, batch: list[Entry]) -> bytes:
        return b"".join(entry.sse for entry in batch)

    def reset(self) -> bytes:
        return encode_sse(events.reset_data(events.CURSOR_EXPIRED), event=events.RESET)


RELAY_SSE = Encoding()


def response(
    session_id: str,
    cursor: str,
    *,
    resumed: bool,
    release: Callable[[], None],
    environ: dict[str, Any],
    settings: Mapping[str, Any],
    encoding: Encoding = RELAY_SSE,
    max_seconds: float | None = None,
) -> Response:
    """The streaming response; `release` runs once, when the stream really ends.

    It ends after `max_seconds` (default SSE_MAX_SECONDS), held or not: a
    view passes less when the caller's token expires sooner (auth.cap_seconds).
    """
    follower = hub.follow(session_id, cursor)
    log.info("sse open session=%s cursor=%s", session_id, cursor)
    metrics.sse_opened(resumed=resumed)
    end = StreamEnd(follower.close, release, metrics.sse_closed)
    if max_seconds is None:
        max_seconds = settings["SSE_MAX_SECONDS"]
    deadline = time.monotonic() + max_seconds
    hold = None
    if encoding.holdable:
        hold = holder_for(
            environ,
            session_id=session_id,
            deadline=deadline,
            heartbeat_seconds=settings["HEARTBEAT_SECONDS"],
            send_timeout_seconds=settings["SSE_SEND_TIMEOUT_SECONDS"],
        )
    body = sse_body(
        follower,
        session_id=session_id,
        encoding=encoding,
        hold=hold,
        end=end,
        retry_ms=settings["SSE_RETRY_MS"],
        heartbeat_seconds=settings["HEARTBEAT_SECONDS"],
        deadline=deadline,
        send_timeout_seconds=settings["SSE_SEND_TIMEOUT_SECONDS"],
    )
    stream = Response(body, mimetype=encoding.media_type, headers=SSE_HEADERS)
    # Runs when gunicorn closes the body, even if it never started iterating it.
    stream.call_on_close(end.response_closed)
    return stream


class StreamEnd:
    """What to release when an SSE stream really ends, wherever it ends.

    gunicorn closes the response body when the generator finishes, or when
    the hub takes the stream over; after a hand-over, the held stream ends
    it instead (held_streams.py).
    """

    def __init__(self, *callbacks: Callable[[], None]) -> None:
        self._callbacks = list(callbacks)
        self.handed_over = False

    def add(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def response_closed(self) -> None:
        if not self.handed_over:
            self.run()

    def run(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


def sse_body(
    follower: Follower,
    *,
    session_id: str,
    encoding: Encoding,
    hold: Callable[[Callable[[], None]], HeldStream] | None,
    end: StreamEnd,
    retry_ms: int,
    heartbeat_seconds: float,
    deadline: float,
    send_timeout_seconds: float,
) -> Iterator[bytes]:
    """The SSE body: retry hint, then events and keep-alives until the deadline.

    Catching up, the body yields batches for the server to write. Once
    caught up, with `hold`, it hands the connection to the hub and ends
    (held_streams.py); without it, it waits for new entries itself.
    """
    # The first write also sends the headers: gunicorn's, never the hub's.
    yield from send_watch.send(encoding.opening(retry_ms), send_timeout_seconds, session_id)
    while (remaining := deadline - time.monotonic()) > 0:
        wait = min(heartbeat_seconds, remaining)
        try:
            batch = follower.next_batch(0 if hold else wait, SSE_MAX_BATCH)
            if not batch and hold is not None:
                if follower.caught_up():
                    follower.attach(hold(end.run))
                    end.handed_over = True
                    metrics.sse_held()
                    end.add(metrics.sse_let_go)
                    handover.let_go()
                batch = follower.next_batch(wait, SSE_MAX_BATCH)
        except Reset as reset:
            log.info(
                "sse reset session=%s cursor=%s floor=%s", session_id, follower.cursor, reset.floor
            )
            follower.cursor = reset.floor
            metrics.reset_sent("sse")
            yield from send_watch.send(encoding.reset(), send_timeout_seconds, session_id)
            continue
        except HubClosed as closed:  # a shutdown, or the session was deleted
            why = "deleted" if isinstance(closed, SessionDeleted) else "shutdown"
            log.info("sse closed for %s session=%s", why, session_id)
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Close: the client reconnects with Last-Event-ID and loses nothing.
            log.warning("sse closed, redis unavailable session=%s: %s", session_id, exc)
            return
        frame = encoding.entries(batch) if batch else encoding.keep_alive
        yield from send_watch.send(frame, send_timeout_seconds, session_id)
