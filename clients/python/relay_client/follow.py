"""Plans that follow a session's events: SSE or long-poll, resumed after every cut.

Deliberate choices:
- One `Cursor` per follower, whatever the transport: a reconnect sends it
  as `Last-Event-ID` (SSE) or `after` (long-poll), and an event at or
  before it is dropped, so nothing is yielded twice, even from a server
  or proxy that repeats itself.
- A reconnect waits the server's `retry:` time the first time, then backs
  off with jitter while connections bring nothing new; a 429 or 503 waits
  at least its Retry-After. Other error answers (400, 403, 404) end the
  stream with their exception: trying again cannot help.
- A 401 asks the token provider for a new token once per connection; a
  second refusal raises Unauthorized, so a revoked user stops retrying.
  A stream the server ends because the token expired (API.md) is simply
  reconnected, with a token renewed before it runs out (tokens.py).
- A stalled stream (no byte, not even a keep-alive, for
  `Policy.stall_seconds`) is a cut like any other.
- A stream whose headers came and then not one byte in that time, though
  relay writes its `retry:` line at once, is held by a proxy that buffers
  whole bodies (the JS client's "buffered", clients/js/src/connection.js):
  the follower long-polls from the same cursor, tries SSE again after
  `Policy.sse_retry_seconds` (15 s, then 30 s, ... 5 min), and stays on
  SSE once a stream brings a byte. A cut is not a sign of buffering.
- A `reset` reloads the snapshot and moves the cursor to the snapshot's;
  the caller gets the `reset` event with the snapshot to rebuild from.
- Reconnects and resets are logged at debug level, with the session and
  cursor; a token never is.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import ServerSentEvent

from . import calls
from .actions import Authorize, Emit, Open, Plan, Receive, Request, Sleep
from .answer import WAITING as WAITING_STATUS
from .errors import ConnectionLost, IncompleteAnswer, ProtocolError, error_from
from .events import RESET, Cursor, Event
from .retry import Backoff, Policy, retry_after_seconds

if TYPE_CHECKING:
    from .answer import Answer

log = logging.getLogger(__name__)

Until = Callable[[Event], bool]
SSE = "sse"
POLL = "poll"
WHOLE = "whole"
TRANSPORTS = (SSE, POLL, WHOLE)
UNFINISHED = ("queued", "streaming")
# How one SSE connection ended (read_stream).
MET, CUT, HELD = "met", "cut", "held"


def session_events(
    session_id: str, cursor: Cursor, policy: Policy, transport: str, until: Until | None = None
) -> Plan[None]:
    """The session's events after `cursor`, each once, until `until(event)` is true."""
    if transport == POLL:
        yield from poll_events(session_id, cursor, policy, until)
        return
    retries = policy.sse_retry_seconds
    for held in itertools.count():
        if (yield from sse_events(session_id, cursor, policy, until)):
            return
        if not retries:  # SSE is never tried again: long-poll from here on
            log.info("sse held session=%s after=%s: long-poll", session_id, cursor.value)
            yield from poll_events(session_id, cursor, policy, until)
            return
        stint = retries[min(held, len(retries) - 1)]
        log.info("sse held session=%s after=%s: long-poll for %gs", session_id, cursor.value, stint)
        if (yield from poll_events(session_id, cursor, policy, until, time.monotonic() + stint)):
            return


def sse_events(session_id: str, cursor: Cursor, policy: Policy, until: Until | None) -> Plan[bool]:
    """Follow by SSE: True once `until` is met, False when a proxy holds the stream."""
    reconnect = policy.reconnect()
    failures, renewed = 0, False
    path = calls.session_path(session_id, "events")
    while True:
        headers = {"Accept": "text/event-stream"}
        if cursor.value is not None:
            headers["Last-Event-ID"] = cursor.value
        token = yield Authorize()
        request = Request("GET", path, headers=headers, read_timeout=policy.stall_seconds)
        outcome = yield Open(request, token)
        progressed, wait = False, None
        if isinstance(outcome, httpx.Response):
            status = outcome.status_code
            if status == 200:
                renewed = False
                progressed, end = yield from read_stream(
                    session_id, cursor, policy, reconnect, until
                )
                if end != CUT:
                    return end == MET
            elif status == 401 and not renewed:
                renewed = True
                if (yield Authorize(renew=True)) is not None:
                    continue
                raise error_from(outcome)
            elif status == 429 or status >= 500:
                wait = retry_after_seconds(outcome.headers.get("Retry-After"))
            else:
                raise error_from(outcome)
        failures = 1 if progressed else failures + 1
        if policy.reconnects is not None and failures > policy.reconnects:
            raise ConnectionLost(f"{path}: {failures - 1} connections in a row brought nothing")
        delay = reconnect.delay(failures, at_least=wait)
        log.debug("sse reconnect session=%s after=%s in %.2fs", session_id, cursor.value, delay)
        yield Sleep(delay)


