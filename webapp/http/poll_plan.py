"""One plan for every long-poll, whichever way in it took (STYLE.md, habit 19).

A poll comes in two ways: through Flask's view (stream.py, `poll`), and
through the fast path that skips Flask's dispatch (serving/fast_poll.py),
which carries most polls of an open chat page. Both call `plan()` with
plain values, and it alone decides:

- `Refusal`: an error, with its status, API.md code, message and headers;
- `LOOKUP`: only SQL can tell whether the caller may use the session (the
  hub does not follow it here, or does not know its owner). The fast path
  hands these to Flask; the view looks the session up and asks again with
  what SQL holds (`Stored`);
- `Answer`: the answer now: entries, a reset, or none after its wait;
- `Park`: nothing yet, and the connection can wait with the hub until
  there is (longpoll.py, serving/parked_polls.py).

Every header is decided here too: `Cache-Control` on answers, and on
answers and errors alike the CORS headers cors.py gives every `/api/`
response (its hook adds the same ones again to what Flask answers: no
change). The token check is here, not in auth.py's hook, which leaves the
poll to its plan.

The checks, in the order in which Flask's hooks and view made them before:

1. the token, when access control is on: 401 (`auth.caller_of`);
2. the session id's shape: 400 `invalid_session_id`;
3. the session: 404 `session_not_found` for an unknown one and for one the
   caller may not use alike; from the hub's channel when this process
   follows it, else from SQL;
4. `?after=`: 400 `invalid_cursor`; `?timeout=`: 400 `invalid_timeout`,
   then no longer than the token lives;
5. the open-stream limits: 429 or 503, and from here the poll counts as an
   open stream until it is answered.

Nothing has a side effect before the last check, so a plan can be asked
again: after a `LOOKUP`, or by Flask once the fast path fell back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl

import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" error handler)

from webapp.exceptions import ApiError
from webapp.http import auth, cors, limits, params
from webapp.read.hub import HubExtension

if TYPE_CHECKING:
    from flask import Flask

    from webapp.http.auth import Caller, Verifier
    from webapp.read.follower import Follower, Poll
    from webapp.read.hub import Hub

POLL_MAX_EVENTS = 1000
# An answer is about one moment of a stream: no cache may keep it.
ANSWER_HEADERS = {"Cache-Control": "no-store"}
_EXTENSION = "relay.poll_site"


# What is made for every poll is a NamedTuple or a plain slotted dataclass:
# either costs a quarter of a frozen dataclass to make (1 µs against 0.3),
# and a poll's CPU is what issues 18 and 25 measure.
class PollRequest(NamedTuple):
    """A poll as plain values: all that its plan reads of it."""

    session_id: str  # from the path, unchecked
    query: str  # the query string as WSGI gives it (its bytes as latin-1)
    authorization: str | None
    origin: str | None
    forwarded_for: str | None
    remote_addr: str | None

    @classmethod
    def of(cls, session_id: str, environ: Mapping[str, Any]) -> PollRequest:
        """The poll in a WSGI environ, read the same way on either way in."""
        return cls(
            session_id,
            environ.get("QUERY_STRING", ""),
            environ.get("HTTP_AUTHORIZATION"),
            environ.get("HTTP_ORIGIN"),
            environ.get("HTTP_X_FORWARDED_FOR"),
            environ.get("REMOTE_ADDR"),
        )


@dataclass(frozen=True, slots=True)
class PollSite:
    """What a plan needs of the app, gathered once: its hub, token checker, origins, settings."""

    hub: Hub
    verifier: Verifier | None
    origins: frozenset[str]
    settings: Mapping[str, Any]


def site_of(app: Flask) -> PollSite:
    """The app's PollSite (made on first use, once auth and cors are set up)."""
    site = app.extensions.get(_EXTENSION)
    if site is None:
        site = app.extensions[_EXTENSION] = PollSite(
            HubExtension.of(app), auth.verifier_of(app), cors.origins_of(app), app.config
        )
    return site


@dataclass(frozen=True, slots=True)
class Stored:
    """What SQL holds of a session: whether it exists, and its owner."""

    exists: bool
    owner: str | None = None


class Refusal(NamedTuple):
    """An error answer: API.md's JSON, with these headers."""

    status: int
    code: str
    message: str
    headers: dict[str, str]


class Lookup:
    """Only SQL can tell whether the caller may use the session."""


LOOKUP = Lookup()


@dataclass(slots=True)
class Answer:
    """The poll's answer now, with its headers."""

    poll: Poll
    headers: dict[str, str]


