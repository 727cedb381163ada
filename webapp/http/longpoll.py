"""A long-poll's response, from its plan (poll_plan.py), for either way in.

`serve()` is what both ways in call: Flask's view (stream.py, `poll`), which
may look a session up in SQL, and the fast path (serving/fast_poll.py,
through stream.py's `fast_poll`), which may not. It asks the plan, and
turns an `Answer` or a `Park` into the same werkzeug Response on both, so
the bytes on the wire are the same whichever way a poll took
(tests/test_poll_parity.py).

A parked poll's response has a body that gunicorn runs once Flask (or the
fast path) is done with the headers: unless entries came meanwhile, it
hands the connection to the hub (serving/parked_polls.py), which answers
the poll on the socket when there is news or at its timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from flask import Response

from webapp.http.poll_plan import (
    LOOKUP,
    POLL_MAX_EVENTS,
    Answer,
    Lookup,
    Park,
    PollRequest,
    PollSite,
    Refusal,
    Stored,
    plan,
)
from webapp.ops import metrics
from webapp.read.entries import poll_body
from webapp.serving import handover
from webapp.serving.parked_polls import ParkedPoll


def serve(
    session_id: str,
    environ: dict[str, Any],
    site: PollSite,
    look_up: Callable[[str], Stored] | None = None,
) -> Response | Refusal | Lookup:
    """The poll's response, or its refusal; `LOOKUP` when SQL must tell and `look_up` is None.

    `look_up`: what SQL holds of a session (Flask's view passes it; the
    fast path has none, and hands a `LOOKUP` to Flask).
    """
    connection = handover.connection(environ)
    request = PollRequest.of(session_id, environ)
    decision = plan(request, site, can_park=connection is not None)
    if decision is LOOKUP and look_up is not None:
        stored = look_up(session_id)  # the id's shape was checked before a LOOKUP
        decision = plan(request, site, can_park=connection is not None, stored=stored)
    if isinstance(decision, Answer):
        return answer_response(decision)
    if isinstance(decision, Park):
        assert connection is not None, "a poll parks only where its connection can be taken"
        return parked_response(decision, connection, environ)
    return decision


def answer_response(answer: Answer) -> Response:
    poll = answer.poll
    if poll.reset:
        metrics.reset_sent("poll")
    body = poll_body(poll.entries, poll.cursor, poll.reset)
    return Response(body, mimetype="application/json", headers=answer.headers)


def parked_response(
    park: Park, connection: handover.Connection, environ: dict[str, Any]
) -> Response:
    """A response whose body hands the connection to the hub; `park.end` runs once, when done."""
    parked = ParkedPoll(park.follower, limit=POLL_MAX_EVENTS, on_end=park.end)

    def body() -> Iterator[bytes]:
        # Flask and its after_request hooks are done: the headers are final.
        if not park.follower.caught_up():  # entries came meanwhile: answer through gunicorn
            poll = park.follower.poll(0, POLL_MAX_EVENTS)
            yield poll_body(poll.entries, poll.cursor, poll.reset).encode()
            return
        parked.park(connection, environ, stream.headers, park.timeout_seconds)

    stream = Response(body(), mimetype="application/json", headers=park.headers)
    # Runs when gunicorn closes the body, whether or not it parked.
    stream.call_on_close(parked.response_closed)
    return stream
