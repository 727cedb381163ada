"""Long-polls answered without Flask's dispatch, when nothing about them is unusual.

A poll loop asks again as soon as it is answered, so a web process answers
about as many polls a second as it delivers events, and Flask's machinery
around the view (the request context, routing, six hooks, the Response's
WSGI adapter) was about a fifth of each poll's CPU (issue 18, `bench
--profile`; 0.41 ms a poll before, 0.34 after, on the pinned bench). `FastPolls`
wraps the app's WSGI callable and answers `GET /api/sessions/<sid>/poll`
itself, with the functions the view in stream.py uses:

- the session id's shape, `?after=`, `?timeout=` (params.py);
- the caller's token when access control is on, capping the timeout (auth.py);
- the session's owner as the hub knows it (sessions.ensure's case without SQL);
- the open-stream limits (limits.py), the waiting-polls gauge (metrics.py),
  the connection's place among polls (priority.py);
- the CORS headers of an allowed origin (cors.py);

then longpoll.response answers or parks the poll, as for the view.

Anything else goes to Flask, which checks everything again and answers as
API.md says: a check that fails (its JSON error comes from errors.py and is
counted by metrics.py), a session the hub does not follow (found in SQL),
a body on the GET, HEAD, a failure while answering (Redis down: 503). The
fast path has no side effect before its last check, so doing it again is
safe. tests/test_longpoll.py checks that both paths give the same answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from webapp.exceptions import ApiError
from webapp.http import auth, cors, limits, longpoll, params
from webapp.http.stream import POLL_MAX_EVENTS
from webapp.ops import metrics
from webapp.read.hub import hub
from webapp.serving import priority

if TYPE_CHECKING:
    from flask import Flask, Response

    from webapp.http.auth import Caller

# The route of stream.poll, as werkzeug matches `<session_id>` (no slash).
POLL_PATH = re.compile(r"/api/sessions/([^/]+)/poll")


class FastPolls:
    """WSGI middleware: polls answered here, everything else by the Flask app."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._flask = app.wsgi_app
        self._hub = hub.of(app)  # not the proxy: no app context to push per poll

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        match = POLL_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or environ.get("REQUEST_METHOD") != "GET" or _has_body(environ):
            return self._flask(environ, start_response)
        response = self._poll(match[1], environ)
        if response is None:
            return self._flask(environ, start_response)
        return response(environ, start_response)

    def _poll(self, session_id: str, environ: dict[str, Any]) -> Response | None:
        """The poll's response, or None when Flask is to answer it."""
        config = self._app.config
        try:
            args = _query(environ)
            caller = self._caller(environ, args)
            if not self._followed(params.valid_id(session_id, "session"), caller):
                return None
            cursor = params.cursor(args.get("after"))
            timeout = params.poll_timeout_of(args.get("timeout"), config["POLL_TIMEOUT_SECONDS"])
            address = limits.address_of(
                environ.get("HTTP_X_FORWARDED_FOR"),
                environ.get("REMOTE_ADDR"),
                config["PROXY_HOPS"],
            )
            release = limits.acquire_stream_for(address, config)
        except (ApiError, ValueError):  # UnicodeDecodeError too: Flask reads the query its way
            return None
        priority.note_request(is_poll=True, is_wait=True)
        metrics.poll_started()
        try:
            response = longpoll.response(
                session_id,
                cursor,
                auth.cap_seconds(caller, timeout),  # a poll never waits past its token
                limit=POLL_MAX_EVENTS,
                release=release,  # released by longpoll.response, whatever happens
                environ=environ,
                from_hub=self._hub,
            )
        except Exception:  # Flask answers with errors.py's JSON (it runs every step again)
            return None
        finally:
            metrics.poll_finished()
        self._add_cors(response, environ)
        return response

    def _caller(self, environ: dict[str, Any], args: dict[str, str]) -> Caller | None:
        """As auth.authenticate, without its log line: Flask logs a refusal when it answers it."""
        verifier = auth.verifier_of(self._app)
        if verifier is None:
            return None
        token = auth.token_of(environ.get("HTTP_AUTHORIZATION"), args.get(auth.QUERY_PARAMETER))
        if token is None:
            raise ApiError(401, "unauthorized", "no token")  # Flask says it properly
        return verifier.decode(token)

    def _followed(self, session_id: str, caller: Caller | None) -> bool:
        """sessions.ensure without SQL: the hub follows the session and knows who may use it."""
        channel = self._hub.channel(session_id)
        return channel is not None and (
            caller is None or auth.can_access(caller, channel.owner, session_id)
        )

    def _add_cors(self, response: Response, environ: dict[str, Any]) -> None:
        """What cors.py's after_request hook adds to every `/api/` response."""
        origins = cors.origins_of(self._app)
        if origins:
            response.vary.add("Origin")
            response.headers.update(cors.allowed(origins, environ.get("HTTP_ORIGIN")))


def _query(environ: dict[str, Any]) -> dict[str, str]:
    """The query's first value of each name, as werkzeug's `request.args.get` reads it."""
    query = environ.get("QUERY_STRING", "").encode("latin-1").decode()
    first: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, errors="werkzeug.url_quote"):
        first.setdefault(name, value)
    return first


def _has_body(environ: dict[str, Any]) -> bool:
    """A GET with a body: Flask checks it (a malformed JSON body is a 400 everywhere)."""
    return (
        environ.get("CONTENT_LENGTH", "") not in ("", "0")
        or "HTTP_TRANSFER_ENCODING" in environ
        or bool(environ.get("CONTENT_TYPE"))
    )