@dataclass(slots=True)
class Park:
    """Nothing to answer yet: the connection may wait with the hub, up to `timeout_seconds`."""

    follower: Follower
    timeout_seconds: float
    headers: dict[str, str]
    release: Callable[[], None]

    def end(self) -> None:
        """The poll is answered, or gone: stop following, and it no longer counts as a stream."""
        self.follower.close()
        self.release()


Decision = Refusal | Lookup | Answer | Park


@dataclass(slots=True)
class _Accepted:
    session_id: str
    cursor: str
    timeout_seconds: float
    release: Callable[[], None]


def plan(
    request: PollRequest, site: PollSite, *, can_park: bool, stored: Stored | None = None
) -> Decision:
    """What to do with this poll (see the module's docstring).

    `can_park`: the connection can be taken over (handover.connection).
    `stored`: what SQL holds of the session, once a `LOOKUP` made the caller look.
    """
    cors_headers = cors.headers_for(site.origins, request.origin)
    try:
        accepted = _accept(request, site, stored)
    except ApiError as error:
        return Refusal(error.status, error.code, error.message, {**error.headers, **cors_headers})
    if accepted is None:
        return LOOKUP
    headers = {**ANSWER_HEADERS, **cors_headers}
    return _answer_or_park(accepted, site.hub, headers, can_park=can_park, stored=stored)


def _accept(request: PollRequest, site: PollSite, stored: Stored | None) -> _Accepted | None:
    """Every check, in order; None when only SQL can tell about the session. Raises ApiError."""
    query = query_of(request.query)
    caller = auth.caller_of(site.verifier, request.authorization, query.get(auth.QUERY_PARAMETER))
    session_id = params.valid_id(request.session_id, "session")
    if not _may_use(site.hub, session_id, caller, stored):
        return None
    cursor = params.cursor(query.get("after"))
    timeout = params.poll_timeout_of(query.get("timeout"), site.settings["POLL_TIMEOUT_SECONDS"])
    address = limits.address_of(
        request.forwarded_for, request.remote_addr, site.settings["PROXY_HOPS"]
    )
    release = limits.acquire_stream_for(address, site.settings)  # the last check
    # A poll never waits past its token.
    return _Accepted(session_id, cursor, auth.cap_seconds(caller, timeout), release)


def _may_use(hub: Hub, session_id: str, caller: Caller | None, stored: Stored | None) -> bool:
    """True when the caller may use the session, False when only SQL can tell; else 404."""
    if stored is not None:
        if not stored.exists:
            raise auth.session_not_found()
        auth.check_session(caller, stored.owner, session_id)
        return True
    # A session with a channel here was found in SQL before (a delete ends
    # the channel), and the channel keeps its owner, which never changes.
    channel = hub.channel(session_id)
    if channel is None:
        return False
    if caller is None:
        return True  # access control is off: holding the id is the credential
    if channel.owner is None:
        return False  # not known here (or the session has none, which SQL says)
    auth.check_session(caller, channel.owner, session_id)
    return True


def _answer_or_park(
    accepted: _Accepted,
    hub: Hub,
    headers: dict[str, str],
    *,
    can_park: bool,
    stored: Stored | None,
) -> Answer | Park:
    """Entries after the cursor now; else park, or wait here where the connection cannot park."""
    park = can_park and accepted.timeout_seconds > 0
    parked = False
    follower = None
    try:
        follower = hub.follow(accepted.session_id, accepted.cursor)
        if stored is not None:  # the next poll of this session needs no SQL
            hub.note_owner(accepted.session_id, stored.owner)
        poll = follower.poll(0 if park else accepted.timeout_seconds, POLL_MAX_EVENTS)
        if park and not poll.entries and not poll.reset:
            if follower.caught_up():
                parked = True
                return Park(follower, accepted.timeout_seconds, headers, accepted.release)
            # A cursor ahead of the stream: wait here.
            poll = follower.poll(accepted.timeout_seconds, POLL_MAX_EVENTS)
        return Answer(poll, headers)
    finally:
        if not parked:
            if follower is not None:
                follower.close()
            accepted.release()


def query_of(raw: str) -> dict[str, str]:
    """The query's first value of each name, as werkzeug's `request.args.get` reads it.

    400 for bytes that are not UTF-8, where werkzeug would raise.
    """
    try:
        text = raw.encode("latin-1").decode()
    except UnicodeError:
        raise ApiError(400, "bad_request", "The request is malformed.") from None
    first: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote"):
        first.setdefault(name, value)
    return first