def read_stream(
    session_id: str, cursor: Cursor, policy: Policy, reconnect: Backoff, until: Until | None
) -> Plan[tuple[bool, str]]:
    """Read one open SSE response: (whether it brought anything new, MET, CUT or HELD)."""
    progressed, received = False, False
    while True:
        item = yield Receive()
        if isinstance(item, httpx.ReadTimeout) and not received:
            return False, HELD  # not even the opening `retry:` line
        if item is None or isinstance(item, httpx.TransportError):
            return progressed, CUT
        received = True
        if item.retry is not None:
            reconnect.base_seconds = item.retry / 1000
        if not item.data:
            continue  # nothing to dispatch (the SSE spec): the opening `retry:` on its own
        if item.event == RESET:
            event = yield from reload(session_id, cursor, policy, sse_data(item))
        else:
            if not item.id:
                raise ProtocolError(f"a {item.event} event without an id")
            if not cursor.admit(item.id):
                continue
            event = Event(item.id, item.event, sse_data(item))
        progressed = True
        stop = until is not None and until(event)
        yield Emit(event)
        if stop:
            return progressed, MET


def sse_data(item: ServerSentEvent) -> dict[str, Any]:
    try:
        data = json.loads(item.data)
    except ValueError as exc:
        raise ProtocolError(f"{item.event} {item.id}: data is not JSON") from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"{item.event} {item.id}: data is not a JSON object")
    return data


def poll_events(
    session_id: str,
    cursor: Cursor,
    policy: Policy,
    until: Until | None,
    deadline: float | None = None,
) -> Plan[bool]:
    """Follow by long-poll, until `deadline` (time.monotonic) if given: whether `until` was met."""
    while deadline is None or time.monotonic() < deadline:
        poll = yield from calls.poll(
            session_id, cursor.value, policy.poll_seconds, policy, persistent=True
        )
        if poll.reset:
            event = yield from reload(session_id, cursor, policy, {"reason": "cursor_expired"})
            stop = until is not None and until(event)
            yield Emit(event)
            if stop:
                return True
            continue
        for event in poll.events:
            if event.id is None or not cursor.admit(event.id):
                continue
            stop = until is not None and until(event)
            yield Emit(event)
            if stop:
                return True
    return False


def reload(session_id: str, cursor: Cursor, policy: Policy, data: dict[str, Any]) -> Plan[Event]:
    """After a `reset`: the snapshot, and the cursor it reflects."""
    snapshot = yield from calls.snapshot(session_id, policy)
    log.debug("reset session=%s cursor=%s -> %s", session_id, cursor.value, snapshot["cursor"])
    cursor.value = snapshot["cursor"]
    return Event(None, RESET, data, snapshot)


def answer(target: Answer, policy: Policy, transport: str) -> Plan[None]:
    """Follow one answer until it is settled; reload it if `end`'s counts disagree."""
    sid, mid = target.session_id, target.message_id
    if not target.loaded:
        snapshot = yield from calls.snapshot(sid, policy)
        if not target.load_snapshot(snapshot):
            target.load((yield from calls.message(sid, mid, policy)))
    if transport == WHOLE:
        backoff = policy.reconnect()
        while not target.followed_to_the_end:
            if (
                target.status == WAITING_STATUS
            ):  # inputs given, not yet taken up: relay answers at once
                yield Sleep(backoff.delay(1))
            target.load((yield from calls.message(sid, mid, policy, policy.whole_wait_seconds)))
    elif not target.followed_to_the_end:
        yield from session_events(sid, target.cursor, policy, transport, target.apply)
    if target.incomplete:
        target.load((yield from calls.message(sid, mid, policy)))
        if target.check_end():
            raise IncompleteAnswer(f"{mid}: the stored answer disagrees with its `end` counts")
