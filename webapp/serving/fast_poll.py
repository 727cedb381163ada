"""Long-polls answered without Flask's dispatch: the cheap way in for most polls.

A poll loop asks again as soon as it is answered, so a web process answers
about as many polls a second as it delivers events, and Flask's machinery
around the view (the request context, routing, the hooks, the Response's
WSGI adapter) was about a fifth of each poll's CPU (issue 18, `bench
--profile`). `FastPolls` wraps the app's WSGI callable and gives a
`GET /api/sessions/<sid>/poll` to `answer`, which create_app passes in
(http/stream.py, `fast_answerer`): the poll's plan (http/poll_plan.py),
the same that Flask's view asks. This module checks nothing itself; it
only routes, and it knows nothing of HTTP's rules but the path.

It hands a poll to Flask ("falls back") when the plan's way in without
Flask cannot answer it, for one of `REASONS`:

- `body`: the GET has a body (Flask checks a JSON body on every request);
- `upgrade`: the GET asks for an Upgrade (werkzeug's routing refuses a
  WebSocket handshake to a plain route with a 400: found by
  tests/test_poll_wire.py);
- `lookup`: only SQL can tell whether the caller may use the session (the
  hub does not follow it here, or does not know its owner): Flask's view
  looks it up and asks the same plan;
- `refused`: the plan refuses the poll: Flask answers every error of the
  API (errors.py's JSON, counted by code, a refused token logged);
- `failed`: answering raised (Redis down, say): Flask asks again and
  answers as API.md says (a 503).

Each is counted in `relay_fast_poll_fallbacks_total{reason}` and logged at
debug level. Nothing has a side effect before the plan's last check, so
asking again is safe. FAST_POLL=false leaves the fast path out (create_app).

Plain WSGI: it relies on nothing of gunicorn's. A poll it parks goes
through handover.py as the view's polls do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from webapp.ops import metrics
from webapp.serving import priority

log = logging.getLogger(__name__)

BODY, UPGRADE, LOOKUP, REFUSED, FAILED = "body", "upgrade", "lookup", "refused", "failed"
REASONS = (BODY, UPGRADE, LOOKUP, REFUSED, FAILED)

# The route of the poll view (stream.py), as werkzeug matches `<session_id>` (no slash).
POLL_PATH = re.compile(r"/api/sessions/([^/]+)/poll")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# A poll's session id (from the path) and environ -> its response, or why Flask must answer.
Answerer = Callable[[str, dict[str, Any]], WsgiApp | str]


class FastPolls:
    """WSGI middleware: polls answered by their plan here, everything else by the app."""

    def __init__(self, app: WsgiApp, answer: Answerer) -> None:
        self._app = app
        self._answer = answer
        self.answered = 0  # polls answered here, for tests and the curious
        metrics.fast_poll_fallback_reasons(REASONS)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        match = POLL_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or environ.get("REQUEST_METHOD") != "GET":
            return self._app(environ, start_response)
        if _has_body(environ):
            return self._fall_back(BODY, match[1], environ, start_response)
        if "HTTP_UPGRADE" in environ:
            return self._fall_back(UPGRADE, match[1], environ, start_response)
        # What Flask's hooks do for every poll (priority.py, metrics.py).
        priority.note_request(is_poll=True, is_wait=True)
        metrics.poll_started()
        try:
            answer = self._answer(match[1], environ)
        finally:
            metrics.poll_finished()
        if isinstance(answer, str):
            return self._fall_back(answer, match[1], environ, start_response)
        self.answered += 1
        return answer(environ, start_response)

    def _fall_back(
        self,
        reason: str,
        session_id: str,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
    ) -> Iterable[bytes]:
        metrics.fast_poll_fell_back(reason)
        # The id as the path gave it, unchecked: quoted, and cut short.
        log.debug("long-poll handed to flask reason=%s session=%.80r", reason, session_id)
        return self._app(environ, start_response)


def _has_body(environ: dict[str, Any]) -> bool:
    """A GET with a body: Flask checks it (a malformed JSON body is a 400 everywhere)."""
    return (
        environ.get("CONTENT_LENGTH", "") not in ("", "0")
        or "HTTP_TRANSFER_ENCODING" in environ
        or bool(environ.get("CONTENT_TYPE"))
    )
