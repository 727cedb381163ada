"""A long-poll's response, from its plan (poll_plan.py), for every way in.

`serve()` is what two ways in call: Flask's view (stream.py, `poll`), which
may look a session up in SQL, and the fast path (serving/fast_poll.py,
through stream.py's `fast_answerer`), which may not. It asks the plan, and
turns an `Answer` or a `Park` into the same werkzeug Response on both, so
the bytes on the wire are the same whichever way a poll took
(tests/test_poll_parity.py).

The third way in is a kept connection, whose next request the hub reads
itself (serving/poll_connections.py, through stream.py's `kept_answerer`):
`serve_kept()` asks the same plan and gives it the answer as bytes, or the
poll to park, with the same headers in the same order (`answer_fields`).

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
from webapp.serving import handover, poll_answers
from webapp.serving.parked_polls import ParkedPoll
from webapp.serving.poll_connections import Hold, Reply
from webapp.serving.poll_heads import PollHead

JSON = "application/json"


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


def serve_kept(head: PollHead, remote_addr: str, site: PollSite) -> Reply | Hold | Refusal | Lookup:
    """A poll read on a kept connection: its answer as bytes, the poll to park, or why not."""
    request = PollRequest(
        head.session_id,
        head.query,
        head.authorization,
        head.origin,
        head.forwarded_for,
        remote_addr,
    )
    decision = plan(request, site, can_park=True)  # the hub holds the connection: it can park
    if isinstance(decision, Answer):
        poll = decision.poll
        if poll.reset:
            metrics.reset_sent("poll")
        body = poll_answers.bodies.body(head.session_id, poll.entries, poll.cursor, poll.reset)
        return Reply(poll_answers.fields_of(answer_fields(decision.headers)), body)
    if isinstance(decision, Park):
        parked = ParkedPoll(decision.follower, limit=POLL_MAX_EVENTS, on_end=decision.end)
        fields = poll_answers.fields_of(answer_fields(decision.headers))
        return Hold(parked, fields, decision.timeout_seconds)
    return decision


def answer_fields(headers: dict[str, str]) -> list[tuple[str, str]]:
    """An answer's headers in their order on the wire: the plan's, then Content-Type.

    As werkzeug orders them for a JSON Response, which adds Content-Length
    after them when it knows the body.
    """
    return [*headers.items(), ("Content-Type", JSON)]


def answer_response(answer: Answer) -> Response:
    poll = answer.poll
    if poll.reset:
        metrics.reset_sent("poll")
    body = poll_body(poll.entries, poll.cursor, poll.reset)
    return Response(body, headers=answer_fields(answer.headers))


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

    stream = Response(body(), headers=answer_fields(park.headers))
    # Runs when gunicorn closes the body, whether or not it parked.
    stream.call_on_close(parked.response_closed)
    return stream
